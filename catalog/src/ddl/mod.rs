//! Flink-style DDL: `CREATE TABLE … WITH (...)` files that data engineers keep in git.
//!
//! ```text
//!   file.sql ──parse──▶ CreateTable (with file:line:col) ──resolve──▶ TableDef
//! ```

pub mod declared;
mod parse;
mod resolve;
pub mod types;

pub use declared::{ConnectorDeclaration, OptionProblem, declare};
pub use parse::{
    CreateTable, FlinkDialect, TABLE_ARGUMENT, interval_millis, parse_ddl, split_parser_message,
};
pub use resolve::{database_of, resolve};

use std::collections::BTreeMap;

use crate::config::Connection;
use crate::error::{Result, SourceLocation};
use crate::model::TableDef;

/// A table definition with where its DDL stands and how it asked to be created.
#[derive(Debug, Clone)]
pub struct DdlTable {
    pub def: TableDef,
    pub location: SourceLocation,
    /// `CREATE TABLE IF NOT EXISTS`: an existing table is left alone, without an error.
    pub if_not_exists: bool,
}

/// Parses and resolves every statement of a DDL file, keeping their locations.
pub fn ddl_tables(
    file: &str,
    text: &str,
    connections: &BTreeMap<String, Connection>,
) -> Result<Vec<DdlTable>> {
    parse_ddl(file, text)?
        .iter()
        .map(|create| {
            Ok(DdlTable {
                def: resolve(create, connections)?,
                location: create.name.location.clone(),
                if_not_exists: create.if_not_exists,
            })
        })
        .collect()
}

/// Parses and resolves every statement of a DDL file.
pub fn table_defs(
    file: &str,
    text: &str,
    connections: &BTreeMap<String, Connection>,
) -> Result<Vec<TableDef>> {
    Ok(ddl_tables(file, text, connections)?
        .into_iter()
        .map(|table| table.def)
        .collect())
}
