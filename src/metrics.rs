//! Classification metrics in the paper's Table 1 layout: per class precision, recall, F1 and
//! one-vs-rest accuracy, plus overall accuracy and macro/weighted averages, from a confusion matrix.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::rng::Rng;

/// `counts[truth][predicted]`.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Confusion {
    pub counts: Vec<Vec<usize>>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ClassMetrics {
    pub class: String,
    pub support: usize,
    pub precision: f64,
    pub recall: f64,
    pub f1: f64,
    /// One-vs-rest accuracy: (TP + TN) / all.
    pub accuracy: f64,
    /// False-positive rate FP / (FP + TN), reported with Se (recall) and +P (precision) by AAMI
    /// EC57.
    pub fpr: f64,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Report {
    pub accuracy: f64,
    pub macro_f1: f64,
    pub weighted_f1: f64,
    pub classes: Vec<ClassMetrics>,
    pub confusion: Vec<Vec<usize>>,
}

impl Confusion {
    pub fn new(truth: &[u32], predicted: &[u32], classes: usize) -> Self {
        let mut counts = vec![vec![0; classes]; classes];
        for (&t, &p) in truth.iter().zip(predicted) {
            counts[t as usize][p as usize] += 1;
        }
        Self { counts }
    }

    pub fn total(&self) -> usize {
        self.counts.iter().flatten().sum()
    }

    /// F1 of class `c` (0 when it is neither present nor predicted).
    pub fn f1(&self, c: usize) -> f64 {
        let tp = self.counts[c][c];
        let row: usize = self.counts[c].iter().sum();
        let col: usize = self.counts.iter().map(|r| r[c]).sum();
        match row + col {
            0 => 0.0,
            n => 2.0 * tp as f64 / n as f64,
        }
    }

    /// Beats on the diagonal.
    pub fn correct(&self) -> usize {
        (0..self.counts.len()).map(|c| self.counts[c][c]).sum()
    }

    /// One matrix per group (record, i.e. patient), in group order; `groups[i]` is beat i's.
    pub fn by_group<'a>(
        truth: &[u32],
        predicted: &[u32],
        groups: &'a [String],
        classes: usize,
    ) -> BTreeMap<&'a str, Confusion> {
        let mut per_group: BTreeMap<&str, Confusion> = BTreeMap::new();
        for ((&t, &p), g) in truth.iter().zip(predicted).zip(groups) {
            per_group
                .entry(g.as_str())
                .or_insert_with(|| Confusion {
                    counts: vec![vec![0; classes]; classes],
                })
                .counts[t as usize][p as usize] += 1;
        }
        per_group
    }

    /// Metrics per class; a ratio with a zero denominator is reported as 0.
    pub fn report(&self, names: &[&str]) -> Report {
        let n = self.counts.len();
        let total = self.total();
        let ratio = |a: usize, b: usize| if b == 0 { 0.0 } else { a as f64 / b as f64 };
        let classes: Vec<ClassMetrics> = (0..n)
            .map(|c| {
                let tp = self.counts[c][c];
                let support: usize = self.counts[c].iter().sum();
                let predicted: usize = (0..n).map(|t| self.counts[t][c]).sum();
                let (precision, recall) = (ratio(tp, predicted), ratio(tp, support));
                let f1 = if precision + recall > 0.0 {
                    2.0 * precision * recall / (precision + recall)
                } else {
                    0.0
                };
                let tn = total + tp - support - predicted;
                ClassMetrics {
                    class: names
                        .get(c)
                        .map_or_else(|| c.to_string(), |s| s.to_string()),
                    support,
                    precision,
                    recall,
                    f1,
                    accuracy: ratio(tp + tn, total),
                    fpr: ratio(predicted - tp, total - support),
                }
            })
            .collect();
        let correct = self.correct();
        let macro_f1 = classes.iter().map(|c| c.f1).sum::<f64>() / n.max(1) as f64;
        let weighted_f1 =
            classes.iter().map(|c| c.f1 * c.support as f64).sum::<f64>() / total.max(1) as f64;
        Report {
            accuracy: ratio(correct, total),
            macro_f1,
            weighted_f1,
            classes,
            confusion: self.counts.clone(),
        }
    }
}

impl Report {
    /// "S Se 0.669 +P 0.800" for class `name` (AAMI's sensitivity and positive predictivity);
    /// empty when the report has no such class.
    pub fn se_ppv(&self, name: &str) -> String {
        self.classes
            .iter()
            .find(|m| m.class == name)
            .map_or(String::new(), |m| {
                format!("{name} Se {:.3} +P {:.3}", m.recall, m.precision)
            })
    }

    /// The paper's Table 1 layout followed by the confusion matrix.
    pub fn table(&self) -> String {
        let mut s = format!(
            "{:<6}{:>10}{:>10}{:>10}{:>10}{:>10}\n",
            "class", "precision", "recall", "F1", "accuracy", "support"
        );
        for c in &self.classes {
            s += &format!(
                "{:<6}{:>10.3}{:>10.3}{:>10.3}{:>10.3}{:>10}\n",
                c.class, c.precision, c.recall, c.f1, c.accuracy, c.support
            );
        }
        s += &format!(
            "overall accuracy {:.4}, macro F1 {:.3}, weighted F1 {:.3}\n",
            self.accuracy, self.macro_f1, self.weighted_f1
        );
        for c in self
            .classes
            .iter()
            .filter(|c| c.class == "V" || c.class == "S")
        {
            s += &format!(
                "AAMI {}: Se {:.3}  +P {:.3}  FPR {:.4}\n",
                c.class, c.recall, c.precision, c.fpr
            );
        }
        s += "confusion (rows: truth, columns: predicted)\n      ";
        for c in &self.classes {
            s += &format!("{:>8}", c.class);
        }
        for (c, row) in self.classes.iter().zip(&self.confusion) {
            s += &format!("\n{:<6}", c.class);
            for v in row {
                s += &format!("{v:>8}");
            }
        }
        s + "\n"
    }
}

/// One record's beats scored on their own: which patients a model fails on.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct RecordErrors {
    pub record: String,
    pub beats: usize,
    pub errors: usize,
    pub accuracy: f64,
    /// The commonest mistake, as (truth, predicted, beats); `None` when every beat is right.
    pub commonest_error: Option<(usize, usize, usize)>,
    pub confusion: Vec<Vec<usize>>,
}

/// A confusion matrix per record, most errors first (ties in record order): the inter-patient
/// figures are averages over patients, and a few records can carry most of the mistakes.
pub fn per_record(
    records: &[String],
    truth: &[u32],
    predicted: &[u32],
    classes: usize,
) -> Vec<RecordErrors> {
    let mut rows: Vec<RecordErrors> = Confusion::by_group(truth, predicted, records, classes)
        .into_iter()
        .map(|(record, confusion)| {
            let (beats, correct) = (confusion.total(), confusion.correct());
            let counts = confusion.counts;
            let commonest_error = (0..classes)
                .flat_map(|a| (0..classes).map(move |b| (a, b)))
                .filter(|&(a, b)| a != b && counts[a][b] > 0)
                .map(|(a, b)| (a, b, counts[a][b]))
                .max_by_key(|&(a, b, n)| (n, std::cmp::Reverse((a, b))));
            RecordErrors {
                record: record.to_string(),
                beats,
                errors: beats - correct,
                accuracy: correct as f64 / beats as f64,
                commonest_error,
                confusion: counts,
            }
        })
        .collect();
    rows.sort_by_key(|r| std::cmp::Reverse(r.errors));
    rows
}

/// `rows` as a table: record, beats, errors, accuracy, each class's support and the commonest
/// mistake, written with `names`.
pub fn per_record_table(rows: &[RecordErrors], names: &[&str]) -> String {
    let mut s = format!(
        "{:<8}{:>7}{:>8}{:>10}",
        "record", "beats", "errors", "accuracy"
    );
    for name in names {
        s += &format!("{name:>7}");
    }
    s += "  commonest error\n";
    for r in rows {
        s += &format!(
            "{:<8}{:>7}{:>8}{:>10.3}",
            r.record, r.beats, r.errors, r.accuracy
        );
        for row in &r.confusion {
            s += &format!("{:>7}", row.iter().sum::<usize>());
        }
        if let Some((t, p, n)) = r.commonest_error {
            s += &format!("  {}→{} {n}", names[t], names[p]);
        }
        s += "\n";
    }
    s
}

/// Index of the largest probability in each row of `probs` (`classes` wide).
pub fn argmax_rows(probs: &[f32], classes: usize) -> Vec<u32> {
    probs
        .chunks(classes)
        .map(|row| {
            row.iter()
                .enumerate()
                .max_by(|a, b| a.1.total_cmp(b.1))
                .map_or(0, |(i, _)| i as u32)
        })
        .collect()
}

/// The class of each row of `probs` after adding `offsets[c]` to each class's log-probability
/// (no offsets: plain argmax). Offsets move the decision towards classes a network ranks well
/// but calls too rarely.
pub fn decide(probs: &[f32], classes: usize, offsets: &[f32]) -> Vec<u32> {
    if offsets.is_empty() {
        return argmax_rows(probs, classes);
    }
    probs
        .chunks(classes)
        .map(|row| {
            row.iter()
                .zip(offsets)
                .map(|(&p, &o)| p.max(f32::MIN_POSITIVE).ln() + o)
                .enumerate()
                .max_by(|a, b| a.1.total_cmp(&b.1))
                .map_or(0, |(i, _)| i as u32)
        })
        .collect()
}

/// Offsets tried for each tuned class, in log-probability.
pub const OFFSET_GRID: (f32, f32, f32) = (-4.0, 8.0, 0.25);
/// Classes with fewer validation beats do not count in the objective.
pub const OFFSET_MIN_BEATS: usize = 50;

/// Decision offsets (see [`decide`]) for the classes `tuned`, chosen to maximise the mean F1 of
/// the classes with at least [`OFFSET_MIN_BEATS`] beats in `labels`: three sweeps of coordinate
/// ascent over [`OFFSET_GRID`], each class in turn; a tie keeps the offset nearest 0. Untuned
/// classes keep 0. Meant for validation patients, never for the test set.
pub fn choose_offsets(probs: &[f32], labels: &[u32], classes: usize, tuned: &[usize]) -> Vec<f32> {
    let counts = (0..classes)
        .map(|c| labels.iter().filter(|&&l| l as usize == c).count())
        .collect::<Vec<_>>();
    let scored: Vec<usize> = (0..classes)
        .filter(|&c| counts[c] >= OFFSET_MIN_BEATS)
        .collect();
    let objective = |offsets: &[f32]| {
        let report = Confusion::new(labels, &decide(probs, classes, offsets), classes);
        scored.iter().map(|&c| report.f1(c)).sum::<f64>() / scored.len().max(1) as f64
    };
    let (lo, hi, step) = OFFSET_GRID;
    let grid: Vec<f32> = (0..=((hi - lo) / step).round() as usize)
        .map(|k| lo + k as f32 * step)
        .collect();
    let mut offsets = vec![0.0f32; classes];
    let mut best = objective(&offsets);
    for _ in 0..3 {
        for &c in tuned.iter().filter(|&&c| c < classes) {
            for &g in &grid {
                let mut trial = offsets.clone();
                trial[c] = g;
                let score = objective(&trial);
                if score > best + 1e-12 || (score >= best - 1e-12 && g.abs() < offsets[c].abs()) {
                    best = score;
                    offsets = trial;
                }
            }
        }
    }
    offsets
}

/// A 95 % interval (2.5th and 97.5th percentiles of the bootstrap replicates).
pub type Interval = [f64; 2];

/// Bootstrap intervals of a [`Report`]'s figures.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Intervals {
    pub replicates: usize,
    pub accuracy: Interval,
    pub macro_f1: Interval,
    /// Per class: precision, recall, F1, accuracy, FPR.
    pub classes: Vec<ClassIntervals>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ClassIntervals {
    pub class: String,
    pub precision: Interval,
    pub recall: Interval,
    pub f1: Interval,
    pub accuracy: Interval,
    pub fpr: Interval,
}

/// 95 % bootstrap intervals that resample whole groups (records, i.e. patients) with replacement
/// rather than beats: beats of one patient are alike, so a beat-level bootstrap would claim far
/// more certainty than a new set of patients allows. `groups[i]` is beat i's group.
pub fn bootstrap(
    truth: &[u32],
    predicted: &[u32],
    groups: &[String],
    classes: usize,
    names: &[&str],
    replicates: usize,
    seed: u64,
) -> Intervals {
    let per_group = Confusion::by_group(truth, predicted, groups, classes);
    let parts: Vec<&Confusion> = per_group.values().collect();
    let mut rng = Rng::new(seed);
    let reports: Vec<Report> = (0..replicates)
        .map(|_| {
            let mut sum = Confusion {
                counts: vec![vec![0; classes]; classes],
            };
            for _ in 0..parts.len() {
                let part = parts[rng.below(parts.len())];
                for (row, add) in sum.counts.iter_mut().zip(&part.counts) {
                    for (a, b) in row.iter_mut().zip(add) {
                        *a += b;
                    }
                }
            }
            sum.report(names)
        })
        .collect();
    // A replicate that happens to draw no beat of a class says nothing about that class.
    let interval = |c: Option<usize>, f: &dyn Fn(&Report) -> f64| -> Interval {
        let mut v: Vec<f64> = reports
            .iter()
            .filter(|r| c.is_none_or(|c| r.classes[c].support > 0))
            .map(f)
            .collect();
        if v.is_empty() {
            return [f64::NAN, f64::NAN];
        }
        v.sort_by(f64::total_cmp);
        let at = |q: f64| v[((v.len() - 1) as f64 * q).round() as usize];
        [at(0.025), at(0.975)]
    };
    Intervals {
        replicates,
        accuracy: interval(None, &|r| r.accuracy),
        macro_f1: interval(None, &|r| r.macro_f1),
        classes: (0..classes)
            .map(|c| ClassIntervals {
                class: names
                    .get(c)
                    .map_or_else(|| c.to_string(), |s| s.to_string()),
                precision: interval(Some(c), &|r| r.classes[c].precision),
                recall: interval(Some(c), &|r| r.classes[c].recall),
                f1: interval(Some(c), &|r| r.classes[c].f1),
                accuracy: interval(Some(c), &|r| r.classes[c].accuracy),
                fpr: interval(Some(c), &|r| r.classes[c].fpr),
            })
            .collect(),
    }
}

impl Intervals {
    /// The intervals as a table under the report's.
    pub fn table(&self) -> String {
        let pair = |i: &Interval| format!("[{:.3}, {:.3}]", i[0], i[1]);
        let mut s = format!(
            "95 % intervals, {} bootstrap replicates resampling records\n{:<6}{:>17}{:>17}{:>17}{:>17}\n",
            self.replicates, "class", "precision", "recall", "F1", "accuracy"
        );
        for c in &self.classes {
            s += &format!(
                "{:<6}{:>17}{:>17}{:>17}{:>17}\n",
                c.class,
                pair(&c.precision),
                pair(&c.recall),
                pair(&c.f1),
                pair(&c.accuracy)
            );
        }
        s + &format!(
            "overall accuracy {}, macro F1 {}\n",
            pair(&self.accuracy),
            pair(&self.macro_f1)
        )
    }
}

/// Area under the ROC curve of `scores` for telling `positive` items from the rest: the
/// probability that a random positive scores above a random negative, ties counting half
/// (the Mann–Whitney statistic). `NaN` when either group is empty.
pub fn auroc(scores: &[f64], positive: &[bool]) -> f64 {
    let mut order: Vec<usize> = (0..scores.len()).collect();
    order.sort_by(|&a, &b| scores[a].total_cmp(&scores[b]));
    // Average ranks (1-based) over runs of equal scores.
    let mut ranks = vec![0.0f64; scores.len()];
    let mut i = 0;
    while i < order.len() {
        let mut j = i;
        while j + 1 < order.len() && scores[order[j + 1]] == scores[order[i]] {
            j += 1;
        }
        let rank = (i + j) as f64 / 2.0 + 1.0;
        for &k in &order[i..=j] {
            ranks[k] = rank;
        }
        i = j + 1;
    }
    let n_pos = positive.iter().filter(|&&p| p).count() as f64;
    let n_neg = positive.len() as f64 - n_pos;
    if n_pos == 0.0 || n_neg == 0.0 {
        return f64::NAN;
    }
    let rank_sum: f64 = ranks
        .iter()
        .zip(positive)
        .filter(|(_, &p)| p)
        .map(|(r, _)| r)
        .sum();
    (rank_sum - n_pos * (n_pos + 1.0) / 2.0) / (n_pos * n_neg)
}

/// Figures of a two-class task (label 1 the condition, e.g. MI): accuracy, precision, recall
/// (sensitivity), F1, specificity, AUROC and the confusion matrix.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct BinaryReport {
    pub n: usize,
    pub accuracy: f64,
    pub precision: f64,
    pub recall: f64,
    pub f1: f64,
    pub specificity: f64,
    pub auroc: f64,
    pub confusion: Vec<Vec<usize>>,
}

impl BinaryReport {
    /// From the probability of class 1 per item, thresholded at 0.5.
    pub fn new(truth: &[u32], p_positive: &[f64]) -> Self {
        let predicted: Vec<u32> = p_positive.iter().map(|&p| u32::from(p > 0.5)).collect();
        let r = Confusion::new(truth, &predicted, 2).report(&["0", "1"]);
        let positive: Vec<bool> = truth.iter().map(|&t| t == 1).collect();
        Self {
            n: truth.len(),
            accuracy: r.accuracy,
            precision: r.classes[1].precision,
            recall: r.classes[1].recall,
            f1: r.classes[1].f1,
            specificity: r.classes[0].recall,
            auroc: auroc(p_positive, &positive),
            confusion: r.confusion,
        }
    }

    /// One table row: n, accuracy, precision, recall, F1, specificity, AUROC.
    pub fn row(&self, name: &str) -> String {
        format!(
            "{name:<8}{:>7}{:>10.4}{:>11.4}{:>9.4}{:>8.4}{:>13.4}{:>8.4}",
            self.n,
            self.accuracy,
            self.precision,
            self.recall,
            self.f1,
            self.specificity,
            self.auroc
        )
    }

    pub const HEADER: &'static str =
        "level         n  accuracy  precision   recall      F1  specificity   AUROC";
}

/// 95 % bootstrap intervals of a two-class result's beat- and record-level accuracy, F1 and
/// AUROC, resampling whole records (see [`bootstrap`] for why not beats).
pub fn bootstrap_binary(
    records: &[String],
    labels: &[u32],
    scores: &[f64],
    replicates: usize,
    seed: u64,
) -> BTreeMap<String, Interval> {
    let mut by_record: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
    for (i, r) in records.iter().enumerate() {
        by_record.entry(r.as_str()).or_default().push(i);
    }
    let groups: Vec<&Vec<usize>> = by_record.values().collect();
    let mut rng = Rng::new(seed);
    let mut samples: BTreeMap<String, Vec<f64>> = BTreeMap::new();
    for _ in 0..replicates {
        let (mut rec, mut lab, mut sco) = (vec![], vec![], vec![]);
        for k in 0..groups.len() {
            let g = groups[rng.below(groups.len())];
            // Each drawn copy of a record is its own record in the vote.
            let name = k.to_string();
            for &i in g {
                rec.push(name.clone());
                lab.push(labels[i]);
                sco.push(scores[i]);
            }
        }
        let beat = BinaryReport::new(&lab, &sco);
        let (rl, rs) = record_means(&rec, &lab, &sco);
        let record = BinaryReport::new(&rl, &rs);
        for (key, value) in [
            ("beat_accuracy", beat.accuracy),
            ("beat_f1", beat.f1),
            ("beat_auroc", beat.auroc),
            ("record_accuracy", record.accuracy),
            ("record_f1", record.f1),
            ("record_auroc", record.auroc),
        ] {
            if value.is_finite() {
                samples.entry(key.to_string()).or_default().push(value);
            }
        }
    }
    samples
        .into_iter()
        .map(|(key, mut v)| {
            v.sort_by(f64::total_cmp);
            let at = |q: f64| v[((v.len() - 1) as f64 * q).round() as usize];
            (key, [at(0.025), at(0.975)])
        })
        .collect()
}

/// The record-level vote: each record's label and the mean of its beats' scores, in record order.
pub fn record_means(records: &[String], labels: &[u32], scores: &[f64]) -> (Vec<u32>, Vec<f64>) {
    let mut sums: BTreeMap<&str, (f64, usize, u32)> = BTreeMap::new();
    for ((record, &label), &score) in records.iter().zip(labels).zip(scores) {
        let e = sums.entry(record.as_str()).or_insert((0.0, 0, label));
        e.0 += score;
        e.1 += 1;
    }
    sums.values()
        .map(|&(sum, n, label)| (label, sum / n as f64))
        .unzip()
}

/// Where a beat's R–R features keep the rhythm irregularity, the wide-window one
/// ([`crate::data::beats::rr::RHYTHM_HALF_WINDOW`]): atrial fibrillation is irregular for
/// minutes, while a run of ectopic beats or a pause disturbs the ten-interval window only.
pub const IRREGULARITY: usize = 8;

/// Turns S decisions (AAMI label 1) into N (label 0) where the rhythm around the beat is
/// irregular beyond `threshold`: in atrial fibrillation every beat looks premature, and AAMI
/// labels those beats N.
pub fn gate_irregular(
    decided: &mut [u32],
    rhythm: &[crate::data::beats::rr::Rhythm],
    threshold: f32,
) {
    use crate::data::formats::aami::AamiClass;
    let (n, s) = (AamiClass::N.label(), AamiClass::S.label());
    for (d, rr) in decided.iter_mut().zip(rhythm) {
        if *d == s && rr[IRREGULARITY] > threshold {
            *d = n;
        }
    }
}

/// [`decide`] with `offsets`, then [`gate_irregular`] at `gate` when there is one: a
/// network's rule for beats with their R–R features (`rhythm`, one per row of `probs`).
pub fn decide_gated(
    probs: &[f32],
    classes: usize,
    offsets: &[f32],
    gate: Option<f32>,
    rhythm: &[crate::data::beats::rr::Rhythm],
) -> Vec<u32> {
    let mut decided = decide(probs, classes, offsets);
    if let Some(threshold) = gate {
        gate_irregular(&mut decided, rhythm, threshold);
    }
    decided
}

/// Turns V decisions into N for beats that come on time and that the network is not sure of.
/// Most ventricular ectopic beats come early; a second normal shape (a bundle branch block's,
/// AAMI N), seen on a lead the network was not trained on, can look like them against the
/// record's median beat, but comes on time. Chosen out of fold ([`choose_on_time_v_gate`]).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, serde::Deserialize)]
pub struct OnTimeVGate {
    /// The gate spares a V decision at or above this V probability.
    pub below_p_v: f32,
    /// A beat is on time when its preceding R–R interval is at least this fraction of the
    /// local mean interval (the ten around it).
    pub on_time: f32,
}

impl OnTimeVGate {
    /// Settings [`choose_on_time_v_gate`] tries.
    pub const TRIED: [(f32, f32); 20] = {
        let mut tried = [(0.0, 0.0); 20];
        let (mut i, ps, rs) = (0, [0.5, 0.6, 0.7, 0.8, 0.9], [0.85, 0.9, 0.95, 1.0]);
        while i < 20 {
            tried[i] = (ps[i / 4], rs[i % 4]);
            i += 1;
        }
        tried
    };

    /// The preceding interval as a fraction of the local mean (1 when either is unknown).
    pub fn timing(rr: &crate::data::beats::rr::Rhythm) -> f32 {
        // pre_rr and local_rr, in seconds (`RR_FEATURES`)
        if rr[0] > 0.0 && rr[2] > 0.0 {
            rr[0] / rr[2]
        } else {
            1.0
        }
    }

    /// Applies the gate to the beats `gated` marks (empty: none) of `decided`, one row of
    /// `probs` (`classes` wide) and `rhythm` each.
    pub fn apply(
        &self,
        decided: &mut [u32],
        probs: &[f32],
        classes: usize,
        rhythm: &[crate::data::beats::rr::Rhythm],
        gated: &[bool],
    ) {
        use crate::data::formats::aami::AamiClass;
        let (n, v) = (AamiClass::N.label(), AamiClass::V.label());
        let beats = decided.iter_mut().zip(probs.chunks(classes)).zip(rhythm);
        for (((d, p), rr), _) in beats.zip(gated).filter(|(_, &g)| g) {
            if *d == v && p[v as usize] < self.below_p_v && Self::timing(rr) >= self.on_time {
                *d = n;
            }
        }
    }
}

/// The on-time V gate that validation prefers.
#[derive(Clone, Debug, Serialize)]
pub struct OnTimeVChoice {
    /// `None`: validation is best without it.
    pub gate: Option<OnTimeVGate>,
    pub macro_f1_without: f64,
    /// ((below p_V, on time), macro-F1) for each setting tried.
    pub macro_f1_by_setting: Vec<((f32, f32), f64)>,
    /// The report with the chosen gate (without it when none).
    pub report: Report,
}

/// Chooses the on-time V gate on validation beats: `decided` (by the rest of the rule) from
/// `probs` (as the rule left them), with their `labels` and `rhythm`, the gate applied to the
/// beats `gated` marks (empty: none, and no gate); the highest macro-F1 over all the beats,
/// none unless one beats the rule without it.
pub fn choose_on_time_v_gate(
    decided: &[u32],
    probs: &[f32],
    labels: &[u32],
    rhythm: &[crate::data::beats::rr::Rhythm],
    gated: &[bool],
    names: &[&str],
) -> OnTimeVChoice {
    let classes = names.len();
    let report = |d: &[u32]| Confusion::new(labels, d, classes).report(names);
    let without = report(decided);
    if !names.contains(&"V") || !names.contains(&"N") || !gated.contains(&true) {
        return OnTimeVChoice {
            gate: None,
            macro_f1_without: without.macro_f1,
            macro_f1_by_setting: vec![],
            report: without,
        };
    }
    let (setting, tried, best) = best_setting(
        &without,
        OnTimeVGate::TRIED.map(|(below_p_v, on_time)| {
            let gate = OnTimeVGate { below_p_v, on_time };
            let mut decided = decided.to_vec();
            gate.apply(&mut decided, probs, classes, rhythm, gated);
            ((below_p_v, on_time), report(&decided))
        }),
    );
    OnTimeVChoice {
        gate: setting.map(|(below_p_v, on_time)| OnTimeVGate { below_p_v, on_time }),
        macro_f1_without: without.macro_f1,
        macro_f1_by_setting: tried,
        report: best,
    }
}

/// Irregularity thresholds [`choose_irregular_gate`] tries: the median change between
/// successive R–R intervals around a beat, as a fraction of their mean.
pub const GATE_THRESHOLDS: [f32; 8] = [0.05, 0.075, 0.1, 0.125, 0.15, 0.2, 0.25, 0.3];

/// The setting with the highest validation macro-F1 among `tried` (each with its report), and
/// none unless it beats `plain` (the rule without it); with each setting's macro-F1 and the
/// report to keep. How each part of a decision rule after the offsets is chosen.
pub fn best_setting<S: Copy>(
    plain: &Report,
    tried: impl IntoIterator<Item = (S, Report)>,
) -> (Option<S>, Vec<(S, f64)>, Report) {
    let (mut chosen, mut best, mut scores) = (None, plain.clone(), vec![]);
    for (setting, report) in tried {
        scores.push((setting, report.macro_f1));
        if report.macro_f1 > best.macro_f1 {
            (chosen, best) = (Some(setting), report);
        }
    }
    (chosen, scores, best)
}

/// The irregular-rhythm gate that validation prefers.
#[derive(Clone, Debug, Serialize)]
pub struct GateChoice {
    /// `None`: validation is best without a gate.
    pub threshold: Option<f32>,
    pub macro_f1_ungated: f64,
    /// (threshold, macro-F1) for each threshold tried.
    pub macro_f1_by_threshold: Vec<(f32, f64)>,
    /// The report at the chosen threshold (ungated when none).
    pub report: Report,
}

/// Chooses the gate's threshold on validation beats (`decided` with their `labels` and
/// `rhythm`): the highest macro-F1, no gate unless one beats it.
pub fn choose_irregular_gate(
    decided: &[u32],
    labels: &[u32],
    rhythm: &[crate::data::beats::rr::Rhythm],
    names: &[&str],
) -> GateChoice {
    let classes = names.len();
    let report = |d: &[u32]| Confusion::new(labels, d, classes).report(names);
    let ungated = report(decided);
    let (threshold, tried, best) = best_setting(
        &ungated,
        GATE_THRESHOLDS.map(|t| {
            let mut gated = decided.to_vec();
            gate_irregular(&mut gated, rhythm, t);
            (t, report(&gated))
        }),
    );
    GateChoice {
        threshold,
        macro_f1_ungated: ungated.macro_f1,
        macro_f1_by_threshold: tried,
        report: best,
    }
}

/// How well the network ranks S beats above N beats: the AUC of log(p_S / p_N) over the beats
/// labelled N or S, as `tools/rank_auc.py` computes it (`None` without both classes).
pub fn s_vs_n_auc(probs: &[f32], labels: &[u32], names: &[&str]) -> Option<f64> {
    let (n, s) = (
        names.iter().position(|&c| c == "N")?,
        names.iter().position(|&c| c == "S")?,
    );
    let k = names.len();
    let (scores, positive): (Vec<f64>, Vec<bool>) = labels
        .iter()
        .enumerate()
        .filter(|(_, &l)| l as usize == n || l as usize == s)
        .map(|(i, &l)| {
            let p = |c: usize| f64::from(probs[i * k + c]).max(1e-30).ln();
            (p(s) - p(n), l as usize == s)
        })
        .unzip();
    (positive.iter().any(|&p| p) && positive.iter().any(|&p| !p)).then(|| auroc(&scores, &positive))
}
