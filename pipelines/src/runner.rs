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

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use arrow::array::Array;
use arrow::record_batch::RecordBatch;
use strata_catalog::connectors::{self, delta as lake};
use strata_catalog::{Catalog, KafkaFormat, TableDef, TableKind, TableName};
use tokio::sync::watch;

use crate::aggregate::AggregateState;
use crate::decode::debezium::{DebeziumDecoder, RowKind};
use crate::decode::json::{JsonDecoder, Rejected};
use crate::error::{PipelineError, Result};
use crate::sink::delta::{DELETE_MARKER, DeltaSink, Offsets, WriteMode};
use crate::sink::kafka::KafkaSink;
use crate::sink::late::{self, Arrival};
use crate::sink::mysql::MysqlSink;
use crate::sink::quarantine;
use crate::source::SourceRecord;
use crate::source::delta::DeltaFollower;
use crate::source::kafka::KafkaSource;
use crate::source::reader::{Next, Reader, RecordDecoder, SourceBatch, row_as_json};
use crate::state::{ByteReader, ByteWriter, StateStore};
use crate::transform::{CompiledPlan, Traced};
use crate::validate::{ValidPipeline, is_changelog, schema_session};
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
    /// Checks that this version can run the pipeline (its source, target and
    /// SQL), without reading anything: run every check before starting any pipeline.
    pub async fn check(&self) -> Result<()> {
        self.prepare().await.map(|_| ())
    }

    async fn prepare(&self) -> Result<(&TableDef, String, CompiledPlan)> {
        let pipeline = &self.pipeline;
        let [source] = pipeline.sources.as_slice() else {
            return Err(unsupported(pipeline, "reading more than one table"));
        };
        match &source.kind {
            TableKind::Kafka {
                format: KafkaFormat::Json | KafkaFormat::DebeziumJson,
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
        let target_location = target_location(&self.catalog, pipeline)?;
        let tables: Vec<TableDef> = self
            .catalog
            .list()
            .await?
            .into_iter()
            .map(|e| e.def)
            .collect();
        let ctx = schema_session(&tables);
        let plan = CompiledPlan::compile(pipeline, &ctx.state()).await?;
        if matches!(pipeline.target.kind, TableKind::Kafka { .. })
            && !matches!(source.kind, TableKind::Kafka { .. })
        {
            return Err(unsupported(
                pipeline,
                "writing a Kafka topic from a table that is not a Kafka topic (its offsets commit in the topic's transaction)",
            ));
        }
        if is_changelog(source)
            && let Some(aggregate) = &plan.aggregate
        {
            let refused = aggregate.unretractable();
            if !refused.is_empty() {
                return Err(unsupported(
                    pipeline,
                    &format!(
                        "{} over a changelog (its updates and deletes must be taken back out; COUNT, SUM and AVG can be)",
                        refused.join(", ")
                    ),
                ));
            }
            if matches!(
                aggregate.window,
                Some(crate::window::WindowKind::Session { .. })
            ) {
                return Err(unsupported(pipeline, "a SESSION window over a changelog"));
            }
        }
        Ok((source, target_location, plan))
    }

    /// Runs until stopped (or caught up), committing what it has read before returning.
    pub async fn run(self, stop: watch::Receiver<bool>) -> Result<()> {
        let (source, target_location, plan) = self.prepare().await?;
        let mut task = Task::open(&self, source, &target_location, plan).await?;
        task.run(stop).await
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
        lake::ensure_table(&location, &name.name, schema, false).await?;
        if !self.catalog.store().contains(&name).await? {
            let def = TableDef {
                name,
                layer: target.layer,
                kind: TableKind::Delta {
                    table_path: Some(location.clone()),
                    connection: None,
                },
                schema: schema.clone(),
                primary_key: Vec::new(),
                watermark: None,
                processing_time: None,
                owner: target.owner.clone(),
                description: Some(description),
                tags: vec![tag.to_string()],
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

/// A table committed before the target (quarantine, late rows), which may be
/// ahead of it after a crash: it skips records at or below what it holds.
#[derive(Debug)]
struct SideTable {
    sink: DeltaSink,
    /// Per partition, the last offset this table has committed.
    up_to: BTreeMap<i32, i64>,
}

impl SideTable {
    async fn resume(&mut self, stream: &str, partitions: &[i32]) -> Result<()> {
        for &partition in partitions {
            if let Some(offset) = self.sink.committed_offset(stream, partition).await? {
                self.up_to.insert(partition, offset);
            }
        }
        Ok(())
    }

    fn is_new(&self, partition: i32, offset: i64) -> bool {
        self.up_to.get(&partition).is_none_or(|&done| offset > done)
    }

    /// Commits `rows` with the offsets; its offsets only ever move forward.
    async fn commit(
        &mut self,
        rows: Vec<RecordBatch>,
        offsets: &Offsets,
        stream: &str,
    ) -> Result<()> {
        let mut offsets = offsets.clone();
        for (&partition, &done) in &self.up_to {
            let offset = offsets
                .entry((stream.to_string(), partition))
                .or_insert(done);
            *offset = (*offset).max(done);
        }
        self.sink.commit(rows, &offsets, None).await?;
        for ((_, partition), offset) in &offsets {
            self.up_to.insert(*partition, *offset);
        }
        Ok(())
    }
}

/// What has been read but not yet committed.
#[derive(Debug, Default)]
struct Pending {
    rows: Vec<RecordBatch>,
    rejected: Vec<Rejected>,
    late: Vec<RecordBatch>,
    offsets: Offsets,
}

/// The aggregation's state and where it is checkpointed.
#[derive(Debug)]
struct Stateful {
    state: AggregateState,
    next_checkpoint: i64,
    late_schema: arrow::datatypes::SchemaRef,
}

/// Where commits go: the target, and the tables committed before it. A commit
/// in flight owns them until it has landed.
#[derive(Debug)]
struct Sinks {
    target: Target,
    quarantine: SideTable,
    /// Late rows and state checkpoints, for an aggregation.
    late: Option<SideTable>,
    state_store: Option<StateStore>,
    /// Commits since the target was last compacted.
    commits_since_compaction: u64,
}

/// One commit's contents, taken from the pipeline when the commit starts.
#[derive(Debug)]
struct CommitBatch {
    rows: Vec<RecordBatch>,
    rejected: Vec<Rejected>,
    late: Vec<RecordBatch>,
    offsets: Offsets,
    /// The state checkpoint's id and bytes.
    checkpoint: Option<(i64, Vec<u8>)>,
}

/// What a commit in flight needs to know besides its batch.
#[derive(Debug, Clone)]
struct CommitContext {
    pipeline: String,
    stream: String,
    stats: Arc<TableStats>,
    compact_every: u64,
}

impl Sinks {
    /// Quarantine, late rows, state checkpoint, then the target with every offset.
    async fn commit(&mut self, batch: CommitBatch, ctx: &CommitContext) -> Result<()> {
        let CommitBatch {
            rows,
            rejected,
            late,
            offsets,
            checkpoint,
        } = batch;
        let stream = &ctx.stream;
        let fresh: Vec<Rejected> = rejected
            .into_iter()
            .filter(|r| self.quarantine.is_new(r.record.partition, r.record.offset))
            .collect();
        if !fresh.is_empty() {
            let quarantined = quarantine::rows(&ctx.pipeline, stream, &fresh, now_ms());
            self.quarantine
                .commit(vec![quarantined], &offsets, stream)
                .await?;
            ctx.stats
                .quarantined_rows
                .fetch_add(fresh.len() as u64, Ordering::Relaxed);
        }
        if let Some(late_table) = &mut self.late {
            let late_rows = fresh_late_rows(late_table, late)?;
            let count: usize = late_rows.iter().map(RecordBatch::num_rows).sum();
            if count > 0 {
                late_table.commit(late_rows, &offsets, stream).await?;
                ctx.stats
                    .late_rows
                    .fetch_add(count as u64, Ordering::Relaxed);
            }
        }
        let state_id = match (&self.state_store, checkpoint) {
            (Some(store), Some((id, bytes))) => {
                store.write(id, bytes).await?;
                Some(id)
            }
            _ => None,
        };
        // Crash points for the exactly-once tests (FAILPOINTS=name=return aborts the process here).
        fail::fail_point!("commit-between-quarantine-and-target", |_| {
            std::process::abort()
        });
        let count: u64 = rows.iter().map(|b| b.num_rows() as u64).sum();
        self.target.commit(rows, &offsets, state_id).await?;
        fail::fail_point!("commit-after-target", |_| std::process::abort());
        if let (Some(store), Some(id)) = (&self.state_store, state_id) {
            store.forget_before(id).await;
        }
        ctx.stats.record_commit(count);
        self.commits_since_compaction += 1;
        if ctx.compact_every > 0 && self.commits_since_compaction >= ctx.compact_every {
            self.target.compact().await?;
            self.commits_since_compaction = 0;
        }
        Ok(())
    }
}

const CHECKPOINT_MAGIC: &[u8] = b"STRATA-STATE-1";

/// One running pipeline.
struct Task<'a> {
    run: &'a PipelineRun,
    plan: CompiledPlan,
    reader: Reader,
    /// The sinks, unless a commit in flight holds them.
    sinks: Option<Sinks>,
    /// The commit in flight, which hands the sinks back when it has landed.
    in_flight: Option<tokio::task::JoinHandle<Result<Sinks>>>,
    stateful: Option<Stateful>,
    watermark: Option<(String, WatermarkTracker)>,
    /// The watermark as of the last commit started; lateness is judged against it.
    committed_watermark: Option<i64>,
    pending: Pending,
    interval: Duration,
}

impl<'a> Task<'a> {
    async fn open(
        run: &'a PipelineRun,
        source: &TableDef,
        target_location: &str,
        plan: CompiledPlan,
    ) -> Result<Task<'a>> {
        let name = run.pipeline.pipeline.name.clone();
        let target_def = &run.pipeline.target;
        let mode = match &plan.aggregate {
            _ if is_changelog(source) => WriteMode::Upsert(target_def.primary_key.clone()),
            Some(aggregate) if aggregate.updates() => {
                WriteMode::Upsert(target_def.primary_key.clone())
            }
            _ => WriteMode::Append,
        };
        let mut target = match &target_def.kind {
            TableKind::Mysql { .. } => Target::Mysql(
                MysqlSink::open(
                    connectors::mysql_target(run.catalog.project(), target_def)?,
                    target_def.schema.clone(),
                    target_def.primary_key.clone(),
                    &name,
                )
                .await?,
            ),
            TableKind::Kafka { .. } => {
                let project = run.catalog.project();
                Target::Kafka(Box::new(KafkaSink::open(
                    connectors::kafka_target(project, target_def)?,
                    target_def.schema.clone(),
                    target_def.primary_key.clone(),
                    &name,
                )?))
            }
            _ => Target::Delta(DeltaSink::open(target_location, &name, mode).await?),
        };
        let mut quarantine = run
            .open_side_table(
                target_location,
                "__quarantine",
                &quarantine::schema(),
                format!(
                    "Records that could not be put in {}, with their source coordinates and the reason",
                    target_def.name
                ),
                "quarantine",
            )
            .await?;
        let engine = &run.catalog.project().config.engine;
        let interval = Duration::from_millis(engine.commit_interval_ms);
        let (reader, partitions) = match &source.kind {
            TableKind::Kafka { startup_mode, .. } => {
                let kafka = connectors::kafka_target(run.catalog.project(), source)?;
                let topic = kafka.topic.clone();
                let partitions = KafkaSource::partitions(&kafka)?;
                let mut resume = BTreeMap::new();
                for &partition in &partitions {
                    if let Some(offset) = target.committed_offset(&topic, partition).await? {
                        resume.insert(partition, offset);
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
                    let state = target.committed_state().await?;
                    target.commit(Vec::new(), &offsets, state).await?;
                    resume.extend(starts.into_iter().map(|(p, start)| (p, start - 1)));
                }
                let source_reader =
                    KafkaSource::start(kafka, &group, &resume, engine.batch_records)?;
                let reader = Reader::Kafka {
                    source: source_reader,
                    decoder: match source.kind {
                        TableKind::Kafka {
                            format: KafkaFormat::DebeziumJson,
                            ..
                        } => RecordDecoder::Debezium(DebeziumDecoder::new(source.schema.clone())),
                        _ => RecordDecoder::Json(JsonDecoder::new(source.schema.clone())),
                    },
                    topic,
                };
                (reader, partitions)
            }
            _ => {
                let location = connectors::delta_location(run.catalog.project(), source)?;
                let stream = format!("delta/{}", source.name);
                let resume = target.committed_offset(&stream, 0).await?;
                let reader = Reader::Delta {
                    follower: DeltaFollower::open(&location, resume).await?,
                    schema: source.schema.clone(),
                    stream,
                    poll_every: interval.min(Duration::from_millis(500)),
                    at_end: false,
                };
                (reader, vec![0])
            }
        };
        quarantine.resume(reader.stream(), &partitions).await?;
        let watermark = source.watermark.as_ref().map(|w| {
            let tracker = WatermarkTracker::new(
                &partitions,
                w.delay_ms,
                Duration::from_millis(engine.idle_timeout_ms),
                Instant::now(),
            );
            (w.column.clone(), tracker)
        });
        let mut task = Task {
            run,
            plan,
            reader,
            sinks: Some(Sinks {
                target,
                quarantine,
                late: None,
                state_store: None,
                commits_since_compaction: 0,
            }),
            in_flight: None,
            stateful: None,
            watermark,
            committed_watermark: None,
            pending: Pending::default(),
            interval,
        };
        if task.plan.aggregate.is_some() {
            task.open_state(source, target_location, &partitions)
                .await?;
        }
        Ok(task)
    }

    /// Opens the late-row table and restores the aggregation's last checkpoint.
    async fn open_state(
        &mut self,
        source: &TableDef,
        target_location: &str,
        partitions: &[i32],
    ) -> Result<()> {
        let late_schema = late::schema(&source.schema);
        let mut late_table = self
            .run
            .open_side_table(
                target_location,
                "__late",
                &late_schema,
                format!(
                    "Rows of {} that arrived after their window in {} had closed, with where they came from and the watermark they met",
                    source.name, self.run.pipeline.target.name
                ),
                "late",
            )
            .await?;
        late_table.resume(self.reader.stream(), partitions).await?;
        let sinks = self.sinks.as_mut().expect("nothing is in flight yet");
        // A Delta target keeps its checkpoints in its own folder; others in their quarantine's.
        let pipeline = &self.run.pipeline.pipeline.name;
        let store = match &sinks.target {
            Target::Delta(sink) => sink.state_store(pipeline),
            Target::Mysql(_) | Target::Kafka(_) => sinks.quarantine.sink.state_store(pipeline),
        };
        let mut state = AggregateState::default();
        let mut next_checkpoint = 0;
        if let Some(id) = sinks.target.committed_state().await? {
            let bytes = store.read(id).await?;
            let mut input = ByteReader::new(&bytes);
            let magic_ok = CHECKPOINT_MAGIC
                .iter()
                .map(|&b| input.u8().map(|got| got == b))
                .collect::<Result<Vec<bool>>>()?
                .into_iter()
                .all(|ok| ok);
            if !magic_ok {
                return Err(input.corrupt("it is not a Strata state checkpoint"));
            }
            self.committed_watermark = input.option(|r| r.i64())?;
            if input.u8()? == 1 {
                let Some((_, tracker)) = &mut self.watermark else {
                    return Err(input.corrupt("it has a watermark, but the source has none"));
                };
                tracker.restore(&mut input, Instant::now())?;
            }
            state = AggregateState::decode(&mut input)?;
            if !input.is_done() {
                return Err(input.corrupt("bytes left over"));
            }
            next_checkpoint = id + 1;
            if let Some(w) = self.committed_watermark {
                self.run.stats.watermark_ms.store(w, Ordering::Relaxed);
            }
        }
        sinks.late = Some(late_table);
        sinks.state_store = Some(store);
        self.stateful = Some(Stateful {
            state,
            next_checkpoint,
            late_schema,
        });
        Ok(())
    }

    async fn run(&mut self, mut stop: watch::Receiver<bool>) -> Result<()> {
        let mut last_commit = Instant::now();
        loop {
            let next = self
                .reader
                .next(last_commit + self.interval, &mut stop)
                .await?;
            let mut caught_up = false;
            match next {
                Next::Batch(batch) => self.process(batch)?,
                Next::CaughtUp => caught_up = true,
                Next::Idle => {}
                Next::Stop => break,
            }
            let current = self
                .watermark
                .as_mut()
                .and_then(|(_, tracker)| tracker.current(Instant::now()));
            if let Some(w) = current {
                self.run.stats.watermark_ms.store(w, Ordering::Relaxed);
            }
            let watermark_moved = self.stateful.is_some() && current != self.committed_watermark;
            let due = caught_up || last_commit.elapsed() >= self.interval;
            if due && (!self.pending.offsets.is_empty() || watermark_moved) {
                self.commit().await?;
                last_commit = Instant::now();
            } else if self.pending.offsets.is_empty() && !watermark_moved {
                last_commit = Instant::now();
            }
            if caught_up
                && self.run.mode == RunMode::UntilCaughtUp
                && self.pending.offsets.is_empty()
            {
                self.settle().await?;
                return Ok(());
            }
        }
        if !self.pending.offsets.is_empty() {
            self.commit().await?;
        }
        self.settle().await?;
        Ok(())
    }

    /// Waits for the commit in flight, if any, and takes the sinks back.
    async fn settle(&mut self) -> Result<&mut Sinks> {
        if let Some(in_flight) = self.in_flight.take() {
            let sinks = in_flight.await.map_err(|err| PipelineError::Sink {
                what: format!("pipeline {}", self.run.pipeline.pipeline.name),
                cause: format!("the commit task failed: {err}"),
            })??;
            self.sinks = Some(sinks);
        }
        Ok(self.sinks.as_mut().expect("the sinks are back"))
    }

    /// Folds a source batch into what is pending.
    fn process(&mut self, batch: SourceBatch) -> Result<()> {
        let stream = self.reader.stream().to_string();
        self.run
            .stats
            .records_in
            .fetch_add(batch.records, Ordering::Relaxed);
        for (&partition, &offset) in &batch.offsets {
            self.pending
                .offsets
                .insert((stream.clone(), partition), offset);
        }
        self.pending.rejected.extend(batch.rejected);
        if let Some((column, tracker)) = &mut self.watermark {
            let now = Instant::now();
            for (partition, max_event) in max_event_times(&batch.rows, &batch.coordinates, column)?
            {
                tracker.observe(partition, max_event, now);
            }
        }
        let rows = &batch.rows;
        let without_time = self.plan.rows_without_time(rows)?;
        for &row in &without_time {
            self.reject(
                rows,
                &batch.coordinates,
                row,
                "the window's event-time column is NULL, so the row belongs to no window"
                    .to_string(),
            );
        }
        let keep: Vec<usize> = if without_time.is_empty() {
            (0..rows.num_rows()).collect()
        } else {
            (0..rows.num_rows())
                .filter(|r| !without_time.contains(r))
                .collect()
        };
        let kinds = batch.kinds.as_deref();
        match self.transform(rows, &keep) {
            Ok(output) => self.absorb(rows, &batch.coordinates, kinds, output),
            // Find the rows the SELECT fails on; they go to quarantine with the reason.
            Err(_) => {
                for row in keep {
                    match self.transform(rows, &[row]) {
                        Ok(output) => self.absorb(rows, &batch.coordinates, kinds, output)?,
                        Err(err) => self.reject(
                            rows,
                            &batch.coordinates,
                            row,
                            format!("the pipeline's SELECT failed on this record: {err}"),
                        ),
                    }
                }
                Ok(())
            }
        }
    }

    /// Runs the SELECT (up to the aggregation) on some rows of a batch.
    fn transform(&self, rows: &RecordBatch, keep: &[usize]) -> Result<Transformed> {
        let input = if keep.len() == rows.num_rows() {
            rows.clone()
        } else {
            let indices =
                arrow::array::UInt32Array::from_iter_values(keep.iter().map(|&r| r as u32));
            arrow::compute::take_record_batch(rows, &indices)?
        };
        let traced = self.plan.prepare(&input)?;
        let origins = traced.origins.iter().map(|&o| keep[o]).collect();
        if self.plan.aggregate.is_some() {
            return Ok(Transformed::ToAggregate(Traced {
                batch: traced.batch,
                origins,
            }));
        }
        Ok(Transformed::Rows(Traced {
            batch: self.plan.finish(traced.batch)?,
            origins,
        }))
    }

    fn absorb(
        &mut self,
        rows: &RecordBatch,
        coordinates: &[(i32, i64)],
        kinds: Option<&[RowKind]>,
        output: Transformed,
    ) -> Result<()> {
        let kinds_of = |traced: &Traced| -> Option<Vec<RowKind>> {
            kinds.map(|kinds| traced.origins.iter().map(|&o| kinds[o]).collect())
        };
        match output {
            Transformed::Rows(traced) => {
                let batch = match kinds_of(&traced) {
                    // A changelog upserts the target: an update's old image and a delete
                    // remove their key; the sink keeps each key's last change.
                    Some(kinds) => with_delete_marker(
                        &traced.batch,
                        kinds.iter().map(|kind| kind.is_retraction()).collect(),
                    )?,
                    None => traced.batch,
                };
                self.pending.rows.push(batch);
            }
            Transformed::ToAggregate(traced) => {
                let (Some(plan), Some(stateful)) = (&self.plan.aggregate, &mut self.stateful)
                else {
                    unreachable!("an aggregating plan has state")
                };
                let row_kinds = kinds_of(&traced);
                let late_positions = stateful.state.update(
                    plan,
                    &traced.batch,
                    row_kinds.as_deref(),
                    self.committed_watermark,
                )?;
                if late_positions.is_empty() {
                    return Ok(());
                }
                let mut late_rows: Vec<usize> =
                    late_positions.iter().map(|&p| traced.origins[p]).collect();
                late_rows.sort_unstable();
                late_rows.dedup();
                let arrivals: Vec<Arrival> = late_rows
                    .iter()
                    .map(|&row| Arrival {
                        partition: coordinates[row].0,
                        offset: coordinates[row].1,
                        watermark: self.committed_watermark,
                    })
                    .collect();
                let batch = late::rows(
                    &stateful.late_schema,
                    &self.run.pipeline.pipeline.name,
                    self.reader.stream(),
                    rows,
                    &late_rows,
                    &arrivals,
                    now_ms(),
                )?;
                self.pending.late.push(batch);
            }
        }
        Ok(())
    }

    /// Sends one decoded row to quarantine, as JSON, with the reason.
    fn reject(
        &mut self,
        rows: &RecordBatch,
        coordinates: &[(i32, i64)],
        row: usize,
        reason: String,
    ) {
        let (partition, offset) = coordinates[row];
        self.pending.rejected.push(Rejected {
            record: SourceRecord {
                partition,
                offset,
                timestamp_ms: None,
                key: None,
                payload: Some(row_as_json(rows, row)),
            },
            error: reason,
        });
    }

    /// Advances the watermark, emits what it closed, and starts a commit of
    /// everything pending: quarantine, late rows, state checkpoint, then the
    /// target with every offset. The commit runs while the next batches are
    /// read; commits land one after the other, in order.
    async fn commit(&mut self) -> Result<()> {
        let watermark = self
            .watermark
            .as_mut()
            .and_then(|(_, tracker)| tracker.current(Instant::now()));
        let mut checkpoint = None;
        if let (Some(plan), Some(stateful)) = (&self.plan.aggregate, &mut self.stateful) {
            let emitted = stateful.state.emit(plan, watermark)?;
            if emitted.upserts.num_rows() > 0 {
                self.pending.rows.push(self.plan.finish(emitted.upserts)?);
            }
            if emitted.deletes.num_rows() > 0 {
                let deletes = self.plan.finish(emitted.deletes)?;
                let marker = vec![true; deletes.num_rows()];
                self.pending
                    .rows
                    .push(with_delete_marker(&deletes, marker)?);
            }
            let mut out = ByteWriter::default();
            out.bytes.extend_from_slice(CHECKPOINT_MAGIC);
            out.option(watermark.as_ref(), |out, w| out.i64(*w));
            match &self.watermark {
                Some((_, tracker)) => {
                    out.u8(1);
                    tracker.encode(&mut out);
                }
                None => out.u8(0),
            }
            stateful.state.encode(&mut out);
            checkpoint = Some((stateful.next_checkpoint, out.bytes));
            stateful.next_checkpoint += 1;
        }
        // Rows read from now on belong to the next commit and are judged against this watermark.
        self.committed_watermark = watermark;
        let batch = CommitBatch {
            rows: std::mem::take(&mut self.pending.rows),
            rejected: std::mem::take(&mut self.pending.rejected),
            late: std::mem::take(&mut self.pending.late),
            offsets: std::mem::take(&mut self.pending.offsets),
            checkpoint,
        };
        let ctx = CommitContext {
            pipeline: self.run.pipeline.pipeline.name.clone(),
            stream: self.reader.stream().to_string(),
            stats: self.run.stats.clone(),
            compact_every: self
                .run
                .catalog
                .project()
                .config
                .engine
                .compact_every_commits,
        };
        self.settle().await?;
        let mut sinks = self.sinks.take().expect("settled");
        self.in_flight = Some(tokio::spawn(async move {
            sinks.commit(batch, &ctx).await.map(|_| sinks)
        }));
        Ok(())
    }
}

/// The SELECT's output for some rows: target rows, or rows for the aggregation,
/// each with the input row it came from.
enum Transformed {
    Rows(Traced),
    ToAggregate(Traced),
}

/// Marks rows that delete their key (the upsert sink reads the marker).
fn with_delete_marker(batch: &RecordBatch, deletes: Vec<bool>) -> Result<RecordBatch> {
    let mut fields: Vec<arrow::datatypes::FieldRef> =
        batch.schema().fields().iter().cloned().collect();
    fields.push(Arc::new(arrow::datatypes::Field::new(
        DELETE_MARKER,
        arrow::datatypes::DataType::Boolean,
        false,
    )));
    let mut columns = batch.columns().to_vec();
    columns.push(Arc::new(arrow::array::BooleanArray::from(deletes)));
    Ok(RecordBatch::try_new(
        Arc::new(arrow::datatypes::Schema::new(fields)),
        columns,
    )?)
}

/// Late rows the late table does not hold yet (it may be ahead after a crash).
fn fresh_late_rows(late: &SideTable, batches: Vec<RecordBatch>) -> Result<Vec<RecordBatch>> {
    batches
        .into_iter()
        .map(|batch| {
            let partitions = batch
                .column_by_name("_partition")
                .and_then(|c| {
                    c.as_any()
                        .downcast_ref::<arrow::array::Int32Array>()
                        .cloned()
                })
                .expect("late rows have _partition");
            let offsets = batch
                .column_by_name("_offset")
                .and_then(|c| {
                    c.as_any()
                        .downcast_ref::<arrow::array::Int64Array>()
                        .cloned()
                })
                .expect("late rows have _offset");
            let mask: arrow::array::BooleanArray = (0..batch.num_rows())
                .map(|row| Some(late.is_new(partitions.value(row), offsets.value(row))))
                .collect();
            Ok(arrow::compute::filter_record_batch(&batch, &mask)?)
        })
        .collect()
}

/// The largest event time of each partition's rows in a batch.
fn max_event_times(
    rows: &RecordBatch,
    coordinates: &[(i32, i64)],
    column: &str,
) -> Result<BTreeMap<i32, Option<i64>>> {
    let mut maxima: BTreeMap<i32, Option<i64>> = BTreeMap::new();
    if rows.column_by_name(column).is_none() {
        return Ok(maxima);
    }
    let millis = crate::window::event_times(rows, column)?;
    for (row, (partition, _)) in coordinates.iter().enumerate() {
        let entry = maxima.entry(*partition).or_insert(None);
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
            "pipelines read one Kafka (json, debezium-json) or Delta table and write a Delta, MySQL/TiDB or Kafka table"
                .to_string(),
        ),
    }
}

/// Where the target's Delta table is, or for a MySQL/TiDB or Kafka target, where its
/// side tables (quarantine, late rows) and checkpoints go: the lake's
/// `<root>/<space>/<name>`, as if it were a Delta table.
fn target_location(catalog: &Catalog, pipeline: &ValidPipeline) -> Result<String> {
    match &pipeline.target.kind {
        TableKind::Delta { .. } => Ok(connectors::delta_location(
            catalog.project(),
            &pipeline.target,
        )?),
        TableKind::Mysql { .. } | TableKind::Kafka { .. } => {
            let in_lake = TableDef {
                kind: TableKind::Delta {
                    table_path: None,
                    connection: None,
                },
                ..pipeline.target.clone()
            };
            Ok(connectors::delta_location(catalog.project(), &in_lake)?)
        }
        TableKind::Embedded { .. } => Err(unsupported(
            pipeline,
            "writing to an embedded table (it holds small dimension tables; write a Delta or MySQL table)",
        )),
    }
}

/// A pipeline's target: a Delta table (append or upsert), a MySQL/TiDB serving
/// table (upsert), or a Kafka topic (JSON, in transactions).
#[derive(Debug)]
enum Target {
    Delta(DeltaSink),
    Mysql(MysqlSink),
    Kafka(Box<KafkaSink>),
}

impl Target {
    async fn committed_offset(&self, stream: &str, partition: i32) -> Result<Option<i64>> {
        match self {
            Target::Delta(sink) => sink.committed_offset(stream, partition).await,
            Target::Mysql(sink) => sink.committed_offset(stream, partition).await,
            Target::Kafka(sink) => Ok(sink.committed_offset(stream, partition)),
        }
    }

    async fn committed_state(&self) -> Result<Option<i64>> {
        match self {
            Target::Delta(sink) => sink.committed_state().await,
            Target::Mysql(sink) => sink.committed_state().await,
            Target::Kafka(sink) => Ok(sink.committed_state()),
        }
    }

    async fn commit(
        &mut self,
        rows: Vec<RecordBatch>,
        offsets: &Offsets,
        state: Option<i64>,
    ) -> Result<()> {
        match self {
            Target::Delta(sink) => sink.commit(rows, offsets, state).await.map(|_| ()),
            Target::Mysql(sink) => sink.commit(rows, offsets, state).await,
            Target::Kafka(sink) => sink.commit(rows, offsets, state),
        }
    }

    /// Compacts a Delta target; other targets need nothing.
    async fn compact(&mut self) -> Result<()> {
        match self {
            Target::Delta(sink) => sink.compact().await,
            Target::Mysql(_) | Target::Kafka(_) => Ok(()),
        }
    }
}
