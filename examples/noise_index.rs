//! The noise index ([`ecgwgpu::data::signal::noise::NoiseIndex`]) of MIT-BIH's records as they
//! are and as `evaluate --resample 250 --noise typical|strong` reads them: the measurement that
//! sets `ecgwgpu::infer::NOISY` (twice DS1's noisiest record). Needs the full database.
//!
//!     cargo run --release --example noise_index -- ../shared/data/mitdb

use std::path::Path;

use ecgwgpu::data::beats::stream;
use ecgwgpu::data::formats::files::Disk;
use ecgwgpu::data::recording;
use ecgwgpu::data::signal::acquisition::{Acquisition, NoiseLevel};

const DS1: &str =
    "101 106 108 109 112 114 115 116 118 119 122 124 201 203 205 207 208 209 215 220 223 230";
const DS2: &str =
    "100 103 105 111 113 117 121 123 200 202 210 212 213 214 219 221 222 228 231 232 233 234";

fn main() -> ecgwgpu::Result<()> {
    let dir = std::env::args()
        .nth(1)
        .unwrap_or("../shared/data/mitdb".into());
    let read = |name: &str, acquisition: Acquisition| -> ecgwgpu::Result<f32> {
        let rec = recording::open_any(&Disk, &Path::new(&dir).join(name), "MLII")?;
        let mut rec = acquisition.apply(rec)?;
        let annotations = rec.annotations.take().unwrap_or_default();
        let index = stream::noise(rec.lead.as_mut(), &annotations, stream::CHUNK_S)?;
        Ok(index.unwrap_or(f32::NAN))
    };
    let device = |noise: NoiseLevel| Acquisition {
        rate: Some(250.0),
        noise: noise.noise(),
        seed: 1,
        ..Default::default()
    };
    let rows = [
        ("DS1", DS1, Acquisition::default()),
        ("DS2", DS2, Acquisition::default()),
        (
            "DS2 at 250 Hz, typical noise",
            DS2,
            device(NoiseLevel::Typical),
        ),
        (
            "DS2 at 250 Hz, strong noise",
            DS2,
            device(NoiseLevel::Strong),
        ),
    ];
    let mut ceiling = None;
    println!("| records | median | max (record) | above twice DS1's max |");
    println!("|---|---|---|---|");
    for (what, records, acquisition) in rows {
        let mut values = vec![];
        for name in records.split(' ') {
            values.push((read(name, acquisition)?, name));
        }
        values.sort_by(|a, b| a.0.total_cmp(&b.0));
        let (max, worst) = values[values.len() - 1];
        let ceiling = *ceiling.get_or_insert(2.0 * max);
        let above = values.iter().filter(|v| v.0 > ceiling).count();
        println!(
            "| {what} | {:.4} | {max:.4} ({worst}) | {above} of {} |",
            values[values.len() / 2].0,
            values.len()
        );
    }
    Ok(())
}
