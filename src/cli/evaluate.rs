//! `ecgwgpu evaluate`: a checkpoint's figures in the paper's Table 1 layout, the AAMI Se/+P/FPR
//! for V and S, optional bootstrap intervals, on a run's split or on every beat of a database.
//! Two-class (MI vs normal) models from `transfer` are scored on PTB data instead, per beat and
//! per record.

use std::path::Path;

use serde_json::{json, Value};

use super::data::Source;
use crate::data::beats::Beats;
use crate::error::{Error, Result};
use crate::eval::{select, training_run, EvalSplit, Part, Selection};
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
    };
    let selected = select(&config, &preprocessing, &network, run.as_ref(), &selection)?;
    for line in &selected.load_report {
        eprintln!("{line}");
    }
    let (beats, description) = (selected.beats, selected.description);
    if beats.is_empty() {
        return Err(Error::Config(format!(
            "no beats to evaluate in the {description}"
        )));
    }
    crate::loss::check_labels(&beats.labels, classes)?;
    let names = preprocessing.class_names.clone();
    let mut lines = super::ProgressLines::new("scoring", "beats", 0.05);
    let probs = clf.probabilities(&beats, |done, total| lines.update(done, total))?;
    if mi {
        report_mi(&args, &network, &beats, &probs, &description);
        return Ok(());
    }
    let predicted = clf.decide(&probs);
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    let report = Confusion::new(&beats.labels, &predicted, classes).report(&names);
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
        });
        print_json(&out);
    } else {
        println!(
            "{} on {} beats: {description}\n{}",
            network.display(),
            beats.len(),
            report.table()
        );
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
