//! Strata's own tables, read-only, in the reserved space `_strata`:
//! `_strata.quality_results`, every rule evaluation the project recorded.
//!
//! ```text
//!   SELECT … FROM _strata.quality_results
//!     ─▶ <lake root>/_strata/quality_results (Delta)
//!     ─▶ only the rows of tables in spaces the token may read
//! ```
//!
//! A token that reads every space sees every row; any other sees the results
//! of its spaces' tables only. Nothing may write these tables: the space is
//! reserved, so no grant names it and `INSERT` is refused.

use std::sync::Arc;

use async_trait::async_trait;
use datafusion::catalog::{SchemaProvider, TableProvider};
use datafusion::datasource::empty::EmptyTable;
use datafusion::error::{DataFusionError, Result};
use datafusion::prelude::SessionContext;
use strata_catalog::connectors::delta as lake;
use strata_catalog::tokens::EVERY_SPACE;
use strata_catalog::{Access, Principal};

/// The reserved space that holds Strata's own tables.
pub const OWN_SPACE: &str = "_strata";

/// The results of every quality rule evaluation.
pub const QUALITY_RESULTS: &str = "quality_results";

/// `_strata` as a schema: its tables open when a query names them.
#[derive(Debug)]
pub struct OwnTables {
    results_location: String,
    /// The spaces whose rows the token may see; `None`: every space.
    readable: Option<Vec<String>>,
}

impl OwnTables {
    pub fn new(results_location: String, principal: &Principal) -> Self {
        let readable = (!principal.allows(EVERY_SPACE, Access::Read)).then(|| {
            principal
                .grants
                .iter()
                .filter(|grant| grant.access >= Access::Read)
                .map(|grant| grant.space.clone())
                .collect()
        });
        Self {
            results_location,
            readable,
        }
    }

    /// The quality results, as rows the token may see.
    async fn quality_results(&self) -> Result<Arc<dyn TableProvider>> {
        let external = |err: strata_catalog::CatalogError| DataFusionError::External(Box::new(err));
        if !lake::exists(&self.results_location)
            .await
            .map_err(external)?
        {
            return Ok(Arc::new(EmptyTable::new(strata_quality::results::schema())));
        }
        let stored = lake::table_provider(&self.results_location)
            .await
            .map_err(external)?;
        let Some(readable) = &self.readable else {
            return Ok(stored);
        };
        let context = SessionContext::new();
        context.register_table("results", stored)?;
        let spaces = if readable.is_empty() {
            "NULL".to_string()
        } else {
            readable
                .iter()
                .map(|space| format!("'{}'", space.replace('\'', "''")))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let visible = context
            .sql(&format!(
                "SELECT * FROM results WHERE split_part(\"table\", '.', 1) IN ({spaces})"
            ))
            .await?;
        Ok(visible.into_view())
    }
}

#[async_trait]
impl SchemaProvider for OwnTables {
    fn table_names(&self) -> Vec<String> {
        vec![QUALITY_RESULTS.to_string()]
    }

    async fn table(&self, name: &str) -> Result<Option<Arc<dyn TableProvider>>> {
        match name {
            QUALITY_RESULTS => self.quality_results().await.map(Some),
            _ => Ok(None),
        }
    }

    fn table_exist(&self, name: &str) -> bool {
        name == QUALITY_RESULTS
    }
}
