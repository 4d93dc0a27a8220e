//! Embedded tables: small dimension tables in the catalog's own SQL store,
//! looked up by key with `WHERE key IN (…)`, with nothing to install.
//!
//! ```text
//!   keys of a batch ──SELECT … FROM "space__t" WHERE id IN (?, ?, …)──▶ lookup join   (cached)
//! ```

use arrow::datatypes::DataType;
use arrow::record_batch::RecordBatch;
use strata_catalog::TableDef;
use strata_catalog::connectors::embedded::EmbeddedTable;

use super::{Connector, DimensionContext};
use crate::error::Result;
use crate::lookup::dimension::{Dimension, DimensionTable, KeyBatch};

/// The `'connector' = 'embedded'` tables.
pub struct Embedded;

#[async_trait::async_trait]
impl Connector for Embedded {
    fn name(&self) -> &'static str {
        "embedded"
    }

    fn label(&self) -> &'static str {
        "embedded"
    }

    fn refuses_target(&self) -> Option<&'static str> {
        Some(
            "writing to an embedded table (it holds small dimension tables; write a Delta or MySQL table)",
        )
    }

    fn dimension(
        &self,
        table: &TableDef,
        context: &DimensionContext<'_>,
    ) -> Result<Option<Dimension>> {
        let strata_catalog::TableKind::Embedded { table: stored } = &table.kind else {
            unreachable!("the registry gives embedded tables to the embedded connector")
        };
        Ok(Some(Dimension::Keyed(Box::new(EmbeddedDimension {
            name: table.name.to_string(),
            table: EmbeddedTable::new(
                context.store.clone(),
                &table.name,
                stored.clone(),
                table.schema.clone(),
            )?,
        }))))
    }
}

/// An embedded table looked up by key.
#[derive(Debug)]
struct EmbeddedDimension {
    name: String,
    table: EmbeddedTable,
}

#[async_trait::async_trait]
impl DimensionTable for EmbeddedDimension {
    async fn fetch(
        &self,
        key_columns: &[String],
        _key_types: &[DataType],
        keys: &KeyBatch,
    ) -> Result<RecordBatch> {
        Ok(self.table.lookup(key_columns, &keys.values).await?)
    }

    fn in_memory(&self) -> bool {
        false
    }

    fn describe(&self) -> &'static str {
        "embedded, cached"
    }

    fn refuses_keys(&self, key_types: &[DataType]) -> Option<String> {
        key_types
            .iter()
            .any(|t| matches!(t, DataType::Timestamp(_, _)))
            .then(|| {
                format!(
                    "a timestamp key for the embedded table {} (its timestamps are kept as text); keep the dimension in MySQL/TiDB or Delta, or look it up by another key",
                    self.name
                )
            })
    }
}
