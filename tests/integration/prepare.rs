//! `prepare` and `check-patches`: real git-format patches made with `git format-patch`
//! against the fixture upstream, applied to trees fetched by the real binary.

use std::fs;
use std::path::{Path, PathBuf};

use crate::support::{git, patch_text, Fixture, Run};

fn recipe_with(fx: &Fixture, tag: &str, series: &[(&str, &str)], extra: &str) -> PathBuf {
    fx.recipe_with_series(tag, series, "ollama", extra)
}

fn prepare(fx: &Fixture, recipe: &Path, extra: &[&str]) -> (PathBuf, Run) {
    let dest = fx.scratch.path().join("build");
    let mut args = vec![
        "prepare",
        recipe.to_str().unwrap(),
        "--dest",
        dest.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    let run = fx.run(&args);
    (dest, run)
}

fn nothing(_: &Path) {}

fn edit(path: &'static str, from: &'static str, to: &'static str) -> impl Fn(&Path) {
    move |w: &Path| {
        let p = w.join(path);
        let t = fs::read_to_string(&p).unwrap();
        assert!(t.contains(from), "{path} lacks {from:?}");
        fs::write(&p, t.replacen(from, to, 1)).unwrap();
    }
}

/// A patch adding a line to main.go at v0.24.0.
fn main_go_patch(fx: &Fixture) -> String {
    fx.ollama.format_patch(
        "v0.24.0",
        "Say hello",
        &nothing,
        &edit(
            "hello.go",
            "func hello() {}",
            "func hello() { println(\"vulkan\") }",
        ),
    )
}

/// A snapshot of every file under `dir` except .git: path, mode, bytes.
fn snapshot(dir: &Path) -> Vec<(String, u32, Vec<u8>)> {
    use std::os::unix::fs::PermissionsExt;
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            if e.file_name() == ".git" {
                continue;
            }
            let m = fs::symlink_metadata(&p).unwrap();
            if m.is_dir() {
                stack.push(p);
            } else {
                let bytes = if m.file_type().is_symlink() {
                    fs::read_link(&p)
                        .unwrap()
                        .to_string_lossy()
                        .as_bytes()
                        .to_vec()
                } else {
                    fs::read(&p).unwrap()
                };
                out.push((
                    p.strip_prefix(dir).unwrap().display().to_string(),
                    m.permissions().mode(),
                    bytes,
                ));
            }
        }
    }
    out.sort();
    out
}

#[test]
fn a_clean_series_becomes_one_commit_per_patch_and_rerun_gives_the_same_commits() {
    let fx = Fixture::new();
    let p1 = main_go_patch(&fx);
    let p2 = fx
        .ollama
        .format_patch("v0.24.0", "Add a build script", &nothing, &|w: &Path| {
            use std::os::unix::fs::PermissionsExt;
            fs::write(w.join("build.sh"), "#!/bin/sh\necho hi\n").unwrap();
            fs::set_permissions(w.join("build.sh"), fs::Permissions::from_mode(0o755)).unwrap();
            fs::remove_file(w.join("CMakeLists.txt")).unwrap();
        });
    let recipe = recipe_with(
        &fx,
        "v0.24.0",
        &[("0001-hello.patch", &p1), ("0002-build.patch", &p2)],
        "",
    );
    let (dest, run) = prepare(&fx, &recipe, &["--json"]);
    let j = run.ok().json();
    let tree = dest.join("src/ollama");
    assert_eq!(j["ok"], true);
    let statuses: Vec<&str> = j["series"][0]["patches"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["status"].as_str().unwrap())
        .collect();
    assert_eq!(statuses, ["clean", "clean"]);
    assert!(fs::read_to_string(tree.join("hello.go"))
        .unwrap()
        .contains("println(\"vulkan\")"));
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        fs::metadata(tree.join("build.sh"))
            .unwrap()
            .permissions()
            .mode()
            & 0o777,
        0o755
    );
    assert!(!tree.join("CMakeLists.txt").exists(), "the delete applied");
    // One commit per patch, subjects and authors from the patches, on top of the pin.
    let log = git(&tree, &["log", "--format=%s|%an", "-3"]);
    assert_eq!(
        log,
        "Add a build script|Pat Cher\nSay hello|Pat Cher\nrelease v0.24.0|Fixture"
    );
    assert_eq!(
        git(&tree, &["rev-parse", "HEAD~2"]),
        git(&fx.ollama.dir, &["rev-parse", "v0.24.0^{commit}"])
    );
    assert_eq!(
        git(&tree, &["status", "--porcelain"]),
        "",
        "index and tree agree"
    );
    let head = git(&tree, &["rev-parse", "HEAD"]);
    assert_eq!(j["trees"][0]["commits"][1], head.as_str());
    // Same inputs, same commits (fixed dates): builds can key caches on them.
    let (_, again) = prepare(&fx, &recipe, &["--json"]);
    assert_eq!(again.ok().json()["trees"][0]["commits"][1], head.as_str());
    // No .rej / .orig anywhere.
    assert!(snapshot(&tree)
        .iter()
        .all(|(p, _, _)| !p.ends_with(".rej") && !p.ends_with(".orig")));
}

#[test]
fn offsets_are_reported_per_hunk_and_check_writes_nothing() {
    let fx = Fixture::new();
    // Stated at line 5, as if made against a main.go with four more lines on top: the
    // drift a new upstream tag brings. Applies at offset -4.
    let p = patch_text(
        "Say hello",
        "Pending",
        "diff --git a/hello.go b/hello.go\n--- a/hello.go\n+++ b/hello.go\n@@ -5,3 +5,3 @@\n package main\n \n-func hello() {}\n+func hello() { println(\"vulkan\") }\n",
    );
    let recipe = recipe_with(&fx, "v0.24.0", &[("0001-hello.patch", &p)], "");
    let dest = fx.scratch.path().join("build");
    let run = fx.run(&[
        "prepare",
        recipe.to_str().unwrap(),
        "--check",
        "--dest",
        dest.to_str().unwrap(),
    ]);
    run.ok();
    assert!(!dest.exists(), "--check writes no tree");
    insta::assert_snapshot!("prepare_check_offset", run.stdout);
    let (_, run) = prepare(&fx, &recipe, &[]);
    run.ok();
    assert!(run.stdout.contains("offset 4"), "{}", run.stdout);
}

#[test]
fn a_failing_hunk_names_file_hunk_and_lines_and_leaves_the_tree_as_fetched() {
    let fx = Fixture::new();
    let good = main_go_patch(&fx);
    // Context that v0.24.0 does not have.
    let bad = fx.ollama.format_patch(
        "v0.24.0",
        "Tune presets",
        &edit(
            "CMakeLists.txt",
            "project(Ollama C CXX)",
            "project(Other C CXX)",
        ),
        &edit(
            "CMakeLists.txt",
            "project(Other C CXX)",
            "project(Other C CXX VERSION 1)",
        ),
    );
    let recipe = recipe_with(
        &fx,
        "v0.24.0",
        &[("0001-hello.patch", &good), ("0002-presets.patch", &bad)],
        "",
    );
    // What a plain fetch gives, to compare byte for byte.
    let fetched = fx.scratch.path().join("fetched");
    fx.run(&[
        "fetch",
        recipe.to_str().unwrap(),
        "--dest",
        fetched.to_str().unwrap(),
    ])
    .ok();
    let (dest, run) = prepare(&fx, &recipe, &[]);
    run.fails(
        1,
        &[
            "1 of 2 patches do not apply; nothing was changed",
            "0002-presets.patch",
            "FAILED",
            "CMakeLists.txt hunk 1 @@ -1,5 +1,5 @@",
            "does not match at line 1",
            "line 2: expected `project(Other C CXX)`, found `project(Ollama C CXX)`",
        ],
    );
    // Progress lines carry timings; the report itself is stable.
    insta::assert_snapshot!(
        "prepare_failed_report",
        crate::support::without_progress(&run.stderr)
    );
    let tree = dest.join("src/ollama");
    assert_eq!(
        snapshot(&tree),
        snapshot(&fetched.join("src/ollama")),
        "byte-identical to the fetched tree"
    );
    assert_eq!(
        git(&tree, &["rev-parse", "HEAD"]),
        git(&fx.ollama.dir, &["rev-parse", "v0.24.0^{commit}"])
    );
    assert_eq!(git(&tree, &["status", "--porcelain"]), "");
    // --check --json gives the same facts as data.
    let j = fx
        .run(&["prepare", recipe.to_str().unwrap(), "--check", "--json"])
        .fails(1, &[])
        .json();
    let p2 = &j["series"][0]["patches"][1];
    assert_eq!(p2["status"], "failed");
    let h = &p2["files"][0]["hunks"][0];
    assert_eq!(h["status"], "failed");
    assert_eq!(h["mismatches"][0]["found"], "project(Ollama C CXX)");
}

#[test]
fn a_patch_already_upstream_is_reported_as_such() {
    let fx = Fixture::new();
    // A patch whose result is what v0.24.0 already has.
    let p = fx.ollama.format_patch(
        "v0.24.0",
        "Name the project",
        &edit(
            "CMakeLists.txt",
            "project(Ollama C CXX)",
            "project(Old C CXX)",
        ),
        &edit(
            "CMakeLists.txt",
            "project(Old C CXX)",
            "project(Ollama C CXX)",
        ),
    );
    let recipe = recipe_with(&fx, "v0.24.0", &[("0001-name.patch", &p)], "");
    let run = fx.run(&["prepare", recipe.to_str().unwrap(), "--check"]);
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert!(run.stdout.contains("already upstream"), "{}", run.stdout);
    assert!(run.stdout.contains("its reverse applies"), "{}", run.stdout);
    // prepare itself refuses it: the series needs refreshing.
    prepare(&fx, &recipe, &[])
        .1
        .fails(1, &["1 of 1 patches do not apply", "already upstream"]);
}

#[test]
fn fuzz_is_refused_by_default_allowed_by_flag_or_recipe_and_warned_about() {
    let fx = Fixture::new();
    // The line above the change differs from v0.24.0's (context drift).
    let p = fx.ollama.format_patch(
        "v0.24.0",
        "Say hello",
        &edit("hello.go", "package main\n", "package main // drifted\n"),
        &edit(
            "hello.go",
            "func hello() {}",
            "func hello() { println(\"vulkan\") }",
        ),
    );
    let recipe = recipe_with(&fx, "v0.24.0", &[("0001-hello.patch", &p)], "");
    prepare(&fx, &recipe, &[]).1.fails(1, &["FAILED"]);
    let (dest, run) = prepare(&fx, &recipe, &["--fuzz", "2"]);
    run.ok();
    assert!(run.stdout.contains("FUZZ"), "{}", run.stdout);
    assert!(
        run.stderr.contains("warning: some hunks applied with fuzz"),
        "{}",
        run.stderr
    );
    assert!(fs::read_to_string(dest.join("src/ollama/hello.go"))
        .unwrap()
        .contains("vulkan"));
    let recipe = recipe_with(&fx, "v0.24.0", &[("0001-hello.patch", &p)], "fuzz = 2\n");
    prepare(&fx, &recipe, &[]).1.ok();
}

#[test]
fn paths_that_escape_the_tree_are_refused_naming_patch_and_line() {
    let fx = Fixture::new();
    let cases = [
        ("../outside", "leaves the tree (`..`)"),
        ("/etc/passwd", "is absolute"),
        ("escape/passwd", "goes through the symlink `escape`"),
        (".git/config", "writes into the git directory"),
    ];
    for (path, why) in cases {
        let diff = format!("diff --git a/{path} b/{path}\nnew file mode 100644\n--- /dev/null\n+++ b/{path}\n@@ -0,0 +1 @@\n+owned\n");
        let p = patch_text("Escape", "Pending", &diff);
        let recipe = recipe_with(&fx, "v0.24.0", &[("0001-escape.patch", &p)], "");
        let (dest, run) = prepare(&fx, &recipe, &[]);
        run.fails(2, &["0001-escape.patch:8:", why]);
        assert!(!dest.join("src/ollama/outside").exists());
        assert!(!fx.scratch.path().join("build/src/outside").exists());
    }
}

#[test]
fn binary_patches_are_refused_and_mode_changes_apply() {
    let fx = Fixture::new();
    let bin = patch_text(
        "Logo",
        "Pending",
        "diff --git a/logo.png b/logo.png\nnew file mode 100644\nindex 0000000..1111111\nGIT binary patch\nliteral 1\nIcmZo*000001\n\nliteral 0\nHcmV?d00001\n\n",
    );
    let recipe = recipe_with(&fx, "v0.24.0", &[("0001-logo.patch", &bin)], "");
    prepare(&fx, &recipe, &[]).1.fails(
        2,
        &["0001-logo.patch:11:", "binary patches are not supported"],
    );
    let chmod = fx.ollama.format_patch(
        "v0.24.0",
        "Make main.go executable",
        &nothing,
        &|w: &Path| {
            use std::os::unix::fs::PermissionsExt;
            fs::set_permissions(w.join("hello.go"), fs::Permissions::from_mode(0o755)).unwrap();
        },
    );
    assert!(chmod.contains("new mode 100755"), "{chmod}");
    let recipe = recipe_with(&fx, "v0.24.0", &[("0001-chmod.patch", &chmod)], "");
    let (dest, run) = prepare(&fx, &recipe, &[]);
    run.ok();
    use std::os::unix::fs::PermissionsExt;
    let mode = fs::metadata(dest.join("src/ollama/hello.go"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o755);
    assert_eq!(
        git(&dest.join("src/ollama"), &["status", "--porcelain"]),
        ""
    );
}

#[test]
fn crlf_files_are_patched_keeping_their_line_endings() {
    let fx = Fixture::new();
    let create = patch_text(
        "Add a Windows file",
        "Pending",
        "diff --git a/win.txt b/win.txt\nnew file mode 100644\n--- /dev/null\n+++ b/win.txt\n@@ -0,0 +1,2 @@\n+one\r\n+two\r\n",
    );
    // The second patch lost its \r (as mailers do); the file keeps CRLF.
    let modify = patch_text(
        "Change it",
        "Pending",
        "diff --git a/win.txt b/win.txt\n--- a/win.txt\n+++ b/win.txt\n@@ -1,2 +1,2 @@\n one\n-two\n+TWO\n",
    );
    let recipe = recipe_with(
        &fx,
        "v0.24.0",
        &[
            ("0001-create.patch", &create),
            ("0002-modify.patch", &modify),
        ],
        "",
    );
    let (dest, run) = prepare(&fx, &recipe, &[]);
    run.ok();
    assert_eq!(
        fs::read(dest.join("src/ollama/win.txt")).unwrap(),
        b"one\r\nTWO\r\n"
    );
}

#[test]
fn series_problems_are_bad_input() {
    let fx = Fixture::new();
    // An empty series applies nothing and says so.
    let recipe = recipe_with(&fx, "v0.24.0", &[], "");
    let (_, run) = prepare(&fx, &recipe, &[]);
    run.ok();
    assert!(
        run.stdout.contains("series vk (ollama, 0 patches)"),
        "{}",
        run.stdout
    );
    // A patch edited after the pin.
    let p = main_go_patch(&fx);
    let recipe = recipe_with(&fx, "v0.24.0", &[("0001-hello.patch", &p)], "");
    fs::write(
        fx.scratch.project().join("patches/vk/0001-hello.patch"),
        p.replace("vulkan", "VULKAN"),
    )
    .unwrap();
    prepare(&fx, &recipe, &[]).1.fails(
        2,
        &[
            "series `vk` is broken",
            "edited after the series was pinned",
        ],
    );
    // No Upstream-Status.
    let p = main_go_patch(&fx).replace("Upstream-Status: Pending", "");
    let recipe = recipe_with(&fx, "v0.24.0", &[("0001-hello.patch", &p)], "");
    prepare(&fx, &recipe, &[]).1.fails(
        2,
        &[
            "0001-hello.patch:1: no `Upstream-Status:` header",
            "Upstream-Status: Pending",
        ],
    );
    // Inappropriate needs a reason.
    let p =
        main_go_patch(&fx).replace("Upstream-Status: Pending", "Upstream-Status: Inappropriate");
    let recipe = recipe_with(&fx, "v0.24.0", &[("0001-hello.patch", &p)], "");
    prepare(&fx, &recipe, &[])
        .1
        .fails(2, &["`Inappropriate` needs a reason in brackets"]);
    // A truncated patch.
    let p = main_go_patch(&fx);
    let cut = &p[..p.find("+func hello()").unwrap()];
    let recipe = recipe_with(&fx, "v0.24.0", &[("0001-hello.patch", cut)], "");
    prepare(&fx, &recipe, &[]).1.fails(
        2,
        &[
            "0001-hello.patch:17:",
            "has 3 old and 2 new lines",
            "regenerate it",
        ],
    );
    // A file the patch modifies is not there.
    let p = patch_text(
        "Ghost",
        "Pending",
        "diff --git a/ghost.c b/ghost.c\n--- a/ghost.c\n+++ b/ghost.c\n@@ -1 +1 @@\n-a\n+b\n",
    );
    let recipe = recipe_with(&fx, "v0.24.0", &[("0001-ghost.patch", &p)], "");
    prepare(&fx, &recipe, &[])
        .1
        .fails(1, &["ghost.c: ghost.c does not exist"]);
    // A llama.cpp series in era 4, where llama.cpp is vendored.
    let p = main_go_patch(&fx);
    let recipe = recipe_with(&fx, "v0.24.0", &[("0001-hello.patch", &p)], "");
    let t = fs::read_to_string(&recipe)
        .unwrap()
        .replace("repo = \"ollama\"", "repo = \"llama.cpp\"");
    fs::write(&recipe, t).unwrap();
    prepare(&fx, &recipe, &[]).1.fails(
        2,
        &["targets llama.cpp, but era 4 has no separate llama.cpp tree"],
    );
}

#[test]
fn check_patches_prints_a_tag_by_patch_matrix_from_git_objects() {
    let fx = Fixture::new();
    let hello = main_go_patch(&fx);
    let presets = fx.ollama.format_patch(
        "v0.24.0",
        "Name the project",
        &nothing,
        &edit(
            "CMakeLists.txt",
            "project(Ollama C CXX)",
            "project(OllamaVulkan C CXX)",
        ),
    );
    fx.scratch.series(
        "vk",
        &[("0001-hello.patch", &hello), ("0002-name.patch", &presets)],
    );
    let run = fx.run(&["check-patches", "vk", "--tags", "v0.4.0..v0.32.15"]);
    // v0.32.15 has no CMakeLists.txt at the top: the second patch fails there.
    run.fails(1, &[]);
    insta::assert_snapshot!(
        "check_patches_matrix",
        crate::support::without_timings(&run.stdout)
    );
    let j = fx
        .run(&["check-patches", "--all-tags", "--json"])
        .fails(1, &[])
        .json();
    // All of patches/: the shipped series too; ours is found by name.
    let vk = j
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["series"] == "vk")
        .unwrap();
    let rows = vk["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 14, "every fixture tag");
    let row = |tag: &str| rows.iter().find(|r| r["tag"] == tag).unwrap();
    assert_eq!(row("v0.24.0")["cells"][0]["status"], "clean");
    assert_eq!(row("v0.24.0")["cells"][1]["status"], "clean");
    assert_eq!(
        row("v0.12.5")["cells"][1]["status"],
        "failed",
        "era 3's CMakeLists.txt lacks the context"
    );
    assert_eq!(row("v0.32.15")["cells"][1]["status"], "failed");
    assert!(
        j[0]["memo_hits"].as_u64().unwrap() > 0,
        "shared blobs are answered from the memo"
    );
    // Bad ranges name the tag and the fix.
    fx.run(&["check-patches", "vk", "--tags", "v0.24.0..v7.0.0"])
        .fails(2, &["tag `v7.0.0` is not in the mirror"]);
    fx.run(&["check-patches", "vk", "--tags", "v0.24.0..v0.4.0"])
        .fails(2, &["`v0.24.0` comes after `v0.4.0`"]);
    fx.run(&["check-patches", "nope", "--all-tags"])
        .fails(2, &["series `nope`"]);
}

#[test]
fn a_llama_cpp_series_is_committed_on_top_of_the_pin_in_era_1b_and_5() {
    let fx = Fixture::new();
    let p = patch_text(
        "Vulkan: enable the backend",
        "Inappropriate [ollama-vulkan build glue]",
        "diff --git a/ggml-vulkan.cpp b/ggml-vulkan.cpp\n--- a/ggml-vulkan.cpp\n+++ b/ggml-vulkan.cpp\n@@ -1 +1,2 @@\n // mini vulkan backend\n+// enabled by ollama-vulkan\n",
    );
    // Era 5's tree also carries Ollama's compat patches, uncommitted as its CMake
    // leaves them.
    for (tag, llama_dir, pin, status) in [
        ("v0.1.48", "src/ollama/llm/llama.cpp", 5, ""),
        ("v0.32.15", "src/llama.cpp", 10, "?? compat-hook.txt"),
    ] {
        let recipe = recipe_with(&fx, tag, &[("0001-vk.patch", &p)], "");
        let t = fs::read_to_string(&recipe)
            .unwrap()
            .replace("repo = \"ollama\"", "repo = \"llama.cpp\"");
        fs::write(&recipe, t).unwrap();
        let (dest, run) = prepare(&fx, &recipe, &["--json"]);
        let j = run.ok().json();
        assert_eq!(j["trees"][0]["repo"], "llama.cpp");
        let llama = dest.join(llama_dir);
        assert_eq!(
            git(&llama, &["rev-parse", "HEAD^"]),
            fx.llama.commits[pin],
            "{tag}: the pin is the parent of our commit"
        );
        assert_eq!(
            git(&llama, &["log", "-1", "--format=%s"]),
            "Vulkan: enable the backend"
        );
        assert!(fs::read_to_string(llama.join("ggml-vulkan.cpp"))
            .unwrap()
            .contains("enabled by ollama-vulkan"));
        assert_eq!(git(&llama, &["status", "--porcelain"]), status, "{tag}");
    }
}
