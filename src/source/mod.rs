//! Upstream repositories: local bare mirrors given with `--mirror NAME=PATH`, or bare
//! mirrors kept in the cache and filled from the recipe's URL.

pub mod backend;
pub mod fetch;
pub mod git;
pub mod regenerate;
pub mod tree;

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use git2::Repository;

/// The upstream repositories a recipe reads.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
pub enum RepoName {
    #[serde(rename = "ollama")]
    Ollama,
    #[serde(rename = "llama.cpp")]
    LlamaCpp,
    /// The Venus lab's vtest server (recipes/lab/venus.toml), not part of Ollama.
    #[serde(rename = "virglrenderer")]
    Virglrenderer,
    /// Debian's mesa source package (recipes/lab/mesa.toml): a directory holding the
    /// `.dsc` and its tarballs, not a git repository.
    #[serde(rename = "mesa")]
    Mesa,
}

impl RepoName {
    pub fn as_str(self) -> &'static str {
        match self {
            RepoName::Ollama => "ollama",
            RepoName::LlamaCpp => "llama.cpp",
            RepoName::Virglrenderer => "virglrenderer",
            RepoName::Mesa => "mesa",
        }
    }
}

impl std::fmt::Display for RepoName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for RepoName {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "ollama" => Ok(RepoName::Ollama),
            "llama.cpp" | "llamacpp" | "llama-cpp" => Ok(RepoName::LlamaCpp),
            "virglrenderer" => Ok(RepoName::Virglrenderer),
            "mesa" => Ok(RepoName::Mesa),
            _ => Err(format!(
                "unknown repository `{s}`, expected `ollama`, `llama.cpp`, `virglrenderer` or `mesa`"
            )),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("--mirror {arg}: expected NAME=PATH with NAME `ollama` or `llama.cpp`\n  help: e.g. --mirror ollama=/srv/mirrors/ollama.git")]
    BadMirrorArg { arg: String },
    #[error("mirror {name}={path}: {why}\n  help: pass the path of a bare or normal git repository (the fetch tool prints one, e.g. .../ollama+ollama/repo)")]
    Unreadable {
        name: RepoName,
        path: PathBuf,
        why: String,
    },
    #[error("tag {tag} is not in the {name} repository at {path}\n  help: {hint}")]
    TagNotFound {
        name: RepoName,
        tag: String,
        path: PathBuf,
        hint: String,
    },
    #[error("{name} has no URL to fetch from and no --mirror {name}=PATH was given\n  help: pass --mirror {name}=PATH, or set [{section}] url in the recipe")]
    NoSource {
        name: RepoName,
        section: &'static str,
    },
    #[error("{name} is not in the cache ({path}) and --offline forbids fetching it\n  help: run once without --offline, or pass --mirror {name}=PATH")]
    OfflineMissing { name: RepoName, path: PathBuf },
    #[error("git {what} failed for {name} ({url}):\n{detail}")]
    Fetch {
        name: RepoName,
        url: String,
        what: String,
        detail: String,
    },
    #[error("{what}: {path} is missing from the mirror {mirror} (blob {blob}) and the build needs it\n  help: use a complete mirror, or if the build does not read this path, add it to [build] sparse (\"!/{path}\") or missing_ok in the recipe")]
    MissingBlob {
        what: String,
        path: String,
        blob: String,
        mirror: PathBuf,
    },
    #[error("tag {tag} of {name} moved: the recipe pins {expected} but the tag now resolves to {actual}\n  help: if the new commit is intended, regenerate the recipe (`ollama-vulkan recipe new --ollama {tag}`); otherwise the upstream tag was rewritten and must not be trusted")]
    MovedTag {
        name: RepoName,
        tag: String,
        expected: String,
        actual: String,
    },
    #[error("{name} commit {commit} is not in {path}\n  help: {hint}")]
    CommitNotFound {
        name: RepoName,
        commit: String,
        path: PathBuf,
        hint: String,
    },
    #[error("{}: {} is missing from the mirror and regenerating it with `{}` failed:\n{}\n  help: {}", .0.what, .0.path, .0.command, .0.detail, .0.help)]
    Regenerate(Box<RegenerateFailure>),
    #[error("{what}: the mirror's tree has an entry `{path}` that would write outside the tree: {why}; nothing was written\n  help: this mirror is damaged or hostile: use a clean mirror of the upstream repository")]
    HostileTree {
        what: String,
        path: String,
        why: String,
    },
    #[error("git refused the objects {url} sent for {name} (transfer.fsckObjects):\n{detail}\n  help: the upstream is damaged or hostile (a tree entry such as `..` or `.git`); nothing from it is used")]
    FsckFailed {
        name: RepoName,
        url: String,
        detail: String,
    },
    #[error("--cache-dir {path}: {why}\n  help: pass a directory (it is created if missing), or leave --cache-dir out")]
    BadCacheDir { path: PathBuf, why: String },
    /// `[llamacpp] backend` cannot be placed as written (exit 2; nothing was written).
    #[error("{recipe}: [llamacpp] backend: {why}; nothing was written\n  help: {help}")]
    BadBackend {
        recipe: PathBuf,
        why: String,
        help: String,
    },
    #[error("{what}: {source}")]
    Git { what: String, source: git2::Error },
    #[error("{what}: {source}")]
    Io {
        what: String,
        source: std::io::Error,
    },
}

impl crate::error::HasKind for SourceError {
    fn kind(&self) -> crate::error::Kind {
        use crate::error::Kind;
        match self {
            SourceError::BadMirrorArg { .. }
            | SourceError::Unreadable { .. }
            | SourceError::TagNotFound { .. }
            | SourceError::NoSource { .. }
            | SourceError::OfflineMissing { .. }
            | SourceError::MovedTag { .. }
            | SourceError::CommitNotFound { .. }
            | SourceError::HostileTree { .. }
            | SourceError::BadBackend { .. }
            | SourceError::BadCacheDir { .. }
            | SourceError::FsckFailed { .. } => Kind::BadInput,
            SourceError::Fetch { .. }
            | SourceError::MissingBlob { .. }
            | SourceError::Regenerate(_)
            | SourceError::Git { .. }
            | SourceError::Io { .. } => Kind::Failure,
        }
    }
}

#[derive(Debug)]
pub struct RegenerateFailure {
    pub what: String,
    pub path: String,
    pub command: String,
    pub detail: String,
    pub help: String,
}

/// Where each repository comes from: explicit mirrors first, then the cache.
#[derive(Debug, Clone, Default)]
pub struct Mirrors {
    explicit: BTreeMap<RepoName, Vec<PathBuf>>,
    cache_dir: PathBuf,
    offline: bool,
}

impl Mirrors {
    /// `args` are `NAME=PATH`; a name may repeat (e.g. an old and a new llama.cpp mirror:
    /// they are searched in the order given).
    pub fn new(args: &[String], cache_dir: PathBuf, offline: bool) -> Result<Self, SourceError> {
        let mut explicit: BTreeMap<RepoName, Vec<PathBuf>> = BTreeMap::new();
        for arg in args {
            let (name, path) = arg
                .split_once('=')
                .filter(|(n, p)| !n.is_empty() && !p.is_empty())
                .ok_or_else(|| SourceError::BadMirrorArg { arg: arg.clone() })?;
            let name: RepoName = name
                .parse()
                .map_err(|_| SourceError::BadMirrorArg { arg: arg.clone() })?;
            explicit.entry(name).or_default().push(PathBuf::from(path));
        }
        if let Ok(m) = fs::metadata(&cache_dir) {
            if !m.is_dir() {
                return Err(SourceError::BadCacheDir {
                    path: cache_dir,
                    why: "not a directory".into(),
                });
            }
        }
        Ok(Mirrors {
            explicit,
            cache_dir,
            offline,
        })
    }

    pub fn has_explicit(&self, name: RepoName) -> bool {
        self.explicit.contains_key(&name)
    }

    /// The `--mirror NAME=PATH` paths given for `name`, in order (for `mesa`: directories
    /// of Debian source packages, read by `crate::mesa`).
    pub fn explicit(&self, name: RepoName) -> &[PathBuf] {
        self.explicit.get(&name).map(Vec::as_slice).unwrap_or(&[])
    }

    pub fn offline(&self) -> bool {
        self.offline
    }

    pub fn cache_dir(&self) -> &Path {
        &self.cache_dir
    }

    /// Opens every repository for `name`: the explicit mirrors, or the cached mirror of
    /// `url`, into which only the `wants` it lacks are fetched (never when offline).
    pub fn open(
        &self,
        name: RepoName,
        url: Option<&str>,
        wants: &[Want],
    ) -> Result<Vec<Repo>, SourceError> {
        if let Some(paths) = self.explicit.get(&name) {
            return paths.iter().map(|p| Repo::open(name, p)).collect();
        }
        let url = url.ok_or(SourceError::NoSource {
            name,
            section: match name {
                RepoName::Ollama => "ollama",
                RepoName::LlamaCpp => "llamacpp",
                RepoName::Virglrenderer => "virglrenderer",
                RepoName::Mesa => "source",
            },
        })?;
        let path = git::cached_mirror(&self.cache_dir, name, url, wants, self.offline)?;
        Ok(vec![Repo::open(name, &path)?])
    }
}

/// What a cached mirror must hold; only what is missing is fetched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Want {
    Tag(String),
    Commit(String),
    /// Every tag and branch (the `era --all-tags` survey).
    Everything,
    /// Fetch the other wants at depth 1: a build needs the pinned trees, not history.
    Shallow,
}

/// An opened upstream repository and where it lives.
pub struct Repo {
    pub name: RepoName,
    pub path: PathBuf,
    pub git: Repository,
}

impl Repo {
    pub fn open(name: RepoName, path: &Path) -> Result<Self, SourceError> {
        let unreadable = |why: String| SourceError::Unreadable {
            name,
            path: path.to_path_buf(),
            why,
        };
        let meta = fs::metadata(path).map_err(|e| unreadable(e.to_string()))?;
        if !meta.is_dir() {
            return Err(unreadable("not a directory".into()));
        }
        let git = Repository::open(path)
            .map_err(|e| unreadable(format!("not a git repository: {}", e.message())))?;
        Ok(Repo {
            name,
            path: path.to_path_buf(),
            git,
        })
    }
}
