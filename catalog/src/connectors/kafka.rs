//! Kafka topics: bounded reads, decoding into Arrow, and schema sampling.
//!
//! A catalog query reads a topic as a bounded table: for every partition, from
//! its low watermark to the high watermark seen when the scan starts.
//!
//! ```text
//!   partition 0: [low ........ high)   ─┐
//!   partition 1: [low .... high)        ├─▶ decode (json | debezium-json | raw) ─▶ RecordBatch
//!   partition 2: (empty: low == high)  ─┘
//! ```
//!
//! A record that does not fit the schema fails the query with its topic,
//! partition and offset; pipelines quarantine such records instead.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow::array::{ArrayRef, BinaryArray, StringArray};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use arrow::record_batch::RecordBatch;
use arrow_json::ReaderBuilder;
use async_trait::async_trait;
use datafusion::catalog::{Session, TableProvider};
use datafusion::common::DataFusionError;
use datafusion::datasource::memory::MemorySourceConfig;
use datafusion::logical_expr::{Expr, TableType};
use datafusion::physical_plan::ExecutionPlan;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{ClientConfig, Message, Offset, TopicPartitionList};
use serde_json::Value;

use crate::error::{CatalogError, Result};
use crate::model::{KafkaFormat, TableName};

const METADATA_TIMEOUT: Duration = Duration::from_secs(10);
const READ_TIMEOUT: Duration = Duration::from_secs(60);

/// Where a topic lives, with the client properties resolved.
#[derive(Debug, Clone)]
pub struct KafkaTarget {
    pub bootstrap_servers: String,
    pub properties: BTreeMap<String, String>,
    pub topic: String,
}

impl KafkaTarget {
    fn consumer(&self) -> Result<BaseConsumer> {
        let mut config = ClientConfig::new();
        config
            .set("bootstrap.servers", &self.bootstrap_servers)
            .set("group.id", "strata-catalog")
            .set("enable.auto.commit", "false")
            .set("enable.partition.eof", "false");
        for (key, value) in &self.properties {
            config.set(key, value);
        }
        config.create().map_err(|source| CatalogError::Kafka {
            context: format!("creating a consumer for {}", self.bootstrap_servers),
            source,
        })
    }

    fn unreachable(&self, cause: String) -> CatalogError {
        CatalogError::Unreachable {
            service: "Kafka",
            address: self.bootstrap_servers.clone(),
            cause,
            hint: "check 'properties.bootstrap.servers' (or the connection in strata.toml) and that the brokers run"
                .to_string(),
        }
    }
}

/// One consumed record.
#[derive(Debug, Clone)]
pub struct KafkaRecord {
    pub partition: i32,
    pub offset: i64,
    pub payload: Option<Vec<u8>>,
}

/// The topics a cluster holds, without Kafka's internal ones.
pub fn list_topics(
    bootstrap_servers: &str,
    properties: &BTreeMap<String, String>,
) -> Result<Vec<(String, usize)>> {
    let target = KafkaTarget {
        bootstrap_servers: bootstrap_servers.to_string(),
        properties: properties.clone(),
        topic: String::new(),
    };
    let consumer = target.consumer()?;
    let metadata = consumer
        .fetch_metadata(None, METADATA_TIMEOUT)
        .map_err(|err| target.unreachable(err.to_string()))?;
    let mut topics: Vec<(String, usize)> = metadata
        .topics()
        .iter()
        .filter(|topic| !topic.name().starts_with("__"))
        .map(|topic| (topic.name().to_string(), topic.partitions().len()))
        .collect();
    topics.sort();
    Ok(topics)
}

/// Reads records from a topic. `tail` limits each partition to its newest `tail` records.
pub fn read_bounded(target: &KafkaTarget, tail: Option<i64>) -> Result<Vec<KafkaRecord>> {
    let consumer = target.consumer()?;
    let metadata = consumer
        .fetch_metadata(Some(&target.topic), METADATA_TIMEOUT)
        .map_err(|err| target.unreachable(err.to_string()))?;
    let topic = metadata
        .topics()
        .iter()
        .find(|t| t.name() == target.topic)
        .filter(|t| t.error().is_none() && !t.partitions().is_empty())
        .ok_or_else(|| CatalogError::Discovery {
            message: format!(
                "Kafka at {} has no topic {:?}",
                target.bootstrap_servers, target.topic
            ),
            hint: Some("create the topic, or correct 'topic' in the table's DDL".to_string()),
        })?;
    let mut assignment = TopicPartitionList::new();
    let mut remaining: HashMap<i32, i64> = HashMap::new();
    for partition in topic.partitions() {
        let (low, high) = consumer
            .fetch_watermarks(&target.topic, partition.id(), METADATA_TIMEOUT)
            .map_err(|err| target.unreachable(err.to_string()))?;
        let start = match tail {
            Some(tail) => (high - tail).max(low),
            None => low,
        };
        if start < high {
            assignment
                .add_partition_offset(&target.topic, partition.id(), Offset::Offset(start))
                .map_err(|source| CatalogError::Kafka {
                    context: format!("assigning {}/{}", target.topic, partition.id()),
                    source,
                })?;
            remaining.insert(partition.id(), high);
        }
    }
    if remaining.is_empty() {
        return Ok(Vec::new());
    }
    consumer
        .assign(&assignment)
        .map_err(|source| CatalogError::Kafka {
            context: format!("assigning the partitions of {}", target.topic),
            source,
        })?;
    let deadline = Instant::now() + READ_TIMEOUT;
    let mut records = Vec::new();
    while !remaining.is_empty() {
        if Instant::now() > deadline {
            let mut partitions: Vec<_> = remaining.keys().collect();
            partitions.sort();
            return Err(target.unreachable(format!(
                "timed out reading partitions {partitions:?} of {} to their end",
                target.topic
            )));
        }
        let Some(message) = consumer.poll(Duration::from_millis(200)) else {
            // Transaction markers take offsets but are never delivered: go by position.
            if let Ok(positions) = consumer.position() {
                for element in positions.elements() {
                    if let (Offset::Offset(position), Some(&high)) =
                        (element.offset(), remaining.get(&element.partition()))
                        && position >= high
                    {
                        remaining.remove(&element.partition());
                    }
                }
            }
            continue;
        };
        let message = message.map_err(|source| CatalogError::Kafka {
            context: format!("reading {}", target.topic),
            source,
        })?;
        let Some(&high) = remaining.get(&message.partition()) else {
            continue;
        };
        if message.offset() < high {
            records.push(KafkaRecord {
                partition: message.partition(),
                offset: message.offset(),
                payload: message.payload().map(<[u8]>::to_vec),
            });
        }
        if message.offset() + 1 >= high {
            remaining.remove(&message.partition());
        }
    }
    records.sort_by_key(|r| (r.partition, r.offset));
    Ok(records)
}

/// Decodes records of `format` into a batch of `schema`.
pub fn decode(
    table: &TableName,
    topic: &str,
    format: KafkaFormat,
    schema: &SchemaRef,
    primary_key: &[String],
    records: &[KafkaRecord],
) -> Result<RecordBatch> {
    match format {
        KafkaFormat::Raw => decode_raw(table, schema, records),
        KafkaFormat::Json => {
            let payloads: Vec<(&KafkaRecord, &[u8])> = records
                .iter()
                .filter_map(|r| r.payload.as_deref().map(|p| (r, p)))
                .collect();
            decode_json(table, topic, schema, &payloads)
        }
        KafkaFormat::DebeziumJson => {
            let rows = materialize_changelog(table, topic, primary_key, records)?;
            let mut decoder = ReaderBuilder::new(schema.clone()).build_decoder()?;
            decoder.serialize(&rows)?;
            Ok(decoder
                .flush()?
                .unwrap_or_else(|| RecordBatch::new_empty(schema.clone())))
        }
    }
}

fn decode_json(
    table: &TableName,
    topic: &str,
    schema: &SchemaRef,
    payloads: &[(&KafkaRecord, &[u8])],
) -> Result<RecordBatch> {
    for (record, payload) in payloads {
        if let Err(refusal) = super::json_check::check_record(schema, payload) {
            let message = refusal.to_string();
            return Err(CatalogError::Decode {
                table: table.to_string(),
                topic: topic.to_string(),
                partition: record.partition,
                offset: record.offset,
                message,
            });
        }
    }
    let batch_size = payloads.len().max(1);
    let fast = || -> std::result::Result<Option<RecordBatch>, arrow::error::ArrowError> {
        let mut decoder = ReaderBuilder::new(schema.clone())
            .with_batch_size(batch_size)
            .build_decoder()?;
        for (_, payload) in payloads {
            decoder.decode(payload)?;
        }
        decoder.flush()
    };
    match fast() {
        Ok(batch) => Ok(batch.unwrap_or_else(|| RecordBatch::new_empty(schema.clone()))),
        Err(_) => {
            // Decode one record at a time to name the one that does not fit.
            for (record, payload) in payloads {
                let mut decoder = ReaderBuilder::new(schema.clone()).build_decoder()?;
                let single = decoder
                    .decode(payload)
                    .and_then(|_| decoder.flush().map(|_| ()));
                if let Err(err) = single {
                    return Err(CatalogError::Decode {
                        table: table.to_string(),
                        topic: topic.to_string(),
                        partition: record.partition,
                        offset: record.offset,
                        message: err.to_string(),
                    });
                }
            }
            Err(CatalogError::Decode {
                table: table.to_string(),
                topic: topic.to_string(),
                partition: -1,
                offset: -1,
                message: "records decode alone but not together".to_string(),
            })
        }
    }
}

fn decode_raw(
    table: &TableName,
    schema: &SchemaRef,
    records: &[KafkaRecord],
) -> Result<RecordBatch> {
    let field = match schema.fields().as_ref() {
        [field] => field,
        _ => {
            return Err(CatalogError::Discovery {
                message: format!("table {table} has format 'raw' but more than one column"),
                hint: Some("a raw table has exactly one STRING or BYTES column".to_string()),
            });
        }
    };
    let column: ArrayRef = match field.data_type() {
        DataType::Binary => Arc::new(BinaryArray::from_iter(
            records.iter().map(|r| r.payload.as_deref()),
        )),
        DataType::Utf8 => Arc::new(StringArray::from_iter(records.iter().map(|r| {
            r.payload
                .as_deref()
                .map(|bytes| String::from_utf8_lossy(bytes).into_owned())
        }))),
        other => {
            return Err(CatalogError::Discovery {
                message: format!("table {table} has format 'raw' and a column of type {other}"),
                hint: Some("a raw table has exactly one STRING or BYTES column".to_string()),
            });
        }
    };
    Ok(RecordBatch::try_new(schema.clone(), vec![column])?)
}

/// Applies a Debezium changelog in offset order per key: the table as of its end.
/// Without a primary key, every insert and update image is a row.
fn materialize_changelog(
    table: &TableName,
    topic: &str,
    primary_key: &[String],
    records: &[KafkaRecord],
) -> Result<Vec<Value>> {
    let mut keyed: BTreeMap<String, Value> = BTreeMap::new();
    let mut appended = Vec::new();
    let mut ordered: Vec<&KafkaRecord> = records.iter().collect();
    ordered.sort_by_key(|r| (r.partition, r.offset));
    for record in ordered {
        let Some(payload) = &record.payload else {
            continue; // A tombstone follows a delete that was already applied.
        };
        let bad = |message: String| CatalogError::Decode {
            table: table.to_string(),
            topic: topic.to_string(),
            partition: record.partition,
            offset: record.offset,
            message,
        };
        let envelope: Value =
            serde_json::from_slice(payload).map_err(|err| bad(format!("not JSON: {err}")))?;
        let envelope = envelope.get("payload").cloned().unwrap_or(envelope);
        let op = envelope
            .get("op")
            .and_then(Value::as_str)
            .ok_or_else(|| bad("no \"op\" field; is this a Debezium record?".to_string()))?;
        let image = match op {
            "c" | "r" | "u" => envelope.get("after"),
            "d" => envelope.get("before"),
            other => return Err(bad(format!("unknown Debezium op {other:?}"))),
        }
        .filter(|v| v.is_object())
        .cloned()
        .ok_or_else(|| bad(format!("op {op:?} without its row image")))?;
        if primary_key.is_empty() {
            if op != "d" {
                appended.push(image);
            }
            continue;
        }
        let key = serde_json::to_string(
            &primary_key
                .iter()
                .map(|k| image.get(k).cloned().unwrap_or(Value::Null))
                .collect::<Vec<_>>(),
        )
        .expect("JSON values serialise");
        if op == "d" {
            keyed.remove(&key);
        } else {
            keyed.insert(key, image);
        }
    }
    Ok(if primary_key.is_empty() {
        appended
    } else {
        keyed.into_values().collect()
    })
}

/// Infers a schema from sampled JSON records. Columns seen only as null become STRING.
pub fn infer_schema(records: &[KafkaRecord]) -> (Option<Schema>, usize) {
    let mut undecodable = 0;
    let values: Vec<Value> = records
        .iter()
        .filter_map(|r| r.payload.as_deref())
        .filter_map(|payload| match serde_json::from_slice::<Value>(payload) {
            Ok(value) if value.is_object() => Some(value),
            _ => {
                undecodable += 1;
                None
            }
        })
        .collect();
    if values.is_empty() {
        return (None, undecodable);
    }
    let schema = arrow_json::reader::infer_json_schema_from_iterator(values.iter().map(Ok))
        .ok()
        .map(|schema| {
            let fields: Vec<Field> = schema
                .fields()
                .iter()
                .map(|f| match f.data_type() {
                    DataType::Null => Field::new(f.name(), DataType::Utf8, true),
                    DataType::Utf8 => match timestamp_type(&values, f.name()) {
                        Some(data_type) => Field::new(f.name(), data_type, true),
                        None => f.as_ref().clone(),
                    },
                    _ => f.as_ref().clone(),
                })
                .collect();
            Schema::new(fields)
        });
    (schema, undecodable)
}

/// TIMESTAMP(3) when every sampled value of a text field is an ISO-8601 time
/// (`2024-05-01T10:00:00`, or with a space, a fraction); TIMESTAMP_LTZ(3) when
/// each also carries its offset (`Z`, `+08:00`).
fn timestamp_type(values: &[Value], field: &str) -> Option<DataType> {
    let texts: Vec<&str> = values
        .iter()
        .filter_map(|value| value.get(field).and_then(Value::as_str))
        .collect();
    if texts.is_empty() {
        return None;
    }
    let naive = |text: &str| {
        ["%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%d %H:%M:%S%.f"]
            .iter()
            .any(|format| chrono::NaiveDateTime::parse_from_str(text, format).is_ok())
    };
    let zoned = |text: &str| chrono::DateTime::parse_from_rfc3339(text).is_ok();
    let millis = arrow::datatypes::TimeUnit::Millisecond;
    if texts.iter().all(|text| naive(text)) {
        Some(DataType::Timestamp(millis, None))
    } else if texts.iter().all(|text| zoned(text)) {
        Some(DataType::Timestamp(millis, Some("UTC".into())))
    } else {
        None
    }
}

/// A topic as a bounded DataFusion table.
#[derive(Debug)]
pub struct KafkaTable {
    pub name: TableName,
    pub target: KafkaTarget,
    pub format: KafkaFormat,
    pub schema: SchemaRef,
    pub primary_key: Vec<String>,
}

#[async_trait]
impl TableProvider for KafkaTable {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    async fn scan(
        &self,
        _state: &dyn Session,
        projection: Option<&Vec<usize>>,
        _filters: &[Expr],
        _limit: Option<usize>,
    ) -> datafusion::error::Result<Arc<dyn ExecutionPlan>> {
        let target = self.target.clone();
        let records = tokio::task::spawn_blocking(move || read_bounded(&target, None))
            .await
            .map_err(|err| DataFusionError::External(Box::new(err)))?
            .map_err(|err| DataFusionError::External(Box::new(err)))?;
        let batch = decode(
            &self.name,
            &self.target.topic,
            self.format,
            &self.schema,
            &self.primary_key,
            &records,
        )
        .map_err(|err| DataFusionError::External(Box::new(err)))?;
        Ok(MemorySourceConfig::try_new_exec(
            &[vec![batch]],
            self.schema.clone(),
            projection.cloned(),
        )?)
    }

    /// `INSERT INTO` a JSON topic: each row one record ([`super::kafka_sink`]).
    async fn insert_into(
        &self,
        _state: &dyn Session,
        input: Arc<dyn ExecutionPlan>,
        insert_op: datafusion::logical_expr::dml::InsertOp,
    ) -> datafusion::error::Result<Arc<dyn ExecutionPlan>> {
        super::append_through(
            input,
            insert_op,
            "a Kafka table: a topic is appended to; use INSERT INTO",
            || {
                if self.format != KafkaFormat::Json {
                    return Err(DataFusionError::NotImplemented(format!(
                        "INSERT INTO {}, a '{}' topic: Strata produces JSON records; use your own producer for other formats",
                        self.name,
                        self.format.as_str()
                    )));
                }
                Ok(Arc::new(super::kafka_sink::KafkaSink {
                    target: self.target.clone(),
                    schema: self.schema.clone(),
                }))
            },
        )
    }
}
