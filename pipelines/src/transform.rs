//! A pipeline's SELECT, compiled from its DataFusion plan into steps that run
//! on each Arrow batch: projections, filters, casts, CASE, string and time
//! functions as physical expressions, and at most one aggregation, which keeps state.
//!
//! ```text
//!   SELECT … FROM src WHERE …              ──plan + optimise──▶ Projection ▸ Filter ▸ TableScan(src)
//!     compiled: [select columns, filter, project] ──cast──▶ target schema            (stateless)
//!
//!   SELECT window_start, k, SUM(x) FROM TABLE(TUMBLE(…)) WHERE … GROUP BY …
//!     compiled: assign windows ▸ pre [filter, project] ▸ aggregate (state) ▸ post [project] ──▶ target
//! ```

use std::sync::Arc;

use arrow::array::{Array, BooleanArray, UInt32Array};
use arrow::compute::filter_record_batch;
use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use datafusion::common::DFSchema;
use datafusion::execution::SessionState;
use datafusion::execution::session_state::SessionStateBuilder;
use datafusion::logical_expr::{ExprSchemable, LogicalPlan};
use datafusion::optimizer::Optimizer;
use datafusion::physical_expr::PhysicalExpr;

use crate::aggregate::accumulator::{AggFunction, AggregateCall};
use crate::aggregate::{AggregatePlan, GroupRole};
use crate::error::{PipelineError, Result};
use crate::validate::ValidPipeline;
use crate::window::{WINDOW_END, WINDOW_START, WINDOW_TIME, WindowTvf};

/// One stateless step of a compiled plan.
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

/// A batch on its way through the steps, with each row's position in the input.
#[derive(Debug)]
pub struct Traced {
    pub batch: RecordBatch,
    pub origins: Vec<usize>,
}

/// A pipeline's SELECT, ready to run on batches of its source.
#[derive(Debug)]
pub struct CompiledPlan {
    window: Option<(WindowTvf, SchemaRef)>,
    /// Steps before the aggregation (all steps when there is none).
    pre: Vec<Step>,
    pub aggregate: Option<AggregatePlan>,
    /// Steps after the aggregation.
    post: Vec<Step>,
    target: SchemaRef,
}

impl CompiledPlan {
    /// Compiles a validated pipeline.
    pub async fn compile(valid: &ValidPipeline, state: &SessionState) -> Result<Self> {
        let pipeline = &valid.pipeline;
        let statement = datafusion::sql::parser::Statement::Statement(Box::new(
            sqlparser::ast::Statement::Query(pipeline.query.clone()),
        ));
        let unsupported = |what: String| {
            PipelineError::Invalid {
            location: pipeline.target.location.clone(),
            message: format!("{what} is not supported in streaming pipelines yet"),
            hint: Some("pipelines run projections, filters, casts, CASE, scalar functions and one GROUP BY (over a window TVF or not) over one table".to_string()),
        }
        };
        refuse_wall_clock_functions(valid)?;
        // Keep COUNT(DISTINCT) a single aggregation: its state is one set per group.
        let rules = Optimizer::new()
            .rules
            .into_iter()
            .filter(|rule| rule.name() != "single_distinct_aggregation_to_group_by")
            .collect();
        let state = SessionStateBuilder::new_from_existing(state.clone())
            .with_optimizer_rules(rules)
            .build();
        let plan = state
            .statement_to_plan(statement)
            .await
            .and_then(|plan| state.optimize(&plan))
            .map_err(|err| unsupported(format!("planning failed ({err}); this query")))?;
        let window = pipeline.window.as_ref().map(|tvf| {
            let source = &valid.sources[0];
            (tvf.clone(), WindowTvf::schema(&source.schema))
        });
        let mut compiler = Compiler {
            state: &state,
            unsupported: &unsupported,
            window: pipeline.window.as_ref(),
            allowed_lateness_ms: pipeline.settings.allowed_lateness_ms,
            distinct_buckets: pipeline.settings.distinct_buckets,
            pre: None,
            aggregate: None,
        };
        let mut steps = Vec::new();
        compiler.compile(&plan, &mut steps)?;
        let (pre, post) = match compiler.pre.take() {
            Some(pre) => (pre, steps),
            None => (steps, Vec::new()),
        };
        Ok(Self {
            window,
            pre,
            aggregate: compiler.aggregate,
            post,
            target: valid.target.schema.clone(),
        })
    }

    /// Runs a stateless plan on a batch of the source, producing rows of the target's schema.
    pub fn apply(&self, batch: &RecordBatch) -> Result<RecordBatch> {
        let traced = self.prepare(batch)?;
        self.finish(traced.batch)
    }

    /// Assigns windows and runs the steps before the aggregation, keeping track of
    /// which input row each output row came from. Rows without an event time are left out.
    pub fn prepare(&self, batch: &RecordBatch) -> Result<Traced> {
        let mut traced = match &self.window {
            Some((tvf, schema)) => {
                let assigned = tvf.assign(batch, schema)?;
                Traced {
                    batch: assigned.batch,
                    origins: assigned.origins,
                }
            }
            None => Traced {
                batch: batch.clone(),
                origins: (0..batch.num_rows()).collect(),
            },
        };
        for step in &self.pre {
            traced = run_step(step, traced)?;
        }
        Ok(traced)
    }

    /// The input rows that have no event time for the window TVF.
    pub fn rows_without_time(&self, batch: &RecordBatch) -> Result<Vec<usize>> {
        match &self.window {
            Some((tvf, _)) => {
                let times = crate::window::event_times(batch, &tvf.time_column)?;
                Ok((0..batch.num_rows())
                    .filter(|&row| times.is_null(row))
                    .collect())
            }
            None => Ok(Vec::new()),
        }
    }

    /// Runs the steps after the aggregation, and casts to the target's schema.
    pub fn finish(&self, batch: RecordBatch) -> Result<RecordBatch> {
        let mut traced = Traced {
            origins: Vec::new(),
            batch,
        };
        for step in &self.post {
            traced = run_step(step, traced)?;
        }
        conform(&traced.batch, &self.target)
    }
}

fn run_step(step: &Step, traced: Traced) -> Result<Traced> {
    let Traced { batch, origins } = traced;
    Ok(match step {
        Step::Select(indices) => Traced {
            batch: batch.project(indices)?,
            origins,
        },
        Step::Filter(predicate) => {
            let mask = predicate
                .evaluate(&batch)
                .and_then(|value| value.into_array(batch.num_rows()))
                .map_err(|err| PipelineError::Evaluation(err.to_string()))?;
            let mask = mask
                .as_any()
                .downcast_ref::<BooleanArray>()
                .ok_or_else(|| {
                    PipelineError::Evaluation("a WHERE clause is not boolean".to_string())
                })?;
            let origins = if origins.is_empty() {
                origins
            } else {
                let kept = arrow::compute::filter(
                    &UInt32Array::from_iter_values(origins.iter().map(|&o| o as u32)),
                    mask,
                )?;
                kept.as_any()
                    .downcast_ref::<UInt32Array>()
                    .expect("filtered u32")
                    .values()
                    .iter()
                    .map(|&o| o as usize)
                    .collect()
            };
            Traced {
                batch: filter_record_batch(&batch, mask)?,
                origins,
            }
        }
        Step::Project { exprs, schema } => {
            let columns = exprs
                .iter()
                .map(|expr| {
                    expr.evaluate(&batch)
                        .and_then(|value| value.into_array(batch.num_rows()))
                })
                .collect::<datafusion::error::Result<Vec<_>>>()
                .map_err(|err| PipelineError::Evaluation(err.to_string()))?;
            let options = arrow::record_batch::RecordBatchOptions::new()
                .with_row_count(Some(batch.num_rows()));
            Traced {
                batch: RecordBatch::try_new_with_options(schema.clone(), columns, &options)?,
                origins,
            }
        }
    })
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

struct Compiler<'a> {
    state: &'a SessionState,
    unsupported: &'a dyn Fn(String) -> PipelineError,
    window: Option<&'a WindowTvf>,
    allowed_lateness_ms: i64,
    distinct_buckets: u32,
    /// The steps before the aggregation, once it has been found.
    pre: Option<Vec<Step>>,
    aggregate: Option<AggregatePlan>,
}

impl Compiler<'_> {
    fn physical(
        &self,
        expr: &datafusion::logical_expr::Expr,
        schema: &DFSchema,
    ) -> Result<Arc<dyn PhysicalExpr>> {
        self.state
            .create_physical_expr(expr.clone(), schema)
            .map_err(|err| (self.unsupported)(format!("the expression {expr} ({err})")))
    }

    fn compile(&mut self, plan: &LogicalPlan, steps: &mut Vec<Step>) -> Result<()> {
        match plan {
            LogicalPlan::TableScan(scan) => {
                if !scan.filters.is_empty() {
                    return Err((self.unsupported)(
                        "a filter pushed into the scan".to_string(),
                    ));
                }
                if let Some(indices) = &scan.projection {
                    steps.push(Step::Select(indices.clone()));
                }
                Ok(())
            }
            LogicalPlan::SubqueryAlias(alias) => self.compile(&alias.input, steps),
            LogicalPlan::Filter(filter) => {
                self.compile(&filter.input, steps)?;
                steps.push(Step::Filter(
                    self.physical(&filter.predicate, filter.input.schema())?,
                ));
                Ok(())
            }
            LogicalPlan::Projection(projection) => {
                self.compile(&projection.input, steps)?;
                let exprs = projection
                    .expr
                    .iter()
                    .map(|expr| self.physical(expr, projection.input.schema()))
                    .collect::<Result<Vec<_>>>()?;
                steps.push(Step::Project {
                    exprs,
                    schema: Arc::new(projection.schema.as_arrow().clone()),
                });
                Ok(())
            }
            LogicalPlan::Aggregate(aggregate) if self.aggregate.is_none() => {
                self.compile(&aggregate.input, steps)?;
                self.pre = Some(std::mem::take(steps));
                self.aggregate = Some(self.compile_aggregate(aggregate)?);
                Ok(())
            }
            other => Err((self.unsupported)(format!(
                "{} (in this query)",
                other.display()
            ))),
        }
    }

    fn compile_aggregate(
        &self,
        aggregate: &datafusion::logical_expr::Aggregate,
    ) -> Result<AggregatePlan> {
        use datafusion::logical_expr::Expr;
        let input = aggregate.input.schema();
        let mut keys = 0;
        let mut groups = Vec::new();
        for expr in &aggregate.group_expr {
            let role = match expr {
                Expr::Column(column) if self.window.is_some() && column.name == WINDOW_START => {
                    GroupRole::WindowStart
                }
                Expr::Column(column) if self.window.is_some() && column.name == WINDOW_END => {
                    GroupRole::WindowEnd
                }
                Expr::Column(column) if self.window.is_some() && column.name == WINDOW_TIME => {
                    GroupRole::WindowTime
                }
                Expr::GroupingSet(_) => {
                    return Err((self.unsupported)(
                        "GROUPING SETS, CUBE and ROLLUP".to_string(),
                    ));
                }
                _ => {
                    keys += 1;
                    GroupRole::Key(keys - 1)
                }
            };
            let data_type = expr
                .get_type(input)
                .map_err(|err| (self.unsupported)(format!("grouping by {expr} ({err})")))?;
            groups.push((self.physical(expr, input)?, role, data_type));
        }
        let group_count = aggregate.group_expr.len();
        let mut calls = Vec::new();
        for (index, expr) in aggregate.aggr_expr.iter().enumerate() {
            let inner = match expr {
                Expr::Alias(alias) => alias.expr.as_ref(),
                other => other,
            };
            let Expr::AggregateFunction(function) = inner else {
                return Err((self.unsupported)(format!("the aggregate {expr}")));
            };
            let params = &function.params;
            let name = function.func.name().to_ascii_lowercase();
            let kind = AggFunction::from_name(&name, params.distinct).ok_or_else(|| {
                (self.unsupported)(format!(
                    "the aggregate {}{} (streaming aggregates are COUNT, SUM, MIN, MAX, AVG, COUNT(DISTINCT) and APPROX_DISTINCT)",
                    name.to_uppercase(),
                    if params.distinct { " DISTINCT" } else { "" }
                ))
            })?;
            let [arg] = params.args.as_slice() else {
                return Err((self.unsupported)(format!(
                    "{expr} with {} arguments",
                    params.args.len()
                )));
            };
            let input_type = arg
                .get_type(input)
                .map_err(|err| (self.unsupported)(format!("{expr} ({err})")))?;
            let filter = params
                .filter
                .as_ref()
                .map(|filter| self.physical(filter, input))
                .transpose()?;
            let output = aggregate
                .schema
                .field(group_count + index)
                .data_type()
                .clone();
            let call = AggregateCall::new(
                kind,
                self.physical(arg, input)?,
                filter,
                input_type.clone(),
                output,
                self.distinct_buckets,
            )
            .ok_or_else(|| (self.unsupported)(format!("{expr} over {input_type}")))?;
            calls.push(call);
        }
        AggregatePlan::new(
            self.window.map(|tvf| tvf.kind),
            self.allowed_lateness_ms,
            groups,
            calls,
            Arc::new(aggregate.schema.as_arrow().clone()),
        )
    }
}
