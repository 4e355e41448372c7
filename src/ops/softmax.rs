//! Row-wise softmax for predictions (training fuses it into the loss, see `loss.rs`).

use ndarray::Array2;

use super::Recorder;
use crate::error::Result;
use crate::gpu::{groups_1d, Shader, Tensor};

pub static SHADER: Shader = Shader {
    name: "softmax",
    source: include_str!("../../shaders/softmax.wgsl"),
};

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    rows: u32,
    classes: u32,
}

/// Records `probs = softmax(logits)` over the last axis of a `[rows, classes]` tensor.
pub fn softmax(rec: &mut Recorder, logits: &Tensor, probs: &Tensor) -> Result<()> {
    let (rows, classes) = (logits.shape()[0], logits.shape()[1]);
    let params = Params {
        rows: rows as u32,
        classes: classes as u32,
    };
    rec.push(
        &SHADER,
        "softmax",
        &params,
        &[(1, logits.binding()), (2, probs.binding())],
        groups_1d(rows),
    )
}

/// CPU reference (max-subtracted, like the shader).
pub fn reference(logits: &Array2<f64>) -> Array2<f64> {
    let mut out = logits.clone();
    for mut row in out.rows_mut() {
        let m = row.fold(f64::NEG_INFINITY, |a, &b| a.max(b));
        row.mapv_inplace(|v| (v - m).exp());
        let s = row.sum();
        row.mapv_inplace(|v| v / s);
    }
    out
}
