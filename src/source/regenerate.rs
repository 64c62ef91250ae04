//! Remaking generated files that a partial mirror lacks, from the pinned tree's own
//! generator (the legacy `ggml-vulkan-shaders.hpp`, made by `ggml_vk_generate_shaders.py`
//! with glslc). The result is committed on top of the pin so the tree stays clean and
//! gen_common.sh's per-file `git checkout` keeps it.

use std::fs;
use std::path::Path;

use serde::Serialize;

use super::git::commit_paths;
use super::{RegenerateFailure, SourceError};
use crate::patch::series::sha256_hex;
use crate::recipe::model::Regenerate;

/// What the manifest records of one regenerated file.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct Regenerated {
    pub repo: String,
    pub path: String,
    pub command: Vec<String>,
    pub sha256: String,
    pub bytes: u64,
    /// First lines of `--version` of the tools the command runs (python3, glslc, …).
    pub tools: Vec<String>,
    /// The commit on top of the pin that adds the file.
    pub commit: String,
    /// Taken from the cache (made by an earlier run with the same pin and tools).
    pub reused: bool,
}

/// Runs `rule` in `tree` (HEAD at `pin`), checks it wrote the file, and commits the file.
/// Results are kept in `<cache>/regenerated/`, keyed by pin, rule and tool versions, so a
/// refetch of the same pin with the same tools reuses them.
pub fn regenerate(
    tree: &Path,
    pin: &str,
    rule: &Regenerate,
    what: &str,
    cache: &Path,
) -> Result<Regenerated, SourceError> {
    let command = rule.run.join(" ");
    let fail = |detail: String, help: &str| {
        SourceError::Regenerate(Box::new(RegenerateFailure {
            what: what.to_string(),
            path: rule.path.clone(),
            command: command.clone(),
            detail,
            help: help.to_string(),
        }))
    };
    let Some((prog, args)) = rule.run.split_first() else {
        return Err(fail(
            "the recipe's `run` is empty".into(),
            "give the generator command in [[build.regenerate]] run",
        ));
    };
    let mut tools = vec![tool_version(prog)];
    if rule.run.iter().any(|a| a.contains("glslc")) {
        tools.push(tool_version("glslc"));
    }
    let key = sha256_hex(
        format!(
            "{pin}\0{}\0{}\0{}",
            rule.path,
            rule.run.join("\0"),
            tools.join("\0")
        )
        .as_bytes(),
    );
    let cached = cache.join("regenerated").join(&key);
    let file = tree.join(&rule.path);
    if let Ok(bytes) = fs::read(&cached) {
        crate::progress::note(&format!(
            "{what}: {} reused from {}",
            rule.path,
            cached.display()
        ));
        fs::write(&file, &bytes).map_err(|e| fail(e.to_string(), "check the build directory"))?;
        return finish(tree, rule, &command, bytes, tools, true, &fail);
    }
    let progress = crate::progress::Progress::start(format!("{what}: regenerating {}", rule.path));
    // Generators that write scratch files to the temp dir (the legacy shader script
    // does) must not collide between concurrent builds.
    let scratch = tempfile::tempdir().map_err(|e| fail(e.to_string(), "check the temp dir"))?;
    let out = duct::cmd(prog, args)
        .dir(tree)
        .env("TMPDIR", scratch.path())
        .stderr_to_stdout()
        .stdout_capture()
        .unchecked()
        .run()
        .map_err(|e| {
            fail(
                format!("cannot run {prog}: {e}"),
                &format!("install {prog} (and glslc: `apt-get install glslc`), or use a mirror that has the file"),
            )
        })?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let tail = crate::fsutil::last_lines(&text, 15);
    if !out.status.success() {
        return Err(fail(tail, "install the tools it needs (glslc: `apt-get install glslc`), or use a mirror that has the file"));
    }
    // The legacy shader script logs "cannot compile" and still exits 0, leaving a
    // header without that shader: treat logged errors as failure.
    if text
        .lines()
        .any(|l| l.starts_with("ERROR") || l.contains("cannot compile"))
    {
        return Err(fail(tail, "the generator logged errors: a glslc too old or too new for this pin; use the builder's glslc"));
    }
    let bytes = fs::read(&file).map_err(|e| {
        fail(
            format!("it exited 0 but {} is not there ({e})", rule.path),
            "check the recipe's [[build.regenerate]] path and run",
        )
    })?;
    progress.finish(&format!("{} bytes", bytes.len()));
    // Written atomically: a killed run never leaves a half file to be reused.
    crate::fsutil::write_atomic(&cached, &bytes).map_err(|e| {
        fail(
            format!("caching {}: {e}", cached.display()),
            "check the cache dir",
        )
    })?;
    finish(tree, rule, &command, bytes, tools, false, &fail)
}

fn finish(
    tree: &Path,
    rule: &Regenerate,
    command: &str,
    bytes: Vec<u8>,
    tools: Vec<String>,
    reused: bool,
    fail: &dyn Fn(String, &str) -> SourceError,
) -> Result<Regenerated, SourceError> {
    let message = format!(
        "Regenerate {} (missing from the mirror)\n\nMade by `{command}` in the pinned tree.\n",
        rule.path
    );
    let commit = commit_paths(tree, std::slice::from_ref(&rule.path), &message)
        .map_err(|e| {
            fail(
                format!("committing it: {}", e.message()),
                "report this as a bug",
            )
        })?
        .to_string();
    Ok(Regenerated {
        repo: rule.repo.as_str().to_string(),
        path: rule.path.clone(),
        command: rule.run.clone(),
        sha256: sha256_hex(&bytes),
        bytes: bytes.len() as u64,
        tools,
        commit,
        reused,
    })
}

fn tool_version(prog: &str) -> String {
    duct::cmd(prog, ["--version"])
        .stdout_capture()
        .stderr_capture()
        .unchecked()
        .run()
        .ok()
        .and_then(|o| crate::build::toolchain::version_line(&o.stdout, &o.stderr))
        .map(|l| format!("{prog}: {l}"))
        .unwrap_or_else(|| format!("{prog}: unknown"))
}
