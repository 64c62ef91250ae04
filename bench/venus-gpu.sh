#!/usr/bin/env bash
# Benchmark (issue 17 item 6): one dist, one 7 B llama Q4_0 model, on a GPU machine, as
#   native  - Ollama on the host's Vulkan driver directly (e.g. the NVIDIA ICD), and
#   venus   - Ollama as a Mesa Venus guest over virglrenderer's vtest server (our patched
#             build: VKR_DEBUG=hostptr, --multi-clients) running on that same driver,
# prompt and generation tokens/s of each and the venus/native ratio (docs/BENCHMARKS.md).
#
# Two halves, because the GPU machine (the `run` tool's H200) has no Debian, no Mesa, no
# virglrenderer and no Vulkan loader, receives at most 64 MiB per call and has glibc 2.39:
#
#   bench/venus-gpu.sh pack DIST OUTDIR [--prefix DIR] [--root DIR] [--numpy]   (here)
#     Assembles OUTDIR (keep it under an ignored path, e.g. work/venus-gpu, and carry it):
#       dist.tar.xz   the dist, xz-compressed
#       venus/        bin/virgl_test_server, libexec/virgl_render_server, lib/ (our
#                     libvirglrenderer.so.1, Mesa's libvulkan_virtio.so, the Vulkan loader
#                     libvulkan.so.1, glvnd and the NEEDED closure of all that, glibc
#                     excluded), icd/virtio_icd.json with a relative library_path
#       wheels/       gguf (pure Python; numpy too with --numpy, for a device without it)
#       MANIFEST      where each part came from
#     --prefix: the patched virglrenderer install (default: newest
#       <cache>/venus/virglrenderer-*, made by `ollama-vulkan smoke DIST --venus`);
#     --root: the trixie root with mesa-vulkan-drivers (default: newest
#       <cache>/builders/trixie-* holding libvulkan_virtio.so); <cache> is
#       ${OLLAMA_VULKAN_CACHE:-$HOME/.cache/ollama-vulkan}.
#     Fails if the bundle exceeds LIMIT_MIB (default 54: the call carries the repo too) or a
#     bundled ELF needs a glibc newer than MAX_GLIBC (default 2.39).
#     The Vulkan loader is the root's libvulkan1 (the render server needs it anyway), so
#     both modes use the same loader; no separate loader .deb is needed.
#
#   bench/venus-gpu.sh run BUNDLE                                              (device)
#     Writes a 7 B llama Q4_0 GGUF with random weights (32 layers, n_embd 4096, FFN 11008,
#     vocab 32000, 3.8 GB; the output rows of the control and byte tokens are zero, so
#     greedy decoding never picks EOS), then per mode: `ollama serve`, `ollama create`,
#     one warm-up request (model load, pipeline compiles), RUNS measured requests (a
#     different random ~400-token prompt each, so no prompt cache hit; num_predict 128,
#     temperature 0 with frequency/presence penalties so that the random model never
#     repeats one token 30 times, which makes Ollama abort; num_ctx 2048, raw), /api/ps;
#     stops every process it started.
#     Results in $OUT (default BUNDLE/out): table.md, results.jsonl, run.log, the serve
#     logs and the vtest log. Env: RUNS (5), NVIDIA_ICD / HOST_ICD (the host ICD json;
#     default the NVIDIA one at /usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json),
#     MODES ("native venus"), DEADLINE_S (440: requests are cut to end by then).
#
# On the device machine, with the bundle carried (see docs/BENCHMARKS.md):
#   run(command="bash bench/venus-gpu.sh run work/venus-gpu", carry=["work/venus-gpu"])
set -uo pipefail

die() { echo "venus-gpu: $*" >&2; exit 1; }

# ---------------------------------------------------------------------------- pack
pack() {
  local dist=${1:?usage: venus-gpu.sh pack DIST OUTDIR [--prefix DIR] [--root DIR] [--numpy]}
  local out=${2:?usage: venus-gpu.sh pack DIST OUTDIR}
  shift 2
  local cache=${OLLAMA_VULKAN_CACHE:-$HOME/.cache/ollama-vulkan}
  local prefix="" root="" numpy=0
  while [ $# -gt 0 ]; do
    case $1 in
      --prefix) prefix=$2; shift 2 ;;
      --root) root=$2; shift 2 ;;
      --numpy) numpy=1; shift ;;
      *) die "unknown argument $1" ;;
    esac
  done
  [ -x "$dist/bin/ollama" ] || die "$dist/bin/ollama: not a dist"
  if [ -z "$prefix" ]; then
    prefix=$(ls -td "$cache"/venus/virglrenderer-*/ 2>/dev/null | head -1)
    prefix=${prefix%/}
  fi
  [ -x "$prefix/bin/virgl_test_server" ] && [ -x "$prefix/libexec/virgl_render_server" ] \
    || die "no patched virglrenderer under '${prefix:-$cache/venus/virglrenderer-*}' (run \`ollama-vulkan smoke DIST --venus\` once, or give --prefix)"
  local libdir=usr/lib/x86_64-linux-gnu
  if [ -z "$root" ]; then
    for r in $(ls -td "$cache"/builders/trixie-*/ 2>/dev/null); do
      [ -e "$r/$libdir/libvulkan_virtio.so" ] && { root=${r%/}; break; }
    done
  fi
  [ -e "$root/$libdir/libvulkan_virtio.so" ] || die "no root with Mesa's Venus ICD under '${root:-$cache/builders/trixie-*}' (give --root)"

  rm -rf "$out"; mkdir -p "$out"/venus/{bin,libexec,lib,icd} "$out/wheels"
  out=$(cd "$out" && pwd)
  cp -L "$prefix/bin/virgl_test_server" "$out/venus/bin/"
  cp -L "$prefix/libexec/virgl_render_server" "$out/venus/libexec/"
  cp -L "$prefix/lib/libvirglrenderer.so.1" "$out/venus/lib/"
  # Mesa's Venus ICD, the loader, glvnd (libepoxy dlopens it) and their NEEDED closure.
  local seeds=(libvulkan_virtio.so libvulkan.so.1 libEGL.so.1 libGL.so.1 libGLX.so.0 libGLdispatch.so.0 libOpenGL.so.0 libGLESv2.so.2)
  local s
  for s in "${seeds[@]}"; do
    [ -e "$root/$libdir/$s" ] && cp -L "$root/$libdir/$s" "$out/venus/lib/"
  done
  local changed=1 f n
  while [ $changed = 1 ]; do
    changed=0
    for f in "$out"/venus/bin/* "$out"/venus/libexec/* "$out"/venus/lib/*; do
      for n in $(objdump -p "$f" | awk '/NEEDED/ {print $2}'); do
        case $n in libc.so.6|libm.so.6|libpthread.so.0|libdl.so.2|librt.so.1|ld-linux-x86-64.so.2|libresolv.so.2) continue ;; esac
        [ -e "$out/venus/lib/$n" ] && continue
        if [ -e "$root/$libdir/$n" ]; then cp -L "$root/$libdir/$n" "$out/venus/lib/"; changed=1
        elif [ -e "$root/lib/x86_64-linux-gnu/$n" ]; then cp -L "$root/lib/x86_64-linux-gnu/$n" "$out/venus/lib/"; changed=1
        else die "$n (needed by $f) is not in $root"; fi
      done
    done
  done
  printf '{\n    "ICD": {\n        "api_version": "%s",\n        "library_path": "../lib/libvulkan_virtio.so"\n    },\n    "file_format_version": "1.0.0"\n}\n' \
    "$(sed -n 's/.*"api_version": *"\([^"]*\)".*/\1/p' "$root/usr/share/vulkan/icd.d/virtio_icd.json")" >"$out/venus/icd/virtio_icd.json"
  strip --strip-unneeded "$out"/venus/lib/* "$out"/venus/bin/* "$out"/venus/libexec/* 2>/dev/null || true

  # glibc: the device has 2.39 (Ubuntu 24.04); trixie has 2.41.
  local max=${MAX_GLIBC:-2.39} worst
  worst=$(for f in "$out"/venus/*/*; do objdump -T "$f" 2>/dev/null | grep -o 'GLIBC_[0-9.]*'; done | sed 's/GLIBC_//' | sort -uV | tail -1)
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
    echo "virglrenderer prefix: $prefix ($(sed -n 's/^Version: //p' "$prefix"/lib/pkgconfig/virglrenderer.pc 2>/dev/null) + our series)"
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

# ---------------------------------------------------------------------------- run
stop_group() { # pid of a setsid'd leader: SIGTERM its group, then SIGKILL
  local pid=$1
  [ -n "$pid" ] || return 0
  kill -TERM -- "-$pid" 2>/dev/null
  for _ in 1 2 3 4 5 6 7 8 9 10; do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
  kill -KILL -- "-$pid" 2>/dev/null
  wait "$pid" 2>/dev/null
  return 0
}

run() {
  local b=${1:?usage: venus-gpu.sh run BUNDLE}
  b=$(cd "$b" && pwd) || die "no bundle $1"
  OUT=${OUT:-$b/out}; mkdir -p "$OUT"
  local w=${VENUS_GPU_WORK:-/tmp/venus-gpu}
  local icd=${HOST_ICD:-${NVIDIA_ICD:-/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json}}
  local t_start; t_start=$(date +%s)
  export DEADLINE=$((t_start + ${DEADLINE_S:-440}))
  rm -rf "$w"; mkdir -p "$w"/{dist,home,models,site,cache}
  local rl=$OUT/run.log
  log() { echo "[$(date +%T) +$(( $(date +%s) - t_start ))s] $*" | tee -a "$rl"; }
  PIDS=()
  trap 'for p in "${PIDS[@]}"; do stop_group "$p"; done' EXIT

  log "machine: $(uname -m), $(. /etc/os-release 2>/dev/null; echo "$PRETTY_NAME"), $(ldd --version 2>&1 | head -1)"
  log "gpu: $(nvidia-smi --query-gpu=name,driver_version,memory.total,memory.used --format=csv,noheader 2>&1 | head -2)"
  log "python: $(python3 -c 'import sys, numpy; print(sys.version.split()[0], "numpy", numpy.__version__)' 2>&1)"
  log "host ICD: $icd: $(tr -d ' \n' <"$icd" 2>&1 | cut -c1-200)"
  log "system Vulkan loader: $(ldconfig -p | grep -c 'libvulkan.so') entries"
  log "bundle: $(head -4 "$b/MANIFEST" | tr '\n' ';')"
  chmod +x "$b"/venus/bin/* "$b"/venus/libexec/* 2>/dev/null

  tar -xJf "$b/dist.tar.xz" -C "$w/dist" || die "unpacking the dist failed"
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target "$w/site" "$b"/wheels/*.whl \
    || die "pip install of the wheels failed"
  log "dist unpacked, wheels installed"

  # --- the model: 7 B llama, Q4_0 blocks of random nibbles with fp16 scale 0.004
  PYTHONPATH=$w/site python3 - "$w/bench7b.gguf" <<'PY' 2>&1 | tee -a "$rl" || die "model failed"
import sys, numpy as np, gguf
out = sys.argv[1]
rng = np.random.default_rng(17)
n_embd, n_ff, n_layer, n_head, n_vocab, ctx = 4096, 11008, 32, 32, 32000, 4096
words = [f"\u2581w{i:05d}" for i in range(n_vocab - 259)]
tokens = ["<unk>", "<s>", "</s>"] + [f"<0x{b:02X}>" for b in range(256)] + words
types = [2, 3, 3] + [6] * 256 + [1] * len(words)
scores = [0.0] * 259 + [-float(i) for i in range(len(words))]
w = gguf.GGUFWriter(out, "llama")
w.add_name("ollama-vulkan-bench-7b-random")
w.add_context_length(ctx); w.add_embedding_length(n_embd); w.add_block_count(n_layer)
w.add_feed_forward_length(n_ff); w.add_head_count(n_head); w.add_head_count_kv(n_head)
w.add_rope_dimension_count(n_embd // n_head); w.add_layer_norm_rms_eps(1e-5)
w.add_file_type(gguf.LlamaFileType.MOSTLY_Q4_0)
w.add_tokenizer_model("llama"); w.add_token_list(tokens); w.add_token_scores(scores)
w.add_token_types(types); w.add_bos_token_id(1); w.add_eos_token_id(2); w.add_unk_token_id(0)
w.add_add_bos_token(True); w.add_add_eos_token(False)
# Q4_0 dequantises to d * (q - 8), q uniform in 0..15: mean -0.5 d. With one sign of d every
# matrix would have a common mode that makes greedy decoding repeat one token (and Ollama
# aborts a generation after 30 repeats); a random sign per block makes the mean zero.
scales = np.frombuffer(np.array([0.004, -0.004], dtype=np.float16).tobytes(), dtype=np.uint8).reshape(2, 2)
Q4 = gguf.GGMLQuantizationType.Q4_0
def q4(rows, cols, zero_rows=0):
    blk = np.frombuffer(bytearray(rng.bytes(rows * cols // 32 * 18)), dtype=np.uint8).reshape(rows, cols // 32, 18)
    blk[:, :, 0:2] = scales[blk[:, :, 2] & 1]   # fp16 +-0.004, sign from a random bit
    blk[:zero_rows] = 0                         # scale 0: the row is all zeros
    return blk.reshape(rows, cols // 32 * 18)
ones = np.ones(n_embd, dtype=np.float32)
w.add_tensor("token_embd.weight", q4(n_vocab, n_embd), raw_dtype=Q4)
for i in range(n_layer):
    p = f"blk.{i}."
    w.add_tensor(p + "attn_norm.weight", ones)
    for t in ("attn_q", "attn_k", "attn_v", "attn_output"):
        w.add_tensor(p + t + ".weight", q4(n_embd, n_embd), raw_dtype=Q4)
    w.add_tensor(p + "ffn_norm.weight", ones)
    w.add_tensor(p + "ffn_gate.weight", q4(n_ff, n_embd), raw_dtype=Q4)
    w.add_tensor(p + "ffn_up.weight", q4(n_ff, n_embd), raw_dtype=Q4)
    w.add_tensor(p + "ffn_down.weight", q4(n_embd, n_ff), raw_dtype=Q4)
w.add_tensor("output_norm.weight", ones)
# EOS, control and byte tokens: zero output rows (logit 0; some word's logit beats it).
w.add_tensor("output.weight", q4(n_vocab, n_embd, zero_rows=259), raw_dtype=Q4)
w.write_header_to_file(); w.write_kv_data_to_file(); w.write_tensors_to_file(); w.close()
import os
print(f"model: {out}, {os.path.getsize(out) / 1e9:.2f} GB, llama {n_layer}x{n_embd}, ffn {n_ff}, vocab {n_vocab}, Q4_0")
PY
  [ -s "$w/bench7b.gguf" ] || die "no model written"
  printf 'FROM %s\n' "$w/bench7b.gguf" >"$w/Modelfile"
  log "model written"

  local lib=$b/venus/lib port=11600 mode vt="" srv
  export RESULTS=$OUT/results.jsonl
  : >"$RESULTS"
  for mode in ${MODES:-native venus}; do
    port=$((port + 1))
    local host=127.0.0.1:$port
    local genv=(OLLAMA_HOST=$host OLLAMA_MODELS=$w/models HOME=$w/home OLLAMA_VULKAN=1
      OLLAMA_NUM_PARALLEL=1 OLLAMA_CONTEXT_LENGTH=2048 OLLAMA_LOAD_TIMEOUT=5m OLLAMA_KEEP_ALIVE=10m
      LD_LIBRARY_PATH=$lib)
    vt=""
    case $mode in
      native) genv+=(VK_DRIVER_FILES=$icd) ;;
      venus)
        rm -f "$w/venus.sock"
        env VK_DRIVER_FILES="$icd" LD_LIBRARY_PATH="$lib" RENDER_SERVER_EXEC_PATH="$b/venus/libexec/virgl_render_server" \
          VKR_DEBUG=hostptr MESA_SHADER_CACHE_DIR="$w/cache" \
          setsid "$b/venus/bin/virgl_test_server" --venus --no-virgl --multi-clients --socket-path "$w/venus.sock" \
          >"$OUT/vtest.log" 2>&1 </dev/null &
        vt=$!; PIDS+=("$vt")
        for _ in $(seq 50); do [ -S "$w/venus.sock" ] && break; sleep 0.2; done
        [ -S "$w/venus.sock" ] || { log "venus: vtest server did not start"; tail -20 "$OUT/vtest.log" | tee -a "$rl"; continue; }
        log "venus: vtest server $vt on $w/venus.sock"
        genv+=(VN_DEBUG=vtest VTEST_SOCKET_NAME=$w/venus.sock VK_DRIVER_FILES=$b/venus/icd/virtio_icd.json) ;;
      *) die "unknown mode $mode" ;;
    esac
    env "${genv[@]}" setsid "$w/dist/bin/ollama" serve >"$OUT/$mode-serve.log" 2>&1 </dev/null &
    srv=$!; PIDS+=("$srv")
    for _ in $(seq 150); do curl -sf "http://$host/api/version" >/dev/null && break; sleep 0.2; done
    log "$mode: ollama serve $srv up: $(curl -s "http://$host/api/version")"
    if ! env "${genv[@]}" "$w/dist/bin/ollama" show bench7b >/dev/null 2>&1; then
      env "${genv[@]}" "$w/dist/bin/ollama" create bench7b -f "$w/Modelfile" >"$w/create-$mode.log" 2>&1 \
        || { log "$mode: create failed"; tail -5 "$w/create-$mode.log" | tee -a "$rl"; }
      log "$mode: created bench7b"
    fi
    MODE=$mode HOST=$host RUNS=${RUNS:-5} python3 - <<'PY' 2>&1 | tee -a "$rl"
import json, os, random, string, time, urllib.request
mode, host, runs, dl = os.environ["MODE"], os.environ["HOST"], int(os.environ["RUNS"]), int(os.environ["DEADLINE"])
def call(path, body=None, timeout=60):
    t = max(5, min(timeout, dl - time.time() - 10))
    req = urllib.request.Request(f"http://{host}{path}", data=json.dumps(body).encode() if body else None,
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=t) as r:
        return json.load(r)
def prompt(i):  # ~400 byte-fallback tokens; different from the first character on: no cache hit
    r = random.Random(1000 + i)
    return "".join(r.choice("abcdefghijklmnopqrstuv") for _ in range(398))
# Greedy decoding on random weights still loops; Ollama aborts a generation after 30 repeats
# of one token. The penalties (CPU-side sampling, the same in both modes) break the loops.
opts = {"temperature": 0, "seed": 42, "num_predict": 128, "num_ctx": 2048,
        "frequency_penalty": 1.0, "presence_penalty": 0.5, "repeat_last_n": 64}
rows = []
for i in range(runs + 1):
    kind = "warmup" if i == 0 else "run"
    t0 = time.time()
    try:
        g = call("/api/generate", {"model": "bench7b", "prompt": prompt(i), "raw": True, "stream": False,
                                   "options": opts}, timeout=300 if i == 0 else 120)
    except Exception as e:
        print(f"{mode} {kind} {i}: error {e!r} after {time.time() - t0:.1f}s"); break
    wall = time.time() - t0
    pc, pd, ec, ed = (g.get(k, 0) for k in ("prompt_eval_count", "prompt_eval_duration", "eval_count", "eval_duration"))
    row = {"mode": mode, "kind": kind, "i": i, "wall_s": round(wall, 3), "load_s": round(g.get("load_duration", 0) / 1e9, 3),
           "prompt_eval_count": pc, "prompt_eval_duration": pd, "eval_count": ec, "eval_duration": ed,
           "prompt_tps": pc / pd * 1e9 if pd else None, "gen_tps": ec / ed * 1e9 if ed else None,
           "done_reason": g.get("done_reason"), "error": g.get("error")}
    if not ec: row["keys"] = sorted(g)  # e.g. an aborted generation carries no counters
    print(json.dumps(row))
    rows.append(row)
    if g.get("error"): break
try:
    ps = call("/api/ps", timeout=10)
    m = (ps.get("models") or [{}])[0]
    row = {"mode": mode, "kind": "ps", "size": m.get("size"), "size_vram": m.get("size_vram"),
           "context_length": m.get("context_length")}
except Exception as e:
    row = {"mode": mode, "kind": "ps", "error": repr(e)}
print(json.dumps(row)); rows.append(row)
with open(os.environ["RESULTS"], "a") as f:
    for r in rows: f.write(json.dumps(r) + "\n")
PY
    log "$mode: device lines:"
    grep -a -E "inference compute|ggml_vulkan: [0-9]+ =|ggml_vulkan: Found|reporting .* free|offloaded [0-9]+/|failure during GPU discovery|using device|Vulkan0" \
      "$OUT/$mode-serve.log" | cut -c1-300 | sort -u | head -20 | tee -a "$rl"
    stop_group "$srv"
    [ -n "$vt" ] && stop_group "$vt"
    log "$mode: stopped"
  done
  trap - EXIT

  python3 - "$RESULTS" <<'PY' | tee "$OUT/table.md"
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
def runs(m): return [r for r in rows if r["mode"] == m and r["kind"] == "run" and r.get("gen_tps") and not r.get("error")]
def ps(m): return next((r for r in rows if r["mode"] == m and r["kind"] == "ps"), {})
def warm(m): return next((r for r in rows if r["mode"] == m and r["kind"] == "warmup"), {})
def fmt(v): return "–" if v is None else f"{v:.1f}"
med = {}
print("| mode | runs | prompt tokens | prompt t/s, median (min–max) | generated tokens (min–max) | generation t/s, median (min–max) | first request (load) s | size_vram / size |")
print("|---|---|---|---|---|---|---|---|")
for m in ("native", "venus"):
    rs = runs(m)
    if not rs:
        print(f"| {m} | 0 | – | – | – | – | {fmt(warm(m).get('load_s'))} | – |"); continue
    p = [r["prompt_tps"] for r in rs]; g = [r["gen_tps"] for r in rs]
    med[m] = (statistics.median(p), statistics.median(g))
    s = ps(m)
    print(f"| {m} | {len(rs)} | {statistics.median([r['prompt_eval_count'] for r in rs]):.0f} | "
          f"{med[m][0]:.0f} ({min(p):.0f}–{max(p):.0f}) | {min(r['eval_count'] for r in rs)}–{max(r['eval_count'] for r in rs)} | "
          f"{med[m][1]:.1f} ({min(g):.1f}–{max(g):.1f}) | {fmt(warm(m).get('load_s'))} | {s.get('size_vram')} / {s.get('size')} |")
if "native" in med and "venus" in med:
    print(f"\nvenus/native: prompt {med['venus'][0] / med['native'][0] * 100:.1f} %, "
          f"generation {med['venus'][1] / med['native'][1] * 100:.1f} % (medians)")
PY
  log "done"
}

case ${1:-} in
  pack) shift; pack "$@" ;;
  run) shift; run "$@" ;;
  *) die "usage: venus-gpu.sh pack DIST OUTDIR [--prefix DIR] [--root DIR] [--numpy] | run BUNDLE" ;;
esac
