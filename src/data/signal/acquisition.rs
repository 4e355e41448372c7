//! A recording as another device would have taken it: noise added at the source's rate, then
//! resampled to another rate. This is how the project checks itself on "other people's
//! recordings" without having them: MIT-BIH's 360-Hz records arrive at 128 or 250 Hz, with
//! baseline wander, mains hum and muscle (EMG) noise, and go through exactly the path a real
//! file takes (lead, annotations, beat cutting, R–R features).
//!
//! The noise is seeded per record (the seed and the record's name), so a run is reproducible
//! whatever order the records load in.

use crate::data::recording::{OwnedLead, Recording};
use crate::data::signal::resample::resample;
use crate::error::Result;
use crate::rng::Rng;

/// Noise added to a lead, in millivolts (MIT-BIH's R waves are about 1–2 mV).
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize)]
pub struct Noise {
    /// Peak amplitude of the baseline wander: respiration and electrode motion, a sum of slow
    /// sinusoids between 0.05 and 0.5 Hz.
    pub baseline_mv: f32,
    /// Amplitude of the mains hum.
    pub mains_mv: f32,
    /// Mains frequency (50 Hz in Europe, 60 Hz in the Americas).
    pub mains_hz: f64,
    /// RMS of the muscle noise: white Gaussian noise at the source rate (the resampling's
    /// anti-aliasing filter band-limits it as a device's would).
    pub emg_mv: f32,
}

/// Named noise levels for `--noise`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
#[cfg_attr(feature = "cli", derive(clap::ValueEnum))]
#[serde(rename_all = "lowercase")]
pub enum NoiseLevel {
    /// No noise added.
    #[default]
    None,
    /// A resting clinical recording: baseline 0.15 mV, mains 0.02 mV at 50 Hz, EMG 0.02 mV RMS.
    Typical,
    /// An ambulatory (Holter) recording of a moving patient: baseline 0.4 mV, mains 0.05 mV at
    /// 50 Hz, EMG 0.06 mV RMS.
    Strong,
}

impl NoiseLevel {
    /// The amplitudes of this level (`None` for no noise).
    pub fn noise(self) -> Option<Noise> {
        let (baseline_mv, mains_mv, emg_mv) = match self {
            NoiseLevel::None => return None,
            NoiseLevel::Typical => (0.15, 0.02, 0.02),
            NoiseLevel::Strong => (0.4, 0.05, 0.06),
        };
        Some(Noise {
            baseline_mv,
            mains_mv,
            mains_hz: 50.0,
            emg_mv,
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            NoiseLevel::None => "none",
            NoiseLevel::Typical => "typical",
            NoiseLevel::Strong => "strong",
        }
    }
}

/// How a recording is turned into one from another device before the pipeline reads it. The
/// default changes nothing.
#[derive(Clone, Copy, Debug, Default, PartialEq, serde::Serialize)]
pub struct Acquisition {
    /// Resample the lead to this rate (Hz); its annotations move to the nearest sample.
    pub rate: Option<f64>,
    /// Noise added at the source rate, before resampling.
    pub noise: Option<Noise>,
    /// Seed of the noise (with each record's name).
    pub seed: u64,
    /// Every reference beat annotation moved by this many milliseconds (negative: earlier), as
    /// a database that marks its beats at another point of the QRS complex (its onset, say)
    /// than MIT-BIH's R peak would give them.
    #[serde(skip_serializing_if = "crate::is_default")]
    pub annotation_shift_ms: f64,
}

impl Acquisition {
    /// Whether this changes nothing (recordings are then streamed as they are).
    pub fn is_identity(&self) -> bool {
        self.rate.is_none() && self.noise.is_none() && self.annotation_shift_ms == 0.0
    }

    /// A short description for reports, e.g. "resampled to 128 Hz, noise (baseline 0.15 mV, ...)".
    pub fn describe(&self) -> String {
        let mut parts = vec![];
        if let Some(rate) = self.rate {
            parts.push(format!("resampled to {rate} Hz"));
        }
        if let Some(n) = self.noise {
            parts.push(format!(
                "noise added (baseline wander {} mV, {} Hz mains {} mV, EMG {} mV RMS; seed {})",
                n.baseline_mv, n.mains_hz, n.mains_mv, n.emg_mv, self.seed
            ));
        }
        if self.annotation_shift_ms != 0.0 {
            parts.push(format!(
                "beat annotations moved by {:+} ms",
                self.annotation_shift_ms
            ));
        }
        parts.join(", ")
    }

    /// `rec` as this device would have recorded it: its lead read whole into memory, noise
    /// added, resampled, and its annotations moved to the new rate.
    pub fn apply(&self, mut rec: Recording) -> Result<Recording> {
        let fs = rec.lead.fs();
        let len = rec.lead.len();
        if self.annotation_shift_ms != 0.0 {
            let by = (self.annotation_shift_ms * fs / 1000.0).round() as i64;
            for a in rec.annotations.iter_mut().flatten() {
                a.sample = (a.sample as i64 + by).clamp(0, len as i64 - 1) as u64;
            }
        }
        if self.rate.is_none() && self.noise.is_none() {
            return Ok(rec);
        }
        let mut signal = rec.lead.read(0..len)?;
        if let Some(noise) = self.noise {
            add_noise(&mut signal, fs, noise, record_seed(self.seed, &rec.name));
        }
        let fs_out = self.rate.unwrap_or(fs);
        let signal = resample(&signal, fs, fs_out);
        let new_len = signal.len() as u64;
        if let Some(annotations) = rec.annotations.as_mut() {
            for a in annotations.iter_mut() {
                a.sample = move_sample(a.sample, fs, fs_out).min(new_len.saturating_sub(1));
            }
        }
        rec.lead = Box::new(OwnedLead { signal, fs: fs_out });
        Ok(rec)
    }
}

/// Devices drawn per record, for training on recordings as other devices would take them
/// (`train --device-view`): each record gets one, from its own seed, so a run is reproducible
/// whatever order the records load in.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct DeviceDraw {
    /// Rates a device records at (Hz), one drawn per record.
    pub rates: Vec<f64>,
    /// Noise levels, one drawn per record, its amplitudes scaled by a factor drawn from
    /// 0.5–1.5 and its mains at 50 or 60 Hz.
    pub levels: Vec<NoiseLevel>,
    pub seed: u64,
}

impl DeviceDraw {
    /// The rates of the cross-database table's rows and of common ambulatory recorders.
    pub const RATES: [f64; 3] = [128.0, 250.0, 500.0];

    /// The default draw: [`Self::RATES`], typical or strong noise.
    pub fn new(seed: u64) -> Self {
        Self {
            rates: Self::RATES.to_vec(),
            levels: vec![NoiseLevel::Typical, NoiseLevel::Strong],
            seed,
        }
    }

    /// The device that records `record` (the name without any view suffix).
    pub fn for_record(&self, record: &str) -> Acquisition {
        // a seed of its own, apart from the noise's (which `Acquisition` derives from `seed`)
        let mut rng = Rng::new(record_seed(self.seed ^ 0xD371_CE00, record));
        let rate = (!self.rates.is_empty()).then(|| self.rates[rng.below(self.rates.len())]);
        let level = match self.levels.len() {
            0 => NoiseLevel::None,
            n => self.levels[rng.below(n)],
        };
        let scale = rng.range(0.5, 1.5) as f32;
        let mains_hz = if rng.below(2) == 0 { 50.0 } else { 60.0 };
        let noise = level.noise().map(|n| Noise {
            baseline_mv: n.baseline_mv * scale,
            mains_mv: n.mains_mv * scale,
            mains_hz,
            emg_mv: n.emg_mv * scale,
        });
        Acquisition {
            rate,
            noise,
            seed: self.seed,
            ..Default::default()
        }
    }
}

/// Where a sample at `fs` lands at `fs_out` (output sample n sits at time n / fs_out).
fn move_sample(sample: u64, fs: f64, fs_out: f64) -> u64 {
    (sample as f64 * fs_out / fs).round() as u64
}

/// One seed per record, independent of load order.
fn record_seed(seed: u64, record: &str) -> u64 {
    // FNV-1a over the name, mixed with the seed
    let mut h = 0xcbf2_9ce4_8422_2325u64 ^ seed.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    for b in record.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x100_0000_01b3);
    }
    h
}

/// Adds baseline wander, mains hum and EMG noise to `signal` (mV at `fs` Hz).
pub fn add_noise(signal: &mut [f32], fs: f64, noise: Noise, seed: u64) {
    let mut rng = Rng::new(seed);
    // four slow sinusoids whose peaks add up to at most baseline_mv
    let wander: Vec<(f64, f64)> = (0..4)
        .map(|_| (rng.range(0.05, 0.5), rng.range(0.0, std::f64::consts::TAU)))
        .collect();
    let mains_phase = rng.range(0.0, std::f64::consts::TAU);
    let tau = std::f64::consts::TAU;
    for (i, v) in signal.iter_mut().enumerate() {
        let t = i as f64 / fs;
        let baseline: f64 = wander
            .iter()
            .map(|&(f, phase)| (tau * f * t + phase).sin())
            .sum::<f64>()
            * f64::from(noise.baseline_mv)
            / wander.len() as f64;
        let mains = f64::from(noise.mains_mv) * (tau * noise.mains_hz * t + mains_phase).sin();
        let emg = f64::from(noise.emg_mv) * rng.normal();
        *v += (baseline + mains + emg) as f32;
    }
}
