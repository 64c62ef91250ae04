//! Applying the hunks of one file, the way GNU patch does but stricter by default: each
//! hunk is searched for at its stated line (shifted by earlier hunks' offsets), then
//! outward in both directions; with `fuzz` F > 0 up to F context lines at each end may
//! be ignored. Every hunk reports clean, offset N, fuzz F, or failed with the lines that
//! did not match. diffy's `apply` has offsets but no fuzz and no per-hunk report, hence
//! this module.

use serde::Serialize;

use super::parse::{Hunk, HunkLine};

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "status", rename_all = "kebab-case")]
pub enum HunkOutcome {
    Clean,
    /// Applied `lines` away from its stated line.
    Offset {
        lines: isize,
    },
    /// Applied ignoring `fuzz` context lines at the ends (and maybe at an offset).
    Fuzz {
        fuzz: usize,
        lines: isize,
    },
    Failed {
        /// 1-based line in the file where the hunk was expected.
        expected_at: usize,
        /// The first lines that differ there: (file line, expected, found).
        mismatches: Vec<Mismatch>,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Mismatch {
    pub line: usize,
    pub expected: String,
    pub found: Option<String>,
}

/// A file's content as lines (without `\n`) and whether it ends with a newline.
#[derive(Debug, Clone)]
struct Lines<'a> {
    lines: Vec<&'a [u8]>,
    eol: bool,
}

fn split(bytes: &[u8]) -> Lines<'_> {
    if bytes.is_empty() {
        return Lines {
            lines: Vec::new(),
            eol: true,
        };
    }
    let eol = bytes.ends_with(b"\n");
    let mut lines: Vec<&[u8]> = bytes.split(|b| *b == b'\n').collect();
    if eol {
        lines.pop();
    }
    Lines { lines, eol }
}

/// How a patch line compares to a file line: exactly, or (for a CRLF file patched by an
/// LF patch, e.g. after an editor or mailer stripped the `\r`s) modulo one trailing `\r`.
#[derive(Clone, Copy)]
struct Eq {
    crlf: bool,
}

impl Eq {
    fn eq(self, file: &[u8], patch: &[u8]) -> bool {
        file == patch
            || (self.crlf
                && file.len() == patch.len() + 1
                && file.ends_with(b"\r")
                && &file[..patch.len()] == patch)
    }
}

pub struct Applied {
    pub bytes: Vec<u8>,
    pub outcomes: Vec<HunkOutcome>,
}

/// Applies `hunks` to `content`. On any failed hunk returns the outcomes (with the
/// failures) and no content.
pub fn apply_hunks(
    content: &[u8],
    hunks: &[Hunk],
    fuzz: usize,
) -> Result<Applied, Vec<HunkOutcome>> {
    let file = split(content);
    let patch_has_cr = hunks.iter().flat_map(|h| &h.lines).any(|l| match l {
        HunkLine::Context(b) | HunkLine::Remove(b) | HunkLine::Add(b) => b.ends_with(b"\r"),
    });
    let file_is_crlf = !file.lines.is_empty() && file.lines.iter().all(|l| l.ends_with(b"\r"));
    let eq = Eq {
        crlf: file_is_crlf && !patch_has_cr,
    };
    let mut out: Vec<Vec<u8>> = Vec::with_capacity(file.lines.len() + 16);
    let mut pos = 0usize; // next unconsumed file line
    let mut shift: isize = 0; // offset of the previous hunk
    let mut outcomes = Vec::with_capacity(hunks.len());
    let mut failed = false;
    let mut eol = file.eol;
    for h in hunks {
        let old: Vec<&[u8]> = h
            .lines
            .iter()
            .filter_map(|l| match l {
                HunkLine::Context(b) | HunkLine::Remove(b) => Some(b.as_slice()),
                HunkLine::Add(_) => None,
            })
            .collect();
        // A hunk with no old lines inserts after line old_start; otherwise it starts there.
        let stated = if h.old_len == 0 {
            h.old_start
        } else {
            h.old_start.saturating_sub(1)
        };
        let want = (stated as isize + shift).max(0) as usize;
        let lead = h
            .lines
            .iter()
            .take_while(|l| matches!(l, HunkLine::Context(_)))
            .count();
        let trail = h
            .lines
            .iter()
            .rev()
            .take_while(|l| matches!(l, HunkLine::Context(_)))
            .count();
        let mut found = None;
        for f in 0..=fuzz {
            // A context-only hunk has the same lines at both ends: never skip more than
            // it has, and keep at least one line to match.
            let skip_front = f.min(lead);
            let skip_back = f.min(trail).min(old.len().saturating_sub(skip_front));
            if f > 0 && skip_front == 0 && skip_back == 0 {
                break; // nothing left to fuzz
            }
            if f > 0 && skip_front + skip_back >= old.len() {
                break; // nothing left to match
            }
            let core = &old[skip_front..old.len() - skip_back];
            // An old side that must end at EOF ("\ No newline") only matches there.
            let at_eof = h.old_no_eol && skip_back == 0;
            if let Some(p) = search(
                &file.lines,
                pos + skip_front,
                want.saturating_add(skip_front),
                core,
                skip_back,
                eq,
                at_eof,
                file.eol,
            ) {
                found = Some((p - skip_front, f, skip_front, skip_back));
                break;
            }
        }
        match found {
            Some((start, f, skip_front, skip_back)) => {
                let offset = start as isize - stated as isize;
                shift = offset;
                outcomes.push(match (f, offset) {
                    (0, 0) => HunkOutcome::Clean,
                    (0, n) => HunkOutcome::Offset { lines: n },
                    (f, n) => HunkOutcome::Fuzz { fuzz: f, lines: n },
                });
                if failed {
                    continue;
                }
                out.extend(file.lines[pos..start].iter().map(|l| l.to_vec()));
                // Walk the hunk: context lines come from the file (fuzzed ends may differ),
                // removed lines are dropped, added lines come from the patch.
                let _ = (skip_front, skip_back);
                let mut fi = start;
                for l in &h.lines {
                    match l {
                        HunkLine::Context(_) => {
                            out.push(file.lines[fi].to_vec());
                            fi += 1;
                        }
                        HunkLine::Remove(_) => fi += 1,
                        HunkLine::Add(b) => {
                            let mut b = b.clone();
                            if eq.crlf {
                                b.push(b'\r');
                            }
                            out.push(b);
                        }
                    }
                }
                pos = fi;
                if pos == file.lines.len() && (h.old_no_eol || h.new_no_eol) {
                    eol = !h.new_no_eol;
                }
            }
            None => {
                failed = true;
                outcomes.push(HunkOutcome::Failed {
                    expected_at: want.min(file.lines.len()) + 1,
                    mismatches: mismatches(&file.lines, want, &old, eq),
                });
            }
        }
    }
    if failed {
        return Err(outcomes);
    }
    out.extend(file.lines[pos..].iter().map(|l| l.to_vec()));
    let mut bytes = out.join(&b'\n');
    if eol && !out.is_empty() {
        bytes.push(b'\n');
    }
    Ok(Applied { bytes, outcomes })
}

fn matches_at(lines: &[&[u8]], at: usize, old: &[&[u8]], eq: Eq) -> bool {
    at + old.len() <= lines.len() && old.iter().enumerate().all(|(i, o)| eq.eq(lines[at + i], o))
}

/// The position nearest to `want` (not before `min`) where `old` matches.
/// `tail` lines (fuzzed-away context) must still exist after the match.
#[allow(clippy::too_many_arguments)]
fn search(
    lines: &[&[u8]],
    min: usize,
    want: usize,
    old: &[&[u8]],
    tail: usize,
    eq: Eq,
    at_eof: bool,
    file_eol: bool,
) -> Option<usize> {
    let ok = |p: usize| {
        p >= min
            && p + old.len() + tail <= lines.len()
            && matches_at(lines, p, old, eq)
            && (!at_eof || (p + old.len() == lines.len() && !file_eol))
    };
    let max = lines.len().saturating_sub(old.len());
    let want = want.min(max.max(min));
    for d in 0..=lines.len() {
        if want >= d && ok(want - d) {
            return Some(want - d);
        }
        if d > 0 && want + d <= max && ok(want + d) {
            return Some(want + d);
        }
        if want < d && want + d > max {
            break;
        }
    }
    None
}

/// The first few lines that differ between `old` and the file at `at`.
fn mismatches(lines: &[&[u8]], at: usize, old: &[&[u8]], eq: Eq) -> Vec<Mismatch> {
    // Line endings are shown (`\r` at the end of a CRLF line), so a CRLF/LF mismatch
    // does not read as "expected `a`, found `a`".
    let show = |b: &[u8]| {
        let t = String::from_utf8_lossy(b);
        match t.strip_suffix('\r') {
            Some(x) => format!("{x}\\r"),
            None => t.into_owned(),
        }
    };
    old.iter()
        .enumerate()
        .filter_map(|(i, o)| {
            let f = lines.get(at + i).copied();
            match f {
                Some(f) if eq.eq(f, o) => None,
                _ => Some(Mismatch {
                    line: at + i + 1,
                    expected: show(o),
                    found: f.map(show),
                }),
            }
        })
        .take(3)
        .collect()
}

/// The hunks with old and new sides swapped: applying them undoes the patch.
pub fn reversed(hunks: &[Hunk]) -> Vec<Hunk> {
    hunks
        .iter()
        .map(|h| Hunk {
            old_start: h.new_start,
            old_len: h.new_len,
            new_start: h.old_start,
            new_len: h.old_len,
            line: h.line,
            lines: h
                .lines
                .iter()
                .map(|l| match l {
                    HunkLine::Add(b) => HunkLine::Remove(b.clone()),
                    HunkLine::Remove(b) => HunkLine::Add(b.clone()),
                    c => c.clone(),
                })
                .collect(),
            old_no_eol: h.new_no_eol,
            new_no_eol: h.old_no_eol,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::patch::parse::parse;

    fn hunks(diff: &str) -> Vec<Hunk> {
        let p = format!("diff --git a/f b/f\n--- a/f\n+++ b/f\n{diff}");
        parse("t", p.as_bytes()).unwrap().files.remove(0).hunks
    }

    #[test]
    fn clean_offset_and_failed() {
        let h = hunks("@@ -2,3 +2,3 @@\n b\n-c\n+C\n d\n");
        let r = apply_hunks(b"a\nb\nc\nd\ne\n", &h, 0).unwrap();
        assert_eq!(r.bytes, b"a\nb\nC\nd\ne\n");
        assert_eq!(r.outcomes, [HunkOutcome::Clean]);
        let r = apply_hunks(b"x\nx\na\nb\nc\nd\ne\n", &h, 0).unwrap();
        assert_eq!(r.outcomes, [HunkOutcome::Offset { lines: 2 }]);
        let e = apply_hunks(b"a\nb\nZ\nd\n", &h, 0).err().unwrap();
        match &e[0] {
            HunkOutcome::Failed { mismatches, .. } => {
                assert_eq!(mismatches[0].expected, "c");
                assert_eq!(mismatches[0].found.as_deref(), Some("Z"));
                assert_eq!(mismatches[0].line, 3);
            }
            o => panic!("{o:?}"),
        }
    }

    #[test]
    fn fuzz_only_when_allowed() {
        let h = hunks("@@ -1,3 +1,3 @@\n a\n-b\n+B\n c\n");
        assert!(apply_hunks(b"A\nb\nc\n", &h, 0).is_err());
        let r = apply_hunks(b"A\nb\nc\n", &h, 1).unwrap();
        assert_eq!(r.bytes, b"A\nB\nc\n");
        assert_eq!(r.outcomes, [HunkOutcome::Fuzz { fuzz: 1, lines: 0 }]);
    }

    #[test]
    fn crlf_file_with_crlf_or_lf_patch() {
        let h = hunks("@@ -1,2 +1,2 @@\n a\r\n-b\r\n+B\r\n");
        let r = apply_hunks(b"a\r\nb\r\n", &h, 0).unwrap();
        assert_eq!(r.bytes, b"a\r\nB\r\n");
        let h = hunks("@@ -1,2 +1,2 @@\n a\n-b\n+B\n");
        let r = apply_hunks(b"a\r\nb\r\n", &h, 0).unwrap();
        assert_eq!(r.bytes, b"a\r\nB\r\n");
    }

    #[test]
    fn context_only_hunk_with_fuzz_does_not_panic() {
        let h = hunks("@@ -1,3 +1,3 @@\n a\n b\n c\n");
        for f in 0..5 {
            let _ = apply_hunks(b"a\nb\nc\n", &h, f);
            let _ = apply_hunks(b"x\ny\n", &h, f);
        }
    }

    #[test]
    fn crlf_mismatch_shows_the_line_endings() {
        let h = hunks("@@ -1,2 +1,2 @@\n a\r\n-b\r\n+B\r\n");
        let e = apply_hunks(b"a\nb\n", &h, 0).err().unwrap();
        match &e[0] {
            HunkOutcome::Failed { mismatches, .. } => {
                assert_eq!(mismatches[0].expected, "a\\r");
                assert_eq!(mismatches[0].found.as_deref(), Some("a"));
            }
            o => panic!("{o:?}"),
        }
    }

    #[test]
    fn no_newline_at_end() {
        let h = hunks("@@ -1 +1 @@\n-a\n\\ No newline at end of file\n+a\n");
        let r = apply_hunks(b"a", &h, 0).unwrap();
        assert_eq!(r.bytes, b"a\n");
        let back = apply_hunks(&r.bytes, &reversed(&h), 0).unwrap();
        assert_eq!(back.bytes, b"a");
    }
}
