//! Which of Ollama's build eras (UPSTREAM.md §1) a source tree belongs to, read from the
//! tree alone: the files present decide, never the tag's name.

use std::fmt;
use std::path::Path;
use std::str::FromStr;

use git2::{ObjectType, Repository, Tree};
use serde::{Deserialize, Serialize};

/// The era labels used everywhere: recipes, `--json`, docs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Era {
    /// v0.0.x–v0.1.17: llama.cpp built by `//go:generate` lines; no gpu package.
    Zero,
    /// v0.1.18–v0.1.31: `llm/llama.cpp` submodule, gen_linux.sh, in-process libext_server.
    OneA,
    /// v0.1.32–v0.3.14: same submodule, subprocess `ollama_llama_server`.
    OneB,
    /// v0.4.0–v0.5.7: llama.cpp vendored flat into `llama/`, GNU make.
    Two,
    /// v0.5.8–v0.12.5: vendored ggml, CMake presets, no Vulkan preset; ggml-vulkan is
    /// placed from the llama.cpp commit of `Makefile.sync` (`vendored-plus-backend`).
    Three,
    /// v0.12.6–v0.2x: vendored ggml with the upstream `Vulkan` preset.
    Four,
    /// v0.30.0+: `LLAMA_CPP_VERSION` + llama-server built from a fetched llama.cpp.
    Five,
}

pub const ALL_ERAS: [Era; 7] = [
    Era::Zero,
    Era::OneA,
    Era::OneB,
    Era::Two,
    Era::Three,
    Era::Four,
    Era::Five,
];

impl Era {
    pub fn label(self) -> &'static str {
        match self {
            Era::Zero => "0",
            Era::OneA => "1a",
            Era::OneB => "1b",
            Era::Two => "2",
            Era::Three => "3",
            Era::Four => "4",
            Era::Five => "5",
        }
    }

    /// Whether any Vulkan path exists for this layout (ours or upstream's). Era 1a has one
    /// only from llama.cpp b1996 on, and era 3 only where the template's tag range says
    /// (v0.12.4/v0.12.5 are left out): the template's range and the pin decide.
    pub fn has_vulkan_path(self) -> bool {
        matches!(
            self,
            Era::OneA | Era::OneB | Era::Two | Era::Three | Era::Four | Era::Five
        )
    }

    /// Why an era has no Vulkan path, for the refusal message.
    pub fn why_no_vulkan(self) -> &'static str {
        match self {
            Era::Zero => "era 0 builds llama.cpp through //go:generate lines and has no GPU discovery to hook into",
            Era::OneA => "this llama.cpp pin predates the Vulkan backend (llama.cpp b1996)",
            _ => "",
        }
    }
}

impl fmt::Display for Era {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.label())
    }
}

impl FromStr for Era {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        ALL_ERAS
            .into_iter()
            .find(|e| e.label() == s)
            .ok_or_else(|| format!("unknown era `{s}`, expected one of 0, 1a, 1b, 2, 3, 4, 5"))
    }
}

impl Serialize for Era {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.label())
    }
}

impl<'de> Deserialize<'de> for Era {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// How the tree pins llama.cpp, exactly as the era records it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum LlamaPin {
    /// A gitlink (`llm/llama.cpp` in eras 1a/1b, `llm/llama.cpp/ggml` in era 0).
    Submodule { path: String, commit: String },
    /// `LLAMACPP_BASE_COMMIT=` in `llama/vendoring` (era 2).
    Vendoring { commit: String },
    /// `FETCH_HEAD=` in `Makefile.sync` (eras 3, 4); may be an abbreviated hash.
    FetchHead { rev: String },
    /// `LLAMA_CPP_VERSION` (era 5): a llama.cpp release tag `bNNNN`.
    Version { tag: String },
    /// Sources copied into the tree with no recorded upstream revision.
    None,
}

impl LlamaPin {
    /// The revision as recorded (full or abbreviated hash, or bNNNN), if any.
    pub fn rev(&self) -> Option<&str> {
        match self {
            LlamaPin::Submodule { commit, .. } | LlamaPin::Vendoring { commit } => Some(commit),
            LlamaPin::FetchHead { rev } => Some(rev),
            LlamaPin::Version { tag } => Some(tag),
            LlamaPin::None => None,
        }
    }
}

/// The verdict for one tree, with the files that decided it.
#[derive(Debug, Clone, Serialize)]
pub struct Classification {
    pub era: Era,
    pub llamacpp: LlamaPin,
    /// The marker files found, in the order the rules looked at them.
    pub evidence: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum EraError {
    #[error(
        "the tree of {what} matches no known Ollama layout: none of LLAMA_CPP_VERSION, \
         CMakePresets.json, llama/vendoring, llm/generate/gen_linux.sh, or era 0's llm/llama.cpp/generate*.go, \
         llm/ggml.c, llama/ggml.c, llama/binding is present"
    )]
    UnknownLayout { what: String },
    #[error("{what}: {file} is not readable as the era expects: {detail}")]
    BadMarker {
        what: String,
        file: String,
        detail: String,
    },
    #[error("reading the tree of {what}: {source}")]
    Git { what: String, source: git2::Error },
}

impl crate::error::HasKind for EraError {
    fn kind(&self) -> crate::error::Kind {
        crate::error::Kind::BadInput
    }
}

/// Reads only the handful of paths that decide the era, so classifying a tag costs a few
/// object reads and no checkout.
pub fn classify(
    repo: &Repository,
    tree: &Tree<'_>,
    what: &str,
) -> Result<Classification, EraError> {
    let git = |source| EraError::Git {
        what: what.to_string(),
        source,
    };
    let blob = |path: &str| -> Result<Option<Vec<u8>>, EraError> {
        match tree.get_path(Path::new(path)) {
            Ok(e) if e.kind() == Some(ObjectType::Blob) => {
                let obj = e.to_object(repo).map_err(git)?;
                Ok(Some(
                    obj.as_blob()
                        .map(|b| b.content().to_vec())
                        .unwrap_or_default(),
                ))
            }
            Ok(_) => Ok(None),
            Err(e) if e.code() == git2::ErrorCode::NotFound => Ok(None),
            Err(e) => Err(git(e)),
        }
    };
    let gitlink = |path: &str| -> Option<String> {
        tree.get_path(Path::new(path))
            .ok()
            .filter(|e| e.kind() == Some(ObjectType::Commit))
            .map(|e| e.id().to_string())
    };
    let exists = |path: &str| tree.get_path(Path::new(path)).is_ok();
    let bad = |file: &str, detail: String| EraError::BadMarker {
        what: what.to_string(),
        file: file.to_string(),
        detail,
    };

    if let Some(v) = blob("LLAMA_CPP_VERSION")? {
        let tag = String::from_utf8_lossy(&v).trim().to_string();
        if !is_build_tag(&tag) {
            return Err(bad(
                "LLAMA_CPP_VERSION",
                format!("expected a llama.cpp tag like b10488, found `{tag}`"),
            ));
        }
        return Ok(Classification {
            era: Era::Five,
            llamacpp: LlamaPin::Version { tag },
            evidence: vec!["LLAMA_CPP_VERSION".into()],
        });
    }
    if let Some(presets) = blob("CMakePresets.json")? {
        let json: serde_json::Value = serde_json::from_slice(&presets)
            .map_err(|e| bad("CMakePresets.json", e.to_string()))?;
        let vulkan = json["configurePresets"]
            .as_array()
            .is_some_and(|a| a.iter().any(|p| p["name"] == "Vulkan"));
        let mut evidence = vec!["CMakePresets.json".to_string()];
        if vulkan {
            evidence.push("CMakePresets.json: configure preset Vulkan".into());
        }
        let llamacpp = match blob("Makefile.sync")? {
            Some(sync) => {
                evidence.push("Makefile.sync".into());
                let rev = assignment(&sync, "FETCH_HEAD")
                    .ok_or_else(|| bad("Makefile.sync", "no FETCH_HEAD= line".into()))?;
                LlamaPin::FetchHead { rev }
            }
            None => LlamaPin::None,
        };
        let era = if vulkan { Era::Four } else { Era::Three };
        return Ok(Classification {
            era,
            llamacpp,
            evidence,
        });
    }
    for vendoring in ["llama/vendoring", "llama/vendoring.env"] {
        if let Some(v) = blob(vendoring)? {
            let commit = assignment(&v, "LLAMACPP_BASE_COMMIT")
                .ok_or_else(|| bad(vendoring, "no LLAMACPP_BASE_COMMIT= line".into()))?;
            return Ok(Classification {
                era: Era::Two,
                llamacpp: LlamaPin::Vendoring { commit },
                evidence: vec![vendoring.into()],
            });
        }
    }
    if exists("llm/generate/gen_linux.sh") {
        let commit = gitlink("llm/llama.cpp").ok_or_else(|| {
            bad(
                "llm/llama.cpp",
                "gen_linux.sh is present but llm/llama.cpp is not a submodule".into(),
            )
        })?;
        let mut evidence = vec![
            "llm/generate/gen_linux.sh".into(),
            "llm/llama.cpp (submodule)".into(),
        ];
        // 1a links an in-process libext_server; 1b builds the ollama_llama_server binary.
        let ext = blob("llm/ext_server/CMakeLists.txt")?.unwrap_or_default();
        let era = if contains(&ext, b"set(TARGET ext_server)") {
            evidence.push("llm/ext_server/CMakeLists.txt: TARGET ext_server".into());
            Era::OneA
        } else {
            Era::OneB
        };
        return Ok(Classification {
            era,
            llamacpp: LlamaPin::Submodule {
                path: "llm/llama.cpp".into(),
                commit,
            },
            evidence,
        });
    }
    // Era 0: llama.cpp compiled by cgo or //go:generate from files in llm/ or llama/.
    for marker in ERA0_MARKERS {
        if exists(marker) {
            let llamacpp =
                match gitlink("llm/llama.cpp/gguf").or_else(|| gitlink("llm/llama.cpp/ggml")) {
                    Some(commit) => LlamaPin::Submodule {
                        path: "llm/llama.cpp/gguf".into(),
                        commit,
                    },
                    None => LlamaPin::None,
                };
            return Ok(Classification {
                era: Era::Zero,
                llamacpp,
                evidence: vec![marker.to_string()],
            });
        }
    }
    Err(EraError::UnknownLayout {
        what: what.to_string(),
    })
}

const ERA0_MARKERS: [&str; 5] = [
    "llm/llama.cpp/generate_linux.go",
    "llm/llama.cpp/generate.go",
    "llm/ggml.c",
    "llama/ggml.c",
    "llama/binding/binding.cpp",
];

/// `bNNNN`, the form of llama.cpp release tags.
pub fn is_build_tag(s: &str) -> bool {
    s.len() > 1 && s.starts_with('b') && s[1..].bytes().all(|b| b.is_ascii_digit())
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

/// The value of a `NAME=value` line (Makefile or env style).
fn assignment(text: &[u8], name: &str) -> Option<String> {
    String::from_utf8_lossy(text).lines().find_map(|l| {
        let (k, v) = l.trim().split_once('=')?;
        (k.trim() == name)
            .then(|| v.trim().to_string())
            .filter(|v| !v.is_empty())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_round_trip() {
        for e in ALL_ERAS {
            assert_eq!(e.label().parse::<Era>().unwrap(), e);
        }
        assert!("6".parse::<Era>().unwrap_err().contains("expected one of"));
    }

    #[test]
    fn assignment_reads_makefile_and_env_lines() {
        assert_eq!(
            assignment(b"X=1\nFETCH_HEAD=ec98e2002\n", "FETCH_HEAD").as_deref(),
            Some("ec98e2002")
        );
        assert_eq!(
            assignment(b"LLAMACPP_BASE_COMMIT=abc", "LLAMACPP_BASE_COMMIT").as_deref(),
            Some("abc")
        );
        assert_eq!(assignment(b"FETCH_HEAD=\n", "FETCH_HEAD"), None);
    }
}
