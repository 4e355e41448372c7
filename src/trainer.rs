//! The training-step API: `step(x, y) -> loss` runs forward, loss, backward and Adam in one
//! submission and reads back 4 bytes. Programs are built once per batch size and replayed.

use std::collections::HashMap;
use std::sync::Arc;

use crate::autograd::{Graph, Var};
use crate::error::{Error, Result};
use crate::gpu::{map_and_read, GpuContext, Program, Tensor};
use crate::loss::{FocalLoss, LossConfig};
use crate::model::Model;
use crate::ops::{softmax, Recorder, StepUniform};
use crate::optim::{Adam, AdamConfig};

/// The buffers and programs of one batch size.
struct TrainPlan<'c> {
    graph: Graph<'c>,
    input: Tensor,
    loss: FocalLoss,
    loss_program: Program,
}

struct InferPlan<'c> {
    graph: Graph<'c>,
    input: Tensor,
    probs: Tensor,
    softmax_program: Program,
}

pub struct Trainer<'c> {
    ctx: &'c GpuContext,
    pub model: Model,
    loss_config: LossConfig,
    adam: Adam,
    adam_program: Program,
    step_uniform: Arc<wgpu::Buffer>,
    /// Optimiser steps taken so far (Adam's t after the last step).
    steps: u32,
    staging: wgpu::Buffer,
    train_plans: HashMap<usize, TrainPlan<'c>>,
    infer_plans: HashMap<usize, InferPlan<'c>>,
}

impl<'c> Trainer<'c> {
    pub fn new(
        ctx: &'c GpuContext,
        model: Model,
        loss: LossConfig,
        adam: AdamConfig,
    ) -> Result<Self> {
        loss.validate(model.config.classes)?;
        let step_uniform = StepUniform::default().create_buffer(ctx);
        let adam = Adam::new(
            ctx,
            adam,
            model.params.flat_len(),
            model.params.feature_len(),
        );
        let mut adam_program = Program::new();
        adam.record(
            &mut Recorder {
                ctx,
                step: &step_uniform,
                program: &mut adam_program,
            },
            &model.params.values,
            &model.params.grads,
        )?;
        let staging = ctx.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("loss readback"),
            size: 4,
            usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        Ok(Self {
            ctx,
            model,
            loss_config: loss,
            adam,
            adam_program,
            step_uniform,
            steps: 0,
            staging,
            train_plans: HashMap::new(),
            infer_plans: HashMap::new(),
        })
    }

    /// A trainer used only to predict (evaluation, `predict`, benchmarks): cross-entropy and
    /// default Adam settings, which prediction never touches.
    pub fn for_inference(ctx: &'c GpuContext, model: Model) -> Result<Self> {
        let classes = model.config.classes;
        Self::new(
            ctx,
            model,
            LossConfig::cross_entropy(classes),
            AdamConfig::default(),
        )
    }

    /// The GPU context the trainer runs on.
    pub fn ctx(&self) -> &'c GpuContext {
        self.ctx
    }

    /// Optimiser steps taken so far.
    pub fn steps(&self) -> u32 {
        self.steps
    }

    /// Adam's first and second moments (flat, the parameter buffer's layout), for resuming.
    pub fn optimizer_state(&self) -> Result<(Vec<f32>, Vec<f32>)> {
        Ok((self.adam.m.read(self.ctx)?, self.adam.v.read(self.ctx)?))
    }

    /// Restores the moments and step count saved by [`Self::optimizer_state`], so training goes on
    /// exactly where it stopped (dropout masks follow the step count too).
    pub fn restore_optimizer(&mut self, m: &[f32], v: &[f32], steps: u32) -> Result<()> {
        let n = self.adam.m.numel();
        if m.len() != n || v.len() != n {
            return Err(Error::Shape {
                op: "optimizer state".into(),
                detail: format!(
                    "moments of {} and {} values, expected {n}",
                    m.len(),
                    v.len()
                ),
            });
        }
        self.adam.m.write(self.ctx, m)?;
        self.adam.v.write(self.ctx, v)?;
        self.steps = steps;
        Ok(())
    }

    fn input_shape(&self, batch: usize) -> [usize; 3] {
        [
            batch,
            self.model.config.in_channels,
            self.model.config.input_len,
        ]
    }

    /// Checks a batch: non-empty, sizes consistent, every value finite.
    fn check_batch(&self, x: &[f32], batch: usize) -> Result<()> {
        if batch == 0 {
            return Err(Error::EmptyBatch("a batch needs at least one beat".into()));
        }
        let per_beat = self.model.config.in_channels * self.model.config.input_len;
        if x.len() != batch * per_beat {
            return Err(Error::Shape {
                op: "batch".into(),
                detail: format!("{} values for {batch} beats of {per_beat} samples", x.len()),
            });
        }
        if let Some(i) = x.iter().position(|v| !v.is_finite()) {
            return Err(Error::NonFinite {
                what: "input batch".into(),
                position: format!("beat {}, sample {}", i / per_beat, i % per_beat),
            });
        }
        Ok(())
    }

    fn ensure_train_plan(&mut self, batch: usize) -> Result<()> {
        if !self.train_plans.contains_key(&batch) {
            let input = Tensor::zeros(self.ctx, &self.input_shape(batch));
            let mut graph = Graph::new(self.ctx, self.step_uniform.clone());
            let x = graph.input(input.clone());
            let logits = self.model.build(&mut graph, x, true)?;
            let loss = FocalLoss::new(
                self.ctx,
                &self.loss_config,
                batch,
                self.model.config.classes,
            )?;
            let mut loss_program = Program::new();
            loss.record(
                &mut Recorder {
                    ctx: self.ctx,
                    step: &self.step_uniform,
                    program: &mut loss_program,
                },
                graph.value(logits),
            )?;
            graph.backward(logits, loss.dlogits.clone())?;
            self.train_plans.insert(
                batch,
                TrainPlan {
                    graph,
                    input,
                    loss,
                    loss_program,
                },
            );
        }
        Ok(())
    }

    /// Forward, loss and backward on one batch; gradients are left in `model.params.grads`.
    /// With `update`, also takes an Adam step. Returns the mean loss.
    fn run(&mut self, x: &[f32], y: &[u32], update: bool) -> Result<f32> {
        self.check_batch(x, y.len())?;
        let t = self.steps + 1;
        let step = self.adam.config.step_uniform(t);
        let ctx = self.ctx;
        self.ensure_train_plan(y.len())?;
        let plan = &self.train_plans[&y.len()];
        plan.loss.set_labels(ctx, y)?;
        plan.input.write(ctx, x)?;
        ctx.queue
            .write_buffer(&self.step_uniform, 0, bytemuck::bytes_of(&step));
        let mut encoder = ctx.device.create_command_encoder(&Default::default());
        plan.graph.forward.encode(&mut encoder);
        plan.loss_program.encode(&mut encoder);
        plan.graph.backward.encode(&mut encoder);
        if update {
            self.adam_program.encode(&mut encoder);
        }
        encoder.copy_buffer_to_buffer(
            plan.loss.mean.buffer(),
            plan.loss.mean.offset(),
            &self.staging,
            0,
            4,
        );
        ctx.queue.submit([encoder.finish()]);
        let loss = f32::from_le_bytes(
            map_and_read(ctx, &self.staging, 4)?[..4]
                .try_into()
                .expect("4 bytes"),
        );
        if update {
            self.steps = t;
        }
        if !loss.is_finite() {
            return Err(Error::NonFinite {
                what: "training loss".into(),
                position: format!("optimiser step {t}"),
            });
        }
        Ok(loss)
    }

    /// One training step: forward, two-fold focal loss, backward, Adam. Returns the batch's mean loss.
    pub fn step(&mut self, x: &[f32], y: &[u32]) -> Result<f32> {
        self.run(x, y, true)
    }

    /// Forward and backward without updating (gradient checks, diagnostics). Dropout uses the
    /// mask of the next step.
    pub fn gradients(&mut self, x: &[f32], y: &[u32]) -> Result<f32> {
        self.run(x, y, false)
    }

    /// Class probabilities `[batch * classes]` in evaluation mode (no dropout).
    pub fn predict(&mut self, x: &[f32]) -> Result<Vec<f32>> {
        let batch = x.len() / (self.model.config.in_channels * self.model.config.input_len).max(1);
        self.check_batch(x, batch)?;
        if !self.infer_plans.contains_key(&batch) {
            let input = Tensor::zeros(self.ctx, &self.input_shape(batch));
            let mut graph = Graph::new(self.ctx, self.step_uniform.clone());
            let xv: Var = graph.input(input.clone());
            let logits = self.model.build(&mut graph, xv, false)?;
            let probs = Tensor::zeros(self.ctx, graph.value(logits).shape());
            let mut softmax_program = Program::new();
            softmax::softmax(
                &mut Recorder {
                    ctx: self.ctx,
                    step: &self.step_uniform,
                    program: &mut softmax_program,
                },
                graph.value(logits),
                &probs,
            )?;
            self.infer_plans.insert(
                batch,
                InferPlan {
                    graph,
                    input,
                    probs,
                    softmax_program,
                },
            );
        }
        let plan = &self.infer_plans[&batch];
        plan.input.write(self.ctx, x)?;
        let mut encoder = self.ctx.device.create_command_encoder(&Default::default());
        plan.graph.forward.encode(&mut encoder);
        plan.softmax_program.encode(&mut encoder);
        self.ctx.queue.submit([encoder.finish()]);
        plan.probs.read(self.ctx)
    }

    /// Class probabilities for any number of beats (row-major `[n, in_channels * input_len]`),
    /// run in inference batches of `batch`.
    pub fn predict_many(&mut self, x: &[f32], batch: usize) -> Result<Vec<f32>> {
        let per_beat = self.model.config.in_channels * self.model.config.input_len;
        let mut probs = Vec::with_capacity(x.len() / per_beat.max(1) * self.model.config.classes);
        for chunk in x.chunks(batch.max(1) * per_beat) {
            probs.extend(self.predict(chunk)?);
        }
        Ok(probs)
    }

    /// Per-dispatch wall times of one training step at `batch` (forward, loss, backward, Adam),
    /// each dispatch submitted alone. Runs on whatever data the plan last saw.
    pub fn profile_step(&mut self, batch: usize) -> Result<Vec<(String, f64)>> {
        self.ensure_train_plan(batch)?;
        let plan = &self.train_plans[&batch];
        let mut times = plan.graph.forward.time_each(self.ctx)?;
        times.extend(plan.loss_program.time_each(self.ctx)?);
        times.extend(plan.graph.backward.time_each(self.ctx)?);
        times.extend(self.adam_program.time_each(self.ctx)?);
        Ok(times)
    }

    /// Dispatches per training step (forward + loss + backward + Adam) at `batch`.
    pub fn dispatches_per_step(&mut self, batch: usize) -> Result<usize> {
        let adam = self.adam_program.len();
        self.ensure_train_plan(batch)?;
        let plan = &self.train_plans[&batch];
        Ok(plan.graph.forward.len() + plan.loss_program.len() + plan.graph.backward.len() + adam)
    }
}
