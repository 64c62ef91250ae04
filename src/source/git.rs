//! Git plumbing shared by the stages: tag resolution, build numbers, cached mirrors.

use std::fs;
use std::path::{Path, PathBuf};

use git2::{Oid, Repository};

use super::{Repo, RepoName, SourceError};

/// `refs/tags/TAG` peeled to its commit.
pub fn resolve_tag(repo: &Repo, tag: &str) -> Result<Oid, SourceError> {
    let r = repo.git.find_reference(&format!("refs/tags/{tag}"));
    match r {
        Ok(r) => r
            .peel_to_commit()
            .map(|c| c.id())
            .map_err(|source| SourceError::Git {
                what: format!("peeling tag {tag}"),
                source,
            }),
        Err(_) => Err(SourceError::TagNotFound {
            name: repo.name,
            tag: tag.to_string(),
            path: repo.path.clone(),
            hint: tag_hint(repo, tag),
        }),
    }
}

/// Suggests the closest existing tags (same prefix) or how to list them.
fn tag_hint(repo: &Repo, tag: &str) -> String {
    let names: Vec<String> = repo
        .git
        .tag_names(None)
        .map(|t| t.iter().flatten().map(str::to_string).collect())
        .unwrap_or_default();
    let stem: String = tag
        .chars()
        .take(tag.rfind('.').unwrap_or(tag.len()))
        .collect();
    let mut near: Vec<String> = names
        .into_iter()
        .filter(|n| !stem.is_empty() && n.starts_with(&stem))
        .collect();
    crate::version::sort_tags(&mut near);
    if near.is_empty() {
        format!("list the tags with `git -C {} tag`", repo.path.display())
    } else {
        let shown: Vec<_> = near.iter().rev().take(5).rev().cloned().collect();
        format!("tags with that prefix: {}", shown.join(", "))
    }
}

/// `git rev-list --count COMMIT`: llama.cpp's build number `bNNNN` of a commit.
pub fn build_number(repo: &Repository, commit: Oid) -> Result<u64, git2::Error> {
    let mut walk = repo.revwalk()?;
    walk.push(commit)?;
    let mut n = 0u64;
    for id in walk {
        id?;
        n += 1;
    }
    Ok(n)
}

/// Resolves a full or abbreviated commit id in the first repository that has it.
pub fn find_commit(repos: &[Repo], rev: &str) -> Option<(usize, Oid)> {
    repos.iter().enumerate().find_map(|(i, r)| {
        r.git
            .revparse_single(rev)
            .ok()
            .and_then(|o| o.peel_to_commit().ok())
            .map(|c| (i, c.id()))
    })
}

/// The commit of llama.cpp release `bNNNN`: its tag where a mirror has it, else the commit
/// on the default branch's first-parent chain whose `rev-list --count` is NNNN (partial
/// mirrors lack many tags).
pub fn commit_for_build(repos: &[Repo], tag: &str) -> Result<Option<Oid>, git2::Error> {
    for r in repos {
        if let Ok(reference) = r.git.find_reference(&format!("refs/tags/{tag}")) {
            return Ok(Some(reference.peel_to_commit()?.id()));
        }
    }
    let want: u64 = match tag[1..].parse() {
        Ok(n) => n,
        Err(_) => return Ok(None),
    };
    for r in repos {
        let Some(head) = default_branch(&r.git) else {
            continue;
        };
        let mut chain = Vec::new();
        let mut walk = r.git.revwalk()?;
        walk.push(head)?;
        walk.simplify_first_parent()?;
        for id in walk {
            chain.push(id?);
        }
        // chain[0] is the tip; counts fall monotonically along the first-parent chain.
        let (mut lo, mut hi) = (0usize, chain.len());
        while lo < hi {
            let mid = (lo + hi) / 2;
            let n = build_number(&r.git, chain[mid])?;
            if n == want {
                return Ok(Some(chain[mid]));
            } else if n > want {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
    }
    Ok(None)
}

fn default_branch(repo: &Repository) -> Option<Oid> {
    ["refs/heads/master", "refs/heads/main", "HEAD"]
        .iter()
        .find_map(|r| {
            repo.revparse_single(r)
                .ok()
                .and_then(|o| o.peel_to_commit().ok())
                .map(|c| c.id())
        })
}

/// Runs git, capturing output; a failure carries git's own words.
pub fn run_git(args: &[&str], cwd: Option<&Path>) -> Result<String, (String, String)> {
    let mut cmd = duct::cmd("git", args)
        .stderr_to_stdout()
        .stdout_capture()
        .unchecked();
    if let Some(dir) = cwd {
        cmd = cmd.dir(dir);
    }
    let what = args.first().copied().unwrap_or("").to_string();
    let out = cmd.run().map_err(|e| (what.clone(), e.to_string()))?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    if out.status.success() {
        Ok(text)
    } else {
        Err((what, text))
    }
}

/// A bare mirror of `url` in the cache, holding at least `wants`. Only missing refs are
/// fetched, under an exclusive lock. A new mirror is set up in a temporary directory and
/// renamed into place; git itself writes packs and refs atomically, so a fetch killed
/// half-way leaves a usable mirror and the next run fetches again.
pub fn cached_mirror(
    cache: &Path,
    name: RepoName,
    url: &str,
    wants: &[super::Want],
    offline: bool,
) -> Result<PathBuf, SourceError> {
    use super::Want;
    let io = |what: String| move |source| SourceError::Io { what, source };
    let dir = cache.join("git");
    let path = dir.join(format!("{}.git", name.as_str()));
    if offline && !path.exists() {
        // Refused before anything is created.
        return Err(SourceError::OfflineMissing { name, path });
    }
    fs::create_dir_all(&dir).map_err(io(format!("creating {}", dir.display())))?;
    let lock_path = dir.join(format!("{}.lock", name.as_str()));
    let lock =
        fs::File::create(&lock_path).map_err(io(format!("creating {}", lock_path.display())))?;
    lock.lock()
        .map_err(io(format!("locking {}", lock_path.display())))?;
    // Under the lock: a `.NAME-*` dir is a new mirror a killed run never renamed into place.
    let stale = format!(".{}-", name.as_str());
    for e in fs::read_dir(&dir).into_iter().flatten().flatten() {
        if e.file_name().to_string_lossy().starts_with(&stale) {
            let _ = fs::remove_dir_all(e.path());
        }
    }
    let fetch_err = |what: String, detail: String| SourceError::Fetch {
        name,
        url: url.to_string(),
        what,
        detail,
    };

    if !path.exists() {
        if offline {
            return Err(SourceError::OfflineMissing { name, path });
        }
        let tmp = tempfile::Builder::new()
            .prefix(&format!(".{}-", name.as_str()))
            .tempdir_in(&dir)
            .map_err(io(format!(
                "creating a temporary directory in {}",
                dir.display()
            )))?;
        run_git(
            &["init", "--bare", "--quiet", &tmp.path().to_string_lossy()],
            None,
        )
        .map_err(|(w, d)| fetch_err(w, d))?;
        let tmp = tmp.keep();
        crate::killpoint::hit("fetch.mirror-initialised");
        fs::rename(&tmp, &path)
            .map_err(io(format!("moving the new mirror to {}", path.display())))?;
        crate::killpoint::hit("fetch.mirror-created");
    }
    let repo = Repository::open_bare(&path).map_err(|source| SourceError::Git {
        what: format!("opening {}", path.display()),
        source,
    })?;
    let mut refspecs: Vec<String> = Vec::new();
    for want in wants {
        match want {
            Want::Tag(t) if repo.find_reference(&format!("refs/tags/{t}")).is_err() => {
                refspecs.push(format!("+refs/tags/{t}:refs/tags/{t}"))
            }
            Want::Commit(c)
                if Oid::from_str(c)
                    .ok()
                    .and_then(|o| repo.find_commit(o).ok())
                    .is_none() =>
            {
                // Kept reachable under refs/pins/ so gc never drops it.
                refspecs.push(format!("+{c}:refs/pins/{c}"))
            }
            Want::Everything => refspecs.push("+refs/heads/*:refs/heads/*".into()),
            _ => {}
        }
    }
    if wants.contains(&Want::Everything) {
        refspecs.push("+refs/tags/*:refs/tags/*".into());
    }
    if refspecs.is_empty() {
        return Ok(path); // warm: everything needed is here, no network
    }
    if offline {
        return Err(SourceError::OfflineMissing { name, path });
    }
    let everything = wants.contains(&Want::Everything);
    // Objects from the network are checked (a tree entry named `..` or `.git` is refused
    // by git itself), and the URL can never be read as an option.
    let mut args = vec![
        "-c",
        "transfer.fsckObjects=true",
        "fetch",
        "--no-tags",
        "--quiet",
    ];
    if everything && path.join("shallow").exists() {
        args.push("--unshallow"); // an earlier build fetched pins only; the survey needs history
    } else if !everything && wants.contains(&Want::Shallow) {
        args.push("--depth=1");
    }
    tracing::info!(repo = %name, %url, refs = ?refspecs, "fetching into the cache");
    crate::progress::note(&format!(
        "fetching {} into the cache from {url}",
        name.as_str()
    ));
    args.push("--end-of-options");
    args.push(url);
    args.extend(refspecs.iter().map(String::as_str));
    run_git(&args, Some(&path)).map_err(|(_, d)| {
        if d.contains("fsck") {
            SourceError::FsckFailed {
                name,
                url: url.to_string(),
                detail: crate::fsutil::last_lines(&d, 6),
            }
        } else {
            fetch_err("fetch".into(), d)
        }
    })?;
    Ok(path)
}

/// Commits the work-tree files at `paths` (relative, `/`-separated) on top of HEAD of the
/// repository at `dir`, moves HEAD there and updates the index. See [`commit_tree_changes`].
pub fn commit_paths(dir: &Path, paths: &[String], message: &str) -> Result<Oid, git2::Error> {
    use std::os::unix::fs::PermissionsExt;
    let mut changes = Vec::new();
    for path in paths {
        let file = dir.join(path);
        let entry = match fs::symlink_metadata(&file) {
            Ok(meta) if meta.file_type().is_symlink() => {
                let target =
                    fs::read_link(&file).map_err(|e| git2::Error::from_str(&e.to_string()))?;
                Some((target.to_string_lossy().as_bytes().to_vec(), 0o120000))
            }
            Ok(meta) => {
                let bytes = fs::read(&file).map_err(|e| git2::Error::from_str(&e.to_string()))?;
                let exec = meta.permissions().mode() & 0o111 != 0;
                Some((bytes, if exec { 0o100755 } else { 0o100644 }))
            }
            Err(_) => None,
        };
        changes.push((path.clone(), entry));
    }
    let repo = Repository::open(dir)?;
    let head = repo.head()?.peel_to_commit()?.id();
    let refs: Vec<TreeChange> = changes
        .iter()
        .map(|(p, e)| (p.clone(), e.as_ref().map(|(b, m)| (b.as_slice(), *m))))
        .collect();
    let id = commit_tree_changes(
        &repo,
        head,
        &refs,
        ("ollama-vulkan", "ollama-vulkan@localhost"),
        message,
    )?;
    move_head(dir, id, paths)?;
    Ok(id)
}

/// A path and its new content and git mode, or None to delete it.
pub type TreeChange<'a> = (String, Option<(&'a [u8], i32)>);

/// Makes a commit on `parent` whose tree is the parent's with `changes` applied (None
/// deletes), built with libgit2 from the parent's tree: trees from partial mirrors lack
/// blobs the build never reads, and `git commit` refuses to write a tree naming objects it
/// cannot find. Dates are fixed (epoch 0) so the same inputs give the same commit id.
pub fn commit_tree_changes(
    repo: &Repository,
    parent: Oid,
    changes: &[TreeChange],
    author: (&str, &str),
    message: &str,
) -> Result<Oid, git2::Error> {
    let parent = repo.find_commit(parent)?;
    let mut root = parent.tree()?.id();
    for (path, entry) in changes {
        let entry = match entry {
            Some((bytes, mode)) => Some((repo.blob(bytes)?, *mode)),
            None => None,
        };
        let parts: Vec<&str> = path.split('/').filter(|p| !p.is_empty()).collect();
        root = match upsert(repo, Some(root), &parts, entry)? {
            Some(id) => id,
            None => repo.treebuilder(None)?.write()?,
        };
    }
    let tree = repo.find_tree(root)?;
    let time = git2::Time::new(0, 0);
    let author = git2::Signature::new(author.0, author.1, &time)?;
    let committer = git2::Signature::new("ollama-vulkan", "ollama-vulkan@localhost", &time)?;
    repo.commit(None, &author, &committer, message, &tree, &[&parent])
}

/// Points HEAD (detached) at `id` and refreshes the index entries of `paths` from the
/// work tree, without reading blobs the mirror lacks.
pub fn move_head(dir: &Path, id: Oid, paths: &[String]) -> Result<(), git2::Error> {
    let repo = Repository::open(dir)?;
    // The commit must exist before anything changes; HEAD moves last, once the index
    // holds the files, so a failure never leaves HEAD ahead of the index.
    repo.find_commit(id)?;
    for chunk in paths.chunks(200) {
        let mut a = vec!["update-index", "--no-skip-worktree", "--"];
        a.extend(chunk.iter().map(String::as_str));
        let _ = run_git(&a, Some(dir));
        let mut a = vec!["update-index", "--add", "--remove", "--"];
        a.extend(chunk.iter().map(String::as_str));
        run_git(&a, Some(dir)).map_err(|(_, d)| git2::Error::from_str(&d))?;
    }
    repo.set_head_detached(id)?;
    Ok(())
}

/// Returns the id of `base` with `parts` set to `entry` (or removed); None when the
/// resulting tree is empty.
pub(crate) fn upsert(
    repo: &Repository,
    base: Option<Oid>,
    parts: &[&str],
    entry: Option<(Oid, i32)>,
) -> Result<Option<Oid>, git2::Error> {
    let base_tree = base.map(|b| repo.find_tree(b)).transpose()?;
    let mut tb = repo.treebuilder(base_tree.as_ref())?;
    let (name, rest) = parts.split_first().expect("non-empty path");
    if rest.is_empty() {
        match entry {
            Some((oid, mode)) => {
                tb.insert(name, oid, mode)?;
            }
            None => {
                if tb.get(name)?.is_some() {
                    tb.remove(name)?;
                }
            }
        }
    } else {
        let sub = tb
            .get(name)?
            .filter(|e| e.kind() == Some(git2::ObjectType::Tree))
            .map(|e| e.id());
        match upsert(repo, sub, rest, entry)? {
            Some(id) => {
                tb.insert(name, id, 0o040000)?;
            }
            None => {
                if tb.get(name)?.is_some() {
                    tb.remove(name)?;
                }
            }
        }
    }
    if tb.is_empty() {
        return Ok(None);
    }
    Ok(Some(tb.write()?))
}
