//! Flink's deduplication and Top-N: `ROW_NUMBER() OVER (PARTITION BY k
//! ORDER BY …)` under `WHERE rn <= N` (or `rn = 1`), keeping each
//! partition's first N rows by the order, and taking back a row that a new
//! one pushes out of them.
//!
//! ```text
//!   ORDER BY PROCTIME() ASC (keep first):  row ──▶ count[k] < N ? +I (row, count[k] + 1) : nothing   (append-only)
//!   any other order (keep last, top N by a column, by event time):
//!     row ──▶ its place p among k's ranked rows ──▶ p >= N: nothing
//!             otherwise: -U each row at p.. (-D the one pushed past N), then +I (row, p + 1), +U the rest one rank lower
//!   state: partition key → how many ‖ when last written ‖ [the ranked rows: order key, row]
//!          written only when a row enters the first N, so with SET 'table.exec.state.ttl' a partition is
//!          forgotten that long after its last such row, as in Flink
//!   over an input that takes rows back (a GROUP BY's changing results; Flink's RetractableTopNFunction):
//!     every row of a partition is kept, not only the first N
//!     -U/-D row at p ──▶ p >= N: nothing
//!                       otherwise: -U each rank from p + 1 on (-D the last, if it empties), +U the rows one rank higher,
//!                       the first row past N coming in at N
//! ```
//!
//! Rows of one batch are taken in order. Rows that tie on the order keep their
//! arrival order (the earlier ranks first), but for a `rn = 1` on a descending
//! order, Flink's deduplication keeping the last row, where the later row wins.

use std::collections::HashMap;
use std::sync::Arc;

use arrow::array::{ArrayRef, Int64Array};
use arrow::datatypes::{DataType, SchemaRef};
use arrow::record_batch::RecordBatch;
use arrow::row::{RowConverter, SortField};
use datafusion::physical_expr::PhysicalExpr;

use crate::batch::{evaluate, row_converter};
use crate::error::Result;
use crate::keyed::{
    Expiry, MAX_KEY_BYTES, Slot, counted, decode_count, push_part, read_counted, take_part,
};
use crate::operator::{
    BatchContext, Changelog, Described, Emitted, InputStream, Missed, Operator, OperatorKind,
    Processed, RowKind, StateInfo, StateWrite, Traced, Watermarks,
};

/// What the state's values are, in errors.
const RANKED: &str = "a Top-N partition's ranked rows";

/// The order rows are ranked by.
#[derive(Debug)]
pub enum RankOrder {
    /// Arrival (processing time): ascending keeps the first rows, descending the last.
    Arrival { descending: bool },
    /// The values of the ORDER BY expressions, sorted as `fields` say.
    Values {
        exprs: Vec<Arc<dyn PhysicalExpr>>,
        fields: Vec<SortField>,
    },
}

/// The parts of a [`TopN`].
#[derive(Debug)]
pub struct TopNParts {
    pub partition: Vec<(Arc<dyn PhysicalExpr>, DataType)>,
    pub order: RankOrder,
    /// The OVER clause and bound as SQL, for the plan and the fingerprint.
    pub described: String,
    /// The PARTITION BY expressions as SQL (keeping the first rows, the
    /// fingerprint is that of the unbounded numbering it replaced, whose
    /// checkpointed counts it reads).
    pub partition_sql: String,
    /// The N: how many rows of each partition are kept.
    pub limit: u64,
    /// Whether a row that ties with ranked rows goes before them (Flink's
    /// deduplication keeping the last row by a descending time).
    pub ties_first: bool,
    /// What keys its rows: the partition's columns (and the number, when N > 1),
    /// if the partition is by columns; none otherwise.
    pub key: Vec<String>,
    /// Whether its input takes rows back: every row of a partition is kept,
    /// as one past the first N comes in when a ranked row is taken back.
    pub keeps_all: bool,
    /// The input's columns.
    pub input: SchemaRef,
    /// The input's columns and the number.
    pub output: SchemaRef,
}

/// Keeps each partition's first N rows by an order, numbered.
#[derive(Debug)]
pub struct TopN {
    partition: Vec<Arc<dyn PhysicalExpr>>,
    key_converter: RowConverter,
    order: RankOrder,
    /// The order's values as bytes that compare as the order does.
    order_converter: Option<RowConverter>,
    /// Whether a row that ties with ranked rows goes before them.
    ties_first: bool,
    key: Vec<String>,
    described: String,
    partition_sql: String,
    limit: u64,
    keeps_all: bool,
    rows: RowConverter,
    key_types: Vec<DataType>,
    output: SchemaRef,
    state: Slot,
    expiry: Expiry,
}

/// One ranked row as kept: its order key and the row.
#[derive(Debug, Clone)]
struct Ranked {
    order: Vec<u8>,
    row: Vec<u8>,
}

/// A partition's state while a batch is taken in.
#[derive(Debug, Default)]
struct Partition {
    /// Rows numbered so far, at most N (what keep-first keeps).
    count: u64,
    /// The ranked rows, first rank first (for every other order).
    ranked: Vec<Ranked>,
    changed: bool,
}

/// An input row as a partition takes it: as bytes, with its order key, and
/// its position in the batch.
struct Incoming<'a> {
    row: &'a [u8],
    order: &'a [u8],
    from: usize,
}

/// The rows a batch makes: each as bytes, its number, its kind and the input row it comes from.
#[derive(Default)]
struct Emits {
    rows: Vec<Vec<u8>>,
    numbers: Vec<i64>,
    kinds: Vec<RowKind>,
    origins: Vec<usize>,
}

impl Emits {
    fn push(&mut self, row: &[u8], number: usize, kind: RowKind, from: usize) {
        self.rows.push(row.to_vec());
        self.numbers.push(number as i64);
        self.kinds.push(kind);
        self.origins.push(from);
    }
}

fn encode(partition: &Partition, now: i64) -> Vec<u8> {
    let mut rest = Vec::new();
    for ranked in &partition.ranked {
        push_part(&mut rest, &ranked.order);
        push_part(&mut rest, &ranked.row);
    }
    counted(partition.count, now, &rest)
}

/// A partition's state as [`encode`] wrote it, or as the unbounded ROW_NUMBER
/// of earlier versions did (a count of 8 bytes, kept as if written now).
fn decode(value: &[u8], now: i64) -> Result<(Partition, i64)> {
    if value.len() == 8 {
        // Written again in this version's form, with a time for the TTL to run from.
        let partition = Partition {
            count: decode_count(value, RANKED)?,
            changed: true,
            ..Partition::default()
        };
        return Ok((partition, now));
    }
    let kept = read_counted(value, RANKED)?;
    let mut rest = kept.rest;
    let mut ranked = Vec::new();
    while !rest.is_empty() {
        let order = take_part(&mut rest, RANKED)?;
        let row = take_part(&mut rest, RANKED)?;
        ranked.push(Ranked { order, row });
    }
    let partition = Partition {
        count: kept.count,
        ranked,
        changed: false,
    };
    Ok((partition, kept.written_ms))
}

impl TopN {
    pub fn new(parts: TopNParts) -> Result<Self> {
        let key_types: Vec<DataType> = parts.partition.iter().map(|(_, t)| t.clone()).collect();
        let order_converter = match &parts.order {
            RankOrder::Arrival { .. } => None,
            RankOrder::Values { fields, .. } => Some(RowConverter::new(fields.clone())?),
        };
        Ok(Self {
            key_converter: RowConverter::new(
                key_types.iter().cloned().map(SortField::new).collect(),
            )?,
            partition: parts.partition.into_iter().map(|(e, _)| e).collect(),
            order: parts.order,
            order_converter,
            ties_first: parts.ties_first,
            key: parts.key,
            described: parts.described,
            partition_sql: parts.partition_sql,
            limit: parts.limit,
            keeps_all: parts.keeps_all,
            rows: row_converter(&parts.input)?,
            key_types,
            output: parts.output,
            state: Slot::default(),
            expiry: Expiry::default(),
        })
    }

    /// The operator, forgetting a partition as `expiry` says (after `SET 'table.exec.state.ttl'`).
    pub fn expiring(mut self, expiry: Expiry) -> Self {
        self.expiry = expiry;
        self
    }

    /// Whether it keeps each partition's first rows in arrival order: it
    /// never takes a row back.
    fn keeps_first_arrivals(&self) -> bool {
        matches!(self.order, RankOrder::Arrival { descending: false })
    }

    /// Each row's order key, as bytes that compare as the order does (none for arrival order).
    fn order_keys(&self, batch: &RecordBatch) -> Result<Option<arrow::row::Rows>> {
        let (RankOrder::Values { exprs, .. }, Some(converter)) =
            (&self.order, &self.order_converter)
        else {
            return Ok(None);
        };
        let columns: Vec<ArrayRef> = exprs
            .iter()
            .map(|e| evaluate(e, batch))
            .collect::<Result<_>>()?;
        Ok(Some(converter.convert_columns(&columns)?))
    }

    /// Where a row with order key `order` goes among `ranked`.
    fn place(&self, ranked: &[Ranked], order: &[u8]) -> usize {
        match (&self.order, self.ties_first) {
            (RankOrder::Arrival { .. }, _) => 0,
            (RankOrder::Values { .. }, true) => {
                ranked.partition_point(|r| r.order.as_slice() < order)
            }
            (RankOrder::Values { .. }, false) => {
                ranked.partition_point(|r| r.order.as_slice() <= order)
            }
        }
    }

    /// Takes an incoming row into `partition`: what it emits.
    fn take_row(&self, partition: &mut Partition, incoming: Incoming<'_>, out: &mut Emits) {
        let Incoming { row, order, from } = incoming;
        let limit = self.limit as usize;
        if self.keeps_first_arrivals() {
            if partition.count < self.limit {
                partition.count += 1;
                partition.changed = true;
                out.push(row, partition.count as usize, RowKind::Insert, from);
            }
            return;
        }
        let at = self.place(&partition.ranked, order);
        if at >= limit && !self.keeps_all {
            return;
        }
        if at < limit {
            let before = partition.ranked.len();
            for (i, ranked) in partition.ranked.iter().enumerate().take(limit).skip(at) {
                let kind = match i + 1 >= limit {
                    true => RowKind::Delete,
                    false => RowKind::UpdateBefore,
                };
                out.push(&ranked.row, i + 1, kind, from);
            }
            out.push(row, at + 1, RowKind::Insert, from);
            for (i, ranked) in partition
                .ranked
                .iter()
                .enumerate()
                .take(before.min(limit - 1))
                .skip(at)
            {
                out.push(&ranked.row, i + 2, RowKind::UpdateAfter, from);
            }
        }
        let ranked = Ranked {
            order: order.to_vec(),
            row: row.to_vec(),
        };
        partition.ranked.insert(at, ranked);
        if !self.keeps_all {
            partition.ranked.truncate(limit);
        }
        partition.count = partition.ranked.len() as u64;
        partition.changed = true;
    }

    /// Takes an incoming row back out of `partition`: what it emits. Every
    /// rank from the row's on changes hands: the rows there are taken back,
    /// and the rows after them come one rank higher (the first past N coming
    /// in); a rank left empty is deleted. A row the partition does not hold
    /// changes nothing. Returns whether it held the row.
    fn retract_row(
        &self,
        partition: &mut Partition,
        incoming: Incoming<'_>,
        out: &mut Emits,
    ) -> bool {
        let Incoming { row, order, from } = incoming;
        let limit = self.limit as usize;
        let first = partition
            .ranked
            .partition_point(|r| r.order.as_slice() < order);
        let Some(at) = partition.ranked[first..]
            .iter()
            .take_while(|r| r.order == order)
            .position(|r| r.row == row)
            .map(|i| first + i)
        else {
            return false;
        };
        let before = partition.ranked.len();
        let ranked_after = (before - 1).min(limit);
        for i in at..before.min(limit) {
            let kind = match i < ranked_after {
                true => RowKind::UpdateBefore,
                false => RowKind::Delete,
            };
            out.push(&partition.ranked[i].row, i + 1, kind, from);
        }
        partition.ranked.remove(at);
        for i in at..ranked_after {
            out.push(&partition.ranked[i].row, i + 1, RowKind::UpdateAfter, from);
        }
        partition.count = partition.ranked.len() as u64;
        partition.changed = true;
        true
    }

    fn fingerprint(&self) -> String {
        match self.keeps_first_arrivals() {
            true => format!(
                "ROW_NUMBER() OVER (PARTITION BY {} ORDER BY PROCTIME()): {:?}",
                self.partition_sql, self.key_types
            ),
            false if self.keeps_all => format!(
                "{} over rows taken back, every row kept: {:?}",
                self.described, self.key_types
            ),
            false => format!("{}: {:?}", self.described, self.key_types),
        }
    }
}

#[async_trait::async_trait]
impl Operator for TopN {
    /// Keeping the first rows by arrival, it takes the place (the id and the
    /// counts) of the unbounded ROW_NUMBER that earlier versions ran.
    fn kind(&self) -> OperatorKind {
        match self.keeps_first_arrivals() {
            true => OperatorKind::RowNumber,
            false => OperatorKind::TopN,
        }
    }

    async fn process(self: Arc<Self>, input: Traced, _ctx: &BatchContext<'_>) -> Result<Processed> {
        let keys = super::partition_keys_of(&self.partition, &self.key_converter, &input.batch)?;
        let orders = self.order_keys(&input.batch)?;
        let rows = self.rows.convert_columns(input.batch.columns())?;
        let now = self.expiry.now();
        let mut partitions: HashMap<Vec<u8>, Partition> = HashMap::new();
        let mut out = Emits::default();
        let mut too_long = Vec::new();
        let mut unheld = Vec::new();
        self.state.with(|state| {
            for (row, key) in keys.into_iter().enumerate() {
                if key.len() > MAX_KEY_BYTES {
                    too_long.push(row);
                    continue;
                }
                if !partitions.contains_key(&key) {
                    let partition = match state.get(&key)? {
                        Some(value) => {
                            let (partition, written) = decode(&value, now)?;
                            match self.expiry.expired(written, now) {
                                true => Partition::default(),
                                false => partition,
                            }
                        }
                        None => Partition::default(),
                    };
                    partitions.insert(key.clone(), partition);
                }
                let partition = partitions.get_mut(&key).expect("just loaded");
                let order = orders.as_ref().map_or(&[][..], |o| o.row(row).data());
                let incoming = Incoming {
                    row: rows.row(row).data(),
                    order,
                    from: row,
                };
                match input.retracts(row) {
                    true => {
                        // Without a TTL, every row taken back was taken in.
                        let held = self.retract_row(partition, incoming, &mut out);
                        if !held && self.expiry.ttl_ms().is_none() {
                            unheld.push(row);
                        }
                    }
                    false => self.take_row(partition, incoming, &mut out),
                }
            }
            Ok(())
        })?;
        let parser = self.rows.parser();
        let mut columns = self
            .rows
            .convert_rows(out.rows.iter().map(|row| parser.parse(row)))?;
        columns.push(Arc::new(Int64Array::from(out.numbers)));
        let options =
            arrow::record_batch::RecordBatchOptions::new().with_row_count(Some(out.origins.len()));
        let batch = RecordBatch::try_new_with_options(self.output.clone(), columns, &options)?;
        let traced = Traced {
            batch,
            origins: out.origins.iter().map(|&row| input.origins[row]).collect(),
            kinds: (!self.keeps_first_arrivals()).then_some(out.kinds),
        };
        let mut missed = Missed::quarantine(
            &too_long,
            &input,
            format!(
                "its PARTITION BY key takes more than the {} KiB a Top-N keeps rows under",
                MAX_KEY_BYTES / 1024
            ),
        );
        missed.extend(Missed::quarantine(
            &unheld,
            &input,
            "it takes back a row the Top-N never ranked (a changelog update without its old row?)"
                .to_string(),
        ));
        let changes = partitions
            .into_iter()
            .filter(|(_, partition)| partition.changed)
            .map(|(key, partition)| {
                let value = encode(&partition, now);
                (key, Some(value))
            })
            .collect();
        Ok(Processed {
            traced,
            missed,
            writes: vec![StateWrite::keyed(self, changes)],
        })
    }

    fn describe(&self, input: &InputStream) -> Described {
        let ttl = self.expiry.describe("partitions", "their last ranked row");
        let holds = match (self.keeps_first_arrivals(), self.keeps_all) {
            (true, _) => "how many rows of each partition were numbered, up to N",
            (false, true) => "every row of each partition, ranked (its input takes rows back)",
            (false, false) => "each partition's ranked rows, up to N",
        };
        Described {
            detail: format!("{}{ttl}", self.described),
            schema: self.output.clone(),
            // Keeping the first rows by arrival passes rows on as they come, with their times.
            watermark: match self.keeps_first_arrivals() {
                true => input.watermark.clone(),
                false => None,
            },
            state: Some(StateInfo {
                holds: holds.to_string(),
                fingerprint: self.fingerprint(),
            }),
        }
    }

    fn accepts(&self, input: Changelog) -> std::result::Result<(), String> {
        match input {
            Changelog::AppendOnly => Ok(()),
            Changelog::Retracting if self.keeps_all => Ok(()),
            Changelog::Retracting => Err(
                "a Top-N planned for an append-only input over a retracting stream".to_string(),
            ),
            Changelog::Upsert => Err(
                "a Top-N over an upsert stream (its updates carry no old row to take back out of the ranking)".to_string(),
            ),
        }
    }

    /// Keeping the first rows by arrival appends; any other order takes rows
    /// back, under the partition (and the number).
    fn emits(&self, _input: Changelog, _key: &[String]) -> (Changelog, Vec<String>) {
        match self.keeps_first_arrivals() {
            true => (Changelog::AppendOnly, Vec::new()),
            false => (Changelog::Retracting, self.key.clone()),
        }
    }

    fn refuses_rows_run_again(&self) -> Option<String> {
        Some("a row run again would be ranked twice".to_string())
    }

    fn runs_over_aggregated_changes(&self) -> bool {
        true
    }

    /// A commit cleans one key group of the partitions whose time to be kept is over.
    async fn on_watermark(&self, _watermarks: &Watermarks) -> Result<Emitted> {
        self.expiry.clean(&self.state, |value| match value.len() {
            // An earlier version's count: when it was written is not known.
            8 => Ok(None),
            _ => Ok(Some(read_counted(value, RANKED)?.written_ms)),
        })?;
        Ok(Emitted::default())
    }

    fn keyed_state(&self) -> Option<&Slot> {
        Some(&self.state)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::sync::Arc;

    use arrow::array::{Array, Int64Array, StringArray};
    use arrow::compute::SortOptions;
    use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
    use arrow::record_batch::RecordBatch;
    use arrow::row::SortField;
    use datafusion::physical_expr::expressions::col;

    use super::{RankOrder, TopN, TopNParts};
    use crate::operator::harness::Harness;
    use crate::operator::{Changelog, Operator, RowKind, Traced};

    fn input() -> SchemaRef {
        Arc::new(Schema::new(vec![
            Field::new("category", DataType::Utf8, true),
            Field::new("item", DataType::Int64, true),
            Field::new("amount", DataType::Int64, true),
        ]))
    }

    fn top_n(order: RankOrder, limit: u64, ties_first: bool) -> Arc<TopN> {
        ranking(order, limit, ties_first, false)
    }

    /// A Top-N; `keeps_all` for an input that takes rows back.
    fn ranking(order: RankOrder, limit: u64, ties_first: bool, keeps_all: bool) -> Arc<TopN> {
        let schema = input();
        let mut fields: Vec<Field> = schema.fields().iter().map(|f| f.as_ref().clone()).collect();
        fields.push(Field::new("rn", DataType::Int64, false));
        Arc::new(
            TopN::new(TopNParts {
                partition: vec![(col("category", &schema).unwrap(), DataType::Utf8)],
                order,
                described: "test".to_string(),
                partition_sql: "category".to_string(),
                limit,
                ties_first,
                keeps_all,
                key: Vec::new(),
                input: schema,
                output: Arc::new(Schema::new(fields)),
            })
            .unwrap(),
        )
    }

    fn by_amount_descending() -> RankOrder {
        let schema = input();
        RankOrder::Values {
            exprs: vec![col("amount", &schema).unwrap()],
            fields: vec![SortField::new_with_options(
                DataType::Int64,
                SortOptions {
                    descending: true,
                    nulls_first: true,
                },
            )],
        }
    }

    fn rows(rows: &[(&str, i64, i64)]) -> RecordBatch {
        RecordBatch::try_new(
            input(),
            vec![
                Arc::new(StringArray::from(
                    rows.iter().map(|r| r.0).collect::<Vec<_>>(),
                )),
                Arc::new(Int64Array::from(
                    rows.iter().map(|r| r.1).collect::<Vec<_>>(),
                )),
                Arc::new(Int64Array::from(
                    rows.iter().map(|r| r.2).collect::<Vec<_>>(),
                )),
            ],
        )
        .unwrap()
    }

    /// The rows as (kind, category, item, rank), in order.
    fn changes(traced: &Traced) -> Vec<(RowKind, String, i64, i64)> {
        let batch = &traced.batch;
        let text = |c: usize| {
            batch
                .column(c)
                .as_any()
                .downcast_ref::<StringArray>()
                .unwrap()
                .clone()
        };
        let int = |c: usize| {
            batch
                .column(c)
                .as_any()
                .downcast_ref::<Int64Array>()
                .unwrap()
                .clone()
        };
        let (categories, items, ranks) = (text(0), int(1), int(3));
        (0..batch.num_rows())
            .map(|row| {
                let kind = traced.kinds.as_ref().map_or(RowKind::Insert, |k| k[row]);
                (
                    kind,
                    categories.value(row).to_string(),
                    items.value(row),
                    ranks.value(row),
                )
            })
            .collect()
    }

    #[tokio::test]
    async fn keeping_the_first_rows_appends_and_stops_writing_once_n_rows_came() {
        let dir = tempfile::tempdir().unwrap();
        let operator = top_n(RankOrder::Arrival { descending: false }, 2, false);
        let harness = Harness::keyed(operator.clone(), dir.path(), "run").unwrap();
        let (out, _) = harness
            .push(&rows(&[("a", 1, 0), ("b", 2, 0), ("a", 3, 0), ("a", 4, 0)]))
            .await
            .unwrap();
        assert!(out.kinds.is_none(), "append-only");
        let got: Vec<(String, i64, i64)> = changes(&out)
            .into_iter()
            .map(|(_, c, i, r)| (c, i, r))
            .collect();
        assert_eq!(
            got,
            [
                ("a".to_string(), 1, 1),
                ("b".to_string(), 2, 1),
                ("a".to_string(), 3, 2)
            ]
        );
        let entries = || {
            operator
                .state
                .with(|state| Ok(state.entries().count()))
                .unwrap()
        };
        let before = operator.state.with(|state| state.digest()).unwrap();
        let (out, _) = harness.push(&rows(&[("a", 5, 0)])).await.unwrap();
        assert_eq!(out.batch.num_rows(), 0);
        assert_eq!(
            operator.state.with(|state| state.digest()).unwrap(),
            before,
            "a row past the first N writes nothing (so a TTL runs from the N-th row, as in Flink)"
        );
        assert_eq!(entries(), 2);
    }

    #[test]
    fn an_earlier_versions_count_reads_as_a_partition_that_numbered_that_many_rows() {
        let (partition, written) = super::decode(&5u64.to_be_bytes(), 42).unwrap();
        assert_eq!(
            (partition.count, partition.ranked.len(), written),
            (5, 0, 42)
        );
        let operator = top_n(RankOrder::Arrival { descending: false }, 1, false);
        assert_eq!(operator.kind(), crate::operator::OperatorKind::RowNumber);
        assert!(
            operator
                .fingerprint()
                .starts_with("ROW_NUMBER() OVER (PARTITION BY category ORDER BY PROCTIME())")
        );
    }

    #[tokio::test]
    async fn keeping_the_last_row_replaces_it_and_takes_the_old_one_back_first() {
        use RowKind::{Delete, Insert};
        let dir = tempfile::tempdir().unwrap();
        let operator = top_n(RankOrder::Arrival { descending: true }, 1, false);
        let harness = Harness::keyed(operator, dir.path(), "run").unwrap();
        let (out, _) = harness
            .push(&rows(&[("a", 1, 0), ("a", 2, 0)]))
            .await
            .unwrap();
        let a = |item| ("a".to_string(), item, 1);
        let change = |kind, (c, i, r): (String, i64, i64)| (kind, c, i, r);
        assert_eq!(
            changes(&out),
            [
                change(Insert, a(1)),
                change(Delete, a(1)),
                change(Insert, a(2))
            ]
        );
        assert_eq!(operator_emits(Changelog::Retracting), Changelog::Retracting);
    }

    fn operator_emits(input: Changelog) -> Changelog {
        top_n(RankOrder::Arrival { descending: true }, 1, false)
            .emits(input, &[])
            .0
    }

    /// A checkpoint of `harness`, restored into `operator` in a run of its own.
    async fn restart(
        harness: &Harness,
        operator: Arc<TopN>,
        dir: &std::path::Path,
        step: i64,
    ) -> Harness {
        let entry = harness.checkpoint_keyed(step).await.unwrap();
        let restarted = Harness::keyed(operator, dir, &format!("run-{step}")).unwrap();
        restarted.restore_keyed(&entry).await.unwrap();
        restarted
    }

    /// A small random generator, the same run after run.
    struct Lcg(u64);

    impl Lcg {
        fn below(&mut self, n: u64) -> u64 {
            self.0 = self
                .0
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            (self.0 >> 33) % n
        }
    }

    #[tokio::test]
    async fn a_top_n_by_a_column_always_holds_what_sorting_every_row_gives_across_restarts() {
        for (limit, ties_first) in [(1, false), (1, true), (3, false)] {
            let dir = tempfile::tempdir().unwrap();
            let make = || top_n(by_amount_descending(), limit, ties_first);
            let mut harness = Harness::keyed(make(), dir.path(), "run-0").unwrap();
            let mut random = Lcg(limit * 2 + ties_first as u64);
            // Every row so far, by category, in arrival order.
            let mut seen: BTreeMap<String, Vec<(i64, i64)>> = BTreeMap::new();
            let mut net: BTreeMap<(String, i64, i64), i64> = BTreeMap::new();
            let mut item = 0;
            for step in 0..80 {
                if step % 30 == 29 {
                    harness = restart(&harness, make(), dir.path(), step).await;
                }
                let mut batch = Vec::new();
                for _ in 0..1 + random.below(4) {
                    let category = ["a", "b"][random.below(2) as usize];
                    item += 1;
                    let amount = random.below(5) as i64;
                    batch.push((category, item, amount));
                    seen.entry(category.to_string())
                        .or_default()
                        .push((item, amount));
                }
                let (out, _) = harness.push(&rows(&batch)).await.unwrap();
                for (kind, category, item, rank) in changes(&out) {
                    let count = net.entry((category, item, rank)).or_insert(0);
                    *count += if kind.is_retraction() { -1 } else { 1 };
                }
                net.retain(|_, count| *count != 0);
                let mut expected = BTreeMap::new();
                for (category, items) in &seen {
                    let mut sorted: Vec<(usize, &(i64, i64))> = items.iter().enumerate().collect();
                    // By amount, highest first; equal amounts by arrival (the latest first when ties go first).
                    sorted.sort_by(|(i, (_, a)), (j, (_, b))| {
                        b.cmp(a).then(if ties_first { j.cmp(i) } else { i.cmp(j) })
                    });
                    for (rank, (_, (item, _))) in
                        sorted.into_iter().take(limit as usize).enumerate()
                    {
                        expected.insert((category.clone(), *item, rank as i64 + 1), 1);
                    }
                }
                assert_eq!(
                    net, expected,
                    "limit {limit}, ties first {ties_first}, step {step}"
                );
            }
        }
    }

    /// The first `limit` rows of each category by amount, highest first,
    /// equal amounts in arrival order: (category, item, rank).
    fn ranked(
        live: &BTreeMap<String, Vec<(i64, i64)>>,
        limit: u64,
    ) -> BTreeMap<(String, i64), i64> {
        let mut expected = BTreeMap::new();
        for (category, items) in live {
            let mut sorted = items.clone();
            sorted.sort_by(|(_, a), (_, b)| b.cmp(a));
            for (rank, (item, _)) in sorted.into_iter().take(limit as usize).enumerate() {
                expected.insert((category.clone(), rank as i64 + 1), item);
            }
        }
        expected
    }

    #[tokio::test]
    async fn over_rows_taken_back_the_next_row_comes_in_and_every_rank_reads_right_across_restarts()
    {
        for limit in [1, 3] {
            let dir = tempfile::tempdir().unwrap();
            let make = || ranking(by_amount_descending(), limit, false, true);
            assert!(make().accepts(Changelog::Retracting).is_ok());
            assert!(make().accepts(Changelog::Upsert).is_err());
            let mut harness = Harness::keyed(make(), dir.path(), "run-0").unwrap();
            let mut random = Lcg(limit + 7);
            // The rows in, by category, in arrival order.
            let mut live: BTreeMap<String, Vec<(i64, i64)>> = BTreeMap::new();
            // What a target upserting by (category, rank) holds, and what one
            // taking each retraction back holds.
            let mut by_rank: BTreeMap<(String, i64), i64> = BTreeMap::new();
            let mut net: BTreeMap<(String, i64, i64), i64> = BTreeMap::new();
            let mut item = 0;
            for step in 0..120 {
                if step % 40 == 39 {
                    harness = restart(&harness, make(), dir.path(), step).await;
                }
                let mut batch = Vec::new();
                let mut kinds = Vec::new();
                for _ in 0..1 + random.below(4) {
                    let category = ["a", "b"][random.below(2) as usize];
                    let rows = live.entry(category.to_string()).or_default();
                    if !rows.is_empty() && random.below(3) == 0 {
                        let (gone, amount) = rows.remove(random.below(rows.len() as u64) as usize);
                        batch.push((category, gone, amount));
                        kinds.push(
                            [RowKind::UpdateBefore, RowKind::Delete][random.below(2) as usize],
                        );
                    } else {
                        item += 1;
                        let amount = random.below(6) as i64;
                        rows.push((item, amount));
                        batch.push((category, item, amount));
                        kinds.push(
                            [RowKind::Insert, RowKind::UpdateAfter][random.below(2) as usize],
                        );
                    }
                }
                let (out, _) = harness.push_changes(&rows(&batch), &kinds).await.unwrap();
                for (kind, category, item, rank) in changes(&out) {
                    let count = net.entry((category.clone(), item, rank)).or_insert(0);
                    *count += if kind.is_retraction() { -1 } else { 1 };
                    match kind {
                        RowKind::Insert | RowKind::UpdateAfter => {
                            by_rank.insert((category, rank), item);
                        }
                        RowKind::Delete => {
                            by_rank.remove(&(category, rank));
                        }
                        RowKind::UpdateBefore => {}
                    }
                }
                net.retain(|_, count| *count != 0);
                let expected = ranked(&live, limit);
                let expected_net: BTreeMap<(String, i64, i64), i64> = expected
                    .iter()
                    .map(|((category, rank), item)| ((category.clone(), *item, *rank), 1))
                    .collect();
                assert_eq!(net, expected_net, "limit {limit}, step {step}");
                assert_eq!(by_rank, expected, "limit {limit}, step {step}");
            }
        }
    }

    #[tokio::test]
    async fn a_row_taken_back_that_was_never_ranked_goes_to_quarantine() {
        let dir = tempfile::tempdir().unwrap();
        let operator = ranking(by_amount_descending(), 2, false, true);
        let harness = Harness::keyed(operator, dir.path(), "run").unwrap();
        let (out, missed) = harness
            .push_changes(
                &rows(&[("a", 1, 5), ("a", 2, 3)]),
                &[RowKind::Insert, RowKind::Delete],
            )
            .await
            .unwrap();
        assert_eq!(
            changes(&out),
            [(RowKind::Insert, "a".to_string(), 1, 1)],
            "the unranked row's retraction changes nothing"
        );
        assert_eq!(missed.len(), 1, "{missed:?}");
        assert_eq!(missed[0].origins, [1]);
        assert!(
            missed[0].reason.contains("never ranked"),
            "{}",
            missed[0].reason
        );
    }
}
