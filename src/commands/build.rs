//! `build`: fetch → prepare → compile → dist + manifest (and the image with `--image`).

use std::time::Instant;

use ollama_vulkan::build::{build, BuildRequest, Built};
use ollama_vulkan::error::Error;
use ollama_vulkan::recipe::new;
use serde::Serialize;

use super::image::{build_image, Image};
use super::{build_dir, emit, per_tag_recipe, Human, Report, Status};
use crate::cli::{BuildArgs, Global};

pub fn run(g: &Global, a: BuildArgs) -> Result<Status, Error> {
    let project = g.project()?;
    let m = g.mirrors()?;
    let file = match (a.recipe, &a.ollama) {
        (Some(f), _) => f,
        (None, Some(tag)) => {
            let out = new::new_recipe(&project, &m, &new::NewRequest { tag, output: None })?;
            if !g.quiet && !g.json {
                eprintln!(
                    "  recipe for {tag}: era {} -> {}",
                    out.era,
                    out.recipe_path.display()
                );
            }
            out.recipe_path
        }
        (None, None) => unreachable!("clap requires one"),
    };
    let r = per_tag_recipe(&file, &project, "build")?;
    let dest = build_dir(&project, &file, a.dest, a.arch)?;
    let cache = g.cache();
    let jobs = super::jobs_or_cpus(a.jobs);
    let started = Instant::now();
    let built = build(&BuildRequest {
        recipe: &r,
        mirrors: &m,
        dest: &dest,
        cache: &cache,
        builder: a.builder,
        target: a.arch,
        jobs,
        fuzz: a.fuzz,
        quiet: g.quiet,
        offline: g.offline,
    })?;
    let seconds = started.elapsed().as_secs_f64();
    let tag = r.ollama.tag.clone().unwrap_or_default();
    let report = if a.image {
        BuildReport::WithImage {
            build: Build {
                built,
                tag,
                seconds,
            },
            image: Box::new(Image(build_image(
                g,
                &r,
                &dest,
                true,
                a.arch,
                &a.image_args,
                None,
            )?)),
        }
    } else {
        BuildReport::Build(Build {
            built,
            tag,
            seconds,
        })
    };
    emit(&report, g.format());
    Ok(Status::Success)
}

#[derive(Serialize)]
struct Build {
    #[serde(flatten)]
    built: Built,
    #[serde(skip)]
    tag: String,
    #[serde(skip)]
    seconds: f64,
}

/// `{"dist","manifest","cached"}`, or `{"build": …, "image": …}` with `--image`.
#[derive(Serialize)]
#[serde(untagged)]
enum BuildReport {
    Build(Build),
    WithImage { build: Build, image: Box<Image> },
}

impl Report for Build {
    fn human(&self, h: &mut Human) {
        let b = &self.built;
        h.outln(format!(
            "{} {} -> {} ({:.1} s)\nmanifest: {}",
            self.tag,
            if b.cached {
                "unchanged, cached dist"
            } else {
                "built"
            },
            b.dist.display(),
            self.seconds,
            b.manifest.display()
        ));
    }
}

impl Report for BuildReport {
    fn human(&self, h: &mut Human) {
        match self {
            BuildReport::Build(b) => b.human(h),
            BuildReport::WithImage { build, image } => {
                build.human(h);
                image.human(h);
            }
        }
    }
}
