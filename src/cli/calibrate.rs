//! `ecgwgpu calibrate`: re-chooses a fold ensemble's decision rule on its out-of-fold
//! predictions of DS1, without retraining, and writes the ensemble with it: the irregular-rhythm
//! gate (an S decision becomes N where the rhythm around the beat is irregular, as in atrial
//! fibrillation), then the record clusters (each record's probabilities smoothed over its groups
//! of beats), then the on-time V gate for beats read at a lead the network was not trained on
//! (when DS1 is read at one: `--lead`, `--view`). The decision offsets are kept. `train --folds
//! --calibrate` makes the same choice. `--register-annotations` writes where beats are cut
//! instead (a setting measured with `evaluate --out-of-fold --register-annotations`).

use std::path::PathBuf;

use crate::checkpoint;
use crate::data::beats::BeatPositions;
use crate::error::{Error, Result};
use crate::model::ModelConfig;
use crate::preprocessing::Preprocessing;

#[derive(clap::Args)]
pub struct CalibrateArgs {
    /// A `train --folds` ensemble with its run beside it (config.json, metrics.json).
    #[arg(long)]
    checkpoint: PathBuf,
    /// Where to write the ensemble with the chosen rule (written atomically).
    #[arg(long)]
    out: PathBuf,
    /// Beats per inference batch.
    #[arg(long, default_value_t = 1024)]
    batch: usize,
    #[command(flatten)]
    leads: super::OutOfFoldLeads,
    /// Keep the whole rule as it is and choose only the on-time V gate for other leads (DS1's
    /// beats at the network's own lead decide as before; give `--view` or `--lead` so that
    /// some are read at another).
    #[arg(long)]
    only_other_lead_v_gate: bool,
    /// Keep the tensors and the rule and write the checkpoint so that a recording's beat
    /// annotations move to the QRS detector's peaks when they sit more than MS milliseconds
    /// from them (a database that marks its beats at another point of the QRS complex than
    /// MIT-BIH). Choose MS out of fold first (`evaluate --out-of-fold --annotation-shift 40
    /// --register-annotations MS`, and at the other readings).
    #[arg(long, value_name = "MS", conflicts_with = "only_other_lead_v_gate")]
    register_annotations: Option<u32>,
    #[command(flatten)]
    gpu: super::GpuArgs,
}

pub fn run(args: CalibrateArgs) -> Result<()> {
    let path = &args.checkpoint;
    // the tensors are copied as they are: only the decision rule (or, with
    // --register-annotations, the beat positions) in the metadata changes
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    let (tensors, mut meta) = checkpoint::decode(&bytes, path)?;
    let config = ModelConfig::from_metadata(&meta, path)?;
    let mut pre = Preprocessing::of_checkpoint(&meta, &config, path)?;
    if let Some(beyond_ms) = args.register_annotations {
        if pre.beat_positions == BeatPositions::Detector {
            return Err(Error::Config(format!(
                "{}: its networks cut beats at the QRS detector's peaks already; \
                 --register-annotations is for networks cut at the annotations",
                path.display()
            )));
        }
        pre.beat_positions = BeatPositions::Registered { beyond_ms };
        let (key, value) = pre.to_metadata(&config);
        meta.insert(key, value);
        checkpoint::save(&args.out, &tensors, &meta)?;
        println!("beats {}", pre.beat_positions.describe());
        println!("wrote {}", args.out.display());
        return Ok(());
    }
    // only the rule's choice reads DS1 through the networks: the GPU is opened here
    let ctx = args.gpu.context()?;
    let names = pre.class_names;
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    // DS1 read as the networks were trained (through the QRS detector after `train --detect`)
    let leads = match crate::eval::training_run(&config, path)? {
        Some(run) => args.leads.leads().as_trained(&run),
        None => args.leads.leads(),
    };
    eprintln!(
        "decision rule: out-of-fold predictions of DS1 from the fold models{}",
        match leads.describe() {
            d if d.is_empty() => d,
            d => format!(" ({d})"),
        }
    );
    let oof = crate::eval::out_of_fold(&ctx, path, &leads, args.batch, super::member_progress)?
        .referenced();
    if oof.other_lead.is_empty() {
        eprintln!(
            "no DS1 beat is read at a lead the network was not trained on: no on-time V gate \
             (give --view or --lead)"
        );
    }
    if args.only_other_lead_v_gate {
        let mut rule = crate::model::DecisionRule {
            offsets: config.decision_offsets.clone(),
            irregular_gate: config.irregular_gate,
            record_clusters: config.record_clusters,
            other_lead_v_gate: None,
        };
        let choice = crate::train::choose_other_lead_v_gate(
            &oof.beats,
            &oof.probabilities,
            &rule,
            &oof.other_lead,
            &refs,
        );
        rule.other_lead_v_gate = choice.gate;
        rule.save_checkpoint(&tensors, meta, path, &args.out)?;
        println!("{}", describe_on_time_v(&choice));
        println!("wrote {}", args.out.display());
        return Ok(());
    }
    let offsets = config.decision_offsets.clone();
    let choice = crate::train::choose_rule(
        &oof.beats,
        &oof.probabilities,
        offsets,
        &refs,
        &oof.other_lead,
    );
    choice
        .rule
        .save_checkpoint(&tensors, meta, path, &args.out)?;
    println!("{}", super::evaluate::ChosenGate(choice.gate).describe());
    println!("{}", describe_clusters(&choice.clusters));
    println!("{}", describe_on_time_v(&choice.on_time_v));
    println!("wrote {}", args.out.display());
    Ok(())
}

/// The on-time V gate chosen, what was tried and the out-of-fold figures with the whole rule.
pub(super) fn describe_on_time_v(c: &crate::metrics::OnTimeVChoice) -> String {
    let tried: Vec<String> = c
        .macro_f1_by_setting
        .iter()
        .map(|((p, r), f)| format!("{p}/{r} → {f:.4}"))
        .collect();
    format!(
        "on-time V gate for other leads, chosen on DS1 out of fold: {}; macro-F1 {:.4} without, \
         by p_V below/on time from {}; out of fold with the whole rule: accuracy {:.4}, \
         macro-F1 {:.4}, {}, {}",
        c.gate.map_or("none".into(), |g| format!(
            "at another lead, a V decision below p_V {} on a beat at least {} of the local \
                 R–R becomes N",
            g.below_p_v, g.on_time
        )),
        c.macro_f1_without,
        tried.join(", "),
        c.report.accuracy,
        c.report.macro_f1,
        c.report.se_ppv("S"),
        c.report.se_ppv("V")
    )
}

/// The record clusters chosen, what was tried and the out-of-fold figures with them.
pub(super) fn describe_clusters(c: &crate::adapt::clusters::ClusterChoice) -> String {
    let tried: Vec<String> = c
        .macro_f1_by_setting
        .iter()
        .map(|(s, f)| format!("{}/{}/{} → {f:.3}", s.clusters, s.rhythm_weight, s.weight))
        .collect();
    format!(
        "record clusters chosen on DS1 out of fold: {}; macro-F1 {:.3} without, by groups/rhythm \
         weight/pull {}; out of fold with the whole rule: accuracy {:.4}, {}, {}",
        c.smoothing
            .map_or("none (validation prefers none)".into(), |s| format!(
                "{} groups per record, rhythm weight {}, pull {}",
                s.clusters, s.rhythm_weight, s.weight
            )),
        c.macro_f1_plain,
        tried.join(", "),
        c.report.accuracy,
        c.report.se_ppv("S"),
        c.report.se_ppv("V")
    )
}
