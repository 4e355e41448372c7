//! Which beats a network is scored on: the part of its training run's split (re-created from the
//! run's `config.json`, so `evaluate` reproduces the run's test figures), or every beat of a
//! database. The beats are cut and referenced as the network's preprocessing says.

use std::path::{Path, PathBuf};

use crate::data::beats::reference::BeatReference;
use crate::data::beats::{BeatMode, BeatPositions, Beats, NO_REFERENCE};
use crate::data::corpus::dataset::{load_dir, patient, LoadOptions};
use crate::data::corpus::ptb::{self, MiSplit};
use crate::data::corpus::splits::{self, Split, SplitKind};
use crate::data::signal::acquisition::{Acquisition, DeviceDraw};
use crate::error::{Error, Result};
use crate::metrics::Confusion;
use crate::model::ModelConfig;
use crate::preprocessing::{Preprocessing, Task};
use crate::run::RunConfig;

/// Which beats of a heartbeat database.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "cli", derive(clap::ValueEnum))]
pub enum EvalSplit {
    /// The intra-patient split of the training run (same seed), random 80/20 by beat.
    Intra,
    /// DS1 → DS2 (de Chazal 2004); the test part is DS2.
    Inter,
    /// Every annotated beat of every record (any WFDB database, any sampling rate; records
    /// without the lead fall back to their first signal, with a warning).
    All,
}

/// A part of a split.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "cli", derive(clap::ValueEnum))]
pub enum Part {
    Train,
    Val,
    Test,
}

/// What to score a network on; every `None` takes the training run's value (or the default).
#[derive(Clone, Debug, Default)]
pub struct Selection {
    /// Default: the run's split, else all beats.
    pub split: Option<EvalSplit>,
    /// Default: the test part.
    pub part: Option<Part>,
    /// Seed of the split. Default: the run's, else 1.
    pub seed: Option<u64>,
    /// Default: the run's data folder.
    pub data_dir: Option<PathBuf>,
    /// A lead name for another database; default: the network's preference.
    pub lead: Option<String>,
    /// Must agree with the network's (a contradiction is refused); default: the network's.
    pub mode: Option<BeatMode>,
    /// Read records without the lead from their first signal.
    pub fallback_lead: bool,
    /// Any unreadable record or dropped annotation is an error.
    pub strict: bool,
    /// Each record as another device would have taken it (rate, noise).
    pub acquisition: Acquisition,
    /// Beats where the QRS detector finds them (see [`LoadOptions::detect`]).
    pub detect: bool,
    /// Each record also read at these leads, as recordings of their own (see
    /// [`LoadOptions::views`]).
    pub views: Vec<String>,
    /// Where beats are cut instead of the network's own positions (to measure a setting
    /// before a checkpoint carries it).
    pub positions: Option<BeatPositions>,
}

/// The beats selected, described for a report, with what loading skipped or substituted.
#[derive(Clone, Debug)]
pub struct Selected {
    pub beats: Beats,
    pub description: String,
    /// One line per cause, then the line that accounts for every beat annotation.
    pub load_report: Vec<String>,
}

impl Preprocessing {
    /// How to read records for a network with this preprocessing: its beat mode, beat
    /// positions and lead, with `lead` naming the lead in another database. A `mode` that
    /// contradicts the network's is refused, naming both (`network` names the checkpoint).
    pub fn load_options(
        &self,
        mode: Option<BeatMode>,
        lead: Option<&str>,
        network: &Path,
    ) -> Result<LoadOptions> {
        if let Some(mode) = mode.filter(|&m| m != self.beat_mode) {
            return Err(Error::Config(format!(
                "--mode {} contradicts {}, whose network was trained on {} beats; leave --mode out",
                mode.name(),
                network.display(),
                self.beat_mode.name()
            )));
        }
        Ok(LoadOptions {
            mode: self.beat_mode,
            lead: lead.map_or_else(|| self.lead.clone(), str::to_string),
            positions: self.beat_positions,
            ..LoadOptions::default()
        })
    }
}

/// The training run beside a checkpoint, when that run trained this network (`config`).
pub fn training_run(config: &ModelConfig, checkpoint: &Path) -> Result<Option<RunConfig>> {
    Ok(RunConfig::beside(checkpoint)?
        .filter(|run| run.model.param_shapes() == config.param_shapes()))
}

/// The beats `selection` names for a network with `config` and `preprocessing` (`network`
/// names its checkpoint; `run` is its training run, if known), cut and referenced as the network
/// takes them.
pub fn select(
    config: &ModelConfig,
    preprocessing: &Preprocessing,
    network: &Path,
    run: Option<&RunConfig>,
    selection: &Selection,
) -> Result<Selected> {
    let mut options =
        preprocessing.load_options(selection.mode, selection.lead.as_deref(), network)?;
    options.fallback_to_first = selection.fallback_lead;
    options.strict = selection.strict;
    options.acquisition = selection.acquisition;
    options.detect = selection.detect;
    options.views = selection.views.clone();
    options.positions = selection.positions.unwrap_or(options.positions);
    let dir = match (&selection.data_dir, run) {
        (Some(dir), _) => dir.clone(),
        (None, Some(r)) => {
            // the run's own records: read them as it did
            options.fallback_to_first |= r.args.fallback_lead;
            r.data_dir.clone()
        }
        (None, None) => {
            return Err(Error::Config(format!(
                "{} has no training run beside it: give a data folder (--data-dir)",
                network.display()
            )))
        }
    };
    let seed = selection.seed.or(run.map(|r| r.args.seed)).unwrap_or(1);
    let part = selection.part.unwrap_or(Part::Test);
    let reference = config.beat_reference;
    let relative = match reference {
        BeatReference::None => String::new(),
        BeatReference::RecordMedian => ", each beat relative to its record's median beat".into(),
    };
    if preprocessing.task == Task::Mi {
        let mut ds = ptb::load(&dir, &options)?;
        let load_report = ds
            .warnings
            .iter()
            .map(|w| format!("warning: {w}"))
            .collect();
        reference.apply(&mut ds.beats)?;
        let what = format!("{}{relative}", dir.display());
        if selection.split == Some(EvalSplit::All) {
            return Ok(Selected {
                beats: ds.beats,
                description: format!("all beats of {what}"),
                load_report,
            });
        }
        let kind = match run.map(|r| r.args.split.as_str()) {
            Some("beat") => MiSplit::Beat,
            _ => MiSplit::Patient,
        };
        let parts = ptb::split(&ds, kind, seed);
        let (beats, description) = take_part(
            &ds.beats,
            &parts,
            part,
            format!("{kind:?} split (seed {seed}) of {what}"),
        );
        return Ok(Selected {
            beats,
            description,
            load_report,
        });
    }
    let split = selection
        .split
        .unwrap_or(match run.map(|r| r.args.split.as_str()) {
            Some("intra") => EvalSplit::Intra,
            Some("inter") => EvalSplit::Inter,
            _ => EvalSplit::All,
        });
    options.fallback_to_first |= split == EvalSplit::All;
    let mut ds = load_dir(&dir, &options)?;
    let load_report = ds.report_lines();
    // before splitting: the median is over each record's own beats
    reference.apply(&mut ds.beats)?;
    let what = format!("{}{relative}", dir.display());
    let kind = match split {
        EvalSplit::All => {
            return Ok(Selected {
                beats: ds.beats,
                description: format!("all beats of {what}"),
                load_report,
            })
        }
        EvalSplit::Intra => SplitKind::Intra,
        EvalSplit::Inter => SplitKind::Inter,
    };
    let parts = splits::split(&ds.beats, kind, 0.2, 0.1, seed);
    let (beats, description) = take_part(
        &ds.beats,
        &parts,
        part,
        format!("{kind:?} split (seed {seed}) of {what}"),
    );
    Ok(Selected {
        beats,
        description,
        load_report,
    })
}

/// A part of a split, described as "<part> part of the <what>".
fn take_part(beats: &Beats, parts: &Split, part: Part, what: String) -> (Beats, String) {
    let indices = match part {
        Part::Train => &parts.train,
        Part::Val => &parts.val,
        Part::Test => &parts.test,
    };
    (
        beats.select(indices),
        format!("{part:?} part of the {what}").to_lowercase(),
    )
}

/// DS1 as a `train --folds` run saw it, with an out-of-fold prediction for every beat: the mean
/// of the ensemble members that did not train on its record (one per fold ensemble; several
/// when fold ensembles of other seeds were combined, see [`crate::train::combine_ensembles`]).
pub struct OutOfFold {
    /// DS1's beats (the training and validation parts of the run's inter split).
    pub beats: Beats,
    /// `[beats, classes]`, row-major.
    pub probabilities: Vec<f32>,
    /// The records each member held out, in member order.
    pub folds: Vec<Vec<String>>,
    /// Which beats were read at a lead the network was not trained on (empty: none; see
    /// [`Preprocessing::other_lead_beats`]).
    pub other_lead: Vec<bool>,
}

/// The rows `keep` of a row-major matrix `width` values wide.
fn select_rows(values: &[f32], width: usize, keep: &[usize]) -> Vec<f32> {
    keep.iter()
        .flat_map(|&r| &values[r * width..(r + 1) * width])
        .copied()
        .collect()
}

impl OutOfFold {
    /// The beats that have a reference class, with their probabilities and lead flags: what a
    /// rule is chosen on. Beats the QRS detector found where no beat is annotated have none
    /// ([`Leads::detect`]); they still shaped their record's R–R features.
    pub fn referenced(self) -> OutOfFold {
        if !self.beats.labels.contains(&NO_REFERENCE) {
            return self;
        }
        let classes = self.probabilities.len() / self.beats.len();
        let keep = self.beats.referenced_indices();
        OutOfFold {
            probabilities: select_rows(&self.probabilities, classes, &keep),
            other_lead: match self.other_lead.is_empty() {
                true => vec![],
                false => keep.iter().map(|&b| self.other_lead[b]).collect(),
            },
            beats: self.beats.select(&keep),
            folds: self.folds,
        }
    }

    /// The folds once each, their records sorted: ensembles of several seeds hold each fold
    /// once per seed, and a fold's figures read which records it holds, not their order.
    pub fn distinct_folds(&self) -> Vec<Vec<String>> {
        let mut distinct: Vec<Vec<String>> = vec![];
        for fold in &self.folds {
            let mut fold = fold.clone();
            fold.sort();
            if !distinct.contains(&fold) {
                distinct.push(fold);
            }
        }
        distinct
    }

    /// What scored each beat, in words.
    pub fn describe(&self) -> String {
        let distinct = self.distinct_folds().len();
        match distinct == self.folds.len() {
            true => format!(
                "DS1 out of fold: each of {distinct} folds' records scored by the member that \
                 did not train on them"
            ),
            false => format!(
                "DS1 out of fold: each record scored by the mean of the members ({} in all) \
                 that did not train on it; figures over {distinct} distinct folds",
                self.folds.len()
            ),
        }
    }
}

/// The records each member of the fold ensemble `checkpoint` held out, in member order, from
/// the `metrics.json` beside it.
pub fn member_folds(checkpoint: &Path) -> Result<Vec<Vec<String>>> {
    let metrics_path = checkpoint.with_file_name("metrics.json");
    let text = std::fs::read_to_string(&metrics_path).map_err(|e| Error::io(&metrics_path, e))?;
    let metrics: serde_json::Value = serde_json::from_str(&text)
        .map_err(|e| Error::data(&metrics_path, "json", e.to_string()))?;
    serde_json::from_value(metrics["folds"].clone())
        .map_err(|e| Error::data(&metrics_path, "folds", e.to_string()))
}

/// How out-of-fold predictions read DS1: at the network's own lead by default (MLII for
/// MIT-BIH) or `lead` instead, each of `views` besides, as recordings of the same patients
/// (`RECORD~LEAD`, see [`LoadOptions::views`]), every record through `acquisition` (another
/// rate, noise), and each also as a drawn device when `device_view` says
/// ([`LoadOptions::device_view`]). A rule chosen there is chosen on recordings that do not all
/// look like the training data.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct Leads {
    pub lead: Option<String>,
    pub views: Vec<String>,
    #[serde(skip_serializing_if = "crate::is_default")]
    pub acquisition: Acquisition,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub device_view: Option<DeviceDraw>,
    /// Beats where the QRS detector finds them ([`LoadOptions::detect`]), as a user without
    /// annotations gets them: so that DS1 out of fold can be read the way the cross-database
    /// table's detected rows are. A rule is chosen on such beats only for networks trained on
    /// them ([`Leads::as_trained`]).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub detect: bool,
    /// Where beats are cut instead of the networks' own positions (see
    /// [`Selection::positions`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub positions: Option<BeatPositions>,
}

impl Leads {
    /// These leads read as `run`'s networks were trained: through the QRS detector after `train
    /// --detect`. A decision rule is chosen on the beats its networks learnt from, as `train
    /// --folds --calibrate` chooses it.
    pub fn as_trained(&self, run: &RunConfig) -> Leads {
        Leads {
            detect: self.detect || run.args.detect,
            ..self.clone()
        }
    }

    /// How the leads read, for a report ("" for the network's own lead alone).
    pub fn describe(&self) -> String {
        let mut parts = vec![];
        if let Some(lead) = &self.lead {
            parts.push(format!("lead {lead}"));
        }
        if !self.views.is_empty() {
            parts.push(format!("also at {}", self.views.join(" and ")));
        }
        if !self.acquisition.is_identity() {
            parts.push(self.acquisition.describe());
        }
        if let Some(device) = &self.device_view {
            parts.push(format!(
                "also as drawn devices (seed {}, views RECORD~LEAD@RATEHz)",
                device.seed
            ));
        }
        if self.detect {
            parts.push("beats found by the QRS detector".into());
        }
        if let Some(positions) = self.positions {
            parts.push(format!("beats {}", positions.describe()));
        }
        parts.join(", ")
    }
}

/// The out-of-fold predictions of the fold ensemble `checkpoint` (see [`OutOfFold`]), from its
/// run's `config.json` and the folds its `metrics.json` lists (in member order), with DS1 read
/// at `leads`. `batch` is the inference batch; `progress` gets the members done and their
/// number after each.
pub fn out_of_fold(
    ctx: &crate::gpu::GpuContext,
    checkpoint: &Path,
    leads: &Leads,
    batch: usize,
    progress: impl FnMut(usize, usize),
) -> Result<OutOfFold> {
    let bytes = std::fs::read(checkpoint).map_err(|e| Error::io(checkpoint, e))?;
    let members = crate::model::Model::members_from_bytes(ctx, &bytes, checkpoint)?;
    let config = members[0].config.clone();
    let preprocessing = members[0].preprocessing.clone();
    let not_folds = || {
        Error::Config(format!(
            "{} is not a `train --folds` ensemble with its run beside it",
            checkpoint.display()
        ))
    };
    let run = training_run(&config, checkpoint)?.ok_or_else(not_folds)?;
    let folds = member_folds(checkpoint)?;
    if folds.len() != members.len() || run.args.split != "inter" {
        return Err(not_folds());
    }
    let mut options = preprocessing.load_options(None, leads.lead.as_deref(), checkpoint)?;
    options.fallback_to_first = run.args.fallback_lead;
    options.strict = run.args.strict;
    options.views = leads.views.clone();
    options.acquisition = leads.acquisition;
    options.device_view = leads.device_view.clone();
    options.detect = leads.detect;
    options.positions = leads.positions.unwrap_or(options.positions);
    let mut ds = load_dir(&run.data_dir, &options)?;
    config.beat_reference.apply(&mut ds.beats)?;
    let parts = splits::split(&ds.beats, SplitKind::Inter, 0.2, 0.1, run.args.seed);
    let mut ds1: Vec<usize> = parts.train.iter().chain(&parts.val).copied().collect();
    ds1.sort_unstable();
    let beats = ds.beats.select(&ds1);
    let probabilities = out_of_fold_probabilities(ctx, members, &folds, &beats, batch, progress)
        .map_err(|e| match e {
            Error::Config(why) => Error::Config(format!("{}: {why}", checkpoint.display())),
            other => other,
        })?;
    let read_at = leads.lead.as_deref().unwrap_or(&preprocessing.lead);
    let other_lead = preprocessing.other_lead_beats(&beats, read_at);
    Ok(OutOfFold {
        beats,
        probabilities,
        folds,
        other_lead,
    })
}

/// Each beat's mean probabilities over the `members` that did not train on its record (the
/// member `i` held out the records `folds[i]`; a beat is matched by its patient, so every view
/// of a record counts as that record). An error names a record no member held out.
pub fn out_of_fold_probabilities(
    ctx: &crate::gpu::GpuContext,
    members: Vec<crate::model::Model>,
    folds: &[Vec<String>],
    beats: &Beats,
    batch: usize,
    mut progress: impl FnMut(usize, usize),
) -> Result<Vec<f32>> {
    let classes = members.first().map_or(0, |m| m.config.classes);
    let mut sums = vec![0f64; beats.len() * classes];
    let mut counts = vec![0u32; beats.len()];
    let total = members.len();
    for (i, (member, fold)) in members.into_iter().zip(folds).enumerate() {
        let held: Vec<usize> = (0..beats.len())
            .filter(|&b| fold.iter().any(|r| r == patient(&beats.record[b])))
            .collect();
        let mut clf = crate::infer::Classifier::new(ctx, member)?;
        clf.batch = batch;
        let probs = clf.probabilities(&beats.select(&held), |_, _| {})?;
        for (j, &b) in held.iter().enumerate() {
            counts[b] += 1;
            for (s, &p) in sums[b * classes..(b + 1) * classes]
                .iter_mut()
                .zip(&probs[j * classes..(j + 1) * classes])
            {
                *s += f64::from(p);
            }
        }
        progress(i + 1, total);
    }
    if let Some(b) = counts.iter().position(|&c| c == 0) {
        return Err(Error::Config(format!(
            "record {} is in no member's fold, so it has no out-of-fold prediction",
            beats.record[b]
        )));
    }
    Ok(sums
        .chunks(classes)
        .zip(&counts)
        .flat_map(|(row, &n)| row.iter().map(move |&s| (s / f64::from(n)) as f32))
        .collect())
}

/// The beats without a reference class (found by the QRS detector where the recording has no
/// beat annotation): how many, and what they were called.
#[derive(serde::Serialize)]
pub struct Unreferenced {
    pub beats: usize,
    /// (class, beats decided so) for every class.
    pub decided: Vec<(String, usize)>,
    /// (record, beats without a reference) for every record that has some.
    pub per_record: Vec<(String, usize)>,
}

impl Unreferenced {
    /// The beats that have a reference class, with their probabilities (a row each) and
    /// decisions: what is scored.
    pub fn referenced(
        beats: Beats,
        probs: Vec<f32>,
        predicted: Vec<u32>,
    ) -> (Beats, Vec<f32>, Vec<u32>) {
        if !beats.labels.contains(&NO_REFERENCE) {
            return (beats, probs, predicted);
        }
        let classes = probs.len() / beats.len();
        let keep = beats.referenced_indices();
        let probs = select_rows(&probs, classes, &keep);
        let predicted = keep.iter().map(|&b| predicted[b]).collect();
        (beats.select(&keep), probs, predicted)
    }

    pub fn of(beats: &Beats, predicted: &[u32], names: &[&str]) -> Self {
        let mut decided: Vec<(String, usize)> = names.iter().map(|n| (n.to_string(), 0)).collect();
        let mut per_record: Vec<(String, usize)> = vec![];
        for b in (0..beats.len()).filter(|&b| beats.labels[b] == NO_REFERENCE) {
            decided[predicted[b] as usize].1 += 1;
            match per_record.last_mut() {
                Some((r, n)) if *r == beats.record[b] => *n += 1,
                _ => per_record.push((beats.record[b].clone(), 1)),
            }
        }
        Self {
            beats: decided.iter().map(|d| d.1).sum(),
            decided,
            per_record,
        }
    }

    pub fn describe(&self) -> String {
        let classes: Vec<String> = self
            .decided
            .iter()
            .map(|(c, n)| {
                format!(
                    "{c} {n} ({:.1} %)",
                    100.0 * *n as f64 / self.beats.max(1) as f64
                )
            })
            .collect();
        format!(
            "{} detected beats without a reference beat (not scored), decided as: {}",
            self.beats,
            classes.join(", ")
        )
    }
}

/// Each fold's figures on its own records, out of fold: mean and range across folds.
#[derive(serde::Serialize)]
pub struct FoldFigures {
    /// (figure, value per fold).
    pub figures: Vec<(String, Vec<f64>)>,
}

impl FoldFigures {
    pub fn of(folds: &[Vec<String>], beats: &Beats, predicted: &[u32], names: &[&str]) -> Self {
        let classes = names.len();
        let reports: Vec<crate::metrics::Report> = folds
            .iter()
            .map(|fold| {
                let mine: Vec<usize> = (0..beats.len())
                    .filter(|&b| fold.contains(&beats.record[b]))
                    .collect();
                let labels: Vec<u32> = mine.iter().map(|&b| beats.labels[b]).collect();
                let decided: Vec<u32> = mine.iter().map(|&b| predicted[b]).collect();
                Confusion::new(&labels, &decided, classes).report(names)
            })
            .collect();
        let class =
            |r: &crate::metrics::Report, c: &str| r.classes.iter().find(|m| m.class == c).cloned();
        let mut figures = vec![
            (
                "accuracy".to_string(),
                reports.iter().map(|r| r.accuracy).collect(),
            ),
            (
                "macro F1".to_string(),
                reports.iter().map(|r| r.macro_f1).collect(),
            ),
        ];
        for c in ["S", "V"] {
            if reports.iter().all(|r| class(r, c).is_some()) {
                figures.push((
                    format!("{c} Se"),
                    reports
                        .iter()
                        .map(|r| class(r, c).map_or(0.0, |m| m.recall))
                        .collect(),
                ));
                figures.push((
                    format!("{c} +P"),
                    reports
                        .iter()
                        .map(|r| class(r, c).map_or(0.0, |m| m.precision))
                        .collect(),
                ));
            }
        }
        Self { figures }
    }

    pub fn table(&self) -> String {
        let mut out = String::from("per fold, mean (range)\n");
        for (name, values) in &self.figures {
            let n = values.len().max(1) as f64;
            let mean = values.iter().sum::<f64>() / n;
            let (lo, hi) = values
                .iter()
                .fold((f64::MAX, f64::MIN), |(a, b), &v| (a.min(v), b.max(v)));
            out += &format!("  {name:<9} {mean:.3} ({lo:.3}–{hi:.3})\n");
        }
        out.trim_end().to_string()
    }
}

/// Per-record adaptation ([`crate::adapt::PriorAdaptation`]) as chosen on a fold ensemble's
/// out-of-fold predictions of DS1.
#[derive(Clone, Debug, serde::Serialize)]
pub struct AdaptationChoice {
    pub adaptation: crate::adapt::PriorAdaptation,
    /// Decision offsets chosen on the adapted out-of-fold probabilities.
    pub offsets: Vec<f32>,
    /// Out-of-fold macro-F1 (validation) with the checkpoint's own rule, unadapted.
    pub oof_macro_f1_unadapted: f64,
    /// Out-of-fold macro-F1 for each strength tried, adapted and calibrated.
    pub oof_macro_f1_by_strength: Vec<(f64, f64)>,
    pub oof_report: crate::metrics::Report,
}

/// Prior strengths (pseudo-beats) tried: from maximum likelihood to nearly no adaptation.
pub const ADAPT_STRENGTHS: [f64; 5] = [0.0, 30.0, 100.0, 300.0, 1000.0];

/// Chooses the prior strength and the decision offsets on out-of-fold predictions `oof`
/// (validation: DS1's patients, each scored by models that did not train on them); `own` is
/// the checkpoint's config, whose whole rule is the unadapted baseline.
pub fn choose_adaptation(oof: &OutOfFold, names: &[&str], own: &ModelConfig) -> AdaptationChoice {
    use crate::data::formats::aami::AamiClass;
    let classes = names.len();
    let labels = &oof.beats.labels;
    let report = |probs: &[f32], offsets: &[f32]| {
        let predicted = crate::metrics::decide(probs, classes, offsets);
        Confusion::new(labels, &predicted, classes).report(names)
    };
    let own_rule = own.decide_records(&mut oof.probabilities.clone(), &oof.beats, &oof.other_lead);
    let unadapted = Confusion::new(labels, &own_rule, classes)
        .report(names)
        .macro_f1;
    let tuned = [AamiClass::S, AamiClass::V, AamiClass::F].map(|c| c.label() as usize);
    let mut best: Option<(
        f64,
        crate::adapt::PriorAdaptation,
        Vec<f32>,
        crate::metrics::Report,
    )> = None;
    let mut tried = vec![];
    for strength in ADAPT_STRENGTHS {
        let adaptation = crate::adapt::PriorAdaptation::from_probabilities(
            &oof.probabilities,
            classes,
            strength,
        );
        let mut probs = oof.probabilities.clone();
        adaptation.adapt_records(&mut probs, &oof.beats.record, classes);
        let offsets = crate::metrics::choose_offsets(&probs, labels, classes, &tuned);
        let r = report(&probs, &offsets);
        tried.push((strength, r.macro_f1));
        if best.as_ref().is_none_or(|b| r.macro_f1 > b.0) {
            best = Some((r.macro_f1, adaptation, offsets, r));
        }
    }
    let (_, adaptation, offsets, oof_report) = best.expect("strengths tried");
    AdaptationChoice {
        adaptation,
        offsets,
        oof_macro_f1_unadapted: unadapted,
        oof_macro_f1_by_strength: tried,
        oof_report,
    }
}

/// Chooses the irregular-rhythm gate on out-of-fold predictions `oof`, decided with the
/// checkpoint's offsets `own`.
pub fn choose_gate(oof: &OutOfFold, names: &[&str], own: &[f32]) -> crate::metrics::GateChoice {
    let decided = crate::metrics::decide(&oof.probabilities, names.len(), own);
    crate::metrics::choose_irregular_gate(&decided, &oof.beats.labels, &oof.beats.rr, names)
}
