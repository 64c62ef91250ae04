//! Provisioning: the host packages a stage needs, installed on demand.
//!
//! A stage names what it needs as [`Need`]s (a command, the Debian package that ships
//! it, why). [`ensure`] installs the missing ones with apt-get when the tool runs as root
//! on Debian or Ubuntu, announces that in one line on stderr and appends a record to
//! `provisioned.jsonl` in the cache. With `--no-install` (or `OLLAMA_VULKAN_NO_INSTALL=1`),
//! not root, or not Debian, a missing command is an error that names the exact install
//! command. Every external program the tool runs on the host is listed in [`TOOLS`]: the
//! test suite checks that `.ci/run` installs each one the tests reach.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

use serde::Serialize;

/// One host program a stage runs, and the Debian package that ships it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Need {
    /// Any of these on PATH satisfies the need (e.g. `runc` or `crun`); none: the
    /// probe alone decides (a header, a library).
    pub commands: &'static [&'static str],
    /// Installed when none is found.
    pub package: &'static str,
    /// Shown in the announcement and in errors.
    pub why: &'static str,
    /// A command line that must also succeed (a module python3 must have).
    pub probe: Option<&'static [&'static str]>,
}

const fn need(command: &'static [&'static str], package: &'static str, why: &'static str) -> Need {
    Need {
        commands: command,
        package,
        why,
        probe: None,
    }
}

pub const MMDEBSTRAP: Need = need(
    &["mmdebstrap"],
    "mmdebstrap",
    "the Debian trixie builder root and the base images are made with it",
);
pub const QEMU_USER: Need = need(
    &["qemu-aarch64-static"],
    "qemu-user-static",
    "arm64 roots and images run under qemu-user on this amd64 machine",
);
pub const BINFMT_SUPPORT: Need = need(
    &["update-binfmts"],
    "binfmt-support",
    "qemu-user is registered with the kernel's binfmt_misc through it",
);
pub const ARCH_TEST: Need = need(
    &["arch-test"],
    "arch-test",
    "mmdebstrap checks with it that a foreign architecture's binaries run",
);
pub const PODMAN: Need = need(
    &["podman"],
    "podman",
    "images are built and run with it, without a registry or daemon",
);
pub const BUILDAH: Need = need(&["buildah"], "buildah", "`--engine buildah` builds with it");
/// podman's OCI runtime: `podman run` needs one, `build --isolation chroot` does not.
/// runc, not crun: crun refuses hosts with cgroup v1 or hybrid hierarchies ("cgroups in
/// hybrid mode not supported"), and podman's `crun | runc` dependency picks crun unless
/// runc is installed with it.
pub const OCI_RUNTIME: Need = need(
    &["runc"],
    "runc",
    "podman starts containers with it (crun cannot on cgroup v1/hybrid hosts)",
);
pub const PYTHON_VENV: Need = Need {
    commands: &["python3"],
    package: "python3-venv",
    why: "the smoke test writes its model with the PyPI package gguf in a venv",
    probe: Some(&["python3", "-c", "import ensurepip, venv"]),
};
pub const VULKAN_HEADERS: Need = Need {
    commands: &[],
    package: "libvulkan-dev",
    why: "the host builder compiles ggml-vulkan against the Vulkan headers",
    probe: Some(&["test", "-e", "/usr/include/vulkan/vulkan.h"]),
};
pub const GIT: Need = need(
    &["git"],
    "git",
    "upstreams are fetched with git (every transport users have set up)",
);

/// Every program the tool runs on the host, with its package: one table that the
/// provisioning, `doctor` and the CI coverage test read. Programs run only inside the
/// builder root are the templates' business (`builder_packages`), not this table's.
pub const TOOLS: &[Need] = &[
    GIT,
    need(
        &["apt-get"],
        "apt",
        "missing host packages are installed with it",
    ),
    MMDEBSTRAP,
    QEMU_USER,
    BINFMT_SUPPORT,
    ARCH_TEST,
    need(
        &["mount"],
        "mount",
        "binfmt_misc is mounted with it when a foreign architecture needs qemu-user",
    ),
    PODMAN,
    BUILDAH,
    OCI_RUNTIME,
    PYTHON_VENV,
    need(
        &["docker"],
        "docker.io",
        "`--engine docker` (optional; needs a daemon)",
    ),
    need(
        &["unshare"],
        "util-linux",
        "the builder root is entered with it",
    ),
    need(
        &["chroot"],
        "coreutils",
        "the builder root is entered with it",
    ),
    need(
        &["ldd"],
        "libc-bin",
        "the library check of a dist (host builder)",
    ),
    // The host builder's toolchain (`--builder host`; `doctor` checks versions).
    need(&["cmake"], "cmake", "the host builder configures with it"),
    need(
        &["go"],
        "golang-go",
        "the host builder compiles Ollama with it",
    ),
    need(
        &["glslc"],
        "glslc",
        "ggml-vulkan's shaders are compiled with it",
    ),
    need(&["ccache"], "ccache", "rebuilds reuse objects (optional)"),
    need(&["g++"], "g++", "the host builder compiles C++ with it"),
    VULKAN_HEADERS,
    need(
        &["python3"],
        "python3",
        "legacy shader headers are generated with the pin's own script",
    ),
];

/// Whether a missing package may be installed.
#[derive(Debug, Clone)]
pub struct Policy {
    pub install: bool,
    /// Where installs are recorded (`provisioned.jsonl`) and apt's output is kept.
    pub cache: PathBuf,
}

static POLICY: OnceLock<Policy> = OnceLock::new();
static INSTALLED: Mutex<Vec<String>> = Mutex::new(Vec::new());

/// Set once by the binary from `--no-install` and `--cache-dir`.
pub fn set_policy(p: Policy) {
    let _ = POLICY.set(p);
}

fn policy() -> Policy {
    POLICY.get().cloned().unwrap_or_else(|| Policy {
        install: false,
        cache: crate::project::default_cache_dir(),
    })
}

/// Whether this run may change the host (install packages, make base images).
pub fn may_install() -> bool {
    policy().install
}

/// Packages this process installed (for reports).
pub fn installed() -> Vec<String> {
    INSTALLED.lock().map(|v| v.clone()).unwrap_or_default()
}

#[derive(Debug, thiserror::Error)]
pub enum ProvisionError {
    #[error("{} {} not installed ({})\n  help: {}", list(missing), if missing.len() == 1 { "is" } else { "are" }, whys(missing), fix)]
    Missing { missing: Vec<Need>, fix: String },
    #[error("{0}")]
    Apt(Box<AptFailure>),
    /// The kernel cannot run the architecture's binaries and this run may not fix it.
    #[error("{arch} binaries cannot run here: {why}\n  help: {fix}")]
    Binfmt {
        arch: String,
        why: String,
        fix: String,
    },
    #[error("{what}: {source}")]
    Io {
        what: String,
        source: std::io::Error,
    },
}

impl crate::error::HasKind for ProvisionError {
    fn kind(&self) -> crate::error::Kind {
        crate::error::Kind::Failure
    }
}

#[derive(Debug, thiserror::Error)]
#[error("installing {} with apt-get failed:\n{tail}\n  help: run `{command}` yourself (full output in {})", packages.join(" "), log.display())]
pub struct AptFailure {
    pub packages: Vec<String>,
    pub command: String,
    pub log: PathBuf,
    pub tail: String,
}

fn list(n: &[Need]) -> String {
    n.iter()
        .map(|n| {
            if n.commands.is_empty() {
                n.package.to_string()
            } else {
                n.commands.join("/")
            }
        })
        .collect::<Vec<_>>()
        .join(", ")
}

fn whys(n: &[Need]) -> String {
    n.iter().map(|n| n.why).collect::<Vec<_>>().join("; ")
}

pub fn on_path(name: &str) -> bool {
    crate::build::builder::which_in(None, &std::env::var("PATH").unwrap_or_default(), name)
        .is_some()
}

/// Whether this need is met on this machine now.
pub fn satisfied(n: &Need) -> bool {
    (n.commands.is_empty() || n.commands.iter().any(|c| on_path(c)))
        && n.probe.is_none_or(|argv| {
            std::process::Command::new(argv[0])
                .args(&argv[1..])
                .stdin(std::process::Stdio::null())
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .status()
                .map(|s| s.success())
                .unwrap_or(false)
        })
}

fn apt_command(pkgs: &[String]) -> String {
    format!(
        "apt-get install -y --no-install-recommends {}",
        pkgs.join(" ")
    )
}

/// Why this machine cannot install by itself, if it cannot.
fn cannot_install(p: &Policy) -> Option<&'static str> {
    if !p.install {
        return Some("--no-install");
    }
    if !crate::build::builder::is_root_user() {
        return Some("not root");
    }
    if !crate::build::builder::is_debian_like() || !on_path("apt-get") {
        return Some("not Debian/Ubuntu");
    }
    None
}

/// The binfmt_misc handler that runs `arch` binaries under qemu-user: `aarch64` for arm64.
fn binfmt_name(arch: &str) -> Option<&'static str> {
    match arch {
        "arm64" | "aarch64" => Some("qemu-aarch64"),
        _ => None,
    }
}

/// Makes the kernel run `arch` binaries (arm64 roots and images on an amd64 host): the
/// qemu-user packages, binfmt_misc mounted, the handler enabled. Changes to the host are
/// announced and follow the install policy (`--no-install` refuses, naming the commands).
pub fn ensure_foreign(arch: &str) -> Result<(), ProvisionError> {
    let Some(handler) = binfmt_name(arch) else {
        return Ok(()); // the host's own architecture
    };
    let dir = Path::new("/proc/sys/fs/binfmt_misc");
    let enabled = || {
        std::fs::read_to_string(dir.join(handler))
            .map(|t| t.lines().next() == Some("enabled"))
            .unwrap_or(false)
    };
    ensure(&[QEMU_USER, BINFMT_SUPPORT, ARCH_TEST])?;
    if enabled() {
        return Ok(());
    }
    let fix = format!(
        "mount -t binfmt_misc binfmt_misc {} && update-binfmts --enable {handler}",
        dir.display()
    );
    if let Some(why) = cannot_install(&policy()) {
        return Err(ProvisionError::Binfmt {
            arch: arch.into(),
            why: format!("the {handler} binfmt_misc handler is not enabled ({why})"),
            fix: if why == "not root" {
                format!("sudo sh -c '{fix}'")
            } else {
                fix
            },
        });
    }
    crate::progress::note(&format!(
        "enabling {handler} in binfmt_misc: {arch} binaries run under qemu-user (--no-install to refuse)"
    ));
    let run = |argv: &[&str]| {
        std::process::Command::new(argv[0])
            .args(&argv[1..])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .output()
    };
    if !dir.join("status").exists() {
        let _ = run(&[
            "mount",
            "-t",
            "binfmt_misc",
            "binfmt_misc",
            "/proc/sys/fs/binfmt_misc",
        ]);
    }
    let out = run(&["update-binfmts", "--enable", handler]);
    if enabled() {
        return Ok(());
    }
    Err(ProvisionError::Binfmt {
        arch: arch.into(),
        why: format!(
            "{handler} is still not enabled after `{fix}`{}",
            out.ok()
                .map(|o| String::from_utf8_lossy(&o.stderr).trim().to_string())
                .filter(|e| !e.is_empty())
                .map(|e| format!(": {e}"))
                .unwrap_or_default()
        ),
        fix: "a container may not be allowed to mount binfmt_misc: enable the handler on the host"
            .into(),
    })
}

/// Makes every need met, installing the missing packages when allowed. Returns the
/// packages installed (empty when nothing was missing).
pub fn ensure(needs: &[Need]) -> Result<Vec<String>, ProvisionError> {
    let missing: Vec<Need> = needs.iter().filter(|n| !satisfied(n)).copied().collect();
    if missing.is_empty() {
        return Ok(Vec::new());
    }
    let mut pkgs: Vec<String> = missing.iter().map(|n| n.package.to_string()).collect();
    pkgs.dedup();
    let p = policy();
    if let Some(why) = cannot_install(&p) {
        let cmd = apt_command(&pkgs);
        let fix = match why {
            "--no-install" => format!("{cmd} (or run without --no-install: the tool installs them itself as root on Debian/Ubuntu)"),
            "not root" => format!("sudo {cmd}"),
            _ => format!("install {} with your package manager (on Debian/Ubuntu: {cmd})", pkgs.join(" ")),
        };
        return Err(ProvisionError::Missing { missing, fix });
    }
    crate::progress::note(&format!(
        "installing {} with apt-get: {} (--no-install to refuse)",
        pkgs.join(" "),
        whys(&missing)
    ));
    let logs = p.cache.join("logs");
    std::fs::create_dir_all(&logs).map_err(|e| ProvisionError::Io {
        what: format!("creating {}", logs.display()),
        source: e,
    })?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let log = logs.join(format!("apt-{now}-{}.log", std::process::id()));
    let started = std::time::Instant::now();
    // A machine whose package lists were never fetched knows no package: update first.
    let mut updated = false;
    if !has_package_lists() {
        apt(&["update"], &log)?;
        updated = true;
    }
    let mut args = vec![
        "install",
        "-y",
        "--no-install-recommends",
        "-o",
        "DPkg::Lock::Timeout=600",
    ];
    args.extend(pkgs.iter().map(String::as_str));
    if !apt(&args, &log)? && !updated {
        // Stale lists (a package moved to a new version): update once and retry.
        apt(&["update"], &log)?;
        apt(&args, &log)?;
    }
    let still: Vec<Need> = missing.iter().filter(|n| !satisfied(n)).copied().collect();
    if !still.is_empty() {
        return Err(ProvisionError::Apt(Box::new(AptFailure {
            packages: pkgs.clone(),
            command: apt_command(&pkgs),
            tail: format!(
                "{}\n(after apt-get, still missing: {})",
                crate::fsutil::tail_file(&log, 15),
                list(&still)
            ),
            log,
        })));
    }
    record(&p.cache, &pkgs, &missing, started.elapsed().as_secs_f64());
    if let Ok(mut v) = INSTALLED.lock() {
        v.extend(pkgs.iter().cloned());
    }
    Ok(pkgs)
}

fn has_package_lists() -> bool {
    std::fs::read_dir("/var/lib/apt/lists")
        .map(|rd| {
            rd.flatten()
                .any(|e| e.file_name().to_string_lossy().ends_with("_Packages"))
        })
        .unwrap_or(false)
}

/// Runs apt-get with its output appended to `log`; Ok(false) when apt-get failed.
fn apt(args: &[&str], log: &Path) -> Result<bool, ProvisionError> {
    let io = |e: std::io::Error| ProvisionError::Io {
        what: format!("writing {}", log.display()),
        source: e,
    };
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .map_err(io)?;
    let _ = writeln!(f, "$ apt-get {}", args.join(" "));
    let f2 = f.try_clone().map_err(io)?;
    let status = std::process::Command::new("apt-get")
        .args(args)
        .env("DEBIAN_FRONTEND", "noninteractive")
        .stdin(std::process::Stdio::null())
        .stdout(f)
        .stderr(f2)
        .status()
        .map_err(|e| ProvisionError::Io {
            what: "running apt-get".into(),
            source: e,
        })?;
    Ok(status.success())
}

#[derive(Serialize)]
struct Record<'a> {
    unix_time: u64,
    packages: &'a [String],
    commands: Vec<&'a str>,
    why: String,
    seconds: f64,
    tool_version: &'static str,
}

/// One JSON line per install in `provisioned.jsonl`: what the tool changed on this host.
fn record(cache: &Path, pkgs: &[String], needs: &[Need], seconds: f64) {
    let rec = Record {
        unix_time: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0),
        packages: pkgs,
        commands: needs
            .iter()
            .flat_map(|n| n.commands.iter().copied())
            .collect(),
        why: whys(needs),
        seconds,
        tool_version: env!("CARGO_PKG_VERSION"),
    };
    let path = cache.join("provisioned.jsonl");
    if let Ok(mut f) = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
    {
        if let Ok(line) = serde_json::to_string(&rec) {
            let _ = writeln!(f, "{line}");
        }
    }
}
