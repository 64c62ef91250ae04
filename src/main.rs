//! Parses arguments and dispatches to one command (`commands/`); maps errors to exit
//! codes by their kind.

mod cli;
mod commands;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    init_logging(&cli.global);
    match commands::dispatch(cli) {
        Ok(status) => ExitCode::from(status.exit_code()),
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(e.exit_code() as u8)
        }
    }
}

fn init_logging(g: &cli::Global) {
    let level = match (g.quiet, g.verbose) {
        (true, _) => "error",
        (_, 0) => "warn",
        (_, 1) => "info",
        (_, 2) => "debug",
        _ => "trace",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("OLLAMA_VULKAN_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(format!("ollama_vulkan={level}")));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .without_time()
        .init();
    ollama_vulkan::progress::set_quiet(g.quiet);
    ollama_vulkan::provision::set_policy(ollama_vulkan::provision::Policy {
        install: !g.no_install,
        cache: g.cache(),
    });
}
