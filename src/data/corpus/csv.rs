//! The common CSV layout (Kaggle "ECG Heartbeat Categorization", Kachuee et al.): one beat per
//! row, 187 samples then the label, no header, labels written as floats (`1.000000000000000000e+00`).
//! With `--rr`, the beat's R–R features go between the samples and the label.

use std::fmt::Write as _;
use std::io::{BufRead, BufReader};
use std::path::Path;

use crate::data::beats::rr::{NOMINAL, RR_FEATURES};
use crate::data::beats::{Beats, BEAT_LEN};
use crate::error::{Error, Result};

/// Columns of a row with R–R features: the beat's samples, its R–R features, the label.
pub const RR_COLUMNS: usize = BEAT_LEN + RR_FEATURES.len() + 1;
/// Columns of rows written before the irregularity features: seven or eight R–R features.
pub const RR7_COLUMNS: usize = RR_COLUMNS - 2;
pub const RR8_COLUMNS: usize = RR_COLUMNS - 1;

/// Reads a CSV of 187 sample columns plus a label column, or of 187 samples, the R–R features
/// ([`RR_FEATURES`], as `data export --rr` writes them) and a label. Beats without R–R columns
/// get the nominal rhythm; rows with the first seven or eight features only (written before the
/// others existed) get the nominal values of the rest.
pub fn read(path: &Path) -> Result<Beats> {
    let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let mut beats = Beats::default();
    let mut row: Vec<f64> = Vec::with_capacity(RR_COLUMNS);
    for (i, line) in BufReader::new(file).lines().enumerate() {
        let line_no = i + 1;
        let line = line.map_err(|e| Error::io(path, e))?;
        if line.trim().is_empty() {
            continue;
        }
        row.clear();
        for (col, cell) in line.split(',').enumerate() {
            let at = || format!("row {line_no}, column {}", col + 1);
            if col == RR_COLUMNS {
                return Err(Error::data(
                    path,
                    at(),
                    format!(
                        "too many columns: expected {} (samples, label) or {RR_COLUMNS} (samples, R–R features, label)",
                        BEAT_LEN + 1
                    ),
                ));
            }
            let v: f64 = cell
                .trim()
                .parse()
                .map_err(|_| Error::data(path, at(), format!("'{cell}' is not a number")))?;
            if !v.is_finite() {
                return Err(Error::data(path, at(), format!("'{cell}' is not finite")));
            }
            row.push(v);
        }
        if ![BEAT_LEN + 1, RR7_COLUMNS, RR8_COLUMNS, RR_COLUMNS].contains(&row.len()) {
            return Err(Error::data(
                path,
                format!("row {line_no}"),
                format!(
                    "{} columns, expected {} (187 samples and a label) or {RR_COLUMNS} (with the {} R–R features; {RR7_COLUMNS} or {RR8_COLUMNS} with the first seven or eight)",
                    row.len(),
                    BEAT_LEN + 1,
                    RR_FEATURES.len()
                ),
            ));
        }
        let label = row[row.len() - 1];
        if label < 0.0 || label.fract() != 0.0 || label > f64::from(u16::MAX) {
            return Err(Error::data(
                path,
                format!("row {line_no}, column {}", row.len()),
                format!("label '{label}' is not a class index"),
            ));
        }
        let samples: Vec<f32> = row[..BEAT_LEN].iter().map(|&v| v as f32).collect();
        let mut rr = NOMINAL;
        for (v, &x) in rr.iter_mut().zip(&row[BEAT_LEN..row.len() - 1]) {
            *v = x as f32;
        }
        beats.push(&samples, label as u32, ("", i as u64), rr);
    }
    Ok(beats)
}

/// Writes beats in the same layout (with the R–R columns when `rr`), atomically (temporary file,
/// then rename).
pub fn write(path: &Path, beats: &Beats, rr: bool) -> Result<()> {
    let mut text = String::with_capacity(beats.len() * BEAT_LEN * 26);
    for i in 0..beats.len() {
        for v in beats.beat(i) {
            write!(text, "{:.18e},", v).expect("writing to a String");
        }
        if rr {
            for v in beats.rr[i] {
                write!(text, "{:.9e},", v).expect("writing to a String");
            }
        }
        writeln!(text, "{:.18e}", f64::from(beats.labels[i])).expect("writing to a String");
    }
    crate::data::write_atomic(path, text.as_bytes())
}
