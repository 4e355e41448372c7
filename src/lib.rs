//! ecgwgpu: a from-scratch GPU compute engine (wgpu + hand-written WGSL) that trains and runs a
//! heartbeat classifier for ECG signals.
//!
//! Layers, bottom up: [`gpu`] (device, tensors, recorded programs) → [`ops`] (one shader each,
//! forward + backward + CPU reference) → [`autograd`] (the tape) → [`model`], [`loss`],
//! [`optim`] → [`trainer`] (the step API).

pub mod autograd;
pub mod checkpoint;
pub mod cli;
pub mod data;
pub mod error;
pub mod figures;
pub mod gpu;
pub mod infer;
pub mod loss;
pub mod metrics;
pub mod model;
pub mod ops;
pub mod optim;
pub mod preprocessing;
pub mod rng;
pub mod run;
pub mod train;
pub mod trainer;

pub use error::{Error, Result};

/// For `#[serde(skip_serializing_if = "crate::is_default")]`: an option left at its default is
/// left out of a config, so configs written before the option existed still read and compare
/// the same.
pub(crate) fn is_default<T: Default + PartialEq>(value: &T) -> bool {
    *value == T::default()
}
