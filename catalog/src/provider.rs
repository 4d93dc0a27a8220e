//! The catalog as a DataFusion `CatalogProvider`: each space is a schema, each
//! table opens its own storage when a query first names it.
//!
//! ```text
//!   SELECT … FROM shop.dim_users   ──▶ catalog "strata" ▸ schema "shop" ▸ table "dim_users"
//!                                        └─▶ MysqlTable | Delta scan | KafkaTable
//! ```
//!
//! A provider made for a [`Principal`] lists only the spaces it may read, and
//! naming a table of another space fails planning with a `Forbidden` error,
//! before anything is read. A [`LiveTables`] source may answer for a table
//! first (the realtime view of a table a pipeline is writing).

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, RwLock};

use async_trait::async_trait;
use datafusion::catalog::{CatalogProvider, SchemaProvider, TableProvider};
use datafusion::error::DataFusionError;
use datafusion::execution::context::SessionContext;
use datafusion::prelude::SessionConfig;
use sqlx::mysql::MySqlPool;

use crate::config::Project;
use crate::connectors::{self, delta, embedded, kafka, mysql, nexmark};
use crate::error::Result;
use crate::model::{TableDef, TableKind};
use crate::store::CatalogStore;
use crate::tokens::{Access, Principal};

/// Tables that another part of Strata serves better than their storage does:
/// the realtime view of a table a running pipeline writes.
#[async_trait]
pub trait LiveTables: std::fmt::Debug + Send + Sync {
    /// The table as a live view, or `None` to read its storage.
    async fn open(&self, def: &TableDef) -> Result<Option<Arc<dyn TableProvider>>>;
}

/// The name queries use for Strata's catalog; it is also the default one.
pub const CATALOG_NAME: &str = "strata";

/// Flink's reading of identifiers: an unquoted name keeps its case
/// (`itemName`, `ods_NOC`) and matches only that case, as a quoted one does.
/// Function names and keywords stay case-insensitive.
pub fn flink_identifiers(config: SessionConfig) -> SessionConfig {
    config.set_bool("datafusion.sql_parser.enable_ident_normalization", false)
}

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
                &def.name,
                table.clone(),
                def.schema.clone(),
            )?)),
            TableKind::Nexmark {
                stream,
                events,
                rate,
            } => nexmark::table_provider(&def.schema, *stream, *events, *rate),
            TableKind::Blackhole => Ok(Arc::new(datafusion::datasource::empty::EmptyTable::new(
                def.schema.clone(),
            ))),
            TableKind::Declared { name, .. } => Err(crate::error::CatalogError::Forbidden {
                message: format!(
                    "{} is a {name} table: the pipelines that read it get its rows from its connector, and queries cannot",
                    def.name
                ),
                hint: "query a table a pipeline writes from it".to_string(),
            }),
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
    /// Schemas registered beside the spaces (`pg_catalog`, time-travel tables).
    registered: RwLock<BTreeMap<String, Arc<dyn SchemaProvider>>>,
}

impl StrataCatalogProvider {
    pub fn new(defs: Vec<TableDef>, opener: Arc<TableOpener>) -> Self {
        Self::for_principal(defs, opener, None, None)
    }

    /// The catalog as `principal` may see it (every space without one), with
    /// `live` answering first for the tables it serves.
    pub fn for_principal(
        defs: Vec<TableDef>,
        opener: Arc<TableOpener>,
        principal: Option<&Principal>,
        live: Option<Arc<dyn LiveTables>>,
    ) -> Self {
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
                let refusal = principal.and_then(|p| match p.require(&space, Access::Read) {
                    Err(crate::error::CatalogError::Forbidden { message, hint }) => {
                        Some((message, hint))
                    }
                    _ => None,
                });
                (
                    space,
                    Arc::new(SpaceProvider {
                        tables,
                        opener: opener.clone(),
                        live: live.clone(),
                        refusal,
                    }),
                )
            })
            .collect();
        Self {
            spaces,
            registered: RwLock::new(BTreeMap::new()),
        }
    }

    /// A session whose default catalog is this one, with `information_schema` on.
    pub fn session(self) -> SessionContext {
        let config = flink_identifiers(
            SessionConfig::new()
                .with_default_catalog_and_schema(CATALOG_NAME, "public")
                .with_information_schema(true),
        );
        let mut ctx = SessionContext::new_with_config(config);
        ctx.register_catalog(CATALOG_NAME, Arc::new(self));
        crate::functions::register_flink_functions(&mut ctx)
            .expect("a session context takes every function");
        ctx
    }
}

impl CatalogProvider for StrataCatalogProvider {
    fn schema_names(&self) -> Vec<String> {
        let registered = self.registered.read().expect("not poisoned");
        self.spaces
            .iter()
            .filter(|(_, space)| space.refusal.is_none())
            .map(|(name, _)| name.clone())
            .chain(registered.keys().cloned())
            .collect()
    }

    fn schema(&self, name: &str) -> Option<Arc<dyn SchemaProvider>> {
        if let Some(schema) = self.registered.read().expect("not poisoned").get(name) {
            return Some(schema.clone());
        }
        self.spaces
            .get(name)
            .map(|space| space.clone() as Arc<dyn SchemaProvider>)
    }

    fn register_schema(
        &self,
        name: &str,
        schema: Arc<dyn SchemaProvider>,
    ) -> std::result::Result<Option<Arc<dyn SchemaProvider>>, DataFusionError> {
        if self.spaces.contains_key(name) {
            return Err(DataFusionError::Plan(format!(
                "{name} is a space of the catalog; it cannot be replaced"
            )));
        }
        Ok(self
            .registered
            .write()
            .expect("not poisoned")
            .insert(name.to_string(), schema))
    }

    fn deregister_schema(
        &self,
        name: &str,
        _cascade: bool,
    ) -> std::result::Result<Option<Arc<dyn SchemaProvider>>, DataFusionError> {
        Ok(self.registered.write().expect("not poisoned").remove(name))
    }
}

/// One space's tables.
#[derive(Debug)]
pub struct SpaceProvider {
    tables: BTreeMap<String, TableDef>,
    opener: Arc<TableOpener>,
    live: Option<Arc<dyn LiveTables>>,
    /// Why the principal may not read this space, and the fix, if it may not.
    refusal: Option<(String, String)>,
}

#[async_trait]
impl SchemaProvider for SpaceProvider {
    fn table_names(&self) -> Vec<String> {
        if self.refusal.is_some() {
            return Vec::new();
        }
        self.tables.keys().cloned().collect()
    }

    async fn table(
        &self,
        name: &str,
    ) -> std::result::Result<Option<Arc<dyn TableProvider>>, DataFusionError> {
        let external = |err: crate::error::CatalogError| DataFusionError::External(Box::new(err));
        let Some(def) = self.tables.get(name) else {
            // Flink's names keep their case; say so when only the case is wrong.
            return match self
                .tables
                .values()
                .find(|def| self.refusal.is_none() && def.name.name.eq_ignore_ascii_case(name))
            {
                Some(registered) => Err(external(crate::error::CatalogError::CaseMismatch {
                    written: format!("{}.{name}", registered.name.space),
                    registered: registered.name.to_string(),
                })),
                None => Ok(None),
            };
        };
        if let Some((message, hint)) = &self.refusal {
            return Err(external(crate::error::CatalogError::Forbidden {
                message: message.clone(),
                hint: hint.clone(),
            }));
        }
        if let Some(live) = &self.live
            && let Some(table) = live.open(def).await.map_err(external)?
        {
            return Ok(Some(table));
        }
        self.opener.open(def).await.map(Some).map_err(external)
    }

    fn table_exist(&self, name: &str) -> bool {
        self.tables.contains_key(name)
    }
}
