//! How far a recording's median beat is from every training record's: the measurement behind
//! the beat-shape warning. Each record's median beat (as the network sees beats: Kachuee cut,
//! min-max) is compared with DS1's records' median beats at MLII (Pearson correlation, the best
//! match); DS1's own records leave themselves out.
//!
//!     cargo run --release --example shape_distance -- ../shared/data/mitdb ../shared/data/ptb/ptbdb

use std::collections::BTreeMap;
use std::path::Path;

use ecgwgpu::data::beats::reference::record_medians;
use ecgwgpu::data::corpus::dataset::{load_dir, LoadOptions};
use ecgwgpu::data::signal::acquisition::{Acquisition, NoiseLevel};

const DS1: &str =
    "101 106 108 109 112 114 115 116 118 119 122 124 201 203 205 207 208 209 215 220 223 230";
const DS2: &str =
    "100 103 105 111 113 117 121 123 200 202 210 212 213 214 219 221 222 228 231 232 233 234";

fn correlation(a: &[f32], b: &[f32]) -> f64 {
    let n = a.len() as f64;
    let (ma, mb) = (
        a.iter().map(|&x| f64::from(x)).sum::<f64>() / n,
        b.iter().map(|&x| f64::from(x)).sum::<f64>() / n,
    );
    let (mut ab, mut aa, mut bb) = (0.0, 0.0, 0.0);
    for (&x, &y) in a.iter().zip(b) {
        let (x, y) = (f64::from(x) - ma, f64::from(y) - mb);
        ab += x * y;
        aa += x * x;
        bb += y * y;
    }
    ab / (aa * bb).sqrt().max(1e-12)
}

fn medians(dir: &str, opts: LoadOptions) -> ecgwgpu::Result<BTreeMap<String, Vec<f32>>> {
    let ds = load_dir(Path::new(dir), &opts)?;
    Ok(record_medians(&ds.beats))
}

fn main() -> ecgwgpu::Result<()> {
    let mut args = std::env::args().skip(1);
    let mitdb = args.next().unwrap_or("../shared/data/mitdb".into());
    let ptbdb = args.next().unwrap_or("../shared/data/ptb/ptbdb".into());
    let list = |s: &str| Some(s.split(' ').map(String::from).collect::<Vec<_>>());
    let training = medians(
        &mitdb,
        LoadOptions {
            records: list(DS1),
            ..Default::default()
        },
    )?;
    let strong = Acquisition {
        rate: Some(250.0),
        noise: NoiseLevel::Strong.noise(),
        seed: 1,
        ..Default::default()
    };
    let rows: Vec<(&str, String, LoadOptions)> = vec![
        (
            "DS1 (each against the others)",
            mitdb.clone(),
            LoadOptions {
                records: list(DS1),
                ..Default::default()
            },
        ),
        (
            "DS2",
            mitdb.clone(),
            LoadOptions {
                records: list(DS2),
                ..Default::default()
            },
        ),
        (
            "DS1 second lead",
            mitdb.clone(),
            LoadOptions {
                records: list(DS1),
                lead: "V1,V2,V4,V5".into(),
                ..Default::default()
            },
        ),
        (
            "DS2 second lead",
            mitdb.clone(),
            LoadOptions {
                records: list(DS2),
                lead: "V1,V2,V4,V5".into(),
                ..Default::default()
            },
        ),
        (
            "DS2 250 Hz strong noise, detected",
            mitdb.clone(),
            LoadOptions {
                records: list(DS2),
                acquisition: strong,
                detect: true,
                ..Default::default()
            },
        ),
        (
            "PTB lead ii, detected",
            ptbdb.clone(),
            LoadOptions {
                lead: "ii".into(),
                detect: true,
                ..Default::default()
            },
        ),
    ];
    println!("| records | min | median | max | each (record: best r) |");
    println!("|---|---|---|---|---|");
    for (what, dir, opts) in rows {
        let m = medians(&dir, opts)?;
        let mut best: Vec<(f64, String)> = m
            .iter()
            .map(|(name, med)| {
                let r = training
                    .iter()
                    .filter(|(t, _)| *t != name)
                    .map(|(_, t)| correlation(med, t))
                    .fold(f64::MIN, f64::max);
                (r, name.clone())
            })
            .collect();
        best.sort_by(|a, b| a.0.total_cmp(&b.0));
        let each: Vec<String> = best.iter().map(|(r, n)| format!("{n}: {r:.3}")).collect();
        println!(
            "| {what} | {:.3} | {:.3} | {:.3} | {} |",
            best[0].0,
            best[best.len() / 2].0,
            best[best.len() - 1].0,
            each.join(", ")
        );
    }
    Ok(())
}
