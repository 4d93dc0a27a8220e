//! The versioned side of an event-time temporal join over a Kafka table: its
//! changelog topic, read by the pipeline beside the probe stream and applied
//! to the versioned table, with a watermark of its own.
//!
//! ```text
//!   changelog topic ──records──▶ decode (json rows + tombstones, or debezium) ──▶ VersionedTable::apply
//!     │                                     └─▶ records that are no version ──▶ quarantine (topic, partition, offset)
//!     ├─ offsets ──▶ the target's commit, beside the probe's
//!     └─ event times ──▶ watermark ──▶ horizon (probe rows up to it join; +∞ while every partition is idle)
//! ```

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use arrow::array::{Array, UInt32Array};
use arrow::datatypes::Schema;
use arrow::record_batch::RecordBatch;
use strata_catalog::connectors::kafka::KafkaTarget;
use strata_catalog::{KafkaFormat, TableDef};

use super::source::{KafkaSource, SourceEvent};
use super::upserts::Upsert;
use crate::connector::{Applied, VersionFeed};
use crate::decode::debezium::DebeziumDecoder;
use crate::decode::json::{JsonDecoder, Rejected};
use crate::error::{PipelineError, Result};
use crate::lookup::versioned::{Change, VersionedTable};
use crate::operator::RowKind;
use crate::position::Position;
use crate::source::SourceRecord;
use crate::state::{ByteReader, ByteWriter};
use crate::watermark::WatermarkTracker;

/// How a changelog's records are decoded.
#[derive(Debug)]
enum ChangeDecoder {
    /// Rows are upserts by primary key; a tombstone (no value) deletes the key its record key names.
    Json {
        rows: JsonDecoder,
        keys: JsonDecoder,
    },
    Debezium(DebeziumDecoder),
}

/// The changelog topic of a temporal join's versioned table, being read.
#[derive(Debug)]
pub struct KafkaVersions {
    table: Arc<VersionedTable>,
    topic: String,
    partitions: Vec<i32>,
    /// The changelog's watermark, as of the last `advance`.
    watermark: Option<i64>,
    source: KafkaSource,
    decoder: ChangeDecoder,
    tracker: WatermarkTracker,
}

impl KafkaVersions {
    /// Starts reading the changelog right after the offsets in `resume`.
    pub(super) fn start(
        table: Arc<VersionedTable>,
        def: &TableDef,
        kafka: KafkaTarget,
        group: &str,
        resume: &BTreeMap<i32, i64>,
        tracker: WatermarkTracker,
        batch_records: usize,
    ) -> Result<Self> {
        let topic = kafka.topic.clone();
        let partitions = resume.keys().copied().collect();
        let decoder = match super::format(def) == Some(KafkaFormat::DebeziumJson) {
            true => ChangeDecoder::Debezium(DebeziumDecoder::new(table.schema.clone())),
            false => {
                let key_fields: Vec<arrow::datatypes::Field> = table
                    .primary_key
                    .iter()
                    .map(|k| Ok(table.schema.field_with_name(k)?.clone()))
                    .collect::<Result<_>>()?;
                ChangeDecoder::Json {
                    rows: JsonDecoder::new(table.schema.clone()),
                    keys: JsonDecoder::new(Arc::new(Schema::new(key_fields))),
                }
            }
        };
        let source = KafkaSource::start(kafka, group, resume, batch_records)?;
        Ok(Self {
            table,
            topic,
            partitions,
            watermark: None,
            source,
            decoder,
            tracker,
        })
    }

    fn failed(&self, cause: String) -> PipelineError {
        PipelineError::Source {
            what: format!(
                "Kafka topic {} (versions of {})",
                self.topic, self.table.name
            ),
            cause,
        }
    }
}

#[async_trait::async_trait]
impl VersionFeed for KafkaVersions {
    fn table(&self) -> &Arc<VersionedTable> {
        &self.table
    }

    fn stream(&self) -> &str {
        &self.topic
    }

    fn partitions(&self) -> &[i32] {
        &self.partitions
    }

    fn watermark(&self) -> Option<i64> {
        self.watermark
    }

    /// The next records of the changelog; `None` when it has been read to its end.
    async fn next(&mut self) -> Result<Option<Vec<SourceRecord>>> {
        match self.source.events.recv().await {
            Some(SourceEvent::Records(records)) => Ok(Some(records)),
            Some(SourceEvent::CaughtUp) => Ok(None),
            Some(SourceEvent::Failed(cause)) => Err(self.failed(cause)),
            None => Err(self.failed("the source thread stopped".to_string())),
        }
    }

    /// Applies records to the versioned table, in the order they were written.
    fn apply(&mut self, records: &[SourceRecord], now: Instant) -> Result<Applied> {
        let mut applied = Applied::default();
        let mut maxima: BTreeMap<i32, Option<i64>> = BTreeMap::new();
        for record in records {
            applied
                .positions
                .insert(record.partition, Position::at(record.offset));
            maxima.entry(record.partition).or_insert(None);
        }
        let mut changes: Vec<(RecordBatch, Vec<usize>, Vec<Change>)> = Vec::new();
        match &self.decoder {
            ChangeDecoder::Debezium(decoder) => {
                let decoded = decoder.decode(records);
                applied.rejected.extend(decoded.rejected);
                // An update's new image is the new version; its old image says nothing more.
                // A delete takes effect at its record's timestamp; one without is no change.
                let mut kept = Vec::new();
                for (row, &(index, kind)) in decoded.rows.iter().enumerate() {
                    match kind {
                        RowKind::UpdateBefore => {}
                        RowKind::Delete if records[index].timestamp_ms.is_none() => {
                            applied.rejected.push(Rejected {
                                record: records[index].clone(),
                                error: format!(
                                    "a delete of {} without a record timestamp, so it deletes from no time on",
                                    self.table.name
                                ),
                                rule: None,
                                event_time_ms: None,
                            });
                        }
                        _ => kept.push(row),
                    }
                }
                let indices = UInt32Array::from_iter_values(kept.iter().map(|&r| r as u32));
                let batch = arrow::compute::take_record_batch(&decoded.batch, &indices)?;
                let origins: Vec<usize> = kept.iter().map(|&r| decoded.rows[r].0).collect();
                let kinds = kept
                    .iter()
                    .map(|&r| match decoded.rows[r] {
                        (index, RowKind::Delete) => Change::Delete {
                            at_ms: records[index].timestamp_ms.unwrap_or_default(),
                        },
                        _ => Change::Upsert,
                    })
                    .collect();
                changes.push((batch, origins, kinds));
            }
            ChangeDecoder::Json { rows, keys } => {
                for change in super::upserts::upserts(rows, keys, records) {
                    match change {
                        Upsert::Rows { decoded, origins } => {
                            applied.rejected.extend(decoded.rejected);
                            let upserts = vec![Change::Upsert; decoded.batch.num_rows()];
                            changes.push((decoded.batch, origins, upserts));
                        }
                        Upsert::Tombstone { record, at, key } => {
                            match (key, record.timestamp_ms) {
                                (Some(key), Some(at_ms)) => {
                                    changes.push((key, vec![at], vec![Change::Delete { at_ms }]))
                                }
                                _ => applied.rejected.push(Rejected {
                                    record: record.clone(),
                                    error: format!(
                                        "a tombstone of {} whose record key is not its primary key ({}) as JSON, or that has no timestamp, so it deletes nothing",
                                        self.table.name,
                                        self.table.primary_key.join(", ")
                                    ),
                                    rule: None,
                                    event_time_ms: None,
                                }),
                            }
                        }
                    }
                }
            }
        }
        for (batch, origins, kinds) in changes {
            for (row, reason) in self.table.apply(&batch, &kinds)? {
                applied.rejected.push(Rejected {
                    record: records[origins[row]].clone(),
                    error: format!("this change is no version of {}: {reason}", self.table.name),
                    rule: None,
                    event_time_ms: None,
                });
            }
            let times = match kinds.contains(&Change::Upsert) {
                true => Some(crate::window::event_times(&batch, &self.table.time_column)?),
                false => None,
            };
            // Only versions' event times move the watermark: a delete is timed by the
            // record's Kafka timestamp, a clock of its own.
            for (row, kind) in kinds.iter().enumerate() {
                let at = match kind {
                    Change::Delete { .. } => None,
                    Change::Upsert => times
                        .as_ref()
                        .filter(|t| t.is_valid(row))
                        .map(|t| t.value(row)),
                };
                let entry = maxima
                    .entry(records[origins[row]].partition)
                    .or_insert(None);
                if let Some(at) = at {
                    *entry = Some(entry.map_or(at, |m: i64| m.max(at)));
                }
            }
        }
        for (partition, max) in maxima {
            self.tracker.observe(partition, max, now);
        }
        Ok(applied)
    }

    /// Moves the table's horizon: the changelog's watermark, or +∞ while every
    /// partition has been idle.
    fn advance(&mut self, now: Instant) {
        let watermark = self.tracker.current(now);
        self.watermark = watermark;
        let horizon = if self.tracker.all_idle(now) {
            i64::MAX
        } else {
            watermark.unwrap_or(i64::MIN)
        };
        self.table.set_horizon(horizon);
    }

    fn encode(&self, out: &mut ByteWriter) {
        self.table.encode(out);
        self.tracker.encode(out);
    }

    fn restore(&mut self, input: &mut ByteReader, now: Instant) -> Result<()> {
        self.table.decode(input)?;
        self.tracker.restore(input, now)
    }
}
