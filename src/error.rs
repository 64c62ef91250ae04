//! The one error type the binary reports, and its exit codes (documented in README.md).

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
    #[error("{0}")]
    Usage(String),
    #[error("{what}: {source}")]
    Io {
        what: String,
        source: std::io::Error,
    },
}

impl Error {
    pub fn exit_code(&self) -> i32 {
        use exit::*;
        match self {
            Error::Recipe(_) | Error::Project(_) | Error::Usage(_) | Error::Era(_) => BAD_INPUT,
            Error::Source(s) | Error::New(NewError::Source(s)) => source_code(s),
            Error::New(NewError::Unsupported { .. }) => UNSUPPORTED,
            Error::New(NewError::Era(_)) => BAD_INPUT,
            Error::New(NewError::Template { .. } | NewError::Refused { .. }) => BAD_INPUT,
            Error::New(_) | Error::Io { .. } | Error::Provision(_) => FAILURE,
            Error::Prepare(p) => prepare_code(p),
            Error::Build(b) => {
                use crate::build::BuildError as B;
                match b {
                    B::Source(s) => source_code(s),
                    B::Prepare(p) => prepare_code(p),
                    B::NoSteps { .. } => UNSUPPORTED,
                    _ => FAILURE,
                }
            }
            Error::Smoke(crate::smoke::SmokeError::Dist { .. }) => BAD_INPUT,
            Error::Smoke(_) => FAILURE,
            Error::Rebase(r) => r.exit_code(),
            Error::Image(crate::image::ImageError::Usage(_)) => BAD_INPUT,
            Error::Image(_) => FAILURE,
            Error::Generate(crate::patch::generate::GenerateError::Input { .. }) => BAD_INPUT,
            Error::Generate(_) => FAILURE,
            Error::Check(c) => {
                use crate::patch::check::CheckError as C;
                match c {
                    C::Source(s) => source_code(s),
                    C::Series { .. } | C::Patch(_) | C::Usage(_) => BAD_INPUT,
                }
            }
        }
    }
}

fn prepare_code(p: &crate::patch::prepare::PrepareError) -> i32 {
    use crate::patch::prepare::PrepareError as P;
    match p {
        P::Source(s) => source_code(s),
        P::Series { .. } | P::Patch(_) | P::NoTree { .. } => exit::BAD_INPUT,
        P::Failed { .. } | P::Write { .. } => exit::FAILURE,
    }
}

fn source_code(s: &SourceError) -> i32 {
    match s {
        SourceError::BadMirrorArg { .. }
        | SourceError::Unreadable { .. }
        | SourceError::TagNotFound { .. }
        | SourceError::NoSource { .. }
        | SourceError::OfflineMissing { .. }
        | SourceError::MovedTag { .. }
        | SourceError::CommitNotFound { .. }
        | SourceError::HostileTree { .. }
        | SourceError::BadCacheDir { .. }
        | SourceError::FsckFailed { .. } => exit::BAD_INPUT,
        _ => exit::FAILURE,
    }
}
