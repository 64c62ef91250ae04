#!/usr/bin/env python3
"""Device half of bench/gpu.sh: one dist, one 7 B Q4_0 model, every way to run it.

usage: python3 bench/gpu/run.py BUNDLE [--out DIR] [--modes ollama,llama-server,cpu,venus]
                                [--runs N] [--cpu-runs N] [--deadline-s S]

Modes (each skipped, with the reason, where the bundle cannot do it):
  ollama        `ollama serve` on the host's Vulkan driver (VK_DRIVER_FILES=HOST_ICD)
  llama-server  the dist's own llama-server (era 5), run directly, same driver, same flags
  cpu           `ollama serve` with the recipe's off switch; checked: size_vram 0 and no
                Vulkan buffer in llama-server's log
  venus         `ollama serve` on Mesa's Venus driver over virglrenderer's vtest server,
                whose render server runs on the host driver (the bundle's venus/ part)

Per mode: start, load the model (timed), the first ~443-token prompt after the load with
an empty shader cache ("cold"), RUNS more prompts (each different: no prompt-cache hit),
then (GPU modes) a restart with the cache the first start filled ("restart, warm cache")
and one with the driver's disk cache off ("restart, cache off"). Time to first token is
measured on the client from the request to the first streamed token.

Writes OUT/results.jsonl (one row per request), OUT/table.md, OUT/run.log and OUT/logs.tar.gz
(the servers' logs).
"""
import argparse
import json
import os
import random
import shutil
import signal
import statistics
import subprocess
import sys
import tarfile
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
NVIDIA_ICD = "/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json"
PROMPT_CHARS = 439  # + BOS and the leading space: 443 tokens with the model's byte fallback
OPTS = {"temperature": 0, "seed": 42, "num_predict": 128, "num_ctx": 2048,
        # Greedy decoding on random weights loops; Ollama aborts a generation after 30
        # repeats of one token. The penalties (sampling on the CPU, the same everywhere)
        # break the loops.
        "frequency_penalty": 1.0, "presence_penalty": 0.5, "repeat_last_n": 64}
T0 = time.time()
EXTRA = {}


def log(msg):
    line = f"[{time.strftime('%H:%M:%S')} +{time.time() - T0:.0f}s] {msg}"
    print(line, flush=True)
    with open(os.path.join(ARGS.out, "run.log"), "a") as f:
        f.write(line + "\n")


def left():
    return ARGS.deadline_s - (time.time() - T0)


def record(row):
    print(json.dumps(row), flush=True)
    with open(os.path.join(ARGS.out, "results.jsonl"), "a") as f:
        f.write(json.dumps(row) + "\n")


def sh(cmd):
    return subprocess.run(cmd, shell=True, capture_output=True, text=True).stdout.strip()


def prompt(i):
    r = random.Random(1000 + i)  # different from the first character on
    return "".join(r.choice("abcdefghijklmnopqrstuv") for _ in range(PROMPT_CHARS))


class Proc:
    """A server in its own session, so that stopping it stops its children (llama-server
    under ollama, render servers under vtest)."""

    def __init__(self, argv, env, logname):
        self.log = os.path.join(ARGS.out, "logs", logname)
        self.p = subprocess.Popen(argv, env=env, stdin=subprocess.DEVNULL, stdout=open(self.log, "ab"),
                                  stderr=subprocess.STDOUT, start_new_session=True)

    def stop(self):
        for sig, wait in ((signal.SIGTERM, 5), (signal.SIGKILL, 5)):
            try:
                os.killpg(self.p.pid, sig)
            except ProcessLookupError:
                break
            try:
                self.p.wait(wait)
                break
            except subprocess.TimeoutExpired:
                pass
        try:  # children that outlived their leader
            os.killpg(self.p.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass

    def text(self):
        with open(self.log, "rb") as f:
            return f.read().decode("utf-8", "replace")


def http(url, body=None, timeout=60):
    req = urllib.request.Request(url, data=json.dumps(body).encode() if body is not None else None,
                                 headers={"Content-Type": "application/json"})
    return urllib.request.urlopen(req, timeout=max(5, min(timeout, left() - 5)))


def wait_up(url, proc, seconds):
    end = time.time() + seconds
    while time.time() < end:
        if proc.p.poll() is not None:
            return False
        try:
            with http(url, timeout=2) as r:
                if r.status == 200:
                    return True
        except Exception:
            pass
        time.sleep(0.2)
    return False


def stream(url, body, timeout, sse):
    """POST and read a streamed answer: (seconds to the first token, last JSON object)."""
    t0 = time.time()
    ttft, last = None, {}
    with http(url, body, timeout) as r:
        for raw in r:
            line = raw.decode().strip()
            if sse:
                if not line.startswith("data: "):
                    continue
                line = line[6:]
            if not line:
                continue
            obj = json.loads(line)
            if ttft is None and (obj.get("response") or obj.get("content")):
                ttft = time.time() - t0
            last = obj
            if obj.get("error"):
                break
    return ttft, time.time() - t0, last


# ----------------------------------------------------------------------------- clients
def ollama_generate(host, i):
    ttft, wall, g = stream(f"http://{host}/api/generate",
                           {"model": "bench7b", "prompt": prompt(i), "raw": True, "stream": True,
                            "options": OPTS}, 300, sse=False)
    pc, pd, ec, ed = (g.get(k, 0) for k in ("prompt_eval_count", "prompt_eval_duration", "eval_count", "eval_duration"))
    return {"ttft_s": ttft, "wall_s": round(wall, 3), "prompt_tokens": pc, "prompt_tps": pc / pd * 1e9 if pd else None,
            "gen_tokens": ec, "gen_tps": ec / ed * 1e9 if ed else None, "done_reason": g.get("done_reason"),
            "error": g.get("error")}


def llama_generate(host, i):
    body = {"prompt": prompt(i), "n_predict": OPTS["num_predict"], "temperature": 0, "seed": 42,
            "frequency_penalty": OPTS["frequency_penalty"], "presence_penalty": OPTS["presence_penalty"],
            "repeat_last_n": OPTS["repeat_last_n"], "cache_prompt": False, "stream": True}
    ttft, wall, g = stream(f"http://{host}/completion", body, 300, sse=True)
    t = g.get("timings", {})
    return {"ttft_s": ttft, "wall_s": round(wall, 3), "prompt_tokens": t.get("prompt_n"),
            "prompt_tps": t.get("prompt_per_second"), "gen_tokens": t.get("predicted_n"),
            "gen_tps": t.get("predicted_per_second"), "done_reason": g.get("stop_type"), "error": g.get("error")}


# ----------------------------------------------------------------------------- modes
def cache_env(d, on=True, driver=True, ggml=True):
    """The pipeline caches: ggml's VkPipelineCache file (our vk-pipeline-cache series) and
    the drivers' own disk caches, NVIDIA's and Mesa's (lavapipe, RADV, ANV). The image sets
    the same variables (docs/RUNNING.md). Off: ggml's unset, the drivers' disabled."""
    if not on:
        return {"GGML_VK_PIPELINE_CACHE_DIR": "", "__GL_SHADER_DISK_CACHE": "0", "MESA_SHADER_CACHE_DISABLE": "true"}
    env = {}
    if ggml:
        env["GGML_VK_PIPELINE_CACHE_DIR"] = os.path.join(d, "ggml")
    if driver:
        env.update({"__GL_SHADER_DISK_CACHE_PATH": os.path.join(d, "nvidia"), "__GL_SHADER_DISK_CACHE_SKIP_CLEANUP": "1",
                    "__GL_SHADER_DISK_CACHE_SIZE": str(4 << 30), "MESA_SHADER_CACHE_DIR": os.path.join(d, "mesa"),
                    "MESA_SHADER_CACHE_MAX_SIZE": "4G"})
    for k in ("GGML_VK_PIPELINE_CACHE_DIR", "__GL_SHADER_DISK_CACHE_PATH", "MESA_SHADER_CACHE_DIR"):
        if k in env:
            os.makedirs(env[k], exist_ok=True)
    return env


def du(d):
    n = 0
    for root, _, files in os.walk(d):
        n += sum(os.path.getsize(os.path.join(root, f)) for f in files)
    return n


def ollama_start(mode, env, tag):
    host = f"127.0.0.1:{11600 + len(STARTS)}"
    STARTS.append(host)
    e = dict(BASE_ENV, OLLAMA_HOST=host, OLLAMA_MODELS=f"{W}/models", HOME=f"{W}/home", OLLAMA_NUM_PARALLEL="1",
             OLLAMA_CONTEXT_LENGTH="2048", OLLAMA_LOAD_TIMEOUT="5m", OLLAMA_KEEP_ALIVE="30m", OLLAMA_DEBUG="1",
             **env)
    p = Proc([f"{W}/dist/bin/ollama", "serve"], e, f"{mode}-{tag}-serve.log")
    if not wait_up(f"http://{host}/api/version", p, 30):
        p.stop()
        raise RuntimeError(f"ollama serve did not come up (log {p.log})")
    if not os.path.exists(f"{W}/created"):
        t = time.time()
        r = subprocess.run([f"{W}/dist/bin/ollama", "create", "bench7b", "-f", f"{W}/Modelfile"], env=e,
                           capture_output=True, text=True)
        if r.returncode:
            p.stop()
            raise RuntimeError(f"ollama create failed: {r.stderr[-500:]}")
        open(f"{W}/created", "w").close()
        log(f"{mode}: ollama create in {time.time() - t:.1f} s")
    t = time.time()
    with http(f"http://{host}/api/generate", {"model": "bench7b", "keep_alive": "30m"}, 300) as r:
        g = json.load(r)
    return p, host, {"load_s": round(time.time() - t, 3), "ollama_load_s": round(g.get("load_duration", 0) / 1e9, 3)}


def llama_start(mode, env, tag):
    host = f"127.0.0.1:{11600 + len(STARTS)}"
    STARTS.append(host)
    exe, backend = LLAMA_SERVER
    e = dict(BASE_ENV, HOME=f"{W}/home", GGML_BACKEND_PATH=backend,
             LD_LIBRARY_PATH=":".join([os.path.dirname(exe), os.path.dirname(backend), BASE_ENV.get("LD_LIBRARY_PATH", "")]),
             **env)
    t = time.time()
    p = Proc([exe, "-m", f"{W}/bench7b.gguf", "--host", "127.0.0.1", "--port", host.split(":")[1], "-ngl", "999",
              "-c", "2048", "-np", "1"], e, f"{mode}-{tag}-server.log")
    if not wait_up(f"http://{host}/health", p, 120):
        p.stop()
        raise RuntimeError(f"llama-server did not come up (log {p.log})")
    return p, host, {"load_s": round(time.time() - t, 3)}


def session(mode, tag, start, generate, env, runs):
    """One server start: load, the first prompt, RUNS more; returns the server's log."""
    try:
        p, host, load = start(mode, env, tag)
    except Exception as e:
        record({"mode": mode, "phase": tag, "kind": "error", "error": str(e)})
        return ""
    record(dict({"mode": mode, "phase": tag, "kind": "load"}, **load))
    try:
        for i in range(runs + 1):
            if left() < 25:
                record({"mode": mode, "phase": tag, "kind": "skipped", "error": "deadline"})
                break
            row = generate(host, len(RESULTS_SEEN) + 1)
            RESULTS_SEEN.append(1)
            record(dict({"mode": mode, "phase": tag, "kind": "first" if i == 0 else "run", "i": i}, **row))
            if row.get("error"):
                break
        if generate is ollama_generate:
            with http(f"http://{host}/api/ps", timeout=10) as r:
                m = (json.load(r).get("models") or [{}])[0]
            record({"mode": mode, "phase": tag, "kind": "ps", "size": m.get("size"), "size_vram": m.get("size_vram")})
    except Exception as e:
        record({"mode": mode, "phase": tag, "kind": "error", "error": repr(e)})
    finally:
        p.stop()
    return p.text()


DEVICE_LINES = ("ggml_vulkan: ", "inference compute", "reporting ", "offloaded ", "buffer size", "using device",
                "Vulkan support disabled", "matrix cores", "starting llama-server")


def keep_lines(mode, text):
    seen = []
    for line in text.splitlines():
        if any(k in line for k in DEVICE_LINES):
            line = line.strip()[:400]
            if line not in seen:
                seen.append(line)
    record({"mode": mode, "kind": "lines", "lines": seen[:40]})


def run_mode(mode):
    cache = f"{W}/cache/{mode}"
    host_icd = {"VK_DRIVER_FILES": HOST_ICD, "VK_ICD_FILENAMES": HOST_ICD, **EXTRA}
    if mode == "ollama":
        env = dict(host_icd, **MANIFEST_ENV["vulkan"])
        start, gen = ollama_start, ollama_generate
    elif mode == "llama-server":
        env, start, gen = dict(host_icd), llama_start, llama_generate
    elif mode == "cpu":
        text = session(mode, "cold", ollama_start, ollama_generate, dict(host_icd, **MANIFEST_ENV["cpu"]), ARGS.cpu_runs)
        keep_lines(mode, text)
        vk = [l for l in text.splitlines() if "buffer size" in l and "Vulkan" in l]
        record({"mode": mode, "kind": "clean", "vulkan_buffers": vk[:8]})
        return
    elif mode == "venus":
        # The host's driver caches belong to the render server, which compiles.
        vt_env = dict(BASE_ENV, VK_DRIVER_FILES=HOST_ICD, VK_ICD_FILENAMES=HOST_ICD, VKR_DEBUG="hostptr",
                      RENDER_SERVER_EXEC_PATH=f"{B}/venus/libexec/virgl_render_server",
                      **cache_env(cache, ggml=False))
        sock = f"{W}/venus.sock"
        vt = Proc([f"{B}/venus/bin/virgl_test_server", "--venus", "--no-virgl", "--multi-clients", "--socket-path", sock],
                  vt_env, "venus-vtest.log")
        for _ in range(50):
            if os.path.exists(sock):
                break
            time.sleep(0.2)
        VTESTS.append(vt)
        env = dict(MANIFEST_ENV["vulkan"], **EXTRA, VN_DEBUG="vtest", VTEST_SOCKET_NAME=sock,
                   VK_DRIVER_FILES=f"{B}/venus/icd/virtio_icd.json", VK_ICD_FILENAMES=f"{B}/venus/icd/virtio_icd.json")
        start, gen = ollama_start, ollama_generate
    else:
        raise SystemExit(f"unknown mode {mode}")
    # Under Venus the guest's ggml keeps its VkPipelineCache (its data comes from the host's
    # driver); the driver caches are the render server's (above).
    client_cache = cache_env(cache, driver=False) if mode == "venus" else cache_env(cache)
    text = session(mode, "cold", start, gen, dict(env, **client_cache), ARGS.runs)
    keep_lines(mode, text)
    record({"mode": mode, "kind": "cache", "bytes": du(cache),
            "parts": {p: du(os.path.join(cache, p)) for p in ("ggml", "nvidia", "mesa")}})
    if left() > 60:
        session(mode, "restart-warm-cache", start, gen, dict(env, **client_cache), 1)
    if mode != "venus" and left() > 60:
        session(mode, "restart-cache-off", start, gen, dict(env, **cache_env(cache, on=False)), 0)
    if ARGS.attribute and mode != "venus":
        # Which cache does it: each alone, over what the cold start left in both.
        off = cache_env(cache, on=False)
        only_ggml = dict(cache_env(cache), **{k: v for k, v in off.items() if k != "GGML_VK_PIPELINE_CACHE_DIR"})
        only_driver = dict(cache_env(cache), GGML_VK_PIPELINE_CACHE_DIR="")
        for tag, e in (("restart-ggml-cache-only", only_ggml), ("restart-driver-cache-only", only_driver)):
            if left() > 60:
                session(mode, tag, start, gen, dict(env, **e), 0)
    if mode == "venus":
        VTESTS.pop().stop()


# ----------------------------------------------------------------------------- setup
def bandwidth():
    """Device-to-device copy with PyTorch: (read + write) bytes per second."""
    try:
        import torch
        n = 2 << 30
        x = torch.empty(n, dtype=torch.uint8, device="cuda")
        y = torch.empty_like(x)
        for _ in range(3):
            y.copy_(x)
        torch.cuda.synchronize()
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record()
        for _ in range(20):
            y.copy_(x)
        b.record()
        torch.cuda.synchronize()
        bw = 2 * n * 20 / (a.elapsed_time(b) / 1e3)
        del x, y
        torch.cuda.empty_cache()
        return {"copy_bytes_per_s": bw, "how": f"torch {torch.__version__} copy_ of 2 GiB x 20, (read+write)/time"}
    except Exception as e:
        return {"copy_bytes_per_s": None, "how": repr(e)}


def fmt(v, d=1):
    return "–" if v is None else f"{v:.{d}f}"


def table():
    rows = [json.loads(l) for l in open(os.path.join(ARGS.out, "results.jsonl")) if l.strip()]
    setup = next(r for r in rows if r.get("kind") == "setup")
    bw, wpt = setup["copy_bytes_per_s"], setup["weights_per_token"]
    out = [f"dist {setup['tag']} (era {setup['era']}), {setup['gpu']}, {setup['cpus']} CPUs ({setup['cpu_model']}); "
           f"model {setup['model_bytes'] / 1e9:.2f} GB, {wpt / 1e9:.2f} GB of weights read per generated token; "
           f"device-to-device copy {fmt(bw and bw / 1e9, 0)} GB/s (read+write)", "",
           "| mode | runs | prompt tokens | prompt t/s, median (min–max) | generation t/s, median (min–max) | "
           "TTFT warm, median s | load s: cold / restart, warm cache / restart, cache off | "
           "first prompt after the load, TTFT s: the same three | size_vram / size | weights read, GB/s (% of copy) |",
           "|---|---|---|---|---|---|---|---|---|---|"]
    med, notes = {}, []
    for m in ARGS.modes:
        rs = [r for r in rows if r.get("mode") == m and r.get("kind") == "run" and r.get("gen_tps") and not r.get("error")]
        first = {r["phase"]: r for r in rows if r.get("mode") == m and r.get("kind") == "first"}
        loads = {r["phase"]: r for r in rows if r.get("mode") == m and r.get("kind") == "load"}
        load = loads.get("cold", {})
        ps = next((r for r in rows if r.get("mode") == m and r.get("kind") == "ps"), {})
        skip = next((r for r in rows if r.get("mode") == m and r.get("kind") == "skip"), None)
        if skip:
            out.append(f"| {m} | skipped: {skip['error']} |||||||||")
            continue
        phases = ("cold", "restart-warm-cache", "restart-cache-off")
        extra = [p for p in ("restart-ggml-cache-only", "restart-driver-cache-only") if p in first]
        if extra:
            notes.append(f"- {m}: first prompt after a restart with " + ", ".join(
                f"{p[8:].replace('-', ' ')}: {fmt(first[p].get('ttft_s'), 2)} s (load {fmt(loads.get(p, {}).get('load_s'))} s)"
                for p in extra))
        ff = " / ".join(fmt(first.get(p, {}).get("ttft_s"), 2) for p in phases)
        ll = " / ".join(fmt(loads.get(p, {}).get("load_s"), 1) for p in phases)
        if not rs:
            err = next((r.get("error") for r in rows if r.get("mode") == m and r.get("error")), "no run")
            out.append(f"| {m} | 0 ({str(err)[:80]}) | – | – | – | – | {ll} | {ff} | – | – |")
            continue
        p = [r["prompt_tps"] for r in rs]
        g = [r["gen_tps"] for r in rs]
        t = [r["ttft_s"] for r in rs if r.get("ttft_s")]
        med[m] = (statistics.median(p), statistics.median(g))
        moved = med[m][1] * wpt
        out.append(f"| {m} | {len(rs)} | {statistics.median([r['prompt_tokens'] for r in rs]):.0f} | "
                   f"{med[m][0]:.0f} ({min(p):.0f}–{max(p):.0f}) | {med[m][1]:.1f} ({min(g):.1f}–{max(g):.1f}) | "
                   f"{fmt(t and statistics.median(t), 2)} | {ll} | {ff} | "
                   f"{ps.get('size_vram', '–')} / {ps.get('size', '–')} | "
                   f"{moved / 1e9:.0f} ({fmt(bw and moved / bw * 100)} %) |")
    out.append("")
    out.extend(notes)
    for a, b, what in (("ollama", "llama-server", "Ollama / llama-server direct"), ("ollama", "cpu", "Vulkan / CPU"),
                       ("venus", "ollama", "Venus / native")):
        if a in med and b in med:
            out.append(f"- {what}: prompt {med[a][0] / med[b][0]:.3f}×, generation {med[a][1] / med[b][1]:.3f}× (medians)")
    for r in rows:
        if r.get("kind") == "clean":
            out.append(f"- cpu mode: Vulkan buffers in llama-server's log: {len(r['vulkan_buffers'])}"
                       + (f" ({r['vulkan_buffers'][0][:160]})" if r["vulkan_buffers"] else ""))
        if r.get("kind") == "cache":
            parts = ", ".join(f"{k} {v / 1e6:.1f} MB" for k, v in (r.get("parts") or {}).items())
            out.append(f"- {r['mode']}: pipeline caches after the cold start: {r['bytes'] / 1e6:.1f} MB ({parts})")
    out.append(f"- shader features compiled in (manifest): {json.dumps(setup['shader_features'])}")
    for r in rows:
        if r.get("kind") == "lines":
            for l in r["lines"]:
                if "matrix cores" in l or "int dot" in l:
                    out.append(f"- {r['mode']} device line: `{l[l.find('ggml_vulkan'):][:200]}`")
                    break
    text = "\n".join(out) + "\n"
    open(os.path.join(ARGS.out, "table.md"), "w").write(text)
    print(text)


def main():
    global ARGS, W, B, BASE_ENV, HOST_ICD, MANIFEST_ENV, LLAMA_SERVER, STARTS, RESULTS_SEEN, VTESTS
    ap = argparse.ArgumentParser()
    ap.add_argument("bundle")
    ap.add_argument("--out", default=os.environ.get("OUT"))
    ap.add_argument("--modes", default="ollama,llama-server,cpu,venus")
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--cpu-runs", type=int, default=3)
    ap.add_argument("--deadline-s", type=float, default=540)
    ap.add_argument("--attribute", action="store_true",
                    help="two more restarts per GPU mode: ggml's pipeline cache alone, the driver's alone")
    ap.add_argument("--work", default="/tmp/ollama-vulkan-gpu")
    ap.add_argument("--model", help="an existing GGUF instead of the random 7 B one (weights read per "
                    "token are then taken as the file's size)")
    ap.add_argument("--env", action="append", default=[], metavar="K=V",
                    help="added to every GPU mode (e.g. GGML_VK_VISIBLE_DEVICES=0 to use lavapipe)")
    ARGS = ap.parse_args()
    B = os.path.abspath(ARGS.bundle)
    ARGS.out = os.path.abspath(ARGS.out or os.path.join(B, "out"))
    ARGS.modes = [m for m in ARGS.modes.split(",") if m]
    shutil.rmtree(os.path.join(ARGS.out, "logs"), ignore_errors=True)
    os.makedirs(os.path.join(ARGS.out, "logs"))
    for f in ("run.log", "table.md", "logs.tar.gz"):
        if os.path.exists(os.path.join(ARGS.out, f)):
            os.remove(os.path.join(ARGS.out, f))
    open(os.path.join(ARGS.out, "results.jsonl"), "w").close()
    W = ARGS.work
    shutil.rmtree(W, ignore_errors=True)
    for d in ("dist", "home", "models", "site"):
        os.makedirs(f"{W}/{d}")
    STARTS, RESULTS_SEEN, VTESTS = [], [], []
    HOST_ICD = os.environ.get("HOST_ICD", NVIDIA_ICD)
    # The bundle's Vulkan loader and glvnd (the NVIDIA ICD needs it): the machine has neither.
    lib = f"{B}/lib"
    BASE_ENV = {k: v for k, v in os.environ.items() if not k.startswith(("OLLAMA_", "GGML_", "VK_", "__GL_", "MESA_"))}
    BASE_ENV["LD_LIBRARY_PATH"] = lib
    EXTRA.update(kv.split("=", 1) for kv in ARGS.env)

    gpu = sh("nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | head -1")
    cpu_model = sh("sed -n 's/^model name[^:]*: //p' /proc/cpuinfo | head -1")
    log(f"machine: {os.uname().machine}, {sh('. /etc/os-release; echo $PRETTY_NAME')}, gpu {gpu}, "
        f"{os.cpu_count()} CPUs ({cpu_model}), python {sys.version.split()[0]}")
    log(f"bundle: {open(f'{B}/MANIFEST').read().splitlines()[:3]}")
    bw = bandwidth()
    log(f"bandwidth: {bw}")
    with tarfile.open(f"{B}/dist.tar.xz") as t:  # Python's lzma: the device may have no xz
        t.extractall(f"{W}/dist", filter="tar" if hasattr(tarfile, "data_filter") else None)
    wheels = [os.path.join(f"{B}/wheels", w) for w in os.listdir(f"{B}/wheels")]
    ARGS.model or subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-index", "--no-deps", "--no-compile",
                    "--no-cache-dir", "--target", f"{W}/site", *wheels], check=True)
    if ARGS.model:
        os.symlink(os.path.abspath(ARGS.model), f"{W}/bench7b.gguf")
        weights = os.path.getsize(ARGS.model)
    else:
        sys.path.insert(0, f"{W}/site")
        sys.path.insert(0, HERE)
        import model
        t = time.time()
        model.write(f"{W}/bench7b.gguf")
        weights = model.weights_per_token()
        log(f"model written in {time.time() - t:.1f} s")
    with open(f"{W}/Modelfile", "w") as f:
        f.write(f"FROM {W}/bench7b.gguf\n")

    man = json.load(open(f"{W}/dist/manifest.json"))
    smoke = man.get("smoke") or {}
    MANIFEST_ENV = {"vulkan": smoke.get("vulkan_env", {}), "cpu": smoke.get("cpu_env", {})}
    exe = [os.path.join(r, "llama-server") for r, _, fs in os.walk(f"{W}/dist") if "llama-server" in fs]
    vk = [os.path.join(r, f) for r, _, fs in os.walk(f"{W}/dist") for f in fs if f.startswith("libggml-vulkan.so")]
    LLAMA_SERVER = (exe[0], vk[0]) if exe and vk else None
    rec = man.get("recipe") or {}
    record({"kind": "setup", "tag": rec.get("tag"), "era": rec.get("era"), "target": man.get("target"), "gpu": gpu, "cpus": os.cpu_count(),
            "cpu_model": cpu_model, "model_bytes": os.path.getsize(f"{W}/bench7b.gguf"),
            "weights_per_token": weights, "shader_features": man.get("vulkan_shader_features"),
            "env": MANIFEST_ENV, "llama_server": LLAMA_SERVER, **bw})
    for m in ARGS.modes:
        why = None
        if m == "llama-server" and not LLAMA_SERVER:
            why = "this dist has no llama-server (eras before 5 run ggml inside ollama)"
        if m == "venus" and not os.path.isdir(f"{B}/venus/bin"):
            why = "bundle made without --venus"
        if left() < 60:
            why = "deadline"
        if why:
            record({"mode": m, "kind": "skip", "error": why})
            continue
        log(f"--- {m}")
        run_mode(m)
    table()


if __name__ == "__main__":
    try:
        main()
    finally:
        for v in globals().get("VTESTS", []):
            v.stop()
        # The device returns at most 8 files: the servers' logs travel as one archive.
        if "ARGS" in globals():
            subprocess.run(["tar", "-czf", os.path.join(ARGS.out, "logs.tar.gz"), "-C", ARGS.out, "logs"])
            shutil.rmtree(os.path.join(ARGS.out, "logs"), ignore_errors=True)
