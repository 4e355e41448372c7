//! `ecgwgpu figures --run DIR`: the paper's figures from a run directory's files.

use std::path::{Path, PathBuf};

use crate::data::beats::{Beats, BEAT_LEN};
use crate::data::corpus::dataset::{load_dir, LoadOptions};
use crate::data::corpus::{csv, ptb};
use crate::error::{Error, Result};
use crate::figures::{self, Curve};
use crate::preprocessing::Task;
use crate::run::{read_json, RunConfig};
use crate::train::read_history;

#[derive(clap::Args)]
pub struct FiguresArgs {
    /// Run directory written by `train` (config.json, history.json, metrics.json); the PNGs go to
    /// its figures/ folder.
    #[arg(long)]
    run: PathBuf,
}

/// The part of metrics.json the figures draw.
#[derive(serde::Deserialize)]
struct Metrics {
    confusion: Vec<Vec<usize>>,
}

fn counts<'c>(config: &'c RunConfig, key: &str, path: &Path) -> Result<&'c [usize]> {
    config
        .class_counts
        .get(key)
        .map(Vec::as_slice)
        .ok_or_else(|| Error::data(path, format!("class_counts.{key}"), "missing field"))
}

/// The run's beats as it read them (WFDB directory or CSV file), for the sample-beat figure.
fn run_beats(config: &RunConfig) -> Result<Beats> {
    if !config.args.beats_csv.is_empty() {
        let mut beats = Beats::default();
        for file in &config.args.beats_csv {
            beats.extend(&csv::read(file)?);
        }
        return Ok(beats);
    }
    let source = &config.data_dir;
    if source.is_file() {
        return csv::read(source);
    }
    let mode = config.mode.0;
    if config.task == Task::Mi {
        let mut options = ptb::default_options(mode);
        options.lead = config.lead.clone();
        return Ok(ptb::load(source, &options)?.beats);
    }
    let options = LoadOptions {
        mode,
        lead: config.lead.clone(),
        fallback_to_first: config.args.fallback_lead,
        records: None,
        strict: false,
        ..LoadOptions::default()
    };
    Ok(load_dir(source, &options)?.beats)
}

/// Writes every figure of the run in `dir` and returns their paths.
pub fn write_all(dir: &Path) -> Result<Vec<PathBuf>> {
    let config_path = dir.join("config.json");
    let config = RunConfig::read(dir)?;
    let classes = config.model.classes;
    let names = config.preprocessing().class_names;
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    let out = dir.join("figures");
    std::fs::create_dir_all(&out).map_err(|e| Error::io(&out, e))?;
    let mut written = vec![];

    let path = out.join("class_counts.png");
    figures::class_counts(
        &path,
        &names,
        counts(&config, "train_before_augmentation", &config_path)?,
        counts(&config, "train", &config_path)?,
    )?;
    written.push(path);

    let beats = run_beats(&config)?;
    let examples: Vec<(&str, &[f32])> = (0..classes)
        .filter_map(|c| {
            let i = beats.labels.iter().position(|&l| l as usize == c)?;
            Some((names[c], &beats.x[i * BEAT_LEN..(i + 1) * BEAT_LEN]))
        })
        .collect();
    let path = out.join("sample_beats.png");
    figures::sample_beats(&path, &examples)?;
    written.push(path);

    if dir.join("history.json").is_file() {
        let history = read_history(dir)?;
        let curve =
            |name: &'static str, value: fn(&crate::train::EpochRecord) -> Option<f64>| Curve {
                name,
                values: history.iter().map(value).collect(),
            };
        let path = out.join("training_curves.png");
        figures::training_curves(
            &path,
            &[
                curve("train", |r| Some(r.train_loss)),
                curve("validation", |r| Some(r.val_loss)),
            ],
            &[
                curve("train (eval mode, subset)", |r| r.train_accuracy),
                curve("validation", |r| Some(r.val_accuracy)),
                curve("validation macro-F1", |r| Some(r.val_macro_f1)),
            ],
        )?;
        written.push(path);
    }

    let metrics_path = dir.join("metrics.json");
    if metrics_path.is_file() {
        let metrics: Metrics = read_json(&metrics_path)?;
        let path = out.join("confusion.png");
        figures::confusion(&path, &names, &metrics.confusion)?;
        written.push(path);
    }
    Ok(written)
}

pub fn run(args: FiguresArgs) -> Result<()> {
    for path in write_all(&args.run)? {
        println!("wrote {}", path.display());
    }
    Ok(())
}
