//! A table as a pipeline names it (`space.table`), with where in the file.

use sqlparser::ast::{ObjectName, Spanned};
use strata_catalog::{SourceLocation, TableName};

use crate::error::{PipelineError, Result};

/// A table named in a pipeline, with where it was written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableMention {
    pub table: TableName,
    pub location: SourceLocation,
}

/// The place in `file` of what the parser found starting at `start`.
pub(crate) fn place(file: &str, start: sqlparser::tokenizer::Location) -> SourceLocation {
    SourceLocation {
        file: file.to_string(),
        line: start.line.max(1),
        column: start.column.max(1),
    }
}

/// The one identifier of a name without a space (a view, a WITH table), if it is one.
pub(crate) fn unqualified(name: &ObjectName) -> Option<&sqlparser::ast::Ident> {
    match name.0.as_slice() {
        [part] => part.as_ident(),
        _ => None,
    }
}

/// The table `name` names, as `space.table`, with its place in `file`.
pub(crate) fn mention(file: &str, name: &ObjectName) -> Result<TableMention> {
    let location = place(file, name.span().start);
    let parts: Vec<String> = name
        .0
        .iter()
        .map(|part| match part.as_ident() {
            Some(ident) => ident.value.clone(),
            None => part.to_string(),
        })
        .collect();
    match parts.as_slice() {
        [space, table] => Ok(TableMention {
            table: TableName::new(space, table),
            location,
        }),
        _ => Err(PipelineError::Invalid {
            location,
            message: format!("table {name} must be named SPACE.TABLE"),
            hint: Some("qualify it with its space, e.g. shop.ods_orders".to_string()),
        }),
    }
}
