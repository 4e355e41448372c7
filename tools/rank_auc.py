#!/usr/bin/env python3
"""How well does a network rank one class against N? The AUC of log(p_C / p_N) over the beats
annotated C or N, from the CSV `ecgwgpu predict` writes (annotated class, p_N .. p_Q per beat).

The decision (argmax, or with `train --calibrate`'s offsets) may call a class rarely although the
network ranks its beats well; the AUC tells the two apart without choosing a threshold. 0.5 is
chance, 1 a perfect ranking. For example:

    ecgwgpu data export --data-dir MITDB --split inter --part test --rr \
        --beat-reference record-median --out ds2.csv      # as the network was trained
    ecgwgpu predict --checkpoint RUN/best.safetensors --beats-csv ds2.csv --out-dir pred
    python3 tools/rank_auc.py pred/ds2_pred.csv --class S

Needs numpy.
"""

import argparse
import csv

import numpy as np

CLASSES = "NSVFQ"


def auc(scores, positive):
    """Mann-Whitney AUC: the chance that a positive beat scores above a negative one (ties half)."""
    _, index, counts = np.unique(scores, return_inverse=True, return_counts=True)
    # 1-based ranks, tied scores sharing their mean rank
    ranks = (np.cumsum(counts) - (counts - 1) / 2)[index]
    p, n = positive.sum(), (~positive).sum()
    return (ranks[positive].sum() - p * (p + 1) / 2) / (p * n)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("csv", nargs="+", help="CSVs written by ecgwgpu predict")
    ap.add_argument("--class", dest="cls", default="S", choices=CLASSES[1:],
                    help="the class ranked against N (default S)")
    args = ap.parse_args()
    c = CLASSES.index(args.cls)
    for path in args.csv:
        with open(path, newline="", encoding="utf-8") as f:
            rows = list(csv.DictReader(f))
        labels = np.array([CLASSES.index(r["annotated"]) for r in rows])
        probs = np.array([[float(r["p_" + k]) for k in CLASSES] for r in rows])
        keep = (labels == 0) | (labels == c)
        score = np.log(probs[keep, c] + 1e-9) - np.log(probs[keep, 0] + 1e-9)
        print(f"{path}: {args.cls}-vs-N AUC {auc(score, labels[keep] == c):.3f} "
              f"({np.count_nonzero(labels == c)} {args.cls}, {np.count_nonzero(labels == 0)} N beats)")


if __name__ == "__main__":
    main()
