//! `ci`: every new upstream tag through era classification, its recipe and a patch
//! check; a row per tag, and the state file moved to the highest tag handled.

use std::path::PathBuf;
use std::time::Instant;

use ollama_vulkan::ci::{self, CiError, Selection, State};
use ollama_vulkan::error::{Error, Kind};
use ollama_vulkan::patch::prepare::{prepare, PrepareError, PrepareOptions};
use ollama_vulkan::patch::report::SeriesRun;
use ollama_vulkan::project::Project;
use ollama_vulkan::recipe::era::Era;
use ollama_vulkan::recipe::model::Recipe;
use ollama_vulkan::recipe::new::{self, NewError, DEFAULT_OLLAMA_URL};
use ollama_vulkan::source::{Mirrors, RepoName, Want};
use ollama_vulkan::version::Version;
use serde::Serialize;

use super::{emit, Human, Report, Status};
use crate::cli::{CiArgs, Global, MatrixKind};

pub fn run(g: &Global, a: CiArgs) -> Result<Status, Error> {
    let project = g.project()?;
    let state_path = a
        .state
        .clone()
        .unwrap_or_else(|| project.work_dir().join("ci-state.json"));
    // Read (and so vetted) first: a bad state file stops the run before any work.
    let old = State::load(&state_path)?;
    let sel = match (&a.tags, &a.since, &old) {
        (Some(r), _, _) => Selection::Range(r),
        (None, Some(s), _) => Selection::Since(
            s.parse::<Version>()
                .map_err(|e| CiError::Usage(format!("--since: {e}")))?,
        ),
        (None, None, Some((_, v))) => Selection::Since(v.clone()),
        (None, None, None) => return Err(CiError::NoStart { path: state_path }.into()),
    };
    let templates = new::load_templates(&project)?;
    let url = templates
        .first()
        .map(|t| t.ollama.url.clone())
        .unwrap_or_else(|| DEFAULT_OLLAMA_URL.to_string());
    let mirrors = g.mirrors()?;
    let repos = mirrors.open(RepoName::Ollama, Some(&url), &[Want::Everything])?;
    let all = ollama_vulkan::patch::check::ordered_tags(&repos[0]);
    let tags = ci::select(&all, &sel, a.include_rc)?;

    if let Some(MatrixKind::Github) = a.matrix {
        return matrix(&mirrors, &url, &tags, &templates);
    }

    let rows: Vec<TagRun> = tags
        .iter()
        .map(|t| run_tag(&project, &mirrors, t))
        .collect();
    let highest = ci::advance(old.as_ref().map(|(_, v)| v), &tags);
    // Only after the run: a run that errored out above leaves the state as it was.
    if let Some(h) = &highest {
        let new = State::new(h);
        if old.as_ref().map(|(s, _)| s) != Some(&new) {
            new.save(&state_path)?;
        }
    }
    let failed = rows.iter().any(|r| r.status == Outcome::Failed);
    let report = CiReport {
        ok: !failed,
        state: state_path,
        highest: highest.map(|v| v.to_string()),
        tags: rows,
    };
    emit(&report, g.format());
    Ok(Status::ok_or(!failed, Kind::Failure))
}

/// How a tag, or one stage of it, ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
enum Outcome {
    Ok,
    Failed,
    /// No Vulkan path for this era or tag: said with the reason, not a failure.
    Skipped,
}

impl Outcome {
    fn word(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::Failed => "FAILED",
            Outcome::Skipped => "skipped",
        }
    }
}

#[derive(Debug, Serialize)]
struct StageRun {
    stage: &'static str,
    status: Outcome,
    seconds: f64,
}

#[derive(Debug, Serialize)]
struct TagRun {
    tag: String,
    era: Option<Era>,
    recipe: Option<PathBuf>,
    status: Outcome,
    reason: Option<String>,
    stages: Vec<StageRun>,
    /// Set by the image stage; `ci` does not build images yet.
    image_digest: Option<String>,
    /// The patch check's per-patch report (with the hunk that failed).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    series: Vec<SeriesRun>,
}

impl TagRun {
    fn stage(&mut self, stage: &'static str, status: Outcome, start: Instant) {
        self.stages.push(StageRun {
            stage,
            status,
            seconds: start.elapsed().as_secs_f64(),
        });
        self.status = status;
    }
}

/// One tag's stages; a stage that does not end `ok` ends the tag there.
fn run_tag(project: &Project, mirrors: &Mirrors, tag: &str) -> TagRun {
    let mut row = TagRun {
        tag: tag.to_string(),
        era: None,
        recipe: None,
        status: Outcome::Ok,
        reason: None,
        stages: Vec::new(),
        image_digest: None,
        series: Vec::new(),
    };
    let start = Instant::now();
    let req = new::NewRequest { tag, output: None };
    match new::new_recipe(project, mirrors, &req) {
        Ok(out) => {
            row.era = Some(out.era);
            row.recipe = Some(out.recipe_path);
            row.stage("recipe", Outcome::Ok, start);
        }
        Err(NewError::Unsupported { era, why, .. }) => {
            row.era = Some(era);
            row.reason = Some(why);
            row.stage("recipe", Outcome::Skipped, start);
            return row;
        }
        Err(e) => {
            row.reason = Some(e.to_string());
            row.stage("recipe", Outcome::Failed, start);
            return row;
        }
    }

    let start = Instant::now();
    let recipe = row.recipe.clone().unwrap_or_default();
    let checked = ollama_vulkan::recipe::load(&recipe, project)
        .map_err(Error::Recipe)
        .and_then(|r: Recipe| {
            let opts = PrepareOptions {
                fuzz: None,
                check: true,
            };
            // --check reads git objects only: the directory is never written.
            let dest = project.work_dir().join("builds");
            match prepare(&r, mirrors, &dest, opts) {
                Ok(p) => Ok(p.series),
                Err(PrepareError::Failed { runs, .. }) => Ok(runs),
                Err(e) => Err(e.into()),
            }
        });
    match checked {
        Ok(runs) => {
            let failing: Vec<String> = runs
                .iter()
                .flat_map(|s| {
                    s.patches
                        .iter()
                        .filter(|p| !p.status.applies())
                        .map(move |p| format!("{}/{}", s.series, p.patch))
                })
                .collect();
            row.series = runs;
            if failing.is_empty() {
                row.stage("check", Outcome::Ok, start);
            } else {
                row.reason = Some(format!(
                    "patches do not apply: {} (rebase-patches, or refresh them)",
                    failing.join(", ")
                ));
                row.stage("check", Outcome::Failed, start);
            }
        }
        Err(e) => {
            row.reason = Some(e.to_string());
            row.stage("check", Outcome::Failed, start);
        }
    }
    row
}

#[derive(Serialize)]
struct CiReport {
    ok: bool,
    state: PathBuf,
    /// The state file's tag after this run.
    highest: Option<String>,
    tags: Vec<TagRun>,
}

impl Report for CiReport {
    fn human(&self, h: &mut Human) {
        if self.tags.is_empty() {
            h.outln(format!(
                "no new tags (state {}: {})",
                self.state.display(),
                self.highest.as_deref().unwrap_or("none")
            ));
            return;
        }
        h.outln(format!(
            "{:<16} {:<4} {:<8} {:<8} {:<8} REASON",
            "TAG", "ERA", "RECIPE", "CHECK", "STATUS"
        ));
        for r in &self.tags {
            let stage = |name: &str| {
                r.stages
                    .iter()
                    .find(|s| s.stage == name)
                    .map(|s| s.status.word())
                    .unwrap_or("-")
            };
            h.outln(format!(
                "{:<16} {:<4} {:<8} {:<8} {:<8} {}",
                r.tag,
                r.era.map(|e| e.label()).unwrap_or("?"),
                stage("recipe"),
                stage("check"),
                r.status.word(),
                // The first line: the whole message is in --json.
                r.reason
                    .as_deref()
                    .and_then(|s| s.lines().next())
                    .unwrap_or("")
            ));
        }
        let count = |o: Outcome| self.tags.iter().filter(|r| r.status == o).count();
        h.outln(format!(
            "{} tags: {} ok, {} failed, {} skipped; state {}: {}",
            self.tags.len(),
            count(Outcome::Ok),
            count(Outcome::Failed),
            count(Outcome::Skipped),
            self.state.display(),
            self.highest.as_deref().unwrap_or("none")
        ));
    }
}

#[derive(Serialize)]
struct Matrix {
    include: Vec<MatrixJob>,
}

#[derive(Serialize)]
struct MatrixJob {
    tag: String,
    /// Absent for a tag whose layout is unknown: its job fails and says why.
    era: Option<Era>,
}

/// The tags worth a runner: those with a template whose range holds them, and those
/// whose era is unknown (a new layout must fail loudly, not vanish from the matrix).
fn matrix(
    mirrors: &Mirrors,
    url: &str,
    tags: &[String],
    templates: &[Recipe],
) -> Result<Status, Error> {
    let rows = new::survey_tags(mirrors, url, new::EraTags::Some(tags))?;
    let include = rows
        .into_iter()
        .filter(|r| match (r.era, r.tag.parse::<Version>()) {
            (Some(era), Ok(v)) => {
                r.vulkan_path
                    && templates
                        .iter()
                        .any(|t| t.era == era && t.tags.contains(&v))
            }
            _ => true,
        })
        .map(|r| MatrixJob {
            tag: r.tag,
            era: r.era,
        })
        .collect();
    // One line: GitHub reads it from $GITHUB_OUTPUT as `matrix=<json>`.
    println!(
        "{}",
        serde_json::to_string(&Matrix { include }).expect("matrix serialises")
    );
    Ok(Status::Success)
}
