//! Where operators come from: each kind of operator that a node of
//! DataFusion's logical plan becomes has a planner, registered in
//! [`crate::registry`], so that a new operator is its own module plus one line
//! there.
//!
//! ```text
//!   compiler, at a plan node ──▶ each registered planner: input_of(node)?
//!        Some(input) ──▶ compile input first ──▶ planner.plan(node, ctx) ──▶ the operator, next in the plan
//!        None for all ──▶ the compiler's own cases (scan, filter, project, joins, aggregation)
//! ```

use std::sync::Arc;

use datafusion::common::DFSchema;
use datafusion::execution::SessionState;
use datafusion::logical_expr::{Expr, LogicalPlan};
use datafusion::physical_expr::PhysicalExpr;

use super::Operator;
use crate::error::{PipelineError, Result};

/// What a planner may use of the compiler.
pub struct PlanContext<'a> {
    pub(crate) state: &'a SessionState,
    pub(crate) unsupported: &'a dyn Fn(String) -> PipelineError,
    /// The windows a filter above bounds the row number of (by the node's
    /// address in the plan being compiled), with the bound.
    pub(crate) rank_limits: &'a [(usize, u64)],
    /// `SET 'table.exec.state.ttl'`, if the pipeline sets it.
    pub(crate) state_ttl_ms: Option<i64>,
    /// The streams' event-time columns (their `WATERMARK FOR` columns).
    pub(crate) event_times: &'a [(strata_catalog::TableName, Option<String>)],
    /// The changes the operator's input carries (a Top-N over an
    /// aggregation's results reads its retractions).
    pub input_changelog: super::Changelog,
}

impl PlanContext<'_> {
    /// The N of a `WHERE rn <= N` above `node`, a window numbering rows, if there is one.
    pub fn rank_limit(&self, node: &LogicalPlan) -> Option<u64> {
        let at = node as *const LogicalPlan as usize;
        self.rank_limits
            .iter()
            .find(|(window, _)| *window == at)
            .map(|(_, limit)| *limit)
    }

    /// Whether `column` is a stream's event-time column (Flink's rowtime attribute).
    pub fn is_event_time(&self, column: &str) -> bool {
        self.event_times
            .iter()
            .any(|(_, time)| time.as_deref() == Some(column))
    }

    /// How long state not written is kept (`SET 'table.exec.state.ttl'`), if the pipeline bounds it.
    pub fn state_ttl_ms(&self) -> Option<i64> {
        self.state_ttl_ms
    }

    /// The physical expression of `expr` over rows of `schema`.
    pub fn physical(&self, expr: &Expr, schema: &DFSchema) -> Result<Arc<dyn PhysicalExpr>> {
        self.state
            .create_physical_expr(expr.clone(), schema)
            .map_err(|err| (self.unsupported)(format!("the expression {expr} ({err})")))
    }

    /// The error for a query that uses `what`, which streams do not run yet.
    pub fn unsupported(&self, what: String) -> PipelineError {
        (self.unsupported)(what)
    }
}

/// `node`, if it is a window node each of whose expressions `each` takes.
pub fn window_of(
    node: &LogicalPlan,
    each: impl Fn(&Expr) -> bool,
) -> Option<&datafusion::logical_expr::Window> {
    match node {
        LogicalPlan::Window(window) if window.window_expr.iter().all(each) => Some(window),
        _ => None,
    }
}

/// Makes one kind of operator out of plan nodes.
pub trait OperatorPlanner: Send + Sync {
    /// The plan under `node` that is compiled first, if `node` is one this
    /// planner makes an operator of.
    fn input_of<'p>(&self, node: &'p LogicalPlan) -> Option<&'p LogicalPlan>;

    /// The operator `node` becomes, reading what its input compiled to; an
    /// error says why a query of this shape cannot run.
    fn plan(&self, node: &LogicalPlan, ctx: &PlanContext<'_>) -> Result<Arc<dyn Operator>>;
}
