#!/usr/bin/env bash
# Benchmark: `ollama-vulkan build` of one tag — cold (empty ccache/GOCACHE), no-op rebuild
# (unchanged inputs), and rebuild after a one-line change to a patch of the recipe's first
# series (re-pinned) — with the orchestrator's own share of each run, from the manifest.
# Runs in a temporary project copy and cache (the builder root is shared with the default
# cache so it is not remade). Usage:
#   bench/build.sh TAG [ollama-vulkan global args, e.g. --mirror ollama=… --builder host]
set -euo pipefail
tag=${1:?usage: bench/build.sh TAG [args...]}; shift
here=$(cd "$(dirname "$0")" && pwd); cd "$here/.."
cargo build --release --quiet
bin=$PWD/target/release/ollama-vulkan
tmp=$(mktemp -d /var/tmp/ov-bench.XXXXXX); trap 'rm -rf "$tmp"' EXIT
mkdir -p "$tmp/project" "$tmp/cache"
cp -r recipes patches "$tmp/project/"
default_cache=${XDG_CACHE_HOME:-$HOME/.cache}/ollama-vulkan
[ -d "$default_cache/builders" ] && ln -s "$default_cache/builders" "$tmp/cache/builders"
ov() { "$bin" --project "$tmp/project" --cache-dir "$tmp/cache" "$@"; }
recipe=$tmp/project/work/recipes/ollama-$tag.toml
ov recipe new --ollama "$tag" -q "$@" >/dev/null
now() { date +%s.%N; }
run() { # label, then args; prints a table row
  local label=$1; shift
  local s e; s=$(now)
  ov build "$recipe" --dest "$tmp/build" --json -q "$@" >"$tmp/out.json"
  e=$(now)
  python3 - "$label" "$(echo "$e - $s" | bc)" "$tmp/out.json" <<'PY'
import json, sys
label, wall, out = sys.argv[1], float(sys.argv[2]), json.load(open(sys.argv[3]))
m = json.load(open(out["manifest"]))
t = m["timings"]
steps = sum(s["seconds"] for s in m["steps"])
if out["cached"]:
    print(f"| {label} | {wall:.2f} | cached | – | – | – |")
else:
    own = wall - steps - t["fetch_and_prepare_s"]
    print(f"| {label} | {wall:.1f} | {steps:.1f} | {t['fetch_and_prepare_s']:.1f} | {t['checks_s']:.1f} | {own / wall * 100:.1f} % |")
PY
}
echo "| run | wall (s) | steps (s) | fetch+prepare (s) | checks (s) | orchestrator share |"
echo "|---|---|---|---|---|---|"
run cold "$@"
run "no-op (unchanged)" "$@"
# One line of the first series' first patch changes (a code line: `+void main()` gains a
# space, else a description line), and the recipe pins the new hash.
series=$(python3 -c "import json,subprocess,sys; r=json.loads(subprocess.check_output(['$bin','--project','$tmp/project','recipe','show','$recipe'])); s=r['series']; print(s[0]['name'] if s else '')")
if [ -n "$series" ]; then
  d=$tmp/project/patches/$series
  p=$d/$(grep -v '^#' "$d/series" | head -1)
  if grep -q '^+void main()$' "$p"; then
    sed -i '0,/^+void main()$/s//+void  main()/' "$p"
  else
    sed -i '0,/^Upstream-Status:/s//Benchmark: one changed line.\nUpstream-Status:/' "$p"
  fi
  (cd "$d" && sha256sum $(grep -v '^#' series) >SHA256SUMS)
  new=$(sha256sum "$d/SHA256SUMS" | cut -d' ' -f1)
  printf '\n[[series]]\nname = "%s"\nrepo = "ollama"\nsha256 = "%s"\n' "$series" "$new" >>"$recipe"
  run "one patch line changed" "$@"
fi
