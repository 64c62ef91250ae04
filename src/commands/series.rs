//! `series generate [--check]`: the series under patches/ made from patches/src.

use ollama_vulkan::error::{exit, Error};
use ollama_vulkan::patch::generate;
use ollama_vulkan::project::Project;

pub fn generate(project: &Project, check: bool, json: bool) -> Result<u8, Error> {
    let dir = project.patches_dir();
    let out = generate::generate(&dir)?;
    let changed = if check {
        generate::stale(&dir, &out)
    } else {
        generate::write(&dir, &out)?
    };
    if json {
        let v = serde_json::json!({
            "check": check,
            "series": out.keys().collect::<Vec<_>>(),
            "stale": changed,
        });
        println!("{}", serde_json::to_string_pretty(&v).expect("JSON"));
    } else {
        for s in &changed {
            let verb = if check { "stale" } else { "wrote" };
            let verb = if !check && s.why == "not generated" {
                "removed"
            } else {
                verb
            };
            println!("{verb} patches/{}  ({})", s.path, s.why);
        }
        let series = out.len();
        match (check, changed.is_empty()) {
            (true, false) => eprintln!(
                "error: {} generated file(s) are stale: run `ollama-vulkan series generate` and commit patches/",
                changed.len()
            ),
            (_, true) => println!("{series} generated series up to date"),
            (false, false) => println!("{series} generated series written; check the recipes' pins (`recipe check`)"),
        }
    }
    Ok(if check && !changed.is_empty() {
        exit::FAILURE as u8
    } else {
        0
    })
}
