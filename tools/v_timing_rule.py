#!/usr/bin/env python3
"""Would a rule that turns on-time V decisions into N help? Judged on validation only: DS1 out
of fold, at MLII and at the second lead.

    ecgwgpu evaluate --checkpoint RUN/best.safetensors --out-of-fold --view V1,V2,V4,V5 --beats oof.csv
    python3 tools/v_timing_rule.py oof.csv

On a lead the network was not trained on, beats of a second normal shape (a bundle branch
block's, AAMI N) can look like V beats against the record's median beat; on DS2's second lead
record 212 loses 794 of its N beats so. Most ventricular ectopic beats come early, those beats
on time. The rule tried: a beat decided V becomes N when its pre-RR ratio (to the local mean)
is at least r and p_V < t. For each (t, r) it prints the out-of-fold macro-F1 over both leads
and over MLII alone (N, S, V, F, Q as evaluate counts it), with the N beats gained and the V
beats lost, best first, beside the rule as it is.
"""
import csv
import sys

# the same macro-F1 as the S-vs-V rule's (N, S, V, F, Q as evaluate counts it)
from s_vs_v_rule import NAMES, macro_f1


def main():
    rows = list(csv.DictReader(open(sys.argv[1])))
    ref = [NAMES.index(r["annotated"]) for r in rows]
    pred = [NAMES.index(r["predicted"]) for r in rows]
    p_v = [float(r["p_V"]) for r in rows]
    pre = [float(r["pre_rr_ratio"]) / max(float(r["local_rr_ratio"]), 1e-6) for r in rows]
    mlii = [i for i, r in enumerate(rows) if "~" not in r["record"]]
    n_as_v = sum(1 for a, b in zip(ref, pred) if a == 0 and b == 2)
    print(f"{len(rows)} beats ({len(mlii)} at MLII); N beats decided V: {n_as_v}")
    on_time_v = sorted(q for a, q in zip(ref, pre) if a == 2)
    print("true V beats, pre-RR / local mean, quartiles: "
          + ", ".join(f"{on_time_v[int(len(on_time_v) * f)]:.2f}" for f in (0.25, 0.5, 0.75, 0.9)))
    both0 = macro_f1(ref, pred)
    ml0 = macro_f1([ref[i] for i in mlii], [pred[i] for i in mlii])
    print(f"the rule as it is: macro-F1 {both0:.4f} (both leads), {ml0:.4f} (MLII)")
    tried = []
    for t in [0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 1.01]:
        for r in [0.85, 0.9, 0.95, 1.0]:
            changed = [b == 2 and v < t and q >= r for b, v, q in zip(pred, p_v, pre)]
            new = [0 if c else b for b, c in zip(pred, changed)]
            gained = sum(1 for a, c in zip(ref, changed) if c and a == 0)
            lost_v = sum(1 for a, c in zip(ref, changed) if c and a == 2)
            ml = macro_f1([ref[i] for i in mlii], [new[i] for i in mlii])
            tried.append((macro_f1(ref, new), ml, t, r, gained, lost_v))
    for f, ml, t, r, gained, lost_v in sorted(tried, reverse=True)[:12]:
        print(f"p_V < {t:.2f}, pre-RR / local mean >= {r}: macro-F1 {f:.4f} (both), {ml:.4f} "
              f"(MLII); N gained {gained}, V lost {lost_v}")


if __name__ == "__main__":
    main()
