//! Flink's older group-window syntax, which many production jobs still use,
//! planned onto the same window TVFs as the newer one.
//!
//! ```text
//!   SELECT TUMBLE_START(ts, INTERVAL '1' MINUTE), k, COUNT(*)     SELECT window_start, k, COUNT(*)
//!   FROM space.t                                        ──▶       FROM <space.t windowed by TUMBLE(ts, 1 min)>
//!   GROUP BY TUMBLE(ts, INTERVAL '1' MINUTE), k                   GROUP BY window_start, window_end, k
//!
//!   TUMBLE(ts, size) · HOP(ts, slide, size) · SESSION(ts, gap) (the other GROUP BY columns partition the sessions)
//!   <W>_START ──▶ window_start   <W>_END ──▶ window_end   <W>_ROWTIME ──▶ window_time   <W>_PROCTIME: refused
//!   FROM (SELECT *, PROCTIME() AS p FROM space.t) B … GROUP BY TUMBLE(B.p, …): a window over processing time
//! ```

use sqlparser::ast::{
    Expr, GroupByExpr, Ident, Select, SelectItem, TableFactor, visit_expressions_mut,
};
use strata_catalog::ddl::interval_millis;

use super::{
    WINDOW_END, WINDOW_START, WINDOW_TIME, WindowKind, WindowTvf, function_args, invalid, location,
    plain_table,
};
use crate::error::Result;
use crate::mention::{mention, place};
use crate::window::views::Views;

const HINT: &str = "write GROUP BY TUMBLE(ts, INTERVAL '1' MINUTE), HOP(ts, slide, size) or SESSION(ts, gap) over one table, or the window TVF: FROM TABLE(TUMBLE(TABLE space.t, DESCRIPTOR(ts), INTERVAL '1' MINUTE))";

/// The group window of a `GROUP BY TUMBLE(…)` (or HOP, SESSION), if the
/// SELECT has one: the SELECT is rewritten to read the windowed rows.
pub(super) fn extract_group_window(
    select: &mut Select,
    file: &str,
    views: &Views,
) -> Result<Option<WindowTvf>> {
    let GroupByExpr::Expressions(keys, _) = &mut select.group_by else {
        return Ok(None);
    };
    let Some(at) = keys.iter().position(|key| window_call(key).is_some()) else {
        return Ok(None);
    };
    let call = keys[at].clone();
    let name = window_call(&call).expect("found above");
    let args = match &call {
        Expr::Function(function) => function_args(&function.args),
        _ => unreachable!("window_call matched a function"),
    };
    let here = location(file, &call);
    let time = match args.first() {
        Some(Expr::Identifier(column)) => column.value.clone(),
        Some(Expr::CompoundIdentifier(parts)) => parts.last().expect("a part").value.clone(),
        _ => {
            return Err(invalid(
                here,
                format!("{name}(…) groups by a time column, given first"),
                HINT,
            ));
        }
    };
    let intervals = args[1..]
        .iter()
        .map(|arg| match arg {
            Expr::Interval(interval) => interval_millis(interval).filter(|&ms| ms > 0),
            _ => None,
        })
        .collect::<Option<Vec<i64>>>()
        .ok_or_else(|| {
            invalid(
                here.clone(),
                format!("{name}(…) takes positive intervals after the time column"),
                HINT,
            )
        })?;
    let kind = match (name, intervals.as_slice()) {
        ("TUMBLE", &[size]) => WindowKind::Tumble { size },
        ("HOP", &[slide, size]) => WindowKind::Hop { slide, size },
        ("SESSION", &[gap]) => WindowKind::Session { gap },
        _ => {
            return Err(invalid(
                here,
                format!(
                    "{name} takes the time column and {}",
                    match name {
                        "HOP" => "a slide and a size",
                        "TUMBLE" => "a size",
                        _ => "a gap",
                    }
                ),
                HINT,
            ));
        }
    };
    let [from] = select.from.as_mut_slice() else {
        return Err(invalid(
            here,
            format!("{name}(…) over more than one table"),
            HINT,
        ));
    };
    // A table, or a subquery that adds a processing-time column to one
    // (`FROM (SELECT *, PROCTIME() AS p_time FROM bid) B`, as Nexmark's q12 in Flink 1.13).
    let (source, alias, proctime) = match &from.relation {
        // One of the file's views (`FROM B`), read as the view's table.
        TableFactor::Table {
            name: table, alias, ..
        } if crate::mention::unqualified(table).is_some_and(|view| views.names(&view.value)) => {
            let view = crate::mention::unqualified(table).expect("matched");
            let input = views.window_input(&view.value, &location(file, &call))?;
            let alias = alias.clone().or_else(|| Some(input.alias()));
            let source = crate::mention::TableMention {
                table: input.table,
                location: place(file, view.span.start),
            };
            (source, alias, input.proctime)
        }
        TableFactor::Table {
            name: table, alias, ..
        } => (mention(file, table)?, alias.clone(), None),
        TableFactor::Derived {
            subquery,
            alias: Some(alias),
            ..
        } if alias.columns.is_empty() => {
            let input =
                super::views::window_input(&alias.name.value, subquery, &location(file, &call))?;
            let source = crate::mention::TableMention {
                table: input.table,
                location: place(file, alias.name.span.start),
            };
            (source, Some(alias.clone()), input.proctime)
        }
        _ => {
            return Err(invalid(
                here,
                format!(
                    "{name}(…) over a subquery without a name of its own, or that renames its columns"
                ),
                HINT,
            ));
        }
    };
    if !from.joins.is_empty() {
        return Err(invalid(here, format!("{name}(…) over a join"), HINT));
    }
    // SESSION's other keys partition the sessions, as in Flink.
    let other_keys: Vec<&Expr> = keys
        .iter()
        .enumerate()
        .filter(|&(i, _)| i != at)
        .map(|(_, key)| key)
        .collect();
    let partition_by = match kind {
        WindowKind::Session { .. } => other_keys
            .iter()
            .map(|key| match key {
                Expr::Identifier(column) => Some(column.value.clone()),
                Expr::CompoundIdentifier(parts) => parts.last().map(|p| p.value.clone()),
                _ => None,
            })
            .collect::<Option<Vec<String>>>()
            .ok_or_else(|| {
                invalid(
                    here.clone(),
                    "a SESSION window grouped by an expression (its other keys must be columns, which partition the sessions)".to_string(),
                    HINT,
                )
            })?,
        _ => Vec::new(),
    };
    let tvf = WindowTvf {
        kind,
        source,
        processing_time: proctime.as_deref() == Some(time.as_str()),
        time_column: time,
        time_location: location(file, args[0]),
        partition_by,
    };
    from.relation = plain_table(&tvf.relation(), alias);
    keys.splice(
        at..=at,
        [WINDOW_START, WINDOW_END].map(|column| Expr::Identifier(Ident::new(column))),
    );
    let arguments = call_arguments(&call);
    let mut refused = None;
    let mut reads_time = false;
    let mut rewrite = |expr: &mut Expr| {
        let Some((function, part)) = auxiliary(expr) else {
            return;
        };
        let column = match part {
            "START" => WINDOW_START,
            "END" => WINDOW_END,
            "ROWTIME" => WINDOW_TIME,
            _ => {
                refused.get_or_insert_with(|| {
                    invalid(
                        location(file, expr),
                        format!("{function}_{part}: a group window's processing time"),
                        "group by the event time the window's rows carry (…_ROWTIME)",
                    )
                });
                return;
            }
        };
        if function != name || call_arguments(expr) != arguments {
            refused.get_or_insert_with(|| {
                invalid(
                    location(file, expr),
                    format!("{expr} names another window than {call}, the one the query groups by"),
                    HINT,
                )
            });
            return;
        }
        reads_time |= column == WINDOW_TIME;
        *expr = Expr::Identifier(Ident::new(column));
    };
    for item in &mut select.projection {
        if let SelectItem::UnnamedExpr(expr) | SelectItem::ExprWithAlias { expr, .. } = item {
            let _ = visit_expressions_mut(expr, |e| {
                rewrite(e);
                std::ops::ControlFlow::<()>::Continue(())
            });
        }
    }
    if let Some(having) = &mut select.having {
        let _ = visit_expressions_mut(having, |e| {
            rewrite(e);
            std::ops::ControlFlow::<()>::Continue(())
        });
    }
    if let Some(err) = refused {
        return Err(err);
    }
    // <W>_ROWTIME reads window_time, which the aggregation then groups by too.
    if reads_time && let GroupByExpr::Expressions(keys, _) = &mut select.group_by {
        keys.push(Expr::Identifier(Ident::new(WINDOW_TIME)));
    }
    Ok(Some(tvf))
}

/// The group window `expr` calls (TUMBLE, HOP or SESSION), if it is one.
fn window_call(expr: &Expr) -> Option<&'static str> {
    let Expr::Function(function) = expr else {
        return None;
    };
    let name = function.name.to_string().to_ascii_uppercase();
    ["TUMBLE", "HOP", "SESSION"]
        .into_iter()
        .find(|window| *window == name)
}

/// The window and the part an auxiliary function (`TUMBLE_START`, …) names.
fn auxiliary(expr: &Expr) -> Option<(&'static str, &'static str)> {
    let Expr::Function(function) = expr else {
        return None;
    };
    let name = function.name.to_string().to_ascii_uppercase();
    let (window, part) = name.split_once('_')?;
    let window = ["TUMBLE", "HOP", "SESSION"]
        .into_iter()
        .find(|w| *w == window)?;
    let part = ["START", "END", "ROWTIME", "PROCTIME"]
        .into_iter()
        .find(|p| *p == part)?;
    Some((window, part))
}

/// A call's window, to compare an auxiliary function's with the GROUP BY's:
/// the time column's name and the intervals in milliseconds.
fn call_arguments(expr: &Expr) -> Vec<String> {
    let Expr::Function(function) = expr else {
        return Vec::new();
    };
    function_args(&function.args)
        .iter()
        .map(|arg| match arg {
            Expr::Identifier(column) => column.value.to_ascii_lowercase(),
            Expr::CompoundIdentifier(parts) => parts
                .last()
                .map_or_else(String::new, |p| p.value.to_ascii_lowercase()),
            Expr::Interval(interval) => {
                interval_millis(interval).map_or_else(|| arg.to_string(), |ms| format!("{ms} ms"))
            }
            other => other.to_string(),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use sqlparser::ast::{SetExpr, Statement};
    use sqlparser::parser::Parser;
    use strata_catalog::ddl::FlinkDialect;

    use super::extract_group_window;
    use crate::window::views::Views;
    use crate::window::{WindowKind, WindowTvf};

    /// The window of `sql`'s SELECT, and the SELECT as it reads after the rewrite.
    fn rewrite(sql: &str) -> crate::error::Result<(Option<WindowTvf>, String)> {
        let mut statement = Parser::parse_sql(&FlinkDialect, sql).unwrap().remove(0);
        let Statement::Query(query) = &mut statement else {
            panic!("a query")
        };
        let SetExpr::Select(select) = query.body.as_mut() else {
            panic!("a SELECT")
        };
        let tvf = extract_group_window(select, "p.sql", &Views::default())?;
        Ok((tvf, select.to_string()))
    }

    #[test]
    fn a_group_window_and_its_auxiliary_functions_become_the_tvfs_columns() {
        let (tvf, select) = rewrite(
            "SELECT HOP_START(ts, INTERVAL '1' MINUTE, INTERVAL '5' MINUTE) AS s, city, COUNT(*) FROM shop.orders AS o GROUP BY HOP(ts, INTERVAL '1' MINUTE, INTERVAL '5' MINUTE), city HAVING HOP_END(ts, INTERVAL '1' MINUTE, INTERVAL '5' MINUTE) > TIMESTAMP '2024-01-01 00:00:00'",
        )
        .unwrap();
        let tvf = tvf.unwrap();
        assert_eq!(
            tvf.kind,
            WindowKind::Hop {
                slide: 60_000,
                size: 300_000
            }
        );
        assert_eq!(tvf.time_column, "ts");
        assert!(
            select.contains("SELECT window_start AS s, city, COUNT(*) FROM __window.shop__orders AS o GROUP BY window_start, window_end, city HAVING window_end > "),
            "{select}"
        );
        let (tvf, _) = rewrite(
            "SELECT SESSION_ROWTIME(ts, INTERVAL '10' MINUTE), user_id, COUNT(*) FROM shop.clicks GROUP BY SESSION(ts, INTERVAL '10' MINUTE), user_id",
        )
        .unwrap();
        let tvf = tvf.unwrap();
        assert_eq!(tvf.kind, WindowKind::Session { gap: 600_000 });
        assert_eq!(tvf.partition_by, ["user_id"]);
        assert!(
            rewrite("SELECT city FROM shop.orders GROUP BY city")
                .unwrap()
                .0
                .is_none()
        );
    }

    #[test]
    fn the_same_window_written_otherwise_is_the_same_and_rowtime_groups_by_window_time() {
        let (_, select) = rewrite(
            "SELECT TUMBLE_ROWTIME(ts, INTERVAL '60' SECOND), COUNT(*) FROM shop.orders AS o GROUP BY TUMBLE(o.ts, INTERVAL '1' MINUTE)",
        )
        .unwrap();
        assert!(
            select.contains("SELECT window_time, COUNT(*)")
                && select.ends_with("GROUP BY window_start, window_end, window_time"),
            "{select}"
        );
    }

    #[test]
    fn another_window_or_its_processing_time_is_refused_at_its_place() {
        let other = rewrite(
            "SELECT TUMBLE_START(ts, INTERVAL '5' MINUTE), COUNT(*) FROM shop.orders GROUP BY TUMBLE(ts, INTERVAL '1' MINUTE)",
        )
        .unwrap_err()
        .to_string();
        assert!(
            other.contains("p.sql:1:8: TUMBLE_START(ts, INTERVAL '5' MINUTE) names another window"),
            "{other}"
        );
        let proctime = rewrite(
            "SELECT TUMBLE_PROCTIME(ts, INTERVAL '1' MINUTE), COUNT(*) FROM shop.orders GROUP BY TUMBLE(ts, INTERVAL '1' MINUTE)",
        )
        .unwrap_err()
        .to_string();
        assert!(proctime.contains("processing time"), "{proctime}");
        let joined = rewrite(
            "SELECT COUNT(*) FROM shop.orders o JOIN shop.users u ON o.uid = u.id GROUP BY TUMBLE(ts, INTERVAL '1' MINUTE)",
        )
        .unwrap_err()
        .to_string();
        assert!(joined.contains("over a join"), "{joined}");
    }
}
