//! `image`: the recipe's container image, built with a local engine (no registry).

use std::path::Path;

use ollama_vulkan::error::Error;
use ollama_vulkan::image::{self, engine::Engine, ImageReport, ImageRequest, RenderOptions};
use ollama_vulkan::patch::prepare::{prepare, PrepareOptions};
use ollama_vulkan::recipe::model::Recipe;
use serde::Serialize;

use super::{build_dir, emit, per_tag_recipe, Human, Report, Status};
use crate::cli::{Global, ImageArgs, ImageOptions};

pub fn run(g: &Global, a: ImageArgs) -> Result<Status, Error> {
    let project = g.project()?;
    let r = per_tag_recipe(&a.recipe, &project, "image")?;
    let dest = build_dir(&project, &a.recipe, a.dest)?;
    if !a.from_dist && !dest.join("src/ollama").is_dir() {
        // The builder stage compiles the prepared trees: make them first.
        prepare(&r, &g.mirrors()?, &dest, PrepareOptions::default())?;
    }
    let report = build_image(g, &r, &dest, a.from_dist, &a.image_args)?;
    emit(&Image(report), g.format());
    Ok(Status::Success)
}

/// `image` and `build --image`: engine, bases and options from the command line.
pub fn build_image(
    g: &Global,
    r: &Recipe,
    dest: &Path,
    from_dist: bool,
    a: &ImageOptions,
) -> Result<ImageReport, Error> {
    let bases = image::parse_bases(&a.bases)?;
    let engine = Engine::detect(a.engine)?;
    let cache = g.cache();
    // A base that `base` makes and this machine lacks is made now (as `build` makes
    // its builder root): the tour works in the order a user types it.
    let templates = g.templates();
    for (_, img) in image::bases_for(r, &bases, from_dist) {
        image::base::ensure_default(&engine, &img, &templates, &cache, g.offline, g.quiet)?;
    }
    Ok(image::image(&ImageRequest {
        recipe: r,
        dest,
        engine: &engine,
        opts: RenderOptions {
            from_dist,
            with_tools: a.with_tools,
        },
        bases,
        tag: a.tag.clone(),
        uid: a.uid,
        output: a.output.clone(),
        no_cache: a.no_cache,
        cache: &cache,
        quiet: g.quiet,
    })?)
}

#[derive(Serialize)]
#[serde(transparent)]
pub struct Image(pub ImageReport);

impl Report for Image {
    fn human(&self, h: &mut Human) {
        let i = &self.0;
        let mb = |b: Option<u64>| {
            b.map(|b| format!("{:.1} MB", b as f64 / 1e6))
                .unwrap_or_else(|| "?".into())
        };
        h.outln(format!(
            "{} ({}, {}) built in {:.1} s: {} uncompressed\ndockerfile: {}",
            i.image,
            i.mode,
            i.engine,
            i.seconds,
            mb(i.size_bytes),
            i.dockerfile.display()
        ));
        if let Some(o) = &i.output {
            let p = match o {
                image::engine::Output::OciArchive(p) | image::engine::Output::Oci(p) => p,
            };
            h.outln(format!(
                "exported: {} ({})",
                p.display(),
                mb(i.output_bytes)
            ));
        }
        h.outln(format!(
            "run: podman run -d --device /dev/dri -p 11434:11434 {}   (docs/RUNNING.md)",
            i.image
        ));
    }
}
