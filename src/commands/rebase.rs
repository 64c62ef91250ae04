//! `rebase-patches`: carry the recipe's series onto another tag, 3-way, per patch.

use ollama_vulkan::error::Error;
use ollama_vulkan::rebase::report::render;
use ollama_vulkan::rebase::RebaseReport;
use ollama_vulkan::rebase::{rebase, Action};
use serde::Serialize;

use super::{emit, Human, Report, Status};
use crate::cli::{Global, RebaseArgs};

pub fn run(g: &Global, a: RebaseArgs) -> Result<Status, Error> {
    let project = g.project()?;
    let action = match (&a.onto, a.cont, a.skip, a.abort) {
        (Some(onto), ..) => Action::Start {
            onto,
            allow_era_change: a.allow_era_change,
        },
        (None, true, _, _) => Action::Continue,
        (None, _, true, _) => Action::Skip,
        _ => Action::Abort,
    };
    let rep = Rebase(rebase(&project, &g.mirrors()?, &a.recipe, action)?);
    let status = rep.0.failure().map_or(Status::Success, Status::Failed);
    emit(&rep, g.format());
    Ok(status)
}

#[derive(Serialize)]
#[serde(transparent)]
struct Rebase(RebaseReport);

impl Report for Rebase {
    fn human(&self, h: &mut Human) {
        h.out(render(&self.0));
    }
}
