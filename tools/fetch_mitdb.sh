#!/usr/bin/env bash
# Downloads the full MIT-BIH Arrhythmia Database 1.0.0 from PhysioNet into DIR (default
# ./mitdb-full) and verifies PhysioNet's SHA-256 checksums. For users with internet access:
# ecgwgpu itself never downloads anything. Then: ecgwgpu train --data-dir DIR
set -euo pipefail
dir="${1:-mitdb-full}"
base="https://physionet.org/files/mitdb/1.0.0"
mkdir -p "$dir" && cd "$dir"
curl -fsSLO "$base/RECORDS"
curl -fsSLO "$base/SHA256SUMS.txt"
while read -r rec; do
    for ext in hea dat atr; do
        [ -f "$rec.$ext" ] || curl -fsSLO "$base/$rec.$ext"
    done
done < RECORDS
grep -E '^[0-9a-f]+ +[0-9]+\.(hea|dat|atr)$' SHA256SUMS.txt | sha256sum -c --quiet
echo "MIT-BIH Arrhythmia Database in $(pwd): checksums OK"
