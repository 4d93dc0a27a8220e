//! `LAG(value [, 1 [, default]]) OVER (PARTITION BY k … ORDER BY t)` on a
//! stream: each row gets the value of the previous row of its partition, in
//! arrival order (Kafka keeps the order per partition), from keyed state that
//! is checkpointed with the pipeline's commits.
//!
//! ```text
//!   row (k, v) ──▶ prev = state[k] (or the default, or NULL) ──▶ row + prev
//!                  state[k] = v   (applied once the batch has gone through)
//! ```
//!
//! With `WHERE alarming <> was_alarming`, this emits a row only when a key's
//! value changes: the transitions of a state, such as an alarm's start and end.
//!
//! Under `SET 'table.exec.state.ttl'`, a partition whose last row came longer
//! ago than the TTL (by processing time) is forgotten, as Flink's OVER state is:
//! its next row finds no previous value, and each commit drops such partitions.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use arrow::array::{ArrayRef, BooleanArray, UInt32Array};
use arrow::datatypes::{DataType, Field, Schema};
use arrow::record_batch::RecordBatch;
use arrow::row::{OwnedRow, RowConverter, SortField};
use datafusion::physical_expr::PhysicalExpr;

use crate::batch::{evaluate, with_column};
use crate::error::Result;
use crate::keyed::Expiry;
use crate::operator::{
    BatchContext, Described, Emitted, InputStream, KeepsState, Operator, OperatorKind, Processed,
    StateInfo, StateWrite, Traced, Watermarks,
};
use crate::state::{ByteReader, ByteWriter};

/// The column LAG's values are added as, before a projection names them.
const LAG_COLUMN: &str = "__lag";

/// A partition's last value, and when it came (ms since the epoch).
#[derive(Debug, Clone)]
struct Last {
    value: OwnedRow,
    written_ms: i64,
}

/// The last value of each partition, as the batch that is running left it.
pub type LagWrites = Vec<(Box<[u8]>, OwnedRow)>;

impl LagStep {
    /// The step as its state depends on it: partition keys and the value's type.
    pub fn shape(&self) -> String {
        let partition: Vec<String> = self.partition.iter().map(|e| e.to_string()).collect();
        format!(
            "LAG({}) OVER (PARTITION BY {}): {}",
            self.value,
            partition.join(", "),
            self.output_type
        )
    }
}

#[derive(Debug)]
pub struct LagStep {
    partition: Vec<Arc<dyn PhysicalExpr>>,
    value: Arc<dyn PhysicalExpr>,
    default: Option<Arc<dyn PhysicalExpr>>,
    output_type: DataType,
    key_converter: RowConverter,
    value_converter: RowConverter,
    last: Mutex<HashMap<Box<[u8]>, Last>>,
    /// When a partition is forgotten (`SET 'table.exec.state.ttl'`).
    expiry: Expiry,
}

impl LagStep {
    /// The type of the column it adds.
    pub fn output_type(&self) -> &DataType {
        &self.output_type
    }

    pub fn new(
        partition: Vec<(Arc<dyn PhysicalExpr>, DataType)>,
        value: (Arc<dyn PhysicalExpr>, DataType),
        default: Option<Arc<dyn PhysicalExpr>>,
    ) -> Result<Self> {
        let key_converter = RowConverter::new(
            partition
                .iter()
                .map(|(_, t)| SortField::new(t.clone()))
                .collect(),
        )?;
        Ok(Self {
            partition: partition.into_iter().map(|(e, _)| e).collect(),
            value_converter: RowConverter::new(vec![SortField::new(value.1.clone())])?,
            output_type: value.1,
            value: value.0,
            default,
            key_converter,
            last: Mutex::new(HashMap::new()),
            expiry: Expiry::default(),
        })
    }

    /// The step, forgetting a partition as `expiry` says (after `SET 'table.exec.state.ttl'`).
    pub fn expiring(mut self, expiry: Expiry) -> Self {
        self.expiry = expiry;
        self
    }

    /// The batch with the previous values appended, and the state it leaves
    /// (to apply with [`Self::apply`] once the batch has gone through).
    pub fn run(&self, batch: &RecordBatch) -> Result<(ArrayRef, LagWrites)> {
        let keys: Vec<ArrayRef> = self
            .partition
            .iter()
            .map(|e| evaluate(e, batch))
            .collect::<Result<_>>()?;
        let keys = self.key_converter.convert_columns(&keys)?;
        let values = evaluate(&self.value, batch)?;
        let value_rows = self.value_converter.convert_columns(&[values])?;
        let last = self.last.lock().expect("not poisoned");
        let now = self.expiry.now();
        let mut overlay: HashMap<Box<[u8]>, usize> = HashMap::new();
        let mut previous: Vec<Option<OwnedRow>> = Vec::with_capacity(batch.num_rows());
        for row in 0..batch.num_rows() {
            let key = keys.row(row).data();
            previous.push(match overlay.get(key) {
                Some(&earlier) => Some(value_rows.row(earlier).owned()),
                None => last
                    .get(key)
                    .filter(|last| !self.expiry.expired(last.written_ms, now))
                    .map(|last| last.value.clone()),
            });
            overlay.insert(key.into(), row);
        }
        drop(last);
        let known: Vec<&OwnedRow> = previous.iter().flatten().collect();
        let known = self
            .value_converter
            .convert_rows(known.iter().map(|r| r.row()))?
            .remove(0);
        let mut next = 0u32;
        let indices: UInt32Array = previous
            .iter()
            .map(|p| {
                p.as_ref().map(|_| {
                    next += 1;
                    next - 1
                })
            })
            .collect();
        let mut output = arrow::compute::take(&known, &indices, None)?;
        if let Some(default) = &self.default {
            let missing: BooleanArray = previous.iter().map(|p| Some(p.is_none())).collect();
            let default = arrow::compute::cast(&evaluate(default, batch)?, &self.output_type)?;
            output = arrow::compute::kernels::zip::zip(&missing, &default, &output)?;
        }
        let writes = overlay
            .into_iter()
            .map(|(key, row)| (key, value_rows.row(row).owned()))
            .collect();
        Ok((output, writes))
    }

    pub fn apply(&self, writes: LagWrites) {
        let written_ms = self.expiry.now();
        self.last.lock().expect("not poisoned").extend(
            writes
                .into_iter()
                .map(|(key, value)| (key, Last { value, written_ms })),
        );
    }

    /// Under a TTL, each partition records when its last row came, and the
    /// count of partitions says so in its top bit (a checkpoint without it
    /// restores every partition as written at the restore).
    fn encode(&self, out: &mut ByteWriter) {
        let last = self.last.lock().expect("not poisoned");
        let expiring = self.expiry.ttl_ms().is_some();
        out.flagged_count(last.len(), expiring);
        for (key, last) in last.iter() {
            out.bytes(key);
            out.bytes(last.value.row().data());
            if expiring {
                out.i64(last.written_ms);
            }
        }
    }

    fn decode(&self, input: &mut ByteReader) -> Result<()> {
        let mut last = self.last.lock().expect("not poisoned");
        let parser = self.value_converter.parser();
        let now = self.expiry.now();
        let (count, timed) = input.flagged_count()?;
        for _ in 0..count {
            let key: Box<[u8]> = input.bytes()?.into();
            let value = parser.parse(input.bytes()?).owned();
            let written_ms = match timed {
                true => input.i64()?,
                false => now,
            };
            last.insert(key, Last { value, written_ms });
        }
        Ok(())
    }
}

#[async_trait::async_trait]
impl Operator for LagStep {
    fn kind(&self) -> OperatorKind {
        OperatorKind::Lag
    }

    async fn process(self: Arc<Self>, input: Traced, _ctx: &BatchContext<'_>) -> Result<Processed> {
        let (previous, writes) = self.run(&input.batch)?;
        let field = Field::new(LAG_COLUMN, previous.data_type().clone(), true);
        let lag = self.clone();
        Ok(Processed {
            traced: {
                let batch = with_column(&input.batch, field, previous)?;
                input.with_batch(batch)
            },
            missed: Vec::new(),
            writes: vec![StateWrite::new(move || {
                lag.apply(writes);
                Ok(Vec::new())
            })],
        })
    }

    fn describe(&self, input: &InputStream) -> Described {
        let mut fields: Vec<Field> = input
            .schema
            .fields()
            .iter()
            .map(|f| f.as_ref().clone())
            .collect();
        fields.push(Field::new(LAG_COLUMN, self.output_type.clone(), true));
        let ttl = self.expiry.describe("partitions", "their last row");
        Described {
            detail: format!("{}{ttl}", self.shape()),
            schema: Arc::new(Schema::new(fields)),
            watermark: input.watermark.clone(),
            state: Some(StateInfo {
                holds: "the last value of each partition".to_string(),
                fingerprint: self.shape(),
            }),
        }
    }

    fn keeps_state_past_ttl(&self) -> bool {
        false
    }

    /// Drops the partitions past their TTL at each commit.
    async fn on_watermark(&self, _watermarks: &Watermarks) -> Result<Emitted> {
        if self.expiry.ttl_ms().is_some() {
            let now = self.expiry.now();
            self.last
                .lock()
                .expect("not poisoned")
                .retain(|_, last| !self.expiry.expired(last.written_ms, now));
        }
        Ok(Emitted::default())
    }

    fn refuses_rows_run_again(&self) -> Option<String> {
        Some("a row run again would move its partition's LAG on twice".to_string())
    }

    fn refuses_second_stream(&self) -> Option<String> {
        Some("LAG".to_string())
    }

    fn state(&self) -> Option<&dyn KeepsState> {
        Some(self)
    }
}

impl KeepsState for LagStep {
    fn snapshot(&self, out: &mut ByteWriter) {
        self.encode(out);
    }
    fn restore(&self, input: &mut ByteReader<'_>) -> Result<()> {
        self.decode(input)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::{Array, Int64Array, StringArray};
    use arrow::datatypes::{DataType, Field, Schema};
    use arrow::record_batch::RecordBatch;
    use datafusion::physical_expr::expressions::col;

    use super::LagStep;
    use crate::keyed::Expiry;
    use crate::operator::Operator;
    use crate::operator::harness::Harness;

    fn schema() -> Arc<Schema> {
        Arc::new(Schema::new(vec![
            Field::new("device", DataType::Utf8, true),
            Field::new("value", DataType::Int64, true),
        ]))
    }

    /// `LAG(value) OVER (PARTITION BY device …)`.
    fn lag_step() -> LagStep {
        let schema = schema();
        LagStep::new(
            vec![(col("device", &schema).unwrap(), DataType::Utf8)],
            (col("value", &schema).unwrap(), DataType::Int64),
            None,
        )
        .unwrap()
    }

    fn lag() -> Arc<dyn Operator> {
        Arc::new(lag_step())
    }

    fn batch(rows: &[(&str, i64)]) -> RecordBatch {
        RecordBatch::try_new(
            schema(),
            vec![
                Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r.0))),
                Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.1))),
            ],
        )
        .unwrap()
    }

    /// The previous values LAG added to each row, NULL as `None`.
    fn previous(rows: &RecordBatch) -> Vec<Option<i64>> {
        let column = rows
            .column(2)
            .as_any()
            .downcast_ref::<Int64Array>()
            .unwrap();
        (0..column.len())
            .map(|row| column.is_valid(row).then(|| column.value(row)))
            .collect()
    }

    /// The test's own wall clock, in ms.
    static NOW_MS: std::sync::atomic::AtomicI64 = std::sync::atomic::AtomicI64::new(1_000);

    fn test_clock() -> i64 {
        NOW_MS.load(std::sync::atomic::Ordering::Relaxed)
    }

    #[tokio::test]
    async fn with_a_ttl_a_partition_without_rows_for_that_long_is_forgotten() {
        use std::sync::atomic::Ordering;
        let make =
            || Arc::new(lag_step().expiring(Expiry::after(Some(1_000)).with_clock(test_clock)));
        assert!(!make().keeps_state_past_ttl());
        let harness = Harness::new(make());
        harness.push(&batch(&[("a", 1), ("b", 10)])).await.unwrap();
        NOW_MS.store(1_600, Ordering::Relaxed);
        harness.push(&batch(&[("b", 11)])).await.unwrap();
        let bytes = harness.snapshot();
        let lag = make();
        let mut restored = Harness::restore_into(lag.clone(), &bytes).unwrap();
        // At 2 000, a's last row (at 1 000) is past the TTL; b's (1 600) is not.
        NOW_MS.store(2_000, Ordering::Relaxed);
        let (rows, _) = restored.push(&batch(&[("a", 2), ("b", 12)])).await.unwrap();
        assert_eq!(previous(&rows.batch), [None, Some(11)]);
        // A commit drops the partitions past their time.
        NOW_MS.store(3_000, Ordering::Relaxed);
        restored.watermark(0).await.unwrap();
        assert!(lag.last.lock().unwrap().is_empty());
    }

    #[tokio::test]
    async fn each_row_gets_the_previous_value_of_its_partition_across_batches() {
        let harness = Harness::new(lag());
        let (first, _) = harness
            .push(&batch(&[("a", 1), ("b", 10), ("a", 2)]))
            .await
            .unwrap();
        assert_eq!(previous(&first.batch), [None, None, Some(1)]);
        assert_eq!(first.origins, [0, 1, 2]);
        let (second, _) = harness.push(&batch(&[("b", 11), ("a", 3)])).await.unwrap();
        assert_eq!(previous(&second.batch), [Some(10), Some(2)]);
    }

    #[tokio::test]
    async fn a_batch_whose_writes_are_dropped_leaves_no_trace() {
        let harness = Harness::new(lag());
        harness.push(&batch(&[("a", 1)])).await.unwrap();
        let failed = harness.try_push(&batch(&[("a", 2)])).await.unwrap();
        assert_eq!(previous(&failed.batch), [Some(1)]);
        // Read again after the failure, the row meets the same state.
        let (again, _) = harness.push(&batch(&[("a", 2)])).await.unwrap();
        assert_eq!(previous(&again.batch), [Some(1)]);
    }

    #[tokio::test]
    async fn a_restored_lag_goes_on_as_the_original_does() {
        let original = Harness::new(lag());
        original
            .push(&batch(&[("a", 1), ("b", 10), ("c", 100)]))
            .await
            .unwrap();
        let restored = Harness::restore_into(lag(), &original.snapshot()).unwrap();
        assert_eq!(restored.snapshot().len(), original.snapshot().len());
        let next = batch(&[("c", 101), ("a", 2), ("d", 7)]);
        let (from_original, _) = original.push(&next).await.unwrap();
        let (from_restored, _) = restored.push(&next).await.unwrap();
        assert_eq!(previous(&from_restored.batch), [Some(100), Some(1), None]);
        assert_eq!(from_restored.batch, from_original.batch);
    }
}
