//! Classification metrics in the paper's Table 1 layout: per class precision, recall, F1 and
//! one-vs-rest accuracy, plus overall accuracy and macro/weighted averages, from a confusion matrix.

use serde::Serialize;

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
