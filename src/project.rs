//! The project checkout the tool works in: era templates (recipes/), patch series
//! (patches/) and the git-ignored work folder for generated recipes and builds.

use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum ProjectError {
    #[error("{0} has no recipes/ directory\n  help: point --project (or OLLAMA_VULKAN_PROJECT) at an ollama-vulkan checkout")]
    NotAProject(PathBuf),
    #[error("no ollama-vulkan checkout found (a directory with recipes/ and patches/) above {0}\n  help: run inside the checkout or pass --project DIR")]
    NotFound(PathBuf),
}

impl crate::error::HasKind for ProjectError {
    fn kind(&self) -> crate::error::Kind {
        crate::error::Kind::BadInput
    }
}

#[derive(Debug, Clone)]
pub struct Project {
    pub root: PathBuf,
}

fn looks_like_project(dir: &Path) -> bool {
    dir.join("recipes").is_dir() && dir.join("patches").is_dir()
}

impl Project {
    /// `explicit`, else the nearest ancestor of the working directory that holds recipes/
    /// and patches/, else the checkout this binary was built from.
    pub fn discover(explicit: Option<&Path>) -> Result<Project, ProjectError> {
        if let Some(dir) = explicit {
            if !dir.join("recipes").is_dir() {
                return Err(ProjectError::NotAProject(dir.to_path_buf()));
            }
            return Ok(Project {
                root: dir.to_path_buf(),
            });
        }
        let cwd = std::env::current_dir().unwrap_or_else(|_| PathBuf::from("."));
        if let Some(dir) = cwd.ancestors().find(|d| looks_like_project(d)) {
            return Ok(Project {
                root: dir.to_path_buf(),
            });
        }
        let built_from = Path::new(env!("CARGO_MANIFEST_DIR"));
        if looks_like_project(built_from) {
            return Ok(Project {
                root: built_from.to_path_buf(),
            });
        }
        Err(ProjectError::NotFound(cwd))
    }

    pub fn recipes_dir(&self) -> PathBuf {
        self.root.join("recipes")
    }
    pub fn patches_dir(&self) -> PathBuf {
        self.root.join("patches")
    }
    /// Git-ignored: generated recipes, builds.
    pub fn work_dir(&self) -> PathBuf {
        self.root.join("work")
    }

    /// Era templates (`recipes/era-*.toml`), sorted by name.
    pub fn templates(&self) -> Vec<(String, PathBuf)> {
        let mut out: Vec<(String, PathBuf)> = std::fs::read_dir(self.recipes_dir())
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "toml"))
            .filter_map(|p| {
                let stem = p.file_stem()?.to_string_lossy().into_owned();
                stem.starts_with("era-").then_some((stem, p))
            })
            .collect();
        out.sort();
        out
    }

    pub fn template_names(&self) -> Vec<String> {
        self.templates().into_iter().map(|(n, _)| n).collect()
    }
}

/// `$XDG_CACHE_HOME/ollama-vulkan`, else `~/.cache/ollama-vulkan`.
pub fn default_cache_dir() -> PathBuf {
    if let Some(x) = std::env::var_os("XDG_CACHE_HOME").filter(|v| !v.is_empty()) {
        return PathBuf::from(x).join("ollama-vulkan");
    }
    let home = std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("."));
    home.join(".cache").join("ollama-vulkan")
}
