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
    /// Training stopped because its observer asked (`FitObserver::stop_requested`, e.g. Ctrl-C).
    #[error(
        "training stopped as asked during epoch {epoch}; the last good checkpoint is {last_good}"
    )]
    Stopped { epoch: usize, last_good: String },
    /// Bad input data: which file, where in it (line, byte, row/column), and what was expected.
    #[error("{file}: {at}: {what}")]
    Data {
        file: String,
        at: String,
        what: String,
    },
    #[error("figure {file}: {what}")]
    Figure { file: String, what: String },
    #[error("{file}: {source}")]
    Io {
        file: String,
        #[source]
        source: std::io::Error,
    },
}

impl Error {
    /// A data error at a position in a file.
    pub fn data(
        file: impl AsRef<std::path::Path>,
        at: impl Into<String>,
        what: impl Into<String>,
    ) -> Self {
        Error::Data {
            file: file.as_ref().display().to_string(),
            at: at.into(),
            what: what.into(),
        }
    }

    pub fn io(file: impl AsRef<std::path::Path>, source: std::io::Error) -> Self {
        Error::Io {
            file: file.as_ref().display().to_string(),
            source,
        }
    }
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
