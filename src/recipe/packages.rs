//! The templates' shared package lists (recipes/base/packages.toml): read from the
//! project, or the copy compiled in from the same file when there is no project.

use std::path::Path;

use serde::Deserialize;

use crate::diag::{Diagnostic, Location};

/// Where the lists live in a project.
pub const FILE: &str = "base/packages.toml";

const COMPILED: &str = include_str!("../../recipes/base/packages.toml");

#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct BasePackages {
    pub builder: Vec<String>,
    pub runtime: Vec<String>,
    /// Installed as NAME:ARCH in the cross builder root of a foreign target.
    #[serde(default)]
    pub cross_target: Vec<String>,
}

/// The lists this build of the tool ships.
pub fn compiled() -> BasePackages {
    toml::from_str(COMPILED).expect("recipes/base/packages.toml parses")
}

/// The project's lists (`recipes_dir/base/packages.toml`), else the compiled-in ones.
pub fn load(recipes_dir: &Path) -> Result<BasePackages, Diagnostic> {
    let path = recipes_dir.join(FILE);
    let Ok(text) = std::fs::read_to_string(&path) else {
        return Ok(compiled());
    };
    let base: BasePackages = toml::from_str(&text).map_err(|e| Diagnostic {
        location: Location::file_only(&path),
        message: e.message().to_string(),
        help: "lists of Debian package names: builder = [...], runtime = [...] and optionally cross_target = [...]".into(),
    })?;
    for name in base
        .builder
        .iter()
        .chain(&base.runtime)
        .chain(&base.cross_target)
    {
        if let Err(why) = crate::safe::package_name(name) {
            return Err(Diagnostic {
                location: Location::file_only(&path),
                message: format!("`{}`: {why}", crate::safe::show(name)),
                help: "list Debian package names only (`apt-cache policy NAME` shows one exists)"
                    .into(),
            });
        }
    }
    Ok(base)
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_compiled_lists_parse_and_are_not_empty() {
        let b = super::compiled();
        assert!(b.builder.iter().any(|p| p == "glslc"));
        assert!(b.runtime.iter().any(|p| p == "libvulkan1"));
    }
}
