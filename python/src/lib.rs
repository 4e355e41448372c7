//! `ecgwgpu._native`: the engine's library as Python sees it. The pure-Python package
//! (`src/ecgwgpu/`) shapes it (wfdb records, pandas); this module only converts: arrays in,
//! arrays out, engine errors as Python exceptions, the interpreter's lock released while the
//! GPU works.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use ecgwgpu::data::corpus::dataset::LoadOptions;
use ecgwgpu::data::formats::aami::AamiClass;
use ecgwgpu::data::formats::annotation::{self, Annotation};
use ecgwgpu::data::recording::{self, Recording};
use ecgwgpu::gpu::GpuContext;
use ecgwgpu::infer::{self, ClassifiedBeat, Classifier, Stage, Streaming};
use ecgwgpu::run::{RunSettings, TRAIN_SETTINGS};
use ecgwgpu::train::{EpochRecord, FitObserver, TrainData};
use ecgwgpu::Error;
use numpy::{IntoPyArray, PyArray1, PyArray2, PyArrayMethods, PyReadonlyArray1};
use pyo3::exceptions::{PyFileNotFoundError, PyKeyboardInterrupt, PyRuntimeError, PyValueError};
use pyo3::prelude::*;

pyo3::create_exception!(
    _native,
    EcgDataError,
    PyValueError,
    "Bad data in a recording: the message names the file and the place in it."
);
pyo3::create_exception!(
    _native,
    NoGpuError,
    PyRuntimeError,
    "No GPU adapter: install a Vulkan, Metal or DX12 driver (on Linux without a GPU, Mesa's \
     software Vulkan: apt-get install mesa-vulkan-drivers)."
);

/// An engine error as the Python exception a user expects.
fn py_err(e: Error) -> PyErr {
    match &e {
        Error::Io { source, .. } if source.kind() == std::io::ErrorKind::NotFound => {
            PyFileNotFoundError::new_err(e.to_string())
        }
        Error::Data { .. } | Error::NonFinite { .. } | Error::Label { .. } => {
            EcgDataError::new_err(e.to_string())
        }
        Error::NoAdapter { .. } | Error::DeviceRequest { .. } | Error::DeviceLimits { .. } => {
            NoGpuError::new_err(format!(
                "{e}. Install a GPU driver with Vulkan, Metal or DX12; on Linux without a GPU, \
                 Mesa's software Vulkan (apt-get install mesa-vulkan-drivers)"
            ))
        }
        Error::Config(_) | Error::Shape { .. } | Error::EmptyBatch(_) => {
            PyValueError::new_err(e.to_string())
        }
        Error::Stopped { .. } => PyKeyboardInterrupt::new_err(e.to_string()),
        _ => PyRuntimeError::new_err(e.to_string()),
    }
}

/// One GPU context per adapter selector for the life of the process (a context holds the
/// device; a classifier borrows it).
fn context(device: Option<&str>) -> Result<&'static GpuContext, Error> {
    static CONTEXTS: Mutex<Vec<(Option<String>, &'static GpuContext)>> = Mutex::new(vec![]);
    let mut held = CONTEXTS.lock().unwrap_or_else(|p| p.into_inner());
    if let Some((_, ctx)) = held.iter().find(|(d, _)| d.as_deref() == device) {
        return Ok(ctx);
    }
    let ctx: &'static GpuContext = Box::leak(Box::new(GpuContext::new(device)?));
    held.push((device.map(str::to_string), ctx));
    Ok(ctx)
}

/// A progress callback from Python: its exception is kept and stops the work.
struct Callback {
    callable: Option<Py<PyAny>>,
    raised: Option<PyErr>,
}

impl Callback {
    fn new(callable: Option<Py<PyAny>>) -> Self {
        Self {
            callable,
            raised: None,
        }
    }

    /// Calls it with `args` (and checks for Ctrl-C); an error stops the work.
    fn call<A>(&mut self, args: A) -> Result<(), Error>
    where
        A: for<'py> pyo3::call::PyCallArgs<'py>,
    {
        let outcome = Python::attach(|py| -> PyResult<()> {
            py.check_signals()?;
            if let Some(f) = &self.callable {
                f.call1(py, args)?;
            }
            Ok(())
        });
        outcome.map_err(|e| {
            self.raised = Some(e);
            Error::Config("stopped by the progress callback".into())
        })
    }

    /// The callback's own exception in place of the engine's report of it.
    fn error(&mut self, e: Error) -> PyErr {
        self.raised.take().unwrap_or_else(|| py_err(e))
    }
}

fn stage_name(stage: Stage) -> &'static str {
    match stage {
        Stage::Detecting => "detecting",
        Stage::MedianBeat => "median beat",
        Stage::Classifying => "classifying",
    }
}

/// The classified beats of one recording.
#[pyclass(module = "ecgwgpu._native", frozen)]
struct Classified {
    beats: Vec<ClassifiedBeat>,
    names: Vec<String>,
    #[pyo3(get)]
    warnings: Vec<String>,
    #[pyo3(get)]
    annotated: bool,
    #[pyo3(get)]
    not_cut: usize,
}

#[pymethods]
impl Classified {
    #[getter]
    fn class_names(&self) -> Vec<String> {
        self.names.clone()
    }
    /// R-peak samples at the recording's own rate.
    #[getter]
    fn sample<'py>(&self, py: Python<'py>) -> Bound<'py, PyArray1<u64>> {
        let v: Vec<u64> = self.beats.iter().map(|b| b.sample).collect();
        v.into_pyarray(py)
    }
    /// Decided class of each beat (an index into class_names).
    #[getter]
    fn predicted<'py>(&self, py: Python<'py>) -> Bound<'py, PyArray1<i64>> {
        let v: Vec<i64> = self.beats.iter().map(|b| i64::from(b.class)).collect();
        v.into_pyarray(py)
    }
    /// Reference class of each beat, -1 where the recording has none.
    #[getter]
    fn reference<'py>(&self, py: Python<'py>) -> Bound<'py, PyArray1<i64>> {
        let v: Vec<i64> = self
            .beats
            .iter()
            .map(|b| b.reference.map_or(-1, i64::from))
            .collect();
        v.into_pyarray(py)
    }
    /// [beats, classes]: what the decision rule decided from.
    #[getter]
    fn probabilities<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyArray2<f32>>> {
        let rows: Vec<Vec<f32>> = self.beats.iter().map(|b| b.probabilities.clone()).collect();
        matrix(py, rows, self.names.len())
    }
    /// [beats, 9]: the R–R features, as predict's CSV names them.
    #[getter]
    fn rr<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyArray2<f32>>> {
        let rows: Vec<Vec<f32>> = self.beats.iter().map(|b| b.rhythm.to_vec()).collect();
        matrix(py, rows, ecgwgpu::data::beats::rr::RR_FEATURES.len())
    }
    #[getter]
    fn rr_names(&self) -> Vec<&'static str> {
        ecgwgpu::data::beats::rr::RR_FEATURES.to_vec()
    }
    /// The decided class's probability minus the next: below 0.5 a near tie.
    #[getter]
    fn confidence<'py>(&self, py: Python<'py>) -> Bound<'py, PyArray1<f32>> {
        let v: Vec<f32> = self.beats.iter().map(|b| b.confidence()).collect();
        v.into_pyarray(py)
    }
    fn __len__(&self) -> usize {
        self.beats.len()
    }
    /// The CSV `ecgwgpu predict` writes, byte for byte.
    fn to_csv(&self) -> String {
        infer::csv_header(&self.names) + &infer::csv_rows(&self.beats, &self.names)
    }
}

fn matrix(py: Python<'_>, rows: Vec<Vec<f32>>, width: usize) -> PyResult<Bound<'_, PyArray2<f32>>> {
    let n = rows.len();
    let flat: Vec<f32> = rows.into_iter().flatten().collect();
    flat.into_pyarray(py).reshape([n, width])
}

/// A trained network ready to classify (the shipped model by default).
#[pyclass(module = "ecgwgpu._native", name = "Classifier")]
struct PyClassifier {
    inner: Mutex<Classifier<'static>>,
}

impl PyClassifier {
    fn run(
        &self,
        py: Python<'_>,
        rec: Recording,
        progress: Option<Py<PyAny>>,
        references: bool,
    ) -> PyResult<Classified> {
        let mut callback = Callback::new(progress);
        let outcome = py.detach(|| {
            let mut clf = self.inner.lock().unwrap_or_else(|p| p.into_inner());
            let names = clf.class_names().to_vec();
            let mut beats = vec![];
            let summary = clf.classify_recording(
                rec,
                Streaming::new()
                    .on_beats(|b| {
                        beats.extend_from_slice(b);
                        Ok(())
                    })
                    .on_progress(|stage, done, total| {
                        callback.call((stage_name(stage), done, total))
                    }),
            );
            summary.map(|s| (s, beats, names))
        });
        let (summary, mut beats, names) = outcome.map_err(|e| callback.error(e))?;
        if !references {
            beats.iter_mut().for_each(|b| b.reference = None);
        }
        Ok(Classified {
            beats,
            names,
            warnings: summary.warnings,
            annotated: summary.annotated && references,
            not_cut: summary.not_cut,
        })
    }
}

#[pymethods]
impl PyClassifier {
    /// `checkpoint`: None (the shipped model), a path, or the bytes of a safetensors file.
    #[new]
    #[pyo3(signature = (checkpoint=None, *, device=None))]
    fn new(
        py: Python<'_>,
        checkpoint: Option<Bound<'_, PyAny>>,
        device: Option<String>,
    ) -> PyResult<Self> {
        enum Source {
            Shipped,
            Path(PathBuf),
            Bytes(Vec<u8>),
        }
        let source = match checkpoint {
            None => Source::Shipped,
            Some(c) => match c.extract::<Vec<u8>>() {
                Ok(bytes) if c.is_instance_of::<pyo3::types::PyBytes>() => Source::Bytes(bytes),
                _ => Source::Path(c.extract::<PathBuf>().map_err(|_| {
                    PyValueError::new_err(
                        "checkpoint: give a path, bytes, or None for the shipped model",
                    )
                })?),
            },
        };
        let inner = py
            .detach(|| {
                let ctx = context(device.as_deref())?;
                match source {
                    Source::Shipped => Classifier::shipped(ctx),
                    Source::Path(p) => Classifier::load(ctx, &p),
                    Source::Bytes(b) => Classifier::from_bytes(ctx, &b, Path::new("<bytes>")),
                }
            })
            .map_err(py_err)?;
        Ok(Self {
            inner: Mutex::new(inner),
        })
    }

    #[getter]
    fn class_names(&self) -> Vec<String> {
        self.inner.lock().unwrap().class_names().to_vec()
    }

    /// The preprocessing the checkpoint carries, as JSON.
    #[getter]
    fn preprocessing_json(&self) -> String {
        let clf = self.inner.lock().unwrap();
        let (_, json) = clf.preprocessing().to_metadata(clf.config());
        json
    }

    /// Members of an ensemble (1 for one network).
    #[getter]
    fn members(&self) -> usize {
        self.inner.lock().unwrap().members()
    }

    /// One lead in memory. `r_peaks` (samples) from the caller or None for the built-in
    /// detector; `symbols` (WFDB mnemonics, one per R peak) make them reference beats.
    #[pyo3(signature = (signal, fs, r_peaks=None, symbols=None, *, name="signal".to_string(), lead=None, progress=None))]
    #[allow(clippy::too_many_arguments)]
    fn classify_array(
        &self,
        py: Python<'_>,
        signal: PyReadonlyArray1<'_, f32>,
        fs: f64,
        r_peaks: Option<Vec<i64>>,
        symbols: Option<Vec<String>>,
        name: String,
        lead: Option<String>,
        progress: Option<Py<PyAny>>,
    ) -> PyResult<Classified> {
        let signal = signal.as_slice()?.to_vec();
        let annotations = match (&r_peaks, &symbols) {
            (None, Some(_)) => {
                return Err(PyValueError::new_err(
                    "symbols need r_peaks, one per R peak",
                ))
            }
            (Some(p), Some(s)) if p.len() != s.len() => {
                return Err(PyValueError::new_err(format!(
                    "{} r_peaks but {} symbols: give one symbol per R peak",
                    p.len(),
                    s.len()
                )))
            }
            (None, None) => None,
            (Some(peaks), symbols) => {
                let mut out = Vec::with_capacity(peaks.len());
                for (i, &p) in peaks.iter().enumerate() {
                    if p < 0 || p as usize >= signal.len() {
                        return Err(PyValueError::new_err(format!(
                            "r_peaks[{i}] = {p}: outside the signal's {} samples",
                            signal.len()
                        )));
                    }
                    let code = match symbols {
                        None => AamiClass::N.code(),
                        Some(s) => annotation::code_from_mnemonic(&s[i]).unwrap_or(0),
                    };
                    out.push(Annotation::new(p as u64, code));
                }
                Some(out)
            }
        };
        let lead = lead.unwrap_or_else(|| {
            let clf = self.inner.lock().unwrap();
            clf.preprocessing().first_lead().to_string()
        });
        let rec = Recording::from_signal(&name, &lead, signal, fs, annotations).map_err(py_err)?;
        self.run(py, rec, progress, symbols.is_some())
    }

    /// A WFDB record (path without extension) or an EDF/EDF+ file, streamed.
    #[pyo3(signature = (path, *, progress=None))]
    fn classify_file(
        &self,
        py: Python<'_>,
        path: PathBuf,
        progress: Option<Py<PyAny>>,
    ) -> PyResult<Classified> {
        let lead = self.inner.lock().unwrap().preprocessing().lead.clone();
        let rec = py
            .detach(|| recording::open_any(&ecgwgpu::data::formats::files::Disk, &path, &lead))
            .map_err(|e| missing_record(e, &path))?;
        self.run(py, rec, progress, true)
    }
}

/// A missing record's header as FileNotFoundError naming it.
fn missing_record(e: Error, path: &Path) -> PyErr {
    let shown = e.to_string();
    match &e {
        Error::Io { source, .. } if source.kind() == std::io::ErrorKind::NotFound => {
            PyFileNotFoundError::new_err(format!("{}: {shown}", path.display()))
        }
        _ => py_err(e),
    }
}

/// One lead of a record: (signal in physical units, rate, lead label, annotation samples,
/// annotation symbols), the lead chosen as the CLI chooses it.
#[pyfunction]
#[pyo3(signature = (path, lead="MLII".to_string()))]
#[allow(clippy::type_complexity)]
fn read_record<'py>(
    py: Python<'py>,
    path: PathBuf,
    lead: String,
) -> PyResult<(
    Bound<'py, PyArray1<f32>>,
    f64,
    String,
    Bound<'py, PyArray1<u64>>,
    Vec<String>,
)> {
    let read = py.detach(|| -> Result<_, Error> {
        let mut rec = recording::open_any(&ecgwgpu::data::formats::files::Disk, &path, &lead)?;
        let n = rec.lead.len();
        Ok((
            rec.lead.read(0..n)?,
            rec.lead.fs(),
            rec.label.clone(),
            rec.annotations.take(),
        ))
    });
    let (signal, fs, label, annotations) = read.map_err(|e| missing_record(e, &path))?;
    let annotations = annotations.unwrap_or_default();
    let samples: Vec<u64> = annotations.iter().map(|a| a.sample).collect();
    let symbols: Vec<String> = annotations
        .iter()
        .map(|a| annotation::mnemonic(a.code).to_string())
        .collect();
    Ok((
        signal.into_pyarray(py),
        fs,
        label,
        samples.into_pyarray(py),
        symbols,
    ))
}

/// The index of the first lead of `preference` (a comma-separated list, any case) among
/// `labels`: the CLI's rule for which signal of a record to read.
#[pyfunction]
fn choose_lead(labels: Vec<String>, preference: &str) -> Option<usize> {
    let signals: Vec<(usize, &str)> = labels.iter().map(String::as_str).enumerate().collect();
    match recording::choose_lead(&signals, preference, false) {
        recording::LeadChoice::Found(i) => Some(i),
        _ => None,
    }
}

/// Every adapter wgpu sees, one line each.
#[pyfunction]
fn devices() -> Vec<String> {
    GpuContext::list_adapters()
}

/// The settings `train` takes and the Python type of each (`ecgwgpu::run::TRAIN_SETTINGS`), for
/// the package to check its keyword arguments against before any work.
#[pyfunction]
fn train_settings() -> Vec<(&'static str, &'static str)> {
    TRAIN_SETTINGS
        .iter()
        .map(|(name, kind)| (*name, kind.python_type()))
        .collect()
}

/// Hands each finished epoch to a Python callable; its exception, or Ctrl-C, stops the run at
/// the next batch.
struct Observer {
    callback: Callback,
}

impl FitObserver for Observer {
    fn epoch_ended(&mut self, r: &EpochRecord) {
        if self.callback.raised.is_some() {
            return;
        }
        let record = serde_json::to_string(r).unwrap_or_default();
        let _ = self.callback.call((record,));
    }
    fn stop_requested(&mut self) -> bool {
        if self.callback.raised.is_none() {
            let interrupted = Python::attach(|py| py.check_signals());
            if let Err(e) = interrupted {
                self.callback.raised = Some(e);
            }
        }
        self.callback.raised.is_some()
    }
}

/// Trains as `ecgwgpu train` does into `out`; `settings` is a JSON object of the names in
/// `ecgwgpu::run::TRAIN_SETTINGS`. Returns the run directory's metrics.json as text.
#[pyfunction]
#[pyo3(signature = (out, settings, *, data_dir, lead="MLII".to_string(), views=vec![], device=None, callback=None))]
#[allow(clippy::too_many_arguments)]
fn train(
    py: Python<'_>,
    out: PathBuf,
    settings: String,
    data_dir: PathBuf,
    lead: String,
    views: Vec<String>,
    device: Option<String>,
    callback: Option<Py<PyAny>>,
) -> PyResult<String> {
    let given: serde_json::Map<String, serde_json::Value> = serde_json::from_str(&settings)
        .map_err(|e| PyValueError::new_err(format!("settings: {e}")))?;
    let settings = RunSettings::with_train_settings(&given)
        .map_err(|e| PyValueError::new_err(e.to_string()))?;
    if !data_dir.is_dir() {
        return Err(PyFileNotFoundError::new_err(format!(
            "data_dir {}: not a folder",
            data_dir.display()
        )));
    }
    let data = TrainData::Records {
        dir: data_dir,
        options: LoadOptions {
            lead,
            views,
            ..LoadOptions::default()
        },
    };
    let mut observer = Observer {
        callback: Callback::new(callback),
    };
    let outcome = py.detach(|| -> Result<(), Error> {
        let ctx = context(device.as_deref())?;
        ecgwgpu::train::model_config(&settings)?;
        if settings.folds > 0 {
            ecgwgpu::train::train_folds(ctx, &settings, &data, &out, &mut observer)?;
        } else {
            ecgwgpu::train::train_heartbeat(ctx, &settings, &data, &out, &mut observer)?;
        }
        Ok(())
    });
    if let Err(e) = outcome {
        return Err(match (observer.callback.raised.take(), &e) {
            // the callback's own exception, with where the run stands
            (Some(raised), Error::Stopped { .. }) => {
                let note = e.to_string();
                // Python 3.11+ carries the note on the exception itself; before, a Ctrl-C
                // becomes a KeyboardInterrupt that says it
                let noted = Python::attach(|py| {
                    raised
                        .value(py)
                        .call_method1("add_note", (note.clone(),))
                        .is_ok()
                });
                let interrupt =
                    Python::attach(|py| raised.is_instance_of::<PyKeyboardInterrupt>(py));
                match (noted, interrupt) {
                    (false, true) => PyKeyboardInterrupt::new_err(note),
                    _ => raised,
                }
            }
            (Some(raised), _) => raised,
            (None, _) => py_err(e),
        });
    }
    let metrics = out.join("metrics.json");
    std::fs::read_to_string(&metrics).map_err(|e| py_err(Error::io(&metrics, e)))
}

#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PyClassifier>()?;
    m.add_class::<Classified>()?;
    m.add_function(wrap_pyfunction!(read_record, m)?)?;
    m.add_function(wrap_pyfunction!(devices, m)?)?;
    m.add_function(wrap_pyfunction!(choose_lead, m)?)?;
    m.add_function(wrap_pyfunction!(train, m)?)?;
    m.add_function(wrap_pyfunction!(train_settings, m)?)?;
    m.add("EcgDataError", m.py().get_type::<EcgDataError>())?;
    m.add("NoGpuError", m.py().get_type::<NoGpuError>())?;
    Ok(())
}
