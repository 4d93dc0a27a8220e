//! A regular join of two streams, Flink's `a [LEFT | RIGHT | FULL] JOIN b ON
//! a.k = b.k` without a band of event time: every row of both streams stays
//! in keyed state under its join key, and a row joins the rows of the other
//! stream that came before it.
//!
//! ```text
//!   a row (key k) of one stream ──▶ the other stream's rows of k in state ──▶ a pair with each it matches
//!     an insert: +pairs; a retraction (a changelog's update-before or delete): -pairs
//!     semi / anti join (IN, EXISTS / NOT EXISTS): a left row comes out alone while it matches (does not match)
//!     outer join: a row that matches nothing comes out padded with NULLs ──▶ +(a, NULL)
//!                 when its first match comes, -(a, NULL) then +(a, b); when its last goes, -(a, b) then +(a, NULL)
//!   state: key group of k │ len k ‖ k ‖ side ‖ hash of the row → how many such rows ‖ when last ‖ [matches] ‖ the row
//!   with SET 'table.exec.state.ttl': a row not written for that long is no longer met, and each commit
//!   deletes such rows from one key group in turn (all of them every 128 commits)
//!          (the writes are applied once the batch has gone through the plan)
//! ```
//!
//! Each pair is emitted once, by the later of its two rows: a batch holds rows
//! of one stream, so rows of one batch never meet each other; they are taken
//! in order, so a row inserted and retracted in one batch leaves nothing.
//! Each row comes out with its kind (Flink's RowKind), so what follows (an
//! aggregation, a sink upserting by its primary key) takes back what a
//! retraction retracts. A row with a NULL in its key joins nothing, as in SQL,
//! and is not kept (an outer join emits it padded); one whose key takes more
//! than 16 KiB goes to quarantine with the reason. The state is keyed
//! ([`crate::keyed`]): it grows with the rows, spills to local disk beyond
//! `[engine] state-memory-mb`, and a commit checkpoints only the rows that
//! came since the last one. Both sides of a key share its key group, so the
//! key groups a worker owns hold whole keys.

mod not_in;
mod stored;

use std::collections::HashMap;
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, UInt32Array, new_null_array};
use arrow::datatypes::{DataType, SchemaRef};
use arrow::record_batch::RecordBatch;
use arrow::row::{RowConverter, SortField};
use datafusion::physical_expr::PhysicalExpr;

use crate::batch::{condition_mask, equalities, key_columns, row_converter};
use crate::error::Result;
use crate::keyed::{Expiry, MAX_KEY_BYTES, Slot, key_group};
use crate::operator::{
    BatchContext, Changelog, Described, Emitted, InputStream, Missed, Operator, OperatorKind,
    Processed, RowKind, Side, StateInfo, StateWrite, Traced, Watermarks,
};
use crate::state::schema_fingerprint;
use stored::{StoredRow, row_key, scope, tag};

/// One stream's side of the join.
#[derive(Debug)]
pub struct JoinSide {
    /// The stream's columns at the join.
    pub schema: SchemaRef,
    /// The key expressions, over `schema`.
    pub keys: Vec<Arc<dyn PhysicalExpr>>,
}

/// Which rows come out of the join: pairs, and rows padded with NULLs while
/// they match nothing (outer joins), or left rows alone (semi and anti joins).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JoinKind {
    Inner,
    Left,
    Right,
    Full,
    /// The left rows that match a right row, each once (`IN`, `EXISTS`).
    Semi,
    /// The left rows that match no right row (`NOT EXISTS`).
    Anti,
    /// The left rows whose value is NOT IN the right stream's, by SQL's
    /// three-valued logic over values that may be NULL (one column).
    NotIn,
}

impl JoinKind {
    /// Whether `side`'s rows come out padded with NULLs while they match nothing.
    pub fn pads(self, side: Side) -> bool {
        matches!(
            (self, side),
            (JoinKind::Left | JoinKind::Full, Side::Left)
                | (JoinKind::Right | JoinKind::Full, Side::Right)
        )
    }

    /// Whether `side`'s rows keep how many rows of the other stream they
    /// match: a padded side's, and a semi or anti join's left rows.
    fn keeps_matches(self, side: Side) -> bool {
        self.pads(side) || (self.filters_left() && side == Side::Left)
    }

    /// Whether it emits left rows alone, as they match or not (a semi or anti join).
    fn filters_left(self) -> bool {
        matches!(self, JoinKind::Semi | JoinKind::Anti | JoinKind::NotIn)
    }

    pub fn as_sql(self) -> &'static str {
        match self {
            JoinKind::Inner => "INNER JOIN",
            JoinKind::Left => "LEFT JOIN",
            JoinKind::Right => "RIGHT JOIN",
            JoinKind::Full => "FULL JOIN",
            JoinKind::Semi => "LEFT SEMI JOIN (IN, EXISTS)",
            JoinKind::Anti => "LEFT ANTI JOIN (NOT EXISTS)",
            JoinKind::NotIn => "NULL-aware LEFT ANTI JOIN (NOT IN of values that may be NULL)",
        }
    }
}

/// A join of the pipeline's two streams on equal keys.
#[derive(Debug)]
pub struct RegularJoin {
    kind: JoinKind,
    left: JoinSide,
    right: JoinSide,
    key_types: Vec<DataType>,
    key_converter: RowConverter,
    /// Each side's rows as bytes, to keep and to bring back.
    rows: [RowConverter; 2],
    /// The ON clause beyond the key equalities, over `pairs`.
    filter: Option<Arc<dyn PhysicalExpr>>,
    /// The left stream's columns, then the right's (all nullable): the pairs
    /// the rest of the ON clause judges.
    pairs: SchemaRef,
    /// What it emits: the pairs' columns, or a semi or anti join's left columns.
    output: SchemaRef,
    /// Row counts by join key, side and row.
    state: Slot,
    /// When a row not written again is forgotten (`SET 'table.exec.state.ttl'`).
    expiry: Expiry,
}

/// The join keys of a batch's rows.
struct Keys {
    /// Each row's key as bytes; `None` for a row with a NULL in its key, or one too long.
    of_rows: Vec<Option<Vec<u8>>>,
    /// The rows whose key is too long to keep.
    too_long: Vec<usize>,
}

/// The other stream's rows a batch's keys meet, as they are in state.
struct Theirs {
    /// Each row met, with its key in the state and its key group.
    rows: Vec<(Vec<u8>, u16, StoredRow)>,
    /// The rows of each join key, by position in `rows`.
    by_key: HashMap<Vec<u8>, Vec<usize>>,
    /// Whether a row's match count changed, by position in `rows`.
    touched: Vec<bool>,
}

/// The rows a batch makes, each as its kind, this stream's row (a position
/// in the batch) and the other stream's (a position in [`Theirs::rows`]),
/// either of which may be NULL padding, and the input row it comes from.
#[derive(Default)]
struct Pairs {
    kinds: Vec<RowKind>,
    own: Vec<Option<u32>>,
    theirs: Vec<Option<u32>>,
    origins: Vec<usize>,
}

impl Pairs {
    fn push(&mut self, kind: RowKind, own: Option<usize>, theirs: Option<usize>, from: usize) {
        self.kinds.push(kind);
        self.own.push(own.map(|row| row as u32));
        self.theirs.push(theirs.map(|row| row as u32));
        self.origins.push(from);
    }

    /// `times` copies of one row.
    fn push_times(
        &mut self,
        times: u64,
        kind: RowKind,
        own: Option<usize>,
        theirs: Option<usize>,
        from: usize,
    ) {
        for _ in 0..times {
            self.push(kind, own, theirs, from);
        }
    }
}

/// A write to the state: key group, key, and the value (none: delete).
type StateChange = (u16, Vec<u8>, Option<Vec<u8>>);

/// A row of this stream's batch as it stands in state while the batch is taken in order.
struct OwnRow {
    group: u16,
    row: StoredRow,
    /// Whether it was in state before the batch.
    was_kept: bool,
}

impl RegularJoin {
    /// Joins `left` and `right` as `kind` on their keys, compared as
    /// `key_types`, into rows of `output` (the left columns, then the right
    /// ones; a semi or anti join's left columns) that `filter`, the rest of
    /// the ON clause over the left columns then the right ones, keeps.
    pub fn new(
        kind: JoinKind,
        left: JoinSide,
        right: JoinSide,
        key_types: Vec<DataType>,
        filter: Option<Arc<dyn PhysicalExpr>>,
        output: SchemaRef,
    ) -> Result<Self> {
        let pairs = Arc::new(arrow::datatypes::Schema::new(
            left.schema
                .fields()
                .iter()
                .chain(right.schema.fields().iter())
                .map(|field| field.as_ref().clone().with_nullable(true))
                .collect::<Vec<_>>(),
        ));
        Ok(Self {
            kind,
            pairs,
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
        let join = self.kind.as_sql();
        let on = match &self.filter {
            Some(filter) => format!("{join} ON {keys} AND {filter}"),
            None => format!("{join} ON {keys}"),
        };
        format!("{on}{}", self.expiry.describe("rows", "their last write"))
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

    /// The other stream's rows of the batch's keys (each key read once), but
    /// for rows whose time to be kept is over.
    fn theirs(&self, side: Side, keys: &[Option<Vec<u8>>]) -> Result<Theirs> {
        self.state.with(|state| self.theirs_in(state, side, keys))
    }

    /// [`Self::theirs`], read from `state`, which the caller holds.
    fn theirs_in(
        &self,
        state: &crate::keyed::KeyedState,
        side: Side,
        keys: &[Option<Vec<u8>>],
    ) -> Result<Theirs> {
        let now = self.expiry.now();
        let padded = self.kind.keeps_matches(side.other());
        let mut theirs = Theirs {
            rows: Vec::new(),
            by_key: HashMap::new(),
            touched: Vec::new(),
        };
        for key in keys.iter().flatten() {
            if theirs.by_key.contains_key(key) {
                continue;
            }
            let group = key_group(key);
            let mut at = Vec::new();
            for entry in state.scan(group, &scope(key, side.other())) {
                let (stored_key, value) = entry?;
                let row = StoredRow::decode(&value, padded)?;
                if self.expiry.expired(row.written_ms, now) {
                    continue;
                }
                at.push(theirs.rows.len());
                theirs.rows.push((stored_key, group, row));
            }
            theirs.by_key.insert(key.clone(), at);
        }
        theirs.touched = vec![false; theirs.rows.len()];
        Ok(theirs)
    }

    /// The other stream's rows met, as columns.
    fn their_columns(&self, side: Side, theirs: &Theirs) -> Result<Vec<ArrayRef>> {
        let converter = self.converter(side.other());
        let parser = converter.parser();
        Ok(converter.convert_rows(theirs.rows.iter().map(|(_, _, row)| parser.parse(&row.row)))?)
    }

    /// Rows made of this stream's rows at `own` (of `batch`) and the other's
    /// at `theirs` (of `their_columns`), NULLs where none: whole pairs, for
    /// the rest of the ON clause, or the output's columns.
    fn assemble(
        &self,
        side: Side,
        batch: &RecordBatch,
        their_columns: &[ArrayRef],
        own: &[Option<u32>],
        theirs: &[Option<u32>],
        whole_pairs: bool,
    ) -> Result<RecordBatch> {
        let take = |columns: &[ArrayRef], at: &[Option<u32>]| -> Result<Vec<ArrayRef>> {
            if at.iter().all(Option::is_none) {
                return Ok(columns
                    .iter()
                    .map(|column| new_null_array(column.data_type(), at.len()))
                    .collect());
            }
            let indices = UInt32Array::from(at.to_vec());
            Ok(columns
                .iter()
                .map(|column| arrow::compute::take(column, &indices, None))
                .collect::<std::result::Result<_, _>>()?)
        };
        let mine = take(batch.columns(), own)?;
        let theirs = take(their_columns, theirs)?;
        let (left, right) = match side {
            Side::Left => (mine, theirs),
            Side::Right => (theirs, mine),
        };
        let (schema, columns) = match whole_pairs {
            true => (&self.pairs, left.into_iter().chain(right).collect()),
            false if self.kind.filters_left() => (&self.output, left),
            false => (&self.output, left.into_iter().chain(right).collect()),
        };
        let options =
            arrow::record_batch::RecordBatchOptions::new().with_row_count(Some(own.len()));
        Ok(RecordBatch::try_new_with_options(
            schema.clone(),
            columns,
            &options,
        )?)
    }

    /// For each of the batch's rows in order, the other stream's rows (by
    /// position in `theirs`) it matches: same key, and the rest of the ON
    /// clause true for the pair.
    fn matched(
        &self,
        side: Side,
        batch: &RecordBatch,
        keys: &[Option<Vec<u8>>],
        theirs: &Theirs,
        their_columns: &[ArrayRef],
    ) -> Result<Vec<Vec<usize>>> {
        let candidates: Vec<Vec<usize>> = keys
            .iter()
            .map(|key| match key {
                Some(key) => theirs.by_key[key].clone(),
                None => Vec::new(),
            })
            .collect();
        let Some(filter) = &self.filter else {
            return Ok(candidates);
        };
        let (own, their): (Vec<Option<u32>>, Vec<Option<u32>>) = candidates
            .iter()
            .enumerate()
            .flat_map(|(row, at)| {
                at.iter()
                    .map(move |&at| (Some(row as u32), Some(at as u32)))
            })
            .unzip();
        let pairs = self.assemble(side, batch, their_columns, &own, &their, true)?;
        let kept = condition_mask(filter, &pairs)?;
        let mut kept = kept.values().iter();
        Ok(candidates
            .into_iter()
            .map(|at| {
                at.into_iter()
                    .filter(|_| kept.next().expect("one verdict per pair"))
                    .collect()
            })
            .collect())
    }

    /// Takes the batch's rows in order against the other stream's rows: the
    /// rows they make, and how each row of this stream then stands.
    fn take_in(
        &self,
        side: Side,
        input: &Traced,
        keys: &Keys,
        matched: &[Vec<usize>],
        theirs: &mut Theirs,
    ) -> Result<(Pairs, HashMap<Vec<u8>, OwnRow>)> {
        let (pads_own, pads_theirs) = (self.kind.pads(side), self.kind.pads(side.other()));
        let keeps_matches = self.kind.keeps_matches(side);
        let bytes = self
            .converter(side)
            .convert_columns(input.batch.columns())?;
        let mut pairs = Pairs::default();
        let mut own: HashMap<Vec<u8>, OwnRow> = HashMap::new();
        self.state.with(|state| {
            for (row, key) in keys.of_rows.iter().enumerate() {
                let kind = input.kinds.as_ref().map_or(RowKind::Insert, |k| k[row]);
                let Some(key) = key else {
                    // A NULL key matches nothing (a key too long has gone to quarantine).
                    if self.kind.filters_left() && !keys.too_long.contains(&row) {
                        let anti = self.kind == JoinKind::Anti;
                        semi_anti(side, row, kind, &[], theirs, anti, &mut pairs);
                    } else if pads_own && !keys.too_long.contains(&row) {
                        let padded = match kind.is_retraction() {
                            true => RowKind::Delete,
                            false => RowKind::Insert,
                        };
                        pairs.push(padded, Some(row), None, row);
                    }
                    continue;
                };
                let stored_key = row_key(key, side, bytes.row(row).as_ref());
                if !own.contains_key(&stored_key) {
                    let kept =
                        self.own_row(state, key, &stored_key, side, bytes.row(row).as_ref())?;
                    own.insert(stored_key.clone(), kept);
                }
                let entry = &mut own.get_mut(&stored_key).expect("just looked up").row;
                let matches = &matched[row];
                if self.kind.filters_left() {
                    match kind.is_retraction() {
                        false => entry.count += 1,
                        true => entry.count = entry.count.saturating_sub(1),
                    }
                    if keeps_matches && !kind.is_retraction() {
                        entry.matches = matches.iter().map(|&at| theirs.rows[at].2.count).sum();
                    }
                    let anti = self.kind == JoinKind::Anti;
                    semi_anti(side, row, kind, matches, theirs, anti, &mut pairs);
                    continue;
                }
                match kind.is_retraction() {
                    false => {
                        entry.count += 1;
                        if keeps_matches {
                            entry.matches = matches.iter().map(|&at| theirs.rows[at].2.count).sum();
                        }
                        accumulate(
                            row,
                            kind,
                            matches,
                            theirs,
                            (pads_own, pads_theirs),
                            &mut pairs,
                        );
                    }
                    true => {
                        entry.count = entry.count.saturating_sub(1);
                        retract(
                            row,
                            kind,
                            matches,
                            theirs,
                            (pads_own, pads_theirs),
                            &mut pairs,
                        );
                    }
                }
            }
            Ok(())
        })?;
        Ok((pairs, own))
    }

    /// This stream's row kept under `stored_key` (of join key `key`), or a
    /// new one of `row` if none is kept (or its time to be kept is over).
    fn own_row(
        &self,
        state: &crate::keyed::KeyedState,
        key: &[u8],
        stored_key: &[u8],
        side: Side,
        row: &[u8],
    ) -> Result<OwnRow> {
        let now = self.expiry.now();
        let group = key_group(key);
        let kept = match state.get_grouped(group, stored_key)? {
            Some(value) => Some(StoredRow::decode(&value, self.kind.keeps_matches(side))?)
                .filter(|kept| !self.expiry.expired(kept.written_ms, now)),
            None => None,
        };
        Ok(OwnRow {
            group,
            was_kept: kept.is_some(),
            row: kept.unwrap_or_else(|| StoredRow {
                count: 0,
                written_ms: now,
                matches: 0,
                row: row.to_vec(),
            }),
        })
    }

    /// What the state's bytes depend on: the join's kind, the keys' types and
    /// both streams' columns (not the rest of the ON clause, which only filters pairs).
    fn fingerprint(&self) -> String {
        let key_types: Vec<String> = self.key_types.iter().map(DataType::to_string).collect();
        let join = match self.kind {
            JoinKind::Inner => "regular join".to_string(),
            kind => format!("regular {}", kind.as_sql()),
        };
        format!(
            "{join} on ({}) by ({}): left {}, right {}",
            equalities(&self.left.keys, &self.right.keys),
            key_types.join(", "),
            schema_fingerprint(&self.left.schema),
            schema_fingerprint(&self.right.schema)
        )
    }
}

/// What an inserted row (`+I` or `+U`) of this stream at `row` makes, with
/// the kinds and in the order of Flink's `StreamingJoinOperator`; the other
/// stream's rows it matches count one more match. `pads` says whether this
/// stream's and the other's rows are padded with NULLs.
fn accumulate(
    row: usize,
    kind: RowKind,
    matches: &[usize],
    theirs: &mut Theirs,
    (pads_own, pads_theirs): (bool, bool),
    pairs: &mut Pairs,
) {
    if matches.is_empty() {
        if pads_own {
            pairs.push(RowKind::Insert, Some(row), None, row);
        }
        return;
    }
    if pads_own {
        // Every padded row of the other stream it ends goes first, then its pairs.
        if pads_theirs {
            for &at in matches {
                let their = &mut theirs.rows[at].2;
                if their.matches == 0 {
                    pairs.push_times(their.count, RowKind::Delete, None, Some(at), row);
                }
                their.matches += 1;
                theirs.touched[at] = true;
            }
        }
        for &at in matches {
            let count = theirs.rows[at].2.count;
            pairs.push_times(count, RowKind::Insert, Some(row), Some(at), row);
        }
        return;
    }
    for &at in matches {
        let their = &mut theirs.rows[at].2;
        let mut pair_kind = kind;
        if pads_theirs {
            if their.matches == 0 {
                pairs.push_times(their.count, RowKind::Delete, None, Some(at), row);
                pair_kind = RowKind::Insert;
            }
            their.matches += 1;
            theirs.touched[at] = true;
        }
        pairs.push_times(their.count, pair_kind, Some(row), Some(at), row);
    }
}

/// What a retraction (`-U` or `-D`) of this stream's row at `row` makes, as
/// Flink's `StreamingJoinOperator` does, even for a row the join no longer
/// holds (its TTL ran out): its pairs are taken back, then the other stream's
/// rows it was the last match of come out padded again.
fn retract(
    row: usize,
    kind: RowKind,
    matches: &[usize],
    theirs: &mut Theirs,
    (pads_own, pads_theirs): (bool, bool),
    pairs: &mut Pairs,
) {
    if matches.is_empty() {
        if pads_own {
            pairs.push(RowKind::Delete, Some(row), None, row);
        }
        return;
    }
    let pair_kind = match pads_own {
        true => RowKind::Delete,
        false => kind,
    };
    for &at in matches {
        let count = theirs.rows[at].2.count;
        pairs.push_times(count, pair_kind, Some(row), Some(at), row);
    }
    if pads_theirs {
        for &at in matches {
            let their = &mut theirs.rows[at].2;
            if their.matches == 1 {
                pairs.push_times(their.count, RowKind::Insert, None, Some(at), row);
            }
            their.matches = their.matches.saturating_sub(1);
            theirs.touched[at] = true;
        }
    }
}

/// What a row makes in a semi or anti join, as Flink's `SemiAntiJoinOperator`
/// does: a left row comes out (with its own kind) if it matches (semi) or
/// does not (anti); a right row's first match of a left row lets it out
/// (semi) or takes it back (anti), and its last match taken back does the opposite.
fn semi_anti(
    side: Side,
    row: usize,
    kind: RowKind,
    matches: &[usize],
    theirs: &mut Theirs,
    anti: bool,
    pairs: &mut Pairs,
) {
    if side == Side::Left {
        if matches.is_empty() == anti {
            pairs.push(kind, Some(row), None, row);
        }
        return;
    }
    let (first, last) = match anti {
        false => (RowKind::Insert, RowKind::Delete),
        true => (RowKind::Delete, RowKind::Insert),
    };
    for &at in matches {
        let left = &mut theirs.rows[at].2;
        match kind.is_retraction() {
            false => {
                if left.matches == 0 {
                    pairs.push_times(left.count, first, None, Some(at), row);
                }
                left.matches += 1;
            }
            true => {
                if left.matches == 1 {
                    pairs.push_times(left.count, last, None, Some(at), row);
                }
                left.matches = left.matches.saturating_sub(1);
            }
        }
        theirs.touched[at] = true;
    }
}

/// The state writes a batch leaves: this stream's rows as they now stand
/// (gone when none is left), and the other stream's rows whose match count changed.
fn state_changes(
    own: HashMap<Vec<u8>, OwnRow>,
    theirs: Theirs,
    keeps_matches: bool,
    now: i64,
) -> Vec<StateChange> {
    let own = own
        .into_iter()
        .filter(|(_, own)| own.was_kept || own.row.count > 0)
        .map(|(key, own)| {
            let value = (own.row.count > 0).then(|| own.row.encode(keeps_matches, now));
            (own.group, key, value)
        });
    let theirs = theirs
        .rows
        .into_iter()
        .zip(theirs.touched)
        .filter(|(_, touched)| *touched)
        .map(|((key, group, row), _)| (group, key, Some(row.encode(true, now))));
    own.chain(theirs).collect()
}

#[async_trait::async_trait]
impl Operator for RegularJoin {
    fn kind(&self) -> OperatorKind {
        OperatorKind::RegularJoin
    }

    async fn process(self: Arc<Self>, input: Traced, ctx: &BatchContext<'_>) -> Result<Processed> {
        let side = ctx.side;
        let keys = self.keys(side, &input.batch)?;
        let (pairs, their_columns, changes) = match self.kind {
            JoinKind::NotIn => {
                let (pairs, theirs, changes) = self.not_in(side, &input, &keys)?;
                (pairs, self.their_columns(side, &theirs)?, changes)
            }
            _ => {
                let mut theirs = self.theirs(side, &keys.of_rows)?;
                let their_columns = self.their_columns(side, &theirs)?;
                let matched =
                    self.matched(side, &input.batch, &keys.of_rows, &theirs, &their_columns)?;
                let (pairs, own) = self.take_in(side, &input, &keys, &matched, &mut theirs)?;
                let changes = state_changes(
                    own,
                    theirs,
                    self.kind.keeps_matches(side),
                    self.expiry.now(),
                );
                (pairs, their_columns, changes)
            }
        };
        let batch = self.assemble(
            side,
            &input.batch,
            &their_columns,
            &pairs.own,
            &pairs.theirs,
            false,
        )?;
        let all_inserts = pairs.kinds.iter().all(|&kind| kind == RowKind::Insert);
        let traced = Traced {
            batch,
            origins: pairs
                .origins
                .iter()
                .map(|&row| input.origins[row])
                .collect(),
            kinds: (input.kinds.is_some() || !all_inserts).then_some(pairs.kinds),
        };
        let missed = Missed::quarantine(
            &keys.too_long,
            &input,
            format!(
                "its join key takes more than the {} KiB a regular join keeps rows under",
                MAX_KEY_BYTES / 1024
            ),
        );
        let join = self.clone();
        Ok(Processed {
            traced,
            missed,
            writes: vec![StateWrite::new(move || {
                join.state.with(|state| {
                    state.write_grouped(
                        changes
                            .iter()
                            .map(|(group, key, value)| (*group, key.as_slice(), value.as_deref())),
                    )
                })?;
                Ok(Vec::new())
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
            Changelog::AppendOnly | Changelog::Retracting => Ok(()),
            Changelog::Upsert => Err("a regular join of an upsert stream (its updates carry no old row for the join to take back)".to_string()),
        }
    }

    /// A join that pads rows with NULLs takes the padded row back when a match
    /// comes, and a changelog's retractions take back what they joined.
    fn emits(&self, input: Changelog, _key: &[String]) -> (Changelog, Vec<String>) {
        match (self.kind, input) {
            (JoinKind::Inner | JoinKind::Semi, Changelog::AppendOnly) => {
                (Changelog::AppendOnly, Vec::new())
            }
            _ => (Changelog::Retracting, Vec::new()),
        }
    }

    fn reads_second_stream(&self) -> bool {
        true
    }

    fn refuses_rows_run_again(&self) -> Option<String> {
        Some("a row run again would be joined and kept twice".to_string())
    }

    /// A NOT IN of values that may be NULL keeps the right stream's row
    /// count, which would outlive rows the TTL forgets.
    fn keeps_state_past_ttl(&self) -> bool {
        self.kind == JoinKind::NotIn
    }

    /// A commit cleans one key group of the rows whose time to be kept is over.
    async fn on_watermark(&self, _watermarks: &Watermarks) -> Result<Emitted> {
        self.expiry.clean(&self.state, stored::written_ms)?;
        Ok(Emitted::default())
    }

    fn keyed_state(&self) -> Option<&Slot> {
        Some(&self.state)
    }
}

#[cfg(test)]
mod tests;
