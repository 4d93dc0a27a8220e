//! `<target>__quarantine`: every record a pipeline could not put in its target,
//! with its raw bytes, the reason, the quality rule it failed (if one did), its
//! event time (if it was decoded), and where it came from. Nothing is dropped.
//!
//! The quarantine is a Delta table committed exactly once like the target:
//! it is committed first, with the same `txn` offsets, so that after a crash
//! a replay skips the records it already holds.

use std::sync::Arc;

use arrow::array::{
    BinaryBuilder, Int32Builder, Int64Builder, StringBuilder, TimestampMillisecondBuilder,
};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use arrow::record_batch::RecordBatch;

use crate::decode::json::Rejected;

/// The quarantine table's schema.
pub fn schema() -> SchemaRef {
    let utc = Some("UTC".into());
    Arc::new(Schema::new(vec![
        Field::new("pipeline", DataType::Utf8, false),
        Field::new("topic", DataType::Utf8, false),
        Field::new("partition", DataType::Int32, false),
        Field::new("offset", DataType::Int64, false),
        Field::new(
            "record_time",
            DataType::Timestamp(TimeUnit::Millisecond, utc.clone()),
            true,
        ),
        Field::new("key", DataType::Binary, true),
        Field::new("payload", DataType::Binary, true),
        Field::new("reason", DataType::Utf8, false),
        Field::new(
            "quarantined_at",
            DataType::Timestamp(TimeUnit::Millisecond, utc.clone()),
            false,
        ),
        Field::new("rule", DataType::Utf8, true),
        Field::new(
            "event_time",
            DataType::Timestamp(TimeUnit::Millisecond, utc),
            true,
        ),
    ]))
}

/// The name of a target's quarantine table.
pub fn table_name(target: &str) -> String {
    format!("{target}__quarantine")
}

/// Rejected records as rows of the quarantine table.
pub fn rows(pipeline: &str, topic: &str, rejected: &[Rejected], now_ms: i64) -> RecordBatch {
    let mut pipelines = StringBuilder::new();
    let mut topics = StringBuilder::new();
    let mut partitions = Int32Builder::new();
    let mut offsets = Int64Builder::new();
    let mut times = TimestampMillisecondBuilder::new().with_timezone("UTC");
    let mut keys = BinaryBuilder::new();
    let mut payloads = BinaryBuilder::new();
    let mut reasons = StringBuilder::new();
    let mut quarantined = TimestampMillisecondBuilder::new().with_timezone("UTC");
    let mut rules = StringBuilder::new();
    let mut event_times = TimestampMillisecondBuilder::new().with_timezone("UTC");
    for item in rejected {
        pipelines.append_value(pipeline);
        topics.append_value(topic);
        partitions.append_value(item.record.partition);
        offsets.append_value(item.record.offset);
        times.append_option(item.record.timestamp_ms);
        keys.append_option(item.record.key.as_deref());
        payloads.append_option(item.record.payload.as_deref());
        reasons.append_value(&item.error);
        quarantined.append_value(now_ms);
        rules.append_option(item.rule.as_deref());
        event_times.append_option(item.event_time_ms);
    }
    RecordBatch::try_new(
        schema(),
        vec![
            Arc::new(pipelines.finish()),
            Arc::new(topics.finish()),
            Arc::new(partitions.finish()),
            Arc::new(offsets.finish()),
            Arc::new(times.finish()),
            Arc::new(keys.finish()),
            Arc::new(payloads.finish()),
            Arc::new(reasons.finish()),
            Arc::new(quarantined.finish()),
            Arc::new(rules.finish()),
            Arc::new(event_times.finish()),
        ],
    )
    .expect("columns match the quarantine schema")
}
