#!/usr/bin/env bash
# Builds the web page into web/dist: the engine compiled to wasm (web/ crate), its JavaScript
# bindings, the page's files, and the embedded MIT-BIH records. Serve web/dist with
# `ecgwgpu serve` or any static file server; the page fetches nothing from elsewhere.
set -euo pipefail
cd "$(dirname "$0")/../.."

# The wasm-bindgen CLI must match the crate version in Cargo.lock exactly.
version=$(awk '/^name = "wasm-bindgen"$/ {getline; gsub(/version = |"/, ""); print; exit}' Cargo.lock)
if ! command -v wasm-bindgen >/dev/null 2>&1 || [ "$(wasm-bindgen --version | awk '{print $2}')" != "$version" ]; then
    echo "installing wasm-bindgen-cli $version (once)" >&2
    cargo install wasm-bindgen-cli --version "$version" >&2
fi
if command -v rustup >/dev/null 2>&1 && ! rustup target list --installed | grep -q wasm32-unknown-unknown; then
    rustup target add wasm32-unknown-unknown >&2
fi

cargo build -p ecgwgpu-web --release --target wasm32-unknown-unknown >&2
rm -rf web/dist
mkdir -p web/dist/records
wasm-bindgen --target web --no-typescript --out-dir web/dist/pkg \
    target/wasm32-unknown-unknown/release/ecgwgpu_web.wasm
cp web/index.html web/app.js web/style.css web/dist/
for r in $(cat data/mitdb/RECORDS); do
    cp "data/mitdb/$r.hea" "data/mitdb/$r.dat" "data/mitdb/$r.atr" web/dist/records/
done
cp data/mitdb/RECORDS web/dist/records/
echo "built web/dist ($(du -sh web/dist | cut -f1))" >&2
