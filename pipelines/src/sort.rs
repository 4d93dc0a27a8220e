//! `ORDER BY` on a stream, where Flink accepts it: by the stream's event time
//! ascending first (then any columns), or by its processing time. Rows wait
//! until the watermark has passed their time, and come out in that order.
//!
//! ```text
//!   row (t) ──▶ held, unless t is not after the last row emitted (late, as Flink's sort drops it)
//!   watermark W ──▶ held rows with t ≤ W, sorted by t, then the other ORDER BY keys ──▶ next
//!   ORDER BY PROCTIME() first: a batch's rows are read at one instant ──▶ sorted by the other keys, at once
//!   ORDER BY another column first, DESC, or with LIMIT ──▶ refused, with Flink's reason
//! ```

use std::sync::{Arc, Mutex};

use arrow::compute::{SortColumn, SortOptions, lexsort_to_indices};
use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use datafusion::logical_expr::{Expr, LogicalPlan};
use datafusion::physical_expr::PhysicalExpr;

use crate::error::Result;
use crate::held::HeldRows;
use crate::operator::planner::{OperatorPlanner, PlanContext};
use crate::operator::{
    BatchContext, Changelog, Described, Emitted, InputStream, KeepsState, Operator, OperatorKind,
    Processed, StateInfo, Traced, Watermarks,
};
use crate::state::{ByteReader, ByteWriter};

/// Rows held until the watermark, then emitted in time order.
#[derive(Debug)]
pub struct TemporalSort {
    /// The ORDER BY keys after the time, with their directions.
    then_by: Vec<(Arc<dyn PhysicalExpr>, SortOptions)>,
    schema: SchemaRef,
    held: Mutex<HeldRows>,
}

impl TemporalSort {
    fn held(&self) -> std::sync::MutexGuard<'_, HeldRows> {
        self.held.lock().expect("not poisoned")
    }

    /// The held rows the watermark `w` passed, in ORDER BY order.
    fn emit(&self, w: i64) -> Result<Vec<RecordBatch>> {
        let mut held = self.held();
        let Some(due) = held.due(w)? else {
            return Ok(Vec::new());
        };
        if due.num_rows() == 0 {
            return Ok(Vec::new());
        }
        let mut keys = vec![SortColumn {
            values: Arc::new(crate::window::event_times(&due, held.time_column())?),
            options: Some(SortOptions::default()),
        }];
        for (expr, options) in &self.then_by {
            keys.push(SortColumn {
                values: crate::batch::evaluate(expr, &due)?,
                options: Some(*options),
            });
        }
        // Ties keep their arrival order (Arrow's sort is not stable).
        keys.push(SortColumn {
            values: Arc::new(arrow::array::UInt32Array::from_iter_values(
                0..due.num_rows() as u32,
            )),
            options: Some(SortOptions::default()),
        });
        let order = lexsort_to_indices(&keys, None)?;
        Ok(vec![arrow::compute::take_record_batch(&due, &order)?])
    }
}

#[async_trait::async_trait]
impl Operator for TemporalSort {
    fn kind(&self) -> OperatorKind {
        OperatorKind::Sort
    }

    async fn process(self: Arc<Self>, input: Traced, _ctx: &BatchContext<'_>) -> Result<Processed> {
        let output = self.schema.clone();
        Ok(Processed::held(
            output,
            input,
            "its event time was NULL, or not after the last row the sort emitted",
            move |rows| {
                let mut held = self.held();
                // Flink's sort takes a row later than the last one it emitted.
                let last = held.last_due();
                held.take_in(&rows.batch, |_, time| last.is_some_and(|t| time <= t))
            },
        ))
    }

    fn describe(&self, input: &InputStream) -> Described {
        Described {
            detail: format!(
                "ORDER BY {}{}, emitted in that order once the watermark passes each row",
                self.held().time_column(),
                then_keys(&self.then_by)
            ),
            schema: self.schema.clone(),
            watermark: input.watermark.clone(),
            state: Some(StateInfo {
                holds: "rows the watermark has not passed yet".to_string(),
                fingerprint: format!("rows {}", crate::state::schema_fingerprint(&self.schema)),
            }),
        }
    }

    fn accepts(&self, input: Changelog) -> std::result::Result<(), String> {
        match input {
            Changelog::AppendOnly => Ok(()),
            _ => Err("ORDER BY over a changelog (Flink sorts append-only streams by their time attribute)".to_string()),
        }
    }

    fn holds_rows(&self) -> bool {
        true
    }

    async fn on_watermark(&self, watermarks: &Watermarks) -> Result<Emitted> {
        let rows = watermarks.pipeline.map(|w| self.emit(w)).transpose()?;
        Ok(Emitted::appended(rows.unwrap_or_default()))
    }

    fn state(&self) -> Option<&dyn KeepsState> {
        Some(self)
    }
}

impl KeepsState for TemporalSort {
    fn snapshot(&self, out: &mut ByteWriter) {
        self.held().encode(out);
    }

    fn restore(&self, input: &mut ByteReader<'_>) -> Result<()> {
        self.held().decode(input)
    }
}

/// Plans `ORDER BY` over a stream.
pub struct SortPlanner;

impl OperatorPlanner for SortPlanner {
    fn input_of<'p>(&self, node: &'p LogicalPlan) -> Option<&'p LogicalPlan> {
        match node {
            LogicalPlan::Sort(sort) => Some(&sort.input),
            _ => None,
        }
    }

    fn plan(&self, node: &LogicalPlan, ctx: &PlanContext<'_>) -> Result<Arc<dyn Operator>> {
        let LogicalPlan::Sort(sort) = node else {
            unreachable!("input_of matched a sort");
        };
        if sort.fetch.is_some() {
            return Err(ctx.unsupported(
                "ORDER BY … LIMIT over a stream (a global Top-N: write ROW_NUMBER() OVER (ORDER BY …) AS rn … WHERE rn <= N, as Flink does)".to_string(),
            ));
        }
        let Some((first, rest)) = sort.expr.split_first() else {
            unreachable!("a sort has keys");
        };
        let input = sort.input.schema();
        let then_by = rest
            .iter()
            .map(|key| {
                let options = SortOptions {
                    descending: !key.asc,
                    nulls_first: key.nulls_first,
                };
                Ok((ctx.physical(&key.expr, input)?, options))
            })
            .collect::<Result<Vec<_>>>()?;
        let schema = Arc::new(input.as_arrow().clone());
        if first.asc && reads_the_clock(&first.expr, &sort.input) {
            return Ok(Arc::new(ProcessingTimeSort { then_by, schema }));
        }
        let time = match &first.expr {
            Expr::Column(column) if first.asc && ctx.is_event_time(&column.name) => {
                column.name.clone()
            }
            other => {
                let other = match other {
                    Expr::Column(column) => column.name.clone(),
                    other => other.to_string(),
                };
                return Err(ctx.unsupported(format!(
                    "ORDER BY {other}{} over a stream (Flink sorts a stream by its time attribute ascending first, its WATERMARK FOR column or its PROCTIME(), then any columns: sort on a non-time-attribute field is not supported)",
                    if first.asc { "" } else { " DESC" }
                )));
            }
        };
        Ok(Arc::new(TemporalSort {
            then_by,
            held: Mutex::new(HeldRows::new(time, schema.clone())),
            schema,
        }))
    }
}

/// The ORDER BY keys after the time, as `, key [DESC]` each.
fn then_keys(then_by: &[(Arc<dyn PhysicalExpr>, SortOptions)]) -> String {
    then_by
        .iter()
        .map(|(expr, options)| format!(", {expr}{}", if options.descending { " DESC" } else { "" }))
        .collect()
}

/// Whether `expr`, a sort key over `input`, is the processing time: a
/// `PROCTIME()` call, or a column the projection below computes as one.
fn reads_the_clock(expr: &Expr, input: &LogicalPlan) -> bool {
    match expr {
        Expr::Column(column) => match input {
            LogicalPlan::Projection(projection) => projection.expr.iter().any(|computed| {
                computed.schema_name().to_string() == column.name
                    && crate::row_number::is_proctime(
                        computed.clone().unalias_nested().data.as_ref(),
                    )
            }),
            _ => false,
        },
        other => crate::row_number::is_proctime(other),
    }
}

/// `ORDER BY PROCTIME()` (then any columns): the rows of a batch are read at
/// one instant of processing time, so they are sorted by the other keys and
/// passed on at once, as Flink's processing-time sort orders rows of one
/// instant.
#[derive(Debug)]
pub struct ProcessingTimeSort {
    then_by: Vec<(Arc<dyn PhysicalExpr>, SortOptions)>,
    schema: SchemaRef,
}

#[async_trait::async_trait]
impl Operator for ProcessingTimeSort {
    fn kind(&self) -> OperatorKind {
        OperatorKind::Sort
    }

    async fn process(self: Arc<Self>, input: Traced, _ctx: &BatchContext<'_>) -> Result<Processed> {
        if self.then_by.is_empty() || input.batch.num_rows() < 2 {
            return Ok(input.into());
        }
        let mut keys = Vec::with_capacity(self.then_by.len() + 1);
        for (expr, options) in &self.then_by {
            keys.push(SortColumn {
                values: crate::batch::evaluate(expr, &input.batch)?,
                options: Some(*options),
            });
        }
        // Ties keep their arrival order (Arrow's sort is not stable).
        keys.push(SortColumn {
            values: Arc::new(arrow::array::UInt32Array::from_iter_values(
                0..input.batch.num_rows() as u32,
            )),
            options: Some(SortOptions::default()),
        });
        let order = lexsort_to_indices(&keys, None)?;
        let sorted = arrow::compute::take_record_batch(&input.batch, &order)?;
        let rows: Vec<usize> = order.values().iter().map(|&row| row as usize).collect();
        Ok(input.rows_from(sorted, &rows).into())
    }

    fn describe(&self, input: &InputStream) -> Described {
        Described {
            detail: format!(
                "ORDER BY PROCTIME(){}: the rows read at one instant, in that order, at once",
                then_keys(&self.then_by)
            ),
            schema: self.schema.clone(),
            watermark: input.watermark.clone(),
            state: None,
        }
    }

    fn accepts(&self, input: Changelog) -> std::result::Result<(), String> {
        match input {
            Changelog::AppendOnly => Ok(()),
            _ => Err("ORDER BY over a changelog (Flink sorts append-only streams by their time attribute)".to_string()),
        }
    }
}
