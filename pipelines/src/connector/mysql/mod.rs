//! MySQL/TiDB tables: written by upserts in one transaction with the
//! pipeline's progress table, and looked up by key with `WHERE key IN (…)`.
//!
//! ```text
//!   rows + positions ──sink: one transaction (upserts, _strata_progress)──▶ db.table
//!   keys of a batch ──dimension: SELECT … WHERE id IN (?, ?, …), values bound──▶ lookup join
//! ```

pub mod dimension;
pub mod sink;

use strata_catalog::{TableDef, connectors};

use super::{Connector, DimensionContext};
use crate::error::Result;
use crate::lookup::dimension::Dimension;
use crate::sink::{TargetOptions, TargetSink};

/// The `'connector' = 'mysql'` tables (MySQL, MariaDB and TiDB).
pub struct Mysql;

#[async_trait::async_trait]
impl Connector for Mysql {
    fn name(&self) -> &'static str {
        "mysql"
    }

    fn label(&self) -> &'static str {
        "MySQL/TiDB"
    }

    async fn open_target(
        &self,
        table: &TableDef,
        options: TargetOptions<'_>,
    ) -> Result<Box<dyn TargetSink>> {
        Ok(Box::new(
            sink::MysqlSink::open(
                connectors::mysql_target(options.project, table)?,
                table.schema.clone(),
                table.primary_key.clone(),
                options.pipeline,
            )
            .await?,
        ))
    }

    fn upserts_only(&self) -> bool {
        true
    }

    fn dimension(
        &self,
        table: &TableDef,
        context: &DimensionContext<'_>,
    ) -> Result<Option<Dimension>> {
        Ok(Some(Dimension::Keyed(Box::new(
            dimension::MysqlDimension::new(
                connectors::mysql_target(context.project, table)?,
                table.schema.clone(),
            ),
        ))))
    }
}
