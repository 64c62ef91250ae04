//! The smoke stage: a built dist generates tokens through Vulkan, proven from the server
//! itself (its API and its log), and falls back to CPU when Vulkan is switched off.
//!
//! A tiny llama GGUF with random weights is made locally with the PyPI `gguf` package (in
//! a venv in the cache), `ollama serve` runs from the dist — inside the builder root when
//! the dist was built there, since its binaries need that root's libc — on a free loopback
//! port with a private OLLAMA_MODELS and HOME, and the tool talks HTTP to it directly.

mod http;

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::build::builder::Builder;
use crate::image::engine::Engine;
use crate::recipe::model::Smoke;

const MAKE_MODEL: &str = include_str!("make_model.py");

#[derive(Debug, thiserror::Error)]
pub enum SmokeError {
    #[error("{dist}: {why}\n  help: {help}")]
    Dist {
        dist: String,
        why: String,
        help: String,
    },
    #[error("making the test model: {what}: {detail}\n  help: the smoke test needs python3 with venv and pip (apt-get install python3-venv) and the PyPI package `gguf`")]
    Model { what: String, detail: String },
    #[error("{what}: {why}\n  server log: {log}\n{tail}")]
    Failed {
        what: String,
        why: String,
        log: String,
        tail: String,
    },
    #[error("interrupted; the server was stopped and the temporary files removed")]
    Interrupted,
    #[error("{what}: {source}")]
    Io {
        what: String,
        source: std::io::Error,
    },
    #[error(transparent)]
    Provision(#[from] crate::provision::ProvisionError),
    #[error(transparent)]
    Image(Box<crate::image::ImageError>),
    #[error(transparent)]
    Manifest(#[from] crate::contract::ContractError),
}

impl crate::error::HasKind for SmokeError {
    fn kind(&self) -> crate::error::Kind {
        use crate::error::Kind;
        match self {
            SmokeError::Dist { .. } | SmokeError::Manifest(_) => Kind::BadInput,
            // Smoke's own engine and base problems are failures of the run, whatever
            // their kind was when `image` met them.
            SmokeError::Provision(e) => e.kind(),
            SmokeError::Model { .. }
            | SmokeError::Failed { .. }
            | SmokeError::Interrupted
            | SmokeError::Io { .. }
            | SmokeError::Image(_) => Kind::Failure,
        }
    }
}

/// Whether this machine has a GPU device node (/dev/nvidia0, /dev/dri/renderD*): without
/// one, smoke selects CPU-type Vulkan devices (lavapipe) itself.
pub fn has_gpu_device() -> bool {
    Path::new("/dev/nvidia0").exists()
        || fs::read_dir("/dev/dri")
            .map(|rd| {
                rd.flatten()
                    .any(|e| e.file_name().to_string_lossy().starts_with("renderD"))
            })
            .unwrap_or(false)
}

/// An io error with what smoke was doing.
fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> SmokeError {
    let what = what.into();
    move |source| SmokeError::Io { what, source }
}

impl From<crate::image::ImageError> for SmokeError {
    fn from(e: crate::image::ImageError) -> Self {
        SmokeError::Image(Box::new(e))
    }
}

static INTERRUPTED: AtomicBool = AtomicBool::new(false);

/// Ctrl-C stops the wait loops, so the server is stopped and temp files go on every path.
pub fn install_interrupt_handler() {
    let _ = ctrlc::set_handler(|| INTERRUPTED.store(true, Ordering::SeqCst));
}

fn check_interrupt() -> Result<(), SmokeError> {
    if INTERRUPTED.load(Ordering::SeqCst) {
        Err(SmokeError::Interrupted)
    } else {
        Ok(())
    }
}

/// What the smoke test runs.
pub enum SmokeTarget {
    /// A dist directory `build` made.
    Dist(PathBuf),
    /// An image: `ollama serve` in a container (the image's own CMD), its port published.
    Image { engine: Engine, image: String },
}

/// Label holding the era's `[smoke]` table in an image (how to switch Vulkan on and off).
pub const SMOKE_LABEL: &str = "io.ollama-vulkan.smoke";

pub struct SmokeRequest<'a> {
    pub target: SmokeTarget,
    pub cache: &'a Path,
    pub tokens: usize,
    /// Also prove the CPU fallback.
    pub cpu_fallback: bool,
    /// Select CPU-type Vulkan devices (lavapipe): needed when no GPU is present.
    pub select_cpu_device: bool,
    /// Run on this machine even if the dist was built in the builder root.
    pub on_host: bool,
    /// Extra environment for the server in every run (`--env`), after the era's own.
    pub extra_env: &'a [(String, String)],
}

#[derive(Debug, Serialize)]
pub struct Run {
    /// "vulkan" or "cpu".
    pub mode: String,
    pub eval_count: u64,
    pub tokens_per_s: f64,
    pub size: u64,
    pub size_vram: u64,
    /// The Vulkan device the server reported (by name), if any.
    pub device: Option<String>,
    /// "N/M" layers offloaded, from the runner's log.
    pub layers_offloaded: Option<String>,
    /// The log line that says why it runs on CPU (CPU mode).
    pub cpu_reason: Option<String>,
    /// Whether the server has `/api/ps` (Ollama v0.1.38+); without it size and size_vram
    /// are 0 and the log alone is the evidence.
    pub api_ps: bool,
    /// Our memory rule at work, from the log: the legacy probe's `Vulkan GPU` line
    /// (free and usable memory, fraction) or ggml-vulkan's Venus/fraction line.
    pub memory_rule: Option<String>,
    /// The image's HEALTHCHECK run once by the engine (`podman healthcheck run`):
    /// "healthy", or None for a dist or an image without one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub healthcheck: Option<String>,
    pub log: PathBuf,
}

#[derive(Debug, Serialize)]
pub struct Report {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dist: Option<PathBuf>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    pub tag: Option<String>,
    pub era: Option<String>,
    pub tokens: usize,
    pub runs: Vec<Run>,
}

/// The parts of the dist's manifest smoke needs.
struct DistInfo {
    tag: Option<String>,
    era: Option<String>,
    builder: Builder,
    smoke: Smoke,
}

fn read_dist(dist: &Path, on_host: bool) -> Result<DistInfo, SmokeError> {
    let bad = |why: String, help: &str| SmokeError::Dist {
        dist: dist.display().to_string(),
        why,
        help: help.into(),
    };
    if !dist.join("bin/ollama").is_file() {
        return Err(bad(
            "no bin/ollama here".into(),
            "pass the dist directory `build` printed (work/builds/<recipe>/dist)",
        ));
    }
    let m = crate::contract::Manifest::read(dist)?;
    let builder = match m.builder {
        // The dist runs in the root it was built in (its libc), unless asked otherwise.
        Builder::Root { path, suite, .. } if !on_host => Builder::Root {
            path,
            suite,
            packages: Vec::new(),
            binds: Vec::new(),
        },
        _ => Builder::Host,
    };
    if let Some(root) = builder.root() {
        if !root.join("usr/bin").is_dir() {
            return Err(bad(
                format!(
                    "it was built in the builder root {}, which is gone",
                    root.display()
                ),
                "rebuild (the root is remade), smoke-test the image, or pass --on-host where the libc is new enough",
            ));
        }
    }
    Ok(DistInfo {
        tag: m.recipe.tag,
        era: Some(m.recipe.era.label().to_string()),
        builder,
        smoke: m.smoke,
    })
}


/// A venv with `gguf` in the cache, made once (`OLLAMA_VULKAN_PYTHON` names a python that
/// already has it).
fn python(cache: &Path) -> Result<PathBuf, SmokeError> {
    if let Some(p) = std::env::var_os("OLLAMA_VULKAN_PYTHON") {
        return Ok(PathBuf::from(p));
    }
    let venv = cache.join("smoke-venv");
    let py = venv.join("bin/python");
    if py.is_file()
        && Command::new(&py)
            .args(["-c", "import gguf"])
            .output()
            .map(|o| o.status.success())
            .unwrap_or(false)
    {
        return Ok(py);
    }
    let run = |cmd: &mut Command, what: &str| -> Result<(), SmokeError> {
        let out = cmd.output().map_err(|e| SmokeError::Model {
            what: what.into(),
            detail: e.to_string(),
        })?;
        if !out.status.success() {
            return Err(SmokeError::Model {
                what: what.into(),
                detail: String::from_utf8_lossy(&out.stderr)
                    .lines()
                    .last()
                    .unwrap_or("")
                    .to_string(),
            });
        }
        Ok(())
    };
    crate::provision::ensure(&[crate::provision::PYTHON_VENV])?;
    let tmp = cache.join(format!(".smoke-venv-{}", std::process::id()));
    let _ = fs::remove_dir_all(&tmp);
    fs::create_dir_all(cache).map_err(io(format!("creating {}", cache.display())))?;
    crate::progress::note("making a Python venv with the `gguf` package (once)");
    run(
        Command::new("python3").args(["-m", "venv"]).arg(&tmp),
        "python3 -m venv",
    )?;
    run(
        Command::new(tmp.join("bin/pip")).args(["install", "-q", "gguf"]),
        "pip install gguf",
    )?;
    let _ = fs::remove_dir_all(&venv);
    fs::rename(&tmp, &venv).map_err(io(format!("moving the venv to {}", venv.display())))?;
    Ok(py)
}

/// Stops the server (SIGTERM, then SIGKILL) on every path; a container is removed.
struct Server {
    child: Option<Child>,
    container: Option<(Engine, String)>,
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

fn free_port() -> Result<u16, SmokeError> {
    let l = std::net::TcpListener::bind("127.0.0.1:0").map_err(io("finding a free port"))?;
    Ok(l.local_addr().map_err(io("finding a free port"))?.port())
}

/// Where `ollama serve` and `ollama create` run.
enum Runner<'a> {
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

/// The image's labels (the era's `[smoke]` table, its tag and era).
fn read_image(
    engine: &Engine,
    image: &str,
) -> Result<(Option<String>, Option<String>, Smoke), SmokeError> {
    let bad = |why: String| SmokeError::Dist {
        dist: image.into(),
        why,
        help: "build it with `ollama-vulkan image RECIPE` (check the name with `podman images`)"
            .into(),
    };
    let labels = serde_json::Value::Object(engine.labels(image)?.ok_or_else(|| {
        bad(format!(
            "no image {image} in {}'s local storage",
            engine.kind.name()
        ))
    })?);
    let smoke = match labels.get(SMOKE_LABEL).and_then(|v| v.as_str()) {
        Some(j) => serde_json::from_str(j).map_err(|e| bad(format!("label {SMOKE_LABEL}: {e}")))?,
        None => {
            return Err(bad(format!(
                "no {SMOKE_LABEL} label: not an image ollama-vulkan built, so how to switch Vulkan on is unknown"
            )))
        }
    };
    Ok((
        labels["org.opencontainers.image.version"]
            .as_str()
            .map(String::from),
        labels["io.ollama-vulkan.era"].as_str().map(String::from),
        smoke,
    ))
}

/// Runs the smoke test.
pub fn smoke(req: &SmokeRequest<'_>) -> Result<Report, SmokeError> {
    let (dist, info) = match &req.target {
        SmokeTarget::Dist(d) => {
            let dist = fs::canonicalize(d).map_err(|e| SmokeError::Dist {
                dist: d.display().to_string(),
                why: e.to_string(),
                help: "pass the dist directory `build` printed".into(),
            })?;
            let info = read_dist(&dist, req.on_host)?;
            (Some(dist), info)
        }
        SmokeTarget::Image { engine, image } => {
            let (tag, era, smoke) = read_image(engine, image)?;
            (
                None,
                DistInfo {
                    tag,
                    era,
                    builder: Builder::Host,
                    smoke,
                },
            )
        }
    };
    let work = tempfile::Builder::new()
        .prefix("ollama-vulkan-smoke-")
        .tempdir()
        .map_err(io("creating the smoke work dir"))?;
    let wdir = work.path().to_path_buf();
    let model = wdir.join("smoke.gguf");
    let py = python(req.cache)?;
    let script = wdir.join("make_model.py");
    fs::write(&script, MAKE_MODEL).map_err(io(format!("writing {}", script.display())))?;
    let out = Command::new(&py)
        .arg(&script)
        .arg(&model)
        .output()
        .map_err(|e| SmokeError::Model {
            what: format!("running {}", py.display()),
            detail: e.to_string(),
        })?;
    if !out.status.success() {
        return Err(SmokeError::Model {
            what: "make_model.py".into(),
            detail: String::from_utf8_lossy(&out.stderr).into_owned(),
        });
    }
    // In a container the work dir is /smoke, writable by an image's non-root user.
    let in_image = matches!(req.target, SmokeTarget::Image { .. });
    let seen = if in_image {
        PathBuf::from("/smoke")
    } else {
        wdir.clone()
    };
    if in_image {
        use std::os::unix::fs::PermissionsExt;
        for d in [wdir.clone(), wdir.join("models"), wdir.join("home")] {
            fs::create_dir_all(&d).map_err(io(format!("creating {}", d.display())))?;
            fs::set_permissions(&d, fs::Permissions::from_mode(0o777))
                .map_err(io(format!("opening {} to the container", d.display())))?;
        }
        fs::set_permissions(&model, fs::Permissions::from_mode(0o644))
            .map_err(io(format!("opening {} to the container", model.display())))?;
    }
    fs::write(
        wdir.join("Modelfile"),
        format!("FROM {}\n", seen.join("smoke.gguf").display()),
    )
    .map_err(io("writing the Modelfile"))?;
    let mut builder = info.builder.clone();
    // Server logs are kept (on success and failure: they are the evidence): next to the
    // dist (its parent is the build dir), or in the cache per image.
    let keep = match (&dist, &req.target) {
        (Some(d), _) => d.parent().unwrap_or(d).join("smoke"),
        (None, SmokeTarget::Image { image, .. }) => req.cache.join("smoke").join(
            image
                .chars()
                .map(|c| {
                    if c.is_ascii_alphanumeric() || c == '.' {
                        c
                    } else {
                        '-'
                    }
                })
                .collect::<String>(),
        ),
        (None, SmokeTarget::Dist(_)) => unreachable!(),
    };
    fs::create_dir_all(&keep).map_err(io(format!("creating {}", keep.display())))?;
    if let Some(d) = &dist {
        builder.bind(&[wdir.clone(), d.clone(), keep.clone()]);
    }
    let runner = match (&req.target, &dist) {
        (SmokeTarget::Dist(_), Some(d)) => Runner::Dist {
            builder: &builder,
            dist: d,
            wdir: &wdir,
        },
        (SmokeTarget::Image { engine, image }, _) => Runner::Image {
            engine,
            image,
            wdir: &wdir,
        },
        _ => unreachable!(),
    };
    let mut runs = Vec::new();
    let mut modes = vec!["vulkan"];
    if req.cpu_fallback {
        modes.push("cpu");
    }
    for mode in modes {
        check_interrupt()?;
        let mut env: BTreeMap<String, String> = BTreeMap::new();
        let port = free_port()?;
        // The server listens on loopback only, natively and in the container (which
        // shares the host's network: see run_mode).
        env.insert("OLLAMA_HOST".into(), format!("127.0.0.1:{port}"));
        env.insert(
            "OLLAMA_MODELS".into(),
            seen.join("models").display().to_string(),
        );
        env.insert("HOME".into(), seen.join("home").display().to_string());
        env.insert("OLLAMA_DEBUG".into(), "1".into());
        // No model stays loaded between the two runs' servers.
        env.insert("OLLAMA_KEEP_ALIVE".into(), "5m".into());
        if mode == "vulkan" {
            env.extend(info.smoke.vulkan_env.clone());
            if req.select_cpu_device {
                env.extend(info.smoke.select_cpu_device_env.clone());
            }
        } else {
            env.extend(info.smoke.cpu_env.clone());
        }
        env.extend(req.extra_env.iter().cloned());
        let _ = fs::create_dir_all(wdir.join("home"));
        let log = keep.join(format!("serve-{mode}.log"));
        runs.push(run_mode(
            &runner,
            &env,
            port,
            &log,
            mode,
            req.tokens,
            &info.smoke,
        )?);
    }
    Ok(Report {
        dist,
        image: match &req.target {
            SmokeTarget::Image { image, .. } => Some(image.clone()),
            SmokeTarget::Dist(_) => None,
        },
        tag: info.tag,
        era: info.era,
        tokens: req.tokens,
        runs,
    })
}

#[allow(clippy::too_many_arguments)]
fn run_mode(
    runner: &Runner<'_>,
    env: &BTreeMap<String, String>,
    port: u16,
    log: &Path,
    mode: &str,
    tokens: usize,
    smoke: &Smoke,
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
            args.extend(engine.run_flags());
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
    let generated = http::post(&base, "/api/generate", &body.to_string());
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
            return Err(fail(
                "not fully on the GPU",
                format!("/api/ps: size {size}, size_vram {size_vram} (must be equal and > 0)"),
            ));
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
fn code(st: std::process::ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (st.code(), st.signal()) {
        (Some(c), _) => c.to_string(),
        (None, Some(s)) => format!("on signal {s}"),
        _ => "?".into(),
    }
}

/// The engine's error in a container's log: its `Error: …` lines (podman's verdict), else
/// its `level=error`/`level=fatal` log lines, each once.
fn engine_error(log: &str) -> Option<String> {
    let pick = |f: &dyn Fn(&str) -> bool| {
        let mut lines: Vec<&str> = Vec::new();
        for l in log.lines().map(str::trim).filter(|l| f(l)) {
            if !lines.contains(&l) {
                lines.push(l);
            }
        }
        (!lines.is_empty()).then(|| lines.join("\n"))
    };
    pick(&|l| l.starts_with("Error:"))
        .or_else(|| pick(&|l| l.contains("level=error") || l.contains("level=fatal")))
}

fn find_device(log: &str) -> Option<String> {
    for l in log.lines() {
        if l.contains("inference compute") && l.contains("library=Vulkan") {
            if let Some(d) = field(l, "description") {
                return Some(d);
            }
        }
        // llama.cpp b3171–b3862: "Vulkan0: llvmpipe (LLVM 15.0.6, 256 bits) (llvmpipe) | uma: 0 | ..."
        if let Some(rest) = l.trim_start().strip_prefix("Vulkan") {
            if let Some((idx, name)) = rest.split_once(": ") {
                if !idx.is_empty()
                    && idx.chars().all(|c| c.is_ascii_digit())
                    && name.contains(" | uma: ")
                {
                    return Some(name.split(" | ").next().unwrap_or(name).trim().to_string());
                }
            }
        }
        // llama.cpp b1999: "ggml_vulkan: Using llvmpipe (LLVM 19.1.7, 256 bits) | fp16: 1 | …"
        if let Some(rest) = l.split("ggml_vulkan: Using ").nth(1) {
            return Some(rest.split(" | ").next().unwrap_or(rest).trim().to_string());
        }
        // ggml_vulkan: 0 = llvmpipe (LLVM 19.1.7, 256 bits) (llvmpipe) | uma: ...
        if let Some(rest) = l.split("ggml_vulkan: ").nth(1) {
            if let Some((idx, name)) = rest.split_once(" = ") {
                if idx.trim().chars().all(|c| c.is_ascii_digit()) {
                    return Some(name.split(" | ").next().unwrap_or(name).trim().to_string());
                }
            }
        }
    }
    None
}

/// The last report of our memory rule: the legacy probe's `msg="Vulkan GPU"` line
/// (eras 1a/1b) or ggml-vulkan's "reporting F of N free bytes" line (venus series).
fn find_memory_rule(log: &str) -> Option<String> {
    let mut found = None;
    for l in log.lines() {
        if l.contains("msg=\"Vulkan GPU\"") {
            if let (Some(name), Some(free), Some(usable), Some(f)) = (
                field(l, "name"),
                field(l, "free"),
                field(l, "usable"),
                field(l, "memory_fraction"),
            ) {
                found = Some(format!(
                    "{name}: free {free}, usable {usable} (fraction {f})"
                ));
            }
        }
        if let Some(rest) = l.split("ggml_vulkan: ").nth(1) {
            if rest.contains(": reporting ") && rest.contains(" free bytes as free: ") {
                found = Some(rest.trim().to_string());
            }
        }
    }
    found
}

/// `key="value"` or `key=value` in a logfmt line.
fn field(line: &str, key: &str) -> Option<String> {
    let start = line.find(&format!("{key}="))? + key.len() + 1;
    let rest = &line[start..];
    if let Some(q) = rest.strip_prefix('"') {
        q.split('"').next().map(String::from)
    } else {
        rest.split_whitespace().next().map(String::from)
    }
}

/// "3/3" from "offloaded 3/3 layers to GPU" (llama.cpp) or Ollama's
/// `layers.offload=3 ... layers.model=3`.
fn find_offload(log: &str) -> Option<String> {
    let mut found = None;
    for l in log.lines() {
        if let Some(rest) = l.split("offloaded ").nth(1) {
            if let Some(frac) = rest.split_whitespace().next() {
                if frac.contains('/') && rest.contains("layers to GPU") {
                    found = Some(frac.to_string());
                }
            }
        }
        if let (Some(o), Some(m)) = (field(l, "layers.offload"), field(l, "layers.model")) {
            found = Some(format!("{o}/{m}"));
        }
    }
    found
}

pub fn render(r: &Report) -> String {
    use std::fmt::Write;
    let mut s = format!(
        "smoke {} (era {}{}): {} tokens per run\n",
        r.tag.as_deref().unwrap_or("?"),
        r.era.as_deref().unwrap_or("?"),
        r.image
            .as_deref()
            .map(|i| format!(", image {i}"))
            .unwrap_or_default(),
        r.tokens
    );
    for run in &r.runs {
        let _ = writeln!(
            s,
            "  {:<6} ok  {} tokens, {:.1} tokens/s, {}{}{}{}{}{}",
            run.mode,
            run.eval_count,
            run.tokens_per_s,
            if run.api_ps {
                format!(
                    "size {} MB, in VRAM {} MB",
                    run.size / 1_000_000,
                    run.size_vram / 1_000_000
                )
            } else {
                "no /api/ps (before v0.1.38): evidence from the log".to_string()
            },
            run.device
                .as_deref()
                .map(|d| format!(", device {d}"))
                .unwrap_or_default(),
            run.layers_offloaded
                .as_deref()
                .map(|l| format!(", layers offloaded {l}"))
                .unwrap_or_default(),
            run.healthcheck
                .as_deref()
                .map(|h| format!(", HEALTHCHECK {h}"))
                .unwrap_or_default(),
            run.cpu_reason
                .as_deref()
                .map(|c| format!("\n         why CPU: {c}"))
                .unwrap_or_default(),
            run.memory_rule
                .as_deref()
                .map(|m| format!("\n         memory rule: {m}"))
                .unwrap_or_default(),
        );
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    // Lines from real server logs (v0.1.48 with our legacy series on lavapipe).
    const LEGACY: &str = r#"time=2026-11-25T23:14:44.913Z level=INFO source=gpu_vulkan.go:123 msg="Vulkan GPU" id=0 name="llvmpipe (LLVM 19.1.7, 256 bits)" type=cpu vendor=0x10005 device=0x0000 total="23.5 GiB" free="21.7 GiB" usable="16.3 GiB" memory_fraction=0.75 budget=true
ggml_vulkan: Found 1 Vulkan devices:
Vulkan0: llvmpipe (LLVM 19.1.7, 256 bits) (llvmpipe) | uma: 0 | fp16: 1 | warp size: 8
llm_load_tensors: offloaded 3/3 layers to GPU
"#;

    #[test]
    fn legacy_logs_give_device_offload_and_memory_rule() {
        assert_eq!(
            find_device(LEGACY).as_deref(),
            Some("llvmpipe (LLVM 19.1.7, 256 bits) (llvmpipe)")
        );
        assert_eq!(find_offload(LEGACY).as_deref(), Some("3/3"));
        assert_eq!(
            find_memory_rule(LEGACY).as_deref(),
            Some(
                "llvmpipe (LLVM 19.1.7, 256 bits): free 21.7 GiB, usable 16.3 GiB (fraction 0.75)"
            )
        );
    }

    #[test]
    fn era_1a_device_line() {
        let log = "loading library /tmp/x/vulkan/libext_server.so\nggml_vulkan: Using llvmpipe (LLVM 19.1.7, 256 bits) | fp16: 1 | warp size: 8\n";
        assert_eq!(
            find_device(log).as_deref(),
            Some("llvmpipe (LLVM 19.1.7, 256 bits)")
        );
    }

    #[test]
    fn the_engines_verdict_is_quoted_not_its_noise() {
        let log = "time=\"x\" level=error msg=\"Removing timer for container c healthcheck: unable to get systemd connection\"\nError: OCI runtime error: crun: cgroups in hybrid mode not supported, drop all controllers from cgroupv2\ntime=\"x\" level=error msg=\"Removing timer\"\nError: OCI runtime error: crun: cgroups in hybrid mode not supported, drop all controllers from cgroupv2\n";
        assert_eq!(
            super::engine_error(log).as_deref(),
            Some("Error: OCI runtime error: crun: cgroups in hybrid mode not supported, drop all controllers from cgroupv2")
        );
        assert_eq!(
            super::engine_error(
                "time=\"x\" level=fatal msg=\"netavark: No such file or directory (os error 2)\"\n"
            )
            .as_deref(),
            Some("time=\"x\" level=fatal msg=\"netavark: No such file or directory (os error 2)\"")
        );
        assert_eq!(super::engine_error("time=x level=info msg=ok\n"), None);
    }

    #[test]
    fn venus_line_is_the_memory_rule() {
        let log = "ggml_vulkan: llvmpipe (LLVM 19.1.7, 256 bits): reporting 0.50 of 1000 free bytes as free: 500\n";
        assert_eq!(
            find_memory_rule(log).as_deref(),
            Some(
                "llvmpipe (LLVM 19.1.7, 256 bits): reporting 0.50 of 1000 free bytes as free: 500"
            )
        );
        assert_eq!(find_device(log), None, "not a device report");
        // "Vulkan0:" alone, without the device report's fields, is no device either.
        assert_eq!(find_device("Vulkan0: buffer size = 5 MiB\n"), None);
    }
}
