//! A heartbeat-class training run end to end, as `ecgwgpu train` runs it: read and reference the
//! beats, split them, add rhythm copies and augmentation to the training part, train with
//! [`fit`](super::fit), calibrate, score the test part and write `metrics.json`.

use std::path::PathBuf;

use serde::Serialize;

use super::{calibrate, fit, probabilities, score, FitObserver, Schedule};
use crate::data::beats::{BeatPositions, Beats};
use crate::data::corpus::dataset::{load_dir, LoadOptions};
use crate::data::corpus::splits::{self, SplitKind};
use crate::data::corpus::{augment, csv};
use crate::data::formats::aami::{AamiClass, CLASS_NAMES};
use crate::error::{Error, Result};
use crate::gpu::GpuContext;
use crate::loss::LossConfig;
use crate::metrics::Report;
use crate::model::{Model, ModelConfig};
use crate::optim::AdamConfig;
use crate::preprocessing::Task;
use crate::run::{write_json, BeatModeName, RunConfig, RunSettings};
use crate::trainer::Trainer;

/// Where a heartbeat run's beats come from.
#[derive(Clone, Debug)]
pub enum TrainData {
    /// A folder of WFDB records and EDF+ files with beat annotations, split by `settings.split`.
    Records { dir: PathBuf, options: LoadOptions },
    /// Beats in the common CSV layout: a training file (10 % of it, stratified, becomes
    /// validation) and a test file.
    Csv { train: PathBuf, test: PathBuf },
}

/// The beats of a run, split and ready.
#[derive(Clone, Debug)]
pub struct Prepared {
    /// The training part before rhythm copies and augmentation.
    pub original: Beats,
    pub train: Beats,
    pub val: Beats,
    pub test: Beats,
    /// The folder or file read.
    pub source: PathBuf,
    /// What loading a folder skipped or substituted (one line per cause), and the line that
    /// accounts for every beat annotation.
    pub load_report: Vec<String>,
}

/// The test figures of a finished run.
#[derive(Clone, Debug, Serialize)]
pub struct Outcome {
    pub test_beats: usize,
    pub test_loss: f64,
    /// With the decision offsets when the run calibrated.
    pub report: Report,
    /// Without them (calibrated runs only).
    pub uncalibrated: Option<Report>,
    /// Validation macro-F1 before and after the offsets (calibrated runs only).
    pub calibration: Option<(f64, f64)>,
    pub decision_offsets: Vec<f32>,
}

/// The two-fold focal loss `FL(α1, γm) + FL(α2, γn)` of `settings`, or cross-entropy; with
/// `class_alpha`, each class's α is scaled by its inverse frequency in `counts` (normalised to
/// mean 1 over the classes present).
pub fn loss_config(
    settings: &RunSettings,
    counts: &[usize],
    class_alpha: bool,
) -> Result<LossConfig> {
    match settings.loss.as_str() {
        "ce" => return Ok(LossConfig::cross_entropy(counts.len())),
        "distil" if settings.teacher.is_some() => {
            return Ok(LossConfig::soft_cross_entropy(counts.len()))
        }
        "distil" => {
            return Err(Error::Config(
                "loss 'distil' learns a fold ensemble's out-of-fold probabilities: \
                 use `ecgwgpu distil --teacher CHECKPOINT`"
                    .into(),
            ))
        }
        "focal" => {}
        other => {
            return Err(Error::Config(format!(
                "loss '{other}': expected focal, ce or distil"
            )))
        }
    }
    let weights: Vec<f32> = if class_alpha {
        let inv: Vec<f64> = counts
            .iter()
            .map(|&c| if c == 0 { 0.0 } else { 1.0 / c as f64 })
            .collect();
        let mean = inv.iter().sum::<f64>() / inv.iter().filter(|&&v| v > 0.0).count().max(1) as f64;
        inv.iter().map(|v| (v / mean) as f32).collect()
    } else {
        vec![1.0; counts.len()]
    };
    Ok(LossConfig::two_fold(
        weights.iter().map(|w| w * settings.alpha1).collect(),
        settings.gamma_m,
        weights.iter().map(|w| w * settings.alpha2).collect(),
        settings.gamma_n,
    ))
}

/// The split a run's settings name (`intra` or `inter`).
pub fn split_kind(settings: &RunSettings) -> Result<SplitKind> {
    match settings.split.as_str() {
        "intra" => Ok(SplitKind::Intra),
        "inter" => Ok(SplitKind::Inter),
        other => Err(Error::Config(format!(
            "split '{other}': expected intra or inter"
        ))),
    }
}

/// The network a run's settings describe: the preset with its options.
pub fn model_config(settings: &RunSettings) -> Result<ModelConfig> {
    let config = ModelConfig {
        shape_dropout: settings.shape_dropout,
        beat_reference: settings.beat_reference,
        rhythm_head: settings.rhythm_head,
        ..ModelConfig::preset(&settings.preset)?
    };
    config.validate()?;
    if settings.batch == 0 || settings.epochs == 0 {
        return Err(Error::Config(
            "--batch and --epochs must be at least 1".into(),
        ));
    }
    if !(0.0..=1.0).contains(&settings.rhythm_copies) {
        return Err(Error::Config(format!(
            "--rhythm-copies {} must be in [0, 1]",
            settings.rhythm_copies
        )));
    }
    if settings.rhythm_copies > 0.0 && config.rr_features == 0 {
        return Err(Error::Config(format!(
            "--rhythm-copies teaches the rhythm stream, which preset '{}' does not have \
             (use a dual-stream preset: paper-rr, tiny-rr)",
            settings.preset
        )));
    }
    Ok(config)
}

/// Reads, references and splits the beats, then adds rhythm copies and augmentation to the
/// training part. The beat reference is applied to whole records, before anything is split.
pub fn prepare(settings: &RunSettings, config: &ModelConfig, data: &TrainData) -> Result<Prepared> {
    let classes = config.classes;
    let seed = settings.seed;
    let split_kind = split_kind(settings)?;
    let (source, original, val, test, load_report) = match data {
        TrainData::Csv { train, test } => {
            let mut pool = csv::read(train)?;
            let mut test_beats = csv::read(test)?;
            config.beat_reference.apply(&mut pool)?;
            config.beat_reference.apply(&mut test_beats)?;
            let split = splits::split(&pool, SplitKind::Intra, 0.0, 0.1, seed);
            let (train_part, val) = (pool.select(&split.train), pool.select(&split.val));
            (train.clone(), train_part, val, test_beats, vec![])
        }
        TrainData::Records { dir, options } => {
            let (beats, report) = read_records(dir, options, config)?;
            let split = splits::split(&beats, split_kind, 0.2, 0.1, seed);
            (
                dir.clone(),
                beats.select(&split.train),
                beats.select(&split.val),
                beats.select(&split.test),
                report,
            )
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
    let train = training_part(settings, &original, classes);
    if train.is_empty() || val.is_empty() || test.is_empty() {
        return Err(Error::Config(format!(
            "{split_kind:?} split of {} gives {} train, {} validation, {} test beats: all must be non-empty",
            source.display(),
            train.len(),
            val.len(),
            test.len()
        )));
    }
    Ok(Prepared {
        original,
        train,
        val,
        test,
        source,
        load_report,
    })
}

/// The beats of the records in `dir` for training, relative to the reference `config` names
/// (applied to whole records), and the load report. Detected beats without a reference beat
/// ([`LoadOptions::detect`]) are left out: they have no class to learn, but they shaped their
/// record's R–R features and median beat, as in use.
pub(super) fn read_records(
    dir: &std::path::Path,
    options: &LoadOptions,
    config: &ModelConfig,
) -> Result<(Beats, Vec<String>)> {
    let mut ds = load_dir(dir, options)?;
    config.beat_reference.apply(&mut ds.beats)?;
    Ok((ds.beats.referenced(), ds.report_lines()))
}

/// The training beats of a run: `original` with the rhythm copies and augmentation `settings`
/// ask for (seeded).
pub(super) fn training_part(settings: &RunSettings, original: &Beats, classes: usize) -> Beats {
    let seed = settings.seed;
    let with_copies;
    let shaped = match settings.rhythm_copies {
        0.0 => original,
        f => {
            let (n, s) = (AamiClass::N.label(), AamiClass::S.label());
            with_copies = augment::median_shape_copies(original, &[n, s], f, seed);
            &with_copies
        }
    };
    match settings.augment {
        0 => shaped.clone(),
        target => augment::balance(shaped, target, classes, seed),
    }
}

/// The config.json of a heartbeat run (or fold) with `settings`, reading records as `options`
/// say: the loss from the training part's class counts before augmentation (`counts`: before
/// augmentation, training, validation, test), Adam at the settings' rate.
pub(super) fn run_config(
    ctx: &GpuContext,
    settings: &RunSettings,
    options: &LoadOptions,
    data_dir: PathBuf,
    config: &ModelConfig,
    counts: [Vec<usize>; 4],
    validation: String,
) -> Result<RunConfig> {
    let loss = loss_config(settings, &counts[0], settings.class_alpha)?;
    let names = ["train_before_augmentation", "train", "validation", "test"];
    Ok(RunConfig {
        task: Task::Heartbeat,
        args: RunSettings {
            fallback_lead: options.fallback_to_first,
            strict: options.strict,
            views: options.views.clone(),
            device_view: options.device_view.is_some(),
            detect: options.detect,
            ..settings.clone()
        },
        data_dir,
        mode: BeatModeName(options.mode),
        // the leads the network was trained on, its own first: the one read by default
        lead: std::iter::once(options.lead.as_str())
            .chain(options.views.iter().map(String::as_str))
            .collect::<Vec<_>>()
            .join(","),
        model: config.clone(),
        loss,
        adam: AdamConfig {
            lr: settings.lr,
            ..Default::default()
        },
        device: ctx.describe(),
        class_counts: names.map(String::from).into_iter().zip(counts).collect(),
        class_names: vec![],
        validation: Some(validation),
        records: None,
        transferred: None,
    })
}

/// A fresh network and its trainer for the run `run` describes: initialised under the run's
/// seed, its preprocessing the run's beat mode and lead.
pub(super) fn new_trainer<'c>(ctx: &'c GpuContext, run: &RunConfig) -> Result<Trainer<'c>> {
    let mut model = Model::new(ctx, run.model.clone(), run.args.seed)?;
    model.preprocessing.beat_mode = run.mode.0;
    model.preprocessing.lead = run.lead.clone();
    model.preprocessing.beat_positions = BeatPositions::trained(run.args.detect);
    Trainer::new(ctx, model, run.loss.clone(), run.adam.clone())
}

/// Trains a heartbeat classifier as `settings` says on `data` into the run directory `out`
/// (created), calibrates it when asked, scores the test part with the best-validation
/// parameters and writes `metrics.json`. `observer` hears of every step (see [`FitObserver`]).
pub fn train_heartbeat(
    ctx: &GpuContext,
    settings: &RunSettings,
    data: &TrainData,
    out: &std::path::Path,
    observer: &mut dyn FitObserver,
) -> Result<Outcome> {
    let config = model_config(settings)?;
    let prepared = prepare(settings, &config, data)?;
    observer.loaded(&prepared.load_report);
    let Prepared {
        original,
        train,
        val,
        test,
        source,
        ..
    } = prepared;
    let classes = config.classes;
    let options = match data {
        TrainData::Records { options, .. } => options.clone(),
        TrainData::Csv { .. } => LoadOptions::default(),
    };
    let counts = [&original, &train, &val, &test].map(|b| b.class_counts(classes));
    let validation = match (data, split_kind(settings)?) {
        (TrainData::Csv { .. }, _) | (_, SplitKind::Intra) => {
            "10 % of the training beats, stratified by class"
        }
        (_, SplitKind::Inter) => {
            "whole DS1 records held out (10 % of DS1's beats and of each class's with 100 or more, within 20 %), each class keeping half in training"
        }
    };
    let run_config = run_config(
        ctx,
        settings,
        &options,
        source,
        &config,
        counts,
        validation.into(),
    )?;
    let loss = run_config.loss.clone();
    let mut trainer = new_trainer(ctx, &run_config)?;
    observer.started(&run_config, out, [train.len(), val.len(), test.len()]);
    let schedule = Schedule::of(settings, out);
    fit(
        &mut trainer,
        &train,
        None,
        &val,
        &loss,
        &CLASS_NAMES,
        &schedule,
        &run_config,
        observer,
    )?;

    // the offsets change the decisions, not the probabilities: the test beats are scored once
    let probs = probabilities(&mut trainer, &test)?;
    let (uncalibrated, calibration) = match settings.calibrate {
        true => {
            let (_, before) = score(&trainer.model.config, &test, &probs, &loss, &CLASS_NAMES);
            let tuned = [AamiClass::S, AamiClass::V, AamiClass::F].map(|c| c.label() as usize);
            let best = out.join("best.safetensors");
            let f1 = calibrate(&mut trainer, &val, &tuned, &CLASS_NAMES, &best)?;
            (Some(before), Some(f1))
        }
        false => (None, None),
    };
    let (test_loss, report) = score(&trainer.model.config, &test, &probs, &loss, &CLASS_NAMES);
    let outcome = Outcome {
        test_beats: test.len(),
        test_loss,
        report,
        uncalibrated,
        calibration,
        decision_offsets: trainer.model.config.decision_offsets.clone(),
    };
    write_metrics(out, &settings.split, &outcome)?;
    Ok(outcome)
}

/// `metrics.json`: the test figures (with the offsets), and without them for calibrated runs.
pub(super) fn write_metrics(
    out: &std::path::Path,
    split: &str,
    o: &Outcome,
) -> Result<serde_json::Value> {
    let r = &o.report;
    let mut metrics = serde_json::json!({
        "split": split,
        "test_beats": o.test_beats,
        "loss": o.test_loss,
        "accuracy": r.accuracy,
        "macro_f1": r.macro_f1,
        "weighted_f1": r.weighted_f1,
        "classes": r.classes,
        "confusion": r.confusion,
    });
    if let Some(before) = &o.uncalibrated {
        metrics["decision_offsets"] = serde_json::json!(o.decision_offsets);
        metrics["uncalibrated"] = serde_json::json!({
            "accuracy": before.accuracy,
            "macro_f1": before.macro_f1,
            "classes": before.classes,
            "confusion": before.confusion,
        });
    }
    write_json(&out.join("metrics.json"), &metrics)?;
    Ok(metrics)
}
