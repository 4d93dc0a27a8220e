//! Where a lookup join's dimension rows come from: a connector's table,
//! fetched by key ([`DimensionTable`], one per connector in
//! `crate::connector`), or the versions of a changelog fed by the pipeline
//! itself (an event-time temporal join).
//!
//! ```text
//!   batch of keys ──Dimension::Keyed(table).fetch──▶ rows of those keys (SQL `IN (…)`, or a MemoryTable index)
//!   probe rows    ──Dimension::Versioned──▶ joined as of each row's event time, not fetched
//! ```

use std::collections::HashMap;
use std::sync::Arc;

use arrow::array::{Array, UInt32Array};
use arrow::datatypes::DataType;
use arrow::record_batch::RecordBatch;
use arrow::row::{RowConverter, SortField};
use strata_catalog::connectors::KeyValue;

use super::versioned::VersionedTable;
use crate::error::{PipelineError, Result};

/// One batch of keys to fetch: each key as Arrow row bytes (for the in-memory
/// indexes) and as values to bind (for SQL).
#[derive(Debug, Default)]
pub struct KeyBatch {
    pub bytes: Vec<Box<[u8]>>,
    pub values: Vec<Vec<KeyValue>>,
}

/// A connector's table, looked up by key.
#[async_trait::async_trait]
pub trait DimensionTable: std::fmt::Debug + Send + Sync {
    /// The dimension rows (every column, in the catalog's schema) whose key
    /// columns equal one of the keys.
    async fn fetch(
        &self,
        key_columns: &[String],
        key_types: &[DataType],
        keys: &KeyBatch,
    ) -> Result<RecordBatch>;

    /// Whether the rows are in this process already (a cache would only delay updates).
    fn in_memory(&self) -> bool;

    /// Where the rows come from, as a join's description shows it.
    fn describe(&self) -> &'static str;

    /// Why keys of these types cannot be looked up, when they cannot.
    fn refuses_keys(&self, _key_types: &[DataType]) -> Option<String> {
        None
    }
}

#[derive(Debug)]
pub enum Dimension {
    /// Rows fetched by key from a connector's table.
    Keyed(Box<dyn DimensionTable>),
    /// The versions of a changelog, fed by the pipeline itself (an event-time temporal join).
    Versioned(Arc<VersionedTable>),
}

impl Dimension {
    /// Whether the rows are in this process already (a cache would only delay updates).
    pub fn in_memory(&self) -> bool {
        match self {
            Dimension::Keyed(table) => table.in_memory(),
            Dimension::Versioned(_) => true,
        }
    }

    /// Where the rows come from, as a join's description shows it.
    pub fn describe(&self) -> &'static str {
        match self {
            Dimension::Keyed(table) => table.describe(),
            Dimension::Versioned(_) => "Kafka changelog, versions in state",
        }
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
            Dimension::Keyed(table) => table.fetch(key_columns, key_types, keys).await,
            Dimension::Versioned(table) => Err(PipelineError::Evaluation(format!(
                "the versioned table {} is joined as of each row's event time, not fetched by key",
                table.name
            ))),
        }
    }
}

/// A table in memory, indexed by a lookup join's key columns.
#[derive(Debug)]
pub struct MemoryTable {
    rows: RecordBatch,
    index: HashMap<Box<[u8]>, Vec<u32>>,
}

impl MemoryTable {
    /// Indexes `rows` by `key_columns`, as `key_types`.
    pub fn new(rows: RecordBatch, key_columns: &[String], key_types: &[DataType]) -> Result<Self> {
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

    pub fn fetch(&self, keys: &[Box<[u8]>]) -> Result<RecordBatch> {
        let indices: UInt32Array = keys
            .iter()
            .filter_map(|key| self.index.get(key))
            .flatten()
            .copied()
            .collect();
        Ok(arrow::compute::take_record_batch(&self.rows, &indices)?)
    }
}
