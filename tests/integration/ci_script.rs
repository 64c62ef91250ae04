//! `.ci/run` installs what the suite runs, and nothing it does not: a new machine with
//! only Rust, Go and git passes `bash .ci/run` (the fresh-machine issue). Every program
//! the code spawns is declared in `provision::TOOLS` (with the Debian package that ships
//! it), every program the tests spawn in `TEST_TOOLS` below; each declared package must
//! be in `.ci/run`'s apt-get list or be part of Debian's base system (Essential or
//! Priority: required), and each package `.ci/run` installs must be needed by one.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

use ollama_vulkan::provision::TOOLS;

/// Programs only the tests run (the tool's own are in `provision::TOOLS`).
fn test_tools() -> Vec<(&'static str, &'static str, &'static str)> {
    vec![
        (
            "skopeo",
            "skopeo",
            "the image tests inspect exported OCI archives",
        ),
        (
            "umoci",
            "umoci",
            "the provenance test unpacks the assembled image",
        ),
        (
            "sha256sum",
            "coreutils",
            "the provenance test compares archives and the SBOM's hash",
        ),
        (
            "pgrep",
            "procps",
            "the smoke tests check that no server is left",
        ),
        ("kill", "procps", "the smoke tests interrupt the tool"),
        (
            "gzip",
            "gzip",
            "fixture payloads are gzipped as upstream's are",
        ),
        ("id", "coreutils", "the image tests read uids"),
        ("cp", "coreutils", "the kill tests copy fixture trees"),
        (
            "mkfifo",
            "coreutils",
            "the bad-input corpus feeds FIFOs as recipes and series files",
        ),
        (
            "tar",
            "tar",
            "the bad-input corpus packs a tiny base image for podman import",
        ),
        ("sh", "dash", "fixture scripts"),
        (
            "bash",
            "bash",
            "the workflow test runs the workflow's scripts as a runner does",
        ),
        (
            "gcc",
            "gcc",
            "libgit2-sys compiles libgit2; fixtures compile C",
        ),
        (
            "make",
            "make",
            "cmake's Makefile generator in the fixture builds",
        ),
        (
            "dpkg",
            "dpkg",
            "this test reads which package ships a program",
        ),
        ("dpkg-query", "dpkg", "this test reads package priorities"),
        (
            "setpriv",
            "util-linux",
            "the provisioning test runs the tool as a non-root user",
        ),
    ]
}

/// Packages `.ci/run` installs that ship no program anything runs, with the reason.
const SUPPORT: &[(&str, &str)] = &[
    ("ca-certificates", "apt and git reach HTTPS mirrors"),
    (
        "python3-jsonschema",
        "the provenance test validates the SBOM against the SPDX 2.3 schema",
    ),
    (
        "pkg-config",
        "libgit2-sys looks for a system libgit2 (the command ships in pkgconf-bin)",
    ),
    (
        "libvulkan-dev",
        "the fixture upstreams compile against the Vulkan loader",
    ),
    (
        "mesa-vulkan-drivers",
        "lavapipe: the Vulkan device the fixture binaries run on",
    ),
    (
        "shellcheck",
        "actionlint runs it on the workflow's scripts (tests/integration/ci_workflow.rs)",
    ),
];

/// Programs installed outside Debian's packages on these machines (README: Rust, Go;
/// actionlint: .ci/run builds it with `go install`, checked below).
const TOOLCHAINS: &[&str] = &["go", "cargo", "rustc", "actionlint"];

#[test]
fn ci_run_builds_actionlint_with_go() {
    let text =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(".ci/run")).unwrap();
    assert!(
        text.contains("go install github.com/rhysd/actionlint/cmd/actionlint@v"),
        ".ci/run must install the actionlint the workflow test runs"
    );
}

fn ci_packages() -> BTreeSet<String> {
    let text =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(".ci/run")).unwrap();
    // The install command spans continuation lines up to the first without a `\`.
    let mut pkgs = BTreeSet::new();
    let mut in_install = false;
    for line in text.lines() {
        let l = line.trim();
        if l.starts_with("apt-get install") || l.contains(" apt-get install ") {
            in_install = true;
        }
        if in_install {
            for w in l.split_whitespace() {
                if w.starts_with('-')
                    || ["apt-get", "install", "\\", ">/dev/null", "2>&1"].contains(&w)
                    || w.starts_with('>')
                {
                    continue;
                }
                pkgs.insert(w.to_string());
            }
            if !l.ends_with('\\') {
                in_install = false;
            }
        }
    }
    assert!(
        pkgs.len() > 5,
        ".ci/run's apt-get install list not found: {pkgs:?}"
    );
    pkgs
}

fn dpkg_field(pkg: &str, field: &str) -> String {
    let out = Command::new("dpkg-query")
        .args(["-W", &format!("-f=${{{field}}}"), pkg])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Essential or Priority: required: on every Debian system, minbase included.
fn base_system(pkg: &str) -> bool {
    dpkg_field(pkg, "Essential") == "yes" || dpkg_field(pkg, "Priority") == "required"
}

/// Does `pkg`, or a package it depends on (python3 → python3-minimal), ship the program?
fn ships(pkg: &str, cmd: &str) -> bool {
    ships_itself(pkg, cmd)
        || format!(
            "{},{}",
            dpkg_field(pkg, "Pre-Depends"),
            dpkg_field(pkg, "Depends")
        )
        .split(',')
        .filter_map(|d| d.split_whitespace().next())
        .any(|d| ships_itself(d.split(':').next().unwrap_or(d), cmd))
}

/// Does `pkg` ship `/bin/cmd` or `/sbin/cmd` (under /usr or not)?
fn ships_itself(pkg: &str, cmd: &str) -> bool {
    let out = Command::new("dpkg").args(["-L", pkg]).output().unwrap();
    let files = String::from_utf8_lossy(&out.stdout);
    files.lines().any(|f| {
        ["/bin/", "/sbin/", "/usr/bin/", "/usr/sbin/"]
            .iter()
            .any(|d| f == format!("{d}{cmd}"))
    })
}

/// String literals spawned as programs in `dir`'s Rust files.
fn literal_spawns(dir: &Path, found: &mut BTreeSet<String>) {
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            literal_spawns(&p, found);
        } else if p.extension().is_some_and(|x| x == "rs") {
            let text = std::fs::read_to_string(&p).unwrap();
            for pat in ["Command::new(\"", "duct::cmd(\"", "engine(\""] {
                for (i, _) in text.match_indices(pat) {
                    let rest = &text[i + pat.len()..];
                    if let Some(end) = rest.find('"') {
                        found.insert(rest[..end].to_string());
                    }
                }
            }
        }
    }
}

/// argv[0] of the templates' build steps (the fixtures build with `--builder host`).
fn template_programs() -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("recipes");
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        if e.path().is_dir() {
            continue; // recipes/base: package lists, no steps
        }
        let v: toml::Value = toml::from_str(&std::fs::read_to_string(e.path()).unwrap()).unwrap();
        for step in v["build"]
            .get("steps")
            .and_then(|s| s.as_array())
            .into_iter()
            .flatten()
        {
            if let Some(p) = step["run"][0].as_str() {
                found.insert(p.to_string());
            }
        }
        for r in v["build"]
            .get("regenerate")
            .and_then(|s| s.as_array())
            .into_iter()
            .flatten()
        {
            if let Some(p) = r.get("run").and_then(|r| r[0].as_str()) {
                found.insert(p.to_string());
            }
        }
    }
    found
}

#[test]
fn ci_run_installs_every_program_the_code_and_tests_run_and_nothing_else() {
    let ci = ci_packages();
    // (program, package, why, whether the package ships the program itself: a probe
    // need such as python3-venv adds a module to a program another package ships).
    let mut declared: Vec<(String, String, String, bool)> = TOOLS
        .iter()
        .filter(|n| !n.commands.is_empty())
        .map(|n| {
            (
                n.commands[0].to_string(),
                n.package.to_string(),
                n.why.to_string(),
                n.probe.is_none(),
            )
        })
        .collect();
    declared.extend(
        test_tools()
            .into_iter()
            .map(|(c, p, w)| (c.to_string(), p.to_string(), w.to_string(), true)),
    );
    // Probe-only needs (headers) are packages too.
    let header_pkgs: Vec<&str> = TOOLS
        .iter()
        .filter(|n| n.commands.is_empty())
        .map(|n| n.package)
        .collect();
    let names: BTreeSet<&str> = declared.iter().map(|(c, ..)| c.as_str()).collect();

    // 1. Every program spawned by name in src/ or tests/, or by a template, is declared.
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut spawned = BTreeSet::new();
    literal_spawns(&root.join("src"), &mut spawned);
    literal_spawns(&root.join("tests"), &mut spawned);
    spawned.extend(template_programs());
    let undeclared: Vec<&String> = spawned
        .iter()
        .filter(|c| !names.contains(c.as_str()) && !TOOLCHAINS.contains(&c.as_str()))
        .collect();
    assert!(
        undeclared.is_empty(),
        "programs run but declared nowhere: {undeclared:?}\n  help: add each to provision::TOOLS (the tool's) or test_tools() in tests/integration/ci_script.rs (the tests'), with its Debian package"
    );

    // 2. Each declared program's package ships it, and .ci/run installs it (or Debian's
    //    base system has it). docker is optional and not installed by CI.
    let mut problems = Vec::new();
    for (cmd, pkg, why, ships_it) in &declared {
        if TOOLCHAINS.contains(&cmd.as_str()) || cmd == "docker" {
            continue;
        }
        let in_ci = ci.contains(pkg);
        if !in_ci && !base_system(pkg) {
            problems.push(format!(
                "{cmd} (Debian package {pkg}; {why}) is run, but .ci/run does not install {pkg}"
            ));
        }
        if *ships_it && dpkg_field(pkg, "Status").ends_with("installed") && !ships(pkg, cmd) {
            problems.push(format!(
                "{cmd}: the declared package {pkg} does not ship it"
            ));
        }
    }
    // 3. Nothing in .ci/run is there for no reason.
    let needed: BTreeSet<&str> = declared
        .iter()
        .map(|(_, p, _, _)| p.as_str())
        .chain(header_pkgs.iter().copied())
        .chain(SUPPORT.iter().map(|(p, _)| *p))
        .collect();
    for p in &ci {
        if !needed.contains(p.as_str()) {
            problems.push(format!(
                ".ci/run installs {p}, which no declared program or support need names"
            ));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}
