//! OVER aggregations ordered by processing time (`ORDER BY proc_time`, a
//! table's `PROCTIME()` column), as Flink runs them: a row's place is the
//! moment it is read. The plan reads the clock once for each row, in a column
//! of its own below the window, which the OVER aggregation orders by as it
//! orders by an event time; the pipeline then runs on the clock, whose
//! watermark at each commit is the millisecond before it.
//!
//! ```text
//!   Window(SUM(x) OVER (PARTITION BY k ORDER BY PROCTIME() ROWS 2 PRECEDING), input)
//!     ──▶ Projection(the window's columns as they were,
//!           Window(SUM(x) OVER (PARTITION BY k ORDER BY __strata_arrival ROWS 2 PRECEDING) AS <its name>,
//!             Projection(input.*, PROCTIME() AS __strata_arrival)))
//!   a batch read at t ──▶ its rows' time t ──▶ the commit at t' > t (watermark t' − 1) emits them
//! ```

use std::sync::Arc;

use datafusion::common::Column;
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::error::Result;
use datafusion::logical_expr::expr::{Sort, WindowFunction};
use datafusion::logical_expr::{Expr, LogicalPlan, Projection, Window};

use crate::row_number::is_proctime;

/// The column the moment each row was read goes into, below an OVER
/// aggregation ordered by processing time.
pub(crate) const ARRIVAL_TIME: &str = "__strata_arrival";

/// `plan`, with every OVER aggregation ordered by `PROCTIME()` ordered by
/// [`ARRIVAL_TIME`] instead, computed by a projection below its window and
/// dropped by one above it, so that every node above sees the columns it saw.
pub(crate) fn order_by_arrival(plan: LogicalPlan) -> Result<LogicalPlan> {
    plan.transform_up(|node| {
        let LogicalPlan::Window(window) = &node else {
            return Ok(Transformed::no(node));
        };
        let Some(clock) = window.window_expr.iter().find_map(proctime_order) else {
            return Ok(Transformed::no(node));
        };
        let input = window.input.as_ref();
        let mut columns: Vec<Expr> = input
            .schema()
            .columns()
            .into_iter()
            .map(Expr::Column)
            .collect();
        columns.push(clock.alias(ARRIVAL_TIME));
        let read = LogicalPlan::Projection(Projection::try_new(columns, Arc::new(input.clone()))?);
        let window_expr = window
            .window_expr
            .iter()
            .map(ordered_by_arrival)
            .collect::<Result<_>>()?;
        let reordered = LogicalPlan::Window(Window::try_new(window_expr, Arc::new(read))?);
        let as_before = window
            .schema
            .iter()
            .map(|(qualifier, field)| {
                Expr::Column(Column::new(qualifier.cloned(), field.name().clone()))
            })
            .collect();
        Ok(Transformed::yes(LogicalPlan::Projection(
            Projection::try_new(as_before, Arc::new(reordered))?,
        )))
    })
    .map(|rewritten| rewritten.data)
}

/// The window function `expr` calls, under its alias if it has one.
fn window_function(expr: &Expr) -> Option<&WindowFunction> {
    match expr {
        Expr::Alias(alias) => window_function(&alias.expr),
        Expr::WindowFunction(function) => Some(function),
        _ => None,
    }
}

/// The `PROCTIME()` call an OVER aggregation is ordered by, if it is one
/// (ROW_NUMBER's order by processing time is arrival order, which its
/// operator keeps by itself).
fn proctime_order(expr: &Expr) -> Option<Expr> {
    window_function(expr)
        .filter(|function| {
            matches!(
                function.fun,
                datafusion::logical_expr::WindowFunctionDefinition::AggregateUDF(_)
            )
        })?
        .params
        .order_by
        .iter()
        .find(|sort| is_proctime(&sort.expr))
        .map(|sort| sort.expr.clone())
}

/// `expr` reading [`ARRIVAL_TIME`] wherever it read `PROCTIME()` (its
/// order, and its arguments, filter and partition, which would otherwise read
/// the clock when the rows are emitted), under the name it had, which the
/// projection above it reads it by.
fn ordered_by_arrival(expr: &Expr) -> Result<Expr> {
    let Some(function) = window_function(expr).filter(|_| proctime_order(expr).is_some()) else {
        return Ok(expr.clone());
    };
    let name = expr.schema_name().to_string();
    let arrival = |expr: Expr| {
        expr.transform_up(|expr| match is_proctime(&expr) {
            true => Ok(Transformed::yes(Expr::Column(Column::from_name(
                ARRIVAL_TIME,
            )))),
            false => Ok(Transformed::no(expr)),
        })
        .map(|rewritten| rewritten.data)
    };
    let mut function = function.clone();
    let params = &mut function.params;
    params.args = params.args.drain(..).map(arrival).collect::<Result<_>>()?;
    params.partition_by = params
        .partition_by
        .drain(..)
        .map(arrival)
        .collect::<Result<_>>()?;
    params.filter = params
        .filter
        .take()
        .map(|filter| arrival(*filter).map(Box::new))
        .transpose()?;
    for sort in &mut params.order_by {
        *sort = Sort {
            expr: arrival(sort.expr.clone())?,
            ..sort.clone()
        };
    }
    Ok(Expr::WindowFunction(Box::new(function)).alias(name))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::datatypes::{DataType, Field, Schema};
    use datafusion::datasource::empty::EmptyTable;
    use datafusion::logical_expr::{Expr, LogicalPlan};
    use datafusion::prelude::SessionContext;

    use super::{ARRIVAL_TIME, order_by_arrival};

    async fn plan(sql: &str) -> LogicalPlan {
        let ctx = SessionContext::new();
        let mut state = ctx.state();
        strata_catalog::functions::register_flink_functions(&mut state).unwrap();
        let ctx = SessionContext::new_with_state(state);
        let schema = Arc::new(Schema::new(vec![
            Field::new("k", DataType::Int64, true),
            Field::new("x", DataType::Int64, true),
        ]));
        ctx.register_table("t", Arc::new(EmptyTable::new(schema)))
            .unwrap();
        ctx.sql(sql).await.unwrap().into_unoptimized_plan()
    }

    fn window(plan: &LogicalPlan) -> &datafusion::logical_expr::Window {
        match plan {
            LogicalPlan::Window(window) => window,
            other => window(other.inputs()[0]),
        }
    }

    #[tokio::test]
    async fn an_over_aggregation_by_proctime_orders_by_the_time_read_below_it_under_its_own_name() {
        let before = plan(
            "SELECT k, SUM(x) OVER (PARTITION BY k ORDER BY PROCTIME() ROWS BETWEEN 1 PRECEDING AND CURRENT ROW) AS s FROM t",
        )
        .await;
        let after = order_by_arrival(before.clone()).unwrap();
        assert_eq!(after.schema(), before.schema(), "the query's columns stay");
        let window = window(&after);
        let LogicalPlan::Projection(read) = window.input.as_ref() else {
            panic!("the clock is read below the window: {after}");
        };
        assert!(read.schema.has_column_with_unqualified_name(ARRIVAL_TIME));
        assert!(
            !after
                .schema()
                .has_column_with_unqualified_name(ARRIVAL_TIME),
            "the time read is dropped above the window"
        );
        let order = match &window.window_expr[0] {
            Expr::Alias(alias) => match alias.expr.as_ref() {
                Expr::WindowFunction(function) => function.params.order_by[0].expr.clone(),
                other => panic!("{other}"),
            },
            other => panic!("the window keeps its name: {other}"),
        };
        assert_eq!(order, Expr::Column(ARRIVAL_TIME.into()));
    }

    #[tokio::test]
    async fn row_number_and_event_time_orders_are_left_alone() {
        for sql in [
            "SELECT k, ROW_NUMBER() OVER (PARTITION BY k ORDER BY PROCTIME()) AS rn FROM t",
            "SELECT k, SUM(x) OVER (PARTITION BY k ORDER BY x) AS s FROM t",
        ] {
            let before = plan(sql).await;
            assert_eq!(order_by_arrival(before.clone()).unwrap(), before, "{sql}");
        }
    }
}
