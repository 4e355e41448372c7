//! Adam with bias correction (and optional decoupled weight decay), run as one GPU dispatch over
//! the model's flat parameter buffer.

use serde::{Deserialize, Serialize};

use crate::error::Result;
use crate::gpu::{groups_1d, GpuContext, Shader, Tensor};
use crate::ops::{Recorder, StepUniform};

pub static SHADER: Shader = Shader {
    name: "adam",
    source: include_str!("../shaders/adam.wgsl"),
};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AdamConfig {
    pub lr: f32,
    pub beta1: f32,
    pub beta2: f32,
    pub eps: f32,
    /// Decoupled (AdamW-style): `p -= lr * weight_decay * p` each step.
    pub weight_decay: f32,
    /// Learning-rate multiplier for the convolutional (feature) layers: below 1 when
    /// fine-tuning a transferred extractor, 0 to freeze it.
    #[serde(default = "one")]
    pub feature_lr_scale: f32,
}

fn one() -> f32 {
    1.0
}

impl Default for AdamConfig {
    /// The paper's learning rate 1e-4 with the usual betas and epsilon.
    fn default() -> Self {
        Self {
            lr: 1e-4,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 0.0,
            feature_lr_scale: 1.0,
        }
    }
}

impl AdamConfig {
    /// The step uniform for optimiser step `t` (1-based).
    pub fn step_uniform(&self, t: u32) -> StepUniform {
        StepUniform {
            step: t,
            lr: self.lr,
            bias_correction1: 1.0 - self.beta1.powi(t as i32),
            bias_correction2: 1.0 - self.beta2.powi(t as i32),
            ..Default::default()
        }
    }
}

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    n: u32,
    beta1: f32,
    beta2: f32,
    eps: f32,
    weight_decay: f32,
    scaled_len: u32,
    lr_scale: f32,
}

/// Adam's moment buffers.
pub struct Adam {
    pub config: AdamConfig,
    pub m: Tensor,
    pub v: Tensor,
    /// Elements at the start of the parameter buffer that take `config.feature_lr_scale`.
    pub feature_len: usize,
}

impl Adam {
    /// Moments for `n` parameters, the first `feature_len` of which are the feature layers.
    pub fn new(ctx: &GpuContext, config: AdamConfig, n: usize, feature_len: usize) -> Self {
        Self {
            config,
            m: Tensor::zeros(ctx, &[n]),
            v: Tensor::zeros(ctx, &[n]),
            feature_len,
        }
    }

    /// Records the in-place update of `params` from `grads` (same length as the moments).
    pub fn record(&self, rec: &mut Recorder, params: &Tensor, grads: &Tensor) -> Result<()> {
        let n = self.m.numel();
        let p = Params {
            n: n as u32,
            beta1: self.config.beta1,
            beta2: self.config.beta2,
            eps: self.config.eps,
            weight_decay: self.config.weight_decay,
            scaled_len: self.feature_len as u32,
            lr_scale: self.config.feature_lr_scale,
        };
        rec.push(
            &SHADER,
            "adam",
            &p,
            &[
                (1, rec.step.as_entire_binding()),
                (2, params.binding()),
                (3, grads.binding()),
                (4, self.m.binding()),
                (5, self.v.binding()),
            ],
            groups_1d(n),
        )
    }
}

/// CPU reference of one Adam step `t` (1-based), in f64; the first `feature_len` elements take
/// the learning rate times `feature_lr_scale`.
pub fn reference_step(
    c: &AdamConfig,
    t: u32,
    p: &mut [f64],
    g: &[f64],
    (m, v): (&mut [f64], &mut [f64]),
    feature_len: usize,
) {
    let (b1, b2) = (f64::from(c.beta1), f64::from(c.beta2));
    let bc1 = 1.0 - b1.powi(t as i32);
    let bc2 = 1.0 - b2.powi(t as i32);
    for i in 0..p.len() {
        m[i] = b1 * m[i] + (1.0 - b1) * g[i];
        v[i] = b2 * v[i] + (1.0 - b2) * g[i] * g[i];
        let update = (m[i] / bc1) / ((v[i] / bc2).sqrt() + f64::from(c.eps))
            + f64::from(c.weight_decay) * p[i];
        let scale = if i < feature_len {
            f64::from(c.feature_lr_scale)
        } else {
            1.0
        };
        p[i] -= f64::from(c.lr) * scale * update;
    }
}
