//! `<target>__late`: rows that arrived after their window had closed (past the
//! watermark and the allowed lateness). They are never dropped: each keeps its
//! columns as the source had them, where it came from, and the watermark it met.
//!
//! ```text
//!   row(order_time 10:00:03) arrives, watermark 10:01:30, window [10:00, 10:01) gone
//!     ──▶ <target>__late: order_id, …, order_time, _pipeline, _topic, _partition, _offset,
//!                         _watermark = 10:01:30, _arrived_at
//! ```
//!
//! Like the quarantine, it is committed before the target with the same `txn`
//! offsets, and a replay skips the rows it already holds.

use std::sync::Arc;

use arrow::array::{
    ArrayRef, Int32Array, Int64Array, StringArray, TimestampMillisecondArray, UInt32Array,
};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use arrow::record_batch::RecordBatch;

use crate::error::Result;

/// The name of a target's late-data table.
pub fn table_name(target: &str) -> String {
    format!("{target}__late")
}

/// What a target's name is followed by in the name of the late table of a
/// second stream (a window join's): `<target>__late_<table>`.
pub fn second_suffix(table: &str) -> String {
    format!("__late_{table}")
}

/// The source's columns (all nullable), then where each row came from.
pub fn schema(source: &Schema) -> SchemaRef {
    let utc = || Some("UTC".into());
    let mut fields = crate::batch::nullable_fields(source);
    fields.extend([
        Field::new("_pipeline", DataType::Utf8, false),
        Field::new("_topic", DataType::Utf8, false),
        Field::new("_partition", DataType::Int32, false),
        Field::new("_offset", DataType::Int64, false),
        Field::new(
            "_watermark",
            DataType::Timestamp(TimeUnit::Millisecond, utc()),
            true,
        ),
        Field::new(
            "_arrived_at",
            DataType::Timestamp(TimeUnit::Millisecond, utc()),
            false,
        ),
    ]);
    Arc::new(Schema::new(fields))
}

/// Where a late row came from, and what it met.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Arrival {
    pub partition: i32,
    pub offset: i64,
    pub watermark: Option<i64>,
}

/// Rows `rows` of the source batch `source`, as rows of the late table.
pub fn rows(
    schema: &SchemaRef,
    pipeline: &str,
    topic: &str,
    source: &RecordBatch,
    rows: &[usize],
    arrivals: &[Arrival],
    now_ms: i64,
) -> Result<RecordBatch> {
    let indices = UInt32Array::from_iter_values(rows.iter().map(|&r| r as u32));
    let mut columns = source
        .columns()
        .iter()
        .map(|column| arrow::compute::take(column, &indices, None))
        .collect::<std::result::Result<Vec<ArrayRef>, _>>()?;
    let n = rows.len();
    columns.push(Arc::new(StringArray::from(vec![pipeline; n])));
    columns.push(Arc::new(StringArray::from(vec![topic; n])));
    columns.push(Arc::new(Int32Array::from_iter_values(
        arrivals.iter().map(|a| a.partition),
    )));
    columns.push(Arc::new(Int64Array::from_iter_values(
        arrivals.iter().map(|a| a.offset),
    )));
    columns.push(Arc::new(
        TimestampMillisecondArray::from_iter(arrivals.iter().map(|a| a.watermark))
            .with_timezone("UTC"),
    ));
    columns.push(Arc::new(
        TimestampMillisecondArray::from(vec![now_ms; n]).with_timezone("UTC"),
    ));
    let columns = columns
        .iter()
        .zip(schema.fields())
        .map(|(column, field)| crate::batch::strict_cast(column, field.data_type()))
        .collect::<Result<Vec<_>>>()?;
    Ok(RecordBatch::try_new(schema.clone(), columns)?)
}
