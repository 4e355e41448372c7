#!/usr/bin/env bash
# One command for a machine with a GPU and a Vulkan loader: the bench sweep (training b32, b128,
# b512, b2048; inference b4096), a per-dispatch breakdown, the test binaries, the README's main
# command and, with --data-dir, the paper recipe on the full MIT-BIH; PyTorch on CUDA beside it
# when torch is installed. Everything lands in OUT_DIR: gpu-bench.json (all figures, the device
# named in each) and gpu-bench.log (all output).
#
#   tools/gpu_bench.sh [--out DIR] [--bin PATH] [--baseline PATH] [--tests 'GLOB ...']
#                      [--data-dir MITDB] [--recipe-timeout S] [--repeats N] [--batches 'B ...']
#                      [--kernels 'VARIANT ...']
#
# Build on any machine (`cargo build --release`, `cargo test --release --no-run`) and bring
# target/release/ecgwgpu and target/release/deps/{ops,engine,train}-* along. --baseline runs a
# second ecgwgpu binary (e.g. an older commit) through the same sweep in the same sitting.
set -uo pipefail
cd "$(dirname "$0")/.."

out=gpu-bench-out bin=target/release/ecgwgpu baseline="" data_dir="" recipe_timeout=300 repeats=5
batches="32 128 512 2048" kernels=""
tests="target/release/deps/ops-* target/release/deps/engine-* target/release/deps/train-*"
while [ $# -gt 0 ]; do
    case "$1" in
        --out) out=$2; shift 2 ;;
        --bin) bin=$2; shift 2 ;;
        --baseline) baseline=$2; shift 2 ;;
        --tests) tests=$2; shift 2 ;;
        --data-dir) data_dir=$2; shift 2 ;;
        --recipe-timeout) recipe_timeout=$2; shift 2 ;;
        --repeats) repeats=$2; shift 2 ;;
        --batches) batches=$2; shift 2 ;;
        --kernels) kernels=$2; shift 2 ;;
        -h|--help) sed -n '2,15p' "$0"; exit 0 ;;
        *) echo "gpu_bench.sh: unknown argument '$1' (see --help)" >&2; exit 2 ;;
    esac
done
mkdir -p "$out"
log="$out/gpu-bench.log"
rows="$out/rows.jsonl"
: >"$log"
: >"$rows"
now() { python3 -c 'import time; print(time.time())'; }
say() { printf '\n=== %s ===\n' "$*" | tee -a "$log"; }
# one JSON row per line into rows.jsonl, tagged with what produced it
tag() { python3 -c '
import json, sys
for line in sys.stdin:
    line = line.strip()
    if line.startswith("{"):
        row = json.loads(line); row["source"] = sys.argv[1]; print(json.dumps(row))
' "$1" >>"$rows"; }

say "devices"
"$bin" devices 2>&1 | tee -a "$log"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv 2>/dev/null | tee -a "$log"

sweep() { # sweep BINARY SOURCE [extra bench flags]
    local b=$1 source=$2; shift 2
    for batch in $batches; do
        "$b" bench --preset paper --batch "$batch" --infer-batch 4096 --repeats "$repeats" --json "$@" \
            2>>"$log" | tee -a "$log" | tag "$source"
    done
}
# each kernel variant asked for (default: the adapter's own)
for k in ${kernels:-default}; do
    flags=(); [ "$k" = default ] || flags=(--kernels "$k")
    say "ecgwgpu bench sweep, kernels: $k"
    sweep "$bin" "ecgwgpu" --steps 50 "${flags[@]}"
    say "breakdown b32 and b512, kernels: $k"
    "$bin" bench --preset paper --batch 32 --repeats 2 --steps 5 --breakdown "${flags[@]}" 2>&1 | tee -a "$log"
    [ "$batches" = "32" ] ||
        "$bin" bench --preset paper --batch 512 --repeats 2 --steps 5 --breakdown "${flags[@]}" 2>&1 | tee -a "$log"
done
if [ -n "$baseline" ]; then
    say "baseline bench sweep ($baseline)"
    sweep "$baseline" baseline
fi

say "tests"
for t in $tests; do
    [ -x "$t" ] || continue
    start=$(now)
    "$t" --test-threads 1 >>"$log" 2>&1
    rc=$?
    python3 -c 'import json, sys; print(json.dumps({"test_binary": sys.argv[1], "exit": int(sys.argv[2]), "seconds": float(sys.argv[3])}))' \
        "$(basename "$t")" "$rc" "$(python3 -c "import time; print(time.time() - $start)")" | tee -a "$log" | tag tests
done

say "README main command: train --preset tiny --epochs 5 --lr 1e-3"
start=$(now)
"$bin" train --preset tiny --epochs 5 --lr 1e-3 --out "$out/run-tiny" >>"$log" 2>&1
rc=$?
python3 -c 'import json, sys; print(json.dumps({"command": "train --preset tiny --epochs 5 --lr 1e-3", "exit": int(sys.argv[1]), "seconds": float(sys.argv[2])}))' \
    "$rc" "$(python3 -c "import time; print(time.time() - $start)")" | tee -a "$log" | tag readme

if python3 -c 'import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)' 2>/dev/null; then
    say "PyTorch CUDA sweep (tools/bench_pytorch.py)"
    python3 tools/bench_pytorch.py --cuda-only --batch $batches --infer-batch 4096 \
        --repeats "$repeats" --json 2>>"$log" | tee -a "$log" | tag pytorch
else
    say "PyTorch with CUDA not found: no side-by-side rows"
fi

if [ -n "$data_dir" ]; then
    say "paper recipe, full MIT-BIH, intra split, 25 epochs (limit ${recipe_timeout}s)"
    start=$(now)
    timeout "$recipe_timeout" "$bin" train --data-dir "$data_dir" --split intra --out "$out/run-paper" \
        >>"$log" 2>&1
    rc=$?
    python3 -c 'import json, sys; print(json.dumps({"command": "train --data-dir MITDB --split intra (paper recipe, 25 epochs)", "exit": int(sys.argv[1]), "seconds": float(sys.argv[2]), "timed_out": int(sys.argv[1]) == 124}))' \
        "$rc" "$(python3 -c "import time; print(time.time() - $start)")" | tee -a "$log" | tag recipe
fi

python3 - "$rows" "$out/gpu-bench.json" <<'EOF'
import json, sys, datetime
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
json.dump({"date": datetime.date.today().isoformat(), "rows": rows}, open(sys.argv[2], "w"), indent=1)
EOF
rm -f "$rows"
say "wrote $out/gpu-bench.json and $log"
