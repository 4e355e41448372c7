//! Classifies every beat of a recording with the shipped model and prints the count per class.
//!
//! ```sh
//! cargo run --release --example classify -- data/mitdb/208
//! cargo run --release --example classify -- ~/holter/day1.edf runs/NAME/best.safetensors
//! ```
//!
//! The argument is a WFDB record path without extension (its .hea, signal files and, when there
//! is one, .atr: its beat annotations give the R peaks) or an EDF/EDF+ file; without annotations
//! the QRS detector finds the beats. A second argument names a checkpoint to use instead.

use std::path::PathBuf;

use ecgwgpu::gpu::GpuContext;
use ecgwgpu::infer::{Classifier, Streaming};

fn main() -> ecgwgpu::Result<()> {
    let mut args = std::env::args_os().skip(1);
    let Some(record) = args.next().map(PathBuf::from) else {
        eprintln!("usage: classify RECORD [CHECKPOINT]   (e.g. data/mitdb/208)");
        std::process::exit(2);
    };
    let ctx = GpuContext::new(None)?;
    let mut classifier = match args.next() {
        Some(checkpoint) => Classifier::load(&ctx, checkpoint.as_ref())?,
        None => Classifier::shipped(&ctx)?,
    };
    let summary = classifier.classify_file(&record, Streaming::new())?;
    println!(
        "{}: {} beats ({})",
        record.display(),
        summary.beats,
        if summary.annotated {
            "at the annotated R peaks"
        } else {
            "found by the QRS detector"
        }
    );
    for (name, count) in classifier.class_names().iter().zip(&summary.counts) {
        println!("{name} {count}");
    }
    Ok(())
}
