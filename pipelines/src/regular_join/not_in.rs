//! `NOT IN` over streams whose columns may be NULL, with SQL's three-valued
//! logic, as Flink's null-aware anti join runs it: a NULL among the right
//! stream's values keeps every left row out, and a NULL left value is out
//! unless the right stream is empty.
//!
//! ```text
//!   a left row (value a) is out while  the right stream is empty,
//!                                 or   a is not NULL, no right value is NULL, and none equals a
//!   state: both streams' rows by value (a NULL one under the empty key), each left row's
//!          match count, and the right stream's row count (under a key no value has)
//!   a left row ──▶ out now? ──▶ +row (or -row for a retraction);  kept
//!   a right batch ──▶ the left rows of its values (every left row when the stream empties,
//!                     fills, or gains its first NULL or loses its last) judged before and after:
//!                     out before, not after ──▶ -row;  not before, out after ──▶ +row
//! ```
//!
//! A right batch's rows are taken together: a value in and out in one batch
//! leaves nothing. The state keeps every row for good (no TTL: the right
//! stream's count would outlive its rows).

use std::collections::HashMap;

use super::stored::{StoredRow, row_key, scope, tag};
use super::{Keys, OwnRow, Pairs, RegularJoin, StateChange, Theirs};
use crate::error::Result;
use crate::keyed::{KeyedState, key_group};
use crate::operator::{RowKind, Side, Traced};

/// The key a row whose value is NULL is kept under: no value's bytes are empty.
const NULL_VALUE: &[u8] = &[];

/// The state key of the right stream's row count: an empty value under a
/// tag no side has.
fn right_count_key() -> Vec<u8> {
    let mut key = scope(NULL_VALUE, Side::Right);
    *key.last_mut().expect("a scope ends in its tag") = 2;
    key
}

/// How the right stream stands: its row count, and how many of its values are NULL.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct RightStream {
    rows: u64,
    nulls: u64,
}

impl RightStream {
    /// Whether a left row of `value` (None: NULL) matching `matches` right rows is out.
    fn lets_out(self, value: Option<&[u8]>, matches: u64) -> bool {
        match value {
            None => self.rows == 0,
            Some(_) => self.nulls == 0 && matches == 0,
        }
    }

    /// Whether every left row is judged anew when the stream goes from `self` to `after`.
    fn changes_every_row(self, after: RightStream) -> bool {
        (self.rows == 0) != (after.rows == 0) || (self.nulls == 0) != (after.nulls == 0)
    }
}

impl RegularJoin {
    /// The right stream's row count and NULL values, as kept.
    fn right_stream(&self, state: &KeyedState) -> Result<RightStream> {
        let group = key_group(NULL_VALUE);
        let rows = match state.get_grouped(group, &right_count_key())? {
            Some(value) => StoredRow::decode(&value, false)?.count,
            None => 0,
        };
        let mut nulls = 0;
        for entry in state.scan(group, &scope(NULL_VALUE, Side::Right)) {
            let (_, value) = entry?;
            nulls += StoredRow::decode(&value, false)?.count;
        }
        Ok(RightStream { rows, nulls })
    }

    /// Takes a batch of `side` into a NOT IN of nullable values: what comes
    /// out, and the state writes, as (key group, key, value or delete).
    pub(super) fn not_in(
        &self,
        side: Side,
        input: &Traced,
        keys: &Keys,
    ) -> Result<(Pairs, Theirs, Vec<StateChange>)> {
        let now = self.expiry.now();
        let bytes = self
            .converter(side)
            .convert_columns(input.batch.columns())?;
        let kinds = |row: usize| input.kinds.as_ref().map_or(RowKind::Insert, |k| k[row]);
        let rows: Vec<usize> = (0..keys.of_rows.len())
            .filter(|row| !keys.too_long.contains(row))
            .collect();
        self.state.with(|state| {
            let before = self.right_stream(state)?;
            // This stream's rows as they stand after the batch, NULL values under their key.
            let mut own: HashMap<Vec<u8>, OwnRow> = HashMap::new();
            // What each row changed in the state: a retraction of a row not held changes nothing.
            let mut steps: HashMap<usize, i64> = HashMap::new();
            for &row in &rows {
                let value = keys.of_rows[row].as_deref().unwrap_or(NULL_VALUE);
                let stored_key = row_key(value, side, bytes.row(row).as_ref());
                if !own.contains_key(&stored_key) {
                    let kept =
                        self.own_row(state, value, &stored_key, side, bytes.row(row).as_ref())?;
                    own.insert(stored_key.clone(), kept);
                }
                let entry = &mut own.get_mut(&stored_key).expect("just looked up").row;
                let step = match (kinds(row).is_retraction(), entry.count) {
                    (false, _) => 1,
                    (true, 0) => 0,
                    (true, _) => -1,
                };
                entry.count = entry.count.saturating_add_signed(step);
                steps.insert(row, step);
            }
            let mut pairs = Pairs::default();
            let mut changes = Vec::new();
            let theirs = match side {
                Side::Left => {
                    // The right stream does not change: each left row is judged as it comes.
                    let theirs = self.theirs_in(state, side, &keys.of_rows)?;
                    for &row in &rows {
                        let value = keys.of_rows[row].as_deref();
                        let matches: u64 = value
                            .map(|value| {
                                theirs.by_key[value]
                                    .iter()
                                    .map(|&at| theirs.rows[at].2.count)
                                    .sum()
                            })
                            .unwrap_or(0);
                        let stored_key =
                            row_key(value.unwrap_or(NULL_VALUE), side, bytes.row(row).as_ref());
                        if let Some(own) = own.get_mut(&stored_key) {
                            own.row.matches = matches;
                        }
                        if before.lets_out(value, matches) {
                            pairs.push(kinds(row), Some(row), None, row);
                        }
                    }
                    theirs
                }
                Side::Right => {
                    let mut after = before;
                    // How many right rows each value gains (or loses) in the batch.
                    let mut gained: HashMap<&[u8], (i64, usize)> = HashMap::new();
                    for &row in &rows {
                        let step = steps[&row];
                        after.rows = after.rows.saturating_add_signed(step);
                        match keys.of_rows[row].as_deref() {
                            None => after.nulls = after.nulls.saturating_add_signed(step),
                            Some(value) => gained.entry(value).or_insert((0, row)).0 += step,
                        }
                    }
                    let mut theirs = match before.changes_every_row(after) {
                        true => every_left_row(state)?,
                        false => {
                            let values: Vec<Option<Vec<u8>>> =
                                gained.keys().map(|value| Some(value.to_vec())).collect();
                            self.theirs_in(state, side, &values)?
                        }
                    };
                    let first_row = rows.first().copied().unwrap_or(0);
                    for at in 0..theirs.rows.len() {
                        let (stored_key, _, left) = &theirs.rows[at];
                        let value = stored_value(stored_key);
                        let (step, from) = value
                            .and_then(|value| gained.get(value).copied())
                            .unwrap_or((0, first_row));
                        let matches = left.matches.saturating_add_signed(step);
                        let (was_out, is_out) = (
                            before.lets_out(value, left.matches),
                            after.lets_out(value, matches),
                        );
                        let count = left.count;
                        match (was_out, is_out) {
                            (true, false) => {
                                pairs.push_times(count, RowKind::Delete, None, Some(at), from)
                            }
                            (false, true) => {
                                pairs.push_times(count, RowKind::Insert, None, Some(at), from)
                            }
                            _ => {}
                        }
                        if matches != left.matches {
                            theirs.rows[at].2.matches = matches;
                            theirs.touched[at] = true;
                        }
                    }
                    if after.rows != before.rows {
                        let count = StoredRow {
                            count: after.rows,
                            written_ms: now,
                            matches: 0,
                            row: Vec::new(),
                        };
                        changes.push((
                            key_group(NULL_VALUE),
                            right_count_key(),
                            Some(count.encode(false, now)),
                        ));
                    }
                    theirs
                }
            };
            // The rows written: this stream's, and the left rows whose match count changed.
            let own_rows = own
                .into_iter()
                .filter(|(_, own)| own.was_kept || own.row.count > 0)
                .map(|(key, own)| {
                    let value =
                        (own.row.count > 0).then(|| own.row.encode(side == Side::Left, now));
                    (own.group, key, value)
                });
            changes.extend(own_rows);
            changes.extend(
                theirs
                    .rows
                    .iter()
                    .zip(&theirs.touched)
                    .filter(|(_, touched)| **touched)
                    .map(|((key, group, row), _)| {
                        (*group, key.clone(), Some(row.encode(true, now)))
                    }),
            );
            Ok((pairs, theirs, changes))
        })
    }
}

/// The value of a row kept under `stored_key` (`len ‖ value ‖ side ‖ hash`),
/// None for a NULL one.
fn stored_value(stored_key: &[u8]) -> Option<&[u8]> {
    let len = u32::from_be_bytes(stored_key[..4].try_into().expect("a length")) as usize;
    Some(&stored_key[4..4 + len]).filter(|value| !value.is_empty())
}

/// Every left row kept, with its match count.
fn every_left_row(state: &KeyedState) -> Result<Theirs> {
    let mut theirs = Theirs {
        rows: Vec::new(),
        by_key: HashMap::new(),
        touched: Vec::new(),
    };
    for entry in state.entries() {
        let (key, value) = entry?;
        let Some(len) = key
            .get(..4)
            .map(|len| u32::from_be_bytes(len.try_into().expect("4 bytes")) as usize)
        else {
            continue;
        };
        if key.get(4 + len) != Some(&tag(Side::Left)) {
            continue;
        }
        let group = key_group(&key[4..4 + len]);
        theirs
            .rows
            .push((key.clone(), group, StoredRow::decode(&value, true)?));
    }
    theirs.touched = vec![false; theirs.rows.len()];
    Ok(theirs)
}
