//! A regular join of two streams, Flink's `a JOIN b ON a.k = b.k` without a
//! band of event time: every row of both streams stays in keyed state under
//! its join key, and a row joins the rows of the other stream that came
//! before it.
//!
//! ```text
//!   a row (key k) ──▶ the b rows of k in state ──▶ (a ‖ b) once per b row   then a[k ‖ row] += 1
//!   b row (key k) ──▶ the a rows of k in state ──▶ (a ‖ b) once per a row   then b[k ‖ row] += 1
//!   state: key group of k │ len k ‖ k ‖ side ‖ hash of the row → how many such rows came ‖ when last ‖ the row
//!   with SET 'table.exec.state.ttl': a row not written for that long is no longer met, and each commit
//!   deletes such rows from one key group in turn (all of them every 128 commits)
//!          (the writes are applied once the batch has gone through the plan)
//! ```
//!
//! Each pair is emitted once, by the later of its two rows: a batch holds rows
//! of one stream, so rows of one batch never meet each other. A row with a
//! NULL in its key joins nothing, as in SQL, and is not kept; one whose key
//! takes more than 16 KiB goes to quarantine with the reason. The state is
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
use twox_hash::XxHash64;

use crate::batch::{condition_mask, equalities, key_columns, row_converter};
use crate::error::Result;
use crate::keyed::{Expiry, MAX_KEY_BYTES, Slot, counted, key_group, read_counted};
use crate::operator::{
    BatchContext, Changelog, Described, Emitted, InputStream, Missed, Operator, OperatorKind,
    Processed, Side, StateInfo, StateWrite, Traced, Watermarks,
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
    /// The ON clause beyond the key equalities, over `output`.
    filter: Option<Arc<dyn PhysicalExpr>>,
    /// The left stream's columns, then the right's.
    output: SchemaRef,
    /// Row counts by join key, side and row.
    state: Slot,
    /// When a row not written again is forgotten (`SET 'table.exec.state.ttl'`).
    expiry: Expiry,
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
    let mut scope = Vec::with_capacity(key.len() + 5 + 16);
    scope.extend_from_slice(&(key.len() as u32).to_be_bytes());
    scope.extend_from_slice(key);
    scope.push(tag(side));
    scope
}

/// A row's place under its scope: a 128-bit hash of its bytes (the row
/// itself, which may be long, is in the value).
fn row_id(row: &[u8]) -> [u8; 16] {
    let mut id = [0; 16];
    id[..8].copy_from_slice(&XxHash64::oneshot(0, row).to_be_bytes());
    id[8..].copy_from_slice(&XxHash64::oneshot(1, row).to_be_bytes());
    id
}

/// The join keys of a batch's rows.
struct Keys {
    /// Each row's key as bytes; `None` for a row with a NULL in its key, or one too long.
    of_rows: Vec<Option<Vec<u8>>>,
    /// The rows whose key is too long to keep.
    too_long: Vec<usize>,
}

/// The rows of the other stream a batch's rows meet.
#[derive(Default)]
struct Met {
    /// For each pair, the probing row's position.
    probing: Vec<u32>,
    /// For each pair, which of `rows` it met.
    met: Vec<usize>,
    /// The other stream's rows met, as bytes, each once.
    rows: Vec<Vec<u8>>,
}

impl RegularJoin {
    /// Joins `left` and `right` on their keys, compared as `key_types`, into
    /// rows of `output` (the left columns, then the right ones) that `filter`,
    /// the rest of the ON clause, keeps.
    pub fn new(
        left: JoinSide,
        right: JoinSide,
        key_types: Vec<DataType>,
        filter: Option<Arc<dyn PhysicalExpr>>,
        output: SchemaRef,
    ) -> Result<Self> {
        Ok(Self {
            key_converter: RowConverter::new(
                key_types.iter().cloned().map(SortField::new).collect(),
            )?,
            key_types,
            rows: [row_converter(&left.schema)?, row_converter(&right.schema)?],
            left,
            right,
            filter,
            output,
            state: Slot::default(),
            expiry: Expiry::default(),
        })
    }

    /// The join, forgetting a row as `expiry` says (after `SET 'table.exec.state.ttl'`).
    pub fn expiring(mut self, expiry: Expiry) -> Self {
        self.expiry = expiry;
        self
    }

    /// Deletes the expired rows of the next key group in turn.
    fn clean_expired(&self) -> Result<()> {
        self.state.with(|state| {
            self.expiry.clean(state, |value| {
                Ok(Some(read_counted(value, ROW_COUNT)?.written_ms))
            })
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
        let keys = equalities(&self.left.keys, &self.right.keys);
        let on = match &self.filter {
            Some(filter) => format!("INNER JOIN ON {keys} AND {filter}"),
            None => format!("INNER JOIN ON {keys}"),
        };
        match self.expiry.ttl_ms() {
            Some(ttl) => format!(
                "{on}; rows kept {} after their last write",
                humantime::format_duration(std::time::Duration::from_millis(ttl.max(0) as u64))
            ),
            None => on,
        }
    }

    /// Each row's join key as bytes, and the rows whose key is too long to keep.
    fn keys(&self, side: Side, batch: &RecordBatch) -> Result<Keys> {
        let columns = key_columns(&self.side(side).keys, &self.key_types, batch)?;
        let rows = self.key_converter.convert_columns(&columns)?;
        let mut too_long = Vec::new();
        let keys = (0..batch.num_rows())
            .map(|row| {
                let key = rows.row(row);
                if columns.iter().any(|c| c.is_null(row)) {
                    None
                } else if key.as_ref().len() > MAX_KEY_BYTES {
                    too_long.push(row);
                    None
                } else {
                    Some(key.as_ref().to_vec())
                }
            })
            .collect();
        Ok(Keys {
            of_rows: keys,
            too_long,
        })
    }

    /// The rows of the other stream each row meets (each key's rows read
    /// once), but for rows whose time to be kept is over.
    fn matches(&self, side: Side, keys: &[Option<Vec<u8>>]) -> Result<Met> {
        let now = self.expiry.now();
        let mut found = Met::default();
        // A key's rows of the other stream: where they are in `found.rows`, and their counts.
        let mut by_key: HashMap<&[u8], Vec<(usize, u64)>> = HashMap::new();
        self.state.with(|state| {
            for (row, key) in keys.iter().enumerate() {
                let Some(key) = key else { continue };
                if !by_key.contains_key(key.as_slice()) {
                    let mut rows = Vec::new();
                    for entry in state.scan(key_group(key), &scope(key, other(side))) {
                        let (_, stored) = entry?;
                        let stored = read_counted(&stored, ROW_COUNT)?;
                        if self.expiry.expired(stored.written_ms, now) {
                            continue;
                        }
                        rows.push((found.rows.len(), stored.count));
                        found.rows.push(stored.rest.to_vec());
                    }
                    by_key.insert(key, rows);
                }
                for &(at, count) in &by_key[key.as_slice()] {
                    for _ in 0..count {
                        found.probing.push(row as u32);
                        found.met.push(at);
                    }
                }
            }
            Ok(())
        })?;
        Ok(found)
    }

    /// The joined rows: the probing rows' columns and the met rows', left first.
    fn joined(&self, side: Side, batch: &RecordBatch, found: &Met) -> Result<RecordBatch> {
        let indices = UInt32Array::from(found.probing.clone());
        let own: Vec<ArrayRef> = batch
            .columns()
            .iter()
            .map(|column| arrow::compute::take(column, &indices, None))
            .collect::<std::result::Result<_, _>>()?;
        let converter = self.converter(other(side));
        let parser = converter.parser();
        let theirs =
            converter.convert_rows(found.met.iter().map(|&at| parser.parse(&found.rows[at])))?;
        let columns = match side {
            Side::Left => own.into_iter().chain(theirs).collect(),
            Side::Right => theirs.into_iter().chain(own).collect(),
        };
        Ok(RecordBatch::try_new(self.output.clone(), columns)?)
    }

    /// Adds the batch's rows (those with a key) to their side's state; an
    /// expired row counts from nothing again.
    fn keep(&self, side: Side, batch: &RecordBatch, keys: &[Option<Vec<u8>>]) -> Result<()> {
        let now = self.expiry.now();
        let rows = self.converter(side).convert_columns(batch.columns())?;
        // Each stored key's group, count so far and row.
        let mut counts: HashMap<Vec<u8>, (u16, u64, &[u8])> = HashMap::new();
        self.state.with(|state| {
            for (row, key) in keys.iter().enumerate() {
                let Some(key) = key else { continue };
                let bytes = rows.row(row);
                let mut stored = scope(key, side);
                stored.extend_from_slice(&row_id(bytes.as_ref()));
                let group = key_group(key);
                let count = match counts.get(&stored) {
                    Some(&(_, count, _)) => count,
                    None => match state.get_grouped(group, &stored)? {
                        Some(value) => {
                            let kept = read_counted(&value, ROW_COUNT)?;
                            match self.expiry.expired(kept.written_ms, now) {
                                true => 0,
                                false => kept.count,
                            }
                        }
                        None => 0,
                    },
                };
                counts.insert(stored, (group, count + 1, rows.row(row).data()));
            }
            let encoded: Vec<(u16, Vec<u8>, Vec<u8>)> = counts
                .into_iter()
                .map(|(stored, (group, count, row))| (group, stored, counted(count, now, row)))
                .collect();
            state.write_grouped(
                encoded.iter().map(|(group, stored, value)| {
                    (*group, stored.as_slice(), Some(value.as_slice()))
                }),
            )
        })
    }

    /// What the state's bytes depend on: the keys' types and both streams'
    /// columns (not the rest of the ON clause, which only filters pairs).
    fn fingerprint(&self) -> String {
        let key_types: Vec<String> = self.key_types.iter().map(DataType::to_string).collect();
        format!(
            "regular join on ({}) by ({}): left {}, right {}",
            equalities(&self.left.keys, &self.right.keys),
            key_types.join(", "),
            schema_fingerprint(&self.left.schema),
            schema_fingerprint(&self.right.schema)
        )
    }
}

/// The joined rows the rest of the ON clause keeps (not those it finds NULL for).
fn kept_by(filter: &Arc<dyn PhysicalExpr>, joined: Traced) -> Result<Traced> {
    let kept = condition_mask(filter, &joined.batch)?;
    Ok(Traced {
        batch: arrow::compute::filter_record_batch(&joined.batch, &kept)?,
        origins: joined
            .origins
            .iter()
            .zip(kept.values().iter())
            .filter_map(|(&origin, keep)| keep.then_some(origin))
            .collect(),
    })
}

#[async_trait::async_trait]
impl Operator for RegularJoin {
    fn kind(&self) -> OperatorKind {
        OperatorKind::RegularJoin
    }

    async fn process(self: Arc<Self>, input: Traced, ctx: &BatchContext<'_>) -> Result<Processed> {
        let side = ctx.side;
        let Keys {
            of_rows: keys,
            too_long,
        } = self.keys(side, &input.batch)?;
        let found = self.matches(side, &keys)?;
        let batch = self.joined(side, &input.batch, &found)?;
        let origins: Vec<usize> = found
            .probing
            .iter()
            .map(|&row| input.origins[row as usize])
            .collect();
        let missed = Missed::quarantine(
            &too_long,
            &input,
            format!(
                "its join key takes more than the {} KiB a regular join keeps rows under",
                MAX_KEY_BYTES / 1024
            ),
        );
        let Traced { batch, origins } = match &self.filter {
            Some(filter) => kept_by(filter, Traced { batch, origins })?,
            None => Traced { batch, origins },
        };
        let join = self.clone();
        let rows = input.batch;
        Ok(Processed {
            traced: Traced { batch, origins },
            missed,
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

    /// A commit cleans one key group of the rows whose time to be kept is over.
    async fn on_watermark(&self, _watermarks: &Watermarks) -> Result<Emitted> {
        self.clean_expired()?;
        Ok(Emitted::default())
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
    use datafusion::logical_expr::Operator;
    use datafusion::physical_expr::PhysicalExpr;
    use datafusion::physical_expr::expressions::{binary, col, lit};

    use super::{JoinSide, RegularJoin};
    use crate::keyed::Expiry;
    use crate::operator::harness::Harness;
    use crate::operator::{Changelog, Operator as _, Side};

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
        join_where(None)
    }

    /// The left stream's columns, then the right's.
    fn joined_schema(left: &Schema, right: &Schema) -> SchemaRef {
        Arc::new(Schema::new(
            left.fields()
                .iter()
                .chain(right.fields().iter())
                .map(|f| f.as_ref().clone())
                .collect::<Vec<_>>(),
        ))
    }

    /// The rest of an ON clause, made for the joined columns.
    type Condition = fn(&Schema) -> Arc<dyn PhysicalExpr>;

    /// The join, with `filter` (over the joined columns) as the rest of its ON clause.
    fn join_where(filter: Option<Condition>) -> Arc<RegularJoin> {
        let (left, right) = (orders(), users());
        let output = joined_schema(&left, &right);
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
                filter.map(|filter| filter(&output)),
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
        let named: Vec<(i64, Option<&str>)> =
            rows.iter().map(|&(id, name)| (id, Some(name))).collect();
        maybe_named(&named)
    }

    fn maybe_named(rows: &[(i64, Option<&str>)]) -> RecordBatch {
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

    #[tokio::test]
    async fn the_rest_of_the_on_clause_keeps_the_pairs_it_is_true_for_not_null() {
        let dir = tempfile::tempdir().unwrap();
        let not_bob: Condition = |schema| {
            binary(
                col("name", schema).unwrap(),
                Operator::NotEq,
                lit("bob"),
                schema,
            )
            .unwrap()
        };
        let harness = Harness::keyed(join_where(Some(not_bob)), dir.path(), "run").unwrap();
        harness
            .push_side(
                &maybe_named(&[(7, Some("ann")), (7, Some("bob")), (7, None)]),
                Side::Right,
            )
            .await
            .unwrap();
        let (joined, _) = harness.push(&order_rows(&[(1, Some(7))])).await.unwrap();
        assert_eq!(pairs(&joined.batch), [(1, "ann".to_string())]);
        assert_eq!(joined.origins, [0]);
    }

    #[tokio::test]
    async fn a_row_whose_key_is_too_long_to_keep_goes_to_quarantine() {
        let dir = tempfile::tempdir().unwrap();
        let by_name = |schema: &SchemaRef| col("name", schema).unwrap();
        let (left, right) = (users(), users());
        let output = joined_schema(&left, &right);
        let join = RegularJoin::new(
            JoinSide {
                keys: vec![by_name(&left)],
                schema: left,
            },
            JoinSide {
                keys: vec![by_name(&right)],
                schema: right,
            },
            vec![DataType::Utf8],
            None,
            output,
        )
        .unwrap();
        let harness = Harness::keyed(Arc::new(join), dir.path(), "run").unwrap();
        let long = "x".repeat(70_000);
        let (_, missed) = harness
            .push(&user_rows(&[(1, "short"), (2, long.as_str())]))
            .await
            .unwrap();
        assert_eq!(missed.len(), 1);
        assert_eq!(missed[0].origins, [1]);
        assert!(missed[0].reason.contains("16 KiB"), "{}", missed[0].reason);
        let (joined, _) = harness
            .push_side(&user_rows(&[(3, "short"), (4, long.as_str())]), Side::Right)
            .await
            .unwrap();
        assert_eq!(
            joined.batch.num_rows(),
            1,
            "the short key joins; the long one is not kept"
        );
    }

    /// The test's own wall clock, in ms.
    static NOW_MS: std::sync::atomic::AtomicI64 = std::sync::atomic::AtomicI64::new(1_000);

    fn test_clock() -> i64 {
        NOW_MS.load(std::sync::atomic::Ordering::Relaxed)
    }

    #[tokio::test]
    async fn with_a_ttl_a_row_not_written_for_that_long_is_no_longer_met_and_is_cleaned() {
        use std::sync::atomic::Ordering;
        let dir = tempfile::tempdir().unwrap();
        let join = Arc::into_inner(join())
            .unwrap()
            .expiring(Expiry::after(Some(1_000)).with_clock(test_clock));
        let join = Arc::new(join);
        let mut harness = Harness::keyed(join.clone(), dir.path(), "run").unwrap();
        harness
            .push_side(&user_rows(&[(7, "ann"), (8, "bo")]), Side::Right)
            .await
            .unwrap();
        NOW_MS.store(1_500, Ordering::Relaxed);
        // ann is written again: her time to be kept starts over; bo's does not.
        harness
            .push_side(&user_rows(&[(7, "ann")]), Side::Right)
            .await
            .unwrap();
        NOW_MS.store(2_200, Ordering::Relaxed);
        let (joined, _) = harness
            .push(&order_rows(&[(1, Some(7)), (2, Some(8))]))
            .await
            .unwrap();
        assert_eq!(
            pairs(&joined.batch),
            [(1, "ann".to_string()), (1, "ann".to_string())],
            "ann came twice and is kept; bo expired at 2,000"
        );
        // Every key group is cleaned in turn, one per commit: bo's row is deleted.
        let before = join
            .state
            .with(|state| Ok(state.entries().count()))
            .unwrap();
        for _ in 0..crate::keyed::KEY_GROUPS {
            harness.watermark(0).await.unwrap();
        }
        let after = join
            .state
            .with(|state| Ok(state.entries().count()))
            .unwrap();
        assert_eq!(
            before - after,
            1,
            "bo's row is gone, ann's and the orders stay"
        );
    }

    #[test]
    fn a_changelog_is_refused() {
        let join = join();
        assert!(join.accepts(Changelog::AppendOnly).is_ok());
        let refused = join.accepts(Changelog::Retracting).unwrap_err();
        assert!(refused.contains("changelog"), "{refused}");
    }
}
