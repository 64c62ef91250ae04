//! The sources stage: clean work trees of Ollama and llama.cpp at the recipe's pins,
//! with llama.cpp placed the way the recipe's era expects.

use std::fs;
use std::path::{Path, PathBuf};

use git2::Oid;

use super::git::{find_commit, resolve_tag, run_git};
use super::regenerate::{regenerate, Regenerated};
use super::tree::{materialise, Materialised, Sparse, TreeRequest};
use super::{Mirrors, Repo, RepoName, SourceError, Want};
use crate::recipe::era::{classify, LlamaPin};
use crate::recipe::model::{LlamaSource, Recipe};

pub use crate::contract::{CompatPatch, Sources};

/// Paths a mirror may lack in `repo`'s tree: the recipe's missing_ok plus the files its
/// regenerate rules can remake.
fn may_lack(recipe: &Recipe, repo: RepoName) -> Vec<String> {
    let mut v = recipe.build.missing_ok.clone();
    v.extend(
        recipe
            .build
            .regenerate
            .iter()
            .filter(|r| r.repo == repo)
            .map(|r| format!("/{}", r.path)),
    );
    v
}

/// What fetch collects about paths the mirror lacked.
struct Gaps<'a> {
    recipe: &'a Recipe,
    cache: &'a Path,
    regenerated: Vec<Regenerated>,
    notes: Vec<String>,
}

impl Gaps<'_> {
    /// Regenerates what `m` skipped and a rule can remake; notes the rest.
    fn fill(
        &mut self,
        repo: RepoName,
        tree: &Path,
        pin: &str,
        m: &mut Materialised,
        what: &str,
    ) -> Result<(), SourceError> {
        let (recipe, cache) = (self.recipe, self.cache);
        let (regenerated, notes) = (&mut self.regenerated, &mut self.notes);
        for p in std::mem::take(&mut m.skipped_missing) {
            match recipe
                .build
                .regenerate
                .iter()
                .find(|r| r.repo == repo && r.path == p)
            {
                Some(rule) => regenerated.push(regenerate(tree, pin, rule, what, cache)?),
                None => {
                    notes.push(format!(
                    "{what}: {p} is missing from the mirror; skipped (the build does not need it)"
                ));
                    m.skipped_missing.push(p);
                }
            }
        }
        Ok(())
    }
}

fn io(what: String) -> impl FnOnce(std::io::Error) -> SourceError {
    move |source| SourceError::Io { what, source }
}

/// Replaces `dest` with the directory `tmp` as one rename, removing the old tree after.
fn swap_into_place(tmp: &Path, dest: &Path) -> Result<(), SourceError> {
    if dest.exists() {
        let trash = dest.with_extension(format!("old-{}", std::process::id()));
        fs::rename(dest, &trash).map_err(io(format!("moving the old {} aside", dest.display())))?;
        crate::killpoint::hit("fetch.old-aside");
        fs::rename(tmp, dest).map_err(io(format!("moving the new tree to {}", dest.display())))?;
        crate::killpoint::hit("fetch.swapped");
        let _ = fs::remove_dir_all(&trash);
    } else {
        fs::rename(tmp, dest).map_err(io(format!("moving the new tree to {}", dest.display())))?;
    }
    Ok(())
}

fn temp_dir_in(dir: &Path, prefix: &str) -> Result<PathBuf, SourceError> {
    fs::create_dir_all(dir).map_err(io(format!("creating {}", dir.display())))?;
    let t = tempfile::Builder::new()
        .prefix(prefix)
        .tempdir_in(dir)
        .map_err(io(format!(
            "creating a temporary directory in {}",
            dir.display()
        )))?;
    Ok(t.keep())
}

/// Removes a half-built tree on every early return.
struct Cleanup(Option<PathBuf>);
impl Drop for Cleanup {
    fn drop(&mut self) {
        if let Some(p) = self.0.take() {
            let _ = fs::remove_dir_all(p);
        }
    }
}

fn commit_in(repos: &[Repo], name: RepoName, commit: &str) -> Result<(usize, Oid), SourceError> {
    find_commit(repos, commit).ok_or_else(|| SourceError::CommitNotFound {
        name,
        commit: commit.to_string(),
        path: repos.first().map(|r| r.path.clone()).unwrap_or_default(),
        hint: format!("pass a mirror that has it with --mirror {name}=PATH, or run without --offline so the cache fetches it"),
    })
}

/// Materialises the recipe's sources under `dest/src/`. Each tree is built in a temporary
/// directory and renamed into place, so an interrupted run never leaves a tree that looks
/// complete; two runs on the same `dest` are serialised by a lock.
pub fn fetch(recipe: &Recipe, mirrors: &Mirrors, dest: &Path) -> Result<Sources, SourceError> {
    let tag = recipe.ollama.tag.as_deref().unwrap_or_default();
    let expected = recipe.ollama.commit.as_deref().unwrap_or_default();
    // The mirror is opened and its tree checked before anything is created under `dest`:
    // a refused mirror (offline, unknown tag, moved tag, hostile tree) writes nothing.
    let wants = [
        Want::Tag(tag.to_string()),
        Want::Commit(expected.to_string()),
        Want::Shallow,
    ];
    let ollama_repos = mirrors.open(RepoName::Ollama, Some(&recipe.ollama.url), &wants)?;
    let repo = &ollama_repos[0];
    let actual = resolve_tag(repo, tag)?;
    if actual.to_string() != expected {
        return Err(SourceError::MovedTag {
            name: RepoName::Ollama,
            tag: tag.to_string(),
            expected: expected.to_string(),
            actual: actual.to_string(),
        });
    }
    match repo.git.find_commit(actual).and_then(|c| c.tree()) {
        Ok(tree) => super::tree::check_tree(&tree, &format!("ollama {tag}"))?,
        Err(e) if e.class() == git2::ErrorClass::Tree || e.class() == git2::ErrorClass::Object => {
            return Err(SourceError::HostileTree {
                what: format!("ollama {tag}"),
                path: "(the root tree)".into(),
                why: format!("git cannot parse it ({})", e.message()),
            })
        }
        Err(_) => {} // a partial mirror: materialise says what is missing
    }
    let src = dest.join("src");
    fs::create_dir_all(&src).map_err(io(format!("creating {}", src.display())))?;
    let lock_path = dest.join(".fetch.lock");
    let lock =
        fs::File::create(&lock_path).map_err(io(format!("creating {}", lock_path.display())))?;
    lock.lock()
        .map_err(io(format!("locking {}", lock_path.display())))?;
    crate::killpoint::hit("fetch.locked");
    // Under the lock no other fetch is running here, so temporary trees left by a killed
    // run (kill -9 skips every cleanup) are stale: remove them.
    for e in fs::read_dir(&src)
        .map_err(io(format!("reading {}", src.display())))?
        .flatten()
    {
        let n = e.file_name().to_string_lossy().into_owned();
        if n.starts_with(".ollama-") || n.starts_with(".llama.cpp-") || n.contains(".old-") {
            let _ = fs::remove_dir_all(e.path());
        }
    }

    let sparse = Sparse::new(&recipe.build.sparse);
    let mut gaps = Gaps {
        recipe,
        cache: mirrors.cache_dir(),
        regenerated: Vec::new(),
        notes: Vec::new(),
    };
    let what = format!("ollama {tag}");
    let tmp = temp_dir_in(&src, ".ollama-")?;
    let mut guard = Cleanup(Some(tmp.clone()));
    crate::killpoint::hit("fetch.tmp-created");
    let mut ollama = materialise(&TreeRequest {
        mirror: &repo.path,
        repo: &repo.git,
        commit: actual,
        dest: &tmp,
        sparse: &sparse,
        missing_ok: &may_lack(recipe, RepoName::Ollama),
        what: &what,
    })?;
    gaps.fill(RepoName::Ollama, &tmp, expected, &mut ollama, &what)?;
    crate::killpoint::hit("fetch.ollama-written");

    // The llama.cpp pin: the recipe's, else what the Ollama tree records.
    let llama_commit = match (&recipe.llamacpp.commit, recipe.llamacpp.source) {
        (_, LlamaSource::Vendored) => None,
        (Some(c), _) => Some(c.clone()),
        (None, _) => {
            let tree = repo
                .git
                .find_commit(actual)
                .and_then(|c| c.tree())
                .map_err(|source| SourceError::Git {
                    what: format!("{what}: reading tree"),
                    source,
                })?;
            let cls = classify(&repo.git, &tree, &what).map_err(|e| SourceError::Io {
                what: format!("{what}: deriving the llama.cpp pin"),
                source: std::io::Error::other(e.to_string()),
            })?;
            match cls.llamacpp {
                LlamaPin::Submodule { commit, .. } => Some(commit),
                other => {
                    return Err(SourceError::Io {
                        what: format!("{what}: the recipe has no [llamacpp] commit"),
                        source: std::io::Error::other(format!(
                            "the tree records {other:?}; regenerate the recipe with `ollama-vulkan recipe new` to pin it"
                        )),
                    })
                }
            }
        }
    };

    let mut llamacpp = None;
    let mut llamacpp_tree = None;
    let mut compat_patches = Vec::new();
    if let Some(commit) = &llama_commit {
        let lurl = recipe.llamacpp.url.as_deref();
        let lrepos = mirrors.open(
            RepoName::LlamaCpp,
            lurl,
            &[Want::Commit(commit.clone()), Want::Shallow],
        )?;
        let (i, oid) = commit_in(&lrepos, RepoName::LlamaCpp, commit)?;
        let lrepo = &lrepos[i];
        let lwhat = format!("llama.cpp {}", &commit[..12.min(commit.len())]);
        if recipe.llamacpp.source == LlamaSource::VendoredPlusBackend {
            // Eras 2 and 3: subtrees (or files) of the pin, placed into the Ollama tree
            // and committed there, one commit each; no llama.cpp tree of its own.
            if recipe.llamacpp.backend.is_empty() {
                return Err(SourceError::BadBackend {
                    recipe: recipe.path.clone(),
                    why: "`source = \"vendored-plus-backend\"` without a `backend` for this tag".into(),
                    help: "add `backend = { from = \"…\", to = \"…\" }` to [llamacpp], or widen its `tags` (`recipe check` names the file)".into(),
                });
            }
            for b in &recipe.llamacpp.backend {
                let placed =
                    super::backend::place_backend(&lrepo.git, oid, b, &tmp, &recipe.path, &lwhat)?;
                gaps.notes.push(format!(
                    "{lwhat}: placed {} ({} files, {} bytes) at {} in commit {} on top of the pin",
                    b.from,
                    placed.files,
                    placed.bytes,
                    b.to,
                    &placed.commit.to_string()[..12]
                ));
            }
        } else {
            let (ltmp, final_path) = match recipe.llamacpp.source {
                // Era 1: a git work tree inside the Ollama tree, HEAD at the pin.
                LlamaSource::Submodule => {
                    (tmp.join("llm/llama.cpp"), src.join("ollama/llm/llama.cpp"))
                }
                _ => (temp_dir_in(&src, ".llama.cpp-")?, src.join("llama.cpp")),
            };
            let mut lguard =
                Cleanup((recipe.llamacpp.source != LlamaSource::Submodule).then(|| ltmp.clone()));
            let mut m = materialise(&TreeRequest {
                mirror: &lrepo.path,
                repo: &lrepo.git,
                commit: oid,
                dest: &ltmp,
                sparse: &Sparse::default(),
                missing_ok: &may_lack(recipe, RepoName::LlamaCpp),
                what: &lwhat,
            })?;
            gaps.fill(RepoName::LlamaCpp, &ltmp, commit, &mut m, &lwhat)?;
            crate::killpoint::hit("fetch.llama-written");
            if recipe.llamacpp.source == LlamaSource::Submodule && !m.skipped_missing.is_empty() {
                // Era 1's gen_common.sh commits in this tree (`git am` of Ollama's
                // llm/patches), and git refuses to write a tree naming blobs it lacks: record
                // the absent files as removed, in a commit of their own on top of the pin.
                let msg = format!(
                    "Drop {} file(s) missing from the mirror\n\nThe build never reads them: {}\n",
                    m.skipped_missing.len(),
                    m.skipped_missing.join(", ")
                );
                let id = super::git::commit_paths(&ltmp, &m.skipped_missing, &msg).map_err(
                    |source| SourceError::Git {
                        what: format!(
                            "{lwhat}: committing the removal of files missing from the mirror"
                        ),
                        source,
                    },
                )?;
                gaps.notes.push(format!(
                    "{lwhat}: the {} missing file(s) are removed in commit {} on top of the pin, so git can commit in this tree",
                    m.skipped_missing.len(),
                    &id.to_string()[..12]
                ));
            }
            if recipe.llamacpp.source == LlamaSource::FetchContent {
                compat_patches = apply_compat(&tmp.join("llama/compat"), &ltmp)?;
                swap_into_place(&ltmp, &final_path)?;
                lguard.0 = None;
            }
            llamacpp = Some(m);
            llamacpp_tree = Some(final_path);
        }
    }
    let ollama_tree = src.join("ollama");
    let carried = carry_build_dirs(
        recipe,
        dest,
        &ollama_tree,
        &tmp,
        &actual.to_string(),
        llama_commit.as_deref(),
    );
    crate::killpoint::hit("fetch.before-swap");
    swap_into_place(&tmp, &ollama_tree)?;
    guard.0 = None;
    crate::killpoint::hit("fetch.ollama-in-place");
    if !carried.is_empty() {
        gaps.notes.push(format!(
            "kept the build output of the same pins ({}): the compile is incremental",
            carried.join(", ")
        ));
        touch_previously_patched(dest, &ollama_tree, llamacpp_tree.as_deref());
    }
    let fetched = Sources {
        schema: crate::contract::SOURCES_SCHEMA,
        ollama_tree,
        llamacpp_tree,
        ollama_commit: actual.to_string(),
        llamacpp_commit: llama_commit,
        ollama,
        llamacpp,
        compat_patches,
        regenerated: gaps.regenerated,
        notes: gaps.notes,
    };
    // The sources part of the build manifest, next to the trees it describes.
    let manifest = dest.join("sources.json");
    let json = serde_json::to_vec_pretty(&fetched).expect("Sources serialises");
    crate::fsutil::write_atomic(&manifest, &json)
        .map_err(io(format!("writing {}", manifest.display())))?;
    Ok(fetched)
}

/// Moves the template's build output dirs from the old tree into the new one when both
/// trees are of the same pins. Sources of a pin always get the commit's time as mtime, so
/// make/ninja rebuild only what the series changed. A different pin never carries over: its
/// changed sources could be older than the old outputs.
fn carry_build_dirs(
    recipe: &Recipe,
    dest: &Path,
    old: &Path,
    new: &Path,
    ollama_commit: &str,
    llama_commit: Option<&str>,
) -> Vec<String> {
    let mut carried = Vec::new();
    if recipe.build.keep_build_dirs.is_empty() || !old.is_dir() {
        return carried;
    }
    // A sources.json of another schema (or none) carries nothing over.
    let same = Sources::read(dest).is_ok_and(|p| {
        p.ollama_commit == ollama_commit && p.llamacpp_commit.as_deref() == llama_commit
    });
    if !same {
        return carried;
    }
    for d in &recipe.build.keep_build_dirs {
        let (from, to) = (old.join(d), new.join(d));
        if from.is_dir() && !to.exists() {
            if let Some(parent) = to.parent() {
                let _ = fs::create_dir_all(parent);
            }
            if fs::rename(&from, &to).is_ok() {
                carried.push(d.clone());
            }
        }
    }
    carried
}

/// Files the previous prepare patched are pristine again in the new tree, with the pin's
/// old mtime: make them newer than the carried outputs so they rebuild.
fn touch_previously_patched(dest: &Path, ollama: &Path, llama: Option<&Path>) {
    let Some(prev) = fs::read(dest.join("prepared.json"))
        .ok()
        .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
    else {
        return;
    };
    let now = std::time::SystemTime::now();
    for tree in prev
        .get("trees")
        .and_then(|t| t.as_array())
        .into_iter()
        .flatten()
    {
        let root = match tree.get("repo").and_then(|r| r.as_str()) {
            Some("ollama") => ollama,
            Some(_) => match llama {
                Some(l) => l,
                None => continue,
            },
            None => continue,
        };
        for p in tree
            .get("paths")
            .and_then(|p| p.as_array())
            .into_iter()
            .flatten()
        {
            if let Some(p) = p.as_str() {
                if let Ok(f) = fs::OpenOptions::new().write(true).open(root.join(p)) {
                    let _ = f.set_modified(now);
                }
            }
        }
    }
}

/// Applies every `*.patch` under `compat` (recursively) to `tree`, sorted by file name,
/// skipping one that reverse-applies: what llama/compat/apply-patch.cmake does, so CMake
/// later finds the tree already patched and never touches the network.
fn apply_compat(compat: &Path, tree: &Path) -> Result<Vec<CompatPatch>, SourceError> {
    let mut patches = Vec::new();
    collect_patches(compat, &mut patches);
    patches.sort_by(|a, b| a.file_name().cmp(&b.file_name()).then(a.cmp(b)));
    let mut out = Vec::new();
    for p in patches {
        let ps = p.to_string_lossy().into_owned();
        let rel = p.strip_prefix(compat).unwrap_or(&p).display().to_string();
        let status = if run_git(&["apply", "--reverse", "--check", &ps], Some(tree)).is_ok() {
            "already applied"
        } else {
            run_git(&["apply", "--whitespace=nowarn", &ps], Some(tree)).map_err(|(_, detail)| SourceError::Io {
                what: format!("applying llama/compat/{rel} to the llama.cpp tree"),
                source: std::io::Error::other(format!(
                    "{detail}\nthe pinned llama.cpp does not match Ollama's compat patch; check [llamacpp] commit against LLAMA_CPP_VERSION"
                )),
            })?;
            "applied"
        };
        out.push(CompatPatch {
            patch: rel,
            status: status.into(),
        });
    }
    Ok(out)
}

fn collect_patches(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(rd) = fs::read_dir(dir) else { return };
    for e in rd.flatten() {
        let p = e.path();
        if p.is_dir() {
            collect_patches(&p, out);
        } else if p.extension().is_some_and(|x| x == "patch") {
            out.push(p);
        }
    }
}
