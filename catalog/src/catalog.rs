//! The catalog service: registration, discovery and queries over one store.
//!
//! Registration is all or nothing:
//!
//! ```text
//!   parse + resolve every file ──▶ refuse duplicates ──▶ prepare storage ──▶ one store transaction
//!        (file:line:col errors)                          (create empty Delta     │ fails?
//!                                                         tables, check MySQL)   └─▶ remove what was created
//! ```

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use datafusion::execution::context::SessionContext;

use crate::config::Project;
use crate::connectors::{self, delta, kafka, mysql};
use crate::ddl;
use crate::error::{CatalogError, Result};
use crate::model::{
    KafkaFormat, Layer, SchemaVersion, StartupMode, TableDef, TableEntry, TableKind, TableName,
};
use crate::provider::{StrataCatalogProvider, TableOpener};
use crate::store::{CatalogStore, UpdateOutcome};

/// Whether registering a taken name is an error or an update.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RegisterMode {
    /// A taken name is refused and the existing table left as it is.
    Create,
    /// A taken name gets the new definition; a changed schema becomes a new version.
    Update,
}

/// What registration did to one table.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case", tag = "action", content = "schema_version")]
pub enum RegisterAction {
    Created,
    NewSchemaVersion(i64),
    MetadataUpdated,
    Unchanged,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct Registered {
    pub table: String,
    #[serde(flatten)]
    pub action: RegisterAction,
    /// What happened to the storage, e.g. an empty Delta table created.
    pub storage: Option<String>,
}

/// What discovery can register, and what it passed over with the reason.
#[derive(Debug, Clone)]
pub struct Discovery {
    pub connection: String,
    pub tables: Vec<TableDef>,
    pub skipped: Vec<(String, String)>,
    /// True when schemas were inferred from samples and should be confirmed.
    pub inferred: bool,
}

/// How to name and place discovered tables.
#[derive(Debug, Clone, Default)]
pub struct DiscoverOptions {
    /// The space to register into; defaults to the database (MySQL) or the connection's name.
    pub space: Option<String>,
    /// The layer of tables whose names have no layer prefix.
    pub layer: Option<Layer>,
    /// Kafka: only these topics (all non-internal topics when empty).
    pub topics: Vec<String>,
    /// Kafka: how many of the newest records per partition to sample.
    pub sample_per_partition: i64,
}

/// A query's result.
#[derive(Debug)]
pub struct QueryResult {
    pub schema: SchemaRef,
    pub batches: Vec<RecordBatch>,
}

#[derive(Debug, Clone)]
pub struct Catalog {
    project: Project,
    store: CatalogStore,
}

impl Catalog {
    /// Opens the project's catalog store, applying migrations.
    pub async fn open(project: Project) -> Result<Self> {
        let store = CatalogStore::connect(&project.catalog_url()).await?;
        Ok(Self { project, store })
    }

    pub fn project(&self) -> &Project {
        &self.project
    }

    pub fn store(&self) -> &CatalogStore {
        &self.store
    }

    /// Registers every table of the given DDL files, all or none.
    pub async fn register_files(
        &self,
        files: &[PathBuf],
        mode: RegisterMode,
    ) -> Result<Vec<Registered>> {
        let mut defs = Vec::new();
        for file in files {
            let text = std::fs::read_to_string(file).map_err(|source| CatalogError::Io {
                path: file.clone(),
                source,
            })?;
            defs.extend(self.parse(&file.display().to_string(), &text)?);
        }
        self.register(defs, mode).await
    }

    /// Registers the tables of DDL text; `origin` names it in errors.
    pub async fn register_sql(
        &self,
        origin: &str,
        text: &str,
        mode: RegisterMode,
    ) -> Result<Vec<Registered>> {
        let defs = self.parse(origin, text)?;
        self.register(defs, mode).await
    }

    fn parse(&self, origin: &str, text: &str) -> Result<Vec<TableDef>> {
        ddl::table_defs(origin, text, &self.project.config.connections)
    }

    /// Registers checked definitions, all or none.
    pub async fn register(
        &self,
        defs: Vec<TableDef>,
        mode: RegisterMode,
    ) -> Result<Vec<Registered>> {
        let mut names = BTreeSet::new();
        for def in &defs {
            if !names.insert(def.name.clone()) {
                return Err(CatalogError::Discovery {
                    message: format!("table {} is defined twice in this registration", def.name),
                    hint: Some("keep one CREATE TABLE per table".to_string()),
                });
            }
        }
        let mut new_defs = Vec::new();
        let mut updates = Vec::new();
        for def in defs {
            if self.store.contains(&def.name).await? {
                if mode == RegisterMode::Create {
                    return Err(CatalogError::AlreadyExists {
                        table: def.name.to_string(),
                    });
                }
                updates.push(def);
            } else {
                new_defs.push(def);
            }
        }

        let mut created_locations = Vec::new();
        let prepared = self
            .prepare_storage(
                new_defs.iter().chain(&updates),
                &updates.iter().map(|d| d.name.clone()).collect(),
                &mut created_locations,
            )
            .await;
        let storage_notes = match prepared {
            Ok(notes) => notes,
            Err(err) => {
                created_locations
                    .iter()
                    .for_each(|l: &String| delta::remove_created(l));
                return Err(err);
            }
        };
        if let Err(err) = self.store.insert(&new_defs).await {
            created_locations
                .iter()
                .for_each(|l| delta::remove_created(l));
            return Err(err);
        }
        let mut results: Vec<Registered> = new_defs
            .iter()
            .map(|def| Registered {
                table: def.name.to_string(),
                action: RegisterAction::Created,
                storage: storage_notes
                    .iter()
                    .find(|(n, _)| n == &def.name)
                    .map(|(_, s)| s.clone()),
            })
            .collect();
        for def in &updates {
            let action = match self.store.update(def).await? {
                UpdateOutcome::NewSchemaVersion(version) => {
                    RegisterAction::NewSchemaVersion(version)
                }
                UpdateOutcome::MetadataOnly => RegisterAction::MetadataUpdated,
                UpdateOutcome::Unchanged => RegisterAction::Unchanged,
            };
            results.push(Registered {
                table: def.name.to_string(),
                action,
                storage: storage_notes
                    .iter()
                    .find(|(n, _)| n == &def.name)
                    .map(|(_, s)| s.clone()),
            });
        }
        Ok(results)
    }

    /// Checks MySQL tables and creates missing Delta tables. Kafka topics are
    /// not touched: a pipeline may create them later.
    async fn prepare_storage(
        &self,
        defs: impl Iterator<Item = &TableDef>,
        updating: &BTreeSet<TableName>,
        created: &mut Vec<String>,
    ) -> Result<Vec<(TableName, String)>> {
        let opener = TableOpener::new(self.project.clone());
        let mut notes = Vec::new();
        for def in defs {
            match &def.kind {
                TableKind::Delta { .. } => {
                    let location = connectors::delta_location(&self.project, def)?;
                    let evolve = updating.contains(&def.name);
                    match delta::ensure_table(&location, &def.name.name, &def.schema, evolve)
                        .await?
                    {
                        delta::Prepared::Created => {
                            created.push(location.clone());
                            notes.push((
                                def.name.clone(),
                                format!("created an empty Delta table at {location}"),
                            ));
                        }
                        delta::Prepared::ColumnsAdded(columns) => notes.push((
                            def.name.clone(),
                            format!("added column(s) {} to the Delta table", columns.join(", ")),
                        )),
                        delta::Prepared::Existing => {}
                    }
                }
                TableKind::Mysql { .. } => {
                    let target = connectors::mysql_target(&self.project, def)?;
                    let pool = opener.mysql_pool(&target.url).await?;
                    mysql::verify_table(&pool, &target, &def.schema).await?;
                }
                TableKind::Kafka { .. } => {}
            }
        }
        Ok(notes)
    }

    pub async fn list(&self) -> Result<Vec<TableEntry>> {
        self.store.list().await
    }

    pub async fn get(&self, name: &TableName) -> Result<TableEntry> {
        self.store.get(name).await
    }

    pub async fn schema_versions(&self, name: &TableName) -> Result<Vec<SchemaVersion>> {
        self.store.schema_versions(name).await
    }

    /// Removes a table from the catalog. Its data stays where it is.
    pub async fn drop_table(&self, name: &TableName) -> Result<TableEntry> {
        self.store.drop_table(name).await
    }

    /// Finds what a connection holds, without registering anything.
    pub async fn discover(&self, connection: &str, options: &DiscoverOptions) -> Result<Discovery> {
        let kind = self.project.connection(connection)?.kind();
        match kind {
            "mysql" => self.discover_mysql(connection, options).await,
            "delta" => self.discover_delta(connection, options).await,
            _ => self.discover_kafka(connection, options).await,
        }
    }

    fn layer_for(name: &str, options: &DiscoverOptions) -> std::result::Result<Layer, String> {
        Layer::from_name_prefix(name).or(options.layer).ok_or_else(|| {
            "its name has no layer prefix (ods_, dwd_, dws_, app_, dim_); pass --layer to register it".to_string()
        })
    }

    async fn discover_mysql(
        &self,
        connection: &str,
        options: &DiscoverOptions,
    ) -> Result<Discovery> {
        let url = connectors::mysql_connection_url(&self.project, connection)?;
        let database = ddl::database_of(&url).ok_or_else(|| CatalogError::Discovery {
            message: format!("connection {connection:?} names no database"),
            hint: Some("put the database in its URL: mysql://HOST:PORT/DATABASE".to_string()),
        })?;
        let pool = mysql::connect(&url).await?;
        let infos = mysql::describe_tables(&pool, &database, None).await?;
        pool.close().await;
        let space = options.space.clone().unwrap_or_else(|| database.clone());
        let mut discovery = Discovery {
            connection: connection.to_string(),
            tables: Vec::new(),
            skipped: Vec::new(),
            inferred: false,
        };
        for info in infos {
            let layer = match Self::layer_for(&info.name, options) {
                Ok(layer) => layer,
                Err(reason) => {
                    discovery.skipped.push((info.name, reason));
                    continue;
                }
            };
            let schema = match mysql::arrow_schema(&info) {
                Ok(schema) => schema,
                Err((column, ty)) => {
                    discovery.skipped.push((
                        info.name,
                        format!("column {column} has type {ty}, which Strata cannot map to Arrow"),
                    ));
                    continue;
                }
            };
            discovery.tables.push(TableDef {
                name: TableName::new(&space, &info.name),
                layer,
                kind: TableKind::Mysql {
                    url: None,
                    connection: Some(connection.to_string()),
                    database: Some(database.clone()),
                    table: info.name.clone(),
                    username: None,
                    password: None,
                },
                schema: Arc::new(schema),
                primary_key: info.primary_key,
                watermark: None,
                processing_time: None,
                owner: None,
                description: None,
                tags: Vec::new(),
            });
        }
        Ok(discovery)
    }

    async fn discover_delta(
        &self,
        connection: &str,
        options: &DiscoverOptions,
    ) -> Result<Discovery> {
        let root = connectors::delta_root(&self.project, connection)?;
        let mut candidates: Vec<(String, Option<String>)> = Vec::new();
        if delta::exists(&root).await? {
            let name = root
                .trim_end_matches('/')
                .rsplit('/')
                .next()
                .unwrap_or("table")
                .to_string();
            candidates.push((name, None));
        } else if !root.contains("://") {
            collect_delta_dirs(Path::new(&root), Path::new(""), 2, &mut candidates);
        }
        if candidates.is_empty() {
            return Err(CatalogError::Discovery {
                message: format!("no Delta tables under {root}"),
                hint: Some(
                    "point the connection's root at a Delta table or a directory of them"
                        .to_string(),
                ),
            });
        }
        let space = options
            .space
            .clone()
            .unwrap_or_else(|| connection.to_string());
        let mut discovery = Discovery {
            connection: connection.to_string(),
            tables: Vec::new(),
            skipped: Vec::new(),
            inferred: false,
        };
        for (name, relative) in candidates {
            let location = match &relative {
                Some(relative) => format!("{}/{relative}", root.trim_end_matches('/')),
                None => root.clone(),
            };
            let layer = match Self::layer_for(&name, options) {
                Ok(layer) => layer,
                Err(reason) => {
                    discovery.skipped.push((name, reason));
                    continue;
                }
            };
            let schema = delta::read_schema(&location).await?;
            discovery.tables.push(TableDef {
                name: TableName::new(&space, &name),
                layer,
                kind: TableKind::Delta {
                    table_path: relative,
                    connection: Some(connection.to_string()),
                },
                schema: normalize_view_types(&schema),
                primary_key: Vec::new(),
                watermark: None,
                processing_time: None,
                owner: None,
                description: None,
                tags: Vec::new(),
            });
        }
        Ok(discovery)
    }

    async fn discover_kafka(
        &self,
        connection: &str,
        options: &DiscoverOptions,
    ) -> Result<Discovery> {
        let (servers, properties) = connectors::kafka_connection(&self.project, connection)?;
        let sample = options.sample_per_partition.max(1);
        let wanted = options.topics.clone();
        let (servers_for_task, properties_for_task) = (servers.clone(), properties.clone());
        let sampled = tokio::task::spawn_blocking(
            move || -> Result<Vec<(String, Result<Vec<kafka::KafkaRecord>>)>> {
                let mut topics: Vec<String> =
                    kafka::list_topics(&servers_for_task, &properties_for_task)?
                        .into_iter()
                        .map(|(name, _)| name)
                        .collect();
                if !wanted.is_empty() {
                    for topic in &wanted {
                        if !topics.contains(topic) {
                            return Err(CatalogError::Discovery {
                                message: format!(
                                    "Kafka at {servers_for_task} has no topic {topic:?}"
                                ),
                                hint: Some(format!("its topics are {}", topics.join(", "))),
                            });
                        }
                    }
                    topics.retain(|t| wanted.contains(t));
                }
                Ok(topics
                    .into_iter()
                    .map(|topic| {
                        let target = kafka::KafkaTarget {
                            bootstrap_servers: servers_for_task.clone(),
                            properties: properties_for_task.clone(),
                            topic: topic.clone(),
                        };
                        let records = kafka::read_bounded(&target, Some(sample));
                        (topic, records)
                    })
                    .collect())
            },
        )
        .await
        .map_err(|err| CatalogError::Discovery {
            message: format!("Kafka discovery stopped: {err}"),
            hint: None,
        })??;
        let space = options
            .space
            .clone()
            .unwrap_or_else(|| connection.to_string());
        let mut discovery = Discovery {
            connection: connection.to_string(),
            tables: Vec::new(),
            skipped: Vec::new(),
            inferred: true,
        };
        for (topic, records) in sampled {
            let records = records?;
            let name: String = topic
                .chars()
                .map(|c| {
                    if c.is_ascii_alphanumeric() {
                        c.to_ascii_lowercase()
                    } else {
                        '_'
                    }
                })
                .collect();
            let layer = match Self::layer_for(&name, options) {
                Ok(layer) => layer,
                Err(reason) => {
                    discovery.skipped.push((topic, reason));
                    continue;
                }
            };
            let (schema, undecodable) = kafka::infer_schema(&records);
            let Some(schema) = schema else {
                let reason = if records.is_empty() {
                    "the topic is empty, so there is nothing to infer a schema from; register it with DDL".to_string()
                } else {
                    format!(
                        "none of its {} sampled records is a JSON object; register it with DDL (format 'raw' keeps the bytes)",
                        records.len()
                    )
                };
                discovery.skipped.push((topic, reason));
                continue;
            };
            let description = (undecodable > 0).then(|| {
                format!(
                    "{undecodable} of {} sampled records were not JSON objects",
                    records.len()
                )
            });
            discovery.tables.push(TableDef {
                name: TableName::new(&space, &name),
                layer,
                kind: TableKind::Kafka {
                    topic: topic.clone(),
                    bootstrap_servers: None,
                    connection: Some(connection.to_string()),
                    format: KafkaFormat::Json,
                    startup_mode: StartupMode::GroupOffsets,
                    properties: Default::default(),
                },
                schema: Arc::new(schema),
                primary_key: Vec::new(),
                watermark: None,
                processing_time: None,
                owner: None,
                description,
                tags: Vec::new(),
            });
        }
        Ok(discovery)
    }

    /// A DataFusion session over every registered table.
    pub async fn session(&self) -> Result<SessionContext> {
        let defs = self
            .store
            .list()
            .await?
            .into_iter()
            .map(|entry| entry.def)
            .collect();
        let opener = Arc::new(TableOpener::new(self.project.clone()));
        Ok(StrataCatalogProvider::new(defs, opener).session())
    }

    /// Runs one SQL statement and collects its result.
    pub async fn query(&self, sql: &str) -> Result<QueryResult> {
        let ctx = self.session().await?;
        let frame = ctx.sql(sql).await?;
        let schema = Arc::new(frame.schema().as_arrow().clone());
        let batches = frame.collect().await?;
        Ok(QueryResult { schema, batches })
    }
}

/// Walks `dir` for Delta tables (directories holding `_delta_log`), `depth` levels down.
fn collect_delta_dirs(
    root: &Path,
    relative: &Path,
    depth: usize,
    found: &mut Vec<(String, Option<String>)>,
) {
    let Ok(entries) = std::fs::read_dir(root.join(relative)) else {
        return;
    };
    let mut entries: Vec<_> = entries.flatten().filter(|e| e.path().is_dir()).collect();
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let child = relative.join(entry.file_name());
        if entry.path().join("_delta_log").is_dir() {
            found.push((
                entry.file_name().to_string_lossy().into_owned(),
                Some(child.display().to_string()),
            ));
        } else if depth > 1 {
            collect_delta_dirs(root, &child, depth - 1, found);
        }
    }
}

/// Delta scans present strings as views; the catalog records the plain types.
fn normalize_view_types(schema: &SchemaRef) -> SchemaRef {
    use arrow::datatypes::{DataType, Field, Schema};
    let fields: Vec<Field> = schema
        .fields()
        .iter()
        .map(|f| {
            let data_type = match f.data_type() {
                DataType::Utf8View | DataType::LargeUtf8 => DataType::Utf8,
                DataType::BinaryView | DataType::LargeBinary => DataType::Binary,
                other => other.clone(),
            };
            Field::new(f.name(), data_type, f.is_nullable())
        })
        .collect();
    Arc::new(Schema::new(fields))
}
