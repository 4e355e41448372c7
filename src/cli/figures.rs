//! `ecgwgpu figures --run DIR`: the paper's figures from a run directory's files.

use std::path::{Path, PathBuf};

use clap::ValueEnum;
use serde_json::Value;

use super::evaluate::class_names;
use crate::data::beats::{BeatMode, Beats, BEAT_LEN};
use crate::data::dataset::{load_dir, LoadOptions};
use crate::data::{csv, ptb};
use crate::error::{Error, Result};
use crate::figures::{self, Curve};

#[derive(clap::Args)]
pub struct FiguresArgs {
    /// Run directory written by `train` (config.json, history.json, metrics.json); the PNGs go to
    /// its figures/ folder.
    #[arg(long)]
    run: PathBuf,
}

fn read_json(path: &Path) -> Result<Value> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    serde_json::from_str(&text).map_err(|e| Error::data(path, "JSON", e.to_string()))
}

fn counts(config: &Value, key: &str, path: &Path) -> Result<Vec<usize>> {
    serde_json::from_value(config["class_counts"][key].clone())
        .map_err(|e| Error::data(path, format!("class_counts.{key}"), e.to_string()))
}

/// The run's beats as it read them (WFDB directory or CSV file), for the sample-beat figure.
fn run_beats(config: &Value, path: &Path) -> Result<Beats> {
    let csv_files: Vec<PathBuf> =
        serde_json::from_value(config["args"]["beats_csv"].clone()).unwrap_or_default();
    if !csv_files.is_empty() {
        let mut beats = Beats::default();
        for file in &csv_files {
            beats.extend(&csv::read(file)?);
        }
        return Ok(beats);
    }
    let source = PathBuf::from(config["data_dir"].as_str().unwrap_or_default());
    if source.is_file() {
        return csv::read(&source);
    }
    let mode = config["mode"]
        .as_str()
        .and_then(|m| BeatMode::from_str(m, true).ok())
        .ok_or_else(|| Error::data(path, "mode", "expected kachuee or centred"))?;
    if config["task"] == "mi" {
        let mut options = ptb::default_options(mode);
        options.lead = config["lead"].as_str().unwrap_or("II").to_string();
        return Ok(ptb::load(&source, &options)?.beats);
    }
    let options = LoadOptions {
        mode,
        lead: config["lead"].as_str().unwrap_or("MLII").to_string(),
        fallback_to_first: config["args"]["fallback_lead"].as_bool().unwrap_or(false),
        records: None,
        strict: false,
    };
    Ok(load_dir(&source, &options)?.beats)
}

/// Writes every figure of the run in `dir` and returns their paths.
pub fn write_all(dir: &Path) -> Result<Vec<PathBuf>> {
    let config_path = dir.join("config.json");
    let config = read_json(&config_path)?;
    let classes = config["model"]["classes"].as_u64().unwrap_or(5) as usize;
    let names: Vec<String> = serde_json::from_value(config["class_names"].clone())
        .unwrap_or_else(|_| class_names(classes));
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    let out = dir.join("figures");
    std::fs::create_dir_all(&out).map_err(|e| Error::io(&out, e))?;
    let mut written = vec![];

    let path = out.join("class_counts.png");
    figures::class_counts(
        &path,
        &names,
        &counts(&config, "train_before_augmentation", &config_path)?,
        &counts(&config, "train", &config_path)?,
    )?;
    written.push(path);

    let beats = run_beats(&config, &config_path)?;
    let examples: Vec<(&str, &[f32])> = (0..classes)
        .filter_map(|c| {
            let i = beats.labels.iter().position(|&l| l as usize == c)?;
            Some((names[c], &beats.x[i * BEAT_LEN..(i + 1) * BEAT_LEN]))
        })
        .collect();
    let path = out.join("sample_beats.png");
    figures::sample_beats(&path, &examples)?;
    written.push(path);

    let history_path = dir.join("history.json");
    if history_path.is_file() {
        let history = read_json(&history_path)?;
        let rows = history.as_array().cloned().unwrap_or_default();
        let curve = |name: &'static str, key: &str| Curve {
            name,
            values: rows.iter().map(|r| r[key].as_f64()).collect(),
        };
        let path = out.join("training_curves.png");
        figures::training_curves(
            &path,
            &[
                curve("train", "train_loss"),
                curve("validation", "val_loss"),
            ],
            &[
                curve("train (eval mode, subset)", "train_accuracy"),
                curve("validation", "val_accuracy"),
                curve("validation macro-F1", "val_macro_f1"),
            ],
        )?;
        written.push(path);
    }

    let metrics_path = dir.join("metrics.json");
    if metrics_path.is_file() {
        let metrics = read_json(&metrics_path)?;
        let confusion: Vec<Vec<usize>> = serde_json::from_value(metrics["confusion"].clone())
            .map_err(|e| Error::data(&metrics_path, "confusion", e.to_string()))?;
        let path = out.join("confusion.png");
        figures::confusion(&path, &names, &confusion)?;
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
