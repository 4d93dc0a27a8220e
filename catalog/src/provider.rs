//! The catalog as a DataFusion `CatalogProvider`: each space is a schema, each
//! table opens its own storage when a query first names it.
//!
//! ```text
//!   SELECT … FROM shop.dim_users   ──▶ catalog "strata" ▸ schema "shop" ▸ table "dim_users"
//!                                        └─▶ MysqlTable | Delta scan | KafkaTable
//! ```

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use async_trait::async_trait;
use datafusion::catalog::{CatalogProvider, SchemaProvider, TableProvider};
use datafusion::error::DataFusionError;
use datafusion::execution::context::SessionContext;
use datafusion::prelude::SessionConfig;
use sqlx::mysql::MySqlPool;

use crate::config::Project;
use crate::connectors::{self, delta, embedded, kafka, mysql};
use crate::error::Result;
use crate::model::{TableDef, TableKind};
use crate::store::CatalogStore;

/// The name queries use for Strata's catalog; it is also the default one.
pub const CATALOG_NAME: &str = "strata";

/// Opens tables' storage, sharing one MySQL pool per server.
#[derive(Debug)]
pub struct TableOpener {
    project: Project,
    /// The catalog store, which also holds embedded tables.
    store: CatalogStore,
    mysql_pools: tokio::sync::Mutex<HashMap<String, MySqlPool>>,
}

impl TableOpener {
    pub fn new(project: Project, store: CatalogStore) -> Self {
        Self {
            project,
            store,
            mysql_pools: tokio::sync::Mutex::new(HashMap::new()),
        }
    }

    pub async fn mysql_pool(&self, url: &str) -> Result<MySqlPool> {
        let mut pools = self.mysql_pools.lock().await;
        if let Some(pool) = pools.get(url) {
            return Ok(pool.clone());
        }
        let pool = mysql::connect(url).await?;
        pools.insert(url.to_string(), pool.clone());
        Ok(pool)
    }

    /// The table's storage as a DataFusion table.
    pub async fn open(&self, def: &TableDef) -> Result<Arc<dyn TableProvider>> {
        match &def.kind {
            TableKind::Mysql { .. } => {
                let target = connectors::mysql_target(&self.project, def)?;
                let pool = self.mysql_pool(&target.url).await?;
                Ok(Arc::new(mysql::MysqlTable::new(
                    pool,
                    target,
                    def.schema.clone(),
                )))
            }
            TableKind::Delta { .. } => {
                let location = connectors::delta_location(&self.project, def)?;
                delta::table_provider(&location).await
            }
            TableKind::Embedded { table } => Ok(Arc::new(embedded::EmbeddedTable::new(
                self.store.clone(),
                table.clone(),
                def.schema.clone(),
            ))),
            TableKind::Kafka { format, .. } => Ok(Arc::new(kafka::KafkaTable {
                name: def.name.clone(),
                target: connectors::kafka_target(&self.project, def)?,
                format: *format,
                schema: def.schema.clone(),
                primary_key: def.primary_key.clone(),
            })),
        }
    }
}

/// A snapshot of the catalog's tables, by space.
#[derive(Debug)]
pub struct StrataCatalogProvider {
    spaces: BTreeMap<String, Arc<SpaceProvider>>,
}

impl StrataCatalogProvider {
    pub fn new(defs: Vec<TableDef>, opener: Arc<TableOpener>) -> Self {
        let mut by_space: BTreeMap<String, BTreeMap<String, TableDef>> = BTreeMap::new();
        for def in defs {
            by_space
                .entry(def.name.space.clone())
                .or_default()
                .insert(def.name.name.clone(), def);
        }
        let spaces = by_space
            .into_iter()
            .map(|(space, tables)| {
                (
                    space,
                    Arc::new(SpaceProvider {
                        tables,
                        opener: opener.clone(),
                    }),
                )
            })
            .collect();
        Self { spaces }
    }

    /// A session whose default catalog is this one, with `information_schema` on.
    pub fn session(self) -> SessionContext {
        let config = SessionConfig::new()
            .with_default_catalog_and_schema(CATALOG_NAME, "public")
            .with_information_schema(true);
        let ctx = SessionContext::new_with_config(config);
        ctx.register_catalog(CATALOG_NAME, Arc::new(self));
        ctx
    }
}

impl CatalogProvider for StrataCatalogProvider {
    fn schema_names(&self) -> Vec<String> {
        self.spaces.keys().cloned().collect()
    }

    fn schema(&self, name: &str) -> Option<Arc<dyn SchemaProvider>> {
        self.spaces
            .get(name)
            .map(|space| space.clone() as Arc<dyn SchemaProvider>)
    }
}

/// One space's tables.
#[derive(Debug)]
pub struct SpaceProvider {
    tables: BTreeMap<String, TableDef>,
    opener: Arc<TableOpener>,
}

#[async_trait]
impl SchemaProvider for SpaceProvider {
    fn table_names(&self) -> Vec<String> {
        self.tables.keys().cloned().collect()
    }

    async fn table(
        &self,
        name: &str,
    ) -> std::result::Result<Option<Arc<dyn TableProvider>>, DataFusionError> {
        let Some(def) = self.tables.get(name) else {
            return Ok(None);
        };
        self.opener
            .open(def)
            .await
            .map(Some)
            .map_err(|err| DataFusionError::External(Box::new(err)))
    }

    fn table_exist(&self, name: &str) -> bool {
        self.tables.contains_key(name)
    }
}
