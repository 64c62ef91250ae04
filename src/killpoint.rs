//! Named kill points for the crash tests (tests/integration/killpoints.rs, docs/RELIABILITY.md).
//!
//! `OLLAMA_VULKAN_KILLPOINT=NAME[:N]` makes the N-th pass (default the first) through the
//! point NAME send SIGKILL to this process: no destructor, no cleanup, no flush, exactly
//! what `kill -9` does there. `OLLAMA_VULKAN_KILLPOINT_TRACE=FILE` appends the name of
//! every point passed to FILE, so a test can list the points a clean run goes through.
//! Debug builds only (what `cargo test` runs): a release binary ignores both variables
//! and each point compiles to nothing.

/// A point between two writes where a crash must leave a state the next run recovers from.
#[inline]
pub fn hit(name: &str) {
    #[cfg(debug_assertions)]
    imp::hit(name);
    #[cfg(not(debug_assertions))]
    let _ = name;
}

#[cfg(debug_assertions)]
mod imp {
    use std::io::Write;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::OnceLock;

    struct Config {
        target: Option<(String, usize)>,
        trace: Option<std::path::PathBuf>,
    }

    fn config() -> &'static Config {
        static C: OnceLock<Config> = OnceLock::new();
        C.get_or_init(|| Config {
            target: std::env::var("OLLAMA_VULKAN_KILLPOINT").ok().map(|v| {
                match v.rsplit_once(':') {
                    Some((n, k)) if k.parse::<usize>().is_ok() => {
                        (n.to_string(), k.parse().unwrap())
                    }
                    _ => (v, 1),
                }
            }),
            trace: std::env::var_os("OLLAMA_VULKAN_KILLPOINT_TRACE").map(Into::into),
        })
    }

    extern "C" {
        fn kill(pid: i32, sig: i32) -> i32;
    }

    pub fn hit(name: &str) {
        static PASSES: AtomicUsize = AtomicUsize::new(0);
        let c = config();
        if let Some(t) = &c.trace {
            if let Ok(mut f) = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(t)
            {
                let _ = writeln!(f, "{name}");
            }
        }
        let Some((target, n)) = &c.target else { return };
        if target != name || PASSES.fetch_add(1, Ordering::SeqCst) + 1 != *n {
            return;
        }
        // SAFETY: kill(2) on our own pid; SIGKILL (9) cannot be caught, so it never returns
        // in practice (a signal to oneself is delivered before kill returns).
        unsafe {
            kill(std::process::id() as i32, 9);
        }
        std::process::abort();
    }
}
