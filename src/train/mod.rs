//! Training a network: the epoch loop with validation, early stopping, best/last/resume
//! checkpoints and history ([`fit`]), and decision offsets chosen on validation beats
//! ([`calibrate`]). Shared by the `train` and `transfer` commands and usable from Rust.
//!
//! A run directory holds what [`fit`] writes: `config.json` ([`RunConfig`]), `history.json` and
//! `history.csv` (one [`EpochRecord`] per epoch), `last.safetensors`, `best.safetensors` (best
//! validation macro-F1) and `resume.safetensors` (parameters, Adam moments and [`Progress`]),
//! each written atomically after every epoch.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use serde::{Deserialize, Serialize};

use crate::checkpoint::{self, NamedTensor};
use crate::data::beats::Beats;
use crate::data::write_atomic;
use crate::error::{Error, Result};
use crate::loss::{self, LossConfig};
use crate::metrics::{self, Confusion, Report};
use crate::model::ModelConfig;
use crate::rng::Rng;
use crate::run::{read_json, write_json, RunConfig, RunSettings};
use crate::trainer::Trainer;

mod combine;
pub mod distil;
mod folds;
mod heartbeat;
mod transfer;
pub use combine::{combine_ensembles, Combined};
pub use folds::{
    choose_other_lead_v_gate, choose_rule, choose_whole_rule, train_folds, FoldsOutcome, RuleChoice,
};
pub use heartbeat::{
    loss_config, model_config, prepare, split_kind, train_heartbeat, Outcome, Prepared, TrainData,
};
pub use transfer::{train_mi, MiOutcome, TransferRun};

/// Training beats re-scored in evaluation mode after each epoch for the training-accuracy curve.
const TRAIN_PROBE: usize = 4096;

/// One epoch of a run's history.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EpochRecord {
    pub epoch: usize,
    pub train_loss: f64,
    /// Accuracy on a fixed subset of the training beats in evaluation mode (no dropout).
    #[serde(default)]
    pub train_accuracy: Option<f64>,
    pub val_loss: f64,
    pub val_accuracy: f64,
    pub val_macro_f1: f64,
    pub seconds: f64,
    pub train_beats_per_s: f64,
}

/// How long and how to train, and where the run directory is.
#[derive(Clone, Debug)]
pub struct Schedule {
    pub out: PathBuf,
    pub epochs: usize,
    pub batch: usize,
    pub seed: u64,
    /// Stop when validation macro-F1 has not improved for this many epochs (0: never).
    pub patience: usize,
    /// Continue the run in `out` from its last completed epoch.
    pub resume: bool,
    /// Draw each epoch's beats class-balanced ([`balanced_order`]) instead of each beat once.
    pub balanced: bool,
}

impl Schedule {
    /// The schedule a run's settings give, into the run directory `out`.
    pub fn of(settings: &RunSettings, out: &Path) -> Self {
        Self {
            out: out.to_path_buf(),
            epochs: settings.epochs,
            batch: settings.batch,
            seed: settings.seed,
            patience: settings.patience,
            resume: settings.resume,
            balanced: settings.balanced_batches,
        }
    }
}

/// What a run reports as it goes; every method has a default that does nothing.
pub trait FitObserver {
    /// Reading a data folder: what it skipped or substituted, one line per cause, and the line
    /// that accounts for every beat annotation.
    fn loaded(&mut self, _report: &[String]) {}
    /// The run starts: its config, directory, and train/validation/test beats.
    fn started(&mut self, _run: &RunConfig, _out: &Path, _beats: [usize; 3]) {}
    /// A resumed run continues after `epoch` (optimiser step `steps`).
    fn resumed(&mut self, _out: &Path, _epoch: usize, _steps: u32) {}
    /// Something the user should know (e.g. the batches are uploaded step by step).
    fn note(&mut self, _text: &str) {}
    /// Epoch `epoch` of `epochs` starts over `beats` training beats.
    fn epoch_started(&mut self, _epoch: usize, _epochs: usize, _beats: usize) {}
    /// `done` training beats of the epoch are done; `mean_loss` so far.
    fn progress(&mut self, _done: usize, _mean_loss: f64) {}
    /// An epoch ended (validation scored, checkpoints written).
    fn epoch_ended(&mut self, _record: &EpochRecord) {}
    /// Training stops early: validation has not improved for `patience` epochs.
    fn early_stop(&mut self, _patience: usize) {}
    /// Asked after every progress report: true stops the run there (an interrupt, a cancel
    /// button) with [`Error::Stopped`]. The epoch under way is dropped; the checkpoints and
    /// resume state of the epochs before stay, so `--resume` continues from them.
    fn stop_requested(&mut self) -> bool {
        false
    }
}

/// An observer that reports nothing.
pub struct Quiet;
impl FitObserver for Quiet {}

/// Where a run stands after an epoch; with the parameters and Adam's moments it is everything
/// needed to continue exactly (the shuffle of each epoch is derived from the seed and epoch).
#[derive(Clone, Debug, PartialEq)]
pub struct Progress {
    pub epoch: usize,
    pub best_f1: f64,
    pub epochs_since_best: usize,
}

/// Class probabilities of `beats` in evaluation mode.
pub fn probabilities(trainer: &mut Trainer, beats: &Beats) -> Result<Vec<f32>> {
    let rows = trainer.model.config.input_rows(beats);
    trainer.predict_many(&rows, 1024)
}

/// Mean loss and the report of `config`'s decisions on `beats`, whose probabilities are `probs`.
pub fn score(
    config: &ModelConfig,
    beats: &Beats,
    probs: &[f32],
    loss: &LossConfig,
    names: &[&str],
) -> (f64, Report) {
    let predicted = config.decide_beats(probs, &beats.rr, &[]);
    let report = Confusion::new(&beats.labels, &predicted, config.classes).report(names);
    (loss::mean_from_probs(loss, probs, &beats.labels), report)
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

/// The training loop: epochs of shuffled batches, validation after each (best = highest
/// macro-F1), history, `last`/`best` checkpoints and the resume state written atomically,
/// early stopping, resuming. `run_config` is what config.json holds: checked against the
/// existing one on resume, then (re)written. Returns with the best-validation parameters loaded,
/// ready for the test. A NaN or infinite loss stops training with an error naming the last good
/// checkpoint. With `targets` (one probability row per training beat), a soft-target loss
/// trains towards them instead of the labels.
#[allow(clippy::too_many_arguments)]
pub fn fit(
    trainer: &mut Trainer,
    train: &Beats,
    targets: Option<&[f32]>,
    val: &Beats,
    loss: &LossConfig,
    names: &[&str],
    schedule: &Schedule,
    run_config: &RunConfig,
    observer: &mut dyn FitObserver,
) -> Result<()> {
    let out = schedule.out.as_path();
    std::fs::create_dir_all(out).map_err(|e| Error::io(out, e))?;
    let ctx = trainer.ctx();
    let mut history: Vec<EpochRecord> = vec![];
    let mut progress = Progress {
        epoch: 0,
        best_f1: -1.0,
        epochs_since_best: 0,
    };
    if schedule.resume {
        let before = RunConfig::read(out)?;
        run_config.check_resumable(&before, &out.join("config.json"))?;
        progress = load_resume_state(trainer, &out.join("resume.safetensors"))?;
        history = read_json(&out.join("history.json"))?;
        history.truncate(progress.epoch);
        observer.resumed(out, progress.epoch, trainer.steps());
    }
    run_config.write(out)?;
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
            observer.note(&format!(
                "{reason}; training steps upload their batches instead"
            ));
            false
        }
        Err(e) => return Err(e),
    };
    if let Some(targets) = targets {
        if !resident {
            return Err(Error::Config(
                "soft targets train on the GPU-resident split, which this device cannot hold"
                    .into(),
            ));
        }
        trainer.upload_training_targets(targets)?;
    }
    let probe_order = epoch_order(train.len(), schedule.seed, 0);
    let train_probe = train.select(&probe_order[..train.len().min(TRAIN_PROBE)]);
    let mean = |losses: &[f32]| {
        losses.iter().map(|&l| f64::from(l)).sum::<f64>() / losses.len().max(1) as f64
    };
    for epoch in progress.epoch + 1..=schedule.epochs {
        if schedule.patience > 0 && progress.epochs_since_best >= schedule.patience {
            observer.early_stop(schedule.patience);
            break;
        }
        let order = match schedule.balanced {
            true => balanced_order(&train.labels, schedule.seed, epoch),
            false => epoch_order(train.len(), schedule.seed, epoch),
        };
        observer.epoch_started(epoch, schedule.epochs, order.len());
        let start = Instant::now();
        let stopped = |e: Error| match e {
            Error::NonFinite { .. } => Error::Config(format!(
                "training stopped at epoch {epoch}: {e}; the last good checkpoint is {}",
                out.join("last.safetensors").display()
            )),
            other => other,
        };
        let asked = || Error::Stopped {
            epoch,
            last_good: match epoch {
                1 => "none: no epoch had finished".into(),
                _ => out.join("last.safetensors").display().to_string(),
            },
        };
        let losses = if resident {
            trainer
                .train_epoch_while(&order, schedule.batch, |beats, losses| {
                    observer.progress(beats, mean(losses));
                    !observer.stop_requested()
                })
                .map_err(stopped)?
                .ok_or_else(asked)?
        } else {
            let mut losses = Vec::with_capacity(order.len().div_ceil(schedule.batch));
            let mut done = 0;
            for chunk in order.chunks(schedule.batch) {
                xb.clear();
                yb.clear();
                for &i in chunk {
                    xb.extend_from_slice(&rows[i * row_len..(i + 1) * row_len]);
                    yb.push(train.labels[i]);
                }
                losses.push(trainer.step(&xb, &yb).map_err(stopped)?);
                done += chunk.len();
                observer.progress(done, mean(&losses));
                if observer.stop_requested() {
                    return Err(asked());
                }
            }
            losses
        };
        let train_seconds = start.elapsed().as_secs_f64();
        let (val_loss, report) = evaluate(trainer, val, loss, names)?;
        let (_, train_report) = evaluate(trainer, &train_probe, loss, names)?;
        let record = EpochRecord {
            epoch,
            train_loss: mean(&losses),
            train_accuracy: Some(train_report.accuracy),
            val_loss,
            val_accuracy: report.accuracy,
            val_macro_f1: report.macro_f1,
            seconds: start.elapsed().as_secs_f64(),
            train_beats_per_s: train.len() as f64 / train_seconds,
        };
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
        observer.epoch_ended(&record);
        history.push(record);
        write_history(out, &history)?;
        save_resume_state(trainer, &out.join("resume.safetensors"), &progress)?;
    }

    trainer
        .model
        .load_params(ctx, &out.join("best.safetensors"))
}

/// Writes `history.json` and `history.csv`.
fn write_history(out: &Path, history: &[EpochRecord]) -> Result<()> {
    write_json(&out.join("history.json"), &history)?;
    let mut csv = String::from(
        "epoch,train_loss,train_accuracy,val_loss,val_accuracy,val_macro_f1,seconds,train_beats_per_s\n",
    );
    for h in history {
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
    write_atomic(&out.join("history.csv"), csv.as_bytes())
}

/// A run's `history.json`.
pub fn read_history(dir: &Path) -> Result<Vec<EpochRecord>> {
    read_json(&dir.join("history.json"))
}

const ADAM_M: &str = "adam.m";
const ADAM_V: &str = "adam.v";

/// Writes `resume.safetensors`: parameters, Adam moments and [`Progress`], in one atomic file so
/// a crash leaves either the previous epoch's state or this one's, never a mix.
fn save_resume_state(trainer: &Trainer, path: &Path, progress: &Progress) -> Result<()> {
    let mut tensors = trainer.model.params.download_named(trainer.ctx())?;
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
fn load_resume_state(trainer: &mut Trainer, path: &Path) -> Result<Progress> {
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
    trainer
        .model
        .params
        .upload_named(trainer.ctx(), tensors, path)?;
    trainer.restore_optimizer(&m, &v, number("steps")? as u32)?;
    Ok(Progress {
        epoch: number("epoch")? as usize,
        best_f1: number("best_macro_f1")?,
        epochs_since_best: number("epochs_since_best")? as usize,
    })
}

/// The order of the training beats in `epoch`: a fresh seeded shuffle per epoch, so a resumed
/// run sees the same batches as an uninterrupted one.
pub fn epoch_order(n: usize, seed: u64, epoch: usize) -> Vec<usize> {
    let mut order: Vec<usize> = (0..n).collect();
    Rng::new(seed ^ 0x5EED ^ ((epoch as u64) << 40)).shuffle(&mut order);
    order
}

/// Classes with fewer training beats than this keep their own frequency in a balanced epoch:
/// repeating a handful of beats thousands of times teaches their noise.
pub const BALANCE_MIN_BEATS: usize = 100;

/// A class-balanced epoch over beats labelled `labels`: as many draws as beats, shared equally
/// among the classes with at least [`BALANCE_MIN_BEATS`] beats (after the rarer classes' own
/// beats, once each); within a class its beats are drawn in seeded shuffles, one after another,
/// so every beat of a class is drawn before any is drawn again. The whole is shuffled.
pub fn balanced_order(labels: &[u32], seed: u64, epoch: usize) -> Vec<usize> {
    let n = labels.len();
    let classes = labels.iter().max().map_or(0, |&m| m as usize + 1);
    let mut members: Vec<Vec<usize>> = vec![vec![]; classes];
    for (i, &l) in labels.iter().enumerate() {
        members[l as usize].push(i);
    }
    let mut rng = Rng::new(seed ^ 0xBA1A ^ ((epoch as u64) << 40));
    let mut order = Vec::with_capacity(n);
    let (big, small): (Vec<usize>, Vec<usize>) = (0..classes)
        .filter(|&c| !members[c].is_empty())
        .partition(|&c| members[c].len() >= BALANCE_MIN_BEATS);
    for &c in &small {
        order.extend_from_slice(&members[c]);
    }
    let share = (n - order.len()) / big.len().max(1);
    for (k, &c) in big.iter().enumerate() {
        // the last class takes the remainder, so the epoch has exactly n draws
        let quota = if k + 1 == big.len() {
            n - order.len()
        } else {
            share
        };
        let mut drawn = 0;
        while drawn < quota {
            let mut pass = members[c].clone();
            rng.shuffle(&mut pass);
            let take = pass.len().min(quota - drawn);
            order.extend_from_slice(&pass[..take]);
            drawn += take;
        }
    }
    rng.shuffle(&mut order);
    order
}

/// Decision offsets for the classes `tuned` chosen on the validation beats `val` (held-out
/// patients with an inter-patient split) by coordinate ascent on their mean F1, set in the
/// trainer's model config and written into the checkpoint `best`. Returns the validation
/// macro-F1 before and after. A network may rank a rare class's beats well and still call them
/// too rarely; the offsets change the decisions, not the probabilities.
pub fn calibrate(
    trainer: &mut Trainer,
    val: &Beats,
    tuned: &[usize],
    names: &[&str],
    best: &Path,
) -> Result<(f64, f64)> {
    let probs = probabilities(trainer, val)?;
    let classes = trainer.model.config.classes;
    let offsets = metrics::choose_offsets(&probs, &val.labels, classes, tuned);
    let f1 = |offsets: &[f32]| {
        let predicted = metrics::decide(&probs, classes, offsets);
        Confusion::new(&val.labels, &predicted, classes)
            .report(names)
            .macro_f1
    };
    let (before, after) = (f1(&[]), f1(&offsets));
    let (_, meta) = checkpoint::load(best)?;
    let epoch = meta
        .get("epoch")
        .and_then(|e| e.parse().ok())
        .ok_or_else(|| Error::data(best, "epoch", "missing from the metadata"))?;
    trainer.model.config.decision_offsets = offsets;
    trainer.model.save(trainer.ctx(), best, epoch)?;
    Ok((before, after))
}
