//! File writes that never leave a half-written file behind.

use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// Writes to a temporary file beside `path`, syncs it, then renames it over `path`.
///
/// The temporary file has a fixed name ([`temp_path`]), not a random one: a writer
/// killed before the rename leaves it, and the next write of the same file (the rerun)
/// replaces it instead of leaving one more. Writers of one file are serialised by their
/// stage's lock.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    fs::create_dir_all(dir)?;
    let tmp = temp_path(path);
    let mut f = fs::File::create(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    drop(f);
    crate::killpoint::hit("atomic.before-rename");
    fs::rename(&tmp, path)
}

/// The temporary file [`write_atomic`] writes `path` through: `.NAME.ollama-vulkan~`
/// beside it. A stage that may not write `path` again after a kill removes it.
pub fn temp_path(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    path.with_file_name(format!(".{name}.ollama-vulkan~"))
}

/// The last `n` lines of `text` (error messages quote the end of a tool's output).
pub fn last_lines(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// The last `n` lines of a log file (empty if it cannot be read).
pub fn tail_file(path: &Path, n: usize) -> String {
    let text = fs::read(path)
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default();
    last_lines(&text, n)
}
