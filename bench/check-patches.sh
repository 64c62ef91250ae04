#!/usr/bin/env bash
# Benchmark: `ollama-vulkan check-patches` of a 5-patch series over every tag of an
# ollama mirror, side by side with a plain shell loop doing the same with git
# (`git read-tree TAG` into a temporary index, then `git apply --cached` per patch).
# The series is made here from BASE's files (main.go, LICENSE, .gitignore, README.md,
# Dockerfile), so it applies cleanly at BASE and drifts elsewhere. Prints a table and
# whether both agree on every (tag, patch) cell.
# Usage: bench/check-patches.sh OLLAMA_MIRROR [BASE]   (RUNS=3 by default)
set -euo pipefail
mirror=${1:?usage: bench/check-patches.sh OLLAMA_MIRROR [BASE]}; base=${2:-v0.24.0}
runs=${RUNS:-3}
here=$(cd "$(dirname "$0")" && pwd); cd "$here/.."
cargo build --release --quiet
bin=$PWD/target/release/ollama-vulkan
tmp=${KEEP:-$(mktemp -d)}; [ -n "${KEEP:-}" ] || trap 'rm -rf "$tmp"' EXIT
proj=$tmp/project; mkdir -p "$proj/recipes" "$proj/patches/bench"
cp recipes/*.toml "$proj/recipes/"
g() { git --git-dir="$mirror" "$@"; }

# One patch per file: $1 file, $2 awk program that edits it.
n=0
mkpatch() {
  local f=$1 prog=$2; n=$((n + 1))
  local name; name=$(printf '%04d-%s.patch' "$n" "$(echo "$f" | tr -c 'a-zA-Z0-9\n' '-')")
  g show "$base:$f" >"$tmp/a"
  awk "$prog" "$tmp/a" >"$tmp/b"
  {
    printf 'From 0000000000000000000000000000000000000000 Mon Sep 17 00:00:00 2001\n'
    printf 'From: Bench <bench@example.invalid>\nSubject: [PATCH] Edit %s\n\nUpstream-Status: Inappropriate [benchmark]\n---\n' "$f"
    printf 'diff --git a/%s b/%s\n' "$f" "$f"
    diff -u --label "a/$f" --label "b/$f" "$tmp/a" "$tmp/b" || true
  } >"$proj/patches/bench/$name"
  echo "$name" >>"$proj/patches/bench/series"
}
: >"$proj/patches/bench/series"
mkpatch main.go 'NR==1{print; print "// ollama-vulkan"; next} {print}'
mkpatch LICENSE '{print} END{print "Vulkan build by ollama-vulkan."}'
mkpatch .gitignore '{print} END{print "/work/"}'
mkpatch README.md 'NR==2{print "Built with Vulkan."} {print}'
mkpatch Dockerfile 'NR==1{print; print "ARG OLLAMA_VULKAN=1"; next} {print}'
(cd "$proj/patches/bench" && sha256sum $(cat series) >SHA256SUMS)

tags=$(g tag | wc -l)
now() { date +%s.%N; }
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

tool=$(for _ in $(seq "$runs"); do
  s=$(now)
  "$bin" --project "$proj" --mirror "ollama=$mirror" check-patches bench --all-tags --json >"$tmp/tool.json" || true
  e=$(now); echo "$e - $s" | bc
done | median)

loop() {
  export GIT_INDEX_FILE=$tmp/index
  : >"$tmp/loop.txt"
  for tag in $(g tag); do
    g read-tree "$tag" 2>/dev/null || continue
    row=$tag
    for p in $(cat "$proj/patches/bench/series"); do
      if g apply --cached "$proj/patches/bench/$p" 2>/dev/null; then row="$row 1"; else row="$row 0"; fi
    done
    echo "$row" >>"$tmp/loop.txt"
  done
  unset GIT_INDEX_FILE
}
shell=$(for _ in $(seq "$runs"); do s=$(now); loop; e=$(now); echo "$e - $s" | bc; done | median)

agree=$(python3 - "$tmp/tool.json" "$tmp/loop.txt" <<'PY'
import json, sys
m = json.load(open(sys.argv[1]))[0]
tool = {r["tag"]: [1 if c["status"] in ("clean", "offset") else 0 for c in r["cells"]] for r in m["rows"]}
loop = {l.split()[0]: [int(x) for x in l.split()[1:]] for l in open(sys.argv[2])}
same = sum(tool[t] == loop.get(t) for t in tool)
print(f"{same}/{len(tool)} tags identical; memo: {m['applied']} applied, {m['memo_hits']} hits")
PY
)
echo "| what | tags × patches | median of $runs (s) |"
echo "|---|---|---|"
printf '| ollama-vulkan check-patches | %s × 5 | %.3f |\n' "$tags" "$tool"
printf '| shell loop (read-tree + apply --cached) | %s × 5 | %.3f |\n' "$tags" "$shell"
echo
echo "speed-up: $(echo "scale=1; $shell / $tool" | bc)×; agreement: $agree"
