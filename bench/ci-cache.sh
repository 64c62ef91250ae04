#!/usr/bin/env bash
# What a shared compiler cache saves in CI (issue 21, docs/ci.md): `ci --build` of TAG1
# with empty caches, then of each following TAG on the caches TAG1 left (ccache objects,
# Go's build and module caches), as consecutive tags on one runner, or runners sharing a
# cache, would see them. Prints, per tag: the build's compile seconds (the dist
# manifest's timings), the slowest steps, and ccache's hits and misses for that build.
#
#   bench/ci-cache.sh [--cache-dir DIR] [--jobs N] [--mirror NAME=PATH]... TAG1 TAG2 [TAG...]
#
# --cache-dir: where the caches live (default: a new temporary directory, so TAG1 starts
# cold; the trixie builder root is made there once, ~30 s, outside the timings). The
# project's work/builds/ollama-TAG directories are removed first, so no build is
# incremental. Run from the checkout; BIN=path/to/ollama-vulkan (default: target/release).
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-target/release/ollama-vulkan}
cache="" jobs="" mirrors=() tags=()
while [ $# -gt 0 ]; do
  case $1 in
    --cache-dir) cache=$2; shift 2 ;;
    --jobs) jobs=$2; shift 2 ;;
    --mirror) mirrors+=(--mirror "$2"); shift 2 ;;
    --mirror=*) mirrors+=("$1"); shift ;;
    -h|--help) sed -n '2,13p' "$0"; exit 0 ;;
    -*) echo "unknown option $1" >&2; exit 2 ;;
    *) tags+=("$1"); shift ;;
  esac
done
[ ${#tags[@]} -ge 2 ] || { echo "usage: $0 [--cache-dir DIR] [--mirror NAME=PATH]... TAG1 TAG2 [TAG...]" >&2; exit 2; }
[ -x "$BIN" ] || { echo "$BIN: build it first (cargo build --release)" >&2; exit 2; }
[ -n "$cache" ] || cache=$(mktemp -d /var/tmp/ci-cache-bench.XXXXXX)
mkdir -p "$cache"
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT

# ccache's counters, read with the builder root's own ccache (the host's may be older).
stats() {
  local root
  root=$(ls -d "$cache"/builders/trixie-* 2>/dev/null | head -n1 || true)
  [ -n "$root" ] || { echo "0 0"; return; }
  mkdir -p "$root/mnt/ccache"
  unshare --mount sh -c "mount --bind '$cache/ccache' '$root/mnt/ccache' && CCACHE_DIR=/mnt/ccache chroot '$root' ccache --print-stats" |
    awk -F'\t' '$1=="direct_cache_hit"||$1=="preprocessed_cache_hit"{h+=$2} $1=="cache_miss"{m+=$2} END{print h+0, m+0}'
}

printf '%-14s %10s %10s %10s  %s\n' TAG COMPILE_S CC_HITS CC_MISSES "SLOWEST STEPS"
for tag in "${tags[@]}"; do
  rm -rf "work/builds/ollama-$tag"
  read -r h0 m0 < <(stats)
  "$BIN" --cache-dir "$cache" ci --tags "$tag" --include-rc --build ${jobs:+--jobs "$jobs"} \
    --state "$out/state.json" --out "$out" "${mirrors[@]}" --json > "$out/$tag.json" 2> "$out/$tag.log" ||
    { echo "$tag: ci failed (log: $out/$tag.log)" >&2; tail -20 "$out/$tag.log" >&2; exit 1; }
  read -r h1 m1 < <(stats)
  python3 - "$out/$tag.json" "$tag" $((h1 - h0)) $((m1 - m0)) <<'EOF'
import json, sys
report, tag, hits, misses = json.load(open(sys.argv[1])), sys.argv[2], sys.argv[3], sys.argv[4]
row = report["tags"][0]
m = json.load(open(row["dist"] + "/manifest.json"))
steps = sorted(m["steps"], key=lambda s: -s["seconds"])[:3]
slow = ", ".join(f'{s["name"]} {s["seconds"]:.0f} s' for s in steps)
print(f'{tag:<14} {m["timings"]["compile_s"]:>10.0f} {hits:>10} {misses:>10}  {slow}')
EOF
done
echo "caches: $cache"
