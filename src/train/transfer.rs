//! The paper's second experiment as a library run: the convolutional feature extractor trained
//! on MIT-BIH arrhythmias gets a new two-class head ([`Model::transfer`]) and is fine-tuned for
//! myocardial infarction vs normal on PTB data, or the same network is trained from scratch there
//! for comparison. Scored per beat and per record (mean MI probability of its beats).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::json;

use super::{fit, FitObserver, Schedule};
use crate::checkpoint::{self, NamedTensor};
use crate::data::beats::reference::BeatReference;
use crate::data::beats::{BeatMode, Beats};
use crate::data::corpus::csv;
use crate::data::corpus::ptb::{self, MiSplit, CLASS_NAMES};
use crate::data::corpus::splits::{self, SplitKind};
use crate::error::{Error, Result};
use crate::gpu::GpuContext;
use crate::metrics::{record_means, BinaryReport};
use crate::model::{Model, ModelConfig, NewHead};
use crate::optim::AdamConfig;
use crate::preprocessing::{Preprocessing, Task};
use crate::run::{write_json, BeatModeName, RunConfig, RunSettings};
use crate::trainer::Trainer;

/// An MI run: its settings (config.json's `args`: `from`, `beats_csv`, `feature_lr_scale`,
/// `freeze_features`, the recipe) and where its beats come from.
#[derive(Clone, Debug)]
pub struct TransferRun {
    pub settings: RunSettings,
    /// PTB-XL folder (with ptbxl_database.csv) or PTB Diagnostic folder; unused with
    /// `settings.beats_csv`.
    pub data_dir: PathBuf,
    /// Lead to cut beats from (PTB names it `ii`, PTB-XL `II`).
    pub lead: String,
    /// Beat extraction; `None`: the source network's, else Kachuee's. One that contradicts the
    /// source network's is refused.
    pub mode: Option<BeatMode>,
    pub split: MiSplit,
    /// Layers given a fresh two-class head.
    pub head: NewHead,
}

/// The test figures of an MI run.
#[derive(Clone, Debug)]
pub struct MiOutcome {
    pub test_beats: usize,
    pub beat: BinaryReport,
    /// Per record (mean MI probability of its beats), when records are known.
    pub record: Option<BinaryReport>,
}

/// The PTB beats and their split; records named per beat for the record-level vote.
pub struct Parts {
    source: String,
    train: Beats,
    val: Beats,
    test: Beats,
    records: BTreeMap<&'static str, usize>,
    warnings: Vec<String>,
}

/// `reference`: the beats as the source network was trained on them (see
/// [`ModelConfig::beat_reference`]), applied to whole records before they are split.
fn load_parts(run: &TransferRun, mode: BeatMode, reference: BeatReference) -> Result<Parts> {
    if !run.settings.beats_csv.is_empty() {
        if run.split == MiSplit::Patient {
            return Err(Error::Config(
                "--beats-csv files carry no patient: use --split beat (and read its figures as optimistic)".into(),
            ));
        }
        let mut beats = Beats::default();
        for path in &run.settings.beats_csv {
            beats.extend(&csv::read(path)?);
        }
        reference.apply(&mut beats)?;
        let split = splits::split(&beats, SplitKind::Intra, 0.2, 0.125, run.settings.seed);
        return Ok(Parts {
            source: format!("{:?}", run.settings.beats_csv),
            train: beats.select(&split.train),
            val: beats.select(&split.val),
            test: beats.select(&split.test),
            records: BTreeMap::new(),
            warnings: vec![],
        });
    }
    let dir = run.data_dir.clone();
    let mut opts = ptb::default_options(mode);
    opts.lead = run.lead.clone();
    let mut ds = ptb::load(&dir, &opts)?;
    reference.apply(&mut ds.beats)?;
    let split = ptb::split(&ds, run.split, run.settings.seed);
    let part_records = |idx: &[usize]| {
        idx.iter()
            .map(|&i| ds.beats.record[i].as_str())
            .collect::<std::collections::BTreeSet<_>>()
            .len()
    };
    let records = BTreeMap::from([
        ("train", part_records(&split.train)),
        ("validation", part_records(&split.val)),
        ("test", part_records(&split.test)),
    ]);
    Ok(Parts {
        source: dir.display().to_string(),
        train: ds.beats.select(&split.train),
        val: ds.beats.select(&split.val),
        test: ds.beats.select(&split.test),
        records,
        warnings: ds.warnings,
    })
}

/// The MIT-BIH checkpoint `--from` names: the tensors to copy, the config and preprocessing
/// they were saved with, read once.
struct Source {
    path: PathBuf,
    tensors: Vec<NamedTensor>,
    config: ModelConfig,
    preprocessing: Preprocessing,
}

impl Source {
    fn read(run: &TransferRun) -> Result<Option<Self>> {
        let Some(path) = run.settings.from.clone() else {
            return Ok(None);
        };
        let (tensors, meta) = checkpoint::load(&path)?;
        let config = ModelConfig::from_metadata(&meta, &path)?;
        let preprocessing = Preprocessing::of_checkpoint(&meta, &config, &path)?;
        Ok(Some(Self {
            path,
            tensors,
            config,
            preprocessing,
        }))
    }
}

/// The model to fine-tune: the MIT-BIH checkpoint with a fresh two-class head, or a fresh network.
fn build_model(
    ctx: &GpuContext,
    run: &TransferRun,
    source: Option<&Source>,
) -> Result<(Model, Vec<String>)> {
    let Some(source) = source else {
        let config = ModelConfig {
            classes: 2,
            ..ModelConfig::preset(&run.settings.preset)?
        };
        return Ok((Model::new(ctx, config, run.settings.seed)?, vec![]));
    };
    Model::transfer(
        ctx,
        &source.tensors,
        &source.config,
        &source.path,
        2,
        run.head,
        run.settings.seed,
    )
}

/// Probability of MI per beat.
fn p_mi(trainer: &mut Trainer, beats: &Beats) -> Result<Vec<f64>> {
    let rows = trainer.model.config.input_rows(beats);
    let probs = trainer.predict_many(&rows, 1024)?;
    Ok(probs.chunks(2).map(|p| f64::from(p[1])).collect())
}

/// Fine-tunes (or trains from scratch) for MI vs normal into the run directory `out`, scores the
/// test part with the best-validation parameters and writes `metrics.json`.
pub fn train_mi(
    ctx: &GpuContext,
    run: &TransferRun,
    out: &Path,
    observer: &mut dyn FitObserver,
) -> Result<MiOutcome> {
    let settings = &run.settings;
    if settings.batch == 0 || settings.epochs == 0 {
        return Err(Error::Config(
            "--batch and --epochs must be at least 1".into(),
        ));
    }
    let source = Source::read(run)?;
    let reference = source
        .as_ref()
        .map_or(BeatReference::None, |s| s.config.beat_reference);
    let mode = match (&source, run.mode) {
        (Some(s), Some(m)) if m != s.preprocessing.beat_mode => {
            return Err(Error::Config(format!(
                "--mode {} contradicts {}, whose network was trained on {} beats; leave --mode out",
                m.name(),
                s.path.display(),
                s.preprocessing.beat_mode.name()
            )))
        }
        (Some(s), _) => s.preprocessing.beat_mode,
        (None, m) => m.unwrap_or(BeatMode::Kachuee),
    };
    let parts = load_parts(run, mode, reference)?;
    let warnings: Vec<String> = parts
        .warnings
        .iter()
        .map(|w| format!("warning: {w}"))
        .collect();
    observer.loaded(&warnings);
    if let Some((index, &label)) = parts.train.labels.iter().enumerate().find(|(_, &l)| l > 1) {
        return Err(Error::Label {
            label,
            index,
            classes: 2,
        });
    }
    if parts.train.is_empty() || parts.val.is_empty() || parts.test.is_empty() {
        return Err(Error::Config(format!(
            "{:?} split of {} gives {} train, {} validation, {} test beats: all must be non-empty",
            run.split,
            parts.source,
            parts.train.len(),
            parts.val.len(),
            parts.test.len()
        )));
    }
    let (mut model, transferred) = build_model(ctx, run, source.as_ref())?;
    model.preprocessing = Preprocessing {
        beat_mode: mode,
        lead: run.lead.clone(),
        ..Preprocessing::for_task(Task::Mi, 2)
    };
    let config = model.config.clone();
    let counts = parts.train.class_counts(2);
    let loss = super::loss_config(settings, &counts, true)?;
    let feature_lr_scale = match (&settings.from, settings.freeze_features) {
        (None, _) => 1.0,
        (Some(_), true) => 0.0,
        (Some(_), false) => settings.feature_lr_scale.unwrap_or(0.1),
    };
    let adam = AdamConfig {
        lr: settings.lr,
        feature_lr_scale,
        ..Default::default()
    };
    let mut trainer = Trainer::new(ctx, model, loss.clone(), adam.clone())?;
    let run_config = RunConfig {
        task: Task::Mi,
        args: settings.clone(),
        data_dir: parts.source.clone().into(),
        mode: BeatModeName(mode),
        lead: run.lead.clone(),
        model: config.clone(),
        loss: loss.clone(),
        adam: adam.clone(),
        device: ctx.describe(),
        class_counts: BTreeMap::from([
            ("train_before_augmentation".to_string(), counts.clone()),
            ("train".to_string(), counts.clone()),
            ("validation".to_string(), parts.val.class_counts(2)),
            ("test".to_string(), parts.test.class_counts(2)),
        ]),
        class_names: CLASS_NAMES.iter().map(|s| s.to_string()).collect(),
        validation: None,
        records: Some(
            parts
                .records
                .iter()
                .map(|(k, v)| (k.to_string(), *v))
                .collect(),
        ),
        transferred: Some(transferred.clone()),
    };
    observer.started(
        &run_config,
        out,
        [parts.train.len(), parts.val.len(), parts.test.len()],
    );
    let schedule = Schedule::of(settings, out);
    fit(
        &mut trainer,
        &parts.train,
        None,
        &parts.val,
        &loss,
        &CLASS_NAMES,
        &schedule,
        &run_config,
        observer,
    )?;

    let p = p_mi(&mut trainer, &parts.test)?;
    let beat = BinaryReport::new(&parts.test.labels, &p);
    let record = (!parts.records.is_empty()).then(|| {
        let (labels, means) = record_means(&parts.test.record, &parts.test.labels, &p);
        BinaryReport::new(&labels, &means)
    });
    write_json(
        &out.join("metrics.json"),
        &json!({
            "split": run.split,
            "test_beats": parts.test.len(),
            "beat": beat,
            "record": record,
            "accuracy": beat.accuracy,
            "confusion": beat.confusion,
        }),
    )?;
    Ok(MiOutcome {
        test_beats: parts.test.len(),
        beat,
        record,
    })
}
