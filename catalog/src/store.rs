//! The persistent catalog store, on sqlx: SQLite (embedded, the default),
//! MySQL/TiDB or PostgreSQL, chosen by URL.
//!
//! ```text
//!   strata_tables           one row per table: kind, layer, keys, owner …, current schema version
//!   strata_table_schemas    (space, name, version) → schema JSON, created_at; never rewritten
//!   strata_lineage          versions of the lineage graph
//!   strata_tokens           access tokens: id, name, sha256 of the secret, grants (see tokens.rs)
//!   strata_migrations       which store migrations have been applied
//! ```
//!
//! A registration writes the table row and schema version 1 in one transaction.
//! An update that changes the schema appends version N+1 and moves the table's
//! pointer in one transaction, so readers see the old or the new, never half.

use std::str::FromStr;

use sqlx::any::{AnyPoolOptions, AnyRow};
use sqlx::{AnyConnection, AnyPool, AssertSqlSafe, Connection, Row};

use crate::error::{CatalogError, Result};
use crate::model::{
    Layer, LookupOptions, SchemaVersion, TableDef, TableEntry, TableKind, TableName, Watermark,
    schema_from_json, schema_to_json,
};

/// The SQL dialect behind a store URL; only placeholders differ between them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Mysql,
    Postgres,
}

impl Backend {
    fn from_url(url: &str) -> Result<Self> {
        let scheme = url.split("://").next().unwrap_or_default();
        match scheme {
            "sqlite" => Ok(Backend::Sqlite),
            "mysql" | "mariadb" | "tidb" => Ok(Backend::Mysql),
            "postgres" | "postgresql" => Ok(Backend::Postgres),
            _ => Err(CatalogError::Config {
                path: crate::config::CONFIG_FILE.into(),
                message: format!("catalog url scheme {scheme:?} is not supported"),
                hint: Some(
                    "use sqlite://PATH, mysql://USER@HOST:PORT/DB (also TiDB) or postgres://USER@HOST:PORT/DB"
                        .to_string(),
                ),
            }),
        }
    }
}

/// Each migration runs once, in order, and is recorded in `strata_migrations`.
const MIGRATIONS: &[(i64, &str, &[&str])] = &[
    (
        1,
        "tables and versioned schemas",
        &[
            "CREATE TABLE IF NOT EXISTS strata_tables (
            space VARCHAR(255) NOT NULL,
            name VARCHAR(255) NOT NULL,
            layer VARCHAR(16) NOT NULL,
            kind TEXT NOT NULL,
            primary_key TEXT NOT NULL,
            watermark TEXT,
            processing_time VARCHAR(255),
            owner VARCHAR(255),
            description TEXT,
            tags TEXT NOT NULL,
            schema_version BIGINT NOT NULL,
            created_at BIGINT NOT NULL,
            updated_at BIGINT NOT NULL,
            PRIMARY KEY (space, name)
        )",
            "CREATE TABLE IF NOT EXISTS strata_table_schemas (
            space VARCHAR(255) NOT NULL,
            name VARCHAR(255) NOT NULL,
            version BIGINT NOT NULL,
            schema_json TEXT NOT NULL,
            created_at BIGINT NOT NULL,
            PRIMARY KEY (space, name, version)
        )",
        ],
    ),
    (
        2,
        "lookup options of dimension tables",
        &["ALTER TABLE strata_tables ADD COLUMN lookup TEXT"],
    ),
    (
        3,
        "versions of the lineage graph",
        &["CREATE TABLE IF NOT EXISTS strata_lineage (
            version BIGINT NOT NULL PRIMARY KEY,
            created_at BIGINT NOT NULL,
            graph LONGTEXT NOT NULL
        )"],
    ),
    (
        4,
        "access tokens",
        &["CREATE TABLE IF NOT EXISTS strata_tokens (
            id VARCHAR(64) NOT NULL PRIMARY KEY,
            name VARCHAR(255) NOT NULL,
            secret_hash VARCHAR(128) NOT NULL,
            grants TEXT NOT NULL,
            created_at BIGINT NOT NULL,
            revoked BIGINT NOT NULL
        )"],
    ),
];

/// One recorded version of the lineage graph.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LineageVersion {
    pub version: i64,
    /// When it was recorded, in milliseconds since the epoch.
    pub created_at_ms: i64,
    /// The graph, as the lineage crate stores it (JSON).
    pub graph: String,
}

const TABLE_COLUMNS: &str = "space, name, layer, kind, primary_key, watermark, processing_time, \
     owner, description, tags, schema_version, created_at, updated_at, lookup";

/// What [`CatalogStore::update`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpdateOutcome {
    /// The schema changed: a new version was recorded.
    NewSchemaVersion(i64),
    /// Only options, owner, description or tags changed.
    MetadataOnly,
    /// Nothing differed.
    Unchanged,
}

#[derive(Debug, Clone)]
pub struct CatalogStore {
    pool: AnyPool,
    backend: Backend,
}

impl CatalogStore {
    /// Connects to the store at `url` and applies pending migrations.
    pub async fn connect(url: &str) -> Result<Self> {
        let backend = Backend::from_url(url)?;
        if backend == Backend::Sqlite {
            create_sqlite_file(url)?;
        }
        sqlx::any::install_default_drivers();
        let unreachable = |err: sqlx::Error| {
            CatalogError::Unreachable {
            service: "the catalog store",
            address: crate::config::redact_url(url),
            cause: err.to_string(),
            hint: "check [catalog] url in strata.toml or STRATA_CATALOG_URL, and that the server is running"
                .to_string(),
        }
        };
        // One direct attempt first: a pool would retry until its timeout and hide the cause.
        AnyConnection::connect(url)
            .await
            .map_err(unreachable)?
            .close()
            .await
            .map_err(unreachable)?;
        // No idle timeout or lifetime: sqlx 0.9's maintenance task, which enforces
        // them, was seen spinning forever over its idle count in `strata query`.
        // Connections are tested before each use instead (sqlx's default).
        let pool = AnyPoolOptions::new()
            .max_connections(if backend == Backend::Sqlite { 1 } else { 4 })
            .idle_timeout(None)
            .max_lifetime(None)
            .connect(url)
            .await
            .map_err(unreachable)?;
        let store = Self { pool, backend };
        store.migrate().await?;
        if let Some(path) = sqlite_path(url).filter(|_| backend == Backend::Sqlite) {
            restrict_sqlite_files(path)?;
        }
        Ok(store)
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Runs one statement on the store (embedded tables).
    pub async fn execute(&self, sql: &str) -> Result<()> {
        sqlx::raw_sql(AssertSqlSafe(sql.to_string()))
            .execute(&self.pool)
            .await
            .map_err(|source| self.store_error(sql, source))?;
        Ok(())
    }

    /// Runs statements in one transaction (embedded tables).
    pub async fn execute_all(&self, statements: &[String]) -> Result<()> {
        let mut tx = self
            .pool
            .begin()
            .await
            .map_err(|source| self.store_error("beginning a transaction", source))?;
        for sql in statements {
            sqlx::raw_sql(AssertSqlSafe(sql.clone()))
                .execute(&mut *tx)
                .await
                .map_err(|source| self.store_error(sql, source))?;
        }
        tx.commit()
            .await
            .map_err(|source| self.store_error("committing", source))
    }

    /// Runs a query whose `columns` columns are all text (embedded tables).
    pub async fn text_rows(&self, sql: &str, columns: usize) -> Result<Vec<Vec<Option<String>>>> {
        let rows = sqlx::raw_sql(AssertSqlSafe(sql.to_string()))
            .fetch_all(&self.pool)
            .await
            .map_err(|source| self.store_error(sql, source))?;
        self.text_values(sql, &rows, columns)
    }

    fn text_values(
        &self,
        sql: &str,
        rows: &[AnyRow],
        columns: usize,
    ) -> Result<Vec<Vec<Option<String>>>> {
        rows.iter()
            .map(|row| {
                (0..columns)
                    .map(|i| {
                        row.try_get::<Option<String>, _>(i)
                            .map_err(|source| self.store_error(sql, source))
                    })
                    .collect()
            })
            .collect()
    }

    /// Like [`Self::text_rows`], with `?` placeholders bound to `values`.
    pub async fn text_rows_bound(
        &self,
        sql: &str,
        columns: usize,
        values: impl Iterator<Item = &crate::connectors::KeyValue>,
    ) -> Result<Vec<Vec<Option<String>>>> {
        let rows = self
            .bound(sql, values)
            .fetch_all(&self.pool)
            .await
            .map_err(|source| self.store_error(sql, source))?;
        self.text_values(sql, &rows, columns)
    }

    /// Runs one statement with `?` placeholders bound to `values`.
    pub(crate) async fn execute_values(
        &self,
        sql: &str,
        values: &[crate::connectors::KeyValue],
    ) -> Result<()> {
        self.bound(sql, values.iter())
            .execute(&self.pool)
            .await
            .map_err(|source| self.store_error(sql, source))?;
        Ok(())
    }

    /// Every row of a query without parameters.
    pub(crate) async fn fetch_all(&self, sql: &str) -> Result<Vec<AnyRow>> {
        sqlx::query(self.sql(sql))
            .fetch_all(&self.pool)
            .await
            .map_err(|source| self.store_error(sql, source))
    }

    /// `sql` with its `?` placeholders bound to `values`.
    fn bound<'q>(
        &self,
        sql: &str,
        values: impl Iterator<Item = &'q crate::connectors::KeyValue>,
    ) -> sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments> {
        let mut query = sqlx::query(self.sql(sql));
        for value in values {
            query = match value {
                crate::connectors::KeyValue::Int(v) => query.bind(*v),
                crate::connectors::KeyValue::Bool(v) => query.bind(*v),
                crate::connectors::KeyValue::Text(text) => query.bind(text.clone()),
            };
        }
        query
    }

    /// Rewrites `?` placeholders into PostgreSQL's `$n`.
    fn sql(&self, text: &str) -> AssertSqlSafe<String> {
        if self.backend != Backend::Postgres {
            return AssertSqlSafe(text.to_string());
        }
        let mut out = String::with_capacity(text.len() + 8);
        let mut index = 0;
        for ch in text.chars() {
            if ch == '?' {
                index += 1;
                out.push_str(&format!("${index}"));
            } else {
                out.push(ch);
            }
        }
        AssertSqlSafe(out)
    }

    async fn migrate(&self) -> Result<()> {
        let store_err = |context: &str| {
            let context = context.to_string();
            move |source| CatalogError::Store { context, source }
        };
        sqlx::query(
            "CREATE TABLE IF NOT EXISTS strata_migrations (
                version BIGINT NOT NULL PRIMARY KEY,
                description VARCHAR(255) NOT NULL,
                applied_at BIGINT NOT NULL
            )",
        )
        .execute(&self.pool)
        .await
        .map_err(store_err("creating strata_migrations"))?;
        let applied: Option<i64> = sqlx::query("SELECT MAX(version) FROM strata_migrations")
            .fetch_one(&self.pool)
            .await
            .and_then(|row| row.try_get::<Option<i64>, _>(0))
            .map_err(store_err("reading strata_migrations"))?;
        let applied = applied.unwrap_or(0);
        for (version, description, statements) in MIGRATIONS {
            if *version <= applied {
                continue;
            }
            let mut tx = self
                .pool
                .begin()
                .await
                .map_err(store_err("starting a migration"))?;
            for statement in *statements {
                // MySQL's TEXT holds 64 KiB; the others' TEXT has no such limit.
                let statement = match self.backend {
                    Backend::Mysql => statement.to_string(),
                    Backend::Sqlite | Backend::Postgres => statement.replace("LONGTEXT", "TEXT"),
                };
                sqlx::query(AssertSqlSafe(statement))
                    .execute(&mut *tx)
                    .await
                    .map_err(store_err(&format!("migration {version} ({description})")))?;
            }
            sqlx::query(self.sql(
                "INSERT INTO strata_migrations (version, description, applied_at) VALUES (?, ?, ?)",
            ))
            .bind(*version)
            .bind(description.to_string())
            .bind(now_ms())
            .execute(&mut *tx)
            .await
            .map_err(store_err("recording a migration"))?;
            tx.commit()
                .await
                .map_err(store_err("committing a migration"))?;
        }
        Ok(())
    }

    /// Records `graph` as a new version of the lineage graph, unless it equals
    /// the latest one; returns the version that holds it.
    pub async fn record_lineage(&self, graph: &str) -> Result<LineageVersion> {
        // Two processes may record at once: the one that loses the version number
        // reads what won and tries the next number, unless it is the same graph.
        let mut attempts = 0;
        loop {
            let latest = self.lineage_at(None).await?;
            if let Some(latest) = &latest
                && latest.graph == graph
            {
                return Ok(latest.clone());
            }
            let recorded = LineageVersion {
                version: latest.map_or(1, |latest| latest.version + 1),
                created_at_ms: now_ms(),
                graph: graph.to_string(),
            };
            let inserted =
                sqlx::query(self.sql(
                    "INSERT INTO strata_lineage (version, created_at, graph) VALUES (?, ?, ?)",
                ))
                .bind(recorded.version)
                .bind(recorded.created_at_ms)
                .bind(recorded.graph.clone())
                .execute(&self.pool)
                .await;
            match inserted {
                Ok(_) => return Ok(recorded),
                Err(sqlx::Error::Database(db)) if db.is_unique_violation() && attempts < 3 => {
                    attempts += 1;
                }
                Err(source) => {
                    return Err(self.store_error("recording the lineage graph", source));
                }
            }
        }
    }

    /// The lineage graph as it was at `at_ms` (the last version recorded by
    /// then), or the latest; `None` before any was recorded.
    pub async fn lineage_at(&self, at_ms: Option<i64>) -> Result<Option<LineageVersion>> {
        let row = sqlx::query(self.sql(
            "SELECT version, created_at, graph FROM strata_lineage WHERE created_at <= ? ORDER BY version DESC LIMIT 1",
        ))
        .bind(at_ms.unwrap_or(i64::MAX))
        .fetch_optional(&self.pool)
        .await
        .map_err(|source| self.store_error("reading the lineage graph", source))?;
        row.map(|row| {
            Ok(LineageVersion {
                version: row.try_get(0)?,
                created_at_ms: row.try_get(1)?,
                graph: row.try_get(2)?,
            })
        })
        .transpose()
        .map_err(|source| self.store_error("reading the lineage graph", source))
    }

    /// Registers tables, all or none. A taken name fails the whole batch.
    pub async fn insert(&self, defs: &[TableDef]) -> Result<()> {
        self.apply(defs, &[]).await.map(|_| ())
    }

    /// Replaces a table's definition. A changed schema is recorded as a new version;
    /// the old versions stay readable.
    pub async fn update(&self, def: &TableDef) -> Result<UpdateOutcome> {
        let outcomes = self.apply(&[], std::slice::from_ref(def)).await?;
        Ok(outcomes[0])
    }

    /// Inserts new tables and updates existing ones in one transaction: all or none.
    /// Returns what each update did, in order.
    pub async fn apply(
        &self,
        inserts: &[TableDef],
        updates: &[TableDef],
    ) -> Result<Vec<UpdateOutcome>> {
        let mut current = Vec::with_capacity(updates.len());
        for def in updates {
            current.push(self.get(&def.name).await?);
        }
        let mut tx = self
            .pool
            .begin()
            .await
            .map_err(|source| self.store_error("starting a registration", source))?;
        let now = now_ms();
        for def in inserts {
            let exists = sqlx::query(
                self.sql("SELECT COUNT(*) FROM strata_tables WHERE space = ? AND name = ?"),
            )
            .bind(def.name.space.clone())
            .bind(def.name.name.clone())
            .fetch_one(&mut *tx)
            .await
            .and_then(|row| row.try_get::<i64, _>(0))
            .map_err(|source| self.store_error("checking for a duplicate", source))?;
            if exists > 0 {
                return Err(CatalogError::AlreadyExists {
                    table: def.name.to_string(),
                    location: None,
                });
            }
            let columns = TableColumns::from_def(def)?;
            sqlx::query(self.sql(&format!(
                "INSERT INTO strata_tables ({TABLE_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
            )))
            .bind(def.name.space.clone())
            .bind(def.name.name.clone())
            .bind(def.layer.as_str().to_string())
            .bind(columns.kind)
            .bind(columns.primary_key)
            .bind(columns.watermark)
            .bind(def.processing_time.clone())
            .bind(def.owner.clone())
            .bind(def.description.clone())
            .bind(columns.tags)
            .bind(1_i64)
            .bind(now)
            .bind(now)
            .bind(columns.lookup)
            .execute(&mut *tx)
            .await
            .map_err(|source| self.store_error(&format!("registering {}", def.name), source))?;
            self.insert_schema_version(&mut tx, def, 1, now).await?;
        }
        let mut outcomes = Vec::with_capacity(updates.len());
        for (def, current) in updates.iter().zip(current) {
            if current.def == *def {
                outcomes.push(UpdateOutcome::Unchanged);
                continue;
            }
            let schema_changed = current.def.schema != def.schema;
            let version = current.schema_version + i64::from(schema_changed);
            if schema_changed {
                self.insert_schema_version(&mut tx, def, version, now)
                    .await?;
            }
            let columns = TableColumns::from_def(def)?;
            sqlx::query(self.sql(
                "UPDATE strata_tables SET layer = ?, kind = ?, primary_key = ?, watermark = ?, processing_time = ?, \
                 owner = ?, description = ?, tags = ?, schema_version = ?, updated_at = ?, lookup = ? WHERE space = ? AND name = ?",
            ))
            .bind(def.layer.as_str().to_string())
            .bind(columns.kind)
            .bind(columns.primary_key)
            .bind(columns.watermark)
            .bind(def.processing_time.clone())
            .bind(def.owner.clone())
            .bind(def.description.clone())
            .bind(columns.tags)
            .bind(version)
            .bind(now)
            .bind(columns.lookup)
            .bind(def.name.space.clone())
            .bind(def.name.name.clone())
            .execute(&mut *tx)
            .await
            .map_err(|source| self.store_error(&format!("updating {}", def.name), source))?;
            outcomes.push(if schema_changed {
                UpdateOutcome::NewSchemaVersion(version)
            } else {
                UpdateOutcome::MetadataOnly
            });
        }
        tx.commit()
            .await
            .map_err(|source| self.store_error("committing a registration", source))?;
        Ok(outcomes)
    }

    async fn insert_schema_version(
        &self,
        tx: &mut sqlx::Transaction<'_, sqlx::Any>,
        def: &TableDef,
        version: i64,
        now: i64,
    ) -> Result<()> {
        sqlx::query(self.sql(
            "INSERT INTO strata_table_schemas (space, name, version, schema_json, created_at) VALUES (?, ?, ?, ?, ?)",
        ))
        .bind(def.name.space.clone())
        .bind(def.name.name.clone())
        .bind(version)
        .bind(schema_to_json(&def.schema))
        .bind(now)
        .execute(&mut **tx)
        .await
        .map_err(|source| self.store_error(&format!("recording schema of {}", def.name), source))?;
        Ok(())
    }

    pub async fn get(&self, name: &TableName) -> Result<TableEntry> {
        let row = sqlx::query(self.sql(&format!(
            "SELECT {TABLE_COLUMNS} FROM strata_tables WHERE space = ? AND name = ?"
        )))
        .bind(name.space.clone())
        .bind(name.name.clone())
        .fetch_optional(&self.pool)
        .await
        .map_err(|source| self.store_error(&format!("reading {name}"), source))?
        .ok_or_else(|| CatalogError::NotFound {
            table: name.to_string(),
        })?;
        self.entry_from_row(&row).await
    }

    pub async fn contains(&self, name: &TableName) -> Result<bool> {
        match self.get(name).await {
            Ok(_) => Ok(true),
            Err(CatalogError::NotFound { .. }) => Ok(false),
            Err(err) => Err(err),
        }
    }

    /// Each table's name, schema version and last change, in one query: a
    /// cheap way to tell whether the catalog changed.
    pub async fn table_versions(&self) -> Result<Vec<(String, i64, i64)>> {
        let rows = sqlx::query(
            "SELECT space, name, schema_version, updated_at FROM strata_tables ORDER BY space, name",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(|source| self.store_error("listing tables", source))?;
        rows.iter()
            .map(|row| {
                Ok((
                    format!(
                        "{}.{}",
                        row.try_get::<String, _>(0)?,
                        row.try_get::<String, _>(1)?
                    ),
                    row.try_get(2)?,
                    row.try_get(3)?,
                ))
            })
            .collect::<std::result::Result<_, sqlx::Error>>()
            .map_err(|source| self.store_error("listing tables", source))
    }

    /// Every table, ordered by space and name.
    pub async fn list(&self) -> Result<Vec<TableEntry>> {
        let rows = sqlx::query(self.sql(&format!(
            "SELECT {TABLE_COLUMNS} FROM strata_tables ORDER BY space, name"
        )))
        .fetch_all(&self.pool)
        .await
        .map_err(|source| self.store_error("listing tables", source))?;
        let mut entries = Vec::with_capacity(rows.len());
        for row in &rows {
            entries.push(self.entry_from_row(row).await?);
        }
        Ok(entries)
    }

    /// Removes a table and its schema history.
    pub async fn drop_table(&self, name: &TableName) -> Result<TableEntry> {
        let entry = self.get(name).await?;
        let mut tx = self
            .pool
            .begin()
            .await
            .map_err(|source| self.store_error("starting a drop", source))?;
        for table in ["strata_table_schemas", "strata_tables"] {
            sqlx::query(self.sql(&format!("DELETE FROM {table} WHERE space = ? AND name = ?")))
                .bind(name.space.clone())
                .bind(name.name.clone())
                .execute(&mut *tx)
                .await
                .map_err(|source| self.store_error(&format!("dropping {name}"), source))?;
        }
        tx.commit()
            .await
            .map_err(|source| self.store_error("committing a drop", source))?;
        Ok(entry)
    }

    /// All recorded schema versions of a table, oldest first.
    pub async fn schema_versions(&self, name: &TableName) -> Result<Vec<SchemaVersion>> {
        let rows = sqlx::query(self.sql(
            "SELECT version, schema_json, created_at FROM strata_table_schemas \
             WHERE space = ? AND name = ? ORDER BY version",
        ))
        .bind(name.space.clone())
        .bind(name.name.clone())
        .fetch_all(&self.pool)
        .await
        .map_err(|source| {
            self.store_error(&format!("reading schema versions of {name}"), source)
        })?;
        if rows.is_empty() {
            return Err(CatalogError::NotFound {
                table: name.to_string(),
            });
        }
        rows.iter()
            .map(|row| {
                let version: i64 = self.column(row, "version")?;
                let schema_json: String = self.column(row, "schema_json")?;
                let created_at_ms: i64 = self.column(row, "created_at")?;
                Ok(SchemaVersion {
                    version,
                    schema: schema_from_json(&schema_json)?,
                    created_at_ms,
                })
            })
            .collect()
    }

    /// One schema version of a table.
    pub async fn schema_version(&self, name: &TableName, version: i64) -> Result<SchemaVersion> {
        let versions = self.schema_versions(name).await?;
        let latest = versions.last().map(|v| v.version).unwrap_or(0);
        versions
            .into_iter()
            .find(|v| v.version == version)
            .ok_or_else(|| CatalogError::NoSuchVersion {
                table: name.to_string(),
                version,
                latest,
            })
    }

    async fn entry_from_row(&self, row: &AnyRow) -> Result<TableEntry> {
        let name = TableName::new(
            self.column::<String>(row, "space")?,
            self.column::<String>(row, "name")?,
        );
        let schema_version: i64 = self.column(row, "schema_version")?;
        let schema = self.schema_version(&name, schema_version).await?.schema;
        let corrupt = |what: &str, err: &dyn std::fmt::Display| CatalogError::CorruptStore {
            detail: format!("{what} of {name}: {err}"),
        };
        let kind: TableKind = serde_json::from_str(&self.column::<String>(row, "kind")?)
            .map_err(|err| corrupt("kind", &err))?;
        let primary_key: Vec<String> =
            serde_json::from_str(&self.column::<String>(row, "primary_key")?)
                .map_err(|err| corrupt("primary key", &err))?;
        let watermark: Option<Watermark> = self
            .column::<Option<String>>(row, "watermark")?
            .map(|text| serde_json::from_str(&text))
            .transpose()
            .map_err(|err| corrupt("watermark", &err))?;
        let tags: Vec<String> = serde_json::from_str(&self.column::<String>(row, "tags")?)
            .map_err(|err| corrupt("tags", &err))?;
        let layer = Layer::from_str(&self.column::<String>(row, "layer")?)?;
        let lookup: LookupOptions = self
            .column::<Option<String>>(row, "lookup")?
            .map(|text| serde_json::from_str(&text))
            .transpose()
            .map_err(|err| corrupt("lookup options", &err))?
            .unwrap_or_default();
        Ok(TableEntry {
            def: TableDef {
                name,
                layer,
                kind,
                schema,
                primary_key,
                watermark,
                processing_time: self.column(row, "processing_time")?,
                owner: self.column(row, "owner")?,
                description: self.column(row, "description")?,
                tags,
                lookup,
            },
            schema_version,
            created_at_ms: self.column(row, "created_at")?,
            updated_at_ms: self.column(row, "updated_at")?,
        })
    }

    fn column<'r, T>(&self, row: &'r AnyRow, name: &str) -> Result<T>
    where
        T: sqlx::Decode<'r, sqlx::Any> + sqlx::Type<sqlx::Any>,
    {
        row.try_get(name)
            .map_err(|source| self.store_error(&format!("reading column {name}"), source))
    }

    pub(crate) fn store_error(&self, context: &str, source: sqlx::Error) -> CatalogError {
        CatalogError::Store {
            context: context.to_string(),
            source,
        }
    }
}

/// A definition's JSON-encoded columns.
struct TableColumns {
    kind: String,
    primary_key: String,
    watermark: Option<String>,
    tags: String,
    lookup: String,
}

impl TableColumns {
    fn from_def(def: &TableDef) -> Result<Self> {
        let encode = |value: serde_json::Result<String>| {
            value.map_err(|err| CatalogError::CorruptStore {
                detail: format!("encoding {}: {err}", def.name),
            })
        };
        Ok(Self {
            kind: encode(serde_json::to_string(&def.kind))?,
            primary_key: encode(serde_json::to_string(&def.primary_key))?,
            watermark: def
                .watermark
                .as_ref()
                .map(|w| encode(serde_json::to_string(w)))
                .transpose()?,
            tags: encode(serde_json::to_string(&def.tags))?,
            lookup: encode(serde_json::to_string(&def.lookup))?,
        })
    }
}

/// The SQLite file behind a store URL, unless it is in memory.
fn sqlite_path(url: &str) -> Option<&std::path::Path> {
    let path = url
        .trim_start_matches("sqlite://")
        .split('?')
        .next()
        .unwrap_or_default();
    (!path.is_empty() && path != ":memory:").then(|| std::path::Path::new(path))
}

/// Creates the SQLite store's folder (0700 when it is Strata's `.strata`) and
/// the file itself readable by its owner only: it holds token hashes and
/// connection passwords given in DDL.
fn create_sqlite_file(url: &str) -> Result<()> {
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
    let Some(path) = sqlite_path(url) else {
        return Ok(());
    };
    let io = |path: &std::path::Path| {
        let path = path.to_path_buf();
        move |source| CatalogError::Io { path, source }
    };
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(parent)
            .map_err(io(parent))?;
        if parent
            .file_name()
            .is_some_and(|name| name == crate::config::STATE_DIR)
        {
            std::fs::set_permissions(parent, std::fs::Permissions::from_mode(0o700))
                .map_err(io(parent))?;
        }
    }
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(path)
        .map_err(io(path))?;
    restrict_sqlite_files(path)
}

/// Makes the store file and SQLite's companions (journal, WAL) owner-only.
fn restrict_sqlite_files(path: &std::path::Path) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    for suffix in ["", "-journal", "-wal", "-shm"] {
        let file = std::path::PathBuf::from(format!("{}{suffix}", path.display()));
        match std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)) {
            Err(source) if source.kind() != std::io::ErrorKind::NotFound => {
                return Err(CatalogError::Io { path: file, source });
            }
            _ => {}
        }
    }
    Ok(())
}

pub(crate) fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}
