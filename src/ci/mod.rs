//! `ci`'s state and tag selection (which upstream tags are new since the last run), the
//! patch check of one tag, and the rebase proposal for a tag whose series stopped applying.
//!
//! The state file is untrusted input (a CI cache or artifact may hand back anything): it
//! is read strictly and a bad one stops the run before anything is written.

pub mod propose;

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::version::Version;

/// The state format this release reads and writes.
pub const STATE_SCHEMA: u32 = 1;

#[derive(Debug, thiserror::Error)]
pub enum CiError {
    #[error("state file {path}: {why}\n  help: fix or delete it; then pass --since TAG (the newest tag already handled) so no tag is redone or missed")]
    State { path: PathBuf, why: String },
    #[error("no state file at {path} and no --since or --tags: nothing says which tags are new\n  help: for the first run pass --since TAG (tags newer than TAG) or --tags FROM..TO; the run then writes {path}")]
    NoStart { path: PathBuf },
    #[error("{0}")]
    Usage(String),
    #[error("writing the state file {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
}

impl crate::error::HasKind for CiError {
    fn kind(&self) -> crate::error::Kind {
        use crate::error::Kind;
        match self {
            CiError::State { .. } | CiError::NoStart { .. } | CiError::Usage(_) => Kind::BadInput,
            CiError::Write { .. } => Kind::Failure,
        }
    }
}

/// What `ci` remembers between runs: the highest tag it has handled.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct State {
    pub schema: u32,
    /// Written as the tag (`v0.32.15`); read back through [`Version`]'s parser.
    pub highest: String,
}

impl State {
    pub fn new(highest: &Version) -> State {
        State {
            schema: STATE_SCHEMA,
            highest: highest.to_string(),
        }
    }

    /// `None` when there is no file; an error naming the file for anything unreadable.
    pub fn load(path: &Path) -> Result<Option<(State, Version)>, CiError> {
        let bad = |why: String| CiError::State {
            path: path.to_path_buf(),
            why,
        };
        let meta = match std::fs::symlink_metadata(path) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(bad(e.to_string())),
            Ok(m) => m,
        };
        if !meta.is_file() {
            return Err(bad("not a regular file".into()));
        }
        // A state file is a few dozen bytes; a huge one is not ours.
        if meta.len() > 64 * 1024 {
            return Err(bad(format!("{} bytes; a state file is tiny", meta.len())));
        }
        let text = std::fs::read_to_string(path).map_err(|e| bad(e.to_string()))?;
        let state: State = serde_json::from_str(&text).map_err(|e| {
            bad(format!(
                "not a ci state (JSON {{\"schema\":1,\"highest\":\"vX.Y.Z\"}}): {e}"
            ))
        })?;
        if state.schema != STATE_SCHEMA {
            return Err(bad(format!(
                "schema {} is not {STATE_SCHEMA}, the one this release reads",
                state.schema
            )));
        }
        let v = state
            .highest
            .parse::<Version>()
            .map_err(|e| bad(format!("highest: {e}")))?;
        Ok(Some((state, v)))
    }

    /// Atomically, so a killed run leaves the old state or the new one.
    pub fn save(&self, path: &Path) -> Result<(), CiError> {
        let mut text = serde_json::to_string_pretty(self).expect("state serialises");
        text.push('\n');
        crate::fsutil::write_atomic(path, text.as_bytes()).map_err(|source| CiError::Write {
            path: path.to_path_buf(),
            source,
        })
    }
}

/// Which tags a run takes.
#[derive(Debug, Clone)]
pub enum Selection<'a> {
    /// `--tags FROM..TO` (inclusive; either side may be left out) or one tag.
    Range(&'a str),
    /// `--since TAG`: every tag newer than TAG (TAG need not exist upstream).
    Since(Version),
}

/// The release tags of `tags` (any order) that `sel` takes, oldest first. Names that are
/// not versions are never taken; pre-releases only with `include_rc` (a range naming one
/// as an end still leaves it out without it).
pub fn select(tags: &[String], sel: &Selection, include_rc: bool) -> Result<Vec<String>, CiError> {
    let mut versions: Vec<(Version, String)> = tags
        .iter()
        .filter_map(|t| t.parse::<Version>().ok().map(|v| (v, t.clone())))
        .collect();
    versions.sort();
    let ordered: Vec<String> = versions.iter().map(|(_, t)| t.clone()).collect();
    let chosen = match sel {
        Selection::Range(r) => {
            crate::patch::check::select(&ordered, r).map_err(|e| CiError::Usage(e.to_string()))?
        }
        Selection::Since(since) => versions
            .iter()
            .filter(|(v, _)| v > since)
            .map(|(_, t)| t.clone())
            .collect(),
    };
    Ok(chosen
        .into_iter()
        .filter(|t| include_rc || !t.parse::<Version>().is_ok_and(|v| v.is_prerelease()))
        .collect())
}

/// `prepare --check` of a per-tag recipe: every series' per-patch report, failing ones
/// included (a patch that does not apply is data here, not an error). Reads git objects
/// only: nothing is written.
pub fn check(
    project: &crate::project::Project,
    mirrors: &crate::source::Mirrors,
    recipe: &Path,
) -> Result<Vec<crate::patch::report::SeriesRun>, crate::error::Error> {
    use crate::patch::prepare::{prepare, PrepareError, PrepareOptions};
    let r = crate::recipe::load(recipe, project).map_err(crate::error::Error::Recipe)?;
    let opts = PrepareOptions {
        fuzz: None,
        check: true,
    };
    match prepare(&r, mirrors, &project.work_dir().join("builds"), opts) {
        Ok(p) => Ok(p.series),
        Err(PrepareError::Failed { runs, .. }) => Ok(runs),
        Err(e) => Err(e.into()),
    }
}

pub use crate::patch::report::failing;

/// The state after handling `done`: the highest of the old one and the tags handled (a
/// `--tags` run over old tags never moves it back).
pub fn advance(old: Option<&Version>, done: &[String]) -> Option<Version> {
    done.iter()
        .filter_map(|t| t.parse::<Version>().ok())
        .chain(old.cloned())
        .max()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tags(s: &[&str]) -> Vec<String> {
        s.iter().map(|t| t.to_string()).collect()
    }

    #[test]
    fn since_takes_newer_tags_by_version_and_rc_only_when_asked() {
        let all = tags(&[
            "v0.10.0",
            "v0.9.1",
            "v0.10.1-rc2",
            "v0.10.1",
            "b10",
            "v0.2.0",
        ]);
        let since = Selection::Since("v0.9.1".parse().unwrap());
        assert_eq!(select(&all, &since, false).unwrap(), ["v0.10.0", "v0.10.1"]);
        assert_eq!(
            select(&all, &since, true).unwrap(),
            ["v0.10.0", "v0.10.1-rc2", "v0.10.1"]
        );
        let range = Selection::Range("v0.2.0..v0.10.0");
        assert_eq!(
            select(&all, &range, false).unwrap(),
            ["v0.2.0", "v0.9.1", "v0.10.0"]
        );
    }

    #[test]
    fn the_state_never_moves_back() {
        let old: Version = "v0.30.0".parse().unwrap();
        assert_eq!(advance(Some(&old), &tags(&["v0.24.0"])), Some(old.clone()));
        assert_eq!(
            advance(Some(&old), &tags(&["v0.31.0-rc1"]))
                .unwrap()
                .to_string(),
            "v0.31.0-rc1"
        );
        assert_eq!(advance(None, &[]), None);
    }
}
