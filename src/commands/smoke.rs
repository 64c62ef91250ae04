//! `smoke`: tokens through Vulkan (then on the CPU with Vulkan off), from a dist or in a
//! container of an image.

use ollama_vulkan::error::Error;
use ollama_vulkan::image::engine::Engine;
use ollama_vulkan::smoke::{
    has_gpu_device, install_interrupt_handler, render, smoke, Report as SmokeReport, SmokeRequest,
    SmokeTarget,
};
use serde::Serialize;

use super::{emit, Human, Report, Status};
use crate::cli::{Global, SmokeArgs};

pub fn run(g: &Global, a: SmokeArgs) -> Result<Status, Error> {
    install_interrupt_handler();
    let cache = g.cache();
    let target = match (a.dist, a.image) {
        (Some(d), _) => SmokeTarget::Dist(d),
        (None, Some(image)) => SmokeTarget::Image {
            engine: Engine::detect(a.engine)?.runner()?,
            image,
        },
        (None, None) => unreachable!("clap requires one"),
    };
    let report = smoke(&SmokeRequest {
        target,
        cache: &cache,
        tokens: a.tokens,
        cpu_fallback: !a.no_cpu_fallback,
        select_cpu_device: a.lavapipe || !has_gpu_device(),
        on_host: a.on_host,
        extra_env: &a.env,
    })?;
    emit(&Smoke(report), g.format());
    Ok(Status::Success)
}

#[derive(Serialize)]
#[serde(transparent)]
struct Smoke(SmokeReport);

impl Report for Smoke {
    fn human(&self, h: &mut Human) {
        h.out(render(&self.0));
    }
}
