//! The data pipeline, bottom up; each layer uses only those before it:
//!
//! 1. [`formats`]: WFDB and EDF/EDF+ files, annotations, AAMI classes;
//! 2. [`recording`]: a recording opened at its chosen lead, read a chunk at a time;
//! 3. [`signal`]: resampling and QRS detection;
//! 4. [`beats`]: beats cut at the R peaks (whole or streamed), their R–R features and reference;
//! 5. [`corpus`]: folders of records, PTB, the beats CSV layout, splits and augmentation.

pub mod beats;
pub mod corpus;
pub mod formats;
pub mod recording;
pub mod signal;

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
