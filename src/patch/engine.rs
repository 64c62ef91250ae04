//! Applying patches to a tree held in memory: a [`Source`] (a directory, or a git tree
//! read straight from objects) plus an overlay of changed files. Nothing touches the disk
//! here, which is what makes `prepare` atomic and `check-patches` fast.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::rc::Rc;

use serde::Serialize;

use super::apply::{apply_hunks, reversed, HunkOutcome};
use super::parse::{Action, FilePatch, Patch, PatchError};

/// A file's bytes and git mode (0o100644 or 0o100755).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileEntry {
    pub bytes: Rc<Vec<u8>>,
    pub mode: u32,
}

/// A tree to patch.
pub trait Source {
    /// The file at `path`; Ok(None) if absent; Err if present but unreadable.
    fn read(&self, path: &str) -> Result<Option<FileEntry>, String>;
    /// The first component of `path` (or `path` itself) that is a symlink, if any.
    fn symlink_in(&self, path: &str) -> Option<String>;
    /// The first component of `path` (or `path` itself) that is a gitlink (a submodule
    /// such as era 1's `llm/llama.cpp`), if any: its files belong to another repository.
    fn gitlink_in(&self, path: &str) -> Option<String>;
    /// A cheap identity of the file's content (a blob id), for memoising results.
    fn id(&self, path: &str) -> Option<[u8; 20]>;
}

/// The files a series changed: path → new entry, or None when deleted.
pub type Overlay = BTreeMap<String, Option<FileEntry>>;

fn read_through(
    src: &dyn Source,
    overlay: &Overlay,
    path: &str,
) -> Result<Option<FileEntry>, String> {
    match overlay.get(path) {
        Some(e) => Ok(e.clone()),
        None => src.read(path),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PatchStatus {
    Clean,
    Offset,
    Fuzz,
    /// Does not apply forward, but its reverse applies: upstream already has it.
    AlreadyApplied,
    Failed,
}

impl PatchStatus {
    pub fn applies(self) -> bool {
        matches!(
            self,
            PatchStatus::Clean | PatchStatus::Offset | PatchStatus::Fuzz
        )
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct HunkReport {
    pub hunk: usize,
    pub header: String,
    /// Line of the hunk header in the patch file.
    pub patch_line: usize,
    #[serde(flatten)]
    pub outcome: HunkOutcome,
}

#[derive(Debug, Clone, Serialize)]
pub struct FileReport {
    pub path: String,
    pub action: Action,
    pub hunks: Vec<HunkReport>,
    /// A failure that is not a hunk's (file missing, already exists, unreadable).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct PatchReport {
    pub patch: String,
    pub subject: String,
    pub upstream_status: Option<String>,
    pub status: PatchStatus,
    /// Largest |offset| of any hunk.
    pub max_offset: usize,
    /// Largest fuzz used by any hunk.
    pub max_fuzz: usize,
    pub files: Vec<FileReport>,
}

/// Refuses a path that would write outside the tree: absolute, `.` or `..`, `.git` in
/// any letter case, NUL or control characters, through a symlink in the tree, or into a
/// gitlink (submodule) whose files belong to another repository. The one check of both
/// `prepare --check` and `prepare` (and `check-patches`, `rebase-patches`).
pub fn check_path(
    src: &dyn Source,
    patch: &Patch,
    fp: &FilePatch,
    path: &str,
) -> Result<(), PatchError> {
    let bad = |why: String, help: &str| PatchError {
        patch: patch.name.clone(),
        line: fp.line,
        why,
        help: help.into(),
    };
    let inside = "patches may only change files inside the tree; fix the paths in the diff header";
    if path.is_empty() {
        return Err(bad("empty path".into(), inside));
    }
    let shown = crate::safe::show(path);
    if Path::new(path).is_absolute() {
        return Err(bad(format!("path `{shown}` is absolute"), inside));
    }
    for c in path.split('/') {
        if c == ".." {
            return Err(bad(
                format!("path `{shown}` leaves the tree (`..`)"),
                inside,
            ));
        }
        if c.eq_ignore_ascii_case(".git") {
            return Err(bad(
                format!("path `{shown}` writes into the git directory"),
                inside,
            ));
        }
        if let Err(why) = crate::safe::file_name(c) {
            return Err(bad(
                format!("path `{shown}` is not a plain relative path: {why}"),
                inside,
            ));
        }
    }
    if let Some(link) = src.symlink_in(path) {
        return Err(bad(
            format!("path `{shown}` goes through the symlink `{link}` in the tree"),
            inside,
        ));
    }
    if let Some(link) = src.gitlink_in(path) {
        return Err(bad(
            format!("path `{shown}` is inside the submodule `{link}` (a gitlink): its files belong to another repository"),
            "patch the submodule's files in a series of its own, with `# target: llama.cpp` in its series file and repo = \"llama.cpp\" in the recipe",
        ));
    }
    Ok(())
}

/// The patch with old and new swapped: applying it undoes the patch.
fn reverse(p: &Patch) -> Patch {
    let mut r = p.clone();
    for f in &mut r.files {
        std::mem::swap(&mut f.old_path, &mut f.new_path);
        std::mem::swap(&mut f.old_mode, &mut f.new_mode);
        f.action = match f.action {
            Action::Create => Action::Delete,
            Action::Delete => Action::Create,
            a => a,
        };
        if f.action == Action::Copy {
            // Undoing a copy deletes the copy.
            f.action = Action::Delete;
            f.new_path = None;
            f.old_path = p
                .files
                .iter()
                .find(|x| x.line == f.line)
                .and_then(|x| x.new_path.clone());
        }
        f.hunks = reversed(&f.hunks);
    }
    r
}

/// Writes an overlay over the tree at `dir`: files atomically with their git mode,
/// deletions removed. Returns what was being done when a write failed.
pub fn write_overlay(dir: &Path, overlay: &Overlay) -> Result<(), (String, std::io::Error)> {
    use std::os::unix::fs::PermissionsExt;
    for (path, entry) in overlay {
        let file = dir.join(path);
        match entry {
            Some(e) => {
                crate::fsutil::write_atomic(&file, &e.bytes)
                    .map_err(|x| (format!("writing {}", file.display()), x))?;
                let mode = if e.mode == 0o100755 { 0o755 } else { 0o644 };
                std::fs::set_permissions(&file, std::fs::Permissions::from_mode(mode))
                    .map_err(|x| (format!("chmod {}", file.display()), x))?;
                crate::killpoint::hit("prepare.file-written");
            }
            None => {
                if file.exists() {
                    std::fs::remove_file(&file)
                        .map_err(|x| (format!("removing {}", file.display()), x))?;
                }
            }
        }
    }
    Ok(())
}

/// Applies one patch to `src` + `overlay` without touching either: returns the report and
/// the patch's own changes (empty unless it applied), which the caller adds to its overlay
/// — `prepare` also commits them one patch at a time. Unsafe paths are an error; hunks that
/// do not match give a report with status Failed (or AlreadyApplied).
pub fn apply_patch(
    src: &dyn Source,
    overlay: &Overlay,
    patch: &Patch,
    fuzz: usize,
) -> Result<(PatchReport, Overlay), PatchError> {
    for fp in &patch.files {
        for p in [&fp.old_path, &fp.new_path].into_iter().flatten() {
            check_path(src, patch, fp, p)?;
        }
    }
    Ok(apply_checked(src, overlay, patch, fuzz))
}

/// Applies a patch whose paths were checked.
fn apply_checked(
    src: &dyn Source,
    overlay: &Overlay,
    patch: &Patch,
    fuzz: usize,
) -> (PatchReport, Overlay) {
    let (files, changes) = run(src, overlay, patch, fuzz);
    let mut report = summarise(patch, files);
    if changes.is_none() && run(src, overlay, &reverse(patch), 0).1.is_some() {
        report.status = PatchStatus::AlreadyApplied;
    }
    (report, changes.unwrap_or_default())
}

fn summarise(patch: &Patch, files: Vec<FileReport>) -> PatchReport {
    let mut max_offset = 0;
    let mut max_fuzz = 0;
    let mut failed = false;
    for f in &files {
        failed |= f.error.is_some();
        for h in &f.hunks {
            match &h.outcome {
                HunkOutcome::Clean => {}
                HunkOutcome::Offset { lines } => max_offset = max_offset.max(lines.unsigned_abs()),
                HunkOutcome::Fuzz { fuzz, lines } => {
                    max_fuzz = max_fuzz.max(*fuzz);
                    max_offset = max_offset.max(lines.unsigned_abs());
                }
                HunkOutcome::Failed { .. } => failed = true,
            }
        }
    }
    let status = if failed {
        PatchStatus::Failed
    } else if max_fuzz > 0 {
        PatchStatus::Fuzz
    } else if max_offset > 0 {
        PatchStatus::Offset
    } else {
        PatchStatus::Clean
    };
    PatchReport {
        patch: patch.name.clone(),
        subject: patch.subject.clone(),
        upstream_status: patch.upstream_status.clone(),
        status,
        max_offset,
        max_fuzz,
        files,
    }
}

fn hunk_reports(fp: &FilePatch, outcomes: Vec<HunkOutcome>) -> Vec<HunkReport> {
    fp.hunks
        .iter()
        .zip(outcomes)
        .enumerate()
        .map(|(i, (h, o))| HunkReport {
            hunk: i + 1,
            header: h.header(),
            patch_line: h.line,
            outcome: o,
        })
        .collect()
}

/// Applies every file of `patch`; returns the per-file reports and, when all applied, the
/// changes.
fn run(
    src: &dyn Source,
    base: &Overlay,
    patch: &Patch,
    fuzz: usize,
) -> (Vec<FileReport>, Option<Overlay>) {
    let mut changes = Overlay::new();
    let mut reports = Vec::new();
    let mut ok = true;
    for fp in &patch.files {
        let mut rep = FileReport {
            path: fp.path().to_string(),
            action: fp.action,
            hunks: Vec::new(),
            error: None,
        };
        let view = |path: &str| -> Result<Option<FileEntry>, String> {
            match changes.get(path) {
                Some(e) => Ok(e.clone()),
                None => read_through(src, base, path),
            }
        };
        let old = match (fp.action, fp.old_path.as_deref()) {
            (Action::Create, _) | (_, None) => Ok(None),
            (_, Some(p)) => view(p),
        };
        let old = match old {
            Ok(o) => o,
            Err(e) => {
                rep.error = Some(format!("cannot read {}: {e}", fp.path()));
                reports.push(rep);
                ok = false;
                continue;
            }
        };
        if fp.action == Action::Create {
            match view(fp.path()) {
                Ok(Some(_)) => {
                    rep.error = Some(format!("{} already exists", fp.path()));
                    reports.push(rep);
                    ok = false;
                    continue;
                }
                Err(e) => {
                    rep.error = Some(format!("{} cannot be created: {e}", fp.path()));
                    reports.push(rep);
                    ok = false;
                    continue;
                }
                Ok(None) => {}
            }
        } else if old.is_none() {
            rep.error = Some(format!(
                "{} does not exist",
                fp.old_path.as_deref().unwrap_or("")
            ));
            reports.push(rep);
            ok = false;
            continue;
        }
        let content: &[u8] = old.as_ref().map(|e| e.bytes.as_slice()).unwrap_or(b"");
        let applied = if fp.hunks.is_empty() {
            Ok(super::apply::Applied {
                bytes: content.to_vec(),
                outcomes: Vec::new(),
            })
        } else {
            apply_hunks(content, &fp.hunks, fuzz)
        };
        match applied {
            Err(outcomes) => {
                rep.hunks = hunk_reports(fp, outcomes);
                ok = false;
            }
            Ok(a) => {
                rep.hunks = hunk_reports(fp, a.outcomes);
                if let (Some(m), Some(e)) = (fp.old_mode, old.as_ref()) {
                    if fp.action != Action::Create && m != e.mode && fp.new_mode.is_some() {
                        rep.error = Some(format!(
                            "{} has mode {:o}, the patch expects {m:o}",
                            fp.path(),
                            e.mode
                        ));
                        ok = false;
                    }
                }
                match fp.action {
                    Action::Delete => {
                        if !a.bytes.is_empty() {
                            rep.error = Some(format!(
                                "{} is not empty after the patch removes its lines",
                                fp.path()
                            ));
                            ok = false;
                        }
                        changes.insert(fp.old_path.clone().unwrap_or_default(), None);
                    }
                    _ => {
                        let mode = fp
                            .new_mode
                            .or(old.as_ref().map(|e| e.mode))
                            .unwrap_or(0o100644);
                        let new_path = fp.new_path.clone().unwrap_or_default();
                        if fp.action != Action::Modify {
                            if let Some(why) = file_dir_conflict(src, base, &changes, &new_path) {
                                rep.error = Some(why);
                                ok = false;
                            }
                        }
                        if fp.action == Action::Rename {
                            changes.insert(fp.old_path.clone().unwrap_or_default(), None);
                        }
                        changes.insert(
                            new_path,
                            Some(FileEntry {
                                bytes: Rc::new(a.bytes),
                                mode,
                            }),
                        );
                    }
                }
            }
        }
        reports.push(rep);
    }
    (reports, ok.then_some(changes))
}

/// Why a file cannot be created at `path`: a leading directory of it is a file (in the
/// tree or made by an earlier patch), or `path` is a directory (files below it exist).
fn file_dir_conflict(
    src: &dyn Source,
    base: &Overlay,
    changes: &Overlay,
    path: &str,
) -> Option<String> {
    let is_file = |p: &str| -> bool {
        match changes.get(p).or_else(|| base.get(p)) {
            Some(e) => e.is_some(),
            None => matches!(src.read(p), Ok(Some(_))),
        }
    };
    let mut prefix = String::new();
    let parts: Vec<&str> = path.split('/').collect();
    for c in &parts[..parts.len().saturating_sub(1)] {
        if !prefix.is_empty() {
            prefix.push('/');
        }
        prefix.push_str(c);
        if is_file(&prefix) {
            return Some(format!(
                "{path} cannot be created: {prefix} is a file, not a directory"
            ));
        }
    }
    let below = format!("{path}/");
    let live = |o: &Overlay| {
        o.range(below.clone()..)
            .take_while(|(k, _)| k.starts_with(&below))
            .any(|(_, e)| e.is_some())
    };
    if live(changes) || live(base) || src.read(path).is_err() {
        return Some(format!("{path} cannot be created: it is a directory"));
    }
    None
}

/// A directory on disk, with the gitlinks of its git HEAD (a fetched tree).
pub struct DirSource {
    root: PathBuf,
    gitlinks: Vec<String>,
}

impl DirSource {
    pub fn new(root: PathBuf) -> DirSource {
        let mut gitlinks = Vec::new();
        if let Ok(repo) = git2::Repository::open(&root) {
            if let Ok(tree) = repo.head().and_then(|h| h.peel_to_tree()) {
                let _ = tree.walk(git2::TreeWalkMode::PreOrder, |dir, e| {
                    if e.filemode() == 0o160000 {
                        gitlinks.push(format!("{dir}{}", e.name().unwrap_or("")));
                    }
                    git2::TreeWalkResult::Ok
                });
            }
        }
        DirSource { root, gitlinks }
    }
}

/// The first prefix of `path` (or `path`) in `links`.
fn prefix_in(links: &[String], path: &str) -> Option<String> {
    links
        .iter()
        .find(|l| {
            path == l.as_str()
                || (path.starts_with(l.as_str()) && path.as_bytes().get(l.len()) == Some(&b'/'))
        })
        .cloned()
}

impl Source for DirSource {
    fn read(&self, path: &str) -> Result<Option<FileEntry>, String> {
        use std::os::unix::fs::PermissionsExt;
        let p = self.root.join(path);
        match std::fs::symlink_metadata(&p) {
            // Below a file (`README.md/x`) is as absent as a missing file; the caller
            // reports the file in the way, in --check and prepare alike.
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::NotFound | std::io::ErrorKind::NotADirectory
                ) =>
            {
                Ok(None)
            }
            Err(e) => Err(e.to_string()),
            Ok(m) if m.is_dir() => Err("is a directory".into()),
            Ok(m) => {
                let bytes = std::fs::read(&p).map_err(|e| e.to_string())?;
                let mode = if m.permissions().mode() & 0o111 != 0 {
                    0o100755
                } else {
                    0o100644
                };
                Ok(Some(FileEntry {
                    bytes: Rc::new(bytes),
                    mode,
                }))
            }
        }
    }
    fn symlink_in(&self, path: &str) -> Option<String> {
        let mut cur = self.root.clone();
        let mut rel = PathBuf::new();
        for c in Path::new(path).components() {
            cur.push(c);
            rel.push(c);
            if std::fs::symlink_metadata(&cur)
                .map(|m| m.file_type().is_symlink())
                .unwrap_or(false)
            {
                return Some(rel.display().to_string());
            }
        }
        None
    }
    fn gitlink_in(&self, path: &str) -> Option<String> {
        prefix_in(&self.gitlinks, path)
    }
    fn id(&self, _path: &str) -> Option<[u8; 20]> {
        None
    }
}

/// A git tree read from objects: no checkout.
pub struct GitSource<'r> {
    pub repo: &'r git2::Repository,
    pub tree: git2::Tree<'r>,
}

impl Source for GitSource<'_> {
    fn read(&self, path: &str) -> Result<Option<FileEntry>, String> {
        let entry = match self.tree.get_path(Path::new(path)) {
            Ok(e) => e,
            Err(_) => return Ok(None),
        };
        if entry.kind() != Some(git2::ObjectType::Blob) {
            return Err("not a file".into());
        }
        let blob = self
            .repo
            .find_blob(entry.id())
            .map_err(|_| format!("blob {} is missing from the mirror", entry.id()))?;
        Ok(Some(FileEntry {
            bytes: Rc::new(blob.content().to_vec()),
            mode: entry.filemode() as u32,
        }))
    }
    fn symlink_in(&self, path: &str) -> Option<String> {
        let mut rel = PathBuf::new();
        for c in Path::new(path).components() {
            rel.push(c);
            match self.tree.get_path(&rel) {
                Ok(e) if e.filemode() == 0o120000 => return Some(rel.display().to_string()),
                Ok(_) => {}
                Err(_) => return None,
            }
        }
        None
    }
    fn gitlink_in(&self, path: &str) -> Option<String> {
        let mut rel = PathBuf::new();
        for c in Path::new(path).components() {
            rel.push(c);
            match self.tree.get_path(&rel) {
                Ok(e) if e.filemode() == 0o160000 => return Some(rel.display().to_string()),
                Ok(_) => {}
                Err(_) => return None,
            }
        }
        None
    }
    fn id(&self, path: &str) -> Option<[u8; 20]> {
        self.tree.get_path(Path::new(path)).ok().map(|e| {
            let mut id = [0u8; 20];
            id.copy_from_slice(e.id().as_bytes());
            id
        })
    }
}

/// Memoises patch results by the content of the files a patch touches, so checking a
/// series over hundreds of tags applies each distinct (patch, input) pair once.
/// Patch index and the content ids of the files it touches.
type MemoKey = (usize, Vec<Option<[u8; 20]>>);

#[derive(Default)]
pub struct Memo {
    map: HashMap<MemoKey, (PatchReport, Overlay)>,
    pub hits: usize,
    pub misses: usize,
}

fn content_id(e: &Option<FileEntry>) -> Option<[u8; 20]> {
    e.as_ref().map(|f| {
        let oid =
            git2::Oid::hash_object(git2::ObjectType::Blob, &f.bytes).expect("hashing never fails");
        let mut id = [0u8; 20];
        id.copy_from_slice(oid.as_bytes());
        id[19] ^= (f.mode & 0xff) as u8; // the mode is part of the input
        id
    })
}

impl Memo {
    /// [`apply_patch`] with the overlay updated, remembering its result under patch `index` and the input ids.
    pub fn apply(
        &mut self,
        index: usize,
        src: &dyn Source,
        overlay: &mut Overlay,
        patch: &Patch,
        fuzz: usize,
    ) -> Result<PatchReport, PatchError> {
        let mut key = Vec::new();
        for fp in &patch.files {
            for p in [&fp.old_path, &fp.new_path].into_iter().flatten() {
                check_path(src, patch, fp, p)?;
                key.push(match overlay.get(p.as_str()) {
                    Some(e) => content_id(e),
                    None => src.id(p),
                });
            }
        }
        if let Some((rep, changes)) = self.map.get(&(index, key.clone())) {
            self.hits += 1;
            overlay.extend(changes.clone());
            return Ok(rep.clone());
        }
        self.misses += 1;
        // Paths were checked while making the key.
        let (rep, changes) = apply_checked(src, overlay, patch, fuzz);
        overlay.extend(changes.clone());
        self.map.insert((index, key), (rep.clone(), changes));
        Ok(rep)
    }
}
