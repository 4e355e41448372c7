//! The training API. `step(x, y) -> loss` runs forward, loss, backward and Adam on one uploaded
//! batch in one submission and reads back 4 bytes. `train_epoch` is the GPU-resident loop: the
//! training split is uploaded once, each step gathers its batch on the GPU from the epoch's
//! order, many steps go into one submission, and the per-step losses are read back once per
//! submission. Programs are built once per batch size and replayed.

use std::collections::HashMap;
use std::sync::Arc;

use crate::autograd::{Graph, Var};
use crate::error::{Error, Result};
use crate::gpu::{
    block_on, map_and_read, map_and_read_async, DispatchTime, GpuContext, Program, Tensor,
};
use crate::loss::{FocalLoss, LossConfig};
use crate::model::Model;
use crate::ops::{gather, softmax, Recorder, StepUniform};
use crate::optim::{Adam, AdamConfig};

/// The buffers and programs of one batch size.
struct TrainPlan<'c> {
    graph: Graph<'c>,
    input: Tensor,
    loss: FocalLoss,
    loss_program: Program,
    /// Fills `input` and the labels from the resident training data (built on first use).
    gather_program: Option<Program>,
}

impl TrainPlan<'_> {
    /// Records one step on whatever batch the input holds: forward, loss, backward, then
    /// `adam` when given; the mean loss stays in `loss.mean`.
    fn encode_step(&self, encoder: &mut wgpu::CommandEncoder, adam: Option<&Program>) {
        self.graph.forward.encode(encoder);
        self.loss_program.encode(encoder);
        self.graph.backward.encode(encoder);
        if let Some(adam) = adam {
            adam.encode(encoder);
        }
    }
}

/// The error of a non-finite mean loss at optimiser step `t`.
fn non_finite_loss(t: u32) -> Error {
    Error::NonFinite {
        what: "training loss".into(),
        position: format!("optimiser step {t}"),
    }
}

/// The training split on the GPU (uploaded once per run) and the epoch's order.
struct Resident {
    x: Tensor,
    labels: Tensor,
    order: Tensor,
    /// Soft target rows `[n, classes]`, for a soft-target loss.
    targets: Option<Tensor>,
}

/// The most steps recorded into one submission of `train_epoch`; the chunk grows from 1 up to
/// this while a submission takes under [`TARGET_SUBMIT_SECONDS`], so progress stays live on slow
/// adapters and fast ones are not held back by a round trip per step.
const MAX_STEPS_PER_SUBMIT: usize = 256;
/// Inference plans kept: the full batch and the last remainder.
const INFER_PLANS_KEPT: usize = 2;
const TARGET_SUBMIT_SECONDS: f64 = 0.25;

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
    /// Batch sizes of `infer_plans`, least recently used first: at most [`INFER_PLANS_KEPT`]
    /// are kept, since streaming a long recording asks for a new remainder size every chunk.
    infer_lru: Vec<usize>,
    resident: Option<Resident>,
    /// The buffers of the two submissions the resident loop keeps in flight.
    slots: [SubmitSlot; 2],
    /// Submissions of the resident loop so far (picks the slot).
    submissions: usize,
}

/// One in-flight submission's buffers in the resident loop.
struct SubmitSlot {
    /// One step uniform per step of a submission, copied into `step_uniform` before each step.
    step_table: wgpu::Buffer,
    /// Each step's mean loss, copied from the loss buffer after each step.
    loss_log: wgpu::Buffer,
    staging: wgpu::Buffer,
}

/// A submitted chunk of the resident loop whose losses are not read yet.
struct Flight {
    slot: usize,
    steps: usize,
    /// Optimiser step of its first step.
    first: u32,
    index: wgpu::SubmissionIndex,
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
            &mut Recorder::new(ctx, &step_uniform, &mut adam_program),
            &model.params.values,
            &model.params.grads,
        )?;
        let staging = ctx.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("loss readback"),
            size: 4,
            usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        let buffer = |label, size, usage| {
            ctx.device.create_buffer(&wgpu::BufferDescriptor {
                label: Some(label),
                size,
                usage,
                mapped_at_creation: false,
            })
        };
        let copy = wgpu::BufferUsages::COPY_SRC | wgpu::BufferUsages::COPY_DST;
        let table_bytes = (MAX_STEPS_PER_SUBMIT * std::mem::size_of::<StepUniform>()) as u64;
        let log_bytes = (MAX_STEPS_PER_SUBMIT * 4) as u64;
        let read = wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST;
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
            infer_lru: vec![],
            resident: None,
            slots: [0, 1].map(|_| SubmitSlot {
                step_table: buffer("step table", table_bytes, copy),
                loss_log: buffer("loss log", log_bytes, copy),
                staging: buffer("loss log readback", log_bytes, read),
            }),
            submissions: 0,
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

    /// Inference plans (one per batch size, each with a network's activations) held now.
    pub fn inference_plans(&self) -> usize {
        self.infer_plans.len()
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

    /// The input tensor's shape: `[batch, channels, length]`, or rows of samples and rhythm
    /// features for a dual-stream network.
    fn input_shape(&self, batch: usize) -> Vec<usize> {
        let c = &self.model.config;
        match c.rr_features {
            0 => vec![batch, c.in_channels, c.input_len],
            _ => vec![batch, c.row_len()],
        }
    }

    /// Checks a batch: non-empty, sizes consistent, every value finite.
    fn check_batch(&self, x: &[f32], batch: usize) -> Result<()> {
        if batch == 0 {
            return Err(Error::EmptyBatch("a batch needs at least one beat".into()));
        }
        let per_beat = self.model.config.row_len();
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
                &mut Recorder::new(self.ctx, &self.step_uniform, &mut loss_program),
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
                    gather_program: None,
                },
            );
        }
        Ok(())
    }

    /// Forward, loss and backward on one batch; gradients are left in `model.params.grads`.
    /// With `update`, also takes an Adam step. Returns the mean loss.
    fn run(&mut self, x: &[f32], y: &[u32], update: bool) -> Result<f32> {
        self.check_batch(x, y.len())?;
        if self.loss_config.soft_targets {
            return Err(Error::Config(
                "a soft-target loss trains on the uploaded split (upload_training_data and \
                 upload_training_targets, then train_epoch), not on labelled batches"
                    .into(),
            ));
        }
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
        plan.encode_step(&mut encoder, update.then_some(&self.adam_program));
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
            return Err(non_finite_loss(t));
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
        let batch = x.len() / self.model.config.row_len().max(1);
        self.check_batch(x, batch)?;
        self.ensure_infer_plan(batch)?;
        let plan = &self.infer_plans[&batch];
        plan.input.write(self.ctx, x)?;
        let mut encoder = self.ctx.device.create_command_encoder(&Default::default());
        plan.graph.forward.encode(&mut encoder);
        plan.softmax_program.encode(&mut encoder);
        self.ctx.queue.submit([encoder.finish()]);
        plan.probs.read(self.ctx)
    }

    /// The inference plan for `batch`, built if needed; the least recently used plan goes when
    /// more than [`INFER_PLANS_KEPT`] would be kept (each holds a whole network's activations).
    fn ensure_infer_plan(&mut self, batch: usize) -> Result<()> {
        self.infer_lru.retain(|&b| b != batch);
        self.infer_lru.push(batch);
        if self.infer_lru.len() > INFER_PLANS_KEPT {
            let evicted = self.infer_lru.remove(0);
            self.infer_plans.remove(&evicted);
        }
        if !self.infer_plans.contains_key(&batch) {
            let input = Tensor::zeros(self.ctx, &self.input_shape(batch));
            let mut graph = Graph::new(self.ctx, self.step_uniform.clone());
            let xv: Var = graph.input(input.clone());
            let logits = self.model.build(&mut graph, xv, false)?;
            let (members, classes) = (self.model.members, self.model.config.classes);
            let probs = Tensor::zeros(self.ctx, &[batch, classes]);
            let mut softmax_program = Program::new();
            let mut rec = Recorder::new(self.ctx, &self.step_uniform, &mut softmax_program);
            match members {
                1 => softmax::softmax(&mut rec, graph.value(logits), &probs)?,
                // a grouped network: each member's softmax, then their mean
                _ => {
                    let rows = batch * members;
                    let member_logits = graph.value(logits).reshape(&[rows, classes])?;
                    let member_probs = Tensor::zeros(self.ctx, &[rows, classes]);
                    softmax::softmax(&mut rec, &member_logits, &member_probs)?;
                    softmax::members_mean(&mut rec, &member_probs, members, &probs)?;
                }
            }
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
        Ok(())
    }

    /// Class probabilities for any number of beats (row-major `[n, row_len]`, see [`crate::model::ModelConfig::row_len`]),
    /// run in inference batches of `batch`. The batches are queued back to back (a few in
    /// flight) and their probabilities copied into one buffer that is read once at the end: no
    /// round trip per batch.
    pub fn predict_many(&mut self, x: &[f32], batch: usize) -> Result<Vec<f32>> {
        self.predict_many_with_progress(x, batch, |_, _| ())
    }

    /// [`Self::predict_many`], calling `progress(beats_done, beats_total)` as batches complete.
    pub fn predict_many_with_progress(
        &mut self,
        x: &[f32],
        batch: usize,
        progress: impl FnMut(usize, usize),
    ) -> Result<Vec<f32>> {
        block_on(self.predict_many_async(x, batch, progress))
    }

    /// [`Self::predict_many_with_progress`] as a future (the only way in a browser).
    pub async fn predict_many_async(
        &mut self,
        x: &[f32],
        batch: usize,
        mut progress: impl FnMut(usize, usize),
    ) -> Result<Vec<f32>> {
        const IN_FLIGHT: usize = 4;
        let per_beat = self.model.config.row_len();
        let classes = self.model.config.classes;
        if x.is_empty() {
            return Ok(vec![]);
        }
        // checked whole, so that an error names the beat's index in `x`
        self.check_batch(x, x.len() / per_beat)?;
        let chunks: Vec<&[f32]> = x.chunks(batch.max(1) * per_beat).collect();
        let total_bytes = (x.len() / per_beat * classes * 4) as u64;
        let ctx = self.ctx;
        let out = ctx.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("probabilities readback"),
            size: total_bytes,
            usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        let mut submissions = std::collections::VecDeque::new();
        let mut offset = 0u64;
        let total = x.len() / per_beat;
        let mut queued = 0;
        for chunk in chunks {
            self.ensure_infer_plan(chunk.len() / per_beat)?;
            let plan = &self.infer_plans[&(chunk.len() / per_beat)];
            // queue-ordered: runs after the previous batch's forward has read the input
            plan.input.write(ctx, chunk)?;
            let mut encoder = ctx.device.create_command_encoder(&Default::default());
            plan.graph.forward.encode(&mut encoder);
            plan.softmax_program.encode(&mut encoder);
            let bytes = plan.probs.size_bytes();
            encoder.copy_buffer_to_buffer(
                plan.probs.buffer(),
                plan.probs.offset(),
                &out,
                offset,
                bytes,
            );
            offset += bytes;
            queued += chunk.len() / per_beat;
            submissions.push_back((ctx.queue.submit([encoder.finish()]), queued));
            // bound the uploads waiting in wgpu's staging memory
            if submissions.len() > IN_FLIGHT {
                let (index, done) = submissions.pop_front().expect("non-empty");
                ctx.device
                    .poll(wgpu::PollType::Wait {
                        submission_index: Some(index),
                        timeout: None,
                    })
                    .map_err(|e| Error::Gpu(e.to_string()))?;
                progress(done, total);
            }
        }
        let probs =
            bytemuck::pod_collect_to_vec(&map_and_read_async(ctx, &out, total_bytes, None).await?);
        progress(total, total);
        Ok(probs)
    }

    /// Uploads the training split once, for [`Self::train_epoch`]. Fails (and nothing changes)
    /// when it does not fit one storage binding of the device; the caller then steps with
    /// uploaded batches.
    pub fn upload_training_data(&mut self, x: &[f32], labels: &[u32]) -> Result<()> {
        self.check_batch(x, labels.len())?;
        crate::loss::check_labels(labels, self.model.config.classes)?;
        let bytes = std::mem::size_of_val(x) as u64;
        let limit = self.ctx.limits.max_storage_buffer_binding_size;
        if bytes > limit {
            return Err(Error::Gpu(format!(
                "{} training beats take {bytes} bytes, over the device's {limit}-byte storage binding",
                labels.len()
            )));
        }
        let n = labels.len();
        let per_beat = x.len() / n;
        let resident = Resident {
            x: Tensor::from_slice(self.ctx, x, &[n, per_beat])?,
            labels: Tensor::zeros(self.ctx, &[n]),
            order: Tensor::zeros(self.ctx, &[n]),
            targets: None,
        };
        resident.labels.write(self.ctx, labels)?;
        // gather programs bind the previous upload's buffers
        for plan in self.train_plans.values_mut() {
            plan.gather_program = None;
        }
        self.resident = Some(resident);
        Ok(())
    }

    /// Uploads the soft targets of the uploaded split (one probability row per beat, in its
    /// order), which a soft-target loss trains towards instead of the labels.
    pub fn upload_training_targets(&mut self, targets: &[f32]) -> Result<()> {
        let classes = self.model.config.classes;
        let Some(resident) = self.resident.as_mut() else {
            return Err(Error::Config(
                "upload_training_targets before upload_training_data".into(),
            ));
        };
        let n = resident.labels.numel();
        if targets.len() != n * classes {
            return Err(Error::Config(format!(
                "{} soft target values for {n} beats of {classes} classes",
                targets.len()
            )));
        }
        crate::loss::check_targets(targets, classes)?;
        resident.targets = Some(Tensor::from_slice(self.ctx, targets, &[n, classes])?);
        for plan in self.train_plans.values_mut() {
            plan.gather_program = None;
        }
        Ok(())
    }

    /// One epoch of training on the uploaded split, in `order` (beat indices; each step takes the
    /// next `batch` of them, the last step the rest), without a CPU round trip per step.
    /// `progress(beats_done, losses)` is called after each submission with every step's loss so
    /// far. Returns the per-step losses, identical to calling [`Self::step`] on the same
    /// batches.
    pub fn train_epoch(
        &mut self,
        order: &[usize],
        batch: usize,
        progress: impl FnMut(usize, &[f32]),
    ) -> Result<Vec<f32>> {
        block_on(self.train_epoch_async(order, batch, progress))
    }

    /// [`Self::train_epoch`] as a future (the only way in a browser).
    pub async fn train_epoch_async(
        &mut self,
        order: &[usize],
        batch: usize,
        mut progress: impl FnMut(usize, &[f32]),
    ) -> Result<Vec<f32>> {
        let losses = self
            .train_epoch_while_async(order, batch, |beats, losses| {
                progress(beats, losses);
                true
            })
            .await?;
        Ok(losses.expect("never stopped"))
    }

    /// [`Self::train_epoch`] that stops when `go_on` (called where `progress` would be) says
    /// false: `None` then. The parameters are then part way through the epoch (and a chunk
    /// already submitted runs to its end): a caller stops the run and keeps the checkpoints of
    /// the epochs before.
    pub fn train_epoch_while(
        &mut self,
        order: &[usize],
        batch: usize,
        go_on: impl FnMut(usize, &[f32]) -> bool,
    ) -> Result<Option<Vec<f32>>> {
        block_on(self.train_epoch_while_async(order, batch, go_on))
    }

    /// [`Self::train_epoch_while`] as a future.
    pub async fn train_epoch_while_async(
        &mut self,
        order: &[usize],
        batch: usize,
        mut go_on: impl FnMut(usize, &[f32]) -> bool,
    ) -> Result<Option<Vec<f32>>> {
        let ctx = self.ctx;
        let n = match &self.resident {
            Some(r) => r.labels.numel(),
            None => return Err(Error::Gpu("train_epoch before upload_training_data".into())),
        };
        if batch == 0 || order.is_empty() || order.iter().any(|&i| i >= n) {
            return Err(Error::EmptyBatch(format!(
                "an epoch needs a batch > 0 and a non-empty order of beats below {n}"
            )));
        }
        let resident = self.resident.as_mut().expect("checked above");
        if order.len() > resident.order.numel() {
            // an order longer than the split (oversampling): a bigger index buffer, new gathers
            resident.order = Tensor::zeros(ctx, &[order.len()]);
            for plan in self.train_plans.values_mut() {
                plan.gather_program = None;
            }
        }
        let mut padded: Vec<u32> = order.iter().map(|&i| i as u32).collect();
        padded.resize(resident.order.numel(), 0);
        resident.order.write(ctx, &padded)?;
        let steps: Vec<(usize, usize)> = (0..order.len())
            .step_by(batch)
            .map(|start| (start, batch.min(order.len() - start)))
            .collect();
        for &(_, len) in &steps {
            self.ensure_gather_plan(len)?;
        }
        let mut losses = Vec::with_capacity(steps.len());
        let mut chunk_len = 1;
        let mut submitted = 0;
        // Two submissions in flight: the CPU records and submits chunk i + 1 while the GPU runs
        // chunk i, then reads chunk i's losses. Each of the two slots has its own step table,
        // loss log and readback buffer, reused only once its previous chunk has been read.
        let mut in_flight: Option<Flight> = None;
        let mut last_read = Stopwatch::start();
        loop {
            let next = if submitted < steps.len() {
                let chunk = &steps[submitted..(submitted + chunk_len).min(steps.len())];
                let slot = self.submissions % 2;
                let flight = self.submit_chunk(chunk, slot)?;
                submitted += chunk.len();
                Some(flight)
            } else {
                None
            };
            let Some(flight) = in_flight.take() else {
                if next.is_none() {
                    break;
                }
                in_flight = next;
                continue;
            };
            let bytes = flight.steps as u64 * 4;
            let staging = &self.slots[flight.slot].staging;
            let read = map_and_read_async(ctx, staging, bytes, Some(flight.index)).await?;
            let chunk_losses: Vec<f32> = bytemuck::pod_collect_to_vec(&read);
            if let Some(k) = chunk_losses.iter().position(|l| !l.is_finite()) {
                return Err(non_finite_loss(flight.first + k as u32));
            }
            losses.extend(chunk_losses);
            let beats = steps[..losses.len()].iter().map(|s| s.1).sum();
            if !go_on(beats, &losses) {
                if let Some(flight) = next {
                    // let the chunk already submitted finish before its buffers are reused
                    let bytes = flight.steps as u64 * 4;
                    let staging = &self.slots[flight.slot].staging;
                    map_and_read_async(ctx, staging, bytes, Some(flight.index)).await?;
                }
                return Ok(None);
            }
            if last_read.seconds() < TARGET_SUBMIT_SECONDS {
                chunk_len = (chunk_len * 2).min(MAX_STEPS_PER_SUBMIT);
            }
            last_read = Stopwatch::start();
            in_flight = next;
        }
        Ok(Some(losses))
    }

    /// Records and submits the steps `chunk` ((start in the order, batch size) each) of the
    /// resident loop into `slot`'s buffers, without waiting.
    fn submit_chunk(&mut self, chunk: &[(usize, usize)], slot: usize) -> Result<Flight> {
        let ctx = self.ctx;
        let first = self.steps + 1;
        let table: Vec<StepUniform> = chunk
            .iter()
            .enumerate()
            .map(|(k, &(start, _))| StepUniform {
                batch_start: start as u32,
                ..self.adam.config.step_uniform(first + k as u32)
            })
            .collect();
        let buffers = &self.slots[slot];
        ctx.queue
            .write_buffer(&buffers.step_table, 0, bytemuck::cast_slice(&table));
        let mut encoder = ctx.device.create_command_encoder(&Default::default());
        let size = std::mem::size_of::<StepUniform>() as u64;
        for (k, &(_, len)) in chunk.iter().enumerate() {
            let plan = &self.train_plans[&len];
            encoder.copy_buffer_to_buffer(
                &buffers.step_table,
                k as u64 * size,
                &self.step_uniform,
                0,
                size,
            );
            plan.gather_program
                .as_ref()
                .expect("gather programs are built before the epoch")
                .encode(&mut encoder);
            plan.encode_step(&mut encoder, Some(&self.adam_program));
            encoder.copy_buffer_to_buffer(
                plan.loss.mean.buffer(),
                plan.loss.mean.offset(),
                &buffers.loss_log,
                k as u64 * 4,
                4,
            );
        }
        let bytes = chunk.len() as u64 * 4;
        encoder.copy_buffer_to_buffer(&buffers.loss_log, 0, &buffers.staging, 0, bytes);
        let index = ctx.queue.submit([encoder.finish()]);
        self.steps += chunk.len() as u32;
        self.submissions += 1;
        Ok(Flight {
            slot,
            steps: chunk.len(),
            first,
            index,
        })
    }

    /// The training plan of `batch` with its gather from the resident data.
    fn ensure_gather_plan(&mut self, batch: usize) -> Result<()> {
        self.ensure_train_plan(batch)?;
        let resident = self.resident.as_ref().expect("uploaded");
        let plan = self.train_plans.get_mut(&batch).expect("just built");
        if plan.gather_program.is_none() {
            let mut program = Program::new();
            gather::gather(
                &mut Recorder::new(self.ctx, &self.step_uniform, &mut program),
                &resident.x,
                &resident.labels,
                &resident.order,
                &plan.input,
                &plan.loss.labels,
            )?;
            if plan.loss.soft() {
                let targets = resident.targets.as_ref().ok_or_else(|| {
                    Error::Config(
                        "a soft-target loss needs upload_training_targets before an epoch".into(),
                    )
                })?;
                // the same gather, rows of `classes` values (it writes the labels again)
                gather::gather(
                    &mut Recorder::new(self.ctx, &self.step_uniform, &mut program),
                    targets,
                    &resident.labels,
                    &resident.order,
                    &plan.loss.targets,
                    &plan.loss.labels,
                )?;
            }
            plan.gather_program = Some(program);
        }
        Ok(())
    }

    /// Per-dispatch wall times of one training step at `batch` (forward, loss, backward, Adam),
    /// each dispatch submitted alone. Runs on whatever data the plan last saw.
    pub fn profile_step(&mut self, batch: usize) -> Result<Vec<DispatchTime>> {
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

/// Seconds since a point, where the platform has a clock: a browser's wasm has no
/// `std::time::Instant`, and there it reads 0 (the submission chunks then grow to their cap).
struct Stopwatch {
    #[cfg(not(target_arch = "wasm32"))]
    start: std::time::Instant,
}

impl Stopwatch {
    fn start() -> Self {
        Self {
            #[cfg(not(target_arch = "wasm32"))]
            start: std::time::Instant::now(),
        }
    }

    fn seconds(&self) -> f64 {
        #[cfg(not(target_arch = "wasm32"))]
        {
            self.start.elapsed().as_secs_f64()
        }
        #[cfg(target_arch = "wasm32")]
        {
            0.0
        }
    }
}
