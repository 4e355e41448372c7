//! ecgwgpu in a browser: the library's pipeline and WGSL kernels on WebGPU, for the static page
//! in `web/`. A thin shell like the CLI: JavaScript hands over file bytes and gets JSON back;
//! all the work is the library's (`Classifier`, `Trainer`, the data pipeline), awaited instead
//! of blocking, because a page's one thread is also the one that delivers the GPU's answers.

use std::cell::RefCell;
use std::path::{Path, PathBuf};
use std::rc::Rc;

use ecgwgpu::data::corpus::dataset::{load_from, LoadOptions};
use ecgwgpu::data::formats::files::MemoryFiles;
use ecgwgpu::data::recording::{self, is_edf};
use ecgwgpu::gpu::{GpuContext, Kernels};
use ecgwgpu::infer::{csv_header, csv_rows, Classifier, CutRecording};
use ecgwgpu::metrics::Confusion;
use ecgwgpu::model::Model;
use ecgwgpu::optim::AdamConfig;
use ecgwgpu::run::RunSettings;
use ecgwgpu::train::{loss_config, model_config};
use ecgwgpu::trainer::Trainer;
use serde::Serialize;
use wasm_bindgen::prelude::*;

/// The page's engine: one WebGPU device, the shipped model, and the network trained on the page.
#[wasm_bindgen]
pub struct Engine {
    /// Taken out while a task runs (so a second one is refused, not interleaved), then put back.
    state: Rc<RefCell<Option<State>>>,
    adapter: String,
}

struct State {
    ctx: &'static GpuContext,
    shipped: Classifier<'static>,
    trained: Option<Classifier<'static>>,
    /// The lead of the last classified recording, for the page's trace.
    signal: Vec<f32>,
}

/// What the page shows after classifying a recording.
#[derive(Serialize)]
struct Classified {
    record: String,
    lead: String,
    fs: f64,
    model: String,
    class_names: Vec<String>,
    annotated: bool,
    not_cut: usize,
    /// Per beat: R-peak sample, decided class, reference class (-1 without annotations).
    samples: Vec<u64>,
    classes: Vec<u32>,
    references: Vec<i64>,
    /// Row-major `[beats, classes]`.
    probabilities: Vec<f32>,
    counts: Vec<usize>,
    /// Beats whose decision is a near tie (confidence below `infer::LOW_CONFIDENCE`).
    low_confidence: usize,
    /// `confusion[truth][predicted]` when the recording has reference annotations.
    confusion: Option<Vec<Vec<usize>>>,
    accuracy: Option<f64>,
    /// The CSV that the native `predict` writes for this recording.
    csv: String,
    warnings: Vec<String>,
}

/// What training on the page gave.
#[derive(Serialize)]
struct Trained {
    beats: usize,
    records: Vec<String>,
    /// Mean loss of each epoch.
    epoch_loss: Vec<f32>,
    /// Every step's loss.
    step_loss: Vec<f32>,
    warnings: Vec<String>,
}

fn js_error(e: impl std::fmt::Display) -> JsValue {
    JsValue::from_str(&e.to_string())
}

/// Files given by the page: parallel arrays of names and byte arrays.
fn memory_files(names: &js_sys::Array, contents: &js_sys::Array) -> Result<MemoryFiles, JsValue> {
    if names.length() != contents.length() {
        return Err(js_error("names and contents differ in length"));
    }
    let mut files = MemoryFiles::new();
    for (name, bytes) in names.iter().zip(contents.iter()) {
        let name = name
            .as_string()
            .ok_or_else(|| js_error("a file name is not a string"))?;
        let bytes = js_sys::Uint8Array::new(&bytes).to_vec();
        files.insert(PathBuf::from(name), bytes);
    }
    Ok(files)
}

/// The record to open among the given files: `record` when named, else the only EDF file or
/// the only WFDB header.
fn record_path(files: &MemoryFiles, record: &str) -> Result<PathBuf, JsValue> {
    if !record.is_empty() {
        return Ok(PathBuf::from(record));
    }
    let edf: Vec<&Path> = files.paths().filter(|p| is_edf(p)).collect();
    let hea: Vec<&Path> = files
        .paths()
        .filter(|p| p.extension().is_some_and(|e| e.eq_ignore_ascii_case("hea")))
        .collect();
    match (edf.as_slice(), hea.as_slice()) {
        ([one], []) => Ok(one.to_path_buf()),
        ([], [one]) => Ok(one.with_extension("")),
        ([], []) => Err(js_error(
            "no recording among the files: give a WFDB record (.hea and .dat, optionally .atr) \
             or an EDF/EDF+ file",
        )),
        _ => Err(js_error(
            "several recordings among the files: give one WFDB record or one EDF file at a time",
        )),
    }
}

#[wasm_bindgen]
impl Engine {
    /// Opens the browser's WebGPU adapter and loads the shipped model. `kernels` forces a kernel
    /// variant (`cpu`, `gpu`, `tiled`; empty: the adapter type's). Fails with a message when the
    /// browser has no WebGPU.
    pub async fn open(kernels: String) -> Result<Engine, JsValue> {
        let kernels = match kernels.as_str() {
            "" => None,
            k => Some(k.parse::<Kernels>().map_err(js_error)?),
        };
        let ctx = GpuContext::new_async(None).await.map_err(js_error)?;
        let ctx = ctx.with_kernels(kernels);
        let ctx: &'static GpuContext = Box::leak(Box::new(ctx));
        let shipped = Classifier::shipped(ctx).map_err(js_error)?;
        Ok(Engine {
            adapter: ctx.describe(),
            state: Rc::new(RefCell::new(Some(State {
                ctx,
                shipped,
                trained: None,
                signal: vec![],
            }))),
        })
    }

    /// The adapter in use, e.g. `unnamed adapter (BrowserWebGpu, Cpu)` (browsers may hide the
    /// name).
    pub fn adapter(&self) -> String {
        self.adapter.clone()
    }

    /// The kernel variant the ops record: `cpu`, `gpu` or `tiled`.
    pub fn kernels(&self) -> String {
        self.with(|s| format!("{:?}", s.ctx.kernels).to_lowercase())
            .unwrap_or_default()
    }

    /// Whether a network has been trained on the page.
    pub fn has_trained(&self) -> bool {
        self.with(|s| s.trained.is_some()).unwrap_or(false)
    }

    /// The lead of the last classified recording (physical units), for the trace.
    pub fn signal(&self) -> Vec<f32> {
        self.with(|s| s.signal.clone()).unwrap_or_default()
    }

    /// Classifies every beat of one recording among the files (`record`: a WFDB record path
    /// without extension or an `.edf` name; empty picks the only one) with the shipped model, or
    /// the one trained on the page when `trained`. Resolves to JSON (see `Classified`).
    pub fn classify(
        &self,
        names: js_sys::Array,
        contents: js_sys::Array,
        record: String,
        trained: bool,
    ) -> Result<js_sys::Promise, JsValue> {
        let files = memory_files(&names, &contents)?;
        let state = self.state.clone();
        Ok(wasm_bindgen_futures::future_to_promise(async move {
            let path = record_path(&files, &record)?;
            let mut taken = take(&state)?;
            let json = classify(&mut taken, &files, &path, trained).await;
            state.replace(Some(taken));
            Ok(JsValue::from_str(&json.map_err(js_error)?))
        }))
    }

    /// Trains the `tiny` network on `records` among the files for `epochs` (at most `max_beats`
    /// beats, a seeded draw; 0 takes all), calling `on_step(epoch, beats_done, beats, loss)`
    /// as steps complete. The trained network then classifies with `classify(.., true)`.
    /// Resolves to JSON (see `Trained`).
    #[allow(clippy::too_many_arguments)]
    pub fn train(
        &self,
        names: js_sys::Array,
        contents: js_sys::Array,
        records: Vec<String>,
        epochs: u32,
        max_beats: u32,
        seed: u32,
        on_step: js_sys::Function,
    ) -> Result<js_sys::Promise, JsValue> {
        let files = memory_files(&names, &contents)?;
        let state = self.state.clone();
        Ok(wasm_bindgen_futures::future_to_promise(async move {
            let mut taken = take(&state)?;
            let json = train(
                &mut taken,
                &files,
                &records,
                epochs as usize,
                max_beats as usize,
                seed as u64,
                &on_step,
            )
            .await;
            state.replace(Some(taken));
            Ok(JsValue::from_str(&json.map_err(js_error)?))
        }))
    }
}

impl Engine {
    /// `f` of the state, unless a task holds it.
    fn with<T>(&self, f: impl FnOnce(&State) -> T) -> Option<T> {
        self.state.borrow().as_ref().map(f)
    }
}

/// The state, for one task; a second task while it runs is refused.
fn take(state: &Rc<RefCell<Option<State>>>) -> Result<State, JsValue> {
    state
        .borrow_mut()
        .take()
        .ok_or_else(|| js_error("the engine is busy: wait for the running task"))
}

async fn classify(
    state: &mut State,
    files: &MemoryFiles,
    path: &Path,
    trained: bool,
) -> ecgwgpu::Result<String> {
    let State {
        shipped,
        trained: on_page,
        signal,
        ..
    } = state;
    let (clf, model) = match (trained, on_page.as_mut()) {
        (true, Some(t)) => (t, "tiny, trained on this page"),
        (true, None) => {
            return Err(ecgwgpu::Error::Config(
                "no network has been trained on this page yet".into(),
            ))
        }
        (false, _) => (shipped, ecgwgpu::infer::SHIPPED_MODEL_NAME),
    };
    let lead = clf.preprocessing().lead.clone();
    let mut whole = recording::open_any(files, path, &lead)?;
    let mut warnings = vec![];
    if let Some(used) = &whole.fallback {
        warnings.push(format!(
            "no {lead} lead: classified the first signal, '{used}'"
        ));
    }
    if whole.dropped > 0 {
        warnings.push(format!(
            "{} annotations past the end of the signal were dropped",
            whole.dropped
        ));
    }
    let len = whole.lead.len();
    *signal = whole.lead.read(0..len)?;
    let (record, lead, fs) = (whole.name.clone(), whole.label.clone(), whole.lead.fs());
    let CutRecording {
        beats,
        annotated,
        not_cut,
        noise_index,
        annotations_moved_ms,
    } = clf.cut_recording(whole, |_, _, _| {})?;
    let classified = clf
        .classify_beats_at_async(&beats, annotated, &lead)
        .await?;
    let names = clf.class_names().to_vec();
    let classes = names.len();
    let mut counts = vec![0; classes];
    classified
        .iter()
        .for_each(|b| counts[b.class as usize] += 1);
    let low_confidence = classified
        .iter()
        .filter(|b| b.confidence() < ecgwgpu::infer::LOW_CONFIDENCE)
        .count();
    warnings.extend(ecgwgpu::infer::recording_warnings(
        clf.preprocessing(),
        &ecgwgpu::infer::RecordingFacts {
            lead: &lead,
            fs,
            beats: classified.len(),
            low_confidence,
            noise_index,
            annotations_moved_ms,
        },
    ));
    let decided: Vec<u32> = classified.iter().map(|b| b.class).collect();
    let confusion = annotated.then(|| Confusion::new(&beats.labels, &decided, classes));
    let accuracy = confusion
        .as_ref()
        .map(|c| c.correct() as f64 / c.total().max(1) as f64);
    let out = Classified {
        record,
        lead,
        fs,
        model: model.into(),
        annotated,
        not_cut,
        samples: classified.iter().map(|b| b.sample).collect(),
        classes: decided,
        references: classified
            .iter()
            .map(|b| b.reference.map_or(-1, i64::from))
            .collect(),
        probabilities: classified
            .iter()
            .flat_map(|b| b.probabilities.iter().copied())
            .collect(),
        counts,
        low_confidence,
        confusion: confusion.map(|c| c.counts),
        accuracy,
        csv: csv_header(&names) + &csv_rows(&classified, &names),
        class_names: names,
        warnings,
    };
    serde_json::to_string(&out).map_err(|e| ecgwgpu::Error::Config(e.to_string()))
}

async fn train(
    state: &mut State,
    files: &MemoryFiles,
    records: &[String],
    epochs: usize,
    max_beats: usize,
    seed: u64,
    on_step: &js_sys::Function,
) -> ecgwgpu::Result<String> {
    let ctx = state.ctx;
    let settings = RunSettings {
        preset: "tiny".into(),
        // a few epochs in a browser: ten times the paper's rate, so the curve moves
        lr: 1e-3,
        batch: 64,
        epochs: epochs.max(1),
        seed,
        ..RunSettings::default()
    };
    let config = model_config(&settings)?;
    let opts = LoadOptions {
        fallback_to_first: true,
        ..LoadOptions::default()
    };
    let mut ds = load_from(files, Path::new(""), records, &opts)?;
    if ds.beats.is_empty() {
        return Err(ecgwgpu::Error::Config(format!(
            "no labelled beats in {}",
            records.join(", ")
        )));
    }
    if max_beats > 0 && ds.beats.len() > max_beats {
        let mut pick = ecgwgpu::train::epoch_order(ds.beats.len(), seed, 0);
        pick.truncate(max_beats);
        pick.sort_unstable();
        ds.beats = ds.beats.select(&pick);
    }
    let n = ds.beats.len();
    let mut counts = vec![0usize; config.classes];
    ds.beats
        .labels
        .iter()
        .for_each(|&l| counts[l as usize] += 1);
    let loss = loss_config(&settings, &counts, false)?;
    let model = Model::new(ctx, config.clone(), seed)?;
    let adam = AdamConfig {
        lr: settings.lr,
        ..Default::default()
    };
    let mut trainer = Trainer::new(ctx, model, loss, adam)?;
    trainer.upload_training_data(&config.input_rows(&ds.beats), &ds.beats.labels)?;
    let (mut epoch_loss, mut step_loss) = (vec![], vec![]);
    for epoch in 0..settings.epochs {
        let order = ecgwgpu::train::epoch_order(n, seed, epoch);
        let losses = trainer
            .train_epoch_async(&order, settings.batch, |done, losses| {
                let last = losses.last().copied().unwrap_or(f32::NAN);
                let _ = on_step.call3(
                    &JsValue::NULL,
                    &JsValue::from(epoch as u32),
                    &JsValue::from((epoch * n + done) as u32),
                    &JsValue::from(last),
                );
            })
            .await?;
        epoch_loss.push(losses.iter().sum::<f32>() / losses.len().max(1) as f32);
        step_loss.extend(losses);
    }
    state.trained = Some(Classifier::new(ctx, trainer.model)?);
    let out = Trained {
        beats: n,
        records: ds.per_record.iter().map(|r| r.0.clone()).collect(),
        epoch_loss,
        step_loss,
        warnings: ds.warnings.clone(),
    };
    serde_json::to_string(&out).map_err(|e| ecgwgpu::Error::Config(e.to_string()))
}
