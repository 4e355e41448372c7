//! The `ecgwgpu` command line.

mod bench;
mod calibrate;
mod data;
mod distil;
mod ensemble;
mod evaluate;
mod figures;
mod predict;
mod serve;
mod train;
mod transfer;

use clap::{Parser, Subcommand};

use crate::error::Result;
use crate::gpu::GpuContext;
use crate::model::ModelConfig;

#[derive(Parser)]
#[command(
    name = "ecgwgpu",
    version,
    about = "Train and run an ECG heartbeat classifier on any Vulkan/Metal/DX12 GPU"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// List the GPU adapters wgpu can see; the index or any part of a line can be given to
    /// `--device` (or $ECGWGPU_DEVICE) to pick one.
    Devices,
    /// Train the classifier (default: the paper's network and recipe on the embedded records)
    /// and report test metrics in the paper's Table 1 layout.
    Train(Box<train::TrainArgs>),
    /// Evaluate a checkpoint: per-class precision, recall, F1 and accuracy (the paper's Table 1),
    /// AAMI Se/+P/FPR for V and S, the confusion matrix, optional bootstrap intervals.
    Evaluate(Box<evaluate::EvaluateArgs>),
    /// Classify every beat of a recording (WFDB record, EDF/EDF+ file, or every one in a folder),
    /// streamed a chunk at a time: a CSV (sample, classes, probabilities, R–R features) and, for
    /// WFDB records, an annotation file. A recording without --lead is read from its first
    /// signal (--fallback-lead is implied; --data-dir does not apply: give --record).
    Predict(Box<predict::PredictArgs>),
    /// Draw a run's figures as PNGs in DIR/figures: class counts before/after augmentation,
    /// a sample beat per class, training curves, confusion matrix (`train` draws them too).
    Figures(figures::FiguresArgs),
    /// Fine-tune the MIT-BIH feature extractor for myocardial infarction vs normal on PTB data
    /// (or train the same network from scratch there, for comparison); beat- and record-level
    /// accuracy, precision, recall, F1, specificity and AUROC.
    Transfer(Box<transfer::TransferArgs>),
    /// Read WFDB records: class statistics, beat extraction, CSV export.
    #[command(subcommand)]
    Data(data::DataCommand),
    /// Measure training-step and inference throughput (beats/s) of a preset on random beats.
    Bench(bench::BenchArgs),
    /// Re-choose a fold ensemble's decision rule (the irregular-rhythm gate, the record
    /// clusters) on its out-of-fold predictions of DS1, without retraining, and write the
    /// ensemble with it.
    Calibrate(calibrate::CalibrateArgs),
    /// Combine `train --folds` ensembles of several seeds into one, with the whole decision rule
    /// (offsets, irregular-rhythm gate, record clusters) chosen anew on DS1 out of fold.
    Ensemble(ensemble::EnsembleArgs),
    /// Train one network towards a fold ensemble's out-of-fold probabilities on DS1 (a
    /// distilled student, one network's speed): fold students choose its decision rule out of
    /// fold, then one student trains on all of DS1; both are scored on DS2.
    Distil(Box<distil::DistilArgs>),
    /// Serve the built web page (web/dist, from `bash tools/web/build.sh`) on 127.0.0.1, to open
    /// in a browser with WebGPU.
    Serve(serve::ServeArgs),
    /// Print a model preset's layers, parameter count and forward FLOPs per beat.
    Model {
        /// Preset: `paper` (the paper's listing, 408,357 parameters), `paper-rr` (with the rhythm
        /// stream), `mid` or `mid-rr` (six pairs at a quarter width), `tiny` or `tiny-rr` (tests).
        #[arg(long, default_value = "paper")]
        preset: String,
    },
}

/// A data folder the commands read by default: `data/<name>` in the current directory (a
/// checkout of ecgwgpu holds the embedded subsets there). Nothing is compiled in from where the
/// binary was built, so an installed binary behaves the same from any folder.
pub(crate) fn default_data_dir(name: &str) -> std::path::PathBuf {
    std::path::Path::new("data").join(name)
}

/// The leads DS1 is read at for choices made out of fold (`calibrate`, `ensemble`).
#[derive(clap::Args)]
pub(crate) struct OutOfFoldLeads {
    /// Read DS1 at this lead instead of the network's own (a preference list, e.g.
    /// `V1,V2,V4,V5`: MIT-BIH's second lead).
    #[arg(long, value_name = "LEADS")]
    lead: Option<String>,
    /// Also read each DS1 record at this lead (a preference list, e.g. `V1,V2,V4,V5`), as a
    /// recording of its own of the same patient, so that the rule is chosen on both leads.
    /// Repeatable.
    #[arg(long = "view", value_name = "LEADS")]
    views: Vec<String>,
    /// Also read each DS1 record as another device would have taken it (a rate of 128, 250 or
    /// 500 Hz and typical or strong noise drawn per record under this seed, as `train
    /// --device-view` does), so that the rule is chosen on those recordings too.
    #[arg(long, value_name = "SEED")]
    device_view: Option<u64>,
}

impl OutOfFoldLeads {
    pub(crate) fn leads(&self) -> crate::eval::Leads {
        crate::eval::Leads {
            lead: self.lead.clone(),
            views: self.views.clone(),
            device_view: self
                .device_view
                .map(crate::data::signal::acquisition::DeviceDraw::new),
            ..Default::default()
        }
    }
}

/// Progress of out-of-fold predictions, one line per ensemble member done.
pub(crate) fn member_progress(done: usize, members: usize) {
    eprintln!("out of fold: {done} of {members} members have classified their held-out records");
}

/// The adapter and kernel flags, shared by every command that runs the network.
#[derive(clap::Args)]
pub(crate) struct GpuArgs {
    /// Adapter selector (see `ecgwgpu devices`); defaults to $ECGWGPU_DEVICE, then the fastest.
    #[arg(long)]
    pub device: Option<String>,
    /// Kernel variant: `cpu` (register blocks, for software Vulkan such as lavapipe), `gpu` (the
    /// mix that measured fastest on a real GPU: split reductions, tiled input gradient) or
    /// `tiled` (workgroup-memory tiles throughout). Default: from the adapter type, or
    /// $ECGWGPU_KERNELS.
    #[arg(long, value_parser = crate::gpu::Kernels::parse_arg)]
    pub kernels: Option<crate::gpu::Kernels>,
}

impl GpuArgs {
    pub fn context(&self) -> Result<GpuContext> {
        Ok(GpuContext::new(self.device.as_deref())?.with_kernels(self.kernels))
    }
}

/// Which network classifies: a checkpoint, or the one shipped in the binary.
#[derive(clap::Args)]
pub(crate) struct NetworkArgs {
    /// Checkpoint written by `train` or `transfer` (e.g. runs/NAME/best.safetensors). Default:
    /// the shipped heartbeat model (models/README.md), embedded in the binary.
    #[arg(long)]
    pub checkpoint: Option<std::path::PathBuf>,
}

impl NetworkArgs {
    /// The classifier, and how to name its network in reports.
    pub fn classifier<'c>(
        &self,
        ctx: &'c GpuContext,
    ) -> Result<(crate::infer::Classifier<'c>, std::path::PathBuf)> {
        match &self.checkpoint {
            Some(path) => Ok((crate::infer::Classifier::load(ctx, path)?, path.clone())),
            None => Ok((
                crate::infer::Classifier::shipped(ctx)?,
                crate::infer::SHIPPED_MODEL_NAME.into(),
            )),
        }
    }
}

/// Progress of long work as plain lines on stderr, every `step` of the total (a fraction) and
/// at the end: readable in a terminal and in a non-interactive log alike.
pub(crate) struct ProgressLines {
    what: &'static str,
    /// What is counted ("beats", "samples").
    unit: &'static str,
    step: f64,
    next: f64,
    /// The last count reported, so the end is reported once.
    last: Option<usize>,
    start: std::time::Instant,
}

impl ProgressLines {
    pub(crate) fn new(what: &'static str, unit: &'static str, step: f64) -> Self {
        Self {
            what,
            unit,
            step,
            next: step,
            last: None,
            start: std::time::Instant::now(),
        }
    }

    /// Reports `done` of `total` when another step has been crossed (or at the end).
    pub(crate) fn update(&mut self, done: usize, total: usize) {
        let fraction = done as f64 / total.max(1) as f64;
        if (fraction + 1e-9 < self.next && done < total) || self.last == Some(done) {
            return;
        }
        self.last = Some(done);
        while self.next <= fraction + 1e-9 {
            self.next += self.step;
        }
        let seconds = self.start.elapsed().as_secs_f64();
        eprintln!(
            "{}: {done} of {total} {unit} ({:.0} %), {:.0} {unit}/s, {seconds:.1} s",
            self.what,
            100.0 * fraction,
            done as f64 / seconds.max(1e-9),
            unit = self.unit
        );
    }
}

/// This process's peak resident memory (VmHWM) in MB, where the system reports it (Linux).
pub fn peak_memory_mb() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

/// Prints what loading a directory skipped or dropped (one line per cause) and the line that
/// accounts for every beat annotation, on stderr (also in logs).
fn report_load(ds: &crate::data::corpus::dataset::Dataset) {
    for line in ds.report_lines() {
        eprintln!("{line}");
    }
}

pub fn run() -> Result<()> {
    match Cli::parse().command {
        Command::Devices => {
            let adapters = GpuContext::list_adapters();
            if adapters.is_empty() {
                println!("no adapters found (is a Vulkan driver installed? e.g. apt-get install mesa-vulkan-drivers)");
            }
            for line in adapters {
                println!("{line}");
            }
        }
        Command::Bench(args) => bench::run(args)?,
        Command::Serve(args) => serve::run(args)?,
        Command::Calibrate(args) => calibrate::run(args)?,
        Command::Ensemble(args) => ensemble::run(args)?,
        Command::Distil(args) => distil::run(*args)?,
        Command::Data(command) => data::run(command)?,
        Command::Train(args) => train::run(*args)?,
        Command::Transfer(args) => transfer::run(*args)?,
        Command::Evaluate(args) => evaluate::run(*args)?,
        Command::Predict(args) => predict::run(*args)?,
        Command::Figures(args) => figures::run(args)?,
        Command::Model { preset } => {
            let config = ModelConfig::preset(&preset)?;
            config.validate()?;
            for (name, shape) in config.param_shapes() {
                println!("{name:<16} {shape:?}");
            }
            println!("parameters: {}", config.param_count());
            println!(
                "forward FLOPs per beat: {:.2} M",
                config.forward_flops() as f64 / 1e6
            );
        }
    }
    Ok(())
}
