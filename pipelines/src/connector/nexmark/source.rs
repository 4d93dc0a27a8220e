//! Nexmark's generator as a pipeline's source, in process: event numbers are
//! the offsets of partition 0, so a restart goes on from the next event.

use std::collections::BTreeMap;
use std::time::Instant;

use arrow::datatypes::SchemaRef;
use strata_catalog::connectors::nexmark::Generator;

use crate::error::Result;
use crate::position::Position;
use crate::source::reader::{Next, Pace, SourceBatch, SourceReader};

/// Generates a Nexmark stream batch by batch, from an event number on.
#[derive(Debug)]
pub struct NexmarkReader {
    pub generator: Generator,
    /// The table's declared columns.
    pub schema: SchemaRef,
    /// The next event number to generate.
    pub next: u64,
    /// The number of events of all streams; `None`: without end, paced at the rate.
    pub end: Option<u64>,
    /// Events per batch (of all streams, so a batch holds fewer rows of this one).
    pub batch_events: u64,
    /// `nexmark/<space.table>`: the offsets' name in the target's log.
    pub stream: String,
    pub pace: Pace,
}

impl NexmarkReader {
    fn next_batch(&mut self) -> Result<Option<SourceBatch>> {
        let to = match self.end {
            Some(end) if self.next >= end => return Ok(None),
            Some(end) => end.min(self.next + self.batch_events),
            None => self.next + self.batch_events,
        };
        let (rows, numbers) = self.generator.rows(self.next, to);
        let rows = strata_catalog::connectors::nexmark::conform(&rows, &self.schema)?;
        self.next = to;
        Ok(Some(SourceBatch {
            coordinates: numbers.iter().map(|&n| (0, n as i64)).collect(),
            kinds: None,
            records: rows.num_rows() as u64,
            rows,
            rejected: Vec::new(),
            positions: BTreeMap::from([(0, Position::at(to as i64 - 1))]),
            drift: None,
            originals: Vec::new(),
            carried: None,
        }))
    }
}

#[async_trait::async_trait]
impl SourceReader for NexmarkReader {
    fn stream(&self) -> &str {
        &self.stream
    }

    async fn read(
        &mut self,
        deadline: Instant,
        stop: &mut tokio::sync::watch::Receiver<bool>,
    ) -> Result<Next> {
        let paced = self.end.is_none().then_some(self.next);
        if let Some(early) = self.pace.wait(paced, deadline, stop).await {
            return Ok(early);
        }
        let batch = self.next_batch()?;
        Ok(self.pace.answer(batch, deadline, stop).await)
    }
}

/// Opens a Nexmark table at the event after the last one the target committed.
pub async fn open(
    table: &strata_catalog::TableDef,
    stream: strata_catalog::NexmarkStream,
    events: Option<u64>,
    rate: u64,
    options: &crate::source::SourceOptions<'_>,
    positions: &mut dyn crate::source::CommittedPositions,
) -> Result<(Box<dyn SourceReader>, Vec<i32>)> {
    let stream_name = format!("nexmark/{}", table.name);
    let next = match positions.committed(&stream_name, 0).await? {
        Some(last) => last.order as u64 + 1,
        None => 0,
    };
    let reader = NexmarkReader {
        generator: Generator::new(stream, rate),
        schema: table.schema.clone(),
        next,
        end: events,
        batch_events: options.batch_records as u64,
        stream: stream_name,
        pace: Pace::new(next, rate),
    };
    Ok((Box::new(reader), vec![0]))
}
