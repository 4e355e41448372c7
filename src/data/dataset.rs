//! Loading a directory of WFDB records into labelled beats, one record per thread.

use std::path::{Path, PathBuf};

use super::aami::AamiClass;
use super::annotation::{self, Annotation};
use super::beats::{extract, BeatMode, Beats};
use super::qrs;
use super::wfdb::{Header, Record};
use crate::error::{Error, Result};

/// The MIT-BIH subset shipped in the repository (see `data/README.md`).
pub fn embedded_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("data")
        .join("mitdb")
}

#[derive(Clone, Debug)]
pub struct LoadOptions {
    pub mode: BeatMode,
    /// Lead to use, matched against the header's signal descriptions.
    pub lead: String,
    /// Use the first signal (with a warning) when a record lacks `lead`; otherwise skip it.
    pub fallback_to_first: bool,
    /// Only these records (all in the directory when `None`).
    pub records: Option<Vec<String>>,
}

impl Default for LoadOptions {
    fn default() -> Self {
        Self {
            mode: BeatMode::Kachuee,
            lead: "MLII".into(),
            fallback_to_first: false,
            records: None,
        }
    }
}

#[derive(Clone, Debug, Default)]
pub struct Dataset {
    pub beats: Beats,
    /// (record, beats per AAMI class) in load order.
    pub per_record: Vec<(String, [usize; 5])>,
    /// Records skipped or read with a substitute lead, and why.
    pub warnings: Vec<String>,
}

/// Record names in `dir`: its `RECORDS` file when present, else every `*.hea`, sorted.
pub fn list_records(dir: &Path) -> Result<Vec<String>> {
    let records_file = dir.join("RECORDS");
    let mut names: Vec<String> = if records_file.is_file() {
        std::fs::read_to_string(&records_file)
            .map_err(|e| Error::io(&records_file, e))?
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(str::to_string)
            .collect()
    } else {
        let entries = std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))?;
        let mut v: Vec<String> = entries
            .filter_map(|e| e.ok())
            .filter_map(|e| {
                e.file_name()
                    .to_str()?
                    .strip_suffix(".hea")
                    .map(str::to_string)
            })
            .collect();
        v.sort();
        v
    };
    names.dedup();
    if names.is_empty() {
        return Err(Error::data(
            dir,
            "directory",
            "no WFDB records found (expected .hea files or a RECORDS list)",
        ));
    }
    Ok(names)
}

/// A record's beats (`None` when skipped) and an optional warning.
type Loaded = (Option<Beats>, Option<String>);

/// One lead of a record in physical units, with its sampling rate, or `Ok(None)` with a warning
/// when the record lacks the lead (and no fallback was asked for); the warning also notes a
/// fallback.
pub type Lead = (Option<(Vec<f32>, f64)>, Option<String>);

/// Reads `opts.lead` of record `name` in `dir` (see [`Lead`]).
pub fn read_lead(dir: &Path, name: &str, opts: &LoadOptions) -> Result<Lead> {
    let base = dir.join(name);
    let header = Header::read(&base.with_extension("hea"))?;
    let (lead, warning) = match header.signal_index(&opts.lead) {
        Some(i) => (i, None),
        None if opts.fallback_to_first && !header.signals.is_empty() => (
            0,
            Some(format!(
                "record {name}: no {} lead, using '{}' instead",
                opts.lead, header.signals[0].description
            )),
        ),
        None => {
            let have: Vec<&str> = header
                .signals
                .iter()
                .map(|s| s.description.as_str())
                .collect();
            return Ok((
                None,
                Some(format!(
                    "record {name}: skipped, no {} lead (has {have:?})",
                    opts.lead
                )),
            ));
        }
    };
    let record = Record::read(&base, Some(&[lead]))?;
    Ok((Some((record.physical(lead), record.header.fs)), warning))
}

/// A record's reference annotations, checked to lie within its `len` samples.
fn read_annotations(base: &Path, len: usize) -> Result<Vec<Annotation>> {
    let atr = base.with_extension("atr");
    let annotations = annotation::read(&atr)?;
    if let Some((i, a)) = annotations
        .iter()
        .enumerate()
        .find(|(_, a)| a.sample >= len as u64)
    {
        return Err(Error::data(
            &atr,
            format!("annotation {} at sample {}", i + 1, a.sample),
            format!("past the end of the signal ({len} samples)"),
        ));
    }
    Ok(annotations)
}

/// One record's beats, or `Ok(None)` with a warning when it lacks the lead.
fn load_record(dir: &Path, name: &str, opts: &LoadOptions) -> Result<Loaded> {
    let (lead, warning) = read_lead(dir, name, opts)?;
    let Some((signal, fs)) = lead else {
        return Ok((None, warning));
    };
    let annotations = read_annotations(&dir.join(name), signal.len())?;
    Ok((
        Some(extract(&signal, fs, &annotations, opts.mode, name)),
        warning,
    ))
}

/// A record's name and its detection scores.
pub type RecordMatches = (String, qrs::Matches);

/// The QRS detector ([`qrs::detect`]) on every record of `dir` against its reference beat
/// annotations, matched within [`qrs::MATCH_WINDOW_S`]. Records without the lead are skipped
/// with a warning (or read from their first signal with `opts.fallback_to_first`).
pub fn detection_scores(
    dir: &Path,
    opts: &LoadOptions,
) -> Result<(Vec<RecordMatches>, Vec<String>)> {
    let names = match &opts.records {
        Some(r) => r.clone(),
        None => list_records(dir)?,
    };
    let mut scores = vec![];
    let mut warnings = vec![];
    for name in names {
        let (lead, warning) = read_lead(dir, &name, opts)?;
        warnings.extend(warning);
        let Some((signal, fs)) = lead else { continue };
        let reference: Vec<usize> = read_annotations(&dir.join(&name), signal.len())?
            .iter()
            .filter(|a| AamiClass::from_code(a.code).is_some())
            .map(|a| a.sample as usize)
            .collect();
        let detected = qrs::detect(&signal, fs);
        let window = (qrs::MATCH_WINDOW_S * fs).round() as usize;
        scores.push((name, qrs::match_beats(&reference, &detected, window)));
    }
    Ok((scores, warnings))
}

/// Loads every record of `dir` (see [`LoadOptions`]), in parallel across the machine's cores.
pub fn load_dir(dir: &Path, opts: &LoadOptions) -> Result<Dataset> {
    if !dir.is_dir() {
        return Err(Error::data(dir, "path", "not a directory"));
    }
    let names = match &opts.records {
        Some(r) => r.clone(),
        None => list_records(dir)?,
    };
    let threads = std::thread::available_parallelism()
        .map_or(2, |n| n.get())
        .min(names.len())
        .max(1);
    let chunk = names.len().div_ceil(threads);
    let results: Vec<Result<Vec<(String, Loaded)>>> = std::thread::scope(|s| {
        let handles: Vec<_> = names
            .chunks(chunk)
            .map(|part| {
                s.spawn(move || {
                    part.iter()
                        .map(|n| load_record(dir, n, opts).map(|loaded| (n.clone(), loaded)))
                        .collect::<Result<Vec<_>>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("loader thread panicked"))
            .collect()
    });
    let mut ds = Dataset::default();
    for part in results {
        for (name, (beats, warning)) in part? {
            ds.warnings.extend(warning);
            if let Some(b) = beats {
                let mut counts = [0usize; 5];
                for &l in &b.labels {
                    counts[l as usize] += 1;
                }
                ds.per_record.push((name, counts));
                ds.beats.extend(&b);
            }
        }
    }
    Ok(ds)
}

/// AAMI counts of the reference annotations of every record in `dir` (all beats, no extraction).
pub fn annotation_counts(dir: &Path) -> Result<Vec<(String, [usize; 5])>> {
    list_records(dir)?
        .into_iter()
        .map(|name| {
            let mut counts = [0usize; 5];
            for a in annotation::read(&dir.join(format!("{name}.atr")))? {
                if let Some(c) = AamiClass::from_code(a.code) {
                    counts[c as usize] += 1;
                }
            }
            Ok((name, counts))
        })
        .collect()
}
