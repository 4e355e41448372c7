//! `ecgwgpu data ...`: inspect and export the beats the training commands see.

use std::path::PathBuf;
use std::time::Instant;

use clap::{Args, Subcommand};

use crate::data::beats::reference::BeatReference;
use crate::data::beats::BeatMode;
use crate::data::corpus::dataset::{annotation_counts, detection_scores, load_dir, LoadOptions};
use crate::data::corpus::{csv, splits};
use crate::data::formats::aami::CLASS_NAMES;
use crate::data::signal::qrs::Matches;
use crate::error::{Error, Result};
use crate::preprocessing::Preprocessing;

#[derive(Subcommand)]
pub enum DataCommand {
    /// Run the QRS detector on every record and score it against the reference beat annotations
    /// (sensitivity Se and positive predictivity +P, 150 ms matching window).
    Detect(Source),
    /// Per-record and total AAMI class counts: of the reference annotations, and of the beats
    /// extracted from the chosen lead.
    Stats(Source),
    /// Write a WFDB record as an EDF+ file: every signal (ADC values, WFDB's scaling) and the
    /// .atr annotations as EDF+ annotations.
    ToEdf {
        /// The record, as a path without extension (e.g. ~/mitdb/208).
        #[arg(long)]
        record: PathBuf,
        /// Output EDF file (written atomically).
        #[arg(long)]
        out: PathBuf,
    },
    /// Extract beats and write them in the common CSV layout (187 samples + label per row; with
    /// --rr, the beat's R–R features before the label).
    Export {
        #[command(flatten)]
        source: Source,
        /// Output CSV file (written atomically).
        #[arg(long)]
        out: PathBuf,
        /// Only this part of a split (with --split); all beats when omitted.
        #[arg(long, value_parser = ["train", "val", "test"], requires = "split")]
        part: Option<String>,
        /// Split to take --part from.
        #[arg(long, value_enum)]
        split: Option<splits::SplitKind>,
        /// Seed of the split.
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Also write each beat's nine R–R features (pre, post, local and record R–R in seconds,
        /// the first three as ratios to the record's, then the local irregularity and the rhythm
        /// irregularity over 60 intervals) between the samples and the label.
        #[arg(long)]
        rr: bool,
        /// Write each beat relative to its record's median beat (`record-median`), as a network
        /// trained with `train --beat-reference record-median` takes it.
        #[arg(long, value_enum, default_value = "none")]
        beat_reference: BeatReference,
    },
}

#[derive(Args)]
pub struct Source {
    /// Directory of WFDB records (.hea/.dat/.atr) and EDF+ files whose annotations label the
    /// beats (WFDB mnemonics, as `data to-edf` writes them). Default: `data/mitdb` in the current
    /// directory (in a checkout, the five embedded MIT-BIH records).
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Beat extraction: `kachuee` (the paper's preprocessing), `centred` (fixed window) or
    /// `kachuee-beat` (Kachuee's cut, each beat min-max normalised on its own). Default:
    /// kachuee, or for `evaluate` and `predict` the checkpoint's (a different one is refused:
    /// the network was trained on its own).
    #[arg(long, value_enum)]
    mode: Option<BeatMode>,
    /// Lead to read, matched against the header's signal descriptions; a comma-separated list
    /// is a preference order (e.g. `MLII,II,ECG1`). Default: MLII, or for `evaluate` and
    /// `predict` the checkpoint's lead (give this to read another database's name for it).
    #[arg(long)]
    lead: Option<String>,
    /// When a record lacks --lead, read a lead that stands in for it (lead II for MLII), else
    /// its first signal, instead of skipping it.
    #[arg(long)]
    fallback_lead: bool,
    /// Fail on the first record that cannot be used or annotation outside its signal, instead of
    /// skipping it and reporting it in the summary.
    #[arg(long)]
    strict: bool,
}

impl Source {
    /// The --data-dir given on the command line, if any.
    pub fn data_dir_given(&self) -> Option<&std::path::Path> {
        self.data_dir.as_deref()
    }

    /// --data-dir, else `data/mitdb` in the current directory; an error that says so when
    /// neither is there.
    pub fn dir(&self) -> Result<PathBuf> {
        match &self.data_dir {
            Some(dir) => Ok(dir.clone()),
            None => {
                let dir = super::default_data_dir("mitdb");
                match dir.is_dir() {
                    true => Ok(dir),
                    false => Err(Error::Config(format!(
                        "no --data-dir given and no {} in this folder: give --data-dir (a \
                         folder of WFDB records), or run from a checkout of ecgwgpu",
                        dir.display()
                    ))),
                }
            }
        }
    }

    /// How to read records for training or inspection: the flags, else the paper's defaults.
    pub fn options(&self) -> LoadOptions {
        LoadOptions {
            mode: self.mode.unwrap_or(BeatMode::Kachuee),
            lead: self.lead.clone().unwrap_or_else(|| "MLII".into()),
            fallback_to_first: self.fallback_lead,
            records: None,
            strict: self.strict,
            ..LoadOptions::default()
        }
    }

    /// The --mode flag, if given.
    pub fn mode_given(&self) -> Option<BeatMode> {
        self.mode
    }

    /// The --lead flag, if given.
    pub fn lead_given(&self) -> Option<&str> {
        self.lead.as_deref()
    }

    /// How to read records for a network: its preprocessing, with --lead naming the lead in
    /// another database. A --mode that contradicts the checkpoint's is refused.
    pub fn options_for(
        &self,
        pre: &Preprocessing,
        checkpoint: &std::path::Path,
    ) -> Result<LoadOptions> {
        Ok(LoadOptions {
            fallback_to_first: self.fallback_lead,
            strict: self.strict,
            ..pre.load_options(self.mode, self.lead.as_deref(), checkpoint)?
        })
    }
}

fn detect_row(name: &str, m: &Matches) -> String {
    format!(
        "{name:<8}{:>8}{:>8}{:>8}{:>9.4}{:>9.4}",
        m.true_positives,
        m.false_negatives,
        m.false_positives,
        m.sensitivity(),
        m.positive_predictivity()
    )
}

fn row(name: &str, counts: &[usize; 5]) -> String {
    let total: usize = counts.iter().sum();
    let cells: String = counts.iter().map(|c| format!("{c:>8}")).collect();
    format!("{name:<8}{cells}{total:>9}")
}

pub fn run(command: DataCommand) -> Result<()> {
    match command {
        DataCommand::ToEdf { record, out } => {
            let n = crate::data::formats::edf::write_from_wfdb(&record, &out)?;
            println!("wrote {} ({n} annotations)", out.display());
        }
        DataCommand::Stats(source) => {
            let dir = source.dir()?;
            let header: String = CLASS_NAMES.iter().map(|c| format!("{c:>8}")).collect();
            println!("reference annotations in {}", dir.display());
            println!("{:<8}{header}{:>9}", "record", "total");
            let mut total = [0usize; 5];
            let (counted, unread) = annotation_counts(&dir)?;
            for (name, counts) in counted {
                println!("{}", row(&name, &counts));
                total.iter_mut().zip(counts).for_each(|(t, c)| *t += c);
            }
            println!("{}", row("total", &total));
            for (name, reason) in unread {
                eprintln!("warning: record {name}: reference annotations not counted: {reason}");
            }
            let start = Instant::now();
            let ds = load_dir(&dir, &source.options())?;
            let elapsed = start.elapsed().as_secs_f64();
            super::report_load(&ds);
            let mut beats = [0usize; 5];
            for (_, counts) in &ds.per_record {
                beats.iter_mut().zip(counts).for_each(|(t, c)| *t += c);
            }
            println!(
                "\nextracted beats ({}, lead {}), {} records in {elapsed:.2} s",
                source.options().mode.name(),
                source.options().lead,
                ds.per_record.len()
            );
            println!("{}", row("total", &beats));
        }
        DataCommand::Detect(source) => {
            let (scores, warnings) = detection_scores(&source.dir()?, &source.options())?;
            for w in &warnings {
                eprintln!("warning: {w}");
            }
            println!(
                "{:<8}{:>8}{:>8}{:>8}{:>9}{:>9}",
                "record", "TP", "FN", "FP", "Se", "+P"
            );
            let mut total = Matches::default();
            for (name, m) in &scores {
                println!("{}", detect_row(name, m));
                total.add(*m);
            }
            println!("{}", detect_row("total", &total));
        }
        DataCommand::Export {
            source,
            out,
            part,
            split,
            seed,
            rr,
            beat_reference,
        } => {
            let mut ds = load_dir(&source.dir()?, &source.options())?;
            super::report_load(&ds);
            beat_reference.apply(&mut ds.beats)?;
            let beats = match (split, part.as_deref()) {
                (Some(kind), Some(part)) => {
                    let s = splits::split(&ds.beats, kind, 0.2, 0.1, seed);
                    let indices = match part {
                        "train" => s.train,
                        "val" => s.val,
                        _ => s.test,
                    };
                    ds.beats.select(&indices)
                }
                _ => ds.beats,
            };
            csv::write(&out, &beats, rr)?;
            println!("wrote {} beats to {}", beats.len(), out.display());
        }
    }
    Ok(())
}
