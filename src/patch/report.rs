//! The human report of applying series: one line per patch, detail for every hunk that
//! was not clean. Snapshot-tested; `--json` gives the same data.

use std::fmt::Write;

use serde::Serialize;

use super::apply::HunkOutcome;
use super::engine::{PatchReport, PatchStatus};

/// One series applied to one tree.
#[derive(Debug, Clone, Serialize)]
pub struct SeriesRun {
    pub series: String,
    pub repo: String,
    /// What it was applied to, e.g. "ollama v0.24.0".
    pub target: String,
    pub fuzz_allowed: usize,
    pub patches: Vec<PatchReport>,
}

/// `series/patch` for each patch of `runs` that does not apply.
pub fn failing(runs: &[SeriesRun]) -> Vec<String> {
    runs.iter()
        .flat_map(|s| {
            s.patches
                .iter()
                .filter(|p| !p.status.applies())
                .map(move |p| format!("{}/{}", s.series, p.patch))
        })
        .collect()
}

pub fn status_word(r: &PatchReport) -> String {
    match r.status {
        PatchStatus::Clean => "clean".into(),
        PatchStatus::Offset => format!("offset {}", r.max_offset),
        PatchStatus::Fuzz => format!("FUZZ {}", r.max_fuzz),
        PatchStatus::AlreadyApplied => "already upstream".into(),
        PatchStatus::Failed => "FAILED".into(),
    }
}

pub fn render(runs: &[SeriesRun]) -> String {
    let mut s = String::new();
    for run in runs {
        let _ = writeln!(
            s,
            "series {} ({}, {} patch{}) on {}",
            run.series,
            run.repo,
            run.patches.len(),
            if run.patches.len() == 1 { "" } else { "es" },
            run.target
        );
        let width = run.patches.iter().map(|p| p.patch.len()).max().unwrap_or(0);
        for p in &run.patches {
            let _ = writeln!(
                s,
                "  {:width$}  {:<16}  {}{}",
                p.patch,
                status_word(p),
                p.subject,
                p.upstream_status
                    .as_deref()
                    .map(|u| format!(" [{}]", u.split(' ').next().unwrap_or(u)))
                    .unwrap_or_default()
            );
            for f in &p.files {
                if let Some(e) = &f.error {
                    let _ = writeln!(s, "    {}: {e}", f.path);
                }
                for h in &f.hunks {
                    let what = match &h.outcome {
                        HunkOutcome::Clean => continue,
                        HunkOutcome::Offset { lines } => {
                            format!("applied at offset {lines:+} lines")
                        }
                        HunkOutcome::Fuzz { fuzz, lines } => {
                            format!("applied with fuzz {fuzz} at offset {lines:+} lines (warning: context did not match)")
                        }
                        HunkOutcome::Failed { expected_at, .. } => {
                            format!("does not match at line {expected_at}")
                        }
                    };
                    let _ = writeln!(
                        s,
                        "    {} hunk {} {} (patch line {}): {what}",
                        f.path, h.hunk, h.header, h.patch_line
                    );
                    if let HunkOutcome::Failed { mismatches, .. } = &h.outcome {
                        if p.status == PatchStatus::Failed {
                            for m in mismatches {
                                let _ = writeln!(
                                    s,
                                    "      line {}: expected `{}`, found {}",
                                    m.line,
                                    m.expected,
                                    m.found
                                        .as_deref()
                                        .map(|f| format!("`{f}`"))
                                        .unwrap_or_else(|| "end of file".into())
                                );
                            }
                        }
                    }
                }
            }
            if p.status == PatchStatus::AlreadyApplied {
                let _ = writeln!(s, "    its reverse applies: the tree already has this change; drop it from the series");
            }
        }
    }
    s
}
