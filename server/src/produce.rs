//! `strata produce SPACE.TABLE`: JSON lines into a Kafka table's topic, each
//! checked against the table's schema first, all or nothing.
//!
//! ```text
//!   file.jsonl / stdin ──each line──▶ strict reading + arrow-json decode (as a pipeline reads it)
//!        │ every line fits                      │ a line does not
//!        ▼                                      ▼
//!   produced to the topic, awaited        refused: file:line: reason, nothing produced
//! ```
//!
//! A record a pipeline would quarantine is refused here, so what is produced
//! is what the table says. Works against any broker the table reaches.

use std::io::BufRead;

use anyhow::{Context, bail};
use serde::Serialize;
use strata_catalog::{Catalog, KafkaFormat, TableKind, TableName, connectors};
use strata_pipelines::decode::json::JsonDecoder;
use strata_pipelines::source::SourceRecord;

/// The most refused lines named in the error.
const SHOWN_REFUSALS: usize = 10;

/// What `strata produce` sent.
#[derive(Debug, Serialize)]
pub struct ProduceReport {
    pub table: String,
    pub topic: String,
    pub records: usize,
}

/// Checks every line of `input` (named `origin` in errors) against the
/// table's schema, then produces them all to its topic.
pub async fn produce(
    catalog: &Catalog,
    table: &TableName,
    input: impl BufRead,
    origin: &str,
) -> anyhow::Result<ProduceReport> {
    let def = catalog.get(table).await?.def;
    let TableKind::Kafka { format, .. } = &def.kind else {
        bail!(
            "{table} is a {} table; strata produce writes Kafka tables\n  hint: write to other tables with `strata query \"INSERT INTO {table} VALUES …\"`",
            def.kind.connector()
        );
    };
    if *format != KafkaFormat::Json {
        bail!(
            "{table} has format '{}'; strata produce writes JSON records\n  hint: produce other formats with your own producer or kcat",
            format.as_str()
        );
    }
    let target = connectors::kafka_target(catalog.project(), &def)?;
    let decoder = JsonDecoder::new(def.schema.clone());
    let mut records = Vec::new();
    let mut refused = Vec::new();
    for (index, line) in input.lines().enumerate() {
        let line = line.with_context(|| format!("reading {origin}"))?;
        if line.trim().is_empty() {
            continue;
        }
        let record = SourceRecord {
            partition: 0,
            offset: index as i64,
            timestamp_ms: None,
            key: None,
            payload: Some(line.into_bytes()),
        };
        match decoder.decode(std::slice::from_ref(&record)).rejected.pop() {
            Some(rejected) => refused.push(format!("{origin}:{}: {}", index + 1, rejected.error)),
            None => records.push(record.payload.expect("set above")),
        }
    }
    if !refused.is_empty() {
        let more = refused
            .len()
            .checked_sub(SHOWN_REFUSALS)
            .filter(|&n| n > 0)
            .map(|n| format!("\n  … and {n} more"))
            .unwrap_or_default();
        bail!(
            "{} of {} records do not fit {table}; nothing was produced:\n  {}{more}\n  hint: fix the records, or the table's schema (`strata catalog show {table}`)",
            refused.len(),
            refused.len() + records.len(),
            refused[..refused.len().min(SHOWN_REFUSALS)].join("\n  ")
        );
    }
    connectors::kafka_sink::produce_all(&target, &records).await?;
    Ok(ProduceReport {
        table: table.to_string(),
        topic: target.topic,
        records: records.len(),
    })
}
