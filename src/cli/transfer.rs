//! `ecgwgpu transfer`: the paper's second result. The convolutional feature extractor trained on
//! MIT-BIH arrhythmias gets a new two-class head and is fine-tuned for myocardial infarction vs
//! normal on PTB data (or, without --from, the same network is trained from scratch on PTB alone,
//! for comparison). Evaluated per beat and per record (mean MI probability of its beats).

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Serialize;
use serde_json::json;

use super::train::{fit, write_json, FocalArgs, RunArgs};
use crate::checkpoint::{self, NamedTensor};
use crate::data::beats::{BeatMode, Beats};
use crate::data::csv;
use crate::data::ptb::{self, MiSplit, CLASS_NAMES};
use crate::data::reference::BeatReference;
use crate::data::splits::{self, SplitKind};
use crate::error::{Error, Result};
use crate::gpu::GpuContext;
use crate::metrics::{record_means, BinaryReport};
use crate::model::{init_params, Model, ModelConfig};
use crate::optim::AdamConfig;
use crate::trainer::Trainer;

/// Which layers get a fresh head.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Head {
    /// Replace Dense_2 (the output layer) only; Dense_1 keeps its MIT-BIH weights.
    Dense2,
    /// Replace Dense_1 and Dense_2.
    Dense1,
}

#[derive(clap::Args, Serialize)]
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
    /// Beat extraction, as for MIT-BIH.
    #[arg(long, value_enum, default_value = "kachuee")]
    mode: BeatMode,
    /// `patient`: no patient on two sides (PTB-XL's strat_fold when present); `beat`: random by
    /// beat, as the paper and Kaggle do (optimistic: one patient's beats are nearly identical).
    #[arg(long, value_enum, default_value = "patient")]
    split: MiSplit,
    /// Layers replaced by a freshly initialised two-class head.
    #[arg(long, value_enum, default_value = "dense2")]
    head: Head,
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
    #[serde(flatten)]
    focal: FocalArgs,
    #[command(flatten)]
    #[serde(flatten)]
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
fn load_parts(args: &TransferArgs, reference: BeatReference) -> Result<Parts> {
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
    let dir = args.data_dir.clone().unwrap_or_else(|| {
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("data")
            .join("ptbxl")
    });
    let mut opts = ptb::default_options(args.mode);
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

/// The MIT-BIH checkpoint `--from` names: the tensors to copy and the config they were saved
/// with, read once.
struct Source {
    path: PathBuf,
    tensors: Vec<NamedTensor>,
    config: ModelConfig,
}

impl Source {
    fn read(args: &TransferArgs) -> Result<Option<Self>> {
        let Some(path) = args.from.clone() else {
            return Ok(None);
        };
        let (tensors, meta) = checkpoint::load(&path)?;
        let config = ModelConfig::from_metadata(&meta, &path)?;
        Ok(Some(Self {
            path,
            tensors,
            config,
        }))
    }
}

/// The model to fine-tune: the MIT-BIH checkpoint with a fresh two-class head, or a fresh network.
fn build_model(
    ctx: &GpuContext,
    args: &TransferArgs,
    source: Option<Source>,
) -> Result<(Model, Vec<String>)> {
    let Some(source) = source else {
        let config = ModelConfig {
            classes: 2,
            ..ModelConfig::preset(&args.preset)?
        };
        return Ok((Model::new(ctx, config, args.run.seed)?, vec![]));
    };
    let config = ModelConfig {
        classes: 2,
        ..source.config
    };
    // a rhythm head's output layer gives logits too: it starts afresh with the classifier's
    let fresh_prefixes: &[&str] = match args.head {
        Head::Dense2 => &["dense2.", "rhythm2."],
        Head::Dense1 => &["dense1.", "dense2.", "rhythm1.", "rhythm2."],
    };
    let mut arrays = init_params(&config, args.run.seed);
    let mut kept = vec![];
    for ((name, _), array) in config.param_shapes().iter().zip(arrays.iter_mut()) {
        if fresh_prefixes.iter().any(|p| name.starts_with(p)) {
            continue;
        }
        let t = source
            .tensors
            .iter()
            .find(|t| &t.name == name)
            .ok_or_else(|| Error::data(&source.path, name, "missing from the source checkpoint"))?;
        *array = t.data.clone();
        kept.push(name.clone());
    }
    let model = Model::new(ctx, config, args.run.seed)?;
    model.params.upload(ctx, &arrays)?;
    Ok((model, kept))
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
    let parts = load_parts(&args, reference)?;
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
    let ctx = GpuContext::new(args.run.device.as_deref())?.with_kernels(args.run.kernels);
    let (model, transferred) = build_model(&ctx, &args, source)?;
    let config = model.config.clone();
    let counts = parts.train.class_counts(2);
    let loss = args.focal.config(&counts, true);
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
    std::fs::create_dir_all(&out).map_err(|e| Error::io(&out, e))?;
    let run_config = json!({
        "task": "mi",
        "args": &args,
        "data_dir": parts.source,
        "mode": format!("{:?}", args.mode),
        "lead": args.lead,
        "model": &config,
        "loss": &loss,
        "adam": &adam,
        "device": ctx.describe(),
        "transferred": transferred,
        "class_names": CLASS_NAMES,
        "records": parts.records,
        "class_counts": {
            "train_before_augmentation": counts,
            "train": counts,
            "validation": parts.val.class_counts(2),
            "test": parts.test.class_counts(2),
        },
    });
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
    fit(
        &mut trainer,
        &parts.train,
        &parts.val,
        &loss,
        &CLASS_NAMES,
        &args.run.schedule(&out),
        &run_config,
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
    write_json(
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
