//! Finishing: the refreshed patches, SHA256SUMS and recipe pins, written through a
//! journal so a kill mid-way is replayed, never half-applied.

use super::*;

/// Replaces the TOML value at `span` (a quoted string) with `value`.
pub(super) fn set_string(
    text: &str,
    span: std::ops::Range<usize>,
    value: &str,
    edits: &mut Vec<(std::ops::Range<usize>, String)>,
) {
    let quoted = text
        .get(span.clone())
        .is_some_and(|s| s.starts_with('"') || s.starts_with('\''));
    let v = if quoted {
        format!("\"{value}\"")
    } else {
        value.to_string()
    };
    edits.push((span, v));
}

pub(super) fn apply_edits(text: &str, mut edits: Vec<(std::ops::Range<usize>, String)>) -> String {
    edits.sort_by_key(|(r, _)| std::cmp::Reverse(r.start));
    let mut out = text.to_string();
    for (r, v) in edits {
        out.replace_range(r, &v);
    }
    out
}

/// Writes the rebased series and pins; removes the state.
pub(super) fn finish(dir: &Path, st: State) -> Result<RebaseReport, RebaseError> {
    verify_originals(&st)?;
    let mut writes: BTreeMap<PathBuf, Vec<u8>> = BTreeMap::new();
    let mut removes: Vec<PathBuf> = Vec::new();
    let mut new_pins: BTreeMap<String, String> = BTreeMap::new();
    let mut notes = Vec::new();
    for (job, results) in st.jobs.iter().zip(&st.results) {
        let dropped: Vec<&str> = results
            .iter()
            .filter(|r| matches!(r.status, Status::Upstreamed | Status::Skipped))
            .map(|r| r.patch.as_str())
            .collect();
        let mut any = !dropped.is_empty();
        for r in results {
            if !dropped.contains(&r.patch.as_str()) {
                let out = fs::read(out_path(dir, job, &r.patch))
                    .map_err(ioerr(format!("reading the rebased {}", r.patch)))?;
                let target = job.dir.join(&r.patch);
                if fs::read(&target).ok().as_deref() != Some(out.as_slice()) {
                    writes.insert(target, out);
                    any = true;
                }
            }
        }
        if !any {
            continue;
        }
        let series_file = job.dir.join("series");
        let series_text = fs::read_to_string(&series_file)
            .map_err(ioerr(format!("reading {}", series_file.display())))?;
        let mut new_series = String::new();
        for line in series_text.split_inclusive('\n') {
            let entry = line.split('#').next().unwrap_or("").trim();
            if !entry.is_empty() && dropped.contains(&entry) {
                continue;
            }
            new_series.push_str(line);
        }
        let mut kept = Vec::new();
        for p in &job.patches {
            if dropped.contains(&p.as_str()) {
                continue;
            }
            let path = job.dir.join(p);
            let bytes = match writes.get(&path) {
                Some(b) => b.clone(),
                None => fs::read(&path).map_err(ioerr(format!("reading {}", path.display())))?,
            };
            kept.push((p.as_str(), bytes));
        }
        let sums = Series::sums_text(kept.iter().map(|(n, b)| (*n, b.as_slice())));
        if new_series != series_text {
            writes.insert(series_file, new_series.into_bytes());
        }
        writes.insert(job.dir.join("SHA256SUMS"), sums.clone().into_bytes());
        new_pins.insert(job.name.clone(), sha256_hex(sums.as_bytes()));
        removes.extend(dropped.iter().map(|p| job.dir.join(p)));
    }

    // Pins: the [[series]] sha256 where it lives, and a per-tag recipe's own pins.
    let mut pin_files: Vec<PathBuf> = st.jobs.iter().map(|j| j.pin_file.clone()).collect();
    pin_files.push(st.recipe.clone());
    pin_files.dedup();
    let mut seen = Vec::new();
    for file in pin_files {
        if seen.contains(&file) {
            continue;
        }
        seen.push(file.clone());
        let text =
            fs::read_to_string(&file).map_err(ioerr(format!("reading {}", file.display())))?;
        let raw: RawRecipe = toml::from_str(&text)
            .map_err(|e| RebaseError::Usage(format!("{}: {e}", file.display())))?;
        let mut edits = Vec::new();
        if let Some(list) = &raw.series {
            for s in list.get_ref() {
                if let Some(h) = new_pins.get(s.name.get_ref()) {
                    if st
                        .jobs
                        .iter()
                        .any(|j| &j.name == s.name.get_ref() && j.pin_file == file)
                        && s.sha256.get_ref() != h
                    {
                        set_string(&text, s.sha256.span(), h, &mut edits);
                    }
                }
                let rebased = st
                    .jobs
                    .iter()
                    .any(|j| &j.name == s.name.get_ref() && j.pin_file == file);
                if let (true, Some(r), Ok(v)) =
                    (rebased, &s.tags, st.onto.parse::<crate::version::Version>())
                {
                    if let Some(to) = &r.get_ref().to {
                        let before = to
                            .get_ref()
                            .parse::<crate::version::Version>()
                            .is_ok_and(|t| v > t);
                        if before && file == st.recipe {
                            set_string(&text, to.span(), &st.onto, &mut edits);
                            notes.push(format!(
                                "{}: series `{}` now covers tags up to {}",
                                file.display(),
                                s.name.get_ref(),
                                st.onto
                            ));
                        } else if before {
                            notes.push(format!(
                                "{}: series `{}` is still pinned for tags {}–{}, which leaves out {}: set its `tags` by hand (the template may give the neighbouring tags another series)",
                                file.display(),
                                s.name.get_ref(),
                                r.get_ref().from.as_ref().map(|f| f.get_ref().as_str()).unwrap_or("any"),
                                to.get_ref(),
                                st.onto
                            ));
                        }
                    }
                }
            }
        }
        if file == st.recipe && !st.era.changed {
            if let Some(o) = &raw.ollama {
                if let Some(t) = &o.tag {
                    if t.get_ref() != &st.onto {
                        set_string(&text, t.span(), &st.onto, &mut edits);
                    }
                }
                if let Some(c) = &o.commit {
                    if c.get_ref() != &st.onto_commit {
                        set_string(&text, c.span(), &st.onto_commit, &mut edits);
                    }
                }
            }
            if let Some(l) = &raw.llamacpp {
                match (&l.commit, &st.new_llama_commit) {
                    (Some(c), Some(new)) if c.get_ref() != new => {
                        set_string(&text, c.span(), new, &mut edits)
                    }
                    (Some(_), None) if st.onto_commit != st.era.from.commit => notes.push(format!(
                        "{}: [llamacpp] commit still names the old pin: no llama.cpp mirror given has the pin of {} (pass --mirror llama.cpp=PATH, or rerun `recipe new --ollama {}`)",
                        file.display(),
                        st.onto,
                        st.onto
                    )),
                    _ => {}
                }
                if let Some(v) = &l.version {
                    match &st.new_llama_version {
                        Some(new) if v.get_ref() != new => set_string(&text, v.span(), new, &mut edits),
                        None => notes.push(format!(
                            "{}: [llamacpp] version could not be worked out for {} (no llama.cpp mirror has its pin): check it by hand",
                            file.display(),
                            st.onto
                        )),
                        _ => {}
                    }
                }
            }
        } else if file == st.recipe && st.era.changed {
            notes.push(format!(
                "{} still pins {} (era {}): the series now fits {} (era {}); make its recipe with `ollama-vulkan recipe new --ollama {}`",
                file.display(),
                st.era.from.tag,
                st.era.from.era,
                st.onto,
                st.era.to.era,
                st.onto
            ));
        }
        if file != st.recipe && !edits.is_empty() {
            notes.push(format!(
                "{} is the era template: its pin now names the rebased series, which every recipe of the template shares; tags of the template before {} may no longer apply (check with `ollama-vulkan check-patches --tags FROM..TO`)",
                file.display(),
                st.onto
            ));
        }
        if !edits.is_empty() {
            let new = apply_edits(&text, edits);
            if new != text {
                writes.insert(file.clone(), new.into_bytes());
            }
        }
    }

    // Journal first: a run killed while writing patches/ and recipes/ leaves files that
    // are neither the originals nor the result; `--continue` replays the journal.
    let mut journal = Journal {
        writes: Vec::new(),
        removes,
        notes,
    };
    for (i, (path, bytes)) in writes.iter().enumerate() {
        let staged = dir.join("finish").join(format!("{i:04}"));
        write_scratch(&staged, bytes).map_err(ioerr(format!("writing {}", staged.display())))?;
        journal.writes.push((path.clone(), staged));
    }
    let p = dir.join(FINISH);
    write_scratch(
        &p,
        &serde_json::to_vec_pretty(&journal).expect("journal serialises"),
    )
    .map_err(ioerr(format!("writing {}", p.display())))?;
    crate::killpoint::hit("rebase.journal-written");
    apply_journal(dir, &st, journal)
}

/// The files `finish` writes, staged under the state dir before any is written.
#[derive(Serialize, Deserialize)]
pub(super) struct Journal {
    /// (target, staged copy)
    pub(super) writes: Vec<(PathBuf, PathBuf)>,
    pub(super) removes: Vec<PathBuf>,
    pub(super) notes: Vec<String>,
}

pub(super) const FINISH: &str = "finish.json";

pub(super) fn replay_finish(dir: &Path, st: &State) -> Result<RebaseReport, RebaseError> {
    let p = dir.join(FINISH);
    let bytes = fs::read(&p).map_err(ioerr(format!("reading {}", p.display())))?;
    let journal: Journal = serde_json::from_slice(&bytes).map_err(|e| {
        RebaseError::Usage(format!(
            "{}: not a rebase journal ({e})\n  help: --abort restores the series",
            p.display()
        ))
    })?;
    apply_journal(dir, st, journal)
}

/// Writes the journal's files (again: each write is whole, so replaying is safe), then
/// drops the state: state.json first, so a kill while removing the rest leaves no rebase
/// in progress.
pub(super) fn apply_journal(
    dir: &Path,
    st: &State,
    j: Journal,
) -> Result<RebaseReport, RebaseError> {
    for (path, staged) in &j.writes {
        let bytes = fs::read(staged).map_err(ioerr(format!("reading {}", staged.display())))?;
        crate::fsutil::write_atomic(path, &bytes)
            .map_err(ioerr(format!("writing {}", path.display())))?;
        crate::killpoint::hit("rebase.finish-written");
    }
    for p in &j.removes {
        match fs::remove_file(p) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                return Err(ioerr(format!("removing {}", p.display()))(e))
            }
            _ => {}
        }
    }
    clear_temps(st);
    let mut rep = report_of(
        st,
        Finish::Done {
            written: j.writes.into_iter().map(|(p, _)| p).collect(),
            removed: j.removes,
        },
    );
    rep.notes = j.notes;
    remove_state(dir)?;
    Ok(rep)
}
