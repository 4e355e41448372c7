//! `ecgwgpu evaluate`: a checkpoint's figures in the paper's Table 1 layout, the AAMI Se/+P/FPR
//! for V and S, optional bootstrap intervals, on a run's split or on every beat of a database.
//! Two-class (MI vs normal) models from `transfer` are scored on PTB data instead, per beat and
//! per record.

use std::path::Path;

use serde_json::{json, Value};

use super::data::Source;
use crate::data::beats::{BeatPositions, Beats, NO_REFERENCE};
use crate::data::signal::acquisition::{Acquisition, NoiseLevel};
use crate::error::{Error, Result};
use crate::eval::{select, training_run, EvalSplit, Part, Selection, Unreferenced};
use crate::metrics::{
    bootstrap, bootstrap_binary, per_record, per_record_table, record_means, BinaryReport,
    Confusion,
};
use crate::preprocessing::Task;

#[derive(clap::Args)]
pub struct EvaluateArgs {
    #[command(flatten)]
    network: super::NetworkArgs,
    #[command(flatten)]
    source: Source,
    /// Which beats. Default: the split of the run whose config.json sits beside the checkpoint,
    /// else `all`. Without --data-dir, that run's data directory is used too.
    #[arg(long, value_enum)]
    split: Option<EvalSplit>,
    /// Part of the split to evaluate.
    #[arg(long, value_enum, default_value = "test")]
    part: Part,
    /// Seed of the split (intra only). Default: the run's seed from config.json, else 1.
    #[arg(long)]
    seed: Option<u64>,
    /// Add 95 % confidence intervals from this many bootstrap replicates (resampling records).
    #[arg(long, default_value_t = 0)]
    bootstrap: usize,
    /// Also score each record on its own (beats, errors, accuracy, commonest mistake), most
    /// errors first: shows whether a few patients carry the mistakes. Heartbeat models only; an
    /// MI model's report is per record already.
    #[arg(long)]
    per_record: bool,
    /// Adapt the network's outputs to each record's own class mix, without labels (EM on the
    /// record's unlabelled beats, `ecgwgpu::adapt`). Needs a `train --folds` ensemble with its
    /// run: the training priors, the prior's strength and the decision offsets are chosen on its
    /// out-of-fold predictions of DS1, never on the beats evaluated.
    #[arg(long)]
    adapt: bool,
    /// Call N, not S, a beat in an irregular rhythm (atrial fibrillation, where AAMI labels beats
    /// N; the R–R features' rhythm irregularity, over 60 intervals around the beat): above a
    /// threshold chosen on a `train --folds` ensemble's out-of-fold predictions of DS1, never on
    /// the beats evaluated.
    #[arg(long, conflicts_with = "adapt")]
    gate_irregular: bool,
    /// Score a `train --folds` ensemble on DS1 out of fold instead (each fold's records by the
    /// member that did not train on them; the validation its offsets were chosen on), with the
    /// figures of each fold: mean (range).
    #[arg(long, conflicts_with_all = ["adapt", "gate_irregular", "split", "data_dir"])]
    out_of_fold: bool,
    /// Also write every scored beat to this CSV file: its record, then `predict`'s columns
    /// (sample, annotated and decided class, the probabilities, the R–R features), so the
    /// figures can be re-scored or analysed with other tools.
    #[arg(long, value_name = "FILE")]
    beats: Option<std::path::PathBuf>,
    /// Read each record as a device at this rate (Hz) would have recorded it: resampled before
    /// the pipeline (which then resamples to the network's 125 Hz), annotations moved with it.
    /// With --noise, a check on recordings from other hardware.
    #[arg(long, value_name = "HZ")]
    resample: Option<f64>,
    /// Add noise to each record before --resample: baseline wander, mains hum and muscle (EMG)
    /// noise at a named level (see the values), seeded by --noise-seed and the record's name.
    #[arg(long, value_enum, default_value = "none")]
    noise: NoiseLevel,
    /// Seed of --noise.
    #[arg(long, default_value_t = 1)]
    noise_seed: u64,
    /// Move every reference beat annotation by this many milliseconds (negative: earlier)
    /// before the pipeline, as a database that marks its beats at another point of the QRS
    /// complex (its onset, say) would give them. With --detect, only the matching moves.
    #[arg(
        long,
        value_name = "MS",
        default_value_t = 0.0,
        allow_negative_numbers = true
    )]
    annotation_shift: f64,
    /// Move a recording's annotations to the QRS detector's peaks when they sit more than MS
    /// milliseconds from them (the median over its beats), whatever the network's checkpoint
    /// says: to measure that reading before a checkpoint carries it (`calibrate
    /// --register-annotations`).
    #[arg(long, value_name = "MS")]
    register_annotations: Option<u32>,
    /// Cut beats where the built-in QRS detector finds them, as for a recording without
    /// annotations, instead of at the reference annotations. Each detected beat is scored
    /// against the reference beat within 150 ms; detected beats without one (and every beat of
    /// a record without annotations, which is then read too) are classified and counted per
    /// class but not scored. With --out-of-fold, DS1's beats as the detector finds them.
    #[arg(long)]
    detect: bool,
    /// Also read each record at this lead (a preference list, e.g. `V1,V2,V4,V5`: MIT-BIH's
    /// second lead), as a recording of its own (`RECORD~LEAD`); with --out-of-fold, DS1 at
    /// both leads. Repeatable.
    #[arg(long = "view", value_name = "LEADS")]
    views: Vec<String>,
    /// Print one JSON object instead of tables.
    #[arg(long)]
    json: bool,
    /// Beats per inference batch.
    #[arg(long, default_value_t = 1024)]
    batch: usize,
    #[command(flatten)]
    gpu: super::GpuArgs,
}

fn print_json(value: &Value) {
    println!(
        "{}",
        serde_json::to_string_pretty(value).expect("serialisable")
    );
}

/// MI vs normal: figures per beat and per record (mean MI probability of its beats).
fn report_mi(args: &EvaluateArgs, network: &Path, beats: &Beats, probs: &[f32], description: &str) {
    let p: Vec<f64> = probs.chunks(2).map(|r| f64::from(r[1])).collect();
    let beat = BinaryReport::new(&beats.labels, &p);
    let (labels, means) = record_means(&beats.record, &beats.labels, &p);
    let record = BinaryReport::new(&labels, &means);
    let intervals = (args.bootstrap > 0)
        .then(|| bootstrap_binary(&beats.record, &beats.labels, &p, args.bootstrap, 1));
    if args.json {
        let out = json!({
            "checkpoint": network,
            "beats": beats.len(),
            "selection": description,
            "beat": beat,
            "record": record,
            "ci95": intervals,
        });
        print_json(&out);
    } else {
        println!(
            "{} on {} beats: {description}\nMI vs NORM\n{}\n{}\n{}\nconfusion per beat (rows: truth NORM, MI): {:?}",
            network.display(),
            beats.len(),
            BinaryReport::HEADER,
            beat.row("beat"),
            record.row("record"),
            beat.confusion
        );
        if let Some(intervals) = intervals {
            println!(
                "95 % intervals, {} bootstrap replicates resampling records:",
                args.bootstrap
            );
            for (key, [lo, hi]) in intervals {
                println!("  {key:<16} [{lo:.3}, {hi:.3}]");
            }
        }
    }
}

pub fn run(args: EvaluateArgs) -> Result<()> {
    let ctx = args.gpu.context()?;
    let network = args
        .network
        .checkpoint
        .clone()
        .unwrap_or_else(|| crate::infer::SHIPPED_MODEL_NAME.into());
    let (mut clf, _) = args.network.classifier(&ctx)?;
    clf.batch = args.batch;
    let (config, preprocessing) = (clf.config().clone(), clf.preprocessing().clone());
    let run = match &args.network.checkpoint {
        Some(path) => training_run(&config, path)?,
        None => None,
    };
    let classes = config.classes;
    let mi = preprocessing.task == Task::Mi;
    if mi && args.per_record {
        return Err(Error::Config(
            "--per-record is for heartbeat-class models; an MI model's report already has \
             its figures per record"
                .into(),
        ));
    }
    eprintln!(
        "network: {}{} ({})",
        network.display(),
        match clf.members() {
            1 => String::new(),
            k => format!(", an ensemble of {k}"),
        },
        preprocessing.describe(&config)
    );
    let selection = Selection {
        split: args.split,
        part: Some(args.part),
        seed: args.seed,
        // without a run beside the network: --data-dir, else data/mitdb here
        data_dir: match (args.source.data_dir_given(), &run, mi) {
            (Some(dir), _, _) => Some(dir.to_path_buf()),
            (None, None, false) => Some(args.source.dir()?),
            (None, _, _) => None,
        },
        lead: args.source.lead_given().map(str::to_string),
        mode: args.source.mode_given(),
        fallback_lead: args.source.options().fallback_to_first,
        strict: args.source.options().strict,
        acquisition: Acquisition {
            rate: args.resample,
            noise: args.noise.noise(),
            seed: args.noise_seed,
            annotation_shift_ms: args.annotation_shift,
        },
        detect: args.detect,
        views: args.views.clone(),
        positions: args
            .register_annotations
            .map(|beyond_ms| BeatPositions::Registered { beyond_ms }),
    };
    if let Some(rate) = args.resample.filter(|&r| !(r.is_finite() && r >= 50.0)) {
        return Err(Error::Config(format!(
            "--resample {rate}: give a sampling rate of at least 50 Hz"
        )));
    }
    let altered = !selection.acquisition.is_identity() || selection.detect;
    if altered && (mi || args.split == Some(EvalSplit::Intra)) {
        return Err(Error::Config(
            "--resample, --noise, --annotation-shift and --detect read whole records: use them \
             with --split inter \
             or all, or --out-of-fold, for a heartbeat model"
                .into(),
        ));
    }
    let mut folds = None;
    let (beats, description, probs) = if args.out_of_fold {
        let leads = crate::eval::Leads {
            lead: selection.lead.clone(),
            views: selection.views.clone(),
            acquisition: selection.acquisition,
            device_view: None,
            detect: selection.detect,
            positions: selection.positions,
        };
        let oof =
            crate::eval::out_of_fold(&ctx, &network, &leads, args.batch, super::member_progress)?;
        let description = match leads.describe() {
            d if d.is_empty() => oof.describe(),
            d => format!("{}; DS1 read at {d}", oof.describe()),
        };
        folds = Some(oof.distinct_folds());
        (oof.beats, description, Some(oof.probabilities))
    } else {
        let selected = select(&config, &preprocessing, &network, run.as_ref(), &selection)?;
        for line in &selected.load_report {
            eprintln!("{line}");
        }
        let mut description = selected.description;
        if !selection.acquisition.is_identity() {
            description += &format!("; {}", selection.acquisition.describe());
        }
        if selection.detect {
            description += "; beats found by the QRS detector";
        }
        if let Some(positions) = selection.positions {
            description += &format!("; beats {}", positions.describe());
        }
        (selected.beats, description, None)
    };
    if beats.is_empty() {
        return Err(Error::Config(format!(
            "no beats to evaluate in the {description}"
        )));
    }
    let referenced: Vec<u32> = beats
        .labels
        .iter()
        .copied()
        .filter(|&l| l != NO_REFERENCE)
        .collect();
    crate::loss::check_labels(&referenced, classes)?;
    let names = preprocessing.class_names.clone();
    let mut lines = super::ProgressLines::new("scoring", "beats", 0.05);
    let probs = match probs {
        Some(p) => p,
        None => clf.probabilities(&beats, |done, total| lines.update(done, total))?,
    };
    if mi {
        report_mi(&args, &network, &beats, &probs, &description);
        return Ok(());
    }
    let mut probs = probs;
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    let own = &config.decision_offsets;
    // the checkpoint's decision rule, or one chosen out of fold (--adapt, --gate-irregular)
    let out_of_fold = |what: &str| {
        eprintln!("{what}: out-of-fold predictions of DS1 from the fold models");
        let leads = Default::default();
        crate::eval::out_of_fold(&ctx, &network, &leads, args.batch, super::member_progress)
    };
    let (predicted, adaptation, gate) = if args.adapt {
        let oof = out_of_fold("adaptation")?;
        let chosen = crate::eval::choose_adaptation(&oof, &names, &config);
        chosen
            .adaptation
            .adapt_records(&mut probs, &beats.record, classes);
        let predicted = crate::metrics::decide(&probs, classes, &chosen.offsets);
        (predicted, Some(ChosenAdaptation(chosen)), None)
    } else if args.gate_irregular {
        let oof = out_of_fold("irregular-rhythm gate")?;
        let chosen = crate::eval::choose_gate(&oof, &names, own);
        let predicted =
            crate::metrics::decide_gated(&probs, classes, own, chosen.threshold, &beats.rr);
        (predicted, None, Some(ChosenGate(chosen)))
    } else {
        let read_at = selection.lead.as_deref().unwrap_or(&preprocessing.lead);
        let other_lead = preprocessing.other_lead_beats(&beats, read_at);
        (
            config.decide_records(&mut probs, &beats, &other_lead),
            None,
            None,
        )
    };
    if let Some(path) = &args.beats {
        write_beats(path, &beats, &probs, &predicted, &preprocessing.class_names)?;
        eprintln!("beats: {} rows in {}", beats.len(), path.display());
    }
    // detected beats without a reference beat are decided (above, among their record's beats)
    // and counted, not scored
    let unreferenced = Unreferenced::of(&beats, &predicted, &names);
    let (beats, probs, predicted) = Unreferenced::referenced(beats, probs, predicted);
    if beats.is_empty() {
        if args.json {
            print_json(&json!({
                "checkpoint": network,
                "selection": description,
                "unreferenced": unreferenced,
            }));
        } else {
            println!(
                "{} on {description}\n{}",
                network.display(),
                unreferenced.describe()
            );
        }
        return Ok(());
    }
    let report = Confusion::new(&beats.labels, &predicted, classes).report(&names);
    let s_vs_n_auc = crate::metrics::s_vs_n_auc(&probs, &beats.labels, &names);
    let per_fold = folds.map(|f| crate::eval::FoldFigures::of(&f, &beats, &predicted, &names));
    let intervals = (args.bootstrap > 0).then(|| {
        bootstrap(
            &beats.labels,
            &predicted,
            &beats.record,
            classes,
            &names,
            args.bootstrap,
            1,
        )
    });
    let records = args
        .per_record
        .then(|| per_record(&beats.record, &beats.labels, &predicted, classes));
    if args.json {
        let aami: serde_json::Map<String, Value> = report
            .classes
            .iter()
            .filter(|c| c.class == "V" || c.class == "S")
            .map(|c| {
                (
                    c.class.clone(),
                    json!({"se": c.recall, "ppv": c.precision, "fpr": c.fpr}),
                )
            })
            .collect();
        let out = json!({
            "checkpoint": network,
            "beats": beats.len(),
            "selection": description,
            "accuracy": report.accuracy,
            "macro_f1": report.macro_f1,
            "weighted_f1": report.weighted_f1,
            "classes": report.classes,
            "confusion": report.confusion,
            "aami": aami,
            "ci95": intervals,
            "per_record": records,
            "adaptation": adaptation,
            "irregular_gate": gate,
            "s_vs_n_auc": s_vs_n_auc,
            "per_fold": per_fold,
            "unreferenced": (unreferenced.beats > 0).then_some(&unreferenced),
        });
        print_json(&out);
    } else {
        println!(
            "{} on {} beats: {description}\n{}",
            network.display(),
            beats.len(),
            report.table()
        );
        if let Some(auc) = s_vs_n_auc {
            println!("S-vs-N AUC {auc:.3} (log(p_S / p_N) ranking S beats above N beats)");
        }
        if unreferenced.beats > 0 {
            println!("{}", unreferenced.describe());
        }
        if let Some(f) = &per_fold {
            println!("{}", f.table());
        }
        if let Some(a) = &adaptation {
            println!("{}", a.describe());
        }
        if let Some(g) = &gate {
            println!("{}", g.describe());
        }
        if let Some(i) = intervals {
            println!("{}", i.table());
        }
        if let Some(rows) = records {
            print!(
                "per record, most errors first\n{}",
                per_record_table(&rows, &names)
            );
        }
    }
    Ok(())
}

/// Writes each beat as a row of `predict`'s CSV with its record in front (atomically).
fn write_beats(
    path: &Path,
    beats: &Beats,
    probs: &[f32],
    predicted: &[u32],
    names: &[String],
) -> Result<()> {
    let classes = names.len();
    let mut text = format!("record,{}", crate::infer::csv_header(names));
    for (i, row) in probs.chunks(classes).enumerate() {
        let beat = crate::infer::ClassifiedBeat {
            sample: beats.sample[i],
            class: predicted[i],
            reference: (beats.labels[i] != NO_REFERENCE).then_some(beats.labels[i]),
            probabilities: row.to_vec(),
            rhythm: beats.rr[i],
        };
        text += &format!(
            "{},{}",
            beats.record[i],
            crate::infer::csv_rows(std::slice::from_ref(&beat), names)
        );
    }
    crate::data::write_atomic(path, text.as_bytes())
}

/// [`crate::eval::AdaptationChoice`], described for the report.
#[derive(serde::Serialize)]
#[serde(transparent)]
struct ChosenAdaptation(crate::eval::AdaptationChoice);

impl ChosenAdaptation {
    fn describe(&self) -> String {
        let c = &self.0;
        let tried: Vec<String> = c
            .oof_macro_f1_by_strength
            .iter()
            .map(|(s, f)| format!("{s} → {f:.3}"))
            .collect();
        format!(
            "adapted to each record's class mix (EM, prior strength {} beats), chosen on DS1 out \
             of fold: macro-F1 {:.3} unadapted, by strength {}; adapted out of fold: accuracy \
             {:.4}, {}, {}",
            c.adaptation.strength,
            c.oof_macro_f1_unadapted,
            tried.join(", "),
            c.oof_report.accuracy,
            c.oof_report.se_ppv("S"),
            c.oof_report.se_ppv("V")
        ) + if c.oof_report.macro_f1 < c.oof_macro_f1_unadapted {
            "\nvalidation prefers the unadapted network: these figures are for comparison"
        } else {
            ""
        }
    }
}

/// The irregular-rhythm gate as chosen on a fold ensemble's out-of-fold predictions of DS1.
#[derive(serde::Serialize)]
pub(super) struct ChosenGate(pub crate::metrics::GateChoice);

impl ChosenGate {
    pub(super) fn describe(&self) -> String {
        let g = &self.0;
        let tried: Vec<String> = g
            .macro_f1_by_threshold
            .iter()
            .map(|(t, f)| format!("{t} → {f:.3}"))
            .collect();
        format!(
            "irregular-rhythm gate chosen on DS1 out of fold: {}; macro-F1 {:.3} ungated, by \
             threshold {}; out of fold with it: accuracy {:.4}, {}",
            g.threshold
                .map_or("none (validation prefers no gate)".into(), |t| format!(
                    "S becomes N above rhythm irregularity {t}"
                )),
            g.macro_f1_ungated,
            tried.join(", "),
            g.report.accuracy,
            g.report.se_ppv("S")
        )
    }
}
