//! One lead of a recording, read piece by piece: a 24-hour Holter record is 30 M samples per
//! lead, and nothing downstream needs more than a few minutes of it at a time. Sources are a
//! WFDB record (any of the signal formats `wfdb.rs` reads) or an EDF/EDF+ file, each with its
//! beat annotations when it has them (`.atr`, or EDF+ annotations named by WFDB mnemonics).

use std::io::SeekFrom;
use std::ops::Range;
use std::path::{Path, PathBuf};

use crate::data::formats::aami::AamiClass;
use crate::data::formats::annotation::{self, Annotation};
use crate::data::formats::edf::EdfHeader;
use crate::data::formats::files::{Disk, Files, ReadSeek};
use crate::data::formats::wfdb::{bytes_for, decode, FileLayout, Header, SignalSpec};
use crate::error::{Error, Result};

/// One lead in physical units, read a range of samples at a time.
pub trait LeadSource {
    /// Samples per second.
    fn fs(&self) -> f64;
    /// Samples in the lead.
    fn len(&self) -> usize;
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Samples `range` (within `0..len()`).
    fn read(&mut self, range: Range<usize>) -> Result<Vec<f32>>;
}

/// A lead already in memory: borrowed (`&[f32]`: tests, callers that hold the whole signal
/// anyway) or owned ([`OwnedLead`]).
pub struct MemoryLead<S: AsRef<[f32]>> {
    pub signal: S,
    pub fs: f64,
}

/// A lead held in memory and owned: a recording transformed whole (see
/// [`crate::data::signal::acquisition`]), or a caller's own array.
pub type OwnedLead = MemoryLead<Vec<f32>>;

impl<S: AsRef<[f32]>> LeadSource for MemoryLead<S> {
    fn fs(&self) -> f64 {
        self.fs
    }
    fn len(&self) -> usize {
        self.signal.as_ref().len()
    }
    fn read(&mut self, range: Range<usize>) -> Result<Vec<f32>> {
        Ok(self.signal.as_ref()[range].to_vec())
    }
}

/// One signal of a WFDB record, decoded from its signal file a range of frames at a time.
pub struct WfdbLead {
    path: PathBuf,
    file: Box<dyn ReadSeek + Send>,
    file_len: u64,
    layout: FileLayout,
    /// The signal's place within each frame of its file.
    member: usize,
    spec: SignalSpec,
    fs: f64,
}

impl WfdbLead {
    /// Opens signal `signal` of record `base` (a path without extension).
    pub fn open(base: &Path, header: &Header, signal: usize) -> Result<Self> {
        Self::open_in(&Disk, base, header, signal)
    }

    /// [`Self::open`] from `files`.
    pub fn open_in(files: &dyn Files, base: &Path, header: &Header, signal: usize) -> Result<Self> {
        let spec = &header.signals[signal];
        let dir = base.parent().unwrap_or(Path::new("."));
        let path = dir.join(&spec.file);
        let members: Vec<usize> = (0..header.signals.len())
            .filter(|&i| header.signals[i].file == spec.file)
            .collect();
        let (file, file_len) = files.open(&path)?;
        let layout = FileLayout::new(&path, header, &members, file_len)?;
        Ok(Self {
            member: members.iter().position(|&i| i == signal).unwrap_or(0),
            path,
            file,
            file_len,
            layout,
            spec: spec.clone(),
            fs: header.fs,
        })
    }
}

impl LeadSource for WfdbLead {
    fn fs(&self) -> f64 {
        self.fs
    }
    fn len(&self) -> usize {
        self.layout.frames
    }
    fn read(&mut self, range: Range<usize>) -> Result<Vec<f32>> {
        let FileLayout {
            format,
            byte_offset,
            signals,
            ..
        } = self.layout;
        // from an even value index, so format 212's three-byte pairs stay whole
        let first = range.start * signals / 2 * 2;
        let last = range.end * signals;
        let from = byte_offset + bytes_for(format, first) as u64;
        let to = (byte_offset + bytes_for(format, last) as u64).min(self.file_len);
        let mut bytes = vec![0u8; to.saturating_sub(from) as usize];
        self.file
            .seek(SeekFrom::Start(from))
            .and_then(|_| self.file.read_exact(&mut bytes))
            .map_err(|e| Error::io(&self.path, e))?;
        Ok(range
            .map(|f| {
                self.spec
                    .physical(decode(format, &bytes, f * signals + self.member - first))
            })
            .collect())
    }
}

/// One ordinary signal of an EDF/EDF+ file, read a range of data records at a time.
pub struct EdfLead {
    path: PathBuf,
    file: Box<dyn ReadSeek + Send>,
    header: EdfHeader,
    signal: usize,
}

impl EdfLead {
    pub fn open(path: &Path, header: EdfHeader, signal: usize) -> Result<Self> {
        Self::open_in(&Disk, path, header, signal)
    }

    /// [`Self::open`] from `files`.
    pub fn open_in(
        files: &dyn Files,
        path: &Path,
        header: EdfHeader,
        signal: usize,
    ) -> Result<Self> {
        Ok(Self {
            path: path.to_path_buf(),
            file: files.open(path)?.0,
            header,
            signal,
        })
    }

    /// Data records `records`, whole.
    fn read_records(&mut self, records: Range<usize>) -> Result<Vec<u8>> {
        let size = self.header.record_bytes();
        let mut bytes = vec![0u8; records.len() * size];
        self.file
            .seek(SeekFrom::Start(
                (self.header.header_bytes + records.start * size) as u64,
            ))
            .and_then(|_| self.file.read_exact(&mut bytes))
            .map_err(|e| Error::io(&self.path, e))?;
        Ok(bytes)
    }
}

impl LeadSource for EdfLead {
    fn fs(&self) -> f64 {
        self.header.fs(self.signal)
    }
    fn len(&self) -> usize {
        self.header.records * self.header.signals[self.signal].samples_per_record
    }
    fn read(&mut self, range: Range<usize>) -> Result<Vec<f32>> {
        let s = self.header.signals[self.signal].clone();
        let per = s.samples_per_record.max(1);
        if range.is_empty() {
            return Ok(vec![]);
        }
        let records = range.start / per..(range.end - 1) / per + 1;
        let bytes = self.read_records(records.clone())?;
        let (size, at) = (
            self.header.record_bytes(),
            self.header.signal_offset(self.signal),
        );
        Ok(range
            .map(|k| {
                let (r, i) = (k / per - records.start, k % per);
                let b = r * size + at + 2 * i;
                s.physical(i16::from_le_bytes([bytes[b], bytes[b + 1]]))
            })
            .collect())
    }
}

/// The EDF+ annotations of a file, read a block of data records at a time: (onset in seconds,
/// text), without the records' time-keeping entries.
pub fn edf_annotations(path: &Path, header: &EdfHeader) -> Result<Vec<(f64, String)>> {
    edf_annotations_in(&Disk, path, header)
}

/// [`edf_annotations`] from `files`.
pub fn edf_annotations_in(
    files: &dyn Files,
    path: &Path,
    header: &EdfHeader,
) -> Result<Vec<(f64, String)>> {
    let mut out = vec![];
    if !header.signals.iter().any(|s| s.is_annotations()) {
        return Ok(out);
    }
    let (mut file, _) = files.open(path)?;
    let size = header.record_bytes();
    let block = (4 << 20) / size.max(1) + 1;
    file.seek(SeekFrom::Start(header.header_bytes as u64))
        .map_err(|e| Error::io(path, e))?;
    for start in (0..header.records).step_by(block) {
        let n = block.min(header.records - start);
        let mut bytes = vec![0u8; n * size];
        file.read_exact(&mut bytes)
            .map_err(|e| Error::io(path, e))?;
        for r in 0..n {
            header.record_annotations(
                &bytes[r * size..(r + 1) * size],
                start + r,
                path,
                &mut out,
            )?;
        }
    }
    out.retain(|(_, text)| !text.is_empty());
    Ok(out)
}

/// The EDF+ annotations of a file that are WFDB mnemonics, as (onset in seconds, annotation
/// code): how an EDF+ file labels its beats (`data to-edf` writes them so).
pub fn edf_annotation_codes(path: &Path, header: &EdfHeader) -> Result<Vec<(f64, u8)>> {
    edf_annotation_codes_in(&Disk, path, header)
}

/// [`edf_annotation_codes`] from `files`.
pub fn edf_annotation_codes_in(
    files: &dyn Files,
    path: &Path,
    header: &EdfHeader,
) -> Result<Vec<(f64, u8)>> {
    Ok(edf_annotations_in(files, path, header)?
        .into_iter()
        .filter_map(|(onset, text)| Some((onset, annotation::code_from_mnemonic(&text)?)))
        .collect())
}

/// Which signal of a recording to read for a lead preference.
#[derive(Clone, Debug, PartialEq)]
pub enum LeadChoice {
    /// The first lead of the preference list the recording has.
    Found(usize),
    /// None of them: a lead standing in for them, else the first signal, whose label is given
    /// (`fallback_to_first`).
    Fallback(usize, String),
    /// None of them and no fallback: the recording's signal labels.
    Missing(Vec<String>),
}

/// Leads that stand in for a wanted one when a recording lacks it: MIT-BIH's MLII is lead II
/// with the limb electrodes moved to the torso, so a standard lead II (INCART, PTB, 12-lead
/// EDF files) shows the same projection of the heart's axis, where lead I or V1 do not.
const NEAR_LEADS: &[(&str, &[&str])] = &[("MLII", &["II", "ML2", "ECG II", "Lead II"])];

/// Picks the signal for `lead` (a comma-separated preference list, matched without regard to
/// case) among `signals` (index and label: a WFDB header's descriptions, an EDF file's ordinary
/// signals). With `fallback_to_first`, a recording without it gives a lead that stands in for
/// it ([`NEAR_LEADS`]: lead II for MLII), else its first signal. The one lead choice for every
/// format.
pub fn choose_lead(signals: &[(usize, &str)], lead: &str, fallback_to_first: bool) -> LeadChoice {
    let find = |want: &str| {
        signals
            .iter()
            .find(|(_, label)| label.trim().eq_ignore_ascii_case(want))
    };
    let wanted = || lead.split(',').map(str::trim);
    let near = || {
        wanted()
            .filter_map(|want| {
                NEAR_LEADS
                    .iter()
                    .find(|(l, _)| l.eq_ignore_ascii_case(want))
            })
            .flat_map(|(_, near)| near.iter())
            .find_map(|&n| find(n))
    };
    match (wanted().find_map(find), signals.first()) {
        (Some(&(i, _)), _) => LeadChoice::Found(i),
        (None, Some(&(first, label))) if fallback_to_first => match near() {
            Some(&(i, near)) => LeadChoice::Fallback(i, near.to_string()),
            None => LeadChoice::Fallback(first, label.to_string()),
        },
        _ => LeadChoice::Missing(signals.iter().map(|(_, l)| l.to_string()).collect()),
    }
}

/// A recording opened for reading: the lead chosen, and its reference annotations if it has any.
pub struct Recording {
    /// The record's name: the WFDB record name, or the EDF file's name without `.edf`.
    pub name: String,
    pub lead: Box<dyn LeadSource + Send>,
    /// The chosen signal's description or label.
    pub label: String,
    /// When the preferred leads were missing: the signal used instead.
    pub fallback: Option<String>,
    /// Reference annotations within the signal (an `.atr`, or EDF+ beat mnemonics), sorted; `None`
    /// when there are none, so the QRS detector must find the beats.
    pub annotations: Option<Vec<Annotation>>,
    /// Annotations at or past the signal's end, and how many of them were beats (dropped).
    pub dropped: usize,
    pub dropped_beats: usize,
}

/// Whether `path` names an EDF/EDF+ file (by its extension).
pub fn is_edf(path: &Path) -> bool {
    path.extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("edf"))
}

/// Opens `path` (a WFDB record path without extension, or an `.edf` file) at the first of `lead`
/// (a preference list) it has (else its first signal with `fallback_to_first`), or `Ok(Err(have))`
/// with the signals it has when it has none of them.
pub fn open(
    path: &Path,
    lead: &str,
    fallback_to_first: bool,
) -> Result<std::result::Result<Recording, Vec<String>>> {
    open_in(&Disk, path, lead, fallback_to_first)
}

/// Opens `path` at the first of `lead` it has, else its first signal (`Recording::fallback`
/// says so); an error when it has no signal at all (an EDF+ file of annotations only).
pub fn open_any(files: &dyn Files, path: &Path, lead: &str) -> Result<Recording> {
    open_in(files, path, lead, true)?.map_err(|_| {
        Error::data(
            path,
            "signals",
            "no signal to read: the file holds annotations only",
        )
    })
}

/// [`open`] from `files` (e.g. [`crate::data::formats::files::MemoryFiles`]).
pub fn open_in(
    files: &dyn Files,
    path: &Path,
    lead: &str,
    fallback_to_first: bool,
) -> Result<std::result::Result<Recording, Vec<String>>> {
    if is_edf(path) {
        return open_edf(files, path, lead, fallback_to_first);
    }
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or_else(|| Error::data(path, "path", "expected a record path such as dir/100"))?
        .to_string();
    let header = Header::read_in(files, &path.with_extension("hea"))?;
    let signals: Vec<(usize, &str)> = header
        .signals
        .iter()
        .enumerate()
        .map(|(i, s)| (i, s.description.as_str()))
        .collect();
    let (signal, fallback) = match choose_lead(&signals, lead, fallback_to_first) {
        LeadChoice::Found(i) => (i, None),
        LeadChoice::Fallback(i, used) => (i, Some(used)),
        LeadChoice::Missing(have) => return Ok(Err(have)),
    };
    let lead = WfdbLead::open_in(files, path, &header, signal)?;
    let atr = path.with_extension("atr");
    let all = if files.is_file(&atr) {
        Some(annotation::read_in(files, &atr)?)
    } else {
        None
    };
    Ok(Ok(Recording::new(
        name,
        Box::new(lead),
        header.signals[signal].description.clone(),
        fallback,
        all,
    )))
}

fn open_edf(
    files: &dyn Files,
    path: &Path,
    lead: &str,
    fallback_to_first: bool,
) -> Result<std::result::Result<Recording, Vec<String>>> {
    let header = EdfHeader::read_in(files, path)?;
    let name = path
        .file_stem()
        .and_then(|n| n.to_str())
        .unwrap_or("edf")
        .to_string();
    let ordinary: Vec<(usize, &str)> = header
        .signals
        .iter()
        .enumerate()
        .filter(|(_, s)| !s.is_annotations())
        .map(|(i, s)| (i, s.label.as_str()))
        .collect();
    let (signal, fallback) = match choose_lead(&ordinary, lead, fallback_to_first) {
        LeadChoice::Found(i) => (i, None),
        LeadChoice::Fallback(i, used) => (i, Some(used)),
        LeadChoice::Missing(have) => return Ok(Err(have)),
    };
    let fs = header.fs(signal);
    let label = header.signals[signal].label.clone();
    // EDF+ beat labels: annotations named by a WFDB mnemonic that is a beat
    let annotations: Vec<Annotation> = edf_annotation_codes_in(files, path, &header)?
        .into_iter()
        .map(|(onset, code)| Annotation::new((onset * fs).round().max(0.0) as u64, code))
        .collect();
    let has_beats = annotations
        .iter()
        .any(|a| AamiClass::from_code(a.code).is_some());
    let lead = EdfLead::open_in(files, path, header, signal)?;
    Ok(Ok(Recording::new(
        name,
        Box::new(lead),
        label,
        fallback,
        has_beats.then_some(annotations),
    )))
}

/// The annotations within a signal of `len` samples, sorted by sample; how many lay at or past
/// its end (an annotation at the very end is legal in practice, but its beat cannot be cut), and
/// how many of those were beats.
pub(crate) fn within(all: Vec<Annotation>, len: usize) -> (Vec<Annotation>, usize, usize) {
    let (mut inside, outside): (Vec<Annotation>, Vec<Annotation>) =
        all.into_iter().partition(|a| a.sample < len as u64);
    inside.sort_by_key(|a| a.sample);
    let beats = outside
        .iter()
        .filter(|a| AamiClass::from_code(a.code).is_some())
        .count();
    (inside, outside.len(), beats)
}

impl Recording {
    /// A lead held in memory (a caller's array at `fs` Hz, physical units or ADC values), with
    /// its beat annotations when known (`None`: the QRS detector finds the beats). It then goes
    /// through exactly the path a file's lead takes. `label` names the lead (for warnings);
    /// annotations past the signal's end are dropped and counted as a file's are. A rate that
    /// is not a positive number, or a sample that is not finite, is an error naming it.
    pub fn from_signal(
        name: &str,
        label: &str,
        signal: Vec<f32>,
        fs: f64,
        annotations: Option<Vec<Annotation>>,
    ) -> Result<Self> {
        if !(fs.is_finite() && fs > 0.0) {
            return Err(Error::Config(format!(
                "{name}: sampling rate {fs} Hz: must be a positive number"
            )));
        }
        if let Some((i, v)) = signal.iter().enumerate().find(|(_, v)| !v.is_finite()) {
            return Err(Error::Config(format!(
                "{name}: sample {i} is {v}: every sample must be a finite number"
            )));
        }
        Ok(Self::new(
            name.to_string(),
            Box::new(OwnedLead { signal, fs }),
            label.to_string(),
            None,
            annotations,
        ))
    }

    fn new(
        name: String,
        lead: Box<dyn LeadSource + Send>,
        label: String,
        fallback: Option<String>,
        all: Option<Vec<Annotation>>,
    ) -> Self {
        let (mut dropped, mut dropped_beats) = (0, 0);
        let annotations = all.map(|all| {
            let inside;
            (inside, dropped, dropped_beats) = within(all, lead.len());
            inside
        });
        Self {
            name,
            lead,
            label,
            fallback,
            annotations,
            dropped,
            dropped_beats,
        }
    }
}
