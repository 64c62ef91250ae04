//! Progress on long steps, on stderr so `--json` output stays clean. On a terminal a
//! step redraws one status line; elsewhere (CI logs) it prints a line when it starts and
//! one when it ends, never a stream of carriage returns.

use std::io::{IsTerminal, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

static QUIET: AtomicBool = AtomicBool::new(false);

/// Set once by the CLI from `-q`.
pub fn set_quiet(quiet: bool) {
    QUIET.store(quiet, Ordering::Relaxed);
}

fn quiet() -> bool {
    QUIET.load(Ordering::Relaxed)
}

/// A one-off status line.
pub fn note(msg: &str) {
    if !quiet() {
        eprintln!("  {msg}");
    }
}

/// A counted step: `tick` as work is done, `finish` with a summary.
pub struct Progress {
    label: String,
    start: Instant,
    last_draw: Instant,
    count: u64,
    tty: bool,
}

impl Progress {
    pub fn start(label: impl Into<String>) -> Progress {
        let label = label.into();
        let tty = !quiet() && std::io::stderr().is_terminal();
        if !quiet() && !tty {
            eprintln!("  {label} …");
        }
        let now = Instant::now();
        Progress {
            label,
            start: now,
            last_draw: now,
            count: 0,
            tty,
        }
    }

    pub fn tick(&mut self, n: u64) {
        self.count += n;
        if self.tty && self.last_draw.elapsed() >= Duration::from_millis(100) {
            self.last_draw = Instant::now();
            eprint!(
                "\r\x1b[2K  {} … {} ({:.1} s)",
                self.label,
                self.count,
                self.start.elapsed().as_secs_f64()
            );
            let _ = std::io::stderr().flush();
        }
    }

    pub fn elapsed(&self) -> Duration {
        self.start.elapsed()
    }

    /// Ends the line with `summary` and the elapsed time; returns the elapsed time.
    pub fn finish(self, summary: &str) -> Duration {
        let el = self.start.elapsed();
        if self.tty {
            eprint!("\r\x1b[2K");
        }
        if !quiet() {
            eprintln!("  {}: {summary} ({:.2} s)", self.label, el.as_secs_f64());
        }
        el
    }
}
