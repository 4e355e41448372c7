//! The data pipeline: WFDB records and annotations → AAMI-labelled beats at 125 Hz → splits and
//! augmentation, plus the common CSV layout for interop.

pub mod aami;
pub mod annotation;
pub mod augment;
pub mod beats;
pub mod csv;
pub mod dataset;
pub mod edf;
pub mod ptb;
pub mod qrs;
pub mod reference;
pub mod resample;
pub mod rr;
pub mod source;
pub mod splits;
pub mod stream;
pub mod wfdb;

use std::io::Write;
use std::path::Path;

use crate::error::{Error, Result};

/// Writes `bytes` to `path` through a temporary file in the same directory and a rename, so a
/// crash leaves either the old file or the new one, never half of one.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = path.with_extension(format!(
        "{}.tmp",
        path.extension().and_then(|e| e.to_str()).unwrap_or("")
    ));
    let write = || -> std::io::Result<()> {
        let mut file = std::fs::File::create(&tmp)?;
        file.write_all(bytes)?;
        // On disk before the rename makes it visible, or a power cut could leave an empty file.
        file.sync_all()
    };
    write().map_err(|e| Error::io(&tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| Error::io(path, e))
}
