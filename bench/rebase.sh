#!/usr/bin/env bash
# Benchmark: `ollama-vulkan rebase-patches` carrying one series across 20 consecutive
# release tags of a real ollama mirror, one rebase per tag (BASE → T1 → T2 … → T20), as a
# maintainer following upstream would. The series (5 patches, one per file, made with
# `git format-patch` from BASE's own files) is built here, so the script needs only the
# mirror. A conflict is skipped (--skip) and counted, so the chain always finishes.
# Prints one row per step (seconds, statuses) and the total. With REBASE_LLAMA=0 the
# rebases get no llama.cpp mirror (the recipe's [llamacpp] pins then stay, with a note):
# that isolates the rebase from resolving each tag's llama.cpp bNNNN to a commit.
# Usage: bench/rebase.sh OLLAMA_MIRROR LLAMA_MIRROR [BASE] [STEPS]   (defaults v0.30.0, 20)
# (LLAMA_MIRROR: era 5 recipes pin llama.cpp by release tag; any mirror holding them.)
set -euo pipefail
mirror=${1:?usage: bench/rebase.sh OLLAMA_MIRROR LLAMA_MIRROR [BASE] [STEPS]}
llama=${2:?usage: bench/rebase.sh OLLAMA_MIRROR LLAMA_MIRROR [BASE] [STEPS]}
base=${3:-v0.30.0}; steps=${4:-20}
here=$(cd "$(dirname "$0")" && pwd); cd "$here/.."
cargo build --release --quiet
bin=$PWD/target/release/ollama-vulkan
tmp=${KEEP:-$(mktemp -d)}; [ -n "${KEEP:-}" ] || trap 'rm -rf "$tmp"' EXIT
proj=$tmp/project; mkdir -p "$proj/recipes" "$proj/patches/bench"
cp recipes/*.toml "$proj/recipes/"
cp -r patches/*/ "$proj/patches/"
g() { git --git-dir="$mirror" "$@"; }
export GIT_AUTHOR_NAME=Bench GIT_AUTHOR_EMAIL=bench@example.invalid GIT_COMMITTER_NAME=Bench \
  GIT_COMMITTER_EMAIL=bench@example.invalid GIT_AUTHOR_DATE=2024-01-01T00:00:00Z \
  GIT_COMMITTER_DATE=2024-01-01T00:00:00Z

# The series: BASE's versions of a few files in a small repository, one commit per edit.
files=(discover/vulkan.go discover/llama_server.go main.go README.md Dockerfile)
progs=(
  '/^func parseVulkanUMA/{print "// venusSeen is set when discovery found a Venus device.\nvar venusSeen bool\n"} {print}'
  '/return library == "Metal"/{print "\tif library == \"Vulkan\" \\&\\& venusSeen {\n\t\treturn true\n\t}"} {print}'
  'NR==1{print; print "// ollama-vulkan"; next} {print}'
  'NR==2{print "Built with Vulkan."} {print}'
  'NR==1{print; print "ARG OLLAMA_VULKAN=1"; next} {print}'
)
w=$tmp/series; mkdir -p "$w"; git -C "$w" init -q
for f in "${files[@]}"; do mkdir -p "$w/$(dirname "$f")"; g show "$base:$f" >"$w/$f"; done
git -C "$w" add -A; git -C "$w" commit -qm base; git -C "$w" tag base
for i in "${!files[@]}"; do
  f=${files[$i]}
  awk "${progs[$i]}" "$w/$f" >"$tmp/x"; mv "$tmp/x" "$w/$f"
  git -C "$w" commit -qam "Edit $f" -m "Upstream-Status: Inappropriate [benchmark]"
done
git -C "$w" format-patch -q --zero-commit --no-signature --no-numbered -o "$proj/patches/bench" base
(cd "$proj/patches/bench" && ls ./*.patch | sed 's|^\./||' >series && sha256sum $(cat series) >SHA256SUMS)
pin=$(sha256sum "$proj/patches/bench/SHA256SUMS" | cut -c1-64)
recipe=$proj/work/recipes/bench.toml
"$bin" --project "$proj" --mirror "ollama=$mirror" --mirror "llama.cpp=$llama" recipe new --ollama "$base" -o "$recipe" >/dev/null
printf '\n[[series]]\nname = "bench"\nrepo = "ollama"\nsha256 = "%s"\n' "$pin" >>"$recipe"

tags=$(g tag --sort=v:refname | grep -v -- -rc | awk -v b="$base" '$0==b{f=1;next} f' | head -n "$steps")
rl=(--mirror "llama.cpp=$llama"); [ "${REBASE_LLAMA:-1}" = 0 ] && rl=()
now() { date +%s.%N; }
echo "| step | onto | seconds | statuses |"
echo "|---|---|---|---|"
total=0; i=0; conflicts=0
for t in $tags; do
  i=$((i + 1))
  s=$(now)
  rc=0; "$bin" --project "$proj" --mirror "ollama=$mirror" "${rl[@]}" rebase-patches "$recipe" --onto "$t" --json >"$tmp/out.json" || rc=$?
  while [ "$rc" = 1 ]; do
    conflicts=$((conflicts + 1))
    rc=0; "$bin" --project "$proj" --mirror "ollama=$mirror" "${rl[@]}" rebase-patches "$recipe" --skip --json >"$tmp/out.json" || rc=$?
  done
  e=$(now); d=$(echo "$e - $s" | bc); total=$(echo "$total + $d" | bc)
  [ "$rc" = 0 ] || { echo "step $i onto $t failed (exit $rc)"; cat "$tmp/out.json"; exit 1; }
  st=$(python3 -c 'import json,sys; j=json.load(open(sys.argv[1])); print(" ".join(p["status"] for p in j["series"][0]["patches"]))' "$tmp/out.json")
  printf '| %d | %s | %.3f | %s |\n' "$i" "$t" "$d" "$st"
done
echo
printf 'total %.3f s for %d rebases (%.3f s each on average); conflicts skipped: %d; patches left: %d\n' \
  "$total" "$i" "$(echo "$total / $i" | bc -l)" "$conflicts" "$(grep -c . "$proj/patches/bench/series")"
