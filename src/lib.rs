//! ollama-vulkan: turns an Ollama release into a Vulkan-enabled binary and image.
//!
//! The modules follow the pipeline: `recipe` (what to build) → `source` (pinned upstream
//! trees) → `patch` (our series) → build → image → smoke. `cli`/`main` only parse arguments,
//! call a stage and render its result.

pub mod build;
pub mod ci;
pub mod contract;
pub mod diag;
pub mod error;
pub mod fsutil;
#[doc(hidden)]
pub mod fuzzing;
pub mod image;
pub mod killpoint;
pub mod mesa;
pub mod patch;
pub mod progress;
pub mod project;
pub mod provision;
pub mod rebase;
pub mod recipe;
pub mod safe;
pub mod smoke;
pub mod source;
pub mod target;
pub mod venus;
pub mod version;
