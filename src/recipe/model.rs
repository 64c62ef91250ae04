//! The recipe format (docs/recipe.md). `Raw*` types mirror one TOML file, every field
//! optional and span-tagged so errors can name file:line:column; `Recipe` is the resolved,
//! validated result of a recipe merged over its era template.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use toml::Spanned;

use super::era::Era;
use crate::source::RepoName;
use crate::version::TagRange;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRecipe {
    /// Name of an era template in recipes/ (`era-4`) or a path to one.
    pub extends: Option<Spanned<String>>,
    pub era: Option<Spanned<Era>>,
    /// Present only in era templates.
    pub template: Option<RawTemplate>,
    pub ollama: Option<RawOllama>,
    pub llamacpp: Option<RawLlama>,
    pub series: Option<Spanned<Vec<RawSeries>>>,
    pub build: Option<RawBuild>,
    pub image: Option<RawImage>,
    pub smoke: Option<Smoke>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTemplate {
    pub tags: Option<Spanned<RawRange>>,
    pub summary: Option<String>,
    /// Tags of the era the template leaves out, and why (`recipe new` says so, exit 3).
    pub unsupported: Option<Vec<RawUnsupported>>,
}

/// `[[template.unsupported]] tags = { from, to }, why = "…"`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawUnsupported {
    pub tags: Spanned<RawRange>,
    pub why: Spanned<String>,
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRange {
    pub from: Option<Spanned<String>>,
    pub to: Option<Spanned<String>>,
    pub until: Option<Spanned<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawOllama {
    pub url: Option<Spanned<String>>,
    pub tag: Option<Spanned<String>>,
    pub commit: Option<Spanned<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLlama {
    pub url: Option<Spanned<String>>,
    pub source: Option<Spanned<LlamaSource>>,
    pub commit: Option<Spanned<String>>,
    pub version: Option<Spanned<String>>,
    /// `source = "vendored-plus-backend"`: the llama.cpp subtrees placed into the tree.
    pub backend: Option<Spanned<RawBackends>>,
}

/// `[llamacpp] backend = { from = "ggml/src/ggml-vulkan", to = "ml/backend/…/ggml-vulkan" }`,
/// or a list of them (a directory or a file each, optionally for part of the era's tags).
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawBackend {
    pub from: Option<String>,
    pub to: Option<String>,
    pub tags: Option<StepTags>,
}

/// One `{ from, to }` table or a list of them.
#[derive(Debug, Default, Clone)]
pub struct RawBackends(pub Vec<RawBackend>);

impl<'de> Deserialize<'de> for RawBackends {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        let one = |v: toml::Value| RawBackend::deserialize(v).map_err(D::Error::custom);
        match toml::Value::deserialize(d)? {
            toml::Value::Array(list) => list
                .into_iter()
                .map(one)
                .collect::<Result<_, _>>()
                .map(RawBackends),
            v @ toml::Value::Table(_) => Ok(RawBackends(vec![one(v)?])),
            other => Err(D::Error::custom(format!(
                "expected `{{ from = \"…\", to = \"…\" }}` or a list of them, not a {}",
                other.type_str()
            ))),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSeries {
    pub name: Spanned<String>,
    pub repo: Spanned<RepoName>,
    pub sha256: Spanned<String>,
    pub tags: Option<Spanned<RawRange>>,
    /// Context lines a hunk may ignore at each end (default 0: exact context).
    pub fuzz: Option<Spanned<usize>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawBuild {
    pub driver: Option<Spanned<Driver>>,
    pub presets: Option<Vec<String>>,
    pub cmake_options: Option<Vec<String>>,
    pub env: Option<BTreeMap<String, String>>,
    pub go_flags: Option<Vec<String>>,
    pub sparse: Option<Vec<String>>,
    pub missing_ok: Option<Vec<String>>,
    pub regenerate: Option<Vec<Regenerate>>,
    pub steps: Option<Vec<Step>>,
    pub check_libs: Option<Vec<String>>,
    pub cmake_min: Option<String>,
    /// Replaces recipes/base/packages.toml's `builder` list.
    pub builder_packages: Option<Vec<String>>,
    /// Added to the list (the template's, then the recipe's).
    pub builder_packages_extra: Option<Vec<String>>,
    pub keep_build_dirs: Option<Vec<String>>,
    /// The architectures the era's steps can build for (absent: every one).
    pub arches: Option<Vec<String>>,
}

/// One compile step of the era: argv run in a tree, with placeholders expanded at build
/// time: `{dist}`, `{ollama}`, `{llama}`, `{jobs}`, and the list placeholders
/// `{cmake_options}` / `{go_flags}` (an argument that is exactly one of those expands to
/// the recipe's list).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Step {
    pub name: String,
    pub run: Vec<String>,
    /// Working directory: relative to the Ollama tree (default `.`), or `{llama}/…`.
    #[serde(default)]
    pub cwd: Option<String>,
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// The tags the step is for (as a series' `tags`), where an era's build layout moves
    /// inside its range (era 2's `llama/Makefile` → `make/`); absent: every tag.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tags: Option<StepTags>,
}

/// `tags = { from, to | until }` of a build step; checked and applied at load.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StepTags {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub until: Option<String>,
}

impl StepTags {
    /// The range, or the first bound that is not a tag.
    pub fn range(&self) -> Result<crate::version::TagRange, String> {
        let bound = |v: &Option<String>| -> Result<Option<crate::version::Version>, String> {
            v.as_ref()
                .map(|s| s.parse().map_err(|e| format!("`{s}`: {e}")))
                .transpose()
        };
        if self.to.is_some() && self.until.is_some() {
            return Err("takes `to` (inclusive) or `until` (exclusive), not both".into());
        }
        Ok(crate::version::TagRange {
            from: bound(&self.from)?,
            to: bound(&self.to)?,
            until: bound(&self.until)?,
        })
    }
}

/// A generated file a partial mirror may lack and the build needs: remade from the
/// pinned tree's own generator (era 1's `ggml-vulkan-shaders.hpp` at b2679–b3337).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Regenerate {
    /// The repository whose tree holds the file.
    pub repo: RepoName,
    /// The file, relative to that tree.
    pub path: String,
    /// The command, run in the tree's root; it must write `path`.
    pub run: Vec<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawImage {
    pub variants: Option<Vec<String>>,
    pub base: Option<BTreeMap<String, String>>,
    /// Replaces recipes/base/packages.toml's `runtime` list.
    pub runtime_packages: Option<Vec<String>>,
    /// Added to the list (the template's, then the recipe's).
    pub runtime_packages_extra: Option<Vec<String>>,
    pub env: Option<BTreeMap<String, String>>,
}

/// How the smoke test switches Vulkan on and off in this era (UPSTREAM.md §1, runtime
/// switches), and how it makes ggml use a CPU-type Vulkan device (lavapipe) when no GPU
/// is present — a test-only switch, never put in images.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Smoke {
    #[serde(default)]
    pub vulkan_env: BTreeMap<String, String>,
    #[serde(default)]
    pub cpu_env: BTreeMap<String, String>,
    #[serde(default)]
    pub select_cpu_device_env: BTreeMap<String, String>,
    /// A substring of the server log that says why it runs on CPU with `cpu_env`.
    #[serde(default)]
    pub cpu_reason: Option<String>,
}

/// Where llama.cpp comes from and how the era expects it placed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum LlamaSource {
    /// A git work tree at `llm/llama.cpp` (eras 1a, 1b).
    Submodule,
    /// Already inside the Ollama tree (era 4).
    Vendored,
    /// A separate tree handed to CMake as FETCHCONTENT_SOURCE_DIR_LLAMA_CPP (era 5).
    FetchContent,
    /// Vendored in the Ollama tree, plus one subtree of the llama.cpp commit the tree's
    /// vendoring names, placed into it (`[llamacpp] backend`; era 3's ggml-vulkan).
    VendoredPlusBackend,
}

impl LlamaSource {
    pub fn for_era(era: Era) -> Option<LlamaSource> {
        match era {
            Era::OneA | Era::OneB => Some(LlamaSource::Submodule),
            Era::Two | Era::Three => Some(LlamaSource::VendoredPlusBackend),
            Era::Four => Some(LlamaSource::Vendored),
            Era::Five => Some(LlamaSource::FetchContent),
            _ => None,
        }
    }
    pub fn as_str(self) -> &'static str {
        match self {
            LlamaSource::Submodule => "submodule",
            LlamaSource::Vendored => "vendored",
            LlamaSource::FetchContent => "fetch-content",
            LlamaSource::VendoredPlusBackend => "vendored-plus-backend",
        }
    }
    /// Whether llama.cpp lives only inside the Ollama tree (no tree of its own).
    pub fn is_vendored(self) -> bool {
        matches!(
            self,
            LlamaSource::Vendored | LlamaSource::VendoredPlusBackend
        )
    }
}

/// The era's build driver; the steps themselves are data in the template.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Driver {
    /// `go generate ./...` → llm/generate/gen_linux.sh, then `go build` (eras 1a, 1b).
    GenLinux,
    /// `cmake --preset X`, build, install per component, then `go build` (eras 3, 4).
    CmakePresets,
    /// GNU make runners (`ollama_llama_server` per variant, cgo), then `go build` (era 2).
    Make,
    /// llama-server per backend from llama/server presets, then `go build` (era 5).
    LlamaServer,
}

impl Driver {
    pub fn for_era(era: Era) -> Option<Driver> {
        match era {
            Era::OneA | Era::OneB => Some(Driver::GenLinux),
            Era::Two => Some(Driver::Make),
            Era::Three | Era::Four => Some(Driver::CmakePresets),
            Era::Five => Some(Driver::LlamaServer),
            _ => None,
        }
    }
}

/// A fully resolved recipe (or template): what every later stage reads.
#[derive(Debug, Clone, Serialize)]
pub struct Recipe {
    pub path: PathBuf,
    /// The template this recipe extends (absent when the file is itself a template).
    pub template: Option<TemplateRef>,
    pub is_template: bool,
    pub era: Era,
    /// The tags the era template covers.
    pub tags: TagRange,
    pub summary: Option<String>,
    /// Tags of the era outside `tags` with the reason they are left out.
    pub unsupported: Vec<Unsupported>,
    pub ollama: Ollama,
    pub llamacpp: LlamaCpp,
    /// The series that apply to this recipe's tag (all of them for a template).
    pub series: Vec<SeriesPin>,
    pub build: Build,
    pub image: Image,
    pub smoke: Smoke,
}

#[derive(Debug, Clone, Serialize)]
pub struct Unsupported {
    pub tags: TagRange,
    pub why: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct TemplateRef {
    pub name: String,
    pub path: PathBuf,
}

#[derive(Debug, Clone, Serialize)]
pub struct Ollama {
    pub url: String,
    pub tag: Option<String>,
    pub commit: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct LlamaCpp {
    pub url: Option<String>,
    pub source: LlamaSource,
    /// Pinned commit; absent means "derive from the Ollama tree" at fetch time.
    pub commit: Option<String>,
    /// The llama.cpp release (bNNNN) the pin corresponds to, where known.
    pub version: Option<String>,
    /// The subtrees (or files) placed into the Ollama tree (`vendored-plus-backend` only),
    /// in order; for a tag's recipe, only those whose `tags` hold the tag.
    pub backend: Vec<Backend>,
}

/// One llama.cpp subtree or file copied into the Ollama tree at fetch time: `from` in the
/// llama.cpp commit, `to` in the Ollama tree (both relative, checked at load).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Backend {
    pub from: String,
    pub to: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct SeriesPin {
    pub name: String,
    pub repo: RepoName,
    pub sha256: String,
    pub dir: PathBuf,
    pub tags: TagRange,
    pub fuzz: usize,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Build {
    pub driver: Option<Driver>,
    pub presets: Vec<String>,
    pub cmake_options: Vec<String>,
    pub env: BTreeMap<String, String>,
    pub go_flags: Vec<String>,
    pub sparse: Vec<String>,
    /// Paths a partial mirror may lack without harm (skipped with a note).
    pub missing_ok: Vec<String>,
    /// Generated files remade when a partial mirror lacks them.
    pub regenerate: Vec<Regenerate>,
    /// The compile, as data.
    pub steps: Vec<Step>,
    /// Libraries in the dist (relative paths) that must load with no undefined symbols.
    pub check_libs: Vec<String>,
    /// The CMake version the era needs at least (`doctor`).
    pub cmake_min: Option<String>,
    /// Debian packages of the builder root (mmdebstrap).
    pub builder_packages: Vec<String>,
    /// Target-architecture packages of the cross builder root (recipes/base/packages.toml;
    /// not serialised: a cross build's key has them through its builder root's name).
    #[serde(skip)]
    pub cross_packages: Vec<String>,
    /// Build output dirs in the Ollama tree carried into a refetched tree of the same pins
    /// (with deterministic source mtimes, rebuilds are incremental).
    pub keep_build_dirs: Vec<String>,
    /// `[build] arches`: the targets the steps can build (empty: every one).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub arches: Vec<String>,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Image {
    pub variants: Vec<String>,
    pub base: BTreeMap<String, String>,
    pub runtime_packages: Vec<String>,
    pub env: BTreeMap<String, String>,
}
