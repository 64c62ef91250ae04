//! A patch series on disk: `patches/<name>/series` (order), `SHA256SUMS` (one line per
//! patch, `sha256sum` format) and the patches. A recipe pins a series by the SHA-256 of its
//! SHA256SUMS file, so editing a patch without refreshing both is caught.

use std::fs;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SeriesError {
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

#[derive(Debug, Clone)]
pub struct Series {
    pub name: String,
    pub dir: PathBuf,
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
    fs::read_to_string(path).map_err(|e| SeriesError::Unreadable {
        file: path.to_path_buf(),
        why: e.to_string(),
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
        for (i, line) in read(&series_file)?.lines().enumerate() {
            let entry = line.split('#').next().unwrap_or("").trim();
            if entry.is_empty() {
                continue;
            }
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
            let (hex, name) = line
                .split_once("  ")
                .filter(|(h, n)| {
                    h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit()) && !n.is_empty()
                })
                .ok_or(SeriesError::BadSumLine {
                    file: sums_file.clone(),
                    line: i + 1,
                })?;
            sums.push((
                name.trim_start_matches('*').to_string(),
                hex.to_ascii_lowercase(),
            ));
        }
        for (name, _) in &sums {
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
                .find(|(n, _)| n == p)
                .map(|(_, h)| h.clone())
                .ok_or_else(|| SeriesError::NoSum {
                    sums: sums_file.clone(),
                    patch: p.clone(),
                })?;
            let path = dir.join(p);
            let bytes = fs::read(&path).map_err(|e| SeriesError::Unreadable {
                file: path.clone(),
                why: e.to_string(),
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
            patches,
            hash: sha256_hex(sums_text.as_bytes()),
        })
    }

    /// Rewrites SHA256SUMS from the patches on disk (atomically) and returns the new pin.
    pub fn refresh_sums(dir: &Path) -> Result<String, SeriesError> {
        let series_file = dir.join("series");
        let mut out = String::new();
        for (i, line) in read(&series_file)?.lines().enumerate() {
            let entry = line.split('#').next().unwrap_or("").trim();
            if entry.is_empty() {
                continue;
            }
            let path = dir.join(entry);
            let bytes = fs::read(&path).map_err(|_| SeriesError::MissingPatch {
                file: series_file.clone(),
                line: i + 1,
                entry: entry.into(),
            })?;
            out.push_str(&format!("{}  {}\n", sha256_hex(&bytes), entry));
        }
        crate::fsutil::write_atomic(&dir.join("SHA256SUMS"), out.as_bytes()).map_err(|e| {
            SeriesError::Unreadable {
                file: dir.join("SHA256SUMS"),
                why: e.to_string(),
            }
        })?;
        Ok(sha256_hex(out.as_bytes()))
    }
}
