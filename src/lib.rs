//! ecgwgpu: a from-scratch GPU compute engine (wgpu + hand-written WGSL) that trains and runs a
//! heartbeat classifier for ECG signals.
//!
//! Classify a recording with the model shipped in the library (or any checkpoint `train`
//! writes, with [`infer::Classifier::load`]):
//!
//! ```
//! use ecgwgpu::gpu::GpuContext;
//! use ecgwgpu::infer::{Classifier, Streaming};
//!
//! # fn main() -> ecgwgpu::Result<()> {
//! let ctx = GpuContext::new(None)?; // the fastest adapter; lavapipe on a machine without a GPU
//! let mut classifier = Classifier::shipped(&ctx)?;
//! // A WFDB record (path without extension) or an EDF file, streamed in bounded memory.
//! let summary = classifier.classify_file("data/mitdb/208".as_ref(), Streaming::new())?;
//! assert!(summary.beats > 2900);
//! let names = classifier.class_names().to_vec(); // N, S, V, F, Q
//! assert!(summary.counts[names.iter().position(|n| n == "V").unwrap()] > 500);
//!
//! // One lead in memory: the QRS detector finds the beats.
//! let fs = 360.0;
//! let signal: Vec<f32> = (0..(30.0 * fs) as usize)
//!     .map(|i| if i % 300 < 8 { 1.0 } else { 0.0 })
//!     .collect();
//! for beat in classifier.classify_signal(&signal, fs)? {
//!     let _ = (beat.sample, names[beat.class as usize].as_str(), &beat.probabilities);
//! }
//! # Ok(())
//! # }
//! ```
//!
//! Layers, bottom up: [`gpu`] (device, tensors, recorded programs) → [`ops`] (one shader each,
//! forward + backward + CPU reference) → [`autograd`] (the tape) → [`model`], [`loss`],
//! [`optim`] → [`trainer`] (the step API) → [`train`] (the epoch loop: [`train::fit`]) and
//! [`infer`] (a network with its [`preprocessing`], classifying beats, signals and recordings).
//! [`data`] reads recordings and cuts beats; [`run`] is the run directory's typed files;
//! [`adapt`] adapts a network's decisions to each patient without labels. The command line
//! (`cli`, with `figures`) sits on top, behind the default feature `cli`.
//!
//! The library also builds for `wasm32-unknown-unknown` (WebGPU; the page in `web/`): there
//! every GPU read is awaited (`*_async`), files come from memory
//! ([`data::formats::files::MemoryFiles`]), and records load on the page's one thread.

// In a browser wgpu's handles are neither Send nor Sync (one thread); the Arcs that share them
// natively are harmless there.
#![cfg_attr(target_arch = "wasm32", allow(clippy::arc_with_non_send_sync))]

pub mod adapt;
pub mod autograd;
pub mod checkpoint;
#[cfg(feature = "cli")]
pub mod cli;
pub mod data;
pub mod error;
pub mod eval;
#[cfg(feature = "cli")]
pub mod figures;
pub mod gpu;
pub mod infer;
pub mod json;
pub mod loss;
pub mod metrics;
pub mod model;
pub mod ops;
pub mod optim;
/// How recordings become a network's input: part of the model (its checkpoint carries it).
pub use model::preprocessing;
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
