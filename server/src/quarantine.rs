//! `strata quarantine replay TABLE`: after a rule or a dimension was fixed,
//! the records a pipeline quarantined run through it once more. Each is
//! committed, or quarantined again, or filtered out by the pipeline's WHERE;
//! the report accounts for every one.
//!
//! ```text
//!   journal (_strata/replays): started {id, cutoff, rule}
//!     └▶ records = quarantine rows of the pipeline, quarantined at or before the cutoff,
//!                  one per (partition, offset), at their original coordinates
//!     └▶ the pipeline runs on them; offsets commit as replay-<id>/<topic> (+ txn)
//!     └▶ those quarantine rows are deleted (rows quarantined again are newer than the cutoff)
//!   journal: done {id, counts}
//! ```
//!
//! A replay that stopped half-way is finished by the next `replay` of the
//! table: same id and records, so the target skips what it committed and the
//! quarantine what it holds; nothing is committed twice.

use std::collections::BTreeMap;
use std::sync::Arc;

use anyhow::Context;
use arrow::array::{Array, AsArray};
use arrow::datatypes::{DataType, Field, Int32Type, Int64Type, Schema, SchemaRef, TimeUnit};
use arrow::record_batch::RecordBatch;
use serde::Serialize;
use strata_catalog::connectors::delta as lake;
use strata_catalog::{Catalog, TableName};
use strata_pipelines::runner::now_ms;
use strata_pipelines::source::SourceRecord;
use strata_pipelines::{PipelineRun, Quality, Replay, RunMode, TableStats, load_project};

/// What a replay did.
#[derive(Debug, Clone, Serialize)]
pub struct ReplayReport {
    pub table: String,
    pub pipeline: String,
    pub replay_id: String,
    /// An interrupted replay was finished rather than a new one started.
    pub resumed: bool,
    /// Records fed through the pipeline by this run.
    pub replayed: u64,
    pub committed: u64,
    pub quarantined_again: u64,
    /// Left out by the pipeline's WHERE.
    pub filtered: u64,
}

fn journal_schema() -> SchemaRef {
    let time = |name: &str| {
        Field::new(
            name,
            DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into())),
            false,
        )
    };
    Arc::new(Schema::new(vec![
        Field::new("replay_id", DataType::Utf8, false),
        Field::new("table", DataType::Utf8, false),
        Field::new("pipeline", DataType::Utf8, false),
        Field::new("state", DataType::Utf8, false),
        time("cutoff"),
        Field::new("rule", DataType::Utf8, true),
        Field::new("replayed", DataType::Int64, false),
        Field::new("committed", DataType::Int64, false),
        Field::new("quarantined_again", DataType::Int64, false),
        time("at"),
    ]))
}

/// One journal row.
#[derive(Debug, Clone)]
struct Entry {
    id: String,
    state: &'static str,
    cutoff_ms: i64,
    rule: Option<String>,
    counts: [i64; 3],
}

async fn record(
    location: &str,
    table: &TableName,
    pipeline: &str,
    entry: &Entry,
) -> anyhow::Result<()> {
    lake::ensure_table(location, "replays", &journal_schema(), &[], true).await?;
    let utc = |ms: i64| {
        Arc::new(arrow::array::TimestampMillisecondArray::from(vec![ms]).with_timezone("UTC"))
    };
    let batch = RecordBatch::try_new(
        journal_schema(),
        vec![
            Arc::new(arrow::array::StringArray::from(vec![entry.id.clone()])),
            Arc::new(arrow::array::StringArray::from(vec![table.to_string()])),
            Arc::new(arrow::array::StringArray::from(vec![pipeline.to_string()])),
            Arc::new(arrow::array::StringArray::from(vec![entry.state])),
            utc(entry.cutoff_ms),
            Arc::new(arrow::array::StringArray::from(vec![entry.rule.clone()])),
            Arc::new(arrow::array::Int64Array::from(vec![entry.counts[0]])),
            Arc::new(arrow::array::Int64Array::from(vec![entry.counts[1]])),
            Arc::new(arrow::array::Int64Array::from(vec![entry.counts[2]])),
            utc(now_ms()),
        ],
    )?;
    lake::open(location).await?.write(vec![batch]).await?;
    Ok(())
}

/// A replay of `table` that was started and not finished, if any.
async fn unfinished(location: &str, table: &TableName) -> anyhow::Result<Option<Entry>> {
    if !lake::exists(location).await? {
        return Ok(None);
    }
    let sql = format!(
        "SELECT replay_id, CAST(cutoff AS BIGINT), rule FROM journal WHERE \"table\" = '{}' AND state = 'started' \
         AND replay_id NOT IN (SELECT replay_id FROM journal WHERE state = 'done')",
        table.to_string().replace('\'', "''")
    );
    let batches = lake::query(location, "journal", &sql).await?;
    for batch in batches {
        if batch.num_rows() == 0 {
            continue;
        }
        let ids = arrow::compute::cast(batch.column(0), &DataType::Utf8)?;
        let cutoffs = arrow::compute::cast(batch.column(1), &DataType::Int64)?;
        let rules = arrow::compute::cast(batch.column(2), &DataType::Utf8)?;
        let rules = rules.as_string::<i32>();
        return Ok(Some(Entry {
            id: ids.as_string::<i32>().value(0).to_string(),
            state: "started",
            // Delta keeps timestamps in microseconds.
            cutoff_ms: to_ms(cutoffs.as_primitive::<Int64Type>().value(0)),
            rule: rules.is_valid(0).then(|| rules.value(0).to_string()),
            counts: [0; 3],
        }));
    }
    Ok(None)
}

/// A timestamp read back as BIGINT, in ms whichever unit the table stored.
fn to_ms(raw: i64) -> i64 {
    if raw.abs() > 100_000_000_000_000 {
        raw / 1000
    } else {
        raw
    }
}

/// The SQL condition of the quarantine rows a replay takes (and then
/// deletes): the pipeline's, from `topics`, quarantined by the cutoff.
fn selection(pipeline: &str, topics: &[String], cutoff_ms: i64, rule: Option<&str>) -> String {
    let text = |value: &str| format!("'{}'", value.replace('\'', "''"));
    let cutoff = chrono::DateTime::from_timestamp_millis(cutoff_ms)
        .map(|t| t.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string())
        .unwrap_or_default();
    let topics: Vec<String> = topics.iter().map(|t| text(t)).collect();
    let mut condition = format!(
        "pipeline = {} AND \"partition\" >= 0 AND payload IS NOT NULL \
         AND quarantined_at <= '{cutoff}' AND topic IN ({})",
        text(pipeline),
        topics.join(", ")
    );
    if let Some(rule) = rule {
        condition.push_str(&format!(" AND rule = {}", text(rule)));
    }
    condition
}

/// The topics a pipeline's quarantined source records carry: the source's,
/// and those of earlier replays (`replay-<id>/<topic>`).
async fn source_topics(location: &str, pipeline: &str, topic: &str) -> anyhow::Result<Vec<String>> {
    let sql = format!(
        "SELECT DISTINCT topic FROM quarantine WHERE pipeline = '{}'",
        pipeline.replace('\'', "''")
    );
    let mut topics = vec![topic.to_string()];
    for batch in lake::query(location, "quarantine", &sql).await? {
        let names = arrow::compute::cast(batch.column(0), &DataType::Utf8)?;
        let names = names.as_string::<i32>();
        for row in 0..names.len() {
            let name = names.value(row);
            if name.starts_with("replay-") && name.ends_with(&format!("/{topic}")) {
                topics.push(name.to_string());
            }
        }
    }
    Ok(topics)
}

/// The quarantine times (ms) of the rows a replay read: with its condition,
/// they name exactly the rows deleted once it has run.
type ReadRows = std::collections::BTreeSet<i64>;

/// The records to replay, one per (partition, offset), in offset order, and the rows they came from.
async fn records(location: &str, condition: &str) -> anyhow::Result<(Vec<SourceRecord>, ReadRows)> {
    let sql = format!(
        "SELECT \"partition\", \"offset\", record_time, key, payload, CAST(quarantined_at AS BIGINT) AS stamp \
         FROM quarantine WHERE {condition} ORDER BY stamp"
    );
    let batches = lake::query(location, "quarantine", &sql).await?;
    let mut by_coordinates: BTreeMap<(i32, i64), SourceRecord> = BTreeMap::new();
    let mut read = ReadRows::new();
    for batch in batches {
        let partitions = arrow::compute::cast(batch.column(0), &DataType::Int32)?;
        let partitions = partitions.as_primitive::<Int32Type>();
        let offsets = arrow::compute::cast(batch.column(1), &DataType::Int64)?;
        let offsets = offsets.as_primitive::<Int64Type>();
        let times = arrow::compute::cast(batch.column(2), &DataType::Int64)?;
        let times = times.as_primitive::<Int64Type>();
        // Delta hands binary columns back as views; read them as plain binary.
        let keys = arrow::compute::cast(batch.column(3), &DataType::Binary)?;
        let keys = keys.as_binary::<i32>();
        let payloads = arrow::compute::cast(batch.column(4), &DataType::Binary)?;
        let payloads = payloads.as_binary::<i32>();
        let stamps = arrow::compute::cast(batch.column(5), &DataType::Int64)?;
        let stamps = stamps.as_primitive::<Int64Type>();
        for row in 0..batch.num_rows() {
            read.insert(to_ms(stamps.value(row)));
            // The latest quarantining of a record wins (ordered by quarantined_at).
            by_coordinates.insert(
                (partitions.value(row), offsets.value(row)),
                SourceRecord {
                    partition: partitions.value(row),
                    offset: offsets.value(row),
                    timestamp_ms: times.is_valid(row).then(|| to_ms(times.value(row))),
                    key: keys.is_valid(row).then(|| keys.value(row).to_vec()),
                    payload: Some(payloads.value(row).to_vec()),
                },
            );
        }
    }
    Ok((by_coordinates.into_values().collect(), read))
}

/// Deletes exactly the quarantine rows a replay read: those of its condition
/// with the quarantine times it read (every row of a quarantine commit shares
/// one time). Rows that landed since, even if stamped before the cutoff, stay
/// for the next replay.
async fn delete_read(location: &str, condition: &str, read: &ReadRows) -> anyhow::Result<()> {
    let stamps: Vec<String> = read
        .iter()
        .map(|&ms| {
            chrono::DateTime::from_timestamp_millis(ms)
                .map(|t| format!("'{}'", t.format("%Y-%m-%dT%H:%M:%S%.3fZ")))
                .unwrap_or_default()
        })
        .collect();
    for chunk in stamps.chunks(1_000) {
        let predicate = format!("{condition} AND quarantined_at IN ({})", chunk.join(", "));
        lake::open(location)
            .await?
            .delete()
            .with_predicate(predicate)
            .await?;
    }
    Ok(())
}

/// Replays the quarantine of `table` (or the rows one rule sent there).
pub async fn replay(
    catalog: &Catalog,
    table: &TableName,
    rule: Option<&str>,
) -> anyhow::Result<ReplayReport> {
    let pipelines = load_project(catalog).await?;
    // As in `strata run`: tables a pipeline writes are checked where they are written.
    let written: std::collections::BTreeSet<TableName> =
        pipelines.iter().map(|p| p.target.name.clone()).collect();
    let pipeline = pipelines
        .into_iter()
        .find(|p| &p.target.name == table)
        .with_context(|| format!("no pipeline writes {table}\n  hint: replay feeds quarantined records through the pipeline that writes the table"))?;
    let source = pipeline
        .streams()
        .next()
        .context("the pipeline reads no stream")?
        .clone();
    let topic = strata_catalog::connectors::kafka_target(catalog.project(), &source)
        .with_context(|| format!("pipeline {} reads {}, which is not a Kafka topic; only records read from Kafka can be replayed", pipeline.pipeline.name, source.name))?
        .topic;
    let quarantine = crate::quality::quarantine_location(catalog, table)
        .await
        .with_context(|| {
            format!("{table} has no quarantine yet: its pipeline has not quarantined anything")
        })?;
    let journal = format!(
        "{}/_strata/replays",
        catalog.project().lake_root().trim_end_matches('/')
    );
    let name = pipeline.pipeline.name.clone();
    let (entry, resumed) = match unfinished(&journal, table).await? {
        Some(entry) if rule.is_some() && entry.rule.as_deref() != rule => anyhow::bail!(
            "replay {} of {table} (rule {}) stopped before it finished\n  hint: finish it first with `strata quarantine replay {table}{}`, then replay --rule {}",
            entry.id,
            entry.rule.as_deref().unwrap_or("any"),
            entry
                .rule
                .as_deref()
                .map(|r| format!(" --rule {r}"))
                .unwrap_or_default(),
            rule.unwrap_or_default()
        ),
        Some(entry) => (entry, true),
        None => {
            let entry = Entry {
                id: uuid::Uuid::new_v4().simple().to_string()[..12].to_string(),
                state: "started",
                cutoff_ms: now_ms(),
                rule: rule.map(str::to_string),
                counts: [0; 3],
            };
            record(&journal, table, &name, &entry).await?;
            // Rows this replay quarantines again are stamped after the cutoff.
            tokio::time::sleep(std::time::Duration::from_millis(2)).await;
            (entry, false)
        }
    };
    let topics = source_topics(&quarantine, &name, &topic).await?;
    let condition = selection(&name, &topics, entry.cutoff_ms, entry.rule.as_deref());
    let (records, read) = records(&quarantine, &condition).await?;
    let checks = Arc::new(crate::quality::load_checks(catalog).await?);
    let results = crate::quality::open_results(catalog).await?;
    let stats = Arc::new(TableStats::new());
    let run = PipelineRun {
        catalog: catalog.clone(),
        pipeline,
        stats: stats.clone(),
        mode: RunMode::UntilCaughtUp,
        quality: Quality {
            checks,
            results: Some(results.clone()),
            written: Arc::new(written),
        },
        replay: Some(Arc::new(Replay {
            id: entry.id.clone(),
            topic,
            records,
        })),
    };
    let (_stop, stop_rx) = tokio::sync::watch::channel(false);
    let outcome = run.run(stop_rx).await;
    // A stop rule's results are recorded before the error is reported.
    let flushed = results.flush().await;
    if let (Err(err), Err(_)) = (&flushed, &outcome) {
        eprintln!("warning: the replay's quality results were not written: {err}");
    }
    outcome.with_context(|| {
        format!("replaying the quarantine of {table} stopped; run the replay again to finish it")
    })?;
    flushed?;
    delete_read(&quarantine, &condition, &read).await.context(
        "removing the replayed records from the quarantine; run the replay again to finish it",
    )?;
    let load =
        |counter: &std::sync::atomic::AtomicU64| counter.load(std::sync::atomic::Ordering::Relaxed);
    let replayed = load(&stats.records_in);
    let committed = load(&stats.rows_committed);
    let quarantined_again = load(&stats.quarantined_rows);
    let done = Entry {
        state: "done",
        counts: [replayed as i64, committed as i64, quarantined_again as i64],
        ..entry.clone()
    };
    record(&journal, table, &name, &done).await?;
    Ok(ReplayReport {
        table: table.to_string(),
        pipeline: name,
        replay_id: entry.id,
        resumed,
        replayed,
        committed,
        quarantined_again,
        filtered: replayed.saturating_sub(committed + quarantined_again),
    })
}
