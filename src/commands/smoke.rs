//! `smoke`: tokens through Vulkan (then on the CPU with Vulkan off), from a dist or in a
//! container of an image.

use ollama_vulkan::error::Error;
use ollama_vulkan::image::engine::Engine;
use ollama_vulkan::smoke::{
    has_gpu_device, install_interrupt_handler, render, smoke, Report as SmokeReport, SmokeRequest,
    SmokeTarget, Venus,
};
use ollama_vulkan::venus::{ensure, LabRequest, MesaChoice, LAVAPIPE_ICD};
use serde::Serialize;

use super::{emit, Human, Report, Status};
use crate::cli::{Global, SmokeArgs};

pub fn run(g: &Global, a: SmokeArgs) -> Result<Status, Error> {
    install_interrupt_handler();
    let cache = g.cache();
    if a.image.is_some() && a.venus_mesa == MesaChoice::Krunkit {
        return Err(Error::Usage(
            "--venus-mesa krunkit runs a dist on our driver in the lab root; an image runs its own Mesa\n  help: smoke the dist, or the image of the krunkit variant with --venus".into(),
        ));
    }
    let target = match (a.dist, a.image) {
        (Some(d), _) => SmokeTarget::Dist(d),
        (None, Some(image)) => SmokeTarget::Image {
            engine: Engine::detect(a.engine)?.runner()?,
            image,
        },
        (None, None) => unreachable!("clap requires one"),
    };
    let venus = if a.venus {
        if let Some((k, _)) = a
            .env
            .iter()
            .find(|(k, _)| k == "OLLAMA_VULKAN_MEMORY_FRACTION")
        {
            return Err(Error::Usage(format!(
                "--venus checks the memory rule's Venus default (0.75); --env {k} would replace it\n  help: leave --env {k} out, or smoke without --venus"
            )));
        }
        let project = g.project()?;
        let lab = ensure(&LabRequest {
            recipes_dir: &project.recipes_dir(),
            patches_dir: &project.patches_dir(),
            mirrors: &g.mirrors()?,
            cache: &cache,
            server: a.venus_server,
            offline: g.offline,
            quiet: g.quiet,
            host_icd: a.venus_host_icd.as_deref(),
            mesa: a.venus_mesa,
            krunkit_host: a.venus_krunkit_host,
        })?;
        Some(Venus {
            lab,
            host_icd: a
                .venus_host_icd
                .clone()
                .unwrap_or_else(|| LAVAPIPE_ICD.into()),
        })
    } else {
        None
    };
    // lavapipe, directly or behind Venus, is a CPU-type device ggml skips unless selected.
    let on_lavapipe = venus
        .as_ref()
        .is_some_and(|v| v.host_icd == std::path::Path::new(LAVAPIPE_ICD));
    let report = smoke(&SmokeRequest {
        target,
        cache: &cache,
        tokens: a.tokens,
        cpu_fallback: !a.no_cpu_fallback,
        vulkan: !a.cpu_only,
        select_cpu_device: a.lavapipe || on_lavapipe || !has_gpu_device(),
        on_host: a.on_host,
        extra_env: &a.env,
        venus: venus.as_ref(),
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
