//! Beats relative to their record's median beat: per-patient normalisation of the shape.
//!
//! A network trained on a few dozen patients learns their beat shapes; a new patient's normal
//! beat looks different, so shapes do not carry over (DS1 → DS2). Subtracting the record's
//! median beat leaves what differs from *this patient's* usual beat: a V beat stays far from it,
//! an N beat stays near zero whatever the patient's morphology. The record's median beat plays
//! the part that the record's mean R–R plays for the rhythm features ([`crate::data::beats::rr`]).
//!
//! Each sample becomes `(x - median) / 2 + 0.5`, which keeps a min-max beat in [0, 1]. The median
//! is per sample, over the record's beats in order, or over every `stride`-th of them when the
//! record has more than [`MEDIAN_BEATS_MAX`] (a 24-hour Holter record has ~100,000): the stride is
//! the smallest power of two that leaves at most that many, so a streamed record and a loaded
//! one get the same median bit for bit.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::data::beats::{Beats, BEAT_LEN};
use crate::error::{Error, Result};

/// What a beat is measured against before it enters the network.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "cli", derive(clap::ValueEnum))]
#[serde(rename_all = "kebab-case")]
pub enum BeatReference {
    /// The beat as cut (min-max normalised): the paper's input.
    #[default]
    None,
    /// The beat minus its record's median beat, halved and centred on 0.5.
    RecordMedian,
}

impl BeatReference {
    /// Applies the reference to every beat of `beats`, record by record (see [`relative`]).
    pub fn apply(self, beats: &mut Beats) -> Result<()> {
        match self {
            Self::None => Ok(()),
            Self::RecordMedian => to_record_median(beats),
        }
    }
}

/// Beats a record's median is taken over, at most (7 MB of samples).
pub const MEDIAN_BEATS_MAX: usize = 8192;

/// The median beat of a record whose beats arrive one at a time, in bounded memory: it keeps
/// every `stride`-th beat and doubles the stride (dropping every other kept beat) whenever more
/// than `cap` are kept.
#[derive(Clone, Debug)]
pub struct MedianBeat {
    cap: usize,
    stride: usize,
    seen: usize,
    kept: Vec<f32>,
}

impl Default for MedianBeat {
    fn default() -> Self {
        Self::with_cap(MEDIAN_BEATS_MAX)
    }
}

impl MedianBeat {
    /// Keeps at most `cap` beats (at least 1).
    pub fn with_cap(cap: usize) -> Self {
        Self {
            cap: cap.max(1),
            stride: 1,
            seen: 0,
            kept: vec![],
        }
    }

    pub fn push(&mut self, beat: &[f32]) {
        debug_assert_eq!(beat.len(), BEAT_LEN);
        if self.seen.is_multiple_of(self.stride) {
            self.kept.extend_from_slice(beat);
            if self.kept.len() / BEAT_LEN > self.cap {
                // keep beats 0, 2, 4, ... of those kept: every (2·stride)-th beat seen
                let kept: Vec<f32> = self
                    .kept
                    .chunks(BEAT_LEN)
                    .step_by(2)
                    .flatten()
                    .copied()
                    .collect();
                self.kept = kept;
                self.stride *= 2;
            }
        }
        self.seen += 1;
    }

    /// Every beat of a row-major `[n, 187]` array, in order.
    pub fn push_all(&mut self, x: &[f32]) {
        x.chunks(BEAT_LEN).for_each(|b| self.push(b));
    }

    /// Beats pushed so far.
    pub fn seen(&self) -> usize {
        self.seen
    }

    /// Beats the median is taken over.
    pub fn kept(&self) -> usize {
        self.kept.len() / BEAT_LEN
    }

    /// The per-sample median of the kept beats (the mean of the middle two for an even count),
    /// or `None` before any beat.
    pub fn median(&self) -> Option<Vec<f32>> {
        let n = self.kept();
        if n == 0 {
            return None;
        }
        let mut column = vec![0f32; n];
        Some(
            (0..BEAT_LEN)
                .map(|j| {
                    for (c, beat) in column.iter_mut().zip(self.kept.chunks(BEAT_LEN)) {
                        *c = beat[j];
                    }
                    column.sort_unstable_by(f32::total_cmp);
                    match n % 2 {
                        1 => column[n / 2],
                        _ => (column[n / 2 - 1] + column[n / 2]) / 2.0,
                    }
                })
                .collect(),
        )
    }
}

/// `beat` relative to `median`, in place: `(x - median) / 2 + 0.5`.
pub fn relative(beat: &mut [f32], median: &[f32]) {
    for (x, m) in beat.iter_mut().zip(median) {
        *x = (*x - m) / 2.0 + 0.5;
    }
}

/// Each record's median beat ([`MedianBeat`]) over its beats in `beats`, in their order there
/// (the records' beats may be interleaved).
pub fn record_medians(beats: &Beats) -> BTreeMap<String, Vec<f32>> {
    let mut medians: BTreeMap<&str, MedianBeat> = BTreeMap::new();
    for (i, record) in beats.record.iter().enumerate() {
        medians.entry(record).or_default().push(beats.beat(i));
    }
    medians
        .into_iter()
        .map(|(r, m)| (r.to_string(), m.median().expect("a record has a beat")))
        .collect()
}

/// Every beat relative to its record's median beat ([`record_medians`]). Beats without a record
/// name (read from a CSV) have no record to refer to: an error.
pub fn to_record_median(beats: &mut Beats) -> Result<()> {
    if let Some(i) = beats.record.iter().position(String::is_empty) {
        return Err(Error::Config(format!(
            "beat {i} has no record: beats relative to their record's median beat need the \
             records (--data-dir), not a CSV of beats (`data export --beat-reference \
             record-median` writes one with the beats already relative)"
        )));
    }
    let medians = record_medians(beats);
    for (beat, record) in beats.x.chunks_mut(BEAT_LEN).zip(&beats.record) {
        relative(beat, &medians[record]);
    }
    Ok(())
}
