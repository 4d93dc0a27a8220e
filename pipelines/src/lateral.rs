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
//! One array of scalars, after one table; an array of rows into several
//! columns, `WITH ORDINALITY`, and anything else beside it are refused at
//! their place.

use sqlparser::ast::{
    Expr, FunctionArg, FunctionArgExpr, FunctionArguments, Ident, JoinOperator, Query, SelectItem,
    SetExpr, Spanned, TableAlias, TableFactor, TableWithJoins, visit_expressions_mut,
};
use sqlparser::parser::Parser;
use strata_catalog::ddl::FlinkDialect;

use crate::error::{PipelineError, Result};
use crate::mention::place;

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
        location: place(file, join.relation.span().start),
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
    // The element gets a name of its own, so that it never collides with the
    // table's columns; the table and the array keep their places in the file.
    let internal = Ident {
        value: format!("__unnest_{}", element.name.value),
        ..element.name.clone()
    };
    let template = format!("SELECT {table_alias}.*, unnest(NULL) AS element FROM unnested");
    let mut subquery = Parser::new(&FlinkDialect)
        .try_with_sql(&template)
        .and_then(|mut parser| parser.parse_query())
        .map_err(|err| refuse(&format!("UNNEST of {array} ({err})")))?;
    if let SetExpr::Select(inner) = subquery.body.as_mut() {
        inner.from[0].relation = from.relation.clone();
        if let Some(SelectItem::ExprWithAlias {
            expr: Expr::Function(unnest),
            alias,
        }) = inner.projection.get_mut(1)
            && let FunctionArguments::List(list) = &mut unnest.args
            && let Some(FunctionArg::Unnamed(FunctionArgExpr::Expr(argument))) =
                list.args.first_mut()
        {
            *argument = (*array).clone();
            *alias = internal.clone();
        }
    }
    let rewritten = TableWithJoins {
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
    let (unnested, element) = (unnested.value.clone(), element.name.value.clone());
    // The element is a column of the rewritten table now: t.tag (and a bare
    // tag) read o.__unnest_tag.
    let _ = visit_expressions_mut(select, |expr| {
        match expr {
            Expr::CompoundIdentifier(parts) => {
                if let [qualifier, column] = parts.as_mut_slice()
                    && qualifier.value.eq_ignore_ascii_case(&unnested)
                    && column.value.eq_ignore_ascii_case(&element)
                {
                    *qualifier = table_alias.clone();
                    *column = internal.clone();
                }
            }
            Expr::Identifier(column) if column.value.eq_ignore_ascii_case(&element) => {
                *column = internal.clone();
            }
            _ => {}
        }
        std::ops::ControlFlow::<()>::Continue(())
    });
    select.from[0] = rewritten;
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
