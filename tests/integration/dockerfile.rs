//! `dockerfile`: the multi-stage Dockerfile rendered from a recipe, snapshot-tested per
//! era; its RUN lines are the template's build steps, and the shell words they make are
//! checked by running them through sh.

use crate::support::Fixture;

/// Renders the tag's Dockerfile and lints it with hadolint (errors fail; its warnings,
/// e.g. unpinned apt packages, are reported by hadolint, not by us).
fn render(fx: &Fixture, tag: &str) -> String {
    render_with(fx, tag, &[])
}

fn render_with(fx: &Fixture, tag: &str, extra: &[&str]) -> String {
    let recipe = fx.new_recipe(tag);
    let out = fx
        .scratch
        .path()
        .join(format!("Dockerfile.{tag}{}", extra.join("")));
    let mut args = vec!["dockerfile", recipe.to_str().unwrap()];
    args.extend_from_slice(extra);
    let mut with_out = args.clone();
    with_out.extend_from_slice(&["-o", out.to_str().unwrap()]);
    fx.run(&with_out).ok();
    crate::support::assert_hadolint_clean(&out);
    let run = fx.run(&args);
    run.ok();
    assert_eq!(
        run.stdout,
        std::fs::read_to_string(&out).unwrap(),
        "-o writes what stdout shows"
    );
    run.stdout
}

#[test]
fn era_4_and_5_dockerfiles_replay_the_build_steps() {
    let fx = Fixture::new();
    let d4 = render(&fx, "v0.24.0");
    insta::assert_snapshot!("dockerfile_era4", d4);
    assert!(d4.contains(
        "RUN cmake --preset Vulkan -DCMAKE_INSTALL_PREFIX=/build/dist -DOLLAMA_RUNNER_DIR=vulkan"
    ));
    assert!(
        d4.contains("    MESA_SHADER_CACHE_MAX_SIZE=4G \\\n    OLLAMA_VULKAN=1"),
        "era 4's switch is on"
    );
    for var in [
        "__GL_SHADER_DISK_CACHE_PATH=/var/cache/ollama-vulkan/nvidia",
        "MESA_SHADER_CACHE_DIR=/var/cache/ollama-vulkan/mesa",
    ] {
        assert!(
            d4.contains(var),
            "the drivers' pipeline caches go to one folder: {var}"
        );
    }
    assert!(
        !d4.contains("GGML_VK_VISIBLE_DEVICES"),
        "no test-only device selection in images"
    );
    let d5 = render(&fx, "v0.32.15");
    insta::assert_snapshot!("dockerfile_era5", d5);
    assert!(d5.contains("-DFETCHCONTENT_SOURCE_DIR_LLAMA_CPP=/build/src/llama.cpp"));
    // The go_module word expands in a shell the way the native build expands it.
    let line = d5.lines().find(|l| l.starts_with("RUN go build")).unwrap();
    let words = line
        .trim_start_matches("RUN ")
        .replace("go build", "printf '%s\\n'");
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("go.mod"),
        "module github.com/ollama/ollama\n\ngo 1.26.0\n",
    )
    .unwrap();
    let out = std::process::Command::new("sh")
        .arg("-c")
        .arg(&words)
        .current_dir(dir.path())
        .output()
        .unwrap();
    let printed = String::from_utf8_lossy(&out.stdout);
    assert!(
        printed
            .lines()
            .any(|l| l == "-ldflags=-w -s -X=github.com/ollama/ollama/version.Version=0.32.15"),
        "{printed}"
    );
}

#[test]
fn from_dist_dockerfile_is_the_runtime_stage_over_dist() {
    let fx = Fixture::new();
    let d = render_with(&fx, "v0.32.15", &["--from-dist", "--with-tools"]);
    insta::assert_snapshot!("dockerfile_era5_from_dist_with_tools", d);
    assert!(
        !d.contains("AS builder") && !d.contains("--from=builder"),
        "{d}"
    );
    assert!(d.contains("COPY dist/bin/ollama /usr/bin/ollama"));
    assert!(d.contains("COPY dist/lib/ollama /usr/lib/ollama"));
    assert!(
        d.contains("RUN pkgs='ca-certificates libvulkan1 mesa-vulkan-drivers vulkan-tools'"),
        "{d}"
    );
    // Every FROM is an ARG with a default: bases can be overridden.
    for l in d.lines().filter(|l| l.starts_with("FROM ")) {
        assert!(l.starts_with("FROM ${"), "{l}");
    }
    assert!(!d.contains("VK_LOADER_DEBUG") && !d.contains("GGML_VK_VISIBLE_DEVICES"));
}

#[test]
fn era_1b_images_carry_the_binary_alone() {
    let fx = Fixture::new();
    let d = render(&fx, "v0.1.48");
    assert!(
        d.contains("RUN OLLAMA_CPU_TARGET=cpu OLLAMA_SKIP_CUDA_GENERATE=1"),
        "{d}"
    );
    assert!(d.contains("COPY --from=builder /build/dist/bin/ollama /usr/bin/ollama"));
    assert!(
        !d.contains("/usr/lib/ollama"),
        "runners are embedded in era 1b"
    );
    let run = fx.run(&[
        "dockerfile",
        fx.scratch
            .project()
            .join("recipes/era-4.toml")
            .to_str()
            .unwrap(),
    ]);
    run.fails(2, &["is an era template"]);
}
