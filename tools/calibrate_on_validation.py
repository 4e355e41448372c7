#!/usr/bin/env python3
"""Would moving the decision thresholds find S beats on new patients? Per-class logit offsets
chosen on the held-out validation patients, then applied unchanged to the test set.

A network that ranks S beats well but whose S probability is too low (S is 2 % of DS1) would
gain S sensitivity from a positive S offset. One that does not rank them (its S probability is
no higher for S beats than for N beats of a new patient) gains nothing: that is the question
this answers. The offsets for S, V and F (N and Q stay 0) are searched on a grid, three sweeps
of coordinate ascent, maximising the mean F1 over the classes with at least 50 validation beats;
the test set drives no choice.

Input: the CSVs `ecgwgpu predict --beats-csv` writes (annotated class, p_N .. p_Q per beat) for
the validation beats and the test beats of the same run, for example:

    ecgwgpu data export --data-dir MITDB --split inter --part val --seed 1 --rr --out val.csv
    ecgwgpu data export --data-dir MITDB --split inter --part test --rr --out ds2.csv
    ecgwgpu predict --checkpoint RUN/best.safetensors --beats-csv val.csv --out-dir pred
    ecgwgpu predict --checkpoint RUN/best.safetensors --beats-csv ds2.csv --out-dir pred
    python3 tools/calibrate_on_validation.py pred/val_pred.csv pred/ds2_pred.csv

Needs numpy.
"""

import argparse
import csv

import numpy as np

CLASSES = "NSVFQ"
TUNED = (1, 2, 3)  # S, V, F
GRID = np.arange(-4.0, 8.001, 0.25)
MIN_BEATS = 50


def load(path):
    """(log-probabilities [beats, 5], classes [beats]) from a predict CSV."""
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    labels = np.array([CLASSES.index(r["annotated"]) for r in rows])
    probs = np.array([[float(r["p_" + c]) for c in CLASSES] for r in rows])
    return np.log(np.clip(probs, 1e-9, 1.0)), labels


def per_class(logp, labels, offsets):
    """Accuracy and, per class, (sensitivity, positive predictivity, F1, support)."""
    pred = (logp + offsets).argmax(axis=1)
    out = []
    for c in range(len(CLASSES)):
        tp = np.count_nonzero((pred == c) & (labels == c))
        support = np.count_nonzero(labels == c)
        se = tp / max(support, 1)
        ppv = tp / max(np.count_nonzero(pred == c), 1)
        out.append((se, ppv, 2 * se * ppv / max(se + ppv, 1e-12), support))
    return float(np.mean(pred == labels)), out


def objective(logp, labels, offsets):
    _, classes = per_class(logp, labels, offsets)
    return np.mean([f1 for (_, _, f1, n) in classes if n >= MIN_BEATS])


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("validation", help="predict CSV of the validation beats (offsets chosen here)")
    p.add_argument("test", help="predict CSV of the test beats (offsets applied here)")
    args = p.parse_args()
    val, test = load(args.validation), load(args.test)
    offsets = np.zeros(len(CLASSES))
    for _ in range(3):
        for c in TUNED:
            def trial(g, c=c):
                o = offsets.copy()
                o[c] = g
                return objective(*val, o)
            offsets[c] = max(GRID, key=trial)
    print("offsets (log-probability added per class):",
          " ".join(f"{c} {o:+.2f}" for c, o in zip(CLASSES, offsets)))
    for name, o in (("raw", np.zeros(len(CLASSES))), ("offset", offsets)):
        for part, (logp, labels) in (("validation", val), ("test", test)):
            acc, cl = per_class(logp, labels, o)
            print(f"{name:6s} {part:10s} accuracy {acc:.3f}  " + "  ".join(
                f"{CLASSES[c]} Se {cl[c][0]:.3f} +P {cl[c][1]:.3f} F1 {cl[c][2]:.3f}"
                for c in (1, 2)))


if __name__ == "__main__":
    main()
