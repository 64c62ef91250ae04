#!/usr/bin/env bash
# Benchmark: era classification of every tag of an Ollama mirror, `ollama-vulkan era
# --all-tags` side by side with the plain shell loop (bench/era-shell-loop.sh), in one run.
# Prints a Markdown table (median of RUNS runs each) and checks both agree on every tag.
# Usage: bench/era.sh OLLAMA_MIRROR [RUNS]
set -euo pipefail
mirror=${1:?usage: bench/era.sh OLLAMA_MIRROR [RUNS]}
runs=${2:-5}
here=$(cd "$(dirname "$0")" && pwd)
cd "$here/.."
cargo build --release --quiet
bin=target/release/ollama-vulkan
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT

median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
time_it() { # name, command...
  local name=$1; shift
  for _ in $(seq "$runs"); do
    local s e; s=$(date +%s.%N); "$@" >"$tmp/$name.out" 2>/dev/null || true; e=$(date +%s.%N)
    echo "$e - $s" | bc
  done | median
}
t_tool=$(time_it tool "$bin" era --all-tags --mirror "ollama=$mirror")
t_loop=$(time_it loop sh "$here/era-shell-loop.sh" "$mirror")
tags=$(git -C "$mirror" tag | wc -l)
# Agreement: same era for every tag (the loop prints "?" where it knows no rule).
awk '{print $1, $2}' "$tmp/tool.out" | sort >"$tmp/a"; sort "$tmp/loop.out" >"$tmp/b"
differ=$(comm -3 "$tmp/a" "$tmp/b" | wc -l)
echo "| what | tags | median of $runs (s) | tags/s |"
echo "|---|---|---|---|"
printf '| ollama-vulkan era --all-tags | %d | %.3f | %.0f |\n' "$tags" "$t_tool" "$(echo "$tags / $t_tool" | bc -l)"
printf '| shell loop (git ls-tree + git show) | %d | %.3f | %.0f |\n' "$tags" "$t_loop" "$(echo "$tags / $t_loop" | bc -l)"
printf '\nspeed-up: %.1fx; tags classified differently: %d\n' "$(echo "$t_loop / $t_tool" | bc -l)" "$differ"
