//! The Venus lab (docs/VENUS.md): a real Mesa Venus device on a plain Linux host.
//!
//! virglrenderer's vtest server runs the Venus renderer (the one krunkit uses on the Mac)
//! over a Unix socket against a host Vulkan driver (lavapipe, or a GPU's); Mesa's Venus
//! driver in the process under test talks to it. The lab is a Debian trixie root (the
//! builder root's packages plus `recipes/lab/venus.toml`'s) holding Mesa, the stock
//! `virgl-server`, and — built once per pin and series, cached — virglrenderer with our
//! series. Input: `recipes/lab/venus.toml` (untrusted, checked); output: a [`Lab`] that
//! starts [`VtestServer`]s; cache key: pin + series hash + root.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::build::builder::{Builder, BuilderChoice};
use crate::patch::engine::{apply_patch, GitSource, Overlay};
use crate::patch::series::Series;
use crate::source::tree::{materialise, Sparse, TreeRequest};
use crate::source::{Mirrors, RepoName, Want};

/// Where the lab recipe lives in a project.
pub const RECIPE: &str = "lab/venus.toml";
/// Mesa's Venus ICD in a Debian root or image (mesa-vulkan-drivers ≥ 24).
pub const VENUS_ICD: &str = "/usr/share/vulkan/icd.d/virtio_icd.json";
/// lavapipe's ICD: the default host driver behind Venus.
pub const LAVAPIPE_ICD: &str = "/usr/share/vulkan/icd.d/lvp_icd.json";
/// Where the lab root's ICDs are: the host drivers a Venus device can sit on.
pub const ICD_DIR: &str = "/usr/share/vulkan/icd.d/";
/// Hypervisor.framework's page: the blob unit krunkit's host maps (VTEST_BLOB_ALIGNMENT).
pub const KRUNKIT_BLOB_ALIGNMENT: &str = "16384";

/// `--venus-host-icd`: the name of an ICD in the lab root's `ICD_DIR` (the value reaches
/// the server's environment; nothing outside that directory is taken or mounted).
pub fn check_host_icd(p: &Path) -> Result<(), VenusError> {
    let value = crate::safe::show(&p.display().to_string());
    let name = p
        .to_str()
        .and_then(|s| s.strip_prefix(ICD_DIR))
        .unwrap_or("");
    let ok = name.ends_with(".json")
        && name.len() > ".json".len()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
        && !name.starts_with('.');
    if ok {
        return Ok(());
    }
    Err(VenusError::BadOption {
        value: format!("--venus-host-icd {value}"),
        why: format!("not an ICD file directly under {ICD_DIR}"),
        help: format!(
            "name one of the lab root's ICDs, e.g. {LAVAPIPE_ICD} or {ICD_DIR}radeon_icd.x86_64.json (a GPU's /dev/dri is passed in); NVIDIA's driver is not in the root: use bench/gpu.sh (--modes venus)"
        ),
    })
}

#[derive(Debug, thiserror::Error)]
pub enum VenusError {
    #[error("{file}: {why}\n  help: {help}")]
    Recipe {
        file: PathBuf,
        why: String,
        help: String,
    },
    #[error("{value}: {why}\n  help: {help}")]
    BadOption {
        value: String,
        why: String,
        help: String,
    },
    #[error(transparent)]
    Source(#[from] crate::source::SourceError),
    #[error(transparent)]
    Build(#[from] crate::build::BuildError),
    #[error(transparent)]
    Mesa(#[from] crate::mesa::MesaError),
    #[error("the vtest server did not start: {why}\n  log: {}\n{tail}", log.display())]
    Server {
        why: String,
        log: PathBuf,
        tail: String,
    },
    #[error("{what}: {source}")]
    Io {
        what: String,
        source: std::io::Error,
    },
}

impl crate::error::HasKind for VenusError {
    fn kind(&self) -> crate::error::Kind {
        use crate::error::Kind;
        match self {
            VenusError::Recipe { .. } | VenusError::BadOption { .. } => Kind::BadInput,
            VenusError::Source(e) => e.kind(),
            VenusError::Build(e) => e.kind(),
            VenusError::Mesa(e) => e.kind(),
            VenusError::Server { .. } | VenusError::Io { .. } => Kind::Failure,
        }
    }
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> VenusError {
    let what = what.into();
    move |source| VenusError::Io { what, source }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct LabRecipe {
    pub virglrenderer: VirglSource,
    pub root: LabRoot,
    #[serde(default)]
    pub server: LabServer,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct VirglSource {
    pub url: String,
    pub tag: String,
    pub commit: String,
    /// A directory under patches/ (e.g. `lab/virglrenderer-venus-vtest`).
    pub series: String,
    /// SHA-256 of the series' SHA256SUMS: the pin.
    pub sha256: String,
    pub meson_options: Vec<String>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct LabRoot {
    pub packages: Vec<String>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct LabServer {
    #[serde(default)]
    pub env: BTreeMap<String, String>,
}

impl LabRecipe {
    /// `recipes/lab/venus.toml` of the project, checked like every recipe: one error
    /// naming the file, the value and the fix.
    pub fn load(recipes_dir: &Path) -> Result<LabRecipe, VenusError> {
        let file = recipes_dir.join(RECIPE);
        let bad = |why: String, help: &str| VenusError::Recipe {
            file: file.clone(),
            why,
            help: help.into(),
        };
        let r: LabRecipe = crate::safe::read_toml(&file).map_err(|(why, help)| bad(why, &help))?;
        let v = &r.virglrenderer;
        if !(v.commit.len() == 40 && v.commit.bytes().all(|b| b.is_ascii_hexdigit())) {
            return Err(bad(
                format!(
                    "[virglrenderer] commit `{}` is not a full commit id",
                    crate::safe::show(&v.commit)
                ),
                "write the 40-hex commit the tag points at",
            ));
        }
        if !(v.sha256.len() == 64 && v.sha256.bytes().all(|b| b.is_ascii_hexdigit())) {
            return Err(bad(
                format!(
                    "[virglrenderer] sha256 `{}` is not a SHA-256",
                    crate::safe::show(&v.sha256)
                ),
                "sha256sum patches/<series>/SHA256SUMS",
            ));
        }
        crate::safe::text(&v.url)
            .and_then(|_| crate::safe::text(&v.tag))
            .map_err(|why| bad(format!("[virglrenderer]: {why}"), "plain text values"))?;
        if v.url.starts_with('-') {
            return Err(bad(
                "[virglrenderer] url starts with `-`".into(),
                "a git URL",
            ));
        }
        crate::safe::rel_path(&v.series).map_err(|why| {
            bad(
                format!(
                    "[virglrenderer] series `{}`: {why}",
                    crate::safe::show(&v.series)
                ),
                "a directory under patches/, e.g. lab/virglrenderer-venus-vtest",
            )
        })?;
        for o in &v.meson_options {
            if !o.starts_with("-D") || crate::safe::text(o).is_err() || o.contains("prefix") {
                return Err(bad(
                    format!("[virglrenderer] meson option `{}`", crate::safe::show(o)),
                    "-Dname=value options only (the prefix is the tool's)",
                ));
            }
        }
        for p in &r.root.packages {
            crate::safe::package_name(p).map_err(|why| {
                bad(
                    format!("[root] packages: {why}"),
                    "Debian package names only",
                )
            })?;
        }
        for (k, val) in &r.server.env {
            if crate::safe::env_key(k).is_err() || crate::safe::text(val).is_err() {
                return Err(bad(
                    format!("[server] env `{}`", crate::safe::show(k)),
                    "NAME = \"value\" pairs",
                ));
            }
        }
        Ok(r)
    }
}

/// Which vtest server a run uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum ServerChoice {
    /// virglrenderer built from the lab recipe's pin with our series (needs its source:
    /// `--mirror virglrenderer=PATH` or the recipe's URL). Models map device memory, which
    /// only this one serves over vtest (docs/VENUS.md).
    Patched,
    /// Debian's virgl-server: enough for device discovery and the memory rule; a model
    /// load that maps device memory hangs on it.
    Stock,
}

/// Which Mesa Venus driver the process under test uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum MesaChoice {
    /// The lab root's mesa-vulkan-drivers (Debian's; fails under krunkit on a Mac).
    Debian,
    /// Ours (recipes/lab/mesa.toml: Debian's source package with the 16 KiB blob series),
    /// built once in the builder root; the vtest server then refuses blobs that are not
    /// a multiple of 16 KiB, as krunkit's host does (our series' `VTEST_BLOB_ALIGNMENT`).
    Krunkit,
}

pub struct LabRequest<'a> {
    pub recipes_dir: &'a Path,
    pub patches_dir: &'a Path,
    pub mirrors: &'a Mirrors,
    pub cache: &'a Path,
    pub server: ServerChoice,
    pub offline: bool,
    pub quiet: bool,
    /// `--venus-host-icd`: an ICD of the lab root (checked before anything is made).
    pub host_icd: Option<&'a Path>,
    /// `--venus-mesa`: the Venus driver of the process under test.
    pub mesa: MesaChoice,
    /// `--venus-krunkit-host`: the patched server refuses blobs that are not a multiple
    /// of 16 KiB, as krunkit's host does (always on with `--venus-mesa krunkit`).
    pub krunkit_host: bool,
}

/// A ready lab: the root, and the vtest server to run in it.
#[derive(Debug, Clone)]
pub struct Lab {
    pub root: Builder,
    pub server: ServerChoice,
    /// Our build's prefix (patched), holding bin/, lib*/ and libexec/.
    pub prefix: Option<PathBuf>,
    pub env: BTreeMap<String, String>,
    /// The render server's shader cache, kept across runs: lavapipe compiles every ggml
    /// pipeline there on first use (about 70 s on 2 cores), later runs take seconds.
    pub shader_cache: PathBuf,
    /// What the report names: Mesa's and virglrenderer's versions.
    pub versions: Versions,
    /// `--venus-mesa krunkit`: our Venus driver (bound into the root); None for the
    /// root's own.
    pub client_driver: Option<crate::mesa::MesaVenus>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Versions {
    pub mesa: String,
    pub virglrenderer: String,
}

/// Makes (or finds) the lab root and, for the patched server, its build.
pub fn ensure(req: &LabRequest<'_>) -> Result<Lab, VenusError> {
    if let Some(icd) = req.host_icd {
        check_host_icd(icd)?;
    }
    if req.krunkit_host && req.server == ServerChoice::Stock {
        return Err(VenusError::BadOption {
            value: "--venus-krunkit-host".into(),
            why: "Debian's vtest server cannot refuse blobs as krunkit does".into(),
            help: "use the patched server (--venus-server patched, the default)".into(),
        });
    }
    let recipe = LabRecipe::load(req.recipes_dir)?;
    // Our driver first: its recipe is checked before the lab root is made.
    let client_driver = match req.mesa {
        MesaChoice::Debian => None,
        MesaChoice::Krunkit => Some(crate::mesa::ensure(&crate::mesa::MesaRequest {
            recipes_dir: req.recipes_dir,
            patches_dir: req.patches_dir,
            mirrors: req.mirrors,
            cache: req.cache,
            target: crate::image::base::Arch::host(),
            offline: req.offline,
            quiet: req.quiet,
        })?),
    };
    let mut packages = crate::recipe::packages::load(req.recipes_dir)
        .map(|b| b.builder)
        .unwrap_or_else(|_| crate::recipe::packages::compiled().builder);
    packages.extend(recipe.root.packages.iter().cloned());
    let mut root = Builder::ensure(
        BuilderChoice::Root,
        req.cache,
        &packages,
        crate::target::Arch::host(),
        &[],
        req.offline,
    )?;
    if let Some(m) = &client_driver {
        root.bind(std::slice::from_ref(&m.dir));
    }
    if let Some(icd) = req.host_icd {
        if !root.host_path(icd).is_file() {
            return Err(VenusError::BadOption {
                value: format!("--venus-host-icd {}", icd.display()),
                why: "the lab root has no such ICD".into(),
                help: format!("ls {}", root.host_path(Path::new(ICD_DIR)).display()),
            });
        }
    }
    let mesa = match &client_driver {
        Some(m) => format!("{} (ours, {})", m.version, m.dir.display()),
        None => package_version(&root, "mesa-vulkan-drivers"),
    };
    let shader_cache = req.cache.join("venus").join("shader-cache");
    fs::create_dir_all(&shader_cache)
        .map_err(io(format!("creating {}", shader_cache.display())))?;
    match req.server {
        ServerChoice::Stock => Ok(Lab {
            versions: Versions {
                mesa,
                virglrenderer: format!(
                    "{} (Debian virgl-server)",
                    package_version(&root, "virgl-server")
                ),
            },
            root,
            server: ServerChoice::Stock,
            prefix: None,
            env: BTreeMap::new(),
            shader_cache,
            client_driver,
        }),
        ServerChoice::Patched => {
            let prefix = build_virglrenderer(req, &recipe, &root)?;
            let v = &recipe.virglrenderer;
            Ok(Lab {
                versions: Versions {
                    mesa,
                    virglrenderer: format!(
                        "{} ({}) + {} ({})",
                        v.tag,
                        &v.commit[..12],
                        v.series,
                        &v.sha256[..12]
                    ),
                },
                root,
                server: ServerChoice::Patched,
                prefix: Some(prefix),
                env: {
                    let mut env = recipe.server.env.clone();
                    if client_driver.is_some() || req.krunkit_host {
                        // krunkit's host: blobs in whole 16 KiB pages (series 0003).
                        env.insert("VTEST_BLOB_ALIGNMENT".into(), KRUNKIT_BLOB_ALIGNMENT.into());
                    }
                    env
                },
                shader_cache,
                client_driver,
            })
        }
    }
}

fn package_version(root: &Builder, pkg: &str) -> String {
    root.command(
        &[
            "dpkg-query".into(),
            "-W".into(),
            "-f".into(),
            "${Version}".into(),
            pkg.into(),
        ],
        Path::new("/"),
        &BTreeMap::new(),
    )
    .stderr_null()
    .stdout_capture()
    .unchecked()
    .run()
    .ok()
    .filter(|o| o.status.success())
    .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
    .filter(|v| !v.is_empty())
    .unwrap_or_else(|| "unknown".into())
}

/// virglrenderer at the pin with the series, built in the root and installed under the
/// cache; reused while pin, series and root are the same.
fn build_virglrenderer(
    req: &LabRequest<'_>,
    recipe: &LabRecipe,
    root: &Builder,
) -> Result<PathBuf, VenusError> {
    let v = &recipe.virglrenderer;
    let series_dir = req.patches_dir.join(&v.series);
    let series = Series::load(&series_dir).map_err(|e| VenusError::Recipe {
        file: req.recipes_dir.join(RECIPE),
        why: format!("series {}: {e}", v.series),
        help: "fix the series, then sha256sum its SHA256SUMS into [virglrenderer] sha256".into(),
    })?;
    if series.hash != v.sha256 {
        return Err(VenusError::Recipe {
            file: req.recipes_dir.join(RECIPE),
            why: format!(
                "series {} hashes to {}, but the recipe pins {}",
                v.series, series.hash, v.sha256
            ),
            help: "the series changed after it was pinned: review it, then update sha256".into(),
        });
    }
    let key = crate::patch::series::sha256_hex(
        format!(
            "{}\0{}\0{}\0{}",
            v.commit,
            v.sha256,
            v.meson_options.join(" "),
            root.id()
        )
        .as_bytes(),
    );
    let dir = req.cache.join("venus");
    let prefix = dir.join(format!("virglrenderer-{}", &key[..16]));
    if prefix.join("bin/virgl_test_server").is_file() {
        return Ok(prefix);
    }
    fs::create_dir_all(&dir).map_err(io(format!("creating {}", dir.display())))?;
    let lock = fs::File::create(dir.join(".lock")).map_err(io("locking the Venus lab cache"))?;
    lock.lock().map_err(io("locking the Venus lab cache"))?;
    if prefix.join("bin/virgl_test_server").is_file() {
        return Ok(prefix);
    }
    let work = dir.join(format!(".tmp-{}", std::process::id()));
    let _ = fs::remove_dir_all(&work);
    let result = build_in(req, v, &series, root, &work, &prefix);
    let _ = fs::remove_dir_all(&work);
    result.map(|()| prefix)
}

fn build_in(
    req: &LabRequest<'_>,
    v: &VirglSource,
    series: &Series,
    root: &Builder,
    work: &Path,
    prefix: &Path,
) -> Result<(), VenusError> {
    // The tree at the pin, from git objects (checked like every mirror's tree).
    let repos = req.mirrors.open(
        RepoName::Virglrenderer,
        Some(&v.url),
        &[Want::Commit(v.commit.clone())],
    )?;
    let repo = &repos[0];
    let oid = git2::Oid::from_str(&v.commit).map_err(|e| VenusError::Recipe {
        file: req.recipes_dir.join(RECIPE),
        why: e.message().to_string(),
        help: "a 40-hex commit".into(),
    })?;
    let src = work.join("src");
    let what = format!("virglrenderer {}", v.tag);
    materialise(&TreeRequest {
        mirror: &repo.path,
        repo: &repo.git,
        commit: oid,
        dest: &src,
        sparse: &Sparse::default(),
        missing_ok: &[],
        what: &what,
    })?;
    // Our series, in memory first (all or nothing), then written over the tree.
    let patches = series.parse_patches().map_err(|e| VenusError::Recipe {
        file: series.dir.join("series"),
        why: e.to_string(),
        help: "fix the patch, then refresh SHA256SUMS and the pin".into(),
    })?;
    let tree = repo
        .git
        .find_commit(oid)
        .and_then(|c| c.tree())
        .map_err(|e| VenusError::Recipe {
            file: req.recipes_dir.join(RECIPE),
            why: format!("reading the tree of {}: {}", v.commit, e.message()),
            help: "use a complete mirror".into(),
        })?;
    let gsrc = GitSource {
        repo: &repo.git,
        tree,
    };
    let mut overlay = Overlay::new();
    for p in &patches {
        let (report, changed) =
            apply_patch(&gsrc, &overlay, p, 0).map_err(|e| VenusError::Recipe {
                file: series.dir.join(&p.name),
                why: e.to_string(),
                help: "refresh the patch against the pin".into(),
            })?;
        if !report.status.applies() {
            return Err(VenusError::Recipe {
                file: series.dir.join(&p.name),
                why: format!("does not apply to {} ({:?})", v.tag, report.status),
                help: "refresh the patch against the pin".into(),
            });
        }
        overlay.extend(changed);
    }
    crate::patch::engine::write_overlay(&src, &overlay)
        .map_err(|(what, source)| VenusError::Io { what, source })?;
    let staged = work.join("prefix");
    let mut root = root.clone();
    root.bind(&[work.to_path_buf()]);
    let mut setup = vec![
        "meson".to_string(),
        "setup".into(),
        work.join("build").display().to_string(),
        src.display().to_string(),
        format!("-Dprefix={}", staged.display()),
        "-Dlibdir=lib".into(),
    ];
    setup.extend(v.meson_options.iter().cloned());
    let steps: [(&str, Vec<String>); 2] = [
        ("meson setup", setup),
        (
            "ninja install",
            vec![
                "ninja".into(),
                "-C".into(),
                work.join("build").display().to_string(),
                "install".into(),
            ],
        ),
    ];
    // The build's own step runner: a log per step, progress, the failing step named.
    let logs = req.cache.join("logs");
    let total = steps.len();
    for (i, (what, argv)) in steps.iter().enumerate() {
        let log = logs.join(format!("venus-{}.log", what.replace(' ', "-")));
        crate::build::run::run_step(
            &root,
            what,
            argv,
            &src,
            &BTreeMap::new(),
            &log,
            i + 1,
            total,
            req.quiet,
        )?;
    }
    if !staged.join("bin/virgl_test_server").is_file() {
        return Err(VenusError::Server {
            why: "`ninja install` installed no bin/virgl_test_server".into(),
            log: logs.join("venus-ninja-install.log"),
            tail: crate::fsutil::tail_file(&logs.join("venus-ninja-install.log"), 15),
        });
    }
    fs::rename(&staged, prefix).map_err(io(format!("moving the build to {}", prefix.display())))?;
    crate::progress::note(&format!(
        "the Venus lab's virglrenderer: {}",
        prefix.display()
    ));
    Ok(())
}

/// A running vtest server; stopped (with its render server) when dropped.
pub struct VtestServer {
    child: Child,
    pub socket: PathBuf,
    pub log: PathBuf,
    /// The Venus ICD clients use: Debian's, or one naming our driver (in the run's dir).
    pub client_icd: PathBuf,
}

impl VtestServer {
    /// Starts the lab's server on a private socket in `dir` (a directory the process under
    /// test sees at the same path), with `host_icd` as the host driver.
    pub fn start(
        lab: &Lab,
        host_icd: &Path,
        dir: &Path,
        log: &Path,
    ) -> Result<VtestServer, VenusError> {
        let socket = dir.join("venus.sock");
        let _ = fs::remove_file(&socket);
        // Our driver: an ICD naming it where the lab root sees it (bound at its path).
        let client_icd = match &lab.client_driver {
            Some(m) => {
                let icd = dir.join("venus_krunkit_icd.json");
                let json = serde_json::json!({
                    "file_format_version": "1.0.0",
                    "ICD": {
                        "library_path": m.driver.display().to_string(),
                        "api_version": icd_api_version(&m.icd),
                    }
                });
                fs::write(&icd, format!("{json:#}\n"))
                    .map_err(io(format!("writing {}", icd.display())))?;
                icd
            }
            None => PathBuf::from(VENUS_ICD),
        };
        let mut env = lab.env.clone();
        env.insert("VK_DRIVER_FILES".into(), host_icd.display().to_string());
        env.insert(
            "MESA_SHADER_CACHE_DIR".into(),
            lab.shader_cache.display().to_string(),
        );
        let program = match &lab.prefix {
            Some(p) => {
                // Our render server and library, not Debian's.
                env.insert(
                    "LD_LIBRARY_PATH".into(),
                    p.join("lib").display().to_string(),
                );
                env.insert(
                    "RENDER_SERVER_EXEC_PATH".into(),
                    p.join("libexec/virgl_render_server").display().to_string(),
                );
                p.join("bin/virgl_test_server")
            }
            None => PathBuf::from("/usr/bin/virgl_test_server"),
        };
        let mut root = lab.root.clone();
        let mut binds = vec![dir.to_path_buf(), lab.shader_cache.clone()];
        binds.extend(lab.prefix.clone());
        for d in ["/dev/dri"] {
            if Path::new(d).is_dir() {
                binds.push(PathBuf::from(d));
            }
        }
        root.bind(&binds);
        let logf = fs::File::create(log).map_err(io(format!("creating {}", log.display())))?;
        let logf2 = logf
            .try_clone()
            .map_err(io(format!("opening {}", log.display())))?;
        // --multi-clients: Ollama opens several clients (discovery runners, then the model's).
        let argv = vec![
            program.display().to_string(),
            "--venus".into(),
            "--no-virgl".into(),
            "--multi-clients".into(),
            "--socket-path".into(),
            socket.display().to_string(),
        ];
        let child = root
            .std_command(&argv, dir, &env)
            .stdin(Stdio::null())
            .stdout(logf)
            .stderr(logf2)
            .process_group(0) // the render server it forks is stopped with it
            .spawn()
            .map_err(io("starting virgl_test_server"))?;
        let mut server = VtestServer {
            child,
            socket,
            log: log.to_path_buf(),
            client_icd,
        };
        let start = Instant::now();
        while !server.socket.exists() {
            if let Ok(Some(st)) = server.child.try_wait() {
                return Err(VenusError::Server {
                    why: format!("it exited ({st})"),
                    log: log.to_path_buf(),
                    tail: crate::fsutil::tail_file(log, 15),
                });
            }
            if start.elapsed() > Duration::from_secs(20) {
                return Err(VenusError::Server {
                    why: format!("no socket {} after 20 s", server.socket.display()),
                    log: log.to_path_buf(),
                    tail: crate::fsutil::tail_file(log, 15),
                });
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Ok(server)
    }

    /// The server's own verdicts on what it refused (`… failed (-22)`): a client that
    /// hangs or falls back instead of failing leaves them only here.
    pub fn failures(&self) -> Vec<String> {
        fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .filter(|l| l.contains(" failed (") || l.starts_with("vtest: blob size"))
            .map(|l| l.trim().to_string())
            .collect()
    }

    /// The environment a Venus client needs: Mesa's Venus ICD over this socket.
    pub fn client_env(&self) -> BTreeMap<String, String> {
        BTreeMap::from([
            ("VN_DEBUG".to_string(), "vtest".to_string()),
            (
                "VTEST_SOCKET_NAME".to_string(),
                self.socket.display().to_string(),
            ),
            (
                "VK_DRIVER_FILES".to_string(),
                self.client_icd.display().to_string(),
            ),
            // Loaders before 1.3.234 know only the old name.
            (
                "VK_ICD_FILENAMES".to_string(),
                self.client_icd.display().to_string(),
            ),
        ])
    }
}

/// The `api_version` of a Mesa ICD file (what the loader is told), 1.3.0 if unreadable.
fn icd_api_version(icd: &Path) -> String {
    fs::read_to_string(icd)
        .ok()
        .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
        .and_then(|v| v["ICD"]["api_version"].as_str().map(str::to_string))
        .unwrap_or_else(|| "1.3.0".into())
}

impl Drop for VtestServer {
    fn drop(&mut self) {
        // The whole process group: the server and the render server it forked.
        let group = format!("-{}", self.child.id());
        let kill = |sig: &str| {
            let _ = std::process::Command::new("kill")
                .args([sig, "--", group.as_str()])
                .stderr(Stdio::null())
                .status();
        };
        kill("-TERM");
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(3) {
            if let Ok(Some(_)) = self.child.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        kill("-KILL"); // render processes that outlived the server
        let _ = self.child.wait();
        let _ = fs::remove_file(&self.socket);
    }
}
