//! Sources: where pipelines read records from.

pub mod delta;
pub mod kafka;
pub mod reader;

pub use crate::decode::SourceRecord;
