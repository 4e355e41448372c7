//! Beats of a long recording, a piece at a time, with memory bounded by the piece and not by
//! the recording: QRS detection and beat cutting on chunks of a few minutes.
//!
//! Beat cutting is exact: each chunk is read with margins, resampled from an input sample that is
//! a multiple of the resampling ratio's denominator (so every 125-Hz sample has the value the
//! whole-record resampling gives it), and chunks end on Kachuee's 10-s windows. The streamed
//! beats therefore equal [`crate::data::beats::extract`]'s, bit for bit.
//!
//! QRS detection runs on each chunk with [`DETECT_MARGIN_S`] of context on each side (the
//! detector learns its levels from its first 8 s and its filters settle within a second), keeps
//! the peaks inside the chunk, and drops a peak closer than the refractory period to the one
//! before it (one beat seen from both sides of a boundary). It is not bit-identical to the
//! whole-record detector, whose adaptive levels carry across the record: with 30-s chunks on
//! record 208 (noisy, many PVCs) the two differ on 45 of 2,894 beats, and the streamed one finds
//! more of the reference beats (sensitivity 0.993 against 0.979). Tested in `tests/data.rs`.

use crate::data::beats::{BeatMode, Beats, Labelled, FS, KACHUEE_WINDOW};
use crate::data::formats::aami::AamiClass;
use crate::data::formats::annotation::Annotation;
use crate::data::recording::{LeadSource, Recording};
use crate::data::signal::noise::NoiseIndex;
use crate::data::signal::qrs;
use crate::data::signal::resample::{gcd, ratio, reach, resample};
use crate::error::Result;

/// A beat annotation (its index in the recording's annotations) and the QRS detector's peak
/// matched to it, if any.
type Matched = (usize, Option<u64>);

/// Each beat annotation of `rec` with the QRS detector's peak matched to it within
/// [`qrs::MATCH_WINDOW_S`]; `None` without annotations.
fn detector_peaks(rec: &mut Recording) -> Result<Option<Vec<Matched>>> {
    if rec.annotations.is_none() {
        return Ok(None);
    }
    let detected: Vec<u64> = detect(rec.lead.as_mut(), CHUNK_S, |_| {})?
        .iter()
        .map(|a| a.sample)
        .collect();
    let annotations = rec.annotations.as_ref().expect("checked above");
    let beats: Vec<usize> = (0..annotations.len())
        .filter(|&i| AamiClass::from_code(annotations[i].code).is_some())
        .collect();
    let reference: Vec<u64> = beats.iter().map(|&i| annotations[i].sample).collect();
    let window = (qrs::MATCH_WINDOW_S * rec.lead.fs()).round() as u64;
    let mut to: Vec<Matched> = beats.iter().map(|&i| (i, None)).collect();
    for (&peak, k) in detected
        .iter()
        .zip(qrs::nearest_reference(&reference, &detected, window))
    {
        if let Some(k) = k {
            to[k].1 = Some(peak);
        }
    }
    Ok(Some(to))
}

/// The median of (matched detector peak − beat annotation) in samples: where a recording's
/// annotations sit on the QRS complex, as the detector sees it. `None` when no beat matched.
fn median_offset(annotations: &[Annotation], peaks: &[Matched]) -> Option<i64> {
    let mut offsets: Vec<i64> = peaks
        .iter()
        .filter_map(|&(i, p)| p.map(|p| p as i64 - annotations[i].sample as i64))
        .collect();
    offsets.sort_unstable();
    offsets.get(offsets.len() / 2).copied()
}

/// [`median_offset`] of `rec`'s beat annotations, in samples at the lead's rate.
pub fn annotation_offset(rec: &mut Recording) -> Result<Option<i64>> {
    let Some(peaks) = detector_peaks(rec)? else {
        return Ok(None);
    };
    Ok(median_offset(
        rec.annotations.as_deref().unwrap_or_default(),
        &peaks,
    ))
}

/// Moves every annotation of `rec` by the median offset of its beat annotations to the QRS
/// detector's peaks when that offset is more than `beyond_ms` (see
/// [`crate::data::beats::BeatPositions::Registered`]); returns that offset in samples when
/// they moved.
pub fn register_annotations(rec: &mut Recording, beyond_ms: f64) -> Result<Option<i64>> {
    let Some(offset) = annotation_offset(rec)? else {
        return Ok(None);
    };
    if (offset as f64 * 1000.0 / rec.lead.fs()).abs() <= beyond_ms {
        return Ok(None);
    }
    let last = rec.lead.len().saturating_sub(1) as i64;
    let annotations = rec
        .annotations
        .as_mut()
        .expect("annotation_offset saw them");
    for a in annotations.iter_mut() {
        a.sample = (a.sample as i64 + offset).clamp(0, last) as u64;
    }
    Ok(Some(offset))
}

/// Moves each beat annotation of `rec` to the QRS detector's peak matched to it (see
/// [`crate::data::beats::BeatPositions::Detector`]); returns how many moved. A beat the
/// detector missed moves by the median offset of the matched ones (a database's annotations
/// sit at one point of the QRS complex); annotations that are not beats stay where they are.
pub fn place_at_detector(rec: &mut Recording) -> Result<usize> {
    let Some(peaks) = detector_peaks(rec)? else {
        return Ok(0);
    };
    let last = rec.lead.len().saturating_sub(1) as i64;
    let annotations = rec.annotations.as_mut().expect("detector_peaks saw them");
    let offset = median_offset(annotations, &peaks).unwrap_or(0);
    let mut moved = 0;
    for (i, peak) in peaks {
        let a = &mut annotations[i];
        let at = peak.unwrap_or_else(|| (a.sample as i64 + offset).clamp(0, last) as u64);
        moved += usize::from(a.sample != at);
        a.sample = at;
    }
    annotations.sort_by_key(|a| a.sample);
    Ok(moved)
}

/// Default chunk length: ten minutes (a few MB per lead at any rate).
pub const CHUNK_S: f64 = 600.0;
/// Context read on each side of a chunk for QRS detection.
pub const DETECT_MARGIN_S: f64 = 10.0;

/// How a lead at `fs` is cut into chunks whose beats equal the whole record's.
#[derive(Clone, Copy, Debug)]
struct Plan {
    up: usize,
    down: usize,
    /// Chunk length at the input rate and at 125 Hz (a multiple of `down` and of the 10-s window).
    core_in: usize,
    core_out: usize,
    /// Context read on each side, at the input rate (a multiple of `down`).
    margin_in: usize,
}

fn lcm(a: usize, b: usize) -> usize {
    a / gcd(a as u64, b as u64) as usize * b
}

impl Plan {
    fn new(fs: f64, chunk_s: f64) -> Self {
        let (up, down) = ratio(fs, FS);
        // chunk starts map to whole 125-Hz samples and whole 10-s windows
        let unit = lcm(KACHUEE_WINDOW, up);
        let core_out = ((chunk_s * FS / unit as f64).round() as usize).max(1) * unit;
        let core_in = core_out / up * down;
        // the resampling filter's reach, plus a centred beat's 187 samples (1.5 s), rounded up
        let context = reach(fs, FS) + (2.0 * fs).ceil() as usize + 1;
        Self {
            up,
            down,
            core_in,
            core_out,
            margin_in: context.div_ceil(down) * down,
        }
    }
}

/// One chunk of a lead at 125 Hz, as [`beats`] and [`noise`] read it.
pub struct Chunk<'a> {
    /// The 125-Hz signal from index `offset` on, with context on both sides of `take`.
    pub x: &'a [f32],
    pub offset: usize,
    /// The 125-Hz positions whose beats belong to this chunk.
    pub take: std::ops::Range<usize>,
}

/// The length at 125 Hz of `n` samples at `fs`.
fn len_at_125(n: usize, fs: f64) -> usize {
    let (up, down) = ratio(fs, FS);
    (n * up).div_ceil(down)
}

/// Walks `lead` a chunk of about `chunk_s` seconds at a time, resampled to 125 Hz so that every
/// beat's samples equal the whole record's.
fn chunks(
    lead: &mut dyn LeadSource,
    chunk_s: f64,
    mut each: impl FnMut(Chunk<'_>) -> Result<()>,
) -> Result<()> {
    let (n, fs) = (lead.len(), lead.fs());
    let plan = Plan::new(fs, chunk_s);
    let total = len_at_125(n, fs);
    for k in 0..total.div_ceil(plan.core_out) {
        let take = k * plan.core_out..((k + 1) * plan.core_out).min(total);
        let (a, b) = (k * plan.core_in, ((k + 1) * plan.core_in).min(n));
        let read = a.saturating_sub(plan.margin_in)..(b + plan.margin_in).min(n);
        let offset = read.start / plan.down * plan.up;
        let x = resample(&lead.read(read)?, fs, FS);
        each(Chunk {
            x: &x,
            offset,
            take,
        })?;
    }
    Ok(())
}

/// The beats of `lead` at `annotations` (sorted by sample; non-beat annotations are ignored), a
/// chunk of about `chunk_s` seconds at a time: `each` gets every chunk's beats (possibly none)
/// and the chunk they were cut from. Returns how many beat annotations gave no beat (too close
/// to an edge, or in a 10-s window without a heart period to cut by; see
/// [`crate::data::beats::extract_counted`]). Beats at or past the end of the lead must be
/// dropped before.
pub fn beats(
    lead: &mut dyn LeadSource,
    annotations: &[Annotation],
    mode: BeatMode,
    record: &str,
    chunk_s: f64,
    mut each: impl FnMut(Beats, &Chunk<'_>) -> Result<()>,
) -> Result<usize> {
    let (n, fs) = (lead.len(), lead.fs());
    let labelled = Labelled::new(annotations, fs, len_at_125(n, fs));
    let mut cut = 0;
    chunks(lead, chunk_s, |chunk| {
        let beats = labelled.cut(chunk.x, chunk.offset, chunk.take.clone(), mode, record);
        cut += beats.len();
        each(beats, &chunk)
    })?;
    let beat_annotations = beats_within(annotations, n).count();
    Ok(beat_annotations - cut)
}

/// The beat annotations (an AAMI class's) before sample `n`.
fn beats_within(annotations: &[Annotation], n: usize) -> impl Iterator<Item = &Annotation> {
    annotations
        .iter()
        .filter(move |a| AamiClass::from_code(a.code).is_some() && a.sample < n as u64)
}

/// The R peaks of the beat annotations of a lead of `n` samples at `fs`, at 125 Hz and sorted:
/// what [`NoiseIndex::push_chunk`] measures around.
pub fn peaks_at_125(annotations: &[Annotation], fs: f64, n: usize) -> Vec<usize> {
    let mut peaks: Vec<usize> = beats_within(annotations, n)
        .map(|a| (a.sample as f64 * FS / fs).round() as usize)
        .collect();
    peaks.sort_unstable();
    peaks
}

/// How noisy `lead` is around its beats at `annotations` ([`NoiseIndex`]), read as [`beats`]
/// reads it, without cutting beats; `None` when it has too few beats.
pub fn noise(
    lead: &mut dyn LeadSource,
    annotations: &[Annotation],
    chunk_s: f64,
) -> Result<Option<f32>> {
    let peaks = peaks_at_125(annotations, lead.fs(), lead.len());
    let mut index = NoiseIndex::default();
    chunks(lead, chunk_s, |chunk| {
        index.push_chunk(chunk.x, chunk.offset, chunk.take, &peaks);
        Ok(())
    })?;
    Ok(index.index())
}

/// R peaks of `lead` found by [`qrs::detect`] a chunk of about `chunk_s` seconds at a time,
/// as N-beat annotations; `progress` gets the samples done.
pub fn detect(
    lead: &mut dyn LeadSource,
    chunk_s: f64,
    mut progress: impl FnMut(usize),
) -> Result<Vec<Annotation>> {
    let (n, fs) = (lead.len(), lead.fs());
    let core = ((chunk_s * fs).round() as usize).max(1);
    let margin = (DETECT_MARGIN_S * fs).round() as usize;
    let refractory = (0.2 * fs).round() as u64;
    let mut peaks: Vec<u64> = vec![];
    for a in (0..n).step_by(core) {
        let b = (a + core).min(n);
        let read = a.saturating_sub(margin)..(b + margin).min(n);
        let signal = lead.read(read.clone())?;
        for p in qrs::detect(&signal, fs) {
            let p = (p + read.start) as u64;
            let inside = (a as u64..b as u64).contains(&p);
            if inside && peaks.last().is_none_or(|&last| p - last > refractory) {
                peaks.push(p);
            }
        }
        progress(b);
    }
    Ok(peaks
        .into_iter()
        .map(|p| Annotation::new(p, AamiClass::N.code()))
        .collect())
}
