//! Parses arguments, runs one stage, renders its result, maps errors to exit codes.

mod cli;
#[path = "commands/series.rs"]
mod series_cmd;

use std::io::Write;
use std::process::ExitCode;

use clap::{CommandFactory, Parser};
use ollama_vulkan::error::Error;
use ollama_vulkan::project::Project;
use ollama_vulkan::recipe::{self, new};
use ollama_vulkan::source::{Mirrors, RepoName, Want};
use ollama_vulkan::version::sort_tags;

use cli::{Cli, Command, RecipeCommand};

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(&cli.global);
    match run(cli) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(e.exit_code() as u8)
        }
    }
}

fn init_logging(g: &cli::Global) {
    let level = match (g.quiet, g.verbose) {
        (true, _) => "error",
        (_, 0) => "warn",
        (_, 1) => "info",
        (_, 2) => "debug",
        _ => "trace",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("OLLAMA_VULKAN_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(format!("ollama_vulkan={level}")));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .without_time()
        .init();
    ollama_vulkan::progress::set_quiet(g.quiet);
    ollama_vulkan::provision::set_policy(ollama_vulkan::provision::Policy {
        install: !g.no_install,
        cache: g.cache(),
    });
}

fn mirrors(g: &cli::Global) -> Result<Mirrors, Error> {
    let cache = g.cache();
    Ok(Mirrors::new(&g.mirrors, cache, g.offline)?)
}

/// Loads a per-tag recipe for `cmd`, refusing an era template.
fn per_tag_recipe(
    file: &std::path::Path,
    project: &Project,
    cmd: &str,
) -> Result<ollama_vulkan::recipe::model::Recipe, Error> {
    let r = recipe::load(file, project).map_err(Error::Recipe)?;
    if r.is_template {
        return Err(Error::Usage(format!(
            "{} is an era template; {cmd} needs a per-tag recipe (`ollama-vulkan recipe new --ollama TAG`)",
            file.display()
        )));
    }
    Ok(r)
}

/// `work/builds/<recipe file stem>`: one build directory per recipe.
fn build_dir(project: &Project, recipe: &std::path::Path) -> Result<std::path::PathBuf, Error> {
    let name = ollama_vulkan::safe::recipe_name_of(recipe).map_err(|why| {
        Error::Usage(format!(
            "{}: {why}\n  help: rename the recipe file, or pass --dest DIR",
            ollama_vulkan::safe::show(&recipe.display().to_string())
        ))
    })?;
    Ok(project.work_dir().join("builds").join(name))
}

/// `image` and `build --image`: engine, bases and options from the command line.
fn build_image(
    g: &cli::Global,
    r: &ollama_vulkan::recipe::model::Recipe,
    dest: &std::path::Path,
    from_dist: bool,
    a: &cli::ImageArgs,
) -> Result<ollama_vulkan::image::ImageReport, Error> {
    use ollama_vulkan::image::{engine::Engine, image, ImageRequest, RenderOptions};
    let mut bases = std::collections::BTreeMap::new();
    for b in &a.bases {
        match b.split_once('=') {
            Some((role, img)) if !img.is_empty() => {
                bases.insert(role.to_string(), img.to_string());
            }
            _ => {
                return Err(Error::Usage(format!(
                    "--base {b}: expected ROLE=IMAGE, e.g. --base runtime=localhost/ollama-vulkan-runtime:trixie"
                )))
            }
        }
    }
    let engine = Engine::detect(a.engine)?;
    let cache = g.cache();
    // A base that `base` makes and this machine lacks is made now (as `build` makes
    // its builder root): the tour works in the order a user types it.
    let templates = Project::discover(g.project.as_deref())
        .ok()
        .and_then(|p| new::load_templates(&p).ok())
        .unwrap_or_default();
    for (_, img) in ollama_vulkan::image::bases_for(r, &bases, from_dist) {
        ollama_vulkan::image::base::ensure_default(
            &engine, &img, &templates, &cache, g.offline, g.quiet,
        )?;
    }
    Ok(image(&ImageRequest {
        recipe: r,
        dest,
        engine: &engine,
        opts: RenderOptions {
            from_dist,
            with_tools: a.with_tools,
        },
        bases,
        tag: a.tag.clone(),
        uid: a.uid,
        output: a.output.clone(),
        no_cache: a.no_cache,
        cache: &cache,
        quiet: g.quiet,
    })?)
}

fn render_image(i: &ollama_vulkan::image::ImageReport) -> String {
    let mb = |b: Option<u64>| {
        b.map(|b| format!("{:.1} MB", b as f64 / 1e6))
            .unwrap_or_else(|| "?".into())
    };
    let mut s = format!(
        "{} ({}, {}) built in {:.1} s: {} uncompressed\ndockerfile: {}\n",
        i.image,
        i.mode,
        i.engine,
        i.seconds,
        mb(i.size_bytes),
        i.dockerfile.display()
    );
    if let Some(o) = &i.output {
        let p = match o {
            ollama_vulkan::image::engine::Output::OciArchive(p)
            | ollama_vulkan::image::engine::Output::Oci(p) => p,
        };
        s.push_str(&format!(
            "exported: {} ({})\n",
            p.display(),
            mb(i.output_bytes)
        ));
    }
    s.push_str(&format!(
        "run: podman run -d --device /dev/dri -p 11434:11434 {}   (docs/RUNNING.md)\n",
        i.image
    ));
    s
}

fn print_json(v: &impl serde::Serialize) {
    let mut out = std::io::stdout().lock();
    serde_json::to_writer_pretty(&mut out, v).expect("stdout");
    writeln!(out).ok();
}

fn run(cli: Cli) -> Result<u8, Error> {
    let g = &cli.global;
    match cli.command {
        Command::RebasePatches(a) => {
            use ollama_vulkan::rebase::{rebase, report::render, Action};
            let project = Project::discover(g.project.as_deref())?;
            let action = match (&a.onto, a.cont, a.skip, a.abort) {
                (Some(onto), ..) => Action::Start {
                    onto,
                    allow_era_change: a.allow_era_change,
                },
                (None, true, _, _) => Action::Continue,
                (None, _, true, _) => Action::Skip,
                _ => Action::Abort,
            };
            let rep = rebase(&project, &mirrors(g)?, &a.recipe, action)?;
            if g.json {
                print_json(&rep);
            } else {
                print!("{}", render(&rep));
            }
            Ok(rep.exit_code())
        }
        Command::Series(cli::SeriesCommand::Generate { check }) => {
            series_cmd::generate(&Project::discover(g.project.as_deref())?, check, g.json)
        }
        Command::Completions { shell } => {
            clap_complete::generate(
                shell,
                &mut Cli::command(),
                "ollama-vulkan",
                &mut std::io::stdout(),
            );
            Ok(0)
        }
        Command::Recipe(RecipeCommand::New { tag, output }) => {
            let project = Project::discover(g.project.as_deref())?;
            let out = new::new_recipe(
                &project,
                &mirrors(g)?,
                &new::NewRequest {
                    tag: &tag,
                    output: output.as_deref(),
                },
            )?;
            if g.json {
                print_json(&serde_json::json!({
                    "tag": out.tag,
                    "era": out.era,
                    "ollama_commit": out.ollama_commit,
                    "llamacpp_commit": out.llamacpp_commit,
                    "llamacpp_version": out.llamacpp_version,
                    "template": out.template,
                    "recipe_path": out.recipe_path,
                    "notes": out.notes,
                }));
            } else {
                for n in &out.notes {
                    eprintln!("note: {n}");
                }
                let summary = format!(
                    "{} is era {} ({}); llama.cpp {}\nwrote {}",
                    out.tag,
                    out.era,
                    out.template,
                    match (&out.llamacpp_version, &out.llamacpp_commit) {
                        (Some(v), Some(c)) => format!("{v} ({})", &c[..12]),
                        (None, Some(c)) => c.clone(),
                        (Some(v), None) => format!("{v} (commit not resolved)"),
                        (None, None) => "vendored".into(),
                    },
                    out.recipe_path.display()
                );
                if out.recipe_path.as_os_str() == "-" {
                    eprintln!("{summary}");
                } else {
                    println!("{summary}");
                }
            }
            Ok(0)
        }
        Command::Recipe(RecipeCommand::Check { files }) => {
            let project = Project::discover(g.project.as_deref())?;
            let mut results = Vec::new();
            let mut failed = false;
            for f in &files {
                match recipe::load(f, &project) {
                    Ok(r) => {
                        if !g.json {
                            let what = match (&r.ollama.tag, &r.template) {
                                (Some(tag), Some(t)) => format!("{tag} on template {}", t.name),
                                _ => format!("template for {}", r.tags),
                            };
                            println!(
                                "ok: {} (era {}, {what}, {} series)",
                                f.display(),
                                r.era,
                                r.series.len()
                            );
                        }
                        results.push(serde_json::json!({"file": f, "ok": true, "era": r.era, "diagnostics": []}));
                    }
                    Err(d) => {
                        failed = true;
                        if !g.json {
                            eprintln!("error: {d}");
                        }
                        results
                            .push(serde_json::json!({"file": f, "ok": false, "diagnostics": d.0}));
                    }
                }
            }
            if g.json {
                print_json(&results);
            }
            Ok(if failed {
                ollama_vulkan::error::exit::BAD_INPUT as u8
            } else {
                0
            })
        }
        Command::Recipe(RecipeCommand::Show { file }) => {
            let project = Project::discover(g.project.as_deref())?;
            let r = recipe::load(&file, &project).map_err(Error::Recipe)?;
            print_json(&r);
            Ok(0)
        }
        Command::Fetch { recipe: file, dest } => {
            let project = Project::discover(g.project.as_deref())?;
            let r = recipe::load(&file, &project).map_err(Error::Recipe)?;
            if r.is_template {
                return Err(Error::Usage(format!(
                    "{} is an era template; fetch needs a per-tag recipe (`ollama-vulkan recipe new --ollama TAG`)",
                    file.display()
                )));
            }
            let dest = match dest {
                Some(d) => d,
                None => build_dir(&project, &file)?,
            };
            let started = std::time::Instant::now();
            let f = ollama_vulkan::source::fetch::fetch(&r, &mirrors(g)?, &dest)?;
            if g.json {
                print_json(&f);
            } else {
                for n in &f.notes {
                    eprintln!("note: {n}");
                }
                println!(
                    "ollama {} ({}): {} files, {:.1} MB -> {}",
                    r.ollama.tag.as_deref().unwrap_or(""),
                    &f.ollama_commit[..12],
                    f.ollama.files,
                    f.ollama.bytes as f64 / 1e6,
                    f.ollama_tree.display()
                );
                if let (Some(t), Some(m), Some(c)) =
                    (&f.llamacpp_tree, &f.llamacpp, &f.llamacpp_commit)
                {
                    println!(
                        "llama.cpp {}: {} files -> {}",
                        &c[..12],
                        m.files,
                        t.display()
                    );
                }
                for p in &f.compat_patches {
                    println!("llama/compat/{}: {}", p.patch, p.status);
                }
                println!("done in {:.2} s", started.elapsed().as_secs_f64());
            }
            Ok(0)
        }
        Command::Build {
            recipe: file,
            ollama,
            builder,
            dest,
            jobs,
            fuzz,
            image,
            image_args,
        } => {
            use ollama_vulkan::build::{build, BuildRequest};
            let project = Project::discover(g.project.as_deref())?;
            let m = mirrors(g)?;
            let file = match (file, ollama) {
                (Some(f), _) => f,
                (None, Some(tag)) => {
                    let out = new::new_recipe(
                        &project,
                        &m,
                        &new::NewRequest {
                            tag: &tag,
                            output: None,
                        },
                    )?;
                    if !g.quiet && !g.json {
                        eprintln!(
                            "  recipe for {tag}: era {} -> {}",
                            out.era,
                            out.recipe_path.display()
                        );
                    }
                    out.recipe_path
                }
                (None, None) => unreachable!("clap requires one"),
            };
            let r = per_tag_recipe(&file, &project, "build")?;
            let dest = match dest {
                Some(d) => d,
                None => build_dir(&project, &file)?,
            };
            let cache = g.cache();
            let jobs = jobs.unwrap_or_else(|| {
                std::thread::available_parallelism()
                    .map(|n| n.get())
                    .unwrap_or(2)
            });
            let started = std::time::Instant::now();
            let built = build(&BuildRequest {
                recipe: &r,
                mirrors: &m,
                dest: &dest,
                cache: &cache,
                builder,
                jobs,
                fuzz,
                quiet: g.quiet,
                offline: g.offline,
            })?;
            let image_report = if image {
                Some(build_image(g, &r, &dest, true, &image_args)?)
            } else {
                None
            };
            if g.json {
                match &image_report {
                    Some(i) => print_json(&serde_json::json!({"build": built, "image": i})),
                    None => print_json(&built),
                }
            } else {
                println!(
                    "{} {} -> {} ({:.1} s)
manifest: {}",
                    r.ollama.tag.as_deref().unwrap_or(""),
                    if built.cached {
                        "unchanged, cached dist"
                    } else {
                        "built"
                    },
                    built.dist.display(),
                    started.elapsed().as_secs_f64(),
                    built.manifest.display()
                );
                if let Some(i) = &image_report {
                    print!("{}", render_image(i));
                }
            }
            Ok(0)
        }
        Command::Image {
            recipe: file,
            dest,
            from_dist,
            image_args,
        } => {
            let project = Project::discover(g.project.as_deref())?;
            let r = per_tag_recipe(&file, &project, "image")?;
            let dest = match dest {
                Some(d) => d,
                None => build_dir(&project, &file)?,
            };
            if !from_dist && !dest.join("src/ollama").is_dir() {
                // The builder stage compiles the prepared trees: make them first.
                use ollama_vulkan::patch::prepare::{prepare, PrepareOptions};
                prepare(&r, &mirrors(g)?, &dest, PrepareOptions::default())?;
            }
            let report = build_image(g, &r, &dest, from_dist, &image_args)?;
            if g.json {
                print_json(&report);
            } else {
                print!("{}", render_image(&report));
            }
            Ok(0)
        }
        Command::Base {
            suite,
            role,
            arch,
            with_tools,
            tag,
            engine,
        } => {
            use ollama_vulkan::image::base::{base, BaseRequest};
            use ollama_vulkan::image::engine::Engine;
            let engine = Engine::detect(engine)?;
            // The templates' package lists: one builder base serves every era.
            let templates = Project::discover(g.project.as_deref())
                .ok()
                .and_then(|p| new::load_templates(&p).ok())
                .unwrap_or_default();
            let mut packages = ollama_vulkan::image::base::role_packages(&templates, role);
            if with_tools {
                packages.push("vulkan-tools".into());
            }
            let cache = g.cache();
            let report = base(&BaseRequest {
                engine: &engine,
                suite: &suite,
                role,
                arch,
                packages,
                tag,
                cache: &cache,
                offline: g.offline,
                quiet: g.quiet,
            })?;
            if g.json {
                print_json(&report);
            } else {
                println!(
                    "{} ({} packages{}) {}\nroot: {}{} ({:.1} MB), {:.1} s",
                    report.image,
                    report.packages.len(),
                    report
                        .go
                        .as_deref()
                        .map(|g| format!(", {g}"))
                        .unwrap_or_default(),
                    report
                        .id
                        .as_deref()
                        .map(|i| &i[..i.len().min(19)])
                        .unwrap_or(""),
                    report.rootfs.display(),
                    if report.cached_rootfs {
                        " (cached)"
                    } else {
                        ""
                    },
                    report.rootfs_bytes as f64 / 1e6,
                    report.seconds
                );
            }
            Ok(0)
        }
        Command::Smoke {
            dist,
            image,
            engine,
            tokens,
            no_cpu_fallback,
            lavapipe,
            on_host,
            env,
        } => {
            use ollama_vulkan::smoke::{
                install_interrupt_handler, render, smoke, SmokeRequest, SmokeTarget,
            };
            install_interrupt_handler();
            let cache = g.cache();
            let has_gpu = std::path::Path::new("/dev/nvidia0").exists()
                || std::fs::read_dir("/dev/dri")
                    .map(|rd| {
                        rd.flatten()
                            .any(|e| e.file_name().to_string_lossy().starts_with("renderD"))
                    })
                    .unwrap_or(false);
            let target = match (&dist, image) {
                (Some(d), _) => SmokeTarget::Dist(d.clone()),
                (None, Some(img)) => SmokeTarget::Image {
                    engine: ollama_vulkan::image::engine::Engine::detect(engine)?.runner()?,
                    image: img,
                },
                (None, None) => unreachable!("clap requires one"),
            };
            let report = smoke(&SmokeRequest {
                target,
                cache: &cache,
                tokens,
                cpu_fallback: !no_cpu_fallback,
                select_cpu_device: lavapipe || !has_gpu,
                on_host,
                extra_env: &env,
            })?;
            if g.json {
                print_json(&report);
            } else {
                print!("{}", render(&report));
            }
            Ok(0)
        }
        Command::Dockerfile {
            recipe: file,
            output,
            from_dist,
            with_tools,
        } => {
            let project = Project::discover(g.project.as_deref())?;
            let r = per_tag_recipe(&file, &project, "dockerfile")?;
            let text = ollama_vulkan::image::render_with(
                &r,
                ollama_vulkan::image::RenderOptions {
                    from_dist,
                    with_tools,
                },
            )?;
            match output {
                Some(p) => {
                    ollama_vulkan::fsutil::write_output(&p, text.as_bytes()).map_err(|e| {
                        if e.kind() == std::io::ErrorKind::InvalidInput {
                            Error::Usage(format!(
                                "-o {}: {e}\n  help: pass a regular file or `-` (stdout)",
                                p.display()
                            ))
                        } else {
                            Error::Io {
                                what: format!("writing {}", p.display()),
                                source: e,
                            }
                        }
                    })?;
                    if !g.quiet && p.as_os_str() != "-" && p.as_os_str() != "/dev/stdout" {
                        eprintln!("wrote {}", p.display());
                    }
                }
                None => print!("{text}"),
            }
            Ok(0)
        }
        Command::Doctor {
            recipe: file,
            builder,
            fix,
        } => {
            if fix {
                let needs = ollama_vulkan::build::doctor::fix_needs(builder);
                let installed = ollama_vulkan::provision::ensure(&needs)?;
                if !g.quiet {
                    if installed.is_empty() {
                        eprintln!("nothing to install: {} present", needs.len());
                    } else {
                        eprintln!("installed: {}", installed.join(" "));
                    }
                }
            }
            use ollama_vulkan::build::builder::Builder;
            // An explicit --project that is not one is an error of its own.
            let project = match (&g.project, &file) {
                (Some(_), _) | (None, Some(_)) => Some(Project::discover(g.project.as_deref())?),
                (None, None) => Project::discover(None).ok(),
            };
            let r =
                match (&file, &project) {
                    (Some(f), Some(p)) => Some(recipe::load(f, p).map_err(Error::Recipe)?),
                    (Some(_), None) => return Err(Error::Usage(
                        "doctor RECIPE needs the project (recipes/ and patches/); pass --project"
                            .into(),
                    )),
                    _ => None,
                };
            let cache = g.cache();
            let packages = r
                .as_ref()
                .map(|r| r.build.builder_packages.clone())
                .or_else(|| {
                    project
                        .as_ref()
                        .and_then(|p| new::load_templates(p).ok())
                        .and_then(|t| t.last().map(|t| t.build.builder_packages.clone()))
                })
                .unwrap_or_default();
            let b = Builder::ensure(builder, &cache, &packages, g.offline)?;
            let scratch = tempfile::tempdir().map_err(|e| Error::Io {
                what: "creating a temp dir".into(),
                source: e,
            })?;
            let mut b = b;
            b.bind(&[scratch.path().to_path_buf()]);
            let report = ollama_vulkan::build::doctor::doctor(r.as_ref(), &b, scratch.path());
            if g.json {
                print_json(&report);
            } else {
                print!("{}", ollama_vulkan::build::doctor::render(&report));
            }
            Ok(if report.ok {
                0
            } else {
                ollama_vulkan::error::exit::FAILURE as u8
            })
        }
        Command::Prepare {
            recipe: file,
            dest,
            check,
            fuzz,
        } => {
            use ollama_vulkan::patch::prepare::{fuzz_used, prepare, PrepareError, PrepareOptions};
            let project = Project::discover(g.project.as_deref())?;
            let r = per_tag_recipe(&file, &project, "prepare")?;
            let dest = match dest {
                Some(d) => d,
                None => build_dir(&project, &file)?,
            };
            let res = prepare(&r, &mirrors(g)?, &dest, PrepareOptions { fuzz, check });
            let p = match res {
                Err(PrepareError::Failed { runs, .. }) if g.json || check => {
                    // --check reports failures as data; the exit code still says so.
                    if g.json {
                        print_json(
                            &serde_json::json!({"check": check, "series": runs, "trees": [], "ok": false}),
                        );
                    } else {
                        print!("{}", ollama_vulkan::patch::report::render(&runs));
                    }
                    return Ok(ollama_vulkan::error::exit::FAILURE as u8);
                }
                other => other?,
            };
            let ok = p
                .series
                .iter()
                .flat_map(|s| &s.patches)
                .all(|x| x.status.applies());
            if g.json {
                print_json(
                    &serde_json::json!({"check": p.check, "series": p.series, "trees": p.trees, "ok": ok}),
                );
            } else {
                print!("{}", ollama_vulkan::patch::report::render(&p.series));
                if fuzz_used(&p.series) {
                    eprintln!("warning: some hunks applied with fuzz: their context no longer matches upstream; refresh the patches");
                }
                for t in &p.trees {
                    println!(
                        "{}: {} commit{} on top of the pin -> {}",
                        t.repo,
                        t.commits.len(),
                        if t.commits.len() == 1 { "" } else { "s" },
                        t.path.display()
                    );
                }
                if p.series.is_empty() {
                    println!("the recipe has no series for this tag; trees fetched unchanged");
                }
            }
            Ok(if ok {
                0
            } else {
                ollama_vulkan::error::exit::FAILURE as u8
            })
        }
        Command::CheckPatches {
            series,
            tags,
            all_tags,
            fuzz,
        } => {
            use ollama_vulkan::patch::check::{check_series, ordered_tags, render, select};
            use ollama_vulkan::patch::series::Series;
            let project = Project::discover(g.project.as_deref())?;
            let names: Vec<String> = if series.is_empty() {
                let mut v: Vec<String> = std::fs::read_dir(project.patches_dir())
                    .map(|rd| {
                        rd.flatten()
                            .filter(|e| e.path().join("series").is_file())
                            .map(|e| e.file_name().to_string_lossy().into_owned())
                            .collect()
                    })
                    .unwrap_or_default();
                v.sort();
                if v.is_empty() {
                    return Err(Error::Usage(format!(
                        "no series under {}: nothing to check",
                        project.patches_dir().display()
                    )));
                }
                v
            } else {
                series
            };
            let m = mirrors(g)?;
            let mut matrices = Vec::new();
            let mut bad = false;
            for name in &names {
                let dir = project.patches_dir().join(name);
                let s = Series::load(&dir).map_err(|source| {
                    ollama_vulkan::patch::check::CheckError::Series {
                        name: name.clone(),
                        source,
                    }
                })?;
                let target = s.target.unwrap_or(RepoName::Ollama);
                let url = match target {
                    RepoName::Ollama => new::DEFAULT_OLLAMA_URL,
                    RepoName::LlamaCpp => new::DEFAULT_LLAMACPP_URL,
                };
                let repos = m.open(target, Some(url), &[Want::Everything])?;
                let all = ordered_tags(&repos[0]);
                let chosen = if all_tags {
                    all
                } else {
                    select(&all, tags.as_deref().unwrap_or(""))?
                };
                let mx = check_series(&s, &repos[0], &chosen, fuzz)?;
                bad |= mx
                    .rows
                    .iter()
                    .flat_map(|r| &r.cells)
                    .any(|c| !c.status.applies());
                if !g.json {
                    print!("{}", render(&mx));
                    println!(
                        "{} (patch, input) pairs applied, {} answered from the memo, {:.2} s",
                        mx.applied, mx.memo_hits, mx.seconds
                    );
                }
                matrices.push(mx);
            }
            if g.json {
                print_json(&matrices);
            }
            Ok(if bad {
                ollama_vulkan::error::exit::FAILURE as u8
            } else {
                0
            })
        }
        Command::Era(args) => {
            let m = mirrors(g)?;
            let project = Project::discover(g.project.as_deref()).ok();
            let url = project
                .as_ref()
                .and_then(|p| new::load_templates(p).ok())
                .and_then(|t| t.first().map(|t| t.ollama.url.clone()))
                .unwrap_or_else(|| new::DEFAULT_OLLAMA_URL.to_string());
            let wants: Vec<Want> = if args.all_tags {
                vec![Want::Everything]
            } else {
                args.tags.iter().map(|t| Want::Tag(t.clone())).collect()
            };
            let repos = m.open(RepoName::Ollama, Some(&url), &wants)?;
            let llama = if m.has_explicit(RepoName::LlamaCpp) {
                m.open(RepoName::LlamaCpp, None, &[])?
            } else {
                Vec::new()
            };
            let mut tags = if args.all_tags {
                repos[0]
                    .git
                    .tag_names(None)
                    .map_err(|source| ollama_vulkan::source::SourceError::Git {
                        what: "listing tags".into(),
                        source,
                    })?
                    .iter()
                    .flatten()
                    .map(str::to_string)
                    .collect()
            } else {
                args.tags.clone()
            };
            sort_tags(&mut tags);
            let rows = new::survey(&repos[0], &tags, &llama);
            let errors = rows.iter().filter(|r| r.error.is_some()).count();
            if g.json {
                print_json(&rows);
            } else {
                let mut out = std::io::stdout().lock();
                for r in &rows {
                    match (&r.era, &r.error) {
                        (Some(era), _) => writeln!(
                            out,
                            "{:<16} {:<3} {:<7} {:<12} {:<42} {}",
                            r.tag,
                            era.label(),
                            if r.vulkan_path { "vulkan" } else { "-" },
                            &r.ollama_commit[..12],
                            r.llamacpp_commit
                                .as_deref()
                                .or(r.llamacpp_pin.as_deref())
                                .unwrap_or("-"),
                            r.llamacpp_version.as_deref().unwrap_or("")
                        ),
                        (None, Some(e)) => writeln!(out, "{:<16} error: {e}", r.tag),
                        (None, None) => Ok(()),
                    }
                    .ok();
                }
            }
            Ok(if errors > 0 {
                ollama_vulkan::error::exit::BAD_INPUT as u8
            } else {
                0
            })
        }
    }
}
