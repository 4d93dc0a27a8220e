//! TiDB/MySQL: connections, discovery from `information_schema`, and a
//! DataFusion table that pushes projections and filters down to the server.
//!
//! ```text
//!   SELECT a, b FROM shop.dim_users WHERE city = 'Beijing'
//!     └─▶ SELECT CAST(`a` AS CHAR), … FROM `shop`.`users` WHERE (`city` = 'Beijing')   (text protocol)
//!           └─▶ Utf8 columns ──arrow cast──▶ the catalog schema's types
//! ```
//!
//! Values travel as text and are cast by Arrow, so DECIMAL, DATETIME and
//! friends keep their exact values. Sessions run in UTC.

use std::sync::Arc;

use arrow::array::{ArrayRef, BinaryBuilder, StringBuilder};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use arrow::record_batch::{RecordBatch, RecordBatchOptions};
use async_trait::async_trait;
use datafusion::catalog::{Session, TableProvider};
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::common::{Column, DataFusionError};
use datafusion::datasource::memory::MemorySourceConfig;
use datafusion::logical_expr::{Expr, TableProviderFilterPushDown, TableType};
use datafusion::physical_plan::ExecutionPlan;
use datafusion::sql::unparser::Unparser;
use datafusion::sql::unparser::dialect::MySqlDialect;
use sqlx::mysql::{MySqlConnection, MySqlPool, MySqlPoolOptions, MySqlRow};
use sqlx::{AssertSqlSafe, Connection, Executor, Row};

use crate::config::redact_url;
use crate::error::{CatalogError, Result};

/// Where a MySQL/TiDB table lives, with credentials resolved.
#[derive(Clone)]
pub struct MysqlTarget {
    /// The server URL with credentials; never printed.
    pub url: String,
    pub database: String,
    pub table: String,
}

impl std::fmt::Debug for MysqlTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MysqlTarget")
            .field("url", &redact_url(&self.url))
            .field("database", &self.database)
            .field("table", &self.table)
            .finish()
    }
}

impl MysqlTarget {
    /// `mysql://host:port`, for messages.
    pub fn address(&self) -> String {
        address_of(&self.url)
    }

    /// `` `database`.`table` ``.
    pub fn quoted(&self) -> String {
        format!("{}.{}", quote(&self.database), quote(&self.table))
    }
}

fn address_of(url: &str) -> String {
    url::Url::parse(url)
        .ok()
        .map(|u| {
            format!(
                "{}:{}",
                u.host_str().unwrap_or("?"),
                u.port().unwrap_or(3306)
            )
        })
        .unwrap_or_else(|| redact_url(url))
}

/// Connects, with every session in UTC so TIMESTAMP columns read the same everywhere.
pub async fn connect(url: &str) -> Result<MySqlPool> {
    let unreachable = |err: sqlx::Error| CatalogError::Unreachable {
        service: "MySQL/TiDB",
        address: address_of(url),
        cause: err.to_string(),
        hint: "check that the server runs and the URL, user and password are right".to_string(),
    };
    // One direct attempt first: a pool would retry until its timeout and hide the cause.
    MySqlConnection::connect(url)
        .await
        .map_err(unreachable)?
        .close()
        .await
        .map_err(unreachable)?;
    // No idle timeout or lifetime (see CatalogStore::connect): connections are
    // pinged before each use, and one the server closed is replaced.
    MySqlPoolOptions::new()
        .max_connections(4)
        .acquire_timeout(std::time::Duration::from_secs(10))
        .idle_timeout(None)
        .max_lifetime(None)
        .after_connect(|conn, _| {
            Box::pin(async move {
                conn.execute("SET time_zone = '+00:00'").await?;
                Ok(())
            })
        })
        .connect(url)
        .await
        .map_err(unreachable)
}

/// A MySQL identifier, quoted.
pub fn quote(identifier: &str) -> String {
    format!("`{}`", identifier.replace('`', "``"))
}

/// A column as `information_schema` describes it.
#[derive(Debug, Clone)]
pub struct MysqlColumn {
    pub name: String,
    /// `DATA_TYPE`, e.g. `decimal`.
    pub data_type: String,
    /// `COLUMN_TYPE`, e.g. `decimal(10,2) unsigned`.
    pub column_type: String,
    pub nullable: bool,
}

/// A table found by discovery.
#[derive(Debug, Clone)]
pub struct MysqlTableInfo {
    pub name: String,
    pub columns: Vec<MysqlColumn>,
    pub primary_key: Vec<String>,
}

/// Reads the tables of a database (or one table of it) from `information_schema`.
pub async fn describe_tables(
    pool: &MySqlPool,
    database: &str,
    only_table: Option<&str>,
) -> Result<Vec<MysqlTableInfo>> {
    let mysql_err = |context: &str| {
        let context = context.to_string();
        move |source| CatalogError::Mysql { context, source }
    };
    let column_rows = sqlx::query(
        "SELECT CAST(TABLE_NAME AS CHAR), CAST(COLUMN_NAME AS CHAR), CAST(DATA_TYPE AS CHAR), \
         CAST(COLUMN_TYPE AS CHAR), CAST(IS_NULLABLE AS CHAR) \
         FROM information_schema.COLUMNS c \
         WHERE TABLE_SCHEMA = ? AND (? IS NULL OR TABLE_NAME = ?) \
         AND EXISTS (SELECT 1 FROM information_schema.TABLES t WHERE t.TABLE_SCHEMA = c.TABLE_SCHEMA \
                     AND t.TABLE_NAME = c.TABLE_NAME AND t.TABLE_TYPE = 'BASE TABLE') \
         ORDER BY TABLE_NAME, ORDINAL_POSITION",
    )
    .bind(database)
    .bind(only_table)
    .bind(only_table)
    .fetch_all(pool)
    .await
    .map_err(mysql_err(&format!("reading the columns of database {database}")))?;
    let key_rows = sqlx::query(
        "SELECT CAST(TABLE_NAME AS CHAR), CAST(COLUMN_NAME AS CHAR) FROM information_schema.KEY_COLUMN_USAGE \
         WHERE TABLE_SCHEMA = ? AND CONSTRAINT_NAME = 'PRIMARY' ORDER BY TABLE_NAME, ORDINAL_POSITION",
    )
    .bind(database)
    .fetch_all(pool)
    .await
    .map_err(mysql_err(&format!("reading the primary keys of database {database}")))?;

    let mut tables: Vec<MysqlTableInfo> = Vec::new();
    for row in &column_rows {
        let text = |i: usize| row.try_get::<String, _>(i);
        let table = text(0).map_err(mysql_err("reading information_schema"))?;
        let column = MysqlColumn {
            name: text(1).map_err(mysql_err("reading information_schema"))?,
            data_type: text(2).map_err(mysql_err("reading information_schema"))?,
            column_type: text(3).map_err(mysql_err("reading information_schema"))?,
            nullable: text(4).map_err(mysql_err("reading information_schema"))? == "YES",
        };
        match tables.last_mut() {
            Some(last) if last.name == table => last.columns.push(column),
            _ => tables.push(MysqlTableInfo {
                name: table,
                columns: vec![column],
                primary_key: Vec::new(),
            }),
        }
    }
    for row in &key_rows {
        let table: String = row.try_get(0).map_err(mysql_err("reading keys"))?;
        let column: String = row.try_get(1).map_err(mysql_err("reading keys"))?;
        if let Some(info) = tables.iter_mut().find(|t| t.name == table) {
            info.primary_key.push(column);
        }
    }
    Ok(tables)
}

/// The Arrow type of a MySQL column, or the type text when there is none.
pub fn arrow_type(column: &MysqlColumn) -> std::result::Result<DataType, String> {
    let column_type = column.column_type.to_ascii_lowercase();
    let unsigned = column_type.contains("unsigned");
    let args = type_args(&column_type);
    let precision_unit = |precision: u64| match precision {
        0..=3 => TimeUnit::Millisecond,
        _ => TimeUnit::Microsecond,
    };
    let data_type = match column.data_type.to_ascii_lowercase().as_str() {
        "tinyint" if column_type.starts_with("tinyint(1)") => DataType::Boolean,
        "tinyint" if unsigned => DataType::Int16,
        "tinyint" => DataType::Int8,
        "smallint" if unsigned => DataType::Int32,
        "smallint" => DataType::Int16,
        "mediumint" | "int" | "integer" if unsigned => DataType::Int64,
        "mediumint" | "int" | "integer" => DataType::Int32,
        "bigint" if unsigned => DataType::Decimal128(20, 0),
        "bigint" => DataType::Int64,
        "float" => DataType::Float32,
        "double" | "real" => DataType::Float64,
        "decimal" | "numeric" => {
            let precision = args.first().copied().unwrap_or(10);
            let scale = args.get(1).copied().unwrap_or(0);
            if precision > 38 {
                return Err(column.column_type.clone());
            }
            DataType::Decimal128(precision as u8, scale as i8)
        }
        "char" | "varchar" | "tinytext" | "text" | "mediumtext" | "longtext" | "enum" | "set"
        | "json" => DataType::Utf8,
        "binary" | "varbinary" | "tinyblob" | "blob" | "mediumblob" | "longblob" => {
            DataType::Binary
        }
        "date" => DataType::Date32,
        "datetime" => DataType::Timestamp(precision_unit(args.first().copied().unwrap_or(0)), None),
        "timestamp" => DataType::Timestamp(
            precision_unit(args.first().copied().unwrap_or(0)),
            Some("UTC".into()),
        ),
        "time" => DataType::Time64(TimeUnit::Microsecond),
        "year" => DataType::Int16,
        "bit" if args.first().copied().unwrap_or(1) == 1 => DataType::Boolean,
        _ => return Err(column.column_type.clone()),
    };
    Ok(data_type)
}

fn type_args(column_type: &str) -> Vec<u64> {
    column_type
        .split_once('(')
        .and_then(|(_, rest)| rest.split_once(')'))
        .map(|(args, _)| {
            args.split(',')
                .filter_map(|a| a.trim().parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

/// The Arrow schema of a described table, or the first column that has no Arrow type.
pub fn arrow_schema(info: &MysqlTableInfo) -> std::result::Result<Schema, (String, String)> {
    let fields = info
        .columns
        .iter()
        .map(|column| {
            let data_type = arrow_type(column).map_err(|ty| (column.name.clone(), ty))?;
            Ok(Field::new(&column.name, data_type, column.nullable))
        })
        .collect::<std::result::Result<Vec<_>, (String, String)>>()?;
    Ok(Schema::new(fields))
}

/// Checks that a registered table exists in MySQL with every declared column.
pub async fn verify_table(pool: &MySqlPool, target: &MysqlTarget, schema: &Schema) -> Result<()> {
    let tables = describe_tables(pool, &target.database, Some(&target.table)).await?;
    let Some(info) = tables.first() else {
        return Err(CatalogError::Discovery {
            message: format!(
                "MySQL/TiDB at {} has no table {}.{}",
                target.address(),
                target.database,
                target.table
            ),
            hint: Some(
                "create the table first, or correct 'table-name' and the URL's database"
                    .to_string(),
            ),
        });
    };
    for field in schema.fields() {
        if !info
            .columns
            .iter()
            .any(|c| c.name.eq_ignore_ascii_case(field.name()))
        {
            let names: Vec<&str> = info.columns.iter().map(|c| c.name.as_str()).collect();
            return Err(CatalogError::Discovery {
                message: format!(
                    "column {} is declared but {}.{} has no such column",
                    field.name(),
                    target.database,
                    target.table
                ),
                hint: Some(format!("its columns are {}", names.join(", "))),
            });
        }
    }
    Ok(())
}

/// A MySQL/TiDB table as DataFusion sees it.
pub struct MysqlTable {
    pool: MySqlPool,
    target: MysqlTarget,
    schema: SchemaRef,
}

impl std::fmt::Debug for MysqlTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MysqlTable")
            .field("target", &self.target)
            .finish()
    }
}

impl MysqlTable {
    pub fn new(pool: MySqlPool, target: MysqlTarget, schema: SchemaRef) -> Self {
        Self {
            pool,
            target,
            schema,
        }
    }

    /// A filter as MySQL SQL, with column qualifiers removed; `None` unless it
    /// is one MySQL answers with at least the rows Arrow would (see [`pushable`]).
    fn filter_sql(expr: &Expr) -> Option<String> {
        if !pushable(expr) {
            return None;
        }
        let unqualified = expr
            .clone()
            .transform(|e| {
                Ok(match e {
                    Expr::Column(c) => {
                        Transformed::yes(Expr::Column(Column::new_unqualified(c.name)))
                    }
                    other => Transformed::no(other),
                })
            })
            .ok()?
            .data;
        let dialect = MySqlDialect {};
        Unparser::new(&dialect)
            .expr_to_sql(&unqualified)
            .ok()
            .map(|sql| sql.to_string())
    }

    /// Builds the SELECT for a scan.
    pub fn select_sql(&self, projection: Option<&Vec<usize>>, filters: &[Expr]) -> String {
        let indices: Vec<usize> = match projection {
            Some(indices) => indices.clone(),
            None => (0..self.schema.fields().len()).collect(),
        };
        let columns: Vec<String> = indices
            .iter()
            .map(|&i| {
                let field = self.schema.field(i);
                match field.data_type() {
                    t if is_binary(t) => quote(field.name()),
                    // `+ 0` reads BIT(1) and TINYINT(1) alike as a number.
                    DataType::Boolean => format!("CAST(({} + 0) AS CHAR)", quote(field.name())),
                    _ => format!("CAST({} AS CHAR)", quote(field.name())),
                }
            })
            .collect();
        let select_list = if columns.is_empty() {
            "1".to_string()
        } else {
            columns.join(", ")
        };
        let mut sql = format!("SELECT {select_list} FROM {}", self.target.quoted());
        let conditions: Vec<String> = filters.iter().filter_map(Self::filter_sql).collect();
        if !conditions.is_empty() {
            sql.push_str(" WHERE ");
            sql.push_str(&conditions.join(" AND "));
        }
        sql
    }

    /// The rows whose `key_columns` equal one of `keys`: a lookup join's batched
    /// fetch, `SELECT … WHERE k IN (?, …)` or `(k1, k2) IN ((?, ?), …)`, with the
    /// values bound (MySQL converts text to the column's type).
    pub async fn lookup(
        &self,
        key_columns: &[String],
        keys: &[Vec<super::KeyValue>],
    ) -> Result<RecordBatch> {
        let condition = super::key_condition(key_columns, keys.len(), quote);
        let sql = format!("{} WHERE {condition}", self.select_sql(None, &[]));
        let mut query = sqlx::query(AssertSqlSafe(sql));
        for value in keys.iter().flatten() {
            query = match value {
                super::KeyValue::Int(v) => query.bind(*v),
                super::KeyValue::Bool(v) => query.bind(*v),
                super::KeyValue::Text(text) => query.bind(text.clone()),
            };
        }
        let rows = query
            .fetch_all(&self.pool)
            .await
            .map_err(|source| CatalogError::Mysql {
                context: format!(
                    "at {} looking up {} keys in {}",
                    self.target.address(),
                    keys.len(),
                    self.target.quoted()
                ),
                source,
            })?;
        self.rows_to_batch(&rows, &self.schema)
    }

    fn rows_to_batch(&self, rows: &[MySqlRow], projected: &SchemaRef) -> Result<RecordBatch> {
        let mut columns: Vec<ArrayRef> = Vec::with_capacity(projected.fields().len());
        for (index, field) in projected.fields().iter().enumerate() {
            let read_err = |source| CatalogError::Mysql {
                context: format!(
                    "reading column {} of {}",
                    field.name(),
                    self.target.quoted()
                ),
                source,
            };
            let array: ArrayRef = if is_binary(field.data_type()) {
                let mut builder = BinaryBuilder::new();
                for row in rows {
                    builder.append_option(
                        row.try_get_unchecked::<Option<Vec<u8>>, _>(index)
                            .map_err(read_err)?,
                    );
                }
                Arc::new(builder.finish())
            } else {
                let mut builder = StringBuilder::new();
                for row in rows {
                    builder.append_option(
                        row.try_get_unchecked::<Option<String>, _>(index)
                            .map_err(read_err)?,
                    );
                }
                super::text_column(
                    &builder.finish(),
                    field,
                    &self.target.quoted(),
                    "correct the column's type in the DDL to match the MySQL table",
                )?
            };
            columns.push(array);
        }
        let options = RecordBatchOptions::new().with_row_count(Some(rows.len()));
        Ok(RecordBatch::try_new_with_options(
            projected.clone(),
            columns,
            &options,
        )?)
    }
}

/// Filters pushed to MySQL may return more rows than Arrow's answer (DataFusion
/// filters again) but never fewer. Case-insensitive collations make string
/// `<>`, `<` and `NOT` lose rows, so strings are pushed only with `=` and `IN`.
/// Literals are numbers, booleans, or strings without quotes or backslashes,
/// so nothing in a literal can end it.
fn pushable(expr: &Expr) -> bool {
    use datafusion::logical_expr::{BinaryExpr, Operator};
    match expr {
        Expr::BinaryExpr(BinaryExpr { left, op, right }) => match op {
            Operator::And | Operator::Or => pushable(left) && pushable(right),
            Operator::Eq => compares_column(left, right, true),
            Operator::NotEq | Operator::Lt | Operator::LtEq | Operator::Gt | Operator::GtEq => {
                compares_column(left, right, false)
            }
            _ => false,
        },
        Expr::IsNull(inner) | Expr::IsNotNull(inner) => matches!(inner.as_ref(), Expr::Column(_)),
        Expr::InList(list) => {
            !list.negated
                && matches!(list.expr.as_ref(), Expr::Column(_))
                && list.list.iter().all(|item| safe_literal(item, true))
        }
        Expr::Between(between) => {
            !between.negated
                && matches!(between.expr.as_ref(), Expr::Column(_))
                && safe_literal(&between.low, false)
                && safe_literal(&between.high, false)
        }
        _ => false,
    }
}

fn compares_column(left: &Expr, right: &Expr, strings: bool) -> bool {
    match (left, right) {
        (Expr::Column(_), literal) | (literal, Expr::Column(_)) => safe_literal(literal, strings),
        _ => false,
    }
}

fn safe_literal(expr: &Expr, strings: bool) -> bool {
    use datafusion::common::ScalarValue;
    let Expr::Literal(value, _) = expr else {
        return false;
    };
    match value {
        ScalarValue::Boolean(Some(_))
        | ScalarValue::Int8(Some(_))
        | ScalarValue::Int16(Some(_))
        | ScalarValue::Int32(Some(_))
        | ScalarValue::Int64(Some(_))
        | ScalarValue::UInt8(Some(_))
        | ScalarValue::UInt16(Some(_))
        | ScalarValue::UInt32(Some(_))
        | ScalarValue::UInt64(Some(_))
        | ScalarValue::Decimal128(Some(_), _, _) => true,
        ScalarValue::Float32(Some(v)) => v.is_finite(),
        ScalarValue::Float64(Some(v)) => v.is_finite(),
        ScalarValue::Utf8(Some(text))
        | ScalarValue::Utf8View(Some(text))
        | ScalarValue::LargeUtf8(Some(text)) => {
            strings
                && !text
                    .chars()
                    .any(|c| c == '\'' || c == '\\' || c.is_control())
        }
        _ => false,
    }
}

fn is_binary(data_type: &DataType) -> bool {
    matches!(data_type, DataType::Binary | DataType::LargeBinary)
}

#[async_trait]
impl TableProvider for MysqlTable {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    fn supports_filters_pushdown(
        &self,
        filters: &[&Expr],
    ) -> datafusion::error::Result<Vec<TableProviderFilterPushDown>> {
        // MySQL collations may compare differently from Arrow, so DataFusion re-checks.
        Ok(filters
            .iter()
            .map(|filter| match Self::filter_sql(filter) {
                Some(_) => TableProviderFilterPushDown::Inexact,
                None => TableProviderFilterPushDown::Unsupported,
            })
            .collect())
    }

    async fn scan(
        &self,
        _state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        _limit: Option<usize>,
    ) -> datafusion::error::Result<Arc<dyn ExecutionPlan>> {
        let projected = match projection {
            Some(indices) => Arc::new(self.schema.project(indices)?),
            None => self.schema.clone(),
        };
        let sql = self.select_sql(projection, filters);
        let rows = sqlx::raw_sql(AssertSqlSafe(sql.clone()))
            .fetch_all(&self.pool)
            .await
            .map_err(|source| {
                DataFusionError::External(Box::new(CatalogError::Mysql {
                    context: format!("at {} running {sql}", self.target.address()),
                    source,
                }))
            })?;
        let batch = self
            .rows_to_batch(&rows, &projected)
            .map_err(|err| DataFusionError::External(Box::new(err)))?;
        Ok(MemorySourceConfig::try_new_exec(
            &[vec![batch]],
            projected,
            None,
        )?)
    }

    /// `INSERT INTO` the table: all rows in one transaction ([`super::mysql_sink`]).
    async fn insert_into(
        &self,
        _state: &dyn Session,
        input: Arc<dyn ExecutionPlan>,
        insert_op: datafusion::logical_expr::dml::InsertOp,
    ) -> datafusion::error::Result<Arc<dyn ExecutionPlan>> {
        super::append_through(
            input,
            insert_op,
            "a MySQL/TiDB table: use INSERT INTO (rows are added; a duplicate key fails the statement)",
            || {
                Ok(Arc::new(super::mysql_sink::MysqlSink {
                    pool: self.pool.clone(),
                    target: self.target.clone(),
                    schema: self.schema.clone(),
                }))
            },
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn column(data_type: &str, column_type: &str) -> MysqlColumn {
        MysqlColumn {
            name: "c".into(),
            data_type: data_type.into(),
            column_type: column_type.into(),
            nullable: true,
        }
    }

    #[test]
    fn mysql_types_map_to_arrow() {
        assert_eq!(
            arrow_type(&column("tinyint", "tinyint(1)")),
            Ok(DataType::Boolean)
        );
        assert_eq!(
            arrow_type(&column("decimal", "decimal(10,2)")),
            Ok(DataType::Decimal128(10, 2))
        );
        assert_eq!(
            arrow_type(&column("bigint", "bigint(20) unsigned")),
            Ok(DataType::Decimal128(20, 0))
        );
        assert_eq!(
            arrow_type(&column("datetime", "datetime(3)")),
            Ok(DataType::Timestamp(TimeUnit::Millisecond, None))
        );
        assert_eq!(
            arrow_type(&column("geometry", "geometry")),
            Err("geometry".to_string())
        );
    }
}
