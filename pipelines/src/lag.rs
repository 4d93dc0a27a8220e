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

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use arrow::array::{ArrayRef, BooleanArray, UInt32Array};
use arrow::datatypes::DataType;
use arrow::record_batch::RecordBatch;
use arrow::row::{OwnedRow, RowConverter, SortField};
use datafusion::physical_expr::PhysicalExpr;

use crate::error::Result;
use crate::state::{ByteReader, ByteWriter};
use crate::batch::evaluate;

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
    last: Mutex<HashMap<Box<[u8]>, OwnedRow>>,
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
        })
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
        let mut overlay: HashMap<Box<[u8]>, usize> = HashMap::new();
        let mut previous: Vec<Option<OwnedRow>> = Vec::with_capacity(batch.num_rows());
        for row in 0..batch.num_rows() {
            let key = keys.row(row).data();
            previous.push(match overlay.get(key) {
                Some(&earlier) => Some(value_rows.row(earlier).owned()),
                None => last.get(key).cloned(),
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
        self.last.lock().expect("not poisoned").extend(writes);
    }

    pub fn encode(&self, out: &mut ByteWriter) {
        let last = self.last.lock().expect("not poisoned");
        out.u64(last.len() as u64);
        for (key, value) in last.iter() {
            out.bytes(key);
            out.bytes(value.row().data());
        }
    }

    pub fn decode(&self, input: &mut ByteReader) -> Result<()> {
        let mut last = self.last.lock().expect("not poisoned");
        let parser = self.value_converter.parser();
        for _ in 0..input.u64()? {
            let key: Box<[u8]> = input.bytes()?.into();
            let value = parser.parse(input.bytes()?).owned();
            last.insert(key, value);
        }
        Ok(())
    }
}
