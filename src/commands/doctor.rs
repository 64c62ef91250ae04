//! `doctor`: check the toolchain a build needs and say what to install (`--fix` installs).

use ollama_vulkan::build::builder::Builder;
use ollama_vulkan::build::doctor::{default_packages, doctor, fix_needs, render, Report as Checks};
use ollama_vulkan::error::{Error, Kind};
use ollama_vulkan::project::Project;
use ollama_vulkan::recipe;
use serde::Serialize;

use super::{emit, Human, Report, Status};
use crate::cli::{DoctorArgs, Global};

pub fn run(g: &Global, a: DoctorArgs) -> Result<Status, Error> {
    if a.fix {
        let needs = fix_needs(a.builder);
        let installed = ollama_vulkan::provision::ensure(&needs)?;
        if !g.quiet {
            if installed.is_empty() {
                eprintln!("nothing to install: {} present", needs.len());
            } else {
                eprintln!("installed: {}", installed.join(" "));
            }
        }
    }
    // An explicit --project that is not one is an error of its own.
    let project = match (&g.project, &a.recipe) {
        (Some(_), _) | (None, Some(_)) => Some(g.project()?),
        (None, None) => Project::discover(None).ok(),
    };
    let r = match (&a.recipe, &project) {
        (Some(f), Some(p)) => Some(recipe::load(f, p).map_err(Error::Recipe)?),
        (Some(_), None) => {
            return Err(Error::Usage(
                "doctor RECIPE needs the project (recipes/ and patches/); pass --project".into(),
            ))
        }
        _ => None,
    };
    let templates = match &project {
        Some(p) => recipe::new::load_templates(p).unwrap_or_default(),
        None => Vec::new(),
    };
    let packages = default_packages(r.as_ref(), &templates);
    let mut b = Builder::ensure(
        a.builder,
        &g.cache(),
        &packages,
        ollama_vulkan::target::Arch::host(),
        &[],
        g.offline,
    )?;
    let scratch = tempfile::tempdir().map_err(|e| Error::Io {
        what: "creating a temp dir".into(),
        source: e,
    })?;
    b.bind(&[scratch.path().to_path_buf()]);
    let report = doctor(r.as_ref(), &b, scratch.path());
    let ok = report.ok;
    emit(&Doctor(report), g.format());
    Ok(Status::ok_or(ok, Kind::Failure))
}

#[derive(Serialize)]
#[serde(transparent)]
struct Doctor(Checks);

impl Report for Doctor {
    fn human(&self, h: &mut Human) {
        h.out(render(&self.0));
    }
}
