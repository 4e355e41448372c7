//! ReLU.

use ndarray::ArrayD;

use super::{shape_error, Op, Recorder};
use crate::error::Result;
use crate::gpu::{groups_1d, Shader, Tensor};

pub static SHADER: Shader = Shader {
    name: "relu",
    source: include_str!("../../shaders/relu.wgsl"),
};

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    n: u32,
}

pub struct Relu;

impl Op for Relu {
    fn name(&self) -> &'static str {
        "relu"
    }

    fn output_shape(&self, inputs: &[&[usize]]) -> Result<Vec<usize>> {
        match inputs {
            [x] => Ok(x.to_vec()),
            _ => Err(shape_error("relu", "expects one input")),
        }
    }

    fn forward(
        &self,
        rec: &mut Recorder,
        inputs: &[&Tensor],
        output: &Tensor,
    ) -> Result<Vec<Tensor>> {
        let n = output.numel();
        let params = Params { n: n as u32 };
        rec.push(
            &SHADER,
            "forward",
            &params,
            &[(1, inputs[0].binding()), (2, output.binding())],
            groups_1d(n),
        )?;
        Ok(vec![])
    }

    fn backward(
        &self,
        rec: &mut Recorder,
        inputs: &[&Tensor],
        _saved: &[Tensor],
        grad_output: &Tensor,
        grad_inputs: &[Option<&Tensor>],
    ) -> Result<()> {
        let Some(dx) = grad_inputs[0] else {
            return Ok(());
        };
        mask_gradient(rec, inputs[0], grad_output, dx)
    }
}

/// Records `dx = dy * (x > 0)`. `x` may be the ReLU's input or its output: both are positive at
/// the same places.
pub fn mask_gradient(rec: &mut Recorder, x: &Tensor, dy: &Tensor, dx: &Tensor) -> Result<()> {
    let n = dx.numel();
    let params = Params { n: n as u32 };
    rec.push(
        &SHADER,
        "backward",
        &params,
        &[(1, x.binding()), (3, dy.binding()), (4, dx.binding())],
        groups_1d(n),
    )
}

pub fn reference_forward(x: &ArrayD<f64>) -> ArrayD<f64> {
    x.mapv(|v| v.max(0.0))
}

pub fn reference_backward(x: &ArrayD<f64>, dy: &ArrayD<f64>) -> ArrayD<f64> {
    let mut dx = dy.clone();
    dx.zip_mut_with(x, |d, &v| {
        if v <= 0.0 {
            *d = 0.0
        }
    });
    dx
}
