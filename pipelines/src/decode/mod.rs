//! Decoding source records into Arrow.

pub mod debezium;
pub mod json;

/// One record as a source delivered it, with its coordinates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceRecord {
    pub partition: i32,
    pub offset: i64,
    /// Milliseconds since the epoch, when the broker gave a timestamp.
    pub timestamp_ms: Option<i64>,
    pub key: Option<Vec<u8>>,
    pub payload: Option<Vec<u8>>,
}
