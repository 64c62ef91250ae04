//! Patch series: format, pins, application.

pub mod series;
