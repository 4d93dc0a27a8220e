//! OVER aggregations ordered by event time (or by processing time, read into
//! a column: see [`arrival`]), as Flink runs them:
//! `SUM(x) OVER (PARTITION BY k ORDER BY rowtime ROWS BETWEEN 2 PRECEDING AND CURRENT ROW)`,
//! `RANGE BETWEEN INTERVAL '1' HOUR PRECEDING AND CURRENT ROW`, or from
//! `UNBOUNDED PRECEDING`. Every row comes out once, with the aggregates of its
//! frame, when the watermark has passed its time (so that no earlier row of
//! its partition can still come).
//!
//! ```text
//!   row (k, t) ──▶ held (crate::held), unless late: t not after k's last emitted row (bounded
//!                  frames), or not past the watermark (unbounded), as Flink's functions judge
//!   watermark W ──▶ held rows with t ≤ W, per key in time order (ties in arrival order),
//!                   each with its frame's aggregates:
//!                     ROWS n      the n rows before it and itself
//!                     RANGE d     the rows of [t − d, t], its peers (rows of time t) included
//!                     UNBOUNDED   every row before it (RANGE: and its peers)
//!                 ──▶ the rows a later frame reaches stay (bounded frames), or each key's
//!                     running aggregates (unbounded)
//! ```
//!
//! COUNT, SUM and AVG slide (a row leaving the frame is taken back out);
//! MIN, MAX and the distinct counts fold their frame afresh for each row.

pub(crate) mod arrival;
mod planner;

pub use planner::OverPlanner;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use arrow::array::{ArrayRef, UInt32Array};
use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use arrow::row::{RowConverter, Rows, SortField};
use datafusion::physical_expr::PhysicalExpr;

use crate::aggregate::accumulator::{Acc, AggregateCall, Input};
use crate::error::Result;
use crate::held::{HeldRows, decode_batches, encode_batches};
use crate::keyed::Expiry;
use crate::operator::{
    BatchContext, Changelog, Described, Emitted, InputStream, KeepsState, Operator, OperatorKind,
    Processed, StateInfo, Traced, Watermarks,
};
use crate::state::{ByteReader, ByteWriter};

/// Which rows before a row its aggregates cover.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Frame {
    /// `ROWS BETWEEN n PRECEDING AND CURRENT ROW`.
    Rows(u64),
    /// `RANGE BETWEEN INTERVAL … PRECEDING AND CURRENT ROW`, in milliseconds.
    Range(i64),
    /// `… UNBOUNDED PRECEDING AND CURRENT ROW`; `peers`: RANGE, where rows of
    /// equal time share their result.
    Unbounded { peers: bool },
}

impl std::fmt::Display for Frame {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Frame::Rows(n) => write!(f, "ROWS BETWEEN {n} PRECEDING AND CURRENT ROW"),
            Frame::Range(ms) => write!(
                f,
                "RANGE BETWEEN {} PRECEDING AND CURRENT ROW",
                humantime::format_duration(std::time::Duration::from_millis(*ms as u64))
            ),
            Frame::Unbounded { peers: true } => {
                write!(f, "RANGE BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW")
            }
            Frame::Unbounded { peers: false } => {
                write!(f, "ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW")
            }
        }
    }
}

/// The rows an OVER aggregation holds.
#[derive(Debug)]
struct OverState {
    /// Rows not emitted yet.
    held: HeldRows,
    /// Emitted rows a later row's bounded frame reaches.
    history: Vec<RecordBatch>,
    /// Each key's running aggregates, for unbounded frames.
    running: HashMap<Box<[u8]>, Vec<Acc>>,
    /// Each key's latest emitted time, for bounded frames: a later row of the
    /// key is taken even behind the watermark, an earlier one is late (as
    /// Flink's bounded OVER functions do).
    last_emitted: HashMap<Box<[u8]>, i64>,
    /// Under a state TTL (unbounded frames), when a row of each key last
    /// came or was emitted (ms since the epoch): a key idle for the TTL is
    /// forgotten at a commit.
    touched: HashMap<Box<[u8]>, i64>,
}

/// An OVER aggregation of a stream by its event time (or the time each row was read).
#[derive(Debug)]
pub struct OverAggregate {
    partition: Vec<Arc<dyn PhysicalExpr>>,
    key_converter: RowConverter,
    frame: Frame,
    calls: Vec<AggregateCall>,
    /// The rows it takes in.
    input: SchemaRef,
    /// Its rows: the input's columns, then one per aggregate.
    output: SchemaRef,
    state: Mutex<OverState>,
    /// When a key is forgotten (`SET 'table.exec.state.ttl'`).
    expiry: Expiry,
    /// Ordered by processing time: its time column holds the moment each row
    /// was read ([`arrival`]), and the pipeline's clock emits the rows.
    processing_time: bool,
}

/// One emission's rows, history first, each with its key and time.
struct Emission {
    rows: RecordBatch,
    keys: Rows,
    times: Vec<i64>,
    /// Rows before this index were emitted before; the others are due now.
    history: usize,
    inputs: Vec<Input>,
}

impl OverAggregate {
    pub fn new(
        partition: Vec<(Arc<dyn PhysicalExpr>, arrow::datatypes::DataType)>,
        time_column: String,
        frame: Frame,
        calls: Vec<AggregateCall>,
        input: SchemaRef,
        output: SchemaRef,
    ) -> Result<Self> {
        // Without PARTITION BY, every row is of one partition: a constant key.
        let key_types = match partition.is_empty() {
            true => vec![arrow::datatypes::DataType::Boolean],
            false => partition.iter().map(|(_, t)| t.clone()).collect(),
        };
        let key_converter = RowConverter::new(key_types.into_iter().map(SortField::new).collect())?;
        Ok(Self {
            partition: partition.into_iter().map(|(expr, _)| expr).collect(),
            key_converter,
            frame,
            calls,
            state: Mutex::new(OverState {
                held: HeldRows::new(time_column, input.clone()),
                history: Vec::new(),
                running: HashMap::new(),
                last_emitted: HashMap::new(),
                touched: HashMap::new(),
            }),
            input,
            output,
            expiry: Expiry::default(),
            processing_time: false,
        })
    }

    /// The aggregation ordered by processing time, when `processing` says so.
    pub fn on_processing_time(mut self, processing: bool) -> Self {
        self.processing_time = processing;
        self
    }

    /// The aggregation over an unbounded frame, forgetting a key's running
    /// aggregates as `expiry` says (after `SET 'table.exec.state.ttl'`), as
    /// Flink's OVER functions clean their state up. A bounded frame keeps the
    /// rows later frames reach for good yet, and refuses the TTL.
    pub fn expiring(mut self, expiry: Expiry) -> Self {
        if matches!(self.frame, Frame::Unbounded { .. }) {
            self.expiry = expiry;
        }
        self
    }

    /// Forgets the keys none of whose rows came or was emitted for the TTL.
    fn forget_idle_keys(&self) {
        if self.expiry.ttl_ms().is_none() {
            return;
        }
        let now = self.expiry.now();
        let mut state = self.state();
        let idle: Vec<Box<[u8]>> = state
            .touched
            .iter()
            .filter(|(_, touched)| self.expiry.expired(**touched, now))
            .map(|(key, _)| key.clone())
            .collect();
        for key in idle {
            state.touched.remove(&key);
            state.running.remove(&key);
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, OverState> {
        self.state.lock().expect("not poisoned")
    }

    /// The aggregates, PARTITION BY and frame, as SQL reads them.
    fn describe_window(&self) -> String {
        let calls: Vec<String> = self.calls.iter().map(AggregateCall::describe).collect();
        let partition: Vec<String> = self.partition.iter().map(|e| e.to_string()).collect();
        let order = match self.processing_time {
            true => "PROCTIME()".to_string(),
            false => self.state().held.time_column().to_string(),
        };
        format!(
            "{} OVER (PARTITION BY {} ORDER BY {order} {})",
            calls.join(", "),
            partition.join(", "),
            self.frame
        )
    }

    /// The partition key of each row of `rows`.
    fn keys_of(&self, rows: &RecordBatch) -> Result<Rows> {
        let key_columns: Vec<ArrayRef> = match self.partition.is_empty() {
            true => vec![Arc::new(arrow::array::BooleanArray::from(vec![
                true;
                rows.num_rows()
            ]))],
            false => self
                .partition
                .iter()
                .map(|expr| crate::batch::evaluate(expr, rows))
                .collect::<Result<_>>()?,
        };
        Ok(self.key_converter.convert_columns(&key_columns)?)
    }

    /// Holds the rows of `batch`; returns those that are late: for a bounded
    /// frame, not after their partition's latest emitted row, for an
    /// unbounded one, not past the watermark (Flink's rules).
    fn take_in(&self, batch: &RecordBatch) -> Result<Vec<usize>> {
        let mut state = self.state();
        let OverState {
            held,
            last_emitted,
            touched,
            ..
        } = &mut *state;
        let stamped;
        let batch = match self.processing_time {
            true => {
                stamped = arrived_after(batch, held.time_column(), held.due_up_to())?;
                &stamped
            }
            false => batch,
        };
        match self.frame {
            Frame::Unbounded { .. } => {
                let watermark = held.due_up_to();
                let late = held.take_in(batch, |_, time| watermark.is_some_and(|w| time <= w))?;
                // A key whose rows wait for the watermark is not idle.
                if self.expiry.ttl_ms().is_some() {
                    let keys = self.keys_of(batch)?;
                    let now = self.expiry.now();
                    let late_rows: std::collections::HashSet<usize> =
                        late.iter().copied().collect();
                    for row in (0..batch.num_rows()).filter(|row| !late_rows.contains(row)) {
                        touched.insert(keys.row(row).as_ref().into(), now);
                    }
                }
                Ok(late)
            }
            _ => {
                let keys = self.keys_of(batch)?;
                held.take_in(batch, |row, time| {
                    last_emitted
                        .get(keys.row(row).as_ref())
                        .is_some_and(|&last| time <= last)
                })
            }
        }
    }

    /// The history and the due rows as one batch, with keys, times and inputs.
    fn emission(&self, state: &OverState, due: &RecordBatch) -> Result<Emission> {
        let history: usize = state.history.iter().map(RecordBatch::num_rows).sum();
        let rows = arrow::compute::concat_batches(&self.input, state.history.iter().chain([due]))?;
        let keys = self.keys_of(&rows)?;
        let times = crate::window::event_times(&rows, state.held.time_column())?
            .values()
            .to_vec();
        let inputs = self
            .calls
            .iter()
            .map(|call| call.input(&rows))
            .collect::<Result<Vec<_>>>()?;
        Ok(Emission {
            rows,
            keys,
            times,
            history,
            inputs,
        })
    }

    /// Emits the held rows the watermark `w` passed, with their aggregates.
    fn emit(&self, w: i64) -> Result<Vec<RecordBatch>> {
        let mut state = self.state();
        let due = match state.held.due(w)? {
            Some(due) if due.num_rows() > 0 => due,
            _ => return Ok(Vec::new()),
        };
        let emission = self.emission(&state, &due)?;
        let mut order: Vec<u32> = (0..emission.rows.num_rows() as u32).collect();
        order.sort_by(|&a, &b| {
            let (a, b) = (a as usize, b as usize);
            emission
                .keys
                .row(a)
                .cmp(&emission.keys.row(b))
                .then(emission.times[a].cmp(&emission.times[b]))
                .then(a.cmp(&b))
        });
        let mut out = Out::default();
        let now = self.expiry.ttl_ms().map(|_| self.expiry.now());
        let mut start = 0;
        while start < order.len() {
            let key = emission.keys.row(order[start] as usize);
            let end = start
                + order[start..]
                    .iter()
                    .take_while(|&&i| emission.keys.row(i as usize) == key)
                    .count();
            let group = &order[start..end];
            if let Some(now) = now {
                state.touched.insert(key.as_ref().into(), now);
            }
            match self.frame {
                Frame::Unbounded { peers } => {
                    let running = state
                        .running
                        .entry(key.as_ref().into())
                        .or_insert_with(|| self.calls.iter().map(AggregateCall::empty).collect());
                    self.running(&emission, group, peers, running, &mut out)?;
                }
                frame => {
                    self.sliding(&emission, group, frame, &mut out)?;
                    let last = emission.times[group[group.len() - 1] as usize];
                    state.last_emitted.insert(key.as_ref().into(), last);
                }
            }
            start = end;
        }
        let take = |rows: &[u32]| {
            arrow::compute::take_record_batch(&emission.rows, &UInt32Array::from(rows.to_vec()))
        };
        state.history = match out.history.is_empty() {
            true => Vec::new(),
            false => vec![take(&out.history)?],
        };
        if out.emitted.is_empty() {
            return Ok(Vec::new());
        }
        let mut columns = take(&out.emitted)?.columns().to_vec();
        for (call, accs) in self.calls.iter().zip(&out.results) {
            let accs: Vec<&Acc> = accs.iter().collect();
            columns.push(call.finish(&accs)?);
        }
        Ok(vec![RecordBatch::try_new(self.output.clone(), columns)?])
    }

    /// An unbounded frame: each key's running aggregates take its rows in order.
    fn running(
        &self,
        emission: &Emission,
        due: &[u32],
        peers: bool,
        running: &mut [Acc],
        out: &mut Out,
    ) -> Result<()> {
        for run in runs(due, |i| emission.times[i], peers) {
            for &i in run {
                for (acc, input) in running.iter_mut().zip(&emission.inputs) {
                    acc.update(input, i as usize)?;
                }
            }
            for &i in run {
                out.emit(i, running.to_vec());
            }
        }
        Ok(())
    }

    /// A bounded frame over the key's rows in order (those emitted before
    /// first): sliding aggregates take rows in and out, the others fold
    /// each frame afresh.
    fn sliding(
        &self,
        emission: &Emission,
        group: &[u32],
        frame: Frame,
        out: &mut Out,
    ) -> Result<()> {
        let time = |at: usize| emission.times[group[at] as usize];
        let mut slid: Vec<Acc> = self.calls.iter().map(AggregateCall::empty).collect();
        let (mut added, mut low) = (0, 0);
        let mut at = 0;
        let peers = matches!(frame, Frame::Range(_));
        for run in runs(group, |i| emission.times[i], peers) {
            let high = at + run.len();
            while added < high {
                self.slide(&mut slid, emission, group[added], false)?;
                added += 1;
            }
            let first = match frame {
                Frame::Rows(n) => (high - 1).saturating_sub(n as usize),
                Frame::Range(ms) => {
                    let since = time(at).saturating_sub(ms);
                    let mut first = low;
                    while time(first) < since {
                        first += 1;
                    }
                    first
                }
                Frame::Unbounded { .. } => unreachable!("unbounded frames run apart"),
            };
            while low < first {
                self.slide(&mut slid, emission, group[low], true)?;
                low += 1;
            }
            let fresh = self.folded(emission, &group[low..high], &slid)?;
            for &i in run {
                if (i as usize) >= emission.history {
                    out.emit(i, fresh.clone());
                }
            }
            at = high;
        }
        // What a later row's frame reaches (a later row is after the last one
        // here): the last n rows, or those within the range of the last.
        let last = time(group.len() - 1);
        let keep = match frame {
            Frame::Rows(n) => group.len().saturating_sub(n as usize),
            Frame::Range(ms) => (0..group.len())
                .find(|&at| time(at) >= last.saturating_sub(ms))
                .unwrap_or(group.len()),
            Frame::Unbounded { .. } => group.len(),
        };
        out.history.extend(&group[keep..]);
        Ok(())
    }

    /// Takes row `row` into the sliding aggregates, or (`out`) back out of them
    /// (a SUM whose values all left is NULL again, as in Flink).
    fn slide(&self, slid: &mut [Acc], emission: &Emission, row: u32, out: bool) -> Result<()> {
        let sliding = self.calls.iter().zip(slid).zip(&emission.inputs);
        for ((_, acc), input) in sliding.filter(|((call, _), _)| call.retractable()) {
            match out {
                true => acc.retract(input, row as usize)?,
                false => acc.update(input, row as usize)?,
            }
        }
        Ok(())
    }

    /// The frame's aggregates: the slid ones as they are, the others folded over `frame`.
    fn folded(&self, emission: &Emission, frame: &[u32], slid: &[Acc]) -> Result<Vec<Acc>> {
        self.calls
            .iter()
            .zip(slid)
            .zip(&emission.inputs)
            .map(|((call, acc), input)| {
                if call.retractable() {
                    return Ok(acc.clone());
                }
                let mut fresh = call.empty();
                for &i in frame {
                    fresh.update(input, i as usize)?;
                }
                Ok(fresh)
            })
            .collect()
    }
}

/// The rows an emission puts where.
#[derive(Default)]
struct Out {
    emitted: Vec<u32>,
    /// Per aggregate, each emitted row's accumulator.
    results: Vec<Vec<Acc>>,
    history: Vec<u32>,
}

impl Out {
    fn emit(&mut self, row: u32, accs: Vec<Acc>) {
        self.emitted.push(row);
        if self.results.len() < accs.len() {
            self.results.resize_with(accs.len(), Vec::new);
        }
        for (results, acc) in self.results.iter_mut().zip(accs) {
            results.push(acc);
        }
    }
}

/// `batch`, its rows read after the clock stepped back behind the rows
/// already emitted (`emitted_up_to`) stamped just past them: over processing
/// time no row is late, and rows keep the order they were read in.
fn arrived_after(
    batch: &RecordBatch,
    time_column: &str,
    emitted_up_to: Option<i64>,
) -> Result<RecordBatch> {
    let Some(floor) = emitted_up_to.map(|w| w.saturating_add(1)) else {
        return Ok(batch.clone());
    };
    let at = batch.schema().index_of(time_column)?;
    let times = crate::window::event_times(batch, time_column)?;
    if times.iter().flatten().all(|time| time >= floor) {
        return Ok(batch.clone());
    }
    let stamped = times.unary::<_, arrow::datatypes::TimestampMillisecondType>(|t| t.max(floor));
    let stamped = arrow::compute::cast(&stamped, batch.schema().field(at).data_type())?;
    let mut columns = batch.columns().to_vec();
    columns[at] = stamped;
    Ok(RecordBatch::try_new(batch.schema(), columns)?)
}

/// `rows` in runs of equal time when `peers`, else one row at a time.
fn runs(rows: &[u32], time: impl Fn(usize) -> i64, peers: bool) -> Vec<&[u32]> {
    match peers {
        false => rows.chunks(1).collect(),
        true => rows
            .chunk_by(|&a, &b| time(a as usize) == time(b as usize))
            .collect(),
    }
}

#[async_trait::async_trait]
impl Operator for OverAggregate {
    fn kind(&self) -> OperatorKind {
        OperatorKind::OverAggregate
    }

    async fn process(self: Arc<Self>, input: Traced, _ctx: &BatchContext<'_>) -> Result<Processed> {
        let output = self.output.clone();
        Ok(Processed::held(
            output,
            input,
            "its time was NULL, or not after its partition's rows already emitted (past the watermark, for an unbounded frame)",
            move |rows| self.take_in(&rows.batch),
        ))
    }

    fn describe(&self, input: &InputStream) -> Described {
        Described {
            detail: format!(
                "{}, {}{}",
                self.describe_window(),
                match self.processing_time {
                    true =>
                        "each row emitted in the order it was read, at the first commit after it",
                    false => "each row emitted in time order once the watermark passes it",
                },
                self.expiry.describe("keys", "their last row")
            ),
            schema: self.output.clone(),
            watermark: input.watermark.clone(),
            state: Some(StateInfo {
                holds: match self.frame {
                    Frame::Unbounded { .. } => {
                        "rows not emitted yet, and each key's running aggregates".to_string()
                    }
                    _ => {
                        "rows not emitted yet, and the emitted rows later frames reach".to_string()
                    }
                },
                fingerprint: format!(
                    "{}; rows {}",
                    self.calls
                        .iter()
                        .map(AggregateCall::shape)
                        .collect::<Vec<_>>()
                        .join(", "),
                    crate::state::schema_fingerprint(&self.input)
                ) + &format!("; {}", self.frame),
            }),
        }
    }

    fn accepts(&self, input: Changelog) -> std::result::Result<(), String> {
        match input {
            Changelog::AppendOnly => Ok(()),
            _ => Err("an OVER aggregation reads an append-only stream (each row is emitted once, when the watermark passes it; Flink refuses a changelog here too)".to_string()),
        }
    }

    fn emits(&self, _input: Changelog, _key: &[String]) -> (Changelog, Vec<String>) {
        (Changelog::AppendOnly, Vec::new())
    }

    fn holds_rows(&self) -> bool {
        true
    }

    fn runs_on_processing_time(&self) -> bool {
        self.processing_time
    }

    /// An unbounded frame's running aggregates are kept until the state TTL
    /// forgets an idle key; a bounded frame keeps the rows later frames
    /// reach, and each key's latest time, for good yet.
    fn keeps_state_past_ttl(&self) -> bool {
        !matches!(self.frame, Frame::Unbounded { .. })
    }

    async fn on_watermark(&self, watermarks: &Watermarks) -> Result<Emitted> {
        let rows = watermarks.pipeline.map(|w| self.emit(w)).transpose()?;
        self.forget_idle_keys();
        Ok(Emitted::appended(rows.unwrap_or_default()))
    }

    fn state(&self) -> Option<&dyn KeepsState> {
        Some(self)
    }
}

impl KeepsState for OverAggregate {
    /// The held rows, the history rows (Arrow IPC), then each key's running aggregates.
    fn snapshot(&self, out: &mut ByteWriter) {
        let state = self.state();
        state.held.encode(out);
        encode_batches(out, &state.history, &self.input);
        let mut keys: Vec<&Box<[u8]>> = state.running.keys().collect();
        keys.sort();
        out.u64(keys.len() as u64);
        for key in keys {
            out.bytes(key);
            for acc in &state.running[key] {
                acc.encode(out);
            }
        }
        encode_key_times(out, &state.last_emitted);
        // Last, and only under a TTL: when each key's rows were last emitted.
        if self.expiry.ttl_ms().is_some() {
            encode_key_times(out, &state.touched);
        }
    }

    fn restore(&self, input: &mut ByteReader<'_>) -> Result<()> {
        let mut state = self.state();
        state.held.decode(input)?;
        state.history = decode_batches(input, &self.input)?;
        state.running.clear();
        for _ in 0..input.u64()? {
            let key: Box<[u8]> = input.bytes()?.into();
            let accs = (0..self.calls.len())
                .map(|_| Acc::decode(input))
                .collect::<Result<Vec<_>>>()?;
            state.running.insert(key, accs);
        }
        state.last_emitted = decode_key_times(input)?;
        state.touched = match input.is_done() {
            true => HashMap::new(),
            false => decode_key_times(input)?,
        };
        // Keys a checkpoint kept without times (written without a TTL) start
        // their time at the restore.
        if self.expiry.ttl_ms().is_some() {
            let now = self.expiry.now();
            let OverState {
                running, touched, ..
            } = &mut *state;
            for key in running.keys() {
                touched.entry(key.clone()).or_insert(now);
            }
        }
        Ok(())
    }
}

/// A time per key, in the keys' order.
fn encode_key_times(out: &mut ByteWriter, times: &HashMap<Box<[u8]>, i64>) {
    let mut times: Vec<(&Box<[u8]>, &i64)> = times.iter().collect();
    times.sort();
    out.u64(times.len() as u64);
    for (key, time) in times {
        out.bytes(key);
        out.i64(*time);
    }
}

/// What [`encode_key_times`] wrote.
fn decode_key_times(input: &mut ByteReader<'_>) -> Result<HashMap<Box<[u8]>, i64>> {
    let mut times = HashMap::new();
    for _ in 0..input.u64()? {
        let key: Box<[u8]> = input.bytes()?.into();
        times.insert(key, input.i64()?);
    }
    Ok(times)
}

#[cfg(test)]
mod tests {
    use arrow::array::{Int64Array, StringArray, TimestampMillisecondArray};
    use arrow::datatypes::{DataType, Field, Schema};
    use datafusion::physical_expr::expressions::Column;

    use super::*;
    use crate::aggregate::accumulator::AggFunction;
    use crate::operator::MissAction;
    use crate::operator::harness::Harness;

    #[test]
    fn rows_read_after_the_clock_stepped_back_are_stamped_past_what_was_emitted() {
        let schema = Arc::new(Schema::new(vec![Field::new(
            "t",
            DataType::Timestamp(arrow::datatypes::TimeUnit::Millisecond, None),
            true,
        )]));
        let batch = RecordBatch::try_new(
            schema,
            vec![Arc::new(TimestampMillisecondArray::from(vec![
                Some(5),
                None,
                Some(20),
            ]))],
        )
        .unwrap();
        let stamped = arrived_after(&batch, "t", Some(10)).unwrap();
        let times = crate::window::event_times(&stamped, "t").unwrap();
        assert_eq!(times.iter().collect::<Vec<_>>(), [Some(11), None, Some(20)]);
        assert_eq!(arrived_after(&batch, "t", None).unwrap(), batch);
    }

    fn input() -> SchemaRef {
        Arc::new(Schema::new(vec![
            Field::new("k", DataType::Utf8, true),
            Field::new("v", DataType::Int64, true),
            Field::new(
                "t",
                DataType::Timestamp(arrow::datatypes::TimeUnit::Millisecond, None),
                true,
            ),
        ]))
    }

    /// SUM(v) and MIN(v) over `frame`, partitioned by k, ordered by t.
    fn over(frame: Frame) -> Arc<dyn Operator> {
        Arc::new(over_aggregate(frame))
    }

    /// `SUM(v), MIN(v) OVER (PARTITION BY k ORDER BY t <frame>)`.
    fn over_aggregate(frame: Frame) -> OverAggregate {
        let column =
            |name: &str, at: usize| -> Arc<dyn PhysicalExpr> { Arc::new(Column::new(name, at)) };
        let call = |function| {
            AggregateCall::new(
                function,
                column("v", 1),
                None,
                DataType::Int64,
                DataType::Int64,
                1,
            )
            .unwrap()
        };
        let mut fields = input().fields().to_vec();
        fields.push(Arc::new(Field::new("sum", DataType::Int64, true)));
        fields.push(Arc::new(Field::new("min", DataType::Int64, true)));
        OverAggregate::new(
            vec![(column("k", 0), DataType::Utf8)],
            "t".to_string(),
            frame,
            vec![call(AggFunction::Sum), call(AggFunction::Min)],
            input(),
            Arc::new(Schema::new(fields)),
        )
        .unwrap()
    }

    fn rows(rows: &[(&str, i64, i64)]) -> RecordBatch {
        RecordBatch::try_new(
            input(),
            vec![
                Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r.0))),
                Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.1))),
                Arc::new(TimestampMillisecondArray::from_iter_values(
                    rows.iter().map(|r| r.2),
                )),
            ],
        )
        .unwrap()
    }

    /// (k, v, t, sum, min) of what a watermark emitted, in emission order.
    fn emitted(emitted: Emitted) -> Vec<(String, i64, i64, i64, i64)> {
        let mut out = Vec::new();
        for batch in emitted.upserts {
            let int = |at: usize| {
                batch
                    .column(at)
                    .as_any()
                    .downcast_ref::<Int64Array>()
                    .unwrap()
                    .clone()
            };
            let keys = batch
                .column(0)
                .as_any()
                .downcast_ref::<StringArray>()
                .unwrap();
            let times = batch
                .column(2)
                .as_any()
                .downcast_ref::<TimestampMillisecondArray>()
                .unwrap();
            let (values, sums, mins) = (int(1), int(3), int(4));
            for row in 0..batch.num_rows() {
                out.push((
                    keys.value(row).to_string(),
                    values.value(row),
                    times.value(row),
                    sums.value(row),
                    mins.value(row),
                ));
            }
        }
        out
    }

    #[tokio::test]
    async fn rows_frames_slide_in_time_order_and_wait_for_the_watermark() {
        let mut harness = Harness::new(over(Frame::Rows(1)));
        harness
            .push(&rows(&[
                ("a", 5, 20),
                ("a", 3, 10),
                ("b", 7, 15),
                ("a", 9, 40),
            ]))
            .await
            .unwrap();
        let first = emitted(harness.watermark(20).await.unwrap());
        let expected = [("a", 3, 10, 3, 3), ("a", 5, 20, 8, 3), ("b", 7, 15, 7, 7)];
        let expected: Vec<_> = expected
            .iter()
            .map(|&(k, v, t, s, m)| (k.to_string(), v, t, s, m))
            .collect();
        assert_eq!(first, expected);
        // The row at 40 waited; its frame reaches the row at 20, emitted before.
        let restored = Harness::restore_into(over(Frame::Rows(1)), &harness.snapshot()).unwrap();
        let mut restored = restored;
        for harness in [&mut harness, &mut restored] {
            assert_eq!(
                emitted(harness.watermark(40).await.unwrap()),
                [("a".to_string(), 9, 40, 14, 5)]
            );
        }
    }

    #[tokio::test]
    async fn range_frames_share_peers_and_late_rows_are_set_aside() {
        let mut harness = Harness::new(over(Frame::Range(10)));
        harness
            .push(&rows(&[
                ("a", 1, 0),
                ("a", 2, 5),
                ("a", 4, 5),
                ("a", 8, 16),
            ]))
            .await
            .unwrap();
        let out = emitted(harness.watermark(16).await.unwrap());
        let sums: Vec<(i64, i64, i64)> = out.iter().map(|r| (r.1, r.3, r.4)).collect();
        // [-10, 0] holds 1; [-5, 5] holds 1, 2, 4 for both peers; [6, 16] holds 8.
        assert_eq!(sums, [(1, 1, 1), (2, 7, 1), (4, 7, 1), (8, 8, 8)]);
        let (_, missed) = harness
            .push(&rows(&[("a", 16, 16), ("a", 3, 17)]))
            .await
            .unwrap();
        let late: Vec<_> = missed
            .iter()
            .filter(|m| m.action == MissAction::Late)
            .flat_map(|m| m.origins.clone())
            .collect();
        assert_eq!(late, [0]);
        // [7, 17] holds 8 (16) and 3 (17).
        let out = emitted(harness.watermark(17).await.unwrap());
        assert_eq!(out, [("a".to_string(), 3, 17, 11, 3)]);
    }

    /// The test's own wall clock, in ms.
    static NOW_MS: std::sync::atomic::AtomicI64 = std::sync::atomic::AtomicI64::new(1_000);

    fn test_clock() -> i64 {
        NOW_MS.load(std::sync::atomic::Ordering::Relaxed)
    }

    #[tokio::test]
    async fn with_a_ttl_an_idle_keys_running_aggregates_are_forgotten() {
        use std::sync::atomic::Ordering;
        let make = || {
            Arc::new(
                over_aggregate(Frame::Unbounded { peers: false })
                    .expiring(Expiry::after(Some(1_000)).with_clock(test_clock)),
            )
        };
        let bounded = over_aggregate(Frame::Rows(2)).expiring(Expiry::after(Some(1_000)));
        assert!(
            bounded.keeps_state_past_ttl(),
            "a bounded frame refuses the TTL"
        );
        let mut harness = Harness::new(make());
        harness
            .push(&rows(&[("a", 4, 1), ("b", 2, 1), ("c", 5, 1)]))
            .await
            .unwrap();
        harness.watermark(1).await.unwrap();
        NOW_MS.store(1_600, Ordering::Relaxed);
        harness.push(&rows(&[("b", 3, 2)])).await.unwrap();
        harness.watermark(2).await.unwrap();
        let mut restored = Harness::restore_into(make(), &harness.snapshot()).unwrap();
        // A row of c comes at 1 900 and waits for the watermark: c is not idle.
        NOW_MS.store(1_900, Ordering::Relaxed);
        restored.push(&rows(&[("c", 10, 4)])).await.unwrap();
        // At 2 000, a (last emitted at 1 000) is forgotten at the commit; b
        // (1 600) keeps its running SUM.
        NOW_MS.store(2_000, Ordering::Relaxed);
        restored.watermark(2).await.unwrap();
        restored
            .push(&rows(&[("a", 1, 3), ("b", 1, 3)]))
            .await
            .unwrap();
        let out = emitted(restored.watermark(3).await.unwrap());
        assert_eq!(
            out,
            [("a".to_string(), 1, 3, 1, 1), ("b".to_string(), 1, 3, 6, 1)]
        );
        let out = emitted(restored.watermark(4).await.unwrap());
        assert_eq!(out, [("c".to_string(), 10, 4, 15, 5)]);
    }

    #[tokio::test]
    async fn unbounded_frames_keep_running_aggregates_per_key() {
        let mut harness = Harness::new(over(Frame::Unbounded { peers: false }));
        harness
            .push(&rows(&[("a", 4, 1), ("a", 2, 2)]))
            .await
            .unwrap();
        harness.watermark(2).await.unwrap();
        let restored =
            Harness::restore_into(over(Frame::Unbounded { peers: false }), &harness.snapshot())
                .unwrap();
        restored.push(&rows(&[("a", 1, 3)])).await.unwrap();
        let mut restored = restored;
        let out = emitted(restored.watermark(3).await.unwrap());
        assert_eq!(out, [("a".to_string(), 1, 3, 7, 1)]);
    }
}
