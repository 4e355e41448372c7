//! PTB data for myocardial infarction (MI) vs normal: PTB-XL (metadata CSV with `scp_codes` and
//! `strat_fold`) and the PTB Diagnostic ECG Database (label in each header's "Reason for
//! admission" comment). Neither has beat annotations, so R peaks come from [`qrs::detect`](crate::data::signal::qrs::detect); beats
//! are then cut exactly as for MIT-BIH (lead II at 125 Hz, 187 samples) and labelled by record.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use crate::data::beats::{extract_detected, BeatMode, Beats};
use crate::data::corpus::dataset::{list_records, read_lead, LoadOptions};
use crate::data::corpus::splits::{self, Split, SplitKind};
use crate::error::{Error, Result};
use crate::rng::Rng;

pub const NORM: u32 = 0;
pub const MI: u32 = 1;
pub const CLASS_NAMES: [&str; 2] = ["NORM", "MI"];

/// One record of the MI task.
#[derive(Clone, Debug, PartialEq)]
pub struct MiRecord {
    /// Record path relative to the data directory, without extension.
    pub path: String,
    pub patient: String,
    pub label: u32,
    /// PTB-XL's `strat_fold` (1–10; patient-wise), when known.
    pub fold: Option<u32>,
}

/// Rows of a CSV file (RFC 4180: quoted fields may hold commas, quotes doubled, newlines).
pub fn csv_rows(text: &str, path: &Path) -> Result<Vec<Vec<String>>> {
    let mut rows = vec![];
    let (mut row, mut field) = (vec![], String::new());
    let (mut quoted, mut line) = (false, 1usize);
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match (quoted, c) {
            (true, '"') if chars.peek() == Some(&'"') => {
                chars.next();
                field.push('"');
            }
            (true, '"') => quoted = false,
            (false, '"') if field.is_empty() => quoted = true,
            (false, ',') => row.push(std::mem::take(&mut field)),
            (false, '\n') => {
                row.push(std::mem::take(&mut field));
                rows.push(std::mem::take(&mut row));
                line += 1;
            }
            (false, '\r') => {}
            (_, c) => {
                if c == '\n' {
                    line += 1;
                }
                field.push(c);
            }
        }
    }
    if quoted {
        return Err(Error::data(
            path,
            format!("line {line}"),
            "a quoted field is not closed",
        ));
    }
    if !field.is_empty() || !row.is_empty() {
        row.push(field);
        rows.push(row);
    }
    Ok(rows)
}

/// PTB-XL's `scp_codes` field, a Python dict literal such as `{'NORM': 100.0, 'SR': 0.0}`:
/// statement code → likelihood (%).
pub fn parse_scp_codes(text: &str) -> std::result::Result<BTreeMap<String, f64>, String> {
    let inner = text
        .trim()
        .strip_prefix('{')
        .and_then(|t| t.strip_suffix('}'))
        .ok_or_else(|| format!("expected {{'CODE': likelihood, ...}}, found {text:?}"))?;
    let mut codes = BTreeMap::new();
    let mut rest = inner.trim();
    while !rest.is_empty() {
        let quote = rest
            .chars()
            .next()
            .filter(|&q| q == '\'' || q == '"')
            .ok_or_else(|| format!("expected a quoted code at {rest:?}"))?;
        let end = rest[1..]
            .find(quote)
            .ok_or_else(|| format!("unclosed quote at {rest:?}"))?;
        let code = rest[1..1 + end].to_string();
        rest = rest[end + 2..].trim_start();
        rest = rest
            .strip_prefix(':')
            .ok_or_else(|| format!("expected ':' after '{code}'"))?
            .trim_start();
        let stop = rest.find(',').unwrap_or(rest.len());
        let value: f64 = rest[..stop]
            .trim()
            .parse()
            .map_err(|_| format!("'{code}': likelihood {:?} is not a number", &rest[..stop]))?;
        codes.insert(code, value);
        rest = rest[stop..].trim_start();
        rest = rest.strip_prefix(',').unwrap_or(rest).trim_start();
    }
    Ok(codes)
}

/// Column index by name, or an error naming the file.
fn column(header: &[String], name: &str, path: &Path) -> Result<usize> {
    header
        .iter()
        .position(|h| h == name)
        .ok_or_else(|| Error::data(path, "header row", format!("no column '{name}'")))
}

fn read_csv(path: &Path) -> Result<Vec<Vec<String>>> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    let rows = csv_rows(&text, path)?;
    if rows.is_empty() {
        return Err(Error::data(
            path,
            "line 1",
            "empty file, expected a header row",
        ));
    }
    Ok(rows)
}

/// PTB-XL records labelled NORM (a NORM statement, no MI-class statement) or MI (an MI-class
/// statement and no NORM), using `scp_statements.csv` for each code's diagnostic class. Others
/// are left out; codes missing from the statements table are reported and ignored.
pub fn ptbxl_records(dir: &Path) -> Result<(Vec<MiRecord>, Vec<String>)> {
    let statements_path = dir.join("scp_statements.csv");
    let statements = read_csv(&statements_path)?;
    let class_col = column(&statements[0], "diagnostic_class", &statements_path)?;
    let class_of: BTreeMap<&str, &str> = statements[1..]
        .iter()
        .filter_map(|r| Some((r.first()?.as_str(), r.get(class_col)?.as_str())))
        .collect();

    let db_path = dir.join("ptbxl_database.csv");
    let rows = read_csv(&db_path)?;
    let col = |name| column(&rows[0], name, &db_path);
    let (id_col, patient_col, codes_col, fold_col, file_col) = (
        col("ecg_id")?,
        col("patient_id")?,
        col("scp_codes")?,
        col("strat_fold")?,
        col("filename_lr")?,
    );
    let mut records = vec![];
    let mut unknown: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut warnings = vec![];
    for (i, row) in rows.iter().enumerate().skip(1) {
        if row.len() == 1 && row[0].is_empty() {
            continue;
        }
        let at = format!(
            "line {} (ecg_id {})",
            i + 1,
            row.get(id_col).map_or("?", |s| s)
        );
        let cell = |c: usize| {
            row.get(c).ok_or_else(|| {
                Error::data(
                    &db_path,
                    &at,
                    format!("{} fields, expected {}", row.len(), rows[0].len()),
                )
            })
        };
        let codes = parse_scp_codes(cell(codes_col)?)
            .map_err(|e| Error::data(&db_path, format!("{at}, scp_codes"), e))?;
        for code in codes.keys().filter(|c| !class_of.contains_key(c.as_str())) {
            unknown
                .entry(code.clone())
                .or_default()
                .push(cell(id_col)?.clone());
        }
        let norm = codes.contains_key("NORM");
        let mi = codes
            .keys()
            .any(|c| class_of.get(c.as_str()) == Some(&"MI"));
        let label = match (norm, mi) {
            (true, false) => NORM,
            (false, true) => MI,
            _ => continue,
        };
        let path = cell(file_col)?.clone();
        if !dir.join(format!("{path}.hea")).is_file() {
            warnings.push(format!("{at}: {path}.hea not found, record left out"));
            continue;
        }
        let patient = cell(patient_col)?.trim_end_matches(".0").to_string();
        let fold = cell(fold_col)?.parse().map_err(|_| {
            Error::data(&db_path, format!("{at}, strat_fold"), "not a whole number")
        })?;
        records.push(MiRecord {
            path,
            patient,
            label,
            fold: Some(fold),
        });
    }
    for (code, ids) in unknown {
        warnings.push(format!(
            "unknown scp code '{code}' (not in scp_statements.csv) in ecg_id {}; ignored",
            ids.join(", ")
        ));
    }
    Ok((records, warnings))
}

/// PTB Diagnostic records (`patientNNN/sNNNNxxx`), labelled from the header comment "Reason for
/// admission": "Myocardial infarction" is MI, "Healthy control" is NORM, others are left out.
pub fn ptbdb_records(dir: &Path) -> Result<(Vec<MiRecord>, Vec<String>)> {
    let mut names = match list_records(dir) {
        Ok(names) => names,
        // No RECORDS file and no headers at the top: look one level down (patientNNN/).
        Err(_) => {
            let mut names = vec![];
            let entries = std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))?;
            for entry in entries.filter_map(|e| e.ok()) {
                let sub = entry.path();
                if sub.is_dir() {
                    if let Ok(inner) = list_records(&sub) {
                        let patient = entry.file_name().to_string_lossy().to_string();
                        names.extend(inner.into_iter().map(|n| format!("{patient}/{n}")));
                    }
                }
            }
            if names.is_empty() {
                return Err(Error::data(
                    dir,
                    "directory",
                    "no WFDB records found here or in its subfolders",
                ));
            }
            names
        }
    };
    names.sort();
    let mut records = vec![];
    let mut warnings = vec![];
    for name in names {
        let header_path = dir.join(format!("{name}.hea"));
        let header = crate::data::formats::wfdb::Header::read(&header_path)?;
        let fields = header.comment_fields();
        let reason = fields
            .get("Reason for admission")
            .map(|s| s.to_ascii_lowercase())
            .unwrap_or_default();
        let label = if reason.contains("myocardial infarction") {
            MI
        } else if reason.contains("healthy control") {
            NORM
        } else {
            warnings.push(format!(
                "record {name}: reason for admission {reason:?} is neither MI nor healthy control; left out"
            ));
            continue;
        };
        let patient = name.split('/').next().unwrap_or(&name).to_string();
        records.push(MiRecord {
            path: name,
            patient,
            label,
            fold: None,
        });
    }
    Ok((records, warnings))
}

/// Beats of every labelled record, with the records and any warnings.
#[derive(Clone, Debug, Default)]
pub struct MiDataset {
    pub beats: Beats,
    pub records: Vec<MiRecord>,
    pub warnings: Vec<String>,
}

/// Default options for the MI task: lead II (PTB names it `ii`, PTB-XL `II`).
pub fn default_options(mode: BeatMode) -> LoadOptions {
    LoadOptions {
        mode,
        lead: "II".into(),
        fallback_to_first: false,
        records: None,
        strict: false,
        ..LoadOptions::default()
    }
}

/// Loads a PTB-XL directory (it has `ptbxl_database.csv`) or a PTB Diagnostic one. Records whose
/// lead is missing, or in which the detector finds no beat (flat line, too short), are left out
/// with a warning.
pub fn load(dir: &Path, opts: &LoadOptions) -> Result<MiDataset> {
    if !dir.is_dir() {
        return Err(Error::data(dir, "path", "not a directory"));
    }
    let (records, mut warnings) = if dir.join("ptbxl_database.csv").is_file() {
        ptbxl_records(dir)?
    } else {
        ptbdb_records(dir)?
    };
    let mut ds = MiDataset::default();
    for record in records {
        let (lead, warning) = read_lead(dir, &record.path, opts)?;
        warnings.extend(warning);
        let Some((signal, fs)) = lead else { continue };
        let mut beats = extract_detected(&signal, fs, opts.mode, &record.path);
        if beats.is_empty() {
            warnings.push(format!(
                "record {}: no beats found in lead {} ({} samples at {fs} Hz); left out",
                record.path,
                opts.lead,
                signal.len()
            ));
            continue;
        }
        beats.labels.iter_mut().for_each(|l| *l = record.label);
        ds.beats.extend(&beats);
        ds.records.push(record);
    }
    ds.warnings = warnings;
    Ok(ds)
}

/// How to split the MI beats.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[cfg_attr(feature = "cli", derive(clap::ValueEnum))]
#[serde(rename_all = "lowercase")]
pub enum MiSplit {
    /// By patient: PTB-XL's strat_fold when every record has one (folds 1–8 train, 9
    /// validation, 10 test, as PTB-XL recommends), else a seeded 70/10/20 split of the patients,
    /// stratified by label. No patient is on two sides.
    Patient,
    /// Random 70/10/20 by beat, as the paper and the Kaggle files do: beats of one patient land on
    /// both sides, so the test figures overstate what a new patient would see.
    Beat,
}

/// Splits `ds` into train/validation/test beat indices.
pub fn split(ds: &MiDataset, kind: MiSplit, seed: u64) -> Split {
    if kind == MiSplit::Beat {
        return splits::split(&ds.beats, SplitKind::Intra, 0.2, 0.125, seed);
    }
    let part_of: BTreeMap<&str, usize> = if ds.records.iter().all(|r| r.fold.is_some()) {
        ds.records
            .iter()
            .map(|r| {
                let part = match r.fold {
                    Some(10) => 2,
                    Some(9) => 1,
                    _ => 0,
                };
                (r.path.as_str(), part)
            })
            .collect()
    } else {
        // A patient is MI if any of their records is; split each label's patients 70/10/20.
        let mut patient_label: BTreeMap<&str, u32> = BTreeMap::new();
        for r in &ds.records {
            let l = patient_label.entry(&r.patient).or_insert(r.label);
            *l = (*l).max(r.label);
        }
        let mut rng = Rng::new(seed ^ 0x9A71E27);
        let mut part_of_patient: BTreeMap<&str, usize> = BTreeMap::new();
        for label in [NORM, MI] {
            let mut patients: Vec<&str> = patient_label
                .iter()
                .filter(|(_, &l)| l == label)
                .map(|(&p, _)| p)
                .collect();
            rng.shuffle(&mut patients);
            let n = patients.len();
            let test = (n as f64 * 0.2).round() as usize;
            let val = (n as f64 * 0.1).round() as usize;
            for (i, p) in patients.into_iter().enumerate() {
                let part = if i < test {
                    2
                } else if i < test + val {
                    1
                } else {
                    0
                };
                part_of_patient.insert(p, part);
            }
        }
        ds.records
            .iter()
            .map(|r| (r.path.as_str(), part_of_patient[r.patient.as_str()]))
            .collect()
    };
    let mut parts = [vec![], vec![], vec![]];
    for (i, record) in ds.beats.record.iter().enumerate() {
        parts[part_of[record.as_str()]].push(i);
    }
    let [train, val, test] = parts;
    Split { train, val, test }
}

/// Patients on more than one side of a split (empty for a patient split).
pub fn patients_on_two_sides(ds: &MiDataset, split: &Split) -> BTreeSet<String> {
    let patient_of: BTreeMap<&str, &str> = ds
        .records
        .iter()
        .map(|r| (r.path.as_str(), r.patient.as_str()))
        .collect();
    let side = |indices: &[usize]| -> BTreeSet<&str> {
        indices
            .iter()
            .map(|&i| patient_of[ds.beats.record[i].as_str()])
            .collect()
    };
    let (a, b, c) = (side(&split.train), side(&split.val), side(&split.test));
    a.intersection(&b)
        .chain(a.intersection(&c))
        .chain(b.intersection(&c))
        .map(|p| p.to_string())
        .collect()
}
