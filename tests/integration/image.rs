//! `base`, `image` and `smoke --image` for real: an mmdebstrap runtime base imported into
//! a private container storage, the fixture's era-4 dist built into an image with buildah
//! (no registry), exported as an OCI archive, inspected with skopeo, and run with podman:
//! the server answers on its published port and sees the Vulkan device (lavapipe).
//!
//! Every engine here is chatty: `podman` and `buildah` on the tool's PATH are wrappers
//! that print the warnings a machine with a CNI config but no CNI plugins prints on
//! stderr (level=warning "Error validating CNI config file …"), then run the real
//! engine. Values the tool reads (container names, ids, labels) must come from stdout.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::support::{containers_storage_conf, shared_cache, Fixture, Run};

pub(crate) const RUNTIME_BASE: &str = "localhost/ollama-vulkan-test-runtime:trixie";

/// A directory of `podman`/`buildah` wrappers that warn on stderr like an engine on a
/// machine whose CNI config names plugins that are not installed, then exec the real one.
fn chatty_engines() -> PathBuf {
    static ONCE: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    ONCE.get_or_init(|| {
        use std::os::unix::fs::PermissionsExt;
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("chatty-engines");
        std::fs::create_dir_all(&dir).unwrap();
        for name in ["podman", "buildah"] {
            let real = ["/usr/bin", "/usr/local/bin", "/bin"]
                .iter()
                .map(|d| Path::new(d).join(name))
                .find(|p| p.is_file())
                .unwrap_or_else(|| panic!("{name} is not installed (.ci/run installs it)"));
            let script = dir.join(name);
            // The line buildah 1.28 printed on the fresh machine of the issue.
            let warning = r#"time="2026-11-29T05:00:00Z" level=warning msg="Error validating CNI config file /etc/cni/net.d/87-podman-bridge.conflist: [failed to find plugin \"bridge\" in path [/usr/local/libexec/cni /usr/libexec/cni /usr/lib/cni]]""#;
            std::fs::write(
                &script,
                format!(
                    "#!/bin/sh\ncat >&2 <<'EOF'\n{warning}\nEOF\nexec {} \"$@\"\n",
                    real.display()
                ),
            )
            .unwrap();
            std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        dir
    })
    .clone()
}

/// The binary with the test run's container storage, chatty engines first on PATH, and
/// the shared gguf python.
pub(crate) fn tool(fx: &Fixture, args: &[&str]) -> Run {
    let mut cmd = fx.scratch.command(args);
    let path = format!(
        "{}:{}",
        chatty_engines().display(),
        std::env::var("PATH").unwrap_or_default()
    );
    cmd.env("CONTAINERS_STORAGE_CONF", containers_storage_conf())
        .env("PATH", path)
        .env("OLLAMA_VULKAN_PYTHON", crate::support::smoke_python());
    cmd.output().unwrap().into()
}

pub(crate) fn engine(program: &str, args: &[&str]) -> String {
    let out = Command::new(program)
        .args(args)
        .env("CONTAINERS_STORAGE_CONF", containers_storage_conf())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{program} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `podman run --rm --network none [extra] --entrypoint sh IMAGE -c SCRIPT`: its stdout.
/// The 1024 nofile/nproc limits: runc cannot raise the host's hard limits here (nor under
/// qemu-user).
fn podman_sh(extra: &[&str], image: &str, script: &str) -> String {
    let mut args = vec![
        "run",
        "--rm",
        "--network",
        "none",
        "--ulimit",
        "nofile=1024:1024",
        "--ulimit",
        "nproc=1024:1024",
    ];
    args.extend_from_slice(extra);
    args.extend(["--entrypoint", "sh", image, "-c", script]);
    engine("podman", &args)
}

/// `base --role ROLE --engine ENGINE --tag TAG --json` (plus `extra`) with the shared cache.
fn make_base(fx: &Fixture, role: &str, engine: &str, tag: &str, extra: &[&str]) -> Run {
    let cache = shared_cache();
    let mut args = vec![
        "--cache-dir",
        cache.to_str().unwrap(),
        "base",
        "--role",
        role,
        "--engine",
        engine,
        "--tag",
        tag,
        "--json",
    ];
    args.extend_from_slice(extra);
    tool(fx, &args)
}

/// The runtime base; its root tarball is cached between test runs (mmdebstrap once), and
/// it is made once per run (the tests share it). A failure is kept and reported by each
/// test that needs the base, with its cause (no test dies of another's poisoned lock).
pub(crate) fn runtime_base(fx: &Fixture) -> serde_json::Value {
    static ONCE: std::sync::Mutex<Option<Result<serde_json::Value, String>>> =
        std::sync::Mutex::new(None);
    let mut once = ONCE
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if once.is_none() {
        *once = Some(make_runtime_base(fx));
    }
    match once.as_ref().unwrap() {
        Ok(v) => v.clone(),
        Err(e) => panic!("the shared runtime base could not be made:\n{e}"),
    }
}

fn make_runtime_base(fx: &Fixture) -> Result<serde_json::Value, String> {
    let run = make_base(fx, "runtime", "buildah", RUNTIME_BASE, &[]);
    if run.code != 0 {
        return Err(format!("exit {}\n{}", run.code, run.stderr));
    }
    serde_json::from_str(&run.stdout).map_err(|e| format!("{e}: {}", run.stdout))
}

pub(crate) fn fixture_dist(fx: &Fixture, tag: &str) -> (PathBuf, PathBuf) {
    let recipe = fx.new_recipe(tag);
    let dest = fx.scratch.path().join(format!("b-{tag}"));
    fx.build_host(&[recipe.to_str().unwrap()], &dest).ok();
    (recipe, dest)
}

fn image(fx: &Fixture, recipe: &Path, dest: &Path, extra: &[&str]) -> Run {
    let mut args = vec![
        "image",
        recipe.to_str().unwrap(),
        "--dest",
        dest.to_str().unwrap(),
        "--engine",
        "buildah",
    ];
    args.extend_from_slice(extra);
    tool(fx, &args)
}

#[test]
fn fixture_image_builds_with_buildah_runs_with_podman_and_sees_lavapipe() {
    let fx = Fixture::new();
    let base = runtime_base(&fx);
    assert_eq!(base["image"], RUNTIME_BASE);
    assert_eq!(base["role"], "runtime");
    let pkgs: Vec<&str> = base["packages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_str().unwrap())
        .collect();
    assert!(pkgs.contains(&"libvulkan1") && pkgs.contains(&"mesa-vulkan-drivers"));
    // Again: the root is cached and the image already holds it (same id, nothing imported).
    let cache = shared_cache();
    let again = make_base(&fx, "runtime", "podman", RUNTIME_BASE, &[])
        .ok()
        .json();
    assert_eq!(again["cached_rootfs"], true);
    assert_eq!(again["already_imported"], true);
    assert_eq!(again["id"], base["id"]);

    let (recipe, dest) = fixture_dist(&fx, "v0.24.0");
    let runtime = format!("runtime={RUNTIME_BASE}");

    // A local base that is not there: no registry to fall back on, so say how to make it.
    image(
        &fx,
        &recipe,
        &dest,
        &["--from-dist", "--base", "runtime=localhost/no-such-base:1"],
    )
    .fails(
        2,
        &[
            "localhost/no-such-base:1",
            "ollama-vulkan base --suite trixie --role runtime",
        ],
    );
    image(&fx, &recipe, &dest, &["--from-dist", "--base", "nonsense"])
        .fails(2, &["expected ROLE=IMAGE"]);
    // A per-arch override names a known arch; the value is an image reference.
    image(
        &fx,
        &recipe,
        &dest,
        &["--from-dist", "--base", "runtime@../x=localhost/a:1"],
    )
    .fails(2, &["runtime@arm64"]);
    image(
        &fx,
        &recipe,
        &dest,
        &["--from-dist", "--base", "runtime@arm64=$(touch /tmp/pwned)"],
    )
    .fails(2, &["--base runtime@arm64"]);

    // The template's default runtime base, missing here: `--no-install` refuses and says
    // how to make it; without it, `image` makes it (announced) as `base` would, from the
    // cached root.
    let default_runtime = "localhost/ollama-vulkan-runtime:trixie";
    engine("podman", &["rmi", "--ignore", "-f", default_runtime]);
    let shared = cache.to_str().unwrap();
    image(
        &fx,
        &recipe,
        &dest,
        &[
            "--no-install",
            "--cache-dir",
            shared,
            "--from-dist",
            "--tag",
            "localhost/ollama-vulkan-test:default-base",
        ],
    )
    .fails(
        2,
        &[
            default_runtime,
            "--no-install",
            "ollama-vulkan base --suite trixie --role runtime",
        ],
    );
    let made = image(
        &fx,
        &recipe,
        &dest,
        &[
            "--cache-dir",
            shared,
            "--from-dist",
            "--tag",
            "localhost/ollama-vulkan-test:default-base",
            "--json",
        ],
    );
    made.ok();
    assert!(
        made.stderr
            .contains(&format!("making the base {default_runtime}")),
        "announced:\n{}",
        made.stderr
    );
    assert_eq!(made.json()["bases"]["runtime"], default_runtime);

    let archive = fx.scratch.path().join("out/fixture.oci.tar");
    let out_arg = format!("oci-archive:{}", archive.display());
    let j = image(
        &fx,
        &recipe,
        &dest,
        &[
            "--from-dist",
            "--base",
            &runtime,
            "--tag",
            "localhost/ollama-vulkan-test:era4",
            "--output",
            &out_arg,
            "--json",
        ],
    )
    .ok()
    .json();
    assert_eq!(j["mode"], "from-dist");
    assert_eq!(j["engine"], "buildah");
    assert_eq!(j["bases"]["runtime"], RUNTIME_BASE);
    assert!(j["size_bytes"].as_u64().unwrap() > 0, "{j}");
    assert!(archive.is_file() && j["output_bytes"].as_u64().unwrap() > 0);
    // The Dockerfile and its ignore file are emitted into the build output.
    let df = std::fs::read_to_string(dest.join("Dockerfile.linux")).unwrap();
    assert!(df.contains("COPY dist/lib/ollama /usr/lib/ollama"), "{df}");
    assert!(!df.contains("AS builder"), "{df}");
    let ignore = std::fs::read_to_string(dest.join("Dockerfile.linux.dockerignore")).unwrap();
    assert!(ignore.contains("!dist/bin/"), "{ignore}");

    // The exported archive: what a user loads elsewhere.
    let cfg: serde_json::Value = serde_json::from_str(&engine(
        "skopeo",
        &[
            "inspect",
            "--config",
            &format!("oci-archive:{}", archive.display()),
        ],
    ))
    .unwrap();
    let env: Vec<&str> = cfg["config"]["Env"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e.as_str().unwrap())
        .collect();
    assert!(env.contains(&"OLLAMA_HOST=0.0.0.0:11434"), "{env:?}");
    assert!(env.contains(&"OLLAMA_VULKAN=1"), "era 4's switch: {env:?}");
    assert!(
        !env.iter()
            .any(|e| e.starts_with("GGML_VK_VISIBLE_DEVICES") || e.starts_with("VK_LOADER_DEBUG")),
        "no test-only or debug settings in the image: {env:?}"
    );
    assert!(
        cfg["config"]["ExposedPorts"]["11434/tcp"].is_object(),
        "{cfg}"
    );
    assert_eq!(cfg["config"]["Entrypoint"][0], "/usr/bin/ollama");
    assert_eq!(cfg["config"]["Cmd"][0], "serve");
    assert_eq!(cfg["config"]["Labels"]["io.ollama-vulkan.era"], "4");

    // In a container: the server answers on the published port and finds lavapipe.
    let s = tool(
        &fx,
        &[
            "smoke",
            "--image",
            "localhost/ollama-vulkan-test:era4",
            "--lavapipe",
            "--tokens",
            "4",
            "--json",
        ],
    )
    .ok()
    .json();
    assert_eq!(s["image"], "localhost/ollama-vulkan-test:era4");
    assert_eq!(s["era"], "4");
    let runs = s["runs"].as_array().unwrap();
    assert_eq!(runs[0]["mode"], "vulkan");
    assert!(
        runs[0]["device"].as_str().unwrap().contains("llvmpipe"),
        "{s}"
    );
    assert_eq!(runs[0]["eval_count"], 4);
    assert_eq!(
        runs[0]["healthcheck"], "healthy",
        "the image's HEALTHCHECK passes"
    );
    assert_eq!(runs[1]["mode"], "cpu");
    assert_eq!(runs[1]["size_vram"], 0);
    // Nothing is left running.
    let ps = engine("podman", &["ps", "-a", "--format", "{{.Names}}"]);
    assert!(!ps.contains("ollama-vulkan-smoke-"), "{ps}");

    // Unchanged dist: every step comes from the layer cache.
    let again = image(
        &fx,
        &recipe,
        &dest,
        &[
            "--from-dist",
            "--base",
            &runtime,
            "--tag",
            "localhost/ollama-vulkan-test:era4",
            "--json",
        ],
    )
    .ok()
    .json();
    assert_eq!(again["id"], j["id"], "same inputs, same image");

    // `build --image`: the (cached) build, then the image from its dist.
    let b = tool(
        &fx,
        &[
            "build",
            recipe.to_str().unwrap(),
            "--builder",
            "host",
            "--dest",
            dest.to_str().unwrap(),
            "--image",
            "--engine",
            "buildah",
            "--base",
            &runtime,
            "--tag",
            "localhost/ollama-vulkan-test:era4",
            "--json",
        ],
    )
    .ok()
    .json();
    assert_eq!(b["build"]["cached"], true, "{b}");
    assert_eq!(b["image"]["mode"], "from-dist");
    assert_eq!(b["image"]["id"], j["id"]);
}

#[test]
fn image_without_a_dist_or_tree_says_what_to_run() {
    let fx = Fixture::new();
    let recipe = fx.new_recipe("v0.24.0");
    let dest = fx.scratch.path().join("empty");
    std::fs::create_dir_all(&dest).unwrap();
    image(&fx, &recipe, &dest, &["--from-dist"])
        .fails(2, &["dist/bin/ollama is missing", "ollama-vulkan build"]);
    tool(
        &fx,
        &[
            "smoke",
            "--image",
            "localhost/ollama-vulkan-test:absent",
            "--engine",
            "podman",
        ],
    )
    .fails(2, &["localhost/ollama-vulkan-test:absent"]);
    tool(
        &fx,
        &["image", recipe.to_str().unwrap(), "--output", "tar:/tmp/x"],
    )
    .fails(2, &["oci-archive:PATH"]);
}

const BUILDER_BASE: &str = "localhost/ollama-vulkan-test-builder:trixie";

/// The default mode: the builder stage compiles the prepared fixture tree with the era's
/// build steps (the same recipe data as the native build) on the mmdebstrap builder base
/// (build deps + the host's Go), and the image it makes (non-root, `--uid 1000`) generates
/// through lavapipe.
#[test]
fn fixture_image_compiles_in_the_builder_stage() {
    let fx = Fixture::new();
    let b = make_base(&fx, "builder", "buildah", BUILDER_BASE, &[])
        .ok()
        .json();
    assert!(b["go"].as_str().unwrap_or("").starts_with("go"), "{b}");
    runtime_base(&fx);
    let recipe = fx.new_recipe("v0.24.0");
    let dest = fx.scratch.path().join("src-build");
    fx.run(&[
        "prepare",
        recipe.to_str().unwrap(),
        "--dest",
        dest.to_str().unwrap(),
    ])
    .ok();
    let builder = format!("builder={BUILDER_BASE}");
    let runtime = format!("runtime={RUNTIME_BASE}");
    let j = image(
        &fx,
        &recipe,
        &dest,
        &[
            "--base",
            &builder,
            "--base",
            &runtime,
            "--tag",
            "localhost/ollama-vulkan-test:era4-src",
            "--uid",
            "1000",
            "--json",
        ],
    )
    .ok()
    .json();
    assert_eq!(j["mode"], "source");
    // `--uid`: the server runs as a user made in the image.
    let user = engine(
        "podman",
        &[
            "image",
            "inspect",
            "--format",
            "{{.Config.User}}",
            "localhost/ollama-vulkan-test:era4-src",
        ],
    );
    assert_eq!(user.trim(), "1000");
    // The drivers' pipeline caches: one folder the server's user can write (a volume
    // there keeps compiled pipelines across restarts, docs/RUNNING.md).
    let cache = podman_sh(
        &[],
        "localhost/ollama-vulkan-test:era4-src",
        "mkdir -p \"$GGML_VK_PIPELINE_CACHE_DIR\" \"$MESA_SHADER_CACHE_DIR\" \"$__GL_SHADER_DISK_CACHE_PATH\" && id -u && echo \"$MESA_SHADER_CACHE_DIR\"",
    );
    assert_eq!(
        cache.trim(),
        "1000\n/var/cache/ollama-vulkan/mesa",
        "{cache}"
    );
    assert!(j["source_date_epoch"].as_i64().is_some(), "{j}");
    let log = std::fs::read_to_string(dest.join("logs/image-linux.log")).unwrap();
    assert!(
        log.contains("RUN cmake --preset Vulkan"),
        "the era's steps ran"
    );
    let s = tool(
        &fx,
        &[
            "smoke",
            "--image",
            "localhost/ollama-vulkan-test:era4-src",
            "--lavapipe",
            "--no-cpu-fallback",
            "--tokens",
            "2",
            "--json",
        ],
    )
    .ok()
    .json();
    assert!(
        s["runs"][0]["device"]
            .as_str()
            .unwrap()
            .contains("llvmpipe"),
        "{s}"
    );
}

/// linux/arm64 on this amd64 machine, end to end: the runtime base made with mmdebstrap
/// (maintainer scripts under qemu-user, which `base` sets up itself), the fixture's era-4
/// dist cross-built in the trixie cross root (`build --arch arm64`), run there under
/// qemu-user (its `--version`, then `smoke`: a generation on lavapipe and on the CPU), an
/// arm64 image from that dist that `smoke --image` runs under emulation, and one tag for
/// an index of the amd64 and arm64 images, exported with both.
#[test]
fn an_arm64_dist_is_cross_built_runs_under_qemu_and_ships_in_a_multi_arch_index() {
    if !crate::support::have("podman")
        || std::env::consts::ARCH != "x86_64"
        || !crate::support::is_debian_root()
    {
        return;
    }
    let fx = Fixture::new();
    let tag = "localhost/ollama-vulkan-test-runtime:trixie-arm64";
    let b = make_base(&fx, "runtime", "podman", tag, &["--arch", "arm64"])
        .ok()
        .json();
    assert_eq!(b["arch"], "arm64", "{b}");
    let inspect = engine(
        "podman",
        &[
            "image",
            "inspect",
            "--format",
            "{{.Os}}/{{.Architecture}}",
            tag,
        ],
    );
    assert_eq!(inspect.trim(), "linux/arm64");
    // An arm64 userland: its own uname, its own Vulkan loader and Mesa ICDs.
    let out = podman_sh(
        &["--arch", "arm64"],
        tag,
        "uname -m; ls /usr/lib/aarch64-linux-gnu/libvulkan.so.1 /usr/share/vulkan/icd.d/virtio_icd.json",
    );
    let mut lines = out.lines();
    assert_eq!(lines.next(), Some("aarch64"), "{out}");
    assert!(
        out.contains("libvulkan.so.1") && out.contains("virtio_icd.json"),
        "{out}"
    );

    // The cross build, in the cross root (shared by test runs like the trixie root).
    crate::support::share_builders(&fx);
    let recipe = fx.new_recipe("v0.24.0");
    let j = fx
        .run(&[
            "build",
            recipe.to_str().unwrap(),
            "--arch",
            "arm64",
            "--json",
        ])
        .ok()
        .json();
    let dist = PathBuf::from(j["dist"].as_str().unwrap());
    assert!(
        dist.parent().unwrap().ends_with("ollama-v0.24.0-arm64"),
        "{}",
        dist.display()
    );
    let m: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dist.join("manifest.json")).unwrap()).unwrap();
    assert_eq!(m["target"], "arm64");
    assert_eq!(m["builder"]["target"], "arm64");
    for f in ["bin/ollama", "lib/ollama/vulkan/libggml-vulkan.so"] {
        let bytes = std::fs::read(dist.join(f)).unwrap();
        assert_eq!(
            ollama_vulkan::target::elf_machine_of(&bytes),
            Some(183),
            "{f} is aarch64"
        );
    }
    // The library check ran through the arm64 loader: every symbol resolved.
    assert!(m["lib_checks"]
        .as_array()
        .unwrap()
        .iter()
        .all(|c| c["ok"] == true));
    // The binary runs under qemu-user in the root it was built in.
    let mut root: ollama_vulkan::build::builder::Builder =
        serde_json::from_value(m["builder"].clone()).unwrap();
    root.bind(std::slice::from_ref(&dist));
    let v = root
        .std_command(
            &[
                dist.join("bin/ollama").display().to_string(),
                "--version".into(),
            ],
            &dist,
            &Default::default(),
        )
        .output()
        .unwrap();
    assert!(v.status.success(), "{v:?}");
    assert!(
        String::from_utf8_lossy(&v.stdout).contains("mini ollama"),
        "{v:?}"
    );
    // `smoke`: Vulkan on the arm64 lavapipe, then the CPU, all under emulation.
    let s = tool(
        &fx,
        &[
            "smoke",
            dist.to_str().unwrap(),
            "--lavapipe",
            "--tokens",
            "4",
            "--json",
        ],
    )
    .ok()
    .json();
    assert_eq!(s["runs"][0]["eval_count"], 4, "{s}");
    assert!(
        s["runs"][0]["device"]
            .as_str()
            .unwrap()
            .contains("llvmpipe"),
        "{s}"
    );
    assert_eq!(s["runs"][1]["eval_count"], 4, "{s}");

    // Both architectures under one tag: the amd64 dist on the host, each image from its
    // own dist and its own base, and the index exported with every image.
    fx.run(&[
        "build",
        recipe.to_str().unwrap(),
        "--builder",
        "host",
        "--json",
    ])
    .ok();
    let amd64_base = runtime_base(&fx);
    let index = "localhost/ollama-vulkan-test:multi";
    let archive = fx.scratch.path().join("out/multi.oci.tar");
    let j = tool(
        &fx,
        &[
            "image",
            recipe.to_str().unwrap(),
            "--from-dist",
            "--arch",
            "amd64",
            "--arch",
            "arm64",
            "--engine",
            "podman",
            "--base",
            &format!("runtime={}", amd64_base["image"].as_str().unwrap()),
            "--base",
            &format!("runtime@arm64={tag}"),
            "--tag",
            index,
            "--output",
            &format!("oci-archive:{}", archive.display()),
            "--json",
        ],
    )
    .ok()
    .json();
    assert_eq!(j["index"], index);
    let images = j["images"].as_array().unwrap();
    assert_eq!(images[0]["image"], format!("{index}-amd64"));
    assert_eq!(images[1]["image"], format!("{index}-arm64"));
    assert_eq!(images[1]["platform"], "linux/arm64");
    assert_eq!(images[1]["bases"]["runtime"], tag);
    let raw = Command::new("skopeo")
        .args([
            "inspect",
            "--raw",
            &format!("oci-archive:{}", archive.display()),
        ])
        .output()
        .unwrap();
    assert!(raw.status.success(), "{raw:?}");
    let idx: serde_json::Value = serde_json::from_slice(&raw.stdout).unwrap();
    let mut platforms: Vec<String> = idx["manifests"]
        .as_array()
        .unwrap_or_else(|| panic!("an index: {idx}"))
        .iter()
        .map(|m| {
            format!(
                "{}/{}",
                m["platform"]["os"].as_str().unwrap_or(""),
                m["platform"]["architecture"].as_str().unwrap_or("")
            )
        })
        .collect();
    platforms.sort();
    assert_eq!(platforms, ["linux/amd64", "linux/arm64"], "{idx}");
    // The arm64 image runs under qemu-user: a generation on the image's lavapipe.
    let s = tool(
        &fx,
        &[
            "smoke",
            "--image",
            &format!("{index}-arm64"),
            "--lavapipe",
            "--tokens",
            "4",
            "--json",
        ],
    )
    .ok()
    .json();
    assert_eq!(s["runs"][0]["eval_count"], 4, "{s}");

    // A foreign image is made from its dist only; a dist of the wrong arch is refused.
    tool(
        &fx,
        &[
            "image",
            recipe.to_str().unwrap(),
            "--arch",
            "arm64",
            "--engine",
            "podman",
        ],
    )
    .fails(2, &["--from-dist", "build", "--arch arm64"]);
    let amd64_dest = dist.parent().unwrap().with_file_name("ollama-v0.24.0");
    tool(
        &fx,
        &[
            "image",
            recipe.to_str().unwrap(),
            "--from-dist",
            "--arch",
            "arm64",
            "--dest",
            amd64_dest.to_str().unwrap(),
            "--engine",
            "podman",
            "--base",
            &format!("runtime={tag}"),
        ],
    )
    .fails(2, &["linux/amd64 dist", "--arch arm64"]);

    // Both architectures assembled natively (no engine) into one index; each one's
    // SBOM beside it (valid SPDX, arm64 packages in the arm64 one), both roots locked.
    let shared = shared_cache();
    let asm = fx.scratch.path().join("out/assembled/multi.oci.tar");
    let j = tool(
        &fx,
        &[
            "--cache-dir",
            shared.to_str().unwrap(),
            "image",
            recipe.to_str().unwrap(),
            "--assemble",
            "--arch",
            "amd64",
            "--arch",
            "arm64",
            "--tag",
            "localhost/ollama-vulkan-test:multi-asm",
            "--output",
            &format!("oci-archive:{}", asm.display()),
            "--json",
        ],
    )
    .ok()
    .json();
    assert!(j["digest"].as_str().unwrap().starts_with("sha256:"), "{j}");
    let asm_ref = format!("oci-archive:{}", asm.display());
    let idx: serde_json::Value =
        serde_json::from_str(&engine("skopeo", &["inspect", "--raw", &asm_ref])).unwrap();
    let mut platforms: Vec<String> = idx["manifests"]
        .as_array()
        .unwrap_or_else(|| panic!("an index: {idx}"))
        .iter()
        .map(|m| {
            format!(
                "{}/{}",
                m["platform"]["os"].as_str().unwrap(),
                m["platform"]["architecture"].as_str().unwrap()
            )
        })
        .collect();
    platforms.sort();
    assert_eq!(platforms, ["linux/amd64", "linux/arm64"], "{idx}");
    let arm: serde_json::Value = serde_json::from_str(&engine(
        "skopeo",
        &["--override-arch", "arm64", "inspect", &asm_ref],
    ))
    .unwrap();
    assert_eq!(arm["Architecture"], "arm64");
    let arm_sbom = "ollama-vulkan-test_multi-asm-arm64-linux-arm64.spdx.json";
    assert_eq!(arm["Labels"]["io.ollama-vulkan.sbom"], arm_sbom, "{arm}");
    let sbom = asm.parent().unwrap().join(arm_sbom);
    crate::provenance::assert_valid_spdx(&sbom);
    let text = std::fs::read_to_string(&sbom).unwrap();
    assert!(
        text.contains("arch=arm64"),
        "arm64 packages in the arm64 SBOM"
    );
    assert!(asm
        .parent()
        .unwrap()
        .join("ollama-vulkan-test_multi-asm-amd64-linux-amd64.spdx.json")
        .is_file());
    let lock =
        std::fs::read_to_string(fx.scratch.project().join("recipes/base/packages.lock")).unwrap();
    assert!(
        lock.contains("arch = \"arm64\"") && lock.contains("arch = \"amd64\""),
        "{lock}"
    );
}

/// The krunkit variant: our Venus driver (recipes/lab/mesa.toml, built once and shared
/// with the trixie test) in place of Debian's, diverted and selected with VK_DRIVER_FILES,
/// and the image runs the fixture on a real Venus device (the lab's Debian vtest server on
/// lavapipe; the krunkit host rule needs the patched server: docs/VENUS.md).
#[test]
fn the_krunkit_image_ships_our_venus_driver_and_runs_on_venus() {
    if !crate::support::have("podman") || !crate::support::is_debian_root() {
        return;
    }
    let fx = Fixture::new();
    let base = runtime_base(&fx);
    crate::support::share_builders(&fx);
    crate::support::share_cached(&fx, "mesa");
    let (recipe, dest) = fixture_dist(&fx, "v0.24.0");
    let tag = "localhost/ollama-vulkan-test:krunkit";
    let j = image(
        &fx,
        &recipe,
        &dest,
        &[
            "--from-dist",
            "--variant",
            "krunkit",
            "--base",
            &format!("runtime={}", base["image"].as_str().unwrap()),
            "--tag",
            tag,
            "--json",
        ],
    )
    .ok()
    .json();
    assert_eq!(j["variant"], "krunkit", "{j}");
    assert!(j["mesa"].as_str().unwrap().starts_with("25.0.7"), "{j}");
    let df = std::fs::read_to_string(dest.join("Dockerfile.krunkit")).unwrap();
    assert!(df.contains("dpkg-divert --local --rename --add"), "{df}");
    assert!(
        df.contains("VK_DRIVER_FILES=/usr/share/vulkan/icd.d/virtio_icd.json"),
        "{df}"
    );
    // The driver in the image is the one we built (its hash is a label), Debian's is
    // diverted aside, and the ICD names ours.
    let labels: serde_json::Value = serde_json::from_str(&engine(
        "podman",
        &["image", "inspect", "--format", "{{json .Labels}}", tag],
    ))
    .unwrap();
    assert_eq!(labels["io.ollama-vulkan.variant"], "krunkit");
    let sha = labels["io.ollama-vulkan.mesa-driver-sha256"]
        .as_str()
        .unwrap();
    let triplet = ollama_vulkan::target::Arch::host().triplet();
    let inside = podman_sh(
        &["--health-interval", "disable"],
        tag,
        &format!(
            "sha256sum /usr/lib/{triplet}/libvulkan_virtio.so; dpkg-divert --list | grep -c virtio; cat /usr/share/vulkan/icd.d/virtio_icd.json; echo VK=$VK_DRIVER_FILES"
        ),
    );
    assert!(inside.starts_with(sha), "{inside}\nlabel {sha}");
    assert!(inside.contains("\n2\n"), "both files diverted: {inside}");
    assert!(inside.contains("libvulkan_virtio.so"), "{inside}");
    assert!(
        inside.contains("VK=/usr/share/vulkan/icd.d/virtio_icd.json"),
        "{inside}"
    );
    // On Venus: the container's Venus driver (ours) talks to the lab's vtest server.
    let s = tool(
        &fx,
        &[
            "smoke",
            "--image",
            tag,
            "--venus",
            "--venus-server",
            "stock",
            "--tokens",
            "4",
            "--json",
        ],
    )
    .ok()
    .json();
    let run = &s["runs"][0];
    assert_eq!(run["eval_count"], 4, "{s}");
    assert!(
        run["device"]
            .as_str()
            .unwrap()
            .starts_with("Virtio-GPU Venus (llvmpipe"),
        "{s}"
    );

    // Assembled natively: the same driver in the dist layer, Debian's diverted aside
    // (as dpkg-divert records it), the Mesa build in the SBOM.
    let bases = fx.scratch.cache().join("bases");
    if !bases.exists() {
        std::fs::create_dir_all(shared_cache().join("bases")).unwrap();
        std::os::unix::fs::symlink(shared_cache().join("bases"), &bases).unwrap();
    }
    let asm = fx.scratch.path().join("out/krunkit.oci.tar");
    let a = tool(
        &fx,
        &[
            "image",
            recipe.to_str().unwrap(),
            "--dest",
            dest.to_str().unwrap(),
            "--assemble",
            "--variant",
            "krunkit",
            "--tag",
            "localhost/ollama-vulkan-test:krunkit-asm",
            "--output",
            &format!("oci-archive:{}", asm.display()),
            "--json",
        ],
    )
    .ok()
    .json();
    let sbom = std::fs::read_to_string(asm.parent().unwrap().join(format!(
        "ollama-vulkan-test_krunkit-asm-krunkit-{}.spdx.json",
        ollama_vulkan::target::Arch::host()
    )))
    .unwrap();
    assert!(sbom.contains(sha), "the driver's hash in the SBOM");
    assert_eq!(a["labels"]["io.ollama-vulkan.mesa-driver-sha256"], sha);
    engine("podman", &["load", "-i", asm.to_str().unwrap()]);
    let inside = podman_sh(
        &[],
        "localhost/ollama-vulkan-test:krunkit-asm",
        &format!(
            "sha256sum /usr/lib/{triplet}/libvulkan_virtio.so; dpkg-divert --list | grep -c virtio; ls /usr/lib/{triplet}/libvulkan_virtio.so.distrib; echo VK=$VK_DRIVER_FILES"
        ),
    );
    assert!(inside.starts_with(sha), "{inside}\nlabel {sha}");
    assert!(inside.contains("\n2\n"), "both files diverted: {inside}");
    assert!(inside.contains("libvulkan_virtio.so.distrib"), "{inside}");
    assert!(
        inside.contains("VK=/usr/share/vulkan/icd.d/virtio_icd.json"),
        "{inside}"
    );
}
