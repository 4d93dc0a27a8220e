//! Exactly-once JSON into a Kafka topic, with Kafka transactions.
//!
//! ```text
//!   one Kafka transaction per commit (transactional.id = strata-<pipeline>):
//!     produce one JSON record per row to the target topic
//!       'json':          the row; key: the primary key as JSON; a deleted key: a tombstone
//!       'debezium-json': {"before": null, "after": row, "op": "c"} for an insert or an update's new row,
//!                        {"before": row, "after": null, "op": "d"} for a delete or an update's old row
//!                        (Flink's encoding of a changelog)
//!     produce one progress record to _strata_progress, key strata-<pipeline>:
//!       {"offsets": {"<stream>/<split>": offset, …}, "tokens": {"<stream>/<split>": "<hex>", …}, "state": k}
//!   commit_transaction
//!   restart: init_transactions fences and aborts the last run's open transaction;
//!            the last committed progress record of strata-<pipeline> says where to resume
//! ```
//!
//! Rows and progress commit or abort together, so consumers that read with
//! `isolation.level = read_committed` (librdkafka's default) see each row
//! exactly once, and a restart resumes right after them. `_strata_progress`
//! (one partition, best compacted) is created by the broker on first use when
//! it allows auto-creation; otherwise create it first.

use std::time::Duration;

use arrow::array::Array;
use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use strata_catalog::connectors::kafka::KafkaTarget;

use crate::error::{PipelineError, Result};
use crate::position::{Position, Positions, token_from_hex, token_hex};

const TIMEOUT: Duration = Duration::from_secs(30);

/// The topic where Kafka targets record their progress.
pub const PROGRESS_TOPIC: &str = "_strata_progress";

/// What a progress record holds.
#[derive(Debug, Default, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
struct Progress {
    /// `<stream>/<split>` → the number of the last position written.
    offsets: std::collections::BTreeMap<String, i64>,
    /// `<stream>/<split>` → its token in hex, for splits whose source has one.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    tokens: std::collections::BTreeMap<String, String>,
    state: Option<i64>,
}

/// How a row is written as a record's value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Envelope {
    /// The row as a JSON object; a deleted key is a tombstone.
    Row,
    /// Debezium's `before`/`after`/`op` envelope, as Flink's `debezium-json` writes it.
    Debezium,
}

pub struct KafkaSink {
    producer: ThreadedProducer<DefaultProducerContext>,
    target: KafkaTarget,
    schema: SchemaRef,
    keys: Vec<String>,
    envelope: Envelope,
    /// This pipeline's key in the progress topic.
    id: String,
    /// The last committed progress.
    progress: Progress,
}

impl std::fmt::Debug for KafkaSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaSink")
            .field("topic", &self.target.topic)
            .finish_non_exhaustive()
    }
}

impl KafkaSink {
    /// Connects as `strata-<pipeline>`, fencing (and aborting) any earlier run's open transaction.
    pub fn open(
        target: KafkaTarget,
        schema: SchemaRef,
        keys: Vec<String>,
        pipeline: &str,
        envelope: Envelope,
    ) -> Result<Self> {
        let id = format!("strata-{pipeline}");
        let error = |what: &str, err: &dyn std::fmt::Display| PipelineError::Sink {
            what: format!(
                "Kafka topic {} at {}",
                target.topic, target.bootstrap_servers
            ),
            cause: format!("{what}: {err}"),
        };
        let mut producer_config = ClientConfig::new();
        producer_config
            .set("bootstrap.servers", &target.bootstrap_servers)
            .set("transactional.id", &id)
            .set("enable.idempotence", "true");
        for (key, value) in &target.properties {
            producer_config.set(key, value);
        }
        let producer: ThreadedProducer<DefaultProducerContext> = producer_config
            .create()
            .map_err(|err| error("creating a producer", &err))?;
        producer
            .init_transactions(TIMEOUT)
            .map_err(|err| error("initialising transactions", &err))?;
        let progress =
            read_progress(&target, &id).map_err(|err| error("reading its progress", &err))?;
        Ok(Self {
            producer,
            target,
            schema,
            keys,
            envelope,
            id,
            progress,
        })
    }

    fn error(&self, what: &str, err: impl std::fmt::Display) -> PipelineError {
        PipelineError::Sink {
            what: format!(
                "Kafka topic {} at {}",
                self.target.topic, self.target.bootstrap_servers
            ),
            cause: format!("{what}: {err}"),
        }
    }

    /// Produces the rows (tombstones for deleted keys) and commits the positions
    /// and state id, in one transaction.
    pub fn commit(
        &mut self,
        batches: Vec<RecordBatch>,
        positions: &Positions,
        state: Option<i64>,
    ) -> Result<()> {
        let (batches, deletes) = crate::sink::changes(batches, &self.schema)?;
        self.producer
            .begin_transaction()
            .map_err(|err| self.error("beginning a transaction", err))?;
        for (rows, deletes) in batches.iter().zip(&deletes) {
            let values = json_lines(rows)?;
            let keys = if self.keys.is_empty() {
                None
            } else {
                Some(json_lines(
                    &rows.project(
                        &self
                            .keys
                            .iter()
                            .filter_map(|k| self.schema.index_of(k).ok())
                            .collect::<Vec<_>>(),
                    )?,
                )?)
            };
            for (row, value) in values.iter().enumerate() {
                let key = keys.as_ref().map(|k| k[row].as_str());
                let deleted = deletes.is_valid(row) && deletes.value(row);
                let mut record = BaseRecord::<str, str>::to(&self.target.topic);
                if let Some(key) = key {
                    record = record.key(key);
                }
                let enveloped;
                match (self.envelope, deleted) {
                    (Envelope::Row, true) => {}
                    (Envelope::Row, false) => record = record.payload(value.as_str()),
                    (Envelope::Debezium, deleted) => {
                        enveloped = debezium(value, deleted);
                        record = record.payload(enveloped.as_str());
                    }
                }
                self.send(record)?;
            }
        }
        let mut progress = self.progress.clone();
        for ((stream, split), position) in positions {
            let key = format!("{stream}/{split}");
            match position.token.is_empty() {
                true => progress.tokens.remove(&key),
                false => progress
                    .tokens
                    .insert(key.clone(), token_hex(&position.token)),
            };
            progress.offsets.insert(key, position.order);
        }
        progress.state = state.or(progress.state);
        let value = serde_json::to_string(&progress)
            .map_err(|err| PipelineError::State(format!("progress record: {err}")))?;
        self.send(
            BaseRecord::to(PROGRESS_TOPIC)
                .partition(0)
                .key(self.id.as_str())
                .payload(value.as_str()),
        )?;
        self.producer
            .commit_transaction(TIMEOUT)
            .map_err(|err| self.error("committing the transaction", err))?;
        self.progress = progress;
        Ok(())
    }

    /// Enqueues a record, waiting for room when the producer's queue is full.
    fn send(&self, mut record: BaseRecord<'_, str, str>) -> Result<()> {
        loop {
            match self.producer.send(record) {
                Ok(()) => return Ok(()),
                Err((
                    rdkafka::error::KafkaError::MessageProduction(
                        rdkafka::types::RDKafkaErrorCode::QueueFull,
                    ),
                    back,
                )) => {
                    record = back;
                    std::thread::sleep(Duration::from_millis(5));
                }
                Err((err, _)) => return Err(self.error("producing a record", err)),
            }
        }
    }
}

/// The last committed progress record of `id`, read from the start of the
/// progress topic to its end; the default when there is none (or no topic yet).
fn read_progress(target: &KafkaTarget, id: &str) -> std::result::Result<Progress, String> {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", &target.bootstrap_servers)
        .set("group.id", id)
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "true")
        .set("isolation.level", "read_committed");
    for (key, value) in &target.properties {
        config.set(key, value);
    }
    let consumer: BaseConsumer = config.create().map_err(|err| err.to_string())?;
    let metadata = consumer
        .fetch_metadata(Some(PROGRESS_TOPIC), TIMEOUT)
        .map_err(|err| err.to_string())?;
    let exists = metadata
        .topics()
        .iter()
        .any(|t| t.name() == PROGRESS_TOPIC && t.error().is_none() && !t.partitions().is_empty());
    if !exists {
        return Ok(Progress::default());
    }
    let mut list = TopicPartitionList::new();
    list.add_partition_offset(PROGRESS_TOPIC, 0, Offset::Beginning)
        .map_err(|err| err.to_string())?;
    consumer.assign(&list).map_err(|err| err.to_string())?;
    let mut progress = Progress::default();
    let deadline = std::time::Instant::now() + TIMEOUT;
    loop {
        match consumer.poll(Duration::from_millis(200)) {
            Some(Ok(message)) => {
                use rdkafka::Message;
                if message.key() == Some(id.as_bytes())
                    && let Some(payload) = message.payload()
                {
                    progress = serde_json::from_slice(payload).map_err(|err| {
                        format!("a progress record of {id} is not readable: {err}")
                    })?;
                }
            }
            Some(Err(rdkafka::error::KafkaError::PartitionEOF(_))) => return Ok(progress),
            Some(Err(err)) => return Err(err.to_string()),
            None if std::time::Instant::now() > deadline => {
                return Err(format!(
                    "{PROGRESS_TOPIC} did not reach its end in {TIMEOUT:?}"
                ));
            }
            None => {}
        }
    }
}

/// A row's JSON object in Debezium's envelope: a delete's `before`, or an insert's `after`.
fn debezium(row: &str, deleted: bool) -> String {
    match deleted {
        true => format!(r#"{{"before":{row},"after":null,"op":"d"}}"#),
        false => format!(r#"{{"before":null,"after":{row},"op":"c"}}"#),
    }
}

/// Each row as one JSON object.
fn json_lines(rows: &RecordBatch) -> Result<Vec<String>> {
    let mut writer = arrow_json::LineDelimitedWriter::new(Vec::new());
    writer.write(rows)?;
    writer.finish()?;
    let text = String::from_utf8(writer.into_inner())
        .map_err(|err| PipelineError::Evaluation(format!("JSON output is not UTF-8: {err}")))?;
    Ok(text.lines().map(str::to_string).collect())
}

#[async_trait::async_trait]
impl crate::sink::TargetSink for KafkaSink {
    /// The last position of `stream`/`split` written with the rows, if any.
    async fn committed_position(&self, stream: &str, split: i32) -> Result<Option<Position>> {
        let key = format!("{stream}/{split}");
        let Some(&order) = self.progress.offsets.get(&key) else {
            return Ok(None);
        };
        let token = match self.progress.tokens.get(&key) {
            Some(hex) => token_from_hex(hex).map_err(|cause| {
                self.error(&format!("the token of {key} in {PROGRESS_TOPIC}"), cause)
            })?,
            None => Vec::new(),
        };
        Ok(Some(Position { order, token }))
    }

    /// The state checkpoint id the last transaction carried.
    async fn committed_state(&self) -> Result<Option<i64>> {
        Ok(self.progress.state)
    }

    async fn commit(
        &mut self,
        rows: Vec<RecordBatch>,
        positions: &Positions,
        state: Option<i64>,
    ) -> Result<Option<i64>> {
        KafkaSink::commit(self, rows, positions, state).map(|()| None)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::Int64Array;
    use arrow::datatypes::{DataType, Field, Schema};
    use rdkafka::mocking::MockCluster;

    use super::*;
    use crate::sink::TargetSink;

    fn schema() -> SchemaRef {
        Arc::new(Schema::new(vec![Field::new("id", DataType::Int64, false)]))
    }

    #[tokio::test]
    async fn a_kafka_target_keeps_positions_and_their_tokens_across_a_restart() {
        let cluster = MockCluster::new(1).unwrap();
        cluster.create_topic("app_orders", 1, 1).unwrap();
        cluster.create_topic(PROGRESS_TOPIC, 1, 1).unwrap();
        let target = KafkaTarget {
            bootstrap_servers: cluster.bootstrap_servers(),
            properties: Default::default(),
            topic: "app_orders".to_string(),
        };
        let open = || {
            let target = target.clone();
            async move {
                Box::new(KafkaSink::open(target, schema(), Vec::new(), "p", Envelope::Row).unwrap())
                    as Box<dyn TargetSink>
            }
        };
        let rows =
            RecordBatch::try_new(schema(), vec![Arc::new(Int64Array::from(vec![1, 2]))]).unwrap();
        crate::sink::contract::keeps_positions(open, vec![rows]).await;
    }
}
