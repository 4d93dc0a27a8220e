//! The Kafka source: a consumer thread that reads assigned partitions from
//! the offsets the targets last committed, and hands over batches.
//!
//! ```text
//!   resume offsets (from the targets' Delta txn actions)
//!        │
//!        ▼
//!   BaseConsumer.assign(p0 @ o0, p1 @ o1, …) ──poll──▶ batch of ≤ N records or ≤ linger ──channel──▶ pipeline
//! ```
//!
//! Kafka's own consumer-group offsets are not the source of truth: a restart
//! resumes from what the targets committed, so nothing is read twice into a
//! target and nothing is skipped.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::error::KafkaError;
use rdkafka::{ClientConfig, ClientContext, Message, Offset, TopicPartitionList};
use strata_catalog::StartupMode;
use strata_catalog::connectors::kafka::KafkaTarget;
use tokio::sync::mpsc;

use crate::error::{PipelineError, Result};
use crate::position::Position;
use crate::source::SourceRecord;
use crate::source::reader::{Next, RecordDecoder, SourceReader, decode, stopped};

const METADATA_TIMEOUT: Duration = Duration::from_secs(10);

/// What a source thread sends: records, or why it stopped.
#[derive(Debug)]
pub enum SourceEvent {
    Records(Vec<SourceRecord>),
    /// Every assigned partition was read to its end at this moment (for tests and `--until-idle`).
    CaughtUp,
    Failed(String),
}

/// Reaching the end of a partition is news for the read loop, not an error to log.
struct SourceContext;

impl ClientContext for SourceContext {
    fn error(&self, error: KafkaError, reason: &str) {
        let end_of_partition = matches!(
            error,
            KafkaError::PartitionEOF(_)
                | KafkaError::Global(rdkafka::types::RDKafkaErrorCode::PartitionEOF)
        );
        if !end_of_partition {
            tracing::warn!(%error, reason, "Kafka client error; librdkafka retries");
        }
    }
}

impl ConsumerContext for SourceContext {}

type SourceConsumer = BaseConsumer<SourceContext>;

/// A running source thread.
#[derive(Debug)]
pub struct KafkaSource {
    pub events: mpsc::Receiver<SourceEvent>,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl KafkaSource {
    /// The partitions of a topic.
    pub fn partitions(target: &KafkaTarget) -> Result<Vec<i32>> {
        Self::partitions_if_exists(target)?
            .ok_or_else(|| kafka_error(target, &format!("topic {} does not exist", target.topic)))
    }

    /// The partitions of a topic, or `None` while the topic does not exist (the
    /// brokers answer, but without it).
    pub fn partitions_if_exists(target: &KafkaTarget) -> Result<Option<Vec<i32>>> {
        let consumer = consumer(target, "strata-metadata")?;
        let metadata = consumer
            .fetch_metadata(Some(&target.topic), METADATA_TIMEOUT)
            .map_err(|err| kafka_error(target, &err.to_string()))?;
        let Some(topic) = metadata
            .topics()
            .iter()
            .find(|t| t.name() == target.topic && t.error().is_none())
        else {
            return Ok(None);
        };
        let mut partitions: Vec<i32> = topic.partitions().iter().map(|p| p.id()).collect();
        partitions.sort_unstable();
        Ok((!partitions.is_empty()).then_some(partitions))
    }

    /// Per partition of the topic, the position before the first record
    /// `startup` points at: where a reader that starts there stands.
    pub fn positions_before(
        target: &KafkaTarget,
        group: &str,
        startup: &StartupMode,
    ) -> Result<BTreeMap<i32, i64>> {
        let partitions = Self::partitions(target)?;
        Self::positions_before_of(target, group, startup, &partitions)
    }

    /// [`KafkaSource::positions_before`], for some of the partitions.
    fn positions_before_of(
        target: &KafkaTarget,
        group: &str,
        startup: &StartupMode,
        partitions: &[i32],
    ) -> Result<BTreeMap<i32, i64>> {
        Ok(Self::start_offsets(target, group, startup, partitions)?
            .into_iter()
            .map(|(partition, start)| (partition, start - 1))
            .collect())
    }

    /// Where each partition starts for a pipeline that has never committed it:
    /// the next offset to read, as `startup` says, made concrete now so that it
    /// can be recorded before anything is read.
    pub fn start_offsets(
        target: &KafkaTarget,
        group: &str,
        startup: &StartupMode,
        partitions: &[i32],
    ) -> Result<BTreeMap<i32, i64>> {
        let consumer = consumer(target, group)?;
        let topic = &target.topic;
        let failed = |err: KafkaError| kafka_error(target, &err.to_string());
        // One ListOffsets request for every partition (the beginning, the end, or
        // the first offset at a timestamp), rather than one per partition.
        let offsets_at = |position: Offset| -> Result<BTreeMap<i32, Option<i64>>> {
            let mut query = TopicPartitionList::new();
            for &partition in partitions {
                query
                    .add_partition_offset(topic, partition, position)
                    .map_err(failed)?;
            }
            let found = consumer
                .offsets_for_times(query, METADATA_TIMEOUT)
                .map_err(failed)?;
            Ok(partitions
                .iter()
                .map(|&partition| {
                    let offset = match found.find_partition(topic, partition).map(|e| e.offset()) {
                        Some(Offset::Offset(offset)) => Some(offset),
                        _ => None,
                    };
                    (partition, offset)
                })
                .collect())
        };
        let bound = |offsets: &BTreeMap<i32, Option<i64>>, partition: i32, which: &str| {
            offsets[&partition].ok_or_else(|| {
                kafka_error(
                    target,
                    &format!("partition {partition} did not report its {which} offset"),
                )
            })
        };
        let low = offsets_at(Offset::Beginning)?;
        let high = offsets_at(Offset::End)?;
        let chosen = match startup {
            StartupMode::EarliestOffset | StartupMode::LatestOffset => None,
            StartupMode::GroupOffsets => {
                let mut query = TopicPartitionList::new();
                for &partition in partitions {
                    query.add_partition(topic, partition);
                }
                let committed = consumer
                    .committed_offsets(query, METADATA_TIMEOUT)
                    .map_err(failed)?;
                Some(
                    partitions
                        .iter()
                        .map(|&partition| {
                            let offset = match committed
                                .find_partition(topic, partition)
                                .map(|e| e.offset())
                            {
                                Some(Offset::Offset(offset)) => Some(offset),
                                _ => None,
                            };
                            (partition, offset)
                        })
                        .collect::<BTreeMap<_, _>>(),
                )
            }
            StartupMode::Timestamp { millis } => Some(offsets_at(Offset::Offset(*millis))?),
        };
        let mut starts = BTreeMap::new();
        for &partition in partitions {
            let (low, high) = (
                bound(&low, partition, "earliest")?,
                bound(&high, partition, "latest")?,
            );
            let start = match (startup, chosen.as_ref().and_then(|c| c[&partition])) {
                (StartupMode::EarliestOffset, _) => low,
                (StartupMode::LatestOffset, _) => high,
                (StartupMode::GroupOffsets, Some(committed)) => committed,
                (StartupMode::GroupOffsets, None) => low,
                (StartupMode::Timestamp { .. }, Some(at)) => at,
                (StartupMode::Timestamp { .. }, None) => high,
            };
            starts.insert(partition, start.clamp(low, high));
        }
        Ok(starts)
    }

    /// Starts reading the partitions `resume` names (the caller listed them),
    /// each right after the offset it gives (the last one the targets committed).
    pub fn start(
        target: KafkaTarget,
        group: &str,
        resume: &BTreeMap<i32, i64>,
        batch_records: usize,
    ) -> Result<Self> {
        let consumer = consumer(&target, group)?;
        let mut assignment = TopicPartitionList::new();
        for (&partition, &last) in resume {
            assignment
                .add_partition_offset(&target.topic, partition, Offset::Offset(last + 1))
                .map_err(|err| kafka_error(&target, &err.to_string()))?;
        }
        consumer
            .assign(&assignment)
            .map_err(|err| kafka_error(&target, &err.to_string()))?;
        let (sender, events) = mpsc::channel(4);
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let stop_flag = stop.clone();
        let topic = target.topic.clone();
        let thread = std::thread::Builder::new()
            .name(format!("kafka-{topic}"))
            .spawn(move || read_loop(consumer, topic, batch_records, sender, stop_flag))
            .map_err(|source| PipelineError::Io {
                path: "source thread".to_string(),
                source,
            })?;
        Ok(Self {
            events,
            stop,
            thread: Some(thread),
        })
    }
}

impl Drop for KafkaSource {
    /// Stops the thread and waits for it (at most one poll), so that its
    /// consumer is closed before whatever owns the brokers goes away.
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
        self.events.close();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn consumer(target: &KafkaTarget, group: &str) -> Result<SourceConsumer> {
    let mut config = ClientConfig::new();
    // librdkafka pauses a partition's fetching for fetch.queue.backoff.ms (1 s by
    // default) whenever its prefetch queue is full, which stalls a pipeline that is
    // catching up in one-second steps; a short pause keeps it reading (the user's
    // properties may still say otherwise).
    config.set("fetch.queue.backoff.ms", "10");
    // A fetch with nothing to return waits up to fetch.wait.max.ms (500 ms by
    // default) at the broker, and a record arriving meanwhile may wait with it:
    // queries see rows before they are committed, so that wait is their freshness.
    config.set("fetch.wait.max.ms", "50");
    for (key, value) in &target.properties {
        config.set(key, value);
    }
    // Set after the user's properties: the guarantees depend on these.
    config
        .set("bootstrap.servers", &target.bootstrap_servers)
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "error")
        .set("enable.partition.eof", "true");
    config
        .create_with_context(SourceContext)
        .map_err(|err| kafka_error(target, &err.to_string()))
}

fn kafka_error(target: &KafkaTarget, cause: &str) -> PipelineError {
    PipelineError::Source {
        what: format!(
            "Kafka topic {} at {}",
            target.topic, target.bootstrap_servers
        ),
        cause: cause.to_string(),
    }
}

fn read_loop(
    consumer: SourceConsumer,
    topic: String,
    batch_records: usize,
    sender: mpsc::Sender<SourceEvent>,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
) {
    // How long a batch waits for more records: part of every row's freshness.
    const LINGER: Duration = Duration::from_millis(50);
    let mut at_end: BTreeMap<i32, bool> = BTreeMap::new();
    let mut announced = false;
    while !stop.load(std::sync::atomic::Ordering::SeqCst) {
        let mut records = Vec::with_capacity(batch_records.min(4096));
        let started = Instant::now();
        let all_at_end = |at_end: &BTreeMap<i32, bool>| {
            !at_end.is_empty()
                && at_end.values().all(|end| *end)
                && at_end.len() == assigned_count(&consumer)
        };
        // The clock is read every 256 records (and when nothing came): per record, it shows in profiles.
        while records.len() < batch_records
            && (records.len() % 256 != 0 || started.elapsed() < LINGER)
        {
            match consumer.poll(Duration::from_millis(20)) {
                None if started.elapsed() >= LINGER => break,
                // Every partition is at its end and nothing came: no need to linger on.
                None if all_at_end(&at_end) => break,
                None => {}
                Some(Ok(message)) => {
                    at_end.insert(message.partition(), false);
                    records.push(SourceRecord {
                        partition: message.partition(),
                        offset: message.offset(),
                        timestamp_ms: message.timestamp().to_millis(),
                        key: message.key().map(<[u8]>::to_vec),
                        payload: message.payload().map(<[u8]>::to_vec),
                    });
                }
                Some(Err(rdkafka::error::KafkaError::PartitionEOF(partition))) => {
                    at_end.insert(partition, true);
                }
                Some(Err(err)) if is_fatal(&err) => {
                    let _ = sender
                        .blocking_send(SourceEvent::Failed(format!("reading {topic}: {err}")));
                    return;
                }
                Some(Err(err)) => {
                    tracing::warn!(%err, topic, "Kafka consumer error; librdkafka retries");
                }
            }
        }
        let caught_up = records.is_empty() && all_at_end(&at_end);
        if !records.is_empty() {
            announced = false;
            if sender.blocking_send(SourceEvent::Records(records)).is_err() {
                return;
            }
        } else if caught_up && !announced {
            announced = true;
            if sender.blocking_send(SourceEvent::CaughtUp).is_err() {
                return;
            }
        }
    }
}

/// Errors after which reading cannot go on: a fatal client error, or an offset
/// that retention deleted before the pipeline read it (data would be skipped).
fn is_fatal(err: &KafkaError) -> bool {
    use rdkafka::types::RDKafkaErrorCode;
    matches!(
        err,
        KafkaError::MessageConsumptionFatal(_)
            | KafkaError::MessageConsumption(RDKafkaErrorCode::OffsetOutOfRange)
            | KafkaError::MessageConsumption(RDKafkaErrorCode::AutoOffsetReset)
    )
}

fn assigned_count(consumer: &SourceConsumer) -> usize {
    consumer.assignment().map(|a| a.count()).unwrap_or(0)
}

/// A pipeline's source that is a Kafka topic: its records, decoded.
#[derive(Debug)]
pub struct KafkaReader {
    pub source: KafkaSource,
    pub decoder: RecordDecoder,
    pub topic: String,
}

#[async_trait::async_trait]
impl SourceReader for KafkaReader {
    fn stream(&self) -> &str {
        &self.topic
    }

    async fn read(
        &mut self,
        deadline: Instant,
        stop: &mut tokio::sync::watch::Receiver<bool>,
    ) -> Result<Next> {
        let event = tokio::select! {
            event = self.source.events.recv() => event.unwrap_or_else(|| {
                SourceEvent::Failed("the source thread stopped".to_string())
            }),
            _ = tokio::time::sleep_until(deadline.into()) => return Ok(Next::Idle),
            changed = stop.changed() => return Ok(stopped(changed.is_err() || *stop.borrow())),
        };
        match event {
            SourceEvent::Records(records) => Ok(Next::Batch(decode(&self.decoder, records))),
            SourceEvent::CaughtUp => Ok(Next::CaughtUp),
            SourceEvent::Failed(cause) => Err(PipelineError::Source {
                what: format!("Kafka topic {}", self.topic),
                cause,
            }),
        }
    }

    fn carries_messages(&self) -> bool {
        true
    }
}

/// Opens a Kafka table's topic where the target's last commit left each partition.
pub async fn open(
    table: &strata_catalog::TableDef,
    startup: &StartupMode,
    options: &crate::source::SourceOptions<'_>,
    positions: &mut dyn crate::source::CommittedPositions,
) -> Result<(Box<dyn SourceReader>, Vec<i32>)> {
    let kafka = strata_catalog::connectors::kafka_target(options.project, table)?;
    let topic = kafka.topic.clone();
    let resume = resume(&kafka, options.group, startup, positions).await?;
    let partitions: Vec<i32> = resume.keys().copied().collect();
    let source = KafkaSource::start(kafka, options.group, &resume, options.batch_records)?;
    let decoder = match super::format(table) == Some(strata_catalog::KafkaFormat::DebeziumJson) {
        true => RecordDecoder::Debezium(crate::decode::debezium::DebeziumDecoder::new(
            table.schema.clone(),
        )),
        false => RecordDecoder::Json(crate::decode::json::JsonDecoder::new(table.schema.clone())),
    };
    let reader = KafkaReader {
        source,
        decoder,
        topic,
    };
    Ok((Box::new(reader), partitions))
}

/// Where each partition of a topic resumes: right after the offset the target
/// committed. Partitions never committed start where `startup` says, which is
/// recorded first (see [`crate::source::CommittedPositions::record_starts`]).
pub async fn resume(
    kafka: &KafkaTarget,
    group: &str,
    startup: &StartupMode,
    positions: &mut dyn crate::source::CommittedPositions,
) -> Result<BTreeMap<i32, i64>> {
    let topic = &kafka.topic;
    let partitions = KafkaSource::partitions(kafka)?;
    let mut resume = BTreeMap::new();
    for &partition in &partitions {
        if let Some(position) = positions.committed(topic, partition).await? {
            resume.insert(partition, position.order);
        }
    }
    let fresh: Vec<i32> = partitions
        .iter()
        .copied()
        .filter(|p| !resume.contains_key(p))
        .collect();
    if !fresh.is_empty() {
        let before = KafkaSource::positions_before_of(kafka, group, startup, &fresh)?;
        let starts = before
            .iter()
            .map(|(&partition, &before)| ((topic.clone(), partition), Position::at(before)))
            .collect();
        positions.record_starts(&starts).await?;
        resume.extend(before);
    }
    Ok(resume)
}
