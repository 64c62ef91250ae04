//! File writes that never leave a half-written file behind.

use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

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
///
/// The temporary file has a fixed name ([`temp_path`]), not a random one: a writer
/// killed before the rename leaves it, and the next write of the same file (the rerun)
/// replaces it instead of leaving one more. It is made with O_EXCL after removing any
/// leftover, so a symlink planted under that name is never followed. Writers of one file
/// are serialised by their stage's lock.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let mode = target_mode(path)?;
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    fs::create_dir_all(dir)?;
    use std::os::unix::fs::OpenOptionsExt;
    let tmp = temp_path(path);
    match fs::remove_file(&tmp) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(&tmp)?;
    // The mode above is filtered by the umask; set it exactly.
    f.set_permissions(fs::Permissions::from_mode(mode))?;
    f.write_all(bytes)?;
    f.sync_all()?;
    drop(f);
    crate::killpoint::hit("atomic.before-rename");
    fs::rename(&tmp, path)
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

/// The bytes of a file, or of every file under a directory (links not followed).
pub fn dir_bytes(p: &Path) -> u64 {
    let Ok(m) = std::fs::symlink_metadata(p) else {
        return 0;
    };
    if !m.is_dir() {
        return m.len();
    }
    std::fs::read_dir(p)
        .map(|rd| rd.flatten().map(|e| dir_bytes(&e.path())).sum())
        .unwrap_or(0)
}
