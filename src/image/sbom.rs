//! The image's SBOM: an SPDX 2.3 JSON document of what went into it — the Ollama and
//! llama.cpp sources (commits), our patch series (their pinned hashes and the commits
//! they made), the Go modules the tree's go.sum pins, the dist binary, the krunkit
//! variant's Mesa build and the runtime's Debian packages with their exact versions.
//!
//! The document is a pure function of those inputs (keys sorted, `created` from
//! SOURCE_DATE_EPOCH, the namespace derived from the content), so two builds of the same
//! inputs write the same bytes and an image's label can carry its SHA-256.

use serde_json::{json, Value};

use super::dpkg::Installed;
use super::gosum::Module;
use crate::contract::Manifest;
use crate::recipe::model::Recipe;

/// Where SPDX documents of this tool live (the namespace is this plus a content hash).
const NAMESPACE: &str = "https://github.com/ollama-vulkan/ollama-vulkan/spdx";

/// What the SBOM describes.
pub struct SbomInput<'a> {
    /// The image's name (`localhost/ollama-vulkan:v0.24.0`).
    pub image: &'a str,
    /// `linux/amd64`.
    pub platform: String,
    pub variant: &'a str,
    /// SOURCE_DATE_EPOCH (the Ollama commit's time).
    pub created: i64,
    pub recipe: &'a Recipe,
    /// The dist's manifest (from-dist images): commits and series as the build applied
    /// them.
    pub manifest: Option<&'a Manifest>,
    pub go_modules: &'a [Module],
    pub debs: &'a Installed,
    /// Debian suite of the runtime base (for the packages' purls), when known.
    pub suite: Option<&'a str>,
    /// The krunkit variant's Venus driver.
    pub mesa: Option<&'a crate::mesa::MesaVenus>,
    /// SHA-256 of the dist's `bin/ollama`.
    pub binary_sha256: Option<String>,
}

/// An SPDXID from a kind and a free-form name: `SPDXRef-KIND-N-name` with the name's
/// characters outside SPDX's `[A-Za-z0-9.-]` replaced (N keeps it unique).
fn id(kind: &str, n: usize, name: &str) -> String {
    let clean: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' || c == '-' {
                c
            } else {
                '-'
            }
        })
        .take(64)
        .collect();
    format!("SPDXRef-{kind}-{n}-{clean}")
}

/// purl percent-encoding of a version (Debian epochs hold `:`; `+` and `~` too).
fn purl_escape(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b".-_".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

fn purl(locator: String) -> Value {
    json!({
        "referenceCategory": "PACKAGE-MANAGER",
        "referenceType": "purl",
        "referenceLocator": locator,
    })
}

fn git_location(url: &str, commit: &str) -> String {
    format!("git+{url}@{commit}")
}

/// The SPDX 2.3 document.
pub fn document(inp: &SbomInput<'_>) -> Value {
    let r = inp.recipe;
    let m = inp.manifest;
    let tag = r.ollama.tag.clone().unwrap_or_else(|| "dev".into());
    let mut packages: Vec<Value> = Vec::new();
    let mut rels: Vec<Value> = Vec::new();
    let rel = |a: &str, t: &str, b: &str| json!({"spdxElementId": a, "relationshipType": t, "relatedSpdxElement": b});
    let image_id = "SPDXRef-Image".to_string();
    packages.push(json!({
        "SPDXID": image_id,
        "name": inp.image,
        "versionInfo": tag,
        "primaryPackagePurpose": "CONTAINER",
        "downloadLocation": "NOASSERTION",
        "filesAnalyzed": false,
        "description": format!(
            "Ollama {tag} with the Vulkan backend ({} variant, {}), assembled by ollama-vulkan {}",
            inp.variant, inp.platform, env!("CARGO_PKG_VERSION")
        ),
    }));
    rels.push(rel("SPDXRef-DOCUMENT", "DESCRIBES", &image_id));

    // The sources, at their commits.
    let ollama_commit = m
        .map(|m| m.ollama_commit.clone())
        .or_else(|| r.ollama.commit.clone());
    let ollama_id = "SPDXRef-Source-ollama".to_string();
    packages.push(json!({
        "SPDXID": ollama_id,
        "name": "ollama",
        "versionInfo": ollama_commit.clone().unwrap_or_else(|| "NOASSERTION".into()),
        "sourceInfo": format!("tag {tag}"),
        "primaryPackagePurpose": "SOURCE",
        "downloadLocation": ollama_commit
            .as_deref()
            .map(|c| git_location(&r.ollama.url, c))
            .unwrap_or_else(|| "NOASSERTION".into()),
        "filesAnalyzed": false,
    }));
    let llama_commit = m
        .and_then(|m| m.llamacpp_commit.clone())
        .or_else(|| r.llamacpp.commit.clone());
    let llama_id = "SPDXRef-Source-llama.cpp".to_string();
    let llama_url = r
        .llamacpp
        .url
        .clone()
        .unwrap_or_else(|| "https://github.com/ggml-org/llama.cpp".into());
    if let Some(c) = &llama_commit {
        let version = m
            .and_then(|m| m.llamacpp_version.clone())
            .or_else(|| r.llamacpp.version.clone());
        packages.push(json!({
            "SPDXID": llama_id,
            "name": "llama.cpp",
            "versionInfo": c,
            "sourceInfo": version.map(|v| format!("release {v}")).unwrap_or_else(|| "a commit".into()),
            "primaryPackagePurpose": "SOURCE",
            "downloadLocation": git_location(&llama_url, c),
            "filesAnalyzed": false,
        }));
    }

    // The dist: what the sources built into.
    let binary_id = "SPDXRef-Binary-ollama".to_string();
    let mut binary = json!({
        "SPDXID": binary_id,
        "name": "ollama (ollama-vulkan build)",
        "versionInfo": tag,
        "primaryPackagePurpose": "APPLICATION",
        "downloadLocation": "NOASSERTION",
        "filesAnalyzed": false,
    });
    if let Some(h) = &inp.binary_sha256 {
        binary["checksums"] = json!([{"algorithm": "SHA256", "checksumValue": h}]);
        binary["comment"] = json!("the checksum is /usr/bin/ollama's");
    }
    if let Some(m) = m {
        binary["sourceInfo"] = json!(format!("dist input key {}", m.input_key));
    }
    packages.push(binary);
    rels.push(rel(&image_id, "CONTAINS", &binary_id));
    rels.push(rel(&binary_id, "GENERATED_FROM", &ollama_id));
    if llama_commit.is_some() {
        rels.push(rel(&binary_id, "GENERATED_FROM", &llama_id));
    }

    // Our patch series: the recipe's pin, and the commits they made on the pins.
    let series: Vec<SeriesRow> = match m {
        Some(m) => m
            .series
            .iter()
            .map(|s| {
                (
                    s.name.clone(),
                    s.repo.clone(),
                    s.sha256.clone(),
                    s.patches.iter().map(|p| p.patch.clone()).collect(),
                    s.commits.clone(),
                )
            })
            .collect(),
        None => r
            .series
            .iter()
            .map(|s| {
                (
                    s.name.clone(),
                    serde_json::to_value(s.repo)
                        .ok()
                        .and_then(|v| v.as_str().map(String::from))
                        .unwrap_or_default(),
                    Some(s.sha256.clone()),
                    Vec::new(),
                    Vec::new(),
                )
            })
            .collect(),
    };
    for (i, (name, repo, sha, patches, commits)) in series.iter().enumerate() {
        let sid = id("Series", i, name);
        let mut p = json!({
            "SPDXID": sid,
            "name": format!("ollama-vulkan patch series {name}"),
            "versionInfo": sha.as_deref().map(|s| &s[..s.len().min(12)]).unwrap_or("unpinned"),
            "primaryPackagePurpose": "SOURCE",
            "downloadLocation": "NOASSERTION",
            "filesAnalyzed": false,
            "description": format!(
                "patches/{name} applied to {repo}{}{}",
                if patches.is_empty() { String::new() } else { format!(": {}", patches.join(", ")) },
                if commits.is_empty() { String::new() } else { format!("; commits {}", commits.join(" ")) }
            ),
        });
        if let Some(s) = sha.as_deref().filter(|s| is_sha256(s)) {
            p["checksums"] = json!([{"algorithm": "SHA256", "checksumValue": s}]);
            p["comment"] =
                json!("the checksum is the series' pin in the recipe (SHA-256 of its SHA256SUMS)");
        }
        packages.push(p);
        let target = if repo.contains("llama") {
            &llama_id
        } else {
            &ollama_id
        };
        if target == &ollama_id || llama_commit.is_some() {
            rels.push(rel(&sid, "PATCH_APPLIED", target));
        }
        rels.push(rel(&binary_id, "GENERATED_FROM", &sid));
    }

    // The Go modules the tree's go.sum pins.
    for (i, g) in inp.go_modules.iter().enumerate() {
        let gid = id("Go", i, &g.path);
        packages.push(json!({
            "SPDXID": gid,
            "name": g.path,
            "versionInfo": g.version,
            "downloadLocation": "NOASSERTION",
            "filesAnalyzed": false,
            "externalRefs": [purl(format!("pkg:golang/{}@{}", g.path, purl_escape(&g.version)))],
            "comment": format!("go.sum {}", g.h1),
        }));
        rels.push(rel(&ollama_id, "DEPENDS_ON", &gid));
    }

    // The krunkit variant's Venus driver (Debian's Mesa + our series).
    if let Some(v) = inp.mesa {
        let mid = "SPDXRef-Mesa-venus".to_string();
        let mut p = json!({
            "SPDXID": mid,
            "name": "libvulkan_virtio (Mesa Venus driver, ollama-vulkan build)",
            "versionInfo": v.version,
            "primaryPackagePurpose": "LIBRARY",
            "downloadLocation": "NOASSERTION",
            "filesAnalyzed": false,
            "description": format!("installed at {} in place of Debian's (diverted)", v.driver_install_path.display()),
        });
        if is_sha256(&v.driver_sha256) {
            p["checksums"] = json!([{"algorithm": "SHA256", "checksumValue": v.driver_sha256}]);
        }
        packages.push(p);
        rels.push(rel(&image_id, "CONTAINS", &mid));
    }

    // The runtime's Debian packages, exactly as installed.
    for (i, d) in inp.debs.values().enumerate() {
        let did = id("Deb", i, &d.name);
        let mut q = format!("arch={}", d.arch);
        if let Some(s) = inp.suite {
            q.push_str(&format!("&distro=debian-{s}"));
        }
        let mut p = json!({
            "SPDXID": did,
            "name": d.name,
            "versionInfo": d.version,
            "downloadLocation": "NOASSERTION",
            "filesAnalyzed": false,
            "supplier": "Organization: Debian",
            "externalRefs": [purl(format!("pkg:deb/debian/{}@{}?{q}", d.name, purl_escape(&d.version)))],
        });
        if let Some(s) = &d.source {
            p["sourceInfo"] = json!(format!("built from the Debian source package {s}"));
        }
        packages.push(p);
        rels.push(rel(&image_id, "CONTAINS", &did));
    }

    let body = json!({"packages": packages, "relationships": rels});
    let digest = crate::patch::series::sha256_hex(body.to_string().as_bytes());
    let name = format!("{}-{}-{}", inp.image, inp.variant, inp.platform);
    json!({
        "spdxVersion": "SPDX-2.3",
        "dataLicense": "CC0-1.0",
        "SPDXID": "SPDXRef-DOCUMENT",
        "name": name,
        "documentNamespace": format!("{NAMESPACE}/{}-{}", id("", 0, &name).trim_start_matches("SPDXRef--0-"), &digest[..32]),
        "documentDescribes": [image_id],
        "creationInfo": {
            "created": super::rfc3339(inp.created),
            "creators": [format!("Tool: ollama-vulkan-{}", env!("CARGO_PKG_VERSION"))],
            "comment": "Debian packages: the runtime root's /var/lib/dpkg/status; Go modules: the Ollama tree's go.sum (every module it pins, a superset of what the binary links).",
        },
        "packages": body["packages"],
        "relationships": body["relationships"],
    })
}

/// A series: name, repo, pin, patches, commits.
type SeriesRow = (String, String, Option<String>, Vec<String>, Vec<String>);

fn is_sha256(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|c| c.is_ascii_hexdigit())
}

/// The document as written to disk.
pub fn to_bytes(doc: &Value) -> Vec<u8> {
    let mut b = serde_json::to_vec_pretty(doc).expect("a JSON value serialises");
    b.push(b'\n');
    b
}

/// The SBOM's file name for an image: `NAME-VARIANT-ARCH.spdx.json` from the tag's last
/// component (`ollama-vulkan_v0.24.0-linux-amd64.spdx.json`).
pub fn file_name(image: &str, variant: &str, arch: crate::target::Arch) -> String {
    let last = image.rsplit('/').next().unwrap_or(image);
    let clean: String = last
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "._-".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect();
    format!("{clean}-{variant}-{}.spdx.json", arch.name())
}

#[cfg(test)]
mod tests {
    #[test]
    fn ids_and_purls_hold_only_their_characters() {
        assert_eq!(super::id("Deb", 3, "g++"), "SPDXRef-Deb-3-g--");
        assert_eq!(super::purl_escape("1:2.3+dfsg~1"), "1%3A2.3%2Bdfsg%7E1");
        assert_eq!(
            super::file_name(
                "localhost/ollama-vulkan:v0.24.0",
                "linux",
                crate::target::Arch::Amd64
            ),
            "ollama-vulkan_v0.24.0-linux-amd64.spdx.json"
        );
    }
}
