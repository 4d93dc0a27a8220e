//! Views declared in a pipeline file before its INSERT
//! (`CREATE [TEMPORARY] VIEW v AS SELECT …`), as Flink jobs name their steps:
//! each becomes a common table expression of the INSERT's query, in the
//! order declared, so that it means what Flink's view means and every check
//! of the query sees through it.
//!
//! ```text
//!   CREATE TEMPORARY VIEW paid AS SELECT … FROM shop.ods_orders WHERE …;      WITH paid AS (SELECT … WHERE …),
//!   CREATE VIEW big (id, amount) AS SELECT … FROM paid WHERE …;        ──▶        big (id, amount) AS (SELECT … FROM paid …)
//!   INSERT INTO shop.dwd_big SELECT … FROM big;                                 SELECT … FROM big
//! ```

use sqlparser::ast::helpers::attached_token::AttachedToken;
use sqlparser::ast::{
    CreateTableOptions, CreateView, Cte, Query, Spanned, TableAlias, TableAliasColumnDef, With,
};

use crate::error::{PipelineError, Result};
use crate::mention::place;

/// Makes each view a common table expression of `query`, before its own.
pub(crate) fn inline(views: Vec<CreateView>, query: &mut Query, file: &str) -> Result<()> {
    let mut ctes = Vec::with_capacity(views.len());
    for view in views {
        let at = place(file, view.name.span().start);
        let refused = |message: String, hint: &str| PipelineError::Invalid {
            location: at.clone(),
            message,
            hint: Some(hint.to_string()),
        };
        let [part] = view.name.0.as_slice() else {
            return Err(refused(
                format!("the view {} is named with a space", view.name),
                "name a pipeline's view without one (CREATE TEMPORARY VIEW paid AS …): it lives in this file",
            ));
        };
        let Some(name) = part.as_ident().cloned() else {
            return Err(refused(
                format!("{} is not a view's name", view.name),
                "write CREATE TEMPORARY VIEW name AS SELECT …",
            ));
        };
        if view.materialized || !matches!(view.options, CreateTableOptions::None) {
            return Err(refused(
                format!("the view {name} has options or is materialized"),
                "a pipeline's view is a named SELECT: write CREATE TEMPORARY VIEW name AS SELECT …, and declare tables in catalog/*.sql",
            ));
        }
        let declared_before = |cte: &Cte| cte.alias.name.value == name.value;
        let existing = query.with.as_ref();
        if ctes.iter().any(declared_before)
            || existing.is_some_and(|with| with.cte_tables.iter().any(declared_before))
        {
            return Err(refused(
                format!("{name} is declared twice"),
                "give each view and WITH table of a pipeline a name of its own",
            ));
        }
        ctes.push(Cte {
            alias: TableAlias {
                explicit: false,
                name,
                columns: view
                    .columns
                    .into_iter()
                    .map(|column| TableAliasColumnDef {
                        name: column.name,
                        data_type: column.data_type,
                    })
                    .collect(),
                at: None,
            },
            query: view.query,
            from: None,
            materialized: None,
            closing_paren_token: AttachedToken::empty(),
        });
    }
    if ctes.is_empty() {
        return Ok(());
    }
    let with = query.with.get_or_insert_with(|| With {
        with_token: AttachedToken::empty(),
        recursive: false,
        cte_tables: Vec::new(),
    });
    ctes.append(&mut with.cte_tables);
    with.cte_tables = ctes;
    Ok(())
}
