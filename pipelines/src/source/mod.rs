//! Sources: where pipelines read records from.

pub mod delta;
pub mod kafka;
pub mod nexmark;
pub mod reader;
pub mod replay;

pub use crate::decode::SourceRecord;
