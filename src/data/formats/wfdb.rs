//! A reader for PhysioNet WFDB records: `.hea` headers, signal files in formats 212, 16, 61 and
//! 80 (one or several files per record, signals interleaved by frame), and conversion to physical
//! units. Written here rather than taken from the `wfdb` crate (0.1.x) because we need exact
//! positions in every error and the annotation reader beside it (see `annotation.rs`).
//!
//! Header reference: PhysioNet's header(5) man page. Record line:
//! `name[/segments] nsig [fs[/counter[(base)]] [nsamp [time [date]]]]`; signal line:
//! `file format[xspf][:skew][+offset] [gain[(baseline)][/units] [adcres [adczero [init
//! [checksum [blocksize [description]]]]]]]`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

#[derive(Clone, Debug, PartialEq)]
pub struct SignalSpec {
    pub file: String,
    pub format: u32,
    /// Byte offset of the first sample in the file.
    pub byte_offset: u64,
    /// ADC units per physical unit (WFDB's default 200 when the header gives 0 or nothing).
    pub gain: f64,
    pub baseline: i32,
    pub units: String,
    pub adc_resolution: u32,
    pub adc_zero: i32,
    pub initial_value: Option<i32>,
    pub checksum: Option<i32>,
    pub description: String,
}

impl SignalSpec {
    /// An ADC value in physical units: (adc - baseline) / gain.
    pub fn physical(&self, v: i32) -> f32 {
        ((f64::from(v) - f64::from(self.baseline)) / self.gain) as f32
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct Header {
    pub record: String,
    pub fs: f64,
    /// Samples per signal (0 when the header leaves it out: then taken from the file size).
    pub samples: usize,
    pub signals: Vec<SignalSpec>,
    /// `#` lines, without the `#` and surrounding blanks (ages, medication, diagnoses...).
    pub comments: Vec<String>,
}

/// Default gain when a header gives none (header(5)).
const DEFAULT_GAIN: f64 = 200.0;

impl Header {
    pub fn parse(text: &str, path: &Path) -> Result<Self> {
        let mut lines = text
            .lines()
            .enumerate()
            .map(|(i, l)| (i + 1, l.trim()))
            .filter(|(_, l)| !l.is_empty());
        let mut comments = vec![];
        let (record_line_no, record_line) = loop {
            match lines.next() {
                Some((_, l)) if l.starts_with('#') => {
                    comments.push(l.trim_start_matches('#').trim().to_string())
                }
                Some(line) => break line,
                None => {
                    return Err(Error::data(
                        path,
                        "line 1",
                        "empty header: expected a record line",
                    ))
                }
            }
        };
        let at = |line: usize, field: usize| format!("line {line}, field {field}");
        let fields: Vec<&str> = record_line.split_whitespace().collect();
        let record = fields[0].to_string();
        if record.contains('/') {
            return Err(Error::data(
                path,
                at(record_line_no, 1),
                "multi-segment records are not supported",
            ));
        }
        let nsig: usize = parse_field(
            fields.get(1),
            path,
            &at(record_line_no, 2),
            "a signal count",
        )?;
        let fs = match fields.get(2) {
            Some(f) => {
                let rate = f.split(['/', '(']).next().unwrap_or(f);
                let fs: f64 = parse_field(
                    Some(&rate),
                    path,
                    &at(record_line_no, 3),
                    "a sampling frequency",
                )?;
                if !(fs > 0.0 && fs.is_finite()) {
                    return Err(Error::data(
                        path,
                        at(record_line_no, 3),
                        format!("sampling frequency {fs} must be > 0"),
                    ));
                }
                fs
            }
            None => 250.0,
        };
        let samples = match fields.get(3) {
            Some(f) => parse_field(Some(f), path, &at(record_line_no, 4), "a sample count")?,
            None => 0,
        };
        let mut signals = Vec::with_capacity(nsig);
        for (line_no, line) in lines {
            if line.starts_with('#') {
                comments.push(line.trim_start_matches('#').trim().to_string());
                continue;
            }
            if signals.len() == nsig {
                return Err(Error::data(
                    path,
                    format!("line {line_no}"),
                    format!("more signal lines than the {nsig} the record line declares"),
                ));
            }
            signals.push(parse_signal(line, path, line_no)?);
        }
        if signals.len() != nsig {
            return Err(Error::data(
                path,
                "end of header",
                format!(
                    "record line declares {nsig} signals, found {} signal lines",
                    signals.len()
                ),
            ));
        }
        Ok(Header {
            record,
            fs,
            samples,
            signals,
            comments,
        })
    }

    pub fn read(path: &Path) -> Result<Self> {
        Self::read_in(&super::files::Disk, path)
    }

    /// [`Self::read`] from `files`.
    pub fn read_in(files: &dyn super::files::Files, path: &Path) -> Result<Self> {
        let text = String::from_utf8(files.read(path)?)
            .map_err(|_| Error::data(path, "header", "not UTF-8 text"))?;
        Self::parse(&text, path)
    }

    /// `key: value` comment lines as fields (PTB's "Reason for admission", "age", "sex", ...);
    /// keys as written, values trimmed, the first occurrence of a key kept.
    pub fn comment_fields(&self) -> BTreeMap<String, String> {
        let mut fields = BTreeMap::new();
        for line in &self.comments {
            if let Some((key, value)) = line.split_once(':') {
                fields
                    .entry(key.trim().to_string())
                    .or_insert_with(|| value.trim().to_string());
            }
        }
        fields
    }

    /// Index of the first signal whose description is `name` (case-insensitive).
    pub fn signal_index(&self, name: &str) -> Option<usize> {
        self.signals
            .iter()
            .position(|s| s.description.eq_ignore_ascii_case(name))
    }
}

fn parse_field<T: std::str::FromStr>(
    field: Option<&&str>,
    path: &Path,
    at: &str,
    expected: &str,
) -> Result<T> {
    let f = field
        .ok_or_else(|| Error::data(path, at, format!("missing field: expected {expected}")))?;
    f.parse()
        .map_err(|_| Error::data(path, at, format!("'{f}' is not {expected}")))
}

fn parse_signal(line: &str, path: &Path, line_no: usize) -> Result<SignalSpec> {
    let fields: Vec<&str> = line.split_whitespace().collect();
    let at = |field: usize| format!("line {line_no}, field {field}");
    let spec = fields
        .get(1)
        .ok_or_else(|| Error::data(path, at(2), "missing signal format"))?;
    let (format_part, byte_offset) = match spec.split_once('+') {
        Some((f, off)) => (f, parse_field(Some(&off), path, &at(2), "a byte offset")?),
        None => (*spec, 0u64),
    };
    if format_part.contains('x') || format_part.contains(':') {
        return Err(Error::data(
            path,
            at(2),
            format!("'{spec}': multi-frequency and skewed signals are not supported"),
        ));
    }
    let format: u32 = parse_field(Some(&format_part), path, &at(2), "a signal format number")?;
    if !matches!(format, 16 | 61 | 80 | 212) {
        return Err(Error::data(
            path,
            at(2),
            format!("unsupported signal format {format} (supported: 16, 61, 80, 212)"),
        ));
    }
    let adc_resolution = match fields.get(3) {
        Some(f) => parse_field(Some(f), path, &at(4), "an ADC resolution")?,
        None => {
            if format == 212 {
                12
            } else {
                16
            }
        }
    };
    let adc_zero: i32 = match fields.get(4) {
        Some(f) => parse_field(Some(f), path, &at(5), "an ADC zero")?,
        None => 0,
    };
    let (mut gain, mut baseline, mut units) = (DEFAULT_GAIN, adc_zero, "mV".to_string());
    if let Some(g) = fields.get(2) {
        let (g, unit) = match g.split_once('/') {
            Some((g, u)) => (g, Some(u)),
            None => (*g, None),
        };
        let (g, base) = match g.split_once('(') {
            Some((g, b)) => (g, Some(b.trim_end_matches(')'))),
            None => (g, None),
        };
        let value: f64 = parse_field(Some(&g), path, &at(3), "an ADC gain")?;
        if !value.is_finite() || value < 0.0 {
            return Err(Error::data(
                path,
                at(3),
                format!("ADC gain {value} must be ≥ 0"),
            ));
        }
        if value > 0.0 {
            gain = value;
        }
        if let Some(b) = base {
            baseline = parse_field(Some(&b), path, &at(3), "a baseline")?;
        }
        if let Some(u) = unit {
            units = u.to_string();
        }
    }
    let optional = |i: usize, what: &str| -> Result<Option<i32>> {
        fields
            .get(i)
            .map(|f| parse_field(Some(f), path, &at(i + 1), what))
            .transpose()
    };
    Ok(SignalSpec {
        file: fields[0].to_string(),
        format,
        byte_offset,
        gain,
        baseline,
        units,
        adc_resolution,
        adc_zero,
        initial_value: optional(5, "an initial value")?,
        checksum: optional(6, "a checksum")?,
        description: fields.get(8..).map(|d| d.join(" ")).unwrap_or_default(),
    })
}

/// A record's samples in ADC units, one vector per signal.
#[derive(Clone, Debug)]
pub struct Record {
    pub header: Header,
    pub dir: PathBuf,
    pub adc: Vec<Vec<i32>>,
    /// Signal files the header names that are missing but were not needed for the signals asked
    /// for (PTB records often lack their `.xyz` Frank-lead file).
    pub warnings: Vec<String>,
}

impl Record {
    /// Reads `path` (the record path without extension, e.g. `mitdb/100`) and the signals
    /// `wanted` (indices into the header's signal list; all when `None`).
    pub fn read(path: &Path, wanted: Option<&[usize]>) -> Result<Self> {
        let header = Header::read(&path.with_extension("hea"))?;
        let dir = path.parent().unwrap_or(Path::new(".")).to_path_buf();
        let all: Vec<usize> = (0..header.signals.len()).collect();
        let wanted = wanted.unwrap_or(&all);
        let mut adc = vec![vec![]; header.signals.len()];
        let mut warnings = vec![];
        // Signals sharing a file are interleaved frame by frame in header order.
        let mut files: Vec<&str> = vec![];
        for s in &header.signals {
            if !files.contains(&s.file.as_str()) {
                files.push(&s.file);
            }
        }
        for file in files {
            let members: Vec<usize> = (0..header.signals.len())
                .filter(|&i| header.signals[i].file == file)
                .collect();
            if !members.iter().any(|i| wanted.contains(i)) {
                if !dir.join(file).is_file() {
                    let names: Vec<&str> = members
                        .iter()
                        .map(|&i| header.signals[i].description.as_str())
                        .collect();
                    warnings.push(format!(
                        "{}: {file} (signals {}) is missing; not needed for the signals asked for",
                        header.record,
                        names.join(", ")
                    ));
                }
                continue;
            }
            let decoded = read_signal_file(&dir.join(file), &header, &members)?;
            for (i, samples) in members.into_iter().zip(decoded) {
                if wanted.contains(&i) {
                    adc[i] = samples;
                }
            }
        }
        Ok(Record {
            header,
            dir,
            adc,
            warnings,
        })
    }

    /// Signal `i` in physical units (see [`SignalSpec::physical`]).
    pub fn physical(&self, i: usize) -> Vec<f32> {
        let s = &self.header.signals[i];
        self.adc[i].iter().map(|&v| s.physical(v)).collect()
    }
}

/// Where a signal file keeps its values, checked against the file's size.
#[derive(Clone, Copy, Debug)]
pub(crate) struct FileLayout {
    pub format: u32,
    /// Byte offset of the first sample.
    pub byte_offset: u64,
    /// Signals interleaved in each frame.
    pub signals: usize,
    /// Frames (samples per signal) the file holds.
    pub frames: usize,
}

impl FileLayout {
    /// The layout of the file holding `members` (signal indices sharing it), whose size is
    /// `file_len` bytes: an error names the file and the byte where a file ends early.
    pub(crate) fn new(
        path: &Path,
        header: &Header,
        members: &[usize],
        file_len: u64,
    ) -> Result<Self> {
        let first = &header.signals[members[0]];
        if let Some(other) = members
            .iter()
            .map(|&i| &header.signals[i])
            .find(|s| s.format != first.format)
        {
            return Err(Error::data(
                path,
                "header",
                format!(
                    "signals in one file must share a format ({} vs {})",
                    first.format, other.format
                ),
            ));
        }
        let data_len = file_len.saturating_sub(first.byte_offset) as usize;
        let nsig = members.len();
        let values = nsig
            .checked_mul(header.samples)
            .filter(|v| v.checked_mul(3).is_some())
            .ok_or_else(|| {
                Error::data(
                    path,
                    "header",
                    format!("{} samples is not a plausible length", header.samples),
                )
            })?;
        let needed = bytes_for(first.format, values);
        let available_values = match first.format {
            212 => data_len / 3 * 2 + usize::from(data_len % 3 == 2),
            80 => data_len,
            _ => data_len / 2,
        };
        let frames = if header.samples == 0 {
            available_values / nsig
        } else if data_len < needed {
            return Err(Error::data(
                path,
                format!("byte {}", first.byte_offset as usize + data_len),
                format!(
                    "file ends early: {} samples × {nsig} signals in format {} need {needed} bytes, found {data_len}",
                    header.samples,
                    first.format,
                ),
            ));
        } else {
            header.samples
        };
        Ok(Self {
            format: first.format,
            byte_offset: first.byte_offset,
            signals: nsig,
            frames,
        })
    }
}

fn read_signal_file(path: &Path, header: &Header, members: &[usize]) -> Result<Vec<Vec<i32>>> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    let layout = FileLayout::new(path, header, members, bytes.len() as u64)?;
    let data = bytes.get(layout.byte_offset as usize..).unwrap_or(&[]);
    let nsig = layout.signals;
    let mut out = vec![Vec::with_capacity(layout.frames); nsig];
    for k in 0..layout.frames * nsig {
        out[k % nsig].push(decode(layout.format, data, k));
    }
    Ok(out)
}

/// Value `k` of `data`, a signal file's bytes from a value whose index is even (format 212
/// packs two 12-bit values into three bytes), in one of the formats the header parser accepts.
pub(crate) fn decode(format: u32, data: &[u8], k: usize) -> i32 {
    match format {
        212 => {
            let b = &data[k / 2 * 3..];
            let v = if k.is_multiple_of(2) {
                i32::from(b[0]) | (i32::from(b[1] & 0x0F) << 8)
            } else {
                i32::from(b[2]) | (i32::from(b[1] & 0xF0) << 4)
            };
            if v >= 0x800 {
                v - 0x1000
            } else {
                v
            }
        }
        16 => i32::from(i16::from_le_bytes([data[2 * k], data[2 * k + 1]])),
        61 => i32::from(i16::from_be_bytes([data[2 * k], data[2 * k + 1]])),
        80 => i32::from(data[k]) - 128,
        f => unreachable!("format {f} rejected by the header parser"),
    }
}

/// Bytes holding `values` values of `format` (from an even value index).
pub(crate) fn bytes_for(format: u32, values: usize) -> usize {
    match format {
        212 => values.div_ceil(2) * 3,
        80 => values,
        _ => values * 2,
    }
}
