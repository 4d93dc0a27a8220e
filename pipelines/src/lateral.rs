//! Flink's `CROSS JOIN UNNEST(…) AS t(…)`, which DataFusion cannot plan (its
//! array is a column of the table before it), rewritten into the `unnest(…)`
//! of a SELECT that pipelines run.
//!
//! ```text
//!   SELECT o.id, t.tag                              SELECT o.id, o.tag
//!   FROM space.orders AS o               ──▶        FROM (SELECT o.*, unnest(o.tags) AS tag FROM space.orders AS o) AS o
//!   CROSS JOIN UNNEST(o.tags) AS t(tag)
//! ```
//!
//! One array of scalars, after one table; an array of rows into several
//! columns, `WITH ORDINALITY`, and anything else beside it are refused at
//! their place.

use sqlparser::ast::{
    Expr, FunctionArg, FunctionArgExpr, Ident, JoinOperator, Query, SetExpr, Spanned, TableAlias,
    TableFactor, TableWithJoins, visit_expressions_mut,
};
use sqlparser::parser::Parser;
use strata_catalog::SourceLocation;
use strata_catalog::ddl::FlinkDialect;

use crate::error::{PipelineError, Result};

const HINT: &str = "write FROM space.t AS o CROSS JOIN UNNEST(o.array_column) AS u(element), one array after one table, or SELECT …, unnest(o.array_column) FROM space.t AS o";

/// Rewrites the query's `CROSS JOIN UNNEST(…) AS t(x)`, if it has one.
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
    let refuse = |message: &str| PipelineError::Invalid {
        location: location(file, join.relation.span().start),
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
    if ordinality {
        return Err(refuse("UNNEST … WITH ORDINALITY (the element's position)"));
    }
    let (
        [array],
        Some(TableAlias {
            name: unnested,
            columns,
            ..
        }),
    ) = (arrays.as_slice(), alias)
    else {
        return Err(refuse(
            "UNNEST of several arrays, or without AS t(element) naming its column",
        ));
    };
    let [element] = columns.as_slice() else {
        return Err(refuse(
            "UNNEST into several columns (an array of rows): Strata unnests arrays of values",
        ));
    };
    let TableFactor::Table { name, alias, .. } = &from.relation else {
        return Err(refuse("UNNEST after something else than a table"));
    };
    let table_alias = match alias {
        Some(alias) => alias.name.clone(),
        None => name
            .0
            .last()
            .and_then(|part| part.as_ident())
            .cloned()
            .ok_or_else(|| refuse("UNNEST after a table whose name has no last part"))?,
    };
    let inner = format!(
        "SELECT {table_alias}.*, unnest({array}) AS {} FROM {}",
        element.name, from.relation
    );
    let subquery = Parser::new(&FlinkDialect)
        .try_with_sql(&inner)
        .and_then(|mut parser| parser.parse_query())
        .map_err(|err| refuse(&format!("UNNEST of {array} ({err})")))?;
    let unnested = unnested.value.clone();
    *from = TableWithJoins {
        relation: TableFactor::Derived {
            lateral: false,
            subquery,
            alias: Some(TableAlias {
                explicit: true,
                name: table_alias.clone(),
                columns: Vec::new(),
                at: None,
            }),
            sample: None,
        },
        joins: Vec::new(),
    };
    // The element is a column of the rewritten table now: t.tag reads o.tag.
    let _ = visit_expressions_mut(select, |expr| {
        if let Expr::CompoundIdentifier(parts) = expr
            && let [qualifier, _] = parts.as_mut_slice()
            && qualifier.value.eq_ignore_ascii_case(&unnested)
        {
            *qualifier = Ident::new(table_alias.value.clone());
        }
        std::ops::ControlFlow::<()>::Continue(())
    });
    Ok(())
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

fn location(file: &str, start: sqlparser::tokenizer::Location) -> SourceLocation {
    SourceLocation {
        file: file.to_string(),
        line: start.line.max(1),
        column: start.column.max(1),
    }
}
