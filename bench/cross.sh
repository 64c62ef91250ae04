#!/usr/bin/env bash
# Benchmark (issue 18): one tag built cold for linux/amd64 (native, trixie root) and for
# linux/arm64 (cross, trixie cross root) on this machine, then both dists as images
# (`image --from-dist`, one per arch, and the index of the two): build times, dist sizes,
# image sizes per arch. Temporary project and cache (empty ccache and GOCACHE); the
# builder roots are shared with the default cache so they are not remade. Usage:
#   bench/cross.sh TAG [ollama-vulkan global args, e.g. --mirror ollama=… --mirror llama.cpp=…]
set -euo pipefail
tag=${1:?usage: bench/cross.sh TAG [args...]}; shift
here=$(cd "$(dirname "$0")" && pwd); cd "$here/.."
cargo build --release --quiet
bin=$PWD/target/release/ollama-vulkan
tmp=$(mktemp -d /var/tmp/ov-cross.XXXXXX); trap 'rm -rf "$tmp"' EXIT
mkdir -p "$tmp/project" "$tmp/cache"
cp -r recipes patches "$tmp/project/"
default_cache=${XDG_CACHE_HOME:-$HOME/.cache}/ollama-vulkan
mkdir -p "$default_cache/builders"
ln -s "$default_cache/builders" "$tmp/cache/builders"
ov() { "$bin" --project "$tmp/project" --cache-dir "$tmp/cache" "$@"; }
recipe=$tmp/project/work/recipes/ollama-$tag.toml
ov recipe new --ollama "$tag" -q "$@" >/dev/null
echo "| arch | wall (s) | steps (s) | compile steps | dist (MB) |"
echo "|---|---|---|---|---|"
for arch in amd64 arm64; do
  s=$(date +%s.%N)
  ov build "$recipe" --arch "$arch" --json -q "$@" >"$tmp/$arch.json"
  e=$(date +%s.%N)
  python3 - "$arch" "$(echo "$e - $s" | bc)" "$tmp/$arch.json" <<'PY'
import json, sys
arch, wall, out = sys.argv[1], float(sys.argv[2]), json.load(open(sys.argv[3]))
m = json.load(open(out["manifest"]))
steps = sum(s["seconds"] for s in m["steps"])
per = ", ".join(f'{s["name"]} {s["seconds"]:.0f}' for s in m["steps"])
size = sum(f["bytes"] for f in m["dist_files"]) / 1e6
print(f"| {arch} | {wall:.0f} | {steps:.0f} | {per} | {size:.1f} |")
PY
done
echo
echo "| image | platform | uncompressed (MB) |"
echo "|---|---|---|"
ov image "$recipe" --from-dist --arch amd64 --arch arm64 --tag "localhost/ov-bench-cross:$tag" \
  --output "oci-archive:$tmp/index.tar" --json -q >"$tmp/image.json"
python3 - "$tmp/image.json" <<'PY'
import json, sys
j = json.load(open(sys.argv[1]))
for i in j["images"]:
    print(f'| {i["image"]} | {i["platform"]} | {i["size_bytes"] / 1e6:.1f} |')
print(f'| {j["index"]} (oci-archive, both, compressed layers) | index | {j["output_bytes"] / 1e6:.1f} |')
PY
