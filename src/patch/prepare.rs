//! The prepare stage: the recipe's series applied to its trees, all or nothing.
//!
//! Every patch of every series is first applied in memory; only when all apply (clean,
//! at an offset, or with fuzz the recipe allows) are the changes written. Each patch then
//! becomes one commit on top of the pin (author and subject from the patch, fixed dates,
//! so the same inputs give the same commits), like `git am` but able to commit in trees
//! whose mirror lacks blobs. `--check` reads the pinned trees from git objects and writes
//! nothing.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Serialize;

use super::engine::{apply_patch, DirSource, GitSource, Overlay, PatchStatus, Source};
use super::parse::{Patch, PatchError};
use super::report::SeriesRun;
use super::series::{Series, SeriesError};
use crate::recipe::model::Recipe;
use crate::source::fetch::{fetch, Sources};
use crate::source::git::{commit_tree_changes, move_head, TreeChange};
use crate::source::{Mirrors, RepoName, SourceError, Want};

#[derive(Debug, thiserror::Error)]
pub enum PrepareError {
    #[error(transparent)]
    Source(#[from] SourceError),
    #[error("series `{name}`: {source}")]
    Series { name: String, source: SeriesError },
    #[error(transparent)]
    Patch(#[from] PatchError),
    #[error("series `{series}` targets llama.cpp, but era {era} has no separate llama.cpp tree\n  help: {help}")]
    NoTree {
        series: String,
        era: String,
        help: String,
    },
    /// Some patch did not apply: the report says which hunk and why. Nothing was written.
    #[error("{failed} of {total} patches do not apply; nothing was changed\n{report}  help: refresh the failing patches against this tag (`ollama-vulkan rebase-patches`), or allow fuzz for the series in the recipe (fuzz = N) if the drift is understood")]
    Failed {
        failed: usize,
        total: usize,
        report: String,
        runs: Vec<SeriesRun>,
    },
    #[error("{what}: {detail}")]
    Write { what: String, detail: String },
}

impl crate::error::HasKind for PrepareError {
    fn kind(&self) -> crate::error::Kind {
        use crate::error::Kind;
        match self {
            PrepareError::Source(e) => e.kind(),
            PrepareError::Series { source, .. } => source.kind(),
            PrepareError::Patch(e) => e.kind(),
            PrepareError::NoTree { .. } => Kind::BadInput,
            PrepareError::Failed { .. } | PrepareError::Write { .. } => Kind::Failure,
        }
    }
}

#[derive(Debug, Default, Clone, Copy)]
pub struct PrepareOptions {
    /// Overrides every series' fuzz (`--fuzz N`).
    pub fuzz: Option<usize>,
    /// Apply nothing; report only.
    pub check: bool,
}

#[derive(Debug, Serialize)]
pub struct Prepared {
    pub series: Vec<SeriesRun>,
    /// Trees written (empty with --check).
    pub trees: Vec<PreparedTree>,
    pub check: bool,
}

#[derive(Debug, Serialize)]
pub struct PreparedTree {
    pub repo: RepoName,
    pub path: PathBuf,
    /// One commit per patch, in order; the last is HEAD.
    pub commits: Vec<String>,
    /// Files the series changed (a later fetch of the same pins makes them newer than the
    /// carried build output).
    pub paths: Vec<String>,
}

struct Loaded {
    name: String,
    repo: RepoName,
    fuzz: usize,
    patches: Vec<Patch>,
}

fn load_series(recipe: &Recipe) -> Result<Vec<Loaded>, PrepareError> {
    let mut out = Vec::new();
    for pin in &recipe.series {
        let s = Series::load(&pin.dir).map_err(|source| PrepareError::Series {
            name: pin.name.clone(),
            source,
        })?;
        if s.hash != pin.sha256 {
            // `recipe check` reports this with file:line; repeat it here for safety.
            return Err(PrepareError::Series {
                name: pin.name.clone(),
                source: SeriesError::Unreadable {
                    file: pin.dir.join("SHA256SUMS"),
                    why: format!("hashes to {} but the recipe pins {}; the series changed after it was pinned", s.hash, pin.sha256),
                },
            });
        }
        out.push(Loaded {
            name: pin.name.clone(),
            repo: pin.repo,
            fuzz: pin.fuzz,
            patches: s.parse_patches()?,
        });
    }
    Ok(out)
}

/// What one series did to its tree's overlay: per patch, the files it changed.
type Steps = Vec<(Patch, Overlay)>;

/// Applies every series to `sources` in memory.
fn apply_all(
    loaded: &[Loaded],
    sources: &BTreeMap<RepoName, (Box<dyn Source + '_>, String)>,
    opts: PrepareOptions,
    recipe: &Recipe,
) -> Result<(Vec<SeriesRun>, BTreeMap<RepoName, Steps>), PrepareError> {
    let mut overlays: BTreeMap<RepoName, Overlay> = BTreeMap::new();
    let mut steps: BTreeMap<RepoName, Steps> = BTreeMap::new();
    let mut runs = Vec::new();
    for s in loaded {
        let Some((src, what)) = sources.get(&s.repo) else {
            return Err(PrepareError::NoTree {
                series: s.name.clone(),
                era: recipe.era.to_string(),
                help: "llama.cpp is vendored in the Ollama tree in this era: target the series at ollama (repo = \"ollama\", paths under llama/llama.cpp/)".into(),
            });
        };
        let fuzz = opts.fuzz.unwrap_or(s.fuzz);
        let overlay = overlays.entry(s.repo).or_default();
        let mut reports = Vec::new();
        for p in &s.patches {
            let (r, changed) = apply_patch(src.as_ref(), overlay, p, fuzz)?;
            overlay.extend(changed.clone());
            steps.entry(s.repo).or_default().push((p.clone(), changed));
            reports.push(r);
        }
        runs.push(SeriesRun {
            series: s.name.clone(),
            repo: s.repo.to_string(),
            target: what.clone(),
            fuzz_allowed: fuzz,
            patches: reports,
        });
    }
    Ok((runs, steps))
}

/// Applies the recipe's series. Without `check`, fetches fresh trees into `dest` first
/// (so a failed run leaves exactly the fetched trees) and commits each patch.
pub fn prepare(
    recipe: &Recipe,
    mirrors: &Mirrors,
    dest: &Path,
    opts: PrepareOptions,
) -> Result<Prepared, PrepareError> {
    let loaded = load_series(recipe)?;
    let tag = recipe.ollama.tag.clone().unwrap_or_default();
    if opts.check {
        // From git objects: no tree is written.
        let commit = recipe.ollama.commit.clone().unwrap_or_default();
        let orepos = mirrors.open(
            RepoName::Ollama,
            Some(&recipe.ollama.url),
            &[
                Want::Tag(tag.clone()),
                Want::Commit(commit.clone()),
                Want::Shallow,
            ],
        )?;
        let lcommit = recipe
            .llamacpp
            .commit
            .clone()
            .filter(|_| !recipe.llamacpp.source.is_vendored());
        let needs_llama = loaded.iter().any(|s| s.repo == RepoName::LlamaCpp);
        let lrepos = match (&lcommit, needs_llama) {
            (Some(c), true) => mirrors.open(
                RepoName::LlamaCpp,
                recipe.llamacpp.url.as_deref(),
                &[Want::Commit(c.clone()), Want::Shallow],
            )?,
            _ => Vec::new(),
        };
        let mut sources: BTreeMap<RepoName, (Box<dyn Source + '_>, String)> = BTreeMap::new();
        sources.insert(
            RepoName::Ollama,
            (
                Box::new(git_source(&orepos[0].git, &commit, "ollama")?),
                format!("ollama {tag}"),
            ),
        );
        if let Some(c) = &lcommit {
            if let Some(r) = lrepos.iter().find(|r| {
                git2::Oid::from_str(c)
                    .ok()
                    .and_then(|o| r.git.find_commit(o).ok())
                    .is_some()
            }) {
                sources.insert(
                    RepoName::LlamaCpp,
                    (
                        Box::new(git_source(&r.git, c, "llama.cpp")?),
                        format!("llama.cpp {}", &c[..12.min(c.len())]),
                    ),
                );
            }
        }
        let (runs, _) = apply_all(&loaded, &sources, opts, recipe)?;
        return Ok(Prepared {
            series: runs,
            trees: Vec::new(),
            check: true,
        });
    }

    let fetched: Sources = fetch(recipe, mirrors, dest)?;
    crate::killpoint::hit("prepare.fetched");
    let mut sources: BTreeMap<RepoName, (Box<dyn Source>, String)> = BTreeMap::new();
    sources.insert(
        RepoName::Ollama,
        (
            Box::new(DirSource::new(fetched.ollama_tree.clone())),
            format!("ollama {tag}"),
        ),
    );
    if let (Some(t), Some(c)) = (&fetched.llamacpp_tree, &fetched.llamacpp_commit) {
        sources.insert(
            RepoName::LlamaCpp,
            (
                Box::new(DirSource::new(t.clone())),
                format!("llama.cpp {}", &c[..12.min(c.len())]),
            ),
        );
    }
    let (runs, steps) = apply_all(&loaded, &sources, opts, recipe)?;
    let total: usize = runs.iter().map(|r| r.patches.len()).sum();
    let failed = super::report::failing(&runs).len();
    if failed > 0 {
        return Err(PrepareError::Failed {
            failed,
            total,
            report: super::report::render(&runs),
            runs,
        });
    }
    crate::killpoint::hit("prepare.applied");
    let mut trees = Vec::new();
    for (repo, steps) in steps {
        let path = match repo {
            RepoName::Ollama => fetched.ollama_tree.clone(),
            RepoName::LlamaCpp => fetched.llamacpp_tree.clone().expect("checked in apply_all"),
            RepoName::Virglrenderer | RepoName::Mesa => unreachable!("recipe load refuses it"),
        };
        trees.push(write_tree(&path, repo, &steps)?);
    }
    // What was patched, for the next fetch of the same pins (see fetch's carry-over).
    let record = serde_json::json!({ "trees": trees });
    crate::fsutil::write_atomic(&dest.join("prepared.json"), record.to_string().as_bytes())
        .map_err(|e| PrepareError::Write {
            what: "writing prepared.json".into(),
            detail: e.to_string(),
        })?;
    Ok(Prepared {
        series: runs,
        trees,
        check: false,
    })
}

fn git_source<'r>(
    repo: &'r git2::Repository,
    commit: &str,
    what: &str,
) -> Result<GitSource<'r>, PrepareError> {
    let tree = git2::Oid::from_str(commit)
        .and_then(|o| repo.find_commit(o))
        .and_then(|c| c.tree())
        .map_err(|e| PrepareError::Write {
            what: format!("reading the {what} tree at {commit}"),
            detail: e.message().to_string(),
        })?;
    Ok(GitSource { repo, tree })
}

/// "Name <email>" → (name, email).
fn author(p: &Patch) -> (String, String) {
    let a = p.author.clone().unwrap_or_default();
    match a.rsplit_once('<') {
        Some((n, e)) => (
            n.trim().trim_matches('"').to_string(),
            e.trim_end_matches('>').trim().to_string(),
        ),
        None => ("ollama-vulkan".into(), "ollama-vulkan@localhost".into()),
    }
}

/// Commits each patch's changes on top of HEAD, then writes the files and moves HEAD:
/// commits first (objects only), so a run killed while writing leaves HEAD at the pin
/// and the next fetch replaces the tree.
fn write_tree(
    dir: &Path,
    repo_name: RepoName,
    steps: &Steps,
) -> Result<PreparedTree, PrepareError> {
    let werr = |what: String| move |detail: String| PrepareError::Write { what, detail };
    let repo = git2::Repository::open(dir)
        .map_err(|e| werr(format!("opening {}", dir.display()))(e.message().to_string()))?;
    let mut parent = repo
        .head()
        .and_then(|h| h.peel_to_commit())
        .map_err(|e| werr(format!("reading HEAD of {}", dir.display()))(e.message().to_string()))?
        .id();
    let mut commits = Vec::new();
    let mut final_state = Overlay::new();
    for (patch, changed) in steps {
        let changes: Vec<TreeChange> = changed
            .iter()
            .map(|(p, e)| {
                (
                    p.clone(),
                    e.as_ref().map(|f| (f.bytes.as_slice(), f.mode as i32)),
                )
            })
            .collect();
        let (name, email) = author(patch);
        let message = format!(
            "{}\n\nApplied by ollama-vulkan from {}.\n",
            patch.subject, patch.name
        );
        parent = commit_tree_changes(&repo, parent, &changes, (&name, &email), &message)
            .map_err(|e| werr(format!("committing {}", patch.name))(e.message().to_string()))?;
        commits.push(parent.to_string());
        crate::killpoint::hit("prepare.committed");
        final_state.extend(changed.clone());
    }
    super::engine::write_overlay(dir, &final_state)
        .map_err(|(what, x)| werr(what)(x.to_string()))?;
    let paths: Vec<String> = final_state.keys().cloned().collect();
    crate::killpoint::hit("prepare.files-written");
    move_head(dir, parent, &paths)
        .map_err(|e| werr(format!("moving HEAD of {}", dir.display()))(e.message().to_string()))?;
    crate::killpoint::hit("prepare.head-moved");
    Ok(PreparedTree {
        repo: repo_name,
        path: dir.to_path_buf(),
        commits,
        paths,
    })
}

/// True when any patch needed fuzz: callers print it as a warning.
pub fn fuzz_used(runs: &[SeriesRun]) -> bool {
    runs.iter()
        .flat_map(|r| &r.patches)
        .any(|p| p.status == PatchStatus::Fuzz)
}
