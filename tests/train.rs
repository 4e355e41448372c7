//! Metrics, checkpoints and the `train` command end to end (tiny preset, embedded data).

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

mod common;
use common::embedded_dir;

use ecgwgpu::checkpoint::{self, NamedTensor};
use ecgwgpu::data::formats::aami::AamiClass;
use ecgwgpu::data::formats::annotation;
use ecgwgpu::eval::{out_of_fold, Leads};
use ecgwgpu::metrics::{
    argmax_rows, auroc, bootstrap, per_record, per_record_table, BinaryReport, Confusion,
};

#[test]
fn metrics_match_a_hand_computed_confusion_matrix() {
    // truth → predicted, 3 classes:
    //        p0 p1 p2
    //   t0 [  5, 1, 0 ]
    //   t1 [  2, 3, 1 ]
    //   t2 [  0, 0, 4 ]
    let mut truth = vec![];
    let mut pred = vec![];
    for (t, row) in [[5, 1, 0], [2, 3, 1], [0, 0, 4]].iter().enumerate() {
        for (p, &n) in row.iter().enumerate() {
            truth.extend(std::iter::repeat_n(t as u32, n));
            pred.extend(std::iter::repeat_n(p as u32, n));
        }
    }
    let r = Confusion::new(&truth, &pred, 3).report(&["a", "b", "c"]);
    assert_eq!(
        r.confusion,
        vec![vec![5, 1, 0], vec![2, 3, 1], vec![0, 0, 4]]
    );
    let close = |a: f64, b: f64| assert!((a - b).abs() < 1e-12, "{a} vs {b}");
    close(r.accuracy, 12.0 / 16.0);
    // class a: TP 5, predicted 7, support 6, TN = 16 - 6 - 7 + 5 = 8
    close(r.classes[0].precision, 5.0 / 7.0);
    close(r.classes[0].recall, 5.0 / 6.0);
    close(
        r.classes[0].f1,
        2.0 * (5.0 / 7.0) * (5.0 / 6.0) / (5.0 / 7.0 + 5.0 / 6.0),
    );
    close(r.classes[0].accuracy, 13.0 / 16.0);
    // FP = 7 - 5 = 2 of the 10 beats that are not class a
    close(r.classes[0].fpr, 2.0 / 10.0);
    // class b: TP 3, predicted 4, support 6; class c: TP 4, predicted 5, support 4
    close(r.classes[1].precision, 0.75);
    close(r.classes[1].recall, 0.5);
    close(r.classes[2].precision, 0.8);
    close(r.classes[2].recall, 1.0);
    close(r.classes[2].accuracy, 15.0 / 16.0);
    let f1: Vec<f64> = r.classes.iter().map(|c| c.f1).collect();
    close(r.macro_f1, f1.iter().sum::<f64>() / 3.0);
    close(
        r.weighted_f1,
        (f1[0] * 6.0 + f1[1] * 6.0 + f1[2] * 4.0) / 16.0,
    );
    assert!(r.table().contains("overall accuracy 0.7500"));
    assert_eq!(argmax_rows(&[0.1, 0.7, 0.2, 0.5, 0.2, 0.3], 3), vec![1, 0]);
}

#[test]
fn per_record_scores_each_record_and_puts_the_worst_first() {
    // Record "a": 4 beats, one 0 called 1. Record "b": 3 beats, two 1s called 2 and a 0 called
    // 2. Record "c": 2 beats, both right.
    let records: Vec<String> = ["a", "b", "a", "c", "b", "a", "b", "c", "a"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let truth = [0u32, 1, 0, 2, 1, 1, 0, 0, 2];
    let pred = [1u32, 2, 0, 2, 2, 1, 2, 0, 2];
    let rows = per_record(&records, &truth, &pred, 3);
    let order: Vec<&str> = rows.iter().map(|r| r.record.as_str()).collect();
    assert_eq!(order, ["b", "a", "c"]);
    let (b, a, c) = (&rows[0], &rows[1], &rows[2]);
    assert_eq!((b.beats, b.errors), (3, 3));
    assert_eq!(b.accuracy, 0.0);
    assert_eq!(b.commonest_error, Some((1, 2, 2)));
    assert_eq!(
        b.confusion,
        vec![vec![0, 0, 1], vec![0, 0, 2], vec![0, 0, 0]]
    );
    assert_eq!((a.beats, a.errors), (4, 1));
    assert_eq!(a.accuracy, 0.75);
    assert_eq!(a.commonest_error, Some((0, 1, 1)));
    assert_eq!((c.errors, c.commonest_error), (0, None));
    // The records' matrices add up to the whole set's.
    let mut sum = vec![vec![0; 3]; 3];
    for r in &rows {
        for (t, row) in r.confusion.iter().enumerate() {
            for (p, n) in row.iter().enumerate() {
                sum[t][p] += n;
            }
        }
    }
    assert_eq!(sum, Confusion::new(&truth, &pred, 3).counts);
    let table = per_record_table(&rows, &["x", "y", "z"]);
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(lines.len(), 4, "{table}");
    assert!(
        lines[1].starts_with('b') && lines[1].ends_with("y→z 2"),
        "{table}"
    );
    assert!(!lines[3].contains('→'), "record c has no error\n{table}");
}

#[test]
fn auroc_and_binary_figures_match_hand_computed_values() {
    // Positives score 0.9, 0.6, 0.4; negatives 0.7, 0.2, 0.1: of the 9 pairs, the positive wins 7.
    let scores = [0.9, 0.7, 0.6, 0.4, 0.2, 0.1];
    let truth = [1u32, 0, 1, 1, 0, 0];
    let positive: Vec<bool> = truth.iter().map(|&t| t == 1).collect();
    assert!((auroc(&scores, &positive) - 7.0 / 9.0).abs() < 1e-12);
    // Ties count half: every score equal gives 0.5.
    assert_eq!(auroc(&[0.3; 4], &[true, false, true, false]), 0.5);
    assert!(auroc(&[0.1, 0.2], &[true, true]).is_nan());
    let r = BinaryReport::new(&truth, &scores);
    // Predicted positive above 0.5: 0.9 (TP), 0.7 (FP), 0.6 (TP); 0.4 is a FN.
    assert_eq!(r.confusion, vec![vec![2, 1], vec![1, 2]]);
    assert!((r.precision - 2.0 / 3.0).abs() < 1e-12);
    assert!((r.recall - 2.0 / 3.0).abs() < 1e-12);
    assert!((r.specificity - 2.0 / 3.0).abs() < 1e-12);
    assert!((r.accuracy - 4.0 / 6.0).abs() < 1e-12);
}

/// Decision offsets: a class the probabilities rank well but argmax never calls (S beats at
/// p_S 0.3 against N beats at 0.05) is found once an offset between ln(0.7/0.3) and ln(0.95/0.05)
/// is added to it, and `choose_offsets` finds one on these beats; a class too small to score
/// (fewer than 50 beats) keeps its offset 0.
#[test]
fn decision_offsets_find_a_class_that_is_ranked_well_but_called_too_rarely() {
    use ecgwgpu::metrics::{choose_offsets, decide};
    let (mut probs, mut labels) = (vec![], vec![]);
    for i in 0..400 {
        let (row, label): (&[f32], u32) = match i % 4 {
            0 => (&[0.7, 0.3, 0.0], 1),
            3 if i < 100 => (&[0.5, 0.0, 0.5], 2),
            _ => (&[0.95, 0.05, 0.0], 0),
        };
        probs.extend_from_slice(row);
        labels.push(label);
    }
    assert_eq!(decide(&probs, 3, &[]), argmax_rows(&probs, 3));
    assert!(
        decide(&probs, 3, &[]).iter().all(|&p| p != 1),
        "argmax never calls S"
    );
    let offsets = choose_offsets(&probs, &labels, 3, &[1, 2]);
    assert!(
        offsets[1] > (0.7f32 / 0.3).ln() && offsets[1] < (0.95f32 / 0.05).ln(),
        "{offsets:?}"
    );
    assert_eq!((offsets[0], offsets[2]), (0.0, 0.0), "{offsets:?}");
    let decided = decide(&probs, 3, &offsets);
    for (i, (&d, &l)) in decided.iter().zip(&labels).enumerate() {
        if l < 2 {
            assert_eq!(d, l, "beat {i}");
        }
    }
}

#[test]
fn bootstrap_resamples_whole_records() {
    // Record "good" is all correct, record "bad" all wrong: a record-level replicate draws
    // {good, good}, {good, bad} or {bad, bad}, so accuracy spans 0..1; beat-level resampling
    // of the 200 beats would stay within a few points of 0.5.
    let truth = vec![0u32; 200];
    let pred: Vec<u32> = (0..200).map(|i| u32::from(i >= 100)).collect();
    let groups: Vec<String> = (0..200)
        .map(|i| if i < 100 { "good" } else { "bad" }.to_string())
        .collect();
    let ci = bootstrap(&truth, &pred, &groups, 2, &["a", "b"], 400, 3);
    assert_eq!(ci.replicates, 400);
    assert_eq!(ci.accuracy, [0.0, 1.0]);
    // Class b never occurs in the truth: its recall has no replicate to come from.
    assert!(ci.classes[1].recall[0].is_nan());
    let again = bootstrap(&truth, &pred, &groups, 2, &["a", "b"], 400, 3);
    assert_eq!(ci.classes[0], again.classes[0], "seeded");
    assert_eq!(ci.macro_f1, again.macro_f1, "seeded");
}

#[test]
fn evaluate_reproduces_the_training_runs_test_figures() {
    let out = temp_run("evaluate");
    assert!(train_tiny(&out, &["--epochs", "1"]).status.success());
    let metrics = read_json(&out.join("metrics.json"));
    let evaluate = |extra: &[&str]| -> serde_json::Value {
        let output = Command::new(env!("CARGO_BIN_EXE_ecgwgpu"))
            .args(["evaluate", "--json", "--checkpoint"])
            .arg(out.join("best.safetensors"))
            .args(extra)
            .output()
            .unwrap();
        assert!(output.status.success(), "{output:?}");
        serde_json::from_slice(&output.stdout).unwrap()
    };
    // The split, seed and data directory come from the run's config.json.
    let test = evaluate(&[]);
    assert_eq!(test["beats"], metrics["test_beats"]);
    assert_eq!(test["confusion"], metrics["confusion"]);
    assert_eq!(test["accuracy"], metrics["accuracy"]);
    let v = &test["classes"][2];
    assert_eq!(test["aami"]["V"]["se"], v["recall"]);
    assert_eq!(test["aami"]["V"]["ppv"], v["precision"]);
    // Every beat of the five embedded records, with intervals.
    let all = evaluate(&["--split", "all", "--bootstrap", "50"]);
    let counts = read_json(&out.join("config.json"));
    let total: u64 = ["train_before_augmentation", "validation", "test"]
        .iter()
        .flat_map(|k| counts["class_counts"][k].as_array().unwrap().clone())
        .map(|c| c.as_u64().unwrap())
        .sum();
    assert_eq!(all["beats"].as_u64().unwrap(), total);
    // Percentile intervals of a record bootstrap: ordered, within [0, 1], and not a single point
    // (the five records differ in accuracy).
    let ci = &all["ci95"]["accuracy"];
    let (lo, hi) = (ci[0].as_f64().unwrap(), ci[1].as_f64().unwrap());
    assert!(0.0 <= lo && lo < hi && hi <= 1.0, "{ci}");
    // Per record: the five embedded records, whose errors add up to the whole set's.
    let records = evaluate(&["--split", "all", "--per-record"]);
    let rows = records["per_record"].as_array().unwrap();
    assert_eq!(rows.len(), 5, "{rows:?}");
    let errors: u64 = rows.iter().map(|r| r["errors"].as_u64().unwrap()).sum();
    let correct = (records["accuracy"].as_f64().unwrap() * total as f64).round() as u64;
    assert_eq!(errors, total - correct);

    // The same records as EDF+ files whose annotations label the beats (`data to-edf`): the
    // same beats and classes, scored alike (EDF's scaling rounds the samples' last bits).
    let edf_dir = out.join("edf");
    std::fs::create_dir_all(&edf_dir).unwrap();
    for name in ["107", "208", "209", "213", "232"] {
        let status = Command::new(env!("CARGO_BIN_EXE_ecgwgpu"))
            .args(["data", "to-edf", "--record"])
            .arg(embedded_dir().join(name))
            .arg("--out")
            .arg(edf_dir.join(format!("{name}.edf")))
            .status()
            .unwrap();
        assert!(status.success());
    }
    let from_edf = evaluate(&["--split", "all", "--data-dir", edf_dir.to_str().unwrap()]);
    assert_eq!(from_edf["beats"], all["beats"]);
    let support = |v: &serde_json::Value| -> Vec<u64> {
        v["confusion"]
            .as_array()
            .unwrap()
            .iter()
            .map(|row| {
                row.as_array()
                    .unwrap()
                    .iter()
                    .map(|c| c.as_u64().unwrap())
                    .sum()
            })
            .collect()
    };
    assert_eq!(support(&from_edf), support(&all), "reference classes");
    let (a, b) = (
        from_edf["accuracy"].as_f64().unwrap(),
        all["accuracy"].as_f64().unwrap(),
    );
    assert!(
        (a - b).abs() < 0.002,
        "accuracy {a} from EDF+, {b} from WFDB"
    );
}

#[test]
fn checkpoints_round_trip_and_reject_corruption() {
    let dir = std::env::temp_dir().join(format!("ecgwgpu-ckpt-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let tensors = vec![
        NamedTensor {
            name: "conv1_1.weight".into(),
            shape: vec![2, 1, 3],
            data: vec![1.0, -2.0, 3.5, 0.25, 1e-8, -0.0],
        },
        NamedTensor {
            name: "conv1_1.bias".into(),
            shape: vec![2],
            data: vec![0.5, f32::MAX],
        },
    ];
    let mut meta = BTreeMap::new();
    meta.insert("epoch".to_string(), "7".to_string());
    let path = dir.join("c.safetensors");
    checkpoint::save(&path, &tensors, &meta).unwrap();
    assert!(
        !dir.join("c.safetensors.tmp").exists(),
        "temporary file renamed away"
    );
    let (back, back_meta) = checkpoint::load(&path).unwrap();
    assert_eq!(back, tensors);
    assert_eq!(back_meta, meta);
    let bytes = std::fs::read(&path).unwrap();
    for cut in [4, 20, bytes.len() - 3] {
        assert!(
            checkpoint::decode(&bytes[..cut], Path::new("cut")).is_err(),
            "cut at {cut}"
        );
    }
}

#[test]
fn train_command_writes_a_complete_run_directory() {
    let out = std::env::temp_dir().join(format!("ecgwgpu-run-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&out);
    let status = Command::new(env!("CARGO_BIN_EXE_ecgwgpu"))
        .args([
            "train",
            "--preset",
            "tiny",
            "--epochs",
            "1",
            "--lr",
            "1e-3",
            "--augment",
            "800",
            "--out",
        ])
        .arg(&out)
        .status()
        .unwrap();
    assert!(status.success());
    for f in [
        "config.json",
        "history.csv",
        "history.json",
        "best.safetensors",
        "last.safetensors",
        "metrics.json",
    ] {
        assert!(out.join(f).is_file(), "{f} missing");
    }
    let metrics = read_json(&out.join("metrics.json"));
    let confusion: Vec<Vec<usize>> = serde_json::from_value(metrics["confusion"].clone()).unwrap();
    let total: usize = confusion.iter().flatten().sum();
    assert_eq!(total, metrics["test_beats"].as_u64().unwrap() as usize);
    assert!(
        metrics["accuracy"].as_f64().unwrap() > 0.5,
        "one epoch of the tiny model beats chance: {metrics}"
    );
    let config = read_json(&out.join("config.json"));
    let before: Vec<usize> =
        serde_json::from_value(config["class_counts"]["train_before_augmentation"].clone())
            .unwrap();
    let after: Vec<usize> =
        serde_json::from_value(config["class_counts"]["train"].clone()).unwrap();
    for (b, a) in before.iter().zip(&after) {
        assert_eq!(
            *a,
            (*b).max(800),
            "augmentation tops minority classes up to 800"
        );
    }
    assert_eq!(
        std::fs::read_to_string(out.join("history.csv"))
            .unwrap()
            .lines()
            .count(),
        2
    );
    let (tensors, meta) = checkpoint::load(&out.join("best.safetensors")).unwrap();
    assert_eq!(tensors.len(), 12);
    assert_eq!(meta["epoch"], "1");
    // The figures, as real PNGs of the intended sizes (width and height sit at bytes 16..24).
    for (name, width, height) in [
        ("class_counts", 900, 560),
        ("sample_beats", 1200, 320),
        ("training_curves", 1200, 480),
        ("confusion", 640, 600),
    ] {
        let png = std::fs::read(out.join("figures").join(format!("{name}.png"))).unwrap();
        assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n", "{name}");
        let size = |at: usize| u32::from_be_bytes(png[at..at + 4].try_into().unwrap());
        assert_eq!((size(16), size(20)), (width, height), "{name}");
        // Not a blank canvas: the drawing compresses far worse than a white image would.
        assert!(png.len() > 10_000, "{name}: {} bytes", png.len());
    }
    let missing = Command::new(env!("CARGO_BIN_EXE_ecgwgpu"))
        .args(["figures", "--run", "/nonexistent/run"])
        .output()
        .unwrap();
    assert!(!missing.status.success());
    assert!(String::from_utf8_lossy(&missing.stderr).contains("/nonexistent/run/config.json"));
}

#[test]
fn train_command_rejects_bad_arguments_clearly() {
    let output = Command::new(env!("CARGO_BIN_EXE_ecgwgpu"))
        .args(["train", "--preset", "huge", "--epochs", "1"])
        .output()
        .unwrap();
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("unknown preset 'huge'"));
    let output = Command::new(env!("CARGO_BIN_EXE_ecgwgpu"))
        .args(["train", "--data-dir", "/nonexistent/mitdb"])
        .output()
        .unwrap();
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("/nonexistent/mitdb"));
    for (args, message) in [
        (&["--rhythm-copies", "0.5"][..], "does not have"),
        (
            &["--preset", "tiny-rr", "--rhythm-copies", "2"][..],
            "in [0, 1]",
        ),
    ] {
        let output = Command::new(env!("CARGO_BIN_EXE_ecgwgpu"))
            .args(["train", "--epochs", "1"])
            .args(args)
            .output()
            .unwrap();
        assert!(!output.status.success());
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains(message), "{args:?}: {stderr}");
    }
}

#[test]
fn train_command_reads_the_common_csv_layout() {
    let dir = std::env::temp_dir().join(format!("ecgwgpu-csv-run-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    // Two easily told apart classes, with labels written as floats like Kaggle's files.
    let mut text = String::new();
    for i in 0..120 {
        let class = i % 2;
        let row: Vec<String> = (0..187)
            .map(|t| format!("{:.6e}", if (t < 90) == (class == 0) { 0.9 } else { 0.1 }))
            .collect();
        text += &format!("{},{:.18e}\n", row.join(","), class as f64);
    }
    std::fs::write(dir.join("train.csv"), &text).unwrap();
    std::fs::write(dir.join("test.csv"), &text[..text.len() / 2]).unwrap();
    let out = dir.join("run");
    let status = Command::new(env!("CARGO_BIN_EXE_ecgwgpu"))
        .args([
            "train", "--preset", "tiny", "--epochs", "2", "--lr", "3e-3", "--batch", "16",
        ])
        .arg("--train-csv")
        .arg(dir.join("train.csv"))
        .arg("--test-csv")
        .arg(dir.join("test.csv"))
        .arg("--out")
        .arg(&out)
        .status()
        .unwrap();
    assert!(status.success());
    let metrics = read_json(&out.join("metrics.json"));
    assert_eq!(metrics["test_beats"], 60);
    assert!(metrics["accuracy"].as_f64().unwrap() > 0.9, "{metrics}");
}

fn train_tiny(out: &Path, extra: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_ecgwgpu"))
        .args(["train", "--preset", "tiny", "--out"])
        .arg(out)
        .args(extra)
        .args(if extra.contains(&"--lr") {
            &[][..]
        } else {
            &["--lr", "1e-3"][..]
        })
        .output()
        .unwrap()
}

/// Runs `ecgwgpu predict --checkpoint CHECKPOINT --record RECORD --out-dir OUT`.
fn predict(checkpoint: &Path, record: &Path, out: &Path) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_ecgwgpu"))
        .args(["predict", "--checkpoint"])
        .arg(checkpoint)
        .arg("--record")
        .arg(record)
        .arg("--out-dir")
        .arg(out)
        .output()
        .unwrap()
}

fn read_json(path: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// `ecgwgpu evaluate --json --checkpoint CHECKPOINT` (the beats of the run beside it).
fn evaluate_json(checkpoint: &Path) -> serde_json::Value {
    evaluate_json_with(checkpoint, &[])
}

/// `evaluate --json` with more flags.
fn evaluate_json_with(checkpoint: &Path, flags: &[&str]) -> serde_json::Value {
    let output = Command::new(env!("CARGO_BIN_EXE_ecgwgpu"))
        .args(["evaluate", "--json", "--checkpoint"])
        .arg(checkpoint)
        .args(flags)
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    serde_json::from_slice(&output.stdout).unwrap()
}

fn temp_run(name: &str) -> std::path::PathBuf {
    let out = std::env::temp_dir().join(format!("ecgwgpu-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&out);
    out
}

/// `train --detect`: beats cut where the QRS detector finds them, as `predict` cuts a
/// recording without annotations. Detected beats without a reference beat have no class and are
/// left out of training (with them the label check refuses the run); the run records the flag.
#[test]
fn train_detect_learns_from_the_detectors_beats() {
    let mut runs = vec![];
    for (name, folds) in [("detect", &[][..]), ("detect-folds", &["--folds", "2"][..])] {
        let run = temp_run(name);
        runs.push(run.clone());
        let mut flags = vec!["--epochs", "1", "--split", "inter", "--detect"];
        flags.extend(folds);
        let trained = train_tiny(&run, &flags);
        assert!(trained.status.success(), "{name}: {trained:?}");
        let log = String::from_utf8_lossy(&trained.stderr);
        assert!(log.contains("found by the QRS detector"), "{name}: {log}");
        assert_eq!(read_json(&run.join("config.json"))["args"]["detect"], true);
    }
    // seeds trained on detected beats join with their rule chosen on DS1's detected beats, as
    // each seed's own was; `calibrate` reads DS1 the same way
    let other = temp_run("detect-folds-seed-2");
    let flags = [
        "--epochs", "1", "--split", "inter", "--detect", "--folds", "2", "--seed", "2",
    ];
    assert!(train_tiny(&other, &flags).status.success());
    let joined = temp_run("detect-seeds");
    let [a, b] = [&runs[1], &other].map(|r| r.join("best.safetensors"));
    // they cut annotated recordings at the detector's peaks, as they learnt; a seed written
    // before checkpoints said so joins one written after
    let (tensors, mut meta) = checkpoint::load(&a).unwrap();
    let positions = r#","beat_positions":"detector""#;
    assert!(meta["preprocessing"].contains(positions), "{meta:?}");
    let before = meta["preprocessing"].replace(positions, "");
    meta.insert("preprocessing".into(), before);
    checkpoint::save(&a, &tensors, &meta).unwrap();
    let ensemble = Command::new(env!("CARGO_BIN_EXE_ecgwgpu"))
        .args(["ensemble", "--checkpoint"])
        .arg(&a)
        .arg("--checkpoint")
        .arg(&b)
        .arg("--out")
        .arg(&joined)
        .output()
        .unwrap();
    assert!(ensemble.status.success(), "{ensemble:?}");
    let metrics = read_json(&joined.join("metrics.json"));
    assert_eq!(metrics["out_of_fold_leads"]["detect"], true, "{metrics}");
    let (_, meta) = checkpoint::load(&joined.join("best.safetensors")).unwrap();
    assert!(meta["preprocessing"].contains(positions), "{meta:?}");
    let calibrated = Command::new(env!("CARGO_BIN_EXE_ecgwgpu"))
        .args(["calibrate", "--checkpoint"])
        .arg(&a)
        .arg("--out")
        .arg(joined.join("calibrated.safetensors"))
        .output()
        .unwrap();
    assert!(calibrated.status.success(), "{calibrated:?}");
    let log = String::from_utf8_lossy(&calibrated.stderr);
    assert!(log.contains("beats found by the QRS detector"), "{log}");
}

#[test]
fn resume_continues_exactly_where_training_stopped() {
    let (whole, split) = (temp_run("whole"), temp_run("split"));
    assert!(train_tiny(&whole, &["--epochs", "2"]).status.success());
    assert!(train_tiny(&split, &["--epochs", "1"]).status.success());
    let resumed = train_tiny(&split, &["--epochs", "2", "--resume"]);
    assert!(resumed.status.success(), "{resumed:?}");
    assert!(String::from_utf8_lossy(&resumed.stdout).contains("resuming"));
    // Same parameters bit for bit: Adam's moments, step count and the epoch's shuffle all carried.
    assert_eq!(
        std::fs::read(whole.join("last.safetensors")).unwrap(),
        std::fs::read(split.join("last.safetensors")).unwrap()
    );
    let epochs = |dir: &Path| -> Vec<u64> {
        let h: Vec<serde_json::Value> =
            serde_json::from_str(&std::fs::read_to_string(dir.join("history.json")).unwrap())
                .unwrap();
        h.iter().map(|r| r["epoch"].as_u64().unwrap()).collect()
    };
    assert_eq!(epochs(&split), vec![1, 2]);

    let refused = train_tiny(&split, &["--epochs", "3", "--resume", "--seed", "7"]);
    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(stderr.contains("args.seed = 7 (was 1)"), "{stderr}");
}

#[test]
fn non_finite_loss_stops_training_and_keeps_the_last_checkpoint() {
    let out = temp_run("nan");
    assert!(train_tiny(&out, &["--epochs", "1"]).status.success());
    let last = std::fs::read(out.join("last.safetensors")).unwrap();
    // A learning rate of 1e38 sends the weights past f32's range within a few steps.
    let diverged = train_tiny(&out, &["--epochs", "2", "--resume", "--lr", "1e38"]);
    assert!(!diverged.status.success());
    let stderr = String::from_utf8_lossy(&diverged.stderr);
    assert!(
        stderr.contains("training stopped at epoch 2") && stderr.contains("last.safetensors"),
        "{stderr}"
    );
    assert_eq!(std::fs::read(out.join("last.safetensors")).unwrap(), last);
}

#[test]
fn a_run_killed_mid_epoch_leaves_valid_checkpoints_and_resumes() {
    let out = temp_run("killed");
    let mut child = Command::new(env!("CARGO_BIN_EXE_ecgwgpu"))
        .args(["train", "--preset", "tiny", "--lr", "1e-3", "--epochs", "4"])
        .arg("--out")
        .arg(&out)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let started = std::time::Instant::now();
    while !out.join("resume.safetensors").exists() {
        assert!(
            started.elapsed().as_secs() < 300,
            "no epoch finished in 5 minutes"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    for name in ["last.safetensors", "best.safetensors", "resume.safetensors"] {
        let path = out.join(name);
        if path.exists() {
            checkpoint::load(&path).unwrap_or_else(|e| panic!("{name} after a kill: {e}"));
        }
    }
    // A crash in the middle of writing leaves a truncated temporary file beside the intact one.
    let resume = std::fs::read(out.join("resume.safetensors")).unwrap();
    std::fs::write(
        out.join("resume.safetensors.tmp"),
        &resume[..resume.len() / 2],
    )
    .unwrap();
    checkpoint::load(&out.join("resume.safetensors")).unwrap();
    let resumed = train_tiny(&out, &["--epochs", "4", "--resume"]);
    assert!(resumed.status.success(), "{resumed:?}");
    let (_, meta) = checkpoint::load(&out.join("last.safetensors")).unwrap();
    assert_eq!(meta["epoch"], "4");
    let (_, meta) = checkpoint::load(&out.join("resume.safetensors")).unwrap();
    assert_eq!(meta["epoch"], "4");
    assert!(
        !out.join("resume.safetensors.tmp").exists(),
        "the next write replaced the torn temporary file"
    );
}

#[test]
fn early_stopping_ends_a_run_that_stopped_improving() {
    let out = temp_run("patience");
    // With a learning rate of 0 the validation macro-F1 can never improve on epoch 1.
    let run = train_tiny(&out, &["--epochs", "5", "--patience", "2", "--lr", "0"]);
    assert!(run.status.success(), "{run:?}");
    assert!(String::from_utf8_lossy(&run.stdout).contains("early stop"));
    let history = std::fs::read_to_string(out.join("history.csv")).unwrap();
    assert_eq!(history.lines().count(), 1 + 3, "{history}");
    assert!(out.join("metrics.json").is_file());
}

#[test]
fn predict_writes_a_csv_and_an_annotation_file_that_agree() {
    let run = temp_run("predict");
    assert!(train_tiny(&run, &["--epochs", "1"]).status.success());
    let out = run.join("predictions");
    let record = Path::new(env!("CARGO_MANIFEST_DIR")).join("data/mitdb/232");
    let output = predict(&run.join("best.safetensors"), &record, &out);
    assert!(output.status.success(), "{output:?}");
    let csv = std::fs::read_to_string(out.join("232_pred.csv")).unwrap();
    let rows: Vec<Vec<&str>> = csv
        .lines()
        .skip(1)
        .map(|l| l.split(',').collect())
        .collect();
    let written = annotation::read(&out.join("232.pred")).unwrap();
    let reference = annotation::read(&record.with_extension("atr")).unwrap();
    assert!(rows.len() > 1000, "record 232 has ~1780 beats");
    assert_eq!(rows.len(), written.len());
    for (row, a) in rows.iter().zip(&written) {
        assert_eq!(row[0].parse::<u64>().unwrap(), a.sample);
        let class = ["N", "S", "V", "F", "Q"]
            .iter()
            .position(|c| *c == row[2])
            .unwrap();
        assert_eq!(a.code, AamiClass::from_label(class as u32).unwrap().code());
        let p: f32 = row[3..8].iter().map(|v| v.parse::<f32>().unwrap()).sum();
        assert!((p - 1.0).abs() < 1e-4, "probabilities sum to 1: {row:?}");
        // then the beat's R–R features: pre-RR in seconds, and its ratio to the record's mean,
        // and last the decision's confidence: its probability minus the next one's
        assert_eq!(row.len(), 8 + 9 + 1, "{row:?}");
        let probs: Vec<f32> = row[3..8].iter().map(|v| v.parse().unwrap()).collect();
        let next = (0..5)
            .filter(|&c| c != class)
            .map(|c| probs[c])
            .fold(0.0f32, f32::max);
        let confidence: f32 = row[17].parse().unwrap();
        assert!(
            (confidence - (probs[class] - next).max(0.0)).abs() < 2e-4,
            "{row:?}"
        );
        let (pre, record_rr, ratio) = (
            row[8].parse::<f32>().unwrap(),
            row[11].parse::<f32>().unwrap(),
            row[12].parse::<f32>().unwrap(),
        );
        assert!(
            (0.2..=3.0).contains(&pre) && (ratio - pre / record_rr).abs() < 2e-3,
            "{row:?}"
        );
        // Every prediction sits on an annotated beat of the reference, with its class.
        let truth = reference.iter().find(|r| r.sample == a.sample).unwrap();
        let truth_class = AamiClass::from_code(truth.code).unwrap();
        assert_eq!(
            row[1],
            ["N", "S", "V", "F", "Q"][truth_class.label() as usize]
        );
    }
    assert!(
        out.join("232.hea").is_file(),
        "header copied for WFDB tools"
    );

    // Ready-made beats in the common CSV layout: one row of probabilities per beat.
    let beats_csv = run.join("beats.csv");
    let rows: String = (0..7)
        .map(|i| {
            let samples: Vec<String> = (0..187)
                .map(|t| format!("{}", ((t * (i + 1)) % 50) as f32 / 50.0))
                .collect();
            format!("{},{}\n", samples.join(","), i % 5)
        })
        .collect();
    std::fs::write(&beats_csv, rows).unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_ecgwgpu"))
        .args(["predict", "--checkpoint"])
        .arg(run.join("best.safetensors"))
        .arg("--beats-csv")
        .arg(&beats_csv)
        .arg("--out-dir")
        .arg(&out)
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    let csv = std::fs::read_to_string(out.join("beats_pred.csv")).unwrap();
    assert_eq!(csv.lines().count(), 1 + 7);
    assert!(
        !out.join("beats.pred").exists(),
        "no annotation file without a record"
    );

    // Without reference annotations, the detector's beats are classified.
    let bare = run.join("bare");
    std::fs::create_dir_all(&bare).unwrap();
    for ext in ["hea", "dat"] {
        std::fs::copy(record.with_extension(ext), bare.join(format!("232.{ext}"))).unwrap();
    }
    let output = predict(&run.join("best.safetensors"), &bare.join("232"), &bare);
    assert!(output.status.success(), "{output:?}");
    let detected = annotation::read(&bare.join("232.pred")).unwrap();
    let ratio = detected.len() as f64 / written.len() as f64;
    assert!(
        (0.98..1.02).contains(&ratio),
        "{} detected vs {} annotated",
        detected.len(),
        written.len()
    );
    let csv = std::fs::read_to_string(bare.join("232_pred.csv")).unwrap();
    assert!(
        csv.lines().skip(1).all(|l| l.split(',').nth(1) == Some("")),
        "no reference class"
    );

    // An EDF+ file (written by pyedflib): its MLII signal, at the beats its EDF+ annotations
    // label (WFDB mnemonics), with their reference class; CSV only.
    let edf = Path::new(env!("CARGO_MANIFEST_DIR")).join("data/edf/208-10s-pyedflib.edf");
    let output = predict(&run.join("best.safetensors"), &edf, &bare);
    assert!(output.status.success(), "{output:?}");
    let csv = std::fs::read_to_string(bare.join("208-10s-pyedflib_pred.csv")).unwrap();
    let reference_208 = annotation::read(&record.with_file_name("208.atr")).unwrap();
    let rows: Vec<Vec<&str>> = csv
        .lines()
        .skip(1)
        .map(|l| l.split(',').collect())
        .collect();
    let beats_in_10s = reference_208
        .iter()
        .filter(|a| a.sample < 3600 && AamiClass::from_code(a.code).is_some())
        .count();
    assert_eq!(rows.len(), beats_in_10s, "{csv}");
    for row in &rows {
        let sample: u64 = row[0].parse().unwrap();
        let truth = reference_208.iter().find(|r| r.sample == sample).unwrap();
        let class = AamiClass::from_code(truth.code).unwrap();
        assert_eq!(row[1], ["N", "S", "V", "F", "Q"][class.label() as usize]);
    }
    assert!(String::from_utf8_lossy(&output.stderr).contains("'MLII' at 360 Hz"));

    // A directory: every WFDB record and EDF file in it; one that cannot be read is skipped
    // with a line naming it, and a summary counts them; --strict makes that an error.
    let many = run.join("many");
    std::fs::create_dir_all(&many).unwrap();
    for ext in ["hea", "dat", "atr"] {
        std::fs::copy(record.with_extension(ext), many.join(format!("232.{ext}"))).unwrap();
    }
    std::fs::copy(&edf, many.join("holter.edf")).unwrap();
    std::fs::write(
        many.join("999.hea"),
        "999 1 360 1000\n999.dat 99 200 11 0 0 0 0 MLII\n",
    )
    .unwrap();
    let predict_dir = |strict: bool| {
        let mut c = Command::new(env!("CARGO_BIN_EXE_ecgwgpu"));
        c.args(["predict", "--checkpoint"])
            .arg(run.join("best.safetensors"))
            .arg("--record")
            .arg(&many)
            .arg("--out-dir")
            .arg(many.join("out"));
        if strict {
            c.arg("--strict");
        }
        c.output().unwrap()
    };
    let output = predict_dir(false);
    assert!(output.status.success(), "{output:?}");
    let (stdout, stderr) = (
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr),
    );
    assert!(
        stdout.contains("2 of 3 recordings classified") && stdout.contains("skipped: 999"),
        "{stdout}"
    );
    assert!(
        stderr.contains("999.hea") && stderr.contains("unsupported signal format 99"),
        "{stderr}"
    );
    for file in ["232_pred.csv", "232.pred", "holter_pred.csv"] {
        assert!(many.join("out").join(file).is_file(), "{file}");
    }
    let output = predict_dir(true);
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("999.hea"));

    // An annotation at the end of the signal drops only its beat, said on stderr and counted in
    // the record's line; --strict refuses the record.
    let past = run.join("past");
    std::fs::create_dir_all(&past).unwrap();
    for ext in ["hea", "dat"] {
        std::fs::copy(record.with_extension(ext), past.join(format!("232.{ext}"))).unwrap();
    }
    let mut annotations = reference.clone();
    annotations.push(annotation::Annotation::new(650_000, AamiClass::N.code()));
    std::fs::write(past.join("232.atr"), annotation::encode(&annotations)).unwrap();
    let output = predict(&run.join("best.safetensors"), &past.join("232"), &past);
    assert!(output.status.success(), "{output:?}");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("1 annotation at or past the end of the signal (1 beats, dropped)"),
        "{stderr}"
    );
    assert!(String::from_utf8_lossy(&output.stdout).contains("past the end"));
    assert_eq!(
        annotation::read(&past.join("232.pred")).unwrap().len(),
        written.len(),
        "the same beats as without it"
    );
    let strict = Command::new(env!("CARGO_BIN_EXE_ecgwgpu"))
        .args(["predict", "--strict", "--checkpoint"])
        .arg(run.join("best.safetensors"))
        .arg("--record")
        .arg(past.join("232"))
        .arg("--out-dir")
        .arg(&past)
        .output()
        .unwrap();
    assert!(!strict.status.success());
    assert!(String::from_utf8_lossy(&strict.stderr).contains("past the end"));

    let missing = Command::new(env!("CARGO_BIN_EXE_ecgwgpu"))
        .args(["predict", "--checkpoint"])
        .arg(run.join("best.safetensors"))
        .args(["--record", "/nonexistent/100"])
        .output()
        .unwrap();
    assert!(!missing.status.success());
    assert!(String::from_utf8_lossy(&missing.stderr).contains("/nonexistent"));
}

#[test]
fn transfer_fine_tunes_only_the_layers_it_should() {
    let source = temp_run("transfer-source");
    assert!(train_tiny(&source, &["--epochs", "1"]).status.success());
    let (before, _) = checkpoint::load(&source.join("best.safetensors")).unwrap();
    let transfer = |name: &str, extra: &[&str]| {
        let out = temp_run(name);
        let output = Command::new(env!("CARGO_BIN_EXE_ecgwgpu"))
            .args(["transfer", "--epochs", "1", "--lr", "1e-3", "--from"])
            .arg(source.join("best.safetensors"))
            .arg("--out")
            .arg(&out)
            .args(extra)
            .output()
            .unwrap();
        assert!(output.status.success(), "{output:?}");
        let (after, _) = checkpoint::load(&out.join("last.safetensors")).unwrap();
        (out, after)
    };
    let changed = |after: &[NamedTensor], name: &str| {
        let a = after.iter().find(|t| t.name == name).unwrap();
        let b = before.iter().find(|t| t.name == name).unwrap();
        a.data != b.data
    };

    // Frozen features, new Dense_2: convolutions bit for bit, Dense_1 fine-tuned, 2 outputs.
    let (out, after) = transfer("transfer-frozen", &["--freeze-features"]);
    for t in after.iter().filter(|t| t.name.starts_with("conv")) {
        assert!(!changed(&after, &t.name), "{} moved while frozen", t.name);
    }
    assert!(changed(&after, "dense1.weight"));
    let head = after.iter().find(|t| t.name == "dense2.weight").unwrap();
    assert_eq!(head.shape, vec![2, 16]);
    let metrics = read_json(&out.join("metrics.json"));
    let beats = metrics["beat"]["n"].as_u64().unwrap();
    assert_eq!(beats, metrics["test_beats"].as_u64().unwrap());
    assert_eq!(
        metrics["record"]["n"], 3,
        "fold 10 of the embedded subset holds 3 records"
    );
    let confusion: Vec<Vec<u64>> =
        serde_json::from_value(metrics["beat"]["confusion"].clone()).unwrap();
    assert_eq!(confusion.iter().flatten().sum::<u64>(), beats);
    assert!(out.join("figures/confusion.png").is_file());
    // evaluate recognises the two-class model and re-creates the patient split.
    let output = Command::new(env!("CARGO_BIN_EXE_ecgwgpu"))
        .args(["evaluate", "--json", "--bootstrap", "30", "--checkpoint"])
        .arg(out.join("best.safetensors"))
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    let evaluated: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(evaluated["beat"], metrics["beat"]);
    assert_eq!(evaluated["record"], metrics["record"]);
    for key in ["beat_accuracy", "record_accuracy", "beat_f1"] {
        let ci = &evaluated["ci95"][key];
        let (lo, hi) = (ci[0].as_f64().unwrap(), ci[1].as_f64().unwrap());
        assert!((0.0..=hi).contains(&lo) && hi <= 1.0, "{key}: {ci}");
    }
    let output = Command::new(env!("CARGO_BIN_EXE_ecgwgpu"))
        .args(["evaluate", "--per-record", "--checkpoint"])
        .arg(out.join("best.safetensors"))
        .output()
        .unwrap();
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("already has its figures per record"));

    // Slower features: they move too.
    let (_, after) = transfer(
        "transfer-slow",
        &["--feature-lr-scale", "0.1", "--head", "dense1"],
    );
    assert!(changed(&after, "conv1_1.weight"));

    // Kaggle-style ptbdb_normal.csv / ptbdb_abnormal.csv: a beat split, from scratch.
    let dir = temp_run("transfer-csv");
    std::fs::create_dir_all(&dir).unwrap();
    for (name, label) in [("ptbdb_normal.csv", 0), ("ptbdb_abnormal.csv", 1)] {
        let rows: String = (0..60)
            .map(|i| {
                let beat: Vec<String> = (0..187)
                    .map(|t| format!("{}", ((t * (label + 1) + i) % 40) as f32 / 40.0))
                    .collect();
                format!("{},{label}\n", beat.join(","))
            })
            .collect();
        std::fs::write(dir.join(name), rows).unwrap();
    }
    let output = Command::new(env!("CARGO_BIN_EXE_ecgwgpu"))
        .args([
            "transfer",
            "--preset",
            "tiny",
            "--epochs",
            "1",
            "--split",
            "beat",
            "--beats-csv",
        ])
        .arg(dir.join("ptbdb_normal.csv"))
        .arg(dir.join("ptbdb_abnormal.csv"))
        .arg("--out")
        .arg(dir.join("run"))
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    let metrics: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("run/metrics.json")).unwrap())
            .unwrap();
    assert_eq!(metrics["test_beats"], 24, "20 % of 120 beats, stratified");
    assert!(metrics["record"].is_null(), "no records to vote over");

    // CSV beats have no patients: a patient split is refused.
    let output = Command::new(env!("CARGO_BIN_EXE_ecgwgpu"))
        .args(["transfer", "--beats-csv", "x.csv"])
        .output()
        .unwrap();
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("--split beat"));
}

#[test]
fn bench_reports_throughput_and_memory_as_json() {
    let output = Command::new(env!("CARGO_BIN_EXE_ecgwgpu"))
        .args([
            "bench",
            "--preset",
            "tiny",
            "--batch",
            "16",
            "--infer-batch",
            "32",
        ])
        .args(["--repeats", "2", "--members", "3", "--json"])
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(report["members"], 3);
    for key in [
        "train_beats_per_s",
        "infer_beats_per_s",
        "warmup_s",
        "grouped_infer_beats_per_s",
        "member_by_member_infer_beats_per_s",
    ] {
        assert!(report[key].as_f64().unwrap() > 0.0, "{key}: {report}");
    }
    assert_eq!(report["preset"], "tiny");
    assert_eq!(report["batch"], 16);
    assert!(report["device"].as_str().unwrap().len() > 3);
    // At least the parameters, their gradients and Adam's two moments.
    let params = 6593u64 * 4;
    assert!(
        report["gpu_buffer_bytes"].as_u64().unwrap() >= 4 * params,
        "{report}"
    );
}

/// The dual-stream network from the command line: its checkpoint carries the rhythm stream
/// (config and Dense_1's wider weight), `evaluate` reproduces the run's test figures from it, and
/// `predict` classifies a record with the R–R features of its annotations.
#[test]
fn dual_stream_model_trains_evaluates_and_predicts() {
    let out = temp_run("dual-stream");
    let output = Command::new(env!("CARGO_BIN_EXE_ecgwgpu"))
        .args([
            "train", "--preset", "tiny-rr", "--epochs", "1", "--lr", "1e-3", "--out",
        ])
        .arg(&out)
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    let (tensors, meta) = checkpoint::load(&out.join("best.safetensors")).unwrap();
    let config: serde_json::Value = serde_json::from_str(&meta["model"]).unwrap();
    assert_eq!(config["rr_features"], 8);
    let dense1 = tensors.iter().find(|t| t.name == "dense1.weight").unwrap();
    // tiny: 8 channels × 46 samples after two pairs, then the 8 rhythm features
    assert_eq!(dense1.shape, vec![16, 8 * 46 + 8]);

    let metrics = read_json(&out.join("metrics.json"));
    let evaluated = evaluate_json(&out.join("best.safetensors"));
    assert_eq!(evaluated["beats"], metrics["test_beats"]);
    assert_eq!(evaluated["confusion"], metrics["confusion"]);

    let record = Path::new(env!("CARGO_MANIFEST_DIR")).join("data/mitdb/232");
    let output = predict(&out.join("best.safetensors"), &record, &out);
    assert!(output.status.success(), "{output:?}");
    let csv = std::fs::read_to_string(out.join("232_pred.csv")).unwrap();
    assert!(csv.lines().count() > 1000, "record 232 has ~1780 beats");

    // Another database, as a user points the tools at one: 250 Hz, the lead named ECG1. The model
    // runs on it unchanged, and the R–R features come from its own annotations: in seconds they
    // are the 360-Hz record's, within the 4 ms that rounding a position to 250 Hz can move them.
    let (orig, other) = (out.join("orig"), out.join("other"));
    for name in ["208", "232"] {
        write_at_rate(&embedded_dir().join(name), &other, 250.0, "ECG1");
        std::fs::create_dir_all(&orig).unwrap();
        for ext in ["hea", "dat", "atr"] {
            let file = format!("{name}.{ext}");
            std::fs::copy(embedded_dir().join(&file), orig.join(&file)).unwrap();
        }
    }
    let output = Command::new(env!("CARGO_BIN_EXE_ecgwgpu"))
        .args([
            "evaluate",
            "--json",
            "--split",
            "all",
            "--lead",
            "ECG1",
            "--checkpoint",
        ])
        .arg(out.join("best.safetensors"))
        .arg("--data-dir")
        .arg(&other)
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    let evaluated: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let export = |dir: &Path, lead: &str| -> Vec<Vec<f64>> {
        let csv = out.join(format!("{lead}.csv"));
        let status = Command::new(env!("CARGO_BIN_EXE_ecgwgpu"))
            .args(["data", "export", "--rr", "--lead", lead, "--data-dir"])
            .arg(dir)
            .arg("--out")
            .arg(&csv)
            .status()
            .unwrap();
        assert!(status.success());
        std::fs::read_to_string(&csv)
            .unwrap()
            .lines()
            .map(|l| l.split(',').skip(187).map(|v| v.parse().unwrap()).collect())
            .collect()
    };
    let (at_360, at_250) = (export(&orig, "MLII"), export(&other, "ECG1"));
    assert_eq!(evaluated["beats"].as_u64().unwrap() as usize, at_250.len());
    assert_eq!(at_360.len(), at_250.len());
    for (i, (a, b)) in at_360.iter().zip(&at_250).enumerate() {
        // nine R–R features, then the label
        assert_eq!(a[9], b[9], "beat {i}: label");
        for k in 0..4 {
            assert!(
                (a[k] - b[k]).abs() <= 0.0041,
                "beat {i}, feature {k}: {a:?} vs {b:?}"
            );
        }
    }
}

/// Writes record `record`'s first signal resampled to `fs` Hz as WFDB format 16 named `lead`,
/// with its annotations moved to the new rate, into `dir`.
fn write_at_rate(record: &Path, dir: &Path, fs: f64, lead: &str) {
    use ecgwgpu::data::formats::wfdb::Record;
    use ecgwgpu::data::signal::resample::resample;
    std::fs::create_dir_all(dir).unwrap();
    let name = record.file_name().unwrap().to_str().unwrap();
    let rec = Record::read(record, Some(&[0])).unwrap();
    let x: Vec<i16> = resample(&rec.physical(0), rec.header.fs, fs)
        .iter()
        .map(|&v| (v * 200.0).round() as i16)
        .collect();
    let dat: Vec<u8> = x.iter().flat_map(|v| v.to_le_bytes()).collect();
    std::fs::write(dir.join(format!("{name}.dat")), dat).unwrap();
    let header = format!(
        "{name} 1 {fs} {}\n{name}.dat 16 200 16 0 {} 0 0 {lead}\n",
        x.len(),
        x[0]
    );
    std::fs::write(dir.join(format!("{name}.hea")), header).unwrap();
    let mut annotations = annotation::read(&record.with_extension("atr")).unwrap();
    for a in &mut annotations {
        a.sample = (a.sample as f64 * fs / rec.header.fs).round() as u64;
    }
    std::fs::write(
        dir.join(format!("{name}.atr")),
        annotation::encode(&annotations),
    )
    .unwrap();
}

/// A network on beats relative to their record's median beat (`--beat-reference record-median`):
/// the checkpoint records it, `evaluate` applies it and reproduces the run's test figures,
/// `data export` writes the beats so, and `predict` streams a record through the same transform
/// (median first, then classification, a chunk at a time) to the probabilities the exported
/// rows give. CSV beats, which name no record, are refused for training.
#[test]
fn beats_relative_to_the_record_median_agree_across_train_evaluate_export_and_predict() {
    let out = temp_run("relative");
    let bin = env!("CARGO_BIN_EXE_ecgwgpu");
    let output = Command::new(bin)
        .args([
            "train", "--preset", "tiny-rr", "--epochs", "1", "--lr", "1e-3",
        ])
        .args(["--beat-reference", "record-median", "--out"])
        .arg(&out)
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    let checkpoint = out.join("best.safetensors");
    let (_, meta) = checkpoint::load(&checkpoint).unwrap();
    let config: serde_json::Value = serde_json::from_str(&meta["model"]).unwrap();
    assert_eq!(config["beat_reference"], "record-median");

    let metrics = read_json(&out.join("metrics.json"));
    let evaluated = evaluate_json(&checkpoint);
    assert_eq!(evaluated["confusion"], metrics["confusion"]);
    let selection = evaluated["selection"].as_str().unwrap();
    assert!(
        selection.contains("relative to its record's median beat"),
        "{selection}"
    );

    // Record 232 alone, exported raw and relative: relative = (raw - median) / 2 + 0.5, with the
    // median computed here.
    let dir = out.join("232");
    std::fs::create_dir_all(&dir).unwrap();
    for ext in ["hea", "dat", "atr"] {
        std::fs::copy(
            embedded_dir().join(format!("232.{ext}")),
            dir.join(format!("232.{ext}")),
        )
        .unwrap();
    }
    let export = |name: &str, reference: &str| -> (std::path::PathBuf, Vec<Vec<f64>>) {
        let csv = out.join(name);
        let output = Command::new(bin)
            .args([
                "data",
                "export",
                "--rr",
                "--beat-reference",
                reference,
                "--data-dir",
            ])
            .arg(&dir)
            .arg("--out")
            .arg(&csv)
            .output()
            .unwrap();
        assert!(output.status.success(), "{output:?}");
        let rows = std::fs::read_to_string(&csv)
            .unwrap()
            .lines()
            .map(|l| l.split(',').map(|v| v.parse().unwrap()).collect())
            .collect();
        (csv, rows)
    };
    let (_, raw) = export("raw.csv", "none");
    let (relative_csv, relative) = export("relative.csv", "record-median");
    assert_eq!(raw.len(), relative.len());
    for j in 0..187 {
        let mut column: Vec<f64> = raw.iter().map(|r| r[j]).collect();
        column.sort_by(f64::total_cmp);
        let n = column.len();
        let median = (column[(n - 1) / 2] + column[n / 2]) / 2.0;
        for (i, (r, q)) in raw.iter().zip(&relative).enumerate().step_by(97) {
            let expected = (r[j] - median) / 2.0 + 0.5;
            // the CSV holds 6 decimals
            assert!((q[j] - expected).abs() < 2e-6, "beat {i}, sample {j}");
        }
    }
    // R–R features and labels unchanged
    assert!(raw.iter().zip(&relative).all(|(r, q)| r[187..] == q[187..]));

    // predict streams the record in 60-s chunks: the same probabilities as the exported rows
    let probabilities = |csv: &Path| -> Vec<String> {
        std::fs::read_to_string(csv)
            .unwrap()
            .lines()
            .skip(1)
            .map(|l| l.split(',').skip(3).take(5).collect::<Vec<_>>().join(","))
            .collect()
    };
    let output = Command::new(bin)
        .args(["predict", "--chunk-seconds", "60", "--checkpoint"])
        .arg(&checkpoint)
        .arg("--record")
        .arg(dir.join("232"))
        .arg("--out-dir")
        .arg(&out)
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    let streamed = probabilities(&out.join("232_pred.csv"));
    let output = Command::new(bin)
        .args(["predict", "--annotator", "rows", "--checkpoint"])
        .arg(&checkpoint)
        .arg("--beats-csv")
        .arg(&relative_csv)
        .arg("--out-dir")
        .arg(&out)
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    let from_rows = probabilities(&out.join("relative_rows.csv"));
    assert_eq!(streamed.len(), raw.len());
    // the exported rows carry 6 decimals, so a probability may move in its last digit
    let close = |a: &str, b: &str| {
        a.split(',')
            .zip(b.split(','))
            .all(|(x, y)| (x.parse::<f64>().unwrap() - y.parse::<f64>().unwrap()).abs() < 1e-5)
    };
    for (i, (a, b)) in streamed.iter().zip(&from_rows).enumerate() {
        assert!(
            close(a, b),
            "beat {i}: {a} streamed, {b} from the exported rows"
        );
    }

    let output = Command::new(bin)
        .args([
            "train",
            "--preset",
            "tiny",
            "--beat-reference",
            "record-median",
        ])
        .arg("--train-csv")
        .arg(&relative_csv)
        .arg("--test-csv")
        .arg(&relative_csv)
        .arg("--out")
        .arg(out.join("csv-run"))
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("no record"), "{stderr}");
}

/// A network with a rhythm head (`--rhythm-head`) from the command line: its checkpoint holds the
/// head, `evaluate` reproduces the run's test figures from it, and `transfer` gives the head's
/// output layer two fresh classes like the classifier's while keeping its first layer.
#[test]
fn rhythm_head_trains_evaluates_and_transfers() {
    let out = temp_run("rhythm-head");
    let bin = env!("CARGO_BIN_EXE_ecgwgpu");
    let output = Command::new(bin)
        .args(["train", "--preset", "tiny-rr", "--rhythm-head", "4"])
        .args(["--epochs", "1", "--lr", "1e-3", "--out"])
        .arg(&out)
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    let checkpoint = out.join("best.safetensors");
    let (tensors, meta) = checkpoint::load(&checkpoint).unwrap();
    let config: serde_json::Value = serde_json::from_str(&meta["model"]).unwrap();
    assert_eq!(config["rhythm_head"], 4);
    let shape =
        |ts: &[NamedTensor], name: &str| ts.iter().find(|t| t.name == name).unwrap().shape.clone();
    assert_eq!(shape(&tensors, "rhythm1.weight"), vec![4, 8]);
    assert_eq!(shape(&tensors, "rhythm2.weight"), vec![5, 4]);

    let metrics = read_json(&out.join("metrics.json"));
    let evaluated = evaluate_json(&checkpoint);
    assert_eq!(evaluated["confusion"], metrics["confusion"]);

    let mi = out.join("mi");
    let output = Command::new(bin)
        .args([
            "transfer",
            "--epochs",
            "1",
            "--lr",
            "1e-3",
            "--freeze-features",
        ])
        .arg("--from")
        .arg(&checkpoint)
        .arg("--out")
        .arg(&mi)
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    let (after, _) = checkpoint::load(&mi.join("last.safetensors")).unwrap();
    assert_eq!(shape(&after, "rhythm2.weight"), vec![2, 4]);
    let data =
        |ts: &[NamedTensor], name: &str| ts.iter().find(|t| t.name == name).unwrap().data.clone();
    assert_eq!(
        data(&after, "conv1_1.weight"),
        data(&tensors, "conv1_1.weight")
    );
}

/// `train --calibrate`: the offsets chosen on the validation beats go into best.safetensors and
/// metrics.json (with the test figures without them), and `evaluate` reproduces the run's test
/// figures with them. `evaluate` and `predict` decide with a checkpoint's offsets: a large S
/// offset makes every beat S.
#[test]
fn calibrated_decisions_travel_with_the_checkpoint() {
    let out = temp_run("calibrate");
    let bin = env!("CARGO_BIN_EXE_ecgwgpu");
    let output = Command::new(bin)
        .args([
            "train",
            "--preset",
            "tiny-rr",
            "--calibrate",
            "--epochs",
            "1",
        ])
        .args(["--lr", "1e-3", "--out"])
        .arg(&out)
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        stdout.contains("decision offsets chosen on the validation beats"),
        "{stdout}"
    );
    let checkpoint = out.join("best.safetensors");
    let (tensors, meta) = checkpoint::load(&checkpoint).unwrap();
    let mut config: serde_json::Value = serde_json::from_str(&meta["model"]).unwrap();
    let offsets = config["decision_offsets"].as_array().unwrap().clone();
    assert_eq!(offsets.len(), 5);
    assert_eq!(
        (offsets[0].as_f64(), offsets[4].as_f64()),
        (Some(0.0), Some(0.0))
    );
    let metrics = read_json(&out.join("metrics.json"));
    assert_eq!(
        metrics["decision_offsets"],
        serde_json::Value::Array(offsets)
    );
    assert!(metrics["uncalibrated"]["confusion"].is_array());
    assert_eq!(
        evaluate_json(&checkpoint)["confusion"],
        metrics["confusion"]
    );

    let forced = out.join("forced.safetensors");
    config["decision_offsets"] = serde_json::json!([0.0, 50.0, 0.0, 0.0, 0.0]);
    let mut meta = meta.clone();
    meta.insert("model".into(), config.to_string());
    checkpoint::save(&forced, &tensors, &meta).unwrap();
    let confusion = evaluate_json(&forced)["confusion"].clone();
    for row in confusion.as_array().unwrap() {
        let row: Vec<u64> = row
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_u64().unwrap())
            .collect();
        assert_eq!(
            row.iter().sum::<u64>(),
            row[1],
            "every beat called S: {row:?}"
        );
    }
    let record = embedded_dir().join("232");
    let output = predict(&forced, &record, &out);
    assert!(output.status.success(), "{output:?}");
    let csv = std::fs::read_to_string(out.join("232_pred.csv")).unwrap();
    assert!(csv
        .lines()
        .skip(1)
        .all(|l| l.split(',').nth(2) == Some("S")));
}

#[test]
fn a_centred_network_is_evaluated_and_predicted_on_centred_beats_without_being_told() {
    let out = temp_run("centred");
    let run = train_tiny(&out, &["--epochs", "1", "--mode", "centred"]);
    assert!(run.status.success(), "{run:?}");
    let best = out.join("best.safetensors");
    let (_, meta) = checkpoint::load(&best).unwrap();
    let pre: serde_json::Value = serde_json::from_str(&meta["preprocessing"]).unwrap();
    assert_eq!(pre["beat_mode"], "centred");
    assert_eq!(pre["lead"], "MLII");
    assert_eq!(
        pre["class_names"],
        serde_json::json!(["N", "S", "V", "F", "Q"])
    );

    // evaluate without --mode: the run's own test figures
    let metrics = read_json(&out.join("metrics.json"));
    let evaluated = evaluate_json(&best);
    assert_eq!(evaluated["confusion"], metrics["confusion"]);
    assert_eq!(evaluated["accuracy"], metrics["accuracy"]);

    // predict without --mode cuts the beats as --mode centred does
    let record = embedded_dir().join("232");
    let (plain, told) = (out.join("plain"), out.join("told"));
    assert!(predict(&best, &record, &plain).status.success());
    let output = Command::new(env!("CARGO_BIN_EXE_ecgwgpu"))
        .args(["predict", "--mode", "centred", "--checkpoint"])
        .arg(&best)
        .arg("--record")
        .arg(&record)
        .arg("--out-dir")
        .arg(&told)
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    let csv = |dir: &Path| std::fs::read_to_string(dir.join("232_pred.csv")).unwrap();
    assert_eq!(csv(&plain), csv(&told));

    // a contradicting flag is refused, naming both values
    for command in ["evaluate", "predict"] {
        let mut refused = Command::new(env!("CARGO_BIN_EXE_ecgwgpu"));
        refused
            .args([command, "--mode", "kachuee", "--checkpoint"])
            .arg(&best);
        if command == "predict" {
            refused
                .arg("--record")
                .arg(&record)
                .arg("--out-dir")
                .arg(&plain);
        }
        let output = refused.output().unwrap();
        assert!(!output.status.success(), "{command}: {output:?}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            stderr.contains("--mode kachuee") && stderr.contains("centred"),
            "{command}: {stderr}"
        );
    }
}

/// A calibrated two-fold ensemble of the embedded DS1 records (208 and 209), one epoch.
const CALIBRATED_FOLDS: [&str; 7] = [
    "--epochs",
    "1",
    "--split",
    "inter",
    "--folds",
    "2",
    "--calibrate",
];

#[test]
fn folds_train_an_ensemble_that_evaluate_and_predict_load() {
    let out = temp_run("folds");
    // the embedded DS1 records are 208 and 209: one fold each
    let run = train_tiny(&out, &CALIBRATED_FOLDS);
    assert!(run.status.success(), "{run:?}");
    let metrics = read_json(&out.join("metrics.json"));
    assert_eq!(metrics["folds"], serde_json::json!([["208"], ["209"]]));
    // every DS1 beat predicted once, by the model that did not train on it
    let oof: Vec<Vec<u64>> =
        serde_json::from_value(metrics["out_of_fold"]["confusion"].clone()).unwrap();
    let fold_beats: u64 = ["fold1", "fold2"]
        .iter()
        .map(|f| {
            let c = read_json(&out.join(f).join("config.json"));
            c["class_counts"]["validation"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_u64().unwrap())
                .sum::<u64>()
        })
        .sum();
    assert_eq!(oof.iter().flatten().sum::<u64>(), fold_beats);
    let (_, meta) = checkpoint::load(&out.join("best.safetensors")).unwrap();
    assert_eq!(meta["ensemble"], "2");
    // --calibrate also chose the irregular-rhythm gate out of fold and wrote it in
    let trained_model: serde_json::Value = serde_json::from_str(&meta["model"]).unwrap();
    let chosen = &metrics["irregular_gate"];
    assert!(chosen["macro_f1_by_threshold"].as_array().unwrap().len() > 1);
    // thresholds compared as numbers: the metadata keeps an f32's shortest text
    let same_gate = |a: &serde_json::Value, b: &serde_json::Value| match (a.as_f64(), b.as_f64()) {
        (Some(x), Some(y)) => (x - y).abs() < 1e-6,
        _ => a.is_null() && b.is_null(),
    };
    assert!(same_gate(
        &trained_model["irregular_gate"],
        &chosen["threshold"]
    ));
    let clusters = &metrics["record_clusters"];
    assert_eq!(
        clusters["macro_f1_by_setting"].as_array().unwrap().len(),
        24
    );
    assert_eq!(trained_model["record_clusters"], clusters["smoothing"]);
    // evaluate re-scores DS2 with the ensemble and its offsets
    let evaluated = evaluate_json(&out.join("best.safetensors"));
    assert_eq!(evaluated["confusion"], metrics["confusion"]);
    // --adapt re-creates the out-of-fold predictions from the fold models (the same figures as
    // training wrote) and chooses the per-record adaptation on them, never on DS2
    let adapted = evaluate_json_with(&out.join("best.safetensors"), &["--adapt"]);
    let a = &adapted["adaptation"];
    let unadapted = a["oof_macro_f1_unadapted"].as_f64().unwrap();
    let trained = metrics["out_of_fold_calibrated"]["macro_f1"]
        .as_f64()
        .unwrap();
    assert!(
        (unadapted - trained).abs() < 1e-6,
        "{unadapted} vs {trained}"
    );
    assert_eq!(a["adaptation"]["train_priors"].as_array().unwrap().len(), 5);
    let best = a["oof_macro_f1_by_strength"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p[1].as_f64().unwrap())
        .fold(f64::MIN, f64::max);
    assert_eq!(a["oof_report"]["macro_f1"].as_f64().unwrap(), best);
    assert_eq!(
        adapted["beats"], evaluated["beats"],
        "the same DS2 beats, decided after adaptation"
    );
    // calibrate re-chooses the rule out of fold (the gate, then the record clusters): the same
    // choice as training made, so the written network decides as the trained one; the gate is
    // the one evaluate --gate-irregular chooses
    let calibrated = Command::new(env!("CARGO_BIN_EXE_ecgwgpu"))
        .args(["calibrate", "--checkpoint"])
        .arg(out.join("best.safetensors"))
        .arg("--out")
        .arg(out.join("gated.safetensors"))
        .output()
        .unwrap();
    assert!(calibrated.status.success(), "{calibrated:?}");
    let gated = evaluate_json(&out.join("gated.safetensors"));
    assert_eq!(gated["confusion"], evaluated["confusion"]);
    let gated_here = evaluate_json_with(&out.join("best.safetensors"), &["--gate-irregular"]);
    let (_, meta) = checkpoint::load(&out.join("gated.safetensors")).unwrap();
    let model: serde_json::Value = serde_json::from_str(&meta["model"]).unwrap();
    assert!(same_gate(
        &model["irregular_gate"],
        &gated_here["irregular_gate"]["threshold"]
    ));
    assert!(same_gate(&model["irregular_gate"], &chosen["threshold"]));
    assert_eq!(model["record_clusters"], trained_model["record_clusters"]);
    // the on-time V gate alone, chosen on DS1 read at both leads: the rest of the rule is kept,
    // so at MLII the written network decides DS2 as the trained one
    let v_gated = out.join("v-gated.safetensors");
    let only_v = Command::new(env!("CARGO_BIN_EXE_ecgwgpu"))
        .args([
            "calibrate",
            "--view",
            "V1,V2,V4,V5",
            "--only-other-lead-v-gate",
        ])
        .arg("--checkpoint")
        .arg(out.join("best.safetensors"))
        .arg("--out")
        .arg(&v_gated)
        .output()
        .unwrap();
    assert!(only_v.status.success(), "{only_v:?}");
    let said = String::from_utf8_lossy(&only_v.stdout);
    assert!(said.contains("on-time V gate for other leads"), "{said}");
    let (_, meta) = checkpoint::load(&v_gated).unwrap();
    let v_model: serde_json::Value = serde_json::from_str(&meta["model"]).unwrap();
    for key in ["decision_offsets", "irregular_gate", "record_clusters"] {
        assert_eq!(v_model[key], trained_model[key], "{key}");
    }
    assert_eq!(evaluate_json(&v_gated)["confusion"], evaluated["confusion"]);
    // --out-of-fold scores DS1 as training did, fold by fold; --beats writes every beat it
    // scored, whose columns re-score to the same confusion
    let beats_csv = out.join("oof-beats.csv");
    let oof = evaluate_json_with(
        &out.join("best.safetensors"),
        &["--out-of-fold", "--beats", beats_csv.to_str().unwrap()],
    );
    assert_eq!(
        oof["confusion"],
        metrics["out_of_fold_calibrated"]["confusion"]
    );
    let text = std::fs::read_to_string(&beats_csv).unwrap();
    let mut rows = text.lines();
    let header: Vec<&str> = rows.next().unwrap().split(',').collect();
    assert_eq!(header[..4], ["record", "sample", "annotated", "predicted"]);
    assert_eq!(header.last(), Some(&"confidence"));
    let class = |name: &str| ["N", "S", "V", "F", "Q"].iter().position(|&c| c == name);
    let mut confusion = vec![vec![0u64; 5]; 5];
    let mut records = std::collections::BTreeSet::new();
    for row in rows {
        let cells: Vec<&str> = row.split(',').collect();
        assert_eq!(cells.len(), header.len(), "{row}");
        records.insert(cells[0].to_string());
        confusion[class(cells[2]).unwrap()][class(cells[3]).unwrap()] += 1;
    }
    assert_eq!(serde_json::json!(confusion), oof["confusion"]);
    assert_eq!(records.into_iter().collect::<Vec<_>>(), ["208", "209"]);
    let per_fold = oof["per_fold"]["figures"].as_array().unwrap();
    assert_eq!(per_fold[0][0], "accuracy");
    assert_eq!(per_fold[0][1].as_array().unwrap().len(), 2);
    let auc = oof["s_vs_n_auc"].as_f64().unwrap();
    assert!((0.0..=1.0).contains(&auc), "{auc}");
    assert!(predict(
        &out.join("best.safetensors"),
        &embedded_dir().join("232"),
        &out
    )
    .status
    .success());
    // cross-validation needs the inter-patient split
    let refused = train_tiny(&temp_run("folds-intra"), &["--epochs", "1", "--folds", "2"]);
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("--split inter"));
}

#[test]
fn ensemble_combines_the_fold_ensembles_of_two_seeds() {
    let runs = [temp_run("seed-a"), temp_run("seed-b")];
    for (run, seed) in runs.iter().zip(["1", "2"]) {
        let flags = [
            "--epochs", "1", "--split", "inter", "--folds", "2", "--seed", seed,
        ];
        let trained = train_tiny(run, &flags);
        assert!(trained.status.success(), "{trained:?}");
    }
    let out = temp_run("seeds");
    let combine_into = |checkpoints: &[&Path], out: &Path| {
        let mut command = Command::new(env!("CARGO_BIN_EXE_ecgwgpu"));
        command.arg("ensemble");
        for c in checkpoints {
            command.arg("--checkpoint").arg(c);
        }
        command.arg("--out").arg(out).output().unwrap()
    };
    let combine = |checkpoints: &[&Path]| combine_into(checkpoints, &out);
    let [a, b] = runs.clone().map(|r| r.join("best.safetensors"));
    let combined = combine(&[&a, &b]);
    assert!(combined.status.success(), "{combined:?}");
    let best = out.join("best.safetensors");
    // the members without their rule were a working file
    let names: Vec<_> = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(
        names.iter().filter(|n| n.ends_with(".safetensors")).count(),
        1,
        "{names:?}"
    );
    let (_, meta) = checkpoint::load(&best).unwrap();
    assert_eq!(meta["ensemble"], "4");
    // each DS1 beat out of fold is the mean of the two members (one per seed) that did not
    // train on its record
    let ctx = common::ctx();
    let [oof_a, oof_b, oof] =
        [&a, &b, &best].map(|c| out_of_fold(ctx, c, &Default::default(), 256, |_, _| {}).unwrap());
    assert_eq!(oof.folds.len(), 4);
    assert_eq!(oof.beats.labels, oof_a.beats.labels);
    for ((&m, &x), &y) in oof
        .probabilities
        .iter()
        .zip(&oof_a.probabilities)
        .zip(&oof_b.probabilities)
    {
        assert!((m - (x + y) / 2.0).abs() < 1e-6, "{m} vs mean of {x}, {y}");
    }
    assert_ne!(oof_a.probabilities, oof_b.probabilities, "the seeds differ");
    // DS1 read at both leads: each record again as `RECORD~LEAD` of the same patient, scored by
    // the same members; its MLII beats as before
    let both = Leads {
        views: vec!["V1,V2,V4,V5".into()],
        ..Leads::default()
    };
    let oof_both = out_of_fold(ctx, &a, &both, 256, |_, _| {}).unwrap();
    let own: Vec<usize> = (0..oof_both.beats.len())
        .filter(|&i| !oof_both.beats.record[i].contains('~'))
        .collect();
    assert_eq!(own.len(), oof_a.beats.len());
    assert!(oof_both.beats.len() > own.len(), "no second-lead views");
    let classes = 5;
    for (j, &i) in own.iter().enumerate() {
        let (x, y) = (
            &oof_both.probabilities[i * classes..(i + 1) * classes],
            &oof_a.probabilities[j * classes..(j + 1) * classes],
        );
        assert!(
            x.iter().zip(y).all(|(p, q)| (p - q).abs() < 1e-6),
            "{x:?} vs {y:?}"
        );
    }
    let second = evaluate_json_with(&a, &["--out-of-fold", "--lead", "V1,V2,V4,V5"]);
    let what = second["selection"].as_str().unwrap();
    assert!(what.contains("DS1 read at lead V1,V2,V4,V5"), "{what}");
    // DS1 as another device would have recorded it: the same records, other probabilities
    let device = Leads {
        acquisition: ecgwgpu::data::signal::acquisition::Acquisition {
            rate: Some(250.0),
            noise: ecgwgpu::data::signal::acquisition::NoiseLevel::Strong.noise(),
            seed: 1,
            ..Default::default()
        },
        ..Leads::default()
    };
    let oof_device = out_of_fold(ctx, &a, &device, 256, |_, _| {}).unwrap();
    assert_eq!(oof_device.beats.record, oof_a.beats.record);
    assert_ne!(oof_device.probabilities, oof_a.probabilities);
    let noisy = evaluate_json_with(
        &a,
        &["--out-of-fold", "--resample", "250", "--noise", "strong"],
    );
    let what = noisy["selection"].as_str().unwrap();
    assert!(what.contains("resampled to 250 Hz"), "{what}");
    // DS1's beats where the QRS detector finds them: nearly the annotated beats, each scored
    // against its reference beat, those without one counted apart
    let detected = evaluate_json_with(&a, &["--out-of-fold", "--detect"]);
    let what = detected["selection"].as_str().unwrap();
    assert!(what.contains("beats found by the QRS detector"), "{what}");
    let scored = detected["beats"].as_u64().unwrap() as usize;
    let annotated = oof_a.beats.len();
    assert!(
        scored.abs_diff(annotated) < annotated / 20,
        "{scored} detected beats scored, {annotated} annotated"
    );
    assert!(detected["unreferenced"].is_object(), "{detected}");
    // and each record also as a drawn device: a view of its own, scored by its record's members
    let drawn = Leads {
        device_view: Some(ecgwgpu::data::signal::acquisition::DeviceDraw::new(1)),
        ..Leads::default()
    };
    let oof_drawn = out_of_fold(ctx, &a, &drawn, 256, |_, _| {}).unwrap();
    let views = oof_drawn
        .beats
        .record
        .iter()
        .filter(|r| r.contains("~MLII@"))
        .count();
    assert!(
        views > 0 && views < oof_drawn.beats.len(),
        "{views} device views"
    );
    // the rule is chosen anew on those predictions and written into the combined file; evaluate
    // re-scores DS1 out of fold to the figures the choice reported, and DS2 from the run beside it
    let metrics = read_json(&out.join("metrics.json"));
    assert_eq!(metrics["folds"].as_array().unwrap().len(), 4);
    let model: serde_json::Value = serde_json::from_str(&meta["model"]).unwrap();
    assert_eq!(model["decision_offsets"], metrics["decision_offsets"]);
    assert_eq!(
        model["record_clusters"],
        metrics["record_clusters"]["smoothing"]
    );
    let rescored = evaluate_json_with(&best, &["--out-of-fold"]);
    assert_eq!(
        rescored["confusion"],
        metrics["out_of_fold_calibrated"]["confusion"]
    );
    let ds2 = evaluate_json(&best);
    assert!(ds2["beats"].as_u64().unwrap() > 0);
    // each DS2 record read at its second lead too: more beats, the MLII ones among them
    let both = evaluate_json_with(&best, &["--view", "V1,V2,V4,V5"]);
    assert!(
        both["beats"].as_u64().unwrap() > ds2["beats"].as_u64().unwrap(),
        "{} beats at both leads, {} at MLII",
        both["beats"],
        ds2["beats"]
    );
    // one ensemble, or one whose records differ, is refused with its name
    let one = combine(&[&a]);
    assert!(!one.status.success());
    let plain = temp_run("plain");
    assert!(train_tiny(&plain, &["--epochs", "1"]).status.success());
    let refused = combine(&[&a, &plain.join("best.safetensors")]);
    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        stderr.contains("plain") && stderr.contains("ensemble"),
        "{stderr}"
    );
    // nor is an input's own run directory written over
    let over = combine_into(&[&a, &b], &runs[0]);
    assert!(!over.status.success());
    assert!(String::from_utf8_lossy(&over.stderr).contains("output directory"));
    assert_eq!(
        read_json(&runs[0].join("metrics.json"))["folds"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
}

/// `evaluate --resample --noise --detect`: the shipped model on recordings "from another
/// device", beats from the QRS detector; a record without annotations is classified and its
/// beats counted, not scored. Bad combinations are refused before any work.
#[test]
fn evaluate_reads_records_as_another_device_would() {
    let dir = temp_run("other-device");
    std::fs::create_dir_all(&dir).unwrap();
    for (name, with_atr) in [("232", true), ("107", false)] {
        let exts: &[&str] = if with_atr {
            &["hea", "dat", "atr"]
        } else {
            &["hea", "dat"]
        };
        for ext in exts {
            std::fs::copy(
                embedded_dir().join(format!("{name}.{ext}")),
                dir.join(format!("{name}.{ext}")),
            )
            .unwrap();
        }
    }
    let evaluate = |extra: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_ecgwgpu"))
            .args(["evaluate", "--json", "--data-dir"])
            .arg(&dir)
            .args(extra)
            .output()
            .unwrap()
    };
    let output = evaluate(&[
        "--split",
        "all",
        "--resample",
        "250",
        "--noise",
        "typical",
        "--detect",
    ]);
    assert!(output.status.success(), "{output:?}");
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let selection = report["selection"].as_str().unwrap();
    assert!(
        selection.contains("resampled to 250 Hz") && selection.contains("QRS detector"),
        "{selection}"
    );
    // 232's 1,780 reference beats, nearly all found; 107's beats have no reference
    let scored = report["beats"].as_u64().unwrap();
    assert!((1700..=1780).contains(&scored), "{scored} beats scored");
    let unreferenced = &report["unreferenced"];
    let per_record = unreferenced["per_record"].as_array().unwrap();
    assert_eq!(per_record[0][0], "107", "{unreferenced}");
    assert!(per_record[0][1].as_u64().unwrap() > 2000, "{unreferenced}");
    let decided: u64 = unreferenced["decided"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d[1].as_u64().unwrap())
        .sum();
    assert_eq!(decided, unreferenced["beats"].as_u64().unwrap());

    for (bad, says) in [
        (&["--split", "all", "--resample", "10"][..], "--resample 10"),
        (&["--detect", "--split", "intra"][..], "--split inter"),
    ] {
        let output = evaluate(bad);
        assert!(!output.status.success(), "{bad:?} accepted");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains(says), "{bad:?}: {stderr}");
    }
}

/// `distil`: fold students towards a fold ensemble's out-of-fold probabilities, their rule
/// chosen out of fold, and one student on all of DS1 that evaluate re-scores.
#[test]
fn distil_trains_one_student_on_the_teachers_out_of_fold_probabilities() {
    let teacher_dir = temp_run("teacher");
    let trained = train_tiny(&teacher_dir, &CALIBRATED_FOLDS);
    assert!(trained.status.success(), "{trained:?}");
    let teacher = teacher_dir.join("best.safetensors");
    // the targets of DS1's beats are the teacher's out-of-fold probabilities
    let ctx = common::ctx();
    let oof = out_of_fold(ctx, &teacher, &Default::default(), 256, |_, _| {}).unwrap();
    let config =
        ecgwgpu::model::Model::members_from_bytes(ctx, &std::fs::read(&teacher).unwrap(), &teacher)
            .unwrap()[0]
            .config
            .clone();
    let taught = ecgwgpu::train::distil::Teacher::load(ctx, &teacher, &config).unwrap();
    assert_eq!(taught.targets(ctx, &oof.beats).unwrap(), oof.probabilities);
    // same-fold targets: the member that held out those records, on every beat
    let first =
        ecgwgpu::model::Model::members_from_bytes(ctx, &std::fs::read(&teacher).unwrap(), &teacher)
            .unwrap()
            .remove(0);
    let own = ecgwgpu::infer::Classifier::new(ctx, first)
        .unwrap()
        .probabilities(&oof.beats, |_, _| {})
        .unwrap();
    let same = taught.same_fold_targets(ctx, &oof.folds[0], &oof.beats);
    assert_eq!(same.unwrap(), own);
    let none = taught.same_fold_targets(ctx, &["999".to_string()], &oof.beats);
    assert!(none.unwrap_err().to_string().contains("999"));
    // clean targets: only the member that never trained on fold 1's records teaches, and only
    // the beats it held out (here fold 1's own)
    let fold1 = &oof.folds[0];
    let (held, kept): (Vec<usize>, Vec<usize>) =
        (0..oof.beats.len()).partition(|&b| fold1.contains(&oof.beats.record[b]));
    let clean = ecgwgpu::train::distil::clean_targets(
        ctx,
        std::slice::from_ref(&taught),
        fold1,
        &oof.beats.select(&held),
    );
    let own_held: Vec<f32> = held
        .iter()
        .flat_map(|&b| own[b * 5..b * 5 + 5].to_vec())
        .collect();
    assert_eq!(clean.unwrap(), own_held);
    let leaky = ecgwgpu::train::distil::clean_targets(
        ctx,
        std::slice::from_ref(&taught),
        fold1,
        &oof.beats.select(&kept),
    );
    assert!(leaky.unwrap_err().to_string().contains("--clean-teacher"));

    let out = temp_run("distil");
    let distil = |teacher: &Path, out: &Path| {
        Command::new(env!("CARGO_BIN_EXE_ecgwgpu"))
            .args(["distil", "--epochs", "2", "--teacher"])
            .arg(teacher)
            .arg("--out")
            .arg(out)
            .output()
            .unwrap()
    };
    let run = distil(&teacher, &out);
    assert!(run.status.success(), "{run:?}");
    // the default targets leak, and the report says so
    assert!(String::from_utf8_lossy(&run.stdout).contains("flatter"));
    let fold = read_json(&out.join("fold1").join("config.json"));
    assert_eq!(fold["args"]["loss"], "distil");
    assert_eq!(fold["args"]["teacher"], teacher.to_str().unwrap());
    assert_eq!(fold["loss"]["soft_targets"], true);
    // one network, with the rule chosen on the fold students
    let student = out.join("student");
    let metrics = read_json(&student.join("metrics.json"));
    let (_, meta) = checkpoint::load(&student.join("best.safetensors")).unwrap();
    assert!(!meta.contains_key("ensemble"), "{meta:?}");
    let model: serde_json::Value = serde_json::from_str(&meta["model"]).unwrap();
    assert_eq!(
        model["record_clusters"],
        metrics["record_clusters"]["smoothing"]
    );
    let folds_metrics = read_json(&out.join("metrics.json"));
    assert_eq!(
        metrics["out_of_fold_calibrated"],
        folds_metrics["out_of_fold_calibrated"]
    );
    // it trained for the folds' median best epoch, and evaluate scores DS2 as distil did
    let best: Vec<u64> = serde_json::from_value(metrics["fold_best_epochs"].clone()).unwrap();
    assert_eq!(best.len(), 2);
    assert_eq!(metrics["epochs"], *best.iter().min().unwrap());
    assert_eq!(
        read_json(&student.join("history.json"))
            .as_array()
            .unwrap()
            .len() as u64,
        *best.iter().min().unwrap()
    );
    let evaluated = evaluate_json(&student.join("best.safetensors"));
    assert_eq!(evaluated["confusion"], metrics["confusion"]);
    // a single network teaches nothing: it has no out-of-fold predictions
    let refused = distil(
        &student.join("best.safetensors"),
        &temp_run("distil-refused"),
    );
    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(stderr.contains("best.safetensors"), "{stderr}");
}
