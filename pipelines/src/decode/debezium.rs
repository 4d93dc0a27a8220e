//! Debezium JSON → a changelog of Arrow rows, each with its kind.
//!
//! ```text
//!   {"before": …, "after": {…}, "op": "c"}   ──▶ +I after          ("r", a snapshot read, too)
//!   {"before": {…}, "after": {…}, "op": "u"} ──▶ -U before, +U after
//!   {"before": {…}, "after": null, "op": "d"} ──▶ -D before
//!   {"schema": …, "payload": {…}}            ──▶ the same, from the payload
//!   a tombstone (no value) after a delete    ──▶ nothing: it only lets Kafka compact the key away
//! ```
//!
//! Records that are not Debezium changes (no `op`, an unknown `op`, an image
//! missing, or values that do not fit the table) are rejected with the reason.

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, StringArray, StructArray};
use arrow::datatypes::{DataType, Field, Fields, Schema, SchemaRef};
use arrow::record_batch::RecordBatch;

use super::json::{JsonDecoder, Rejected};
use crate::decode::SourceRecord;
use crate::operator::RowKind;

/// What decoding a batch of Debezium records produced.
#[derive(Debug)]
pub struct DecodedChanges {
    /// Rows of the table's schema (every column nullable).
    pub batch: RecordBatch,
    /// For each row, the index of the record it came from, and its kind.
    pub rows: Vec<(usize, RowKind)>,
    pub rejected: Vec<Rejected>,
}

#[derive(Debug, Clone)]
pub struct DebeziumDecoder {
    envelope: JsonDecoder,
    image: Fields,
    schema: SchemaRef,
}

impl DebeziumDecoder {
    pub fn new(schema: SchemaRef) -> Self {
        let image = Fields::from(crate::batch::nullable_fields(&schema));
        let change = |name: &str| Field::new(name, DataType::Struct(image.clone()), true);
        let change_fields = Fields::from(vec![
            change("before"),
            change("after"),
            Field::new("op", DataType::Utf8, true),
        ]);
        let mut envelope: Vec<Field> = change_fields.iter().map(|f| f.as_ref().clone()).collect();
        envelope.push(Field::new("payload", DataType::Struct(change_fields), true));
        Self {
            envelope: JsonDecoder::new(Arc::new(Schema::new(envelope))),
            schema: Arc::new(Schema::new(image.clone())),
            image,
        }
    }

    pub fn decode(&self, records: &[SourceRecord]) -> DecodedChanges {
        let with_value: Vec<usize> = (0..records.len())
            .filter(|&i| records[i].payload.is_some())
            .collect();
        let values: Vec<SourceRecord> = with_value.iter().map(|&i| records[i].clone()).collect();
        let decoded = self.envelope.decode(&values);
        let mut rejected = decoded.rejected;
        let batch = &decoded.batch;
        let payload = batch
            .column_by_name("payload")
            .and_then(|c| c.as_any().downcast_ref::<StructArray>().cloned());
        // Each part from the top level, or else from the payload envelope.
        let part = |name: &str, row: usize| -> Option<(ArrayRef, usize)> {
            let top = batch.column_by_name(name)?;
            if top.is_valid(row) {
                return Some((top.clone(), row));
            }
            let payload = payload.as_ref().filter(|p| p.is_valid(row))?;
            let inner = payload.column_by_name(name)?;
            inner.is_valid(row).then(|| (inner.clone(), row))
        };
        let mut sources: Vec<ArrayRef> = Vec::new();
        let mut picks: Vec<(usize, usize)> = Vec::new();
        let mut rows = Vec::new();
        let mut pick = |image: (ArrayRef, usize), record: usize, kind: RowKind| {
            let index = sources
                .iter()
                .position(|s| Arc::ptr_eq(s, &image.0))
                .unwrap_or_else(|| {
                    sources.push(image.0.clone());
                    sources.len() - 1
                });
            picks.push((index, image.1));
            rows.push((record, kind));
        };
        for (row, &value_index) in decoded.rows.iter().enumerate() {
            let record = with_value[value_index];
            let op = part("op", row).map(|(ops, r)| {
                ops.as_any()
                    .downcast_ref::<StringArray>()
                    .map(|s| s.value(r).to_string())
                    .unwrap_or_default()
            });
            let before = part("before", row);
            let after = part("after", row);
            let problem = match (op.as_deref(), before, after) {
                (Some("c" | "r"), _, Some(after)) => {
                    pick(after, record, RowKind::Insert);
                    None
                }
                (Some("u"), before, Some(after)) => {
                    if let Some(before) = before {
                        pick(before, record, RowKind::UpdateBefore);
                    }
                    pick(after, record, RowKind::UpdateAfter);
                    None
                }
                (Some("d"), Some(before), _) => {
                    pick(before, record, RowKind::Delete);
                    None
                }
                (Some("c" | "r" | "u"), _, None) => {
                    Some("a Debezium insert or update without \"after\"")
                }
                (Some("d"), None, _) => Some(
                    "a Debezium delete without \"before\" (set the source table's REPLICA IDENTITY FULL, or emit the key)",
                ),
                (Some(_), _, _) => Some("an unknown Debezium \"op\"; expected c, r, u or d"),
                (None, _, _) => {
                    Some("no Debezium \"op\" field; is this topic really 'debezium-json'?")
                }
            };
            if let Some(problem) = problem {
                rejected.push(Rejected {
                    record: records[record].clone(),
                    error: problem.to_string(),
                    rule: None,
                    event_time_ms: None,
                });
            }
        }
        DecodedChanges {
            batch: self.images(&sources, &picks),
            rows,
            rejected,
        }
    }

    /// The picked images, as rows of the table.
    fn images(&self, sources: &[ArrayRef], picks: &[(usize, usize)]) -> RecordBatch {
        if picks.is_empty() {
            return RecordBatch::new_empty(self.schema.clone());
        }
        let structs: Vec<&StructArray> = sources
            .iter()
            .map(|s| {
                s.as_any()
                    .downcast_ref::<StructArray>()
                    .expect("images are structs")
            })
            .collect();
        let columns = (0..self.image.len())
            .map(|column| {
                let arrays: Vec<&dyn Array> =
                    structs.iter().map(|s| s.column(column).as_ref()).collect();
                arrow::compute::interleave(&arrays, picks)
            })
            .collect::<Result<Vec<_>, _>>()
            .expect("images share the table's types");
        RecordBatch::try_new(self.schema.clone(), columns).expect("columns fit the table")
    }
}

#[cfg(test)]
mod tests {
    use arrow::array::Int64Array;

    use super::*;

    fn record(offset: i64, payload: Option<&str>) -> SourceRecord {
        SourceRecord {
            partition: 0,
            offset,
            timestamp_ms: None,
            key: None,
            payload: payload.map(|p| p.as_bytes().to_vec()),
        }
    }

    #[test]
    fn changes_become_rows_with_their_kinds() {
        let schema = Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, false),
            Field::new("price", DataType::Int64, true),
        ]));
        let decoded = DebeziumDecoder::new(schema).decode(&[
            record(0, Some(r#"{"before": null, "after": {"id": 1, "price": 10}, "op": "c"}"#)),
            record(1, Some(r#"{"schema": {}, "payload": {"before": {"id": 1, "price": 10}, "after": {"id": 1, "price": 12}, "op": "u"}}"#)),
            record(2, Some(r#"{"before": {"id": 1, "price": 12}, "after": null, "op": "d"}"#)),
            record(3, None),
            record(4, Some(r#"{"id": 1, "price": 3}"#)),
            record(5, Some(r#"{"after": {"id": "x"}, "op": "c"}"#)),
        ]);
        let kinds: Vec<(usize, RowKind)> = decoded.rows.clone();
        assert_eq!(
            kinds,
            [
                (0, RowKind::Insert),
                (1, RowKind::UpdateBefore),
                (1, RowKind::UpdateAfter),
                (2, RowKind::Delete)
            ]
        );
        let prices = decoded
            .batch
            .column(1)
            .as_any()
            .downcast_ref::<Int64Array>()
            .unwrap();
        assert_eq!(prices.values().to_vec(), [10, 10, 12, 12]);
        let rejected: Vec<i64> = decoded.rejected.iter().map(|r| r.record.offset).collect();
        assert_eq!(rejected, [5, 4]);
    }
}
