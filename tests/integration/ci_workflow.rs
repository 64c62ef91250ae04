//! The GitHub workflow `.github/workflows/ollama-tags.yml`: actionlint passes on it (and
//! fails on a broken copy, so the lint is real), and every step that runs
//! `ollama-vulkan` is run here by bash, job by job as GitHub would, against the fixture
//! mirrors: a first scheduled run, a second with nothing new, then a manual run over a
//! range whose matrix feeds a tag job that builds, smokes and assembles the image.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_yaml::Value;

use crate::support::{shared_cache, Fixture, BIN};

const WORKFLOW: &str = ".github/workflows/ollama-tags.yml";

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn workflow() -> Value {
    serde_yaml::from_str(&fs::read_to_string(repo().join(WORKFLOW)).unwrap()).unwrap()
}

/// `ACTIONLINT`, else `actionlint` on PATH (.ci/run installs it with `go install`).
fn actionlint() -> PathBuf {
    std::env::var_os("ACTIONLINT")
        .map(PathBuf::from)
        .unwrap_or_else(|| "actionlint".into())
}

fn lint(file: &Path) -> std::process::Output {
    Command::new(actionlint())
        .arg("-no-color")
        .arg(file)
        .output()
        .unwrap_or_else(|e| panic!("actionlint does not run ({e}): .ci/run installs it"))
}

#[test]
fn the_workflow_lints_clean_and_a_broken_copy_does_not() {
    let out = lint(&repo().join(WORKFLOW));
    assert!(
        out.status.success(),
        "actionlint:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // A job that needs one that does not exist, and a shell error in a script: both found.
    let text = fs::read_to_string(repo().join(WORKFLOW)).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("broken.yml");
    fs::write(
        &bad,
        text.replacen("needs: discover", "needs: discovr", 1)
            .replacen("mkdir -p ci-out", "if [ -d ci-out; then mkdir -p ci-out", 1),
    )
    .unwrap();
    let out = lint(&bad);
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success(), "{said}");
    assert!(said.contains("discovr"), "{said}");
}

/// What a run sets `${{ … }}` to; an expression the test does not know stops it (the
/// workflow changed: say here what it is in a run).
struct Run {
    values: BTreeMap<&'static str, String>,
}

impl Run {
    fn expand(&self, s: &str) -> String {
        let mut out = String::new();
        let mut rest = s;
        while let Some(i) = rest.find("${{") {
            out.push_str(&rest[..i]);
            let end = rest[i..].find("}}").expect("closed expression") + i;
            let expr = rest[i + 3..end].trim();
            let v = self
                .values
                .get(expr)
                .unwrap_or_else(|| panic!("the test has no value for ${{{{ {expr} }}}}"));
            out.push_str(v);
            rest = &rest[end + 2..];
        }
        out.push_str(rest);
        out
    }
}

fn env_of(v: &Value, run: &Run) -> BTreeMap<String, String> {
    v.get("env")
        .and_then(Value::as_mapping)
        .map(|m| {
            m.iter()
                .map(|(k, v)| {
                    let v = match v {
                        Value::String(s) => s.clone(),
                        Value::Bool(b) => b.to_string(),
                        other => panic!("env value {other:?}"),
                    };
                    (k.as_str().unwrap().to_string(), run.expand(&v))
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Runs the steps of `job` that call `ollama-vulkan`, in order, in `ws`; returns the
/// job's step outputs (`$GITHUB_OUTPUT`).
fn run_job(wf: &Value, job: &str, run: &Run, ws: &Path) -> BTreeMap<String, String> {
    let j = &wf["jobs"][job];
    let mut env = env_of(wf, run);
    env.extend(env_of(j, run));
    let tmp = tempfile::tempdir().unwrap();
    let output = tmp.path().join("output");
    let summary = tmp.path().join("summary");
    let bin_dir = Path::new(BIN).parent().unwrap();
    let mut ran = 0;
    for step in j["steps"].as_sequence().unwrap() {
        let Some(script) = step.get("run").and_then(Value::as_str) else {
            continue;
        };
        if !script.contains("ollama-vulkan ") {
            continue;
        }
        let script = run.expand(script);
        let mut step_env = env.clone();
        step_env.extend(env_of(step, run));
        let out = Command::new("bash")
            .args(["--noprofile", "--norc", "-eo", "pipefail", "-c", &script])
            .current_dir(ws)
            .envs(&step_env)
            .env(
                "PATH",
                format!("{}:{}", bin_dir.display(), std::env::var("PATH").unwrap()),
            )
            .env("GITHUB_OUTPUT", &output)
            .env("GITHUB_STEP_SUMMARY", &summary)
            // The shared cache holds the runtime root and the smoke's venv.
            .env("OLLAMA_VULKAN_CACHE", shared_cache())
            .env_remove("OLLAMA_VULKAN_PROJECT")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{job} / {:?}: exit {:?}\nstdout:\n{}\nstderr:\n{}",
            step.get("name"),
            out.status.code(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        ran += 1;
    }
    assert!(ran > 0, "job {job} runs no ollama-vulkan step");
    fs::read_to_string(&output)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn discover_run(tags: &str) -> Run {
    Run {
        values: BTreeMap::from([
            ("inputs.tags", tags.to_string()),
            ("inputs.include_rc", "false".to_string()),
        ]),
    }
}

#[test]
fn every_ollama_vulkan_step_of_the_workflow_runs_on_fixture_mirrors() {
    let fx = Fixture::new();
    crate::image::runtime_base(&fx);
    // The workspace: the checkout (templates, series, the summary script) with the
    // mirrors where the workflow's cache step leaves them.
    let ws = fx.scratch.project();
    let scripts = ws.join(".github/scripts");
    fs::create_dir_all(&scripts).unwrap();
    fs::copy(
        repo().join(".github/scripts/ci-summary.py"),
        scripts.join("ci-summary.py"),
    )
    .unwrap();
    fs::create_dir_all(ws.join("mirrors")).unwrap();
    let clone = |from: &Path, name: &str| {
        let st = Command::new("git")
            .args(["clone", "-q", "--mirror"])
            .arg(from)
            .arg(ws.join("mirrors").join(name))
            .status()
            .unwrap();
        assert!(st.success());
    };
    clone(&fx.ollama.dir, "ollama.git");
    clone(&fx.llama.repo.dir, "llama.cpp.git");
    let wf = workflow();

    // The first scheduled run: no state, so it starts at the newest release; no tag job.
    let out = run_job(&wf, "discover", &discover_run(""), &ws);
    assert_eq!(out["any"], "false", "{out:?}");
    assert_eq!(out["matrix"], r#"{"include":[]}"#);
    let state = fs::read_to_string(ws.join("work/ci-state.json")).unwrap();
    assert!(state.contains("v9.9.9"), "{state}");
    // The next one: nothing new, still no tag job.
    let out = run_job(&wf, "discover", &discover_run(""), &ws);
    assert_eq!(out["any"], "false", "{out:?}");

    // A manual run over a range: the matrix, the checks and their report.
    let out = run_job(&wf, "discover", &discover_run("v0.24.0..v0.32.15"), &ws);
    assert_eq!(out["any"], "true");
    let matrix: serde_json::Value = serde_json::from_str(&out["matrix"]).unwrap();
    let jobs = matrix["include"].as_array().unwrap();
    assert!(jobs.len() >= 2, "{matrix}");
    let report: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(ws.join("ci-report.json")).unwrap()).unwrap();
    assert_eq!(report["ok"], true, "{report:#}");
    assert_eq!(report["tags"].as_array().unwrap().len(), jobs.len());

    // One tag job, as the matrix hands it out.
    let first = &jobs[0];
    let tag = first["tag"].as_str().unwrap();
    let run = Run {
        values: BTreeMap::from([
            ("matrix.tag", tag.to_string()),
            ("matrix.era", first["era"].as_str().unwrap().to_string()),
            (
                "inputs.registry || vars.OLLAMA_VULKAN_REGISTRY",
                String::new(),
            ),
        ]),
    };
    run_job(&wf, "tag", &run, &ws);
    let j: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(ws.join(format!("ci-out/{tag}.json"))).unwrap())
            .unwrap();
    crate::ci::assert_report_schema(&j);
    crate::ci::assert_report_schema(&report);
    let row = &j["tags"][0];
    let stages: Vec<(&str, &str)> = row["stages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| (s["stage"].as_str().unwrap(), s["status"].as_str().unwrap()))
        .collect();
    assert_eq!(
        stages,
        [
            ("recipe", "ok"),
            ("check", "ok"),
            ("build", "ok"),
            ("smoke", "ok"),
            ("image", "ok")
        ],
        "{row:#}"
    );
    // The digest `ci` reports is the archive's: what the push step copies.
    let archive = ws.join(format!("ci-out/images/{tag}.oci.tar"));
    let inspected = Command::new("skopeo")
        .args(["inspect", "--raw"])
        .arg(format!("oci-archive:{}", archive.display()))
        .output()
        .unwrap();
    assert!(inspected.status.success());
    let digest = format!(
        "sha256:{}",
        ollama_vulkan::patch::series::sha256_hex(&inspected.stdout)
    );
    assert_eq!(row["image_digest"], digest.as_str(), "{row:#}");
    assert!(row["smoke_tokens_per_s"].as_f64().unwrap() > 0.0);
    // The run keeps its own package lock: nothing written into the checkout's recipes/.
    assert!(ws.join("ci-out/packages.lock").is_file());
    assert!(!ws.join("recipes/base/packages.lock").exists());
}
