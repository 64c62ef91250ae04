//! The bad-input corpus (issue #15): recipes, series, mirrors, build, image, rebase state
//! and command lines a contributor or a compromised upstream can shape. Every case runs
//! the real binary and asserts its exit code (2 for bad input), that stderr names the
//! file/line/value and carries a `help:` fix, and that nothing outside the directories
//! the case may change was touched: the whole scratch directory — with a canary directory
//! next to every tree — is listed WITH contents (mode, SHA-256, link target) before and
//! after, never by mtime.
//!
//! Adding a case is one entry in an area's table (see `recipe_cases` and its neighbours);
//! larger inputs live in tests/integration/hostile/ (docs/RELIABILITY.md, "Bad-input corpus").

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::{git, patch_text, Fixture, Run, Scratch, BIN};

use crate::support::PINNED_COMMIT as COMMIT;

/// A good era-4 recipe (it passes `recipe check` with the shipped templates) plus `extra`.
fn good(extra: &str) -> String {
    format!("extends = \"era-4\"\nera = \"4\"\n\n[ollama]\ntag = \"v0.24.0\"\ncommit = \"{COMMIT}\"\n{extra}")
}

/// Where a case runs: its own scratch project, or an area's shared fixture.
struct Ctx<'a> {
    s: &'a Scratch,
    fx: Option<&'a Fixture>,
    /// Unique per case in a shared fixture (file and series names).
    id: usize,
    /// The fixture's v0.24.0 recipe text (shared areas).
    base: &'a str,
}

impl Ctx<'_> {
    fn root(&self) -> &Path {
        self.s.path()
    }
    fn project(&self) -> PathBuf {
        self.s.project()
    }
    fn p(&self, rel: &str) -> PathBuf {
        self.root().join(rel)
    }
    fn arg(&self, rel: &str) -> String {
        self.p(rel).display().to_string()
    }
    fn file(&self, rel: &str, content: &str) -> String {
        let p = self.p(rel);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(&p, content).unwrap();
        p.display().to_string()
    }
    /// `r.toml`: a good recipe with `extra`.
    fn recipe(&self, extra: &str) -> String {
        self.file("r.toml", &good(extra))
    }
    fn fifo(&self, rel: &str) -> String {
        let p = self.p(rel);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        let ok = Command::new("mkfifo").arg(&p).status().unwrap().success();
        assert!(ok, "mkfifo");
        p.display().to_string()
    }
    fn mirrors(&self) -> Vec<String> {
        self.fx.map(|f| f.mirror_args()).unwrap_or_default()
    }
    /// A series `name` of `files` (name, bytes) with the given series and SHA256SUMS
    /// texts (None: made right), and a recipe file `rel` pinning it for `repo`.
    fn series_recipe(
        &self,
        name: &str,
        series: Option<&str>,
        sums: Option<&str>,
        files: &[(&str, &str)],
        recipe_text: &str,
        rel: &str,
    ) -> String {
        let dir = self.project().join("patches").join(name);
        fs::create_dir_all(&dir).unwrap();
        let mut st = String::new();
        let mut su = String::new();
        for (f, body) in files {
            fs::write(dir.join(f), body).unwrap();
            st.push_str(&format!("{f}\n"));
            su.push_str(&format!(
                "{}  {f}\n",
                ollama_vulkan::patch::series::sha256_hex(body.as_bytes())
            ));
        }
        let st = series.map(str::to_string).unwrap_or(st);
        let su = sums.map(str::to_string).unwrap_or(su);
        if !dir.join("series").exists() {
            fs::write(dir.join("series"), st).unwrap();
        }
        if fs::symlink_metadata(dir.join("SHA256SUMS")).is_err() {
            fs::write(dir.join("SHA256SUMS"), &su).unwrap();
        }
        let pin = ollama_vulkan::patch::series::sha256_hex(su.as_bytes());
        self.file(
            rel,
            &format!("{recipe_text}\n[[series]]\nname = \"{name}\"\nrepo = \"ollama\"\nsha256 = \"{pin}\"\n"),
        )
    }
    /// A per-case recipe over the fixture's v0.24.0 pin with a series of `patches`.
    fn fx_recipe(&self, patches: &[(&str, String)]) -> String {
        let name = format!("c{}", self.id);
        let files: Vec<(&str, &str)> = patches.iter().map(|(n, b)| (*n, b.as_str())).collect();
        let rel = format!("project/work/recipes/c{}.toml", self.id);
        self.series_recipe(&name, None, None, &files, self.base, &rel)
    }
    fn dest(&self) -> String {
        self.arg(&format!("build-{}", self.id))
    }
}

type Setup = Box<dyn Fn(&Ctx) -> Vec<String>>;
type After = Box<dyn Fn(&Ctx, &Run) -> Result<(), String>>;

struct Case {
    name: &'static str,
    setup: Setup,
    code: i32,
    needles: Vec<&'static str>,
    absent: Vec<&'static str>,
    /// Paths (relative to the scratch dir, prefixes) the case may change.
    may_change: Vec<String>,
    /// Checks after the run (beyond code, stderr and the listing).
    after: Option<After>,
}

fn case(
    name: &'static str,
    code: i32,
    needles: &[&'static str],
    setup: impl Fn(&Ctx) -> Vec<String> + 'static,
) -> Case {
    Case {
        name,
        setup: Box::new(setup),
        code,
        needles: needles.to_vec(),
        absent: Vec::new(),
        may_change: Vec::new(),
        after: None,
    }
}

impl Case {
    fn absent(mut self, a: &[&'static str]) -> Case {
        self.absent = a.to_vec();
        self
    }
    fn may_change(mut self, p: &str) -> Case {
        self.may_change.push(p.to_string());
        self
    }
    fn after(mut self, f: impl Fn(&Ctx, &Run) -> Result<(), String> + 'static) -> Case {
        self.after = Some(Box::new(f));
        self
    }
}

fn args(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

/// Every path under `root` with what it is: `f <mode> <sha256>`, `d <mode>`, `l <target>`
/// or `o <type>` (FIFO, socket, device). Contents, not mtimes.
fn listing(root: &Path) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(rd) = fs::read_dir(&dir) else { continue };
        for e in rd.flatten() {
            let p = e.path();
            let rel = p.strip_prefix(root).unwrap().display().to_string();
            let Ok(m) = fs::symlink_metadata(&p) else {
                continue;
            };
            let mode = m.permissions().mode() & 0o7777;
            let ft = m.file_type();
            let v = if ft.is_symlink() {
                format!("l {}", fs::read_link(&p).unwrap().display())
            } else if ft.is_dir() {
                stack.push(p.clone());
                format!("d {mode:o}")
            } else if ft.is_file() {
                let bytes = fs::read(&p).unwrap_or_default();
                format!(
                    "f {mode:o} {}",
                    ollama_vulkan::patch::series::sha256_hex(&bytes)
                )
            } else {
                format!("o {ft:?}")
            };
            out.insert(rel, v);
        }
    }
    out
}

/// Canary directories next to every tree a case could reach: a file each that no case
/// may change.
fn plant_canaries(s: &Scratch) {
    for d in [
        "canary",
        "project/canary",
        "project/work/canary",
        "project/work/builds/canary",
        "project/patches/canary",
        "cache-canary",
    ] {
        let p = s.path().join(d);
        fs::create_dir_all(&p).unwrap();
        fs::write(p.join("victim"), format!("canary in {d}\n")).unwrap();
        fs::write(p.join("victim.patch"), canary_patch()).unwrap();
    }
}

/// The patch in every canary directory (a series entry that climbs out names it).
fn canary_patch() -> String {
    patch_text(
        "Canary",
        "Pending",
        "diff --git a/canary b/canary\nnew file mode 100644\n--- /dev/null\n+++ b/canary\n@@ -0,0 +1 @@\n+x\n",
    )
}

/// Runs the binary with a time limit (a FIFO or /dev/zero must never hang it).
fn run_bin(s: &Scratch, a: &[String]) -> Run {
    let mut cmd = Command::new(BIN);
    cmd.args(a)
        .current_dir(s.path())
        .env("OLLAMA_VULKAN_PROJECT", s.project())
        .env("OLLAMA_VULKAN_CACHE", s.cache())
        .env_remove("OLLAMA_VULKAN_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    let start = Instant::now();
    loop {
        if child.try_wait().unwrap().is_some() {
            break;
        }
        if start.elapsed() > Duration::from_secs(60) {
            let _ = child.kill();
            let _ = child.wait();
            return Run {
                code: -9,
                stdout: String::new(),
                stderr: "killed after 60 s: the binary hung".into(),
            };
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().unwrap().into()
}

/// Runs one case; returns what was wrong with it.
fn check(c: &Case, ctx: &Ctx) -> Result<(), String> {
    let a = (c.setup)(ctx);
    let before = listing(ctx.root());
    let run = run_bin(ctx.s, &a);
    let after = listing(ctx.root());
    let mut bad = Vec::new();
    if run.code != c.code {
        bad.push(format!("exit {} (expected {})", run.code, c.code));
    }
    for n in &c.needles {
        if !run.stderr.contains(n) && !run.stdout.contains(n) {
            bad.push(format!("output lacks {n:?}"));
        }
    }
    for n in &c.absent {
        if run.stderr.contains(n) {
            bad.push(format!("stderr has {n:?}"));
        }
    }
    if c.code == 2 && !run.stderr.contains("help:") {
        bad.push("stderr carries no `help:` fix".into());
    }
    // A prefix; one ending in `/` also allows the directory itself.
    let allowed = |k: &str| {
        c.may_change
            .iter()
            .any(|p| k.starts_with(p.as_str()) || (p.ends_with('/') && k == &p[..p.len() - 1]))
    };
    for k in before.keys().chain(after.keys()) {
        if before.get(k) != after.get(k) && !allowed(k) {
            bad.push(format!(
                "{k} changed: {:?} -> {:?}",
                before.get(k),
                after.get(k)
            ));
        }
    }
    if let Some(f) = &c.after {
        if let Err(e) = f(ctx, &run) {
            bad.push(e);
        }
    }
    if bad.is_empty() {
        Ok(())
    } else {
        bad.dedup();
        Err(format!(
            "{}: {}\n  args: {a:?}\n  stderr: {}",
            c.name,
            bad.join("; "),
            run.stderr.trim()
        ))
    }
}

/// Each case in a scratch project of its own.
fn run_alone(cases: Vec<Case>) -> usize {
    let mut failures = Vec::new();
    for c in &cases {
        let s = Scratch::new();
        plant_canaries(&s);
        let ctx = Ctx {
            s: &s,
            fx: None,
            id: 0,
            base: "",
        };
        if let Err(e) = check(c, &ctx) {
            failures.push(e);
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
    cases.len()
}

/// The cases in one shared fixture (each with its own names).
fn run_in_fixture(fx: &Fixture, cases: Vec<Case>) -> usize {
    plant_canaries(&fx.scratch);
    let base_recipe = fx.new_recipe("v0.24.0");
    let base = fs::read_to_string(&base_recipe).unwrap();
    let mut failures = Vec::new();
    for (i, c) in cases.iter().enumerate() {
        let ctx = Ctx {
            s: &fx.scratch,
            fx: Some(fx),
            id: i,
            base: &base,
        };
        if let Err(e) = check(c, &ctx) {
            failures.push(e);
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
    cases.len()
}

// ---------------------------------------------------------------------------------------
// recipe: `recipe check` refuses, naming file:line and the value.

/// A `recipe check` case: a good recipe plus `extra`, refused with `needles`.
fn rc(name: &'static str, extra: &'static str, needles: &[&'static str]) -> Case {
    case(name, 2, needles, move |c| {
        args(&["recipe", "check", &c.recipe(extra)])
    })
}

/// A step list with one hostile field.
fn step(field: &str) -> String {
    format!("\n[[build.steps]]\nname = \"s\"\nrun = [\"true\"]\n{field}\n")
}

fn recipe_cases() -> Vec<Case> {
    vec![
        rc(
            "cmake_options newline becomes a RUN line",
            "[build]\ncmake_options = [\"-DX=1\\nRUN touch /pwned\"]\n",
            &["r.toml:8:1", "cmake_options", "-DX=1\\nRUN touch /pwned", "control character"],
        ),
        rc(
            "cmake_options carriage return",
            "[build]\ncmake_options = [\"-DX=1\\rRUN x\"]\n",
            &["r.toml:8", "cmake_options"],
        ),
        rc(
            "go_flags newline",
            "[build]\ngo_flags = [\"-v\\nRUN x\"]\n",
            &["r.toml:8", "go_flags"],
        ),
        rc(
            "presets newline",
            "[build]\npresets = [\"CPU\\nRUN x\"]\n",
            &["r.toml:8", "presets"],
        ),
        rc(
            "build.env key with newline",
            "[build.env]\n\"A\\nRUN touch /pwned\" = \"1\"\n",
            &["r.toml", "[build.env] key", "not an environment variable name"],
        ),
        rc(
            "build.env key with shell",
            "[build.env]\n\"A;touch /pwned;B\" = \"1\"\n",
            &["r.toml:8", "A;touch /pwned;B"],
        ),
        rc(
            "build.env key with =",
            "[build.env]\n\"A=B\" = \"1\"\n",
            &["r.toml:8", "A=B"],
        ),
        rc(
            "build.env value newline",
            "[build.env]\nX = \"1\\nRUN touch /pwned\"\n",
            &["r.toml:8:1", "[build.env] X", "control character"],
        ),
        rc(
            "build.env value ends with a backslash",
            "[build.env]\nX = \"a\\\\\"\n",
            &["r.toml:8:1", "ends with a backslash"],
        ),
        rc(
            "image.env key with shell",
            "[image.env]\n\"A;touch /pwned;B\" = \"1\"\n",
            &["r.toml:8", "[image.env] key"],
        ),
        rc(
            "image.env value newline",
            "[image.env]\nX = \"a\\nRUN touch /pwned\"\n",
            &["r.toml:8:1", "[image.env] X"],
        ),
        rc(
            "image.base newline",
            "[image]\nbase = { builder = \"debian:trixie\\nRUN touch /pwned\" }\n",
            &["r.toml", "[image.base] builder", "not an image reference"],
        ),
        rc(
            "image.base shell",
            "[image]\nbase = { runtime = \"$(touch /pwned)\" }\n",
            &["r.toml", "[image.base] runtime", "$(touch /pwned)"],
        ),
        rc(
            "image.base with a space",
            "[image]\nbase = { runtime = \"debian trixie\" }\n",
            &["[image.base] runtime"],
        ),
        rc(
            "runtime_packages closes the quote",
            "[image]\nruntime_packages = [\"ok\\\"; touch /pwned; \\\"\"]\n",
            &["r.toml:8:1", "runtime_packages", "not a Debian package name"],
        ),
        rc(
            "runtime_packages command substitution",
            "[image]\nruntime_packages = [\"$(touch /pwned)\"]\n",
            &["runtime_packages", "$(touch /pwned)"],
        ),
        rc(
            "builder_packages backticks",
            "[build]\nbuilder_packages = [\"`touch /pwned`\"]\n",
            &["r.toml:8:1", "builder_packages"],
        ),
        rc(
            "image variants newline",
            "[image]\nvariants = [\"linux\\nRUN x\"]\n",
            &["variants"],
        ),
        case("step name newline", 2, &["r.toml", "[[build.steps]] #1 name"], |c| {
            args(&["recipe", "check", &c.recipe(&step("name = \"n\\nRUN touch /pwned\"").replace("name = \"s\"\n", ""))])
        }),
        rc(
            "step cwd newline",
            "\n[[build.steps]]\nname = \"s\"\nrun = [\"true\"]\ncwd = \"a\\nRUN x\"\n",
            &["[[build.steps]] #1 cwd"],
        ),
        rc(
            "step cwd leaves the tree",
            "\n[[build.steps]]\nname = \"s\"\nrun = [\"true\"]\ncwd = \"../../canary\"\n",
            &["[[build.steps]] #1 cwd", "leaves the tree"],
        ),
        rc(
            "step argv newline",
            "\n[[build.steps]]\nname = \"s\"\nrun = [\"echo\", \"x\\nRUN touch /pwned\"]\n",
            &["r.toml:8:9", "[[build.steps]] #1 run"],
        ),
        rc(
            "step env key injection",
            "\n[[build.steps]]\nname = \"s\"\nrun = [\"true\"]\nenv = { \"A;touch /pwned;B\" = \"1\" }\n",
            &["[[build.steps]] #1 env key", "A;touch /pwned;B"],
        ),
        rc(
            "step env value newline",
            "\n[[build.steps]]\nname = \"s\"\nrun = [\"true\"]\nenv = { A = \"1\\nRUN x\" }\n",
            &["[[build.steps]] #1 env A"],
        ),
        rc(
            "cmake_min command and newline",
            "[build]\ncmake_min = \"$(id)\\nx\"\n",
            &["r.toml:8:1", "cmake_min", "not a version"],
        ),
        rc(
            "check_libs leaves the tree",
            "[build]\ncheck_libs = [\"../../canary/victim\"]\n",
            &["check_libs", "`..`"],
        ),
        rc(
            "keep_build_dirs absolute",
            "[build]\nkeep_build_dirs = [\"/etc\"]\n",
            &["keep_build_dirs", "absolute"],
        ),
        rc(
            "regenerate path leaves the tree",
            "\n[[build.regenerate]]\nrepo = \"ollama\"\npath = \"../x\"\nrun = [\"true\"]\n",
            &["[[build.regenerate]] path"],
        ),
        rc(
            "sparse newline",
            "[build]\nsparse = [\"!/a\\nb\"]\n",
            &["sparse"],
        ),
        rc(
            "smoke env key injection",
            "[smoke]\nvulkan_env = { \"A;B\" = \"1\" }\n",
            &["[smoke]", "A;B"],
        ),
        rc(
            "ollama url is an option",
            "url = \"--upload-pack=touch /pwned\"\n",
            &["r.toml:7:7", "starts with `-`"],
        ),
        rc(
            "llamacpp url newline",
            "\n[llamacpp]\nurl = \"https://x\\n--upload-pack=x\"\n",
            &["r.toml:9:7", "control character"],
        ),
        rc(
            "fuzz = -1 says what the value must be",
            "\n[[series]]\nname = \"x\"\nrepo = \"ollama\"\nsha256 = \"0\"\nfuzz = -1\n",
            &["r.toml:12:8", "fuzz` is a whole number"],
        )
        .absent(&["fix the TOML syntax"]),
        rc(
            "series name climbs",
            "\n[[series]]\nname = \"../canary\"\nrepo = \"ollama\"\nsha256 = \"0\"\n",
            &["r.toml:9:8", "not a series name"],
        ),
        case("extends an absolute path", 2, &["r.toml:1:11", "absolute path or climbs"], |c| {
            let t = c.project().join("recipes/era-4.toml");
            let text = good("").replace("\"era-4\"", &format!("\"{}\"", t.display()));
            args(&["recipe", "check", &c.file("r.toml", &text)])
        }),
        case("extends climbs with ..", 2, &["r.toml:1:11", "climbs with `..`"], |c| {
            let text = good("").replace("\"era-4\"", "\"../project/recipes/era-4.toml\"");
            args(&["recipe", "check", &c.file("sub/r.toml", &text)])
        }),
        case(
            "extends a recipe: one true message",
            2,
            &["is not an era template"],
            |c| {
                c.file("base.toml", &good(""));
                let text = good("").replace("\"era-4\"", "\"base.toml\"");
                args(&["recipe", "check", &c.file("r.toml", &text)])
            },
        )
        .absent(&["templates cannot extend other templates"]),
        case("recipe file name with a newline", 2, &["not a recipe name", "a\\nb"], |c| {
            args(&["recipe", "check", &c.file("a\nb.toml", &good(""))])
        }),
        case("recipe named ..toml", 2, &["not a recipe name"], |c| {
            args(&["recipe", "check", &c.file("..toml", &good(""))])
        }),
        case("recipe is a FIFO", 2, &["not a regular file"], |c| {
            args(&["recipe", "check", &c.fifo("r.toml")])
        }),
        case("recipe is /dev/zero", 2, &["/dev/zero", "not a regular file"], |_| {
            args(&["recipe", "check", "/dev/zero"])
        }),
        case("recipe is too large", 2, &["larger than"], |c| {
            let big = format!("{}\n# {}\n", good(""), "x".repeat(2 << 20));
            args(&["recipe", "check", &c.file("r.toml", &big)])
        }),
    ]
}

#[test]
fn corpus_recipe() {
    let n = run_alone(recipe_cases());
    assert!(n >= 40, "{n}");
}

// ---------------------------------------------------------------------------------------
// series: entries are plain file names inside the series directory.

fn create_patch(path: &str) -> String {
    patch_text(
        "Create",
        "Pending",
        &format!("diff --git a/{path} b/{path}\nnew file mode 100644\n--- /dev/null\n+++ b/{path}\n@@ -0,0 +1 @@\n+x\n"),
    )
}

/// A `recipe check` of a recipe pinning series `vk` made of `files`, `series` and `sums`.
fn sc(
    name: &'static str,
    series: Option<&'static str>,
    sums: Option<String>,
    files: Vec<(&'static str, String)>,
    code: i32,
    needles: &[&'static str],
) -> Case {
    case(name, code, needles, move |c| {
        let f: Vec<(&str, &str)> = files.iter().map(|(n, b)| (*n, b.as_str())).collect();
        let sums = sums
            .as_deref()
            .map(|s| s.replace("@ROOT@", &c.root().display().to_string()));
        let series = series.map(|s| s.replace("@ROOT@", &c.root().display().to_string()));
        let r = c.series_recipe(
            "vk",
            series.as_deref(),
            sums.as_deref(),
            &f,
            &good(""),
            "r.toml",
        );
        args(&["recipe", "check", &r])
    })
}

fn sha(b: &str) -> String {
    ollama_vulkan::patch::series::sha256_hex(b.as_bytes())
}

fn series_cases() -> Vec<Case> {
    let ok = create_patch("NEW");
    let victim = canary_patch();
    vec![
        sc(
            "series entry climbs out",
            Some("../canary/victim.patch\n"),
            Some(format!("{}  ../canary/victim.patch\n", sha(&victim))),
            vec![],
            2,
            &["series:1", "../canary/victim.patch", "not a patch file name", "help:"],
        ),
        sc(
            "series entry absolute",
            Some("@ROOT@/canary/victim.patch\n"),
            None,
            vec![],
            2,
            &["series:1", "canary/victim.patch", "may not hold `/`"],
        ),
        sc(
            "series entry in a subdirectory",
            Some("sub/x.patch\n"),
            None,
            vec![],
            2,
            &["series:1", "sub/x.patch"],
        ),
        sc(
            "series entry .git",
            Some(".git\n"),
            None,
            vec![],
            2,
            &["series:1", "`.git` is git's own directory"],
        ),
        sc(
            "series entry names the series file",
            Some("x.patch\nseries\n"),
            None,
            vec![("x.patch", ok.clone())],
            2,
            &["series:2", "the series' own file"],
        ),
        sc(
            "series entry with a backslash",
            Some("a\\b.patch\n"),
            None,
            vec![],
            2,
            &["series:1", "a\\\\b.patch"],
        ),
        sc(
            "SHA256SUMS lists a name twice with two hashes",
            None,
            Some(format!("{}  x.patch\n{}  x.patch\n", sha(&ok), "0".repeat(64))),
            vec![("x.patch", ok.clone())],
            2,
            &["SHA256SUMS:2", "listed twice (first on line 1)"],
        ),
        sc(
            "SHA256SUMS climbs out",
            None,
            Some(format!("{}  x.patch\n{}  ../canary/victim\n", sha(&ok), "0".repeat(64))),
            vec![("x.patch", ok.clone())],
            2,
            &["SHA256SUMS:2", "../canary/victim"],
        ),
        sc(
            "SHA256SUMS in sha256sum -b form is accepted",
            None,
            Some(format!("{} *x.patch\n", sha(&ok))),
            vec![("x.patch", ok.clone())],
            0,
            &["ok: "],
        ),
        sc(
            "SHA256SUMS malformed",
            None,
            Some(format!("{}x.patch\n", sha(&ok))),
            vec![("x.patch", ok.clone())],
            2,
            &["SHA256SUMS:1", "malformed line"],
        ),
        sc(
            "patch sets mode 104755 (setuid)",
            None,
            None,
            vec![(
                "x.patch",
                patch_text(
                    "Setuid",
                    "Pending",
                    "diff --git a/s b/s\nnew file mode 104755\n--- /dev/null\n+++ b/s\n@@ -0,0 +1 @@\n+x\n",
                ),
            )],
            2,
            &["mode 104755", "100644 or 100755"],
        ),
        sc(
            "patch sets mode 100777",
            None,
            None,
            vec![(
                "x.patch",
                patch_text(
                    "World",
                    "Pending",
                    "diff --git a/hello.go b/hello.go\nold mode 100644\nnew mode 100777\n",
                ),
            )],
            2,
            &["mode 100777"],
        ),
        case("series file is a FIFO", 2, &["series", "not a regular file"], |c| {
            c.fifo("project/patches/vk/series");
            let r = c.series_recipe("vk", None, Some(""), &[], &good(""), "r.toml");
            args(&["recipe", "check", &r])
        }),
        case("SHA256SUMS is /dev/zero", 2, &["SHA256SUMS", "not a regular file"], |c| {
            let d = c.project().join("patches/vk");
            fs::create_dir_all(&d).unwrap();
            std::os::unix::fs::symlink("/dev/zero", d.join("SHA256SUMS")).unwrap();
            let r = c.series_recipe("vk", Some(""), Some(""), &[], &good(""), "r.toml");
            args(&["recipe", "check", &r])
        }),
    ]
}

#[test]
fn corpus_series() {
    let n = run_alone(series_cases());
    assert!(n >= 14, "{n}");
}

// ---------------------------------------------------------------------------------------
// mirror: a hostile upstream tree writes nothing.

/// A git object written as is (no fsck): `git hash-object --literally`.
fn object(repo: &Path, kind: &str, bytes: &[u8]) -> String {
    use std::io::Write;
    let mut child = Command::new("git")
        .args(["hash-object", "--literally", "-w", "--stdin", "-t", kind])
        .current_dir(repo)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(bytes).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

/// A tree of (mode, name, id) entries, in the order given.
fn tree(repo: &Path, entries: &[(&str, &str, String)]) -> String {
    let mut b = Vec::new();
    for (mode, name, id) in entries {
        b.extend_from_slice(format!("{mode} {name}\0").as_bytes());
        let raw: Vec<u8> = (0..20)
            .map(|i| u8::from_str_radix(&id[2 * i..2 * i + 2], 16).unwrap())
            .collect();
        b.extend_from_slice(&raw);
    }
    object(repo, "tree", &b)
}

/// A bare mirror whose v0.24.0 is a commit of the tree `make` builds; returns the mirror
/// and the commit.
fn hostile_mirror(dir: &Path, make: &dyn Fn(&Path) -> String) -> (PathBuf, String) {
    fs::create_dir_all(dir).unwrap();
    git(dir, &["init", "-q", "--bare"]);
    let t = make(dir);
    let c = git(dir, &["commit-tree", &t, "-m", "hostile"]);
    git(dir, &["tag", "v0.24.0", &c]);
    (dir.to_path_buf(), c)
}

fn blob(repo: &Path, s: &str) -> String {
    object(repo, "blob", s.as_bytes())
}

/// `fetch` of a recipe over a hostile mirror: exit 2, nothing written anywhere.
fn mc(name: &'static str, needles: &[&'static str], make: fn(&Path) -> String) -> Case {
    case(name, 2, needles, move |c| {
        let (m, commit) = hostile_mirror(&c.p(&format!("hostile-{}", c.id)), &make);
        let r = c.file(
            &format!("project/work/recipes/m{}.toml", c.id),
            &good("").replace(COMMIT, &commit),
        );
        args(&["fetch", &r, &format!("--mirror=ollama={}", m.display())])
    })
}

fn mirror_cases() -> Vec<Case> {
    vec![
        mc(
            "tree entry .. nested",
            &[
                "`a/..`",
                "would write outside the tree",
                "nothing was written",
            ],
            |r| {
                let f = blob(r, "pwned\n");
                let t1 = tree(r, &[("100644", "pwned", f)]);
                let t2 = tree(r, &[("40000", "..", t1)]);
                let t3 = tree(r, &[("40000", "..", t2)]);
                let m = blob(r, "module x\n");
                tree(r, &[("40000", "a", t3), ("100644", "go.mod", m)])
            },
        ),
        mc(
            "symlink then a subtree of the same name",
            &["`lnk`", "two entries of the tree have this name"],
            |r| {
                let l = blob(r, "/");
                let f = blob(r, "pwned\n");
                let sub = tree(r, &[("100644", "file", f)]);
                tree(r, &[("120000", "lnk", l), ("40000", "lnk", sub)])
            },
        ),
        mc("entry .git", &["`.git`", "git's own directory"], |r| {
            let f = blob(r, "[core]\n\thooksPath = /tmp\n");
            let g = tree(r, &[("100644", "config", f)]);
            tree(r, &[("40000", ".git", g)])
        }),
        mc("entry .GIT", &["`.GIT`"], |r| {
            let f = blob(r, "x\n");
            let g = tree(r, &[("100644", "config", f)]);
            tree(r, &[("40000", ".GIT", g)])
        }),
        mc(
            "entry name holds a slash",
            &["`a/b`", "may not hold `/`"],
            |r| {
                let f = blob(r, "x\n");
                tree(r, &[("100644", "a/b", f)])
            },
        ),
        mc(
            "entry name holds a newline",
            &["a\\nb", "control characters"],
            |r| {
                let f = blob(r, "x\n");
                tree(r, &[("100644", "a\nb", f)])
            },
        ),
        mc("entry .", &["`.` and `..`"], |r| {
            let f = blob(r, "x\n");
            let t = tree(r, &[("100644", "x", f)]);
            tree(r, &[("40000", ".", t)])
        }),
        mc("entry ..", &["`..`"], |r| {
            let f = blob(r, "x\n");
            tree(r, &[("100644", "..", f)])
        }),
        mc(
            "two entries of one name",
            &["two entries of the tree have this name"],
            |r| {
                let f = blob(r, "x\n");
                let g = blob(r, "y\n");
                tree(r, &[("100644", "x", f), ("100644", "x", g)])
            },
        ),
        mc("empty entry name", &["git cannot parse it"], |r| {
            let f = blob(r, "x\n");
            tree(r, &[("100644", "", f)])
        }),
        case(
            "a hostile upstream through the cache is refused by fsck",
            2,
            &["transfer.fsckObjects", "help:"],
            |c| {
                let (m, commit) = hostile_mirror(&c.p(&format!("hostile-{}", c.id)), &|r| {
                    let f = blob(r, "pwned\n");
                    let t1 = tree(r, &[("100644", "pwned", f)]);
                    let t2 = tree(r, &[("40000", "..", t1)]);
                    tree(r, &[("40000", "a", t2)])
                });
                let text = good("").replace(COMMIT, &commit).replace(
                    "[ollama]\n",
                    &format!("[ollama]\nurl = \"file://{}\"\n", m.display()),
                );
                let r = c.file(&format!("project/work/recipes/m{}.toml", c.id), &text);
                args(&["fetch", &r])
            },
        )
        .may_change("cache/"),
        case(
            "sparse **/ ×14 stays linear",
            0,
            &["ollama v0.24.0"],
            |c| {
                let base = c.base.to_string();
                let extra = format!("\n[build]\nsparse = [\"!/{}Z\"]\n", "**/".repeat(14));
                let r = c.file(
                    &format!("project/work/recipes/s{}.toml", c.id),
                    &(base + &extra),
                );
                let mut a = args(&["fetch", &r, "--dest", &c.dest()]);
                a.extend(c.mirrors());
                a
            },
        )
        .may_change("build-"),
    ]
}

#[test]
fn corpus_mirror() {
    let fx = Fixture::new();
    let n = run_in_fixture(&fx, mirror_cases());
    assert!(n >= 12, "{n}");
}

// ---------------------------------------------------------------------------------------
// prepare: one validation for --check and prepare.

fn create_diff(path: &str) -> String {
    format!("diff --git a/{path} b/{path}\nnew file mode 100644\n--- /dev/null\n+++ b/{path}\n@@ -0,0 +1 @@\n+x\n")
}

/// `prepare [--check]` of a series of `patches` over the fixture's v0.24.0.
fn pc(
    name: &'static str,
    check: bool,
    code: i32,
    needles: &[&'static str],
    patches: fn() -> Vec<(&'static str, String)>,
) -> Case {
    let c = case(name, code, needles, move |c| {
        let r = c.fx_recipe(&patches());
        let mut a = args(&["prepare", &r, "--dest", &c.dest()]);
        if check {
            a.push("--check".into());
        }
        a.extend(c.mirrors());
        a
    });
    c.may_change("build-")
}

fn one(subject: &'static str, diff: String) -> Vec<(&'static str, String)> {
    vec![("0001.patch", patch_text(subject, "Pending", &diff))]
}

/// The tree at `dest` still has HEAD at the pin and a clean index.
fn head_at_pin(c: &Ctx, _: &Run) -> Result<(), String> {
    let tree = c.p(&format!("build-{}/src/ollama", c.id));
    if !tree.exists() {
        return Ok(());
    }
    let head = git(&tree, &["rev-parse", "HEAD"]);
    let pin = c.fx.unwrap().ollama.dir.clone();
    let want = git(&pin, &["rev-parse", "v0.24.0^{commit}"]);
    let status = git(&tree, &["status", "--porcelain"]);
    if head != want || !status.is_empty() {
        return Err(format!("HEAD {head} (pin {want}), status {status:?}"));
    }
    Ok(())
}

fn prepare_cases() -> Vec<Case> {
    let mut v = Vec::new();
    for check in [true, false] {
        v.extend([
            pc("patch path climbs", check, 2, &["0001.patch", "`../x`", "leaves the tree", "help:"], || {
                one("Up", create_diff("../x"))
            }),
            pc("patch path .GIT", check, 2, &["writes into the git directory"], || {
                one("Git", create_diff(".GIT/config"))
            }),
            pc("patch path holds NUL", check, 2, &["a\\0b", "control characters"], || {
                one("Nul", create_diff("a\0b"))
            }),
            pc("patch through the tree's symlink", check, 2, &["symlink `escape`"], || {
                one("Esc", create_diff("escape/x"))
            }),
            pc("file then a file below it", check, 1, &["aa/b cannot be created: aa is a file"], || {
                vec![
                    ("0001.patch", patch_text("A", "Pending", &create_diff("aa"))),
                    ("0002.patch", patch_text("B", "Pending", &create_diff("aa/b"))),
                ]
            }),
            pc("a file below an existing file", check, 1, &["hello.go/x cannot be created: hello.go is a file"], || {
                one("Below", create_diff("hello.go/x"))
            }),
            pc("a file over a directory", check, 1, &["cannot be created"], || {
                one("Dir", create_diff("ml"))
            }),
            pc("CRLF patch on an LF file shows the endings", check, 1, &["package main\\r"], || {
                one("Crlf", "diff --git a/hello.go b/hello.go\n--- a/hello.go\n+++ b/hello.go\n@@ -1,3 +1,3 @@\n package main\r\n \r\n-func hello() {}\r\n+func hello() { }\r\n".into())
            }),
        ]);
    }
    for c in v.iter_mut().skip(8) {
        c.after = Some(Box::new(head_at_pin));
    }
    v.push(
        case("context-only hunk with --fuzz 3 does not panic", 0, &[], |c| {
            let r = c.fx_recipe(&one(
                "Ctx",
                "diff --git a/hello.go b/hello.go\n--- a/hello.go\n+++ b/hello.go\n@@ -1,3 +1,3 @@\n package main\n \n func hello() {}\n".into(),
            ));
            let mut a = args(&["prepare", &r, "--check", "--fuzz", "3"]);
            a.extend(c.mirrors());
            a
        }),
    );
    v
}

#[test]
fn corpus_prepare() {
    let fx = Fixture::new();
    let n = run_in_fixture(&fx, prepare_cases());
    assert!(n >= 17, "{n}");
}

/// Era 1: a series for the Ollama tree may not write into the llama.cpp submodule, in
/// --check and in prepare alike; prepare leaves HEAD at the pin and the index clean.
#[test]
fn corpus_era1_submodule() {
    let fx = Fixture::new();
    plant_canaries(&fx.scratch);
    let base = fs::read_to_string(fx.new_recipe("v0.1.23")).unwrap();
    let mut failures = Vec::new();
    let mut n = 0;
    for (i, diff) in [
        create_diff("llm/llama.cpp/evil.c"),
        "diff --git a/llm/llama.cpp/ggml.c b/llm/llama.cpp/ggml.c\n--- a/llm/llama.cpp/ggml.c\n+++ b/llm/llama.cpp/ggml.c\n@@ -1 +1 @@\n-// ggml\n+// pwned\n".to_string(),
    ]
    .into_iter()
    .enumerate()
    {
        for check in [true, false] {
            n += 1;
            let d = diff.clone();
            let base = base.clone();
            let c = case("era 1 patch into llm/llama.cpp", 2, &["inside the submodule `llm/llama.cpp`", "# target: llama.cpp"], move |c| {
                let r = c.series_recipe(
                    &format!("e{}", c.id),
                    None,
                    None,
                    &[("0001.patch", &patch_text("Sub", "Pending", &d))],
                    &base,
                    &format!("project/work/recipes/e{}.toml", c.id),
                );
                let mut a = args(&["prepare", &r, "--dest", &c.dest()]);
                if check {
                    a.push("--check".into());
                }
                a.extend(c.mirrors());
                a
            })
            .may_change("build-")
            .after(|c, _| {
                let tree = c.p(&format!("build-{}/src/ollama", c.id));
                if !tree.exists() {
                    return Ok(());
                }
                let status = git(&tree, &["status", "--porcelain"]);
                let head = git(&tree, &["log", "--format=%s", "-1"]);
                if !status.is_empty() || head.contains("Sub") {
                    return Err(format!("tree changed: HEAD {head:?}, status {status:?}"));
                }
                Ok(())
            });
            let ctx = Ctx {
                s: &fx.scratch,
                fx: Some(&fx),
                id: 100 + i * 2 + usize::from(check),
                base: "",
            };
            if let Err(e) = check_case(&c, &ctx) {
                failures.push(e);
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert_eq!(n, 4);
}

fn check_case(c: &Case, ctx: &Ctx) -> Result<(), String> {
    check(c, ctx)
}

// ---------------------------------------------------------------------------------------
// rebase: a stopped rebase's state.json is not trusted.

/// A state that passes validation: `--abort` of it succeeds and restores nothing.
fn state(c: &Ctx) -> serde_json::Value {
    let root = fs::canonicalize(c.root()).unwrap();
    let recipe = root.join("project/work/recipes/r.toml");
    let text = fs::read(&recipe).unwrap();
    let side = serde_json::json!({"tag": "v0.24.0", "commit": "1".repeat(40), "era": "4", "vulkan_switch": null, "evidence": []});
    serde_json::json!({
        "recipe": recipe,
        "onto": "v0.25.0",
        "onto_commit": "2".repeat(40),
        "era": {"from": side, "to": side, "changed": false, "reasons": []},
        "allow_era_change": false,
        "jobs": [{
            "name": "vk", "repo": "ollama", "dir": root.join("project/patches/vk"),
            "patches": ["0001-a.patch"], "fuzz": 0,
            "old_base": "1".repeat(40), "new_base": "2".repeat(40),
            "pin_file": recipe, "sha256": "x"
        }],
        "cur": [0, 0],
        "o_tree": "3".repeat(40),
        "p_tree": "4".repeat(40),
        "n_commit": "2".repeat(40),
        "results": [[]],
        "pending": {"paths": ["app.go"], "conflicts": [], "renames": [], "files": []},
        "originals": [{
            "path": recipe,
            "sha256": ollama_vulkan::patch::series::sha256_hex(&text),
            "copy": root.join("project/work/rebase/r/orig/0000")
        }],
        "new_llama_commit": null,
        "new_llama_version": null
    })
}

/// `rebase-patches r.toml ACTION` over a state `edit` makes from the valid one.
fn rb(
    name: &'static str,
    action: &'static str,
    needles: &[&'static str],
    edit: fn(&Ctx, &mut serde_json::Value),
) -> Case {
    case(name, 2, needles, move |c| {
        let r = c.file("project/work/recipes/r.toml", &good(""));
        let mut st = state(c);
        edit(c, &mut st);
        c.file(
            "project/work/rebase/r/state.json",
            &serde_json::to_string_pretty(&st).unwrap(),
        );
        c.file("project/work/rebase/r/orig/0000", &good(""));
        args(&["rebase-patches", &r, action])
    })
    .after(|c, _| {
        if c.p("project/work/rebase/r.lock").exists() {
            Err("a refused rebase left work/rebase/r.lock".into())
        } else {
            Ok(())
        }
    })
}

fn victim(c: &Ctx) -> PathBuf {
    fs::canonicalize(c.p("canary/victim")).unwrap()
}

fn rebase_cases() -> Vec<Case> {
    vec![
        case(
            "a valid state aborts (the harness's control)",
            0,
            &[],
            |c| {
                let r = c.file("project/work/recipes/r.toml", &good(""));
                c.file(
                    "project/work/rebase/r/state.json",
                    &serde_json::to_string(&state(c)).unwrap(),
                );
                args(&["rebase-patches", &r, "--abort"])
            },
        )
        .may_change("project/work/rebase"),
        rb(
            "originals path outside: --abort would overwrite it",
            "--abort",
            &["state.json", "`originals[0].path`", "never writes"],
            |c, s| {
                s["originals"][0]["path"] = victim(c).display().to_string().into();
                s["originals"][0]["sha256"] = "0".repeat(64).into();
            },
        ),
        rb(
            "originals path outside with sha256 null: --abort would delete it",
            "--abort",
            &["`originals[0].path`"],
            |c, s| {
                s["originals"][0]["path"] = victim(c).display().to_string().into();
                s["originals"][0]["sha256"] = serde_json::Value::Null;
            },
        ),
        rb(
            "originals copy outside the state dir",
            "--abort",
            &["`originals[0].copy`", "outside the state's own copies"],
            |c, s| {
                s["originals"][0]["copy"] = victim(c).display().to_string().into();
            },
        ),
        rb(
            "originals sha256 not a hash",
            "--abort",
            &["`originals[0].sha256`"],
            |_, s| {
                s["originals"][0]["sha256"] = "x".into();
            },
        ),
        rb(
            "cur past the series",
            "--continue",
            &["`cur`", "(5, 0)"],
            |_, s| {
                s["cur"] = serde_json::json!([5, 0]);
            },
        ),
        rb(
            "cur past the patches",
            "--continue",
            &["`cur`", "(0, 9)"],
            |_, s| {
                s["cur"] = serde_json::json!([0, 9]);
            },
        ),
        rb(
            "n_commit null with a conflict pending",
            "--continue",
            &["`n_commit`", "is null"],
            |_, s| {
                s["n_commit"] = serde_json::Value::Null;
            },
        ),
        rb(
            "no conflict pending for --skip",
            "--skip",
            &["`pending`"],
            |_, s| {
                s["pending"] = serde_json::Value::Null;
            },
        ),
        rb(
            "job dir outside patches/",
            "--abort",
            &["`jobs[0].dir`"],
            |c, s| {
                s["jobs"][0]["dir"] = c.p("canary").display().to_string().into();
            },
        ),
        rb("job name climbs", "--abort", &["`jobs[0].name`"], |_, s| {
            s["jobs"][0]["name"] = "../canary".into();
        }),
        rb(
            "job patch climbs",
            "--abort",
            &["`jobs[0].patches`", "may not hold `/`"],
            |_, s| {
                s["jobs"][0]["patches"] = serde_json::json!(["../../canary/victim.patch"]);
            },
        ),
        rb(
            "pin file outside",
            "--abort",
            &["`jobs[0].pin_file`"],
            |c, s| {
                s["jobs"][0]["pin_file"] = victim(c).display().to_string().into();
            },
        ),
        rb(
            "old base not a commit",
            "--abort",
            &["`jobs[0].old_base`"],
            |_, s| {
                s["jobs"][0]["old_base"] = "abc".into();
            },
        ),
        rb(
            "state of another recipe",
            "--abort",
            &["`recipe`", "this is the rebase of"],
            |c, s| {
                s["recipe"] = victim(c).display().to_string().into();
            },
        ),
        rb(
            "pending path climbs",
            "--continue",
            &["`pending.paths`", "`..`"],
            |_, s| {
                s["pending"]["paths"] = serde_json::json!(["../../../canary/victim"]);
            },
        ),
        rb(
            "result names a patch not in the series",
            "--continue",
            &["`results[0]`"],
            |_, s| {
                s["results"] = serde_json::json!([[{"patch": "../../x", "subject": "", "status": "clean", "changed": false}]]);
            },
        ),
        rb(
            "onto_commit not a commit",
            "--abort",
            &["`onto_commit`"],
            |_, s| {
                s["onto_commit"] = "HEAD".into();
            },
        ),
        case(
            "state.json is not JSON",
            2,
            &["state.json", "not a rebase state file"],
            |c| {
                let r = c.file("project/work/recipes/r.toml", &good(""));
                c.file("project/work/rebase/r/state.json", "{ nope");
                args(&["rebase-patches", &r, "--abort"])
            },
        ),
        case(
            "state.json is a FIFO",
            2,
            &["state.json", "not a regular file"],
            |c| {
                let r = c.file("project/work/recipes/r.toml", &good(""));
                c.fifo("project/work/rebase/r/state.json");
                args(&["rebase-patches", &r, "--continue"])
            },
        ),
        case(
            "--continue without a rebase writes no lock",
            2,
            &["no rebase of", "in progress"],
            |c| {
                let r = c.file("project/work/recipes/r.toml", &good(""));
                args(&["rebase-patches", &r, "--continue"])
            },
        ),
        case(
            "--onto with a series entry outside the series dir",
            2,
            &["series:1", "not a patch file name"],
            |c| {
                let victim = canary_patch();
                let r = c.series_recipe(
                    "vk",
                    Some("../canary/victim.patch\n"),
                    Some(&format!("{}  ../canary/victim.patch\n", sha(&victim))),
                    &[],
                    &good(""),
                    "project/work/recipes/r.toml",
                );
                args(&["rebase-patches", &r, "--onto", "v0.25.0"])
            },
        )
        .after(|c, _| {
            if c.p("project/work/rebase").exists() {
                Err("a refused --onto left work/rebase/".into())
            } else {
                Ok(())
            }
        }),
        case(
            "a recipe named ..toml has no state dir",
            2,
            &["not a recipe name"],
            |c| {
                let r = c.file("project/work/recipes/..toml", &good(""));
                args(&["rebase-patches", &r, "--abort"])
            },
        ),
    ]
}

#[test]
fn corpus_rebase() {
    let n = run_alone(rebase_cases());
    assert!(n >= 23, "{n}");
}

// ---------------------------------------------------------------------------------------
// build, image and the command line.

fn build_image_cli_cases() -> Vec<Case> {
    vec![
        case(
            "build: cmake_options newline",
            2,
            &["r.toml:8:1", "cmake_options"],
            |c| {
                args(&[
                    "build",
                    &c.recipe("[build]\ncmake_options = [\"-DX=1\\nRUN touch /pwned\"]\n"),
                    "--builder",
                    "host",
                ])
            },
        ),
        case(
            "build: step env key injection",
            2,
            &["[[build.steps]] #1 env key"],
            |c| {
                args(&["build", &c.recipe("\n[[build.steps]]\nname = \"s\"\nrun = [\"true\"]\nenv = { \"A;touch /pwned;B\" = \"1\" }\n"), "--builder", "host"])
            },
        ),
        case("build: recipe is a FIFO", 2, &["not a regular file"], |c| {
            args(&["build", &c.fifo("r.toml"), "--builder", "host"])
        }),
        case(
            "doctor: cmake_min is not a version",
            2,
            &["cmake_min", "not a version"],
            |c| {
                args(&[
                    "doctor",
                    &c.recipe("[build]\ncmake_min = \"$(id)\\nx\"\n"),
                    "--builder",
                    "host",
                ])
            },
        ),
        case(
            "doctor: a bad --project is named",
            2,
            &["/no/such/project has no recipes/"],
            |c| {
                args(&[
                    "--project",
                    "/no/such/project",
                    "doctor",
                    &c.recipe(""),
                    "--builder",
                    "host",
                ])
            },
        )
        .absent(&["pass --project"]),
        case(
            "dockerfile: runtime package closes the quote",
            2,
            &["runtime_packages"],
            |c| {
                args(&[
                    "dockerfile",
                    &c.recipe("[image]\nruntime_packages = [\"ok\\\"; touch /pwned; \\\"\"]\n"),
                ])
            },
        ),
        case(
            "dockerfile: image.base newline",
            2,
            &["[image.base] builder"],
            |c| {
                args(&[
                    "dockerfile",
                    &c.recipe("[image]\nbase = { builder = \"x\\nRUN touch /pwned\" }\n"),
                ])
            },
        ),
        case(
            "dockerfile -o a symlink",
            2,
            &["is a symlink", "help:"],
            |c| {
                let r = c.recipe("");
                std::os::unix::fs::symlink(c.p("canary/victim"), c.p("out")).unwrap();
                args(&["dockerfile", &r, "-o", &c.arg("out")])
            },
        ),
        case("dockerfile -o a FIFO", 2, &["FIFO"], |c| {
            let r = c.recipe("");
            args(&["dockerfile", &r, "-o", &c.fifo("out")])
        }),
        case("dockerfile -o a directory", 2, &["is a directory"], |c| {
            let r = c.recipe("");
            args(&["dockerfile", &r, "-o", &c.arg("canary")])
        }),
        case(
            "dockerfile -o a device node",
            2,
            &["/dev/null", "device node"],
            |c| args(&["dockerfile", &c.recipe(""), "-o", "/dev/null"]),
        )
        .after(|_, _| {
            use std::os::unix::fs::FileTypeExt;
            let m = fs::symlink_metadata("/dev/null").map_err(|e| e.to_string())?;
            if m.file_type().is_char_device() {
                Ok(())
            } else {
                Err("/dev/null is no longer a device".into())
            }
        }),
        case(
            "dockerfile -o - is stdout",
            0,
            &["FROM ${RUNTIME_IMAGE}"],
            |c| args(&["dockerfile", &c.recipe(""), "-o", "-"]),
        ),
        case(
            "dockerfile -o /dev/stdout is stdout",
            0,
            &["FROM ${RUNTIME_IMAGE}"],
            |c| args(&["dockerfile", &c.recipe(""), "-o", "/dev/stdout"]),
        ),
        case("dockerfile -o keeps the file's mode", 0, &[], |c| {
            let r = c.recipe("");
            let out = c.file("Dockerfile", "old\n");
            fs::set_permissions(&out, fs::Permissions::from_mode(0o640)).unwrap();
            args(&["dockerfile", &r, "-o", &out])
        })
        .may_change("Dockerfile")
        .after(|c, _| {
            let m = fs::metadata(c.p("Dockerfile"))
                .unwrap()
                .permissions()
                .mode()
                & 0o777;
            if m == 0o640 {
                Ok(())
            } else {
                Err(format!("mode {m:o}, not 640"))
            }
        }),
        case("dockerfile -o a new file is 0644", 0, &[], |c| {
            args(&["dockerfile", &c.recipe(""), "-o", &c.arg("new/Dockerfile")])
        })
        .may_change("new")
        .after(|c, _| {
            let m = fs::metadata(c.p("new/Dockerfile"))
                .unwrap()
                .permissions()
                .mode()
                & 0o777;
            if m == 0o644 {
                Ok(())
            } else {
                Err(format!("mode {m:o}, not 644"))
            }
        }),
        case(
            "--cache-dir is a file",
            2,
            &["--cache-dir", "not a directory"],
            |c| {
                let r = c.recipe("");
                args(&["--cache-dir", &c.arg("canary/victim"), "fetch", &r])
            },
        ),
        case(
            "--offline with no cache creates nothing",
            2,
            &["--offline"],
            |c| {
                let r = c.file("project/work/recipes/o.toml", &good(""));
                args(&["--offline", "--cache-dir", &c.arg("cache-new"), "fetch", &r])
            },
        ),
        case(
            "fetch ..toml has no build dir",
            2,
            &["not a recipe name"],
            |c| args(&["fetch", &c.file("project/work/recipes/..toml", &good(""))]),
        ),
        case(
            "--mirror without NAME=",
            2,
            &["--mirror nonsense", "NAME=PATH"],
            |c| args(&["fetch", &c.recipe(""), "--mirror", "nonsense"]),
        ),
    ]
}

#[test]
fn corpus_build_image_cli() {
    let n = run_alone(build_image_cli_cases());
    assert!(n >= 19, "{n}");
}

/// `recipe new -o FILE` over a real mirror: the target's mode is kept, `-` is stdout.
#[test]
fn recipe_new_output_modes() {
    let fx = Fixture::new();
    let out = fx.scratch.file("mine.toml", "old\n");
    fs::set_permissions(&out, fs::Permissions::from_mode(0o640)).unwrap();
    fx.run(&[
        "recipe",
        "new",
        "--ollama",
        "v0.24.0",
        "-o",
        out.to_str().unwrap(),
    ])
    .ok();
    assert_eq!(
        fs::metadata(&out).unwrap().permissions().mode() & 0o777,
        0o640
    );
    let r = fx.run(&["recipe", "new", "--ollama", "v0.24.0", "-o", "-"]);
    r.ok();
    assert!(r.stdout.contains("extends = \"era-4\""), "{}", r.stdout);
    assert!(!fx.scratch.path().join("-").exists());
    // A symlink at the target is refused, and its target left alone.
    let victim = fx.scratch.file("victim", "mine\n");
    let link = fx.scratch.path().join("link.toml");
    std::os::unix::fs::symlink(&victim, &link).unwrap();
    fx.run(&[
        "recipe",
        "new",
        "--ollama",
        "v0.24.0",
        "-o",
        link.to_str().unwrap(),
    ])
    .fails(2, &["is a symlink", "help:"]);
    assert!(fs::symlink_metadata(&link)
        .unwrap()
        .file_type()
        .is_symlink());
    assert_eq!(fs::read_to_string(&victim).unwrap(), "mine\n");
}

// ---------------------------------------------------------------------------------------
// The Dockerfile of a recipe full of hostile (but valid) values is inert.

/// A base image of the host's dash and libc (no registry, no Debian mirror): enough for
/// the builder stage's shell-form RUN lines; `dpkg -s` always succeeds so apt never runs.
fn tiny_base(engine: &str, tag: &str, work: &Path) {
    let root = work.join("rootfs");
    for d in [
        "bin",
        "usr/bin",
        "lib/x86_64-linux-gnu",
        "lib64",
        "usr/lib",
        "tmp",
        "etc",
    ] {
        fs::create_dir_all(root.join(d)).unwrap();
    }
    fs::set_permissions(root.join("tmp"), fs::Permissions::from_mode(0o1777)).unwrap();
    let dash = ["/usr/bin/dash", "/bin/dash"]
        .into_iter()
        .find(|p| Path::new(p).exists())
        .expect("dash");
    fs::copy(dash, root.join("bin/sh")).unwrap();
    for (from, to) in [
        (
            "/lib/x86_64-linux-gnu/libc.so.6",
            "lib/x86_64-linux-gnu/libc.so.6",
        ),
        ("/lib/x86_64-linux-gnu/libc.so.6", "usr/lib/libc.so.6"),
        ("/lib64/ld-linux-x86-64.so.2", "lib64/ld-linux-x86-64.so.2"),
    ] {
        fs::copy(from, root.join(to)).unwrap();
    }
    fs::write(root.join("usr/bin/dpkg"), "#!/bin/sh\nexit 0\n").unwrap();
    fs::set_permissions(root.join("usr/bin/dpkg"), fs::Permissions::from_mode(0o755)).unwrap();
    fs::write(root.join("etc/passwd"), "root:x:0:0:root:/root:/bin/sh\n").unwrap();
    let tar = work.join("rootfs.tar");
    assert!(Command::new("tar")
        .arg("-C")
        .arg(&root)
        .arg("-cf")
        .arg(&tar)
        .arg(".")
        .status()
        .unwrap()
        .success());
    let out = Command::new(engine)
        .arg("import")
        .arg(&tar)
        .arg(tag)
        .env(
            "CONTAINERS_STORAGE_CONF",
            crate::support::containers_storage_conf(),
        )
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{engine} import: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn hostile_values_render_inert() {
    let s = Scratch::new();
    let text = fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/integration/hostile/inert.toml"
    ))
    .unwrap();
    let recipe = s.file("inert.toml", &text);
    s.run(&["recipe", "check", recipe.to_str().unwrap()]).ok();
    let ctx = s.path().join("ctx");
    let cwd = ctx.join("src/ollama/sub dir;: >pwned-16");
    fs::create_dir_all(&cwd).unwrap();
    let dockerfile = ctx.join("Dockerfile");
    s.run(&[
        "dockerfile",
        recipe.to_str().unwrap(),
        "-o",
        dockerfile.to_str().unwrap(),
    ])
    .ok();
    let d = fs::read_to_string(&dockerfile).unwrap();
    insta::assert_snapshot!("dockerfile_hostile_values", d);
    // `{jobs}` inside an argument is the container's nproc, as natively.
    assert!(d.contains("-j\"$(nproc)\""), "{d}");
    // Every instruction is on a line of its own: no value opened a new one.
    let instructions: Vec<&str> = d
        .lines()
        .filter(|l| !l.starts_with('#') && !l.starts_with(' ') && !l.is_empty())
        .map(|l| l.split_whitespace().next().unwrap())
        .collect();
    for i in &instructions {
        assert!(
            [
                "ARG",
                "FROM",
                "RUN",
                "ENV",
                "COPY",
                "WORKDIR",
                "USER",
                "EXPOSE",
                "HEALTHCHECK",
                "LABEL",
                "ENTRYPOINT",
                "CMD"
            ]
            .contains(i),
            "unexpected instruction {i}:\n{d}"
        );
    }
    assert_eq!(
        instructions.iter().filter(|i| **i == "RUN").count(),
        5,
        "apt twice, two steps, useradd:\n{d}"
    );
    crate::support::assert_hadolint_clean(&dockerfile);
    // Run the builder stage: the proof step fails the build if any marker exists.
    let engine = ["podman", "buildah"].into_iter().find(|e| {
        Command::new(e)
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success())
    });
    let Some(engine) = engine else {
        eprintln!("skipped the container build: neither podman nor buildah is installed");
        return;
    };
    let tag = "localhost/ollama-vulkan-hostile-base:1";
    tiny_base(engine, tag, s.path());
    let mut cmd = Command::new(engine);
    if engine == "buildah" {
        cmd.arg("bud");
    } else {
        cmd.arg("build");
    }
    let out = cmd
        .args([
            "--isolation",
            "chroot",
            "--pull=never",
            "--target",
            "builder",
            "-t",
            "localhost/ollama-vulkan-hostile-proof:1",
            "-f",
        ])
        .arg(&dockerfile)
        .arg(&ctx)
        .env(
            "CONTAINERS_STORAGE_CONF",
            crate::support::containers_storage_conf(),
        )
        .output()
        .unwrap();
    let log = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{engine} build failed:\n{log}");
    assert!(log.contains("no-marker"), "{log}");
    assert!(!log.contains("\nMARKER "), "{log}");
    // The hostile words reached echo as single arguments, literally.
    assert!(log.contains("$(: >/tmp/pwned-2)"), "{log}");
    assert!(!cwd.join("pwned-16").exists());
}
