#!/usr/bin/env python3
"""Load an ecgwgpu checkpoint into an equivalent PyTorch module and check that both give the same
class probabilities on real beats (max absolute difference <= 1e-4).

This proves two things at once: the checkpoint really is a PyTorch state dict (names, layouts),
and ecgwgpu's WGSL forward pass computes the network PyTorch would.

Needs: python3 with torch, safetensors and numpy (pip install torch safetensors numpy), and a
built ecgwgpu. Run from the repository root, for example:

    cargo build --release
    cargo run --release -- train --preset tiny --epochs 1 --lr 1e-3 --out runs/check
    python3 tools/check_pytorch.py --checkpoint runs/check/best.safetensors

It exports up to --limit beats of the embedded records (or --data-dir) with `ecgwgpu data export`,
classifies them with `ecgwgpu predict --beats-csv`, runs the same beats through PyTorch in eval
mode, and exits non-zero if any probability differs by more than --tol. Optional in CI: torch is a
large download, so the Rust tests check the same forward pass against an f64 CPU reference instead.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile

import numpy as np
import torch
from safetensors.torch import load_file


class PaperNet(torch.nn.Module):
    """The paper's network from ecgwgpu's model config: pairs of Conv-ReLU-Conv-ReLU-MaxPool-
    Dropout, then Flatten-Dense-ReLU-Dropout-Dense. A dual-stream config (rr_features > 0, the
    `paper-rr` preset) joins the beat's R-R features to the flattened features before Dense_1,
    and a rhythm head (rhythm_head > 0) adds logits of its own from those features alone.
    Attribute names match the checkpoint's."""

    def __init__(self, cfg):
        super().__init__()
        padding = cfg["padding"].lower()
        channels, length = cfg["in_channels"], cfg["input_len"]
        self.depth = len(cfg["pair_channels"])
        self.pool = cfg["pool"]
        for k, out in enumerate(cfg["pair_channels"], start=1):
            for j, cin in ((1, channels), (2, out)):
                conv = torch.nn.Conv1d(cin, out, cfg["kernel"], padding=padding)
                setattr(self, f"conv{k}_{j}", conv)
                if padding == "valid":
                    length -= cfg["kernel"] - 1
            channels, length = out, length // self.pool
        self.rr_features = cfg.get("rr_features", 0)
        self.dense1 = torch.nn.Linear(channels * length + self.rr_features, cfg["dense"])
        self.dense2 = torch.nn.Linear(cfg["dense"], cfg["classes"])
        self.rhythm_head = cfg.get("rhythm_head", 0)
        if self.rhythm_head:
            self.rhythm1 = torch.nn.Linear(self.rr_features, self.rhythm_head)
            self.rhythm2 = torch.nn.Linear(self.rhythm_head, cfg["classes"])
        self.dropout = torch.nn.Dropout(cfg["dropout"])

    def forward(self, x, rr=None):
        for k in range(1, self.depth + 1):
            x = torch.relu(getattr(self, f"conv{k}_1")(x))
            x = torch.relu(getattr(self, f"conv{k}_2")(x))
            x = self.dropout(torch.nn.functional.max_pool1d(x, self.pool))
        x = torch.flatten(x, 1)
        if self.rr_features:
            x = torch.cat([x, rr[:, : self.rr_features]], dim=1)
        x = self.dropout(torch.relu(self.dense1(x)))
        logits = self.dense2(x)
        if self.rhythm_head:
            # the rhythm head: its own logits from the R-R features alone, added
            logits = logits + self.rhythm2(torch.relu(self.rhythm1(rr[:, : self.rr_features])))
        return logits


def run(cmd):
    print("+", " ".join(cmd), flush=True)
    subprocess.run(cmd, check=True)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--checkpoint", required=True, help="safetensors file written by ecgwgpu train")
    p.add_argument("--ecgwgpu", default="target/release/ecgwgpu", help="the ecgwgpu binary")
    p.add_argument("--data-dir", help="WFDB records to take beats from (default: embedded)")
    p.add_argument("--limit", type=int, default=512, help="beats to compare")
    p.add_argument("--tol", type=float, default=1e-4, help="largest allowed |difference|")
    args = p.parse_args()

    from safetensors import safe_open
    with safe_open(args.checkpoint, "pt") as f:
        cfg = json.loads(f.metadata()["model"])
    rr_features = cfg.get("rr_features", 0)

    with tempfile.TemporaryDirectory() as tmp:
        beats_csv = os.path.join(tmp, "beats.csv")
        # a dual-stream model needs each beat's R-R features: 187 samples, the R-R features, label
        export = [args.ecgwgpu, "data", "export", "--out", beats_csv] + (["--rr"] if rr_features else [])
        if args.data_dir:
            export += ["--data-dir", args.data_dir]
        # a network on beats relative to their record's median beat gets them so (the transform
        # is the data's, not the network's: both sides see the same rows)
        if cfg.get("beat_reference", "none") != "none":
            export += ["--beat-reference", cfg["beat_reference"]]
        run(export)
        rows = np.loadtxt(beats_csv, delimiter=",", dtype=np.float64, ndmin=2)
        # An even spread over the records rather than the first record's beats only.
        pick = np.linspace(0, len(rows) - 1, min(args.limit, len(rows))).astype(int)
        subset = os.path.join(tmp, "subset.csv")
        np.savetxt(subset, rows[pick], delimiter=",", fmt="%.9e")
        run([args.ecgwgpu, "predict", "--checkpoint", args.checkpoint,
             "--beats-csv", subset, "--out-dir", tmp, "--annotator", "check"])
        ours = np.genfromtxt(os.path.join(tmp, "subset_check.csv"), delimiter=",",
                             names=True, dtype=None, encoding="utf-8")
        prob_cols = [n for n in ours.dtype.names if n.startswith("p_")]
        ours_p = np.stack([ours[c] for c in prob_cols], axis=1).astype(np.float64)

        tensors = load_file(args.checkpoint)
        net = PaperNet(cfg).double()
        net.load_state_dict({k: v.double() for k, v in tensors.items()}, strict=True)
        net.eval()
        x = torch.from_numpy(rows[pick, : cfg["input_len"]]).unsqueeze(1)
        rr = torch.from_numpy(rows[pick, cfg["input_len"] : cfg["input_len"] + rr_features]) if rr_features else None
        with torch.no_grad():
            theirs_p = torch.softmax(net(x, rr), dim=1).numpy()

    diff = np.abs(ours_p - theirs_p)
    worst = np.unravel_index(diff.argmax(), diff.shape)
    agree = (ours_p.argmax(1) == theirs_p.argmax(1)).mean()
    print(f"{len(pick)} beats, {cfg['classes']} classes: max |ecgwgpu - PyTorch| = {diff.max():.2e} "
          f"(beat {worst[0]}, class {worst[1]}); predicted classes agree on {agree:.1%}")
    # ecgwgpu prints probabilities with 6 decimals, so 5e-7 of the difference is rounding.
    if diff.max() > args.tol:
        print(f"FAIL: larger than --tol {args.tol}")
        sys.exit(1)
    print(f"OK: within {args.tol}")


if __name__ == "__main__":
    main()
