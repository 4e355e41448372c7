//! The paper's network, built from a config: `depth` pairs of
//! `Conv–ReLU–Conv–ReLU–MaxPool–Dropout`, then `Flatten–Dense–ReLU–Dropout–Dense` (logits; the
//! softmax lives in the loss). Parameters live in one flat GPU buffer (see [`ParamStore`]).

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use ndarray::{Array2, Array3, ArrayD, Ix1, Ix2, Ix3};
use serde::{Deserialize, Serialize};

use crate::adapt::ClusterSmoothing;
use crate::autograd::{Graph, Var};
use crate::checkpoint::{self, NamedTensor};
use crate::data::beats::reference::BeatReference;
use crate::data::beats::Beats;
use crate::error::{Error, Result};
use crate::gpu::{storage_buffer, GpuContext, Tensor, OFFSET_ALIGN_BYTES};
use crate::ops::add::Add;
use crate::ops::concat::{self, Columns, Concat};
use crate::ops::conv1d::{self, Conv1d, Padding};
use crate::ops::dense::{self, Dense};
use crate::ops::dropout::{self, pcg_hash, Dropout};
use crate::ops::maxpool1d::{self, MaxPool1d};
use crate::ops::relu::{self, Relu};
use crate::preprocessing::Preprocessing;
use crate::rng::Rng;

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
}

/// What turns a network's probabilities into classes beyond its argmax, chosen on validation
/// and kept in its checkpoint's [`ModelConfig`].
#[derive(Clone, Debug, Default, PartialEq)]
pub struct DecisionRule {
    pub offsets: Vec<f32>,
    pub irregular_gate: Option<f32>,
    pub record_clusters: Option<ClusterSmoothing>,
}

impl DecisionRule {
    /// `config` with this rule.
    pub fn apply(&self, config: &ModelConfig) -> ModelConfig {
        ModelConfig {
            decision_offsets: self.offsets.clone(),
            irregular_gate: self.irregular_gate,
            record_clusters: self.record_clusters,
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
    /// irregular-rhythm gate when the network has one.
    pub fn decide_beats(
        &self,
        probs: &[f32],
        rhythm: &[crate::data::beats::rr::Rhythm],
    ) -> Vec<u32> {
        crate::metrics::decide_gated(
            probs,
            self.classes,
            &self.decision_offsets,
            self.irregular_gate,
            rhythm,
        )
    }

    /// The whole decision rule for the beats of whole records (`beats`, one row of `probs`
    /// each): `probs` smoothed in place over each record's groups of beats when the network has
    /// record clusters, then [`Self::decide_beats`].
    pub fn decide_records(&self, probs: &mut [f32], beats: &Beats) -> Vec<u32> {
        if let Some(clusters) = &self.record_clusters {
            clusters.smooth_records(beats, probs, self.classes);
        }
        self.decide_beats(probs, &beats.rr)
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

/// One named parameter inside the flat buffer.
#[derive(Clone, Debug)]
pub struct ParamSpec {
    pub name: String,
    pub shape: Vec<usize>,
    /// In f32 elements, aligned so each parameter can be bound on its own.
    pub offset: usize,
}

impl ParamSpec {
    pub fn numel(&self) -> usize {
        self.shape.iter().product()
    }
}

/// All parameters in one buffer and their gradients in a second of identical layout.
pub struct ParamStore {
    pub specs: Vec<ParamSpec>,
    pub values: Tensor,
    pub grads: Tensor,
}

impl ParamStore {
    pub fn new(ctx: &GpuContext, shapes: &[(String, Vec<usize>)]) -> Self {
        let align = (OFFSET_ALIGN_BYTES / 4) as usize;
        let mut offset = 0;
        let specs = shapes
            .iter()
            .map(|(name, shape)| {
                let spec = ParamSpec {
                    name: name.clone(),
                    shape: shape.clone(),
                    offset,
                };
                offset += spec.numel().next_multiple_of(align);
                spec
            })
            .collect();
        let whole = |label| {
            Tensor::whole(
                Arc::new(storage_buffer(ctx, offset as u64 * 4, label)),
                &[offset],
            )
        };
        Self {
            specs,
            values: whole("parameters"),
            grads: whole("gradients"),
        }
    }

    /// Elements of the flat buffer before the first dense layer: the convolutional feature
    /// extractor, which transfer learning freezes or fine-tunes slowly.
    pub fn feature_len(&self) -> usize {
        self.specs
            .iter()
            .find(|s| s.name.starts_with("dense"))
            .map_or(self.flat_len(), |s| s.offset)
    }

    /// Total elements including alignment padding (the length Adam runs over).
    pub fn flat_len(&self) -> usize {
        self.values.numel()
    }

    fn view_of(&self, flat: &Tensor, i: usize) -> Tensor {
        let s = &self.specs[i];
        Tensor::view(
            Arc::new(flat.buffer().clone()),
            s.offset as u64 * 4,
            &s.shape,
        )
    }

    pub fn value(&self, i: usize) -> Tensor {
        self.view_of(&self.values, i)
    }

    pub fn grad(&self, i: usize) -> Tensor {
        self.view_of(&self.grads, i)
    }

    /// Uploads one array per parameter (model order).
    pub fn upload(&self, ctx: &GpuContext, arrays: &[Vec<f32>]) -> Result<()> {
        let mut flat = vec![0.0f32; self.flat_len()];
        if arrays.len() != self.specs.len() {
            return Err(Error::Config(format!(
                "{} arrays for {} parameters",
                arrays.len(),
                self.specs.len()
            )));
        }
        for (s, a) in self.specs.iter().zip(arrays) {
            if a.len() != s.numel() {
                return Err(Error::Shape {
                    op: "parameter upload".into(),
                    detail: format!("{}: {} values for shape {:?}", s.name, a.len(), s.shape),
                });
            }
            flat[s.offset..s.offset + a.len()].copy_from_slice(a);
        }
        self.values.write(ctx, &flat)
    }

    fn split(&self, flat: &[f32]) -> Vec<Vec<f32>> {
        self.specs
            .iter()
            .map(|s| flat[s.offset..s.offset + s.numel()].to_vec())
            .collect()
    }

    /// Downloads every parameter (model order).
    pub fn download(&self, ctx: &GpuContext) -> Result<Vec<Vec<f32>>> {
        Ok(self.split(&self.values.read(ctx)?))
    }

    /// Every parameter under its PyTorch name (model order), as checkpoints store them.
    pub fn download_named(&self, ctx: &GpuContext) -> Result<Vec<NamedTensor>> {
        Ok(self
            .specs
            .iter()
            .zip(self.download(ctx)?)
            .map(|(s, data)| NamedTensor {
                name: s.name.clone(),
                shape: s.shape.clone(),
                data,
            })
            .collect())
    }

    /// Uploads checkpoint tensors after checking that they are exactly this model's parameters
    /// (names, order, shapes); `path` is named in the error otherwise.
    pub fn upload_named(
        &self,
        ctx: &GpuContext,
        tensors: Vec<NamedTensor>,
        path: &Path,
    ) -> Result<()> {
        if tensors.len() != self.specs.len() {
            return Err(Error::data(
                path,
                "tensors",
                format!(
                    "{} tensors, the model has {}",
                    tensors.len(),
                    self.specs.len()
                ),
            ));
        }
        for (t, s) in tensors.iter().zip(&self.specs) {
            if t.name != s.name || t.shape != s.shape {
                return Err(Error::data(
                    path,
                    &t.name,
                    format!("{:?}, the model expects {} {:?}", t.shape, s.name, s.shape),
                ));
            }
        }
        self.upload(
            ctx,
            &tensors.into_iter().map(|t| t.data).collect::<Vec<_>>(),
        )
    }

    /// Downloads every gradient (model order).
    pub fn download_grads(&self, ctx: &GpuContext) -> Result<Vec<Vec<f32>>> {
        Ok(self.split(&self.grads.read(ctx)?))
    }
}

/// He-normal weights for layers followed by ReLU, Glorot-uniform for the output layer, zero biases.
pub fn init_params(config: &ModelConfig, seed: u64) -> Vec<Vec<f32>> {
    let mut rng = Rng::new(seed);
    let shapes = config.param_shapes();
    shapes
        .iter()
        .map(|(name, shape)| {
            let n: usize = shape.iter().product();
            if name.ends_with(".bias") {
                return vec![0.0; n];
            }
            let fan_in: usize = shape[1..].iter().product();
            // the layers that give logits: Glorot; the others feed a ReLU: He
            if name == "dense2.weight" || name == "rhythm2.weight" {
                let limit = (6.0 / (fan_in + shape[0]) as f64).sqrt();
                (0..n).map(|_| rng.range(-limit, limit) as f32).collect()
            } else {
                let std = (2.0 / fan_in as f64).sqrt();
                (0..n).map(|_| (rng.normal() * std) as f32).collect()
            }
        })
        .collect()
}

/// Checkpoint metadata key holding the model config as JSON.
const MODEL_KEY: &str = "model";
/// Checkpoint metadata: the number of members of an ensemble (absent for one network).
const ENSEMBLE_KEY: &str = "ensemble";

impl ModelConfig {
    /// Writes this config into checkpoint metadata (`meta`), replacing the one there: what
    /// [`Model::save`] and [`Model::save_ensemble`] store, and how a decision rule re-chosen
    /// after training (`ecgwgpu calibrate`) reaches the file without touching its tensors.
    pub fn write_metadata(&self, meta: &mut BTreeMap<String, String>) {
        meta.insert(
            MODEL_KEY.to_string(),
            serde_json::to_string(self).expect("serialisable"),
        );
    }

    /// The config saved in a checkpoint's metadata by [`Model::save`], validated; `path` names
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

/// Which layers a transferred network gets afresh ([`Model::transfer`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "cli", derive(clap::ValueEnum))]
#[serde(rename_all = "lowercase")]
pub enum NewHead {
    /// Replace Dense_2 (the output layer) only; Dense_1 keeps its trained weights.
    Dense2,
    /// Replace Dense_1 and Dense_2.
    Dense1,
}

/// A model: its config, how recordings become its input (saved with it), the seed its dropout
/// masks derive from, and its parameters on the GPU.
pub struct Model {
    pub config: ModelConfig,
    pub preprocessing: Preprocessing,
    pub seed: u64,
    pub params: ParamStore,
}

impl Model {
    /// A freshly initialised model, with the paper's preprocessing for its task (set
    /// [`Self::preprocessing`] to what its training data was cut with).
    pub fn new(ctx: &GpuContext, config: ModelConfig, seed: u64) -> Result<Self> {
        config.validate()?;
        let params = ParamStore::new(ctx, &config.param_shapes());
        params.upload(ctx, &init_params(&config, seed))?;
        let task = Preprocessing::guess_task(config.classes);
        Ok(Self {
            preprocessing: Preprocessing::for_task(task, config.classes),
            config,
            seed,
            params,
        })
    }

    /// The model saved in a checkpoint written by [`Self::save`]: its config and preprocessing
    /// come from the metadata, its parameters are checked name by name.
    pub fn load(ctx: &GpuContext, path: &Path) -> Result<Self> {
        let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
        Self::from_bytes(ctx, &bytes, path)
    }

    /// The networks in a checkpoint: one, or every member of an ensemble written by
    /// [`Self::save_ensemble`] (its members share the config and preprocessing).
    pub fn members_from_bytes(ctx: &GpuContext, bytes: &[u8], path: &Path) -> Result<Vec<Self>> {
        let (tensors, meta) = checkpoint::decode(bytes, path)?;
        let Some(k) = meta.get(ENSEMBLE_KEY) else {
            return Ok(vec![Self::from_bytes(ctx, bytes, path)?]);
        };
        let k: usize =
            k.parse().ok().filter(|&k| k > 0).ok_or_else(|| {
                Error::data(path, ENSEMBLE_KEY, format!("not a member count: {k:?}"))
            })?;
        let config = ModelConfig::from_metadata(&meta, path)?;
        let preprocessing = Preprocessing::of_checkpoint(&meta, &config, path)?;
        let mut members: Vec<Vec<NamedTensor>> = vec![vec![]; k];
        for t in tensors {
            let member = t
                .name
                .strip_prefix("member")
                .and_then(|rest| rest.split_once('.'))
                .and_then(|(i, name)| Some((i.parse::<usize>().ok()?, name.to_string())))
                .filter(|(i, _)| *i < k);
            let Some((i, name)) = member else {
                return Err(Error::data(
                    path,
                    &t.name,
                    format!("not a tensor of members 0 to {} (memberN.name)", k - 1),
                ));
            };
            members[i].push(NamedTensor { name, ..t });
        }
        members
            .into_iter()
            .map(|tensors| {
                let params = ParamStore::new(ctx, &config.param_shapes());
                params.upload_named(ctx, tensors, path)?;
                Ok(Self {
                    config: config.clone(),
                    preprocessing: preprocessing.clone(),
                    seed: 0,
                    params,
                })
            })
            .collect()
    }

    /// Writes `members` (one architecture) as one checkpoint whose probabilities are their mean
    /// ([`crate::infer::Classifier`]): tensors `member0.conv1_1.weight`, ...; the config and
    /// preprocessing are the first member's, with the decision rule of `rule` (its offsets,
    /// gate and record clusters).
    pub fn save_ensemble(
        ctx: &GpuContext,
        members: &[Self],
        rule: &DecisionRule,
        path: &Path,
    ) -> Result<()> {
        let first = members
            .first()
            .ok_or_else(|| Error::Config("an ensemble needs at least one member".into()))?;
        let config = rule.apply(&first.config);
        let mut tensors = vec![];
        for (i, m) in members.iter().enumerate() {
            if m.config.param_shapes() != config.param_shapes() {
                return Err(Error::Config(format!(
                    "ensemble member {i} has another architecture than member 0"
                )));
            }
            for t in m.params.download_named(ctx)? {
                tensors.push(NamedTensor {
                    name: format!("member{i}.{}", t.name),
                    ..t
                });
            }
        }
        let mut meta = BTreeMap::from([
            (ENSEMBLE_KEY.to_string(), members.len().to_string()),
            first.preprocessing.to_metadata(&config),
        ]);
        config.write_metadata(&mut meta);
        checkpoint::save(path, &tensors, &meta)
    }

    /// [`Self::load`] from the bytes of a checkpoint (`path` names it in errors; a checkpoint
    /// written before preprocessing was stored takes it from the config.json beside `path`).
    pub fn from_bytes(ctx: &GpuContext, bytes: &[u8], path: &Path) -> Result<Self> {
        let (tensors, meta) = checkpoint::decode(bytes, path)?;
        if let Some(k) = meta.get(ENSEMBLE_KEY) {
            return Err(Error::data(
                path,
                ENSEMBLE_KEY,
                format!("an ensemble of {k} networks: load it with infer::Classifier"),
            ));
        }
        let config = ModelConfig::from_metadata(&meta, path)?;
        let preprocessing = Preprocessing::of_checkpoint(&meta, &config, path)?;
        let params = ParamStore::new(ctx, &config.param_shapes());
        params.upload_named(ctx, tensors, path)?;
        Ok(Self {
            config,
            preprocessing,
            seed: 0,
            params,
        })
    }

    /// A network for a new task from a trained one (`source`, its tensors read from
    /// `source_path`): the same layers with `classes` outputs, the layers `head` names freshly
    /// initialised under `seed`, every other tensor copied. Returns the model and the names of
    /// the tensors copied. A rhythm head's output layer gives logits too: it starts afresh with
    /// the classifier's.
    pub fn transfer(
        ctx: &GpuContext,
        source: &[NamedTensor],
        source_config: &ModelConfig,
        source_path: &Path,
        classes: usize,
        head: NewHead,
        seed: u64,
    ) -> Result<(Self, Vec<String>)> {
        let config = ModelConfig {
            classes,
            decision_offsets: vec![],
            ..source_config.clone()
        };
        let fresh_prefixes: &[&str] = match head {
            NewHead::Dense2 => &["dense2.", "rhythm2."],
            NewHead::Dense1 => &["dense1.", "dense2.", "rhythm1.", "rhythm2."],
        };
        let mut arrays = init_params(&config, seed);
        let mut kept = vec![];
        for ((name, _), array) in config.param_shapes().iter().zip(arrays.iter_mut()) {
            if fresh_prefixes.iter().any(|p| name.starts_with(p)) {
                continue;
            }
            let t = source.iter().find(|t| &t.name == name).ok_or_else(|| {
                Error::data(source_path, name, "missing from the source checkpoint")
            })?;
            *array = t.data.clone();
            kept.push(name.clone());
        }
        let model = Model::new(ctx, config, seed)?;
        model.params.upload(ctx, &arrays)?;
        Ok((model, kept))
    }

    /// Replaces the parameters with a checkpoint's (same config; names and shapes checked).
    pub fn load_params(&self, ctx: &GpuContext, path: &Path) -> Result<()> {
        let (tensors, _) = checkpoint::load(path)?;
        self.params.upload_named(ctx, tensors, path)
    }

    /// Writes the parameters (PyTorch names and layouts) with the config and `epoch` as metadata,
    /// atomically.
    pub fn save(&self, ctx: &GpuContext, path: &Path, epoch: usize) -> Result<()> {
        let mut meta = BTreeMap::from([
            ("epoch".to_string(), epoch.to_string()),
            self.preprocessing.to_metadata(&self.config),
        ]);
        self.config.write_metadata(&mut meta);
        checkpoint::save(path, &self.params.download_named(ctx)?, &meta)
    }

    /// Adds the network to `graph` on input `x` and returns the logits `[B, classes]`. The input
    /// is `[B, in_channels, input_len]`, or `[B, row_len]` rows of samples then rhythm features
    /// for a dual-stream network. With `train`, parameters get gradients and dropout is active.
    pub fn build(&self, graph: &mut Graph, x: Var, train: bool) -> Result<Var> {
        let c = &self.config;
        let params: Vec<Var> = (0..self.params.specs.len())
            .map(|i| match train {
                true => graph.leaf(self.params.value(i), Some(self.params.grad(i))),
                false => graph.input(self.params.value(i)),
            })
            .collect();
        let batch = graph.value(x).shape()[0];
        let active = |layer: usize| train && c.dropout_rate(layer) > 0.0;
        // a dual-stream row: the beat for the conv stream, the rhythm for Dense_1
        let samples = c.in_channels * c.input_len;
        let (mut h, rhythm) = match c.rr_features {
            0 => (x, None),
            rr => {
                let beat = graph.apply(
                    Columns {
                        start: 0,
                        width: samples,
                    },
                    &[x],
                )?;
                let rhythm = graph.apply(
                    Columns {
                        start: samples,
                        width: rr,
                    },
                    &[x],
                )?;
                (
                    graph.reshape(beat, &[batch, c.in_channels, c.input_len])?,
                    Some(rhythm),
                )
            }
        };
        let mut p = params.iter();
        let mut next = || *p.next().expect("parameter list matches config");
        for pair in 0..c.pair_channels.len() {
            // Conv + bias + ReLU fused; Dropout_{pair+1} fused into the pool
            for _ in 0..2 {
                let (w, b) = (next(), next());
                h = graph.apply(Conv1d::with_relu(c.padding), &[h, w, b])?;
            }
            let pool = match active(pair) {
                true => MaxPool1d::with_dropout(
                    c.pool,
                    c.dropout_rate(pair),
                    dropout_seed(self.seed, pair),
                ),
                false => MaxPool1d::new(c.pool),
            };
            h = graph.apply(pool, &[h])?;
        }
        let flat = graph.value(h).numel() / batch;
        h = graph.reshape(h, &[batch, flat])?;
        if let Some(rhythm) = rhythm {
            h = graph.apply(Concat, &[h, rhythm])?;
        }
        let (w, b) = (next(), next());
        h = graph.apply(Dense, &[h, w, b])?;
        // ReLU and Dropout_7 in one op while training
        let last = c.pair_channels.len();
        h = match active(last) {
            true => graph.apply(
                Dropout {
                    rate: c.dropout_rate(last),
                    seed: dropout_seed(self.seed, last),
                    relu: true,
                },
                &[h],
            )?,
            false => graph.apply(Relu, &[h])?,
        };
        let (w, b) = (next(), next());
        let logits = graph.apply(Dense, &[h, w, b])?;
        match rhythm.filter(|_| c.rhythm_head > 0) {
            None => Ok(logits),
            Some(rhythm) => {
                let (w, b) = (next(), next());
                let r = graph.apply(Dense, &[rhythm, w, b])?;
                let r = graph.apply(Relu, &[r])?;
                let (w, b) = (next(), next());
                let r = graph.apply(Dense, &[r, w, b])?;
                graph.apply(Add, &[logits, r])
            }
        }
    }
}

/// The whole network on the CPU in f64 (for end-to-end gradient checks) on beats `x` and, for a
/// dual-stream network, their rhythm features. `dropout` gives the model seed and step whose
/// masks to reproduce; `None` is evaluation mode.
pub fn reference_forward(
    config: &ModelConfig,
    params: &[ArrayD<f64>],
    x: &Array3<f64>,
    rhythm: Option<&Array2<f64>>,
    dropout: Option<(u64, u32)>,
) -> Array2<f64> {
    let apply_dropout = |h: ArrayD<f64>, layer: usize| match dropout {
        Some((seed, step)) if config.dropout_rate(layer) > 0.0 => dropout::reference_apply(
            &h,
            dropout_seed(seed, layer),
            step,
            config.dropout_rate(layer),
        ),
        _ => h,
    };
    let as3 = |a: &ArrayD<f64>| {
        a.clone()
            .into_dimensionality::<Ix3>()
            .expect("rank-3 parameter")
    };
    let as1 = |a: &ArrayD<f64>| {
        a.clone()
            .into_dimensionality::<Ix1>()
            .expect("rank-1 parameter")
    };
    let as2 = |a: &ArrayD<f64>| {
        a.clone()
            .into_dimensionality::<Ix2>()
            .expect("rank-2 parameter")
    };
    let mut h = x.clone();
    let mut p = params.iter();
    for pair in 0..config.pair_channels.len() {
        for _ in 0..2 {
            let (w, b) = (p.next().unwrap(), p.next().unwrap());
            let y = conv1d::reference_forward(&h, &as3(w), &as1(b), config.padding);
            h = relu::reference_forward(&y.into_dyn())
                .into_dimensionality()
                .unwrap();
        }
        h = maxpool1d::reference_forward(&h, config.pool).0;
        h = apply_dropout(h.into_dyn(), pair)
            .into_dimensionality()
            .unwrap();
    }
    let batch = h.dim().0;
    let flat = h.len() / batch;
    let h: Array2<f64> = h
        .as_standard_layout()
        .to_owned()
        .into_shape_with_order((batch, flat))
        .unwrap();
    let joined = match rhythm {
        Some(rr) => concat::reference_concat(&h.into_dyn(), &rr.clone().into_dyn())
            .into_dimensionality()
            .unwrap(),
        None => h,
    };
    let (w, b) = (p.next().unwrap(), p.next().unwrap());
    let h = dense::reference_forward(&joined, &as2(w), &as1(b)).into_dyn();
    let h = apply_dropout(relu::reference_forward(&h), config.pair_channels.len());
    let (w, b) = (p.next().unwrap(), p.next().unwrap());
    let logits = dense::reference_forward(&h.into_dimensionality().unwrap(), &as2(w), &as1(b));
    match rhythm.filter(|_| config.rhythm_head > 0) {
        None => logits,
        Some(rr) => {
            let (w, b) = (p.next().unwrap(), p.next().unwrap());
            let r = dense::reference_forward(rr, &as2(w), &as1(b)).into_dyn();
            let r = relu::reference_forward(&r).into_dimensionality().unwrap();
            let (w, b) = (p.next().unwrap(), p.next().unwrap());
            logits + dense::reference_forward(&r, &as2(w), &as1(b))
        }
    }
}

/// Splits a flat list of parameter values into f64 arrays of the config's shapes.
pub fn params_to_arrays(config: &ModelConfig, values: &[Vec<f32>]) -> Vec<ArrayD<f64>> {
    config
        .param_shapes()
        .iter()
        .zip(values)
        .map(|((_, shape), v)| {
            ArrayD::from_shape_vec(shape.as_slice(), v.iter().map(|&x| f64::from(x)).collect())
                .expect("shape matches")
        })
        .collect()
}
