//! `base`: a local base image from Debian packages (mmdebstrap), no registry.

use ollama_vulkan::error::Error;
use ollama_vulkan::image::base::{
    base, role_packages, verify, BaseReport, BaseRequest, RootRequest, VerifyReport,
};
use ollama_vulkan::image::engine::Engine;
use serde::Serialize;

use super::{emit, Human, Report, Status};
use crate::cli::{BaseArgs, Global};

pub fn run(g: &Global, a: BaseArgs) -> Result<Status, Error> {
    // The templates' package lists: one builder base serves every era.
    let mut packages = role_packages(&g.templates(), a.role);
    if a.with_tools {
        packages.push("vulkan-tools".into());
    }
    let cache = g.cache();
    if a.verify {
        let r = verify(&RootRequest {
            suite: &a.suite,
            role: a.role,
            arch: a.arch,
            packages,
            cache: &cache,
            offline: g.offline,
        })?;
        let differs = r.status == "differs";
        emit(&Verify(r), g.format());
        return Ok(if differs {
            Status::Failed(ollama_vulkan::error::Kind::Failure)
        } else {
            Status::Success
        });
    }
    let engine = Engine::detect(a.engine)?;
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

#[derive(Serialize)]
#[serde(transparent)]
struct Verify(VerifyReport);

impl Report for Verify {
    fn human(&self, h: &mut Human) {
        let r = &self.0;
        h.outln(format!(
            "{}: {} (cached {}, made again {}; {:.1} s)",
            r.cached.display(),
            r.status,
            &r.cached_sha256[..12],
            &r.fresh_sha256[..12],
            r.seconds
        ));
        for c in &r.packages {
            h.outln(format!("  package {c}"));
        }
        for f in &r.files {
            h.outln(format!("  {}: {}", f.path, f.why));
        }
    }
}
