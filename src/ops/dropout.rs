//! Inverted dropout with a counter-based hash: reproducible under a seed, no stored mask.
//! At evaluation the model simply leaves the op out (identity). Optionally with the ReLU in
//! front of it in the same pass (`relu`): the dense layer's activation then costs no dispatch.

use ndarray::ArrayD;

use super::{shape_error, Op, Recorder};
use crate::error::Result;
use crate::gpu::{groups_1d, Shader, Tensor};

pub static SHADER: Shader = Shader {
    name: "dropout",
    source: include_str!("../../shaders/dropout.wgsl"),
};

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    n: u32,
    seed: u32,
    rate: f32,
    relu: u32,
}

pub struct Dropout {
    pub rate: f32,
    /// Per layer; the step counter comes from the step uniform.
    pub seed: u32,
    /// Apply ReLU first: `y = max(x, 0) * mask`, and backward masks by `x > 0` too.
    pub relu: bool,
}

impl Dropout {
    fn params(&self, n: usize) -> Params {
        Params {
            n: n as u32,
            seed: self.seed,
            rate: self.rate,
            relu: self.relu as u32,
        }
    }
}

impl Op for Dropout {
    fn name(&self) -> &'static str {
        "dropout"
    }

    fn output_shape(&self, inputs: &[&[usize]]) -> Result<Vec<usize>> {
        if !(0.0..1.0).contains(&self.rate) {
            return Err(shape_error(
                "dropout",
                format!("rate {} must be in [0, 1)", self.rate),
            ));
        }
        match inputs {
            [x] => Ok(x.to_vec()),
            _ => Err(shape_error("dropout", "expects one input")),
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
            "forward",
            &self.params(n),
            &[
                (1, rec.step.as_entire_binding()),
                (2, inputs[0].binding()),
                (3, output.binding()),
            ],
            groups_1d(n),
        )?;
        Ok(vec![])
    }

    fn backward(
        &self,
        rec: &mut Recorder,
        inputs: &[&Tensor],
        _saved: &[Tensor],
        dy: &Tensor,
        grad_inputs: &[Option<&Tensor>],
    ) -> Result<()> {
        let Some(dx) = grad_inputs[0] else {
            return Ok(());
        };
        let n = dx.numel();
        rec.push(
            &SHADER,
            "backward",
            &self.params(n),
            &[
                (1, rec.step.as_entire_binding()),
                (2, inputs[0].binding()),
                (4, dy.binding()),
                (5, dx.binding()),
            ],
            groups_1d(n),
        )
    }
}

/// Mirrors `pcg_hash` in `shaders/common.wgsl` bit for bit.
pub fn pcg_hash(v: u32) -> u32 {
    let state = v.wrapping_mul(747_796_405).wrapping_add(2_891_336_453);
    let word = ((state >> ((state >> 28) + 4)) ^ state).wrapping_mul(277_803_737);
    (word >> 22) ^ word
}

/// The multiplier (0 or 1 / (1 - rate)) the GPU applies to element `i` at `step`.
pub fn keep_scale(seed: u32, step: u32, rate: f32, i: u32) -> f32 {
    let h = pcg_hash(pcg_hash(seed ^ pcg_hash(step)) ^ i);
    let u = (h >> 8) as f32 * (1.0 / 16_777_216.0);
    if u >= rate {
        1.0 / (1.0 - rate)
    } else {
        0.0
    }
}

/// CPU reference: forward and backward are the same multiplication by the mask.
pub fn reference_apply(x: &ArrayD<f64>, seed: u32, step: u32, rate: f32) -> ArrayD<f64> {
    let mut y = x.clone();
    for (i, v) in y.iter_mut().enumerate() {
        *v *= f64::from(keep_scale(seed, step, rate, i as u32));
    }
    y
}
