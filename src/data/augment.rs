//! Minority-class augmentation for training beats only: each new beat is a random original of
//! its class with amplitude scaling, a time stretch, Gaussian noise and baseline wander.

use super::beats::{Beats, BEAT_LEN, FS};
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
