//! Corpora: folders of records loaded into labelled beats, the PTB MI data, the common beats CSV
//! layout, splits (intra- and inter-patient) and augmentation of a training part.

pub mod augment;
pub mod csv;
pub mod dataset;
pub mod ptb;
pub mod splits;
