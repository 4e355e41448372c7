//! PTB readers (multi-file records, header comments, PTB-XL metadata), MI beats from detected R
//! peaks, patient-wise splits, and bad input.

mod common;

use std::path::{Path, PathBuf};

use common::{external_data, scratch};

use ecgwgpu::data::beats::BeatMode;
use ecgwgpu::data::corpus::ptb::{self, MiSplit};
use ecgwgpu::data::formats::wfdb::{Header, Record};
use ecgwgpu::Error;

fn embedded(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("data")
        .join(name)
}

/// WFDB's 16-bit checksum: the sum of a signal's samples modulo 2^16, as a signed value.
fn checksum(samples: &[i32]) -> i16 {
    samples.iter().fold(0i64, |s, &v| s + i64::from(v)) as u16 as i16
}

#[test]
fn ptbdb_record_reads_all_fifteen_leads_with_known_values() {
    let record = Record::read(&embedded("ptbdb/patient001/s0010_re"), None).unwrap();
    assert_eq!(record.header.fs, 1000.0);
    assert_eq!(record.adc.len(), 15);
    assert!(record.warnings.is_empty());
    // Initial values and checksums from PhysioNet's current header (the shipped header has 0 0).
    let expected = [
        ("i", -489, -8337),
        ("ii", -458, -16369),
        ("iii", 31, 6829),
        ("avr", 474, 4582),
    ];
    for (k, (name, first, sum)) in expected.iter().enumerate() {
        assert_eq!(record.header.signals[k].description, *name);
        assert_eq!(record.adc[k][0], *first, "{name}");
        assert_eq!(checksum(&record.adc[k]), *sum, "{name}");
    }
    // Einthoven: III = II − I, to within the rounding of three separately quantised leads.
    let worst = (0..record.adc[0].len())
        .map(|t| (record.adc[2][t] - (record.adc[1][t] - record.adc[0][t])).abs())
        .max()
        .unwrap();
    assert!(worst <= 4, "largest |III - (II - I)| = {worst} adu");
    assert_eq!(record.header.signals[14].file, "s0010_re.xyz");
    assert_eq!(record.adc[14].len(), 38400);

    let fields = record.header.comment_fields();
    assert_eq!(fields["Reason for admission"], "Myocardial infarction");
    assert_eq!(fields["age"], "81");
    assert_eq!(fields["sex"], "female");
}

#[test]
fn a_missing_xyz_file_is_fine_unless_its_leads_are_asked_for() {
    let dir = scratch("no-xyz");
    for ext in ["hea", "dat"] {
        std::fs::copy(
            embedded(&format!("ptbdb/patient001/s0010_re.{ext}")),
            dir.join(format!("s0010_re.{ext}")),
        )
        .unwrap();
    }
    let twelve: Vec<usize> = (0..12).collect();
    let record = Record::read(&dir.join("s0010_re"), Some(&twelve)).unwrap();
    assert_eq!(record.adc[1].len(), 38400);
    assert_eq!(record.warnings.len(), 1);
    assert!(
        record.warnings[0].contains("s0010_re.xyz") && record.warnings[0].contains("vx"),
        "{:?}",
        record.warnings
    );
    match Record::read(&dir.join("s0010_re"), None) {
        Err(Error::Io { file, .. }) => assert!(file.ends_with("s0010_re.xyz"), "{file}"),
        other => panic!("expected an I/O error naming the .xyz file, got {other:?}"),
    }
    // A header that promises more signals than it describes.
    let text = std::fs::read_to_string(dir.join("s0010_re.hea")).unwrap();
    let cut: Vec<&str> = text.lines().take(10).collect();
    let err = Header::parse(&cut.join("\n"), &dir.join("cut.hea")).unwrap_err();
    assert!(err.to_string().contains("cut.hea"), "{err}");
}

#[test]
fn scp_codes_and_quoted_csv_fields_parse_properly() {
    let codes = ptb::parse_scp_codes("{'NORM': 100.0, 'LVOLT': 0.0, \"SR\": 0}").unwrap();
    assert_eq!(codes.len(), 3);
    assert_eq!(codes["NORM"], 100.0);
    assert_eq!(codes["SR"], 0.0);
    // Not a substring match: 'IMI' is a code, 'MI' is not in this record.
    let codes = ptb::parse_scp_codes("{'IMI': 35.0, 'ABQRS': 0.0}").unwrap();
    assert!(codes.contains_key("IMI") && !codes.contains_key("MI"));
    assert!(ptb::parse_scp_codes("{}").unwrap().is_empty());
    for bad in ["NORM: 100", "{'NORM' 100}", "{'NORM': high}", "{'NORM: 1}"] {
        assert!(ptb::parse_scp_codes(bad).is_err(), "{bad}");
    }
    let rows = ptb::csv_rows("a,b,c\n1,\"x, \"\"y\"\"\",3\n", Path::new("t.csv")).unwrap();
    assert_eq!(rows[1], vec!["1", "x, \"y\"", "3"]);
    let err = ptb::csv_rows("a\n\"open", Path::new("t.csv")).unwrap_err();
    assert!(err.to_string().contains("t.csv: line 2"), "{err}");
}

/// A PTB-XL folder in `dir` with the embedded records and `rows` as its metadata (header kept).
fn ptbxl_with_rows(dir: &Path, edit: impl Fn(&str) -> String) {
    let src = embedded("ptbxl");
    std::fs::create_dir_all(dir.join("records100/00000")).unwrap();
    for entry in std::fs::read_dir(src.join("records100/00000")).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(
            entry.path(),
            dir.join("records100/00000").join(entry.file_name()),
        )
        .unwrap();
    }
    std::fs::copy(
        src.join("scp_statements.csv"),
        dir.join("scp_statements.csv"),
    )
    .unwrap();
    let db = std::fs::read_to_string(src.join("ptbxl_database.csv")).unwrap();
    std::fs::write(dir.join("ptbxl_database.csv"), edit(&db)).unwrap();
}

#[test]
fn ptbxl_labels_come_from_scp_statements_and_unknown_codes_are_reported() {
    let (records, warnings) = ptb::ptbxl_records(&embedded("ptbxl")).unwrap();
    assert_eq!(records.len(), 30);
    assert!(warnings.is_empty(), "{warnings:?}");
    let mi = records.iter().filter(|r| r.label == ptb::MI).count();
    assert_eq!(mi, 10);
    assert_eq!(records[0].path, "records100/00000/00001_lr");
    assert_eq!(records[0].patient, "15709");
    assert_eq!(records[0].fold, Some(3));

    let dir = scratch("unknown-code");
    ptbxl_with_rows(&dir, |db| {
        db.replacen("'NORM': 100.0", "'NORM': 100.0, 'XYZ9': 50.0", 1)
    });
    let (records, warnings) = ptb::ptbxl_records(&dir).unwrap();
    assert_eq!(records.len(), 30);
    assert_eq!(warnings.len(), 1);
    assert!(warnings[0].contains("'XYZ9'"), "{warnings:?}");

    let dir = scratch("bad-codes");
    ptbxl_with_rows(&dir, |db| db.replacen("'NORM': 100.0", "'NORM' 100.0", 1));
    let err = ptb::ptbxl_records(&dir).unwrap_err().to_string();
    assert!(
        err.contains("ptbxl_database.csv") && err.contains("line 2") && err.contains("scp_codes"),
        "{err}"
    );
}

#[test]
fn mi_beats_are_cut_at_detected_peaks_and_split_by_patient() {
    let opts = ptb::default_options(BeatMode::Kachuee);
    let ds = ptb::load(&embedded("ptbxl"), &opts).unwrap();
    assert_eq!(ds.records.len(), 30);
    // 10 s records: between 5 and 20 beats each (40–120 bpm, edges lost).
    for r in &ds.records {
        let n = ds.beats.record.iter().filter(|x| **x == r.path).count();
        assert!((5..=20).contains(&n), "{}: {n} beats", r.path);
    }
    assert!(ds.beats.x.iter().all(|v| (0.0..=1.0).contains(v)));
    for (i, record) in ds.beats.record.iter().enumerate() {
        let label = ds.records.iter().find(|r| &r.path == record).unwrap().label;
        assert_eq!(ds.beats.labels[i], label);
    }
    let split = ptb::split(&ds, MiSplit::Patient, 1);
    assert!(ptb::patients_on_two_sides(&ds, &split).is_empty());
    // strat_fold 10 is the test part, 9 validation.
    for &i in &split.test {
        let r = ds
            .records
            .iter()
            .find(|r| r.path == ds.beats.record[i])
            .unwrap();
        assert_eq!(r.fold, Some(10));
    }
    assert_eq!(
        split.train.len() + split.val.len() + split.test.len(),
        ds.beats.len()
    );
    // The beat split mixes patients, as it says.
    let leaky = ptb::split(&ds, MiSplit::Beat, 1);
    assert!(!ptb::patients_on_two_sides(&ds, &leaky).is_empty());

    let ds = ptb::load(&embedded("ptbdb"), &opts).unwrap();
    assert_eq!(ds.records.len(), 1);
    assert_eq!(ds.records[0].patient, "patient001");
    assert_eq!(ds.records[0].label, ptb::MI);
    assert!(
        ds.beats.len() > 40,
        "38 s of sinus rhythm: {}",
        ds.beats.len()
    );
}

#[test]
fn flat_and_short_records_are_left_out_with_warnings() {
    let dir = scratch("flat");
    let header = |name: &str, samples: usize, comment: &str| {
        format!(
            "{name} 1 500 {samples}\n{name}.dat 16 200 16 0 0 0 0 ii\n# Reason for admission: {comment}\n"
        )
    };
    std::fs::create_dir_all(dir.join("patient900")).unwrap();
    std::fs::create_dir_all(dir.join("patient901")).unwrap();
    std::fs::write(
        dir.join("patient900/flat.hea"),
        header("flat", 5000, "Healthy control"),
    )
    .unwrap();
    std::fs::write(dir.join("patient900/flat.dat"), vec![0u8; 10_000]).unwrap();
    std::fs::write(
        dir.join("patient901/short.hea"),
        header("short", 200, "Myocardial infarction"),
    )
    .unwrap();
    std::fs::write(dir.join("patient901/short.dat"), vec![0u8; 400]).unwrap();
    let ds = ptb::load(&dir, &ptb::default_options(BeatMode::Kachuee)).unwrap();
    assert!(ds.records.is_empty() && ds.beats.is_empty());
    assert_eq!(ds.warnings.len(), 2, "{:?}", ds.warnings);
    assert!(ds.warnings.iter().any(|w| w.contains("patient900/flat")));
    assert!(ds.warnings.iter().any(|w| w.contains("patient901/short")));
}

/// The six PTB Diagnostic records: $ECGWGPU_PTBDB, or `../shared/data/ptb/ptbdb`.
fn shared_ptbdb() -> PathBuf {
    external_data(
        "the six PTB Diagnostic records",
        "ECGWGPU_PTBDB",
        "../shared/data/ptb/ptbdb",
        "wfdb_signal_checksums.csv",
    )
}

#[test]
#[ignore = "needs the six PTB Diagnostic records ($ECGWGPU_PTBDB or ../shared/data/ptb/ptbdb)"]
fn all_six_ptbdb_records_match_their_computed_checksums_and_einthoven() {
    let dir = shared_ptbdb();
    let table = std::fs::read_to_string(dir.join("wfdb_signal_checksums.csv")).unwrap();
    let rows = ptb::csv_rows(&table, &dir.join("wfdb_signal_checksums.csv")).unwrap();
    let mut checked = 0;
    let (records, warnings) = ptb::ptbdb_records(&dir).unwrap();
    assert_eq!(records.len(), 6, "{warnings:?}");
    assert!(records.iter().all(|r| r.label == ptb::MI));
    for record in &records {
        // Only the 12 leads of the .dat: three of the six have no .xyz.
        let twelve: Vec<usize> = (0..12).collect();
        let r = Record::read(&dir.join(&record.path), Some(&twelve)).unwrap();
        for row in rows.iter().skip(1).filter(|row| row[0] == record.path) {
            let Some(k) = r.header.signal_index(&row[2]).filter(|&k| k < 12) else {
                continue;
            };
            assert_eq!(
                r.adc[k][0],
                row[4].parse::<i32>().unwrap(),
                "{} {}",
                record.path,
                row[2]
            );
            assert_eq!(
                checksum(&r.adc[k]),
                row[5].parse::<i16>().unwrap(),
                "{} {}",
                record.path,
                row[2]
            );
            checked += 1;
        }
        let worst = (0..r.adc[0].len())
            .map(|t| (r.adc[2][t] - (r.adc[1][t] - r.adc[0][t])).abs())
            .max()
            .unwrap();
        assert!(
            worst <= 4,
            "{}: |III - (II - I)| up to {worst} adu",
            record.path
        );
    }
    assert_eq!(checked, 6 * 12);
}
