//! `ecgwgpu calibrate`: re-chooses a fold ensemble's decision rule on its out-of-fold
//! predictions of DS1, without retraining, and writes the ensemble with it. Today the rule is
//! the irregular-rhythm gate (an S decision becomes N where the rhythm around the beat is
//! irregular, as in atrial fibrillation); the decision offsets are kept.

use std::path::PathBuf;

use crate::error::{Error, Result};
use crate::model::Model;

#[derive(clap::Args)]
pub struct CalibrateArgs {
    /// A `train --folds` ensemble with its run beside it (config.json, metrics.json).
    #[arg(long)]
    checkpoint: PathBuf,
    /// Where to write the ensemble with the chosen gate (written atomically).
    #[arg(long)]
    out: PathBuf,
    /// Beats per inference batch.
    #[arg(long, default_value_t = 1024)]
    batch: usize,
    #[command(flatten)]
    gpu: super::GpuArgs,
}

pub fn run(args: CalibrateArgs) -> Result<()> {
    let ctx = args.gpu.context()?;
    let bytes = std::fs::read(&args.checkpoint).map_err(|e| Error::io(&args.checkpoint, e))?;
    let mut members = Model::members_from_bytes(&ctx, &bytes, &args.checkpoint)?;
    let (names, offsets) = (
        members[0].preprocessing.class_names.clone(),
        members[0].config.decision_offsets.clone(),
    );
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    let choice = super::evaluate::choose_gate(&ctx, &args.checkpoint, args.batch, &refs, &offsets)?;
    for m in &mut members {
        m.config.irregular_gate = choice.threshold;
    }
    Model::save_ensemble(&ctx, &members, &offsets, &args.out)?;
    let tried: Vec<String> = choice
        .macro_f1_by_threshold
        .iter()
        .map(|(t, f)| format!("{t} → {f:.3}"))
        .collect();
    println!(
        "out of fold: macro-F1 {:.3} without a gate; by irregularity threshold {}",
        choice.macro_f1_ungated,
        tried.join(", ")
    );
    match choice.threshold {
        Some(t) => println!(
            "wrote {} with the gate at {t} (out-of-fold macro-F1 {:.3})",
            args.out.display(),
            choice.report.macro_f1
        ),
        None => println!(
            "wrote {} without a gate: validation prefers none",
            args.out.display()
        ),
    }
    Ok(())
}
