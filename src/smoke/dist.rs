//! What a smoke run starts from: a dist (its manifest says where it was built and how
//! this era switches Vulkan) or an image (the same, from its labels).

use super::*;

/// The parts of the dist's manifest smoke needs.
pub(super) struct DistInfo {
    pub(super) tag: Option<String>,
    pub(super) era: Option<String>,
    pub(super) builder: Builder,
    pub(super) smoke: Smoke,
}

pub(super) fn read_dist(dist: &Path, on_host: bool) -> Result<DistInfo, SmokeError> {
    let bad = |why: String, help: &str| SmokeError::Dist {
        dist: dist.display().to_string(),
        why,
        help: help.into(),
    };
    if !dist.join("bin/ollama").is_file() {
        return Err(bad(
            "no bin/ollama here".into(),
            "pass the dist directory `build` printed (work/builds/<recipe>/dist)",
        ));
    }
    let m = crate::contract::Manifest::read(dist)?;
    let builder = match m.builder {
        // The dist runs in the root it was built in (its libc), unless asked otherwise.
        Builder::Root {
            path,
            suite,
            target,
            ..
        } if !on_host => Builder::Root {
            path,
            suite,
            target,
            packages: Vec::new(),
            binds: Vec::new(),
        },
        _ => Builder::Host,
    };
    if !m.target.is_host() {
        if builder.root().is_none() {
            return Err(bad(
                format!("it is a linux/{} dist; this machine is linux/{}", m.target, crate::target::Arch::host()),
                "smoke-test it in the cross root it was built in (leave out --on-host), or on a linux/arm64 machine",
            ));
        }
        // Its programs run under qemu-user in the cross root.
        crate::provision::ensure_foreign(m.target.name())
            .map_err(|e| bad(e.to_string(), "install qemu-user-static and binfmt-support"))?;
    }
    if let Some(root) = builder.root() {
        if !root.join("usr/bin").is_dir() {
            return Err(bad(
                format!(
                    "it was built in the builder root {}, which is gone",
                    root.display()
                ),
                "rebuild (the root is remade), smoke-test the image, or pass --on-host where the libc is new enough",
            ));
        }
    }
    Ok(DistInfo {
        tag: m.recipe.tag,
        era: Some(m.recipe.era.label().to_string()),
        builder,
        smoke: m.smoke,
    })
}

/// The image's labels (the era's `[smoke]` table, its tag and era).
pub(super) fn read_image(
    engine: &Engine,
    image: &str,
) -> Result<(Option<String>, Option<String>, Smoke), SmokeError> {
    let bad = |why: String| SmokeError::Dist {
        dist: image.into(),
        why,
        help: "build it with `ollama-vulkan image RECIPE` (check the name with `podman images`)"
            .into(),
    };
    let labels = serde_json::Value::Object(engine.labels(image)?.ok_or_else(|| {
        bad(format!(
            "no image {image} in {}'s local storage",
            engine.kind.name()
        ))
    })?);
    let smoke = match labels.get(SMOKE_LABEL).and_then(|v| v.as_str()) {
        Some(j) => serde_json::from_str(j).map_err(|e| bad(format!("label {SMOKE_LABEL}: {e}")))?,
        None => {
            return Err(bad(format!(
                "no {SMOKE_LABEL} label: not an image ollama-vulkan built, so how to switch Vulkan on is unknown"
            )))
        }
    };
    Ok((
        labels["org.opencontainers.image.version"]
            .as_str()
            .map(String::from),
        labels["io.ollama-vulkan.era"].as_str().map(String::from),
        smoke,
    ))
}
