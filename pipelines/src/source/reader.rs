//! One interface over a pipeline's source, whatever it is: a Kafka topic
//! (records decoded from JSON) or an upstream Delta table (followed version by version).
//!
//! ```text
//!   Kafka: records ──decode──▶ SourceBatch { rows, (partition, offset) per row, rejected, offsets }
//!   Delta: version v's new files ──▶ SourceBatch { rows, (0, v) per row, offsets {0: v} }
//!   Nexmark: events a..b generated ──▶ SourceBatch { this stream's rows, (0, n) per row, offsets {0: b - 1} }
//! ```

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use tokio::sync::watch;

use super::SourceRecord;
use super::delta::DeltaFollower;
use super::kafka::{KafkaSource, SourceEvent};
use crate::decode::debezium::{DebeziumDecoder, RowKind};
use crate::decode::json::{JsonDecoder, Rejected};
use crate::error::{PipelineError, Result};
use strata_catalog::connectors::nexmark::Generator;

/// Rows a source handed over, with where each came from.
#[derive(Debug)]
pub struct SourceBatch {
    /// Rows in the source table's schema.
    pub rows: RecordBatch,
    /// Each row's (partition, offset).
    pub coordinates: Vec<(i32, i64)>,
    /// For a changelog source, each row's kind; `None` when every row is an insert.
    pub kinds: Option<Vec<RowKind>>,
    /// Records that could not be decoded.
    pub rejected: Vec<Rejected>,
    /// The last offset read, per partition.
    pub offsets: BTreeMap<i32, i64>,
    /// How many records were read (rows and rejected ones).
    pub records: u64,
    /// A field the records carry that the catalog's schema lacks.
    pub drift: Option<String>,
    /// The records the rows were decoded from, so that a row sent to
    /// quarantine later (by a rule, a lookup miss, …) keeps its key and bytes;
    /// empty for sources of rows (Delta, Nexmark).
    pub originals: Vec<SourceRecord>,
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

/// A pipeline's source.
#[derive(Debug)]
pub enum Reader {
    Kafka {
        source: KafkaSource,
        decoder: RecordDecoder,
        topic: String,
    },
    /// Records taken back from a quarantine, fed once (`strata quarantine replay`).
    Replay {
        records: std::collections::VecDeque<SourceRecord>,
        decoder: RecordDecoder,
        /// `replay-<id>/<topic>`: the replay's own offsets in the target's log.
        stream: String,
        batch_records: usize,
        reported_end: bool,
    },
    Delta {
        follower: DeltaFollower,
        schema: SchemaRef,
        stream: String,
        poll_every: Duration,
        /// Whether the end of the log was reported since the last new version.
        at_end: bool,
        /// When the log was last read.
        polled_at: Option<Instant>,
    },
    /// Nexmark's generator, in process: event numbers are the offsets of partition 0.
    Nexmark(NexmarkReader),
}

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
    pub reported_end: bool,
    /// When the run started, and the event it started at (for pacing).
    pub started: (Instant, u64),
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
            offsets: BTreeMap::from([(0, to as i64 - 1)]),
            drift: None,
            originals: Vec::new(),
        }))
    }

    /// When an unbounded stream may make its next batch: events keep to their rate.
    fn due(&self) -> Instant {
        let ahead = self.next.saturating_sub(self.started.1);
        self.started.0 + Duration::from_secs_f64(ahead as f64 / self.generator.rate as f64)
    }
}

impl Reader {
    /// The name offsets are recorded under: the topic, or `delta/<space.table>`.
    pub fn stream(&self) -> &str {
        match self {
            Reader::Kafka { topic, .. } => topic,
            Reader::Delta { stream, .. } | Reader::Replay { stream, .. } => stream,
            Reader::Nexmark(reader) => &reader.stream,
        }
    }

    /// Waits for the next batch until `deadline` or a stop request.
    pub async fn next(
        &mut self,
        deadline: Instant,
        stop: &mut watch::Receiver<bool>,
    ) -> Result<Next> {
        if *stop.borrow() {
            return Ok(Next::Stop);
        }
        match self {
            Reader::Nexmark(reader) => {
                if reader.end.is_none() && reader.due() > Instant::now() {
                    let due = reader.due().min(deadline);
                    tokio::select! {
                        _ = tokio::time::sleep_until(due.into()) => {}
                        changed = stop.changed() => {
                            return Ok(if changed.is_err() || *stop.borrow() { Next::Stop } else { Next::Idle });
                        }
                    }
                    if reader.due() > Instant::now() {
                        return Ok(Next::Idle);
                    }
                }
                match reader.next_batch()? {
                    Some(batch) => Ok(Next::Batch(batch)),
                    None if !reader.reported_end => {
                        reader.reported_end = true;
                        Ok(Next::CaughtUp)
                    }
                    None => tokio::select! {
                        _ = tokio::time::sleep_until(deadline.into()) => Ok(Next::Idle),
                        changed = stop.changed() => {
                            Ok(if changed.is_err() || *stop.borrow() { Next::Stop } else { Next::Idle })
                        }
                    },
                }
            }
            Reader::Kafka {
                source,
                decoder,
                topic,
            } => {
                let event = tokio::select! {
                    event = source.events.recv() => event.unwrap_or_else(|| {
                        SourceEvent::Failed("the source thread stopped".to_string())
                    }),
                    _ = tokio::time::sleep_until(deadline.into()) => return Ok(Next::Idle),
                    changed = stop.changed() => {
                        return Ok(if changed.is_err() || *stop.borrow() { Next::Stop } else { Next::Idle });
                    }
                };
                match event {
                    SourceEvent::Records(records) => Ok(Next::Batch(decode(decoder, records))),
                    SourceEvent::CaughtUp => Ok(Next::CaughtUp),
                    SourceEvent::Failed(cause) => Err(PipelineError::Source {
                        what: format!("Kafka topic {topic}"),
                        cause,
                    }),
                }
            }
            Reader::Replay {
                records,
                decoder,
                batch_records,
                reported_end,
                ..
            } => {
                if !records.is_empty() {
                    let take = records.len().min(*batch_records);
                    let batch: Vec<SourceRecord> = records.drain(..take).collect();
                    return Ok(Next::Batch(decode(decoder, batch)));
                }
                if !*reported_end {
                    *reported_end = true;
                    return Ok(Next::CaughtUp);
                }
                tokio::select! {
                    _ = tokio::time::sleep_until(deadline.into()) => Ok(Next::Idle),
                    changed = stop.changed() => {
                        Ok(if changed.is_err() || *stop.borrow() { Next::Stop } else { Next::Idle })
                    }
                }
            }
            Reader::Delta {
                follower,
                schema,
                poll_every,
                at_end,
                polled_at,
                ..
            } => {
                // At the end of the log, it is read again every `poll_every`, however
                // often the caller asks (a due commit asks every few milliseconds).
                let poll_due = !*at_end || polled_at.is_none_or(|at| at.elapsed() >= *poll_every);
                if poll_due {
                    // Polling is not cancelled half-way: it moves the follower on.
                    *polled_at = Some(Instant::now());
                    if let Some((version, batches)) = follower.poll().await? {
                        *at_end = false;
                        return delta_batch(schema, version, &batches).map(Next::Batch);
                    }
                    if !*at_end {
                        *at_end = true;
                        return Ok(Next::CaughtUp);
                    }
                }
                let next_poll = polled_at.unwrap_or_else(Instant::now) + *poll_every;
                tokio::select! {
                    _ = tokio::time::sleep_until(deadline.min(next_poll).into()) => Ok(Next::Idle),
                    changed = stop.changed() => {
                        Ok(if changed.is_err() || *stop.borrow() { Next::Stop } else { Next::Idle })
                    }
                }
            }
        }
    }
}

fn decode(decoder: &RecordDecoder, records: Vec<SourceRecord>) -> SourceBatch {
    let mut offsets = BTreeMap::new();
    for record in &records {
        offsets.insert(record.partition, record.offset);
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
                offsets,
                records: records.len() as u64,
                drift: decoded.drift,
                originals: Vec::new(),
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
                offsets,
                records: records.len() as u64,
                drift: None,
                originals: Vec::new(),
            }
        }
    };
    SourceBatch {
        originals: records,
        ..batch
    }
}

/// A Delta version's rows, by the source table's column names and types.
fn delta_batch(schema: &SchemaRef, version: i64, batches: &[RecordBatch]) -> Result<SourceBatch> {
    let relaxed = std::sync::Arc::new(arrow::datatypes::Schema::new(
        crate::batch::nullable_fields(schema),
    ));
    let batches = batches
        .iter()
        .map(|batch| {
            let columns = crate::batch::columns_by_name(batch, schema, |name| {
                format!("the upstream table's files have no column {name}")
            })?;
            Ok(RecordBatch::try_new(relaxed.clone(), columns)?)
        })
        .collect::<Result<Vec<_>>>()?;
    let rows = arrow::compute::concat_batches(&relaxed, &batches)?;
    Ok(SourceBatch {
        coordinates: vec![(0, version); rows.num_rows()],
        kinds: None,
        records: rows.num_rows() as u64,
        rows,
        rejected: Vec::new(),
        offsets: BTreeMap::from([(0, version)]),
        drift: None,
        originals: Vec::new(),
    })
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
