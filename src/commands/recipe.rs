//! `recipe new|check|show`: per-tag recipes from the era templates, and their checks.

use std::path::PathBuf;

use ollama_vulkan::diag::Diagnostic;
use ollama_vulkan::error::{Error, Kind};
use ollama_vulkan::recipe::{self, era::Era, model::Recipe, new};
use serde::Serialize;

use super::{emit, Human, Report, Status};
use crate::cli::{Global, RecipeCommand};

pub fn run(g: &Global, cmd: RecipeCommand) -> Result<Status, Error> {
    match cmd {
        RecipeCommand::New { tag, output } => {
            let project = g.project()?;
            let out = new::new_recipe(
                &project,
                &g.mirrors()?,
                &new::NewRequest {
                    tag: &tag,
                    output: output.as_deref(),
                },
            )?;
            emit(&New(out), g.format());
            Ok(Status::Success)
        }
        RecipeCommand::Check { files } => {
            let project = g.project()?;
            let checked = Checked(
                files
                    .into_iter()
                    .map(|file| match recipe::load(&file, &project) {
                        Ok(r) => CheckRow::ok(file, &r),
                        Err(d) => CheckRow {
                            file,
                            ok: false,
                            era: None,
                            diagnostics: d.0,
                            summary: None,
                        },
                    })
                    .collect(),
            );
            emit(&checked, g.format());
            Ok(Status::ok_or(
                checked.0.iter().all(|r| r.ok),
                Kind::BadInput,
            ))
        }
        RecipeCommand::Show { file } => {
            let project = g.project()?;
            let r = recipe::load(&file, &project).map_err(Error::Recipe)?;
            // Always JSON: the resolved recipe is for reading by both.
            emit(&Shown(r), super::Format::Json);
            Ok(Status::Success)
        }
    }
}

#[derive(Serialize)]
#[serde(transparent)]
struct New(new::NewOutcome);

impl Report for New {
    fn human(&self, h: &mut Human) {
        let out = &self.0;
        for n in &out.notes {
            h.errln(format!("note: {n}"));
        }
        let summary = format!(
            "{} is era {} ({}); llama.cpp {}\nwrote {}",
            out.tag,
            out.era,
            out.template,
            match (&out.llamacpp_version, &out.llamacpp_commit) {
                (Some(v), Some(c)) => format!("{v} ({})", &c[..12]),
                (None, Some(c)) => c.clone(),
                (Some(v), None) => format!("{v} (commit not resolved)"),
                (None, None) => "vendored".into(),
            },
            out.recipe_path.display()
        );
        // With `-o -` the recipe itself is stdout.
        if out.recipe_path.as_os_str() == "-" {
            h.errln(summary);
        } else {
            h.outln(summary);
        }
    }
}

#[derive(Serialize)]
// Fields in the order earlier releases printed them (alphabetical).
struct CheckRow {
    diagnostics: Vec<Diagnostic>,
    #[serde(skip_serializing_if = "Option::is_none")]
    era: Option<Era>,
    file: PathBuf,
    ok: bool,
    #[serde(skip)]
    summary: Option<String>,
}

impl CheckRow {
    fn ok(file: PathBuf, r: &Recipe) -> CheckRow {
        let what = match (&r.ollama.tag, &r.template) {
            (Some(tag), Some(t)) => format!("{tag} on template {}", t.name),
            _ => format!("template for {}", r.tags),
        };
        let summary = format!(
            "ok: {} (era {}, {what}, {} series)",
            file.display(),
            r.era,
            r.series.len()
        );
        CheckRow {
            file,
            ok: true,
            era: Some(r.era),
            diagnostics: Vec::new(),
            summary: Some(summary),
        }
    }
}

#[derive(Serialize)]
#[serde(transparent)]
struct Checked(Vec<CheckRow>);

impl Report for Checked {
    fn human(&self, h: &mut Human) {
        for r in &self.0 {
            match &r.summary {
                Some(s) => h.outln(s),
                None => h.errln(format!(
                    "error: {}",
                    ollama_vulkan::diag::Diagnostics(r.diagnostics.clone())
                )),
            }
        }
    }
}

#[derive(Serialize)]
#[serde(transparent)]
struct Shown(Recipe);

impl Report for Shown {
    fn human(&self, _: &mut Human) {}
}
