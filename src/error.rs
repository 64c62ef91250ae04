//! The one error type the binary reports, and its exit codes (documented in README.md).
//!
//! Every stage error says which [`Kind`] it is in its own `impl HasKind` (next to the
//! enum); errors that wrap another ask the wrapped one. The exit code is the kind's.

use crate::diag::Diagnostics;
use crate::project::ProjectError;
use crate::recipe::era::EraError;
use crate::recipe::new::NewError;
use crate::source::SourceError;

/// Exit codes: 0 success, 1 failure while working, 2 bad input, 3 unsupported tag/era.
pub mod exit {
    pub const FAILURE: i32 = 1;
    pub const BAD_INPUT: i32 = 2;
    pub const UNSUPPORTED: i32 = 3;
}

/// What went wrong, as far as the caller is concerned: it decides the exit code and
/// whether retrying with other input can help.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Kind {
    /// The work itself failed (a compile, an engine, the disk): exit 1.
    Failure,
    /// A recipe, series, mirror, state file or argument is wrong: exit 2.
    BadInput,
    /// A real tag or era with no Vulkan path: exit 3.
    Unsupported,
}

impl Kind {
    pub fn exit_code(self) -> i32 {
        match self {
            Kind::Failure => exit::FAILURE,
            Kind::BadInput => exit::BAD_INPUT,
            Kind::Unsupported => exit::UNSUPPORTED,
        }
    }
}

/// Implemented by every error type: its kind, decided in one place.
pub trait HasKind {
    fn kind(&self) -> Kind;
}

impl HasKind for std::io::Error {
    fn kind(&self) -> Kind {
        Kind::Failure
    }
}

impl HasKind for Diagnostics {
    fn kind(&self) -> Kind {
        Kind::BadInput
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    Recipe(Diagnostics),
    #[error(transparent)]
    Source(#[from] SourceError),
    #[error(transparent)]
    Era(#[from] EraError),
    #[error(transparent)]
    New(#[from] NewError),
    #[error(transparent)]
    Project(#[from] ProjectError),
    #[error(transparent)]
    Prepare(#[from] crate::patch::prepare::PrepareError),
    #[error(transparent)]
    Check(#[from] crate::patch::check::CheckError),
    #[error(transparent)]
    Build(#[from] crate::build::BuildError),
    #[error(transparent)]
    Smoke(#[from] crate::smoke::SmokeError),
    #[error(transparent)]
    Rebase(#[from] crate::rebase::RebaseError),
    #[error(transparent)]
    Image(#[from] crate::image::ImageError),
    #[error(transparent)]
    Provision(#[from] crate::provision::ProvisionError),
    #[error(transparent)]
    Generate(#[from] crate::patch::generate::GenerateError),
    #[error(transparent)]
    Ci(#[from] crate::ci::CiError),
    #[error(transparent)]
    Venus(#[from] crate::venus::VenusError),
    #[error(transparent)]
    Mesa(#[from] crate::mesa::MesaError),
    #[error("{0}")]
    Usage(String),
    #[error("{what}: {source}")]
    Io {
        what: String,
        source: std::io::Error,
    },
}

impl HasKind for Error {
    fn kind(&self) -> Kind {
        match self {
            Error::Recipe(d) => d.kind(),
            Error::Source(e) => e.kind(),
            Error::Era(e) => e.kind(),
            Error::New(e) => e.kind(),
            Error::Project(e) => e.kind(),
            Error::Prepare(e) => e.kind(),
            Error::Check(e) => e.kind(),
            Error::Build(e) => e.kind(),
            Error::Smoke(e) => e.kind(),
            Error::Rebase(e) => e.kind(),
            Error::Image(e) => e.kind(),
            Error::Provision(e) => e.kind(),
            Error::Generate(e) => e.kind(),
            Error::Ci(e) => e.kind(),
            Error::Venus(e) => e.kind(),
            Error::Mesa(e) => e.kind(),
            Error::Usage(_) => Kind::BadInput,
            Error::Io { .. } => Kind::Failure,
        }
    }
}

impl Error {
    pub fn exit_code(&self) -> i32 {
        self.kind().exit_code()
    }
}
