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

pub mod merge;
pub mod report;

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

use merge::{ConflictFile, FileNote, Outcome, Rename, Scratch, Status};

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

/// A series to carry over.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Job {
    name: String,
    repo: RepoName,
    dir: PathBuf,
    patches: Vec<String>,
    fuzz: usize,
    old_base: String,
    new_base: String,
    /// The file whose `[[series]]` entry pins this series (the recipe or its template).
    pin_file: PathBuf,
    sha256: String,
}

/// A file the rebase may write when it finishes, as it was when it started.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Original {
    path: PathBuf,
    sha256: Option<String>,
    /// The copy under the state dir (for --abort).
    copy: PathBuf,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Pending {
    paths: Vec<String>,
    conflicts: Vec<ConflictFile>,
    renames: Vec<Rename>,
    files: Vec<FileNote>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct State {
    recipe: PathBuf,
    onto: String,
    onto_commit: String,
    era: EraVerdict,
    allow_era_change: bool,
    jobs: Vec<Job>,
    /// (series index, patch index) of the patch in progress.
    cur: (usize, usize),
    /// Old side before / after the current patch; new side (a commit) before it.
    o_tree: Option<String>,
    p_tree: Option<String>,
    n_commit: Option<String>,
    results: Vec<Vec<PatchResult>>,
    pending: Option<Pending>,
    originals: Vec<Original>,
    /// Per-tag recipe pins to write when done: [ollama] tag/commit, [llamacpp].
    new_llama_commit: Option<String>,
    new_llama_version: Option<String>,
}

fn absolute(p: &Path) -> PathBuf {
    fs::canonicalize(p)
        .or_else(|_| std::path::absolute(p))
        .unwrap_or_else(|_| p.to_path_buf())
}

/// `work/rebase/<recipe name>`, from the validated name only.
fn state_dir(project: &Project, recipe: &Path) -> Result<PathBuf, RebaseError> {
    let name = crate::safe::recipe_name_of(recipe).map_err(|why| {
        RebaseError::Usage(format!(
            "{}: {why}\n  help: rename the recipe file",
            crate::safe::show(&recipe.display().to_string())
        ))
    })?;
    Ok(project.work_dir().join("rebase").join(name))
}

/// Writes a file of the rebase's own state (under work/): temp file + rename, no fsync —
/// the state dir is scratch; patches/ and recipes/ get [`crate::fsutil::write_atomic`].
fn write_scratch(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir)?;
    }
    let tmp = path.with_extension("tmp~");
    fs::write(&tmp, bytes)?;
    fs::rename(&tmp, path)
}

fn load_state(dir: &Path) -> Result<State, RebaseError> {
    let p = dir.join("state.json");
    let bytes = crate::safe::read_regular(&p, 64 * crate::safe::MAX_TEXT).map_err(|e| {
        RebaseError::State {
            file: p.clone(),
            field: "(file)".into(),
            why: format!("cannot be read: {e}"),
        }
    })?;
    serde_json::from_slice(&bytes).map_err(|e| RebaseError::State {
        file: p.clone(),
        field: "(file)".into(),
        why: format!("is not a rebase state file: {e}"),
    })
}

fn is_oid(s: &str) -> bool {
    s.len() == 40 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Checks a loaded state against what it may name: every path is re-derived from the
/// project and the recipe (the series directories under patches/, the recipe, its
/// template, the copies under the state dir) and must match; indices are in range;
/// object ids are ids. A state that fails is refused, never acted on.
fn validate_state(
    dir: &Path,
    project: &Project,
    recipe_path: &Path,
    st: &State,
    action: &Action<'_>,
) -> Result<(), RebaseError> {
    let file = dir.join("state.json");
    let bad = |field: &str, why: String| RebaseError::State {
        file: file.clone(),
        field: field.to_string(),
        why,
    };
    let recipe = absolute(recipe_path);
    if st.recipe != recipe {
        return Err(bad(
            "recipe",
            format!(
                "names {} but this is the rebase of {}",
                st.recipe.display(),
                recipe.display()
            ),
        ));
    }
    if !is_oid(&st.onto_commit) {
        return Err(bad("onto_commit", "is not a commit id".into()));
    }
    if let Err(why) = crate::safe::text(&st.onto) {
        return Err(bad("onto", why));
    }
    let patches_dir = absolute(&project.patches_dir());
    let recipes_dir = absolute(&project.recipes_dir());
    let recipe_dir = recipe.parent().map(Path::to_path_buf).unwrap_or_default();
    let mut allowed: Vec<PathBuf> = vec![recipe.clone()];
    for (i, j) in st.jobs.iter().enumerate() {
        let f = |x: &str| format!("jobs[{i}].{x}");
        crate::safe::file_name(&j.name).map_err(|why| bad(&f("name"), why))?;
        if j.dir != patches_dir.join(&j.name) {
            return Err(bad(
                &f("dir"),
                format!(
                    "is {} but series `{}` lives in {}",
                    j.dir.display(),
                    j.name,
                    patches_dir.join(&j.name).display()
                ),
            ));
        }
        let pin_ok = j.pin_file == recipe
            || (j.pin_file.starts_with(&recipes_dir) || j.pin_file.starts_with(&recipe_dir))
                && j.pin_file.extension().is_some_and(|e| e == "toml")
                && !j
                    .pin_file
                    .components()
                    .any(|c| c == std::path::Component::ParentDir);
        if !pin_ok {
            return Err(bad(
                &f("pin_file"),
                format!(
                    "{} is neither the recipe nor a template in {}",
                    j.pin_file.display(),
                    recipes_dir.display()
                ),
            ));
        }
        for p in &j.patches {
            crate::safe::file_name(p).map_err(|why| bad(&f("patches"), why))?;
        }
        for (k, v) in [("old_base", &j.old_base), ("new_base", &j.new_base)] {
            if !is_oid(v) {
                return Err(bad(&f(k), "is not a commit id".into()));
            }
        }
        allowed.push(j.pin_file.clone());
        allowed.push(j.dir.join("series"));
        allowed.push(j.dir.join("SHA256SUMS"));
        allowed.extend(j.patches.iter().map(|p| j.dir.join(p)));
    }
    let canon: Vec<PathBuf> = allowed.iter().map(|p| absolute(p)).collect();
    for (i, o) in st.originals.iter().enumerate() {
        if !allowed.contains(&o.path) && !canon.contains(&o.path) {
            return Err(bad(
                &format!("originals[{i}].path"),
                format!("names {}, which this rebase never writes", o.path.display()),
            ));
        }
        if o.copy != dir.join("orig").join(format!("{i:04}")) {
            return Err(bad(
                &format!("originals[{i}].copy"),
                format!("is {}, outside the state's own copies", o.copy.display()),
            ));
        }
        if o.sha256
            .as_ref()
            .is_some_and(|h| h.len() != 64 || !h.bytes().all(|b| b.is_ascii_hexdigit()))
        {
            return Err(bad(
                &format!("originals[{i}].sha256"),
                "is not a SHA-256".into(),
            ));
        }
    }
    if st.results.len() != st.jobs.len() {
        return Err(bad(
            "results",
            format!(
                "has {} entries for {} series",
                st.results.len(),
                st.jobs.len()
            ),
        ));
    }
    for (i, (rs, j)) in st.results.iter().zip(&st.jobs).enumerate() {
        for r in rs {
            if !j.patches.contains(&r.patch) {
                return Err(bad(
                    &format!("results[{i}]"),
                    format!(
                        "names `{}`, not a patch of series `{}`",
                        crate::safe::show(&r.patch),
                        j.name
                    ),
                ));
            }
        }
    }
    if st.cur.0 > st.jobs.len()
        || st
            .jobs
            .get(st.cur.0)
            .is_some_and(|j| st.cur.1 > j.patches.len())
        || (st.cur.0 == st.jobs.len() && st.cur.1 != 0)
    {
        return Err(bad(
            "cur",
            format!(
                "({}, {}) is outside the series and their patches",
                st.cur.0, st.cur.1
            ),
        ));
    }
    for (k, v) in [
        ("o_tree", &st.o_tree),
        ("p_tree", &st.p_tree),
        ("n_commit", &st.n_commit),
    ] {
        if v.as_deref().is_some_and(|v| !is_oid(v)) {
            return Err(bad(k, "is not an object id".into()));
        }
    }
    if let Some(p) = &st.pending {
        for path in p.paths.iter().chain(p.conflicts.iter().map(|c| &c.path)) {
            crate::safe::rel_path(path).map_err(|why| bad("pending.paths", why))?;
        }
    }
    // --continue after a kill between patches has no conflict pending and carries on from
    // `cur` (which may be past the last patch); --skip needs a conflict to skip.
    if matches!(action, Action::Skip) && st.pending.is_none() {
        return Err(bad("pending", "is null: no conflict to skip".into()));
    }
    if matches!(action, Action::Continue | Action::Skip) {
        if st.pending.is_some() {
            if st.cur.0 >= st.jobs.len() || st.cur.1 >= st.jobs[st.cur.0].patches.len() {
                return Err(bad("cur", "names no patch in progress".into()));
            }
            for (k, v) in [("n_commit", &st.n_commit), ("p_tree", &st.p_tree)] {
                if v.is_none() {
                    return Err(bad(k, "is null while a conflict is pending".into()));
                }
            }
        } else if st.cur.0 > st.jobs.len()
            || (st.cur.0 < st.jobs.len() && st.cur.1 > st.jobs[st.cur.0].patches.len())
        {
            return Err(bad("cur", "is past the series".into()));
        }
    }
    Ok(())
}

fn save_state(dir: &Path, st: &State) -> Result<(), RebaseError> {
    let p = dir.join("state.json");
    let text = serde_json::to_vec_pretty(st).expect("state serialises");
    write_scratch(&p, &text).map_err(ioerr(format!("writing {}", p.display())))
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

struct Repos {
    ollama: Vec<Repo>,
    llama: Vec<Repo>,
}

fn open_repos(mirrors: &Mirrors, jobs: &[Job]) -> Result<Repos, RebaseError> {
    let ollama = mirrors.open(
        RepoName::Ollama,
        Some(crate::recipe::new::DEFAULT_OLLAMA_URL),
        &[],
    )?;
    let llama = if jobs.iter().any(|j| j.repo == RepoName::LlamaCpp) {
        mirrors.open(
            RepoName::LlamaCpp,
            Some(crate::recipe::new::DEFAULT_LLAMACPP_URL),
            &[],
        )?
    } else {
        Vec::new()
    };
    Ok(Repos { ollama, llama })
}

fn scratch(dir: &Path, repos: &Repos) -> Result<Scratch, RebaseError> {
    let alts: Vec<PathBuf> = repos
        .ollama
        .iter()
        .chain(repos.llama.iter())
        .map(|r| r.git.path().join("objects"))
        .map(|p| fs::canonicalize(&p).unwrap_or(p))
        .collect();
    Scratch::open_or_init(&dir.join("tree"), &alts).map_err(gerr(format!(
        "making the rebase work tree {}",
        dir.join("tree").display()
    )))
}

/// How the tree switches Vulkan on, read from its files.
fn vulkan_switch(repo: &git2::Repository, tree: &git2::Tree<'_>, era: Era) -> Option<String> {
    let blob = |p: &str| -> Option<Vec<u8>> {
        let e = tree.get_path(Path::new(p)).ok()?;
        repo.find_blob(e.id()).ok().map(|b| b.content().to_vec())
    };
    let has = |h: &[u8], n: &[u8]| h.windows(n.len()).any(|w| w == n);
    match era {
        Era::OneA | Era::OneB => {
            let gen = blob("llm/generate/gen_linux.sh")?;
            if has(&gen, b"-DGGML_") {
                Some("GGML_VULKAN".into())
            } else if has(&gen, b"-DLLAMA_") {
                Some("LLAMA_VULKAN".into())
            } else {
                None
            }
        }
        Era::Four => Some("upstream CMake preset `Vulkan`".into()),
        Era::Five => Some("GGML_VULKAN (llama-server presets)".into()),
        _ => None,
    }
}

fn era_side(repo: &Repo, tag: &str, commit: Oid) -> Result<(EraSide, LlamaPin), RebaseError> {
    let what = format!("{tag} ({})", &commit.to_string()[..12]);
    let tree = repo
        .git
        .find_commit(commit)
        .and_then(|c| c.tree())
        .map_err(gerr(format!("reading {what}")))?;
    let cls = classify(&repo.git, &tree, &what)?;
    Ok((
        EraSide {
            tag: tag.to_string(),
            commit: commit.to_string(),
            era: cls.era,
            vulkan_switch: vulkan_switch(&repo.git, &tree, cls.era),
            evidence: cls.evidence.clone(),
        },
        cls.llamacpp,
    ))
}

fn verdict(from: EraSide, to: EraSide, recipe: &Recipe) -> EraVerdict {
    let mut reasons = Vec::new();
    if from.era != to.era {
        let mut r = format!(
            "{} is era {} but {} is era {} (the layout and the build differ: a series made for one does not build in the other)",
            from.tag, from.era, to.tag, to.era
        );
        if !to.era.has_vulkan_path() {
            r.push_str(&format!("; {}", to.era.why_no_vulkan()));
        }
        if matches!(from.era, Era::OneA | Era::OneB) && !matches!(to.era, Era::OneA | Era::OneB) {
            r.push_str(&format!(
                "; llm/generate/gen_linux.sh is gone at {}",
                to.tag
            ));
        }
        if to.era == Era::Four && from.era < Era::Four {
            r.push_str(&format!(
                "; Vulkan is upstream at {} (era 4, from v0.12.6): the series may shrink to what upstream lacks",
                to.tag
            ));
        }
        reasons.push(r);
    } else if from.vulkan_switch != to.vulkan_switch {
        reasons.push(format!(
            "the Vulkan switch is {} at {} but {} at {} (llama.cpp renamed its LLAMA_* options to GGML_*): a series that sets the old name applies but builds without Vulkan",
            from.vulkan_switch.as_deref().unwrap_or("none"),
            from.tag,
            to.vulkan_switch.as_deref().unwrap_or("none"),
            to.tag
        ));
    }
    if let Ok(v) = to.tag.parse::<crate::version::Version>() {
        for s in &recipe.series {
            if !s.tags.contains(&v) && s.tags != Default::default() {
                reasons.push(format!(
                    "series `{}` is pinned for tags {} and {} is outside that range",
                    s.name, s.tags, to.tag
                ));
            }
        }
    }
    EraVerdict {
        changed: !reasons.is_empty(),
        from,
        to,
        reasons,
    }
}

fn start(
    project: &Project,
    mirrors: &Mirrors,
    recipe_path: &Path,
    dir: &Path,
    onto: &str,
    allow_era_change: bool,
) -> Result<RebaseReport, RebaseError> {
    let recipe = crate::recipe::load(recipe_path, project).map_err(RebaseError::Recipe)?;
    let (Some(tag), Some(commit)) = (recipe.ollama.tag.clone(), recipe.ollama.commit.clone())
    else {
        return Err(RebaseError::Usage(format!(
            "{} pins no Ollama tag and commit (it is an era template); rebase-patches needs a per-tag recipe: the pin is the old base\n  help: make one with `ollama-vulkan recipe new --ollama TAG` for the tag the series applies to now",
            recipe_path.display()
        )));
    };
    if recipe.series.is_empty() {
        return Err(RebaseError::Usage(format!(
            "{} has no patch series for {tag}: nothing to rebase",
            recipe_path.display()
        )));
    }
    let ollama = mirrors.open(
        RepoName::Ollama,
        Some(&recipe.ollama.url),
        &[Want::Tag(tag.clone()), Want::Tag(onto.to_string())],
    )?;
    let orepo = &ollama[0];
    let from_oid = Oid::from_str(&commit).map_err(gerr(format!("the recipe's commit {commit}")))?;
    if orepo.git.find_commit(from_oid).is_err() {
        return Err(SourceError::CommitNotFound {
            name: RepoName::Ollama,
            commit,
            path: orepo.path.clone(),
            hint: "use the mirror the recipe was made from".into(),
        }
        .into());
    }
    let onto_oid = resolve_tag(orepo, onto)?;
    let (from_side, _) = era_side(orepo, &tag, from_oid)?;
    let (to_side, to_pin) = era_side(orepo, onto, onto_oid)?;
    let era = verdict(from_side, to_side, &recipe);
    if era.changed && !allow_era_change {
        return Ok(RebaseReport {
            recipe: recipe_path.to_path_buf(),
            onto: onto.to_string(),
            onto_commit: onto_oid.to_string(),
            era: Some(era),
            series: Vec::new(),
            outcome: Finish::EraChange,
            notes: vec![format!(
                "to carry the series anyway (and port it by hand), pass --allow-era-change; for a new era, start from `ollama-vulkan recipe new --ollama {onto}`"
            )],
        });
    }

    // llama.cpp: old base is the recipe's pin, new base the pin recorded at TAG.
    let needs_llama = recipe.series.iter().any(|s| s.repo == RepoName::LlamaCpp);
    let llama = if needs_llama || mirrors.has_explicit(RepoName::LlamaCpp) {
        let wants: Vec<Want> = match &to_pin {
            LlamaPin::Version { tag } => vec![Want::Tag(tag.clone())],
            p => p
                .rev()
                .map(|r| vec![Want::Commit(r.to_string())])
                .unwrap_or_default(),
        };
        match mirrors.open(
            RepoName::LlamaCpp,
            Some(
                recipe
                    .llamacpp
                    .url
                    .as_deref()
                    .unwrap_or(crate::recipe::new::DEFAULT_LLAMACPP_URL),
            ),
            &wants,
        ) {
            Ok(r) => r,
            Err(e) if needs_llama => return Err(e.into()),
            Err(_) => Vec::new(),
        }
    } else {
        Vec::new()
    };
    let new_llama: Option<Oid> = match &to_pin {
        LlamaPin::Version { tag } => commit_for_build(&llama, tag).ok().flatten(),
        p => p
            .rev()
            .and_then(|r| find_commit(&llama, r))
            .map(|(_, o)| o)
            // A full commit id recorded in the tree is the pin even without a mirror.
            .or_else(|| {
                p.rev()
                    .filter(|r| r.len() == 40)
                    .and_then(|r| Oid::from_str(r).ok())
            }),
    };
    let new_llama_version = match &to_pin {
        LlamaPin::Version { tag } => Some(tag.clone()),
        _ => new_llama.and_then(|o| {
            llama.iter().find_map(|r| {
                r.git.find_commit(o).ok()?;
                crate::source::git::build_number(&r.git, o)
                    .ok()
                    .map(|n| format!("b{n}"))
            })
        }),
    };

    let raw_recipe = fs::read_to_string(recipe_path)
        .ok()
        .and_then(|t| toml::from_str::<RawRecipe>(&t).ok());
    let pins_in_recipe = raw_recipe.as_ref().is_some_and(|r| r.series.is_some());
    let mut jobs = Vec::new();
    for s in &recipe.series {
        let series = Series::load(&s.dir)
            .map_err(|e| RebaseError::Usage(format!("series `{}`: {e}", s.name)))?;
        let (old_base, new_base) = match s.repo {
            RepoName::Ollama => (from_oid.to_string(), onto_oid.to_string()),
            RepoName::LlamaCpp => {
                let old = recipe.llamacpp.commit.clone().ok_or_else(|| {
                    RebaseError::Usage(format!(
                        "series `{}` targets llama.cpp but {} pins no llama.cpp commit\n  help: add `[llamacpp] commit = \"...\"` (recipe new writes it when given a llama.cpp mirror)",
                        s.name,
                        recipe_path.display()
                    ))
                })?;
                let new = new_llama.ok_or_else(|| {
                    RebaseError::Usage(format!(
                        "series `{}` targets llama.cpp, and {onto} records llama.cpp {} which no llama.cpp mirror has\n  help: pass --mirror llama.cpp=PATH with a mirror holding it",
                        s.name,
                        to_pin.rev().unwrap_or("(no revision)")
                    ))
                })?;
                if find_commit(&llama, &old).is_none() {
                    return Err(SourceError::CommitNotFound {
                        name: RepoName::LlamaCpp,
                        commit: old,
                        path: llama.first().map(|r| r.path.clone()).unwrap_or_default(),
                        hint: "pass --mirror llama.cpp=PATH with a mirror holding the recipe's pin"
                            .into(),
                    }
                    .into());
                }
                (old, new.to_string())
            }
        };
        let pin_file = if pins_in_recipe {
            recipe_path.to_path_buf()
        } else {
            recipe
                .template
                .as_ref()
                .map(|t| t.path.clone())
                .unwrap_or_else(|| recipe_path.to_path_buf())
        };
        // Absolute: --continue may run from another directory.
        let pin_file = absolute(&pin_file);
        jobs.push(Job {
            name: s.name.clone(),
            repo: s.repo,
            dir: absolute(&s.dir),
            patches: series.patches.clone(),
            fuzz: s.fuzz,
            old_base,
            new_base,
            pin_file,
            sha256: s.sha256.clone(),
        });
    }

    // No state.json (checked by the caller): anything here is what a killed start or end
    // left (a scratch repo possibly without its alternates); start from nothing.
    if dir.exists() {
        fs::remove_dir_all(dir).map_err(ioerr(format!("removing the stale {}", dir.display())))?;
    }
    // Copies of every file the rebase may write, for --abort and the change check.
    fs::create_dir_all(dir).map_err(ioerr(format!("creating {}", dir.display())))?;
    let mut files: Vec<PathBuf> = vec![absolute(recipe_path)];
    for j in &jobs {
        if !files.contains(&j.pin_file) {
            files.push(j.pin_file.clone());
        }
        files.push(j.dir.join("series"));
        files.push(j.dir.join("SHA256SUMS"));
        files.extend(j.patches.iter().map(|p| j.dir.join(p)));
    }
    let mut originals = Vec::new();
    for (i, f) in files.iter().enumerate() {
        let copy = dir.join("orig").join(format!("{i:04}"));
        let bytes = fs::read(f).ok();
        if let Some(b) = &bytes {
            write_scratch(&copy, b).map_err(ioerr(format!("writing {}", copy.display())))?;
            crate::killpoint::hit("rebase.original-saved");
        }
        originals.push(Original {
            path: fs::canonicalize(f).unwrap_or_else(|_| f.clone()),
            sha256: bytes.as_deref().map(sha256_hex),
            copy,
        });
    }
    let st = State {
        recipe: absolute(recipe_path),
        onto: onto.to_string(),
        onto_commit: onto_oid.to_string(),
        era,
        allow_era_change,
        results: jobs.iter().map(|_| Vec::new()).collect(),
        jobs,
        cur: (0, 0),
        o_tree: None,
        p_tree: None,
        n_commit: None,
        pending: None,
        originals,
        new_llama_commit: new_llama.map(|o| o.to_string()),
        new_llama_version,
    };
    let repos = Repos { ollama, llama };
    let s = scratch(dir, &repos)?;
    save_state(dir, &st)?;
    crate::killpoint::hit("rebase.started");
    let res = drive(&s, dir, st);
    if res.is_err() {
        // A failure before any conflict leaves nothing behind.
        let _ = fs::remove_dir_all(dir);
    }
    res
}

fn commit_tree(s: &Scratch, commit: &str) -> Result<Oid, RebaseError> {
    let oid = Oid::from_str(commit).map_err(gerr(format!("commit id {commit}")))?;
    s.repo
        .find_commit(oid)
        .and_then(|c| c.tree())
        .map(|t| t.id())
        .map_err(gerr(format!("reading commit {commit}")))
}

fn oid(s: &str) -> Result<Oid, RebaseError> {
    Oid::from_str(s).map_err(gerr(format!("object id {s}")))
}

fn out_path(dir: &Path, job: &Job, patch: &str) -> PathBuf {
    dir.join("out").join(&job.name).join(patch)
}

/// The parsed patches of a job, with their original bytes.
fn job_patches(job: &Job) -> Result<Vec<(Patch, Vec<u8>)>, RebaseError> {
    let series = Series::load(&job.dir)
        .map_err(|e| RebaseError::Usage(format!("series `{}`: {e}", job.name)))?;
    let parsed = series.parse_patches()?;
    parsed
        .into_iter()
        .map(|p| {
            let path = job.dir.join(&p.name);
            let bytes = fs::read(&path).map_err(ioerr(format!("reading {}", path.display())))?;
            Ok((p, bytes))
        })
        .collect()
}

/// Files the patch touches hold the same blobs on both sides: nothing moved.
fn untouched(s: &Scratch, o: Oid, n: Oid, patch: &Patch) -> bool {
    let (Ok(ot), Ok(nt)) = (s.tree(o), s.tree(n)) else {
        return false;
    };
    patch.files.iter().all(|f| {
        [&f.old_path, &f.new_path].into_iter().flatten().all(|p| {
            let a = ot
                .get_path(Path::new(p))
                .ok()
                .map(|e| (e.id(), e.filemode()));
            let b = nt
                .get_path(Path::new(p))
                .ok()
                .map(|e| (e.id(), e.filemode()));
            a == b
        })
    })
}

/// Runs patches from `st.cur` on until the end or a conflict.
fn drive(s: &Scratch, dir: &Path, mut st: State) -> Result<RebaseReport, RebaseError> {
    while st.cur.0 < st.jobs.len() {
        let job = st.jobs[st.cur.0].clone();
        let patches = job_patches(&job)?;
        if st.o_tree.is_none() {
            st.o_tree = Some(commit_tree(s, &job.old_base)?.to_string());
            st.n_commit = Some(job.new_base.clone());
        }
        while st.cur.1 < patches.len() {
            let (patch, bytes) = &patches[st.cur.1];
            let o = oid(st.o_tree.as_deref().unwrap_or_default())?;
            let n_commit = oid(st.n_commit.as_deref().unwrap_or_default())?;
            let n = commit_tree(s, &n_commit.to_string())?;
            let p = match merge::old_side(s, o, patch, job.fuzz)? {
                Ok(p) => p,
                Err(why) => {
                    return Err(RebaseError::OldBase {
                        series: job.name.clone(),
                        patch: patch.name.clone(),
                        base: job.old_base[..12].to_string(),
                        why,
                    })
                }
            };
            st.p_tree = Some(p.to_string());
            let label = patch.name.clone();
            let outcome = merge::merge_patch(s, o, p, n, patch, &label, &st.onto)?;
            let subject = patch.subject.clone();
            match outcome {
                Outcome::Upstreamed { files } => {
                    st.results[st.cur.0].push(PatchResult {
                        patch: patch.name.clone(),
                        subject,
                        status: Status::Upstreamed,
                        changed: true,
                        renames: Vec::new(),
                        files,
                        conflicts: Vec::new(),
                        note: Some(format!("upstreamed in {}", st.onto)),
                    });
                }
                Outcome::Merged {
                    status,
                    result,
                    renames,
                    files,
                    warnings,
                } => {
                    let text = if status == Status::Clean && untouched(s, o, n, patch) {
                        bytes.clone()
                    } else {
                        merge::export(s, bytes, patch, n, result)
                            .map_err(gerr(format!("exporting {}", patch.name)))?
                    };
                    let op = out_path(dir, &job, &patch.name);
                    write_scratch(&op, &text)
                        .map_err(ioerr(format!("writing {}", op.display())))?;
                    crate::killpoint::hit("rebase.patch-exported");
                    let c = s
                        .commit(result, Some(n_commit), &patch_message(patch))
                        .map_err(gerr("committing the rebased patch"))?;
                    st.n_commit = Some(c.to_string());
                    st.results[st.cur.0].push(PatchResult {
                        patch: patch.name.clone(),
                        subject,
                        status,
                        changed: text != *bytes,
                        note: {
                            let mut n: Vec<String> = renames
                                .iter()
                                .map(|r| format!("followed {} → {}", r.from, r.to))
                                .collect();
                            n.extend(warnings.iter().map(|w| format!("warning: {w}")));
                            (!n.is_empty()).then(|| n.join("; "))
                        },
                        renames,
                        files,
                        conflicts: Vec::new(),
                    });
                }
                Outcome::Conflict {
                    worktree,
                    conflicts,
                    renames,
                    files,
                } => {
                    write_worktree(s, n_commit, &worktree)?;
                    st.pending = Some(Pending {
                        paths: worktree.keys().cloned().collect(),
                        conflicts: conflicts.clone(),
                        renames,
                        files,
                    });
                    crate::killpoint::hit("rebase.worktree-written");
                    save_state(dir, &st)?;
                    return Ok(stopped(dir, &st, &job, patch));
                }
            }
            st.o_tree = Some(p.to_string());
            st.cur.1 += 1;
            save_state(dir, &st)?;
            crate::killpoint::hit("rebase.patch-done");
        }
        st.cur = (st.cur.0 + 1, 0);
        st.o_tree = None;
        st.p_tree = None;
        st.n_commit = None;
        save_state(dir, &st)?;
    }
    finish(dir, st)
}

fn patch_message(p: &Patch) -> String {
    format!(
        "{}\n\nAuthor: {}\nPatch: {}\n",
        p.subject,
        p.author.as_deref().unwrap_or("unknown"),
        p.name
    )
}

/// The report of a rebase stopped at the current patch's conflict.
fn stopped(dir: &Path, st: &State, job: &Job, patch: &Patch) -> RebaseReport {
    let pending = st.pending.clone().expect("a conflict is pending");
    let tree = dir.join("tree");
    let recipe = st.recipe.display().to_string();
    let files: Vec<String> = pending
        .conflicts
        .iter()
        .map(|c| tree.join(&c.path).display().to_string())
        .collect();
    let next_steps = vec![
        format!(
            "Resolve the conflict in {}: edit {} (git -C {} diff shows your resolution against {} with the earlier patches).",
            tree.display(),
            files.join(", "),
            tree.display(),
            st.onto
        ),
        format!("Carry on: ollama-vulkan rebase-patches {recipe} --continue"),
        format!("Or drop this patch: ollama-vulkan rebase-patches {recipe} --skip"),
        format!(
            "Or give up, restoring the series, recipe and work tree: ollama-vulkan rebase-patches {recipe} --abort"
        ),
    ];
    let mut rep = report_of(
        st,
        Finish::Conflict {
            series: job.name.clone(),
            patch: patch.name.clone(),
            state_dir: dir.to_path_buf(),
            work_tree: tree,
            next_steps,
        },
    );
    let idx = st.cur.0;
    rep.series[idx].patches.push(PatchResult {
        patch: patch.name.clone(),
        subject: patch.subject.clone(),
        status: Status::Conflict,
        changed: false,
        renames: pending.renames.clone(),
        files: pending.files.clone(),
        conflicts: pending.conflicts.clone(),
        note: None,
    });
    rep
}

fn report_of(st: &State, outcome: Finish) -> RebaseReport {
    RebaseReport {
        recipe: st.recipe.clone(),
        onto: st.onto.clone(),
        onto_commit: st.onto_commit.clone(),
        era: Some(st.era.clone()),
        series: st
            .jobs
            .iter()
            .zip(&st.results)
            .map(|(j, r)| SeriesReport {
                name: j.name.clone(),
                repo: j.repo,
                old_base: j.old_base.clone(),
                new_base: j.new_base.clone(),
                patches: r.clone(),
            })
            .collect(),
        outcome,
        notes: Vec::new(),
    }
}

/// Points the scratch work tree at `n_commit` and writes the conflicted patch's files:
/// every other path is marked skip-worktree, so `git status`/`git diff` show only them.
fn write_worktree(
    s: &Scratch,
    n_commit: Oid,
    files: &BTreeMap<String, Option<(Vec<u8>, u32)>>,
) -> Result<(), RebaseError> {
    use std::os::unix::fs::PermissionsExt;
    let ge = |what: &str| gerr(format!("writing the work tree {}: {what}", s.dir.display()));
    // Clear files from an earlier conflict.
    for e in fs::read_dir(&s.dir)
        .map_err(ioerr(format!("reading {}", s.dir.display())))?
        .flatten()
    {
        if e.file_name() == ".git" {
            continue;
        }
        let p = e.path();
        let r = if p.is_dir() && !p.is_symlink() {
            fs::remove_dir_all(&p)
        } else {
            fs::remove_file(&p)
        };
        r.map_err(ioerr(format!("removing {}", p.display())))?;
    }
    s.repo.set_head_detached(n_commit).map_err(ge("HEAD"))?;
    let tree = s
        .repo
        .find_commit(n_commit)
        .and_then(|c| c.tree())
        .map_err(ge("tree"))?;
    let mut index = s.repo.index().map_err(ge("index"))?;
    index.read_tree(&tree).map_err(ge("index"))?;
    let entries: Vec<git2::IndexEntry> = index.iter().collect();
    for mut e in entries {
        let path = String::from_utf8_lossy(&e.path).into_owned();
        if files.contains_key(&path) {
            continue;
        }
        e.flags |= 0x4000; // extended
        e.flags_extended |= 1 << 14; // skip-worktree
        index.add(&e).map_err(ge("index"))?;
    }
    index.write().map_err(ge("index"))?;
    for (path, content) in files {
        let p = s.dir.join(path);
        if let Some((bytes, mode)) = content {
            if let Some(parent) = p.parent() {
                fs::create_dir_all(parent)
                    .map_err(ioerr(format!("creating {}", parent.display())))?;
            }
            fs::write(&p, bytes).map_err(ioerr(format!("writing {}", p.display())))?;
            let m = if mode & 0o111 != 0 { 0o755 } else { 0o644 };
            fs::set_permissions(&p, fs::Permissions::from_mode(m))
                .map_err(ioerr(format!("chmod {}", p.display())))?;
        }
    }
    // Refresh stat data of the files written, so `git status` is exact.
    let mut index = s.repo.index().map_err(ge("index"))?;
    for (path, content) in files {
        if content.is_some() && tree.get_path(Path::new(path)).is_ok() {
            let _ = index.add_path(Path::new(path));
            // Keep the new base's content staged: the diff is the resolution.
            if let Ok(e) = tree.get_path(Path::new(path)) {
                if let Some(mut ie) = index.get_path(Path::new(path), 0) {
                    ie.id = e.id();
                    ie.mode = e.filemode() as u32;
                    let _ = index.add(&ie);
                }
            }
        }
    }
    index.write().map_err(ge("index"))?;
    Ok(())
}

/// `--continue`: the work tree's files are the resolution of the current patch.
fn resolve_current(s: &Scratch, dir: &Path, st: &mut State) -> Result<(), RebaseError> {
    use std::os::unix::fs::PermissionsExt;
    let pending = st.pending.clone().ok_or_else(|| {
        RebaseError::Usage(
            "the rebase state has no conflict to continue from\n  help: --abort and start again"
                .into(),
        )
    })?;
    let job = st.jobs[st.cur.0].clone();
    let patches = job_patches(&job)?;
    let (patch, bytes) = patches.get(st.cur.1).ok_or_else(|| {
        RebaseError::Usage(format!(
            "series `{}` has {} patches now, fewer than when the rebase stopped\n  help: --abort and start again",
            job.name,
            patches.len()
        ))
    })?;
    let n_commit = oid(st.n_commit.as_deref().unwrap_or_default())?;
    let n = commit_tree(s, &n_commit.to_string())?;
    let mut changes = Overlay::new();
    for path in &pending.paths {
        let p = s.dir.join(path);
        match fs::symlink_metadata(&p) {
            Ok(m) if m.is_file() => {
                let b = fs::read(&p).map_err(ioerr(format!("reading {}", p.display())))?;
                if let Some(line) = merge::marker_line(&b) {
                    return Err(RebaseError::Unresolved { file: p, line });
                }
                let mode = if m.permissions().mode() & 0o111 != 0 {
                    0o100755
                } else {
                    0o100644
                };
                changes.insert(
                    path.clone(),
                    Some(FileEntry {
                        bytes: Rc::new(b),
                        mode,
                    }),
                );
            }
            _ => {
                changes.insert(path.clone(), None);
            }
        }
    }
    let r = s
        .tree_with(n, &changes)
        .map_err(gerr("building the resolved tree"))?;
    if r == n {
        st.results[st.cur.0].push(PatchResult {
            patch: patch.name.clone(),
            subject: patch.subject.clone(),
            status: Status::Skipped,
            changed: true,
            renames: pending.renames,
            files: pending.files,
            conflicts: pending.conflicts,
            note: Some("the resolution changes nothing: dropped".into()),
        });
    } else {
        let text = merge::export(s, bytes, patch, n, r)
            .map_err(gerr(format!("exporting {}", patch.name)))?;
        let op = out_path(dir, &job, &patch.name);
        write_scratch(&op, &text).map_err(ioerr(format!("writing {}", op.display())))?;
        crate::killpoint::hit("rebase.resolution-exported");
        let c = s
            .commit(r, Some(n_commit), &patch_message(patch))
            .map_err(gerr("committing the resolved patch"))?;
        st.n_commit = Some(c.to_string());
        st.results[st.cur.0].push(PatchResult {
            patch: patch.name.clone(),
            subject: patch.subject.clone(),
            status: Status::Resolved,
            changed: text != *bytes,
            renames: pending.renames,
            files: pending.files,
            conflicts: pending.conflicts,
            note: Some("conflict resolved by hand".into()),
        });
    }
    st.pending = None;
    st.o_tree = st.p_tree.clone();
    st.cur.1 += 1;
    save_state(dir, st)
}

/// `--skip`: drop the current patch.
fn skip_current(st: &mut State) -> Result<(), RebaseError> {
    let pending = st.pending.take().ok_or_else(|| {
        RebaseError::Usage(
            "the rebase state has no conflict to skip\n  help: --abort and start again".into(),
        )
    })?;
    let job = &st.jobs[st.cur.0];
    let name = job.patches[st.cur.1].clone();
    let subject = job_patches(job)?
        .get(st.cur.1)
        .map(|(p, _)| p.subject.clone())
        .unwrap_or_default();
    st.results[st.cur.0].push(PatchResult {
        patch: name,
        subject,
        status: Status::Skipped,
        changed: true,
        renames: pending.renames,
        files: pending.files,
        conflicts: pending.conflicts,
        note: Some("dropped with --skip".into()),
    });
    st.o_tree = st.p_tree.clone();
    st.cur.1 += 1;
    Ok(())
}

fn verify_originals(st: &State) -> Result<(), RebaseError> {
    for o in &st.originals {
        let now = fs::read(&o.path).ok().as_deref().map(sha256_hex);
        if now != o.sha256 {
            return Err(RebaseError::Changed {
                path: o.path.clone(),
                expected: o.sha256.clone().unwrap_or_else(|| "(absent)".into()),
                actual: now.unwrap_or_else(|| "(absent)".into()),
            });
        }
    }
    Ok(())
}

/// `--abort`: put back every file the rebase could have touched, drop the state.
fn abort(dir: &Path, st: State) -> Result<RebaseReport, RebaseError> {
    let mut restored = Vec::new();
    for o in &st.originals {
        let now = fs::read(&o.path).ok();
        let now_hash = now.as_deref().map(sha256_hex);
        if now_hash == o.sha256 {
            continue;
        }
        match &o.sha256 {
            Some(_) => {
                let b =
                    fs::read(&o.copy).map_err(ioerr(format!("reading {}", o.copy.display())))?;
                crate::fsutil::write_atomic(&o.path, &b)
                    .map_err(ioerr(format!("restoring {}", o.path.display())))?;
                crate::killpoint::hit("rebase.abort-restored");
            }
            None => {
                let _ = fs::remove_file(&o.path);
            }
        }
        restored.push(o.path.clone());
    }
    clear_temps(&st);
    let rep = report_of(&st, Finish::Aborted { restored });
    remove_state(dir)?;
    Ok(rep)
}

/// Replaces the TOML value at `span` (a quoted string) with `value`.
fn set_string(
    text: &str,
    span: std::ops::Range<usize>,
    value: &str,
    edits: &mut Vec<(std::ops::Range<usize>, String)>,
) {
    let quoted = text
        .get(span.clone())
        .is_some_and(|s| s.starts_with('"') || s.starts_with('\''));
    let v = if quoted {
        format!("\"{value}\"")
    } else {
        value.to_string()
    };
    edits.push((span, v));
}

fn apply_edits(text: &str, mut edits: Vec<(std::ops::Range<usize>, String)>) -> String {
    edits.sort_by_key(|(r, _)| std::cmp::Reverse(r.start));
    let mut out = text.to_string();
    for (r, v) in edits {
        out.replace_range(r, &v);
    }
    out
}

/// Writes the rebased series and pins; removes the state.
fn finish(dir: &Path, st: State) -> Result<RebaseReport, RebaseError> {
    verify_originals(&st)?;
    let mut writes: BTreeMap<PathBuf, Vec<u8>> = BTreeMap::new();
    let mut removes: Vec<PathBuf> = Vec::new();
    let mut new_pins: BTreeMap<String, String> = BTreeMap::new();
    let mut notes = Vec::new();
    for (job, results) in st.jobs.iter().zip(&st.results) {
        let dropped: Vec<&str> = results
            .iter()
            .filter(|r| matches!(r.status, Status::Upstreamed | Status::Skipped))
            .map(|r| r.patch.as_str())
            .collect();
        let mut any = !dropped.is_empty();
        for r in results {
            if !dropped.contains(&r.patch.as_str()) {
                let out = fs::read(out_path(dir, job, &r.patch))
                    .map_err(ioerr(format!("reading the rebased {}", r.patch)))?;
                let target = job.dir.join(&r.patch);
                if fs::read(&target).ok().as_deref() != Some(out.as_slice()) {
                    writes.insert(target, out);
                    any = true;
                }
            }
        }
        if !any {
            continue;
        }
        let series_file = job.dir.join("series");
        let series_text = fs::read_to_string(&series_file)
            .map_err(ioerr(format!("reading {}", series_file.display())))?;
        let mut new_series = String::new();
        for line in series_text.split_inclusive('\n') {
            let entry = line.split('#').next().unwrap_or("").trim();
            if !entry.is_empty() && dropped.contains(&entry) {
                continue;
            }
            new_series.push_str(line);
        }
        let mut kept = Vec::new();
        for p in &job.patches {
            if dropped.contains(&p.as_str()) {
                continue;
            }
            let path = job.dir.join(p);
            let bytes = match writes.get(&path) {
                Some(b) => b.clone(),
                None => fs::read(&path).map_err(ioerr(format!("reading {}", path.display())))?,
            };
            kept.push((p.as_str(), bytes));
        }
        let sums = Series::sums_text(kept.iter().map(|(n, b)| (*n, b.as_slice())));
        if new_series != series_text {
            writes.insert(series_file, new_series.into_bytes());
        }
        writes.insert(job.dir.join("SHA256SUMS"), sums.clone().into_bytes());
        new_pins.insert(job.name.clone(), sha256_hex(sums.as_bytes()));
        removes.extend(dropped.iter().map(|p| job.dir.join(p)));
    }

    // Pins: the [[series]] sha256 where it lives, and a per-tag recipe's own pins.
    let mut pin_files: Vec<PathBuf> = st.jobs.iter().map(|j| j.pin_file.clone()).collect();
    pin_files.push(st.recipe.clone());
    pin_files.dedup();
    let mut seen = Vec::new();
    for file in pin_files {
        if seen.contains(&file) {
            continue;
        }
        seen.push(file.clone());
        let text =
            fs::read_to_string(&file).map_err(ioerr(format!("reading {}", file.display())))?;
        let raw: RawRecipe = toml::from_str(&text)
            .map_err(|e| RebaseError::Usage(format!("{}: {e}", file.display())))?;
        let mut edits = Vec::new();
        if let Some(list) = &raw.series {
            for s in list.get_ref() {
                if let Some(h) = new_pins.get(s.name.get_ref()) {
                    if st
                        .jobs
                        .iter()
                        .any(|j| &j.name == s.name.get_ref() && j.pin_file == file)
                        && s.sha256.get_ref() != h
                    {
                        set_string(&text, s.sha256.span(), h, &mut edits);
                    }
                }
                let rebased = st
                    .jobs
                    .iter()
                    .any(|j| &j.name == s.name.get_ref() && j.pin_file == file);
                if let (true, Some(r), Ok(v)) =
                    (rebased, &s.tags, st.onto.parse::<crate::version::Version>())
                {
                    if let Some(to) = &r.get_ref().to {
                        let before = to
                            .get_ref()
                            .parse::<crate::version::Version>()
                            .is_ok_and(|t| v > t);
                        if before && file == st.recipe {
                            set_string(&text, to.span(), &st.onto, &mut edits);
                            notes.push(format!(
                                "{}: series `{}` now covers tags up to {}",
                                file.display(),
                                s.name.get_ref(),
                                st.onto
                            ));
                        } else if before {
                            notes.push(format!(
                                "{}: series `{}` is still pinned for tags {}–{}, which leaves out {}: set its `tags` by hand (the template may give the neighbouring tags another series)",
                                file.display(),
                                s.name.get_ref(),
                                r.get_ref().from.as_ref().map(|f| f.get_ref().as_str()).unwrap_or("any"),
                                to.get_ref(),
                                st.onto
                            ));
                        }
                    }
                }
            }
        }
        if file == st.recipe && !st.era.changed {
            if let Some(o) = &raw.ollama {
                if let Some(t) = &o.tag {
                    if t.get_ref() != &st.onto {
                        set_string(&text, t.span(), &st.onto, &mut edits);
                    }
                }
                if let Some(c) = &o.commit {
                    if c.get_ref() != &st.onto_commit {
                        set_string(&text, c.span(), &st.onto_commit, &mut edits);
                    }
                }
            }
            if let Some(l) = &raw.llamacpp {
                match (&l.commit, &st.new_llama_commit) {
                    (Some(c), Some(new)) if c.get_ref() != new => {
                        set_string(&text, c.span(), new, &mut edits)
                    }
                    (Some(_), None) if st.onto_commit != st.era.from.commit => notes.push(format!(
                        "{}: [llamacpp] commit still names the old pin: no llama.cpp mirror given has the pin of {} (pass --mirror llama.cpp=PATH, or rerun `recipe new --ollama {}`)",
                        file.display(),
                        st.onto,
                        st.onto
                    )),
                    _ => {}
                }
                if let Some(v) = &l.version {
                    match &st.new_llama_version {
                        Some(new) if v.get_ref() != new => set_string(&text, v.span(), new, &mut edits),
                        None => notes.push(format!(
                            "{}: [llamacpp] version could not be worked out for {} (no llama.cpp mirror has its pin): check it by hand",
                            file.display(),
                            st.onto
                        )),
                        _ => {}
                    }
                }
            }
        } else if file == st.recipe && st.era.changed {
            notes.push(format!(
                "{} still pins {} (era {}): the series now fits {} (era {}); make its recipe with `ollama-vulkan recipe new --ollama {}`",
                file.display(),
                st.era.from.tag,
                st.era.from.era,
                st.onto,
                st.era.to.era,
                st.onto
            ));
        }
        if file != st.recipe && !edits.is_empty() {
            notes.push(format!(
                "{} is the era template: its pin now names the rebased series, which every recipe of the template shares; tags of the template before {} may no longer apply (check with `ollama-vulkan check-patches --tags FROM..TO`)",
                file.display(),
                st.onto
            ));
        }
        if !edits.is_empty() {
            let new = apply_edits(&text, edits);
            if new != text {
                writes.insert(file.clone(), new.into_bytes());
            }
        }
    }

    // Journal first: a run killed while writing patches/ and recipes/ leaves files that
    // are neither the originals nor the result; `--continue` replays the journal.
    let mut journal = Journal {
        writes: Vec::new(),
        removes,
        notes,
    };
    for (i, (path, bytes)) in writes.iter().enumerate() {
        let staged = dir.join("finish").join(format!("{i:04}"));
        write_scratch(&staged, bytes).map_err(ioerr(format!("writing {}", staged.display())))?;
        journal.writes.push((path.clone(), staged));
    }
    let p = dir.join(FINISH);
    write_scratch(
        &p,
        &serde_json::to_vec_pretty(&journal).expect("journal serialises"),
    )
    .map_err(ioerr(format!("writing {}", p.display())))?;
    crate::killpoint::hit("rebase.journal-written");
    apply_journal(dir, &st, journal)
}

/// The files `finish` writes, staged under the state dir before any is written.
#[derive(Serialize, Deserialize)]
struct Journal {
    /// (target, staged copy)
    writes: Vec<(PathBuf, PathBuf)>,
    removes: Vec<PathBuf>,
    notes: Vec<String>,
}

const FINISH: &str = "finish.json";

fn replay_finish(dir: &Path, st: &State) -> Result<RebaseReport, RebaseError> {
    let p = dir.join(FINISH);
    let bytes = fs::read(&p).map_err(ioerr(format!("reading {}", p.display())))?;
    let journal: Journal = serde_json::from_slice(&bytes).map_err(|e| {
        RebaseError::Usage(format!(
            "{}: not a rebase journal ({e})\n  help: --abort restores the series",
            p.display()
        ))
    })?;
    apply_journal(dir, st, journal)
}

/// Writes the journal's files (again: each write is whole, so replaying is safe), then
/// drops the state: state.json first, so a kill while removing the rest leaves no rebase
/// in progress.
fn apply_journal(dir: &Path, st: &State, j: Journal) -> Result<RebaseReport, RebaseError> {
    for (path, staged) in &j.writes {
        let bytes = fs::read(staged).map_err(ioerr(format!("reading {}", staged.display())))?;
        crate::fsutil::write_atomic(path, &bytes)
            .map_err(ioerr(format!("writing {}", path.display())))?;
        crate::killpoint::hit("rebase.finish-written");
    }
    for p in &j.removes {
        match fs::remove_file(p) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                return Err(ioerr(format!("removing {}", p.display()))(e))
            }
            _ => {}
        }
    }
    clear_temps(st);
    let mut rep = report_of(
        st,
        Finish::Done {
            written: j.writes.into_iter().map(|(p, _)| p).collect(),
            removed: j.removes,
        },
    );
    rep.notes = j.notes;
    remove_state(dir)?;
    Ok(rep)
}

/// Removes what a run killed inside [`crate::fsutil::write_atomic`] left beside the files
/// the rebase writes (it may not write that file again: --abort skips unchanged ones).
fn clear_temps(st: &State) {
    for o in &st.originals {
        let _ = fs::remove_file(crate::fsutil::temp_path(&o.path));
    }
}

/// Ends the rebase: state.json goes first (the rebase is over from then on), then the rest.
fn remove_state(dir: &Path) -> Result<(), RebaseError> {
    let p = dir.join("state.json");
    fs::remove_file(&p).map_err(ioerr(format!("removing {}", p.display())))?;
    crate::killpoint::hit("rebase.state-removed");
    fs::remove_dir_all(dir).map_err(ioerr(format!("removing {}", dir.display())))
}
