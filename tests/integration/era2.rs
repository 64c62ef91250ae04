//! Era 2 (v0.4.0-ci3–v0.5.7): llama.cpp vendored flat into llama/, runners built by GNU
//! make; ggml-vulkan and its header placed from the llama.cpp commit llama/vendoring
//! names, in the pin's own layout (`[llamacpp] backend` entries with `tags`), our
//! Makefile.vulkan and discover series, the make steps of the tag's layout (build steps
//! with `tags`), a build on the host and the smoke test on lavapipe; and the hostile
//! `tags` and `backend` values, refused before anything is written.

use std::fs;
use std::path::{Path, PathBuf};

use crate::support::Fixture;

use crate::era3::git;

const SERIES: [&str; 2] = ["vulkan-era2-runner", "vulkan-era3-discover"];
/// v0.4.0-ci3–v0.4.1 also get upstream's v0.4.2 num_predict fix (the fixture runner has
/// the off-by-one, so without it the smoke counts 9 tokens for 8).
const SERIES_V04: [&str; 3] = [
    "vulkan-era2-runner",
    "vulkan-era3-discover",
    "runner-num-predict",
];

/// v0.4.x: the pin (b13) keeps ggml-vulkan in ggml/src/ggml-vulkan.cpp + vulkan-shaders/;
/// llama/Makefile and llama/make/ build the CPU runners from llama/.
#[test]
fn era_2_v0_4_places_the_old_backend_layout_builds_runners_and_generates_on_lavapipe() {
    let fx = Fixture::new();
    build_and_smoke(
        &fx,
        "v0.4.0",
        12,
        &[
            ("ggml/include/ggml-vulkan.h", "llama/ggml-vulkan.h"),
            (
                "ggml/src/ggml-vulkan.cpp",
                "llama/ggml-vulkan/ggml-vulkan.cpp",
            ),
            (
                "ggml/src/vulkan-shaders",
                "llama/ggml-vulkan/vulkan-shaders",
            ),
        ],
        &[
            ("CPU runners: make", Some("llama"), "make -j"),
            (
                "Vulkan runner: make",
                Some("llama"),
                "make -f Makefile.vulkan",
            ),
        ],
        &["cpu", "cpu_avx", "cpu_avx2", "vulkan"],
        &SERIES_V04,
    );
}

/// v0.5.2+: the pin (b14) keeps ggml-vulkan in ggml/src/ggml-vulkan/; root make/ builds
/// the CPU runners (no plain `cpu` one) from cmd/runner.
#[test]
fn era_2_v0_5_2_places_the_new_backend_layout_builds_runners_and_generates_on_lavapipe() {
    let fx = Fixture::new();
    build_and_smoke(
        &fx,
        "v0.5.2",
        13,
        &[
            ("ggml/include/ggml-vulkan.h", "llama/ggml-vulkan.h"),
            ("ggml/src/ggml-vulkan", "llama/ggml-vulkan"),
        ],
        &[
            ("CPU runners: make", None, "make -f make/Makefile.cpu"),
            ("Vulkan runner: make", None, "make -f llama/Makefile.vulkan"),
        ],
        &["cpu_avx", "cpu_avx2", "vulkan"],
        &SERIES,
    );
}

/// `pin`: the index of the llama.cpp commit in `fx.llama.commits`; `placed`: the
/// backend entries the tag keeps (from, to); `steps`: the make steps it keeps (name, its
/// working directory, the start of its command); `runners`: the runner dirs of the dist.
fn build_and_smoke(
    fx: &Fixture,
    tag: &str,
    pin: usize,
    placed: &[(&str, &str)],
    steps: &[(&str, Option<&str>, &str)],
    runners: &[&str],
    series: &[&str],
) {
    let llama_commit = fx.llama.commits[pin].as_str();
    let j = fx
        .run(&["recipe", "new", "--ollama", tag, "--json"])
        .ok()
        .json();
    assert_eq!(j["era"], "2");
    assert_eq!(j["template"], "era-2");
    // llama/vendoring's LLAMACPP_BASE_COMMIT.
    assert_eq!(j["llamacpp_commit"], llama_commit);
    let recipe = PathBuf::from(j["recipe_path"].as_str().unwrap());

    // The tag's recipe keeps the steps and backend entries whose `tags` hold the tag.
    let show = fx
        .run(&["recipe", "show", recipe.to_str().unwrap(), "--json"])
        .ok()
        .json();
    let shown: Vec<(String, Option<String>, String)> = show["build"]["steps"]
        .as_array()
        .unwrap_or_else(|| panic!("no build.steps: {show:#}"))
        .iter()
        .map(|s| {
            let run: Vec<&str> = s["run"]
                .as_array()
                .unwrap()
                .iter()
                .map(|a| a.as_str().unwrap())
                .collect();
            (
                s["name"].as_str().unwrap().to_string(),
                s["cwd"].as_str().map(String::from),
                run.join(" "),
            )
        })
        .collect();
    assert_eq!(shown.len(), 1 + steps.len(), "{shown:#?}");
    assert_eq!(shown[0].0, "ollama: go build");
    for ((name, cwd, run), (want_name, want_cwd, want_run)) in shown[1..].iter().zip(steps) {
        assert_eq!(name, want_name, "{shown:#?}");
        assert_eq!(cwd.as_deref(), *want_cwd, "{name}");
        assert!(run.starts_with(want_run), "{name}: {run}");
    }
    let backend: Vec<(String, String)> = show["llamacpp"]["backend"]
        .as_array()
        .unwrap_or_else(|| panic!("no llamacpp.backend: {show:#}"))
        .iter()
        .map(|b| {
            (
                b["from"].as_str().unwrap().to_string(),
                b["to"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let want: Vec<(String, String)> = placed
        .iter()
        .map(|(f, t)| (f.to_string(), t.to_string()))
        .collect();
    assert_eq!(backend, want);

    // Our series apply to the pinned tree.
    let patches = crate::era3::check_series(fx, &recipe, series);

    let dest = fx.scratch.path().join(format!("b-{tag}"));
    let b = fx.build_host(&[recipe.to_str().unwrap()], &dest);
    let b = b.ok().json();
    let dist = PathBuf::from(b["dist"].as_str().unwrap());
    assert!(dist.join("bin/ollama").is_file());
    let mut found: Vec<String> = fs::read_dir(dist.join("lib/ollama/runners"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    found.sort();
    assert_eq!(found, runners);
    for r in runners {
        assert!(
            dist.join(format!("lib/ollama/runners/{r}/ollama_llama_server"))
                .is_file(),
            "{r}"
        );
    }

    // The placements: a commit per entry on top of the pin, in the template's order,
    // before the series' commits, with exactly the llama.cpp paths' files.
    let tree = dest.join("src/ollama");
    let n = placed.len();
    let log = git(&tree, &["log", "--format=%s", &format!("-{}", patches + n)]);
    let subjects: Vec<&str> = log.lines().collect();
    for (i, (_, to)) in placed.iter().enumerate() {
        assert_eq!(
            subjects[patches + n - 1 - i],
            format!("Place {to} from llama.cpp {}", &llama_commit[..12]),
            "{log}"
        );
    }
    let last = format!("HEAD~{patches}");
    let pinned = format!("HEAD~{}", patches + n);
    assert_eq!(
        git(&tree, &["rev-parse", &pinned]).trim(),
        git(&fx.ollama.dir, &["rev-parse", &format!("{tag}^{{commit}}")]).trim(),
        "the placements sit on the pin"
    );
    let got = git(&tree, &["diff", "--name-only", &pinned, &last, "--"]);
    let mut got: Vec<&str> = got.lines().collect();
    got.sort();
    let mut expected: Vec<String> = Vec::new();
    for (from, to) in placed {
        let files = git(
            &fx.llama.repo.dir,
            &["ls-tree", "-r", "--name-only", llama_commit, from],
        );
        assert!(!files.is_empty(), "{from} in the pin");
        for f in files.lines() {
            expected.push(format!("{to}{}", &f[from.len()..]));
        }
    }
    expected.sort();
    assert_eq!(got, expected);
    assert!(
        expected
            .iter()
            .any(|p| p == "llama/ggml-vulkan/vulkan-shaders/vulkan-shaders-gen.cpp"),
        "the shader generator comes with the placed shaders"
    );
    // The series' Makefile.vulkan is there; the tree is clean but for the build output.
    assert!(tree.join("llama/Makefile.vulkan").is_file());
    assert!(tree
        .join("llama/build")
        .read_dir()
        .is_ok_and(|mut d| d.next().is_some()));

    // Smoke on lavapipe: the Vulkan runner picked for discover's GpuInfo{Library:
    // "vulkan"}, then OLLAMA_SKIP_VULKAN=1 and a CPU runner.
    let j = crate::smoke::smoke(fx, &dist, &[]).ok().json();
    let v = &j["runs"][0];
    assert_eq!(v["mode"], "vulkan", "{j}");
    assert_eq!(v["eval_count"], 8);
    assert!(v["device"].as_str().unwrap().contains("llvmpipe"), "{v}");
    assert_eq!(v["size_vram"], v["size"], "fully on the GPU");
    assert_eq!(v["layers_offloaded"], "2/2");
    let log = fs::read_to_string(v["log"].as_str().unwrap()).unwrap();
    assert!(
        log.contains("runners/vulkan/ollama_llama_server -n-predict 8"),
        "the Vulkan runner generated:\n{log}"
    );
    assert!(log.contains("compute pipeline ok"), "{log}");
    // Built with GPU_RUNNER_CPU_FLAGS (common-defs.make's `avx`) as Go tags, and
    // GGML_USE_VULKAN for the vendored llama.cpp.
    assert!(log.contains("system info: AVX = 1 | AVX2 = 0"), "{log}");
    assert!(!log.contains("no GPU backend"), "{log}");
    let c = &j["runs"][1];
    assert_eq!(c["mode"], "cpu");
    assert_eq!(c["eval_count"], 8);
    assert_eq!(c["size_vram"], 0);
    assert!(
        c["cpu_reason"]
            .as_str()
            .unwrap()
            .contains("Vulkan GPU discovery skipped"),
        "{c}"
    );
    let log = fs::read_to_string(c["log"].as_str().unwrap()).unwrap();
    assert!(
        log.contains("/ollama_llama_server -n-predict 8")
            && !log.contains("runners/vulkan/ollama_llama_server"),
        "a CPU runner generated:\n{log}"
    );
    assert!(log.contains("llama: no GPU backend in this build"), "{log}");
}

/// A per-tag recipe of `tag` with `extra` appended (recipe new writes `[llamacpp]` last,
/// so a `backend = …` line lands in that table).
fn recipe_with(fx: &Fixture, tag: &str, extra: &str) -> PathBuf {
    let recipe = fx.new_recipe(tag);
    let text = fs::read_to_string(&recipe).unwrap();
    assert!(text.trim_end().lines().any(|l| l == "[llamacpp]"), "{text}");
    fs::write(&recipe, text + extra).unwrap();
    recipe
}

/// The 1-based line of `needle` in `file`.
fn line_of(file: &Path, needle: &str) -> usize {
    fs::read_to_string(file)
        .unwrap()
        .lines()
        .position(|l| l.contains(needle))
        .unwrap_or_else(|| panic!("{needle} not in {}", file.display()))
        + 1
}

#[test]
fn hostile_step_tags_and_backend_values_are_refused_at_load_with_file_and_line() {
    let fx = Fixture::new();
    let step = |tags: &str| {
        format!("\n[[build.steps]]\nname = \"make\"\nrun = [\"make\"]\ntags = {tags}\n")
    };
    for (extra, at, needle) in [
        (
            step("{ from = \"banana\" }"),
            "[[build.steps]]",
            "[[build.steps]] `make` tags: `banana`".to_string(),
        ),
        (
            step("{ from = \"v0.4.0\", to = \"v0.5.1\", until = \"v0.5.2\" }"),
            "[[build.steps]]",
            "[[build.steps]] `make` tags: takes `to` (inclusive) or `until` (exclusive), not both"
                .to_string(),
        ),
        (
            "backend = []\n".to_string(),
            "backend = []",
            "`[llamacpp] backend` is an empty list".to_string(),
        ),
        (
            "backend = [{ from = \"ggml/include/ggml-vulkan.h\", to = \"llama/ggml-vulkan.h\" }, { from = \"ggml/src/ggml-vulkan.cpp\", to = \"llama/x.cpp\", tags = { to = \"vnope\" } }]\n".to_string(),
            "backend = [",
            "[llamacpp] backend #2.tags: `vnope`".to_string(),
        ),
        (
            "backend = { from = \"ggml/src/ggml-vulkan.cpp\", to = \"llama/x.cpp\", tags = { upto = \"v0.5.1\" } }\n".to_string(),
            "backend = {",
            "unknown field `upto`".to_string(),
        ),
        (
            "\n[build]\narches = [\"sparc\"]\n".to_string(),
            "arches = ",
            "[build] arches: `sparc` is not an architecture this tool builds".to_string(),
        ),
        (
            "backend = 3\n".to_string(),
            "backend = 3",
            "expected `{ from = \"…\", to = \"…\" }` or a list of them, not a integer".to_string(),
        ),
    ] {
        let recipe = recipe_with(&fx, "v0.4.0", &extra);
        let name = recipe.file_name().unwrap().to_str().unwrap().to_string();
        let line = line_of(&recipe, at);
        let run = fx.run(&["recipe", "check", recipe.to_str().unwrap()]);
        run.fails(2, &[&needle, &format!("{name}:{line}:")]);
        // The same refusal stops a build before anything is fetched or written.
        let dest = fx.scratch.path().join("hostile");
        fx.build_host(&[recipe.to_str().unwrap()], &dest)
            .fails(2, &[&needle]);
        assert!(!dest.exists(), "{extra}: nothing written");
    }
}

/// A `from` that is a symlink in the pin (b13 has ggml/include/ggml-vulkan-link.h) is
/// refused where the llama.cpp tree is read, before any file is placed.
#[test]
fn a_backend_entry_from_a_symlink_in_llama_cpp_is_refused_and_nothing_is_written() {
    let fx = Fixture::new();
    let recipe = recipe_with(
        &fx,
        "v0.4.0",
        "backend = [{ from = \"ggml/include/ggml-vulkan.h\", to = \"llama/ggml-vulkan.h\" }, { from = \"ggml/include/ggml-vulkan-link.h\", to = \"llama/ggml-vulkan-link.h\" }]\n",
    );
    let name = recipe.file_name().unwrap().to_str().unwrap().to_string();
    let dest = fx.scratch.path().join("sym");
    let run = fx.run(&[
        "fetch",
        recipe.to_str().unwrap(),
        "--dest",
        dest.to_str().unwrap(),
    ]);
    run.fails(
        2,
        &[
            "`from = \"ggml/include/ggml-vulkan-link.h\"` is a symlink in llama.cpp",
            &name,
            "[llamacpp] backend",
            "nothing was written",
            "help:",
        ],
    );
    assert!(!dest.join("src/ollama").exists(), "no tree in place");
}

/// `ci` over the era-2 tags (check only): recipes from the template, series checked.
#[test]
fn ci_checks_the_era_2_tags() {
    let fx = Fixture::new();
    let state = fx.scratch.path().join("ci-state.json");
    let j = fx
        .run(&[
            "ci",
            "--state",
            state.to_str().unwrap(),
            "--tags",
            "v0.4.0..v0.5.2",
            "--json",
        ])
        .ok()
        .json();
    crate::ci::assert_report_schema(&j);
    assert_eq!(j["ok"], true, "{j:#}");
    let rows = j["tags"].as_array().unwrap();
    let tags: Vec<&str> = rows.iter().map(|r| r["tag"].as_str().unwrap()).collect();
    assert_eq!(tags, ["v0.4.0", "v0.5.2"]);
    for r in rows {
        assert_eq!(r["era"], "2", "{r:#}");
        assert_eq!(r["status"], "ok", "{r:#}");
        let stages: Vec<(&str, &str)> = r["stages"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| (s["stage"].as_str().unwrap(), s["status"].as_str().unwrap()))
            .collect();
        assert_eq!(stages, [("recipe", "ok"), ("check", "ok")], "{r:#}");
    }
}

/// The template's `[build] arches = ["amd64"]`: an arm64 build of an era-2 tag is refused
/// (exit 3, unsupported) before a builder root is made or anything is written.
#[test]
fn an_era_2_build_for_arm64_is_refused_naming_the_era_and_the_fix() {
    let fx = Fixture::new();
    let recipe = fx.new_recipe("v0.5.2");
    let dest = fx.scratch.path().join("arm64");
    fx.run(&[
        "build",
        recipe.to_str().unwrap(),
        "--arch",
        "arm64",
        "--dest",
        dest.to_str().unwrap(),
    ])
    .fails(
        3,
        &[
            "era 2 builds amd64 only, not arm64",
            "from a tag of era 3 or later",
            "help:",
        ],
    );
    assert!(!dest.exists(), "nothing written");
}
