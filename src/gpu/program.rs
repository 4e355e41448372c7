//! A program is a list of dispatches recorded once (pipelines, bind groups, workgroup counts)
//! and replayed every step into one compute pass: no allocation, no bind-group creation and no
//! shader lookup on the hot path. wgpu inserts the barriers between dependent dispatches.

use std::sync::Arc;

use wgpu::util::DeviceExt;

use super::context::Shader;
use super::{map_and_read, GpuContext};
use crate::error::{Error, Result};

/// Invocations per workgroup for the 1-D kernels; must equal `WG` in `shaders/common.wgsl`.
pub const WORKGROUP: u32 = 64;
const MAX_GROUPS_PER_DIM: u32 = 65_535;

pub struct Dispatch {
    pub shader: &'static str,
    pub entry: &'static str,
    pipeline: Arc<wgpu::ComputePipeline>,
    bind_group: wgpu::BindGroup,
    workgroups: [u32; 3],
}

impl Dispatch {
    pub fn label(&self) -> String {
        format!("{}.{}", self.shader, self.entry)
    }

    /// Records this dispatch into `pass`.
    fn record(&self, pass: &mut wgpu::ComputePass) {
        pass.set_pipeline(&self.pipeline);
        pass.set_bind_group(0, &self.bind_group, &[]);
        let [x, y, z] = self.workgroups;
        pass.dispatch_workgroups(x, y, z);
    }
}

/// One dispatch's time in a breakdown.
#[derive(Clone, Debug, serde::Serialize)]
pub struct DispatchTime {
    pub label: String,
    pub seconds: f64,
    pub workgroups: [u32; 3],
    /// True when measured by GPU timestamps, false for wall clock around its own submission.
    pub gpu_timestamps: bool,
}

#[derive(Default)]
pub struct Program {
    dispatches: Vec<Dispatch>,
}

impl Program {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn push(&mut self, dispatch: Dispatch) {
        self.dispatches.push(dispatch);
    }

    pub fn len(&self) -> usize {
        self.dispatches.len()
    }

    pub fn is_empty(&self) -> bool {
        self.dispatches.is_empty()
    }

    /// Records every dispatch into one compute pass of `encoder`.
    pub fn encode(&self, encoder: &mut wgpu::CommandEncoder) {
        let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor {
            label: Some("program"),
            timestamp_writes: None,
        });
        for d in &self.dispatches {
            d.record(&mut pass);
        }
    }

    /// Times each dispatch on its own: with GPU timestamps (each dispatch in its own pass of one
    /// submission) where the device has them, else by wall clock around a submission per
    /// dispatch, which also counts the submit and wait. Either way a per-kernel breakdown.
    pub fn time_each(&self, ctx: &GpuContext) -> Result<Vec<DispatchTime>> {
        if ctx.timestamps && !self.dispatches.is_empty() {
            return self.time_each_on_gpu(ctx);
        }
        let mut times = Vec::with_capacity(self.dispatches.len());
        for d in &self.dispatches {
            let start = std::time::Instant::now();
            let mut encoder = ctx.device.create_command_encoder(&Default::default());
            d.record(&mut encoder.begin_compute_pass(&Default::default()));
            ctx.queue.submit([encoder.finish()]);
            ctx.wait()?;
            times.push(DispatchTime {
                label: d.label(),
                seconds: start.elapsed().as_secs_f64(),
                workgroups: d.workgroups,
                gpu_timestamps: false,
            });
        }
        Ok(times)
    }

    fn time_each_on_gpu(&self, ctx: &GpuContext) -> Result<Vec<DispatchTime>> {
        let count = 2 * self.dispatches.len() as u32;
        let queries = ctx.device.create_query_set(&wgpu::QuerySetDescriptor {
            label: Some("breakdown"),
            ty: wgpu::QueryType::Timestamp,
            count,
        });
        let bytes = u64::from(count) * 8;
        let resolve = ctx.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("timestamps"),
            size: bytes,
            usage: wgpu::BufferUsages::QUERY_RESOLVE | wgpu::BufferUsages::COPY_SRC,
            mapped_at_creation: false,
        });
        let staging = ctx.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("timestamps readback"),
            size: bytes,
            usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        let mut encoder = ctx.device.create_command_encoder(&Default::default());
        for (i, d) in self.dispatches.iter().enumerate() {
            let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor {
                label: Some(d.entry),
                timestamp_writes: Some(wgpu::ComputePassTimestampWrites {
                    query_set: &queries,
                    beginning_of_pass_write_index: Some(2 * i as u32),
                    end_of_pass_write_index: Some(2 * i as u32 + 1),
                }),
            });
            d.record(&mut pass);
        }
        encoder.resolve_query_set(&queries, 0..count, &resolve, 0);
        encoder.copy_buffer_to_buffer(&resolve, 0, &staging, 0, bytes);
        ctx.queue.submit([encoder.finish()]);
        let ticks: Vec<u64> = bytemuck::pod_collect_to_vec(&map_and_read(ctx, &staging, bytes)?);
        let period_ns = f64::from(ctx.queue.get_timestamp_period());
        Ok(self
            .dispatches
            .iter()
            .zip(ticks.chunks(2))
            .map(|(d, t)| DispatchTime {
                label: d.label(),
                seconds: t[1].saturating_sub(t[0]) as f64 * period_ns * 1e-9,
                workgroups: d.workgroups,
                gpu_timestamps: true,
            })
            .collect())
    }

    /// Encodes, submits and waits: convenient for tests and one-off work.
    pub fn run(&self, ctx: &GpuContext) -> Result<()> {
        let mut encoder = ctx.device.create_command_encoder(&Default::default());
        self.encode(&mut encoder);
        ctx.queue.submit([encoder.finish()]);
        ctx.wait()
    }
}

/// Workgroup counts covering `threads` invocations of a 1-D kernel, folded into two dimensions
/// when one would exceed the 65,535 limit (kernels rebuild the flat index with `flat_id`).
pub fn groups_1d(threads: usize) -> [u32; 3] {
    let groups = (threads as u32).div_ceil(WORKGROUP).max(1);
    let x = groups.min(MAX_GROUPS_PER_DIM);
    [x, groups.div_ceil(x), 1]
}

impl GpuContext {
    /// Builds one dispatch: `params` become a uniform at binding 0, `bindings` fill the rest;
    /// `constants` specialise the pipeline (see [`GpuContext::pipeline`]).
    pub fn dispatch<P: bytemuck::Pod>(
        &self,
        (shader, entry, constants): (&'static Shader, &'static str, &[(&'static str, f64)]),
        params: &P,
        bindings: &[(u32, wgpu::BindingResource<'_>)],
        workgroups: [u32; 3],
    ) -> Result<Dispatch> {
        let pipeline = self.pipeline(shader, entry, constants)?;
        // Uniform structs are laid out in 16-byte units.
        let mut bytes = bytemuck::bytes_of(params).to_vec();
        bytes.resize(bytes.len().next_multiple_of(16), 0);
        let uniform = self
            .device
            .create_buffer_init(&wgpu::util::BufferInitDescriptor {
                label: Some(entry),
                contents: &bytes,
                usage: wgpu::BufferUsages::UNIFORM,
            });
        let mut entries = vec![wgpu::BindGroupEntry {
            binding: 0,
            resource: uniform.as_entire_binding(),
        }];
        entries.extend(
            bindings
                .iter()
                .map(|(binding, resource)| wgpu::BindGroupEntry {
                    binding: *binding,
                    resource: resource.clone(),
                }),
        );
        // A binding that does not match the shader is a validation error: catch it as an
        // error value instead of wgpu's default panic.
        let scope = super::context::ErrorScope::push(&self.device);
        let bind_group = self.device.create_bind_group(&wgpu::BindGroupDescriptor {
            label: Some(entry),
            layout: &pipeline.get_bind_group_layout(0),
            entries: &entries,
        });
        if let Some(err) = scope.pop() {
            return Err(Error::Gpu(format!(
                "binding {}.{entry}: {err}",
                shader.name
            )));
        }
        Ok(Dispatch {
            shader: shader.name,
            entry,
            pipeline,
            bind_group,
            workgroups,
        })
    }
}
