//! Column lineage from a pipeline's DataFusion logical plan: each node of the
//! plan is followed bottom-up, carrying for every output column the source
//! columns it is made of, and for the whole node the source columns that
//! decide which rows there are (conditions, join keys, grouping).
//!
//! ```text
//!   TableScan(o)           o.amount ─▶ [o.amount direct]
//!   Filter(o.status = 1)   indirect += [o.status filter]
//!   Join(o.user_id = u.id) columns: o's ++ u's;  indirect += [o.user_id, u.id join key]
//!   Aggregate(SUM(amount)) sum ─▶ [o.amount aggregated];  indirect += [group keys group by]
//!   Projection(a + b AS c) c ─▶ origins(a) ∪ origins(b)
//!   target column i ─▶ columns[i] ∪ indirect
//! ```

use std::collections::BTreeSet;

use datafusion::common::TableReference;
use datafusion::logical_expr::{Expr, LogicalPlan};
use serde::{Deserialize, Serialize};

use crate::error::{LineageError, Result};

/// How a source column is used to make a target column.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UseKind {
    /// Projected, or computed from (the value flows into the column).
    Direct,
    /// Aggregated into the column (SUM, COUNT, MAX …).
    Aggregated,
    /// A join key: it decides which rows are joined.
    JoinKey,
    /// In a WHERE or join condition: it decides which rows there are.
    Filter,
    /// A grouping key: it decides which rows are aggregated together.
    GroupBy,
}

impl UseKind {
    /// Whether the column's values flow into the target column (as opposed to
    /// deciding which rows there are).
    pub fn is_direct(self) -> bool {
        matches!(self, UseKind::Direct | UseKind::Aggregated)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            UseKind::Direct => "direct",
            UseKind::Aggregated => "aggregated",
            UseKind::JoinKey => "join key",
            UseKind::Filter => "filter",
            UseKind::GroupBy => "group by",
        }
    }
}

/// A source column, and how a target column uses it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct ColumnOrigin {
    /// `space.table`.
    pub table: String,
    pub column: String,
    pub kind: UseKind,
}

/// Maps a scanned table and one of its columns to the catalog table and column
/// it is (a window TVF's scan, say, reads its window bounds from the event time).
pub type ScanResolver<'a> = &'a dyn Fn(&TableReference, &str) -> Option<(String, String)>;

/// What one pipeline does, column by column.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PipelineLineage {
    pub name: String,
    /// `space.table` of the target.
    pub target: String,
    /// The tables it reads, streams and dimensions alike.
    pub sources: Vec<String>,
    /// Each target column with the source columns it comes from.
    pub columns: Vec<(String, Vec<ColumnOrigin>)>,
}

impl PipelineLineage {
    /// Follows `plan`, whose output columns fill `target_columns` in order.
    pub fn derive(
        name: &str,
        target: &str,
        target_columns: &[String],
        plan: &LogicalPlan,
        resolve: ScanResolver<'_>,
    ) -> Result<Self> {
        let flow = follow(plan, resolve).map_err(|message| LineageError::Plan {
            pipeline: name.to_string(),
            message,
        })?;
        let mut sources = BTreeSet::new();
        let columns = target_columns
            .iter()
            .zip(&flow.columns)
            .map(|(column, origins)| {
                let all: BTreeSet<ColumnOrigin> = origins.union(&flow.indirect).cloned().collect();
                sources.extend(all.iter().map(|o| o.table.clone()));
                (column.clone(), all.into_iter().collect())
            })
            .collect();
        sources.extend(flow.tables);
        Ok(Self {
            name: name.to_string(),
            target: target.to_string(),
            sources: sources.into_iter().collect(),
            columns,
        })
    }
}

/// What a plan node's output is made of.
#[derive(Debug, Default)]
struct Flow {
    /// Per output column, the source columns whose values flow into it.
    columns: Vec<BTreeSet<ColumnOrigin>>,
    /// Source columns that decide which rows there are.
    indirect: BTreeSet<ColumnOrigin>,
    /// Every table scanned.
    tables: BTreeSet<String>,
}

fn follow(plan: &LogicalPlan, resolve: ScanResolver<'_>) -> std::result::Result<Flow, String> {
    match plan {
        LogicalPlan::TableScan(scan) => {
            let mut flow = Flow::default();
            for field in scan.projected_schema.fields() {
                let origin = resolve(&scan.table_name, field.name()).map(|(table, column)| {
                    flow.tables.insert(table.clone());
                    ColumnOrigin {
                        table,
                        column,
                        kind: UseKind::Direct,
                    }
                });
                flow.columns.push(origin.into_iter().collect());
            }
            let filters: Vec<&Expr> = scan.filters.iter().collect();
            let conditions = within(plan, &flow, filters, UseKind::Filter)?;
            flow.indirect.extend(conditions);
            Ok(flow)
        }
        LogicalPlan::Projection(projection) => {
            let input = follow(&projection.input, resolve)?;
            let columns = projection
                .expr
                .iter()
                .map(|expr| uses(&projection.input, &input, expr, None))
                .collect::<std::result::Result<_, _>>()?;
            Ok(Flow { columns, ..input })
        }
        LogicalPlan::Filter(filter) => {
            let mut input = follow(&filter.input, resolve)?;
            let conditions = uses(
                &filter.input,
                &input,
                &filter.predicate,
                Some(UseKind::Filter),
            )?;
            input.indirect.extend(conditions);
            Ok(input)
        }
        LogicalPlan::Aggregate(aggregate) => {
            let input = follow(&aggregate.input, resolve)?;
            let mut columns = Vec::new();
            let mut indirect = input.indirect.clone();
            for expr in &aggregate.group_expr {
                columns.push(uses(&aggregate.input, &input, expr, None)?);
                indirect.extend(uses(
                    &aggregate.input,
                    &input,
                    expr,
                    Some(UseKind::GroupBy),
                )?);
            }
            for expr in &aggregate.aggr_expr {
                columns.push(uses(
                    &aggregate.input,
                    &input,
                    expr,
                    Some(UseKind::Aggregated),
                )?);
            }
            Ok(Flow {
                columns,
                indirect,
                tables: input.tables,
            })
        }
        LogicalPlan::Join(join) => {
            let left = follow(&join.left, resolve)?;
            let right = follow(&join.right, resolve)?;
            let mut indirect: BTreeSet<ColumnOrigin> =
                left.indirect.union(&right.indirect).cloned().collect();
            for (l, r) in &join.on {
                indirect.extend(uses(&join.left, &left, l, Some(UseKind::JoinKey))?);
                indirect.extend(uses(&join.right, &right, r, Some(UseKind::JoinKey))?);
            }
            let mut columns = left.columns;
            columns.extend(right.columns);
            let mut tables = left.tables;
            tables.extend(right.tables);
            let mut flow = Flow {
                columns,
                indirect,
                tables,
            };
            if let Some(filter) = &join.filter {
                // An equality of a column of each side is a join key (the SQL planner
                // leaves ON's equalities in the filter); the rest are conditions.
                for condition in datafusion::logical_expr::utils::split_conjunction(filter) {
                    let kind = match condition {
                        Expr::BinaryExpr(datafusion::logical_expr::BinaryExpr {
                            left: l,
                            op: datafusion::logical_expr::Operator::Eq,
                            right: r,
                        }) if sides_apart(l, r, join.left.schema(), join.right.schema()) => {
                            UseKind::JoinKey
                        }
                        _ => UseKind::Filter,
                    };
                    let conditions = within(plan, &flow, vec![condition], kind)?;
                    flow.indirect.extend(conditions);
                }
            }
            Ok(flow)
        }
        LogicalPlan::Window(window) => {
            let mut input = follow(&window.input, resolve)?;
            for expr in &window.window_expr {
                // LAG(v) OVER (PARTITION BY k ORDER BY t): v's values flow in; k and t
                // decide which row's value it is.
                let (values, deciding) = match expr.clone().unalias() {
                    Expr::WindowFunction(function) => {
                        let params = &function.params;
                        let deciding: Vec<Expr> = params
                            .partition_by
                            .iter()
                            .cloned()
                            .chain(params.order_by.iter().map(|sort| sort.expr.clone()))
                            .collect();
                        (params.args.clone(), deciding)
                    }
                    other => (vec![other], Vec::new()),
                };
                let mut made = BTreeSet::new();
                for value in &values {
                    made.extend(uses(&window.input, &input, value, None)?);
                }
                for key in &deciding {
                    made.extend(uses(&window.input, &input, key, Some(UseKind::GroupBy))?);
                }
                input.columns.push(made);
            }
            Ok(input)
        }
        LogicalPlan::Unnest(unnest) => {
            let input = follow(&unnest.input, resolve)?;
            let columns = unnest
                .dependency_indices
                .iter()
                .map(|&i| input.columns.get(i).cloned().unwrap_or_default())
                .collect();
            Ok(Flow { columns, ..input })
        }
        LogicalPlan::Union(union) => {
            let mut flow = Flow::default();
            for input in &union.inputs {
                let branch = follow(input, resolve)?;
                flow.columns.resize(branch.columns.len(), BTreeSet::new());
                for (all, some) in flow.columns.iter_mut().zip(branch.columns) {
                    all.extend(some);
                }
                flow.indirect.extend(branch.indirect);
                flow.tables.extend(branch.tables);
            }
            Ok(flow)
        }
        LogicalPlan::SubqueryAlias(alias) => follow(&alias.input, resolve),
        LogicalPlan::Sort(sort) => follow(&sort.input, resolve),
        LogicalPlan::Limit(limit) => follow(&limit.input, resolve),
        LogicalPlan::Distinct(_) | LogicalPlan::Repartition(_) => {
            let [input] = plan.inputs()[..] else {
                return Err(format!("{} has no single input", plan.display()));
            };
            follow(input, resolve)
        }
        LogicalPlan::EmptyRelation(_) | LogicalPlan::Values(_) => Ok(Flow {
            columns: vec![BTreeSet::new(); plan.schema().fields().len()],
            ..Flow::default()
        }),
        other => Err(format!("a {} node", other.display())),
    }
}

/// Whether one expression reads only the left input and the other only the right.
fn sides_apart(
    a: &Expr,
    b: &Expr,
    left: &datafusion::common::DFSchema,
    right: &datafusion::common::DFSchema,
) -> bool {
    let only = |expr: &Expr, schema: &datafusion::common::DFSchema| {
        let columns = expr.column_refs();
        !columns.is_empty() && columns.iter().all(|c| schema.has_column(c))
    };
    (only(a, left) && only(b, right)) || (only(a, right) && only(b, left))
}

/// The origins of the columns `expr` reads from `input` (whose flow is `flow`),
/// tagged `as_kind` when given (an aggregation keeps indirect tags as they are).
fn uses(
    input: &LogicalPlan,
    flow: &Flow,
    expr: &Expr,
    as_kind: Option<UseKind>,
) -> std::result::Result<BTreeSet<ColumnOrigin>, String> {
    let schema = input.schema();
    let mut origins = BTreeSet::new();
    for column in expr.column_refs() {
        let index = schema
            .index_of_column(column)
            .map_err(|err| format!("the column {column}: {err}"))?;
        for origin in flow.columns.get(index).into_iter().flatten() {
            let kind = match as_kind {
                Some(UseKind::Aggregated) if origin.kind == UseKind::Direct => UseKind::Aggregated,
                Some(UseKind::Aggregated) | None => origin.kind,
                Some(kind) => kind,
            };
            origins.insert(ColumnOrigin {
                kind,
                ..origin.clone()
            });
        }
    }
    Ok(origins)
}

/// The origins of conditions evaluated over a node's own output (a scan's
/// pushed filters, a join's non-equality condition).
fn within(
    node: &LogicalPlan,
    flow: &Flow,
    conditions: Vec<&Expr>,
    kind: UseKind,
) -> std::result::Result<BTreeSet<ColumnOrigin>, String> {
    let mut origins = BTreeSet::new();
    for condition in conditions {
        for column in condition.column_refs() {
            let Ok(index) = node.schema().index_of_column(column) else {
                continue;
            };
            for origin in flow.columns.get(index).into_iter().flatten() {
                origins.insert(ColumnOrigin {
                    kind,
                    ..origin.clone()
                });
            }
        }
    }
    Ok(origins)
}
