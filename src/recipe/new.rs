//! `recipe new` (classify one tag and write its recipe) and `era` (classify many tags).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use git2::Oid;
use serde::Serialize;

use super::era::{classify, Classification, Era, EraError, LlamaPin};
use super::model::Recipe;
use crate::diag::Diagnostics;
use crate::project::Project;
use crate::source::git::{build_number, commit_for_build, find_commit, resolve_tag};
use crate::source::{Mirrors, Repo, RepoName, SourceError, Want};
use crate::version::Version;

pub const DEFAULT_OLLAMA_URL: &str = "https://github.com/ollama/ollama.git";
pub const DEFAULT_LLAMACPP_URL: &str = "https://github.com/ggml-org/llama.cpp.git";
pub const DEFAULT_VIRGLRENDERER_URL: &str =
    "https://gitlab.freedesktop.org/virgl/virglrenderer.git";

/// The upstream URL of a repository when no recipe names one.
pub fn default_url(repo: RepoName) -> &'static str {
    match repo {
        RepoName::Ollama => DEFAULT_OLLAMA_URL,
        RepoName::LlamaCpp => DEFAULT_LLAMACPP_URL,
        RepoName::Virglrenderer => DEFAULT_VIRGLRENDERER_URL,
        RepoName::Mesa => "https://deb.debian.org/debian",
    }
}

#[derive(Debug, thiserror::Error)]
pub enum NewError {
    #[error(transparent)]
    Source(#[from] SourceError),
    #[error(transparent)]
    Era(#[from] EraError),
    /// Exit code 3: a real tag with no Vulkan path.
    #[error("{tag} (era {era}) has no Vulkan path: {why}\n  help: {supported}")]
    Unsupported {
        tag: String,
        era: Era,
        why: String,
        supported: String,
    },
    #[error("template {name} is broken:\n{diags}")]
    Template { name: String, diags: Diagnostics },
    #[error("the generated recipe does not pass its own check (a bug in ollama-vulkan):\n{0}")]
    Generated(Diagnostics),
    #[error("-o {path}: {source}\n  help: pass a regular file or `-` (stdout)")]
    Refused {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("writing {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

impl crate::error::HasKind for NewError {
    fn kind(&self) -> crate::error::Kind {
        use crate::error::Kind;
        match self {
            NewError::Source(e) => e.kind(),
            NewError::Era(_) | NewError::Template { .. } | NewError::Refused { .. } => {
                Kind::BadInput
            }
            NewError::Unsupported { .. } => Kind::Unsupported,
            NewError::Generated(_) | NewError::Io { .. } => Kind::Failure,
        }
    }
}

/// What `recipe new --json` prints.
#[derive(Debug, Serialize)]
pub struct NewOutcome {
    pub tag: String,
    pub era: Era,
    pub ollama_commit: String,
    pub llamacpp_commit: Option<String>,
    pub llamacpp_version: Option<String>,
    pub template: String,
    pub recipe_path: PathBuf,
    pub notes: Vec<String>,
}

/// The era templates of a project, loaded (and so checked) once.
pub fn load_templates(project: &Project) -> Result<Vec<Recipe>, NewError> {
    project
        .templates()
        .into_iter()
        .map(|(name, path)| {
            super::load(&path, project).map_err(|diags| NewError::Template { name, diags })
        })
        .collect()
}

/// One line per template: which tags have a Vulkan path.
pub fn supported_summary(templates: &[Recipe]) -> String {
    let parts: Vec<String> = templates
        .iter()
        .map(|t| format!("era {} ({})", t.era, t.tags))
        .collect();
    format!("tags with a Vulkan path: {}", parts.join("; "))
}

/// "; nearest tags with a Vulkan path: vA (era X), vB (era Y)": the closest template range
/// end below `v` and the closest start above it.
fn nearest(templates: &[Recipe], v: &Version) -> String {
    let below = templates
        .iter()
        .filter_map(|t| t.tags.to.as_ref().filter(|e| *e < v).map(|e| (e, t.era)))
        .max_by(|a, b| a.0.cmp(b.0));
    let above = templates
        .iter()
        .filter_map(|t| t.tags.from.as_ref().filter(|s| *s > v).map(|s| (s, t.era)))
        .min_by(|a, b| a.0.cmp(b.0));
    let parts: Vec<String> = [below, above]
        .into_iter()
        .flatten()
        .map(|(t, era)| format!("{t} (era {era})"))
        .collect();
    if parts.is_empty() {
        String::new()
    } else {
        format!("; nearest tags with a Vulkan path: {}", parts.join(", "))
    }
}

/// Does the llama.cpp tree at `commit` contain a Vulkan backend?
fn pin_has_vulkan(repos: &[Repo], commit: &str) -> Option<bool> {
    let (i, oid) = find_commit(repos, commit)?;
    let tree = repos[i].git.find_commit(oid).ok()?.tree().ok()?;
    Some(
        [
            "ggml-vulkan.cpp",
            "ggml/src/ggml-vulkan.cpp",
            "ggml/src/ggml-vulkan",
        ]
        .iter()
        .any(|p| tree.get_path(Path::new(p)).is_ok()),
    )
}

/// Resolves a pin to a full commit and its build number where the mirrors allow.
fn resolve_pin(
    pin: &LlamaPin,
    repos: &[Repo],
    notes: &mut Vec<String>,
) -> (Option<String>, Option<String>) {
    let count = |oid: Oid| -> Option<String> {
        repos
            .iter()
            .find_map(|r| {
                build_number(&r.git, oid)
                    .ok()
                    .filter(|_| r.git.find_commit(oid).is_ok())
            })
            .map(|n| format!("b{n}"))
    };
    match pin {
        LlamaPin::Version { tag } => {
            match commit_for_build(repos, tag) {
                Ok(Some(oid)) => (Some(oid.to_string()), Some(tag.clone())),
                _ => {
                    notes.push(format!("llama.cpp {tag}: no mirror has this tag or a commit with that build number"));
                    (None, Some(tag.clone()))
                }
            }
        }
        LlamaPin::None => (None, None),
        other => {
            let rev = other.rev().unwrap_or_default();
            match find_commit(repos, rev) {
                Some((_, oid)) => (Some(oid.to_string()), count(oid)),
                None => {
                    if !repos.is_empty() {
                        notes.push(format!(
                            "llama.cpp {rev}: not in the given llama.cpp mirrors"
                        ));
                    }
                    let full = (rev.len() == 40).then(|| rev.to_string());
                    (full, None)
                }
            }
        }
    }
}

pub struct NewRequest<'a> {
    pub tag: &'a str,
    pub output: Option<&'a Path>,
}

pub fn new_recipe(
    project: &Project,
    mirrors: &Mirrors,
    req: &NewRequest<'_>,
) -> Result<NewOutcome, NewError> {
    let templates = load_templates(project)?;
    let url = templates
        .first()
        .map(|t| t.ollama.url.as_str())
        .unwrap_or(DEFAULT_OLLAMA_URL);
    let ollama_repos = mirrors.open(
        RepoName::Ollama,
        Some(url),
        &[Want::Tag(req.tag.to_string())],
    )?;
    let repo = &ollama_repos[0];
    let oid = resolve_tag(repo, req.tag)?;
    let what = format!("{} ({})", req.tag, &oid.to_string()[..12]);
    let tree = repo
        .git
        .find_commit(oid)
        .and_then(|c| c.tree())
        .map_err(|source| SourceError::Git {
            what: what.clone(),
            source,
        })?;
    let cls = classify(&repo.git, &tree, &what)?;
    tracing::info!(tag = req.tag, era = %cls.era, evidence = ?cls.evidence, "classified");

    let unsupported = |why: String| NewError::Unsupported {
        tag: req.tag.to_string(),
        era: cls.era,
        why,
        supported: supported_summary(&templates),
    };
    if !cls.era.has_vulkan_path() {
        return Err(unsupported(cls.era.why_no_vulkan().to_string()));
    }
    let Some(template) = templates.iter().find(|t| t.era == cls.era) else {
        return Err(unsupported(format!(
            "this project has no template for era {}",
            cls.era
        )));
    };
    let template_name = template
        .path
        .file_stem()
        .unwrap_or_default()
        .to_string_lossy()
        .into_owned();

    // llama.cpp: explicit mirrors when given; the cached upstream only when the pin
    // cannot be written without it (era 5's bNNNN).
    let mut notes = Vec::new();
    let needs_llama = matches!(cls.llamacpp, LlamaPin::Version { .. });
    let llama_repos = if mirrors.has_explicit(RepoName::LlamaCpp) || needs_llama {
        let lurl = template
            .llamacpp
            .url
            .as_deref()
            .unwrap_or(super::new::DEFAULT_LLAMACPP_URL);
        let wants: Vec<Want> = match &cls.llamacpp {
            LlamaPin::Version { tag } => vec![Want::Tag(tag.clone())],
            _ => Vec::new(),
        };
        mirrors.open(RepoName::LlamaCpp, Some(lurl), &wants)?
    } else {
        Vec::new()
    };
    if let (Some(rev), Era::OneA | Era::OneB) = (cls.llamacpp.rev(), cls.era) {
        if pin_has_vulkan(&llama_repos, rev) == Some(false) {
            return Err(unsupported(format!(
                "its llama.cpp pin {} predates the Vulkan backend (llama.cpp b1996, first pinned by v0.1.23)",
                &rev[..rev.len().min(10)]
            )));
        }
    }
    let version: Version = req.tag.parse().map_err(|e: String| unsupported(e))?;
    if !template.tags.contains(&version) {
        let why = match template.unsupported.iter().find(|g| g.tags.contains(&version)) {
            Some(g) => format!(
                "template {template_name} covers {} only and leaves out {}: {}",
                template.tags, g.tags, g.why
            ),
            None => format!(
                "template {template_name} covers {} only; the Vulkan path is not verified for {} (a tag the template's range leaves out)",
                template.tags, req.tag
            ),
        };
        return Err(unsupported(format!(
            "{why}{}",
            nearest(&templates, &version)
        )));
    }
    let (llama_commit, llama_version) = resolve_pin(&cls.llamacpp, &llama_repos, &mut notes);

    let text = render(
        req.tag,
        &oid.to_string(),
        &cls,
        &template_name,
        llama_commit.as_deref(),
        llama_version.as_deref(),
    );
    let path = match req.output {
        Some(p) => p.to_path_buf(),
        None => project
            .work_dir()
            .join("recipes")
            .join(format!("ollama-{}.toml", req.tag)),
    };
    let to_stdout = path.as_os_str() == "-" || path.as_os_str() == "/dev/stdout";
    // A symlink, FIFO or device at the target is refused, a regular file keeps its mode.
    let mode = if to_stdout {
        0o644
    } else {
        crate::fsutil::target_mode(&path).map_err(|source| NewError::Refused {
            path: path.clone(),
            source,
        })?
    };
    // Check the text before it lands, through the same loader users run.
    let dir = if to_stdout {
        std::env::temp_dir()
    } else {
        path.parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."))
            .to_path_buf()
    };
    std::fs::create_dir_all(&dir).map_err(|source| NewError::Io {
        path: dir.to_path_buf(),
        source,
    })?;
    // A hidden directory beside the target holds the probe, so a killed run leaves no
    // `*.toml` behind, and the probe's own name is a valid recipe name.
    let probe_dir = tempfile::Builder::new()
        .prefix(".recipe-new-")
        .tempdir_in(&dir)
        .map_err(|source| NewError::Io {
            path: dir.to_path_buf(),
            source,
        })?;
    let probe = tempfile::Builder::new()
        .prefix("probe-")
        .suffix(".toml")
        .tempfile_in(probe_dir.path())
        .map_err(|source| NewError::Io {
            path: dir.to_path_buf(),
            source,
        })?;
    std::fs::write(probe.path(), &text).map_err(|source| NewError::Io {
        path: probe.path().to_path_buf(),
        source,
    })?;
    super::load(probe.path(), project).map_err(NewError::Generated)?;
    if to_stdout {
        use std::io::Write;
        let mut out = std::io::stdout().lock();
        out.write_all(text.as_bytes())
            .and_then(|_| out.flush())
            .map_err(|source| NewError::Io {
                path: path.clone(),
                source,
            })?;
    } else {
        use std::os::unix::fs::PermissionsExt;
        probe
            .as_file()
            .set_permissions(std::fs::Permissions::from_mode(mode))
            .map_err(|source| NewError::Io {
                path: probe.path().to_path_buf(),
                source,
            })?;
        probe.persist(&path).map_err(|e| NewError::Io {
            path: path.clone(),
            source: e.error,
        })?;
    }

    Ok(NewOutcome {
        tag: req.tag.to_string(),
        era: cls.era,
        ollama_commit: oid.to_string(),
        llamacpp_commit: llama_commit,
        llamacpp_version: llama_version,
        template: template_name,
        recipe_path: path,
        notes,
    })
}

/// The recipe text: a few lines over the template. Stable output (no dates).
fn render(
    tag: &str,
    commit: &str,
    cls: &Classification,
    template: &str,
    llama_commit: Option<&str>,
    llama_version: Option<&str>,
) -> String {
    let mut s = String::new();
    s.push_str(&format!(
        "# Generated by `ollama-vulkan recipe new --ollama {tag}`.\n"
    ));
    s.push_str(&format!(
        "# Era {} from: {}.\n",
        cls.era,
        cls.evidence.join(", ")
    ));
    let recorded = match &cls.llamacpp {
        LlamaPin::Submodule { path, commit } => format!("submodule {path} at {commit}"),
        LlamaPin::Vendoring { commit } => format!("llama/vendoring LLAMACPP_BASE_COMMIT={commit}"),
        LlamaPin::FetchHead { rev } => format!("Makefile.sync FETCH_HEAD={rev}"),
        LlamaPin::Version { tag } => format!("LLAMA_CPP_VERSION {tag}"),
        LlamaPin::None => "no llama.cpp revision recorded".into(),
    };
    s.push_str(&format!(
        "# llama.cpp as the tree records it: {recorded}.\n"
    ));
    s.push_str(&format!(
        "extends = \"{template}\"\nera = \"{}\"\n\n",
        cls.era
    ));
    s.push_str(&format!(
        "[ollama]\ntag = \"{tag}\"\ncommit = \"{commit}\"\n"
    ));
    if llama_commit.is_some() || llama_version.is_some() {
        s.push_str("\n[llamacpp]\n");
        if let Some(c) = llama_commit {
            s.push_str(&format!("commit = \"{c}\"\n"));
        }
        if let Some(v) = llama_version {
            s.push_str(&format!("version = \"{v}\"\n"));
        }
    }
    s
}

/// One row of the `era` table.
#[derive(Debug, Serialize)]
pub struct EraRow {
    pub tag: String,
    pub era: Option<Era>,
    pub ollama_commit: String,
    /// The revision as the tree records it (gitlink, FETCH_HEAD, bNNNN).
    pub llamacpp_pin: Option<String>,
    pub llamacpp_commit: Option<String>,
    pub llamacpp_version: Option<String>,
    pub vulkan_path: bool,
    pub error: Option<String>,
}

/// `era`'s input: every tag of the Ollama repository, or these.
pub enum EraTags<'a> {
    All,
    Some(&'a [String]),
}

/// Opens the Ollama repository (and llama.cpp mirrors given explicitly, to resolve pins)
/// and classifies the tags in release order.
pub fn survey_tags(
    mirrors: &Mirrors,
    ollama_url: &str,
    tags: EraTags,
) -> Result<Vec<EraRow>, SourceError> {
    let wants: Vec<Want> = match tags {
        EraTags::All => vec![Want::Everything],
        EraTags::Some(t) => t.iter().map(|t| Want::Tag(t.clone())).collect(),
    };
    let repos = mirrors.open(RepoName::Ollama, Some(ollama_url), &wants)?;
    let llama = if mirrors.has_explicit(RepoName::LlamaCpp) {
        mirrors.open(RepoName::LlamaCpp, None, &[])?
    } else {
        Vec::new()
    };
    let mut tags = match tags {
        EraTags::All => repos[0]
            .git
            .tag_names(None)
            .map_err(|source| SourceError::Git {
                what: "listing tags".into(),
                source,
            })?
            .iter()
            .flatten()
            .map(str::to_string)
            .collect(),
        EraTags::Some(t) => t.to_vec(),
    };
    crate::version::sort_tags(&mut tags);
    Ok(survey(&repos[0], &tags, &llama))
}

/// Classifies tags; with llama.cpp mirrors, also resolves each distinct pin once.
pub fn survey(repo: &Repo, tags: &[String], llama: &[Repo]) -> Vec<EraRow> {
    let mut pins: HashMap<String, (Option<String>, Option<String>)> = HashMap::new();
    tags.iter()
        .map(|tag| {
            let mut row = EraRow {
                tag: tag.clone(),
                era: None,
                ollama_commit: String::new(),
                llamacpp_pin: None,
                llamacpp_commit: None,
                llamacpp_version: None,
                vulkan_path: false,
                error: None,
            };
            let oid = match resolve_tag(repo, tag) {
                Ok(o) => o,
                Err(e) => {
                    row.error = Some(e.to_string());
                    return row;
                }
            };
            row.ollama_commit = oid.to_string();
            let tree = match repo.git.find_commit(oid).and_then(|c| c.tree()) {
                Ok(t) => t,
                Err(e) => {
                    row.error = Some(e.to_string());
                    return row;
                }
            };
            match classify(&repo.git, &tree, tag) {
                Ok(c) => {
                    row.era = Some(c.era);
                    row.vulkan_path = c.era.has_vulkan_path();
                    row.llamacpp_pin = c.llamacpp.rev().map(str::to_string);
                    if !llama.is_empty() {
                        if let Some(rev) = row.llamacpp_pin.clone() {
                            let (commit, version) = pins
                                .entry(rev)
                                .or_insert_with(|| resolve_pin(&c.llamacpp, llama, &mut Vec::new()))
                                .clone();
                            row.llamacpp_commit = commit;
                            row.llamacpp_version = version;
                            if let (Era::OneA, Some(c)) = (c.era, &row.llamacpp_commit) {
                                row.vulkan_path = pin_has_vulkan(llama, c).unwrap_or(true);
                            }
                        }
                    }
                }
                Err(e) => row.error = Some(e.to_string()),
            }
            row
        })
        .collect()
}
