//! Running `ollama serve` (from the dist, in its builder root, or in a container), one
//! mode at a time, and always stopping it.

use super::*;

/// Stops the server (SIGTERM, then SIGKILL) on every path; a container is removed.
pub(super) struct Server {
    pub(super) child: Option<Child>,
    pub(super) container: Option<(Engine, String)>,
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some((engine, name)) = self.container.take() {
            // Stops the container (SIGTERM, 5 s, SIGKILL); the client then exits.
            let _ = duct::cmd(&engine.program, ["rm", "-f", "-t", "5", name.as_str()])
                .stdout_null()
                .stderr_null()
                .unchecked()
                .run();
        }
        if let Some(mut c) = self.child.take() {
            if let Ok(Some(_)) = c.try_wait() {
                return; // exited by itself (the engine could not start it): nothing to stop
            }
            let _ = Command::new("kill")
                .arg("-TERM")
                .arg(c.id().to_string())
                .stderr(Stdio::null())
                .status();
            let start = Instant::now();
            while start.elapsed() < Duration::from_secs(10) {
                if let Ok(Some(_)) = c.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

pub(super) fn free_port() -> Result<u16, SmokeError> {
    let l = std::net::TcpListener::bind("127.0.0.1:0").map_err(io("finding a free port"))?;
    Ok(l.local_addr().map_err(io("finding a free port"))?.port())
}

/// Where `ollama serve` and `ollama create` run.
pub(super) enum Runner<'a> {
    Dist {
        builder: &'a Builder,
        dist: &'a Path,
        wdir: &'a Path,
    },
    Image {
        engine: &'a Engine,
        image: &'a str,
        wdir: &'a Path,
    },
}

#[allow(clippy::too_many_arguments)]
pub(super) fn run_mode(
    runner: &Runner<'_>,
    env: &BTreeMap<String, String>,
    port: u16,
    log: &Path,
    mode: &str,
    tokens: usize,
    smoke: &Smoke,
    venus: bool,
) -> Result<Run, SmokeError> {
    let fail = |what: &str, why: String| SmokeError::Failed {
        what: format!("{mode}: {what}"),
        why,
        log: log.display().to_string(),
        tail: crate::fsutil::tail_file(log, 30),
    };
    let logf = fs::File::create(log).map_err(io(format!("creating {}", log.display())))?;
    let logf2 = logf
        .try_clone()
        .map_err(io(format!("opening {} twice", log.display())))?;
    let progress = crate::progress::Progress::start(match runner {
        Runner::Dist { .. } => format!("smoke ({mode}): ollama serve on 127.0.0.1:{port}"),
        Runner::Image { image, .. } => {
            format!("smoke ({mode}): {image} in a container on 127.0.0.1:{port}")
        }
    });
    let (mut cmd, container) = match runner {
        Runner::Dist {
            builder,
            dist,
            wdir,
        } => (
            builder.std_command(
                &[
                    dist.join("bin/ollama").display().to_string(),
                    "serve".into(),
                ],
                wdir,
                env,
            ),
            None,
        ),
        Runner::Image {
            engine,
            image,
            wdir,
        } => {
            let name = format!("ollama-vulkan-smoke-{}-{mode}", std::process::id());
            // The host's network with the server on 127.0.0.1:PORT (OLLAMA_HOST): a
            // published port needs the engine's firewall rules (netavark calls iptables
            // or nft, which a minimal host lacks), and a loopback smoke needs none.
            // No healthcheck timer (it needs systemd): the HEALTHCHECK is run once below.
            let mut args: Vec<String> = vec![
                "run".into(),
                "--rm".into(),
                "--name".into(),
                name.clone(),
                "--network".into(),
                "host".into(),
                "-v".into(),
                format!("{}:/smoke", wdir.display()),
            ];
            if engine.kind == crate::image::engine::EngineKind::Podman {
                args.extend(["--health-interval".into(), "disable".into()]);
            }
            let arch = engine
                .image_arch(image)?
                .unwrap_or_else(crate::target::Arch::host);
            if !arch.is_host() {
                // Its programs run under qemu-user.
                crate::provision::ensure_foreign(arch.name())?;
            }
            args.extend(engine.run_flags(arch));
            // The GPUs of the host (AMD/Intel through Mesa), as docs/RUNNING.md says.
            if Path::new("/dev/dri").exists() {
                args.extend(["--device".into(), "/dev/dri".into()]);
            }
            for (k, v) in env {
                args.extend(["-e".into(), format!("{k}={v}")]);
            }
            // The image's own ENTRYPOINT and CMD: `ollama serve`.
            args.push(image.to_string());
            let mut c = Command::new(&engine.program);
            c.args(&args);
            (c, Some(((*engine).clone(), name)))
        }
    };
    let child = cmd
        .stdin(Stdio::null())
        .stdout(logf)
        .stderr(logf2)
        .spawn()
        .map_err(io("starting ollama serve"))?;
    let mut server = Server {
        child: Some(child),
        container,
    };
    let base = format!("127.0.0.1:{port}");
    let start = Instant::now();
    loop {
        check_interrupt()?;
        if let Some(Ok(Some(st))) = server.child.as_mut().map(|c| c.try_wait()) {
            let text = fs::read_to_string(log).unwrap_or_default();
            return Err(match runner {
                // The engine's own words: podman prints `Error: …` when it cannot start
                // the container (an exit status alone hides a missing network tool).
                Runner::Image { engine, .. } => fail(
                    "the container did not start",
                    match engine_error(&text) {
                        Some(e) => format!("{} run exited {}: {e}", engine.kind.name(), code(st)),
                        None => format!(
                            "{} run exited {} (no error line: see the log)",
                            engine.kind.name(),
                            code(st)
                        ),
                    },
                ),
                Runner::Dist { .. } => fail("ollama serve exited", format!("status {}", code(st))),
            });
        }
        if http::get(&base, "/api/version")
            .map(|(s, _)| s == 200)
            .unwrap_or(false)
        {
            break;
        }
        let limit = match runner {
            Runner::Dist { .. } => 60,
            Runner::Image { .. } => 180,
        };
        if start.elapsed() > Duration::from_secs(limit) {
            return Err(fail(
                "ollama serve did not answer",
                format!("no response on /api/version within {limit} s"),
            ));
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    // The image's HEALTHCHECK, run once now that the server answers.
    let mut healthcheck = None;
    if let (Runner::Image { engine, .. }, Some((_, name))) = (runner, &server.container) {
        if engine.kind == crate::image::engine::EngineKind::Podman {
            let out = duct::cmd(&engine.program, ["healthcheck", "run", name.as_str()])
                .stderr_to_stdout()
                .stdout_capture()
                .unchecked()
                .run()
                .map_err(io("podman healthcheck run"))?;
            let text = String::from_utf8_lossy(&out.stdout).trim().to_string();
            if out.status.success() {
                healthcheck = Some("healthy".to_string());
            } else if !text.contains("no defined healthcheck") {
                return Err(fail("HEALTHCHECK failed", text));
            }
        }
    }
    // ollama create, through the CLI as users do (in the container for an image).
    let create = match runner {
        Runner::Dist {
            builder,
            dist,
            wdir,
        } => builder.command(
            &[
                dist.join("bin/ollama").display().to_string(),
                "create".into(),
                "smoke".into(),
                "-f".into(),
                wdir.join("Modelfile").display().to_string(),
            ],
            wdir,
            env,
        ),
        Runner::Image { engine, .. } => {
            let name = &server.container.as_ref().expect("a container").1;
            duct::cmd(
                &engine.program,
                [
                    "exec",
                    name.as_str(),
                    "/usr/bin/ollama",
                    "create",
                    "smoke",
                    "-f",
                    "/smoke/Modelfile",
                ],
            )
        }
    };
    let out = create
        .stderr_to_stdout()
        .stdout_capture()
        .unchecked()
        .run()
        .map_err(io("ollama create"))?;
    if !out.status.success() {
        return Err(fail(
            "ollama create failed",
            String::from_utf8_lossy(&out.stdout).into_owned(),
        ));
    }
    let body = serde_json::json!({
        "model": "smoke",
        "prompt": "hello vulkan",
        "stream": false,
        "options": {"temperature": 0, "seed": 42, "num_predict": tokens},
    });
    // A runner that died while loading leaves some Ollama versions waiting out their own
    // load timeout: give up once the server log says so and stops growing for a minute.
    let quiet = std::cell::Cell::new((0u64, std::time::Instant::now()));
    let runner_died = || -> Option<String> {
        let len = fs::metadata(log).map(|m| m.len()).unwrap_or(0);
        let (seen, since) = quiet.get();
        if len != seen {
            quiet.set((len, std::time::Instant::now()));
            return None;
        }
        if since.elapsed() < std::time::Duration::from_secs(60) {
            return None;
        }
        let text = fs::read_to_string(log).unwrap_or_default();
        text.contains("llama runner terminated").then(|| {
            let fatal: Vec<&str> = text
                .lines()
                .filter(|l| {
                    l.contains("GGML_ASSERT")
                        || l.contains("SIGABRT")
                        || l.contains("SIGSEGV")
                        || l.contains("llama runner terminated")
                })
                .take(4)
                .collect();
            format!(
                "the runner died and the server log has been quiet for a minute:\n  {}",
                fatal.join("\n  ")
            )
        })
    };
    let generated = http::post(&base, "/api/generate", &body.to_string(), &runner_died);
    check_interrupt()?; // Ctrl-C ends the request early: report that, not a failed request
    let (status, resp) = generated.map_err(|e| fail("POST /api/generate", e))?;
    if status != 200 {
        return Err(fail("POST /api/generate", format!("HTTP {status}: {resp}")));
    }
    let g: serde_json::Value = serde_json::from_str(&resp)
        .map_err(|e| fail("POST /api/generate", format!("{e}: {resp}")))?;
    let eval_count = g["eval_count"].as_u64().unwrap_or(0);
    let eval_ns = g["eval_duration"].as_u64().unwrap_or(0);
    let (ps_status, ps) = http::get(&base, "/api/ps").map_err(|e| fail("GET /api/ps", e))?;
    // Ollama before v0.1.38 has no /api/ps: the runner's log is the only evidence there.
    let has_ps = ps_status != 404;
    let ps: serde_json::Value = serde_json::from_str(&ps).unwrap_or_default();
    let m = &ps["models"][0];
    let size = m["size"].as_u64().unwrap_or(0);
    let size_vram = m["size_vram"].as_u64().unwrap_or(0);
    let text = fs::read_to_string(log).unwrap_or_default();
    let device = find_device(&text);
    let layers = find_offload(&text);
    let memory_rule = find_memory_rule(&text);
    progress.finish(&format!("{eval_count} tokens"));
    if eval_count != tokens as u64 {
        // Ollama up to v0.3.x stops a generation that repeats one token 30 times; the
        // smoke model's greedy output does on a fast GPU.
        let why = if text.contains("token repeat limit reached") {
            " (the server stopped it: \"token repeat limit reached\"; this Ollama aborts after 30 repeats of one token, so ask for --tokens 24)"
        } else {
            ""
        };
        return Err(fail(
            "token count",
            format!("eval_count {eval_count}, asked for {tokens}{why}"),
        ));
    }
    let mut cpu_reason = None;
    if mode == "vulkan" {
        if has_ps && (size == 0 || size_vram != size) {
            // Ollama's own fallback to the CPU is logged at INFO and never reaches the
            // user: quote it.
            return Err(fail(
                "not fully on the GPU",
                format!(
                    "/api/ps: size {size}, size_vram {size_vram} (must be equal and > 0){}",
                    find_fallback(&text)
                        .map(|l| format!("; the server fell back to the CPU: {l}"))
                        .unwrap_or_default()
                ),
            ));
        }
        if venus {
            check_venus(device.as_deref(), memory_rule.as_deref())
                .map_err(|why| fail("not the Venus device", why))?;
        }
        if device.is_none() {
            return Err(fail("no Vulkan device in the log", "the server never reported a Vulkan device by name (ggml_vulkan / inference compute library=Vulkan)".into()));
        }
        if let Some(l) = &layers {
            let (a, b) = l.split_once('/').unwrap_or(("0", "1"));
            if a != b {
                return Err(fail(
                    "layers not all offloaded",
                    format!("offloaded {l} layers"),
                ));
            }
        } else {
            return Err(fail(
                "no offload line in the log",
                "the runner never logged how many layers it offloaded".into(),
            ));
        }
    } else {
        if size_vram != 0 || (!has_ps && layers.as_deref().is_some_and(|l| !l.starts_with("0/"))) {
            return Err(fail(
                "Vulkan still in use",
                format!(
                    "size_vram {size_vram}, layers offloaded {} with Vulkan disabled",
                    layers.as_deref().unwrap_or("?")
                ),
            ));
        }
        if let Some(want) = &smoke.cpu_reason {
            cpu_reason = text
                .lines()
                .find(|l| l.contains(want.as_str()))
                .map(|l| l.trim().to_string());
            if cpu_reason.is_none() {
                return Err(fail(
                    "no reason for CPU in the log",
                    format!("expected a line containing {want:?}"),
                ));
            }
        }
    }
    Ok(Run {
        mode: mode.into(),
        eval_count,
        tokens_per_s: if eval_ns > 0 {
            eval_count as f64 / (eval_ns as f64 / 1e9)
        } else {
            0.0
        },
        size,
        size_vram,
        device: if mode == "vulkan" { device } else { None },
        layers_offloaded: layers,
        cpu_reason,
        memory_rule: if mode == "vulkan" { memory_rule } else { None },
        api_ps: has_ps,
        healthcheck,
        log: log.to_path_buf(),
    })
}

/// "llvmpipe (LLVM 19.1.7, 256 bits)" from the server's device report.
pub(super) fn code(st: std::process::ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (st.code(), st.signal()) {
        (Some(c), _) => c.to_string(),
        (None, Some(s)) => format!("on signal {s}"),
        _ => "?".into(),
    }
}
