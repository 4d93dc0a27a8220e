//! Delta Lake tables through deltalake's object store: local paths and URLs.
//!
//! Registering a Delta table whose location holds no table creates an empty
//! one with the declared schema (version 0 of its log). An existing table must
//! carry every declared column.

use std::sync::Arc;

use arrow::datatypes::{Field, Schema, SchemaRef};
use arrow::record_batch::RecordBatch;
use datafusion::catalog::TableProvider;
use datafusion::prelude::SessionContext;
use deltalake::kernel::StructType;
use deltalake::kernel::engine::arrow_conversion::TryIntoKernel;
use deltalake::operations::create::CreateBuilder;
use deltalake::{DeltaTable, DeltaTableBuilder};
use url::Url;

use crate::error::{CatalogError, Result};

/// A local path or URL as the `Url` deltalake wants.
pub fn table_url(location: &str) -> Result<Url> {
    if location.contains("://") {
        return Url::parse(location).map_err(|err| CatalogError::Discovery {
            message: format!("{location:?} is not a valid table URL: {err}"),
            hint: Some("use a local path or a URL such as s3://bucket/path".to_string()),
        });
    }
    deltalake::ensure_table_uri(location).map_err(|source| delta_error(location, source))
}

fn delta_error(location: &str, source: deltalake::DeltaTableError) -> CatalogError {
    CatalogError::Delta {
        location: location.to_string(),
        source,
    }
}

/// True when `location` holds a Delta table (a `_delta_log` with commits).
pub async fn exists(location: &str) -> Result<bool> {
    let url = table_url(location)?;
    DeltaTableBuilder::from_url(url)
        .and_then(|builder| builder.build())
        .map_err(|source| delta_error(location, source))?
        .verify_deltatable_existence()
        .await
        .map_err(|source| delta_error(location, source))
}

/// Opens the table at `location`.
pub async fn open(location: &str) -> Result<DeltaTable> {
    let url = table_url(location)?;
    deltalake::open_table(url)
        .await
        .map_err(|source| delta_error(location, source))
}

/// The Arrow schema of the table at `location`.
pub async fn read_schema(location: &str) -> Result<SchemaRef> {
    Ok(read_layout(location).await?.0)
}

/// The table's schema and its partition columns, in order (none for an
/// unpartitioned table), from one read of its log.
pub async fn read_layout(location: &str) -> Result<(SchemaRef, Vec<String>)> {
    layout(&open(location).await?, location)
}

fn layout(table: &DeltaTable, location: &str) -> Result<(SchemaRef, Vec<String>)> {
    let snapshot = table
        .snapshot()
        .map_err(|source| delta_error(location, source))?;
    Ok((
        snapshot.snapshot().arrow_schema(),
        snapshot.metadata().partition_columns().to_vec(),
    ))
}

/// Creates an empty table with `schema` at `location`, partitioned by
/// `partitioned_by` (Delta folders per value: `dt=2024-05-01/…`).
pub async fn create(
    location: &str,
    table_name: &str,
    schema: &Schema,
    partitioned_by: &[String],
) -> Result<DeltaTable> {
    let delta_schema: StructType =
        schema
            .try_into_kernel()
            .map_err(|err: arrow::error::ArrowError| CatalogError::Discovery {
                message: format!("Delta cannot store the schema of {table_name}: {err}"),
                hint: Some(
                    "Delta stores BOOLEAN, TINYINT..BIGINT, FLOAT, DOUBLE, DECIMAL, STRING, BYTES, DATE, TIMESTAMP, TIMESTAMP_LTZ, ARRAY, MAP and ROW; change the column's type"
                        .to_string(),
                ),
            })?;
    let mut builder = CreateBuilder::new()
        .with_location(location)
        .with_table_name(table_name)
        .with_columns(delta_schema.fields().cloned());
    if !partitioned_by.is_empty() {
        builder = builder.with_partition_columns(partitioned_by.to_vec());
    }
    builder
        .await
        .map_err(|source| delta_error(location, source))
}

/// What compaction did.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Compaction {
    pub files_removed: u64,
    pub files_added: u64,
    /// The table version after compaction.
    pub version: i64,
}

/// One version of a Delta table, as its log records it.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct TableVersion {
    pub version: i64,
    /// When it was committed, in milliseconds since the epoch.
    pub committed_ms: Option<i64>,
    /// `CREATE TABLE`, `WRITE`, `MERGE`, `OPTIMIZE`, …
    pub operation: String,
    /// Rows the commit added, when its metrics say.
    pub rows_added: Option<u64>,
}

/// The table's versions, newest first (at most `limit`), as far back as its
/// log retention keeps them.
pub async fn history(location: &str, limit: usize) -> Result<Vec<TableVersion>> {
    use futures::TryStreamExt;
    let table = open(location).await?;
    let latest = table.version().map_or(-1, |v| v as i64);
    let infos: Vec<_> = table
        .history(Some(limit))
        .try_collect()
        .await
        .map_err(|source| delta_error(location, source))?;
    Ok(infos
        .into_iter()
        .enumerate()
        .map(|(age, info)| {
            let metrics = info.info.get("operationMetrics");
            let rows_added = [
                "num_added_rows",
                "numOutputRows",
                "num_target_rows_inserted",
            ]
            .iter()
            .find_map(|key| metrics.and_then(|m| m.get(key)).and_then(|v| v.as_u64()));
            TableVersion {
                version: latest - age as i64,
                committed_ms: info.timestamp,
                operation: info.operation.unwrap_or_default(),
                rows_added,
            }
        })
        .collect())
}

/// Compacts small files into larger ones and writes a log checkpoint, so that
/// readers open the table quickly however many commits it has had.
pub async fn optimize(location: &str) -> Result<Compaction> {
    let table = open(location).await?;
    let (table, metrics) = table
        .optimize()
        .await
        .map_err(|source| delta_error(location, source))?;
    deltalake::checkpoints::create_checkpoint(&table, None)
        .await
        .map_err(|source| delta_error(location, source))?;
    Ok(Compaction {
        files_removed: metrics.num_files_removed,
        files_added: metrics.num_files_added,
        version: table.version().unwrap_or(0) as i64,
    })
}

/// What [`ensure_table`] did at a location.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Prepared {
    /// A table was already there, with every declared column.
    Existing,
    /// No table was there; an empty one was created.
    Created(CreatedTable),
    /// The table lacked these declared columns, and they were added.
    ColumnsAdded(Vec<String>),
}

/// Makes sure a Delta table with (at least) `schema`'s columns, partitioned
/// by `partitioned_by`, exists at `location`. Missing columns are added when
/// `evolve` is set (they must be nullable: existing rows have no value for
/// them); otherwise they are an error. Partitioning is never changed.
pub async fn ensure_table(
    location: &str,
    table_name: &str,
    schema: &Schema,
    partitioned_by: &[String],
    evolve: bool,
) -> Result<Prepared> {
    // Checking for a table creates its directory, so look before.
    let directory_existed = local_path(location).is_some_and(|p| p.exists());
    if !exists(location).await? {
        create(location, table_name, schema, partitioned_by).await?;
        return Ok(Prepared::Created(CreatedTable {
            location: location.to_string(),
            directory_existed,
        }));
    }
    let table = open(location).await?;
    let (existing, partitions) = layout(&table, location)?;
    if partitions != partitioned_by {
        let shown = |columns: &[String]| match columns {
            [] => "not partitioned".to_string(),
            columns => format!("PARTITIONED BY ({})", columns.join(", ")),
        };
        return Err(CatalogError::Discovery {
            message: format!(
                "the Delta table at {location} is {}, but {table_name} is declared {}",
                shown(&partitions),
                shown(partitioned_by)
            ),
            hint: Some(format!(
                "declare it as the table is ({}): a Delta table's partitioning is fixed when it is created",
                shown(&partitions)
            )),
        });
    }
    let missing: Vec<&Field> = schema
        .fields()
        .iter()
        .filter(|field| existing.field_with_name(field.name()).is_err())
        .map(|field| field.as_ref())
        .collect();
    let Some(first) = missing.first() else {
        return Ok(Prepared::Existing);
    };
    let names: Vec<&str> = existing
        .fields()
        .iter()
        .map(|f| f.name().as_str())
        .collect();
    if !evolve {
        return Err(CatalogError::Discovery {
            message: format!(
                "the Delta table at {location} has no column {} declared for {table_name}",
                first.name()
            ),
            hint: Some(format!(
                "its columns are {}; correct the DDL, register with --update to add the column, or use `strata catalog discover` to register the table as it is",
                names.join(", ")
            )),
        });
    }
    if let Some(required) = missing.iter().find(|f| !f.is_nullable()) {
        return Err(CatalogError::Discovery {
            message: format!(
                "column {} cannot be added to the Delta table at {location} as NOT NULL: its existing rows have no value",
                required.name()
            ),
            hint: Some("declare the new column nullable".to_string()),
        });
    }
    let additions = Schema::new(missing.iter().map(|f| (*f).clone()).collect::<Vec<Field>>());
    let fields: StructType =
        (&additions)
            .try_into_kernel()
            .map_err(|err: arrow::error::ArrowError| CatalogError::Discovery {
                message: format!("Delta cannot store the new columns of {table_name}: {err}"),
                hint: None,
            })?;
    table
        .add_columns()
        .with_fields(fields.fields().cloned().collect::<Vec<_>>())
        .await
        .map_err(|source| delta_error(location, source))?;
    Ok(Prepared::ColumnsAdded(
        missing.iter().map(|f| f.name().clone()).collect(),
    ))
}

/// The table at `location` as a DataFusion table (a snapshot of its latest version).
pub async fn table_provider(location: &str) -> Result<Arc<dyn TableProvider>> {
    provider_of(&open(location).await?).await
}

/// `table` as a DataFusion table, each column of its declared type: a STRING
/// partition column reads as text, not as the dictionary deltalake makes of it.
pub async fn provider_of(table: &DeltaTable) -> Result<Arc<dyn TableProvider>> {
    let provider = table.table_provider().await.map_err(CatalogError::Query)?;
    Ok(super::delta_partitions::PlainPartitionValues::wrap(
        provider,
    ))
}

/// A past state of a Delta table: `VERSION AS OF n`, or `FOR SYSTEM_TIME AS OF
/// TIMESTAMP '…'` (the last version committed at or before that time).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AsOf {
    Version(i64),
    Time(chrono::DateTime<chrono::Utc>),
}

impl std::fmt::Display for AsOf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AsOf::Version(v) => write!(f, "version {v}"),
            AsOf::Time(t) => write!(f, "{}", t.to_rfc3339()),
        }
    }
}

/// The table at `location` as it was at `as_of`.
pub async fn open_as_of(location: &str, as_of: AsOf) -> Result<DeltaTable> {
    let url = table_url(location)?;
    let builder =
        DeltaTableBuilder::from_url(url).map_err(|source| delta_error(location, source))?;
    let builder = match as_of {
        AsOf::Version(version) => builder.with_version(version.max(0) as u64),
        AsOf::Time(time) => builder.with_timestamp(time),
    };
    match builder.load().await {
        Ok(table) => Ok(table),
        Err(source) => {
            let latest = open(location).await.ok().and_then(|t| t.version());
            let have = match latest {
                Some(latest) => format!("it has versions 0 to {latest}"),
                None => "it has no versions".to_string(),
            };
            // Past the latest version the kernel's own words add nothing.
            let cause = match (as_of, latest) {
                (AsOf::Version(version), Some(latest))
                    if u64::try_from(version).is_ok_and(|v| v > latest) =>
                {
                    String::new()
                }
                _ => format!(": {source}"),
            };
            Err(CatalogError::Discovery {
                message: format!("the Delta table at {location} has no state at {as_of}{cause}"),
                hint: Some(format!(
                    "{have}; `strata history SPACE.TABLE` lists them with when each was committed"
                )),
            })
        }
    }
}

/// The table at `location` as it was at `as_of`, as a DataFusion table.
pub async fn table_provider_as_of(location: &str, as_of: AsOf) -> Result<Arc<dyn TableProvider>> {
    provider_of(&open_as_of(location, as_of).await?).await
}

/// Runs `sql` over the table at `location`, which the query names `name`
/// (for Strata's own tables: quality results, quarantines, journals).
pub async fn query(location: &str, name: &str, sql: &str) -> Result<Vec<RecordBatch>> {
    let context = SessionContext::new();
    context.register_table(name, table_provider(location).await?)?;
    Ok(context.sql(sql).await?.collect().await?)
}

/// A table that registration created, so that a failed registration can take it back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreatedTable {
    location: String,
    /// The directory was there before (empty, or with other files): only the log is removed.
    directory_existed: bool,
}

impl CreatedTable {
    /// Removes what registration created: the log, and the directory if it made it.
    pub fn remove(&self) {
        let Some(path) = local_path(&self.location) else {
            tracing::warn!(location = %self.location, "left an empty Delta table behind at a remote location");
            return;
        };
        let removed = if self.directory_existed {
            std::fs::remove_dir_all(path.join("_delta_log"))
        } else {
            std::fs::remove_dir_all(&path)
        };
        if let Err(err) = removed {
            tracing::warn!(location = %self.location, %err, "could not remove an empty Delta table");
        }
    }
}

/// The local directory of a location, if it is on this machine.
fn local_path(location: &str) -> Option<std::path::PathBuf> {
    if let Some(path) = location.strip_prefix("file://") {
        return Some(path.into());
    }
    (!location.contains("://")).then(|| location.into())
}
