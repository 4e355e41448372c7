//! Signal processing on one lead: resampling to the network's rate and the QRS detector that
//! finds beats in a recording without annotations.

pub mod qrs;
pub mod resample;
