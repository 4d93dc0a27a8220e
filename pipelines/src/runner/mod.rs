//! Running a pipeline: read, decode, transform, aggregate, commit, exactly once.
//!
//! ```text
//!   resume = per partition, the offset the target last committed (Delta txn), and the
//!            operator state checkpoint that commit named (txn strata/<pipeline>/_state)
//!   loop:
//!     source batch ─▶ decode ─┬─▶ rows ─▶ SELECT (stateless) ───────────────▶ buffer ─┐
//!                             │          └▶ aggregation state (late rows ─▶ buffer) ───┤
//!                             └─▶ rejected ─▶ buffer ──────────────────────────────────┤ every commit interval:
//!                                                                                      ├▶ 0. watermark advances; windows it closed are emitted
//!                                                                                      ├▶ 1. quarantine commit (+ txn)   skips offsets it already has
//!                                                                                      ├▶ 2. late-row commit (+ txn)     skips offsets it already has
//!                                                                                      ├▶ 3. state checkpoint file k
//!                                                                                      └▶ 4. target commit (+ txn offsets, + txn state = k)
//! ```
//!
//! A commit runs on its own task while the next batches are read and decoded
//! (so writing Parquet and decoding JSON overlap); commits land one at a time,
//! in order. The side tables commit before the target, and the target records its
//! offsets and state checkpoint at every commit, so after a crash: the target
//! resumes right after its last commit with the state of that commit; the side
//! tables, which may be ahead, skip what they hold. Lateness is judged against
//! the watermark of the last commit, so a replay judges every row as the
//! first attempt did. Every source record ends up exactly once in the target
//! (or its window), the quarantine, or the late table.

mod checks;
mod commit;
mod emits;
mod keyed;
mod parked;
mod snapshot;
mod task;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

use strata_catalog::connectors::delta as lake;
use strata_catalog::{Catalog, TableDef, TableKind, TableName};
use tokio::sync::watch;

use crate::connector::DimensionContext;
use crate::connector::delta::sink::DeltaSink;
use crate::error::{PipelineError, Result};
use crate::lookup::LookupStats;
use crate::operator::{Changelog, RunsRowsAgain};
use crate::registry;
use crate::sink::WriteMode;
use crate::transform::{CompiledPlan, ResolvedLookup};
use crate::validate::{ValidPipeline, schema_session};

pub use self::checks::Quality;
use self::commit::SideTable;
pub use self::emits::{EmitLog, Recorded};
use self::task::Task;
pub use crate::watermark::now_ms;

/// A watermark further ahead of the wall clock than this is reported.
const WATERMARK_AHEAD_WARNING_MS: i64 = 24 * 60 * 60 * 1000;

/// How often a pipeline asks again for a source topic that does not exist yet.
const TOPIC_POLL: std::time::Duration = std::time::Duration::from_secs(1);

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
    /// The Delta version of the target's last commit, -1 before it (or for other targets).
    pub table_version: AtomicI64,
    /// The data files the Delta target holds after its last commit, -1 before it
    /// (or for other targets): what compaction keeps small.
    pub files: AtomicI64,
    /// The source's watermark (ms since the epoch), `i64::MIN` before it has one.
    pub watermark_ms: AtomicI64,
    /// The pipeline's lookup joins, once it runs.
    pub lookups: std::sync::Mutex<Vec<Arc<LookupStats>>>,
    /// Called after each commit with the rows it committed (OpenLineage's RUNNING events).
    pub on_commit: OnCommit,
    /// The realtime view of a Delta target: committed version and uncommitted rows.
    pub live: crate::live::LiveTable,
    /// What a blackhole target took: its rows and their digest.
    pub output: Arc<crate::sink::digest::OutputDigest>,
    /// When watermarks were reached and landed, if asked for.
    pub emits: EmitLog,
    /// What the pipeline waits for before it can start (a topic not created yet).
    pub waiting: std::sync::Mutex<Option<String>>,
    /// Why the pipeline stopped with an error, once it did.
    pub failure: std::sync::Mutex<Option<String>>,
}

/// What [`OnCommit`] calls, with the rows a commit wrote.
type CommitCallback = Box<dyn Fn(u64) + Send + Sync>;

/// A callback run after each commit lands.
#[derive(Default)]
pub struct OnCommit(std::sync::Mutex<Option<CommitCallback>>);

impl std::fmt::Debug for OnCommit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("OnCommit")
    }
}

impl OnCommit {
    pub fn set(&self, callback: impl Fn(u64) + Send + Sync + 'static) {
        *self.0.lock().expect("not poisoned") = Some(Box::new(callback));
    }

    /// Drops the callback (and what it holds).
    pub fn clear(&self) {
        *self.0.lock().expect("not poisoned") = None;
    }

    fn call(&self, rows: u64) {
        if let Some(callback) = self.0.lock().expect("not poisoned").as_ref() {
            callback(rows);
        }
    }
}

impl TableStats {
    pub fn new() -> Self {
        Self {
            watermark_ms: AtomicI64::new(i64::MIN),
            table_version: AtomicI64::new(-1),
            files: AtomicI64::new(-1),
            ..Self::default()
        }
    }

    /// Counts one commit of `rows` rows, now, that made the target's `version`.
    fn record_commit(&self, rows: u64, version: Option<i64>, watermark: Option<i64>) {
        if let Some(watermark) = watermark {
            self.emits.landed(watermark, now_ms());
        }
        if let Some(version) = version {
            self.table_version.store(version, Ordering::Relaxed);
            self.live.commit_landed(version);
        }
        self.rows_committed.fetch_add(rows, Ordering::Relaxed);
        self.commits.fetch_add(1, Ordering::Relaxed);
        self.last_commit_ms.store(now_ms(), Ordering::Relaxed);
        self.on_commit.call(rows);
    }

    /// Why the pipeline is held up: it waits for its source topic, or a
    /// lookup join waits for its database.
    pub fn degraded(&self) -> Option<String> {
        let waiting = self.waiting.lock().expect("not poisoned").clone();
        waiting
            .or_else(|| {
                self.lookup_stats()
                    .iter()
                    .find_map(|lookup| lookup.degraded())
            })
            .or_else(|| self.watermark_far_ahead())
    }

    /// A warning when the watermark runs far ahead of the wall clock: one row
    /// from the far future makes every later row late.
    fn watermark_far_ahead(&self) -> Option<String> {
        let ahead = self.watermark()?.saturating_sub(now_ms());
        (ahead > WATERMARK_AHEAD_WARNING_MS).then(|| {
            format!(
                "the watermark is {} ahead of the wall clock, so rows with earlier event times are late; set 'scan.watermark.max-future-skew' on the source table to quarantine such rows",
                humantime::format_duration(std::time::Duration::from_secs((ahead / 1000) as u64))
            )
        })
    }

    pub fn lookup_stats(&self) -> Vec<Arc<LookupStats>> {
        self.lookups.lock().expect("not poisoned").clone()
    }

    /// The watermark, if the source has one yet.
    pub fn watermark(&self) -> Option<i64> {
        Some(self.watermark_ms.load(Ordering::Relaxed)).filter(|&w| w != i64::MIN)
    }
}

/// The text a panic carried, if it was text.
pub fn panic_message(payload: Box<dyn std::any::Any + Send>) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic without a message".to_string())
}

/// A pipeline checked and planned: its source, where its target's lake table
/// (or side tables) live, the compiled SELECT and its operator graph.
struct Planned<'a> {
    source: &'a TableDef,
    target_location: String,
    plan: CompiledPlan,
    stream: crate::plan::StreamPlan,
}

/// Where a reset pipeline reads its source from next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResetFrom {
    /// Where its last commit left off: the state starts empty, no record is read twice.
    Committed,
    /// The beginning of each partition: everything is read again.
    Earliest,
    /// The end of each partition: what was not read yet is skipped.
    Latest,
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
    /// The project's quality rules and where their results go.
    pub quality: Quality,
    /// Quarantined records to feed instead of reading the source.
    pub replay: Option<Arc<Replay>>,
}

/// Records taken back from a pipeline's quarantine to run through it once
/// more (`strata quarantine replay`). They commit under their own offsets,
/// `replay-<id>/<topic>`, so a replay interrupted and run again with the
/// same id resumes where it stopped and never commits a record twice.
#[derive(Debug, Clone)]
pub struct Replay {
    pub id: String,
    /// The source topic the records were read from.
    pub topic: String,
    /// At their original partitions and offsets, each at most once.
    pub records: Vec<crate::source::SourceRecord>,
}

impl Replay {
    /// The name the replay's offsets are recorded under.
    pub fn stream(&self) -> String {
        format!("replay-{}/{}", self.id, self.topic)
    }
}

impl PipelineRun {
    /// Checks that this version can run the pipeline (its source, target and
    /// SQL), without reading anything: run every check before starting any pipeline.
    pub async fn check(&self) -> Result<()> {
        self.prepare().await.map(|_| ())
    }

    /// The pipeline's operator graph, as it would run; an operator that
    /// cannot read its input says why in the plan.
    pub async fn explain(&self) -> Result<crate::plan::StreamPlan> {
        self.plan().await.map(|planned| planned.stream)
    }

    /// Plans the pipeline and refuses it if an operator cannot read its input.
    async fn prepare(&self) -> Result<Planned<'_>> {
        let planned = self.plan().await?;
        // What operators cannot read (a changelog where rows must be append-only).
        if let Some((id, reason)) = planned.stream.refusals().next() {
            return Err(unsupported(
                &self.pipeline,
                &format!("{reason}, at operator {id},"),
            ));
        }
        let target = &self.pipeline.target;
        let takes_retractions = registry::connector(target).takes_retractions_unkeyed(target);
        if let Some(changing) = planned.stream.first_changing()
            && target.primary_key.is_empty()
            && !(takes_retractions && planned.stream.sink_changelog() == Changelog::Retracting)
        {
            return Err(PipelineError::Invalid {
                location: self.pipeline.pipeline.target.location.clone(),
                message: format!(
                    "the {} {} ({}) emits a {} changelog: rows it emitted are taken back or updated later, and {} has no PRIMARY KEY to upsert them by",
                    changing.kind.as_str(),
                    changing.id,
                    changing.detail,
                    changing.changelog.as_str(),
                    target.name
                ),
                hint: Some("declare PRIMARY KEY (<the columns that identify a result row>) NOT ENFORCED on the target table; the target then holds each key's last row".to_string()),
            });
        }
        Ok(planned)
    }

    /// Checks the source, target and SQL, and plans the pipeline.
    async fn plan(&self) -> Result<Planned<'_>> {
        let pipeline = &self.pipeline;
        let streams: Vec<&TableDef> = pipeline.streams().collect();
        let (source, others) = streams
            .split_first()
            .expect("a valid pipeline reads a stream");
        let reads = registry::stream_of(source).map_err(|what| unsupported(pipeline, &what))?;
        let target = registry::connector(&pipeline.target);
        if let Some(why) = target.refuses_target() {
            return Err(unsupported(pipeline, why));
        }
        let target_location = target.target_location(self.catalog.project(), &pipeline.target)?;
        let tables: Vec<TableDef> = self
            .catalog
            .list()
            .await?
            .into_iter()
            .map(|e| e.def)
            .collect();
        let ctx = schema_session(&tables);
        let lookups = self.resolve_lookups()?;
        let plan = CompiledPlan::compile(pipeline, &ctx.state(), lookups).await?;
        for other in others {
            if !plan
                .seconds()
                .iter()
                .any(|second| second.table == other.name)
            {
                return Err(unsupported(
                    pipeline,
                    &format!(
                        "reading {} as a stream without a join or UNION ALL that takes it in",
                        other.name
                    ),
                ));
            }
            let joins = registry::stream_of(other).is_ok_and(|reads| reads.joins_another);
            if !reads.joins_another || !joins {
                return Err(unsupported(
                    pipeline,
                    "a join of streams that are not all Kafka topics (json or debezium-json) or Nexmark tables",
                ));
            }
        }
        if let (false, Some((id, what))) = (others.is_empty(), plan.refusing_second_stream()) {
            return Err(unsupported(
                pipeline,
                &format!("{what} (operator {id}) beside a second stream"),
            ));
        }
        if let Some((only, why)) = target.commits_positions_of()
            && registry::connector(source).name() != only
        {
            return Err(unsupported(pipeline, why));
        }
        refuse_rows_run_again(pipeline, &plan)?;
        if plan.reads_versions_beside_streams() {
            return Err(unsupported(
                pipeline,
                "an event-time temporal join's changelog read beside a second stream or another temporal join's changelog",
            ));
        }
        if plan.versions_read().is_some() && !reads.probes_versions {
            return Err(unsupported(
                pipeline,
                &format!(
                    "an event-time temporal join probed by a {} table (read the probe side from Kafka)",
                    registry::connector(source).label()
                ),
            ));
        }
        Ok(Planned {
            source,
            target_location,
            stream: crate::plan::build(pipeline, &plan),
            plan,
        })
    }

    /// Where each lookup join's dimension rows come from.
    fn resolve_lookups(&self) -> Result<Vec<ResolvedLookup>> {
        let context = DimensionContext {
            project: self.catalog.project(),
            store: self.catalog.store(),
            pipeline: &self.pipeline.pipeline.name,
        };
        self.pipeline
            .pipeline
            .lookups
            .iter()
            .map(|spec| {
                let def = self
                    .pipeline
                    .sources
                    .iter()
                    .find(|t| t.name == spec.table.table)
                    .expect("validation found every lookup table")
                    .clone();
                let dimension = registry::connector(&def)
                    .dimension(&def, &context)?
                    .ok_or_else(|| {
                        unsupported(
                            &self.pipeline,
                            &format!("a lookup join against a {} table", def.kind.connector()),
                        )
                    })?;
                Ok(ResolvedLookup {
                    spec: spec.clone(),
                    def,
                    dimension,
                })
            })
            .collect()
    }

    /// Runs until stopped (or caught up), committing what it has read before returning.
    pub async fn run(self, stop: watch::Receiver<bool>) -> Result<()> {
        let started = std::time::Instant::now();
        let planned = self.prepare().await?;
        let source = planned.source;
        *self.stats.lookups.lock().expect("not poisoned") = planned
            .plan
            .lookups()
            .map(|join| join.stats.clone())
            .collect();
        let prepared_ms = started.elapsed().as_millis() as u64;
        if !self.wait_until_ready(source, &stop).await? {
            return Ok(());
        }
        let outcome = async {
            let mut task = Task::open(&self, planned, true).await?;
            tracing::debug!(
                pipeline = self.pipeline.pipeline.name,
                prepared_ms,
                opened_ms = started.elapsed().as_millis() as u64,
                "started"
            );
            task.run(stop).await
        }
        .await;
        // Readers go to the storage again, whether the run ended or failed.
        self.stats.live.end();
        outcome
    }

    /// Drops the pipeline's operator state (open windows, groups, rows held
    /// for joins) with one commit to its target, which also records where its
    /// source is read from next. The rows it wrote stay.
    pub async fn reset(self, from: ResetFrom) -> Result<()> {
        let planned = self.prepare().await?;
        let source = planned.source;
        if from != ResetFrom::Committed
            && !registry::stream_of(source).is_ok_and(|reads| reads.rewinds)
        {
            return Err(unsupported(
                &self.pipeline,
                &format!(
                    "reading a {} source again from its earliest or latest position on reset",
                    registry::connector(source).label()
                ),
            ));
        }
        let mut task = Task::open(&self, planned, false).await?;
        task.reset(source, from).await
    }

    /// Waits while the source cannot be read yet (a topic not created yet),
    /// saying why in the pipeline's status; false when told to stop first.
    async fn wait_until_ready(
        &self,
        source: &TableDef,
        stop: &watch::Receiver<bool>,
    ) -> Result<bool> {
        if self.replay.is_some() {
            return Ok(true);
        }
        let mut stop = stop.clone();
        loop {
            let Some(reason) = registry::connector(source)
                .not_ready(self.catalog.project(), source)
                .await?
            else {
                *self.stats.waiting.lock().expect("not poisoned") = None;
                return Ok(true);
            };
            if self.stats.waiting.lock().expect("not poisoned").as_ref() != Some(&reason) {
                tracing::warn!(pipeline = self.pipeline.pipeline.name, "{reason}");
                *self.stats.waiting.lock().expect("not poisoned") = Some(reason);
            }
            // A catch-up run has nothing to read from a source that is not there.
            if *stop.borrow() || self.mode == RunMode::UntilCaughtUp {
                return Ok(false);
            }
            tokio::select! {
                _ = tokio::time::sleep(TOPIC_POLL) => {}
                _ = stop.changed() => return Ok(false),
            }
        }
    }

    async fn open_side_table(
        &self,
        target_location: &str,
        suffix: &str,
        schema: &arrow::datatypes::SchemaRef,
        description: String,
        tag: &str,
    ) -> Result<SideTable> {
        let target = &self.pipeline.target;
        let location = format!("{}{suffix}", target_location.trim_end_matches('/'));
        let name = TableName::new(&target.name.space, format!("{}{suffix}", target.name.name));
        // Side tables made by an earlier version gain the columns added since.
        lake::ensure_table(&location, &name.name, schema, &[], true).await?;
        if !self.catalog.store().contains(&name).await? {
            let def = TableDef {
                name,
                layer: target.layer,
                kind: TableKind::Delta {
                    table_path: Some(location.clone()),
                    connection: None,
                    partitioned_by: Vec::new(),
                },
                schema: schema.clone(),
                primary_key: Vec::new(),
                watermark: None,
                processing_time: None,
                owner: target.owner.clone(),
                description: Some(description),
                tags: vec![tag.to_string()],
                lookup: Default::default(),
            };
            self.catalog.register_discovered(vec![def]).await?;
        }
        Ok(SideTable {
            sink: DeltaSink::open(&location, &self.pipeline.pipeline.name, WriteMode::Append)
                .await?,
            up_to: BTreeMap::new(),
        })
    }
}

/// Refuses an operator that runs rows through the plan again beside one that
/// cannot take them twice, as the operators declare.
fn refuse_rows_run_again(pipeline: &ValidPipeline, plan: &CompiledPlan) -> Result<()> {
    let operators = plan.pre_operators();
    for again in operators {
        let Some(RunsRowsAgain { what, .. }) = again.operator.runs_rows_again() else {
            continue;
        };
        for other in operators.iter().filter(|other| other.id != again.id) {
            if let Some(why) = other.operator.refuses_rows_run_again() {
                return Err(unsupported(
                    pipeline,
                    &format!(
                        "{what} beside {} {} ({why})",
                        other.operator.kind().as_str(),
                        other.id
                    ),
                ));
            }
        }
    }
    Ok(())
}

/// The Kafka consumer group a pipeline's sources read under.
fn consumer_group(pipeline: &str) -> String {
    format!("strata-{pipeline}")
}

fn unsupported(pipeline: &ValidPipeline, what: &str) -> PipelineError {
    PipelineError::Invalid {
        location: pipeline.pipeline.target.location.clone(),
        message: format!("{what} is not supported in streaming pipelines yet"),
        hint: Some(
            "pipelines read one Kafka (json, debezium-json), Delta, Nexmark or datagen table (Kafka json or debezium-json topics, or Nexmark tables, for joins and UNION ALL of streams) and write a Delta, MySQL/TiDB, Kafka or blackhole table"
                .to_string(),
        ),
    }
}
