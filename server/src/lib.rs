//! The `strata` binary's library half: the HTTP API, the views the CLI and the
//! API share, and project scaffolding. `main.rs` holds the command line.

pub mod api;
pub mod scaffold;
pub mod views;
