//! The smoke stage: a built dist generates tokens through Vulkan, proven from the server
//! itself (its API and its log), and falls back to CPU when Vulkan is switched off.
//!
//! A tiny llama GGUF with random weights is made locally with the PyPI `gguf` package (in
//! a venv in the cache), `ollama serve` runs from the dist — inside the builder root when
//! the dist was built there, since its binaries need that root's libc — on a free loopback
//! port with a private OLLAMA_MODELS and HOME, and the tool talks HTTP to it directly.

mod dist;
mod http;
mod log;
mod server;

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

use dist::*;
use log::*;
use server::*;

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
    #[error(transparent)]
    Venus(#[from] crate::venus::VenusError),
}

impl crate::error::HasKind for SmokeError {
    fn kind(&self) -> crate::error::Kind {
        use crate::error::Kind;
        match self {
            SmokeError::Dist { .. } | SmokeError::Manifest(_) => Kind::BadInput,
            // Smoke's own engine and base problems are failures of the run, whatever
            // their kind was when `image` met them.
            SmokeError::Provision(e) => e.kind(),
            SmokeError::Venus(e) => e.kind(),
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
    /// Prove the Vulkan run (false: the CPU run alone).
    pub vulkan: bool,
    /// Select CPU-type Vulkan devices (lavapipe): needed when no GPU is present.
    pub select_cpu_device: bool,
    /// Run on this machine even if the dist was built in the builder root.
    pub on_host: bool,
    /// Extra environment for the server in every run (`--env`), after the era's own.
    pub extra_env: &'a [(String, String)],
    /// Run the Vulkan mode on a Venus device (the lab's vtest server) instead.
    pub venus: Option<&'a Venus>,
}

/// `smoke --venus`: the lab and the host driver behind the Venus device.
pub struct Venus {
    pub lab: crate::venus::Lab,
    pub host_icd: PathBuf,
}

/// What the report says of the Venus device's stack.
#[derive(Debug, Serialize)]
pub struct VenusReport {
    pub mesa: String,
    pub virglrenderer: String,
    pub server: crate::venus::ServerChoice,
    pub host_icd: PathBuf,
    /// The vtest server refused blobs that are not a multiple of this many bytes, as
    /// krunkit's host does (`--venus-krunkit-host`, `--venus-mesa krunkit`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub blob_alignment: Option<u64>,
    /// The vtest server's log (kept next to the server logs).
    pub log: PathBuf,
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
    #[serde(skip_serializing_if = "Option::is_none")]
    pub venus: Option<VenusReport>,
    pub runs: Vec<Run>,
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
    // On Venus the dist runs in the lab root (Mesa's Venus driver); it was built in the
    // builder root, whose packages the lab root holds too.
    let mut builder = match (req.venus, &req.target) {
        (Some(v), SmokeTarget::Dist(_)) => v.lab.root.clone(),
        _ => info.builder.clone(),
    };
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
    // One vtest server for the run, stopped (with its render server) on every path.
    let vtest = match req.venus {
        Some(v) => Some(crate::venus::VtestServer::start(
            &v.lab,
            &v.host_icd,
            &wdir,
            &keep.join("vtest.log"),
        )?),
        None => None,
    };
    let mut runs = Vec::new();
    let mut modes = Vec::new();
    if req.vulkan {
        modes.push("vulkan");
    }
    if req.cpu_fallback || !req.vulkan {
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
            if let Some(server) = &vtest {
                for (k, v) in server.client_env() {
                    // The socket is in the work dir, which a container sees as /smoke.
                    let v = if in_image {
                        v.replace(&wdir.display().to_string(), &seen.display().to_string())
                    } else {
                        v
                    };
                    env.insert(k, v);
                }
            }
        } else {
            env.extend(info.smoke.cpu_env.clone());
        }
        env.extend(req.extra_env.iter().cloned());
        let _ = fs::create_dir_all(wdir.join("home"));
        let log = keep.join(format!("serve-{mode}.log"));
        let run = run_mode(
            &runner,
            &env,
            port,
            &log,
            mode,
            req.tokens,
            &info.smoke,
            vtest.is_some(),
        );
        // A Venus run that failed: what the vtest server refused is the likelier cause
        // (e.g. a blob krunkit's host would not map, --venus-krunkit-host).
        let run = match (run, &vtest) {
            (
                Err(SmokeError::Failed {
                    what,
                    why,
                    log,
                    tail,
                }),
                Some(server),
            ) if !server.failures().is_empty() => Err(SmokeError::Failed {
                what,
                why: format!(
                    "{why}; the Venus vtest server refused: {} (log {})",
                    server.failures().join(" / "),
                    server.log.display()
                ),
                log,
                tail,
            }),
            (run, _) => run,
        };
        runs.push(run?);
        if let (Some(server), "vulkan") = (&vtest, mode) {
            if let Some(first) = server.failures().first() {
                return Err(SmokeError::Failed {
                    what: "vulkan: the Venus vtest server".into(),
                    why: format!("it refused a request: {first}"),
                    log: server.log.display().to_string(),
                    tail: crate::fsutil::tail_file(&server.log, 15),
                });
            }
        }
    }
    let venus = match (req.venus, &vtest) {
        (Some(v), Some(server)) => Some(VenusReport {
            mesa: v.lab.versions.mesa.clone(),
            virglrenderer: v.lab.versions.virglrenderer.clone(),
            server: v.lab.server,
            host_icd: v.host_icd.clone(),
            blob_alignment: v
                .lab
                .env
                .get("VTEST_BLOB_ALIGNMENT")
                .and_then(|a| a.parse().ok()),
            log: server.log.clone(),
        }),
        _ => None,
    };
    drop(vtest);
    Ok(Report {
        dist,
        image: match &req.target {
            SmokeTarget::Image { image, .. } => Some(image.clone()),
            SmokeTarget::Dist(_) => None,
        },
        tag: info.tag,
        era: info.era,
        tokens: req.tokens,
        venus,
        runs,
    })
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
    if let Some(v) = &r.venus {
        let _ = writeln!(
            s,
            "  venus  Mesa {}, virglrenderer {}, host driver {}{}",
            v.mesa,
            v.virglrenderer,
            v.host_icd.display(),
            v.blob_alignment
                .map(|a| format!(", blobs in {a}-byte pages (krunkit's host)"))
                .unwrap_or_default()
        );
    }
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
