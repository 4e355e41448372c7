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
pub mod loss;
pub mod metrics;
pub mod model;
pub mod ops;
pub mod optim;
pub mod rng;
pub mod trainer;

pub use error::{Error, Result};
