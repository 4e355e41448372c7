//! A tensor is a view into a GPU buffer: a byte offset and a shape over 4-byte elements (f32,
//! or u32 for indices). Views let many parameters share one buffer, so a single Adam dispatch
//! updates all of them, and make Flatten free.

use std::sync::Arc;

use ndarray::{ArrayD, IxDyn};

use super::wait::{block_on, Slot};
use super::GpuContext;
use crate::error::{Error, Result};

/// Storage-buffer offsets must respect this alignment on every backend we target.
pub const OFFSET_ALIGN_BYTES: u64 = 256;

#[derive(Clone, Debug)]
pub struct Tensor {
    buffer: Arc<wgpu::Buffer>,
    offset: u64,
    shape: Vec<usize>,
}

impl Tensor {
    /// A fresh zero-filled tensor with its own buffer.
    pub fn zeros(ctx: &GpuContext, shape: &[usize]) -> Self {
        let bytes = (shape.iter().product::<usize>().max(1) * 4) as u64;
        Self::whole(Arc::new(storage_buffer(ctx, bytes, "tensor")), shape)
    }

    /// Uploads `data` into a new tensor of `shape`.
    pub fn from_slice(ctx: &GpuContext, data: &[f32], shape: &[usize]) -> Result<Self> {
        let t = Self::zeros(ctx, shape);
        t.write(ctx, data)?;
        Ok(t)
    }

    /// Uploads an ndarray (any dimensionality, standard layout or not).
    pub fn from_array(ctx: &GpuContext, array: &ArrayD<f32>) -> Result<Self> {
        let data: Vec<f32> = array.iter().copied().collect();
        Self::from_slice(ctx, &data, array.shape())
    }

    /// The whole of `buffer`, seen with `shape`.
    pub fn whole(buffer: Arc<wgpu::Buffer>, shape: &[usize]) -> Self {
        Self {
            buffer,
            offset: 0,
            shape: shape.to_vec(),
        }
    }

    /// A view of `shape` starting `offset` bytes into `buffer` (aligned to 256 bytes).
    pub fn view(buffer: Arc<wgpu::Buffer>, offset: u64, shape: &[usize]) -> Self {
        debug_assert_eq!(offset % OFFSET_ALIGN_BYTES, 0, "unaligned tensor view");
        Self {
            buffer,
            offset,
            shape: shape.to_vec(),
        }
    }

    /// The same data with another shape of equal size: no copy.
    pub fn reshape(&self, shape: &[usize]) -> Result<Self> {
        if shape.iter().product::<usize>() != self.numel() {
            return Err(Error::Shape {
                op: "reshape".into(),
                detail: format!("cannot view {:?} as {:?}", self.shape, shape),
            });
        }
        Ok(Self {
            shape: shape.to_vec(),
            ..self.clone()
        })
    }

    pub fn shape(&self) -> &[usize] {
        &self.shape
    }

    pub fn numel(&self) -> usize {
        self.shape.iter().product()
    }

    pub fn buffer(&self) -> &wgpu::Buffer {
        &self.buffer
    }

    pub fn offset(&self) -> u64 {
        self.offset
    }

    pub fn size_bytes(&self) -> u64 {
        (self.numel().max(1) * 4) as u64
    }

    /// True when both tensors are views of the same buffer (they may not be bound together
    /// when one is written).
    pub fn same_buffer(&self, other: &Tensor) -> bool {
        // wgpu compares buffers by identity; views made from clones of one buffer are equal
        *self.buffer == *other.buffer
    }

    pub fn binding(&self) -> wgpu::BindingResource<'_> {
        wgpu::BindingResource::Buffer(wgpu::BufferBinding {
            buffer: &self.buffer,
            offset: self.offset,
            size: wgpu::BufferSize::new(self.size_bytes()),
        })
    }

    /// Replaces the contents with 4-byte values (f32, or u32 for labels), queued: visible to
    /// the next submission.
    pub fn write<T: bytemuck::Pod>(&self, ctx: &GpuContext, data: &[T]) -> Result<()> {
        debug_assert_eq!(std::mem::size_of::<T>(), 4);
        if data.len() != self.numel() {
            return Err(Error::Shape {
                op: "upload".into(),
                detail: format!(
                    "{} values for a tensor of shape {:?}",
                    data.len(),
                    self.shape
                ),
            });
        }
        if !data.is_empty() {
            ctx.queue
                .write_buffer(&self.buffer, self.offset, bytemuck::cast_slice(data));
        }
        Ok(())
    }

    /// Downloads the contents as f32 (waits for the GPU).
    pub fn read(&self, ctx: &GpuContext) -> Result<Vec<f32>> {
        let bytes = read_bytes(ctx, &self.buffer, self.offset, self.size_bytes())?;
        let mut out: Vec<f32> = bytemuck::pod_collect_to_vec(&bytes);
        out.truncate(self.numel());
        Ok(out)
    }

    /// [`Self::read`] as a future (the only way to read back in a browser).
    pub async fn read_async(&self, ctx: &GpuContext) -> Result<Vec<f32>> {
        let bytes = read_bytes_async(ctx, &self.buffer, self.offset, self.size_bytes()).await?;
        let mut out: Vec<f32> = bytemuck::pod_collect_to_vec(&bytes);
        out.truncate(self.numel());
        Ok(out)
    }

    /// Downloads into an ndarray of the tensor's shape.
    pub fn to_array(&self, ctx: &GpuContext) -> Result<ArrayD<f32>> {
        ArrayD::from_shape_vec(IxDyn(&self.shape), self.read(ctx)?)
            .map_err(|e| Error::Gpu(e.to_string()))
    }
}

/// A buffer usable as a kernel's storage and as a copy source/target.
pub fn storage_buffer(ctx: &GpuContext, bytes: u64, label: &str) -> wgpu::Buffer {
    let size = bytes.max(4).next_multiple_of(4);
    ctx.count_storage(size);
    ctx.device.create_buffer(&wgpu::BufferDescriptor {
        label: Some(label),
        size,
        usage: wgpu::BufferUsages::STORAGE
            | wgpu::BufferUsages::COPY_SRC
            | wgpu::BufferUsages::COPY_DST,
        mapped_at_creation: false,
    })
}

/// Copies `bytes` from `buffer` to a staging buffer and maps it. Used by tests, evaluation and
/// one-off reads; the training step keeps its own persistent staging buffer.
pub fn read_bytes(
    ctx: &GpuContext,
    buffer: &wgpu::Buffer,
    offset: u64,
    bytes: u64,
) -> Result<Vec<u8>> {
    block_on(read_bytes_async(ctx, buffer, offset, bytes))
}

/// [`read_bytes`] as a future (the only way to read back in a browser).
pub async fn read_bytes_async(
    ctx: &GpuContext,
    buffer: &wgpu::Buffer,
    offset: u64,
    bytes: u64,
) -> Result<Vec<u8>> {
    let staging = ctx.device.create_buffer(&wgpu::BufferDescriptor {
        label: Some("readback"),
        size: bytes,
        usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
        mapped_at_creation: false,
    });
    let mut encoder = ctx.device.create_command_encoder(&Default::default());
    encoder.copy_buffer_to_buffer(buffer, offset, &staging, 0, bytes);
    ctx.queue.submit([encoder.finish()]);
    map_and_read_async(ctx, &staging, bytes, None).await
}

/// Maps a MAP_READ buffer (after its copy was submitted), returns its first `bytes` and unmaps it.
pub fn map_and_read(ctx: &GpuContext, staging: &wgpu::Buffer, bytes: u64) -> Result<Vec<u8>> {
    block_on(map_and_read_async(ctx, staging, bytes, None))
}

/// [`map_and_read`] that waits only for submission `index` (later ones keep running).
pub fn map_and_read_after(
    ctx: &GpuContext,
    staging: &wgpu::Buffer,
    bytes: u64,
    index: wgpu::SubmissionIndex,
) -> Result<Vec<u8>> {
    block_on(map_and_read_async(ctx, staging, bytes, Some(index)))
}

/// Maps `staging` and copies out its first `bytes`. Natively the wait is `device.poll` (only
/// for submission `index` when given) and the future is ready at once; in a browser the map
/// completes when the GPU has done the work, while the page's event loop runs.
pub async fn map_and_read_async(
    ctx: &GpuContext,
    staging: &wgpu::Buffer,
    bytes: u64,
    index: Option<wgpu::SubmissionIndex>,
) -> Result<Vec<u8>> {
    let mapped = Slot::new();
    let fill = mapped.clone();
    staging.map_async(wgpu::MapMode::Read, ..bytes, move |r| fill.fill(r));
    ctx.device
        .poll(wgpu::PollType::Wait {
            submission_index: index,
            timeout: None,
        })
        .map_err(|e| Error::Gpu(e.to_string()))?;
    let status = mapped.await?;
    ctx.take_error()?;
    status.map_err(|e| Error::Gpu(e.to_string()))?;
    let data = staging
        .get_mapped_range(..bytes)
        .map_err(|e| Error::Gpu(e.to_string()))?
        .to_vec();
    staging.unmap();
    Ok(data)
}
