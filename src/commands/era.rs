//! `era`: classify Ollama tags into build eras (UPSTREAM.md §1), from git objects only.

use ollama_vulkan::error::{Error, Kind};
use ollama_vulkan::recipe::new::{survey_tags, EraRow, EraTags, DEFAULT_OLLAMA_URL};
use ollama_vulkan::version::Version;
use serde::Serialize;

use super::{emit, Human, Report, Status};
use crate::cli::{EraArgs, Global};

pub fn run(g: &Global, a: EraArgs) -> Result<Status, Error> {
    let url = g
        .templates()
        .first()
        .map(|t| t.ollama.url.clone())
        .unwrap_or_else(|| DEFAULT_OLLAMA_URL.to_string());
    let tags = if a.all_tags {
        EraTags::All
    } else {
        EraTags::Some(&a.tags)
    };
    let mut rows = Eras(survey_tags(&g.mirrors()?, &url, tags)?);
    // A tag its era's template leaves out with a reason ([[template.unsupported]], e.g.
    // era 3's v0.12.4-rc0–v0.12.5) has no Vulkan path, whatever its era.
    let templates = g.templates();
    for r in &mut rows.0 {
        let (Some(era), Ok(v)) = (r.era, r.tag.parse::<Version>()) else {
            continue;
        };
        if templates
            .iter()
            .filter(|t| t.era == era)
            .any(|t| t.unsupported.iter().any(|u| u.tags.contains(&v)))
        {
            r.vulkan_path = false;
        }
    }
    let ok = rows.0.iter().all(|r| r.error.is_none());
    emit(&rows, g.format());
    Ok(Status::ok_or(ok, Kind::BadInput))
}

#[derive(Serialize)]
#[serde(transparent)]
struct Eras(Vec<EraRow>);

impl Report for Eras {
    fn human(&self, h: &mut Human) {
        for r in &self.0 {
            match (&r.era, &r.error) {
                (Some(era), _) => h.outln(format!(
                    "{:<16} {:<3} {:<7} {:<12} {:<42} {}",
                    r.tag,
                    era.label(),
                    if r.vulkan_path { "vulkan" } else { "-" },
                    &r.ollama_commit[..12],
                    r.llamacpp_commit
                        .as_deref()
                        .or(r.llamacpp_pin.as_deref())
                        .unwrap_or("-"),
                    r.llamacpp_version.as_deref().unwrap_or("")
                )),
                (None, Some(e)) => h.outln(format!("{:<16} error: {e}", r.tag)),
                (None, None) => {}
            }
        }
    }
}
