//! Patch series: format, pins, and the prepare stage's engine.
//!
//! `parse` reads git-format patches, `apply` applies one file's hunks (offsets, opt-in
//! fuzz, per-hunk outcomes), `engine` applies whole patches to an in-memory view of a
//! tree, `prepare` applies a recipe's series to its fetched trees atomically, and `check`
//! runs a series over many tags straight from git objects.

pub mod apply;
pub mod check;
pub mod engine;
pub mod generate;
pub mod parse;
pub mod prepare;
pub mod report;
pub mod series;
