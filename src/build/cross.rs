//! Cross builds (`build --arch arm64` on an amd64 host): what a foreign target adds to the
//! builder root and to every compile step.
//!
//! The root is trixie with the host's and the target's architectures (mmdebstrap
//! `--architectures`), Debian's cross toolchain (crossbuild-essential-ARCH) and the
//! target's libraries as NAME:ARCH. CMake gets a toolchain file (through the
//! CMAKE_TOOLCHAIN_FILE environment variable, which every configure of every era reads),
//! Go gets GOARCH and the cross C compilers for cgo. glslc stays the host's (SPIR-V is
//! the same on every architecture); target programs the build runs go through qemu-user.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::target::Arch;

/// The packages a root for `target` holds beyond the builder list: none for the host's
/// own architecture.
pub fn root_packages(target: Arch, cross_target: &[String]) -> Vec<String> {
    if target.is_host() {
        return Vec::new();
    }
    let mut out = vec![format!("crossbuild-essential-{}", target.name())];
    out.extend(
        cross_target
            .iter()
            .map(|p| format!("{p}:{}", target.name())),
    );
    out
}

/// CMake's toolchain file for `target`: the cross compilers, and library and
/// pkg-config searches in the target's multiarch directories.
///
/// CMAKE_CROSSCOMPILING stays FALSE: Ollama's CMake installs with
/// `install(TARGETS … RUNTIME_DEPENDENCIES)`, which CMake refuses when cross-compiling,
/// and ggml builds vulkan-shaders-gen for the target then. Whatever the build runs of
/// the target's (the shader generator, try_run checks) runs under qemu-user through
/// binfmt_misc, which the cross root needs anyway; what it runs of the host's (glslc)
/// runs natively. GGML_NATIVE is off: a release must not be tuned to the build machine,
/// let alone to qemu's CPU.
pub fn toolchain_file(target: Arch) -> String {
    let t = target.triplet();
    format!(
        "# Written by ollama-vulkan for a build for linux/{arch} on linux/{host}.\n\
set(CMAKE_SYSTEM_NAME Linux)\n\
set(CMAKE_SYSTEM_PROCESSOR {machine})\n\
set(CMAKE_CROSSCOMPILING FALSE)\n\
set(CMAKE_C_COMPILER {t}-gcc)\n\
set(CMAKE_CXX_COMPILER {t}-g++)\n\
set(CMAKE_LIBRARY_ARCHITECTURE {t})\n\
set(PKG_CONFIG_EXECUTABLE {t}-pkg-config)\n\
set(CMAKE_FIND_ROOT_PATH_MODE_PROGRAM NEVER)\n\
set(GGML_NATIVE OFF)\n",
        arch = target.name(),
        host = Arch::host().name(),
        machine = target.machine(),
    )
}

/// Where a build of `target` keeps its toolchain file: in the build dir, which the root
/// sees at the same path.
pub fn toolchain_path(dest: &Path, target: Arch) -> PathBuf {
    dest.join(format!("cross-{}.cmake", target.name()))
}

/// Writes the toolchain file for a build in `dest`; returns its path.
pub fn write_toolchain(dest: &Path, target: Arch) -> std::io::Result<PathBuf> {
    let path = toolchain_path(dest, target);
    crate::fsutil::write_atomic(&path, toolchain_file(target).as_bytes())?;
    Ok(path)
}

/// The environment every compile step of a cross build gets.
pub fn env(target: Arch, toolchain: &Path) -> BTreeMap<String, String> {
    let t = target.triplet();
    let mut env = BTreeMap::new();
    env.insert(
        "CMAKE_TOOLCHAIN_FILE".into(),
        toolchain.display().to_string(),
    );
    env.insert("GOOS".into(), "linux".into());
    env.insert("GOARCH".into(), target.name().into());
    env.insert("CGO_ENABLED".into(), "1".into());
    env.insert("CC".into(), format!("{t}-gcc"));
    env.insert("CXX".into(), format!("{t}-g++"));
    env.insert("PKG_CONFIG".into(), format!("{t}-pkg-config"));
    env
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_host_needs_nothing_and_a_foreign_target_its_toolchain_and_libraries() {
        assert!(root_packages(Arch::host(), &["libvulkan-dev".into()]).is_empty());
        let foreign = if Arch::host() == Arch::Amd64 {
            Arch::Arm64
        } else {
            Arch::Amd64
        };
        let p = root_packages(foreign, &["libvulkan-dev".into()]);
        assert_eq!(p[0], format!("crossbuild-essential-{foreign}"));
        assert_eq!(p[1], format!("libvulkan-dev:{foreign}"));
        for l in p {
            crate::safe::package_name(&l).unwrap();
        }
        let tc = toolchain_file(Arch::Arm64);
        assert!(tc.contains("set(CMAKE_C_COMPILER aarch64-linux-gnu-gcc)"));
        assert!(tc.contains("set(CMAKE_SYSTEM_PROCESSOR aarch64)"));
        assert!(tc.contains("set(CMAKE_CROSSCOMPILING FALSE)"));
    }
}
