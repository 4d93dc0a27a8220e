//! Running a pipeline: read, decode, transform, commit, exactly once.
//!
//! ```text
//!   resume = per partition, the offset the target last committed (Delta txn)
//!   loop:
//!     source batch ─▶ decode ─┬─▶ rows ─▶ SELECT ─▶ buffer ─┐
//!                             └─▶ rejected ─▶ buffer ───────┤ every commit interval:
//!                                                           ├─▶ 1. quarantine commit (+ txn)   skips offsets it already has
//!                                                           └─▶ 2. target commit (+ txn)        always, rows or not
//! ```
//!
//! The quarantine commits before the target, and the target records its
//! offsets at every commit, so after a crash: the target resumes right after
//! its last commit; the quarantine, which may be ahead, skips what it holds.
//! Every source record ends up exactly once in the target or the quarantine.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use arrow::array::Array;
use arrow::record_batch::RecordBatch;
use strata_catalog::connectors::{self, delta as lake};
use strata_catalog::{Catalog, KafkaFormat, StartupMode, TableDef, TableKind, TableName};
use tokio::sync::watch;

use crate::decode::json::{Decoded, JsonDecoder, Rejected};
use crate::error::{PipelineError, Result};
use crate::sink::delta::{DeltaSink, Offsets};
use crate::sink::quarantine;
use crate::source::delta::DeltaFollower;
use crate::source::kafka::{KafkaSource, SourceEvent};
use crate::transform::StatelessPlan;
use crate::validate::{ValidPipeline, schema_session};
use crate::watermark::WatermarkTracker;

/// Live counters of one target table, for progress, the API and the summary.
#[derive(Debug, Default)]
pub struct TableStats {
    pub records_in: AtomicU64,
    pub rows_committed: AtomicU64,
    pub quarantined_rows: AtomicU64,
    pub late_rows: AtomicU64,
    pub commits: AtomicU64,
    /// Milliseconds since the epoch of the last commit, 0 before the first.
    pub last_commit_ms: AtomicI64,
    /// The source's watermark (ms since the epoch), `i64::MIN` before it has one.
    pub watermark_ms: AtomicI64,
}

impl TableStats {
    pub fn new() -> Self {
        Self {
            watermark_ms: AtomicI64::new(i64::MIN),
            ..Self::default()
        }
    }

    /// Counts one commit of `rows` rows, now.
    fn record_commit(&self, rows: u64) {
        self.rows_committed.fetch_add(rows, Ordering::Relaxed);
        self.commits.fetch_add(1, Ordering::Relaxed);
        self.last_commit_ms.store(now_ms(), Ordering::Relaxed);
    }

    /// The watermark, if the source has one yet.
    pub fn watermark(&self) -> Option<i64> {
        Some(self.watermark_ms.load(Ordering::Relaxed)).filter(|&w| w != i64::MIN)
    }
}

/// When a pipeline stops.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunMode {
    /// Until told to stop.
    Continuous,
    /// Until every partition has been read to its end and committed (batch catch-up).
    UntilCaughtUp,
}

/// Everything a pipeline run needs.
#[derive(Debug, Clone)]
pub struct PipelineRun {
    pub catalog: Catalog,
    pub pipeline: ValidPipeline,
    pub stats: Arc<TableStats>,
    pub mode: RunMode,
}

impl PipelineRun {
    /// Runs until stopped (or caught up), committing what it has read before returning.
    /// Checks that this version can run the pipeline (its source, target and
    /// SQL), without reading anything: run every check before starting any pipeline.
    pub async fn check(&self) -> Result<()> {
        self.prepare().await.map(|_| ())
    }

    async fn prepare(&self) -> Result<(&TableDef, String, StatelessPlan)> {
        let pipeline = &self.pipeline;
        let [source] = pipeline.sources.as_slice() else {
            return Err(unsupported(pipeline, "reading more than one table"));
        };
        match &source.kind {
            TableKind::Kafka {
                format: KafkaFormat::Json,
                ..
            }
            | TableKind::Delta { .. } => {}
            TableKind::Kafka { format, .. } => {
                return Err(unsupported(
                    pipeline,
                    &format!("reading format '{}'", format.as_str()),
                ));
            }
            other => {
                return Err(unsupported(
                    pipeline,
                    &format!("reading a {} table as a stream", other.connector()),
                ));
            }
        }
        let target_location = delta_target(&self.catalog, pipeline)?;
        let tables: Vec<TableDef> = self
            .catalog
            .list()
            .await?
            .into_iter()
            .map(|e| e.def)
            .collect();
        let ctx = schema_session(&tables);
        let plan = StatelessPlan::compile(pipeline, &ctx.state()).await?;
        Ok((source, target_location, plan))
    }

    pub async fn run(self, stop: watch::Receiver<bool>) -> Result<()> {
        let (source, target_location, plan) = self.prepare().await?;
        let target = DeltaSink::open(&target_location, &self.pipeline.pipeline.name).await?;
        match &source.kind {
            TableKind::Kafka { startup_mode, .. } => {
                self.run_kafka(source, startup_mode, &plan, target, &target_location, stop)
                    .await
            }
            _ => self.run_delta(source, &plan, target, stop).await,
        }
    }

    /// Follows an upstream Delta table's log; its version is the offset.
    async fn run_delta(
        &self,
        source: &TableDef,
        plan: &StatelessPlan,
        mut target: DeltaSink,
        mut stop: watch::Receiver<bool>,
    ) -> Result<()> {
        let location = connectors::delta_location(self.catalog.project(), source)?;
        let stream = format!("delta/{}", source.name);
        let resume = target.committed_offset(&stream, 0).await?;
        let mut follower = DeltaFollower::open(&location, resume).await?;
        let interval =
            Duration::from_millis(self.catalog.project().config.engine.commit_interval_ms);
        loop {
            match follower.poll().await? {
                Some((version, batches)) => {
                    let read: u64 = batches.iter().map(|b| b.num_rows() as u64).sum();
                    self.stats.records_in.fetch_add(read, Ordering::Relaxed);
                    let rows = batches
                        .iter()
                        .map(|batch| plan.apply(&by_name(batch, &source.schema)?))
                        .collect::<Result<Vec<_>>>()?;
                    let committed: u64 = rows.iter().map(|b| b.num_rows() as u64).sum();
                    let offsets = Offsets::from([((stream.clone(), 0), version)]);
                    target.commit(rows, &offsets).await?;
                    self.stats.record_commit(committed);
                }
                None if self.mode == RunMode::UntilCaughtUp => return Ok(()),
                None => {}
            }
            tokio::select! {
                _ = tokio::time::sleep(interval) => {}
                changed = stop.changed() => {
                    if changed.is_err() || *stop.borrow() {
                        return Ok(());
                    }
                }
            }
        }
    }

    /// Reads a Kafka topic, quarantining what does not decode.
    async fn run_kafka(
        &self,
        source: &TableDef,
        startup_mode: &StartupMode,
        plan: &StatelessPlan,
        mut target: DeltaSink,
        target_location: &str,
        mut stop: watch::Receiver<bool>,
    ) -> Result<()> {
        let name = self.pipeline.pipeline.name.clone();
        let mut quarantine = self.open_quarantine(target_location, &name).await?;
        let kafka = connectors::kafka_target(self.catalog.project(), source)?;
        let topic = kafka.topic.clone();
        let partitions = KafkaSource::partitions(&kafka)?;
        let mut resume = BTreeMap::new();
        let mut quarantined_up_to = BTreeMap::new();
        for &partition in &partitions {
            if let Some(offset) = target.committed_offset(&topic, partition).await? {
                resume.insert(partition, offset);
            }
            if let Some(offset) = quarantine.committed_offset(&topic, partition).await? {
                quarantined_up_to.insert(partition, offset);
            }
        }
        let group = format!("strata-{name}");
        let fresh: Vec<i32> = partitions
            .iter()
            .copied()
            .filter(|p| !resume.contains_key(p))
            .collect();
        if !fresh.is_empty() {
            // Record where never-committed partitions start before reading them, so a
            // restart resumes there and not wherever `startup` would point by then.
            let starts = KafkaSource::start_offsets(&kafka, &group, startup_mode, &fresh)?;
            let offsets: Offsets = starts
                .iter()
                .map(|(&partition, &start)| ((topic.clone(), partition), start - 1))
                .collect();
            target.commit(Vec::new(), &offsets).await?;
            resume.extend(
                starts
                    .into_iter()
                    .map(|(partition, start)| (partition, start - 1)),
            );
        }
        let engine = &self.catalog.project().config.engine;
        let mut reader = KafkaSource::start(kafka, &group, &resume, engine.batch_records)?;
        let decoder = JsonDecoder::new(source.schema.clone());
        let interval = Duration::from_millis(engine.commit_interval_ms);
        let mut watermark = source.watermark.as_ref().map(|w| {
            let tracker = WatermarkTracker::new(
                &partitions,
                w.delay_ms,
                Duration::from_millis(engine.idle_timeout_ms),
                Instant::now(),
            );
            (w.column.clone(), tracker)
        });

        let mut pending = Pending::default();
        let mut last_commit = Instant::now();
        loop {
            let event = tokio::select! {
                event = reader.events.recv() => Some(event.unwrap_or_else(|| {
                    SourceEvent::Failed("the source thread stopped".to_string())
                })),
                _ = tokio::time::sleep_until((last_commit + interval).into()) => None,
                changed = stop.changed() => {
                    if changed.is_err() || *stop.borrow() {
                        break;
                    }
                    None
                }
            };
            if let Some((_, tracker)) = &mut watermark
                && let Some(current) = tracker.current(Instant::now())
            {
                self.stats.watermark_ms.store(current, Ordering::Relaxed);
            }
            let mut caught_up = false;
            match event {
                Some(SourceEvent::Records(records)) => {
                    self.stats
                        .records_in
                        .fetch_add(records.len() as u64, Ordering::Relaxed);
                    for record in &records {
                        pending
                            .offsets
                            .insert((topic.clone(), record.partition), record.offset);
                    }
                    let decoded = decoder.decode(&records);
                    if let Some((column, tracker)) = &mut watermark {
                        let now = Instant::now();
                        for (partition, max_event) in max_event_times(&decoded, &records, column)? {
                            tracker.observe(partition, max_event, now);
                        }
                    }
                    match plan.apply(&decoded.batch) {
                        Ok(rows) => pending.rows.push(rows),
                        // Find the records the SELECT fails on; they go to quarantine with the reason.
                        Err(_) => {
                            for (row, &index) in decoded.rows.iter().enumerate() {
                                match plan.apply(&decoded.batch.slice(row, 1)) {
                                    Ok(rows) => pending.rows.push(rows),
                                    Err(err) => pending.rejected.push(Rejected {
                                        record: records[index].clone(),
                                        error: format!(
                                            "the pipeline's SELECT failed on this record: {err}"
                                        ),
                                    }),
                                }
                            }
                        }
                    }
                    pending.rejected.extend(decoded.rejected);
                }
                Some(SourceEvent::CaughtUp) => caught_up = true,
                Some(SourceEvent::Failed(cause)) => {
                    return Err(PipelineError::Source {
                        what: format!("Kafka topic {topic}"),
                        cause,
                    });
                }
                None => {}
            }
            if !pending.offsets.is_empty() && (caught_up || last_commit.elapsed() >= interval) {
                self.commit(
                    &mut pending,
                    &mut target,
                    &mut quarantine,
                    &topic,
                    &mut quarantined_up_to,
                )
                .await?;
                last_commit = Instant::now();
            } else if pending.offsets.is_empty() {
                last_commit = Instant::now();
            }
            if caught_up && self.mode == RunMode::UntilCaughtUp && pending.offsets.is_empty() {
                return Ok(());
            }
        }
        if !pending.offsets.is_empty() {
            self.commit(
                &mut pending,
                &mut target,
                &mut quarantine,
                &topic,
                &mut quarantined_up_to,
            )
            .await?;
        }
        Ok(())
    }

    async fn open_quarantine(&self, target_location: &str, pipeline: &str) -> Result<DeltaSink> {
        let target = &self.pipeline.target;
        let location = quarantine::table_name(target_location.trim_end_matches('/'));
        let name = TableName::new(
            &target.name.space,
            quarantine::table_name(&target.name.name),
        );
        lake::ensure_table(&location, &name.name, &quarantine::schema(), false).await?;
        if !self.catalog.store().contains(&name).await? {
            let def = TableDef {
                name,
                layer: target.layer,
                kind: TableKind::Delta {
                    table_path: Some(location.clone()),
                    connection: None,
                },
                schema: quarantine::schema(),
                primary_key: Vec::new(),
                watermark: None,
                processing_time: None,
                owner: target.owner.clone(),
                description: Some(format!(
                    "Records that could not be put in {}, with their source coordinates and the reason",
                    target.name
                )),
                tags: vec!["quarantine".to_string()],
            };
            self.catalog.register_discovered(vec![def]).await?;
        }
        DeltaSink::open(&location, pipeline).await
    }

    /// Quarantine first (skipping what it already holds), then the target with every offset.
    async fn commit(
        &self,
        pending: &mut Pending,
        target: &mut DeltaSink,
        quarantine: &mut DeltaSink,
        topic: &str,
        quarantined_up_to: &mut BTreeMap<i32, i64>,
    ) -> Result<()> {
        let fresh: Vec<Rejected> = pending
            .rejected
            .drain(..)
            .filter(|r| {
                quarantined_up_to
                    .get(&r.record.partition)
                    .is_none_or(|&done| r.record.offset > done)
            })
            .collect();
        if !fresh.is_empty() {
            let now = now_ms();
            let rows = quarantine::rows(&self.pipeline.pipeline.name, topic, &fresh, now);
            // The quarantine may be ahead of the target on some partitions (after a
            // crash between the two commits): its offsets only ever move forward.
            let mut offsets = pending.offsets.clone();
            for (&partition, &done) in quarantined_up_to.iter() {
                let offset = offsets
                    .entry((topic.to_string(), partition))
                    .or_insert(done);
                *offset = (*offset).max(done);
            }
            quarantine.commit(vec![rows], &offsets).await?;
            for ((_, partition), offset) in &offsets {
                quarantined_up_to.insert(*partition, *offset);
            }
            self.stats
                .quarantined_rows
                .fetch_add(fresh.len() as u64, Ordering::Relaxed);
        }
        // Crash points for the exactly-once tests (FAILPOINTS=name=return aborts the process here).
        fail::fail_point!("commit-between-quarantine-and-target", |_| {
            std::process::abort()
        });
        let rows: u64 = pending.rows.iter().map(|b| b.num_rows() as u64).sum();
        target
            .commit(std::mem::take(&mut pending.rows), &pending.offsets)
            .await?;
        fail::fail_point!("commit-after-target", |_| std::process::abort());
        pending.offsets.clear();
        self.stats.record_commit(rows);
        Ok(())
    }
}

/// What has been read but not yet committed.
#[derive(Debug, Default)]
struct Pending {
    rows: Vec<RecordBatch>,
    rejected: Vec<Rejected>,
    offsets: Offsets,
}

/// The largest event time of each partition's rows in a decoded batch.
fn max_event_times(
    decoded: &Decoded,
    records: &[crate::source::SourceRecord],
    column: &str,
) -> Result<BTreeMap<i32, Option<i64>>> {
    let mut maxima: BTreeMap<i32, Option<i64>> = BTreeMap::new();
    let Some(values) = decoded.batch.column_by_name(column) else {
        return Ok(maxima);
    };
    let millis = arrow::compute::cast(
        values,
        &arrow::datatypes::DataType::Timestamp(arrow::datatypes::TimeUnit::Millisecond, None),
    )?;
    let millis = millis
        .as_any()
        .downcast_ref::<arrow::array::TimestampMillisecondArray>()
        .expect("cast to milliseconds");
    for (row, &index) in decoded.rows.iter().enumerate() {
        let entry = maxima.entry(records[index].partition).or_insert(None);
        if millis.is_valid(row) {
            let value = millis.value(row);
            *entry = Some(entry.map_or(value, |m: i64| m.max(value)));
        }
    }
    Ok(maxima)
}

/// Milliseconds since the epoch, by the wall clock.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

fn unsupported(pipeline: &ValidPipeline, what: &str) -> PipelineError {
    PipelineError::Invalid {
        location: pipeline.pipeline.target.location.clone(),
        message: format!("{what} is not supported in streaming pipelines yet"),
        hint: Some(
            "this version streams one Kafka JSON table into a Delta table with stateless SQL"
                .to_string(),
        ),
    }
}

/// A batch with the source table's columns, by name and type (Delta files keep
/// their own types, e.g. timestamps in microseconds).
fn by_name(batch: &RecordBatch, schema: &arrow::datatypes::SchemaRef) -> Result<RecordBatch> {
    let columns = crate::transform::columns_by_name(batch, schema, |name| {
        format!("the upstream table's files have no column {name}")
    })?;
    let relaxed = arrow::datatypes::Schema::new(
        schema
            .fields()
            .iter()
            .map(|f| f.as_ref().clone().with_nullable(true))
            .collect::<Vec<_>>(),
    );
    Ok(RecordBatch::try_new(std::sync::Arc::new(relaxed), columns)?)
}

fn delta_target(catalog: &Catalog, pipeline: &ValidPipeline) -> Result<String> {
    match &pipeline.target.kind {
        TableKind::Delta { .. } => Ok(connectors::delta_location(
            catalog.project(),
            &pipeline.target,
        )?),
        other => Err(unsupported(
            pipeline,
            &format!("writing to a {} table", other.connector()),
        )),
    }
}
