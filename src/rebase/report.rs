//! The human form of a rebase report (the JSON form is the serialised [`RebaseReport`]).

use std::fmt::Write;

use super::merge::Status;
use super::{Finish, PatchResult, RebaseReport};

fn short(c: &str) -> &str {
    &c[..c.len().min(12)]
}

/// Per file and hunk: where the patch's own context stood on the new base.
fn hunk_lines(r: &PatchResult, out: &mut String) {
    for f in &r.files {
        if let Some(e) = &f.error {
            let _ = writeln!(out, "      {}: {e}", f.path);
        }
        for h in &f.hunks {
            let what = match h.status.as_str() {
                "offset" => format!("offset {:+} lines", h.lines.unwrap_or(0)),
                "fuzz" => "context matches only with fuzz".to_string(),
                "failed" => format!(
                    "context no longer matches at line {}",
                    h.expected_at.unwrap_or(0)
                ),
                _ => continue,
            };
            let _ = writeln!(out, "      {} hunk {} {}: {what}", f.path, h.hunk, h.header);
        }
    }
    for c in &r.conflicts {
        let at = if c.regions.is_empty() {
            String::new()
        } else {
            let rs: Vec<String> = c
                .regions
                .iter()
                .map(|(a, b)| format!("lines {a}-{b}"))
                .collect();
            format!(" at {}", rs.join(", "))
        };
        let _ = writeln!(out, "      conflict in {} ({}){at}", c.path, c.kind);
    }
}

pub fn render(r: &RebaseReport) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "rebase-patches {} onto {} ({})",
        r.recipe.display(),
        r.onto,
        short(&r.onto_commit)
    );
    if let Some(e) = &r.era {
        let side = |x: &super::EraSide| {
            format!(
                "{} era {}{}",
                x.tag,
                x.era,
                x.vulkan_switch
                    .as_deref()
                    .map(|v| format!(", Vulkan switch {v}"))
                    .unwrap_or_default()
            )
        };
        let _ = writeln!(
            s,
            "era: {} → {}: {}",
            side(&e.from),
            side(&e.to),
            if e.changed { "CHANGED" } else { "same" }
        );
        for why in &e.reasons {
            let _ = writeln!(s, "  {why}");
        }
    }
    for sr in &r.series {
        let _ = writeln!(
            s,
            "series {} ({}): {} → {}",
            sr.name,
            sr.repo,
            short(&sr.old_base),
            short(&sr.new_base)
        );
        let w = sr
            .patches
            .iter()
            .map(|p| p.patch.chars().count())
            .max()
            .unwrap_or(0);
        for p in &sr.patches {
            let what = match p.status {
                Status::Upstreamed => format!("upstreamed in {}", r.onto),
                Status::Renamed => format!(
                    "renamed ({})",
                    p.renames
                        .iter()
                        .map(|x| format!("{} → {}", x.from, x.to))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
                st => st.as_str().to_string(),
            };
            let changed = match p.status {
                Status::Upstreamed | Status::Skipped => " (dropped)",
                Status::Conflict => "",
                _ if p.changed => " (refreshed)",
                _ => " (unchanged)",
            };
            let _ = writeln!(s, "  {:w$}  {what}{changed}", p.patch);
            if let (Some(n), Status::Skipped | Status::Resolved) = (&p.note, p.status) {
                let _ = writeln!(s, "      {n}");
            }
            if let Some(n) = &p.note {
                for w in n.split("; ").filter(|w| w.starts_with("warning: ")) {
                    let _ = writeln!(s, "      {w}");
                }
            }
            if p.status != Status::Clean {
                hunk_lines(p, &mut s);
            }
        }
    }
    match &r.outcome {
        Finish::Done { written, removed } => {
            if written.is_empty() && removed.is_empty() {
                let _ = writeln!(s, "done: nothing changed");
            } else {
                let _ = writeln!(s, "done: wrote {} file(s)", written.len());
                for w in written {
                    let _ = writeln!(s, "  {}", w.display());
                }
                for w in removed {
                    let _ = writeln!(s, "  removed {}", w.display());
                }
            }
        }
        Finish::Conflict {
            series,
            patch,
            next_steps,
            ..
        } => {
            let _ = writeln!(
                s,
                "stopped: {patch} (series {series}) conflicts with {}. Nothing under patches/ or recipes/ was changed.",
                r.onto
            );
            let _ = writeln!(s, "next steps:");
            for (i, n) in next_steps.iter().enumerate() {
                let _ = writeln!(s, "  {}. {n}", i + 1);
            }
        }
        Finish::EraChange => {
            let _ = writeln!(
                s,
                "stopped: the era verdict for {} differs from the recipe's pin; nothing was written",
                r.onto
            );
        }
        Finish::Aborted { restored } => {
            let _ = writeln!(
                s,
                "aborted: the rebase state and work tree are removed; {} file(s) restored",
                restored.len()
            );
        }
    }
    for n in &r.notes {
        let _ = writeln!(s, "note: {n}");
    }
    s
}
