//! What every crate's tests share: fresh MariaDB and PostgreSQL databases, records on Kafka
//! topics, and one sqllogictest runner. The end-to-end tests across crates
//! live in `e2e/`.

pub mod databases;
pub mod kafka;
pub mod slt;
