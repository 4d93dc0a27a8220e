//! `INSERT INTO` a TiDB/MySQL table from a query: every row of the statement
//! in one MySQL transaction, all or nothing.
//!
//! ```text
//!   INSERT INTO shop.dim_users VALUES (…), (…)
//!     ──▶ rows (the table's types) ──▶ text values
//!     ──▶ BEGIN; INSERT INTO `db`.`users` (…) VALUES (…), … (500 rows a statement); COMMIT
//! ```
//!
//! A plain INSERT, as in Flink's JDBC sink without a primary key: a duplicate
//! key or a value the column cannot hold (the server runs in strict mode)
//! fails the statement and rolls every row of it back. Writes need a write
//! grant on the space.

use std::sync::Arc;

use arrow::array::Array;
use arrow::datatypes::{DataType, Schema, SchemaRef};
use arrow::error::ArrowError;
use arrow::record_batch::RecordBatch;
use arrow::util::display::{ArrayFormatter, FormatOptions};
use async_trait::async_trait;
use datafusion::common::DataFusionError;
use datafusion::datasource::sink::DataSink;
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::physical_plan::{DisplayAs, DisplayFormatType};
use futures::StreamExt;
use sqlx::mysql::MySqlPool;
use sqlx::query_builder::Separated;
use sqlx::{MySql, QueryBuilder};

use super::mysql::{MysqlTarget, quote};
use crate::error::CatalogError;

/// Rows per INSERT statement (well under MySQL's 65,535 placeholders).
pub const ROWS_PER_STATEMENT: usize = 500;

/// Writes INSERTed rows to a MySQL/TiDB table in one transaction.
pub struct MysqlSink {
    pub pool: MySqlPool,
    pub target: MysqlTarget,
    pub schema: SchemaRef,
}

impl std::fmt::Debug for MysqlSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MysqlSink")
            .field("target", &self.target)
            .finish()
    }
}

impl DisplayAs for MysqlSink {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "MysqlSink: table={}", self.target.table)
    }
}

#[async_trait]
impl DataSink for MysqlSink {
    fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    async fn write_all(
        &self,
        mut data: SendableRecordBatchStream,
        _context: &Arc<TaskContext>,
    ) -> datafusion::error::Result<u64> {
        let mut batches = Vec::new();
        while let Some(batch) = data.next().await {
            batches.push(batch?);
        }
        let failed = |source: sqlx::Error| {
            DataFusionError::External(Box::new(CatalogError::Mysql {
                context: format!(
                    "inserting into {} at {}",
                    self.target.table,
                    self.target.address()
                ),
                source,
            }))
        };
        let mut tx = self.pool.begin().await.map_err(failed)?;
        let mut written = 0u64;
        for batch in &batches {
            let values = text_values(batch)?;
            let rows: Vec<usize> = (0..batch.num_rows()).collect();
            for chunk in rows.chunks(ROWS_PER_STATEMENT) {
                let mut query = insert_statement(&self.target, &self.schema, &values, chunk);
                if let Err(err) = query.build().execute(&mut *tx).await {
                    // Rolled back here, so the connection goes back to the pool clean.
                    let _ = tx.rollback().await;
                    return Err(failed(err));
                }
                written += chunk.len() as u64;
            }
        }
        tx.commit().await.map_err(failed)?;
        Ok(written)
    }
}

/// `INSERT INTO target (every column) VALUES …` for `rows` of `values`.
pub fn insert_statement(
    target: &MysqlTarget,
    schema: &Schema,
    values: &[ColumnText],
    rows: &[usize],
) -> QueryBuilder<MySql> {
    let columns: Vec<String> = schema.fields().iter().map(|f| quote(f.name())).collect();
    let mut query = QueryBuilder::new(format!(
        "INSERT INTO {} ({}) ",
        target.quoted(),
        columns.join(", ")
    ));
    query.push_values(rows, |mut row_values, &row| {
        for column in values {
            column.push(&mut row_values, row);
        }
    });
    query
}

/// One column's values as the text MySQL reads back as the column's type;
/// `None` for NULL. Binary values travel as hex, which the server unhexes.
#[derive(Debug, Clone)]
pub struct ColumnText {
    pub binary: bool,
    pub values: Vec<Option<String>>,
}

impl ColumnText {
    /// Binds value `row` as the next item of `tuple`.
    pub fn push<Sep: std::fmt::Display>(&self, tuple: &mut Separated<'_, MySql, Sep>, row: usize) {
        let value = self.values[row].clone();
        if self.binary {
            tuple
                .push("UNHEX(")
                .push_bind_unseparated(value)
                .push_unseparated(")");
        } else {
            tuple.push_bind(value);
        }
    }
}

/// Every column of `rows` as [`ColumnText`].
pub fn text_values(rows: &RecordBatch) -> std::result::Result<Vec<ColumnText>, ArrowError> {
    let options = FormatOptions::default()
        .with_timestamp_format(Some("%Y-%m-%d %H:%M:%S%.f"))
        .with_datetime_format(Some("%Y-%m-%d %H:%M:%S%.f"));
    rows.columns()
        .iter()
        .map(|column| {
            let formatter = ArrayFormatter::try_new(column.as_ref(), &options)?;
            let values = (0..column.len())
                .map(|row| {
                    column.is_valid(row).then(|| {
                        let value = formatter.value(row).to_string();
                        match column.data_type() {
                            DataType::Boolean => {
                                if value == "true" { "1" } else { "0" }.to_string()
                            }
                            _ => value,
                        }
                    })
                })
                .collect();
            Ok(ColumnText {
                binary: matches!(
                    column.data_type(),
                    DataType::Binary | DataType::LargeBinary | DataType::BinaryView
                ),
                values,
            })
        })
        .collect()
}
