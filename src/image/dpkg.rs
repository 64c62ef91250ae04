//! The Debian packages installed in a root, read from its `/var/lib/dpkg/status`: what
//! the SBOM lists and the lock file pins. The file comes from a base image or a root
//! tarball, so it is untrusted: a name that is not a Debian package name (a path, a
//! shell word), a version or architecture with characters Debian's never have, or a
//! stanza without its fields is refused with its line, never carried into a label, a
//! purl or the lock.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Where dpkg keeps the installed set.
pub const STATUS: &str = "var/lib/dpkg/status";
/// The largest status file read (a full desktop's is ~4 MB).
pub const MAX_STATUS: u64 = 32 << 20;

/// One installed package.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Package {
    pub name: String,
    pub version: String,
    pub arch: String,
    /// The source package, when it differs from the binary's name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
}

/// A status file's installed packages, by `name:arch` (one name may be installed for
/// two architectures).
pub type Installed = BTreeMap<String, Package>;

/// Why a status file was refused: its line and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadStatus {
    pub line: usize,
    pub why: String,
}

/// A Debian version: `[epoch:]upstream[-revision]`, Policy §5.6.12's characters.
pub fn version(v: &str) -> Result<(), String> {
    let ok = !v.is_empty()
        && v.len() <= 128
        && v.starts_with(|c: char| c.is_ascii_digit())
        && v.bytes()
            .all(|c| c.is_ascii_alphanumeric() || b".+~:-".contains(&c));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "`{}` is not a Debian version (a digit first, then letters, digits and `.+~:-`)",
            crate::safe::show(v)
        ))
    }
}

/// A Debian architecture name (`amd64`, `arm64`, `all`).
pub fn arch(a: &str) -> Result<(), String> {
    let ok = !a.is_empty()
        && a.len() <= 32
        && a.bytes()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "`{}` is not a Debian architecture",
            crate::safe::show(a)
        ))
    }
}

/// Parses a status file; only stanzas whose Status is `install ok installed` count.
pub fn parse(text: &str) -> Result<Installed, BadStatus> {
    let mut out = Installed::new();
    let mut fields: BTreeMap<String, (usize, String)> = BTreeMap::new();
    let mut start = 1;
    let mut last: Option<String> = None;
    let lines: Vec<&str> = text.lines().collect();
    for (i, line) in lines.iter().chain(std::iter::once(&"")).enumerate() {
        let n = i + 1;
        if line.trim().is_empty() {
            if !fields.is_empty() {
                stanza(&fields, start, &mut out)?;
            }
            fields.clear();
            last = None;
            start = n + 1;
            continue;
        }
        if let Some(c) = line.chars().find(|c| c.is_control() && *c != '\t') {
            return Err(BadStatus {
                line: n,
                why: format!("holds the control character {c:?}"),
            });
        }
        if line.starts_with([' ', '\t']) {
            // A continuation (Description, Conffiles): no field we read continues.
            if last.is_none() {
                return Err(BadStatus {
                    line: n,
                    why: "a continuation line with no field before it".into(),
                });
            }
            continue;
        }
        let Some((k, v)) = line.split_once(':') else {
            return Err(BadStatus {
                line: n,
                why: format!(
                    "`{}` is not a `Field: value` line",
                    crate::safe::show(&line.chars().take(80).collect::<String>())
                ),
            });
        };
        if fields.contains_key(k) {
            return Err(BadStatus {
                line: n,
                why: format!("`{}` appears twice in one stanza", crate::safe::show(k)),
            });
        }
        fields.insert(k.to_string(), (n, v.trim().to_string()));
        last = Some(k.to_string());
    }
    Ok(out)
}

fn stanza(
    fields: &BTreeMap<String, (usize, String)>,
    start: usize,
    out: &mut Installed,
) -> Result<(), BadStatus> {
    let get = |k: &str| -> Result<&(usize, String), BadStatus> {
        fields.get(k).ok_or_else(|| BadStatus {
            line: start,
            why: format!("the stanza has no `{k}` field"),
        })
    };
    let (sl, status) = get("Status")?;
    if status != "install ok installed" {
        // Removed, half-configured or config-files only: not in the root's payload.
        let _ = sl;
        return Ok(());
    }
    let (pl, name) = get("Package")?;
    crate::safe::package_name(name).map_err(|why| BadStatus { line: *pl, why })?;
    if name.contains(':') {
        return Err(BadStatus {
            line: *pl,
            why: format!("`{}`: a Package field names no architecture", name),
        });
    }
    let (vl, ver) = get("Version")?;
    version(ver).map_err(|why| BadStatus { line: *vl, why })?;
    let (al, a) = get("Architecture")?;
    arch(a).map_err(|why| BadStatus { line: *al, why })?;
    let source = match fields.get("Source") {
        None => None,
        Some((l, s)) => {
            // `Source: name` or `Source: name (version)`.
            let src = s.split_whitespace().next().unwrap_or("");
            crate::safe::package_name(src).map_err(|why| BadStatus { line: *l, why })?;
            (src != name).then(|| src.to_string())
        }
    };
    let key = format!("{name}:{a}");
    if out.contains_key(&key) {
        return Err(BadStatus {
            line: *pl,
            why: format!("{key} is installed twice"),
        });
    }
    out.insert(
        key,
        Package {
            name: name.clone(),
            version: ver.clone(),
            arch: a.clone(),
            source,
        },
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const OK: &str = "Package: libc6\nStatus: install ok installed\nPriority: optional\nArchitecture: amd64\nMulti-Arch: same\nSource: glibc\nVersion: 2.41-12\nDescription: GNU C Library\n Contains the standard libraries.\n .\n More.\n\nPackage: gone\nStatus: deinstall ok config-files\nArchitecture: amd64\nVersion: 1.0\n\nPackage: tzdata\nStatus: install ok installed\nArchitecture: all\nVersion: 2025b-4+deb13u1\nSource: tzdata (2025b-4)\n";

    #[test]
    fn installed_packages_with_their_sources() {
        let p = parse(OK).unwrap();
        assert_eq!(p.len(), 2);
        assert_eq!(p["libc6:amd64"].version, "2.41-12");
        assert_eq!(p["libc6:amd64"].source.as_deref(), Some("glibc"));
        assert_eq!(p["tzdata:all"].source, None);
    }

    #[test]
    fn hostile_stanzas_are_refused_with_their_line() {
        let bad = OK.replace("Package: tzdata", "Package: ../../etc/passwd");
        let e = parse(&bad).unwrap_err();
        assert_eq!(e.line, 18);
        assert!(e.why.contains("not a Debian package name"), "{e:?}");
        let bad = OK.replace("Version: 2.41-12", "Version: 2.41$(id)");
        assert_eq!(parse(&bad).unwrap_err().line, 7);
        let bad = OK.replace("Architecture: all", "Architecture: a/b");
        assert!(parse(&bad).unwrap_err().why.contains("architecture"));
        let e = parse("Package: x1\nStatus: install ok installed\nVersion: 1\n").unwrap_err();
        assert!(e.why.contains("no `Architecture`"), "{e:?}");
        assert!(parse(" orphan\n").is_err());
        assert!(parse("no colon here\n").is_err());
        assert!(parse("Package: a1\nPackage: a2\n").is_err());
        assert!(parse("Package: a\x1b[2J\n").is_err());
    }
}
