//! `ecgwgpu train`: the paper's recipe end to end on WFDB records, with a run directory.

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::time::Instant;

use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;

use super::data::Source;
use crate::checkpoint::{self, NamedTensor};
use crate::data::aami::{AamiClass, CLASS_NAMES};
use crate::data::beats::Beats;
use crate::data::dataset::load_dir;
use crate::data::reference::BeatReference;
use crate::data::splits::{self, SplitKind};
use crate::data::write_atomic;
use crate::data::{augment, csv};
use crate::error::{Error, Result};
use crate::gpu::GpuContext;
use crate::loss::{self, LossConfig};
use crate::metrics::{self, Confusion, Report};
use crate::model::{Model, ModelConfig};
use crate::optim::AdamConfig;
use crate::rng::Rng;
use crate::trainer::Trainer;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LossKind {
    /// Two-fold focal loss FL(α1, γm) + FL(α2, γn).
    Focal,
    /// Plain cross-entropy (for comparison).
    Ce,
}

#[derive(clap::Args, Serialize)]
pub struct TrainArgs {
    #[command(flatten)]
    #[serde(skip)]
    source: Source,
    /// Model preset: `paper` (408,357 parameters), `paper-rr` (the dual-stream network: the
    /// paper's plus the beat's eight R–R features joined before Dense_1), or `tiny` / `tiny-rr`
    /// (fast, for trying things out).
    #[arg(long, default_value = "paper")]
    preset: String,
    /// `intra`: random 80/20 by beat (the paper's setting); `inter`: DS1 → DS2 (new patients).
    #[arg(long, value_enum, default_value = "intra")]
    split: SplitKind,
    /// Loss function.
    #[arg(long, value_enum, default_value = "focal")]
    loss: LossKind,
    #[command(flatten)]
    #[serde(flatten)]
    focal: FocalArgs,
    #[command(flatten)]
    #[serde(flatten)]
    run: RunArgs,
    /// Scale both folds' α per class by inverse class frequency (normalised to mean 1).
    #[arg(long)]
    class_alpha: bool,
    /// Augment minority classes of the training part up to this many beats each (0: off).
    #[arg(long, default_value_t = 0)]
    augment: usize,
    /// Dropout rate on the conv features where they enter Dense_1 (Dropout_6), instead of the
    /// preset's 0.1 there: with `paper-rr`/`tiny-rr`, a higher rate makes the network lean on the
    /// rhythm features.
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    shape_dropout: Option<f32>,
    /// What each beat is measured against: `none` (the beat as cut, the paper's input) or
    /// `record-median` (the beat minus its record's median beat: per-patient normalisation of the
    /// shape, for new patients). The checkpoint records it; evaluate and predict apply it. Needs
    /// records (--data-dir), not --train-csv.
    #[arg(long, value_enum, default_value = "none")]
    #[serde(skip_serializing_if = "crate::is_default")]
    beat_reference: BeatReference,
    /// Add a rhythm head of this width (0: none): `Dense–ReLU–Dense` on the R–R features alone,
    /// its logits added to the network's, so that the rhythm has a path to the output that the
    /// shape features cannot crowd out (dual-stream presets only).
    #[arg(long, default_value_t = 0)]
    #[serde(skip_serializing_if = "crate::is_default")]
    rhythm_head: usize,
    /// For this fraction of the training N and S beats (seeded), add a copy with its record's
    /// median beat as its shape and its own R–R features and label: in the copies only the
    /// rhythm tells S from N (dual-stream presets only; 0: off). On its own it did not raise S
    /// on new patients (results/tiny-mitdb-inter-relative-rhythm-head).
    #[arg(long, default_value_t = 0.0)]
    #[serde(skip_serializing_if = "crate::is_default")]
    rhythm_copies: f64,
    /// After training, choose per-class offsets for S, V and F that maximise the validation
    /// beats' mean F1 (held-out patients with --split inter) and write them into best.safetensors:
    /// evaluate and predict then decide with them. A network may rank a rare class's beats well
    /// and still call them too rarely. metrics.json keeps the test figures without them too.
    #[arg(long)]
    #[serde(skip_serializing_if = "crate::is_default")]
    calibrate: bool,
    /// Train on beats from a CSV in the common layout (187 samples + label per row, e.g. Kaggle's
    /// mitbih_train.csv) instead of WFDB records; 10 % of it (stratified) becomes validation.
    #[arg(long, requires = "test_csv", conflicts_with = "data_dir")]
    train_csv: Option<PathBuf>,
    /// Test beats from a CSV in the same layout (e.g. mitbih_test.csv); needs --train-csv.
    #[arg(long, requires = "train_csv")]
    test_csv: Option<PathBuf>,
}

/// Training beats re-scored in evaluation mode after each epoch for the training-accuracy curve.
const TRAIN_PROBE: usize = 4096;

/// Flags that may change when a run is resumed; every other one must match config.json.
const RESUMABLE_CHANGES: [&str; 7] = [
    "epochs", "lr", "patience", "device", "kernels", "resume", "out",
];

#[derive(Serialize, serde::Deserialize)]
struct EpochRecord {
    epoch: usize,
    train_loss: f64,
    /// Accuracy on a fixed subset of the training beats in evaluation mode (no dropout).
    #[serde(default)]
    train_accuracy: Option<f64>,
    val_loss: f64,
    val_accuracy: f64,
    val_macro_f1: f64,
    seconds: f64,
    train_beats_per_s: f64,
}

#[derive(Serialize)]
struct RunConfig<'a> {
    args: &'a TrainArgs,
    data_dir: String,
    mode: String,
    lead: String,
    model: &'a ModelConfig,
    loss: &'a LossConfig,
    adam: &'a AdamConfig,
    device: String,
    class_counts: BTreeMap<&'a str, Vec<usize>>,
    /// How validation beats were chosen (a run that chose them otherwise cannot be resumed).
    validation: &'static str,
}

fn loss_config(args: &TrainArgs, train: &Beats, classes: usize) -> LossConfig {
    if args.loss == LossKind::Ce {
        return LossConfig::cross_entropy(classes);
    }
    args.focal
        .config(&train.class_counts(classes), args.class_alpha)
}

/// The two-fold focal loss's flags, shared by `train` and `transfer`.
#[derive(clap::Args, Serialize)]
pub(super) struct FocalArgs {
    /// α of the first focal fold (all classes, unless scaled per class by inverse frequency).
    #[arg(long, default_value_t = 0.25)]
    alpha1: f32,
    /// γm, focusing parameter of the first fold.
    #[arg(long, default_value_t = 2.0)]
    gamma_m: f32,
    /// α of the second focal fold.
    #[arg(long, default_value_t = 0.25)]
    alpha2: f32,
    /// γn, focusing parameter of the second fold.
    #[arg(long, default_value_t = 0.5)]
    gamma_n: f32,
}

impl FocalArgs {
    /// `FL(α1, γm) + FL(α2, γn)`; with `class_alpha`, each class's α is scaled by its inverse
    /// frequency in `counts` (normalised to mean 1 over the classes present).
    pub(super) fn config(&self, counts: &[usize], class_alpha: bool) -> LossConfig {
        let weights: Vec<f32> = if class_alpha {
            let inv: Vec<f64> = counts
                .iter()
                .map(|&c| if c == 0 { 0.0 } else { 1.0 / c as f64 })
                .collect();
            let mean =
                inv.iter().sum::<f64>() / inv.iter().filter(|&&v| v > 0.0).count().max(1) as f64;
            inv.iter().map(|v| (v / mean) as f32).collect()
        } else {
            vec![1.0; counts.len()]
        };
        LossConfig::two_fold(
            weights.iter().map(|w| w * self.alpha1).collect(),
            self.gamma_m,
            weights.iter().map(|w| w * self.alpha2).collect(),
            self.gamma_n,
        )
    }
}

fn evaluate(
    trainer: &mut Trainer,
    beats: &Beats,
    loss: &LossConfig,
    names: &[&str],
) -> Result<(f64, Report)> {
    let probs = probabilities(trainer, beats)?;
    Ok(score(&trainer.model.config, beats, &probs, loss, names))
}

/// Class probabilities of `beats` in evaluation mode.
fn probabilities(trainer: &mut Trainer, beats: &Beats) -> Result<Vec<f32>> {
    let rows = trainer.model.config.input_rows(beats);
    trainer.predict_many(&rows, 1024)
}

/// Mean loss and the report of `config`'s decisions on `beats`, whose probabilities are `probs`.
fn score(
    config: &ModelConfig,
    beats: &Beats,
    probs: &[f32],
    loss: &LossConfig,
    names: &[&str],
) -> (f64, Report) {
    let predicted = config.decide(probs);
    let report = Confusion::new(&beats.labels, &predicted, config.classes).report(names);
    (loss::mean_from_probs(loss, probs, &beats.labels), report)
}

/// `--calibrate`: decision offsets for S, V and F chosen on the validation beats (held-out
/// patients with `--split inter`) for the best checkpoint, which is rewritten with them.
fn calibrate(trainer: &mut Trainer, ctx: &GpuContext, val: &Beats, best: &Path) -> Result<()> {
    let probs = probabilities(trainer, val)?;
    let config = &trainer.model.config;
    let tuned = [AamiClass::S, AamiClass::V, AamiClass::F].map(|c| c.label() as usize);
    let offsets = metrics::choose_offsets(&probs, &val.labels, config.classes, &tuned);
    let f1 = |offsets: &[f32]| {
        let predicted = metrics::decide(&probs, config.classes, offsets);
        Confusion::new(&val.labels, &predicted, config.classes)
            .report(&CLASS_NAMES)
            .macro_f1
    };
    println!(
        "decision offsets chosen on the validation beats: {} (validation macro-F1 {:.3} → {:.3})",
        CLASS_NAMES
            .iter()
            .zip(&offsets)
            .map(|(n, o)| format!("{n} {o:+.2}"))
            .collect::<Vec<_>>()
            .join(", "),
        f1(&[]),
        f1(&offsets)
    );
    let (_, meta) = checkpoint::load(best)?;
    let epoch = meta
        .get("epoch")
        .and_then(|e| e.parse().ok())
        .ok_or_else(|| Error::data(best, "epoch", "missing from the metadata"))?;
    trainer.model.config.decision_offsets = offsets;
    trainer.model.save(ctx, best, epoch)
}

/// The flags of a training run shared by `train` and `transfer`.
#[derive(clap::Args, Serialize)]
pub(super) struct RunArgs {
    /// Passes over the training beats.
    #[arg(long, default_value_t = 25)]
    pub epochs: usize,
    /// Beats per training step. The paper trained with Keras and names no batch size, so Keras's
    /// default, 32; it is also the fastest per beat on lavapipe (cache-sized working set).
    #[arg(long, default_value_t = 32)]
    pub batch: usize,
    /// Adam learning rate (the paper's 1e-4; for `transfer`, the new head's).
    #[arg(long, default_value_t = 1e-4)]
    pub lr: f32,
    /// Seed for initialisation, splits, shuffling, augmentation and dropout.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Stop early when validation macro-F1 has not improved for this many epochs (0: never).
    #[arg(long, default_value_t = 0)]
    pub patience: usize,
    /// Continue the run in --out from its last completed epoch (parameters, Adam moments and step
    /// count from resume.safetensors), up to --epochs in all. Every other flag must match the
    /// run's config.json, except --lr, --patience, --device and --out.
    #[arg(long)]
    pub resume: bool,
    /// Adapter selector (see `ecgwgpu devices`); defaults to $ECGWGPU_DEVICE, then the fastest.
    #[arg(long)]
    pub device: Option<String>,
    /// Kernel variant: `cpu` (register blocks, for software Vulkan such as lavapipe), `gpu` (the
    /// mix that measured fastest on a real GPU: split reductions, tiled input gradient) or
    /// `tiled` (workgroup-memory tiles throughout). Default: from the adapter type, or
    /// $ECGWGPU_KERNELS.
    #[arg(long, value_parser = crate::gpu::Kernels::parse_arg)]
    pub kernels: Option<crate::gpu::Kernels>,
    /// Run directory (config.json, history.csv/json, best/last.safetensors, resume.safetensors,
    /// metrics.json, figures/). Default: under runs/, named after the settings.
    #[arg(long)]
    pub out: Option<PathBuf>,
}

impl RunArgs {
    pub(super) fn schedule<'a>(&self, out: &'a Path) -> Schedule<'a> {
        Schedule {
            out,
            epochs: self.epochs,
            batch: self.batch,
            seed: self.seed,
            patience: self.patience,
            resume: self.resume,
        }
    }
}

/// How long and how to train, and where the run directory is.
pub(super) struct Schedule<'a> {
    pub out: &'a Path,
    pub epochs: usize,
    pub batch: usize,
    pub seed: u64,
    pub patience: usize,
    pub resume: bool,
}

/// The training loop shared by `train` and `transfer`: epochs of shuffled batches with a progress
/// bar, validation after each (best = highest macro-F1), history, `last`/`best` checkpoints and the
/// resume state written atomically, early stopping, `--resume`. `run_config` is what config.json
/// holds: checked against the existing one on resume, then (re)written. Returns with the
/// best-validation parameters loaded, ready for the test.
pub(super) fn fit(
    trainer: &mut Trainer,
    train: &Beats,
    val: &Beats,
    loss: &LossConfig,
    names: &[&str],
    schedule: &Schedule,
    run_config: &serde_json::Value,
) -> Result<()> {
    let out = schedule.out;
    let ctx = trainer.ctx();
    let mut history: Vec<EpochRecord> = vec![];
    let mut progress = Progress {
        epoch: 0,
        best_f1: -1.0,
        epochs_since_best: 0,
    };
    if schedule.resume {
        check_same_run(&out.join("config.json"), run_config)?;
        progress = load_resume_state(trainer, ctx, &out.join("resume.safetensors"))?;
        history = read_history(&out.join("history.json"))?;
        history.truncate(progress.epoch);
        println!(
            "resuming {} after epoch {} (optimiser step {})",
            out.display(),
            progress.epoch,
            trainer.steps()
        );
    }
    write_json(&out.join("config.json"), run_config)?;
    let (mut xb, mut yb) = (
        Vec::with_capacity(schedule.batch * trainer.model.config.row_len()),
        Vec::with_capacity(schedule.batch),
    );
    // The GPU-resident loop when the split fits one storage binding, else uploaded batches.
    let config = trainer.model.config.clone();
    let rows = config.input_rows(train);
    let row_len = config.row_len();
    let resident = match trainer.upload_training_data(&rows, &train.labels) {
        Ok(()) => true,
        Err(Error::Gpu(reason)) => {
            println!("note: {reason}; training steps upload their batches instead");
            false
        }
        Err(e) => return Err(e),
    };
    let probe_order = epoch_order(train.len(), schedule.seed, 0);
    let train_probe = train.select(&probe_order[..train.len().min(TRAIN_PROBE)]);
    for epoch in progress.epoch + 1..=schedule.epochs {
        if schedule.patience > 0 && progress.epochs_since_best >= schedule.patience {
            println!(
                "early stop: validation macro-F1 has not improved for {} epochs",
                schedule.patience
            );
            break;
        }
        let order = epoch_order(train.len(), schedule.seed, epoch);
        let bar = ProgressBar::new(train.len() as u64)
            .with_prefix(format!("epoch {epoch}/{}", schedule.epochs));
        bar.set_style(
            ProgressStyle::with_template(
                "{prefix} [{bar:30}] {pos}/{len} beats {per_sec} eta {eta} loss {msg}",
            )
            .expect("valid template")
            .progress_chars("=> "),
        );
        // the bar draws only on a terminal; a log gets a line every 10 % of the epoch
        let mut lines = (!std::io::stderr().is_terminal())
            .then(|| super::ProgressLines::new("training", "beats", 0.1));
        let total = order.len();
        let start = Instant::now();
        let stopped = |e: Error| match e {
            Error::NonFinite { .. } => Error::Config(format!(
                "training stopped at epoch {epoch}: {e}; the last good checkpoint is {}",
                out.join("last.safetensors").display()
            )),
            other => other,
        };
        let mean = |losses: &[f32]| {
            losses.iter().map(|&l| f64::from(l)).sum::<f64>() / losses.len().max(1) as f64
        };
        let losses = if resident {
            trainer
                .train_epoch(&order, schedule.batch, |beats, losses| {
                    bar.set_position(beats as u64);
                    if let Some(lines) = lines.as_mut() {
                        lines.update(beats, total);
                    }
                    bar.set_message(format!("{:.4}", mean(losses)));
                })
                .map_err(stopped)?
        } else {
            let mut losses = Vec::with_capacity(order.len().div_ceil(schedule.batch));
            for chunk in order.chunks(schedule.batch) {
                xb.clear();
                yb.clear();
                for &i in chunk {
                    xb.extend_from_slice(&rows[i * row_len..(i + 1) * row_len]);
                    yb.push(train.labels[i]);
                }
                losses.push(trainer.step(&xb, &yb).map_err(stopped)?);
                bar.inc(chunk.len() as u64);
                if let Some(lines) = lines.as_mut() {
                    lines.update(bar.position() as usize, total);
                }
                bar.set_message(format!("{:.4}", mean(&losses)));
            }
            losses
        };
        let sum: f64 = losses.iter().map(|&l| f64::from(l)).sum();
        let steps = losses.len();
        bar.finish_and_clear();
        let train_seconds = start.elapsed().as_secs_f64();
        let (val_loss, report) = evaluate(trainer, val, loss, names)?;
        let (_, train_report) = evaluate(trainer, &train_probe, loss, names)?;
        let record = EpochRecord {
            epoch,
            train_loss: sum / steps as f64,
            train_accuracy: Some(train_report.accuracy),
            val_loss,
            val_accuracy: report.accuracy,
            val_macro_f1: report.macro_f1,
            seconds: start.elapsed().as_secs_f64(),
            train_beats_per_s: train.len() as f64 / train_seconds,
        };
        println!(
            "epoch {epoch:>3}: train loss {:.4} acc {:.4}  val loss {:.4} acc {:.4} macro-F1 {:.3}  ({:.0} beats/s)",
            record.train_loss, train_report.accuracy, record.val_loss, record.val_accuracy, record.val_macro_f1, record.train_beats_per_s
        );
        trainer
            .model
            .save(ctx, &out.join("last.safetensors"), epoch)?;
        progress.epoch = epoch;
        if report.macro_f1 > progress.best_f1 {
            progress.best_f1 = report.macro_f1;
            progress.epochs_since_best = 0;
            trainer
                .model
                .save(ctx, &out.join("best.safetensors"), epoch)?;
        } else {
            progress.epochs_since_best += 1;
        }
        history.push(record);
        write_json(&out.join("history.json"), &history)?;
        let mut csv = String::from(
            "epoch,train_loss,train_accuracy,val_loss,val_accuracy,val_macro_f1,seconds,train_beats_per_s\n",
        );
        for h in &history {
            csv += &format!(
                "{},{},{},{},{},{},{},{}\n",
                h.epoch,
                h.train_loss,
                h.train_accuracy.map_or(String::new(), |a| a.to_string()),
                h.val_loss,
                h.val_accuracy,
                h.val_macro_f1,
                h.seconds,
                h.train_beats_per_s
            );
        }
        write_atomic(&out.join("history.csv"), csv.as_bytes())?;
        save_resume_state(trainer, ctx, &out.join("resume.safetensors"), &progress)?;
    }

    trainer
        .model
        .load_params(ctx, &out.join("best.safetensors"))
}

/// Where a run stands after an epoch; with the parameters and Adam's moments it is everything
/// needed to continue exactly (the shuffle of each epoch is derived from the seed and epoch).
struct Progress {
    epoch: usize,
    best_f1: f64,
    epochs_since_best: usize,
}

const ADAM_M: &str = "adam.m";
const ADAM_V: &str = "adam.v";

/// Writes `resume.safetensors`: parameters, Adam moments and [`Progress`], in one atomic file so
/// a crash leaves either the previous epoch's state or this one's, never a mix.
fn save_resume_state(
    trainer: &Trainer,
    ctx: &GpuContext,
    path: &Path,
    progress: &Progress,
) -> Result<()> {
    let mut tensors = trainer.model.params.download_named(ctx)?;
    let (m, v) = trainer.optimizer_state()?;
    for (name, data) in [(ADAM_M, m), (ADAM_V, v)] {
        tensors.push(NamedTensor {
            name: name.into(),
            shape: vec![data.len()],
            data,
        });
    }
    let meta = BTreeMap::from([
        ("epoch".to_string(), progress.epoch.to_string()),
        ("steps".to_string(), trainer.steps().to_string()),
        ("best_macro_f1".to_string(), progress.best_f1.to_string()),
        (
            "epochs_since_best".to_string(),
            progress.epochs_since_best.to_string(),
        ),
    ]);
    checkpoint::save(path, &tensors, &meta)
}

/// Loads `resume.safetensors` into the trainer and returns where the run stood.
fn load_resume_state(trainer: &mut Trainer, ctx: &GpuContext, path: &Path) -> Result<Progress> {
    let (mut tensors, meta) = checkpoint::load(path)?;
    let mut take = |name: &str| -> Result<Vec<f32>> {
        let i = tensors
            .iter()
            .position(|t| t.name == name)
            .ok_or_else(|| Error::data(path, name, "tensor missing from the resume state"))?;
        Ok(tensors.remove(i).data)
    };
    let (m, v) = (take(ADAM_M)?, take(ADAM_V)?);
    let field = |key: &str| -> Result<&str> {
        meta.get(key)
            .map(String::as_str)
            .ok_or_else(|| Error::data(path, key, "metadata field missing"))
    };
    let number = |key: &str| -> Result<f64> {
        field(key)?
            .parse()
            .map_err(|_| Error::data(path, key, format!("not a number: {:?}", field(key))))
    };
    trainer.model.params.upload_named(ctx, tensors, path)?;
    trainer.restore_optimizer(&m, &v, number("steps")? as u32)?;
    Ok(Progress {
        epoch: number("epoch")? as usize,
        best_f1: number("best_macro_f1")?,
        epochs_since_best: number("epochs_since_best")? as usize,
    })
}

/// The order of the training beats in `epoch`: a fresh seeded shuffle per epoch, so a resumed
/// run sees the same batches as an uninterrupted one.
fn epoch_order(n: usize, seed: u64, epoch: usize) -> Vec<usize> {
    let mut order: Vec<usize> = (0..n).collect();
    Rng::new(seed ^ 0x5EED ^ ((epoch as u64) << 40)).shuffle(&mut order);
    order
}

/// Refuses to resume with different data, model or recipe than the run in `path` was started with.
fn check_same_run(path: &Path, now: &serde_json::Value) -> Result<()> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    let before: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| Error::data(path, "JSON", e.to_string()))?;
    let comparable = |v: &serde_json::Value| {
        let mut v = v.clone();
        if let Some(o) = v.as_object_mut() {
            o.remove("device");
            o.remove("adam");
        }
        if let Some(a) = v.get_mut("args").and_then(|a| a.as_object_mut()) {
            for key in RESUMABLE_CHANGES {
                a.remove(key);
            }
        }
        v
    };
    let (before, now) = (comparable(&before), comparable(now));
    if before == now {
        return Ok(());
    }
    let differing: Vec<String> = now
        .as_object()
        .into_iter()
        .flatten()
        .flat_map(|(k, v)| match (v.as_object(), before.get(k)) {
            (Some(o), Some(b)) => o
                .iter()
                .filter(|(kk, vv)| b.get(kk.as_str()) != Some(vv))
                .map(|(kk, vv)| {
                    format!(
                        "{k}.{kk} = {vv} (was {})",
                        b.get(kk.as_str()).unwrap_or(&serde_json::Value::Null)
                    )
                })
                .collect::<Vec<_>>(),
            (_, b) if b != Some(v) => vec![format!("{k} = {v}")],
            _ => vec![],
        })
        .collect();
    Err(Error::Config(format!(
        "--resume: this run differs from the one in {}: {}",
        path.display(),
        differing.join("; ")
    )))
}

fn read_history(path: &Path) -> Result<Vec<EpochRecord>> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    serde_json::from_str(&text).map_err(|e| Error::data(path, "JSON", e.to_string()))
}

pub(super) fn write_json(path: &Path, value: &impl Serialize) -> Result<()> {
    write_atomic(
        path,
        serde_json::to_string_pretty(value)
            .expect("serialisable")
            .as_bytes(),
    )
}

pub fn run(args: TrainArgs) -> Result<()> {
    if args.run.batch == 0 || args.run.epochs == 0 {
        return Err(Error::Config(
            "--batch and --epochs must be at least 1".into(),
        ));
    }
    let config = ModelConfig {
        shape_dropout: args.shape_dropout,
        beat_reference: args.beat_reference,
        rhythm_head: args.rhythm_head,
        ..ModelConfig::preset(&args.preset)?
    };
    config.validate()?;
    if !(0.0..=1.0).contains(&args.rhythm_copies) {
        return Err(Error::Config(format!(
            "--rhythm-copies {} must be in [0, 1]",
            args.rhythm_copies
        )));
    }
    if args.rhythm_copies > 0.0 && config.rr_features == 0 {
        return Err(Error::Config(format!(
            "--rhythm-copies teaches the rhythm stream, which preset '{}' does not have \
             (use a dual-stream preset: paper-rr, tiny-rr)",
            args.preset
        )));
    }
    let classes = config.classes;
    let (data_dir, original, val, test) = match (&args.train_csv, &args.test_csv) {
        (Some(train_csv), Some(test_csv)) => {
            let mut pool = csv::read(train_csv)?;
            let mut test = csv::read(test_csv)?;
            config.beat_reference.apply(&mut pool)?;
            config.beat_reference.apply(&mut test)?;
            let split = splits::split(&pool, SplitKind::Intra, 0.0, 0.1, args.run.seed);
            (
                train_csv.clone(),
                pool.select(&split.train),
                pool.select(&split.val),
                test,
            )
        }
        _ => {
            let data_dir = args.source.dir();
            let mut ds = load_dir(&data_dir, &args.source.options())?;
            super::report_load(&ds);
            // before splitting and augmenting: the median is over each record's own beats
            config.beat_reference.apply(&mut ds.beats)?;
            let split = splits::split(&ds.beats, args.split, 0.2, 0.1, args.run.seed);
            let parts = (
                ds.beats.select(&split.train),
                ds.beats.select(&split.val),
                ds.beats.select(&split.test),
            );
            (data_dir, parts.0, parts.1, parts.2)
        }
    };
    let labels = original
        .labels
        .iter()
        .chain(&val.labels)
        .chain(&test.labels);
    if let Some((index, &label)) = labels.enumerate().find(|(_, &l)| l as usize >= classes) {
        return Err(Error::Label {
            label,
            index,
            classes,
        });
    }
    let with_copies;
    let shaped = match args.rhythm_copies {
        0.0 => &original,
        f => {
            let (n, s) = (AamiClass::N.label(), AamiClass::S.label());
            with_copies = augment::median_shape_copies(&original, &[n, s], f, args.run.seed);
            &with_copies
        }
    };
    let train = if args.augment > 0 {
        augment::balance(shaped, args.augment, classes, args.run.seed)
    } else {
        shaped.clone()
    };
    if train.is_empty() || val.is_empty() || test.is_empty() {
        return Err(Error::Config(format!(
            "{:?} split of {} gives {} train, {} validation, {} test beats: all must be non-empty",
            args.split,
            data_dir.display(),
            train.len(),
            val.len(),
            test.len()
        )));
    }

    let ctx = GpuContext::new(args.run.device.as_deref())?.with_kernels(args.run.kernels);
    let loss_config = loss_config(&args, &original, classes);
    let adam = AdamConfig {
        lr: args.run.lr,
        ..Default::default()
    };
    let model = Model::new(&ctx, config.clone(), args.run.seed)?;
    let mut trainer = Trainer::new(&ctx, model, loss_config.clone(), adam.clone())?;
    let loss_name = match args.loss {
        LossKind::Focal => "focal",
        LossKind::Ce => "ce",
    };
    let out = args.run.out.clone().unwrap_or_else(|| {
        PathBuf::from("runs").join(
            format!(
                "{}-{:?}-{loss_name}-seed{}",
                args.preset, args.split, args.run.seed
            )
            .to_lowercase(),
        )
    });
    std::fs::create_dir_all(&out).map_err(|e| Error::io(&out, e))?;
    let mut counts = BTreeMap::new();
    counts.insert("train_before_augmentation", original.class_counts(classes));
    counts.insert("train", train.class_counts(classes));
    counts.insert("validation", val.class_counts(classes));
    counts.insert("test", test.class_counts(classes));
    let run_config = serde_json::to_value(RunConfig {
        args: &args,
        data_dir: data_dir.display().to_string(),
        mode: format!("{:?}", args.source.mode()),
        lead: args.source.lead().to_string(),
        model: &config,
        loss: &loss_config,
        adam: &adam,
        device: ctx.describe(),
        class_counts: counts,
        validation: match (&args.train_csv, &args.test_csv, args.split) {
            (Some(_), Some(_), _) | (_, _, SplitKind::Intra) => {
                "10 % of the training beats, stratified by class"
            }
            (_, _, SplitKind::Inter) => {
                "whole DS1 records held out (10 % of DS1's beats and of each class's with 100 or more, within 20 %), each class keeping half in training"
            }
        },
    })
    .expect("serialisable");
    println!(
        "{} on {}: {} parameters; {} train / {} val / {} test beats ({:?} split); run directory {}",
        args.preset,
        ctx.describe(),
        config.param_count(),
        train.len(),
        val.len(),
        test.len(),
        args.split,
        out.display()
    );

    fit(
        &mut trainer,
        &train,
        &val,
        &loss_config,
        &CLASS_NAMES,
        &args.run.schedule(&out),
        &run_config,
    )?;

    // the offsets change the decisions, not the probabilities: the test beats are scored once
    let probs = probabilities(&mut trainer, &test)?;
    let uncalibrated = match args.calibrate {
        true => {
            let config = &trainer.model.config;
            let (_, before) = score(config, &test, &probs, &loss_config, &CLASS_NAMES);
            calibrate(&mut trainer, &ctx, &val, &out.join("best.safetensors"))?;
            Some(before)
        }
        false => None,
    };
    let (test_loss, report) = score(
        &trainer.model.config,
        &test,
        &probs,
        &loss_config,
        &CLASS_NAMES,
    );
    if let Some(before) = &uncalibrated {
        println!("\ntest without the decision offsets\n{}", before.table());
    }
    println!(
        "\ntest ({:?} split, best validation epoch{}), loss {test_loss:.4}\n{}",
        args.split,
        if args.calibrate {
            ", decision offsets"
        } else {
            ""
        },
        report.table()
    );
    let mut metrics = serde_json::json!({
        "split": args.split,
        "test_beats": test.len(),
        "loss": test_loss,
        "accuracy": report.accuracy,
        "macro_f1": report.macro_f1,
        "weighted_f1": report.weighted_f1,
        "classes": report.classes,
        "confusion": report.confusion,
    });
    if let Some(before) = uncalibrated {
        metrics["decision_offsets"] = serde_json::json!(trainer.model.config.decision_offsets);
        metrics["uncalibrated"] = serde_json::json!({
            "accuracy": before.accuracy,
            "macro_f1": before.macro_f1,
            "classes": before.classes,
            "confusion": before.confusion,
        });
    }
    write_json(&out.join("metrics.json"), &metrics)?;
    for path in super::figures::write_all(&out)? {
        println!("wrote {}", path.display());
    }
    Ok(())
}
