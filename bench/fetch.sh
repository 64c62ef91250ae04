#!/usr/bin/env bash
# Benchmark: `ollama-vulkan fetch` of pinned revisions from local mirrors, printed as a
# table. cold = no build directory and the kernel's page cache dropped (as root; the
# mirror is read from disk, as on a fresh CI machine); first = no build directory, page
# cache warm; again = the trees exist and are replaced by fresh ones (the warm path of a
# CI re-run). Median of RUNS for "again".
# Usage: bench/fetch.sh OLLAMA_MIRROR LLAMACPP_MIRROR TAG...
set -euo pipefail
ollama=${1:?usage}; llama=${2:?usage}; shift 2
runs=${RUNS:-3}
here=$(cd "$(dirname "$0")" && pwd); cd "$here/.."
cargo build --release --quiet
bin=$PWD/target/release/ollama-vulkan
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
now() { date +%s.%N; }
m=(--mirror "ollama=$ollama" --mirror "llama.cpp=$llama")
echo "| tag | cold (s) | first (s) | again, median of $runs (s) | files | MB | regenerated |"
echo "|---|---|---|---|---|---|---|"
for tag in "$@"; do
  "$bin" recipe new --ollama "$tag" "${m[@]}" -o "$tmp/r.toml" >/dev/null 2>&1
  rm -rf "$tmp/b"
  cold=nan
  if [ "$(id -u)" = 0 ] && sync && echo 3 2>/dev/null >/proc/sys/vm/drop_caches; then
    s=$(now); "$bin" fetch "$tmp/r.toml" --dest "$tmp/b" "${m[@]}" >/dev/null 2>&1; e=$(now)
    cold=$(echo "$e - $s" | bc); rm -rf "$tmp/b"
  fi
  s=$(now); "$bin" fetch "$tmp/r.toml" --dest "$tmp/b" "${m[@]}" --json >"$tmp/f.json" 2>/dev/null; e=$(now)
  first=$(echo "$e - $s" | bc)
  again=$(for _ in $(seq "$runs"); do s=$(now); "$bin" fetch "$tmp/r.toml" --dest "$tmp/b" "${m[@]}" >/dev/null 2>&1; e=$(now); echo "$e - $s" | bc; done | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}')
  read -r files mb regen < <(python3 -c "import json;j=json.load(open('$tmp/f.json'));l=j['llamacpp'] or {};print(j['ollama']['files']+l.get('files',0), round((j['ollama']['bytes']+l.get('bytes',0))/1e6,1), ','.join(r['path'] for r in j['regenerated']) or '-')")
  printf '| %s | %.2f | %.2f | %.2f | %s | %s | %s |\n' "$tag" "$cold" "$first" "$again" "$files" "$mb" "$regen"
done
