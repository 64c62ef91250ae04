//! Carrying the patches: one 3-way merge per patch, a stop with a work tree at a
//! conflict, and resuming (`--continue`, `--skip`) or giving up (`--abort`).

use super::*;

pub(super) fn commit_tree(s: &Scratch, commit: &str) -> Result<Oid, RebaseError> {
    let oid = Oid::from_str(commit).map_err(gerr(format!("commit id {commit}")))?;
    s.repo
        .find_commit(oid)
        .and_then(|c| c.tree())
        .map(|t| t.id())
        .map_err(gerr(format!("reading commit {commit}")))
}

pub(super) fn oid(s: &str) -> Result<Oid, RebaseError> {
    Oid::from_str(s).map_err(gerr(format!("object id {s}")))
}

pub(super) fn out_path(dir: &Path, job: &Job, patch: &str) -> PathBuf {
    dir.join("out").join(&job.name).join(patch)
}

/// The parsed patches of a job, with their original bytes.
pub(super) fn job_patches(job: &Job) -> Result<Vec<(Patch, Vec<u8>)>, RebaseError> {
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
pub(super) fn untouched(s: &Scratch, o: Oid, n: Oid, patch: &Patch) -> bool {
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
pub(super) fn drive(s: &Scratch, dir: &Path, mut st: State) -> Result<RebaseReport, RebaseError> {
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

pub(super) fn patch_message(p: &Patch) -> String {
    format!(
        "{}\n\nAuthor: {}\nPatch: {}\n",
        p.subject,
        p.author.as_deref().unwrap_or("unknown"),
        p.name
    )
}

/// The report of a rebase stopped at the current patch's conflict.
pub(super) fn stopped(dir: &Path, st: &State, job: &Job, patch: &Patch) -> RebaseReport {
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

pub(super) fn report_of(st: &State, outcome: Finish) -> RebaseReport {
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
pub(super) fn write_worktree(
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
pub(super) fn resolve_current(s: &Scratch, dir: &Path, st: &mut State) -> Result<(), RebaseError> {
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
pub(super) fn skip_current(st: &mut State) -> Result<(), RebaseError> {
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

/// `--abort`: put back every file the rebase could have touched, drop the state.
pub(super) fn abort(dir: &Path, st: State) -> Result<RebaseReport, RebaseError> {
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
