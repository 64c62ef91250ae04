//! Ollama release tags (`v0.12.6`, `v0.30.0-rc12`) ordered the way releases are made:
//! every pre-release sorts before its release, and `rc10` after `rc9` (semver's
//! lexical pre-release order gets that wrong).

use std::cmp::Ordering;
use std::fmt;
use std::str::FromStr;

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Version {
    pub major: u64,
    pub minor: u64,
    pub patch: u64,
    /// `Some(("rc", 12))` for `-rc12`; `("citest", 0)` for `-citest0`.
    pub pre: Option<(String, u64)>,
}

impl Version {
    pub fn is_prerelease(&self) -> bool {
        self.pre.is_some()
    }
}

impl FromStr for Version {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || format!("`{s}` is not a release tag like v0.12.6 or v0.30.0-rc2");
        let body = s.strip_prefix('v').unwrap_or(s);
        let (core, pre) = match body.split_once('-') {
            Some((c, p)) => (c, Some(p)),
            None => (body, None),
        };
        let mut it = core.split('.');
        let mut num = || -> Result<u64, String> {
            it.next()
                .filter(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
                .and_then(|p| p.parse().ok())
                .ok_or_else(bad)
        };
        let (major, minor, patch) = (num()?, num()?, num()?);
        if it.next().is_some() {
            return Err(bad());
        }
        let pre = match pre {
            None => None,
            Some(p) => {
                let split = p.find(|c: char| c.is_ascii_digit()).unwrap_or(p.len());
                let (word, digits) = p.split_at(split);
                if word.is_empty() || !word.bytes().all(|b| b.is_ascii_alphabetic()) {
                    return Err(bad());
                }
                let n = if digits.is_empty() {
                    0
                } else {
                    digits.parse().map_err(|_| bad())?
                };
                Some((word.to_string(), n))
            }
        };
        Ok(Version {
            major,
            minor,
            patch,
            pre,
        })
    }
}

impl Ord for Version {
    fn cmp(&self, other: &Self) -> Ordering {
        (self.major, self.minor, self.patch)
            .cmp(&(other.major, other.minor, other.patch))
            .then_with(|| match (&self.pre, &other.pre) {
                (None, None) => Ordering::Equal,
                (None, Some(_)) => Ordering::Greater,
                (Some(_), None) => Ordering::Less,
                (Some(a), Some(b)) => a.cmp(b),
            })
    }
}

impl PartialOrd for Version {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "v{}.{}.{}", self.major, self.minor, self.patch)?;
        if let Some((w, n)) = &self.pre {
            write!(f, "-{w}{n}")?;
        }
        Ok(())
    }
}

impl serde::Serialize for Version {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// Sorts tag names in release order; names that are not versions go last, by name.
pub fn sort_tags(tags: &mut [String]) {
    tags.sort_by(|a, b| match (a.parse::<Version>(), b.parse::<Version>()) {
        (Ok(x), Ok(y)) => x.cmp(&y),
        (Ok(_), Err(_)) => Ordering::Less,
        (Err(_), Ok(_)) => Ordering::Greater,
        (Err(_), Err(_)) => a.cmp(b),
    });
}

/// A range of tags: `from` and `to` inclusive, `until` exclusive; absent bounds are open.
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize)]
pub struct TagRange {
    pub from: Option<Version>,
    pub to: Option<Version>,
    pub until: Option<Version>,
}

impl TagRange {
    pub fn contains(&self, v: &Version) -> bool {
        self.from.as_ref().is_none_or(|f| v >= f)
            && self.to.as_ref().is_none_or(|t| v <= t)
            && self.until.as_ref().is_none_or(|u| v < u)
    }
}

impl fmt::Display for TagRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.from {
            Some(a) => write!(f, "{a}")?,
            None => write!(f, "any tag")?,
        }
        match (&self.to, &self.until) {
            (Some(b), _) => write!(f, "–{b}"),
            (None, Some(b)) => write!(f, " up to (not including) {b}"),
            (None, None) => write!(f, " and newer"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prerelease_orders_before_release_and_numerically() {
        let mut tags: Vec<String> = ["v0.30.0", "v0.30.0-rc10", "v0.30.0-rc9", "v0.24.0", "foo"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        sort_tags(&mut tags);
        assert_eq!(
            tags,
            ["v0.24.0", "v0.30.0-rc9", "v0.30.0-rc10", "v0.30.0", "foo"]
        );
    }

    #[test]
    fn range_bounds_are_inclusive_from_and_exclusive_until() {
        let r = TagRange {
            from: Some("v0.12.6-rc0".parse().unwrap()),
            to: None,
            until: Some("v0.30.0-rc0".parse().unwrap()),
        };
        assert!(r.contains(&"v0.12.6-rc0".parse().unwrap()));
        assert!(r.contains(&"v0.25.0-rc0".parse().unwrap()));
        assert!(!r.contains(&"v0.30.0-rc0".parse().unwrap()));
        assert!(!r.contains(&"v0.12.5".parse().unwrap()));
    }

    #[test]
    fn rejects_non_versions() {
        for bad in [
            "", "v1", "v1.2", "v1.2.3.4", "v1.x.3", "v1.2.3-", "v1.2.3-9",
        ] {
            assert!(bad.parse::<Version>().is_err(), "{bad}");
        }
    }
}
