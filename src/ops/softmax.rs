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
    members: u32,
    _unused: u32,
}

/// Records `probs = softmax(logits)` over the last axis of a `[rows, classes]` tensor.
pub fn softmax(rec: &mut Recorder, logits: &Tensor, probs: &Tensor) -> Result<()> {
    let (rows, classes) = (logits.shape()[0], logits.shape()[1]);
    let params = Params {
        rows: rows as u32,
        classes: classes as u32,
        members: 1,
        _unused: 0,
    };
    rec.push(
        &SHADER,
        "softmax",
        &params,
        &[(1, logits.binding()), (2, probs.binding())],
        groups_1d(rows),
    )
}

/// Records `out[r] = mean over m of member_probs[r * members + m]` for `[rows * members,
/// classes]` probabilities (an ensemble run as one grouped network) into `[rows, classes]`:
/// added in member order and scaled once, as [`crate::infer::Classifier`] adds its members'.
pub fn members_mean(
    rec: &mut Recorder,
    member_probs: &Tensor,
    members: usize,
    out: &Tensor,
) -> Result<()> {
    let (rows, classes) = (out.shape()[0], out.shape()[1]);
    let params = Params {
        rows: rows as u32,
        classes: classes as u32,
        members: members as u32,
        _unused: 0,
    };
    rec.push(
        &SHADER,
        "members_mean",
        &params,
        &[(2, out.binding()), (3, member_probs.binding())],
        groups_1d(rows * classes),
    )
}

/// CPU reference of [`members_mean`].
pub fn reference_members_mean(member_probs: &Array2<f64>, members: usize) -> Array2<f64> {
    let (rows, classes) = (member_probs.nrows() / members, member_probs.ncols());
    Array2::from_shape_fn((rows, classes), |(r, j)| {
        (0..members)
            .map(|m| member_probs[[r * members + m, j]])
            .sum::<f64>()
            / members as f64
    })
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
