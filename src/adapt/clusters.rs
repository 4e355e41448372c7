//! The kinds of beat a record holds. A patient's beats come in a few kinds (their normal beat,
//! an ectopic focus or two, beats after a pause), and the beats of one kind share a class. A
//! network decides each beat alone: it calls half of a patient's atrial premature beats S and
//! the other half N, or one normal beat among thousands S. Here k-means groups the record's beats
//! by shape and timing, and each beat's probabilities move a fixed part of the way toward its
//! group's mean before the decision.
//!
//! What a beat is described by: its shape as the network sees it (relative to the record's
//! median beat when the network takes it so), as the means of 17 blocks of 11 samples, and its
//! timing: pre-RR and post-RR over the local mean, and pre-RR over the record's mean, each times
//! `rhythm_weight`. k-means++ from a fixed seed, then Lloyd's iterations: the same record gives
//! the same groups in every run, streamed or whole, natively or in a browser.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::data::beats::rr::Rhythm;
use crate::data::beats::{Beats, BEAT_LEN};
use crate::metrics::{best_setting, Confusion, Report};
use crate::rng::Rng;

/// Samples per shape block (187 = 17 × 11).
const BLOCK: usize = 11;
/// Shape values per beat.
pub const SHAPE_BLOCKS: usize = BEAT_LEN / BLOCK;
/// Values describing a beat: its shape blocks, then three timing ratios.
pub const FEATURES: usize = SHAPE_BLOCKS + 3;
/// A beat as k-means sees it.
pub type Features = [f32; FEATURES];
/// Lloyd's iterations at most (they stop earlier when no beat changes group).
const ITERATIONS: usize = 30;
/// Seed of the k-means++ start, the same for every record.
const SEED: u64 = 1;

/// Groups per record tried by [`choose`].
pub const CLUSTERS: [usize; 3] = [8, 16, 32];
/// Timing weights tried by [`choose`].
pub const RHYTHM_WEIGHTS: [f64; 2] = [3.0, 10.0];
/// Pulls toward the group's mean tried by [`choose`].
pub const WEIGHTS: [f64; 4] = [0.3, 0.6, 0.75, 0.9];

/// How to smooth each record's probabilities over its groups of beats.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct ClusterSmoothing {
    /// Groups per record (fewer when a record has fewer beats).
    pub clusters: usize,
    /// Weight of the timing ratios (about 1 for a regular beat) against the shape blocks.
    pub rhythm_weight: f64,
    /// How far each beat's probabilities move toward its group's mean: 0 not at all, 1 all the
    /// way.
    pub weight: f64,
}

/// `beat` (as the network takes it) and its R–R features as k-means sees them.
pub fn features(beat: &[f32], rr: &Rhythm, rhythm_weight: f64) -> Features {
    let rhythm_weight = rhythm_weight as f32;
    let mut f = [0f32; FEATURES];
    for (k, block) in beat.chunks_exact(BLOCK).take(SHAPE_BLOCKS).enumerate() {
        f[k] = block.iter().sum::<f32>() / BLOCK as f32;
    }
    let ratio = |a: f32, b: f32| if b > 0.0 { a / b } else { 1.0 };
    let (pre, post, local, record) = (rr[0], rr[1], rr[2], rr[3]);
    f[SHAPE_BLOCKS] = rhythm_weight * ratio(pre, local);
    f[SHAPE_BLOCKS + 1] = rhythm_weight * ratio(post, local);
    f[SHAPE_BLOCKS + 2] = rhythm_weight * ratio(pre, record);
    f
}

/// [`features`] of the beats of `beats` at `rows`.
pub fn beat_features(
    beats: &Beats,
    rows: impl IntoIterator<Item = usize>,
    rhythm_weight: f64,
) -> Vec<Features> {
    rows.into_iter()
        .map(|i| features(beats.beat(i), &beats.rr[i], rhythm_weight))
        .collect()
}

/// The group of each point: k-means++ (seeded) then Lloyd's iterations; `k` is capped at the
/// number of points.
pub fn kmeans(points: &[Features], k: usize) -> Vec<usize> {
    let n = points.len();
    let k = k.min(n);
    if k <= 1 {
        return vec![0; n];
    }
    let distance = |a: &Features, b: &[f64; FEATURES]| -> f64 {
        a.iter()
            .zip(b)
            .map(|(&x, &c)| (f64::from(x) - c).powi(2))
            .sum()
    };
    let as_centre = |p: &Features| p.map(f64::from);
    let mut rng = Rng::new(SEED);
    let mut centres = vec![as_centre(&points[rng.below(n)])];
    let mut nearest: Vec<f64> = points.iter().map(|p| distance(p, &centres[0])).collect();
    while centres.len() < k {
        let total: f64 = nearest.iter().sum();
        let next = if total > 0.0 {
            let mut at = rng.uniform() * total;
            nearest
                .iter()
                .position(|&d| {
                    at -= d;
                    at < 0.0
                })
                .unwrap_or(n - 1)
        } else {
            // every point sits on a centre already
            break;
        };
        let centre = as_centre(&points[next]);
        for (d, p) in nearest.iter_mut().zip(points) {
            *d = d.min(distance(p, &centre));
        }
        centres.push(centre);
    }
    let mut group = vec![0usize; n];
    for iteration in 0..ITERATIONS {
        let mut changed = false;
        for (g, p) in group.iter_mut().zip(points) {
            let best = (0..centres.len())
                .min_by(|&a, &b| distance(p, &centres[a]).total_cmp(&distance(p, &centres[b])))
                .expect("at least one centre");
            changed |= *g != best;
            *g = best;
        }
        if !changed && iteration > 0 {
            break;
        }
        let mut sums = vec![[0f64; FEATURES]; centres.len()];
        let mut counts = vec![0usize; centres.len()];
        for (&g, p) in group.iter().zip(points) {
            counts[g] += 1;
            sums[g]
                .iter_mut()
                .zip(p)
                .for_each(|(s, &x)| *s += f64::from(x));
        }
        for ((c, s), &count) in centres.iter_mut().zip(&sums).zip(&counts) {
            // an empty group keeps its centre
            if count > 0 {
                *c = s.map(|v| v / count as f64);
            }
        }
    }
    group
}

/// Moves each row of `probs` (`[n, classes]`) `weight` of the way toward the mean row of its
/// group.
pub fn smooth(group: &[usize], probs: &mut [f32], classes: usize, weight: f64) {
    let weight = weight as f32;
    let groups = group.iter().max().map_or(0, |&g| g + 1);
    let mut means = vec![0f64; groups * classes];
    let mut counts = vec![0usize; groups];
    for (&g, row) in group.iter().zip(probs.chunks(classes)) {
        counts[g] += 1;
        means[g * classes..(g + 1) * classes]
            .iter_mut()
            .zip(row)
            .for_each(|(m, &p)| *m += f64::from(p));
    }
    for (&g, row) in group.iter().zip(probs.chunks_mut(classes)) {
        let mean = &means[g * classes..(g + 1) * classes];
        for (p, &m) in row.iter_mut().zip(mean) {
            let m = (m / counts[g] as f64) as f32;
            *p += weight * (m - *p);
        }
    }
}

impl ClusterSmoothing {
    /// Smooths one record's probabilities (`[n, classes]`) over its beats' groups (`features`,
    /// one per row, from [`features`] with this `rhythm_weight`).
    pub fn smooth_record(&self, features: &[Features], probs: &mut [f32], classes: usize) {
        let group = kmeans(features, self.clusters);
        smooth(&group, probs, classes, self.weight);
    }

    /// [`Self::smooth_record`] for every record of `beats` (one row of `probs` per beat). Beats
    /// without a record (read from a CSV) are left as they are: their patients are unknown.
    pub fn smooth_records(&self, beats: &Beats, probs: &mut [f32], classes: usize) {
        for rows in record_rows(beats).values() {
            let f = beat_features(beats, rows.iter().copied(), self.rhythm_weight);
            let mut mine = gather(probs, rows, classes);
            self.smooth_record(&f, &mut mine, classes);
            scatter(&mine, probs, rows, classes);
        }
    }
}

/// The row indices of each named record of `beats`.
fn record_rows(beats: &Beats) -> BTreeMap<&str, Vec<usize>> {
    let mut rows: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
    for (i, r) in beats.record.iter().enumerate() {
        if !r.is_empty() {
            rows.entry(r.as_str()).or_default().push(i);
        }
    }
    rows
}

fn gather(probs: &[f32], rows: &[usize], classes: usize) -> Vec<f32> {
    rows.iter()
        .flat_map(|&i| probs[i * classes..(i + 1) * classes].iter().copied())
        .collect()
}

fn scatter(mine: &[f32], probs: &mut [f32], rows: &[usize], classes: usize) {
    for (k, &i) in rows.iter().enumerate() {
        probs[i * classes..(i + 1) * classes]
            .copy_from_slice(&mine[k * classes..(k + 1) * classes]);
    }
}

/// The cluster smoothing that validation prefers.
#[derive(Clone, Debug, Serialize)]
pub struct ClusterChoice {
    /// `None`: validation is best without smoothing.
    pub smoothing: Option<ClusterSmoothing>,
    pub macro_f1_plain: f64,
    /// Each setting tried with its macro-F1.
    pub macro_f1_by_setting: Vec<(ClusterSmoothing, f64)>,
    /// The report with the chosen setting (plain when none).
    pub report: Report,
}

/// Chooses the smoothing on validation beats (`beats` with their labels, `probs` the network's
/// outputs for them): the highest macro-F1 over [`CLUSTERS`] × [`RHYTHM_WEIGHTS`] × [`WEIGHTS`],
/// with the rest of the rule (`decide`: offsets, gate) as it is; none unless one beats it.
pub fn choose(
    beats: &Beats,
    probs: &[f32],
    names: &[&str],
    decide: impl Fn(&[f32]) -> Vec<u32>,
) -> ClusterChoice {
    let classes = names.len();
    let report = |p: &[f32]| Confusion::new(&beats.labels, &decide(p), classes).report(names);
    let plain = report(probs);
    let mut tried = vec![];
    let records = record_rows(beats);
    for clusters in CLUSTERS {
        for rhythm_weight in RHYTHM_WEIGHTS {
            // the groups depend on these two only; the pull is tried on the same groups
            let groups: Vec<(&Vec<usize>, Vec<usize>)> = records
                .values()
                .map(|rows| {
                    let f = beat_features(beats, rows.iter().copied(), rhythm_weight);
                    (rows, kmeans(&f, clusters))
                })
                .collect();
            for weight in WEIGHTS {
                let mut smoothed = probs.to_vec();
                for (rows, group) in &groups {
                    let mut mine = gather(&smoothed, rows, classes);
                    smooth(group, &mut mine, classes, weight);
                    scatter(&mine, &mut smoothed, rows, classes);
                }
                let setting = ClusterSmoothing {
                    clusters,
                    rhythm_weight,
                    weight,
                };
                tried.push((setting, report(&smoothed)));
            }
        }
    }
    let (smoothing, tried, best) = best_setting(&plain, tried);
    ClusterChoice {
        smoothing,
        macro_f1_plain: plain.macro_f1,
        macro_f1_by_setting: tried,
        report: best,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn point(x: f32) -> Features {
        let mut f = [0f32; FEATURES];
        f[0] = x;
        f
    }

    /// Two tight groups far apart are found whatever the start, and the same on every run.
    #[test]
    fn kmeans_finds_separated_groups_deterministically() {
        let points: Vec<Features> = (0..40)
            .map(|i| point(if i % 3 == 0 { 10.0 } else { 0.0 } + i as f32 * 1e-3))
            .collect();
        let group = kmeans(&points, 2);
        for (i, &g) in group.iter().enumerate() {
            assert_eq!(g == group[0], i % 3 == 0, "point {i}: {group:?}");
        }
        assert_eq!(kmeans(&points, 2), group);
        // more groups than points: one each at most
        assert_eq!(kmeans(&points[..1], 8), vec![0]);
        assert!(kmeans(&[], 8).is_empty());
    }

    /// Smoothing moves rows toward their group's mean by the weight, and keeps rows summing to 1.
    #[test]
    fn smoothing_pulls_rows_toward_their_group_mean() {
        // group 0: (0.6, 0.4) and (0.2, 0.8), mean (0.4, 0.6); group 1 alone
        let mut probs = vec![0.6, 0.4, 0.2, 0.8, 0.9, 0.1];
        smooth(&[0, 0, 1], &mut probs, 2, 0.5);
        let want = [0.5, 0.5, 0.3, 0.7, 0.9, 0.1];
        for (p, w) in probs.iter().zip(want) {
            assert!((p - w).abs() < 1e-6, "{probs:?}");
        }
    }

    /// The timing ratios: pre and post over the local mean, pre over the record's, weighted.
    #[test]
    fn features_are_shape_blocks_then_timing() {
        let beat: Vec<f32> = (0..BEAT_LEN).map(|i| (i / BLOCK) as f32).collect();
        let mut rr = crate::data::beats::rr::NOMINAL;
        (rr[0], rr[1], rr[2], rr[3]) = (0.5, 1.5, 1.0, 2.0);
        let f = features(&beat, &rr, 3.0);
        assert_eq!(
            f[..SHAPE_BLOCKS],
            (0..SHAPE_BLOCKS).map(|k| k as f32).collect::<Vec<_>>()[..]
        );
        assert_eq!(f[SHAPE_BLOCKS..], [1.5, 4.5, 0.75]);
    }
}
