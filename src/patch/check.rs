//! `check-patches`: a series applied in memory to every tag's tree straight from git
//! objects (no checkout, no index), giving a tag × patch matrix. Results are memoised by
//! the content of the files each patch touches, so tags that share those blobs cost one
//! hash lookup.

use std::time::Instant;

use serde::Serialize;

use super::engine::{GitSource, Memo, Overlay, PatchReport, PatchStatus};
use super::parse::PatchError;
use super::series::{Series, SeriesError};
use crate::source::{Repo, RepoName, SourceError};

#[derive(Debug, thiserror::Error)]
pub enum CheckError {
    #[error("series `{name}`: {source}")]
    Series { name: String, source: SeriesError },
    #[error(transparent)]
    Patch(#[from] PatchError),
    #[error(transparent)]
    Source(#[from] SourceError),
    #[error("{0}")]
    Usage(String),
}

impl crate::error::HasKind for CheckError {
    fn kind(&self) -> crate::error::Kind {
        use crate::error::Kind;
        match self {
            CheckError::Source(e) => e.kind(),
            CheckError::Series { source, .. } => source.kind(),
            CheckError::Patch(e) => e.kind(),
            CheckError::Usage(_) => Kind::BadInput,
        }
    }
}

/// One cell: how a patch fared on a tag.
#[derive(Debug, Clone, Serialize)]
pub struct Cell {
    pub status: PatchStatus,
    pub max_offset: usize,
    pub max_fuzz: usize,
}

impl Cell {
    fn short(&self) -> String {
        match self.status {
            PatchStatus::Clean => "ok".into(),
            PatchStatus::Offset => format!("±{}", self.max_offset),
            PatchStatus::Fuzz => format!("~{}", self.max_fuzz),
            PatchStatus::AlreadyApplied => "up".into(),
            PatchStatus::Failed => "FAIL".into(),
        }
    }
}

#[derive(Debug, Serialize)]
pub struct TagRow {
    pub tag: String,
    pub commit: String,
    pub cells: Vec<Cell>,
    /// Full per-hunk reports for patches that did not apply cleanly.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub details: Vec<PatchReport>,
}

#[derive(Debug, Serialize)]
pub struct Matrix {
    pub series: String,
    pub repo: RepoName,
    pub patches: Vec<String>,
    pub rows: Vec<TagRow>,
    pub seconds: f64,
    /// Distinct (patch, input) pairs applied / answered from the memo.
    pub applied: usize,
    pub memo_hits: usize,
}

/// Tags in release order: vX.Y.Z by version, bNNNN by number, others by name.
pub fn ordered_tags(repo: &Repo) -> Vec<String> {
    let mut tags: Vec<String> = repo
        .git
        .tag_names(None)
        .map(|t| t.iter().flatten().map(String::from).collect())
        .unwrap_or_default();
    let bnum = |t: &str| t.strip_prefix('b').and_then(|n| n.parse::<u64>().ok());
    if !tags.is_empty() && tags.iter().all(|t| bnum(t).is_some()) {
        tags.sort_by_key(|t| bnum(t));
    } else {
        crate::version::sort_tags(&mut tags);
    }
    tags
}

/// Selects `FROM..TO` (inclusive; either side may be empty) or one tag from `tags`.
pub fn select(tags: &[String], range: &str) -> Result<Vec<String>, CheckError> {
    let find = |t: &str| {
        tags.iter().position(|x| x == t).ok_or_else(|| {
            CheckError::Usage(format!(
                "--tags {range}: tag `{t}` is not in the mirror\n  help: give tags that exist, e.g. --tags {}..{}",
                tags.first().map(String::as_str).unwrap_or("v0.1.0"),
                tags.last().map(String::as_str).unwrap_or("v0.2.0")
            ))
        })
    };
    let (a, b) = match range.split_once("..") {
        Some((a, b)) => (
            if a.is_empty() { 0 } else { find(a)? },
            if b.is_empty() {
                tags.len().saturating_sub(1)
            } else {
                find(b)?
            },
        ),
        None => {
            let i = find(range)?;
            (i, i)
        }
    };
    if a > b {
        return Err(CheckError::Usage(format!(
            "--tags {range}: `{}` comes after `{}`\n  help: write the older tag first",
            tags[a], tags[b]
        )));
    }
    Ok(tags[a..=b].to_vec())
}

/// Runs `series` over `tags` of `repo`.
pub fn check_series(
    series: &Series,
    repo: &Repo,
    tags: &[String],
    fuzz: usize,
) -> Result<Matrix, CheckError> {
    let start = Instant::now();
    let patches = series.parse_patches()?;
    let mut memo = Memo::default();
    let mut rows = Vec::with_capacity(tags.len());
    for tag in tags {
        let commit = repo
            .git
            .revparse_single(&format!("refs/tags/{tag}^{{commit}}"))
            .and_then(|o| o.peel_to_commit())
            .map_err(|e| SourceError::Git {
                what: format!("resolving tag {tag}"),
                source: e,
            })?;
        let tree = commit.tree().map_err(|e| SourceError::Git {
            what: format!("reading the tree of {tag}"),
            source: e,
        })?;
        let src = GitSource {
            repo: &repo.git,
            tree,
        };
        let mut overlay = Overlay::new();
        let mut cells = Vec::with_capacity(patches.len());
        let mut details = Vec::new();
        for (i, p) in patches.iter().enumerate() {
            let r = memo.apply(i, &src, &mut overlay, p, fuzz)?;
            cells.push(Cell {
                status: r.status,
                max_offset: r.max_offset,
                max_fuzz: r.max_fuzz,
            });
            if r.status != PatchStatus::Clean {
                details.push(r);
            }
        }
        rows.push(TagRow {
            tag: tag.clone(),
            commit: commit.id().to_string(),
            cells,
            details,
        });
    }
    Ok(Matrix {
        series: series.name.clone(),
        repo: series.target.unwrap_or(RepoName::Ollama),
        patches: series.patches.clone(),
        rows,
        seconds: start.elapsed().as_secs_f64(),
        applied: memo.misses,
        memo_hits: memo.hits,
    })
}

/// Which tags `check_many` runs a series over.
pub enum Tags<'a> {
    All,
    /// `FROM..TO` or one tag (see [`select`]).
    Range(&'a str),
}

/// Runs each named series (a directory under `patches_dir`) over its target's tags.
pub fn check_many(
    patches_dir: &std::path::Path,
    mirrors: &crate::source::Mirrors,
    names: &[String],
    tags: Tags,
    fuzz: usize,
) -> Result<Vec<Matrix>, CheckError> {
    let mut matrices = Vec::new();
    for name in names {
        let s = Series::load(&patches_dir.join(name)).map_err(|source| CheckError::Series {
            name: name.clone(),
            source,
        })?;
        let target = s.target.unwrap_or(RepoName::Ollama);
        let url = crate::recipe::new::default_url(target);
        let repos = mirrors.open(target, Some(url), &[crate::source::Want::Everything])?;
        let all = ordered_tags(&repos[0]);
        let chosen = match tags {
            Tags::All => all,
            Tags::Range(r) => select(&all, r)?,
        };
        matrices.push(check_series(&s, &repos[0], &chosen, fuzz)?);
    }
    Ok(matrices)
}

/// The matrix as text: consecutive tags with the same row share a line.
pub fn render(m: &Matrix) -> String {
    use std::fmt::Write;
    let mut s = String::new();
    let _ = writeln!(
        s,
        "series {} ({}): {} patches × {} tags",
        m.series,
        m.repo,
        m.patches.len(),
        m.rows.len()
    );
    for (i, p) in m.patches.iter().enumerate() {
        let _ = writeln!(s, "  P{} = {p}", i + 1);
    }
    let cols: Vec<String> = (1..=m.patches.len()).map(|i| format!("P{i}")).collect();
    let mut groups: Vec<(usize, usize)> = Vec::new();
    for (i, r) in m.rows.iter().enumerate() {
        let key: Vec<String> = r.cells.iter().map(Cell::short).collect();
        match groups.last_mut() {
            Some((_, end))
                if m.rows[*end]
                    .cells
                    .iter()
                    .map(Cell::short)
                    .collect::<Vec<_>>()
                    == key =>
            {
                *end = i
            }
            _ => groups.push((i, i)),
        }
    }
    let label = |a: usize, b: usize| {
        if a == b {
            m.rows[a].tag.clone()
        } else {
            format!("{} … {} ({} tags)", m.rows[a].tag, m.rows[b].tag, b - a + 1)
        }
    };
    let w = groups
        .iter()
        .map(|(a, b)| label(*a, *b).chars().count())
        .max()
        .unwrap_or(4)
        .max(4);
    let _ = writeln!(
        s,
        "{:w$}  {}",
        "tags",
        cols.iter().map(|c| format!("{c:>5}")).collect::<String>()
    );
    for (a, b) in &groups {
        let cells: String = m.rows[*a]
            .cells
            .iter()
            .map(|c| format!("{:>5}", c.short()))
            .collect();
        let l = label(*a, *b);
        let pad = w - l.chars().count();
        let _ = writeln!(s, "{l}{}  {cells}", " ".repeat(pad));
    }
    let _ = writeln!(
        s,
        "ok clean · ±N offset · ~F fuzz · FAIL does not apply · up already upstream (reverse applies)"
    );
    s
}
