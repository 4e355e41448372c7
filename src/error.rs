//! One error type for the whole engine: callers get a value they can match on, never a panic.

use thiserror::Error;

#[derive(Debug, Error)]
pub enum Error {
    #[error("no GPU adapter found{}; adapters tried: {}", selector_note(.selector), tried_note(.tried))]
    NoAdapter {
        selector: Option<String>,
        tried: Vec<String>,
    },
    #[error("could not open device on adapter '{adapter}': {reason}")]
    DeviceRequest { adapter: String, reason: String },
    #[error("adapter '{adapter}' is too limited: {what}")]
    DeviceLimits { adapter: String, what: String },
    #[error("shader '{shader}' entry point '{entry}' failed to compile: {reason}")]
    Shader {
        shader: String,
        entry: String,
        reason: String,
    },
    #[error("shape mismatch in {op}: {detail}")]
    Shape { op: String, detail: String },
    #[error("empty batch: {0}")]
    EmptyBatch(String),
    #[error("non-finite value in {what} at {position}")]
    NonFinite { what: String, position: String },
    #[error("label {label} at sample {index} is out of range for {classes} classes")]
    Label {
        label: u32,
        index: usize,
        classes: usize,
    },
    #[error("GPU error: {0}")]
    Gpu(String),
    #[error("invalid configuration: {0}")]
    Config(String),
}

fn selector_note(selector: &Option<String>) -> String {
    match selector {
        Some(s) => format!(" matching '{s}'"),
        None => String::new(),
    }
}

fn tried_note(tried: &[String]) -> String {
    if tried.is_empty() {
        "none (is a Vulkan, Metal or DX12 driver installed? On Debian: apt-get install mesa-vulkan-drivers libvulkan1)".into()
    } else {
        tried.join(", ")
    }
}

pub type Result<T> = std::result::Result<T, Error>;
