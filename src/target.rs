//! The machine a dist or image is for. Everything architecture-specific the pipeline
//! needs (Debian's name, the GNU triplet, Go's GOARCH, the dynamic loader, the OCI
//! platform) is written here once.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, clap::ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Arch {
    Amd64,
    Arm64,
}

impl Arch {
    pub const ALL: [Arch; 2] = [Arch::Amd64, Arch::Arm64];

    /// Debian's architecture name (also Go's GOARCH and the OCI platform's).
    pub fn name(self) -> &'static str {
        match self {
            Arch::Amd64 => "amd64",
            Arch::Arm64 => "arm64",
        }
    }

    /// The machine this tool runs on.
    pub fn host() -> Arch {
        if cfg!(target_arch = "aarch64") {
            Arch::Arm64
        } else {
            Arch::Amd64
        }
    }

    pub fn is_host(self) -> bool {
        self == Arch::host()
    }

    /// The GNU triplet: Debian's multiarch directory and the cross compilers' prefix.
    pub fn triplet(self) -> &'static str {
        match self {
            Arch::Amd64 => "x86_64-linux-gnu",
            Arch::Arm64 => "aarch64-linux-gnu",
        }
    }

    /// `uname -m`, CMake's CMAKE_SYSTEM_PROCESSOR and Mesa's ICD file suffix.
    pub fn machine(self) -> &'static str {
        match self {
            Arch::Amd64 => "x86_64",
            Arch::Arm64 => "aarch64",
        }
    }

    /// The glibc dynamic loader (run directly for the library check of a foreign dist).
    pub fn loader(self) -> &'static str {
        match self {
            Arch::Amd64 => "/lib64/ld-linux-x86-64.so.2",
            Arch::Arm64 => "/lib/ld-linux-aarch64.so.1",
        }
    }

    /// ELF e_machine, to check what a build produced.
    pub fn elf_machine(self) -> u16 {
        match self {
            Arch::Amd64 => 62,
            Arch::Arm64 => 183,
        }
    }

    /// The OCI platform.
    pub fn platform(self) -> String {
        format!("linux/{}", self.name())
    }

    /// Parses Debian's name (as recorded in manifests and labels).
    pub fn parse(s: &str) -> Option<Arch> {
        Arch::ALL.into_iter().find(|a| a.name() == s)
    }
}

impl std::fmt::Display for Arch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// The e_machine of an ELF file's header, or None when it is not ELF.
pub fn elf_machine_of(bytes: &[u8]) -> Option<u16> {
    if bytes.len() < 20 || &bytes[..4] != b"\x7fELF" {
        return None;
    }
    // EI_DATA: 1 little-endian, 2 big-endian.
    let m = [bytes[18], bytes[19]];
    Some(if bytes[5] == 2 {
        u16::from_be_bytes(m)
    } else {
        u16::from_le_bytes(m)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_the_host_is_one_of_them() {
        for a in Arch::ALL {
            assert_eq!(Arch::parse(a.name()), Some(a));
        }
        assert!(Arch::host().is_host());
        assert_eq!(Arch::parse("riscv64"), None);
    }

    #[test]
    fn the_elf_header_names_the_machine() {
        let exe = std::fs::read(std::env::current_exe().unwrap()).unwrap();
        assert_eq!(elf_machine_of(&exe), Some(Arch::host().elf_machine()));
        assert_eq!(elf_machine_of(b"#!/bin/sh\n"), None);
    }
}
