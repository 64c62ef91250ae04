//! One integration-test binary (as ripgrep and cargo do): every test drives the real
//! `ollama-vulkan` binary against real git repositories made in a temp dir.

mod support;

mod build;
mod ci;
mod ci_script;
mod ci_workflow;
mod dockerfile;
mod era;
mod era2;
mod era3;
mod fetch;
mod fuzz_corpus;
mod hostile;
mod image;
mod killpoints;
mod mesa;
mod offline;
mod prepare;
mod provenance;
mod provision;
mod rebase;
mod recipe_check;
mod recipe_new;
mod series_generate;
mod smoke;
