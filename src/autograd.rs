//! A small tape-based autograd. Building the graph records each op's forward dispatches into
//! `forward`; `backward` walks the nodes in reverse and records the gradient dispatches into
//! `backward`. Both programs are then replayed every step on fresh data (the buffers stay put),
//! so building happens once per batch size, not per step.
//!
//! Gradient fan-in: the first consumer to reach a tensor writes its gradient directly; any later
//! one writes into scratch and an `accumulate` dispatch adds it.

use std::sync::Arc;

use crate::error::{Error, Result};
use crate::gpu::{GpuContext, Program, Tensor};
use crate::ops::{add, Epilogues, Op, Recorder};

/// A handle to a tensor in a [`Graph`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Var(usize);

struct Node {
    op: Box<dyn Op>,
    inputs: Vec<Var>,
    output: Var,
    saved: Vec<Tensor>,
}

pub struct Graph<'c> {
    ctx: &'c GpuContext,
    step: Arc<wgpu::Buffer>,
    values: Vec<Tensor>,
    /// Gradient destinations: preassigned for parameters, created on demand otherwise.
    grads: Vec<Option<Tensor>>,
    grad_written: Vec<bool>,
    requires_grad: Vec<bool>,
    nodes: Vec<Node>,
    pub forward: Program,
    pub backward: Program,
}

impl<'c> Graph<'c> {
    /// `step` is the per-step uniform (see [`crate::ops::StepUniform`]) that kernels like
    /// dropout read.
    pub fn new(ctx: &'c GpuContext, step: Arc<wgpu::Buffer>) -> Self {
        Self {
            ctx,
            step,
            values: vec![],
            grads: vec![],
            grad_written: vec![],
            requires_grad: vec![],
            nodes: vec![],
            forward: Program::new(),
            backward: Program::new(),
        }
    }

    fn push_value(&mut self, value: Tensor, grad: Option<Tensor>, requires_grad: bool) -> Var {
        self.values.push(value);
        self.grads.push(grad);
        self.grad_written.push(false);
        self.requires_grad.push(requires_grad);
        Var(self.values.len() - 1)
    }

    /// A tensor that needs no gradient (the data).
    pub fn input(&mut self, value: Tensor) -> Var {
        self.push_value(value, None, false)
    }

    /// A tensor whose gradient is wanted, written into `grad` (e.g. a view into a model's flat
    /// gradient buffer) or into a fresh tensor when `None`.
    pub fn leaf(&mut self, value: Tensor, grad: Option<Tensor>) -> Var {
        self.push_value(value, grad, true)
    }

    pub fn value(&self, v: Var) -> &Tensor {
        &self.values[v.0]
    }

    /// The gradient of `v`, once `backward` has reached it.
    pub fn grad(&self, v: Var) -> Option<&Tensor> {
        self.grads[v.0].as_ref().filter(|_| self.grad_written[v.0])
    }

    /// Applies `op` to `inputs`, allocating its output and recording its forward dispatches.
    pub fn apply(&mut self, op: impl Op + 'static, inputs: &[Var]) -> Result<Var> {
        let shapes: Vec<&[usize]> = inputs.iter().map(|v| self.values[v.0].shape()).collect();
        let out_shape = op.output_shape(&shapes)?;
        let output = Tensor::zeros(self.ctx, &out_shape);
        let in_tensors: Vec<&Tensor> = inputs.iter().map(|v| &self.values[v.0]).collect();
        let mut rec = Recorder::new(self.ctx, &self.step, &mut self.forward);
        let saved = op.forward(&mut rec, &in_tensors, &output)?;
        let requires_grad = inputs.iter().any(|v| self.requires_grad[v.0]);
        let out = self.push_value(output, None, requires_grad);
        self.nodes.push(Node {
            op: Box::new(op),
            inputs: inputs.to_vec(),
            output: out,
            saved,
        });
        Ok(out)
    }

    /// A view of `v` with another shape (Flatten): no op, no copy, gradients flow through.
    pub fn reshape(&mut self, v: Var, shape: &[usize]) -> Result<Var> {
        let value = self.values[v.0].reshape(shape)?;
        let view = self.push_value(value, None, self.requires_grad[v.0]);
        self.nodes.push(Node {
            op: Box::new(Reshape),
            inputs: vec![v],
            output: view,
            saved: vec![],
        });
        Ok(view)
    }

    /// Records the backward pass from `root`, whose gradient is `seed` (e.g. the loss gradient
    /// w.r.t. the logits, which the fused loss kernel writes).
    pub fn backward(&mut self, root: Var, seed: Tensor) -> Result<()> {
        if seed.shape() != self.values[root.0].shape() {
            return Err(Error::Shape {
                op: "backward".into(),
                detail: format!(
                    "seed {:?} vs root {:?}",
                    seed.shape(),
                    self.values[root.0].shape()
                ),
            });
        }
        self.grads[root.0] = Some(seed);
        self.grad_written[root.0] = true;
        let nodes = std::mem::take(&mut self.nodes);
        // Ops reserve what they leave for after the backward pass (one dispatch for all).
        let mut epilogues = Epilogues::default();
        for n in &nodes {
            let shapes: Vec<&[usize]> = n.inputs.iter().map(|v| self.values[v.0].shape()).collect();
            n.op.reserve(self.ctx, &shapes, &mut epilogues);
        }
        for node in nodes.iter().rev() {
            let Some(grad_out) = self.grad(node.output).cloned() else {
                continue;
            };
            let mut dests: Vec<Option<Tensor>> = Vec::with_capacity(node.inputs.len());
            let mut pending = vec![];
            for v in &node.inputs {
                let i = v.0;
                if !self.requires_grad[i] {
                    dests.push(None);
                } else if self.grad_written[i] {
                    let scratch = Tensor::zeros(self.ctx, self.values[i].shape());
                    pending.push((
                        scratch.clone(),
                        self.grads[i].clone().expect("written grad"),
                    ));
                    dests.push(Some(scratch));
                } else {
                    let dest = match (&self.grads[i], node.op.name()) {
                        (Some(g), _) => g.clone(),
                        (None, "reshape") => grad_out.reshape(self.values[i].shape())?,
                        (None, _) => Tensor::zeros(self.ctx, self.values[i].shape()),
                    };
                    self.grads[i] = Some(dest.clone());
                    self.grad_written[i] = true;
                    dests.push(Some(dest));
                }
            }
            let inputs: Vec<&Tensor> = node.inputs.iter().map(|v| &self.values[v.0]).collect();
            let dest_refs: Vec<Option<&Tensor>> = dests.iter().map(Option::as_ref).collect();
            let mut rec = Recorder::new(self.ctx, &self.step, &mut self.backward);
            // a gradient that is accumulated right after this op must be final when it is
            if pending.is_empty() {
                rec.epilogues = Some(&mut epilogues);
            }
            node.op
                .backward(&mut rec, &inputs, &node.saved, &grad_out, &dest_refs)?;
            for (scratch, total) in pending {
                add::accumulate(&mut rec, &scratch, &total)?;
            }
        }
        epilogues.record(&mut Recorder::new(self.ctx, &self.step, &mut self.backward))?;
        self.nodes = nodes;
        Ok(())
    }
}

/// Flatten's node: the gradient of a view is a view of the gradient. When the input's gradient
/// can alias the output's (the common case) nothing runs; otherwise it is copied.
struct Reshape;

impl Op for Reshape {
    fn name(&self) -> &'static str {
        "reshape"
    }

    fn output_shape(&self, inputs: &[&[usize]]) -> Result<Vec<usize>> {
        Ok(inputs[0].to_vec())
    }

    fn forward(
        &self,
        _rec: &mut Recorder,
        _inputs: &[&Tensor],
        _output: &Tensor,
    ) -> Result<Vec<Tensor>> {
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
        match grad_inputs[0] {
            Some(dx) if !dx.same_buffer(grad_output) || dx.offset() != grad_output.offset() => {
                add::copy(rec, &grad_output.reshape(dx.shape())?, dx)
            }
            _ => Ok(()),
        }
    }
}
