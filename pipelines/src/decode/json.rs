//! JSON → Arrow, straight into columns with arrow-json's decoder (no
//! per-row `serde_json::Value`), keeping aside every record that does not fit.
//!
//! ```text
//!   records ──decode all──▶ RecordBatch                      (the usual case: one pass)
//!              │ a record fails
//!              └──▶ check each record alone ──▶ good ones decoded together
//!                                          └──▶ bad ones: Rejected { record, error }
//! ```

use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use arrow_json::ReaderBuilder;
use strata_catalog::connectors::json_check::{Refusal, check_record};

use crate::decode::SourceRecord;

/// Records with their index in the input.
type Numbered<'a> = Vec<(usize, &'a SourceRecord)>;

/// A record that could not be decoded, and why.
#[derive(Debug, Clone, PartialEq)]
pub struct Rejected {
    pub record: SourceRecord,
    pub error: String,
    /// The quality rule the record failed, when one did.
    pub rule: Option<String>,
    /// The record's event time, when it was decoded and has one.
    pub event_time_ms: Option<i64>,
}

/// What decoding a batch of records produced.
#[derive(Debug)]
pub struct Decoded {
    pub batch: RecordBatch,
    /// For each row of `batch`, the index of the record it came from.
    pub rows: Vec<usize>,
    pub rejected: Vec<Rejected>,
    /// A field the records carry that the schema does not have (additive
    /// schema drift), when one was seen.
    pub drift: Option<String>,
}

/// Decodes JSON objects of `schema` from records' payloads.
#[derive(Debug, Clone)]
pub struct JsonDecoder {
    schema: SchemaRef,
}

impl JsonDecoder {
    pub fn new(schema: SchemaRef) -> Self {
        Self { schema }
    }

    /// Decodes what fits; the rest is set aside, in the order it was read.
    pub fn decode(&self, records: &[SourceRecord]) -> Decoded {
        let mut decoded = self.decode_unordered(records);
        decoded
            .rejected
            .sort_by_key(|r| (r.record.partition, r.record.offset));
        decoded
    }

    fn decode_unordered(&self, records: &[SourceRecord]) -> Decoded {
        let (with_payload, tombstones): (Numbered, Numbered) = records
            .iter()
            .enumerate()
            .partition(|(_, r)| r.payload.is_some());
        let mut rejected: Vec<Rejected> = tombstones
            .into_iter()
            .map(|(_, record)| Rejected {
                record: record.clone(),
                error: "the record has no value (a tombstone)".to_string(),
                rule: None,
                event_time_ms: None,
            })
            .collect();
        // Lossy conversions and nesting that could exhaust the stack are refused
        // before arrow-json, which would coerce or recurse, sees the record.
        let mut with_payload = with_payload;
        with_payload.retain(|(_, record)| {
            let payload = record.payload.as_deref().unwrap_or_default();
            match check_record(&self.schema, payload) {
                Ok(()) => true,
                Err(refusal) => {
                    let error = match refusal {
                        Refusal::Mismatch(message) => incompatible_drift(message),
                        Refusal::Malformed(message) => message,
                    };
                    rejected.push(Rejected {
                        record: (*record).clone(),
                        error,
                        rule: None,
                        event_time_ms: None,
                    });
                    false
                }
            }
        });
        let payloads: Vec<&SourceRecord> = with_payload.iter().map(|(_, r)| *r).collect();
        // Strict first, so that a field the catalog does not know is seen; then
        // leniently, ignoring it (additive drift is reported, not rejected).
        let drift = match self.decode_with(&payloads, true) {
            Ok(batch) => {
                return Decoded {
                    batch,
                    rows: with_payload.iter().map(|(index, _)| *index).collect(),
                    rejected,
                    drift: None,
                };
            }
            Err(error) => unknown_field(&error),
        };
        if drift.is_some()
            && let Ok(batch) = self.decode_all(&payloads)
        {
            return Decoded {
                batch,
                rows: with_payload.iter().map(|(index, _)| *index).collect(),
                rejected,
                drift,
            };
        }
        let mut good = Vec::with_capacity(with_payload.len());
        let mut rows = Vec::with_capacity(with_payload.len());
        for (index, record) in with_payload {
            match self.decode_all(&[record]) {
                Ok(_) => {
                    good.push(record);
                    rows.push(index);
                }
                Err(error) => rejected.push(Rejected {
                    record: record.clone(),
                    error: incompatible_drift(error),
                    rule: None,
                    event_time_ms: None,
                }),
            }
        }
        let batch = match self.decode_all(&good) {
            Ok(batch) => batch,
            // Each decoded alone; should they not decode together, join them one by one.
            Err(_) => {
                let singles: Vec<RecordBatch> = good
                    .iter()
                    .filter_map(|record| self.decode_all(&[record]).ok())
                    .collect();
                arrow::compute::concat_batches(&self.schema, &singles)
                    .unwrap_or_else(|_| RecordBatch::new_empty(self.schema.clone()))
            }
        };
        Decoded {
            batch,
            rows,
            rejected,
            drift,
        }
    }

    fn decode_all(&self, records: &[&SourceRecord]) -> Result<RecordBatch, String> {
        self.decode_with(records, false)
    }

    fn decode_with(&self, records: &[&SourceRecord], strict: bool) -> Result<RecordBatch, String> {
        let mut decoder = ReaderBuilder::new(self.schema.clone())
            .with_batch_size(records.len().max(1))
            .with_strict_mode(strict)
            .build_decoder()
            .map_err(|err| err.to_string())?;
        for record in records {
            let payload = record.payload.as_deref().unwrap_or_default();
            let before = decoder.len();
            let consumed = decoder.decode(payload).map_err(|err| err.to_string())?;
            if consumed < payload.len() || decoder.has_partial_record() {
                return Err("the record is not one complete JSON value".to_string());
            }
            match decoder.len() - before {
                1 => {}
                0 => return Err("the record holds no JSON value".to_string()),
                _ => return Err("the record holds more than one JSON value".to_string()),
            }
        }
        decoder
            .flush()
            .map_err(|err| err.to_string())
            .map(|batch| batch.unwrap_or_else(|| RecordBatch::new_empty(self.schema.clone())))
    }
}

/// The field named by arrow-json's strict-mode error for a field the schema lacks.
fn unknown_field(error: &str) -> Option<String> {
    let end = error.find("' missing from schema")?;
    let start = error[..end].rfind("column '")? + "column '".len();
    Some(error[start..end].to_string())
}

/// A value of the wrong type for its column is schema drift that cannot be
/// coerced: the record goes to quarantine, and the reason says so.
fn incompatible_drift(error: String) -> String {
    if error.contains("whilst decoding field") || error.contains("values are not coerced") {
        format!(
            "incompatible schema drift (the catalog's type does not fit; the value is not coerced): {error}"
        )
    } else {
        error
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::datatypes::{DataType, Field, Schema};

    use super::*;

    fn record(offset: i64, payload: &str) -> SourceRecord {
        SourceRecord {
            partition: 0,
            offset,
            timestamp_ms: None,
            key: None,
            payload: Some(payload.as_bytes().to_vec()),
        }
    }

    #[test]
    fn bad_records_are_set_aside_and_the_rest_decoded() {
        let schema = Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, false),
            Field::new("name", DataType::Utf8, true),
        ]));
        let decoded = JsonDecoder::new(schema).decode(&[
            record(0, r#"{"id": 1, "name": "a"}"#),
            record(1, r#"{"id": "two"}"#),
            record(2, r#"{"id": 3"#),
            record(3, r#"{"name": "no id"}"#),
            record(4, r#"{"id": 5, "extra": true}"#),
            record(5, "   "),
            record(6, r#"{"id": 6} {"id": 7}"#),
        ]);
        assert_eq!(decoded.batch.num_rows(), 2);
        assert_eq!(decoded.rows, [0, 4]);
        let offsets: Vec<i64> = decoded.rejected.iter().map(|r| r.record.offset).collect();
        assert_eq!(offsets, [1, 2, 3, 5, 6]);
        assert!(decoded.rejected.iter().all(|r| !r.error.is_empty()));
    }
}
