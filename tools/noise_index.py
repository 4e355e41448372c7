#!/usr/bin/env python3
"""A candidate per-recording noise index, measured on MIT-BIH (exploration for a future warning).

Index: the median, over the intervals between beats (200 ms after one R peak to 100 ms before
the next), of the RMS of the signal's second difference, over the median R amplitude
(peak-to-peak within 50 ms of the R peak). Measured on MLII resampled to 125 Hz, as the network
sees it, for DS1, DS2, and DS2 with added noise. The noise is a rough Python copy of
`ecgwgpu evaluate --noise typical|strong`: baseline wander, 50 Hz hum, Gaussian EMG, at the
same amplitudes. This script only reports: nothing in ecgwgpu reads its output.

    python3 tools/noise_index.py [--mitdb DIR]     # needs wfdb, numpy, scipy
"""
import argparse

import numpy as np
import wfdb
from scipy.signal import resample_poly

DS1 = "101 106 108 109 112 114 115 116 118 119 122 124 201 203 205 207 208 209 215 220 223 230".split()
DS2 = "100 103 105 111 113 117 121 123 200 202 210 212 213 214 219 221 222 228 231 232 233 234".split()
BEATS = set("NLRejAaJSVEFQ/f")
LEVELS = {"typical": (0.15, 0.02, 0.02), "strong": (0.4, 0.05, 0.06)}  # wander, hum, EMG (mV)


def add_noise(x, fs, level, rng):
    wander_mv, hum_mv, emg_mv = LEVELS[level]
    t = np.arange(len(x)) / fs
    wander = sum(wander_mv / 4 * np.sin(2 * np.pi * f * t + rng.uniform(0, 2 * np.pi))
                 for f in rng.uniform(0.05, 0.5, 4))
    return x + wander + hum_mv * np.sin(2 * np.pi * 50 * t) + emg_mv * rng.normal(size=len(x))


def noise_index(x, r_peaks, fs):
    d2 = np.diff(x, 2)
    between, amplitude = [], []
    for a, b in zip(r_peaks[:-1], r_peaks[1:]):
        s, e = a + int(0.2 * fs), b - int(0.1 * fs)
        if e - s > int(0.1 * fs):
            between.append(np.sqrt(np.mean(d2[s:e] ** 2)))
        amplitude.append(np.ptp(x[max(0, a - int(0.05 * fs)):a + int(0.05 * fs)]))
    return float(np.median(between) / np.median(amplitude))


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--mitdb", default="../shared/data/mitdb")
    args = p.parse_args()
    rng = np.random.default_rng(1)
    rows = {}
    for name, records, level in [("DS1", DS1, None), ("DS2", DS2, None),
                                 ("DS2 + typical noise", DS2, "typical"),
                                 ("DS2 + strong noise", DS2, "strong")]:
        values = []
        for r in records:
            rec = wfdb.rdrecord(f"{args.mitdb}/{r}")
            ann = wfdb.rdann(f"{args.mitdb}/{r}", "atr")
            ch = rec.sig_name.index("MLII") if "MLII" in rec.sig_name else 0
            x, fs = rec.p_signal[:, ch], rec.fs
            if level:
                x = add_noise(x, fs, level, rng)
            peaks = np.array([s for s, sym in zip(ann.sample, ann.symbol) if sym in BEATS])
            # 360 Hz to 125 Hz, as the pipeline reads MIT-BIH
            values.append(noise_index(resample_poly(x, 25, 72), peaks * 125 // 360, 125))
        rows[name] = np.array(values)
    ceiling = rows["DS1"].max()
    print("| records | median index | max | above DS1's max | above twice DS1's max |")
    print("|---|---|---|---|---|")
    for name, v in rows.items():
        print(f"| {name} | {np.median(v):.4f} | {v.max():.4f} | {(v > ceiling).sum()} of {len(v)} "
              f"| {(v > 2 * ceiling).sum()} of {len(v)} |")


if __name__ == "__main__":
    main()
