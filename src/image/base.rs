//! Registry-free base images: a Debian root made with mmdebstrap from Debian packages,
//! imported into the engine's local storage as `localhost/ollama-vulkan-ROLE:SUITE`.
//! The builder base carries every era's build deps and the host's Go (Debian's is older
//! than the go.mod of current tags); the runtime base is minbase with the Vulkan loader
//! and Mesa's ICDs. The root tarball is kept in the cache, keyed by what went in, so a
//! second `base` (or a test run) only imports it again.

use std::fs;
use std::path::{Path, PathBuf};

use serde::Serialize;

use super::engine::{Engine, EngineKind};
use super::ImageError;
use crate::build::builder::host_goroot;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Role {
    /// Build deps of every era, the host's Go at /usr/local/go (mmdebstrap --variant=apt).
    Builder,
    /// minbase + the Vulkan loader and Mesa ICDs: what the image runs on.
    Runtime,
}

pub use crate::target::Arch;

pub struct BaseRequest<'a> {
    pub engine: &'a Engine,
    pub suite: &'a str,
    pub role: Role,
    pub arch: Arch,
    /// Debian packages to include (the caller merges the templates' lists).
    pub packages: Vec<String>,
    pub tag: Option<String>,
    pub cache: &'a Path,
    pub offline: bool,
    pub quiet: bool,
}

#[derive(Debug, Serialize)]
pub struct BaseReport {
    pub image: String,
    pub id: Option<String>,
    pub role: Role,
    pub suite: String,
    pub arch: String,
    pub packages: Vec<String>,
    /// The Go copied in (builder), from the host.
    pub go: Option<String>,
    pub rootfs: PathBuf,
    /// The root tarball came from the cache (mmdebstrap did not run).
    pub cached_rootfs: bool,
    /// The image already held this root (nothing imported).
    pub already_imported: bool,
    pub rootfs_bytes: u64,
    pub image_bytes: Option<u64>,
    pub seconds: f64,
}

/// A base's packages: the union of the templates' lists for the role (one builder base
/// serves every era), or a minimal list when no template names any.
pub fn role_packages(templates: &[crate::recipe::model::Recipe], role: Role) -> Vec<String> {
    let mut packages: Vec<String> = templates
        .iter()
        .flat_map(|t| match role {
            Role::Builder => t.build.builder_packages.clone(),
            Role::Runtime => t.image.runtime_packages.clone(),
        })
        .collect();
    if packages.is_empty() {
        // No project: the lists this tool ships (recipes/base/packages.toml).
        let base = crate::recipe::packages::compiled();
        packages = match role {
            Role::Builder => base.builder,
            Role::Runtime => base.runtime,
        };
    }
    packages
}

/// The role, suite and architecture a name made by [`default_tag`] stands for.
pub fn parse_default_tag(image: &str) -> Option<(Role, String, Arch)> {
    let rest = image.strip_prefix("localhost/ollama-vulkan-")?;
    let (role, tag) = rest.split_once(':')?;
    let role = match role {
        "builder" => Role::Builder,
        "runtime" => Role::Runtime,
        _ => return None,
    };
    let (suite, arch) = match tag.split_once('-') {
        Some((suite, a)) => (suite, Arch::parse(a)?),
        None => (tag, Arch::host()),
    };
    (default_tag(role, suite, arch) == image
        && !suite.is_empty()
        && suite.chars().all(|c| c.is_ascii_lowercase()))
    .then(|| (role, suite.to_string(), arch))
}

/// `image` for `arch`: a default base name (as templates give them, for the host) becomes
/// the same base's name for `arch`; other names are left to the engine's `--platform`.
pub fn for_arch(image: &str, arch: Arch) -> String {
    match parse_default_tag(image) {
        Some((role, suite, _)) => default_tag(role, &suite, arch),
        None => image.to_string(),
    }
}

/// `image` on a machine that has no base yet: a missing default base (a name `base`
/// makes) is made now, as `ollama-vulkan base` would, announced; other names are the
/// caller's to supply. Ok(None) when the image is there or is not ours to make.
pub fn ensure_default(
    engine: &Engine,
    image: &str,
    templates: &[crate::recipe::model::Recipe],
    cache: &Path,
    offline: bool,
    quiet: bool,
) -> Result<Option<BaseReport>, ImageError> {
    let Some((role, suite, arch)) = parse_default_tag(image) else {
        return Ok(None);
    };
    if engine.has_image(image)? {
        return Ok(None);
    }
    if !crate::provision::may_install() {
        return Err(ImageError::Usage(format!(
            "the base {image} is not in {}'s local storage, and --no-install forbids making it\n  help: ollama-vulkan base --suite {suite} --role {} --arch {arch}   (or --base ROLE=IMAGE)",
            engine.kind.name(),
            role_name(role)
        )));
    }
    crate::progress::note(&format!(
        "making the base {image} (once; `ollama-vulkan base --suite {suite} --role {} --arch {arch}` does the same)",
        role_name(role)
    ));
    base(&BaseRequest {
        engine,
        suite: &suite,
        role,
        arch,
        packages: role_packages(templates, role),
        tag: Some(image.to_string()),
        cache,
        offline,
        quiet,
    })
    .map(Some)
}

fn role_name(role: Role) -> &'static str {
    match role {
        Role::Builder => "builder",
        Role::Runtime => "runtime",
    }
}

/// The default name of a base image.
pub fn default_tag(role: Role, suite: &str, arch: Arch) -> String {
    let role = role_name(role);
    if arch == Arch::host() {
        format!("localhost/ollama-vulkan-{role}:{suite}")
    } else {
        format!("localhost/ollama-vulkan-{role}:{suite}-{}", arch.name())
    }
}

/// PATH of a base: the builder's has the Go copied to /usr/local/go.
pub fn path_env(role: Role) -> &'static str {
    match role {
        Role::Builder => {
            "PATH=/usr/local/go/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
        }
        Role::Runtime => "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    }
}

fn go_version(goroot: &Path) -> Option<String> {
    fs::read_to_string(goroot.join("VERSION"))
        .ok()?
        .lines()
        .next()
        .map(|l| l.trim().to_string())
}

/// The reference time of a base root made without SOURCE_DATE_EPOCH in the environment:
/// mmdebstrap clamps every mtime to it and drops what differs between runs (logs, the
/// machine id, caches), so two runs over the same package versions give the same tarball.
/// An assembled image sets its own times: this one never reaches it.
pub const BASE_EPOCH: i64 = 1_704_067_200;

/// A root tarball in the cache.
#[derive(Debug, Clone)]
pub struct RootTarball {
    pub path: PathBuf,
    /// What went in (suite, arch, variant, packages, Go).
    pub key: String,
    /// It was in the cache already (mmdebstrap did not run).
    pub cached: bool,
    pub go: Option<String>,
    pub packages: Vec<String>,
}

/// What a root is made of; `into` (None: the cache) is where a fresh one goes.
pub struct RootRequest<'a> {
    pub suite: &'a str,
    pub role: Role,
    pub arch: Arch,
    pub packages: Vec<String>,
    pub cache: &'a Path,
    pub offline: bool,
}

/// The mmdebstrap arguments of a root (without the output).
fn mmdebstrap_args(
    req: &RootRequest<'_>,
    variant: &str,
    pkgs: &[String],
    goroot: Option<&Path>,
) -> Vec<String> {
    let mut args: Vec<String> = vec![
        format!("--variant={variant}"),
        format!("--architectures={}", req.arch.name()),
        // Documentation and translations are dead weight in an image.
        "--dpkgopt=path-exclude=/usr/share/doc/*".into(),
        "--dpkgopt=path-include=/usr/share/doc/*/copyright".into(),
        "--dpkgopt=path-exclude=/usr/share/man/*".into(),
        "--dpkgopt=path-exclude=/usr/share/locale/*".into(),
        "--dpkgopt=path-exclude=/usr/share/info/*".into(),
    ];
    if !pkgs.is_empty() {
        args.push(format!("--include={}", pkgs.join(",")));
    }
    if let Some(g) = goroot {
        args.push(format!(
            "--customize-hook=mkdir -p \"$1/usr/local\" && cp -a {} \"$1/usr/local/go\"",
            g.display()
        ));
    }
    args.push(req.suite.into());
    args
}

/// SOURCE_DATE_EPOCH for mmdebstrap: the environment's, else [`BASE_EPOCH`].
pub fn base_epoch() -> i64 {
    std::env::var("SOURCE_DATE_EPOCH")
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(BASE_EPOCH)
}

/// Finds the root tarball in the cache, or makes it with mmdebstrap (reproducibly:
/// SOURCE_DATE_EPOCH is set, see [`BASE_EPOCH`]).
pub fn root_tarball(req: &RootRequest<'_>) -> Result<RootTarball, ImageError> {
    root_tarball_in(req, None)
}

/// Like [`root_tarball`], but a fresh root made into `fresh` (the cache is neither read
/// nor written): what `base --verify` compares with the cached one.
pub fn root_tarball_in(
    req: &RootRequest<'_>,
    fresh: Option<&Path>,
) -> Result<RootTarball, ImageError> {
    // A foreign root's maintainer scripts, and the image later, run under qemu-user.
    if req.arch != Arch::host() {
        crate::provision::ensure_foreign(req.arch.name())?;
    }
    let mut pkgs = req.packages.clone();
    pkgs.sort();
    pkgs.dedup();
    let goroot = match req.role {
        Role::Builder => host_goroot(),
        Role::Runtime => None,
    };
    let go = goroot.as_deref().and_then(go_version);
    if req.role == Role::Builder {
        match (&goroot, req.arch == Arch::host()) {
            (None, _) => crate::progress::note(
                "no Go on PATH: the builder base has none; install Go (≥ the tag's go.mod) at /usr/local/go on the host and run `base` again",
            ),
            (Some(_), false) => {
                return Err(ImageError::Usage(format!(
                    "the builder base for {} needs a Go for {0}; the host's is for {}\n  help: build on an {0} machine, or use the runtime base with `image --from-dist`",
                    req.arch.name(),
                    Arch::host().name()
                )))
            }
            _ => {}
        }
    }
    let variant = match req.role {
        Role::Builder => "apt",
        Role::Runtime => "minbase",
    };
    let key = crate::patch::series::sha256_hex(
        format!(
            "{}\0{}\0{variant}\0{}\0{}",
            req.suite,
            req.arch.name(),
            pkgs.join(","),
            go.clone().unwrap_or_default()
        )
        .as_bytes(),
    );
    let dir = match fresh {
        Some(d) => d.to_path_buf(),
        None => req.cache.join("bases"),
    };
    let rootfs = dir.join(format!(
        "{}-{}-{variant}-{}.tar",
        req.suite,
        req.arch.name(),
        &key[..12]
    ));
    let io = |what: String| move |e: std::io::Error| ImageError::Io { what, source: e };
    let cached = fresh.is_none() && rootfs.is_file();
    if !cached {
        if req.offline {
            return Err(ImageError::Usage(format!(
                "the base root {} is not in the cache and --offline forbids fetching Debian packages\n  help: run `ollama-vulkan base` once with access to a Debian mirror",
                rootfs.display()
            )));
        }
        // Before anything is written: a refused install leaves the cache as it was.
        crate::provision::ensure(&[crate::provision::MMDEBSTRAP])?;
        fs::create_dir_all(&dir).map_err(io(format!("creating {}", dir.display())))?;
        let tmp = dir.join(format!(".tmp-{}-{}.tar", &key[..12], std::process::id()));
        let mut args = mmdebstrap_args(req, variant, &pkgs, goroot.as_deref());
        args.push(tmp.display().to_string());
        let progress = crate::progress::Progress::start(format!(
            "making the {} {} root ({} packages{}, mmdebstrap)",
            req.suite,
            variant,
            pkgs.len(),
            go.as_deref().map(|g| format!(", {g}")).unwrap_or_default()
        ));
        let out = duct::cmd("mmdebstrap", &args)
            .env("SOURCE_DATE_EPOCH", base_epoch().to_string())
            .stderr_to_stdout()
            .stdout_capture()
            .unchecked()
            .run()
            .map_err(|source| ImageError::Spawn {
                program: "mmdebstrap".into(),
                source,
            })?;
        if !out.status.success() {
            let _ = fs::remove_file(&tmp);
            return Err(ImageError::Command {
                what: format!("mmdebstrap {} ({variant}) failed:", req.suite),
                context: crate::fsutil::last_lines(&String::from_utf8_lossy(&out.stdout), 15),
                help: Some(format!(
                    "check that the Debian mirror serves {} for {}{}",
                    req.suite,
                    req.arch.name(),
                    if req.arch != Arch::host() {
                        " and that qemu-user-static + binfmt-support are installed (foreign architecture)"
                    } else {
                        ""
                    }
                )),
            });
        }
        fs::rename(&tmp, &rootfs)
            .map_err(io(format!("moving the root to {}", rootfs.display())))?;
        progress.finish(&rootfs.display().to_string());
    }
    Ok(RootTarball {
        path: rootfs,
        key,
        cached,
        go,
        packages: pkgs,
    })
}

/// Makes (or finds in the cache) the root tarball and imports it.
pub fn base(req: &BaseRequest<'_>) -> Result<BaseReport, ImageError> {
    let started = std::time::Instant::now();
    let root = root_tarball(&RootRequest {
        suite: req.suite,
        role: req.role,
        arch: req.arch,
        packages: req.packages.clone(),
        cache: req.cache,
        offline: req.offline,
    })?;
    let RootTarball {
        path: rootfs,
        key,
        cached: cached_rootfs,
        go,
        packages: pkgs,
    } = root;
    let rootfs_bytes = fs::metadata(&rootfs).map(|m| m.len()).unwrap_or(0);
    let tag = req
        .tag
        .clone()
        .unwrap_or_else(|| default_tag(req.role, req.suite, req.arch));
    // Importing the same root again would only make a new image id (and miss every
    // layer cached on the old one): an image with this root's key is kept.
    let imported = req
        .engine
        .labels(&tag)?
        .and_then(|l| l.get(KEY_LABEL).and_then(|v| v.as_str()).map(String::from))
        .as_deref()
        == Some(&key[..]);
    if !imported {
        let progress = crate::progress::Progress::start(format!("importing {tag}"));
        import(
            req.engine,
            &rootfs,
            &tag,
            req.arch,
            req.role,
            &pkgs,
            go.as_deref(),
            &key,
        )?;
        progress.finish("done");
    }
    Ok(BaseReport {
        id: req.engine.image_id(&tag)?,
        image_bytes: req.engine.image_size(&tag)?,
        image: tag,
        role: req.role,
        suite: req.suite.into(),
        arch: req.arch.name().into(),
        packages: pkgs,
        go,
        rootfs,
        cached_rootfs,
        already_imported: imported,
        rootfs_bytes,
        seconds: started.elapsed().as_secs_f64(),
    })
}

/// Label naming what a base was made from (suite, arch, variant, packages, Go).
const KEY_LABEL: &str = "io.ollama-vulkan.base.key";

/// A tarball into local storage with PATH, CMD and labels set.
#[allow(clippy::too_many_arguments)]
fn import(
    engine: &Engine,
    rootfs: &Path,
    tag: &str,
    arch: Arch,
    role: Role,
    pkgs: &[String],
    go: Option<&str>,
    key: &str,
) -> Result<(), ImageError> {
    let title = match role {
        Role::Builder => "ollama-vulkan-builder",
        Role::Runtime => "ollama-vulkan-runtime",
    };
    let labels = [
        format!("org.opencontainers.image.title={title}"),
        format!("io.ollama-vulkan.base.packages={}", pkgs.join(",")),
        format!("io.ollama-vulkan.base.go={}", go.unwrap_or("")),
        format!("{KEY_LABEL}={key}"),
    ];
    match engine.kind {
        EngineKind::Buildah => {
            // The working container's name is stdout's one line; a CNI or storage
            // warning on stderr must not become it.
            let ctr = engine.must_value(
                "buildah from scratch",
                vec!["from".into(), "scratch".into()],
                super::engine::Shape::ContainerName,
            )?;
            let r = (|| {
                engine.quiet(
                    "adding the root",
                    vec![
                        "add".into(),
                        ctr.clone(),
                        rootfs.display().to_string(),
                        "/".into(),
                    ],
                )?;
                let mut cfg: Vec<String> = vec![
                    "config".into(),
                    "--arch".into(),
                    arch.name().into(),
                    "--os".into(),
                    "linux".into(),
                    "--env".into(),
                    path_env(role).into(),
                    "--cmd".into(),
                    "[\"/bin/bash\"]".into(),
                ];
                for l in &labels {
                    cfg.push("--label".into());
                    cfg.push(l.clone());
                }
                cfg.push(ctr.clone());
                engine.quiet("configuring the base", cfg)?;
                engine.quiet(
                    "committing the base",
                    vec!["commit".into(), "--rm".into(), ctr.clone(), tag.into()],
                )
            })();
            if r.is_err() {
                let _ = engine.quiet("removing the working container", vec!["rm".into(), ctr]);
            }
            r.map(|_| ())
        }
        EngineKind::Podman | EngineKind::Docker => {
            let mut a: Vec<String> = vec!["import".into()];
            if engine.kind == EngineKind::Podman {
                a.extend(["--arch".into(), arch.name().into()]);
            } else {
                a.extend(["--platform".into(), format!("linux/{}", arch.name())]);
            }
            a.extend([
                "--change".into(),
                format!("ENV {}", path_env(role)),
                "--change".into(),
                "CMD [\"/bin/bash\"]".into(),
            ]);
            for l in &labels {
                let (k, v) = l.split_once('=').unwrap_or((l, ""));
                a.push("--change".into());
                a.push(format!("LABEL {k}=\"{v}\""));
            }
            a.push(rootfs.display().to_string());
            a.push(tag.into());
            engine.quiet("importing the base", a).map(|_| ())
        }
    }
}

/// What `base --verify` found: the cached root against one made again now.
#[derive(Debug, Serialize)]
pub struct VerifyReport {
    pub cached: PathBuf,
    pub cached_sha256: String,
    pub fresh_sha256: String,
    /// `identical` (the same bytes), `drifted` (Debian's mirror has other versions now:
    /// not comparable, see `packages`), or `differs` (same packages, other bytes: not
    /// reproducible, see `files`).
    pub status: String,
    pub packages: Vec<super::lock::Change>,
    /// The entries that differ (at most 100), each with why.
    pub files: Vec<FileDiff>,
    pub seconds: f64,
}

#[derive(Debug, Serialize)]
pub struct FileDiff {
    pub path: String,
    pub why: String,
}

/// The entries of two root tarballs that differ, and why (type, owner, mode, link,
/// size, content, mtime; missing on one side).
fn tar_diff(a: &super::oci::RootTar, b: &super::oci::RootTar) -> Vec<FileDiff> {
    use super::oci::{Data, Node};
    let mut out = Vec::new();
    let content = |t: &super::oci::RootTar, p: &str| t.read(p, 1 << 30).ok().flatten();
    let mtimes = |t: &super::oci::RootTar| -> std::collections::BTreeMap<String, u64> {
        let mut m = std::collections::BTreeMap::new();
        if let Ok(f) = fs::File::open(&t.path) {
            if let Ok(es) = tar::Archive::new(f).entries() {
                for e in es.flatten() {
                    if let (Ok(p), Ok(t)) = (e.path(), e.header().mtime()) {
                        if let Ok(Some(n)) = super::oci::normalise(&p.to_string_lossy()) {
                            m.insert(n, t);
                        }
                    }
                }
            }
        }
        m
    };
    let (ma, mb) = (mtimes(a), mtimes(b));
    let keys: std::collections::BTreeSet<&String> =
        a.entries.keys().chain(b.entries.keys()).collect();
    for k in keys {
        let why = match (a.entries.get(k), b.entries.get(k)) {
            (Some(_), None) => Some("only in the cached root".to_string()),
            (None, Some(_)) => Some("only in the fresh root".to_string()),
            (Some(x), Some(y)) => {
                let kind = |n: &Node| match n {
                    Node::Dir => "directory".to_string(),
                    Node::File(_) => "file".to_string(),
                    Node::Symlink(t) => format!("symlink to {t}"),
                    Node::Hardlink(t) => format!("hard link to {t}"),
                };
                let size = |n: &Node| match n {
                    Node::File(Data::Tar { size, .. }) => Some(*size),
                    Node::File(Data::Bytes(b)) => Some(b.len() as u64),
                    _ => None,
                };
                if kind(&x.node) != kind(&y.node) {
                    Some(format!("{} / {}", kind(&x.node), kind(&y.node)))
                } else if (x.uid, x.gid, x.mode) != (y.uid, y.gid, y.mode) {
                    Some(format!(
                        "owner or mode {}:{} {:o} / {}:{} {:o}",
                        x.uid, x.gid, x.mode, y.uid, y.gid, y.mode
                    ))
                } else if size(&x.node) != size(&y.node) {
                    Some(format!(
                        "size {} / {} bytes",
                        size(&x.node).unwrap_or(0),
                        size(&y.node).unwrap_or(0)
                    ))
                } else if size(&x.node).is_some() && content(a, k) != content(b, k) {
                    Some("content (same size)".to_string())
                } else if ma.get(k) != mb.get(k) {
                    Some(format!(
                        "mtime {} / {}",
                        ma.get(k).copied().unwrap_or(0),
                        mb.get(k).copied().unwrap_or(0)
                    ))
                } else {
                    None
                }
            }
            (None, None) => None,
        };
        if let Some(why) = why {
            out.push(FileDiff {
                path: k.clone(),
                why,
            });
            if out.len() >= 100 {
                break;
            }
        }
    }
    out
}

/// Makes the root again (mmdebstrap, SOURCE_DATE_EPOCH as for the cached one) into a
/// scratch folder and compares it with the cached one, byte for byte and then entry by
/// entry. A fresh root with other package versions is `drifted`, not a failure of
/// reproducibility; the same versions with other bytes is `differs`.
pub fn verify(req: &RootRequest<'_>) -> Result<VerifyReport, ImageError> {
    let started = std::time::Instant::now();
    let cached = root_tarball(req)?;
    let scratch = req
        .cache
        .join("bases")
        .join(format!(".verify-{}", std::process::id()));
    let io = |what: String| move |e: std::io::Error| ImageError::Io { what, source: e };
    fs::create_dir_all(&scratch).map_err(io(format!("creating {}", scratch.display())))?;
    let r = (|| {
        let fresh = root_tarball_in(req, Some(&scratch))?;
        let sha =
            |p: &Path| super::oci::file_sha256(p).map_err(io(format!("reading {}", p.display())));
        let (cs, fs_) = (sha(&cached.path)?, sha(&fresh.path)?);
        let index = |p: &Path| {
            super::oci::RootTar::index(p)
                .map_err(|why| ImageError::Usage(format!("{}: {why}", p.display())))
        };
        let (a, b) = (index(&cached.path)?, index(&fresh.path)?);
        let pkgs =
            |t: &super::oci::RootTar, what: &str| -> Result<super::dpkg::Installed, ImageError> {
                super::provenance::packages(
                    t.read(super::dpkg::STATUS, super::dpkg::MAX_STATUS)
                        .map_err(|why| ImageError::Usage(format!("{what}: {why}")))?,
                    what,
                )
            };
        let versions = |i: &super::dpkg::Installed| {
            i.iter()
                .map(|(k, p)| (k.clone(), p.version.clone()))
                .collect::<std::collections::BTreeMap<_, _>>()
        };
        let packages = super::lock::diff(
            &versions(&pkgs(&a, "the cached root")?),
            &versions(&pkgs(&b, "the fresh root")?),
        );
        let files = if cs == fs_ {
            Vec::new()
        } else {
            tar_diff(&a, &b)
        };
        let status = if cs == fs_ {
            "identical"
        } else if !packages.is_empty() {
            "drifted"
        } else {
            "differs"
        };
        Ok(VerifyReport {
            cached: cached.path.clone(),
            cached_sha256: cs,
            fresh_sha256: fs_,
            status: status.into(),
            packages,
            files,
            seconds: started.elapsed().as_secs_f64(),
        })
    })();
    let _ = fs::remove_dir_all(&scratch);
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tarball(dir: &Path, name: &str, files: &[(&str, &[u8], u64)]) -> PathBuf {
        let p = dir.join(name);
        let mut b = tar::Builder::new(fs::File::create(&p).unwrap());
        for (path, data, mtime) in files {
            let mut h = tar::Header::new_gnu();
            h.set_mode(0o644);
            h.set_uid(0);
            h.set_gid(0);
            h.set_mtime(*mtime);
            h.set_size(data.len() as u64);
            b.append_data(&mut h, path, *data).unwrap();
        }
        b.finish().unwrap();
        p
    }

    #[test]
    fn two_roots_differ_by_named_files_and_why() {
        let d = tempfile::tempdir().unwrap();
        let a = tarball(
            d.path(),
            "a.tar",
            &[
                ("./etc/a", b"same", 1),
                ("./etc/b", b"abcd", 1),
                ("./etc/c", b"x", 1),
                ("./etc/gone", b"", 1),
            ],
        );
        let b = tarball(
            d.path(),
            "b.tar",
            &[
                ("./etc/a", b"same", 1),
                ("./etc/b", b"abce", 1),
                ("./etc/c", b"x", 2),
                ("./etc/new", b"", 1),
            ],
        );
        let diff = tar_diff(
            &super::super::oci::RootTar::index(&a).unwrap(),
            &super::super::oci::RootTar::index(&b).unwrap(),
        );
        let got: Vec<(&str, &str)> = diff
            .iter()
            .map(|f| (f.path.as_str(), f.why.as_str()))
            .collect();
        assert_eq!(
            got,
            [
                ("etc/b", "content (same size)"),
                ("etc/c", "mtime 1 / 2"),
                ("etc/gone", "only in the cached root"),
                ("etc/new", "only in the fresh root"),
            ]
        );
    }
}
