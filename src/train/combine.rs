//! Fold ensembles of several seeds as one (`ecgwgpu ensemble`): every member of each, with the
//! decision rule chosen anew on out-of-fold predictions of DS1, where each beat is the mean of
//! the members (one per seed) that did not train on its record. Out of fold, the seeds could not
//! be told apart while they disagreed on new patients; their mean does not have to be chosen
//! between.

use std::path::{Path, PathBuf};

use serde_json::json;

use super::folds::{choose_whole_rule, record_out_of_fold, RuleChoice};
use crate::data::beats::BeatPositions;
use crate::data::formats::aami::CLASS_NAMES;
use crate::error::{Error, Result};
use crate::eval::{member_folds, out_of_fold, training_run, Leads};
use crate::gpu::GpuContext;
use crate::metrics::{self, Confusion, Report};
use crate::model::{DecisionRule, Model};
use crate::run::write_json;

/// What combining gave: the members' folds and the out-of-fold figures with the rule chosen.
#[derive(Clone, Debug)]
pub struct Combined {
    /// The records each member held out, in member order.
    pub folds: Vec<Vec<String>>,
    /// Out of fold on DS1, plain argmax.
    pub oof: Report,
    /// The rule chosen and what each of its choices tried (its report is out of fold with the
    /// whole rule).
    pub choice: RuleChoice,
}

/// Combines the `train --folds` ensembles `checkpoints` (one architecture and preprocessing,
/// trained on the same records) into `out/best.safetensors`, with `out/config.json` (the first
/// run's, so `evaluate` finds DS2) and `out/metrics.json` (folds, out-of-fold figures, what the
/// rule's choices tried). The rule is chosen on DS1 read at `leads`, through the QRS detector
/// when the members were trained on its beats ([`Leads::as_trained`]). `batch` is the inference
/// batch; `progress` gets the members that have classified their held-out records, and the
/// number of members.
pub fn combine_ensembles(
    ctx: &GpuContext,
    checkpoints: &[PathBuf],
    out: &Path,
    leads: &Leads,
    batch: usize,
    progress: impl FnMut(usize, usize),
) -> Result<Combined> {
    if checkpoints.len() < 2 {
        return Err(Error::Config(
            "combining needs at least two fold ensembles".into(),
        ));
    }
    // the inputs' run files sit beside them: writing over one would lose it
    let out_dir = std::fs::canonicalize(out).ok();
    for path in checkpoints {
        let dir = path.parent().and_then(|d| std::fs::canonicalize(d).ok());
        if dir.is_some() && dir == out_dir {
            return Err(Error::Config(format!(
                "{} is in the output directory {}: give another --out",
                path.display(),
                out.display()
            )));
        }
    }
    let mut members: Vec<Model> = vec![];
    let mut folds = vec![];
    let mut first_run = None;
    for path in checkpoints {
        let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
        let mut these = Model::members_from_bytes(ctx, &bytes, path)?;
        let not_folds = |why: &str| {
            Error::Config(format!(
                "{} is not a `train --folds` ensemble to combine: {why}",
                path.display()
            ))
        };
        if these.len() < 2 {
            return Err(not_folds("one network, not an ensemble"));
        }
        let run = training_run(&these[0].config, path)?
            .ok_or_else(|| not_folds("no training run beside it"))?;
        // the beat positions follow the run (checkpoints written before they carried them
        // do not say so), so that seeds trained before and after compare equal
        for m in &mut these {
            m.preprocessing.beat_positions = BeatPositions::trained(run.args.detect);
        }
        let these_folds = member_folds(path)?;
        if these_folds.len() != these.len() || run.args.split != "inter" {
            return Err(not_folds("not an inter-patient fold ensemble"));
        }
        match &first_run {
            None => first_run = Some(run),
            Some(first) => {
                let same = first.data_dir == run.data_dir
                    && first.model.param_shapes() == run.model.param_shapes()
                    && members[0].preprocessing == these[0].preprocessing
                    && first.args.fallback_lead == run.args.fallback_lead
                    && first.args.detect == run.args.detect;
                if !same {
                    return Err(not_folds(&format!(
                        "its network, preprocessing, records or beats (`--detect`) differ \
                         from {}'s",
                        checkpoints[0].display()
                    )));
                }
            }
        }
        folds.extend(these_folds);
        members.extend(these);
    }
    let mut run = first_run.expect("at least two checkpoints");
    let leads = &leads.as_trained(&run);
    run.validation = Some(format!(
        "out of fold: each DS1 beat the mean of the members that did not train on its record; \
         members of {}",
        checkpoints
            .iter()
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>()
            .join(", ")
    ));
    std::fs::create_dir_all(out).map_err(|e| Error::io(out, e))?;
    run.write(out)?;
    let mut metrics = json!({
        "split": "inter",
        "combined_from": checkpoints,
        "folds": folds,
        "out_of_fold_leads": leads,
    });
    write_json(&out.join("metrics.json"), &metrics)?;
    // first without a rule, under a name no tool takes for the result: out of fold reads the
    // members from it, then the rule is chosen on them
    let unchosen = out.join("members-without-rule.safetensors");
    Model::save_ensemble(ctx, &members, &DecisionRule::default(), &unchosen)?;
    drop(members);
    let oof = out_of_fold(ctx, &unchosen, leads, batch, progress)?.referenced();
    let classes = CLASS_NAMES.len();
    let plain_decided = metrics::decide(&oof.probabilities, classes, &[]);
    let plain = Confusion::new(&oof.beats.labels, &plain_decided, classes).report(&CLASS_NAMES);
    let choice = choose_whole_rule(
        &oof.beats,
        &oof.probabilities,
        &CLASS_NAMES,
        &oof.other_lead,
    );
    let (tensors, meta) = crate::checkpoint::load(&unchosen)?;
    let best = out.join("best.safetensors");
    choice
        .rule
        .save_checkpoint(&tensors, meta, &unchosen, &best)?;
    std::fs::remove_file(&unchosen).map_err(|e| Error::io(&unchosen, e))?;
    metrics["decision_offsets"] = json!(choice.rule.offsets);
    record_out_of_fold(&mut metrics, &plain, Some(&choice));
    write_json(&out.join("metrics.json"), &metrics)?;
    Ok(Combined {
        folds,
        oof: plain,
        choice,
    })
}
