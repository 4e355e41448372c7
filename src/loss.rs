//! Two-fold focal loss (and plain cross-entropy as its γ = 0 case), fused with softmax on the GPU.
//!
//! `FL_total = FL(α1, γm) + FL(α2, γn)` with `FL = -α_t (1 - p_t)^γ log p_t`; α may differ per
//! class. The kernel writes each sample's loss and the gradient w.r.t. the logits of the batch
//! mean and the mean itself in one dispatch, so a step reads back 4 bytes.
//!
//! With `soft_targets` each sample's target is a probability row instead of a label (a
//! teacher's probabilities, for distillation): `-Σ_j α_j t_j log p_j`, γ = 0.

use ndarray::Array2;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::gpu::{GpuContext, Shader, Tensor};
use crate::ops::Recorder;

pub static SHADER: Shader = Shader {
    name: "focal_loss",
    source: include_str!("../shaders/focal_loss.wgsl"),
};

/// One fold `-α_t (1 - p_t)^γ log p_t`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FocalTerm {
    /// Per-class weights α (one entry per class).
    pub alpha: Vec<f32>,
    pub gamma: f32,
}

/// The sum of one or two focal terms.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LossConfig {
    pub terms: Vec<FocalTerm>,
    /// Targets are probability rows ([`FocalLoss::targets`]), not labels; every γ is 0.
    #[serde(default, skip_serializing_if = "crate::is_default")]
    pub soft_targets: bool,
}

impl LossConfig {
    /// Plain cross-entropy: one term, α = 1, γ = 0.
    pub fn cross_entropy(classes: usize) -> Self {
        Self {
            terms: vec![FocalTerm {
                alpha: vec![1.0; classes],
                gamma: 0.0,
            }],
            soft_targets: false,
        }
    }

    /// Cross-entropy to soft targets (a teacher's probabilities): `-Σ_j t_j log p_j`.
    pub fn soft_cross_entropy(classes: usize) -> Self {
        Self {
            soft_targets: true,
            ..Self::cross_entropy(classes)
        }
    }

    /// The paper's `FL(α1, γm) + FL(α2, γn)` with per-class α vectors.
    pub fn two_fold(alpha1: Vec<f32>, gamma_m: f32, alpha2: Vec<f32>, gamma_n: f32) -> Self {
        Self {
            terms: vec![
                FocalTerm {
                    alpha: alpha1,
                    gamma: gamma_m,
                },
                FocalTerm {
                    alpha: alpha2,
                    gamma: gamma_n,
                },
            ],
            soft_targets: false,
        }
    }

    pub fn validate(&self, classes: usize) -> Result<()> {
        if self.terms.is_empty() || self.terms.len() > 2 {
            return Err(Error::Config(format!(
                "loss needs 1 or 2 focal terms, got {}",
                self.terms.len()
            )));
        }
        for (i, t) in self.terms.iter().enumerate() {
            if t.alpha.len() != classes {
                return Err(Error::Config(format!(
                    "focal term {} has {} alpha values for {classes} classes",
                    i + 1,
                    t.alpha.len()
                )));
            }
            if !(t.gamma >= 0.0 && t.gamma.is_finite())
                || t.alpha.iter().any(|a| !(a.is_finite() && *a >= 0.0))
            {
                return Err(Error::Config(format!(
                    "focal term {} needs γ ≥ 0 and α ≥ 0",
                    i + 1
                )));
            }
            if self.soft_targets && t.gamma != 0.0 {
                return Err(Error::Config(format!(
                    "focal term {} has γ = {}: soft targets take γ = 0",
                    i + 1,
                    t.gamma
                )));
            }
        }
        Ok(())
    }
}

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    batch: u32,
    classes: u32,
    terms: u32,
    soft: u32,
    gamma0: f32,
    gamma1: f32,
    grad_scale: f32,
    _unused2: f32,
}

/// The loss's GPU buffers for one batch size.
pub struct FocalLoss {
    config: LossConfig,
    classes: usize,
    pub labels: Tensor,
    /// The target probability rows `[batch, classes]` (read only with soft targets).
    pub targets: Tensor,
    alpha: Tensor,
    pub per_sample: Tensor,
    pub mean: Tensor,
    pub dlogits: Tensor,
}

impl FocalLoss {
    pub fn new(
        ctx: &GpuContext,
        config: &LossConfig,
        batch: usize,
        classes: usize,
    ) -> Result<Self> {
        config.validate(classes)?;
        let alpha: Vec<f32> = config
            .terms
            .iter()
            .flat_map(|t| t.alpha.iter().copied())
            .collect();
        Ok(Self {
            config: config.clone(),
            classes,
            labels: Tensor::zeros(ctx, &[batch]),
            targets: Tensor::zeros(ctx, &[batch, classes]),
            alpha: Tensor::from_slice(ctx, &alpha, &[config.terms.len(), classes])?,
            per_sample: Tensor::zeros(ctx, &[batch]),
            mean: Tensor::zeros(ctx, &[1]),
            dlogits: Tensor::zeros(ctx, &[batch, classes]),
        })
    }

    /// Uploads labels, rejecting any outside `0..classes`.
    pub fn set_labels(&self, ctx: &GpuContext, labels: &[u32]) -> Result<()> {
        check_labels(labels, self.classes)?;
        self.labels.write(ctx, labels)
    }

    /// Whether the targets are probability rows ([`Self::set_targets`]) rather than labels.
    pub fn soft(&self) -> bool {
        self.config.soft_targets
    }

    /// Uploads soft targets (`[batch, classes]` rows), rejecting a row that is not a
    /// probability distribution.
    pub fn set_targets(&self, ctx: &GpuContext, targets: &[f32]) -> Result<()> {
        check_targets(targets, self.classes)?;
        self.targets.write(ctx, targets)
    }

    /// Records the fused softmax + loss + gradient + batch-mean kernel (one dispatch).
    pub fn record(&self, rec: &mut Recorder, logits: &Tensor) -> Result<()> {
        let batch = self.per_sample.numel();
        if logits.shape() != [batch, self.classes] {
            return Err(Error::Shape {
                op: "focal loss".into(),
                detail: format!(
                    "logits {:?}, expected [{batch}, {}]",
                    logits.shape(),
                    self.classes
                ),
            });
        }
        let gamma = |i: usize| self.config.terms.get(i).map_or(0.0, |t| t.gamma);
        let params = Params {
            batch: batch as u32,
            classes: self.classes as u32,
            terms: self.config.terms.len() as u32,
            soft: u32::from(self.config.soft_targets),
            gamma0: gamma(0),
            gamma1: gamma(1),
            grad_scale: 1.0 / batch as f32,
            _unused2: 0.0,
        };
        rec.push(
            &SHADER,
            "focal_loss",
            &params,
            &[
                (1, logits.binding()),
                (2, self.labels.binding()),
                (3, self.alpha.binding()),
                (4, self.per_sample.binding()),
                (5, self.dlogits.binding()),
                (6, self.mean.binding()),
                (7, self.targets.binding()),
            ],
            [1, 1, 1],
        )
    }
}

/// Rejects the first label outside `0..classes`, naming its index.
pub fn check_labels(labels: &[u32], classes: usize) -> Result<()> {
    match labels
        .iter()
        .enumerate()
        .find(|(_, &l)| l as usize >= classes)
    {
        Some((index, &label)) => Err(Error::Label {
            label,
            index,
            classes,
        }),
        None => Ok(()),
    }
}

/// Rejects the first target row that is not a probability distribution (entries in 0..=1
/// summing to 1 within 1e-3), naming its index.
pub fn check_targets(targets: &[f32], classes: usize) -> Result<()> {
    let bad = targets.chunks(classes).position(|row| {
        row.len() != classes
            || row.iter().any(|t| !(0.0..=1.0).contains(t))
            || (row.iter().sum::<f32>() - 1.0).abs() > 1e-3
    });
    match bad {
        Some(row) => Err(Error::Config(format!(
            "soft target row {row} is not {classes} probabilities summing to 1"
        ))),
        None => Ok(()),
    }
}

/// CPU reference of the soft-target loss: (mean loss, d mean loss / d logits).
pub fn reference_soft(
    config: &LossConfig,
    logits: &Array2<f64>,
    targets: &Array2<f64>,
) -> (f64, Array2<f64>) {
    let probs = crate::ops::softmax::reference(logits);
    let batch = logits.nrows() as f64;
    let mut total = 0.0;
    let mut grad = Array2::zeros(logits.dim());
    for b in 0..logits.nrows() {
        for term in &config.terms {
            let a = |j: usize| f64::from(term.alpha[j]) * targets[[b, j]];
            let weight: f64 = (0..logits.ncols()).map(a).sum();
            for j in 0..logits.ncols() {
                total -= a(j) * probs[[b, j]].ln();
                grad[[b, j]] += (probs[[b, j]] * weight - a(j)) / batch;
            }
        }
    }
    (total / batch, grad)
}

/// CPU reference, written from the formula directly: (mean loss, d mean loss / d logits).
pub fn reference(config: &LossConfig, logits: &Array2<f64>, labels: &[u32]) -> (f64, Array2<f64>) {
    let probs = crate::ops::softmax::reference(logits);
    let batch = logits.nrows() as f64;
    let mut total = 0.0;
    let mut grad = Array2::zeros(logits.dim());
    for (b, &t) in labels.iter().enumerate() {
        let t = t as usize;
        let p = probs[[b, t]];
        let mut g_sum = 0.0;
        for term in &config.terms {
            let (a, gamma) = (f64::from(term.alpha[t]), f64::from(term.gamma));
            total += -a * (1.0 - p).powf(gamma) * p.ln();
            let second = if gamma == 0.0 {
                0.0
            } else {
                gamma * p * (1.0 - p).powf(gamma - 1.0) * p.ln()
            };
            g_sum += a * ((1.0 - p).powf(gamma) - second);
        }
        for j in 0..logits.ncols() {
            let target = if j == t { 1.0 } else { 0.0 };
            grad[[b, j]] = g_sum * (probs[[b, j]] - target) / batch;
        }
    }
    (total / batch, grad)
}

/// Mean loss computed from probabilities (evaluation, where the GPU returns softmax outputs).
pub fn mean_from_probs(config: &LossConfig, probs: &[f32], labels: &[u32]) -> f64 {
    let classes = probs.len() / labels.len().max(1);
    let total: f64 = labels
        .iter()
        .enumerate()
        .map(|(b, &t)| {
            let p = f64::from(probs[b * classes + t as usize]).max(1e-12);
            config
                .terms
                .iter()
                .map(|term| {
                    -f64::from(term.alpha[t as usize])
                        * (1.0 - p).powf(f64::from(term.gamma))
                        * p.ln()
                })
                .sum::<f64>()
        })
        .sum();
    total / labels.len().max(1) as f64
}
