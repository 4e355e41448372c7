//! Beat extraction: one lead resampled to 125 Hz, cut into 187-sample beats at the annotated
//! R peaks, each labelled with its AAMI class.

pub mod reference;
pub mod rr;
pub mod stream;

use serde::{Deserialize, Serialize};

use crate::data::beats::rr::{rr_features, Rhythm};
use crate::data::formats::aami::AamiClass;
use crate::data::formats::annotation::Annotation;
use crate::data::signal::resample::resample;

/// The paper's rate and beat length (Kachuee et al. 2018).
pub const FS: f64 = 125.0;
pub const BEAT_LEN: usize = 187;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "cli", derive(clap::ValueEnum))]
#[serde(rename_all = "lowercase")]
pub enum BeatMode {
    /// Kachuee et al. 2018: 10 s windows min-max normalised, nominal period T = median R–R of the
    /// window's R-peak candidates, each beat = 1.2·T samples from its R peak, zero-padded.
    Kachuee,
    /// A fixed window around the R peak: 0.25 s before, 1.246 s after (187 samples), min-max.
    Centred,
    /// Kachuee's cut, each beat then min-max normalised over its own samples: a spike, a step
    /// or baseline wander elsewhere in the 10-s window no longer shrinks or shifts it.
    #[serde(rename = "kachuee-beat")]
    #[cfg_attr(feature = "cli", value(name = "kachuee-beat"))]
    KachueeBeat,
}

impl BeatMode {
    /// The name flags and files use.
    pub fn name(self) -> &'static str {
        match self {
            Self::Kachuee => "kachuee",
            Self::Centred => "centred",
            Self::KachueeBeat => "kachuee-beat",
        }
    }

    /// Every mode, for parsing names.
    pub const ALL: [BeatMode; 3] = [Self::Kachuee, Self::Centred, Self::KachueeBeat];
}

/// Where a recording's beats are cut when it has beat annotations.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BeatPositions {
    /// At the annotations, where MIT-BIH puts them (the R peak).
    #[default]
    Annotations,
    /// At the QRS detector's peak matched to each annotation within
    /// [`crate::data::signal::qrs::MATCH_WINDOW_S`] (an annotation without one stays): for a
    /// network trained on the detector's beats (`train --detect`), which then sees the same
    /// positions whatever point of the QRS complex a database annotates.
    Detector,
    /// At the annotations, all moved by one offset per recording when they sit more than
    /// `beyond_ms` from the QRS detector's peaks (the median over matched beats), so that they
    /// sit where MIT-BIH's do: at the detector's peak (median 0 ms on every DS1 record at MLII,
    /// `examples/annotation_offset.rs`). For a network trained at MIT-BIH's annotations reading
    /// a database that marks its beats at another point of the QRS complex; recordings whose
    /// annotations sit within `beyond_ms` are read as they are.
    Registered { beyond_ms: u32 },
}

impl BeatPositions {
    /// Moves `rec`'s beat annotations to where a network with these positions cuts its beats.
    /// Returns the shift in ms when [`Self::Registered`] moved them all (a user should know).
    pub fn place(self, rec: &mut crate::data::recording::Recording) -> crate::Result<Option<f64>> {
        match self {
            Self::Annotations => Ok(None),
            Self::Detector => stream::place_at_detector(rec).map(|_| None),
            Self::Registered { beyond_ms } => {
                let fs = rec.lead.fs();
                let by = stream::register_annotations(rec, beyond_ms.into())?;
                Ok(by.map(|samples| samples as f64 * 1000.0 / fs))
            }
        }
    }

    /// How beats are placed, for a report.
    pub fn describe(self) -> String {
        match self {
            Self::Annotations => "at the annotations".into(),
            Self::Detector => "at the QRS detector's peaks matched to the annotations".into(),
            Self::Registered { beyond_ms } => format!(
                "at the annotations, moved to the QRS detector's peaks when a recording's sit \
                 more than {beyond_ms} ms from them"
            ),
        }
    }

    /// The positions of a network trained with or without `train --detect`.
    pub fn trained(detect: bool) -> Self {
        match detect {
            true => Self::Detector,
            false => Self::Annotations,
        }
    }
}

/// The label of a beat without a reference class: one the QRS detector found where the
/// recording has no beat annotation (see [`crate::data::corpus::dataset::LoadOptions::detect`]).
pub const NO_REFERENCE: u32 = u32::MAX;

/// Beats as a row-major `[n, 187]` array with labels and provenance.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Beats {
    pub x: Vec<f32>,
    pub labels: Vec<u32>,
    /// Record name of each beat ("" for beats read from CSV).
    pub record: Vec<String>,
    /// R-peak sample index in the original record (at its own sampling rate).
    pub sample: Vec<u64>,
    /// R–R features of each beat ([`crate::data::beats::rr::RR_FEATURES`]), from the record's beat positions;
    /// the nominal rhythm for beats read from CSV.
    pub rr: Vec<Rhythm>,
}

impl Beats {
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    pub fn beat(&self, i: usize) -> &[f32] {
        &self.x[i * BEAT_LEN..(i + 1) * BEAT_LEN]
    }

    /// Appends one beat with its provenance and R–R features.
    pub fn push(&mut self, beat: &[f32], label: u32, (record, sample): (&str, u64), rr: Rhythm) {
        debug_assert_eq!(beat.len(), BEAT_LEN);
        self.x.extend_from_slice(beat);
        self.labels.push(label);
        self.record.push(record.to_string());
        self.sample.push(sample);
        self.rr.push(rr);
    }

    pub fn extend(&mut self, other: &Beats) {
        self.x.extend_from_slice(&other.x);
        self.labels.extend_from_slice(&other.labels);
        self.record.extend_from_slice(&other.record);
        self.sample.extend_from_slice(&other.sample);
        self.rr.extend_from_slice(&other.rr);
    }

    /// The beats at `indices`, in that order.
    pub fn select(&self, indices: &[usize]) -> Beats {
        let mut out = Beats::default();
        for &i in indices {
            out.push(
                self.beat(i),
                self.labels[i],
                (&self.record[i], self.sample[i]),
                self.rr[i],
            );
        }
        out
    }

    /// The indices of the beats with a reference class: not those a QRS detector found with no
    /// reference beat near them ([`NO_REFERENCE`]).
    pub fn referenced_indices(&self) -> Vec<usize> {
        (0..self.len())
            .filter(|&b| self.labels[b] != NO_REFERENCE)
            .collect()
    }

    /// The beats with a reference class ([`Self::referenced_indices`]), e.g. for training.
    pub fn referenced(&self) -> Beats {
        self.select(&self.referenced_indices())
    }

    /// Beats per class (index = label).
    pub fn class_counts(&self, classes: usize) -> Vec<usize> {
        let mut c = vec![0; classes];
        for &l in &self.labels {
            if (l as usize) < classes {
                c[l as usize] += 1;
            }
        }
        c
    }
}

/// Scales `x` to [0, 1] in place (a flat segment becomes all zeros).
pub fn min_max(x: &mut [f32]) {
    let (lo, hi) = x
        .iter()
        .fold((f32::INFINITY, f32::NEG_INFINITY), |(lo, hi), &v| {
            (lo.min(v), hi.max(v))
        });
    let range = hi - lo;
    for v in x.iter_mut() {
        *v = if range > 0.0 { (*v - lo) / range } else { 0.0 };
    }
}

/// Extracts the labelled beats of one lead. `signal` is in physical units at `fs`;
/// annotations are at `fs` too. Beats too close to the record's edges are skipped.
pub fn extract(
    signal: &[f32],
    fs: f64,
    annotations: &[Annotation],
    mode: BeatMode,
    record: &str,
) -> Beats {
    extract_counted(signal, fs, annotations, mode, record).0
}

/// The beats at the R peaks the QRS detector ([`crate::data::signal::qrs::detect`]) finds, labelled N: for
/// recordings without beat annotations.
pub fn extract_detected(signal: &[f32], fs: f64, mode: BeatMode, record: &str) -> Beats {
    let peaks: Vec<Annotation> = crate::data::signal::qrs::detect(signal, fs)
        .into_iter()
        .map(|p| Annotation::new(p as u64, AamiClass::N.code()))
        .collect();
    extract(signal, fs, &peaks, mode, record)
}

/// [`extract`], also returning how many beat annotations (AAMI classes) gave no beat: too close
/// to an edge of the record, or in a 10-s window with no heart period to cut by.
pub fn extract_counted(
    signal: &[f32],
    fs: f64,
    annotations: &[Annotation],
    mode: BeatMode,
    record: &str,
) -> (Beats, usize) {
    let beat_annotations = annotations
        .iter()
        .filter(|a| AamiClass::from_code(a.code).is_some())
        .count();
    let x = resample(signal, fs, FS);
    let labelled = Labelled::new(annotations, fs, x.len());
    let beats = labelled.cut(&x, 0, 0..x.len(), mode, record);
    let skipped = beat_annotations - beats.len();
    (beats, skipped)
}

/// A record's beat annotations ready to cut: each beat's R peak at 125 Hz, its sample at the
/// record's rate, class and R–R features (from every beat annotation of the record, kept or
/// not), sorted by position. Beats past the end of the 125-Hz signal are left out.
pub(crate) struct Labelled {
    beats: Vec<(usize, u64, AamiClass, Rhythm)>,
    /// The 125-Hz signal's length.
    total: usize,
}

impl Labelled {
    pub(crate) fn new(annotations: &[Annotation], fs: f64, total: usize) -> Self {
        let to_125 = |s: u64| (s as f64 * FS / fs).round() as usize;
        let mut beat_positions: Vec<u64> = annotations
            .iter()
            .filter(|a| AamiClass::from_code(a.code).is_some())
            .map(|a| a.sample)
            .collect();
        beat_positions.sort_unstable();
        let features = rr_features(&beat_positions, fs);
        let rr_of = |sample: u64| {
            beat_positions
                .binary_search(&sample)
                .map_or(crate::data::beats::rr::NOMINAL, |k| features[k])
        };
        let mut beats: Vec<(usize, u64, AamiClass, Rhythm)> = annotations
            .iter()
            .filter_map(|a| {
                AamiClass::from_code(a.code)
                    .map(|c| (to_125(a.sample), a.sample, c, rr_of(a.sample)))
            })
            .filter(|b| b.0 < total)
            .collect();
        // stable: annotations at one position keep their file order
        beats.sort_by_key(|b| b.0);
        Self { beats, total }
    }

    /// The beats in the 125-Hz range `take`, cut from `x`: the 125-Hz signal from index `offset`
    /// on. `x` must hold `take` and, for the centred window, the 187 samples around each beat
    /// that are inside the record; in Kachuee mode `take` starts on a 10-s window.
    pub(crate) fn cut(
        &self,
        x: &[f32],
        offset: usize,
        take: std::ops::Range<usize>,
        mode: BeatMode,
        record: &str,
    ) -> Beats {
        let total = self.total;
        let lo = self.beats.partition_point(|b| b.0 < take.start);
        let hi = self.beats.partition_point(|b| b.0 < take.end);
        let in_take = &self.beats[lo..hi];
        let mut beats = Beats::default();
        match mode {
            BeatMode::Centred => {
                let before = (0.25 * FS) as usize;
                for &(t, sample, class, rr) in in_take {
                    if t < before || t - before + BEAT_LEN > total {
                        continue;
                    }
                    let from = t - before - offset;
                    let mut beat = x[from..from + BEAT_LEN].to_vec();
                    min_max(&mut beat);
                    beats.push(&beat, class.label(), (record, sample), rr);
                }
            }
            BeatMode::Kachuee | BeatMode::KachueeBeat => {
                for start in (take.start..take.end.min(total)).step_by(KACHUEE_WINDOW) {
                    let end = (start + KACHUEE_WINDOW).min(total);
                    let mut w = x[start - offset..end - offset].to_vec();
                    min_max(&mut w);
                    let from = in_take.partition_point(|b| b.0 < start);
                    let to = in_take.partition_point(|b| b.0 < end);
                    let in_window = &in_take[from..to];
                    let Some(period) = nominal_period(&w).or_else(|| median_rr(in_window)) else {
                        continue;
                    };
                    let len = ((1.2 * period as f64).round() as usize).min(BEAT_LEN);
                    for &(t, sample, class, rr) in in_window {
                        let seg_end = (t - start + len).min(w.len());
                        let mut beat = vec![0.0f32; BEAT_LEN];
                        let seg = &mut beat[..seg_end - (t - start)];
                        seg.copy_from_slice(&w[t - start..seg_end]);
                        if mode == BeatMode::KachueeBeat {
                            min_max(seg);
                        }
                        beats.push(&beat, class.label(), (record, sample), rr);
                    }
                }
            }
        }
        beats
    }
}

/// Kachuee's normalisation window at 125 Hz (10 s), counted from the record's start.
pub(crate) const KACHUEE_WINDOW: usize = (10.0 * FS) as usize;

/// Kachuee's nominal heartbeat period of a min-max-normalised window: the median distance
/// between R-peak candidates, i.e. local maxima (first-difference sign changes) above 0.9.
/// Candidates within 0.2 s of the previous one are the same peak; a median outside a plausible
/// heart period (0.3–2 s) is rejected so the caller falls back to the annotated R–R intervals.
fn nominal_period(w: &[f32]) -> Option<usize> {
    let refractory = (0.2 * FS) as usize;
    let mut peaks: Vec<usize> = vec![];
    for i in 1..w.len().saturating_sub(1) {
        let is_peak = w[i] > 0.9 && w[i] - w[i - 1] > 0.0 && w[i + 1] - w[i] <= 0.0;
        if is_peak && peaks.last().is_none_or(|&p| i - p > refractory) {
            peaks.push(i);
        }
    }
    let plausible = (0.3 * FS) as usize..=(2.0 * FS) as usize;
    median(peaks.windows(2).map(|p| p[1] - p[0]).collect()).filter(|m| plausible.contains(m))
}

/// Fallback when a window has fewer than two candidates: the annotated R–R intervals.
fn median_rr(beats: &[(usize, u64, AamiClass, Rhythm)]) -> Option<usize> {
    median(beats.windows(2).map(|p| p[1].0 - p[0].0).collect())
}

fn median(mut v: Vec<usize>) -> Option<usize> {
    v.sort_unstable();
    v.get(v.len() / 2).copied().filter(|&m| m > 0)
}
