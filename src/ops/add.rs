//! Elementwise add (residual connections; also how tests exercise gradient fan-in) and the
//! gradient accumulation the autograd graph uses when a tensor feeds several ops.

use super::{shape_error, Op, Recorder};
use crate::error::Result;
use crate::gpu::{groups_1d, Shader, Tensor};

pub static SHADER: Shader = Shader {
    name: "elementwise",
    source: include_str!("../../shaders/elementwise.wgsl"),
};

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    n: u32,
}

pub struct Add;

impl Op for Add {
    fn name(&self) -> &'static str {
        "add"
    }

    fn output_shape(&self, inputs: &[&[usize]]) -> Result<Vec<usize>> {
        match inputs {
            [a, b] if a == b => Ok(a.to_vec()),
            [a, b] => Err(shape_error("add", format!("shapes differ: {a:?} vs {b:?}"))),
            _ => Err(shape_error("add", "expects two inputs")),
        }
    }

    fn forward(
        &self,
        rec: &mut Recorder,
        inputs: &[&Tensor],
        output: &Tensor,
    ) -> Result<Vec<Tensor>> {
        let n = output.numel();
        rec.push(
            &SHADER,
            "add",
            &Params { n: n as u32 },
            &[
                (1, inputs[0].binding()),
                (2, inputs[1].binding()),
                (3, output.binding()),
            ],
            groups_1d(n),
        )?;
        Ok(vec![])
    }

    fn backward(
        &self,
        rec: &mut Recorder,
        _inputs: &[&Tensor],
        _saved: &[Tensor],
        grad_output: &Tensor,
        grad_inputs: &[Option<&Tensor>],
    ) -> Result<()> {
        for dx in grad_inputs.iter().flatten() {
            copy(rec, grad_output, dx)?;
        }
        Ok(())
    }
}

/// Records `dst = src`.
pub fn copy(rec: &mut Recorder, src: &Tensor, dst: &Tensor) -> Result<()> {
    let n = dst.numel();
    rec.push(
        &SHADER,
        "copy",
        &Params { n: n as u32 },
        &[(1, src.binding()), (3, dst.binding())],
        groups_1d(n),
    )
}

/// Records `dst += src`.
pub fn accumulate(rec: &mut Recorder, src: &Tensor, dst: &Tensor) -> Result<()> {
    let n = dst.numel();
    rec.push(
        &SHADER,
        "accumulate",
        &Params { n: n as u32 },
        &[(1, src.binding()), (3, dst.binding())],
        groups_1d(n),
    )
}
