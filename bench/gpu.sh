#!/usr/bin/env bash
# GPU benchmark (issues 17 and 19): one dist, one 7 B llama Q4_0 model with random weights,
# on a machine with a GPU, in every way the dist can run it (bench/gpu/run.py):
#   ollama        Ollama on the host's Vulkan driver (e.g. the NVIDIA ICD)
#   llama-server  the dist's own llama-server run directly (era 5), the same driver
#   cpu           Ollama with the recipe's off switch (size_vram must be 0)
#   venus         Ollama on Mesa's Venus driver over virglrenderer's vtest server, whose
#                 render server runs on the host driver (the path krunkit's guests take)
# prompt and generation tokens/s over RUNS requests (median, min–max), time to first token
# warm, the first prompt after a load with an empty shader cache, after a restart with
# the cache the first start filled and after a restart with the driver's cache off, and the
# bandwidth fraction (weights read per token × tokens/s ÷ a device-to-device copy's rate).
#
# Two halves, because the GPU machine (the `run` tool's H200) has no Debian, no Mesa, no
# virglrenderer and no Vulkan loader, receives at most 64 MiB per call and has glibc 2.39:
#
#   bench/gpu.sh pack DIST OUTDIR [--venus] [--prefix DIR] [--root DIR] [--numpy]   (here)
#     Assembles OUTDIR (keep it under an ignored path, e.g. work/gpu, and carry it):
#       dist.tar.xz   the dist, xz-compressed
#       lib/          the Vulkan loader libvulkan.so.1 and glvnd (NVIDIA's ICD needs it),
#                     with --venus also Mesa's libvulkan_virtio.so, our
#                     libvirglrenderer.so.1 and the NEEDED closure of all that (no glibc)
#       venus/        (--venus) bin/virgl_test_server, libexec/virgl_render_server,
#                     icd/virtio_icd.json with a relative library_path
#       wheels/       gguf (pure Python; numpy too with --numpy, for a device without it)
#       MANIFEST      where each part came from
#     --prefix: the patched virglrenderer install (default: newest
#       <cache>/venus/virglrenderer-*, made by `ollama-vulkan smoke DIST --venus`);
#     --root: the trixie root the libraries come from (default: newest
#       <cache>/builders/trixie-* holding libvulkan.so.1, and with --venus
#       libvulkan_virtio.so); <cache> is ${OLLAMA_VULKAN_CACHE:-$HOME/.cache/ollama-vulkan}.
#     Fails if the bundle exceeds LIMIT_MIB (default 54: the call carries the repo too) or a
#     bundled ELF needs a glibc newer than MAX_GLIBC (default 2.39).
#
#   bench/gpu.sh run BUNDLE [--modes ollama,llama-server,cpu,venus] [--runs N] ...  (device)
#     python3 bench/gpu/run.py: writes the model (18 s), measures, prints the table and
#     leaves table.md, results.jsonl, run.log and the servers' logs in $OUT (or BUNDLE/out).
#
# On the device machine, with the bundle carried (docs/BENCHMARKS.md, "GPU"):
#   run(command="bash bench/gpu.sh run work/gpu", carry=["work/gpu"])
set -uo pipefail

die() { echo "gpu: $*" >&2; exit 1; }

# ---------------------------------------------------------------------------- pack
pack() {
  local dist=${1:?usage: gpu.sh pack DIST OUTDIR [--venus] [--prefix DIR] [--root DIR] [--numpy]}
  local out=${2:?usage: gpu.sh pack DIST OUTDIR}
  shift 2
  local cache=${OLLAMA_VULKAN_CACHE:-$HOME/.cache/ollama-vulkan}
  local prefix="" root="" numpy=0 venus=0
  while [ $# -gt 0 ]; do
    case $1 in
      --venus) venus=1; shift ;;
      --prefix) prefix=$2; shift 2 ;;
      --root) root=$2; shift 2 ;;
      --numpy) numpy=1; shift ;;
      *) die "unknown argument $1" ;;
    esac
  done
  [ -x "$dist/bin/ollama" ] || die "$dist/bin/ollama: not a dist"
  local libdir=usr/lib/x86_64-linux-gnu want=libvulkan.so.1
  [ $venus = 1 ] && want=libvulkan_virtio.so
  if [ $venus = 1 ]; then
    if [ -z "$prefix" ]; then
      prefix=$(ls -td "$cache"/venus/virglrenderer-*/ 2>/dev/null | head -1)
      prefix=${prefix%/}
    fi
    [ -x "$prefix/bin/virgl_test_server" ] && [ -x "$prefix/libexec/virgl_render_server" ] \
      || die "no patched virglrenderer under '${prefix:-$cache/venus/virglrenderer-*}' (run \`ollama-vulkan smoke DIST --venus\` once, or give --prefix)"
  fi
  if [ -z "$root" ]; then
    for r in $(ls -td "$cache"/builders/trixie-*/ 2>/dev/null); do
      [ -e "$r/$libdir/$want" ] && { root=${r%/}; break; }
    done
  fi
  [ -e "$root/$libdir/$want" ] || die "no root with $want under '${root:-$cache/builders/trixie-*}' (give --root)"

  rm -rf "$out"; mkdir -p "$out"/lib "$out/wheels"
  out=$(cd "$out" && pwd)
  # The loader, glvnd (NVIDIA's ICD is libGLX_nvidia: without glvnd the loader finds no
  # device), Mesa's Venus ICD with --venus; then the NEEDED closure of all of it.
  local seeds=(libvulkan.so.1 libEGL.so.1 libGL.so.1 libGLX.so.0 libGLdispatch.so.0 libOpenGL.so.0 libGLESv2.so.2)
  local s
  if [ $venus = 1 ]; then
    mkdir -p "$out"/venus/{bin,libexec,icd}
    cp -L "$prefix/bin/virgl_test_server" "$out/venus/bin/"
    cp -L "$prefix/libexec/virgl_render_server" "$out/venus/libexec/"
    cp -L "$prefix/lib/libvirglrenderer.so.1" "$out/lib/"
    seeds+=(libvulkan_virtio.so)
  fi
  for s in "${seeds[@]}"; do
    if [ -e "$root/$libdir/$s" ]; then cp -L "$root/$libdir/$s" "$out/lib/"
    else
      case $s in libOpenGL.so.0|libGLESv2.so.2) ;;  # other ICDs may want them; NVIDIA's does not
        *) die "$s is not in $root (the root needs libvulkan1 and glvnd: libglx0 libegl1 libgl1)" ;;
      esac
    fi
  done
  local changed=1 f n
  while [ $changed = 1 ]; do
    changed=0
    for f in "$out"/lib/* "$out"/venus/bin/* "$out"/venus/libexec/*; do
      [ -f "$f" ] || continue
      for n in $(objdump -p "$f" | awk '/NEEDED/ {print $2}'); do
        case $n in libc.so.6|libm.so.6|libpthread.so.0|libdl.so.2|librt.so.1|ld-linux-x86-64.so.2|libresolv.so.2) continue ;; esac
        [ -e "$out/lib/$n" ] && continue
        if [ -e "$root/$libdir/$n" ]; then cp -L "$root/$libdir/$n" "$out/lib/"; changed=1
        elif [ -e "$root/lib/x86_64-linux-gnu/$n" ]; then cp -L "$root/lib/x86_64-linux-gnu/$n" "$out/lib/"; changed=1
        else die "$n (needed by $f) is not in $root"; fi
      done
    done
  done
  if [ $venus = 1 ]; then
    printf '{\n    "ICD": {\n        "api_version": "%s",\n        "library_path": "../../lib/libvulkan_virtio.so"\n    },\n    "file_format_version": "1.0.0"\n}\n' \
      "$(sed -n 's/.*"api_version": *"\([^"]*\)".*/\1/p' "$root/usr/share/vulkan/icd.d/virtio_icd.json")" >"$out/venus/icd/virtio_icd.json"
  fi
  strip --strip-unneeded "$out"/lib/* "$out"/venus/bin/* "$out"/venus/libexec/* 2>/dev/null || true

  # glibc: the device has 2.39 (Ubuntu 24.04); trixie has 2.41.
  local max=${MAX_GLIBC:-2.39} worst
  worst=$(for f in "$out"/lib/* "$out"/venus/bin/* "$out"/venus/libexec/*; do objdump -T "$f" 2>/dev/null | grep -o 'GLIBC_[0-9.]*'; done | sed 's/GLIBC_//' | sort -uV | tail -1)
  [ "$(printf '%s\n%s\n' "$worst" "$max" | sort -V | tail -1)" = "$max" ] \
    || die "a bundled library needs glibc $worst > $max"
  local dworst
  dworst=$(find "$dist" -type f \( -name '*.so*' -o -perm -u+x \) -exec sh -c 'objdump -T "$1" 2>/dev/null' _ {} \; | grep -o 'GLIBC_[0-9.]*' | sed 's/GLIBC_//' | sort -uV | tail -1)
  [ "$(printf '%s\n%s\n' "$dworst" "$max" | sort -V | tail -1)" = "$max" ] \
    || die "the dist needs glibc $dworst > $max"

  # Python: gguf (pure Python) for the model; numpy only where the device lacks it.
  python3 -m pip download -q --no-deps --only-binary=:all: -d "$out/wheels" "gguf==${GGUF_VERSION:-0.17.1}" \
    || die "pip download gguf failed"
  if [ $numpy = 1 ]; then
    python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
      --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
      -d "$out/wheels" numpy || die "pip download numpy failed"
  fi

  echo "compressing the dist (xz) ..."
  tar -C "$dist" -cf - . | xz -T"${XZ_THREADS:-2}" -6 >"$out/dist.tar.xz" || die "tar/xz failed"

  {
    echo "dist: $dist ($(sed -n 's/.*"tag": *"\([^"]*\)".*/\1/p' "$dist/manifest.json" 2>/dev/null | head -1))"
    [ $venus = 1 ] && echo "virglrenderer prefix: $prefix ($(sed -n 's/^Version: //p' "$prefix"/lib/pkgconfig/virglrenderer.pc 2>/dev/null) + our series)"
    echo "root: $root (mesa-vulkan-drivers $(sed -n '/^Package: mesa-vulkan-drivers$/,/^$/s/^Version: //p' "$root/var/lib/dpkg/status"), libvulkan1 $(sed -n '/^Package: libvulkan1$/,/^$/s/^Version: //p' "$root/var/lib/dpkg/status"))"
    echo "glibc needed: bundle $worst, dist $dworst"
    (cd "$out" && find . -type f ! -name MANIFEST -printf '%s %p\n' | sort -k2)
  } >"$out/MANIFEST"
  local bytes lim=${LIMIT_MIB:-54}
  bytes=$(du -sb "$out" | cut -f1)
  cat "$out/MANIFEST" | sed -n 1,4p
  printf 'bundle: %s, %.1f MiB (limit %s MiB)\n' "$out" "$(echo "$bytes / 1048576" | bc -l)" "$lim"
  [ "$bytes" -lt $((lim * 1048576)) ] || die "bundle over $lim MiB"
}

case ${1:-} in
  pack) shift; pack "$@" ;;
  run) shift; exec python3 "$(dirname "$0")/gpu/run.py" "$@" ;;
  *) die "usage: gpu.sh pack DIST OUTDIR [--venus] [--prefix DIR] [--root DIR] [--numpy] | run BUNDLE [run.py's options]" ;;
esac
