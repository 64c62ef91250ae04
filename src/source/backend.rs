//! `source = "vendored-plus-backend"` (eras 2 and 3): subtrees or files of the llama.cpp
//! commit the Ollama tree's vendoring names (`llama/vendoring`, `Makefile.sync`
//! `FETCH_HEAD=`), copied into the Ollama tree and committed on top of the pin, so the
//! series and the build see them as part of the tree (ggml-vulkan and its header, which
//! Ollama's vendoring left out until v0.12.6).
//!
//! Everything is checked before a file is written: the source must be a regular file or a
//! directory of them (no symlinks, no submodules, names that [`check_tree`] accepts), the
//! destination must be new and reached through no symlink.

use std::fs;
use std::path::Path;

use git2::{ObjectType, Oid, Repository, TreeWalkMode, TreeWalkResult};

use super::git::{commit_tree_changes, move_head};
use super::tree::check_tree;
use super::SourceError;
use crate::recipe::model::Backend;

/// What was placed, for the fetch notes and sources.json.
#[derive(Debug, Clone)]
pub struct Placed {
    pub files: usize,
    pub bytes: u64,
    /// The commit on top of the Ollama pin that adds the files.
    pub commit: Oid,
}

/// Copies `backend.from` of llama.cpp `commit` to `backend.to` in the Ollama work tree
/// `ollama` (a git work tree at the pin, as `materialise` leaves it) and commits it.
pub fn place_backend(
    llama: &Repository,
    commit: Oid,
    backend: &Backend,
    ollama: &Path,
    recipe: &Path,
    what: &str,
) -> Result<Placed, SourceError> {
    let bad = |why: String, help: &str| SourceError::BadBackend {
        recipe: recipe.to_path_buf(),
        why,
        help: help.to_string(),
    };
    let git = |w: String| move |source| SourceError::Git { what: w, source };
    let root = llama
        .find_commit(commit)
        .and_then(|c| c.tree())
        .map_err(git(format!("{what}: reading the tree")))?;
    let entry = match root.get_path(Path::new(&backend.from)) {
        Ok(e) => e,
        Err(e) if e.code() == git2::ErrorCode::NotFound => {
            return Err(bad(
                format!("`from = \"{}\"` is not in {what}", backend.from),
                "check the path against the llama.cpp commit the tag's Makefile.sync names (`git ls-tree COMMIT ggml/src/`); a tag whose pin predates the backend cannot use this template",
            ))
        }
        Err(e) => return Err(git(format!("{what}: looking up {}", backend.from))(e)),
    };
    let is_file =
        entry.kind() == Some(ObjectType::Blob) && matches!(entry.filemode(), 0o100644 | 0o100755);
    if entry.kind() != Some(ObjectType::Tree) && !is_file {
        let kind = match entry.filemode() {
            0o120000 => "a symlink",
            0o160000 => "a submodule",
            _ => "neither a directory nor a regular file",
        };
        return Err(bad(
            format!("`from = \"{}\"` is {kind} in {what}", backend.from),
            "name a directory or a regular file of the llama.cpp tree (symlinks are never followed)",
        ));
    }
    let sub = if is_file {
        None
    } else {
        let sub = entry
            .to_object(llama)
            .and_then(|o| o.peel_to_tree())
            .map_err(git(format!("{what}: reading {}", backend.from)))?;
        check_tree(&sub, &format!("{what}:{}", backend.from))?;
        Some(sub)
    };

    // The destination: new, and no existing component of it is a symlink.
    let mut at = ollama.to_path_buf();
    let parts: Vec<&str> = backend.to.split('/').collect();
    for (i, c) in parts.iter().enumerate() {
        at.push(c);
        // The last component may be a file: that is "already exists" below.
        let inner = i + 1 < parts.len();
        match fs::symlink_metadata(&at) {
            Ok(m) if m.file_type().is_symlink() => {
                return Err(bad(
                    format!(
                        "`to = \"{}\"` goes through `{}`, a symlink in the Ollama tree",
                        backend.to,
                        at.strip_prefix(ollama).unwrap_or(&at).display()
                    ),
                    "name a path inside the Ollama tree that no symlink leads to",
                ))
            }
            Ok(m) if inner && !m.is_dir() => {
                return Err(bad(
                    format!(
                        "`to = \"{}\"`: `{}` is a file in the Ollama tree",
                        backend.to,
                        at.strip_prefix(ollama).unwrap_or(&at).display()
                    ),
                    "name a directory path inside the Ollama tree",
                ))
            }
            _ => {}
        }
    }
    if at.exists() {
        return Err(bad(
            format!("`to = \"{}\"` already exists in the Ollama tree", backend.to),
            "this tag vendors the backend itself (era 4 and later): use its own template; or point `to` at a new directory",
        ));
    }

    // Read every blob first: nothing is written if one is a symlink, a submodule or missing.
    let odb = llama
        .odb()
        .map_err(git("opening the object database".into()))?;
    // (path under `to`, "" for a placed file; data; mode)
    let mut files: Vec<(String, Vec<u8>, i32)> = Vec::new();
    let mut failure: Option<SourceError> = None;
    let missing = |path: &str, blob: Oid| SourceError::MissingBlob {
        what: what.to_string(),
        path: path.to_string(),
        blob: blob.to_string(),
        mirror: llama.path().to_path_buf(),
    };
    match &sub {
        None => match odb.read(entry.id()) {
            Ok(o) => files.push((String::new(), o.data().to_vec(), entry.filemode())),
            Err(_) => return Err(missing(&backend.from, entry.id())),
        },
        Some(sub) => sub
            .walk(TreeWalkMode::PreOrder, |dir, e| {
                let path = format!("{dir}{}", e.name().unwrap_or(""));
                match (e.kind(), e.filemode()) {
                    (Some(ObjectType::Tree), _) => TreeWalkResult::Ok,
                    (Some(ObjectType::Blob), m @ (0o100644 | 0o100755)) => match odb.read(e.id()) {
                        Ok(o) => {
                            files.push((path, o.data().to_vec(), m));
                            TreeWalkResult::Ok
                        }
                        Err(_) => {
                            failure = Some(missing(&format!("{}/{path}", backend.from), e.id()));
                            TreeWalkResult::Abort
                        }
                    },
                    (_, m) => {
                        let kind = match m {
                            0o120000 => "a symlink",
                            0o160000 => "a submodule",
                            _ => "not a regular file",
                        };
                        failure = Some(bad(
                            format!("`{}/{path}` in {what} is {kind}; only regular files are placed", backend.from),
                            "use a llama.cpp mirror of the upstream repository (its ggml-vulkan holds regular files only)",
                        ));
                        TreeWalkResult::Abort
                    }
                }
            })
            .map_err(|source| {
                failure.take().unwrap_or(SourceError::Git {
                    what: format!("{what}: walking {}", backend.from),
                    source,
                })
            })?,
    }
    if let Some(f) = failure {
        return Err(f);
    }

    let mtime = llama
        .find_commit(commit)
        .map(|c| {
            std::time::UNIX_EPOCH + std::time::Duration::from_secs(c.time().seconds().max(0) as u64)
        })
        .unwrap_or(std::time::UNIX_EPOCH);
    let io = |w: String| move |source| SourceError::Io { what: w, source };
    let mut paths = Vec::with_capacity(files.len());
    let mut bytes = 0u64;
    for (rel, data, mode) in &files {
        let path = if rel.is_empty() {
            backend.to.clone()
        } else {
            format!("{}/{rel}", backend.to)
        };
        let target = ollama.join(&path);
        if let Some(parent) = target.parent() {
            fs::create_dir_all(parent).map_err(io(format!("creating {}", parent.display())))?;
        }
        fs::write(&target, data).map_err(io(format!("writing {}", target.display())))?;
        if *mode == 0o100755 {
            use std::os::unix::fs::PermissionsExt;
            fs::set_permissions(&target, fs::Permissions::from_mode(0o755))
                .map_err(io(format!("making {} executable", target.display())))?;
        }
        if let Ok(f) = fs::OpenOptions::new().write(true).open(&target) {
            let _ = f.set_modified(mtime);
        }
        bytes += data.len() as u64;
        paths.push(path);
    }
    let repo = Repository::open(ollama).map_err(git(format!("opening {}", ollama.display())))?;
    let head = repo
        .head()
        .and_then(|h| h.peel_to_commit())
        .map_err(git(format!("reading HEAD of {}", ollama.display())))?
        .id();
    let changes: Vec<super::git::TreeChange> = files
        .iter()
        .zip(&paths)
        .map(|((_, data, mode), p)| (p.clone(), Some((data.as_slice(), *mode))))
        .collect();
    let message = format!(
        "Place {} from {what}\n\n{} of llama.cpp {} copied to {} by ollama-vulkan\n([llamacpp] source = \"vendored-plus-backend\").\n",
        backend.to,
        backend.from,
        commit,
        backend.to
    );
    let id = commit_tree_changes(
        &repo,
        head,
        &changes,
        ("ollama-vulkan", "ollama-vulkan@localhost"),
        &message,
    )
    .map_err(git(format!("committing {}", backend.to)))?;
    move_head(ollama, id, &paths).map_err(git(format!("moving HEAD of {}", ollama.display())))?;
    Ok(Placed {
        files: files.len(),
        bytes,
        commit: id,
    })
}
