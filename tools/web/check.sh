#!/usr/bin/env bash
# Builds the web page and checks it in headless Chromium on its software WebGPU adapter
# (SwiftShader): classifies an embedded record and compares it beat by beat with the native
# engine, feeds it bad files, trains the tiny network, and takes web/screenshot.png. Prints one
# JSON line (web/check.json keeps it) and fails when a target is missed:
#   probabilities within 1e-4 of native, >= 99.9 % same decisions, the CSV predict writes,
#   the loss goes down and the trained network classifies,
#   the wasm under 5 MB compressed, every bad file shown as a message, nothing fetched
#   from another origin.
set -euo pipefail
cd "$(dirname "$0")/../.."

need() {
    command -v "$1" >/dev/null 2>&1 && return
    echo "installing $2 (Debian package)" >&2
    apt-get update -qq >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$2" >&2
}
need chromium chromium
need node nodejs
need python3 python3

tools/web/build.sh

tmp=$(mktemp -d)
cleanup() {
    [ -n "${server:-}" ] && kill "$server" 2>/dev/null || true
    [ -n "${browser:-}" ] && kill "$browser" 2>/dev/null || true
    wait 2>/dev/null || true
    # Chromium's helper processes can still be writing its profile for a moment after it
    # ends: retry, and never let the clean-up decide the check's outcome
    for _ in 1 2 3 4 5; do rm -rf "$tmp" 2>/dev/null && break; sleep 1; done
    return 0
}
trap cleanup EXIT

# The native engine's CSV for the same record, from the binary `cargo test` builds (built the
# same way here, so that after `cargo test` nothing is compiled again).
cargo test --no-run --test serve >&2
target/debug/ecgwgpu predict --record data/mitdb/208 --out-dir "$tmp" >&2

# the page served as a user serves it
target/debug/ecgwgpu serve --dir web/dist --port 0 >"$tmp/serve.log" 2>&1 &
server=$!
for _ in $(seq 100); do grep -q 'http://' "$tmp/serve.log" && break; sleep 0.1; done
page=$(grep -o 'http://[0-9.:]*/' "$tmp/serve.log" | head -1)
[ -n "$page" ] || { echo "error: ecgwgpu serve did not start: $(cat "$tmp/serve.log")" >&2; exit 1; }
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
devtools_port=$(free_port)
# no background traffic: this machine's network is closed, and the page must need none
chromium --headless=new --no-sandbox --disable-gpu-sandbox --no-first-run \
    --disable-background-networking --disable-component-update --disable-sync --disable-quic \
    --enable-unsafe-webgpu --use-webgpu-adapter=swiftshader --enable-features=Vulkan \
    --user-data-dir="$tmp/profile" --remote-debugging-port="$devtools_port" \
    about:blank >"$tmp/chromium.log" 2>&1 &
browser=$!

if ! json=$(timeout 1800 node --experimental-websocket --no-warnings tools/web/check.mjs \
    "$devtools_port" "${page}index.html" "$tmp/208_pred.csv" web/screenshot.png); then
    echo "error: the page check failed; Chromium's log:" >&2
    tail -20 "$tmp/chromium.log" >&2
    exit 1
fi

wasm=web/dist/pkg/ecgwgpu_web_bg.wasm
json=$(python3 - "$json" "$wasm" <<'PY'
import gzip, json, sys
r = json.loads(sys.argv[1])
raw = open(sys.argv[2], "rb").read()
r["wasm_bytes"] = len(raw)
r["wasm_gzip_bytes"] = len(gzip.compress(raw, 9))
print(json.dumps(r))
PY
)
echo "$json"
echo "$json" > web/check.json

python3 - "$json" <<'PY'
import json, sys
r = json.loads(sys.argv[1])
fail = []
if not r["max_prob_diff"] <= 1e-4: fail.append(f"probabilities differ from native by {r['max_prob_diff']}")
if r["same_decisions"] < 0.999: fail.append(f"same decisions for only {r['same_decisions']:.4f} of the beats")
if not r["csv_matches_native"]: fail.append("the page's CSV differs from predict's (beyond the probabilities' last digit)")
if r["trained_classified"]["beats"] != r["beats"]: fail.append(f"the trained network classified {r['trained_classified']}")
if r["beats"] != r["native_beats"]: fail.append(f"{r['beats']} beats, native {r['native_beats']}")
if not r["train_loss_last"] < r["train_loss_first"]: fail.append("training did not lower the loss")
if r["wasm_gzip_bytes"] >= 5 << 20: fail.append("the wasm is over 5 MB compressed")
for name, shown in r["own_files"].items():
    if not shown["summary"]: fail.append(f"own {name} file through the file input: {shown}")
for name, shown in r["bad_input"].items():
    if shown == "accepted" or not shown.strip(): fail.append(f"bad input '{name}' showed no message")
for name, v in r["variants"].items():
    if not v["max_prob_diff"] <= 1e-4 or v["same_decisions"] < 0.999:
        fail.append(f"{name} kernels: probabilities off by {v['max_prob_diff']}, same decisions {v['same_decisions']:.4f}")
    if not v["train_loss"] == v["train_loss"] or v["train_loss"] == float("inf"):
        fail.append(f"{name} kernels: training loss {v['train_loss']}")
if "WebGPU" not in r["no_webgpu_message"]:
    fail.append("a browser without WebGPU got no message saying so")
if r["foreign_requests"]: fail.append(f"requests to other origins: {r['foreign_requests']}")
if r["page_exceptions"]: fail.append(f"uncaught exceptions in the page: {r['page_exceptions']}")
for f in fail: print("error:", f, file=sys.stderr)
sys.exit(1 if fail else 0)
PY
