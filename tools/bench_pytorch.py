#!/usr/bin/env python3
"""The paper network in PyTorch, timed the way `ecgwgpu bench` times ecgwgpu, for a side-by-side
comparison on the same machine.

Same network (the `paper` preset: 408,357 parameters), same input length (187), same batch
sizes, same loss (two-fold focal, alpha 0.25/0.25, gamma 2/0.5) and optimiser (Adam, lr 1e-4).
A training step is forward + loss + backward + Adam step on one batch; inference is a forward
pass in eval mode without gradients. The first step and first inference are timed separately as
warm-up; then the median of --repeats. Runs on the CPU (with --threads threads) and, when CUDA is
available, on the GPU too (synchronised before each clock read).

    pip install torch
    python3 tools/bench_pytorch.py --batch 32 128 512 --threads 2
    python3 tools/bench_pytorch.py --batch 128 --json      # one JSON object per line
    python3 tools/bench_pytorch.py --preset mid-rr --members 15 --batch 32   # the shipped fifteen

Compare with `ecgwgpu bench --preset paper --batch 128` (same table) on the same machine, in one
sitting: both machines here are noisy.
"""

import argparse
import json
import os
import statistics
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from check_pytorch import PaperNet  # noqa: E402  (the same module the checkpoint check uses)

PAPER = {
    "input_len": 187,
    "in_channels": 1,
    "pair_channels": [32, 32, 64, 64, 128, 128],
    "kernel": 5,
    "padding": "same",
    "pool": 2,
    "dropout": 0.1,
    "dense": 128,
    "classes": 5,
}

# The shipped model's networks: the paper's six pairs at a quarter width, the R-R features
# joined before Dense_1 and a rhythm head (26,354 parameters).
MID_RR = {
    **PAPER,
    "pair_channels": [8, 8, 16, 16, 32, 32],
    "dense": 32,
    "rr_features": 8,
    "rhythm_head": 16,
}
PRESETS = {"paper": PAPER, "mid-rr": MID_RR}


def two_fold_focal(logits, target, folds=((0.25, 2.0), (0.25, 0.5))):
    """FL(a1, gm) + FL(a2, gn), FL = -a (1 - p_t)^g log p_t, mean over the batch."""
    log_p = torch.log_softmax(logits, dim=1).gather(1, target[:, None]).squeeze(1)
    p = log_p.exp()
    return sum((-a * (1 - p) ** g * log_p).mean() for a, g in folds)


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def bench(device, batch, infer_batch, repeats, preset="paper", members=1):
    """Times a training step of one network and inference of `members` networks (each on the
    same batch, their probabilities averaged, as an ensemble decides)."""
    torch.manual_seed(1)
    cfg = PRESETS[preset]
    nets = [PaperNet(cfg).to(device) for _ in range(members)]
    net = nets[0]
    opt = torch.optim.Adam(net.parameters(), lr=1e-4)
    x = torch.rand(batch, 1, 187, device=device)
    rr = torch.rand(batch, 8, device=device)
    y = torch.arange(batch, device=device) % 5
    xi = torch.rand(infer_batch, 1, 187, device=device)
    rri = torch.rand(infer_batch, 8, device=device)

    def train_step():
        net.train()
        opt.zero_grad(set_to_none=True)
        two_fold_focal(net(x, rr), y).backward()
        opt.step()

    def infer():
        with torch.no_grad():
            total = 0
            for n in nets:
                n.eval()
                total = total + torch.softmax(n(xi, rri), dim=1)
            return total / len(nets)

    start = time.perf_counter()
    train_step()
    infer()
    sync(device)
    warmup = time.perf_counter() - start
    train, inference = [], []
    for _ in range(repeats):
        t = time.perf_counter()
        train_step()
        sync(device)
        train.append(time.perf_counter() - t)
        t = time.perf_counter()
        infer()
        sync(device)
        inference.append(time.perf_counter() - t)
    train_s, infer_s = statistics.median(train), statistics.median(inference)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else (
        f"CPU, {torch.get_num_threads()} threads (PyTorch {torch.__version__})")
    return {
        "device": f"PyTorch {device.type}: {name}",
        "preset": preset,
        "members": members,
        "batch": batch,
        "infer_batch": infer_batch,
        "warmup_s": warmup,
        "train_step_ms": train_s * 1e3,
        "train_beats_per_s": batch / train_s,
        "infer_batch_ms": infer_s * 1e3,
        "infer_beats_per_s": infer_batch / infer_s,
    }


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--preset", choices=sorted(PRESETS), default="paper")
    p.add_argument("--members", type=int, default=1,
                   help="networks run on each inference batch (an ensemble; the shipped model has 15)")
    p.add_argument("--batch", type=int, nargs="+", default=[32, 128, 512])
    p.add_argument("--infer-batch", type=int, default=1024)
    p.add_argument("--repeats", type=int, default=10)
    p.add_argument("--threads", type=int, default=2, help="CPU threads (torch.set_num_threads)")
    p.add_argument("--cpu-only", action="store_true", help="skip CUDA even when present")
    p.add_argument("--cuda-only", action="store_true", help="skip the CPU (needs CUDA)")
    p.add_argument("--json", action="store_true", help="one JSON object per line")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    devices = [] if args.cuda_only else [torch.device("cpu")]
    if torch.cuda.is_available() and not args.cpu_only:
        devices.append(torch.device("cuda"))
    for device in devices:
        for batch in args.batch:
            r = bench(device, batch, args.infer_batch, args.repeats, args.preset, args.members)
            if args.json:
                print(json.dumps(r), flush=True)
                continue
            print(f"device               {r['device']}")
            print(f"preset               {args.preset} (batch {batch}, {args.members} network(s) inferring)")
            print(f"warm-up              {r['warmup_s']:.2f} s (first step and first inference)")
            print(f"training step        {r['train_step_ms']:.1f} ms  → {r['train_beats_per_s']:.0f} beats/s")
            print(f"inference (b{args.infer_batch})    {r['infer_batch_ms']:.1f} ms  → "
                  f"{r['infer_beats_per_s']:.0f} beats/s\n", flush=True)


if __name__ == "__main__":
    main()
