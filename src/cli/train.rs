//! `ecgwgpu train`: the paper's recipe end to end on WFDB records, with a run directory.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};

use indicatif::{ProgressBar, ProgressStyle};

use super::data::Source;
use crate::data::beats::reference::BeatReference;
use crate::data::corpus::dataset::LoadOptions;
use crate::data::corpus::splits::SplitKind;
use crate::data::formats::aami::CLASS_NAMES;
use crate::data::signal::acquisition::DeviceDraw;
use crate::error::Result;
use crate::run::{RunConfig, RunSettings};
use crate::train::{EpochRecord, FitObserver, TrainData};

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum LossKind {
    /// Two-fold focal loss FL(α1, γm) + FL(α2, γn).
    Focal,
    /// Plain cross-entropy (for comparison).
    Ce,
}

#[derive(clap::Args)]
pub struct TrainArgs {
    #[command(flatten)]
    source: Source,
    /// Model preset: `paper` (408,357 parameters), `paper-rr` (the dual-stream network: the
    /// paper's plus the beat's eight R–R features joined before Dense_1), `mid` / `mid-rr` (the
    /// paper's six pairs at a quarter of its width, 26,125 parameters with R–R: trains on all of
    /// DS1 in minutes without a GPU), or `tiny` / `tiny-rr` (fast, for trying things out).
    #[arg(long, default_value = "paper")]
    preset: String,
    /// `intra`: random 80/20 by beat (the paper's setting); `inter`: DS1 → DS2 (new patients).
    #[arg(long, value_enum, default_value = "intra")]
    split: SplitKind,
    /// Loss function.
    #[arg(long, value_enum, default_value = "focal")]
    loss: LossKind,
    #[command(flatten)]
    focal: FocalArgs,
    #[command(flatten)]
    run: RunArgs,
    /// Scale both folds' α per class by inverse class frequency (normalised to mean 1).
    #[arg(long)]
    class_alpha: bool,
    /// Also train on each record read at this lead (a preference list, e.g. `V1,V2,V4,V5`:
    /// MIT-BIH's second lead), as a recording of its own of the same patient (splits and folds
    /// keep them together). Repeatable. The network then knows those leads, and with
    /// --calibrate its decision rule is chosen on them too.
    #[arg(long = "view", value_name = "LEADS")]
    views: Vec<String>,
    /// Also train on each record as another device would have taken it: resampled to 128, 250
    /// or 500 Hz and with typical or strong noise (baseline wander, 50/60 Hz mains, EMG; the
    /// amplitudes scaled by 0.5–1.5), drawn per record under --seed. Each is a recording of its
    /// own of the same patient (`RECORD~LEAD@RATEHz`), kept with it in splits and folds; with
    /// --calibrate the decision rule is chosen on them too.
    #[arg(long)]
    device_view: bool,
    /// Train on beats cut where the built-in QRS detector finds them, as `predict` cuts a
    /// recording without annotations, instead of at the reference annotations. Each takes the
    /// class of the reference beat within 150 ms; detected beats without one are left out of
    /// training (they still count in their record's R–R features and median beat). With
    /// --calibrate the decision rule is chosen on such beats too.
    #[arg(long)]
    detect: bool,
    /// Augment minority classes of the training part up to this many beats each (0: off).
    #[arg(long, default_value_t = 0)]
    augment: usize,
    /// Dropout rate on the conv features where they enter Dense_1 (Dropout_6), instead of the
    /// preset's 0.1 there: with `paper-rr`/`tiny-rr`, a higher rate makes the network lean on the
    /// rhythm features.
    #[arg(long)]
    shape_dropout: Option<f32>,
    /// What each beat is measured against: `none` (the beat as cut, the paper's input) or
    /// `record-median` (the beat minus its record's median beat: per-patient normalisation of the
    /// shape, for new patients). The checkpoint records it; evaluate and predict apply it. Needs
    /// records (--data-dir), not --train-csv.
    #[arg(long, value_enum, default_value = "none")]
    beat_reference: BeatReference,
    /// Add a rhythm head of this width (0: none): `Dense–ReLU–Dense` on the R–R features alone,
    /// its logits added to the network's, so that the rhythm has a path to the output that the
    /// shape features cannot crowd out (dual-stream presets only).
    #[arg(long, default_value_t = 0)]
    rhythm_head: usize,
    /// For this fraction of the training N and S beats (seeded), add a copy with its record's
    /// median beat as its shape and its own R–R features and label: in the copies only the
    /// rhythm tells S from N (dual-stream presets only; 0: off). On its own it did not raise S
    /// on new patients (results/tiny-mitdb-inter-relative-rhythm-head).
    #[arg(long, default_value_t = 0.0)]
    rhythm_copies: f64,
    /// After training, choose per-class offsets for S, V and F that maximise the validation
    /// beats' mean F1 (held-out patients with --split inter) and write them into best.safetensors:
    /// evaluate and predict then decide with them. A network may rank a rare class's beats well
    /// and still call them too rarely. metrics.json keeps the test figures without them too.
    #[arg(long)]
    calibrate: bool,
    /// Class-balanced epochs: each epoch draws as many beats as the training part holds, shared
    /// equally among the classes with at least 100 beats (rarer classes keep their own beats,
    /// once each), instead of every beat once.
    #[arg(long)]
    balanced_batches: bool,
    /// Patient-grouped cross-validation on DS1 (with --split inter): this many folds of whole
    /// records, a model trained per fold (in DIR/fold1, ...), every DS1 beat predicted by the
    /// model that did not train on it; --calibrate chooses the decision offsets, the
    /// irregular-rhythm gate (S becomes N in an irregular rhythm such as atrial fibrillation) and
    /// the record clusters (each recording's beats grouped by shape and timing share a class) on
    /// those out-of-fold predictions (all of DS1's patients). The fold models are saved as one
    /// ensemble (DIR/best.safetensors: mean probabilities), which evaluate, predict and the
    /// library load like any checkpoint; the test figures are the ensemble's on DS2.
    #[arg(long, default_value_t = 0)]
    folds: usize,
    /// Train on beats from a CSV in the common layout (187 samples + label per row, e.g. Kaggle's
    /// mitbih_train.csv) instead of WFDB records; 10 % of it (stratified) becomes validation.
    #[arg(long, requires = "test_csv", conflicts_with = "data_dir")]
    train_csv: Option<PathBuf>,
    /// Test beats from a CSV in the same layout (e.g. mitbih_test.csv); needs --train-csv.
    #[arg(long, requires = "train_csv")]
    test_csv: Option<PathBuf>,
}

/// The two-fold focal loss's flags, shared by `train` and `transfer`.
#[derive(clap::Args)]
pub(super) struct FocalArgs {
    /// α of the first focal fold (all classes, unless scaled per class by inverse frequency).
    #[arg(long, default_value_t = 0.25)]
    alpha1: f32,
    /// γm, focusing parameter of the first fold.
    #[arg(long, default_value_t = 2.0)]
    gamma_m: f32,
    /// α of the second focal fold.
    #[arg(long, default_value_t = 0.25)]
    alpha2: f32,
    /// γn, focusing parameter of the second fold.
    #[arg(long, default_value_t = 0.5)]
    gamma_n: f32,
}

/// The flags of a training run shared by `train` and `transfer`.
#[derive(clap::Args)]
pub(super) struct RunArgs {
    /// Passes over the training beats.
    #[arg(long, default_value_t = 25)]
    pub epochs: usize,
    /// Beats per training step. The paper trained with Keras and names no batch size, so Keras's
    /// default, 32; it is also the fastest per beat on lavapipe (cache-sized working set).
    #[arg(long, default_value_t = 32)]
    pub batch: usize,
    /// Adam learning rate (the paper's 1e-4; for `transfer`, the new head's).
    #[arg(long, default_value_t = 1e-4)]
    pub lr: f32,
    /// Seed for initialisation, splits, shuffling, augmentation and dropout.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Stop early when validation macro-F1 has not improved for this many epochs (0: never).
    #[arg(long, default_value_t = 0)]
    pub patience: usize,
    /// Continue the run in --out from its last completed epoch (parameters, Adam moments and step
    /// count from resume.safetensors), up to --epochs in all. Every other flag must match the
    /// run's config.json, except --lr, --patience, --device and --out.
    #[arg(long)]
    pub resume: bool,
    #[command(flatten)]
    pub gpu: super::GpuArgs,
    /// Run directory (config.json, history.csv/json, best/last.safetensors, resume.safetensors,
    /// metrics.json, figures/). Default: under runs/, named after the settings.
    #[arg(long)]
    pub out: Option<PathBuf>,
}

impl RunArgs {
    /// The settings these flags and `focal`'s give a run's config.json; the command fills in
    /// its own.
    pub(super) fn settings(&self, preset: &str, split: String, focal: &FocalArgs) -> RunSettings {
        RunSettings {
            preset: preset.to_string(),
            split,
            epochs: self.epochs,
            batch: self.batch,
            lr: self.lr,
            seed: self.seed,
            patience: self.patience,
            resume: self.resume,
            device: self.gpu.device.clone(),
            kernels: self.gpu.kernels,
            out: self.out.clone(),
            alpha1: focal.alpha1,
            gamma_m: focal.gamma_m,
            alpha2: focal.alpha2,
            gamma_n: focal.gamma_n,
            ..RunSettings::default()
        }
    }
}

/// Prints a run's progress: a bar on a terminal, a line every 10 % of an epoch in a log, and a
/// line per epoch.
#[derive(Default)]
pub(super) struct Console {
    bar: Option<ProgressBar>,
    lines: Option<super::ProgressLines>,
    total: usize,
}

impl FitObserver for Console {
    fn loaded(&mut self, report: &[String]) {
        for line in report {
            eprintln!("{line}");
        }
    }

    fn started(&mut self, run: &RunConfig, out: &Path, [train, val, test]: [usize; 3]) {
        let network = match (&run.args.from, &run.transferred) {
            (Some(from), Some(kept)) => format!(
                "{} ({} tensors transferred, features at {}x the learning rate)",
                from.display(),
                kept.len(),
                run.adam.feature_lr_scale
            ),
            _ => run.args.preset.clone(),
        };
        println!(
            "{network} on {}: {} parameters; {train} train / {val} val / {test} test beats ({} split); run directory {}",
            run.device,
            run.model.param_count(),
            run.args.split,
            out.display()
        );
    }

    fn resumed(&mut self, out: &Path, epoch: usize, steps: u32) {
        println!(
            "resuming {} after epoch {epoch} (optimiser step {steps})",
            out.display()
        );
    }

    fn note(&mut self, text: &str) {
        println!("note: {text}");
    }

    fn epoch_started(&mut self, epoch: usize, epochs: usize, beats: usize) {
        let bar = ProgressBar::new(beats as u64).with_prefix(format!("epoch {epoch}/{epochs}"));
        bar.set_style(
            ProgressStyle::with_template(
                "{prefix} [{bar:30}] {pos}/{len} beats {per_sec} eta {eta} loss {msg}",
            )
            .expect("valid template")
            .progress_chars("=> "),
        );
        self.bar = Some(bar);
        // the bar draws only on a terminal; a log gets a line every 10 % of the epoch
        self.lines = (!std::io::stderr().is_terminal())
            .then(|| super::ProgressLines::new("training", "beats", 0.1));
        self.total = beats;
    }

    fn progress(&mut self, done: usize, mean_loss: f64) {
        if let Some(bar) = &self.bar {
            bar.set_position(done as u64);
            bar.set_message(format!("{mean_loss:.4}"));
        }
        if let Some(lines) = self.lines.as_mut() {
            lines.update(done, self.total);
        }
    }

    fn epoch_ended(&mut self, r: &EpochRecord) {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
        println!(
            "epoch {:>3}: train loss {:.4} acc {:.4}  val loss {:.4} acc {:.4} macro-F1 {:.3}  ({:.0} beats/s)",
            r.epoch, r.train_loss, r.train_accuracy.unwrap_or(f64::NAN), r.val_loss, r.val_accuracy, r.val_macro_f1, r.train_beats_per_s
        );
    }

    fn early_stop(&mut self, patience: usize) {
        println!("early stop: validation macro-F1 has not improved for {patience} epochs");
    }
}

/// `train --folds K`: cross-validation on DS1's patients, the fold models' ensemble on DS2.
fn folds(
    ctx: &crate::gpu::GpuContext,
    args: &TrainArgs,
    settings: &RunSettings,
    data: &TrainData,
    out: &Path,
) -> Result<()> {
    let folds = crate::train::train_folds(ctx, settings, data, out, &mut Console::default())?;
    for (i, f) in folds.folds.iter().enumerate() {
        println!("fold {}: records {}", i + 1, f.join(" "));
    }
    println!(
        "\nout of fold on DS1 ({} folds of patients), plain argmax\n{}",
        folds.folds.len(),
        folds.oof.table()
    );
    if let Some(r) = &folds.oof_calibrated {
        println!(
            "out of fold on DS1, decision offsets {}, irregular-rhythm gate {}, record clusters \
             {}, on-time V gate {}\n{}",
            offsets_line(&folds.test.decision_offsets),
            folds
                .rule
                .irregular_gate
                .map_or("none".into(), |t| format!("above {t}")),
            folds
                .rule
                .record_clusters
                .map_or("none".into(), |c| format!(
                    "{} per record, rhythm weight {}, pull {}",
                    c.clusters, c.rhythm_weight, c.weight
                )),
            folds
                .rule
                .other_lead_v_gate
                .map_or("none".into(), |g| format!(
                    "below p_V {} at {} of the local R–R",
                    g.below_p_v, g.on_time
                )),
            r.table()
        );
    }
    if let Some(r) = &folds.test.uncalibrated {
        println!(
            "\ntest, the ensemble without the decision offsets\n{}",
            r.table()
        );
    }
    println!(
        "\ntest, the ensemble of {} fold models{}, loss {:.4}\n{}",
        folds.folds.len(),
        if args.calibrate {
            ", the decision rule chosen out of fold"
        } else {
            ""
        },
        folds.test.test_loss,
        folds.test.report.table()
    );
    for path in super::figures::write_all(out)? {
        println!("wrote {}", path.display());
    }
    Ok(())
}

/// "N +0.00, S +0.50, ..."
fn offsets_line(offsets: &[f32]) -> String {
    CLASS_NAMES
        .iter()
        .zip(offsets)
        .map(|(n, o)| format!("{n} {o:+.2}"))
        .collect::<Vec<_>>()
        .join(", ")
}

pub fn run(args: TrainArgs) -> Result<()> {
    let split = match args.split {
        SplitKind::Intra => "intra",
        SplitKind::Inter => "inter",
    };
    let loss = match args.loss {
        LossKind::Focal => "focal",
        LossKind::Ce => "ce",
    };
    let settings = RunSettings {
        loss: loss.into(),
        class_alpha: args.class_alpha,
        augment: args.augment,
        shape_dropout: args.shape_dropout,
        beat_reference: args.beat_reference,
        rhythm_head: args.rhythm_head,
        rhythm_copies: args.rhythm_copies,
        calibrate: args.calibrate,
        folds: args.folds,
        balanced_batches: args.balanced_batches,
        train_csv: args.train_csv.clone(),
        test_csv: args.test_csv.clone(),
        ..args.run.settings(&args.preset, split.into(), &args.focal)
    };
    // settings are checked before any data is read or the GPU is set up
    crate::train::model_config(&settings)?;
    let data = match (&args.train_csv, &args.test_csv) {
        (Some(train), Some(test)) => TrainData::Csv {
            train: train.clone(),
            test: test.clone(),
        },
        _ => TrainData::Records {
            dir: args.source.dir()?,
            options: LoadOptions {
                views: args.views.clone(),
                device_view: args.device_view.then(|| DeviceDraw::new(args.run.seed)),
                detect: args.detect,
                ..args.source.options()
            },
        },
    };
    let out = args.run.out.clone().unwrap_or_else(|| {
        PathBuf::from("runs").join(
            format!(
                "{}-{:?}-{loss}-seed{}",
                args.preset, args.split, args.run.seed
            )
            .to_lowercase(),
        )
    });
    let ctx = args.run.gpu.context()?;
    if args.folds > 0 {
        return folds(&ctx, &args, &settings, &data, &out);
    }
    let outcome =
        crate::train::train_heartbeat(&ctx, &settings, &data, &out, &mut Console::default())?;
    if let Some((before, after)) = outcome.calibration {
        println!(
            "decision offsets chosen on the validation beats: {} (validation macro-F1 {before:.3} → {after:.3})",
            offsets_line(&outcome.decision_offsets)
        );
    }
    if let Some(before) = &outcome.uncalibrated {
        println!("\ntest without the decision offsets\n{}", before.table());
    }
    println!(
        "\ntest ({:?} split, best validation epoch{}), loss {:.4}\n{}",
        args.split,
        if args.calibrate {
            ", decision offsets"
        } else {
            ""
        },
        outcome.test_loss,
        outcome.report.table()
    );
    for path in super::figures::write_all(&out)? {
        println!("wrote {}", path.display());
    }
    Ok(())
}
