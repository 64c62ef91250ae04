//! Parsing git-format patches (`git format-patch` output, or a bare `git diff`): the mail
//! header (From/Subject/Upstream-Status), then one [`FilePatch`] per `diff --git` section
//! with its extended headers (modes, renames) and hunks. Lines are bytes: a patch for a
//! CRLF file keeps its `\r`s and matches the file exactly.

use serde::Serialize;

/// Why a patch cannot be used at all (as opposed to a hunk that does not match).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{patch}:{line}: {why}\n  help: {help}")]
pub struct PatchError {
    pub patch: String,
    pub line: usize,
    pub why: String,
    pub help: String,
}

impl crate::error::HasKind for PatchError {
    fn kind(&self) -> crate::error::Kind {
        crate::error::Kind::BadInput
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Patch {
    /// File name in the series.
    pub name: String,
    pub author: Option<String>,
    pub subject: String,
    /// `Pending`, `Submitted [...]`, `Backport [...]`, `Inappropriate [reason]`.
    pub upstream_status: Option<String>,
    pub files: Vec<FilePatch>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Action {
    Modify,
    Create,
    Delete,
    Rename,
    Copy,
}

#[derive(Debug, Clone, Serialize)]
pub struct FilePatch {
    /// Path before (None for a new file).
    pub old_path: Option<String>,
    /// Path after (None for a deleted file).
    pub new_path: Option<String>,
    pub action: Action,
    pub old_mode: Option<u32>,
    pub new_mode: Option<u32>,
    /// Line of `diff --git` in the patch file.
    pub line: usize,
    pub hunks: Vec<Hunk>,
}

impl FilePatch {
    /// The path reports use: the new path, else the old.
    pub fn path(&self) -> &str {
        self.new_path
            .as_deref()
            .or(self.old_path.as_deref())
            .unwrap_or("")
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Hunk {
    pub old_start: usize,
    pub old_len: usize,
    pub new_start: usize,
    pub new_len: usize,
    /// Line of the `@@` header in the patch file.
    pub line: usize,
    #[serde(skip)]
    pub lines: Vec<HunkLine>,
    /// `\ No newline at end of file` after the last old-side / new-side line.
    #[serde(skip)]
    pub old_no_eol: bool,
    #[serde(skip)]
    pub new_no_eol: bool,
}

impl Hunk {
    pub fn header(&self) -> String {
        format!(
            "@@ -{},{} +{},{} @@",
            self.old_start, self.old_len, self.new_start, self.new_len
        )
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HunkLine {
    Context(Vec<u8>),
    Remove(Vec<u8>),
    Add(Vec<u8>),
}

/// Splits on `\n`, keeping everything else (a `\r` stays part of its line).
fn lines(bytes: &[u8]) -> Vec<&[u8]> {
    let mut v: Vec<&[u8]> = bytes.split(|b| *b == b'\n').collect();
    if bytes.ends_with(b"\n") {
        v.pop();
    }
    v
}

fn text(l: &[u8]) -> String {
    String::from_utf8_lossy(l)
        .trim_end_matches('\r')
        .to_string()
}

/// `a/path` or `"a/pa th"` → `path`, rejecting what git itself would not write.
fn strip_prefix(raw: &str, prefix: &str) -> Option<String> {
    let raw = raw.trim_end_matches('\r');
    let raw = raw.split('\t').next().unwrap_or(raw);
    let raw = if raw.starts_with('"') && raw.ends_with('"') && raw.len() >= 2 {
        &raw[1..raw.len() - 1]
    } else {
        raw
    };
    if raw == "/dev/null" {
        return None;
    }
    Some(raw.strip_prefix(prefix).unwrap_or(raw).to_string())
}

fn parse_range(s: &str) -> Option<(usize, usize)> {
    match s.split_once(',') {
        Some((a, b)) => Some((a.parse().ok()?, b.parse().ok()?)),
        None => Some((s.parse().ok()?, 1)),
    }
}

fn parse_mode(s: &str) -> Option<u32> {
    u32::from_str_radix(s.trim(), 8).ok()
}

/// Parses one patch file. `name` is used in errors.
pub fn parse(name: &str, bytes: &[u8]) -> Result<Patch, PatchError> {
    let err = |line: usize, why: String, help: &str| PatchError {
        patch: name.to_string(),
        line,
        why,
        help: help.to_string(),
    };
    let ls = lines(bytes);
    let mut patch = Patch {
        name: name.to_string(),
        author: None,
        subject: String::new(),
        upstream_status: None,
        files: Vec::new(),
    };
    let mut i = 0;
    // Header: everything before the first `diff --git`.
    let mut in_subject = false;
    while i < ls.len() && !ls[i].starts_with(b"diff --git ") {
        let l = text(ls[i]);
        if let Some(v) = l.strip_prefix("From: ") {
            patch.author = Some(v.to_string());
            in_subject = false;
        } else if let Some(v) = l.strip_prefix("Subject: ") {
            let v = v.trim();
            let v = match v.strip_prefix('[') {
                Some(rest) if v.starts_with("[PATCH") => {
                    rest.split_once(']').map(|(_, s)| s.trim()).unwrap_or(v)
                }
                _ => v,
            };
            patch.subject = v.to_string();
            in_subject = true;
        } else if in_subject && l.starts_with(' ') {
            patch.subject.push_str(&l); // folded header line
        } else {
            in_subject = false;
            if let Some(v) = l.strip_prefix("Upstream-Status:") {
                patch.upstream_status = Some(v.trim().to_string());
            }
        }
        if ls[i].starts_with(b"GIT binary patch") {
            return Err(err(
                i + 1,
                "binary patch outside a diff".into(),
                "regenerate the patch with `git format-patch`",
            ));
        }
        i += 1;
    }
    while i < ls.len() {
        let l = text(ls[i]);
        if !l.starts_with("diff --git ") {
            // Trailer after the last diff (`-- ` + git version) or stray text.
            i += 1;
            continue;
        }
        let start = i + 1;
        let rest = &l["diff --git ".len()..];
        // `a/x b/x`: split in the middle for equal paths (names may contain spaces).
        let (a, b) = split_diff_paths(rest).ok_or_else(|| {
            err(
                start,
                format!("cannot read the paths in `{l}`"),
                "regenerate the patch with `git format-patch`",
            )
        })?;
        let mut fp = FilePatch {
            old_path: strip_prefix(&a, "a/"),
            new_path: strip_prefix(&b, "b/"),
            action: Action::Modify,
            old_mode: None,
            new_mode: None,
            line: start,
            hunks: Vec::new(),
        };
        i += 1;
        // Extended headers up to the first hunk or the next diff.
        while i < ls.len() && !ls[i].starts_with(b"@@") && !ls[i].starts_with(b"diff --git ") {
            let h = text(ls[i]);
            if let Some(m) = h.strip_prefix("new file mode ") {
                fp.action = Action::Create;
                fp.new_mode = parse_mode(m);
                fp.old_path = None;
            } else if let Some(m) = h.strip_prefix("deleted file mode ") {
                fp.action = Action::Delete;
                fp.old_mode = parse_mode(m);
                fp.new_path = None;
            } else if let Some(m) = h.strip_prefix("old mode ") {
                fp.old_mode = parse_mode(m);
            } else if let Some(m) = h.strip_prefix("new mode ") {
                fp.new_mode = parse_mode(m);
            } else if let Some(p) = h.strip_prefix("rename from ") {
                fp.action = Action::Rename;
                fp.old_path = Some(p.to_string());
            } else if let Some(p) = h.strip_prefix("rename to ") {
                fp.new_path = Some(p.to_string());
            } else if let Some(p) = h.strip_prefix("copy from ") {
                fp.action = Action::Copy;
                fp.old_path = Some(p.to_string());
            } else if let Some(p) = h.strip_prefix("copy to ") {
                fp.new_path = Some(p.to_string());
            } else if h.starts_with("GIT binary patch") || h.starts_with("Binary files ") {
                return Err(err(
                    i + 1,
                    format!("binary patch for {}: binary patches are not supported", fp.path()),
                    "ship the file another way (a generator step), or keep binary changes out of the series",
                ));
            } else if let Some(p) = h.strip_prefix("--- ") {
                if fp.action != Action::Create {
                    fp.old_path = strip_prefix(p, "a/").or(fp.old_path.take());
                }
            } else if let Some(p) = h.strip_prefix("+++ ") {
                if fp.action != Action::Delete {
                    fp.new_path = strip_prefix(p, "b/").or(fp.new_path.take());
                }
            }
            i += 1;
        }
        for m in [fp.old_mode, fp.new_mode].into_iter().flatten() {
            if ![0o100644, 0o100755, 0o120000, 0o160000].contains(&m) {
                return Err(err(
                    start,
                    format!(
                        "{}: mode {m:o} is not a mode git stores for a file (100644 or 100755)",
                        crate::safe::show(fp.path())
                    ),
                    "use `new mode 100644` (or 100755 for an executable); setuid, world-writable and other modes are refused",
                ));
            }
            if m == 0o120000 || m == 0o160000 {
                return Err(err(
                    start,
                    format!(
                        "{} is a {}: patches to symlinks and submodules are not supported",
                        fp.path(),
                        if m == 0o120000 {
                            "symlink"
                        } else {
                            "submodule"
                        }
                    ),
                    "change the link or gitlink outside the series",
                ));
            }
        }
        // Hunks.
        while i < ls.len() && ls[i].starts_with(b"@@") {
            let h = text(ls[i]);
            let line = i + 1;
            let bad = || {
                err(
                    line,
                    format!("malformed hunk header `{h}`"),
                    "regenerate the patch with `git format-patch`",
                )
            };
            let inner = h
                .strip_prefix("@@ -")
                .and_then(|r| r.split_once(" @@"))
                .map(|(r, _)| r)
                .ok_or_else(bad)?;
            let (o, n) = inner.split_once(" +").ok_or_else(bad)?;
            let (old_start, old_len) = parse_range(o).ok_or_else(bad)?;
            let (new_start, new_len) = parse_range(n).ok_or_else(bad)?;
            let mut hunk = Hunk {
                old_start,
                old_len,
                new_start,
                new_len,
                line,
                lines: Vec::new(),
                old_no_eol: false,
                new_no_eol: false,
            };
            i += 1;
            let (mut seen_old, mut seen_new) = (0, 0);
            while i < ls.len()
                && (seen_old < old_len || seen_new < new_len || ls[i].starts_with(b"\\"))
            {
                let l = ls[i];
                match l.first() {
                    Some(b' ') | None => {
                        // An empty line inside a hunk is a context line whose space was
                        // stripped by an editor or mailer.
                        hunk.lines.push(HunkLine::Context(l.get(1..).unwrap_or(&[]).to_vec()));
                        seen_old += 1;
                        seen_new += 1;
                    }
                    Some(b'-') => {
                        hunk.lines.push(HunkLine::Remove(l[1..].to_vec()));
                        seen_old += 1;
                    }
                    Some(b'+') => {
                        hunk.lines.push(HunkLine::Add(l[1..].to_vec()));
                        seen_new += 1;
                    }
                    Some(b'\\') => match hunk.lines.last() {
                        Some(HunkLine::Add(_)) => hunk.new_no_eol = true,
                        Some(HunkLine::Remove(_)) => hunk.old_no_eol = true,
                        Some(HunkLine::Context(_)) => {
                            hunk.old_no_eol = true;
                            hunk.new_no_eol = true;
                        }
                        None => {}
                    },
                    Some(_) => {
                        return Err(err(
                            i + 1,
                            format!("hunk {} of {} ends early: expected {old_len} old and {new_len} new lines, found {seen_old} and {seen_new}", h, fp.path()),
                            "the patch was truncated or hand-edited; regenerate it",
                        ))
                    }
                }
                i += 1;
            }
            if seen_old != old_len || seen_new != new_len {
                return Err(err(
                    line,
                    format!(
                        "hunk `{h}` of {} has {seen_old} old and {seen_new} new lines",
                        fp.path()
                    ),
                    "the patch was truncated or hand-edited; regenerate it",
                ));
            }
            fp.hunks.push(hunk);
        }
        patch.files.push(fp);
    }
    if patch.files.is_empty() {
        return Err(err(
            1,
            "no `diff --git` section: the patch changes nothing".into(),
            "give a patch made by `git format-patch`, or drop it from the series",
        ));
    }
    Ok(patch)
}

/// Splits `a/x b/y` where both halves may contain spaces: prefer the split where the two
/// paths are equal (the common case), else the first ` b/`.
fn split_diff_paths(rest: &str) -> Option<(String, String)> {
    let rest = rest.trim_end_matches('\r');
    if let Some(stripped) = rest.strip_prefix("a/") {
        let n = stripped.len();
        // Paths are bytes from the patch: the middle may fall inside a UTF-8 character.
        if n % 2 == 1 && stripped.is_char_boundary((n - 1) / 2) {
            let half = (n - 1) / 2;
            let (x, y) = (&stripped[..half], &stripped[half..]);
            if let Some(y) = y.strip_prefix(" b/") {
                if x == y {
                    return Some((format!("a/{x}"), format!("b/{y}")));
                }
            }
        }
    }
    rest.find(" b/")
        .map(|k| (rest[..k].to_string(), rest[k + 1..].to_string()))
        .or_else(|| {
            rest.split_once(' ')
                .map(|(a, b)| (a.to_string(), b.to_string()))
        })
}

/// Checks an `Upstream-Status:` value against the accepted forms (Yocto's).
pub fn check_upstream_status(v: &str) -> Result<(), String> {
    let (kind, rest) = v
        .split_once(' ')
        .map(|(k, r)| (k, r.trim()))
        .unwrap_or((v, ""));
    match kind {
        "Pending" | "Submitted" | "Backport" | "Accepted" => Ok(()),
        "Inappropriate" | "Denied" if rest.starts_with('[') && rest.ends_with(']') && rest.len() > 2 => Ok(()),
        "Inappropriate" | "Denied" => Err(format!("`{kind}` needs a reason in brackets, e.g. `{kind} [ollama-vulkan specific]`")),
        _ => Err(format!("`{v}` is not one of Pending, Submitted [where], Backport [where], Inappropriate [reason]")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const P: &str = "From 0000000000000000000000000000000000000000 Mon Sep 17 00:00:00 2001\nFrom: A U Thor <a@example.org>\nSubject: [PATCH] Add the thing\n that wraps\nUpstream-Status: Pending\n\nWhy.\n---\n x | 2 +-\n\ndiff --git a/dir/x y b/dir/x y\nindex 1..2 100644\n--- a/dir/x y\n+++ b/dir/x y\n@@ -1,2 +1,2 @@\n a\n-b\n+c\n\\ No newline at end of file\ndiff --git a/n b/n\nnew file mode 100755\n--- /dev/null\n+++ b/n\n@@ -0,0 +1 @@\n+#!/bin/sh\n-- \n2.39.5\n";

    #[test]
    fn parses_headers_paths_modes_and_eol_markers() {
        let p = parse("0001.patch", P.as_bytes()).unwrap();
        assert_eq!(p.subject, "Add the thing that wraps");
        assert_eq!(p.upstream_status.as_deref(), Some("Pending"));
        assert_eq!(p.files.len(), 2);
        assert_eq!(p.files[0].path(), "dir/x y");
        assert!(p.files[0].hunks[0].new_no_eol);
        assert_eq!(p.files[1].action, Action::Create);
        assert_eq!(p.files[1].new_mode, Some(0o100755));
    }

    #[test]
    fn truncated_hunk_names_the_line() {
        let cut = &P[..P.find("+c\n").unwrap()];
        let e = parse("t.patch", cut.as_bytes()).unwrap_err();
        assert_eq!(e.line, 15);
        assert!(e.why.contains("has 2 old and 1 new lines"), "{e}");
    }

    #[test]
    fn a_diff_line_split_inside_a_utf8_character_is_no_panic() {
        // Found by the `apply` fuzz target: the middle byte of `aaé b/` is inside `é`.
        assert_eq!(
            split_diff_paths("a/aaé b/"),
            Some(("a/aaé".to_string(), "b/".to_string()))
        );
        let p = "diff --git a/aaé b/\n--- a/x\n+++ b/x\n@@ -1 +1 @@\n-a\n+b\n";
        let _ = parse("p", p.as_bytes());
    }

    #[test]
    fn upstream_status_forms() {
        assert!(check_upstream_status("Pending").is_ok());
        assert!(check_upstream_status("Submitted [github.com/ollama/ollama/pull/1]").is_ok());
        assert!(check_upstream_status("Inappropriate [ollama-vulkan build glue]").is_ok());
        assert!(check_upstream_status("Inappropriate").is_err());
        assert!(check_upstream_status("Maybe").is_err());
    }
}
