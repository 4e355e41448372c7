//! Signal processing on one lead: resampling to the network's rate and the QRS detector that
//! finds beats in a recording without annotations, and a recording as another device would
//! have taken it (`acquisition`); how noisy a recording is (`noise`).

pub mod acquisition;
pub mod noise;
pub mod qrs;
pub mod resample;
