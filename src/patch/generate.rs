//! Generated series: `patches/src/` holds the pieces, `patches/<series>/` the
//! `git format-patch` output made from them (docs/patches.md, "Generated series").
//!
//! `patches/src/ranges/<series>/range.toml` says which pieces make each patch of one
//! series: messages (`subject`, blank line, body), verbatim per-range diffs (`diff`), new
//! files written once under `patches/src/shared/` (`new` + `source`), and hunks applied to
//! a file an earlier piece created (`edit` + `hunks`). `@DIR@` and `@PACKAGE@` in every
//! piece and tree path become the range's `dir` and `package`: the only parameters of the
//! shared sources. [`generate`] is pure (reads, never writes): the same inputs give the
//! same bytes, down to the `index` lines (git blob ids) and the patch file names that
//! `git format-patch` would write.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::parse;
use super::series::Series;

/// Under `patches/`: the inputs of the generated series.
pub const SRC_DIR: &str = "src";
/// Under [`SRC_DIR`]: one directory per generated series.
pub const RANGES_DIR: &str = "ranges";
/// The declaration in each range directory.
pub const RANGE_FILE: &str = "range.toml";

/// Generated series: series name → file name → bytes (patches, `series`, `SHA256SUMS`).
pub type Output = BTreeMap<String, BTreeMap<String, Vec<u8>>>;

#[derive(Debug, thiserror::Error)]
pub enum GenerateError {
    /// Bad input under patches/src (exit 2): the file, the line where known, why, the fix.
    #[error("{file}{}: {why}\n  help: {help}", line.map(|l| format!(":{l}")).unwrap_or_default())]
    Input {
        file: PathBuf,
        line: Option<usize>,
        why: String,
        help: String,
    },
    /// Writing a generated file failed (exit 1).
    #[error("writing {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
}

impl crate::error::HasKind for GenerateError {
    fn kind(&self) -> crate::error::Kind {
        match self {
            GenerateError::Input { .. } => crate::error::Kind::BadInput,
            GenerateError::Write { .. } => crate::error::Kind::Failure,
        }
    }
}

fn input(file: &Path, line: Option<usize>, why: impl Into<String>, help: &str) -> GenerateError {
    GenerateError::Input {
        file: file.to_path_buf(),
        line,
        why: why.into(),
        help: help.into(),
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Range {
    target: toml::Spanned<String>,
    dir: toml::Spanned<String>,
    package: toml::Spanned<String>,
    author: toml::Spanned<String>,
    date: toml::Spanned<String>,
    #[serde(default = "default_abbrev")]
    abbrev: toml::Spanned<usize>,
    #[serde(rename = "patch", default)]
    patches: Vec<PatchDecl>,
}

fn default_abbrev() -> toml::Spanned<usize> {
    toml::Spanned::new(0..0, 9)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PatchDecl {
    message: toml::Spanned<String>,
    files: Vec<toml::Spanned<Piece>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Piece {
    diff: Option<toml::Spanned<String>>,
    new: Option<toml::Spanned<String>>,
    source: Option<toml::Spanned<String>>,
    edit: Option<toml::Spanned<String>>,
    hunks: Option<toml::Spanned<String>>,
}

/// 1-based line of a byte offset in `text`.
fn line_of(text: &str, offset: usize) -> usize {
    text.as_bytes()[..offset.min(text.len())]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}

/// Everything one range reads, with where it came from for errors.
struct Ctx<'a> {
    src: &'a Path,
    toml_path: PathBuf,
    toml_text: String,
    vars: [(&'static str, String); 2],
}

impl Ctx<'_> {
    fn at<T>(&self, s: &toml::Spanned<T>) -> Option<usize> {
        Some(line_of(&self.toml_text, s.span().start))
    }

    fn err<T>(&self, s: &toml::Spanned<T>, why: impl Into<String>, help: &str) -> GenerateError {
        input(&self.toml_path, self.at(s), why, help)
    }

    /// `@DIR@`/`@PACKAGE@` replaced; any other `@NAME@` left is an error naming the line.
    fn subst(&self, text: &str, file: &Path, line0: usize) -> Result<String, GenerateError> {
        let mut out = text.to_string();
        for (k, v) in &self.vars {
            out = out.replace(&format!("@{k}@"), v);
        }
        for (i, l) in out.lines().enumerate() {
            if let Some(tok) = stray_token(l) {
                return Err(input(
                    file,
                    Some(line0 + i),
                    format!("`{tok}` is not a parameter"),
                    "the parameters are @DIR@ and @PACKAGE@ (the range's `dir` and `package`)",
                ));
            }
        }
        Ok(out)
    }

    /// Reads a piece named relative to patches/src: a plain relative path (no `..`, no
    /// symlink on the way), a regular UTF-8 file. Returns its path and text.
    fn read(&self, name: &toml::Spanned<String>) -> Result<(PathBuf, String), GenerateError> {
        let rel = name.get_ref();
        crate::safe::rel_path(rel).map_err(|why| {
            self.err(
                name,
                format!("piece {why}"),
                "name a file under patches/src by a relative path without `..` (e.g. `shared/gpu_vulkan_linux.go`)",
            )
        })?;
        let mut p = self.src.to_path_buf();
        for c in rel.split('/') {
            p.push(c);
            match std::fs::symlink_metadata(&p) {
                Ok(m) if m.file_type().is_symlink() => {
                    return Err(self.err(
                        name,
                        format!(
                            "piece `{}`: {} is a symlink",
                            crate::safe::show(rel),
                            p.display()
                        ),
                        "keep the pieces as regular files under patches/src",
                    ))
                }
                Ok(_) => {}
                Err(e) => {
                    return Err(self.err(
                        name,
                        format!("piece `{}`: {}: {e}", crate::safe::show(rel), p.display()),
                        "create the piece, or fix the name",
                    ))
                }
            }
        }
        let text = crate::safe::read_text(&p, crate::safe::MAX_TEXT).map_err(|e| {
            self.err(
                name,
                format!("piece `{}`: {e}", crate::safe::show(rel)),
                "a piece is a regular UTF-8 text file",
            )
        })?;
        Ok((p, text))
    }

    /// A tree path of the range (`@DIR@` substituted), checked like a patch's paths.
    fn tree_path(&self, s: &toml::Spanned<String>) -> Result<String, GenerateError> {
        let p = self.subst(s.get_ref(), &self.toml_path, self.at(s).unwrap_or(1))?;
        crate::safe::rel_path(&p).map_err(|why| {
            self.err(
                s,
                format!("tree path {why}"),
                "a path inside the upstream tree, e.g. `@DIR@/gpu_vulkan.go`",
            )
        })?;
        Ok(p)
    }
}

fn stray_token(l: &str) -> Option<&str> {
    let b = l.as_bytes();
    let mut i = 0;
    while let Some(s) = l[i..].find('@').map(|s| s + i) {
        let mut j = s + 1;
        while j < b.len() && (b[j].is_ascii_uppercase() || b[j] == b'_') {
            j += 1;
        }
        if j > s + 1 && j < b.len() && b[j] == b'@' {
            return Some(&l[s..=j]);
        }
        i = s + 1;
    }
    None
}

/// The file name `git format-patch` gives patch `nr` with this subject: the subject's runs
/// of characters other than `[A-Za-z0-9._]` become one `-`, trailing `.`/`-` dropped,
/// the whole cut to 57 bytes, then `.patch` (git's `format_sanitized_subject`).
pub fn patch_file_name(nr: usize, subject: &str) -> String {
    let mut s = String::new();
    let mut space = 2u8;
    let b = subject.as_bytes();
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        if c.is_ascii_alphanumeric() || c == b'.' || c == b'_' {
            if space == 1 {
                s.push('-');
            }
            space = 0;
            s.push(c as char);
            if c == b'.' {
                while i + 1 < b.len() && b[i + 1] == b'.' {
                    i += 1;
                }
            }
        } else {
            space |= 1;
        }
        i += 1;
    }
    while s.ends_with(['.', '-']) {
        s.pop();
    }
    let mut name = format!("{nr:04}-{s}");
    name.truncate(57);
    name + ".patch"
}

/// `Subject: [PATCH n/m] subject`, folded as git does at 78 columns (continuation lines
/// start with one space).
pub fn subject_header(nr: usize, total: usize, subject: &str) -> String {
    let mut out = if total == 1 {
        "Subject: [PATCH] ".to_string()
    } else {
        format!("Subject: [PATCH {nr}/{total}] ")
    };
    let mut col = out.len();
    for (k, w) in subject.split(' ').enumerate() {
        if k == 0 {
            out.push_str(w);
            col += w.len();
        } else if col + 1 + w.len() > 78 {
            out.push_str("\n ");
            out.push_str(w);
            col = 1 + w.len();
        } else {
            out.push(' ');
            out.push_str(w);
            col += 1 + w.len();
        }
    }
    out
}

fn blob_id(bytes: &[u8], abbrev: usize) -> String {
    let id = git2::Oid::hash_object(git2::ObjectType::Blob, bytes)
        .expect("hashing never fails")
        .to_string();
    id[..abbrev].to_string()
}

/// The `diff --git` section that creates `path` with `content`.
fn new_file_diff(path: &str, content: &str, abbrev: usize) -> String {
    let lines: Vec<&str> = content.split_inclusive('\n').collect();
    let n = lines.len();
    let range = if n == 1 {
        "1".to_string()
    } else {
        format!("1,{n}")
    };
    let mut out = format!(
        "diff --git a/{path} b/{path}\nnew file mode 100644\nindex {}..{}\n--- /dev/null\n+++ b/{path}\n@@ -0,0 +{range} @@\n",
        "0".repeat(abbrev),
        blob_id(content.as_bytes(), abbrev)
    );
    for l in lines {
        out.push('+');
        out.push_str(l);
    }
    if !content.ends_with('\n') {
        out.push_str("\n\\ No newline at end of file\n");
    }
    out
}

/// The `diff --git` section from `old` to `new` of the file `path` (mode 100644).
fn edit_diff(path: &str, old: &str, new: &str, abbrev: usize) -> Result<String, git2::Error> {
    let mut opts = git2::DiffOptions::new();
    opts.id_abbrev(abbrev as u16);
    let mut patch = git2::Patch::from_buffers(
        old.as_bytes(),
        Some(Path::new(path)),
        new.as_bytes(),
        Some(Path::new(path)),
        Some(&mut opts),
    )?;
    let buf = patch.to_buf()?;
    Ok(String::from_utf8_lossy(&buf).into_owned())
}

/// Generates every range under `patches_dir/src/ranges`. Reads only.
pub fn generate(patches_dir: &Path) -> Result<Output, GenerateError> {
    let src = patches_dir.join(SRC_DIR);
    let ranges = src.join(RANGES_DIR);
    let rd = std::fs::read_dir(&ranges).map_err(|e| {
        input(
            &ranges,
            None,
            format!("cannot list the ranges: {e}"),
            "generated series are declared in patches/src/ranges/<series>/range.toml",
        )
    })?;
    let mut names = Vec::new();
    for e in rd {
        let e = e.map_err(|e| input(&ranges, None, e.to_string(), "check the directory"))?;
        let name = e.file_name().to_string_lossy().into_owned();
        let path = e.path();
        let bad = crate::safe::file_name(&name)
            .err()
            .or_else(|| {
                (name == SRC_DIR).then(|| format!("`{SRC_DIR}` is the inputs' own directory"))
            })
            .or_else(|| {
                (!std::fs::symlink_metadata(&path).is_ok_and(|m| m.is_dir()))
                    .then(|| "not a directory (a symlink or a file)".to_string())
            });
        if let Some(why) = bad {
            return Err(input(
                &path,
                None,
                why,
                "each entry of patches/src/ranges is a directory named after the series it generates",
            ));
        }
        names.push(name);
    }
    names.sort();
    let mut out = Output::new();
    for name in names {
        let files = generate_range(&src, &name)?;
        out.insert(name, files);
    }
    Ok(out)
}

fn generate_range(src: &Path, name: &str) -> Result<BTreeMap<String, Vec<u8>>, GenerateError> {
    let toml_path = src.join(RANGES_DIR).join(name).join(RANGE_FILE);
    let toml_text = crate::safe::read_text(&toml_path, crate::safe::MAX_TEXT).map_err(|e| {
        input(
            &toml_path,
            None,
            e.to_string(),
            "each range directory has a range.toml (docs/patches.md, \"Generated series\")",
        )
    })?;
    let range: Range = toml::from_str(&toml_text).map_err(|e| {
        let line = e.span().map(|s| line_of(&toml_text, s.start));
        input(
            &toml_path,
            line,
            e.message().to_string(),
            "see docs/patches.md, \"Generated series\", for the keys",
        )
    })?;
    let mut ctx = Ctx {
        src,
        toml_path: toml_path.clone(),
        toml_text,
        vars: [("DIR", String::new()), ("PACKAGE", String::new())],
    };
    let target = range.target.get_ref();
    if target.parse::<crate::source::RepoName>().is_err() {
        return Err(ctx.err(
            &range.target,
            format!("target `{}` names no repository", crate::safe::show(target)),
            "write `ollama` or `llama.cpp`",
        ));
    }
    crate::safe::rel_path(range.dir.get_ref()).map_err(|why| {
        ctx.err(
            &range.dir,
            format!("dir {why}"),
            "the probe's directory in the tree, e.g. `gpu`",
        )
    })?;
    let pkg = range.package.get_ref();
    let go_ident = pkg
        .bytes()
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c == b'_')
        && pkg
            .bytes()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'_');
    if !go_ident {
        return Err(ctx.err(
            &range.package,
            format!(
                "package `{}` is not a Go package name",
                crate::safe::show(pkg)
            ),
            "lower-case letters, digits and `_`, e.g. `gpu`",
        ));
    }
    for s in [&range.author, &range.date] {
        if s.get_ref().is_empty()
            || crate::safe::text(s.get_ref()).is_err()
            || !s.get_ref().is_ascii()
        {
            return Err(ctx.err(
                s,
                "author and date are one line of ASCII text",
                "e.g. author = \"Name <mail>\", date = \"Wed, 25 Nov 2026 00:00:00 +0000\"",
            ));
        }
    }
    let abbrev = *range.abbrev.get_ref();
    if !(7..=40).contains(&abbrev) {
        return Err(ctx.err(
            &range.abbrev,
            format!("abbrev {abbrev} is out of range"),
            "git abbreviates blob ids to 7..40 hex digits",
        ));
    }
    if range.patches.is_empty() {
        return Err(input(
            &toml_path,
            None,
            "no [[patch]]",
            "declare the series' patches in order",
        ));
    }
    ctx.vars = [
        ("DIR", range.dir.get_ref().clone()),
        ("PACKAGE", pkg.clone()),
    ];

    let total = range.patches.len();
    // Files the series itself created, as the later patches see them.
    let mut made: BTreeMap<String, String> = BTreeMap::new();
    let mut out = BTreeMap::new();
    let mut names = Vec::new();
    for (k, p) in range.patches.iter().enumerate() {
        let nr = k + 1;
        let (mpath, mtext) = ctx.read(&p.message)?;
        let mtext = ctx.subst(&mtext, &mpath, 1)?;
        let (subject, body) = match mtext.split_once("\n\n") {
            Some((s, b))
                if !s.is_empty() && !s.contains('\n') && !b.is_empty() && b.ends_with('\n') =>
            {
                (s, b)
            }
            _ => {
                return Err(input(
                    &mpath,
                    Some(1),
                    "a message is a subject line, a blank line and a body ending in a newline",
                    "write it as a commit message",
                ))
            }
        };
        if !subject.is_ascii()
            || crate::safe::text(subject).is_err()
            || subject.contains("  ")
            || subject.starts_with(' ')
            || subject.ends_with(' ')
        {
            return Err(input(
                &mpath,
                Some(1),
                "the subject must be printable ASCII with single spaces",
                "git would encode or re-space it; keep it plain",
            ));
        }
        let mut header = format!(
            "From 0000000000000000000000000000000000000000 Mon Sep 17 00:00:00 2001\nFrom: {}\nDate: {}\n{}\n\n{body}\n",
            range.author.get_ref(),
            range.date.get_ref(),
            subject_header(nr, total, subject)
        );
        let mut sections: Vec<(String, String)> = Vec::new();
        for piece in &p.files {
            let (path, section) = piece_section(&ctx, piece, abbrev, &mut made)?;
            if sections.iter().any(|(q, _)| *q == path) {
                return Err(ctx.err(
                    piece,
                    format!("`{path}` is changed twice in one patch"),
                    "one piece per file and patch",
                ));
            }
            sections.push((path, section));
        }
        if sections.is_empty() {
            return Err(ctx.err(
                &p.message,
                "a patch without files",
                "list its pieces in `files`",
            ));
        }
        // git orders a patch's files by path.
        sections.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
        for (_, s) in &sections {
            header.push_str(s);
        }
        let fname = patch_file_name(nr, subject);
        // The result must be a patch the rest of the tool takes.
        let parsed = parse::parse(&fname, header.as_bytes()).map_err(|e| {
            input(
                &mpath,
                None,
                format!(
                    "the generated {fname} does not parse: line {}: {}",
                    e.line, e.why
                ),
                &e.help,
            )
        })?;
        match parsed
            .upstream_status
            .as_deref()
            .map(parse::check_upstream_status)
        {
            Some(Ok(())) => {}
            Some(Err(why)) => {
                return Err(input(
                    &mpath,
                    None,
                    why,
                    "use one of the Upstream-Status forms of Yocto's patch guidelines",
                ))
            }
            None => {
                return Err(input(
                    &mpath,
                    None,
                    "no Upstream-Status: line",
                    "end the body with e.g. `Upstream-Status: Pending`",
                ))
            }
        }
        if names.contains(&fname) {
            return Err(input(
                &mpath,
                Some(1),
                format!("two patches get the file name {fname}"),
                "give the patches different subjects",
            ));
        }
        names.push(fname.clone());
        out.insert(fname, header.into_bytes());
    }
    let mut series = format!("# target: {target}\n");
    for n in &names {
        series.push_str(n);
        series.push('\n');
    }
    let sums = Series::sums_text(names.iter().map(|n| (n.as_str(), out[n].as_slice())));
    out.insert("series".into(), series.into_bytes());
    out.insert("SHA256SUMS".into(), sums.into_bytes());
    Ok(out)
}

/// One file's `diff --git` section, and its path.
fn piece_section(
    ctx: &Ctx<'_>,
    piece: &toml::Spanned<Piece>,
    abbrev: usize,
    made: &mut BTreeMap<String, String>,
) -> Result<(String, String), GenerateError> {
    let v = piece.get_ref();
    let help = "a piece is { diff = \"…\" }, { new = \"PATH\", source = \"…\" } or { edit = \"PATH\", hunks = \"…\" }";
    match (&v.diff, &v.new, &v.source, &v.edit, &v.hunks) {
        (Some(d), None, None, None, None) => {
            let (p, text) = ctx.read(d)?;
            let text = ctx.subst(&text, &p, 1)?;
            let label = p.display().to_string();
            if !text.starts_with("diff --git ") || !text.ends_with('\n') {
                return Err(input(
                    &p,
                    Some(1),
                    "a diff piece is one `diff --git` section ending in a newline",
                    "paste the file's section of `git format-patch` output",
                ));
            }
            let parsed = parse::parse(&label, text.as_bytes())
                .map_err(|e| input(&p, Some(e.line), e.why, &e.help))?;
            if parsed.files.len() != 1 {
                return Err(input(
                    &p,
                    None,
                    format!("{} files in one diff piece", parsed.files.len()),
                    "one file per diff piece",
                ));
            }
            let path = parsed.files[0].path().to_string();
            if made.contains_key(&path) {
                return Err(input(
                    &p,
                    Some(1),
                    format!("`{path}` is a file the series generates"),
                    "change it with an `edit` piece",
                ));
            }
            Ok((path, text))
        }
        (None, Some(n), Some(s), None, None) => {
            let path = ctx.tree_path(n)?;
            let (p, text) = ctx.read(s)?;
            let text = ctx.subst(&text, &p, 1)?;
            if text.is_empty() {
                return Err(input(&p, None, "an empty source", "a new file has content"));
            }
            if made.contains_key(&path) {
                return Err(ctx.err(
                    n,
                    format!("`{path}` is created twice"),
                    "create a file once; change it later with `edit`",
                ));
            }
            let section = new_file_diff(&path, &text, abbrev);
            made.insert(path.clone(), text);
            Ok((path, section))
        }
        (None, None, None, Some(e), Some(h)) => {
            let path = ctx.tree_path(e)?;
            let Some(old) = made.get(&path).cloned() else {
                return Err(ctx.err(
                    e,
                    format!("`{path}` is not created by an earlier patch of the series"),
                    "`edit` changes a file a `new` piece made; upstream files take a `diff` piece",
                ));
            };
            let (p, hunks) = ctx.read(h)?;
            let hunks = ctx.subst(&hunks, &p, 1)?;
            if !hunks.starts_with("@@ ") || !hunks.ends_with('\n') {
                return Err(input(
                    &p,
                    Some(1),
                    "a hunks piece starts with `@@ ` and ends in a newline",
                    "paste the hunks of the file's diff, from the first `@@` on",
                ));
            }
            let head = format!("diff --git a/{path} b/{path}\n--- a/{path}\n+++ b/{path}\n");
            let bare = format!("{head}{hunks}");
            let label = p.display().to_string();
            let parsed = parse::parse(&label, bare.as_bytes())
                .map_err(|e| input(&p, Some(e.line.saturating_sub(3).max(1)), e.why, &e.help))?;
            let hs = match parsed.files.as_slice() {
                [f] => &f.hunks,
                _ => {
                    return Err(input(
                        &p,
                        None,
                        "hunks of more than one file",
                        "one file's hunks per piece",
                    ))
                }
            };
            let new =
                super::apply::apply_hunks(old.as_bytes(), hs, 0).map_err(|outcomes| {
                    let bad = outcomes
                        .iter()
                        .position(|o| !matches!(o, super::apply::HunkOutcome::Clean))
                        .unwrap_or(0);
                    input(
                    &p,
                    hs.get(bad).map(|h| h.line.saturating_sub(3).max(1)),
                    format!("hunk {} does not apply to `{path}` as the series created it", bad + 1),
                    "refresh the hunks against the shared source (git diff of the two versions)",
                )
                })?;
            let new_text = String::from_utf8(new.bytes)
                .map_err(|_| input(&p, None, "the result is not UTF-8", "keep the sources text"))?;
            // The section as git writes it (libgit2's xdiff, as `rebase-patches` exports):
            // the stored hunks say what changes; their line numbers may lag the source.
            if new_text == old {
                return Err(input(
                    &p,
                    Some(1),
                    format!("the hunks change nothing in `{path}`"),
                    "drop the piece, or give hunks that change the file",
                ));
            }
            let section = edit_diff(&path, &old, &new_text, abbrev).map_err(|e| {
                input(
                    &p,
                    None,
                    format!("diffing `{path}`: {e}"),
                    "report this as a bug",
                )
            })?;
            made.insert(path.clone(), new_text);
            Ok((path, section))
        }
        _ => Err(ctx.err(piece, "a piece takes exactly one of its forms", help)),
    }
}

/// One generated file that differs from what is on disk.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Stale {
    /// `patches/`-relative: `<series>/<file>`.
    pub path: String,
    /// `differs`, `missing` or `not generated` (on disk, not in the output).
    pub why: &'static str,
}

/// The generated files that differ from `patches_dir` (missing, different, or extra files
/// in a generated series' directory).
pub fn stale(patches_dir: &Path, out: &Output) -> Vec<Stale> {
    let mut v = Vec::new();
    for (series, files) in out {
        let dir = patches_dir.join(series);
        for (name, bytes) in files {
            let why = match crate::safe::read_regular(&dir.join(name), crate::safe::MAX_PATCH) {
                Ok(b) if &b == bytes => continue,
                Ok(_) => "differs",
                Err(_) => "missing",
            };
            v.push(Stale {
                path: format!("{series}/{name}"),
                why,
            });
        }
        let mut extra: Vec<String> = std::fs::read_dir(&dir)
            .map(|rd| {
                rd.flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .filter(|n| !files.contains_key(n))
                    .collect()
            })
            .unwrap_or_default();
        extra.sort();
        for n in extra {
            v.push(Stale {
                path: format!("{series}/{n}"),
                why: "not generated",
            });
        }
    }
    v
}

/// Writes the stale files (each atomically) and removes regular files a generated
/// series' directory holds that the output does not. Returns what changed.
pub fn write(patches_dir: &Path, out: &Output) -> Result<Vec<Stale>, GenerateError> {
    for series in out.keys() {
        let dir = patches_dir.join(series);
        if std::fs::symlink_metadata(&dir).is_ok_and(|m| !m.is_dir()) {
            return Err(GenerateError::Write {
                path: dir,
                source: std::io::Error::other(
                    "not a directory (a symlink or a file); refusing to write through it",
                ),
            });
        }
    }
    let st = stale(patches_dir, out);
    for s in &st {
        let path = patches_dir.join(&s.path);
        let (series, name) = s.path.split_once('/').expect("series/file");
        let res = match out.get(series).and_then(|f| f.get(name)) {
            Some(bytes) => crate::fsutil::write_atomic(&path, bytes),
            None => match std::fs::symlink_metadata(&path) {
                Ok(m) if m.is_file() => std::fs::remove_file(&path),
                _ => Err(std::io::Error::other(
                    "not a regular file; left for you to remove",
                )),
            },
        };
        res.map_err(|source| GenerateError::Write { path, source })?;
    }
    Ok(st)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_names_as_git_writes_them() {
        assert_eq!(
            patch_file_name(
                3,
                "gpu: report a fraction of a Vulkan GPU's free memory as usable"
            ),
            "0003-gpu-report-a-fraction-of-a-Vulkan-GPU-s-free-memory-.patch"
        );
        assert_eq!(
            patch_file_name(2, "discover: detect Vulkan GPUs through the Vulkan loader"),
            "0002-discover-detect-Vulkan-GPUs-through-the-Vulkan-loade.patch"
        );
        assert_eq!(
            patch_file_name(1, "gen_linux.sh: build a Vulkan runner"),
            "0001-gen_linux.sh-build-a-Vulkan-runner.patch"
        );
        assert_eq!(patch_file_name(1, "a.. b!"), "0001-a.-b.patch");
    }

    #[test]
    fn subjects_fold_at_78_columns() {
        assert_eq!(
            subject_header(
                3,
                3,
                "gpu: report a fraction of a Vulkan GPU's free memory as usable"
            ),
            "Subject: [PATCH 3/3] gpu: report a fraction of a Vulkan GPU's free memory as\n usable"
        );
        assert_eq!(
            subject_header(3, 3, "discover: report a fraction of a Vulkan GPU's free memory as usable"),
            "Subject: [PATCH 3/3] discover: report a fraction of a Vulkan GPU's free memory\n as usable"
        );
        assert_eq!(subject_header(1, 1, "x: y"), "Subject: [PATCH] x: y");
    }

    #[test]
    fn new_files_carry_git_blob_ids() {
        let d = new_file_diff("gpu/a.go", "package gpu\n", 9);
        assert!(d.contains("@@ -0,0 +1 @@\n+package gpu\n"), "{d}");
        // `printf 'package gpu\n' | git hash-object --stdin`
        assert!(d.contains(&format!(
            "index 000000000..{}\n",
            &blob_id(b"package gpu\n", 9)
        )));
        assert_eq!(blob_id(b"", 7), "e69de29");
    }

    fn tiny(dir: &Path, edit_path: &str) {
        let w = |rel: &str, t: &str| {
            let p = dir.join("src").join(rel);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, t).unwrap();
        };
        w("shared/a.go", "package @PACKAGE@\n\nconst x = 1\n");
        w(
            "shared/a.hunks",
            "@@ -1,3 +1,3 @@\n package @PACKAGE@\n \n-const x = 1\n+const x = 2\n",
        );
        w("shared/1.msg", "@DIR@: add a\n\nUpstream-Status: Pending\n");
        w(
            "shared/2.msg",
            "@DIR@: change a\n\nUpstream-Status: Pending\n",
        );
        w(
            "ranges/demo/range.toml",
            &format!(
                "target = \"ollama\"\ndir = \"probe\"\npackage = \"probe\"\nauthor = \"A <a@b>\"\ndate = \"D\"\n\
                 [[patch]]\nmessage = \"shared/1.msg\"\nfiles = [{{ new = \"@DIR@/a.go\", source = \"shared/a.go\" }}]\n\
                 [[patch]]\nmessage = \"shared/2.msg\"\nfiles = [{{ edit = \"{edit_path}\", hunks = \"shared/a.hunks\" }}]\n"
            ),
        );
    }

    #[test]
    fn a_tiny_range_generates_a_series() {
        let t = tempfile::tempdir().unwrap();
        tiny(t.path(), "@DIR@/a.go");
        let out = generate(t.path()).unwrap();
        let files = &out["demo"];
        assert_eq!(
            String::from_utf8_lossy(&files["series"]),
            "# target: ollama\n0001-probe-add-a.patch\n0002-probe-change-a.patch\n"
        );
        let p2 = String::from_utf8_lossy(&files["0002-probe-change-a.patch"]).into_owned();
        let old = blob_id(b"package probe\n\nconst x = 1\n", 9);
        let new = blob_id(b"package probe\n\nconst x = 2\n", 9);
        assert!(p2.contains(&format!("index {old}..{new} 100644\n")), "{p2}");
        assert!(p2.starts_with("From 0000000000000000000000000000000000000000 Mon Sep 17 00:00:00 2001\nFrom: A <a@b>\nDate: D\nSubject: [PATCH 2/2] probe: change a\n\nUpstream-Status: Pending\n\ndiff --git a/probe/a.go b/probe/a.go\n"), "{p2}");
        // Two patches, series and SHA256SUMS: all missing.
        assert_eq!(stale(t.path(), &out).len(), 4);
        write(t.path(), &out).unwrap();
        assert!(stale(t.path(), &out).is_empty());
    }

    #[test]
    fn an_edit_of_an_upstream_file_is_refused() {
        let t = tempfile::tempdir().unwrap();
        tiny(t.path(), "@DIR@/other.go");
        let e = generate(t.path()).unwrap_err().to_string();
        assert!(
            e.contains("range.toml:11: `probe/other.go` is not created by an earlier patch"),
            "{e}"
        );
    }

    #[test]
    fn stray_tokens_are_found() {
        assert_eq!(stray_token("a @DIRR@ b"), Some("@DIRR@"));
        assert_eq!(stray_token("mail <a@b.c> @ x@Y"), None);
    }
}
