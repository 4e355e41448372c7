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

/// Work that ops of one kind leave for after the whole backward pass, done for all of them at
/// once: fewer dispatches than each op finishing its own (conv1d's weight-gradient partial sums
/// are added up by one dispatch for every layer).
pub trait Epilogue: std::any::Any {
    /// Records the deferred work after the backward pass.
    fn record(self: Box<Self>, rec: &mut Recorder) -> Result<()>;
}

/// The epilogues of one backward pass, at most one of each type.
#[derive(Default)]
pub struct Epilogues(Vec<Box<dyn Epilogue>>);

impl Epilogues {
    /// The epilogue of type `T`, created with `Default` when it is the first.
    pub fn get_or_default<T: Epilogue + Default>(&mut self) -> &mut T {
        let i = match self
            .0
            .iter()
            .position(|e| (**e).type_id() == std::any::TypeId::of::<T>())
        {
            Some(i) => i,
            None => {
                self.0.push(Box::<T>::default());
                self.0.len() - 1
            }
        };
        let any: &mut dyn std::any::Any = &mut *self.0[i];
        any.downcast_mut().expect("type checked")
    }

    /// The epilogue of type `T`, if an op reserved one.
    pub fn get_mut<T: Epilogue>(&mut self) -> Option<&mut T> {
        self.0.iter_mut().find_map(|e| {
            let any: &mut dyn std::any::Any = &mut **e;
            any.downcast_mut()
        })
    }

    /// Records every epilogue, in the order they were first reserved.
    pub fn record(self, rec: &mut Recorder) -> Result<()> {
        for e in self.0 {
            e.record(rec)?;
        }
        Ok(())
    }
}

/// Where ops record their dispatches while a graph is being built.
pub struct Recorder<'a> {
    pub ctx: &'a GpuContext,
    pub step: &'a wgpu::Buffer,
    pub program: &'a mut Program,
    /// Work ops may leave for after the whole backward pass, shared by every op of a kind (see
    /// [`Epilogues`]); `None` makes each op finish its own.
    pub epilogues: Option<&'a mut Epilogues>,
}

impl<'a> Recorder<'a> {
    pub fn new(ctx: &'a GpuContext, step: &'a wgpu::Buffer, program: &'a mut Program) -> Self {
        Self {
            ctx,
            step,
            program,
            epilogues: None,
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

/// `Send` where threads exist: a classifier or trainer can move to another thread natively,
/// while in a browser (one thread; WebGPU objects are not `Send` there) it asks nothing.
#[cfg(not(target_arch = "wasm32"))]
pub trait MaybeSend: Send {}
#[cfg(not(target_arch = "wasm32"))]
impl<T: Send> MaybeSend for T {}
#[cfg(target_arch = "wasm32")]
pub trait MaybeSend {}
#[cfg(target_arch = "wasm32")]
impl<T> MaybeSend for T {}

/// A differentiable operation in the autograd graph. Forward returns tensors it wants back in
/// backward (e.g. max-pool's argmax); backward writes each requested input gradient into the
/// tensor it is handed (overwriting it: the graph takes care of accumulation).
pub trait Op: MaybeSend {
    fn name(&self) -> &'static str;
    fn output_shape(&self, inputs: &[&[usize]]) -> Result<Vec<usize>>;
    /// Called for every node before the backward pass is recorded: an op that leaves work for
    /// an [`Epilogue`] reserves its share here (e.g. the size of a shared buffer).
    fn reserve(&self, _ctx: &GpuContext, _inputs: &[&[usize]], _epilogues: &mut Epilogues) {}
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
