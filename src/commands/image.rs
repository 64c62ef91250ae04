//! `image`: the recipe's container image, built with a local engine (no registry).

use std::path::{Path, PathBuf};

use ollama_vulkan::error::Error;
use ollama_vulkan::image::{self, engine::Engine, ImageReport, ImageRequest, RenderOptions};
use ollama_vulkan::patch::prepare::{prepare, PrepareOptions};
use ollama_vulkan::recipe::model::Recipe;
use ollama_vulkan::target::Arch;
use serde::Serialize;

use super::{build_dir, emit, per_tag_recipe, Human, Report, Status};
use crate::cli::{Global, ImageArgs, ImageOptions};

pub fn run(g: &Global, a: ImageArgs) -> Result<Status, Error> {
    let project = g.project()?;
    let r = per_tag_recipe(&a.recipe, &project, "image")?;
    let mut archs = a.archs.clone();
    archs.sort_by_key(|a| a.name());
    archs.dedup();
    if archs.is_empty() {
        archs.push(Arch::host());
    }
    if archs.len() > 1 && a.dest.is_some() {
        return Err(Error::Usage(
            "--dest names one build directory; several --arch take each architecture's own (work/builds/<recipe>[-ARCH])".into(),
        ));
    }
    let from_dist = a.from_dist || a.image_args.assemble;
    let mut images = Vec::new();
    for &arch in &archs {
        let dest = build_dir(&project, &a.recipe, a.dest.clone(), arch)?;
        if !from_dist && !dest.join("src/ollama").is_dir() {
            // The builder stage compiles the prepared trees: make them first.
            prepare(&r, &g.mirrors()?, &dest, PrepareOptions::default())?;
        }
        let mut opts = a.image_args.clone();
        let base = a
            .image_args
            .tag
            .clone()
            .unwrap_or_else(|| image::default_variant_tag(&r, a.image_args.variant));
        if archs.len() > 1 {
            // Each image under TAG-ARCH; the index gets TAG and the export.
            opts.tag = Some(format!("{base}-{arch}"));
            opts.output = None;
            if a.image_args.assemble {
                // Each architecture's layout in its build directory; merged below.
                let stem = image::sbom::file_name(
                    &format!("{base}-{arch}"),
                    a.image_args.variant.name(),
                    arch,
                );
                opts.output = Some(image::engine::Output::Oci(
                    dest.join(stem.replace(".spdx.json", ".oci")),
                ));
            }
        }
        images.push(build_image(g, &r, &dest, from_dist, arch, &opts, None)?);
    }
    if images.len() == 1 {
        emit(&Image(images.remove(0)), g.format());
        return Ok(Status::Success);
    }
    let index = a
        .image_args
        .tag
        .clone()
        .unwrap_or_else(|| image::default_variant_tag(&r, a.image_args.variant));
    if a.image_args.assemble {
        return assembled_index(&project, &a, index, images, g);
    }
    let engine = Engine::detect(a.image_args.engine)?;
    let names: Vec<String> = images.iter().map(|i| i.image.clone()).collect();
    engine.make_index(&index, &names)?;
    let mut output_bytes = None;
    if let Some(out) = &a.image_args.output {
        let progress = ollama_vulkan::progress::Progress::start(format!("exporting {index}"));
        engine.export_index(&index, out)?;
        let p = match out {
            image::engine::Output::OciArchive(p) | image::engine::Output::Oci(p) => p,
        };
        output_bytes = Some(ollama_vulkan::fsutil::dir_bytes(p));
        progress.finish(&p.display().to_string());
    }
    emit(
        &Index {
            index,
            images,
            output: a.image_args.output.clone(),
            output_bytes,
            digest: None,
        },
        g.format(),
    );
    Ok(Status::Success)
}

/// The assembled images of each architecture merged into one index (the archive or
/// layout `--output` names, else `ollama-vulkan_TAG-VARIANT.oci.tar` in the host's build
/// directory), each architecture's SBOM beside it.
fn assembled_index(
    project: &ollama_vulkan::project::Project,
    a: &ImageArgs,
    index: String,
    images: Vec<ImageReport>,
    g: &Global,
) -> Result<Status, Error> {
    let out = match &a.image_args.output {
        Some(o) => o.clone(),
        None => {
            let dest = build_dir(project, &a.recipe, a.dest.clone(), Arch::host())?;
            let stem = image::sbom::file_name(&index, a.image_args.variant.name(), Arch::host());
            let stem = stem.trim_end_matches(&format!("-{}.spdx.json", Arch::host()));
            image::engine::Output::OciArchive(dest.join(format!("{stem}.oci.tar")))
        }
    };
    let parts: Vec<image::assemble::Part> = images
        .iter()
        .filter_map(|i| match &i.output {
            Some(image::engine::Output::Oci(p)) => {
                Some(image::assemble::Part { layout: p.clone() })
            }
            _ => None,
        })
        .collect();
    let epoch = images
        .iter()
        .filter_map(|i| i.source_date_epoch)
        .max()
        .unwrap_or(0);
    let progress = ollama_vulkan::progress::Progress::start(format!("merging {index}"));
    let digest = image::assemble::merge(&parts, &index, &out, epoch)?;
    let p = match &out {
        image::engine::Output::OciArchive(p) | image::engine::Output::Oci(p) => p.clone(),
    };
    // Each architecture's SBOM beside the merged image too.
    let dir = p
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
        .to_path_buf();
    for i in &images {
        if let Some(s) = &i.sbom {
            if let Some(f) = s.files.first() {
                let to = dir.join(f.file_name().unwrap_or_default());
                if &to != f {
                    let bytes = std::fs::read(f).map_err(|e| Error::Io {
                        what: format!("reading {}", f.display()),
                        source: e,
                    })?;
                    ollama_vulkan::fsutil::write_atomic(&to, &bytes).map_err(|e| Error::Io {
                        what: format!("writing {}", to.display()),
                        source: e,
                    })?;
                }
            }
        }
    }
    let output_bytes = Some(ollama_vulkan::fsutil::dir_bytes(&p));
    progress.finish(&digest);
    emit(
        &Index {
            index,
            images,
            output: Some(out),
            output_bytes,
            digest: Some(digest),
        },
        g.format(),
    );
    Ok(Status::Success)
}

/// A multi-architecture image: the index and the image of each architecture.
#[derive(Serialize)]
struct Index {
    index: String,
    images: Vec<ImageReport>,
    output: Option<image::engine::Output>,
    output_bytes: Option<u64>,
    /// The assembled index's digest (assembled images only).
    digest: Option<String>,
}

impl Report for Index {
    fn human(&self, h: &mut Human) {
        for i in &self.images {
            Image::human_of(i, h, false);
        }
        h.outln(format!(
            "{}: an index of {}",
            self.index,
            self.images
                .iter()
                .map(|i| i.platform.as_str())
                .collect::<Vec<_>>()
                .join(" + ")
        ));
        if let Some(o) = &self.output {
            let p = match o {
                image::engine::Output::OciArchive(p) | image::engine::Output::Oci(p) => p,
            };
            h.outln(format!(
                "exported: {} ({}, every architecture)",
                p.display(),
                mb(self.output_bytes)
            ));
        }
        h.outln(format!(
            "run: podman run -d --device /dev/dri -p 11434:11434 {}   (the engine picks this machine's architecture; docs/RUNNING.md)",
            self.index
        ));
    }
}

fn mb(b: Option<u64>) -> String {
    b.map(|b| format!("{:.1} MB", b as f64 / 1e6))
        .unwrap_or_else(|| "?".into())
}

/// `image` and `build --image`: engine, bases and options from the command line. The
/// package lock is the checkout's `recipes/base/packages.lock` unless `lock` names another
/// (`ci` keeps its own, so a CI run never writes into the checkout).
pub fn build_image(
    g: &Global,
    r: &Recipe,
    dest: &Path,
    from_dist: bool,
    arch: Arch,
    a: &ImageOptions,
    lock: Option<PathBuf>,
) -> Result<ImageReport, Error> {
    // Another architecture's image is TAG-ARCH by default, beside the host's TAG.
    let mut a = a.clone();
    if a.tag.is_none() && !arch.is_host() {
        a.tag = Some(format!(
            "{}-{arch}",
            image::default_variant_tag(r, a.variant)
        ));
    }
    let a = &a;
    let bases = image::parse_bases(&a.bases)?;
    let from_dist = from_dist || a.assemble;
    // An assembled image needs no engine (the root tarball is made or found by itself).
    let engine = if a.assemble {
        None
    } else {
        Some(Engine::detect(a.engine)?)
    };
    let cache = g.cache();
    let templates = g.templates();
    if let Some(engine) = &engine {
        // A base that `base` makes and this machine lacks is made now (as `build` makes
        // its builder root): the tour works in the order a user types it.
        for (_, img) in image::bases_for(r, &bases, from_dist, arch) {
            image::base::ensure_default(engine, &img, &templates, &cache, g.offline, g.quiet)?;
        }
    }
    let project = g.project()?;
    // The krunkit variant's Venus driver, built (once) for the image's architecture.
    let krunkit = match a.variant {
        image::Variant::Linux => None,
        image::Variant::Krunkit => Some(ollama_vulkan::mesa::ensure(
            &ollama_vulkan::mesa::MesaRequest {
                recipes_dir: &project.recipes_dir(),
                patches_dir: &project.patches_dir(),
                mirrors: &g.mirrors()?,
                cache: &cache,
                target: arch,
                offline: g.offline,
                quiet: g.quiet,
            },
        )?),
    };
    Ok(image::image(&ImageRequest {
        recipe: r,
        dest,
        engine: engine.as_ref(),
        assemble: a.assemble,
        runtime_packages: image::base::role_packages(&templates, image::base::Role::Runtime),
        lock: Some(lock.unwrap_or_else(|| project.recipes_dir().join("base/packages.lock"))),
        locked: a.locked,
        offline: g.offline,
        opts: RenderOptions {
            from_dist,
            with_tools: a.with_tools,
            krunkit: None,
        },
        arch,
        krunkit,
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
        Image::human_of(&self.0, h, true);
    }
}

impl Image {
    fn human_of(i: &ImageReport, h: &mut Human, run_line: bool) {
        h.outln(format!(
            "{} ({}, {}, {}, {}) built in {:.1} s: {} uncompressed\ndockerfile: {}",
            i.image,
            i.platform,
            i.variant,
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
        if let Some(d) = &i.digest {
            h.outln(format!("digest: {d}"));
        }
        if let Some(s) = &i.sbom {
            h.outln(format!(
                "sbom: {} (SPDX 2.3: {} Debian packages, {} Go modules)",
                s.files
                    .iter()
                    .map(|f| f.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", "),
                s.debian_packages,
                s.go_modules
            ));
        }
        if let Some(l) = &i.lock {
            h.outln(format!("package lock: {} ({})", l.file.display(), l.status));
        }
        if let Some(m) = &i.mesa {
            h.outln(format!("venus driver: Mesa {m}"));
        }
        if run_line && i.mode == "assembled" {
            if let Some(image::engine::Output::OciArchive(p)) = &i.output {
                h.outln(format!(
                    "run: podman load -i {} && podman run -d --device /dev/dri -p 11434:11434 {}   (docs/RUNNING.md)",
                    p.display(),
                    i.image
                ));
            }
        } else if run_line {
            h.outln(format!(
                "run: podman run -d --device /dev/dri -p 11434:11434 {}   (docs/RUNNING.md)",
                i.image
            ));
        }
    }
}
