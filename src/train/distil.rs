//! A distilled student (`ecgwgpu distil`): one network trained towards a fold ensemble's
//! out-of-fold probabilities, for users who want one network's speed (whether it keeps enough of
//! the ensemble is measured in results/README.md).
//!
//! `train_folds` with a teacher trains the fold students (their out-of-fold predictions choose
//! the decision rule, as for any fold ensemble), then [`train_student`] trains the one network
//! on all of DS1 for the folds' median best epoch, each training beat's target the mean of the
//! teacher's members that did not train on its record.
//!
//! The fold students' targets ([`TeacherTargets`]) decide how honest their figures are. The
//! out-of-fold ones come from members that trained on the fold's validation records, so what
//! the teacher learned there reaches the student. `clean` targets (members that trained on
//! neither) need teachers trained without each fold: nested cross-validation. DS2 (no beat of
//! it used) is the check that needs neither.

use std::path::{Path, PathBuf};

use serde_json::json;

use super::heartbeat::{new_trainer, run_config, training_part, write_metrics};
use super::{fit, FitObserver, Outcome, Schedule, TrainData};
use crate::data::beats::Beats;
use crate::data::corpus::dataset::{patient, LoadOptions};
use crate::error::{Error, Result};
use crate::eval::{member_folds, out_of_fold_probabilities, training_run};
use crate::gpu::GpuContext;
use crate::model::{DecisionRule, Model, ModelConfig};
use crate::run::{write_json, RunSettings};

/// Which of the teacher's probabilities the fold students learn (the one student always
/// learns the out-of-fold ones).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TeacherTargets {
    /// Each beat: the mean of the members that did not train on its record. Those members
    /// trained on the fold student's validation records.
    #[default]
    OutOfFold,
    /// The members that held out exactly the fold student's validation records (the teacher's
    /// own seed), their probabilities on the beats they trained on: nothing of the validation
    /// records reaches the fold student.
    SameFold,
    /// Each beat: the mean of the members (of the teacher and the `clean_teachers`) that
    /// trained on neither its record nor any of the fold's validation records: nested
    /// cross-validation, out of fold and leak-free. Needs teachers trained without each fold's
    /// records.
    Clean,
}

/// A `train --folds` ensemble that teaches: its members and the records each held out.
pub struct Teacher {
    path: PathBuf,
    bytes: Vec<u8>,
    folds: Vec<Vec<String>>,
}

impl Teacher {
    /// Reads the ensemble at `path`; its beats must be referenced as the student's
    /// (`student`) are, since both read the same cut beats.
    pub fn load(ctx: &GpuContext, path: &Path, student: &ModelConfig) -> Result<Self> {
        let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
        let members = Model::members_from_bytes(ctx, &bytes, path)?;
        let folds = member_folds(path)?;
        let first = &members[0].config;
        let why = if folds.len() != members.len() {
            Some(format!(
                "{} members but {} folds beside it: not a `train --folds` ensemble",
                members.len(),
                folds.len()
            ))
        } else if first.classes != student.classes {
            Some(format!(
                "{} classes, the student {}",
                first.classes, student.classes
            ))
        } else if first.beat_reference != student.beat_reference {
            Some(format!(
                "its beats are referenced as {:?}, the student's as {:?}",
                first.beat_reference, student.beat_reference
            ))
        } else {
            None
        };
        match why {
            Some(why) => Err(Error::Config(format!("teacher {}: {why}", path.display()))),
            None => Ok(Self {
                path: path.to_path_buf(),
                bytes,
                folds,
            }),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The soft targets of `beats`: each beat's mean probabilities over the members that did
    /// not train on its record.
    pub fn targets(&self, ctx: &GpuContext, beats: &Beats) -> Result<Vec<f32>> {
        let members = Model::members_from_bytes(ctx, &self.bytes, &self.path)?;
        out_of_fold_probabilities(ctx, members, &self.folds, beats, 1024, |_, _| {}).map_err(|e| {
            match e {
                Error::Config(why) => {
                    Error::Config(format!("teacher {}: {why}", self.path.display()))
                }
                other => other,
            }
        })
    }

    /// The soft targets of a fold student validated on `fold`'s records: the mean of the
    /// members that held out exactly those records, on `beats` (which they trained on).
    pub fn same_fold_targets(
        &self,
        ctx: &GpuContext,
        fold: &[String],
        beats: &Beats,
    ) -> Result<Vec<f32>> {
        let sorted = |f: &[String]| {
            let mut f = f.to_vec();
            f.sort();
            f
        };
        let wanted = sorted(fold);
        let members = Model::members_from_bytes(ctx, &self.bytes, &self.path)?;
        let same: Vec<Model> = members
            .into_iter()
            .zip(&self.folds)
            .filter(|(_, f)| sorted(f) == wanted)
            .map(|(m, _)| m)
            .collect();
        if same.is_empty() {
            return Err(Error::Config(format!(
                "teacher {}: no member held out exactly {}; same-fold targets need the \
                 teacher's folds (train the student with its seed)",
                self.path.display(),
                fold.join(" ")
            )));
        }
        // each member covers every record of `beats`: its probabilities on all of them
        let mut records: Vec<String> = beats
            .record
            .iter()
            .map(|r| patient(r).to_string())
            .collect();
        records.sort();
        records.dedup();
        let covers = vec![records; same.len()];
        out_of_fold_probabilities(ctx, same, &covers, beats, 1024, |_, _| {})
    }

    /// The members that trained on none of `fold`'s records (a member trained on all of the
    /// teacher's records but those it held out), with the records each held out.
    pub fn members_clear_of(
        &self,
        ctx: &GpuContext,
        fold: &[String],
    ) -> Result<(Vec<Model>, Vec<Vec<String>>)> {
        let all: Vec<&String> = self.folds.iter().flatten().collect();
        let members = Model::members_from_bytes(ctx, &self.bytes, &self.path)?;
        Ok(members
            .into_iter()
            .zip(&self.folds)
            .filter(|(_, held)| {
                all.iter()
                    .filter(|r| !held.contains(r))
                    .all(|trained| !fold.contains(trained))
            })
            .map(|(m, held)| (m, held.clone()))
            .unzip())
    }
}

/// Clean targets of a fold student validated on `fold`'s records: each beat the mean of the
/// `teachers`' members that trained on neither its record nor any of `fold`'s.
pub fn clean_targets<'t>(
    ctx: &GpuContext,
    teachers: impl IntoIterator<Item = &'t Teacher>,
    fold: &[String],
    beats: &Beats,
) -> Result<Vec<f32>> {
    let (mut members, mut folds) = (vec![], vec![]);
    for teacher in teachers {
        let (m, f) = teacher.members_clear_of(ctx, fold)?;
        members.extend(m);
        folds.extend(f);
    }
    out_of_fold_probabilities(ctx, members, &folds, beats, 1024, |_, _| {}).map_err(|e| match e {
        Error::Config(why) => Error::Config(format!(
            "clean targets for the fold of {}: {why} among the members that never trained on \
             that fold's records (give --clean-teacher ensembles trained without them)",
            fold.join(" ")
        )),
        other => other,
    })
}

/// The settings and data of a student of `teacher`: its training run's network, recipe, folds,
/// seed, records (or `data_dir`) and lead, with the loss `distil`.
pub fn student_of(
    ctx: &GpuContext,
    teacher: &Path,
    data_dir: Option<PathBuf>,
) -> Result<(RunSettings, TrainData)> {
    let bytes = std::fs::read(teacher).map_err(|e| Error::io(teacher, e))?;
    let members = Model::members_from_bytes(ctx, &bytes, teacher)?;
    let run = training_run(&members[0].config, teacher)?
        .filter(|run| run.args.folds >= 2 && run.args.split == "inter")
        .ok_or_else(|| {
            Error::Config(format!(
                "{} is not a `train --folds` ensemble with its run beside it: \
                 a teacher needs the records each member held out",
                teacher.display()
            ))
        })?;
    let mut options = members[0].preprocessing.load_options(None, None, teacher)?;
    options.fallback_to_first = run.args.fallback_lead;
    options.strict = run.args.strict;
    options.views = run.args.views.clone();
    options.device_view = run
        .args
        .device_view
        .then(|| crate::data::signal::acquisition::DeviceDraw::new(run.args.seed));
    let settings = RunSettings {
        loss: "distil".into(),
        teacher: Some(teacher.to_path_buf()),
        out: None,
        resume: false,
        ..run.args
    };
    let dir = data_dir.unwrap_or(run.data_dir);
    Ok((settings, TrainData::Records { dir, options }))
}

/// The epoch count of the one student: the median of the fold students' best epochs (the
/// lower middle one for an even count).
pub fn median_epoch(best_epochs: &[usize]) -> usize {
    let mut sorted = best_epochs.to_vec();
    sorted.sort_unstable();
    sorted
        .get((sorted.len().max(1) - 1) / 2)
        .copied()
        .unwrap_or(1)
}

/// What the student needs from the fold run: where the beats came from, the network, all of
/// DS1 (`pool`), DS2 (`test`), the rule chosen out of fold and the epochs.
pub(super) struct StudentPlan<'a> {
    pub options: &'a LoadOptions,
    pub data_dir: PathBuf,
    pub config: &'a ModelConfig,
    pub pool: &'a Beats,
    pub test: &'a Beats,
    pub rule: &'a DecisionRule,
    pub epochs: usize,
}

/// Trains the one student on all of DS1 (with the rhythm copies the settings ask for) towards
/// `teacher`'s out-of-fold probabilities for `plan.epochs` epochs, into `out` (a run
/// directory: `best.safetensors` is the last epoch with the rule, `metrics.json` its DS2
/// figures). Nothing is held out, so no epoch is picked on its own figures.
pub(super) fn train_student(
    ctx: &GpuContext,
    settings: &RunSettings,
    teacher: &Teacher,
    plan: &StudentPlan,
    out: &Path,
    observer: &mut dyn FitObserver,
    score: impl FnOnce(&Path) -> Result<Outcome>,
) -> Result<Outcome> {
    let classes = plan.config.classes;
    let train = training_part(settings, plan.pool, classes);
    observer.note(&format!(
        "the student: {} beats of all of DS1, targets from {}",
        train.len(),
        teacher.path().display()
    ));
    let targets = teacher.targets(ctx, &train)?;
    let student_settings = RunSettings {
        epochs: plan.epochs,
        folds: 0,
        patience: 0,
        resume: settings.resume && out.join("resume.safetensors").is_file(),
        ..settings.clone()
    };
    let pool_counts = plan.pool.class_counts(classes);
    let run = run_config(
        ctx,
        &student_settings,
        plan.options,
        plan.data_dir.clone(),
        plan.config,
        [
            pool_counts.clone(),
            train.class_counts(classes),
            pool_counts,
            plan.test.class_counts(classes),
        ],
        format!(
            "none held out: all of DS1 for {} epochs (the fold students' median best epoch); \
             the validation figures of its history are on its own training records",
            plan.epochs
        ),
    )?;
    let mut trainer = new_trainer(ctx, &run)?;
    observer.started(&run, out, [train.len(), plan.pool.len(), plan.test.len()]);
    let schedule = Schedule::of(&student_settings, out);
    let loss = run.loss.clone();
    fit(
        &mut trainer,
        &train,
        Some(&targets),
        plan.pool,
        &loss,
        &crate::data::formats::aami::CLASS_NAMES,
        &schedule,
        &run,
        observer,
    )?;
    // the last epoch, not the one its own training records liked best
    trainer
        .model
        .load_params(ctx, &out.join("last.safetensors"))?;
    trainer.model.config = plan.rule.apply(&trainer.model.config);
    let best = out.join("best.safetensors");
    trainer.model.save(ctx, &best, plan.epochs)?;
    drop(trainer);
    let outcome = score(&best)?;
    let mut metrics = write_metrics(out, &settings.split, &outcome)?;
    metrics["teacher"] = json!(teacher.path());
    metrics["epochs"] = json!(plan.epochs);
    write_json(&out.join("metrics.json"), &metrics)?;
    Ok(outcome)
}

#[cfg(test)]
mod tests {
    use super::median_epoch;

    #[test]
    fn the_median_epoch_is_the_middle_best_epoch() {
        assert_eq!(median_epoch(&[2, 5, 1, 10, 2]), 2);
        assert_eq!(median_epoch(&[4, 1, 3, 2]), 2);
        assert_eq!(median_epoch(&[7]), 7);
    }
}
