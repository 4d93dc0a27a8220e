//! One running pipeline: read a batch, decode, run the SELECT (and the
//! aggregation), and start a commit every interval while reading on.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use arrow::array::Array;
use arrow::record_batch::RecordBatch;
use strata_catalog::connectors::{self};
use strata_catalog::{KafkaFormat, TableDef, TableKind};
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
use crate::state::{ByteReader, ByteWriter};
use crate::transform::{CompiledPlan, Traced};
use crate::validate::is_changelog;
use crate::watermark::WatermarkTracker;

use super::commit::{CommitBatch, CommitContext, Sinks, Target};
use super::{PipelineRun, RunMode, now_ms};

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

const CHECKPOINT_MAGIC: &[u8] = b"STRATA-STATE-1";

/// One running pipeline.
pub(super) struct Task<'a> {
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
    pub(super) async fn open(
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

    pub(super) async fn run(&mut self, mut stop: watch::Receiver<bool>) -> Result<()> {
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
