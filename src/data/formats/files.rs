//! Where a recording's files come from: the disk, or bytes already in memory (files dropped on a
//! web page, a test). Readers take a [`Files`] so that one parser and one streamed reader serve
//! both; the disk is the default everywhere a path is given.

use std::collections::BTreeMap;
use std::io::{Cursor, Read, Seek};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::error::{Error, Result};

/// A readable, seekable byte source (a file, or a cursor over bytes in memory).
pub trait ReadSeek: Read + Seek {}
impl<T: Read + Seek> ReadSeek for T {}

/// A read-only set of files addressed by path.
pub trait Files: Sync {
    /// The whole file.
    fn read(&self, path: &Path) -> Result<Vec<u8>>;
    /// The file opened for reading a piece at a time, with its length in bytes.
    fn open(&self, path: &Path) -> Result<(Box<dyn ReadSeek + Send>, u64)>;
    /// Whether the file exists.
    fn is_file(&self, path: &Path) -> bool;
}

/// The file system.
pub struct Disk;

impl Files for Disk {
    fn read(&self, path: &Path) -> Result<Vec<u8>> {
        std::fs::read(path).map_err(|e| Error::io(path, e))
    }
    fn open(&self, path: &Path) -> Result<(Box<dyn ReadSeek + Send>, u64)> {
        let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
        let len = file.metadata().map_err(|e| Error::io(path, e))?.len();
        Ok((Box::new(file), len))
    }
    fn is_file(&self, path: &Path) -> bool {
        path.is_file()
    }
}

/// Files held in memory by path, e.g. `208.hea`, `208.dat` and `208.atr` dropped on a page.
#[derive(Clone, Default)]
pub struct MemoryFiles {
    files: BTreeMap<PathBuf, Arc<[u8]>>,
}

impl MemoryFiles {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds (or replaces) the file at `path`.
    pub fn insert(&mut self, path: impl Into<PathBuf>, bytes: Vec<u8>) {
        self.files.insert(path.into(), bytes.into());
    }

    /// The paths held, sorted.
    pub fn paths(&self) -> impl Iterator<Item = &Path> {
        self.files.keys().map(PathBuf::as_path)
    }

    fn get(&self, path: &Path) -> Result<&Arc<[u8]>> {
        self.files.get(path).ok_or_else(|| {
            Error::io(
                path,
                std::io::Error::new(std::io::ErrorKind::NotFound, "no such file was given"),
            )
        })
    }
}

impl Files for MemoryFiles {
    fn read(&self, path: &Path) -> Result<Vec<u8>> {
        Ok(self.get(path)?.to_vec())
    }
    fn open(&self, path: &Path) -> Result<(Box<dyn ReadSeek + Send>, u64)> {
        let bytes = self.get(path)?.clone();
        let len = bytes.len() as u64;
        Ok((Box::new(Cursor::new(bytes)), len))
    }
    fn is_file(&self, path: &Path) -> bool {
        self.files.contains_key(path)
    }
}
