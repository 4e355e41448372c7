//! Shared by the integration tests: one GPU context per test binary (lavapipe in CI), random
//! arrays, closeness checks and central-difference gradients, scratch folders and the data that
//! lives outside the checkout.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use ecgwgpu::autograd::Graph;
use ecgwgpu::gpu::{GpuContext, Kernels, Tensor};
use ecgwgpu::ops::{Op, StepUniform};
use ecgwgpu::rng::Rng;
use ndarray::{ArrayD, IxDyn};

/// The MIT-BIH subset in the checkout's `data/mitdb`.
pub fn embedded_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("data")
        .join("mitdb")
}

/// A fresh, empty folder under the system's temporary directory, unique to this process.
pub fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("ecgwgpu-test-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Data that is not embedded, for the `#[ignore]`d tests that need it (`cargo test --
/// --include-ignored`): the folder `$env_var` names, or `default` relative to the checkout.
/// Fails when `marker` is not in it, so that such a test never passes without checking anything.
pub fn external_data(what: &str, env_var: &str, default: &str, marker: &str) -> PathBuf {
    let dir = std::env::var_os(env_var)
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join(default));
    assert!(
        dir.join(marker).is_file(),
        "{what}: not found at {}; set {env_var} to a copy",
        dir.display()
    );
    dir
}

pub fn ctx() -> &'static GpuContext {
    static CTX: OnceLock<GpuContext> = OnceLock::new();
    CTX.get_or_init(|| {
        GpuContext::new(None).expect("a GPU adapter (install mesa-vulkan-drivers for lavapipe)")
    })
}

/// A context on the default adapter that records the given kernel variant, so that both the
/// CPU-shaped and the GPU-shaped kernels are tested on whatever adapter CI has.
pub fn ctx_with(kernels: Kernels) -> &'static GpuContext {
    static CPU: OnceLock<GpuContext> = OnceLock::new();
    static GPU: OnceLock<GpuContext> = OnceLock::new();
    static TILED: OnceLock<GpuContext> = OnceLock::new();
    let cell = match kernels {
        Kernels::Cpu => &CPU,
        Kernels::Gpu => &GPU,
        Kernels::Tiled => &TILED,
    };
    cell.get_or_init(|| {
        GpuContext::new(None)
            .expect("a GPU adapter (install mesa-vulkan-drivers for lavapipe)")
            .with_kernels(Some(kernels))
    })
}

/// Every kernel variant, each with its context.
pub fn variants() -> [(Kernels, &'static GpuContext); 3] {
    [Kernels::Cpu, Kernels::Gpu, Kernels::Tiled].map(|k| (k, ctx_with(k)))
}

/// Values in [-1, 1) that are exactly representable in f32, so GPU and CPU see the same input.
pub fn rand_array(rng: &mut Rng, shape: &[usize]) -> ArrayD<f64> {
    let n = shape.iter().product();
    let v: Vec<f64> = (0..n)
        .map(|_| f64::from(rng.range(-1.0, 1.0) as f32))
        .collect();
    ArrayD::from_shape_vec(IxDyn(shape), v).unwrap()
}

pub fn to_f32(a: &ArrayD<f64>) -> Vec<f32> {
    a.iter().map(|&v| v as f32).collect()
}

/// Asserts |gpu - cpu| <= atol + rtol * |cpu| everywhere, naming the worst element.
pub fn assert_close(what: &str, gpu: &[f32], cpu: &[f64], rtol: f64, atol: f64) {
    assert_eq!(gpu.len(), cpu.len(), "{what}: length");
    let mut worst = (0usize, 0.0f64);
    for (i, (&g, &c)) in gpu.iter().zip(cpu).enumerate() {
        let excess = (f64::from(g) - c).abs() - (atol + rtol * c.abs());
        if excess > worst.1 || !g.is_finite() {
            worst = (i, excess.max(f64::MIN_POSITIVE));
        }
    }
    if worst.1 > 0.0 {
        let i = worst.0;
        panic!(
            "{what}: element {i}: gpu {} vs cpu {} (rtol {rtol}, atol {atol})",
            gpu[i], cpu[i]
        );
    }
}

/// d f / d x by central differences in f64.
pub fn numeric_grad(x: &ArrayD<f64>, f: impl Fn(&ArrayD<f64>) -> f64) -> ArrayD<f64> {
    let h = 1e-6;
    let mut g = ArrayD::zeros(x.raw_dim());
    let mut xp = x.clone();
    for i in 0..x.len() {
        let orig = xp.as_slice().unwrap()[i];
        xp.as_slice_mut().unwrap()[i] = orig + h;
        let up = f(&xp);
        xp.as_slice_mut().unwrap()[i] = orig - h;
        let down = f(&xp);
        xp.as_slice_mut().unwrap()[i] = orig;
        g.as_slice_mut().unwrap()[i] = (up - down) / (2.0 * h);
    }
    g
}

/// Runs `op` on the GPU through the autograd graph: returns the output and the gradient of
/// `sum(output * grad_out)` w.r.t. every input.
pub fn run_op(
    op: impl Op + 'static,
    inputs: &[ArrayD<f64>],
    grad_out: &ArrayD<f64>,
    step: u32,
) -> (Vec<f32>, Vec<Vec<f32>>) {
    run_op_on(ctx(), op, inputs, grad_out, step)
}

/// [`run_op`] on a given context (kernel variant).
pub fn run_op_on(
    ctx: &GpuContext,
    op: impl Op + 'static,
    inputs: &[ArrayD<f64>],
    grad_out: &ArrayD<f64>,
    step: u32,
) -> (Vec<f32>, Vec<Vec<f32>>) {
    let step = StepUniform {
        step,
        ..Default::default()
    }
    .create_buffer(ctx);
    let mut graph = Graph::new(ctx, step);
    let vars: Vec<_> = inputs
        .iter()
        .map(|a| {
            // ndarray interop: the f32 copy of the input goes up as it is.
            graph.leaf(
                Tensor::from_array(ctx, &a.mapv(|v| v as f32)).unwrap(),
                None,
            )
        })
        .collect();
    let out = graph.apply(op, &vars).unwrap();
    assert_eq!(graph.value(out).shape(), grad_out.shape(), "output shape");
    let seed = Tensor::from_slice(ctx, &to_f32(grad_out), grad_out.shape()).unwrap();
    graph.backward(out, seed).unwrap();
    graph.forward.run(ctx).unwrap();
    graph.backward.run(ctx).unwrap();
    let y = graph.value(out).read(ctx).unwrap();
    let grads = vars
        .iter()
        .map(|&v| graph.grad(v).unwrap().read(ctx).unwrap())
        .collect();
    (y, grads)
}

/// sum(y * r): the scalar whose gradient w.r.t. y is r.
pub fn dot(y: &ArrayD<f64>, r: &ArrayD<f64>) -> f64 {
    y.iter().zip(r.iter()).map(|(a, b)| a * b).sum()
}

pub fn flat(a: &ArrayD<f64>) -> Vec<f64> {
    a.iter().copied().collect()
}
