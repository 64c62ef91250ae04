//! One patch carried from the old base to the new one, in git objects: the patch applied
//! to the old side gives P, and P is merged 3-way into the new side N with the old side O
//! as the merge base (libgit2's `merge_trees`, rename detection on), the way `git am -3`
//! does. Every object is written to the rebase's own scratch repository, which borrows
//! the mirrors' objects through `objects/info/alternates`, so mirrors are never written.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use git2::{DiffFindOptions, DiffFormat, DiffOptions, MergeOptions, Oid, Repository, Tree};
use serde::{Deserialize, Serialize};

use crate::patch::engine::{apply_patch, FileReport, GitSource, Overlay, PatchStatus};
use crate::patch::parse::{Action, Patch, PatchError};

/// The scratch repository of a rebase: `tree/` under the state dir, a normal git
/// repository whose work tree is where conflicts are resolved.
pub struct Scratch {
    pub repo: Repository,
    pub dir: PathBuf,
}

impl Scratch {
    /// Opens the scratch repository at `dir`, creating it with `alternates` (object
    /// directories of the mirrors) when it does not exist.
    pub fn open_or_init(dir: &Path, alternates: &[PathBuf]) -> Result<Scratch, git2::Error> {
        // Partial mirrors lack blobs nobody reads; trees naming them must still be
        // writable (libgit2 checks every entry's object exists by default).
        git2::opts::strict_object_creation(false);
        let repo = match Repository::open(dir) {
            Ok(r) => r,
            Err(_) => {
                let r = Repository::init(dir)?;
                let info = r.path().join("objects").join("info");
                std::fs::create_dir_all(&info)
                    .map_err(|e| git2::Error::from_str(&e.to_string()))?;
                let list: String = alternates
                    .iter()
                    .map(|p| format!("{}\n", p.display()))
                    .collect();
                std::fs::write(info.join("alternates"), list)
                    .map_err(|e| git2::Error::from_str(&e.to_string()))?;
                // Reopen so the odb sees the alternates.
                Repository::open(dir)?
            }
        };
        Ok(Scratch {
            repo,
            dir: dir.to_path_buf(),
        })
    }

    pub fn tree(&self, id: Oid) -> Result<Tree<'_>, git2::Error> {
        self.repo.find_tree(id)
    }

    /// `base` with `changes` applied (None deletes).
    pub fn tree_with(&self, base: Oid, changes: &Overlay) -> Result<Oid, git2::Error> {
        let mut root = base;
        for (path, entry) in changes {
            let entry = match entry {
                Some(e) => Some((self.repo.blob(&e.bytes)?, e.mode as i32)),
                None => None,
            };
            let parts: Vec<&str> = path.split('/').filter(|p| !p.is_empty()).collect();
            root = match crate::source::git::upsert(&self.repo, Some(root), &parts, entry)? {
                Some(id) => id,
                None => self.repo.treebuilder(None)?.write()?,
            };
        }
        Ok(root)
    }

    /// A commit of `tree` on `parent` with fixed dates: the same inputs, the same id.
    pub fn commit(
        &self,
        tree: Oid,
        parent: Option<Oid>,
        message: &str,
    ) -> Result<Oid, git2::Error> {
        let time = git2::Time::new(0, 0);
        let sig = git2::Signature::new("ollama-vulkan", "ollama-vulkan@localhost", &time)?;
        let tree = self.repo.find_tree(tree)?;
        let parents: Vec<git2::Commit<'_>> = parent
            .map(|p| self.repo.find_commit(p))
            .transpose()?
            .into_iter()
            .collect();
        let refs: Vec<&git2::Commit<'_>> = parents.iter().collect();
        self.repo.commit(None, &sig, &sig, message, &tree, &refs)
    }
}

/// How one patch fared.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Status {
    /// Applies to the new base exactly as it is.
    Clean,
    /// Applies at other line numbers; the 3-way merge agrees.
    Offset,
    /// Context no longer matches but the 3-way merge is clean.
    Merged,
    /// A file it changes was renamed upstream; the change followed the rename.
    Renamed,
    /// Its change is already in the new tag: dropped.
    Upstreamed,
    /// The 3-way merge overlaps with an upstream change.
    Conflict,
    /// Conflicted, then resolved by hand (`--continue`).
    Resolved,
    /// Dropped with `--skip`.
    Skipped,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Clean => "clean",
            Status::Offset => "offset",
            Status::Merged => "merged",
            Status::Renamed => "renamed",
            Status::Upstreamed => "upstreamed",
            Status::Conflict => "conflict",
            Status::Resolved => "resolved",
            Status::Skipped => "skipped",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rename {
    pub from: String,
    pub to: String,
}

/// How one hunk's own context fared on the new base (before the 3-way merge).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HunkNote {
    pub hunk: usize,
    pub header: String,
    /// `clean`, `offset`, `fuzz` (context matches only with fuzz) or `failed`.
    pub status: String,
    /// Lines away from the stated position (offset and fuzz).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lines: Option<isize>,
    /// Where the hunk was expected (failed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expected_at: Option<usize>,
}

/// One file of a patch on the new base.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileNote {
    pub path: String,
    pub hunks: Vec<HunkNote>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

fn notes(files: &[FileReport]) -> Vec<FileNote> {
    use crate::patch::apply::HunkOutcome as H;
    files
        .iter()
        .map(|f| FileNote {
            path: f.path.clone(),
            error: f.error.clone(),
            hunks: f
                .hunks
                .iter()
                .map(|h| {
                    let (status, lines, expected_at) = match &h.outcome {
                        H::Clean => ("clean", None, None),
                        H::Offset { lines } => ("offset", Some(*lines), None),
                        H::Fuzz { lines, .. } => ("fuzz", Some(*lines), None),
                        H::Failed { expected_at, .. } => ("failed", None, Some(*expected_at)),
                    };
                    HunkNote {
                        hunk: h.hunk,
                        header: h.header.clone(),
                        status: status.into(),
                        lines,
                        expected_at,
                    }
                })
                .collect(),
        })
        .collect()
}

/// A file the merge could not combine, and where its conflict markers are.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ConflictFile {
    pub path: String,
    /// `content` (both sides changed the same lines), `deleted-upstream` (the new tag
    /// removed a file the patch changes) or `added-both`.
    pub kind: String,
    /// 1-based (first, last) lines of each conflict region in the work-tree file.
    pub regions: Vec<(usize, usize)>,
}

/// What merging one patch gave.
pub enum Outcome {
    /// A result tree (the new side with the patch) and how it got there.
    Merged {
        status: Status,
        result: Oid,
        renames: Vec<Rename>,
        files: Vec<FileNote>,
        /// What a merge cannot fix (a Go file moved into a package of another name).
        warnings: Vec<String>,
    },
    Upstreamed {
        files: Vec<FileNote>,
    },
    Conflict {
        /// Path → content for the work tree (None: absent), every path the patch touches.
        worktree: BTreeMap<String, Option<(Vec<u8>, u32)>>,
        conflicts: Vec<ConflictFile>,
        renames: Vec<Rename>,
        files: Vec<FileNote>,
    },
}

/// The patch applied to the old side, or why it does not apply there (a series that does
/// not fit its own pin).
pub fn old_side(
    s: &Scratch,
    o_tree: Oid,
    patch: &Patch,
    fuzz: usize,
) -> Result<Result<Oid, String>, PatchError> {
    let src = GitSource {
        repo: &s.repo,
        tree: s.tree(o_tree).map_err(|e| git_err(patch, e))?,
    };
    let (rep, changes) = apply_patch(&src, &Overlay::new(), patch, fuzz)?;
    if !rep.status.applies() {
        let why = rep
            .files
            .iter()
            .filter_map(|f| {
                f.error.clone().or_else(|| {
                    f.hunks
                        .iter()
                        .find(|h| {
                            matches!(h.outcome, crate::patch::apply::HunkOutcome::Failed { .. })
                        })
                        .map(|h| {
                            format!("{} hunk {} ({}) does not match", f.path, h.hunk, h.header)
                        })
                })
            })
            .collect::<Vec<_>>()
            .join("; ");
        return Ok(Err(if why.is_empty() {
            format!("status {:?}", rep.status)
        } else {
            why
        }));
    }
    Ok(Ok(s
        .tree_with(o_tree, &changes)
        .map_err(|e| git_err(patch, e))?))
}

fn git_err(patch: &Patch, e: git2::Error) -> PatchError {
    PatchError {
        patch: patch.name.clone(),
        line: 0,
        why: format!("git: {}", e.message()),
        help: "check that the mirrors hold the pinned commits (a partial mirror may lack blobs the patch touches)".into(),
    }
}

/// Paths of the patch on the old side (what upstream may have renamed).
fn old_paths(patch: &Patch) -> Vec<String> {
    patch
        .files
        .iter()
        .filter(|f| f.action != Action::Create)
        .filter_map(|f| f.old_path.clone())
        .collect()
}

/// Renames upstream of files the patch changes: paths present at `o` and gone at `n`,
/// found again by git's similarity detection.
fn parent(p: &str) -> &str {
    p.rsplit_once('/').map(|(d, _)| d).unwrap_or("")
}

/// Renames upstream that the patch must follow:
/// - files it changes that are gone at `n`, found again by git's similarity detection;
/// - files it creates in a directory that upstream renamed as a whole (gone at `n`, its
///   files found elsewhere): they go to the new directory, as git's directory rename
///   detection (merge-ort) does. The returned renames name the created files.
fn upstream_renames(
    s: &Scratch,
    o: Oid,
    n: Oid,
    patch: &Patch,
) -> Result<Vec<Rename>, git2::Error> {
    let (ot, nt) = (s.tree(o)?, s.tree(n)?);
    let missing: Vec<String> = old_paths(patch)
        .into_iter()
        .filter(|p| ot.get_path(Path::new(p)).is_ok() && nt.get_path(Path::new(p)).is_err())
        .collect();
    let created: Vec<String> = patch
        .files
        .iter()
        .filter(|f| f.action == Action::Create)
        .filter_map(|f| f.new_path.clone())
        .filter(|p| {
            let d = parent(p);
            !d.is_empty() && ot.get_path(Path::new(d)).is_ok() && nt.get_path(Path::new(d)).is_err()
        })
        .collect();
    if missing.is_empty() && created.is_empty() {
        return Ok(Vec::new());
    }
    let mut diff = s.repo.diff_tree_to_tree(Some(&ot), Some(&nt), None)?;
    let mut fo = DiffFindOptions::new();
    fo.renames(true).rename_limit(10_000);
    diff.find_similar(Some(&mut fo))?;
    let mut out = Vec::new();
    // Old directory → (new directory → files moved there).
    let mut dirs: BTreeMap<String, BTreeMap<String, usize>> = BTreeMap::new();
    for d in diff.deltas() {
        if d.status() != git2::Delta::Renamed {
            continue;
        }
        let (Some(from), Some(to)) = (d.old_file().path(), d.new_file().path()) else {
            continue;
        };
        let from = from.to_string_lossy().into_owned();
        let to = to.to_string_lossy().into_owned();
        *dirs
            .entry(parent(&from).to_string())
            .or_default()
            .entry(parent(&to).to_string())
            .or_default() += 1;
        if missing.contains(&from) {
            out.push(Rename { from, to });
        }
    }
    for p in created {
        let d = parent(&p);
        let target = dirs.get(d).and_then(|m| {
            m.iter()
                .max_by_key(|(_, n)| **n)
                .map(|(dir, _)| dir.clone())
        });
        if let Some(nd) = target {
            let file = &p[d.len() + 1..];
            let to = if nd.is_empty() {
                file.to_string()
            } else {
                format!("{nd}/{file}")
            };
            if nt.get_path(Path::new(&to)).is_err() {
                out.push(Rename {
                    from: p.clone(),
                    to,
                });
            }
        }
    }
    Ok(out)
}

/// The `package` clause of a Go file.
fn go_package(bytes: &[u8]) -> Option<String> {
    String::from_utf8_lossy(bytes).lines().find_map(|l| {
        l.strip_prefix("package ")
            .map(|p| p.trim().trim_end_matches(';').to_string())
    })
}

/// A Go file that followed a directory rename keeps its old `package` clause while the
/// files around it say another: the series applies but does not build.
fn package_warnings(
    s: &Scratch,
    result: Oid,
    renames: &[Rename],
) -> Result<Vec<String>, git2::Error> {
    let tree = s.tree(result)?;
    let mut out = Vec::new();
    for r in renames.iter().filter(|r| r.to.ends_with(".go")) {
        let Ok(e) = tree.get_path(Path::new(&r.to)) else {
            continue;
        };
        let Some(mine) = go_package(s.repo.find_blob(e.id())?.content()) else {
            continue;
        };
        let dir = parent(&r.to);
        let sub = if dir.is_empty() {
            tree.clone()
        } else {
            match tree
                .get_path(Path::new(dir))
                .and_then(|e| s.repo.find_tree(e.id()))
            {
                Ok(t) => t,
                Err(_) => continue,
            }
        };
        let theirs = sub.iter().find_map(|e| {
            let name = e.name()?;
            if !name.ends_with(".go")
                || name.ends_with("_test.go")
                || r.to.ends_with(&format!("/{name}"))
                || r.to == name
            {
                return None;
            }
            if renames.iter().any(|x| x.to.ends_with(&format!("/{name}"))) {
                return None;
            }
            go_package(s.repo.find_blob(e.id()).ok()?.content())
        });
        if let Some(theirs) = theirs.filter(|t| *t != mine) {
            out.push(format!(
                "{} says `package {mine}` but the other Go files of {dir}/ say `package {theirs}`: fix the package clause in the patch by hand",
                r.to
            ));
        }
    }
    Ok(out)
}

/// Moves the files the patch created in a renamed directory to the new one.
fn move_created(
    s: &Scratch,
    result: Oid,
    patch: &Patch,
    renames: &[Rename],
) -> Result<Oid, git2::Error> {
    let tree = s.tree(result)?;
    let mut changes = Overlay::new();
    for f in patch.files.iter().filter(|f| f.action == Action::Create) {
        let Some(p) = &f.new_path else { continue };
        let Some(r) = renames.iter().find(|r| &r.from == p) else {
            continue;
        };
        if let Ok(e) = tree.get_path(Path::new(p)) {
            let blob = s.repo.find_blob(e.id())?;
            changes.insert(p.clone(), None);
            changes.insert(
                r.to.clone(),
                Some(crate::patch::engine::FileEntry {
                    bytes: std::rc::Rc::new(blob.content().to_vec()),
                    mode: e.filemode() as u32,
                }),
            );
        }
    }
    if changes.is_empty() {
        return Ok(result);
    }
    s.tree_with(result, &changes)
}

/// The patch with its paths moved along `renames`.
fn remap(patch: &Patch, renames: &[Rename]) -> Patch {
    let mut p = patch.clone();
    let map = |x: &mut Option<String>| {
        if let Some(r) = x
            .as_ref()
            .and_then(|v| renames.iter().find(|r| &r.from == v))
        {
            *x = Some(r.to.clone());
        }
    };
    for f in &mut p.files {
        map(&mut f.old_path);
        map(&mut f.new_path);
    }
    p
}

/// Merges `patch` (old side `o` → `p`) into the new side `n`.
pub fn merge_patch(
    s: &Scratch,
    o: Oid,
    p: Oid,
    n: Oid,
    patch: &Patch,
    their_label: &str,
    our_label: &str,
) -> Result<Outcome, PatchError> {
    let ge = |e| git_err(patch, e);
    let renames = upstream_renames(s, o, n, patch).map_err(ge)?;
    let probe = if renames.is_empty() {
        patch.clone()
    } else {
        remap(patch, &renames)
    };
    let n_src = GitSource {
        repo: &s.repo,
        tree: s.tree(n).map_err(ge)?,
    };
    let (rep, changes) = apply_patch(&n_src, &Overlay::new(), &probe, 0)?;
    let files = notes(&rep.files);
    if rep.status == PatchStatus::AlreadyApplied {
        return Ok(Outcome::Upstreamed { files });
    }
    let (ot, nt, pt) = (
        s.tree(o).map_err(ge)?,
        s.tree(n).map_err(ge)?,
        s.tree(p).map_err(ge)?,
    );
    let mut mo = MergeOptions::new();
    mo.find_renames(true);
    let mut index = s.repo.merge_trees(&ot, &nt, &pt, Some(&mo)).map_err(ge)?;
    if index.has_conflicts() {
        let mut worktree = BTreeMap::new();
        let mut conflicts = Vec::new();
        let conflicted: Vec<git2::IndexConflict> = index
            .conflicts()
            .map_err(ge)?
            .collect::<Result<_, _>>()
            .map_err(ge)?;
        for c in &conflicted {
            let path = [&c.our, &c.their, &c.ancestor]
                .iter()
                .find_map(|e| e.as_ref())
                .map(|e| String::from_utf8_lossy(&e.path).into_owned())
                .unwrap_or_default();
            match (&c.ancestor, &c.our, &c.their) {
                (anc, Some(ours), Some(theirs)) => {
                    let mut fo = git2::MergeFileOptions::new();
                    fo.ancestor_label("base")
                        .our_label(our_label)
                        .their_label(their_label);
                    let empty;
                    let anc = match anc {
                        Some(a) => a,
                        None => {
                            empty = git2::IndexEntry {
                                ctime: git2::IndexTime::new(0, 0),
                                mtime: git2::IndexTime::new(0, 0),
                                dev: 0,
                                ino: 0,
                                mode: ours.mode,
                                uid: 0,
                                gid: 0,
                                file_size: 0,
                                id: s.repo.blob(b"").map_err(ge)?,
                                flags: 0,
                                flags_extended: 0,
                                path: ours.path.clone(),
                            };
                            &empty
                        }
                    };
                    let r = s
                        .repo
                        .merge_file_from_index(anc, ours, theirs, Some(&mut fo))
                        .map_err(ge)?;
                    let content = r.content().to_vec();
                    conflicts.push(ConflictFile {
                        path: path.clone(),
                        kind: if c.ancestor.is_some() {
                            "content".into()
                        } else {
                            "added-both".into()
                        },
                        regions: regions(&content),
                    });
                    worktree.insert(path, Some((content, theirs.mode)));
                }
                (_, None, Some(theirs)) => {
                    let blob = s.repo.find_blob(theirs.id).map_err(ge)?;
                    conflicts.push(ConflictFile {
                        path: path.clone(),
                        kind: "deleted-upstream".into(),
                        regions: Vec::new(),
                    });
                    worktree.insert(path, Some((blob.content().to_vec(), theirs.mode)));
                }
                (_, Some(ours), None) => {
                    // The patch deletes a file upstream changed: leave upstream's file.
                    let blob = s.repo.find_blob(ours.id).map_err(ge)?;
                    conflicts.push(ConflictFile {
                        path: path.clone(),
                        kind: "deleted-by-patch".into(),
                        regions: Vec::new(),
                    });
                    worktree.insert(path, Some((blob.content().to_vec(), ours.mode)));
                }
                _ => {}
            }
        }
        // The patch's other files, merged cleanly: their merged content.
        for fp in &probe.files {
            for path in [&fp.old_path, &fp.new_path].into_iter().flatten() {
                if worktree.contains_key(path) {
                    continue;
                }
                let e = index.get_path(Path::new(path), 0);
                let v = match e {
                    Some(e) => {
                        let blob = s.repo.find_blob(e.id).map_err(ge)?;
                        Some((blob.content().to_vec(), e.mode))
                    }
                    None => None,
                };
                worktree.insert(path.clone(), v);
            }
        }
        return Ok(Outcome::Conflict {
            worktree,
            conflicts,
            renames,
            files,
        });
    }
    let result = index.write_tree_to(&s.repo).map_err(ge)?;
    let result = move_created(s, result, patch, &renames).map_err(ge)?;
    if result == n {
        return Ok(Outcome::Upstreamed { files });
    }
    let status = if !renames.is_empty() {
        Status::Renamed
    } else if rep.status.applies()
        && rep.status != PatchStatus::Fuzz
        && s.tree_with(n, &changes).map_err(ge)? == result
    {
        if rep.max_offset == 0 {
            Status::Clean
        } else {
            Status::Offset
        }
    } else {
        Status::Merged
    };
    let created: Vec<Rename> = renames
        .iter()
        .filter(|r| {
            patch
                .files
                .iter()
                .any(|f| f.action == Action::Create && f.new_path.as_deref() == Some(&r.from))
        })
        .cloned()
        .collect();
    let warnings = package_warnings(s, result, &created).map_err(ge)?;
    Ok(Outcome::Merged {
        status,
        result,
        renames,
        files,
        warnings,
    })
}

/// Conflict regions (first, last line, 1-based) of a file with conflict markers.
pub fn regions(content: &[u8]) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let mut start = None;
    for (i, l) in content.split(|b| *b == b'\n').enumerate() {
        if l.starts_with(b"<<<<<<< ") || l == b"<<<<<<<" {
            start = Some(i + 1);
        } else if l.starts_with(b">>>>>>> ") || l == b">>>>>>>" {
            if let Some(s) = start.take() {
                out.push((s, i + 1));
            }
        }
    }
    out
}

/// The first line that still holds a conflict marker, if any.
pub fn marker_line(content: &[u8]) -> Option<usize> {
    content
        .split(|b| *b == b'\n')
        .position(|l| {
            l.starts_with(b"<<<<<<< ")
                || l.starts_with(b">>>>>>> ")
                || l == b"<<<<<<<"
                || l == b">>>>>>>"
        })
        .map(|i| i + 1)
}

/// A patch file split into the parts a re-export keeps (header, trailer) and the part it
/// replaces (the diff).
pub struct Parts<'a> {
    pub head: &'a [u8],
    pub diff: &'a [u8],
    pub trailer: &'a [u8],
}

pub fn split_patch(bytes: &[u8]) -> Parts<'_> {
    let start = if bytes.starts_with(b"diff --git ") {
        0
    } else {
        find(bytes, b"\ndiff --git ")
            .map(|i| i + 1)
            .unwrap_or(bytes.len())
    };
    // `-- \n<version>\n` after the last diff, as git format-patch writes.
    let rest = &bytes[start..];
    let end = rfind(rest, b"\n-- \n")
        .filter(|&i| rest[i + 5..].iter().filter(|b| **b == b'\n').count() <= 2)
        .map(|i| start + i + 1)
        .unwrap_or(bytes.len());
    Parts {
        head: &bytes[..start],
        diff: &bytes[start..end],
        trailer: &bytes[end..],
    }
}

fn find(h: &[u8], n: &[u8]) -> Option<usize> {
    h.windows(n.len()).position(|w| w == n)
}

fn rfind(h: &[u8], n: &[u8]) -> Option<usize> {
    h.windows(n.len()).rposition(|w| w == n)
}

/// The abbreviation length of the patch's `index` lines (git's default 7 if none).
fn abbrev_of(diff: &[u8]) -> u16 {
    diff.split(|b| *b == b'\n')
        .find_map(|l| l.strip_prefix(b"index "))
        .and_then(|l| l.split(|b| *b == b'.').next())
        .map(|h| h.len() as u16)
        .filter(|n| (4..=40).contains(n))
        .unwrap_or(7)
}

/// The patch re-exported as the diff `n` → `result`: header and trailer bytes kept, the
/// diffstat (if the header has one) refreshed only when the diff changed.
pub fn export(
    s: &Scratch,
    original: &[u8],
    patch: &Patch,
    n: Oid,
    result: Oid,
) -> Result<Vec<u8>, git2::Error> {
    let parts = split_patch(original);
    let mut opts = DiffOptions::new();
    opts.id_abbrev(abbrev_of(parts.diff));
    let mut diff =
        s.repo
            .diff_tree_to_tree(Some(&s.tree(n)?), Some(&s.tree(result)?), Some(&mut opts))?;
    if patch
        .files
        .iter()
        .any(|f| matches!(f.action, Action::Rename | Action::Copy))
    {
        let mut fo = DiffFindOptions::new();
        fo.renames(true);
        diff.find_similar(Some(&mut fo))?;
    }
    let mut text = Vec::new();
    diff.print(DiffFormat::Patch, |_, _, line| {
        if matches!(line.origin(), '+' | '-' | ' ') {
            text.push(line.origin() as u8);
        }
        text.extend_from_slice(line.content());
        true
    })?;
    if text == parts.diff {
        return Ok(original.to_vec());
    }
    let mut head = parts.head.to_vec();
    // `---\n <stat>\n N files changed...\n\n`: refresh the stat git format-patch wrote.
    if let Some(i) = rfind(&head, b"\n---\n") {
        let stat = &head[i + 5..];
        let looks_like_stat = !stat.is_empty()
            && stat
                .split(|b| *b == b'\n')
                .all(|l| l.is_empty() || l.starts_with(b" "));
        if looks_like_stat {
            let buf = diff.stats()?.to_buf(git2::DiffStatsFormat::FULL, 72)?;
            head.truncate(i + 5);
            head.extend_from_slice(&buf);
            head.push(b'\n');
        }
    }
    let mut out = head;
    out.extend_from_slice(&text);
    out.extend_from_slice(parts.trailer);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_header_diff_and_trailer() {
        let p = b"From x\nSubject: [PATCH] a\n\nUpstream-Status: Pending\n---\n a | 2 +-\n\ndiff --git a/a b/a\n--- a/a\n+++ b/a\n@@ -1 +1 @@\n-x\n+y\n-- \n2.39.5\n\n";
        let parts = split_patch(p);
        assert!(parts.head.ends_with(b" a | 2 +-\n\n"));
        assert!(parts.diff.starts_with(b"diff --git"));
        assert!(parts.diff.ends_with(b"+y\n"));
        assert_eq!(parts.trailer, b"-- \n2.39.5\n\n");
    }

    #[test]
    fn conflict_regions_and_markers() {
        let c = b"a\n<<<<<<< ours\nb\n=======\nc\n>>>>>>> theirs\nd\n";
        assert_eq!(regions(c), vec![(2, 6)]);
        assert_eq!(marker_line(c), Some(2));
        assert_eq!(marker_line(b"a\n=======\n"), None);
    }
}
