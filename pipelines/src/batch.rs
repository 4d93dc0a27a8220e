//! Arrow helpers every layer of the engine shares: evaluating expressions on
//! batches, strict casts, columns by name, keys in Arrow's row format.
//!
//! ```text
//!   batch ──evaluate(expr)──▶ column        batch ──conform(target)──▶ the target's schema, strictly cast
//!   batch ──key_columns──▶ keys ──row_converter──▶ comparable, hashable rows
//! ```

use std::sync::Arc;

use arrow::datatypes::{DataType, SchemaRef};
use arrow::record_batch::RecordBatch;
use datafusion::physical_expr::PhysicalExpr;

use crate::error::{PipelineError, Result};

/// Evaluates a physical expression on a batch, as a column.
pub fn evaluate(
    expr: &Arc<dyn PhysicalExpr>,
    batch: &RecordBatch,
) -> Result<arrow::array::ArrayRef> {
    expr.evaluate(batch)
        .and_then(|value| value.into_array(batch.num_rows()))
        .map_err(|err| PipelineError::Evaluation(err.to_string()))
}

/// Evaluates a join's key expressions on a batch, each cast to the type the
/// keys are compared as.
pub fn key_columns(
    exprs: &[Arc<dyn PhysicalExpr>],
    types: &[DataType],
    batch: &RecordBatch,
) -> Result<Vec<arrow::array::ArrayRef>> {
    exprs
        .iter()
        .zip(types)
        .map(|(expr, key_type)| Ok(arrow::compute::cast(&evaluate(expr, batch)?, key_type)?))
        .collect()
}

/// A converter to Arrow's row format for batches of `schema`.
pub fn row_converter(schema: &arrow::datatypes::Schema) -> Result<arrow::row::RowConverter> {
    Ok(arrow::row::RowConverter::new(
        schema
            .fields()
            .iter()
            .map(|f| arrow::row::SortField::new(f.data_type().clone()))
            .collect(),
    )?)
}

/// `batch` with one more column at the end.
pub fn with_column(
    batch: &RecordBatch,
    field: arrow::datatypes::Field,
    column: arrow::array::ArrayRef,
) -> Result<RecordBatch> {
    let mut fields: Vec<arrow::datatypes::FieldRef> =
        batch.schema().fields().iter().cloned().collect();
    fields.push(Arc::new(field));
    let mut columns = batch.columns().to_vec();
    columns.push(column);
    Ok(RecordBatch::try_new(
        Arc::new(arrow::datatypes::Schema::new(fields)),
        columns,
    )?)
}

/// `schema`'s fields, every one nullable: for rows that may lack any value.
pub fn nullable_fields(schema: &arrow::datatypes::Schema) -> Vec<arrow::datatypes::Field> {
    schema
        .fields()
        .iter()
        .map(|f| f.as_ref().clone().with_nullable(true))
        .collect()
}

/// Casts a column, failing on values that do not fit instead of making them NULL.
pub fn strict_cast(
    column: &arrow::array::ArrayRef,
    to: &arrow::datatypes::DataType,
) -> Result<arrow::array::ArrayRef> {
    let options = arrow::compute::CastOptions {
        safe: false,
        format_options: Default::default(),
    };
    Ok(arrow::compute::cast_with_options(column, to, &options)?)
}

/// The columns of `schema`, taken from `batch` by name and cast (strictly) to
/// the schema's types; `missing` explains a column the batch lacks.
pub fn columns_by_name(
    batch: &RecordBatch,
    schema: &SchemaRef,
    missing: impl Fn(&str) -> String,
) -> Result<Vec<arrow::array::ArrayRef>> {
    schema
        .fields()
        .iter()
        .map(|field| {
            let column = batch
                .column_by_name(field.name())
                .ok_or_else(|| PipelineError::Evaluation(missing(field.name())))?;
            if column.data_type() == field.data_type() {
                Ok(column.clone())
            } else {
                strict_cast(column, field.data_type())
            }
        })
        .collect()
}

/// Casts and renames columns, by position, to the target's schema.
pub fn conform(batch: &RecordBatch, target: &SchemaRef) -> Result<RecordBatch> {
    let columns = batch
        .columns()
        .iter()
        .zip(target.fields())
        .map(|(column, field)| {
            if column.data_type() == field.data_type() {
                Ok(column.clone())
            } else {
                strict_cast(column, field.data_type())
            }
        })
        .collect::<Result<Vec<_>>>()?;
    let nulls_in_required = target
        .fields()
        .iter()
        .zip(&columns)
        .find(|(field, column)| !field.is_nullable() && column.null_count() > 0);
    if let Some((field, _)) = nulls_in_required {
        return Err(PipelineError::Evaluation(format!(
            "column {} is NOT NULL in the target, but the SELECT produced NULL for it",
            field.name()
        )));
    }
    let options =
        arrow::record_batch::RecordBatchOptions::new().with_row_count(Some(batch.num_rows()));
    Ok(RecordBatch::try_new_with_options(
        target.clone(),
        columns,
        &options,
    )?)
}

/// Key equalities of a join, `l1 = r1 AND l2 = r2`, for people.
pub fn equalities(left: &[Arc<dyn PhysicalExpr>], right: &[Arc<dyn PhysicalExpr>]) -> String {
    let pairs: Vec<String> = left
        .iter()
        .zip(right)
        .map(|(l, r)| format!("{l} = {r}"))
        .collect();
    pairs.join(" AND ")
}

/// Which rows of `batch` a condition keeps: those it is true for (not false, not NULL).
pub fn condition_mask(
    condition: &Arc<dyn PhysicalExpr>,
    batch: &RecordBatch,
) -> Result<arrow::array::BooleanArray> {
    let mask = evaluate(condition, batch)?;
    let mask = mask
        .as_any()
        .downcast_ref::<arrow::array::BooleanArray>()
        .ok_or_else(|| {
            PipelineError::Evaluation(format!("the condition {condition} is not a BOOLEAN"))
        })?;
    Ok(match arrow::array::Array::null_count(mask) {
        0 => mask.clone(),
        _ => arrow::compute::prep_null_mask_filter(mask),
    })
}
