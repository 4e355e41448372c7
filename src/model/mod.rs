//! The paper's network, built from a config: `depth` pairs of
//! `Conv–ReLU–Conv–ReLU–MaxPool–Dropout`, then `Flatten–Dense–ReLU–Dropout–Dense` (logits; the
//! softmax lives in the loss). Parameters live in one flat GPU buffer (see [`ParamStore`]).

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use ndarray::{Array2, Array3, ArrayD, Ix1, Ix2, Ix3};
use serde::{Deserialize, Serialize};

use crate::autograd::{Graph, Var};
use crate::checkpoint::{self, NamedTensor};
use crate::error::{Error, Result};
use crate::gpu::{storage_buffer, GpuContext, Tensor, OFFSET_ALIGN_BYTES};
use crate::ops::add::Add;
use crate::ops::concat::{self, Columns, GroupedConcat};
use crate::ops::conv1d::{self, Conv1d};
use crate::ops::dense::{self, Dense, GroupedDense};
use crate::ops::dropout::{self, Dropout};
use crate::ops::maxpool1d::{self, MaxPool1d};
use crate::ops::relu::{self, Relu};
use crate::rng::Rng;
use preprocessing::Preprocessing;

pub mod config;
pub mod preprocessing;
pub use config::{dropout_seed, DecisionRule, ModelConfig};

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

/// Checkpoint metadata: the number of members of an ensemble (absent for one network).
const ENSEMBLE_KEY: &str = "ensemble";

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
    /// Networks of this config run as one grouped network (1 for a network of its own): every
    /// parameter stacked along its first axis ([`ModelConfig::grouped_param_shapes`]), logits
    /// `[B, members * classes]`, member by member.
    pub members: usize,
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
            members: 1,
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
                    members: 1,
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
            members: 1,
        })
    }

    /// Networks of one config and preprocessing as one grouped network (`members` > 1): their
    /// parameters stacked, so that one forward pass gives every member's logits side by side
    /// (each member's exactly as it would alone: the grouped ops compute each group in the
    /// same order as the plain ops).
    pub fn grouped(ctx: &GpuContext, models: &[Model]) -> Result<Self> {
        let first = models
            .first()
            .ok_or_else(|| Error::Config("a grouped network needs at least one member".into()))?;
        let config = first.config.clone();
        if models
            .iter()
            .any(|m| m.members != 1 || m.config.param_shapes() != config.param_shapes())
        {
            return Err(Error::Config(
                "grouped members must be single networks of one architecture".into(),
            ));
        }
        // Each parameter's first axis is the outermost, so stacking is appending: member g's
        // values go right after member g-1's. Copied on the GPU (no blocking read, which a
        // browser cannot do).
        let params = ParamStore::new(ctx, &config.grouped_param_shapes(models.len()));
        let mut encoder = ctx.device.create_command_encoder(&Default::default());
        for i in 0..params.specs.len() {
            let stacked = params.value(i);
            for (g, model) in models.iter().enumerate() {
                let member = model.params.value(i);
                let bytes = member.size_bytes();
                encoder.copy_buffer_to_buffer(
                    member.buffer(),
                    member.offset(),
                    stacked.buffer(),
                    stacked.offset() + g as u64 * bytes,
                    bytes,
                );
            }
        }
        ctx.queue.submit([encoder.finish()]);
        Ok(Self {
            config,
            preprocessing: first.preprocessing.clone(),
            seed: 0,
            params,
            members: models.len(),
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

    /// Adds the network to `graph` on input `x` and returns the logits `[B, classes]` (`[B,
    /// members * classes]` for a grouped network, member by member). The input is `[B,
    /// in_channels, input_len]`, or `[B, row_len]` rows of samples then rhythm features for a
    /// dual-stream network. With `train`, parameters get gradients and dropout is active.
    pub fn build(&self, graph: &mut Graph, x: Var, train: bool) -> Result<Var> {
        let c = &self.config;
        let g = self.members;
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
            for j in 0..2 {
                let (w, b) = (next(), next());
                // grouped: the first layer reads the one input every member shares
                let groups = if pair == 0 && j == 0 { 1 } else { g };
                let conv = Conv1d::with_relu(c.padding).grouped(groups);
                h = graph.apply(conv, &[h, w, b])?;
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
            h = graph.apply(GroupedConcat { groups: g }, &[h, rhythm])?;
        }
        let (w, b) = (next(), next());
        h = graph.apply(GroupedDense { groups: g }, &[h, w, b])?;
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
        let logits = graph.apply(GroupedDense { groups: g }, &[h, w, b])?;
        match rhythm.filter(|_| c.rhythm_head > 0) {
            None => Ok(logits),
            Some(rhythm) => {
                // grouped: every member's first rhythm layer reads the shared rhythm
                let (w, b) = (next(), next());
                let r = graph.apply(Dense, &[rhythm, w, b])?;
                let r = graph.apply(Relu, &[r])?;
                let (w, b) = (next(), next());
                let r = graph.apply(GroupedDense { groups: g }, &[r, w, b])?;
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
