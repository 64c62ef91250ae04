//! One integration-test binary (as ripgrep and cargo do): every test drives the real
//! `ollama-vulkan` binary against real git repositories made in a temp dir.

mod support;

mod build;
mod dockerfile;
mod era;
mod fetch;
mod fuzz_corpus;
mod image;
mod killpoints;
mod offline;
mod prepare;
mod rebase;
mod recipe_check;
mod recipe_new;
mod smoke;
