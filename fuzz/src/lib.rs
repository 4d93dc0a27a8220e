//! The fuzz targets' bodies: each takes bytes an attacker chooses and feeds
//! them to what reads untrusted input, asserting what must hold whatever they are.
//!
//! ```text
//!   libFuzzer (cargo fuzz run --features libfuzzer TARGET)  ─┐
//!   tests/targets.rs (seeds + seeded mutations, in CI)      ─┴─▶ json_record | debezium_record | ddl | pipeline_sql
//!                                                                   no panic, no stack overflow;
//!                                                                   a record is a row or set aside with a reason
//! ```
//!
//! A panic is a finding: libFuzzer keeps the input that caused it under
//! `fuzz/artifacts/TARGET/`, and the test names the seed that reproduces it.

use std::path::Path;
use std::sync::Arc;

use arrow::datatypes::{DataType, Field, Fields, Schema, TimeUnit};
use strata_pipelines::decode::debezium::DebeziumDecoder;
use strata_pipelines::decode::json::JsonDecoder;
use strata_pipelines::source::SourceRecord;

/// What a target does with its input.
pub type Body = fn(&[u8]);

/// The targets by name, as `cargo fuzz` and the corpus folders call them.
pub const TARGETS: [(&str, Body); 4] = [
    ("json_record", json_record),
    ("debezium_record", debezium_record),
    ("ddl", ddl),
    ("pipeline_sql", pipeline_sql),
];

/// A table with every kind of column a decoder treats differently.
pub fn schema() -> Arc<Schema> {
    Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, false),
        Field::new("name", DataType::Utf8, true),
        Field::new("amount", DataType::Decimal128(10, 2), true),
        Field::new("qty", DataType::Int32, true),
        Field::new("ts", DataType::Timestamp(TimeUnit::Millisecond, None), true),
        Field::new(
            "tags",
            DataType::List(Arc::new(Field::new("item", DataType::Utf8, true))),
            true,
        ),
        Field::new(
            "address",
            DataType::Struct(Fields::from(vec![Field::new("city", DataType::Utf8, true)])),
            true,
        ),
    ]))
}

fn record(data: &[u8]) -> SourceRecord {
    SourceRecord {
        partition: 0,
        offset: 0,
        timestamp_ms: None,
        key: None,
        payload: Some(data.to_vec()),
    }
}

/// One JSON record: decoded into one row, or set aside with a reason.
pub fn json_record(data: &[u8]) {
    let decoded = JsonDecoder::new(schema()).decode(&[record(data)]);
    assert_eq!(
        decoded.batch.num_rows() + decoded.rejected.len(),
        1,
        "a record is one row or one reject"
    );
    assert!(decoded.rejected.iter().all(|r| !r.error.is_empty()));
}

/// One Debezium change: rows (an update is two) or set aside, never lost.
pub fn debezium_record(data: &[u8]) {
    let changes = DebeziumDecoder::new(schema()).decode(&[record(data)]);
    assert!(
        !changes.rows.is_empty() || !changes.rejected.is_empty(),
        "a change vanished"
    );
}

/// A catalog file: parsed and resolved, or refused; either is fine.
pub fn ddl(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let _ = strata_catalog::ddl::table_defs("fuzz.sql", &text, &Default::default());
}

/// A pipeline file: parsed, or refused; either is fine.
pub fn pipeline_sql(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let _ = strata_pipelines::parse_pipelines(Path::new("fuzz.sql"), &text);
}
