//! `image --assemble`: the runtime image written by this tool as an OCI archive or
//! layout, with no engine. Two layers: the Debian root mmdebstrap made (from the cache,
//! re-packed by [`super::oci`]: sorted, every mtime SOURCE_DATE_EPOCH, no device nodes)
//! and the dist (plus the pipeline-cache folder and, for krunkit, our Venus driver over
//! Debian's, diverted as `dpkg-divert --local --rename` would). The config says what
//! the Dockerfile's runtime stage says (env, entrypoint, port, labels) except
//! HEALTHCHECK, which OCI configs cannot hold (docs/RUNNING.md says how to get it back).

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use serde_json::json;

use super::engine::Output;
use super::oci::{self, Data, Entry, Node, RootTar};
use super::ImageError;
use crate::target::Arch;

pub struct AssembleInput<'a> {
    pub root: &'a RootTar,
    /// `DEST/dist`.
    pub dist: &'a Path,
    /// The dist ships lib/ollama (era 4 on).
    pub has_libs: bool,
    pub arch: Arch,
    pub epoch: i64,
    /// `KEY=value`, in order.
    pub env: Vec<String>,
    pub labels: BTreeMap<String, String>,
    /// The manifest's annotations (OCI's keys).
    pub annotations: BTreeMap<String, String>,
    pub krunkit: Option<&'a crate::mesa::MesaVenus>,
    /// The image's name; its last component is the layout's ref name.
    pub tag: &'a str,
    pub out: &'a Output,
    /// What made the root (the first layer's history line).
    pub root_history: String,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct Assembled {
    /// The manifest's digest: the image's identity in a registry or layout.
    pub digest: String,
    /// The config's digest: the image id engines show.
    pub config_digest: String,
    pub layers: Vec<oci::Blob>,
    pub output_bytes: u64,
    /// Device nodes of the root left out.
    pub skipped_nodes: usize,
}

fn io(what: String) -> impl FnOnce(std::io::Error) -> ImageError {
    move |source| ImageError::Io { what, source }
}

/// The name an assembled image has in its layout (`org.opencontainers.image.ref.name`),
/// as `engine::export` names an exported one.
pub fn ref_name(tag: &str) -> String {
    tag.rsplit('/').next().unwrap_or(tag).to_string()
}

/// The dist layer's entries.
fn app_entries(a: &AssembleInput<'_>) -> Result<Vec<Entry>, ImageError> {
    let mut e = vec![Entry::root_owned(
        "usr/bin/ollama",
        0o755,
        Node::File(Data::Path(a.dist.join("bin/ollama"))),
    )];
    if a.has_libs {
        e.push(Entry::root_owned("usr/lib/ollama", 0o755, Node::Dir));
        oci::tree_entries(&a.dist.join("lib/ollama"), "usr/lib/ollama", &mut e).map_err(io(
            format!("reading {}", a.dist.join("lib/ollama").display()),
        ))?;
    }
    e.push(Entry::root_owned(super::CACHE_DIR, 0o755, Node::Dir));
    // NVIDIA's driver writes its cache only into a folder that exists (as the Dockerfile).
    for sub in super::CACHE_SUBDIRS {
        e.push(Entry::root_owned(
            &format!("{}/{sub}", super::CACHE_DIR),
            0o755,
            Node::Dir,
        ));
    }
    if let Some(m) = a.krunkit {
        let mut diversions = a
            .root
            .read("var/lib/dpkg/diversions", 1 << 20)
            .map_err(|why| ImageError::Usage(format!("the root's dpkg diversions: {why}")))?
            .unwrap_or_default();
        for (ours, inside) in [
            (&m.driver, &m.driver_install_path),
            (&m.icd, &m.icd_install_path),
        ] {
            let inside = inside.display().to_string();
            let rel = inside.trim_start_matches('/').to_string();
            // Debian's file moves aside, as `dpkg-divert --local --rename` moves it.
            if let Some(orig) = a.root.entries.get(&rel) {
                let mut moved = orig.clone();
                moved.path = format!("{rel}.distrib");
                e.push(moved);
            }
            diversions.extend_from_slice(format!("{inside}\n{inside}.distrib\n:\n").as_bytes());
            e.push(Entry::root_owned(
                &rel,
                0o644,
                Node::File(Data::Path(ours.clone())),
            ));
        }
        e.push(Entry::root_owned(
            "var/lib/dpkg/diversions",
            0o644,
            Node::File(Data::Bytes(diversions)),
        ));
    }
    Ok(e)
}

/// An output written whole or not at all: its target, and a staging directory beside it
/// (`.NAME.WHAT`) that [`Staged::run`] removes whatever happens.
struct Staged {
    target: PathBuf,
    is_archive: bool,
    staging: PathBuf,
}

impl Staged {
    /// The target's folder made, a staging directory left by an earlier run removed.
    fn new(out: &Output, what: &str) -> Result<Staged, ImageError> {
        let (target, is_archive) = match out {
            Output::OciArchive(p) => (p.clone(), true),
            Output::Oci(p) => (p.clone(), false),
        };
        let parent = target
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."))
            .to_path_buf();
        fs::create_dir_all(&parent).map_err(io(format!("creating {}", parent.display())))?;
        let name = target
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "image".into());
        let staging = parent.join(format!(".{name}.{what}"));
        Ok(Staged {
            target,
            is_archive,
            staging,
        })
    }

    fn run<T>(&self, f: impl FnOnce() -> Result<T, ImageError>) -> Result<T, ImageError> {
        if self.staging.exists() {
            fs::remove_dir_all(&self.staging)
                .map_err(io(format!("removing {}", self.staging.display())))?;
        }
        let r = f();
        if self.staging.exists() {
            let _ = fs::remove_dir_all(&self.staging);
        }
        r
    }
}

/// Writes the image to `a.out`: whole or not at all (a staging directory beside it).
pub fn assemble(a: &AssembleInput<'_>) -> Result<Assembled, ImageError> {
    let out = Staged::new(a.out, "assembling")?;
    let (target, is_archive) = (&out.target, out.is_archive);
    if !is_archive && target.exists() {
        let is_layout = target.join("oci-layout").is_file();
        let empty = fs::read_dir(target)
            .map(|mut d| d.next().is_none())
            .unwrap_or(false);
        if !(is_layout || empty) {
            return Err(ImageError::Usage(format!(
                "--output oci:{0}: {0} exists and is not an OCI layout; refusing to replace it\n  help: name a new directory, or an oci-archive:FILE",
                target.display()
            )));
        }
    }
    out.run(|| write(a, &out.staging, target, is_archive))
}

fn write(
    a: &AssembleInput<'_>,
    staging: &Path,
    target: &PathBuf,
    is_archive: bool,
) -> Result<Assembled, ImageError> {
    let w = |what: &str| io(format!("{what} in {}", staging.display()));
    let layout = oci::Layout::create(staging).map_err(w("making the layout"))?;
    let base = layout
        .layer(
            a.root.entries.values().cloned().collect(),
            a.epoch,
            Some(a.root),
        )
        .map_err(w("writing the root layer"))?;
    crate::killpoint::hit("image.assemble-root-layer");
    let app = layout
        // The root supplies Debian's files that krunkit's driver moves aside.
        .layer(app_entries(a)?, a.epoch, Some(a.root))
        .map_err(w("writing the dist layer"))?;
    let created = super::rfc3339(a.epoch);
    let mut config = json!({
        "created": created,
        "architecture": a.arch.name(),
        "os": "linux",
        "config": {
            "User": "0",
            "Env": a.env,
            "Entrypoint": ["/usr/bin/ollama"],
            "Cmd": ["serve"],
            "ExposedPorts": {"11434/tcp": {}},
            "Labels": a.labels,
        },
        "rootfs": {"type": "layers", "diff_ids": [base.diff_id, app.diff_id]},
        "history": [
            {"created": created, "created_by": a.root_history},
            {"created": created, "created_by": format!("ollama-vulkan {} image --assemble: the dist, {}", env!("CARGO_PKG_VERSION"), if a.krunkit.is_some() { "the pipeline-cache folder and our Venus driver" } else { "the pipeline-cache folder" })},
        ],
    });
    let mut platform = json!({"architecture": a.arch.name(), "os": "linux"});
    if a.arch == Arch::Arm64 {
        config["variant"] = json!("v8");
        platform["variant"] = json!("v8");
    }
    let config = layout
        .put(&serde_json::to_vec(&config).expect("JSON"))
        .map_err(w("writing the config"))?;
    let layers: Vec<serde_json::Value> = [&base.blob, &app.blob]
        .iter()
        .map(|b| json!({"mediaType": oci::MEDIA_LAYER, "digest": b.digest, "size": b.size}))
        .collect();
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": oci::MEDIA_MANIFEST,
        "config": {"mediaType": oci::MEDIA_CONFIG, "digest": config.digest, "size": config.size},
        "layers": layers,
        "annotations": a.annotations,
    });
    let manifest = layout
        .put(&serde_json::to_vec(&manifest).expect("JSON"))
        .map_err(w("writing the manifest"))?;
    layout
        .index(&[json!({
            "mediaType": oci::MEDIA_MANIFEST,
            "digest": manifest.digest,
            "size": manifest.size,
            "platform": platform,
            "annotations": {"org.opencontainers.image.ref.name": ref_name(a.tag)},
        })])
        .map_err(w("writing index.json"))?;
    crate::killpoint::hit("image.assembled");
    let output_bytes = if is_archive {
        layout
            .archive(target, a.epoch)
            .map_err(io(format!("writing {}", target.display())))?;
        fs::metadata(target).map(|m| m.len()).unwrap_or(0)
    } else {
        if target.exists() {
            fs::remove_dir_all(target).map_err(io(format!("replacing {}", target.display())))?;
        }
        fs::rename(staging, target)
            .map_err(io(format!("moving the layout to {}", target.display())))?;
        crate::fsutil::dir_bytes(target)
    };
    Ok(Assembled {
        digest: manifest.digest,
        config_digest: config.digest,
        layers: vec![base.blob, app.blob],
        output_bytes,
        skipped_nodes: a.root.skipped,
    })
}

/// One image of a multi-architecture index: its layout (`oci:` output of
/// [`assemble`]).
pub struct Part {
    pub layout: PathBuf,
}

/// Merges assembled single-image layouts into one image index under `tag` (an
/// `index.json` naming one nested image index, whose manifests carry their platforms),
/// written to `out` whole or not at all. Returns the nested index's digest (the
/// multi-architecture image's identity).
pub fn merge(parts: &[Part], tag: &str, out: &Output, epoch: i64) -> Result<String, ImageError> {
    let out = Staged::new(out, "merging")?;
    let (target, is_archive, staging) = (&out.target, out.is_archive, &out.staging);
    out.run(|| {
        let layout =
            oci::Layout::create(staging).map_err(io(format!("making {}", staging.display())))?;
        let mut manifests = Vec::new();
        for p in parts {
            let bad = |why: String| {
                ImageError::Usage(format!(
                    "{}: {why}\n  help: assemble it again (`image --assemble`)",
                    p.layout.display()
                ))
            };
            let idx: serde_json::Value = serde_json::from_slice(
                &crate::safe::read_regular(&p.layout.join("index.json"), 1 << 20)
                    .map_err(|e| bad(format!("index.json: {e}")))?,
            )
            .map_err(|e| bad(format!("index.json: {e}")))?;
            let m = idx["manifests"]
                .as_array()
                .filter(|a| a.len() == 1)
                .map(|a| a[0].clone())
                .ok_or_else(|| bad("index.json names no single image".into()))?;
            let mut m = m;
            if let Some(a) = m.as_object_mut() {
                a.remove("annotations");
            }
            manifests.push(m);
            let blobs = p.layout.join("blobs/sha256");
            for e in fs::read_dir(&blobs).map_err(io(format!("reading {}", blobs.display())))? {
                let e = e.map_err(io(format!("reading {}", blobs.display())))?;
                let n = e.file_name().to_string_lossy().into_owned();
                if n.len() != 64 || !n.bytes().all(|c| c.is_ascii_hexdigit()) {
                    return Err(bad(format!("blobs/sha256/{n} is not a blob name")));
                }
                let to = layout.root.join("blobs/sha256").join(&n);
                if !to.exists() {
                    fs::hard_link(e.path(), &to)
                        .or_else(|_| fs::copy(e.path(), &to).map(|_| ()))
                        .map_err(io(format!("copying blob {n}")))?;
                }
            }
        }
        let nested = json!({
            "schemaVersion": 2,
            "mediaType": oci::MEDIA_INDEX,
            "manifests": manifests,
        });
        let nested = layout
            .put(&serde_json::to_vec(&nested).expect("JSON"))
            .map_err(io("writing the image index".into()))?;
        layout
            .index(&[json!({
                "mediaType": oci::MEDIA_INDEX,
                "digest": nested.digest,
                "size": nested.size,
                "annotations": {"org.opencontainers.image.ref.name": ref_name(tag)},
            })])
            .map_err(io("writing index.json".into()))?;
        if is_archive {
            layout
                .archive(target, epoch)
                .map_err(io(format!("writing {}", target.display())))?;
        } else {
            if target.exists() {
                if !target.join("oci-layout").is_file() {
                    return Err(ImageError::Usage(format!(
                        "--output oci:{0}: {0} exists and is not an OCI layout; refusing to replace it",
                        target.display()
                    )));
                }
                fs::remove_dir_all(target)
                    .map_err(io(format!("replacing {}", target.display())))?;
            }
            fs::rename(staging, target)
                .map_err(io(format!("moving the layout to {}", target.display())))?;
        }
        Ok(nested.digest)
    })
}
