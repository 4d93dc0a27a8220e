//! A pipeline's SELECT, compiled from its DataFusion plan into steps that run
//! on each Arrow batch: projections, filters, casts, CASE, string and time
//! functions as physical expressions, and at most one aggregation, which keeps state.
//!
//! ```text
//!   SELECT … FROM src WHERE …              ──plan + optimise──▶ Projection ▸ Filter ▸ TableScan(src)
//!     compiled: [select columns, filter, project] ──cast──▶ target schema            (stateless)
//!
//!   SELECT window_start, k, SUM(x) FROM TABLE(TUMBLE(…)) WHERE … GROUP BY …
//!     compiled: assign windows ▸ operators [filter, project, aggregate (state)] ▸ post [project] ──▶ target
//! ```
//!
//! The aggregation is the last operator: it holds the rows it reads, and what a
//! watermark makes it emit goes through the steps after it.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering as AtomicOrdering};

use arrow::array::{Array, BooleanArray};
use arrow::datatypes::{DataType, SchemaRef};
use arrow::record_batch::RecordBatch;
use datafusion::common::tree_node::TreeNode;
use datafusion::common::{DFSchema, NullEquality};
use datafusion::execution::SessionState;
use datafusion::execution::session_state::SessionStateBuilder;
use datafusion::logical_expr::{ExprSchemable, LogicalPlan};
use datafusion::optimizer::Optimizer;
use datafusion::physical_expr::PhysicalExpr;

use crate::aggregate::accumulator::{AggFunction, AggregateCall};
use crate::aggregate::{AggregatePlan, Aggregation, GroupRole};
use crate::aligned::{AlignedQuery, WindowAligned};
use crate::batch::conform;
use crate::error::{PipelineError, Result};
use crate::interval::{IntervalJoin, IntervalJoinParts, SideInput};
use crate::keyed::Expiry;
use crate::lag::LagStep;
use crate::lookup::dimension::Dimension;
use crate::lookup::spec::LookupSpec;
use crate::lookup::versioned::VersionedTable;
use crate::lookup::{DimensionSide, LookupJoin, LookupJoinParts, SideStep};
use crate::operator::planner::PlanContext;
use crate::operator::{
    BatchContext, Changelog, Emitted, Input, KeepsState, MissAction, Missed, Operator, OperatorIds,
    Pass, PlacedOperator, RowKind, RunAgain, Side, StateWrite, Traced, Watermarks,
};
use crate::registry::planners;
use crate::regular_join::{JoinKind, JoinSide, RegularJoin};
use crate::steps::{Stateless, Unnest};
use crate::validate::ValidPipeline;
use crate::window::{WINDOW_END, WINDOW_START, WINDOW_TIME, WindowTvf};

/// A step as the compiler finds it: row by row, or an operator with more to it.
enum Step {
    Stateless(Stateless),
    Operator(Arc<dyn Operator>),
}

/// The steps before the aggregation, run on a batch: the rows that came
/// through, those operators set aside, and the state writes to make once the
/// rows have gone through.
#[derive(Debug)]
pub struct Prepared {
    pub traced: Traced,
    pub missed: Vec<Missed>,
    pub writes: Vec<StateWrite>,
}

/// Where a checkpoint from before operator ids put each operator's state:
/// one blob, in the order of the plan of its day.
pub(crate) struct LegacyState<'a> {
    /// The aggregation's; a blob of a plan without one holds empty groups.
    pub aggregate: Option<&'a dyn KeepsState>,
    pub lags: Vec<&'a dyn KeepsState>,
    /// The operator that read a second stream (an interval join).
    pub interval: Option<&'a dyn KeepsState>,
    pub aligned: Option<&'a dyn KeepsState>,
}

/// A lookup join's dimension, resolved against the catalog, waiting for the
/// plan to say how it is joined.
#[derive(Debug)]
pub struct ResolvedLookup {
    pub spec: LookupSpec,
    pub def: strata_catalog::TableDef,
    pub dimension: Dimension,
}

/// A stream read beside the source, and where its rows enter the plan.
#[derive(Debug)]
pub struct SecondInput {
    /// The table it reads.
    pub table: strata_catalog::TableName,
    /// The stateless steps its rows take first.
    pub steps: Vec<PlacedOperator>,
    /// The position among the operators of the one it enters at, as its
    /// second input (a join's right side, a UNION ALL's next input).
    pub at: usize,
}

/// A pipeline's SELECT, ready to run on batches of its source.
#[derive(Debug)]
pub struct CompiledPlan {
    window: Option<(WindowTvf, SchemaRef)>,
    /// The operators, up to and with the one that holds rows (an aggregation),
    /// if one does.
    pre: Vec<PlacedOperator>,
    /// The streams joined to the source, in the order the plan joins them.
    seconds: Vec<SecondInput>,
    /// Steps after the operator that holds rows, with their ids.
    post: Vec<(String, Stateless)>,
    /// The LAG steps, where checkpoints that predate operator ids put their state.
    lags: Vec<Arc<LagStep>>,
    /// The lookup joins: their statistics, and the versions they read.
    lookups: Vec<Arc<LookupJoin>>,
    /// The interval join, for the state shape of checkpoints that predate operator ids.
    interval: Option<Arc<IntervalJoin>>,
    target: SchemaRef,
    /// The aggregation, for the state shape of checkpoints that predate operator ids.
    aggregation: Option<Arc<Aggregation>>,
    /// A query over window TVF results run window by window, instead of the steps.
    aligned: Option<Arc<WindowAligned>>,
    /// What `CURRENT_WATERMARK(…)` gives: the watermark of the last commit.
    current_watermark: Arc<AtomicI64>,
}

impl CompiledPlan {
    /// Compiles a validated pipeline, with its lookup joins' dimensions.
    pub async fn compile(
        valid: &ValidPipeline,
        state: &SessionState,
        lookups: Vec<ResolvedLookup>,
    ) -> Result<Self> {
        let pipeline = &valid.pipeline;
        let statement = datafusion::sql::parser::Statement::Statement(Box::new(
            sqlparser::ast::Statement::Query(pipeline.query.clone()),
        ));
        let unsupported = |what: String| {
            PipelineError::Invalid {
            location: pipeline.target.location.clone(),
            message: format!("{what} is not supported in streaming pipelines yet"),
            hint: Some("pipelines run projections, filters, casts, CASE, scalar functions, UNNEST, LAG, OVER, ROW_NUMBER (deduplication and Top-N), lookup and temporal joins (FOR SYSTEM_TIME AS OF), regular joins and UNION ALL of streams, an interval join of two streams, window TVFs, and GROUP BY (an aggregation of an aggregation too)".to_string()),
        }
        };
        refuse_wall_clock_functions(valid)?;
        if pipeline.aligned {
            let query = AlignedQuery::compile(valid).await?;
            // A window join's second stream enters the query's operator too.
            if valid.streams().count() > query.inputs() {
                return Err(unsupported(
                    "a window-aligned query (a window join, or a join or aggregation of window results) beside another stream".to_string(),
                ));
            }
            let seconds = valid
                .streams()
                .skip(1)
                .take(query.inputs() - 1)
                .map(|table| SecondInput {
                    table: table.name.clone(),
                    steps: Vec::new(),
                    at: 0,
                })
                .collect();
            let aligned = Arc::new(WindowAligned::new(query, valid.target.schema.clone()));
            return Ok(Self {
                window: None,
                pre: place(
                    vec![Step::Operator(aligned.clone())],
                    &mut OperatorIds::default(),
                ),
                seconds,
                post: Vec::new(),
                target: valid.target.schema.clone(),
                aggregation: None,
                aligned: Some(aligned),
                lags: Vec::new(),
                lookups: Vec::new(),
                interval: None,
                current_watermark: Arc::new(AtomicI64::new(i64::MIN)),
            });
        }
        // Keep COUNT(DISTINCT) a single aggregation: its state is one set per group.
        let rules = Optimizer::new()
            .rules
            .into_iter()
            .filter(|rule| rule.name() != "single_distinct_aggregation_to_group_by")
            .collect();
        let mut state = SessionStateBuilder::new_from_existing(state.clone())
            .with_optimizer_rules(rules)
            .build();
        // NULLs sort as the lowest values, as in Flink: first when ascending, last when
        // descending, unless the ORDER BY says otherwise (a Top-N ranks by it).
        state
            .config_mut()
            .options_mut()
            .sql_parser
            .default_null_ordering = "nulls_min".to_string();
        // Rebuilding registers every function again, DataFusion's and Flink's in no set
        // order: a built-in's alias (to_char's `date_format`) could take a Flink name back.
        strata_catalog::functions::register_flink_pipeline_functions(&mut state)
            .map_err(|err| unsupported(format!("registering {err}")))?;
        // CURRENT_WATERMARK reads this pipeline's watermark, set as each batch is prepared.
        let current_watermark = Arc::new(AtomicI64::new(i64::MIN));
        datafusion::execution::FunctionRegistry::register_udf(
            &mut state,
            Arc::new(strata_catalog::functions::CurrentWatermark::udf(
                current_watermark.clone(),
            )),
        )
        .map_err(|err| unsupported(format!("registering {err}")))?;
        let plan = state
            .statement_to_plan(statement)
            .await
            .and_then(|plan| state.optimize(&plan))
            .and_then(crate::over::arrival::order_by_arrival)
            .map_err(|err| unsupported(format!("planning failed ({err}); this query")))?;
        let window = pipeline.window.as_ref().map(|tvf| {
            let source = &valid.sources[0];
            (tvf.clone(), WindowTvf::schema(&source.schema))
        });
        let mut compiler = Compiler {
            state: &state,
            unsupported: &unsupported,
            window: pipeline.window.as_ref(),
            allowed_lateness_ms: pipeline.settings.allowed_lateness_ms,
            distinct_buckets: pipeline.settings.distinct_buckets,
            state_ttl_ms: pipeline.settings.state_ttl_ms,
            rank_limits: Vec::new(),
            pre: None,
            aggregate: None,
            outer: None,
            lookups,
            location: pipeline.target.location.clone(),
            streams: valid
                .streams()
                .map(|t| {
                    (
                        t.name.clone(),
                        t.watermark.as_ref().map(|w| w.column.clone()),
                    )
                })
                .collect(),
            stream_changelogs: valid.streams().map(|t| changelog_of(t).0).collect(),
            seconds: Vec::new(),
            lags: Vec::new(),
            joins: Vec::new(),
            interval: None,
        };
        let mut steps = Vec::new();
        compiler.compile(&plan, &mut steps)?;
        if let Some(unused) = compiler.lookups.first() {
            return Err(unsupported(format!(
                "the lookup join of {} in this form",
                unused.spec.alias
            )));
        }
        // A GROUP BY over a join of two streams reads the join's changes; a
        // window over one would need the join's rows to carry an event time.
        if !compiler.seconds.is_empty() && window.is_some() {
            return Err(PipelineError::Invalid {
                location: pipeline.target.location.clone(),
                message: "a window over a join or UNION ALL of streams is not supported in one pipeline yet".to_string(),
                hint: Some("write the join to a DWD table, and aggregate that table in the next pipeline (the layered way)".to_string()),
            });
        }
        // A target without a key that takes retractions (a blackhole), or one
        // that writes every change (a debezium-json topic), gets a GROUP BY's
        // changing results as retractions: each change takes back the row
        // emitted before (Flink's retract mode).
        let retracting_target =
            crate::registry::connector(&valid.target).retracts_into(&valid.target);
        let outer = compiler.outer.take();
        // Operators over an aggregation's results (a Top-N of them) read its
        // changes as the target would.
        let operators_after = steps.iter().any(|step| matches!(step, Step::Operator(_)));
        let aggregation = compiler
            .aggregate
            .take()
            .map(|plan| {
                // An aggregation read by another takes its changes back, as
                // Flink's does for the aggregation after it.
                let read_again = outer.is_some() || operators_after;
                let retracts = (retracting_target || read_again) && plan.updates();
                match (retracts, plan.takes_back_updates()) {
                    (true, true) => Ok(plan.with_update_before()),
                    (false, _) => Ok(plan),
                    (true, false) => Err(unsupported(
                        "a SESSION window's results updated by late rows, into a target without a PRIMARY KEY or read by another aggregation,".to_string(),
                    )),
                }
            })
            .transpose()?
            .map(Aggregation::new)
            .map(Arc::new);
        // The steps that run on rows emitted at a commit, not as they are read.
        let mut at_commit = false;
        let (mut pre, mut post) = match (compiler.pre.take(), &aggregation) {
            (Some(mut pre), Some(aggregation)) => {
                let unfit = steps.iter().find_map(|step| match step {
                    Step::Operator(operator) if !operator.runs_over_aggregated_changes() => {
                        Some(operator.kind())
                    }
                    _ => None,
                });
                if let Some(kind) = unfit {
                    return Err(unsupported(format!(
                        "a {} after the aggregation",
                        kind.as_str()
                    )));
                }
                at_commit = reads_current_watermark(&steps);
                pre.push(Step::Operator(aggregation.clone()));
                if let Some((between, plan)) = outer {
                    let retracts = retracting_target || operators_after;
                    let plan = match retracts && plan.takes_back_updates() {
                        true => plan.with_update_before(),
                        false => plan,
                    };
                    pre.extend(between);
                    pre.push(Step::Operator(Arc::new(Aggregation::new(plan))));
                }
                // The operators over its results, and the steps between them,
                // run on what it emits; the steps after the last one finish rows.
                let mut post = steps;
                if let Some(last) = post.iter().rposition(|s| matches!(s, Step::Operator(_))) {
                    let rest = post.split_off(last + 1);
                    pre.extend(post);
                    post = rest;
                }
                (pre, post)
            }
            // An operator that holds rows until the watermark (an OVER
            // aggregation): the steps after it run on what it emits.
            _ => match steps.iter().rposition(|step| match step {
                Step::Operator(operator) => operator.holds_rows(),
                Step::Stateless(_) => false,
            }) {
                Some(at) => {
                    let post = steps.split_off(at + 1);
                    at_commit = reads_current_watermark(&post);
                    (steps, post)
                }
                None => (steps, Vec::new()),
            },
        };
        if (aggregation.is_none() || operators_after)
            && let Some(materializer) =
                materializer(valid, &pre, &compiler.second_changelogs(), plan.schema())?
        {
            // It reads the SELECT's rows: over an aggregation's results, the
            // steps that finish them run before it.
            if aggregation.is_some() {
                pre.append(&mut post);
            }
            pre.push(Step::Operator(materializer));
        }
        refuse_current_watermark_beside(pipeline, !compiler.seconds.is_empty(), &pre, at_commit)?;
        let mut ids = OperatorIds::default();
        let seconds: Vec<SecondInput> = std::mem::take(&mut compiler.seconds)
            .into_iter()
            .map(|second| SecondInput {
                table: second.table,
                steps: place(second.steps, &mut ids),
                at: second.at,
            })
            .collect();
        let pre = place(pre, &mut ids);
        refuse_state_ttl_beside(pipeline, &pre)?;
        refuse_processing_time_beside(pipeline, window.as_ref(), &seconds, &pre)?;
        let post = post
            .into_iter()
            .map(|step| match step {
                Step::Stateless(step) => Ok((ids.next(step.kind(), None), step)),
                Step::Operator(operator) => Err(unsupported(format!(
                    "a {} after the aggregation",
                    operator.kind().as_str()
                ))),
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Self {
            window,
            seconds,
            pre,
            post,
            target: valid.target.schema.clone(),
            aggregation,
            aligned: None,
            lags: compiler.lags,
            lookups: compiler.joins,
            interval: compiler.interval,
            current_watermark,
        })
    }

    /// The clock the pipeline runs on when an operator's rows wait for
    /// processing time rather than event time (an OVER aggregation ordered by
    /// `PROCTIME()`): its watermark at a commit is the millisecond before it.
    pub fn processing_clock(&self, now_ms: i64) -> Option<crate::watermark::ProcessingClock> {
        self.runs_on_processing_time()
            .then(|| crate::watermark::ProcessingClock::new(1, 0, now_ms))
    }

    /// Whether an operator's rows wait for the processing-time clock.
    pub fn runs_on_processing_time(&self) -> bool {
        self.pre
            .iter()
            .any(|placed| placed.operator.runs_on_processing_time())
    }

    /// Whether rows wait in an operator's state for the watermark (an
    /// aggregation, a window-aligned query) rather than going to the target as they come.
    pub fn holds_rows(&self) -> bool {
        self.pre.iter().any(|placed| placed.operator.holds_rows())
    }

    /// What the operators emit at a commit's watermarks, in plan order (an
    /// interval join's right-side operators first). What an operator emits
    /// goes on to the target, unless operators follow it (an aggregation of
    /// its results, a Top-N of them): then its changes enter the steps after
    /// it, in the order they take effect; what comes out of them goes on to
    /// the target, and what an operator holds folds into its state before it
    /// is asked in turn.
    pub async fn on_watermark(&self, watermarks: &Watermarks) -> Result<Emitted> {
        let mut emitted = Emitted::default();
        for placed in self.seconds.iter().flat_map(|second| &second.steps) {
            emitted.extend(placed.operator.on_watermark(watermarks).await?);
        }
        for (at, placed) in self.pre.iter().enumerate() {
            let mut own = placed.operator.on_watermark(watermarks).await?;
            let rest = &self.pre[at + 1..];
            if rest.is_empty() {
                emitted.extend(own);
                continue;
            }
            emitted.set_aside.append(&mut own.set_aside);
            let Some(changes) = own.into_changes()? else {
                continue;
            };
            // Rows appended (an outer join's padded rows), not changes an
            // aggregation must take in full, may be set aside as read rows are.
            let appended = changes
                .kinds
                .as_ref()
                .is_none_or(|kinds| kinds.iter().all(|kind| *kind == RowKind::Insert));
            let (_stop, stop) = tokio::sync::watch::channel(false);
            let pass = Pass {
                attempt: 0,
                stop,
                from_state: true,
            };
            let source = changes.batch.clone();
            let kinds = changes.kinds.clone();
            let ctx = BatchContext {
                source: &source,
                pass: &pass,
                side: Side::Left,
                kinds: kinds.as_deref(),
                watermark: watermarks.pipeline,
            };
            let prepared = self.run_steps(rest, None, changes, &ctx).await?;
            let mut late = prepared.missed;
            for write in prepared.writes {
                late.extend(write.apply()?);
            }
            for missed in late.iter().filter(|missed| !missed.origins.is_empty()) {
                // Rows a lookup would retry, or late rows, have no place to
                // wait or go at a commit: only quarantine takes them.
                if !appended || missed.action != MissAction::Quarantine {
                    return Err(PipelineError::Evaluation(format!(
                        "the results of {} were set aside by the operators after it ({}); an aggregation of its results must take every change",
                        placed.id, missed.reason
                    )));
                }
                let rows = arrow::array::UInt32Array::from_iter_values(
                    missed.origins.iter().map(|&row| row as u32),
                );
                emitted.set_aside.push((
                    arrow::compute::take_record_batch(&source, &rows)?,
                    missed.reason.clone(),
                ));
            }
            if prepared.traced.batch.num_rows() > 0 {
                emitted.changes.push(prepared.traced);
            }
        }
        Ok(emitted)
    }

    /// Whether an operator shows results before its watermark (for the
    /// realtime view): the last one that keeps state, whose rows the steps
    /// after it take (an aggregation of an aggregation shows its own groups;
    /// a Top-N of an aggregation's results shows none early).
    pub fn shows_provisional(&self) -> bool {
        self.last_stateful()
            .is_some_and(|placed| placed.operator.shows_provisional())
    }

    fn last_stateful(&self) -> Option<&PlacedOperator> {
        self.pre.iter().rev().find(|placed| {
            placed.operator.shows_provisional()
                || placed.operator.state().is_some()
                || placed.operator.keyed_state().is_some()
        })
    }

    /// What the operators would emit if the watermark passed everything now,
    /// through the steps after them; none if no operator shows results early.
    pub fn provisional(&self) -> Result<Option<RecordBatch>> {
        match self.last_stateful() {
            Some(placed) if placed.operator.shows_provisional() => {
                match placed.operator.provisional()? {
                    Some(rows) => self.finish(rows).map(Some),
                    None => Ok(None),
                }
            }
            _ => Ok(None),
        }
    }

    /// The operators' state, where a checkpoint from before operator ids put it.
    pub(crate) fn legacy_state(&self) -> LegacyState<'_> {
        LegacyState {
            aggregate: self.aggregation.as_ref().and_then(|op| op.state()),
            lags: self
                .lags
                .iter()
                .map(|lag| lag.as_ref() as &dyn KeepsState)
                .collect(),
            interval: self.interval().map(|join| join.as_ref() as &dyn KeepsState),
            aligned: self.aligned.as_ref().and_then(|op| op.state()),
        }
    }

    /// The id of the first operator that runs rows it set aside through the
    /// plan again `when` says: the runner keeps all such rows under it.
    pub fn rerun_by(&self, when: RunAgain) -> Option<&str> {
        self.pre.iter().find_map(|placed| {
            let again = placed.operator.runs_rows_again()?;
            (again.when == when).then_some(placed.id.as_str())
        })
    }

    /// Tells the operators how many rows wait for the versions input's watermark.
    pub fn note_waiting(&self, count: usize) {
        for placed in &self.pre {
            placed.operator.rows_waiting(count);
        }
    }

    /// The versions an operator reads from a table's changelog, read beside
    /// the source (an event-time temporal join's): found among the plan's lookup joins.
    pub fn versions_read(&self) -> Option<&Arc<VersionedTable>> {
        self.versions_inputs().next()
    }

    /// Every table changelog the plan's operators read into versions.
    fn versions_inputs(&self) -> impl Iterator<Item = &Arc<VersionedTable>> {
        self.lookups.iter().filter_map(|join| join.versioned())
    }

    /// The streams whose rows enter the plan beside the source's (a join's
    /// right side), in the order the plan joins them: `Input(1)`, `Input(2)`, ….
    pub fn seconds(&self) -> &[SecondInput] {
        &self.seconds
    }

    /// Whether a changelog read into versions (an event-time temporal join's)
    /// and another stream both enter the plan beside the source.
    pub fn reads_versions_beside_streams(&self) -> bool {
        let versions = self.versions_inputs().count();
        versions > 0 && versions + self.seconds.len() > 1
    }

    /// The first operator that cannot run beside a second stream, with what it is.
    pub fn refusing_second_stream(&self) -> Option<(&str, String)> {
        self.pre.iter().find_map(|placed| {
            let what = placed.operator.refuses_second_stream()?;
            Some((placed.id.as_str(), what))
        })
    }

    /// What the plan's checkpointed state is made of, a line per stateful
    /// part, as checkpoints before operator ids recorded it; one written
    /// under other lines is refused, not misread.
    pub fn state_shape(&self) -> Vec<String> {
        let mut lines = self
            .aggregation
            .as_ref()
            .map(|aggregation| aggregation.plan().state_shape())
            .unwrap_or_default();
        lines.extend(self.lags().map(|lag| lag.shape()));
        if self.interval().is_some() {
            lines.push("interval join".to_string());
        }
        if self.lookups().any(|join| join.versioned().is_some()) {
            lines.push("event-time temporal join".to_string());
        }
        if self.aligned.is_some() {
            lines.push("window-aligned query".to_string());
        }
        lines
    }

    /// The window TVF rows are assigned to first, with the windowed rows' schema.
    pub(crate) fn window(&self) -> Option<&(WindowTvf, SchemaRef)> {
        self.window.as_ref()
    }

    /// The operators, up to and with the one that holds rows.
    pub fn pre_operators(&self) -> &[PlacedOperator] {
        &self.pre
    }

    /// The steps after the operator that holds rows, with their ids.
    pub fn post_steps(&self) -> &[(String, Stateless)] {
        &self.post
    }

    /// The operators whose state they keep in themselves, with their ids.
    pub fn stateful_operators(&self) -> impl Iterator<Item = (&str, &dyn KeepsState)> {
        self.pre
            .iter()
            .filter_map(|placed| Some((placed.id.as_str(), placed.operator.state()?)))
    }

    /// The operators that keep keyed state, with their ids.
    pub fn keyed_operators(&self) -> impl Iterator<Item = (&str, &crate::keyed::Slot)> {
        self.seconds
            .iter()
            .flat_map(|second| &second.steps)
            .chain(&self.pre)
            .filter_map(|placed| Some((placed.id.as_str(), placed.operator.keyed_state()?)))
    }

    /// The plan's `LAG` steps, in order.
    fn lags(&self) -> impl Iterator<Item = &Arc<LagStep>> {
        self.lags.iter()
    }

    /// The plan's interval join, if any.
    fn interval(&self) -> Option<&Arc<IntervalJoin>> {
        self.interval.as_ref()
    }

    /// The plan's lookup joins, in order.
    pub fn lookups(&self) -> impl Iterator<Item = &Arc<LookupJoin>> {
        self.lookups.iter()
    }

    /// Runs the operators on a batch of `ctx.source`, keeping track of which
    /// input row each output row came from. A batch of the left stream is
    /// assigned its windows first: rows without an event time are left out.
    /// Rows an operator did not take (a lookup miss, a late row) are set aside
    /// with what to do.
    pub async fn prepare(&self, ctx: &BatchContext<'_>, input: Input) -> Result<Prepared> {
        self.current_watermark
            .store(ctx.watermark.unwrap_or(i64::MIN), AtomicOrdering::Relaxed);
        match input.is_source() {
            true => self.prepare_source(ctx).await,
            false => {
                let (steps, entering) = self.path_of(input, self.pre.len());
                self.run_steps(&steps, entering, ctx.source_rows(), ctx)
                    .await
            }
        }
    }

    async fn prepare_source(&self, ctx: &BatchContext<'_>) -> Result<Prepared> {
        let batch = ctx.source;
        let traced = match &self.window {
            Some((tvf, schema)) => {
                let assigned = tvf.assign(batch, schema)?;
                ctx.traced(assigned.batch, assigned.origins)
            }
            None => ctx.source_rows(),
        };
        self.run_steps(&self.pre, None, traced, ctx).await
    }

    /// The operators rows of `input` take, up to (not with) the one at `end`
    /// among the plan's: a second stream's own steps, then those from the
    /// operator it enters at, whose position among them comes second.
    fn path_of(&self, input: Input, end: usize) -> (Vec<PlacedOperator>, Option<usize>) {
        let Some(second) = input.0.checked_sub(1).map(|at| &self.seconds[at]) else {
            return (self.pre[..end].to_vec(), None);
        };
        let steps = second
            .steps
            .iter()
            .chain(&self.pre[second.at..end.max(second.at)])
            .cloned()
            .collect();
        (steps, Some(second.steps.len()))
    }

    /// Takes rows of `input` through the joins of streams they reach, and
    /// keeps them in their state (and in the state of the operators before
    /// them), for rows the steps after a join failed on: a row that fails
    /// between two joins is kept by the first.
    pub async fn hold_only(
        &self,
        batch: &RecordBatch,
        kinds: Option<&[RowKind]>,
        pass: &Pass,
        input: Input,
    ) -> Result<()> {
        let Some(last) = self.seconds.iter().map(|second| second.at).max() else {
            return Ok(());
        };
        let (through_joins, entering) = self.path_of(input, last + 1);
        let ctx = BatchContext {
            source: batch,
            pass,
            side: Side::Left,
            kinds,
            watermark: None,
        };
        // Every operator the row went through keeps it, as when its batch goes through whole.
        let mut writes = Vec::new();
        let outcome = self
            .run_steps_writing(
                &through_joins,
                entering,
                ctx.source_rows(),
                &ctx,
                &mut writes,
            )
            .await;
        for write in writes {
            write.apply()?;
        }
        outcome.map(|_| ())
    }

    /// Runs operators on a batch of `ctx.source`, which `traced`'s origins
    /// point into; the batch reaches the operator at `entering` as its second
    /// input, and every other by its own.
    async fn run_steps(
        &self,
        steps: &[PlacedOperator],
        entering: Option<usize>,
        traced: Traced,
        ctx: &BatchContext<'_>,
    ) -> Result<Prepared> {
        let mut writes = Vec::new();
        let (traced, missed) = self
            .run_steps_writing(steps, entering, traced, ctx, &mut writes)
            .await?;
        Ok(Prepared {
            traced,
            missed,
            writes,
        })
    }

    /// [`Self::run_steps`], putting the state writes into `writes` as each
    /// operator returns them: those of the operators before one that fails stay there.
    async fn run_steps_writing(
        &self,
        steps: &[PlacedOperator],
        entering: Option<usize>,
        mut traced: Traced,
        ctx: &BatchContext<'_>,
        writes: &mut Vec<StateWrite>,
    ) -> Result<(Traced, Vec<Missed>)> {
        let mut missed: Vec<Missed> = Vec::new();
        for (at, step) in steps.iter().enumerate() {
            // The rest of an input row set aside goes no further: an operator that
            // keeps state (an aggregation's fold, a join's hold) must not
            // take part of a row that comes back whole when it is retried.
            traced = without_set_aside(traced, &missed)?;
            let side = match entering == Some(at) {
                true => Side::Right,
                false => Side::Left,
            };
            let processed = step.operator.clone().process(traced, &ctx.at(side)).await?;
            for mut set_aside in processed.missed {
                // A row an earlier operator set aside is not set aside twice.
                set_aside
                    .origins
                    .retain(|o| !missed.iter().any(|m| m.origins.contains(o)));
                missed.push(set_aside);
            }
            writes.extend(processed.writes);
            traced = processed.traced;
        }
        // An input row that missed is set aside (or quarantined) whole: rows it
        // yielded through other matches would come again when it is retried.
        let traced = without_set_aside(traced, &missed)?;
        Ok((traced, missed))
    }

    /// The input rows of `input`'s stream that have no event time for its window TVF.
    pub fn rows_without_time(&self, batch: &RecordBatch, input: Input) -> Result<Vec<usize>> {
        let side = match input.is_source() {
            true => Side::Left,
            false => Side::Right,
        };
        let time_column = match (&self.window, &self.aligned, side) {
            // Over processing time, every row has the time it is read.
            (Some((tvf, _)), _, Side::Left) if tvf.processing_time => None,
            (Some((tvf, _)), _, Side::Left) => Some(tvf.time_column.as_str()),
            (None, Some(aligned), side) => aligned.query().time_column(side),
            _ => None,
        };
        match time_column {
            Some(time_column) => {
                let times = crate::window::event_times(batch, time_column)?;
                Ok((0..batch.num_rows())
                    .filter(|&row| times.is_null(row))
                    .collect())
            }
            None => Ok(Vec::new()),
        }
    }

    /// The target's columns, as [`Self::finish`] gives rows.
    pub fn target_schema(&self) -> SchemaRef {
        self.target.clone()
    }

    /// Runs the steps after the operator that holds rows, and casts to the target's schema.
    pub fn finish(&self, batch: RecordBatch) -> Result<RecordBatch> {
        let traced = Traced {
            origins: Vec::new(),
            batch,
            kinds: None,
        };
        Ok(self.finish_traced(traced)?.batch)
    }

    /// [`Self::finish`], keeping each row's origin and kind.
    pub fn finish_traced(&self, mut traced: Traced) -> Result<Traced> {
        for (_, step) in &self.post {
            traced = step.apply(traced)?;
        }
        let batch = conform(&traced.batch, &self.target)?;
        Ok(traced.with_batch(batch))
    }
}

/// `traced` without the rows of input rows that `missed` set aside.
fn without_set_aside(traced: Traced, missed: &[Missed]) -> Result<Traced> {
    if missed.iter().all(|m| m.origins.is_empty()) {
        return Ok(traced);
    }
    let set_aside: std::collections::HashSet<usize> = missed
        .iter()
        .flat_map(|m| m.origins.iter().copied())
        .collect();
    if !traced.origins.iter().any(|o| set_aside.contains(o)) {
        return Ok(traced);
    }
    let keep: BooleanArray = traced
        .origins
        .iter()
        .map(|o| Some(!set_aside.contains(o)))
        .collect();
    traced.filter(&keep)
}

/// The changes a table's stream carries, and the key they change rows by.
fn changelog_of(table: &strata_catalog::TableDef) -> (Changelog, Vec<String>) {
    match crate::validate::is_changelog(table) {
        true => (Changelog::Retracting, table.primary_key.clone()),
        false => (Changelog::AppendOnly, Vec::new()),
    }
}

/// The changes that come out of `steps` reading a stream of `start`'s, with
/// the key they change rows by; `seconds` are the changes of the second
/// inputs of the operators that read one, in order (of all the streams a
/// UNION ALL reads beside its first, the most changing).
fn changelog_through(
    start: (Changelog, Vec<String>),
    seconds: &[Changelog],
    steps: &[Step],
) -> (Changelog, Vec<String>) {
    let (mut changelog, mut key) = start;
    let mut seconds = seconds.iter();
    for step in steps {
        let operator: &dyn Operator = match step {
            Step::Stateless(stateless) => stateless,
            Step::Operator(operator) => operator.as_ref(),
        };
        let reads = match operator.reads_second_stream() {
            true => seconds
                .next()
                .map_or(changelog, |&second| changelog.max(second)),
            false => changelog,
        };
        let (emitted, emitted_key) = operator.emits(reads, &key);
        // A key passed through an operator that adds columns (a lookup's,
        // which may share its names) is no longer known for sure.
        key = match step {
            Step::Operator(_) if emitted_key == key => Vec::new(),
            _ => emitted_key,
        };
        changelog = emitted;
    }
    (changelog, key)
}

/// The upsert materializer before the target, if the steps' rows change
/// under a key the target's does not contain (a join's rows have none, a
/// Top-N's are its partition), and the target is upserted by its own (Flink
/// adds its `SinkUpsertMaterializer` there).
fn materializer(
    valid: &ValidPipeline,
    steps: &[Step],
    seconds: &[Changelog],
    output: &DFSchema,
) -> Result<Option<Arc<dyn Operator>>> {
    let target = &valid.target;
    if target.primary_key.is_empty() {
        return Ok(None);
    }
    let source = valid
        .streams()
        .next()
        .expect("a valid pipeline reads a stream");
    let (changelog, key) = changelog_through(changelog_of(source), seconds, steps);
    // The SELECT's columns are the target's, by position: rows keyed by
    // columns among the target's key each stand alone under a target key.
    let under_target_key = |name: &String| {
        output
            .fields()
            .iter()
            .position(|field| field.name() == name)
            .is_some_and(|at| target.primary_key.contains(target.schema.field(at).name()))
    };
    if changelog == Changelog::AppendOnly || (!key.is_empty() && key.iter().all(under_target_key)) {
        return Ok(None);
    }
    let key_columns = target
        .primary_key
        .iter()
        .map(|name| {
            target
                .schema
                .index_of(name)
                .map_err(|_| PipelineError::Invalid {
                    location: valid.pipeline.target.location.clone(),
                    message: format!(
                        "the primary key column {name} is not a column of {}",
                        target.name
                    ),
                    hint: None,
                })
        })
        .collect::<Result<Vec<_>>>()?;
    let materializer = crate::materialize::UpsertMaterializer::new(
        Arc::new(output.as_arrow().clone()),
        key_columns,
        target.primary_key.clone(),
    )?
    .expiring(Expiry::after(valid.pipeline.settings.state_ttl_ms));
    Ok(Some(Arc::new(materializer)))
}

/// Whether a step calls CURRENT_WATERMARK.
fn reads_current_watermark(steps: &[Step]) -> bool {
    steps.iter().any(|step| match step {
        Step::Stateless(step) => format!("{step:?}").contains("current_watermark"),
        Step::Operator(_) => false,
    })
}

/// Refuses CURRENT_WATERMARK where the watermark a row meets is not the
/// stream's as of the row: beside a second stream (whose watermark is its
/// own), an operator that runs rows through the steps again later (a retried
/// lookup would meet a later watermark), or in a step that runs on rows
/// emitted at a commit (`at_commit`: after an aggregation).
fn refuse_current_watermark_beside(
    pipeline: &crate::project::Pipeline,
    second_stream: bool,
    pre: &[Step],
    at_commit: bool,
) -> Result<()> {
    if crate::validate::first_call(&pipeline.query, &["current_watermark"]).is_none() {
        return Ok(());
    }
    let runs_again = pre.iter().find_map(|step| match step {
        Step::Operator(operator) if operator.runs_rows_again().is_some() => {
            Some(operator.kind().as_str())
        }
        _ => None,
    });
    let beside = match (second_stream, runs_again, at_commit) {
        (true, _, _) => "a second stream (each stream has its own watermark)".to_string(),
        (_, Some(kind), _) => format!(
            "a {kind} that runs rows again later (they would meet a later watermark than they first did)"
        ),
        (_, _, true) => {
            "after an aggregation (its rows come out at a commit, not as they are read)".to_string()
        }
        _ => return Ok(()),
    };
    Err(PipelineError::Invalid {
        location: pipeline.target.location.clone(),
        message: format!("CURRENT_WATERMARK {beside} is not supported"),
        hint: Some(
            "tell late rows apart in a pipeline of their own, over the stream as it is read"
                .to_string(),
        ),
    })
}

/// Flink's `table.exec.state.ttl` expires the state of every stateful
/// operator; one that keeps its state for good here yet (an unbounded
/// ROW_NUMBER, an OVER aggregation of a bounded frame) refuses the TTL rather
/// than silently keep it.
fn refuse_state_ttl_beside(
    pipeline: &crate::project::Pipeline,
    operators: &[PlacedOperator],
) -> Result<()> {
    if pipeline.settings.state_ttl_ms.is_none() {
        return Ok(());
    }
    let kept_for_good = operators
        .iter()
        .find(|placed| placed.operator.keeps_state_past_ttl());
    match kept_for_good {
        None => Ok(()),
        Some(placed) => Err(PipelineError::Invalid {
            location: pipeline.target.location.clone(),
            message: format!(
                "SET 'table.exec.state.ttl' beside {} {}, whose state does not expire yet (Flink would expire it)",
                placed.operator.kind().as_str(),
                placed.id
            ),
            hint: Some("the TTL bounds the state of regular joins, GROUP BY, LAG, Top-N, deduplication and OVER … UNBOUNDED PRECEDING; run the other operator in a pipeline of its own, without the setting".to_string()),
        }),
    }
}

/// An operator on the processing-time clock runs the pipeline on it: beside
/// another that waits for the event-time watermark (a window of event time,
/// a join of streams, another aggregation that holds rows), one of them
/// would wait for the wrong time.
fn refuse_processing_time_beside(
    pipeline: &crate::project::Pipeline,
    window: Option<&(WindowTvf, SchemaRef)>,
    seconds: &[SecondInput],
    operators: &[PlacedOperator],
) -> Result<()> {
    let Some(on_clock) = operators
        .iter()
        .find(|placed| placed.operator.runs_on_processing_time())
    else {
        return Ok(());
    };
    let waits_for_versions = |placed: &&PlacedOperator| {
        placed
            .operator
            .runs_rows_again()
            .is_some_and(|again| again.when == RunAgain::AtVersionsWatermark)
    };
    let beside = operators
        .iter()
        .find(|placed| placed.id != on_clock.id && placed.operator.holds_rows())
        .map(|placed| format!("the {} {}", placed.operator.kind().as_str(), placed.id))
        .or_else(|| {
            operators
                .iter()
                .find(waits_for_versions)
                .map(|placed| format!("the event-time temporal join {}", placed.id))
        })
        .or_else(|| {
            window.map(|(tvf, _)| format!("a window TVF over {}", tvf.time_column))
        })
        .or_else(|| (!seconds.is_empty()).then(|| "a join of streams".to_string()))
        .or_else(|| {
            crate::validate::first_call(&pipeline.query, &["current_watermark"]).map(|_| {
                "CURRENT_WATERMARK (the pipeline's watermark is the clock then, not the event time's)"
                    .to_string()
            })
        });
    match beside {
        None => Ok(()),
        Some(other) => Err(PipelineError::Invalid {
            location: pipeline.target.location.clone(),
            message: format!(
                "the {} {} (ordered by processing time) beside {other}: the pipeline runs on one clock",
                on_clock.operator.kind().as_str(),
                on_clock.id
            ),
            hint: Some(
                "write one of them to a DWD table, and run the other in the next pipeline"
                    .to_string(),
            ),
        }),
    }
}

/// Whether a join's key columns may be NULL on either side (a NOT IN's
/// three-valued logic then differs from NOT EXISTS).
fn nullable_keys(join: &datafusion::logical_expr::Join) -> bool {
    join.on.iter().any(|(left, right)| {
        left.nullable(join.left.schema()).unwrap_or(true)
            || right.nullable(join.right.schema()).unwrap_or(true)
    })
}

/// Whether the column `name` reaches the top of `plan` unchanged from its table.
fn passes_through(plan: &LogicalPlan, name: &str) -> bool {
    use datafusion::logical_expr::Expr;
    match plan {
        LogicalPlan::TableScan(scan) => {
            scan.projected_schema.has_column_with_unqualified_name(name)
        }
        LogicalPlan::SubqueryAlias(alias) => passes_through(&alias.input, name),
        LogicalPlan::Filter(filter) => passes_through(&filter.input, name),
        LogicalPlan::Projection(projection) => projection.expr.iter().any(|expr| {
            matches!(expr, Expr::Column(column) if column.name == name)
                && passes_through(&projection.input, name)
        }),
        _ => false,
    }
}

/// Planning folds `NOW()` and friends into one constant, so every row would
/// get the moment the pipeline started: refuse them with a hint.
fn refuse_wall_clock_functions(valid: &ValidPipeline) -> Result<()> {
    const WALL_CLOCK: [&str; 6] = [
        "now",
        "current_timestamp",
        "current_date",
        "current_time",
        "localtimestamp",
        "localtime",
    ];
    match crate::validate::first_call(&valid.pipeline.query, &WALL_CLOCK) {
        None => Ok(()),
        Some((name, start)) => Err(PipelineError::Invalid {
            location: valid.pipeline.location(start.line, start.column),
            message: format!("{}() would be evaluated once, when the pipeline starts", name.to_uppercase()),
            hint: Some("for processing time, declare `proc_time AS PROCTIME()` on the source table and select that column".to_string()),
        }),
    }
}

struct Compiler<'a> {
    state: &'a SessionState,
    unsupported: &'a dyn Fn(String) -> PipelineError,
    window: Option<&'a WindowTvf>,
    allowed_lateness_ms: i64,
    distinct_buckets: u32,
    /// How long a regular join keeps a row after its last write, if not for good.
    state_ttl_ms: Option<i64>,
    /// The row-numbering windows that a filter bounds, found as the filter is compiled.
    rank_limits: Vec<(usize, u64)>,
    /// The steps before the aggregation, once it has been found.
    pre: Option<Vec<Step>>,
    aggregate: Option<AggregatePlan>,
    /// An aggregation of the aggregation's results (Nexmark q4's AVG of
    /// MAXes), with the steps between the two.
    outer: Option<(Vec<Step>, AggregatePlan)>,
    /// Dimensions of lookup joins not compiled yet.
    lookups: Vec<ResolvedLookup>,
    /// Where the pipeline is, for errors.
    location: strata_catalog::SourceLocation,
    /// The tables read as streams, with their event-time columns.
    streams: Vec<(strata_catalog::TableName, Option<String>)>,
    /// The changes each stream carries, in the same order.
    stream_changelogs: Vec<Changelog>,
    /// The streams joined to the source, as they are compiled.
    seconds: Vec<CompiledSecond>,
    /// The LAG steps and lookup joins, as they are compiled.
    lags: Vec<Arc<LagStep>>,
    joins: Vec<Arc<LookupJoin>>,
    interval: Option<Arc<IntervalJoin>>,
}

/// A stream joined to the source, as the compiler finds it: its table, its
/// own steps, the position of the operator it enters at, and the changes it carries.
struct CompiledSecond {
    table: strata_catalog::TableName,
    steps: Vec<Step>,
    at: usize,
    changelog: Changelog,
}

impl Compiler<'_> {
    /// For each operator that reads a second input, in order, the changes it
    /// reads there (of a UNION ALL's several, the most changing).
    fn second_changelogs(&self) -> Vec<Changelog> {
        let mut by_operator: Vec<(usize, Changelog)> = Vec::new();
        for second in &self.seconds {
            match by_operator.iter_mut().find(|(at, _)| *at == second.at) {
                Some((_, changelog)) => *changelog = (*changelog).max(second.changelog),
                None => by_operator.push((second.at, second.changelog)),
            }
        }
        by_operator.sort_by_key(|(at, _)| *at);
        by_operator
            .into_iter()
            .map(|(_, changelog)| changelog)
            .collect()
    }

    /// The position of the first stream read beside the source that `is`
    /// picks and no join or UNION ALL reads yet.
    fn unjoined_stream(&self, is: impl Fn(&strata_catalog::TableName) -> bool) -> Option<usize> {
        (1..self.streams.len()).find(|&at| {
            let name = &self.streams[at].0;
            is(name) && !self.seconds.iter().any(|second| &second.table == name)
        })
    }

    fn context(&self) -> PlanContext<'_> {
        PlanContext {
            state: self.state,
            unsupported: self.unsupported,
            rank_limits: &self.rank_limits,
            state_ttl_ms: self.state_ttl_ms,
            event_times: &self.streams,
            input_changelog: Changelog::AppendOnly,
        }
    }

    /// The changes the steps compiled so far emit: from the sources, or,
    /// above an aggregation, from its results (which take their changes
    /// back for the operators over them).
    fn changelog_after(&self, steps: &[Step]) -> Changelog {
        let aggregation = self
            .outer
            .as_ref()
            .map(|(_, plan)| plan)
            .or(self.aggregate.as_ref());
        let read = self.read_through(self.pre.as_deref().unwrap_or_default());
        let start = match aggregation {
            Some(plan) if plan.updates() || read != Changelog::AppendOnly => {
                (Changelog::Retracting, plan.group_columns())
            }
            Some(_) => (Changelog::AppendOnly, Vec::new()),
            None => (self.stream_changelogs[0], Vec::new()),
        };
        changelog_through(start, &self.second_changelogs(), steps).0
    }

    /// The changes the streams carry through `steps` that read them as read.
    fn read_through(&self, steps: &[Step]) -> Changelog {
        changelog_through(
            (self.stream_changelogs[0], Vec::new()),
            &self.second_changelogs(),
            steps,
        )
        .0
    }

    fn physical(
        &self,
        expr: &datafusion::logical_expr::Expr,
        schema: &DFSchema,
    ) -> Result<Arc<dyn PhysicalExpr>> {
        self.context().physical(expr, schema)
    }

    fn compile(&mut self, plan: &LogicalPlan, steps: &mut Vec<Step>) -> Result<()> {
        // Operators that register a planner come first. One above the aggregation
        // lands among the steps after it, which refuse anything but stateless steps.
        for planner in planners() {
            if let Some(input) = planner.input_of(plan) {
                self.compile(input, steps)?;
                let ctx = PlanContext {
                    input_changelog: self.changelog_after(steps),
                    ..self.context()
                };
                steps.push(Step::Operator(planner.plan(plan, &ctx)?));
                return Ok(());
            }
        }
        match plan {
            LogicalPlan::TableScan(scan) => {
                if !scan.filters.is_empty() {
                    return Err((self.unsupported)(
                        "a filter pushed into the scan".to_string(),
                    ));
                }
                if let Some(indices) = &scan.projection {
                    let names = scan
                        .projected_schema
                        .fields()
                        .iter()
                        .map(|field| field.name().clone())
                        .collect();
                    steps.push(Step::Stateless(Stateless::Select {
                        indices: indices.clone(),
                        names,
                    }));
                }
                Ok(())
            }
            LogicalPlan::SubqueryAlias(alias) => self.compile(&alias.input, steps),
            LogicalPlan::Filter(filter) => {
                if let Some((window, limit)) = crate::row_number::rank_limit(filter) {
                    self.rank_limits
                        .push((window as *const LogicalPlan as usize, limit));
                }
                self.compile(&filter.input, steps)?;
                steps.push(Step::Stateless(Stateless::Filter(
                    self.physical(&filter.predicate, filter.input.schema())?,
                )));
                Ok(())
            }
            LogicalPlan::Projection(projection) => {
                self.compile(&projection.input, steps)?;
                let exprs = projection
                    .expr
                    .iter()
                    .map(|expr| self.physical(expr, projection.input.schema()))
                    .collect::<Result<Vec<_>>>()?;
                steps.push(Step::Stateless(Stateless::Project {
                    exprs,
                    schema: Arc::new(projection.schema.as_arrow().clone()),
                }));
                Ok(())
            }
            LogicalPlan::Window(window) if self.aggregate.is_none() => {
                self.compile(&window.input, steps)?;
                for expr in &window.window_expr {
                    let lag = Arc::new(self.compile_lag(expr, window.input.schema())?);
                    self.lags.push(lag.clone());
                    steps.push(Step::Operator(lag));
                }
                Ok(())
            }
            LogicalPlan::Unnest(unnest) if self.aggregate.is_none() => {
                self.compile(&unnest.input, steps)?;
                steps.push(Step::Operator(Arc::new(Unnest::new(unnest))));
                Ok(())
            }
            LogicalPlan::Union(union) => {
                let operator = self.compile_union(union, steps)?;
                steps.push(Step::Operator(operator));
                Ok(())
            }
            LogicalPlan::Join(join) if self.aggregate.is_none() && !self.is_lookup(join) => {
                let operator = self.compile_stream_join(join, steps)?;
                steps.push(Step::Operator(operator));
                Ok(())
            }
            LogicalPlan::Join(join) if self.aggregate.is_none() => {
                let lookup = Arc::new(self.compile_lookup(join, steps)?);
                self.joins.push(lookup.clone());
                steps.push(Step::Operator(lookup));
                Ok(())
            }
            LogicalPlan::Aggregate(aggregate) => {
                self.compile(&aggregate.input, steps)?;
                let held = steps.iter().find_map(|step| match step {
                    Step::Operator(operator) if operator.holds_rows() => Some(operator.kind()),
                    _ => None,
                });
                if let Some(kind) = held {
                    return Err((self.unsupported)(format!(
                        "a GROUP BY over the rows of an {} (they wait for the watermark)",
                        kind.as_str()
                    )));
                }
                if self.aggregate.is_none() {
                    let read = self.read_through(steps);
                    self.pre = Some(std::mem::take(steps));
                    self.aggregate = Some(self.compile_aggregate(aggregate)?.reading(read));
                    return Ok(());
                }
                if self.window.is_some() || self.outer.is_some() {
                    return Err((self.unsupported)(
                        "an aggregation of a window's results, or a third aggregation,".to_string(),
                    ));
                }
                let outer = self
                    .compile_aggregate(aggregate)?
                    .reading(self.changelog_after(steps));
                self.outer = Some((std::mem::take(steps), outer));
                Ok(())
            }
            other => Err((self.unsupported)(format!(
                "{} (in this query)",
                other.display()
            ))),
        }
    }

    /// `LAG(value [, 1 [, default]]) OVER (PARTITION BY …)`, the one window
    /// function a stream runs (in arrival order).
    fn compile_lag(
        &self,
        expr: &datafusion::logical_expr::Expr,
        input: &DFSchema,
    ) -> Result<LagStep> {
        use datafusion::logical_expr::{Expr, WindowFunctionDefinition};
        let inner = match expr {
            Expr::Alias(alias) => alias.expr.as_ref(),
            other => other,
        };
        let refuse = || {
            (self.unsupported)(format!(
                "the window function {expr} (streams run LAG(value [, 1 [, default]]) OVER (PARTITION BY …) in arrival order, aggregates OVER (PARTITION BY … ORDER BY the event or processing time ROWS or RANGE … PRECEDING), and ROW_NUMBER() OVER (PARTITION BY … ORDER BY …) under WHERE rn <= N, each in a SELECT of its own)"
            ))
        };
        let Expr::WindowFunction(function) = inner else {
            return Err(refuse());
        };
        let is_lag = matches!(&function.fun, WindowFunctionDefinition::WindowUDF(udf) if udf.name().eq_ignore_ascii_case("lag"));
        let params = &function.params;
        if !is_lag || params.filter.is_some() || params.distinct {
            return Err(refuse());
        }
        let (value, default) = match params.args.as_slice() {
            [_, offset] | [_, offset, _] if !is_one(offset) => {
                let offset = match offset {
                    Expr::Literal(value, _) => value.to_string(),
                    other => other.to_string(),
                };
                return Err((self.unsupported)(format!(
                    "LAG with the offset {offset} (streams look back one row)"
                )));
            }
            [value] | [value, _] => (value, None),
            [value, _, default] => (value, Some(default)),
            _ => return Err(refuse()),
        };
        let typed = |expr: &Expr| -> Result<(Arc<dyn PhysicalExpr>, DataType)> {
            let data_type = expr
                .get_type(input)
                .map_err(|err| (self.unsupported)(format!("{expr} ({err})")))?;
            Ok((self.physical(expr, input)?, data_type))
        };
        let partition = params
            .partition_by
            .iter()
            .map(typed)
            .collect::<Result<Vec<_>>>()?;
        Ok(LagStep::new(
            partition,
            typed(value)?,
            default.map(|d| self.physical(d, input)).transpose()?,
        )?
        .expiring(Expiry::after(self.state_ttl_ms)))
    }

    /// A join whose right side is a dimension named `FOR SYSTEM_TIME AS OF`:
    /// the probe side's steps first, then the lookup.
    /// Whether a join's right side is one of the lookup joins' dimensions.
    fn is_lookup(&self, join: &datafusion::logical_expr::Join) -> bool {
        dimension_side(&join.right).is_some_and(|(alias, _, _)| {
            self.lookups
                .iter()
                .any(|l| l.spec.alias.eq_ignore_ascii_case(&alias))
        })
    }

    /// A join of the pipeline's two streams on equal keys: an interval join
    /// when the rest of its ON clause bounds one stream's event time by the
    /// other's from below and above, a regular join otherwise (as in Flink,
    /// which runs `b.ts BETWEEN a.ts AND a.expires` as a regular join whose
    /// condition filters the pairs, keeping every row).
    fn compile_stream_join(
        &mut self,
        join: &datafusion::logical_expr::Join,
        steps: &mut Vec<Step>,
    ) -> Result<Arc<dyn Operator>> {
        use datafusion::logical_expr::{ExprSchemable, JoinType};
        let hint = "join two streams ON equal keys (a regular join, which keeps every row of both), or ON equal keys AND b.ts BETWEEN a.ts - INTERVAL '30' MINUTE AND a.ts over both tables' WATERMARK FOR columns (an interval join, which forgets rows the watermarks passed)";
        let location = self.location.clone();
        let refuse = |message: String| PipelineError::Invalid {
            location: location.clone(),
            message,
            hint: Some(hint.to_string()),
        };
        if self.streams.len() < 2 {
            return Err(refuse(
                "a join of two tables that is neither a lookup join (FOR SYSTEM_TIME AS OF) nor a join of two streams".to_string(),
            ));
        }
        // The right side is a stream of its own; the left, the source or what
        // the joins before this one made of it (a JOIN b ON … JOIN c ON …).
        self.compile(&join.left, steps)?;
        let right_at = self.unjoined_stream(|name| reads_only(&join.right, name));
        let Some(right_at) = right_at else {
            return Err(refuse(format!(
                "a join of streams whose right side is not one of {} itself, each joined once (join each stream to what the joins before it made: a JOIN b ON … JOIN c ON …)",
                self.streams[1..]
                    .iter()
                    .map(|(name, _)| name.to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        };
        let (right_table, right_time) = self.streams[right_at].clone();
        let left_time = self.streams[0].1.clone();
        let (left, right) = (join.left.schema(), join.right.schema());
        let band = match (&join.filter, &left_time, &right_time) {
            (Some(filter), Some(left_time), Some(right_time)) => {
                crate::interval::band(filter, left, right, left_time, right_time)
            }
            _ => None,
        };
        if join.null_equality == NullEquality::NullEqualsNull {
            return Err(refuse(
                "keys compared with IS NOT DISTINCT FROM in a join of two streams (their NULL keys join nothing)".to_string(),
            ));
        }
        let kind = match (join.join_type, band) {
            (JoinType::Inner, _) => JoinKind::Inner,
            (JoinType::Left, _) => JoinKind::Left,
            (JoinType::Right, _) => JoinKind::Right,
            (JoinType::Full, _) => JoinKind::Full,
            (JoinType::LeftSemi, None) => JoinKind::Semi,
            // NOT IN of columns that cannot be NULL on either side is NOT
            // EXISTS; of one that may be, SQL's three-valued logic.
            (JoinType::LeftAnti, None) if join.null_aware && nullable_keys(join) => {
                if join.on.len() != 1 || join.filter.is_some() {
                    return Err(refuse(
                        "NOT IN over a stream of several columns, or of a correlated subquery, that may be NULL (declare the columns NOT NULL, or write NOT EXISTS, which Strata runs as an anti join)".to_string(),
                    ));
                }
                JoinKind::NotIn
            }
            (JoinType::LeftAnti, None) => JoinKind::Anti,
            (other, Some(_)) => {
                return Err(refuse(format!(
                    "a {other} interval join (interval joins run as INNER, LEFT, RIGHT or FULL joins; a regular join of the two streams, without the band of time, may be semi or anti)"
                )));
            }
            (other, None) => {
                return Err(refuse(format!(
                    "a {other} join of two streams (regular joins run as INNER, LEFT, RIGHT or FULL joins, and as semi and anti joins of IN, EXISTS and NOT EXISTS)"
                )));
            }
        };
        if band.is_some() && self.streams.len() > 2 {
            return Err(refuse(format!(
                "an interval join in a pipeline that joins more than two streams (its band of time is over {right_table}'s and the source's own event times, whose watermarks the other joins do not carry)"
            )));
        }
        if self.interval.is_some() {
            return Err(refuse(
                "a join after an interval join (its rows wait for the watermarks; write the interval join to a DWD table, and join that table in the next pipeline)".to_string(),
            ));
        }
        let mut right_steps = Vec::new();
        self.compile(&join.right, &mut right_steps)?;
        if right_steps
            .iter()
            .any(|step| matches!(step, Step::Operator(_)))
        {
            return Err(refuse(
                "lookups, unnest or LAG on the right side of a join of two streams".to_string(),
            ));
        }
        self.seconds.push(CompiledSecond {
            table: right_table.clone(),
            steps: right_steps,
            at: steps.len(),
            changelog: self.stream_changelogs[right_at],
        });
        let mut left_keys = Vec::new();
        let mut right_keys = Vec::new();
        let mut key_types = Vec::new();
        for (l, r) in &join.on {
            key_types.push(
                l.get_type(left)
                    .map_err(|err| refuse(format!("the join key {l} ({err})")))?,
            );
            left_keys.push(self.physical(l, left)?);
            right_keys.push(self.physical(r, right)?);
        }
        if key_types.is_empty() {
            return Err(refuse(
                "a join of two streams without an equality between their columns".to_string(),
            ));
        }
        let output = Arc::new(join.schema.as_arrow().clone());
        let arrow_schema = |schema: &DFSchema| Arc::new(schema.as_arrow().clone());
        let (Some((lower_ms, upper_ms)), Some(filter), Some(left_time), Some(right_time)) =
            (band, &join.filter, left_time, right_time)
        else {
            // The rest of the ON clause judges pairs: the left columns, then the right ones.
            let pairs = left
                .join(right)
                .map_err(|err| refuse(format!("the join's columns ({err})")))?;
            let filter = match &join.filter {
                Some(filter) => Some(self.physical(filter, &pairs)?),
                None => None,
            };
            let side = |schema, keys| JoinSide { schema, keys };
            return Ok(Arc::new(
                RegularJoin::new(
                    kind,
                    side(arrow_schema(left), left_keys),
                    side(arrow_schema(right), right_keys),
                    key_types,
                    filter,
                    output,
                )?
                .expiring(Expiry::after(self.state_ttl_ms)),
            ));
        };
        for (input, time) in [(&join.left, &left_time), (&join.right, &right_time)] {
            if !passes_through(input, time) {
                return Err(refuse(format!(
                    "an interval join over a {time} that is computed before the join (the watermark follows the table's own {time})"
                )));
            }
        }
        let side_input = |schema: &DFSchema, keys, time| SideInput {
            schema: arrow_schema(schema),
            keys,
            time,
        };
        let interval = Arc::new(IntervalJoin::new(IntervalJoinParts {
            kind,
            left: side_input(left, left_keys, left_time),
            right: side_input(right, right_keys, right_time),
            key_types,
            filter: self.physical(filter, &join.schema)?,
            lower_ms,
            upper_ms,
            output,
        })?);
        self.interval = Some(interval.clone());
        Ok(interval)
    }

    /// `UNION ALL` of the pipeline's streams, each through stateless steps of
    /// its own: the first input is the source's (or what the joins before it
    /// made of it), each other one a stream that enters the union.
    fn compile_union(
        &mut self,
        union: &datafusion::logical_expr::Union,
        steps: &mut Vec<Step>,
    ) -> Result<Arc<dyn Operator>> {
        let location = self.location.clone();
        let refuse = |message: String| {
            PipelineError::Invalid {
            location: location.clone(),
            message,
            hint: Some("UNION ALL streams, each SELECTed from one Kafka table (with filters and projections): SELECT … FROM a UNION ALL SELECT … FROM b UNION ALL SELECT … FROM c".to_string()),
        }
        };
        let Some((first, others)) = union.inputs.split_first() else {
            return Err(refuse("a UNION ALL of no inputs".to_string()));
        };
        if others.is_empty() || self.streams.len() < 2 {
            return Err(refuse(
                "a UNION ALL that does not read two different tables as streams".to_string(),
            ));
        }
        self.compile(first, steps)?;
        if self.aggregate.is_some() {
            return Err(refuse(
                "a UNION ALL of an aggregation's results".to_string(),
            ));
        }
        for input in others {
            let Some(at) = self.unjoined_stream(|table| reads_only(input, table)) else {
                return Err(refuse(
                    "a UNION ALL whose next input does not read one table alone, a table that no other input or join reads".to_string(),
                ));
            };
            let mut input_steps = Vec::new();
            self.compile(input, &mut input_steps)?;
            if self.aggregate.is_some()
                || input_steps
                    .iter()
                    .any(|step| matches!(step, Step::Operator(_)))
            {
                return Err(refuse(
                    "an aggregation, lookups, unnest or LAG in an input of a UNION ALL after the first".to_string(),
                ));
            }
            self.seconds.push(CompiledSecond {
                table: self.streams[at].0.clone(),
                steps: input_steps,
                at: steps.len(),
                changelog: self.stream_changelogs[at],
            });
        }
        Ok(Arc::new(crate::union::UnionAll::new(Arc::new(
            union.schema.as_arrow().clone(),
        ))))
    }

    fn compile_lookup(
        &mut self,
        join: &datafusion::logical_expr::Join,
        steps: &mut Vec<Step>,
    ) -> Result<LookupJoin> {
        use datafusion::logical_expr::{Expr, JoinType};
        let (alias, scan, nodes) = dimension_side(&join.right).ok_or_else(|| {
            (self.unsupported)(format!(
                "a join other than a lookup join (JOIN dim FOR SYSTEM_TIME AS OF o.proc_time …), here with {}",
                join.right.display_indent()
            ))
        })?;
        let position = self
            .lookups
            .iter()
            .position(|l| l.spec.alias.eq_ignore_ascii_case(&alias))
            .ok_or_else(|| {
                (self.unsupported)(format!(
                    "joining {alias} without FOR SYSTEM_TIME AS OF (only lookup joins)"
                ))
            })?;
        let resolved = self.lookups.remove(position);
        match join.join_type {
            JoinType::Inner | JoinType::Left => {}
            other => {
                return Err((self.unsupported)(format!("a {other} lookup join")));
            }
        }
        self.compile(&join.left, steps)?;
        let left = join.left.schema();
        let mut probe_keys = Vec::new();
        let mut key_columns = Vec::new();
        let mut key_types = Vec::new();
        for (probe, dimension) in &join.on {
            let column = match dimension {
                Expr::Column(c) => c,
                Expr::Cast(datafusion::logical_expr::Cast { expr, .. })
                | Expr::TryCast(datafusion::logical_expr::TryCast { expr, .. })
                    if matches!(expr.as_ref(), Expr::Column(_)) =>
                {
                    let Expr::Column(c) = expr.as_ref() else {
                        unreachable!("matched above")
                    };
                    c
                }
                other => {
                    return Err((self.unsupported)(format!(
                        "the lookup key {other} (compare the dimension's columns themselves, e.g. ON o.user_id = u.id)"
                    )));
                }
            };
            // SQL compares both sides as one type: the probe's, after coercion.
            let key_type = probe
                .get_type(left)
                .map_err(|err| (self.unsupported)(format!("the lookup key {probe} ({err})")))?;
            probe_keys.push(self.physical(probe, left)?);
            key_columns.push(column.name.clone());
            key_types.push(key_type);
        }
        if key_columns.is_empty() {
            return Err((self.unsupported)(format!(
                "the lookup join of {alias} without an equality on its columns"
            )));
        }
        if let Dimension::Versioned(table) = &resolved.dimension {
            let mut on: Vec<&String> = key_columns.iter().collect();
            let mut primary: Vec<&String> = table.primary_key.iter().collect();
            on.sort();
            primary.sort();
            if on != primary {
                return Err(PipelineError::Invalid {
                    location: resolved.spec.table.location.clone(),
                    message: format!(
                        "the temporal join of {alias} equates ({}), but {}'s versions are kept by its primary key ({})",
                        key_columns.join(", "),
                        resolved.def.name,
                        table.primary_key.join(", ")
                    ),
                    hint: Some(
                        "join ON the versioned table's primary key columns, each equal to a probe column or expression"
                            .to_string(),
                    ),
                });
            }
        }
        let side = DimensionSide {
            scan: scan
                .projection
                .clone()
                .unwrap_or_else(|| (0..scan.source.schema().fields().len()).collect()),
            steps: nodes
                .iter()
                .rev()
                .map(|node| {
                    Ok(match node {
                        SideNode::Filter(predicate, schema) => {
                            SideStep::Filter(self.physical(predicate, schema)?)
                        }
                        SideNode::Select(columns) => SideStep::Select(columns.clone()),
                    })
                })
                .collect::<Result<Vec<_>>>()?,
        };
        let join_filter = join
            .filter
            .as_ref()
            .map(|filter| self.physical(filter, &join.schema))
            .transpose()?;
        let output = crate::lookup::output_schema(left.as_arrow(), join.right.schema().as_arrow());
        let filtered_by_where = resolved.spec.left_join && join.join_type == JoinType::Inner;
        if let Dimension::Keyed(table) = &resolved.dimension
            && let Some(why) = table.refuses_keys(&key_types)
        {
            return Err((self.unsupported)(why));
        }
        LookupJoin::new(LookupJoinParts {
            options: resolved.def.lookup.clone(),
            dimension_schema: resolved.def.schema.clone(),
            spec: resolved.spec,
            dimension: resolved.dimension,
            probe_keys,
            key_columns,
            key_types,
            filtered_by_where,
            side,
            join_filter,
            output,
        })
    }

    fn compile_aggregate(
        &self,
        aggregate: &datafusion::logical_expr::Aggregate,
    ) -> Result<AggregatePlan> {
        use datafusion::logical_expr::Expr;
        let input = aggregate.input.schema();
        let mut keys = 0;
        let mut groups = Vec::new();
        for expr in &aggregate.group_expr {
            let role = match expr {
                Expr::Column(column) if self.window.is_some() && column.name == WINDOW_START => {
                    GroupRole::WindowStart
                }
                Expr::Column(column) if self.window.is_some() && column.name == WINDOW_END => {
                    GroupRole::WindowEnd
                }
                Expr::Column(column) if self.window.is_some() && column.name == WINDOW_TIME => {
                    GroupRole::WindowTime
                }
                Expr::GroupingSet(_) => {
                    return Err((self.unsupported)(
                        "GROUPING SETS, CUBE and ROLLUP".to_string(),
                    ));
                }
                _ => {
                    keys += 1;
                    GroupRole::Key(keys - 1)
                }
            };
            let data_type = expr
                .get_type(input)
                .map_err(|err| (self.unsupported)(format!("grouping by {expr} ({err})")))?;
            groups.push((self.physical(expr, input)?, role, data_type));
        }
        let group_count = aggregate.group_expr.len();
        let mut calls = Vec::new();
        for (index, expr) in aggregate.aggr_expr.iter().enumerate() {
            let inner = match expr {
                Expr::Alias(alias) => alias.expr.as_ref(),
                other => other,
            };
            let Expr::AggregateFunction(function) = inner else {
                return Err((self.unsupported)(format!("the aggregate {expr}")));
            };
            let params = &function.params;
            let name = function.func.name().to_ascii_lowercase();
            let kind = AggFunction::from_name(&name, params.distinct).ok_or_else(|| {
                (self.unsupported)(format!(
                    "the aggregate {}{} (streaming aggregates are COUNT, SUM, MIN, MAX, AVG, COUNT(DISTINCT) and APPROX_DISTINCT)",
                    name.to_uppercase(),
                    if params.distinct { " DISTINCT" } else { "" }
                ))
            })?;
            let [arg] = params.args.as_slice() else {
                return Err((self.unsupported)(format!(
                    "{expr} with {} arguments",
                    params.args.len()
                )));
            };
            let input_type = arg
                .get_type(input)
                .map_err(|err| (self.unsupported)(format!("{expr} ({err})")))?;
            let filter = params
                .filter
                .as_ref()
                .map(|filter| self.physical(filter, input))
                .transpose()?;
            let output = aggregate
                .schema
                .field(group_count + index)
                .data_type()
                .clone();
            let call = AggregateCall::new(
                kind,
                self.physical(arg, input)?,
                filter,
                input_type.clone(),
                output,
                self.distinct_buckets,
            )
            .ok_or_else(|| (self.unsupported)(format!("{expr} over {input_type}")))?;
            calls.push(call);
        }
        Ok(AggregatePlan::new(
            self.window.map(|tvf| tvf.kind),
            self.allowed_lateness_ms,
            groups,
            calls,
            Arc::new(aggregate.schema.as_arrow().clone()),
        )?
        .expiring(Expiry::after(self.state_ttl_ms)))
    }
}

/// A node above a dimension's scan: a condition (with the schema it reads),
/// or a selection of columns.
enum SideNode {
    Filter(datafusion::logical_expr::Expr, DFSchema),
    Select(Vec<usize>),
}

/// The dimension side of a join: its alias (or table name), its scan, and the
/// nodes above the scan, top first; `None` when the side is not one table.
/// Whether every table `plan` scans is `table`.
fn reads_only(plan: &LogicalPlan, table: &strata_catalog::TableName) -> bool {
    let mut only = true;
    let mut any = false;
    let _ = plan.apply(|node| {
        if let LogicalPlan::TableScan(scan) = node {
            any = true;
            only &= scan.table_name.table() == table.name
                && scan.table_name.schema() == Some(table.space.as_str());
        }
        Ok(datafusion::common::tree_node::TreeNodeRecursion::Continue)
    });
    any && only
}

fn dimension_side(
    plan: &LogicalPlan,
) -> Option<(String, &datafusion::logical_expr::TableScan, Vec<SideNode>)> {
    use datafusion::logical_expr::Expr;
    let mut alias = None;
    let mut nodes = Vec::new();
    let mut node = plan;
    loop {
        match node {
            LogicalPlan::SubqueryAlias(sub) => {
                alias.get_or_insert_with(|| sub.alias.table().to_string());
                node = &sub.input;
            }
            LogicalPlan::Filter(filter) => {
                nodes.push(SideNode::Filter(
                    filter.predicate.clone(),
                    filter.input.schema().as_ref().clone(),
                ));
                node = &filter.input;
            }
            LogicalPlan::Projection(projection) => {
                let input = projection.input.schema();
                let columns = projection
                    .expr
                    .iter()
                    .map(|expr| match expr {
                        Expr::Column(column) => input.index_of_column(column).ok(),
                        _ => None,
                    })
                    .collect::<Option<Vec<usize>>>()?;
                nodes.push(SideNode::Select(columns));
                node = &projection.input;
            }
            LogicalPlan::TableScan(scan) if scan.filters.is_empty() => {
                let name = alias.unwrap_or_else(|| scan.table_name.table().to_string());
                return Some((name, scan, nodes));
            }
            _ => return None,
        }
    }
}

/// Whether a LAG offset is the literal 1.
fn is_one(expr: &datafusion::logical_expr::Expr) -> bool {
    use datafusion::common::ScalarValue;
    matches!(
        expr,
        datafusion::logical_expr::Expr::Literal(
            ScalarValue::Int64(Some(1))
                | ScalarValue::Int32(Some(1))
                | ScalarValue::UInt64(Some(1))
                | ScalarValue::UInt32(Some(1)),
            _
        )
    )
}

/// Gives the compiled steps their ids, in order.
fn place(steps: Vec<Step>, ids: &mut OperatorIds) -> Vec<PlacedOperator> {
    steps
        .into_iter()
        .map(|step| {
            let operator: Arc<dyn Operator> = match step {
                Step::Stateless(step) => Arc::new(step),
                Step::Operator(operator) => operator,
            };
            PlacedOperator {
                id: ids.next(operator.kind(), operator.name().as_deref()),
                operator,
            }
        })
        .collect()
}
