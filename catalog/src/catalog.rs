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
use datafusion::execution::context::{SQLOptions, SessionContext};
use datafusion::logical_expr::LogicalPlan;

use crate::config::Project;
use crate::connectors::{self, delta, embedded, kafka, mysql};
use crate::ddl::{self, DdlTable};
use crate::error::{CatalogError, Result, SourceLocation};
use crate::model::{
    KafkaFormat, Layer, SchemaVersion, StartupMode, TableDef, TableEntry, TableKind, TableName,
    is_identifier,
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

impl QueryResult {
    /// Every value as text, row by row, with `NULL` for nulls.
    pub fn text_rows(&self) -> Result<Vec<Vec<String>>> {
        use arrow::util::display::{ArrayFormatter, FormatOptions};
        let options = FormatOptions::default().with_null("NULL");
        let mut rows = Vec::new();
        for batch in &self.batches {
            let formatters = batch
                .columns()
                .iter()
                .map(|c| ArrayFormatter::try_new(c.as_ref(), &options))
                .collect::<std::result::Result<Vec<_>, _>>()?;
            for row in 0..batch.num_rows() {
                rows.push(
                    formatters
                        .iter()
                        .map(|f| f.value(row).to_string())
                        .collect(),
                );
            }
        }
        Ok(rows)
    }
}

#[derive(Debug, Clone)]
pub struct Catalog {
    project: Project,
    store: CatalogStore,
    /// One registration at a time, so that checks and writes are not interleaved.
    registration: Arc<tokio::sync::Mutex<()>>,
    /// Opens tables for queries, keeping one MySQL pool per server across them.
    opener: Arc<TableOpener>,
}

/// A table on its way into the catalog.
struct Registration {
    def: TableDef,
    /// Where its DDL stands, when it came from DDL.
    location: Option<SourceLocation>,
    if_not_exists: bool,
}

impl Registration {
    fn error(&self, message: String, hint: &str) -> CatalogError {
        match &self.location {
            Some(location) => CatalogError::Ddl {
                location: location.clone(),
                message,
                hint: Some(hint.to_string()),
            },
            None => CatalogError::Discovery {
                message,
                hint: Some(hint.to_string()),
            },
        }
    }
}

impl Catalog {
    /// Opens the project's catalog store, applying migrations.
    pub async fn open(project: Project) -> Result<Self> {
        let store = CatalogStore::connect(&project.catalog_url()).await?;
        let opener = Arc::new(TableOpener::new(project.clone(), store.clone()));
        Ok(Self {
            project,
            store,
            registration: Arc::new(tokio::sync::Mutex::new(())),
            opener,
        })
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
        let mut tables = Vec::new();
        for file in files {
            let text = std::fs::read_to_string(file).map_err(|source| CatalogError::Io {
                path: file.clone(),
                source,
            })?;
            tables.extend(self.parse(&file.display().to_string(), &text)?);
        }
        self.register_tables(tables, mode).await
    }

    /// Registers the tables of DDL text; `origin` names it in errors.
    pub async fn register_sql(
        &self,
        origin: &str,
        text: &str,
        mode: RegisterMode,
    ) -> Result<Vec<Registered>> {
        let tables = self.parse(origin, text)?;
        self.register_tables(tables, mode).await
    }

    fn parse(&self, origin: &str, text: &str) -> Result<Vec<DdlTable>> {
        ddl::ddl_tables(origin, text, &self.project.config.connections)
    }

    /// Registers checked definitions (from discovery or code), all or none.
    pub async fn register(
        &self,
        defs: Vec<TableDef>,
        mode: RegisterMode,
    ) -> Result<Vec<Registered>> {
        let tables = defs
            .into_iter()
            .map(|def| Registration {
                def,
                location: None,
                if_not_exists: false,
            })
            .collect();
        self.apply(tables, mode).await
    }

    /// Registers discovered tables: new ones are created, known ones get the
    /// discovered schema and keep the owner, description, tags, keys and
    /// event time that DDL gave them.
    pub async fn register_discovered(&self, defs: Vec<TableDef>) -> Result<Vec<Registered>> {
        let mut merged = Vec::with_capacity(defs.len());
        for mut def in defs {
            if let Ok(existing) = self.store.get(&def.name).await {
                let old = existing.def;
                def.owner = def.owner.or(old.owner);
                def.description = def.description.or(old.description);
                if def.tags.is_empty() {
                    def.tags = old.tags;
                }
                if def.primary_key.is_empty() {
                    def.primary_key = old.primary_key;
                }
                def.watermark = def.watermark.or(old.watermark);
                def.processing_time = def.processing_time.or(old.processing_time);
            }
            merged.push(def);
        }
        self.register(merged, RegisterMode::Update).await
    }

    async fn register_tables(
        &self,
        tables: Vec<DdlTable>,
        mode: RegisterMode,
    ) -> Result<Vec<Registered>> {
        let tables = tables
            .into_iter()
            .map(|table| Registration {
                def: table.def,
                location: Some(table.location),
                if_not_exists: table.if_not_exists,
            })
            .collect();
        self.apply(tables, mode).await
    }

    /// The one path every registration takes: checks, storage, then one store transaction.
    async fn apply(
        &self,
        tables: Vec<Registration>,
        mode: RegisterMode,
    ) -> Result<Vec<Registered>> {
        let _exclusive = self.registration.lock().await;
        let mut names = BTreeSet::new();
        for table in &tables {
            table.def.name.validate()?;
            if !names.insert(table.def.name.clone()) {
                return Err(table.error(
                    format!(
                        "table {} is defined twice in this registration",
                        table.def.name
                    ),
                    "keep one CREATE TABLE per table",
                ));
            }
        }
        let registered = self.definitions().await?;
        let mut inserts = Vec::new();
        let mut updates = Vec::new();
        let mut results = Vec::new();
        for table in tables {
            // Checked first: a MySQL store's collation would take the two for one.
            let written = table.def.name.to_string();
            if let Some(other) = registered.iter().find(|other| {
                let other = other.name.to_string();
                other != written && other.eq_ignore_ascii_case(&written)
            }) {
                return Err(CatalogError::CaseClash {
                    written,
                    registered: other.name.to_string(),
                    location: table.location,
                });
            }
            if !self.store.contains(&table.def.name).await? {
                inserts.push(table.def);
            } else if mode == RegisterMode::Update {
                updates.push(table.def);
            } else if table.if_not_exists {
                results.push(Registered {
                    table: table.def.name.to_string(),
                    action: RegisterAction::Unchanged,
                    storage: None,
                });
            } else {
                return Err(CatalogError::AlreadyExists {
                    table: table.def.name.to_string(),
                    location: table.location.clone(),
                });
            }
        }

        let new: Vec<&TableDef> = inserts.iter().chain(&updates).collect();
        crate::confine::one_space_per_location(&self.project, &new, &registered)?;
        let mut created = Vec::new();
        let updating: BTreeSet<TableName> = updates.iter().map(|d| d.name.clone()).collect();
        let prepared = self
            .prepare_storage(inserts.iter().chain(&updates), &updating, &mut created)
            .await;
        let outcomes = match prepared {
            Ok(notes) => match self.store.apply(&inserts, &updates).await {
                Ok(outcomes) => (notes, outcomes),
                Err(err) => {
                    created.iter().for_each(delta::CreatedTable::remove);
                    return Err(err);
                }
            },
            Err(err) => {
                created.iter().for_each(delta::CreatedTable::remove);
                return Err(err);
            }
        };
        let (notes, outcomes) = outcomes;
        let note_for = |name: &TableName| {
            notes
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, note)| note.clone())
        };
        for def in &inserts {
            results.push(Registered {
                table: def.name.to_string(),
                action: RegisterAction::Created,
                storage: note_for(&def.name),
            });
        }
        for (def, outcome) in updates.iter().zip(outcomes) {
            results.push(Registered {
                table: def.name.to_string(),
                action: match outcome {
                    UpdateOutcome::NewSchemaVersion(version) => {
                        RegisterAction::NewSchemaVersion(version)
                    }
                    UpdateOutcome::MetadataOnly => RegisterAction::MetadataUpdated,
                    UpdateOutcome::Unchanged => RegisterAction::Unchanged,
                },
                storage: note_for(&def.name),
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
        created: &mut Vec<delta::CreatedTable>,
    ) -> Result<Vec<(TableName, String)>> {
        let opener = TableOpener::new(self.project.clone(), self.store.clone());
        let mut notes = Vec::new();
        for def in defs {
            match &def.kind {
                TableKind::Delta { partitioned_by, .. } => {
                    let location = connectors::delta_location(&self.project, def)?;
                    let evolve = updating.contains(&def.name);
                    let outcome = delta::ensure_table(
                        &location,
                        &def.name.name,
                        &def.schema,
                        partitioned_by,
                        evolve,
                    )
                    .await?;
                    match outcome {
                        delta::Prepared::Created(table) => {
                            notes.push((
                                def.name.clone(),
                                format!("created an empty Delta table at {location}"),
                            ));
                            created.push(table);
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
                TableKind::Kafka { .. }
                | TableKind::Nexmark { .. }
                | TableKind::Blackhole
                | TableKind::Declared { .. } => {}
                TableKind::Embedded { table } => {
                    crate::confine::embedded_table(&def.name, table)?;
                    if embedded::ensure_table(&self.store, table, &def.schema, &def.primary_key)
                        .await?
                    {
                        notes.push((
                            def.name.clone(),
                            format!("created table {table} in the catalog store"),
                        ));
                    }
                }
            }
        }
        Ok(notes)
    }

    /// Every registered table's definition.
    pub async fn definitions(&self) -> Result<Vec<TableDef>> {
        Ok(self.list().await?.into_iter().map(|e| e.def).collect())
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
        let _exclusive = self.registration.lock().await;
        self.store.drop_table(name).await
    }

    /// A Delta table's versions, newest first.
    pub async fn history(
        &self,
        name: &TableName,
        limit: usize,
    ) -> Result<Vec<delta::TableVersion>> {
        let entry = self.store.get(name).await?;
        if !matches!(entry.def.kind, TableKind::Delta { .. }) {
            return Err(CatalogError::Discovery {
                message: format!(
                    "{name} is a {} table; only Delta tables keep versions",
                    entry.def.kind.connector()
                ),
                hint: Some(format!(
                    "`strata catalog history {name}` lists its schema versions"
                )),
            });
        }
        let location = connectors::delta_location(&self.project, &entry.def)?;
        delta::history(&location, limit).await
    }

    /// Compacts a Delta table's small files and checkpoints its log.
    pub async fn optimize(&self, name: &TableName) -> Result<delta::Compaction> {
        let entry = self.store.get(name).await?;
        if !matches!(entry.def.kind, TableKind::Delta { .. }) {
            return Err(CatalogError::Discovery {
                message: format!(
                    "{name} is a {} table; only Delta tables are compacted",
                    entry.def.kind.connector()
                ),
                hint: None,
            });
        }
        let location = connectors::delta_location(&self.project, &entry.def)?;
        delta::optimize(&location).await
    }

    /// Finds what a connection holds, without registering anything. What
    /// another space already registered stays that space's: it is skipped, with
    /// the table that has it.
    pub async fn discover(&self, connection: &str, options: &DiscoverOptions) -> Result<Discovery> {
        let kind = self.project.connection(connection)?.kind();
        let mut discovery = match kind {
            "mysql" => self.discover_mysql(connection, options).await,
            "delta" => self.discover_delta(connection, options).await,
            _ => self.discover_kafka(connection, options).await,
        }?;
        let registered = self.definitions().await?;
        let found: Vec<&TableDef> = discovery.tables.iter().collect();
        let conflicts = crate::confine::location_conflicts(&self.project, &found, &registered);
        for conflict in conflicts {
            if let CatalogError::Confined { table, message, .. } = conflict {
                let name = table.rsplit('.').next().unwrap_or(&table).to_string();
                discovery.tables.retain(|def| def.name.to_string() != table);
                discovery.skipped.push((name, message));
            }
        }
        Ok(discovery)
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
        check_space(&space)?;
        let mut discovery = Discovery {
            connection: connection.to_string(),
            tables: Vec::new(),
            skipped: Vec::new(),
            inferred: false,
        };
        for info in infos {
            if !is_identifier(&info.name) {
                discovery.skipped.push((
                    info.name,
                    "its name is not a plain identifier (letters, digits, underscores)".to_string(),
                ));
                continue;
            }
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
                lookup: Default::default(),
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
        let mut candidates: Vec<(String, String)> = Vec::new();
        if delta::exists(&root).await? {
            let name = root
                .trim_end_matches('/')
                .rsplit('/')
                .next()
                .unwrap_or("table")
                .to_string();
            candidates.push((name, ".".to_string()));
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
        check_space(&space)?;
        let mut discovery = Discovery {
            connection: connection.to_string(),
            tables: Vec::new(),
            skipped: Vec::new(),
            inferred: false,
        };
        for (name, relative) in candidates {
            let location = format!("{}/{relative}", root.trim_end_matches('/'));
            if !is_identifier(&name) {
                discovery.skipped.push((
                    name,
                    "its name is not a plain identifier (letters, digits, underscores)".to_string(),
                ));
                continue;
            }
            let layer = match Self::layer_for(&name, options) {
                Ok(layer) => layer,
                Err(reason) => {
                    discovery.skipped.push((name, reason));
                    continue;
                }
            };
            let (schema, partitioned_by) = delta::read_layout(&location).await?;
            discovery.tables.push(TableDef {
                name: TableName::new(&space, &name),
                layer,
                kind: TableKind::Delta {
                    table_path: Some(relative),
                    connection: Some(connection.to_string()),
                    partitioned_by,
                },
                schema: normalize_view_types(&schema),
                primary_key: Vec::new(),
                watermark: None,
                processing_time: None,
                owner: None,
                description: None,
                tags: Vec::new(),
                lookup: Default::default(),
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
        let sampled = tokio::task::spawn_blocking(move || -> Result<Vec<SampledTopic>> {
            let mut topics = kafka::list_topics(&servers_for_task, &properties_for_task)?;
            if !wanted.is_empty() {
                for topic in &wanted {
                    if !topics.iter().any(|(name, _)| name == topic) {
                        let names: Vec<&str> = topics.iter().map(|(n, _)| n.as_str()).collect();
                        return Err(CatalogError::Discovery {
                            message: format!("Kafka at {servers_for_task} has no topic {topic:?}"),
                            hint: Some(format!("its topics are {}", names.join(", "))),
                        });
                    }
                }
                topics.retain(|(name, _)| wanted.contains(name));
            }
            Ok(topics
                .into_iter()
                .map(|(topic, partitions)| {
                    let target = kafka::KafkaTarget {
                        bootstrap_servers: servers_for_task.clone(),
                        properties: properties_for_task.clone(),
                        topic: topic.clone(),
                    };
                    let records = kafka::read_bounded(&target, Some(sample));
                    (topic, partitions, records)
                })
                .collect())
        })
        .await
        .map_err(|err| CatalogError::Discovery {
            message: format!("Kafka discovery stopped: {err}"),
            hint: None,
        })??;
        let space = options
            .space
            .clone()
            .unwrap_or_else(|| connection.to_string());
        check_space(&space)?;
        let mut discovery = Discovery {
            connection: connection.to_string(),
            tables: Vec::new(),
            skipped: Vec::new(),
            inferred: true,
        };
        for (topic, partitions, records) in sampled {
            let records = records?;
            let partitions = i32::try_from(partitions).unwrap_or(i32::MAX);
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
            if !is_identifier(&name) {
                discovery.skipped.push((topic, format!("{name:?} is not a plain identifier; register the topic with DDL under a name of your choosing")));
                continue;
            }
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
                    partitions: Some(partitions),
                },
                schema: Arc::new(schema),
                primary_key: Vec::new(),
                watermark: None,
                processing_time: None,
                owner: None,
                description,
                tags: Vec::new(),
                lookup: Default::default(),
            });
        }
        Ok(discovery)
    }

    /// A table's storage as a DataFusion table.
    pub async fn open_table(
        &self,
        def: &TableDef,
    ) -> Result<Arc<dyn datafusion::catalog::TableProvider>> {
        self.opener.open(def).await
    }

    /// A DataFusion session over every registered table.
    pub async fn session(&self) -> Result<SessionContext> {
        Ok(self.provider(None, None).await?.session())
    }

    /// The catalog as `principal` may see it (see [`StrataCatalogProvider::for_principal`]).
    pub async fn provider(
        &self,
        principal: Option<&crate::tokens::Principal>,
        live: Option<Arc<dyn crate::provider::LiveTables>>,
    ) -> Result<StrataCatalogProvider> {
        let defs = self.definitions().await?;
        Ok(StrataCatalogProvider::for_principal(
            defs,
            self.opener.clone(),
            principal,
            live,
        ))
    }

    /// Runs one SQL statement and collects its result. Queries and `INSERT`s
    /// into catalog tables run; DDL, `SET` and `COPY` are refused.
    pub async fn query(&self, sql: &str) -> Result<QueryResult> {
        let ctx = self.session().await?;
        let options = SQLOptions::new()
            .with_allow_ddl(false)
            .with_allow_statements(false);
        let sql = crate::functions::quote_time_units_in(sql);
        let frame = ctx.sql_with_options(&sql, options).await?;
        if matches!(frame.logical_plan(), LogicalPlan::Copy(_)) {
            return Err(CatalogError::Discovery {
                message:
                    "COPY is not allowed: queries read tables and write only to catalog tables"
                        .to_string(),
                hint: Some("use INSERT INTO space.table SELECT …".to_string()),
            });
        }
        let schema = Arc::new(frame.schema().as_arrow().clone());
        let batches = frame.collect().await?;
        Ok(QueryResult { schema, batches })
    }
}

/// A topic's name, partition count and sampled records (or why they could not be read).
type SampledTopic = (String, usize, Result<Vec<kafka::KafkaRecord>>);

/// Spaces become paths and SQL names, so they are plain identifiers.
fn check_space(space: &str) -> Result<()> {
    match crate::model::name_refusal(space, true) {
        None => Ok(()),
        Some((message, hint)) => Err(CatalogError::Discovery {
            message,
            hint: Some(format!("pass another --space: {hint}")),
        }),
    }
}

/// Walks `dir` for Delta tables (directories holding `_delta_log`), `depth` levels down.
fn collect_delta_dirs(
    root: &Path,
    relative: &Path,
    depth: usize,
    found: &mut Vec<(String, String)>,
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
                child.display().to_string(),
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
