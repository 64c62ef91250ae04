//! `rebase-patches`: carry a recipe's series from its pinned upstream revision onto a new
//! tag, the way `git am -3` / `stg rebase` / `devtool upgrade` do (docs/patches.md).
//!
//! Per patch: the patch applied to the old side (old pin + the series' earlier patches)
//! is merged 3-way into the new side (new tag + the earlier patches as rebased), with the
//! old side as the merge base. A clean merge is re-exported (header bytes kept, diff
//! regenerated); an empty result or a patch that reverse-applies is dropped as upstreamed;
//! an overlap stops the rebase with a work tree holding conflict markers and a state file
//! under `work/rebase/<recipe>/`, resumed with `--continue`, `--skip` or `--abort`.
//! Nothing under patches/ or recipes/ is written until the whole rebase has finished.

mod drive;
pub mod merge;
mod pins;
mod plan;
pub mod report;
mod state;

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::rc::Rc;

use git2::Oid;
use serde::{Deserialize, Serialize};

use crate::diag::Diagnostics;
use crate::patch::engine::{FileEntry, Overlay};
use crate::patch::parse::{Patch, PatchError};
use crate::patch::series::{sha256_hex, Series};
use crate::project::Project;
use crate::recipe::era::{classify, Era, EraError, LlamaPin};
use crate::recipe::model::{RawRecipe, Recipe};
use crate::source::git::{commit_for_build, find_commit, resolve_tag};
use crate::source::{Mirrors, Repo, RepoName, SourceError, Want};

use drive::*;
use merge::{ConflictFile, FileNote, Outcome, Rename, Scratch, Status};
use pins::*;
use plan::*;
use state::*;

#[derive(Debug, thiserror::Error)]
pub enum RebaseError {
    #[error("{0}")]
    Usage(String),
    #[error("{0}")]
    Recipe(Diagnostics),
    #[error(transparent)]
    Source(#[from] SourceError),
    #[error(transparent)]
    Patch(#[from] PatchError),
    #[error(transparent)]
    Era(#[from] EraError),
    #[error("a rebase of {recipe} is already in progress ({state})\n  help: finish it with `ollama-vulkan rebase-patches {recipe} --continue` (or --skip), or drop it with --abort")]
    InProgress { recipe: String, state: PathBuf },
    #[error("no rebase of {recipe} is in progress ({state} does not exist)\n  help: start one with `ollama-vulkan rebase-patches {recipe} --onto TAG`")]
    NotInProgress { recipe: String, state: PathBuf },
    #[error("{file}:{line}: a conflict marker is still there\n  help: edit the file to the result you want (remove every <<<<<<<, =======, >>>>>>> line), then run --continue again; or --skip to drop the patch")]
    Unresolved { file: PathBuf, line: usize },
    #[error("series `{series}`: {patch} does not apply to its own pinned base {base}: {why}\n  help: the series and the recipe's pin disagree; check with `ollama-vulkan prepare RECIPE --check` and fix the series first")]
    OldBase {
        series: String,
        patch: String,
        base: String,
        why: String,
    },
    #[error("{path} changed while the rebase was in progress (sha256 {expected} when it started, {actual} now)\n  help: the rebase writes this file when it finishes; --abort restores what it was, or undo the edit and --continue")]
    Changed {
        path: PathBuf,
        expected: String,
        actual: String,
    },
    #[error("{file}: `{field}` {why}\n  help: the rebase state was edited or is damaged and is not trusted; nothing under patches/ or recipes/ is written before a rebase finishes, so remove {dir} and start again", dir = .file.parent().map(|p| p.display().to_string()).unwrap_or_default())]
    State {
        file: PathBuf,
        field: String,
        why: String,
    },
    #[error("{what}: {source}")]
    Git { what: String, source: git2::Error },
    #[error("{what}: {source}")]
    Io {
        what: String,
        source: std::io::Error,
    },
}

impl crate::error::HasKind for RebaseError {
    fn kind(&self) -> crate::error::Kind {
        use crate::error::Kind;
        match self {
            RebaseError::Source(e) => e.kind(),
            RebaseError::Usage(_)
            | RebaseError::Recipe(_)
            | RebaseError::Patch(_)
            | RebaseError::Era(_)
            | RebaseError::InProgress { .. }
            | RebaseError::NotInProgress { .. }
            | RebaseError::OldBase { .. }
            | RebaseError::State { .. } => Kind::BadInput,
            RebaseError::Unresolved { .. }
            | RebaseError::Changed { .. }
            | RebaseError::Git { .. }
            | RebaseError::Io { .. } => Kind::Failure,
        }
    }
}

fn gerr(what: impl Into<String>) -> impl FnOnce(git2::Error) -> RebaseError {
    let what = what.into();
    move |source| RebaseError::Git { what, source }
}

fn ioerr(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> RebaseError {
    let what = what.into();
    move |source| RebaseError::Io { what, source }
}

/// What the user asked for.
pub enum Action<'a> {
    Start {
        onto: &'a str,
        allow_era_change: bool,
    },
    Continue,
    Skip,
    Abort,
}

/// One side of the era comparison.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EraSide {
    pub tag: String,
    pub commit: String,
    pub era: Era,
    /// How the Vulkan backend is switched on at this tag (`LLAMA_VULKAN`, `GGML_VULKAN`,
    /// the upstream `Vulkan` preset), as read from the tree.
    pub vulkan_switch: Option<String>,
    pub evidence: Vec<String>,
}

/// The era detection's verdict for the new tag against the recipe's.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EraVerdict {
    pub from: EraSide,
    pub to: EraSide,
    pub changed: bool,
    pub reasons: Vec<String>,
}

/// One patch's line in the report.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PatchResult {
    pub patch: String,
    pub subject: String,
    pub status: Status,
    /// The patch file's bytes change (re-exported with new context or index lines).
    pub changed: bool,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub renames: Vec<Rename>,
    /// Per file and hunk, how the patch's own context fared on the new base.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub files: Vec<FileNote>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conflicts: Vec<ConflictFile>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SeriesReport {
    pub name: String,
    pub repo: RepoName,
    pub old_base: String,
    pub new_base: String,
    pub patches: Vec<PatchResult>,
}

#[derive(Debug, Clone, Serialize)]
#[serde(tag = "state", rename_all = "kebab-case")]
pub enum Finish {
    /// Every patch carried over; the files listed were written.
    Done {
        written: Vec<PathBuf>,
        removed: Vec<PathBuf>,
    },
    /// Stopped at a conflict.
    Conflict {
        series: String,
        patch: String,
        state_dir: PathBuf,
        work_tree: PathBuf,
        next_steps: Vec<String>,
    },
    /// The new tag is another era: nothing was done.
    EraChange,
    /// `--abort`: the state is gone; these files were restored.
    Aborted { restored: Vec<PathBuf> },
}

#[derive(Debug, Clone, Serialize)]
pub struct RebaseReport {
    pub recipe: PathBuf,
    pub onto: String,
    pub onto_commit: String,
    pub era: Option<EraVerdict>,
    pub series: Vec<SeriesReport>,
    pub outcome: Finish,
    pub notes: Vec<String>,
}

impl RebaseReport {
    /// The kind of failure the outcome reports as data (a conflict to resolve, another
    /// era), or None when it finished or was aborted.
    pub fn failure(&self) -> Option<crate::error::Kind> {
        match self.outcome {
            Finish::Done { .. } | Finish::Aborted { .. } => None,
            Finish::Conflict { .. } => Some(crate::error::Kind::Failure),
            Finish::EraChange => Some(crate::error::Kind::Unsupported),
        }
    }
}

/// Runs `rebase-patches` for `recipe_path`.
pub fn rebase(
    project: &Project,
    mirrors: &Mirrors,
    recipe_path: &Path,
    action: Action<'_>,
) -> Result<RebaseReport, RebaseError> {
    let dir = state_dir(project, recipe_path)?;
    let shown = recipe_path.display().to_string();
    // Refusals that need no lock come first: they write nothing.
    let in_progress = dir.join("state.json").exists();
    match action {
        Action::Start { .. } if in_progress => {
            return Err(RebaseError::InProgress {
                recipe: shown,
                state: dir,
            })
        }
        Action::Continue | Action::Skip | Action::Abort if !in_progress => {
            return Err(RebaseError::NotInProgress {
                recipe: shown,
                state: dir,
            })
        }
        _ => {}
    }
    // A state that is not trusted is refused before anything is created (and checked
    // again under the lock).
    if in_progress && !matches!(action, Action::Start { .. }) {
        let st = load_state(&dir)?;
        validate_state(&dir, project, recipe_path, &st, &action)?;
    }
    // One rebase-patches per recipe at a time (the state is read, then rewritten).
    let lock_path = dir.with_extension("lock");
    let parent = lock_path
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default();
    let made_parent = !parent.exists();
    fs::create_dir_all(&parent).map_err(ioerr(format!("creating {}", parent.display())))?;
    let made_lock = !lock_path.exists();
    let lock =
        fs::File::create(&lock_path).map_err(ioerr(format!("creating {}", lock_path.display())))?;
    let res = match lock.try_lock() {
        Ok(()) => locked(project, mirrors, recipe_path, &dir, action, shown),
        Err(fs::TryLockError::WouldBlock) => Err(RebaseError::Usage(format!(
            "another rebase-patches of {shown} is running (it holds {})\n  help: wait for it to finish",
            lock_path.display()
        ))),
        Err(fs::TryLockError::Error(e)) => Err(RebaseError::Io {
            what: format!("locking {}", lock_path.display()),
            source: e,
        }),
    };
    // A refused or failed run leaves no lock file it made (nor work/rebase/).
    if res.is_err() && made_lock {
        drop(lock);
        let _ = fs::remove_file(&lock_path);
        if made_parent {
            let _ = fs::remove_dir(&parent);
        }
    }
    res
}

fn locked(
    project: &Project,
    mirrors: &Mirrors,
    recipe_path: &Path,
    dir: &Path,
    action: Action<'_>,
    shown: String,
) -> Result<RebaseReport, RebaseError> {
    let dir = dir.to_path_buf();
    match action {
        Action::Start {
            onto,
            allow_era_change,
        } => {
            if dir.join("state.json").exists() {
                return Err(RebaseError::InProgress {
                    recipe: shown,
                    state: dir,
                });
            }
            start(project, mirrors, recipe_path, &dir, onto, allow_era_change)
        }
        Action::Continue | Action::Skip | Action::Abort => {
            if !dir.join("state.json").exists() {
                return Err(RebaseError::NotInProgress {
                    recipe: shown,
                    state: dir,
                });
            }
            let mut st = load_state(&dir)?;
            validate_state(&dir, project, recipe_path, &st, &action)?;
            match action {
                Action::Abort => abort(&dir, st),
                Action::Skip => {
                    let repos = open_repos(mirrors, &st.jobs)?;
                    let s = scratch(&dir, &repos)?;
                    skip_current(&mut st)?;
                    drive(&s, &dir, st)
                }
                _ if dir.join(FINISH).exists() => replay_finish(&dir, &st),
                _ => {
                    let repos = open_repos(mirrors, &st.jobs)?;
                    let s = scratch(&dir, &repos)?;
                    // No conflict pending: the run was stopped between patches (killed);
                    // the state names the next patch, so carry on from there.
                    if st.pending.is_some() {
                        resolve_current(&s, &dir, &mut st)?;
                    }
                    drive(&s, &dir, st)
                }
            }
        }
    }
}
