//! The `strata` binary and its HTTP API, end to end against MariaDB, a Kafka
//! mock cluster and Delta tables on disk.

mod api;
mod cli;
mod demo;
mod lineage;
mod quality;
mod run;
mod support;
