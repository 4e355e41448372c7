//! Every kernel of the paper network at its real shapes, forward and backward separately, at
//! batch 32, 128 and 512 (or `ECGWGPU_BENCH_BATCHES=32,128`). Criterion's throughput column reads
//! as GFLOP/s for the compute-bound kernels ("elem/s" counts floating-point operations) and as
//! GB/s for the memory-bound ones. Each sample submits the kernel alone and waits for it, so
//! the times include one submit-and-wait (what `ecgwgpu bench --breakdown` shows per dispatch).
//!
//!     cargo bench --bench kernels                   # everything (slow on lavapipe)
//!     cargo bench --bench kernels -- conv1d/b128    # one group
//!     ECGWGPU_DEVICE=nvidia cargo bench --bench kernels

use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use ecgwgpu::gpu::{GpuContext, Program, Tensor};
use ecgwgpu::loss::{FocalLoss, LossConfig};
use ecgwgpu::model::ModelConfig;
use ecgwgpu::ops::conv1d::{Conv1d, Padding};
use ecgwgpu::ops::dense::Dense;
use ecgwgpu::ops::dropout::Dropout;
use ecgwgpu::ops::maxpool1d::MaxPool1d;
use ecgwgpu::ops::relu::Relu;
use ecgwgpu::ops::{Op, Recorder, StepUniform};
use ecgwgpu::optim::{Adam, AdamConfig};

fn batches() -> Vec<usize> {
    std::env::var("ECGWGPU_BENCH_BATCHES")
        .ok()
        .map(|s| s.split(',').filter_map(|b| b.trim().parse().ok()).collect())
        .unwrap_or_else(|| vec![32, 128, 512])
}

/// A tensor of `shape` filled with a smooth, non-zero pattern (ReLU and max-pool see both signs).
fn filled(ctx: &GpuContext, shape: &[usize]) -> Tensor {
    let n: usize = shape.iter().product();
    let data: Vec<f32> = (0..n).map(|i| ((i % 97) as f32 - 48.0) / 50.0).collect();
    Tensor::from_slice(ctx, &data, shape).unwrap()
}

/// Times `program` with one submit-and-wait per iteration.
fn time(ctx: &GpuContext, program: &Program, iters: u64) -> Duration {
    let start = Instant::now();
    for _ in 0..iters {
        program.run(ctx).unwrap();
    }
    start.elapsed()
}

/// Records the forward pass and, for each input with a gradient, its backward pass alone, and
/// benchmarks them as `<name>/forward`, `<name>/backward_<input>`.
#[allow(clippy::too_many_arguments)]
fn bench_op(
    c: &mut Criterion,
    ctx: &GpuContext,
    group: &str,
    name: &str,
    op: &dyn Op,
    shapes: &[&[usize]],
    grads: &[(usize, &str)],
    throughput: Throughput,
) {
    let step = StepUniform::default().create_buffer(ctx);
    let inputs: Vec<Tensor> = shapes.iter().map(|s| filled(ctx, s)).collect();
    let refs: Vec<&Tensor> = inputs.iter().collect();
    let out_shape = op.output_shape(shapes).unwrap();
    let output = filled(ctx, &out_shape);
    let mut forward = Program::new();
    let saved = op
        .forward(&mut Recorder::new(ctx, &step, &mut forward), &refs, &output)
        .unwrap();
    let mut g = c.benchmark_group(group);
    g.sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .throughput(throughput.clone());
    g.bench_function(format!("{name}/forward"), |b| {
        b.iter_custom(|iters| time(ctx, &forward, iters))
    });
    for &(index, label) in grads {
        let grad = filled(ctx, shapes[index]);
        let mut slots: Vec<Option<&Tensor>> = vec![None; shapes.len()];
        slots[index] = Some(&grad);
        let mut backward = Program::new();
        op.backward(
            &mut Recorder::new(ctx, &step, &mut backward),
            &refs,
            &saved,
            &output,
            &slots,
        )
        .unwrap();
        g.bench_function(format!("{name}/backward_{label}"), |b| {
            b.iter_custom(|iters| time(ctx, &backward, iters))
        });
    }
    g.finish();
}

fn kernels(c: &mut Criterion) {
    let ctx = GpuContext::new(None)
        .expect("a GPU adapter (lavapipe: apt-get install mesa-vulkan-drivers)");
    eprintln!("device: {}", ctx.describe());
    let paper = ModelConfig::paper();
    let k = paper.kernel;
    for b in batches() {
        // The twelve convolutions: FLOPs = 2 B Cout Cin K L for each of the three kernels.
        let (mut c_in, mut len) = (paper.in_channels, paper.input_len);
        for (pair, &c_out) in paper.pair_channels.iter().enumerate() {
            for j in 1..=2 {
                let flops = 2 * b * c_out * c_in * k * len;
                bench_op(
                    c,
                    &ctx,
                    &format!("conv1d/b{b}"),
                    &format!("conv{}_{j}_{c_in}x{c_out}_L{len}", pair + 1),
                    &Conv1d::with_relu(Padding::Same),
                    &[&[b, c_in, len], &[c_out, c_in, k], &[c_out]],
                    &[(0, "input"), (1, "weight")],
                    Throughput::Elements(flops as u64),
                );
                c_in = c_out;
            }
            len /= paper.pool;
        }
        // Dense_1 (256 -> 128) and Dense_2 (128 -> 5): 2 B in out FLOPs per kernel.
        let flat = paper.flat_features().unwrap();
        for (name, fan_in, fan_out) in [
            ("dense1", flat, paper.dense),
            ("dense2", paper.dense, paper.classes),
        ] {
            bench_op(
                c,
                &ctx,
                &format!("dense/b{b}"),
                &format!("{name}_{fan_in}x{fan_out}"),
                &Dense,
                &[&[b, fan_in], &[fan_out, fan_in], &[fan_out]],
                &[(0, "input"), (1, "weight")],
                Throughput::Elements((2 * b * fan_in * fan_out) as u64),
            );
        }
        // Element-wise kernels on the largest activation, [B, 32, 187]: bytes read + written.
        let shape = [b, paper.pair_channels[0], paper.input_len];
        let n = shape.iter().product::<usize>() as u64;
        bench_op(
            c,
            &ctx,
            &format!("elementwise/b{b}"),
            "relu",
            &Relu,
            &[&shape],
            &[(0, "input")],
            Throughput::Bytes(8 * n),
        );
        bench_op(
            c,
            &ctx,
            &format!("elementwise/b{b}"),
            "maxpool1d",
            &MaxPool1d::with_dropout(paper.pool, paper.dropout, 7),
            &[&shape],
            &[(0, "input")],
            Throughput::Bytes(6 * n),
        );
        bench_op(
            c,
            &ctx,
            &format!("elementwise/b{b}"),
            "dropout",
            &Dropout {
                rate: paper.dropout,
                seed: 7,
                relu: false,
            },
            &[&shape],
            &[(0, "input")],
            Throughput::Bytes(8 * n),
        );
        // The fused softmax + two-fold focal loss + gradient, and its mean.
        let step = StepUniform::default().create_buffer(&ctx);
        let logits = filled(&ctx, &[b, paper.classes]);
        let loss = FocalLoss::new(
            &ctx,
            &LossConfig::two_fold(vec![0.25; 5], 2.0, vec![0.25; 5], 0.5),
            b,
            paper.classes,
        )
        .unwrap();
        loss.set_labels(&ctx, &(0..b as u32).map(|i| i % 5).collect::<Vec<_>>())
            .unwrap();
        let mut program = Program::new();
        loss.record(&mut Recorder::new(&ctx, &step, &mut program), &logits)
            .unwrap();
        let mut g = c.benchmark_group(format!("loss/b{b}"));
        g.sample_size(10).throughput(Throughput::Elements(b as u64));
        g.bench_function("focal_loss_forward_backward", |bench| {
            bench.iter_custom(|iters| time(&ctx, &program, iters))
        });
        g.finish();
    }
    // Adam over the paper's 408,357 parameters: reads p, g, m, v and writes p, m, v.
    let n = paper.param_count();
    let step = StepUniform::default().create_buffer(&ctx);
    let (params, grads) = (filled(&ctx, &[n]), filled(&ctx, &[n]));
    let adam = Adam::new(&ctx, AdamConfig::default(), n, 0);
    let mut program = Program::new();
    adam.record(
        &mut Recorder::new(&ctx, &step, &mut program),
        &params,
        &grads,
    )
    .unwrap();
    let mut g = c.benchmark_group("adam");
    g.sample_size(10)
        .throughput(Throughput::Bytes(28 * n as u64));
    g.bench_function("paper_408357_params", |bench| {
        bench.iter_custom(|iters| time(&ctx, &program, iters))
    });
    g.finish();
}

criterion_group!(benches, kernels);
criterion_main!(benches);
