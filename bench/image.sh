#!/usr/bin/env bash
# Benchmark: `ollama-vulkan image` of one recipe whose build directory exists — a cold
# build (--no-cache: every step runs) and a rebuild with nothing changed (layer cache),
# then the exported OCI archive (gzip layers) against the engine's uncompressed size.
# Usage: bench/image.sh RECIPE [--from-dist] [other `image` args, e.g. --dest DIR]
set -euo pipefail
recipe=${1:?usage: bench/image.sh RECIPE [--from-dist] [image args...]}; shift
here=$(cd "$(dirname "$0")" && pwd); cd "$here/.."
cargo build --release --quiet
bin=$PWD/target/release/ollama-vulkan
tmp=$(mktemp -d /var/tmp/ov-bench-image.XXXXXX); trap 'rm -rf "$tmp"' EXIT
row() { # label, json file
  python3 - "$1" "$2" <<'PY'
import json, sys
label, j = sys.argv[1], json.load(open(sys.argv[2]))
mb = lambda b: "%.1f" % (b / 1e6) if b else "–"
print(f"| {label} | {j['mode']} | {j['engine']} | {j['seconds']:.1f} | {mb(j.get('size_bytes'))} | {mb(j.get('output_bytes'))} |")
PY
}
echo "| run | mode | engine | wall (s) | uncompressed (MB) | oci-archive (MB) |"
echo "|---|---|---|---|---|---|"
"$bin" -q image "$recipe" "$@" --no-cache --json >"$tmp/cold.json"
row "cold (--no-cache)" "$tmp/cold.json"
"$bin" -q image "$recipe" "$@" --output "oci-archive:$tmp/out.oci.tar" --json >"$tmp/warm.json"
row "unchanged inputs (+ export)" "$tmp/warm.json"
