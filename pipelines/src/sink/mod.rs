//! Sinks: where pipelines commit their rows.

pub mod blackhole;
pub mod delta;
pub mod kafka;
pub mod late;
pub mod mysql;
pub mod quarantine;

use arrow::array::{Array, BooleanArray, UInt32Array};
use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use arrow::row::{RowConverter, SortField};

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

/// Per batch, which rows delete their key: the [`delta::DELETE_MARKER`]
/// column, or none of them when a batch has no such column.
pub fn delete_markers(batches: &[RecordBatch]) -> Vec<BooleanArray> {
    batches
        .iter()
        .map(|batch| {
            batch
                .column_by_name(delta::DELETE_MARKER)
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
