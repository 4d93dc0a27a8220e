//! A regular join of two streams, Flink's `a JOIN b ON a.k = b.k` without a
//! band of event time: every row of both streams stays in keyed state under
//! its join key, and a row joins the rows of the other stream that came
//! before it.
//!
//! ```text
//!   a row (key k) ──▶ the b rows of k in state ──▶ (a ‖ b) once per b row   then a[k ‖ row] += 1
//!   b row (key k) ──▶ the a rows of k in state ──▶ (a ‖ b) once per a row   then b[k ‖ row] += 1
//!   state: key group of k │ len k ‖ k ‖ side ‖ row → how many such rows came
//!          (the writes are applied once the batch has gone through the plan)
//! ```
//!
//! Each pair is emitted once, by the later of its two rows: a batch holds rows
//! of one stream, so rows of one batch never meet each other. A row with a
//! NULL in its key joins nothing, as in SQL, and is not kept. The state is
//! keyed ([`crate::keyed`]): it grows with the rows, spills to local disk
//! beyond `[engine] state-memory-mb`, and a commit checkpoints only the rows
//! that came since the last one. Both sides of a key share its key group, so
//! the key groups a worker owns hold whole keys.

use std::collections::HashMap;
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, UInt32Array};
use arrow::datatypes::{DataType, SchemaRef};
use arrow::record_batch::RecordBatch;
use arrow::row::{RowConverter, SortField};
use datafusion::physical_expr::PhysicalExpr;

use crate::batch::{equalities, evaluate};
use crate::error::Result;
use crate::keyed::{Slot, decode_count, key_group};
use crate::operator::{
    BatchContext, Changelog, Described, InputStream, Operator, OperatorKind, Processed, Side,
    StateInfo, StateWrite, Traced,
};
use crate::state::schema_fingerprint;

/// One stream's side of the join.
#[derive(Debug)]
pub struct JoinSide {
    /// The stream's columns at the join.
    pub schema: SchemaRef,
    /// The key expressions, over `schema`.
    pub keys: Vec<Arc<dyn PhysicalExpr>>,
}

/// An inner join of the pipeline's two streams on equal keys.
#[derive(Debug)]
pub struct RegularJoin {
    left: JoinSide,
    right: JoinSide,
    key_types: Vec<DataType>,
    key_converter: RowConverter,
    /// Each side's rows as bytes, to keep and to bring back.
    rows: [RowConverter; 2],
    /// The left stream's columns, then the right's.
    output: SchemaRef,
    /// Row counts by join key, side and row.
    state: Slot,
}

/// What the state's values are, in errors.
const ROW_COUNT: &str = "a regular join's row count";

/// A side's tag in the state's keys.
fn tag(side: Side) -> u8 {
    match side {
        Side::Left => 0,
        Side::Right => 1,
    }
}

fn other(side: Side) -> Side {
    match side {
        Side::Left => Side::Right,
        Side::Right => Side::Left,
    }
}

/// The start of the state's keys of a join key's rows of one side.
fn scope(key: &[u8], side: Side) -> Vec<u8> {
    let mut scope = Vec::with_capacity(key.len() + 5);
    scope.extend_from_slice(&(key.len() as u32).to_be_bytes());
    scope.extend_from_slice(key);
    scope.push(tag(side));
    scope
}

impl RegularJoin {
    /// Joins `left` and `right` on their keys, compared as `key_types`,
    /// into rows of `output` (the left columns, then the right ones).
    pub fn new(
        left: JoinSide,
        right: JoinSide,
        key_types: Vec<DataType>,
        output: SchemaRef,
    ) -> Result<Self> {
        let converter = |schema: &SchemaRef| {
            RowConverter::new(
                schema
                    .fields()
                    .iter()
                    .map(|f| SortField::new(f.data_type().clone()))
                    .collect(),
            )
        };
        Ok(Self {
            key_converter: RowConverter::new(
                key_types.iter().cloned().map(SortField::new).collect(),
            )?,
            key_types,
            rows: [converter(&left.schema)?, converter(&right.schema)?],
            left,
            right,
            output,
            state: Slot::default(),
        })
    }

    fn side(&self, side: Side) -> &JoinSide {
        match side {
            Side::Left => &self.left,
            Side::Right => &self.right,
        }
    }

    fn converter(&self, side: Side) -> &RowConverter {
        &self.rows[tag(side) as usize]
    }

    /// The join in SQL terms.
    fn describe_join(&self) -> String {
        format!(
            "INNER JOIN ON {}",
            equalities(&self.left.keys, &self.right.keys)
        )
    }

    /// Each row's join key as bytes; `None` for a row with a NULL in its key.
    fn keys(&self, side: Side, batch: &RecordBatch) -> Result<Vec<Option<Vec<u8>>>> {
        let columns: Vec<ArrayRef> = self
            .side(side)
            .keys
            .iter()
            .map(|e| evaluate(e, batch))
            .collect::<Result<_>>()?;
        let rows = self.key_converter.convert_columns(&columns)?;
        Ok((0..batch.num_rows())
            .map(|row| {
                let null = columns.iter().any(|c| c.is_null(row));
                (!null).then(|| rows.row(row).as_ref().to_vec())
            })
            .collect())
    }

    /// The rows of the other stream each row meets: for each pair, the row's
    /// position and the other row's bytes.
    fn matches(&self, side: Side, keys: &[Option<Vec<u8>>]) -> Result<(Vec<u32>, Vec<Vec<u8>>)> {
        let mut probing = Vec::new();
        let mut met = Vec::new();
        self.state.with(|state| {
            for (row, key) in keys.iter().enumerate() {
                let Some(key) = key else { continue };
                let prefix = scope(key, other(side));
                for entry in state.scan(key_group(key), &prefix) {
                    let (stored, count) = entry?;
                    for _ in 0..decode_count(&count, ROW_COUNT)? {
                        probing.push(row as u32);
                        met.push(stored[prefix.len()..].to_vec());
                    }
                }
            }
            Ok(())
        })?;
        Ok((probing, met))
    }

    /// The joined rows: the probing rows' columns and the met rows', left first.
    fn joined(
        &self,
        side: Side,
        batch: &RecordBatch,
        probing: &[u32],
        met: &[Vec<u8>],
    ) -> Result<RecordBatch> {
        let indices = UInt32Array::from(probing.to_vec());
        let own: Vec<ArrayRef> = batch
            .columns()
            .iter()
            .map(|column| arrow::compute::take(column, &indices, None))
            .collect::<std::result::Result<_, _>>()?;
        let converter = self.converter(other(side));
        let parser = converter.parser();
        let theirs = converter.convert_rows(met.iter().map(|bytes| parser.parse(bytes)))?;
        let columns = match side {
            Side::Left => own.into_iter().chain(theirs).collect(),
            Side::Right => theirs.into_iter().chain(own).collect(),
        };
        Ok(RecordBatch::try_new(self.output.clone(), columns)?)
    }

    /// Adds the batch's rows (those with a key) to their side's state.
    fn keep(&self, side: Side, batch: &RecordBatch, keys: &[Option<Vec<u8>>]) -> Result<()> {
        let rows = self.converter(side).convert_columns(batch.columns())?;
        let mut counts: HashMap<Vec<u8>, (u16, u64)> = HashMap::new();
        self.state.with(|state| {
            for (row, key) in keys.iter().enumerate() {
                let Some(key) = key else { continue };
                let mut stored = scope(key, side);
                stored.extend_from_slice(rows.row(row).as_ref());
                let group = key_group(key);
                let count = match counts.get(&stored) {
                    Some(&(_, count)) => count,
                    None => match state.get_grouped(group, &stored)? {
                        Some(count) => decode_count(&count, ROW_COUNT)?,
                        None => 0,
                    },
                };
                counts.insert(stored, (group, count + 1));
            }
            let encoded: Vec<(u16, Vec<u8>, [u8; 8])> = counts
                .into_iter()
                .map(|(stored, (group, count))| (group, stored, count.to_be_bytes()))
                .collect();
            state.write_grouped(
                encoded
                    .iter()
                    .map(|(group, stored, count)| (*group, stored.as_slice(), Some(&count[..]))),
            )
        })
    }

    fn fingerprint(&self) -> String {
        let key_types: Vec<String> = self.key_types.iter().map(DataType::to_string).collect();
        format!(
            "regular join {} ({}): left {}, right {}",
            self.describe_join(),
            key_types.join(", "),
            schema_fingerprint(&self.left.schema),
            schema_fingerprint(&self.right.schema)
        )
    }
}

#[async_trait::async_trait]
impl Operator for RegularJoin {
    fn kind(&self) -> OperatorKind {
        OperatorKind::RegularJoin
    }

    async fn process(self: Arc<Self>, input: Traced, ctx: &BatchContext<'_>) -> Result<Processed> {
        let side = ctx.side;
        let keys = self.keys(side, &input.batch)?;
        let (probing, met) = self.matches(side, &keys)?;
        let batch = self.joined(side, &input.batch, &probing, &met)?;
        let origins = probing
            .iter()
            .map(|&row| input.origins[row as usize])
            .collect();
        let join = self.clone();
        let rows = input.batch;
        Ok(Processed {
            traced: Traced { batch, origins },
            missed: Vec::new(),
            writes: vec![StateWrite::new(move || {
                join.keep(side, &rows, &keys).map(|()| Vec::new())
            })],
        })
    }

    fn describe(&self, _input: &InputStream) -> Described {
        Described {
            detail: self.describe_join(),
            schema: self.output.clone(),
            // As in Flink, a regular join's rows carry no event time to close windows by.
            watermark: None,
            state: Some(StateInfo {
                holds: "every row of both streams, by join key".to_string(),
                fingerprint: self.fingerprint(),
            }),
        }
    }

    fn accepts(&self, input: Changelog) -> std::result::Result<(), String> {
        match input {
            Changelog::AppendOnly => Ok(()),
            _ => Err("a regular join of a changelog (retracting what a changed row joined is not supported yet)".to_string()),
        }
    }

    fn reads_second_stream(&self) -> bool {
        true
    }

    fn refuses_rows_run_again(&self) -> Option<String> {
        Some("a row run again would be joined and kept twice".to_string())
    }

    fn keyed_state(&self) -> Option<&Slot> {
        Some(&self.state)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::{Array, Int64Array, StringArray};
    use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
    use arrow::record_batch::RecordBatch;
    use datafusion::physical_expr::expressions::col;

    use super::{JoinSide, RegularJoin};
    use crate::operator::harness::Harness;
    use crate::operator::{Changelog, Operator, Side};

    fn orders() -> SchemaRef {
        Arc::new(Schema::new(vec![
            Field::new("order_id", DataType::Int64, true),
            Field::new("user_id", DataType::Int64, true),
        ]))
    }

    fn users() -> SchemaRef {
        Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, true),
            Field::new("name", DataType::Utf8, true),
        ]))
    }

    fn join() -> Arc<RegularJoin> {
        let (left, right) = (orders(), users());
        let output = Arc::new(Schema::new(
            left.fields()
                .iter()
                .chain(right.fields().iter())
                .map(|f| f.as_ref().clone())
                .collect::<Vec<_>>(),
        ));
        Arc::new(
            RegularJoin::new(
                JoinSide {
                    keys: vec![col("user_id", &left).unwrap()],
                    schema: left,
                },
                JoinSide {
                    keys: vec![col("id", &right).unwrap()],
                    schema: right,
                },
                vec![DataType::Int64],
                output,
            )
            .unwrap(),
        )
    }

    fn order_rows(rows: &[(i64, Option<i64>)]) -> RecordBatch {
        RecordBatch::try_new(
            orders(),
            vec![
                Arc::new(Int64Array::from(
                    rows.iter().map(|r| r.0).collect::<Vec<_>>(),
                )),
                Arc::new(Int64Array::from(
                    rows.iter().map(|r| r.1).collect::<Vec<_>>(),
                )),
            ],
        )
        .unwrap()
    }

    fn user_rows(rows: &[(i64, &str)]) -> RecordBatch {
        RecordBatch::try_new(
            users(),
            vec![
                Arc::new(Int64Array::from(
                    rows.iter().map(|r| r.0).collect::<Vec<_>>(),
                )),
                Arc::new(StringArray::from(
                    rows.iter().map(|r| r.1).collect::<Vec<_>>(),
                )),
            ],
        )
        .unwrap()
    }

    /// The joined rows as (order id, user name), sorted.
    fn pairs(batch: &RecordBatch) -> Vec<(i64, String)> {
        let ids = batch
            .column(0)
            .as_any()
            .downcast_ref::<Int64Array>()
            .unwrap();
        let names = batch
            .column(3)
            .as_any()
            .downcast_ref::<StringArray>()
            .unwrap();
        let mut pairs: Vec<(i64, String)> = (0..batch.num_rows())
            .map(|row| (ids.value(row), names.value(row).to_string()))
            .collect();
        pairs.sort();
        pairs
    }

    #[tokio::test]
    async fn each_pair_is_emitted_once_by_the_later_row_whichever_stream_it_is_on() {
        let dir = tempfile::tempdir().unwrap();
        let harness = Harness::keyed(join(), dir.path(), "run").unwrap();
        // Orders before their user: kept, nothing joined yet; a NULL key joins nothing.
        let (early, _) = harness
            .push(&order_rows(&[(1, Some(7)), (2, Some(8)), (3, None)]))
            .await
            .unwrap();
        assert_eq!(early.batch.num_rows(), 0);
        let (users, _) = harness
            .push_side(&user_rows(&[(7, "ann"), (9, "bob")]), Side::Right)
            .await
            .unwrap();
        assert_eq!(pairs(&users.batch), [(1, "ann".to_string())]);
        assert_eq!(users.origins, [0], "the pair comes from the user row");
        // A later order meets the user in state; a second user row of key 7 is a second match.
        harness
            .push_side(&user_rows(&[(7, "ann2")]), Side::Right)
            .await
            .unwrap();
        let (late, _) = harness
            .push(&order_rows(&[(4, Some(7)), (5, Some(9)), (6, Some(10))]))
            .await
            .unwrap();
        assert_eq!(
            pairs(&late.batch),
            [
                (4, "ann".to_string()),
                (4, "ann2".to_string()),
                (5, "bob".to_string())
            ]
        );
        // The same order twice: both are kept, and both meet a later user of their key.
        harness.push(&order_rows(&[(2, Some(8))])).await.unwrap();
        let (twice, _) = harness
            .push_side(&user_rows(&[(8, "cy")]), Side::Right)
            .await
            .unwrap();
        assert_eq!(
            pairs(&twice.batch),
            [(2, "cy".to_string()), (2, "cy".to_string())]
        );
    }

    #[tokio::test]
    async fn a_batch_whose_writes_are_dropped_keeps_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let harness = Harness::keyed(join(), dir.path(), "run").unwrap();
        harness
            .try_push(&order_rows(&[(1, Some(7))]))
            .await
            .unwrap();
        let (users, _) = harness
            .push_side(&user_rows(&[(7, "ann")]), Side::Right)
            .await
            .unwrap();
        assert_eq!(users.batch.num_rows(), 0);
    }

    #[tokio::test]
    async fn both_streams_rows_are_restored_from_a_checkpoint_in_another_run() {
        let dir = tempfile::tempdir().unwrap();
        let harness = Harness::keyed(join(), dir.path(), "run-1").unwrap();
        harness.push(&order_rows(&[(1, Some(7))])).await.unwrap();
        harness
            .push_side(&user_rows(&[(8, "bo")]), Side::Right)
            .await
            .unwrap();
        let entry = harness.checkpoint_keyed(1).await.unwrap();
        let restored = Harness::keyed(join(), dir.path(), "run-2").unwrap();
        restored.restore_keyed(&entry).await.unwrap();
        let (users, _) = restored
            .push_side(&user_rows(&[(7, "ann")]), Side::Right)
            .await
            .unwrap();
        assert_eq!(pairs(&users.batch), [(1, "ann".to_string())]);
        let (orders, _) = restored.push(&order_rows(&[(2, Some(8))])).await.unwrap();
        assert_eq!(pairs(&orders.batch), [(2, "bo".to_string())]);
    }

    #[test]
    fn a_changelog_is_refused() {
        let join = join();
        assert!(join.accepts(Changelog::AppendOnly).is_ok());
        let refused = join.accepts(Changelog::Retracting).unwrap_err();
        assert!(refused.contains("changelog"), "{refused}");
    }
}
