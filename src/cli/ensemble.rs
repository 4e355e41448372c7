//! `ecgwgpu ensemble`: fold ensembles of several seeds as one, with the decision rule chosen
//! anew on DS1 out of fold ([`crate::train::combine_ensembles`]).

use std::path::PathBuf;

use crate::error::Result;

#[derive(clap::Args)]
pub struct EnsembleArgs {
    /// A `train --folds` ensemble with its run beside it; give two or more (other seeds of one
    /// recipe, trained on the same records).
    #[arg(
        long = "checkpoint",
        value_name = "CHECKPOINT",
        required = true,
        num_args = 1
    )]
    checkpoints: Vec<PathBuf>,
    /// Directory for the combined ensemble: best.safetensors, config.json (the first run's, so
    /// `evaluate` scores DS2), metrics.json (out-of-fold figures, what the rule tried).
    #[arg(long)]
    out: PathBuf,
    /// Beats per inference batch.
    #[arg(long, default_value_t = 1024)]
    batch: usize,
    #[command(flatten)]
    leads: super::OutOfFoldLeads,
    #[command(flatten)]
    gpu: super::GpuArgs,
}

pub fn run(args: EnsembleArgs) -> Result<()> {
    let ctx = args.gpu.context()?;
    let combined = crate::train::combine_ensembles(
        &ctx,
        &args.checkpoints,
        &args.out,
        &args.leads.leads(),
        args.batch,
        super::member_progress,
    )?;
    let c = &combined.choice;
    println!(
        "{} members; out of fold on DS1 (each beat the mean of the members that did not train \
         on its record): accuracy {:.4}, macro-F1 {:.3}, {}, {}",
        combined.folds.len(),
        combined.oof.accuracy,
        combined.oof.macro_f1,
        combined.oof.se_ppv("S"),
        combined.oof.se_ppv("V")
    );
    println!("decision offsets chosen out of fold: {:?}", c.rule.offsets);
    println!("{}", super::evaluate::ChosenGate(c.gate.clone()).describe());
    println!("{}", super::calibrate::describe_clusters(&c.clusters));
    println!("{}", super::calibrate::describe_on_time_v(&c.on_time_v));
    println!("wrote {}", args.out.join("best.safetensors").display());
    Ok(())
}
