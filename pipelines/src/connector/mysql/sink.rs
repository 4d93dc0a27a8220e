//! Exactly-once upserts into a TiDB/MySQL serving table (the APP layer).
//!
//! ```text
//!   one MySQL transaction per commit:
//!     DELETE FROM app_t WHERE (k…) IN (…)                      keys a change deleted
//!     INSERT INTO app_t (…) VALUES (…), … ON DUPLICATE KEY UPDATE c = VALUES(c), …
//!     INSERT INTO strata_progress (pipeline, stream, part, `offset`) VALUES …   the source offsets
//!       ON DUPLICATE KEY UPDATE `offset` = VALUES(`offset`)                     (and the state checkpoint id)
//!   COMMIT
//!   restart: SELECT `offset` FROM strata_progress WHERE pipeline = … ──▶ resume after it
//! ```
//!
//! The rows and the offsets they cover commit together, in the target's own
//! database (`strata_progress` is created there on first use), so a replay
//! after a crash neither loses nor repeats a change. Values travel as text and
//! MySQL converts them to the columns' types; the table must have the primary
//! key the catalog declares.

use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use sqlx::mysql::MySqlPool;
use sqlx::{AssertSqlSafe, MySql, QueryBuilder, Row};
use strata_catalog::connectors::mysql::{self as catalog_mysql, MysqlTarget, quote};
use strata_catalog::connectors::mysql_sink::{ROWS_PER_STATEMENT, insert_statement, text_values};

use crate::error::{PipelineError, Result};
use crate::sink::Offsets;

/// The app id under which a pipeline's state checkpoint id is recorded.
const STATE_STREAM: &str = "_state";

#[derive(Debug)]
pub struct MysqlSink {
    pool: MySqlPool,
    target: MysqlTarget,
    schema: SchemaRef,
    keys: Vec<String>,
    pipeline: String,
}

impl MysqlSink {
    /// Connects, checks the table, and creates the progress table if needed.
    pub async fn open(
        target: MysqlTarget,
        schema: SchemaRef,
        keys: Vec<String>,
        pipeline: &str,
    ) -> Result<Self> {
        let pool = catalog_mysql::connect(&target.url).await?;
        catalog_mysql::verify_table(&pool, &target, &schema).await?;
        let sink = Self {
            pool,
            target,
            schema,
            keys,
            pipeline: pipeline.to_string(),
        };
        let create = format!(
            "CREATE TABLE IF NOT EXISTS {} (pipeline VARCHAR(255) NOT NULL, stream VARCHAR(255) NOT NULL, part INT NOT NULL, `offset` BIGINT NOT NULL, PRIMARY KEY (pipeline, stream, part))",
            sink.progress_table()
        );
        sqlx::query(AssertSqlSafe(create))
            .execute(&sink.pool)
            .await
            .map_err(|err| sink.error(err))?;
        Ok(sink)
    }

    fn progress_table(&self) -> String {
        format!("{}.`strata_progress`", quote(&self.target.database))
    }

    fn table(&self) -> String {
        self.target.quoted()
    }

    fn error(&self, err: sqlx::Error) -> PipelineError {
        PipelineError::Sink {
            what: format!(
                "MySQL/TiDB table {}.{} at {}",
                self.target.database,
                self.target.table,
                self.target.address()
            ),
            cause: err.to_string(),
        }
    }

    /// Upserts and deletes `batches` (rows marked with [`crate::sink::DELETE_MARKER`] delete
    /// their key) and records `offsets` and `state`, in one transaction.
    pub async fn commit(
        &mut self,
        batches: Vec<RecordBatch>,
        offsets: &Offsets,
        state: Option<i64>,
    ) -> Result<()> {
        let (batches, deletes) = crate::sink::changes(batches, &self.schema)?;
        let mut tx = self.pool.begin().await.map_err(|err| self.error(err))?;
        if !batches.is_empty() {
            let (rows, deletes) =
                crate::sink::last_change_per_key(&self.schema, &batches, &deletes, &self.keys)
                    .map_err(|message| {
                        PipelineError::Evaluation(format!("{message} of {}", self.target.table))
                    })?;
            let text = text_values(&rows)?;
            let (removed, kept): (Vec<usize>, Vec<usize>) =
                (0..rows.num_rows()).partition(|&row| deletes.value(row));
            let key_indices: Vec<usize> = self
                .keys
                .iter()
                .filter_map(|key| self.schema.index_of(key).ok())
                .collect();
            for chunk in removed.chunks(ROWS_PER_STATEMENT) {
                let mut query: QueryBuilder<MySql> = QueryBuilder::new(format!(
                    "DELETE FROM {} WHERE ({}) IN",
                    self.table(),
                    self.keys
                        .iter()
                        .map(|k| quote(k))
                        .collect::<Vec<_>>()
                        .join(", ")
                ));
                query.push_tuples(chunk, |mut tuple, &row| {
                    for &column in &key_indices {
                        text[column].push(&mut tuple, row);
                    }
                });
                query
                    .build()
                    .execute(&mut *tx)
                    .await
                    .map_err(|err| self.error(err))?;
            }
            let columns: Vec<String> = self
                .schema
                .fields()
                .iter()
                .map(|f| quote(f.name()))
                .collect();
            for chunk in kept.chunks(ROWS_PER_STATEMENT) {
                let mut query = insert_statement(&self.target, &self.schema, &text, chunk);
                query.push(format!(
                    " ON DUPLICATE KEY UPDATE {}",
                    columns
                        .iter()
                        .map(|c| format!("{c} = VALUES({c})"))
                        .collect::<Vec<_>>()
                        .join(", ")
                ));
                query
                    .build()
                    .execute(&mut *tx)
                    .await
                    .map_err(|err| self.error(err))?;
            }
        }
        let progress: Vec<(String, i32, i64)> = offsets
            .iter()
            .map(|((stream, partition), offset)| (stream.clone(), *partition, *offset))
            .chain(state.map(|id| (STATE_STREAM.to_string(), 0, id)))
            .collect();
        if !progress.is_empty() {
            let mut query: QueryBuilder<MySql> = QueryBuilder::new(format!(
                "INSERT INTO {} (pipeline, stream, part, `offset`) ",
                self.progress_table()
            ));
            query.push_values(&progress, |mut values, (stream, partition, offset)| {
                values
                    .push_bind(&self.pipeline)
                    .push_bind(stream)
                    .push_bind(*partition)
                    .push_bind(*offset);
            });
            query.push(" ON DUPLICATE KEY UPDATE `offset` = VALUES(`offset`)");
            query
                .build()
                .execute(&mut *tx)
                .await
                .map_err(|err| self.error(err))?;
        }
        tx.commit().await.map_err(|err| self.error(err))
    }
}

#[async_trait::async_trait]
impl crate::sink::TargetSink for MysqlSink {
    /// The last offset of `stream`/`partition` this table has committed, if any.
    async fn committed_offset(&self, stream: &str, partition: i32) -> Result<Option<i64>> {
        let sql = format!(
            "SELECT `offset` FROM {} WHERE pipeline = ? AND stream = ? AND part = ?",
            self.progress_table()
        );
        let row = sqlx::query(AssertSqlSafe(sql))
            .bind(&self.pipeline)
            .bind(stream)
            .bind(partition)
            .fetch_optional(&self.pool)
            .await
            .map_err(|err| self.error(err))?;
        row.map(|row| row.try_get::<i64, _>(0))
            .transpose()
            .map_err(|err| self.error(err))
    }

    /// The id of the state checkpoint the last commit carried, if any.
    async fn committed_state(&self) -> Result<Option<i64>> {
        self.committed_offset(STATE_STREAM, 0).await
    }

    async fn commit(
        &mut self,
        rows: Vec<RecordBatch>,
        offsets: &Offsets,
        state: Option<i64>,
    ) -> Result<Option<i64>> {
        MysqlSink::commit(self, rows, offsets, state)
            .await
            .map(|()| None)
    }
}
