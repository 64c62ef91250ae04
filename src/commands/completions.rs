//! `completions`: a shell completion script from the clap definition.

use clap::CommandFactory;
use ollama_vulkan::error::Error;

use super::Status;
use crate::cli::{Cli, CompletionsArgs, Global};

pub fn run(_: &Global, a: CompletionsArgs) -> Result<Status, Error> {
    clap_complete::generate(
        a.shell,
        &mut Cli::command(),
        "ollama-vulkan",
        &mut std::io::stdout(),
    );
    Ok(Status::Success)
}
