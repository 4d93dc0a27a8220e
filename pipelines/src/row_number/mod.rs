//! `ROW_NUMBER() OVER (PARTITION BY k … ORDER BY proc_time)` on a stream:
//! each row gets its number among its partition's rows in arrival order,
//! from a count per partition kept in keyed state ([`crate::keyed`]): it
//! grows with the keys, spills to local disk beyond `[engine]
//! state-memory-mb`, and a commit checkpoints only the counts that changed. With `WHERE rn = 1` this is Flink's deduplication that keeps the
//! first row of each key; with `WHERE rn <= N`, its Top-N of the first N rows.
//!
//! ```text
//!   row (k, …) ──▶ n = count[k] + 1 ──▶ row + n        count[k] = n (applied once the batch has gone through)
//!   WHERE rn = 1 ──▶ the first row of each k, once; later rows of k never pass
//! ```
//!
//! Processing time orders rows as they arrive, so a number once given never
//! changes and the output stays append-only. Without a bound on the number,
//! an order that can renumber rows already written (descending, or by event
//! time, where a late row may come first) is refused, not approximated; under
//! `WHERE rn <= N` any order runs as a [`TopN`], which keeps only N rows of
//! each partition and takes back the rows a new one pushes out.

mod limit;
mod top_n;

pub use limit::rank_limit;
pub use top_n::{RankOrder, TopN, TopNParts};

use std::collections::HashMap;
use std::sync::Arc;

use arrow::array::{ArrayRef, Int64Array};
use arrow::datatypes::{DataType, SchemaRef};
use arrow::record_batch::RecordBatch;
use arrow::row::{RowConverter, SortField};
use datafusion::logical_expr::expr::WindowFunction;
use datafusion::logical_expr::{Expr, ExprSchemable, LogicalPlan, WindowFunctionDefinition};
use datafusion::physical_expr::PhysicalExpr;

use crate::batch::evaluate;
use crate::error::{PipelineError, Result};
use crate::keyed::{MAX_KEY_BYTES, Slot, decode_count};
use crate::operator::planner::{OperatorPlanner, PlanContext, window_of};
use crate::operator::{
    BatchContext, Changelog, Described, InputStream, Missed, Operator, OperatorKind, Processed,
    StateInfo, StateWrite, Traced,
};

/// The number of rows of each partition so far, as the batch that is running left it.
type Counts = HashMap<Vec<u8>, u64>;

/// Numbers each row among its partition's rows, in arrival order.
#[derive(Debug)]
pub struct RowNumber {
    partition: Vec<Arc<dyn PhysicalExpr>>,
    /// The partition keys as SQL, for the plan and the state's fingerprint.
    described: String,
    key_types: Vec<DataType>,
    key_converter: RowConverter,
    /// The input's columns and the number.
    output: SchemaRef,
    /// Partition key → its number of rows so far (8 bytes, big-endian).
    counts: Slot,
}

impl RowNumber {
    /// Numbers rows by `partition`, whose SQL is `described` (its names, not
    /// column positions, which a source's new column would shift).
    pub fn new(
        partition: Vec<(Arc<dyn PhysicalExpr>, DataType)>,
        described: String,
        output: SchemaRef,
    ) -> Result<Self> {
        let key_types: Vec<DataType> = partition.iter().map(|(_, t)| t.clone()).collect();
        Ok(Self {
            key_converter: RowConverter::new(
                key_types.iter().cloned().map(SortField::new).collect(),
            )?,
            partition: partition.into_iter().map(|(e, _)| e).collect(),
            described,
            key_types,
            output,
            counts: Slot::default(),
        })
    }

    fn shape(&self) -> String {
        format!(
            "ROW_NUMBER() OVER (PARTITION BY {} ORDER BY PROCTIME()): {:?}",
            self.described, self.key_types
        )
    }

    /// The numbers of a batch's rows, the counts they leave, and the rows
    /// whose key is too long to count (numbered 0; they go to quarantine).
    fn number(&self, batch: &RecordBatch) -> Result<(Int64Array, Counts, Vec<usize>)> {
        let keys = partition_keys_of(&self.partition, &self.key_converter, batch)?;
        self.counts.with(|counts| {
            let mut overlay: Counts = HashMap::new();
            let mut numbers = Vec::with_capacity(keys.len());
            let mut too_long = Vec::new();
            for (row, key) in keys.into_iter().enumerate() {
                if key.len() > MAX_KEY_BYTES {
                    too_long.push(row);
                    numbers.push(0);
                    continue;
                }
                let before = match overlay.get(&key) {
                    Some(&count) => count,
                    None => match counts.get(&key)? {
                        Some(stored) if stored.len() != 8 => {
                            return Err(PipelineError::State(
                                "the ROW_NUMBER counts were kept by a deduplication bounded by WHERE rn <= N, which stops counting at N, so they cannot number every row; run `strata pipeline reset` to number the rows from the start".to_string(),
                            ));
                        }
                        Some(stored) => decode_count(&stored, "a ROW_NUMBER count")?,
                        None => 0,
                    },
                };
                overlay.insert(key, before + 1);
                // BIGINT, as Flink types ROW_NUMBER; a key never counts 2^63 rows.
                numbers.push((before + 1) as i64);
            }
            Ok((Int64Array::from(numbers), overlay, too_long))
        })
    }
}

#[async_trait::async_trait]
impl Operator for RowNumber {
    fn kind(&self) -> OperatorKind {
        OperatorKind::RowNumber
    }

    async fn process(self: Arc<Self>, input: Traced, _ctx: &BatchContext<'_>) -> Result<Processed> {
        let (numbers, overlay, too_long) = self.number(&input.batch)?;
        let missed = Missed::quarantine(
            &too_long,
            &input,
            format!(
                "its PARTITION BY key takes more than the {} KiB ROW_NUMBER counts rows under",
                MAX_KEY_BYTES / 1024
            ),
        );
        let mut columns = input.batch.columns().to_vec();
        columns.push(Arc::new(numbers));
        let batch = RecordBatch::try_new(self.output.clone(), columns)?;
        let counts = overlay
            .into_iter()
            .map(|(key, count)| (key, Some(count.to_be_bytes().to_vec())))
            .collect();
        Ok(Processed {
            traced: input.with_batch(batch),
            missed,
            writes: vec![StateWrite::keyed(self, counts)],
        })
    }

    fn describe(&self, input: &InputStream) -> Described {
        Described {
            detail: format!(
                "ROW_NUMBER() OVER (PARTITION BY {} ORDER BY PROCTIME()), in arrival order",
                self.described
            ),
            schema: self.output.clone(),
            watermark: input.watermark.clone(),
            state: Some(StateInfo {
                holds: "the number of rows of each partition so far".to_string(),
                fingerprint: self.shape(),
            }),
        }
    }

    fn accepts(&self, input: Changelog) -> std::result::Result<(), String> {
        match input {
            Changelog::AppendOnly => Ok(()),
            _ => Err(
                "ROW_NUMBER over a changelog (a delete would renumber rows already written)"
                    .to_string(),
            ),
        }
    }

    fn keeps_state_past_ttl(&self) -> bool {
        true
    }

    fn refuses_rows_run_again(&self) -> Option<String> {
        Some("a row run again would be numbered twice".to_string())
    }

    fn keyed_state(&self) -> Option<&Slot> {
        Some(&self.counts)
    }
}

/// Each row's partition key, as bytes (empty without PARTITION BY: one partition).
fn partition_keys_of(
    partition: &[Arc<dyn PhysicalExpr>],
    converter: &RowConverter,
    batch: &RecordBatch,
) -> Result<Vec<Vec<u8>>> {
    if partition.is_empty() {
        return Ok(vec![Vec::new(); batch.num_rows()]);
    }
    let columns: Vec<ArrayRef> = partition
        .iter()
        .map(|e| evaluate(e, batch))
        .collect::<Result<_>>()?;
    let rows = converter.convert_columns(&columns)?;
    Ok(rows.iter().map(|row| row.data().to_vec()).collect())
}

/// Plans a window of `ROW_NUMBER()` calls (and nothing else) into [`RowNumber`].
pub struct RowNumberPlanner;

/// The `ROW_NUMBER()` call an expression of a window is, if it is one.
fn row_number_call(expr: &Expr) -> Option<&WindowFunction> {
    let inner = match expr {
        Expr::Alias(alias) => alias.expr.as_ref(),
        other => other,
    };
    match inner {
        Expr::WindowFunction(function) => match &function.fun {
            WindowFunctionDefinition::WindowUDF(udf) if udf.name() == "row_number" => {
                Some(function)
            }
            _ => None,
        },
        _ => None,
    }
}

/// Whether `expr` reads the processing-time clock (a table's `PROCTIME()` column).
pub(crate) fn is_proctime(expr: &Expr) -> bool {
    matches!(expr, Expr::ScalarFunction(call) if call.func.name().eq_ignore_ascii_case("proctime"))
}

impl OperatorPlanner for RowNumberPlanner {
    fn input_of<'p>(&self, node: &'p LogicalPlan) -> Option<&'p LogicalPlan> {
        window_of(node, |expr| row_number_call(expr).is_some()).map(|window| window.input.as_ref())
    }

    fn plan(&self, node: &LogicalPlan, ctx: &PlanContext<'_>) -> Result<Arc<dyn Operator>> {
        let window = window_of(node, |expr| row_number_call(expr).is_some())
            .expect("input_of matched a window");
        let [expr] = window.window_expr.as_slice() else {
            return Err(ctx.unsupported(
                "more than one ROW_NUMBER() in one SELECT (number the rows once)".to_string(),
            ));
        };
        let function = row_number_call(expr).expect("input_of checked the call");
        let params = &function.params;
        if params.filter.is_some() || params.distinct {
            return Err(ctx.unsupported(format!("{expr} with FILTER or DISTINCT")));
        }
        if let Some(limit) = ctx.rank_limit(node) {
            return plan_top_n(window, params, limit, ctx);
        }
        let in_arrival_order = match params.order_by.as_slice() {
            [order] => order.asc && is_proctime(&order.expr),
            _ => false,
        };
        if !in_arrival_order {
            return Err(ctx.unsupported(format!(
                "{expr} without WHERE rn <= N (streams number every row in arrival order: ORDER BY the table's PROCTIME() column, ascending; another order renumbers rows already written, so it needs the bound of a Top-N or deduplication)"
            )));
        }
        let partition = partition_keys(window, params, ctx)?;
        let described = params
            .partition_by
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(", ");
        let output = Arc::new(window.schema.as_arrow().clone());
        Ok(Arc::new(RowNumber::new(partition, described, output)?))
    }
}

/// The PARTITION BY expressions, with their types.
fn partition_keys(
    window: &datafusion::logical_expr::Window,
    params: &datafusion::logical_expr::expr::WindowFunctionParams,
    ctx: &PlanContext<'_>,
) -> Result<Vec<(Arc<dyn PhysicalExpr>, DataType)>> {
    let input = window.input.schema();
    params
        .partition_by
        .iter()
        .map(|expr| {
            let data_type = expr
                .get_type(input)
                .map_err(|err| ctx.unsupported(format!("{expr} ({err})")))?;
            Ok((ctx.physical(expr, input)?, data_type))
        })
        .collect()
}

/// `ROW_NUMBER() OVER (…)` bounded by `WHERE rn <= limit`: a [`TopN`].
fn plan_top_n(
    window: &datafusion::logical_expr::Window,
    params: &datafusion::logical_expr::expr::WindowFunctionParams,
    limit: u64,
    ctx: &PlanContext<'_>,
) -> Result<Arc<dyn Operator>> {
    let input = window.input.schema();
    let order = match params.order_by.as_slice() {
        [] => {
            return Err(ctx.unsupported(
                "a Top-N without ORDER BY in its OVER clause (Flink needs the order too: ORDER BY PROCTIME() keeps the first rows, DESC the last ones)".to_string(),
            ));
        }
        [only] if is_proctime(&only.expr) => RankOrder::Arrival {
            descending: !only.asc,
        },
        sorts => {
            if let Some(proctime) = sorts.iter().find(|sort| is_proctime(&sort.expr)) {
                return Err(ctx.unsupported(format!(
                    "a Top-N ordered by {} beside other columns (order by the processing time alone, or by columns)",
                    proctime.expr
                )));
            }
            let mut exprs = Vec::new();
            let mut fields = Vec::new();
            for sort in sorts {
                let data_type = sort
                    .expr
                    .get_type(input)
                    .map_err(|err| ctx.unsupported(format!("{} ({err})", sort.expr)))?;
                exprs.push(ctx.physical(&sort.expr, input)?);
                fields.push(SortField::new_with_options(
                    data_type,
                    arrow::compute::SortOptions {
                        descending: !sort.asc,
                        nulls_first: sort.nulls_first,
                    },
                ));
            }
            RankOrder::Values { exprs, fields }
        }
    };
    let keeps_all = ctx.input_changelog != crate::operator::Changelog::AppendOnly;
    if keeps_all && matches!(order, RankOrder::Arrival { .. }) {
        return Err(ctx.unsupported(format!(
            "ROW_NUMBER() ordered by the processing time over a {} stream (as in Flink, whose Deduplicate does not consume update and delete changes; order by a column of the rows to rank them)",
            ctx.input_changelog.as_str()
        )));
    }
    let join = |exprs: Vec<String>| exprs.join(", ");
    let partition_by = join(
        params
            .partition_by
            .iter()
            .map(ToString::to_string)
            .collect(),
    );
    let order_by = join(params.order_by.iter().map(ToString::to_string).collect());
    let what = match (&order, limit) {
        (RankOrder::Arrival { descending: false }, 1) => "deduplication keeping the first row",
        (RankOrder::Arrival { descending: true }, 1) => "deduplication keeping the last row",
        (RankOrder::Arrival { descending: false }, _) => "the first N rows",
        (RankOrder::Arrival { descending: true }, _) => "the last N rows",
        (RankOrder::Values { .. }, _) => "Top-N",
    };
    // Flink's deduplication keeping the last row by an event time: the later of
    // two equal times wins (its Rank keeps the earlier of equal values otherwise).
    let ties_first = limit == 1
        && matches!(params.order_by.as_slice(), [only]
            if !only.asc && matches!(&only.expr, Expr::Column(column) if ctx.is_event_time(&column.name)));
    // Its rows are keyed by the partition (and the number, beside N - 1 others).
    let partition_columns: Option<Vec<String>> = params
        .partition_by
        .iter()
        .map(|expr| match expr {
            Expr::Column(column) => Some(column.name.clone()),
            _ => None,
        })
        .collect();
    let key = match partition_columns {
        Some(mut columns) => {
            if limit > 1 {
                let fields = window.schema.fields();
                columns.push(fields[fields.len() - 1].name().clone());
            }
            columns
        }
        None => Vec::new(),
    };
    let topn = TopN::new(TopNParts {
        ties_first,
        key,
        partition: partition_keys(window, params, ctx)?,
        order,
        described: format!(
            "ROW_NUMBER() OVER (PARTITION BY {partition_by} ORDER BY {order_by}) <= {limit}: {what}"
        ),
        partition_sql: partition_by.clone(),
        limit,
        keeps_all,
        input: Arc::new(input.as_arrow().clone()),
        output: Arc::new(window.schema.as_arrow().clone()),
    })?
    .expiring(crate::keyed::Expiry::after(ctx.state_ttl_ms()));
    Ok(Arc::new(topn))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::{Array, Int64Array, StringArray};
    use arrow::datatypes::{DataType, Field, Schema};
    use arrow::record_batch::RecordBatch;
    use datafusion::physical_expr::expressions::col;

    use super::RowNumber;
    use crate::operator::harness::Harness;
    use crate::operator::{Changelog, Operator};

    fn input_schema() -> Arc<Schema> {
        Arc::new(Schema::new(vec![Field::new("user", DataType::Utf8, true)]))
    }

    fn row_number() -> Arc<RowNumber> {
        let schema = input_schema();
        let output = Arc::new(Schema::new(vec![
            Field::new("user", DataType::Utf8, true),
            Field::new("rn", DataType::Int64, false),
        ]));
        Arc::new(
            RowNumber::new(
                vec![(col("user", &schema).unwrap(), DataType::Utf8)],
                "user".to_string(),
                output,
            )
            .unwrap(),
        )
    }

    fn batch(users: &[Option<&str>]) -> RecordBatch {
        RecordBatch::try_new(
            input_schema(),
            vec![Arc::new(StringArray::from(users.to_vec()))],
        )
        .unwrap()
    }

    fn numbers(batch: &RecordBatch) -> Vec<i64> {
        let column = batch.column_by_name("rn").unwrap();
        let numbers = column.as_any().downcast_ref::<Int64Array>().unwrap();
        (0..numbers.len()).map(|row| numbers.value(row)).collect()
    }

    #[tokio::test]
    async fn rows_are_numbered_per_key_in_arrival_order_across_batches() {
        let dir = tempfile::tempdir().unwrap();
        let harness = Harness::keyed(row_number(), dir.path(), "run").unwrap();
        let (first, _) = harness
            .push(&batch(&[Some("a"), Some("b"), Some("a"), None, None]))
            .await
            .unwrap();
        assert_eq!(numbers(&first.batch), [1, 1, 2, 1, 2], "NULL is a key too");
        let (second, _) = harness
            .push(&batch(&[Some("b"), Some("c"), Some("a")]))
            .await
            .unwrap();
        assert_eq!(numbers(&second.batch), [2, 1, 3]);
        assert_eq!(second.origins, [0, 1, 2]);
    }

    #[tokio::test]
    async fn a_row_whose_key_is_too_long_to_count_goes_to_quarantine() {
        let dir = tempfile::tempdir().unwrap();
        let harness = Harness::keyed(row_number(), dir.path(), "run").unwrap();
        let long = "x".repeat(70_000);
        let (numbered, missed) = harness
            .push(&batch(&[Some("a"), Some(long.as_str()), Some("a")]))
            .await
            .unwrap();
        assert_eq!(missed.len(), 1);
        assert_eq!(missed[0].origins, [1]);
        assert!(missed[0].reason.contains("16 KiB"), "{}", missed[0].reason);
        assert_eq!(
            numbers(&numbered.batch)[..],
            [1, 0, 2],
            "the long key counts nothing"
        );
        let (again, _) = harness.push(&batch(&[Some("a")])).await.unwrap();
        assert_eq!(numbers(&again.batch), [3]);
    }

    #[tokio::test]
    async fn a_batch_whose_writes_are_dropped_numbers_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let harness = Harness::keyed(row_number(), dir.path(), "run").unwrap();
        harness.try_push(&batch(&[Some("a")])).await.unwrap();
        let (again, _) = harness.push(&batch(&[Some("a")])).await.unwrap();
        assert_eq!(numbers(&again.batch), [1]);
    }

    #[tokio::test]
    async fn numbering_goes_on_after_a_checkpoint_and_restore_in_another_run() {
        let dir = tempfile::tempdir().unwrap();
        let harness = Harness::keyed(row_number(), dir.path(), "run-1").unwrap();
        harness
            .push(&batch(&[Some("a"), Some("a"), Some("b")]))
            .await
            .unwrap();
        let first = harness.checkpoint_keyed(1).await.unwrap();
        harness.push(&batch(&[Some("b")])).await.unwrap();
        let second = harness.checkpoint_keyed(2).await.unwrap();
        // The second checkpoint adds b's new count to the first's files.
        let restored = Harness::keyed(row_number(), dir.path(), "run-2").unwrap();
        restored.restore_keyed(&second).await.unwrap();
        let (after, _) = restored
            .push(&batch(&[Some("a"), Some("b"), Some("c")]))
            .await
            .unwrap();
        assert_eq!(numbers(&after.batch), [3, 3, 1]);
        assert_ne!(first, second);
    }

    #[test]
    fn a_changelog_is_refused() {
        let operator = row_number();
        assert!(operator.accepts(Changelog::AppendOnly).is_ok());
        let refused = operator.accepts(Changelog::Retracting).unwrap_err();
        assert!(refused.contains("renumber"), "{refused}");
    }
}
