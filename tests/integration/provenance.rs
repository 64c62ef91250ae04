//! Provenance (issue 20): `image --assemble` writes the runtime image itself, twice from
//! one dist into one digest; skopeo reads its labels, umoci unpacks it, podman loads
//! and runs it and `smoke --image` passes on it. Its SBOM (SPDX 2.3) validates against
//! the vendored schema and is referenced by the image's labels; the package lock is
//! recorded, kept, and drift is a warning or (`--locked`) an error.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::image::{engine, fixture_dist, runtime_base, tool};
use crate::support::{containers_storage_conf, shared_cache, Fixture, Run};

const SCHEMA_SHA256: &str = "239208b7ac287b3cf5d9a9af23f9d69863971102a5e1587a27a398b43490b89b";

fn sha256(p: &Path) -> String {
    let out = Command::new("sha256sum").arg(p).output().unwrap();
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .unwrap()
        .to_string()
}

/// Validates `doc` against the vendored SPDX 2.3 schema (Debian's python3-jsonschema).
pub(crate) fn assert_valid_spdx(doc: &Path) {
    let schema =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/integration/spdx/spdx-2.3-schema.json");
    assert_eq!(
        sha256(&schema),
        SCHEMA_SHA256,
        "the vendored schema is SPDX's"
    );
    if let Err(e) = crate::support::schema_errors(&schema, doc) {
        panic!("{} is not valid SPDX 2.3:\n{e}", doc.display());
    }
}

fn assemble(fx: &Fixture, recipe: &Path, dest: &Path, out: &str, extra: &[&str]) -> Run {
    let cache = shared_cache();
    let mut args = vec![
        "--cache-dir",
        cache.to_str().unwrap(),
        "image",
        recipe.to_str().unwrap(),
        "--dest",
        dest.to_str().unwrap(),
        "--assemble",
        "--output",
        out,
        "--json",
    ];
    args.extend_from_slice(extra);
    tool(fx, &args)
}

#[test]
fn an_assembled_image_is_reproducible_carries_its_sbom_and_runs() {
    let fx = Fixture::new();
    // The runtime root tarball (shared, cached between runs) that --assemble packs.
    runtime_base(&fx);
    let (recipe, dest) = fixture_dist(&fx, "v0.24.0");
    let out = fx.scratch.path().join("out");
    let a = out.join("a/ollama.oci.tar");
    let b = out.join("b/ollama.oci.tar");
    let lock = fx.scratch.project().join("recipes/base/packages.lock");

    let started = std::time::Instant::now();
    let ja = assemble(
        &fx,
        &recipe,
        &dest,
        &format!("oci-archive:{}", a.display()),
        &[],
    )
    .ok()
    .json();
    eprintln!("first assembly: {:.1} s", started.elapsed().as_secs_f64());
    assert_eq!(ja["mode"], "assembled");
    assert_eq!(ja["lock"]["status"], "recorded", "{ja}");
    assert!(lock.is_file());
    let jb = assemble(
        &fx,
        &recipe,
        &dest,
        &format!("oci-archive:{}", b.display()),
        &["--locked"],
    )
    .ok()
    .json();
    assert_eq!(jb["lock"]["status"], "unchanged");
    // Two assemblies of one dist: one digest, and the archives are the same bytes.
    let digest = ja["digest"].as_str().unwrap().to_string();
    assert!(digest.starts_with("sha256:"), "{ja}");
    assert_eq!(jb["digest"], ja["digest"], "same inputs, same image digest");
    assert_eq!(sha256(&a), sha256(&b), "the two archives differ");

    // The SBOM: next to the image, valid SPDX 2.3, referenced by name and hash.
    let sbom_name = "ollama-vulkan_v0.24.0-linux-amd64.spdx.json";
    let sbom = a.parent().unwrap().join(sbom_name);
    assert!(sbom.is_file() && dest.join(sbom_name).is_file(), "{ja}");
    assert_eq!(
        std::fs::read(&sbom).unwrap(),
        std::fs::read(b.parent().unwrap().join(sbom_name)).unwrap(),
        "the SBOM is reproducible too"
    );
    assert_valid_spdx(&sbom);
    let doc: serde_json::Value = serde_json::from_slice(&std::fs::read(&sbom).unwrap()).unwrap();
    assert_eq!(doc["spdxVersion"], "SPDX-2.3");
    let names: Vec<&str> = doc["packages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    for want in [
        "ollama",
        "llama.cpp",
        "libvulkan1",
        "mesa-vulkan-drivers",
        "libc6",
    ] {
        assert!(names.contains(&want), "{want} not in the SBOM: {names:?}");
    }
    let libc = doc["packages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "libc6")
        .unwrap();
    let locked: toml::Table = toml::from_str(&std::fs::read_to_string(&lock).unwrap()).unwrap();
    let libc_locked = locked["base"][0]["packages"]["libc6:amd64"]
        .as_str()
        .unwrap();
    assert_eq!(libc["versionInfo"], libc_locked, "SBOM and lock agree");

    // skopeo: the manifest digest, the labels and the config.
    let arch_ref = format!("oci-archive:{}", a.display());
    let inspect: serde_json::Value =
        serde_json::from_str(&engine("skopeo", &["inspect", &arch_ref])).unwrap();
    assert_eq!(inspect["Digest"], digest.as_str());
    assert_eq!(inspect["Architecture"], "amd64");
    let labels = &inspect["Labels"];
    for key in [
        "org.opencontainers.image.source",
        "org.opencontainers.image.revision",
        "org.opencontainers.image.version",
        "org.opencontainers.image.created",
        "io.ollama-vulkan.llama.cpp.commit",
        "io.ollama-vulkan.series",
        "io.ollama-vulkan.recipe.sha256",
        "io.ollama-vulkan.shader-features",
    ] {
        assert!(labels[key].is_string(), "no label {key}: {labels}");
    }
    assert_eq!(labels["org.opencontainers.image.version"], "v0.24.0");
    assert_eq!(labels["io.ollama-vulkan.sbom"], sbom_name);
    assert_eq!(
        labels["io.ollama-vulkan.sbom.sha256"],
        sha256(&sbom).as_str()
    );
    let cfg: serde_json::Value =
        serde_json::from_str(&engine("skopeo", &["inspect", "--config", &arch_ref])).unwrap();
    let env: Vec<&str> = cfg["config"]["Env"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e.as_str().unwrap())
        .collect();
    assert!(env.contains(&"OLLAMA_HOST=0.0.0.0:11434"), "{env:?}");
    assert!(env.contains(&"OLLAMA_VULKAN=1"), "era 4's switch: {env:?}");
    assert_eq!(cfg["config"]["Entrypoint"][0], "/usr/bin/ollama");
    assert!(
        cfg["config"]["ExposedPorts"]["11434/tcp"].is_object(),
        "{cfg}"
    );

    // Drift: the lock says another libc6. With --locked an error that writes nothing;
    // without, a warning listing old → new, the lock updated, and the image written
    // (here as an OCI layout directory: the same image as the archives).
    let text = std::fs::read_to_string(&lock).unwrap();
    let tampered = text.replace(
        &format!("\"libc6:amd64\" = \"{libc_locked}\""),
        "\"libc6:amd64\" = \"2.0-1\"",
    );
    assert_ne!(tampered, text);
    std::fs::write(&lock, &tampered).unwrap();
    let layout = out.join("layout");
    let layout_arg = format!("oci:{}", layout.display());
    let drift = format!("libc6:amd64 2.0-1 → {libc_locked}");
    assemble(&fx, &recipe, &dest, &layout_arg, &["--locked"])
        .fails(2, &["--locked", &drift, "packages.lock"]);
    assert!(!layout.exists(), "a refused assembly writes no image");
    assert_eq!(std::fs::read_to_string(&lock).unwrap(), tampered);
    let w = assemble(&fx, &recipe, &dest, &layout_arg, &[]);
    assert!(
        w.stderr.contains("drifted") && w.stderr.contains(&drift),
        "{}",
        w.stderr
    );
    assert_eq!(
        w.ok().json()["digest"],
        ja["digest"],
        "the layout holds the same image"
    );
    assert_eq!(
        std::fs::read_to_string(&lock).unwrap(),
        text,
        "the lock records the root again"
    );

    // umoci unpacks the layout: the dist and the root are there, as built.
    let bundle = out.join("bundle");
    let r = Command::new("umoci")
        .args(["unpack", "--image"])
        .arg(format!("{}:ollama-vulkan:v0.24.0", layout.display()))
        .arg(&bundle)
        .output()
        .unwrap();
    assert!(
        r.status.success(),
        "umoci: {}",
        String::from_utf8_lossy(&r.stderr)
    );
    let rootfs = bundle.join("rootfs");
    assert_eq!(
        sha256(&rootfs.join("usr/bin/ollama")),
        sha256(&dest.join("dist/bin/ollama"))
    );
    assert!(rootfs.join("var/lib/dpkg/status").is_file());
    assert!(rootfs.join("var/cache/ollama-vulkan").is_dir());

    // podman loads the archive and `smoke --image` generates on lavapipe in it.
    let loaded = engine("podman", &["load", "-i", a.to_str().unwrap()]);
    let name = "localhost/ollama-vulkan:v0.24.0";
    assert!(loaded.contains("ollama-vulkan:v0.24.0"), "{loaded}");
    let s = tool(
        &fx,
        &[
            "smoke",
            "--image",
            name,
            "--lavapipe",
            "--tokens",
            "4",
            "--no-cpu-fallback",
            "--json",
        ],
    )
    .ok()
    .json();
    let runs = s["runs"].as_array().unwrap();
    assert_eq!(runs[0]["mode"], "vulkan");
    assert!(
        runs[0]["device"].as_str().unwrap().contains("llvmpipe"),
        "{s}"
    );
    assert_eq!(runs[0]["eval_count"], 4);
}

#[test]
fn hostile_provenance_inputs_are_refused_with_file_line_and_fix() {
    let fx = Fixture::new();
    runtime_base(&fx);
    let (recipe, dest) = fixture_dist(&fx, "v0.24.0");
    let out = fx.scratch.path().join("out/x.oci.tar");
    let out_arg = format!("oci-archive:{}", out.display());
    // A tampered lock: a version with a shell word in it.
    let lock = fx.scratch.project().join("recipes/base/packages.lock");
    std::fs::write(
        &lock,
        "schema = 1\n[[base]]\nimage = \"localhost/ollama-vulkan-runtime:trixie\"\narch = \"amd64\"\n[base.packages]\n\"libc6:amd64\" = \"2.41$(touch /tmp/pwned)\"\n",
    )
    .unwrap();
    assemble(&fx, &recipe, &dest, &out_arg, &[])
        .fails(2, &["packages.lock", "not a Debian version", "help:"]);
    std::fs::write(&lock, "schema = 1\n[[base]]\nimage = \"x\"\n").unwrap();
    assemble(&fx, &recipe, &dest, &out_arg, &[]).fails(2, &["packages.lock", "missing field"]);
    std::fs::remove_file(&lock).unwrap();
    // A go.sum with an odd line: named with its line.
    let gosum = dest.join("src/ollama/go.sum");
    std::fs::create_dir_all(gosum.parent().unwrap()).unwrap();
    std::fs::write(
        &gosum,
        "github.com/ok/ok v1.0.0 h1:7vLn9G8bU8TUQ7Dc5QUVoAJHF8nAC8U6Gg0BYb7fV5w=\n../../etc/passwd v1.0.0 h1:7vLn9G8bU8TUQ7Dc5QUVoAJHF8nAC8U6Gg0BYb7fV5w=\n",
    )
    .unwrap();
    assemble(&fx, &recipe, &dest, &out_arg, &[])
        .fails(2, &["go.sum:2", "not a Go module path", "prepare"]);
    std::fs::remove_file(&gosum).unwrap();
    assert!(!out.exists(), "nothing written");
    // --assemble with a base that is an image, not a root: refused.
    assemble(
        &fx,
        &recipe,
        &dest,
        &out_arg,
        &["--base", "runtime=localhost/some-image:1"],
    )
    .fails(2, &["--assemble packs a Debian root", "drop --base"]);
    assemble(&fx, &recipe, &dest, &out_arg, &["--uid", "1000"]).fails(2, &["--uid"]);
    // An oci: output over a directory that is not a layout: refused, left alone.
    let mine = fx.scratch.path().join("mine");
    std::fs::create_dir_all(&mine).unwrap();
    std::fs::write(mine.join("keep.txt"), "x").unwrap();
    assemble(&fx, &recipe, &dest, &format!("oci:{}", mine.display()), &[])
        .fails(2, &["not an OCI layout", "refusing"]);
    assert!(mine.join("keep.txt").is_file());
    let _: PathBuf = containers_storage_conf();
}

/// mmdebstrap's root is reproducible (SOURCE_DATE_EPOCH): made again, it is the same
/// bytes as the cached one, or, when Debian published other versions in between, the
/// report names them (`drifted`); the same versions with other bytes would name each
/// differing file and why.
#[test]
fn the_runtime_root_made_again_is_the_same_bytes() {
    let fx = Fixture::new();
    runtime_base(&fx);
    let cache = shared_cache();
    let r = tool(
        &fx,
        &[
            "--cache-dir",
            cache.to_str().unwrap(),
            "base",
            "--role",
            "runtime",
            "--verify",
            "--json",
        ],
    );
    let j: serde_json::Value = serde_json::from_str(&r.stdout)
        .unwrap_or_else(|e| panic!("{e}: exit {}\n{}\n{}", r.code, r.stdout, r.stderr));
    match j["status"].as_str().unwrap() {
        "identical" => {
            assert_eq!(j["cached_sha256"], j["fresh_sha256"]);
            assert_eq!(r.code, 0);
        }
        "drifted" => assert!(!j["packages"].as_array().unwrap().is_empty(), "{j}"),
        _ => panic!("the root is not reproducible:\n{j:#}"),
    }
}
