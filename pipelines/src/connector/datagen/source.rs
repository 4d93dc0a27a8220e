//! A datagen table as a pipeline's source: row numbers are the positions of
//! its one split, so a restart goes on from the row after the last one
//! committed; rows keep to `'rows-per-second'` of wall-clock time.

use std::collections::BTreeMap;
use std::time::Instant;

use arrow::datatypes::SchemaRef;

use super::spec::Spec;
use crate::error::Result;
use crate::position::Position;
use crate::source::reader::{Next, Pace, SourceBatch, SourceReader};
use crate::source::{CommittedPositions, SourceOptions};

/// Generates a datagen table's rows batch by batch, from a row number on.
#[derive(Debug)]
pub struct DatagenReader {
    spec: Spec,
    schema: SchemaRef,
    /// The next row number to generate.
    next: u64,
    rows_per_batch: u64,
    /// `datagen/<space.table>`: the positions' name in the target's log.
    stream: String,
    pace: Pace,
}

impl DatagenReader {
    fn next_batch(&mut self) -> Result<Option<SourceBatch>> {
        let mut to = self.next + self.rows_per_batch;
        if let Some(end) = self.spec.rows {
            if self.next >= end {
                return Ok(None);
            }
            to = to.min(end);
        }
        let rows = self
            .spec
            .rows(&self.schema, self.next, to, crate::watermark::now_ms())?;
        let from = self.next;
        self.next = to;
        Ok(Some(SourceBatch {
            coordinates: (from..to).map(|n| (0, n as i64)).collect(),
            kinds: None,
            records: to - from,
            rows,
            rejected: Vec::new(),
            positions: BTreeMap::from([(0, Position::at(to as i64 - 1))]),
            drift: None,
            originals: Vec::new(),
        }))
    }
}

#[async_trait::async_trait]
impl SourceReader for DatagenReader {
    fn stream(&self) -> &str {
        &self.stream
    }

    async fn read(
        &mut self,
        deadline: Instant,
        stop: &mut tokio::sync::watch::Receiver<bool>,
    ) -> Result<Next> {
        let ended = self.spec.rows.is_some_and(|end| self.next >= end);
        if let Some(early) = self
            .pace
            .wait((!ended).then_some(self.next), deadline, stop)
            .await
        {
            return Ok(early);
        }
        let batch = self.next_batch()?;
        Ok(self.pace.answer(batch, deadline, stop).await)
    }
}

/// Opens a datagen table at the row after the last one the target committed.
pub async fn open(
    table: &strata_catalog::TableDef,
    spec: Spec,
    options: &SourceOptions<'_>,
    positions: &mut dyn CommittedPositions,
) -> Result<(Box<dyn SourceReader>, Vec<i32>)> {
    let stream = format!("datagen/{}", table.name);
    let next = match positions.committed(&stream, 0).await? {
        Some(last) => last.order as u64 + 1,
        None => 0,
    };
    let reader = DatagenReader {
        schema: table.schema.clone(),
        next,
        // A batch holds at most a tenth of a second's rows, so that the rate holds within a second.
        rows_per_batch: (options.batch_records as u64).min(spec.rate / 10).max(1),
        stream,
        pace: Pace::new(next, spec.rate),
        spec,
    };
    Ok((Box::new(reader), vec![0]))
}
