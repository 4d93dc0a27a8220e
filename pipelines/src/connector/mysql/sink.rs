//! Exactly-once upserts into a TiDB/MySQL serving table (the APP layer).
//!
//! ```text
//!   one MySQL transaction per commit:
//!     DELETE FROM app_t WHERE (k…) IN (…)                      keys a change deleted
//!     INSERT INTO app_t (…) VALUES (…), … ON DUPLICATE KEY UPDATE c = VALUES(c), …
//!     INSERT INTO strata_progress (pipeline, stream, part, `offset`, token) VALUES …   the source positions
//!       ON DUPLICATE KEY UPDATE `offset` = …, token = …                                  (and the state checkpoint id)
//!   COMMIT
//!   restart: SELECT `offset` FROM strata_progress WHERE pipeline = … ──▶ resume after it
//! ```
//!
//! A position is its number (`offset`) and the source's token, when it has one
//! (see [`crate::position`]); a progress table of an earlier Strata gets the
//! `token` column on first use. The rows and the positions they cover commit together, in the target's own
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
use crate::position::{Position, Positions};

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
            "CREATE TABLE IF NOT EXISTS {} (pipeline VARCHAR(255) NOT NULL, stream VARCHAR(255) NOT NULL, part INT NOT NULL, `offset` BIGINT NOT NULL, token MEDIUMBLOB NULL, PRIMARY KEY (pipeline, stream, part))",
            sink.progress_table()
        );
        sqlx::query(AssertSqlSafe(create))
            .execute(&sink.pool)
            .await
            .map_err(|err| sink.error(err))?;
        sink.add_token_column().await?;
        Ok(sink)
    }

    /// Gives a progress table created by an earlier Strata its `token` column.
    async fn add_token_column(&self) -> Result<()> {
        let has_token = sqlx::query(
            "SELECT 1 FROM information_schema.columns WHERE table_schema = ? AND table_name = 'strata_progress' AND column_name = 'token'",
        )
        .bind(&self.target.database)
        .fetch_optional(&self.pool)
        .await
        .map_err(|err| self.error(err))?
        .is_some();
        if !has_token {
            let alter = format!(
                "ALTER TABLE {} ADD COLUMN token MEDIUMBLOB NULL",
                self.progress_table()
            );
            match sqlx::query(AssertSqlSafe(alter)).execute(&self.pool).await {
                Ok(_) => {}
                // Another pipeline of the database added it first (ER_DUP_FIELDNAME).
                Err(sqlx::Error::Database(err)) if err.code().as_deref() == Some("42S21") => {}
                Err(err) => return Err(self.error(err)),
            }
        }
        Ok(())
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
    /// their key) and records `positions` and `state`, in one transaction.
    pub async fn commit(
        &mut self,
        batches: Vec<RecordBatch>,
        positions: &Positions,
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
        let state = state.map(Position::at);
        let progress: Vec<(&str, i32, &Position)> = positions
            .iter()
            .map(|((stream, split), position)| (stream.as_str(), *split, position))
            .chain(state.as_ref().map(|id| (STATE_STREAM, 0, id)))
            .collect();
        if !progress.is_empty() {
            let mut query: QueryBuilder<MySql> = QueryBuilder::new(format!(
                "INSERT INTO {} (pipeline, stream, part, `offset`, token) ",
                self.progress_table()
            ));
            query.push_values(&progress, |mut values, (stream, split, position)| {
                values
                    .push_bind(&self.pipeline)
                    .push_bind(*stream)
                    .push_bind(*split)
                    .push_bind(position.order)
                    .push_bind((!position.token.is_empty()).then_some(position.token.as_slice()));
            });
            query.push(
                " ON DUPLICATE KEY UPDATE `offset` = VALUES(`offset`), token = VALUES(token)",
            );
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
    /// The last position of `stream`/`split` this table has committed, if any.
    async fn committed_position(&self, stream: &str, split: i32) -> Result<Option<Position>> {
        let sql = format!(
            "SELECT `offset`, token FROM {} WHERE pipeline = ? AND stream = ? AND part = ?",
            self.progress_table()
        );
        let row = sqlx::query(AssertSqlSafe(sql))
            .bind(&self.pipeline)
            .bind(stream)
            .bind(split)
            .fetch_optional(&self.pool)
            .await
            .map_err(|err| self.error(err))?;
        let Some(row) = row else {
            return Ok(None);
        };
        let order = row.try_get::<i64, _>(0).map_err(|err| self.error(err))?;
        let token = row
            .try_get::<Option<Vec<u8>>, _>(1)
            .map_err(|err| self.error(err))?
            .unwrap_or_default();
        Ok(Some(Position { order, token }))
    }

    /// The id of the state checkpoint the last commit carried, if any.
    async fn committed_state(&self) -> Result<Option<i64>> {
        Ok(self
            .committed_position(STATE_STREAM, 0)
            .await?
            .map(|position| position.order))
    }

    async fn commit(
        &mut self,
        rows: Vec<RecordBatch>,
        positions: &Positions,
        state: Option<i64>,
    ) -> Result<Option<i64>> {
        MysqlSink::commit(self, rows, positions, state)
            .await
            .map(|()| None)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::Int64Array;
    use arrow::datatypes::{DataType, Field, Schema};
    use strata_tests::databases::MysqlDatabase;

    use super::*;
    use crate::sink::TargetSink;

    fn schema() -> SchemaRef {
        Arc::new(Schema::new(vec![Field::new("id", DataType::Int64, false)]))
    }

    async fn open(database: &MysqlDatabase) -> Box<dyn TargetSink> {
        let target = MysqlTarget {
            url: strata_tests::databases::mysql_server_url(),
            database: database.name.clone(),
            table: "t".to_string(),
        };
        Box::new(
            MysqlSink::open(target, schema(), vec!["id".to_string()], "p")
                .await
                .unwrap(),
        )
    }

    #[tokio::test]
    async fn a_mysql_target_keeps_positions_and_their_tokens_across_a_restart() {
        let database = MysqlDatabase::create("progress").await;
        database
            .execute("CREATE TABLE t (id BIGINT PRIMARY KEY)")
            .await;
        let rows =
            RecordBatch::try_new(schema(), vec![Arc::new(Int64Array::from(vec![1, 2]))]).unwrap();
        crate::sink::contract::keeps_positions(|| open(&database), vec![rows]).await;
    }

    #[tokio::test]
    async fn a_progress_table_of_an_earlier_version_gets_its_token_column() {
        let database = MysqlDatabase::create("progress_old").await;
        database
            .execute(
                "CREATE TABLE t (id BIGINT PRIMARY KEY); \
                 CREATE TABLE strata_progress (pipeline VARCHAR(255) NOT NULL, stream VARCHAR(255) NOT NULL, part INT NOT NULL, `offset` BIGINT NOT NULL, PRIMARY KEY (pipeline, stream, part)); \
                 INSERT INTO strata_progress VALUES ('p', 'orders', 0, 41), ('p', '_state', 0, 6)",
            )
            .await;
        let mut sink = open(&database).await;
        assert_eq!(
            sink.committed_position("orders", 0).await.unwrap(),
            Some(Position::at(41))
        );
        assert_eq!(sink.committed_state().await.unwrap(), Some(6));
        let at = Position {
            order: 42,
            token: b"mysql-bin.000002:4711".to_vec(),
        };
        let positions = Positions::from([(("orders".to_string(), 0), at.clone())]);
        sink.commit(Vec::new(), &positions, Some(7)).await.unwrap();
        assert_eq!(
            sink.committed_position("orders", 0).await.unwrap(),
            Some(at)
        );
    }
}
