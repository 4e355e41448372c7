//! File formats, the bottom of the data pipeline: WFDB headers, signals and annotations, EDF/EDF+,
//! the AAMI classes that annotation codes map to, and where the bytes come from (disk or
//! memory). Nothing here knows about beats.

pub mod aami;
pub mod annotation;
pub mod edf;
pub mod files;
pub mod wfdb;
