//! The operators that keep no state: choosing columns, filtering,
//! projecting expressions, and unnesting lists, each row's input row traced.
//!
//! ```text
//!   Traced { batch, origins } ──select / filter / project / unnest──▶ Traced { batch', origins' }
//!                                 origins' keep, for every output row, the input row it came from
//! ```

use std::sync::Arc;

use arrow::array::{Array, BooleanArray, UInt32Array};
use arrow::datatypes::{Schema, SchemaRef};
use arrow::record_batch::RecordBatch;
use datafusion::physical_expr::PhysicalExpr;

use crate::batch::{evaluate, with_column};
use crate::error::{PipelineError, Result};
use crate::operator::{
    BatchContext, Changelog, Described, InputStream, Operator, OperatorKind, Processed, Traced,
};

/// A step that maps a batch to a batch, row by row.
#[derive(Debug)]
pub enum Stateless {
    /// Keep these columns (by position, with their names), in this order.
    Select {
        indices: Vec<usize>,
        names: Vec<String>,
    },
    Filter(Arc<dyn PhysicalExpr>),
    Project {
        exprs: Vec<Arc<dyn PhysicalExpr>>,
        schema: SchemaRef,
    },
}

impl Stateless {
    /// Runs the step; output rows keep their input rows' origins.
    pub fn apply(&self, traced: Traced) -> Result<Traced> {
        Ok(match self {
            Stateless::Select { indices, .. } => {
                let batch = traced.batch.project(indices)?;
                traced.with_batch(batch)
            }
            Stateless::Filter(predicate) => {
                let mask = evaluate(predicate, &traced.batch)?;
                let mask = mask
                    .as_any()
                    .downcast_ref::<BooleanArray>()
                    .ok_or_else(|| {
                        PipelineError::Evaluation("a WHERE clause is not boolean".to_string())
                    })?;
                traced.filter(mask)?
            }
            Stateless::Project { exprs, schema } => {
                let columns = exprs
                    .iter()
                    .map(|expr| evaluate(expr, &traced.batch))
                    .collect::<Result<Vec<_>>>()?;
                let options = arrow::record_batch::RecordBatchOptions::new()
                    .with_row_count(Some(traced.batch.num_rows()));
                let batch = RecordBatch::try_new_with_options(schema.clone(), columns, &options)?;
                traced.with_batch(batch)
            }
        })
    }
}

impl Stateless {
    /// The names `key` (columns of the input) has in the output, if every
    /// key column is passed on; none otherwise.
    fn key_after(&self, key: &[String]) -> Vec<String> {
        match self {
            Stateless::Filter(_) => key.to_vec(),
            Stateless::Select { names, .. } => match key.iter().all(|k| names.contains(k)) {
                true => key.to_vec(),
                false => Vec::new(),
            },
            Stateless::Project { exprs, schema } => key
                .iter()
                .map(|name| {
                    let passing: Vec<usize> = exprs
                        .iter()
                        .enumerate()
                        .filter(|(_, expr)| {
                            (expr.as_ref() as &dyn std::any::Any)
                                .downcast_ref::<datafusion::physical_expr::expressions::Column>()
                                .is_some_and(|column| column.name() == name)
                        })
                        .map(|(at, _)| at)
                        .collect();
                    // Two columns of the name (a dimension's beside the source's): unknown.
                    match passing.as_slice() {
                        [at] => Some(schema.field(*at).name().clone()),
                        _ => None,
                    }
                })
                .collect::<Option<Vec<String>>>()
                .unwrap_or_default(),
        }
    }
}

#[async_trait::async_trait]
impl Operator for Stateless {
    fn kind(&self) -> OperatorKind {
        match self {
            Stateless::Filter(_) => OperatorKind::Filter,
            Stateless::Select { .. } | Stateless::Project { .. } => OperatorKind::Project,
        }
    }

    async fn process(self: Arc<Self>, input: Traced, _ctx: &BatchContext<'_>) -> Result<Processed> {
        self.apply(input).map(Processed::from)
    }

    /// The same changes, under the key's names in the output (no key if a
    /// projection does not pass every key column on as it is).
    fn emits(&self, input: Changelog, key: &[String]) -> (Changelog, Vec<String>) {
        (input, self.key_after(key))
    }

    fn describe(&self, input: &InputStream) -> Described {
        let (detail, schema) = match self {
            Stateless::Select { indices, .. } => {
                let schema = Arc::new(
                    input
                        .schema
                        .project(indices)
                        .expect("the compiler chose columns of its input"),
                );
                let names: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
                (format!("columns {}", names.join(", ")), schema)
            }
            Stateless::Filter(predicate) => (format!("WHERE {predicate}"), input.schema.clone()),
            Stateless::Project { exprs, schema } => {
                let items: Vec<String> = exprs
                    .iter()
                    .zip(schema.fields())
                    .map(|(expr, field)| {
                        let expr = expr.to_string();
                        match expr.strip_prefix(field.name().as_str()) {
                            Some(rest) if rest.starts_with('@') => field.name().clone(),
                            _ => format!("{expr} AS {}", field.name()),
                        }
                    })
                    .collect();
                (items.join(", "), schema.clone())
            }
        };
        Described {
            detail,
            schema,
            watermark: input.watermark.clone(),
            state: None,
        }
    }
}

/// DataFusion's unnest, run on each batch, with a column of each row's
/// position carried through so that output rows know their input row.
#[derive(Debug)]
pub struct Unnest {
    lists: Vec<datafusion::physical_plan::unnest::ListUnnest>,
    structs: Vec<usize>,
    /// The output schema, with the position column last.
    schema: SchemaRef,
    options: datafusion::common::UnnestOptions,
}

/// The column an unnest step carries each row's position in.
const POSITION: &str = "__strata_position";

impl Unnest {
    /// An unnest node of a logical plan as an operator.
    pub fn new(unnest: &datafusion::logical_expr::Unnest) -> Self {
        let mut fields: Vec<arrow::datatypes::FieldRef> =
            unnest.schema.as_arrow().fields().iter().cloned().collect();
        fields.push(Arc::new(arrow::datatypes::Field::new(
            POSITION,
            arrow::datatypes::DataType::UInt32,
            false,
        )));
        Self {
            lists: unnest
                .list_type_columns
                .iter()
                .map(
                    |(index, list)| datafusion::physical_plan::unnest::ListUnnest {
                        index_in_input_schema: *index,
                        depth: list.depth,
                    },
                )
                .collect(),
            structs: unnest.struct_type_columns.clone(),
            schema: Arc::new(Schema::new(fields)),
            options: unnest.options.clone(),
        }
    }
}

#[async_trait::async_trait]
impl Operator for Unnest {
    fn kind(&self) -> OperatorKind {
        OperatorKind::Unnest
    }

    async fn process(self: Arc<Self>, input: Traced, _ctx: &BatchContext<'_>) -> Result<Processed> {
        use datafusion::physical_plan::ExecutionPlan;
        let batch = &input.batch;
        let positions = UInt32Array::from_iter_values(0..batch.num_rows() as u32);
        let numbered = with_column(
            batch,
            arrow::datatypes::Field::new(POSITION, arrow::datatypes::DataType::UInt32, false),
            Arc::new(positions),
        )?;
        let evaluation =
            |err: datafusion::error::DataFusionError| PipelineError::Evaluation(err.to_string());
        let source = datafusion::datasource::memory::MemorySourceConfig::try_new_exec(
            &[vec![numbered.clone()]],
            numbered.schema(),
            None,
        )
        .map_err(evaluation)?;
        let unnest = datafusion::physical_plan::unnest::UnnestExec::new(
            source,
            self.lists.clone(),
            self.structs.clone(),
            self.schema.clone(),
            self.options.clone(),
        )
        .map_err(evaluation)?;
        let context = Arc::new(datafusion::execution::TaskContext::default());
        let out =
            datafusion::physical_plan::collect(Arc::new(unnest) as Arc<dyn ExecutionPlan>, context)
                .await
                .map_err(evaluation)?;
        let out = arrow::compute::concat_batches(&self.schema, &out)?;
        let positions = out.num_columns() - 1;
        let position = out
            .column(positions)
            .as_any()
            .downcast_ref::<UInt32Array>()
            .expect("positions are UInt32")
            .clone();
        let rows: Vec<usize> = position.values().iter().map(|&p| p as usize).collect();
        let keep: Vec<usize> = (0..positions).collect();
        Ok(Processed::from(input.rows_from(out.project(&keep)?, &rows)))
    }

    fn describe(&self, input: &InputStream) -> Described {
        let fields = self.schema.fields();
        Described {
            detail: "one row per element of the unnested lists".to_string(),
            schema: Arc::new(Schema::new(fields[..fields.len() - 1].to_vec())),
            watermark: input.watermark.clone(),
            state: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::{Array, Int64Array, ListArray};
    use arrow::datatypes::{DataType, Field, Int64Type, Schema};
    use arrow::record_batch::RecordBatch;
    use datafusion::logical_expr::Operator as BinaryOperator;
    use datafusion::physical_expr::expressions::{BinaryExpr, col, lit};

    use super::{Stateless, Unnest};
    use crate::operator::harness::Harness;

    fn numbers(values: &[i64]) -> RecordBatch {
        let schema = Arc::new(Schema::new(vec![Field::new("n", DataType::Int64, false)]));
        RecordBatch::try_new(
            schema,
            vec![Arc::new(Int64Array::from_iter_values(
                values.iter().copied(),
            ))],
        )
        .unwrap()
    }

    #[tokio::test]
    async fn a_filter_keeps_each_rows_origin() {
        let input = numbers(&[5, -1, 7, 0, 9]);
        let positive = Arc::new(BinaryExpr::new(
            col("n", &input.schema()).unwrap(),
            BinaryOperator::Gt,
            lit(0i64),
        ));
        let harness = Harness::new(Arc::new(Stateless::Filter(positive)));
        let (kept, missed) = harness.push(&input).await.unwrap();
        assert_eq!(kept.batch, numbers(&[5, 7, 9]));
        assert_eq!(kept.origins, [0, 2, 4]);
        assert!(missed.is_empty());
    }

    #[tokio::test]
    async fn unnest_traces_every_element_to_its_row() {
        let lists = ListArray::from_iter_primitive::<Int64Type, _, _>(vec![
            Some(vec![Some(1), Some(2)]),
            Some(vec![]),
            Some(vec![Some(3)]),
        ]);
        let field = Field::new("xs", lists.data_type().clone(), true);
        let input = RecordBatch::try_new(Arc::new(Schema::new(vec![field])), vec![Arc::new(lists)])
            .unwrap();
        let plan = datafusion::logical_expr::LogicalPlanBuilder::from(
            datafusion::logical_expr::LogicalPlan::EmptyRelation(
                datafusion::logical_expr::EmptyRelation {
                    produce_one_row: false,
                    schema: Arc::new(
                        datafusion::common::DFSchema::try_from(input.schema().as_ref().clone())
                            .unwrap(),
                    ),
                },
            ),
        )
        .unnest_column("xs")
        .unwrap()
        .build()
        .unwrap();
        let datafusion::logical_expr::LogicalPlan::Unnest(unnest) = &plan else {
            panic!("{plan}")
        };
        let harness = Harness::new(Arc::new(Unnest::new(unnest)));
        let (rows, _) = harness.push(&input).await.unwrap();
        assert_eq!(rows.origins, [0, 0, 2]);
        assert_eq!(rows.batch.num_rows(), 3);
    }
}
