//! Ops: each file binds one shader from `shaders/`, records its forward and backward dispatches,
//! and carries a plain-loop f64 CPU reference that the tests check the GPU against.

pub mod add;
pub mod concat;
pub mod conv1d;
pub mod dense;
pub mod dropout;
pub mod gather;
pub mod maxpool1d;
pub mod reduce;
pub mod relu;
pub mod softmax;

use crate::error::{Error, Result};
use crate::gpu::{GpuContext, Program, Shader, Tensor};

/// The values a kernel sees that change every step (dropout's counter, Adam's step size, where
/// the batch starts in the epoch's order). One 32-byte uniform, rewritten once per step (by a
/// buffer copy inside the command stream when many steps go in one submission), bound by every
/// kernel that needs it.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, bytemuck::Pod, bytemuck::Zeroable)]
pub struct StepUniform {
    pub step: u32,
    pub lr: f32,
    pub bias_correction1: f32,
    pub bias_correction2: f32,
    /// Index into the epoch's order of the step's first beat (the GPU-resident gather).
    pub batch_start: u32,
    pub _unused: [u32; 3],
}

impl StepUniform {
    /// A uniform buffer holding `self`, writable each step.
    pub fn create_buffer(&self, ctx: &GpuContext) -> std::sync::Arc<wgpu::Buffer> {
        use wgpu::util::DeviceExt;
        std::sync::Arc::new(
            ctx.device
                .create_buffer_init(&wgpu::util::BufferInitDescriptor {
                    label: Some("step"),
                    contents: bytemuck::bytes_of(self),
                    usage: wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
                }),
        )
    }
}

/// Where ops record their dispatches while a graph is being built.
pub struct Recorder<'a> {
    pub ctx: &'a GpuContext,
    pub step: &'a wgpu::Buffer,
    pub program: &'a mut Program,
    /// Where a backward pass may leave its weight-gradient partial sums for one finalize
    /// dispatch after the whole backward pass (see [`conv1d::DeferredFinalize`]); `None` makes
    /// each op finalize its own.
    pub deferred: Option<&'a mut conv1d::DeferredFinalize>,
}

impl<'a> Recorder<'a> {
    pub fn new(ctx: &'a GpuContext, step: &'a wgpu::Buffer, program: &'a mut Program) -> Self {
        Self {
            ctx,
            step,
            program,
            deferred: None,
        }
    }

    /// A zeroed tensor for intermediate results (e.g. partial sums of a split reduction),
    /// allocated once when the graph is built.
    pub fn scratch(&self, shape: &[usize]) -> Tensor {
        Tensor::zeros(self.ctx, shape)
    }

    /// Records one dispatch of `entry` in `shader` (see [`GpuContext::dispatch`]).
    pub fn push<P: bytemuck::Pod>(
        &mut self,
        shader: &'static Shader,
        entry: &'static str,
        params: &P,
        bindings: &[(u32, wgpu::BindingResource<'_>)],
        workgroups: [u32; 3],
    ) -> Result<()> {
        self.push_with(shader, entry, &[], params, bindings, workgroups)
    }

    /// [`Self::push`] with pipeline-overridable constants.
    pub fn push_with<P: bytemuck::Pod>(
        &mut self,
        shader: &'static Shader,
        entry: &'static str,
        constants: &[(&'static str, f64)],
        params: &P,
        bindings: &[(u32, wgpu::BindingResource<'_>)],
        workgroups: [u32; 3],
    ) -> Result<()> {
        let d = self
            .ctx
            .dispatch((shader, entry, constants), params, bindings, workgroups)?;
        self.program.push(d);
        Ok(())
    }
}

/// A differentiable operation in the autograd graph. Forward returns tensors it wants back in
/// backward (e.g. max-pool's argmax); backward writes each requested input gradient into the
/// tensor it is handed (overwriting it: the graph takes care of accumulation).
pub trait Op {
    fn name(&self) -> &'static str;
    fn output_shape(&self, inputs: &[&[usize]]) -> Result<Vec<usize>>;
    /// f32 elements of partial sums this op's backward pass would leave in a shared
    /// [`conv1d::DeferredFinalize`] (the graph sizes it before recording the backward pass).
    fn deferred_len(&self, _ctx: &GpuContext, _inputs: &[&[usize]]) -> usize {
        0
    }
    fn forward(
        &self,
        rec: &mut Recorder,
        inputs: &[&Tensor],
        output: &Tensor,
    ) -> Result<Vec<Tensor>>;
    fn backward(
        &self,
        rec: &mut Recorder,
        inputs: &[&Tensor],
        saved: &[Tensor],
        grad_output: &Tensor,
        grad_inputs: &[Option<&Tensor>],
    ) -> Result<()>;
}

pub(crate) fn shape_error(op: &str, detail: impl Into<String>) -> Error {
    Error::Shape {
        op: op.into(),
        detail: detail.into(),
    }
}

/// Checks the number of inputs and the rank of each.
pub(crate) fn expect_ranks(op: &str, inputs: &[&[usize]], ranks: &[usize]) -> Result<()> {
    if inputs.len() != ranks.len() {
        return Err(shape_error(
            op,
            format!("expected {} inputs, got {}", ranks.len(), inputs.len()),
        ));
    }
    for (i, (shape, &rank)) in inputs.iter().zip(ranks).enumerate() {
        if shape.len() != rank {
            return Err(shape_error(
                op,
                format!("input {i} must have rank {rank}, has shape {shape:?}"),
            ));
        }
        if shape.contains(&0) {
            return Err(shape_error(
                op,
                format!("input {i} has an empty dimension: {shape:?}"),
            ));
        }
    }
    Ok(())
}
