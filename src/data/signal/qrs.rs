//! A QRS detector for records without reference beat annotations (PTB), after Pan & Tompkins
//! (1985), at any sampling rate:
//!
//! 1. band-pass 5–15 Hz (second-order Butterworth high- and low-pass sections, run forwards and
//!    backwards so the output has no delay), where QRS energy dominates P and T waves;
//! 2. a five-point derivative, squared, integrated over a centred 150 ms window;
//! 3. peaks of the integrated signal at least 200 ms apart (refractory period) are classified as
//!    QRS or noise against adaptive levels: threshold = noise + 0.25 (signal − noise), each level
//!    a running average of the peaks it took;
//! 4. a peak within 360 ms of the last QRS whose steepest slope is under half of that QRS's is a
//!    T wave; after 1.66 mean R–R intervals without a QRS, the largest skipped peak above half the
//!    threshold is taken (search-back);
//! 5. the R peak is the largest absolute band-passed sample within 75 ms of the integrated peak.
//!
//! Written by hand: no maintained Rust crate implements a QRS detector.

/// Half-width of the reference-matching window (EC57 / bxb: 150 ms).
pub const MATCH_WINDOW_S: f64 = 0.15;

/// A second-order IIR section (RBJ cookbook Butterworth, Q = 1/√2), normalised by a0.
struct Biquad {
    b: [f64; 3],
    a: [f64; 2],
}

impl Biquad {
    fn butterworth(fs: f64, cutoff: f64, highpass: bool) -> Self {
        let w = 2.0 * std::f64::consts::PI * cutoff / fs;
        let alpha = w.sin() / std::f64::consts::SQRT_2;
        let cos = w.cos();
        let a0 = 1.0 + alpha;
        let b = if highpass {
            [(1.0 + cos) / 2.0, -(1.0 + cos), (1.0 + cos) / 2.0]
        } else {
            [(1.0 - cos) / 2.0, 1.0 - cos, (1.0 - cos) / 2.0]
        };
        Self {
            b: b.map(|v| v / a0),
            a: [-2.0 * cos / a0, (1.0 - alpha) / a0],
        }
    }

    /// Direct form II transposed, in place, starting from rest at the first sample's level.
    fn run(&self, x: &mut [f64]) {
        let (mut z1, mut z2) = (0.0, 0.0);
        for v in x.iter_mut() {
            let y = self.b[0] * *v + z1;
            z1 = self.b[1] * *v - self.a[0] * y + z2;
            z2 = self.b[2] * *v - self.a[1] * y;
            *v = y;
        }
    }

    /// Forwards then backwards: squared magnitude response, zero phase.
    fn zero_phase(&self, x: &mut [f64]) {
        self.run(x);
        x.reverse();
        self.run(x);
        x.reverse();
    }
}

/// The 5–15 Hz band-passed signal (zero phase). The ends are extended by a point reflection
/// (as scipy's filtfilt does), so a record that starts far from zero, e.g. on a drifting
/// baseline, does not set off a step response the detector would take for a giant QRS.
pub fn bandpass(signal: &[f32], fs: f64) -> Vec<f64> {
    let n = signal.len();
    let pad = ((fs as usize).max(1)).min(n.saturating_sub(1));
    let at = |i: usize| f64::from(signal[i]);
    let mut x: Vec<f64> = Vec::with_capacity(n + 2 * pad);
    x.extend((1..=pad).rev().map(|i| 2.0 * at(0) - at(i)));
    x.extend(signal.iter().map(|&v| f64::from(v)));
    x.extend((1..=pad).map(|i| 2.0 * at(n - 1) - at(n - 1 - i)));
    Biquad::butterworth(fs, 5.0, true).zero_phase(&mut x);
    Biquad::butterworth(fs, 15.0f64.min(fs * 0.45), false).zero_phase(&mut x);
    x.drain(..pad);
    x.truncate(n);
    x
}

/// Sample indices of the R peaks found in `signal` (any unit) sampled at `fs` Hz.
pub fn detect(signal: &[f32], fs: f64) -> Vec<usize> {
    let n = signal.len();
    let secs = |s: f64| (s * fs).round().max(1.0) as usize;
    if n < secs(1.0) {
        return vec![];
    }
    let bp = bandpass(signal, fs);
    // Five-point derivative, squared.
    let mut slope = vec![0.0f64; n];
    for i in 2..n.saturating_sub(2) {
        slope[i] = (2.0 * (bp[i + 1] - bp[i - 1]) + bp[i + 2] - bp[i - 2]) / 8.0;
    }
    let squared: Vec<f64> = slope.iter().map(|d| d * d).collect();
    // Centred moving-window integration over 150 ms (prefix sums).
    let half = secs(0.075);
    let mut prefix = vec![0.0f64; n + 1];
    for i in 0..n {
        prefix[i + 1] = prefix[i] + squared[i];
    }
    let mwi: Vec<f64> = (0..n)
        .map(|i| {
            let (lo, hi) = (i.saturating_sub(half), (i + half + 1).min(n));
            (prefix[hi] - prefix[lo]) / (hi - lo) as f64
        })
        .collect();

    // Candidates: the largest integrated value within ±200 ms (the refractory period).
    let refractory = secs(0.2);
    let candidates: Vec<usize> = (1..n - 1)
        .filter(|&i| {
            let (lo, hi) = (i.saturating_sub(refractory), (i + refractory + 1).min(n));
            mwi[i] > 0.0 && mwi[lo..hi].iter().all(|&v| v <= mwi[i]) && mwi[i - 1] < mwi[i]
        })
        .collect();
    let max_slope = |i: usize| -> f64 {
        let (lo, hi) = (i.saturating_sub(half), (i + half + 1).min(n));
        slope[lo..hi].iter().fold(0.0f64, |m, d| m.max(d.abs()))
    };

    // Levels learnt from the first eight seconds: the median of each second's peak and mean, so
    // one artefact there cannot set them (Pan & Tompkins use the first two seconds' maximum).
    let median = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let seconds: Vec<&[f64]> = mwi[..secs(8.0).min(n)].chunks(secs(1.0)).collect();
    let mut signal_level = 0.25
        * median(
            seconds
                .iter()
                .map(|c| c.iter().fold(0.0f64, |m, &v| m.max(v)))
                .collect(),
        );
    let mut noise_level = 0.5
        * median(
            seconds
                .iter()
                .map(|c| c.iter().sum::<f64>() / c.len() as f64)
                .collect(),
        );
    let mut qrs: Vec<usize> = vec![];
    let mut qrs_slope = 0.0;
    let mut rr: Vec<usize> = vec![];
    let mut skipped: Vec<usize> = vec![];
    for &i in &candidates {
        let threshold = noise_level + 0.25 * (signal_level - noise_level);
        // Search-back: too long since the last QRS; take the best skipped peak above half.
        if let (Some(&last), false) = (qrs.last(), rr.is_empty()) {
            let mean_rr = rr.iter().sum::<usize>() as f64 / rr.len() as f64;
            if (i - last) as f64 > 1.66 * mean_rr {
                let best = skipped
                    .iter()
                    .copied()
                    .filter(|&j| j > last + refractory && i > j + refractory)
                    .max_by(|&a, &b| mwi[a].total_cmp(&mwi[b]));
                if let Some(j) = best.filter(|&j| mwi[j] > 0.5 * threshold) {
                    signal_level = 0.25 * mwi[j] + 0.75 * signal_level;
                    rr.push(j - last);
                    qrs.push(j);
                    qrs_slope = max_slope(j);
                }
            }
        }
        let threshold = noise_level + 0.25 * (signal_level - noise_level);
        let is_t_wave = qrs
            .last()
            .is_some_and(|&last| i - last < secs(0.36) && max_slope(i) < 0.5 * qrs_slope);
        if mwi[i] > threshold && !is_t_wave {
            signal_level = 0.125 * mwi[i] + 0.875 * signal_level;
            if let Some(&last) = qrs.last() {
                rr.push(i - last);
                if rr.len() > 8 {
                    rr.remove(0);
                }
            }
            qrs.push(i);
            qrs_slope = max_slope(i);
            skipped.clear();
        } else {
            noise_level = 0.125 * mwi[i] + 0.875 * noise_level;
            skipped.push(i);
        }
    }

    // R peak: the largest band-passed deflection near the integrated peak.
    let reach = secs(0.075);
    let mut peaks: Vec<usize> = qrs
        .into_iter()
        .map(|i| {
            let (lo, hi) = (i.saturating_sub(reach), (i + reach + 1).min(n));
            (lo..hi)
                .max_by(|&a, &b| bp[a].abs().total_cmp(&bp[b].abs()))
                .unwrap_or(i)
        })
        .collect();
    peaks.sort_unstable();
    peaks.dedup();
    peaks
}

/// Detection against reference beats: true positives, false negatives, false positives.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Matches {
    pub true_positives: usize,
    pub false_negatives: usize,
    pub false_positives: usize,
}

impl Matches {
    /// Sensitivity TP / (TP + FN).
    pub fn sensitivity(&self) -> f64 {
        self.true_positives as f64 / (self.true_positives + self.false_negatives).max(1) as f64
    }

    /// Positive predictivity TP / (TP + FP).
    pub fn positive_predictivity(&self) -> f64 {
        self.true_positives as f64 / (self.true_positives + self.false_positives).max(1) as f64
    }

    pub fn add(&mut self, other: Matches) {
        self.true_positives += other.true_positives;
        self.false_negatives += other.false_negatives;
        self.false_positives += other.false_positives;
    }
}

/// For each detected peak (sorted), the reference beat (sorted) nearest to it within `window`
/// samples that no earlier peak took, if any: how a detected beat gets its class, and an
/// annotation its detected position.
pub fn nearest_reference(reference: &[u64], detected: &[u64], window: u64) -> Vec<Option<usize>> {
    let mut taken = vec![false; reference.len()];
    detected
        .iter()
        .map(|&d| {
            let at = reference.partition_point(|&r| r < d);
            let nearest = [at.checked_sub(1), Some(at)]
                .into_iter()
                .flatten()
                .filter(|&k| k < reference.len() && !taken[k])
                .filter(|&k| reference[k].abs_diff(d) <= window)
                .min_by_key(|&k| reference[k].abs_diff(d));
            if let Some(k) = nearest {
                taken[k] = true;
            }
            nearest
        })
        .collect()
}

/// Matches sorted detections to sorted reference beats one to one, each pair at most `window`
/// samples apart (greedy in time order, as beat-by-beat comparison does).
pub fn match_beats(reference: &[usize], detected: &[usize], window: usize) -> Matches {
    let (mut i, mut j) = (0, 0);
    let mut m = Matches::default();
    while i < reference.len() && j < detected.len() {
        let (r, d) = (reference[i], detected[j]);
        if r.abs_diff(d) <= window {
            m.true_positives += 1;
            i += 1;
            j += 1;
        } else if d < r {
            m.false_positives += 1;
            j += 1;
        } else {
            m.false_negatives += 1;
            i += 1;
        }
    }
    m.false_negatives += reference.len() - i;
    m.false_positives += detected.len() - j;
    m
}
