//! `ecgwgpu calibrate`: re-chooses a fold ensemble's decision rule on its out-of-fold
//! predictions of DS1, without retraining, and writes the ensemble with it. Today the rule is
//! the irregular-rhythm gate (an S decision becomes N where the rhythm around the beat is
//! irregular, as in atrial fibrillation); the decision offsets are kept.

use std::path::PathBuf;

use crate::checkpoint;
use crate::error::{Error, Result};
use crate::model::ModelConfig;
use crate::preprocessing::Preprocessing;

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
    let path = &args.checkpoint;
    // the tensors are copied as they are: only the decision rule in the metadata changes
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    let (tensors, mut meta) = checkpoint::decode(&bytes, path)?;
    let mut config = ModelConfig::from_metadata(&meta, path)?;
    let names = Preprocessing::of_checkpoint(&meta, &config, path)?.class_names;
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    let choice =
        super::evaluate::choose_gate(&ctx, path, args.batch, &refs, &config.decision_offsets)?;
    config.irregular_gate = choice.threshold;
    config.write_metadata(&mut meta);
    checkpoint::save(&args.out, &tensors, &meta)?;
    let chosen = super::evaluate::ChosenGate(choice);
    println!("{}", chosen.describe());
    println!("wrote {}", args.out.display());
    Ok(())
}
