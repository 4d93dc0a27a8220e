//! Finds the N of Flink's Top-N pattern: a filter that bounds a
//! `ROW_NUMBER()` from above, over the window that numbers the rows.
//!
//! ```text
//!   Filter rn <= N  (or rn < N + 1, rn = 1, N >= rn; beside other conditions)
//!     └ SubqueryAlias / Projection (rn passed on, maybe renamed) / Filter …
//!         └ Window ROW_NUMBER() OVER (…)          ──▶ (this window node, N)
//! ```

use datafusion::common::{Column, ScalarValue};
use datafusion::logical_expr::utils::split_conjunction;
use datafusion::logical_expr::{BinaryExpr, Expr, Filter, LogicalPlan, Operator};

use super::row_number_call;

/// The window numbering rows that `filter` bounds, and the bound (the
/// smallest, if it bounds it more than once).
pub fn rank_limit(filter: &Filter) -> Option<(&LogicalPlan, u64)> {
    split_conjunction(&filter.predicate)
        .into_iter()
        .filter_map(|condition| {
            let (column, limit) = upper_bound(condition)?;
            Some((numbering_window(&filter.input, &column)?, limit))
        })
        .min_by_key(|(_, limit)| *limit)
}

/// The column a condition bounds from above, and the largest number it lets through.
fn upper_bound(condition: &Expr) -> Option<(Column, u64)> {
    let Expr::BinaryExpr(BinaryExpr { left, op, right }) = condition else {
        return None;
    };
    let (column, op, number) = match (column_of(left), whole_number(right)) {
        (Some(column), Some(number)) => (column, *op, number),
        _ => (column_of(right)?, op.swap()?, whole_number(left)?),
    };
    let limit = match op {
        Operator::LtEq => number,
        Operator::Lt => number.checked_sub(1)?,
        Operator::Eq if number == 1 => 1,
        _ => return None,
    };
    (limit >= 1).then_some((column, limit as u64))
}

/// The column `expr` is, through casts to other integer types (a cast to a
/// float or a string would compare otherwise).
fn column_of(expr: &Expr) -> Option<Column> {
    match expr {
        Expr::Column(column) => Some(column.clone()),
        Expr::Cast(cast) if cast.field.data_type().is_integer() => column_of(&cast.expr),
        Expr::TryCast(cast) if cast.field.data_type().is_integer() => column_of(&cast.expr),
        _ => None,
    }
}

/// The integer `expr` is, if it is an integer literal (maybe cast to another integer type).
fn whole_number(expr: &Expr) -> Option<i64> {
    match expr {
        Expr::Literal(value, _) if value.data_type().is_integer() => {
            match value.cast_to(&arrow::datatypes::DataType::Int64) {
                Ok(ScalarValue::Int64(Some(number))) => Some(number),
                _ => None,
            }
        }
        Expr::Cast(cast) if cast.field.data_type().is_integer() => whole_number(&cast.expr),
        _ => None,
    }
}

/// The `ROW_NUMBER()` window under `plan` whose number `column` carries, if it does.
fn numbering_window<'p>(plan: &'p LogicalPlan, column: &Column) -> Option<&'p LogicalPlan> {
    match plan {
        LogicalPlan::SubqueryAlias(alias) => {
            numbering_window(&alias.input, &Column::new_unqualified(&column.name))
        }
        LogicalPlan::Filter(filter) => numbering_window(&filter.input, column),
        LogicalPlan::Projection(projection) => {
            let position = (0..projection.schema.fields().len())
                .find(|&i| projection.schema.field(i).name() == &column.name)?;
            let passed = match &projection.expr[position] {
                Expr::Alias(alias) => column_of(&alias.expr)?,
                other => column_of(other)?,
            };
            numbering_window(&projection.input, &passed)
        }
        LogicalPlan::Window(window) => {
            let [expr] = window.window_expr.as_slice() else {
                return None;
            };
            row_number_call(expr)?;
            let fields = window.schema.fields();
            (fields[fields.len() - 1].name() == &column.name).then_some(plan)
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use arrow::datatypes::DataType;
    use datafusion::logical_expr::{cast, col, lit};

    use super::upper_bound;

    #[test]
    fn only_an_integer_bound_on_the_number_itself_is_read() {
        let bound = |expr| upper_bound(&expr).map(|(column, limit)| (column.name, limit));
        let rn = || col("rn");
        assert_eq!(bound(rn().lt_eq(lit(3i64))), Some(("rn".to_string(), 3)));
        assert_eq!(bound(rn().lt(lit(3i64))), Some(("rn".to_string(), 2)));
        assert_eq!(bound(lit(3i64).gt_eq(rn())), Some(("rn".to_string(), 3)));
        assert_eq!(bound(rn().eq(lit(1i64))), Some(("rn".to_string(), 1)));
        assert_eq!(
            bound(cast(rn(), DataType::Int32).lt_eq(lit(2i32))),
            Some(("rn".to_string(), 2))
        );
        // rn = 2 keeps one rank, not the first two; a float or text comparison lets other ranks through.
        assert_eq!(bound(rn().eq(lit(2i64))), None);
        assert_eq!(bound(cast(rn(), DataType::Float64).lt(lit(3.5f64))), None);
        assert_eq!(bound(cast(rn(), DataType::Utf8).lt_eq(lit("3"))), None);
        assert_eq!(bound(rn().lt(lit(i64::MIN))), None);
        assert_eq!(bound(rn().lt_eq(lit(0i64))), None);
    }
}
