//! A network's architecture and decision rule as plain data ([`ModelConfig`], [`DecisionRule`]):
//! what a checkpoint's metadata holds under `model`. Below everything that runs it, so that the
//! preprocessing, the run files and the GPU model all read it without reading each other.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::adapt::ClusterSmoothing;
use crate::checkpoint::{self, NamedTensor};
use crate::data::beats::reference::BeatReference;
use crate::data::beats::Beats;
use crate::error::{Error, Result};
use crate::metrics::OnTimeVGate;
use crate::ops::conv1d::Padding;
use crate::ops::dropout::pcg_hash;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ModelConfig {
    /// Samples per beat (187 at 125 Hz).
    pub input_len: usize,
    pub in_channels: usize,
    /// Output channels of each Conv–Conv–Pool pair; its length is the depth.
    pub pair_channels: Vec<usize>,
    pub kernel: usize,
    pub padding: Padding,
    pub pool: usize,
    /// Rate of every dropout layer (Dropout_1..7).
    pub dropout: f32,
    /// Width of Dense_1.
    pub dense: usize,
    pub classes: usize,
    /// Rhythm features joined to the flattened conv features before Dense_1 (the dual-stream
    /// network; [`crate::data::beats::rr::RR_FEATURES`]), 0 for the shape-only network. Each input
    /// row is then the beat's samples followed by its rhythm features.
    #[serde(default)]
    pub rr_features: usize,
    /// Rate of Dropout_6, on the conv stream's features where they enter Dense_1, when it differs
    /// from `dropout`. Dropping more of the shape makes a dual-stream network rely on the rhythm,
    /// which carries over to new patients where shapes learned on a few patients do not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shape_dropout: Option<f32>,
    /// What each beat is measured against before it enters the network: itself (the paper), or
    /// its record's median beat (per-patient normalisation, [`crate::data::beats::reference`]). Every
    /// tool that feeds the network applies it ([`BeatReference::apply`]) to whole records, before
    /// it splits, selects or augments them.
    #[serde(default, skip_serializing_if = "crate::is_default")]
    pub beat_reference: BeatReference,
    /// Width of the rhythm head (0: none): `Dense–ReLU–Dense` on the rhythm features alone, its
    /// logits added to the network's. A path to the output that the shape features cannot
    /// crowd out in Dense_1, for the classes that the rhythm tells (S).
    #[serde(default, skip_serializing_if = "crate::is_default")]
    pub rhythm_head: usize,
    /// Per-class offsets added to the log-probabilities before the argmax, chosen on the
    /// validation patients (`train --calibrate`, [`crate::metrics::choose_offsets`]); empty: the
    /// plain argmax. Every tool decides with [`Self::decide`].
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub decision_offsets: Vec<f32>,
    /// An S decision becomes N where the rhythm around the beat is irregular beyond this (the
    /// R–R features' rhythm irregularity, over about a minute): atrial fibrillation, whose beats
    /// AAMI labels N, makes N beats look premature. Chosen out of fold (`train --folds
    /// --calibrate`, `ecgwgpu calibrate`); `None`: no gate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub irregular_gate: Option<f32>,
    /// Each record's probabilities are smoothed over its groups of beats before the decision
    /// ([`crate::adapt::clusters`]). Chosen out of fold (`train --folds --calibrate`, `ecgwgpu
    /// calibrate`); `None`: not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub record_clusters: Option<ClusterSmoothing>,
    /// On a lead the network was not trained on, a V decision becomes N for a beat on time
    /// that the network is not sure is V (after everything above). Chosen out of fold on DS1
    /// read at such a lead (`ecgwgpu calibrate --view V1,V2,V4,V5 --other-lead-only`);
    /// `None`: not. Beats at the training lead never pass through it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub other_lead_v_gate: Option<OnTimeVGate>,
}

/// What turns a network's probabilities into classes beyond its argmax, chosen on validation
/// and kept in its checkpoint's [`ModelConfig`].
#[derive(Clone, Debug, Default, PartialEq)]
pub struct DecisionRule {
    pub offsets: Vec<f32>,
    pub irregular_gate: Option<f32>,
    pub record_clusters: Option<ClusterSmoothing>,
    pub other_lead_v_gate: Option<OnTimeVGate>,
}

impl DecisionRule {
    /// `config` with this rule.
    pub fn apply(&self, config: &ModelConfig) -> ModelConfig {
        ModelConfig {
            decision_offsets: self.offsets.clone(),
            irregular_gate: self.irregular_gate,
            record_clusters: self.record_clusters,
            other_lead_v_gate: self.other_lead_v_gate,
            ..config.clone()
        }
    }

    /// Writes the checkpoint read from `from` (its `tensors` and `meta`, one network or an
    /// ensemble) to `to` with this rule in its config: the tensors are copied as they are.
    pub fn save_checkpoint(
        &self,
        tensors: &[NamedTensor],
        mut meta: BTreeMap<String, String>,
        from: &Path,
        to: &Path,
    ) -> Result<()> {
        let config = ModelConfig::from_metadata(&meta, from)?;
        self.apply(&config).write_metadata(&mut meta);
        checkpoint::save(to, tensors, &meta)
    }
}

impl ModelConfig {
    /// The paper's listing with our widths: 408,357 parameters at length 187.
    pub fn paper() -> Self {
        Self {
            input_len: 187,
            in_channels: 1,
            pair_channels: vec![32, 32, 64, 64, 128, 128],
            kernel: 5,
            padding: Padding::Same,
            pool: 2,
            dropout: 0.1,
            dense: 128,
            classes: 5,
            rr_features: 0,
            shape_dropout: None,
            beat_reference: BeatReference::None,
            rhythm_head: 0,
            decision_offsets: vec![],
            irregular_gate: None,
            record_clusters: None,
            other_lead_v_gate: None,
        }
    }

    /// The paper's network with a rhythm stream: the beat's eight R–R features joined to the
    /// conv features before Dense_1 (1,024 more weights).
    pub fn paper_rr() -> Self {
        Self {
            rr_features: crate::data::beats::rr::NETWORK_RR_FEATURES,
            ..Self::paper()
        }
    }

    /// A small network of the same shape, for tests and quick runs.
    pub fn tiny() -> Self {
        Self {
            pair_channels: vec![4, 8],
            dense: 16,
            ..Self::paper()
        }
    }

    /// The paper's depth (six pairs) at a quarter of its width: a network that trains on the
    /// whole of DS1 in minutes on CPU cores (lavapipe), for runs that do not get a GPU.
    pub fn mid() -> Self {
        Self {
            pair_channels: vec![8, 8, 16, 16, 32, 32],
            dense: 32,
            ..Self::paper()
        }
    }

    pub fn preset(name: &str) -> Result<Self> {
        let rr = crate::data::beats::rr::NETWORK_RR_FEATURES;
        match name {
            "paper" => Ok(Self::paper()),
            "paper-rr" => Ok(Self::paper_rr()),
            "mid" => Ok(Self::mid()),
            "mid-rr" => Ok(Self {
                rr_features: rr,
                ..Self::mid()
            }),
            "tiny" => Ok(Self::tiny()),
            "tiny-rr" => Ok(Self {
                rr_features: rr,
                ..Self::tiny()
            }),
            other => Err(Error::Config(format!(
                "unknown preset '{other}' (known: paper, paper-rr, mid, mid-rr, tiny, tiny-rr)"
            ))),
        }
    }

    /// Rate of dropout layer `layer` (0-based: one after each pair's pool, then Dense_1's).
    pub fn dropout_rate(&self, layer: usize) -> f32 {
        match self.shape_dropout {
            Some(rate) if layer + 1 == self.pair_channels.len() => rate,
            _ => self.dropout,
        }
    }

    /// The class of each row of `probs` (`[n, classes]`), with the decision offsets.
    pub fn decide(&self, probs: &[f32]) -> Vec<u32> {
        crate::metrics::decide(probs, self.classes, &self.decision_offsets)
    }

    /// [`Self::decide`] for beats with their R–R features (`rhythm`, one per row), then the
    /// irregular-rhythm gate and, for the beats `other_lead` marks (read at a lead the network
    /// was not trained on, [`crate::preprocessing::Preprocessing::other_lead_beats`]; empty:
    /// none), the on-time V gate, when the network has them.
    pub fn decide_beats(
        &self,
        probs: &[f32],
        rhythm: &[crate::data::beats::rr::Rhythm],
        other_lead: &[bool],
    ) -> Vec<u32> {
        let mut decided = crate::metrics::decide_gated(
            probs,
            self.classes,
            &self.decision_offsets,
            self.irregular_gate,
            rhythm,
        );
        if let Some(gate) = &self.other_lead_v_gate {
            gate.apply(&mut decided, probs, self.classes, rhythm, other_lead);
        }
        decided
    }

    /// The whole decision rule for the beats of whole records (`beats`, one row of `probs`
    /// each): `probs` smoothed in place over each record's groups of beats when the network has
    /// record clusters, then [`Self::decide_beats`] (`other_lead` as there).
    pub fn decide_records(
        &self,
        probs: &mut [f32],
        beats: &Beats,
        other_lead: &[bool],
    ) -> Vec<u32> {
        if let Some(clusters) = &self.record_clusters {
            clusters.smooth_records(beats, probs, self.classes);
        }
        self.decide_beats(probs, &beats.rr, other_lead)
    }

    /// Values per input row: the beat's samples, then its rhythm features.
    pub fn row_len(&self) -> usize {
        self.in_channels * self.input_len + self.rr_features
    }

    /// The input rows of `beats` for this network: their samples as they are, or each beat's
    /// samples followed by its R–R features for a dual-stream network.
    pub fn input_rows<'b>(
        &self,
        beats: &'b crate::data::beats::Beats,
    ) -> std::borrow::Cow<'b, [f32]> {
        if self.rr_features == 0 {
            return std::borrow::Cow::Borrowed(&beats.x);
        }
        let per_beat = beats.x.len() / beats.len().max(1);
        let mut rows = Vec::with_capacity(beats.len() * (per_beat + self.rr_features));
        for (beat, rr) in beats.x.chunks(per_beat.max(1)).zip(&beats.rr) {
            rows.extend_from_slice(beat);
            rows.extend_from_slice(&rr[..self.rr_features]);
        }
        std::borrow::Cow::Owned(rows)
    }

    /// Length after each pair, then the flattened width; errors if the input is too short.
    pub fn flat_features(&self) -> Result<usize> {
        let mut len = self.input_len;
        for (i, _) in self.pair_channels.iter().enumerate() {
            for _ in 0..2 {
                len = self
                    .padding
                    .geometry(len, self.kernel)
                    .ok_or_else(|| {
                        Error::Config(format!("input too short for conv pair {}", i + 1))
                    })?
                    .1;
            }
            if len < self.pool {
                return Err(Error::Config(format!(
                    "input too short to pool after pair {}",
                    i + 1
                )));
            }
            len /= self.pool;
        }
        Ok(len
            * self
                .pair_channels
                .last()
                .copied()
                .unwrap_or(self.in_channels))
    }

    pub fn validate(&self) -> Result<()> {
        if self.pair_channels.is_empty() || self.pair_channels.contains(&0) {
            return Err(Error::Config(
                "need at least one conv pair, all widths > 0".into(),
            ));
        }
        if self.kernel == 0
            || self.pool == 0
            || self.dense == 0
            || self.classes < 2
            || self.in_channels == 0
        {
            return Err(Error::Config(
                "kernel, pool, dense, in_channels must be > 0 and classes ≥ 2".into(),
            ));
        }
        if self.rr_features > crate::data::beats::rr::RR_FEATURES.len() {
            return Err(Error::Config(format!(
                "rr_features {} > the {} R–R features a beat has",
                self.rr_features,
                crate::data::beats::rr::RR_FEATURES.len()
            )));
        }
        if self.rhythm_head > 0 && self.rr_features == 0 {
            return Err(Error::Config(
                "a rhythm head needs rhythm features (a dual-stream preset: paper-rr, tiny-rr)"
                    .into(),
            ));
        }
        if !self.decision_offsets.is_empty() && self.decision_offsets.len() != self.classes {
            return Err(Error::Config(format!(
                "{} decision offsets for {} classes",
                self.decision_offsets.len(),
                self.classes
            )));
        }
        for (name, rate) in [
            ("dropout", Some(self.dropout)),
            ("shape_dropout", self.shape_dropout),
        ] {
            if let Some(rate) = rate.filter(|r| !(0.0..1.0).contains(r)) {
                return Err(Error::Config(format!("{name} {rate} must be in [0, 1)")));
            }
        }
        self.flat_features().map(|_| ())
    }

    /// Parameter names (PyTorch style) and shapes, in model order.
    pub fn param_shapes(&self) -> Vec<(String, Vec<usize>)> {
        let mut out = vec![];
        let mut c_in = self.in_channels;
        for (i, &c) in self.pair_channels.iter().enumerate() {
            for j in 1..=2 {
                out.push((
                    format!("conv{}_{j}.weight", i + 1),
                    vec![c, c_in, self.kernel],
                ));
                out.push((format!("conv{}_{j}.bias", i + 1), vec![c]));
                c_in = c;
            }
        }
        let flat = self.flat_features().unwrap_or(0);
        out.push((
            "dense1.weight".into(),
            vec![self.dense, flat + self.rr_features],
        ));
        out.push(("dense1.bias".into(), vec![self.dense]));
        out.push(("dense2.weight".into(), vec![self.classes, self.dense]));
        out.push(("dense2.bias".into(), vec![self.classes]));
        if self.rhythm_head > 0 {
            out.push((
                "rhythm1.weight".into(),
                vec![self.rhythm_head, self.rr_features],
            ));
            out.push(("rhythm1.bias".into(), vec![self.rhythm_head]));
            out.push((
                "rhythm2.weight".into(),
                vec![self.classes, self.rhythm_head],
            ));
            out.push(("rhythm2.bias".into(), vec![self.classes]));
        }
        out
    }

    /// The parameter shapes of `members` networks of this config run as one grouped network:
    /// each parameter of every member stacked along its first axis.
    pub fn grouped_param_shapes(&self, members: usize) -> Vec<(String, Vec<usize>)> {
        let mut shapes = self.param_shapes();
        for (_, shape) in &mut shapes {
            shape[0] *= members;
        }
        shapes
    }

    pub fn param_count(&self) -> usize {
        self.param_shapes()
            .iter()
            .map(|(_, s)| s.iter().product::<usize>())
            .sum()
    }

    /// Forward multiply-adds × 2 per beat (convolutions and dense layers).
    pub fn forward_flops(&self) -> usize {
        let mut flops = 0;
        let mut len = self.input_len;
        let mut c_in = self.in_channels;
        for &c in &self.pair_channels {
            for _ in 0..2 {
                len = self.padding.geometry(len, self.kernel).map_or(0, |g| g.1);
                flops += 2 * len * c * c_in * self.kernel;
                c_in = c;
            }
            len /= self.pool;
        }
        flops
            + 2 * ((len * c_in + self.rr_features) * self.dense + self.dense * self.classes)
            + 2 * self.rhythm_head * (self.rr_features + self.classes)
    }
}

/// Dropout layer `layer` (0-based, Dropout_1 = 0) draws its mask from this seed.
pub fn dropout_seed(model_seed: u64, layer: usize) -> u32 {
    pcg_hash((model_seed as u32) ^ pcg_hash(layer as u32 + 1))
}

/// Checkpoint metadata key holding the model config as JSON.
const MODEL_KEY: &str = "model";

impl ModelConfig {
    /// Writes this config into checkpoint metadata (`meta`), replacing the one there: what
    /// [`crate::model::Model::save`] and [`crate::model::Model::save_ensemble`] store, and how a decision rule re-chosen
    /// after training (`ecgwgpu calibrate`) reaches the file without touching its tensors.
    pub fn write_metadata(&self, meta: &mut BTreeMap<String, String>) {
        meta.insert(
            MODEL_KEY.to_string(),
            serde_json::to_string(self).expect("serialisable"),
        );
    }

    /// The config saved in a checkpoint's metadata by [`crate::model::Model::save`], validated; `path` names
    /// the checkpoint in errors.
    pub fn from_metadata(meta: &BTreeMap<String, String>, path: &Path) -> Result<Self> {
        let text = meta.get(MODEL_KEY).ok_or_else(|| {
            Error::data(
                path,
                MODEL_KEY,
                "no model config in the metadata (not written by ecgwgpu?)",
            )
        })?;
        let config: Self =
            serde_json::from_str(text).map_err(|e| Error::data(path, MODEL_KEY, e.to_string()))?;
        config.validate()?;
        Ok(config)
    }
}
