//! `ecgwgpu predict`: classifies every annotated beat of one WFDB record (or, without an .atr
//! file, every beat the QRS detector finds) and writes the result as
//! a CSV and as a WFDB annotation file (standard MIT encoding, readable by PhysioNet's tools).

use std::path::PathBuf;

use super::data::Source;
use super::evaluate::class_names;
use crate::data::aami::AamiClass;
use crate::data::annotation::{self, Annotation};
use crate::data::beats::Beats;
use crate::data::beats::{extract_detected, BeatMode};
use crate::data::csv;
use crate::data::dataset::{load_dir, read_lead, LoadOptions};
use crate::data::edf::Edf;
use crate::data::write_atomic;
use crate::error::{Error, Result};
use crate::gpu::GpuContext;
use crate::metrics::argmax_rows;
use crate::model::Model;
use crate::trainer::Trainer;

#[derive(clap::Args)]
pub struct PredictArgs {
    /// Checkpoint written by `train` (e.g. runs/NAME/best.safetensors).
    #[arg(long)]
    checkpoint: PathBuf,
    /// The record, as a path without extension (e.g. ~/mitdb/208): its .hea, signal files and
    /// .atr (whose beat annotations give the R peaks to classify) are read; without an .atr the
    /// QRS detector finds the beats. An .edf path reads an EDF/EDF+ file (16-bit) and finds its
    /// beats with the QRS detector; only the CSV is written then.
    #[arg(
        long,
        required_unless_present = "beats_csv",
        conflicts_with = "beats_csv"
    )]
    record: Option<PathBuf>,
    /// Classify ready-made beats instead: a CSV in the common layout (187 samples, then a label,
    /// per row, as `data export` writes). Writes <file stem>_<annotator>.csv only.
    #[arg(long)]
    beats_csv: Option<PathBuf>,
    /// Beat extraction and lead; a record without --lead falls back to its first signal.
    #[command(flatten)]
    source: Source,
    /// Where to write <record>_<annotator>.csv and <record>.<annotator> (with a copy of the
    /// header, so WFDB tools can read the annotations there). The CSV's `sample` column is the
    /// R peak's sample in the record, or the row number for --beats-csv.
    #[arg(long, default_value = ".")]
    out_dir: PathBuf,
    /// Annotator name: the extension of the annotation file written.
    #[arg(long, default_value = "pred")]
    annotator: String,
    /// Beats per inference batch.
    #[arg(long, default_value_t = 1024)]
    batch: usize,
    /// Adapter selector (see `ecgwgpu devices`); defaults to $ECGWGPU_DEVICE, then the fastest.
    #[arg(long)]
    device: Option<String>,
    /// Kernel variant: `cpu` (register blocks, for software Vulkan such as lavapipe), `gpu` (the
    /// mix that measured fastest on a real GPU: split reductions, tiled input gradient) or
    /// `tiled` (workgroup-memory tiles throughout). Default: from the adapter type, or
    /// $ECGWGPU_KERNELS.
    #[arg(long, value_parser = crate::gpu::Kernels::parse_arg)]
    kernels: Option<crate::gpu::Kernels>,
}

/// What to classify.
struct Input {
    name: String,
    /// The record's directory (None for CSV beats).
    record_dir: Option<PathBuf>,
    beats: Beats,
    /// Whether the labels are reference classes (false for detected beats).
    annotated: bool,
}

/// The beats to classify: a record's annotated beats, its detected beats when it has no .atr,
/// or a CSV's rows.
fn read_beats(args: &PredictArgs) -> Result<Input> {
    if let Some(path) = &args.beats_csv {
        let name = path
            .file_stem()
            .and_then(|n| n.to_str())
            .unwrap_or("beats")
            .to_string();
        return Ok(Input {
            name,
            record_dir: None,
            beats: csv::read(path)?,
            annotated: true,
        });
    }
    let record = args
        .record
        .as_ref()
        .expect("clap requires --record or --beats-csv");
    if record
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("edf"))
    {
        return read_edf_beats(args, record);
    }
    let name = record
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or_else(|| Error::data(record, "path", "expected a record path such as dir/100"))?
        .to_string();
    let dir = match record.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let options = LoadOptions {
        fallback_to_first: true,
        records: Some(vec![name.clone()]),
        ..args.source.options()
    };
    if !dir.join(format!("{name}.atr")).is_file() {
        let (lead, warning) = read_lead(&dir, &name, &options)?;
        eprintln!(
            "{}: no {name}.atr, classifying the beats the QRS detector finds",
            dir.display()
        );
        if let Some(w) = warning {
            eprintln!("warning: {w}");
        }
        let (signal, fs) = lead.expect("fallback_to_first always yields a lead");
        let beats = detected_beats(&signal, fs, options.mode, &name)
            .ok_or_else(|| no_beats_error(&dir.join(format!("{name}.hea")), "signal".into()))?;
        return Ok(Input {
            name,
            record_dir: Some(dir),
            beats,
            annotated: false,
        });
    }
    let ds = load_dir(&dir, &options)?;
    // one record asked for: if it could not be used, that is the error
    if let Some((_, reason)) = ds.skipped.first() {
        return Err(Error::Config(format!("record {name}: {reason}")));
    }
    super::report_load(&ds);
    if ds.beats.is_empty() {
        return Err(Error::data(
            record.with_extension("atr"),
            "annotations",
            "no beat annotations to classify",
        ));
    }
    Ok(Input {
        name,
        record_dir: Some(dir),
        beats: ds.beats,
        annotated: true,
    })
}

/// The beats the QRS detector finds, or `None` when it finds none.
fn detected_beats(signal: &[f32], fs: f64, mode: BeatMode, name: &str) -> Option<Beats> {
    Some(extract_detected(signal, fs, mode, name)).filter(|b| !b.is_empty())
}

fn no_beats_error(file: &std::path::Path, at: String) -> Error {
    Error::data(
        file,
        at,
        "the QRS detector found no beats (flat line or shorter than a beat?)",
    )
}

/// An EDF/EDF+ file's beats: the lead picked by --lead (else its first signal), beats found by
/// the QRS detector.
fn read_edf_beats(args: &PredictArgs, path: &std::path::Path) -> Result<Input> {
    let edf = Edf::read(path)?;
    let i = edf
        .signal_index(args.source.lead(), true)
        .ok_or_else(|| Error::data(path, "signals", "no ordinary signal, only annotations"))?;
    let label = &edf.signals[i].label;
    if edf.signal_index(args.source.lead(), false).is_none() {
        eprintln!(
            "warning: {}: no {} signal, using '{label}'",
            path.display(),
            args.source.lead()
        );
    }
    let name = path
        .file_stem()
        .and_then(|n| n.to_str())
        .unwrap_or("edf")
        .to_string();
    let (signal, fs) = (edf.physical(i), edf.fs(i));
    let beats = detected_beats(&signal, fs, args.source.mode(), &name)
        .ok_or_else(|| no_beats_error(path, format!("signal '{label}'")))?;
    eprintln!(
        "{}: '{label}' at {fs} Hz, {} beats found by the QRS detector",
        path.display(),
        beats.len()
    );
    Ok(Input {
        name,
        record_dir: None,
        beats,
        annotated: false,
    })
}

pub fn run(args: PredictArgs) -> Result<()> {
    if args.annotator.is_empty() || !args.annotator.chars().all(|c| c.is_ascii_alphanumeric()) {
        return Err(Error::Config(format!(
            "--annotator {:?}: use letters and digits only (it becomes a file extension)",
            args.annotator
        )));
    }
    let Input {
        name,
        record_dir,
        beats,
        annotated,
    } = read_beats(&args)?;

    let ctx = GpuContext::new(args.device.as_deref())?.with_kernels(args.kernels);
    let model = Model::load(&ctx, &args.checkpoint)?;
    let classes = model.config.classes;
    let mut trainer = Trainer::for_inference(&ctx, model)?;
    let mut lines = super::ProgressLines::new("scoring", 0.05);
    let probs = trainer.predict_many_with_progress(&beats.x, args.batch, |done, total| {
        lines.update(done, total)
    })?;
    let predicted = argmax_rows(&probs, classes);
    let names = class_names(classes);

    let mut csv = format!(
        "sample,annotated,predicted,{}\n",
        names
            .iter()
            .map(|n| format!("p_{n}"))
            .collect::<Vec<_>>()
            .join(",")
    );
    let mut annotations = Vec::with_capacity(beats.len());
    for (i, &p) in predicted.iter().enumerate() {
        let row: Vec<String> = probs[i * classes..(i + 1) * classes]
            .iter()
            .map(|v| format!("{v:.6}"))
            .collect();
        csv += &format!(
            "{},{},{},{}\n",
            beats.sample[i],
            if annotated {
                names[beats.labels[i] as usize].as_str()
            } else {
                ""
            },
            names[p as usize],
            row.join(",")
        );
        // Models with other classes than AAMI's five write their label index as the annotation's
        // subtype on a generic beat code (Q), so nothing is silently renamed.
        let mut a = Annotation::new(beats.sample[i], AamiClass::Q.code());
        match AamiClass::from_label(p).filter(|_| classes == 5) {
            Some(class) => a.code = class.code(),
            None => a.subtype = p as i8,
        }
        annotations.push(a);
    }
    std::fs::create_dir_all(&args.out_dir).map_err(|e| Error::io(&args.out_dir, e))?;
    let csv_path = args.out_dir.join(format!("{name}_{}.csv", args.annotator));
    write_atomic(&csv_path, csv.as_bytes())?;
    let mut written = vec![csv_path.display().to_string()];
    if let Some(dir) = record_dir {
        let atr_path = args.out_dir.join(format!("{name}.{}", args.annotator));
        write_atomic(&atr_path, &annotation::encode(&annotations))?;
        let header = dir.join(format!("{name}.hea"));
        let header_copy = args.out_dir.join(format!("{name}.hea"));
        if !header_copy.exists() {
            std::fs::copy(&header, &header_copy).map_err(|e| Error::io(&header_copy, e))?;
        }
        written.push(atr_path.display().to_string());
    }
    let mut counts = vec![0usize; classes];
    for &p in &predicted {
        counts[p as usize] += 1;
    }
    let summary: Vec<String> = names
        .iter()
        .zip(&counts)
        .map(|(n, c)| format!("{n} {c}"))
        .collect();
    println!(
        "{name}: {} beats classified ({}); wrote {}",
        beats.len(),
        summary.join(", "),
        written.join(" and ")
    );
    Ok(())
}
