#!/usr/bin/env bash
# The cross-database table: a checkpoint on MIT-BIH's DS2 read as recordings from other hardware
# or databases would arrive (another lead, another rate with noise, beats from the QRS detector,
# beat annotations placed 40 ms before or after MIT-BIH's) and on the PTB Diagnostic records,
# each row one `ecgwgpu evaluate` with options. Nothing here chooses a setting; the rows only
# report.
#
#   tools/cross_database.sh [--checkpoint FILE] [--out DIR] [--mitdb DIR] [--ptbdb DIR]
#
# Writes DIR/<row>.json (evaluate --json, with 95 % intervals over records) and DIR/table.md.
# Defaults: the shipped model, results/cross-database, ../shared/data/{mitdb,ptb/ptbdb}.
set -euo pipefail
cd "$(dirname "$0")/.."

checkpoint=() out=results/cross-database
mitdb=${ECGWGPU_MITDB:-../shared/data/mitdb} ptbdb=${ECGWGPU_PTBDB:-../shared/data/ptb/ptbdb}
while [ $# -gt 0 ]; do
    case $1 in
        --checkpoint) checkpoint=(--checkpoint "$2"); shift 2 ;;
        --out) out=$2; shift 2 ;;
        --mitdb) mitdb=$2; shift 2 ;;
        --ptbdb) ptbdb=$2; shift 2 ;;
        -h|--help) sed -n '2,11p' "$0"; exit 0 ;;
        *) echo "unknown option $1 (see --help)" >&2; exit 2 ;;
    esac
done
bin=${ECGWGPU_BIN:-target/release/ecgwgpu}
[ -x "$bin" ] || cargo build --release
mkdir -p "$out"

# name | evaluate options
rows=(
    "ds2-mlii|--data-dir $mitdb --split inter"
    "ds2-mlii-detected|--data-dir $mitdb --split inter --detect"
    "ds2-second-lead|--data-dir $mitdb --split inter --lead V1,V2,V4,V5"
    "ds2-128hz-noise|--data-dir $mitdb --split inter --resample 128 --noise typical"
    "ds2-250hz-noise|--data-dir $mitdb --split inter --resample 250 --noise typical"
    "ds2-250hz-strong-noise|--data-dir $mitdb --split inter --resample 250 --noise strong"
    "ds2-250hz-strong-noise-detected|--data-dir $mitdb --split inter --resample 250 --noise strong --detect"
    "ds2-annotations-40ms-early|--data-dir $mitdb --split inter --annotation-shift -40"
    "ds2-annotations-40ms-late|--data-dir $mitdb --split inter --annotation-shift 40"
    "ptbdb-lead-ii-detected|--data-dir $ptbdb --split all --lead ii --detect"
)
names=()
for row in "${rows[@]}"; do
    name=${row%%|*} opts=${row#*|}
    names+=("$name")
    echo "== $name: evaluate $opts" >&2
    # shellcheck disable=SC2086
    "$bin" evaluate "${checkpoint[@]}" $opts --bootstrap 1000 --json > "$out/$name.json.tmp"
    mv "$out/$name.json.tmp" "$out/$name.json"
done
python3 tools/cross_database_table.py "$out" "${names[@]}" > "$out/table.md.tmp"
mv "$out/table.md.tmp" "$out/table.md"
cat "$out/table.md"
