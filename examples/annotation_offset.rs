//! Where each record's beat annotations sit against the QRS detector's peaks: the median of
//! (detected peak − annotation) over its matched beats, in ms, per record, for DS1 and DS2 at
//! MLII and at the second lead, and with the annotations moved 40 ms either way. The
//! measurement behind `BeatPositions::Registered` (how far a database's annotation convention
//! can sit from MIT-BIH's before a network trained at MIT-BIH's annotations needs them moved).
//!
//!     cargo run --release --example annotation_offset -- ../shared/data/mitdb

use std::path::Path;

use ecgwgpu::data::beats::stream;
use ecgwgpu::data::corpus::splits::{DS1, DS2};
use ecgwgpu::data::recording;
use ecgwgpu::data::signal::acquisition::Acquisition;

fn main() -> ecgwgpu::Result<()> {
    let dir = std::env::args()
        .nth(1)
        .unwrap_or("../shared/data/mitdb".into());
    let reads = [
        ("DS1", &DS1[..], "MLII", 0.0),
        ("DS1", &DS1[..], "V1,V2,V4,V5", 0.0),
        ("DS2", &DS2[..], "MLII", 0.0),
        ("DS2", &DS2[..], "V1,V2,V4,V5", 0.0),
        ("DS2", &DS2[..], "MLII", 40.0),
        ("DS2", &DS2[..], "MLII", -40.0),
    ];
    for (set, records, lead, shift) in reads {
        let acquisition = Acquisition {
            annotation_shift_ms: shift,
            ..Default::default()
        };
        let mut medians = vec![];
        for name in records {
            let Ok(rec) = recording::open(&Path::new(&dir).join(name), lead, false)? else {
                continue;
            };
            let mut rec = acquisition.apply(rec)?;
            let fs = rec.lead.fs();
            let Some(offset) = stream::annotation_offset(&mut rec)? else {
                continue;
            };
            medians.push((name.to_string(), offset as f64 * 1000.0 / fs));
        }
        let mut sorted: Vec<f64> = medians.iter().map(|m| m.1).collect();
        sorted.sort_by(f64::total_cmp);
        println!(
            "{set} {lead} shift {shift} ms: median {:.1} ms, range {:.1} .. {:.1}",
            sorted[sorted.len() / 2],
            sorted[0],
            sorted[sorted.len() - 1]
        );
        let line: Vec<String> = medians.iter().map(|(n, m)| format!("{n}:{m:.0}")).collect();
        println!("  {}", line.join(" "));
    }
    Ok(())
}
