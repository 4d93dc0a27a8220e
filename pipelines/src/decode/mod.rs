//! Decoding source records into Arrow.

pub mod debezium;
pub mod json;
