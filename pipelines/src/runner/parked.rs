//! Rows a lookup join set aside to look up again later (`'miss' = 'retry'`),
//! while the rows behind them go on. They are part of the state checkpoint
//! committed with the target, so a crash between a miss and its retry loses
//! nothing: the commit that covers the row's offset also holds the row.
//!
//! ```text
//!   miss ─▶ park(row, partition, offset, attempt 1, due = now + delay)
//!   loop: due rows ─▶ the SELECT again (a cached miss is not trusted) ─┬─▶ found: on to the target
//!                                                                      └─▶ missed: park(attempt + 1) … until max-attempts
//!   commit: checkpoint ∋ parked rows          restart: restore them, retry when due
//! ```

use std::sync::Arc;

use arrow::datatypes::{Schema, SchemaRef};
use arrow::record_batch::RecordBatch;
use arrow::row::{OwnedRow, RowConverter};

use crate::error::Result;
use crate::operator::RowKind;
use crate::state::{ByteReader, ByteWriter};

#[derive(Debug)]
struct ParkedRow {
    row: OwnedRow,
    partition: i32,
    offset: i64,
    kind: Option<RowKind>,
    /// Lookups done so far beyond the first.
    attempt: u32,
    due_ms: i64,
}

/// Rows of one retry pass: all at the same attempt.
#[derive(Debug)]
pub struct DueRows {
    pub attempt: u32,
    pub rows: RecordBatch,
    pub coordinates: Vec<(i32, i64)>,
    pub kinds: Option<Vec<RowKind>>,
}

#[derive(Debug)]
pub struct ParkedRows {
    schema: SchemaRef,
    converter: RowConverter,
    rows: Vec<ParkedRow>,
}

impl ParkedRows {
    /// For rows of the source's schema (every field nullable).
    pub fn new(source: &Schema) -> Result<Self> {
        let schema = Arc::new(Schema::new(crate::batch::nullable_fields(source)));
        let converter = crate::batch::row_converter(&schema)?;
        Ok(Self {
            schema,
            converter,
            rows: Vec::new(),
        })
    }

    /// When the next row is due, in ms since the epoch.
    pub fn next_due_ms(&self) -> Option<i64> {
        self.rows.iter().map(|r| r.due_ms).min()
    }

    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    pub fn len(&self) -> usize {
        self.rows.len()
    }

    /// Sets `origins` of `rows` aside, each due when `due_of` says.
    pub fn park(
        &mut self,
        rows: &RecordBatch,
        coordinates: &[(i32, i64)],
        kinds: Option<&[RowKind]>,
        origins: &[usize],
        attempt: u32,
        due_of: impl Fn(usize) -> i64,
    ) -> Result<()> {
        let encoded = self.converter.convert_columns(rows.columns())?;
        for &origin in origins {
            let due_ms = due_of(origin);
            let (partition, offset) = coordinates[origin];
            self.rows.push(ParkedRow {
                row: encoded.row(origin).owned(),
                partition,
                offset,
                kind: kinds.map(|k| k[origin]),
                attempt,
                due_ms,
            });
        }
        Ok(())
    }

    /// Takes the rows due by `now_ms`, grouped by attempt.
    pub fn take_due(&mut self, now_ms: i64) -> Result<Vec<DueRows>> {
        let (due, waiting): (Vec<ParkedRow>, Vec<ParkedRow>) = std::mem::take(&mut self.rows)
            .into_iter()
            .partition(|r| r.due_ms <= now_ms);
        self.rows = waiting;
        let mut attempts: Vec<u32> = due.iter().map(|r| r.attempt).collect();
        attempts.sort_unstable();
        attempts.dedup();
        attempts
            .into_iter()
            .map(|attempt| {
                let group: Vec<&ParkedRow> = due.iter().filter(|r| r.attempt == attempt).collect();
                let columns = self
                    .converter
                    .convert_rows(group.iter().map(|r| r.row.row()))?;
                let rows = RecordBatch::try_new(self.schema.clone(), columns)?;
                let changelog = group.iter().any(|r| r.kind.is_some());
                Ok(DueRows {
                    attempt,
                    rows,
                    coordinates: group.iter().map(|r| (r.partition, r.offset)).collect(),
                    kinds: changelog.then(|| {
                        group
                            .iter()
                            .map(|r| r.kind.unwrap_or(RowKind::Insert))
                            .collect()
                    }),
                })
            })
            .collect()
    }

    pub fn encode(&self, out: &mut ByteWriter) {
        out.u64(self.rows.len() as u64);
        for row in &self.rows {
            out.bytes(row.row.row().data());
            out.i64(i64::from(row.partition));
            out.i64(row.offset);
            out.u8(match row.kind {
                None => 0,
                Some(RowKind::Insert) => 1,
                Some(RowKind::UpdateBefore) => 2,
                Some(RowKind::UpdateAfter) => 3,
                Some(RowKind::Delete) => 4,
            });
            out.u64(u64::from(row.attempt));
            out.i64(row.due_ms);
        }
    }

    pub fn decode(&mut self, input: &mut ByteReader) -> Result<()> {
        let count = input.u64()?;
        let parser = self.converter.parser();
        for _ in 0..count {
            let bytes = input.bytes()?;
            let row = parser.parse(bytes).owned();
            let partition = i32::try_from(input.i64()?)
                .map_err(|_| input.corrupt("a parked row's partition is out of range"))?;
            let offset = input.i64()?;
            let kind = match input.u8()? {
                0 => None,
                1 => Some(RowKind::Insert),
                2 => Some(RowKind::UpdateBefore),
                3 => Some(RowKind::UpdateAfter),
                4 => Some(RowKind::Delete),
                _ => return Err(input.corrupt("a parked row has an unknown kind")),
            };
            let attempt = u32::try_from(input.u64()?)
                .map_err(|_| input.corrupt("a parked row's attempt is out of range"))?;
            let due_ms = input.i64()?;
            self.rows.push(ParkedRow {
                row,
                partition,
                offset,
                kind,
                attempt,
                due_ms,
            });
        }
        Ok(())
    }
}
