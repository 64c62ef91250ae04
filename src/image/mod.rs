//! The image stage: the multi-stage Dockerfile rendered from the recipe, built with a
//! local engine (no registry), exported on request. The builder stage replays the
//! template's `[[build.steps]]` — the same data the native build runs, not a second copy —
//! with container paths and the native build's compile environment; the runtime stage gets
//! the era's dist layout, the Vulkan loader + Mesa ICDs and the era's Vulkan switch.
//! `--from-dist` renders the runtime stage alone over a dist `build` made.

pub mod assemble;
pub mod base;
pub mod dpkg;
pub mod engine;
pub mod gosum;
pub mod lock;
pub mod oci;
pub mod provenance;
pub mod sbom;

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::build::{compile_env, expand, step_argv, version_var};
use crate::recipe::model::{LlamaSource, Recipe};
use engine::{Engine, Output};

#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    /// An engine or tool is missing, or cannot do what was asked.
    #[error("{what}\n  help: {help}")]
    Unavailable { what: String, help: String },
    /// A program could not be started at all.
    #[error("running {program}: {source}")]
    Spawn {
        program: String,
        source: std::io::Error,
    },
    /// A command failed, or printed what we refuse; `context` is its own output.
    #[error("{what}\n{context}{}", help.as_deref().map(|h| format!("\n  help: {h}")).unwrap_or_default())]
    Command {
        what: String,
        context: String,
        help: Option<String>,
    },
    #[error("{0}")]
    Usage(String),
    #[error("{what} failed ({engine} exit {status})\n  log: {}\n{tail}", log.display())]
    Failed {
        what: String,
        engine: String,
        status: String,
        log: PathBuf,
        tail: String,
    },
    #[error("{what}: {source}")]
    Io {
        what: String,
        source: std::io::Error,
    },
    #[error(transparent)]
    Provision(#[from] crate::provision::ProvisionError),
    #[error(transparent)]
    Lock(Box<lock::LockError>),
}

impl From<lock::LockError> for ImageError {
    fn from(e: lock::LockError) -> Self {
        ImageError::Lock(Box::new(e))
    }
}

impl crate::error::HasKind for ImageError {
    fn kind(&self) -> crate::error::Kind {
        use crate::error::Kind;
        match self {
            ImageError::Usage(_) => Kind::BadInput,
            ImageError::Lock(e) => e.as_ref().kind(),
            // A refused install is a failure here, whatever provisioning thinks of it.
            ImageError::Provision(_)
            | ImageError::Unavailable { .. }
            | ImageError::Spawn { .. }
            | ImageError::Command { .. }
            | ImageError::Failed { .. }
            | ImageError::Io { .. } => Kind::Failure,
        }
    }
}

/// An image variant: who runs it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Variant {
    /// Linux hosts with /dev/dri (and anything Debian's Mesa drives).
    #[default]
    Linux,
    /// Podman machines on libkrun/krunkit (Apple Silicon): our Venus driver with the
    /// 16 KiB blob fix (recipes/lab/mesa.toml), selected explicitly.
    Krunkit,
}

impl Variant {
    pub fn name(self) -> &'static str {
        match self {
            Variant::Linux => "linux",
            Variant::Krunkit => "krunkit",
        }
    }
}

/// The krunkit variant's Venus driver in the build context.
#[derive(Debug, Clone)]
pub struct KrunkitFiles {
    /// The context directory (relative to the build directory) laid out as `/`.
    pub context_dir: String,
    /// Where the driver and the ICD go in the image (over Debian's, diverted).
    pub driver: String,
    pub icd: String,
}

/// Which Dockerfile to render.
#[derive(Debug, Clone, Default)]
pub struct RenderOptions {
    /// The runtime stage alone, over `dist/` in the build directory.
    pub from_dist: bool,
    /// vulkan-tools (vulkaninfo) in the runtime stage.
    pub with_tools: bool,
    /// The krunkit variant's driver (None: the linux variant).
    pub krunkit: Option<KrunkitFiles>,
}

const TEMPLATE: &str = include_str!("../../Dockerfiles/linux.Dockerfile.in");

/// The runtime stage's own environment, in the Dockerfile's `ENV` and an assembled
/// image's config alike: the server's address and the pipeline caches (ggml's own, with
/// our vk-pipeline-cache series, and the drivers' disk caches), kept across restarts in
/// one volume.
pub const RUNTIME_ENV: &[(&str, &str)] = &[
    ("OLLAMA_HOST", "0.0.0.0:11434"),
    (
        "GGML_VK_PIPELINE_CACHE_DIR",
        "/var/cache/ollama-vulkan/ggml",
    ),
    (
        "__GL_SHADER_DISK_CACHE_PATH",
        "/var/cache/ollama-vulkan/nvidia",
    ),
    ("__GL_SHADER_DISK_CACHE_SIZE", "4294967296"),
    ("__GL_SHADER_DISK_CACHE_SKIP_CLEANUP", "1"),
    ("MESA_SHADER_CACHE_DIR", "/var/cache/ollama-vulkan/mesa"),
    ("MESA_SHADER_CACHE_MAX_SIZE", "4G"),
];

/// Where the pipeline caches live (made in the image, a volume at run time).
pub const CACHE_DIR: &str = "var/cache/ollama-vulkan";
/// Its folders: ggml's VkPipelineCache, NVIDIA's and Mesa's disk caches.
pub const CACHE_SUBDIRS: [&str; 3] = ["ggml", "nvidia", "mesa"];

/// Where the trees and the dist live inside the builder stage.
const SRC: &str = "/build/src";
const DIST: &str = "/build/dist";

/// One shell word (Dockerfile RUN in shell form, ENV values): the audited quoting of
/// [`crate::safe::sh_word`]; a value it refuses is bad input.
fn sh_quote(s: &str) -> Result<String, ImageError> {
    crate::safe::sh_word(s).map_err(refused)
}

fn refused(why: String) -> ImageError {
    ImageError::Usage(format!(
        "refusing to render the Dockerfile: {why}\n  help: fix the value in the recipe (`ollama-vulkan recipe check` names its file and line)"
    ))
}

/// The build's placeholders with container paths; `{jobs}` and `{go_module}` are left to
/// the container's shell (see `word`).
fn vars(r: &Recipe) -> BTreeMap<&'static str, String> {
    let llama = match r.llamacpp.source {
        LlamaSource::FetchContent => format!("{SRC}/llama.cpp"),
        LlamaSource::Submodule => format!("{SRC}/ollama/llm/llama.cpp"),
        LlamaSource::Vendored | LlamaSource::VendoredPlusBackend => String::new(),
    };
    BTreeMap::from([
        ("dist", DIST.to_string()),
        ("ollama", format!("{SRC}/ollama")),
        ("llama", llama),
        ("version", version_var(r)),
    ])
}

/// Where the host's build caches appear in the builder stage (`image` mounts them there;
/// in a plain build they are empty directories).
fn container_caches() -> Vec<(String, String)> {
    crate::build::toolchain::cache_dirs(Path::new("/cache"))
        .into_iter()
        .map(|(k, d)| (k, d.display().to_string()))
        .collect()
}

/// Host settings Go needs in the builder stage (declared ARGs, passed when set).
pub const GO_ARGS: &[&str] = &["GOPROXY", "GOSUMDB", "GONOSUMDB", "GOPRIVATE", "GOFLAGS"];

/// `RUN` that installs `pkgs` with apt only when the base lacks one of them.
fn apt_if_missing(pkgs: &[String]) -> Result<String, ImageError> {
    for p in pkgs {
        crate::safe::package_name(p).map_err(refused)?;
    }
    Ok(format!(
        "RUN pkgs={}; \\\n    if ! dpkg -s $pkgs >/dev/null 2>&1; then \\\n      apt-get update \\\n      && apt-get install -y --no-install-recommends $pkgs \\\n      && rm -rf /var/lib/apt/lists/*; \\\n    fi",
        sh_quote(&pkgs.join(" "))?
    ))
}

/// Renders the `linux` variant's Dockerfile for a per-tag recipe (the full multi-stage
/// build).
pub fn render(r: &Recipe) -> Result<String, ImageError> {
    render_with(r, RenderOptions::default())
}

/// The container-side value of a placeholder the container decides.
fn container_subst(name: &str) -> &'static str {
    match name {
        "{jobs}" => "\"$(nproc)\"",
        _ => "\"$(sed -n 's/^module //p' go.mod)\"",
    }
}

/// One shell word for an argument: literal parts quoted with [`sh_quote`], `{jobs}` and
/// `{go_module}` (anywhere in the argument) left to the container's shell.
fn word(e: &str) -> Result<String, ImageError> {
    if e == "{jobs}" {
        return Ok(container_subst(e).into());
    }
    let mut out = String::new();
    let mut rest = e;
    let mut any = false;
    loop {
        let next = ["{jobs}", "{go_module}"]
            .iter()
            .filter_map(|p| rest.find(p).map(|i| (i, *p)))
            .min();
        match next {
            Some((i, p)) => {
                if i > 0 || !any {
                    out.push_str(&sh_quote(&rest[..i])?);
                }
                out.push_str(container_subst(p));
                rest = &rest[i + p.len()..];
                any = true;
            }
            None => {
                if !any || !rest.is_empty() || out.is_empty() {
                    out.push_str(&sh_quote(rest)?);
                } else {
                    out.push_str("''");
                }
                return Ok(out);
            }
        }
    }
}

/// Renders the `linux` variant's Dockerfile with `opts`. Every recipe value is checked
/// and quoted here again (the loader checked it first): a value that could break out of
/// its line or word is refused, never rendered.
pub fn render_with(r: &Recipe, opts: RenderOptions) -> Result<String, ImageError> {
    let vars = vars(r);
    let mut steps = Vec::new();
    for s in &r.build.steps {
        crate::safe::text(&s.name).map_err(refused)?;
        let words = step_argv(s, r, &vars)
            .iter()
            .map(|a| word(a))
            .collect::<Result<Vec<String>, _>>()?;
        let env = s
            .env
            .iter()
            .map(|(k, v)| crate::safe::env_assign(k, &expand(v, &vars)).map_err(refused))
            .collect::<Result<Vec<String>, _>>()?;
        let cd = match &s.cwd {
            Some(c) => format!("cd {} && ", sh_quote(&expand(c, &vars))?),
            None => String::new(),
        };
        steps.push(format!(
            "# {}\nRUN {cd}{}{}",
            s.name,
            if env.is_empty() {
                String::new()
            } else {
                format!("{} ", env.join(" "))
            },
            words.join(" ")
        ));
    }
    // The native build's compile environment, with the caches at /cache.
    let ccache = r.build.builder_packages.iter().any(|p| p == "ccache");
    let mut env = compile_env(&container_caches(), ccache);
    if ccache {
        // Paths relative to the trees: a rebuilt tree hits the same objects.
        env.insert("CCACHE_BASEDIR".into(), SRC.into());
    }
    let builder_env = env
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .chain(
            r.build
                .env
                .iter()
                .map(|(k, v)| (k.clone(), expand(v, &vars))),
        )
        .map(|(k, v)| crate::safe::dockerfile_env(&k, &v).map(|a| format!("ENV {a}")))
        .collect::<Result<Vec<String>, _>>()
        .map_err(refused)?;
    // Eras 1a/1b embed their runners in the binary; later eras ship lib/ollama beside it.
    let has_libs = r.build.check_libs.iter().any(|l| l.starts_with("lib/"));
    let from = if opts.from_dist {
        "dist".to_string()
    } else {
        format!("--from=builder {DIST}")
    };
    let mut copies = vec![format!("COPY {from}/bin/ollama /usr/bin/ollama")];
    if has_libs {
        copies.push(format!("COPY {from}/lib/ollama /usr/lib/ollama"));
    }
    if let Some(k) = &opts.krunkit {
        for v in [&k.context_dir, &k.driver, &k.icd] {
            crate::safe::text(v).map_err(refused)?;
        }
        copies.push(format!(
            "# krunkit: Mesa's Venus driver built by ollama-vulkan with the 16 KiB blob fix\n\
# (patches/lab/mesa-venus-krunkit) in place of Debian's, which is diverted so an upgrade\n\
# of mesa-vulkan-drivers cannot bring it back.\n\
RUN dpkg-divert --local --rename --add {} \\\n    && dpkg-divert --local --rename --add {}\n\
COPY {}/ /",
            sh_quote(&k.driver)?,
            sh_quote(&k.icd)?,
            k.context_dir
        ));
    }
    let mut runtime_packages = r.image.runtime_packages.clone();
    if opts.with_tools && !runtime_packages.iter().any(|p| p == "vulkan-tools") {
        runtime_packages.push("vulkan-tools".into());
    }
    let builder_stage = if opts.from_dist {
        String::new()
    } else {
        format!(
            "\nFROM ${{BUILDER_IMAGE}} AS builder\n\
# The era's build dependencies; apt runs only when the base lacks them (the\n\
# `ollama-vulkan base --role builder` image has them, and Go at /usr/local/go).\n\
{}\n\
ARG {}\n\
ENV PATH=/usr/local/go/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin\n\
# The native build's compile environment; the caches are empty unless the engine mounts\n\
# the host's there (`ollama-vulkan image` does, with --volume).\n\
{}\n\
COPY src/ {SRC}/\n\
WORKDIR {SRC}/ollama\n\
# The era's compile steps, from the same recipe data as the native build.\n\
{}\n",
            apt_if_missing(&r.build.builder_packages)?,
            // Empty defaults: unset for Go, and no engine warning when the host has none.
            GO_ARGS
                .iter()
                .map(|a| format!("{a}="))
                .collect::<Vec<_>>()
                .join(" "),
            builder_env.join("\n"),
            steps.join("\n")
        )
    };
    let mut image_env = r.image.env.clone();
    if let Some(k) = &opts.krunkit {
        // The Venus ICD alone: the loader never picks lavapipe (or another ICD) instead.
        image_env.insert("VK_DRIVER_FILES".into(), k.icd.clone());
        image_env.insert("VK_ICD_FILENAMES".into(), k.icd.clone());
    }
    let runtime_env: String = image_env
        .iter()
        .map(|(k, v)| crate::safe::dockerfile_env(k, v).map(|a| format!(" \\\n    {a}")))
        .collect::<Result<String, _>>()
        .map_err(refused)?;
    let base = |role: &str, default: &str| -> Result<String, ImageError> {
        let b = r
            .image
            .base
            .get(role)
            .cloned()
            .unwrap_or_else(|| default.to_string());
        crate::safe::image_ref(&b).map_err(refused)?;
        Ok(b)
    };
    let recipe_file = r
        .path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    crate::safe::text(&recipe_file).map_err(refused)?;
    for v in [&r.ollama.tag, &r.ollama.commit].into_iter().flatten() {
        crate::safe::text(v).map_err(refused)?;
        if v.contains(['"', '\\', '$']) {
            return Err(refused(format!(
                "`{}` cannot go into a LABEL",
                crate::safe::show(v)
            )));
        }
    }
    let runtime_packages = apt_if_missing(&runtime_packages)?;
    let fixed_env = RUNTIME_ENV
        .iter()
        .map(|(k, v)| crate::safe::dockerfile_env(k, v))
        .collect::<Result<Vec<String>, _>>()
        .map_err(refused)?
        .join(" \\\n    ");
    Ok(TEMPLATE
        .replace("{{tool_version}}", env!("CARGO_PKG_VERSION"))
        .replace("{{recipe}}", &recipe_file)
        .replace("{{tag}}", r.ollama.tag.as_deref().unwrap_or(""))
        .replace("{{era}}", r.era.label())
        .replace(
            "{{ollama_commit}}",
            r.ollama.commit.as_deref().unwrap_or(""),
        )
        .replace("{{builder_image}}", &base("builder", "debian:trixie")?)
        .replace("{{runtime_image}}", &base("runtime", "debian:trixie-slim")?)
        .replace(
            "{{context}}",
            if opts.from_dist {
                "dist/ holds what `build` made"
            } else {
                "src/ holds the trees `prepare` made"
            },
        )
        .replace("{{builder_stage}}", &builder_stage)
        .replace("{{runtime_packages}}", &runtime_packages)
        .replace("{{dist_copies}}", &copies.join("\n"))
        .replace("{{fixed_env}}", &fixed_env)
        .replace("{{runtime_env}}", &runtime_env)
        .replace(
            "{{variant}}",
            if opts.krunkit.is_some() {
                "krunkit"
            } else {
                "linux"
            },
        ))
}

/// `--base ROLE[@ARCH]=IMAGE` arguments as a `ROLE[@ARCH]` → image map (`@ARCH`: for that
/// architecture's image only, as a multi-architecture `image` needs one base per arch).
pub fn parse_bases(args: &[String]) -> Result<BTreeMap<String, String>, ImageError> {
    let mut bases = BTreeMap::new();
    for b in args {
        match b.split_once('=') {
            Some((role, img)) if !img.is_empty() => {
                bases.insert(role.to_string(), img.to_string());
            }
            _ => {
                return Err(ImageError::Usage(format!(
                    "--base {b}: expected ROLE=IMAGE, e.g. --base runtime=localhost/ollama-vulkan-runtime:trixie"
                )))
            }
        }
    }
    Ok(bases)
}

/// The base image of each stage the image needs (`runtime`, and `builder` unless
/// from the dist): `--base` overrides, else the recipe's `[image] base`, else Debian's.
/// Default base names are mapped to `arch`'s (`base::for_arch`).
pub fn bases_for(
    r: &Recipe,
    overrides: &BTreeMap<String, String>,
    from_dist: bool,
    arch: crate::target::Arch,
) -> Vec<(&'static str, String)> {
    ["builder", "runtime"]
        .into_iter()
        .filter(|role| !(from_dist && *role == "builder"))
        .map(|role| {
            let img = overrides
                .get(&format!("{role}@{arch}"))
                .or_else(|| overrides.get(role))
                .or_else(|| r.image.base.get(role))
                .cloned()
                .unwrap_or_else(|| {
                    if role == "builder" {
                        "debian:trixie".into()
                    } else {
                        "debian:trixie-slim".into()
                    }
                });
            (role, base::for_arch(&img, arch))
        })
        .collect()
}

pub struct ImageRequest<'a> {
    pub recipe: &'a Recipe,
    /// The build directory: the build context (src/ or dist/ in it).
    pub dest: &'a Path,
    /// The engine that builds it (None with `assemble`: no engine is used).
    pub engine: Option<&'a Engine>,
    /// Write the image natively (`--assemble`) from the dist and the runtime root
    /// tarball, instead of building the Dockerfile with an engine.
    pub assemble: bool,
    /// The runtime root's packages (`base::role_packages`): an assembled image's root
    /// is made from them when the cache lacks it.
    pub runtime_packages: Vec<String>,
    /// The package lock to compare the runtime root with (None: not checked).
    pub lock: Option<PathBuf>,
    /// Drift from the lock (or no entry in it) is an error, and the lock is not written.
    pub locked: bool,
    pub offline: bool,
    pub opts: RenderOptions,
    /// The image's platform (linux/ARCH); another than the host's is made from its dist.
    pub arch: crate::target::Arch,
    /// The krunkit variant's driver, built for `arch` (`mesa::ensure`); None: linux.
    pub krunkit: Option<crate::mesa::MesaVenus>,
    /// `--base ROLE=IMAGE` overrides (`builder`, `runtime`).
    pub bases: BTreeMap<String, String>,
    pub tag: Option<String>,
    pub uid: Option<u32>,
    pub output: Option<Output>,
    /// Run every step (the engine's layer cache is not used).
    pub no_cache: bool,
    /// The host's caches (ccache, Go), mounted into the builder stage.
    pub cache: &'a Path,
    pub quiet: bool,
}

#[derive(Debug, Serialize)]
pub struct ImageReport {
    pub image: String,
    /// linux/ARCH
    pub platform: String,
    /// `linux` or `krunkit`.
    pub variant: String,
    /// The krunkit variant's Venus driver (Debian's version + our series).
    pub mesa: Option<String>,
    pub id: Option<String>,
    pub engine: String,
    /// `source` (builder stage compiles the prepared trees) or `from-dist`.
    pub mode: String,
    pub dockerfile: PathBuf,
    pub context: PathBuf,
    pub bases: BTreeMap<String, String>,
    pub source_date_epoch: Option<i64>,
    pub log: PathBuf,
    pub seconds: f64,
    /// Uncompressed, as the engine reports it.
    pub size_bytes: Option<u64>,
    pub output: Option<Output>,
    /// The archive's size (gzip layers) or the layout's total.
    pub output_bytes: Option<u64>,
    /// The manifest's digest (assembled images: the same inputs give the same digest).
    pub digest: Option<String>,
    /// The labels the image carries (besides the Dockerfile's own).
    pub labels: BTreeMap<String, String>,
    pub sbom: Option<provenance::SbomReport>,
    pub lock: Option<lock::LockReport>,
}

/// `2024-05-01T12:00:00Z` for a Unix time (UTC, no leap seconds).
pub fn rfc3339(t: i64) -> String {
    let days = t.div_euclid(86_400);
    let secs = t.rem_euclid(86_400);
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    )
}

/// The pinned Ollama commit's time: the build's reference time (SOURCE_DATE_EPOCH in
/// the environment wins).
fn source_date_epoch(dest: &Path, r: &Recipe) -> Option<i64> {
    if let Some(t) = std::env::var("SOURCE_DATE_EPOCH")
        .ok()
        .and_then(|v| v.trim().parse().ok())
    {
        return Some(t);
    }
    let repo = git2::Repository::open(dest.join("src/ollama")).ok()?;
    let oid = git2::Oid::from_str(r.ollama.commit.as_deref()?).ok()?;
    let t = repo.find_commit(oid).ok()?.time().seconds();
    Some(t)
}

/// The image name `image` gives by default.
pub fn default_tag(r: &Recipe) -> String {
    format!(
        "localhost/ollama-vulkan:{}",
        r.ollama.tag.as_deref().unwrap_or("dev")
    )
}

/// The image name of a variant by default: `…:TAG` for linux, `…:TAG-krunkit`.
pub fn default_variant_tag(r: &Recipe, variant: Variant) -> String {
    match variant {
        Variant::Linux => default_tag(r),
        Variant::Krunkit => format!("{}-krunkit", default_tag(r)),
    }
}

/// Renders the Dockerfile into the build directory and builds it.
pub fn image(req: &ImageRequest<'_>) -> Result<ImageReport, ImageError> {
    let started = std::time::Instant::now();
    let r = req.recipe;
    let variant = if req.krunkit.is_some() {
        Variant::Krunkit
    } else {
        Variant::Linux
    };
    if !r.image.variants.is_empty() && !r.image.variants.iter().any(|v| v == variant.name()) {
        return Err(ImageError::Usage(format!(
            "{} lists image variants {:?}, not `{}`\n  help: add \"{2}\" to [image] variants (the era templates list linux and krunkit)",
            r.path.display(),
            r.image.variants,
            variant.name()
        )));
    }
    for (k, v) in &req.bases {
        let (role, arch) = k.split_once('@').unwrap_or((k, ""));
        if (role != "builder" && role != "runtime")
            || !(arch.is_empty() || crate::target::Arch::parse(arch).is_some())
        {
            return Err(ImageError::Usage(format!(
                "--base {}=…: the stages are `builder` and `runtime`, optionally for one architecture (`runtime@arm64`)\n  help: --base builder=IMAGE --base runtime=IMAGE --base runtime@arm64=IMAGE",
                crate::safe::show(k)
            )));
        }
        crate::safe::image_ref(v).map_err(|why| {
            ImageError::Usage(format!(
                "--base {k}=…: {why}\n  help: name a local image, e.g. --base {k}=localhost/ollama-vulkan-{k}:trixie"
            ))
        })?;
    }
    if !req.arch.is_host() && !req.opts.from_dist {
        return Err(ImageError::Usage(format!(
            "an image for linux/{} is assembled from its dist on this linux/{} machine (compiling in an emulated builder stage would take hours)\n  help: ollama-vulkan build {} --arch {0}, then image --arch {0} --from-dist",
            req.arch,
            crate::target::Arch::host(),
            r.path.display()
        )));
    }
    let io = |what: String| move |e: std::io::Error| ImageError::Io { what, source: e };
    let dest = fs::canonicalize(req.dest).map_err(io(format!(
        "the build directory {} (make it with `ollama-vulkan build` or `prepare`)",
        req.dest.display()
    )))?;
    let has_libs = r.build.check_libs.iter().any(|l| l.starts_with("lib/"));
    if req.opts.from_dist {
        for need in ["dist/bin/ollama"]
            .into_iter()
            .chain(has_libs.then_some("dist/lib/ollama"))
        {
            if !dest.join(need).exists() {
                return Err(ImageError::Usage(format!(
                    "--from-dist: {} is missing\n  help: run `ollama-vulkan build {}` first (or pass --dest to the build directory that has dist/)",
                    dest.join(need).display(),
                    r.path.display()
                )));
            }
        }
    } else if !dest.join("src/ollama").is_dir() {
        return Err(ImageError::Usage(format!(
            "{} has no prepared tree (src/ollama)\n  help: run `ollama-vulkan prepare {}` first, or build the image from a dist with --from-dist",
            dest.display(),
            r.path.display()
        )));
    }
    if req.assemble && !req.opts.from_dist {
        return Err(ImageError::Usage(
            "--assemble packs a dist: add --from-dist (build it first with `ollama-vulkan build`)"
                .into(),
        ));
    }
    if req.assemble && req.uid.is_some() {
        return Err(ImageError::Usage(
            "--assemble runs no commands in the image, so it cannot make the user --uid needs\n  help: build with an engine for --uid (drop --assemble)".into(),
        ));
    }
    let engine = match (req.engine, req.assemble) {
        (Some(e), _) => Some(e),
        (None, true) => None,
        (None, false) => {
            return Err(ImageError::Usage(
                "no container engine given (and --assemble not asked for)".into(),
            ))
        }
    };
    // Local bases must exist: there is no registry to pull them from.
    let mut bases = BTreeMap::new();
    for (role, img) in bases_for(r, &req.bases, req.opts.from_dist, req.arch) {
        let missing = match (engine, req.assemble) {
            (Some(e), false) => img.starts_with("localhost/") && !e.has_image(&img)?,
            _ => false,
        };
        if missing {
            return Err(ImageError::Usage(format!(
                "the {role} base {img} is not in {}'s local storage (and there is no registry to pull it from)\n  help: ollama-vulkan base --suite trixie --role {role}   (or --base {role}=IMAGE)",
                engine.map(|e| e.kind.name()).unwrap_or("the engine")
            )));
        }
        bases.insert(role.to_string(), img);
    }

    let mut opts = req.opts.clone();
    if let Some(m) = &req.krunkit {
        opts.krunkit = Some(stage_krunkit(&dest, m)?);
    }
    let text = render_with(r, opts.clone())?;
    let dockerfile = dest.join(format!("Dockerfile.{}", variant.name()));
    let ignore = dest.join(format!("Dockerfile.{}.dockerignore", variant.name()));
    let krunkit_ctx = opts
        .krunkit
        .as_ref()
        .map(|k| format!("!{}/\n", k.context_dir))
        .unwrap_or_default();
    let ignore_text = if req.opts.from_dist {
        let mut s = String::from("# Build context: the dist alone.\n*\n!dist/bin/\n");
        if has_libs {
            s.push_str("!dist/lib/\n");
        }
        s.push_str(&krunkit_ctx);
        s
    } else {
        let mut s = String::from(
            "# Build context: the prepared trees, without git metadata (its objects live in\n# the host's mirrors) or the host's carried build directories.\n*\n!src/\nsrc/*/.git\n",
        );
        for d in &r.build.keep_build_dirs {
            s.push_str(&format!("src/*/{d}\n"));
        }
        s.push_str(&krunkit_ctx);
        s
    };
    crate::fsutil::write_atomic(&dockerfile, text.as_bytes())
        .map_err(io(format!("writing {}", dockerfile.display())))?;
    crate::killpoint::hit("image.dockerfile-written");
    crate::fsutil::write_atomic(&ignore, ignore_text.as_bytes())
        .map_err(io(format!("writing {}", ignore.display())))?;
    crate::killpoint::hit("image.ignore-written");

    let tag = req
        .tag
        .clone()
        .unwrap_or_else(|| default_variant_tag(r, variant));
    let epoch = source_date_epoch(&dest, r);
    let mut build_args: Vec<(String, String)> = Vec::new();
    for (role, arg) in [("builder", "BUILDER_IMAGE"), ("runtime", "RUNTIME_IMAGE")] {
        if let Some(b) = bases.get(role) {
            build_args.push((arg.into(), b.clone()));
        }
    }
    if let Some(uid) = req.uid {
        build_args.push(("OLLAMA_UID".into(), uid.to_string()));
    }
    if let Some(t) = epoch {
        build_args.push(("SOURCE_DATE_EPOCH".into(), t.to_string()));
    }
    if !req.opts.from_dist {
        for k in GO_ARGS {
            if let Ok(v) = std::env::var(k) {
                build_args.push((k.to_string(), v));
            }
        }
    }
    let mode = if req.opts.from_dist {
        "from-dist"
    } else {
        "source"
    };
    let mut labels: Vec<(String, String)> = vec![
        (
            "org.opencontainers.image.source".into(),
            r.ollama.url.clone(),
        ),
        (
            "io.ollama-vulkan.recipe".into(),
            r.path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
        ),
        ("io.ollama-vulkan.era".into(), r.era.label().to_string()),
        ("io.ollama-vulkan.variant".into(), variant.name().into()),
        ("io.ollama-vulkan.build".into(), mode.into()),
        (
            "io.ollama-vulkan.tool".into(),
            format!("ollama-vulkan {}", env!("CARGO_PKG_VERSION")),
        ),
        // How `smoke --image` switches Vulkan on and off for this era (run-time settings,
        // never baked into the image's environment).
        (
            crate::smoke::SMOKE_LABEL.into(),
            serde_json::to_string(&r.smoke).expect("smoke table serialises"),
        ),
    ];
    if let Some(t) = epoch {
        labels.push(("org.opencontainers.image.created".into(), rfc3339(t)));
    }
    if let Some(m) = &req.krunkit {
        labels.push(("io.ollama-vulkan.mesa".into(), m.version.clone()));
        labels.push((
            "io.ollama-vulkan.mesa-driver-sha256".into(),
            m.driver_sha256.clone(),
        ));
    }
    let manifest = if req.opts.from_dist {
        crate::contract::Manifest::read(&dest.join("dist")).ok()
    } else {
        None
    };
    if req.opts.from_dist {
        if let Some(m) = &manifest {
            labels.push((
                "io.ollama-vulkan.dist-input-key".into(),
                m.input_key.clone(),
            ));
        }
        // The dist must be for the image's platform (its manifest says; ELF files of a
        // dist without one are checked by `build`).
        let dist_arch = manifest
            .as_ref()
            .map(|m| m.target)
            .unwrap_or_else(crate::target::Arch::host);
        if dist_arch != req.arch {
            return Err(ImageError::Usage(format!(
                "{} is a linux/{dist_arch} dist; the image is for linux/{}\n  help: build the dist with `ollama-vulkan build {} --arch {1}` (its build dir has the -{1} suffix), or pass --dest to that build dir",
                dest.join("dist").display(),
                req.arch,
                r.path.display()
            )));
        }
    }
    labels.extend(provenance::labels(r, manifest.as_ref())?);
    let sbom_name = sbom::file_name(&tag, variant.name(), req.arch);
    labels.push((provenance::SBOM_LABEL.into(), sbom_name.clone()));
    let (go_modules, go_sum) = provenance::go_modules(&dest)?;
    let runtime_base = bases.get("runtime").cloned().unwrap_or_default();
    let suite = base::parse_default_tag(&runtime_base).map(|(_, s, _)| s);
    let binary_sha256 = if req.opts.from_dist {
        oci::file_sha256(&dest.join("dist/bin/ollama")).ok()
    } else {
        None
    };
    let sbom_doc = |debs: &dpkg::Installed, epoch: i64| {
        sbom::document(&sbom::SbomInput {
            image: &tag,
            platform: req.arch.platform(),
            variant: variant.name(),
            created: epoch,
            recipe: r,
            manifest: manifest.as_ref(),
            go_modules: &go_modules,
            debs,
            suite: suite.as_deref(),
            mesa: req.krunkit.as_ref(),
            binary_sha256: binary_sha256.clone(),
        })
    };
    // Beside the image: in the build directory, and beside the export.
    let sbom_files = |out: Option<&Output>| {
        let mut f = vec![dest.join(&sbom_name)];
        if let Some(Output::OciArchive(p) | Output::Oci(p)) = out {
            let dir = p
                .parent()
                .filter(|d| !d.as_os_str().is_empty())
                .unwrap_or(Path::new("."));
            f.push(dir.join(&sbom_name));
        }
        f.dedup();
        f
    };
    let sbom_report =
        |files: Vec<PathBuf>, sha256: String, debs: &dpkg::Installed| provenance::SbomReport {
            files,
            sha256,
            debian_packages: debs.len(),
            go_modules: go_modules.len(),
            go_sum: go_sum.clone(),
        };

    if req.assemble {
        let epoch = epoch.ok_or_else(|| {
            ImageError::Usage(format!(
                "--assemble needs a reference time for the image's files: {} has no Ollama commit to take it from\n  help: set SOURCE_DATE_EPOCH, or prepare the tree (`ollama-vulkan prepare {}`)",
                dest.join("src/ollama").display(),
                r.path.display()
            ))
        })?;
        let Some((base::Role::Runtime, suite, _)) = base::parse_default_tag(&runtime_base) else {
            return Err(ImageError::Usage(format!(
                "--assemble packs a Debian root made by mmdebstrap (`ollama-vulkan base`), not the image {runtime_base}\n  help: drop --base runtime=…, or build with an engine (drop --assemble)"
            )));
        };
        let mut packages = req.runtime_packages.clone();
        if opts.with_tools && !packages.iter().any(|p| p == "vulkan-tools") {
            packages.push("vulkan-tools".into());
        }
        let root = base::root_tarball(&base::RootRequest {
            suite: &suite,
            role: base::Role::Runtime,
            arch: req.arch,
            packages: packages.clone(),
            cache: req.cache,
            offline: req.offline,
        })?;
        let progress =
            crate::progress::Progress::start(format!("reading the root {}", root.path.display()));
        let tar = oci::RootTar::index(&root.path).map_err(|why| {
            ImageError::Usage(format!(
                "{}: {why}\n  help: delete it; the next `image --assemble` (or `base`) makes it again",
                root.path.display()
            ))
        })?;
        progress.finish(&format!("{} entries", tar.entries.len()));
        let origin = root.path.display().to_string();
        let debs = provenance::packages(
            tar.read(dpkg::STATUS, dpkg::MAX_STATUS)
                .map_err(|why| ImageError::Usage(format!("{origin}: {why}")))?,
            &origin,
        )?;
        let missing: Vec<&String> = packages
            .iter()
            .filter(|p| !debs.values().any(|d| &d.name == *p))
            .collect();
        if !missing.is_empty() {
            return Err(ImageError::Usage(format!(
                "the runtime root {origin} lacks {missing:?}: --assemble installs nothing\n  help: delete the root tarball (it is remade with the packages), or add them to recipes/base/packages.toml"
            )));
        }
        let lock = provenance::check_lock(
            req.lock.as_deref(),
            &runtime_base,
            req.arch,
            &debs,
            req.locked,
        )?;
        let doc = sbom_doc(&debs, epoch);
        let out = req.output.clone().unwrap_or_else(|| {
            Output::OciArchive(dest.join(sbom_name.replace(".spdx.json", ".oci.tar")))
        });
        let files = sbom_files(Some(&out));
        let sha = provenance::write(&doc, &files)?;
        labels.push((provenance::SBOM_SHA_LABEL.into(), sha.clone()));
        // The Dockerfile's own LABELs, for an engine-built image.
        labels.push((
            "org.opencontainers.image.title".into(),
            "ollama-vulkan".into(),
        ));
        labels.push((
            "org.opencontainers.image.description".into(),
            format!(
                "Ollama {} with the Vulkan backend ({} variant)",
                r.ollama.tag.as_deref().unwrap_or(""),
                variant.name()
            ),
        ));
        let label_map = provenance::label_map(&labels);
        let mut env = vec![base::path_env(base::Role::Runtime).to_string()];
        env.extend(RUNTIME_ENV.iter().map(|(k, v)| format!("{k}={v}")));
        let mut image_env = r.image.env.clone();
        if let Some(k) = &opts.krunkit {
            image_env.insert("VK_DRIVER_FILES".into(), k.icd.clone());
            image_env.insert("VK_ICD_FILENAMES".into(), k.icd.clone());
        }
        for (k, v) in &image_env {
            crate::safe::env_key(k)
                .and_then(|_| crate::safe::env_value(v))
                .map_err(refused)?;
            env.push(format!("{k}={v}"));
        }
        let mut annotations: BTreeMap<String, String> = label_map
            .iter()
            .filter(|(k, _)| k.starts_with("org.opencontainers.image."))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        annotations.insert(
            "org.opencontainers.image.ref.name".into(),
            assemble::ref_name(&tag),
        );
        let progress = crate::progress::Progress::start(format!("assembling {tag}"));
        let done = assemble::assemble(&assemble::AssembleInput {
            root: &tar,
            dist: &dest.join("dist"),
            has_libs,
            arch: req.arch,
            epoch,
            env,
            labels: label_map.clone(),
            annotations,
            krunkit: req.krunkit.as_ref(),
            tag: &tag,
            out: &out,
            root_history: format!(
                "mmdebstrap --variant=minbase {suite} ({}): {}",
                req.arch,
                root.packages.join(",")
            ),
        })?;
        progress.finish(&done.digest);
        return Ok(ImageReport {
            id: Some(done.config_digest.clone()),
            size_bytes: None,
            image: tag,
            platform: req.arch.platform(),
            variant: variant.name().into(),
            mesa: req.krunkit.as_ref().map(|m| m.version.clone()),
            engine: "none (assembled)".into(),
            mode: "assembled".into(),
            dockerfile,
            context: dest,
            bases,
            source_date_epoch: Some(epoch),
            log: PathBuf::new(),
            seconds: started.elapsed().as_secs_f64(),
            output: Some(out),
            output_bytes: Some(done.output_bytes),
            digest: Some(done.digest),
            labels: label_map,
            sbom: Some(sbom_report(files, sha, &debs)),
            lock,
        });
    }
    let engine = engine.expect("an engine unless assembling");
    let mut volumes = Vec::new();
    if !req.opts.from_dist {
        for ((_, host), (_, inside)) in crate::build::toolchain::cache_dirs(req.cache)
            .into_iter()
            .zip(container_caches())
        {
            fs::create_dir_all(&host).map_err(io(format!("creating {}", host.display())))?;
            volumes.push((host, inside));
        }
    }
    let mut args = engine.build_args(
        &dockerfile,
        &ignore,
        &dest,
        &tag,
        &build_args,
        &labels,
        &volumes,
        epoch,
        (!req.arch.is_host()).then_some(req.arch),
    );
    if req.no_cache {
        args.insert(1, "--no-cache".into());
    }
    let log = dest
        .join("logs")
        .join(format!("image-{}.log", variant.name()));
    let mut env: Vec<(String, String)> = Vec::new();
    if let Some(t) = epoch {
        env.push(("SOURCE_DATE_EPOCH".into(), t.to_string()));
    }
    if !req.quiet {
        eprintln!(
            "  building {tag} with {} ({mode}; log {})",
            engine.kind.name(),
            log.display()
        );
    }
    engine.streamed(&format!("building {tag}"), args, &env, &log, req.quiet)?;
    crate::killpoint::hit("image.built");
    // What the image holds now: its dpkg status (the base's, and whatever apt added).
    let status = engine.read_image_file(&tag, dpkg::STATUS, dpkg::MAX_STATUS)?;
    let (debs, lock) = if status.is_none() && !req.locked {
        // Not a Debian root (a base of the user's): nothing to list or lock.
        eprintln!(
            "warning: {tag} has no /{}: its SBOM lists no Debian packages and the package lock is not checked",
            dpkg::STATUS
        );
        (dpkg::Installed::new(), None)
    } else {
        let debs = provenance::packages(status, &format!("the image {tag}"))?;
        let lock = provenance::check_lock(
            req.lock.as_deref(),
            &runtime_base,
            req.arch,
            &debs,
            req.locked,
        )?;
        (debs, lock)
    };
    let doc = sbom_doc(
        &debs,
        epoch.unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs() as i64)
                .unwrap_or(0)
        }),
    );
    let files = sbom_files(req.output.as_ref());
    let sha = provenance::write(&doc, &files)?;
    let mut output_bytes = None;
    if let Some(out) = &req.output {
        let progress = crate::progress::Progress::start(format!("exporting {tag}"));
        engine.export(&tag, out)?;
        crate::killpoint::hit("image.exported");
        let p = match out {
            Output::OciArchive(p) | Output::Oci(p) => p,
        };
        output_bytes = Some(crate::fsutil::dir_bytes(p));
        progress.finish(&p.display().to_string());
    }
    Ok(ImageReport {
        id: engine.image_id(&tag)?,
        size_bytes: engine.image_size(&tag)?,
        image: tag,
        platform: req.arch.platform(),
        variant: variant.name().into(),
        mesa: req.krunkit.as_ref().map(|m| m.version.clone()),
        engine: engine.kind.name().into(),
        mode: mode.into(),
        dockerfile,
        context: dest,
        bases,
        source_date_epoch: epoch,
        log,
        seconds: started.elapsed().as_secs_f64(),
        output: req.output.clone(),
        output_bytes,
        digest: None,
        labels: provenance::label_map(&labels),
        sbom: Some(sbom_report(files, sha, &debs)),
        lock,
    })
}

/// Copies the krunkit driver and ICD into the build context (`krunkit-ARCH/`, laid out as
/// the image's `/`), replacing an older copy.
fn stage_krunkit(dest: &Path, m: &crate::mesa::MesaVenus) -> Result<KrunkitFiles, ImageError> {
    let context_dir = format!("krunkit-{}", m.arch);
    let root = dest.join(&context_dir);
    let io = |what: String| move |e: std::io::Error| ImageError::Io { what, source: e };
    if root.exists() {
        fs::remove_dir_all(&root).map_err(io(format!("removing {}", root.display())))?;
    }
    for (from, to) in [
        (&m.driver, &m.driver_install_path),
        (&m.icd, &m.icd_install_path),
    ] {
        let inside = root.join(to.strip_prefix("/").unwrap_or(to));
        if let Some(p) = inside.parent() {
            fs::create_dir_all(p).map_err(io(format!("creating {}", p.display())))?;
        }
        fs::copy(from, &inside).map_err(io(format!(
            "copying {} into the build context",
            from.display()
        )))?;
    }
    Ok(KrunkitFiles {
        context_dir,
        driver: m.driver_install_path.display().to_string(),
        icd: m.icd_install_path.display().to_string(),
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn rfc3339_dates() {
        assert_eq!(super::rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(super::rfc3339(1_704_067_200), "2024-01-01T00:00:00Z");
        assert_eq!(super::rfc3339(951_868_799), "2000-02-29T23:59:59Z");
    }
}
