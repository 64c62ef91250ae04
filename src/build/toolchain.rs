//! The toolchain a build uses: a fingerprint that needs no subprocess (path, size and
//! mtime of each tool, so a no-op build runs no compiler or go), and the versions and
//! glslc shader-extension support recorded in the manifest and checked by `doctor`.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use serde::Serialize;

use super::builder::Builder;

/// The tools a build may run.
pub const TOOLS: &[&str] = &[
    "go", "cmake", "cc", "c++", "glslc", "make", "ninja", "ccache", "git",
];

/// GLSL extensions ggml-vulkan probes glslc for (its vulkan-shaders/feature-tests).
pub const SHADER_EXTENSIONS: &[&str] = &[
    "GL_KHR_cooperative_matrix",
    "GL_NV_cooperative_matrix2",
    "GL_EXT_integer_dot_product",
    "GL_EXT_bfloat16",
];

/// Path, size and mtime of every tool (and the Vulkan headers), as the builder sees them.
pub fn fingerprint(builder: &Builder) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let stat = |p: &Path| -> String {
        let real = builder.host_path(p);
        let real = fs::canonicalize(&real).unwrap_or(real);
        match fs::metadata(&real) {
            Ok(m) => {
                use std::os::unix::fs::MetadataExt;
                format!("{} {} {}", p.display(), m.size(), m.mtime())
            }
            Err(_) => "absent".into(),
        }
    };
    for t in TOOLS {
        out.insert(
            t.to_string(),
            builder
                .which(t)
                .map(|p| stat(&p))
                .unwrap_or_else(|| "absent".into()),
        );
    }
    out.insert(
        "vulkan-headers".into(),
        stat(Path::new("/usr/include/vulkan/vulkan_core.h")),
    );
    out
}

fn first_line(builder: &Builder, argv: &[&str]) -> Option<String> {
    let path = builder.which(argv[0])?;
    let mut full: Vec<String> = vec![path.display().to_string()];
    full.extend(argv[1..].iter().map(|s| s.to_string()));
    let out = builder
        .command(&full, Path::new("/"), &BTreeMap::new())
        .stdout_capture()
        .stderr_capture()
        .unchecked()
        .run()
        .ok()?;
    version_line(&out.stdout, &out.stderr)
}

/// A tool's version: the first line of its stdout (a warning on stderr — a locale
/// complaint, a deprecation — is not the version); stderr only for tools that print the
/// version there and nothing on stdout.
pub fn version_line(stdout: &[u8], stderr: &[u8]) -> Option<String> {
    let first = |b: &[u8]| {
        String::from_utf8_lossy(b)
            .lines()
            .find(|l| !l.trim().is_empty())
            .map(|l| l.trim().to_string())
    };
    first(stdout).or_else(|| first(stderr))
}

#[derive(Debug, Clone, Serialize, serde::Deserialize, Default)]
pub struct Versions {
    pub go: Option<String>,
    pub cmake: Option<String>,
    pub cc: Option<String>,
    pub cxx: Option<String>,
    pub glslc: Option<String>,
    pub ccache: Option<String>,
    /// VK_HEADER_VERSION_COMPLETE of the Vulkan headers, e.g. "1.4.309".
    pub vulkan_headers: Option<String>,
    /// Whether SPIRV-Headers' CMake config is installed (era 5 needs it).
    pub spirv_headers: bool,
}

pub fn versions(builder: &Builder) -> Versions {
    Versions {
        go: first_line(builder, &["go", "version"]),
        cmake: first_line(builder, &["cmake", "--version"]),
        cc: first_line(builder, &["cc", "--version"]),
        cxx: first_line(builder, &["c++", "--version"]),
        glslc: first_line(builder, &["glslc", "--version"]),
        ccache: first_line(builder, &["ccache", "--version"]),
        vulkan_headers: vulkan_headers(builder),
        spirv_headers: [
            "/usr/share/cmake/SPIRV-Headers/SPIRV-HeadersConfig.cmake",
            "/usr/lib/cmake/SPIRV-Headers/SPIRV-HeadersConfig.cmake",
            "/usr/lib/x86_64-linux-gnu/cmake/SPIRV-Headers/SPIRV-HeadersConfig.cmake",
            "/usr/local/share/cmake/SPIRV-Headers/SPIRV-HeadersConfig.cmake",
        ]
        .iter()
        .any(|p| builder.host_path(Path::new(p)).exists()),
    }
}

/// "1.3.239" from vulkan_core.h's VK_HEADER_VERSION_COMPLETE.
pub fn vulkan_headers(builder: &Builder) -> Option<String> {
    let text =
        fs::read_to_string(builder.host_path(Path::new("/usr/include/vulkan/vulkan_core.h")))
            .ok()?;
    let patch = text
        .lines()
        .find_map(|l| l.strip_prefix("#define VK_HEADER_VERSION "))?
        .trim()
        .to_string();
    let complete = text
        .lines()
        .find_map(|l| l.strip_prefix("#define VK_HEADER_VERSION_COMPLETE VK_MAKE_API_VERSION("))?;
    let parts: Vec<&str> = complete
        .trim_end_matches(')')
        .split(',')
        .map(str::trim)
        .collect();
    Some(format!("{}.{}.{patch}", parts.get(1)?, parts.get(2)?))
}

/// Which GLSL extensions glslc compiles, probed the way ggml-vulkan's CMake does (a
/// one-line shader per extension). Compiled in a scratch dir under `scratch`, which must be
/// visible to the builder.
pub fn shader_support(builder: &Builder, scratch: &Path) -> BTreeMap<String, bool> {
    let mut out = BTreeMap::new();
    let Some(glslc) = builder.which("glslc") else {
        return out;
    };
    let _ = fs::create_dir_all(scratch);
    for ext in SHADER_EXTENSIONS {
        let src = scratch.join(format!("{ext}.comp"));
        let _ = fs::write(
            &src,
            format!("#version 460\n#extension {ext} : require\nvoid main() {{}}\n"),
        );
        let argv = vec![
            glslc.display().to_string(),
            "--target-env=vulkan1.3".into(),
            src.display().to_string(),
            "-o".into(),
            scratch.join(format!("{ext}.spv")).display().to_string(),
        ];
        let ok = builder
            .command(&argv, scratch, &BTreeMap::new())
            .stderr_to_stdout()
            .stdout_capture()
            .unchecked()
            .run()
            .map(|o| o.status.success())
            .unwrap_or(false);
        out.insert(ext.to_string(), ok);
    }
    out
}

/// "3.25.1" from "cmake version 3.25.1".
pub fn cmake_version(line: &str) -> Option<crate::version::Version> {
    let v = line
        .split_whitespace()
        .find(|w| w.chars().next().is_some_and(|c| c.is_ascii_digit()))?;
    let v: String = v
        .chars()
        .take_while(|c| c.is_ascii_digit() || *c == '.')
        .collect();
    format!("v{v}").parse().ok()
}

/// Where the host's Go keeps its caches for builds: under our cache dir, so a rebuild
/// reuses them and the builder root can see them.
pub fn cache_dirs(cache: &Path) -> Vec<(String, PathBuf)> {
    vec![
        ("GOCACHE".into(), cache.join("go-build")),
        ("GOMODCACHE".into(), cache.join("go-mod")),
        ("CCACHE_DIR".into(), cache.join("ccache")),
    ]
}

#[cfg(test)]
mod version_tests {
    use super::version_line;

    #[test]
    fn a_warning_on_stderr_is_not_the_version() {
        assert_eq!(
            version_line(
                b"go version go1.26.8 linux/amd64\n",
                b"perl: warning: Setting locale failed.\n"
            ),
            Some("go version go1.26.8 linux/amd64".into())
        );
        assert_eq!(
            version_line(b"", b"Python 2.7.18\n"),
            Some("Python 2.7.18".into())
        );
        assert_eq!(version_line(b"\n", b""), None);
    }
}
