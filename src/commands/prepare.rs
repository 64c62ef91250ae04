//! `prepare`: apply the recipe's series to fresh trees (all or nothing), or `--check`.

use ollama_vulkan::error::{Error, Kind};
use ollama_vulkan::patch::prepare::{
    fuzz_used, prepare, PrepareError, PrepareOptions, PreparedTree,
};
use ollama_vulkan::patch::report::{render, SeriesRun};
use serde::Serialize;

use super::{build_dir, emit, per_tag_recipe, Human, Report, Status};
use crate::cli::{Global, PrepareArgs};

pub fn run(g: &Global, a: PrepareArgs) -> Result<Status, Error> {
    let project = g.project()?;
    let r = per_tag_recipe(&a.recipe, &project, "prepare")?;
    let dest = build_dir(
        &project,
        &a.recipe,
        a.dest,
        ollama_vulkan::target::Arch::host(),
    )?;
    let opts = PrepareOptions {
        fuzz: a.fuzz,
        check: a.check,
    };
    let report = match prepare(&r, &g.mirrors()?, &dest, opts) {
        Ok(p) => PrepareReport {
            ok: p
                .series
                .iter()
                .flat_map(|s| &s.patches)
                .all(|x| x.status.applies()),
            check: p.check,
            series: p.series,
            trees: p.trees,
            stopped: false,
        },
        // --check (and --json) report failures as data; the exit code still says so.
        Err(PrepareError::Failed { runs, .. }) if g.json || a.check => PrepareReport {
            check: a.check,
            ok: false,
            series: runs,
            trees: Vec::new(),
            stopped: true,
        },
        Err(e) => return Err(e.into()),
    };
    let ok = report.ok;
    emit(&report, g.format());
    Ok(Status::ok_or(ok, Kind::Failure))
}

// Fields in the order earlier releases printed them (alphabetical).
#[derive(Serialize)]
struct PrepareReport {
    check: bool,
    ok: bool,
    series: Vec<SeriesRun>,
    trees: Vec<PreparedTree>,
    /// Stopped at a patch that does not apply: the per-hunk report is all there is.
    #[serde(skip)]
    stopped: bool,
}

impl Report for PrepareReport {
    fn human(&self, h: &mut Human) {
        h.out(render(&self.series));
        if self.stopped {
            return;
        }
        if fuzz_used(&self.series) {
            h.errln("warning: some hunks applied with fuzz: their context no longer matches upstream; refresh the patches");
        }
        for t in &self.trees {
            h.outln(format!(
                "{}: {} commit{} on top of the pin -> {}",
                t.repo,
                t.commits.len(),
                if t.commits.len() == 1 { "" } else { "s" },
                t.path.display()
            ));
        }
        if self.series.is_empty() {
            h.outln("the recipe has no series for this tag; trees fetched unchanged");
        }
    }
}
