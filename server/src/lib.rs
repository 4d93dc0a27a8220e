//! The `strata` binary's library half: the HTTP API, running a project, the
//! views the CLI and the API share, and project scaffolding. `main.rs` holds the command line.

pub mod api;
pub mod bench;
pub mod demo;
pub mod dev_kafka;
pub mod explain;
pub mod lineage;
pub mod openlineage;
pub mod pg;
pub mod produce;
pub mod quality;
pub mod quarantine;
pub mod query;
pub mod run;
pub mod scaffold;
pub mod serve;
pub mod subscribe;
pub mod views;
