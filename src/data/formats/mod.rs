//! File formats, the bottom of the data pipeline: WFDB headers, signals and annotations, EDF/EDF+,
//! and the AAMI classes that annotation codes map to. Nothing here knows about beats.

pub mod aami;
pub mod annotation;
pub mod edf;
pub mod wfdb;
