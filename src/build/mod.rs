//! The build stage: fetch → prepare → the era's compile steps (data from the template) →
//! a dist directory and a manifest.
//!
//! A build is keyed by its inputs (recipe, pins, series hashes, builder, toolchain
//! fingerprint); unchanged inputs return the cached dist without running a compiler or
//! go. The dist is assembled in `dist.tmp` and renamed into place with its manifest
//! already inside, so a dist that looks complete is complete.

pub mod builder;
pub mod cross;
pub mod doctor;
pub mod run;
pub mod toolchain;

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::Instant;

use serde::Serialize;

use crate::patch::prepare::{prepare, PrepareError, PrepareOptions};
use crate::recipe::model::Recipe;
use crate::source::{Mirrors, SourceError};
use builder::{Builder, BuilderChoice};
use run::{run_step, StepRecord};

#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// The builder root cannot be used or made (mmdebstrap, root, --offline).
    #[error("{what}{}\n  help: {help}", detail.as_deref().map(|d| format!(":\n{d}")).unwrap_or_default())]
    Builder {
        what: String,
        detail: Option<String>,
        help: String,
    },
    #[error("{what}: {source}")]
    Io {
        what: String,
        source: std::io::Error,
    },
    /// A program the build runs itself (gzip, ldd) failed.
    #[error("{what}")]
    Tool { what: String },
    #[error("step `{name}` failed: {detail}\n  log: {}", log.display())]
    Step {
        name: String,
        detail: String,
        log: PathBuf,
    },
    #[error("{lib}: {detail}\n  help: {help}")]
    LibCheck {
        lib: String,
        detail: String,
        help: String,
    },
    /// A build for another architecture this machine cannot make.
    #[error("{what}\n  help: {help}")]
    Cross { what: String, help: String },
    #[error("{recipe} has no [[build.steps]]: its era template does not say how to compile\n  help: use a template from recipes/ (era-1a, era-1b, era-4, era-5)")]
    NoSteps { recipe: String },
    #[error(transparent)]
    Prepare(#[from] PrepareError),
    #[error(transparent)]
    Source(#[from] SourceError),
    #[error(transparent)]
    Provision(#[from] crate::provision::ProvisionError),
    #[error(transparent)]
    Contract(#[from] crate::contract::ContractError),
}

impl crate::error::HasKind for BuildError {
    fn kind(&self) -> crate::error::Kind {
        use crate::error::Kind;
        match self {
            BuildError::Source(e) => e.kind(),
            BuildError::Prepare(e) => e.kind(),
            BuildError::Provision(e) => e.kind(),
            BuildError::Contract(e) => e.kind(),
            BuildError::NoSteps { .. } | BuildError::Cross { .. } => Kind::Unsupported,
            BuildError::Builder { .. }
            | BuildError::Io { .. }
            | BuildError::Tool { .. }
            | BuildError::Step { .. }
            | BuildError::LibCheck { .. } => Kind::Failure,
        }
    }
}

pub struct BuildRequest<'a> {
    pub recipe: &'a Recipe,
    pub mirrors: &'a Mirrors,
    /// The build directory (trees in src/, logs/, dist/).
    pub dest: &'a Path,
    pub cache: &'a Path,
    pub builder: BuilderChoice,
    /// The architecture the dist is for (a foreign one is cross-compiled: `cross`).
    pub target: crate::target::Arch,
    pub jobs: usize,
    pub fuzz: Option<usize>,
    pub quiet: bool,
    pub offline: bool,
}

#[derive(Debug, Serialize)]
pub struct Built {
    pub dist: PathBuf,
    pub manifest: PathBuf,
    pub cached: bool,
}

pub use crate::contract::{DistFile, LibCheck, Manifest, Timings};

/// The inputs that decide a dist, hashed.
fn input_key(req: &BuildRequest<'_>, builder: &Builder) -> String {
    let r = req.recipe;
    let series: Vec<_> = r
        .series
        .iter()
        .map(|s| serde_json::json!({"name": s.name, "repo": s.repo, "sha256": s.sha256, "fuzz": s.fuzz}))
        .collect();
    let key = serde_json::json!({
        "tool": env!("CARGO_PKG_VERSION"),
        "era": r.era,
        "ollama": r.ollama,
        "llamacpp": r.llamacpp,
        "series": series,
        "build": r.build,
        "smoke": r.smoke,
        "builder": builder.id(),
        "target": req.target,
        "toolchain": toolchain::fingerprint(builder),
        "fuzz": req.fuzz,
    });
    crate::patch::series::sha256_hex(key.to_string().as_bytes())
}

/// `{dist}`, `{ollama}`, `{llama}`, `{jobs}` in one argument.
pub fn expand(arg: &str, vars: &BTreeMap<&str, String>) -> String {
    let mut s = arg.to_string();
    for (k, v) in vars {
        s = s.replace(&format!("{{{k}}}"), v);
    }
    s
}

/// The environment every compile step gets before the template's `[build] env`: the
/// cache directories (`toolchain::cache_dirs` names), ccache as CMake's compiler launcher
/// when the builder has it, and cgo on. The image's builder stage renders the same map.
pub fn compile_env(caches: &[(String, String)], ccache: bool) -> BTreeMap<String, String> {
    let mut env: BTreeMap<String, String> = caches.iter().cloned().collect();
    if ccache {
        // CMake ≥ 3.17 reads these: a rebuild after a one-line change hits ccache.
        env.insert("CMAKE_C_COMPILER_LAUNCHER".into(), "ccache".into());
        env.insert("CMAKE_CXX_COMPILER_LAUNCHER".into(), "ccache".into());
        // Trees are fresh per build: hash contents, not mtimes.
        env.insert(
            "CCACHE_SLOPPINESS".into(),
            "include_file_mtime,include_file_ctime,time_macros".into(),
        );
    }
    env.insert("CGO_ENABLED".into(), "1".into());
    env
}

/// `{version}`: the tag without its `v`, as upstream's release builds stamp it.
pub fn version_var(r: &Recipe) -> String {
    r.ollama
        .tag
        .as_deref()
        .unwrap_or("0.0.0")
        .trim_start_matches('v')
        .to_string()
}

/// A step's argv with `vars` expanded and the list placeholders `{cmake_options}` and
/// `{go_flags}` spliced in; placeholders not in `vars` stay as they are (the Dockerfile
/// renderer leaves `{jobs}` and `{go_module}` to the container's shell).
pub fn step_argv(
    step: &crate::recipe::model::Step,
    r: &Recipe,
    vars: &BTreeMap<&str, String>,
) -> Vec<String> {
    let mut argv = Vec::new();
    for a in &step.run {
        match a.as_str() {
            "{cmake_options}" => argv.extend(r.build.cmake_options.iter().map(|o| expand(o, vars))),
            "{go_flags}" => argv.extend(r.build.go_flags.iter().map(|o| expand(o, vars))),
            _ => argv.push(expand(a, vars)),
        }
    }
    argv
}

fn slug(s: &str) -> String {
    let mut out: String = s
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect();
    while out.contains("--") {
        out = out.replace("--", "-");
    }
    out.trim_matches('-').to_string()
}

/// The input key of the dist at `dist`, if its manifest is one this version reads.
fn read_manifest_key(dist: &Path) -> Option<String> {
    Manifest::read(dist).ok().map(|m| m.input_key)
}

/// Builds (or finds cached) the recipe's dist: the named steps below, in order.
pub fn build(req: &BuildRequest<'_>) -> Result<Built, BuildError> {
    let started = Instant::now();
    let r = req.recipe;
    if r.build.steps.is_empty() {
        return Err(BuildError::NoSteps {
            recipe: r.path.display().to_string(),
        });
    }
    if !r.build.arches.is_empty() && !r.build.arches.iter().any(|a| a == req.target.name()) {
        return Err(BuildError::Cross {
            what: format!(
                "{}: era {} builds {} only, not {}",
                r.path.display(),
                r.era,
                r.build.arches.join(", "),
                req.target.name()
            ),
            help: format!(
                "the template's `[build] arches` says which targets its steps can make (era 2's make files take ARCH from uname and build CPU runners for amd64 only); build {} from a tag of era 3 or later (v0.5.8 and newer)",
                req.target.name()
            ),
        });
    }
    fs::create_dir_all(req.dest).map_err(io(format!("creating {}", req.dest.display())))?;
    let dest =
        fs::canonicalize(req.dest).map_err(io(format!("resolving {}", req.dest.display())))?;
    let mut builder = Builder::ensure(
        req.builder,
        req.cache,
        &r.build.builder_packages,
        req.target,
        &r.build.cross_packages,
        req.offline,
    )?;
    let key = input_key(req, &builder);
    if let Some(built) = cached(&dest, &key) {
        return Ok(built);
    }
    let _lock = lock_build_dir(&dest)?;
    let tmp = dest.join("dist.tmp");

    let t0 = Instant::now();
    let prepared = prepare(
        r,
        req.mirrors,
        &dest,
        PrepareOptions {
            fuzz: req.fuzz,
            check: false,
        },
    )?;
    let fetch_and_prepare_s = t0.elapsed().as_secs_f64();
    crate::killpoint::hit("build.prepared");
    let sources = crate::contract::Sources::read(&dest)?;
    let trees = Trees {
        ollama: dest.join("src/ollama"),
        llama: sources.llamacpp_tree.clone(),
    };

    fs::create_dir_all(&tmp).map_err(io(format!("creating {}", tmp.display())))?;
    let caches = toolchain::cache_dirs(req.cache);
    bind_into_builder(&mut builder, &dest, &caches, &trees)?;
    let vars = step_vars(r, &tmp, &trees, req.jobs);
    let mut env = build_env(r, &builder, &caches, &vars);
    if env.contains_key("CMAKE_C_COMPILER_LAUNCHER") {
        // Each tag builds in its own directory: paths below it are hashed relative (and the
        // working directory not at all), so the next tag, or another runner sharing
        // CCACHE_DIR, hits the objects this one made (docs/ci.md).
        env.insert("CCACHE_BASEDIR".into(), dest.display().to_string());
        env.insert("CCACHE_NOHASHDIR".into(), "true".into());
    }
    if !req.target.is_host() {
        let toolchain = cross::write_toolchain(&dest, req.target)
            .map_err(io("writing the CMake toolchain files".into()))?;
        env.extend(cross::env(req.target, &toolchain));
    }

    let t1 = Instant::now();
    let records = run_steps(&builder, r, &dest, &trees, &vars, &env, req.quiet)?;
    let compile_s = t1.elapsed().as_secs_f64();

    let t2 = Instant::now();
    check_machine(&tmp, req.target)?;
    let lib_checks = check_libs(&builder, r, &vars, &tmp)?;
    let vulkan_shader_features = shader_features_from_logs(&records);
    let glslc_extensions = toolchain::shader_support(&builder, &dest.join("probe-glslc"));
    let versions = toolchain::versions(&builder);
    let checks_s = t2.elapsed().as_secs_f64();
    crate::killpoint::hit("build.checked");

    let mut dist_files = Vec::new();
    walk(&tmp, &tmp, &mut dist_files);
    dist_files.sort_by(|a, b| a.path.cmp(&b.path));
    let step_s: f64 = records.iter().map(|s| s.seconds).sum();
    let total_s = started.elapsed().as_secs_f64();
    let manifest = Manifest {
        schema: crate::contract::MANIFEST_SCHEMA,
        tool: format!("ollama-vulkan {}", env!("CARGO_PKG_VERSION")),
        input_key: key,
        target: req.target,
        recipe: crate::contract::RecipeRef {
            path: r.path.clone(),
            era: r.era,
            tag: r.ollama.tag.clone(),
            template: r.template.as_ref().map(|t| t.name.clone()),
        },
        ollama_commit: r.ollama.commit.clone().unwrap_or_default(),
        llamacpp_commit: sources.llamacpp_commit.clone(),
        llamacpp_version: r.llamacpp.version.clone(),
        series: applied_series(r, &prepared),
        sources,
        builder: builder.clone(),
        smoke: r.smoke.clone(),
        toolchain: versions,
        glslc_extensions,
        vulkan_shader_features,
        steps: records,
        lib_checks,
        dist_files,
        timings: Timings {
            fetch_and_prepare_s,
            compile_s,
            checks_s,
            total_s,
            orchestrator_fraction: if total_s > 0.0 {
                ((total_s - step_s - fetch_and_prepare_s).max(0.0)) / total_s
            } else {
                0.0
            },
        },
    };
    let json = serde_json::to_vec_pretty(&manifest).expect("manifest serialises");
    crate::fsutil::write_atomic(&tmp.join(Manifest::FILE), &json)
        .map_err(io("writing the manifest".into()))?;
    crate::killpoint::hit("build.manifest-written");
    install_dist(&dest, &tmp)
}

fn io(what: String) -> impl FnOnce(std::io::Error) -> BuildError {
    move |source| BuildError::Io { what, source }
}

/// The trees the steps compile.
struct Trees {
    ollama: PathBuf,
    llama: Option<PathBuf>,
}

/// The dist of `dest`, when its manifest has this input key: nothing to build.
fn cached(dest: &Path, key: &str) -> Option<Built> {
    let dist = dest.join("dist");
    if read_manifest_key(&dist).as_deref() != Some(key) {
        return None;
    }
    // A build killed after its swap left the old dist aside: drop it, unless another
    // build of this dir is running (it holds the lock and may be mid-swap).
    if let Ok(lock) = fs::File::create(dest.join(".build.lock")) {
        if lock.try_lock().is_ok() {
            remove_stale_dists(dest);
        }
    }
    Some(Built {
        manifest: dist.join(Manifest::FILE),
        dist,
        cached: true,
    })
}

/// One build per directory at a time; what killed runs left (old dists, dist.tmp) goes.
fn lock_build_dir(dest: &Path) -> Result<fs::File, BuildError> {
    let lock =
        fs::File::create(dest.join(".build.lock")).map_err(io("creating the build lock".into()))?;
    lock.lock().map_err(io("locking the build dir".into()))?;
    crate::killpoint::hit("build.locked");
    remove_stale_dists(dest);
    let tmp = dest.join("dist.tmp");
    if tmp.exists() {
        fs::remove_dir_all(&tmp)
            .map_err(io(format!("removing the unfinished {}", tmp.display())))?;
    }
    Ok(lock)
}

/// What the builder root must see at the same paths: the build dir, the compiler caches,
/// and the mirrors the trees borrow objects from (git alternates: gen_common.sh's
/// `git am` and CMake's compat-patch check run git in the builder).
fn bind_into_builder(
    builder: &mut Builder,
    dest: &Path,
    caches: &[(String, PathBuf)],
    trees: &Trees,
) -> Result<(), BuildError> {
    for (_, d) in caches {
        fs::create_dir_all(d).map_err(io(format!("creating {}", d.display())))?;
    }
    let mut binds = vec![dest.to_path_buf()];
    binds.extend(caches.iter().map(|(_, d)| d.clone()));
    for tree in std::iter::once(&trees.ollama).chain(trees.llama.as_ref()) {
        if let Ok(t) = fs::read_to_string(tree.join(".git/objects/info/alternates")) {
            binds.extend(
                t.lines()
                    .filter(|l| !l.trim().is_empty())
                    .map(PathBuf::from),
            );
        }
    }
    builder.bind(&binds);
    Ok(())
}

/// The `{name}` values a template's steps and env may use.
fn step_vars(
    r: &Recipe,
    dist: &Path,
    trees: &Trees,
    jobs: usize,
) -> BTreeMap<&'static str, String> {
    let mut vars = BTreeMap::new();
    vars.insert("dist", dist.display().to_string());
    vars.insert("ollama", trees.ollama.display().to_string());
    vars.insert(
        "llama",
        trees
            .llama
            .as_ref()
            .map(|p| p.display().to_string())
            .unwrap_or_default(),
    );
    vars.insert("jobs", jobs.to_string());
    // `ollama --version` says the tag, as upstream's release builds stamp it.
    vars.insert("version", version_var(r));
    vars.insert(
        "go_module",
        fs::read_to_string(trees.ollama.join("go.mod"))
            .ok()
            .and_then(|t| {
                t.lines()
                    .find_map(|l| l.strip_prefix("module ").map(|m| m.trim().to_string()))
            })
            .unwrap_or_else(|| "github.com/ollama/ollama".into()),
    );
    vars
}

/// Every step's environment: the caches and ccache, then the template's `[build] env`.
fn build_env(
    r: &Recipe,
    builder: &Builder,
    caches: &[(String, PathBuf)],
    vars: &BTreeMap<&str, String>,
) -> BTreeMap<String, String> {
    let cache_vars: Vec<(String, String)> = caches
        .iter()
        .map(|(k, d)| (k.clone(), d.display().to_string()))
        .collect();
    let mut env = compile_env(&cache_vars, builder.which("ccache").is_some());
    for (k, v) in &r.build.env {
        env.insert(k.clone(), expand(v, vars));
    }
    env
}

/// The template's `[[build.steps]]`, in order, each logged to `logs/NN-name.log`.
fn run_steps(
    builder: &Builder,
    r: &Recipe,
    dest: &Path,
    trees: &Trees,
    vars: &BTreeMap<&str, String>,
    env: &BTreeMap<String, String>,
    quiet: bool,
) -> Result<Vec<StepRecord>, BuildError> {
    let total = r.build.steps.len();
    let mut records = Vec::new();
    for (i, step) in r.build.steps.iter().enumerate() {
        let argv = step_argv(step, r, vars);
        let cwd = match &step.cwd {
            Some(c) => {
                let c = expand(c, vars);
                if Path::new(&c).is_absolute() {
                    PathBuf::from(c)
                } else {
                    trees.ollama.join(c)
                }
            }
            None => trees.ollama.clone(),
        };
        let mut step_env = env.clone();
        for (k, v) in &step.env {
            step_env.insert(k.clone(), expand(v, vars));
        }
        let log = dest
            .join("logs")
            .join(format!("{:02}-{}.log", i + 1, slug(&step.name)));
        records.push(run_step(
            builder,
            &step.name,
            &argv,
            &cwd,
            &step_env,
            &log,
            i + 1,
            total,
            quiet,
        )?);
        crate::killpoint::hit("build.step-done");
    }
    Ok(records)
}

/// The manifest's record of each series: its pin, per-patch status and commits.
fn applied_series(
    r: &Recipe,
    prepared: &crate::patch::prepare::Prepared,
) -> Vec<crate::contract::AppliedSeries> {
    prepared
        .series
        .iter()
        .map(|s| crate::contract::AppliedSeries {
            name: s.series.clone(),
            repo: s.repo.clone(),
            sha256: r
                .series
                .iter()
                .find(|p| p.name == s.series)
                .map(|p| p.sha256.clone()),
            patches: s
                .patches
                .iter()
                .map(|p| crate::contract::AppliedPatch {
                    patch: p.patch.clone(),
                    status: p.status,
                })
                .collect(),
            commits: prepared
                .trees
                .iter()
                .find(|t| t.repo.to_string() == s.repo)
                .map(|t| t.commits.clone())
                .unwrap_or_default(),
        })
        .collect()
}

/// Swaps the finished `tmp` in as `dest/dist`: the old dist (if any) goes aside, the new
/// one takes its name, the old goes. A kill at any point leaves one whole dist.
fn install_dist(dest: &Path, tmp: &Path) -> Result<Built, BuildError> {
    let dist = dest.join("dist");
    if dist.exists() {
        let old = dest.join(format!("dist.old-{}", std::process::id()));
        fs::rename(&dist, &old).map_err(io("moving the old dist aside".into()))?;
        crate::killpoint::hit("build.old-aside");
        fs::rename(tmp, &dist).map_err(io("moving the new dist into place".into()))?;
        crate::killpoint::hit("build.swapped");
        let _ = fs::remove_dir_all(old);
    } else {
        fs::rename(tmp, &dist).map_err(io("moving the new dist into place".into()))?;
    }
    Ok(Built {
        manifest: dist.join(Manifest::FILE),
        dist,
        cached: false,
    })
}

/// Removes the `dist.old-PID` dirs a build killed mid-swap left (call under the build lock).
fn remove_stale_dists(dest: &Path) {
    for e in fs::read_dir(dest).into_iter().flatten().flatten() {
        if e.file_name().to_string_lossy().starts_with("dist.old-") {
            let _ = fs::remove_dir_all(e.path());
        }
    }
}

fn walk(root: &Path, dir: &Path, out: &mut Vec<DistFile>) {
    let Ok(rd) = fs::read_dir(dir) else { return };
    for e in rd.flatten() {
        let p = e.path();
        let Ok(m) = fs::symlink_metadata(&p) else {
            continue;
        };
        if m.is_dir() {
            walk(root, &p, out);
        } else {
            out.push(DistFile {
                path: p.strip_prefix(root).unwrap_or(&p).display().to_string(),
                bytes: m.len(),
            });
        }
    }
}

/// "-- GL_KHR_cooperative_matrix supported by glslc" / "... not supported by glslc".
fn shader_features_from_logs(steps: &[StepRecord]) -> BTreeMap<String, bool> {
    let mut out = BTreeMap::new();
    for s in steps {
        let Ok(text) = fs::read_to_string(&s.log) else {
            continue;
        };
        for l in text.lines() {
            let l = l.trim_start_matches("-- ").trim();
            if let Some(ext) = l.strip_suffix(" not supported by glslc") {
                out.insert(ext.trim().to_string(), false);
            } else if let Some(ext) = l.strip_suffix(" supported by glslc") {
                out.insert(ext.trim().to_string(), true);
            }
        }
    }
    out
}

/// Every ELF file of the dist must be for `target` (a cross build that fell back to a
/// host compiler somewhere would ship a binary that cannot run).
fn check_machine(dist: &Path, target: crate::target::Arch) -> Result<(), BuildError> {
    let mut files = Vec::new();
    walk(dist, dist, &mut files);
    for f in files {
        let path = dist.join(&f.path);
        let mut head = [0u8; 20];
        let n = fs::File::open(&path)
            .and_then(|mut h| std::io::Read::read(&mut h, &mut head))
            .unwrap_or(0);
        match crate::target::elf_machine_of(&head[..n]) {
            Some(m) if m != target.elf_machine() => {
                return Err(BuildError::LibCheck {
                    lib: f.path.clone(),
                    detail: format!(
                        "is an ELF file for machine {m}, not linux/{target} ({})",
                        target.elf_machine()
                    ),
                    help: "a step used the host's compiler: check that the template's steps leave CC, CXX and CMAKE_TOOLCHAIN_FILE to the build (docs/build.md, cross builds)".into(),
                });
            }
            _ => {}
        }
    }
    Ok(())
}

/// Files matching `full`, whose components may hold `*` globs.
fn glob_files(full: &Path) -> Vec<PathBuf> {
    let mut found = vec![PathBuf::from("/")];
    let comps: Vec<String> = full
        .components()
        .filter(|c| !matches!(c, std::path::Component::RootDir))
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    for (i, comp) in comps.iter().enumerate() {
        let last = i + 1 == comps.len();
        let mut next = Vec::new();
        for dir in &found {
            if !comp.contains('*') {
                let p = dir.join(comp);
                if (last && p.is_file()) || (!last && p.is_dir()) {
                    next.push(p);
                }
                continue;
            }
            let Ok(rd) = fs::read_dir(dir) else { continue };
            for e in rd.flatten() {
                let p = e.path();
                let name = e.file_name().to_string_lossy().into_owned();
                if crate::source::tree::matches_path(comp, &name)
                    && ((last && p.is_file()) || (!last && p.is_dir()))
                {
                    next.push(p);
                }
            }
        }
        found = next;
    }
    found.sort();
    found
}

/// A `.gz` payload unpacked, with its gzipped neighbours (the libraries it links), into a
/// temporary directory beside it, so `ldd` runs where the builder root sees it too.
/// None for other files.
fn gunzip_for_check(lib: &Path) -> Result<Option<(tempfile::TempDir, PathBuf)>, BuildError> {
    if lib.extension().is_none_or(|e| e != "gz") {
        return Ok(None);
    }
    let dir = lib.parent().unwrap_or(Path::new("."));
    let io = |source: std::io::Error| BuildError::Io {
        what: format!("unpacking {} for the library check", lib.display()),
        source,
    };
    let tmp = tempfile::Builder::new()
        .prefix(".ldd-check-")
        .tempdir_in(dir)
        .map_err(io)?;
    for e in fs::read_dir(dir).map_err(io)?.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(stem) = name.strip_suffix(".gz") else {
            continue;
        };
        let out = tmp.path().join(stem);
        let f = fs::File::create(&out).map_err(io)?;
        let ok = std::process::Command::new("gzip")
            .arg("-dc")
            .arg(e.path())
            .stdout(f)
            .status()
            .map_err(io)?
            .success();
        if !ok {
            return Err(BuildError::Tool {
                what: format!("gzip -dc {} failed", e.path().display()),
            });
        }
        let mut perm = fs::metadata(&out).map_err(io)?.permissions();
        std::os::unix::fs::PermissionsExt::set_mode(&mut perm, 0o755);
        fs::set_permissions(&out, perm).map_err(io)?;
    }
    let name = lib.file_name().unwrap_or_default().to_string_lossy();
    let target = tmp.path().join(name.trim_end_matches(".gz"));
    Ok(Some((tmp, target)))
}

/// Every library the template lists must exist and resolve every symbol (`ldd -r` in the
/// builder). A shader that failed to compile leaves undefined `*_len`/`*_data` symbols:
/// the library would not load.
fn check_libs(
    builder: &Builder,
    r: &Recipe,
    vars: &BTreeMap<&str, String>,
    dist: &Path,
) -> Result<Vec<LibCheck>, BuildError> {
    let mut out = Vec::new();
    for entry in &r.build.check_libs {
        // `A | B`: the first alternative that matches anything is checked (tags of one
        // template may put the same library in different places).
        let alternatives: Vec<String> =
            entry.split(" | ").map(|a| expand(a.trim(), vars)).collect();
        let (p, libs) = alternatives
            .iter()
            .map(|p| {
                let full = if Path::new(p).is_absolute() {
                    PathBuf::from(p)
                } else {
                    dist.join(p)
                };
                (p.clone(), glob_files(&full))
            })
            .find(|(_, libs)| !libs.is_empty())
            .unwrap_or_else(|| (alternatives.join(" | "), Vec::new()));
        if libs.is_empty() {
            return Err(BuildError::LibCheck {
                lib: p.clone(),
                detail: "the build did not produce it".into(),
                help: "check the step logs in the build dir's logs/; the template's check_libs names what the era must ship".into(),
            });
        }
        for lib in libs {
            let dir = lib.parent().unwrap_or(dist).to_path_buf();
            // Gzipped runner payloads (gen_linux.sh's `compress`) are checked unpacked.
            let unpacked = gunzip_for_check(&lib)?;
            let target = unpacked
                .as_ref()
                .map(|(_, t)| t.clone())
                .unwrap_or_else(|| lib.clone());
            let mut env = BTreeMap::new();
            let mut ld = vec![dir.display().to_string()];
            if let Some((t, _)) = &unpacked {
                ld.insert(0, t.path().display().to_string());
            }
            ld.push(dist.join("lib/ollama").display().to_string());
            env.insert("LD_LIBRARY_PATH".to_string(), ld.join(":"));
            // `ldd -r` is the host's loader with tracing on; a foreign dist's is the
            // target's loader, run the same way (under qemu-user in the cross root).
            let argv = if builder.target().is_host() {
                vec!["ldd".into(), "-r".into(), target.display().to_string()]
            } else {
                env.insert("LD_TRACE_LOADED_OBJECTS".into(), "1".into());
                env.insert("LD_WARN".into(), "yes".into());
                env.insert("LD_BIND_NOW".into(), "yes".into());
                vec![
                    builder.target().loader().to_string(),
                    target.display().to_string(),
                ]
            };
            let text = builder
                .command(&argv, &dir, &env)
                .stderr_to_stdout()
                .stdout_capture()
                .unchecked()
                .run()
                .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
                .map_err(|source| BuildError::Io {
                    what: "running ldd".into(),
                    source,
                })?;
            let undefined: Vec<String> = text
                .lines()
                .filter_map(|l| l.trim().strip_prefix("undefined symbol: "))
                .map(|l| l.split_whitespace().next().unwrap_or(l).to_string())
                .collect();
            let missing_deps: Vec<String> = text
                .lines()
                .filter(|l| l.contains("=> not found"))
                .map(|l| l.split_whitespace().next().unwrap_or("").to_string())
                .collect();
            let rel = lib.strip_prefix(dist).unwrap_or(&lib).display().to_string();
            let ok = undefined.is_empty() && missing_deps.is_empty();
            if !ok {
                let shader = undefined
                    .iter()
                    .any(|u| u.ends_with("_len") || u.ends_with("_data"));
                return Err(BuildError::LibCheck {
                    lib: rel,
                    detail: format!(
                        "does not load: {} undefined symbol(s) ({}){}",
                        undefined.len(),
                        undefined
                            .iter()
                            .take(5)
                            .cloned()
                            .collect::<Vec<_>>()
                            .join(", "),
                        if missing_deps.is_empty() {
                            String::new()
                        } else {
                            format!("; missing libraries: {}", missing_deps.join(", "))
                        }
                    ),
                    help: if shader {
                        "shaders failed to compile (\"cannot compile\" in the build log): CMake believed glslc supports an extension it does not. Restore ggml-vulkan's vulkan-shaders/feature-tests (our series does) or use a newer glslc (the trixie builder root)".into()
                    } else {
                        "check the libraries it links against in the build log".into()
                    },
                });
            }
            out.push(LibCheck {
                lib: rel,
                ok,
                undefined,
                missing_deps,
            });
        }
    }
    Ok(out)
}
