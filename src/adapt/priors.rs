//! The record's class mix. The EM of Saerens, Latinne & Decaestecker (2002, "Adjusting the
//! outputs of a classifier to new a priori probabilities") estimates a record's class priors from
//! its unlabelled beats and re-weights each beat's probabilities by new prior / training prior.
//! Here the estimate is a MAP one: the training priors act as `strength` pseudo-beats, so a short
//! record cannot drive a class to zero on a handful of beats.

use serde::{Deserialize, Serialize};

/// EM stops when no prior moves by more than this, or after [`MAX_ITERATIONS`].
const TOLERANCE: f64 = 1e-7;
const MAX_ITERATIONS: usize = 200;

/// How to adapt a network's outputs to each record.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PriorAdaptation {
    /// The priors the network's outputs assume: its mean probability per class over beats it
    /// did not train on (out of fold).
    pub train_priors: Vec<f64>,
    /// Weight of `train_priors` in each record's estimate, in beats (0: maximum likelihood).
    pub strength: f64,
}

impl PriorAdaptation {
    /// The training priors as the mean row of `probs` (`[n, classes]`, row-major).
    pub fn from_probabilities(probs: &[f32], classes: usize, strength: f64) -> Self {
        let n = (probs.len() / classes).max(1) as f64;
        let mut mean = vec![0f64; classes];
        for row in probs.chunks(classes) {
            mean.iter_mut()
                .zip(row)
                .for_each(|(m, &p)| *m += f64::from(p));
        }
        mean.iter_mut().for_each(|m| *m /= n);
        Self {
            train_priors: mean,
            strength,
        }
    }

    /// Re-weights one record's probabilities (`[n, classes]`) in place to the priors EM
    /// estimates for it, and returns those priors.
    pub fn adapt_record(&self, probs: &mut [f32], classes: usize) -> Vec<f64> {
        let train = &self.train_priors;
        let n = probs.len() / classes;
        if n == 0 || train.len() != classes {
            return train.clone();
        }
        let ratio = |prior: &[f64]| -> Vec<f64> {
            prior
                .iter()
                .zip(train)
                .map(|(&p, &t)| if t > 0.0 { p / t } else { 0.0 })
                .collect()
        };
        let mut prior = train.clone();
        let mut row_q = vec![0f64; classes];
        for _ in 0..MAX_ITERATIONS {
            let w = ratio(&prior);
            let mut sum = vec![0f64; classes];
            for row in probs.chunks(classes) {
                reweight(row, &w, &mut row_q);
                sum.iter_mut().zip(&row_q).for_each(|(s, q)| *s += q);
            }
            let total = n as f64 + self.strength;
            let next: Vec<f64> = sum
                .iter()
                .zip(train)
                .map(|(s, t)| (s + self.strength * t) / total)
                .collect();
            let moved = next
                .iter()
                .zip(&prior)
                .map(|(a, b)| (a - b).abs())
                .fold(0.0, f64::max);
            prior = next;
            if moved < TOLERANCE {
                break;
            }
        }
        let w = ratio(&prior);
        for row in probs.chunks_mut(classes) {
            reweight(row, &w, &mut row_q);
            row.iter_mut().zip(&row_q).for_each(|(p, &q)| *p = q as f32);
        }
        prior
    }

    /// [`Self::adapt_record`] for every record of `records` (one name per row of `probs`;
    /// rows of a record need not be contiguous).
    pub fn adapt_records(&self, probs: &mut [f32], records: &[String], classes: usize) {
        let mut names: Vec<&String> = records.iter().collect();
        names.sort();
        names.dedup();
        for name in names {
            let rows: Vec<usize> = (0..records.len())
                .filter(|&i| &records[i] == name)
                .collect();
            let mut mine: Vec<f32> = rows
                .iter()
                .flat_map(|&i| probs[i * classes..(i + 1) * classes].iter().copied())
                .collect();
            self.adapt_record(&mut mine, classes);
            for (k, &i) in rows.iter().enumerate() {
                probs[i * classes..(i + 1) * classes]
                    .copy_from_slice(&mine[k * classes..(k + 1) * classes]);
            }
        }
    }
}

/// `q ∝ p · w`, normalised (the original row when every weighted probability is 0).
fn reweight(p: &[f32], w: &[f64], q: &mut [f64]) {
    let mut total = 0.0;
    for ((q, &p), &w) in q.iter_mut().zip(p).zip(w) {
        *q = f64::from(p) * w;
        total += *q;
    }
    if total > 0.0 {
        q.iter_mut().for_each(|q| *q /= total);
    } else {
        q.iter_mut().zip(p).for_each(|(q, &p)| *q = f64::from(p));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A calibrated classifier trained at 50/50 whose outputs are (0.8, 0.2) or (0.2, 0.8): a
    /// class-0 beat scores (0.8, 0.2) four times in five, a class-1 beat one time in five. A
    /// record with a 90/10 mix then shows 74 % of its beats at (0.8, 0.2); EM recovers 90/10,
    /// and the adapted probabilities follow it.
    #[test]
    fn em_recovers_a_records_class_mix() {
        let (own, other) = (0.8f32, 0.2f32);
        let mut probs = vec![];
        for i in 0..1000 {
            if i < 740 {
                probs.extend([own, other]);
            } else {
                probs.extend([other, own]);
            }
        }
        let em = PriorAdaptation {
            train_priors: vec![0.5, 0.5],
            strength: 0.0,
        };
        let prior = em.adapt_record(&mut probs, 2);
        assert!((prior[0] - 0.9).abs() < 0.01, "{prior:?}");
        // a beat that looked class 0 is now surer of it: 0.8 · 0.9/0.5 against 0.2 · 0.1/0.5
        assert!((probs[0] - 0.973).abs() < 0.002, "{}", probs[0]);
        // the prior's pseudo-beats pull a short record's estimate back toward training
        let mut short = vec![own, other, own, other, other, own];
        let held = PriorAdaptation {
            strength: 100.0,
            ..em.clone()
        }
        .adapt_record(&mut short, 2);
        assert!((held[0] - 0.5).abs() < 0.02, "{held:?}");
        // mean of rows
        let t = PriorAdaptation::from_probabilities(&[0.2, 0.8, 0.4, 0.6], 2, 0.0);
        assert!((t.train_priors[0] - 0.3).abs() < 1e-6);
    }

    #[test]
    fn records_are_adapted_each_on_their_own() {
        let em = PriorAdaptation {
            train_priors: vec![0.5, 0.5],
            strength: 0.0,
        };
        // record a: all class 0; record b: all class 1; interleaved rows
        let mut probs = vec![0.8, 0.2, 0.2, 0.8, 0.8, 0.2, 0.2, 0.8];
        let records: Vec<String> = ["a", "b", "a", "b"].map(String::from).to_vec();
        em.adapt_records(&mut probs, &records, 2);
        assert!(probs[0] > 0.99 && probs[4] > 0.99, "{probs:?}");
        assert!(probs[3] > 0.99 && probs[7] > 0.99, "{probs:?}");
    }
}
