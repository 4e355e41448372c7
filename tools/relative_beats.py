#!/usr/bin/env python3
"""Beats relative to their patient's median beat, as CSVs for `ecgwgpu train --train-csv`: an
experiment in per-patient normalisation, not (yet) a mode of the tools.

A supraventricular beat has its patient's normal shape; what a shape-trained network learns
about one patient's S beats does not carry over to the next patient. Subtracting each record's
median beat leaves what differs from that patient's usual beat, which may carry over better.

For every DS1 and DS2 record (de Chazal 2004, as `src/data/splits.rs` lists them) it runs
`ecgwgpu data export --rr` on that record alone, then writes, in --out:
  ds1_raw.csv, ds2_raw.csv  the beats as exported (187 samples, 7 R-R features, label);
  ds1_rel.csv, ds2_rel.csv  each sample replaced by (sample - the record's median)/2 + 0.5,
                            which keeps [0, 1]; R-R features and labels unchanged.

    python3 tools/relative_beats.py --data-dir MITDB --out rel
    ecgwgpu train --preset tiny-rr --train-csv rel/ds1_rel.csv --test-csv rel/ds2_rel.csv ...

With --train-csv, validation is 10 % of DS1's beats (the same patients), not held-out records.
Needs numpy.
"""

import argparse
import os
import re
import subprocess
import sys
import tempfile

import numpy as np

SAMPLES = 187


def record_lists(splits_rs):
    """(DS1, DS2) record names from splits.rs, so that the lists live in one place."""
    text = open(splits_rs, encoding="utf-8").read()
    lists = []
    for name in ("DS1", "DS2"):
        body = re.search(rf"pub const {name}: \[&str; \d+\] = \[(.*?)\];", text, re.S)
        if not body:
            sys.exit(f"{splits_rs}: no {name} list")
        lists.append(re.findall(r'"(\d+)"', body.group(1)))
    return lists


def export_record(ecgwgpu, data_dir, record, tmp):
    """The record's beats with R-R features, exported on their own."""
    folder = os.path.join(tmp, record)
    os.makedirs(folder, exist_ok=True)
    for ext in ("hea", "dat", "atr"):
        os.symlink(os.path.abspath(os.path.join(data_dir, f"{record}.{ext}")),
                   os.path.join(folder, f"{record}.{ext}"))
    csv = os.path.join(tmp, f"{record}.csv")
    done = subprocess.run([ecgwgpu, "data", "export", "--rr", "--data-dir", folder, "--out", csv],
                          capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"record {record}: ecgwgpu data export failed:\n{done.stderr}")
    return np.loadtxt(csv, delimiter=",", dtype=np.float64, ndmin=2)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data-dir", required=True, help="the MIT-BIH records")
    p.add_argument("--out", required=True, help="folder for the four CSVs")
    p.add_argument("--ecgwgpu", default="target/release/ecgwgpu", help="the ecgwgpu binary")
    p.add_argument("--splits", default="src/data/splits.rs", help="where DS1 and DS2 are listed")
    args = p.parse_args()
    os.makedirs(args.out, exist_ok=True)
    fmt = ["%.6f"] * (SAMPLES + 7) + ["%d"]
    with tempfile.TemporaryDirectory() as tmp:
        for part, records in zip(("ds1", "ds2"), record_lists(args.splits)):
            raw, rel = [], []
            for record in records:
                beats = export_record(args.ecgwgpu, args.data_dir, record, tmp)
                median = np.median(beats[:, :SAMPLES], axis=0)
                relative = beats.copy()
                relative[:, :SAMPLES] = (beats[:, :SAMPLES] - median) / 2 + 0.5
                raw.append(beats)
                rel.append(relative)
            for kind, rows in (("raw", raw), ("rel", rel)):
                path = os.path.join(args.out, f"{part}_{kind}.csv")
                np.savetxt(path, np.vstack(rows), delimiter=",", fmt=fmt)
                print(f"wrote {path}: {sum(len(r) for r in rows)} beats")


if __name__ == "__main__":
    main()
