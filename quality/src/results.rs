//! Results: one row per rule evaluation in the Delta table
//! `<lake root>/_strata/quality_results`, and the latest status per table and
//! rule in memory for the API, the metrics and the lineage overlay.
//!
//! ```text
//!   pipelines, freshness, reconciliation ──record──▶ ResultsLog ─┬─▶ latest status (memory)
//!                                                                └─▶ writer task: one Delta append
//!                                                                    per second with what came in
//!   strata check ──────────────────────────── reads the Delta table: per table and rule, the
//!                                              evaluations since a time, the latest and the latest failed
//! ```
//!
//! Results are observations, appended by one writer per process; a crash can
//! lose the last second of them, never a data row.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arrow::array::{
    Array, ArrayRef, Float64Array, Int64Array, StringArray, TimestampMillisecondArray,
};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use arrow::record_batch::RecordBatch;
use strata_catalog::connectors::delta as lake;
use tokio::sync::{mpsc, oneshot};

use crate::error::{QualityError, Result};

/// What was done about a result.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Taken {
    /// The rule passed.
    None,
    Warned,
    Quarantined,
    Stopped,
}

impl Taken {
    pub fn as_str(self) -> &'static str {
        match self {
            Taken::None => "none",
            Taken::Warned => "warned",
            Taken::Quarantined => "quarantined",
            Taken::Stopped => "stopped",
        }
    }

    fn parse(text: &str) -> Self {
        match text {
            "warned" => Taken::Warned,
            "quarantined" => Taken::Quarantined,
            "stopped" => Taken::Stopped,
            _ => Taken::None,
        }
    }
}

/// One evaluation of one rule.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct CheckResult {
    /// When it was evaluated, ms since the epoch.
    pub at_ms: i64,
    pub table: String,
    pub rule: String,
    pub check: String,
    pub pipeline: Option<String>,
    /// `commit`, `window`, `source`, `freshness`, `reconcile` or `history`.
    pub scope: String,
    pub window_start_ms: Option<i64>,
    pub window_end_ms: Option<i64>,
    /// The Delta version the commit made, when it landed.
    pub commit_version: Option<i64>,
    /// Rows (or windows, or evaluations) that passed and failed.
    pub passed: i64,
    pub failed: i64,
    /// The metric, lag (s) or difference seen.
    pub observed: Option<f64>,
    /// What it was held to, e.g. `<= 0.01` or `[10, 500]`.
    pub bound: Option<String>,
    pub action: Taken,
    pub severity: String,
    /// A sentence for people: both sides of a reconciliation, the field that drifted, …
    pub detail: Option<String>,
}

impl CheckResult {
    pub fn failed(&self) -> bool {
        self.failed > 0
    }
}

/// The results table's schema.
pub fn schema() -> SchemaRef {
    let time = |name: &str, nullable: bool| {
        Field::new(
            name,
            DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into())),
            nullable,
        )
    };
    Arc::new(Schema::new(vec![
        time("at", false),
        Field::new("table", DataType::Utf8, false),
        Field::new("rule", DataType::Utf8, false),
        Field::new("check", DataType::Utf8, false),
        Field::new("pipeline", DataType::Utf8, true),
        Field::new("scope", DataType::Utf8, false),
        time("window_start", true),
        time("window_end", true),
        Field::new("commit_version", DataType::Int64, true),
        Field::new("passed", DataType::Int64, false),
        Field::new("failed", DataType::Int64, false),
        Field::new("observed", DataType::Float64, true),
        Field::new("bound", DataType::Utf8, true),
        Field::new("action", DataType::Utf8, false),
        Field::new("severity", DataType::Utf8, false),
        Field::new("detail", DataType::Utf8, true),
    ]))
}

/// Where a project keeps its results table.
pub fn location(lake_root: &str) -> String {
    format!(
        "{}/_strata/quality_results",
        lake_root.trim_end_matches('/')
    )
}

/// Results as rows of the results table.
pub fn to_batch(results: &[CheckResult]) -> RecordBatch {
    let text = |value: fn(&CheckResult) -> Option<&str>| -> ArrayRef {
        Arc::new(results.iter().map(value).collect::<StringArray>())
    };
    let time = |value: fn(&CheckResult) -> Option<i64>| -> ArrayRef {
        Arc::new(
            results
                .iter()
                .map(value)
                .collect::<TimestampMillisecondArray>()
                .with_timezone("UTC"),
        )
    };
    let int = |value: fn(&CheckResult) -> Option<i64>| -> ArrayRef {
        Arc::new(results.iter().map(value).collect::<Int64Array>())
    };
    RecordBatch::try_new(
        schema(),
        vec![
            time(|r| Some(r.at_ms)),
            text(|r| Some(&r.table)),
            text(|r| Some(&r.rule)),
            text(|r| Some(&r.check)),
            text(|r| r.pipeline.as_deref()),
            text(|r| Some(&r.scope)),
            time(|r| r.window_start_ms),
            time(|r| r.window_end_ms),
            int(|r| r.commit_version),
            int(|r| Some(r.passed)),
            int(|r| Some(r.failed)),
            Arc::new(results.iter().map(|r| r.observed).collect::<Float64Array>()),
            text(|r| r.bound.as_deref()),
            text(|r| Some(r.action.as_str())),
            text(|r| Some(&r.severity)),
            text(|r| r.detail.as_deref()),
        ],
    )
    .expect("columns match the results schema")
}

/// Rows of the results table read back.
pub fn from_batch(batch: &RecordBatch) -> Vec<CheckResult> {
    let strings = |name: &str| {
        arrow::compute::cast(
            batch.column_by_name(name).expect("results column"),
            &DataType::Utf8,
        )
        .expect("text")
        .as_any()
        .downcast_ref::<StringArray>()
        .expect("text")
        .clone()
    };
    let times = |name: &str| {
        arrow::compute::cast(
            batch.column_by_name(name).expect("results column"),
            &DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into())),
        )
        .expect("time")
        .as_any()
        .downcast_ref::<TimestampMillisecondArray>()
        .expect("time")
        .clone()
    };
    let ints = |name: &str| {
        batch
            .column_by_name(name)
            .and_then(|c| c.as_any().downcast_ref::<Int64Array>().cloned())
            .expect("results column")
    };
    let (at, table, rule, check, pipeline, scope) = (
        times("at"),
        strings("table"),
        strings("rule"),
        strings("check"),
        strings("pipeline"),
        strings("scope"),
    );
    let (starts, ends) = (times("window_start"), times("window_end"));
    let (version, passed, failed) = (ints("commit_version"), ints("passed"), ints("failed"));
    let observed = batch
        .column_by_name("observed")
        .and_then(|c| c.as_any().downcast_ref::<Float64Array>().cloned())
        .expect("results column");
    let (bound, action, severity, detail) = (
        strings("bound"),
        strings("action"),
        strings("severity"),
        strings("detail"),
    );
    let text =
        |array: &StringArray, row: usize| array.is_valid(row).then(|| array.value(row).to_string());
    (0..batch.num_rows())
        .map(|row| CheckResult {
            at_ms: at.value(row),
            table: table.value(row).to_string(),
            rule: rule.value(row).to_string(),
            check: check.value(row).to_string(),
            pipeline: text(&pipeline, row),
            scope: scope.value(row).to_string(),
            window_start_ms: starts.is_valid(row).then(|| starts.value(row)),
            window_end_ms: ends.is_valid(row).then(|| ends.value(row)),
            commit_version: version.is_valid(row).then(|| version.value(row)),
            passed: passed.value(row),
            failed: failed.value(row),
            observed: observed.is_valid(row).then(|| observed.value(row)),
            bound: text(&bound, row),
            action: Taken::parse(action.value(row)),
            severity: severity.value(row).to_string(),
            detail: text(&detail, row),
        })
        .collect()
}

/// The latest result of one table's rule, and what its evaluations added up
/// to over a span (this process, or since a time).
#[derive(Debug, Clone, serde::Serialize)]
pub struct Status {
    pub last: CheckResult,
    pub evaluations: u64,
    /// Evaluations that failed.
    pub failures: u64,
    /// Rows failed, summed over evaluations.
    pub failed_rows: u64,
    /// The latest evaluation that failed, which may be older than `last`.
    pub last_failure: Option<CheckResult>,
}

impl Status {
    fn new(first: &CheckResult) -> Self {
        Self {
            last: first.clone(),
            evaluations: 0,
            failures: 0,
            failed_rows: 0,
            last_failure: None,
        }
    }

    /// Counts one more evaluation, `result`, no older than those counted.
    fn add(&mut self, result: &CheckResult) {
        self.evaluations += 1;
        if result.failed() {
            self.failures += 1;
            self.failed_rows += result.failed.max(0) as u64;
            self.last_failure = Some(result.clone());
        }
        // Of one evaluation's results (windows of a commit), a failure shows.
        let same_evaluation = self.last.at_ms == result.at_ms;
        if !(same_evaluation && self.last.failed() && !result.failed()) {
            self.last = result.clone();
        }
    }
}

enum Message {
    Results(Vec<CheckResult>),
    Flush(oneshot::Sender<Result<()>>),
}

/// Where every evaluation is recorded. Cheap to clone.
#[derive(Debug, Clone)]
pub struct ResultsLog {
    latest: Arc<Mutex<BTreeMap<(String, String), Status>>>,
    sender: mpsc::UnboundedSender<Message>,
}

impl std::fmt::Debug for Message {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Message")
    }
}

impl ResultsLog {
    /// Opens (creating it if needed) the results table at `location` and starts its writer.
    pub async fn open(location: &str) -> Result<Self> {
        Self::open_compacting(location, COMPACT_EVERY).await
    }

    /// [`ResultsLog::open`], compacting the table's files after every
    /// `compact_every` appends rather than [`COMPACT_EVERY`].
    pub async fn open_compacting(location: &str, compact_every: u64) -> Result<Self> {
        lake::ensure_table(location, "quality_results", &schema(), &[], true).await?;
        let (sender, receiver) = mpsc::unbounded_channel();
        tokio::spawn(write_results(
            location.to_string(),
            receiver,
            compact_every.max(1),
        ));
        Ok(Self {
            latest: Arc::default(),
            sender,
        })
    }

    /// Records results: the latest status at once, the table within a second.
    pub fn record(&self, results: Vec<CheckResult>) {
        if results.is_empty() {
            return;
        }
        {
            let mut latest = self.latest.lock().expect("not poisoned");
            for result in &results {
                latest
                    .entry((result.table.clone(), result.rule.clone()))
                    .or_insert_with(|| Status::new(result))
                    .add(result);
            }
        }
        // The writer only stops with the runtime; results after that are not written.
        let _ = self.sender.send(Message::Results(results));
    }

    /// Writes everything recorded so far to the table.
    pub async fn flush(&self) -> Result<()> {
        let (done, wait) = oneshot::channel();
        if self.sender.send(Message::Flush(done)).is_err() {
            return Ok(());
        }
        wait.await.unwrap_or(Ok(()))
    }

    /// The latest status per (table, rule), in this process.
    pub fn latest(&self) -> Vec<Status> {
        self.latest
            .lock()
            .expect("not poisoned")
            .values()
            .cloned()
            .collect()
    }
}

/// Results kept for writing while the table cannot be written.
const MAX_PENDING: usize = 100_000;

/// Appends between two compactions of the results table: about two minutes
/// of a busy project's once-a-second appends.
pub const COMPACT_EVERY: u64 = 120;

/// The writer task: appends what came in, at most once a second, and on flush.
async fn write_results(
    location: String,
    mut receiver: mpsc::UnboundedReceiver<Message>,
    compact_every: u64,
) {
    let mut writer = Writer {
        location,
        compact_every,
        appends: 0,
    };
    let mut pending: Vec<CheckResult> = Vec::new();
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tokio::select! {
            message = receiver.recv() => match message {
                Some(Message::Results(results)) => {
                    pending.extend(results);
                    // A table that cannot be written for long loses its oldest results, not the process its memory.
                    if pending.len() > MAX_PENDING {
                        let dropped = pending.len() - MAX_PENDING;
                        pending.drain(..dropped);
                        tracing::warn!(dropped, "quality results could not be written; the oldest were dropped");
                    }
                }
                Some(Message::Flush(done)) => {
                    let written = writer.write(&pending).await;
                    if written.is_ok() {
                        pending.clear();
                    }
                    let _ = done.send(written);
                }
                None => {
                    if let Err(err) = writer.write(&pending).await {
                        tracing::warn!(%err, "could not write the last quality results");
                    }
                    return;
                }
            },
            _ = tick.tick() => {
                // Kept on failure (a conflict with another writer), and tried again next second.
                match writer.write(&pending).await {
                    Ok(()) => pending.clear(),
                    Err(err) => tracing::warn!(%err, waiting = pending.len(), "could not write quality results yet; retrying"),
                }
            }
        }
    }
}

/// Appends to the results table, compacting its small files every
/// `compact_every` appends.
struct Writer {
    location: String,
    compact_every: u64,
    appends: u64,
}

impl Writer {
    async fn write(&mut self, results: &[CheckResult]) -> Result<()> {
        if results.is_empty() {
            return Ok(());
        }
        append(&self.location, results.to_vec()).await?;
        self.appends += 1;
        if self.appends.is_multiple_of(self.compact_every)
            && let Err(err) = lake::optimize(&self.location).await
        {
            tracing::warn!(%err, "could not compact the quality results; trying again later");
        }
        Ok(())
    }
}

/// Appends results to the table.
pub async fn append(location: &str, results: Vec<CheckResult>) -> Result<()> {
    if results.is_empty() {
        return Ok(());
    }
    lake::ensure_table(location, "quality_results", &schema(), &[], true).await?;
    let table = lake::open(location).await?;
    table
        .write(vec![to_batch(&results)])
        .await
        .map_err(|err| storage(location, err))?;
    Ok(())
}

fn storage(location: &str, err: impl std::fmt::Display) -> QualityError {
    QualityError::Storage {
        what: format!("the quality results at {location}"),
        message: err.to_string(),
    }
}

/// Results read back from the table.
pub async fn read(location: &str, filter: &str) -> Result<Vec<CheckResult>> {
    if !lake::exists(location).await? {
        return Ok(Vec::new());
    }
    let batches = lake::query(
        location,
        "results",
        &format!("SELECT * FROM results {filter}"),
    )
    .await
    .map_err(|err| storage(location, err))?;
    Ok(batches.iter().flat_map(from_batch).collect())
}

/// Each (table, rule)'s evaluations since `since_ms` added up, with the
/// latest and the latest failed, optionally of one table.
pub async fn summaries(
    location: &str,
    table: Option<&str>,
    since_ms: Option<i64>,
) -> Result<Vec<Status>> {
    let mut results = since(location, table, since_ms).await?;
    results.sort_by(|a, b| {
        (&a.table, &a.rule, a.at_ms)
            .cmp(&(&b.table, &b.rule, b.at_ms))
            .then_with(|| a.failed().cmp(&b.failed()))
    });
    let mut summaries: Vec<Status> = Vec::new();
    for result in &results {
        match summaries.last_mut() {
            Some(status)
                if status.last.table == result.table && status.last.rule == result.rule =>
            {
                status.add(result)
            }
            _ => {
                let mut status = Status::new(result);
                status.add(result);
                summaries.push(status);
            }
        }
    }
    Ok(summaries)
}

/// The results since `since_ms`, optionally of one table, in no order.
async fn since(
    location: &str,
    table: Option<&str>,
    since_ms: Option<i64>,
) -> Result<Vec<CheckResult>> {
    let mut conditions = Vec::new();
    if let Some(table) = table {
        conditions.push(format!("\"table\" = '{}'", table.replace('\'', "''")));
    }
    if let Some(since) = since_ms {
        conditions.push(format!("at >= to_timestamp_millis({since})"));
    }
    let filter = if conditions.is_empty() {
        String::new()
    } else {
        format!("WHERE {}", conditions.join(" AND "))
    };
    read(location, &filter).await
}

/// The metric values a rule observed, oldest first, at most `count` of them (an anomaly rule's history).
pub async fn recent_observations(
    location: &str,
    table: &str,
    rule: &str,
    count: usize,
) -> Result<Vec<f64>> {
    let filter = format!(
        "WHERE \"table\" = '{}' AND rule = '{}' AND observed IS NOT NULL AND scope IN ('commit', 'window') ORDER BY at DESC LIMIT {count}",
        table.replace('\'', "''"),
        rule.replace('\'', "''")
    );
    let mut values: Vec<f64> = read(location, &filter)
        .await?
        .into_iter()
        .filter_map(|result| result.observed)
        .collect();
    values.reverse();
    Ok(values)
}

/// Where a reconciliation rule's compared windows end, so that a new run goes on from there.
pub async fn last_window_end(location: &str, table: &str, rule: &str) -> Result<Option<i64>> {
    let filter = format!(
        "WHERE \"table\" = '{}' AND rule = '{}' AND scope = 'reconcile' AND window_end IS NOT NULL ORDER BY window_end DESC LIMIT 1",
        table.replace('\'', "''"),
        rule.replace('\'', "''")
    );
    Ok(read(location, &filter)
        .await?
        .into_iter()
        .find_map(|result| result.window_end_ms))
}
