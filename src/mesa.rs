//! Mesa's Venus Vulkan driver for krunkit (docs/VENUS.md, "Mesa for krunkit").
//!
//! Stock Mesa newer than 24.1.2 fails under krunkit on Apple Silicon
//! (`VK_ERROR_OUT_OF_HOST_MEMORY`): Hypervisor.framework maps only whole 16 KiB pages and
//! Venus' blobs are not sized so. Our series `patches/lab/mesa-venus-krunkit` sizes every
//! blob in 16 KiB units. This module builds Debian trixie's mesa source package with that
//! series, Venus alone, in the trixie builder root.
//!
//! Input: `recipes/lab/mesa.toml` (untrusted, checked: every error names the file and the
//! key, exit 2). Source: the Debian source package, verified by the SHA-256 of its `.dsc`
//! (which pins the other tarballs) and of its orig tarball; from `--mirror mesa=DIR` (a
//! directory holding them) or `apt-get source` in the root. Output:
//! `<cache>/mesa/venus-<arch>-<key>/` with `libvulkan_virtio.so`, the ICD
//! `virtio_icd.json` (Debian's name; its `library_path` is where an image puts the driver:
//! `/usr/lib/<triplet>/libvulkan_virtio.so`) and `build.json`; published whole
//! (temp dir + rename) under a lock. Cache key: source hashes + series hash + meson options
//! + target architecture + the root's package set.

use std::collections::BTreeMap;
use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::build::builder::{Builder, BuilderChoice};
use crate::image::base::Arch;
use crate::patch::engine::{apply_patch, DirSource, Overlay};
use crate::patch::series::Series;
use crate::source::{Mirrors, RepoName};

/// Where the Mesa recipe lives in a project.
pub const RECIPE: &str = "lab/mesa.toml";
/// The driver's file name, in the output and in an image.
pub const DRIVER: &str = "libvulkan_virtio.so";
/// Where an image puts the ICD: Debian trixie's own name for it, so ours replaces
/// mesa-vulkan-drivers' (two Venus ICDs would list the device twice).
pub const ICD_INSTALL_PATH: &str = "/usr/share/vulkan/icd.d/virtio_icd.json";
/// The output's layout, part of the cache key.
const LAYOUT: &str = "layout-1";

#[derive(Debug, thiserror::Error)]
pub enum MesaError {
    #[error("{file}: {why}\n  help: {help}")]
    Recipe {
        file: PathBuf,
        why: String,
        help: String,
    },
    #[error("the mesa source package: {why}\n  help: {help}")]
    Source { why: String, help: String },
    #[error(transparent)]
    Build(#[from] crate::build::BuildError),
    #[error("the Mesa build made no {what}\n  log: {}\n{tail}", log.display())]
    Output {
        what: String,
        log: PathBuf,
        tail: String,
    },
    #[error("{what}: {source}")]
    Io {
        what: String,
        source: std::io::Error,
    },
}

impl crate::error::HasKind for MesaError {
    fn kind(&self) -> crate::error::Kind {
        use crate::error::Kind;
        match self {
            MesaError::Recipe { .. } => Kind::BadInput,
            // A --mirror mesa=DIR that lacks the files, or files that do not match their
            // pins, is bad input; so is a source that cannot be fetched offline.
            MesaError::Source { .. } => Kind::BadInput,
            MesaError::Build(e) => e.kind(),
            MesaError::Output { .. } | MesaError::Io { .. } => Kind::Failure,
        }
    }
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> MesaError {
    let what = what.into();
    move |source| MesaError::Io { what, source }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct MesaRecipe {
    pub source: DebSource,
    pub series: SeriesPin,
    pub build: MesaBuild,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct DebSource {
    /// The Debian source package's name (`mesa`).
    pub package: String,
    /// Its Debian version, e.g. `25.0.7-2+deb13u1`.
    pub version: String,
    /// SHA-256 of `<package>_<version without epoch>.dsc`.
    pub dsc_sha256: String,
    /// The orig tarball's file name and SHA-256 (the `.dsc` pins it too).
    pub orig: String,
    pub orig_sha256: String,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SeriesPin {
    /// A directory under patches/ (e.g. `lab/mesa-venus-krunkit`).
    pub name: String,
    /// SHA-256 of the series' SHA256SUMS: the pin.
    pub sha256: String,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct MesaBuild {
    pub meson_options: Vec<String>,
    /// Added to the builder root's packages for the build.
    pub packages: Vec<String>,
    /// The arm64 cross build's libraries, installed as `NAME:arm64`.
    #[serde(default)]
    pub packages_arm64: Vec<String>,
}

fn is_sha256(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// A Debian version (Policy §5.6.12): `[epoch:]upstream[-revision]`, of
/// `[A-Za-z0-9.+~:-]`, starting with a digit.
fn debian_version(v: &str) -> bool {
    !v.is_empty()
        && v.len() <= 128
        && v.as_bytes()[0].is_ascii_digit()
        && v.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b".+~:-".contains(&b))
}

/// Meson options the recipe may not set: the tool decides where the driver goes and what
/// it is built for.
const TOOL_OPTIONS: &[&str] = &[
    "prefix",
    "libdir",
    "bindir",
    "datadir",
    "sysconfdir",
    "includedir",
    "libexecdir",
    "cross-file",
    "native-file",
    "vulkan-icd-dir",
];

impl MesaRecipe {
    /// `recipes/lab/mesa.toml` of the project, checked like every recipe: one error naming
    /// the file, the key, the value and the fix.
    pub fn load(recipes_dir: &Path) -> Result<MesaRecipe, MesaError> {
        let file = recipes_dir.join(RECIPE);
        let bad = |why: String, help: &str| MesaError::Recipe {
            file: file.clone(),
            why,
            help: help.into(),
        };
        let r: MesaRecipe = crate::safe::read_toml(&file).map_err(|(why, help)| bad(why, &help))?;
        let s = &r.source;
        crate::safe::package_name(&s.package)
            .ok()
            .filter(|()| !s.package.contains(':'))
            .ok_or_else(|| {
                bad(
                    format!(
                        "[source] package `{}` is not a Debian source package name",
                        crate::safe::show(&s.package)
                    ),
                    "e.g. package = \"mesa\"",
                )
            })?;
        if !debian_version(&s.version) {
            return Err(bad(
                format!(
                    "[source] version `{}` is not a Debian version",
                    crate::safe::show(&s.version)
                ),
                "the source package's version, e.g. 25.0.7-2+deb13u1 (apt-cache showsrc mesa)",
            ));
        }
        for (key, v) in [
            ("dsc_sha256", &s.dsc_sha256),
            ("orig_sha256", &s.orig_sha256),
        ] {
            if !is_sha256(v) {
                return Err(bad(
                    format!("[source] {key} `{}` is not a SHA-256", crate::safe::show(v)),
                    "sha256sum the file (64 hex digits)",
                ));
            }
        }
        let orig_ok = crate::safe::file_name(&s.orig).is_ok()
            && s.orig.starts_with(&format!("{}_", s.package))
            && s.orig.contains(".orig.tar.");
        if !orig_ok {
            return Err(bad(
                format!(
                    "[source] orig `{}` is not the package's orig tarball",
                    crate::safe::show(&s.orig)
                ),
                "a file name like mesa_25.0.7.orig.tar.xz (listed in the .dsc)",
            ));
        }
        crate::safe::rel_path(&r.series.name).map_err(|why| {
            bad(
                format!(
                    "[series] name `{}`: {why}",
                    crate::safe::show(&r.series.name)
                ),
                "a directory under patches/, e.g. lab/mesa-venus-krunkit",
            )
        })?;
        if !is_sha256(&r.series.sha256) {
            return Err(bad(
                format!(
                    "[series] sha256 `{}` is not a SHA-256",
                    crate::safe::show(&r.series.sha256)
                ),
                "sha256sum patches/<series>/SHA256SUMS",
            ));
        }
        for o in &r.build.meson_options {
            let name = o
                .strip_prefix("-D")
                .and_then(|rest| rest.split_once('='))
                .map(|(n, _)| n);
            let ok = match name {
                Some(n) => {
                    !n.is_empty()
                        && n.bytes()
                            .all(|b| b.is_ascii_alphanumeric() || b"_-".contains(&b))
                        && !TOOL_OPTIONS.contains(&n)
                        && crate::safe::text(o).is_ok()
                }
                None => false,
            };
            if !ok {
                return Err(bad(
                    format!("[build] meson_options: `{}`", crate::safe::show(o)),
                    "-Dname=value options only; the prefix, libdir and cross file are the tool's",
                ));
            }
        }
        for (key, list) in [
            ("packages", &r.build.packages),
            ("packages_arm64", &r.build.packages_arm64),
        ] {
            for p in list {
                crate::safe::package_name(p)
                    .ok()
                    .filter(|()| !p.contains(':'))
                    .ok_or_else(|| {
                        bad(
                            format!(
                                "[build] {key}: `{}` is not a Debian package name",
                                crate::safe::show(p)
                            ),
                            "Debian package names only (the architecture is the tool's)",
                        )
                    })?;
            }
        }
        Ok(r)
    }

    /// The `.dsc` file name (the version without its epoch).
    pub fn dsc_name(&self) -> String {
        let v = self
            .source
            .version
            .split_once(':')
            .map(|(_, v)| v)
            .unwrap_or(&self.source.version);
        format!("{}_{v}.dsc", self.source.package)
    }
}

/// Where an image puts the driver for `arch` (over Debian's).
fn driver_install_path(arch: Arch) -> PathBuf {
    PathBuf::from(format!("/usr/lib/{}/{DRIVER}", arch.triplet()))
}

/// The packages the build root needs for `target` on top of the builder's: the recipe's,
/// and for arm64 the cross toolchain and the recipe's libraries as `NAME:arm64` (the root
/// must have the arm64 architecture enabled).
pub fn build_packages(recipe: &MesaRecipe, target: Arch) -> Vec<String> {
    let mut p = recipe.build.packages.clone();
    p.extend(crate::build::cross::root_packages(
        target,
        &recipe.build.packages_arm64,
    ));
    p
}

/// The meson cross file for a build of `target` on this host (None when native).
pub fn cross_file(target: Arch) -> Option<String> {
    if target == Arch::host() {
        return None;
    }
    let t = target.triplet();
    let (family, cpu) = match target {
        Arch::Arm64 => ("aarch64", "aarch64"),
        Arch::Amd64 => ("x86_64", "x86_64"),
    };
    Some(format!(
        "[binaries]\n\
         c = '{t}-gcc'\n\
         cpp = '{t}-g++'\n\
         ar = '{t}-ar'\n\
         strip = '{t}-strip'\n\
         pkg-config = 'pkg-config'\n\
         \n\
         [properties]\n\
         pkg_config_libdir = ['/usr/lib/{t}/pkgconfig', '/usr/share/pkgconfig']\n\
         \n\
         [host_machine]\n\
         system = 'linux'\n\
         cpu_family = '{family}'\n\
         cpu = '{cpu}'\n\
         endian = 'little'\n"
    ))
}

pub struct MesaRequest<'a> {
    pub recipes_dir: &'a Path,
    pub patches_dir: &'a Path,
    /// `--mirror mesa=DIR`: directories holding the `.dsc` and its tarballs.
    pub mirrors: &'a Mirrors,
    pub cache: &'a Path,
    pub target: Arch,
    pub offline: bool,
    pub quiet: bool,
}

/// A built Venus driver for one architecture.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MesaVenus {
    /// `<cache>/mesa/venus-<arch>-<key>/`.
    pub dir: PathBuf,
    /// `dir/libvulkan_virtio.so`.
    pub driver: PathBuf,
    /// `dir/virtio_icd.json`: its `library_path` is [`MesaVenus::driver_install_path`].
    pub icd: PathBuf,
    /// Where an image puts the driver: `/usr/lib/<triplet>/libvulkan_virtio.so`.
    pub driver_install_path: PathBuf,
    /// Where an image puts the ICD: [`ICD_INSTALL_PATH`], in place of Debian's.
    pub icd_install_path: PathBuf,
    /// `amd64` or `arm64`.
    pub arch: String,
    /// Debian's version plus our series, for reports: `25.0.7-2+deb13u1 + lab/… (sha12)`.
    pub version: String,
    /// The cache key (hex).
    pub key: String,
    /// SHA-256 of the driver.
    pub driver_sha256: String,
}

const BUILD_JSON: &str = "build.json";

impl MesaVenus {
    fn read(dir: &Path) -> Option<MesaVenus> {
        let text = fs::read_to_string(dir.join(BUILD_JSON)).ok()?;
        let mut m: MesaVenus = serde_json::from_str(&text).ok()?;
        // The cache may have moved: the files are where the directory is now. What reaches
        // an image (install paths, the context dir's arch) is derived, never taken from
        // the state file; an unknown arch means no usable build.
        let arch = Arch::parse(&m.arch)?;
        m.driver = dir.join(DRIVER);
        m.icd = dir.join(m.icd.file_name()?);
        m.dir = dir.to_path_buf();
        m.driver_install_path = driver_install_path(arch);
        m.icd_install_path = PathBuf::from(ICD_INSTALL_PATH);
        (m.driver.is_file() && m.icd.is_file()).then_some(m)
    }
}

/// Builds (or finds) the Venus driver for `req.target` in the trixie builder root with the
/// recipe's packages; another architecture than the host's in the cross root
/// (`build::cross`) with the recipe's `packages_arm64` for the target.
pub fn ensure(req: &MesaRequest<'_>) -> Result<MesaVenus, MesaError> {
    let recipe = MesaRecipe::load(req.recipes_dir)?;
    let base = crate::recipe::packages::load(req.recipes_dir)
        .unwrap_or_else(|_| crate::recipe::packages::compiled());
    let mut packages = base.builder;
    packages.extend(recipe.build.packages.iter().cloned());
    let mut cross = base.cross_target;
    cross.extend(recipe.build.packages_arm64.iter().cloned());
    // The series and its pin, and a --mirror mesa's .dsc, before anything is made.
    load_series(req, &recipe)?;
    check_mirrors(req, &recipe)?;
    let root = Builder::ensure(
        BuilderChoice::Root,
        req.cache,
        &packages,
        req.target,
        &cross,
        req.offline,
    )?;
    ensure_in(req, &recipe, &root)
}

/// The recipe's series, checked against its pin and target.
fn load_series(req: &MesaRequest<'_>, recipe: &MesaRecipe) -> Result<Series, MesaError> {
    let series_dir = req.patches_dir.join(&recipe.series.name);
    let series = Series::load(&series_dir).map_err(|e| MesaError::Recipe {
        file: req.recipes_dir.join(RECIPE),
        why: format!("[series] name {}: {e}", recipe.series.name),
        help: "fix the series, then sha256sum its SHA256SUMS into [series] sha256".into(),
    })?;
    if series.hash != recipe.series.sha256 {
        return Err(MesaError::Recipe {
            file: req.recipes_dir.join(RECIPE),
            why: format!(
                "[series] sha256: series {} hashes to {}, but the recipe pins {}",
                recipe.series.name, series.hash, recipe.series.sha256
            ),
            help: "the series changed after it was pinned: review it, then update sha256".into(),
        });
    }
    if series.target != Some(RepoName::Mesa) {
        return Err(MesaError::Recipe {
            file: series.dir.join("series"),
            why: "the series does not say `# target: mesa`".into(),
            help: "a Mesa series starts with `# target: mesa`".into(),
        });
    }
    Ok(series)
}

/// The same in a given root (which must hold [`build_packages`] for `req.target`).
pub fn ensure_in(
    req: &MesaRequest<'_>,
    recipe: &MesaRecipe,
    root: &Builder,
) -> Result<MesaVenus, MesaError> {
    let series = load_series(req, recipe)?;
    let s = &recipe.source;
    // The root's directory name is its package set (not the cache path): the same build in
    // another cache has the same key.
    let root_key = root
        .root()
        .and_then(|p| p.file_name())
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "host".into());
    let key = crate::patch::series::sha256_hex(
        format!(
            "{LAYOUT}\0{}\0{}\0{}\0{}\0{}\0{}\0{}",
            s.package,
            s.dsc_sha256,
            s.orig_sha256,
            recipe.series.sha256,
            recipe.build.meson_options.join(" "),
            req.target.name(),
            root_key,
        )
        .as_bytes(),
    );
    let dir = req.cache.join("mesa");
    let out = dir.join(format!("venus-{}-{}", req.target.name(), &key[..16]));
    if let Some(m) = MesaVenus::read(&out) {
        return Ok(m);
    }
    fs::create_dir_all(&dir).map_err(io(format!("creating {}", dir.display())))?;
    let lock_path = dir.join(".lock");
    let lock =
        fs::File::create(&lock_path).map_err(io(format!("locking {}", lock_path.display())))?;
    lock.lock()
        .map_err(io(format!("locking {}", lock_path.display())))?;
    if let Some(m) = MesaVenus::read(&out) {
        return Ok(m); // built by a concurrent run while we waited
    }
    // Half-made work of killed runs (we hold the lock: nobody else is building).
    if let Ok(rd) = fs::read_dir(&dir) {
        for e in rd.flatten() {
            if e.file_name().to_string_lossy().starts_with(".tmp-") {
                let _ = fs::remove_dir_all(e.path());
            }
        }
    }
    let work = dir.join(format!(".tmp-{}", std::process::id()));
    let result = build_in(req, recipe, &series, root, &work, &out, &key);
    let _ = fs::remove_dir_all(&work);
    result
}

fn sha256_file(path: &Path) -> std::io::Result<String> {
    let mut f = fs::File::open(path)?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(h.finalize().iter().map(|b| format!("{b:02x}")).collect())
}

/// A `--mirror mesa=DIR` must hold the pinned `.dsc` (its tarballs are checked when read).
fn check_mirrors(req: &MesaRequest<'_>, recipe: &MesaRecipe) -> Result<(), MesaError> {
    let dirs = req.mirrors.explicit(RepoName::Mesa);
    if dirs.is_empty() {
        return Ok(());
    }
    let name = recipe.dsc_name();
    let mut tried = Vec::new();
    for d in dirs {
        let p = d.join(&name);
        match crate::safe::read_regular(&p, 1 << 20) {
            Ok(b)
                if crate::patch::series::sha256_hex(&b)
                    == recipe.source.dsc_sha256.to_ascii_lowercase() =>
            {
                return Ok(())
            }
            Ok(b) => tried.push(format!(
                "{} has SHA-256 {}, the recipe pins {}",
                p.display(),
                crate::patch::series::sha256_hex(&b),
                recipe.source.dsc_sha256
            )),
            Err(e) => tried.push(format!("{}: {e}", p.display())),
        }
    }
    Err(MesaError::Source {
        why: format!("--mirror mesa: {}", tried.join("; ")),
        help: format!(
            "a directory holding {name} and the files it lists (apt-get source --download-only {}={})",
            recipe.source.package, recipe.source.version
        ),
    })
}

/// The files the `.dsc` lists under `Checksums-Sha256` (name → sha256).
fn dsc_files(dsc: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut inside = false;
    for line in dsc.lines() {
        if line.starts_with("Checksums-Sha256:") {
            inside = true;
            continue;
        }
        if inside {
            if !line.starts_with(' ') {
                break;
            }
            let f: Vec<&str> = line.split_whitespace().collect();
            if f.len() == 3 {
                out.push((f[2].to_string(), f[0].to_ascii_lowercase()));
            }
        }
    }
    out
}

/// Puts the verified source package into `dst` (a new directory): from a `--mirror
/// mesa=DIR`, from the download cache, or fetched with apt-get in the root.
fn fetch_source(
    req: &MesaRequest<'_>,
    recipe: &MesaRecipe,
    root: &Builder,
    work: &Path,
    dst: &Path,
) -> Result<(), MesaError> {
    let s = &recipe.source;
    let dsc_name = recipe.dsc_name();
    let downloads = req.cache.join("mesa").join("sources").join(format!(
        "{}_{}",
        s.package,
        s.dsc_sha256.get(..16).unwrap_or("")
    ));
    let mut candidates: Vec<PathBuf> = req.mirrors.explicit(RepoName::Mesa).to_vec();
    let explicit = !candidates.is_empty();
    if !explicit {
        candidates.push(downloads.clone());
    }
    let mut tried = Vec::new();
    for c in &candidates {
        match verified_copy(recipe, &dsc_name, c, dst) {
            Ok(()) => return Ok(()),
            Err(why) => tried.push(format!("{}: {why}", c.display())),
        }
    }
    if explicit {
        return Err(MesaError::Source {
            why: format!("--mirror mesa: {}", tried.join("; ")),
            help: format!(
                "a directory holding {dsc_name}, {} and the other files the .dsc lists (apt-get source --download-only {}={})",
                s.orig, s.package, s.version
            ),
        });
    }
    if req.offline {
        return Err(MesaError::Source {
            why: format!("{dsc_name} is not in {} and --offline forbids fetching it", downloads.display()),
            help: "pass --mirror mesa=DIR (a directory with the .dsc and its tarballs), or run once online".into(),
        });
    }
    // apt-get source in the root, from the deb-src of the suites its sources.list names.
    let apt = work.join("apt");
    let fetched = work.join("fetched");
    for d in [
        apt.join("state/lists/partial"),
        apt.join("cache/archives/partial"),
        fetched.clone(),
    ] {
        fs::create_dir_all(&d).map_err(io(format!("creating {}", d.display())))?;
    }
    let list = root_deb_src(root).ok_or_else(|| MesaError::Source {
        why: "the builder root's /etc/apt/sources.list names no Debian mirror".into(),
        help: "pass --mirror mesa=DIR (a directory with the .dsc and its tarballs)".into(),
    })?;
    fs::write(apt.join("sources.list"), list).map_err(io("writing the deb-src list"))?;
    let opts = |v: &mut Vec<String>| {
        v.extend([
            format!(
                "-oDir::Etc::SourceList={}",
                apt.join("sources.list").display()
            ),
            "-oDir::Etc::SourceParts=/dev/null".into(),
            format!("-oDir::State={}", apt.join("state").display()),
            format!("-oDir::Cache={}", apt.join("cache").display()),
            "-oAPT::Sandbox::User=root".into(),
            "-qq".into(),
        ])
    };
    let mut update = vec!["apt-get".to_string()];
    opts(&mut update);
    update.push("update".into());
    let mut source = vec!["apt-get".to_string()];
    opts(&mut source);
    source.extend([
        "source".into(),
        "--download-only".into(),
        format!("{}={}", s.package, s.version),
    ]);
    let mut root = root.clone();
    root.bind(&[work.to_path_buf()]);
    let logs = req.cache.join("logs");
    let steps = [
        ("apt-get update (deb-src)", update),
        ("apt-get source", source),
    ];
    for (i, (what, argv)) in steps.iter().enumerate() {
        let log = logs.join(format!(
            "mesa-{}.log",
            what.split(' ')
                .next_back()
                .unwrap_or(what)
                .trim_matches(|c| c == '(' || c == ')')
        ));
        crate::build::run::run_step(&root, what, argv, &fetched, &BTreeMap::new(), &log, i + 1, steps.len(), req.quiet)
            .map_err(|e| MesaError::Source {
                why: e.to_string(),
                help: format!(
                    "the mirror may no longer carry {}={} (Debian drops superseded versions): pass --mirror mesa=DIR with the files, or pin the current version",
                    s.package, s.version
                ),
            })?;
    }
    verified_copy(recipe, &dsc_name, &fetched, dst).map_err(|why| MesaError::Source {
        why: format!("the downloaded package: {why}"),
        help: "the mirror served other files than the recipe pins: check [source] version and the hashes".into(),
    })?;
    // Kept for the next build (verified again when read).
    let _ = fs::remove_dir_all(&downloads);
    if let Some(p) = downloads.parent() {
        let _ = fs::create_dir_all(p);
    }
    let tmp = downloads.with_extension("tmp");
    let _ = fs::remove_dir_all(&tmp);
    if copy_dir_files(dst, &tmp).is_ok() {
        let _ = fs::rename(&tmp, &downloads);
    }
    Ok(())
}

/// The root's `deb` lines as `deb-src` lines (its mirror, suites and components).
fn root_deb_src(root: &Builder) -> Option<String> {
    let text = fs::read_to_string(root.host_path(Path::new("/etc/apt/sources.list"))).ok()?;
    let mut out = String::new();
    for line in text.lines() {
        let mut w = line.split_whitespace();
        if w.next() != Some("deb") {
            continue;
        }
        let rest: Vec<&str> = w.collect();
        if rest.len() >= 2 && rest.iter().all(|x| crate::safe::text(x).is_ok()) {
            out.push_str(&format!("deb-src {}\n", rest.join(" ")));
        }
    }
    (!out.is_empty()).then_some(out)
}

fn copy_dir_files(from: &Path, to: &Path) -> std::io::Result<()> {
    fs::create_dir_all(to)?;
    for e in fs::read_dir(from)? {
        let e = e?;
        if e.file_type()?.is_file() {
            fs::copy(e.path(), to.join(e.file_name()))?;
        }
    }
    Ok(())
}

/// Copies the `.dsc` and every file it lists from `dir` into `dst`, each checked: the
/// `.dsc` and the orig tarball against the recipe, the rest against the `.dsc`.
fn verified_copy(
    recipe: &MesaRecipe,
    dsc_name: &str,
    dir: &Path,
    dst: &Path,
) -> Result<(), String> {
    let s = &recipe.source;
    let dsc_path = dir.join(dsc_name);
    let meta = fs::symlink_metadata(&dsc_path).map_err(|_| format!("no {dsc_name}"))?;
    if !meta.is_file() {
        return Err(format!("{dsc_name} is not a regular file"));
    }
    let dsc =
        crate::safe::read_regular(&dsc_path, 1 << 20).map_err(|e| format!("{dsc_name}: {e}"))?;
    let got = crate::patch::series::sha256_hex(&dsc);
    if got != s.dsc_sha256.to_ascii_lowercase() {
        return Err(format!(
            "{dsc_name} has SHA-256 {got}, the recipe pins {}",
            s.dsc_sha256
        ));
    }
    let files = dsc_files(&String::from_utf8_lossy(&dsc));
    if !files.iter().any(|(n, _)| *n == s.orig) {
        return Err(format!("{dsc_name} does not list {}", s.orig));
    }
    let _ = fs::remove_dir_all(dst);
    fs::create_dir_all(dst).map_err(|e| format!("creating {}: {e}", dst.display()))?;
    fs::write(dst.join(dsc_name), &dsc).map_err(|e| e.to_string())?;
    for (name, sha) in &files {
        crate::safe::file_name(name)
            .map_err(|why| format!("{dsc_name} lists `{}`: {why}", crate::safe::show(name)))?;
        let want = if *name == s.orig {
            s.orig_sha256.to_ascii_lowercase()
        } else {
            sha.clone()
        };
        if *name == s.orig && *sha != want {
            return Err(format!(
                "{dsc_name} pins {name} to {sha}, the recipe to {want}"
            ));
        }
        let from = dir.join(name);
        match fs::symlink_metadata(&from) {
            Ok(m) if m.is_file() => {}
            _ => return Err(format!("no {name} (listed in {dsc_name})")),
        }
        let to = dst.join(name);
        fs::copy(&from, &to).map_err(|e| format!("copying {name}: {e}"))?;
        let got = sha256_file(&to).map_err(|e| format!("reading {name}: {e}"))?;
        if got != want {
            return Err(format!("{name} has SHA-256 {got}, expected {want}"));
        }
    }
    Ok(())
}

#[allow(clippy::too_many_arguments)]
fn build_in(
    req: &MesaRequest<'_>,
    recipe: &MesaRecipe,
    series: &Series,
    root: &Builder,
    work: &Path,
    out: &Path,
    key: &str,
) -> Result<MesaVenus, MesaError> {
    let started = std::time::Instant::now();
    fs::create_dir_all(work).map_err(io(format!("creating {}", work.display())))?;
    let pkg = work.join("pkg");
    fetch_source(req, recipe, root, work, &pkg)?;
    let mut root = root.clone();
    root.bind(&[work.to_path_buf()]);
    let src = work.join("src");
    let logs = req.cache.join("logs");
    let arch = req.target;
    let t = arch.triplet();
    // Debian's tree: the orig tarball with debian/patches applied (dpkg-source checks the
    // tarballs against the .dsc once more).
    let unpack = vec![
        "dpkg-source".to_string(),
        "--no-check".into(),
        "-x".into(),
        pkg.join(recipe.dsc_name()).display().to_string(),
        src.display().to_string(),
    ];
    crate::build::run::run_step(
        &root,
        "dpkg-source -x",
        &unpack,
        work,
        &BTreeMap::new(),
        &logs.join("mesa-dpkg-source.log"),
        1,
        4,
        req.quiet,
    )?;
    // Our series, in memory first (all or nothing), then written over the tree.
    let patches = series.parse_patches().map_err(|e| MesaError::Recipe {
        file: series.dir.join("series"),
        why: e.to_string(),
        help: "fix the patch, then refresh SHA256SUMS and the pin".into(),
    })?;
    let dsrc = DirSource::new(src.clone());
    let mut overlay = Overlay::new();
    for p in &patches {
        let (report, changed) =
            apply_patch(&dsrc, &overlay, p, 0).map_err(|e| MesaError::Recipe {
                file: series.dir.join(&p.name),
                why: e.to_string(),
                help: "refresh the patch against the source package".into(),
            })?;
        if !report.status.applies() {
            return Err(MesaError::Recipe {
                file: series.dir.join(&p.name),
                why: format!(
                    "does not apply to {} {} ({:?})",
                    recipe.source.package, recipe.source.version, report.status
                ),
                help: "refresh the patch against the source package".into(),
            });
        }
        overlay.extend(changed);
    }
    crate::patch::engine::write_overlay(&src, &overlay)
        .map_err(|(what, source)| MesaError::Io { what, source })?;
    let build = work.join("build");
    let mut setup = vec![
        "meson".to_string(),
        "setup".into(),
        build.display().to_string(),
        src.display().to_string(),
        "--prefix=/usr".into(),
        format!("--libdir=lib/{t}"),
    ];
    if let Some(cross) = cross_file(arch) {
        let f = work.join(format!("cross-{}.ini", arch.name()));
        fs::write(&f, cross).map_err(io(format!("writing {}", f.display())))?;
        setup.push(format!("--cross-file={}", f.display()));
    }
    setup.extend(recipe.build.meson_options.iter().cloned());
    let stage = work.join("stage");
    let steps: [(&str, Vec<String>, BTreeMap<String, String>); 3] = [
        ("meson setup", setup, BTreeMap::new()),
        (
            "ninja",
            vec![
                "ninja".into(),
                "-C".into(),
                build.display().to_string(),
                format!("-j{}", jobs()),
            ],
            BTreeMap::new(),
        ),
        (
            "ninja install",
            vec![
                "ninja".into(),
                "-C".into(),
                build.display().to_string(),
                "install".into(),
            ],
            BTreeMap::from([("DESTDIR".to_string(), stage.display().to_string())]),
        ),
    ];
    for (i, (what, argv, env)) in steps.iter().enumerate() {
        let log = logs.join(format!("mesa-{}.log", what.replace(' ', "-")));
        crate::build::run::run_step(&root, what, argv, work, env, &log, i + 2, 4, req.quiet)?;
    }
    let install_log = logs.join("mesa-ninja-install.log");
    let driver_install_path = driver_install_path(arch);
    let icd_install_path = PathBuf::from(ICD_INSTALL_PATH);
    let icd_name = "virtio_icd.json";
    let built_so = stage.join(
        driver_install_path
            .strip_prefix("/")
            .unwrap_or(&driver_install_path),
    );
    // Mesa installs it as virtio_icd.<cpu>.json; Debian ships it as virtio_icd.json.
    let built_icd = stage.join(format!(
        "usr/share/vulkan/icd.d/virtio_icd.{}.json",
        arch.machine()
    ));
    for (f, what) in [(&built_so, "driver"), (&built_icd, "ICD")] {
        if !f.is_file() {
            return Err(MesaError::Output {
                what: format!("{what} {}", f.display()),
                tail: crate::fsutil::tail_file(&install_log, 15),
                log: install_log,
            });
        }
    }
    // The ICD as Debian's: Mesa's own, whose library_path must be the install path.
    let icd_text =
        fs::read_to_string(&built_icd).map_err(io(format!("reading {}", built_icd.display())))?;
    let icd: serde_json::Value =
        serde_json::from_str(&icd_text).map_err(|e| MesaError::Output {
            what: format!("valid ICD JSON ({e})"),
            log: install_log.clone(),
            tail: icd_text.clone(),
        })?;
    if icd["ICD"]["library_path"].as_str() != Some(&driver_install_path.display().to_string()) {
        return Err(MesaError::Output {
            what: format!("ICD naming {}", driver_install_path.display()),
            log: install_log,
            tail: icd_text,
        });
    }
    let publish = work.join("out");
    fs::create_dir_all(&publish).map_err(io(format!("creating {}", publish.display())))?;
    fs::copy(&built_so, publish.join(DRIVER)).map_err(io("copying the driver"))?;
    fs::write(publish.join(icd_name), icd_text).map_err(io("writing the ICD"))?;
    let driver_sha256 = sha256_file(&publish.join(DRIVER)).map_err(io("hashing the driver"))?;
    let m = MesaVenus {
        dir: out.to_path_buf(),
        driver: out.join(DRIVER),
        icd: out.join(icd_name),
        driver_install_path,
        icd_install_path,
        arch: arch.name().into(),
        version: format!(
            "{} + {} ({})",
            recipe.source.version,
            recipe.series.name,
            &recipe.series.sha256[..12]
        ),
        key: key.to_string(),
        driver_sha256,
    };
    let json = serde_json::to_string_pretty(&m).expect("serialisable");
    fs::write(publish.join(BUILD_JSON), json + "\n").map_err(io("writing build.json"))?;
    let _ = fs::remove_dir_all(out);
    fs::rename(&publish, out).map_err(io(format!("moving the build to {}", out.display())))?;
    crate::progress::note(&format!(
        "Mesa's Venus driver ({}, {}): {} in {:.0} s",
        m.version,
        m.arch,
        out.display(),
        started.elapsed().as_secs_f64()
    ));
    Ok(m)
}

/// Parallel compile jobs: the machine's CPUs (ninja's default would add two).
fn jobs() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
}

#[cfg(test)]
mod state_tests {
    use super::*;

    /// A tampered build.json cannot move files in an image or the build context: the
    /// install paths are derived from a known arch, and an unknown arch is no build.
    #[test]
    fn a_hostile_build_json_cannot_name_paths() {
        let d = tempfile::tempdir().unwrap();
        fs::write(d.path().join(DRIVER), b"x").unwrap();
        fs::write(d.path().join("virtio_icd.json"), b"{}").unwrap();
        let state = |arch: &str| {
            serde_json::json!({
                "dir": "/elsewhere", "driver": "/elsewhere/x", "icd": "/elsewhere/virtio_icd.json",
                "driver_install_path": "/../../../etc/cron.d/evil",
                "icd_install_path": "../../outside.json",
                "arch": arch, "version": "v", "key": "k", "driver_sha256": "s"
            })
            .to_string()
        };
        fs::write(d.path().join(BUILD_JSON), state("arm64")).unwrap();
        let m = MesaVenus::read(d.path()).unwrap();
        assert_eq!(
            m.driver_install_path,
            PathBuf::from("/usr/lib/aarch64-linux-gnu/libvulkan_virtio.so")
        );
        assert_eq!(m.icd_install_path, PathBuf::from(ICD_INSTALL_PATH));
        assert_eq!(m.driver, d.path().join(DRIVER));
        fs::write(d.path().join(BUILD_JSON), state("../../x")).unwrap();
        assert!(MesaVenus::read(d.path()).is_none());
    }
}
