//! One interface over a pipeline's source, whatever it is: a Kafka topic
//! (records decoded from JSON), an upstream Delta table (followed version by
//! version), Nexmark's generator, or quarantined records replayed.
//!
//! ```text
//!   Kafka: records ──decode──▶ SourceBatch { rows, (partition, offset) per row, rejected, positions }
//!   Delta: version v's new files ──▶ SourceBatch { rows, (0, v) per row, positions {0: v} }
//!   Nexmark: events a..b generated ──▶ SourceBatch { this stream's rows, (0, n) per row, positions {0: b - 1} }
//! ```

use std::collections::BTreeMap;
use std::time::Instant;

use arrow::record_batch::RecordBatch;
use tokio::sync::watch;

use super::SourceRecord;
use crate::decode::debezium::DebeziumDecoder;
use crate::decode::json::{JsonDecoder, Rejected};
use crate::error::Result;
use crate::operator::RowKind;
use crate::position::Position;

/// Rows a source handed over, with where each came from.
#[derive(Debug)]
pub struct SourceBatch {
    /// Rows in the source table's schema.
    pub rows: RecordBatch,
    /// Each row's (split, number of its position): a Kafka record's (partition, offset).
    pub coordinates: Vec<(i32, i64)>,
    /// For a changelog source, each row's kind; `None` when every row is an insert.
    pub kinds: Option<Vec<RowKind>>,
    /// Records that could not be decoded.
    pub rejected: Vec<Rejected>,
    /// Where each split read from stands after the batch.
    pub positions: BTreeMap<i32, Position>,
    /// How many records were read (rows and rejected ones).
    pub records: u64,
    /// A field the records carry that the catalog's schema lacks.
    pub drift: Option<String>,
    /// The records the rows were decoded from, so that a row sent to
    /// quarantine later (by a rule, a lookup miss, …) keeps its key and bytes;
    /// empty for sources of rows (Delta, Nexmark).
    pub originals: Vec<SourceRecord>,
    /// The watermark the upstream pipeline committed the rows at, with the
    /// columns it bounds (a Delta table a pipeline writes).
    pub carried: Option<Box<CarriedWatermark>>,
}

/// An upstream pipeline's watermark, recorded with its commit.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct CarriedWatermark {
    /// Milliseconds since the epoch.
    pub ms: i64,
    /// The columns that carry its event time (see
    /// [`crate::validate::ValidPipeline::event_time_columns`]).
    pub columns: Vec<String>,
    /// The pipeline that wrote it: a table several pipelines write carries
    /// the lowest of their watermarks.
    pub writer: String,
}

/// The records of the batch a pipeline is processing, so that a row it sends
/// to quarantine goes as the record it was decoded from, key and bytes. They
/// are indexed by (partition, offset) at the first such row: most batches
/// send none, and pay nothing for it.
#[derive(Debug, Default)]
pub struct Originals {
    records: Vec<SourceRecord>,
    index: Option<std::collections::HashMap<(i32, i64), usize>>,
}

impl Originals {
    /// Keeps `batch`'s records (taking them out of it) until [`Originals::clear`].
    pub fn keep(&mut self, batch: &mut SourceBatch) {
        self.records = std::mem::take(&mut batch.originals);
        self.index = None;
    }

    pub fn clear(&mut self) {
        self.records.clear();
        self.index = None;
    }

    /// The record at `coordinates`, if the batch being processed has it.
    pub fn get(&mut self, coordinates: (i32, i64)) -> Option<&SourceRecord> {
        if self.records.is_empty() {
            return None;
        }
        let records = &self.records;
        let index = self.index.get_or_insert_with(|| {
            records
                .iter()
                .enumerate()
                .map(|(at, record)| ((record.partition, record.offset), at))
                .collect()
        });
        index.get(&coordinates).map(|&at| &records[at])
    }
}

/// What waiting on a source produced.
#[derive(Debug)]
pub enum Next {
    Batch(SourceBatch),
    /// Every partition has been read to its end.
    CaughtUp,
    /// Nothing before the deadline.
    Idle,
    /// Asked to stop.
    Stop,
}

/// How a Kafka topic's records are decoded.
#[derive(Debug)]
pub enum RecordDecoder {
    Json(JsonDecoder),
    Debezium(DebeziumDecoder),
}

/// A pipeline's source, whatever it reads: the runner asks it for batches and
/// records their positions under [`SourceReader::stream`].
#[async_trait::async_trait]
pub trait SourceReader: std::fmt::Debug + Send + Sync {
    /// The name positions are recorded under in the target's log: the topic,
    /// `delta/<space.table>`, `nexmark/<space.table>` or `replay-<id>/<topic>`.
    fn stream(&self) -> &str;

    /// Waits for the next batch until `deadline` or a stop request.
    async fn next(&mut self, deadline: Instant, stop: &mut watch::Receiver<bool>) -> Result<Next> {
        if *stop.borrow() {
            return Ok(Next::Stop);
        }
        self.read(deadline, stop).await
    }

    /// Reads the next batch, unless `deadline` or a stop request comes first.
    async fn read(&mut self, deadline: Instant, stop: &mut watch::Receiver<bool>) -> Result<Next>;

    /// Whether its records are messages read for the first time whose fields
    /// may drift from the catalog's schema (worth reporting): not rows of a
    /// table, nor records replayed from a quarantine (reported when first read).
    fn carries_messages(&self) -> bool {
        false
    }
}

/// Waits until `deadline` (nothing came: idle) or a stop request.
pub async fn idle_until(deadline: Instant, stop: &mut watch::Receiver<bool>) -> Next {
    tokio::select! {
        _ = tokio::time::sleep_until(deadline.into()) => Next::Idle,
        changed = stop.changed() => stopped(changed.is_err() || *stop.borrow()),
    }
}

/// The pace of a source that generates rows at a rate (Nexmark, datagen),
/// counted from the row it started at.
#[derive(Debug)]
pub struct Pace {
    started: Instant,
    first: u64,
    /// Rows per second.
    rate: u64,
    reported_end: bool,
}

impl Pace {
    /// Row `first` due now.
    pub fn new(first: u64, rate: u64) -> Self {
        Self::since(first, rate, Instant::now())
    }

    /// Row `first` due at `started` (in the past for a source that is behind:
    /// it catches up as fast as it can).
    pub fn since(first: u64, rate: u64, started: Instant) -> Self {
        Self {
            started,
            first,
            rate: rate.max(1),
            reported_end: false,
        }
    }

    /// When row `next` may be generated.
    pub fn due(&self, next: u64) -> Instant {
        let ahead = next.saturating_sub(self.first);
        self.started + std::time::Duration::from_secs_f64(ahead as f64 / self.rate as f64)
    }

    /// Waits until row `next` is due (`None`: nothing to wait for, the source
    /// being bounded or done); what to answer instead of a batch, if anything.
    pub async fn wait(
        &self,
        next: Option<u64>,
        deadline: Instant,
        stop: &mut watch::Receiver<bool>,
    ) -> Option<Next> {
        let due = next
            .map(|next| self.due(next))
            .filter(|&due| due > Instant::now())?;
        tokio::select! {
            _ = tokio::time::sleep_until(due.min(deadline).into()) => {}
            changed = stop.changed() => return Some(stopped(changed.is_err() || *stop.borrow())),
        }
        (due > Instant::now()).then_some(Next::Idle)
    }

    /// What a read answers with the batch the source made, if it made one:
    /// without one, that the source is done, once.
    pub async fn answer(
        &mut self,
        batch: Option<SourceBatch>,
        deadline: Instant,
        stop: &mut watch::Receiver<bool>,
    ) -> Next {
        match batch {
            Some(batch) => Next::Batch(batch),
            None if !self.reported_end => {
                self.reported_end = true;
                Next::CaughtUp
            }
            None => idle_until(deadline, stop).await,
        }
    }
}

/// `Stop` when asked to stop, else `Idle`.
pub fn stopped(asked: bool) -> Next {
    if asked { Next::Stop } else { Next::Idle }
}

/// Decodes a batch of records into rows, with each row's coordinates.
pub fn decode(decoder: &RecordDecoder, records: Vec<SourceRecord>) -> SourceBatch {
    let mut positions = BTreeMap::new();
    for record in &records {
        positions.insert(record.partition, Position::at(record.offset));
    }
    let coordinates = |index: usize| (records[index].partition, records[index].offset);
    let batch = match decoder {
        RecordDecoder::Json(decoder) => {
            let decoded = decoder.decode(&records);
            SourceBatch {
                coordinates: decoded
                    .rows
                    .iter()
                    .map(|&index| coordinates(index))
                    .collect(),
                kinds: None,
                rows: decoded.batch,
                rejected: decoded.rejected,
                positions,
                records: records.len() as u64,
                drift: decoded.drift,
                originals: Vec::new(),
                carried: None,
            }
        }
        RecordDecoder::Debezium(decoder) => {
            let decoded = decoder.decode(&records);
            SourceBatch {
                coordinates: decoded
                    .rows
                    .iter()
                    .map(|&(index, _)| coordinates(index))
                    .collect(),
                kinds: Some(decoded.rows.iter().map(|&(_, kind)| kind).collect()),
                rows: decoded.batch,
                rejected: decoded.rejected,
                positions,
                records: records.len() as u64,
                drift: None,
                originals: Vec::new(),
                carried: None,
            }
        }
    };
    SourceBatch {
        originals: records,
        ..batch
    }
}

/// One row as a JSON object, for the quarantine's payload.
pub fn row_as_json(batch: &RecordBatch, row: usize) -> Vec<u8> {
    let mut writer = arrow_json::LineDelimitedWriter::new(Vec::new());
    let _ = writer.write(&batch.slice(row, 1));
    let _ = writer.finish();
    let mut bytes = writer.into_inner();
    if bytes.last() == Some(&b'\n') {
        bytes.pop();
    }
    bytes
}
