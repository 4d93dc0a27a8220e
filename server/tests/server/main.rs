//! The `strata` binary and its HTTP API, end to end against MariaDB, a Kafka
//! mock cluster and Delta tables on disk.

mod api;
mod cli;
mod datagen;
mod demo;
mod explain;
mod failures;
mod lineage;
mod live;
mod nexmark;
mod pg;
mod produce;
mod quality;
mod query;
mod run;
mod security;
mod slt;
mod state;
mod support;
