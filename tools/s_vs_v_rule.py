#!/usr/bin/env python3
"""Would a rule that turns V decisions into S help? Judged on validation only: DS1 out of fold.

    ecgwgpu evaluate --checkpoint RUN/best.safetensors --out-of-fold --beats oof.csv
    python3 tools/s_vs_v_rule.py oof.csv

S beats the network calls V (aberrantly conducted supraventricular beats) are premature and
keep some S probability. The rule tried: a beat decided V becomes S when p_S >= t and its
pre-RR ratio (to the record's mean) is below r. For each (t, r) it prints the out-of-fold
macro-F1 (N, S, V, F, Q as evaluate counts it), the S beats gained and the V and N beats lost,
best first, beside the rule as it is.
"""
import csv
import sys

NAMES = "NSVFQ"


def macro_f1(ref, pred):
    scores = []
    for c in range(len(NAMES)):
        tp = sum(1 for a, b in zip(ref, pred) if a == b == c)
        decided = sum(1 for b in pred if b == c)
        true = sum(1 for a in ref if a == c)
        scores.append(0.0 if tp == 0 else 2 * tp / (decided + true))
    return sum(scores) / len(scores)


def main():
    rows = list(csv.DictReader(open(sys.argv[1])))
    ref = [NAMES.index(r["annotated"]) for r in rows]
    pred = [NAMES.index(r["predicted"]) for r in rows]
    p_s = [float(r["p_S"]) for r in rows]
    pre = [float(r["pre_rr_ratio"]) for r in rows]
    s_as_v = sum(1 for a, b in zip(ref, pred) if a == 1 and b == 2)
    print(f"{len(rows)} beats; S beats decided V: {s_as_v} of {ref.count(1)}")
    print(f"the rule as it is: macro-F1 {macro_f1(ref, pred):.4f}")
    tried = []
    for t in [0.1, 0.15, 0.2, 0.25, 0.3, 0.4, 0.5]:
        for r in [0.6, 0.7, 0.8, 1.0, float("inf")]:
            changed = [b == 2 and s >= t and q < r for b, s, q in zip(pred, p_s, pre)]
            new = [1 if c else b for b, c in zip(pred, changed)]
            gained = sum(1 for a, c in zip(ref, changed) if c and a == 1)
            lost_v = sum(1 for a, c in zip(ref, changed) if c and a == 2)
            lost_n = sum(1 for a, c in zip(ref, changed) if c and a == 0)
            tried.append((macro_f1(ref, new), t, r, gained, lost_v, lost_n))
    for f, t, r, gained, lost_v, lost_n in sorted(tried, reverse=True)[:10]:
        print(f"p_S >= {t:.2f}, pre-RR ratio < {r}: macro-F1 {f:.4f}; S gained {gained}, "
              f"V lost {lost_v}, N called S {lost_n}")


if __name__ == "__main__":
    main()
