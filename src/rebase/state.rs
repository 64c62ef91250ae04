//! The rebase's state under `work/rebase/<recipe>/`: what it carries (jobs), where it
//! is (current patch, sides), and the files it may write, as they were; loaded only after
//! every field is checked (the state file is untrusted).

use super::*;

/// A series to carry over.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct Job {
    pub(super) name: String,
    pub(super) repo: RepoName,
    pub(super) dir: PathBuf,
    pub(super) patches: Vec<String>,
    pub(super) fuzz: usize,
    pub(super) old_base: String,
    pub(super) new_base: String,
    /// The file whose `[[series]]` entry pins this series (the recipe or its template).
    pub(super) pin_file: PathBuf,
    pub(super) sha256: String,
}

/// A file the rebase may write when it finishes, as it was when it started.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct Original {
    pub(super) path: PathBuf,
    pub(super) sha256: Option<String>,
    /// The copy under the state dir (for --abort).
    pub(super) copy: PathBuf,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct Pending {
    pub(super) paths: Vec<String>,
    pub(super) conflicts: Vec<ConflictFile>,
    pub(super) renames: Vec<Rename>,
    pub(super) files: Vec<FileNote>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct State {
    pub(super) recipe: PathBuf,
    pub(super) onto: String,
    pub(super) onto_commit: String,
    pub(super) era: EraVerdict,
    pub(super) allow_era_change: bool,
    pub(super) jobs: Vec<Job>,
    /// (series index, patch index) of the patch in progress.
    pub(super) cur: (usize, usize),
    /// Old side before / after the current patch; new side (a commit) before it.
    pub(super) o_tree: Option<String>,
    pub(super) p_tree: Option<String>,
    pub(super) n_commit: Option<String>,
    pub(super) results: Vec<Vec<PatchResult>>,
    pub(super) pending: Option<Pending>,
    pub(super) originals: Vec<Original>,
    /// Per-tag recipe pins to write when done: [ollama] tag/commit, [llamacpp].
    pub(super) new_llama_commit: Option<String>,
    pub(super) new_llama_version: Option<String>,
}

pub(super) fn absolute(p: &Path) -> PathBuf {
    fs::canonicalize(p)
        .or_else(|_| std::path::absolute(p))
        .unwrap_or_else(|_| p.to_path_buf())
}

/// `work/rebase/<recipe name>`, from the validated name only.
pub(super) fn state_dir(project: &Project, recipe: &Path) -> Result<PathBuf, RebaseError> {
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
pub(super) fn write_scratch(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir)?;
    }
    let tmp = path.with_extension("tmp~");
    fs::write(&tmp, bytes)?;
    fs::rename(&tmp, path)
}

pub(super) fn load_state(dir: &Path) -> Result<State, RebaseError> {
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

pub(super) fn is_oid(s: &str) -> bool {
    s.len() == 40 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Checks a loaded state against what it may name: every path is re-derived from the
/// project and the recipe (the series directories under patches/, the recipe, its
/// template, the copies under the state dir) and must match; indices are in range;
/// object ids are ids. A state that fails is refused, never acted on.
pub(super) fn validate_state(
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

pub(super) fn save_state(dir: &Path, st: &State) -> Result<(), RebaseError> {
    let p = dir.join("state.json");
    let text = serde_json::to_vec_pretty(st).expect("state serialises");
    write_scratch(&p, &text).map_err(ioerr(format!("writing {}", p.display())))
}

pub(super) fn verify_originals(st: &State) -> Result<(), RebaseError> {
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

/// Removes what a run killed inside [`crate::fsutil::write_atomic`] left beside the files
/// the rebase writes (it may not write that file again: --abort skips unchanged ones).
pub(super) fn clear_temps(st: &State) {
    for o in &st.originals {
        let _ = fs::remove_file(crate::fsutil::temp_path(&o.path));
    }
}

/// Ends the rebase: state.json goes first (the rebase is over from then on), then the rest.
pub(super) fn remove_state(dir: &Path) -> Result<(), RebaseError> {
    let p = dir.join("state.json");
    fs::remove_file(&p).map_err(ioerr(format!("removing {}", p.display())))?;
    crate::killpoint::hit("rebase.state-removed");
    fs::remove_dir_all(dir).map_err(ioerr(format!("removing {}", dir.display())))
}
