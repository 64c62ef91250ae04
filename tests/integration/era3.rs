//! Era 3 (v0.5.8–v0.12.3): ggml-vulkan placed from the llama.cpp commit the tag's
//! Makefile.sync names (`[llamacpp] source = "vendored-plus-backend"`), our CMake and
//! discover series, a build on the host and the smoke test on lavapipe; and the hostile
//! `[llamacpp] backend` values, refused before anything is written.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::support::Fixture;

pub(crate) fn git(dir: &Path, args: &[&str]) -> String {
    let o = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(args)
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[test]
fn era_3_places_ggml_vulkan_builds_and_generates_through_vulkan_on_lavapipe() {
    let fx = Fixture::new();
    build_and_smoke(
        &fx,
        "v0.9.0",
        &["vulkan-era3-cmake", "vulkan-era3-discover"],
    );
}

/// v0.11.9–v0.12.3's shape: the other discover series and the device-id one apply too.
#[test]
fn era_3_late_tags_get_the_list_discover_series_and_device_ids() {
    let fx = Fixture::new();
    build_and_smoke(
        &fx,
        "v0.12.0",
        &[
            "vulkan-era3-cmake",
            "vulkan-era3-discover-0.11.9",
            "vulkan-era3-device-id",
        ],
    );
}

fn build_and_smoke(fx: &Fixture, tag: &str, series: &[&str]) {
    let j = fx
        .run(&["recipe", "new", "--ollama", tag, "--json"])
        .ok()
        .json();
    assert_eq!(j["era"], "3");
    assert_eq!(j["template"], "era-3");
    // Makefile.sync's abbreviated FETCH_HEAD, resolved through the llama.cpp mirror.
    assert_eq!(j["llamacpp_commit"], fx.llama.commits[7].as_str());
    let recipe = PathBuf::from(j["recipe_path"].as_str().unwrap());

    // The series apply to the pinned tree (the placed files are not needed for that).
    let patches = crate::era3::check_series(fx, &recipe, series);

    let dest = fx.scratch.path().join(format!("b-{tag}"));
    let b = fx
        .build_host(&[recipe.to_str().unwrap()], &dest)
        .ok()
        .json();
    let dist = PathBuf::from(b["dist"].as_str().unwrap());
    assert!(dist.join("lib/ollama/vulkan/libggml-vulkan.so").is_file());
    assert!(dist.join("lib/ollama/libggml-base.so").is_file());
    assert!(dist.join("bin/ollama").is_file());

    // The placement is a commit of its own on top of the pin, before the series' commits,
    // with exactly the llama.cpp subtree's files.
    let tree = dest.join("src/ollama");
    let log = git(&tree, &["log", "--format=%s", &format!("-{}", patches + 1)]);
    let subjects: Vec<&str> = log.lines().collect();
    assert_eq!(
        subjects[patches],
        "Place ml/backend/ggml/ggml/src/ggml-vulkan from llama.cpp ".to_string()
            + &fx.llama.commits[7][..12],
        "{log}"
    );
    let placement = format!("HEAD~{patches}");
    let placed = git(
        &tree,
        &[
            "diff",
            "--name-only",
            &format!("{placement}~1"),
            &placement,
            "--",
        ],
    );
    let llama_files = git(
        &fx.llama.repo.dir,
        &[
            "ls-tree",
            "-r",
            "--name-only",
            &fx.llama.commits[7],
            "ggml/src/ggml-vulkan/",
        ],
    );
    let expected: Vec<String> = llama_files
        .lines()
        .map(|l| {
            l.replace(
                "ggml/src/ggml-vulkan/",
                "ml/backend/ggml/ggml/src/ggml-vulkan/",
            )
        })
        .collect();
    assert_eq!(placed.lines().collect::<Vec<_>>(), expected);
    assert!(
        expected
            .iter()
            .any(|p| p.ends_with("test_integer_dot_support.comp")),
        "the glslc feature test comes with the placed directory"
    );
    assert_eq!(
        git(&tree, &["status", "--porcelain", "--", ".", ":!build"]),
        "",
        "a clean tree (the build output aside)"
    );

    // Smoke on lavapipe: Vulkan found by our discover probe, then OLLAMA_SKIP_VULKAN=1.
    let j = crate::smoke::smoke(fx, &dist, &[]).ok().json();
    let v = &j["runs"][0];
    assert_eq!(v["mode"], "vulkan", "{j}");
    assert_eq!(v["eval_count"], 8);
    assert!(v["device"].as_str().unwrap().contains("llvmpipe"), "{v}");
    assert_eq!(v["size_vram"], v["size"], "fully on the GPU");
    let c = &j["runs"][1];
    assert_eq!(c["mode"], "cpu");
    assert_eq!(c["size_vram"], 0);
    assert!(
        c["cpu_reason"]
            .as_str()
            .unwrap()
            .contains("Vulkan GPU discovery skipped"),
        "{c}"
    );
}

#[test]
fn era_3_tags_the_template_leaves_out_are_refused_naming_the_nearest_tags() {
    let fx = Fixture::new();
    fx.run(&["recipe", "new", "--ollama", "v0.12.5"]).fails(
        3,
        &[
            "v0.12.5 (era 3) has no Vulkan path",
            "template era-3 covers v0.5.8-rc0–v0.12.3 only and leaves out v0.12.4-rc0–v0.12.5",
            "discover/runner.go",
            "nearest tags with a Vulkan path: v0.12.3 (era 3), v0.12.6-rc0 (era 4)",
        ],
    );
    assert!(!fx.scratch.project().join("work/recipes").exists());
    // `era` says the same: era 3, no Vulkan path (v0.9.0 has one).
    let rows = fx.run(&["era", "v0.9.0", "v0.12.5", "--json"]).ok().json();
    assert_eq!(rows[0]["era"], "3");
    assert_eq!(rows[0]["vulkan_path"], true);
    assert_eq!(rows[1]["era"], "3");
    assert_eq!(rows[1]["vulkan_path"], false);
}

/// A per-tag recipe of v0.9.0 with `[llamacpp]` lines appended (recipe new writes
/// `[llamacpp]` last).
fn recipe_with(fx: &Fixture, extra: &str) -> PathBuf {
    let recipe = fx.new_recipe("v0.9.0");
    let text = fs::read_to_string(&recipe).unwrap() + extra;
    fs::write(&recipe, text).unwrap();
    recipe
}

#[test]
fn hostile_backend_paths_are_refused_at_load_with_file_and_line() {
    let fx = Fixture::new();
    for (value, needle) in [
        (
            r#"backend = { from = "../x", to = "ml/backend/ggml/ggml/src/ggml-vulkan" }"#,
            "[llamacpp] backend.from: `../x`",
        ),
        (
            r#"backend = { from = "ggml/src/ggml-vulkan", to = "/etc/ggml-vulkan" }"#,
            "[llamacpp] backend.to: `/etc/ggml-vulkan` is absolute",
        ),
        (
            r#"backend = { from = "ggml/src/ggml-vulkan", to = "ml/.git/hooks" }"#,
            "`.git` is git's own directory",
        ),
        (
            r#"backend = { from = "ggml/src/ggml-vulkan" }"#,
            "`[llamacpp] backend` has no `to`",
        ),
        (
            r#"backend = { from = "a", to = "b", via = "c" }"#,
            "unknown field `via`",
        ),
    ] {
        let recipe = recipe_with(&fx, &format!("{value}\n"));
        let name = recipe.file_name().unwrap().to_str().unwrap().to_string();
        let run = fx.run(&["recipe", "check", recipe.to_str().unwrap()]);
        run.fails(2, &[needle, &format!("{name}:")]);
        // The same refusal stops a build before anything is fetched.
        let dest = fx.scratch.path().join("hostile");
        fx.build_host(&[recipe.to_str().unwrap()], &dest)
            .fails(2, &[needle]);
        assert!(!dest.join("src").exists(), "{value}: nothing written");
    }
    // `backend` belongs to vendored-plus-backend only: an era-4 recipe is refused.
    let recipe = fx.new_recipe("v0.24.0");
    let text = fs::read_to_string(&recipe).unwrap();
    assert!(text.trim_end().lines().any(|l| l == "[llamacpp]"), "{text}");
    let text = text + "backend = { from = \"ggml/src/ggml-vulkan\", to = \"x\" }\n";
    fs::write(&recipe, text).unwrap();
    fx.run(&["recipe", "check", recipe.to_str().unwrap()]).fails(
        2,
        &[
            "`[llamacpp] backend` is only read with `source = \"vendored-plus-backend\"`, not `vendored`",
        ],
    );
}

#[test]
fn backend_paths_through_symlinks_or_onto_files_are_refused_and_nothing_is_written() {
    let fx = Fixture::new();
    for (value, needle) in [
        // `escape` is a symlink to /etc in the fixture's Ollama tree.
        (
            r#"backend = { from = "ggml/src/ggml-vulkan", to = "escape/ggml-vulkan" }"#,
            "goes through `escape`, a symlink in the Ollama tree",
        ),
        (
            r#"backend = { from = "ggml/src/ggml-vulkan", to = "main.go/ggml-vulkan" }"#,
            "`main.go` is a file in the Ollama tree",
        ),
        (
            r#"backend = { from = "ggml/src/ggml-vulkan", to = "discover" }"#,
            "`to = \"discover\"` already exists in the Ollama tree",
        ),
        (
            r#"backend = { from = "ggml/src/ggml-vulkan/probe.c", to = "main.go" }"#,
            "`to = \"main.go\"` already exists in the Ollama tree",
        ),
        (
            r#"backend = [{ from = "ggml/src/ggml-vulkan/probe.c", to = "x.c" }, { from = "ggml/src/nope", to = "y" }]"#,
            "`from = \"ggml/src/nope\"` is not in llama.cpp",
        ),
        (
            r#"backend = { from = "ggml/src/nope", to = "x" }"#,
            "`from = \"ggml/src/nope\"` is not in llama.cpp",
        ),
    ] {
        let recipe = recipe_with(&fx, &format!("{value}\n"));
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
                needle,
                &name,
                "[llamacpp] backend",
                "nothing was written",
                "help:",
            ],
        );
        assert!(
            !dest.join("src/ollama").exists(),
            "{value}: no tree in place"
        );
        assert!(
            !Path::new("/etc/ggml-vulkan").exists(),
            "never written through the symlink"
        );
    }
}

#[test]
fn bad_unsupported_entries_in_a_template_are_refused_with_file_and_line() {
    let fx = Fixture::new();
    let t = fx.scratch.project().join("recipes/era-3.toml");
    let orig = fs::read_to_string(&t).unwrap();
    for (entry, needle) in [
        (
            "tags = { from = \"v0.12.4-rc0\" }\nwhy = \"x\"",
            "[[template.unsupported]] tags needs `from` and `to`",
        ),
        (
            "tags = { from = \"v0.12.4-rc0\", to = \"v0.12.5\" }\nwhy = \" \"",
            "[[template.unsupported]] why: an empty reason",
        ),
        (
            "tags = { from = \"v0.12.4-rc0\", to = \"v0.12.5\" }\nwhy = \"two\\nlines\"",
            "[[template.unsupported]] why:",
        ),
        (
            "tags = { from = \"nope\", to = \"v0.12.5\" }\nwhy = \"x\"",
            "write a tag such as",
        ),
        (
            "tags = { from = \"v0.12.3\", to = \"v0.12.5\" }\nwhy = \"x\"",
            "overlap the template's own range",
        ),
    ] {
        let text = orig.replacen(
            "\n[ollama]",
            &format!("\n[[template.unsupported]]\n{entry}\n\n[ollama]"),
            1,
        );
        assert_ne!(text, orig);
        fs::write(&t, text).unwrap();
        fx.run(&["recipe", "check", t.to_str().unwrap()])
            .fails(2, &[needle, "era-3.toml:"]);
    }
}

/// `prepare --check --json` of `recipe`: the series it applies are `series`, in order;
/// returns how many patches they hold (the commits on top of the placement).
pub(crate) fn check_series(fx: &Fixture, recipe: &Path, series: &[&str]) -> usize {
    let check = fx
        .run(&["prepare", recipe.to_str().unwrap(), "--check", "--json"])
        .ok()
        .json();
    let list = check["series"].as_array().unwrap();
    let names: Vec<&str> = list.iter().map(|s| s["series"].as_str().unwrap()).collect();
    assert_eq!(names, series);
    list.iter()
        .map(|s| s["patches"].as_array().unwrap().len())
        .sum()
}
