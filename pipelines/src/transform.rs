//! Stateless SQL on each batch: projections, filters, casts, CASE, string and
//! time functions, compiled once from the pipeline's DataFusion plan into
//! physical expressions and evaluated batch by batch.
//!
//! ```text
//!   SELECT … FROM src WHERE …  ──plan + optimise──▶ Projection ▸ Filter ▸ TableScan(src)
//!                               ──compile──▶ [select columns, filter, project] ──cast──▶ target schema
//! ```

use std::sync::Arc;

use arrow::array::{Array, BooleanArray};
use arrow::compute::filter_record_batch;
use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use datafusion::common::DFSchema;
use datafusion::execution::SessionState;
use datafusion::logical_expr::LogicalPlan;
use datafusion::physical_expr::PhysicalExpr;

use crate::error::{PipelineError, Result};
use crate::validate::ValidPipeline;

/// One step of a compiled plan.
#[derive(Debug)]
enum Step {
    /// Keep these columns, in this order.
    Select(Vec<usize>),
    Filter(Arc<dyn PhysicalExpr>),
    Project {
        exprs: Vec<Arc<dyn PhysicalExpr>>,
        schema: SchemaRef,
    },
}

/// A pipeline's SELECT, ready to run on batches of its source.
#[derive(Debug)]
pub struct StatelessPlan {
    steps: Vec<Step>,
    target: SchemaRef,
}

impl StatelessPlan {
    /// Compiles a validated pipeline whose plan is stateless.
    pub async fn compile(valid: &ValidPipeline, state: &SessionState) -> Result<Self> {
        let pipeline = &valid.pipeline;
        let statement = datafusion::sql::parser::Statement::Statement(Box::new(
            sqlparser::ast::Statement::Query(pipeline.query.clone()),
        ));
        let unsupported = |what: String| {
            PipelineError::Invalid {
            location: pipeline.target.location.clone(),
            message: format!("{what} is not supported in streaming pipelines yet"),
            hint: Some("this version runs projections, filters, casts, CASE and scalar functions over one Kafka table".to_string()),
        }
        };
        refuse_wall_clock_functions(valid)?;
        let plan = state
            .statement_to_plan(statement)
            .await
            .and_then(|plan| state.optimize(&plan))
            .map_err(|err| unsupported(format!("planning failed ({err}); this query")))?;
        let mut steps = Vec::new();
        compile(&plan, state, &mut steps, &unsupported)?;
        Ok(Self {
            steps,
            target: valid.target.schema.clone(),
        })
    }

    /// Runs the plan on a batch of the source, producing rows of the target's schema.
    pub fn apply(&self, batch: &RecordBatch) -> Result<RecordBatch> {
        let mut current = batch.clone();
        for step in &self.steps {
            current = match step {
                Step::Select(indices) => current.project(indices)?,
                Step::Filter(predicate) => {
                    let mask = predicate
                        .evaluate(&current)
                        .and_then(|value| value.into_array(current.num_rows()))
                        .map_err(|err| PipelineError::Evaluation(err.to_string()))?;
                    let mask = mask
                        .as_any()
                        .downcast_ref::<BooleanArray>()
                        .ok_or_else(|| {
                            PipelineError::Evaluation("a WHERE clause is not boolean".to_string())
                        })?;
                    filter_record_batch(&current, mask)?
                }
                Step::Project { exprs, schema } => {
                    let columns = exprs
                        .iter()
                        .map(|expr| {
                            expr.evaluate(&current)
                                .and_then(|value| value.into_array(current.num_rows()))
                        })
                        .collect::<datafusion::error::Result<Vec<_>>>()
                        .map_err(|err| PipelineError::Evaluation(err.to_string()))?;
                    let options = arrow::record_batch::RecordBatchOptions::new()
                        .with_row_count(Some(current.num_rows()));
                    RecordBatch::try_new_with_options(schema.clone(), columns, &options)?
                }
            };
        }
        conform(&current, &self.target)
    }
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

/// Planning folds `NOW()` and friends into one constant, so every row would
/// get the moment the pipeline started: refuse them with a hint.
fn refuse_wall_clock_functions(valid: &ValidPipeline) -> Result<()> {
    use sqlparser::ast::{Expr, Spanned, visit_expressions};
    const WALL_CLOCK: [&str; 6] = [
        "now",
        "current_timestamp",
        "current_date",
        "current_time",
        "localtimestamp",
        "localtime",
    ];
    let mut found = None;
    let _ = visit_expressions(&valid.pipeline.query, |expr| {
        if let Expr::Function(function) = expr {
            let name = function.name.to_string().to_ascii_lowercase();
            if WALL_CLOCK.contains(&name.as_str()) {
                found = Some((name, function.span().start));
                return std::ops::ControlFlow::Break(());
            }
        }
        std::ops::ControlFlow::Continue(())
    });
    match found {
        None => Ok(()),
        Some((name, start)) => Err(PipelineError::Invalid {
            location: valid.pipeline.location(start.line, start.column),
            message: format!("{}() would be evaluated once, when the pipeline starts", name.to_uppercase()),
            hint: Some("for processing time, declare `proc_time AS PROCTIME()` on the source table and select that column".to_string()),
        }),
    }
}

fn compile(
    plan: &LogicalPlan,
    state: &SessionState,
    steps: &mut Vec<Step>,
    unsupported: &dyn Fn(String) -> PipelineError,
) -> Result<()> {
    let physical = |expr: &datafusion::logical_expr::Expr, schema: &DFSchema| {
        state
            .create_physical_expr(expr.clone(), schema)
            .map_err(|err| unsupported(format!("the expression {expr} ({err})")))
    };
    match plan {
        LogicalPlan::TableScan(scan) => {
            if !scan.filters.is_empty() {
                return Err(unsupported("a filter pushed into the scan".to_string()));
            }
            if let Some(indices) = &scan.projection {
                steps.push(Step::Select(indices.clone()));
            }
            Ok(())
        }
        LogicalPlan::SubqueryAlias(alias) => compile(&alias.input, state, steps, unsupported),
        LogicalPlan::Filter(filter) => {
            compile(&filter.input, state, steps, unsupported)?;
            steps.push(Step::Filter(physical(
                &filter.predicate,
                filter.input.schema(),
            )?));
            Ok(())
        }
        LogicalPlan::Projection(projection) => {
            compile(&projection.input, state, steps, unsupported)?;
            let exprs = projection
                .expr
                .iter()
                .map(|expr| physical(expr, projection.input.schema()))
                .collect::<Result<Vec<_>>>()?;
            steps.push(Step::Project {
                exprs,
                schema: Arc::new(projection.schema.as_arrow().clone()),
            });
            Ok(())
        }
        other => Err(unsupported(format!("{} (in this query)", other.display()))),
    }
}
