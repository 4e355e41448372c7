//! The batch gather of the GPU-resident training loop: rows of a resident dataset picked through
//! an index buffer, at an offset the step uniform carries.

use super::Recorder;
use crate::error::Result;
use crate::gpu::{groups_1d, Shader, Tensor};

pub static SHADER: Shader = Shader {
    name: "gather",
    source: include_str!("../../shaders/gather.wgsl"),
};

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    per_beat: u32,
    count: u32,
    _unused: [u32; 2],
}

/// Records `x_out[i] = data[order[start + i]]`, `y_out[i] = labels[order[start + i]]` for the
/// `x_out.shape()[0]` beats of a batch; `start` is the step uniform's `batch_start`.
pub fn gather(
    rec: &mut Recorder,
    data: &Tensor,
    labels: &Tensor,
    order: &Tensor,
    x_out: &Tensor,
    y_out: &Tensor,
) -> Result<()> {
    let count = y_out.numel();
    let per_beat = x_out.numel() / count.max(1);
    let params = Params {
        per_beat: per_beat as u32,
        count: count as u32,
        _unused: [0; 2],
    };
    rec.push(
        &SHADER,
        "gather",
        &params,
        &[
            (1, rec.step.as_entire_binding()),
            (2, data.binding()),
            (3, labels.binding()),
            (4, order.binding()),
            (5, x_out.binding()),
            (6, y_out.binding()),
        ],
        groups_1d(count * per_beat),
    )
}

/// CPU reference: the rows `order[start..start + count]` of `data` (`per_beat` values each) and
/// their labels.
pub fn reference(
    data: &[f32],
    labels: &[u32],
    order: &[u32],
    start: usize,
    count: usize,
) -> (Vec<f32>, Vec<u32>) {
    let per_beat = data.len() / labels.len().max(1);
    let rows = &order[start..start + count];
    let x = rows
        .iter()
        .flat_map(|&r| {
            data[r as usize * per_beat..(r as usize + 1) * per_beat]
                .iter()
                .copied()
        })
        .collect();
    (x, rows.iter().map(|&r| labels[r as usize]).collect())
}
