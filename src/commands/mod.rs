//! One module per command (as cargo's and uv's `commands/`): each `run` builds its stage's
//! input from the arguments, calls the library, and hands a typed report to [`emit`].
//! Nothing here decides what a stage does; `main.rs` only parses and dispatches.

pub mod base;
pub mod build;
pub mod check_patches;
pub mod ci;
pub mod completions;
pub mod dockerfile;
pub mod doctor;
pub mod era;
pub mod fetch;
pub mod image;
pub mod prepare;
pub mod rebase;
pub mod recipe;
pub mod series;
pub mod smoke;

use std::io::Write;
use std::path::{Path, PathBuf};

use ollama_vulkan::error::{Error, Kind};
use ollama_vulkan::project::Project;
use ollama_vulkan::recipe::{self as recipes, model::Recipe};
use ollama_vulkan::source::Mirrors;

use crate::cli::{Cli, Command, Global};

/// How a command that ran to the end finished: its report may carry failures as data
/// (a patch that does not apply, a recipe that does not check), which set the exit code
/// without being an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Success,
    Failed(Kind),
}

impl Status {
    pub fn exit_code(self) -> u8 {
        match self {
            Status::Success => 0,
            Status::Failed(kind) => kind.exit_code() as u8,
        }
    }

    /// Success, or a failure of `kind`, as `ok` says.
    pub fn ok_or(ok: bool, kind: Kind) -> Status {
        if ok {
            Status::Success
        } else {
            Status::Failed(kind)
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Human,
    Json,
}

/// What a person reads: the result on stdout and notes on stderr.
#[derive(Debug, Default)]
pub struct Human {
    pub out: String,
    pub err: String,
}

impl Human {
    pub fn out(&mut self, s: impl AsRef<str>) {
        self.out.push_str(s.as_ref());
    }
    pub fn outln(&mut self, s: impl AsRef<str>) {
        self.out.push_str(s.as_ref());
        self.out.push('\n');
    }
    pub fn errln(&mut self, s: impl AsRef<str>) {
        self.err.push_str(s.as_ref());
        self.err.push('\n');
    }
}

/// A command's result: the same value for machines (`--json`, its Serialize form) and
/// for people (`human`).
pub trait Report: serde::Serialize {
    fn human(&self, h: &mut Human);
}

/// Writes a report in the chosen format: the only place results reach stdout.
pub fn emit(report: &impl Report, format: Format) {
    match format {
        Format::Json => {
            let mut out = std::io::stdout().lock();
            serde_json::to_writer_pretty(&mut out, report).expect("stdout");
            writeln!(out).ok();
        }
        Format::Human => {
            let mut h = Human::default();
            report.human(&mut h);
            eprint!("{}", h.err);
            print!("{}", h.out);
        }
    }
}

/// Runs the parsed command line.
pub fn dispatch(cli: Cli) -> Result<Status, Error> {
    let g = &cli.global;
    match cli.command {
        Command::Recipe(c) => recipe::run(g, c),
        Command::Fetch(a) => fetch::run(g, a),
        Command::Build(a) => build::run(g, a),
        Command::Image(a) => image::run(g, a),
        Command::Base(a) => base::run(g, a),
        Command::Smoke(a) => smoke::run(g, a),
        Command::Dockerfile(a) => dockerfile::run(g, a),
        Command::Doctor(a) => doctor::run(g, a),
        Command::Prepare(a) => prepare::run(g, a),
        Command::CheckPatches(a) => check_patches::run(g, a),
        Command::RebasePatches(a) => rebase::run(g, a),
        Command::Era(a) => era::run(g, a),
        Command::Ci(a) => ci::run(g, a),
        Command::Series(c) => series::run(g, c),
        Command::Completions(a) => completions::run(g, a),
    }
}

impl Global {
    pub fn format(&self) -> Format {
        if self.json {
            Format::Json
        } else {
            Format::Human
        }
    }

    /// The checkout holding recipes/ and patches/ (--project, else found from the cwd).
    pub fn project(&self) -> Result<Project, Error> {
        Ok(Project::discover(self.project.as_deref())?)
    }

    pub fn mirrors(&self) -> Result<Mirrors, Error> {
        Ok(Mirrors::new(&self.mirrors, self.cache(), self.offline)?)
    }

    /// The era templates, when there is a project: defaults (package lists, URLs) come
    /// from them.
    pub fn templates(&self) -> Vec<Recipe> {
        Project::discover(self.project.as_deref())
            .ok()
            .and_then(|p| recipes::new::load_templates(&p).ok())
            .unwrap_or_default()
    }
}

/// Loads a per-tag recipe for `cmd`, refusing an era template.
pub fn per_tag_recipe(file: &Path, project: &Project, cmd: &str) -> Result<Recipe, Error> {
    let r = recipes::load(file, project).map_err(Error::Recipe)?;
    if r.is_template {
        return Err(Error::Usage(format!(
            "{} is an era template; {cmd} needs a per-tag recipe (`ollama-vulkan recipe new --ollama TAG`)",
            file.display()
        )));
    }
    Ok(r)
}

/// `--dest`, else `work/builds/<recipe file stem>`: one build directory per recipe.
/// `work/builds/<recipe name>` (with `-<arch>` for a foreign architecture's build, so
/// both dists of a tag live side by side), or `dest`.
pub fn build_dir(
    project: &Project,
    recipe: &Path,
    dest: Option<PathBuf>,
    arch: ollama_vulkan::target::Arch,
) -> Result<PathBuf, Error> {
    if let Some(d) = dest {
        return Ok(d);
    }
    let name = ollama_vulkan::safe::recipe_name_of(recipe).map_err(|why| {
        Error::Usage(format!(
            "{}: {why}\n  help: rename the recipe file, or pass --dest DIR",
            ollama_vulkan::safe::show(&recipe.display().to_string())
        ))
    })?;
    let name = if arch.is_host() {
        name
    } else {
        format!("{name}-{arch}")
    };
    Ok(project.work_dir().join("builds").join(name))
}

/// `--jobs`, else the machine's CPUs (`build` and `ci --build`).
pub fn jobs_or_cpus(jobs: Option<usize>) -> usize {
    jobs.unwrap_or_else(|| {
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(2)
    })
}
