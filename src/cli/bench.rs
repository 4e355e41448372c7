//! `ecgwgpu bench`: training-step and inference throughput of a preset on random beats.

use std::time::Instant;

use serde::Serialize;

use crate::error::Result;
use crate::gpu::GpuContext;
use crate::loss::LossConfig;
use crate::model::{Model, ModelConfig};
use crate::optim::AdamConfig;
use crate::rng::Rng;
use crate::trainer::Trainer;

#[derive(clap::Args)]
pub struct BenchArgs {
    /// Model preset: `paper` or `tiny`.
    #[arg(long, default_value = "paper")]
    preset: String,
    /// Training batch size.
    #[arg(long, default_value_t = 128)]
    batch: usize,
    /// Inference batch size.
    #[arg(long, default_value_t = 1024)]
    infer_batch: usize,
    /// Timed repeats (each one training step and one inference batch); the median is reported.
    #[arg(long, default_value_t = 10)]
    repeats: usize,
    /// Adapter selector (see `ecgwgpu devices`); defaults to $ECGWGPU_DEVICE, then the fastest.
    #[arg(long)]
    device: Option<String>,
    /// Also time every dispatch of one training step on its own and print the breakdown.
    #[arg(long)]
    breakdown: bool,
    /// Print one JSON object instead of a table.
    #[arg(long)]
    json: bool,
}

#[derive(Serialize)]
struct BenchReport {
    device: String,
    preset: String,
    batch: usize,
    infer_batch: usize,
    dispatches_per_step: usize,
    warmup_s: f64,
    train_step_ms: f64,
    train_beats_per_s: f64,
    infer_batch_ms: f64,
    infer_beats_per_s: f64,
    /// Storage buffers of the model, one training plan and one inference plan.
    gpu_buffer_bytes: u64,
    /// Peak resident set of this process (Linux; absent elsewhere).
    host_peak_rss_bytes: Option<u64>,
}

/// The process's peak resident set size from /proc (VmHWM), where there is one.
fn peak_rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

pub fn run(args: BenchArgs) -> Result<()> {
    let ctx = GpuContext::new(args.device.as_deref())?;
    let config = ModelConfig::preset(&args.preset)?;
    let per_beat = config.in_channels * config.input_len;
    let classes = config.classes;
    let mut rng = Rng::new(1);
    let mut beats =
        |n: usize| -> Vec<f32> { (0..n * per_beat).map(|_| rng.uniform() as f32).collect() };
    let x = beats(args.batch);
    let xi = beats(args.infer_batch);
    let y: Vec<u32> = (0..args.batch).map(|i| (i % classes) as u32).collect();

    let start = Instant::now();
    let model = Model::new(&ctx, config, 1)?;
    let mut trainer = Trainer::new(
        &ctx,
        model,
        LossConfig::cross_entropy(classes),
        AdamConfig::default(),
    )?;
    trainer.step(&x, &y)?;
    trainer.predict(&xi)?;
    let warmup_s = start.elapsed().as_secs_f64();

    let (mut train, mut infer) = (vec![], vec![]);
    for _ in 0..args.repeats.max(1) {
        let t = Instant::now();
        trainer.step(&x, &y)?;
        train.push(t.elapsed().as_secs_f64());
        let t = Instant::now();
        trainer.predict(&xi)?;
        infer.push(t.elapsed().as_secs_f64());
    }
    let (train_s, infer_s) = (median(train), median(infer));
    let report = BenchReport {
        device: ctx.describe(),
        preset: args.preset,
        batch: args.batch,
        infer_batch: args.infer_batch,
        dispatches_per_step: trainer.dispatches_per_step(args.batch)?,
        warmup_s,
        train_step_ms: train_s * 1e3,
        train_beats_per_s: args.batch as f64 / train_s,
        infer_batch_ms: infer_s * 1e3,
        infer_beats_per_s: args.infer_batch as f64 / infer_s,
        gpu_buffer_bytes: ctx.storage_bytes(),
        host_peak_rss_bytes: peak_rss_bytes(),
    };
    if args.breakdown {
        let times = trainer.profile_step(args.batch)?;
        let total: f64 = times.iter().map(|t| t.1).sum();
        println!("{:<4} {:<28} {:>10} {:>6}", "#", "kernel", "ms", "%");
        for (i, (label, s)) in times.iter().enumerate() {
            println!(
                "{i:<4} {label:<28} {:>10.2} {:>5.1}%",
                s * 1e3,
                100.0 * s / total
            );
        }
        println!("     {:<28} {:>10.2}", "sum", total * 1e3);
    }
    if args.json {
        println!("{}", serde_json::to_string(&report).expect("serialisable"));
    } else {
        println!("device               {}", report.device);
        println!(
            "preset               {} (batch {}, {} dispatches/step)",
            report.preset, report.batch, report.dispatches_per_step
        );
        println!(
            "warm-up              {:.2} s (pipeline compilation, first step and first inference)",
            report.warmup_s
        );
        println!(
            "training step        {:.1} ms  → {:.0} beats/s",
            report.train_step_ms, report.train_beats_per_s
        );
        println!(
            "inference (b{})    {:.1} ms  → {:.0} beats/s",
            report.infer_batch, report.infer_batch_ms, report.infer_beats_per_s
        );
        println!(
            "memory               {:.1} MB GPU buffers, {} host peak RSS",
            report.gpu_buffer_bytes as f64 / 1e6,
            report
                .host_peak_rss_bytes
                .map_or("unknown".into(), |b| format!("{:.0} MB", b as f64 / 1e6))
        );
    }
    Ok(())
}
