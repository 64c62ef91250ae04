//! `doctor`: what a build needs, what this machine (or the builder root) has, and exactly
//! what to install or which builder to use.

use serde::Serialize;

use super::builder::{which_in, Builder};
use super::toolchain::{cmake_version, shader_support, versions, SHADER_EXTENSIONS};
use crate::recipe::era::Era;
use crate::recipe::model::Recipe;
use crate::version::Version;

#[derive(Debug, Serialize)]
pub struct Check {
    pub name: String,
    pub ok: bool,
    /// False for things that only make builds faster or better (ccache, extensions).
    pub required: bool,
    pub found: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fix: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct Report {
    pub builder: String,
    pub checks: Vec<Check>,
    pub ok: bool,
    pub advice: Vec<String>,
}

fn check(name: &str, ok: bool, required: bool, found: Option<String>, fix: &str) -> Check {
    Check {
        name: name.into(),
        ok,
        required,
        found: found.unwrap_or_else(|| "not found".into()),
        fix: (!ok).then(|| fix.to_string()),
    }
}

/// Vulkan headers ggml-vulkan from v0.15.0 needs: `vk::LayerSettingEXT`
/// (VK_EXT_layer_settings, headers 1.3.261+); bookworm's 1.3.239 fail.
const MIN_VULKAN_HEADERS: &str = "v1.3.261";

/// What `doctor --fix` installs: the host packages the default pipeline runs (builder
/// root, engine, smoke model), and for the host builder its toolchain (bookworm's glslc
/// and Vulkan headers stay too old for current tags: the checks below still say so).
pub fn fix_needs(builder: super::builder::BuilderChoice) -> Vec<crate::provision::Need> {
    use crate::provision as p;
    let mut needs = vec![p::MMDEBSTRAP, p::PODMAN, p::OCI_RUNTIME, p::PYTHON_VENV];
    if builder == super::builder::BuilderChoice::Host {
        let host: Vec<p::Need> = p::TOOLS
            .iter()
            .filter(|n| {
                [
                    "cmake",
                    "g++",
                    "glslc",
                    "ccache",
                    "libvulkan-dev",
                    "python3",
                ]
                .contains(&n.package)
            })
            .copied()
            .collect();
        needs.extend(host);
    }
    needs
}

pub fn doctor(recipe: Option<&Recipe>, builder: &Builder, scratch: &std::path::Path) -> Report {
    let v = versions(builder);
    let era = recipe.map(|r| r.era);
    let mut checks = Vec::new();
    let apt = |pkgs: &str| format!("apt-get install {pkgs}");
    checks.push(check(
        "go",
        v.go.is_some(),
        true,
        v.go.clone(),
        "install Go ≥ the go.mod's version (https://go.dev/dl), or put it on PATH",
    ));
    let cmin = recipe.and_then(|r| r.build.cmake_min.clone());
    let cmake_ok = match (&v.cmake, &cmin) {
        (Some(line), Some(min)) => {
            match (cmake_version(line), format!("v{min}").parse::<Version>()) {
                (Some(have), Ok(need)) => have >= need,
                _ => true,
            }
        }
        (Some(_), None) => true,
        (None, _) => false,
    };
    checks.push(check(
        &format!(
            "cmake{}",
            cmin.as_deref()
                .map(|m| format!(" ≥ {m}"))
                .unwrap_or_default()
        ),
        cmake_ok,
        true,
        v.cmake.clone(),
        &format!(
            "{} (or a newer CMake from cmake.org); the builder root has cmake 3.31",
            apt("cmake")
        ),
    ));
    checks.push(check(
        "C compiler (cc)",
        v.cc.is_some(),
        true,
        v.cc.clone(),
        &apt("gcc"),
    ));
    checks.push(check(
        "C++ compiler (c++)",
        v.cxx.is_some(),
        true,
        v.cxx.clone(),
        &apt("g++"),
    ));
    checks.push(check(
        "glslc",
        v.glslc.is_some(),
        true,
        v.glslc.clone(),
        &apt("glslc"),
    ));
    let needs_new_headers = matches!(era, None | Some(Era::Four) | Some(Era::Five));
    let headers_ok = match &v.vulkan_headers {
        Some(h) => {
            !needs_new_headers
                || format!("v{h}")
                    .parse::<Version>()
                    .map(|h| h >= MIN_VULKAN_HEADERS.parse().unwrap())
                    .unwrap_or(true)
        }
        None => false,
    };
    checks.push(check(
        &format!("Vulkan headers{}", if needs_new_headers { " ≥ 1.3.261" } else { "" }),
        headers_ok,
        true,
        v.vulkan_headers.clone(),
        if v.vulkan_headers.is_some() {
            "these headers lack vk::LayerSettingEXT, which ggml-vulkan uses from Ollama v0.15.0: use the builder root (`--builder root`, Debian trixie: 1.4.309)"
        } else {
            "apt-get install libvulkan-dev"
        },
    ));
    if matches!(era, None | Some(Era::Five)) {
        checks.push(check(
            "SPIRV-Headers (CMake config)",
            v.spirv_headers,
            era == Some(Era::Five),
            v.spirv_headers.then(|| "found".into()),
            "apt-get install spirv-headers (Debian trixie; bookworm's lacks the CMake config llama.cpp needs): the builder root has it",
        ));
    }
    let support = shader_support(builder, scratch);
    for ext in SHADER_EXTENSIONS {
        let ok = support.get(*ext).copied().unwrap_or(false);
        checks.push(check(
            &format!("glslc supports {ext}"),
            ok,
            false,
            Some(if ok { "yes".into() } else { "no".into() }),
            "optional: without it the fast matrix shaders for NVIDIA/AMD are left out; trixie's glslc has all but GL_EXT_bfloat16",
        ));
    }
    checks.push(check(
        "ccache",
        v.ccache.is_some(),
        false,
        v.ccache.clone(),
        "optional: apt-get install ccache (rebuilds after a small patch change reuse objects)",
    ));
    if matches!(builder, Builder::Host) {
        let mm = which_in(
            None,
            &std::env::var("PATH").unwrap_or_default(),
            "mmdebstrap",
        );
        checks.push(check(
            "mmdebstrap (for the builder root)",
            mm.is_some(),
            false,
            mm.map(|p| p.display().to_string()),
            "apt-get install mmdebstrap: the default builder is a Debian trixie root made with it",
        ));
    }
    let ok = checks.iter().all(|c| c.ok || !c.required);
    let mut advice = Vec::new();
    if !ok {
        let missing: Vec<&str> = checks
            .iter()
            .filter(|c| !c.ok && c.required)
            .map(|c| c.name.as_str())
            .collect();
        advice.push(format!("missing or too old: {}", missing.join(", ")));
        if matches!(builder, Builder::Host) {
            advice.push("the simplest fix: build with the trixie builder root (the default on Debian/Ubuntu as root; `--builder root`), which has all of these".into());
        }
    } else {
        advice.push(format!(
            "ready to build with the {} builder",
            match builder {
                Builder::Host => "host",
                Builder::Root { .. } => "root",
            }
        ));
    }
    Report {
        builder: builder.id(),
        checks,
        ok,
        advice,
    }
}

pub fn render(r: &Report) -> String {
    use std::fmt::Write;
    let mut s = format!("builder: {}\n", r.builder);
    let w = r
        .checks
        .iter()
        .map(|c| c.name.chars().count())
        .max()
        .unwrap_or(10);
    for c in &r.checks {
        let mark = match (c.ok, c.required) {
            (true, _) => "ok  ",
            (false, true) => "FAIL",
            (false, false) => "warn",
        };
        let pad = w - c.name.chars().count();
        let _ = writeln!(s, "{mark}  {}{}  {}", c.name, " ".repeat(pad), c.found);
        if let Some(f) = &c.fix {
            let _ = writeln!(s, "      {}  → {f}", " ".repeat(w));
        }
    }
    for a in &r.advice {
        let _ = writeln!(s, "{a}");
    }
    s
}

/// The builder packages doctor checks: the recipe's, else the newest template's (one
/// builder root serves every era).
pub fn default_packages(recipe: Option<&Recipe>, templates: &[Recipe]) -> Vec<String> {
    recipe
        .or_else(|| templates.last())
        .map(|r| r.build.builder_packages.clone())
        .unwrap_or_default()
}
