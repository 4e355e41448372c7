//! Channel sums on the GPU (bias gradients, loss means).

use ndarray::{Array1, Array3, Axis};

use super::Recorder;
use crate::error::Result;
use crate::gpu::{Shader, Tensor};

pub static SHADER: Shader = Shader {
    name: "reduce",
    source: include_str!("../../shaders/reduce.wgsl"),
};

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    batch: u32,
    channels: u32,
    len: u32,
    scale: f32,
}

/// Records `out[c] = scale * sum_{b,l} x[b, c, l]` for `x` seen as `[batch, channels, len]`.
pub fn channel_sum(
    rec: &mut Recorder,
    x: &Tensor,
    dims: [usize; 3],
    scale: f32,
    out: &Tensor,
) -> Result<()> {
    let [batch, channels, len] = dims;
    let params = Params {
        batch: batch as u32,
        channels: channels as u32,
        len: len as u32,
        scale,
    };
    rec.push(
        &SHADER,
        "channel_sum",
        &params,
        &[(1, x.binding()), (2, out.binding())],
        [channels as u32, 1, 1],
    )
}

/// CPU reference of [`channel_sum`].
pub fn reference_channel_sum(x: &Array3<f64>, scale: f64) -> Array1<f64> {
    x.sum_axis(Axis(2)).sum_axis(Axis(0)) * scale
}
