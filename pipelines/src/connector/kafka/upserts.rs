//! A Kafka json topic read as upserts by primary key: runs of rows, each
//! ended by a tombstone (a record without a value) that deletes the key its
//! record key names. A broadcast table and a temporal join's versions both
//! read their topics this way.
//!
//! ```text
//!   records:  row row tombstone(key) row …
//!   changes:  Rows { decoded, origins } ─ Tombstone { record, key } ─ Rows { … }   (in the order written)
//! ```

use arrow::record_batch::RecordBatch;

use crate::decode::SourceRecord;
use crate::decode::json::{Decoded, JsonDecoder};

/// One change of a topic read as upserts.
pub(super) enum Upsert<'r> {
    /// Rows decoded from a run of records; `origins` gives each row's record
    /// (its index in all the records).
    Rows {
        decoded: Decoded,
        origins: Vec<usize>,
    },
    /// A tombstone: its record, its index, and the key its record key names,
    /// `None` when the record key is not the primary key as JSON.
    Tombstone {
        record: &'r SourceRecord,
        at: usize,
        key: Option<RecordBatch>,
    },
}

/// The changes `records` make, in the order they were written: rows decoded
/// by `rows`, tombstones' keys by `keys`.
pub(super) fn upserts<'r>(
    rows: &JsonDecoder,
    keys: &JsonDecoder,
    records: &'r [SourceRecord],
) -> Vec<Upsert<'r>> {
    let mut changes = Vec::new();
    let mut start = 0;
    for run in records.split_inclusive(|record| record.payload.is_none()) {
        let (values, tombstone) = match run.split_last() {
            Some((last, values)) if last.payload.is_none() => (values, Some(last)),
            _ => (run, None),
        };
        let decoded = rows.decode(values);
        let origins = decoded.rows.iter().map(|&row| start + row).collect();
        changes.push(Upsert::Rows { decoded, origins });
        if let Some(record) = tombstone {
            let as_key = SourceRecord {
                payload: record.key.clone(),
                ..record.clone()
            };
            let key = keys.decode(&[as_key]).batch;
            changes.push(Upsert::Tombstone {
                record,
                at: start + values.len(),
                key: (key.num_rows() == 1).then_some(key),
            });
        }
        start += run.len();
    }
    changes
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::datatypes::{DataType, Field, Schema};

    use super::*;

    fn record(offset: i64, key: Option<&str>, payload: Option<&str>) -> SourceRecord {
        SourceRecord {
            partition: 0,
            offset,
            key: key.map(|k| k.as_bytes().to_vec()),
            payload: payload.map(|p| p.as_bytes().to_vec()),
            timestamp_ms: Some(1),
        }
    }

    #[test]
    fn rows_and_tombstones_come_in_the_order_written() {
        let schema = Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, false),
            Field::new("name", DataType::Utf8, true),
        ]));
        let key_schema = Arc::new(Schema::new(vec![Field::new("id", DataType::Int64, false)]));
        let records = [
            record(0, None, Some(r#"{"id": 1, "name": "a"}"#)),
            record(1, None, Some(r#"{"id": 2, "name": "b"}"#)),
            record(2, Some(r#"{"id": 1}"#), None),
            record(3, Some("not json"), None),
            record(4, None, Some(r#"{"id": 3, "name": "c"}"#)),
        ];
        let changes = upserts(
            &JsonDecoder::new(schema),
            &JsonDecoder::new(key_schema),
            &records,
        );
        let shape: Vec<String> = changes
            .iter()
            .map(|change| match change {
                Upsert::Rows { decoded, origins } => {
                    format!("rows {origins:?} of {}", decoded.batch.num_rows())
                }
                Upsert::Tombstone { at, key, .. } => format!("tombstone {at} {}", key.is_some()),
            })
            .collect();
        assert_eq!(
            shape,
            [
                "rows [0, 1] of 2",
                "tombstone 2 true",
                "rows [] of 0",
                "tombstone 3 false",
                "rows [4] of 1"
            ]
        );
    }
}
