//! `UNION ALL` of the pipeline's streams: the rows of each, as they come.
//!
//! ```text
//!   left stream ──(its steps)──┐
//!                              ├──▶ UNION ALL ──▶ the steps after it ──▶ target
//!   right stream ─(its steps)──┘     each batch passes through as it is, under the union's column names
//! ```
//!
//! It keeps no state: each stream's offsets are committed with the rows it
//! brought, so a restart reads each from where it stopped. As Flink's union,
//! it passes changes on with their kinds.

use std::sync::Arc;

use arrow::datatypes::SchemaRef;

use crate::batch::conform;

use crate::error::Result;
use crate::operator::{
    BatchContext, Described, InputStream, Operator, OperatorKind, Processed, Traced,
};

/// The rows of every stream, under the union's columns.
#[derive(Debug)]
pub struct UnionAll {
    output: SchemaRef,
}

impl UnionAll {
    pub fn new(output: SchemaRef) -> Self {
        Self { output }
    }
}

#[async_trait::async_trait]
impl Operator for UnionAll {
    fn kind(&self) -> OperatorKind {
        OperatorKind::Union
    }

    async fn process(self: Arc<Self>, input: Traced, _ctx: &BatchContext<'_>) -> Result<Processed> {
        let batch = conform(&input.batch, &self.output)?;
        Ok(Processed::from(input.with_batch(batch)))
    }

    fn describe(&self, _input: &InputStream) -> Described {
        Described {
            detail: "UNION ALL of the streams".to_string(),
            schema: self.output.clone(),
            // The streams' event times do not carry one watermark through.
            watermark: None,
            state: None,
        }
    }

    fn reads_second_stream(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::{Array, Int32Array, Int64Array};
    use arrow::datatypes::{DataType, Field, Schema};
    use arrow::record_batch::RecordBatch;

    use super::UnionAll;
    use crate::operator::Side;
    use crate::operator::harness::Harness;

    #[tokio::test]
    async fn both_streams_rows_pass_under_the_unions_columns() {
        let output = Arc::new(Schema::new(vec![Field::new("id", DataType::Int64, true)]));
        let harness = Harness::new(Arc::new(UnionAll::new(output)));
        let left = RecordBatch::try_new(
            Arc::new(Schema::new(vec![Field::new("id", DataType::Int64, true)])),
            vec![Arc::new(Int64Array::from(vec![1, 2]))],
        )
        .unwrap();
        let right = RecordBatch::try_new(
            Arc::new(Schema::new(vec![Field::new(
                "other",
                DataType::Int32,
                true,
            )])),
            vec![Arc::new(Int32Array::from(vec![3]))],
        )
        .unwrap();
        let (from_left, _) = harness.push(&left).await.unwrap();
        let (from_right, _) = harness.push_side(&right, Side::Right).await.unwrap();
        assert_eq!(from_left.batch.num_rows(), 2);
        let ids = from_right
            .batch
            .column_by_name("id")
            .unwrap()
            .as_any()
            .downcast_ref::<Int64Array>()
            .unwrap()
            .clone();
        assert_eq!((ids.len(), ids.value(0)), (1, 3));
        assert_eq!(from_right.origins, [0]);
    }
}
