//! The pipelines crate's integration tests, against the Kafka mock cluster and Delta on disk.

mod changelog;
mod dedup;
mod ingest;
mod interval;
mod join;
mod lookup;
mod quality;
mod slt;
mod temporal;
mod validate;
mod windows;
