//! The device layer: adapter choice, tensors (GPU buffers with a shape), compiled pipelines and
//! recorded programs of dispatches that are replayed every training step.

mod context;
mod program;
mod tensor;
mod wait;

pub use context::{GpuContext, Kernels, Shader, DEVICE_ENV, KERNELS_ENV};
pub use program::{groups_1d, Dispatch, DispatchTime, Program, WORKGROUP};
pub use tensor::{
    map_and_read, map_and_read_after, map_and_read_async, read_bytes, read_bytes_async,
    storage_buffer, Tensor, OFFSET_ALIGN_BYTES,
};
pub use wait::block_on;
