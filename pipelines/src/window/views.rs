//! A window TVF over one of the pipeline's views, as Flink jobs declare a
//! processing-time attribute (Nexmark's q12):
//!
//! ```text
//!   CREATE VIEW B AS SELECT *, PROCTIME() AS p_time FROM nexmark.bid;      (a WITH table by now)
//!   … FROM TABLE(TUMBLE(TABLE B, DESCRIPTOR(p_time), INTERVAL '10' SECOND))
//!     ──▶ the window TVF reads nexmark.bid, over processing time (p_time is the view's PROCTIME())
//!     ──▶ the view, which nothing else reads, is dropped from the query
//! ```
//!
//! The view may select the table's columns (`*`, `t.*`, names) and one
//! `PROCTIME() AS name`; a view that filters, computes or renames is refused,
//! since the window would then not see the rows and columns the view names.

use std::cell::RefCell;
use std::collections::BTreeSet;
use std::ops::ControlFlow;

use sqlparser::ast::{
    Cte, Expr, GroupByExpr, Query, SelectItem, SetExpr, TableFactor, visit_relations,
};
use strata_catalog::{SourceLocation, TableName};

use super::invalid;
use crate::error::Result;

/// A view a window TVF reads.
pub(super) struct ViewInput {
    pub name: String,
    /// The table it selects from.
    pub table: TableName,
    /// The `PROCTIME()` column it adds, if any.
    pub proctime: Option<String>,
}

impl ViewInput {
    /// The view's name as the alias of the windowed rows (`B.bidder` after
    /// `TUMBLE(TABLE B, …)` or `FROM B … GROUP BY TUMBLE(…)`, as Flink reads it).
    pub(super) fn alias(&self) -> sqlparser::ast::TableAlias {
        sqlparser::ast::TableAlias {
            explicit: false,
            name: sqlparser::ast::Ident::new(&self.name),
            columns: Vec::new(),
            at: None,
        }
    }
}

/// The views (WITH tables) of a query, and those a window TVF read.
#[derive(Default)]
pub(super) struct Views {
    ctes: Vec<Cte>,
    consumed: RefCell<BTreeSet<String>>,
}

impl Views {
    pub(super) fn of(query: &Query) -> Self {
        Self {
            ctes: query
                .with
                .as_ref()
                .map(|with| with.cte_tables.clone())
                .unwrap_or_default(),
            consumed: RefCell::default(),
        }
    }

    pub(super) fn names(&self, name: &str) -> bool {
        self.find(name).is_some()
    }

    fn find(&self, name: &str) -> Option<&Cte> {
        self.ctes.iter().find(|cte| cte.alias.name.value == name)
    }

    /// What the view `name` gives a window TVF; refused unless the view only
    /// selects columns of one table.
    pub(super) fn window_input(&self, name: &str, at: &SourceLocation) -> Result<ViewInput> {
        let cte = self.find(name).expect("asked for a view of the query");
        if !cte.alias.columns.is_empty() {
            return Err(refuse(name, at, "renames its columns".to_string()));
        }
        let input = window_input(name, &cte.query, at)?;
        self.consumed.borrow_mut().insert(name.to_string());
        Ok(input)
    }

    /// Drops from `query` the views window TVFs read that nothing else reads.
    pub(super) fn drop_consumed(&self, query: &mut Query) {
        let consumed = self.consumed.borrow();
        if consumed.is_empty() {
            return;
        }
        let Some(with) = query.with.as_mut() else {
            return;
        };
        let mut read: BTreeSet<String> = BTreeSet::new();
        let mut note = |name: &sqlparser::ast::ObjectName| {
            if let Some(ident) = crate::mention::unqualified(name) {
                read.insert(ident.value.clone());
            }
            ControlFlow::<()>::Continue(())
        };
        for cte in &with.cte_tables {
            let _ = visit_relations(&cte.query, &mut note);
        }
        let _ = visit_relations(query.body.as_ref(), &mut note);
        with.cte_tables.retain(|cte| {
            let name = &cte.alias.name.value;
            !consumed.contains(name) || read.contains(name)
        });
        if with.cte_tables.is_empty() {
            query.with = None;
        }
    }
}

/// What the query of the view (or subquery) `name` gives a window over it:
/// refused unless it only selects columns of one table and a `PROCTIME()`.
pub(super) fn window_input(name: &str, query: &Query, at: &SourceLocation) -> Result<ViewInput> {
    let SetExpr::Select(select) = query.body.as_ref() else {
        return Err(refuse(name, at, "is not one SELECT".to_string()));
    };
    let plain_query = query.with.is_none()
        && query.order_by.is_none()
        && query.limit_clause.is_none()
        && query.fetch.is_none();
    let grouped = !matches!(&select.group_by, GroupByExpr::Expressions(keys, _) if keys.is_empty());
    if !plain_query
        || select.distinct.is_some()
        || select.selection.is_some()
        || grouped
        || select.having.is_some()
        || select.qualify.is_some()
    {
        return Err(refuse(
            name,
            at,
            "filters, groups, orders or limits its rows".to_string(),
        ));
    }
    let table = match select.from.as_slice() {
        [only] if only.joins.is_empty() => match &only.relation {
            TableFactor::Table {
                name: table,
                args: None,
                ..
            } => match table.0.as_slice() {
                [space, part] => match (space.as_ident(), part.as_ident()) {
                    (Some(space), Some(part)) => TableName::new(&space.value, &part.value),
                    _ => return Err(refuse(name, at, format!("reads {table}"))),
                },
                _ => {
                    return Err(refuse(
                        name,
                        at,
                        format!("reads {table}, not a SPACE.TABLE"),
                    ));
                }
            },
            other => return Err(refuse(name, at, format!("reads {other}"))),
        },
        _ => return Err(refuse(name, at, "reads more than one table".to_string())),
    };
    let mut proctime = None;
    for item in &select.projection {
        match item {
            SelectItem::Wildcard(_)
            | SelectItem::QualifiedWildcard(..)
            | SelectItem::UnnamedExpr(Expr::Identifier(_) | Expr::CompoundIdentifier(_)) => {}
            SelectItem::ExprWithAlias {
                expr: Expr::Function(call),
                alias,
            } if call.name.to_string().eq_ignore_ascii_case("proctime") && proctime.is_none() => {
                proctime = Some(alias.value.clone());
            }
            other => return Err(refuse(name, at, format!("selects {other}"))),
        }
    }
    Ok(ViewInput {
        name: name.to_string(),
        table,
        proctime,
    })
}

fn refuse(name: &str, at: &SourceLocation, why: String) -> crate::error::PipelineError {
    invalid(
        at.clone(),
        format!("the window reads {name}, which {why}"),
        "a window reads a table, or a view or subquery that selects one table's columns and a PROCTIME() column (CREATE VIEW v AS SELECT *, PROCTIME() AS p_time FROM space.t); filter and compute in the SELECT that windows it",
    )
}
