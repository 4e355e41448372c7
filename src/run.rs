//! A run directory, as `train` and `transfer` write it and `evaluate`, `figures` and `--resume`
//! read it: `config.json` ([`RunConfig`], one type for both commands), `history.json`/`.csv`,
//! `best`/`last`/`resume.safetensors`, `metrics.json`, `figures/`.
//!
//! Every JSON file is read typed: a missing or mistyped field is an error naming the file and the
//! field's path (`config.json: args.seed: invalid type: string "1", expected u64`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::data::beats::reference::BeatReference;
use crate::error::{Error, Result};
pub use crate::json::{from_json_str, read_json, write_json};
use crate::loss::LossConfig;
use crate::model::config::ModelConfig;
use crate::optim::AdamConfig;
pub use crate::preprocessing::BeatModeName;
use crate::preprocessing::{Preprocessing, Task};

/// `config.json`: what a run was trained on and how. Written once when the run starts (and
/// rewritten on `--resume`); fields added after the first runs have defaults, so every committed
/// run directory still reads.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RunConfig {
    /// Heartbeat classes (`train`) or MI vs normal (`transfer`).
    #[serde(default)]
    pub task: Task,
    /// The settings the run was started with.
    pub args: RunSettings,
    /// The WFDB/PTB directory or beats CSV the run read.
    pub data_dir: PathBuf,
    pub mode: BeatModeName,
    /// Lead preference the beats were cut from.
    pub lead: String,
    pub model: ModelConfig,
    pub loss: LossConfig,
    pub adam: AdamConfig,
    /// The adapter, as `GpuContext::describe` names it.
    pub device: String,
    /// Beats per class in `train_before_augmentation`, `train`, `validation` and `test`.
    pub class_counts: BTreeMap<String, Vec<usize>>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub class_names: Vec<String>,
    /// How validation beats were chosen (a run that chose them otherwise cannot be resumed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub validation: Option<String>,
    /// Records per part (`transfer` with a patient split).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub records: Option<BTreeMap<String, usize>>,
    /// Tensors taken from the `--from` checkpoint (`transfer`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transferred: Option<Vec<String>>,
}

/// The settings of a `train` or `transfer` run. Fields one command does not have keep their
/// defaults; fields added later have defaults too, so older runs still read.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RunSettings {
    /// Model preset (`paper`, `paper-rr`, `tiny`, `tiny-rr`).
    pub preset: String,
    /// `intra`/`inter` (`train`) or `patient`/`beat` (`transfer`).
    pub split: String,
    pub epochs: usize,
    pub batch: usize,
    pub lr: f32,
    pub seed: u64,
    #[serde(default)]
    pub patience: usize,
    #[serde(default)]
    pub resume: bool,
    #[serde(default)]
    pub device: Option<String>,
    #[serde(default)]
    pub kernels: Option<crate::gpu::Kernels>,
    #[serde(default)]
    pub out: Option<PathBuf>,
    pub alpha1: f32,
    pub gamma_m: f32,
    pub alpha2: f32,
    pub gamma_n: f32,
    // --- `train`
    /// `focal` or `ce`.
    #[serde(default = "focal", skip_serializing_if = "is_focal")]
    pub loss: String,
    #[serde(default, skip_serializing_if = "crate::is_default")]
    pub class_alpha: bool,
    #[serde(default, skip_serializing_if = "crate::is_default")]
    pub augment: usize,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shape_dropout: Option<f32>,
    #[serde(default, skip_serializing_if = "crate::is_default")]
    pub beat_reference: BeatReference,
    #[serde(default, skip_serializing_if = "crate::is_default")]
    pub rhythm_head: usize,
    #[serde(default, skip_serializing_if = "crate::is_default")]
    pub rhythm_copies: f64,
    #[serde(default, skip_serializing_if = "crate::is_default")]
    pub calibrate: bool,
    /// Class-balanced epochs (`train::balanced_order`) instead of each beat once.
    #[serde(default, skip_serializing_if = "crate::is_default")]
    pub balanced_batches: bool,
    /// Patient-grouped cross-validation folds over DS1 (0: none), their models an ensemble.
    #[serde(default, skip_serializing_if = "crate::is_default")]
    pub folds: usize,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub train_csv: Option<PathBuf>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub test_csv: Option<PathBuf>,
    /// Records without the lead were read from their first signal.
    #[serde(default, skip_serializing_if = "crate::is_default")]
    pub fallback_lead: bool,
    /// Any unreadable record or dropped annotation stopped the run.
    #[serde(default, skip_serializing_if = "crate::is_default")]
    pub strict: bool,
    /// Other leads each record was also read at, as views of the same patient
    /// ([`crate::data::corpus::dataset::LoadOptions::views`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub views: Vec<String>,
    /// Each record was also read as another device would have taken it
    /// ([`crate::data::corpus::dataset::LoadOptions::device_view`], drawn under `seed`).
    #[serde(default, skip_serializing_if = "crate::is_default")]
    pub device_view: bool,
    /// Beats were cut where the QRS detector finds them
    /// ([`crate::data::corpus::dataset::LoadOptions::detect`]); those without a reference beat
    /// were left out of training.
    #[serde(default, skip_serializing_if = "crate::is_default")]
    pub detect: bool,
    // --- `transfer`
    /// The MIT-BIH checkpoint fine-tuned (none: trained from scratch).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<PathBuf>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub beats_csv: Vec<PathBuf>,
    /// `dense2` or `dense1`: the layers given a fresh head.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub head: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub feature_lr_scale: Option<f32>,
    #[serde(default, skip_serializing_if = "crate::is_default")]
    pub freeze_features: bool,
    // --- `distil`
    /// The `train --folds` ensemble whose out-of-fold probabilities the network learns (with
    /// `loss` `distil`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub teacher: Option<PathBuf>,
    /// Which teacher probabilities the fold students learn.
    #[serde(default, skip_serializing_if = "crate::is_default")]
    pub teacher_targets: crate::train::distil::TeacherTargets,
    /// More fold ensembles that teach with `clean` targets (each trained without some fold's
    /// records).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub clean_teachers: Vec<PathBuf>,
}

impl Default for RunSettings {
    /// The paper's recipe: `paper` network, intra-patient split, two-fold focal loss (α 0.25,
    /// γm 2, γn 0.5), Adam at 1e-4, 25 epochs, batch 32, seed 1.
    fn default() -> Self {
        Self {
            preset: "paper".into(),
            split: "intra".into(),
            epochs: 25,
            batch: 32,
            lr: 1e-4,
            seed: 1,
            patience: 0,
            resume: false,
            device: None,
            kernels: None,
            out: None,
            alpha1: 0.25,
            gamma_m: 2.0,
            alpha2: 0.25,
            gamma_n: 0.5,
            loss: focal(),
            class_alpha: false,
            augment: 0,
            shape_dropout: None,
            beat_reference: BeatReference::None,
            rhythm_head: 0,
            rhythm_copies: 0.0,
            calibrate: false,
            balanced_batches: false,
            folds: 0,
            train_csv: None,
            test_csv: None,
            fallback_lead: false,
            strict: false,
            views: vec![],
            device_view: false,
            detect: false,
            from: None,
            beats_csv: vec![],
            head: None,
            feature_lr_scale: None,
            freeze_features: false,
            teacher: None,
            teacher_targets: Default::default(),
            clean_teachers: vec![],
        }
    }
}

fn focal() -> String {
    "focal".into()
}

fn is_focal(loss: &str) -> bool {
    loss == "focal"
}

/// The kind of value a train setting takes, for callers that check arguments before they
/// become a [`RunSettings`] (the Python package).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SettingKind {
    Text,
    Integer,
    /// An integer is taken too.
    Number,
    Flag,
}

impl SettingKind {
    /// The kind's name as the Python package spells its type.
    pub fn python_type(self) -> &'static str {
        match self {
            SettingKind::Text => "str",
            SettingKind::Integer => "int",
            SettingKind::Number => "float",
            SettingKind::Flag => "bool",
        }
    }
}

/// The settings `train` takes from a library caller, named as [`RunSettings`]' fields (the
/// command's flags with underscores), with their kinds: the one list that callers check names
/// and types against. Where the data comes from, the lead and the device are arguments of
/// their own. A test checks every entry against [`RunSettings`].
pub const TRAIN_SETTINGS: [(&str, SettingKind); 22] = [
    ("preset", SettingKind::Text),
    ("split", SettingKind::Text),
    ("epochs", SettingKind::Integer),
    ("batch", SettingKind::Integer),
    ("lr", SettingKind::Number),
    ("seed", SettingKind::Integer),
    ("patience", SettingKind::Integer),
    ("resume", SettingKind::Flag),
    ("loss", SettingKind::Text),
    ("class_alpha", SettingKind::Flag),
    ("augment", SettingKind::Integer),
    ("shape_dropout", SettingKind::Number),
    ("beat_reference", SettingKind::Text),
    ("rhythm_head", SettingKind::Integer),
    ("rhythm_copies", SettingKind::Number),
    ("calibrate", SettingKind::Flag),
    ("balanced_batches", SettingKind::Flag),
    ("folds", SettingKind::Integer),
    ("alpha1", SettingKind::Number),
    ("gamma_m", SettingKind::Number),
    ("alpha2", SettingKind::Number),
    ("gamma_n", SettingKind::Number),
];

impl RunSettings {
    /// The default settings with `given` (a JSON object of [`TRAIN_SETTINGS`] names) on top:
    /// an unknown name, or a value of the wrong kind, is an error that names it.
    pub fn with_train_settings(given: &serde_json::Map<String, serde_json::Value>) -> Result<Self> {
        if let Some(unknown) = given
            .keys()
            .find(|k| !TRAIN_SETTINGS.iter().any(|(name, _)| name == k))
        {
            let names: Vec<&str> = TRAIN_SETTINGS.iter().map(|(n, _)| *n).collect();
            return Err(Error::Config(format!(
                "unknown train setting '{unknown}'; the settings are: {}",
                names.join(", ")
            )));
        }
        let mut merged = serde_json::to_value(Self::default()).expect("settings serialise");
        for (k, v) in given {
            merged[k] = v.clone();
        }
        serde_path_to_error::deserialize(merged)
            .map_err(|e| Error::Config(format!("train setting {}: {}", e.path(), e.inner())))
    }
}

/// Settings that may change when a run is resumed; every other one must match config.json.
pub const RESUMABLE_CHANGES: [&str; 7] = [
    "epochs", "lr", "patience", "device", "kernels", "resume", "out",
];

impl RunConfig {
    /// `dir/config.json`, typed.
    pub fn read(dir: &Path) -> Result<Self> {
        read_json(&dir.join("config.json"))
    }

    /// The config.json beside a checkpoint, if there is one.
    pub fn beside(checkpoint: &Path) -> Result<Option<Self>> {
        let path = checkpoint.with_file_name("config.json");
        match path.is_file() {
            true => read_json(&path).map(Some),
            false => Ok(None),
        }
    }

    pub fn write(&self, dir: &Path) -> Result<()> {
        write_json(&dir.join("config.json"), self)
    }

    /// The preprocessing this run's networks were trained with (for checkpoints written before
    /// checkpoints carried it).
    pub fn preprocessing(&self) -> Preprocessing {
        let mut pre = Preprocessing::of_run(
            self.task,
            &self.model,
            self.mode.0,
            &self.lead,
            &self.class_names,
        );
        pre.beat_positions = crate::data::beats::BeatPositions::trained(self.args.detect);
        pre
    }

    /// Refuses to resume with different data, model or recipe than `before` (the run's existing
    /// config.json at `path`) was started with, naming every field that differs.
    pub fn check_resumable(&self, before: &Self, path: &Path) -> Result<()> {
        let comparable = |c: &Self| {
            let mut v = serde_json::to_value(c).expect("serialisable");
            if let Some(o) = v.as_object_mut() {
                o.remove("device");
                o.remove("adam");
            }
            if let Some(a) = v.get_mut("args").and_then(|a| a.as_object_mut()) {
                for key in RESUMABLE_CHANGES {
                    a.remove(key);
                }
            }
            v
        };
        let (before, now) = (comparable(before), comparable(self));
        if before == now {
            return Ok(());
        }
        let null = serde_json::Value::Null;
        let mut differing = vec![];
        for (k, v) in now.as_object().into_iter().flatten() {
            let b = before.get(k).unwrap_or(&null);
            match (v.as_object(), b.as_object()) {
                (Some(o), Some(bo)) => {
                    let keys: std::collections::BTreeSet<&String> =
                        o.keys().chain(bo.keys()).collect();
                    for kk in keys {
                        let (now_v, was) =
                            (o.get(kk).unwrap_or(&null), bo.get(kk).unwrap_or(&null));
                        if now_v != was {
                            differing.push(format!("{k}.{kk} = {now_v} (was {was})"));
                        }
                    }
                }
                _ if b != v => differing.push(format!("{k} = {v} (was {b})")),
                _ => {}
            }
        }
        Err(Error::Config(format!(
            "--resume: this run differs from the one in {}: {}",
            path.display(),
            differing.join("; ")
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Map, Value};

    fn one(name: &str, value: Value) -> Result<RunSettings> {
        let mut given = Map::new();
        given.insert(name.to_string(), value);
        RunSettings::with_train_settings(&given)
    }

    /// Every listed setting is a field of RunSettings that takes a value of its kind and
    /// refuses one of another kind: the list cannot drift from the struct unnoticed.
    #[test]
    fn train_settings_match_run_settings() {
        let fields = serde_json::to_value(RunSettings::default()).unwrap();
        for (name, kind) in TRAIN_SETTINGS {
            let (good, bad) = match kind {
                SettingKind::Text => (json!("x"), json!(1)),
                SettingKind::Integer => (json!(3), json!("3")),
                SettingKind::Number => (json!(0.5), json!("0.5")),
                SettingKind::Flag => (json!(true), json!(1)),
            };
            // text settings take only their known values: the default one is good
            let good = match (kind, &fields[name]) {
                (SettingKind::Text, Value::String(_)) => fields[name].clone(),
                (SettingKind::Text, _) => json!("none"),
                _ => good,
            };
            assert!(one(name, good).is_ok(), "{name} refuses a {kind:?}");
            assert!(one(name, bad).is_err(), "{name} takes a value not {kind:?}");
        }
        let err = one("epoch", json!(1)).unwrap_err().to_string();
        assert!(err.contains("unknown train setting 'epoch'"), "{err}");
        let set = one("epochs", json!(7)).unwrap();
        assert_eq!(set.epochs, 7);
        assert_eq!(set.lr, RunSettings::default().lr);
    }
}
