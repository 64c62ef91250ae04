//! `check-patches`: series × tags, applied in memory from git objects.

use ollama_vulkan::error::{Error, Kind};
use ollama_vulkan::patch::check::{check_many, render, Matrix, Tags};
use ollama_vulkan::patch::series;
use serde::Serialize;

use super::{emit, Human, Report, Status};
use crate::cli::{CheckPatchesArgs, Global};

pub fn run(g: &Global, a: CheckPatchesArgs) -> Result<Status, Error> {
    let project = g.project()?;
    let names = if a.series.is_empty() {
        let all = series::discover(&project.patches_dir());
        if all.is_empty() {
            return Err(Error::Usage(format!(
                "no series under {}: nothing to check",
                project.patches_dir().display()
            )));
        }
        all
    } else {
        a.series
    };
    let tags = match (a.all_tags, a.tags.as_deref()) {
        (true, _) => Tags::All,
        (false, r) => Tags::Range(r.unwrap_or("")),
    };
    let matrices = Matrices(check_many(
        &project.patches_dir(),
        &g.mirrors()?,
        &names,
        tags,
        a.fuzz,
    )?);
    let ok = matrices
        .0
        .iter()
        .flat_map(|m| &m.rows)
        .flat_map(|r| &r.cells)
        .all(|c| c.status.applies());
    emit(&matrices, g.format());
    Ok(Status::ok_or(ok, Kind::Failure))
}

#[derive(Serialize)]
#[serde(transparent)]
struct Matrices(Vec<Matrix>);

impl Report for Matrices {
    fn human(&self, h: &mut Human) {
        for m in &self.0 {
            h.out(render(m));
            h.outln(format!(
                "{} (patch, input) pairs applied, {} answered from the memo, {:.2} s",
                m.applied, m.memo_hits, m.seconds
            ));
        }
    }
}
