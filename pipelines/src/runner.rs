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

use arrow::record_batch::RecordBatch;
use strata_catalog::connectors::{self, delta as lake};
use strata_catalog::{Catalog, KafkaFormat, TableDef, TableKind, TableName};
use tokio::sync::watch;

use crate::decode::json::{JsonDecoder, Rejected};
use crate::error::{PipelineError, Result};
use crate::sink::delta::{DeltaSink, Offsets};
use crate::sink::quarantine;
use crate::source::kafka::{KafkaSource, SourceEvent};
use crate::transform::StatelessPlan;
use crate::validate::{ValidPipeline, schema_session};

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
    pub async fn run(self, mut stop: watch::Receiver<bool>) -> Result<()> {
        let pipeline = &self.pipeline;
        let (source, format) = kafka_source(pipeline)?;
        if format != KafkaFormat::Json {
            return Err(unsupported(
                pipeline,
                &format!("reading format '{}'", format.as_str()),
            ));
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

        let name = pipeline.pipeline.name.clone();
        let mut target = DeltaSink::open(&target_location, &name).await?;
        let mut quarantine = self.open_quarantine(&target_location, &name).await?;

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
        let TableKind::Kafka { startup_mode, .. } = &source.kind else {
            unreachable!("kafka_source returned a Kafka table");
        };
        let engine = &self.catalog.project().config.engine;
        let mut reader = KafkaSource::start(
            kafka,
            &format!("strata-{name}"),
            startup_mode,
            &resume,
            engine.batch_records,
        )?;
        let decoder = JsonDecoder::new(source.schema.clone());
        let interval = Duration::from_millis(engine.commit_interval_ms);

        let mut pending = Pending::default();
        let mut last_commit = Instant::now();
        loop {
            let event = tokio::select! {
                event = reader.events.recv() => event,
                _ = tokio::time::sleep_until((last_commit + interval).into()) => None,
                changed = stop.changed() => {
                    if changed.is_err() || *stop.borrow() {
                        break;
                    }
                    None
                }
            };
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
                    pending.rows.push(plan.apply(&decoded.batch)?);
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
                    &quarantined_up_to,
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
                &quarantined_up_to,
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
        quarantined_up_to: &BTreeMap<i32, i64>,
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
            let now = chrono_now_ms();
            let rows = quarantine::rows(&self.pipeline.pipeline.name, topic, &fresh, now);
            quarantine.commit(vec![rows], &pending.offsets).await?;
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
        self.stats.rows_committed.fetch_add(rows, Ordering::Relaxed);
        self.stats.commits.fetch_add(1, Ordering::Relaxed);
        self.stats
            .last_commit_ms
            .store(chrono_now_ms(), Ordering::Relaxed);
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

fn chrono_now_ms() -> i64 {
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

fn kafka_source(pipeline: &ValidPipeline) -> Result<(&TableDef, KafkaFormat)> {
    match pipeline.sources.as_slice() {
        [source] => match &source.kind {
            TableKind::Kafka { format, .. } => Ok((source, *format)),
            other => Err(unsupported(
                pipeline,
                &format!("reading a {} table as a stream", other.connector()),
            )),
        },
        _ => Err(unsupported(pipeline, "reading more than one table")),
    }
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
