//! The blackhole target (`'connector' = 'blackhole'`): rows are counted and
//! digested ([`OutputDigest`]), then dropped, as Flink's blackhole connector
//! drops them. Nexmark runs write there, so that what is measured is the
//! engine, not a store.

use std::sync::Arc;

use arrow::record_batch::RecordBatch;

use crate::error::Result;
use crate::sink::digest::OutputDigest;

/// A target that keeps nothing but [`OutputDigest`].
#[derive(Debug)]
pub struct BlackholeSink {
    pub output: Arc<OutputDigest>,
}

impl BlackholeSink {
    pub fn commit(&mut self, rows: Vec<RecordBatch>) -> Result<()> {
        for batch in &rows {
            self.output.add(batch)?;
        }
        Ok(())
    }
}

#[async_trait::async_trait]
impl crate::sink::TargetSink for BlackholeSink {
    async fn committed_position(
        &self,
        _stream: &str,
        _split: i32,
    ) -> Result<Option<crate::position::Position>> {
        Ok(None)
    }

    async fn committed_state(&self) -> Result<Option<i64>> {
        Ok(None)
    }

    async fn commit(
        &mut self,
        rows: Vec<RecordBatch>,
        _positions: &crate::position::Positions,
        _state: Option<i64>,
    ) -> Result<Option<i64>> {
        BlackholeSink::commit(self, rows).map(|()| None)
    }
}
