//! Offline proof: once `fetch` has filled the cache, `build` and `image --from-dist` run in
//! a network namespace with no route at all (`unshare --net`: only a down loopback) and
//! succeed, with the recipe's upstream URL unreachable; the same namespace does stop a
//! fetch that would need the network (so the namespace really is offline).

use std::fs;
use std::path::Path;
use std::process::Command;

use crate::support::{git, Fixture, Run, BIN};

/// Runs the binary inside a new network namespace, with the fixture's project and cache.
fn offline(fx: &Fixture, args: &[&str]) -> Run {
    Command::new("unshare")
        .args(["--net", "--"])
        .arg(BIN)
        .args(args)
        .current_dir(fx.scratch.path())
        .env("OLLAMA_VULKAN_PROJECT", fx.scratch.project())
        .env("OLLAMA_VULKAN_CACHE", fx.scratch.cache())
        .env(
            "CONTAINERS_STORAGE_CONF",
            crate::support::containers_storage_conf(),
        )
        .env_remove("OLLAMA_VULKAN_LOG")
        .output()
        .unwrap()
        .into()
}

fn set_url(recipe: &Path, url: &str) {
    let text = fs::read_to_string(recipe).unwrap();
    let text: String = text
        .lines()
        .filter(|l| !l.starts_with("url = "))
        .map(|l| format!("{l}\n"))
        .collect();
    let text = text + &format!("\n[ollama]\nurl = \"{url}\"\n");
    fs::write(recipe, crate::fetch::merge_ollama_url(&text)).unwrap();
}

#[test]
fn after_fetch_build_and_image_from_dist_run_with_no_network() {
    let netns = Command::new("unshare")
        .args(["--net", "--", "cat", "/proc/net/route"])
        .output()
        .unwrap();
    assert!(
        netns.status.success(),
        "unshare --net needs root (the tests run as root): {}",
        String::from_utf8_lossy(&netns.stderr)
    );
    // Not one route (at most the header line).
    let routes = String::from_utf8_lossy(&netns.stdout).into_owned();
    assert!(routes.lines().nth(1).is_none(), "{routes}");

    let fx = Fixture::new();
    let recipe = fx.new_recipe("v0.24.0");
    // The online step: fetch fills the cache (from a file:// URL standing in for GitHub).
    set_url(&recipe, &format!("file://{}", fx.ollama.dir.display()));
    let dest = fx.scratch.path().join("off");
    let (r, d) = (recipe.to_str().unwrap(), dest.to_str().unwrap());
    fx.scratch.run(&["fetch", r, "--dest", d]).ok();
    let mirror = fx.scratch.cache().join("git/ollama.git");
    let refs = git(&mirror, &["for-each-ref"]);

    // From here the upstream is unreachable, as on a machine cut off after fetching.
    set_url(&recipe, "https://github.invalid/ollama/ollama.git");
    let j = offline(
        &fx,
        &["build", r, "--builder", "host", "--dest", d, "--json"],
    )
    .ok()
    .json();
    assert!(dest.join("dist/bin/ollama").is_file(), "{j}");
    assert_eq!(git(&mirror, &["for-each-ref"]), refs, "nothing fetched");

    if crate::support::have("buildah") && crate::support::have("mmdebstrap") {
        let base = crate::image::runtime_base(&fx); // online: mmdebstrap
        assert_eq!(base["image"], crate::image::RUNTIME_BASE);
        let runtime = format!("runtime={}", crate::image::RUNTIME_BASE);
        let archive = fx.scratch.path().join("off.oci.tar");
        let out = format!("oci-archive:{}", archive.display());
        let j = offline(
            &fx,
            &[
                "image",
                r,
                "--dest",
                d,
                "--from-dist",
                "--engine",
                "buildah",
                "--base",
                &runtime,
                "--tag",
                "localhost/ollama-vulkan-test:offline",
                "--output",
                &out,
                "--json",
            ],
        )
        .ok()
        .json();
        assert_eq!(j["mode"], "from-dist");
        assert!(archive.is_file());
    } else {
        eprintln!("image part skipped: buildah and mmdebstrap are needed (.ci/run installs them)");
    }

    // The control: what does need the network fails in the same namespace.
    fs::remove_dir_all(fx.scratch.cache().join("git")).unwrap();
    let run = offline(&fx, &["fetch", r, "--dest", d]);
    assert_ne!(run.code, 0, "a fetch from GitHub cannot succeed offline");
    assert!(run.stderr.contains("github.invalid"), "{}", run.stderr);
}
