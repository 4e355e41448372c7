//! Adapter selection, device creation and the pipeline cache.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use crate::error::{Error, Result};

/// Environment variable that picks an adapter when no `--device` flag is given (same syntax).
pub const DEVICE_ENV: &str = "ECGWGPU_DEVICE";

/// Environment variable that forces a kernel variant (`cpu` or `gpu`) when no `--kernels` flag is
/// given.
pub const KERNELS_ENV: &str = "ECGWGPU_KERNELS";

/// Which shape of kernel the ops record where a kernel has variants.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kernels {
    /// Register-blocked kernels with few, long invocations: software Vulkan runs each invocation
    /// as SIMD lanes on a CPU core and gains nothing from workgroup memory.
    Cpu,
    /// The mix that measured fastest on a real GPU: register blocks for the forward pass and the
    /// weight gradient, that reduction split over many workgroups (a GPU needs tens of thousands
    /// of invocations in flight), the tiled input gradient, the ReLU mask read in place.
    Gpu,
    /// Implicit GEMMs over workgroup-memory tiles with coalesced staging loads.
    Tiled,
}

impl Kernels {
    /// The variant suited to an adapter type.
    pub fn for_adapter(t: wgpu::DeviceType) -> Self {
        match t {
            wgpu::DeviceType::Cpu => Kernels::Cpu,
            _ => Kernels::Gpu,
        }
    }
}

impl Kernels {
    /// clap's parser for `--kernels`.
    pub fn parse_arg(s: &str) -> std::result::Result<Self, String> {
        s.parse().map_err(|e: Error| e.to_string())
    }
}

impl std::str::FromStr for Kernels {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s.to_ascii_lowercase().as_str() {
            "cpu" => Ok(Kernels::Cpu),
            "gpu" => Ok(Kernels::Gpu),
            "tiled" => Ok(Kernels::Tiled),
            other => Err(Error::Config(format!(
                "unknown kernel variant '{other}' (known: cpu, gpu, tiled)"
            ))),
        }
    }
}

/// Every shader is compiled with this prelude in front: WGSL has no `#include`, and the
/// indexing and hashing helpers must be identical in every kernel.
const PRELUDE: &str = include_str!("../../shaders/common.wgsl");

/// The smallest per-binding storage size we accept: a batch of 1024 beats of the paper network's
/// widest activation (32 channels × 187 samples × 4 bytes) is ~24.5 MB.
const MIN_STORAGE_BINDING: u64 = 64 << 20;

type PipelineKey = (&'static str, &'static str, Vec<(&'static str, u64)>);

/// A device, its queue and a cache of compiled compute pipelines.
pub struct GpuContext {
    pub device: wgpu::Device,
    pub queue: wgpu::Queue,
    pub info: wgpu::AdapterInfo,
    pub limits: wgpu::Limits,
    /// The kernel variant ops record (see [`Kernels`]); from the adapter type unless forced.
    pub kernels: Kernels,
    /// Whether the device can write GPU timestamps between passes (`bench --breakdown`).
    pub timestamps: bool,
    /// Keyed by shader, entry point and pipeline-overridable constants.
    pipelines: Mutex<HashMap<PipelineKey, Arc<wgpu::ComputePipeline>>>,
    /// Bytes of storage buffers created so far (tensors are allocated once per batch size and
    /// reused, so this is the engine's GPU memory footprint).
    storage_bytes: std::sync::atomic::AtomicU64,
    /// Validation errors reported outside an error scope (see [`Self::take_error`]).
    errors: Arc<Mutex<Option<String>>>,
}

impl GpuContext {
    /// Opens a device. `selector` (or `$ECGWGPU_DEVICE` when `None`) is matched, case-insensitively,
    /// against each adapter's name, backend (`vulkan`, `metal`, `dx12`, `gl`) and type (`discrete`,
    /// `integrated`, `cpu`); a number picks by index in the list `ecgwgpu devices` prints.
    /// Without a selector the fastest kind available wins: discrete > integrated > virtual > CPU.
    pub fn new(selector: Option<&str>) -> Result<Self> {
        super::block_on(Self::new_async(selector))
    }

    /// [`Self::new`] as a future: in a browser the adapter and device arrive asynchronously,
    /// and the device gets WebGPU's default limits, which every WebGPU browser grants.
    pub async fn new_async(selector: Option<&str>) -> Result<Self> {
        let env_selector = std::env::var(DEVICE_ENV).ok().filter(|s| !s.is_empty());
        let selector = selector.map(str::to_owned).or(env_selector);
        let instance =
            wgpu::Instance::new(wgpu::InstanceDescriptor::new_without_display_handle_from_env());
        let adapters = adapters(&instance).await;
        let tried: Vec<String> = adapters.iter().map(|a| describe(&a.get_info())).collect();
        let chosen = match &selector {
            Some(sel) => pick_by_selector(adapters, sel),
            None => adapters
                .into_iter()
                .min_by_key(|a| type_rank(a.get_info().device_type)),
        };
        let adapter = chosen.ok_or(Error::NoAdapter {
            selector: selector.clone(),
            tried,
        })?;
        let info = adapter.get_info();
        let limits = if cfg!(target_arch = "wasm32") {
            wgpu::Limits::default()
        } else {
            adapter.limits()
        };
        check_limits(&info, &limits)?;
        let kernels = match std::env::var(KERNELS_ENV).ok().filter(|s| !s.is_empty()) {
            Some(v) => v.parse()?,
            None => Kernels::for_adapter(info.device_type),
        };
        // Pass-level timestamps are enough: the breakdown puts each dispatch in its own pass.
        let timestamps = adapter.features().contains(wgpu::Features::TIMESTAMP_QUERY)
            && !cfg!(target_arch = "wasm32");
        let required_features = if timestamps {
            wgpu::Features::TIMESTAMP_QUERY
        } else {
            wgpu::Features::empty()
        };
        let (device, queue) = adapter
            .request_device(&wgpu::DeviceDescriptor {
                label: Some("ecgwgpu"),
                required_features,
                required_limits: limits.clone(),
                experimental_features: wgpu::ExperimentalFeatures::disabled(),
                memory_hints: wgpu::MemoryHints::Performance,
                trace: wgpu::Trace::Off,
            })
            .await
            .map_err(|e| Error::DeviceRequest {
                adapter: info.name.clone(),
                reason: e.to_string(),
            })?;
        let errors = Arc::new(Mutex::new(None));
        #[cfg(target_arch = "wasm32")]
        {
            // No error scope can be awaited inside a synchronous call in a browser: validation
            // errors land here, and the next read returns the first of them as an error.
            let sink = errors.clone();
            device.on_uncaptured_error(Arc::new(move |e: wgpu::Error| {
                if let Ok(mut slot) = sink.lock() {
                    slot.get_or_insert(e.to_string());
                }
            }));
        }
        Ok(Self {
            device,
            queue,
            info,
            limits,
            kernels,
            timestamps,
            pipelines: Mutex::new(HashMap::new()),
            storage_bytes: Default::default(),
            errors,
        })
    }

    /// The first GPU validation error not yet reported, as an error (browser builds; natively
    /// each call checks its own error scope).
    pub fn take_error(&self) -> Result<()> {
        match self.errors.lock().ok().and_then(|mut e| e.take()) {
            Some(reason) => Err(Error::Gpu(reason)),
            None => Ok(()),
        }
    }

    /// Bytes of storage buffers created on this context so far.
    pub fn storage_bytes(&self) -> u64 {
        self.storage_bytes
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    pub(crate) fn count_storage(&self, bytes: u64) {
        self.storage_bytes
            .fetch_add(bytes, std::sync::atomic::Ordering::Relaxed);
    }

    /// Lists every adapter wgpu can see, one line each, in selector-index order.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn list_adapters() -> Vec<String> {
        let instance =
            wgpu::Instance::new(wgpu::InstanceDescriptor::new_without_display_handle_from_env());
        pollster::block_on(adapters(&instance))
            .iter()
            .enumerate()
            .map(|(i, a)| format!("{i}: {}", describe(&a.get_info())))
            .collect()
    }

    /// A short human description of the open adapter, e.g. `llvmpipe (Vulkan, Cpu)`.
    pub fn describe(&self) -> String {
        describe(&self.info)
    }

    /// Forces a kernel variant (`--kernels`); ops recorded afterwards use it.
    pub fn with_kernels(mut self, kernels: Option<Kernels>) -> Self {
        if let Some(k) = kernels {
            self.kernels = k;
        }
        self
    }

    /// Returns the compiled pipeline for `entry` in `shader` with the pipeline-overridable
    /// `constants` (WGSL `override`: kernel variants specialised at compile time, so a flag
    /// costs nothing where it is off), compiling it on first use.
    pub fn pipeline(
        &self,
        shader: &'static Shader,
        entry: &'static str,
        constants: &[(&'static str, f64)],
    ) -> Result<Arc<wgpu::ComputePipeline>> {
        let mut cache = self
            .pipelines
            .lock()
            .map_err(|_| Error::Gpu("pipeline cache poisoned".into()))?;
        let key = (
            shader.name,
            entry,
            constants.iter().map(|&(k, v)| (k, v.to_bits())).collect(),
        );
        if let Some(p) = cache.get(&key) {
            return Ok(p.clone());
        }
        let scope = ErrorScope::push(&self.device);
        let source = format!("{PRELUDE}\n{}", shader.source);
        let module = self
            .device
            .create_shader_module(wgpu::ShaderModuleDescriptor {
                label: Some(shader.name),
                source: wgpu::ShaderSource::Wgsl(source.into()),
            });
        let pipeline = self
            .device
            .create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
                label: Some(entry),
                layout: None,
                module: &module,
                entry_point: Some(entry),
                compilation_options: wgpu::PipelineCompilationOptions {
                    constants,
                    // every kernel writes its workgroup memory before reading it
                    zero_initialize_workgroup_memory: false,
                },
                cache: None,
            });
        if let Some(err) = scope.pop() {
            return Err(Error::Shader {
                shader: shader.name.into(),
                entry: entry.into(),
                reason: err.to_string(),
            });
        }
        let pipeline = Arc::new(pipeline);
        cache.insert(key, pipeline.clone());
        Ok(pipeline)
    }

    /// Waits for all submitted work to finish.
    pub fn wait(&self) -> Result<()> {
        self.device
            .poll(wgpu::PollType::wait_indefinitely())
            .map(|_| ())
            .map_err(|e| Error::Gpu(e.to_string()))
    }
}

/// Every adapter wgpu can see; in a browser the one WebGPU gives (it lists none).
async fn adapters(instance: &wgpu::Instance) -> Vec<wgpu::Adapter> {
    if cfg!(target_arch = "wasm32") {
        let options = wgpu::RequestAdapterOptions {
            power_preference: wgpu::PowerPreference::HighPerformance,
            ..Default::default()
        };
        instance
            .request_adapter(&options)
            .await
            .into_iter()
            .collect()
    } else {
        instance.enumerate_adapters(wgpu::Backends::all()).await
    }
}

/// A validation error scope around one call, checked synchronously. In a browser a scope can
/// only be awaited, so there it is not pushed, and errors go to [`GpuContext::take_error`].
pub(crate) struct ErrorScope {
    #[cfg(not(target_arch = "wasm32"))]
    guard: wgpu::ErrorScopeGuard,
}

impl ErrorScope {
    pub fn push(device: &wgpu::Device) -> Self {
        #[cfg(not(target_arch = "wasm32"))]
        {
            Self {
                guard: device.push_error_scope(wgpu::ErrorFilter::Validation),
            }
        }
        #[cfg(target_arch = "wasm32")]
        {
            let _ = device;
            Self {}
        }
    }

    /// The error raised inside the scope, if any.
    pub fn pop(self) -> Option<wgpu::Error> {
        #[cfg(not(target_arch = "wasm32"))]
        {
            pollster::block_on(self.guard.pop())
        }
        #[cfg(target_arch = "wasm32")]
        {
            None
        }
    }
}

/// A WGSL source file from `shaders/`, compiled lazily per entry point.
pub struct Shader {
    pub name: &'static str,
    pub source: &'static str,
}

fn describe(info: &wgpu::AdapterInfo) -> String {
    // browsers may keep the adapter's name to themselves
    let name = match info.name.as_str() {
        "" => "unnamed adapter",
        name => name,
    };
    format!("{name} ({:?}, {:?})", info.backend, info.device_type)
}

fn type_rank(t: wgpu::DeviceType) -> u8 {
    match t {
        wgpu::DeviceType::DiscreteGpu => 0,
        wgpu::DeviceType::IntegratedGpu => 1,
        wgpu::DeviceType::VirtualGpu => 2,
        wgpu::DeviceType::Cpu => 3,
        wgpu::DeviceType::Other => 4,
    }
}

fn pick_by_selector(adapters: Vec<wgpu::Adapter>, selector: &str) -> Option<wgpu::Adapter> {
    if let Ok(index) = selector.parse::<usize>() {
        return adapters.into_iter().nth(index);
    }
    let wanted = selector.to_lowercase();
    adapters.into_iter().find(|a| {
        let info = a.get_info();
        let haystack =
            format!("{} {:?} {:?}", info.name, info.backend, info.device_type).to_lowercase();
        haystack.contains(&wanted)
    })
}

fn check_limits(info: &wgpu::AdapterInfo, limits: &wgpu::Limits) -> Result<()> {
    let fail = |what: String| Error::DeviceLimits {
        adapter: info.name.clone(),
        what,
    };
    if limits.max_storage_buffer_binding_size < MIN_STORAGE_BINDING {
        return Err(fail(format!(
            "max storage buffer binding is {} bytes, need {MIN_STORAGE_BINDING}",
            limits.max_storage_buffer_binding_size
        )));
    }
    if limits.max_compute_invocations_per_workgroup < 256
        || limits.max_storage_buffers_per_shader_stage < 6
    {
        return Err(fail(format!(
            "need 256 invocations per workgroup and 6 storage buffers per stage, have {} and {}",
            limits.max_compute_invocations_per_workgroup,
            limits.max_storage_buffers_per_shader_stage
        )));
    }
    Ok(())
}
