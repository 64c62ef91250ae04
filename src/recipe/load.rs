//! Reading, merging and checking recipes. Every problem becomes a `Diagnostic` that names
//! file:line:column and the fix; checking goes on after an error so one run shows them all.

use std::collections::BTreeMap;
use std::ops::Range;
use std::path::{Path, PathBuf};

use toml::Spanned;

use super::model::*;
use crate::diag::{Diagnostic, Diagnostics, Location};
use crate::patch::series::{Series, SeriesError};
use crate::project::Project;
use crate::source::RepoName;
use crate::version::{TagRange, Version};

/// One parsed file and its text, for turning spans into locations.
struct Parsed {
    path: PathBuf,
    text: String,
    raw: RawRecipe,
}

impl Parsed {
    fn at(&self, span: Range<usize>) -> Location {
        Location::from_span(&self.path, &self.text, span)
    }
}

struct Ctx {
    diags: Vec<Diagnostic>,
}

impl Ctx {
    fn err(&mut self, location: Location, message: impl Into<String>, help: impl Into<String>) {
        self.diags.push(Diagnostic {
            location,
            message: message.into(),
            help: help.into(),
        });
    }
}

fn parse(path: &Path) -> Result<Parsed, Diagnostic> {
    let text = crate::safe::read_text(path, crate::safe::MAX_TEXT).map_err(|e| Diagnostic {
        location: Location::file_only(path),
        message: format!("cannot read the recipe: {e}"),
        help: format!(
            "check the path; recipes are regular TOML files of at most {} KiB (see docs/recipe.md)",
            crate::safe::MAX_TEXT / 1024
        ),
    })?;
    match toml::from_str::<RawRecipe>(&text) {
        Ok(raw) => Ok(Parsed {
            path: path.to_path_buf(),
            text,
            raw,
        }),
        Err(e) => {
            let span = e.span().unwrap_or(0..0);
            let message = e.message().trim().to_string();
            let help = help_for_parse_error(&message);
            Err(Diagnostic {
                location: Location::from_span(path, &text, span),
                message,
                help,
            })
        }
    }
}

fn help_for_parse_error(message: &str) -> String {
    if message.starts_with("unknown field") {
        "remove the key or fix its spelling; the keys allowed here are listed above and in docs/recipe.md".into()
    } else if message.starts_with("invalid type") {
        "give the value the type docs/recipe.md shows for this key (strings in quotes, lists in [ ])".into()
    } else if message.starts_with("unknown variant") {
        "use one of the values listed above".into()
    } else if message.starts_with("missing field") {
        "add the key; docs/recipe.md lists the required keys of each table".into()
    } else if message.starts_with("invalid value") {
        "give a value in the range docs/recipe.md shows for this key (e.g. `fuzz` is a whole number, 0 or more)".into()
    } else if message.starts_with("unknown era") {
        "use an era label from UPSTREAM.md §1: 0, 1a, 1b, 2, 3, 4 or 5".into()
    } else {
        "fix the TOML syntax at this position (docs/recipe.md has a complete example)".into()
    }
}

fn is_commit(s: &str) -> bool {
    s.len() == 40
        && s.bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
}

/// Loads a recipe or template and resolves it against its template.
pub fn load(path: &Path, project: &Project) -> Result<Recipe, Diagnostics> {
    if let Err(why) = crate::safe::recipe_name_of(path) {
        return Err(Diagnostics(vec![Diagnostic {
            location: Location::file_only(Path::new(&crate::safe::show(
                &path.display().to_string(),
            ))),
            message: why,
            help: "rename the file, e.g. ollama-v0.24.0.toml (the name becomes work/builds/<name> and work/rebase/<name>)".into(),
        }]));
    }
    let me = parse(path).map_err(|d| Diagnostics(vec![d]))?;
    let mut cx = Ctx { diags: Vec::new() };

    let template = match (&me.raw.extends, &me.raw.template) {
        (Some(ext), Some(_)) => {
            cx.err(
                me.at(ext.span()),
                "a file cannot both be a template ([template]) and extend one",
                "remove `extends` (a template stands alone) or remove the [template] table",
            );
            None
        }
        (Some(ext), None) => match resolve_template(ext.get_ref(), path, project) {
            Ok(tpath) => match parse(&tpath) {
                Ok(t) => {
                    if t.raw.template.is_none() {
                        cx.err(
                            me.at(ext.span()),
                            format!("{} is not an era template (it has no [template] table)", tpath.display()),
                            "extend one of the templates in recipes/ (era-1a, era-1b, era-4, era-5)",
                        );
                    }
                    if let (Some(ext), Some(_)) = (&t.raw.extends, &t.raw.template) {
                        cx.err(
                            t.at(ext.span()),
                            "templates cannot extend other templates",
                            "remove `extends` from the template",
                        );
                    }
                    Some(t)
                }
                Err(d) => {
                    cx.diags.push(d);
                    None
                }
            },
            Err((message, help)) => {
                cx.err(me.at(ext.span()), message, help);
                None
            }
        },
        (None, Some(_)) => None,
        (None, None) => {
            cx.err(
                Location { file: path.to_path_buf(), line: 1, column: 1 },
                "the recipe neither extends an era template nor is one",
                "add `extends = \"era-N\"` naming a template in recipes/, or create it with `ollama-vulkan recipe new --ollama TAG`",
            );
            None
        }
    };
    if !cx.diags.is_empty() {
        return Err(Diagnostics(cx.diags));
    }
    let recipe = resolve(&me, template.as_ref(), project, &mut cx);
    if cx.diags.is_empty() {
        Ok(recipe.expect("resolve returns a recipe when it reports no error"))
    } else {
        Err(Diagnostics(cx.diags))
    }
}

/// `era-4` → `<project>/recipes/era-4.toml`; a value with `/` or `.toml` is a path
/// relative to the recipe, which may not be absolute or climb with `..`.
fn resolve_template(
    name: &str,
    recipe: &Path,
    project: &Project,
) -> Result<PathBuf, (String, String)> {
    let shown = crate::safe::show(name);
    if name.starts_with('/')
        || name.split('/').any(|c| c == "..")
        || crate::safe::text(name).is_err()
    {
        return Err((
            format!("`extends = \"{shown}\"` is an absolute path or climbs with `..`"),
            format!(
                "name a template in {} (`era-4`), or a path below the recipe's directory",
                project.recipes_dir().display()
            ),
        ));
    }
    let candidate = if name.contains('/') || name.ends_with(".toml") {
        recipe.parent().unwrap_or(Path::new(".")).join(name)
    } else {
        project.recipes_dir().join(format!("{name}.toml"))
    };
    if candidate.is_file() {
        return Ok(candidate);
    }
    let available = project.template_names();
    Err((
        format!("template `{shown}` not found"),
        format!(
            "looked for {}; templates available in {}: {}",
            candidate.display(),
            project.recipes_dir().display(),
            if available.is_empty() {
                "none".to_string()
            } else {
                available.join(", ")
            }
        ),
    ))
}

fn range(p: &Parsed, raw: &Spanned<RawRange>, cx: &mut Ctx) -> TagRange {
    let mut bound = |v: &Option<Spanned<String>>| {
        v.as_ref()
            .and_then(|s| match s.get_ref().parse::<Version>() {
                Ok(v) => Some(v),
                Err(e) => {
                    cx.err(
                        p.at(s.span()),
                        e,
                        "write a tag such as \"v0.12.6\" or \"v0.30.0-rc0\"",
                    );
                    None
                }
            })
    };
    let r = raw.get_ref();
    let out = TagRange {
        from: bound(&r.from),
        to: bound(&r.to),
        until: bound(&r.until),
    };
    if r.to.is_some() && r.until.is_some() {
        cx.err(
            p.at(raw.span()),
            "a tag range takes `to` (inclusive) or `until` (exclusive), not both",
            "keep one of them",
        );
    }
    if let (Some(a), Some(b)) = (&out.from, out.to.as_ref().or(out.until.as_ref())) {
        if a > b || (a == b && out.until.is_some()) {
            cx.err(
                p.at(raw.span()),
                format!("empty tag range: from {a} to {b}"),
                "`from` must be older than the end of the range",
            );
        }
    }
    out
}

/// Picks the recipe's value, else the template's, remembering which file it came from.
fn pick<'a, T>(
    me: &'a Parsed,
    t: Option<&'a Parsed>,
    f: impl Fn(&'a RawRecipe) -> Option<&'a T>,
) -> Option<(&'a Parsed, &'a T)> {
    f(&me.raw)
        .map(|v| (me, v))
        .or_else(|| t.and_then(|t| f(&t.raw).map(|v| (t, v))))
}

fn merged_map(
    t: Option<&BTreeMap<String, String>>,
    me: Option<&BTreeMap<String, String>>,
) -> BTreeMap<String, String> {
    let mut out = t.cloned().unwrap_or_default();
    out.extend(me.cloned().unwrap_or_default());
    out
}

/// A package list with additions appended once each, in order.
fn with_extras<'a>(
    mut list: Vec<String>,
    extras: impl Iterator<Item = &'a Vec<String>>,
) -> Vec<String> {
    for p in extras.flatten() {
        if !list.contains(p) {
            list.push(p.clone());
        }
    }
    list
}

fn resolve(me: &Parsed, t: Option<&Parsed>, project: &Project, cx: &mut Ctx) -> Option<Recipe> {
    let base = match super::packages::load(&project.recipes_dir()) {
        Ok(b) => b,
        Err(d) => {
            cx.diags.push(d);
            super::packages::compiled()
        }
    };
    let tpl = t.unwrap_or(me); // the file holding [template]
    let is_template = t.is_none();

    // Era: the template's, which a recipe may restate but not change.
    let era = match (&tpl.raw.era, t.and(me.raw.era.as_ref())) {
        (Some(te), Some(re)) if te.get_ref() != re.get_ref() => {
            cx.err(
                me.at(re.span()),
                format!(
                    "era {} contradicts the template's era {}",
                    re.get_ref(),
                    te.get_ref()
                ),
                format!(
                    "set `era = \"{}\"` or extend the template of era {}",
                    te.get_ref(),
                    re.get_ref()
                ),
            );
            None
        }
        (Some(te), _) => Some(*te.get_ref()),
        (None, _) => {
            cx.err(
                Location {
                    file: tpl.path.clone(),
                    line: 1,
                    column: 1,
                },
                "the template has no `era`",
                "add `era = \"N\"` with a label from UPSTREAM.md §1 (1a, 1b, 4, 5)",
            );
            None
        }
    };

    let tt = tpl.raw.template.as_ref();
    let tags = match tt.and_then(|t| t.tags.as_ref()) {
        Some(r) => range(tpl, r, cx),
        None => {
            cx.err(
                Location { file: tpl.path.clone(), line: 1, column: 1 },
                "the template has no tag range",
                "add `[template] tags = { from = \"vX.Y.Z\", to = \"vA.B.C\" }` (`to` inclusive, or `until` exclusive; omit both for open-ended)",
            );
            TagRange::default()
        }
    };
    if let (Some(era), Some(from)) = (era, &tags.from) {
        if !era.has_vulkan_path() {
            cx.err(
                Location { file: tpl.path.clone(), line: 1, column: 1 },
                format!("era {era} has no Vulkan path ({})", era.why_no_vulkan()),
                format!("templates exist for eras 1a, 1b, 4 and 5; {from} belongs to one of those or is unsupported"),
            );
        }
    }

    let mut unsupported = Vec::new();
    for g in tt
        .and_then(|t| t.unsupported.as_ref())
        .into_iter()
        .flatten()
    {
        let r = range(tpl, &g.tags, cx);
        if r.from.is_none() || (r.to.is_none() && r.until.is_none()) {
            cx.err(
                tpl.at(g.tags.span()),
                "[[template.unsupported]] tags needs `from` and `to` (or `until`)",
                "name the first and last tag the template leaves out",
            );
        }
        if [&r.from, &r.to]
            .into_iter()
            .flatten()
            .any(|v| tags.contains(v))
        {
            cx.err(
                tpl.at(g.tags.span()),
                format!(
                    "[[template.unsupported]] tags {r} overlap the template's own range {tags}"
                ),
                "list only tags the template leaves out",
            );
        }
        let why = g.why.get_ref();
        if let Err(e) = crate::safe::text(why).and_then(|_| {
            if why.trim().is_empty() {
                Err("an empty reason".to_string())
            } else {
                Ok(())
            }
        }) {
            cx.err(
                tpl.at(g.why.span()),
                format!("[[template.unsupported]] why: {e}"),
                "say in one line why these tags have no Vulkan path",
            );
        }
        unsupported.push(Unsupported {
            tags: r,
            why: why.clone(),
        });
    }

    // Ollama source.
    let url = pick(me, t, |r| r.ollama.as_ref()?.url.as_ref());
    let ollama_url = match url {
        Some((_, u)) => u.get_ref().clone(),
        None => {
            cx.err(
                Location {
                    file: tpl.path.clone(),
                    line: 1,
                    column: 1,
                },
                "no [ollama] url",
                "add `[ollama] url = \"https://github.com/ollama/ollama.git\"` to the template",
            );
            String::new()
        }
    };
    let ollama = me.raw.ollama.as_ref();
    let tag = ollama.and_then(|o| o.tag.as_ref());
    let commit = ollama.and_then(|o| o.commit.as_ref());
    let mut tag_version = None;
    if let Some(tag) = tag {
        match tag.get_ref().parse::<Version>() {
            Ok(v) => {
                if !tags.contains(&v) {
                    cx.err(
                        me.at(tag.span()),
                        format!(
                            "tag {} is outside the range of template {} ({tags})",
                            tag.get_ref(),
                            tpl.path.display()
                        ),
                        format!(
                            "extend the template of {}'s era instead; `ollama-vulkan recipe new --ollama {}` finds it",
                            tag.get_ref(),
                            tag.get_ref()
                        ),
                    );
                }
                tag_version = Some(v);
            }
            Err(e) => cx.err(
                me.at(tag.span()),
                e,
                "use the Ollama release tag, e.g. \"v0.24.0\"",
            ),
        }
    }
    for c in [
        commit,
        me.raw.llamacpp.as_ref().and_then(|l| l.commit.as_ref()),
    ]
    .into_iter()
    .flatten()
    {
        if !is_commit(c.get_ref()) {
            cx.err(
                me.at(c.span()),
                format!("`{}` is not a commit id: a pin must be 40 lowercase hex digits", c.get_ref()),
                "write the full commit (`git rev-parse TAG^{commit}` prints it); abbreviated ids can become ambiguous",
            );
        }
    }
    if !is_template && (tag.is_none() || commit.is_none()) {
        cx.err(
            Location { file: me.path.clone(), line: 1, column: 1 },
            "a recipe must pin [ollama] tag and commit",
            "add `[ollama] tag = \"vX.Y.Z\"` and `commit = \"<40 hex>\"`, or generate the recipe with `ollama-vulkan recipe new --ollama TAG`",
        );
    }
    if is_template && (tag.is_some() || commit.is_some()) {
        cx.err(
            me.at(tag.or(commit).unwrap().span()),
            "an era template must not pin an Ollama tag or commit",
            "pin tags in per-tag recipes (`ollama-vulkan recipe new`), which extend this template",
        );
    }

    // llama.cpp.
    let source = pick(me, t, |r| r.llamacpp.as_ref()?.source.as_ref());
    let llama_source = match (source, era) {
        (Some((p, s)), Some(era)) => {
            if let Some(expected) = LlamaSource::for_era(era) {
                if *s.get_ref() != expected {
                    cx.err(
                        p.at(s.span()),
                        format!(
                            "era {era} places llama.cpp as `{}`, not `{}`",
                            expected.as_str(),
                            s.get_ref().as_str()
                        ),
                        format!("set `source = \"{}\"`", expected.as_str()),
                    );
                }
            }
            Some(*s.get_ref())
        }
        (None, _) => {
            cx.err(
                Location { file: tpl.path.clone(), line: 1, column: 1 },
                "no [llamacpp] source",
                "add `[llamacpp] source = \"submodule\" | \"vendored\" | \"fetch-content\"` to the template",
            );
            None
        }
        _ => None,
    };
    let llama_url =
        pick(me, t, |r| r.llamacpp.as_ref()?.url.as_ref()).map(|(_, u)| u.get_ref().clone());
    let llama_version = me.raw.llamacpp.as_ref().and_then(|l| l.version.as_ref());
    if let Some(v) = llama_version {
        if !super::era::is_build_tag(v.get_ref()) {
            cx.err(
                me.at(v.span()),
                format!("`{}` is not a llama.cpp release tag", v.get_ref()),
                "write it as bNNNN, e.g. \"b10488\"",
            );
        }
    }

    let backend = llama_backend(me, t, llama_source, tag_version.as_ref(), cx);

    // Series: the recipe's list replaces the template's.
    let mut series = Vec::new();
    if let Some((p, list)) = pick(me, t, |r| r.series.as_ref()) {
        let mut seen = Vec::new();
        for s in list.get_ref() {
            let name = s.name.get_ref();
            if seen.contains(name) {
                cx.err(
                    p.at(s.name.span()),
                    format!("series `{name}` is listed twice"),
                    "keep one entry per series",
                );
                continue;
            }
            seen.push(name.clone());
            let sr = s.tags.as_ref().map(|r| range(p, r, cx)).unwrap_or_default();
            if let Some(v) = &tag_version {
                if !sr.contains(v) {
                    continue; // not for this tag (e.g. the LLAMA_VULKAN series before v0.2.0)
                }
            }
            if name.is_empty() || name.contains(['/', '\\']) || name.starts_with('.') {
                cx.err(
                    p.at(s.name.span()),
                    format!("`{name}` is not a series name"),
                    "use the name of a directory under patches/",
                );
                continue;
            }
            if matches!(*s.repo.get_ref(), RepoName::Virglrenderer | RepoName::Mesa) {
                cx.err(
                    p.at(s.repo.span()),
                    format!("series `{name}`: an Ollama recipe patches ollama or llama.cpp, not {}", s.repo.get_ref()),
                    "set repo = \"ollama\" or \"llama.cpp\" (the Venus lab's own series are pinned in recipes/lab/venus.toml and recipes/lab/mesa.toml)",
                );
                continue;
            }
            let dir = project.patches_dir().join(name);
            match Series::load(&dir) {
                Ok(loaded) => {
                    if let Some(t) = loaded.target.filter(|t| t != s.repo.get_ref()) {
                        cx.err(
                            p.at(s.repo.span()),
                            format!("series `{name}` targets {t} (its series file says so), not {}", s.repo.get_ref()),
                            format!("set repo = \"{t}\""),
                        );
                    }
                    if let Err(e) = loaded.parse_patches() {
                        cx.err(
                            p.at(s.name.span()),
                            format!("series `{name}`: {e}"),
                            "fix the patch, then refresh SHA256SUMS and the pin",
                        );
                    }
                    if loaded.hash != *s.sha256.get_ref() {
                        cx.err(
                            p.at(s.sha256.span()),
                            format!(
                                "series `{name}` hash mismatch: pinned {} but {}/SHA256SUMS hashes to {}",
                                s.sha256.get_ref(),
                                dir.display(),
                                loaded.hash
                            ),
                            format!("if the change to the series is intended, pin it: sha256 = \"{}\"", loaded.hash),
                        );
                    }
                }
                Err(SeriesError::Missing(d)) => cx.err(
                    p.at(s.name.span()),
                    format!("series `{name}` not found: {} does not exist", d.display()),
                    format!("create it under {} or fix the name", project.patches_dir().display()),
                ),
                Err(e) => cx.err(
                    p.at(s.name.span()),
                    format!("series `{name}` is broken: {e}"),
                    "fix the series directory, then refresh SHA256SUMS and the pin (`sha256sum PATCHES > SHA256SUMS`)",
                ),
            }
            series.push(SeriesPin {
                name: name.clone(),
                repo: *s.repo.get_ref(),
                sha256: s.sha256.get_ref().clone(),
                dir,
                tags: sr,
                fuzz: s.fuzz.as_ref().map(|f| *f.get_ref()).unwrap_or(0),
            });
        }
    }

    // Build and image: scalars and lists from the recipe win, maps merge.
    let tb = t.and_then(|t| t.raw.build.as_ref());
    let mb = me.raw.build.as_ref();
    let driver = pick(me, t, |r| r.build.as_ref()?.driver.as_ref());
    if let (Some((p, d)), Some(era)) = (driver, era) {
        if let Some(expected) = Driver::for_era(era) {
            if *d.get_ref() != expected {
                cx.err(
                    p.at(d.span()),
                    format!(
                        "era {era} builds with driver {expected:?}, not {:?}",
                        d.get_ref()
                    ),
                    "use the driver of the era's template",
                );
            }
        }
    }
    let list = |f: fn(&RawBuild) -> Option<&Vec<String>>| {
        mb.and_then(f)
            .or_else(|| tb.and_then(f))
            .cloned()
            .unwrap_or_default()
    };
    let mut build = Build {
        driver: driver.map(|(_, d)| *d.get_ref()),
        presets: list(|b| b.presets.as_ref()),
        cmake_options: list(|b| b.cmake_options.as_ref()),
        env: merged_map(
            tb.and_then(|b| b.env.as_ref()),
            mb.and_then(|b| b.env.as_ref()),
        ),
        go_flags: list(|b| b.go_flags.as_ref()),
        sparse: list(|b| b.sparse.as_ref()),
        missing_ok: list(|b| b.missing_ok.as_ref()),
        regenerate: mb
            .and_then(|b| b.regenerate.as_ref())
            .or_else(|| tb.and_then(|b| b.regenerate.as_ref()))
            .cloned()
            .unwrap_or_default(),
        steps: mb
            .and_then(|b| b.steps.as_ref())
            .or_else(|| tb.and_then(|b| b.steps.as_ref()))
            .cloned()
            .unwrap_or_default(),
        check_libs: list(|b| b.check_libs.as_ref()),
        cmake_min: mb
            .and_then(|b| b.cmake_min.clone())
            .or_else(|| tb.and_then(|b| b.cmake_min.clone())),
        builder_packages: with_extras(
            mb.and_then(|b| b.builder_packages.as_ref())
                .or_else(|| tb.and_then(|b| b.builder_packages.as_ref()))
                .cloned()
                .unwrap_or_else(|| base.builder.clone()),
            [tb, mb]
                .into_iter()
                .flatten()
                .filter_map(|b| b.builder_packages_extra.as_ref()),
        ),
        cross_packages: base.cross_target.clone(),
        keep_build_dirs: list(|b| b.keep_build_dirs.as_ref()),
        arches: list(|b| b.arches.as_ref()),
    };
    for a in &build.arches {
        if !crate::target::Arch::ALL.iter().any(|k| k.name() == a) {
            cx.err(
                key_at(
                    if mb.is_some_and(|b| b.arches.is_some()) {
                        me
                    } else {
                        t.unwrap_or(me)
                    },
                    "arches",
                    "",
                ),
                format!("[build] arches: `{a}` is not an architecture this tool builds"),
                "list some of \"amd64\", \"arm64\" (or leave `arches` out: every one)",
            );
        }
    }
    // Steps with `tags`: every range checked; a tag's recipe keeps the steps for it.
    let steps_in = if mb.is_some_and(|b| b.steps.is_some()) {
        me
    } else {
        t.unwrap_or(me)
    };
    build.steps.retain(|step| {
        let Some(st) = &step.tags else { return true };
        match st.range() {
            Ok(r) => tag_version.as_ref().is_none_or(|v| r.contains(v)),
            Err(why) => {
                cx.err(
                    key_at(steps_in, "steps", ""),
                    format!("[[build.steps]] `{}` tags: {why}", step.name),
                    "write `tags = { from = \"vX.Y.Z\", to = \"vA.B.C\" }` (`to` inclusive or `until` exclusive)",
                );
                true
            }
        }
    });
    let ti = t.and_then(|t| t.raw.image.as_ref());
    let mi = me.raw.image.as_ref();
    let ilist = |f: fn(&RawImage) -> Option<&Vec<String>>| {
        mi.and_then(f)
            .or_else(|| ti.and_then(f))
            .cloned()
            .unwrap_or_default()
    };
    let image = Image {
        variants: ilist(|i| i.variants.as_ref()),
        base: merged_map(
            ti.and_then(|i| i.base.as_ref()),
            mi.and_then(|i| i.base.as_ref()),
        ),
        runtime_packages: with_extras(
            mi.and_then(|i| i.runtime_packages.as_ref())
                .or_else(|| ti.and_then(|i| i.runtime_packages.as_ref()))
                .cloned()
                .unwrap_or_else(|| base.runtime.clone()),
            [ti, mi]
                .into_iter()
                .flatten()
                .filter_map(|i| i.runtime_packages_extra.as_ref()),
        ),
        env: merged_map(
            ti.and_then(|i| i.env.as_ref()),
            mi.and_then(|i| i.env.as_ref()),
        ),
    };
    check_values(me, t, &build, &image, cx);
    for (p, u) in [url, pick(me, t, |r| r.llamacpp.as_ref()?.url.as_ref())]
        .into_iter()
        .flatten()
    {
        let v = u.get_ref();
        if let Err(why) = crate::safe::text(v) {
            cx.err(p.at(u.span()), why, "write the URL on one line");
        } else if v.starts_with('-') {
            cx.err(
                p.at(u.span()),
                format!(
                    "`{v}` is not a URL: it starts with `-` and git would read it as an option"
                ),
                "write the repository's URL, e.g. https://github.com/ollama/ollama.git",
            );
        }
    }
    for key in image.base.keys() {
        if key != "builder" && key != "runtime" {
            cx.err(
                Location::file_only(&me.path),
                format!("[image.base] has unknown role `{key}`"),
                "the roles are `builder` and `runtime`",
            );
        }
    }

    Some(Recipe {
        path: me.path.clone(),
        template: t.map(|t| TemplateRef {
            name: t
                .path
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default(),
            path: t.path.clone(),
        }),
        is_template,
        era: era?,
        tags,
        summary: tt.and_then(|t| t.summary.clone()),
        unsupported,
        ollama: Ollama {
            url: ollama_url,
            tag: tag.map(|t| t.get_ref().clone()),
            commit: commit.map(|c| c.get_ref().clone()),
        },
        llamacpp: LlamaCpp {
            url: llama_url,
            source: llama_source?,
            commit: me
                .raw
                .llamacpp
                .as_ref()
                .and_then(|l| l.commit.as_ref())
                .map(|c| c.get_ref().clone()),
            version: llama_version.map(|v| v.get_ref().clone()),
            backend,
        },
        series,
        build,
        image,
        smoke: me
            .raw
            .smoke
            .clone()
            .or_else(|| t.and_then(|t| t.raw.smoke.clone()))
            .unwrap_or_default(),
    })
}

/// Where `key` is assigned in `p` (`key =` or `"key" =`), else where `fallback` is, else
/// the file.
fn key_at(p: &Parsed, key: &str, fallback: &str) -> Location {
    for k in [key, fallback] {
        if k.is_empty() {
            continue;
        }
        for (i, _) in p.text.match_indices(k) {
            let b = p.text.as_bytes();
            let before_ok = i == 0 || !(b[i - 1].is_ascii_alphanumeric() || b[i - 1] == b'_');
            let after = p.text[i + k.len()..].trim_start_matches(['"', '\'']);
            let after = after.trim_start_matches([' ', '\t']);
            if before_ok && (after.starts_with('=') || after.starts_with(']')) {
                return p.at(i..i);
            }
        }
    }
    Location::file_only(&p.path)
}

/// Values that reach a shell, a Dockerfile or a path, checked at load so `recipe check`
/// refuses what the renderers would (src/safe.rs has the rules).
/// Debian package names of one list, reported at `key` in the file that holds it.
fn check_packages(
    cx: &mut Ctx,
    file: &Parsed,
    section: &str,
    key: &str,
    list: Option<&Vec<String>>,
) {
    for pkg in list.into_iter().flatten() {
        if let Err(why) = crate::safe::package_name(pkg) {
            cx.err(
                key_at(file, key, ""),
                format!("[{section}] {key}: {why}"),
                "list Debian package names only (`apt-cache policy NAME` shows one exists)",
            );
        }
    }
}

fn check_values(me: &Parsed, t: Option<&Parsed>, build: &Build, image: &Image, cx: &mut Ctx) {
    let mb = me.raw.build.as_ref();
    let mi = me.raw.image.as_ref();
    // The file that holds a list (the recipe's replaces the template's).
    let list_file = |in_me: bool| if in_me { me } else { t.unwrap_or(me) };
    // The file that holds a map key (the recipe's wins).
    let map_file = |m: Option<&BTreeMap<String, String>>, k: &str| {
        if m.is_some_and(|m| m.contains_key(k)) {
            me
        } else {
            t.unwrap_or(me)
        }
    };
    let text_help = "write the value on one line, without control characters: it reaches a shell and the Dockerfile";
    let texts = |cx: &mut Ctx, key: &str, in_me: bool, vals: &[String]| {
        for v in vals {
            if let Err(why) = crate::safe::text(v) {
                let f = list_file(in_me);
                cx.err(
                    key_at(f, key, ""),
                    format!("[build] {key}: {why}"),
                    text_help,
                );
            }
        }
    };
    texts(
        cx,
        "cmake_options",
        mb.is_some_and(|b| b.cmake_options.is_some()),
        &build.cmake_options,
    );
    texts(
        cx,
        "presets",
        mb.is_some_and(|b| b.presets.is_some()),
        &build.presets,
    );
    texts(
        cx,
        "go_flags",
        mb.is_some_and(|b| b.go_flags.is_some()),
        &build.go_flags,
    );
    texts(
        cx,
        "sparse",
        mb.is_some_and(|b| b.sparse.is_some()),
        &build.sparse,
    );
    texts(
        cx,
        "missing_ok",
        mb.is_some_and(|b| b.missing_ok.is_some()),
        &build.missing_ok,
    );
    for (key, in_me, vals) in [
        (
            "check_libs",
            mb.is_some_and(|b| b.check_libs.is_some()),
            &build.check_libs,
        ),
        (
            "keep_build_dirs",
            mb.is_some_and(|b| b.keep_build_dirs.is_some()),
            &build.keep_build_dirs,
        ),
    ] {
        for v in vals {
            if let Err(why) = crate::safe::rel_path(v) {
                cx.err(
                    key_at(list_file(in_me), key, ""),
                    format!("[build] {key}: {why}"),
                    "give a relative path inside the tree (no `..`, no leading `/`)",
                );
            }
        }
    }
    // Package names where they are written: the list that wins, and each file's additions
    // (recipes/base/packages.toml is checked when it is read).
    let tb = t.and_then(|t| t.raw.build.as_ref());
    let in_me = mb.is_some_and(|b| b.builder_packages.is_some());
    let winning = mb
        .and_then(|b| b.builder_packages.as_ref())
        .or_else(|| tb.and_then(|b| b.builder_packages.as_ref()));
    check_packages(cx, list_file(in_me), "build", "builder_packages", winning);
    for (file, raw) in [(Some(me), mb), (t, tb)] {
        if let (Some(file), Some(extra)) =
            (file, raw.and_then(|b| b.builder_packages_extra.as_ref()))
        {
            check_packages(cx, file, "build", "builder_packages_extra", Some(extra));
        }
    }
    if let Some(v) = &build.cmake_min {
        if let Err(why) = crate::safe::dotted_version(v) {
            let in_me = mb.is_some_and(|b| b.cmake_min.is_some());
            cx.err(
                key_at(list_file(in_me), "cmake_min", ""),
                format!("[build] cmake_min: {why}"),
                "write the least CMake version the era needs, e.g. cmake_min = \"3.21\"",
            );
        }
    }
    let env_check = |cx: &mut Ctx,
                     table: &str,
                     m: Option<&BTreeMap<String, String>>,
                     fallback: &str,
                     env: &BTreeMap<String, String>| {
        for (k, v) in env {
            let f = map_file(m, k);
            if let Err(why) = crate::safe::env_key(k) {
                cx.err(
                    key_at(f, k, fallback),
                    format!("[{table}] key {why}"),
                    "name the variable with letters, digits and `_` only",
                );
            }
            if let Err(why) = crate::safe::env_value(v) {
                cx.err(
                    key_at(f, k, fallback),
                    format!("[{table}] {k}: {why}"),
                    text_help,
                );
            }
        }
    };
    env_check(
        cx,
        "build.env",
        mb.and_then(|b| b.env.as_ref()),
        "env",
        &build.env,
    );
    env_check(
        cx,
        "image.env",
        mi.and_then(|i| i.env.as_ref()),
        "env",
        &image.env,
    );
    let in_me = mb.is_some_and(|b| b.steps.is_some());
    let sf = list_file(in_me);
    for (i, step) in build.steps.iter().enumerate() {
        let n = i + 1;
        let bad = |cx: &mut Ctx, what: &str, why: String, help: &str| {
            cx.err(
                key_at(sf, "steps", ""),
                format!("[[build.steps]] #{n} {what}: {why}"),
                help,
            );
        };
        if let Err(why) = crate::safe::text(&step.name) {
            bad(cx, "name", why, text_help);
        }
        if let Some(c) = &step.cwd {
            if let Err(why) = crate::safe::text(c) {
                bad(cx, "cwd", why, text_help);
            } else if c.split('/').any(|x| x == "..") || c.starts_with('/') {
                bad(
                    cx,
                    "cwd",
                    format!("`{c}` leaves the tree"),
                    "give a directory relative to the Ollama tree, or `{llama}/DIR`",
                );
            }
        }
        for a in &step.run {
            if let Err(why) = crate::safe::text(a) {
                bad(cx, "run", why, text_help);
            }
        }
        for (k, v) in &step.env {
            if let Err(why) = crate::safe::env_key(k) {
                bad(
                    cx,
                    "env key",
                    why,
                    "name the variable with letters, digits and `_` only",
                );
            }
            if let Err(why) = crate::safe::text(v) {
                bad(cx, &format!("env {k}"), why, text_help);
            }
        }
    }
    let in_me = mb.is_some_and(|b| b.regenerate.is_some());
    for r in &build.regenerate {
        if let Err(why) = crate::safe::rel_path(&r.path) {
            cx.err(
                key_at(list_file(in_me), "regenerate", ""),
                format!("[[build.regenerate]] path: {why}"),
                "give a relative path inside the tree",
            );
        }
        for a in &r.run {
            if let Err(why) = crate::safe::text(a) {
                cx.err(
                    key_at(list_file(in_me), "regenerate", ""),
                    format!("[[build.regenerate]] run: {why}"),
                    text_help,
                );
            }
        }
    }
    let ti = t.and_then(|t| t.raw.image.as_ref());
    let in_me = mi.is_some_and(|i| i.runtime_packages.is_some());
    let winning = mi
        .and_then(|i| i.runtime_packages.as_ref())
        .or_else(|| ti.and_then(|i| i.runtime_packages.as_ref()));
    check_packages(cx, list_file(in_me), "image", "runtime_packages", winning);
    for (file, raw) in [(Some(me), mi), (t, ti)] {
        if let (Some(file), Some(extra)) =
            (file, raw.and_then(|i| i.runtime_packages_extra.as_ref()))
        {
            check_packages(cx, file, "image", "runtime_packages_extra", Some(extra));
        }
    }
    for v in &image.variants {
        if let Err(why) = crate::safe::text(v) {
            cx.err(
                key_at(
                    list_file(mi.is_some_and(|i| i.variants.is_some())),
                    "variants",
                    "",
                ),
                format!("[image] variants: {why}"),
                text_help,
            );
        }
    }
    for (k, v) in &image.base {
        if let Err(why) = crate::safe::image_ref(v) {
            cx.err(
                key_at(map_file(mi.and_then(|i| i.base.as_ref()), k), k, "base"),
                format!("[image.base] {k}: {why}"),
                "name an image, e.g. builder = \"localhost/ollama-vulkan-builder:trixie\"",
            );
        }
    }
    let smoke = me
        .raw
        .smoke
        .as_ref()
        .or_else(|| t.and_then(|t| t.raw.smoke.as_ref()));
    if let Some(sm) = smoke {
        let f = if me.raw.smoke.is_some() {
            me
        } else {
            t.unwrap_or(me)
        };
        for (k, v) in sm
            .vulkan_env
            .iter()
            .chain(&sm.cpu_env)
            .chain(&sm.select_cpu_device_env)
        {
            if let Err(why) = crate::safe::env_key(k).and_then(|_| crate::safe::text(v)) {
                cx.err(
                    key_at(f, k, "smoke"),
                    format!("[smoke] {why}"),
                    "name the variable with letters, digits and `_`, its value on one line",
                );
            }
        }
    }
}

/// `[llamacpp] backend = { from, to }` (or a list of them, each with optional `tags`):
/// required by `vendored-plus-backend`, refused with any other source; both paths
/// relative, inside their trees (no `..`, no leading `/`, no `.git`), and `to` never the
/// tree's root. A tag's recipe keeps the entries for its tag. Symlinks are refused at
/// fetch time, where the trees are read.
fn llama_backend(
    me: &Parsed,
    t: Option<&Parsed>,
    source: Option<LlamaSource>,
    tag: Option<&Version>,
    cx: &mut Ctx,
) -> Vec<super::model::Backend> {
    let picked = pick(me, t, |r| r.llamacpp.as_ref()?.backend.as_ref());
    let plus = source == Some(LlamaSource::VendoredPlusBackend);
    let example = "`backend = { from = \"ggml/src/ggml-vulkan\", to = \"ml/backend/ggml/ggml/src/ggml-vulkan\" }` (the llama.cpp subtree and where it goes in the Ollama tree)";
    let Some((p, b)) = picked else {
        if plus {
            cx.err(
                Location::file_only(&t.unwrap_or(me).path),
                "`source = \"vendored-plus-backend\"` needs `[llamacpp] backend`",
                format!("add {example}"),
            );
        }
        return Vec::new();
    };
    if !plus {
        cx.err(
            p.at(b.span()),
            format!(
                "`[llamacpp] backend` is only read with `source = \"vendored-plus-backend\"`, not `{}`",
                source.map(LlamaSource::as_str).unwrap_or("(none)")
            ),
            "remove `backend`, or set `source = \"vendored-plus-backend\"` (eras 2 and 3)",
        );
        return Vec::new();
    }
    let list = &b.get_ref().0;
    if list.is_empty() {
        cx.err(
            p.at(b.span()),
            "`[llamacpp] backend` is an empty list",
            format!("give at least one entry: {example}"),
        );
    }
    let mut out = Vec::new();
    for (i, raw) in list.iter().enumerate() {
        let n = if list.len() > 1 {
            format!(" #{}", i + 1)
        } else {
            String::new()
        };
        let mut ok = true;
        let mut path = |key: &str, v: Option<&String>, tree: &str| -> String {
            let Some(v) = v else {
                cx.err(
                    p.at(b.span()),
                    format!("`[llamacpp] backend`{n} has no `{key}`"),
                    format!("add `{key} = \"…\"`: a relative path in the {tree} tree"),
                );
                ok = false;
                return String::new();
            };
            let s = v.trim_end_matches('/').to_string();
            if let Err(why) = crate::safe::rel_path(&s) {
                cx.err(
                    p.at(b.span()),
                    format!("[llamacpp] backend{n}.{key}: {why}"),
                    format!("give a relative path inside the {tree} tree (no `..`, no `.`, no leading `/`, no `.git`), e.g. `ggml/src/ggml-vulkan`"),
                );
                ok = false;
            }
            s
        };
        let from = path("from", raw.from.as_ref(), "llama.cpp");
        let to = path("to", raw.to.as_ref(), "Ollama");
        let wanted = match raw.tags.as_ref().map(|r| r.range()) {
            None => true,
            Some(Ok(r)) => tag.is_none_or(|v| r.contains(v)),
            Some(Err(why)) => {
                cx.err(
                    p.at(b.span()),
                    format!("[llamacpp] backend{n}.tags: {why}"),
                    "write `tags = { from = \"vX.Y.Z\", to = \"vA.B.C\" }` (`to` inclusive or `until` exclusive)",
                );
                ok = false;
                false
            }
        };
        if ok && wanted {
            out.push(super::model::Backend { from, to });
        }
    }
    out
}
