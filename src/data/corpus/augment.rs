//! Augmentation for training beats only: minority classes balanced with random variations of
//! their beats (amplitude scaling, a time stretch, Gaussian noise and baseline wander), and
//! copies with their record's median shape that only the rhythm tells apart.

use crate::data::beats::reference::record_medians;
use crate::data::beats::{Beats, BEAT_LEN, FS};
use crate::rng::Rng;

/// Returns `beats` plus augmented copies so that every class has at least `target` beats
/// (classes with no beats stay empty). Seeded: the same inputs give the same output.
pub fn balance(beats: &Beats, target: usize, classes: usize, seed: u64) -> Beats {
    let mut rng = Rng::new(seed);
    let mut out = beats.clone();
    for class in 0..classes as u32 {
        let members: Vec<usize> = (0..beats.len())
            .filter(|&i| beats.labels[i] == class)
            .collect();
        if members.is_empty() {
            continue;
        }
        for _ in members.len()..target {
            let src = members[rng.below(members.len())];
            let beat = transform(beats.beat(src), &mut rng);
            // a reshaped copy keeps the rhythm of the beat it came from
            out.push(
                &beat,
                class,
                (&beats.record[src], beats.sample[src]),
                beats.rr[src],
            );
        }
    }
    out
}

/// One random variation of a beat, clipped to [0, 1].
pub fn transform(beat: &[f32], rng: &mut Rng) -> Vec<f32> {
    let scale = rng.range(0.85, 1.15);
    let stretch = rng.range(0.9, 1.1);
    let noise = rng.range(0.0, 0.02);
    let (wander_amp, wander_hz, phase) = (
        rng.range(0.0, 0.05),
        rng.range(0.1, 0.5),
        rng.range(0.0, std::f64::consts::TAU),
    );
    // The zero padding after a Kachuee beat stays zero padding.
    let content = beat.iter().rposition(|&v| v != 0.0).map_or(0, |p| p + 1);
    let stretched_len = ((content as f64) * stretch).round() as usize;
    (0..BEAT_LEN)
        .map(|t| {
            if t >= stretched_len.min(BEAT_LEN) {
                return 0.0;
            }
            let src = t as f64 / stretch;
            let (i, f) = (src.floor() as usize, src.fract());
            let a = f64::from(beat[i.min(BEAT_LEN - 1)]);
            let b = f64::from(beat[(i + 1).min(BEAT_LEN - 1)]);
            let v = (a + f * (b - a)) * scale
                + noise * rng.normal()
                + wander_amp * (std::f64::consts::TAU * wander_hz * t as f64 / FS + phase).sin();
            v.clamp(0.0, 1.0) as f32
        })
        .collect()
}

/// Returns `beats` plus, for each beat of a class in `classes` picked with probability
/// `fraction` (seeded), a copy whose samples are its record's median beat over `beats`, with the
/// beat's own label and R–R features.
///
/// Why: N and S beats share a normal QRS; what makes a beat S is that it comes early. A network
/// fits a few patients' S beats by their shape, which does not carry over to new patients. In
/// the copies N and S have the same shape, so only the rhythm features tell them apart, and the
/// network has to learn S from the rhythm.
pub fn median_shape_copies(beats: &Beats, classes: &[u32], fraction: f64, seed: u64) -> Beats {
    let medians = record_medians(beats);
    let mut rng = Rng::new(seed ^ 0x6d65_6469_616e);
    let mut out = beats.clone();
    for i in 0..beats.len() {
        if classes.contains(&beats.labels[i]) && rng.uniform() < fraction {
            out.push(
                &medians[&beats.record[i]],
                beats.labels[i],
                (&beats.record[i], beats.sample[i]),
                beats.rr[i],
            );
        }
    }
    out
}
