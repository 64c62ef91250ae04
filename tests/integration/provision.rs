//! Provisioning's refusals: a program the stage needs is missing (hidden from PATH) and
//! the tool may not install it (`--no-install`, or not root). Each refusal names the
//! program, why it is needed and the exact command, and writes nothing. (The install
//! path itself runs for real on a fresh machine: docs/VALIDATION.md.)

use std::os::unix::fs::symlink;
use std::path::Path;

use crate::support::{Run, Scratch};

/// A PATH directory with every program of the real PATH except `hide`.
fn path_without(dir: &Path, hide: &[&str]) -> String {
    std::fs::create_dir_all(dir).unwrap();
    for d in std::env::var("PATH").unwrap().split(':') {
        let Ok(rd) = std::fs::read_dir(d) else {
            continue;
        };
        for e in rd.flatten() {
            let name = e.file_name();
            let link = dir.join(&name);
            if hide.contains(&name.to_string_lossy().as_ref()) || link.exists() {
                continue;
            }
            let _ = symlink(e.path(), &link);
        }
    }
    dir.display().to_string()
}

fn listing(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            out.push(e.path().display().to_string());
            if e.path().is_dir() {
                out.extend(listing(&e.path()));
            }
        }
    }
    out.sort();
    out
}

#[test]
fn with_no_install_a_missing_mmdebstrap_is_named_with_its_install_command_and_nothing_is_written() {
    let s = Scratch::new();
    let path = path_without(&s.path().join("bin"), &["mmdebstrap"]);
    let cache = s.path().join("fresh-cache");
    std::fs::create_dir_all(&cache).unwrap();
    let before = listing(&cache);
    for args in [
        // The runtime base: its root is not cached, so mmdebstrap is needed.
        vec![
            "base",
            "--role",
            "runtime",
            "--engine",
            "podman",
            "--no-install",
        ],
        // The environment variable is the same switch.
        vec!["base", "--role", "runtime", "--engine", "podman"],
    ] {
        let mut cmd = s.command(&args);
        cmd.env("PATH", &path)
            .env("OLLAMA_VULKAN_CACHE", &cache)
            .env("OLLAMA_VULKAN_NO_INSTALL", "1");
        let r: Run = cmd.output().unwrap().into();
        r.fails(
            1,
            &[
                "mmdebstrap is not installed",
                "base images are made with it",
                "apt-get install -y --no-install-recommends mmdebstrap",
                "run without --no-install",
            ],
        );
        assert!(!r.stderr.contains("installing"), "{}", r.stderr);
        assert_eq!(listing(&cache), before, "a refusal writes nothing");
    }
    // `build` with the builder root: the same refusal before the root is made.
    let mut cmd = s.command(&["doctor", "--builder", "root", "--no-install"]);
    cmd.env("PATH", &path).env("OLLAMA_VULKAN_CACHE", &cache);
    let r: Run = cmd.output().unwrap().into();
    r.fails(1, &["mmdebstrap is not installed", "trixie builder root"]);
    assert_eq!(listing(&cache), before);
}

#[test]
fn doctor_fix_with_everything_present_installs_nothing() {
    let s = Scratch::new();
    let r = s.run(&["doctor", "--fix", "--builder", "host", "--json"]);
    // The checks may still fail (a root made elsewhere); the fix found nothing missing.
    assert!(
        r.stderr.contains("nothing to install"),
        "stderr:\n{}",
        r.stderr
    );
    assert!(!s.cache().join("provisioned.jsonl").exists());
}

#[test]
fn not_root_a_missing_program_gets_the_sudo_command() {
    let s = Scratch::new();
    let path = path_without(&s.path().join("bin"), &["mmdebstrap"]);
    // nobody cannot read the scratch dir: run from / with a cache it may write.
    let cache = tempfile::Builder::new()
        .prefix("ov-nobody-")
        .tempdir_in("/tmp")
        .unwrap();
    std::fs::set_permissions(
        cache.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o777),
    )
    .unwrap();
    let mut cmd = std::process::Command::new("setpriv");
    cmd.args([
        "--reuid=65534",
        "--regid=65534",
        "--clear-groups",
        env!("CARGO_BIN_EXE_ollama-vulkan"),
        "doctor",
        "--fix",
    ])
    .current_dir("/")
    .env("PATH", &path)
    .env("OLLAMA_VULKAN_CACHE", cache.path())
    .env_remove("OLLAMA_VULKAN_PROJECT");
    let r: Run = cmd.output().unwrap().into();
    r.fails(
        1,
        &[
            "mmdebstrap",
            "sudo apt-get install -y --no-install-recommends mmdebstrap",
        ],
    );
}
