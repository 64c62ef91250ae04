//! `fetch`: clean trees at the pins, placed per era, atomic, with partial mirrors.

use std::fs;
use std::path::{Path, PathBuf};

use crate::support::{git, Fixture};

fn new_recipe(fx: &Fixture, tag: &str) -> PathBuf {
    fx.new_recipe(tag)
}

fn fetch(fx: &Fixture, recipe: &Path, dest: &Path) -> crate::support::Run {
    fx.run(&[
        "fetch",
        recipe.to_str().unwrap(),
        "--dest",
        dest.to_str().unwrap(),
        "--json",
    ])
}

#[test]
fn era_4_tree_is_clean_at_the_pinned_commit() {
    let fx = Fixture::new();
    let recipe = new_recipe(&fx, "v0.24.0");
    let dest = fx.scratch.path().join("b4");
    let j = fetch(&fx, &recipe, &dest).ok().json();
    let tree = PathBuf::from(j["ollama_tree"].as_str().unwrap());
    assert_eq!(tree, dest.join("src/ollama"));
    assert_eq!(
        j["llamacpp_tree"],
        serde_json::Value::Null,
        "era 4 vendors llama.cpp"
    );
    assert_eq!(
        j["ollama_commit"],
        git(&fx.ollama.dir, &["rev-parse", "v0.24.0^{commit}"])
    );
    assert!(tree.join("CMakePresets.json").is_file());
    assert_eq!(
        git(&tree, &["rev-parse", "HEAD"]),
        j["ollama_commit"].as_str().unwrap()
    );
    assert_eq!(
        git(&tree, &["status", "--porcelain"]),
        "",
        "the tree is clean"
    );
}

#[test]
fn era_1b_places_llama_cpp_as_a_git_tree_at_the_pin() {
    let fx = Fixture::new();
    let recipe = new_recipe(&fx, "v0.1.48");
    let dest = fx.scratch.path().join("b1");
    let j = fetch(&fx, &recipe, &dest).ok().json();
    let llama = dest.join("src/ollama/llm/llama.cpp");
    assert_eq!(j["llamacpp_tree"], llama.to_str().unwrap());
    assert_eq!(git(&llama, &["rev-parse", "HEAD"]), fx.llama.commits[5]);
    assert!(llama.join("ggml-vulkan.cpp").is_file());
    assert_eq!(git(&llama, &["status", "--porcelain"]), "");
    // Our series will be committed on top: the tree must accept commits.
    fs::write(llama.join("ours.txt"), "x").unwrap();
    git(&llama, &["add", "ours.txt"]);
    git(
        &llama,
        &[
            "-c",
            "user.name=t",
            "-c",
            "user.email=t@t",
            "commit",
            "-qm",
            "ours",
        ],
    );
}

#[test]
fn era_5_applies_compat_patches_in_file_name_order_and_refetch_is_clean() {
    let fx = Fixture::new();
    let recipe = new_recipe(&fx, "v0.32.15");
    let dest = fx.scratch.path().join("b5");
    let j = fetch(&fx, &recipe, &dest).ok().json();
    let llama = dest.join("src/llama.cpp");
    assert_eq!(j["llamacpp_tree"], llama.to_str().unwrap());
    assert_eq!(j["llamacpp_commit"], fx.llama.commits[10].as_str());
    let order: Vec<&str> = j["compat_patches"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["patch"].as_str().unwrap())
        .collect();
    assert_eq!(order, ["001-hooks.patch", "models/003-more.patch"]);
    assert_eq!(
        fs::read_to_string(llama.join("compat-hook.txt")).unwrap(),
        "hooked\nmore\n"
    );
    // Sparse patterns of the era-5 template leave test data out.
    assert!(!dest.join("src/ollama/integration/testdata").exists());
    // A second fetch replaces the trees with fresh ones (no double patching).
    fs::write(dest.join("src/ollama/stray.txt"), "x").unwrap();
    fetch(&fx, &recipe, &dest).ok();
    assert!(!dest.join("src/ollama/stray.txt").exists());
    assert_eq!(
        fs::read_to_string(llama.join("compat-hook.txt")).unwrap(),
        "hooked\nmore\n"
    );
}

#[test]
fn a_moved_tag_is_a_hard_error_showing_both_commits() {
    let fx = Fixture::new();
    let recipe = new_recipe(&fx, "v0.24.0");
    let old = git(&fx.ollama.dir, &["rev-parse", "v0.24.0^{commit}"]);
    fx.ollama.commit("retag");
    git(
        &fx.ollama.dir,
        &["tag", "-f", "-a", "-m", "moved", "v0.24.0"],
    );
    let new = fx.ollama.head();
    let dest = fx.scratch.path().join("moved");
    fetch(&fx, &recipe, &dest).fails(2, &["tag v0.24.0 of ollama moved", &old, &new]);
    assert!(!dest.join("src/ollama").exists());
}

/// A copy of the fixture's ollama upstream as a mirror with one blob deleted.
fn partial_mirror(fx: &Fixture, path: &str) -> PathBuf {
    partial_copy(
        fx,
        &fx.ollama.dir,
        "partial.git",
        &format!("v0.32.15:{path}"),
    )
}

/// A bare copy of `upstream` whose blob `rev` (REV:PATH) is deleted, as in the partial
/// mirrors: loose objects, so the one blob can go.
fn partial_copy(fx: &Fixture, upstream: &Path, name: &str, rev: &str) -> PathBuf {
    let mirror = fx.scratch.path().join(name);
    git(
        fx.scratch.path(),
        &[
            "clone",
            "-q",
            "--bare",
            "--no-local",
            upstream.to_str().unwrap(),
            mirror.to_str().unwrap(),
        ],
    );
    let blob = git(upstream, &["rev-parse", rev]);
    let pack_dir = mirror.join("objects/pack");
    for e in fs::read_dir(&pack_dir).unwrap().flatten() {
        let p = e.path();
        if p.extension().is_some_and(|x| x == "pack") {
            let moved = fx.scratch.path().join(format!("{name}.pack"));
            fs::rename(&p, &moved).unwrap();
            let _ = fs::remove_file(p.with_extension("idx"));
            let status = std::process::Command::new("git")
                .args(["unpack-objects", "-q"])
                .current_dir(&mirror)
                .stdin(fs::File::open(&moved).unwrap())
                .status()
                .unwrap();
            assert!(status.success());
        }
    }
    fs::remove_file(mirror.join("objects").join(&blob[..2]).join(&blob[2..])).unwrap();
    mirror
}

/// `fetch RECIPE --dest DEST --json` through the given mirrors (partial copies, say).
fn fetch_through(
    fx: &Fixture,
    recipe: &Path,
    dest: &Path,
    ollama: &Path,
    llama: &Path,
) -> std::process::Command {
    fx.scratch.command(&[
        "fetch",
        recipe.to_str().unwrap(),
        "--dest",
        dest.to_str().unwrap(),
        "--json",
        &format!("--mirror=ollama={}", ollama.display()),
        &format!("--mirror=llama.cpp={}", llama.display()),
    ])
}

/// Fetches the era-1b fixture tag through a llama.cpp mirror that lacks the
/// pre-generated shader header, with `path_env` as PATH when given.
fn fetch_without_shader_header(
    fx: &Fixture,
    path_env: Option<&str>,
) -> (PathBuf, crate::support::Run) {
    let recipe = new_recipe(fx, "v0.1.48");
    let rev = format!("{}:ggml-vulkan-shaders.hpp", fx.llama.commits[5]);
    let mirror = partial_copy(fx, &fx.llama.repo.dir, "llama-partial.git", &rev);
    let dest = fx.scratch.path().join("legacy");
    let mut cmd = fetch_through(fx, &recipe, &dest, &fx.ollama.dir, &mirror);
    if let Some(p) = path_env {
        cmd.env("PATH", p);
    }
    (dest, cmd.output().unwrap().into())
}

#[test]
fn a_missing_legacy_shader_header_is_regenerated_with_the_pins_script_and_glslc() {
    let fx = Fixture::new();
    let (dest, run) = fetch_without_shader_header(&fx, None);
    let j = run.ok().json();
    let regen = &j["regenerated"][0];
    assert_eq!(regen["path"], "ggml-vulkan-shaders.hpp");
    assert_eq!(regen["repo"], "llama.cpp");
    assert!(
        regen["tools"]
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t.as_str().unwrap().starts_with("glslc: ")),
        "glslc's version is recorded: {regen}"
    );
    let llama = dest.join("src/ollama/llm/llama.cpp");
    let header = fs::read_to_string(llama.join("ggml-vulkan-shaders.hpp")).unwrap();
    // SPIR-V's magic number 0x07230203, little-endian, opens the compiled probe.
    assert!(
        header.contains("probe_data[] = {0x03,0x02,0x23,0x07"),
        "a real SPIR-V module: {}",
        &header[..header.len().min(200)]
    );
    // Committed on top of the pin, so the tree is clean and the pin is HEAD^.
    assert_eq!(git(&llama, &["status", "--porcelain"]), "");
    assert_eq!(git(&llama, &["rev-parse", "HEAD^"]), fx.llama.commits[5]);
    assert_eq!(
        regen["commit"],
        git(&llama, &["rev-parse", "HEAD"]).as_str()
    );
    assert_eq!(
        regen["sha256"].as_str().unwrap().len(),
        64,
        "the manifest records the header's hash"
    );
    // The same record lands in the build dir's sources.json.
    let manifest: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(dest.join("sources.json")).unwrap()).unwrap();
    assert_eq!(manifest["regenerated"], j["regenerated"]);
    assert_eq!(regen["reused"], false);
    // A refetch of the same pin with the same tools reuses the cached header: same
    // bytes, same (deterministic) commit.
    let (_, again) = fetch_without_shader_header_again(&fx, &dest);
    let r2 = &again.ok().json()["regenerated"][0];
    assert_eq!(r2["reused"], true);
    assert_eq!(r2["sha256"], regen["sha256"]);
    assert_eq!(r2["commit"], regen["commit"]);
}

fn fetch_without_shader_header_again(fx: &Fixture, dest: &Path) -> (PathBuf, crate::support::Run) {
    let recipe = fx
        .scratch
        .project()
        .join("work/recipes/ollama-v0.1.48.toml");
    let mirror = fx.scratch.path().join("llama-partial.git");
    let run = fetch_through(fx, &recipe, dest, &fx.ollama.dir, &mirror)
        .output()
        .unwrap()
        .into();
    (dest.to_path_buf(), run)
}

#[test]
fn a_legacy_shader_header_that_cannot_be_regenerated_stops_naming_the_path_and_the_fix() {
    let fx = Fixture::new();
    // A PATH with git and python3 but no glslc.
    let bin = fx.scratch.path().join("bin");
    fs::create_dir_all(&bin).unwrap();
    for tool in ["git", "python3"] {
        let real = std::process::Command::new("sh")
            .args(["-c", &format!("command -v {tool}")])
            .output()
            .unwrap();
        let mut real = String::from_utf8(real.stdout).unwrap().trim().to_string();
        if tool == "python3" {
            // Resolve shims (pyenv) to the interpreter itself.
            let exe = std::process::Command::new(&real)
                .args(["-c", "import sys; print(sys.executable)"])
                .output()
                .unwrap();
            real = String::from_utf8(exe.stdout).unwrap().trim().to_string();
        }
        std::os::unix::fs::symlink(real, bin.join(tool)).unwrap();
    }
    let (dest, run) = fetch_without_shader_header(&fx, Some(bin.to_str().unwrap()));
    run.fails(
        1,
        &[
            "ggml-vulkan-shaders.hpp is missing from the mirror and regenerating it",
            "cannot compile probe.comp",
            "glslc",
        ],
    );
    assert!(
        !dest.join("src/ollama").exists(),
        "nothing half-written after a failed regeneration"
    );
}

#[test]
fn a_missing_blob_the_build_does_not_need_is_skipped_with_a_note() {
    let fx = Fixture::new();
    let recipe = new_recipe(&fx, "v0.32.15");
    let mirror = partial_mirror(&fx, "integration/testdata/big.txt");
    // Drop the sparse rule so the tree would contain the missing file.
    let text = fs::read_to_string(&recipe).unwrap() + "\n[build]\nsparse = []\n";
    fs::write(&recipe, text).unwrap();
    let dest = fx.scratch.path().join("p1");
    let run: crate::support::Run = fetch_through(&fx, &recipe, &dest, &mirror, &fx.llama.repo.dir)
        .output()
        .unwrap()
        .into();
    let j = run.ok().json();
    let notes = j["notes"].as_array().unwrap();
    assert!(
        notes.iter().any(|n| n
            .as_str()
            .unwrap()
            .contains("integration/testdata/big.txt is missing")),
        "{notes:?}"
    );
    assert_eq!(
        git(&dest.join("src/ollama"), &["status", "--porcelain"]),
        ""
    );
}

#[test]
fn a_missing_blob_the_build_needs_stops_with_the_path_and_leaves_no_tree() {
    let fx = Fixture::new();
    let recipe = new_recipe(&fx, "v0.32.15");
    let mirror = partial_mirror(&fx, "LLAMA_CPP_VERSION");
    let dest = fx.scratch.path().join("p2");
    let run: crate::support::Run = fetch_through(&fx, &recipe, &dest, &mirror, &fx.llama.repo.dir)
        .output()
        .unwrap()
        .into();
    run.fails(
        1,
        &[
            "LLAMA_CPP_VERSION is missing from the mirror",
            "the build needs it",
        ],
    );
    let left: Vec<_> = fs::read_dir(dest.join("src"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert!(left.is_empty(), "nothing half-written: {left:?}");
}

#[test]
fn fetch_refuses_a_template_and_a_missing_llama_cpp_commit() {
    let fx = Fixture::new();
    let tpl = fx.scratch.project().join("recipes/era-4.toml");
    fx.run(&["fetch", tpl.to_str().unwrap()])
        .fails(2, &["is an era template", "recipe new"]);
    let recipe = new_recipe(&fx, "v0.32.15");
    let text = fs::read_to_string(&recipe)
        .unwrap()
        .replace(&fx.llama.commits[10], &"1".repeat(40));
    fs::write(&recipe, text).unwrap();
    fx.run(&[
        "fetch",
        recipe.to_str().unwrap(),
        "--dest",
        fx.scratch.path().join("x").to_str().unwrap(),
    ])
    .fails(
        2,
        &["llama.cpp commit 1111111111111111111111111111111111111111 is not in"],
    );
}

#[test]
fn cache_fetches_only_what_the_pin_needs_then_works_offline() {
    let fx = Fixture::new();
    let recipe = new_recipe(&fx, "v0.24.0");
    // Point the recipe's upstream at the fixture through a file:// URL, no --mirror.
    let text = fs::read_to_string(&recipe).unwrap()
        + &format!("\n[ollama]\nurl = \"file://{}\"\n", fx.ollama.dir.display());
    let text = text.replacen("[ollama]\ntag", "[ollama]\nurl = \"_\"\ntag", 0);
    fs::write(&recipe, merge_ollama_url(&text)).unwrap();
    let dest = fx.scratch.path().join("c");
    fx.scratch
        .run(&[
            "fetch",
            recipe.to_str().unwrap(),
            "--dest",
            dest.to_str().unwrap(),
            "--offline",
        ])
        .fails(2, &["not in the cache", "--offline"]);
    fx.scratch
        .run(&[
            "fetch",
            recipe.to_str().unwrap(),
            "--dest",
            dest.to_str().unwrap(),
        ])
        .ok();
    let cache = fx.scratch.cache().join("git/ollama.git");
    let tags = git(&cache, &["tag"]);
    assert_eq!(tags, "v0.24.0", "only the pinned tag was fetched");
    fx.scratch
        .run(&[
            "fetch",
            recipe.to_str().unwrap(),
            "--dest",
            dest.to_str().unwrap(),
            "--offline",
        ])
        .ok();
}

/// Moves a trailing `[ollama] url = ...` table into the recipe's own [ollama] table.
pub(crate) fn merge_ollama_url(text: &str) -> String {
    let (body, tail) = text.rsplit_once("\n[ollama]\nurl = ").unwrap();
    let url_line = format!("url = {}", tail.trim());
    body.replacen("[ollama]\n", &format!("[ollama]\n{url_line}\n"), 1)
}

#[test]
fn concurrent_fetches_of_one_build_dir_serialise_and_both_succeed() {
    let fx = Fixture::new();
    let recipe = new_recipe(&fx, "v0.32.15");
    let dest = fx.scratch.path().join("conc");
    let spawn = || spawn_fetch(&fx, &recipe, &dest);
    let (a, b) = (spawn(), spawn());
    for child in [a, b] {
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let llama = dest.join("src/llama.cpp");
    assert_eq!(
        fs::read_to_string(llama.join("compat-hook.txt")).unwrap(),
        "hooked\nmore\n"
    );
    assert_eq!(
        git(&dest.join("src/ollama"), &["status", "--porcelain"]),
        ""
    );
}

#[test]
fn a_fetch_killed_mid_way_leaves_no_complete_looking_tree_and_the_next_run_succeeds() {
    let fx = Fixture::new();
    let recipe = new_recipe(&fx, "v0.32.15");
    let dest = fx.scratch.path().join("killed");
    // Simulate what kill -9 leaves: a half-written temporary tree and a moved-aside tree.
    fs::create_dir_all(dest.join("src/.ollama-abc123/llm")).unwrap();
    fs::create_dir_all(dest.join("src/ollama.old-999")).unwrap();
    let mut child = spawn_fetch(&fx, &recipe, &dest);
    std::thread::sleep(std::time::Duration::from_millis(300));
    let _ = child.kill(); // SIGKILL
    let _ = child.wait();
    if dest.join("src/ollama").exists() {
        // Only a complete tree is ever renamed into place.
        assert!(dest.join("src/ollama/LLAMA_CPP_VERSION").is_file());
    }
    fetch(&fx, &recipe, &dest).ok();
    let names: Vec<String> = fs::read_dir(dest.join("src"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    let mut names = names;
    names.sort();
    assert_eq!(
        names,
        ["llama.cpp", "ollama"],
        "stale temporary trees are cleared"
    );
}

#[test]
fn fetch_bad_inputs() {
    let fx = Fixture::new();
    fx.run(&["fetch", "missing.toml"])
        .fails(2, &["missing.toml: cannot read the recipe"]);
    let broken = fx
        .scratch
        .file("broken.toml", "extends = \"era-4\"\n[ollama\n");
    fx.run(&["fetch", broken.to_str().unwrap()])
        .fails(2, &["broken.toml:2:8"]);
    let recipe = new_recipe(&fx, "v0.24.0");
    fx.scratch
        .run(&[
            "fetch",
            recipe.to_str().unwrap(),
            "--mirror",
            "ollama=/nonexistent/mirror",
        ])
        .fails(2, &["mirror ollama=/nonexistent/mirror"]);
    let file = fx.scratch.file("a-file", "x");
    fx.run(&[
        "fetch",
        recipe.to_str().unwrap(),
        "--dest",
        file.to_str().unwrap(),
    ])
    .fails(1, &["a-file"]);
}

/// Starts `fetch` in the background (the tests that race or kill it).
fn spawn_fetch(fx: &Fixture, recipe: &Path, dest: &Path) -> std::process::Child {
    fx.scratch
        .command(&[])
        .args([
            "fetch",
            recipe.to_str().unwrap(),
            "--dest",
            dest.to_str().unwrap(),
        ])
        .args(fx.mirror_args())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap()
}
