//! kill -9 at named points (src/killpoint.rs) of fetch, prepare, build, image and
//! rebase-patches on the fixtures: after each kill a plain rerun succeeds and leaves what
//! a clean run leaves; a rebase killed anywhere is undone byte for byte by --abort.
//!
//! The points are not listed here: a clean run with OLLAMA_VULKAN_KILLPOINT_TRACE says
//! which it passes (and how often), and each is killed at its first and last pass, so a
//! point added to the tool is tested without touching this file.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Command, Output};

use ollama_vulkan::patch::series::sha256_hex;

use crate::support::{git, Fixture, Run};

/// A point's name and the pass to kill at (1-based).
type Point = (String, usize);

/// What a run leaves, in a form `assert_eq!` can compare and print.
type Snapshot = Vec<(String, String)>;

/// Every entry under `dir` (recursively) but those `skip` names (relative paths): kind,
/// mode and content hash, so a leftover temp dir or a half-written file shows.
fn snapshot(dir: &Path, skip: &dyn Fn(&str) -> bool) -> Snapshot {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = fs::read_dir(&d) else { continue };
        for e in rd.flatten() {
            let p = e.path();
            let rel = p.strip_prefix(dir).unwrap().display().to_string();
            if skip(&rel) {
                continue;
            }
            let m = fs::symlink_metadata(&p).unwrap();
            let v = if m.file_type().is_symlink() {
                format!("link {}", fs::read_link(&p).unwrap().display())
            } else if m.is_dir() {
                stack.push(p);
                "dir".into()
            } else {
                format!(
                    "file {:o} {}",
                    m.permissions().mode() & 0o777,
                    sha256_hex(&fs::read(&p).unwrap())
                )
            };
            out.push((rel, v));
        }
    }
    out.sort();
    out
}

/// A git work tree's HEAD, its tree and `git status`: what a stage committed.
fn git_state(tree: &Path) -> Snapshot {
    if !tree.join(".git").exists() {
        return vec![(tree.display().to_string(), "absent".into())];
    }
    ["HEAD", "HEAD^{tree}"]
        .iter()
        .map(|r| {
            (
                format!("{} {r}", tree.display()),
                git(tree, &["rev-parse", r]),
            )
        })
        .chain([(
            format!("{} status", tree.display()),
            git(tree, &["status", "--porcelain", "--untracked-files=all"]),
        )])
        .collect()
}

/// The points a traced run passed whose names start with one of `prefixes`, in the order
/// first passed: the first pass of each, and the last where there are more.
fn points_of(trace: &Path, prefixes: &[&str]) -> Vec<Point> {
    let text = fs::read_to_string(trace).unwrap_or_default();
    let mut counts: Vec<(String, usize)> = Vec::new();
    for l in text.lines() {
        match counts.iter_mut().find(|(n, _)| n == l) {
            Some(e) => e.1 += 1,
            None => counts.push((l.to_string(), 1)),
        }
    }
    let mut out = Vec::new();
    for (n, c) in counts {
        if prefixes.iter().any(|p| n.starts_with(p)) {
            out.push((n.clone(), 1));
            if c > 1 {
                out.push((n, c));
            }
        }
    }
    out
}

fn ok(out: Output, what: &str) -> Run {
    let run: Run = out.into();
    assert_eq!(
        run.code, 0,
        "{what}\nstdout:\n{}\nstderr:\n{}",
        run.stdout, run.stderr
    );
    run
}

/// One stage under test: the command, how to lay out the state before it runs, and what
/// it leaves.
struct Stage<'a> {
    name: &'a str,
    cmd: &'a dyn Fn() -> Command,
    reset: &'a dyn Fn(),
    outputs: &'a dyn Fn() -> Snapshot,
    prefixes: &'a [&'a str],
}

/// A clean traced run gives the expected outputs and the points; then for each point:
/// the state is reset, a run is SIGKILLed there, a plain rerun must succeed and leave
/// exactly the clean run's outputs. Returns the points killed at.
fn kill_each(s: &Stage<'_>, scratch: &Path) -> Vec<Point> {
    let trace = scratch.join(format!("trace-{}", s.name));
    let _ = fs::remove_file(&trace);
    (s.reset)();
    ok(
        (s.cmd)()
            .env("OLLAMA_VULKAN_KILLPOINT_TRACE", &trace)
            .output()
            .unwrap(),
        &format!("{}: the clean run", s.name),
    );
    let expected = (s.outputs)();
    let points = points_of(&trace, s.prefixes);
    assert!(!points.is_empty(), "{}: no kill point passed", s.name);
    for (name, n) in &points {
        (s.reset)();
        let out = (s.cmd)()
            .env("OLLAMA_VULKAN_KILLPOINT", format!("{name}:{n}"))
            .output()
            .unwrap();
        assert_eq!(
            out.status.signal(),
            Some(9),
            "{}: not killed at {name}:{n} ({:?})\n{}",
            s.name,
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        ok(
            (s.cmd)().output().unwrap(),
            &format!("{}: the rerun after a kill at {name}:{n}", s.name),
        );
        same(
            (s.outputs)(),
            &expected,
            &format!(
                "{}: after a kill at {name}:{n} the rerun left other outputs than a clean run",
                s.name
            ),
        );
    }
    points
}

/// The entries that differ between two snapshots (for assertion messages).
fn diff(a: &Snapshot, b: &Snapshot) -> String {
    let mut out = Vec::new();
    for e in a.iter().filter(|e| !b.contains(e)) {
        out.push(format!("  - {} {}", e.0, e.1));
    }
    for e in b.iter().filter(|e| !a.contains(e)) {
        out.push(format!("  + {} {}", e.0, e.1));
    }
    out.join("\n")
}

#[track_caller]
fn same(now: Snapshot, expected: &Snapshot, what: &str) {
    assert!(now == *expected, "{what}:\n{}", diff(expected, &now));
}

fn distinct(points: &[Point]) -> Vec<&str> {
    let mut v: Vec<&str> = points.iter().map(|(n, _)| n.as_str()).collect();
    v.sort();
    v.dedup();
    v
}

/// A stage's kills reach at least five of its own named points; the counts go to the log.
fn at_least_five_own_points(stage: &str, prefix: &str, points: &[Point]) {
    let names = distinct(points);
    assert!(
        names.iter().filter(|n| n.starts_with(prefix)).count() >= 5,
        "{names:?}"
    );
    eprintln!(
        "{stage}: {} kills at {} points: {names:?}",
        points.len(),
        names.len()
    );
}

fn rm(p: &Path) {
    if p.exists() {
        fs::remove_dir_all(p).unwrap();
    }
}

/// The binary with the fixture's project, cache and mirrors.
fn tool(fx: &Fixture, args: &[&str]) -> Command {
    let mut c = fx.scratch.command(args);
    c.args(fx.mirror_args());
    c
}

/// A build dir's sources: every file but git's own, the trees' commits, the manifests.
fn sources(dest: &Path, trees: &[&str]) -> Snapshot {
    let mut s = snapshot(dest, &|rel| {
        rel.contains("/.git/")
            || rel.ends_with("/.git")
            || rel == "logs"
            || rel.starts_with("logs/")
    });
    for t in trees {
        s.extend(git_state(&dest.join(t)));
    }
    s
}

#[test]
fn kill_9_in_fetch_then_a_rerun_gives_the_clean_fetch() {
    let fx = Fixture::new();
    let scratch = fx.scratch.path().to_path_buf();
    let mut all = Vec::new();

    // Era 4 through the cache (a file:// URL, no --mirror): the new mirror is made too.
    let recipe4 = fx.new_recipe("v0.24.0");
    let text = fs::read_to_string(&recipe4).unwrap()
        + &format!("\n[ollama]\nurl = \"file://{}\"\n", fx.ollama.dir.display());
    fs::write(&recipe4, crate::fetch::merge_ollama_url(&text)).unwrap();
    let d4 = scratch.join("k4");
    let cache = fx.scratch.cache();
    all.extend(kill_each(
        &Stage {
            name: "fetch (new cache mirror)",
            cmd: &|| {
                fx.scratch.command(&[
                    "fetch",
                    recipe4.to_str().unwrap(),
                    "--dest",
                    d4.to_str().unwrap(),
                ])
            },
            reset: &|| {
                rm(&d4);
                rm(&cache);
            },
            outputs: &|| {
                let mut s = sources(&d4, &["src/ollama"]);
                s.extend(snapshot(&cache.join("git"), &|rel| rel.contains('/')));
                s.push((
                    "cache refs".into(),
                    git(&cache.join("git/ollama.git"), &["for-each-ref"]),
                ));
                s
            },
            prefixes: &["fetch.", "atomic."],
        },
        &scratch,
    ));

    // Era 5 from mirrors: two trees (llama.cpp with Ollama's compat patches), then a
    // refetch over a complete dir (the old trees are swapped out).
    let recipe5 = fx.new_recipe("v0.32.15");
    let d5 = scratch.join("k5");
    let cmd5 = || {
        tool(
            &fx,
            &[
                "fetch",
                recipe5.to_str().unwrap(),
                "--dest",
                d5.to_str().unwrap(),
            ],
        )
    };
    let out5 = || sources(&d5, &["src/ollama", "src/llama.cpp"]);
    all.extend(kill_each(
        &Stage {
            name: "fetch",
            cmd: &cmd5,
            reset: &|| rm(&d5),
            outputs: &out5,
            prefixes: &["fetch.", "atomic."],
        },
        &scratch,
    ));
    all.extend(kill_each(
        &Stage {
            name: "refetch",
            cmd: &cmd5,
            reset: &|| {
                rm(&d5);
                ok(cmd5().output().unwrap(), "fetch");
            },
            outputs: &out5,
            prefixes: &["fetch.", "atomic."],
        },
        &scratch,
    ));
    let names = distinct(&all);
    assert!(names.len() >= 5, "{names:?}");
    for must in [
        "fetch.mirror-created",
        "fetch.llama-written",
        "fetch.old-aside",
        "fetch.swapped",
    ] {
        assert!(names.contains(&must), "{must} not passed: {names:?}");
    }
    eprintln!(
        "fetch: {} kills at {} points: {names:?}",
        all.len(),
        names.len()
    );
}

#[test]
fn kill_9_in_prepare_then_a_rerun_gives_the_clean_prepared_tree() {
    let fx = Fixture::new();
    let scratch = fx.scratch.path().to_path_buf();
    let nothing = |_: &Path| {};
    let p1 = fx
        .ollama
        .format_patch("v0.24.0", "Say hello", &nothing, &|w: &Path| {
            let t = fs::read_to_string(w.join("hello.go")).unwrap();
            fs::write(
                w.join("hello.go"),
                t.replace("func hello() {}", "func hello() { println(\"vulkan\") }"),
            )
            .unwrap();
        });
    let p2 = fx
        .ollama
        .format_patch("v0.24.0", "Add a build script", &nothing, &|w: &Path| {
            fs::write(w.join("build.sh"), "#!/bin/sh\necho hi\n").unwrap();
            fs::set_permissions(w.join("build.sh"), fs::Permissions::from_mode(0o755)).unwrap();
            fs::remove_file(w.join("go.mod")).unwrap();
        });
    let recipe = fx.recipe_with_series(
        "v0.24.0",
        &[("0001-hello.patch", &p1), ("0002-build.patch", &p2)],
        "ollama",
        "",
    );
    let dest = scratch.join("kp");
    let cmd = || {
        tool(
            &fx,
            &[
                "prepare",
                recipe.to_str().unwrap(),
                "--dest",
                dest.to_str().unwrap(),
            ],
        )
    };
    let outputs = || sources(&dest, &["src/ollama"]);
    let mut all = kill_each(
        &Stage {
            name: "prepare",
            cmd: &cmd,
            reset: &|| rm(&dest),
            outputs: &outputs,
            prefixes: &["prepare.", "atomic."],
        },
        &scratch,
    );
    // Again over a prepared dir: the patched tree is replaced.
    all.extend(kill_each(
        &Stage {
            name: "re-prepare",
            cmd: &cmd,
            reset: &|| {
                rm(&dest);
                ok(cmd().output().unwrap(), "prepare");
            },
            outputs: &outputs,
            prefixes: &["prepare.", "atomic.", "fetch.old-aside", "fetch.swapped"],
        },
        &scratch,
    ));
    let names = distinct(&all);
    let own = names.iter().filter(|n| n.starts_with("prepare.")).count();
    assert!(own >= 5, "{names:?}");
    eprintln!(
        "prepare: {} kills at {} points: {names:?}",
        all.len(),
        names.len()
    );
}

/// The dist as the tests compare it: every file, plus the manifest's key and file list
/// (its timings differ from run to run).
fn dist_outputs(dest: &Path) -> Snapshot {
    let dist = dest.join("dist");
    let mut s = snapshot(&dist, &|rel| rel == "manifest.json");
    let m: serde_json::Value =
        serde_json::from_slice(&fs::read(dist.join("manifest.json")).unwrap()).unwrap();
    for k in ["input_key", "dist_files", "series", "sources", "lib_checks"] {
        let mut v = m[k].clone();
        // A rerun after a kill past the compile says it kept the build output (the
        // compile is incremental): a note, not a different input.
        if let Some(o) = v.as_object_mut() {
            o.remove("notes");
        }
        s.push((format!("manifest {k}"), v.to_string()));
    }
    // No leftover next to it: dist.tmp, dist.old-PID.
    let mut top: Vec<String> = fs::read_dir(dest)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("dist"))
        .collect();
    top.sort();
    s.push(("build dir".into(), top.join(" ")));
    s
}

fn copy_dir(from: &Path, to: &Path) {
    let st = Command::new("cp")
        .args(["-a", from.to_str().unwrap(), to.to_str().unwrap()])
        .status()
        .unwrap();
    assert!(st.success());
}

#[test]
fn kill_9_in_build_then_a_rerun_gives_the_clean_dist() {
    let fx = Fixture::new();
    let scratch = fx.scratch.path().to_path_buf();
    let recipe = fx.new_recipe("v0.24.0");
    let dest = scratch.join("kb");
    let build = |extra: &[&str]| {
        let mut c = tool(
            &fx,
            &[
                "build",
                recipe.to_str().unwrap(),
                "--builder",
                "host",
                "--dest",
                dest.to_str().unwrap(),
                "-q",
            ],
        );
        c.args(extra);
        c
    };
    let mut all = kill_each(
        &Stage {
            name: "build",
            cmd: &|| build(&[]),
            reset: &|| rm(&dest),
            outputs: &|| dist_outputs(&dest),
            // Only the build's own points: each costs a compile, and the fetch and
            // prepare points it passes first are the prepare test's.
            prefixes: &["build."],
        },
        &scratch,
    );
    // A rebuild over a complete dist (another input key: --fuzz): the old dist is swapped
    // out. The state before it is a copy of the finished build dir.
    let saved = scratch.join("kb-saved");
    rm(&dest);
    ok(build(&[]).output().unwrap(), "build");
    copy_dir(&dest, &saved);
    all.extend(kill_each(
        &Stage {
            name: "rebuild",
            cmd: &|| build(&["--fuzz", "1"]),
            reset: &|| {
                rm(&dest);
                copy_dir(&saved, &dest);
            },
            outputs: &|| dist_outputs(&dest),
            prefixes: &["build.old-aside", "build.swapped"],
        },
        &scratch,
    ));
    at_least_five_own_points("build", "build.", &all);
}

#[test]
fn kill_9_in_image_then_a_rerun_gives_the_same_image_and_archive() {
    if !(crate::support::have("buildah")
        && crate::support::have("skopeo")
        && crate::support::have("mmdebstrap"))
    {
        eprintln!("skipped: buildah, skopeo and mmdebstrap are needed (.ci/run installs them)");
        return;
    }
    let fx = Fixture::new();
    let scratch = fx.scratch.path().to_path_buf();
    crate::image::runtime_base(&fx);
    let recipe = fx.new_recipe("v0.24.0");
    let dest = scratch.join("ki");
    fx.build_host(&[recipe.to_str().unwrap()], &dest).ok();
    let archive = scratch.join("out/k.oci.tar");
    let out_arg = format!("oci-archive:{}", archive.display());
    let runtime = format!("runtime={}", crate::image::RUNTIME_BASE);
    let tag = "localhost/ollama-vulkan-test:kill";
    let conf = crate::support::containers_storage_conf();
    let cmd = || {
        let mut c = fx.scratch.command(&[
            "image",
            recipe.to_str().unwrap(),
            "--dest",
            dest.to_str().unwrap(),
            "--engine",
            "buildah",
            "--from-dist",
            "--base",
            &runtime,
            "--tag",
            tag,
            "--output",
            &out_arg,
            "-q",
        ]);
        c.env("CONTAINERS_STORAGE_CONF", &conf);
        c
    };
    let engine = |program: &str, args: &[&str]| {
        let out = Command::new(program)
            .args(args)
            .env("CONTAINERS_STORAGE_CONF", &conf)
            .output()
            .unwrap();
        assert!(out.status.success(), "{program} {args:?}");
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    let outputs = || {
        let mut s = snapshot(&dest, &|rel| !rel.starts_with("Dockerfile"));
        s.extend(snapshot(archive.parent().unwrap(), &|rel| {
            rel.ends_with(".oci.tar")
        }));
        s.push((
            "image".into(),
            engine("buildah", &["images", "--format", "{{.ID}}", tag]),
        ));
        s.push((
            "archive manifest".into(),
            engine("skopeo", &["inspect", "--raw", &out_arg]),
        ));
        s
    };
    let points = kill_each(
        &Stage {
            name: "image",
            cmd: &cmd,
            reset: &|| {
                let _ = fs::remove_dir_all(archive.parent().unwrap());
                for f in ["Dockerfile.linux", "Dockerfile.linux.dockerignore"] {
                    let _ = fs::remove_file(dest.join(f));
                }
                // Every run records the lock afresh: the same writes, the same points.
                let _ = fs::remove_file(fx.scratch.project().join("recipes/base/packages.lock"));
            },
            outputs: &outputs,
            prefixes: &["image.", "atomic."],
        },
        &scratch,
    );
    at_least_five_own_points("image", "image.", &points);
}

#[test]
fn kill_9_in_rebase_patches_then_continue_or_abort() {
    use crate::rebase::{both, setup};
    let s = setup(&both);
    let project_files = |s: &crate::rebase::Setup| -> Snapshot {
        crate::rebase::project_files(s)
            .into_iter()
            .map(|(p, b)| (p, sha256_hex(&b)))
            .collect()
    };
    let scratch = s.fx.scratch.path().to_path_buf();
    let before = project_files(&s);
    let before_bytes = crate::rebase::project_files(&s);
    let project = s.fx.scratch.project();
    // Puts patches/ and recipes/ back as they were before the rebase, with no state dir.
    let restore = || {
        rm(&project.join("work/rebase"));
        let now = crate::rebase::project_files(&s);
        for (p, _) in &now {
            if !before_bytes.iter().any(|(b, _)| b == p) {
                fs::remove_file(project.join(p)).unwrap();
            }
        }
        for (p, b) in &before_bytes {
            fs::write(project.join(p), b).unwrap();
        }
    };
    let rebase = |extra: &[&str]| {
        let mut args = vec!["rebase-patches", s.recipe.to_str().unwrap()];
        args.extend_from_slice(extra);
        tool(&s.fx, &args)
    };
    let mut all = Vec::new();

    // A clean rebase (v0.20.1: context moved, the patches are rewritten).
    let trace = scratch.join("trace-rebase");
    restore();
    ok(
        rebase(&["--onto", "v0.20.1"])
            .env("OLLAMA_VULKAN_KILLPOINT_TRACE", &trace)
            .output()
            .unwrap(),
        "rebase",
    );
    let done = project_files(&s);
    assert_ne!(done, before, "the rebase rewrote the series");
    let points = points_of(&trace, &["rebase.", "atomic."]);
    for (name, n) in &points {
        for then in ["--continue", "--abort"] {
            restore();
            let out = rebase(&["--onto", "v0.20.1"])
                .env("OLLAMA_VULKAN_KILLPOINT", format!("{name}:{n}"))
                .output()
                .unwrap();
            assert_eq!(out.status.signal(), Some(9), "not killed at {name}:{n}");
            let in_progress = s.state_dir().join("state.json").exists();
            match (in_progress, then) {
                (true, "--continue") => {
                    ok(
                        rebase(&["--continue"]).output().unwrap(),
                        &format!("--continue after {name}:{n}"),
                    );
                    same(
                        project_files(&s),
                        &done,
                        &format!("--continue after a kill at {name}:{n}"),
                    );
                }
                (true, _) => {
                    ok(
                        rebase(&["--abort"]).output().unwrap(),
                        &format!("--abort after {name}:{n}"),
                    );
                    same(
                        project_files(&s),
                        &before,
                        &format!("--abort after a kill at {name}:{n}"),
                    );
                }
                (false, _) if project_files(&s) == done => {
                    // Killed after the end (the state was gone): the rebase is complete.
                }
                (false, _) => {
                    // Killed before the state was written: nothing to resume, start again.
                    ok(
                        rebase(&["--onto", "v0.20.1"]).output().unwrap(),
                        &format!("rerun after {name}:{n}"),
                    );
                    same(
                        project_files(&s),
                        &done,
                        &format!("a fresh rebase after a kill at {name}:{n}"),
                    );
                }
            }
            assert!(
                !s.state_dir().exists(),
                "no state left after {name}:{n} and {then}"
            );
        }
    }
    all.extend(points);

    // A rebase that stops at a conflict (v0.20.2), killed on its way there: --abort.
    let trace = scratch.join("trace-rebase-conflict");
    restore();
    let out = rebase(&["--onto", "v0.20.2"])
        .env("OLLAMA_VULKAN_KILLPOINT_TRACE", &trace)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "stops at the conflict");
    let points = points_of(&trace, &["rebase.", "atomic."]);
    for (name, n) in &points {
        restore();
        let out = rebase(&["--onto", "v0.20.2"])
            .env("OLLAMA_VULKAN_KILLPOINT", format!("{name}:{n}"))
            .output()
            .unwrap();
        assert_eq!(out.status.signal(), Some(9), "not killed at {name}:{n}");
        if s.state_dir().join("state.json").exists() {
            ok(
                rebase(&["--abort"]).output().unwrap(),
                &format!("--abort after {name}:{n}"),
            );
        } else {
            // Before the state: a fresh start stops at the same conflict; drop it.
            assert_eq!(
                rebase(&["--onto", "v0.20.2"])
                    .output()
                    .unwrap()
                    .status
                    .code(),
                Some(1)
            );
            ok(rebase(&["--abort"]).output().unwrap(), "--abort");
        }
        same(
            project_files(&s),
            &before,
            &format!("--abort after a kill at {name}:{n}"),
        );
    }
    all.extend(points);

    // --abort itself killed after it dropped state.json: the series is back, and the
    // leftover state dir does not stop the next rebase.
    let outside = || -> Snapshot {
        project_files(&s)
            .into_iter()
            .filter(|(p, _)| !p.starts_with("work/rebase/"))
            .collect()
    };
    restore();
    assert_eq!(
        rebase(&["--onto", "v0.20.2"])
            .output()
            .unwrap()
            .status
            .code(),
        Some(1)
    );
    let out = rebase(&["--abort"])
        .env("OLLAMA_VULKAN_KILLPOINT", "rebase.state-removed")
        .output()
        .unwrap();
    assert_eq!(out.status.signal(), Some(9));
    same(outside(), &before, "--abort killed after state.json went");
    assert_eq!(
        rebase(&["--onto", "v0.20.2"])
            .output()
            .unwrap()
            .status
            .code(),
        Some(1)
    );
    ok(rebase(&["--abort"]).output().unwrap(), "--abort");
    same(project_files(&s), &before, "--abort");

    at_least_five_own_points("rebase-patches", "rebase.", &all);
}
