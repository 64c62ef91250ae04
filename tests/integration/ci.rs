//! `ci`: new upstream tags through era classification, recipe and patch check, on the
//! fixture upstreams (tags of every era, v0.0.1 with an unknown layout).

use std::fs;
use std::path::{Path, PathBuf};

use crate::support::{patch_text, Fixture, Layout, Run};

fn state(fx: &Fixture) -> PathBuf {
    fx.scratch.path().join("ci-state.json")
}

/// `ci ARGS --state <scratch state> --json`.
fn ci(fx: &Fixture, args: &[&str]) -> Run {
    let s = state(fx);
    let mut all = vec!["ci", "--state", s.to_str().unwrap()];
    all.extend_from_slice(args);
    fx.run(&all)
}

fn seed(fx: &Fixture, highest: &str) {
    fs::write(
        state(fx),
        format!("{{\"schema\": 1, \"highest\": \"{highest}\"}}\n"),
    )
    .unwrap();
}

/// The report against docs/ci-report.schema.json (what CI consumers are promised).
pub(crate) fn assert_report_schema(j: &serde_json::Value) {
    let schema = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/ci-report.schema.json");
    let dir = tempfile::tempdir().unwrap();
    let doc = dir.path().join("report.json");
    fs::write(&doc, serde_json::to_vec(j).unwrap()).unwrap();
    if let Err(e) = crate::support::schema_errors(&schema, &doc) {
        panic!("the ci report does not match docs/ci-report.schema.json:\n{e}\n{j:#}");
    }
}

/// The entry of `v["series"]` whose `key` is `name`.
fn series_named<'a>(v: &'a serde_json::Value, key: &str, name: &str) -> &'a serde_json::Value {
    v["series"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s[key] == name)
        .unwrap_or_else(|| panic!("no series {name}: {v:#}"))
}

fn rows(j: &serde_json::Value) -> Vec<serde_json::Value> {
    j["tags"].as_array().unwrap().clone()
}

fn row(j: &serde_json::Value, tag: &str) -> serde_json::Value {
    rows(j)
        .into_iter()
        .find(|r| r["tag"] == tag)
        .unwrap_or_else(|| panic!("no row for {tag}: {j:#}"))
}

fn tags_of(j: &serde_json::Value) -> Vec<String> {
    rows(j)
        .iter()
        .map(|r| r["tag"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn new_tags_get_recipes_checks_and_a_report() {
    let fx = Fixture::new();
    seed(&fx, "v0.12.5");
    let j = ci(&fx, &["--json"]).ok().json();
    assert_report_schema(&j);
    // The schema is strict: a stage it does not know is refused.
    let mut bad = j.clone();
    bad["tags"][0]["stages"][0]["stage"] = "compile".into();
    let schema = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/ci-report.schema.json");
    let tmp = tempfile::tempdir().unwrap();
    fs::write(
        tmp.path().join("bad.json"),
        serde_json::to_vec(&bad).unwrap(),
    )
    .unwrap();
    assert!(crate::support::schema_errors(&schema, &tmp.path().join("bad.json")).is_err());
    // Newer than the state's tag, by version: v9.9.9 after v0.33.0, not before v0.4.0.
    assert_eq!(tags_of(&j), ["v0.24.0", "v0.32.15", "v0.33.0", "v9.9.9"]);
    assert_eq!(j["ok"], true);
    for tag in ["v0.24.0", "v0.32.15", "v0.33.0"] {
        let r = row(&j, tag);
        assert_eq!(r["status"], "ok", "{r:#}");
        let recipe = Path::new(r["recipe"].as_str().unwrap());
        assert!(recipe.is_file(), "{tag}: recipe written");
        assert_eq!(
            recipe,
            fx.scratch
                .project()
                .join(format!("work/recipes/ollama-{tag}.toml"))
        );
        let stages: Vec<_> = r["stages"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| (s["stage"].clone(), s["status"].clone()))
            .collect();
        assert_eq!(
            stages,
            [
                ("recipe".into(), "ok".into()),
                ("check".into(), "ok".into())
            ]
        );
        assert!(r["stages"][1]["seconds"].is_f64());
        assert!(r["image_digest"].is_null());
        assert!(r["reason"].is_null());
    }
    assert_eq!(row(&j, "v0.24.0")["era"], "4");
    assert_eq!(row(&j, "v0.32.15")["era"], "5");
    // The recipe is the one `recipe new` writes: it checks.
    fx.run(&[
        "recipe",
        "check",
        row(&j, "v0.24.0")["recipe"].as_str().unwrap(),
    ])
    .ok();
    // An era-4 layout outside the template's range: skipped with the reason.
    let r = row(&j, "v9.9.9");
    assert_eq!(r["status"], "skipped");
    assert!(r["reason"].as_str().unwrap().contains("not verified"));
    // The state moved to the highest tag handled; the next run has nothing to do.
    assert_eq!(j["highest"], "v9.9.9");
    let s: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(state(&fx)).unwrap()).unwrap();
    assert_eq!(s, serde_json::json!({"schema": 1, "highest": "v9.9.9"}));
    let again = ci(&fx, &[]).ok().stdout.clone();
    assert!(again.contains("no new tags"), "{again}");
    // A --tags run over old tags never moves the state back.
    ci(&fx, &["--tags", "v0.24.0"]).ok();
    assert!(fs::read_to_string(state(&fx)).unwrap().contains("v9.9.9"));
}

#[test]
fn unsupported_eras_are_skipped_with_the_reason_not_failed() {
    let fx = Fixture::new();
    // Two runs: v0.1.23 and v0.1.48 (between them) have a Vulkan path.
    let mut out = String::new();
    // (v0.4.0, era 2, and v0.9.0 and v0.12.0, era 3, have ggml-vulkan placed.)
    for (range, skipped) in [
        ("v0.1.17..v0.1.22", "0 failed, 2 skipped"),
        ("v0.12.5", "0 failed, 1 skipped"),
    ] {
        let run = ci(&fx, &["--tags", range]);
        run.ok();
        assert!(run.stdout.contains(skipped), "{}", run.stdout);
        out.push_str(&run.stdout);
    }
    for (tag, why) in [
        ("v0.1.17", "era 0 builds llama.cpp through //go:generate"),
        ("v0.1.22", "predates the Vulkan backend"),
        (
            "v0.12.5",
            "nearest tags with a Vulkan path: v0.12.3 (era 3)",
        ),
    ] {
        let line = out
            .lines()
            .find(|l| l.starts_with(tag))
            .unwrap_or_else(|| panic!("{tag}:\n{out}"));
        assert!(line.contains("skipped") && line.contains(why), "{line}");
    }
}

#[test]
fn a_failing_patch_fails_the_run_and_is_named() {
    let fx = Fixture::new();
    // A series in era 4's template whose context is not in CMakeLists.txt.
    let bad = patch_text(
        "Vulkan: a line that moved",
        "Inappropriate [ollama-vulkan build glue]",
        "diff --git a/CMakeLists.txt b/CMakeLists.txt\n--- a/CMakeLists.txt\n+++ b/CMakeLists.txt\n@@ -1 +1,2 @@\n this context is not upstream\n+# vulkan\n",
    );
    let pin = fx.scratch.series("vk", &[("0001-moved.patch", &bad)]);
    pin_in_era4(&fx, &pin);

    let run = ci(&fx, &["--tags", "v0.24.0..v0.32.15", "--json"]);
    let j = run.fails(1, &[]).json();
    assert_report_schema(&j);
    assert_eq!(j["ok"], false);
    let r = row(&j, "v0.24.0");
    assert_eq!(r["status"], "failed");
    assert_eq!(r["stages"][1]["stage"], "check");
    assert_eq!(r["stages"][1]["status"], "failed");
    assert!(
        r["reason"]
            .as_str()
            .unwrap()
            .contains("vk/0001-moved.patch"),
        "{r:#}"
    );
    // The per-hunk report is there for machines.
    let vk = series_named(&r, "series", "vk");
    assert_eq!(vk["patches"][0]["status"], "failed");
    // The other tag is unaffected; the state still moves (the failure is reported, and
    // `--tags` redoes it).
    assert_eq!(row(&j, "v0.32.15")["status"], "ok");
    assert!(fs::read_to_string(state(&fx)).unwrap().contains("v0.32.15"));
    // People get the same in the table.
    let human = ci(&fx, &["--tags", "v0.24.0"]);
    human.fails(1, &[]);
    assert!(
        human.stdout.contains("FAILED") && human.stdout.contains("vk/0001-moved.patch"),
        "{}",
        human.stdout
    );
}

#[test]
fn a_bad_state_file_is_one_clear_error_and_nothing_is_written() {
    let fx = Fixture::new();
    let s = state(&fx);
    for (content, why) in [
        ("{not json", "not a ci state"),
        ("{\"schema\": 2, \"highest\": \"v0.24.0\"}", "schema 2"),
        (
            "{\"schema\": 1, \"highest\": \"banana\"}",
            "`banana` is not a release tag",
        ),
        (
            "{\"schema\": 1, \"highest\": \"v0.24.0\", \"x\": 1}",
            "unknown field",
        ),
        ("[]", "not a ci state"),
    ] {
        fs::write(&s, content).unwrap();
        let run = ci(&fx, &[]);
        run.fails(
            2,
            &[&s.display().to_string(), why, "help: fix or delete it"],
        );
        assert_eq!(run.stderr.matches("error:").count(), 1, "{}", run.stderr);
        assert_eq!(fs::read_to_string(&s).unwrap(), content, "left as it was");
        assert!(
            !fx.scratch.project().join("work/recipes").exists(),
            "no work done"
        );
    }
    // A directory where the file should be.
    fs::remove_file(&s).unwrap();
    fs::create_dir(&s).unwrap();
    ci(&fx, &["--since", "v0.24.0"]).fails(2, &["not a regular file"]);
}

#[test]
fn the_first_run_needs_a_start_and_the_state_defaults_to_work() {
    let fx = Fixture::new();
    fx.run(&["ci"])
        .fails(2, &["no state file at", "--since TAG"]);
    fx.run(&["ci", "--since", "nope"])
        .fails(2, &["--since: `nope` is not a release tag"]);
    fx.run(&["ci", "--tags", "v0.24.0..v7.0.0"])
        .fails(2, &["tag `v7.0.0` is not in the mirror"]);
    let default = fx.scratch.project().join("work/ci-state.json");
    assert!(!default.exists(), "a refused run writes nothing");
    fx.run(&["ci", "--since", "v0.32.15"]).ok();
    assert!(fs::read_to_string(&default).unwrap().contains("v9.9.9"));
}

#[test]
fn release_candidates_only_with_include_rc() {
    let fx = Fixture::new();
    fx.ollama
        .release("v0.33.1-rc1", Layout::Five { version: "b10" });
    let j = ci(&fx, &["--since", "v0.32.15", "--json"]).ok().json();
    assert_eq!(tags_of(&j), ["v0.33.0", "v9.9.9"]);
    let j = ci(&fx, &["--since", "v0.32.15", "--include-rc", "--json"])
        .ok()
        .json();
    assert_eq!(tags_of(&j), ["v0.33.0", "v0.33.1-rc1", "v9.9.9"]);
    assert_eq!(row(&j, "v0.33.1-rc1")["status"], "ok");
}

#[test]
fn the_github_matrix_lists_tags_with_a_vulkan_path() {
    let fx = Fixture::new();
    seed(&fx, "v0.0.0");
    let before = fs::read_to_string(state(&fx)).unwrap();
    let run = ci(&fx, &["--matrix", "github"]);
    run.ok();
    // One line for $GITHUB_OUTPUT; eras without a Vulkan path and tags outside every
    // template are left out; an unknown layout (v0.0.1) stays in, to fail in its job.
    assert_eq!(run.stdout.lines().count(), 1);
    insta::assert_snapshot!("ci_matrix_github", run.stdout);
    assert_eq!(
        fs::read_to_string(state(&fx)).unwrap(),
        before,
        "a matrix run writes no state"
    );
    assert!(!fx.scratch.project().join("work/recipes").exists());
}

/// Series `vk` (pinned by `pin`) in the era-4 template, which every era-4 tag's recipe
/// then carries.
fn pin_in_era4(fx: &Fixture, pin: &str) {
    let tpl = fx.scratch.project().join("recipes/era-4.toml");
    let text = fs::read_to_string(&tpl).unwrap().replacen(
        "\n[image]",
        &format!("\n[[series]]\nname = \"vk\"\nrepo = \"ollama\"\nsha256 = \"{pin}\"\n\n[image]"),
        1,
    );
    fs::write(&tpl, text).unwrap();
}

/// rebase.rs's v0.20.x tags (v0.20.1 moves the context, v0.20.2 changes the line the patch
/// changes, v0.20.3 has the change, v0.20.5 changes lines inside its context) and its
/// app.go patch as series `vk` of era 4.
fn rebase_upstream_with_vk(fx: &Fixture) {
    crate::rebase::upstream(fx);
    let patch = crate::rebase::vulkan_patch(fx);
    let pin = fx.scratch.series("vk", &[("0001-vk.patch", &patch)]);
    pin_in_era4(fx, &pin);
}

/// Every file under recipes/ and patches/: path and bytes.
fn tracked(root: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    let mut stack = vec![root.join("recipes"), root.join("patches")];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push((
                    p.strip_prefix(root).unwrap().to_path_buf(),
                    fs::read(&p).unwrap(),
                ));
            }
        }
    }
    out.sort();
    out
}

#[test]
fn a_series_that_stopped_applying_gets_a_rebase_proposal_or_its_conflict() {
    let fx = Fixture::new();
    rebase_upstream_with_vk(&fx);
    let project = fx.scratch.project();
    let before = tracked(&project);
    let out = fx.scratch.path().join("ci-out");

    let run = ci(
        &fx,
        &[
            "--tags",
            "v0.20.0..v0.20.5",
            "--out",
            out.to_str().unwrap(),
            "--json",
        ],
    );
    let j = run.fails(1, &[]).json();
    assert_report_schema(&j);
    for tag in ["v0.20.0", "v0.20.1", "v0.20.4"] {
        assert_eq!(row(&j, tag)["status"], "ok", "{tag}: {j:#}");
    }
    assert_eq!(tracked(&project), before, "patches/ and recipes/ untouched");

    // A clean 3-way rebase from the newest tag that still applies: a proposal.
    let r = row(&j, "v0.20.5");
    assert_eq!(r["status"], "failed");
    assert_eq!(r["stages"][2]["stage"], "rebase");
    assert_eq!(r["stages"][2]["status"], "ok");
    let p = &r["proposal"];
    assert_eq!(p["result"], "proposed", "{r:#}");
    assert_eq!(p["base"], "v0.20.4");
    let dir = out.join("proposals/v0.20.5");
    assert_eq!(p["dir"], dir.to_str().unwrap());
    // Our series and its pin; the template's other series come along refreshed (their
    // offsets on the fixture's short files), as `rebase-patches` refreshes every series.
    let files: Vec<&str> = p["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f.as_str().unwrap())
        .collect();
    for f in [
        "patches/vk/0001-vk.patch",
        "patches/vk/SHA256SUMS",
        "recipes/era-4.toml",
    ] {
        assert!(files.contains(&f), "{files:?}");
    }
    assert!(
        files
            .iter()
            .all(|f| f.starts_with("patches/") || f.starts_with("recipes/")),
        "{files:?}"
    );
    let vk = series_named(p, "name", "vk");
    assert_eq!(vk["patches"][0]["status"], "merged", "{vk:#}");
    assert!(dir.join("ollama-v0.20.5.toml").is_file());
    assert!(dir.join("proposal.json").is_file());
    // Only the finished proposals are left: no scratch project, no partial folder.
    let names: Vec<String> = fs::read_dir(out.join("proposals"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    let mut names = names;
    names.sort();
    assert_eq!(names, ["v0.20.3", "v0.20.5"], "{names:?}");
    // Upstream took our change at v0.20.3: the proposal drops the patch.
    let up = &row(&j, "v0.20.3")["proposal"];
    assert_eq!(up["result"], "proposed", "{up:#}");
    let vk = series_named(up, "name", "vk");
    assert_eq!(vk["patches"][0]["status"], "upstreamed", "{vk:#}");

    // The proposal is what a maintainer takes: `git apply` in a copy of the checkout,
    // and the tag then passes.
    let taken = fx.scratch.path().join("taken");
    crate::support::copy_tree(&project, &taken);
    let st = std::process::Command::new("git")
        .args(["apply", "--verbose"])
        .arg(dir.join("proposal.patch"))
        .current_dir(&taken)
        .output()
        .unwrap();
    assert!(
        st.status.success(),
        "{}",
        String::from_utf8_lossy(&st.stderr)
    );
    let again = fx
        .scratch
        .command(&["ci", "--tags", "v0.20.5", "--state"])
        .arg(fx.scratch.path().join("taken-state.json"))
        .args(fx.mirror_args())
        .env("OLLAMA_VULKAN_PROJECT", &taken)
        .output()
        .unwrap();
    assert!(
        again.status.success(),
        "{}",
        String::from_utf8_lossy(&again.stdout)
    );

    // An overlap: the conflict, with the hunk as the merge left it; nothing kept.
    let r = row(&j, "v0.20.2");
    assert_eq!(r["status"], "failed");
    let c = &r["proposal"];
    assert_eq!(c["result"], "conflict", "{r:#}");
    assert_eq!(c["base"], "v0.20.1");
    assert_eq!(c["file"], "app.go");
    let hunk = c["hunk"].as_str().unwrap();
    assert!(
        hunk.starts_with("<<<<<<<") && hunk.contains("\treturn 50\n") && hunk.contains("vulkan()"),
        "{hunk}"
    );
    assert!(!out.join("proposals/v0.20.2").exists());
    // People see both in the table.
    let human = ci(
        &fx,
        &["--tags", "v0.20.2..v0.20.5", "--out", out.to_str().unwrap()],
    );
    human.fails(1, &[]);
    for needle in [
        "rebased from v0.20.4: proposal in",
        "rebase from v0.20.1 conflicts: vk/0001-vk.patch in app.go",
        "<<<<<<<",
    ] {
        assert!(human.stdout.contains(needle), "{needle}:\n{}", human.stdout);
    }
}

#[test]
fn the_gitlab_matrix_is_a_child_pipeline_with_one_job_per_tag() {
    let fx = Fixture::new();
    seed(&fx, "v0.0.0");
    let run = ci(&fx, &["--matrix", "gitlab"]);
    run.ok();
    insta::assert_snapshot!("ci_matrix_gitlab", run.stdout);
    let y: serde_yaml::Value = serde_yaml::from_str(&run.stdout).unwrap();
    assert_eq!(
        y["ollama-tag"]["parallel"]["matrix"]
            .as_sequence()
            .unwrap()
            .len(),
        10,
        "v0.0.1, 1a, 1b, the two era-2 tags, two of era 3, one of era 4, two of era 5"
    );
    // Nothing new: a pipeline GitLab accepts (it refuses one with no jobs).
    seed(&fx, "v99.0.0");
    let run = ci(&fx, &["--matrix", "gitlab"]);
    run.ok();
    assert!(run.stdout.contains("no-new-tags:"), "{}", run.stdout);
}

#[test]
fn since_alone_starts_the_state_even_with_nothing_newer() {
    let fx = Fixture::new();
    let j = ci(&fx, &["--since", "v9.9.9", "--json"]).ok().json();
    assert!(rows(&j).is_empty());
    assert_eq!(j["highest"], "v9.9.9");
    let again = ci(&fx, &[]).ok().stdout.clone();
    assert!(again.contains("no new tags"), "{again}");
}

#[test]
fn planted_links_in_the_output_folder_are_replaced_not_followed() {
    let fx = Fixture::new();
    rebase_upstream_with_vk(&fx);
    let out = fx.scratch.path().join("ci-out");
    let outside = fx.scratch.path().join("outside");
    fs::create_dir_all(&outside).unwrap();
    fs::write(outside.join("keep"), "mine").unwrap();
    fs::create_dir_all(out.join("proposals")).unwrap();
    for name in ["v0.20.5", ".v0.20.5.partial"] {
        std::os::unix::fs::symlink(&outside, out.join("proposals").join(name)).unwrap();
    }
    let j = ci(
        &fx,
        &[
            "--tags",
            "v0.20.5",
            "--out",
            out.to_str().unwrap(),
            "--json",
        ],
    )
    .fails(1, &[])
    .json();
    assert_eq!(row(&j, "v0.20.5")["proposal"]["result"], "proposed");
    let names: Vec<_> = fs::read_dir(&outside)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, ["keep"], "nothing written through the links");
    assert_eq!(fs::read_to_string(outside.join("keep")).unwrap(), "mine");
    let dir = out.join("proposals/v0.20.5");
    assert!(!dir.is_symlink() && dir.join("proposal.patch").is_file());

    // --out naming a file: refused before any work.
    let file = fx.scratch.file("a-file", "x");
    ci(&fx, &["--tags", "v0.20.5", "--out", file.to_str().unwrap()])
        .fails(2, &["--out", "not a directory"]);
}
