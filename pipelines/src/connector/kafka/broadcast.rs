//! Broadcast dimensions: a small Kafka table (`'lookup.broadcast' = 'true'`),
//! such as alarm rules or point names in a compacted topic, read from the
//! start of its topic into memory and kept current as the topic changes. A
//! lookup never leaves the process.
//!
//! ```text
//!   topic (json upserts by primary key, or debezium-json) ──consumer──▶ latest row per key (in memory)
//!     row      ─▶ insert or replace its key          tombstone (key only) or delete ─▶ remove the key
//!   lookup ──▶ waits for the first catch-up, then reads the rows as of now
//! ```
//!
//! Nothing is checkpointed: the topic is the table, read again at each start.
//! Records that do not decode are counted and logged, and skipped (a
//! dimension has no quarantine of its own).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use arrow::datatypes::{DataType, Schema, SchemaRef};
use arrow::record_batch::RecordBatch;
use arrow::row::{OwnedRow, RowConverter, SortField};
use strata_catalog::connectors::kafka::KafkaTarget;
use strata_catalog::{KafkaFormat, StartupMode, TableDef};
use tokio::sync::watch;

use super::source::{KafkaSource, SourceEvent};
use super::upserts::Upsert;
use crate::decode::SourceRecord;
use crate::decode::debezium::DebeziumDecoder;
use crate::decode::json::JsonDecoder;
use crate::error::{PipelineError, Result};
use crate::lookup::dimension::{DimensionTable, KeyBatch, MemoryTable};

/// The rows of a broadcast table as of now.
#[derive(Debug)]
struct Rows {
    by_key: HashMap<Box<[u8]>, OwnedRow>,
    /// What encoded the rows (rows decode only with the converter that made them).
    converter: RowConverter,
    /// Bumped at every change, so readers rebuild their index only then.
    version: u64,
    failure: Option<String>,
}

/// A broadcast table, followed by a task of its own.
#[derive(Debug)]
pub struct BroadcastTable {
    name: String,
    schema: SchemaRef,
    rows: Arc<Mutex<Rows>>,
    caught_up: watch::Receiver<bool>,
    follower: tokio::task::JoinHandle<()>,
    _source: KafkaSource,
}

impl Drop for BroadcastTable {
    fn drop(&mut self) {
        self.follower.abort();
    }
}

impl BroadcastTable {
    /// Starts following the table's topic from its earliest offsets.
    pub fn start(def: &TableDef, target: KafkaTarget, pipeline: &str) -> Result<Self> {
        let schema = Arc::new(Schema::new(crate::batch::nullable_fields(&def.schema)));
        let fields = |schema: &Schema| -> Vec<SortField> {
            schema
                .fields()
                .iter()
                .map(|f| SortField::new(f.data_type().clone()))
                .collect()
        };
        let key_indices = def
            .primary_key
            .iter()
            .map(|k| schema.index_of(k))
            .collect::<std::result::Result<Vec<_>, _>>()?;
        let key_schema = Arc::new(schema.project(&key_indices)?);
        let applier = Applier {
            json: JsonDecoder::new(schema.clone()),
            key_json: JsonDecoder::new(key_schema.clone()),
            debezium: (super::format(def) == Some(KafkaFormat::DebeziumJson))
                .then(|| DebeziumDecoder::new(schema.clone())),
            key_indices,
            key_converter: RowConverter::new(fields(&key_schema))?,
        };
        let group = format!("strata-{pipeline}-broadcast");
        let resume = KafkaSource::positions_before(&target, &group, &StartupMode::EarliestOffset)?;
        let mut source = KafkaSource::start(target, &group, &resume, 10_000)?;
        // The follower reads the events; the table keeps the source, so that dropping
        // the table stops the consumer at once (before whatever owns the brokers goes).
        let (_, closed) = tokio::sync::mpsc::channel(1);
        let mut events = std::mem::replace(&mut source.events, closed);
        let rows = Arc::new(Mutex::new(Rows {
            by_key: HashMap::new(),
            converter: RowConverter::new(fields(&schema))?,
            version: 0,
            failure: None,
        }));
        let (caught_up_tx, caught_up) = watch::channel(false);
        let name = def.name.to_string();
        let (shared, table) = (rows.clone(), name.clone());
        let follower = tokio::spawn(async move {
            while let Some(event) = events.recv().await {
                match event {
                    SourceEvent::Records(records) => {
                        let mut rows = shared.lock().expect("not poisoned");
                        applier.apply(&records, &mut rows, &table);
                    }
                    SourceEvent::CaughtUp => {
                        let _ = caught_up_tx.send(true);
                    }
                    SourceEvent::Failed(cause) => {
                        shared.lock().expect("not poisoned").failure = Some(cause);
                        let _ = caught_up_tx.send(true);
                        return;
                    }
                }
            }
        });
        Ok(Self {
            name,
            schema,
            rows,
            caught_up,
            follower,
            _source: source,
        })
    }

    /// The version of the rows now, once the topic has been read to its end once.
    pub async fn version(&self) -> Result<u64> {
        let mut caught_up = self.caught_up.clone();
        caught_up
            .wait_for(|&done| done)
            .await
            .map_err(|_| self.failed("its follower stopped"))?;
        let rows = self.rows.lock().expect("not poisoned");
        match &rows.failure {
            Some(cause) => Err(self.failed(cause)),
            None => Ok(rows.version),
        }
    }

    /// Every row as of now, and its version.
    pub fn snapshot(&self) -> Result<(u64, RecordBatch)> {
        let rows = self.rows.lock().expect("not poisoned");
        let columns = rows
            .converter
            .convert_rows(rows.by_key.values().map(|row| row.row()))?;
        let options =
            arrow::record_batch::RecordBatchOptions::new().with_row_count(Some(rows.by_key.len()));
        Ok((
            rows.version,
            RecordBatch::try_new_with_options(self.schema.clone(), columns, &options)?,
        ))
    }

    fn failed(&self, cause: &str) -> PipelineError {
        PipelineError::Source {
            what: format!("the broadcast table {}", self.name),
            cause: cause.to_string(),
        }
    }
}

/// Turns records into changes of the rows.
#[derive(Debug)]
struct Applier {
    json: JsonDecoder,
    key_json: JsonDecoder,
    debezium: Option<DebeziumDecoder>,
    key_indices: Vec<usize>,
    key_converter: RowConverter,
}

impl Applier {
    fn apply(&self, records: &[SourceRecord], rows: &mut Rows, table: &str) {
        let outcome = match &self.debezium {
            Some(decoder) => {
                let decoded = decoder.decode(records);
                let removes: Vec<bool> = decoded
                    .rows
                    .iter()
                    .map(|(_, kind)| kind.is_retraction())
                    .collect();
                self.upsert(&decoded.batch, &removes, rows)
                    .map(|()| decoded.rejected.len())
            }
            None => super::upserts::upserts(&self.json, &self.key_json, records)
                .into_iter()
                .try_fold(0, |skipped, change| match change {
                    Upsert::Rows { decoded, .. } => {
                        let keep = vec![false; decoded.batch.num_rows()];
                        self.upsert(&decoded.batch, &keep, rows)?;
                        Ok(skipped + decoded.rejected.len())
                    }
                    Upsert::Tombstone { key: Some(key), .. } => {
                        self.remove_key(&key, rows)?;
                        Ok(skipped)
                    }
                    Upsert::Tombstone { key: None, .. } => Ok(skipped + 1),
                }),
        };
        match outcome {
            Ok(0) => {}
            Ok(skipped) => {
                tracing::warn!(
                    table,
                    skipped,
                    "records of a broadcast table that do not decode were skipped"
                );
            }
            Err(err) => {
                tracing::warn!(table, %err, "a batch of a broadcast table could not be applied");
            }
        }
        rows.version += 1;
    }

    /// Puts each row under its key, or removes the key where `removes` says so.
    fn upsert(&self, batch: &RecordBatch, removes: &[bool], rows: &mut Rows) -> Result<()> {
        let keys: Vec<_> = self
            .key_indices
            .iter()
            .map(|&i| batch.column(i).clone())
            .collect();
        let encoded_keys = self.key_converter.convert_columns(&keys)?;
        let encoded_rows = rows.converter.convert_columns(batch.columns())?;
        for (row, &remove) in removes.iter().enumerate().take(batch.num_rows()) {
            let key: Box<[u8]> = encoded_keys.row(row).data().into();
            if remove {
                rows.by_key.remove(&key);
            } else {
                rows.by_key.insert(key, encoded_rows.row(row).owned());
            }
        }
        Ok(())
    }

    /// A tombstone removes the key its record key names (the primary key as JSON).
    fn remove_key(&self, key: &RecordBatch, rows: &mut Rows) -> Result<()> {
        let encoded = self.key_converter.convert_columns(key.columns())?;
        rows.by_key.remove(encoded.row(0).data());
        Ok(())
    }
}

/// A broadcast Kafka table looked up in memory, followed from the first
/// lookup on, with an index rebuilt when the topic changed.
#[derive(Debug)]
pub struct BroadcastDimension {
    followed: tokio::sync::Mutex<Followed>,
}

#[derive(Debug)]
struct Followed {
    def: TableDef,
    target: KafkaTarget,
    pipeline: String,
    table: Option<BroadcastTable>,
    /// The index, and the table version it was built from.
    memory: Option<(u64, MemoryTable)>,
}

impl BroadcastDimension {
    pub fn new(def: TableDef, target: KafkaTarget, pipeline: String) -> Self {
        Self {
            followed: tokio::sync::Mutex::new(Followed {
                def,
                target,
                pipeline,
                table: None,
                memory: None,
            }),
        }
    }
}

#[async_trait::async_trait]
impl DimensionTable for BroadcastDimension {
    async fn fetch(
        &self,
        key_columns: &[String],
        key_types: &[DataType],
        keys: &KeyBatch,
    ) -> Result<RecordBatch> {
        let mut followed = self.followed.lock().await;
        followed.refresh(key_columns, key_types).await?;
        let (_, memory) = followed.memory.as_ref().expect("refreshed");
        memory.fetch(&keys.bytes)
    }

    fn in_memory(&self) -> bool {
        true
    }

    fn describe(&self) -> &'static str {
        "Kafka, broadcast in memory"
    }
}

impl Followed {
    async fn refresh(&mut self, key_columns: &[String], key_types: &[DataType]) -> Result<()> {
        if self.table.is_none() {
            // Reading the topic's partitions and offsets blocks on the network.
            let (def, target, pipeline) =
                (self.def.clone(), self.target.clone(), self.pipeline.clone());
            let started =
                tokio::task::spawn_blocking(move || BroadcastTable::start(&def, target, &pipeline))
                    .await
                    .map_err(|err| PipelineError::Source {
                        what: format!("the broadcast table {}", self.def.name),
                        cause: err.to_string(),
                    })??;
            self.table = Some(started);
        }
        let table = self.table.as_ref().expect("started");
        let version = match table.version().await {
            Ok(version) => version,
            Err(err) => {
                // Started again at the next lookup.
                self.table = None;
                return Err(err);
            }
        };
        if self.memory.as_ref().is_some_and(|(v, _)| *v == version) {
            return Ok(());
        }
        let (version, rows) = table.snapshot()?;
        self.memory = Some((version, MemoryTable::new(rows, key_columns, key_types)?));
        Ok(())
    }
}
