//! EDF and EDF+ (European Data Format): the 16-bit format most Holter and sleep recorders export.
//! Written here rather than taken from a crate: the format is a fixed-width ASCII header and
//! little-endian i16 samples (about 200 lines with the checks), and the crates that exist
//! (edf-reader 0.6, edfplus 0.1, edf-rs 0.2) are young, either async-first or without EDF+
//! annotation support, and none names the offending header field in its errors.
//!
//! Layout: a 256-byte header, 256 bytes per signal (each field stored for all signals in turn),
//! then data records, each holding `samples_per_record` i16 values of every signal in order.
//! Physical value = (digital - digital_min) · (physical_max - physical_min) /
//! (digital_max - digital_min) + physical_min. EDF+ adds an "EDF Annotations" signal of
//! time-stamped annotation lists (TALs): `+onset[\x15duration]\x14text\x14...\x00`.

use std::path::Path;

use crate::error::{Error, Result};

/// The label of EDF+'s annotation signal.
pub const ANNOTATIONS_LABEL: &str = "EDF Annotations";

#[derive(Clone, Debug, PartialEq)]
pub struct EdfSignal {
    pub label: String,
    pub dimension: String,
    pub physical_min: f64,
    pub physical_max: f64,
    pub digital_min: i32,
    pub digital_max: i32,
    pub samples_per_record: usize,
}

impl EdfSignal {
    pub fn is_annotations(&self) -> bool {
        self.label == ANNOTATIONS_LABEL
    }

    /// A digital sample in physical units.
    pub fn physical(&self, d: i16) -> f32 {
        let scale = (self.physical_max - self.physical_min)
            / f64::from(self.digital_max - self.digital_min);
        ((f64::from(d) - f64::from(self.digital_min)) * scale + self.physical_min) as f32
    }
}

/// An EDF/EDF+ header, checked against the file's size.
#[derive(Clone, Debug)]
pub struct EdfHeader {
    pub patient: String,
    pub recording: String,
    /// "EDF+C" / "EDF+D" for EDF+, empty for plain EDF.
    pub reserved: String,
    pub record_duration: f64,
    pub signals: Vec<EdfSignal>,
    /// Bytes before the first data record.
    pub header_bytes: usize,
    /// Data records in the file.
    pub records: usize,
}

impl EdfHeader {
    /// Bytes per data record (all signals).
    pub fn record_bytes(&self) -> usize {
        2 * self
            .signals
            .iter()
            .map(|s| s.samples_per_record)
            .sum::<usize>()
    }

    /// Byte offset of signal `i` within a data record.
    pub fn signal_offset(&self, i: usize) -> usize {
        2 * self.signals[..i]
            .iter()
            .map(|s| s.samples_per_record)
            .sum::<usize>()
    }

    /// Sampling rate of signal `i`.
    pub fn fs(&self, i: usize) -> f64 {
        self.signals[i].samples_per_record as f64 / self.record_duration
    }

    /// Appends the annotations (TALs) of every annotation signal of data record `index`
    /// (0-based), whose bytes are `record`: one parser for the whole-file and the piecewise
    /// readers, with errors naming the record and signal in `path`.
    pub(crate) fn record_annotations(
        &self,
        record: &[u8],
        index: usize,
        path: &Path,
        out: &mut Vec<(f64, String)>,
    ) -> Result<()> {
        for (i, s) in self.signals.iter().enumerate() {
            if !s.is_annotations() {
                continue;
            }
            let from = self.signal_offset(i);
            parse_tals(&record[from..from + 2 * s.samples_per_record], out).map_err(|what| {
                Error::data(
                    path,
                    format!("data record {}, signal {} (annotations)", index + 1, i + 1),
                    what,
                )
            })?;
        }
        Ok(())
    }

    /// The index of the first signal whose label matches one of `leads` (a comma-separated
    /// preference list, case-insensitive), or of the first ordinary signal with `fallback`.
    pub fn signal_index(&self, leads: &str, fallback: bool) -> Option<usize> {
        let ordinary = |i: &usize| !self.signals[*i].is_annotations();
        leads
            .split(',')
            .map(str::trim)
            .find_map(|want| {
                (0..self.signals.len())
                    .filter(ordinary)
                    .find(|&i| self.signals[i].label.eq_ignore_ascii_case(want))
            })
            .or_else(|| {
                fallback
                    .then(|| (0..self.signals.len()).find(ordinary))
                    .flatten()
            })
    }

    /// Reads the header of `path` only (for reading its data records piece by piece).
    pub fn read(path: &Path) -> Result<Self> {
        Self::read_in(&super::files::Disk, path)
    }

    /// [`Self::read`] from `files`.
    pub fn read_in(files: &dyn super::files::Files, path: &Path) -> Result<Self> {
        let (mut file, len) = files.open(path)?;
        let mut bytes = vec![0u8; 256.min(len as usize)];
        file.read_exact(&mut bytes)
            .map_err(|e| Error::io(path, e))?;
        // the signal count sits in the fixed part; a bad one is reported by `parse`
        let ns = field(&bytes, 252, 4)
            .parse::<usize>()
            .unwrap_or(0)
            .min(4096);
        if bytes.len() == 256 && ns > 0 {
            let total = (256 * (ns + 1)).min(len as usize);
            bytes.resize(total, 0);
            file.read_exact(&mut bytes[256..])
                .map_err(|e| Error::io(path, e))?;
        }
        Self::parse(&bytes, len, path)
    }

    /// Parses the header at the start of `bytes`, for a file of `file_len` bytes.
    pub fn parse(bytes: &[u8], file_len: u64, path: &Path) -> Result<Self> {
        let bad = |at: String, what: String| Error::data(path, at, what);
        if bytes.len() < 256 {
            return Err(bad(
                "header".into(),
                format!("{} bytes, an EDF header has 256", bytes.len()),
            ));
        }
        if &bytes[0..8] != b"0       " {
            return Err(bad(
                "header field 'version' (bytes 0-7)".into(),
                format!("{:?}, EDF requires \"0\"", field(bytes, 0, 8)),
            ));
        }
        let number = |start: usize, len: usize, name: &str| -> Result<f64> {
            let text = field(bytes, start, len);
            text.parse::<f64>()
                .ok()
                .filter(|v| v.is_finite())
                .ok_or_else(|| {
                    bad(
                        format!("header field '{name}' (bytes {start}-{})", start + len - 1),
                        format!("{text:?} is not a number"),
                    )
                })
        };
        let header_bytes = number(184, 8, "header bytes")? as usize;
        let records = number(236, 8, "number of data records")?;
        let record_duration = number(244, 8, "duration of a data record")?;
        let ns = number(252, 4, "number of signals")?;
        if !(ns >= 1.0 && ns.fract() == 0.0 && ns <= 4096.0) {
            return Err(bad(
                "header field 'number of signals' (bytes 252-255)".into(),
                format!("{ns} signals"),
            ));
        }
        let ns = ns as usize;
        if header_bytes != 256 * (ns + 1) || file_len < header_bytes as u64 {
            return Err(bad(
                "header field 'header bytes' (bytes 184-191)".into(),
                format!(
                    "{header_bytes}, {ns} signals need {} (file has {} bytes)",
                    256 * (ns + 1),
                    file_len
                ),
            ));
        }
        if record_duration < 0.0 {
            return Err(bad(
                "header field 'duration of a data record' (bytes 244-251)".into(),
                format!("{record_duration} s"),
            ));
        }
        // Signal fields: each is stored for all ns signals in turn.
        let widths = [16, 80, 8, 8, 8, 8, 8, 80, 8, 32];
        let names = [
            "label",
            "transducer",
            "physical dimension",
            "physical minimum",
            "physical maximum",
            "digital minimum",
            "digital maximum",
            "prefiltering",
            "samples per data record",
            "reserved",
        ];
        let mut starts = vec![256];
        for w in widths {
            starts.push(starts.last().unwrap() + w * ns);
        }
        let sig_field = |f: usize, i: usize| field(bytes, starts[f] + i * widths[f], widths[f]);
        let sig_number = |f: usize, i: usize| -> Result<f64> {
            let text = sig_field(f, i);
            text.parse::<f64>()
                .ok()
                .filter(|v| v.is_finite())
                .ok_or_else(|| {
                    bad(
                        format!(
                            "signal {} ({}) field '{}'",
                            i + 1,
                            sig_field(0, i),
                            names[f]
                        ),
                        format!("{text:?} is not a number"),
                    )
                })
        };
        let mut signals = Vec::with_capacity(ns);
        for i in 0..ns {
            let s = EdfSignal {
                label: sig_field(0, i),
                dimension: sig_field(2, i),
                physical_min: sig_number(3, i)?,
                physical_max: sig_number(4, i)?,
                digital_min: sig_number(5, i)? as i32,
                digital_max: sig_number(6, i)? as i32,
                samples_per_record: sig_number(8, i)? as usize,
            };
            let at = |f: usize| format!("signal {} ({}) field '{}'", i + 1, s.label, names[f]);
            if s.digital_max <= s.digital_min {
                return Err(bad(
                    at(6),
                    format!(
                        "digital maximum {} must exceed the minimum {}",
                        s.digital_max, s.digital_min
                    ),
                ));
            }
            if s.physical_max == s.physical_min {
                return Err(bad(
                    at(4),
                    format!("physical maximum equals the minimum ({})", s.physical_min),
                ));
            }
            signals.push(s);
        }
        let per_record: usize = signals.iter().map(|s| s.samples_per_record).sum();
        let complete = (file_len - header_bytes as u64) as usize / (2 * per_record).max(1);
        // -1 means "unknown" while recording: use what the file holds
        let records = if records < 0.0 {
            complete
        } else {
            records as usize
        };
        if complete < records {
            return Err(bad(
                    format!("data record {}", complete + 1),
                    format!(
                        "the header declares {records} data records of {} bytes, the file holds {complete}",
                        2 * per_record
                    ),
                ));
        }
        Ok(EdfHeader {
            patient: field(bytes, 8, 80),
            recording: field(bytes, 88, 80),
            reserved: field(bytes, 192, 44),
            record_duration,
            signals,
            header_bytes,
            records,
        })
    }
}

/// A whole EDF/EDF+ file in memory: its signals' digital samples and EDF+ annotations.
#[derive(Clone, Debug)]
pub struct Edf {
    pub header: EdfHeader,
    /// Digital samples per signal (empty for the annotation signal).
    pub digital: Vec<Vec<i16>>,
    /// EDF+ annotations: (onset in seconds from the start, text).
    pub annotations: Vec<(f64, String)>,
}

fn field(bytes: &[u8], start: usize, len: usize) -> String {
    String::from_utf8_lossy(&bytes[start..start + len])
        .trim()
        .to_string()
}

impl Edf {
    /// Reads and checks a file; errors name the header field (and signal) or the data record.
    pub fn read(path: &Path) -> Result<Self> {
        let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
        Self::parse(&bytes, path)
    }

    pub fn parse(bytes: &[u8], path: &Path) -> Result<Self> {
        let header = EdfHeader::parse(bytes, bytes.len() as u64, path)?;
        let (signals, records) = (&header.signals, header.records);
        let data = &bytes[header.header_bytes..];
        let mut digital: Vec<Vec<i16>> = signals
            .iter()
            .map(|s| {
                Vec::with_capacity(if s.is_annotations() {
                    0
                } else {
                    s.samples_per_record * records
                })
            })
            .collect();
        let mut annotations = vec![];
        let size = header.record_bytes();
        for r in 0..records {
            let record = &data[r * size..(r + 1) * size];
            header.record_annotations(record, r, path, &mut annotations)?;
            for (i, s) in signals.iter().enumerate() {
                if !s.is_annotations() {
                    let from = header.signal_offset(i);
                    digital[i].extend(
                        record[from..from + 2 * s.samples_per_record]
                            .chunks_exact(2)
                            .map(|b| i16::from_le_bytes([b[0], b[1]])),
                    );
                }
            }
        }
        // EDF+ puts each record's start time as an empty-text TAL; those are not annotations
        annotations.retain(|(_, text): &(f64, String)| !text.is_empty());
        Ok(Edf {
            header,
            digital,
            annotations,
        })
    }

    /// Sampling rate of signal `i`.
    pub fn fs(&self, i: usize) -> f64 {
        self.header.fs(i)
    }

    /// Signal `i` in physical units.
    pub fn physical(&self, i: usize) -> Vec<f32> {
        let s = &self.header.signals[i];
        self.digital[i].iter().map(|&d| s.physical(d)).collect()
    }
}

/// Appends the TALs of one annotation-signal chunk: `+onset[\x15duration]\x14text\x14...\x00`.
pub(crate) fn parse_tals(
    chunk: &[u8],
    out: &mut Vec<(f64, String)>,
) -> std::result::Result<(), String> {
    for tal in chunk.split(|&b| b == 0).filter(|t| !t.is_empty()) {
        let mut parts = tal.split(|&b| b == 0x14);
        let time = parts.next().unwrap_or_default();
        let onset_text =
            String::from_utf8_lossy(time.split(|&b| b == 0x15).next().unwrap_or_default());
        let onset: f64 = onset_text
            .trim()
            .parse()
            .map_err(|_| format!("annotation onset {onset_text:?} is not a number"))?;
        let texts: Vec<String> = parts
            .map(|t| String::from_utf8_lossy(t).to_string())
            .collect();
        // the list ends with an empty text before the terminating 0x14; a TAL with no text
        // (a record's time keeping) yields one empty entry
        let texts: Vec<String> = match texts.iter().all(String::is_empty) {
            true => vec![String::new()],
            false => texts.into_iter().filter(|t| !t.is_empty()).collect(),
        };
        out.extend(texts.into_iter().map(|t| (onset, t)));
    }
    Ok(())
}

/// One signal to write: its label, sampling rate (a whole number of samples per second),
/// digital samples and the scaling that maps them to physical units.
pub struct SignalToWrite<'a> {
    pub signal: EdfSignal,
    pub digital: &'a [i16],
}

/// Writes an EDF+C file with 1-s data records (`fs` samples of each signal per record) and, when
/// `annotations` is not empty, an "EDF Annotations" signal. Atomic (temp file, then rename).
pub fn write(
    path: &Path,
    patient: &str,
    signals: &[SignalToWrite],
    annotations: &[(f64, String)],
) -> Result<()> {
    let records = signals
        .iter()
        .map(|s| s.digital.len().div_ceil(s.signal.samples_per_record.max(1)))
        .max()
        .unwrap_or(0);
    // each record: its time-keeping TAL, then the annotations whose onset falls in it
    let mut tals: Vec<Vec<u8>> = (0..records)
        .map(|r| format!("+{r}\x14\x14\0").into_bytes())
        .collect();
    for (onset, text) in annotations {
        let r = (onset.max(0.0) as usize).min(records.saturating_sub(1));
        if let Some(t) = tals.get_mut(r) {
            t.extend(format!("+{onset}\x14{text}\x14\0").into_bytes());
        }
    }
    let ann_samples = tals.iter().map(|t| t.len().div_ceil(2)).max().unwrap_or(0);
    let mut all: Vec<EdfSignal> = signals.iter().map(|s| s.signal.clone()).collect();
    if !annotations.is_empty() || signals.is_empty() {
        all.push(EdfSignal {
            label: ANNOTATIONS_LABEL.into(),
            dimension: String::new(),
            physical_min: -1.0,
            physical_max: 1.0,
            digital_min: -32768,
            digital_max: 32767,
            samples_per_record: ann_samples.max(1),
        });
    }
    let ns = all.len();
    let pad = |s: &str, w: usize| format!("{s:<w$}").chars().take(w).collect::<String>();
    let mut out = String::new();
    out += &pad("0", 8);
    out += &pad(patient, 80);
    out += &pad("Startdate X X X ecgwgpu", 80);
    out += &pad("01.01.00", 8);
    out += &pad("00.00.00", 8);
    out += &pad(&(256 * (ns + 1)).to_string(), 8);
    out += &pad("EDF+C", 44);
    out += &pad(&records.to_string(), 8);
    out += &pad("1", 8);
    out += &pad(&ns.to_string(), 4);
    let num = |v: f64| {
        let s = format!("{v}");
        if s.len() <= 8 {
            s
        } else {
            format!("{v:.6}").chars().take(8).collect()
        }
    };
    for s in &all {
        out += &pad(&s.label, 16);
    }
    for _ in &all {
        out += &pad("", 80);
    }
    for s in &all {
        out += &pad(&s.dimension, 8);
    }
    for s in &all {
        out += &pad(&num(s.physical_min), 8);
    }
    for s in &all {
        out += &pad(&num(s.physical_max), 8);
    }
    for s in &all {
        out += &pad(&s.digital_min.to_string(), 8);
    }
    for s in &all {
        out += &pad(&s.digital_max.to_string(), 8);
    }
    for _ in &all {
        out += &pad("", 80);
    }
    for s in &all {
        out += &pad(&s.samples_per_record.to_string(), 8);
    }
    for _ in &all {
        out += &pad("", 32);
    }
    let mut bytes = out.into_bytes();
    for (r, tal) in tals.iter().enumerate() {
        for (i, s) in all.iter().enumerate() {
            if s.is_annotations() {
                let mut t = tal.clone();
                t.resize(2 * s.samples_per_record, 0);
                bytes.extend(t);
                continue;
            }
            let n = s.samples_per_record;
            let src = signals[i].digital;
            for k in r * n..(r + 1) * n {
                // a short last record is padded by holding the last sample: a flat end, where
                // the digital minimum would add a step that filters and detectors take for a beat
                let last = src.last().copied().unwrap_or(s.digital_min as i16);
                let v = src.get(k).copied().unwrap_or(last);
                bytes.extend(v.to_le_bytes());
            }
        }
    }
    crate::data::write_atomic(path, &bytes)
}

/// Writes WFDB record `base` (a path without extension) as EDF+: every signal with its ADC values
/// as the digital samples and WFDB's scaling as EDF's, and the .atr annotations (when there is
/// one) as EDF+ annotations named by their mnemonic. Returns the number of annotations written.
pub fn write_from_wfdb(base: &Path, out: &Path) -> Result<usize> {
    use crate::data::formats::annotation;
    use crate::data::formats::wfdb::Record;
    let record = Record::read(base, None)?;
    let header = &record.header;
    let hea = base.with_extension("hea");
    if header.fs.fract() != 0.0 || header.fs < 1.0 {
        return Err(Error::data(
            &hea,
            "sampling frequency",
            format!(
                "{} Hz: EDF's one-second records need a whole number of samples",
                header.fs
            ),
        ));
    }
    let mut digital = Vec::with_capacity(header.signals.len());
    let mut signals = Vec::with_capacity(header.signals.len());
    for (i, s) in header.signals.iter().enumerate() {
        let half = 1i64 << (s.adc_resolution.clamp(1, 16) - 1);
        let (dmin, dmax) = (
            i64::from(s.adc_zero) - half,
            i64::from(s.adc_zero) + half - 1,
        );
        if dmin < i64::from(i16::MIN) || dmax > i64::from(i16::MAX) {
            return Err(Error::data(
                &hea,
                format!("signal {} ({})", i + 1, s.description),
                format!("ADC range {dmin}..{dmax} does not fit EDF's 16 bits"),
            ));
        }
        digital.push(
            record.adc[i]
                .iter()
                .map(|&v| v.clamp(dmin as i32, dmax as i32) as i16)
                .collect::<Vec<i16>>(),
        );
        let physical = |d: i64| (d as f64 - f64::from(s.baseline)) / s.gain;
        signals.push(EdfSignal {
            label: s.description.clone(),
            dimension: s.units.clone(),
            physical_min: physical(dmin),
            physical_max: physical(dmax),
            digital_min: dmin as i32,
            digital_max: dmax as i32,
            samples_per_record: header.fs as usize,
        });
    }
    let atr = base.with_extension("atr");
    let annotations: Vec<(f64, String)> = if atr.is_file() {
        annotation::read(&atr)?
            .iter()
            .map(|a| {
                (
                    a.sample as f64 / header.fs,
                    annotation::mnemonic(a.code).to_string(),
                )
            })
            .collect()
    } else {
        vec![]
    };
    let to_write: Vec<SignalToWrite> = signals
        .into_iter()
        .zip(&digital)
        .map(|(signal, d)| SignalToWrite { signal, digital: d })
        .collect();
    write(out, &header.record, &to_write, &annotations)?;
    Ok(annotations.len())
}
