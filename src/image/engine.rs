//! Container engines: podman, buildah or docker, found on PATH or chosen. Builds run
//! without a registry (bases are local images), with chroot isolation for buildah and
//! podman (no OCI runtime or cgroups needed to build), their output streamed to stderr and
//! kept in a log; runs pass explicit ulimits (runtimes fail to raise nofile/nproc past a
//! container host's hard limits: CONTAINERS.md §2b).

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};

use serde::Serialize;

use super::ImageError;
use crate::build::builder::which_in;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum EngineChoice {
    /// podman, else buildah (+ podman to run), else docker with a reachable daemon.
    Auto,
    Podman,
    Buildah,
    Docker,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum EngineKind {
    Podman,
    Buildah,
    Docker,
}

impl EngineKind {
    pub fn name(self) -> &'static str {
        match self {
            EngineKind::Podman => "podman",
            EngineKind::Buildah => "buildah",
            EngineKind::Docker => "docker",
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Engine {
    pub kind: EngineKind,
    pub program: PathBuf,
}

/// Where an image goes besides local storage.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", content = "path", rename_all = "kebab-case")]
pub enum Output {
    /// `oci-archive:PATH`: one tar file (`podman load -i`, `skopeo copy oci-archive:…`).
    OciArchive(PathBuf),
    /// `oci:DIR`: an OCI image layout directory.
    Oci(PathBuf),
}

impl std::str::FromStr for Output {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.split_once(':') {
            Some(("oci-archive", p)) if !p.is_empty() => Ok(Output::OciArchive(p.into())),
            Some(("oci", p)) if !p.is_empty() => Ok(Output::Oci(p.into())),
            _ => Err(format!(
                "`{s}` is not an output: use oci-archive:PATH (one tar file) or oci:DIR (an OCI layout directory)"
            )),
        }
    }
}

/// An engine's stdout and stderr, kept apart.
struct Captured {
    ok: bool,
    stdout: String,
    stderr: String,
}

impl Captured {
    /// The engine's own words for an error: stderr, then stdout, last lines of each.
    fn context(&self) -> String {
        let mut s = String::new();
        for (name, text) in [("stderr", &self.stderr), ("stdout", &self.stdout)] {
            if !text.trim().is_empty() {
                s.push_str(&format!(
                    "  engine {name}:\n{}\n",
                    crate::fsutil::last_lines(text, 15)
                        .lines()
                        .map(|l| format!("    {l}"))
                        .collect::<Vec<_>>()
                        .join("\n")
                ));
            }
        }
        s.trim_end().to_string()
    }
}

fn shown(s: &str) -> String {
    if s.trim().is_empty() {
        "nothing".into()
    } else {
        let one: String = s.trim().chars().take(200).collect();
        format!("`{}`", one.escape_debug())
    }
}

/// The shape of a value read from an engine's stdout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    /// A working container's name (`buildah from`): `[A-Za-z0-9][A-Za-z0-9_.-]*`.
    ContainerName,
    /// A 64-hex image id, optionally `sha256:`-prefixed.
    ImageId,
    /// A decimal byte count.
    Count,
    /// A JSON object of labels, or `null`.
    JsonLabels,
    /// One lowercase word such as an architecture (`amd64`).
    Word,
    /// An absolute path (a mount point).
    AbsPath,
}

impl Shape {
    /// The trimmed value, or why it is not one.
    pub fn check(self, stdout: &str) -> Result<String, &'static str> {
        let v = stdout.trim();
        if v.lines().count() != 1 {
            return Err("not one line");
        }
        let ok = match self {
            Shape::ContainerName => {
                v.len() <= 253
                    && v.starts_with(|c: char| c.is_ascii_alphanumeric())
                    && v.chars()
                        .all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c))
            }
            Shape::ImageId => {
                let hex = v.strip_prefix("sha256:").unwrap_or(v);
                hex.len() == 64 && hex.chars().all(|c| c.is_ascii_hexdigit())
            }
            Shape::Count => v.chars().all(|c| c.is_ascii_digit()) && v.parse::<u64>().is_ok(),
            Shape::JsonLabels => matches!(
                serde_json::from_str::<serde_json::Value>(v),
                Ok(serde_json::Value::Object(_) | serde_json::Value::Null)
            ),
            Shape::AbsPath => v.starts_with('/') && !v.contains(".."),
            Shape::Word => {
                !v.is_empty()
                    && v.len() <= 32
                    && v.chars()
                        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
            }
        };
        if ok {
            Ok(v.to_string())
        } else {
            Err(match self {
                Shape::ContainerName => "which is not a container name",
                Shape::ImageId => "which is not a 64-hex image id",
                Shape::Count => "which is not a byte count",
                Shape::JsonLabels => "which is not a JSON object of labels",
                Shape::Word => "which is not one lowercase word",
                Shape::AbsPath => "which is not an absolute path",
            })
        }
    }
}

fn path_var() -> String {
    std::env::var("PATH").unwrap_or_default()
}

fn find(name: &str) -> Option<PathBuf> {
    which_in(None, &path_var(), name)
}

/// `docker` on PATH may be a client without a daemon (this project's machines): only a
/// daemon that answers makes it an engine.
fn docker_answers(p: &Path) -> bool {
    duct::cmd(p, ["info", "--format", "{{.ServerVersion}}"])
        .stdout_null()
        .stderr_null()
        .unchecked()
        .run()
        .map(|o| o.status.success())
        .unwrap_or(false)
}

/// podman and runc in one apt transaction, so podman's `crun | runc` dependency is
/// met by runc (see provision::OCI_RUNTIME).
const PODMAN_WITH_RUNTIME: [crate::provision::Need; 2] =
    [crate::provision::PODMAN, crate::provision::OCI_RUNTIME];

impl Engine {
    /// The engine to use; podman (or buildah when chosen) is installed first where the
    /// provisioning policy allows (crate::provision).
    pub fn detect(choice: EngineChoice) -> Result<Engine, ImageError> {
        let pick = |kind: EngineKind| find(kind.name()).map(|program| Engine { kind, program });
        let installed = |kind: EngineKind, needs: &[crate::provision::Need]| {
            crate::provision::ensure(needs)?;
            pick(kind).ok_or_else(|| ImageError::Unavailable {
                what: format!("{} is still not on PATH after installing it", kind.name()),
                help: format!("check what the package installed: dpkg -L {}", kind.name()),
            })
        };
        let missing = |name: &str| {
            ImageError::Unavailable {
                what: format!("{name} is not installed"),
                help: "apt-get install -y podman runc (registry-free builds need no daemon), or pass --engine with one you have".into(),
            }
        };
        match choice {
            EngineChoice::Podman => pick(EngineKind::Podman)
                .map(Ok)
                .unwrap_or_else(|| installed(EngineKind::Podman, &PODMAN_WITH_RUNTIME)),
            EngineChoice::Buildah => pick(EngineKind::Buildah)
                .map(Ok)
                .unwrap_or_else(|| installed(EngineKind::Buildah, &[crate::provision::BUILDAH])),
            EngineChoice::Docker => {
                let e = pick(EngineKind::Docker).ok_or_else(|| missing("docker"))?;
                if !docker_answers(&e.program) {
                    return Err(ImageError::Unavailable {
                        what: format!(
                            "{} finds no Docker daemon (`docker info` fails)",
                            e.program.display()
                        ),
                        help: "start dockerd, or use --engine podman / buildah (no daemon needed)"
                            .into(),
                    });
                }
                Ok(e)
            }
            EngineChoice::Auto => match pick(EngineKind::Podman)
                .or_else(|| pick(EngineKind::Buildah))
                .or_else(|| pick(EngineKind::Docker).filter(|e| docker_answers(&e.program)))
            {
                Some(e) => Ok(e),
                None => installed(EngineKind::Podman, &PODMAN_WITH_RUNTIME),
            },
        }
    }

    /// The engine that runs containers: buildah cannot, so podman (same local storage),
    /// with an OCI runtime (installed where the provisioning policy allows).
    pub fn runner(&self) -> Result<Engine, ImageError> {
        if self.kind == EngineKind::Docker {
            return Ok(self.clone());
        }
        let mut needs = vec![crate::provision::OCI_RUNTIME];
        if self.kind == EngineKind::Buildah {
            needs.push(crate::provision::PODMAN);
        }
        crate::provision::ensure(&needs)?;
        match self.kind {
            EngineKind::Buildah => find("podman")
                .map(|program| Engine {
                    kind: EngineKind::Podman,
                    program,
                })
                .ok_or_else(|| ImageError::Unavailable {
                    what: "running an image needs podman (buildah only builds)".into(),
                    help: "apt-get install -y podman runc".into(),
                }),
            _ => Ok(self.clone()),
        }
    }

    fn cmd(&self, args: Vec<String>) -> duct::Expression {
        duct::cmd(&self.program, args)
    }

    /// Runs the engine with stdout and stderr kept apart.
    fn capture(&self, args: &[String]) -> Result<Captured, ImageError> {
        let out = self
            .cmd(args.to_vec())
            .stdout_capture()
            .stderr_capture()
            .unchecked()
            .run()
            .map_err(|source| ImageError::Spawn {
                program: self.kind.name().into(),
                source,
            })?;
        Ok(Captured {
            ok: out.status.success(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        })
    }

    /// Runs the engine quietly and returns its stdout; on failure, its stderr (and
    /// stdout) as the error's context. Warnings on stderr never reach the value.
    pub fn quiet(&self, what: &str, args: Vec<String>) -> Result<String, ImageError> {
        let c = self.capture(&args)?;
        if !c.ok {
            return Err(self.failed(what, &args, &c));
        }
        Ok(c.stdout)
    }

    fn failed(&self, what: &str, args: &[String], c: &Captured) -> ImageError {
        ImageError::Command {
            what: format!("{what} failed: {} {}", self.kind.name(), args.join(" ")),
            context: c.context(),
            help: None,
        }
    }

    /// One value the engine prints on stdout, checked against its shape: Ok(None) when
    /// the engine says no (e.g. no such image), an error naming what it printed (with
    /// its stderr) when stdout is not a `shape`.
    pub fn value(
        &self,
        what: &str,
        args: Vec<String>,
        shape: Shape,
    ) -> Result<Option<String>, ImageError> {
        let c = self.capture(&args)?;
        if !c.ok {
            return Ok(None);
        }
        self.checked(what, &args, &c, shape).map(Some)
    }

    /// Like [`Engine::value`], but the engine failing is an error too (with its stderr).
    pub fn must_value(
        &self,
        what: &str,
        args: Vec<String>,
        shape: Shape,
    ) -> Result<String, ImageError> {
        let c = self.capture(&args)?;
        if !c.ok {
            return Err(self.failed(what, &args, &c));
        }
        self.checked(what, &args, &c, shape)
    }

    fn checked(
        &self,
        what: &str,
        args: &[String],
        c: &Captured,
        shape: Shape,
    ) -> Result<String, ImageError> {
        shape.check(&c.stdout).map_err(|why| ImageError::Command {
            what: format!(
                "{what}: `{} {}` printed {} on stdout, {why}",
                self.kind.name(),
                args.join(" "),
                shown(&c.stdout)
            ),
            context: c.context(),
            help: Some(
                "this is the engine's output, not ours: check the engine with the same command"
                    .into(),
            ),
        })
    }

    /// Runs the engine with its output streamed to stderr (prefixed, unless quiet) and
    /// written to `log`; the last lines on failure.
    pub fn streamed(
        &self,
        what: &str,
        args: Vec<String>,
        env: &[(String, String)],
        log: &Path,
        quiet: bool,
    ) -> Result<(), ImageError> {
        if let Some(d) = log.parent() {
            std::fs::create_dir_all(d).map_err(|e| ImageError::Io {
                what: format!("creating {}", d.display()),
                source: e,
            })?;
        }
        let mut logf = std::fs::File::create(log).map_err(|e| ImageError::Io {
            what: format!("creating {}", log.display()),
            source: e,
        })?;
        let _ = writeln!(logf, "$ {} {}", self.program.display(), args.join(" "));
        let mut cmd = self.cmd(args).stderr_to_stdout().unchecked();
        for (k, v) in env {
            cmd = cmd.env(k, v);
        }
        let reader = cmd.reader().map_err(|source| ImageError::Spawn {
            program: self.kind.name().into(),
            source,
        })?;
        let mut lines = BufReader::new(&reader);
        let mut line = Vec::new();
        loop {
            line.clear();
            match lines.read_until(b'\n', &mut line) {
                Ok(0) => break,
                Ok(_) => {
                    let _ = logf.write_all(&line);
                    // The engine is mid-build here: a kill leaves it running, orphaned.
                    crate::killpoint::hit("image.engine-output");
                    if !quiet {
                        eprint!("  | {}", String::from_utf8_lossy(&line));
                        if !line.ends_with(b"\n") {
                            eprintln!();
                        }
                    }
                }
                Err(e) => {
                    return Err(ImageError::Io {
                        what: format!("reading {} output", self.kind.name()),
                        source: e,
                    })
                }
            }
        }
        let status = reader
            .try_wait()
            .map_err(|source| ImageError::Io {
                what: format!("waiting for {}", self.kind.name()),
                source,
            })?
            .map(|o| o.status);
        match status {
            Some(s) if s.success() => Ok(()),
            other => Err(ImageError::Failed {
                what: what.into(),
                engine: self.kind.name().into(),
                status: other
                    .and_then(|s| s.code())
                    .map(|c| c.to_string())
                    .unwrap_or_else(|| "killed".into()),
                log: log.to_path_buf(),
                tail: crate::fsutil::tail_file(log, 20),
            }),
        }
    }

    /// Arguments of a build: `file` in `context`, tagged `tag`.
    #[allow(clippy::too_many_arguments)]
    pub fn build_args(
        &self,
        file: &Path,
        ignore_file: &Path,
        context: &Path,
        tag: &str,
        build_args: &[(String, String)],
        labels: &[(String, String)],
        volumes: &[(PathBuf, String)],
        epoch: Option<i64>,
        platform: Option<crate::target::Arch>,
    ) -> Vec<String> {
        let mut a: Vec<String> = match self.kind {
            // chroot isolation: RUN needs no OCI runtime, cgroups or network namespace.
            EngineKind::Buildah => vec!["bud".into(), "--isolation".into(), "chroot".into()],
            EngineKind::Podman => vec!["build".into(), "--isolation".into(), "chroot".into()],
            EngineKind::Docker => vec!["build".into()],
        };
        if self.kind != EngineKind::Docker {
            // The docker format keeps HEALTHCHECK (OCI image configs have no field for it);
            // layers are cached so an unchanged dist or tree rebuilds in seconds.
            a.extend([
                "--format".into(),
                "docker".into(),
                "--layers".into(),
                "--ignorefile".into(),
                ignore_file.display().to_string(),
            ]);
            for (host, inside) in volumes {
                a.push("--volume".into());
                a.push(format!("{}:{inside}", host.display()));
            }
            if let Some(t) = epoch {
                a.push("--timestamp".into());
                a.push(t.to_string());
            }
        }
        if let Some(arch) = platform {
            a.extend(["--platform".into(), arch.platform()]);
        }
        a.extend(["-f".into(), file.display().to_string()]);
        a.extend(["-t".into(), tag.to_string()]);
        for (k, v) in build_args {
            a.push("--build-arg".into());
            a.push(format!("{k}={v}"));
        }
        for (k, v) in labels {
            a.push("--label".into());
            a.push(format!("{k}={v}"));
        }
        a.push(context.display().to_string());
        a
    }

    /// Copies a local image to an OCI archive or layout.
    pub fn export(&self, image: &str, out: &Output) -> Result<(), ImageError> {
        let name = image.rsplit('/').next().unwrap_or(image).to_string();
        let dest = match out {
            Output::OciArchive(p) => format!("oci-archive:{}:{name}", p.display()),
            Output::Oci(p) => format!("oci:{}:{name}", p.display()),
        };
        if let Some(parent) = match out {
            Output::OciArchive(p) => p.parent(),
            Output::Oci(p) => Some(p.as_path()),
        } {
            if !parent.as_os_str().is_empty() {
                std::fs::create_dir_all(parent).map_err(|e| ImageError::Io {
                    what: format!("creating {}", parent.display()),
                    source: e,
                })?;
            }
        }
        match self.kind {
            EngineKind::Docker => Err(ImageError::Unavailable {
                what: "docker cannot write an OCI archive or layout here".into(),
                help: "use --engine podman or buildah for --output, or `docker save IMAGE` for a docker archive".into(),
            }),
            _ => {
                if let Output::OciArchive(p) = out {
                    // Written whole or not at all: push to a temp name, then rename.
                    let tmp = p.with_extension("tmp-export");
                    let _ = std::fs::remove_file(&tmp);
                    let r = self.quiet(
                        "exporting the image",
                        vec![
                            "push".into(),
                            image.into(),
                            format!("oci-archive:{}:{name}", tmp.display()),
                        ],
                    );
                    if let Err(e) = r {
                        let _ = std::fs::remove_file(&tmp);
                        return Err(e);
                    }
                    crate::killpoint::hit("image.export-pushed");
                    std::fs::rename(&tmp, p).map_err(|e| ImageError::Io {
                        what: format!("moving the archive to {}", p.display()),
                        source: e,
                    })?;
                    Ok(())
                } else {
                    self.quiet("exporting the image", vec!["push".into(), image.into(), dest])
                        .map(|_| ())
                }
            }
        }
    }

    /// Makes `index` a multi-architecture index (an OCI image index / manifest list) of
    /// the local `images`, replacing whatever had that name.
    pub fn make_index(&self, index: &str, images: &[String]) -> Result<(), ImageError> {
        if self.kind == EngineKind::Docker {
            return Err(ImageError::Unavailable {
                what: "docker cannot make a multi-architecture index of local images".into(),
                help: "use --engine podman or buildah".into(),
            });
        }
        // An older list or image of that name: the name is freed (the images stay).
        let is_list = self
            .capture(&["manifest".into(), "exists".into(), index.into()])
            .map(|c| c.ok)
            .unwrap_or(false);
        if is_list {
            self.quiet(
                "removing the old index",
                vec!["manifest".into(), "rm".into(), index.into()],
            )?;
        } else if self.has_image(index)? {
            self.quiet("freeing the index's name", vec!["rmi".into(), index.into()])?;
        }
        self.quiet(
            "making the index",
            vec!["manifest".into(), "create".into(), index.into()],
        )?;
        for img in images {
            self.quiet(
                "adding an image to the index",
                vec![
                    "manifest".into(),
                    "add".into(),
                    index.into(),
                    format!("containers-storage:{img}"),
                ],
            )?;
        }
        Ok(())
    }

    /// Exports the index `index` with every image it lists.
    pub fn export_index(&self, index: &str, out: &Output) -> Result<(), ImageError> {
        let name = index.rsplit('/').next().unwrap_or(index).to_string();
        let (path, kind) = match out {
            Output::OciArchive(p) => (p, "oci-archive"),
            Output::Oci(p) => (p, "oci"),
        };
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(|e| ImageError::Io {
                what: format!("creating {}", parent.display()),
                source: e,
            })?;
        }
        // Written whole or not at all: to a temp name, then renamed.
        let tmp = path.with_extension("tmp-export");
        let _ = std::fs::remove_file(&tmp);
        let _ = std::fs::remove_dir_all(&tmp);
        let r = self.quiet(
            "exporting the index",
            vec![
                "manifest".into(),
                "push".into(),
                "--all".into(),
                index.into(),
                format!("{kind}:{}:{name}", tmp.display()),
            ],
        );
        if let Err(e) = r {
            let _ = std::fs::remove_file(&tmp);
            let _ = std::fs::remove_dir_all(&tmp);
            return Err(e);
        }
        if path.is_dir() {
            let _ = std::fs::remove_dir_all(path);
        }
        std::fs::rename(&tmp, path).map_err(|e| ImageError::Io {
            what: format!("moving the export to {}", path.display()),
            source: e,
        })
    }

    /// The image's uncompressed size in bytes, as the engine reports it.
    pub fn image_size(&self, image: &str) -> Result<Option<u64>, ImageError> {
        let args: Vec<String> = match self.kind {
            EngineKind::Buildah => return self.runner()?.image_size(image),
            _ => vec![
                "image".into(),
                "inspect".into(),
                "--format".into(),
                "{{.Size}}".into(),
                image.into(),
            ],
        };
        Ok(self
            .value("the image's size", args, Shape::Count)?
            .and_then(|v| v.parse().ok()))
    }

    /// The image's id; None when the engine has no such image.
    pub fn image_id(&self, image: &str) -> Result<Option<String>, ImageError> {
        let args: Vec<String> = match self.kind {
            EngineKind::Buildah => vec![
                "inspect".into(),
                "--type".into(),
                "image".into(),
                "--format".into(),
                "{{.FromImageID}}".into(),
                image.into(),
            ],
            _ => vec![
                "image".into(),
                "inspect".into(),
                "--format".into(),
                "{{.Id}}".into(),
                image.into(),
            ],
        };
        self.value("the image's id", args, Shape::ImageId)
    }

    /// The image's labels (empty when it has none; None when there is no such image).
    pub fn labels(
        &self,
        image: &str,
    ) -> Result<Option<serde_json::Map<String, serde_json::Value>>, ImageError> {
        let format = match self.kind {
            EngineKind::Podman => "{{json .Labels}}",
            EngineKind::Docker => "{{json .Config.Labels}}",
            EngineKind::Buildah => "{{json .OCIv1.Config.Labels}}",
        };
        let mut args: Vec<String> = match self.kind {
            EngineKind::Buildah => vec!["inspect".into(), "--type".into(), "image".into()],
            _ => vec!["image".into(), "inspect".into()],
        };
        args.extend(["--format".into(), format.into(), image.into()]);
        let Some(v) = self.value("the image's labels", args, Shape::JsonLabels)? else {
            return Ok(None);
        };
        Ok(Some(match serde_json::from_str(&v) {
            Ok(serde_json::Value::Object(m)) => m,
            _ => serde_json::Map::new(), // `null`: no labels
        }))
    }

    /// A file of a local image's root (as built): None when the image has none there.
    /// The root is mounted read-only by the engine; a symlink on the way is refused
    /// (it would resolve on this machine, not in the image).
    pub fn read_image_file(
        &self,
        image: &str,
        path: &str,
        max: u64,
    ) -> Result<Option<Vec<u8>>, ImageError> {
        let rel = path.trim_start_matches('/');
        match self.kind {
            EngineKind::Buildah => {
                let ctr = self.must_value(
                    "a working container to read the image",
                    vec!["from".into(), "--pull=never".into(), image.into()],
                    Shape::ContainerName,
                )?;
                let r = self
                    .must_value(
                        "mounting the image",
                        vec!["mount".into(), ctr.clone()],
                        Shape::AbsPath,
                    )
                    .and_then(|m| read_under(Path::new(&m), rel, max));
                let _ = self.quiet("removing the working container", vec!["rm".into(), ctr]);
                r
            }
            EngineKind::Podman => {
                let r = self
                    .must_value(
                        "mounting the image",
                        vec!["image".into(), "mount".into(), image.into()],
                        Shape::AbsPath,
                    )
                    .and_then(|m| read_under(Path::new(&m), rel, max));
                let _ = self.quiet(
                    "unmounting the image",
                    vec!["image".into(), "unmount".into(), image.into()],
                );
                r
            }
            EngineKind::Docker => {
                let ctr = self.must_value(
                    "a container to read the image",
                    vec!["create".into(), image.into()],
                    Shape::ContainerName,
                )?;
                let c = self.capture(&["cp".into(), format!("{ctr}:/{rel}"), "-".into()]);
                let _ = self.quiet("removing the container", vec!["rm".into(), ctr]);
                let c = c?;
                if !c.ok {
                    return Ok(None);
                }
                // `docker cp … -` writes a tar of the one file.
                let mut a = tar::Archive::new(c.stdout.as_bytes());
                let mut e = match a.entries().ok().and_then(|mut es| es.next()) {
                    Some(Ok(e)) if e.header().entry_type().is_file() && e.size() <= max => e,
                    _ => {
                        return Err(ImageError::Command {
                            what: format!(
                                "docker cp of /{rel} gave no regular file of at most {max} bytes"
                            ),
                            context: String::new(),
                            help: None,
                        })
                    }
                };
                let mut b = Vec::new();
                std::io::Read::read_to_end(&mut e, &mut b).map_err(|source| ImageError::Io {
                    what: format!("reading /{rel} from docker"),
                    source,
                })?;
                Ok(Some(b))
            }
        }
    }

    pub fn has_image(&self, image: &str) -> Result<bool, ImageError> {
        Ok(self.image_id(image)?.is_some())
    }

    /// The architecture of a local image (None when there is none, or it is not one this
    /// tool knows).
    pub fn image_arch(&self, image: &str) -> Result<Option<crate::target::Arch>, ImageError> {
        let args: Vec<String> = match self.kind {
            EngineKind::Buildah => vec![
                "inspect".into(),
                "--type".into(),
                "image".into(),
                "--format".into(),
                "{{.OCIv1.Architecture}}".into(),
                image.into(),
            ],
            _ => vec![
                "image".into(),
                "inspect".into(),
                "--format".into(),
                "{{.Architecture}}".into(),
                image.into(),
            ],
        };
        Ok(self
            .value("the image's architecture", args, Shape::Word)?
            .and_then(|a| crate::target::Arch::parse(a.trim())))
    }

    /// Flags `podman run` needs on hosts whose hard limits are below what runtimes ask
    /// for by default (CONTAINERS.md §2b): nofile at the hard limit, nproc ≤ 32768. A
    /// foreign image runs under qemu-user, where runc could not set those (measured
    /// here): 1024 each, plenty for `ollama serve`.
    pub fn run_flags(&self, arch: crate::target::Arch) -> Vec<String> {
        if self.kind != EngineKind::Podman {
            return Vec::new();
        }
        let (nofile, nproc) = if arch.is_host() {
            hard_limits()
        } else {
            (1024, 1024)
        };
        let mut flags = vec![
            "--ulimit".into(),
            format!("nofile={nofile}:{nofile}"),
            "--ulimit".into(),
            format!("nproc={nproc}:{nproc}"),
        ];
        // Without a unified cgroup v2 hierarchy crun cannot start containers ("cgroups in
        // hybrid mode not supported"): use runc, which podman may not prefer.
        if !Path::new("/sys/fs/cgroup/cgroup.controllers").exists() {
            if let Some(runc) = find("runc") {
                flags.extend(["--runtime".into(), runc.display().to_string()]);
            }
        }
        flags
    }
}

extern "C" {
    fn getrlimit(resource: i32, rlim: *mut [u64; 2]) -> i32;
}

/// (nofile, nproc) to ask a runtime for: the hard limits, capped (65536 nproc failed on
/// the project's machines with a higher hard limit; 32768 works).
fn hard_limits() -> (u64, u64) {
    const RLIMIT_NPROC: i32 = 6;
    const RLIMIT_NOFILE: i32 = 7;
    let get = |res: i32| -> Option<u64> {
        let mut l = [0u64; 2];
        // SAFETY: getrlimit writes two rlim_t (u64 on 64-bit Linux) into `l`.
        (unsafe { getrlimit(res, &mut l) } == 0).then_some(l[1])
    };
    (
        get(RLIMIT_NOFILE).unwrap_or(1024).min(1 << 20),
        get(RLIMIT_NPROC).unwrap_or(4096).min(32768),
    )
}

/// `rel` under a mounted root, refusing symlinks on the way (they would resolve on this
/// machine) and anything but a regular file of at most `max` bytes.
fn read_under(root: &Path, rel: &str, max: u64) -> Result<Option<Vec<u8>>, ImageError> {
    let mut p = root.to_path_buf();
    for c in rel.split('/') {
        crate::safe::file_name(c).map_err(ImageError::Usage)?;
        p.push(c);
        match std::fs::symlink_metadata(&p) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => {
                return Err(ImageError::Io {
                    what: format!("reading {}", p.display()),
                    source: e,
                })
            }
            Ok(m) if m.file_type().is_symlink() => {
                return Err(ImageError::Usage(format!(
                    "/{rel} in the image is reached through a symlink ({}); refusing to follow it out of the image\n  help: rebuild the base image (`ollama-vulkan base --role runtime`)",
                    p.strip_prefix(root).unwrap_or(&p).display()
                )))
            }
            Ok(_) => {}
        }
    }
    crate::safe::read_regular(&p, max)
        .map(Some)
        .map_err(|e| ImageError::Usage(format!("/{rel} in the image: {e}")))
}

#[cfg(test)]
mod tests {
    use super::{Engine, EngineKind, Output, Shape};

    #[test]
    fn quiet_returns_stdout_without_the_engines_warnings() {
        let dir = tempfile::tempdir().unwrap();
        let fake = dir.path().join("buildah");
        std::fs::write(
            &fake,
            "#!/bin/sh\necho 'level=warning msg=\"Error validating CNI config\"' >&2\necho working-container\n[ \"$1\" = fail ] && exit 3\nexit 0\n",
        )
        .unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).unwrap();
        let e = Engine {
            kind: EngineKind::Buildah,
            program: fake,
        };
        let out = e.quiet("from", vec!["from".into()]).unwrap();
        assert_eq!(out.trim(), "working-container");
        let err = e
            .quiet("failing", vec!["fail".into()])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("CNI config") && err.contains("working-container"),
            "{err}"
        );
    }

    #[test]
    fn values_from_stdout_are_shape_checked() {
        let id = "a".repeat(64);
        assert_eq!(Shape::ImageId.check(&format!("{id}\n")), Ok(id.clone()));
        assert_eq!(
            Shape::ImageId.check(&format!("sha256:{id}")),
            Ok(format!("sha256:{id}"))
        );
        assert_eq!(
            Shape::ContainerName.check("working-container-2\n"),
            Ok("working-container-2".into())
        );
        assert_eq!(Shape::Count.check("434512345\n"), Ok("434512345".into()));
        assert!(Shape::JsonLabels.check("null").is_ok());
        assert!(Shape::JsonLabels.check("{\"a\":\"b\"}").is_ok());
        // What a chatty engine mixed into one stream looked like on the fresh machine.
        let chatty = "time=\"2026-11-28T10:00:00Z\" level=warning msg=\"Error validating CNI config file\"\nworking-container";
        assert!(Shape::ContainerName.check(chatty).is_err());
        for bad in ["", "x y", "-rf", "a/b", "../x", "ctr\nctr2"] {
            assert!(Shape::ContainerName.check(bad).is_err(), "{bad:?}");
        }
        for bad in [
            "",
            "abc",
            &"g".repeat(64),
            &format!("{id}{id}"),
            "level=warning",
        ] {
            assert!(Shape::ImageId.check(bad).is_err(), "{bad:?}");
        }
        for bad in ["", "-1", "1.5", "12 MB", "18446744073709551616"] {
            assert!(Shape::Count.check(bad).is_err(), "{bad:?}");
        }
        for bad in ["[]", "\"x\"", "level=warning", "{"] {
            assert!(Shape::JsonLabels.check(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn outputs_parse() {
        assert_eq!(
            "oci-archive:/tmp/a.tar".parse::<Output>(),
            Ok(Output::OciArchive("/tmp/a.tar".into()))
        );
        assert_eq!(
            "oci:layout".parse::<Output>(),
            Ok(Output::Oci("layout".into()))
        );
        for bad in ["oci-archive:", "docker-archive:x.tar", "x.tar"] {
            let e = bad.parse::<Output>().unwrap_err();
            assert!(e.contains("oci-archive:PATH"), "{e}");
        }
    }

    #[test]
    fn a_file_reached_through_a_symlink_is_not_read_from_the_host() {
        let root = tempfile::tempdir().unwrap();
        let lib = root.path().join("var/lib");
        std::fs::create_dir_all(&lib).unwrap();
        std::os::unix::fs::symlink("/etc", lib.join("dpkg")).unwrap();
        let e = super::read_under(root.path(), "var/lib/dpkg/status", 1 << 20).unwrap_err();
        assert!(e.to_string().contains("symlink"), "{e}");
        std::fs::remove_file(lib.join("dpkg")).unwrap();
        assert!(
            super::read_under(root.path(), "var/lib/dpkg/status", 1 << 20)
                .unwrap()
                .is_none()
        );
        std::fs::create_dir_all(lib.join("dpkg")).unwrap();
        std::os::unix::fs::symlink("/etc/passwd", lib.join("dpkg/status")).unwrap();
        assert!(super::read_under(root.path(), "var/lib/dpkg/status", 1 << 20).is_err());
    }
}
