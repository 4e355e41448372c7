//! Corpora: a directory of WFDB records and EDF+ files loaded into labelled beats, one record
//! per thread, and the QRS detector scored over one.

use std::path::{Path, PathBuf};

use crate::data::beats::stream;
use crate::data::beats::{BeatMode, BeatPositions, Beats, NO_REFERENCE};
use crate::data::formats::aami::AamiClass;
use crate::data::formats::annotation::{self, Annotation};
use crate::data::formats::files::{Disk, Files};
use crate::data::recording;
use crate::data::signal::acquisition::{Acquisition, DeviceDraw};
use crate::data::signal::qrs;
use crate::error::{Error, Result};

#[derive(Clone, Debug)]
pub struct LoadOptions {
    pub mode: BeatMode,
    /// Lead to use, matched against the header's signal descriptions; a comma-separated list
    /// (`MLII,II,ECG1`) is a preference order.
    pub lead: String,
    /// Use the first signal (with a warning) when a record lacks `lead`; otherwise skip it.
    pub fallback_to_first: bool,
    /// Only these records (all in the directory when `None`).
    pub records: Option<Vec<String>>,
    /// Any skipped record or dropped annotation is an error instead of a line in the summary.
    pub strict: bool,
    /// Each record as another device would have taken it (rate, noise); the default changes
    /// nothing.
    pub acquisition: Acquisition,
    /// Cut beats where the QRS detector finds them, as a user without annotations would, not at
    /// the reference annotations. A detected beat takes the class of the reference beat within
    /// [`qrs::MATCH_WINDOW_S`], else [`NO_REFERENCE`]; records without annotations are read too,
    /// all their beats without a reference.
    pub detect: bool,
    /// Other leads to read each record at too (each a preference list, e.g. `V1,V2,V4,V5` for
    /// MIT-BIH's second lead): every view is a recording of its own, named `RECORD~LEAD` (see
    /// [`patient`]), with its own median beat and record clusters, and the same patient as
    /// the record for splits and folds. A record without the lead has no such view.
    pub views: Vec<String>,
    /// Each record also read at `lead` as another device would have taken it (a rate and noise
    /// drawn per record, see [`DeviceDraw`]), as a view of its own named `RECORD~LEAD@RATEHz`:
    /// training augmentation for recordings from other hardware. Splits and folds keep it with
    /// its record.
    pub device_view: Option<DeviceDraw>,
    /// Where annotated beats are cut: at their annotations, or at the QRS detector's peaks
    /// matched to them (the network's [`crate::preprocessing::Preprocessing::beat_positions`]).
    pub positions: BeatPositions,
}

/// What separates a record's name from the lead of one of its views (`100~V1`).
pub const VIEW_SEPARATOR: char = '~';

/// The patient (record) a beat's recording belongs to: `100~V1` and `100` are both record 100.
/// Splits and folds keep a patient's views together.
pub fn patient(record: &str) -> &str {
    record.split(VIEW_SEPARATOR).next().unwrap_or(record)
}

impl Default for LoadOptions {
    fn default() -> Self {
        Self {
            mode: BeatMode::Kachuee,
            lead: "MLII".into(),
            fallback_to_first: false,
            records: None,
            strict: false,
            acquisition: Acquisition::default(),
            detect: false,
            views: vec![],
            device_view: None,
            positions: BeatPositions::Annotations,
        }
    }
}

#[derive(Clone, Debug, Default)]
pub struct Dataset {
    pub beats: Beats,
    /// (record, beats per AAMI class) in load order.
    pub per_record: Vec<(String, [usize; 5])>,
    /// What was skipped, dropped or substituted, one line per cause (see [`load_dir`]).
    pub warnings: Vec<String>,
    /// Records that could not be used, with the reason (file and place where it is the data).
    pub skipped: Vec<(String, String)>,
    /// Records with annotations outside their signal, and how many (those beats are dropped).
    pub dropped_annotations: Vec<(String, usize)>,
    /// Records asked for (used + skipped).
    pub records_total: usize,
    /// Beat annotations (AAMI classes) of the used records, and how many of them gave no beat:
    /// past the signal's end, or too close to an edge (see [`crate::data::beats::extract_counted`]).
    /// `beats.len() + beats_past_end + beats_at_edges == beat_annotations`.
    pub beat_annotations: usize,
    pub beats_past_end: usize,
    pub beats_at_edges: usize,
    /// Beats the QRS detector found with no reference beat near them ([`LoadOptions::detect`];
    /// labelled [`NO_REFERENCE`], counted in `beats` but not in `beat_annotations`).
    pub unreferenced: usize,
}

/// Record names in `dir`: its `RECORDS` file when present, else every `*.hea` and every `*.edf`
/// (by its file name, e.g. `holter1.edf`; one beside a WFDB record of the same name is that
/// record converted and is left out), else the records one folder down, sorted.
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
        let files: Vec<String> = entries
            .filter_map(|e| e.ok())
            .filter_map(|e| e.file_name().to_str().map(str::to_string))
            .collect();
        let mut v: Vec<String> = files
            .iter()
            .filter_map(|f| f.strip_suffix(".hea").map(str::to_string))
            .collect();
        // EDF files by their file name, unless a WFDB record of the same name is there
        let edf: Vec<String> = files
            .iter()
            .filter(|f| recording::is_edf(Path::new(f)))
            .filter(|f| {
                let stem = &f[..f.len() - 4];
                !v.iter().any(|w| w == stem)
            })
            .cloned()
            .collect();
        v.extend(edf);
        if v.is_empty() {
            // one folder per patient, as PhysioNet lays out the PTB Diagnostic database
            v = nested_records(dir)?;
        }
        v.sort();
        v
    };
    names.dedup();
    if names.is_empty() {
        return Err(Error::data(
            dir,
            "directory",
            "no records found (expected .hea or .edf files, or a RECORDS list)",
        ));
    }
    Ok(names)
}

/// The WFDB records one folder down (`patient001/s0010_re`), for a database with a folder per
/// patient and no `RECORDS` list.
fn nested_records(dir: &Path) -> Result<Vec<String>> {
    let mut names = vec![];
    for entry in std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))? {
        let entry = entry.map_err(|e| Error::io(dir, e))?;
        let (Ok(kind), Some(sub)) = (
            entry.file_type(),
            entry.file_name().to_str().map(String::from),
        ) else {
            continue;
        };
        if !kind.is_dir() {
            continue;
        }
        let inner = std::fs::read_dir(entry.path()).map_err(|e| Error::io(entry.path(), e))?;
        for file in inner.filter_map(|e| e.ok()) {
            if let Some(stem) = file
                .file_name()
                .to_str()
                .and_then(|f| f.strip_suffix(".hea"))
            {
                names.push(format!("{sub}/{stem}"));
            }
        }
    }
    Ok(names)
}

/// One lead of a record in physical units, with its sampling rate, or `Ok(None)` with a warning
/// when the record lacks the lead (and no fallback was asked for); the warning also notes a
/// fallback.
pub type Lead = (Option<(Vec<f32>, f64)>, Option<String>);

/// Reads `opts.lead` of record `name` in `dir` (a WFDB record or an EDF file; see [`Lead`]).
pub fn read_lead(dir: &Path, name: &str, opts: &LoadOptions) -> Result<Lead> {
    let (lead, warning, _) = read_lead_annotated(dir, name, opts)?;
    Ok((lead, warning))
}

/// A [`Lead`] with the record's reference annotations, when it has any.
type AnnotatedLead = (
    Option<(Vec<f32>, f64)>,
    Option<String>,
    Option<Vec<Annotation>>,
);

/// [`read_lead`] with the record's reference annotations within its signal, when it has any.
fn read_lead_annotated(dir: &Path, name: &str, opts: &LoadOptions) -> Result<AnnotatedLead> {
    let mut rec = match recording::open(&dir.join(name), &opts.lead, opts.fallback_to_first)? {
        Ok(rec) => rec,
        Err(have) => {
            let warning = format!(
                "record {name}: skipped, no {} lead (has {have:?})",
                opts.lead
            );
            return Ok((None, Some(warning), None));
        }
    };
    let warning = rec.fallback.as_ref().map(|used| {
        format!(
            "record {name}: no {} lead, using '{used}' instead",
            opts.lead
        )
    });
    let len = rec.lead.len();
    let signal = rec.lead.read(0..len)?;
    Ok((
        Some((signal, rec.lead.fs())),
        warning,
        rec.annotations.take(),
    ))
}

/// What became of one record in [`load_dir`].
enum Outcome {
    Used {
        beats: Beats,
        /// The first signal's description, when the lead was missing.
        fallback: Option<String>,
        /// Annotations past the signal's end, and how many of them were beats.
        dropped: usize,
        dropped_beats: usize,
        /// Beat annotations inside the signal that gave no beat (edges; with
        /// [`LoadOptions::detect`], also the reference beats the detector missed).
        at_edges: usize,
        /// Detected beats without a reference beat ([`LoadOptions::detect`]).
        unreferenced: usize,
    },
    NoLead(Vec<String>),
}

/// Which recording of a record [`load_record`] reads.
#[derive(Clone, Copy)]
enum View<'a> {
    /// The record at the options' lead.
    Record,
    /// A view at another lead (a preference list), named `RECORD~LEAD`.
    Lead(&'a str),
    /// A view at the options' lead through their acquisition, named `RECORD~LEAD@RATEHz`.
    Device,
}

/// Reads one record (`name`: a WFDB record, or an `.edf` file in `dir`) a chunk at a time (see
/// [`stream`]): memory holds its beats, not its signal.
fn load_record(
    files: &dyn Files,
    dir: &Path,
    name: &str,
    view: View,
    opts: &LoadOptions,
) -> Result<Outcome> {
    let path = dir.join(name);
    let (lead, fallback) = match view {
        View::Lead(lead) => (lead, false),
        View::Record | View::Device => (opts.lead.as_str(), opts.fallback_to_first),
    };
    let mut rec = match recording::open_in(files, &path, lead, fallback)? {
        Ok(rec) => opts.acquisition.apply(rec)?,
        Err(have) => return Ok(Outcome::NoLead(have)),
    };
    match view {
        View::Record => {}
        View::Lead(_) => rec.name = format!("{}{VIEW_SEPARATOR}{}", rec.name, rec.label),
        View::Device => {
            let rate = opts
                .acquisition
                .rate
                .map_or(String::new(), |r| format!("@{r}Hz"));
            rec.name = format!("{}{VIEW_SEPARATOR}{}{rate}", rec.name, rec.label);
        }
    }
    if opts.detect {
        return load_detected(rec, opts.mode);
    }
    opts.positions.place(&mut rec)?;
    let Some(annotations) = rec.annotations.take() else {
        return Err(if recording::is_edf(&path) {
            Error::data(
                &path,
                "annotations",
                "no EDF+ beat labels (annotations named N, V, A, ... as WFDB writes them)",
            )
        } else {
            Error::data(
                path.with_extension("atr"),
                "file",
                "missing: a record needs its reference beat annotations",
            )
        });
    };
    if rec.dropped > 0 && opts.strict {
        return Err(Error::data(
            annotation_file(&path),
            "annotations",
            format!(
                "{} past the end of the signal ({} samples); without --strict only their beats are dropped",
                rec.dropped,
                rec.lead.len()
            ),
        ));
    }
    let (beats, at_edges) = cut(&mut rec, &annotations, opts.mode)?;
    Ok(Outcome::Used {
        beats,
        fallback: rec.fallback,
        dropped: rec.dropped,
        dropped_beats: rec.dropped_beats,
        at_edges,
        unreferenced: 0,
    })
}

/// Record `name` at the options' lead as `device` would have taken it, a view named
/// `RECORD~LEAD@RATEHz` (see [`LoadOptions::device_view`]).
fn load_device_view(
    files: &dyn Files,
    dir: &Path,
    name: &str,
    device: Acquisition,
    opts: &LoadOptions,
) -> Result<Outcome> {
    let opts = LoadOptions {
        acquisition: device,
        ..opts.clone()
    };
    load_record(files, dir, name, View::Device, &opts)
}

/// Every beat of `rec` at `annotations`, streamed a chunk at a time, and how many beat
/// annotations gave none (see [`stream::beats`]).
fn cut(
    rec: &mut recording::Recording,
    annotations: &[Annotation],
    mode: BeatMode,
) -> Result<(Beats, usize)> {
    let mut beats = Beats::default();
    let at_edges = stream::beats(
        rec.lead.as_mut(),
        annotations,
        mode,
        &rec.name,
        stream::CHUNK_S,
        |b, _| {
            beats.extend(&b);
            Ok(())
        },
    )?;
    Ok((beats, at_edges))
}

/// [`load_record`] with the beats where the QRS detector finds them (see
/// [`LoadOptions::detect`]): a detected beat takes the class of the reference beat annotation
/// nearest to it within [`qrs::MATCH_WINDOW_S`], else [`NO_REFERENCE`]. Reference beats the
/// detector missed count as beats at the edges (no beat was cut for them).
fn load_detected(mut rec: recording::Recording, mode: BeatMode) -> Result<Outcome> {
    let fs = rec.lead.fs();
    let detected = stream::detect(rec.lead.as_mut(), stream::CHUNK_S, |_| {})?;
    let reference: Vec<(u64, u8)> = rec
        .annotations
        .take()
        .unwrap_or_default()
        .into_iter()
        .filter(|a| AamiClass::from_code(a.code).is_some())
        .map(|a| (a.sample, a.code))
        .collect();
    let window = (qrs::MATCH_WINDOW_S * fs).round() as u64;
    // each detected peak takes the nearest reference beat within the window, each reference
    // beat serving one peak at most
    let reference_at: Vec<u64> = reference.iter().map(|r| r.0).collect();
    let detected_at: Vec<u64> = detected.iter().map(|a| a.sample).collect();
    let matched = qrs::nearest_reference(&reference_at, &detected_at, window);
    let mut unreferenced = std::collections::HashSet::new();
    let mut peaks = Vec::with_capacity(detected.len());
    for (mut a, nearest) in detected.into_iter().zip(matched) {
        match nearest {
            Some(k) => a.code = reference[k].1,
            None => {
                unreferenced.insert(a.sample);
            }
        }
        peaks.push(a);
    }
    // detected peaks too close to an edge lose no reference beat: not counted
    let (mut beats, _) = cut(&mut rec, &peaks, mode)?;
    let mut without = 0;
    for (label, sample) in beats.labels.iter_mut().zip(&beats.sample) {
        if unreferenced.contains(sample) {
            *label = NO_REFERENCE;
            without += 1;
        }
    }
    Ok(Outcome::Used {
        // reference beats without a beat: missed by the detector, or cut too close to an edge
        at_edges: reference.len() - (beats.len() - without),
        unreferenced: without,
        beats,
        fallback: rec.fallback,
        dropped: rec.dropped,
        dropped_beats: rec.dropped_beats,
    })
}

/// The file that holds a record's annotations: its `.atr`, or the EDF+ file itself.
fn annotation_file(path: &Path) -> PathBuf {
    if recording::is_edf(path) {
        path.to_path_buf()
    } else {
        path.with_extension("atr")
    }
}

/// The file that lists a record's signals: its `.hea`, or the EDF file itself.
fn header_file(dir: &Path, name: &str) -> PathBuf {
    let path = dir.join(name);
    if recording::is_edf(&path) {
        path
    } else {
        path.with_extension("hea")
    }
}

/// The one line for every record read from its first signal for lack of `lead`: which records,
/// and the signals used instead (each once).
pub fn fallback_warning(lead: &str, records: &[String], used: &[String]) -> String {
    let mut distinct: Vec<&str> = vec![];
    for u in used {
        if !distinct.contains(&u.as_str()) {
            distinct.push(u);
        }
    }
    format!(
        "lead {lead} missing in {} record{} ({}), used instead: {}",
        records.len(),
        if records.len() == 1 { "" } else { "s" },
        name_list(records),
        distinct.join(", ")
    )
}

/// Up to five names, then how many more.
pub fn name_list(names: &[String]) -> String {
    let mut s = names.iter().take(5).cloned().collect::<Vec<_>>().join(", ");
    if names.len() > 5 {
        s += &format!(" and {} more", names.len() - 5);
    }
    s
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
        let (lead, warning, annotations) = read_lead_annotated(dir, &name, opts)?;
        warnings.extend(warning);
        let Some((signal, fs)) = lead else { continue };
        let annotations = annotations.ok_or_else(|| {
            Error::data(
                annotation_file(&dir.join(&name)),
                "annotations",
                "no reference beat annotations to score the detector against",
            )
        })?;
        let reference: Vec<usize> = annotations
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
    load_from(&Disk, dir, &names, opts)
}

/// Loads records `names` of `dir` from `files` (e.g. records dropped on a web page and held in
/// memory): [`load_dir`] without listing a directory. `opts.records` is not consulted.
pub fn load_from<'a>(
    files: &dyn Files,
    dir: &Path,
    names: &'a [String],
    opts: &'a LoadOptions,
) -> Result<Dataset> {
    type Loaded<'r> = Vec<(&'r str, View<'r>, Result<Outcome>)>;
    // each record, then its views
    let jobs: Vec<(&str, View)> = names
        .iter()
        .flat_map(|n| {
            let device = opts
                .device_view
                .as_ref()
                .map(|_| (n.as_str(), View::Device));
            std::iter::once((n.as_str(), View::Record))
                .chain(opts.views.iter().map(|v| (n.as_str(), View::Lead(v))))
                .chain(device)
        })
        .collect();
    let load = |part: &[(&'a str, View<'a>)]| -> Loaded<'a> {
        part.iter()
            .map(|&(n, view)| {
                let outcome = match (view, &opts.device_view) {
                    (View::Device, Some(draw)) => {
                        load_device_view(files, dir, n, draw.for_record(n), opts)
                    }
                    _ => load_record(files, dir, n, view, opts),
                };
                (n, view, outcome)
            })
            .collect()
    };
    // a browser has one thread
    let threads = if cfg!(target_arch = "wasm32") {
        1
    } else {
        std::thread::available_parallelism()
            .map_or(2, |n| n.get())
            .min(jobs.len())
            .max(1)
    };
    let results: Vec<Loaded> = if threads == 1 {
        vec![load(&jobs)]
    } else {
        let chunk = jobs.len().div_ceil(threads);
        std::thread::scope(|s| {
            let handles: Vec<_> = jobs
                .chunks(chunk)
                .map(|part| s.spawn(move || load(part)))
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().expect("loader thread panicked"))
                .collect()
        })
    };
    let mut ds = Dataset {
        records_total: names.len(),
        ..Default::default()
    };
    let (mut fallbacks, mut used_leads, mut no_lead) = (vec![], vec![], vec![]);
    let (mut view_missing, mut views_read) = (vec![], vec![]);
    let mut devices_read = 0;
    for (name, view, outcome) in results.into_iter().flatten() {
        let label = match view {
            View::Record => None,
            View::Lead(lead) => Some(lead.to_string()),
            View::Device => Some(format!("{}@device", opts.lead)),
        };
        let (name, outcome) = match (label, outcome) {
            (None, outcome) => (name.to_string(), outcome),
            // a view is extra: without its lead the record simply has none
            (Some(_), Ok(Outcome::NoLead(_))) => {
                if let View::Lead(lead) = view {
                    view_missing.push((lead, name.to_string()));
                }
                continue;
            }
            (Some(label), Ok(used)) => {
                let view_name = match &used {
                    Outcome::Used { beats, .. } => beats.record.first().cloned(),
                    Outcome::NoLead(_) => None,
                };
                match view {
                    View::Lead(lead) => views_read.push(lead),
                    _ => devices_read += 1,
                }
                let name = view_name.unwrap_or_else(|| format!("{name}{VIEW_SEPARATOR}{label}"));
                (name, Ok(used))
            }
            (Some(_), Err(e)) if opts.strict => return Err(e),
            (Some(label), Err(e)) => {
                ds.warnings
                    .push(format!("record {name}: its {label} view skipped: {e}"));
                continue;
            }
        };
        match outcome {
            Ok(Outcome::Used {
                beats,
                fallback,
                dropped,
                dropped_beats,
                at_edges,
                unreferenced,
            }) => {
                ds.beat_annotations += beats.len() - unreferenced + dropped_beats + at_edges;
                ds.unreferenced += unreferenced;
                ds.beats_past_end += dropped_beats;
                ds.beats_at_edges += at_edges;
                if let Some(used) = fallback {
                    fallbacks.push(name.clone());
                    used_leads.push(used);
                }
                if dropped > 0 {
                    ds.dropped_annotations.push((name.clone(), dropped));
                }
                let mut counts = [0usize; 5];
                for &l in beats.labels.iter().filter(|&&l| l != NO_REFERENCE) {
                    counts[l as usize] += 1;
                }
                ds.per_record.push((name, counts));
                ds.beats.extend(&beats);
            }
            Ok(Outcome::NoLead(have)) => {
                if opts.strict {
                    return Err(Error::data(
                        header_file(dir, &name),
                        "signals",
                        format!("no {} lead (has {have:?})", opts.lead),
                    ));
                }
                no_lead.push(name.clone());
                ds.skipped
                    .push((name, format!("no {} lead (has {have:?})", opts.lead)));
            }
            Err(e) if opts.strict => return Err(e),
            Err(e) => ds.skipped.push((name, e.to_string())),
        }
    }
    // one line per view and cause, not per record
    for lead in &opts.views {
        let read = views_read.iter().filter(|&&l| l == lead).count();
        let missing: Vec<String> = view_missing
            .iter()
            .filter(|(l, _)| *l == lead)
            .map(|(_, n)| n.clone())
            .collect();
        let mut line = format!(
            "{read} record{} also read at lead {lead} (views named RECORD{VIEW_SEPARATOR}LEAD)",
            if read == 1 { "" } else { "s" }
        );
        if !missing.is_empty() {
            line += &format!("; without it: {}", name_list(&missing));
        }
        ds.warnings.push(line);
    }
    if let Some(device) = &opts.device_view {
        let read = devices_read;
        let rates: Vec<String> = device.rates.iter().map(|r| format!("{r}")).collect();
        let levels: Vec<&str> = device.levels.iter().map(|l| l.name()).collect();
        ds.warnings.push(format!(
            "{read} record{} also read as another device would have taken {} (a rate of {} Hz \
             and {} noise drawn per record, seed {}; views named RECORD{VIEW_SEPARATOR}LEAD@RATEHz)",
            if read == 1 { "" } else { "s" },
            if read == 1 { "it" } else { "them" },
            rates.join(", "),
            levels.join(" or "),
            device.seed
        ));
    }
    // one line per cause, not per record
    if !fallbacks.is_empty() {
        ds.warnings
            .push(fallback_warning(&opts.lead, &fallbacks, &used_leads));
    }
    if !no_lead.is_empty() {
        ds.warnings.push(format!(
            "lead {} missing in {} record{} ({}): skipped (--fallback-lead reads their first signal)",
            opts.lead,
            no_lead.len(),
            if no_lead.len() == 1 { "" } else { "s" },
            name_list(&no_lead)
        ));
    }
    for (name, reason) in &ds.skipped {
        if !no_lead.contains(name) {
            ds.warnings.push(format!("record {name} skipped: {reason}"));
        }
    }
    if !ds.dropped_annotations.is_empty() {
        let total: usize = ds.dropped_annotations.iter().map(|d| d.1).sum();
        let which: Vec<String> = ds
            .dropped_annotations
            .iter()
            .map(|(n, k)| format!("{n} ({k})"))
            .collect();
        ds.warnings.push(format!(
            "{total} annotation{} past the end of the signal dropped with their beats: {}",
            if total == 1 { "" } else { "s" },
            name_list(&which)
        ));
    }
    if !ds.skipped.is_empty() {
        let names: Vec<String> = ds.skipped.iter().map(|s| s.0.clone()).collect();
        ds.warnings.push(format!(
            "{} of {} records used; skipped: {}",
            ds.records_total - ds.skipped.len(),
            ds.records_total,
            name_list(&names)
        ));
    }
    Ok(ds)
}

impl Dataset {
    /// One line that accounts for every beat annotation of the used records.
    /// What loading skipped or substituted ("warning: ...", one line per cause), then the
    /// [`Self::summary`] line.
    pub fn report_lines(&self) -> Vec<String> {
        let mut lines: Vec<String> = self
            .warnings
            .iter()
            .map(|w| format!("warning: {w}"))
            .collect();
        lines.push(self.summary());
        lines
    }

    pub fn summary(&self) -> String {
        if self.unreferenced > 0 || self.beats.labels.contains(&NO_REFERENCE) {
            return format!(
                "{} of {} records used: {} beats found by the QRS detector, {} of them at one of \
                 {} reference beat annotations, {} without a reference beat; {} reference beats \
                 without a detected beat (missed, or too close to a record's edge), {} past the \
                 end of the signal",
                self.records_total - self.skipped.len(),
                self.records_total,
                self.beats.len(),
                self.beats.len() - self.unreferenced,
                self.beat_annotations,
                self.unreferenced,
                self.beats_at_edges,
                self.beats_past_end
            );
        }
        format!(
            "{} of {} records used: {} beats from {} beat annotations ({} too close to a record's \
             edge, {} past the end of the signal)",
            self.records_total - self.skipped.len(),
            self.records_total,
            self.beats.len(),
            self.beat_annotations,
            self.beats_at_edges,
            self.beats_past_end
        )
    }
}

/// AAMI counts of the reference annotations of every record in `dir` (all beats, no extraction;
/// `.atr` files, or EDF+ beat labels), and the records whose annotations could not be read, with
/// the reason.
pub fn annotation_counts(dir: &Path) -> Result<(Vec<RecordCounts>, Vec<Unread>)> {
    let (mut counted, mut unread) = (vec![], vec![]);
    for name in list_records(dir)? {
        match reference_codes(&dir.join(&name)) {
            Ok(codes) => {
                let mut counts = [0usize; 5];
                for c in codes.into_iter().filter_map(AamiClass::from_code) {
                    counts[c as usize] += 1;
                }
                counted.push((name, counts));
            }
            Err(e) => unread.push((name, e.to_string())),
        }
    }
    Ok((counted, unread))
}

/// A record's name and its reference beats per AAMI class.
pub type RecordCounts = (String, [usize; 5]);
/// A record's name and why its annotations could not be read.
pub type Unread = (String, String);

/// The annotation codes of record `path`: its `.atr`, or an EDF+ file's beat mnemonics.
fn reference_codes(path: &Path) -> Result<Vec<u8>> {
    if recording::is_edf(path) {
        let header = crate::data::formats::edf::EdfHeader::read(path)?;
        return Ok(recording::edf_annotation_codes(path, &header)?
            .into_iter()
            .map(|(_, code)| code)
            .collect());
    }
    Ok(annotation::read(&path.with_extension("atr"))?
        .iter()
        .map(|a| a.code)
        .collect())
}
