//! `smoke` on fixture dists: the real tool drives the built binary's server over HTTP
//! (the fixture server speaks Ollama's API shapes and log lines and runs a Vulkan compute
//! pipeline per token on Mesa lavapipe).

use std::fs;
use std::path::{Path, PathBuf};

use crate::support::{Fixture, Run};

fn build(fx: &Fixture, tag: &str) -> PathBuf {
    let dest = fx.scratch.path().join(format!("b-{tag}"));
    let j = fx.build_host(&["--ollama", tag], &dest).ok().json();
    PathBuf::from(j["dist"].as_str().unwrap())
}

/// The binary with the shared gguf python (one venv per test run, not per test).
fn smoke_command(fx: &Fixture, args: &[&str]) -> std::process::Command {
    let mut cmd = fx.scratch.command(args);
    cmd.env("OLLAMA_VULKAN_PYTHON", crate::support::smoke_python());
    cmd
}

pub(crate) fn smoke(fx: &Fixture, dist: &Path, extra: &[&str]) -> Run {
    let mut args = vec![
        "smoke",
        dist.to_str().unwrap(),
        "--lavapipe",
        "--tokens",
        "8",
        "--json",
    ];
    args.extend_from_slice(extra);
    smoke_command(fx, &args).output().unwrap().into()
}

#[test]
fn era_4_generates_through_vulkan_on_lavapipe_and_falls_back_to_cpu() {
    let fx = Fixture::new();
    let dist = build(&fx, "v0.24.0");
    let j = smoke(&fx, &dist, &[]).ok().json();
    let v = &j["runs"][0];
    assert_eq!(v["mode"], "vulkan");
    assert_eq!(v["eval_count"], 8);
    assert!(v["size"].as_u64().unwrap() > 0);
    assert_eq!(v["size_vram"], v["size"], "fully on the GPU");
    assert!(v["device"].as_str().unwrap().contains("llvmpipe"), "{v}");
    assert_eq!(v["layers_offloaded"], "2/2");
    let c = &j["runs"][1];
    assert_eq!(c["mode"], "cpu");
    assert_eq!(c["eval_count"], 8);
    assert_eq!(c["size_vram"], 0);
    assert!(
        c["cpu_reason"]
            .as_str()
            .unwrap()
            .contains("Vulkan support disabled"),
        "{c}"
    );
    // The server logs are kept next to the dist as evidence.
    let log = PathBuf::from(v["log"].as_str().unwrap());
    assert!(log.starts_with(dist.parent().unwrap()));
    assert!(fs::read_to_string(log)
        .unwrap()
        .contains("inference compute"));
    // The human report.
    let run: Run = smoke_command(
        &fx,
        &[
            "smoke",
            dist.to_str().unwrap(),
            "--lavapipe",
            "--tokens",
            "4",
        ],
    )
    .output()
    .unwrap()
    .into();
    run.ok();
    assert!(run.stdout.contains("vulkan ok  4 tokens"), "{}", run.stdout);
    assert!(run.stdout.contains("why CPU:"), "{}", run.stdout);
}

#[test]
fn era_5_has_vulkan_on_by_default() {
    let fx = Fixture::new();
    let dist = build(&fx, "v0.32.15");
    // --env reaches the server: the venus series' fraction, set explicitly, scales lavapipe,
    // and the vk-pipeline-cache series writes the pipelines it compiled to a file there.
    let cache = fx.scratch.path().join("pipeline-cache");
    let cache_env = format!("GGML_VK_PIPELINE_CACHE_DIR={}", cache.display());
    let j = smoke(
        &fx,
        &dist,
        &[
            "--no-cpu-fallback",
            "--env",
            "OLLAMA_VULKAN_MEMORY_FRACTION=0.5",
            "--env",
            &cache_env,
        ],
    )
    .ok()
    .json();
    let files: Vec<_> = fs::read_dir(&cache)
        .expect("the series made the cache folder")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        files.len() == 1 && files[0].starts_with("ggml-vulkan-") && files[0].ends_with(".bin"),
        "one cache file per device, renamed into place: {files:?}"
    );
    // A cache file that is not the driver's (truncated, from another machine, tampered):
    // the driver refuses the data, ggml starts empty and writes a good file back.
    let file = cache.join(&files[0]);
    fs::write(&file, b"not a pipeline cache").unwrap();
    smoke(&fx, &dist, &["--no-cpu-fallback", "--env", &cache_env]).ok();
    assert_ne!(
        fs::read(&file).unwrap(),
        b"not a pipeline cache",
        "the bad cache was replaced"
    );
    // cpu-amx-buffers: ggml-cpu's AMX buffers are host memory (the series adds "AMX" to
    // upstream's test, which fails without the fix).
    let src = dist.parent().unwrap().join("src/ollama");
    let go = std::process::Command::new("go")
        .args(["test", "./llm", "-run", "TestIsGPUBuffer", "-count=1"])
        .current_dir(&src)
        .env("GOFLAGS", "-mod=mod")
        .output()
        .unwrap();
    assert!(
        go.status.success()
            && fs::read_to_string(src.join("llm/llama_server_test.go"))
                .unwrap()
                .contains("\"AMX\""),
        "{}{}",
        String::from_utf8_lossy(&go.stdout),
        String::from_utf8_lossy(&go.stderr)
    );
    assert_eq!(j["runs"].as_array().unwrap().len(), 1);
    assert_eq!(j["runs"][0]["size_vram"], j["runs"][0]["size"]);
    assert_eq!(j["era"], "5");
    let rule = j["runs"][0]["memory_rule"].as_str().unwrap_or_default();
    assert!(rule.contains("reporting 0.50 of"), "{j}");
}

#[test]
fn a_dist_whose_vulkan_library_is_broken_fails_and_cleans_up() {
    let fx = Fixture::new();
    let dist = build(&fx, "v0.24.0");
    fs::write(
        dist.join("lib/ollama/vulkan/libggml-vulkan.so"),
        "not a library",
    )
    .unwrap();
    // A private TMPDIR: the test checks that smoke leaves nothing in it.
    let tmp = fx.scratch.path().join("tmp");
    fs::create_dir_all(&tmp).unwrap();
    let out = smoke_command(
        &fx,
        &[
            "smoke",
            dist.to_str().unwrap(),
            "--lavapipe",
            "--tokens",
            "8",
        ],
    )
    .env("TMPDIR", &tmp)
    .output()
    .unwrap();
    let run: Run = out.into();
    run.fails(1, &["vulkan:", "server log:"]);
    assert!(
        run.stderr.contains("not fully on the GPU") || run.stderr.contains("no Vulkan device"),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr.contains("load "),
        "the log tail shows why: {}",
        run.stderr
    );
    let left: Vec<_> = fs::read_dir(&tmp)
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert!(left.is_empty(), "temporary files removed: {left:?}");
}

#[test]
fn smoke_bad_inputs() {
    let fx = Fixture::new();
    let empty = fx.scratch.path().join("empty");
    fs::create_dir_all(&empty).unwrap();
    fx.run(&["smoke", empty.to_str().unwrap()])
        .fails(2, &["no bin/ollama here", "dist directory"]);
    fx.run(&["smoke", "/nonexistent/dist"])
        .fails(2, &["/nonexistent/dist"]);
    let fake = fx.scratch.path().join("fake");
    fs::create_dir_all(fake.join("bin")).unwrap();
    fs::write(fake.join("bin/ollama"), "").unwrap();
    fx.run(&["smoke", fake.to_str().unwrap()])
        .fails(2, &["manifest.json", "ollama-vulkan build"]);
    // A manifest of an older schema is refused by its version, not misread.
    fs::write(
        fake.join("manifest.json"),
        r#"{"schema": 1, "tool": "ollama-vulkan 0.1.0", "recipe": {"tag": "v0.24.0"}}"#,
    )
    .unwrap();
    fx.run(&["smoke", fake.to_str().unwrap()]).fails(
        2,
        &[
            "schema 1 is not the schema 2",
            "ollama-vulkan 0.1.0",
            "ollama-vulkan build",
        ],
    );
    fs::remove_file(fake.join("manifest.json")).unwrap();
    fx.run(&["smoke", fake.to_str().unwrap(), "--env", "NOVALUE"])
        .fails(2, &["`NOVALUE` is not KEY=VALUE"]);
    fx.run(&[
        "smoke",
        fake.to_str().unwrap(),
        "--env",
        "OLLAMA_HOST=0.0.0.0",
    ])
    .fails(2, &["smoke sets OLLAMA_HOST itself"]);
}

#[test]
fn ctrl_c_stops_the_server_and_removes_the_temp_files() {
    let fx = Fixture::new();
    let dist = build(&fx, "v0.24.0");
    let tmp = fx.scratch.path().join("tmp");
    fs::create_dir_all(&tmp).unwrap();
    let log = dist.parent().unwrap().join("smoke/serve-vulkan.log");
    let child = smoke_command(
        &fx,
        &[
            "smoke",
            dist.to_str().unwrap(),
            "--lavapipe",
            "--tokens",
            "100000",
        ],
    )
    .env("TMPDIR", &tmp)
    .stderr(std::process::Stdio::piped())
    .spawn()
    .unwrap();
    // Wait until the server is up (it logs its device), then interrupt as a terminal would.
    let started = std::time::Instant::now();
    while !fs::read_to_string(&log)
        .unwrap_or_default()
        .contains("Listening on")
    {
        assert!(
            started.elapsed().as_secs() < 120,
            "the server never started"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    std::thread::sleep(std::time::Duration::from_millis(300));
    assert!(std::process::Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap()
        .success());
    let out = child.wait_with_output().unwrap();
    assert_ne!(out.status.code(), Some(0));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("interrupted; the server was stopped"), "{err}");
    let server_left = std::process::Command::new("pgrep")
        .args([
            "-f",
            &format!("{} serve", dist.join("bin/ollama").display()),
        ])
        .output()
        .unwrap();
    assert!(
        server_left.stdout.is_empty(),
        "the server was stopped: {}",
        String::from_utf8_lossy(&server_left.stdout)
    );
    let left: Vec<_> = fs::read_dir(&tmp)
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert!(left.is_empty(), "temporary files removed: {left:?}");
}

#[test]
fn a_hostile_venus_lab_recipe_is_refused_before_anything_runs() {
    let s = crate::support::Scratch::new();
    let fake = s.path().join("fake");
    fs::create_dir_all(fake.join("bin")).unwrap();
    fs::write(fake.join("bin/ollama"), "").unwrap();
    let lab = s.project().join("recipes/lab/venus.toml");
    let shipped = fs::read_to_string(&lab).unwrap();
    for (from, to, needle) in [
        (
            "series = \"lab/virglrenderer-venus-vtest\"",
            "series = \"../../etc\"",
            "series `../../etc`",
        ),
        (
            "\"-Dvenus=true\"",
            "\"-Dprefix=/usr\"",
            "meson option `-Dprefix=/usr`",
        ),
        (
            "commit = \"1aeaf5e10a9c89096e96d09599aa419d5c50712f\"",
            "commit = \"HEAD; rm -rf /\"",
            "not a full commit id",
        ),
        ("[server]", "[server]\nunknown = 1\n[x]", "unknown field"),
        (
            "packages = [\"virgl-server\",",
            "packages = [\"virgl-server; rm -rf /\",",
            "[root] packages",
        ),
        (
            "env = { VKR_DEBUG = \"hostptr\" }",
            "env = { \"LD_PRELOAD=/tmp/x\" = \"1\" }",
            "[server] env",
        ),
    ] {
        assert!(shipped.contains(from), "{from}");
        fs::write(&lab, shipped.replace(from, to)).unwrap();
        let run = s.run(&["smoke", fake.to_str().unwrap(), "--venus"]);
        run.fails(2, &["recipes/lab/venus.toml", needle, "help:"]);
    }
    // --venus-host-icd names an ICD of the lab root, nothing else (its value reaches the
    // server's environment; a directory outside would have to be mounted into the root).
    for bad in [
        "/etc/passwd",
        "/usr/share/vulkan/icd.d/../../../../etc/x.json",
        "/usr/share/vulkan/icd.d/sub/x.json",
        "relative.json",
        "/usr/share/vulkan/icd.d/.json",
    ] {
        s.run(&[
            "smoke",
            fake.to_str().unwrap(),
            "--venus",
            "--venus-host-icd",
            bad,
        ])
        .fails(
            2,
            &[
                "--venus-host-icd",
                "not an ICD file directly under",
                "help:",
            ],
        );
    }
    // Nothing was made: no lab root, no virglrenderer build.
    assert!(!s.cache().join("venus").exists());
    assert!(!s.cache().join("builders").exists());
    fs::write(&lab, shipped).unwrap();
    // --venus checks the Venus default: an explicit fraction is refused.
    s.run(&[
        "smoke",
        fake.to_str().unwrap(),
        "--venus",
        "--env",
        "OLLAMA_VULKAN_MEMORY_FRACTION=0.5",
    ])
    .fails(2, &["Venus default (0.75)"]);
}
