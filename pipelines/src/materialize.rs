//! Flink's `SinkUpsertMaterializer`: between an operator whose retractions
//! name whole rows (a regular join, a Top-N) and a target upserted by its
//! own primary key, which may hold several of those rows under one key (a
//! LEFT JOIN's order with two payments, under the order's key).
//!
//! ```text
//!   state: the target's key → the rows under it, in arrival order
//!   +I / +U row ──▶ appended ──▶ +I / +U row                     (the target holds the newest row)
//!   -U / -D row ──▶ the first equal row removed:
//!        none left         ──▶ -D row                             (the key is deleted)
//!        it was the newest ──▶ +U the row now newest              (the target goes back to it)
//!        otherwise, or no equal row (taken back twice) ──▶ nothing
//!        nothing kept under the key (a row from before it held the key, or its TTL ran out) ──▶ -D row
//! ```
//!
//! A retraction thus deletes a key only once every row under it is taken
//! back, where upserting the retraction itself would delete the key while
//! rows remain.

use std::collections::HashMap;
use std::sync::Arc;

use arrow::array::ArrayRef;
use arrow::datatypes::{DataType, SchemaRef};
use arrow::record_batch::RecordBatch;
use arrow::row::{RowConverter, SortField};

use crate::batch::row_converter;
use crate::error::Result;
use crate::keyed::{Expiry, MAX_KEY_BYTES, Slot, counted, push_part, read_counted, take_part};
use crate::operator::{
    BatchContext, Changelog, Described, Emitted, InputStream, Missed, Operator, OperatorKind,
    Processed, RowKind, StateInfo, StateWrite, Traced, Watermarks,
};
use crate::state::schema_fingerprint;

/// What the state's values are, in errors.
const ROWS: &str = "the rows under a target's key";

/// Keeps the rows under each key of the target, to upsert what stands.
#[derive(Debug)]
pub struct UpsertMaterializer {
    /// The key's columns, by position in the rows.
    key_columns: Vec<usize>,
    key_names: Vec<String>,
    key_converter: RowConverter,
    rows: RowConverter,
    schema: SchemaRef,
    state: Slot,
    /// When a key not written again is forgotten (`SET 'table.exec.state.ttl'`).
    expiry: Expiry,
}

impl UpsertMaterializer {
    /// Materializes rows of `schema` under the key of the columns at
    /// `key_columns`, named `key_names` in the target.
    pub fn new(schema: SchemaRef, key_columns: Vec<usize>, key_names: Vec<String>) -> Result<Self> {
        let key_types: Vec<DataType> = key_columns
            .iter()
            .map(|&i| schema.field(i).data_type().clone())
            .collect();
        Ok(Self {
            key_converter: RowConverter::new(key_types.into_iter().map(SortField::new).collect())?,
            rows: row_converter(&schema)?,
            key_columns,
            key_names,
            schema,
            state: Slot::default(),
            expiry: Expiry::default(),
        })
    }

    /// The materializer, forgetting a key as `expiry` says (after `SET 'table.exec.state.ttl'`).
    pub fn expiring(mut self, expiry: Expiry) -> Self {
        self.expiry = expiry;
        self
    }
}

fn encode(rows: &[Vec<u8>], now: i64) -> Vec<u8> {
    let mut rest = Vec::new();
    for row in rows {
        push_part(&mut rest, row);
    }
    counted(rows.len() as u64, now, &rest)
}

/// The rows under a key, and when they were last written.
fn decode(value: &[u8]) -> Result<(Vec<Vec<u8>>, i64)> {
    let kept = read_counted(value, ROWS)?;
    let mut rest = kept.rest;
    let mut rows = Vec::with_capacity(kept.count as usize);
    while !rest.is_empty() {
        rows.push(take_part(&mut rest, ROWS)?);
    }
    Ok((rows, kept.written_ms))
}

/// What a batch makes: each row as bytes, its kind and the input row it comes from.
#[derive(Default)]
struct Upserts {
    rows: Vec<Vec<u8>>,
    kinds: Vec<RowKind>,
    origins: Vec<usize>,
}

impl Upserts {
    fn push(&mut self, row: &[u8], kind: RowKind, from: usize) {
        self.rows.push(row.to_vec());
        self.kinds.push(kind);
        self.origins.push(from);
    }
}

/// Takes one row into the rows under its key: what it makes. Whether the
/// rows under the key changed.
fn take_row(
    under_key: &mut Vec<Vec<u8>>,
    row: &[u8],
    kind: RowKind,
    from: usize,
    out: &mut Upserts,
) -> bool {
    if !kind.is_retraction() {
        under_key.push(row.to_vec());
        let kind = match under_key.len() {
            1 => RowKind::Insert,
            _ => RowKind::UpdateAfter,
        };
        out.push(row, kind, from);
        return true;
    }
    if under_key.is_empty() {
        // Nothing kept under the key (written before the materializer held it,
        // or forgotten by the TTL): the target's row under it goes.
        out.push(row, RowKind::Delete, from);
        return false;
    }
    let newest = under_key.len() - 1;
    let Some(at) = under_key.iter().position(|kept| kept.as_slice() == row) else {
        return false;
    };
    under_key.remove(at);
    match under_key.last() {
        None => out.push(row, RowKind::Delete, from),
        Some(now_newest) if at == newest => {
            out.push(&now_newest.clone(), RowKind::UpdateAfter, from)
        }
        Some(_) => {}
    }
    true
}

#[async_trait::async_trait]
impl Operator for UpsertMaterializer {
    fn kind(&self) -> OperatorKind {
        OperatorKind::Materialize
    }

    async fn process(self: Arc<Self>, input: Traced, _ctx: &BatchContext<'_>) -> Result<Processed> {
        let batch = &input.batch;
        let key_columns: Vec<ArrayRef> = self
            .key_columns
            .iter()
            .map(|&i| batch.column(i).clone())
            .collect();
        let keys = self.key_converter.convert_columns(&key_columns)?;
        let rows = self.rows.convert_columns(batch.columns())?;
        let now = self.expiry.now();
        // The rows under each key the batch touches, and whether they changed.
        let mut under: HashMap<Vec<u8>, (Vec<Vec<u8>>, bool)> = HashMap::new();
        let mut out = Upserts::default();
        let mut too_long = Vec::new();
        self.state.with(|state| {
            for row in 0..batch.num_rows() {
                let key = keys.row(row).data();
                if key.len() > MAX_KEY_BYTES {
                    too_long.push(row);
                    continue;
                }
                if !under.contains_key(key) {
                    let kept = match state.get(key)? {
                        Some(value) => {
                            let (rows, written) = decode(&value)?;
                            match self.expiry.expired(written, now) {
                                true => Vec::new(),
                                false => rows,
                            }
                        }
                        None => Vec::new(),
                    };
                    under.insert(key.to_vec(), (kept, false));
                }
                let kind = input.kinds.as_ref().map_or(RowKind::Insert, |k| k[row]);
                let (under_key, changed) = under.get_mut(key).expect("just loaded");
                *changed |= take_row(under_key, rows.row(row).data(), kind, row, &mut out);
            }
            Ok(())
        })?;
        let parser = self.rows.parser();
        let columns = self
            .rows
            .convert_rows(out.rows.iter().map(|row| parser.parse(row)))?;
        let options =
            arrow::record_batch::RecordBatchOptions::new().with_row_count(Some(out.origins.len()));
        let traced = Traced {
            batch: RecordBatch::try_new_with_options(self.schema.clone(), columns, &options)?,
            origins: out.origins.iter().map(|&row| input.origins[row]).collect(),
            kinds: Some(out.kinds),
        };
        let missed = Missed::quarantine(
            &too_long,
            &input,
            format!(
                "its target key takes more than the {} KiB rows are kept under",
                MAX_KEY_BYTES / 1024
            ),
        );
        let changes = under
            .into_iter()
            .filter(|(_, (_, changed))| *changed)
            .map(|(key, (rows, _))| {
                let value = (!rows.is_empty()).then(|| encode(&rows, now));
                (key, value)
            })
            .collect();
        Ok(Processed {
            traced,
            missed,
            writes: vec![StateWrite::keyed(self, changes)],
        })
    }

    fn describe(&self, _input: &InputStream) -> Described {
        Described {
            detail: format!(
                "keeps the rows under each ({}) so that a retraction deletes the key only once none is left",
                self.key_names.join(", ")
            ),
            schema: self.schema.clone(),
            watermark: None,
            state: Some(StateInfo {
                holds: "the rows under each key of the target".to_string(),
                fingerprint: format!(
                    "rows under ({}): {}",
                    self.key_names.join(", "),
                    schema_fingerprint(&self.schema)
                ),
            }),
        }
    }

    /// What stands under each key: its newest row, or its delete.
    fn emits(&self, _input: Changelog, _key: &[String]) -> (Changelog, Vec<String>) {
        (Changelog::Retracting, self.key_names.clone())
    }

    /// A commit cleans one key group of the keys whose time to be kept is over.
    async fn on_watermark(&self, _watermarks: &Watermarks) -> Result<Emitted> {
        self.expiry.clean(&self.state, |value| {
            Ok(Some(read_counted(value, ROWS)?.written_ms))
        })?;
        Ok(Emitted::default())
    }

    fn keyed_state(&self) -> Option<&Slot> {
        Some(&self.state)
    }
}

#[cfg(test)]
mod tests {
    use super::{Upserts, take_row};
    use crate::operator::RowKind::{self, Delete, Insert, UpdateAfter, UpdateBefore};

    /// Runs changes through one key's rows: what comes out, as (row, kind).
    fn run(changes: &[(&str, RowKind)]) -> Vec<(String, RowKind)> {
        let mut under = Vec::new();
        let mut out = Upserts::default();
        for (row, kind) in changes {
            take_row(&mut under, row.as_bytes(), *kind, 0, &mut out);
        }
        out.rows
            .iter()
            .zip(out.kinds)
            .map(|(row, kind)| (String::from_utf8(row.clone()).unwrap(), kind))
            .collect()
    }

    fn rows(expected: &[(&str, RowKind)]) -> Vec<(String, RowKind)> {
        expected.iter().map(|(r, k)| (r.to_string(), *k)).collect()
    }

    #[test]
    fn a_key_is_deleted_only_once_every_row_under_it_is_taken_back() {
        assert_eq!(
            run(&[("p1", Insert), ("p2", Insert), ("p2", Delete)]),
            rows(&[("p1", Insert), ("p2", UpdateAfter), ("p1", UpdateAfter)]),
            "taking back the newest row goes back to the one before"
        );
        assert_eq!(
            run(&[("p1", Insert), ("p2", Insert), ("p1", UpdateBefore)]),
            rows(&[("p1", Insert), ("p2", UpdateAfter)]),
            "taking back an older row changes nothing the target holds"
        );
        assert_eq!(
            run(&[
                ("p1", Insert),
                ("p2", Insert),
                ("p1", Delete),
                ("p1", Delete)
            ]),
            rows(&[("p1", Insert), ("p2", UpdateAfter)]),
            "a row taken back twice changes nothing the second time"
        );
        assert_eq!(
            run(&[("p0", Delete)]),
            rows(&[("p0", Delete)]),
            "a key it holds nothing of is deleted: the target's row is from before"
        );
    }
}
