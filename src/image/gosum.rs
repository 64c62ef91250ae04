//! The Go modules an Ollama tree pins, from its `go.sum`: `MODULE VERSION[/go.mod]
//! h1:BASE64`. go.sum comes from upstream's tree, so every line is checked: three fields,
//! a module path and version of Go's own characters, an `h1:` hash; anything else is
//! refused with its line rather than carried into the SBOM.

/// One module whose source go.sum pins (a `/go.mod`-only line is a module whose
/// go.mod was read for the build graph, not its code).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Module {
    pub path: String,
    pub version: String,
    /// The `h1:` hash of the module's tree (Go's dirhash, not a file's SHA-256).
    pub h1: String,
}

pub const MAX_GOSUM: u64 = 8 << 20;

/// Parses go.sum; Err((line, why)).
pub fn parse(text: &str) -> Result<Vec<Module>, (usize, String)> {
    let mut out: Vec<Module> = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let n = i + 1;
        if line.trim().is_empty() {
            continue;
        }
        let f: Vec<&str> = line.split(' ').collect();
        let [path, version, hash] = f[..] else {
            return Err((
                n,
                format!(
                    "`{}` is not `MODULE VERSION h1:HASH`",
                    crate::safe::show(&line.chars().take(120).collect::<String>())
                ),
            ));
        };
        module_path(path).map_err(|why| (n, why))?;
        let (version, gomod) = match version.strip_suffix("/go.mod") {
            Some(v) => (v, true),
            None => (version, false),
        };
        module_version(version).map_err(|why| (n, why))?;
        let h = hash.strip_prefix("h1:").unwrap_or("");
        if h.len() != 44
            || !h
                .bytes()
                .all(|c| c.is_ascii_alphanumeric() || b"+/=".contains(&c))
        {
            return Err((
                n,
                format!(
                    "`{}` is not an h1: hash (44 base64 characters)",
                    crate::safe::show(hash)
                ),
            ));
        }
        if !gomod {
            out.push(Module {
                path: path.to_string(),
                version: version.to_string(),
                h1: hash.to_string(),
            });
        }
    }
    out.sort_by(|a, b| (&a.path, &a.version).cmp(&(&b.path, &b.version)));
    out.dedup_by(|a, b| a.path == b.path && a.version == b.version);
    Ok(out)
}

/// A module path: Go's allowed characters (golang.org/x/mod/module), no `..` element.
fn module_path(p: &str) -> Result<(), String> {
    let ok = !p.is_empty()
        && p.len() <= 256
        && !p.starts_with(['/', '-', '.'])
        && p.bytes()
            .all(|c| c.is_ascii_alphanumeric() || b"-._~/+!".contains(&c))
        && p.split('/').all(|e| !e.is_empty() && e != "." && e != "..");
    if ok {
        Ok(())
    } else {
        Err(format!(
            "`{}` is not a Go module path",
            crate::safe::show(p)
        ))
    }
}

/// A module version: `v` then semver characters.
fn module_version(v: &str) -> Result<(), String> {
    let ok = v.len() > 1
        && v.len() <= 128
        && v.starts_with('v')
        && v.bytes()
            .all(|c| c.is_ascii_alphanumeric() || b".+-".contains(&c));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "`{}` is not a Go module version (v1.2.3, v0.0.0-2024…-abcdef)",
            crate::safe::show(v)
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const H: &str = "h1:7vLn9G8bU8TUQ7Dc5QUVoAJHF8nAC8U6Gg0BYb7fV5w=";

    #[test]
    fn modules_with_code_only() {
        let text = format!(
            "github.com/a/b v1.2.3 {H}\ngithub.com/a/b v1.2.3/go.mod {H}\ngolang.org/x/sys v0.0.0-20240101-abcdef/go.mod {H}\n"
        );
        let m = parse(&text).unwrap();
        assert_eq!(m.len(), 1);
        assert_eq!(m[0].path, "github.com/a/b");
        assert_eq!(m[0].version, "v1.2.3");
    }

    #[test]
    fn odd_lines_are_refused_with_their_line() {
        for (bad, needle) in [
            (format!("a/b v1 {H} extra"), "MODULE VERSION"),
            (format!("../../etc v1.0.0 {H}"), "module path"),
            (format!("a/b 1.0.0 {H}"), "module version"),
            ("a/b v1.0.0 md5:abc".to_string(), "h1: hash"),
            (format!("a/b$(id) v1.0.0 {H}"), "module path"),
            (format!("a/b\tv1.0.0 {H}"), "MODULE VERSION"),
        ] {
            let text = format!("github.com/ok/ok v1.0.0 {H}\n{bad}\n");
            let (line, why) = parse(&text).unwrap_err();
            assert_eq!(line, 2, "{bad}");
            assert!(why.contains(needle), "{bad}: {why}");
        }
    }
}
