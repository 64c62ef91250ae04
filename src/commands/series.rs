//! `series generate [--check]`: the series under patches/ made from patches/src.

use ollama_vulkan::error::{Error, Kind};
use ollama_vulkan::patch::generate::{self, Stale};
use serde::Serialize;

use super::{emit, Human, Report, Status};
use crate::cli::{Global, SeriesCommand};

pub fn run(g: &Global, cmd: SeriesCommand) -> Result<Status, Error> {
    let SeriesCommand::Generate { check } = cmd;
    let dir = g.project()?.patches_dir();
    let out = generate::generate(&dir)?;
    let stale = if check {
        generate::stale(&dir, &out)
    } else {
        generate::write(&dir, &out)?
    };
    let report = Generated {
        check,
        series: out.keys().cloned().collect(),
        stale,
    };
    let ok = !check || report.stale.is_empty();
    emit(&report, g.format());
    Ok(Status::ok_or(ok, Kind::Failure))
}

/// Fields in the order earlier releases printed them (alphabetical).
#[derive(Serialize)]
struct Generated {
    check: bool,
    series: Vec<String>,
    /// With --check the stale files; without, the files written or removed.
    stale: Vec<Stale>,
}

impl Report for Generated {
    fn human(&self, h: &mut Human) {
        for s in &self.stale {
            let verb = match (self.check, s.why) {
                (true, _) => "stale",
                (false, "not generated") => "removed",
                (false, _) => "wrote",
            };
            h.outln(format!("{verb} patches/{}  ({})", s.path, s.why));
        }
        let n = self.series.len();
        match (self.check, self.stale.is_empty()) {
            (true, false) => h.errln(format!(
                "error: {} generated file(s) are stale: run `ollama-vulkan series generate` and commit patches/",
                self.stale.len()
            )),
            (_, true) => h.outln(format!("{n} generated series up to date")),
            (false, false) => h.outln(format!(
                "{n} generated series written; check the recipes' pins (`recipe check`)"
            )),
        }
    }
}
