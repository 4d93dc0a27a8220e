//! Flink's `CROSS JOIN UNNEST(…) AS t(…)`, which DataFusion cannot plan (its
//! array is a column of the table before it), rewritten into the `unnest(…)`
//! of a SELECT that pipelines run.
//!
//! ```text
//!   SELECT o.id, t.tag                              SELECT o.id, o.__unnest_tag
//!   FROM space.orders AS o               ──▶        FROM (SELECT o.*, unnest(o.tags) AS __unnest_tag FROM space.orders AS o) AS o
//!   CROSS JOIN UNNEST(o.tags) AS t(tag)             (t.tag and a bare tag both read the element)
//! ```
//!
//! An array of rows into several columns, a map into its keys and values
//! (as Flink's UNNEST of a MAP), and `WITH ORDINALITY` go through
//! `flink_unnest_rows`, which makes each element a struct of fields numbered
//! by position; the columns read them by number:
//!
//! ```text
//!   FROM space.orders AS o                          FROM (SELECT o.*, unnest(flink_unnest_rows(o.items, TRUE)) AS __unnest_t
//!   CROSS JOIN UNNEST(o.items)            ──▶              FROM space.orders AS o) AS o
//!     WITH ORDINALITY AS t(sku, qty, pos)           t.sku ─▶ o.__unnest_t['f0'], qty ─▶ …['f1'], pos ─▶ …['f2']
//! ```
//!
//! One UNNEST after one table; anything else beside it is refused at its place.

use std::ops::ControlFlow;

use sqlparser::ast::{
    ExcludeSelectItem, Expr, FunctionArg, FunctionArgExpr, FunctionArguments, Ident, JoinOperator,
    ObjectName, Query, SelectItem, SelectItemQualifiedWildcardKind, SetExpr, Spanned, TableAlias,
    TableFactor, TableWithJoins, VisitMut, VisitorMut, WildcardAdditionalOptions,
};
use sqlparser::parser::Parser;
use strata_catalog::ddl::FlinkDialect;
use strata_catalog::functions::UNNEST_ROWS;

use crate::error::{PipelineError, Result};
use crate::mention::place;

const HINT: &str = "write FROM space.t AS o CROSS JOIN UNNEST(o.array_column) AS u(element) (u(a, b, …) for an array of rows or a map, WITH ORDINALITY before AS for the position), one array after one table, or SELECT …, unnest(o.array_column) FROM space.t AS o";

/// Rewrites the query's `CROSS JOIN UNNEST(…) AS t(…)`, if it has one.
pub fn cross_join_unnest(query: &mut Query, file: &str) -> Result<()> {
    let SetExpr::Select(select) = query.body.as_mut() else {
        return Ok(());
    };
    let [from] = select.from.as_mut_slice() else {
        return Ok(());
    };
    let Some(at) = from
        .joins
        .iter()
        .position(|join| unnest_of(&join.relation).is_some())
    else {
        return Ok(());
    };
    let join = &from.joins[at];
    let location = place(file, join.relation.span().start);
    let refuse = |message: &str| PipelineError::Invalid {
        location: location.clone(),
        message: message.to_string(),
        hint: Some(HINT.to_string()),
    };
    let Unnest {
        arrays,
        alias,
        ordinality,
    } = unnest_of(&join.relation).expect("found above");
    if from.joins.len() > 1 || !matches!(join.join_operator, JoinOperator::CrossJoin(_)) {
        return Err(refuse(
            "UNNEST beside other joins, or joined otherwise than by CROSS JOIN",
        ));
    }
    let ([array], Some(TableAlias { name, columns, .. })) = (arrays.as_slice(), alias) else {
        return Err(refuse(
            "UNNEST of several arrays, or without AS t(element) naming its column",
        ));
    };
    if columns.is_empty() {
        return Err(refuse("UNNEST without AS t(element) naming its columns"));
    }
    let TableFactor::Table {
        name: table_name,
        alias: table_alias,
        ..
    } = &from.relation
    else {
        return Err(refuse("UNNEST after something else than a table"));
    };
    let table_alias = match table_alias {
        Some(alias) => alias.name.clone(),
        None => table_name
            .0
            .last()
            .and_then(|part| part.as_ident())
            .cloned()
            .ok_or_else(|| refuse("UNNEST after a table whose name has no last part"))?,
    };
    let unnested = Unnested {
        table: table_alias,
        relation: from.relation.clone(),
        array: (*array).clone(),
        alias: name.value.clone(),
        columns: columns.iter().map(|c| c.name.clone()).collect(),
    };
    let rewritten = unnested
        .rows(select, &mut query.order_by, ordinality)
        .map_err(|err| refuse(&format!("UNNEST of {} ({err})", unnested.array)))?;
    select.from[0] = rewritten;
    Ok(())
}

/// A `CROSS JOIN UNNEST` to rewrite: the table before it, the array, and the
/// alias and columns it names.
struct Unnested {
    /// The table's alias (or name), which the rewritten subquery takes.
    table: Ident,
    relation: TableFactor,
    array: Expr,
    alias: String,
    columns: Vec<Ident>,
}

impl Unnested {
    /// Each element a struct of numbered fields (an array of values' one
    /// field, a row's fields, a map entry's key and value, and the position
    /// when asked), and the columns its fields in order.
    fn rows(
        &self,
        select: &mut sqlparser::ast::Select,
        order_by: &mut Option<sqlparser::ast::OrderBy>,
        ordinality: bool,
    ) -> std::result::Result<TableWithJoins, String> {
        // A name of letters, digits and underscores, whatever the alias's quotes hold.
        let alias: String = self
            .alias
            .chars()
            .map(|c| match c.is_ascii_alphanumeric() {
                true => c.to_ascii_lowercase(),
                false => '_',
            })
            .collect();
        let internal = Ident::new(format!("__unnest_{alias}"));
        let named = self.columns.len();
        let call = match ordinality {
            true => format!("unnest({UNNEST_ROWS}(NULL, {named}, TRUE))"),
            false => format!("unnest({UNNEST_ROWS}(NULL, {named}))"),
        };
        let rewritten = self.subquery(&call, &internal)?;
        let fields = self
            .columns
            .iter()
            .enumerate()
            .map(|(at, _)| {
                let text = format!("{}.{internal}['f{at}']", self.table);
                Parser::new(&FlinkDialect)
                    .try_with_sql(&text)
                    .and_then(|mut parser| parser.parse_expr())
                    .map_err(|err| err.to_string())
            })
            .collect::<std::result::Result<Vec<Expr>, String>>()?;
        self.replace_columns(select, order_by, |at| fields[at].clone());
        self.expand_wildcards(select, &internal, &fields);
        Ok(rewritten)
    }

    /// `*` and `table.*` are the table's columns, then the UNNEST's (not the
    /// struct they are read from); `t.*` is the UNNEST's columns.
    fn expand_wildcards(
        &self,
        select: &mut sqlparser::ast::Select,
        internal: &Ident,
        fields: &[Expr],
    ) {
        let unnested: Vec<SelectItem> = self
            .columns
            .iter()
            .zip(fields)
            .map(|(column, field)| SelectItem::ExprWithAlias {
                expr: field.clone(),
                alias: column.clone(),
            })
            .collect();
        let exclude = |mut options: WildcardAdditionalOptions| {
            if options.opt_exclude.is_none() {
                options.opt_exclude = Some(ExcludeSelectItem::Single(ObjectName::from(vec![
                    internal.clone(),
                ])));
            }
            options
        };
        let names = |name: &ObjectName, expected: &str| matches!(name.0.as_slice(), [part] if part.as_ident().is_some_and(|ident| ident.value.eq_ignore_ascii_case(expected)));
        let mut projection = Vec::new();
        for item in std::mem::take(&mut select.projection) {
            match item {
                SelectItem::Wildcard(options) => {
                    projection.push(SelectItem::Wildcard(exclude(options)));
                    projection.extend(unnested.iter().cloned());
                }
                SelectItem::QualifiedWildcard(
                    SelectItemQualifiedWildcardKind::ObjectName(name),
                    _,
                ) if names(&name, &self.alias) => {
                    projection.extend(unnested.iter().cloned());
                }
                SelectItem::QualifiedWildcard(
                    SelectItemQualifiedWildcardKind::ObjectName(name),
                    options,
                ) if names(&name, &self.table.value) => {
                    projection.push(SelectItem::QualifiedWildcard(
                        SelectItemQualifiedWildcardKind::ObjectName(name),
                        exclude(options),
                    ));
                }
                other => projection.push(other),
            }
        }
        select.projection = projection;
    }

    /// `(SELECT t.*, <call> AS internal FROM the table) AS t`, the array in
    /// place of the NULL the inner call takes.
    fn subquery(
        &self,
        call: &str,
        internal: &Ident,
    ) -> std::result::Result<TableWithJoins, String> {
        let template = format!("SELECT {}.*, {call} AS element FROM unnested", self.table);
        let mut subquery = Parser::new(&FlinkDialect)
            .try_with_sql(&template)
            .and_then(|mut parser| parser.parse_query())
            .map_err(|err| err.to_string())?;
        let SetExpr::Select(inner) = subquery.body.as_mut() else {
            return Err("the rewritten SELECT".to_string());
        };
        inner.from[0].relation = self.relation.clone();
        let Some(SelectItem::ExprWithAlias { expr, alias }) = inner.projection.get_mut(1) else {
            return Err("the rewritten unnest".to_string());
        };
        *alias = internal.clone();
        *first_argument(expr)
            .and_then(first_argument)
            .ok_or("the rewritten unnest's argument")? = self.array.clone();
        Ok(TableWithJoins {
            relation: TableFactor::Derived {
                lateral: false,
                subquery,
                alias: Some(TableAlias {
                    explicit: true,
                    name: self.table.clone(),
                    columns: Vec::new(),
                    at: None,
                }),
                sample: None,
            },
            joins: Vec::new(),
        })
    }

    /// Replaces the UNNEST's columns in `select` and the query's `order_by`
    /// (`t.column`, or a bare `column` outside the subqueries, which have
    /// columns of their own) by what `read(n)` gives for the n-th.
    fn replace_columns(
        &self,
        select: &mut sqlparser::ast::Select,
        order_by: &mut Option<sqlparser::ast::OrderBy>,
        read: impl Fn(usize) -> Expr,
    ) {
        let mut columns = Columns {
            unnested: self,
            read,
            depth: 0,
        };
        let _ = select.visit(&mut columns);
        let _ = order_by.visit(&mut columns);
    }
}

/// The visitor [`Unnested::replace_columns`] walks a SELECT with.
struct Columns<'a, F> {
    unnested: &'a Unnested,
    read: F,
    /// How many subqueries deep the walk is.
    depth: usize,
}

impl<F: Fn(usize) -> Expr> VisitorMut for Columns<'_, F> {
    type Break = ();

    fn pre_visit_query(&mut self, _query: &mut Query) -> ControlFlow<()> {
        self.depth += 1;
        ControlFlow::Continue(())
    }

    fn post_visit_query(&mut self, _query: &mut Query) -> ControlFlow<()> {
        self.depth -= 1;
        ControlFlow::Continue(())
    }

    fn post_visit_expr(&mut self, expr: &mut Expr) -> ControlFlow<()> {
        let position = |name: &Ident| {
            self.unnested
                .columns
                .iter()
                .position(|column| column.value.eq_ignore_ascii_case(&name.value))
        };
        let at = match expr {
            Expr::CompoundIdentifier(parts) => match parts.as_slice() {
                [qualifier, column]
                    if qualifier.value.eq_ignore_ascii_case(&self.unnested.alias) =>
                {
                    position(column)
                }
                _ => None,
            },
            Expr::Identifier(column) if self.depth == 0 => position(column),
            _ => None,
        };
        if let Some(at) = at {
            *expr = (self.read)(at);
        }
        ControlFlow::Continue(())
    }
}

/// The first argument of a function call.
fn first_argument(expr: &mut Expr) -> Option<&mut Expr> {
    let Expr::Function(function) = expr else {
        return None;
    };
    let FunctionArguments::List(list) = &mut function.args else {
        return None;
    };
    match list.args.first_mut() {
        Some(FunctionArg::Unnamed(FunctionArgExpr::Expr(argument))) => Some(argument),
        _ => None,
    }
}

/// An `UNNEST(…)` in FROM: its arrays, its alias and whether it numbers the elements.
struct Unnest<'a> {
    arrays: Vec<&'a Expr>,
    alias: &'a Option<TableAlias>,
    ordinality: bool,
}

/// The UNNEST `factor` is, in either form the parser gives it (Flink's
/// dialect reads it as a table function named UNNEST).
fn unnest_of(factor: &TableFactor) -> Option<Unnest<'_>> {
    match factor {
        TableFactor::UNNEST {
            alias,
            array_exprs,
            with_offset,
            with_ordinality,
            ..
        } => Some(Unnest {
            arrays: array_exprs.iter().collect(),
            alias,
            ordinality: *with_offset || *with_ordinality,
        }),
        TableFactor::Table {
            name,
            alias,
            args: Some(args),
            with_ordinality,
            ..
        } if name.to_string().eq_ignore_ascii_case("unnest") => Some(Unnest {
            arrays: args
                .args
                .iter()
                .filter_map(|arg| match arg {
                    FunctionArg::Unnamed(FunctionArgExpr::Expr(expr)) => Some(expr),
                    _ => None,
                })
                .collect(),
            alias,
            ordinality: *with_ordinality,
        }),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rewritten(sql: &str) -> String {
        let mut query = Parser::new(&FlinkDialect)
            .try_with_sql(sql)
            .and_then(|mut parser| parser.parse_query())
            .unwrap();
        cross_join_unnest(&mut query, "p.sql").unwrap();
        query.to_string()
    }

    #[test]
    fn columns_are_read_by_position_and_subqueries_keep_their_own() {
        let sql = rewritten(
            "SELECT o.id, tag, \"T 1\".pos FROM s.orders AS o CROSS JOIN UNNEST(o.tags) WITH ORDINALITY AS \"T 1\"(tag, pos) \
             WHERE tag IN (SELECT tag FROM s.allowed) ORDER BY \"T 1\".pos",
        );
        assert!(
            sql.starts_with("SELECT o.id, o.__unnest_t_1['f0'], o.__unnest_t_1['f1'] FROM (SELECT o.*, unnest(flink_unnest_rows(o.tags, 2, true)) AS __unnest_t_1 FROM s.orders AS o) AS o"),
            "{sql}"
        );
        assert!(
            sql.ends_with(
                "WHERE o.__unnest_t_1['f0'] IN (SELECT tag FROM s.allowed) ORDER BY o.__unnest_t_1['f1']"
            ),
            "{sql}"
        );
    }
}
