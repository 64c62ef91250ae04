//! `fetch`: materialise the pinned Ollama and llama.cpp trees.

use std::time::Instant;

use ollama_vulkan::error::Error;
use ollama_vulkan::source::fetch::{fetch, Sources};
use serde::Serialize;

use super::{build_dir, emit, per_tag_recipe, Human, Report, Status};
use crate::cli::{FetchArgs, Global};

pub fn run(g: &Global, a: FetchArgs) -> Result<Status, Error> {
    let project = g.project()?;
    let r = per_tag_recipe(&a.recipe, &project, "fetch")?;
    let dest = build_dir(
        &project,
        &a.recipe,
        a.dest,
        ollama_vulkan::target::Arch::host(),
    )?;
    let started = Instant::now();
    let fetched = fetch(&r, &g.mirrors()?, &dest)?;
    emit(
        &FetchReport {
            tag: r.ollama.tag.clone().unwrap_or_default(),
            fetched,
            seconds: started.elapsed().as_secs_f64(),
        },
        g.format(),
    );
    Ok(Status::Success)
}

#[derive(Serialize)]
struct FetchReport {
    #[serde(skip)]
    tag: String,
    #[serde(flatten)]
    fetched: Sources,
    #[serde(skip)]
    seconds: f64,
}

impl Report for FetchReport {
    fn human(&self, h: &mut Human) {
        let f = &self.fetched;
        for n in &f.notes {
            h.errln(format!("note: {n}"));
        }
        h.outln(format!(
            "ollama {} ({}): {} files, {:.1} MB -> {}",
            self.tag,
            &f.ollama_commit[..12],
            f.ollama.files,
            f.ollama.bytes as f64 / 1e6,
            f.ollama_tree.display()
        ));
        if let (Some(t), Some(m), Some(c)) = (&f.llamacpp_tree, &f.llamacpp, &f.llamacpp_commit) {
            h.outln(format!(
                "llama.cpp {}: {} files -> {}",
                &c[..12],
                m.files,
                t.display()
            ));
        }
        for p in &f.compat_patches {
            h.outln(format!("llama/compat/{}: {}", p.patch, p.status));
        }
        h.outln(format!("done in {:.2} s", self.seconds));
    }
}
