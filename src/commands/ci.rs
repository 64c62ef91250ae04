//! `ci`: every new upstream tag through era classification, its recipe and a patch
//! check (a rebase proposal when the check fails), then with `--build`/`--image` the
//! build, the smoke and the assembled image; a row per tag, and the state file moved to
//! the highest tag handled.

use std::path::{Path, PathBuf};
use std::time::Instant;

use ollama_vulkan::build::{build, builder::BuilderChoice, BuildRequest};
use ollama_vulkan::ci::propose::{propose, Proposal, ProposeRequest};
use ollama_vulkan::ci::{self, CiError, Selection, State};
use ollama_vulkan::error::{Error, Kind};
use ollama_vulkan::image::engine::Output;
use ollama_vulkan::image::Variant;
use ollama_vulkan::patch::report::SeriesRun;
use ollama_vulkan::project::Project;
use ollama_vulkan::recipe::era::Era;
use ollama_vulkan::recipe::model::Recipe;
use ollama_vulkan::recipe::new::{self, NewError, DEFAULT_OLLAMA_URL};
use ollama_vulkan::smoke::{has_gpu_device, smoke, SmokeRequest, SmokeTarget};
use ollama_vulkan::source::{Mirrors, RepoName, Want};
use ollama_vulkan::target::Arch;
use ollama_vulkan::version::Version;
use serde::Serialize;

use super::image::build_image;
use super::{build_dir, emit, Human, Report, Status};
use crate::cli::{CiArgs, Global, ImageOptions, MatrixKind};

/// What `ci` does after the check, and where its outputs go.
struct Stages {
    build: bool,
    image: bool,
    out: PathBuf,
    jobs: usize,
    builder: BuilderChoice,
}

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

    if let Some(kind) = a.matrix {
        return matrix(kind, &mirrors, &url, &tags, &templates);
    }
    let stages = Stages {
        build: a.build || a.image,
        image: a.image,
        out: a
            .out
            .clone()
            .unwrap_or_else(|| project.work_dir().join("ci")),
        jobs: super::jobs_or_cpus(a.jobs),
        builder: a.builder,
    };

    if stages.out.exists() && !stages.out.is_dir() {
        return Err(CiError::Usage(format!(
            "--out {}: not a directory\n  help: name a directory for the proposals and images (it is made if missing)",
            stages.out.display()
        ))
        .into());
    }

    let mut rows = Vec::new();
    for t in &tags {
        let row = run_tag(g, &project, &mirrors, &all, t, &stages);
        if !g.quiet && !g.json {
            eprintln!("  {t}: {}", row.status.word());
        }
        rows.push(row);
    }
    // `--since TAG` says TAG and older are done: the state starts there even when no
    // tag is newer yet (a first run at the newest release).
    let floor = match &sel {
        Selection::Since(v) => old.as_ref().map(|(_, o)| o.clone()).max(Some(v.clone())),
        Selection::Range(_) => old.as_ref().map(|(_, o)| o.clone()),
    };
    let highest = ci::advance(floor.as_ref(), &tags);
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
        stages: stages_run(&stages),
        tags: rows,
    };
    emit(&report, g.format());
    Ok(Status::ok_or(!failed, Kind::Failure))
}

fn stages_run(s: &Stages) -> Vec<&'static str> {
    let mut v = vec!["recipe", "check"];
    if s.build {
        v.extend(["build", "smoke"]);
    }
    if s.image {
        v.push("image");
    }
    v
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
    /// The dist `--build` made (or found cached).
    #[serde(skip_serializing_if = "Option::is_none")]
    dist: Option<PathBuf>,
    /// Tokens per second on Vulkan in the smoke.
    #[serde(skip_serializing_if = "Option::is_none")]
    smoke_tokens_per_s: Option<f64>,
    /// `--image`: the assembled archive and its manifest digest.
    #[serde(skip_serializing_if = "Option::is_none")]
    image: Option<PathBuf>,
    image_digest: Option<String>,
    /// The patch check's per-patch report (with the hunk that failed).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    series: Vec<SeriesRun>,
    /// A failed check's rebase attempt.
    #[serde(skip_serializing_if = "Option::is_none")]
    proposal: Option<Proposal>,
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

    fn fail(&mut self, stage: &'static str, start: Instant, why: String) {
        self.reason = Some(why);
        self.stage(stage, Outcome::Failed, start);
    }
}

/// One tag's stages; a stage that does not end `ok` ends the tag there.
fn run_tag(
    g: &Global,
    project: &Project,
    mirrors: &Mirrors,
    all: &[String],
    tag: &str,
    stages: &Stages,
) -> TagRun {
    let mut row = TagRun {
        tag: tag.to_string(),
        era: None,
        recipe: None,
        status: Outcome::Ok,
        reason: None,
        stages: Vec::new(),
        dist: None,
        smoke_tokens_per_s: None,
        image: None,
        image_digest: None,
        series: Vec::new(),
        proposal: None,
    };
    let start = Instant::now();
    let req = new::NewRequest { tag, output: None };
    let recipe = match new::new_recipe(project, mirrors, &req) {
        Ok(out) => {
            row.era = Some(out.era);
            row.recipe = Some(out.recipe_path.clone());
            row.stage("recipe", Outcome::Ok, start);
            out.recipe_path
        }
        Err(NewError::Unsupported { era, why, .. }) => {
            row.era = Some(era);
            row.reason = Some(why);
            row.stage("recipe", Outcome::Skipped, start);
            return row;
        }
        Err(e) => {
            row.fail("recipe", start, e.to_string());
            return row;
        }
    };

    let start = Instant::now();
    match ci::check(project, mirrors, &recipe) {
        Ok(runs) => {
            let failing = ci::failing(&runs);
            row.series = runs;
            if !failing.is_empty() {
                row.fail(
                    "check",
                    start,
                    format!(
                        "patches do not apply: {} (rebase-patches, or refresh them)",
                        failing.join(", ")
                    ),
                );
                let start = Instant::now();
                let p = propose(&ProposeRequest {
                    project,
                    mirrors,
                    tag,
                    era: row.era.expect("set with the recipe"),
                    tags: all,
                    out: &stages.out.join("proposals"),
                });
                // The tag failed either way: the rebase only says what would fix it.
                let status = match &p {
                    Ok(Proposal::Proposed { .. }) => Outcome::Ok,
                    _ => Outcome::Failed,
                };
                let line = match &p {
                    Ok(p) => p.summary(),
                    Err(e) => format!("rebase attempt: {e}"),
                };
                row.stages.push(StageRun {
                    stage: "rebase",
                    status,
                    seconds: start.elapsed().as_secs_f64(),
                });
                row.reason = Some(format!("{}\n{line}", row.reason.take().unwrap_or_default()));
                row.proposal = p.ok();
                row.status = Outcome::Failed;
                return row;
            }
            row.stage("check", Outcome::Ok, start);
        }
        Err(e) => {
            row.fail("check", start, e.to_string());
            return row;
        }
    }
    if stages.build {
        build_smoke_image(g, project, mirrors, &recipe, stages, &mut row);
    }
    row
}

/// `--build` and `--image`: the same library calls as `build`, `smoke` and
/// `image --assemble`.
fn build_smoke_image(
    g: &Global,
    project: &Project,
    mirrors: &Mirrors,
    recipe: &Path,
    stages: &Stages,
    row: &mut TagRun,
) {
    let cache = g.cache();
    let start = Instant::now();
    let r: Recipe = match ollama_vulkan::recipe::load(recipe, project) {
        Ok(r) => r,
        Err(d) => return row.fail("build", start, d.to_string()),
    };
    let dest = match build_dir(project, recipe, None, Arch::host()) {
        Ok(d) => d,
        Err(e) => return row.fail("build", start, e.to_string()),
    };
    let built = build(&BuildRequest {
        recipe: &r,
        mirrors,
        dest: &dest,
        cache: &cache,
        builder: stages.builder,
        target: Arch::host(),
        jobs: stages.jobs,
        fuzz: None,
        quiet: g.quiet,
        offline: g.offline,
    });
    let built = match built {
        Ok(b) => b,
        Err(e) => return row.fail("build", start, e.to_string()),
    };
    row.dist = Some(built.dist.clone());
    row.stage("build", Outcome::Ok, start);

    let start = Instant::now();
    let smoked = smoke(&SmokeRequest {
        target: SmokeTarget::Dist(built.dist.clone()),
        cache: &cache,
        tokens: 16,
        cpu_fallback: true,
        vulkan: true,
        select_cpu_device: !has_gpu_device(),
        on_host: false,
        extra_env: &[],
        venus: None,
    });
    match smoked {
        Ok(rep) => {
            row.smoke_tokens_per_s = rep.runs.first().map(|r| r.tokens_per_s);
            row.stage("smoke", Outcome::Ok, start);
        }
        Err(e) => return row.fail("smoke", start, e.to_string()),
    }
    if !stages.image {
        return;
    }

    let start = Instant::now();
    let archive = stages
        .out
        .join("images")
        .join(format!("{}.oci.tar", row.tag));
    let opts = ImageOptions {
        variant: Variant::Linux,
        engine: ollama_vulkan::image::engine::EngineChoice::Auto,
        bases: Vec::new(),
        tag: None,
        uid: None,
        with_tools: false,
        output: Some(Output::OciArchive(archive.clone())),
        no_cache: false,
        assemble: true,
        locked: false,
    };
    let made = std::fs::create_dir_all(stages.out.join("images"))
        .map_err(|source| Error::Io {
            what: format!("creating {}", stages.out.join("images").display()),
            source,
        })
        .and_then(|()| {
            // The run's own copy of the package lock (seeded from the checkout's, so drift
            // is still reported against it): `ci` never writes into recipes/.
            let lock = stages.out.join("packages.lock");
            let shipped = project.recipes_dir().join("base/packages.lock");
            if !lock.exists() && shipped.is_file() {
                std::fs::copy(&shipped, &lock).map_err(|source| Error::Io {
                    what: format!("copying {} to {}", shipped.display(), lock.display()),
                    source,
                })?;
            }
            build_image(g, &r, &dest, true, Arch::host(), &opts, Some(lock))
        });
    match made {
        Ok(i) => {
            row.image = Some(archive);
            row.image_digest = i.digest;
            row.stage("image", Outcome::Ok, start);
        }
        Err(e) => row.fail("image", start, e.to_string()),
    }
}

#[derive(Serialize)]
struct CiReport {
    ok: bool,
    state: PathBuf,
    /// The state file's tag after this run.
    highest: Option<String>,
    /// The stages this run was asked for, in order.
    stages: Vec<&'static str>,
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
        // A rebase column only when a check failed and a rebase was tried.
        let mut columns = self.stages.clone();
        if self
            .tags
            .iter()
            .any(|r| r.stages.iter().any(|s| s.stage == "rebase"))
        {
            columns.insert(2, "rebase");
        }
        let mut head = format!("{:<16} {:<4}", "TAG", "ERA");
        for s in &columns {
            head.push_str(&format!(" {:<8}", s.to_uppercase()));
        }
        h.outln(format!("{head} {:<8} REASON", "STATUS"));
        for r in &self.tags {
            let mut line = format!(
                "{:<16} {:<4}",
                r.tag,
                r.era.map(|e| e.label()).unwrap_or("?")
            );
            for name in &columns {
                let word = r
                    .stages
                    .iter()
                    .find(|s| s.stage == *name)
                    .map(|s| s.status.word())
                    .unwrap_or("-");
                line.push_str(&format!(" {word:<8}"));
            }
            let mut reason = r.reason.as_deref().unwrap_or("").lines();
            h.outln(format!(
                "{line} {:<8} {}",
                r.status.word(),
                // The first line here; the rebase's line below; the rest is in --json.
                reason.next().unwrap_or("")
            ));
            if let Some(p) = &r.proposal {
                h.outln(format!("{:<22}{}", "", p.summary()));
                if let Proposal::Conflict { hunk, .. } = p {
                    for l in hunk.lines() {
                        h.outln(format!("{:<24}{l}", ""));
                    }
                }
            }
            if let Some(d) = &r.image_digest {
                h.outln(format!("{:<22}image {d}", ""));
            }
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
    kind: MatrixKind,
    mirrors: &Mirrors,
    url: &str,
    tags: &[String],
    templates: &[Recipe],
) -> Result<Status, Error> {
    let rows = new::survey_tags(mirrors, url, new::EraTags::Some(tags))?;
    let include: Vec<MatrixJob> = rows
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
    match kind {
        // One line: GitHub reads it from $GITHUB_OUTPUT as `matrix=<json>`.
        MatrixKind::Github => println!(
            "{}",
            serde_json::to_string(&Matrix { include }).expect("matrix serialises")
        ),
        MatrixKind::Gitlab => print!("{}", gitlab_pipeline(&include)),
    }
    Ok(Status::Success)
}

/// A child pipeline for `trigger: include: artifact:`: one `parallel:matrix` job per tag
/// running `ci --tags TAG --image`, or one job that says there is nothing to do (GitLab
/// refuses a pipeline with no jobs). Tags and eras are versions and era labels (checked
/// when read), quoted anyway.
fn gitlab_pipeline(jobs: &[MatrixJob]) -> String {
    let mut y = String::from("# Generated by `ollama-vulkan ci --matrix gitlab` (docs/ci.md).\n");
    if jobs.is_empty() {
        y.push_str(
            "no-new-tags:\n  script:\n    - echo \"no new Ollama tags with a Vulkan path\"\n",
        );
        return y;
    }
    y.push_str(
        "ollama-tag:\n  script:\n    - mkdir -p ci-out\n    - cargo run --release --locked -- ci --tags \"$TAG\" --include-rc --image --out ci-out --state ci-out/state.json --json > \"ci-out/$TAG.json\"\n  artifacts:\n    when: always\n    paths:\n      - ci-out/\n  parallel:\n    matrix:\n",
    );
    for j in jobs {
        y.push_str(&format!("      - TAG: \"{}\"\n", j.tag));
        if let Some(e) = j.era {
            y.push_str(&format!("        ERA: \"{}\"\n", e.label()));
        }
    }
    y
}
