#!/usr/bin/env bash
# The training runs of issue "A rhythm stream", as one command for a GPU machine lent for a few
# minutes: DS1 → DS2 with the dual-stream network on beats relative to the patient's median beat,
# with a rhythm head and validation-chosen decision offsets (`paper-rr-rel`), beside `paper-rr`
# and `paper` (3 seeds each, interleaved by seed so that a cut-off leaves whole seeds), then
# optional extra runs; with --intra, also the intra-patient Table 1 runs with augmentation in a
# second lane. On the H100 (2026-11-26) separate processes time-share the GPU rather than
# overlap: an inter run took 58–62 s beside the intra lane and 34 s alone, so two lanes gain little;
# every run is bounded by --deadline, seconds from the start, so the command always ends in time
# and keeps what finished. Each run directory keeps its best.safetensors; the bulky
# last/resume checkpoints are deleted. One summary line per run goes to OUT/runs.jsonl.
#
#   tools/gpu_train_runs.sh --data-dir MITDB [--bin PATH] [--out DIR] [--deadline S] [--intra] [--quick]
#
# --quick: the same runs with the tiny presets and 1 epoch, to try the script on any machine.
set -uo pipefail
cd "$(dirname "$0")/.."

bin=target/release/ecgwgpu out=gpu-runs-out data_dir="" deadline=480 quick=0 intra=0
while [ $# -gt 0 ]; do
    case "$1" in
        --bin) bin=$2; shift 2 ;;
        --out) out=$2; shift 2 ;;
        --data-dir) data_dir=$2; shift 2 ;;
        --deadline) deadline=$2; shift 2 ;;
        --quick) quick=1; shift ;;
        --intra) intra=1; shift ;;
        -h|--help) sed -n '2,15p' "$0"; exit 0 ;;
        *) echo "gpu_train_runs.sh: unknown argument '$1' (see --help)" >&2; exit 2 ;;
    esac
done
[ -n "$data_dir" ] || { echo "gpu_train_runs.sh: --data-dir is required" >&2; exit 2; }
mkdir -p "$out"
start=$(date +%s)
left() { echo $(( deadline - ($(date +%s) - start) )); }

# run NAME MIN_SECONDS TRAIN_ARGS...: skipped when fewer than MIN_SECONDS are left
run() {
    local name=$1 need=$2; shift 2
    local args=("$@") t0 rc remaining
    if [ "$quick" = 1 ]; then
        args=("${args[@]/#paper-rr/tiny-rr}"); args=("${args[@]/#paper/tiny}"); args+=(--epochs 1)
    fi
    remaining=$(left)
    if [ "$remaining" -lt "$need" ]; then
        echo "{\"run\": \"$name\", \"skipped\": true, \"seconds_left\": $remaining}" >>"$out/runs.jsonl"
        return
    fi
    t0=$(date +%s)
    timeout "$remaining" "$bin" train --data-dir "$data_dir" "${args[@]}" --out "$out/$name" \
        >"$out/$name.log" 2>&1
    rc=$?
    rm -f "$out/$name/last.safetensors" "$out/$name/resume.safetensors"
    echo "{\"run\": \"$name\", \"args\": \"${args[*]}\", \"exit\": $rc, \"timed_out\": $([ $rc = 124 ] && echo true || echo false), \"seconds\": $(( $(date +%s) - t0 ))}" \
        >>"$out/runs.jsonl"
}

# Inter-patient at batch 128 (the paper names no batch size; 128 fits nine runs in the lease),
# the three networks interleaved by seed; then the optional run.
lane_inter() {
    local rel=(--beat-reference record-median --rhythm-head 16 --calibrate)
    for seed in 1 2 3; do
        run "paper-rr-rel-inter-s$seed" 30 --preset paper-rr --split inter --batch 128 --seed "$seed" "${rel[@]}"
        run "paper-rr-inter-s$seed" 30 --preset paper-rr --split inter --batch 128 --seed "$seed"
        run "paper-inter-s$seed" 30 --preset paper --split inter --batch 128 --seed "$seed"
    done
    run paper-rr-rel-inter-b32-s1 120 --preset paper-rr --split inter --batch 32 --seed 1 "${rel[@]}"
}
# Intra-patient, the paper's Table 1 setting, with minority classes augmented to 10,000 beats.
lane_intra() {
    run paper-intra-aug-s1 60 --preset paper --split intra --augment 10000 --seed 1
    run paper-rr-intra-aug-s1 150 --preset paper-rr --split intra --augment 10000 --seed 1
}

echo "gpu_train_runs: device: $("$bin" devices 2>&1 | head -3 | tr '\n' ' ')" | tee "$out/device.txt"
lane_inter &
[ "$intra" = 1 ] && lane_intra &
wait
echo "gpu_train_runs: done in $(( $(date +%s) - start )) s" | tee -a "$out/device.txt"
cat "$out/runs.jsonl"
