//! `recipe new`: classify, derive the llama.cpp pin, write a recipe that checks.

use std::fs;

use crate::support::{Fixture, Scratch, Upstream};

fn filter_commits(text: &str) -> String {
    let mut out = String::new();
    for word in text.split_inclusive(|c: char| !c.is_ascii_hexdigit()) {
        let hex_len = word.chars().take_while(|c| c.is_ascii_hexdigit()).count();
        if hex_len == 40 {
            out.push_str("[COMMIT]");
            out.push_str(&word[40..]);
        } else {
            out.push_str(word);
        }
    }
    out
}

#[test]
fn writes_an_era_4_recipe_that_checks() {
    let fx = Fixture::new();
    let out = fx.scratch.path().join("out/v0.24.0.toml");
    let run = fx.run(&[
        "recipe",
        "new",
        "--ollama",
        "v0.24.0",
        "-o",
        out.to_str().unwrap(),
        "--json",
    ]);
    run.ok();
    let j = run.json();
    assert_eq!(j["tag"], "v0.24.0");
    assert_eq!(j["era"], "4");
    assert_eq!(
        j["ollama_commit"],
        crate::support::git(&fx.ollama.dir, &["rev-parse", "v0.24.0^{commit}"])
    );
    assert_eq!(j["llamacpp_commit"], fx.llama.commits[8].as_str());
    assert_eq!(j["recipe_path"], out.to_str().unwrap());
    let text = fs::read_to_string(&out).unwrap();
    insta::assert_snapshot!("recipe_new_era4", filter_commits(&text));
    fx.scratch
        .run(&["recipe", "check", out.to_str().unwrap()])
        .ok();
}

#[test]
fn era_5_pin_comes_from_the_tag_or_the_build_count() {
    let fx = Fixture::new();
    // b10 is tagged in the mini llama.cpp; b11 is not.
    for (tag, build) in [("v0.33.0", 10), ("v0.32.15", 11)] {
        let j = fx
            .run(&["recipe", "new", "--ollama", tag, "--json"])
            .ok()
            .json();
        assert_eq!(j["era"], "5");
        assert_eq!(
            j["llamacpp_commit"],
            fx.llama.commits[build - 1].as_str(),
            "{tag}"
        );
        assert_eq!(j["llamacpp_version"], format!("b{build}"));
        let text = fs::read_to_string(j["recipe_path"].as_str().unwrap()).unwrap();
        assert!(text.contains("extends = \"era-5\""), "{text}");
    }
    let default = fx
        .scratch
        .project()
        .join("work/recipes/ollama-v0.33.0.toml");
    assert!(
        default.is_file(),
        "default output goes to the git-ignored work folder"
    );
}

#[test]
fn legacy_eras_pin_the_submodule_commit() {
    let fx = Fixture::new();
    let j = fx
        .run(&["recipe", "new", "--ollama", "v0.1.48", "--json"])
        .ok()
        .json();
    assert_eq!(j["era"], "1b");
    assert_eq!(j["llamacpp_commit"], fx.llama.commits[5].as_str());
    let j = fx
        .run(&["recipe", "new", "--ollama", "v0.1.23", "--json"])
        .ok()
        .json();
    assert_eq!(j["era"], "1a");
    assert_eq!(j["llamacpp_version"], "b5");
}

#[test]
fn eras_without_a_vulkan_path_are_refused_with_exit_3() {
    let fx = Fixture::new();
    // Era 3 past v0.12.3 (runner-based discovery): left out of the template's range.
    fx.run(&["recipe", "new", "--ollama", "v0.12.5"]).fails(
        3,
        &[
            "(era 3) has no Vulkan path",
            "nearest tags with a Vulkan path: v0.12.3 (era 3), v0.12.6-rc0 (era 4)",
            "era 4 (v0.12.6-rc0–v0.24.0)",
        ],
    );
    fx.run(&["recipe", "new", "--ollama", "v0.1.17"])
        .fails(3, &["(era 0) has no Vulkan path"]);
    // 1a at a llama.cpp pin that predates the Vulkan backend.
    fx.run(&["recipe", "new", "--ollama", "v0.1.22"])
        .fails(3, &["predates the Vulkan backend"]);
    // An era-4 layout outside the template's verified range.
    fx.run(&["recipe", "new", "--ollama", "v9.9.9"])
        .fails(3, &["template era-4 covers v0.12.6-rc0–v0.24.0"]);
    assert!(
        !fx.scratch.project().join("work/recipes").exists(),
        "a refusal writes nothing"
    );
}

#[test]
fn without_mirror_uses_the_template_url_through_the_cache_and_offline_after() {
    let s = Scratch::new();
    let up = Upstream::init(s.path().join("up/ollama"));
    up.release(
        "v0.24.0",
        crate::support::Layout::Four {
            fetch_head: "ec98e2002",
        },
    );
    // Point every template at the fixture upstream instead of GitHub.
    for e in fs::read_dir(s.project().join("recipes")).unwrap().flatten() {
        if e.path().is_dir() {
            continue;
        }
        let t = fs::read_to_string(e.path()).unwrap();
        let t = t.replace(
            "https://github.com/ollama/ollama.git",
            &format!("file://{}", up.dir.display()),
        );
        fs::write(e.path(), t).unwrap();
    }
    // Offline with an empty cache: a clear error, nothing cached.
    s.run(&["recipe", "new", "--ollama", "v0.24.0", "--offline"])
        .fails(2, &["not in the cache", "--offline forbids fetching"]);
    s.run(&["recipe", "new", "--ollama", "v0.24.0"]).ok();
    assert!(s.cache().join("git/ollama.git").is_dir());
    // A second run offline works from the cache.
    let j = s
        .run(&[
            "recipe",
            "new",
            "--ollama",
            "v0.24.0",
            "--offline",
            "--json",
        ])
        .ok()
        .json();
    assert_eq!(j["era"], "4");
    assert_eq!(
        j["llamacpp_commit"],
        serde_json::Value::Null,
        "era 4 vendors llama.cpp: no mirror needed"
    );
}

#[test]
fn unknown_tag_names_nearby_tags() {
    let fx = Fixture::new();
    fx.run(&["recipe", "new", "--ollama", "v0.24.9"]).fails(
        2,
        &["tag v0.24.9 is not in the ollama repository", "v0.24.0"],
    );
}
