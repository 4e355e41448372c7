#!/usr/bin/env python3
"""The cross-database table (markdown) from the rows tools/cross_database.sh wrote.

    python3 tools/cross_database_table.py results/cross-database [ROW ...]

Each row: beats scored, accuracy, S and V sensitivity (Se) and positive predictivity (+P), the
S-vs-N AUC, with 95 % intervals over records (bootstrap), and the targets met. A row without
reference beats (PTB Diagnostic) gives what its beats were called instead.
"""
import json
import sys
from pathlib import Path

TARGETS = {"accuracy": 0.93, "S se": 0.60, "S +P": 0.50, "V se": 0.85, "V +P": 0.85}


def interval(ci, key, cls=None):
    if not ci:
        return ""
    if cls is None:
        lo, hi = ci[key]
    else:
        c = next(c for c in ci["classes"] if c["class"] == cls)
        lo, hi = c[key]
    return f" [{lo:.2f}, {hi:.2f}]"


def row(name, d):
    if "accuracy" not in d:
        u = d["unreferenced"]
        called = ", ".join(f"{c} {n}" for c, n in u["decided"] if n)
        return f"| {name} | {u['beats']} (no reference) | called: {called} | | | | | | |"
    ci = d.get("ci95")
    s, v = d["aami"]["S"], d["aami"]["V"]
    met = {
        "accuracy": d["accuracy"] >= TARGETS["accuracy"],
        "S": s["se"] >= TARGETS["S se"] and s["ppv"] >= TARGETS["S +P"],
        "V": v["se"] >= TARGETS["V se"] and v["ppv"] >= TARGETS["V +P"],
    }
    ok = ", ".join(k for k, m in met.items() if m) or "none"
    auc = d.get("s_vs_n_auc")
    return (
        f"| {name} | {d['beats']} | {d['accuracy']:.3f}{interval(ci, 'accuracy')} "
        f"| {s['se']:.2f}{interval(ci, 'recall', 'S')} | {s['ppv']:.2f}{interval(ci, 'precision', 'S')} "
        f"| {v['se']:.2f}{interval(ci, 'recall', 'V')} | {v['ppv']:.2f}{interval(ci, 'precision', 'V')} "
        f"| {auc:.3f} | {ok} |"
    )


def main():
    out = Path(sys.argv[1] if len(sys.argv) > 1 else "results/cross-database")
    names = sys.argv[2:]
    files = [out / f"{n}.json" for n in names] if names else sorted(out.glob("*.json"))
    print(
        "| row | beats | accuracy | S Se | S +P | V Se | V +P | S-vs-N AUC | targets met |\n"
        "|---|---|---|---|---|---|---|---|---|"
    )
    for f in files:
        print(row(f.stem, json.loads(f.read_text())))
    first = json.loads(files[0].read_text()) if files else {}
    print(f"\ncheckpoint: {first.get('checkpoint', '?')}; 95 % intervals: 1000 bootstrap "
          "replicates resampling records")


if __name__ == "__main__":
    main()
