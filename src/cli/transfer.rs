//! `ecgwgpu transfer`: the paper's second result. The convolutional feature extractor trained on
//! MIT-BIH arrhythmias gets a new two-class head and is fine-tuned for myocardial infarction vs
//! normal on PTB data (or, without --from, the same network is trained from scratch on PTB alone,
//! for comparison). Evaluated per beat and per record (mean MI probability of its beats). The run
//! is the library's [`crate::train::train_mi`].

use std::path::PathBuf;

use super::train::{Console, FocalArgs, RunArgs};
use crate::data::beats::BeatMode;
use crate::data::corpus::ptb::MiSplit;
use crate::error::Result;
use crate::metrics::BinaryReport;
use crate::model::NewHead;
use crate::run::RunSettings;
use crate::train::TransferRun;

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

pub fn run(args: TransferArgs) -> Result<()> {
    let split = match args.split {
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
        ..args.run.settings(&args.preset, split.into(), &args.focal)
    };
    let kind = match args.from {
        Some(_) => "transfer",
        None => "scratch",
    };
    let out = args.run.out.clone().unwrap_or_else(|| {
        PathBuf::from("runs").join(format!("mi-{kind}-{split}-seed{}", args.run.seed))
    });
    let run = TransferRun {
        settings,
        data_dir: args
            .data_dir
            .clone()
            .unwrap_or_else(|| super::default_data_dir("ptbxl")),
        lead: args.lead.clone(),
        mode: args.mode,
        split: args.split,
        head: args.head,
    };
    let ctx = args.run.gpu.context()?;
    let outcome = crate::train::train_mi(&ctx, &run, &out, &mut Console::default())?;
    println!(
        "\ntest, MI vs NORM ({:?} split, best validation epoch)\n{}\n{}",
        args.split,
        BinaryReport::HEADER,
        outcome.beat.row("beat")
    );
    if let Some(r) = &outcome.record {
        println!("{}", r.row("record"));
    }
    println!(
        "confusion per beat (rows: truth NORM, MI): {:?}",
        outcome.beat.confusion
    );
    for path in super::figures::write_all(&out)? {
        println!("wrote {}", path.display());
    }
    Ok(())
}
