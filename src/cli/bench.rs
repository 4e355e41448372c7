//! `ecgwgpu bench`: training-step and inference throughput of a preset on random beats.

use std::time::Instant;

use serde::Serialize;

use crate::error::Result;
use crate::loss::LossConfig;
use crate::model::{Model, ModelConfig};
use crate::optim::AdamConfig;
use crate::rng::Rng;
use crate::trainer::Trainer;

#[derive(clap::Args)]
pub struct BenchArgs {
    /// Model preset: `paper`, `paper-rr`, `mid`, `mid-rr`, `tiny` or `tiny-rr`.
    #[arg(long, default_value = "paper")]
    preset: String,
    /// Training batch size.
    #[arg(long, default_value_t = 128)]
    batch: usize,
    /// Inference batch size.
    #[arg(long, default_value_t = 1024)]
    infer_batch: usize,
    /// Timed repeats (each one resident epoch, one uploaded training step and one inference
    /// batch); the median of each is reported.
    #[arg(long, default_value_t = 10)]
    repeats: usize,
    /// Steps per timed epoch of the GPU-resident training loop (the way `train` runs).
    #[arg(long, default_value_t = 20)]
    steps: usize,
    #[command(flatten)]
    gpu: super::GpuArgs,
    /// Also time every dispatch of one training step on its own (GPU timestamps where the
    /// adapter has them, else wall clock per submission) and print the breakdown with each
    /// dispatch's workgroup count.
    #[arg(long)]
    breakdown: bool,
    /// Also time an ensemble of this many networks (random weights) at inference, run as one
    /// grouped network the way `predict` runs the shipped model (`infer-batch / members` beats
    /// at a time, so its activations take one network's memory).
    #[arg(long, default_value_t = 1)]
    members: usize,
    /// Print one JSON object instead of a table.
    #[arg(long)]
    json: bool,
}

#[derive(Serialize)]
struct BenchReport {
    device: String,
    kernels: crate::gpu::Kernels,
    preset: String,
    batch: usize,
    infer_batch: usize,
    dispatches_per_step: usize,
    warmup_s: f64,
    /// The GPU-resident loop (`train`): batches gathered on the GPU, many steps per submission.
    train_step_ms: f64,
    train_beats_per_s: f64,
    /// One uploaded batch per submission, loss read back each step (`Trainer::step`).
    uploaded_step_ms: f64,
    uploaded_beats_per_s: f64,
    infer_batch_ms: f64,
    infer_beats_per_s: f64,
    /// Storage buffers of the model, one training plan and one inference plan.
    gpu_buffer_bytes: u64,
    /// Peak resident set of this process (Linux; absent elsewhere).
    host_peak_rss_bytes: Option<u64>,
    /// With `--members` > 1: the ensemble's size, and its inference rate as one grouped network
    /// and member by member (one network's rate divided by the members, what running them one
    /// at a time costs).
    members: usize,
    grouped_infer_beats_per_s: Option<f64>,
    member_by_member_infer_beats_per_s: Option<f64>,
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
    let ctx = args.gpu.context()?;
    let config = ModelConfig::preset(&args.preset)?;
    let per_beat = config.row_len();
    let classes = config.classes;
    let mut rng = Rng::new(1);
    let mut beats =
        |n: usize| -> Vec<f32> { (0..n * per_beat).map(|_| rng.uniform() as f32).collect() };
    let x = beats(args.batch);
    let xi = beats(args.infer_batch);
    let y: Vec<u32> = (0..args.batch).map(|i| (i % classes) as u32).collect();
    let steps = args.steps.max(1);
    let epoch_x = beats(args.batch * steps);
    let epoch_y: Vec<u32> = (0..args.batch * steps)
        .map(|i| (i % classes) as u32)
        .collect();
    let order: Vec<usize> = (0..epoch_y.len()).collect();

    let start = Instant::now();
    let model = Model::new(&ctx, config, 1)?;
    let mut trainer = Trainer::new(
        &ctx,
        model,
        LossConfig::cross_entropy(classes),
        AdamConfig::default(),
    )?;
    trainer.upload_training_data(&epoch_x, &epoch_y)?;
    trainer.step(&x, &y)?;
    trainer.train_epoch(&order, args.batch, |_, _| ())?;
    trainer.predict(&xi)?;
    let warmup_s = start.elapsed().as_secs_f64();

    let (mut epoch, mut uploaded, mut infer) = (vec![], vec![], vec![]);
    for _ in 0..args.repeats.max(1) {
        let t = Instant::now();
        trainer.train_epoch(&order, args.batch, |_, _| ())?;
        epoch.push(t.elapsed().as_secs_f64() / steps as f64);
        let t = Instant::now();
        trainer.step(&x, &y)?;
        uploaded.push(t.elapsed().as_secs_f64());
        let t = Instant::now();
        trainer.predict(&xi)?;
        infer.push(t.elapsed().as_secs_f64());
    }
    let (train_s, uploaded_s, infer_s) = (median(epoch), median(uploaded), median(infer));
    let members = args.members.max(1);
    let grouped_s = match members {
        1 => None,
        _ => {
            let models = (0..members)
                .map(|m| Model::new(&ctx, trainer.model.config.clone(), m as u64 + 1))
                .collect::<Result<Vec<_>>>()?;
            let mut grouped = Trainer::for_inference(&ctx, Model::grouped(&ctx, &models)?)?;
            drop(models);
            let batch = args.infer_batch.div_ceil(members);
            grouped.predict_many(&xi, batch)?;
            let times = (0..args.repeats.max(1))
                .map(|_| {
                    let t = Instant::now();
                    grouped.predict_many(&xi, batch)?;
                    Ok(t.elapsed().as_secs_f64())
                })
                .collect::<Result<Vec<_>>>()?;
            Some(median(times))
        }
    };
    let report = BenchReport {
        device: ctx.describe(),
        kernels: ctx.kernels,
        preset: args.preset,
        batch: args.batch,
        infer_batch: args.infer_batch,
        dispatches_per_step: trainer.dispatches_per_step(args.batch)?,
        warmup_s,
        train_step_ms: train_s * 1e3,
        train_beats_per_s: args.batch as f64 / train_s,
        uploaded_step_ms: uploaded_s * 1e3,
        uploaded_beats_per_s: args.batch as f64 / uploaded_s,
        infer_batch_ms: infer_s * 1e3,
        infer_beats_per_s: args.infer_batch as f64 / infer_s,
        gpu_buffer_bytes: ctx.storage_bytes(),
        host_peak_rss_bytes: peak_rss_bytes(),
        members,
        grouped_infer_beats_per_s: grouped_s.map(|s| args.infer_batch as f64 / s),
        member_by_member_infer_beats_per_s: grouped_s
            .map(|_| args.infer_batch as f64 / infer_s / members as f64),
    };
    if args.breakdown {
        let times = trainer.profile_step(args.batch)?;
        let total: f64 = times.iter().map(|t| t.seconds).sum();
        let clock = match times.first().is_some_and(|t| t.gpu_timestamps) {
            true => "GPU timestamps",
            false => "wall clock, one submission per dispatch",
        };
        println!("breakdown of one training step ({clock})");
        println!(
            "{:<4} {:<34} {:>10} {:>6} {:>18}",
            "#", "kernel", "ms", "%", "workgroups"
        );
        for (i, t) in times.iter().enumerate() {
            let [gx, gy, gz] = t.workgroups;
            println!(
                "{i:<4} {:<34} {:>10.3} {:>5.1}% {:>18}",
                t.label,
                t.seconds * 1e3,
                100.0 * t.seconds / total,
                format!("{gx}x{gy}x{gz}")
            );
        }
        println!("     {:<34} {:>10.3}", "sum", total * 1e3);
    }
    if args.json {
        println!("{}", serde_json::to_string(&report).expect("serialisable"));
    } else {
        println!("device               {}", report.device);
        println!(
            "preset               {} (batch {}, {} dispatches/step, {:?} kernels)",
            report.preset, report.batch, report.dispatches_per_step, report.kernels
        );
        println!(
            "warm-up              {:.2} s (pipeline compilation, first step and first inference)",
            report.warmup_s
        );
        println!(
            "training step        {:.2} ms  → {:.0} beats/s (GPU-resident loop, {steps} steps per epoch)",
            report.train_step_ms, report.train_beats_per_s
        );
        println!(
            "uploaded step        {:.2} ms  → {:.0} beats/s (batch uploaded, loss read back)",
            report.uploaded_step_ms, report.uploaded_beats_per_s
        );
        println!(
            "inference (b{})    {:.1} ms  → {:.0} beats/s",
            report.infer_batch, report.infer_batch_ms, report.infer_beats_per_s
        );
        if let (Some(grouped), Some(one_by_one)) = (
            report.grouped_infer_beats_per_s,
            report.member_by_member_infer_beats_per_s,
        ) {
            println!(
                "{} networks          {grouped:.0} beats/s as one grouped network, {one_by_one:.0} member by member",
                report.members
            );
        }
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
