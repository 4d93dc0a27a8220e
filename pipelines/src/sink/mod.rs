//! Sinks: where pipelines commit their rows. A pipeline's target implements
//! [`TargetSink`] (each connector's in its folder under `crate::connector`):
//! its rows, the source positions they cover and the state checkpoint's id
//! commit in one transaction, so that a restart resumes from what the target
//! holds. The quarantine and late tables beside every target live here.
//!
//! ```text
//!   commit(rows, positions, checkpoint id) ──▶ Delta: one log version with txn actions
//!                                        ──▶ MySQL/TiDB: one transaction with the progress table
//!                                        ──▶ Kafka: one producer transaction with the progress topic
//!                                        ──▶ blackhole: counted and digested
//! ```

#[cfg(test)]
pub(crate) mod contract;
pub mod digest;
pub mod late;
pub mod quarantine;

use arrow::array::{Array, BooleanArray, UInt32Array};
use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use arrow::row::{RowConverter, SortField};

use self::digest::OutputDigest;
use crate::error::Result;
use crate::position::{Position, Positions};
use crate::state::StateStore;

/// A boolean column an upserting pipeline adds to rows that delete their key.
pub const DELETE_MARKER: &str = "__strata_delete";

/// How rows reach a table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WriteMode {
    Append,
    /// By these key columns: update the row with the same key, or insert.
    Upsert(Vec<String>),
}

/// A pipeline's target.
#[async_trait::async_trait]
pub trait TargetSink: std::fmt::Debug + Send + Sync {
    /// The last position of `split` of `stream` committed with the rows, if any.
    async fn committed_position(&self, stream: &str, split: i32) -> Result<Option<Position>>;

    /// The state checkpoint id the last commit carried.
    async fn committed_state(&self) -> Result<Option<i64>>;

    /// The watermark the next commit is made at, for a target that records it
    /// for the pipelines reading it (a Delta table).
    fn carry_watermark(&mut self, _watermark: Option<i64>) {}

    /// Commits rows with the positions they cover (numbers and tokens) and the checkpoint id, in one
    /// transaction; the table's new version, when it has versions.
    async fn commit(
        &mut self,
        rows: Vec<RecordBatch>,
        positions: &Positions,
        state: Option<i64>,
    ) -> Result<Option<i64>>;

    /// The data files it holds, when it has files to compact.
    fn files(&self) -> Option<u64> {
        None
    }

    /// Compacts its small files, when it has any.
    async fn compact(&mut self) -> Result<()> {
        Ok(())
    }

    /// Where the pipeline's checkpoints live, when the target keeps them
    /// itself (a Delta table's folder); else in the quarantine's.
    fn state_store(&self, _pipeline: &str) -> Option<StateStore> {
        None
    }

    /// The table's version now, when it has versions (a Delta table).
    fn version(&self) -> Option<i64> {
        None
    }
}

/// What opening a pipeline's target needs beyond the table.
#[derive(Debug)]
pub struct TargetOptions<'a> {
    pub project: &'a strata_catalog::Project,
    pub pipeline: &'a str,
    /// Where a lake table lives.
    pub location: &'a str,
    pub mode: WriteMode,
    /// What a blackhole keeps of the rows.
    pub output: std::sync::Arc<OutputDigest>,
    /// The target's columns that carry the pipeline's event time.
    pub event_time_columns: Vec<String>,
}

/// The non-empty batches as rows of `schema` (by column name), with, per
/// batch, which rows delete their key.
pub fn changes(
    batches: Vec<RecordBatch>,
    schema: &SchemaRef,
) -> crate::error::Result<(Vec<RecordBatch>, Vec<BooleanArray>)> {
    let batches: Vec<RecordBatch> = batches.into_iter().filter(|b| b.num_rows() > 0).collect();
    let deletes = delete_markers(&batches);
    let rows = batches
        .iter()
        .map(|batch| {
            let columns = crate::batch::columns_by_name(batch, schema, |name| {
                format!("the pipeline produces no column {name}")
            })?;
            Ok(RecordBatch::try_new(schema.clone(), columns)?)
        })
        .collect::<crate::error::Result<Vec<_>>>()?;
    Ok((rows, deletes))
}

/// Per batch, which rows delete their key: the [`DELETE_MARKER`]
/// column, or none of them when a batch has no such column.
pub fn delete_markers(batches: &[RecordBatch]) -> Vec<BooleanArray> {
    batches
        .iter()
        .map(|batch| {
            batch
                .column_by_name(DELETE_MARKER)
                .and_then(|c| c.as_any().downcast_ref::<BooleanArray>().cloned())
                .unwrap_or_else(|| BooleanArray::from(vec![false; batch.num_rows()]))
        })
        .collect()
}

/// The changes of `batches` (with `deletes` marking rows that delete their key),
/// keeping only the last change of each key, in order. Errors name a key
/// column the rows lack.
pub fn last_change_per_key(
    schema: &SchemaRef,
    batches: &[RecordBatch],
    deletes: &[BooleanArray],
    keys: &[String],
) -> Result<(RecordBatch, BooleanArray), String> {
    let rows = arrow::compute::concat_batches(schema, batches).map_err(|e| e.to_string())?;
    let deletes: Vec<&dyn Array> = deletes.iter().map(|d| d as &dyn Array).collect();
    let deletes = arrow::compute::concat(&deletes).map_err(|e| e.to_string())?;
    let key_columns = keys
        .iter()
        .map(|key| {
            rows.column_by_name(key)
                .cloned()
                .ok_or_else(|| format!("the primary key column {key} is not a column"))
        })
        .collect::<Result<Vec<_>, String>>()?;
    let converter = RowConverter::new(
        key_columns
            .iter()
            .map(|c| SortField::new(c.data_type().clone()))
            .collect(),
    )
    .map_err(|e| e.to_string())?;
    let key_rows = converter
        .convert_columns(&key_columns)
        .map_err(|e| e.to_string())?;
    let mut seen = std::collections::HashSet::new();
    let mut last: Vec<u32> = (0..rows.num_rows())
        .rev()
        .filter(|&row| seen.insert(key_rows.row(row)))
        .map(|row| row as u32)
        .collect();
    last.reverse();
    let indices = UInt32Array::from(last);
    let rows = arrow::compute::take_record_batch(&rows, &indices).map_err(|e| e.to_string())?;
    let deletes = arrow::compute::take(&deletes, &indices, None).map_err(|e| e.to_string())?;
    let deletes = deletes
        .as_any()
        .downcast_ref::<BooleanArray>()
        .expect("taken booleans")
        .clone();
    Ok((rows, deletes))
}
