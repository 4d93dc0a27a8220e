//! One running pipeline: read a batch, decode, run the SELECT (and the
//! aggregation), and start a commit every interval while reading on.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use arrow::array::Array;
use arrow::record_batch::RecordBatch;
use strata_catalog::connectors::{self};
use strata_catalog::{StartupMode, TableDef};
use tokio::sync::watch;

use crate::checkpoint::{Checkpoint, RUNTIME};
use crate::connector::VersionFeed;
use crate::decode::json::{JsonDecoder, Rejected};
use crate::error::{PipelineError, Result};
use crate::operator::{
    BatchContext, Input, MissAction, Missed, Pass, RowKind, RunAgain, Side, StateWrite, Traced,
    Watermarks,
};
use crate::plan::StreamPlan;
use crate::position::{self, Positions};
use crate::registry;
use crate::sink::late::{self, Arrival};
use crate::sink::quarantine;
use crate::sink::{DELETE_MARKER, TargetOptions, WriteMode};
use crate::source::SourceOptions;
use crate::source::SourceRecord;
use crate::source::reader::{
    Next, Originals, RecordDecoder, SourceBatch, SourceReader, row_as_json,
};
use crate::source::replay::ReplayReader;
use crate::state::{ByteReader, ByteWriter};
use crate::transform::CompiledPlan;

use super::ResetFrom;
use crate::watermark::{ProcessingClock, WatermarkTracker};

use super::checks::Checking;
use super::commit::{CommitBatch, CommitContext, Sinks, Target};
use super::keyed::PendingCheckpoint;
use super::parked::{DueRows, ParkedRows};
use super::snapshot::{LegacyParts, OperatorState, RuntimeState, Snapshot, WaitingState};
use super::{PipelineRun, Planned, RunMode, now_ms, panic_message};

/// What has been read but not yet committed.
#[derive(Debug, Default)]
struct Pending {
    rows: Vec<RecordBatch>,
    rejected: Vec<Rejected>,
    late: Vec<RecordBatch>,
    /// Quarantined and late rows of rows set aside for a retry: their offsets
    /// were committed long ago, so the side tables must not skip them as replays.
    retried_rejected: Vec<Rejected>,
    retried_late: Vec<RecordBatch>,
    /// Late rows of the second stream (a window join's).
    /// Late rows of the other streams, each with its position among them.
    late_second: Vec<(usize, RecordBatch)>,
    /// Records of the versions input's changelog that are no version.
    /// Records of the streams beside the source (a temporal join's changelog,
    /// the streams joined to the source), each with its stream.
    side_rejected: Vec<(String, Rejected)>,
    /// Rows an aggregation emitted that failed a quarantine rule: they have no
    /// source offset, so the quarantine must not skip them as replays.
    emitted_rejected: Vec<Rejected>,
    positions: Positions,
}

/// State the runner keeps for operators, and where it is checkpointed: the
/// rows operators set aside to run through the plan again, under the id of
/// the first operator that does so at that moment (the rows run through the
/// whole plan again, whichever operator set them aside).
#[derive(Debug)]
struct Stateful {
    /// To run again after a delay ([`RunAgain::AfterDelay`]); "due" is a wall-clock time.
    parked: ParkedRows,
    /// To run again once the versions input's watermark passes them
    /// ([`RunAgain::AtVersionsWatermark`]); "due" is the row's event time.
    waiting: ParkedRows,
    next_checkpoint: i64,
    /// The late-row table's schema, for an aggregation.
    late_schema: Option<arrow::datatypes::SchemaRef>,
    /// The late tables' of the other streams, in the plan's order, when their rows can be late (a window join).
    late_second_schemas: Vec<arrow::datatypes::SchemaRef>,
}

/// A stream whose rows enter the plan beside the source's (the right side
/// of a join of streams), with its watermark when its table declares one.
#[derive(Debug)]
struct SecondStream {
    reader: Box<dyn SourceReader>,
    partitions: Vec<i32>,
    /// The event-time column, and the watermark over it.
    watermark: Option<(String, WatermarkTracker)>,
}

impl SecondStream {
    fn tracker(&mut self) -> Option<&mut WatermarkTracker> {
        self.watermark.as_mut().map(|(_, tracker)| tracker)
    }
}

/// What waiting on the sources produced.
enum Event {
    Source(Next),
    Versions(Option<Vec<SourceRecord>>),
    /// A batch of the second stream at this position (`Input(position + 1)`).
    Second(usize, Next),
}

/// The next records of the versions input's changelog; never, without one.
async fn next_versions(
    feed: Option<&mut Box<dyn VersionFeed>>,
) -> Result<Option<Vec<SourceRecord>>> {
    match feed {
        Some(feed) => feed.next().await,
        None => std::future::pending().await,
    }
}

/// The next batch of any of the second streams, with the stream's position;
/// never, without one. The streams are asked from `first` on, round the
/// ring, so that one with records always waiting does not keep the others
/// unread. The readers not first to answer are dropped mid-read: every such
/// stream is a Kafka topic or a Nexmark table, safe to cancel.
async fn next_second(
    seconds: &mut [SecondStream],
    first: usize,
    deadline: Instant,
    stops: &mut [watch::Receiver<bool>],
) -> (usize, Result<Next>) {
    if seconds.is_empty() {
        return std::future::pending().await;
    }
    let count = seconds.len();
    let mut reads: Vec<(usize, &mut SecondStream, &mut watch::Receiver<bool>)> = seconds
        .iter_mut()
        .zip(stops.iter_mut())
        .enumerate()
        .map(|(at, (second, stop))| (at, second, stop))
        .collect();
    reads.rotate_left(first % count);
    let order: Vec<usize> = reads.iter().map(|(at, _, _)| *at).collect();
    let reads = reads
        .into_iter()
        .map(|(_, second, stop)| second.reader.next(deadline, stop));
    let (next, answered, _) = futures::future::select_all(reads).await;
    (order[answered], next)
}

/// How often the open windows' values are recomputed for the live view while someone reads it.
const PROVISIONAL_EVERY: Duration = Duration::from_millis(200);

/// How often a due commit looks again whether the commit in flight has landed.
const COMMIT_WAIT: Duration = Duration::from_millis(5);

/// One running pipeline.
pub(super) struct Task<'a> {
    run: &'a PipelineRun,
    plan: CompiledPlan,
    /// The plan's operators, the ids and fingerprints their checkpointed state goes under.
    stream_plan: StreamPlan,
    reader: Box<dyn SourceReader>,
    /// The sinks, unless a commit in flight holds them.
    sinks: Option<Sinks>,
    /// The commit in flight, which hands the sinks back when it has landed.
    in_flight: Option<tokio::task::JoinHandle<Result<Sinks>>>,
    stateful: Option<Stateful>,
    /// A table's changelog read into versions an operator probes (an event-time temporal join's).
    versions: Option<Box<dyn VersionFeed>>,
    /// The streams whose rows enter the plan beside the source's, in the plan's order.
    seconds: Vec<SecondStream>,
    watermark: Option<(String, WatermarkTracker)>,
    /// The wall clock, when the pipeline's windows run on processing time: it
    /// is the watermark then.
    clock: Option<ProcessingClock>,
    /// How far ahead of the wall clock an event time may be before its row goes
    /// to quarantine rather than move the watermark (`'scan.watermark.max-future-skew'`).
    max_future_skew_ms: Option<i64>,
    /// The records of the batch being processed, for rows sent to quarantine.
    originals: Originals,
    /// The watermark as of the last commit started; lateness is judged against it.
    committed_watermark: Option<i64>,
    /// The largest watermark the versions input let through, so that it never goes back.
    joined_watermark: Option<i64>,
    /// Whether the source and the second stream were idle at the last commit:
    /// a stream falling idle lets a window join close windows, so it commits.
    committed_idleness: (bool, bool),
    pending: Pending,
    interval: Duration,
    checking: Checking,
    /// When the open windows' values were last shown to the live view (`None`: show them now).
    provisional_at: Option<Instant>,
    /// Whether state is checkpointed: not for a blackhole target, which keeps no
    /// offsets to resume from.
    checkpoints: bool,
    /// The working store of keyed operators' state; declared last, so that
    /// it goes after the operators that hold the store.
    keyed_dir: Option<super::keyed::RunDir>,
}

impl<'a> Task<'a> {
    /// Opens the pipeline's source, target and state; with `restore` false the
    /// checkpointed state is left unread (a reset drops it).
    pub(super) async fn open(
        run: &'a PipelineRun,
        planned: Planned<'_>,
        restore: bool,
    ) -> Result<Task<'a>> {
        let Planned {
            source,
            target_location,
            plan,
            stream: stream_plan,
        } = planned;
        let target_location = target_location.as_str();
        let name = run.pipeline.pipeline.name.clone();
        let target_def = &run.pipeline.target;
        let mode = match stream_plan.sink_upserts() {
            true => WriteMode::Upsert(target_def.primary_key.clone()),
            false => WriteMode::Append,
        };
        let checking = Checking::open(
            run,
            source,
            target_location,
            matches!(mode, WriteMode::Upsert(_)),
        )
        .await?;
        let shows_provisional = plan.shows_provisional();
        let task_holds_rows = plan.holds_rows();
        let mut target: Target = registry::connector(target_def)
            .open_target(
                target_def,
                TargetOptions {
                    project: run.catalog.project(),
                    pipeline: &name,
                    location: target_location,
                    mode: mode.clone(),
                    output: run.stats.output.clone(),
                    // On the processing-time clock, the watermark is no event time's.
                    event_time_columns: match plan.runs_on_processing_time() {
                        true => Vec::new(),
                        false => run.pipeline.event_time_columns().await?,
                    },
                },
            )
            .await?;
        // The realtime view of a table with versions: what is committed, and what is not yet.
        if let Some(version) = target.version() {
            let key = match &mode {
                WriteMode::Upsert(key) => key.clone(),
                WriteMode::Append => Vec::new(),
            };
            run.stats
                .live
                .begin(target_location, key, shows_provisional, version);
        }
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
        let group = super::consumer_group(&name);
        let options = SourceOptions {
            project: run.catalog.project(),
            group: &group,
            batch_records: engine.batch_records,
            poll_every: interval.min(Duration::from_millis(500)),
        };
        let (reader, partitions) = match (&source.kind, &run.replay) {
            (_, Some(replay)) => {
                refuse_replay(run, source, &stream_plan)?;
                let stream = replay.stream();
                let mut partitions: Vec<i32> = replay.records.iter().map(|r| r.partition).collect();
                partitions.sort_unstable();
                partitions.dedup();
                let mut done = BTreeMap::new();
                for &partition in &partitions {
                    if let Some(position) = target.committed_position(&stream, partition).await? {
                        done.insert(partition, position.order);
                    }
                }
                // An interrupted replay run again skips what it committed.
                let records = replay
                    .records
                    .iter()
                    .filter(|r| done.get(&r.partition).is_none_or(|&d| r.offset > d))
                    .cloned()
                    .collect();
                let reader: Box<dyn SourceReader> = Box::new(ReplayReader {
                    records,
                    decoder: RecordDecoder::Json(JsonDecoder::new(source.schema.clone())),
                    stream,
                    batch_records: engine.batch_records,
                    reported_end: false,
                });
                (reader, partitions)
            }
            (_, None) => {
                registry::connector(source)
                    .open_source(source, &options, &mut target)
                    .await?
            }
        };
        quarantine.resume(reader.stream(), &partitions).await?;
        let versions = match plan.versions_read() {
            Some(table) => {
                let def = run
                    .pipeline
                    .sources
                    .iter()
                    .find(|t| t.name.to_string() == table.name)
                    .expect("the versioned table is one of the pipeline's tables");
                let feed = registry::connector(def)
                    .open_versions(def, table.clone(), &options, &mut target)
                    .await?;
                quarantine.resume(feed.stream(), feed.partitions()).await?;
                Some(feed)
            }
            None => None,
        };
        let mut seconds = Vec::with_capacity(plan.seconds().len());
        for second in plan.seconds() {
            let stream = open_second(run, &second.table, &options, &mut target).await?;
            quarantine
                .resume(stream.reader.stream(), &stream.partitions)
                .await?;
            let stream_name = stream.reader.stream();
            let shared = std::iter::once(reader.stream())
                .chain(seconds.iter().map(|s: &SecondStream| s.reader.stream()))
                .any(|name| name == stream_name);
            if shared {
                return Err(PipelineError::Invalid {
                    location: run.pipeline.pipeline.target.location.clone(),
                    message: format!(
                        "two tables of pipeline {name} are read from one stream, {stream_name}: their committed positions would be one"
                    ),
                    hint: Some("read each topic through one table in a pipeline (a self-join of a stream joins the table with itself under two aliases)".to_string()),
                });
            }
            seconds.push(stream);
        }
        // Windows over processing time close on the clock, not on event times.
        let clock = run
            .pipeline
            .pipeline
            .windows()
            .find_map(|tvf| tvf.processing_clock(engine.commit_interval_ms as i64, now_ms()))
            .or_else(|| plan.processing_clock(now_ms()));
        let event_time = source.watermark.as_ref().filter(|_| clock.is_none());
        let watermark = event_time.map(|w| {
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
            stream_plan,
            plan,
            max_future_skew_ms: event_time.and_then(|w| w.max_future_skew_ms),
            originals: Originals::default(),
            reader,
            sinks: Some(Sinks {
                target,
                quarantine,
                late: None,
                late_second: Vec::new(),
                state_store: None,
                commits_since_compaction: 0,
                emitted_quarantined: match task_holds_rows {
                    true => emitted_quarantined(target_location, &name).await?,
                    false => Default::default(),
                },
            }),
            in_flight: None,
            stateful: None,
            versions,
            seconds,
            watermark,
            clock,
            committed_watermark: None,
            joined_watermark: None,
            committed_idleness: (false, false),
            pending: Pending::default(),
            interval,
            checking,
            provisional_at: None,
            checkpoints: registry::connector(target_def).commits_positions(),
            keyed_dir: None,
        };
        if task.stream_plan.states().next().is_some() {
            task.open_state(source, target_location, &partitions, restore)
                .await?;
        }
        Ok(task)
    }

    /// Opens the late-row table (for an aggregation) and restores the last checkpoint.
    async fn open_state(
        &mut self,
        source: &TableDef,
        target_location: &str,
        partitions: &[i32],
        restore: bool,
    ) -> Result<()> {
        let mut late = None;
        if self.plan.holds_rows() {
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
            late = Some((late_table, late_schema));
        }
        // The other streams' rows can be late too (a window join's): each
        // keeps its own columns, in a late table of its own.
        let mut late_second = Vec::new();
        let holds_rows = self.plan.holds_rows();
        for (second, right) in self.plan.seconds().iter().zip(&self.seconds) {
            let Some(table) = self
                .run
                .pipeline
                .sources
                .iter()
                .find(|table| table.name == second.table)
                .filter(|_| holds_rows)
            else {
                continue;
            };
            let schema = late::schema(&table.schema);
            let mut late_table = self
                .run
                .open_side_table(
                    target_location,
                    &late::second_suffix(&table.name.name),
                    &schema,
                    format!(
                        "Rows of {} that arrived after their window in {} had closed, with where they came from and the watermark they met",
                        table.name, self.run.pipeline.target.name
                    ),
                    "late",
                )
                .await?;
            late_table
                .resume(right.reader.stream(), &right.partitions)
                .await?;
            late_second.push((late_table, schema));
        }
        let parked = ParkedRows::new(&source.schema)?;
        let waiting = ParkedRows::new(&source.schema)?;
        let sinks = self.sinks.as_mut().expect("nothing is in flight yet");
        // A Delta target keeps its checkpoints in its own folder; others in their quarantine's.
        let pipeline = &self.run.pipeline.pipeline.name;
        let store = sinks
            .target
            .state_store(pipeline)
            .unwrap_or_else(|| sinks.quarantine.sink.state_store(pipeline));
        let committed = sinks.target.committed_state().await?;
        let late_schema = late.as_ref().map(|(_, schema)| schema.clone());
        let (late_second, late_second_schemas) = late_second.into_iter().unzip();
        sinks.late = late.map(|(table, _)| table);
        sinks.late_second = late_second;
        sinks.state_store = Some(store.clone());
        self.stateful = Some(Stateful {
            parked,
            waiting,
            next_checkpoint: committed.map_or(0, |id| id + 1),
            late_schema,
            late_second_schemas,
        });
        let project = self.run.catalog.project();
        self.keyed_dir = super::keyed::open(
            &self.plan,
            &project.state_dir(),
            pipeline,
            project.config.engine.state_memory_mb,
            &store,
        )?;
        if let Some(id) = committed.filter(|_| restore) {
            self.restore_checkpoint(&store.read(id).await?).await?;
            if let Some(w) = self.committed_watermark {
                self.run.stats.watermark_ms.store(w, Ordering::Relaxed);
            }
        }
        Ok(())
    }

    /// Restores each stateful operator from its entry of the checkpoint, once
    /// the checkpoint is known to fit the plan (or from an earlier version's blob).
    async fn restore_checkpoint(&mut self, bytes: &[u8]) -> Result<()> {
        let Some(mut checkpoint) = Checkpoint::decode(bytes)? else {
            let pipeline = self.run.pipeline.pipeline.name.clone();
            let shape = self.plan.state_shape();
            return self.legacy_parts().restore(bytes, &pipeline, &shape);
        };
        checkpoint.fit(&self.stream_plan, self.runtime_fingerprint())?;
        for (id, mut part) in self.state_parts() {
            let Some(entry) = checkpoint.take(&id) else {
                continue;
            };
            let mut input = ByteReader::new(&entry.bytes);
            part.restore(&mut input)?;
            if !input.is_done() {
                return Err(input.corrupt(&format!("bytes left over in the state of {id}")));
            }
        }
        super::keyed::restore(&self.plan, &mut checkpoint).await
    }

    /// What the runner's own entry of a checkpoint is kept on: the clock, for
    /// windows over processing time (a checkpoint of the other time is refused).
    fn runtime_fingerprint(&self) -> &'static str {
        match self.clock {
            Some(_) => "processing time",
            None => "",
        }
    }

    /// The state of each stateful operator, under its id in the plan; the runner's own first.
    fn state_parts(&mut self) -> Vec<(String, Box<dyn Snapshot + '_>)> {
        let Some(stateful) = self.stateful.as_mut() else {
            return Vec::new();
        };
        let mut parts: Vec<(String, Box<dyn Snapshot + '_>)> = vec![(
            RUNTIME.to_string(),
            Box::new(RuntimeState {
                committed_watermark: &mut self.committed_watermark,
                source: self.watermark.as_mut().map(|(_, tracker)| tracker),
                right: self.seconds.first_mut().and_then(SecondStream::tracker),
            }),
        )];
        // Operators that keep their state in themselves.
        for (id, state) in self.plan.stateful_operators() {
            parts.push((id.to_string(), Box::new(OperatorState(state))));
        }
        // Rows the runner keeps for operators, with the versions input's versions.
        if let Some(id) = self.plan.rerun_by(RunAgain::AfterDelay) {
            parts.push((id.to_string(), Box::new(&mut stateful.parked)));
        }
        if let (Some(id), Some(feed)) = (
            self.plan.rerun_by(RunAgain::AtVersionsWatermark),
            self.versions.as_mut(),
        ) {
            parts.push((
                id.to_string(),
                Box::new(WaitingState {
                    waiting: &mut stateful.waiting,
                    feed,
                }),
            ));
        }
        parts
    }

    /// The state's parts where a checkpoint of an earlier version put them.
    fn legacy_parts(&mut self) -> LegacyParts<'_> {
        let stateful = self.stateful.as_mut().expect("opened with state");
        LegacyParts {
            committed_watermark: &mut self.committed_watermark,
            source: self.watermark.as_mut().map(|(_, tracker)| tracker),
            operators: self.plan.legacy_state(),
            parked: &mut stateful.parked,
            waiting: &mut stateful.waiting,
            feed: self.versions.as_mut(),
            right: self.seconds.first_mut().and_then(SecondStream::tracker),
        }
    }

    /// Every stateful operator's state, each under its id and fingerprint.
    fn checkpoint(&mut self) -> Checkpoint {
        let fingerprints: std::collections::HashMap<String, String> = self
            .stream_plan
            .states()
            .map(|(id, state)| (id.to_string(), state.fingerprint.clone()))
            .collect();
        let mut checkpoint = Checkpoint::default();
        let runtime = self.runtime_fingerprint();
        for (id, part) in self.state_parts() {
            let mut out = ByteWriter::default();
            part.snapshot(&mut out);
            let fingerprint = match id.as_str() {
                RUNTIME => runtime,
                _ => fingerprints
                    .get(&id)
                    .expect("the plan declares every state the task keeps"),
            };
            checkpoint.put(&id, fingerprint, out.bytes);
        }
        checkpoint
    }

    pub(super) async fn run(&mut self, mut stop: watch::Receiver<bool>) -> Result<()> {
        let mut second_stops = vec![stop.clone(); self.seconds.len()];
        // The second stream asked first next time: the one after the last that answered.
        let mut second_first = 0;
        // Which second streams have been read to their end.
        let mut seconds_at_end = vec![false; self.seconds.len()];
        let mut last_commit = Instant::now();
        // The source has been read to its end, and nothing came since.
        let mut at_end = false;
        loop {
            // A commit that is due waits for the one in flight; meanwhile reading goes on.
            let next_commit = (last_commit + self.interval).max(Instant::now() + COMMIT_WAIT);
            let deadline = match self.next_retry_ms() {
                Some(due) => next_commit
                    .min(Instant::now() + Duration::from_millis((due - now_ms()).max(0) as u64)),
                None => next_commit,
            };
            // Both sides of a join are read as they come; every source is a Kafka
            // topic then, whose reading is safe to cancel.
            let event = tokio::select! {
                // A reader has come to the live view: show it the open windows now.
                () = self.run.stats.live.asked() => {
                    self.provisional_at = None;
                    Event::Source(Next::Idle)
                }
                records = next_versions(self.versions.as_mut()) => Event::Versions(records?),
                (at, next) = next_second(&mut self.seconds, second_first, deadline, &mut second_stops) => {
                    second_first = at + 1;
                    Event::Second(at, next?)
                }
                next = self.reader.next(deadline, &mut stop) => Event::Source(next?),
            };
            let mut caught_up = false;
            let next = match event {
                Event::Source(next) => next,
                Event::Versions(records) => {
                    self.apply_versions(records)?;
                    Next::Idle
                }
                Event::Second(at, Next::Batch(batch)) => {
                    seconds_at_end[at] = false;
                    match self.process_second(at, batch, &stop).await {
                        Ok(()) => Next::Idle,
                        // Stopped while a lookup waited: the batch is read again after a restart.
                        Err(PipelineError::Interrupted) => Next::Stop,
                        Err(err) => return Err(err),
                    }
                }
                Event::Second(at, Next::CaughtUp) => {
                    seconds_at_end[at] = true;
                    caught_up = at_end && seconds_at_end.iter().all(|&done| done);
                    Next::Idle
                }
                Event::Second(_, Next::Stop) => Next::Stop,
                Event::Second(_, Next::Idle) => Next::Idle,
            };
            let processed = match next {
                Next::Batch(batch) => {
                    at_end = false;
                    self.process(batch, &stop).await
                }
                Next::CaughtUp => {
                    tracing::debug!(
                        pipeline = self.run.pipeline.pipeline.name,
                        "read to the end"
                    );
                    caught_up = true;
                    at_end = true;
                    Ok(())
                }
                Next::Idle => Ok(()),
                Next::Stop => break,
            };
            let outcome = match processed {
                Ok(()) => match self.retry_due(&stop).await {
                    Ok(()) => self.release_waiting(&stop).await,
                    failed => failed,
                },
                failed => failed,
            };
            match outcome {
                Ok(()) => {}
                Err(PipelineError::Interrupted) => break,
                Err(err) => return Err(err),
            }
            self.publish_live()?;
            // A commit that failed fails the run now, not at the next commit (the
            // live view would show its rows as if they were to land).
            if self.in_flight.as_ref().is_some_and(|c| c.is_finished()) {
                self.settle().await?;
            }
            let current = self.current_watermark();
            if let Some(w) = current {
                self.run.stats.watermark_ms.store(w, Ordering::Relaxed);
                self.run.stats.emits.reached(w, now_ms());
            }
            let watermark_moved = self.watermark_moved(current);
            let landing = self.in_flight.as_ref().is_some_and(|c| !c.is_finished());
            // One commit per interval at most while running on (freshness comes
            // from the live view); a catch-up run commits as soon as it is there.
            let catching_up = caught_up && self.run.mode == RunMode::UntilCaughtUp;
            let due = catching_up || (last_commit.elapsed() >= self.interval && !landing);
            let pending = self.has_pending();
            if due && (pending || watermark_moved) {
                self.commit().await?;
                last_commit = Instant::now();
            } else if !pending && !watermark_moved {
                last_commit = Instant::now();
            }
            if at_end
                && seconds_at_end.iter().all(|&done| done)
                && self.run.mode == RunMode::UntilCaughtUp
                && !self.has_pending()
                && self.next_retry_ms().is_none()
                && !self.holds_rows_back()
                && !self.clock_holds_rows()
            {
                return self.finish().await;
            }
        }
        // What the watermark closed since the last commit lands before the run ends.
        let current = self.current_watermark();
        let watermark_moved = self.watermark_moved(current);
        if self.has_pending() || watermark_moved {
            self.commit().await?;
        }
        self.finish().await
    }

    /// A clean end: the last commit has landed, and no compaction of keyed
    /// state is left writing into the run's working store.
    async fn finish(&mut self) -> Result<()> {
        self.settle().await?;
        super::keyed::settle(&self.plan).await
    }

    /// Drops the state: one commit records the empty state of the plan as it
    /// is now, and, unless the committed positions stay, the source positions
    /// `from` names. The target's rows stay as they are.
    pub(super) async fn reset(&mut self, source: &TableDef, from: ResetFrom) -> Result<()> {
        let startup = match from {
            ResetFrom::Committed => None,
            ResetFrom::Earliest => Some(StartupMode::EarliestOffset),
            ResetFrom::Latest => Some(StartupMode::LatestOffset),
        };
        if let Some(startup) = startup {
            let group = super::consumer_group(&self.run.pipeline.pipeline.name);
            let rewound = registry::connector(source)
                .rewound(self.run.catalog.project(), source, &group, &startup)
                .await?;
            self.pending.positions.extend(rewound);
        }
        self.commit().await?;
        self.settle().await.map(|_| ())
    }

    /// Shows what has been read since the last commit to the table's live
    /// view, and the open windows' values while someone reads them.
    fn publish_live(&mut self) -> Result<()> {
        let live = &self.run.stats.live;
        live.set_buffered(&self.pending.rows);
        let due = self
            .provisional_at
            .is_none_or(|at| at.elapsed() >= PROVISIONAL_EVERY);
        if live.wanted()
            && due
            && let Some(rows) = self.plan.provisional()?
        {
            live.set_provisional(vec![rows]);
            self.provisional_at = Some(Instant::now());
        }
        Ok(())
    }

    /// Waits for the commit in flight, if any, and takes the sinks back.
    async fn settle(&mut self) -> Result<&mut Sinks> {
        if let Some(in_flight) = self.in_flight.take() {
            let sinks = in_flight.await.map_err(|err| {
                let pipeline = self.run.pipeline.pipeline.name.clone();
                if err.is_panic() {
                    PipelineError::Panicked {
                        pipeline,
                        message: panic_message(err.into_panic()),
                    }
                } else {
                    PipelineError::Sink {
                        what: format!("pipeline {pipeline}"),
                        cause: format!("the commit task failed: {err}"),
                    }
                }
            })??;
            self.sinks = Some(sinks);
        }
        Ok(self.sinks.as_mut().expect("the sinks are back"))
    }

    /// Whether anything waits for a commit (retried rows that went through
    /// are pending without new offsets).
    fn has_pending(&self) -> bool {
        !self.pending.positions.is_empty()
            || !self.pending.rows.is_empty()
            || !self.pending.rejected.is_empty()
            || !self.pending.retried_rejected.is_empty()
            || !self.pending.retried_late.is_empty()
            || !self.pending.late_second.is_empty()
            || !self.pending.side_rejected.is_empty()
    }

    /// The pipeline's watermark: the source's, held back by the versions
    /// input (whose rows it waits for), unless that side is idle.
    /// It never goes back.
    fn current_watermark(&mut self) -> Option<i64> {
        let now = Instant::now();
        let source = match self.clock {
            // The clock may step back (a time sync); the watermark never does.
            Some(clock) => Some(
                clock
                    .watermark_at(now_ms())
                    .max(self.committed_watermark.unwrap_or(i64::MIN)),
            ),
            None => self
                .watermark
                .as_mut()
                .and_then(|(_, tracker)| tracker.current(now)),
        };
        let Some(feed) = &self.versions else {
            return source;
        };
        // Before the versioned side has a watermark, nothing is joined and nothing closes.
        let horizon = feed.table().horizon();
        let combined = source
            .filter(|_| horizon != i64::MIN)
            .map(|w| w.min(horizon));
        let current = match (combined, self.joined_watermark) {
            (Some(w), Some(before)) => Some(w.max(before)),
            (None, before) => before,
            (w, None) => w,
        };
        self.joined_watermark = current;
        current
    }

    /// Whether the watermark has moved since the last commit, in a way that
    /// may close something: on the clock, only while windows may be open (an
    /// idle pipeline whose windows all closed does not commit every tick).
    fn watermark_moved(&self, current: Option<i64>) -> bool {
        let moved = self.stateful.is_some()
            && (current != self.committed_watermark
                || self.idleness(Instant::now()) != self.committed_idleness);
        match &self.clock {
            Some(clock) => {
                moved
                    && self
                        .committed_watermark
                        .is_none_or(|committed| clock.may_hold_windows_after(committed))
            }
            None => moved,
        }
    }

    /// Whether the source and the second stream have each delivered nothing
    /// for the idle timeout.
    fn idleness(&self, now: Instant) -> (bool, bool) {
        let idle = |watermark: Option<&(String, WatermarkTracker)>| {
            watermark.is_some_and(|(_, tracker)| tracker.all_idle(now))
        };
        (
            idle(self.watermark.as_ref()),
            idle(
                self.seconds
                    .first()
                    .and_then(|second| second.watermark.as_ref()),
            ),
        )
    }

    /// Whether rows read wait for the clock to pass them, when an operator
    /// emits them at the first commit after (an OVER aggregation ordered by
    /// processing time): a run to the end of its input waits that moment.
    fn clock_holds_rows(&self) -> bool {
        self.plan.runs_on_processing_time()
            && self.clock.is_some_and(|clock| {
                self.committed_watermark
                    .is_none_or(|w| clock.may_hold_windows_after(w))
            })
    }

    /// Whether rows wait for the versions input's watermark.
    fn holds_rows_back(&self) -> bool {
        self.stateful
            .as_ref()
            .is_some_and(|stateful| !stateful.waiting.is_empty())
    }

    /// Runs the SELECT again on the waiting rows whose time
    /// the versioned side's watermark (or its idleness) has passed.
    async fn release_waiting(&mut self, stop: &watch::Receiver<bool>) -> Result<()> {
        let (Some(feed), Some(stateful)) = (&mut self.versions, &mut self.stateful) else {
            return Ok(());
        };
        feed.advance(Instant::now());
        let horizon = feed.table().horizon();
        for due in stateful.waiting.take_due(horizon)? {
            if let Err(err) = self.rerun(&due, true, stop).await {
                // Stopped while a lookup waited for its database: the rows wait on, in
                // state, due at once (the horizon has passed them and never goes back).
                let all: Vec<usize> = (0..due.rows.num_rows()).collect();
                if let Some(stateful) = self.stateful.as_mut() {
                    stateful
                        .waiting
                        .park(&due.rows, &due.coordinates, None, &all, 0, |_| horizon)?;
                }
                return Err(err);
            }
        }
        let waiting = self.stateful.as_ref().map_or(0, |s| s.waiting.len());
        self.plan.note_waiting(waiting);
        Ok(())
    }

    /// Runs the SELECT again on rows that waited in state (for a retry, or for
    /// a temporal join's versions).
    async fn rerun(
        &mut self,
        due: &DueRows,
        held_back: bool,
        stop: &watch::Receiver<bool>,
    ) -> Result<()> {
        let pass = Pass {
            attempt: due.attempt,
            stop: stop.clone(),
            from_state: held_back,
        };
        self.run_rows(
            &due.rows,
            &due.coordinates,
            due.kinds.as_deref(),
            &pass,
            Input::SOURCE,
        )
        .await
    }

    /// Sets rows aside until the versioned side's watermark passes their
    /// event time in `time_column`.
    fn hold_back(
        &mut self,
        rows: &RecordBatch,
        coordinates: &[(i32, i64)],
        origins: &[usize],
        time_column: &str,
    ) -> Result<()> {
        let times = crate::window::event_times(rows, time_column)?;
        let stateful = self
            .stateful
            .as_mut()
            .expect("a plan whose rows wait has state");
        stateful
            .waiting
            .park(rows, coordinates, None, origins, 0, |origin| {
                times.value(origin)
            })
    }

    /// Applies records of the versions input's changelog to its versions.
    fn apply_versions(&mut self, records: Option<Vec<SourceRecord>>) -> Result<()> {
        let (Some(feed), Some(records)) = (&mut self.versions, records) else {
            return Ok(());
        };
        let applied = feed.apply(&records, Instant::now())?;
        let stream = feed.stream().to_string();
        position::advance(&mut self.pending.positions, &stream, applied.positions);
        self.pending.side_rejected.extend(
            applied
                .rejected
                .into_iter()
                .map(|rejected| (stream.clone(), rejected)),
        );
        Ok(())
    }

    /// Runs a batch of the second stream at `at` through the plan.
    async fn process_second(
        &mut self,
        at: usize,
        mut batch: SourceBatch,
        stop: &watch::Receiver<bool>,
    ) -> Result<()> {
        let pass = Pass {
            attempt: 0,
            stop: stop.clone(),
            from_state: false,
        };
        self.originals.keep(&mut batch);
        let outcome = self
            .run_rows(
                &batch.rows,
                &batch.coordinates,
                batch.kinds.as_deref(),
                &pass,
                Input(at + 1),
            )
            .await;
        self.originals.clear();
        outcome?;
        let right = &mut self.seconds[at];
        if let Some((column, tracker)) = &mut right.watermark {
            let now = Instant::now();
            for (partition, max_event) in max_event_times(&batch.rows, &batch.coordinates, column)?
            {
                tracker.observe(partition, max_event, now);
            }
        }
        let stream = right.reader.stream().to_string();
        position::advance(&mut self.pending.positions, &stream, batch.positions);
        self.run
            .stats
            .records_in
            .fetch_add(batch.records, Ordering::Relaxed);
        self.pending.side_rejected.extend(
            batch
                .rejected
                .into_iter()
                .map(|rejected| (stream.clone(), rejected)),
        );
        Ok(())
    }

    /// When the next row set aside to run again after a delay is due, if any.
    fn next_retry_ms(&self) -> Option<i64> {
        self.stateful.as_ref()?.parked.next_due_ms()
    }

    /// Looks up again the rows set aside whose time has come.
    async fn retry_due(&mut self, stop: &watch::Receiver<bool>) -> Result<()> {
        let Some(stateful) = &mut self.stateful else {
            return Ok(());
        };
        let mut groups = stateful.parked.take_due(now_ms())?.into_iter();
        while let Some(due) = groups.next() {
            if let Err(err) = self.rerun(&due, false, stop).await {
                // Stopped while the database was down: these rows wait on, in state.
                let parked = &mut self.stateful.as_mut().expect("checked").parked;
                for rest in std::iter::once(due).chain(groups) {
                    let all: Vec<usize> = (0..rest.rows.num_rows()).collect();
                    parked.park(
                        &rest.rows,
                        &rest.coordinates,
                        rest.kinds.as_deref(),
                        &all,
                        rest.attempt,
                        |_| now_ms(),
                    )?;
                }
                return Err(err);
            }
        }
        Ok(())
    }

    /// Folds a source batch into what is pending. Nothing is pending of it
    /// unless all of it went through: a stop while waiting for a lookup's
    /// database leaves the batch to be read again.
    async fn process(
        &mut self,
        mut batch: SourceBatch,
        stop: &watch::Receiver<bool>,
    ) -> Result<()> {
        self.originals.keep(&mut batch);
        let outcome = self.run_batch(batch, stop).await;
        self.originals.clear();
        outcome
    }

    async fn run_batch(&mut self, batch: SourceBatch, stop: &watch::Receiver<bool>) -> Result<()> {
        let batch = self.set_aside_future_rows(batch)?;
        let pass = Pass {
            attempt: 0,
            stop: stop.clone(),
            from_state: false,
        };
        self.run_rows(
            &batch.rows,
            &batch.coordinates,
            batch.kinds.as_deref(),
            &pass,
            Input::SOURCE,
        )
        .await?;
        if let Some((column, tracker)) = &mut self.watermark {
            let now = Instant::now();
            for (partition, max_event) in max_event_times(&batch.rows, &batch.coordinates, column)?
            {
                tracker.observe(partition, max_event, now);
            }
            // The upstream pipeline's watermark goes on, when it bounds this column.
            if let Some(carried) = &batch.carried
                && carried.columns.contains(column)
            {
                tracker.carry(carried.ms);
            }
        }
        if self.reader.carries_messages() {
            let reasons: Vec<&str> = batch.rejected.iter().map(|r| r.error.as_str()).collect();
            self.checking.note_drift(batch.drift.as_deref(), &reasons);
        }
        let stream = self.reader.stream().to_string();
        self.run
            .stats
            .records_in
            .fetch_add(batch.records, Ordering::Relaxed);
        position::advance(&mut self.pending.positions, &stream, batch.positions);
        self.pending.rejected.extend(batch.rejected);
        Ok(())
    }

    /// Sends rows whose event time is further ahead of the wall clock than the
    /// source allows to quarantine, before they can move the watermark.
    fn set_aside_future_rows(&mut self, mut batch: SourceBatch) -> Result<SourceBatch> {
        let (Some(skew), Some((column, _))) = (self.max_future_skew_ms, &self.watermark) else {
            return Ok(batch);
        };
        let times = crate::window::event_times(&batch.rows, column)?;
        let horizon = now_ms().saturating_add(skew);
        let ahead: Vec<bool> = (0..batch.rows.num_rows())
            .map(|row| times.is_valid(row) && times.value(row) > horizon)
            .collect();
        if !ahead.contains(&true) {
            return Ok(batch);
        }
        for row in (0..ahead.len()).filter(|&row| ahead[row]) {
            let at = humantime::format_rfc3339_millis(
                std::time::UNIX_EPOCH + Duration::from_millis(times.value(row).max(0) as u64),
            );
            self.reject(
                &batch.rows,
                &batch.coordinates,
                row,
                format!(
                    "its event time {at} is more than {} ahead of the wall clock ('scan.watermark.max-future-skew'); it would have moved the watermark past every other row",
                    humantime::format_duration(Duration::from_millis(skew.max(0) as u64))
                ),
                false,
                Input::SOURCE,
            );
        }
        let keep: arrow::array::BooleanArray = ahead.iter().map(|&a| Some(!a)).collect();
        batch.rows = arrow::compute::filter_record_batch(&batch.rows, &keep)?;
        let mut flags = ahead.iter();
        batch
            .coordinates
            .retain(|_| !*flags.next().expect("one flag per row"));
        if let Some(kinds) = &mut batch.kinds {
            let mut flags = ahead.iter();
            kinds.retain(|_| !*flags.next().expect("one flag per row"));
        }
        Ok(batch)
    }

    /// Runs the SELECT on decoded rows (read now, or set aside earlier).
    async fn run_rows(
        &mut self,
        rows: &RecordBatch,
        coordinates: &[(i32, i64)],
        kinds: Option<&[RowKind]>,
        pass: &Pass,
        input: Input,
    ) -> Result<()> {
        // Rows read now (or run again) fall into windows of the clock from now on.
        if let Some(clock) = &mut self.clock
            && rows.num_rows() > 0
        {
            clock.read_rows_at(now_ms());
        }
        let without_time = self.plan.rows_without_time(rows, input)?;
        let retried = pass.replayed();
        let mut leaving = without_time.clone();
        // Rows the source's rules send to quarantine, once the SELECT has run on the rest.
        let mut failing_source_rules = Vec::new();
        if input.is_source() && self.checking.checks_source() {
            let verdict = self.checking.check_source(rows).await?;
            if let Some(reason) = verdict.stop {
                let results = self.checking.row_results(now_ms());
                return Err(self.checking.stop(self.run, results, reason));
            }
            for failed in verdict.quarantine {
                let row = failed.row as usize;
                if !leaving.contains(&row) {
                    leaving.push(row);
                    failing_source_rules.push(failed);
                }
            }
        }
        let keep: Vec<usize> = if leaving.is_empty() {
            (0..rows.num_rows()).collect()
        } else {
            (0..rows.num_rows())
                .filter(|r| !leaving.contains(r))
                .collect()
        };
        // Nothing of the rows is pending until the SELECT has run on all of them:
        // a stop while a lookup waits for its database leaves them to be read again.
        let outcome = self.transform(rows, &keep, kinds, pass, input).await;
        // The rows' processing time (a PROCTIME() the SELECT read) may be a moment later.
        if let Some(clock) = &mut self.clock
            && rows.num_rows() > 0
        {
            clock.read_rows_at(now_ms());
        }
        if matches!(outcome, Err(PipelineError::Interrupted)) {
            return Err(PipelineError::Interrupted);
        }
        for &row in &without_time {
            self.reject(
                rows,
                coordinates,
                row,
                "the window's event-time column is NULL, so the row belongs to no window"
                    .to_string(),
                retried,
                input,
            );
        }
        for failed in failing_source_rules {
            self.reject(
                rows,
                coordinates,
                failed.row as usize,
                failed.reason,
                retried,
                input,
            );
            self.label_last_rejected(input, retried, failed.rule);
        }
        match outcome {
            Ok(output) => {
                let output = self
                    .check_output(rows, coordinates, output, retried, input)
                    .await?;
                self.absorb(rows, coordinates, kinds, output, pass, input)
            }
            // Find the rows the SELECT fails on; they go to quarantine with the reason.
            Err(_) => {
                for row in keep {
                    match self.transform(rows, &[row], kinds, pass, input).await {
                        Ok(output) => {
                            let output = self
                                .check_output(rows, coordinates, output, retried, input)
                                .await?;
                            self.absorb(rows, coordinates, kinds, output, pass, input)?
                        }
                        // Some rows of the batch are pending already: stopping cleanly now would
                        // commit them without the batch's offsets. Fail; the last commit stands.
                        Err(PipelineError::Interrupted) => {
                            return Err(PipelineError::Source {
                                what: format!("pipeline {}", self.run.pipeline.pipeline.name),
                                cause: "stopped half-way through a batch while a lookup waited for its database".to_string(),
                            });
                        }
                        // A database that refuses (a missing table, access denied) is
                        // not the row's fault: the pipeline stops with the cause.
                        Err(err) if !err.is_about_rows() => return Err(err),
                        Err(err) => {
                            // A row that reached a join of two streams still waits
                            // there for the other stream's rows.
                            let single = rows.slice(row, 1);
                            let kind = kinds.map(|kinds| &kinds[row..=row]);
                            if let Err(failed) =
                                self.plan.hold_only(&single, kind, pass, input).await
                            {
                                tracing::debug!(%failed, "the row failed before the join could keep it");
                            }
                            self.reject(
                                rows,
                                coordinates,
                                row,
                                format!("the pipeline's SELECT failed on this record: {err}"),
                                retried,
                                input,
                            )
                        }
                    }
                }
                // Each row read the clock again as it ran alone.
                if let Some(clock) = &mut self.clock {
                    clock.read_rows_at(now_ms());
                }
                Ok(())
            }
        }
    }

    /// Runs the SELECT (up to an operator that holds rows) on some rows of a batch.
    async fn transform(
        &self,
        rows: &RecordBatch,
        keep: &[usize],
        kinds: Option<&[RowKind]>,
        pass: &Pass,
        input: Input,
    ) -> Result<Transformed> {
        // The whole batch (the usual case) runs as it is: its positions are the rows'.
        let whole = keep.len() == rows.num_rows();
        let (taken, kept_kinds) = if whole {
            (rows.clone(), kinds.map(std::borrow::Cow::Borrowed))
        } else {
            let indices =
                arrow::array::UInt32Array::from_iter_values(keep.iter().map(|&r| r as u32));
            (
                arrow::compute::take_record_batch(rows, &indices)?,
                kinds.map(|kinds| keep.iter().map(|&r| kinds[r]).collect()),
            )
        };
        let ctx = BatchContext {
            source: &taken,
            pass,
            // The plan tells each operator which of its inputs the rows reach it by.
            side: Side::Left,
            kinds: kept_kinds.as_deref(),
            watermark: self.committed_watermark,
        };
        let mut prepared = self.plan.prepare(&ctx, input).await?;
        if !whole {
            let to_rows = |origins: &mut Vec<usize>| {
                for origin in origins {
                    *origin = keep[*origin];
                }
            };
            to_rows(&mut prepared.traced.origins);
            for missed in &mut prepared.missed {
                to_rows(&mut missed.origins);
            }
            let keep: Arc<[usize]> = keep.into();
            prepared.writes = prepared
                .writes
                .into_iter()
                .map(|write| write.map_origins(keep.clone()))
                .collect();
        }
        let holds = self.plan.holds_rows();
        let traced = match holds {
            true => prepared.traced,
            false => self.plan.finish_traced(prepared.traced)?,
        };
        Ok(Transformed {
            traced,
            missed: prepared.missed,
            holds,
            writes: prepared.writes,
        })
    }

    fn absorb(
        &mut self,
        rows: &RecordBatch,
        coordinates: &[(i32, i64)],
        kinds: Option<&[RowKind]>,
        output: Transformed,
        pass: &Pass,
        input: Input,
    ) -> Result<()> {
        let attempt = pass.attempt;
        let mut set_aside = output.missed;
        for write in output.writes {
            set_aside.extend(write.apply()?);
        }
        let mut late_rows = Vec::new();
        for missed in set_aside {
            match missed.action {
                MissAction::Quarantine => {
                    for row in missed.origins {
                        self.reject(
                            rows,
                            coordinates,
                            row,
                            missed.reason.clone(),
                            pass.replayed(),
                            input,
                        );
                    }
                }
                MissAction::Wait { time_column } => {
                    self.hold_back(rows, coordinates, &missed.origins, &time_column)?
                }
                MissAction::Retry { after_ms } => {
                    let stateful = self
                        .stateful
                        .as_mut()
                        .expect("a plan that retries rows has state");
                    stateful.parked.park(
                        rows,
                        coordinates,
                        kinds,
                        &missed.origins,
                        attempt + 1,
                        |_| now_ms() + after_ms,
                    )?;
                }
                MissAction::Late => late_rows.extend(missed.origins),
            }
        }
        self.pend_late(rows, coordinates, late_rows, pass, input)?;
        if output.holds {
            // The rows are in an operator's state; what it makes of them comes at a watermark.
            return Ok(());
        }
        let traced = output.traced;
        let batch = match &traced.kinds {
            // A changelog upserts the target: an update's old image and a delete
            // remove their key; the sink keeps each key's last change.
            Some(kinds) => with_delete_marker(
                &traced.batch,
                kinds.iter().map(|kind| kind.is_retraction()).collect(),
            )?,
            None => traced.batch,
        };
        self.pending.rows.push(batch);
        Ok(())
    }

    /// Sends rows an operator found late to the late table, with the watermark they met.
    fn pend_late(
        &mut self,
        rows: &RecordBatch,
        coordinates: &[(i32, i64)],
        mut late_rows: Vec<usize>,
        pass: &Pass,
        input: Input,
    ) -> Result<()> {
        if late_rows.is_empty() {
            return Ok(());
        }
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
        let stateful = self
            .stateful
            .as_ref()
            .expect("a plan that holds rows has a late table");
        let (late_schema, stream) = match input.0 {
            0 => (stateful.late_schema.as_ref(), self.reader.stream()),
            at => (
                stateful.late_second_schemas.get(at - 1),
                self.seconds[at - 1].reader.stream(),
            ),
        };
        let late_schema = late_schema.expect("a stream whose rows can be late has a late table");
        let batch = late::rows(
            late_schema,
            &self.run.pipeline.pipeline.name,
            stream,
            rows,
            &late_rows,
            &arrivals,
            now_ms(),
        )?;
        if !input.is_source() {
            self.pending.late_second.push((input.0 - 1, batch));
        } else if pass.replayed() {
            self.pending.retried_late.push(batch);
        } else {
            self.pending.late.push(batch);
        }
        Ok(())
    }

    /// Runs the target's row rules on the SELECT's output (before an
    /// aggregation, the rows are checked when its windows are emitted).
    /// Failing rows leave; their source records go to quarantine.
    async fn check_output(
        &mut self,
        rows: &RecordBatch,
        coordinates: &[(i32, i64)],
        output: Transformed,
        retried: bool,
        input: Input,
    ) -> Result<Transformed> {
        if output.holds || !self.checking.checks_target_rows() {
            return Ok(output);
        }
        let traced = &output.traced;
        // A changelog's old images and deletes remove a key: rules judge what is written.
        let judged: Vec<u32> = (0..traced.origins.len() as u32)
            .filter(|&row| !traced.retracts(row as usize))
            .collect();
        let verdict = if judged.len() == traced.origins.len() {
            self.checking.check_target(&output.traced.batch).await?
        } else {
            let indices = arrow::array::UInt32Array::from(judged.clone());
            let written = arrow::compute::take_record_batch(&output.traced.batch, &indices)?;
            let mut verdict = self.checking.check_target(&written).await?;
            for failed in &mut verdict.quarantine {
                failed.row = judged[failed.row as usize];
            }
            verdict
        };
        if let Some(reason) = verdict.stop {
            let results = self.checking.row_results(now_ms());
            return Err(self.checking.stop(self.run, results, reason));
        }
        if verdict.quarantine.is_empty() {
            return Ok(output);
        }
        // A record whose output fails goes to quarantine whole: none of its rows are
        // committed, so a replay of it commits each of them once.
        let mut rejected_origins = std::collections::BTreeSet::new();
        let failing: std::collections::BTreeSet<u32> =
            verdict.quarantine.iter().map(|failed| failed.row).collect();
        let origins = &output.traced.origins;
        for failed in verdict.quarantine {
            let origin = origins[failed.row as usize];
            if rejected_origins.insert(origin) {
                self.reject(rows, coordinates, origin, failed.reason, retried, input);
                self.label_last_rejected(input, retried, failed.rule);
            }
        }
        let leaving: Vec<bool> = origins
            .iter()
            .map(|origin| rejected_origins.contains(origin))
            .collect();
        // Rows that passed but leave with their record: their keys are not the table's.
        let passed_but_leaving: Vec<u32> = (0..leaving.len() as u32)
            .filter(|row| leaving[*row as usize] && !failing.contains(row))
            .collect();
        if !passed_but_leaving.is_empty() {
            self.checking
                .forget_target_keys(&output.traced.batch, &passed_but_leaving)?;
        }
        let staying: arrow::array::BooleanArray =
            leaving.iter().map(|&leaves| Some(!leaves)).collect();
        Ok(Transformed {
            traced: output.traced.filter(&staying)?,
            ..output
        })
    }

    /// Names the quality rule of the row just sent to quarantine.
    fn label_last_rejected(&mut self, input: Input, retried: bool, rule: String) {
        let last = match (input.is_source(), retried) {
            (false, _) => self.pending.side_rejected.last_mut().map(|(_, r)| r),
            (true, true) => self.pending.retried_rejected.last_mut(),
            (true, false) => self.pending.rejected.last_mut(),
        };
        if let Some(last) = last {
            last.rule = Some(rule);
        }
    }

    /// Runs the target's row rules on rows an aggregation emitted; failing
    /// rows go to quarantine as they are (they come from many records).
    async fn check_emitted(&mut self, emitted: RecordBatch) -> Result<RecordBatch> {
        let verdict = self.checking.check_target(&emitted).await?;
        if let Some(reason) = verdict.stop {
            let results = self.checking.row_results(now_ms());
            return Err(self.checking.stop(self.run, results, reason));
        }
        if verdict.quarantine.is_empty() {
            return Ok(emitted);
        }
        let mut staying = vec![true; emitted.num_rows()];
        for failed in verdict.quarantine {
            staying[failed.row as usize] = false;
            self.reject_emitted(
                &emitted,
                failed.row as usize,
                failed.reason,
                Some(failed.rule),
            );
        }
        let mask: arrow::array::BooleanArray = staying.into_iter().map(Some).collect();
        Ok(arrow::compute::filter_record_batch(&emitted, &mask)?)
    }

    /// Sends a row that state emitted (it has no record of its own) to
    /// quarantine, as JSON, with the reason and the rule it failed, if one.
    fn reject_emitted(
        &mut self,
        rows: &RecordBatch,
        row: usize,
        reason: String,
        rule: Option<String>,
    ) {
        self.pending.emitted_rejected.push(Rejected {
            record: SourceRecord {
                partition: -1,
                offset: -1,
                timestamp_ms: None,
                key: None,
                payload: Some(row_as_json(rows, row)),
            },
            error: reason,
            rule,
            event_time_ms: None,
        });
    }

    /// Sends one decoded row to quarantine, as JSON, with the reason.
    fn reject(
        &mut self,
        rows: &RecordBatch,
        coordinates: &[(i32, i64)],
        row: usize,
        reason: String,
        retried: bool,
        input: Input,
    ) {
        let (partition, offset) = coordinates[row];
        // The record as read; a row without one (set aside in state, or of a
        // source of rows) goes as JSON.
        let record = self
            .originals
            .get((partition, offset))
            .cloned()
            .unwrap_or_else(|| SourceRecord {
                partition,
                offset,
                timestamp_ms: None,
                key: None,
                payload: Some(row_as_json(rows, row)),
            });
        let rejected = Rejected {
            record,
            error: reason,
            rule: None,
            event_time_ms: match (input.is_source(), &self.watermark) {
                (true, Some((column, _))) => event_time_ms(rows, column, row),
                _ => None,
            },
        };
        match (input.0, retried) {
            (0, true) => self.pending.retried_rejected.push(rejected),
            (0, false) => self.pending.rejected.push(rejected),
            (at, _) => {
                let stream = self.seconds[at - 1].reader.stream().to_string();
                self.pending.side_rejected.push((stream, rejected));
            }
        }
    }

    /// Rows the state emitted: through the steps after it, the target's row
    /// rules, then pending for the commit.
    async fn pend_emitted(&mut self, batch: RecordBatch) -> Result<()> {
        // The rows the steps after the state, or the target's columns, fail
        // on go to quarantine with the reason.
        let (finished, refused) = self.finish_emitted(&batch)?;
        for (row, err) in refused {
            let reason = format!("a row the pipeline's state emitted: {err}");
            self.reject_emitted(&batch, row, reason, None);
        }
        let checked = if self.checking.checks_target_rows() {
            self.check_emitted(finished).await?
        } else {
            finished
        };
        self.pending.rows.push(checked);
        Ok(())
    }

    /// Runs rows the state emitted through the steps after it into the
    /// target's columns; when rows fail, row by row: the rows that go on,
    /// and each row that fails with why.
    fn finish_emitted(
        &self,
        batch: &RecordBatch,
    ) -> Result<(RecordBatch, Vec<(usize, PipelineError)>)> {
        match self.plan.finish(batch.clone()) {
            Err(err) if err.is_about_rows() => {
                let mut finished = Vec::new();
                let mut refused = Vec::new();
                for row in 0..batch.num_rows() {
                    match self.plan.finish(batch.slice(row, 1)) {
                        Ok(rows) => finished.push(rows),
                        Err(err) if err.is_about_rows() => refused.push((row, err)),
                        Err(err) => return Err(err),
                    }
                }
                let finished =
                    arrow::compute::concat_batches(&self.plan.target_schema(), &finished)?;
                Ok((finished, refused))
            }
            finished => Ok((finished?, Vec::new())),
        }
    }

    /// Rows the state takes back (update-before rows, deletes): through the
    /// steps after it, then pending, marked as taking their row back. A row
    /// the steps or the target refuse now was refused when it was emitted
    /// (and went to quarantine then): it was never written, and taking it
    /// back takes nothing.
    fn pend_taken_back(&mut self, batch: RecordBatch) -> Result<()> {
        let (taken_back, _never_written) = self.finish_emitted(&batch)?;
        let marker = vec![true; taken_back.num_rows()];
        self.pending
            .rows
            .push(with_delete_marker(&taken_back, marker)?);
        Ok(())
    }

    /// Rows with their kinds, in order: each run of new rows as emitted, each
    /// run of rows taken back as taken back.
    async fn pend_changes(&mut self, changes: Traced) -> Result<()> {
        let rows = changes.batch.num_rows();
        let mut start = 0;
        while start < rows {
            let takes_back = changes.retracts(start);
            let end = (start..rows)
                .find(|&row| changes.retracts(row) != takes_back)
                .unwrap_or(rows);
            let run = changes.batch.slice(start, end - start);
            match takes_back {
                true => self.pend_taken_back(run)?,
                false => self.pend_emitted(run).await?,
            }
            start = end;
        }
        Ok(())
    }

    /// Advances the watermark, emits what it closed, and starts a commit of
    /// everything pending: quarantine, late rows, state checkpoint, then the
    /// target with every offset. The commit runs while the next batches are
    /// read; commits land one after the other, in order.
    async fn commit(&mut self) -> Result<()> {
        let watermark = self.current_watermark();
        let now = Instant::now();
        let idleness = self.idleness(now);
        let watermarks = Watermarks {
            pipeline: watermark,
            source: self
                .watermark
                .as_mut()
                .and_then(|(_, tracker)| tracker.current(now)),
            second: match (&self.versions, self.seconds.first_mut()) {
                (Some(feed), _) => feed.watermark(),
                (None, Some(right)) => right.tracker().and_then(|t| t.current(now)),
                (None, None) => None,
            },
            source_idle: idleness.0,
            second_idle: idleness.1,
        };
        self.committed_idleness = idleness;
        let emitted = self.plan.on_watermark(&watermarks).await?;
        // Rows taken back come before the rows that replace them.
        for batch in emitted.retracts.into_iter().filter(|b| b.num_rows() > 0) {
            self.pend_taken_back(batch)?;
        }
        for batch in emitted.upserts.into_iter().filter(|b| b.num_rows() > 0) {
            self.pend_emitted(batch).await?;
        }
        for batch in emitted.deletes.into_iter().filter(|b| b.num_rows() > 0) {
            self.pend_taken_back(batch)?;
        }
        for changes in emitted.changes {
            self.pend_changes(changes).await?;
        }
        for (rows, reason) in emitted.set_aside {
            for row in 0..rows.num_rows() {
                self.reject_emitted(&rows, row, reason.clone(), None);
            }
        }
        // Rows read from now on belong to the next commit and are judged against this watermark.
        self.committed_watermark = watermark;
        let mut checkpoint = None;
        let keyed = self.plan.keyed_operators().next().is_some();
        if keyed {
            // Sealing may put a compacted base first and drop the local copies of
            // the files it replaces: the commit in flight must have uploaded them.
            self.settle().await?;
        }
        if self.checkpoints && self.stateful.is_some() {
            let map = self.checkpoint();
            let stateful = self.stateful.as_mut().expect("checked");
            let id = stateful.next_checkpoint;
            stateful.next_checkpoint += 1;
            checkpoint = Some(PendingCheckpoint {
                id,
                map,
                keyed: super::keyed::seal(&self.plan, &self.stream_plan, id)?,
            });
        } else if keyed {
            // Nothing is checkpointed (a blackhole): the changes are not kept either.
            super::keyed::forget_changes(&self.plan)?;
        }
        let results = self
            .checking
            .results_of_commit(self.run, &self.pending.rows)?;
        let batch = CommitBatch {
            rows: std::mem::take(&mut self.pending.rows),
            rejected: std::mem::take(&mut self.pending.rejected),
            late: std::mem::take(&mut self.pending.late),
            retried_rejected: std::mem::take(&mut self.pending.retried_rejected),
            retried_late: std::mem::take(&mut self.pending.retried_late),
            late_second: std::mem::take(&mut self.pending.late_second),
            side_rejected: std::mem::take(&mut self.pending.side_rejected),
            emitted_rejected: std::mem::take(&mut self.pending.emitted_rejected),
            positions: std::mem::take(&mut self.pending.positions),
            checkpoint,
            results,
            watermark,
        };
        let ctx = CommitContext {
            pipeline: self.run.pipeline.pipeline.name.clone(),
            stream: self.reader.stream().to_string(),
            second_streams: self
                .seconds
                .iter()
                .map(|second| second.reader.stream().to_string())
                .collect(),
            stats: self.run.stats.clone(),
            results: self.run.quality.results.clone(),
            compact_every: self
                .run
                .catalog
                .project()
                .config
                .engine
                .compact_every_commits,
        };
        self.settle().await?;
        // Windows this commit emits are no longer provisional.
        let provisional = match self.run.stats.live.wanted() {
            true => self.plan.provisional()?.map(|rows| vec![rows]),
            false => None,
        };
        self.run.stats.live.commit_started(&batch.rows, provisional);
        let mut sinks = self.sinks.take().expect("settled");
        self.in_flight = Some(tokio::spawn(async move {
            sinks.commit(batch, &ctx).await.map(|_| sinks)
        }));
        Ok(())
    }
}

/// The hashes of the emitted rows the target's quarantine holds (see
/// [`super::commit::Sinks::emitted_quarantined`]).
async fn emitted_quarantined(
    target_location: &str,
    pipeline: &str,
) -> Result<std::collections::HashSet<u64>> {
    let location = format!("{}__quarantine", target_location.trim_end_matches('/'));
    let sql = format!(
        "SELECT payload FROM quarantine WHERE pipeline = '{}' AND \"partition\" = -1",
        pipeline.replace('\'', "''")
    );
    let batches = connectors::delta::query(&location, "quarantine", &sql)
        .await
        .map_err(|err| PipelineError::Sink {
            what: format!("the quarantine at {location}"),
            cause: err.to_string(),
        })?;
    let mut hashes = std::collections::HashSet::new();
    for batch in batches {
        let payloads = arrow::compute::cast(batch.column(0), &arrow::datatypes::DataType::Binary)?;
        let payloads = payloads
            .as_any()
            .downcast_ref::<arrow::array::BinaryArray>()
            .expect("cast to Binary");
        for row in 0..payloads.len() {
            if payloads.is_valid(row) {
                hashes.insert(super::commit::payload_hash(payloads.value(row)));
            }
        }
    }
    Ok(hashes)
}

/// Replays feed stateless pipelines that read a Kafka json topic: their
/// records are rows again, with nothing held in operator state.
fn refuse_replay(run: &PipelineRun, source: &TableDef, plan: &StreamPlan) -> Result<()> {
    let stateful = plan.states().next().is_some()
        || plan
            .operators
            .iter()
            .filter(|op| op.kind == crate::plan::OperatorKind::Source)
            .count()
            > 1;
    let json = registry::stream_of(source).is_ok_and(|reads| reads.appends_records);
    if stateful || !json {
        return Err(PipelineError::Invalid {
            location: run.pipeline.pipeline.target.location.clone(),
            message: format!(
                "pipeline {} cannot replay its quarantine: it {}",
                run.pipeline.pipeline.name,
                if json {
                    "keeps operator state (an aggregation, LAG, a lookup retry, an event-time join or a join of streams) or reads several streams, which replayed rows would disturb"
                } else {
                    "does not read a Kafka json topic"
                }
            ),
            hint: Some(
                "replay works for stateless pipelines (filters, projections, lookup joins) that read Kafka json topics, where DWD pipelines quarantine rows; re-publish the payloads to the topic for others".to_string(),
            ),
        });
    }
    Ok(())
}

/// A row's event time in ms since the epoch, when its column holds a timestamp.
fn event_time_ms(rows: &RecordBatch, column: &str, row: usize) -> Option<i64> {
    let millis = crate::window::event_times(&rows.slice(row, 1), column).ok()?;
    millis.is_valid(0).then(|| millis.value(0))
}

/// The SELECT's output for some rows: target rows, each with the input row it
/// came from, unless an operator holds the rows (`holds`); and the rows
/// operators set aside.
struct Transformed {
    traced: Traced,
    missed: Vec<Missed>,
    holds: bool,
    /// The operators' state writes, applied once the rows are absorbed.
    writes: Vec<StateWrite>,
}

/// Marks rows that delete their key (the upsert sink reads the marker).
fn with_delete_marker(batch: &RecordBatch, deletes: Vec<bool>) -> Result<RecordBatch> {
    crate::batch::with_column(
        batch,
        arrow::datatypes::Field::new(DELETE_MARKER, arrow::datatypes::DataType::Boolean, false),
        Arc::new(arrow::array::BooleanArray::from(deletes)),
    )
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

/// Starts reading a stream of the plan beside the source where the target's last commit left it.
async fn open_second(
    run: &PipelineRun,
    table: &strata_catalog::TableName,
    options: &SourceOptions<'_>,
    target: &mut Target,
) -> Result<SecondStream> {
    let def = run
        .pipeline
        .streams()
        .find(|def| &def.name == table)
        .expect("a plan's second streams are among the pipeline's");
    let (reader, partitions) = registry::connector(def)
        .open_source(def, options, target)
        .await?;
    let watermark = def.watermark.as_ref().map(|watermark| {
        let tracker = WatermarkTracker::new(
            &partitions,
            watermark.delay_ms,
            Duration::from_millis(options.project.config.engine.idle_timeout_ms),
            Instant::now(),
        );
        (watermark.column.clone(), tracker)
    });
    Ok(SecondStream {
        reader,
        partitions,
        watermark,
    })
}
