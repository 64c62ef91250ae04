//! File writes that never leave a half-written file behind.

use std::fs;
use std::io::{self, Write};
use std::path::Path;

/// The mode a rewritten `path` keeps: its own when it is a regular file, 0644 when it does
/// not exist. Anything else (a symlink, FIFO, device node, directory) is refused with
/// `InvalidInput`: renaming over it would replace what the user pointed at.
pub fn target_mode(path: &Path) -> io::Result<u32> {
    use std::os::unix::fs::PermissionsExt;
    match fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_file() => Ok(m.permissions().mode() & 0o7777),
        Ok(m) => {
            let ft = m.file_type();
            let what = if ft.is_symlink() {
                "a symlink"
            } else if ft.is_dir() {
                "a directory"
            } else {
                "not a regular file (a FIFO, socket or device node)"
            };
            Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "{} is {what}; refusing to replace it (write to a regular file, or `-` for stdout)",
                    path.display()
                ),
            ))
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(0o644),
        Err(e) => Err(e),
    }
}

/// Writes to a temporary file beside `path`, syncs it, then renames it over `path`. The
/// file keeps the mode it had (new files get 0644); a `path` that is not a regular file
/// is refused (see [`target_mode`]).
pub fn write_atomic(path: &Path, bytes: &[u8]) -> io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let mode = target_mode(path)?;
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    fs::create_dir_all(dir)?;
    let mut tmp = tempfile::Builder::new()
        .prefix(".ollama-vulkan-")
        .tempfile_in(dir)?;
    tmp.write_all(bytes)?;
    tmp.as_file()
        .set_permissions(fs::Permissions::from_mode(mode))?;
    tmp.as_file().sync_all()?;
    tmp.persist(path).map_err(|e| e.error)?;
    Ok(())
}

/// `-o FILE` of a command: `-` (or `/dev/stdout`) is stdout, anything else
/// [`write_atomic`].
pub fn write_output(path: &Path, bytes: &[u8]) -> io::Result<()> {
    if path.as_os_str() == "-" || path.as_os_str() == "/dev/stdout" {
        let mut out = io::stdout().lock();
        out.write_all(bytes)?;
        return out.flush();
    }
    write_atomic(path, bytes)
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
