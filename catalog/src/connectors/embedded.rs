//! Embedded tables: small tables (dimensions, mostly) kept in the catalog's own
//! SQL store — SQLite in `.strata/` by default, or the store's MySQL/TiDB or
//! PostgreSQL — so a project needs no database server of its own.
//!
//! ```text
//!   CREATE TABLE shop.dim_cities (…) WITH ('connector' = 'embedded')
//!     register ──▶ CREATE TABLE "shop__dim_cities" (…) in the store, if missing
//!     SELECT   ──▶ SELECT CAST(col AS TEXT) … ──▶ Utf8 ──Arrow cast──▶ the declared types
//!     INSERT   ──▶ INSERT INTO "shop__dim_cities" VALUES (…), … in one transaction
//! ```
//!
//! Values travel as text both ways, so decimals and timestamps keep their exact
//! values on every backend (SQLite keeps decimals as text).

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, StringBuilder};
use arrow::datatypes::{DataType, Schema, SchemaRef};
use arrow::record_batch::{RecordBatch, RecordBatchOptions};
use arrow::util::display::{ArrayFormatter, FormatOptions};
use async_trait::async_trait;
use datafusion::catalog::{Session, TableProvider};
use datafusion::common::DataFusionError;
use datafusion::datasource::memory::MemorySourceConfig;
use datafusion::datasource::sink::DataSink;
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::logical_expr::dml::InsertOp;
use datafusion::logical_expr::{Expr, TableType};
use datafusion::physical_plan::{DisplayAs, DisplayFormatType, ExecutionPlan};
use futures::StreamExt;

use crate::error::{CatalogError, Result};
use crate::store::{Backend, CatalogStore};

/// An embedded table as DataFusion sees it.
#[derive(Debug)]
pub struct EmbeddedTable {
    store: CatalogStore,
    table: String,
    schema: SchemaRef,
}

impl EmbeddedTable {
    /// The embedded table `name` keeps in the store as `table`; refused unless
    /// `table` is one of its space's own store tables.
    pub fn new(
        store: CatalogStore,
        name: &crate::model::TableName,
        table: String,
        schema: SchemaRef,
    ) -> Result<Self> {
        crate::confine::embedded_table(name, &table)?;
        Ok(Self {
            store,
            table,
            schema,
        })
    }
}

fn quote(backend: Backend, identifier: &str) -> String {
    match backend {
        Backend::Mysql => format!("`{}`", identifier.replace('`', "``")),
        Backend::Sqlite | Backend::Postgres => format!("\"{}\"", identifier.replace('"', "\"\"")),
    }
}

/// The type values are read as.
fn text_type(backend: Backend) -> &'static str {
    match backend {
        Backend::Mysql => "CHAR",
        Backend::Sqlite | Backend::Postgres => "TEXT",
    }
}

/// The column type an Arrow type is kept as.
fn sql_type(backend: Backend, data_type: &DataType, in_key: bool) -> Option<String> {
    Some(match (backend, data_type) {
        (_, t) if t.is_integer() => "BIGINT".to_string(),
        (_, t) if t.is_floating() => "DOUBLE PRECISION".to_string(),
        (Backend::Sqlite, DataType::Decimal128(_, _)) => "TEXT".to_string(),
        (_, DataType::Decimal128(precision, scale)) => format!("DECIMAL({precision}, {scale})"),
        (Backend::Mysql, DataType::Utf8) if in_key => "VARCHAR(255)".to_string(),
        (_, DataType::Utf8) => "TEXT".to_string(),
        (_, DataType::Boolean) => "BOOLEAN".to_string(),
        (_, DataType::Date32) => "DATE".to_string(),
        (Backend::Mysql, DataType::Timestamp(_, _)) => "DATETIME(6)".to_string(),
        (_, DataType::Timestamp(_, _)) => "TIMESTAMP".to_string(),
        _ => return None,
    })
}

/// Creates the table in the store unless it is there; true when it was created.
pub async fn ensure_table(
    store: &CatalogStore,
    table: &str,
    schema: &Schema,
    primary_key: &[String],
) -> Result<bool> {
    let backend = store.backend();
    let quoted = quote(backend, table);
    if store
        .execute(&format!("SELECT 1 FROM {quoted} WHERE 1 = 0"))
        .await
        .is_ok()
    {
        return Ok(false);
    }
    let mut columns = Vec::with_capacity(schema.fields().len() + 1);
    for field in schema.fields() {
        let in_key = primary_key.contains(field.name());
        let sql = sql_type(backend, field.data_type(), in_key).ok_or_else(|| {
            CatalogError::Discovery {
                message: format!(
                    "column {} is {}, which an embedded table cannot hold",
                    field.name(),
                    crate::ddl::types::flink_type_name(field.data_type())
                ),
                hint: Some(
                    "embedded tables hold numbers, DECIMAL, STRING, BOOLEAN, DATE and TIMESTAMP; keep other data in Delta"
                        .to_string(),
                ),
            }
        })?;
        let null = if field.is_nullable() { "" } else { " NOT NULL" };
        columns.push(format!("{} {sql}{null}", quote(backend, field.name())));
    }
    if !primary_key.is_empty() {
        let keys: Vec<String> = primary_key.iter().map(|k| quote(backend, k)).collect();
        columns.push(format!("PRIMARY KEY ({})", keys.join(", ")));
    }
    store
        .execute(&format!("CREATE TABLE {quoted} ({})", columns.join(", ")))
        .await?;
    Ok(true)
}

#[async_trait]
impl TableProvider for EmbeddedTable {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    async fn scan(
        &self,
        _state: &dyn Session,
        projection: Option<&Vec<usize>>,
        _filters: &[Expr],
        _limit: Option<usize>,
    ) -> datafusion::error::Result<Arc<dyn ExecutionPlan>> {
        let projected = match projection {
            Some(indices) => Arc::new(self.schema.project(indices)?),
            None => self.schema.clone(),
        };
        let sql = self.select_sql(&projected);
        let rows = self
            .store
            .text_rows(&sql, projected.fields().len())
            .await
            .map_err(|err| DataFusionError::External(Box::new(err)))?;
        let batch = self
            .rows_to_batch(&rows, &projected)
            .map_err(|err| DataFusionError::External(Box::new(err)))?;
        Ok(MemorySourceConfig::try_new_exec(
            &[vec![batch]],
            projected,
            None,
        )?)
    }

    async fn insert_into(
        &self,
        _state: &dyn Session,
        input: Arc<dyn ExecutionPlan>,
        insert_op: InsertOp,
    ) -> datafusion::error::Result<Arc<dyn ExecutionPlan>> {
        super::append_through(
            input,
            insert_op,
            "an embedded table; use INSERT INTO",
            || {
                Ok(Arc::new(EmbeddedSink {
                    store: self.store.clone(),
                    table: self.table.clone(),
                    schema: self.schema.clone(),
                }))
            },
        )
    }
}

impl EmbeddedTable {
    /// The rows whose `key_columns` equal one of `keys` (a lookup join's batched
    /// fetch). Integer, boolean and string keys are compared as they are kept;
    /// others (decimals, dates) by their text.
    pub async fn lookup(
        &self,
        key_columns: &[String],
        keys: &[Vec<super::KeyValue>],
    ) -> Result<RecordBatch> {
        let backend = self.store.backend();
        let text = text_type(backend);
        let condition = super::key_condition(key_columns, keys.len(), |column| {
            let quoted = quote(backend, column);
            match self.schema.field_with_name(column).map(|f| f.data_type()) {
                Ok(t) if t.is_integer() || matches!(t, DataType::Utf8 | DataType::Boolean) => {
                    quoted
                }
                _ => format!("CAST({quoted} AS {text})"),
            }
        });
        let sql = format!("{} WHERE {condition}", self.select_sql(&self.schema));
        let rows = self
            .store
            .text_rows_bound(&sql, self.schema.fields().len(), keys.iter().flatten())
            .await?;
        self.rows_to_batch(&rows, &self.schema)
    }

    fn select_sql(&self, projected: &SchemaRef) -> String {
        let backend = self.store.backend();
        let text = text_type(backend);
        let columns: Vec<String> = projected
            .fields()
            .iter()
            .map(|f| format!("CAST({} AS {text})", quote(backend, f.name())))
            .collect();
        let select_list = if columns.is_empty() {
            "1".to_string()
        } else {
            columns.join(", ")
        };
        format!("SELECT {select_list} FROM {}", quote(backend, &self.table))
    }

    fn rows_to_batch(
        &self,
        rows: &[Vec<Option<String>>],
        projected: &SchemaRef,
    ) -> Result<RecordBatch> {
        let table = format!("the embedded table {}", self.table);
        let mut columns: Vec<ArrayRef> = Vec::with_capacity(projected.fields().len());
        for (index, field) in projected.fields().iter().enumerate() {
            let mut builder = StringBuilder::new();
            for row in rows {
                builder.append_option(row[index].as_deref());
            }
            columns.push(super::text_column(
                &builder.finish(),
                field,
                &table,
                "the table was changed outside Strata; fix its values or drop and re-register it",
            )?);
        }
        let options = RecordBatchOptions::new().with_row_count(Some(rows.len()));
        Ok(RecordBatch::try_new_with_options(
            projected.clone(),
            columns,
            &options,
        )?)
    }
}

/// Writes INSERTed rows into an embedded table, in one transaction.
#[derive(Debug)]
struct EmbeddedSink {
    store: CatalogStore,
    table: String,
    schema: SchemaRef,
}

impl DisplayAs for EmbeddedSink {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "EmbeddedSink: table={}", self.table)
    }
}

#[async_trait]
impl DataSink for EmbeddedSink {
    fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    async fn write_all(
        &self,
        mut data: SendableRecordBatchStream,
        _context: &Arc<TaskContext>,
    ) -> datafusion::error::Result<u64> {
        let backend = self.store.backend();
        let columns: Vec<String> = self
            .schema
            .fields()
            .iter()
            .map(|f| quote(backend, f.name()))
            .collect();
        let mut statements = Vec::new();
        let mut count = 0u64;
        while let Some(batch) = data.next().await {
            let batch = batch?;
            count += batch.num_rows() as u64;
            for chunk_start in (0..batch.num_rows()).step_by(500) {
                let chunk = batch.slice(chunk_start, (batch.num_rows() - chunk_start).min(500));
                let values = literal_rows(&chunk, backend)
                    .map_err(|err| DataFusionError::External(Box::new(err)))?;
                statements.push(format!(
                    "INSERT INTO {} ({}) VALUES {}",
                    quote(backend, &self.table),
                    columns.join(", "),
                    values.join(", ")
                ));
            }
        }
        self.store
            .execute_all(&statements)
            .await
            .map_err(|err| DataFusionError::External(Box::new(err)))?;
        Ok(count)
    }
}

/// Each row as a SQL tuple of literals: numbers bare, everything else quoted text.
fn literal_rows(batch: &RecordBatch, backend: Backend) -> Result<Vec<String>> {
    let options = FormatOptions::default()
        .with_timestamp_format(Some("%Y-%m-%d %H:%M:%S%.f"))
        .with_datetime_format(Some("%Y-%m-%d %H:%M:%S%.f"));
    let formatters = batch
        .columns()
        .iter()
        .map(|c| ArrayFormatter::try_new(c.as_ref(), &options))
        .collect::<std::result::Result<Vec<_>, _>>()?;
    Ok((0..batch.num_rows())
        .map(|row| {
            let values: Vec<String> = batch
                .columns()
                .iter()
                .zip(&formatters)
                .map(|(column, formatter)| {
                    if column.is_null(row) {
                        return "NULL".to_string();
                    }
                    let text = formatter.value(row).to_string();
                    match column.data_type() {
                        t if t.is_numeric() && backend != Backend::Sqlite => text,
                        t if t.is_integer() || t.is_floating() => text,
                        DataType::Boolean => match (backend, text.as_str()) {
                            (Backend::Postgres, value) => value.to_uppercase(),
                            (_, "true") => "1".to_string(),
                            _ => "0".to_string(),
                        },
                        _ => format!("'{}'", text.replace('\'', "''")),
                    }
                })
                .collect();
            format!("({})", values.join(", "))
        })
        .collect())
}
