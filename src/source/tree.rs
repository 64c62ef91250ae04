//! Materialising a commit's tree as a clean work tree, straight from git objects.
//!
//! Files are written by us (not `git checkout`) so each path can be decided on its own:
//! left out by the recipe's sparse patterns, skipped with a note when its blob is missing
//! from a partial mirror but the build does not need it, or a clear error when it does.
//! The result is also a git repository (objects borrowed from the mirror through
//! `objects/info/alternates`, HEAD at the commit) because era 1's scripts run git in it.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use git2::{ObjectType, Oid, Repository, TreeWalkMode, TreeWalkResult};
use serde::Serialize;

use super::git::run_git;
use super::SourceError;

/// Include/exclude rules in git's non-cone sparse-checkout form, applied after an
/// implicit `/*`: `!/integration/testdata/` leaves a directory out, `*` matches within a
/// path component and `**` across components; the last matching rule wins.
#[derive(Debug, Clone, Default)]
pub struct Sparse {
    rules: Vec<(bool, String)>,
}

impl Sparse {
    pub fn new(patterns: &[String]) -> Sparse {
        let rules = patterns
            .iter()
            .map(|p| match p.strip_prefix('!') {
                Some(rest) => (false, rest.trim_start_matches('/').to_string()),
                None => (true, p.trim_start_matches('/').to_string()),
            })
            .filter(|(_, p)| !p.is_empty() && p != "*")
            .collect();
        Sparse { rules }
    }

    pub fn includes(&self, path: &str) -> bool {
        let mut included = true;
        for (include, pat) in &self.rules {
            if matches_path(pat, path) {
                included = *include;
            }
        }
        included
    }
}

/// A pattern ending in `/` matches everything below that directory.
pub fn matches_path(pattern: &str, path: &str) -> bool {
    if let Some(dir) = pattern.strip_suffix('/') {
        let mut prefix = String::new();
        for comp in path.split('/') {
            if !prefix.is_empty() {
                prefix.push('/');
            }
            prefix.push_str(comp);
            if prefix.len() < path.len() && glob(dir.as_bytes(), prefix.as_bytes()) {
                return true;
            }
        }
        return false;
    }
    glob(pattern.as_bytes(), path.as_bytes())
}

/// `*` within a component, `**` (and `**/`) across components. Memoised on (pattern
/// position, path position), so every pattern costs at most |pattern| × |path|² steps:
/// `**/**/**/…` no longer takes exponential time.
fn glob(p: &[u8], s: &[u8]) -> bool {
    let mut memo = vec![None; (p.len() + 1) * (s.len() + 1)];
    glob_at(p, s, 0, 0, &mut memo)
}

fn glob_at(p: &[u8], s: &[u8], pi: usize, si: usize, memo: &mut [Option<bool>]) -> bool {
    let key = pi * (s.len() + 1) + si;
    if let Some(v) = memo[key] {
        return v;
    }
    let v = match &p[pi..] {
        [] => si == s.len(),
        [b'*', b'*', rest @ ..] => {
            let skip = if rest.first() == Some(&b'/') { 3 } else { 2 };
            (si..=s.len()).any(|i| glob_at(p, s, pi + skip, i, memo))
        }
        [b'*', ..] => (si..=s.len())
            .take_while(|&i| i == si || s[i - 1] != b'/')
            .any(|i| glob_at(p, s, pi + 1, i, memo)),
        [c, ..] => s.get(si) == Some(c) && glob_at(p, s, pi + 1, si + 1, memo),
    };
    memo[key] = Some(v);
    v
}

/// Refuses a tree a hostile mirror could use to write outside the destination: entry
/// names that are empty, `.`, `..`, hold `/`, NUL or control characters, or are `.git` in
/// any letter case; two entries of one name; and entries below a symlink of the same
/// tree. Runs over the whole tree before anything is written.
pub fn check_tree(tree: &git2::Tree<'_>, what: &str) -> Result<(), SourceError> {
    let mut failure: Option<SourceError> = None;
    let mut links: Vec<String> = Vec::new();
    let mut seen: std::collections::HashSet<String> = std::collections::HashSet::new();
    let walked = tree.walk(TreeWalkMode::PreOrder, |root, entry| {
        let bad = |path: String, why: String| SourceError::HostileTree {
            what: what.to_string(),
            path,
            why,
        };
        let raw = entry.name_bytes();
        let Ok(name) = std::str::from_utf8(raw) else {
            failure = Some(bad(
                format!("{root}{}", String::from_utf8_lossy(raw)),
                "the name is not UTF-8".into(),
            ));
            return TreeWalkResult::Abort;
        };
        let path = format!("{root}{name}");
        if let Err(why) = crate::safe::file_name(name) {
            failure = Some(bad(crate::safe::show(&path), why));
            return TreeWalkResult::Abort;
        }
        if !seen.insert(path.clone()) {
            failure = Some(bad(path, "two entries of the tree have this name".into()));
            return TreeWalkResult::Abort;
        }
        if let Some(l) = links
            .iter()
            .find(|l| path.starts_with(l.as_str()) && path.as_bytes().get(l.len()) == Some(&b'/'))
        {
            failure = Some(bad(
                path.clone(),
                format!("it lies below `{l}`, a symlink of the same tree"),
            ));
            return TreeWalkResult::Abort;
        }
        if entry.filemode() == 0o120000 {
            links.push(path);
        }
        TreeWalkResult::Ok
    });
    if let Some(f) = failure {
        return Err(f);
    }
    walked.map_err(|source| SourceError::Git {
        what: format!("{what}: walking the tree"),
        source,
    })
}

/// What happened to the paths of a tree.
#[derive(Debug, Clone, Default, Serialize, serde::Deserialize)]
pub struct Materialised {
    pub files: usize,
    pub bytes: u64,
    /// Left out by sparse patterns.
    pub excluded: usize,
    /// Missing from the mirror, not needed by the build: skipped with a note.
    pub skipped_missing: Vec<String>,
}

pub struct TreeRequest<'a> {
    pub mirror: &'a Path,
    pub repo: &'a Repository,
    pub commit: Oid,
    pub dest: &'a Path,
    pub sparse: &'a Sparse,
    /// Patterns (same syntax as sparse rules) of paths the build can do without.
    pub missing_ok: &'a [String],
    /// Printed in errors: "ollama v0.24.0".
    pub what: &'a str,
}

/// Writes the tree of `commit` into `dest`, which must not exist yet.
pub fn materialise(req: &TreeRequest<'_>) -> Result<Materialised, SourceError> {
    let io = |what: String| move |source| SourceError::Io { what, source };
    let git = |what: String| move |source| SourceError::Git { what, source };
    let commit = req
        .repo
        .find_commit(req.commit)
        .map_err(git(format!("{}: reading commit", req.what)))?;
    let tree = commit
        .tree()
        .map_err(git(format!("{}: reading tree", req.what)))?;
    check_tree(&tree, req.what)?;
    fs::create_dir_all(req.dest).map_err(io(format!("creating {}", req.dest.display())))?;
    let odb = req
        .repo
        .odb()
        .map_err(git("opening the object database".into()))?;

    let mtime = std::time::UNIX_EPOCH
        + std::time::Duration::from_secs(commit.time().seconds().max(0) as u64);
    let mut out = Materialised::default();
    let mut progress = crate::progress::Progress::start(format!("materialising {}", req.what));
    let mut failure: Option<SourceError> = None;
    let mut skip_worktree: Vec<String> = Vec::new();
    let walked = tree.walk(TreeWalkMode::PreOrder, |root, entry| {
        let name = entry.name().unwrap_or("");
        let path = format!("{root}{name}");
        let kind = entry.kind();
        if kind == Some(ObjectType::Tree) {
            return TreeWalkResult::Ok;
        }
        if !req.sparse.includes(&path) {
            out.excluded += 1;
            skip_worktree.push(path);
            return TreeWalkResult::Ok;
        }
        let target = req.dest.join(&path);
        if let Some(link) = symlink_below(req.dest, &path) {
            failure = Some(SourceError::HostileTree {
                what: req.what.to_string(),
                path: path.clone(),
                why: format!(
                    "`{link}` in the destination is a symlink; refusing to write through it"
                ),
            });
            return TreeWalkResult::Abort;
        }
        if let Some(parent) = target.parent() {
            if let Err(e) = fs::create_dir_all(parent) {
                failure = Some(SourceError::Io {
                    what: format!("creating {}", parent.display()),
                    source: e,
                });
                return TreeWalkResult::Abort;
            }
        }
        if kind == Some(ObjectType::Commit) {
            // A submodule: an empty directory, as git leaves an uninitialised one.
            let _ = fs::create_dir_all(&target);
            return TreeWalkResult::Ok;
        }
        let id = entry.id();
        if !odb.exists(id) {
            if req
                .missing_ok
                .iter()
                .any(|p| matches_path(p.trim_start_matches('/'), &path))
            {
                out.skipped_missing.push(path.clone());
                skip_worktree.push(path);
                return TreeWalkResult::Ok;
            }
            failure = Some(SourceError::MissingBlob {
                what: req.what.to_string(),
                path,
                blob: id.to_string(),
                mirror: req.mirror.to_path_buf(),
            });
            return TreeWalkResult::Abort;
        }
        let blob = match req.repo.find_blob(id) {
            Ok(b) => b,
            Err(e) => {
                failure = Some(SourceError::Git {
                    what: format!("reading {path}"),
                    source: e,
                });
                return TreeWalkResult::Abort;
            }
        };
        let res = if entry.filemode() == 0o120000 {
            let link = String::from_utf8_lossy(blob.content()).into_owned();
            std::os::unix::fs::symlink(link, &target)
        } else {
            write_file(&target, blob.content(), entry.filemode() == 0o100755, mtime)
        };
        if let Err(e) = res {
            failure = Some(SourceError::Io {
                what: format!("writing {}", target.display()),
                source: e,
            });
            return TreeWalkResult::Abort;
        }
        out.files += 1;
        out.bytes += blob.size() as u64;
        progress.tick(1);
        TreeWalkResult::Ok
    });
    // An aborted walk reports the callback's own error, not libgit2's "user abort".
    if let Some(f) = failure {
        return Err(f);
    }
    walked.map_err(git(format!("{}: walking the tree", req.what)))?;
    init_repo(req.dest, req.mirror, req.commit, &skip_worktree)?;
    progress.finish(&format!(
        "{} files, {:.1} MiB",
        out.files,
        out.bytes as f64 / 1048576.0
    ));
    Ok(out)
}

/// The first directory of `path` (below `dest`) that is a symlink on disk.
fn symlink_below(dest: &Path, path: &str) -> Option<String> {
    let mut cur = dest.to_path_buf();
    let parts: Vec<&str> = path.split('/').collect();
    for (i, c) in parts[..parts.len().saturating_sub(1)].iter().enumerate() {
        cur.push(c);
        match fs::symlink_metadata(&cur) {
            Ok(m) if m.file_type().is_symlink() => return Some(parts[..=i].join("/")),
            Ok(_) => {}
            Err(_) => return None,
        }
    }
    None
}

/// Writes a file with the commit's time as its mtime: the same pin gives the same mtimes,
/// so a build directory carried over from an earlier build of the same pin sees unchanged
/// sources as unchanged (make and ninja compare mtimes).
fn write_file(
    path: &Path,
    bytes: &[u8],
    exec: bool,
    mtime: std::time::SystemTime,
) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(if exec { 0o755 } else { 0o644 })
        .open(path)?;
    f.write_all(bytes)?;
    f.set_modified(mtime)
}

/// Makes `dest` a git repository at `commit` whose objects come from `mirror`, with an
/// index matching the files written (paths not written are marked skip-worktree, so
/// `git status` is clean).
fn init_repo(dest: &Path, mirror: &Path, commit: Oid, skip: &[String]) -> Result<(), SourceError> {
    let fail = |(what, detail): (String, String)| SourceError::Io {
        what: format!("git {what} in {}", dest.display()),
        source: std::io::Error::other(detail),
    };
    run_git(&["init", "--quiet"], Some(dest)).map_err(fail)?;
    let objects = objects_dir(mirror);
    let alternates = dest.join(".git/objects/info/alternates");
    fs::write(&alternates, format!("{}\n", objects.display())).map_err(|source| {
        SourceError::Io {
            what: format!("writing {}", alternates.display()),
            source,
        }
    })?;
    let c = commit.to_string();
    run_git(&["update-ref", "--no-deref", "HEAD", &c], Some(dest)).map_err(fail)?;
    run_git(&["read-tree", "HEAD"], Some(dest)).map_err(fail)?;
    for chunk in skip.chunks(500) {
        let mut args = vec!["update-index", "--skip-worktree", "--"];
        args.extend(chunk.iter().map(String::as_str));
        run_git(&args, Some(dest)).map_err(fail)?;
    }
    // Refresh stat data; files are byte-identical so nothing shows as modified.
    let _ = run_git(&["update-index", "-q", "--refresh"], Some(dest));
    Ok(())
}

/// The objects directory of a bare or non-bare repository.
fn objects_dir(repo: &Path) -> PathBuf {
    let bare = repo.join("objects");
    if bare.is_dir() {
        fs::canonicalize(&bare).unwrap_or(bare)
    } else {
        let p = repo.join(".git/objects");
        fs::canonicalize(&p).unwrap_or(p)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sparse_rules_last_match_wins() {
        let s = Sparse::new(&[
            "!/integration/testdata/".into(),
            "/integration/testdata/keep.txt".into(),
        ]);
        assert!(s.includes("integration/foo.go"));
        assert!(!s.includes("integration/testdata/shakespeare.txt"));
        assert!(s.includes("integration/testdata/keep.txt"));
    }

    #[test]
    fn globs() {
        assert!(matches_path(
            "models/ggml-vocab-*.gguf",
            "models/ggml-vocab-llama.gguf"
        ));
        assert!(!matches_path(
            "models/ggml-vocab-*.gguf",
            "models/sub/ggml-vocab-x.gguf"
        ));
        assert!(matches_path(
            "**/testdata/",
            "tokenizer/testdata/gemma2/tokenizer.model"
        ));
        assert!(matches_path("**/testdata/", "testdata/x"));
        assert!(!matches_path("**/testdata/", "src/testdata"));
    }

    #[test]
    fn many_double_stars_stay_fast() {
        let pat = format!("{}Z", "**/".repeat(14));
        let path = "a/".repeat(40) + "b";
        let t = std::time::Instant::now();
        assert!(!matches_path(&pat, &path));
        assert!(matches_path(&pat, "a/b/Z"));
        assert!(t.elapsed() < std::time::Duration::from_secs(1));
    }
}
