//! Where a lookup join's dimension rows come from: a MySQL/TiDB table or an
//! embedded table, queried with `WHERE key IN (…)` for a batch of keys; or a
//! table held in memory with an index on the key: a Delta table, reloaded when
//! its version moves, or a broadcast Kafka table, current with its topic.
//!
//! ```text
//!   MySQL/TiDB  ──▶ SELECT … FROM db.t WHERE id IN (?, ?, …)           (sqlx, values bound)
//!   embedded    ──▶ SELECT … FROM "space__t" WHERE id IN (?, ?, …)      (the catalog store)
//!   Delta       ──▶ whole table ─▶ index key → rows; a new version is looked for at most once a second
//!   broadcast   ──▶ latest row per key from the topic ─▶ index key → rows, rebuilt when the topic changed
//! ```

use std::collections::HashMap;
use std::time::{Duration, Instant};

use arrow::array::{Array, UInt32Array};
use arrow::datatypes::{DataType, SchemaRef};
use arrow::record_batch::RecordBatch;
use arrow::row::{RowConverter, SortField};
use strata_catalog::TableDef;
use strata_catalog::connectors::embedded::EmbeddedTable;
use strata_catalog::connectors::kafka::KafkaTarget;
use strata_catalog::connectors::mysql::{self, MysqlTable, MysqlTarget};
use strata_catalog::connectors::{KeyValue, delta as lake};
use tokio::sync::{Mutex, OnceCell};

use super::broadcast::BroadcastTable;
use super::versioned::VersionedTable;
use crate::error::{PipelineError, Result};

/// How often a Delta dimension checks for a new version.
const DELTA_REFRESH: Duration = Duration::from_secs(1);

/// One batch of keys to fetch: each key as Arrow row bytes (for the in-memory
/// indexes) and as values to bind (for SQL).
#[derive(Debug, Default)]
pub struct KeyBatch {
    pub bytes: Vec<Box<[u8]>>,
    pub values: Vec<Vec<KeyValue>>,
}

#[derive(Debug)]
pub enum Dimension {
    Mysql {
        target: MysqlTarget,
        schema: SchemaRef,
        /// Connected at the first lookup (and again after a failed connect).
        table: OnceCell<MysqlTable>,
    },
    Embedded(EmbeddedTable),
    Delta(Mutex<DeltaDimension>),
    Broadcast(Box<Mutex<BroadcastDimension>>),
    /// The versions of a Kafka changelog, fed by the pipeline itself (an event-time temporal join).
    Versioned(std::sync::Arc<VersionedTable>),
}

impl Dimension {
    pub fn mysql(target: MysqlTarget, schema: SchemaRef) -> Self {
        Dimension::Mysql {
            target,
            schema,
            table: OnceCell::new(),
        }
    }

    pub fn delta(location: String, schema: SchemaRef) -> Self {
        Dimension::Delta(Mutex::new(DeltaDimension {
            location,
            schema,
            version: None,
            checked_at: None,
            memory: None,
        }))
    }

    /// A broadcast Kafka table, followed from the first lookup on.
    pub fn broadcast(def: TableDef, target: KafkaTarget, pipeline: String) -> Self {
        Dimension::Broadcast(Box::new(Mutex::new(BroadcastDimension {
            def,
            target,
            pipeline,
            table: None,
            memory: None,
        })))
    }

    /// Whether the rows are in this process already (a cache would only delay updates).
    pub fn in_memory(&self) -> bool {
        matches!(
            self,
            Dimension::Delta(_) | Dimension::Broadcast(_) | Dimension::Versioned(_)
        )
    }

    /// The dimension rows (every column, in the catalog's schema) whose key
    /// columns equal one of the keys.
    pub async fn fetch(
        &self,
        key_columns: &[String],
        key_types: &[DataType],
        keys: &KeyBatch,
    ) -> Result<RecordBatch> {
        match self {
            Dimension::Mysql {
                target,
                schema,
                table,
            } => {
                let table = table
                    .get_or_try_init(|| async {
                        mysql::connect(&target.url)
                            .await
                            .map(|pool| MysqlTable::new(pool, target.clone(), schema.clone()))
                    })
                    .await?;
                Ok(table.lookup(key_columns, &keys.values).await?)
            }
            Dimension::Embedded(table) => Ok(table.lookup(key_columns, &keys.values).await?),
            Dimension::Delta(delta) => {
                let mut delta = delta.lock().await;
                delta.refresh(key_columns, key_types).await?;
                delta.memory.as_ref().expect("refreshed").fetch(&keys.bytes)
            }
            Dimension::Broadcast(broadcast) => {
                let mut broadcast = broadcast.lock().await;
                broadcast.refresh(key_columns, key_types).await?;
                let (_, memory) = broadcast.memory.as_ref().expect("refreshed");
                memory.fetch(&keys.bytes)
            }
            Dimension::Versioned(table) => Err(PipelineError::Evaluation(format!(
                "the versioned table {} is joined as of each row's event time, not fetched by key",
                table.name
            ))),
        }
    }
}

/// A table in memory, indexed by a lookup join's key columns.
#[derive(Debug)]
struct MemoryTable {
    rows: RecordBatch,
    index: HashMap<Box<[u8]>, Vec<u32>>,
}

impl MemoryTable {
    /// Indexes `rows` by `key_columns`, as `key_types`.
    fn new(rows: RecordBatch, key_columns: &[String], key_types: &[DataType]) -> Result<Self> {
        let key_columns = key_columns
            .iter()
            .zip(key_types)
            .map(|(name, key_type)| {
                let column = rows.column_by_name(name).ok_or_else(|| {
                    PipelineError::Evaluation(format!("the dimension has no column {name}"))
                })?;
                Ok(arrow::compute::cast(column, key_type)?)
            })
            .collect::<Result<Vec<_>>>()?;
        let converter = RowConverter::new(
            key_columns
                .iter()
                .map(|c| SortField::new(c.data_type().clone()))
                .collect(),
        )?;
        let keys = converter.convert_columns(&key_columns)?;
        let mut index: HashMap<Box<[u8]>, Vec<u32>> = HashMap::new();
        for row in 0..rows.num_rows() {
            if key_columns.iter().any(|c| c.is_null(row)) {
                continue;
            }
            index
                .entry(keys.row(row).data().into())
                .or_default()
                .push(row as u32);
        }
        Ok(Self { rows, index })
    }

    fn fetch(&self, keys: &[Box<[u8]>]) -> Result<RecordBatch> {
        let indices: UInt32Array = keys
            .iter()
            .filter_map(|key| self.index.get(key))
            .flatten()
            .copied()
            .collect();
        Ok(arrow::compute::take_record_batch(&self.rows, &indices)?)
    }
}

/// A Delta dimension in memory.
#[derive(Debug)]
pub struct DeltaDimension {
    location: String,
    schema: SchemaRef,
    version: Option<u64>,
    checked_at: Option<Instant>,
    memory: Option<MemoryTable>,
}

impl DeltaDimension {
    /// Reloads the table when its version moved (checked at most once a second).
    async fn refresh(&mut self, key_columns: &[String], key_types: &[DataType]) -> Result<()> {
        if self.memory.is_some()
            && self
                .checked_at
                .is_some_and(|at| at.elapsed() < DELTA_REFRESH)
        {
            return Ok(());
        }
        let table = lake::open(&self.location).await?;
        self.checked_at = Some(Instant::now());
        let version = table.version();
        if self.memory.is_some() && version == self.version {
            return Ok(());
        }
        let provider = lake::provider_of(&table).await?;
        let batches = datafusion::prelude::SessionContext::new()
            .read_table(provider)
            .map_err(|err| PipelineError::Evaluation(err.to_string()))?
            .collect()
            .await
            .map_err(|err| PipelineError::Evaluation(err.to_string()))?;
        let batches = batches
            .iter()
            .map(|batch| {
                let columns = crate::batch::columns_by_name(batch, &self.schema, |name| {
                    format!(
                        "the Delta dimension at {} has no column {name}",
                        self.location
                    )
                })?;
                Ok(RecordBatch::try_new(self.schema.clone(), columns)?)
            })
            .collect::<Result<Vec<_>>>()?;
        let rows = arrow::compute::concat_batches(&self.schema, &batches)?;
        self.memory = Some(MemoryTable::new(rows, key_columns, key_types)?);
        self.version = version;
        Ok(())
    }
}

/// A broadcast Kafka table, indexed as of its latest change.
#[derive(Debug)]
pub struct BroadcastDimension {
    def: TableDef,
    target: KafkaTarget,
    pipeline: String,
    table: Option<BroadcastTable>,
    /// The index, and the table version it was built from.
    memory: Option<(u64, MemoryTable)>,
}

impl BroadcastDimension {
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
