//! `ecgwgpu transfer`: the paper's second result. The convolutional feature extractor trained on
//! MIT-BIH arrhythmias gets a new two-class head and is fine-tuned for myocardial infarction vs
//! normal on PTB data (or, without --from, the same network is trained from scratch on PTB alone,
//! for comparison). Evaluated per beat and per record (mean MI probability of its beats).

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde_json::json;

use super::train::{Console, FocalArgs, RunArgs};
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
use crate::run::{BeatModeName, RunConfig, RunSettings};
use crate::trainer::Trainer;

#[derive(clap::Args)]
pub struct TransferArgs {
    /// Checkpoint trained on MIT-BIH by `train` (e.g. runs/NAME/best.safetensors). Without it the
    /// same network (--preset) is trained from scratch on the PTB data, for comparison.
    #[arg(long)]
    from: Option<PathBuf>,
    /// Network when training from scratch: `paper` or `tiny`.
    #[arg(long, default_value = "paper")]
    preset: String,
    /// PTB-XL folder (with ptbxl_database.csv) or PTB Diagnostic folder (patientNNN/...).
    /// Default: the embedded PTB-XL subset (30 records).
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Ready-made beats in the common CSV layout instead (187 samples + label, label 1 = MI), e.g.
    /// ptbdb_normal.csv and ptbdb_abnormal.csv; several files allowed. These carry no patient,
    /// so only --split beat is possible.
    #[arg(long, num_args = 1.., conflicts_with = "data_dir")]
    beats_csv: Vec<PathBuf>,
    /// Lead to cut beats from (PTB names it `ii`, PTB-XL `II`; matched case-insensitively).
    #[arg(long, default_value = "II")]
    lead: String,
    /// Beat extraction, as for MIT-BIH. Default: the --from checkpoint's (a different one is
    /// refused), else kachuee.
    #[arg(long, value_enum)]
    mode: Option<BeatMode>,
    /// `patient`: no patient on two sides (PTB-XL's strat_fold when present); `beat`: random by
    /// beat, as the paper and Kaggle do (optimistic: one patient's beats are nearly identical).
    #[arg(long, value_enum, default_value = "patient")]
    split: MiSplit,
    /// Layers replaced by a freshly initialised two-class head.
    #[arg(long, value_enum, default_value = "dense2")]
    head: NewHead,
    /// Keep the transferred convolutional layers fixed (learning rate 0).
    #[arg(long)]
    freeze_features: bool,
    /// Learning-rate multiplier for the transferred convolutional layers (ignored when training
    /// from scratch or with --freeze-features).
    #[arg(long, default_value_t = 0.1)]
    feature_lr_scale: f32,
    /// The focal loss; both folds' α are scaled per class by inverse frequency (NORM/MI
    /// imbalance).
    #[command(flatten)]
    focal: FocalArgs,
    #[command(flatten)]
    run: RunArgs,
}

/// The PTB beats and their split; records named per beat for the record-level vote.
struct Parts {
    source: String,
    train: Beats,
    val: Beats,
    test: Beats,
    records: BTreeMap<&'static str, usize>,
    warnings: Vec<String>,
}

/// `reference`: the beats as the source network was trained on them (see
/// [`ModelConfig::beat_reference`]), applied to whole records before they are split.
fn load_parts(args: &TransferArgs, mode: BeatMode, reference: BeatReference) -> Result<Parts> {
    if !args.beats_csv.is_empty() {
        if args.split == MiSplit::Patient {
            return Err(Error::Config(
                "--beats-csv files carry no patient: use --split beat (and read its figures as optimistic)".into(),
            ));
        }
        let mut beats = Beats::default();
        for path in &args.beats_csv {
            beats.extend(&csv::read(path)?);
        }
        reference.apply(&mut beats)?;
        let split = splits::split(&beats, SplitKind::Intra, 0.2, 0.125, args.run.seed);
        return Ok(Parts {
            source: format!("{:?}", args.beats_csv),
            train: beats.select(&split.train),
            val: beats.select(&split.val),
            test: beats.select(&split.test),
            records: BTreeMap::new(),
            warnings: vec![],
        });
    }
    let dir = args
        .data_dir
        .clone()
        .unwrap_or_else(|| super::default_data_dir("ptbxl"));
    let mut opts = ptb::default_options(mode);
    opts.lead = args.lead.clone();
    let mut ds = ptb::load(&dir, &opts)?;
    reference.apply(&mut ds.beats)?;
    let split = ptb::split(&ds, args.split, args.run.seed);
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
    fn read(args: &TransferArgs) -> Result<Option<Self>> {
        let Some(path) = args.from.clone() else {
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
    args: &TransferArgs,
    source: Option<&Source>,
) -> Result<(Model, Vec<String>)> {
    let Some(source) = source else {
        let config = ModelConfig {
            classes: 2,
            ..ModelConfig::preset(&args.preset)?
        };
        return Ok((Model::new(ctx, config, args.run.seed)?, vec![]));
    };
    Model::transfer(
        ctx,
        &source.tensors,
        &source.config,
        &source.path,
        2,
        args.head,
        args.run.seed,
    )
}

/// Probability of MI per beat.
fn p_mi(trainer: &mut Trainer, beats: &Beats) -> Result<Vec<f64>> {
    let rows = trainer.model.config.input_rows(beats);
    let probs = trainer.predict_many(&rows, 1024)?;
    Ok(probs.chunks(2).map(|p| f64::from(p[1])).collect())
}

pub fn run(args: TransferArgs) -> Result<()> {
    if args.run.batch == 0 || args.run.epochs == 0 {
        return Err(Error::Config(
            "--batch and --epochs must be at least 1".into(),
        ));
    }
    let source = Source::read(&args)?;
    let reference = source
        .as_ref()
        .map_or(BeatReference::None, |s| s.config.beat_reference);
    let mode = match (&source, args.mode) {
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
    let parts = load_parts(&args, mode, reference)?;
    for w in &parts.warnings {
        eprintln!("warning: {w}");
    }
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
            args.split,
            parts.source,
            parts.train.len(),
            parts.val.len(),
            parts.test.len()
        )));
    }
    let ctx = args.run.gpu.context()?;
    let (mut model, transferred) = build_model(&ctx, &args, source.as_ref())?;
    model.preprocessing = Preprocessing {
        beat_mode: mode,
        lead: args.lead.clone(),
        ..Preprocessing::for_task(Task::Mi, 2)
    };
    let config = model.config.clone();
    let counts = parts.train.class_counts(2);
    let loss = crate::train::loss_config(
        &args.run.settings(&args.preset, String::new(), &args.focal),
        &counts,
        true,
    )?;
    let feature_lr_scale = match (&args.from, args.freeze_features) {
        (None, _) => 1.0,
        (Some(_), true) => 0.0,
        (Some(_), false) => args.feature_lr_scale,
    };
    let adam = AdamConfig {
        lr: args.run.lr,
        feature_lr_scale,
        ..Default::default()
    };
    let mut trainer = Trainer::new(&ctx, model, loss.clone(), adam.clone())?;
    let kind = if args.from.is_some() {
        "transfer"
    } else {
        "scratch"
    };
    let out = args.run.out.clone().unwrap_or_else(|| {
        PathBuf::from("runs").join(format!(
            "mi-{kind}-{}-seed{}",
            serde_json::to_value(args.split)
                .ok()
                .and_then(|v| v.as_str().map(str::to_string))
                .unwrap_or_default(),
            args.run.seed
        ))
    });
    let split_name = match args.split {
        MiSplit::Patient => "patient",
        MiSplit::Beat => "beat",
    };
    let settings = RunSettings {
        from: args.from.clone(),
        beats_csv: args.beats_csv.clone(),
        head: Some(
            match args.head {
                NewHead::Dense2 => "dense2",
                NewHead::Dense1 => "dense1",
            }
            .into(),
        ),
        feature_lr_scale: Some(args.feature_lr_scale),
        freeze_features: args.freeze_features,
        ..args
            .run
            .settings(&args.preset, split_name.into(), &args.focal)
    };
    let run_config = RunConfig {
        task: Task::Mi,
        args: settings,
        data_dir: parts.source.clone().into(),
        mode: BeatModeName(mode),
        lead: args.lead.clone(),
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
    println!(
        "{kind} ({}) on {}: {} parameters, {} transferred tensors, feature learning-rate x{feature_lr_scale}; {} train / {} val / {} test beats ({:?} split); run directory {}",
        args.from.as_ref().map_or(args.preset.clone(), |p| p.display().to_string()),
        ctx.describe(),
        config.param_count(),
        transferred.len(),
        parts.train.len(),
        parts.val.len(),
        parts.test.len(),
        args.split,
        out.display()
    );
    crate::train::fit(
        &mut trainer,
        &parts.train,
        &parts.val,
        &loss,
        &CLASS_NAMES,
        &args.run.schedule(&out),
        &run_config,
        &mut Console::default(),
    )?;

    let p = p_mi(&mut trainer, &parts.test)?;
    let beat = BinaryReport::new(&parts.test.labels, &p);
    let record = (!parts.records.is_empty()).then(|| {
        let (labels, means) = record_means(&parts.test.record, &parts.test.labels, &p);
        BinaryReport::new(&labels, &means)
    });
    println!(
        "\ntest, MI vs NORM ({:?} split, best validation epoch)\n{}\n{}",
        args.split,
        BinaryReport::HEADER,
        beat.row("beat")
    );
    if let Some(r) = &record {
        println!("{}", r.row("record"));
    }
    println!(
        "confusion per beat (rows: truth NORM, MI): {:?}",
        beat.confusion
    );
    crate::run::write_json(
        &out.join("metrics.json"),
        &json!({
            "split": args.split,
            "test_beats": parts.test.len(),
            "beat": beat,
            "record": record,
            "accuracy": beat.accuracy,
            "confusion": beat.confusion,
        }),
    )?;
    for path in super::figures::write_all(&out)? {
        println!("wrote {}", path.display());
    }
    Ok(())
}
