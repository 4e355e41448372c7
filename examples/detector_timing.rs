//! Where the QRS detector puts each beat against the reference annotation, by class, for DS1
//! and DS2 as recorded and as a 250-Hz device in ambulatory noise would have taken it: the measurement
//! behind the strong-noise row of the cross-database table (is V lost to the detector's timing,
//! or to the noise in the beat itself?).
//!
//!     cargo run --release --example detector_timing -- ../shared/data/mitdb

use std::path::Path;

use ecgwgpu::data::corpus::splits::{DS1, DS2};
use ecgwgpu::data::formats::aami::AamiClass;
use ecgwgpu::data::recording;
use ecgwgpu::data::signal::acquisition::{Acquisition, NoiseLevel};
use ecgwgpu::data::signal::qrs;

fn main() -> ecgwgpu::Result<()> {
    let dir = std::env::args()
        .nth(1)
        .unwrap_or("../shared/data/mitdb".into());
    let strong = Acquisition {
        rate: Some(250.0),
        noise: NoiseLevel::Strong.noise(),
        seed: 1,
        ..Default::default()
    };
    let reads = [
        ("DS1", &DS1[..], "as recorded", Acquisition::default()),
        ("DS1", &DS1[..], "250 Hz, strong noise", strong),
        ("DS2", &DS2[..], "as recorded", Acquisition::default()),
        ("DS2", &DS2[..], "250 Hz, strong noise", strong),
    ];
    for (set, records, what, acquisition) in reads {
        // per class: |offset| in ms of each matched beat, and beats missed
        let mut offsets: Vec<Vec<f64>> = vec![vec![]; 5];
        let mut missed = [0usize; 5];
        for name in records {
            let Ok(rec) = recording::open(&Path::new(&dir).join(name), "MLII", false)? else {
                continue;
            };
            let mut rec = acquisition.apply(rec)?;
            let fs = rec.lead.fs();
            let signal = rec.lead.read(0..rec.lead.len())?;
            let detected = qrs::detect(&signal, fs);
            let window = (qrs::MATCH_WINDOW_S * fs).round() as i64;
            for a in rec.annotations.take().unwrap_or_default() {
                let Some(class) = AamiClass::from_code(a.code) else {
                    continue;
                };
                let r = a.sample as i64;
                let k = detected.partition_point(|&d| (d as i64) < r);
                let nearest = [k.wrapping_sub(1), k]
                    .into_iter()
                    .filter_map(|i| detected.get(i))
                    .map(|&d| d as i64 - r)
                    .min_by_key(|o| o.abs());
                match nearest {
                    Some(o) if o.abs() <= window => {
                        offsets[class.label() as usize].push(o as f64 * 1000.0 / fs)
                    }
                    _ => missed[class.label() as usize] += 1,
                }
            }
        }
        println!("{set}, MLII, {what}: detected minus reference R peak (ms)");
        println!("class  matched  missed  median  |off|>=24ms  |off|>=48ms");
        for (c, name) in ["N", "S", "V", "F", "Q"].iter().enumerate() {
            let o = &mut offsets[c];
            if o.is_empty() {
                continue;
            }
            o.sort_by(f64::total_cmp);
            let share =
                |ms: f64| o.iter().filter(|v| v.abs() >= ms).count() as f64 / o.len() as f64;
            println!(
                "{name:5}  {:7}  {:6}  {:6.1}  {:10.3}  {:10.3}",
                o.len(),
                missed[c],
                o[o.len() / 2],
                share(24.0),
                share(48.0)
            );
        }
    }
    Ok(())
}
