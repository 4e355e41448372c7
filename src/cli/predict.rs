//! `ecgwgpu predict`: classifies every beat of a recording (a WFDB record, an EDF/EDF+ file, or
//! every one of them in a directory) and writes a CSV (sample, classes, probabilities, R–R
//! features) and, for WFDB records, a WFDB annotation file readable by PhysioNet's tools.
//!
//! The pipeline is the library's ([`crate::infer::Classifier`]); this command picks the network
//! (`--checkpoint`, or the shipped one), writes the CSV as beats arrive and renames it into place
//! when complete, and reports progress.

use std::io::Write;
use std::path::{Path, PathBuf};

use super::data::Source;
use crate::data::beats::reference::BeatReference;
use crate::data::beats::stream;
use crate::data::corpus::csv;
use crate::data::corpus::dataset::{list_records, LoadOptions};
use crate::data::formats::aami::{AamiClass, CLASSES};
use crate::data::formats::annotation::{self, Annotation};
use crate::data::recording::{self, Recording};
use crate::data::write_atomic;
use crate::error::{Error, Result};
use crate::infer::{csv_header, csv_rows, Classifier, Streaming};

#[derive(clap::Args)]
pub struct PredictArgs {
    #[command(flatten)]
    network: super::NetworkArgs,
    /// What to classify: a WFDB record as a path without extension (e.g. ~/mitdb/208: its .hea,
    /// signal files and .atr, whose beat annotations give the R peaks), an EDF/EDF+ file (its
    /// EDF+ beat annotations, e.g. N, V, A as WFDB mnemonics, give the R peaks), or a directory
    /// (every WFDB record and EDF file in it). Without beat annotations the QRS detector finds
    /// the beats. Long recordings are streamed a chunk at a time.
    #[arg(
        long,
        required_unless_present = "beats_csv",
        conflicts_with = "beats_csv"
    )]
    record: Option<PathBuf>,
    /// Classify ready-made beats instead: a CSV in the common layout (187 samples, then a label,
    /// per row, as `data export` writes), taken as the network's input as they are (for a
    /// network trained with --beat-reference record-median, export them with the same flag).
    /// Writes <file stem>_<annotator>.csv only.
    #[arg(long)]
    beats_csv: Option<PathBuf>,
    /// Beat extraction and lead; a recording without --lead falls back to a lead standing in
    /// for it (lead II for MLII), else its first signal
    /// (always, for predict). --strict makes a recording that cannot be read in a directory an
    /// error instead of a skipped line. (--data-dir is not used: give --record.)
    #[command(flatten)]
    source: Source,
    /// Where to write <record>_<annotator>.csv and, for WFDB records, <record>.<annotator> (with
    /// a copy of the header, so WFDB tools can read the annotations there). The CSV's `sample`
    /// column is the R peak's sample in the recording, or the row number for --beats-csv.
    #[arg(long, default_value = ".")]
    out_dir: PathBuf,
    /// Annotator name: the extension of the annotation file written.
    #[arg(long, default_value = "pred")]
    annotator: String,
    /// Beats per inference batch. On software Vulkan (lavapipe) the GPU's buffers live in this
    /// process's memory, about 0.5 MB per beat of batch; 256 keeps a run under 300 MB.
    #[arg(long, default_value_t = 256)]
    batch: usize,
    /// Seconds of signal read, filtered and classified at a time: memory grows with it, not with
    /// the recording's length. Rounded to whole 10-s windows.
    #[arg(long, default_value_t = stream::CHUNK_S)]
    chunk_seconds: f64,
    #[command(flatten)]
    gpu: super::GpuArgs,
}

/// A predicted label as a WFDB annotation. Models with other classes than AAMI's five write
/// their label index as the subtype of a generic beat code (Q), so nothing is silently renamed.
fn wfdb_annotation(classes: usize, sample: u64, label: u32) -> Annotation {
    let mut a = Annotation::new(sample, AamiClass::Q.code());
    match AamiClass::from_label(label).filter(|_| classes == CLASSES.len()) {
        Some(class) => a.code = class.code(),
        None => a.subtype = label as i8,
    }
    a
}

/// "N 2201, S 3, ..." for counts per class.
fn counts_line(names: &[String], counts: &[usize]) -> String {
    names
        .iter()
        .zip(counts)
        .map(|(n, c)| format!("{n} {c}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// A CSV written through a temporary file and renamed into place when complete, so an
/// interrupted run never leaves half a file under the final name.
struct CsvOut {
    path: PathBuf,
    tmp: PathBuf,
    file: std::io::BufWriter<std::fs::File>,
}

impl CsvOut {
    fn create(path: PathBuf, header: &str) -> Result<Self> {
        let tmp = path.with_extension("csv.tmp");
        let file = std::fs::File::create(&tmp).map_err(|e| Error::io(&tmp, e))?;
        let mut out = Self {
            path,
            tmp,
            file: std::io::BufWriter::new(file),
        };
        out.file
            .write_all(header.as_bytes())
            .map_err(|e| Error::io(&out.tmp, e))?;
        Ok(out)
    }

    fn commit(self) -> Result<PathBuf> {
        let file = self
            .file
            .into_inner()
            .map_err(|e| Error::io(&self.tmp, e.into_error()))?;
        file.sync_all().map_err(|e| Error::io(&self.tmp, e))?;
        std::fs::rename(&self.tmp, &self.path).map_err(|e| Error::io(&self.path, e))?;
        Ok(self.path)
    }
}

/// What classifying one recording gave.
struct Classified {
    beats: usize,
    counts: Vec<usize>,
    written: Vec<String>,
    /// Beats (annotated or detected) that could not be cut: too close to the recording's edge,
    /// or past the end of its signal.
    not_cut: usize,
}

/// Streams one recording through the classifier, writing its CSV (and WFDB annotations) as it
/// goes.
fn classify_recording(
    clf: &mut Classifier<'_>,
    rec: Recording,
    record_path: &Path,
    args: &PredictArgs,
) -> Result<Classified> {
    let name = rec.name.clone();
    let (fs, len) = (rec.lead.fs(), rec.lead.len());
    let hours = len as f64 / fs / 3600.0;
    if rec.dropped > 0 {
        let what = format!(
            "{} annotation{} at or past the end of the signal ({} beats, dropped)",
            rec.dropped,
            if rec.dropped == 1 { "" } else { "s" },
            rec.dropped_beats
        );
        if args.source.options().strict {
            return Err(Error::Config(format!("{name}: {what}")));
        }
        eprintln!("warning: {name}: {what}");
    }
    match rec.annotations.is_some() {
        true => eprintln!(
            "{name}: '{}' at {fs} Hz, {hours:.2} h; classifying its annotated beats",
            rec.label
        ),
        false => eprintln!(
            "{name}: '{}' at {fs} Hz, {hours:.2} h; no beat annotations, finding beats with \
             the QRS detector",
            rec.label
        ),
    }
    let names = clf.class_names().to_vec();
    let classes = names.len();
    let csv_path = args.out_dir.join(format!("{name}_{}.csv", args.annotator));
    let mut csv = CsvOut::create(csv_path, &csv_header(&names))?;
    let mut predicted = vec![];
    let mut lines = [
        super::ProgressLines::new("detecting", "samples", 0.05),
        super::ProgressLines::new("median beat", "beats", 0.05),
        super::ProgressLines::new("classifying", "beats", 0.05),
    ];
    let summary = clf.classify_recording(
        rec,
        Streaming::new()
            .on_beats(|beats| {
                csv.file
                    .write_all(csv_rows(beats, &names).as_bytes())
                    .map_err(|e| Error::io(&csv.tmp, e))?;
                predicted.extend(
                    beats
                        .iter()
                        .map(|b| wfdb_annotation(classes, b.sample, b.class)),
                );
                Ok(())
            })
            .on_progress(|stage, done, total| {
                lines[stage as usize].update(done, total);
                Ok(())
            }),
    )?;
    let mut written = vec![csv.commit()?.display().to_string()];
    if !recording::is_edf(record_path) {
        let atr_path = args.out_dir.join(format!("{name}.{}", args.annotator));
        write_atomic(&atr_path, &annotation::encode(&predicted))?;
        let header = record_path.with_extension("hea");
        let header_copy = args.out_dir.join(format!("{name}.hea"));
        if !header_copy.exists() {
            std::fs::copy(&header, &header_copy).map_err(|e| Error::io(&header_copy, e))?;
        }
        written.push(atr_path.display().to_string());
    }
    if let Some(noise) = summary.noise_index {
        eprintln!(
            "{name}: noise index {noise:.4} (a warning above {})",
            crate::infer::NOISY
        );
    }
    for warning in &summary.warnings {
        eprintln!("warning: {name}: {warning}");
    }
    Ok(Classified {
        beats: summary.beats,
        counts: summary.counts,
        written,
        not_cut: summary.not_cut,
    })
}

/// The recordings `--record` names: itself, or every record in a directory.
fn recordings(path: &Path) -> Result<Vec<PathBuf>> {
    if path.is_dir() {
        return Ok(list_records(path)?
            .into_iter()
            .map(|n| path.join(n))
            .collect());
    }
    Ok(vec![path.to_path_buf()])
}

/// Classifies the recordings `--record` names. One that cannot be read is skipped with a line
/// naming it (an error with --strict, or when it is the only one); a summary line ends the run.
fn run_records(
    clf: &mut Classifier<'_>,
    args: &PredictArgs,
    opts: &LoadOptions,
    record: &Path,
) -> Result<()> {
    let paths = recordings(record)?;
    let single = paths.len() == 1 && !record.is_dir();
    let opts = LoadOptions {
        fallback_to_first: true,
        ..opts.clone()
    };
    let names = clf.class_names().to_vec();
    let mut skipped: Vec<(String, String)> = vec![];
    let mut fallbacks: Vec<(String, String)> = vec![];
    let (mut beats, mut counts) = (0, vec![0usize; names.len()]);
    for (k, path) in paths.iter().enumerate() {
        let name = path.file_name().map_or_else(
            || path.display().to_string(),
            |n| n.to_string_lossy().into(),
        );
        if !single {
            eprintln!("record {} of {}: {name}", k + 1, paths.len());
        }
        let result = recording::open(path, &opts.lead, opts.fallback_to_first).and_then(|rec| {
            let rec = rec.expect("fallback_to_first always yields a lead");
            if let Some(used) = &rec.fallback {
                fallbacks.push((name.clone(), used.clone()));
                if single {
                    eprintln!("warning: {name}: no {} lead, using '{used}'", opts.lead);
                }
            }
            classify_recording(clf, rec, path, args)
        });
        match result {
            Ok(c) => {
                let not_cut = match c.not_cut {
                    0 => String::new(),
                    n => format!(", {n} too close to an edge or past the end"),
                };
                println!(
                    "{name}: {} beats classified ({}){not_cut}; wrote {}",
                    c.beats,
                    counts_line(&names, &c.counts),
                    c.written.join(" and ")
                );
                beats += c.beats;
                counts.iter_mut().zip(&c.counts).for_each(|(t, c)| *t += c);
            }
            Err(e) if single || opts.strict => return Err(e),
            Err(e) => {
                eprintln!("warning: {name} skipped: {e}");
                skipped.push((name, e.to_string()));
            }
        }
    }
    if !single {
        if !fallbacks.is_empty() {
            let (names, used): (Vec<String>, Vec<String>) = fallbacks.into_iter().unzip();
            eprintln!(
                "warning: {}",
                crate::data::corpus::dataset::fallback_warning(&opts.lead, &names, &used)
            );
        }
        let skipped_names: Vec<String> = skipped.iter().map(|s| s.0.clone()).collect();
        println!(
            "{} of {} recordings classified: {beats} beats ({}){}",
            paths.len() - skipped.len(),
            paths.len(),
            counts_line(&names, &counts),
            if skipped.is_empty() {
                String::new()
            } else {
                format!(
                    "; skipped: {}",
                    crate::data::corpus::dataset::name_list(&skipped_names)
                )
            }
        );
    }
    if let Some(mb) = super::peak_memory_mb() {
        eprintln!("peak memory: {mb:.0} MB");
    }
    Ok(())
}

/// Classifies the rows of a beats CSV and writes <stem>_<annotator>.csv.
fn run_csv(clf: &mut Classifier<'_>, args: &PredictArgs, path: &Path) -> Result<()> {
    let name = path
        .file_stem()
        .and_then(|n| n.to_str())
        .unwrap_or("beats")
        .to_string();
    let mut beats = csv::read(path)?;
    if clf.config().beat_reference != BeatReference::None {
        eprintln!(
            "note: this network takes beats relative to their record's median beat; the rows of \
             {} are taken to be so already (`data export --beat-reference record-median`)",
            path.display()
        );
    }
    // the row number stands for the R peak's sample
    beats.sample = (0..beats.len() as u64).collect();
    let names = clf.class_names().to_vec();
    let csv_path = args.out_dir.join(format!("{name}_{}.csv", args.annotator));
    let mut out = CsvOut::create(csv_path, &csv_header(&names))?;
    let mut lines = super::ProgressLines::new("classifying", "beats", 0.05);
    let classified = clf.classify_beats(&beats, true)?;
    out.file
        .write_all(csv_rows(&classified, &names).as_bytes())
        .map_err(|e| Error::io(&out.tmp, e))?;
    lines.update(beats.len(), beats.len());
    let mut counts = vec![0usize; names.len()];
    for b in &classified {
        counts[b.class as usize] += 1;
    }
    println!(
        "{name}: {} beats classified ({}); wrote {}",
        beats.len(),
        counts_line(&names, &counts),
        out.commit()?.display()
    );
    Ok(())
}

pub fn run(args: PredictArgs) -> Result<()> {
    if args.annotator.is_empty() || !args.annotator.chars().all(|c| c.is_ascii_alphanumeric()) {
        return Err(Error::Config(format!(
            "--annotator {:?}: use letters and digits only (it becomes a file extension)",
            args.annotator
        )));
    }
    if !(args.chunk_seconds >= 10.0 && args.chunk_seconds.is_finite()) {
        return Err(Error::Config(format!(
            "--chunk-seconds {}: give at least 10 (one normalisation window)",
            args.chunk_seconds
        )));
    }
    if let Some(record) = &args.record {
        // a missing input is reported before the GPU is set up
        if !record.is_dir() && !recording::is_edf(record) && !record.with_extension("hea").is_file()
        {
            return Err(Error::data(
                record.with_extension("hea"),
                "path",
                "not found (give a record path without extension, an .edf file or a directory)",
            ));
        }
    }
    std::fs::create_dir_all(&args.out_dir).map_err(|e| Error::io(&args.out_dir, e))?;
    let ctx = args.gpu.context()?;
    let (mut clf, network) = args.network.classifier(&ctx)?;
    clf.batch = args.batch;
    clf.chunk_seconds = args.chunk_seconds;
    let opts = args.source.options_for(clf.preprocessing(), &network)?;
    eprintln!(
        "network: {} ({})",
        network.display(),
        clf.preprocessing().describe(clf.config())
    );
    match (&args.record, &args.beats_csv) {
        (Some(record), _) => run_records(&mut clf, &args, &opts, record),
        (None, Some(path)) => run_csv(&mut clf, &args, path),
        (None, None) => unreachable!("clap requires --record or --beats-csv"),
    }
}
