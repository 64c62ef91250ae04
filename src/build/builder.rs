//! Where compile steps run: the host's toolchain, or a Debian trixie root made with
//! mmdebstrap (bookworm's Vulkan headers and glslc are too old for ggml-vulkan from
//! v0.15.0; VULKAN-BUILD.md). The root is entered with chroot inside a private mount
//! namespace (`unshare --mount`): the build directory, the caches and the host's Go are
//! bind-mounted at their own absolute paths, so every path in steps, logs and manifests is
//! the same in both builders, and the mounts vanish with the process even on kill -9.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use serde::Serialize;

use super::BuildError;
use crate::target::Arch;

/// A program, its arguments, and where and with what environment to run it.
struct Invocation {
    program: String,
    args: Vec<String>,
    cwd: Option<PathBuf>,
    env: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum BuilderChoice {
    /// The trixie root on Debian/Ubuntu hosts (as root), else the host.
    Auto,
    /// The host's go, cmake, compilers, glslc and Vulkan headers.
    Host,
    /// A Debian trixie root made with mmdebstrap, entered with chroot.
    Root,
}

#[derive(Debug, Clone, Serialize, serde::Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Builder {
    Host,
    Root {
        path: PathBuf,
        suite: String,
        /// The architecture the root's compilers target (a cross root holds both).
        #[serde(default = "crate::target::Arch::host")]
        target: Arch,
        packages: Vec<String>,
        /// Host directories visible inside at the same path.
        #[serde(skip)]
        binds: Vec<PathBuf>,
    },
}

const SUITE: &str = "trixie";

/// Host settings a build in the root still needs: proxies, Go's module settings, CAs.
const FORWARDED_ENV: &[&str] = &[
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "NO_PROXY",
    "http_proxy",
    "https_proxy",
    "no_proxy",
    "GOPROXY",
    "GOSUMDB",
    "GONOSUMDB",
    "GOPRIVATE",
    "GONOPROXY",
    "GOINSECURE",
    "GOFLAGS",
    "GOTOOLCHAIN",
    "SSL_CERT_FILE",
    "SSL_CERT_DIR",
];
const ROOT_PATH: &str =
    "/usr/local/go/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

pub fn is_debian_like() -> bool {
    fs::read_to_string("/etc/os-release")
        .map(|t| {
            t.lines().any(|l| {
                l.starts_with("ID=debian")
                    || l.starts_with("ID=ubuntu")
                    || l.starts_with("ID_LIKE=debian")
            })
        })
        .unwrap_or(false)
}

pub fn is_root_user() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc_geteuid() == 0 }
}

extern "C" {
    #[link_name = "geteuid"]
    fn libc_geteuid() -> u32;
}

/// Resolves `name` on `path_var` (a PATH value), inside `root` when given.
pub fn which_in(root: Option<&Path>, path_var: &str, name: &str) -> Option<PathBuf> {
    for dir in path_var.split(':').filter(|d| !d.is_empty()) {
        let inside = Path::new(dir).join(name);
        let real = match root {
            Some(r) => r.join(inside.strip_prefix("/").unwrap_or(&inside)),
            None => inside.clone(),
        };
        if let Ok(m) = fs::metadata(&real) {
            use std::os::unix::fs::PermissionsExt;
            if m.is_file() && m.permissions().mode() & 0o111 != 0 {
                return Some(inside);
            }
        }
    }
    None
}

/// The host's GOROOT, found from `go` on PATH without running it.
pub fn host_goroot() -> Option<PathBuf> {
    let go = which_in(None, &std::env::var("PATH").unwrap_or_default(), "go")?;
    let real = fs::canonicalize(go).ok()?;
    real.parent()?.parent().map(Path::to_path_buf)
}

impl Builder {
    pub fn id(&self) -> String {
        match self {
            Builder::Host => "host".into(),
            Builder::Root { path, .. } => format!("root:{}", path.display()),
        }
    }

    /// The PATH steps see.
    pub fn path_var(&self) -> String {
        match self {
            Builder::Host => std::env::var("PATH").unwrap_or_default(),
            Builder::Root { .. } => ROOT_PATH.into(),
        }
    }

    pub fn root(&self) -> Option<&Path> {
        match self {
            Builder::Host => None,
            Builder::Root { path, .. } => Some(path),
        }
    }

    /// A tool's path as the builder sees it.
    pub fn which(&self, name: &str) -> Option<PathBuf> {
        let found = which_in(self.root(), &self.path_var(), name);
        if found.is_none() && name == "go" {
            // The host's Go is bind-mounted into the root at its own path.
            if let (Builder::Root { .. }, Some(goroot)) = (self, host_goroot()) {
                let go = goroot.join("bin/go");
                return go.is_file().then_some(go);
            }
        }
        found
    }

    /// The host path of a path inside the builder (for reading files the steps wrote).
    pub fn host_path(&self, p: &Path) -> PathBuf {
        match self {
            Builder::Root { path, binds, .. } if !binds.iter().any(|b| p.starts_with(b)) => {
                path.join(p.strip_prefix("/").unwrap_or(p))
            }
            _ => p.to_path_buf(),
        }
    }

    /// Adds host directories the steps need (build dir, caches).
    pub fn bind(&mut self, dirs: &[PathBuf]) {
        if let Builder::Root { binds, .. } = self {
            for d in dirs {
                if !binds.contains(d) {
                    binds.push(d.clone());
                }
            }
        }
    }

    /// The command for `argv` in `cwd` with `env` (the host builder inherits the rest of
    /// the environment; the root gets exactly `env` plus PATH, HOME, LANG and the forwarded
    /// host settings).
    pub fn command(
        &self,
        argv: &[String],
        cwd: &Path,
        env: &BTreeMap<String, String>,
    ) -> duct::Expression {
        let inv = self.invocation(argv, cwd, env);
        let mut cmd = duct::cmd(&inv.program, &inv.args);
        if let Some(d) = &inv.cwd {
            cmd = cmd.dir(d);
        }
        for (k, v) in &inv.env {
            cmd = cmd.env(k, v);
        }
        cmd
    }

    /// The same as a `std::process::Command` (for long-running children the caller
    /// signals itself, e.g. a server).
    pub fn std_command(
        &self,
        argv: &[String],
        cwd: &Path,
        env: &BTreeMap<String, String>,
    ) -> std::process::Command {
        let inv = self.invocation(argv, cwd, env);
        let mut cmd = std::process::Command::new(&inv.program);
        cmd.args(&inv.args).envs(&inv.env);
        if let Some(d) = &inv.cwd {
            cmd.current_dir(d);
        }
        cmd
    }

    fn invocation(
        &self,
        argv: &[String],
        cwd: &Path,
        env: &BTreeMap<String, String>,
    ) -> Invocation {
        match self {
            Builder::Host => Invocation {
                program: argv[0].clone(),
                args: argv[1..].to_vec(),
                cwd: Some(cwd.to_path_buf()),
                env: env.clone(),
            },
            Builder::Root { path, binds, .. } => {
                let mut binds = binds.clone();
                if let Some(g) = host_goroot() {
                    binds.push(g);
                }
                // The host's CA bundle (it may hold a proxy's or a company's CA that
                // Debian's ca-certificates lacks): go reaches its module proxy through it.
                let certs = PathBuf::from("/etc/ssl/certs");
                if certs.is_dir() {
                    binds.push(certs);
                }
                // unshare → sh (mounts) → chroot → env -i → sh (cd) → argv
                let script = r#"root=$1; n=$2; shift 2
i=0
while [ "$i" -lt "$n" ]; do
  p=$1; shift
  mkdir -p "$root$p"
  mount --bind "$p" "$root$p"
  i=$((i + 1))
done
mount -t proc proc "$root/proc"
exec chroot "$root" "$@""#;
                let mut args: Vec<String> = vec![
                    "--mount".into(),
                    "--propagation".into(),
                    "private".into(),
                    "--".into(),
                    "sh".into(),
                    "-ec".into(),
                    script.into(),
                    "sh".into(),
                    path.display().to_string(),
                    binds.len().to_string(),
                ];
                args.extend(binds.iter().map(|b| b.display().to_string()));
                args.push("/usr/bin/env".into());
                args.push("-i".into());
                args.push(format!("PATH={ROOT_PATH}"));
                args.push("HOME=/root".into());
                args.push("LANG=C.UTF-8".into());
                for k in FORWARDED_ENV {
                    if let Ok(v) = std::env::var(k) {
                        if !env.contains_key(*k) {
                            args.push(format!("{k}={v}"));
                        }
                    }
                }
                for (k, v) in env {
                    args.push(format!("{k}={v}"));
                }
                args.push("/bin/sh".into());
                args.push("-c".into());
                args.push("cd \"$0\" && exec \"$@\"".into());
                args.push(cwd.display().to_string());
                args.extend(argv.iter().cloned());
                Invocation {
                    program: "unshare".into(),
                    args,
                    cwd: None,
                    env: BTreeMap::new(),
                }
            }
        }
    }

    /// The architecture the builder compiles for.
    pub fn target(&self) -> Arch {
        match self {
            Builder::Host => Arch::host(),
            Builder::Root { target, .. } => *target,
        }
    }

    /// Picks and, for the root, creates the builder. A foreign `target` gets a cross root
    /// (super::cross): the builder list plus `cross_packages` as NAME:ARCH.
    pub fn ensure(
        choice: BuilderChoice,
        cache: &Path,
        packages: &[String],
        target: Arch,
        cross_packages: &[String],
        offline: bool,
    ) -> Result<Builder, BuildError> {
        let root_ok = is_debian_like() && is_root_user();
        if !target.is_host() {
            if choice == BuilderChoice::Host || !root_ok {
                return Err(BuildError::Cross {
                    what: format!(
                        "a build for linux/{target} on this linux/{} machine runs in the trixie cross root, which needs a Debian or Ubuntu host and root",
                        Arch::host()
                    ),
                    help: "run as root on Debian/Ubuntu without --builder host, or build on a linux/arm64 machine".into(),
                });
            }
            // The library check and the smoke test run the target's programs.
            crate::provision::ensure_foreign(target.name())?;
        }
        match choice {
            BuilderChoice::Host => return Ok(Builder::Host),
            BuilderChoice::Auto if !root_ok => {
                tracing::info!("not a Debian/Ubuntu host run as root: using the host toolchain");
                return Ok(Builder::Host);
            }
            BuilderChoice::Root if !root_ok => {
                return Err(BuildError::Builder {
                    what: "the trixie builder root needs a Debian or Ubuntu host and root (mmdebstrap, chroot, mount)".into(),
                    detail: None,
                    help: "run as root, or pass --builder host to use this machine's toolchain (see `ollama-vulkan doctor`)".into(),
                })
            }
            _ => {}
        }
        let mut pkgs: Vec<String> = packages.to_vec();
        pkgs.extend(super::cross::root_packages(target, cross_packages));
        pkgs.sort();
        pkgs.dedup();
        // The host's own roots keep the key (and name) they had before cross roots.
        let name = if target.is_host() {
            let k =
                crate::patch::series::sha256_hex(format!("{SUITE}\0{}", pkgs.join(",")).as_bytes());
            format!("{SUITE}-{}", &k[..12])
        } else {
            let k = crate::patch::series::sha256_hex(
                format!("{SUITE}\0{target}\0{}", pkgs.join(",")).as_bytes(),
            );
            format!("{SUITE}-cross-{target}-{}", &k[..12])
        };
        let dir = cache.join("builders");
        let path = dir.join(&name);
        let builder = Builder::Root {
            path: path.clone(),
            suite: SUITE.into(),
            target,
            packages: pkgs.clone(),
            binds: Vec::new(),
        };
        // The last thing mmdebstrap installs for this root: cmake, and for a cross root the
        // cross compiler.
        let made = |p: &Path| {
            p.join("usr/bin/cmake").exists()
                && (target.is_host()
                    || p.join(format!("usr/bin/{}-gcc", target.triplet())).exists())
        };
        if made(&path) {
            return Ok(builder);
        }
        if offline {
            return Err(BuildError::Builder {
                what: format!(
                    "the builder root {} does not exist and --offline forbids making it",
                    path.display()
                ),
                detail: None,
                help: "run once online, or pass --builder host".into(),
            });
        }
        // Before anything is written: a refused install leaves the cache as it was.
        crate::provision::ensure(&[crate::provision::MMDEBSTRAP])?;
        fs::create_dir_all(&dir).map_err(|source| BuildError::Io {
            what: format!("creating {}", dir.display()),
            source,
        })?;
        let lock_path = dir.join(".lock");
        let lock_err = |source| BuildError::Io {
            what: format!("locking {}", lock_path.display()),
            source,
        };
        let lock = fs::File::create(&lock_path).map_err(lock_err)?;
        lock.lock().map_err(lock_err)?;
        if made(&path) {
            return Ok(builder); // made by a concurrent run while we waited
        }
        // Stale half-made roots of killed runs.
        if let Ok(rd) = fs::read_dir(&dir) {
            for e in rd.flatten() {
                if e.file_name().to_string_lossy().starts_with(".tmp-") {
                    let _ = fs::remove_dir_all(e.path());
                }
            }
        }
        let tmp = dir.join(format!(".tmp-{name}-{}", std::process::id()));
        let progress = crate::progress::Progress::start(format!(
            "making the {SUITE} builder root{} ({} packages, mmdebstrap)",
            if target.is_host() {
                String::new()
            } else {
                format!(" for linux/{target}")
            },
            pkgs.len()
        ));
        let mut args = vec!["--variant=apt".to_string()];
        if !target.is_host() {
            args.push(format!("--architectures={},{target}", Arch::host()));
        }
        args.push(format!("--include={}", pkgs.join(",")));
        args.push(SUITE.to_string());
        args.push(tmp.display().to_string());
        let out = duct::cmd("mmdebstrap", args)
            .stderr_to_stdout()
            .stdout_capture()
            .unchecked()
            .run()
            .map_err(|source| BuildError::Io {
                what: "running mmdebstrap".into(),
                source,
            })?;
        if !out.status.success() {
            let _ = fs::remove_dir_all(&tmp);
            let text = String::from_utf8_lossy(&out.stdout);
            let tail: Vec<&str> = text.lines().rev().take(15).collect();
            return Err(BuildError::Builder {
                what: format!("mmdebstrap {SUITE} failed"),
                detail: Some(tail.into_iter().rev().collect::<Vec<_>>().join("\n")),
                help: format!(
                    "check that the Debian mirror serves {SUITE}, or pass --builder host"
                ),
            });
        }
        fs::rename(&tmp, &path).map_err(|source| BuildError::Io {
            what: "moving the root into place".into(),
            source,
        })?;
        progress.finish(&path.display().to_string());
        Ok(builder)
    }
}
