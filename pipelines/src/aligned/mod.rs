//! Window-aligned queries: joins and aggregations over a window TVF's results
//! (Nexmark's q5 and q7, Flink's window joins), run window by window.
//!
//! ```text
//!   rows ──▶ buffer (the columns the query reads)            late: every window of the row was evaluated
//!   watermark w ──▶ windows whose end − 1 + delay ≤ w, not yet evaluated, close:
//!       __window.<src> = buffered rows × their closing windows   (each row, window pair once)
//!       <src>          = every buffered row                      (a stream joined to the windows)
//!       the whole SELECT, planned once by DataFusion, runs over these two tables ──▶ target
//!   buffer keeps rows with an open window, or within `retention` of w
//! ```
//!
//! A query qualifies when each result row belongs to exactly one window, so
//! that running it over the windows that close now gives exactly those
//! windows' rows:
//! - every aggregation reads windowed rows and groups by a window bound;
//! - every join has a windowed side; two windowed sides are joined on a window
//!   bound; a stream joined to windows is bounded in event time by the window
//!   (`B.t BETWEEN W.window_end - INTERVAL '10' SECOND AND W.window_end`), which
//!   says how long its rows are kept and how long past a window's end to wait;
//! - every result row comes through a windowed side.
//!
//! Anything else is refused at validation with the rule it breaks.

mod operator;

pub use operator::WindowAligned;

use std::sync::Arc;

use arrow::array::{Array, TimestampMillisecondArray, UInt32Array};
use arrow::datatypes::{Schema, SchemaRef};
use arrow::ipc::reader::StreamReader;
use arrow::ipc::writer::StreamWriter;
use arrow::record_batch::RecordBatch;
use datafusion::catalog::{
    CatalogProvider, MemoryCatalogProvider, MemorySchemaProvider, SchemaProvider, TableProvider,
};
use datafusion::common::{Column, ScalarValue};
use datafusion::datasource::MemTable;
use datafusion::execution::SessionState;
use datafusion::logical_expr::utils::split_conjunction;
use datafusion::logical_expr::{BinaryExpr, Expr, JoinType, LogicalPlan, Operator};
use datafusion::prelude::{SessionConfig, SessionContext};
use strata_catalog::TableDef;
use strata_catalog::provider::CATALOG_NAME;

use crate::error::{PipelineError, Result};
use crate::operator::{Side, Watermarks};
use crate::state::{ByteReader, ByteWriter};
use crate::validate::ValidPipeline;
use crate::window::{WINDOW_END, WINDOW_SCHEMA, WINDOW_START, WINDOW_TIME, WindowKind, WindowTvf};

/// Sets the rows an in-memory table (of one partition) holds before an evaluation.
async fn set_rows(table: &MemTable, batches: Vec<RecordBatch>) {
    *table.batches[0].write().await = batches;
}

/// An in-memory table of one partition, empty until [`set_rows`].
fn empty_table(schema: SchemaRef) -> std::result::Result<Arc<MemTable>, String> {
    MemTable::try_new(schema, vec![Vec::new()])
        .map(Arc::new)
        .map_err(|err| err.strip_backtrace())
}

/// Which bound of a window a column is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Bound {
    Start,
    End,
    Time,
}

const UNTIED: &str =
    "some result rows come from no window: they would be written again at every window";

/// One stream the query windows: its window, and the two tables the query
/// reads its rows from.
#[derive(Debug)]
struct Input {
    tvf: WindowTvf,
    /// Every buffered row (a stream joined to the windows).
    raw: Arc<MemTable>,
    /// Buffered rows × their closing windows, with the windows' bounds.
    windowed: Arc<MemTable>,
    /// The source's columns the query reads (the time column among them),
    /// all nullable: what the buffer holds.
    schema: SchemaRef,
}

impl Input {
    /// The end of the first window `time` belongs to.
    fn first_end(&self, time: i64) -> i64 {
        match self.tvf.kind {
            WindowKind::Tumble { size } => time.div_euclid(size) * size + size,
            WindowKind::Hop { slide, size } => ((time - size).div_euclid(slide) + 1) * slide + size,
            WindowKind::Cumulate { step, .. } => time.div_euclid(step) * step + step,
            WindowKind::Session { gap } => time + gap,
        }
    }

    /// The end of the last window `time` belongs to.
    fn last_end(&self, time: i64) -> i64 {
        match self.tvf.kind {
            WindowKind::Tumble { size } | WindowKind::Cumulate { size, .. } => {
                time.div_euclid(size) * size + size
            }
            WindowKind::Hop { slide, size } => time.div_euclid(slide) * slide + size,
            WindowKind::Session { gap } => time + gap,
        }
    }

    /// The event times of buffered rows, in milliseconds.
    fn times_of(&self, batch: &RecordBatch) -> Result<TimestampMillisecondArray> {
        crate::window::event_times(batch, &self.tvf.time_column)
    }

    /// The source's columns the query reads.
    fn keep_read_columns(&self, batch: &RecordBatch) -> Result<RecordBatch> {
        let columns = crate::batch::columns_by_name(batch, &self.schema, |name| {
            format!("the source has no column {name}")
        })?;
        Ok(RecordBatch::try_new(self.schema.clone(), columns)?)
    }

    /// Each buffered row once per window of it that closes in `(closed, up_to]`
    /// (by `window_end - 1`), with the window's bounds.
    fn closing_rows(
        &self,
        batches: &[RecordBatch],
        closed: i64,
        up_to: i64,
    ) -> Result<Vec<RecordBatch>> {
        let schema = self.windowed.schema();
        let mut out = Vec::new();
        for batch in batches {
            let times = self.times_of(batch)?;
            let (mut rows, mut starts, mut ends) = (Vec::new(), Vec::new(), Vec::new());
            for row in 0..batch.num_rows() {
                let time = times.value(row);
                if time > up_to || self.last_end(time) - 1 <= closed {
                    continue;
                }
                self.tvf.each_window(time, |start, end| {
                    if end - 1 > closed && end - 1 <= up_to {
                        rows.push(row as u32);
                        starts.push(start);
                        ends.push(end);
                    }
                });
            }
            if rows.is_empty() {
                continue;
            }
            let taken = arrow::compute::take_record_batch(batch, &UInt32Array::from(rows))?;
            let mut columns = taken.columns().to_vec();
            let time_of = |values: Vec<i64>| -> Arc<dyn Array> {
                Arc::new(TimestampMillisecondArray::from(values))
            };
            let times: Vec<i64> = ends.iter().map(|end| end - 1).collect();
            columns.push(time_of(starts));
            columns.push(time_of(ends));
            columns.push(time_of(times));
            out.push(RecordBatch::try_new(schema.clone(), columns)?);
        }
        Ok(out)
    }

    /// The rows to keep: those with a window after `up_to`, or within the
    /// retention of it.
    fn forget(
        &self,
        batches: Vec<RecordBatch>,
        up_to: i64,
        retention_ms: i64,
    ) -> Result<Vec<RecordBatch>> {
        let keep_after = up_to.saturating_sub(retention_ms);
        let mut kept = Vec::with_capacity(batches.len());
        for batch in batches {
            let times = self.times_of(&batch)?;
            let keep: arrow::array::BooleanArray = times
                .values()
                .iter()
                .map(|&time| Some(self.last_end(time) - 1 > up_to || time >= keep_after))
                .collect();
            match keep.true_count() {
                0 => {}
                n if n == batch.num_rows() => kept.push(batch),
                _ => kept.push(arrow::compute::filter_record_batch(&batch, &keep)?),
            }
        }
        Ok(kept)
    }
}

/// The query planned over each input's two swappable tables.
struct Planned {
    state: SessionState,
    plan: LogicalPlan,
    inputs: Vec<Input>,
}

impl Planned {
    /// Plans the query with each window's table holding `schema`'s columns.
    async fn new(
        valid: &ValidPipeline,
        windows: &[(&TableDef, &WindowTvf, SchemaRef)],
    ) -> std::result::Result<Self, String> {
        let catalog = MemoryCatalogProvider::new();
        let window_tables = Arc::new(MemorySchemaProvider::new());
        let mut spaces: Vec<(String, Arc<MemorySchemaProvider>)> = Vec::new();
        let mut inputs = Vec::with_capacity(windows.len());
        for (source, tvf, schema) in windows {
            let input = Input {
                tvf: (*tvf).clone(),
                raw: empty_table(schema.clone())?,
                windowed: empty_table(WindowTvf::schema(schema))?,
                schema: schema.clone(),
            };
            let space = match spaces.iter().find(|(name, _)| *name == source.name.space) {
                Some((_, space)) => space.clone(),
                None => {
                    let space = Arc::new(MemorySchemaProvider::new());
                    spaces.push((source.name.space.clone(), space.clone()));
                    space
                }
            };
            space
                .register_table(
                    source.name.name.clone(),
                    input.raw.clone() as Arc<dyn TableProvider>,
                )
                .and_then(|_| {
                    window_tables.register_table(
                        tvf.relation().name,
                        input.windowed.clone() as Arc<dyn TableProvider>,
                    )
                })
                .map_err(|err| err.strip_backtrace())?;
            inputs.push(input);
        }
        for (name, space) in spaces {
            catalog
                .register_schema(&name, space)
                .map_err(|err| err.strip_backtrace())?;
        }
        catalog
            .register_schema(WINDOW_SCHEMA, window_tables)
            .map_err(|err| err.strip_backtrace())?;
        let config = crate::validate::flink_sql(
            SessionConfig::new()
                .with_default_catalog_and_schema(CATALOG_NAME, "public")
                .with_target_partitions(1),
        );
        let mut ctx = SessionContext::new_with_config(config);
        ctx.register_catalog(CATALOG_NAME, Arc::new(catalog));
        strata_catalog::functions::register_flink_pipeline_functions(&mut ctx)
            .map_err(|err| err.strip_backtrace())?;
        let state = ctx.state();
        let statement = datafusion::sql::parser::Statement::Statement(Box::new(
            sqlparser::ast::Statement::Query(valid.pipeline.query.clone()),
        ));
        let plan = state
            .statement_to_plan(statement)
            .await
            .and_then(|plan| state.optimize(&plan))
            .map_err(|err| format!("planning failed: {}", err.strip_backtrace()))?;
        Ok(Self {
            state,
            plan,
            inputs,
        })
    }
}

/// A compiled window-aligned query.
#[derive(Debug)]
pub struct AlignedQuery {
    state: SessionState,
    plan: LogicalPlan,
    /// The windowed streams, the pipeline's source first (a window join reads two).
    inputs: Vec<Input>,
    /// How long behind the watermark rows are kept for a stream joined to the windows.
    retention_ms: i64,
    /// How far past `window_end - 1` the watermark must be before the window is evaluated.
    delay_ms: i64,
    /// Whether a stream is joined to the windowed rows (its rows are late once
    /// the watermark of an evaluation has passed them).
    joins_stream: bool,
}

/// The rows an aligned query holds, and how far its windows were evaluated.
#[derive(Debug, Default)]
pub struct AlignedState {
    /// The rows of each input, in the order of the query's inputs.
    buffers: Vec<Vec<RecordBatch>>,
    /// Windows with `end - 1` at or before this were evaluated.
    closed_up_to: Option<i64>,
}

impl AlignedState {
    fn buffer(&mut self, input: usize) -> &mut Vec<RecordBatch> {
        if self.buffers.len() <= input {
            self.buffers.resize_with(input + 1, Vec::new);
        }
        &mut self.buffers[input]
    }
}

impl AlignedQuery {
    /// Plans the pipeline's query over the windowed rows and the streams, and
    /// checks that it is window-aligned.
    pub async fn compile(valid: &ValidPipeline) -> Result<Self> {
        let pipeline = &valid.pipeline;
        let tvfs: Vec<&WindowTvf> = pipeline.windows().collect();
        let tvf = tvfs[0];
        let invalid = |message: String, hint: &str| PipelineError::Invalid {
            location: tvf.time_location.clone(),
            message,
            hint: Some(hint.to_string()),
        };
        if matches!(tvf.kind, WindowKind::Session { .. }) {
            return Err(invalid(
                "a SESSION window joined or aggregated twice is not supported yet (its windows are not known until they close)".to_string(),
                "aggregate the sessions into a table, and join that table in the next pipeline",
            ));
        }
        if crate::validate::first_call(&pipeline.query, &["current_watermark"]).is_some() {
            return Err(invalid(
                "CURRENT_WATERMARK in a window-aligned query (its windows are evaluated at a watermark, not row by row)".to_string(),
                "filter or route late rows in an earlier pipeline, where CURRENT_WATERMARK reads the stream's watermark",
            ));
        }
        if !pipeline.lookups.is_empty() || valid.streams().count() != tvfs.len() {
            return Err(invalid(
                "a window-aligned query reads the streams it windows, with no lookup joins, for now"
                    .to_string(),
                "enrich the stream in an earlier pipeline (the layered way), then window it here",
            ));
        }
        let mut windows = Vec::with_capacity(tvfs.len());
        for tvf in &tvfs {
            let source: &TableDef = valid
                .sources
                .iter()
                .find(|t| t.name == tvf.source.table)
                .expect("validation found the window's table");
            if crate::validate::is_changelog(source) {
                return Err(invalid(
                    "a window-aligned query over a changelog is not supported yet (its updates and deletes would count as rows)".to_string(),
                    "read an append-only table, or aggregate the changelog with one GROUP BY first",
                ));
            }
            let full = Arc::new(Schema::new(crate::batch::nullable_fields(&source.schema)));
            if full.index_of(&tvf.time_column).is_err() {
                return Err(invalid(
                    format!("no column {}", tvf.time_column),
                    "name the event-time column in DESCRIPTOR(…)",
                ));
            }
            windows.push((source, *tvf, full));
        }
        // Planned twice: over all the sources' columns to learn which the query
        // reads, then over those alone, so that the buffers hold nothing else.
        let planned = Planned::new(valid, &windows)
            .await
            .map_err(|err| invalid(err, "check the query's names and types"))?;
        let mut checker = Checker::new(&planned.inputs);
        if !checker
            .tied(&planned.plan)
            .map_err(|rule| invalid(rule, HINT))?
        {
            return Err(invalid(UNTIED.to_string(), HINT));
        }
        for (window, mut read) in windows.iter_mut().zip(checker.reads) {
            read.sort_unstable();
            read.dedup();
            window.2 = Arc::new(window.2.project(&read)?);
        }
        let planned = Planned::new(valid, &windows)
            .await
            .map_err(|err| invalid(err, "check the query's names and types"))?;
        let mut checker = Checker::new(&planned.inputs);
        if !checker
            .tied(&planned.plan)
            .map_err(|rule| invalid(rule, HINT))?
        {
            return Err(invalid(UNTIED.to_string(), HINT));
        }
        Ok(Self {
            retention_ms: checker.retention_ms,
            delay_ms: checker.delay_ms,
            joins_stream: checker.joins_stream,
            state: planned.state,
            plan: planned.plan,
            inputs: planned.inputs,
        })
    }

    /// The windows, one per input: `Tumble { size: 10000 } over dateTime`.
    fn windows(&self) -> String {
        self.inputs
            .iter()
            .map(|input| format!("{:?} over {}", input.tvf.kind, input.tvf.time_column))
            .collect::<Vec<_>>()
            .join(" and ")
    }

    /// The query in plan terms: its window and how it is evaluated.
    pub fn describe(&self) -> String {
        format!(
            "{}, evaluated window by window once the watermark passes window_end{}: {}",
            self.windows(),
            if self.joins_stream {
                ", with the stream's rows joined"
            } else {
                ""
            },
            self.plan.display()
        )
    }

    /// What the held rows' bytes depend on: the windows and the buffered columns.
    pub fn state_fingerprint(&self) -> String {
        let rows: Vec<String> = self
            .inputs
            .iter()
            .map(|input| crate::state::schema_fingerprint(&input.schema))
            .collect();
        format!("{}; rows {}", self.windows(), rows.join(" and "))
    }

    /// How many streams it windows: two for a window join.
    pub fn inputs(&self) -> usize {
        self.inputs.len()
    }

    /// The event-time column of the stream read on `side`, if it windows that stream.
    pub fn time_column(&self, side: Side) -> Option<&str> {
        let index = match side {
            Side::Left => 0,
            Side::Right => 1,
        };
        Some(self.inputs.get(index)?.tvf.time_column.as_str())
    }

    /// Takes a batch of `side`'s rows in. A row is late when a window it
    /// belongs to was already evaluated, or, for a stream joined to the
    /// windows, when it is not past the watermark of the last evaluation
    /// (windows it would have met were evaluated without it): its position is
    /// returned, for the late table. It is still kept while an open window or
    /// the band can use it.
    pub fn update(
        &self,
        state: &mut AlignedState,
        side: Side,
        batch: &RecordBatch,
    ) -> Result<Vec<usize>> {
        if batch.num_rows() == 0 {
            return Ok(Vec::new());
        }
        let index = match side {
            Side::Left => 0,
            Side::Right => 1,
        };
        let input = &self.inputs[index];
        let kept = input.keep_read_columns(batch)?;
        let times = input.times_of(&kept)?;
        let Some(closed) = state.closed_up_to else {
            state.buffer(index).push(kept);
            return Ok(Vec::new());
        };
        let late: Vec<usize> = (0..kept.num_rows())
            .filter(|&row| {
                let time = times.value(row);
                input.first_end(time) - 1 <= closed
                    || (self.joins_stream && time <= closed.saturating_add(self.delay_ms))
            })
            .collect();
        if late.is_empty() {
            state.buffer(index).push(kept);
            return Ok(late);
        }
        let keep_after = closed.saturating_sub(self.retention_ms);
        let needed: arrow::array::BooleanArray = (0..kept.num_rows())
            .map(|row| {
                let time = times.value(row);
                Some(input.last_end(time) - 1 > closed || time >= keep_after)
            })
            .collect();
        if needed.true_count() > 0 {
            state
                .buffer(index)
                .push(arrow::compute::filter_record_batch(&kept, &needed)?);
        }
        Ok(late)
    }

    /// The watermark that closes windows: the stream's, or for a window join
    /// the lower of the two streams' (none until both have one). A stream
    /// that has delivered nothing for the idle timeout stops holding windows
    /// back, as an idle input in Flink: its rows that come later are late;
    /// when both are idle, the higher one holds (as Flink's valve does).
    pub fn watermark(&self, watermarks: &Watermarks) -> Option<i64> {
        if self.inputs.len() == 1 {
            return watermarks.pipeline;
        }
        let (source, second) = (watermarks.source, watermarks.second);
        match (watermarks.source_idle, watermarks.second_idle) {
            (false, true) => source,
            (true, false) => second,
            (true, true) => source.max(second),
            (false, false) => Some(source?.min(second?)),
        }
    }

    /// Evaluates the windows the watermark closed, and forgets rows no window
    /// to come needs. The rows are in the query's output schema.
    pub async fn emit(
        &self,
        state: &mut AlignedState,
        watermark: Option<i64>,
    ) -> Result<Vec<RecordBatch>> {
        let Some(watermark) = watermark else {
            return Ok(Vec::new());
        };
        let up_to = watermark.saturating_sub(self.delay_ms);
        let closed = state.closed_up_to.unwrap_or(i64::MIN);
        if up_to <= closed {
            return Ok(Vec::new());
        }
        let mut closing = Vec::with_capacity(self.inputs.len());
        for (index, input) in self.inputs.iter().enumerate() {
            closing.push(input.closing_rows(state.buffer(index), closed, up_to)?);
        }
        let output = if closing.iter().all(Vec::is_empty) {
            Vec::new()
        } else {
            for ((index, input), windowed) in self.inputs.iter().enumerate().zip(closing) {
                set_rows(&input.raw, state.buffer(index).clone()).await;
                set_rows(&input.windowed, windowed).await;
            }
            let evaluated = self.evaluate().await;
            for input in &self.inputs {
                set_rows(&input.raw, Vec::new()).await;
                set_rows(&input.windowed, Vec::new()).await;
            }
            evaluated?
        };
        state.closed_up_to = Some(up_to);
        for (index, input) in self.inputs.iter().enumerate() {
            let held = std::mem::take(state.buffer(index));
            *state.buffer(index) = input.forget(held, up_to, self.retention_ms)?;
        }
        Ok(output)
    }

    async fn evaluate(&self) -> Result<Vec<RecordBatch>> {
        let evaluation = |err: datafusion::error::DataFusionError| {
            PipelineError::Evaluation(err.strip_backtrace())
        };
        let physical = self
            .state
            .create_physical_plan(&self.plan)
            .await
            .map_err(evaluation)?;
        datafusion::physical_plan::collect(physical, self.state.task_ctx())
            .await
            .map_err(evaluation)
    }
}

impl AlignedState {
    /// How many rows are held.
    pub fn rows(&self) -> usize {
        self.buffers
            .iter()
            .flatten()
            .map(RecordBatch::num_rows)
            .sum()
    }

    /// The watermark of the last evaluation, then each input's rows as an
    /// Arrow IPC stream (empty bytes for none).
    pub fn encode(&self, out: &mut ByteWriter) {
        out.option(self.closed_up_to.as_ref(), |out, w| out.i64(*w));
        for batches in &self.buffers {
            let mut bytes = Vec::new();
            if let Some(first) = batches.first() {
                let mut writer = StreamWriter::try_new(&mut bytes, &first.schema())
                    .expect("an IPC writer over memory opens");
                for batch in batches {
                    writer.write(batch).expect("writing IPC to memory succeeds");
                }
                writer.finish().expect("finishing IPC in memory succeeds");
            }
            out.bytes(&bytes);
        }
    }

    pub fn decode(input: &mut ByteReader<'_>) -> Result<Self> {
        let closed_up_to = input.option(|r| r.i64())?;
        let mut buffers = Vec::new();
        while !input.is_done() {
            let bytes = input.bytes()?;
            buffers.push(if bytes.is_empty() {
                Vec::new()
            } else {
                StreamReader::try_new(std::io::Cursor::new(bytes), None)?
                    .collect::<std::result::Result<Vec<_>, _>>()?
            });
        }
        Ok(Self {
            buffers,
            closed_up_to,
        })
    }
}

const HINT: &str = "a query over window TVFs must give each result row one window: aggregate windowed rows grouped by window_start/window_end, join windowed results on a window bound, and bound a stream joined to windows by the window (B.t BETWEEN W.window_end - INTERVAL '10' SECOND AND W.window_end)";

/// Walks a plan: whether each node's rows come from windows, and what the
/// stream joined to them needs.
struct Checker<'a> {
    inputs: &'a [Input],
    retention_ms: i64,
    delay_ms: i64,
    joins_stream: bool,
    /// Each input's source columns read.
    reads: Vec<Vec<usize>>,
}

impl<'a> Checker<'a> {
    fn new(inputs: &'a [Input]) -> Self {
        let reads = inputs
            .iter()
            .map(|input| {
                let time = input
                    .schema
                    .index_of(&input.tvf.time_column)
                    .expect("the buffered columns hold the event time");
                vec![time]
            })
            .collect();
        Self {
            inputs,
            retention_ms: 0,
            delay_ms: 0,
            joins_stream: false,
            reads,
        }
    }

    /// Whether a window bound tells the query's windows apart: a CUMULATE
    /// window's start is shared by every window of its cycle, so only its
    /// end (or time) does.
    fn distinguishes(&self, bound: Bound) -> bool {
        bound != Bound::Start || !self.cumulates()
    }

    fn cumulates(&self) -> bool {
        self.inputs
            .iter()
            .any(|input| matches!(input.tvf.kind, WindowKind::Cumulate { .. }))
    }

    /// How far before window_end a window may start, at most and at least.
    fn start_before_end(&self) -> (i64, i64) {
        match self.inputs[0].tvf.kind {
            WindowKind::Tumble { size } | WindowKind::Hop { size, .. } => (size, size),
            WindowKind::Cumulate { size, step } => (size, step),
            WindowKind::Session { gap } => (gap, gap),
        }
    }

    /// The input a scan reads, and whether it reads its windowed rows.
    fn input_of(&self, scan: &datafusion::logical_expr::TableScan) -> Option<(usize, bool)> {
        let windowed = scan.table_name.schema() == Some(WINDOW_SCHEMA);
        let table = scan.table_name.table();
        let index = self.inputs.iter().position(|input| {
            let name = &input.tvf.source.table;
            match windowed {
                true => table == input.tvf.relation().name,
                false => {
                    table == name.name
                        && scan
                            .table_name
                            .schema()
                            .is_none_or(|space| space == name.space)
                }
            }
        })?;
        Some((index, windowed))
    }

    /// Whether every row of `plan` belongs to one window; an error names a rule broken.
    fn tied(&mut self, plan: &LogicalPlan) -> std::result::Result<bool, String> {
        match plan {
            LogicalPlan::TableScan(scan) => {
                let Some((index, windowed)) = self.input_of(scan) else {
                    return Err(format!("{} is not a windowed table", scan.table_name));
                };
                let columns = scan.source.schema().fields().len();
                let source_columns = if windowed { columns - 3 } else { columns };
                let read = &mut self.reads[index];
                match &scan.projection {
                    Some(projection) => {
                        read.extend(projection.iter().filter(|&&i| i < source_columns))
                    }
                    None => read.extend(0..source_columns),
                }
                Ok(windowed)
            }
            LogicalPlan::Projection(p) => self.tied(&p.input),
            LogicalPlan::Filter(f) => self.tied(&f.input),
            LogicalPlan::SubqueryAlias(a) => self.tied(&a.input),
            LogicalPlan::Sort(s) => self.tied(&s.input),
            LogicalPlan::Distinct(d) => self.tied(d.input()),
            LogicalPlan::Union(u) => {
                let mut all = true;
                for input in &u.inputs {
                    all &= self.tied(input)?;
                }
                Ok(all)
            }
            LogicalPlan::Aggregate(aggregate) => {
                if !self.tied(&aggregate.input)? {
                    return Err("an aggregation reads rows that come from no window".to_string());
                }
                let grouped_by_window = aggregate.group_expr.iter().any(|expr| match expr {
                    Expr::Column(column) => bound_of(&aggregate.input, column)
                        .is_some_and(|bound| self.distinguishes(bound)),
                    _ => false,
                });
                if !grouped_by_window && self.cumulates() {
                    return Err(
                        "an aggregation over CUMULATE windows does not group by window_end (window_start is shared by the windows of a cycle)"
                            .to_string(),
                    );
                }
                if !grouped_by_window {
                    return Err(
                        "an aggregation over windowed rows does not group by window_start or window_end"
                            .to_string(),
                    );
                }
                Ok(true)
            }
            LogicalPlan::Join(join) => {
                let left = self.tied(&join.left)?;
                let right = self.tied(&join.right)?;
                match (left, right) {
                    (true, true) => {
                        let on_window = join.on.iter().any(|(l, r)| {
                            let bound = |side: &LogicalPlan, e: &Expr| match e {
                                Expr::Column(c) => bound_of(side, c),
                                _ => None,
                            };
                            bound(&join.left, l).is_some_and(|b| self.distinguishes(b))
                                && bound(&join.left, l) == bound(&join.right, r)
                        });
                        if !on_window && self.cumulates() {
                            return Err(
                                "two CUMULATE windows' results are joined without equal window ends (ON a.window_end = b.window_end; window_start is shared by the windows of a cycle)"
                                    .to_string(),
                            );
                        }
                        if !on_window {
                            return Err(
                                "two windowed results are joined without equal window bounds (ON a.window_end = b.window_end)"
                                    .to_string(),
                            );
                        }
                    }
                    (true, false) | (false, true) => {
                        let (stream, windows) = if left {
                            (&join.right, &join.left)
                        } else {
                            (&join.left, &join.right)
                        };
                        let preserves_stream = match join.join_type {
                            JoinType::Inner => false,
                            JoinType::Left | JoinType::LeftSemi | JoinType::LeftAnti => !left,
                            JoinType::Right | JoinType::RightSemi | JoinType::RightAnti => left,
                            _ => true,
                        };
                        if preserves_stream {
                            return Err("an outer join keeps stream rows that no window matched"
                                .to_string());
                        }
                        self.band(join.filter.as_ref(), stream, windows)?;
                    }
                    (false, false) => {
                        return Err("a join of two streams, neither of them windowed".to_string());
                    }
                }
                Ok(left || right)
            }
            other => Err(format!(
                "{} is not supported in a window-aligned query",
                other.display()
            )),
        }
    }

    /// Finds the event-time band that bounds `stream`'s rows by `windows`' bounds,
    /// and widens the retention and delay to it.
    fn band(
        &mut self,
        filter: Option<&Expr>,
        stream: &LogicalPlan,
        windows: &LogicalPlan,
    ) -> std::result::Result<(), String> {
        // A window starts between `earliest` and `latest` before its end: a
        // bound on window_start keeps the stream's rows for the earliest and
        // waits for them until the latest (the same for all but CUMULATE).
        let (earliest, latest) = self.start_before_end();
        // Offsets relative to window_end.
        let mut lower: Option<i64> = None;
        let mut upper: Option<i64> = None;
        let mut note = |time_is_left: bool, op: Operator, other: &Expr| {
            let (Some(low), Some(high)) = (
                window_offset(windows, other, earliest),
                window_offset(windows, other, latest),
            ) else {
                return;
            };
            let op = if time_is_left { op } else { flip(op) };
            match op {
                Operator::GtEq | Operator::Gt => lower = Some(lower.map_or(low, |l| l.max(low))),
                Operator::LtEq | Operator::Lt => upper = Some(upper.map_or(high, |u| u.min(high))),
                Operator::Eq => {
                    lower = Some(low);
                    upper = Some(high);
                }
                _ => {}
            }
        };
        let is_time = |e: &Expr| match e {
            Expr::Column(c) => self.is_stream_time(stream, c),
            _ => false,
        };
        for conjunct in filter.map(split_conjunction).unwrap_or_default() {
            match conjunct {
                Expr::BinaryExpr(BinaryExpr { left, op, right }) => {
                    if is_time(left.as_ref()) {
                        note(true, *op, right.as_ref());
                    } else if is_time(right.as_ref()) {
                        note(false, *op, left.as_ref());
                    }
                }
                Expr::Between(between) if !between.negated && is_time(between.expr.as_ref()) => {
                    note(true, Operator::GtEq, between.low.as_ref());
                    note(true, Operator::LtEq, between.high.as_ref());
                }
                _ => {}
            }
        }
        match (lower, upper) {
            (Some(lower), Some(upper)) if lower <= upper => {
                self.retention_ms = self.retention_ms.max(-lower);
                self.delay_ms = self.delay_ms.max(upper + 1);
                self.joins_stream = true;
                Ok(())
            }
            _ => Err(format!(
                "a stream joined to windowed rows is not bounded on both sides by the window ({} BETWEEN window_end - INTERVAL … AND window_end)",
                self.inputs[0].tvf.time_column
            )),
        }
    }

    /// Whether `column` is the event time of a stream's rows (not of windowed rows).
    fn is_stream_time(&self, plan: &LogicalPlan, column: &Column) -> bool {
        origin_of(plan, column).is_some_and(|(scan, name)| match self.input_of(scan) {
            Some((index, false)) => name == self.inputs[index].tvf.time_column,
            _ => false,
        })
    }
}

fn flip(op: Operator) -> Operator {
    match op {
        Operator::Gt => Operator::Lt,
        Operator::GtEq => Operator::LtEq,
        Operator::Lt => Operator::Gt,
        Operator::LtEq => Operator::GtEq,
        other => other,
    }
}

/// `bound`, `bound - INTERVAL x` or `bound + INTERVAL x` on the windows' side,
/// as an offset from window_end in ms, for windows that start `start_before_end` before their end.
fn window_offset(windows: &LogicalPlan, expr: &Expr, start_before_end: i64) -> Option<i64> {
    let from_end = |column: &Column| -> Option<i64> {
        Some(match bound_of(windows, column)? {
            Bound::End => 0,
            Bound::Time => -1,
            Bound::Start => -start_before_end,
        })
    };
    match expr {
        Expr::Column(column) => from_end(column),
        Expr::Cast(cast) => window_offset(windows, &cast.expr, start_before_end),
        Expr::BinaryExpr(BinaryExpr { left, op, right }) => {
            let Expr::Column(column) = left.as_ref() else {
                return None;
            };
            let interval = interval_ms(right)?;
            match op {
                Operator::Minus => Some(from_end(column)? - interval),
                Operator::Plus => Some(from_end(column)? + interval),
                _ => None,
            }
        }
        _ => None,
    }
}

fn interval_ms(expr: &Expr) -> Option<i64> {
    match expr {
        Expr::Literal(ScalarValue::IntervalMonthDayNano(Some(v)), _) if v.months == 0 => {
            Some(v.days as i64 * 86_400_000 + v.nanoseconds / 1_000_000)
        }
        Expr::Literal(ScalarValue::IntervalDayTime(Some(v)), _) => {
            Some(v.days as i64 * 86_400_000 + v.milliseconds as i64)
        }
        _ => None,
    }
}

/// Which window bound `column` of `plan`'s output is, if it is one.
fn bound_of(plan: &LogicalPlan, column: &Column) -> Option<Bound> {
    let (scan, name) = origin_of(plan, column)?;
    if scan.table_name.schema() != Some(WINDOW_SCHEMA) {
        return None;
    }
    match name.as_str() {
        WINDOW_START => Some(Bound::Start),
        WINDOW_END => Some(Bound::End),
        WINDOW_TIME => Some(Bound::Time),
        _ => None,
    }
}

/// The scanned column `column` of `plan`'s output passes through unchanged, if any.
pub(crate) fn origin_of<'a>(
    plan: &'a LogicalPlan,
    column: &Column,
) -> Option<(&'a datafusion::logical_expr::TableScan, String)> {
    let index = plan.schema().index_of_column(column).ok()?;
    let input_column = |input: &LogicalPlan, index: usize| {
        let (qualifier, field) = input.schema().qualified_field(index);
        Column::new(qualifier.cloned(), field.name())
    };
    match plan {
        LogicalPlan::TableScan(scan) => {
            let (_, field) = plan.schema().qualified_field(index);
            Some((scan, field.name().clone()))
        }
        LogicalPlan::Projection(p) => match unalias(&p.expr[index]) {
            Expr::Column(inner) => origin_of(&p.input, inner),
            _ => None,
        },
        LogicalPlan::SubqueryAlias(a) => origin_of(&a.input, &input_column(&a.input, index)),
        LogicalPlan::Filter(f) => origin_of(&f.input, column),
        LogicalPlan::Sort(s) => origin_of(&s.input, column),
        LogicalPlan::Distinct(d) => origin_of(d.input(), column),
        LogicalPlan::Aggregate(a) => match a.group_expr.get(index).map(unalias) {
            Some(Expr::Column(inner)) => origin_of(&a.input, inner),
            _ => None,
        },
        LogicalPlan::Join(j)
            if matches!(j.join_type, JoinType::RightSemi | JoinType::RightAnti) =>
        {
            origin_of(&j.right, &input_column(&j.right, index))
        }
        LogicalPlan::Join(j) => {
            let left = j.left.schema().fields().len();
            if index < left {
                origin_of(&j.left, &input_column(&j.left, index))
            } else {
                origin_of(&j.right, &input_column(&j.right, index - left))
            }
        }
        _ => None,
    }
}

fn unalias(expr: &Expr) -> &Expr {
    match expr {
        Expr::Alias(alias) => unalias(&alias.expr),
        other => other,
    }
}
