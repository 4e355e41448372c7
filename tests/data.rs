//! The data pipeline: reader values, class counts, extraction, splits, augmentation, CSV, and
//! every kind of bad input giving an error that names the file and the position.

mod common;

use common::embedded_dir;

use std::path::{Path, PathBuf};

use common::{external_data, scratch};

use ecgwgpu::data::beats::{BeatMode, BEAT_LEN};
use ecgwgpu::data::corpus::augment;
use ecgwgpu::data::corpus::csv;
use ecgwgpu::data::corpus::dataset::{annotation_counts, detection_scores, load_dir, LoadOptions};
use ecgwgpu::data::corpus::splits::{self, SplitKind, DS1, DS2};
use ecgwgpu::data::formats::aami::AamiClass;
use ecgwgpu::data::formats::annotation::{self, Annotation};
use ecgwgpu::data::formats::wfdb::{Header, Record};
use ecgwgpu::data::signal::qrs;
use ecgwgpu::data::signal::resample::resample;
use ecgwgpu::rng::Rng;
use ecgwgpu::Error;

/// The full MIT-BIH database: $ECGWGPU_MITDB, or `../shared/data/mitdb` beside the checkout.
fn full_mitdb() -> PathBuf {
    external_data(
        "the full MIT-BIH database",
        "ECGWGPU_MITDB",
        "../shared/data/mitdb",
        "100.hea",
    )
}

/// Copies record `name` of the embedded subset into `dir`.
fn copy_record(dir: &Path, name: &str) {
    for ext in ["hea", "dat", "atr"] {
        std::fs::copy(
            embedded_dir().join(format!("{name}.{ext}")),
            dir.join(format!("{name}.{ext}")),
        )
        .unwrap();
    }
}

fn data_error(e: Error) -> (String, String, String) {
    match e {
        Error::Data { file, at, what } => (file, at, what),
        other => panic!("expected a data error, got {other:?}"),
    }
}

#[test]
#[ignore = "needs the full MIT-BIH database ($ECGWGPU_MITDB or ../shared/data/mitdb)"]
fn record_100_matches_known_values() {
    let dir = full_mitdb();
    let r = Record::read(&dir.join("100"), None).unwrap();
    let mlii = r.header.signal_index("MLII").unwrap();
    assert_eq!(mlii, 0);
    let s = &r.header.signals[0];
    assert_eq!(
        (s.format, s.gain, s.baseline, s.adc_resolution),
        (212, 200.0, 1024, 11)
    );
    assert_eq!(r.adc[0][0], 995);
    assert!((r.physical(0)[0] - (-0.145)).abs() < 1e-6);
    assert_eq!(r.adc[0].len(), 650_000);
    assert_eq!(
        r.header.comments,
        vec!["69 M 1085 1629 x1", "Aldomet, Inderal"]
    );
    // Record 114 has MLII second: picked by name, not position.
    assert_eq!(
        Header::read(&dir.join("114.hea"))
            .unwrap()
            .signal_index("MLII"),
        Some(1)
    );
    // The first annotations of 100: a rhythm label "(N" at 18, then normal beats.
    let a = annotation::read(&dir.join("100.atr")).unwrap();
    assert_eq!(
        (
            a[0].sample,
            annotation::mnemonic(a[0].code),
            a[0].aux.as_deref()
        ),
        (18, '+', Some("(N"))
    );
    let beats: Vec<(u64, char)> = a[1..4]
        .iter()
        .map(|a| (a.sample, annotation::mnemonic(a.code)))
        .collect();
    assert_eq!(beats, vec![(77, 'N'), (370, 'N'), (662, 'N')]);
}

#[test]
#[ignore = "needs the full MIT-BIH database ($ECGWGPU_MITDB or ../shared/data/mitdb)"]
fn full_database_class_counts() {
    let dir = full_mitdb();
    let mut total = [0usize; 5];
    let (counted, unread) = annotation_counts(&dir).unwrap();
    assert!(unread.is_empty(), "{unread:?}");
    for (_, counts) in counted {
        total.iter_mut().zip(counts).for_each(|(t, c)| *t += c);
    }
    assert_eq!(total, [90_631, 2_781, 7_236, 803, 8_043]);
    assert_eq!(total.iter().sum::<usize>(), 109_494);
}

/// header(5): the initial-value field is a signal's first sample and the checksum field the
/// 16-bit sum of all its samples (written signed by MIT-BIH, unsigned by PTB-XL).
fn assert_header_checks(r: &Record, name: &str) {
    for (s, samples) in r.header.signals.iter().zip(&r.adc) {
        assert_eq!(
            Some(samples[0]),
            s.initial_value,
            "{name} {}",
            s.description
        );
        let sum = samples.iter().fold(0i32, |acc, &v| acc.wrapping_add(v)) as u16;
        assert_eq!(
            Some(sum),
            s.checksum.map(|c| c as u16),
            "{name} {}",
            s.description
        );
    }
}

#[test]
fn signals_match_header_initial_values_and_checksums() {
    // header(5): the initial-value field is the first sample and the checksum field is the
    // 16-bit sum of all samples — an end-to-end check of the format-212 decoder.
    for name in ["107", "208", "209", "213", "232"] {
        let r = Record::read(&embedded_dir().join(name), None).unwrap();
        assert_header_checks(&r, name);
    }
}

#[test]
fn format_16_records_match_their_checksums() {
    // PTB-XL (100 Hz, 12 leads, format 16, gain written as `1000.0(0)/mV`).
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("data/ptbxl/records100/00000");
    for name in ["00001_lr", "00002_lr", "00010_lr"] {
        let r = Record::read(&dir.join(name), None).unwrap();
        assert_eq!(
            (r.header.fs, r.header.signals.len(), r.adc[1].len()),
            (100.0, 12, 1000)
        );
        assert_eq!(
            (r.header.signals[1].gain, r.header.signals[1].baseline),
            (1000.0, 0)
        );
        assert_eq!(r.header.signal_index("II"), Some(1));
        assert_header_checks(&r, name);
    }
}

#[test]
fn formats_16_61_and_80_decode_interleaved_signals() {
    let dir = scratch("formats");
    let a: [i32; 4] = [-300, 0, 127, -5];
    let b: [i32; 4] = [7, -128, 3000, 1];
    let interleaved = |f: &dyn Fn(i32) -> Vec<u8>| -> Vec<u8> {
        a.iter()
            .zip(&b)
            .flat_map(|(x, y)| [f(*x), f(*y)].concat())
            .collect()
    };
    let cases = [
        (
            16,
            interleaved(&|v| (v as i16).to_le_bytes().to_vec()),
            a,
            b,
        ),
        (
            61,
            interleaved(&|v| (v as i16).to_be_bytes().to_vec()),
            a,
            b,
        ),
        // Format 80 is 8-bit offset binary: values are clipped to -128..127 here.
        (
            80,
            interleaved(&|v| vec![(v.clamp(-128, 127) + 128) as u8]),
            [-128, 0, 127, -5],
            [7, -128, 127, 1],
        ),
    ];
    for (format, bytes, ea, eb) in cases {
        std::fs::write(dir.join("r.dat"), &bytes).unwrap();
        let header = format!(
            "r 2 250 4\nr.dat {format} 100(10)/mV 16 0 0 0 0 I\nr.dat {format} 50 16 0 0 0 0 II\n"
        );
        std::fs::write(dir.join("r.hea"), header).unwrap();
        let r = Record::read(&dir.join("r"), None).unwrap();
        assert_eq!(r.adc[0], ea, "format {format}, signal I");
        assert_eq!(r.adc[1], eb, "format {format}, signal II");
        assert_eq!(r.physical(0)[0], (ea[0] - 10) as f32 / 100.0);
        assert_eq!(r.physical(1)[1], eb[1] as f32 / 50.0);
    }
}

#[test]
fn embedded_subset_counts_and_extraction() {
    let counts: Vec<(String, [usize; 5])> = annotation_counts(&embedded_dir()).unwrap().0;
    let expected = [
        ("107", [0, 0, 59, 0, 2078]),
        ("208", [1586, 2, 992, 373, 2]),
        ("209", [2621, 383, 1, 0, 0]),
        ("213", [2641, 28, 220, 362, 0]),
        ("232", [398, 1382, 0, 0, 0]),
    ];
    for ((name, c), (en, ec)) in counts.iter().zip(expected) {
        assert_eq!((name.as_str(), *c), (en, ec));
    }
    for mode in BeatMode::ALL {
        let ds = load_dir(
            &embedded_dir(),
            &LoadOptions {
                mode,
                ..Default::default()
            },
        )
        .unwrap();
        let b = &ds.beats;
        assert_eq!(b.x.len(), b.len() * BEAT_LEN);
        assert!(
            b.x.iter().all(|v| (0.0..=1.0).contains(v)),
            "{mode:?}: beats must be in [0, 1]"
        );
        assert!(b.len() > 13_000, "{mode:?}: {} beats", b.len());
        assert_eq!(b.class_counts(5).iter().filter(|&&c| c > 0).count(), 5);
        // Each beat's label agrees with the annotation at its sample.
        let atr = annotation::read(&embedded_dir().join("208.atr")).unwrap();
        let i = b.record.iter().position(|r| r == "208").unwrap();
        let a = atr.iter().find(|a| a.sample == b.sample[i]).unwrap();
        assert_eq!(AamiClass::from_code(a.code).unwrap().label(), b.labels[i]);
    }
    // Kachuee mode keeps every annotated beat (centred drops a few at the record edges).
    let ds = load_dir(&embedded_dir(), &LoadOptions::default()).unwrap();
    assert_eq!(
        ds.beats.len(),
        13_128,
        "every annotated beat is kept in kachuee mode"
    );
}

/// Per-beat normalisation (`kachuee-beat`): a beat's input does not depend on how tall its
/// neighbours in the 10-s window are. A synthetic 125-Hz recording of identical beats, those
/// in the second half of the first window three times as tall: Kachuee's window min-max
/// shrinks the small ones, per-beat min-max gives every beat the same input.
#[test]
fn per_beat_normalisation_ignores_the_rest_of_the_window() {
    use ecgwgpu::data::beats::extract;
    let period = 100usize;
    let r_peaks: Vec<usize> = (0..25).map(|k| 50 + k * period).collect();
    let tall = |r: usize| if (650..1250).contains(&r) { 3.0 } else { 1.0 };
    let mut signal = vec![0.0f32; 2500];
    for &r in &r_peaks {
        for (i, v) in signal.iter_mut().enumerate() {
            let d = i as f32 - r as f32;
            let wave = (-(d / 2.0).powi(2)).exp() + 0.3 * (-((d - 30.0) / 8.0).powi(2)).exp()
                - 0.1 * (-((d + 4.0) / 1.5).powi(2)).exp();
            *v += tall(r) * wave;
        }
    }
    let annotations: Vec<Annotation> = r_peaks
        .iter()
        .map(|&r| Annotation::new(r as u64, AamiClass::N.code()))
        .collect();
    let cut = |mode| extract(&signal, 125.0, &annotations, mode, "synthetic");
    let (window, beat) = (cut(BeatMode::Kachuee), cut(BeatMode::KachueeBeat));
    assert_eq!((window.len(), beat.len()), (25, 25));
    // R peaks 150 (small) and 750 (tall): each followed by a beat of its own height
    let (small, big) = (1, 7);
    let peak = |b: &ecgwgpu::data::beats::Beats, i| b.beat(i).iter().cloned().fold(0.0, f32::max);
    assert!(
        peak(&window, small) < 0.5 * peak(&window, big),
        "kachuee: the small beat is shrunk by the tall ones ({} vs {})",
        peak(&window, small),
        peak(&window, big)
    );
    for (a, b) in beat.beat(small).iter().zip(beat.beat(big)) {
        assert!((a - b).abs() < 1e-5, "kachuee-beat: {a} vs {b}");
    }
    // every beat spans [0, 1] over its own samples (zero padding after them)
    for i in 0..beat.len() {
        let x = beat.beat(i);
        assert!((peak(&beat, i) - 1.0).abs() < 1e-6, "beat {i}");
        assert!(x.iter().all(|v| (0.0..=1.0).contains(v)), "beat {i}");
        assert_eq!(
            x[120..].iter().filter(|&&v| v != 0.0).count(),
            0,
            "beat {i}: 1.2 T long"
        );
    }
}

#[test]
fn splits_are_stratified_disjoint_and_reproducible() {
    let ds = load_dir(&embedded_dir(), &LoadOptions::default()).unwrap();
    let b = &ds.beats;
    let s = splits::split(b, SplitKind::Intra, 0.2, 0.1, 7);
    assert_eq!(s.train.len() + s.val.len() + s.test.len(), b.len());
    let mut all: Vec<usize> = s
        .train
        .iter()
        .chain(&s.val)
        .chain(&s.test)
        .copied()
        .collect();
    all.sort_unstable();
    all.dedup();
    assert_eq!(all.len(), b.len(), "no beat in two parts");
    let total = b.class_counts(5);
    for (part, frac) in [(&s.test, 0.2), (&s.val, 0.08)] {
        let counts = b.select(part).class_counts(5);
        for c in 0..5 {
            assert!(counts[c] > 0, "class {c} missing");
            let share = counts[c] as f64 / total[c] as f64;
            assert!((share - frac).abs() < 0.02, "class {c}: {share} vs {frac}");
        }
    }
    assert_eq!(s, splits::split(b, SplitKind::Intra, 0.2, 0.1, 7));
    assert_ne!(s, splits::split(b, SplitKind::Intra, 0.2, 0.1, 8));

    let inter = splits::split(b, SplitKind::Inter, 0.2, 0.1, 7);
    for &i in inter.train.iter().chain(&inter.val) {
        assert!(
            DS1.contains(&b.record[i].as_str()),
            "train beat from {}",
            b.record[i]
        );
    }
    for &i in &inter.test {
        assert!(
            DS2.contains(&b.record[i].as_str()),
            "test beat from {}",
            b.record[i]
        );
    }
    assert!(!inter.train.is_empty() && !inter.test.is_empty() && !inter.val.is_empty());
    // validation holds out whole patients: no record on both sides
    let records = |part: &[usize]| {
        let mut r: Vec<&str> = part.iter().map(|&i| b.record[i].as_str()).collect();
        r.sort_unstable();
        r.dedup();
        r
    };
    let (train_records, val_records) = (records(&inter.train), records(&inter.val));
    assert!(
        val_records.iter().all(|r| !train_records.contains(r)),
        "{val_records:?} vs {train_records:?}"
    );
    assert_eq!(inter, splits::split(b, SplitKind::Inter, 0.2, 0.1, 7));
    assert!(
        inter
            .train
            .iter()
            .chain(&inter.test)
            .all(|&i| b.record[i] != "107"),
        "paced record excluded"
    );
}

#[test]
fn inter_patient_lists_do_not_overlap() {
    for r in DS1 {
        assert!(!DS2.contains(&r) && !splits::PACED.contains(&r), "{r}");
    }
    assert!(DS2.iter().all(|r| !splits::PACED.contains(r)));
}

#[test]
fn augmentation_balances_minorities_only_and_is_seeded() {
    let ds = load_dir(&embedded_dir(), &LoadOptions::default()).unwrap();
    let s = splits::split(&ds.beats, SplitKind::Intra, 0.2, 0.1, 1);
    let train = ds.beats.select(&s.train);
    let before = train.class_counts(5);
    let out = augment::balance(&train, 3000, 5, 9);
    let after = out.class_counts(5);
    for c in 0..5 {
        assert_eq!(after[c], before[c].max(3000), "class {c}");
    }
    assert_eq!(
        &out.x[..train.x.len()],
        &train.x[..],
        "originals come first, unchanged"
    );
    assert!(out.x.iter().all(|v| (0.0..=1.0).contains(v)));
    let new = &out.x[train.x.len()..];
    assert!(
        new.chunks(BEAT_LEN)
            .all(|b| train.x.chunks(BEAT_LEN).all(|o| o != b)),
        "augmented beats are new"
    );
    assert_eq!(out, augment::balance(&train, 3000, 5, 9));
    assert_ne!(out, augment::balance(&train, 3000, 5, 10));
}

#[test]
fn resampling_preserves_in_band_tones_and_removes_aliases() {
    let tone = |f: f64, fs: f64, n: usize| -> Vec<f32> {
        (0..n)
            .map(|i| (std::f64::consts::TAU * f * i as f64 / fs).sin() as f32)
            .collect()
    };
    let rms =
        |x: &[f32]| (x.iter().map(|v| f64::from(*v).powi(2)).sum::<f64>() / x.len() as f64).sqrt();
    for (fs_in, n) in [(360.0, 7200), (100.0, 2000), (1000.0, 20_000)] {
        let y = resample(&tone(10.0, fs_in, n), fs_in, 125.0);
        assert_eq!(y.len(), (n as f64 * 125.0 / fs_in).ceil() as usize);
        let mid = &y[y.len() / 4..3 * y.len() / 4];
        let expected = tone(10.0, 125.0, y.len());
        let err: f64 = mid
            .iter()
            .zip(&expected[y.len() / 4..])
            .map(|(a, b)| f64::from(a - b).abs())
            .fold(0.0, f64::max);
        assert!(err < 0.01, "{fs_in} Hz: 10 Hz tone off by {err}");
        assert!((rms(mid) - 0.5f64.sqrt()).abs() < 0.01);
    }
    // 100 Hz is above 125 Hz's Nyquist (62.5): it must not fold back as a 25 Hz alias.
    let y = resample(&tone(100.0, 360.0, 7200), 360.0, 125.0);
    assert!(
        rms(&y[100..y.len() - 100]) < 0.01,
        "alias rms {}",
        rms(&y[100..y.len() - 100])
    );
}

#[test]
fn annotations_round_trip_through_the_writer() {
    let mut anns = vec![
        Annotation::new(5, 1),
        Annotation::new(400, 5),
        Annotation::new(100_000, 8),
    ];
    anns[1].aux = Some("(VT".into());
    anns[1].num = 3;
    anns[2].subtype = 2;
    anns[2].channel = 1;
    anns[2].aux = Some("(AFIB1".into());
    let bytes = annotation::encode(&anns);
    let back = annotation::parse(&bytes, Path::new("mem.atr")).unwrap();
    assert_eq!(back, anns);
    // And a real file re-encodes to annotations identical to the original.
    let real = annotation::read(&embedded_dir().join("208.atr")).unwrap();
    assert_eq!(
        annotation::parse(&annotation::encode(&real), Path::new("x")).unwrap(),
        real
    );
}

#[test]
fn csv_round_trip_and_bad_rows() {
    let dir = scratch("csv");
    let ds = load_dir(
        &embedded_dir(),
        &LoadOptions {
            records: Some(vec!["232".into()]),
            ..Default::default()
        },
    )
    .unwrap();
    let some = ds.beats.select(&(0..50).collect::<Vec<_>>());
    let path = dir.join("beats.csv");
    csv::write(&path, &some, false).unwrap();
    let back = csv::read(&path).unwrap();
    assert_eq!(back.labels, some.labels);
    assert_eq!(back.x, some.x, "values survive the text round trip exactly");
    assert!(back
        .rr
        .iter()
        .all(|r| *r == ecgwgpu::data::beats::rr::NOMINAL));
    // with the R–R columns between the samples and the label
    csv::write(&path, &some, true).unwrap();
    let back = csv::read(&path).unwrap();
    assert_eq!(
        (back.labels, back.x, back.rr),
        (some.labels.clone(), some.x.clone(), some.rr.clone())
    );
    let line = |n: usize| vec!["0.5"; n].join(",");
    // rows written with the first seven or eight R–R features get the nominal rest
    for kept in [7, 8] {
        std::fs::write(&path, format!("{},1\n", line(187 + kept))).unwrap();
        let rr = csv::read(&path).unwrap().rr[0];
        let nominal = ecgwgpu::data::beats::rr::NOMINAL;
        assert_eq!(rr[..kept], [0.5; 8][..kept]);
        assert_eq!(rr[kept..], nominal[kept..]);
    }
    let cases = [
        (
            format!("{},1\n{},2\n", line(187), line(186)),
            "row 2",
            "columns",
        ),
        (
            format!("{},1\n{},x,0\n", line(187), line(100)),
            "row 2, column 101",
            "not a number",
        ),
        (
            format!("{},1.5\n", line(187)),
            "row 1, column 188",
            "class index",
        ),
        (
            format!("{},1,0\n", line(187)),
            "row 1",
            "189 columns, expected 188",
        ),
        (
            format!("{},1,0\n", line(196)),
            "row 1, column 198",
            "too many columns",
        ),
    ];
    for (text, at, what) in cases {
        std::fs::write(&path, text).unwrap();
        let (file, got_at, got_what) = data_error(csv::read(&path).unwrap_err());
        assert!(file.ends_with("beats.csv"));
        assert_eq!(got_at, at);
        assert!(got_what.contains(what), "{got_what}");
    }
}

#[test]
fn bad_records_give_errors_naming_file_and_position() {
    let dir = scratch("bad");
    copy_record(&dir, "208");
    // Truncated .dat
    let dat = std::fs::read(dir.join("208.dat")).unwrap();
    std::fs::write(dir.join("208.dat"), &dat[..dat.len() - 1000]).unwrap();
    let (file, at, what) = data_error(Record::read(&dir.join("208"), None).unwrap_err());
    assert!(
        file.ends_with("208.dat") && at.starts_with("byte") && what.contains("ends early"),
        "{at}: {what}"
    );
    std::fs::write(dir.join("208.dat"), &dat).unwrap();

    let header = std::fs::read_to_string(embedded_dir().join("208.hea")).unwrap();
    let bad_headers = [
        (
            header.replacen("208 2 360", "208 3 360", 1),
            "end of header",
            "declares 3 signals",
        ),
        (
            header.replacen("212", "311", 1),
            "line 2, field 2",
            "unsupported signal format 311",
        ),
        (
            header.replacen("360", "fast", 1),
            "line 1, field 3",
            "sampling frequency",
        ),
        (
            header.replacen(" 200 ", " 2x0 ", 1),
            "line 2, field 3",
            "ADC gain",
        ),
        (String::new(), "line 1", "empty header"),
    ];
    for (text, at, what) in bad_headers {
        std::fs::write(dir.join("208.hea"), text).unwrap();
        let (file, got_at, got_what) = data_error(Header::read(&dir.join("208.hea")).unwrap_err());
        assert!(file.ends_with("208.hea"));
        assert_eq!(got_at, at);
        assert!(got_what.contains(what), "{got_what}");
    }
    std::fs::write(dir.join("208.hea"), &header).unwrap();

    // A record that cannot be read is skipped and reported, never sinks the run; --strict
    // makes it an error. A second, good record keeps its beats either way.
    copy_record(&dir, "209");
    let good = load_dir(&dir, &LoadOptions::default()).unwrap();
    assert!(
        good.skipped.is_empty() && good.warnings.is_empty(),
        "{:?}",
        good.warnings
    );
    let strict = LoadOptions {
        strict: true,
        ..Default::default()
    };
    let atr = std::fs::read(dir.join("208.atr")).unwrap();
    std::fs::write(dir.join("208.atr"), &atr[..1001]).unwrap();
    let ds = load_dir(&dir, &LoadOptions::default()).unwrap();
    assert_eq!(ds.skipped.len(), 1);
    let (name, reason) = &ds.skipped[0];
    assert!(
        name == "208" && reason.contains("208.atr") && reason.contains("byte 1000"),
        "{reason}"
    );
    assert!(ds
        .warnings
        .iter()
        .any(|w| w.starts_with("record 208 skipped:")));
    assert!(ds
        .warnings
        .contains(&"1 of 2 records used; skipped: 208".to_string()));
    assert_eq!(ds.per_record.len(), 1);
    assert_eq!(ds.beats.len(), good.per_record[1].1.iter().sum::<usize>());
    let (_, at, what) = data_error(load_dir(&dir, &strict).unwrap_err());
    assert_eq!(at, "byte 1000");
    assert!(what.contains("middle of a 16-bit word"), "{what}");

    // Annotations at the signal's end (650,000 samples) and past it: only their beats go,
    // counted in the summary; the rest of the record is used.
    let mut kept = annotation::parse(&atr, &dir.join("208.atr")).unwrap();
    let total = kept.len();
    kept.push(Annotation::new(650_000, 1));
    kept.push(Annotation::new(700_000, 1));
    std::fs::write(dir.join("208.atr"), annotation::encode(&kept)).unwrap();
    let ds = load_dir(&dir, &LoadOptions::default()).unwrap();
    assert_eq!(ds.dropped_annotations, vec![("208".to_string(), 2)]);
    // every beat annotation is accounted for
    assert_eq!(
        ds.beats.len() + ds.beats_at_edges + ds.beats_past_end,
        ds.beat_annotations
    );
    let in_files: usize = ["208", "209"]
        .iter()
        .map(|n| {
            annotation::read(&dir.join(format!("{n}.atr")))
                .unwrap()
                .iter()
                .filter(|a| AamiClass::from_code(a.code).is_some())
                .count()
        })
        .sum();
    assert_eq!(ds.beat_annotations, in_files);
    assert_eq!(ds.beats_past_end, 2);
    assert!(
        ds.summary().starts_with(&format!(
            "2 of 2 records used: {} beats from {in_files} beat annotations",
            ds.beats.len()
        )),
        "{}",
        ds.summary()
    );
    assert!(ds.skipped.is_empty());
    assert_eq!(ds.per_record, good.per_record, "every other beat kept");
    assert!(
        ds.warnings
            == ["2 annotations past the end of the signal dropped with their beats: 208 (2)"],
        "{:?}",
        ds.warnings
    );
    assert_eq!(
        kept.len(),
        total + 2,
        "kept + dropped = annotations in the file"
    );
    let (file, at, what) = data_error(load_dir(&dir, &strict).unwrap_err());
    assert!(
        file.ends_with("208.atr") && at == "annotations" && what.contains("2 past the end"),
        "{at}: {what}"
    );
    std::fs::write(dir.join("208.atr"), &atr).unwrap();

    // Missing files: skipped with the file named; an error naming it under --strict.
    std::fs::remove_file(dir.join("208.atr")).unwrap();
    let ds = load_dir(&dir, &LoadOptions::default()).unwrap();
    assert!(ds.skipped[0].1.contains("208.atr"), "{:?}", ds.skipped);
    let (file, _, what) = data_error(load_dir(&dir, &strict).unwrap_err());
    assert!(
        file.ends_with("208.atr") && what.starts_with("missing"),
        "{file}: {what}"
    );
    // `data stats`' reference table leaves it out with the reason, and goes on
    let (counted, unread) = annotation_counts(&dir).unwrap();
    assert!(
        unread.len() == 1 && unread[0].0 == "208" && unread[0].1.contains("208.atr"),
        "{counted:?} {unread:?}"
    );
    // No MLII: skipped with one line per cause, or the first lead with --fallback-lead, or
    // picked from a preference list.
    std::fs::write(dir.join("208.atr"), &atr).unwrap();
    std::fs::write(dir.join("208.hea"), header.replace("MLII", "V9")).unwrap();
    let ds = load_dir(&dir, &LoadOptions::default()).unwrap();
    assert_eq!(ds.per_record.len(), 1);
    assert!(
        ds.warnings[0].starts_with("lead MLII missing in 1 record (208): skipped"),
        "{:?}",
        ds.warnings
    );
    assert!(load_dir(&dir, &strict).is_err());
    let ds = load_dir(
        &dir,
        &LoadOptions {
            fallback_to_first: true,
            ..Default::default()
        },
    )
    .unwrap();
    assert!(
        ds.per_record.len() == 2
            && ds.warnings == ["lead MLII missing in 1 record (208), used instead: V9"],
        "{:?}",
        ds.warnings
    );
    let ds = load_dir(
        &dir,
        &LoadOptions {
            lead: "MLII,V9".into(),
            ..Default::default()
        },
    )
    .unwrap();
    assert!(
        ds.per_record.len() == 2 && ds.warnings.is_empty(),
        "{:?}",
        ds.warnings
    );
    std::fs::remove_file(dir.join("209.hea")).unwrap();
    // Empty directory.
    let empty = scratch("empty");
    let (_, at, what) = data_error(load_dir(&empty, &LoadOptions::default()).unwrap_err());
    assert_eq!(at, "directory");
    assert!(what.contains("no records found"));
}

#[test]
fn fuzzed_headers_annotations_and_csv_never_panic() {
    let mut rng = Rng::new(99);
    let header = std::fs::read_to_string(embedded_dir().join("208.hea")).unwrap();
    let atr = std::fs::read(embedded_dir().join("208.atr")).unwrap();
    let csv_row = format!("{},1\n", vec!["0.25"; 187].join(","));
    let dir = scratch("fuzz");
    let junk = b"0123456789 -+./()x:#\n\tabcMLII\xff";
    let mutate = |bytes: &mut Vec<u8>, rng: &mut Rng| {
        for _ in 0..1 + rng.below(6) {
            if bytes.is_empty() {
                bytes.push(b'0');
            }
            let i = rng.below(bytes.len());
            match rng.below(4) {
                0 => bytes[i] = junk[rng.below(junk.len())],
                1 => bytes.truncate(i),
                2 => bytes.insert(i, junk[rng.below(junk.len())]),
                _ => {
                    bytes.remove(i);
                }
            }
        }
    };
    let (mut header_errors, mut atr_errors, mut csv_errors) = (0, 0, 0);
    for _ in 0..400 {
        let mut h = header.clone().into_bytes();
        mutate(&mut h, &mut rng);
        header_errors +=
            usize::from(Header::parse(&String::from_utf8_lossy(&h), Path::new("f.hea")).is_err());
        let mut a = atr[..600].to_vec();
        mutate(&mut a, &mut rng);
        atr_errors += usize::from(annotation::parse(&a, Path::new("f.atr")).is_err());
        let mut c = csv_row.clone().into_bytes();
        mutate(&mut c, &mut rng);
        std::fs::write(dir.join("f.csv"), &c).unwrap();
        csv_errors += usize::from(csv::read(&dir.join("f.csv")).is_err());
    }
    // Most corruptions must be caught (some are harmless, e.g. a digit changed in a comment).
    assert!(
        header_errors > 100 && atr_errors > 50 && csv_errors > 200,
        "{header_errors} {atr_errors} {csv_errors}"
    );
    // Whole records with corrupted headers: errors or data, never a panic.
    copy_record(&dir, "232");
    for _ in 0..40 {
        let mut h = std::fs::read(embedded_dir().join("232.hea")).unwrap();
        mutate(&mut h, &mut rng);
        std::fs::write(dir.join("232.hea"), &h).unwrap();
        let _ = Record::read(&dir.join("232"), None);
    }
}

/// Gaussian "QRS" pulses of alternating sign every `period` s on a slow baseline wander, at `fs`.
fn synthetic_ecg(fs: f64, seconds: f64, period: f64) -> (Vec<f32>, Vec<usize>) {
    let n = (fs * seconds) as usize;
    let peaks: Vec<usize> = (1..)
        .map(|k| (k as f64 * period * fs) as usize)
        .take_while(|&p| p + (0.5 * fs) as usize <= n)
        .collect();
    let mut x: Vec<f32> = (0..n)
        .map(|i| (0.3 * (2.0 * std::f64::consts::PI * 0.3 * i as f64 / fs).sin()) as f32)
        .collect();
    for (k, &p) in peaks.iter().enumerate() {
        let sign = if k % 3 == 2 { -1.0 } else { 1.0 };
        for (i, v) in x.iter_mut().enumerate() {
            let t = (i as f64 - p as f64) / fs;
            // A 20 ms-wide QRS and a broad T wave 250 ms later.
            *v += (sign * (-(t / 0.02).powi(2)).exp() + 0.25 * (-((t - 0.25) / 0.06).powi(2)).exp())
                as f32;
        }
    }
    (x, peaks)
}

#[test]
fn qrs_detector_works_at_any_sampling_rate_and_on_flat_lines() {
    for fs in [100.0, 125.0, 360.0, 1000.0] {
        let (x, peaks) = synthetic_ecg(fs, 30.0, 0.8);
        let found = qrs::detect(&x, fs);
        let m = qrs::match_beats(&peaks, &found, (0.05 * fs) as usize);
        assert_eq!(
            (m.false_negatives, m.false_positives),
            (0, 0),
            "{fs} Hz: {m:?}"
        );
    }
    assert!(qrs::detect(&vec![0.0; 5000], 360.0).is_empty(), "flat line");
    assert!(
        qrs::detect(&[1.0; 10], 360.0).is_empty(),
        "shorter than a second"
    );
}

#[test]
fn qrs_matching_counts_each_beat_once() {
    let m = qrs::match_beats(&[100, 400, 700, 1000], &[90, 95, 420, 1300], 30);
    assert_eq!(
        m,
        qrs::Matches {
            true_positives: 2,
            false_negatives: 2,
            false_positives: 2
        }
    );
    assert_eq!(m.sensitivity(), 0.5);
    assert_eq!(m.positive_predictivity(), 0.5);
}

/// Scores the QRS detector against every record's reference beats in `dir`; asserts that the
/// pooled Se and +P both exceed `floor` and returns how many records were scored.
fn assert_detector_scores(dir: &Path, floor: f64) -> usize {
    let opts = LoadOptions {
        fallback_to_first: true,
        ..Default::default()
    };
    let (scores, _) = detection_scores(dir, &opts).unwrap();
    let mut total = qrs::Matches::default();
    for (_, m) in &scores {
        total.add(*m);
    }
    assert!(
        total.sensitivity() > floor && total.positive_predictivity() > floor,
        "{}: {total:?} over {} records",
        dir.display(),
        scores.len()
    );
    scores.len()
}

#[test]
fn qrs_detector_matches_reference_annotations() {
    assert_eq!(assert_detector_scores(&embedded_dir(), 0.99), 5);
}

#[test]
#[ignore = "needs the full MIT-BIH database ($ECGWGPU_MITDB or ../shared/data/mitdb)"]
fn qrs_detector_matches_all_48_records() {
    // Se 99.39 %, +P 99.69 % when this was written.
    assert_eq!(assert_detector_scores(&full_mitdb(), 0.99), 48);
}

/// Writes a one-signal format-16 record: `samples` in the .dat, `header_samples` in the header,
/// the given gain field (e.g. `200`, `0`, `200(5000)`), and beat annotations (code 1, N).
fn edge_record(dir: &Path, samples: &[i16], header_samples: usize, gain: &str, beats: &[u64]) {
    let header = format!("edge 1 360 {header_samples}\nedge.dat 16 {gain} 11 1024 0 0 0 MLII\n");
    std::fs::write(dir.join("edge.hea"), header).unwrap();
    let dat: Vec<u8> = samples.iter().flat_map(|v| v.to_le_bytes()).collect();
    std::fs::write(dir.join("edge.dat"), dat).unwrap();
    let annotations: Vec<Annotation> = beats.iter().map(|&s| Annotation::new(s, 1)).collect();
    std::fs::write(dir.join("edge.atr"), annotation::encode(&annotations)).unwrap();
}

/// Valid files with edge values: each is read, or skipped with a message naming the file, and
/// every beat annotation is accounted for.
#[test]
fn edge_values_are_read_or_skipped_never_sink_the_run() {
    let dir = scratch("edges");
    let load = || load_dir(&dir, &LoadOptions::default()).unwrap();
    let adds_up = |ds: &ecgwgpu::data::corpus::dataset::Dataset| {
        assert_eq!(
            ds.beats.len() + ds.beats_at_edges + ds.beats_past_end,
            ds.beat_annotations,
            "{}",
            ds.summary()
        );
    };
    // A beat every 0.8 s for 10 s; annotations at 0, at the last sample and past the end.
    let wave: Vec<i16> = (0..3600)
        .map(|i| 1024 + if i % 288 == 100 { 400 } else { (i % 7) as i16 })
        .collect();
    let peaks: Vec<u64> = (0..12).map(|k| 100 + 288 * k).collect();
    let mut beats = vec![0, 3599, 3600, 5000];
    beats.extend(&peaks);
    beats.sort_unstable();
    edge_record(&dir, &wave, 3600, "200", &beats);
    let ds = load();
    assert!(ds.skipped.is_empty(), "{:?}", ds.skipped);
    assert_eq!(ds.beats_past_end, 2, "3600 and 5000 lie past 3,600 samples");
    assert_eq!(ds.beat_annotations, beats.len());
    adds_up(&ds);

    // The header promises more samples than the .dat holds: skipped, file and byte named.
    edge_record(&dir, &wave[..1800], 3600, "200", &peaks);
    let ds = load();
    let reason = &ds.skipped[0].1;
    assert!(
        reason.contains("edge.dat")
            && reason.contains("byte 3600")
            && reason.contains("ends early"),
        "{reason}"
    );
    assert!(
        ds.summary().starts_with("0 of 1 records used"),
        "{}",
        ds.summary()
    );
    // Fewer: the header's count is read (as wfdb does) and the annotations past it dropped.
    edge_record(&dir, &wave, 1800, "200", &peaks);
    let ds = load();
    assert!(ds.skipped.is_empty());
    assert_eq!(
        ds.beats_past_end,
        peaks.iter().filter(|&&p| p >= 1800).count()
    );
    adds_up(&ds);

    // Gain 0 means uncalibrated: the default 200 adu/mV; a baseline outside the 11-bit range is
    // just an offset.
    edge_record(&dir, &wave, 3600, "0", &peaks);
    let r = Record::read(&dir.join("edge"), None).unwrap();
    assert_eq!(r.physical(0)[100], (1424.0 - 1024.0) / 200.0);
    edge_record(&dir, &wave, 3600, "200(5000)", &peaks);
    let r = Record::read(&dir.join("edge"), None).unwrap();
    assert_eq!(r.physical(0)[0], (1024.0 - 5000.0) / 200.0);
    let ds = load();
    assert!(ds.skipped.is_empty() && ds.beats.len() == peaks.len());
    assert!(ds.beats.x.iter().all(|v| v.is_finite()));

    // One sample, and none at all: no beat can be cut, nothing panics, all is counted.
    edge_record(&dir, &wave[..1], 1, "200", &[0]);
    let ds = load();
    assert!(ds.skipped.is_empty(), "{:?}", ds.skipped);
    assert_eq!(ds.beat_annotations, 1);
    adds_up(&ds);
    edge_record(&dir, &[], 0, "200", &[0, 5]);
    let ds = load();
    assert!(ds.skipped.is_empty(), "{:?}", ds.skipped);
    assert_eq!(ds.beats_past_end, 2);
    adds_up(&ds);
}

/// The first 10 s of record 208 as a third-party tool (pyedflib/EDFlib, tools/make_edf_fixture.py)
/// wrote them to EDF+, read by our reader: the WFDB samples and annotations exactly. Then the same
/// written by our writer, read back: the two files agree sample for sample.
#[test]
fn edf_reader_matches_wfdb_and_a_third_party_writer() {
    use ecgwgpu::data::formats::edf::{self, Edf, EdfSignal, SignalToWrite};
    let fixture = embedded_dir().join("../edf/208-10s-pyedflib.edf");
    let theirs = Edf::read(&fixture).unwrap();
    let labels: Vec<&str> = theirs
        .header
        .signals
        .iter()
        .map(|s| s.label.as_str())
        .collect();
    assert_eq!(labels, ["MLII", "V1", "EDF Annotations", "EDF Annotations"]);
    assert!(
        theirs.header.reserved.starts_with("EDF+C"),
        "{}",
        theirs.header.reserved
    );
    let wfdb_rec = Record::read(&embedded_dir().join("208"), None).unwrap();
    let reference = annotation::read(&embedded_dir().join("208.atr")).unwrap();
    let in_10s: Vec<&Annotation> = reference.iter().filter(|a| a.sample < 3600).collect();
    for i in 0..2 {
        assert_eq!(theirs.fs(i), 360.0);
        let adc: Vec<i16> = wfdb_rec.adc[i][..3600].iter().map(|&v| v as i16).collect();
        assert_eq!(theirs.digital[i], adc, "signal {i}: digital samples");
        let phys = theirs.physical(i);
        let wfdb_phys = wfdb_rec.physical(i);
        for (k, (a, b)) in phys.iter().zip(&wfdb_phys).enumerate() {
            assert!((a - b).abs() < 1e-6, "signal {i} sample {k}: {a} vs {b}");
        }
    }
    assert_eq!(theirs.annotations.len(), in_10s.len());
    for ((onset, text), a) in theirs.annotations.iter().zip(&in_10s) {
        assert!(
            (onset - a.sample as f64 / 360.0).abs() < 1e-4,
            "{onset} vs {}",
            a.sample
        );
        assert_eq!(text, &annotation::mnemonic(a.code).to_string());
    }
    assert_eq!(theirs.header.signal_index("V5,v1", false), Some(1));
    assert_eq!(theirs.header.signal_index("II", true), Some(0));
    assert_eq!(theirs.header.signal_index("II", false), None);

    let dir = scratch("edf");
    let ours_path = dir.join("208.edf");
    let to_write: Vec<SignalToWrite> = (0..2)
        .map(|i| SignalToWrite {
            signal: EdfSignal {
                samples_per_record: 360,
                ..theirs.header.signals[i].clone()
            },
            digital: &theirs.digital[i],
        })
        .collect();
    let annotations: Vec<(f64, String)> = in_10s
        .iter()
        .map(|a| {
            (
                a.sample as f64 / 360.0,
                annotation::mnemonic(a.code).to_string(),
            )
        })
        .collect();
    edf::write(&ours_path, "MIT-BIH_208", &to_write, &annotations).unwrap();
    let ours = Edf::read(&ours_path).unwrap();
    for i in 0..2 {
        assert_eq!(ours.digital[i], theirs.digital[i], "signal {i}");
        assert_eq!(ours.physical(i), theirs.physical(i), "signal {i}");
        assert_eq!(ours.fs(i), theirs.fs(i));
    }
    assert_eq!(ours.annotations.len(), theirs.annotations.len());
    for (a, b) in ours.annotations.iter().zip(&theirs.annotations) {
        assert!((a.0 - b.0).abs() < 1e-4 && a.1 == b.1, "{a:?} vs {b:?}");
    }

    // A whole record through `write_from_wfdb`: every sample and annotation comes back.
    let whole = dir.join("208-whole.edf");
    let written = edf::write_from_wfdb(&embedded_dir().join("208"), &whole).unwrap();
    assert_eq!(written, reference.len());
    let back = Edf::read(&whole).unwrap();
    for i in 0..2 {
        let adc: Vec<i16> = wfdb_rec.adc[i].iter().map(|&v| v as i16).collect();
        // EDF stores whole 1-s records: 650,000 samples become 1,806 records, the last padded
        assert_eq!(back.digital[i].len(), 650_160);
        let same = back.digital[i]
            .iter()
            .zip(&adc)
            .filter(|(a, b)| a == b)
            .count();
        assert_eq!(same, adc.len(), "signal {i}: samples equal to the record's");
        let (a, b) = (back.physical(i), wfdb_rec.physical(i));
        assert!(a.iter().zip(&b).all(|(x, y)| (x - y).abs() < 1e-6));
    }
    assert_eq!(back.annotations.len(), reference.len());

    // Header checks name the field; a short file names the data record.
    let bytes = std::fs::read(&fixture).unwrap();
    let mut bad = bytes.clone();
    bad[252..256].copy_from_slice(b"x   ");
    let (_, at, what) = data_error(Edf::parse(&bad, &fixture).unwrap_err());
    assert_eq!(at, "header field 'number of signals' (bytes 252-255)");
    assert!(what.contains("not a number"), "{what}");
    let mut bad = bytes.clone();
    bad[0] = b'9';
    let (_, at, _) = data_error(Edf::parse(&bad, &fixture).unwrap_err());
    assert!(at.contains("'version'"), "{at}");
    let (_, at, what) = data_error(Edf::parse(&bytes[..bytes.len() - 100], &fixture).unwrap_err());
    assert!(
        at == "data record 10" && what.contains("declares 10"),
        "{at}: {what}"
    );
    let mut bad = bytes.clone();
    // signal 1's digital maximum (after 4 signals' labels, transducers, dimensions, ...)
    let dmax = 256 + 4 * (16 + 80 + 8 + 8 + 8 + 8);
    bad[dmax..dmax + 8].copy_from_slice(b"-5000   ");
    let (_, at, what) = data_error(Edf::parse(&bad, &fixture).unwrap_err());
    assert!(
        at == "signal 1 (MLII) field 'digital maximum'" && what.contains("must exceed"),
        "{at}: {what}"
    );
}

/// R–R features against hand-computed values: a premature beat, the first and last beat, a gap
/// of 5.4 s (not a heartbeat interval), a one-beat record and an empty one.
#[test]
fn rr_features_match_hand_computed_values() {
    use ecgwgpu::data::beats::rr::{rr_features, NOMINAL_RR_S};
    // 100 Hz: intervals 1.0, 1.0, 0.6 (premature), 1.0, 1.0, gap 5.4, 1.0
    let peaks = [0u64, 100, 200, 260, 360, 460, 1000, 1100];
    let f = rr_features(&peaks, 100.0);
    let record = 5.6 / 6.0;
    let close = |got: f32, want: f64, what: &str| {
        assert!(
            (f64::from(got) - want).abs() < 1e-6,
            "{what}: {got} vs {want}"
        );
    };
    assert_eq!(f.len(), peaks.len());
    for b in &f {
        close(b[3], record, "record mean");
    }
    // first beat: no pre-RR, takes the post-RR; local mean over the next 5 intervals
    close(f[0][0], 1.0, "beat 0 pre");
    close(f[0][1], 1.0, "beat 0 post");
    close(f[0][2], 4.6 / 5.0, "beat 0 local");
    // the premature beat
    close(f[3][0], 0.6, "beat 3 pre");
    close(f[3][1], 1.0, "beat 3 post");
    close(f[3][4], 0.6 / record, "beat 3 pre ratio");
    close(f[3][5], 1.0 / record, "beat 3 post ratio");
    close(
        f[3][2],
        record,
        "beat 3 local (six usable intervals around it)",
    );
    // around the gap: each side takes the interval it has
    close(f[5][0], 1.0, "beat 5 pre");
    close(f[5][1], 1.0, "beat 5 post (gap after)");
    close(f[6][0], 1.0, "beat 6 pre (gap before)");
    // last beat: no post-RR, takes the pre-RR
    close(f[7][1], 1.0, "beat 7 post");
    close(
        f[7][2],
        3.6 / 4.0,
        "beat 7 local (its 5 intervals before, less the gap)",
    );

    // local irregularity: the median change between successive usable intervals of the window,
    // over the local mean. Beat 3's window: 1.0, 1.0, 0.6, 1.0, 1.0, gap, 1.0: changes 0, 0.4,
    // 0.4, 0 (none across the gap), median 0.2.
    close(f[3][7], 0.2 / record, "beat 3 irregularity");
    close(f[0][7], 0.2 / (4.6 / 5.0), "beat 0 irregularity");
    close(
        f[7][7],
        0.2 / (3.6 / 4.0),
        "beat 7 irregularity: changes 0.4 and 0",
    );
    // a regular rhythm has none; an irregular one, whatever its mean
    let regular: Vec<u64> = (0..30).map(|i| i * 100).collect();
    assert!(rr_features(&regular, 100.0).iter().all(|b| b[7] == 0.0));
    // every interval differs from the one before by 0.4 s or more
    let irregular: Vec<u64> = (0..30u64)
        .scan(0, |t, i| {
            *t += [60, 120][i as usize % 2] + i % 3 * 10;
            Some(*t)
        })
        .collect();
    assert!(rr_features(&irregular, 100.0).iter().all(|b| b[7] > 0.1));
    assert!(rr_features(&irregular, 100.0).iter().all(|b| b[8] > 0.1));

    // rhythm irregularity: the same over 30 intervals each side, over their mean. In the short
    // record every interval is in beat 3's window: the same changes, over the record's mean.
    close(f[3][8], 0.2 / record, "beat 3 rhythm irregularity");
    // pauses and early beats for six intervals in a regular rhythm: irregular in the local
    // window, not in the rhythm (the wide median passes over seven changes among fifty-nine)
    let mut disturbed: Vec<u64> = vec![0];
    for k in 0..100usize {
        let interval = [250, 60, 150, 60, 200, 60].get(k.wrapping_sub(50)).copied();
        disturbed.push(disturbed[k] + interval.unwrap_or(100));
    }
    let d = rr_features(&disturbed, 100.0);
    assert!(d[53][7] > 0.5, "local irregularity: {}", d[53][7]);
    assert_eq!(d[53][8], 0.0, "rhythm irregularity");

    let one = rr_features(&[500], 360.0);
    assert_eq!(one.len(), 1);
    for (k, &v) in one[0].iter().enumerate() {
        let want = match k {
            0..4 => NOMINAL_RR_S,
            7 | 8 => 0.0,
            _ => 1.0,
        };
        close(v, want, "one-beat record");
    }
    assert!(rr_features(&[], 360.0).is_empty());
}

/// Extraction carries each beat's R–R features from its record's beat annotations, selection and
/// augmentation keep them, and they tell premature beats apart: in record 232 (sinus
/// bradycardia with many atrial premature beats) S beats come early against the record's rhythm.
#[test]
fn extracted_beats_carry_their_rhythm() {
    use ecgwgpu::data::beats::rr::{rr_features, NOMINAL};
    let ds = load_dir(&embedded_dir(), &LoadOptions::default()).unwrap();
    let b = &ds.beats;
    assert_eq!(b.rr.len(), b.len());
    let mut positions: Vec<u64> = annotation::read(&embedded_dir().join("232.atr"))
        .unwrap()
        .iter()
        .filter(|a| AamiClass::from_code(a.code).is_some())
        .map(|a| a.sample)
        .collect();
    positions.sort_unstable();
    let expected = rr_features(&positions, 360.0);
    let mean_pre_ratio = |label: u32| {
        let v: Vec<f32> = (0..b.len())
            .filter(|&i| b.record[i] == "232" && b.labels[i] == label)
            .map(|i| {
                let k = positions.binary_search(&b.sample[i]).unwrap();
                assert_eq!(b.rr[i], expected[k], "beat at sample {}", b.sample[i]);
                b.rr[i][4]
            })
            .collect();
        v.iter().sum::<f32>() / v.len() as f32
    };
    let (n, s) = (mean_pre_ratio(0), mean_pre_ratio(1));
    assert!(s < 0.8 * n, "S pre-RR ratio {s} vs N {n}");
    let picked = b.select(&[5, 2]);
    assert_eq!(picked.rr, vec![b.rr[5], b.rr[2]]);
    let balanced = augment::balance(b, 3000, 5, 1);
    assert_eq!(balanced.rr.len(), balanced.len());
    // an augmented beat keeps the rhythm of the beat it was made from
    assert!(balanced.len() > b.len());
    assert!(balanced.rr[b.len()..]
        .iter()
        .take(200)
        .all(|r| *r != NOMINAL && b.rr.contains(r)));
}

/// Streamed beat cutting equals whole-record extraction bit for bit: every embedded record, both
/// beat modes, chunks of 20 s and 60 s (many boundaries), and the same signal declared at rates
/// whose resampling ratios differ (360, 128, 250, 257 and 125 Hz).
#[test]
fn streamed_beats_equal_whole_record_extraction() {
    use ecgwgpu::data::beats::stream;
    use ecgwgpu::data::beats::{extract_counted, Beats};
    use ecgwgpu::data::recording::MemoryLead;
    for name in ["208", "232"] {
        let r = Record::read(&embedded_dir().join(name), Some(&[0])).unwrap();
        let signal = r.physical(0);
        let annotations = annotation::read(&embedded_dir().join(format!("{name}.atr"))).unwrap();
        for fs in [360.0, 128.0, 250.0, 257.0, 125.0] {
            // the first 5 minutes are enough to cross many chunk boundaries
            let len = (300.0 * fs) as usize;
            let signal = &signal[..len.min(signal.len())];
            let inside: Vec<Annotation> = annotations
                .iter()
                .map(|a| Annotation::new((a.sample as f64 * fs / 360.0).round() as u64, a.code))
                .filter(|a| a.sample < signal.len() as u64)
                .collect();
            for mode in BeatMode::ALL {
                let (whole, at_edges) = extract_counted(signal, fs, &inside, mode, name);
                for chunk_s in [20.0, 60.0] {
                    let mut streamed = Beats::default();
                    let mut chunks = 0;
                    let mut lead = MemoryLead { signal, fs };
                    let edges = stream::beats(&mut lead, &inside, mode, name, chunk_s, |b, _| {
                        streamed.extend(&b);
                        chunks += 1;
                        Ok(())
                    })
                    .unwrap();
                    let what = format!("{name} at {fs} Hz, {mode:?}, {chunk_s} s chunks");
                    assert!(chunks >= 5, "{what}: {chunks} chunks");
                    assert_eq!(streamed.len(), whole.len(), "{what}");
                    assert!(streamed == whole, "{what}: beats differ");
                    assert_eq!(edges, at_edges, "{what}");
                }
            }
        }
    }
}

/// Streamed QRS detection, with chunk boundaries every 30 s, differs from the whole-record
/// detector on at most 2 % of beats and matches the reference beats at least as well.
#[test]
fn streamed_detection_agrees_with_whole_record_detection() {
    use ecgwgpu::data::beats::stream;
    use ecgwgpu::data::recording::MemoryLead;
    for name in ["107", "208", "213"] {
        let r = Record::read(&embedded_dir().join(name), Some(&[0])).unwrap();
        let signal = r.physical(0);
        let whole = qrs::detect(&signal, 360.0);
        let mut done = vec![];
        let streamed: Vec<usize> = stream::detect(
            &mut MemoryLead {
                signal: &signal,
                fs: 360.0,
            },
            30.0,
            |d| done.push(d),
        )
        .unwrap()
        .iter()
        .map(|a| a.sample as usize)
        .collect();
        assert_eq!(done.last(), Some(&signal.len()));
        let m = qrs::match_beats(&whole, &streamed, 18);
        // restarting the adaptive levels every 30 s changes a few beats (record 208: 43 of 2,894,
        // beats the reference confirms); never more than 2 %
        assert!(
            (m.false_negatives + m.false_positives) * 50 <= whole.len(),
            "{name}: {m:?} of {} beats",
            whole.len()
        );
        let reference: Vec<usize> = annotation::read(&embedded_dir().join(format!("{name}.atr")))
            .unwrap()
            .iter()
            .filter(|a| AamiClass::from_code(a.code).is_some())
            .map(|a| a.sample as usize)
            .collect();
        let (w, s) = (
            qrs::match_beats(&reference, &whole, 54),
            qrs::match_beats(&reference, &streamed, 54),
        );
        assert!(
            s.sensitivity() >= w.sensitivity() - 0.002
                && s.positive_predictivity() >= w.positive_predictivity() - 0.002,
            "{name}: streamed {s:?} vs whole {w:?}"
        );
    }
}

/// The piecewise readers return exactly what the whole-file readers do, for any range: WFDB
/// format 212 with two signals per frame (odd starts split a three-byte pair), and EDF+.
#[test]
fn piecewise_readers_equal_whole_file_readers() {
    use ecgwgpu::data::formats::edf::{self, Edf, EdfHeader};
    use ecgwgpu::data::recording::{EdfLead, LeadSource, WfdbLead};
    let base = embedded_dir().join("208");
    let whole = Record::read(&base, None).unwrap();
    let ranges = [0..1, 1..2, 0..3601, 3599..7202, 649_990..650_000, 5..5];
    for signal in 0..2 {
        let mut lead = WfdbLead::open(&base, &whole.header, signal).unwrap();
        assert_eq!((lead.len(), lead.fs()), (650_000, 360.0));
        let phys = whole.physical(signal);
        for r in ranges.clone() {
            assert_eq!(
                lead.read(r.clone()).unwrap(),
                phys[r.clone()],
                "signal {signal} {r:?}"
            );
        }
    }
    let path = scratch("piecewise").join("208.edf");
    edf::write_from_wfdb(&base, &path).unwrap();
    let edf_whole = Edf::read(&path).unwrap();
    for signal in 0..2 {
        let header = EdfHeader::read(&path).unwrap();
        let mut lead = EdfLead::open(&path, header, signal).unwrap();
        assert_eq!((lead.len(), lead.fs()), (650_160, 360.0));
        let phys = edf_whole.physical(signal);
        for r in ranges.clone() {
            assert_eq!(
                lead.read(r.clone()).unwrap(),
                phys[r.clone()],
                "EDF signal {signal} {r:?}"
            );
        }
    }
    let header = EdfHeader::read(&path).unwrap();
    assert_eq!(
        ecgwgpu::data::recording::edf_annotations(&path, &header).unwrap(),
        edf_whole.annotations
    );
    // A bad onset in data record 1000: both readers name the record and the annotation signal.
    let ann = (0..header.signals.len())
        .find(|&i| header.signals[i].is_annotations())
        .unwrap();
    let at = header.header_bytes + 999 * header.record_bytes() + header.signal_offset(ann);
    let mut bytes = std::fs::read(&path).unwrap();
    assert_eq!(bytes[at], b'+');
    bytes[at + 1] = b'x';
    std::fs::write(&path, bytes).unwrap();
    let expected = format!("data record 1000, signal {} (annotations)", ann + 1);
    for e in [
        Edf::read(&path).err().unwrap(),
        ecgwgpu::data::recording::edf_annotations(&path, &header)
            .err()
            .unwrap(),
    ] {
        let text = e.to_string();
        assert!(
            text.contains(&expected) && text.contains("208.edf") && text.contains("not a number"),
            "{text}"
        );
    }
}

/// A directory of EDF+ files whose annotations label the beats (as `data to-edf` writes them)
/// loads like the WFDB records they came from: the same beats, classes, positions and R–R
/// features, and samples equal within EDF's scaling round-off.
#[test]
fn edf_plus_beat_labels_load_like_the_wfdb_records() {
    use ecgwgpu::data::formats::edf;
    let dir = scratch("edf-dir");
    for name in ["208", "232"] {
        edf::write_from_wfdb(&embedded_dir().join(name), &dir.join(format!("{name}.edf"))).unwrap();
    }
    // a file without beat labels is skipped with its name and reason, not silently
    std::fs::copy(
        embedded_dir().join("../edf/208-10s-pyedflib.edf"),
        dir.join("unlabelled.edf"),
    )
    .unwrap();
    let mut bytes = std::fs::read(dir.join("unlabelled.edf")).unwrap();
    // rename both annotation signals, so the file has no EDF+ annotations
    let labels = 256;
    for i in 2..4 {
        bytes[labels + 16 * i..labels + 16 * (i + 1)].copy_from_slice(b"Marker          ");
    }
    std::fs::write(dir.join("unlabelled.edf"), bytes).unwrap();

    let opts = LoadOptions {
        records: Some(vec!["208".into(), "232".into()]),
        ..LoadOptions::default()
    };
    let wfdb = load_dir(&embedded_dir(), &opts).unwrap();
    let ds = load_dir(&dir, &LoadOptions::default()).unwrap();
    assert_eq!(ds.records_total, 3);
    assert_eq!(ds.skipped.len(), 1, "{:?}", ds.skipped);
    assert!(
        ds.skipped[0].0 == "unlabelled.edf" && ds.skipped[0].1.contains("no EDF+ beat labels"),
        "{:?}",
        ds.skipped
    );
    assert_eq!(ds.beats.labels, wfdb.beats.labels);
    assert_eq!(ds.beats.sample, wfdb.beats.sample);
    assert_eq!(ds.beats.record, wfdb.beats.record);
    assert_eq!(ds.beats.rr, wfdb.beats.rr);
    // EDF stores whole 1-s data records: the last 160 samples of these 650,000-sample records
    // are padding, which changes the last 10-s window's length; every other beat is the same
    let mut compared = 0;
    for i in 0..ds.beats.len() {
        if ds.beats.sample[i] >= 640_800 {
            continue;
        }
        compared += 1;
        let worst = ds
            .beats
            .beat(i)
            .iter()
            .zip(wfdb.beats.beat(i))
            .fold(0.0f32, |m, (a, b)| m.max((a - b).abs()));
        assert!(worst < 1e-4, "beat {i}: largest sample difference {worst}");
    }
    assert!(
        compared + 100 > ds.beats.len(),
        "{compared} of {}",
        ds.beats.len()
    );
    assert_eq!(ds.beat_annotations, wfdb.beat_annotations);
    // `data stats` counts the EDF+ beat labels as it counts the .atr files
    let (counted, unread) = annotation_counts(&dir).unwrap();
    let reference = annotation_counts(&embedded_dir()).unwrap().0;
    assert!(unread.is_empty(), "{unread:?}");
    for (name, counts) in &counted {
        match name.strip_suffix(".edf") {
            Some("unlabelled") => assert_eq!(counts, &[0; 5]),
            Some(stem) => assert_eq!(
                Some(counts),
                reference.iter().find(|r| r.0 == stem).map(|r| &r.1),
                "{name}"
            ),
            None => panic!("{name}"),
        }
    }
}

/// 200 flat beats for each DS1 record and the first DS2 record, labelled by
/// `label(index of the record, record, beat)`: synthetic records for the inter split's tests.
fn ds1_records(label: impl Fn(usize, &str, usize) -> u32) -> ecgwgpu::data::beats::Beats {
    let mut beats = ecgwgpu::data::beats::Beats::default();
    for (k, &record) in DS1.iter().chain(&DS2[..1]).enumerate() {
        for j in 0..200 {
            beats.push(
                &[0.5; BEAT_LEN],
                label(k, record, j),
                (record, j as u64),
                ecgwgpu::data::beats::rr::NOMINAL,
            );
        }
    }
    beats
}

/// Patient-held-out validation never takes a class away from training: a record holding most of
/// a class (as 208 holds 373 of DS1's 415 F beats) stays in training under every seed, every
/// class keeps at least half its DS1 beats there, and validation still holds its 10 %.
#[test]
fn inter_validation_keeps_half_of_every_class_in_training() {
    let beats = ds1_records(|k, record, j| match (record, j) {
        ("208", j) if j < 90 => 3,
        (_, 0) if k < 10 => 3,
        (_, j) if j % 10 == 1 => 1,
        _ => 0,
    });
    let ds1 = 22 * 200;
    for seed in 1..=30 {
        let s = splits::split(&beats, SplitKind::Inter, 0.2, 0.1, seed);
        assert!(
            s.val.iter().all(|&i| beats.record[i] != "208"),
            "seed {seed}"
        );
        assert!(
            s.val.len() * 10 >= ds1,
            "seed {seed}: {} validation beats",
            s.val.len()
        );
        let (train, val) = (
            beats.select(&s.train).class_counts(5),
            beats.select(&s.val).class_counts(5),
        );
        for c in 0..5 {
            assert!(
                2 * train[c] >= train[c] + val[c],
                "seed {seed}, class {c}: {} train, {} validation",
                train[c],
                val[c]
            );
        }
    }
}

/// Patient-held-out validation holds every minority class, so that choosing the epoch by
/// macro-F1 judges S and V on new patients too: S and V each live in a few records here, which a
/// plain seeded pick of 10 % of the records misses about half the time.
#[test]
fn inter_validation_holds_a_share_of_every_minority_class() {
    use ecgwgpu::data::corpus::splits::VAL_CLASS_SHARE;
    let beats = ds1_records(|k, _, j| match (k, j) {
        (3 | 8 | 13 | 18, j) if j < 30 => 1,
        (1 | 6 | 11 | 16 | 20, j) if j < 40 => 2,
        _ => 0,
    });
    let ds1 = 22 * 200;
    for seed in 1..=30 {
        let s = splits::split(&beats, SplitKind::Inter, 0.2, 0.1, seed);
        let (train, val) = (
            beats.select(&s.train).class_counts(5),
            beats.select(&s.val).class_counts(5),
        );
        for (c, total) in [(1, 120), (2, 200)] {
            assert!(
                val[c] as f64 >= VAL_CLASS_SHARE * total as f64,
                "seed {seed}, class {c}: {} of {total} in validation",
                val[c]
            );
            assert!(2 * train[c] >= total, "seed {seed}, class {c}");
        }
        assert!(
            s.val.len() * 10 >= ds1 && s.val.len() * 5 <= ds1,
            "seed {seed}: {} validation beats",
            s.val.len()
        );
        assert!(s.train.iter().all(|i| !s.val.contains(i)));
    }
}

/// A record's median beat, by hand: per sample, the middle value (the mean of the middle two for
/// an even count); a long record is thinned to every 2^k-th beat, the same whether its beats
/// arrive one at a time (predict) or all at once (the loader).
#[test]
fn median_beat_matches_hand_computed_medians_and_thins_long_records() {
    use ecgwgpu::data::beats::reference::MedianBeat;
    let flat = |v: f32| vec![v; BEAT_LEN];
    let mut m = MedianBeat::default();
    assert_eq!(m.median(), None);
    for v in [1.0, 5.0, 2.0] {
        m.push(&flat(v));
    }
    assert_eq!(m.median(), Some(flat(2.0)));
    m.push(&flat(4.0));
    assert_eq!(m.median(), Some(flat(3.0)), "even count: mean of 2 and 4");
    // Per sample, not per beat: a ramp and its reverse, and a third beat between them.
    let ramp: Vec<f32> = (0..BEAT_LEN).map(|j| j as f32).collect();
    let reverse: Vec<f32> = ramp.iter().rev().copied().collect();
    let mut m = MedianBeat::default();
    m.push_all(&[ramp.clone(), reverse.clone(), flat(90.0)].concat());
    let expected: Vec<f32> = (0..BEAT_LEN)
        .map(|j| {
            let mut v = [ramp[j], reverse[j], 90.0];
            v.sort_by(f32::total_cmp);
            v[1]
        })
        .collect();
    assert_eq!(m.median(), Some(expected));
    // Thinning: beat i has value i; with room for `cap` beats, the median is over beats
    // 0, s, 2s, ... for the smallest power of two s that leaves at most `cap` of them.
    for cap in [1, 4, 5] {
        for n in 1..70usize {
            let mut m = MedianBeat::with_cap(cap);
            (0..n).for_each(|i| m.push(&flat(i as f32)));
            let s = (0..)
                .map(|k| 1usize << k)
                .find(|s| n.div_ceil(*s) <= cap)
                .unwrap();
            let kept: Vec<f32> = (0..n).step_by(s).map(|i| i as f32).collect();
            assert_eq!(m.kept(), kept.len(), "cap {cap}, {n} beats");
            let k = kept.len();
            let median = if k % 2 == 1 {
                kept[k / 2]
            } else {
                (kept[k / 2 - 1] + kept[k / 2]) / 2.0
            };
            assert_eq!(m.median(), Some(flat(median)), "cap {cap}, {n} beats");
        }
    }
}

/// Beats relative to their own record's median: records interleaved in the input, each measured
/// against its own; on real records every sample's median becomes 0.5 exactly. Beats without a
/// record (from a CSV) are refused.
#[test]
fn relative_beats_are_measured_against_their_own_records_median() {
    use ecgwgpu::data::beats::reference::BeatReference;
    use ecgwgpu::data::beats::rr::NOMINAL;
    use ecgwgpu::data::beats::Beats;
    let mut beats = Beats::default();
    for (record, v) in [("a", 0.2), ("b", 0.9), ("a", 0.4), ("b", 0.7), ("a", 0.6)] {
        beats.push(&vec![v; BEAT_LEN], 0, (record, 0), NOMINAL);
    }
    let raw = beats.clone();
    BeatReference::None.apply(&mut beats).unwrap();
    assert_eq!(beats, raw);
    BeatReference::RecordMedian.apply(&mut beats).unwrap();
    // a: median 0.4; b: median 0.8
    for (i, expected) in [0.4, 0.55, 0.5, 0.45, 0.6].into_iter().enumerate() {
        assert!(
            beats.beat(i).iter().all(|&x| (x - expected).abs() < 1e-6),
            "beat {i}: {} instead of {expected}",
            beats.beat(i)[0]
        );
    }
    assert_eq!((beats.labels, beats.record), (raw.labels, raw.record));

    let mut csv_beats = Beats::default();
    csv_beats.push(&[0.5; BEAT_LEN], 0, ("", 0), NOMINAL);
    let e = BeatReference::RecordMedian
        .apply(&mut csv_beats)
        .unwrap_err()
        .to_string();
    assert!(e.contains("no record") && e.contains("--data-dir"), "{e}");

    let opts = LoadOptions {
        records: Some(vec!["208".into(), "232".into()]),
        ..Default::default()
    };
    let mut ds = load_dir(&embedded_dir(), &opts).unwrap();
    let raw = ds.beats.clone();
    BeatReference::RecordMedian.apply(&mut ds.beats).unwrap();
    assert_ne!(ds.beats.x, raw.x);
    for record in ["208", "232"] {
        let rows: Vec<usize> = (0..ds.beats.len())
            .filter(|&i| ds.beats.record[i] == record)
            .collect();
        assert!(rows.len() > 1500, "{record}: {} beats", rows.len());
        for j in 0..BEAT_LEN {
            let mut column: Vec<f32> = rows.iter().map(|&i| ds.beats.beat(i)[j]).collect();
            column.sort_by(f32::total_cmp);
            let n = column.len();
            let median = (column[(n - 1) / 2] + column[n / 2]) / 2.0;
            assert!(
                (median - 0.5).abs() < 1e-6,
                "{record}, sample {j}: {median}"
            );
        }
    }
}

/// Median-shape copies: only the chosen classes get them, each with its record's median beat,
/// its own label and R–R features; the fraction is honoured and the choice is seeded.
#[test]
fn median_shape_copies_keep_the_rhythm_and_take_the_records_median_shape() {
    use ecgwgpu::data::beats::reference::MedianBeat;
    let opts = LoadOptions {
        records: Some(vec!["208".into(), "232".into()]),
        ..Default::default()
    };
    let beats = load_dir(&embedded_dir(), &opts).unwrap().beats;
    let (n, s, v) = (0u32, 1u32, 2u32);
    let all = augment::median_shape_copies(&beats, &[n, s], 1.0, 1);
    assert_eq!(&all.x[..beats.x.len()], &beats.x[..], "originals first");
    let copies: Vec<usize> = (0..beats.len())
        .filter(|&i| [n, s].contains(&beats.labels[i]))
        .collect();
    assert_eq!(all.len(), beats.len() + copies.len());
    assert!(copies.iter().any(|&i| beats.labels[i] == s));
    assert!(
        beats.labels.contains(&v),
        "208 has V beats, which get no copy"
    );
    let median = |record: &str| {
        let mut m = MedianBeat::default();
        (0..beats.len())
            .filter(|&i| beats.record[i] == record)
            .for_each(|i| m.push(beats.beat(i)));
        m.median().unwrap()
    };
    let (m208, m232) = (median("208"), median("232"));
    assert_ne!(m208, m232);
    for (k, &i) in copies.iter().enumerate() {
        let j = beats.len() + k;
        let expected = if beats.record[i] == "208" {
            &m208
        } else {
            &m232
        };
        assert_eq!(all.beat(j), &expected[..], "copy of beat {i}");
        assert_eq!(
            (all.labels[j], &all.record[j], all.sample[j], all.rr[j]),
            (
                beats.labels[i],
                &beats.record[i],
                beats.sample[i],
                beats.rr[i]
            )
        );
    }

    assert_eq!(augment::median_shape_copies(&beats, &[n, s], 0.0, 1), beats);
    let half = augment::median_shape_copies(&beats, &[n, s], 0.5, 1);
    let added = (half.len() - beats.len()) as f64 / copies.len() as f64;
    assert!((0.45..0.55).contains(&added), "{added}");
    assert_eq!(half, augment::median_shape_copies(&beats, &[n, s], 0.5, 1));
    assert_ne!(half, augment::median_shape_copies(&beats, &[n, s], 0.5, 2));
}

#[test]
fn detection_and_lead_reading_take_edf_like_wfdb() {
    // One lead-choice path for both formats: record 208 as EDF+ scores the detector exactly as
    // the WFDB record does, and read_lead gives the same samples.
    let dir = common::scratch("edf-detect");
    ecgwgpu::data::formats::edf::write_from_wfdb(&embedded_dir().join("208"), &dir.join("208.edf"))
        .unwrap();
    let opts = LoadOptions {
        records: Some(vec!["208".into()]),
        ..Default::default()
    };
    let (wfdb, _) = detection_scores(&embedded_dir(), &opts).unwrap();
    let opts = LoadOptions {
        records: Some(vec!["208.edf".into()]),
        ..opts
    };
    let (from_edf, warnings) = detection_scores(&dir, &opts).unwrap();
    assert!(warnings.is_empty(), "{warnings:?}");
    assert_eq!(from_edf.len(), 1);
    let (w, e) = (&wfdb[0].1, &from_edf[0].1);
    assert_eq!(
        (w.true_positives, w.false_negatives),
        (e.true_positives, e.false_negatives)
    );
    let (a, _) = ecgwgpu::data::corpus::dataset::read_lead(&embedded_dir(), "208", &opts).unwrap();
    let (b, _) = ecgwgpu::data::corpus::dataset::read_lead(&dir, "208.edf", &opts).unwrap();
    let ((a, fs_a), (b, fs_b)) = (a.unwrap(), b.unwrap());
    assert_eq!(fs_a, fs_b);
    assert!(b.len() >= a.len() && a.iter().zip(&b).all(|(x, y)| (x - y).abs() < 1e-5));
    // a lead the file lacks is a warning naming what it has
    let v9 = LoadOptions {
        lead: "V9".into(),
        ..opts
    };
    let (none, warning) = ecgwgpu::data::corpus::dataset::read_lead(&dir, "208.edf", &v9).unwrap();
    assert!(none.is_none() && warning.unwrap().contains("MLII"));
}

/// A recording "from another device": resampled with its annotations moved to the nearest new
/// sample, noise seeded by the seed and the record's name (the same twice, another seed another
/// noise) at the level asked for, annotations moved by a shift; the identity changes nothing.
#[test]
fn acquisition_resamples_adds_seeded_noise_and_moves_annotations() {
    use ecgwgpu::data::recording;
    use ecgwgpu::data::signal::acquisition::{Acquisition, NoiseLevel};
    let path = embedded_dir().join("208");
    let open = || recording::open(&path, "MLII", false).unwrap().unwrap();
    let read = |mut r: recording::Recording| {
        let n = r.lead.len();
        (
            r.lead.read(0..n).unwrap(),
            r.lead.fs(),
            r.annotations.take().unwrap(),
        )
    };
    let (clean, fs, annotations) = read(open());
    let (same, same_fs, same_annotations) = read(Acquisition::default().apply(open()).unwrap());
    assert!(same == clean && same_fs == fs && same_annotations == annotations);

    let at = |rate: f64, noise: NoiseLevel, seed: u64| {
        let acquisition = Acquisition {
            rate: Some(rate),
            noise: noise.noise(),
            seed,
            ..Default::default()
        };
        read(acquisition.apply(open()).unwrap())
    };
    let (quiet, fs_128, moved) = at(128.0, NoiseLevel::None, 1);
    assert_eq!(fs_128, 128.0);
    assert_eq!(quiet, resample(&clean, 360.0, 128.0));
    assert_eq!(moved.len(), annotations.len());
    for (a, b) in annotations.iter().zip(&moved) {
        assert_eq!(b.sample, (a.sample as f64 * 128.0 / 360.0).round() as u64);
        assert_eq!(a.code, b.code);
    }
    let (noisy, _, _) = at(128.0, NoiseLevel::Typical, 1);
    let (again, _, _) = at(128.0, NoiseLevel::Typical, 1);
    let (other, _, _) = at(128.0, NoiseLevel::Typical, 2);
    let (strong, _, _) = at(128.0, NoiseLevel::Strong, 1);
    assert!(noisy == again, "the same seed gives the same noise");
    assert!(noisy != other, "another seed gives other noise");
    let rms = |x: &[f32]| {
        let d: Vec<f64> = x
            .iter()
            .zip(&quiet)
            .map(|(a, b)| f64::from(a - b))
            .collect();
        (d.iter().map(|v| v * v).sum::<f64>() / d.len() as f64).sqrt()
    };
    // typical: baseline 0.15 mV peak (four sinusoids), mains and EMG 0.02 mV; strong about 2.7×
    let (typical_rms, strong_rms) = (rms(&noisy), rms(&strong));
    assert!(
        (0.02..0.15).contains(&typical_rms),
        "typical noise RMS {typical_rms} mV"
    );
    assert!(
        strong_rms > 2.0 * typical_rms,
        "strong {strong_rms} vs typical {typical_rms} mV"
    );
    // annotations at another point of the QRS: each moved by the shift, at the source rate, the
    // signal untouched
    let early = Acquisition {
        annotation_shift_ms: -40.0,
        ..Default::default()
    };
    let (same_signal, _, shifted) = read(early.apply(open()).unwrap());
    assert!(same_signal == clean);
    assert!(early.describe().contains("moved by -40 ms"));
    for (a, b) in annotations.iter().zip(&shifted) {
        // 40 ms at 360 Hz: 14.4 samples, 14 after rounding
        assert_eq!(b.sample, a.sample.saturating_sub(14), "{a:?}");
    }
}

/// `LoadOptions::detect`: beats where the QRS detector finds them, each with the class of the
/// reference beat within 150 ms or none; every reference beat is accounted for, and a record
/// without annotations is read with all its beats unreferenced.
#[test]
fn detected_beats_take_the_reference_class_within_the_window() {
    use ecgwgpu::data::beats::NO_REFERENCE;
    let dir = scratch("detected");
    copy_record(&dir, "208");
    copy_record(&dir, "213");
    std::fs::remove_file(dir.join("213.atr")).unwrap();
    let opts = LoadOptions {
        detect: true,
        ..LoadOptions::default()
    };
    let ds = load_dir(&dir, &opts).unwrap();
    assert!(ds.skipped.is_empty(), "{:?}", ds.skipped);
    let of = |record: &str| -> Vec<usize> {
        (0..ds.beats.len())
            .filter(|&b| ds.beats.record[b] == record)
            .collect()
    };
    // 213 has no annotations: every beat detected, none referenced
    let r213 = of("213");
    assert!(r213.len() > 3000, "213: {} beats", r213.len());
    assert!(r213.iter().all(|&b| ds.beats.labels[b] == NO_REFERENCE));
    // 208: nearly every reference beat found, with its class
    let r208 = of("208");
    let reference = annotation::read(&dir.join("208.atr")).unwrap();
    let beats: Vec<&Annotation> = reference
        .iter()
        .filter(|a| AamiClass::from_code(a.code).is_some())
        .collect();
    let referenced: Vec<usize> = r208
        .iter()
        .copied()
        .filter(|&b| ds.beats.labels[b] != NO_REFERENCE)
        .collect();
    assert!(
        referenced.len() * 100 >= beats.len() * 97,
        "{} of {} reference beats detected",
        referenced.len(),
        beats.len()
    );
    for &b in &referenced {
        let s = ds.beats.sample[b];
        let near = beats.iter().min_by_key(|a| a.sample.abs_diff(s)).unwrap();
        assert!(
            near.sample.abs_diff(s) <= 54,
            "beat at {s}: nearest reference {}",
            near.sample
        );
        assert_eq!(
            ds.beats.labels[b],
            AamiClass::from_code(near.code).unwrap().label(),
            "beat at {s}"
        );
    }
    let unreferenced = ds
        .beats
        .labels
        .iter()
        .filter(|&&l| l == NO_REFERENCE)
        .count();
    assert_eq!(ds.unreferenced, unreferenced);
    assert_eq!(ds.beat_annotations, beats.len());
    assert_eq!(
        ds.beats.len() - ds.unreferenced + ds.beats_at_edges + ds.beats_past_end,
        ds.beat_annotations
    );
    assert!(
        ds.summary().contains("found by the QRS detector"),
        "{}",
        ds.summary()
    );
    // without detection the record without annotations is an error naming its .atr
    let plain = load_dir(&dir, &LoadOptions::default()).unwrap();
    assert_eq!(plain.skipped.len(), 1);
    assert!(
        plain.skipped[0].1.contains("213.atr"),
        "{:?}",
        plain.skipped
    );
}

/// A database with a folder per patient and no RECORDS list (PhysioNet's PTB Diagnostic layout)
/// lists its records one folder down.
#[test]
fn records_one_folder_down_are_listed() {
    use ecgwgpu::data::corpus::dataset::list_records;
    let dir = scratch("nested");
    for (patient, record) in [("patient001", "208"), ("patient002", "232")] {
        std::fs::create_dir_all(dir.join(patient)).unwrap();
        copy_record(&dir.join(patient), record);
    }
    assert_eq!(
        list_records(&dir).unwrap(),
        ["patient001/208", "patient002/232"]
    );
    let ds = load_dir(&dir, &LoadOptions::default()).unwrap();
    assert_eq!(ds.per_record.len(), 2);
    assert_eq!(ds.per_record[0].0, "patient001/208");
}

/// `LoadOptions::views`: each record is also read at another lead, as a recording named
/// `RECORD~LEAD` with its own beats (the same annotations), and splits and folds keep a
/// patient's views together.
#[test]
fn views_read_other_leads_as_recordings_of_the_same_patient() {
    use ecgwgpu::data::corpus::dataset::patient;
    let plain = load_dir(&embedded_dir(), &LoadOptions::default()).unwrap();
    let opts = LoadOptions {
        views: vec!["V1,V2,V4,V5".into()],
        ..LoadOptions::default()
    };
    let ds = load_dir(&embedded_dir(), &opts).unwrap();
    assert_eq!(ds.records_total, 5);
    let names: Vec<&str> = ds.per_record.iter().map(|r| r.0.as_str()).collect();
    for record in ["107", "208", "209", "213", "232"] {
        let view = format!("{record}~V1");
        assert!(names.contains(&record), "{names:?}");
        assert!(names.contains(&view.as_str()), "{names:?}");
        let of = |name: &str| {
            (0..ds.beats.len())
                .filter(|&b| ds.beats.record[b] == name)
                .collect::<Vec<_>>()
        };
        let (own, other) = (of(record), of(&view));
        // the same beats at the same samples, with other samples
        assert_eq!(own.len(), other.len(), "{record}");
        assert!(own
            .iter()
            .zip(&other)
            .all(|(&a, &b)| ds.beats.sample[a] == ds.beats.sample[b]
                && ds.beats.labels[a] == ds.beats.labels[b]));
        assert_ne!(ds.beats.beat(own[0]), ds.beats.beat(other[0]), "{record}");
        assert_eq!(patient(&view), record);
    }
    assert_eq!(
        ds.beats.len(),
        2 * plain.beats.len(),
        "{:?} vs {:?}",
        ds.per_record,
        plain.per_record
    );
    assert!(
        ds.warnings
            .iter()
            .any(|w| w.contains("5 records also read at lead V1,V2,V4,V5")),
        "{:?}",
        ds.warnings
    );
    // the inter split and the folds by patient: a view goes where its record goes
    let parts = splits::split(&ds.beats, SplitKind::Inter, 0.2, 0.1, 1);
    let side = |indices: &[usize]| -> std::collections::BTreeSet<String> {
        indices
            .iter()
            .map(|&i| patient(&ds.beats.record[i]).to_string())
            .collect()
    };
    let (train, val, test) = (side(&parts.train), side(&parts.val), side(&parts.test));
    assert!(train.is_disjoint(&test) && val.is_disjoint(&test) && train.is_disjoint(&val));
    // every beat but those of the paced record 107 (in neither DS1 nor DS2), views included
    let paced = ds
        .beats
        .record
        .iter()
        .filter(|r| patient(r) == "107")
        .count();
    assert_eq!(
        parts.train.len() + parts.val.len() + parts.test.len(),
        ds.beats.len() - paced
    );
    let folds = splits::patient_folds(&ds.beats, 2, 1);
    let all: Vec<&String> = folds.iter().flatten().collect();
    assert_eq!(all.len(), 5, "{folds:?}");
    assert!(all.iter().all(|r| !r.contains('~')));
}

/// `LoadOptions::device_view`: each record is also read as another device would have taken it
/// (a rate and noise drawn per record from the seed), as a recording named `RECORD~LEAD@RATEHz`
/// of the same patient with the same beats, whatever order the records load in.
#[test]
fn device_views_read_each_record_as_another_device_would() {
    use ecgwgpu::data::corpus::dataset::patient;
    use ecgwgpu::data::signal::acquisition::DeviceDraw;
    let plain = load_dir(&embedded_dir(), &LoadOptions::default()).unwrap();
    let opts = LoadOptions {
        device_view: Some(DeviceDraw::new(7)),
        ..LoadOptions::default()
    };
    let ds = load_dir(&embedded_dir(), &opts).unwrap();
    let names: Vec<&str> = ds.per_record.iter().map(|r| r.0.as_str()).collect();
    assert_eq!(names.len(), 10, "{names:?}");
    let mut rates = std::collections::BTreeSet::new();
    for (record, counts) in &plain.per_record {
        let (view, view_counts) = ds
            .per_record
            .iter()
            .find(|(n, _)| n.starts_with(&format!("{record}~MLII@")))
            .unwrap_or_else(|| panic!("no device view of {record}: {names:?}"));
        assert_eq!(patient(view), record);
        let rate: f64 = view
            .trim_start_matches(&format!("{record}~MLII@"))
            .trim_end_matches("Hz")
            .parse()
            .unwrap();
        assert!(DeviceDraw::RATES.contains(&rate), "{view}");
        rates.insert(rate as u64);
        // the same beats, but for one or two the resampling moves past a record's edge
        for (a, b) in counts.iter().zip(view_counts) {
            assert!(
                a.abs_diff(*b) <= 2,
                "{record}: {counts:?} vs {view_counts:?}"
            );
        }
    }
    assert!(rates.len() >= 2, "one rate for every record: {rates:?}");
    assert!(
        ds.warnings
            .iter()
            .any(|w| w.contains("5 records also read as another device")),
        "{:?}",
        ds.warnings
    );
    // the draw is the record's own: loaded in another order, the same devices and beats
    let mut reversed: Vec<String> = plain.per_record.iter().map(|r| r.0.clone()).collect();
    reversed.reverse();
    let again = load_dir(
        &embedded_dir(),
        &LoadOptions {
            records: Some(reversed),
            ..opts.clone()
        },
    )
    .unwrap();
    let beats_of = |d: &ecgwgpu::data::corpus::dataset::Dataset, name: &str| {
        (0..d.beats.len())
            .filter(|&b| d.beats.record[b] == name)
            .map(|b| d.beats.beat(b).to_vec())
            .collect::<Vec<_>>()
    };
    for (name, _) in ds.per_record.iter().filter(|(n, _)| n.contains('@')) {
        assert_eq!(beats_of(&ds, name), beats_of(&again, name), "{name}");
    }
    // another seed, other devices
    let draw = |seed| -> Vec<_> {
        plain
            .per_record
            .iter()
            .map(|(r, _)| DeviceDraw::new(seed).for_record(r))
            .collect()
    };
    assert_ne!(draw(7), draw(8));
    for device in draw(7) {
        let noise = device.noise.expect("typical or strong noise");
        assert!([50.0, 60.0].contains(&noise.mains_hz));
        assert!((0.01..=0.09).contains(&noise.emg_mv), "{noise:?}");
    }
}

/// A recording without the network's MLII reads the lead that stands in for it (lead II, as
/// INCART, PTB and 12-lead EDF files name it) before its first signal; only where a fallback is
/// allowed.
#[test]
fn a_recording_without_mlii_falls_back_to_lead_ii_before_its_first_signal() {
    use ecgwgpu::data::recording::{choose_lead, LeadChoice};
    let twelve = [(0, "I"), (1, " ii "), (2, "III"), (3, "V1")];
    assert_eq!(
        choose_lead(&twelve, "MLII", true),
        LeadChoice::Fallback(1, " ii ".into())
    );
    assert!(matches!(
        choose_lead(&twelve, "MLII", false),
        LeadChoice::Missing(_)
    ));
    // the preference list still comes first; no stand-in: the first signal
    assert_eq!(choose_lead(&twelve, "MLII,V1", true), LeadChoice::Found(3));
    let holter = [(0, "ECG1"), (1, "ECG2")];
    assert_eq!(
        choose_lead(&holter, "MLII", true),
        LeadChoice::Fallback(0, "ECG1".into())
    );
    let edf = [(0, "ECG I"), (1, "ECG II")];
    assert_eq!(
        choose_lead(&edf, "MLII", true),
        LeadChoice::Fallback(1, "ECG II".into())
    );
}
