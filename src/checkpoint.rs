//! Checkpoints in the safetensors format (an 8-byte little-endian header length, a JSON header
//! naming each tensor's dtype, shape and byte range, then the raw little-endian data), with
//! PyTorch names and layouts (`conv1_1.weight` [out, in, k], `dense1.weight` [out, in], ...), so
//! `safetensors.torch.load_file` reads them directly. Written by hand: the format is this one
//! paragraph, and the writer must go through [`crate::data::write_atomic`] anyway.

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::{json, Value};

use crate::error::{Error, Result};

/// A named f32 tensor.
#[derive(Clone, Debug, PartialEq)]
pub struct NamedTensor {
    pub name: String,
    pub shape: Vec<usize>,
    pub data: Vec<f32>,
}

/// Encodes tensors (and string metadata) as safetensors bytes.
pub fn encode(tensors: &[NamedTensor], metadata: &BTreeMap<String, String>) -> Vec<u8> {
    let mut header = serde_json::Map::new();
    header.insert("__metadata__".into(), json!(metadata));
    let mut offset = 0usize;
    for t in tensors {
        let end = offset + t.data.len() * 4;
        header.insert(
            t.name.clone(),
            json!({"dtype": "F32", "shape": t.shape, "data_offsets": [offset, end]}),
        );
        offset = end;
    }
    let mut text = serde_json::to_vec(&Value::Object(header)).expect("serialisable header");
    text.resize(text.len().next_multiple_of(8), b' ');
    let mut out = Vec::with_capacity(8 + text.len() + offset);
    out.extend_from_slice(&(text.len() as u64).to_le_bytes());
    out.extend_from_slice(&text);
    for t in tensors {
        for v in &t.data {
            out.extend_from_slice(&v.to_le_bytes());
        }
    }
    out
}

/// Decodes safetensors bytes (F32 tensors only), in header order of offsets.
pub fn decode(bytes: &[u8], path: &Path) -> Result<(Vec<NamedTensor>, BTreeMap<String, String>)> {
    let bad = |what: String| Error::data(path, "safetensors header", what);
    let len = bytes
        .get(..8)
        .ok_or_else(|| bad("file shorter than 8 bytes".into()))?;
    let len = u64::from_le_bytes(len.try_into().expect("8 bytes")) as usize;
    let body_start = 8usize
        .checked_add(len)
        .filter(|&e| e <= bytes.len())
        .ok_or_else(|| bad(format!("header length {len} exceeds the file")))?;
    let header: serde_json::Map<String, Value> = serde_json::from_slice(&bytes[8..body_start])
        .map_err(|e| bad(format!("invalid JSON: {e}")))?;
    let data = &bytes[body_start..];
    let mut metadata = BTreeMap::new();
    let mut tensors = vec![];
    for (name, info) in header {
        if name == "__metadata__" {
            if let Some(m) = info.as_object() {
                for (k, v) in m {
                    metadata.insert(k.clone(), v.as_str().unwrap_or_default().to_string());
                }
            }
            continue;
        }
        let dtype = info["dtype"].as_str().unwrap_or_default();
        if dtype != "F32" {
            return Err(bad(format!("{name}: dtype {dtype}, only F32 is supported")));
        }
        let shape: Vec<usize> = serde_json::from_value(info["shape"].clone())
            .map_err(|e| bad(format!("{name}: shape: {e}")))?;
        let offsets: [usize; 2] = serde_json::from_value(info["data_offsets"].clone())
            .map_err(|e| bad(format!("{name}: offsets: {e}")))?;
        let numel: usize = shape.iter().product();
        if offsets[1] < offsets[0]
            || offsets[1] > data.len()
            || offsets[1] - offsets[0] != numel * 4
        {
            return Err(bad(format!(
                "{name}: byte range {offsets:?} does not fit shape {shape:?} in {} data bytes",
                data.len()
            )));
        }
        let values = data[offsets[0]..offsets[1]]
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes(c.try_into().expect("4 bytes")))
            .collect();
        tensors.push((
            offsets[0],
            NamedTensor {
                name,
                shape,
                data: values,
            },
        ));
    }
    tensors.sort_by_key(|(o, _)| *o);
    Ok((tensors.into_iter().map(|(_, t)| t).collect(), metadata))
}

/// Writes a checkpoint atomically.
pub fn save(
    path: &Path,
    tensors: &[NamedTensor],
    metadata: &BTreeMap<String, String>,
) -> Result<()> {
    crate::data::write_atomic(path, &encode(tensors, metadata))
}

pub fn load(path: &Path) -> Result<(Vec<NamedTensor>, BTreeMap<String, String>)> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    decode(&bytes, path)
}
