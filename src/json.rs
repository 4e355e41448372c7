//! Typed JSON files: a missing or mistyped field is an error naming the file and the field's
//! path (`config.json: args.seed: invalid type: string "1", expected u64`).

use std::path::Path;

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::error::{Error, Result};

/// Parses JSON text into `T`; an error names `path`, the field's path within the document and
/// what was wrong (`what` names the document when it is part of a file, e.g. a metadata key).
pub fn from_json_str<T: DeserializeOwned>(text: &str, path: &Path, what: &str) -> Result<T> {
    let de = &mut serde_json::Deserializer::from_str(text);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let field = e.path().to_string();
        let at = match (what.is_empty(), field.as_str()) {
            (true, ".") => "JSON".to_string(),
            (true, _) => field,
            (false, ".") => what.to_string(),
            (false, _) => format!("{what}.{field}"),
        };
        Error::data(path, at, e.into_inner().to_string())
    })
}

/// Reads a JSON file into `T` (see [`from_json_str`]).
pub fn read_json<T: DeserializeOwned>(path: &Path) -> Result<T> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    from_json_str(&text, path, "")
}

/// Writes `value` as pretty JSON, atomically.
pub fn write_json(path: &Path, value: &impl Serialize) -> Result<()> {
    crate::data::write_atomic(
        path,
        serde_json::to_string_pretty(value)
            .expect("serialisable")
            .as_bytes(),
    )
}
