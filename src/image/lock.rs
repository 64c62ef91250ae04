//! The package lock: the exact Debian package versions each runtime root was made of.
//! Debian's mirror serves only the current version of a package, so a version cannot be
//! pinned by asking for it; it is pinned by recording. `image` compares the root it
//! ships with the lock: no entry yet is recorded, drift (a base remade after a point
//! release) is a warning listing old → new and the lock is updated, and `--locked` makes
//! drift (or a missing entry) an error that writes nothing.
//!
//! The lock (`recipes/base/packages.lock`, beside the package lists it resolves) is
//! meant to be committed. It is untrusted input like any file a contributor can change:
//! every name, version and architecture is checked as dpkg's own are.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::dpkg::{self, Installed};

pub const SCHEMA: u32 = 1;
pub const MAX_LOCK: u64 = 4 << 20;

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Lock {
    pub schema: u32,
    #[serde(default, rename = "base")]
    pub bases: Vec<LockedBase>,
}

/// One runtime root: the base image it stands for, its architecture and its packages
/// (`name:arch` → version).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct LockedBase {
    pub image: String,
    pub arch: String,
    pub packages: BTreeMap<String, String>,
}

#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error("{file}: {why}\n  help: {help}")]
    Bad {
        file: PathBuf,
        why: String,
        help: String,
    },
    #[error("{file}: the runtime root of {image} ({arch}) differs from the lock, and --locked forbids updating it:\n{changes}\n  help: {help}")]
    Drift {
        file: PathBuf,
        image: String,
        arch: String,
        changes: String,
        help: String,
    },
    #[error("writing {file}: {source}")]
    Write {
        file: PathBuf,
        source: std::io::Error,
    },
}

impl crate::error::HasKind for LockError {
    fn kind(&self) -> crate::error::Kind {
        match self {
            LockError::Bad { .. } | LockError::Drift { .. } => crate::error::Kind::BadInput,
            LockError::Write { .. } => crate::error::Kind::Failure,
        }
    }
}

/// One package's change between the lock and the root.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Change {
    pub package: String,
    /// None: new in the root.
    pub old: Option<String>,
    /// None: gone from the root.
    pub new: Option<String>,
}

impl std::fmt::Display for Change {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} {} → {}",
            self.package,
            self.old.as_deref().unwrap_or("(none)"),
            self.new.as_deref().unwrap_or("(none)")
        )
    }
}

/// What the comparison found, for reports.
#[derive(Debug, Clone, Serialize)]
pub struct LockReport {
    pub file: PathBuf,
    /// `recorded` (no entry before), `unchanged`, `updated` (drift, warned).
    pub status: String,
    pub changes: Vec<Change>,
}

/// Reads the lock; a missing file is an empty lock.
pub fn read(file: &Path) -> Result<Lock, LockError> {
    let bad = |why: String, help: &str| LockError::Bad {
        file: file.to_path_buf(),
        why,
        help: help.into(),
    };
    let remake = "fix or delete the file (the next `image` records the versions it uses), or restore it from git";
    match std::fs::symlink_metadata(file) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Ok(Lock {
                schema: SCHEMA,
                bases: Vec::new(),
            })
        }
        _ => {}
    }
    let text = crate::safe::read_text(file, MAX_LOCK).map_err(|e| bad(e.to_string(), remake))?;
    let lock: Lock = toml::from_str(&text).map_err(|e| {
        let line = e
            .span()
            .map(|s| text[..s.start.min(text.len())].matches('\n').count() + 1);
        bad(
            format!(
                "{}{}",
                line.map(|l| format!("line {l}: ")).unwrap_or_default(),
                e.message()
            ),
            remake,
        )
    })?;
    if lock.schema != SCHEMA {
        return Err(bad(
            format!(
                "schema {} is not the schema {SCHEMA} this ollama-vulkan reads",
                lock.schema
            ),
            remake,
        ));
    }
    let mut seen = std::collections::BTreeSet::new();
    for b in &lock.bases {
        crate::safe::image_ref(&b.image).map_err(|w| bad(w, remake))?;
        dpkg::arch(&b.arch).map_err(|w| bad(format!("base {}: {w}", b.image), remake))?;
        if !seen.insert((b.image.clone(), b.arch.clone())) {
            return Err(bad(
                format!("base {} ({}) is locked twice", b.image, b.arch),
                remake,
            ));
        }
        for (k, v) in &b.packages {
            let (name, a) = k.split_once(':').unwrap_or((k, ""));
            crate::safe::package_name(name)
                .and_then(|_| dpkg::arch(a))
                .map_err(|w| {
                    bad(
                        format!(
                            "base {}: `{}` is not NAME:ARCH ({w})",
                            b.image,
                            crate::safe::show(k)
                        ),
                        remake,
                    )
                })?;
            dpkg::version(v).map_err(|w| bad(format!("base {}: {k}: {w}", b.image), remake))?;
        }
    }
    Ok(lock)
}

/// The differences from `locked` to `now`, sorted by package.
pub fn diff(locked: &BTreeMap<String, String>, now: &BTreeMap<String, String>) -> Vec<Change> {
    let mut out = Vec::new();
    for (k, v) in locked {
        match now.get(k) {
            Some(n) if n == v => {}
            n => out.push(Change {
                package: k.clone(),
                old: Some(v.clone()),
                new: n.cloned(),
            }),
        }
    }
    for (k, n) in now {
        if !locked.contains_key(k) {
            out.push(Change {
                package: k.clone(),
                old: None,
                new: Some(n.clone()),
            });
        }
    }
    out.sort_by(|a, b| a.package.cmp(&b.package));
    out
}

/// Compares the root's packages with the lock's entry for (`image`, `arch`): records a
/// missing entry, warns on drift and updates it, or (with `locked`) refuses both
/// without writing.
pub fn check(
    file: &Path,
    image: &str,
    arch: &str,
    installed: &Installed,
    locked: bool,
) -> Result<LockReport, LockError> {
    let mut lock = read(file)?;
    let now: BTreeMap<String, String> = installed
        .iter()
        .map(|(k, p)| (k.clone(), p.version.clone()))
        .collect();
    let pos = lock
        .bases
        .iter()
        .position(|b| b.image == image && b.arch == arch);
    let (status, changes) = match pos {
        None => {
            if locked {
                return Err(LockError::Drift {
                    file: file.to_path_buf(),
                    image: image.into(),
                    arch: arch.into(),
                    changes: "    (the lock has no entry for it)".into(),
                    help: "run once without --locked to record it, and commit the lock".into(),
                });
            }
            lock.bases.push(LockedBase {
                image: image.into(),
                arch: arch.into(),
                packages: now.clone(),
            });
            ("recorded", Vec::new())
        }
        Some(i) => {
            let changes = diff(&lock.bases[i].packages, &now);
            if changes.is_empty() {
                return Ok(LockReport {
                    file: file.to_path_buf(),
                    status: "unchanged".into(),
                    changes,
                });
            }
            if locked {
                return Err(LockError::Drift {
                    file: file.to_path_buf(),
                    image: image.into(),
                    arch: arch.into(),
                    changes: changes
                        .iter()
                        .map(|c| format!("    {c}"))
                        .collect::<Vec<_>>()
                        .join("\n"),
                    help: "Debian's mirror serves only current versions: accept the new ones (run without --locked and commit the lock), or build over the base the lock was made from (its root tarball in the cache, or its image)".into(),
                });
            }
            lock.bases[i].packages = now.clone();
            ("updated", changes)
        }
    };
    lock.bases
        .sort_by(|a, b| (&a.image, &a.arch).cmp(&(&b.image, &b.arch)));
    let text = format!(
        "# The exact Debian package versions of the runtime roots images were made of,\n\
         # written by ollama-vulkan `image` (docs/provenance.md). Commit it: `image` warns\n\
         # when a root drifts from it, and `image --locked` refuses.\n{}",
        toml::to_string(&lock).expect("the lock serialises")
    );
    crate::fsutil::write_atomic(file, text.as_bytes()).map_err(|source| LockError::Write {
        file: file.to_path_buf(),
        source,
    })?;
    Ok(LockReport {
        file: file.to_path_buf(),
        status: status.into(),
        changes,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn installed(pairs: &[(&str, &str)]) -> Installed {
        pairs
            .iter()
            .map(|(n, v)| {
                (
                    format!("{n}:amd64"),
                    dpkg::Package {
                        name: n.to_string(),
                        version: v.to_string(),
                        arch: "amd64".into(),
                        source: None,
                    },
                )
            })
            .collect()
    }

    #[test]
    fn recorded_then_unchanged_then_drift_warned_or_refused() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("packages.lock");
        let img = "localhost/ollama-vulkan-runtime:trixie";
        let a = installed(&[("libc6", "2.41-12"), ("libvulkan1", "1.4.309.0-1")]);
        assert!(check(&f, img, "amd64", &a, true)
            .unwrap_err()
            .to_string()
            .contains("no entry"));
        assert!(!f.exists(), "--locked writes nothing");
        assert_eq!(
            check(&f, img, "amd64", &a, false).unwrap().status,
            "recorded"
        );
        assert_eq!(
            check(&f, img, "amd64", &a, true).unwrap().status,
            "unchanged"
        );
        let b = installed(&[("libc6", "2.41-12+deb13u1"), ("zlib1g", "1:1.3")]);
        let before = std::fs::read(&f).unwrap();
        let e = check(&f, img, "amd64", &b, true).unwrap_err().to_string();
        assert!(e.contains("libc6:amd64 2.41-12 → 2.41-12+deb13u1"), "{e}");
        assert!(e.contains("libvulkan1:amd64 1.4.309.0-1 → (none)"), "{e}");
        assert!(e.contains("zlib1g:amd64 (none) → 1:1.3"), "{e}");
        assert_eq!(
            std::fs::read(&f).unwrap(),
            before,
            "refused: the lock is as it was"
        );
        let r = check(&f, img, "amd64", &b, false).unwrap();
        assert_eq!((r.status.as_str(), r.changes.len()), ("updated", 3));
        assert_eq!(
            check(&f, img, "amd64", &b, true).unwrap().status,
            "unchanged"
        );
    }

    #[test]
    fn a_tampered_lock_is_refused_naming_the_value() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("packages.lock");
        let good = "schema = 1\n[[base]]\nimage = \"localhost/r:trixie\"\narch = \"amd64\"\n[base.packages]\n\"libc6:amd64\" = \"2.41-12\"\n";
        std::fs::write(&f, good).unwrap();
        assert!(read(&f).is_ok());
        for (bad, needle) in [
            (good.replace("2.41-12", "2.41$(id)"), "not a Debian version"),
            (good.replace("\"libc6:amd64\"", "\"../../x:amd64\""), "not NAME:ARCH"),
            (good.replace("libc6:amd64", "libc6"), "not NAME:ARCH"),
            (good.replace("schema = 1", "schema = 9"), "schema 9"),
            (good.replace("arch = \"amd64\"", "arch = \"amd64\"\nextra = 1"), "line 5"),
            (good.replace("localhost/r:trixie", "x y"), "not an image reference"),
            (format!("{good}[[base]]\nimage = \"localhost/r:trixie\"\narch = \"amd64\"\n[base.packages]\n"), "locked twice"),
        ] {
            std::fs::write(&f, &bad).unwrap();
            let e = read(&f).unwrap_err().to_string();
            assert!(e.contains(needle), "{bad}\n→ {e}");
            assert!(e.contains("packages.lock"), "{e}");
        }
    }
}
