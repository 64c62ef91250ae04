//! `base`: a local base image from Debian packages (mmdebstrap), no registry.

use ollama_vulkan::error::Error;
use ollama_vulkan::image::base::{base, role_packages, BaseReport, BaseRequest};
use ollama_vulkan::image::engine::Engine;
use serde::Serialize;

use super::{emit, Human, Report, Status};
use crate::cli::{BaseArgs, Global};

pub fn run(g: &Global, a: BaseArgs) -> Result<Status, Error> {
    let engine = Engine::detect(a.engine)?;
    // The templates' package lists: one builder base serves every era.
    let mut packages = role_packages(&g.templates(), a.role);
    if a.with_tools {
        packages.push("vulkan-tools".into());
    }
    let cache = g.cache();
    let report = base(&BaseRequest {
        engine: &engine,
        suite: &a.suite,
        role: a.role,
        arch: a.arch,
        packages,
        tag: a.tag,
        cache: &cache,
        offline: g.offline,
        quiet: g.quiet,
    })?;
    emit(&Base(report), g.format());
    Ok(Status::Success)
}

#[derive(Serialize)]
#[serde(transparent)]
struct Base(BaseReport);

impl Report for Base {
    fn human(&self, h: &mut Human) {
        let r = &self.0;
        h.outln(format!(
            "{} ({} packages{}) {}\nroot: {}{} ({:.1} MB), {:.1} s",
            r.image,
            r.packages.len(),
            r.go.as_deref()
                .map(|g| format!(", {g}"))
                .unwrap_or_default(),
            r.id.as_deref().map(|i| &i[..i.len().min(19)]).unwrap_or(""),
            r.rootfs.display(),
            if r.cached_rootfs { " (cached)" } else { "" },
            r.rootfs_bytes as f64 / 1e6,
            r.seconds
        ));
    }
}
