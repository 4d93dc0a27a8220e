//! A MySQL/TiDB dimension: the rows of a batch's keys, fetched with
//! `SELECT … WHERE key IN (…)` and the values bound; connected at the first
//! lookup, and again after a failed connect.

use arrow::datatypes::{DataType, SchemaRef};
use arrow::record_batch::RecordBatch;
use strata_catalog::connectors::mysql::{self, MysqlTable, MysqlTarget};
use tokio::sync::OnceCell;

use crate::error::Result;
use crate::lookup::dimension::{DimensionTable, KeyBatch};

/// A MySQL/TiDB table looked up by key.
#[derive(Debug)]
pub struct MysqlDimension {
    target: MysqlTarget,
    schema: SchemaRef,
    table: OnceCell<MysqlTable>,
}

impl MysqlDimension {
    pub fn new(target: MysqlTarget, schema: SchemaRef) -> Self {
        Self {
            target,
            schema,
            table: OnceCell::new(),
        }
    }
}

#[async_trait::async_trait]
impl DimensionTable for MysqlDimension {
    async fn fetch(
        &self,
        key_columns: &[String],
        _key_types: &[DataType],
        keys: &KeyBatch,
    ) -> Result<RecordBatch> {
        let table = self
            .table
            .get_or_try_init(|| async {
                mysql::connect(&self.target.url)
                    .await
                    .map(|pool| MysqlTable::new(pool, self.target.clone(), self.schema.clone()))
            })
            .await?;
        Ok(table.lookup(key_columns, &keys.values).await?)
    }

    fn in_memory(&self) -> bool {
        false
    }

    fn describe(&self) -> &'static str {
        "MySQL/TiDB, cached"
    }
}
