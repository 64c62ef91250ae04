//! `rebase-patches`: real `git format-patch` patches made against a fixture upstream, carried
//! by the real binary onto tags that move, change, rename or already contain what the
//! patches do. Rebased patches are checked with `git apply` on a checkout of the new tag.

use std::fs;
use std::path::{Path, PathBuf};

use crate::support::{git, Fixture, Layout, Run};

/// 40 lines of Go: ten small functions, so patches have room for context.
fn app_go() -> String {
    let mut s = String::from("package main\n\n");
    for i in 1..=10 {
        s.push_str(&format!("func f{i}() int {{\n\treturn {i}\n}}\n\n"));
    }
    s
}

const GPU_GO: &str = "package gpu\n\n// GetGPUInfo lists the GPUs.\nfunc GetGPUInfo() []string {\n\tvar out []string\n\tout = append(out, \"cuda\")\n\tout = append(out, \"rocm\")\n\treturn out\n}\n\n// Count is how many there are.\nfunc Count() int {\n\treturn len(GetGPUInfo())\n}\n";

pub(crate) struct Setup {
    pub(crate) fx: Fixture,
    pub(crate) recipe: PathBuf,
    /// The patches as first written.
    orig: Vec<String>,
}

impl Setup {
    fn run(&self, args: &[&str]) -> Run {
        self.fx.run(args)
    }
    pub(crate) fn rebase(&self, extra: &[&str]) -> Run {
        let mut a = vec!["rebase-patches", self.recipe.to_str().unwrap()];
        a.extend_from_slice(extra);
        self.run(&a)
    }
    fn series_dir(&self) -> PathBuf {
        self.fx.scratch.project().join("patches/vk")
    }
    fn patch(&self, name: &str) -> String {
        fs::read_to_string(self.series_dir().join(name)).unwrap()
    }
    pub(crate) fn state_dir(&self) -> PathBuf {
        let stem = self
            .recipe
            .file_stem()
            .unwrap()
            .to_string_lossy()
            .into_owned();
        self.fx.scratch.project().join("work/rebase").join(stem)
    }
}

/// Tags derived from v0.20.0, each with one kind of upstream change.
pub(crate) fn upstream(fx: &Fixture) {
    let up = &fx.ollama;
    let c9 = fx.llama.commits[8][..9].to_string();
    up.release("v0.19.0", Layout::Four { fetch_head: &c9 });
    up.write("app.go", &app_go());
    up.write("gpu/gpu.go", GPU_GO);
    up.commit("app and gpu");
    up.tag("v0.20.0");
    let derive = |tag: &str, edit: &dyn Fn(&Path)| {
        git(
            &up.dir,
            &["checkout", "-q", "-B", &format!("b-{tag}"), "v0.20.0"],
        );
        edit(&up.dir);
        up.commit(tag);
        up.tag(tag);
    };
    let replace = |dir: &Path, path: &str, from: &str, to: &str| {
        let p = dir.join(path);
        let t = fs::read_to_string(&p).unwrap();
        assert!(t.contains(from), "{path} lacks {from:?}");
        fs::write(&p, t.replacen(from, to, 1)).unwrap();
    };
    // Context moved: five lines more at the top of app.go.
    derive("v0.20.1", &|d| {
        replace(
            d,
            "app.go",
            "package main\n",
            "package main\n\n// Copyright upstream.\n// More words.\n// And more.\n",
        )
    });
    // A real overlap: upstream changed the line our patch changes.
    derive("v0.20.2", &|d| {
        replace(d, "app.go", "\treturn 5\n", "\treturn 50\n")
    });
    // Upstream took our change.
    derive("v0.20.3", &|d| {
        replace(d, "app.go", "\treturn 5\n", "\treturn 5 * vulkan()\n")
    });
    // gpu/gpu.go → discover/gpu.go, as at v0.3.14.
    derive("v0.20.4", &|d| {
        fs::create_dir_all(d.join("discover")).unwrap();
        git(d, &["mv", "gpu/gpu.go", "discover/gpu.go"]);
        replace(d, "discover/gpu.go", "package gpu\n", "package discover\n");
    });
    // Surroundings changed inside the hunk's context (not the changed line).
    derive("v0.20.5", &|d| {
        replace(
            d,
            "app.go",
            "}\n\nfunc f6() int {\n",
            "}\n// f6 follows\nfunc f6() int {\n",
        );
    });
    git(&up.dir, &["checkout", "-q", "master"]);
}

fn edit(path: &'static str, from: &'static str, to: &'static str) -> impl Fn(&Path) {
    move |w: &Path| {
        let p = w.join(path);
        let t = fs::read_to_string(&p).unwrap();
        assert!(t.contains(from), "{path} lacks {from:?}");
        fs::write(&p, t.replacen(from, to, 1)).unwrap();
    }
}

fn nothing(_: &Path) {}

pub(crate) fn vulkan_patch(fx: &Fixture) -> String {
    fx.ollama.format_patch(
        "v0.20.0",
        "Scale f5 by the Vulkan device count",
        &nothing,
        &edit("app.go", "\treturn 5\n", "\treturn 5 * vulkan()\n"),
    )
}

fn gpu_patch(fx: &Fixture) -> String {
    fx.ollama.format_patch(
        "v0.20.0",
        "Report Vulkan devices",
        &nothing,
        &edit(
            "gpu/gpu.go",
            "\tout = append(out, \"cuda\")\n",
            "\tout = append(out, \"cuda\")\n\tout = append(out, \"vulkan\")\n",
        ),
    )
}

pub(crate) fn both(fx: &Fixture) -> Vec<(&'static str, String)> {
    vec![
        ("0001-vk.patch", vulkan_patch(fx)),
        ("0002-gpu.patch", gpu_patch(fx)),
    ]
}

/// The fixture, the derived tags, and a per-tag recipe for v0.20.0 pinning series `vk`.
pub(crate) type Make = dyn Fn(&Fixture) -> Vec<(&'static str, String)>;

pub(crate) fn setup(make: &Make) -> Setup {
    let fx = Fixture::new();
    upstream(&fx);
    let patches = make(&fx);
    let j = fx
        .run(&["recipe", "new", "--ollama", "v0.20.0", "--json"])
        .ok()
        .json();
    let recipe = PathBuf::from(j["recipe_path"].as_str().unwrap());
    let refs: Vec<(&str, &str)> = patches.iter().map(|(n, p)| (*n, p.as_str())).collect();
    let pin = fx.scratch.series("vk", &refs);
    let mut text = fs::read_to_string(&recipe).unwrap();
    text.push_str(&format!(
        "\n[[series]]\nname = \"vk\"\nrepo = \"ollama\"\nsha256 = \"{pin}\"\n"
    ));
    fs::write(&recipe, text).unwrap();
    let orig = patches.into_iter().map(|(_, p)| p).collect();
    Setup { fx, recipe, orig }
}

/// Every file under the project (recipes, patches, work/recipes): path and bytes.
pub(crate) fn project_files(s: &Setup) -> Vec<(String, Vec<u8>)> {
    let root = s.fx.scratch.project();
    let mut out = Vec::new();
    let mut stack = vec![root.clone()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "lock") {
                // work/rebase/<recipe>.lock: the per-recipe lock, kept like fetch's.
            } else {
                out.push((
                    p.strip_prefix(&root).unwrap().display().to_string(),
                    fs::read(&p).unwrap(),
                ));
            }
        }
    }
    out.sort();
    out
}

/// Applies `patches` with `git am -3`-free plain `git apply` on a checkout of `tag`;
/// returns the checkout.
fn apply_on(s: &Setup, tag: &str, patches: &[&str]) -> (tempfile::TempDir, PathBuf) {
    let (tmp, w) = s.fx.ollama.checkout(tag);
    for p in patches {
        let path = s.series_dir().join(p);
        git(&w, &["apply", "--check", path.to_str().unwrap()]);
        git(&w, &["apply", path.to_str().unwrap()]);
    }
    (tmp, w)
}

/// Everything before the diff: From, Subject, description, Upstream-Status.
fn header(p: &str) -> &str {
    &p[..p.find("\n---\n").unwrap()]
}

fn statuses(j: &serde_json::Value) -> Vec<String> {
    j["series"][0]["patches"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["status"].as_str().unwrap().to_string())
        .collect()
}

fn redact(s: &Setup, text: &str) -> String {
    let root = s.fx.scratch.path().display().to_string();
    redact_ids(&text.replace(&root, "[SCRATCH]"))
}

/// Commit ids and hashes (12 or more lower-case hex digits) become `[ID]`.
fn redact_ids(t: &str) -> String {
    let mut out = String::new();
    let mut run = String::new();
    for ch in t.chars() {
        if ch.is_ascii_hexdigit() && !ch.is_ascii_uppercase() {
            run.push(ch);
        } else {
            out.push_str(if run.len() >= 12 { "[ID]" } else { &run });
            run.clear();
            out.push(ch);
        }
    }
    out.push_str(if run.len() >= 12 { "[ID]" } else { &run });
    out
}

#[test]
fn rebase_onto_the_same_tag_changes_nothing() {
    let s = setup(&both);
    let before = project_files(&s);
    let run = s.rebase(&["--onto", "v0.20.0", "--json"]);
    let j = run.ok().json();
    assert_eq!(statuses(&j), ["clean", "clean"]);
    assert_eq!(j["outcome"]["state"], "done");
    assert_eq!(j["outcome"]["written"].as_array().unwrap().len(), 0);
    assert_eq!(project_files(&s), before, "not one byte changed");
    assert!(!s.state_dir().exists(), "no state left behind");
}

#[test]
fn moved_context_is_an_offset_and_the_patch_is_refreshed_with_its_header_kept() {
    let s = setup(&both);
    let (p1, p2) = (s.orig[0].clone(), s.orig[1].clone());
    let run = s.rebase(&["--onto", "v0.20.1"]);
    run.ok();
    insta::assert_snapshot!("rebase_offset_report", redact(&s, &run.stdout));
    let new1 = s.patch("0001-vk.patch");
    assert_ne!(new1, p1, "context and index lines refreshed");
    assert_eq!(header(&new1), header(&p1), "headers kept byte for byte");
    assert!(new1.contains("@@ -21,7 +21,7 @@"), "{new1}");
    // gpu.go did not move: its patch is the same bytes.
    assert_eq!(s.patch("0002-gpu.patch"), p2);
    let (_t, w) = apply_on(&s, "v0.20.1", &["0001-vk.patch", "0002-gpu.patch"]);
    assert!(fs::read_to_string(w.join("app.go"))
        .unwrap()
        .contains("return 5 * vulkan()"));
    // The recipe now pins the new tag and the refreshed series, and checks.
    let text = fs::read_to_string(&s.recipe).unwrap();
    assert!(text.contains("tag = \"v0.20.1\""), "{text}");
    s.run(&["recipe", "check", s.recipe.to_str().unwrap()]).ok();
    // Stable: the same rebase again (now from v0.20.1) changes nothing.
    let before = project_files(&s);
    s.rebase(&["--onto", "v0.20.1"]).ok();
    assert_eq!(project_files(&s), before);
}

#[test]
fn changed_surroundings_merge_three_way() {
    let s = setup(&|fx| vec![("0001-vk.patch", vulkan_patch(fx))]);
    let j = s.rebase(&["--onto", "v0.20.5", "--json"]).ok().json();
    assert_eq!(statuses(&j), ["merged"]);
    let hunks = &j["series"][0]["patches"][0]["files"][0]["hunks"];
    assert_eq!(hunks[0]["status"], "failed", "{j}");
    let (_t, w) = apply_on(&s, "v0.20.5", &["0001-vk.patch"]);
    let app = fs::read_to_string(w.join("app.go")).unwrap();
    assert!(
        app.contains("\treturn 5 * vulkan()\n}\n// f6 follows\n"),
        "{app}"
    );
}

#[test]
fn a_conflict_stops_with_a_work_tree_and_continue_takes_the_resolution() {
    let s = setup(&both);
    let p1 = s.orig[0].clone();
    let before = project_files(&s);
    let run = s.rebase(&["--onto", "v0.20.2"]);
    assert_eq!(run.code, 1, "{}\n{}", run.stdout, run.stderr);
    insta::assert_snapshot!("rebase_conflict_report", redact(&s, &run.stdout));
    assert_eq!(
        project_files(&s)
            .into_iter()
            .filter(|(p, _)| !p.starts_with("work/rebase"))
            .collect::<Vec<_>>(),
        before,
        "nothing under patches/ or recipes/ changed"
    );
    let tree = s.state_dir().join("tree");
    let app = fs::read_to_string(tree.join("app.go")).unwrap();
    assert!(
        app.contains("<<<<<<< v0.20.2") && app.contains(">>>>>>> 0001-vk.patch"),
        "{app}"
    );
    // The work tree is a git repository: status shows only the conflicted file.
    let st = git(&tree, &["status", "--porcelain"]);
    assert_eq!(st, "M app.go", "{st}");
    // --continue before resolving names the file and line.
    s.rebase(&["--continue"])
        .fails(1, &["app.go:", "conflict marker"]);
    // A scripted resolution: keep upstream's 50, scaled.
    let start = app.find("<<<<<<<").unwrap();
    let end = app.find(">>>>>>> 0001-vk.patch\n").unwrap() + ">>>>>>> 0001-vk.patch\n".len();
    let resolved = format!("{}\treturn 50 * vulkan()\n{}", &app[..start], &app[end..]);
    fs::write(tree.join("app.go"), &resolved).unwrap();
    let j = s.rebase(&["--continue", "--json"]).ok().json();
    assert_eq!(statuses(&j), ["resolved", "clean"]);
    assert!(!s.state_dir().exists());
    let new1 = s.patch("0001-vk.patch");
    assert_eq!(header(&new1), header(&p1));
    assert!(
        new1.contains("-\treturn 50\n+\treturn 50 * vulkan()\n"),
        "{new1}"
    );
    let (_t, w) = apply_on(&s, "v0.20.2", &["0001-vk.patch", "0002-gpu.patch"]);
    assert_eq!(fs::read_to_string(w.join("app.go")).unwrap(), resolved);
    s.run(&["recipe", "check", s.recipe.to_str().unwrap()]).ok();
}

#[test]
fn abort_restores_everything_byte_for_byte() {
    let s = setup(&|fx| vec![("0001-vk.patch", vulkan_patch(fx))]);
    let before = project_files(&s);
    assert_eq!(s.rebase(&["--onto", "v0.20.2"]).code, 1);
    // Someone edits the series while the rebase waits: --abort puts it back.
    fs::write(s.series_dir().join("0001-vk.patch"), "edited\n").unwrap();
    // A second start is refused while one is in progress.
    s.rebase(&["--onto", "v0.20.1"])
        .fails(2, &["already in progress", "--abort"]);
    let run = s.rebase(&["--abort"]);
    run.ok();
    assert!(run.stdout.contains("aborted"), "{}", run.stdout);
    assert_eq!(project_files(&s), before);
    assert!(!s.state_dir().exists());
    s.rebase(&["--continue"])
        .fails(2, &["no rebase", "--onto TAG"]);
}

#[test]
fn skip_drops_the_conflicting_patch_and_updates_the_pins() {
    let s = setup(&both);
    let p2 = s.orig[1].clone();
    let run = s.rebase(&["--onto", "v0.20.2", "--json"]);
    assert_eq!(run.code, 1);
    insta::assert_snapshot!("rebase_conflict_json", redact(&s, &run.stdout));
    let j = s.rebase(&["--skip", "--json"]).ok().json();
    assert_eq!(statuses(&j), ["skipped", "clean"]);
    assert!(!s.series_dir().join("0001-vk.patch").exists());
    assert_eq!(
        fs::read_to_string(s.series_dir().join("series")).unwrap(),
        "0002-gpu.patch\n"
    );
    assert_eq!(s.patch("0002-gpu.patch"), p2);
    s.run(&["recipe", "check", s.recipe.to_str().unwrap()]).ok();
}

#[test]
fn an_upstreamed_patch_is_dropped_and_reported() {
    let s = setup(&both);
    let run = s.rebase(&["--onto", "v0.20.3"]);
    run.ok();
    assert!(
        run.stdout
            .contains("0001-vk.patch   upstreamed in v0.20.3 (dropped)"),
        "{}",
        run.stdout
    );
    assert!(!s.series_dir().join("0001-vk.patch").exists());
    let sums = fs::read_to_string(s.series_dir().join("SHA256SUMS")).unwrap();
    assert!(!sums.contains("0001-vk.patch") && sums.contains("0002-gpu.patch"));
    s.run(&["recipe", "check", s.recipe.to_str().unwrap()]).ok();
}

#[test]
fn an_upstream_rename_is_followed_and_reported() {
    let s = setup(&|fx| vec![("0001-gpu.patch", gpu_patch(fx))]);
    let p2 = s.orig[0].clone();
    let j = s.rebase(&["--onto", "v0.20.4", "--json"]).ok().json();
    assert_eq!(statuses(&j), ["renamed"]);
    let r = &j["series"][0]["patches"][0]["renames"][0];
    assert_eq!(
        (r["from"].as_str(), r["to"].as_str()),
        (Some("gpu/gpu.go"), Some("discover/gpu.go"))
    );
    let new = s.patch("0001-gpu.patch");
    assert!(
        new.contains("diff --git a/discover/gpu.go b/discover/gpu.go"),
        "{new}"
    );
    assert_eq!(
        header(&new)
            .lines()
            .filter(|l| !l.starts_with(' '))
            .collect::<Vec<_>>(),
        header(&p2)
            .lines()
            .filter(|l| !l.starts_with(' '))
            .collect::<Vec<_>>()
    );
    let (_t, w) = apply_on(&s, "v0.20.4", &["0001-gpu.patch"]);
    assert!(fs::read_to_string(w.join("discover/gpu.go"))
        .unwrap()
        .contains("\"vulkan\""));
}

#[test]
fn two_patches_on_one_file_stack() {
    let s = setup(&|fx| {
        let first = edit("app.go", "\treturn 5\n", "\treturn 5 * vulkan()\n");
        let p2 = fx.ollama.format_patch(
            "v0.20.0",
            "Scale f6 too",
            &first,
            &edit("app.go", "\treturn 6\n", "\treturn 6 * vulkan()\n"),
        );
        vec![("0001-vk.patch", vulkan_patch(fx)), ("0002-f6.patch", p2)]
    });
    let j = s.rebase(&["--onto", "v0.20.1", "--json"]).ok().json();
    assert_eq!(statuses(&j), ["offset", "offset"]);
    let (_t, w) = apply_on(&s, "v0.20.1", &["0001-vk.patch", "0002-f6.patch"]);
    let app = fs::read_to_string(w.join("app.go")).unwrap();
    assert!(app.contains("return 5 * vulkan()") && app.contains("return 6 * vulkan()"));
    // And through a 3-way merge where the context changed under both.
    let j = s.rebase(&["--onto", "v0.20.5", "--json"]).ok().json();
    assert_eq!(statuses(&j), ["merged", "merged"]);
    let (_t, w) = apply_on(&s, "v0.20.5", &["0001-vk.patch", "0002-f6.patch"]);
    let app = fs::read_to_string(w.join("app.go")).unwrap();
    assert!(
        app.contains("// f6 follows\nfunc f6() int {\n\treturn 6 * vulkan()\n"),
        "{app}"
    );
}

#[test]
fn an_era_change_is_reported_with_the_verdict_and_nothing_is_written() {
    let s = setup(&|fx| vec![("0001-vk.patch", vulkan_patch(fx))]);
    let before = project_files(&s);
    let run = s.rebase(&["--onto", "v0.1.48"]);
    assert_eq!(run.code, 3, "{}\n{}", run.stdout, run.stderr);
    insta::assert_snapshot!("rebase_era_change", redact(&s, &run.stdout));
    let j = s.rebase(&["--onto", "v0.1.48", "--json"]).json();
    assert_eq!(j["outcome"]["state"], "era-change");
    assert_eq!(j["era"]["to"]["era"], "1b");
    assert_eq!(j["era"]["changed"], true);
    assert_eq!(project_files(&s), before);
    // Bad input: an unknown tag names the tag and the close ones.
    s.rebase(&["--onto", "v0.20.99"])
        .fails(2, &["v0.20.99", "v0.20."]);
}

/// Era 1b tags whose gen_linux.sh switches from LLAMA_* to GGML_* options (as v0.2.0 did),
/// and one that moves the llama.cpp submodule.
fn era1b(fx: &Fixture) {
    let up = &fx.ollama;
    let c = |k: usize| fx.llama.commits[k - 1].clone();
    up.release("v0.1.45", Layout::OneB { llama: &c(6) });
    let gen = |flag: &str| {
        format!(
            "{}\nCOMMON_CMAKE_DEFS=\"-D{flag}_AVX=on -D{flag}_NATIVE=off\"\n",
            super::support::build_fixture::GEN_LINUX_SH
        )
    };
    up.write("llm/generate/gen_linux.sh", &gen("LLAMA"));
    // Only this file: `add -A` would drop the gitlink (no submodule work tree).
    git(&up.dir, &["add", "llm/generate/gen_linux.sh"]);
    git(&up.dir, &["commit", "-q", "-m", "LLAMA flags"]);
    up.tag("v0.1.46");
    up.write("llm/generate/gen_linux.sh", &gen("GGML"));
    git(&up.dir, &["add", "llm/generate/gen_linux.sh"]);
    git(&up.dir, &["commit", "-q", "-m", "GGML flags"]);
    up.tag("v0.2.0");
    up.release("v0.2.5", Layout::OneB { llama: &c(7) });
}

fn recipe_for(fx: &Fixture, tag: &str, series: &[(&str, &str)], repo: &str) -> PathBuf {
    fx.recipe_with_series(tag, series, repo, "")
}

#[test]
fn a_renamed_vulkan_switch_is_an_era_change_and_allow_era_change_goes_on() {
    let fx = Fixture::new();
    era1b(&fx);
    let p = fx.ollama.format_patch(
        "v0.1.46",
        "Say vulkan",
        &nothing,
        &edit(
            "hello.go",
            "func hello() {}",
            "func hello() { println(\"vulkan\") }",
        ),
    );
    let recipe = recipe_for(&fx, "v0.1.46", &[("0001-hello.patch", &p)], "ollama");
    let r = recipe.to_str().unwrap();
    let j = fx
        .run(&["rebase-patches", r, "--onto", "v0.2.0", "--json"])
        .json();
    assert_eq!(j["outcome"]["state"], "era-change");
    assert_eq!(j["era"]["from"]["vulkan_switch"], "LLAMA_VULKAN");
    assert_eq!(j["era"]["to"]["vulkan_switch"], "GGML_VULKAN");
    assert!(
        j["era"]["reasons"][0]
            .as_str()
            .unwrap()
            .contains("builds without Vulkan"),
        "{j}"
    );
    let run = fx.run(&[
        "rebase-patches",
        r,
        "--onto",
        "v0.2.0",
        "--allow-era-change",
    ]);
    run.ok();
    assert!(run.stdout.contains("CHANGED"), "{}", run.stdout);
    assert!(
        run.stdout.contains("recipe new --ollama v0.2.0"),
        "{}",
        run.stdout
    );
}

#[test]
fn a_llama_cpp_series_moves_to_the_pin_of_the_new_tag() {
    let fx = Fixture::new();
    era1b(&fx);
    let p = crate::support::patch_text(
        "ggml-vulkan: mark Venus",
        "Pending",
        "diff --git a/ggml-vulkan.cpp b/ggml-vulkan.cpp\n--- a/ggml-vulkan.cpp\n+++ b/ggml-vulkan.cpp\n@@ -1 +1,2 @@\n // mini vulkan backend\n+// venus\n",
    );
    let recipe = recipe_for(&fx, "v0.1.45", &[("0001-venus.patch", &p)], "llama.cpp");
    let j = fx
        .run(&[
            "rebase-patches",
            recipe.to_str().unwrap(),
            "--onto",
            "v0.2.5",
            "--json",
        ])
        .ok()
        .json();
    let s = &j["series"][0];
    assert_eq!(s["repo"], "llama.cpp");
    assert_eq!(s["old_base"], fx.llama.commits[5].as_str());
    assert_eq!(s["new_base"], fx.llama.commits[6].as_str());
    assert_eq!(s["patches"][0]["status"], "clean");
    let text = fs::read_to_string(&recipe).unwrap();
    assert!(
        text.contains(&format!("commit = \"{}\"", fx.llama.commits[6])),
        "{text}"
    );
    assert!(text.contains("tag = \"v0.2.5\""), "{text}");
    fx.run(&["recipe", "check", recipe.to_str().unwrap()]).ok();
}

#[test]
fn files_created_in_a_renamed_directory_follow_it_and_a_stale_go_package_is_flagged() {
    let s = setup(&|fx| {
        let create = |w: &Path| {
            fs::write(
                w.join("gpu/gpu_vulkan.go"),
                "package gpu\n\n// Vulkan devices.\nfunc vulkanCount() int {\n\treturn 0\n}\n",
            )
            .unwrap();
            edit(
                "gpu/gpu.go",
                "\tout = append(out, \"cuda\")\n",
                "\tout = append(out, \"cuda\")\n\tout = append(out, \"vulkan\")\n",
            )(w);
        };
        let p1 = fx
            .ollama
            .format_patch("v0.20.0", "Detect Vulkan GPUs", &nothing, &create);
        let p2 = fx.ollama.format_patch(
            "v0.20.0",
            "Count one Vulkan device",
            &create,
            &edit("gpu/gpu_vulkan.go", "\treturn 0\n", "\treturn 1\n"),
        );
        vec![("0001-detect.patch", p1), ("0002-count.patch", p2)]
    });
    let j = s.rebase(&["--onto", "v0.20.4", "--json"]).ok().json();
    assert_eq!(statuses(&j), ["renamed", "renamed"]);
    let p = &j["series"][0]["patches"];
    let renames: Vec<(String, String)> = p[0]["renames"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["from"].as_str().unwrap().into(),
                r["to"].as_str().unwrap().into(),
            )
        })
        .collect();
    assert!(
        renames.contains(&("gpu/gpu_vulkan.go".into(), "discover/gpu_vulkan.go".into())),
        "{renames:?}"
    );
    assert!(
        p[0]["note"]
            .as_str()
            .unwrap()
            .contains("says `package gpu`"),
        "{j}"
    );
    let new1 = s.patch("0001-detect.patch");
    assert!(new1.contains("+++ b/discover/gpu_vulkan.go"), "{new1}");
    assert!(!new1.contains("b/gpu/"), "{new1}");
    let (_t, w) = apply_on(&s, "v0.20.4", &["0001-detect.patch", "0002-count.patch"]);
    assert!(fs::read_to_string(w.join("discover/gpu_vulkan.go"))
        .unwrap()
        .contains("return 1"));
    assert!(!w.join("gpu").exists(), "no stale gpu/ directory");
}

#[test]
fn bad_inputs_name_the_problem_and_the_fix_and_leave_nothing_behind() {
    let s = setup(&|fx| vec![("0001-vk.patch", vulkan_patch(fx))]);
    let before = project_files(&s);
    // A template is not a pin.
    let tpl = s.fx.scratch.project().join("recipes/era-4.toml");
    s.run(&["rebase-patches", tpl.to_str().unwrap(), "--onto", "v0.20.1"])
        .fails(2, &["era template", "recipe new --ollama TAG"]);
    // --onto is required to start; --continue/--onto do not mix.
    assert_eq!(s.rebase(&[]).code, 2);
    assert_eq!(s.rebase(&["--onto", "v0.20.1", "--continue"]).code, 2);
    // A series that does not fit its own pin: named, with the check to run.
    let bad = crate::support::patch_text(
        "Broken",
        "Pending",
        "diff --git a/app.go b/app.go\n--- a/app.go\n+++ b/app.go\n@@ -1,3 +1,3 @@\n package nothere\n \n-func f1() int {\n+func g1() int {\n",
    );
    let pin = s.fx.scratch.series("vk", &[("0001-vk.patch", &bad)]);
    let text = fs::read_to_string(&s.recipe).unwrap();
    let old_pin = text.split("sha256 = \"").nth(1).unwrap()[..64].to_string();
    fs::write(&s.recipe, text.replace(&old_pin, &pin)).unwrap();
    let before_bad = project_files(&s);
    s.rebase(&["--onto", "v0.20.1"]).fails(
        2,
        &[
            "0001-vk.patch does not apply to its own pinned base",
            "prepare RECIPE --check",
        ],
    );
    assert_eq!(project_files(&s), before_bad, "no state left behind");
    assert_ne!(before, before_bad);
}

#[test]
fn a_series_pinned_by_the_template_gets_its_pin_there() {
    let s = setup(&|fx| vec![("0001-vk.patch", vulkan_patch(fx))]);
    // Move the [[series]] from the per-tag recipe into the era-4 template.
    let text = fs::read_to_string(&s.recipe).unwrap();
    let at = text.find("\n[[series]]").unwrap();
    fs::write(&s.recipe, &text[..at + 1]).unwrap();
    let tpl = s.fx.scratch.project().join("recipes/era-4.toml");
    let t = fs::read_to_string(&tpl).unwrap();
    let start = t.find("[[series]]").unwrap();
    let end = start + t[start..].find("\n\n").unwrap() + 1;
    fs::write(
        &tpl,
        format!("{}{}{}", &t[..start], &text[at + 1..], &t[end..]),
    )
    .unwrap();
    s.run(&["recipe", "check", s.recipe.to_str().unwrap()]).ok();
    let run = s.rebase(&["--onto", "v0.20.1"]);
    run.ok();
    assert!(run.stdout.contains("is the era template"), "{}", run.stdout);
    let new_pin = fs::read_to_string(s.series_dir().join("SHA256SUMS")).unwrap();
    let new_pin = ollama_vulkan::patch::series::sha256_hex(new_pin.as_bytes());
    assert!(fs::read_to_string(&tpl).unwrap().contains(&new_pin));
    assert!(fs::read_to_string(&s.recipe)
        .unwrap()
        .contains("tag = \"v0.20.1\""));
    s.run(&["recipe", "check", s.recipe.to_str().unwrap()]).ok();
}

#[test]
fn a_second_concurrent_rebase_of_the_same_recipe_is_refused() {
    let s = setup(&|fx| vec![("0001-vk.patch", vulkan_patch(fx))]);
    let lock_path = s.state_dir().with_extension("lock");
    fs::create_dir_all(lock_path.parent().unwrap()).unwrap();
    let lock = fs::File::create(&lock_path).unwrap();
    lock.lock().unwrap();
    s.rebase(&["--onto", "v0.20.1"])
        .fails(2, &["another rebase-patches", "is running"]);
    lock.unlock().unwrap();
    s.rebase(&["--onto", "v0.20.1"]).ok();
}
