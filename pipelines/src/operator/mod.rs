//! The contract every step of a pipeline's plan implements, so that the
//! plan runs them in order without knowing any of them by name.
//!
//! ```text
//!   Traced rows ──process(ctx)──▶ Processed { rows for the next operator (each with its input row),
//!     ctx: the source rows, their       input rows set aside (with what becomes of them),
//!     row kinds, the last commit's      state writes }
//!     watermark
//!   the whole batch went through every operator ──▶ the writes are applied; a write
//!     may set rows aside too (an aggregation finds a row late as it folds it in)
//!     (a batch that fails half-way, and is then run row by row to find the
//!      culprit, leaves no trace in any operator's state)
//!   commit ──▶ on_watermark(watermarks) ──▶ Emitted { upserts, deletes } ──▶ the steps after it ──▶ sink
//!                   └─ state no row to come can meet is forgotten (a join's old rows)
//!          ──▶ snapshot()        restart ──▶ restore()        both under the operator's id
//! ```
//!
//! Rows set aside go through one channel, [`Missed`], whatever the reason:
//! quarantine, a retry, a wait for a versioned side, or lateness.

use arrow::array::{Array, BooleanArray};
use arrow::compute::filter_record_batch;
use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use serde::Serialize;
use tokio::sync::watch;

use crate::error::Result;
use crate::state::{ByteReader, ByteWriter};

/// What a changelog row does to the table, as Flink's RowKind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RowKind {
    Insert,
    UpdateBefore,
    UpdateAfter,
    Delete,
}

impl RowKind {
    /// Whether the row takes something away (the old image of an update, or a delete).
    pub fn is_retraction(self) -> bool {
        matches!(self, RowKind::UpdateBefore | RowKind::Delete)
    }
}

/// A batch on its way through the operators, with each row's position in
/// the input and the change it makes.
#[derive(Debug)]
pub struct Traced {
    pub batch: RecordBatch,
    pub origins: Vec<usize>,
    /// What each row does to the table (a changelog's insert, update or
    /// delete, a join's retraction of a row it emitted); none means every row
    /// is an insert.
    pub kinds: Option<Vec<RowKind>>,
}

impl Traced {
    /// The rows of `batch`, each its own origin, all inserts.
    pub fn of(batch: &RecordBatch) -> Self {
        Self {
            batch: batch.clone(),
            origins: (0..batch.num_rows()).collect(),
            kinds: None,
        }
    }

    /// `batch`, whose rows are these rows in order (a projection, a column added).
    pub fn with_batch(self, batch: RecordBatch) -> Self {
        Self { batch, ..self }
    }

    /// `batch`, whose rows come each from one of these rows (`rows`, by
    /// position), with that row's origin and kind.
    pub fn rows_from(&self, batch: RecordBatch, rows: &[usize]) -> Self {
        Self {
            batch,
            origins: match self.origins.is_empty() {
                true => Vec::new(),
                false => rows.iter().map(|&row| self.origins[row]).collect(),
            },
            kinds: self
                .kinds
                .as_ref()
                .map(|kinds| rows.iter().map(|&row| kinds[row]).collect()),
        }
    }

    /// The rows `keep` is true for (not NULL).
    pub fn filter(self, keep: &BooleanArray) -> Result<Self> {
        let kept = |row: usize| keep.is_valid(row) && keep.value(row);
        let origins = match self.origins.is_empty() {
            true => self.origins,
            false => (0..self.origins.len())
                .filter(|&row| kept(row))
                .map(|row| self.origins[row])
                .collect(),
        };
        let kinds = self.kinds.map(|kinds| {
            (0..kinds.len())
                .filter(|&row| kept(row))
                .map(|row| kinds[row])
                .collect()
        });
        Ok(Self {
            batch: filter_record_batch(&self.batch, keep)?,
            origins,
            kinds,
        })
    }

    /// Whether the row at `row` takes something away (an update's old image, a delete).
    pub fn retracts(&self, row: usize) -> bool {
        self.kinds
            .as_ref()
            .is_some_and(|kinds| kinds[row].is_retraction())
    }
}

/// What becomes of input rows an operator set aside.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MissAction {
    Quarantine,
    /// Kept in state and run again `after_ms` from now.
    Retry {
        after_ms: i64,
    },
    /// Held back until the versioned side's watermark passes the row's time
    /// in the source's column `time_column`.
    Wait {
        time_column: String,
    },
    /// Came after the watermark had closed what it belongs to: it goes to the
    /// late table, with the watermark it met.
    Late,
}

/// Input rows an operator set aside, and what becomes of them.
#[derive(Debug)]
pub struct Missed {
    pub origins: Vec<usize>,
    pub action: MissAction,
    pub reason: String,
}

impl Missed {
    /// `rows` of `input` sent to quarantine with `reason`; nothing when there are none.
    pub fn quarantine(rows: &[usize], input: &Traced, reason: String) -> Vec<Missed> {
        if rows.is_empty() {
            return Vec::new();
        }
        vec![Missed {
            origins: rows.iter().map(|&row| input.origins[row]).collect(),
            action: MissAction::Quarantine,
            reason,
        }]
    }
}

/// Which pass over rows this is: their first, a retry of rows set aside, or
/// rows released from waiting.
#[derive(Debug, Clone)]
pub struct Pass {
    /// 0 for the first lookup of the rows, n for their n-th retry.
    pub attempt: u32,
    /// Stops waiting for a database that is down.
    pub stop: watch::Receiver<bool>,
    /// The rows come out of the pipeline's state (a temporal join held them
    /// back): their offsets were committed with them long ago.
    pub from_state: bool,
}

impl Pass {
    /// Whether the rows were read before the last commit (retried or held back).
    pub fn replayed(&self) -> bool {
        self.attempt > 0 || self.from_state
    }
}

/// Which of the pipeline's streams a batch was read from: the source (0), or
/// a stream joined to it (1, 2, …, in the order the plan joins them).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Input(pub usize);

impl Input {
    pub const SOURCE: Input = Input(0);

    pub fn is_source(self) -> bool {
        self == Self::SOURCE
    }
}

/// Which input of an operator a batch reaches it by: its own (the stream it
/// is on), or the second one of an operator that reads two (a join's right side).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    Left,
    Right,
}

impl Side {
    /// The side across the join.
    pub fn other(self) -> Side {
        match self {
            Side::Left => Side::Right,
            Side::Right => Side::Left,
        }
    }
}

/// What an operator knows of the batch it processes, beyond its own input.
#[derive(Debug)]
pub struct BatchContext<'a> {
    /// The rows as read from the source, which the input's origins point into.
    pub source: &'a RecordBatch,
    pub pass: &'a Pass,
    /// Which input of the operator the batch reaches it by: the plan sets it
    /// for each operator (a stream's rows enter one join as its right side,
    /// and reach the joins after it as their left).
    pub side: Side,
    /// The change each source row is (a changelog's insert, update or delete),
    /// when the source is a changelog; none means every row is an insert. The
    /// plan gives each row its kind as it enters ([`Traced::kinds`]), which is
    /// what operators read.
    pub kinds: Option<&'a [RowKind]>,
    /// The watermark of the last commit: rows are late against it.
    pub watermark: Option<i64>,
}

impl BatchContext<'_> {
    /// The same batch, as it reaches an operator by `side`.
    pub fn at(&self, side: Side) -> Self {
        Self {
            source: self.source,
            pass: self.pass,
            side,
            kinds: self.kinds,
            watermark: self.watermark,
        }
    }

    /// The source's rows, each its own origin, with its kind.
    pub fn source_rows(&self) -> Traced {
        self.traced(self.source.clone(), (0..self.source.num_rows()).collect())
    }

    /// The rows of `batch`, each from the source row at its origin, with that row's kind.
    pub fn traced(&self, batch: RecordBatch, origins: Vec<usize>) -> Traced {
        let kinds = self
            .kinds
            .map(|kinds| origins.iter().map(|&origin| kinds[origin]).collect());
        Traced {
            batch,
            origins,
            kinds,
        }
    }
}

type Write = Box<dyn FnOnce() -> Result<Vec<Missed>> + Send + Sync>;

/// A change to an operator's state, made once the whole batch has gone through;
/// it returns the input rows it set aside (rows found late as they were folded in).
pub struct StateWrite(Write);

impl StateWrite {
    pub fn new(write: impl FnOnce() -> Result<Vec<Missed>> + Send + Sync + 'static) -> Self {
        Self(Box::new(write))
    }

    pub fn apply(self) -> Result<Vec<Missed>> {
        (self.0)()
    }

    /// Puts entries into `operator`'s keyed state (deletes those whose value is `None`).
    pub fn keyed<O: Operator + 'static>(
        operator: std::sync::Arc<O>,
        entries: Vec<(Vec<u8>, Option<Vec<u8>>)>,
    ) -> Self {
        Self::new(move || {
            let slot = operator
                .keyed_state()
                .expect("an operator that writes keyed state keeps it");
            slot.with(|state| {
                state.write_all(
                    entries
                        .iter()
                        .map(|(key, value)| (key.as_slice(), value.as_deref())),
                )
            })?;
            Ok(Vec::new())
        })
    }

    /// The same write, with the origins of the rows it sets aside mapped through `map`.
    pub fn map_origins(self, map: std::sync::Arc<[usize]>) -> Self {
        Self::new(move || {
            let mut missed = self.apply()?;
            for set_aside in &mut missed {
                for origin in &mut set_aside.origins {
                    *origin = map[*origin];
                }
            }
            Ok(missed)
        })
    }
}

impl std::fmt::Debug for StateWrite {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("StateWrite")
    }
}

/// When the rows an operator set aside run through the plan again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunAgain {
    /// After a delay on the wall clock ([`MissAction::Retry`]).
    AfterDelay,
    /// Once the versions input's watermark has passed their event time ([`MissAction::Wait`]).
    AtVersionsWatermark,
}

/// An operator that runs input rows through the plan again later.
#[derive(Debug, Clone)]
pub struct RunsRowsAgain {
    pub when: RunAgain,
    /// What in it does so, in SQL terms.
    pub what: String,
}

/// What an operator made of a batch.
#[derive(Debug)]
pub struct Processed {
    pub traced: Traced,
    pub missed: Vec<Missed>,
    pub writes: Vec<StateWrite>,
}

impl Processed {
    /// Rows an operator takes into its state, where they stay until a
    /// watermark: none go on (an empty batch of `output`), and `fold` folds
    /// them in when the batch's writes are applied, returning the positions
    /// of rows it found late, which are set aside as late with `reason`.
    pub fn held(
        output: SchemaRef,
        input: Traced,
        reason: &'static str,
        fold: impl FnOnce(&Traced) -> Result<Vec<usize>> + Send + Sync + 'static,
    ) -> Self {
        let write = StateWrite::new(move || {
            let late = fold(&input)?;
            if late.is_empty() {
                return Ok(Vec::new());
            }
            Ok(vec![Missed {
                origins: late.iter().map(|&row| input.origins[row]).collect(),
                action: MissAction::Late,
                reason: reason.to_string(),
            }])
        });
        Self {
            traced: Traced {
                batch: RecordBatch::new_empty(output),
                origins: Vec::new(),
                kinds: None,
            },
            missed: Vec::new(),
            writes: vec![write],
        }
    }
}

impl From<Traced> for Processed {
    fn from(traced: Traced) -> Self {
        Self {
            traced,
            missed: Vec::new(),
            writes: Vec::new(),
        }
    }
}

/// The watermarks of a commit, as operators see them.
#[derive(Debug, Clone, Copy, Default)]
pub struct Watermarks {
    /// The pipeline's: what closes windows, held back by a versioned side.
    pub pipeline: Option<i64>,
    /// The source stream's own.
    pub source: Option<i64>,
    /// The second stream's own (an interval join's right side, a temporal
    /// join's versioned changelog), if one is read.
    pub second: Option<i64>,
    /// The source stream has delivered nothing for the idle timeout.
    pub source_idle: bool,
    /// The second stream has delivered nothing for the idle timeout.
    pub second_idle: bool,
}

/// What an operator emits when the watermark advances: rows it inserts or
/// updates (by the key of its changelog), and keys it deletes; an operator
/// asked for update-before rows also takes back the rows it emitted before
/// (`retracts`, Flink's `-U`, which go first). What the operators after it
/// make of its rows, each row with its kind, comes last, in order (`changes`:
/// a Top-N of an aggregation's results).
#[derive(Debug, Default)]
pub struct Emitted {
    pub retracts: Vec<RecordBatch>,
    pub upserts: Vec<RecordBatch>,
    pub deletes: Vec<RecordBatch>,
    pub changes: Vec<Traced>,
    /// Appended rows the steps after their operator set aside, with the
    /// reason: the runner sends them to quarantine.
    pub set_aside: Vec<(RecordBatch, String)>,
}

impl Emitted {
    /// Rows it emits once, appended to what it emitted before.
    pub fn appended(rows: Vec<RecordBatch>) -> Self {
        Self {
            upserts: rows,
            ..Self::default()
        }
    }

    /// Its rows as one changelog, in the order they take effect: the rows
    /// taken back (`-U`), the new rows (`+U`), the deletes (`-D`), then the
    /// changes in their order; none if empty.
    pub fn into_changes(self) -> crate::error::Result<Option<Traced>> {
        let parts = [
            (self.retracts, RowKind::UpdateBefore),
            (self.upserts, RowKind::UpdateAfter),
            (self.deletes, RowKind::Delete),
        ];
        let mut batches = Vec::new();
        let mut kinds = Vec::new();
        for (part, kind) in parts {
            for batch in part.into_iter().filter(|b| b.num_rows() > 0) {
                kinds.extend(std::iter::repeat_n(kind, batch.num_rows()));
                batches.push(batch);
            }
        }
        for changes in self.changes.into_iter().filter(|c| c.batch.num_rows() > 0) {
            let rows = changes.batch.num_rows();
            kinds.extend(changes.kinds.unwrap_or_else(|| vec![RowKind::Insert; rows]));
            batches.push(changes.batch);
        }
        let Some(first) = batches.first() else {
            return Ok(None);
        };
        let batch = arrow::compute::concat_batches(&first.schema(), &batches)?;
        Ok(Some(Traced {
            origins: (0..batch.num_rows()).collect(),
            batch,
            kinds: Some(kinds),
        }))
    }

    pub fn extend(&mut self, other: Emitted) {
        self.retracts.extend(other.retracts);
        self.upserts.extend(other.upserts);
        self.deletes.extend(other.deletes);
        self.changes.extend(other.changes);
        self.set_aside.extend(other.set_aside);
    }
}

/// The kind of changes a stream carries, as Flink's changelog modes, from
/// the fewest kinds of change to the most.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Changelog {
    /// Inserts only.
    AppendOnly,
    /// Each row replaces the last row of its key (deletes as tombstones).
    Upsert,
    /// Inserts, update-before, update-after and deletes (Flink's RowKind).
    Retracting,
}

impl Changelog {
    pub fn as_str(self) -> &'static str {
        match self {
            Changelog::AppendOnly => "append-only",
            Changelog::Upsert => "upsert",
            Changelog::Retracting => "retracting",
        }
    }
}

/// What an operator does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum OperatorKind {
    Source,
    WindowAssign,
    Filter,
    Project,
    Unnest,
    Lag,
    RowNumber,
    TopN,
    LookupJoin,
    TemporalJoin,
    IntervalJoin,
    RegularJoin,
    Union,
    GroupAggregate,
    WindowAggregate,
    WindowAligned,
    OverAggregate,
    Sort,
    Materialize,
    Sink,
}

impl OperatorKind {
    pub fn as_str(self) -> &'static str {
        match self {
            OperatorKind::Source => "source",
            OperatorKind::WindowAssign => "window assign",
            OperatorKind::Filter => "filter",
            OperatorKind::Project => "project",
            OperatorKind::Unnest => "unnest",
            OperatorKind::Lag => "LAG",
            OperatorKind::RowNumber => "ROW_NUMBER",
            OperatorKind::TopN => "Top-N",
            OperatorKind::LookupJoin => "lookup join",
            OperatorKind::TemporalJoin => "temporal join",
            OperatorKind::IntervalJoin => "interval join",
            OperatorKind::RegularJoin => "regular join",
            OperatorKind::Union => "UNION ALL",
            OperatorKind::GroupAggregate => "group aggregate",
            OperatorKind::WindowAggregate => "window aggregate",
            OperatorKind::WindowAligned => "window-aligned query",
            OperatorKind::OverAggregate => "OVER aggregation",
            OperatorKind::Sort => "ORDER BY",
            OperatorKind::Materialize => "upsert materializer",
            OperatorKind::Sink => "sink",
        }
    }

    /// The start of the ids of operators of this kind.
    pub fn id_prefix(self) -> &'static str {
        match self {
            OperatorKind::Source => "source",
            OperatorKind::WindowAssign => "window",
            OperatorKind::Filter => "filter",
            OperatorKind::Project => "project",
            OperatorKind::Unnest => "unnest",
            OperatorKind::Lag => "lag",
            OperatorKind::RowNumber => "row-number",
            OperatorKind::TopN => "top-n",
            OperatorKind::LookupJoin => "lookup",
            OperatorKind::TemporalJoin => "temporal-join",
            OperatorKind::IntervalJoin => "interval-join",
            OperatorKind::RegularJoin => "join",
            OperatorKind::Union => "union",
            OperatorKind::GroupAggregate | OperatorKind::WindowAggregate => "aggregate",
            OperatorKind::WindowAligned => "window-aligned",
            OperatorKind::OverAggregate => "over",
            OperatorKind::Sort => "sort",
            OperatorKind::Materialize => "materialize",
            OperatorKind::Sink => "sink",
        }
    }

    /// Whether a plan's first operator of this kind is named by the prefix
    /// alone (a plan mostly has one; an aggregation of an aggregation has two).
    fn one_per_plan(self) -> bool {
        matches!(
            self,
            OperatorKind::GroupAggregate
                | OperatorKind::WindowAggregate
                | OperatorKind::WindowAligned
                | OperatorKind::OverAggregate
                | OperatorKind::Sort
                | OperatorKind::Materialize
        )
    }
}

/// The state an operator checkpoints, as the plan declares it.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct StateInfo {
    /// What it holds, for people.
    pub holds: String,
    /// What the state's bytes depend on: a checkpoint written under another
    /// fingerprint is refused, not misread.
    pub fingerprint: String,
}

/// How an operator shows in the plan, given the stream it reads.
#[derive(Debug, Clone)]
pub struct Described {
    /// What it does, in SQL terms.
    pub detail: String,
    /// The schema of the rows it emits.
    pub schema: SchemaRef,
    /// The watermark of what it emits.
    pub watermark: Option<String>,
    pub state: Option<StateInfo>,
}

/// The stream an operator reads, as far as describing it goes.
#[derive(Debug, Clone)]
pub struct InputStream {
    pub schema: SchemaRef,
    pub watermark: Option<String>,
}

/// State an operator keeps inside itself, checkpointed under its id.
pub trait KeepsState {
    fn snapshot(&self, out: &mut ByteWriter);
    /// Reads what [`snapshot`](Self::snapshot) wrote, into empty state.
    fn restore(&self, input: &mut ByteReader<'_>) -> Result<()>;
}

/// One step of a pipeline's plan.
#[async_trait::async_trait]
pub trait Operator: std::fmt::Debug + Send + Sync {
    fn kind(&self) -> OperatorKind;

    /// What tells it apart from others of its kind in its id (a lookup join's
    /// alias); without one, its ordinal among them.
    fn name(&self) -> Option<String> {
        None
    }

    /// Runs the operator on a batch of its input; the state writes it returns
    /// may hold on to the operator.
    async fn process(
        self: std::sync::Arc<Self>,
        input: Traced,
        ctx: &BatchContext<'_>,
    ) -> Result<Processed>;

    /// How it shows in the plan, reading `input`.
    fn describe(&self, input: &InputStream) -> Described;

    /// Why it cannot read a stream of `input`'s changelog kind, if it cannot.
    fn accepts(&self, _input: Changelog) -> std::result::Result<(), String> {
        Ok(())
    }

    /// The changelog kind and key of what it emits, reading `input` keyed by `key`.
    fn emits(&self, input: Changelog, key: &[String]) -> (Changelog, Vec<String>) {
        (input, key.to_vec())
    }

    /// Whether the rows it reads stay in its state until a watermark emits
    /// what they make (an aggregation): nothing goes on as it processes.
    fn holds_rows(&self) -> bool {
        false
    }

    /// What the commit's watermarks complete, and the state no row to come
    /// can need any more, which it forgets.
    async fn on_watermark(&self, _watermarks: &Watermarks) -> Result<Emitted> {
        Ok(Emitted::default())
    }

    /// Whether it shows results before its watermark emits them ([`Self::provisional`]).
    fn shows_provisional(&self) -> bool {
        false
    }

    /// The values of what it has not emitted yet, as it would emit them, for
    /// readers of the realtime view; none if it shows nothing before a watermark.
    fn provisional(&self) -> Result<Option<RecordBatch>> {
        Ok(None)
    }

    /// Whether it sets input rows aside to run them through the plan again
    /// later (a retry, a wait for versions), and when. An operator that sets
    /// rows aside with [`MissAction::Retry`] or [`MissAction::Wait`] must say
    /// so here: the runner checkpoints such rows under the operator that declares it.
    fn runs_rows_again(&self) -> Option<RunsRowsAgain> {
        None
    }

    /// How many rows wait for the versions input's watermark now; an
    /// operator that sets rows aside to wait notes it, the others ignore it.
    fn rows_waiting(&self, _count: usize) {}

    /// Why it cannot take rows that another operator runs through the plan
    /// again (its state would move on twice for one row, or was cleaned
    /// before the row came back), if it cannot.
    fn refuses_rows_run_again(&self) -> Option<String> {
        None
    }

    /// Whether it keeps state for good that Flink's `table.exec.state.ttl`
    /// would expire (it does not honour the TTL yet).
    fn keeps_state_past_ttl(&self) -> bool {
        false
    }

    /// Whether it may run over an aggregation's results: on the changes the
    /// aggregation emits at a commit, as they come (a Top-N of them).
    fn runs_over_aggregated_changes(&self) -> bool {
        false
    }

    /// Whether its rows wait for the processing-time clock rather than the
    /// event-time watermark (an OVER aggregation ordered by `PROCTIME()`):
    /// the pipeline then runs on the clock.
    fn runs_on_processing_time(&self) -> bool {
        false
    }

    /// Whether a second stream enters the plan here (an interval join's right side).
    fn reads_second_stream(&self) -> bool {
        false
    }

    /// Why it cannot run in a plan that reads a second stream, if it cannot.
    fn refuses_second_stream(&self) -> Option<String> {
        None
    }

    /// Its state, if it keeps one in itself.
    fn state(&self) -> Option<&dyn KeepsState> {
        None
    }

    /// Its keyed state, if it keeps state by key in the run's working store
    /// (state that grows with the keys, checkpointed incrementally).
    fn keyed_state(&self) -> Option<&crate::keyed::Slot> {
        None
    }
}

/// An operator of a compiled plan, under the id its state is checkpointed by.
#[derive(Debug, Clone)]
pub struct PlacedOperator {
    pub id: String,
    pub operator: std::sync::Arc<dyn Operator>,
}

/// Gives operators ids: the kind's prefix and the name, or the ordinal among
/// operators of that kind.
#[derive(Debug, Default)]
pub struct OperatorIds(std::collections::HashMap<&'static str, usize>);

impl OperatorIds {
    pub fn next(&mut self, kind: OperatorKind, name: Option<&str>) -> String {
        let prefix = kind.id_prefix();
        if kind.one_per_plan() {
            // The first keeps the bare id its checkpoints were written under;
            // a second one (an aggregation of an aggregation) is numbered.
            let seen = self.0.entry(prefix).or_default();
            *seen += 1;
            return match *seen {
                1 => prefix.to_string(),
                n => format!("{prefix}-{n}"),
            };
        }
        match name {
            Some(name) => format!("{prefix}-{name}"),
            None => {
                let ordinal = self.0.entry(prefix).or_default();
                *ordinal += 1;
                format!("{prefix}-{ordinal}")
            }
        }
    }
}

#[cfg(test)]
pub(crate) mod harness;
pub mod planner;
