//! The files stages hand each other, as typed and versioned structs: `sources.json`
//! (fetch → prepare, build) and `manifest.json` (build → smoke, image). A reader checks
//! the `schema` field first, so a file of another version is refused with a message that
//! says how to remake it rather than misread.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::build::builder::Builder;
use crate::build::run::StepRecord;
use crate::build::toolchain::Versions;
use crate::patch::engine::PatchStatus;
use crate::recipe::era::Era;
use crate::recipe::model::Smoke;
use crate::source::regenerate::Regenerated;
use crate::source::tree::Materialised;

/// `sources.json`'s version. 1: the first with a `schema` field.
pub const SOURCES_SCHEMA: u32 = 1;
/// `manifest.json`'s version. 2: typed sources (with their own schema) and series.
pub const MANIFEST_SCHEMA: u32 = 2;

#[derive(Debug, thiserror::Error)]
pub enum ContractError {
    #[error("{file}: {why}\n  help: {help}")]
    Unreadable {
        file: PathBuf,
        why: String,
        help: &'static str,
    },
    #[error("{file}: schema {found} is not the schema {expected} this ollama-vulkan reads (it was written by {writer})\n  help: {help}")]
    Schema {
        file: PathBuf,
        found: String,
        expected: u32,
        writer: String,
        help: &'static str,
    },
}

impl crate::error::HasKind for ContractError {
    fn kind(&self) -> crate::error::Kind {
        crate::error::Kind::BadInput
    }
}

/// What fetch materialised: `fetch --json` prints it, `sources.json` keeps it next to
/// the trees, and prepare and build read it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Sources {
    pub schema: u32,
    pub ollama_tree: PathBuf,
    pub llamacpp_tree: Option<PathBuf>,
    pub ollama_commit: String,
    pub llamacpp_commit: Option<String>,
    pub ollama: Materialised,
    pub llamacpp: Option<Materialised>,
    /// Ollama's own llama/compat patches applied to the llama.cpp tree (era 5), in order.
    pub compat_patches: Vec<CompatPatch>,
    /// Files the mirror lacked and the build needs, remade from the pin's own generator.
    pub regenerated: Vec<Regenerated>,
    pub notes: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CompatPatch {
    pub patch: String,
    /// "applied" or "already applied".
    pub status: String,
}

impl Sources {
    pub const FILE: &'static str = "sources.json";

    /// `DEST/sources.json`, as fetch wrote it.
    pub fn read(dest: &Path) -> Result<Sources, ContractError> {
        read_versioned(
            &dest.join(Self::FILE),
            SOURCES_SCHEMA,
            "fetch again (`ollama-vulkan fetch RECIPE`, or build, which fetches)",
        )
    }
}

/// What `manifest.json` in a dist holds: how it was made, from what, and how to smoke
/// it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Manifest {
    pub schema: u32,
    pub tool: String,
    /// The hash of every input that decides the dist (a rebuild with the same key is a
    /// cache hit).
    pub input_key: String,
    pub recipe: RecipeRef,
    /// The platform the dist runs on (`linux/<target>`); manifests from before cross
    /// builds are the host's.
    #[serde(default = "crate::target::Arch::host")]
    pub target: crate::target::Arch,
    pub ollama_commit: String,
    pub llamacpp_commit: Option<String>,
    pub llamacpp_version: Option<String>,
    pub series: Vec<AppliedSeries>,
    pub sources: Sources,
    pub builder: Builder,
    /// How `smoke` switches Vulkan on and off for this era (from the template).
    pub smoke: Smoke,
    pub toolchain: Versions,
    /// What glslc itself compiles (probed directly).
    pub glslc_extensions: BTreeMap<String, bool>,
    /// What the Vulkan build's CMake decided (from its configure output): the shader
    /// variants actually compiled in.
    pub vulkan_shader_features: BTreeMap<String, bool>,
    pub steps: Vec<StepRecord>,
    pub lib_checks: Vec<LibCheck>,
    pub dist_files: Vec<DistFile>,
    pub timings: Timings,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RecipeRef {
    pub path: PathBuf,
    pub era: Era,
    pub tag: Option<String>,
    pub template: Option<String>,
}

/// One series as the build applied it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AppliedSeries {
    pub name: String,
    pub repo: String,
    pub sha256: Option<String>,
    pub patches: Vec<AppliedPatch>,
    /// One commit per patch on top of the pin.
    pub commits: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AppliedPatch {
    pub patch: String,
    pub status: PatchStatus,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LibCheck {
    pub lib: String,
    pub ok: bool,
    pub undefined: Vec<String>,
    pub missing_deps: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DistFile {
    pub path: String,
    pub bytes: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize, Default)]
pub struct Timings {
    pub fetch_and_prepare_s: f64,
    pub compile_s: f64,
    pub checks_s: f64,
    pub total_s: f64,
    /// Time outside the steps' subprocesses, as a fraction of the total.
    pub orchestrator_fraction: f64,
}

impl Manifest {
    pub const FILE: &'static str = "manifest.json";

    /// `DIST/manifest.json`, as build wrote it.
    pub fn read(dist: &Path) -> Result<Manifest, ContractError> {
        read_versioned(
            &dist.join(Self::FILE),
            MANIFEST_SCHEMA,
            "rebuild the dist with `ollama-vulkan build` (an unchanged recipe rebuilds from ccache)",
        )
    }
}

/// Reads a JSON file whose `schema` must be `expected`; then its typed form.
fn read_versioned<T: serde::de::DeserializeOwned>(
    file: &Path,
    expected: u32,
    help: &'static str,
) -> Result<T, ContractError> {
    let unreadable = |why: String| ContractError::Unreadable {
        file: file.to_path_buf(),
        why,
        help,
    };
    let bytes = fs::read(file).map_err(|e| unreadable(e.to_string()))?;
    let v: serde_json::Value =
        serde_json::from_slice(&bytes).map_err(|e| unreadable(format!("not JSON: {e}")))?;
    let found = v.get("schema");
    if found.and_then(|s| s.as_u64()) != Some(u64::from(expected)) {
        return Err(ContractError::Schema {
            file: file.to_path_buf(),
            found: found.map_or("(none)".into(), |s| s.to_string()),
            expected,
            writer: v
                .get("tool")
                .and_then(|t| t.as_str())
                .unwrap_or("another version")
                .to_string(),
            help,
        });
    }
    serde_json::from_value(v).map_err(|e| unreadable(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_manifest_of_another_schema_is_refused_naming_both_versions_and_the_fix() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(
            dir.path().join("manifest.json"),
            r#"{"schema": 1, "tool": "ollama-vulkan 0.1.0", "input_key": "x"}"#,
        )
        .unwrap();
        let e = Manifest::read(dir.path()).unwrap_err().to_string();
        assert!(e.contains("schema 1 is not the schema 2"), "{e}");
        assert!(e.contains("ollama-vulkan 0.1.0"), "{e}");
        assert!(e.contains("ollama-vulkan build"), "{e}");
    }

    #[test]
    fn sources_without_a_schema_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(
            dir.path().join("sources.json"),
            r#"{"ollama_commit": "abc"}"#,
        )
        .unwrap();
        let e = Sources::read(dir.path()).unwrap_err().to_string();
        assert!(e.contains("schema (none)"), "{e}");
    }
}
