//! The library as a Rust program uses it: `train::fit` (exact resume, NaN stop, early stopping,
//! calibration), `infer::Classifier` (a signal, a recording, the shipped model), checkpoints
//! that carry their preprocessing, the typed run directory, and recordings held in memory and
//! classified through the awaited path a browser takes.

mod common;

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use common::{ctx, embedded_dir, scratch};
use ecgwgpu::data::beats::{BeatMode, Beats};
use ecgwgpu::data::corpus::dataset::{load_dir, load_from, LoadOptions};
use ecgwgpu::data::corpus::splits::{self, SplitKind};
use ecgwgpu::data::formats::files::MemoryFiles;
use ecgwgpu::data::recording;
use ecgwgpu::error::Error;
use ecgwgpu::gpu::block_on;
use ecgwgpu::infer::{Classifier, Streaming};
use ecgwgpu::loss::LossConfig;
use ecgwgpu::model::{Model, ModelConfig};
use ecgwgpu::optim::AdamConfig;
use ecgwgpu::preprocessing::{Preprocessing, Task};
use ecgwgpu::run::{BeatModeName, RunConfig, RunSettings};
use ecgwgpu::train::{self, FitObserver, Quiet, Schedule};
use ecgwgpu::trainer::Trainer;

const NAMES: [&str; 5] = ["N", "S", "V", "F", "Q"];

/// Train and validation beats from two embedded records, small enough for a few quick epochs.
fn beats() -> &'static (Beats, Beats) {
    static BEATS: OnceLock<(Beats, Beats)> = OnceLock::new();
    BEATS.get_or_init(|| {
        let options = LoadOptions {
            records: Some(vec!["208".into(), "232".into()]),
            ..LoadOptions::default()
        };
        let ds = load_dir(&embedded_dir(), &options).unwrap();
        let split = splits::split(&ds.beats, SplitKind::Intra, 0.0, 0.2, 1);
        let take = |idx: &[usize], n: usize| ds.beats.select(&idx[..idx.len().min(n)]);
        (take(&split.train, 1500), take(&split.val, 400))
    })
}

fn run_config(model: &ModelConfig, loss: &LossConfig, adam: &AdamConfig) -> RunConfig {
    RunConfig {
        task: Task::Heartbeat,
        args: RunSettings {
            preset: "tiny".into(),
            epochs: 0,
            lr: adam.lr,
            loss: "ce".into(),
            ..RunSettings::default()
        },
        data_dir: embedded_dir(),
        mode: BeatModeName(BeatMode::Kachuee),
        lead: "MLII".into(),
        model: model.clone(),
        loss: loss.clone(),
        adam: adam.clone(),
        device: ctx().describe(),
        class_counts: Default::default(),
        class_names: vec![],
        validation: None,
        records: None,
        transferred: None,
    }
}

/// Trains the tiny network on [`beats`] into `out` for `epochs` (continuing with `resume`).
fn fit(
    out: &Path,
    epochs: usize,
    lr: f32,
    patience: usize,
    resume: bool,
    observer: &mut dyn FitObserver,
) -> ecgwgpu::Result<Trainer<'static>> {
    let (train_beats, val) = beats();
    let config = ModelConfig::tiny();
    let loss = LossConfig::cross_entropy(5);
    let adam = AdamConfig {
        lr,
        ..Default::default()
    };
    let model = Model::new(ctx(), config.clone(), 1)?;
    let mut trainer = Trainer::new(ctx(), model, loss.clone(), adam.clone())?;
    let schedule = Schedule {
        out: out.to_path_buf(),
        epochs,
        batch: 32,
        seed: 1,
        patience,
        resume,
        balanced: false,
    };
    let run = run_config(&config, &loss, &adam);
    train::fit(
        &mut trainer,
        train_beats,
        None,
        val,
        &loss,
        &NAMES,
        &schedule,
        &run,
        observer,
    )?;
    Ok(trainer)
}

#[test]
fn fit_resumes_exactly_and_stops_on_a_non_finite_loss() {
    let (whole, split) = (scratch("lib-whole"), scratch("lib-split"));
    fit(&whole, 2, 1e-3, 0, false, &mut Quiet).unwrap();
    fit(&split, 1, 1e-3, 0, false, &mut Quiet).unwrap();
    #[derive(Default)]
    struct Seen(Vec<usize>, Option<usize>);
    impl FitObserver for Seen {
        fn resumed(&mut self, _: &Path, epoch: usize, _: u32) {
            self.1 = Some(epoch);
        }
        fn epoch_ended(&mut self, r: &train::EpochRecord) {
            self.0.push(r.epoch);
        }
    }
    let mut seen = Seen::default();
    fit(&split, 2, 1e-3, 0, true, &mut seen).unwrap();
    assert_eq!((seen.0, seen.1), (vec![2], Some(1)));
    // Same parameters bit for bit: Adam's moments, step count and the epoch's shuffle carried.
    let read = |dir: &Path| std::fs::read(dir.join("last.safetensors")).unwrap();
    assert_eq!(read(&whole), read(&split));
    let history = train::read_history(&split).unwrap();
    assert_eq!(history.iter().map(|r| r.epoch).collect::<Vec<_>>(), [1, 2]);

    // A learning rate of 1e38 sends the weights past f32's range within a few steps.
    let last = read(&split);
    let err = fit(&split, 3, 1e38, 0, true, &mut Quiet).err().unwrap();
    let text = err.to_string();
    assert!(
        text.contains("training stopped at epoch 3") && text.contains("last.safetensors"),
        "{text}"
    );
    assert_eq!(read(&split), last, "the last good checkpoint is kept");
}

/// `FitObserver::stop_requested` (Ctrl-C from Python, a cancel button) stops the run within
/// the epoch under way, naming the last good checkpoint; resuming then gives the run that was
/// never stopped, bit for bit.
#[test]
fn fit_stops_when_asked_and_resumes_exactly() {
    let (whole, stopped) = (scratch("lib-ask-whole"), scratch("lib-ask-stopped"));
    fit(&whole, 2, 1e-3, 0, false, &mut Quiet).unwrap();
    /// Asks to stop at the first progress report of epoch `at`.
    struct StopAt(usize, usize);
    impl FitObserver for StopAt {
        fn epoch_started(&mut self, epoch: usize, _: usize, _: usize) {
            self.1 = epoch;
        }
        fn stop_requested(&mut self) -> bool {
            self.1 == self.0
        }
    }
    let err = fit(&stopped, 2, 1e-3, 0, false, &mut StopAt(2, 0))
        .err()
        .unwrap();
    match &err {
        ecgwgpu::Error::Stopped { epoch, last_good } => {
            assert_eq!(*epoch, 2);
            assert!(last_good.ends_with("last.safetensors"), "{err}");
        }
        other => panic!("expected Stopped, got {other:?}"),
    }
    let history = train::read_history(&stopped).unwrap();
    assert_eq!(history.len(), 1, "only the finished epoch is kept");
    let err = fit(
        &scratch("lib-ask-first"),
        1,
        1e-3,
        0,
        false,
        &mut StopAt(1, 0),
    )
    .err()
    .unwrap();
    assert!(err.to_string().contains("no epoch had finished"), "{err}");
    fit(&stopped, 2, 1e-3, 0, true, &mut Quiet).unwrap();
    let read = |dir: &Path| std::fs::read(dir.join("last.safetensors")).unwrap();
    assert_eq!(read(&whole), read(&stopped));
}

#[test]
fn fit_stops_early_when_validation_stops_improving() {
    let out = scratch("lib-patience");
    #[derive(Default)]
    struct Stop(Option<usize>, usize);
    impl FitObserver for Stop {
        fn early_stop(&mut self, patience: usize) {
            self.0 = Some(patience);
        }
        fn epoch_ended(&mut self, _: &train::EpochRecord) {
            self.1 += 1;
        }
    }
    // With a learning rate of 0 the validation macro-F1 can never improve on epoch 1.
    let mut stop = Stop::default();
    fit(&out, 6, 0.0, 2, false, &mut stop).unwrap();
    assert_eq!((stop.0, stop.1), (Some(2), 3));
    assert_eq!(train::read_history(&out).unwrap().len(), 3);
}

#[test]
fn calibration_writes_offsets_that_raise_validation_macro_f1_into_the_checkpoint() {
    let out = scratch("lib-calibrate");
    let mut trainer = fit(&out, 1, 1e-3, 0, false, &mut Quiet).unwrap();
    let (_, val) = beats();
    let best = out.join("best.safetensors");
    let (before, after) = train::calibrate(&mut trainer, val, &[1, 2, 3], &NAMES, &best).unwrap();
    assert!(after >= before, "{before} → {after}");
    let offsets = trainer.model.config.decision_offsets.clone();
    assert_eq!(offsets.len(), 5);
    let loaded = Model::load(ctx(), &best).unwrap();
    assert_eq!(loaded.config.decision_offsets, offsets);
    // the classifier decides with them
    let mut clf = Classifier::new(ctx(), loaded).unwrap();
    let probs = clf.probabilities(val, |_, _| {}).unwrap();
    assert_eq!(
        clf.decide(&probs),
        ecgwgpu::metrics::decide(&probs, 5, &offsets)
    );
}

/// Record 208's MLII lead copied without its annotations, so the QRS detector must find beats.
fn unannotated_208(dir: &Path) -> PathBuf {
    for ext in ["hea", "dat"] {
        std::fs::copy(
            embedded_dir().join(format!("208.{ext}")),
            dir.join(format!("208.{ext}")),
        )
        .unwrap();
    }
    dir.join("208")
}

#[test]
fn the_shipped_model_classifies_a_signal_as_it_classifies_the_recording() {
    let mut clf = Classifier::shipped(ctx()).unwrap();
    let pre = clf.preprocessing().clone();
    assert_eq!(pre.task, Task::Heartbeat);
    assert_eq!(pre.class_names, NAMES);
    assert_eq!(pre.beat_mode, BeatMode::Kachuee);
    // annotations that sit elsewhere on the QRS complex than MIT-BIH's are moved first
    assert_eq!(
        pre.beat_positions,
        ecgwgpu::data::beats::BeatPositions::Registered { beyond_ms: 30 }
    );

    // The annotated record: every beat, and record 208's many PVCs found.
    let mut annotated = vec![];
    let summary = clf
        .classify_file(
            &embedded_dir().join("208"),
            Streaming::new().on_beats(|b| {
                annotated.extend_from_slice(b);
                Ok(())
            }),
        )
        .unwrap();
    assert!(summary.annotated);
    assert_eq!(summary.beats, annotated.len());
    assert!(summary.beats > 2900, "{summary:?}");
    let v_right = annotated
        .iter()
        .filter(|b| b.reference == Some(2) && b.class == 2)
        .count();
    let v_total = annotated.iter().filter(|b| b.reference == Some(2)).count();
    assert!(
        v_total > 900 && v_right * 10 > v_total * 8,
        "{v_right} of {v_total} V"
    );
    for b in &annotated {
        let sum: f32 = b.probabilities.iter().sum();
        assert!((sum - 1.0).abs() < 1e-4, "{:?}", b.probabilities);
    }
    // confidence: the decided class's probability over the next; near ties are counted, and
    // the beats decided with confidence are decided right more often than the near ties
    let low = annotated
        .iter()
        .filter(|b| b.confidence() < ecgwgpu::infer::LOW_CONFIDENCE)
        .count();
    assert_eq!(summary.low_confidence, low);
    assert!(summary.warnings.is_empty(), "{:?}", summary.warnings);
    // the noise index measured while cutting is the one a pass of its own gives
    let mut rec = recording::open_any(
        &ecgwgpu::data::formats::files::Disk,
        &embedded_dir().join("208"),
        "MLII",
    )
    .unwrap();
    let peaks = rec.annotations.take().unwrap();
    let alone = ecgwgpu::data::beats::stream::noise(
        rec.lead.as_mut(),
        &peaks,
        ecgwgpu::data::beats::stream::CHUNK_S,
    )
    .unwrap();
    assert!(alone.is_some());
    assert_eq!(summary.noise_index, alone);
    let right = |sure: bool| {
        let of: Vec<_> = annotated
            .iter()
            .filter(|b| (b.confidence() >= ecgwgpu::infer::LOW_CONFIDENCE) == sure)
            .collect();
        of.iter().filter(|b| b.reference == Some(b.class)).count() as f64 / of.len() as f64
    };
    assert!(
        right(true) > right(false),
        "{} vs {}",
        right(true),
        right(false)
    );

    // The same lead in memory, and streamed from a file without annotations: the same beats.
    let dir = scratch("lib-signal");
    let record = unannotated_208(&dir);
    let mut streamed = vec![];
    let summary = clf
        .classify_file(
            &record,
            Streaming::new().on_beats(|b| {
                streamed.extend_from_slice(b);
                Ok(())
            }),
        )
        .unwrap();
    assert!(!summary.annotated);
    // the lead's samples in physical units, as the streamed reader decodes them
    let mut rec = ecgwgpu::data::recording::open(&record, "MLII", false)
        .unwrap()
        .unwrap();
    let (fs, len) = (rec.lead.fs(), rec.lead.len());
    let mlii = rec.lead.read(0..len).unwrap();
    let in_memory = clf.classify_signal(&mlii, fs).unwrap();
    assert_eq!(in_memory, streamed);
    // the detector finds (nearly) the annotated beats
    let (found, truth) = (in_memory.len(), annotated.len());
    assert!(
        found.abs_diff(truth) < truth / 20,
        "{found} beats found, {truth} annotated"
    );
    assert!(clf.classify_signal(&mlii, 0.0).is_err());
}

#[test]
fn a_checkpoint_carries_its_preprocessing_and_older_ones_take_their_runs() {
    let dir = scratch("lib-preprocessing");
    let mut model = Model::new(ctx(), ModelConfig::tiny(), 3).unwrap();
    model.preprocessing.beat_mode = BeatMode::KachueeBeat;
    model.preprocessing.lead = "II,MLII".into();
    model.preprocessing.beat_positions = ecgwgpu::data::beats::BeatPositions::Detector;
    let path = dir.join("centred.safetensors");
    model.save(ctx(), &path, 1).unwrap();
    let loaded = Model::load(ctx(), &path).unwrap();
    assert_eq!(loaded.preprocessing, model.preprocessing);

    // Written before checkpoints carried it: the metadata key is absent. Without a run beside
    // it, the paper's; with its run's config.json, the run's.
    let (tensors, mut meta) = ecgwgpu::checkpoint::load(&path).unwrap();
    meta.remove("preprocessing");
    let old = dir.join("old").join("best.safetensors");
    std::fs::create_dir_all(old.parent().unwrap()).unwrap();
    ecgwgpu::checkpoint::save(&old, &tensors, &meta).unwrap();
    let guessed = Model::load(ctx(), &old).unwrap().preprocessing;
    assert_eq!(guessed, Preprocessing::for_task(Task::Heartbeat, 5));
    let adam = AdamConfig::default();
    let mut run = run_config(&ModelConfig::tiny(), &LossConfig::cross_entropy(5), &adam);
    for mode in BeatMode::ALL {
        run.mode = BeatModeName(mode);
        run.write(old.parent().unwrap()).unwrap();
        let from_run = Model::load(ctx(), &old).unwrap().preprocessing;
        assert_eq!(from_run.beat_mode, mode);
        assert_eq!(from_run.lead, "MLII");
    }

    // A stored preprocessing this build cannot apply is refused, naming the file and key.
    let (tensors, mut meta) = ecgwgpu::checkpoint::load(&path).unwrap();
    let text = meta["preprocessing"].replace("\"window\":187", "\"window\":250");
    meta.insert("preprocessing".into(), text);
    ecgwgpu::checkpoint::save(&path, &tensors, &meta).unwrap();
    let err = Model::load(ctx(), &path).err().unwrap().to_string();
    assert!(
        err.contains("centred.safetensors") && err.contains("preprocessing"),
        "{err}"
    );
}

#[test]
fn run_configs_read_typed_and_errors_name_the_file_and_field() {
    // every committed run directory reads
    let results = Path::new(env!("CARGO_MANIFEST_DIR")).join("results");
    let mut read = 0;
    let mut stack = vec![results];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else if path.file_name().unwrap() == "config.json" {
                RunConfig::read(path.parent().unwrap())
                    .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
                read += 1;
            }
        }
    }
    assert!(read >= 50, "{read} run configs");

    let dir = scratch("lib-config");
    let adam = AdamConfig::default();
    let run = run_config(&ModelConfig::tiny(), &LossConfig::cross_entropy(5), &adam);
    run.write(&dir).unwrap();
    assert_eq!(RunConfig::read(&dir).unwrap(), run);
    let text = std::fs::read_to_string(dir.join("config.json")).unwrap();
    let broken = text.replace("\"seed\": 1", "\"seed\": \"one\"");
    std::fs::write(dir.join("config.json"), broken).unwrap();
    let err = RunConfig::read(&dir).err().unwrap();
    assert!(matches!(err, Error::Data { .. }));
    let err = err.to_string();
    assert!(
        err.contains("config.json") && err.contains("args.seed"),
        "{err}"
    );
    let missing = text.replace("\"lead\": \"MLII\",", "");
    std::fs::write(dir.join("config.json"), missing).unwrap();
    let err = RunConfig::read(&dir).err().unwrap().to_string();
    assert!(err.contains("config.json") && err.contains("lead"), "{err}");
}

#[test]
fn resume_refuses_a_run_read_differently_and_names_what_changed() {
    let adam = AdamConfig::default();
    let before = run_config(&ModelConfig::tiny(), &LossConfig::cross_entropy(5), &adam);
    let path = Path::new("runs/x/config.json");
    // what may change on resume
    let mut later = before.clone();
    later.args.epochs = 9;
    later.args.lr = 0.5;
    later.device = "another adapter".into();
    later.check_resumable(&before, path).unwrap();
    // reading the records differently may not
    for (change, name) in [
        (
            (|r: &mut RunConfig| r.args.fallback_lead = true) as fn(&mut RunConfig),
            "args.fallback_lead = true (was null)",
        ),
        (|r| r.args.strict = true, "args.strict = true (was null)"),
        (|r| r.lead = "II".into(), "lead = \"II\" (was \"MLII\")"),
    ] {
        let mut changed = before.clone();
        change(&mut changed);
        let err = changed
            .check_resumable(&before, path)
            .err()
            .unwrap()
            .to_string();
        assert!(
            err.contains(name) && err.contains("runs/x/config.json"),
            "{err}"
        );
    }
}

#[test]
fn an_ensemble_averages_its_members_and_folds_keep_patients_whole() {
    let (_, val) = beats();
    let a = Model::new(ctx(), ModelConfig::tiny(), 1).unwrap();
    let dir = scratch("lib-ensemble");
    let single = dir.join("a.safetensors");
    a.save(ctx(), &single, 1).unwrap();
    let b = Model::new(ctx(), ModelConfig::tiny(), 2).unwrap();
    let both = dir.join("ab.safetensors");
    Model::save_ensemble(ctx(), &[a, b], &Default::default(), &both).unwrap();
    let probs = |path: &Path| {
        let mut clf = Classifier::load(ctx(), path).unwrap();
        (clf.members(), clf.probabilities(val, |_, _| {}).unwrap())
    };
    let (one, p_a) = probs(&single);
    let b_path = dir.join("b.safetensors");
    Model::new(ctx(), ModelConfig::tiny(), 2)
        .unwrap()
        .save(ctx(), &b_path, 1)
        .unwrap();
    let (_, p_b) = probs(&b_path);
    let (two, p_ab) = probs(&both);
    assert_eq!((one, two), (1, 2));
    for ((x, y), m) in p_a.iter().zip(&p_b).zip(&p_ab) {
        assert!(
            (m - (x + y) / 2.0).abs() < 1e-6,
            "{m} vs mean of {x} and {y}"
        );
    }
    // an ensemble is not a single network
    assert!(Model::load(ctx(), &both).is_err());

    // folds: every record in one fold, the minority classes spread over folds
    let ds = load_dir(&embedded_dir(), &LoadOptions::default()).unwrap();
    let folds = splits::patient_folds(&ds.beats, 2, 1);
    let mut all: Vec<&String> = folds.iter().flatten().collect();
    all.sort();
    assert_eq!(all, ["107", "208", "209", "213", "232"]);
    for f in &folds {
        let s_beats = (0..ds.beats.len())
            .filter(|&i| ds.beats.labels[i] == 1 && f.contains(&ds.beats.record[i]))
            .count();
        assert!(s_beats > 0, "fold {f:?} has no S beat");
    }
    assert_eq!(folds, splits::patient_folds(&ds.beats, 2, 1), "seeded");
}

#[test]
fn a_balanced_epoch_shares_its_draws_among_the_classes() {
    // 900 N, 150 V, 5 Q: Q keeps its 5 beats, N and V get half of the rest each
    let labels: Vec<u32> = (0..1055)
        .map(|i| match i {
            0..900 => 0,
            900..1050 => 2,
            _ => 4,
        })
        .collect();
    let order = train::balanced_order(&labels, 1, 3);
    assert_eq!(order.len(), labels.len());
    let count = |c: u32| order.iter().filter(|&&i| labels[i] == c).count();
    assert_eq!((count(0), count(2), count(4)), (525, 525, 5));
    // every V beat drawn 3 or 4 times: whole passes before repeats
    let mut times = vec![0usize; labels.len()];
    order.iter().for_each(|&i| times[i] += 1);
    assert!(times[900..1050].iter().all(|&t| t == 3 || t == 4));
    assert!(times[..900].iter().all(|&t| t <= 1));
    assert_eq!(order, train::balanced_order(&labels, 1, 3), "seeded");
    assert_ne!(
        order,
        train::balanced_order(&labels, 1, 4),
        "a fresh order per epoch"
    );
}

/// The files of embedded record `name` in memory, as a web page hands them over.
fn in_memory(name: &str) -> MemoryFiles {
    let mut files = MemoryFiles::new();
    for ext in ["hea", "dat", "atr"] {
        let file = format!("{name}.{ext}");
        files.insert(&file, std::fs::read(embedded_dir().join(&file)).unwrap());
    }
    files
}

#[test]
fn a_recording_in_memory_classifies_as_on_disk_through_the_awaited_path() {
    let mut clf = Classifier::shipped(ctx()).unwrap();
    let mut on_disk = vec![];
    clf.classify_file(
        &embedded_dir().join("208"),
        Streaming::new().on_beats(|b| {
            on_disk.extend_from_slice(b);
            Ok(())
        }),
    )
    .unwrap();

    // a caller's array and annotations (as wfdb-python would hand them over) take the file's
    // path: the same beats, bit for bit
    let mut rec = recording::open(&embedded_dir().join("208"), "MLII", false)
        .unwrap()
        .unwrap();
    let (n, fs) = (rec.lead.len(), rec.lead.fs());
    let signal = rec.lead.read(0..n).unwrap();
    let annotations = rec.annotations.take();
    let array =
        recording::Recording::from_signal("208", "MLII", signal.clone(), fs, annotations).unwrap();
    let mut from_array = vec![];
    let summary = clf
        .classify_recording(
            array,
            Streaming::new().on_beats(|b| {
                from_array.extend_from_slice(b);
                Ok(())
            }),
        )
        .unwrap();
    assert_eq!(summary.beats, on_disk.len());
    assert!(from_array == on_disk);
    // bad arrays are refused, naming what is wrong
    let mut nan = signal.clone();
    nan[7] = f32::NAN;
    let e = recording::Recording::from_signal("x", "MLII", nan, fs, None)
        .err()
        .unwrap();
    assert!(e.to_string().contains("sample 7 is NaN"), "{e}");
    let e = recording::Recording::from_signal("x", "MLII", signal.clone(), 0.0, None)
        .err()
        .unwrap();
    assert!(e.to_string().contains("0 Hz"), "{e}");
    // a progress callback's error stops the work and comes back
    let stopped = clf.classify_file(
        &embedded_dir().join("208"),
        Streaming::new().on_progress(|_, _, _| Err(ecgwgpu::Error::Config("cancelled".into()))),
    );
    assert!(
        matches!(&stopped, Err(ecgwgpu::Error::Config(what)) if what == "cancelled"),
        "{stopped:?}"
    );

    // the browser's path: files in memory, every beat cut, one awaited classification
    let files = in_memory("208");
    let rec = recording::open_any(&files, Path::new("208"), "MLII").unwrap();
    let cut = clf.cut_recording(rec, |_, _, _| {}).unwrap();
    assert!(cut.annotated);
    let awaited = block_on(clf.classify_beats_async(&cut.beats, true)).unwrap();
    assert_eq!(awaited.len(), on_disk.len());
    // the shipped rule smooths each record over its groups of beats, which the streamed path
    // holds until the record is cut: without the smoothing some beats decide otherwise
    assert!(clf.config().record_clusters.is_some());
    let raw = clf.probabilities(&cut.beats, |_, _| {}).unwrap();
    let unsmoothed = clf.config().decide_beats(&raw, &cut.beats.rr, &[]);
    assert!(unsmoothed.iter().zip(&on_disk).any(|(u, d)| *u != d.class));
    for (a, d) in awaited.iter().zip(&on_disk) {
        assert_eq!(
            (a.sample, a.class, a.reference),
            (d.sample, d.class, d.reference)
        );
        for (p, q) in a.probabilities.iter().zip(&d.probabilities) {
            assert!((p - q).abs() < 1e-5, "beat at {}: {p} vs {q}", a.sample);
        }
    }

    // a corpus from memory loads the beats a folder on disk gives
    let opts = LoadOptions {
        records: Some(vec!["208".into()]),
        ..LoadOptions::default()
    };
    let disk = load_dir(&embedded_dir(), &opts).unwrap();
    let memory = load_from(&files, Path::new(""), &["208".into()], &opts).unwrap();
    assert_eq!(memory.beats.labels, disk.beats.labels);
    assert_eq!(memory.beats.x, disk.beats.x);
}

#[test]
fn files_missing_from_memory_and_signal_less_edf_files_are_named_errors() {
    let mut files = in_memory("208");
    files.insert("208.dat", vec![0; 1000]);
    let err = recording::open_any(&files, Path::new("208"), "MLII")
        .err()
        .unwrap()
        .to_string();
    assert!(
        err.contains("208.dat") && err.contains("ends early"),
        "{err}"
    );

    let mut header_only = MemoryFiles::new();
    header_only.insert(
        "208.hea",
        std::fs::read(embedded_dir().join("208.hea")).unwrap(),
    );
    let err = recording::open_any(&header_only, Path::new("208"), "MLII")
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("208.dat"), "{err}");

    // an EDF+ file whose one signal is its annotations: nothing to classify
    let field = |s: &str, n: usize| format!("{s:<n$}");
    let header = [
        field("0", 8),
        field("X X X X", 80),
        field("Startdate 01-JAN-2001 X X X", 80),
        field("01.01.01", 8),
        field("00.00.00", 8),
        field("512", 8),
        field("EDF+C", 44),
        field("1", 8),
        field("1", 8),
        field("1", 4),
        field("EDF Annotations", 16),
        field("", 80),
        field("", 8),
        field("-1", 8),
        field("1", 8),
        field("-32768", 8),
        field("32767", 8),
        field("", 80),
        field("30", 8),
        field("", 32),
    ]
    .concat();
    let mut bytes = header.into_bytes();
    bytes.extend_from_slice(b"+0\x14\x14\0");
    bytes.resize(512 + 60, 0);
    let mut edf = MemoryFiles::new();
    edf.insert("notes.edf", bytes);
    let err = recording::open_any(&edf, Path::new("notes.edf"), "MLII")
        .err()
        .unwrap()
        .to_string();
    assert!(
        err.contains("notes.edf") && err.contains("annotations only"),
        "{err}"
    );
}

#[test]
fn the_irregular_rhythm_gate_turns_s_into_n_only_where_the_rhythm_is_irregular() {
    use ecgwgpu::metrics::{choose_irregular_gate, gate_irregular, IRREGULARITY};
    let rhythm = |irregularity: f32| {
        let mut r = ecgwgpu::data::beats::rr::NOMINAL;
        r[IRREGULARITY] = irregularity;
        r
    };
    // N, S, S, V decided; the second S sits in an irregular stretch
    let mut decided = vec![0, 1, 1, 2];
    let rr = [rhythm(0.3), rhythm(0.02), rhythm(0.3), rhythm(0.3)];
    gate_irregular(&mut decided, &rr, 0.1);
    assert_eq!(decided, [0, 1, 0, 2]);
    // chosen on labels: the irregular "S" calls are N beats, so a gate wins
    let labels = [0, 1, 0, 2];
    let choice = choose_irregular_gate(&[0, 1, 1, 2], &labels, &rr, &NAMES);
    assert!(choice.threshold.is_some_and(|t| t < 0.3), "{choice:?}");
    assert!(choice.report.macro_f1 > choice.macro_f1_ungated);
    // where they are S beats, no gate
    let labels = [0, 1, 1, 2];
    assert_eq!(
        choose_irregular_gate(&[0, 1, 1, 2], &labels, &rr, &NAMES).threshold,
        None
    );
}

/// The on-time V gate turns a V decision into N only for a beat read at another lead, on time
/// (its preceding R–R at least a fraction of the local mean) and with a V probability below
/// the gate's; validation chooses it only where it helps, and only where some beats are at
/// another lead.
#[test]
fn the_on_time_v_gate_spares_early_and_certain_v_beats_and_the_training_lead() {
    use ecgwgpu::metrics::{choose_on_time_v_gate, OnTimeVGate};
    // pre_rr and local_rr in seconds
    let timed = |pre: f32| {
        let mut r = ecgwgpu::data::beats::rr::NOMINAL;
        (r[0], r[2]) = (pre, 0.8);
        r
    };
    let p = |v: f32| vec![1.0 - v, 0.0, v, 0.0, 0.0];
    // V decisions: on time and unsure, early and unsure, on time and sure, an N, and on time
    // and unsure at the training lead
    let probs: Vec<f32> = [p(0.55), p(0.55), p(0.97), p(0.1), p(0.55)].concat();
    let rr = [timed(0.8), timed(0.5), timed(0.82), timed(0.8), timed(0.8)];
    let other = [true, true, true, true, false];
    let gate = OnTimeVGate {
        below_p_v: 0.7,
        on_time: 0.9,
    };
    let mut decided = vec![2, 2, 2, 0, 2];
    gate.apply(&mut decided, &probs, 5, &rr, &other);
    assert_eq!(decided, [0, 2, 2, 0, 2]);
    let mut untouched = vec![2, 2, 2, 0, 2];
    gate.apply(&mut untouched, &probs, 5, &rr, &[]);
    assert_eq!(untouched, [2, 2, 2, 0, 2]);
    assert_eq!(OnTimeVGate::timing(&timed(0.4)), 0.5);
    // chosen where the on-time unsure "V" is an N beat, not where it is a V beat
    let d = [2, 2, 2, 0, 2];
    let choice = choose_on_time_v_gate(&d, &probs, &[0, 2, 2, 0, 2], &rr, &other, &NAMES);
    let chosen = choice.gate.expect("a gate helps here");
    assert!(
        chosen.below_p_v > 0.55 && chosen.below_p_v <= 0.97,
        "{chosen:?}"
    );
    assert!(choice.report.macro_f1 > choice.macro_f1_without);
    assert_eq!(OnTimeVGate::TRIED.len(), choice.macro_f1_by_setting.len());
    let none = choose_on_time_v_gate(&d, &probs, &[2, 2, 2, 0, 2], &rr, &other, &NAMES);
    assert_eq!(none.gate, None);
    // nothing at another lead: nothing to choose
    let no_other = choose_on_time_v_gate(&d, &probs, &[0, 2, 2, 0, 2], &rr, &[], &NAMES);
    assert_eq!(no_other.gate, None);
}

/// Which beats were read at a lead the network was not trained on: a view's lead from its
/// name, every other beat's from where the records were read.
#[test]
fn beats_at_another_lead_are_told_apart_from_the_training_lead() {
    let pre = Preprocessing::for_task(Task::Heartbeat, 5);
    assert!(pre.trained_on("MLII") && pre.trained_on("mlii") && !pre.trained_on("V1"));
    assert!(!pre.trained_on("V1,V2,V4,V5") && pre.trained_on("V1,MLII"));
    let mut beats = Beats::default();
    for record in ["100", "100~V1", "100~MLII@250Hz"] {
        beats.push(
            &[0.0; ecgwgpu::data::beats::BEAT_LEN],
            0,
            (record, 0),
            ecgwgpu::data::beats::rr::NOMINAL,
        );
    }
    assert_eq!(pre.other_lead_beats(&beats, "MLII"), [false, true, false]);
    assert_eq!(
        pre.other_lead_beats(&beats, "V1,V2,V4,V5"),
        [true, true, false]
    );
    let own = beats.select(&[0, 2]);
    assert!(pre.other_lead_beats(&own, "MLII").is_empty());
}

/// A beat's confidence is the decided class's probability minus the highest other one (0 when
/// the rule decided against the most probable class); a recording warns when its lead is not
/// the network's or when over a third of its beats are near ties.
#[test]
fn confidence_and_recording_warnings() {
    use ecgwgpu::infer::{recording_warnings, ClassifiedBeat, RecordingFacts};
    let beat = |class: u32, probabilities: Vec<f32>| ClassifiedBeat {
        sample: 0,
        class,
        reference: None,
        probabilities,
        rhythm: ecgwgpu::data::beats::rr::NOMINAL,
    };
    assert!((beat(0, vec![0.9, 0.05, 0.05, 0.0, 0.0]).confidence() - 0.85).abs() < 1e-6);
    assert!((beat(2, vec![0.3, 0.0, 0.5, 0.2, 0.0]).confidence() - 0.2).abs() < 1e-6);
    assert_eq!(beat(1, vec![0.6, 0.4, 0.0, 0.0, 0.0]).confidence(), 0.0);
    let pre = Preprocessing::for_task(Task::Heartbeat, 5);
    let facts = RecordingFacts {
        lead: "MLII",
        fs: 360.0,
        beats: 100,
        low_confidence: 10,
        noise_index: Some(0.01),
        annotations_moved_ms: None,
    };
    assert!(recording_warnings(&pre, &facts).is_empty());
    let other_lead = recording_warnings(
        &pre,
        &RecordingFacts {
            lead: "V1",
            ..facts
        },
    );
    assert_eq!(other_lead.len(), 1);
    assert!(other_lead[0].contains("'V1'"), "{other_lead:?}");
    let unsure = RecordingFacts {
        lead: "mlii",
        beats: 90,
        low_confidence: 31,
        ..facts
    };
    let unsure = recording_warnings(&pre, &unsure);
    assert_eq!(unsure.len(), 1);
    assert!(
        unsure[0].contains("34 % of the beats (31 of 90)"),
        "{unsure:?}"
    );
    let empty = RecordingFacts {
        beats: 0,
        low_confidence: 0,
        ..facts
    };
    assert!(recording_warnings(&pre, &empty).is_empty());
    // a rate below the network's own: upsampled beats
    let slow = recording_warnings(&pre, &RecordingFacts { fs: 100.0, ..facts });
    assert_eq!(slow.len(), 1);
    assert!(slow[0].contains("(100 Hz) is below the 125 Hz"), "{slow:?}");
    assert!(recording_warnings(&pre, &RecordingFacts { fs: 128.0, ..facts }).is_empty());
    // annotations moved to where the network expects them: said, with the direction
    let moved = RecordingFacts {
        annotations_moved_ms: Some(-38.9),
        ..facts
    };
    let moved = recording_warnings(&pre, &moved);
    assert_eq!(moved.len(), 1);
    assert!(
        moved[0].contains("sit 39 ms after") && moved[0].contains("moved 39 ms earlier"),
        "{moved:?}"
    );
}

/// The noise index of record 208 as it is, and as `evaluate --resample 250 --noise strong`
/// reads it: only the noisy one passes the warning's threshold, and the warning says so.
#[test]
fn a_noisy_recording_gets_a_warning() {
    use ecgwgpu::data::beats::stream;
    use ecgwgpu::data::formats::files::Disk;
    use ecgwgpu::data::signal::acquisition::{Acquisition, NoiseLevel};
    use ecgwgpu::infer::{recording_warnings, RecordingFacts, NOISY};
    let open = || recording::open_any(&Disk, &embedded_dir().join("208"), "MLII").unwrap();
    let strong = Acquisition {
        rate: Some(250.0),
        noise: NoiseLevel::Strong.noise(),
        seed: 1,
        ..Default::default()
    };
    let pre = Preprocessing::for_task(Task::Heartbeat, 5);
    for (mut rec, noisy) in [(open(), false), (strong.apply(open()).unwrap(), true)] {
        let annotations = rec.annotations.take().unwrap();
        let index = stream::noise(rec.lead.as_mut(), &annotations, stream::CHUNK_S)
            .unwrap()
            .unwrap();
        assert_eq!(index > NOISY, noisy, "noise index {index}");
        let facts = RecordingFacts {
            lead: "MLII",
            fs: 360.0,
            beats: 100,
            low_confidence: 0,
            noise_index: Some(index),
            annotations_moved_ms: None,
        };
        let warned = recording_warnings(&pre, &facts);
        assert_eq!(
            warned.iter().any(|w| w.contains("noisy")),
            noisy,
            "{warned:?}"
        );
    }
}

/// Every beat of `rec` as a tiny network (seed 3) cutting at `positions` classifies it.
fn classify_at(
    positions: ecgwgpu::data::beats::BeatPositions,
    rec: recording::Recording,
) -> Vec<ecgwgpu::infer::ClassifiedBeat> {
    let mut model = Model::new(ctx(), ModelConfig::tiny(), 3).unwrap();
    model.preprocessing.beat_positions = positions;
    let mut clf = Classifier::new(ctx(), model).unwrap();
    let mut beats = vec![];
    let streaming = Streaming::new().on_beats(|b| {
        beats.extend_from_slice(b);
        Ok(())
    });
    clf.classify_recording(rec, streaming).unwrap();
    beats
}

/// The same beats at the same samples with the same probabilities.
fn same_beats(a: &[ecgwgpu::infer::ClassifiedBeat], b: &[ecgwgpu::infer::ClassifiedBeat]) -> bool {
    a.len() == b.len()
        && a.iter()
            .zip(b)
            .all(|(x, y)| x.sample == y.sample && x.probabilities == y.probabilities)
}

/// A network trained on the detector's beats (`BeatPositions::Detector`) cuts an annotated
/// recording at the detector's peaks, so where a database puts its annotations (here 40 ms
/// after MIT-BIH's) does not change its output; one cut at the annotations moves with them.
#[test]
fn a_network_at_the_detectors_positions_ignores_where_annotations_sit() {
    use ecgwgpu::data::beats::BeatPositions;
    use ecgwgpu::data::formats::files::Disk;
    use ecgwgpu::data::signal::acquisition::Acquisition;
    let open = || recording::open_any(&Disk, &embedded_dir().join("208"), "MLII").unwrap();
    let late = Acquisition {
        annotation_shift_ms: 40.0,
        ..Default::default()
    };
    let at_detector = classify_at(BeatPositions::Detector, open());
    let at_detector_late = classify_at(BeatPositions::Detector, late.apply(open()).unwrap());
    assert!(at_detector.len() > 2800, "{} beats", at_detector.len());
    assert!(same_beats(&at_detector, &at_detector_late));
    let at_annotations = classify_at(BeatPositions::Annotations, open());
    let at_annotations_late = classify_at(BeatPositions::Annotations, late.apply(open()).unwrap());
    assert!(!same_beats(&at_annotations, &at_annotations_late));
    // most annotations are already near the detector's peaks; record 208's PVCs often are not
    let moved = at_detector
        .iter()
        .zip(&at_annotations)
        .filter(|(d, a)| d.sample != a.sample)
        .count();
    assert!(moved > 0 && moved < at_detector.len() / 2, "{moved} moved");
}

/// A network cut at the annotations with `BeatPositions::Registered` reads a recording whose
/// annotations sit 40 ms after MIT-BIH's as it reads MIT-BIH's own: they move back by the
/// median offset to the detector's peaks. Within the tolerance nothing moves.
#[test]
fn registered_annotations_move_back_to_where_mit_bih_puts_them() {
    use ecgwgpu::data::beats::BeatPositions;
    use ecgwgpu::data::formats::files::Disk;
    use ecgwgpu::data::signal::acquisition::Acquisition;
    let open = || recording::open_any(&Disk, &embedded_dir().join("208"), "MLII").unwrap();
    let late = || {
        Acquisition {
            annotation_shift_ms: 40.0,
            ..Default::default()
        }
        .apply(open())
        .unwrap()
    };
    let registered = BeatPositions::Registered { beyond_ms: 20 };
    let on_time = classify_at(BeatPositions::Annotations, open());
    assert!(on_time.len() > 2800, "{} beats", on_time.len());
    let late_as_they_are = classify_at(BeatPositions::Annotations, late());
    assert!(!same_beats(&on_time, &late_as_they_are));
    // 40 ms late: moved back; on time: left where they are
    assert!(same_beats(&on_time, &classify_at(registered, late())));
    assert!(same_beats(&on_time, &classify_at(registered, open())));
    // a tolerance wider than the shift leaves them late
    let wide = BeatPositions::Registered { beyond_ms: 50 };
    assert!(same_beats(&late_as_they_are, &classify_at(wide, late())));
    // the page's path (beats cut in memory) moves them too, and says by how much
    let mut model = Model::new(ctx(), ModelConfig::tiny(), 3).unwrap();
    model.preprocessing.beat_positions = registered;
    let clf = Classifier::new(ctx(), model).unwrap();
    let cut = clf.cut_recording(late(), |_, _, _| {}).unwrap();
    let on_time_cut = clf.cut_recording(open(), |_, _, _| {}).unwrap();
    assert_eq!(cut.beats, on_time_cut.beats);
    let ms = cut.annotations_moved_ms.expect("moved");
    assert!((-40.0..=-36.0).contains(&ms), "moved {ms} ms");
    assert_eq!(on_time_cut.annotations_moved_ms, None);
}

/// The shipped fifteen networks run as one grouped network give the probabilities of running
/// them one at a time, bit for bit, and so every decision (record 208, its whole cut).
#[test]
fn the_shipped_ensemble_as_one_grouped_network_matches_it_member_by_member() {
    use ecgwgpu::infer::{SHIPPED_MODEL, SHIPPED_MODEL_NAME};
    let name = Path::new(SHIPPED_MODEL_NAME);
    let members = || Model::members_from_bytes(ctx(), SHIPPED_MODEL, name).unwrap();
    let mut grouped = Classifier::ensemble(ctx(), members()).unwrap();
    let mut one_by_one = Classifier::ensemble_member_by_member(ctx(), members()).unwrap();
    assert_eq!((grouped.members(), one_by_one.members()), (15, 15));
    let files = in_memory("208");
    let rec = recording::open_any(&files, Path::new("208"), "MLII").unwrap();
    let cut = grouped.cut_recording(rec, |_, _, _| {}).unwrap();
    // a batch that leaves a remainder, so two inference plans run
    grouped.batch = 1000;
    let p_grouped = grouped.probabilities(&cut.beats, |_, _| {}).unwrap();
    let p_one = one_by_one.probabilities(&cut.beats, |_, _| {}).unwrap();
    assert_eq!(p_grouped.len(), cut.beats.len() * 5);
    let worst = p_grouped
        .iter()
        .zip(&p_one)
        .map(|(a, b)| (a - b).abs())
        .fold(0f32, f32::max);
    assert_eq!(worst, 0.0, "largest probability difference {worst}");
    let decided = |clf: &Classifier, p: &[f32]| clf.config().decide_beats(p, &cut.beats.rr, &[]);
    assert_eq!(decided(&grouped, &p_grouped), decided(&one_by_one, &p_one));
}
