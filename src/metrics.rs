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
        let correct: usize = (0..n).map(|c| self.counts[c][c]).sum();
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
    let mut per_group: BTreeMap<&str, Confusion> = BTreeMap::new();
    for ((&t, &p), g) in truth.iter().zip(predicted).zip(groups) {
        per_group
            .entry(g.as_str())
            .or_insert_with(|| Confusion {
                counts: vec![vec![0; classes]; classes],
            })
            .counts[t as usize][p as usize] += 1;
    }
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
