//! A patch series on disk: `patches/<name>/series` (order), `SHA256SUMS` (one line per
//! patch, `sha256sum` format) and the patches. A recipe pins a series by the SHA-256 of its
//! SHA256SUMS file, so editing a patch without refreshing both is caught.

use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SeriesError {
    #[error("{file}:{line}: `# target: {value}` names no repository\n  help: write `# target: ollama` or `# target: llama.cpp`")]
    BadTarget {
        file: PathBuf,
        line: usize,
        value: String,
    },
    #[error("series directory {0} does not exist")]
    Missing(PathBuf),
    #[error("{file}: {why}")]
    Unreadable { file: PathBuf, why: String },
    #[error("{file}:{line}: `{entry}` is listed but the file does not exist")]
    MissingPatch {
        file: PathBuf,
        line: usize,
        entry: String,
    },
    #[error("{file}:{line}: malformed line; expected `<64 hex digits>  <patch file name>`")]
    BadSumLine { file: PathBuf, line: usize },
    #[error("{file}:{line}: `{entry}` is not a patch file name: {why}\n  help: list plain file names of patches inside the series directory, one a line")]
    BadEntry {
        file: PathBuf,
        line: usize,
        entry: String,
        why: String,
    },
    #[error("{file}:{line}: {patch} is listed twice (first on line {first})\n  help: keep one line per patch (`sha256sum $(cat series) > SHA256SUMS` writes it)")]
    DuplicateSum {
        file: PathBuf,
        line: usize,
        first: usize,
        patch: String,
    },
    #[error("{sums}: {patch} is in the series but has no checksum line")]
    NoSum { sums: PathBuf, patch: String },
    #[error("{sums}: {patch} has a checksum line but is not in the series file")]
    ExtraSum { sums: PathBuf, patch: String },
    #[error("{patch}: its SHA-256 is {actual} but SHA256SUMS says {expected}: the patch was edited after the series was pinned")]
    PatchChanged {
        patch: PathBuf,
        expected: String,
        actual: String,
    },
}

impl crate::error::HasKind for SeriesError {
    fn kind(&self) -> crate::error::Kind {
        crate::error::Kind::BadInput
    }
}

#[derive(Debug, Clone)]
pub struct Series {
    pub name: String,
    pub dir: PathBuf,
    /// The repository the series patches, from a `# target: NAME` line in `series`.
    pub target: Option<crate::source::RepoName>,
    /// Patch file names in application order.
    pub patches: Vec<String>,
    /// SHA-256 of the SHA256SUMS file: the value a recipe pins.
    pub hash: String,
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    let mut h = Sha256::new();
    h.update(bytes);
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

fn read(path: &Path) -> Result<String, SeriesError> {
    crate::safe::read_text(path, crate::safe::MAX_TEXT).map_err(|e| SeriesError::Unreadable {
        file: path.to_path_buf(),
        why: e.to_string(),
    })
}

/// A series entry is a plain file name inside the series directory: never a path.
fn check_entry(file: &Path, line: usize, entry: &str) -> Result<(), SeriesError> {
    crate::safe::file_name(entry)
        .and_then(|_| {
            if entry == "series" || entry == "SHA256SUMS" {
                Err(format!("`{entry}` is the series' own file"))
            } else {
                Ok(())
            }
        })
        .map_err(|why| SeriesError::BadEntry {
            file: file.to_path_buf(),
            line,
            entry: crate::safe::show(entry),
            why,
        })
}

impl Series {
    /// Loads and verifies a series: every listed patch exists and matches SHA256SUMS.
    pub fn load(dir: &Path) -> Result<Series, SeriesError> {
        if !dir.is_dir() {
            return Err(SeriesError::Missing(dir.to_path_buf()));
        }
        let series_file = dir.join("series");
        let sums_file = dir.join("SHA256SUMS");
        let mut patches = Vec::new();
        let mut target = None;
        for (i, line) in read(&series_file)?.lines().enumerate() {
            if let Some(t) = line
                .trim()
                .strip_prefix('#')
                .map(str::trim)
                .and_then(|c| c.strip_prefix("target:"))
            {
                target = Some(t.trim().parse().map_err(|_| SeriesError::BadTarget {
                    file: series_file.clone(),
                    line: i + 1,
                    value: t.trim().to_string(),
                })?);
                continue;
            }
            let entry = line.split('#').next().unwrap_or("").trim();
            if entry.is_empty() {
                continue;
            }
            check_entry(&series_file, i + 1, entry)?;
            if !dir.join(entry).is_file() {
                return Err(SeriesError::MissingPatch {
                    file: series_file,
                    line: i + 1,
                    entry: entry.into(),
                });
            }
            patches.push(entry.to_string());
        }
        let sums_text = read(&sums_file)?;
        let mut sums = Vec::new();
        for (i, line) in sums_text.lines().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            // `sha256sum` writes `HASH  name` (text mode) or `HASH *name` (-b).
            let (hex, name) = line
                .split_once(' ')
                .and_then(|(h, rest)| {
                    let n = rest.strip_prefix(' ').or_else(|| rest.strip_prefix('*'))?;
                    Some((h, n))
                })
                .filter(|(h, n)| {
                    h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit()) && !n.is_empty()
                })
                .ok_or(SeriesError::BadSumLine {
                    file: sums_file.clone(),
                    line: i + 1,
                })?;
            check_entry(&sums_file, i + 1, name)?;
            if let Some((_, _, first)) = sums.iter().find(|(n, _, _)| n == name) {
                return Err(SeriesError::DuplicateSum {
                    file: sums_file.clone(),
                    line: i + 1,
                    first: *first,
                    patch: name.to_string(),
                });
            }
            sums.push((name.to_string(), hex.to_ascii_lowercase(), i + 1));
        }
        for (name, _, _) in &sums {
            if !patches.contains(name) {
                return Err(SeriesError::ExtraSum {
                    sums: sums_file,
                    patch: name.clone(),
                });
            }
        }
        for p in &patches {
            let expected = sums
                .iter()
                .find(|(n, _, _)| n == p)
                .map(|(_, h, _)| h.clone())
                .ok_or_else(|| SeriesError::NoSum {
                    sums: sums_file.clone(),
                    patch: p.clone(),
                })?;
            let path = dir.join(p);
            let bytes = crate::safe::read_regular(&path, crate::safe::MAX_PATCH).map_err(|e| {
                SeriesError::Unreadable {
                    file: path.clone(),
                    why: e.to_string(),
                }
            })?;
            let actual = sha256_hex(&bytes);
            if actual != expected {
                return Err(SeriesError::PatchChanged {
                    patch: path,
                    expected,
                    actual,
                });
            }
        }
        Ok(Series {
            name: dir
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
            dir: dir.to_path_buf(),
            target,
            patches,
            hash: sha256_hex(sums_text.as_bytes()),
        })
    }

    /// Reads and parses every patch in order, requiring a valid `Upstream-Status:`.
    pub fn parse_patches(&self) -> Result<Vec<super::parse::Patch>, super::parse::PatchError> {
        use super::parse::{check_upstream_status, parse, PatchError};
        let mut out = Vec::new();
        for name in &self.patches {
            let path = self.dir.join(name);
            let shown = path.display().to_string();
            let bytes = crate::safe::read_regular(&path, crate::safe::MAX_PATCH).map_err(|e| {
                PatchError {
                    patch: shown.clone(),
                    line: 0,
                    why: e.to_string(),
                    help: "check the series directory".into(),
                }
            })?;
            let mut p = parse(&shown, &bytes)?;
            match &p.upstream_status {
                None => {
                    return Err(PatchError {
                        patch: shown,
                        line: 1,
                        why: "no `Upstream-Status:` header".into(),
                        help: "add a line `Upstream-Status: Pending` (or Submitted [where], Backport [where], Inappropriate [reason]) to the description".into(),
                    })
                }
                Some(v) => check_upstream_status(v).map_err(|why| PatchError {
                    patch: shown.clone(),
                    line: String::from_utf8_lossy(&bytes)
                        .lines()
                        .position(|l| l.starts_with("Upstream-Status:"))
                        .map_or(1, |i| i + 1),
                    why,
                    help: "use one of the Upstream-Status forms of Yocto's patch guidelines".into(),
                })?,
            }
            p.name = name.clone();
            out.push(p);
        }
        Ok(out)
    }

    /// SHA256SUMS's text for these (name, contents) patches, in order, as `sha256sum` writes it.
    pub fn sums_text<'a>(patches: impl IntoIterator<Item = (&'a str, &'a [u8])>) -> String {
        patches
            .into_iter()
            .map(|(name, bytes)| format!("{}  {}\n", sha256_hex(bytes), name))
            .collect()
    }

    /// Rewrites SHA256SUMS from the patches on disk (atomically) and returns the new pin.
    pub fn refresh_sums(dir: &Path) -> Result<String, SeriesError> {
        let series_file = dir.join("series");
        let mut patches = Vec::new();
        for (i, line) in read(&series_file)?.lines().enumerate() {
            let entry = line.split('#').next().unwrap_or("").trim();
            if entry.is_empty() || entry.starts_with('#') {
                continue;
            }
            check_entry(&series_file, i + 1, entry)?;
            let path = dir.join(entry);
            let bytes = crate::safe::read_regular(&path, crate::safe::MAX_PATCH).map_err(|_| {
                SeriesError::MissingPatch {
                    file: series_file.clone(),
                    line: i + 1,
                    entry: entry.into(),
                }
            })?;
            patches.push((entry.to_string(), bytes));
        }
        let out = Series::sums_text(patches.iter().map(|(n, b)| (n.as_str(), b.as_slice())));
        crate::fsutil::write_atomic(&dir.join("SHA256SUMS"), out.as_bytes()).map_err(|e| {
            SeriesError::Unreadable {
                file: dir.join("SHA256SUMS"),
                why: e.to_string(),
            }
        })?;
        Ok(sha256_hex(out.as_bytes()))
    }
}

/// The series under `patches_dir` (directories with a `series` file), by name.
pub fn discover(patches_dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(patches_dir)
        .map(|rd| {
            rd.flatten()
                .filter(|e| e.path().join("series").is_file())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}
