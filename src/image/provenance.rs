//! What an image says about itself: its labels (OCI annotations and ours) and the SBOM
//! written next to it, from the recipe, the dist's manifest, the tree's go.sum and the
//! runtime root's dpkg status. Every value that comes from a file (the manifest, go.sum,
//! dpkg's status) is checked before it reaches a label or the SBOM.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::{dpkg, gosum, lock, sbom, ImageError};
use crate::contract::Manifest;
use crate::recipe::model::Recipe;

/// The label naming the SBOM file written next to the image.
pub const SBOM_LABEL: &str = "io.ollama-vulkan.sbom";
/// Its SHA-256 (assembled images: the SBOM is written before the image).
pub const SBOM_SHA_LABEL: &str = "io.ollama-vulkan.sbom.sha256";

/// A label value from a file: one line, no control characters, at most 1 KiB.
fn value(what: &str, v: &str) -> Result<String, ImageError> {
    crate::safe::text(v).map_err(|why| {
        ImageError::Usage(format!(
            "refusing {what} as a label: {why}\n  help: rebuild the dist (`ollama-vulkan build`) so its manifest.json is this tool's own"
        ))
    })?;
    Ok(v.chars().take(1024).collect())
}

/// The provenance labels: OCI's revision, version and source, and ours (llama.cpp
/// commit, series and their pins, the recipe's hash, glslc and the shader variants
/// compiled in). `manifest` is the dist's (from-dist images).
pub fn labels(
    r: &Recipe,
    manifest: Option<&Manifest>,
) -> Result<Vec<(String, String)>, ImageError> {
    let mut l: Vec<(String, String)> = Vec::new();
    let commit = manifest
        .map(|m| m.ollama_commit.clone())
        .or_else(|| r.ollama.commit.clone());
    if let Some(c) = commit {
        l.push((
            "org.opencontainers.image.revision".into(),
            value("the Ollama commit", &c)?,
        ));
    }
    if let Some(t) = &r.ollama.tag {
        l.push((
            "org.opencontainers.image.version".into(),
            value("the tag", t)?,
        ));
    }
    let llama = manifest
        .and_then(|m| m.llamacpp_commit.clone())
        .or_else(|| r.llamacpp.commit.clone());
    if let Some(c) = llama {
        l.push((
            "io.ollama-vulkan.llama.cpp.commit".into(),
            value("the llama.cpp commit", &c)?,
        ));
    }
    let series: Vec<String> = match manifest {
        Some(m) => m
            .series
            .iter()
            .map(|s| format!("{}={}", s.name, s.sha256.as_deref().unwrap_or("unpinned")))
            .collect(),
        None => r
            .series
            .iter()
            .map(|s| format!("{}={}", s.name, s.sha256))
            .collect(),
    };
    l.push((
        "io.ollama-vulkan.series".into(),
        value("the series", &series.join(","))?,
    ));
    if let Ok(bytes) = crate::safe::read_regular(&r.path, crate::safe::MAX_TEXT) {
        l.push((
            "io.ollama-vulkan.recipe.sha256".into(),
            crate::patch::series::sha256_hex(&bytes),
        ));
    }
    if let Some(m) = manifest {
        if let Some(g) = &m.toolchain.glslc {
            l.push((
                "io.ollama-vulkan.glslc".into(),
                value("glslc's version", g)?,
            ));
        }
        let features: Vec<String> = m
            .vulkan_shader_features
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        l.push((
            "io.ollama-vulkan.shader-features".into(),
            value("the shader features", &features.join(","))?,
        ));
    }
    Ok(l)
}

/// The Go modules of the Ollama tree's go.sum (`DEST/src/ollama/go.sum`); an empty list
/// when the build directory has no tree (the SBOM says so).
pub fn go_modules(dest: &Path) -> Result<(Vec<gosum::Module>, Option<PathBuf>), ImageError> {
    let file = dest.join("src/ollama/go.sum");
    if !file.exists() {
        return Ok((Vec::new(), None));
    }
    let text = crate::safe::read_text(&file, gosum::MAX_GOSUM).map_err(|e| {
        ImageError::Usage(format!(
            "{}: {e}\n  help: prepare the tree again (`ollama-vulkan prepare RECIPE`)",
            file.display()
        ))
    })?;
    let m = gosum::parse(&text).map_err(|(line, why)| {
        ImageError::Usage(format!(
            "{}:{line}: {why}\n  help: go.sum comes from the pinned Ollama tree; prepare it again (`ollama-vulkan prepare RECIPE`), or fix the series that changes it",
            file.display()
        ))
    })?;
    Ok((m, Some(file)))
}

/// The runtime root's installed packages from its dpkg status (`origin` names where
/// the bytes came from, for errors).
pub fn packages(bytes: Option<Vec<u8>>, origin: &str) -> Result<dpkg::Installed, ImageError> {
    let bytes = bytes.ok_or_else(|| {
        ImageError::Usage(format!(
            "{origin} has no /{} (not a Debian root): the SBOM and the package lock need it\n  help: use a runtime base made by `ollama-vulkan base --role runtime`",
            dpkg::STATUS
        ))
    })?;
    let text = String::from_utf8(bytes)
        .map_err(|_| ImageError::Usage(format!("/{} in {origin} is not UTF-8", dpkg::STATUS)))?;
    dpkg::parse(&text).map_err(|e| {
        ImageError::Usage(format!(
            "/{}:{} in {origin}: {}\n  help: remake the runtime base (`ollama-vulkan base --role runtime`)",
            dpkg::STATUS,
            e.line,
            e.why
        ))
    })
}

/// What the SBOM step wrote.
#[derive(Debug, Clone, serde::Serialize)]
pub struct SbomReport {
    /// In the build directory, and a copy beside the exported image.
    pub files: Vec<PathBuf>,
    pub sha256: String,
    pub debian_packages: usize,
    pub go_modules: usize,
    /// Where the Go modules came from (None: no tree in the build directory).
    pub go_sum: Option<PathBuf>,
}

/// Writes `doc` (atomically) to each of `files`.
pub fn write(doc: &serde_json::Value, files: &[PathBuf]) -> Result<String, ImageError> {
    let bytes = sbom::to_bytes(doc);
    for f in files {
        crate::fsutil::write_atomic(f, &bytes).map_err(|source| ImageError::Io {
            what: format!("writing the SBOM {}", f.display()),
            source,
        })?;
    }
    Ok(crate::patch::series::sha256_hex(&bytes))
}

/// The lock check of a runtime root (`lock` None: not asked for).
pub fn check_lock(
    file: Option<&Path>,
    base: &str,
    arch: crate::target::Arch,
    installed: &dpkg::Installed,
    locked: bool,
) -> Result<Option<lock::LockReport>, ImageError> {
    let Some(file) = file else {
        return Ok(None);
    };
    let r = lock::check(file, base, arch.name(), installed, locked)?;
    match r.status.as_str() {
        "recorded" => crate::progress::note(&format!(
            "recorded the versions of {} packages of {base} ({arch}) in {} (commit it)",
            installed.len(),
            file.display()
        )),
        "updated" => {
            eprintln!(
                "warning: the runtime root of {base} ({arch}) drifted from {} (updated; `--locked` makes this an error):\n{}",
                file.display(),
                r.changes
                    .iter()
                    .map(|c| format!("    {c}"))
                    .collect::<Vec<_>>()
                    .join("\n")
            );
        }
        _ => {}
    }
    Ok(Some(r))
}

/// Labels as a map (the config's `Labels`).
pub fn label_map(l: &[(String, String)]) -> BTreeMap<String, String> {
    l.iter().cloned().collect()
}
