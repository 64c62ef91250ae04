//! `build` end to end on fixture upstreams, through real go, cmake, glslc and Mesa
//! lavapipe, with the host builder (the trixie root is exercised on real tags, see
//! docs/VALIDATION.md). Caching is tested by what ran (logs, manifest), never by time.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::support::{git, Fixture, Run};

fn new_recipe(fx: &Fixture, tag: &str) -> PathBuf {
    fx.new_recipe(tag)
}

fn build(fx: &Fixture, recipe: &Path, dest: &Path) -> Run {
    fx.build_host(&[recipe.to_str().unwrap()], dest)
}

fn manifest(dist: &Path) -> serde_json::Value {
    serde_json::from_slice(&fs::read(dist.join("manifest.json")).unwrap()).unwrap()
}

/// Runs the built `ollama devices`, with lavapipe selected or not.
fn devices(dist: &Path, select_cpu_device: bool) -> (i32, String) {
    let mut cmd = Command::new(dist.join("bin/ollama"));
    cmd.arg("devices").env_remove("GGML_VK_VISIBLE_DEVICES");
    if select_cpu_device {
        cmd.env("GGML_VK_VISIBLE_DEVICES", "0");
    }
    let out = cmd.output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr),
    )
}

/// The memory lavapipe reports through the (patched) ggml-vulkan, with
/// OLLAMA_VULKAN_MEMORY_FRACTION set or not: (free, total, output).
fn device_memory(dist: &Path, fraction: Option<&str>) -> (u64, u64, String) {
    let mut cmd = Command::new(dist.join("bin/ollama"));
    cmd.arg("devices")
        .env("GGML_VK_VISIBLE_DEVICES", "0")
        .env_remove("OLLAMA_VULKAN_MEMORY_FRACTION");
    if let Some(f) = fraction {
        cmd.env("OLLAMA_VULKAN_MEMORY_FRACTION", f);
    }
    let out = cmd.output().unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    let num = |key: &str| -> u64 {
        let rest = text
            .split(key)
            .nth(1)
            .unwrap_or_else(|| panic!("no {key:?} in {text}"));
        rest.split_whitespace().next().unwrap().parse().unwrap()
    };
    (num("memory free "), num(" total "), text)
}

/// The shipped `venus` series at work: a Venus device reports 0.75 of its free memory;
/// lavapipe is no Venus device, so only an explicit OLLAMA_VULKAN_MEMORY_FRACTION scales it.
fn assert_venus_memory_rule(dist: &Path) {
    let (free, total, out) = device_memory(dist, None);
    assert!(free > 0 && free <= total, "{out}");
    assert!(
        !out.contains("reporting"),
        "not a Venus device: unscaled\n{out}"
    );
    let (half, _, out) = device_memory(dist, Some("0.5"));
    assert_eq!(half, (free as f64 * 0.5) as u64, "{out}");
    assert!(
        out.contains(&format!(
            "reporting 0.50 of {free} free bytes as free: {half}"
        )),
        "{out}"
    );
    let (same, _, out) = device_memory(dist, Some("2"));
    assert_eq!(same, free, "{out}");
    assert!(
        out.contains("ignoring OLLAMA_VULKAN_MEMORY_FRACTION=2"),
        "{out}"
    );
}

fn assert_lavapipe(dist: &Path) {
    let (code, out) = devices(dist, true);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("llvmpipe") && out.contains("compute pipeline ok"),
        "{out}"
    );
    // Like ggml, a CPU-type device is skipped unless selected.
    let (code, out) = devices(dist, false);
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("No devices found."), "{out}");
}

#[test]
fn era_4_builds_cpu_and_vulkan_presets_finds_lavapipe_and_caches() {
    let fx = Fixture::new();
    let recipe = new_recipe(&fx, "v0.24.0");
    let dest = fx.scratch.path().join("b4");
    let j = build(&fx, &recipe, &dest).ok().json();
    assert_eq!(j["cached"], false);
    let dist = PathBuf::from(j["dist"].as_str().unwrap());
    assert_eq!(dist, fs::canonicalize(&dest).unwrap().join("dist"));
    for f in [
        "bin/ollama",
        "lib/ollama/libggml-base.so",
        "lib/ollama/vulkan/libggml-vulkan.so",
        "manifest.json",
    ] {
        assert!(dist.join(f).is_file(), "{f} in the dist");
    }
    assert_lavapipe(&dist);
    assert_venus_memory_rule(&dist);
    let m = manifest(&dist);
    let steps: Vec<&str> = m["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        steps,
        [
            "CPU: configure",
            "CPU: compile",
            "CPU: install",
            "Vulkan: configure",
            "Vulkan: compile",
            "Vulkan: install",
            "ollama: go build"
        ]
    );
    assert_eq!(m["recipe"]["era"], "4");
    assert_eq!(
        m["ollama_commit"],
        git(&fx.ollama.dir, &["rev-parse", "v0.24.0^{commit}"]).as_str()
    );
    assert!(m["toolchain"]["glslc"]
        .as_str()
        .unwrap()
        .contains("shaderc"));
    assert!(m["toolchain"]["go"]
        .as_str()
        .unwrap()
        .starts_with("go version"));
    // The restored probe makes CMake ask glslc for real; bookworm's glslc lacks it.
    assert_eq!(
        m["vulkan_shader_features"]["GL_EXT_integer_dot_product"],
        m["glslc_extensions"]["GL_EXT_integer_dot_product"]
    );
    assert_eq!(m["series"][0]["name"], "ggml-feature-tests");
    assert_eq!(m["series"][0]["patches"][0]["status"], "clean");
    let checks = m["lib_checks"].as_array().unwrap();
    assert_eq!(checks.len(), 2);
    assert!(checks.iter().all(|c| c["ok"] == true));
    assert!(m["dist_files"]
        .as_array()
        .unwrap()
        .iter()
        .any(|f| f["path"] == "lib/ollama/vulkan/libggml-vulkan.so"));

    // Unchanged inputs: no-op. Nothing ran: the logs and the manifest are untouched.
    let before = fs::read(dist.join("manifest.json")).unwrap();
    let log = dest.join("logs/02-cpu-compile.log");
    fs::write(&log, "sentinel").unwrap();
    let j = build(&fx, &recipe, &dest).ok().json();
    assert_eq!(j["cached"], true);
    assert_eq!(fs::read(dist.join("manifest.json")).unwrap(), before);
    assert_eq!(fs::read_to_string(&log).unwrap(), "sentinel", "no step ran");

    // A cmake option is an input too: it rebuilds, and the configure step gets it.
    let with_option = fs::read_to_string(&recipe).unwrap()
        + "\n[build]\ncmake_options = [\"-DOLLAMA_VULKAN_TEST_OPTION=1\"]\n";
    fs::write(&recipe, &with_option).unwrap();
    let j = build(&fx, &recipe, &dest).ok().json();
    assert_eq!(j["cached"], false, "a changed cmake option rebuilds");
    let configure = fs::read_to_string(dest.join("logs/01-cpu-configure.log")).unwrap();
    assert!(
        configure.contains("-DOLLAMA_VULKAN_TEST_OPTION=1"),
        "{configure}"
    );
    fs::write(&log, "sentinel").unwrap();

    // One patch line changed (and pinned): a rebuild that reuses ccache and GOCACHE.
    let series = fx.scratch.project().join("patches/ggml-feature-tests");
    let patch = series.join("0001-ggml-vulkan-restore-the-glslc-feature-test-shaders.patch");
    let text = fs::read_to_string(&patch)
        .unwrap()
        .replacen("+void main()", "+void  main()", 1);
    fs::write(&patch, text).unwrap();
    let sums = ollama_vulkan::patch::series::Series::refresh_sums(&series).unwrap();
    let old_pin = ollama_vulkan::patch::series::Series::load(
        &Path::new(crate::support::REPO_ROOT).join("patches/ggml-feature-tests"),
    )
    .unwrap()
    .hash;
    let r = fs::read_to_string(&recipe).unwrap()
        + &format!(
            "\n[[series]]\nname = \"ggml-feature-tests\"\nrepo = \"ollama\"\nsha256 = \"{sums}\"\n"
        );
    assert_ne!(sums, old_pin);
    fs::write(&recipe, r).unwrap();
    let cache = fx.scratch.cache();
    let ccache_stats = |what: &str| -> u64 {
        let out = Command::new("ccache")
            .args(["--print-stats"])
            .env("CCACHE_DIR", cache.join("ccache"))
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .find_map(|l| {
                l.strip_prefix(&format!("{what}\t"))
                    .map(|v| v.trim().parse().unwrap())
            })
            .unwrap_or(0)
    };
    let j = build(&fx, &recipe, &dest).ok().json();
    assert_eq!(j["cached"], false, "a changed patch rebuilds");
    assert_ne!(
        fs::read_to_string(&log).unwrap(),
        "sentinel",
        "the steps ran again"
    );
    // Same pins: the build dir was carried over and sources kept their mtimes, so make
    // recompiled nothing of the unchanged library.
    let cpu = fs::read_to_string(&log).unwrap();
    assert!(!cpu.contains("Building C object"), "incremental: {cpu}");
    assert!(j["dist"].is_string());
    // A fresh build dir with the same inputs compiles again, from ccache and GOCACHE.
    let hits_before = ccache_stats("direct_cache_hit") + ccache_stats("preprocessed_cache_hit");
    let other = fx.scratch.path().join("b4-fresh");
    build(&fx, &recipe, &other).ok();
    let fresh = fs::read_to_string(other.join("logs/02-cpu-compile.log")).unwrap();
    assert!(fresh.contains("Building C object"), "{fresh}");
    let hits_after = ccache_stats("direct_cache_hit") + ccache_stats("preprocessed_cache_hit");
    assert!(
        hits_after > hits_before,
        "the fresh build reused ccache ({hits_before} -> {hits_after})"
    );
    assert!(
        fs::read_dir(cache.join("go-build")).unwrap().count() > 0,
        "GOCACHE lives in the cache dir"
    );
    assert_lavapipe(&dist);
}

#[test]
fn without_the_feature_test_series_the_vulkan_library_does_not_load_and_the_build_says_why() {
    let fx = Fixture::new();
    let recipe = new_recipe(&fx, "v0.24.0");
    // An empty series list replaces the template's.
    let text = fs::read_to_string(&recipe).unwrap().replacen(
        "era = \"4\"\n",
        "era = \"4\"\nseries = []\n",
        1,
    );
    fs::write(&recipe, text).unwrap();
    let dest = fx.scratch.path().join("b4");
    let run = build(&fx, &recipe, &dest);
    let glslc_has_it = {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("t.comp");
        fs::write(
            &f,
            "#version 460\n#extension GL_EXT_integer_dot_product : require\nvoid main() {}\n",
        )
        .unwrap();
        Command::new("glslc")
            .arg(&f)
            .arg("-o")
            .arg(dir.path().join("t.spv"))
            .status()
            .unwrap()
            .success()
    };
    if glslc_has_it {
        // A glslc that has the extension builds fine either way.
        run.ok();
        return;
    }
    run.fails(
        1,
        &[
            "lib/ollama/vulkan/libggml-vulkan.so: does not load",
            "dot_len",
            "feature-tests",
        ],
    );
    assert!(!dest.join("dist").exists(), "no dist that looks complete");
    let log = fs::read_to_string(dest.join("logs/05-vulkan-compile.log")).unwrap();
    assert!(
        log.contains("cannot compile dot"),
        "the shader failure is in the log"
    );
}

#[test]
fn era_5_builds_llama_server_presets_from_the_pinned_tree() {
    let fx = Fixture::new();
    let recipe = new_recipe(&fx, "v0.32.15");
    let dest = fx.scratch.path().join("b5");
    let j = build(&fx, &recipe, &dest).ok().json();
    let dist = PathBuf::from(j["dist"].as_str().unwrap());
    assert!(dist.join("lib/ollama/libggml-base.so").is_file());
    assert!(dist.join("lib/ollama/vulkan/libggml-vulkan.so").is_file());
    assert_lavapipe(&dist);
    assert_venus_memory_rule(&dist);
    let m = manifest(&dist);
    assert_eq!(m["llamacpp_commit"], fx.llama.commits[10].as_str());
    let configure = fs::read_to_string(dest.join("logs/04-vulkan-configure.log")).unwrap();
    assert!(
        configure.contains(&format!(
            "-DFETCHCONTENT_SOURCE_DIR_LLAMA_CPP={}",
            fs::canonicalize(&dest)
                .unwrap()
                .join("src/llama.cpp")
                .display()
        )),
        "{configure}"
    );
}

/// The shipped `legacy-llama-vulkan` series (pinned by the era-1b template for v0.1.48)
/// on the fixture shaped like upstream: gen_linux.sh builds a Vulkan runner, and the gpu
/// package's probe finds lavapipe through the real loader and scales its memory.
#[test]
fn era_1b_builds_the_vulkan_runner_our_series_adds_and_embeds_it() {
    let fx = Fixture::new();
    let recipe = new_recipe(&fx, "v0.1.48");
    let dest = fx.scratch.path().join("b1");
    let j = build(&fx, &recipe, &dest).ok().json();
    let dist = PathBuf::from(j["dist"].as_str().unwrap());
    // The runners are embedded: the dist is the binary alone.
    assert!(dist.join("bin/ollama").is_file());
    assert!(!dist.join("lib").exists());
    assert_lavapipe_embedded(&dist);
    let m = manifest(&dist);
    assert_eq!(m["series"][0]["name"], "legacy-llama-vulkan");
    assert!(m["series"][0]["patches"]
        .as_array()
        .unwrap()
        .iter()
        .all(|p| p["status"] == "clean" || p["status"] == "offset"));
    // The payload is gzipped (gen_linux.sh's compress): checked unpacked, with its library.
    assert_eq!(m["lib_checks"][0]["ok"], true, "{}", m["lib_checks"]);
    assert!(m["lib_checks"][0]["lib"]
        .as_str()
        .unwrap()
        .ends_with("vulkan/bin/ollama_llama_server.gz"));
    let bin = dest.join("src/ollama/llm/build/linux/x86_64/vulkan/bin");
    assert!(bin.join("ollama_llama_server.gz").is_file());
    assert!(
        fs::read_dir(&bin)
            .unwrap()
            .flatten()
            .all(|e| !e.file_name().to_string_lossy().starts_with(".ldd-check")),
        "the library check leaves nothing behind"
    );

    // The probe, through the Vulkan loader, in the patched tree.
    let src = dest.join("src/ollama");
    let gpus = |env: &[(&str, &str)]| -> (serde_json::Value, String) {
        let mut c = Command::new("go");
        c.args(["run", "./cmd/gpus"]).current_dir(&src);
        for k in [
            "GGML_VK_VISIBLE_DEVICES",
            "OLLAMA_VULKAN_MEMORY_FRACTION",
            "OLLAMA_SKIP_VULKAN",
        ] {
            c.env_remove(k);
        }
        c.envs(env.iter().copied());
        let out = c.output().unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(out.status.success(), "{stdout}{stderr}");
        (serde_json::from_str(stdout.trim()).unwrap(), stderr)
    };
    // lavapipe is a CPU-type device: left out unless GGML_VK_VISIBLE_DEVICES names it.
    let (none, _) = gpus(&[]);
    assert_eq!(none["gpus"][0]["library"], "cpu", "{none}");
    let (full, log) = gpus(&[
        ("GGML_VK_VISIBLE_DEVICES", "0"),
        ("OLLAMA_VULKAN_MEMORY_FRACTION", "1"),
    ]);
    let g = &full["gpus"][0];
    assert_eq!(g["library"], "vulkan", "{full}");
    assert_eq!(g["gpu_id"], "0");
    assert!(g["name"].as_str().unwrap().contains("llvmpipe"), "{full}");
    assert_eq!(full["env"], "GGML_VK_VISIBLE_DEVICES=0");
    assert!(
        log.contains("msg=\"Vulkan GPU\"") && log.contains("type=cpu"),
        "{log}"
    );
    let free = g["free_memory"].as_u64().unwrap();
    assert!(free > 0 && free <= g["total_memory"].as_u64().unwrap());
    // The memory rule: the default fraction is 0.75, and OLLAMA_VULKAN_MEMORY_FRACTION sets it.
    let (dflt, log) = gpus(&[("GGML_VK_VISIBLE_DEVICES", "0")]);
    assert_eq!(
        dflt["gpus"][0]["free_memory"].as_u64().unwrap(),
        (free as f64 * 0.75) as u64
    );
    assert!(log.contains("memory_fraction=0.75"), "{log}");
    let (half, _) = gpus(&[
        ("GGML_VK_VISIBLE_DEVICES", "0"),
        ("OLLAMA_VULKAN_MEMORY_FRACTION", "0.5"),
    ]);
    assert_eq!(half["gpus"][0]["free_memory"].as_u64().unwrap(), free / 2);
    let (bad, log) = gpus(&[
        ("GGML_VK_VISIBLE_DEVICES", "0"),
        ("OLLAMA_VULKAN_MEMORY_FRACTION", "1.5"),
    ]);
    assert_eq!(
        bad["gpus"][0]["free_memory"],
        dflt["gpus"][0]["free_memory"]
    );
    assert!(
        log.contains("invalid OLLAMA_VULKAN_MEMORY_FRACTION") && log.contains("value=1.5"),
        "{log}"
    );
    // OLLAMA_SKIP_VULKAN switches the probe off and says so.
    let (skip, log) = gpus(&[
        ("GGML_VK_VISIBLE_DEVICES", "0"),
        ("OLLAMA_SKIP_VULKAN", "1"),
    ]);
    assert_eq!(skip["gpus"][0]["library"], "cpu");
    assert!(log.contains("Vulkan GPU discovery skipped"), "{log}");
}

fn assert_lavapipe_embedded(dist: &Path) {
    let (code, out) = devices(dist, true);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("llvmpipe") && out.contains("compute pipeline ok"),
        "{out}"
    );
}

#[test]
fn build_ollama_tag_makes_the_recipe_then_builds() {
    let fx = Fixture::new();
    let dest = fx.scratch.path().join("bt");
    let j = fx
        .run(&[
            "build",
            "--ollama",
            "v0.24.0",
            "--builder",
            "host",
            "--dest",
            dest.to_str().unwrap(),
            "--json",
        ])
        .ok()
        .json();
    assert!(PathBuf::from(j["manifest"].as_str().unwrap()).is_file());
    assert!(fx
        .scratch
        .project()
        .join("work/recipes/ollama-v0.24.0.toml")
        .is_file());
}

#[test]
fn a_failing_step_names_the_step_and_its_log_and_a_killed_build_leaves_no_dist() {
    let fx = Fixture::new();
    let recipe = new_recipe(&fx, "v0.24.0");
    let good = fs::read_to_string(&recipe).unwrap();
    fs::write(
        &recipe,
        good.clone() + "\n[build]\ngo_flags = [\"-not-a-go-flag\"]\n",
    )
    .unwrap();
    let dest = fx.scratch.path().join("bf");
    let run = build(&fx, &recipe, &dest);
    run.fails(
        1,
        &[
            "step `ollama: go build` failed",
            "exited with",
            "-not-a-go-flag",
            "logs/07-ollama-go-build.log",
        ],
    );
    assert!(!dest.join("dist").exists());

    // Killed mid-compile: no complete-looking dist; the next run succeeds.
    fs::write(&recipe, &good).unwrap();
    let mut child = fx
        .scratch
        .command(&[])
        .args([
            "build",
            recipe.to_str().unwrap(),
            "--builder",
            "host",
            "--dest",
            dest.to_str().unwrap(),
            "-q",
        ])
        .args(fx.mirror_args())
        .spawn()
        .unwrap();
    let started = std::time::Instant::now();
    while !dest.join("logs/02-cpu-compile.log").exists()
        || fs::metadata(dest.join("logs/02-cpu-compile.log"))
            .unwrap()
            .modified()
            .unwrap()
            < std::time::SystemTime::now() - std::time::Duration::from_secs(30)
    {
        assert!(
            started.elapsed().as_secs() < 60,
            "the build never reached its compile step"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(
        !dest.join("dist/manifest.json").exists(),
        "no dist that looks complete"
    );
    let j = build(&fx, &recipe, &dest).ok().json();
    assert_eq!(j["cached"], false);
    assert!(dest.join("dist/manifest.json").is_file());
    assert!(!dest.join("dist.tmp").exists());
}

#[test]
fn build_bad_inputs() {
    let fx = Fixture::new();
    let t = fx.scratch.project().join("recipes/era-4.toml");
    fx.run(&["build", t.to_str().unwrap(), "--builder", "host"])
        .fails(2, &["is an era template; build needs a per-tag recipe"]);
    fx.run(&["build", "--builder", "host"])
        .fails(2, &["RECIPE"]);
    fx.run(&["build", "--ollama", "v0.12.5", "--builder", "host"])
        .fails(3, &["v0.12.5"]);
    // A recipe whose template has no steps (a hand-made template).
    let recipe = new_recipe(&fx, "v0.32.15");
    let text = fs::read_to_string(&recipe).unwrap() + "\n[build]\ndriver = \"llama-server\"\n";
    fs::write(&recipe, &text).unwrap();
    let tpl = fs::read_to_string(fx.scratch.project().join("recipes/era-5.toml")).unwrap();
    let cut = tpl.split("\n[[build.steps]]").next().unwrap().to_string()
        + &tpl[tpl.find("\n[image]").unwrap()..];
    fs::write(fx.scratch.project().join("recipes/era-5.toml"), cut).unwrap();
    fx.run(&["build", recipe.to_str().unwrap(), "--builder", "host"])
        .fails(3, &["has no [[build.steps]]"]);
}

#[test]
fn doctor_lists_the_toolchain_and_what_to_install() {
    let fx = Fixture::new();
    let j = fx.run(&["doctor", "--json"]).json();
    let checks = j["checks"].as_array().unwrap();
    let find = |name: &str| {
        checks
            .iter()
            .find(|c| c["name"].as_str().unwrap().starts_with(name))
            .unwrap_or_else(|| panic!("{name} in {checks:?}"))
    };
    assert_eq!(find("go")["ok"], true);
    assert_eq!(find("glslc")["ok"], true);
    assert!(find("glslc")["found"].as_str().unwrap().contains("shaderc"));
    assert!(find("Vulkan headers")["found"]
        .as_str()
        .unwrap()
        .starts_with("1."));
    assert!(find("glslc supports GL_KHR_cooperative_matrix")["required"] == false);
    // With an era-5 recipe, the CMake minimum is 3.24 and SPIRV-Headers is required.
    let recipe = new_recipe(&fx, "v0.32.15");
    let run = fx.run(&["doctor", recipe.to_str().unwrap()]);
    assert!(run.stdout.contains("cmake ≥ 3.24"), "{}", run.stdout);
    assert!(run.stdout.contains("SPIRV-Headers"), "{}", run.stdout);
    if run.code != 0 {
        assert!(
            run.stdout.contains("→"),
            "every failure says what to install: {}",
            run.stdout
        );
    }
}

/// The default builder on Debian as root: a trixie root made with mmdebstrap. The root is
/// shared by every test run (it lives in the target dir), made once.
#[test]
fn the_trixie_builder_root_builds_and_smokes_the_era_4_fixture() {
    if !crate::support::is_debian_root() {
        // `build` refuses the root builder here with a clear error instead.
        let fx = Fixture::new();
        let recipe = new_recipe(&fx, "v0.24.0");
        fx.run(&["build", recipe.to_str().unwrap(), "--builder", "root"])
            .fails(1, &["--builder host"]);
        return;
    }
    let fx = Fixture::new();
    crate::support::share_builders(&fx);
    // Our Mesa (recipes/lab/mesa.toml) is built once per source, series and root too.
    crate::support::share_cached(&fx, "mesa");
    let recipe = new_recipe(&fx, "v0.24.0");
    let dest = fx.scratch.path().join("broot");
    let j = fx
        .run(&[
            "build",
            recipe.to_str().unwrap(),
            "--builder",
            "root",
            "--dest",
            dest.to_str().unwrap(),
            "--json",
        ])
        .ok()
        .json();
    let dist = PathBuf::from(j["dist"].as_str().unwrap());
    let m = manifest(&dist);
    assert_eq!(m["builder"]["kind"], "root");
    assert_eq!(m["builder"]["suite"], "trixie");
    // trixie's toolchain, not the host's (bookworm: cmake 3.25, gcc 12, Vulkan 1.3.239).
    assert!(
        m["toolchain"]["cmake"].as_str().unwrap().contains("3.31"),
        "{}",
        m["toolchain"]
    );
    assert!(
        m["toolchain"]["cc"].as_str().unwrap().contains(" 14."),
        "{}",
        m["toolchain"]
    );
    assert!(
        m["toolchain"]["vulkan_headers"]
            .as_str()
            .unwrap()
            .starts_with("1.4."),
        "{}",
        m["toolchain"]
    );
    // trixie's glslc has integer dot: the restored probe lets the dot shader in.
    assert_eq!(
        m["vulkan_shader_features"]["GL_EXT_integer_dot_product"],
        true
    );
    assert!(m["lib_checks"]
        .as_array()
        .unwrap()
        .iter()
        .all(|c| c["ok"] == true));
    // The smoke test runs the server inside the same root (the binaries need its libc).
    let smoke = |extra: &[&str]| -> serde_json::Value {
        let out = fx
            .scratch
            .command(&[])
            .args(["smoke", dist.to_str().unwrap(), "--tokens", "4", "--json"])
            .args(extra)
            .env("OLLAMA_VULKAN_PYTHON", crate::support::smoke_python())
            .output()
            .unwrap();
        let run: Run = out.into();
        run.ok().json()
    };
    let s = smoke(&["--lavapipe"]);
    assert_eq!(s["runs"][0]["eval_count"], 4);
    assert!(s["runs"][0]["device"]
        .as_str()
        .unwrap()
        .contains("llvmpipe"));
    assert!(
        fs::read_to_string(s["runs"][0]["log"].as_str().unwrap())
            .unwrap()
            .contains("integer dot shader"),
        "the dot shader is in the library built in the root"
    );

    // The same dist on a real Mesa Venus device: Debian's vtest server on lavapipe, in the
    // same root (the lab's packages are the builder's). The fixture maps no device memory,
    // so the stock server serves it (docs/VENUS.md).
    let v = smoke(&["--venus", "--venus-server", "stock"]);
    let vulkan = &v["runs"][0];
    assert!(
        vulkan["device"]
            .as_str()
            .unwrap()
            .starts_with("Virtio-GPU Venus (llvmpipe"),
        "{vulkan}"
    );
    // The Venus branch of the memory rule with its default, from the server's log.
    assert!(
        vulkan["memory_rule"]
            .as_str()
            .unwrap()
            .contains("(Venus): reporting 0.75 of"),
        "{vulkan}"
    );
    assert_eq!(vulkan["size"], vulkan["size_vram"]);
    assert!(
        v["venus"]["mesa"].as_str().unwrap().starts_with("25."),
        "{}",
        v["venus"]
    );
    assert!(v["venus"]["virglrenderer"]
        .as_str()
        .unwrap()
        .contains("Debian virgl-server"));
    // The same on our Venus driver for krunkit: Debian's mesa source package with
    // patches/lab/mesa-venus-krunkit, fetched with apt-get source in the root and built
    // there once (cached under the test cache), selected with VK_DRIVER_FILES.
    let k = smoke(&[
        "--venus",
        "--venus-server",
        "stock",
        "--venus-mesa",
        "krunkit",
    ]);
    let vulkan = &k["runs"][0];
    assert!(
        vulkan["device"]
            .as_str()
            .unwrap()
            .starts_with("Virtio-GPU Venus (llvmpipe"),
        "{vulkan}"
    );
    assert!(
        vulkan["memory_rule"]
            .as_str()
            .unwrap()
            .contains("(Venus): reporting 0.75 of"),
        "{vulkan}"
    );
    assert_eq!(vulkan["size"], vulkan["size_vram"]);
    let mesa = k["venus"]["mesa"].as_str().unwrap();
    assert!(
        mesa.starts_with("25.0.7-2+deb13u1 + lab/mesa-venus-krunkit (") && mesa.contains("(ours"),
        "{mesa}"
    );
    // The build the report names, under the shared test cache (reused by later runs).
    let out = PathBuf::from(
        mesa.split("(ours, ")
            .nth(1)
            .and_then(|r| r.strip_suffix(')'))
            .unwrap(),
    );
    assert!(
        out.starts_with(fx.scratch.cache().join("mesa")),
        "{}",
        out.display()
    );
    assert!(out.join("libvulkan_virtio.so").is_file());
    let icd: serde_json::Value =
        serde_json::from_slice(&fs::read(out.join("virtio_icd.json")).unwrap()).unwrap();
    assert_eq!(
        icd["ICD"]["library_path"],
        "/usr/lib/x86_64-linux-gnu/libvulkan_virtio.so"
    );
    // A --mirror mesa=DIR whose files do not match the pins is refused (exit 2) before
    // anything is built or published: the source package as fetched above, one tarball
    // changed, in a cache without the build.
    let shared_mesa = Path::new(env!("CARGO_TARGET_TMPDIR")).join("mesa");
    let sources = fs::read_dir(shared_mesa.join("sources"))
        .unwrap()
        .flatten()
        .find(|e| e.file_name().to_string_lossy().starts_with("mesa_"))
        .unwrap()
        .path();
    let bad = fx.scratch.path().join("mesa-bad");
    fs::create_dir_all(&bad).unwrap();
    for e in fs::read_dir(&sources).unwrap().flatten() {
        fs::copy(e.path(), bad.join(e.file_name())).unwrap();
    }
    let debian = bad.join("mesa_25.0.7-2+deb13u1.debian.tar.xz");
    let mut bytes = fs::read(&debian).unwrap();
    bytes.push(b'x');
    fs::write(&debian, bytes).unwrap();
    let other = fx.scratch.path().join("other-cache");
    fs::create_dir_all(&other).unwrap();
    std::os::unix::fs::symlink(
        Path::new(env!("CARGO_TARGET_TMPDIR")).join("builders"),
        other.join("builders"),
    )
    .unwrap();
    let mirror = format!("mesa={}", bad.display());
    let run: Run = fx
        .scratch
        .command(&[])
        .args(["--offline", "--mirror", &mirror])
        .args([
            "smoke",
            dist.to_str().unwrap(),
            "--venus",
            "--venus-server",
            "stock",
        ])
        .args(["--venus-mesa", "krunkit"])
        .env("OLLAMA_VULKAN_CACHE", &other)
        .output()
        .unwrap()
        .into();
    run.fails(
        2,
        &[
            "mesa_25.0.7-2+deb13u1.debian.tar.xz has SHA-256",
            "expected 7ea51db6",
            "help:",
        ],
    );
    let published: Vec<_> = fs::read_dir(other.join("mesa"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .filter(|n| n != ".lock")
        .collect();
    assert!(published.is_empty(), "{published:?}");
    // The server and its render process are gone.
    let left = Command::new("pgrep")
        .args(["-f", "virgl_test_server|virgl_render_server"])
        .output()
        .unwrap();
    assert!(
        left.stdout.is_empty(),
        "{}",
        String::from_utf8_lossy(&left.stdout)
    );
}
