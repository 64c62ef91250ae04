//! `series generate`: the legacy series under patches/ are made from patches/src; a stale
//! committed series fails `--check` (the way cargo-dist snapshots what it generates), and
//! bad inputs name the file and line.

use std::fs;
use std::process::Command;

use crate::support::{Run, Scratch, BIN, REPO_ROOT};

const LEGACY: [&str; 12] = [
    "legacy-ggml-vulkan",
    "legacy-ggml-vulkan-0.3.11",
    "legacy-ggml-vulkan-0.3.14",
    "legacy-ggml-vulkan-0.3.7",
    "legacy-llama-vulkan",
    "legacy-llama-vulkan-0.1.23",
    "legacy-llama-vulkan-0.1.24",
    "legacy-llama-vulkan-0.1.25",
    "legacy-llama-vulkan-0.1.29",
    "legacy-llama-vulkan-0.1.32",
    "legacy-llama-vulkan-0.1.33",
    "legacy-llama-vulkan-0.1.40",
];

/// Fails when a committed series is not what patches/src generates: after editing a shared
/// probe source or a range's pieces, run `ollama-vulkan series generate` and commit.
#[test]
fn committed_series_are_up_to_date() {
    let run = Run::from(
        Command::new(BIN)
            .args(["--project", REPO_ROOT, "series", "generate", "--check"])
            .env_remove("OLLAMA_VULKAN_LOG")
            .output()
            .unwrap(),
    );
    run.ok();
    assert!(
        run.stdout.contains("15 generated series up to date"),
        "{}",
        run.stdout
    );
}

fn append(s: &Scratch, rel: &str, text: &str) {
    let p = s.project().join("patches/src").join(rel);
    let mut t = fs::read_to_string(&p).unwrap();
    t.push_str(text);
    fs::write(p, t).unwrap();
}

#[test]
fn a_probe_edit_reaches_all_twelve_legacy_series_and_era_3s() {
    let s = Scratch::new();
    s.run(&["series", "generate", "--check"]).ok();
    append(
        &s,
        "shared/gpu_vulkan_linux.go",
        "\n// probe fix, written once\n",
    );
    let run = s.run(&["series", "generate", "--check"]);
    run.fails(1, &["stale", "series generate"]);
    for series in LEGACY {
        assert!(
            run.stdout
                .contains(&format!("stale patches/{series}/0002-")),
            "{series} not listed:\n{}",
            run.stdout
        );
        assert!(
            run.stdout
                .contains(&format!("stale patches/{series}/SHA256SUMS")),
            "{}",
            run.stdout
        );
    }
    // Era 3's series carry the same probe in their first patch (no gen_linux.sh there).
    for series in ["vulkan-era3-discover", "vulkan-era3-discover-0.11.9"] {
        assert!(
            run.stdout
                .contains(&format!("stale patches/{series}/0001-")),
            "{series} not listed:\n{}",
            run.stdout
        );
    }
    insta::assert_snapshot!("series_generate_probe_edit_check", run.stdout);
    // Nothing was written by --check.
    s.run(&["series", "generate", "--check"]).fails(1, &[]);

    s.run(&["series", "generate"]).ok();
    s.run(&["series", "generate", "--check"]).ok();
    for series in LEGACY {
        let dir = s.project().join("patches").join(series);
        let p2 = fs::read_dir(&dir)
            .unwrap()
            .flatten()
            .find(|e| e.file_name().to_string_lossy().starts_with("0002-"))
            .unwrap()
            .path();
        let t = fs::read_to_string(p2).unwrap();
        assert!(t.contains("+// probe fix, written once\n"), "{series}");
        // The new file's hunk grew by the two lines, and its blob id moved.
        assert!(t.contains("@@ -0,0 +1,171 @@"), "{series}");
        assert!(!t.contains("index 000000000..cf0eb6c76"), "{series}");
        let pkg = if series.ends_with("0.3.14") {
            "discover"
        } else {
            "gpu"
        };
        assert!(
            t.contains(&format!(
                "+++ b/{pkg}/gpu_vulkan_linux.go\n@@ -0,0 +1,171 @@\n+package {pkg}\n"
            )),
            "{series}"
        );
    }
    // The series are still pinned by their old hashes: `recipe check` says which.
    let era1b = s.project().join("recipes/era-1b.toml");
    s.run(&["recipe", "check", era1b.to_str().unwrap()])
        .fails(2, &["legacy-ggml-vulkan"]);
}

#[test]
fn hunks_follow_the_shared_source() {
    // A line added above the memory-fraction hunks: the hunks still apply (at an offset)
    // and 0003 is re-exported with the new line numbers.
    let s = Scratch::new();
    let p = s.project().join("patches/src/shared/gpu_vulkan-list.go");
    let t = fs::read_to_string(&p).unwrap();
    fs::write(&p, t.replacen("\nimport (", "\n// moved\n\nimport (", 1)).unwrap();
    s.run(&["series", "generate"]).ok();
    let p3 = s.project().join(
        "patches/legacy-ggml-vulkan/0003-gpu-report-a-fraction-of-a-Vulkan-GPU-s-free-memory-.patch",
    );
    let t = fs::read_to_string(p3).unwrap();
    assert!(t.contains("@@ -20,6 +20,10 @@ import ("), "{t}");
    // Untouched: the single-GpuInfo ranges.
    let run = s.run(&["series", "generate", "--check"]);
    run.ok();
    let orig = fs::read(
        std::path::Path::new(REPO_ROOT).join("patches/legacy-llama-vulkan-0.1.23/SHA256SUMS"),
    )
    .unwrap();
    let now = fs::read(
        s.project()
            .join("patches/legacy-llama-vulkan-0.1.23/SHA256SUMS"),
    )
    .unwrap();
    assert_eq!(orig, now);
}

fn range_toml(s: &Scratch) -> std::path::PathBuf {
    s.project()
        .join("patches/src/ranges/legacy-ggml-vulkan/range.toml")
}

#[test]
fn a_piece_outside_the_inputs_is_refused() {
    let s = Scratch::new();
    let p = range_toml(&s);
    let t = fs::read_to_string(&p).unwrap();
    let line = t
        .lines()
        .position(|l| l.contains("shared/gpu_vulkan_linux.go"))
        .unwrap()
        + 1;
    fs::write(
        &p,
        t.replace("shared/gpu_vulkan_linux.go", "../../../../../etc/passwd"),
    )
    .unwrap();
    let before = fs::read(s.project().join("patches/legacy-ggml-vulkan/SHA256SUMS")).unwrap();
    s.run(&["series", "generate"])
        .fails(2, &[&format!("range.toml:{line}:"), "`..`", "help:"]);
    let after = fs::read(s.project().join("patches/legacy-ggml-vulkan/SHA256SUMS")).unwrap();
    assert_eq!(before, after, "nothing written");
}

#[test]
fn a_missing_shared_piece_is_named() {
    let s = Scratch::new();
    fs::remove_file(s.project().join("patches/src/shared/gpu_vulkan_windows.go")).unwrap();
    let run = s.run(&["series", "generate", "--check"]);
    run.fails(2, &["range.toml:", "shared/gpu_vulkan_windows.go", "help:"]);
    assert!(
        !run.stderr.contains('\n') || run.stderr.lines().count() <= 3,
        "one clear error:\n{}",
        run.stderr
    );
}

#[test]
fn stray_parameters_and_symlinks_are_refused() {
    let s = Scratch::new();
    append(&s, "shared/0002-list.msg", "@DIRECTORY@\n");
    s.run(&["series", "generate", "--check"])
        .fails(2, &["0002-list.msg:", "`@DIRECTORY@` is not a parameter"]);

    let s = Scratch::new();
    let w = s.project().join("patches/src/shared/gpu_vulkan_windows.go");
    fs::remove_file(&w).unwrap();
    std::os::unix::fs::symlink("/etc/hostname", &w).unwrap();
    s.run(&["series", "generate", "--check"])
        .fails(2, &["range.toml:", "is a symlink"]);
}
