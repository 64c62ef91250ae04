//! Starting a rebase: the repositories, the era verdict (is the new tag the same kind of
//! tree?), and the jobs (one per series) with their old and new bases.

use super::*;

pub(super) struct Repos {
    pub(super) ollama: Vec<Repo>,
    pub(super) llama: Vec<Repo>,
}

pub(super) fn open_repos(mirrors: &Mirrors, jobs: &[Job]) -> Result<Repos, RebaseError> {
    let ollama = mirrors.open(
        RepoName::Ollama,
        Some(crate::recipe::new::DEFAULT_OLLAMA_URL),
        &[],
    )?;
    let llama = if jobs.iter().any(|j| j.repo == RepoName::LlamaCpp) {
        mirrors.open(
            RepoName::LlamaCpp,
            Some(crate::recipe::new::DEFAULT_LLAMACPP_URL),
            &[],
        )?
    } else {
        Vec::new()
    };
    Ok(Repos { ollama, llama })
}

pub(super) fn scratch(dir: &Path, repos: &Repos) -> Result<Scratch, RebaseError> {
    let alts: Vec<PathBuf> = repos
        .ollama
        .iter()
        .chain(repos.llama.iter())
        .map(|r| r.git.path().join("objects"))
        .map(|p| fs::canonicalize(&p).unwrap_or(p))
        .collect();
    Scratch::open_or_init(&dir.join("tree"), &alts).map_err(gerr(format!(
        "making the rebase work tree {}",
        dir.join("tree").display()
    )))
}

/// How the tree switches Vulkan on, read from its files.
pub(super) fn vulkan_switch(
    repo: &git2::Repository,
    tree: &git2::Tree<'_>,
    era: Era,
) -> Option<String> {
    let blob = |p: &str| -> Option<Vec<u8>> {
        let e = tree.get_path(Path::new(p)).ok()?;
        repo.find_blob(e.id()).ok().map(|b| b.content().to_vec())
    };
    let has = |h: &[u8], n: &[u8]| h.windows(n.len()).any(|w| w == n);
    match era {
        Era::OneA | Era::OneB => {
            let gen = blob("llm/generate/gen_linux.sh")?;
            if has(&gen, b"-DGGML_") {
                Some("GGML_VULKAN".into())
            } else if has(&gen, b"-DLLAMA_") {
                Some("LLAMA_VULKAN".into())
            } else {
                None
            }
        }
        Era::Three => Some(
            "our CMake preset `Vulkan` over ggml-vulkan placed from Makefile.sync's llama.cpp"
                .into(),
        ),
        Era::Four => Some("upstream CMake preset `Vulkan`".into()),
        Era::Five => Some("GGML_VULKAN (llama-server presets)".into()),
        _ => None,
    }
}

pub(super) fn era_side(
    repo: &Repo,
    tag: &str,
    commit: Oid,
) -> Result<(EraSide, LlamaPin), RebaseError> {
    let what = format!("{tag} ({})", &commit.to_string()[..12]);
    let tree = repo
        .git
        .find_commit(commit)
        .and_then(|c| c.tree())
        .map_err(gerr(format!("reading {what}")))?;
    let cls = classify(&repo.git, &tree, &what)?;
    Ok((
        EraSide {
            tag: tag.to_string(),
            commit: commit.to_string(),
            era: cls.era,
            vulkan_switch: vulkan_switch(&repo.git, &tree, cls.era),
            evidence: cls.evidence.clone(),
        },
        cls.llamacpp,
    ))
}

pub(super) fn verdict(from: EraSide, to: EraSide, recipe: &Recipe) -> EraVerdict {
    let mut reasons = Vec::new();
    if from.era != to.era {
        let mut r = format!(
            "{} is era {} but {} is era {} (the layout and the build differ: a series made for one does not build in the other)",
            from.tag, from.era, to.tag, to.era
        );
        if !to.era.has_vulkan_path() {
            r.push_str(&format!("; {}", to.era.why_no_vulkan()));
        }
        if matches!(from.era, Era::OneA | Era::OneB) && !matches!(to.era, Era::OneA | Era::OneB) {
            r.push_str(&format!(
                "; llm/generate/gen_linux.sh is gone at {}",
                to.tag
            ));
        }
        if to.era == Era::Four && from.era < Era::Four {
            r.push_str(&format!(
                "; Vulkan is upstream at {} (era 4, from v0.12.6): the series may shrink to what upstream lacks",
                to.tag
            ));
        }
        reasons.push(r);
    } else if from.vulkan_switch != to.vulkan_switch {
        reasons.push(format!(
            "the Vulkan switch is {} at {} but {} at {} (llama.cpp renamed its LLAMA_* options to GGML_*): a series that sets the old name applies but builds without Vulkan",
            from.vulkan_switch.as_deref().unwrap_or("none"),
            from.tag,
            to.vulkan_switch.as_deref().unwrap_or("none"),
            to.tag
        ));
    }
    if let Ok(v) = to.tag.parse::<crate::version::Version>() {
        for s in &recipe.series {
            if !s.tags.contains(&v) && s.tags != Default::default() {
                reasons.push(format!(
                    "series `{}` is pinned for tags {} and {} is outside that range",
                    s.name, s.tags, to.tag
                ));
            }
        }
    }
    EraVerdict {
        changed: !reasons.is_empty(),
        from,
        to,
        reasons,
    }
}

pub(super) fn start(
    project: &Project,
    mirrors: &Mirrors,
    recipe_path: &Path,
    dir: &Path,
    onto: &str,
    allow_era_change: bool,
) -> Result<RebaseReport, RebaseError> {
    let recipe = crate::recipe::load(recipe_path, project).map_err(RebaseError::Recipe)?;
    let (Some(tag), Some(commit)) = (recipe.ollama.tag.clone(), recipe.ollama.commit.clone())
    else {
        return Err(RebaseError::Usage(format!(
            "{} pins no Ollama tag and commit (it is an era template); rebase-patches needs a per-tag recipe: the pin is the old base\n  help: make one with `ollama-vulkan recipe new --ollama TAG` for the tag the series applies to now",
            recipe_path.display()
        )));
    };
    if recipe.series.is_empty() {
        return Err(RebaseError::Usage(format!(
            "{} has no patch series for {tag}: nothing to rebase",
            recipe_path.display()
        )));
    }
    let ollama = mirrors.open(
        RepoName::Ollama,
        Some(&recipe.ollama.url),
        &[Want::Tag(tag.clone()), Want::Tag(onto.to_string())],
    )?;
    let orepo = &ollama[0];
    let from_oid = Oid::from_str(&commit).map_err(gerr(format!("the recipe's commit {commit}")))?;
    if orepo.git.find_commit(from_oid).is_err() {
        return Err(SourceError::CommitNotFound {
            name: RepoName::Ollama,
            commit,
            path: orepo.path.clone(),
            hint: "use the mirror the recipe was made from".into(),
        }
        .into());
    }
    let onto_oid = resolve_tag(orepo, onto)?;
    let (from_side, _) = era_side(orepo, &tag, from_oid)?;
    let (to_side, to_pin) = era_side(orepo, onto, onto_oid)?;
    let era = verdict(from_side, to_side, &recipe);
    if era.changed && !allow_era_change {
        return Ok(RebaseReport {
            recipe: recipe_path.to_path_buf(),
            onto: onto.to_string(),
            onto_commit: onto_oid.to_string(),
            era: Some(era),
            series: Vec::new(),
            outcome: Finish::EraChange,
            notes: vec![format!(
                "to carry the series anyway (and port it by hand), pass --allow-era-change; for a new era, start from `ollama-vulkan recipe new --ollama {onto}`"
            )],
        });
    }

    // llama.cpp: old base is the recipe's pin, new base the pin recorded at TAG.
    let needs_llama = recipe.series.iter().any(|s| s.repo == RepoName::LlamaCpp);
    let llama = if needs_llama || mirrors.has_explicit(RepoName::LlamaCpp) {
        let wants: Vec<Want> = match &to_pin {
            LlamaPin::Version { tag } => vec![Want::Tag(tag.clone())],
            p => p
                .rev()
                .map(|r| vec![Want::Commit(r.to_string())])
                .unwrap_or_default(),
        };
        match mirrors.open(
            RepoName::LlamaCpp,
            Some(
                recipe
                    .llamacpp
                    .url
                    .as_deref()
                    .unwrap_or(crate::recipe::new::DEFAULT_LLAMACPP_URL),
            ),
            &wants,
        ) {
            Ok(r) => r,
            Err(e) if needs_llama => return Err(e.into()),
            Err(_) => Vec::new(),
        }
    } else {
        Vec::new()
    };
    let new_llama: Option<Oid> = match &to_pin {
        LlamaPin::Version { tag } => commit_for_build(&llama, tag).ok().flatten(),
        p => p
            .rev()
            .and_then(|r| find_commit(&llama, r))
            .map(|(_, o)| o)
            // A full commit id recorded in the tree is the pin even without a mirror.
            .or_else(|| {
                p.rev()
                    .filter(|r| r.len() == 40)
                    .and_then(|r| Oid::from_str(r).ok())
            }),
    };
    let new_llama_version = match &to_pin {
        LlamaPin::Version { tag } => Some(tag.clone()),
        _ => new_llama.and_then(|o| {
            llama.iter().find_map(|r| {
                r.git.find_commit(o).ok()?;
                crate::source::git::build_number(&r.git, o)
                    .ok()
                    .map(|n| format!("b{n}"))
            })
        }),
    };

    let raw_recipe = fs::read_to_string(recipe_path)
        .ok()
        .and_then(|t| toml::from_str::<RawRecipe>(&t).ok());
    let pins_in_recipe = raw_recipe.as_ref().is_some_and(|r| r.series.is_some());
    let mut jobs = Vec::new();
    for s in &recipe.series {
        let series = Series::load(&s.dir)
            .map_err(|e| RebaseError::Usage(format!("series `{}`: {e}", s.name)))?;
        let (old_base, new_base) = match s.repo {
            RepoName::Ollama => (from_oid.to_string(), onto_oid.to_string()),
            RepoName::Virglrenderer | RepoName::Mesa => {
                return Err(RebaseError::Usage(format!(
                    "series `{}` targets {}: rebase-patches carries Ollama's series only",
                    s.name, s.repo
                )))
            }
            RepoName::LlamaCpp => {
                let old = recipe.llamacpp.commit.clone().ok_or_else(|| {
                    RebaseError::Usage(format!(
                        "series `{}` targets llama.cpp but {} pins no llama.cpp commit\n  help: add `[llamacpp] commit = \"...\"` (recipe new writes it when given a llama.cpp mirror)",
                        s.name,
                        recipe_path.display()
                    ))
                })?;
                let new = new_llama.ok_or_else(|| {
                    RebaseError::Usage(format!(
                        "series `{}` targets llama.cpp, and {onto} records llama.cpp {} which no llama.cpp mirror has\n  help: pass --mirror llama.cpp=PATH with a mirror holding it",
                        s.name,
                        to_pin.rev().unwrap_or("(no revision)")
                    ))
                })?;
                if find_commit(&llama, &old).is_none() {
                    return Err(SourceError::CommitNotFound {
                        name: RepoName::LlamaCpp,
                        commit: old,
                        path: llama.first().map(|r| r.path.clone()).unwrap_or_default(),
                        hint: "pass --mirror llama.cpp=PATH with a mirror holding the recipe's pin"
                            .into(),
                    }
                    .into());
                }
                (old, new.to_string())
            }
        };
        let pin_file = if pins_in_recipe {
            recipe_path.to_path_buf()
        } else {
            recipe
                .template
                .as_ref()
                .map(|t| t.path.clone())
                .unwrap_or_else(|| recipe_path.to_path_buf())
        };
        // Absolute: --continue may run from another directory.
        let pin_file = absolute(&pin_file);
        jobs.push(Job {
            name: s.name.clone(),
            repo: s.repo,
            dir: absolute(&s.dir),
            patches: series.patches.clone(),
            fuzz: s.fuzz,
            old_base,
            new_base,
            pin_file,
            sha256: s.sha256.clone(),
        });
    }

    // No state.json (checked by the caller): anything here is what a killed start or end
    // left (a scratch repo possibly without its alternates); start from nothing.
    if dir.exists() {
        fs::remove_dir_all(dir).map_err(ioerr(format!("removing the stale {}", dir.display())))?;
    }
    // Copies of every file the rebase may write, for --abort and the change check.
    fs::create_dir_all(dir).map_err(ioerr(format!("creating {}", dir.display())))?;
    let mut files: Vec<PathBuf> = vec![absolute(recipe_path)];
    for j in &jobs {
        if !files.contains(&j.pin_file) {
            files.push(j.pin_file.clone());
        }
        files.push(j.dir.join("series"));
        files.push(j.dir.join("SHA256SUMS"));
        files.extend(j.patches.iter().map(|p| j.dir.join(p)));
    }
    let mut originals = Vec::new();
    for (i, f) in files.iter().enumerate() {
        let copy = dir.join("orig").join(format!("{i:04}"));
        let bytes = fs::read(f).ok();
        if let Some(b) = &bytes {
            write_scratch(&copy, b).map_err(ioerr(format!("writing {}", copy.display())))?;
            crate::killpoint::hit("rebase.original-saved");
        }
        originals.push(Original {
            path: fs::canonicalize(f).unwrap_or_else(|_| f.clone()),
            sha256: bytes.as_deref().map(sha256_hex),
            copy,
        });
    }
    let st = State {
        recipe: absolute(recipe_path),
        onto: onto.to_string(),
        onto_commit: onto_oid.to_string(),
        era,
        allow_era_change,
        results: jobs.iter().map(|_| Vec::new()).collect(),
        jobs,
        cur: (0, 0),
        o_tree: None,
        p_tree: None,
        n_commit: None,
        pending: None,
        originals,
        new_llama_commit: new_llama.map(|o| o.to_string()),
        new_llama_version,
    };
    let repos = Repos { ollama, llama };
    let s = scratch(dir, &repos)?;
    save_state(dir, &st)?;
    crate::killpoint::hit("rebase.started");
    let res = drive(&s, dir, st);
    if res.is_err() {
        // A failure before any conflict leaves nothing behind.
        let _ = fs::remove_dir_all(dir);
    }
    res
}
