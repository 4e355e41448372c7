//! What turns a recording into network input, and network output into classes. Every checkpoint
//! carries it (safetensors metadata key `preprocessing`), so a consumer cuts beats the way the
//! network saw them in training: a network trained on centred windows is never scored on Kachuee
//! beats because a flag was left at its default.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::config::ModelConfig;
use crate::data::beats::reference::BeatReference;
use crate::data::beats::{BeatMode, BeatPositions, BEAT_LEN, FS};
use crate::data::formats::aami::CLASS_NAMES;
use crate::error::{Error, Result};

/// What a network's outputs mean.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Task {
    /// AAMI heartbeat classes (N, S, V, F, Q) per beat, from MIT-BIH-style annotations.
    #[default]
    Heartbeat,
    /// Myocardial infarction vs normal per beat (PTB), labelled per record.
    Mi,
}

/// The signal side of a network: beat cutting, rate, window, lead and the meaning of its outputs.
/// The beat reference and R–R features, which shape the input rows, live in [`ModelConfig`] and
/// are stored beside these fields in the checkpoint.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Preprocessing {
    pub task: Task,
    /// One name per output, in output order.
    pub class_names: Vec<String>,
    pub beat_mode: BeatMode,
    /// Rate the lead is resampled to before beats are cut, in Hz.
    pub rate_hz: f64,
    /// Samples per beat.
    pub window: usize,
    /// Lead preference: header signal descriptions, comma-separated, first match wins.
    pub lead: String,
    /// Where an annotated recording's beats are cut: at the annotations, or at the QRS
    /// detector's peaks matched to them, as a network trained on the detector's beats saw them.
    #[serde(default, skip_serializing_if = "crate::is_default")]
    pub beat_positions: BeatPositions,
}

/// A beat mode as config.json spells it: `kachuee`, or `Kachuee` in runs written before the
/// config was typed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct BeatModeName(#[serde(deserialize_with = "beat_mode_any_case")] pub BeatMode);

fn beat_mode_any_case<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> std::result::Result<BeatMode, D::Error> {
    let text = String::deserialize(d)?;
    let lower = text.to_lowercase();
    BeatMode::ALL
        .into_iter()
        .find(|m| m.name() == lower)
        .ok_or_else(|| {
            serde::de::Error::custom(format!(
                "unknown beat mode {text:?} (expected kachuee, centred or kachuee-beat)"
            ))
        })
}

/// The fields of a training run's config.json (`run::RunConfig`) that say how its networks' input
/// was cut: what a checkpoint written before checkpoints carried their preprocessing falls back
/// on. Read here, so that loading a model does not depend on the run layer above it.
#[derive(Deserialize)]
struct RunInput {
    #[serde(default)]
    task: Task,
    mode: BeatModeName,
    lead: String,
    model: ModelConfig,
    #[serde(default)]
    class_names: Vec<String>,
}

impl Preprocessing {
    /// The preprocessing of a training run's networks, from its config.json's fields.
    pub fn of_run(
        task: Task,
        model: &ModelConfig,
        mode: BeatMode,
        lead: &str,
        class_names: &[String],
    ) -> Self {
        let mut pre = Self::for_task(task, model.classes);
        pre.beat_mode = mode;
        pre.lead = lead.to_string();
        if class_names.len() == model.classes {
            pre.class_names = class_names.to_vec();
        }
        pre
    }

    /// A checkpoint's preprocessing: stored in its metadata, or for a checkpoint written before
    /// it was stored, its training run's (the config.json beside it, when that run trained this
    /// network), else the paper's for the task its outputs imply.
    pub fn of_checkpoint(
        meta: &BTreeMap<String, String>,
        config: &ModelConfig,
        path: &Path,
    ) -> Result<Self> {
        if let Some(pre) = Self::from_metadata(meta, config, path)? {
            return Ok(pre);
        }
        let guessed = || Self::for_task(Self::guess_task(config.classes), config.classes);
        let run_file = path.with_file_name("config.json");
        if path.file_name().is_none() || !path.is_file() || !run_file.is_file() {
            return Ok(guessed());
        }
        let run: RunInput = crate::json::read_json(&run_file)?;
        Ok(match run.model.param_shapes() == config.param_shapes() {
            true => Self::of_run(
                run.task,
                &run.model,
                run.mode.0,
                &run.lead,
                &run.class_names,
            ),
            false => guessed(),
        })
    }

    /// The paper's preprocessing for a network with `config`'s outputs: Kachuee beats at 125 Hz,
    /// 187 samples, MLII for heartbeat classes, lead II for MI.
    pub fn for_task(task: Task, classes: usize) -> Self {
        let (names, lead): (Vec<String>, &str) = match task {
            Task::Heartbeat if classes == CLASS_NAMES.len() => {
                (CLASS_NAMES.iter().map(|s| s.to_string()).collect(), "MLII")
            }
            Task::Heartbeat => ((0..classes).map(|c| c.to_string()).collect(), "MLII"),
            Task::Mi => (
                crate::data::corpus::ptb::CLASS_NAMES
                    .iter()
                    .map(|s| s.to_string())
                    .collect(),
                "II",
            ),
        };
        Self {
            task,
            class_names: names,
            beat_mode: BeatMode::Kachuee,
            rate_hz: FS,
            window: BEAT_LEN,
            lead: lead.into(),
            beat_positions: BeatPositions::Annotations,
        }
    }

    /// The task a checkpoint without preprocessing was trained for, from its outputs: the
    /// `transfer` command's networks are the only two-class ones it writes.
    pub fn guess_task(classes: usize) -> Task {
        match classes {
            2 => Task::Mi,
            _ => Task::Heartbeat,
        }
    }

    /// Refuses what this build cannot do: beats are cut at 125 Hz into 187 samples.
    pub fn validate(&self, config: &ModelConfig, path: &Path) -> Result<()> {
        let bad = |what: String| Err(Error::data(path, METADATA_KEY, what));
        if self.rate_hz != FS || self.window != BEAT_LEN {
            return bad(format!(
                "beats at {} Hz, {} samples: this build cuts {FS} Hz, {BEAT_LEN}-sample beats",
                self.rate_hz, self.window
            ));
        }
        if self.window != config.input_len {
            return bad(format!(
                "window {} samples, but the network takes {}",
                self.window, config.input_len
            ));
        }
        if self.class_names.len() != config.classes {
            return bad(format!(
                "{} class names for a network with {} outputs",
                self.class_names.len(),
                config.classes
            ));
        }
        Ok(())
    }

    /// Whether the network was trained on `lead` (a lead name, or a preference list: any of
    /// its leads).
    pub fn trained_on(&self, lead: &str) -> bool {
        let trained: Vec<&str> = self.lead.split(',').map(str::trim).collect();
        lead.split(',')
            .map(str::trim)
            .any(|l| trained.iter().any(|t| t.eq_ignore_ascii_case(l)))
    }

    /// Which of `beats` were read at a lead the network was not trained on: a view's lead is
    /// in its record's name (`RECORD~LEAD`, `RECORD~LEAD@RATEHz`), every other beat's is
    /// `read_at`. Empty when none was (what the decision rule takes for "none").
    pub fn other_lead_beats(&self, beats: &crate::data::beats::Beats, read_at: &str) -> Vec<bool> {
        use crate::data::corpus::dataset::VIEW_SEPARATOR;
        let own = self.trained_on(read_at);
        let flags: Vec<bool> = beats
            .record
            .iter()
            .map(|r| match r.split_once(VIEW_SEPARATOR) {
                Some((_, view)) => !self.trained_on(view.split('@').next().unwrap_or(view)),
                None => !own,
            })
            .collect();
        match flags.contains(&true) {
            true => flags,
            false => vec![],
        }
    }

    /// The first lead of the preference list (for messages).
    pub fn first_lead(&self) -> &str {
        self.lead.split(',').next().unwrap_or_default().trim()
    }

    /// One line for reports: "centred beats, 125 Hz × 187, lead MLII, relative to the record's
    /// median beat, 8 R–R features".
    pub fn describe(&self, config: &ModelConfig) -> String {
        let mut text = format!(
            "{} beats at {} Hz × {} samples, lead {}",
            match self.beat_mode {
                BeatMode::Kachuee => "Kachuee",
                BeatMode::Centred => "centred",
                BeatMode::KachueeBeat => "Kachuee per-beat-normalised",
            },
            self.rate_hz,
            self.window,
            self.lead
        );
        if config.beat_reference == BeatReference::RecordMedian {
            text += ", relative to the record's median beat";
        }
        if config.rr_features > 0 {
            text += &format!(", {} R–R features", config.rr_features);
        }
        if self.beat_positions != BeatPositions::Annotations {
            text += &format!("; annotated beats cut {}", self.beat_positions.describe());
        }
        text
    }

    /// The metadata entry of a checkpoint: these fields plus the model's beat reference and
    /// R–R feature count, so the file alone says how its input is made.
    pub fn to_metadata(&self, config: &ModelConfig) -> (String, String) {
        let stored = Stored {
            pre: self.clone(),
            beat_reference: config.beat_reference,
            rr_features: config.rr_features,
        };
        (
            METADATA_KEY.to_string(),
            serde_json::to_string(&stored).expect("serialisable"),
        )
    }

    /// The preprocessing stored in a checkpoint's metadata, or `None` for a checkpoint written
    /// before it was stored. `path` names the checkpoint in errors.
    pub fn from_metadata(
        meta: &BTreeMap<String, String>,
        config: &ModelConfig,
        path: &Path,
    ) -> Result<Option<Self>> {
        let Some(text) = meta.get(METADATA_KEY) else {
            return Ok(None);
        };
        let stored: Stored = crate::json::from_json_str(text, path, METADATA_KEY)?;
        if stored.beat_reference != config.beat_reference
            || stored.rr_features != config.rr_features
        {
            return Err(Error::data(
                path,
                METADATA_KEY,
                format!(
                    "beat reference {:?} and {} R–R features, but the model config says {:?} and {}",
                    stored.beat_reference,
                    stored.rr_features,
                    config.beat_reference,
                    config.rr_features
                ),
            ));
        }
        stored.pre.validate(config, path)?;
        Ok(Some(stored.pre))
    }
}

/// Checkpoint metadata key holding the preprocessing as JSON.
pub const METADATA_KEY: &str = "preprocessing";

#[derive(Serialize, Deserialize)]
struct Stored {
    #[serde(flatten)]
    pre: Preprocessing,
    beat_reference: BeatReference,
    rr_features: usize,
}
