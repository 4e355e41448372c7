//! How noisy a recording is, from the signal the network reads (125 Hz): between each pair of
//! beats (200 ms after one R peak to 100 ms before the next), the RMS of the second difference,
//! which the smooth P and T waves barely move and muscle noise and mains hum do; over the R
//! amplitude (peak to peak within 50 ms of the R peak). The index is the median of the first
//! over the median of the second.
//!
//! On MIT-BIH, DS1's noisiest record (108) scores 0.029; DS2 read as `evaluate --resample 250
//! --noise strong` reads it scores 0.090 in the median record (`cargo run --release --example
//! noise_index`).

/// Samples after an R peak where the interval between beats starts (200 ms at 125 Hz).
const AFTER_R: usize = 25;
/// Samples before the next R peak where it ends (100 ms).
const BEFORE_R: usize = 12;
/// Shortest interval measured, in samples (100 ms).
const MIN_SPAN: usize = 12;
/// Half the window around an R peak whose peak-to-peak is its amplitude (50 ms).
const R_HALF: usize = 6;

/// The per-beat measurements of one recording, gathered a chunk at a time.
#[derive(Clone, Debug, Default)]
pub struct NoiseIndex {
    between: Vec<f32>,
    amplitude: Vec<f32>,
}

impl NoiseIndex {
    /// Measures the beat at R peak `r` of `x` (125 Hz samples), followed by the R peak `next`
    /// (`None` for the last beat): its R amplitude, and the interval up to `next`.
    pub fn push(&mut self, x: &[f32], r: usize, next: Option<usize>) {
        if r >= x.len() {
            return;
        }
        let window = &x[r.saturating_sub(R_HALF)..(r + R_HALF + 1).min(x.len())];
        let (lo, hi) = window
            .iter()
            .fold((f32::INFINITY, f32::NEG_INFINITY), |(lo, hi), &v| {
                (lo.min(v), hi.max(v))
            });
        self.amplitude.push(hi - lo);
        let Some(next) = next else { return };
        let (s, e) = (r + AFTER_R, next.saturating_sub(BEFORE_R).min(x.len()));
        if e < s + MIN_SPAN {
            return;
        }
        let d2: Vec<f64> = x[s..e]
            .windows(3)
            .map(|w| f64::from(w[2]) - 2.0 * f64::from(w[1]) + f64::from(w[0]))
            .collect();
        let mean_square = d2.iter().map(|d| d * d).sum::<f64>() / d2.len() as f64;
        self.between.push(mean_square.sqrt() as f32);
    }

    /// Measures the beats of one chunk of a recording: `x` is its 125-Hz signal from index
    /// `offset` on, `take` the 125-Hz positions it owns, `peaks` every R peak of the recording
    /// at 125 Hz, sorted. A beat whose next R peak lies outside `x` gives its amplitude only.
    pub fn push_chunk(
        &mut self,
        x: &[f32],
        offset: usize,
        take: std::ops::Range<usize>,
        peaks: &[usize],
    ) {
        let local = |p: usize| p.checked_sub(offset).filter(|&q| q < x.len());
        let first = peaks.partition_point(|&p| p < take.start);
        let last = peaks.partition_point(|&p| p < take.end);
        for j in first..last {
            if let Some(r) = local(peaks[j]) {
                self.push(x, r, peaks.get(j + 1).and_then(|&p| local(p)));
            }
        }
    }

    /// The index, or `None` with fewer than ten intervals or no R amplitude.
    pub fn index(&self) -> Option<f32> {
        if self.between.len() < 10 {
            return None;
        }
        let amplitude = median(&self.amplitude);
        (amplitude > 0.0).then(|| median(&self.between) / amplitude)
    }
}

fn median(values: &[f32]) -> f32 {
    let mut v = values.to_vec();
    v.sort_by(f32::total_cmp);
    v[v.len() / 2]
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A clean synthetic ECG (a narrow R spike on a slow wave every second), then with white
    /// noise added: the index grows with the noise and not with the signal's scale.
    #[test]
    fn noise_raises_the_index_and_scale_does_not() {
        let beat = |t: usize| {
            let r = if t.is_multiple_of(125) { 1.0 } else { 0.0 };
            r + 0.1 * (2.0 * std::f32::consts::PI * t as f32 / 125.0).sin()
        };
        let mut rng = crate::rng::Rng::new(1);
        let clean: Vec<f32> = (0..125 * 60).map(beat).collect();
        let noisy: Vec<f32> = clean
            .iter()
            .map(|v| v + 0.05 * rng.range(-1.0, 1.0) as f32)
            .collect();
        let scaled: Vec<f32> = clean.iter().map(|v| 3.0 * v).collect();
        let index = |x: &[f32]| {
            let mut n = NoiseIndex::default();
            let peaks: Vec<usize> = (0..x.len()).step_by(125).collect();
            for (k, &r) in peaks.iter().enumerate() {
                n.push(x, r, peaks.get(k + 1).copied());
            }
            n.index().unwrap()
        };
        let (c, n, s) = (index(&clean), index(&noisy), index(&scaled));
        assert!(n > 10.0 * c.max(1e-4), "clean {c}, noisy {n}");
        assert!((s - c).abs() <= 1e-4 * c.max(1e-3), "clean {c}, scaled {s}");
        assert_eq!(NoiseIndex::default().index(), None);
    }
}
