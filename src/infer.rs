//! Inference: a trained network with its preprocessing ([`Classifier`]), classifying ready-cut
//! beats, a signal in memory, or a recording streamed a chunk at a time.
//!
//! The pipeline is the one training saw: find the R peaks (the recording's beat annotations, or
//! the QRS detector), resample the lead to 125 Hz, cut each beat, measure it against the record's
//! median beat when the network was trained so, join its R–R features, run the network in
//! batches, and decide with the checkpoint's decision offsets. Memory is bounded by the chunk,
//! not by the recording (a 24-hour Holter file is 30 M samples per lead); a network on relative
//! beats takes one more pass first, for the median, keeping at most
//! [`MEDIAN_BEATS_MAX`](crate::data::beats::reference::MEDIAN_BEATS_MAX) beats.

use std::path::Path;

use crate::adapt::clusters::{self, ClusterSmoothing, Features};
use crate::data::beats::reference::{relative, BeatReference, MedianBeat};
use crate::data::beats::rr::{Rhythm, RR_FEATURES};
use crate::data::beats::stream;
use crate::data::beats::{Beats, BEAT_LEN};
use crate::data::corpus::dataset::LoadOptions;
use crate::data::formats::aami::AamiClass;
use crate::data::formats::annotation::Annotation;
use crate::data::formats::files::Disk;
use crate::data::recording::{self, LeadSource, Recording};
use crate::data::signal::noise::NoiseIndex;
use crate::error::{Error, Result};
use crate::gpu::{block_on, GpuContext};
use crate::model::{Model, ModelConfig, ParamStore};
use crate::preprocessing::Preprocessing;
use crate::trainer::Trainer;

/// The network shipped with the library: chosen on validation patients, never on the test
/// database (see `models/README.md`).
pub const SHIPPED_MODEL: &[u8] = include_bytes!("../models/mid-rr-ds1-folds5.safetensors");
/// The name the shipped model goes by in messages and reports.
pub const SHIPPED_MODEL_NAME: &str = "models/mid-rr-ds1-folds5.safetensors (shipped)";

/// One classified beat.
#[derive(Clone, Debug, PartialEq)]
pub struct ClassifiedBeat {
    /// The R peak's sample in the recording, at its own rate.
    pub sample: u64,
    /// The decided class (an index into [`Classifier::class_names`]).
    pub class: u32,
    /// The reference class, when the recording has beat annotations.
    pub reference: Option<u32>,
    /// A probability per class.
    pub probabilities: Vec<f32>,
    /// The beat's R–R features ([`crate::data::beats::rr::RR_FEATURES`]).
    pub rhythm: Rhythm,
}

impl ClassifiedBeat {
    /// How clear the decision is: the probability of the decided class minus the highest other
    /// one, in [0, 1]. 0 is a tie, or a decision the rule's offsets or gate made against the
    /// most probable class; near 1, one class holds all the probability. Out of fold on DS1
    /// (validation), the shipped model decides 99.2 % of the beats at or above
    /// [`LOW_CONFIDENCE`] correctly and 85.4 % of those below (15 % of the beats).
    pub fn confidence(&self) -> f32 {
        let decided = self.probabilities[self.class as usize];
        let other = self
            .probabilities
            .iter()
            .enumerate()
            .filter(|&(c, _)| c != self.class as usize)
            .fold(0.0f32, |m, (_, &p)| m.max(p));
        (decided - other).clamp(0.0, 1.0)
    }
}

/// A beat whose [`ClassifiedBeat::confidence`] is below this is a near tie: worth a look.
pub const LOW_CONFIDENCE: f32 = 0.5;
/// A recording with more than this share of low-confidence beats gets a warning: out of fold on
/// DS1, 3 of the 20 records pass it (203, 215 and 201: atrial flutter and fibrillation, and
/// multiform ectopy), the records whose decisions most need a look.
pub const LOW_CONFIDENCE_SHARE: f64 = 1.0 / 3.0;

/// A recording whose [`crate::data::signal::noise::NoiseIndex`] is above this gets a warning:
/// twice that of DS1's noisiest record (108: 0.029), chosen on MIT-BIH's training records
/// alone. On DS2 no record passes it as recorded; read as `evaluate --resample 250 --noise
/// strong` reads it (V sensitivity 0.87 → 0.81), 19 of 22 do, and 3 of 22 with the typical
/// noise that costs nothing (`cargo run --release --example noise_index`).
pub const NOISY: f32 = 0.057;

/// What [`recording_warnings`] looks at in a classified recording.
#[derive(Clone, Copy, Debug)]
pub struct RecordingFacts<'a> {
    /// The lead classified.
    pub lead: &'a str,
    /// Its sampling rate (Hz).
    pub fs: f64,
    /// Beats classified, and how many of them below [`LOW_CONFIDENCE`].
    pub beats: usize,
    pub low_confidence: usize,
    /// How noisy the lead is ([`crate::data::signal::noise::NoiseIndex`]).
    pub noise_index: Option<f32>,
    /// How far its beat annotations were moved before cutting (ms), if they were
    /// ([`crate::data::beats::BeatPositions::Registered`]).
    pub annotations_moved_ms: Option<f64>,
}

/// Why a recording's decisions may not be trusted: it looks unlike what the network was
/// trained on (another lead, a rate below the network's, noise, many near ties, annotations
/// at another point of the QRS complex).
pub fn recording_warnings(preprocessing: &Preprocessing, facts: &RecordingFacts) -> Vec<String> {
    let RecordingFacts {
        lead,
        fs,
        beats,
        low_confidence,
        noise_index,
        annotations_moved_ms,
    } = *facts;
    let mut warnings = vec![];
    if let Some(ms) = annotations_moved_ms {
        warnings.push(format!(
            "the beat annotations sit {:.0} ms {} the QRS detector's peaks, where MIT-BIH's \
             (the training data's) do not: every annotation was moved {:.0} ms {} before the \
             beats were cut",
            ms.abs(),
            if ms < 0.0 { "after" } else { "before" },
            ms.abs(),
            if ms < 0.0 { "earlier" } else { "later" },
        ));
    }
    if !preprocessing.trained_on(lead) {
        let trained: Vec<&str> = preprocessing.lead.split(',').map(str::trim).collect();
        warnings.push(format!(
            "lead '{lead}' is not the lead the network was trained on ({}): its decisions on \
             other leads are less reliable (checked on MIT-BIH's second leads only, where V \
             sensitivity falls from 0.87 to 0.85 and unsure on-time V calls are made N)",
            trained.join(" or ")
        ));
    }
    if fs < crate::data::beats::FS {
        warnings.push(format!(
            "the recording's rate ({fs} Hz) is below the {} Hz the network reads: its beats are \
             upsampled and their QRS detail is lost (checked down to 128 Hz only)",
            crate::data::beats::FS
        ));
    }
    let share = low_confidence as f64 / beats.max(1) as f64;
    if beats > 0 && share > LOW_CONFIDENCE_SHARE {
        warnings.push(format!(
            "{:.0} % of the beats ({low_confidence} of {beats}) are near ties (confidence below \
             {LOW_CONFIDENCE}): the recording looks unlike the training data (noise, lead, \
             rhythm or beat shapes); check its decisions",
            100.0 * share
        ));
    }
    if let Some(noise) = noise_index.filter(|&n| n > NOISY) {
        warnings.push(format!(
            "the recording is noisy (noise index {noise:.3}, above {NOISY}: twice that of the \
             noisiest training record): ventricular beats are missed more often in noise"
        ));
    }
    warnings
}

/// Where a streamed classification is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stage {
    /// QRS detection (a recording without beat annotations); counts samples.
    Detecting,
    /// The pass for the record's median beat (networks on relative beats); counts beats.
    MedianBeat,
    /// Classification; counts beats.
    Classifying,
}

/// What a streamed classification hands back as it goes (both optional): each chunk's
/// classified beats in order, and the progress. An error from either stops the work (at the
/// next chunk for progress) and is returned: a caller's cancel.
#[derive(Default)]
pub struct Streaming<'a> {
    on_beats: Option<OnBeats<'a>>,
    on_progress: Option<OnProgress<'a>>,
}

type OnBeats<'a> = Box<dyn FnMut(&[ClassifiedBeat]) -> Result<()> + 'a>;
type OnProgress<'a> = Box<dyn FnMut(Stage, usize, usize) -> Result<()> + 'a>;

impl<'a> Streaming<'a> {
    /// Nothing handed back: the summary is all.
    pub fn new() -> Self {
        Self::default()
    }

    /// Each chunk's classified beats, in order.
    pub fn on_beats(mut self, f: impl FnMut(&[ClassifiedBeat]) -> Result<()> + 'a) -> Self {
        self.on_beats = Some(Box::new(f));
        self
    }

    /// The stage, what is done and the total (samples while detecting, beats after).
    pub fn on_progress(mut self, f: impl FnMut(Stage, usize, usize) -> Result<()> + 'a) -> Self {
        self.on_progress = Some(Box::new(f));
        self
    }
}

/// What classifying one recording gave.
#[derive(Clone, Debug, PartialEq)]
pub struct RecordingSummary {
    pub beats: usize,
    /// Beats per decided class.
    pub counts: Vec<usize>,
    /// Whether the R peaks came from the recording's annotations (else the QRS detector).
    pub annotated: bool,
    /// Beats that could not be cut: too close to the recording's edge, or past its end.
    pub not_cut: usize,
    /// Beats whose confidence is below [`LOW_CONFIDENCE`].
    pub low_confidence: usize,
    /// How noisy the lead is ([`crate::data::signal::noise::NoiseIndex`]); `None` with too few beats.
    pub noise_index: Option<f32>,
    /// Why the decisions may not be trusted ([`recording_warnings`]); empty when nothing looks
    /// unusual.
    pub warnings: Vec<String>,
    /// How far every beat annotation was moved before cutting (ms; negative: earlier), when
    /// they sat away from where the network expects them
    /// ([`crate::data::beats::BeatPositions::Registered`]).
    pub annotations_moved_ms: Option<f64>,
}

/// A trained network ready to classify: its parameters on the GPU, its preprocessing, no
/// optimiser state. An ensemble (several networks of one architecture, e.g. the fold models of
/// `train --folds`) classifies with the mean of its members' probabilities, all members in one
/// grouped network ([`Model::grouped`]) unless made with [`Self::ensemble_member_by_member`].
pub struct Classifier<'c> {
    /// Runs the network: one network, every member of an ensemble as one grouped network, or,
    /// member by member, each member's parameters copied into its parameter buffer in turn.
    runner: Trainer<'c>,
    /// Member by member: the members' parameters, in order (empty otherwise).
    members: Vec<ParamStore>,
    /// Beats per inference batch for one network. A grouped ensemble runs `batch / members`
    /// beats at a time, so that its activations take one network's memory (fifteen networks
    /// with their own activations at the full batch took 580 MB where five took 254 MB).
    pub batch: usize,
    /// Seconds of signal read, filtered and classified at a time (at least 10).
    pub chunk_seconds: f64,
}

impl<'c> Classifier<'c> {
    /// The network (or ensemble) in a checkpoint written by `train` or `transfer`.
    pub fn load(ctx: &'c GpuContext, path: &Path) -> Result<Self> {
        let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
        Self::from_bytes(ctx, &bytes, path)
    }

    /// The network shipped with the library ([`SHIPPED_MODEL`]).
    pub fn shipped(ctx: &'c GpuContext) -> Result<Self> {
        Self::from_bytes(ctx, SHIPPED_MODEL, Path::new(SHIPPED_MODEL_NAME))
    }

    /// A checkpoint's bytes (`name` stands for the file in errors).
    pub fn from_bytes(ctx: &'c GpuContext, bytes: &[u8], name: &Path) -> Result<Self> {
        Self::ensemble(ctx, Model::members_from_bytes(ctx, bytes, name)?)
    }

    /// A model already on the GPU.
    pub fn new(ctx: &'c GpuContext, model: Model) -> Result<Self> {
        Self::ensemble(ctx, vec![model])
    }

    /// Models of one architecture and preprocessing, classifying with their mean probabilities
    /// (the first one's decision offsets decide), run as one grouped network.
    pub fn ensemble(ctx: &'c GpuContext, models: Vec<Model>) -> Result<Self> {
        Self::check_members(&models)?;
        let mut models = models;
        let runner = match models.len() {
            1 => models.remove(0),
            _ => Model::grouped(ctx, &models)?,
        };
        Ok(Self {
            runner: Trainer::for_inference(ctx, runner)?,
            members: vec![],
            batch: 256,
            chunk_seconds: stream::CHUNK_S,
        })
    }

    fn check_members(models: &[Model]) -> Result<()> {
        let Some(first) = models.first() else {
            return Err(Error::Config(
                "a classifier needs at least one network".into(),
            ));
        };
        let (shapes, pre) = (first.config.param_shapes(), first.preprocessing.clone());
        if models
            .iter()
            .any(|m| m.config.param_shapes() != shapes || m.preprocessing != pre)
        {
            return Err(Error::Config(
                "ensemble members differ in architecture or preprocessing".into(),
            ));
        }
        Ok(())
    }

    /// [`Self::ensemble`] run one member at a time through one network's activations: the same
    /// probabilities (the grouped network's are bit for bit these), one network's dispatches per
    /// member. For comparisons.
    pub fn ensemble_member_by_member(ctx: &'c GpuContext, models: Vec<Model>) -> Result<Self> {
        Self::check_members(&models)?;
        let first = &models[0];
        let (shapes, pre) = (first.config.param_shapes(), first.preprocessing.clone());
        let mut models = models;
        let (runner, members) = match models.len() {
            1 => (models.remove(0), vec![]),
            _ => {
                let runner = Model {
                    config: models[0].config.clone(),
                    preprocessing: pre,
                    seed: 0,
                    params: ParamStore::new(ctx, &shapes),
                    members: 1,
                };
                (runner, models.into_iter().map(|m| m.params).collect())
            }
        };
        Ok(Self {
            runner: Trainer::for_inference(ctx, runner)?,
            members,
            batch: 256,
            chunk_seconds: stream::CHUNK_S,
        })
    }

    /// Networks averaged (1 for a single network).
    pub fn members(&self) -> usize {
        self.members.len().max(self.runner.model.members)
    }

    pub fn config(&self) -> &ModelConfig {
        &self.runner.model.config
    }

    pub fn preprocessing(&self) -> &Preprocessing {
        &self.runner.model.preprocessing
    }

    pub fn class_names(&self) -> &[String] {
        &self.preprocessing().class_names
    }

    /// How to read records for this network: its beat mode, beat positions and lead preference.
    pub fn load_options(&self) -> LoadOptions {
        LoadOptions {
            mode: self.preprocessing().beat_mode,
            lead: self.preprocessing().lead.clone(),
            positions: self.preprocessing().beat_positions,
            ..LoadOptions::default()
        }
    }

    /// Class probabilities (`[n, classes]`, row-major) of beats already cut and referenced as the
    /// network takes them; `progress` gets beats done and the total.
    pub fn probabilities(
        &mut self,
        beats: &Beats,
        progress: impl FnMut(usize, usize),
    ) -> Result<Vec<f32>> {
        block_on(self.probabilities_async(beats, progress))
    }

    /// [`Self::probabilities`] as a future (the only way in a browser).
    pub async fn probabilities_async(
        &mut self,
        beats: &Beats,
        mut progress: impl FnMut(usize, usize),
    ) -> Result<Vec<f32>> {
        // the config is cloned (not the rows) so that the runner can be borrowed mutably
        let config = self.config().clone();
        let rows = config.input_rows(beats);
        let grouped = self.runner.model.members;
        if grouped > 1 {
            let batch = self.batch.div_ceil(grouped).max(1);
            return self.runner.predict_many_async(&rows, batch, progress).await;
        }
        let k = self.members();
        let mut mean: Vec<f32> = vec![];
        // members in order, so the mean is the same on every run
        for m in 0..k {
            if let Some(params) = self.members.get(m) {
                // queued before the member's batches: they read its parameters
                let ctx = self.runner.ctx();
                let mut encoder = ctx.device.create_command_encoder(&Default::default());
                let bytes = params.values.numel() as u64 * 4;
                let runner = self.runner.model.params.values.buffer();
                encoder.copy_buffer_to_buffer(params.values.buffer(), 0, runner, 0, bytes);
                ctx.queue.submit([encoder.finish()]);
            }
            let probs = self
                .runner
                .predict_many_async(&rows, self.batch, |done, total| {
                    progress(m * total + done, k * total)
                })
                .await?;
            if mean.is_empty() {
                mean = probs;
            } else {
                mean.iter_mut().zip(&probs).for_each(|(a, p)| *a += p);
            }
        }
        if k > 1 {
            let scale = 1.0 / k as f32;
            mean.iter_mut().for_each(|p| *p *= scale);
        }
        Ok(mean)
    }

    /// The decided class of each row of `probabilities`, with the checkpoint's decision offsets.
    /// Neither the rhythm gate nor the record clusters are applied: they need the beats
    /// ([`Self::decide_records`]).
    pub fn decide(&self, probabilities: &[f32]) -> Vec<u32> {
        self.config().decide(probabilities)
    }

    /// The decided class of each of `beats` (whole records) from its row of `probabilities`:
    /// the checkpoint's whole rule ([`ModelConfig::decide_records`]). With record clusters,
    /// `probabilities` are smoothed in place: they are what was decided on.
    /// The beats are taken as read at the network's own lead, but for views named
    /// `RECORD~LEAD` ([`Self::decide_records_at`]).
    pub fn decide_records(&self, probabilities: &mut [f32], beats: &Beats) -> Vec<u32> {
        let own = self.preprocessing().lead.clone();
        self.decide_records_at(probabilities, beats, &own)
    }

    /// [`Self::decide_records`] for beats read at `lead`: at a lead the network was not trained
    /// on, the rule's other-lead part applies too ([`ModelConfig::other_lead_v_gate`]).
    pub fn decide_records_at(
        &self,
        probabilities: &mut [f32],
        beats: &Beats,
        lead: &str,
    ) -> Vec<u32> {
        let other_lead = self.preprocessing().other_lead_beats(beats, lead);
        self.config()
            .decide_records(probabilities, beats, &other_lead)
    }

    /// Classifies beats already cut (and referenced) as the network takes them. A network with
    /// record clusters groups each record's beats together: give it whole records.
    pub fn classify_beats(
        &mut self,
        beats: &Beats,
        annotated: bool,
    ) -> Result<Vec<ClassifiedBeat>> {
        block_on(self.classify_beats_async(beats, annotated))
    }

    /// [`Self::classify_beats`] as a future (the only way in a browser).
    pub async fn classify_beats_async(
        &mut self,
        beats: &Beats,
        annotated: bool,
    ) -> Result<Vec<ClassifiedBeat>> {
        let own = self.preprocessing().lead.clone();
        self.classify_beats_at_async(beats, annotated, &own).await
    }

    /// [`Self::classify_beats_async`] for beats read at `lead` ([`Self::decide_records_at`]).
    pub async fn classify_beats_at_async(
        &mut self,
        beats: &Beats,
        annotated: bool,
        lead: &str,
    ) -> Result<Vec<ClassifiedBeat>> {
        if beats.is_empty() {
            return Ok(vec![]);
        }
        let mut probs = self.probabilities_async(beats, |_, _| {}).await?;
        let decided = self.decide_records_at(&mut probs, beats, lead);
        let labels = annotated.then_some(beats.labels.as_slice());
        Ok(classified(
            &decided,
            &probs,
            &beats.sample,
            labels,
            &beats.rr,
        ))
    }

    /// Classifies every beat of one lead held in memory (`samples` at `fs` Hz, in physical units
    /// or ADC values: beats are min-max normalised): the QRS detector finds the beats.
    pub fn classify_signal(&mut self, samples: &[f32], fs: f64) -> Result<Vec<ClassifiedBeat>> {
        let lead = self.preprocessing().first_lead().to_string();
        let rec = Recording::from_signal("signal", &lead, samples.to_vec(), fs, None)?;
        let mut out = vec![];
        self.classify_recording(
            rec,
            Streaming::new().on_beats(|b| {
                out.extend_from_slice(b);
                Ok(())
            }),
        )?;
        Ok(out)
    }

    /// Classifies a WFDB record (path without extension) or an EDF/EDF+ file, streamed, reading
    /// the network's lead (or the first signal when it has none of them); `streaming` gets the
    /// beats of each chunk in order and the progress.
    pub fn classify_file(
        &mut self,
        path: &Path,
        streaming: Streaming<'_>,
    ) -> Result<RecordingSummary> {
        let rec = recording::open_any(&Disk, path, &self.preprocessing().lead)?;
        self.classify_recording(rec, streaming)
    }

    /// Classifies an opened recording (a file, or a signal in memory:
    /// [`Recording::from_signal`]), streamed: its annotated beats, or the beats the QRS detector
    /// finds when it has no beat annotations.
    pub fn classify_recording(
        &mut self,
        mut rec: Recording,
        streaming: Streaming<'_>,
    ) -> Result<RecordingSummary> {
        let moved_ms = self.preprocessing().beat_positions.place(&mut rec)?;
        let annotations = rec.annotations.take();
        let mut on_beats = streaming.on_beats.unwrap_or_else(|| Box::new(|_| Ok(())));
        let mut on_progress = streaming
            .on_progress
            .unwrap_or_else(|| Box::new(|_, _, _| Ok(())));
        // a progress callback's error (a user's cancel) stops the work at the next chunk
        let stopped: std::cell::RefCell<Option<Error>> = Default::default();
        let result = self.classify_lead(
            rec.lead.as_mut(),
            annotations,
            (&rec.name, &rec.label),
            |beats| on_beats(beats),
            |stage, done, total| {
                if stopped.borrow().is_none() {
                    if let Err(e) = on_progress(stage, done, total) {
                        *stopped.borrow_mut() = Some(e);
                    }
                }
            },
            &stopped,
        );
        if let Some(e) = stopped.into_inner() {
            return Err(e);
        }
        let mut summary = result?;
        summary.not_cut += rec.dropped_beats;
        summary.annotations_moved_ms = moved_ms;
        summary.warnings = recording_warnings(
            self.preprocessing(),
            &RecordingFacts {
                lead: &rec.label,
                fs: rec.lead.fs(),
                beats: summary.beats,
                low_confidence: summary.low_confidence,
                noise_index: summary.noise_index,
                annotations_moved_ms: moved_ms,
            },
        );
        Ok(summary)
    }

    /// The streamed pipeline on one lead; `annotations` are the beat positions when known. It
    /// ends early when `stopped` holds an error (the caller returns that one).
    fn classify_lead(
        &mut self,
        lead: &mut dyn LeadSource,
        annotations: Option<Vec<Annotation>>,
        (name, label): (&str, &str),
        mut each: impl FnMut(&[ClassifiedBeat]) -> Result<()>,
        mut progress: impl FnMut(Stage, usize, usize),
        stopped: &std::cell::RefCell<Option<Error>>,
    ) -> Result<RecordingSummary> {
        let stop = || match stopped.borrow().is_some() {
            true => Err(Error::Config("stopped by its progress callback".into())),
            false => Ok(()),
        };
        let annotated = annotations.is_some();
        let mut counts = vec![0usize; self.config().classes];
        let mut low_confidence = 0;
        let mut done = 0;
        let cutter = self.cutter()?;
        // with record clusters a beat's class depends on the whole record: its beats are held
        // (a few dozen numbers each, not their samples) and decided once it is cut
        let clusters = self.config().record_clusters;
        let mut held = Held::default();
        let cut = cutter.cut(lead, annotations, name, &mut progress, |beats| {
            stop()?;
            if let Some(c) = &clusters {
                let probs = self.probabilities(&beats, |_, _| {})?;
                held.push(&beats, probs, c.rhythm_weight);
                done += beats.len();
                return Ok(done);
            }
            let classified = block_on(self.classify_beats_at_async(&beats, annotated, label))?;
            for b in &classified {
                counts[b.class as usize] += 1;
                low_confidence += usize::from(b.confidence() < LOW_CONFIDENCE);
            }
            done += classified.len();
            each(&classified)?;
            Ok(done)
        })?;
        if let Some(c) = &clusters {
            let other_lead = !self.preprocessing().trained_on(label);
            held.decide(self.config(), c, annotated, other_lead, |classified| {
                stop()?;
                for b in classified {
                    counts[b.class as usize] += 1;
                    low_confidence += usize::from(b.confidence() < LOW_CONFIDENCE);
                }
                each(classified)
            })?;
        }
        progress(Stage::Classifying, done, cut.total);
        Ok(RecordingSummary {
            beats: done,
            counts,
            annotated,
            not_cut: cut.not_cut,
            low_confidence,
            noise_index: cut.noise_index,
            warnings: vec![],
            annotations_moved_ms: None,
        })
    }

    /// Every beat of a recording cut as the network takes them (its annotated beats, or those
    /// the QRS detector finds), held in memory for [`Self::classify_beats_async`]: the browser's
    /// path, where the recording is in memory anyway and a read cannot block.
    pub fn cut_recording(
        &self,
        mut rec: Recording,
        mut progress: impl FnMut(Stage, usize, usize),
    ) -> Result<CutRecording> {
        let annotations_moved_ms = self.preprocessing().beat_positions.place(&mut rec)?;
        let annotations = rec.annotations.take();
        let annotated = annotations.is_some();
        let mut beats = Beats::default();
        let cut = self.cutter()?.cut(
            rec.lead.as_mut(),
            annotations,
            &rec.name,
            &mut progress,
            |b| {
                beats.extend(&b);
                Ok(beats.len())
            },
        )?;
        Ok(CutRecording {
            beats,
            annotated,
            not_cut: cut.not_cut + rec.dropped_beats,
            noise_index: cut.noise_index,
            annotations_moved_ms,
        })
    }

    fn cutter(&self) -> Result<Cutter> {
        let chunk = self.chunk_seconds;
        if !(chunk >= 10.0 && chunk.is_finite()) {
            return Err(Error::Config(format!(
                "chunk of {chunk} s: give at least 10 (one normalisation window)"
            )));
        }
        Ok(Cutter {
            chunk,
            mode: self.preprocessing().beat_mode,
            reference: self.config().beat_reference,
        })
    }
}

/// One recording's beats held for its record clusters: what deciding needs, not the samples.
#[derive(Default)]
struct Held {
    probs: Vec<f32>,
    features: Vec<Features>,
    rhythm: Vec<Rhythm>,
    sample: Vec<u64>,
    labels: Vec<u32>,
}

impl Held {
    fn push(&mut self, beats: &Beats, probs: Vec<f32>, rhythm_weight: f64) {
        self.features.extend(clusters::beat_features(
            beats,
            0..beats.len(),
            rhythm_weight,
        ));
        self.probs.extend(probs);
        self.rhythm.extend_from_slice(&beats.rr);
        self.sample.extend_from_slice(&beats.sample);
        self.labels.extend_from_slice(&beats.labels);
    }

    /// Decides the record's beats with `config`'s rule (`smoothing` its record clusters) and
    /// hands them to `each` [`EMIT`] at a time, so that they are never all built at once.
    fn decide(
        self,
        config: &ModelConfig,
        smoothing: &ClusterSmoothing,
        annotated: bool,
        other_lead: bool,
        mut each: impl FnMut(&[ClassifiedBeat]) -> Result<()>,
    ) -> Result<()> {
        let Held {
            mut probs,
            features,
            rhythm,
            sample,
            labels,
        } = self;
        let classes = config.classes;
        smoothing.smooth_record(&features, &mut probs, classes);
        drop(features);
        // every beat of the record was read at its one lead (no flags: none at another)
        let gated = match other_lead {
            true => vec![true; rhythm.len()],
            false => vec![],
        };
        let decided = config.decide_beats(&probs, &rhythm, &gated);
        for start in (0..decided.len()).step_by(EMIT) {
            let end = (start + EMIT).min(decided.len());
            each(&classified(
                &decided[start..end],
                &probs[start * classes..end * classes],
                &sample[start..end],
                annotated.then(|| &labels[start..end]),
                &rhythm[start..end],
            ))?;
        }
        Ok(())
    }
}

/// Beats handed over at a time once a record's clusters have decided them.
const EMIT: usize = 4096;

/// Beats as [`ClassifiedBeat`]s: their decided classes, the probabilities decided from
/// (`[n, classes]`), R-peak samples, reference labels when annotated, and R–R features.
fn classified(
    decided: &[u32],
    probs: &[f32],
    sample: &[u64],
    labels: Option<&[u32]>,
    rhythm: &[Rhythm],
) -> Vec<ClassifiedBeat> {
    let classes = probs.len() / decided.len().max(1);
    decided
        .iter()
        .enumerate()
        .map(|(i, &class)| ClassifiedBeat {
            sample: sample[i],
            class,
            reference: labels.map(|l| l[i]),
            probabilities: probs[i * classes..(i + 1) * classes].to_vec(),
            rhythm: rhythm[i],
        })
        .collect()
}

/// A recording's beats, cut and referenced as its network takes them ([`Classifier::cut_recording`]).
#[derive(Clone, Debug, Default)]
pub struct CutRecording {
    pub beats: Beats,
    /// Whether the R peaks came from the recording's annotations (else the QRS detector).
    pub annotated: bool,
    /// Beats that could not be cut: too close to the recording's edge, or past its end.
    pub not_cut: usize,
    /// How noisy the lead is ([`crate::data::signal::noise::NoiseIndex`]); `None` with too few beats.
    pub noise_index: Option<f32>,
    /// How far the beat annotations were moved before cutting (ms), if they were
    /// ([`crate::data::beats::BeatPositions::Registered`]).
    pub annotations_moved_ms: Option<f64>,
}

/// The preprocessing half of the pipeline: R peaks (annotations or the QRS detector), beats cut
/// a chunk at a time, each measured against the record's median beat when the network was
/// trained so.
struct Cutter {
    chunk: f64,
    mode: crate::data::beats::BeatMode,
    reference: BeatReference,
}

impl Cutter {
    /// Cuts the beats of `lead`, handing each chunk's to `each` (which returns the beats
    /// handled so far, for progress).
    fn cut(
        &self,
        lead: &mut dyn LeadSource,
        annotations: Option<Vec<Annotation>>,
        name: &str,
        progress: &mut dyn FnMut(Stage, usize, usize),
        mut each: impl FnMut(Beats) -> Result<usize>,
    ) -> Result<Cut> {
        let (chunk, mode) = (self.chunk, self.mode);
        let len = lead.len();
        let annotations = match annotations {
            Some(a) => a,
            None => stream::detect(lead, chunk, |done| progress(Stage::Detecting, done, len))?,
        };
        let total = annotations
            .iter()
            .filter(|a| AamiClass::from_code(a.code).is_some())
            .count();
        // measured on the chunks the cutting pass reads anyway
        let peaks = stream::peaks_at_125(&annotations, lead.fs(), len);
        let mut noise = NoiseIndex::default();
        let median = match self.reference {
            BeatReference::None => None,
            BeatReference::RecordMedian => {
                let mut median = MedianBeat::default();
                stream::beats(lead, &annotations, mode, name, chunk, |beats, _| {
                    median.push_all(&beats.x);
                    progress(Stage::MedianBeat, median.seen(), total);
                    Ok(())
                })?;
                median.median()
            }
        };
        let not_cut = stream::beats(lead, &annotations, mode, name, chunk, |mut beats, c| {
            noise.push_chunk(c.x, c.offset, c.take.clone(), &peaks);
            if let Some(median) = &median {
                beats
                    .x
                    .chunks_mut(BEAT_LEN)
                    .for_each(|b| relative(b, median));
            }
            let done = each(beats)?;
            progress(Stage::Classifying, done, total);
            Ok(())
        })?;
        Ok(Cut {
            not_cut,
            total,
            noise_index: noise.index(),
        })
    }
}

/// What cutting a recording tells besides its beats.
struct Cut {
    /// Beats that could not be cut.
    not_cut: usize,
    /// Beat annotations (or detected beats) in all.
    total: usize,
    /// [`crate::data::signal::noise::NoiseIndex`] of the lead, `None` with too few beats.
    noise_index: Option<f32>,
}

/// The CSV's header line: the R peak's sample, the reference and predicted class, a probability
/// per class, the beat's R–R features (seconds and ratios to the record's mean) and the
/// decision's confidence ([`ClassifiedBeat::confidence`]).
pub fn csv_header(names: &[String]) -> String {
    let probs: Vec<String> = names.iter().map(|n| format!("p_{n}")).collect();
    format!(
        "sample,annotated,predicted,{},{},confidence\n",
        probs.join(","),
        RR_FEATURES.join(",")
    )
}

/// The CSV rows of classified beats (what `predict` writes, and the web page's download).
pub fn csv_rows(beats: &[ClassifiedBeat], names: &[String]) -> String {
    let mut text = String::new();
    for b in beats {
        let probs: Vec<String> = b.probabilities.iter().map(|v| format!("{v:.6}")).collect();
        let rr: Vec<String> = b.rhythm.iter().map(|v| format!("{v:.4}")).collect();
        let reference = b.reference.map_or("", |r| names[r as usize].as_str());
        text += &format!(
            "{},{reference},{},{},{},{:.4}\n",
            b.sample,
            names[b.class as usize],
            probs.join(","),
            rr.join(","),
            b.confidence()
        );
    }
    text
}

#[cfg(all(test, not(target_arch = "wasm32")))]
mod send {
    /// A classifier can be moved to another thread (a Python binding releases its lock while
    /// the GPU works; a server classifies off its accepting thread).
    #[test]
    fn classifier_is_send() {
        fn send<T: Send>() {}
        send::<super::Classifier<'static>>();
    }
}
