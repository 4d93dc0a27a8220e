//! Flink-style DDL: `CREATE TABLE … WITH (...)` files that data engineers keep in git.
//!
//! ```text
//!   file.sql ──parse──▶ CreateTable (with file:line:col) ──resolve──▶ TableDef
//! ```

mod parse;
mod resolve;
pub mod types;

pub use parse::{CreateTable, FlinkDialect, parse_ddl};
pub use resolve::{database_of, resolve};

use std::collections::BTreeMap;

use crate::config::Connection;
use crate::error::Result;
use crate::model::TableDef;

/// Parses and resolves every statement of a DDL file.
pub fn table_defs(
    file: &str,
    text: &str,
    connections: &BTreeMap<String, Connection>,
) -> Result<Vec<TableDef>> {
    parse_ddl(file, text)?
        .iter()
        .map(|create| resolve(create, connections))
        .collect()
}
