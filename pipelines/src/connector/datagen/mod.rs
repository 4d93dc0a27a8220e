//! Flink's datagen connector (`'connector' = 'datagen'`): a table whose rows
//! are generated in process, random or in sequence, at `'rows-per-second'`,
//! for trying pipelines without a source system. Flink users bring their
//! datagen tables over unchanged.
//!
//! ```text
//!   CREATE TABLE … WITH ('connector' = 'datagen', 'fields.id.kind' = 'sequence', …)
//!     ──DDL──▶ DECLARATION.check: spec::Spec::parse(options, columns) ──▶ TableKind::Declared
//!     ──pipeline──▶ Datagen::open_source ──▶ rows n, n+1, … ──▶ batches   (resumes after the committed n)
//! ```
//!
//! It declares itself to the DDL ([`DECLARATION`]) rather than being one of
//! the catalog's own kinds: this folder, its `mod` line and its two entries in
//! `registry.rs` are all there is of it.

pub mod source;
pub mod spec;

use std::collections::BTreeMap;

use strata_catalog::ddl::{ConnectorDeclaration, OptionProblem};
use strata_catalog::{TableDef, TableKind};

use super::{Connector, StreamTraits};
use crate::error::{PipelineError, Result};
use crate::source::reader::SourceReader;
use crate::source::{CommittedPositions, SourceOptions};

/// What the DDL knows of datagen tables.
pub static DECLARATION: ConnectorDeclaration = ConnectorDeclaration {
    names: &["datagen"],
    described: "'datagen' (rows generated in process)",
    options: &["rows-per-second", "number-of-rows"],
    prefix: Some("fields."),
    check,
    place: |_| None,
};

fn check(
    options: &BTreeMap<String, String>,
    schema: &arrow::datatypes::Schema,
) -> std::result::Result<(), OptionProblem> {
    spec::Spec::parse(options, schema).map(|_| ())
}

/// The `'connector' = 'datagen'` tables.
pub struct Datagen;

#[async_trait::async_trait]
impl Connector for Datagen {
    fn name(&self) -> &'static str {
        "datagen"
    }

    fn label(&self) -> &'static str {
        "datagen"
    }

    fn stream(&self, _table: &TableDef) -> std::result::Result<StreamTraits, String> {
        Ok(StreamTraits::default())
    }

    async fn open_source(
        &self,
        table: &TableDef,
        options: &SourceOptions<'_>,
        positions: &mut dyn CommittedPositions,
    ) -> Result<(Box<dyn SourceReader>, Vec<i32>)> {
        let TableKind::Declared { options: given, .. } = &table.kind else {
            unreachable!("the registry gives datagen tables to the datagen connector")
        };
        let spec =
            spec::Spec::parse(given, &table.schema).map_err(|problem| PipelineError::Source {
                what: format!("table {}", table.name),
                cause: format!("{}; {}", problem.message, problem.hint),
            })?;
        source::open(table, spec, options, positions).await
    }

    fn refuses_target(&self) -> Option<&'static str> {
        Some(
            "writing to a datagen table (it generates rows; write a Delta, MySQL, Kafka or blackhole table)",
        )
    }
}
