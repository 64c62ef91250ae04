//! Running one step: output streamed to a log file in the build dir; on a terminal a
//! status line with the elapsed time and the log's last line, elsewhere a line at start and
//! end; on failure the log's last lines and its path.

use std::collections::BTreeMap;
use std::fs;
use std::io::{IsTerminal, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::Serialize;

use super::builder::Builder;
use super::BuildError;

#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct StepRecord {
    pub name: String,
    pub argv: Vec<String>,
    pub cwd: PathBuf,
    pub seconds: f64,
    pub log: PathBuf,
}

fn last_line(path: &Path) -> String {
    let Ok(mut f) = fs::File::open(path) else {
        return String::new();
    };
    let len = f.metadata().map(|m| m.len()).unwrap_or(0);
    let _ = f.seek(SeekFrom::Start(len.saturating_sub(400)));
    let mut buf = String::new();
    let _ = f.read_to_string(&mut buf);
    buf.lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("")
        .chars()
        .take(60)
        .collect()
}

/// Runs `argv` through `builder`, logging to `log`. `index`/`total` label the progress.
#[allow(clippy::too_many_arguments)]
pub fn run_step(
    builder: &Builder,
    name: &str,
    argv: &[String],
    cwd: &Path,
    env: &BTreeMap<String, String>,
    log: &Path,
    index: usize,
    total: usize,
    quiet: bool,
) -> Result<StepRecord, BuildError> {
    if let Some(dir) = log.parent() {
        fs::create_dir_all(dir).map_err(|source| BuildError::Io {
            what: format!("creating {}", dir.display()),
            source,
        })?;
    }
    let mut f = fs::File::create(log).map_err(|source| BuildError::Io {
        what: format!("creating {}", log.display()),
        source,
    })?;
    let _ = writeln!(f, "$ (cd {} && {})", cwd.display(), argv.join(" "));
    for (k, v) in env {
        let _ = writeln!(f, "# {k}={v}");
    }
    let f2 = f.try_clone().map_err(|source| BuildError::Io {
        what: format!("opening {} twice", log.display()),
        source,
    })?;
    let tty = !quiet && std::io::stderr().is_terminal();
    let label = format!("[{index}/{total}] {name}");
    if !quiet && !tty {
        eprintln!("  {label} …");
    }
    let start = Instant::now();
    let handle = builder
        .command(argv, cwd, env)
        .stdout_file(f)
        .stderr_file(f2)
        .stdin_null()
        .unchecked()
        .start()
        .map_err(|e| BuildError::Step {
            name: name.into(),
            detail: format!("cannot start {}: {e}", argv[0]),
            log: log.to_path_buf(),
        })?;
    let status = loop {
        match handle.try_wait() {
            Ok(Some(out)) => break out.status,
            Ok(None) => {
                if tty {
                    eprint!(
                        "\r\x1b[2K  {label} {} … {}",
                        fmt_elapsed(start.elapsed()),
                        last_line(log)
                    );
                    let _ = std::io::stderr().flush();
                }
                std::thread::sleep(Duration::from_millis(200));
            }
            Err(e) => {
                return Err(BuildError::Step {
                    name: name.into(),
                    detail: e.to_string(),
                    log: log.to_path_buf(),
                })
            }
        }
    };
    let seconds = start.elapsed().as_secs_f64();
    if tty {
        eprint!("\r\x1b[2K");
    }
    if !status.success() {
        return Err(BuildError::Step {
            name: name.into(),
            detail: format!(
                "exited with {} after {}; last lines:\n{}",
                status
                    .code()
                    .map(|c| c.to_string())
                    .unwrap_or_else(|| "a signal".into()),
                fmt_elapsed(start.elapsed()),
                crate::fsutil::tail_file(log, 25)
            ),
            log: log.to_path_buf(),
        });
    }
    if !quiet {
        eprintln!("  {label} done in {}", fmt_elapsed(start.elapsed()));
    }
    Ok(StepRecord {
        name: name.into(),
        argv: argv.to_vec(),
        cwd: cwd.to_path_buf(),
        seconds,
        log: log.to_path_buf(),
    })
}

pub fn fmt_elapsed(d: Duration) -> String {
    let s = d.as_secs_f64();
    if s < 60.0 {
        format!("{s:.1} s")
    } else {
        format!("{}:{:04.1}", (s / 60.0) as u64, s % 60.0)
    }
}
