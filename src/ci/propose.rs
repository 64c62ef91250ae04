//! A tag whose series no longer apply: `rebase-patches` from the newest older tag of the
//! same era whose series still apply, onto the tag, in a scratch copy of the project, so
//! nothing under patches/ or recipes/ changes. A clean result is checked again (a fresh
//! recipe for the tag over the rebased templates) and kept as a proposal folder, the way
//! packit's propose-downstream opens a change for a maintainer to take; a conflict is
//! reported with its hunk and nothing is kept.
//!
//! ```text
//! OUT/<tag>/proposal.patch    `git apply` in the checkout: recipes/ and patches/ changes
//! OUT/<tag>/proposal.json     base tag, per-series rebase report, files
//! OUT/<tag>/ollama-<tag>.toml the tag's recipe over the proposed templates
//! ```
//!
//! The folder appears whole (built beside it, then renamed) or not at all.

use std::fs;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::error::Error;
use crate::project::Project;
use crate::rebase::{rebase, Action, Finish, SeriesReport};
use crate::recipe::era::Era;
use crate::recipe::new::{new_recipe, NewRequest};
use crate::source::Mirrors;
use crate::version::Version;

/// How many older tags are tried as the rebase's base before giving up: a series that
/// stopped applying many tags ago is not a rebase proposal's job.
pub const MAX_BASES: usize = 12;

/// The longest conflict hunk quoted in the report, in lines.
const HUNK_LINES: usize = 40;

pub struct ProposeRequest<'a> {
    pub project: &'a Project,
    pub mirrors: &'a Mirrors,
    /// The tag whose series failed its check.
    pub tag: &'a str,
    pub era: Era,
    /// Upstream tags (any order): those older than `tag` are the base candidates.
    pub tags: &'a [String],
    /// The proposals folder; the proposal is `out/<tag>`.
    pub out: &'a Path,
}

#[derive(Debug, Serialize)]
#[serde(tag = "result", rename_all = "kebab-case")]
pub enum Proposal {
    /// The series carried over cleanly and apply to the tag.
    Proposed {
        base: String,
        dir: PathBuf,
        patch: PathBuf,
        recipe: PathBuf,
        /// Project-relative paths the proposal changes.
        files: Vec<String>,
        series: Vec<SeriesReport>,
        notes: Vec<String>,
    },
    /// The rebase stopped at an overlap: the hunk, as the 3-way merge left it.
    Conflict {
        base: String,
        series: String,
        patch: String,
        file: String,
        lines: (usize, usize),
        hunk: String,
    },
    /// Nothing to propose (no base, or the rebased series still fail): why.
    None { why: String },
}

impl Proposal {
    /// One line for the table.
    pub fn summary(&self) -> String {
        match self {
            Proposal::Proposed { base, dir, .. } => format!(
                "rebased from {base}: proposal in {} (git apply proposal.patch)",
                dir.display()
            ),
            Proposal::Conflict {
                base,
                series,
                patch,
                file,
                lines,
                ..
            } => format!(
                "rebase from {base} conflicts: {series}/{patch} in {file}:{}-{}",
                lines.0, lines.1
            ),
            Proposal::None { why } => format!("no rebase proposal: {why}"),
        }
    }
}

pub fn propose(req: &ProposeRequest<'_>) -> Result<Proposal, Error> {
    let io = |what: String| move |source: std::io::Error| Error::Io { what, source };
    let final_dir = req.out.join(req.tag);
    // The tag is a version (it was parsed as one), so it is one safe path component.
    let staging = req.out.join(format!(".{}.partial", req.tag));
    if staging.exists() {
        // Left by a killed run: ours, and never read.
        fs::remove_dir_all(&staging).map_err(io(format!("removing {}", staging.display())))?;
    }
    let scratch = Project {
        root: staging.join("project"),
    };
    let res = (|| {
        copy_tree(&req.project.recipes_dir(), &scratch.recipes_dir())
            .map_err(io("copying recipes/ for the rebase".into()))?;
        copy_tree(&req.project.patches_dir(), &scratch.patches_dir())
            .map_err(io("copying patches/ for the rebase".into()))?;
        let git = Snapshot::take(&scratch.root)?;
        let Some((base, base_recipe)) = find_base(req, &scratch)? else {
            return Ok(Proposal::None {
                why: format!(
                    "none of the {MAX_BASES} tags before {} in era {} has series that apply",
                    req.tag, req.era
                ),
            });
        };
        let rep = rebase(
            &scratch,
            req.mirrors,
            &base_recipe,
            Action::Start {
                onto: req.tag,
                allow_era_change: false,
            },
        )?;
        match rep.outcome {
            Finish::Done { .. } => {}
            Finish::Conflict {
                series,
                patch,
                work_tree,
                ..
            } => return Ok(conflict(&rep.series, base, series, patch, &work_tree)),
            Finish::EraChange | Finish::Aborted { .. } => {
                return Ok(Proposal::None {
                    why: format!("{base} and {} are different eras", req.tag),
                })
            }
        }
        // The proof: the tag's own recipe over the rebased templates checks clean.
        let made = new_recipe(
            &scratch,
            req.mirrors,
            &NewRequest {
                tag: req.tag,
                output: None,
            },
        )?;
        let still = super::failing(&super::check(&scratch, req.mirrors, &made.recipe_path)?);
        if !still.is_empty() {
            return Ok(Proposal::None {
                why: format!(
                    "rebased from {base}, but {} still do not apply",
                    still.join(", ")
                ),
            });
        }
        let (patch_text, files) = git.diff()?;
        let recipe_name = format!("ollama-{}.toml", req.tag);
        fs::copy(&made.recipe_path, staging.join(&recipe_name))
            .map_err(io(format!("copying {}", made.recipe_path.display())))?;
        fs::write(staging.join("proposal.patch"), &patch_text)
            .map_err(io("writing proposal.patch".into()))?;
        let proposal = Proposal::Proposed {
            base,
            dir: final_dir.clone(),
            patch: final_dir.join("proposal.patch"),
            recipe: final_dir.join(&recipe_name),
            files,
            series: rep.series,
            notes: rep
                .notes
                .iter()
                .map(|n| n.replace(&scratch.root.display().to_string(), "."))
                .collect(),
        };
        let mut json = serde_json::to_vec_pretty(&proposal).expect("proposal serialises");
        json.push(b'\n');
        fs::write(staging.join("proposal.json"), json)
            .map_err(io("writing proposal.json".into()))?;
        Ok(proposal)
    })();
    // The scratch project goes in every case; the proposal folder replaces an older one
    // only once it is whole.
    let _ = fs::remove_dir_all(&scratch.root);
    match res {
        Ok(p @ Proposal::Proposed { .. }) => {
            if final_dir.exists() {
                fs::remove_dir_all(&final_dir)
                    .map_err(io(format!("removing {}", final_dir.display())))?;
            }
            fs::rename(&staging, &final_dir).map_err(io(format!(
                "moving the proposal to {}",
                final_dir.display()
            )))?;
            Ok(p)
        }
        other => {
            let _ = fs::remove_dir_all(&staging);
            other
        }
    }
}

/// The newest older tag of the same era whose series apply, with its recipe in `scratch`.
fn find_base(
    req: &ProposeRequest<'_>,
    scratch: &Project,
) -> Result<Option<(String, PathBuf)>, Error> {
    let Ok(this) = req.tag.parse::<Version>() else {
        return Ok(None);
    };
    let mut older: Vec<(Version, &String)> = req
        .tags
        .iter()
        .filter_map(|t| t.parse::<Version>().ok().map(|v| (v, t)))
        .filter(|(v, _)| *v < this)
        .collect();
    older.sort();
    for (_, tag) in older.into_iter().rev().take(MAX_BASES) {
        let made = match new_recipe(scratch, req.mirrors, &NewRequest { tag, output: None }) {
            Ok(m) => m,
            // Outside every template: the era's range ends here.
            Err(_) => break,
        };
        if made.era != req.era {
            break;
        }
        if super::failing(&super::check(scratch, req.mirrors, &made.recipe_path)?).is_empty() {
            return Ok(Some((tag.clone(), made.recipe_path)));
        }
    }
    Ok(None)
}

fn conflict(
    series: &[SeriesReport],
    base: String,
    series_name: String,
    patch: String,
    work_tree: &Path,
) -> Proposal {
    let hit = series
        .iter()
        .filter(|s| s.name == series_name)
        .flat_map(|s| &s.patches)
        .filter(|p| p.patch == patch)
        .flat_map(|p| &p.conflicts)
        .next();
    let Some(c) = hit else {
        return Proposal::None {
            why: format!("rebase from {base} stopped at {series_name}/{patch}"),
        };
    };
    let lines = c.regions.first().copied().unwrap_or((1, 1));
    // The work tree is the rebase's own checkout; a deleted-upstream file has no text.
    let text = crate::safe::read_text(&work_tree.join(&c.path), 16 << 20).unwrap_or_default();
    let hunk: Vec<&str> = text
        .lines()
        .skip(lines.0.saturating_sub(1))
        .take((lines.1 + 1 - lines.0.min(lines.1)).min(HUNK_LINES))
        .collect();
    Proposal::Conflict {
        base,
        series: series_name,
        patch,
        file: c.path.clone(),
        lines,
        hunk: if hunk.is_empty() {
            format!("({})", c.kind)
        } else {
            hunk.join("\n") + "\n"
        },
    }
}

/// Regular files and directories only: a symlink in recipes/ or patches/ is not copied
/// (the rebase reads nothing through one).
fn copy_tree(from: &Path, to: &Path) -> std::io::Result<()> {
    fs::create_dir_all(to)?;
    for e in fs::read_dir(from)? {
        let e = e?;
        let ty = e.file_type()?;
        let dest = to.join(e.file_name());
        if ty.is_dir() {
            copy_tree(&e.path(), &dest)?;
        } else if ty.is_file() {
            fs::copy(e.path(), dest)?;
        }
    }
    Ok(())
}

/// The scratch project's recipes/ and patches/ as committed before the rebase, so the
/// proposal is `git diff` of what it wrote: adds, changes and removals in one patch that
/// `git apply` takes in the checkout.
struct Snapshot {
    repo: git2::Repository,
    tree: git2::Oid,
}

const PATHS: [&str; 2] = ["recipes", "patches"];

impl Snapshot {
    fn take(root: &Path) -> Result<Snapshot, Error> {
        let g = |e: git2::Error| git_err("snapshotting the scratch project", e);
        let repo = git2::Repository::init(root).map_err(g)?;
        let mut index = repo.index().map_err(g)?;
        index
            .add_all(PATHS, git2::IndexAddOption::FORCE, None)
            .map_err(g)?;
        index.write().map_err(g)?;
        let tree = index.write_tree().map_err(g)?;
        Ok(Snapshot { repo, tree })
    }

    fn diff(&self) -> Result<(String, Vec<String>), Error> {
        let g = |e: git2::Error| git_err("diffing the proposal", e);
        let tree = self.repo.find_tree(self.tree).map_err(g)?;
        let mut opts = git2::DiffOptions::new();
        opts.include_untracked(true)
            .recurse_untracked_dirs(true)
            .show_untracked_content(true)
            .show_binary(true);
        for p in PATHS {
            opts.pathspec(p);
        }
        let diff = self
            .repo
            .diff_tree_to_workdir(Some(&tree), Some(&mut opts))
            .map_err(g)?;
        let files = diff
            .deltas()
            .filter_map(|d| {
                d.new_file()
                    .path()
                    .or(d.old_file().path())
                    .map(|p| p.display().to_string())
            })
            .collect();
        let mut text = Vec::new();
        diff.print(git2::DiffFormat::Patch, |_, _, line| {
            if matches!(line.origin(), '+' | '-' | ' ') {
                text.push(line.origin() as u8);
            }
            text.extend_from_slice(line.content());
            true
        })
        .map_err(g)?;
        Ok((String::from_utf8_lossy(&text).into_owned(), files))
    }
}

fn git_err(what: &str, e: git2::Error) -> Error {
    Error::Io {
        what: what.into(),
        source: std::io::Error::other(e),
    }
}
