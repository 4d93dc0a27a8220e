//! The catalog's integration tests, against real MariaDB, PostgreSQL, a Kafka
//! mock cluster and Delta tables on disk.

mod ddl;
mod delta;
mod kafka;
mod mysql;
mod nexmark;
mod slt;
mod store;
mod support;
