//! Sinks: where pipelines commit their rows.

pub mod delta;
pub mod late;
pub mod quarantine;
