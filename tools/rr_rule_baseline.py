#!/usr/bin/env python3
"""How far the rhythm alone gets on S beats: a one-feature rule as a yardstick for the networks.

A supraventricular beat comes early relative to the patient's own rhythm. The rule calls a beat
S when its pre-RR divided by the local mean R-R (the ten surrounding intervals) is below a
threshold. The threshold is chosen on the training CSV only (the one that maximises S F1 there),
then applied unchanged to the test CSV, so the test set drives no choice. It ignores the beat's
shape, so it also calls premature V beats S: read its +P as a lower bound.

Input: CSVs written by `ecgwgpu data export --rr` (187 samples, the R-R features, label),
for example DS1 and DS2 of the full MIT-BIH:

    ecgwgpu data export --data-dir MITDB --split inter --part train --rr --out ds1.csv
    ecgwgpu data export --data-dir MITDB --split inter --part test --rr --out ds2.csv
    python3 tools/rr_rule_baseline.py ds1.csv ds2.csv

Needs numpy.
"""

import argparse
import sys

import numpy as np

SAMPLES = 187
FEATURES = (7, 8)  # R-R features per row: before and since the local irregularity feature
PRE_RR, LOCAL_RR = 0, 2  # columns of the R-R features, in ecgwgpu's order (src/data/rr.rs)
S = 1


def load(path):
    """(prematurity, labels) from an exported CSV: pre-RR / local mean R-R per beat."""
    rows = np.loadtxt(path, delimiter=",", dtype=np.float64, ndmin=2)
    if rows.shape[1] - SAMPLES - 1 not in FEATURES:
        sys.exit(f"{path}: {rows.shape[1]} columns; expected "
                 f"{' or '.join(str(SAMPLES + f + 1) for f in FEATURES)} (export with --rr)")
    rr = rows[:, SAMPLES:-1]
    return rr[:, PRE_RR] / rr[:, LOCAL_RR], rows[:, -1].astype(int)


def score(prematurity, labels, threshold):
    """S sensitivity, positive predictivity and F1 of the rule at `threshold`."""
    called = prematurity < threshold
    hits = np.count_nonzero(called & (labels == S))
    se = hits / max(np.count_nonzero(labels == S), 1)
    ppv = hits / max(np.count_nonzero(called), 1)
    return se, ppv, 2 * se * ppv / max(se + ppv, 1e-12)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("train_csv", help="beats the threshold is chosen on (e.g. DS1)")
    p.add_argument("test_csv", help="beats the chosen rule is scored on (e.g. DS2)")
    args = p.parse_args()
    train_x, train_y = load(args.train_csv)
    test_x, test_y = load(args.test_csv)
    grid = np.round(np.arange(0.50, 1.001, 0.01), 2)
    best = max(grid, key=lambda t: score(train_x, train_y, t)[2])
    for name, x, y in (("train", train_x, train_y), ("test", test_x, test_y)):
        se, ppv, f1 = score(x, y, best)
        print(f"{name}: {len(y)} beats, {np.count_nonzero(y == S)} S; pre-RR / local RR < {best:.2f}: "
              f"S Se {se:.3f}  +P {ppv:.3f}  F1 {f1:.3f}")
        for c, name_c in enumerate("NSVFQ"):
            m = y == c
            if m.any():
                print(f"  {name_c}: median prematurity {np.median(x[m]):.3f} over {m.sum()} beats")


if __name__ == "__main__":
    main()
