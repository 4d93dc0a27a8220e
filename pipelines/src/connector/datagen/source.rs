//! A datagen table as a pipeline's source: row numbers are the positions of
//! its one split, and the token of each position is when row 0 was
//! generated, so a restart goes on from the row after the last one committed
//! with the times an uninterrupted run would have given; rows keep to
//! `'rows-per-second'` of wall-clock time.
//!
//! ```text
//!   position = { order: last row number, token: base_ms (8 bytes) }   row n's times: base_ms + n / rate
//! ```

use std::collections::BTreeMap;
use std::time::Instant;

use arrow::datatypes::SchemaRef;

use super::spec::Spec;
use crate::error::Result;
use crate::position::Position;
use crate::source::reader::{Next, Pace, SourceBatch, SourceReader};
use crate::source::{CommittedPositions, SourceOptions};

/// The most bytes a batch of generated rows holds.
const BATCH_BYTES: usize = 16 << 20;

/// Generates a datagen table's rows batch by batch, from a row number on.
#[derive(Debug)]
pub struct DatagenReader {
    spec: Spec,
    /// `space.table`, which seeds its random values.
    table: String,
    schema: SchemaRef,
    /// When row 0 was generated, in ms since the epoch.
    base_ms: i64,
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
            .rows(&self.table, &self.schema, self.next, to, self.base_ms)?;
        let from = self.next;
        self.next = to;
        Ok(Some(SourceBatch {
            coordinates: (from..to).map(|n| (0, n as i64)).collect(),
            kinds: None,
            records: to - from,
            rows,
            rejected: Vec::new(),
            positions: BTreeMap::from([(
                0,
                Position {
                    order: to as i64 - 1,
                    token: self.base_ms.to_le_bytes().to_vec(),
                },
            )]),
            drift: None,
            originals: Vec::new(),
            carried: None,
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

/// Opens a datagen table at the row after the last one the target committed,
/// with the base time committed with it.
pub async fn open(
    table: &strata_catalog::TableDef,
    spec: Spec,
    options: &SourceOptions<'_>,
    positions: &mut dyn CommittedPositions,
) -> Result<(Box<dyn SourceReader>, Vec<i32>)> {
    let stream = format!("datagen/{}", table.name);
    let (next, base_ms) =
        match positions.committed(&stream, 0).await? {
            Some(last) => {
                let base: [u8; 8] = last.token.as_slice().try_into().map_err(|_| {
                    crate::PipelineError::Source {
                        what: format!("table {}", table.name),
                        cause: format!(
                            "the committed position of {stream} carries {} bytes, not a time of 8",
                            last.token.len()
                        ),
                    }
                })?;
                (last.order as u64 + 1, i64::from_le_bytes(base))
            }
            None => (0, crate::watermark::now_ms()),
        };
    // A batch holds at most a tenth of a second's rows (so that the rate holds
    // within a second) and at most BATCH_BYTES.
    let rows_per_batch = (options.batch_records as u64)
        .min(spec.rate / 10)
        .min((BATCH_BYTES / spec.row_bytes().max(1)) as u64)
        .max(1);
    // Row `next` was due when its time stamp says: a run that was stopped catches up.
    let behind = (crate::watermark::now_ms() - spec.generated_ms(base_ms, next)).max(0);
    let due = Instant::now()
        .checked_sub(std::time::Duration::from_millis(behind as u64))
        .unwrap_or_else(Instant::now);
    let reader = DatagenReader {
        table: table.name.to_string(),
        schema: table.schema.clone(),
        base_ms,
        next,
        rows_per_batch,
        stream,
        pace: Pace::since(next, spec.rate, due),
        spec,
    };
    Ok((Box::new(reader), vec![0]))
}
