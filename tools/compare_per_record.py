#!/usr/bin/env python3
"""Compare two models on the same records with a paired bootstrap over records.

Two runs scored on one test set (e.g. DS2) differ by a few points of accuracy; whether that
difference is more than patient-to-patient noise is the question. Resampling the *records* (not
beats, which are not independent within a patient) and scoring both models on each resample
gives a 95 % interval for the accuracy difference, paired because both models see the same
records each time.

Input: the text that `ecgwgpu evaluate --per-record` prints for each model (its table of
record, beats, errors, ...). Only the standard library is needed:

    ecgwgpu evaluate --checkpoint runs/A/best.safetensors --per-record > a.txt
    ecgwgpu evaluate --checkpoint runs/B/best.safetensors --per-record > b.txt
    python3 tools/compare_per_record.py a.txt b.txt
"""

import argparse
import random
import sys


def read_per_record(path):
    """{record: (beats, errors)} from the per-record table of an evaluate report."""
    rows, in_table = {}, False
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            if line.startswith("record "):
                in_table = True
                continue
            if not in_table or not line.strip():
                continue
            fields = line.split()
            try:
                rows[fields[0]] = (int(fields[1]), int(fields[2]))
            except (IndexError, ValueError):
                sys.exit(f"{path}:{number}: expected 'record beats errors ...', got {line!r}")
    if not rows:
        sys.exit(f"{path}: no per-record table (run evaluate with --per-record)")
    return rows


def accuracy(rows, records):
    beats = sum(rows[r][0] for r in records)
    errors = sum(rows[r][1] for r in records)
    return 1.0 - errors / beats


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("a", help="evaluate --per-record output of model A")
    parser.add_argument("b", help="evaluate --per-record output of model B")
    parser.add_argument("--replicates", type=int, default=10000, help="bootstrap replicates")
    parser.add_argument("--seed", type=int, default=1, help="seed of the resampling")
    args = parser.parse_args()

    a, b = read_per_record(args.a), read_per_record(args.b)
    if sorted(a) != sorted(b):
        sys.exit("the two reports cover different records")
    records = sorted(a)
    for r in records:
        if a[r][0] != b[r][0]:
            sys.exit(f"record {r}: {a[r][0]} beats in A but {b[r][0]} in B (different beat sets)")

    accuracy_a, accuracy_b = accuracy(a, records), accuracy(b, records)
    rng = random.Random(args.seed)
    diffs = sorted(
        accuracy(a, sample) - accuracy(b, sample)
        for sample in ([rng.choice(records) for _ in records] for _ in range(args.replicates))
    )
    low = diffs[int(0.025 * len(diffs))]
    high = diffs[int(0.975 * len(diffs)) - 1]
    a_better = sum(a[r][1] < b[r][1] for r in records)
    b_better = sum(a[r][1] > b[r][1] for r in records)
    print(f"{len(records)} records, {sum(a[r][0] for r in records)} beats")
    print(f"accuracy A {accuracy_a:.4f}  B {accuracy_b:.4f}")
    print(f"A - B {accuracy_a - accuracy_b:+.4f}, 95 % paired interval [{low:+.4f}, {high:+.4f}]"
          f" ({args.replicates} replicates resampling records)")
    print(f"fewer errors: A on {a_better} records, B on {b_better}")


if __name__ == "__main__":
    main()
