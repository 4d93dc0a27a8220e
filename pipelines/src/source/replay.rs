//! Records taken back from a quarantine, fed once through the pipeline
//! (`strata quarantine replay`), under offsets of their own.

use std::collections::VecDeque;
use std::time::Instant;

use super::SourceRecord;
use super::reader::{Next, RecordDecoder, SourceReader, decode, idle_until};
use crate::error::Result;

/// Quarantined records, fed in batches, then the end.
#[derive(Debug)]
pub struct ReplayReader {
    pub records: VecDeque<SourceRecord>,
    pub decoder: RecordDecoder,
    /// `replay-<id>/<topic>`: the replay's own offsets in the target's log.
    pub stream: String,
    pub batch_records: usize,
    pub reported_end: bool,
}

#[async_trait::async_trait]
impl SourceReader for ReplayReader {
    fn stream(&self) -> &str {
        &self.stream
    }

    async fn read(
        &mut self,
        deadline: Instant,
        stop: &mut tokio::sync::watch::Receiver<bool>,
    ) -> Result<Next> {
        if !self.records.is_empty() {
            let take = self.records.len().min(self.batch_records);
            let batch: Vec<SourceRecord> = self.records.drain(..take).collect();
            return Ok(Next::Batch(decode(&self.decoder, batch)));
        }
        if !self.reported_end {
            self.reported_end = true;
            return Ok(Next::CaughtUp);
        }
        Ok(idle_until(deadline, stop).await)
    }
}
