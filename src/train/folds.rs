//! Patient-grouped cross-validation on DS1 (`train --folds K`): whole records in each fold, every
//! DS1 beat predicted by the fold model that did not train on it (out of fold), the decision rule
//! (offsets, irregular-rhythm gate, record clusters) chosen on those predictions (all of DS1's
//! patients, not a few held out), and the K fold models saved as one ensemble whose mean
//! probabilities classify DS2.

use std::path::Path;

use serde_json::json;

use super::distil::{
    clean_targets, median_epoch, train_student, StudentPlan, Teacher, TeacherTargets,
};
use super::heartbeat::{new_trainer, run_config, training_part, write_metrics};
use super::{fit, model_config, probabilities, split_kind, FitObserver, Outcome};
use super::{Schedule, TrainData};
use crate::adapt::clusters;
use crate::data::beats::Beats;
use crate::data::corpus::dataset::patient;
use crate::data::corpus::splits::{self, patient_folds, SplitKind};
use crate::data::formats::aami::{AamiClass, CLASS_NAMES};
use crate::error::{Error, Result};
use crate::gpu::GpuContext;
use crate::infer::Classifier;
use crate::loss::{self};
use crate::metrics::{self, Confusion, Report};
use crate::model::{DecisionRule, Model};
use crate::run::{read_json, write_json, RunSettings};

/// What cross-validation gave.
#[derive(Clone, Debug)]
pub struct FoldsOutcome {
    /// The records of each fold.
    pub folds: Vec<Vec<String>>,
    /// Out-of-fold figures on DS1: plain argmax, and with the whole rule when calibrated.
    pub oof: Report,
    pub oof_calibrated: Option<Report>,
    /// The decision rule chosen out of fold (offsets, gate, record clusters; empty when not
    /// calibrated).
    pub rule: DecisionRule,
    /// The ensemble on DS2 (with its rule when calibrated).
    pub test: Outcome,
    /// With a teacher: the one student on DS2, with the rule chosen on the fold students.
    pub student: Option<Outcome>,
}

/// Trains `settings.folds` fold models on DS1's records (`settings.split` must be `inter`),
/// into `out/fold1`, `out/fold2`, ... (each a run directory, resumable), then writes the ensemble
/// to `out/best.safetensors`, `out/config.json` and `out/metrics.json` (DS2, and the out-of-fold
/// figures).
pub fn train_folds(
    ctx: &GpuContext,
    settings: &RunSettings,
    data: &TrainData,
    out: &Path,
    observer: &mut dyn FitObserver,
) -> Result<FoldsOutcome> {
    let k = settings.folds;
    let config = model_config(settings)?;
    let TrainData::Records { dir, options } = data else {
        return Err(Error::Config(
            "--folds groups records (patients): give --data-dir, not CSV files".into(),
        ));
    };
    if split_kind(settings)? != SplitKind::Inter || k < 2 {
        return Err(Error::Config(format!(
            "--folds {k}: cross-validation is over DS1's patients; use --split inter and at \
             least 2 folds"
        )));
    }
    let classes = config.classes;
    let (beats, report) = super::heartbeat::read_records(dir, options, &config)?;
    observer.loaded(&report);
    let parts = splits::split(&beats, SplitKind::Inter, 0.2, 0.1, settings.seed);
    let mut ds1: Vec<usize> = parts.train.iter().chain(&parts.val).copied().collect();
    ds1.sort_unstable();
    let (pool, test) = (beats.select(&ds1), beats.select(&parts.test));
    let folds = patient_folds(&pool, k, settings.seed);
    let teacher = match (&settings.teacher, settings.loss == "distil") {
        (Some(path), true) => Some(Teacher::load(ctx, path, &config)?),
        (None, false) => None,
        _ => {
            return Err(Error::Config(
                "a teacher and --loss distil go together (ecgwgpu distil sets both)".into(),
            ))
        }
    };
    // with clean targets, the teacher's members may teach too: the clean teachers' first
    let clean_teachers = match settings.teacher_targets {
        TeacherTargets::Clean => settings
            .clean_teachers
            .iter()
            .map(|path| Teacher::load(ctx, path, &config))
            .collect::<Result<Vec<_>>>()?,
        _ => vec![],
    };
    let mut best_epochs = vec![];
    let mut oof = vec![0f32; pool.len() * classes];
    let mut members = vec![];
    for (i, fold) in folds.iter().enumerate() {
        let (held, kept): (Vec<usize>, Vec<usize>) =
            (0..pool.len()).partition(|&b| fold.iter().any(|r| r == patient(&pool.record[b])));
        let (original, val) = (pool.select(&kept), pool.select(&held));
        let train = training_part(settings, &original, classes);
        if val.is_empty() || train.is_empty() {
            return Err(Error::Config(format!(
                "fold {} of {k} has {} training and {} validation beats: fewer folds",
                i + 1,
                train.len(),
                val.len()
            )));
        }
        let fold_dir = out.join(format!("fold{}", i + 1));
        let fold_settings = RunSettings {
            seed: settings.seed + i as u64,
            folds: 0,
            // a fold that never started begins afresh
            resume: settings.resume && fold_dir.join("resume.safetensors").is_file(),
            ..settings.clone()
        };
        let counts = [&original, &train, &val].map(|b| b.class_counts(classes));
        let [before, train_counts, val_counts] = counts;
        let targets = match &teacher {
            Some(teacher) => {
                observer.note(&format!(
                    "fold {}: targets of {} beats from the teacher's members {}",
                    i + 1,
                    train.len(),
                    match settings.teacher_targets {
                        TeacherTargets::OutOfFold => "that did not train on each beat's record",
                        TeacherTargets::SameFold => "that held out this fold's records",
                        TeacherTargets::Clean =>
                            "that trained on neither this fold's records nor each beat's",
                    }
                ));
                Some(match settings.teacher_targets {
                    TeacherTargets::OutOfFold => teacher.targets(ctx, &train)?,
                    TeacherTargets::SameFold => teacher.same_fold_targets(ctx, fold, &train)?,
                    TeacherTargets::Clean => {
                        clean_targets(ctx, clean_teachers.iter().chain([teacher]), fold, &train)?
                    }
                })
            }
            None => None,
        };
        let run = run_config(
            ctx,
            &fold_settings,
            options,
            dir.clone(),
            &config,
            [before, train_counts, val_counts, vec![0; classes]],
            format!("fold {} of {k} of DS1's records: {}", i + 1, fold.join(" ")),
        )?;
        let (loss, fold_settings) = (run.loss.clone(), run.args.clone());
        let mut trainer = new_trainer(ctx, &run)?;
        observer.started(&run, &fold_dir, [train.len(), val.len(), 0]);
        let schedule = Schedule::of(&fold_settings, &fold_dir);
        fit(
            &mut trainer,
            &train,
            targets.as_deref(),
            &val,
            &loss,
            &CLASS_NAMES,
            &schedule,
            &run,
            observer,
        )?;
        best_epochs.push(best_epoch(&fold_dir)?);
        let probs = probabilities(&mut trainer, &val)?;
        for (j, &b) in held.iter().enumerate() {
            oof[b * classes..(b + 1) * classes]
                .copy_from_slice(&probs[j * classes..(j + 1) * classes]);
        }
        members.push(trainer.model);
    }

    let report = |probs: &[f32], labels: &[u32], offsets: &[f32]| {
        let predicted = metrics::decide(probs, classes, offsets);
        Confusion::new(labels, &predicted, classes).report(&CLASS_NAMES)
    };
    let oof_report = report(&oof, &pool.labels, &[]);
    let choices = settings
        .calibrate
        .then(|| choose_whole_rule(&pool, &oof, &CLASS_NAMES, &[]));
    let rule = choices
        .as_ref()
        .map_or_else(DecisionRule::default, |c| c.rule.clone());
    let oof_calibrated = choices.as_ref().map(|c| c.on_time_v.report.clone());
    let best = out.join("best.safetensors");
    Model::save_ensemble(ctx, &members, &rule, &best)?;
    drop(members);

    let pool_counts = pool.class_counts(classes);
    let run = run_config(
        ctx,
        settings,
        options,
        dir.clone(),
        &config,
        [
            pool_counts.clone(),
            pool_counts.clone(),
            pool_counts,
            test.class_counts(classes),
        ],
        format!(
            "out of fold: {k} folds of whole DS1 records, each predicted by the model that did not train on it"
        ),
    )?;
    let loss = run.loss.clone();
    run.write(out)?;

    // DS2, with the rule when calibrated
    let score = |best: &Path| -> Result<Outcome> {
        let mut clf = Classifier::load(ctx, best)?;
        let probs = clf.probabilities(&test, |_, _| {})?;
        let mut decided_from = probs.clone();
        let decided = clf.config().decide_records(&mut decided_from, &test, &[]);
        Ok(Outcome {
            test_beats: test.len(),
            test_loss: loss::mean_from_probs(&loss, &probs, &test.labels),
            report: Confusion::new(&test.labels, &decided, classes).report(&CLASS_NAMES),
            uncalibrated: settings
                .calibrate
                .then(|| report(&probs, &test.labels, &[])),
            calibration: None,
            decision_offsets: rule.offsets.clone(),
        })
    };
    let outcome = score(&best)?;
    let mut metrics = write_metrics(out, &settings.split, &outcome)?;
    metrics["folds"] = json!(folds);
    record_out_of_fold(&mut metrics, &oof_report, choices.as_ref());
    write_json(&out.join("metrics.json"), &metrics)?;
    let mut student_outcome = None;
    if let Some(teacher) = &teacher {
        let plan = StudentPlan {
            options,
            data_dir: dir.clone(),
            config: &config,
            pool: &pool,
            test: &test,
            rule: &rule,
            epochs: median_epoch(&best_epochs),
        };
        let student = out.join("student");
        student_outcome = Some(train_student(
            ctx, settings, teacher, &plan, &student, observer, score,
        )?);
        let mut metrics: serde_json::Value = read_json(&student.join("metrics.json"))?;
        metrics["folds"] = json!(folds);
        metrics["fold_best_epochs"] = json!(best_epochs);
        record_out_of_fold(&mut metrics, &oof_report, choices.as_ref());
        write_json(&student.join("metrics.json"), &metrics)?;
    }
    Ok(FoldsOutcome {
        folds,
        oof: oof_report,
        oof_calibrated,
        rule,
        test: outcome,
        student: student_outcome,
    })
}

/// The epoch a fold run in `dir` kept: its highest validation macro-F1 (the first of equals).
fn best_epoch(dir: &Path) -> Result<usize> {
    let history = super::read_history(dir)?;
    let best = history
        .iter()
        .fold(None::<&super::EpochRecord>, |best, h| match best {
            Some(b) if b.val_macro_f1 >= h.val_macro_f1 => Some(b),
            _ => Some(h),
        });
    best.map(|h| h.epoch)
        .ok_or_else(|| Error::Config(format!("{}: no epoch in its history", dir.display())))
}

/// Writes the out-of-fold figures into a fold ensemble's `metrics.json` value: plain argmax
/// (`plain`), and with the whole rule and what each of its choices tried (`choice`), when one
/// was made.
pub(super) fn record_out_of_fold(
    metrics: &mut serde_json::Value,
    plain: &Report,
    choice: Option<&RuleChoice>,
) {
    let summary = |r: &Report| {
        json!({
            "accuracy": r.accuracy,
            "macro_f1": r.macro_f1,
            "classes": r.classes,
            "confusion": r.confusion,
        })
    };
    metrics["out_of_fold"] = summary(plain);
    let Some(RuleChoice {
        gate: g,
        clusters: c,
        on_time_v: v,
        ..
    }) = choice
    else {
        return;
    };
    metrics["out_of_fold_calibrated"] = summary(&v.report);
    metrics["irregular_gate"] = json!({
        "threshold": g.threshold,
        "macro_f1_ungated": g.macro_f1_ungated,
        "macro_f1_by_threshold": g.macro_f1_by_threshold,
    });
    metrics["record_clusters"] = json!({
        "smoothing": c.smoothing,
        "macro_f1_plain": c.macro_f1_plain,
        "macro_f1_by_setting": c.macro_f1_by_setting,
    });
    metrics["on_time_v_gate"] = json!({
        "gate": v.gate,
        "macro_f1_without": v.macro_f1_without,
        "macro_f1_by_setting": v.macro_f1_by_setting,
    });
}

/// Chooses the whole decision rule of heartbeat classes on out-of-fold predictions (`beats`
/// whole records, `probs` their probabilities): the S, V and F offsets, then the rest as
/// [`choose_rule`] does.
pub fn choose_whole_rule(
    beats: &Beats,
    probs: &[f32],
    names: &[&str],
    other_lead: &[bool],
) -> RuleChoice {
    let tuned = [AamiClass::S, AamiClass::V, AamiClass::F].map(|c| c.label() as usize);
    let offsets = metrics::choose_offsets(probs, &beats.labels, names.len(), &tuned);
    choose_rule(beats, probs, offsets, names, other_lead)
}

/// The rule chosen after the offsets, with what each choice tried.
#[derive(Clone, Debug)]
pub struct RuleChoice {
    pub gate: metrics::GateChoice,
    pub clusters: clusters::ClusterChoice,
    pub on_time_v: metrics::OnTimeVChoice,
    /// The offsets given, the gates and the record clusters chosen.
    pub rule: DecisionRule,
}

/// Chooses the rest of the decision rule on validation beats (`beats` whole records, `probs`
/// the network's out-of-fold outputs for them), given its decision `offsets`: the
/// irregular-rhythm gate, then the record clusters with that gate, each the highest macro-F1,
/// then the on-time V gate for the beats `other_lead` marks ([`choose_other_lead_v_gate`]).
pub fn choose_rule(
    beats: &Beats,
    probs: &[f32],
    offsets: Vec<f32>,
    names: &[&str],
    other_lead: &[bool],
) -> RuleChoice {
    let classes = names.len();
    let decided = metrics::decide(probs, classes, &offsets);
    let gate = metrics::choose_irregular_gate(&decided, &beats.labels, &beats.rr, names);
    let clusters = clusters::choose(beats, probs, names, |p| {
        metrics::decide_gated(p, classes, &offsets, gate.threshold, &beats.rr)
    });
    let mut rule = DecisionRule {
        offsets,
        irregular_gate: gate.threshold,
        record_clusters: clusters.smoothing,
        other_lead_v_gate: None,
    };
    let on_time_v = choose_other_lead_v_gate(beats, probs, &rule, other_lead, names);
    rule.other_lead_v_gate = on_time_v.gate;
    RuleChoice {
        gate,
        clusters,
        on_time_v,
        rule,
    }
}

/// Chooses the on-time V gate for the beats `other_lead` marks (read at a lead the network was
/// not trained on; empty: none, and no gate) on validation beats (`beats` whole records,
/// `probs` their out-of-fold outputs), decided by the rest of `rule`.
pub fn choose_other_lead_v_gate(
    beats: &Beats,
    probs: &[f32],
    rule: &DecisionRule,
    other_lead: &[bool],
    names: &[&str],
) -> metrics::OnTimeVChoice {
    let classes = names.len();
    // the gate reads the probabilities as the record clusters leave them
    let mut smoothed = probs.to_vec();
    if let Some(smoothing) = &rule.record_clusters {
        smoothing.smooth_records(beats, &mut smoothed, classes);
    }
    let decided = metrics::decide_gated(
        &smoothed,
        classes,
        &rule.offsets,
        rule.irregular_gate,
        &beats.rr,
    );
    metrics::choose_on_time_v_gate(
        &decided,
        &smoothed,
        &beats.labels,
        &beats.rr,
        other_lead,
        names,
    )
}
