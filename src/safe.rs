//! Untrusted input, checked once: recipes, patch series, mirrors and rebase state are all
//! shaped by contributors or upstreams, and this tool runs on machines with credentials.
//!
//! Every value that reaches a Dockerfile or a shell goes through [`sh_word`] (the one
//! quoting function), and every name that becomes a path goes through [`file_name`] or
//! [`recipe_name`]. The recipe loader applies the syntax checks below at load, so
//! `recipe check` refuses what the renderers would refuse.

use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};

/// The largest recipe, series file, SHA256SUMS or rebase state read (bytes).
pub const MAX_TEXT: u64 = 1 << 20;
/// The largest patch read (bytes).
pub const MAX_PATCH: u64 = 32 << 20;

/// Shows a value with its control characters escaped (`\n`, `\u{1b}`), for messages.
pub fn show(s: &str) -> String {
    s.escape_debug().to_string()
}

/// Refuses control characters (newline, carriage return, NUL, escape, …): in a Dockerfile
/// a newline starts a new instruction, in a shell a new command.
pub fn text(s: &str) -> Result<(), String> {
    match s.chars().find(|c| c.is_control()) {
        Some(c) => Err(format!("`{}` holds the control character {:?}", show(s), c)),
        None => Ok(()),
    }
}

/// An environment variable name: `[A-Za-z_][A-Za-z0-9_]*`.
pub fn env_key(k: &str) -> Result<(), String> {
    let mut b = k.bytes();
    let ok = b
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == b'_')
        && b.all(|c| c.is_ascii_alphanumeric() || c == b'_');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "`{}` is not an environment variable name (letters, digits and `_`, not starting with a digit)",
            show(k)
        ))
    }
}

/// A Debian package name (Debian Policy §5.6.1), optionally `:ARCH`:
/// `[a-z0-9][a-z0-9+.-]+`.
pub fn package_name(p: &str) -> Result<(), String> {
    let (name, arch) = match p.split_once(':') {
        Some((n, a)) => (n, Some(a)),
        None => (p, None),
    };
    let name_ok = name.len() >= 2
        && name.len() <= 128
        && name
            .bytes()
            .next()
            .is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        && name
            .bytes()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || b"+.-".contains(&c));
    let arch_ok = arch.is_none_or(|a| {
        !a.is_empty()
            && a.bytes()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-')
    });
    if name_ok && arch_ok {
        Ok(())
    } else {
        Err(format!(
            "`{}` is not a Debian package name (lowercase letters, digits, `+`, `-`, `.`; at least two characters)",
            show(p)
        ))
    }
}

/// A container image reference: `[registry[:port]/]path[:tag][@digest]`, from the
/// characters of the OCI distribution grammar only.
pub fn image_ref(r: &str) -> Result<(), String> {
    let bad = || {
        Err(format!(
            "`{}` is not an image reference like `debian:trixie` or `localhost/ollama-vulkan-builder:trixie`",
            show(r)
        ))
    };
    if r.is_empty() || r.len() > 255 {
        return bad();
    }
    let first = r.as_bytes()[0];
    if !(first.is_ascii_alphanumeric()) {
        return bad();
    }
    if !r
        .bytes()
        .all(|c| c.is_ascii_alphanumeric() || b"._-/:@".contains(&c))
    {
        return bad();
    }
    if r.contains("//") || r.contains("..") || r.ends_with(['/', ':', '@']) {
        return bad();
    }
    Ok(())
}

/// A version such as `3.21` (`doctor` compares it with CMake's).
pub fn dotted_version(v: &str) -> Result<(), String> {
    let parts: Vec<&str> = v.split('.').collect();
    if !parts.is_empty()
        && parts.len() <= 4
        && parts
            .iter()
            .all(|p| !p.is_empty() && p.len() <= 9 && p.bytes().all(|b| b.is_ascii_digit()))
    {
        Ok(())
    } else {
        Err(format!("`{}` is not a version like \"3.21\"", show(v)))
    }
}

/// One path component that names a file we may create: not empty, not `.` or `..`, no
/// `/`, `\`, NUL or other control character, and not `.git` in any letter case.
pub fn file_name(n: &str) -> Result<(), String> {
    let why = if n.is_empty() {
        "an empty name"
    } else if n == "." || n == ".." {
        "`.` and `..` name no file of their own"
    } else if n.contains(['/', '\\']) {
        "a name may not hold `/` or `\\`"
    } else if n.chars().any(|c| c.is_control()) {
        "a name may not hold control characters (NUL, newline, …)"
    } else if n.eq_ignore_ascii_case(".git") {
        "`.git` is git's own directory"
    } else {
        return Ok(());
    };
    Err(format!("`{}`: {why}", show(n)))
}

/// A relative `/`-separated path whose every component passes [`file_name`].
pub fn rel_path(p: &str) -> Result<(), String> {
    if p.is_empty() {
        return Err("an empty path".into());
    }
    if p.starts_with('/') {
        return Err(format!("`{}` is absolute", show(p)));
    }
    for c in p.split('/') {
        file_name(c).map_err(|why| format!("`{}`: {why}", show(p)))?;
    }
    Ok(())
}

/// A recipe's name (its file stem), which names directories under work/:
/// `[A-Za-z0-9][A-Za-z0-9._+-]*`, at most 128 characters.
pub fn recipe_name(stem: &str) -> Result<(), String> {
    let ok = !stem.is_empty()
        && stem.len() <= 128
        && stem.as_bytes()[0].is_ascii_alphanumeric()
        && stem
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || b"._+-".contains(&c));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "`{}` is not a recipe name: it names directories under work/, so it must start with a letter or digit and hold only letters, digits, `.`, `_`, `+` and `-`",
            show(stem)
        ))
    }
}

/// The validated name of the recipe at `path` (its file stem).
pub fn recipe_name_of(path: &Path) -> Result<String, String> {
    let stem = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let stem = stem.strip_suffix(".toml").unwrap_or(&stem).to_string();
    recipe_name(&stem)?;
    Ok(stem)
}

/// POSIX-shell quoting of one word, for `RUN` lines in shell form and `ENV` values: a
/// word of safe characters as is, anything else in single quotes (a `'` inside becomes
/// `'\''`). Control characters are refused: inside a Dockerfile a newline ends the
/// instruction whatever the quoting.
pub fn sh_word(s: &str) -> Result<String, String> {
    text(s)?;
    if !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./=:,+@%".contains(c))
    {
        Ok(s.to_string())
    } else {
        Ok(format!("'{}'", s.replace('\'', r"'\''")))
    }
}

/// `KEY=word` for a shell assignment (a step's env on its RUN line).
pub fn env_assign(k: &str, v: &str) -> Result<String, String> {
    env_key(k)?;
    Ok(format!("{k}={}", sh_word(v)?))
}

/// An environment value that may go into a Dockerfile `ENV`: one line, and not ending
/// in a backslash (Docker reads `"a\\"` as `a\`, hadolint as an open quote).
pub fn env_value(v: &str) -> Result<(), String> {
    text(v)?;
    if v.ends_with('\\') {
        return Err(format!(
            "`{}` ends with a backslash, which Dockerfile parsers read differently",
            show(v)
        ));
    }
    Ok(())
}

/// `KEY=value` for a Dockerfile `ENV`, whose value is read by the Dockerfile's own
/// lexer, not a shell: a value of safe characters as is, anything else in double quotes
/// with `\`, `"` and `$` escaped (no variable substitution, no line continuation).
/// Single quotes are not used here: parsers disagree on `'\'`.
pub fn dockerfile_env(k: &str, v: &str) -> Result<String, String> {
    env_key(k)?;
    env_value(v)?;
    if !v.is_empty()
        && v.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./=:,+@%".contains(c))
    {
        return Ok(format!("{k}={v}"));
    }
    let mut out = String::with_capacity(v.len() + 2);
    out.push('"');
    for c in v.chars() {
        if matches!(c, '\\' | '"' | '$') {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
    Ok(format!("{k}={out}"))
}

/// A small TOML file of the project read as untrusted input (the lab recipes): a regular
/// file of at most 1 MiB, UTF-8, the type's keys only. Err: why, and the fix.
pub fn read_toml<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T, (String, String)> {
    let shipped = format!(
        "see the shipped recipes/{} for the keys",
        path.iter()
            .rev()
            .take(2)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect::<PathBuf>()
            .display()
    );
    let text = read_regular(path, 1 << 20).map_err(|e| (e.to_string(), shipped.clone()))?;
    let text = String::from_utf8(text)
        .map_err(|_| ("not UTF-8".to_string(), "a TOML file".to_string()))?;
    toml::from_str(&text).map_err(|e| (e.message().to_string(), shipped))
}

/// Reads a regular file of at most `max` bytes. A FIFO, device or directory is refused
/// before it is opened (opening a FIFO blocks; `/dev/zero` never ends).
pub fn read_regular(path: &Path, max: u64) -> std::io::Result<Vec<u8>> {
    let meta = fs::metadata(path)?;
    if !meta.is_file() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "not a regular file (a FIFO, device or directory is never read)",
        ));
    }
    if meta.len() > max {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!("larger than {max} bytes"),
        ));
    }
    let mut out = Vec::new();
    fs::File::open(path)?.take(max + 1).read_to_end(&mut out)?;
    if out.len() as u64 > max {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!("larger than {max} bytes"),
        ));
    }
    Ok(out)
}

/// [`read_regular`] as UTF-8 text.
pub fn read_text(path: &Path, max: u64) -> std::io::Result<String> {
    String::from_utf8(read_regular(path, max)?)
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::InvalidData, "not UTF-8 text"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting_is_inert() {
        assert_eq!(sh_word("-DX=1").unwrap(), "-DX=1");
        assert_eq!(sh_word("a b").unwrap(), "'a b'");
        assert_eq!(sh_word("$(id)").unwrap(), "'$(id)'");
        assert_eq!(sh_word("it's").unwrap(), r"'it'\''s'");
        assert_eq!(sh_word("").unwrap(), "''");
        assert!(sh_word("a\nRUN x").is_err());
        assert!(sh_word("a\rb").is_err());
        assert!(env_assign("A;touch /x;B", "1").is_err());
        assert_eq!(env_assign("A_1", "x y").unwrap(), "A_1='x y'");
        assert_eq!(dockerfile_env("A", "1").unwrap(), "A=1");
        assert_eq!(
            dockerfile_env("A", "\\ \"$(x)'").unwrap(),
            r#"A="\\ \"\$(x)'""#
        );
        assert!(dockerfile_env("A", "x\ny").is_err());
    }

    #[test]
    fn names() {
        for bad in ["", ".", "..", "a/b", ".GIT", ".git", "a\0b", "a\nb", "x\\y"] {
            assert!(file_name(bad).is_err(), "{bad:?}");
        }
        for ok in ["0001-x.patch", ".gitignore", "..x", "a b"] {
            assert!(file_name(ok).is_ok(), "{ok:?}");
        }
        assert!(rel_path("a/../b").is_err());
        assert!(rel_path("/etc/passwd").is_err());
        assert!(rel_path("a/b/c.txt").is_ok());
        assert!(recipe_name(".").is_err());
        assert!(recipe_name("ollama-v0.24.0").is_ok());
        assert!(recipe_name("a\nb").is_err());
        assert!(package_name("libvulkan-dev").is_ok());
        assert!(package_name("g++").is_ok());
        assert!(package_name("ok\"; touch /pwned; \"").is_err());
        assert!(package_name("$(id)").is_err());
        assert!(image_ref("localhost/ollama-vulkan-builder:trixie").is_ok());
        assert!(image_ref("debian@sha256:abc").is_ok());
        assert!(image_ref("debian:trixie\nRUN x").is_err());
        assert!(image_ref("x y").is_err());
        assert!(dotted_version("3.21").is_ok());
        assert!(dotted_version("$(id)\nx").is_err());
    }
}
