//! MaxPool1D with window = stride (floor mode), optionally followed by dropout in the same pass;
//! backward routes gradients to the argmax.

use ndarray::Array3;

use super::{expect_ranks, shape_error, Op, Recorder};
use crate::error::Result;
use crate::gpu::{groups_1d, Shader, Tensor};

pub static SHADER: Shader = Shader {
    name: "maxpool1d",
    source: include_str!("../../shaders/maxpool1d.wgsl"),
};

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    rows: u32,
    len_in: u32,
    len_out: u32,
    size: u32,
    seed: u32,
    rate: f32,
    _unused: [u32; 2],
}

/// Input `[B, C, L]` → output `[B, C, L / size]`. With `dropout`, the output is then multiplied
/// by the mask [`super::dropout::Dropout`] with the same rate and seed would draw.
pub struct MaxPool1d {
    pub size: usize,
    /// (rate, layer seed) of a fused dropout.
    pub dropout: Option<(f32, u32)>,
}

impl MaxPool1d {
    pub fn new(size: usize) -> Self {
        Self {
            size,
            dropout: None,
        }
    }

    /// Max-pool then dropout at `rate` with the layer seed `seed`, in one op.
    pub fn with_dropout(size: usize, rate: f32, seed: u32) -> Self {
        Self {
            size,
            dropout: Some((rate, seed)),
        }
    }

    fn params(&self, x: &[usize]) -> Params {
        let (rate, seed) = self.dropout.unwrap_or((0.0, 0));
        Params {
            rows: (x[0] * x[1]) as u32,
            len_in: x[2] as u32,
            len_out: (x[2] / self.size) as u32,
            size: self.size as u32,
            seed,
            rate,
            _unused: [0; 2],
        }
    }
}

impl Op for MaxPool1d {
    fn name(&self) -> &'static str {
        "maxpool1d"
    }

    fn output_shape(&self, inputs: &[&[usize]]) -> Result<Vec<usize>> {
        expect_ranks("maxpool1d", inputs, &[3])?;
        let x = inputs[0];
        if let Some((rate, _)) = self.dropout {
            if !(0.0..1.0).contains(&rate) {
                return Err(shape_error(
                    "maxpool1d",
                    format!("dropout rate {rate} must be in [0, 1)"),
                ));
            }
        }
        if self.size == 0 || x[2] < self.size {
            return Err(shape_error(
                "maxpool1d",
                format!("length {} cannot be pooled by {}", x[2], self.size),
            ));
        }
        Ok(vec![x[0], x[1], x[2] / self.size])
    }

    fn forward(
        &self,
        rec: &mut Recorder,
        inputs: &[&Tensor],
        output: &Tensor,
    ) -> Result<Vec<Tensor>> {
        let argmax = Tensor::zeros(rec.ctx, output.shape());
        let p = self.params(inputs[0].shape());
        rec.push(
            &SHADER,
            "forward",
            &p,
            &[
                (1, inputs[0].binding()),
                (2, output.binding()),
                (3, argmax.binding()),
                (7, rec.step.as_entire_binding()),
            ],
            groups_1d(output.numel()),
        )?;
        Ok(vec![argmax])
    }

    fn backward(
        &self,
        rec: &mut Recorder,
        inputs: &[&Tensor],
        saved: &[Tensor],
        dy: &Tensor,
        grad_inputs: &[Option<&Tensor>],
    ) -> Result<()> {
        let Some(dx) = grad_inputs[0] else {
            return Ok(());
        };
        let p = self.params(inputs[0].shape());
        rec.push(
            &SHADER,
            "backward",
            &p,
            &[
                (4, dy.binding()),
                (5, saved[0].binding()),
                (6, dx.binding()),
                (7, rec.step.as_entire_binding()),
            ],
            groups_1d(dx.numel()),
        )
    }
}

/// CPU reference: (output, argmax position in the input row).
pub fn reference_forward(x: &Array3<f64>, size: usize) -> (Array3<f64>, Array3<usize>) {
    let (batch, channels, len) = x.dim();
    let len_out = len / size;
    let mut y = Array3::zeros((batch, channels, len_out));
    let mut arg = Array3::zeros((batch, channels, len_out));
    for b in 0..batch {
        for c in 0..channels {
            for j in 0..len_out {
                let mut best = j * size;
                for t in 1..size {
                    if x[[b, c, j * size + t]] > x[[b, c, best]] {
                        best = j * size + t;
                    }
                }
                y[[b, c, j]] = x[[b, c, best]];
                arg[[b, c, j]] = best;
            }
        }
    }
    (y, arg)
}

pub fn reference_backward(x: &Array3<f64>, dy: &Array3<f64>, size: usize) -> Array3<f64> {
    let (_, arg) = reference_forward(x, size);
    let mut dx = Array3::zeros(x.dim());
    for ((b, c, j), &g) in dy.indexed_iter() {
        dx[[b, c, arg[[b, c, j]]]] += g;
    }
    dx
}
