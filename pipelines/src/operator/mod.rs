//! The contract every step of a pipeline's plan implements, so that the
//! plan runs them in order without knowing any of them by name.
//!
//! ```text
//!   Traced rows ──process(ctx)──▶ Processed { rows for the next operator (each with its input row),
//!                                              input rows set aside (with what becomes of them),
//!                                              state writes }
//!   the whole batch went through every operator ──▶ the writes are applied
//!     (a batch that fails half-way, and is then run row by row to find the
//!      culprit, leaves no trace in any operator's state)
//!   commit ──▶ snapshot()        restart ──▶ restore()        both under the operator's id
//! ```

use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use serde::Serialize;
use tokio::sync::watch;

use crate::error::Result;
use crate::state::{ByteReader, ByteWriter};

/// A batch on its way through the operators, with each row's position in the input.
#[derive(Debug)]
pub struct Traced {
    pub batch: RecordBatch,
    pub origins: Vec<usize>,
}

impl Traced {
    /// The rows of `batch`, each its own origin.
    pub fn of(batch: &RecordBatch) -> Self {
        Self {
            batch: batch.clone(),
            origins: (0..batch.num_rows()).collect(),
        }
    }
}

/// What becomes of input rows an operator set aside.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MissAction {
    Quarantine,
    Retry,
    /// Held back until the versioned side's watermark passes the row's time.
    Wait,
}

/// Input rows an operator set aside, and what becomes of them.
#[derive(Debug)]
pub struct Missed {
    pub origins: Vec<usize>,
    pub action: MissAction,
    pub reason: String,
}

/// Which attempt at a row this is: the first, or a retry of a row set aside.
#[derive(Debug, Clone)]
pub struct LookupPass {
    /// 0 for the first lookup of the rows, n for their n-th retry.
    pub attempt: u32,
    /// Stops waiting for a database that is down.
    pub stop: watch::Receiver<bool>,
    /// The rows come out of the pipeline's state (a temporal join held them
    /// back): their offsets were committed with them long ago.
    pub from_state: bool,
}

impl LookupPass {
    /// Whether the rows were read before the last commit (retried or held back).
    pub fn replayed(&self) -> bool {
        self.attempt > 0 || self.from_state
    }
}

/// Which input stream a batch belongs to (an interval join reads two).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    Left,
    Right,
}

/// What an operator knows of the batch it processes, beyond its own input.
#[derive(Debug)]
pub struct BatchContext<'a> {
    /// The rows as read from the source, which the input's origins point into.
    pub source: &'a RecordBatch,
    pub pass: &'a LookupPass,
    pub side: Side,
}

/// A change to an operator's state, made once the whole batch has gone through.
pub struct StateWrite(Box<dyn FnOnce() -> Result<()> + Send + Sync>);

impl StateWrite {
    pub fn new(write: impl FnOnce() -> Result<()> + Send + Sync + 'static) -> Self {
        Self(Box::new(write))
    }

    pub fn apply(self) -> Result<()> {
        (self.0)()
    }
}

impl std::fmt::Debug for StateWrite {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("StateWrite")
    }
}

/// What an operator made of a batch.
#[derive(Debug)]
pub struct Processed {
    pub traced: Traced,
    pub missed: Vec<Missed>,
    pub writes: Vec<StateWrite>,
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

/// The kind of changes a stream carries, as Flink's changelog modes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
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
    LookupJoin,
    TemporalJoin,
    IntervalJoin,
    GroupAggregate,
    WindowAggregate,
    WindowAligned,
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
            OperatorKind::LookupJoin => "lookup join",
            OperatorKind::TemporalJoin => "temporal join",
            OperatorKind::IntervalJoin => "interval join",
            OperatorKind::GroupAggregate => "group aggregate",
            OperatorKind::WindowAggregate => "window aggregate",
            OperatorKind::WindowAligned => "window-aligned query",
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
            OperatorKind::LookupJoin => "lookup",
            OperatorKind::TemporalJoin => "temporal-join",
            OperatorKind::IntervalJoin => "interval-join",
            OperatorKind::GroupAggregate | OperatorKind::WindowAggregate => "aggregate",
            OperatorKind::WindowAligned => "window-aligned",
            OperatorKind::Sink => "sink",
        }
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

    /// Whether a second stream enters the plan here (an interval join's right side).
    fn reads_second_stream(&self) -> bool {
        false
    }

    /// Its state, if it keeps one in itself.
    fn state(&self) -> Option<&dyn KeepsState> {
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
