//! The common CSV layout (Kaggle "ECG Heartbeat Categorization", Kachuee et al.): one beat per
//! row, 187 samples then the label, no header, labels written as floats (`1.000000000000000000e+00`).

use std::fmt::Write as _;
use std::io::{BufRead, BufReader};
use std::path::Path;

use super::beats::{Beats, BEAT_LEN};
use crate::error::{Error, Result};

/// Reads a CSV of 187 sample columns plus a label column.
pub fn read(path: &Path) -> Result<Beats> {
    let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let mut beats = Beats::default();
    let mut row = Vec::with_capacity(BEAT_LEN);
    for (i, line) in BufReader::new(file).lines().enumerate() {
        let line_no = i + 1;
        let line = line.map_err(|e| Error::io(path, e))?;
        if line.trim().is_empty() {
            continue;
        }
        row.clear();
        let mut label = None;
        for (col, cell) in line.split(',').enumerate() {
            let at = || format!("row {line_no}, column {}", col + 1);
            let v: f64 = cell
                .trim()
                .parse()
                .map_err(|_| Error::data(path, at(), format!("'{cell}' is not a number")))?;
            if !v.is_finite() {
                return Err(Error::data(path, at(), format!("'{cell}' is not finite")));
            }
            match col {
                c if c < BEAT_LEN => row.push(v as f32),
                c if c == BEAT_LEN => {
                    if v < 0.0 || v.fract() != 0.0 || v > f64::from(u16::MAX) {
                        return Err(Error::data(
                            path,
                            at(),
                            format!("label '{cell}' is not a class index"),
                        ));
                    }
                    label = Some(v as u32);
                }
                _ => {
                    return Err(Error::data(
                        path,
                        at(),
                        format!("too many columns: expected {}", BEAT_LEN + 1),
                    ));
                }
            }
        }
        let Some(label) = label else {
            return Err(Error::data(
                path,
                format!("row {line_no}"),
                format!(
                    "{} columns, expected {} (187 samples and a label)",
                    row.len(),
                    BEAT_LEN + 1
                ),
            ));
        };
        beats.push(&row, label, ("", i as u64), super::rr::NOMINAL);
    }
    Ok(beats)
}

/// Writes beats in the same layout, atomically (temporary file, then rename).
pub fn write(path: &Path, beats: &Beats) -> Result<()> {
    let mut text = String::with_capacity(beats.len() * BEAT_LEN * 26);
    for i in 0..beats.len() {
        for v in beats.beat(i) {
            write!(text, "{:.18e},", v).expect("writing to a String");
        }
        writeln!(text, "{:.18e}", f64::from(beats.labels[i])).expect("writing to a String");
    }
    crate::data::write_atomic(path, text.as_bytes())
}
