//! R–R interval features per beat: what tells a supraventricular beat apart (it comes early,
//! with a normal QRS), which a 187-sample window normalised to [0, 1] cannot see. Each beat is
//! described against its own patient's rhythm, as in de Chazal et al. 2004 and Mondéjar-Guerra
//! et al. 2019.
//!
//! From the R-peak positions of the whole record (beat annotations, or the QRS detector's):
//! pre-RR and post-RR, the local mean R–R over the surrounding beats, the record's mean R–R (all
//! in seconds), the first three as ratios to the record's mean, and the local irregularity: the
//! median change between successive intervals around the beat, as a fraction of the local mean.
//! A premature beat in a regular rhythm is an ectopic beat; the same short interval in atrial
//! fibrillation is not, and that fibrillation is labelled N: the irregularity tells the two
//! apart. The median ignores the two large changes that one premature beat itself makes.
//!
//! The ninth feature is the same irregularity over a wide window ([`RHYTHM_HALF_WINDOW`] intervals
//! each side, about a minute): the rhythm the beat sits in. Atrial fibrillation stays irregular
//! for minutes; a run of ectopic beats or a pause makes a few large changes that the wide median
//! passes over, where the ten-interval one does not. The networks read the first
//! [`NETWORK_RR_FEATURES`]; the irregular-rhythm gate reads the ninth
//! ([`crate::model::ModelConfig::irregular_gate`]).
//!
//! Edges and gaps: the first beat has no pre-RR and the last no post-RR; each takes the other
//! side's interval. An interval longer than [`GAP_S`] (a signal dropout or a stretch without
//! annotated beats) is not a heartbeat interval: it counts as missing on both sides and is left
//! out of the means. A record without any usable interval gets a nominal [`NOMINAL_RR_S`] rhythm.

/// The features of a beat whose rhythm is unknown (beats read from a CSV): the nominal rhythm.
pub const NOMINAL: Rhythm = [
    NOMINAL_RR_S as f32,
    NOMINAL_RR_S as f32,
    NOMINAL_RR_S as f32,
    NOMINAL_RR_S as f32,
    1.0,
    1.0,
    1.0,
    0.0,
    0.0,
];

/// Number of R–R features per beat.
pub const RR_LEN: usize = 9;

/// The features a dual-stream network reads: all but the wide-window irregularity, which only the
/// irregular-rhythm gate uses (networks trained before it existed read these eight).
pub const NETWORK_RR_FEATURES: usize = 8;

/// A beat's R–R features, in the order of [`RR_FEATURES`].
pub type Rhythm = [f32; RR_LEN];

/// Features per beat, in this order.
pub const RR_FEATURES: [&str; RR_LEN] = [
    "pre_rr",
    "post_rr",
    "local_rr",
    "record_rr",
    "pre_rr_ratio",
    "post_rr_ratio",
    "local_rr_ratio",
    "local_irregularity",
    "rhythm_irregularity",
];

/// Longer R–R intervals are gaps, not beats (the slowest plausible rhythm is ~20 bpm).
pub const GAP_S: f64 = 3.0;
/// Beats on each side whose intervals make the local mean (10 surrounding beats).
pub const LOCAL_HALF_WINDOW: usize = 5;
/// Intervals on each side for the rhythm irregularity (60 intervals: AF detectors that work on
/// R–R intervals alone look at windows of about 50 beats, Tateno & Glass 2001).
pub const RHYTHM_HALF_WINDOW: usize = 30;
/// The rhythm assumed where a record has no usable interval (75 bpm).
pub const NOMINAL_RR_S: f64 = 0.8;

/// The features of every beat at `peaks` (sample positions, sorted ascending) of a record
/// sampled at `fs` Hz.
pub fn rr_features(peaks: &[u64], fs: f64) -> Vec<Rhythm> {
    let n = peaks.len();
    // interval k lies between beats k and k + 1; None where it is a gap
    let intervals: Vec<Option<f64>> = peaks
        .windows(2)
        .map(|w| {
            let s = w[1].saturating_sub(w[0]) as f64 / fs;
            (s > 0.0 && s <= GAP_S).then_some(s)
        })
        .collect();
    let usable: Vec<f64> = intervals.iter().flatten().copied().collect();
    let record = if usable.is_empty() {
        NOMINAL_RR_S
    } else {
        usable.iter().sum::<f64>() / usable.len() as f64
    };
    (0..n)
        .map(|i| {
            let before = i.checked_sub(1).and_then(|k| intervals[k]);
            let after = intervals.get(i).copied().flatten();
            let pre = before.or(after).unwrap_or(record);
            let post = after.or(before).unwrap_or(record);
            let local_window = window(&intervals, i, LOCAL_HALF_WINDOW);
            let local = mean(local_window).unwrap_or(record);
            let irregularity = median_change(local_window).map_or(0.0, |m| m / local);
            let rhythm_window = window(&intervals, i, RHYTHM_HALF_WINDOW);
            let rhythm_irregularity = median_change(rhythm_window)
                .zip(mean(rhythm_window))
                .map_or(0.0, |(m, mean)| m / mean);
            [
                pre as f32,
                post as f32,
                local as f32,
                record as f32,
                (pre / record) as f32,
                (post / record) as f32,
                (local / record) as f32,
                irregularity as f32,
                rhythm_irregularity as f32,
            ]
        })
        .collect()
}

/// The intervals within `half` of beat `i` on each side (interval k lies between beats k, k + 1).
fn window(intervals: &[Option<f64>], i: usize, half: usize) -> &[Option<f64>] {
    let hi = (i + half).min(intervals.len());
    &intervals[i.saturating_sub(half).min(hi)..hi]
}

/// The mean of the usable intervals; `None` when there is none.
fn mean(window: &[Option<f64>]) -> Option<f64> {
    let usable: Vec<f64> = window.iter().flatten().copied().collect();
    (!usable.is_empty()).then(|| usable.iter().sum::<f64>() / usable.len() as f64)
}

/// The median change between successive usable intervals; `None` when no two are adjacent.
fn median_change(window: &[Option<f64>]) -> Option<f64> {
    median(
        window
            .windows(2)
            .filter_map(|w| Some((w[1]? - w[0]?).abs()))
            .collect(),
    )
}

/// The middle value (the mean of the middle two for an even count); `None` when empty.
fn median(mut v: Vec<f64>) -> Option<f64> {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    (n > 0).then(|| (v[(n - 1) / 2] + v[n / 2]) / 2.0)
}
