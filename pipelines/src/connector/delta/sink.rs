//! Exactly-once appends to a Delta table.
//!
//! Every commit carries, in the same Delta transaction as its data files, one
//! `txn` action per source partition it covers: `appId = strata/<pipeline>/<topic>/<partition>`
//! and `version = the last offset included`. After a crash the pipeline reads
//! these back and resumes right after them, so a replay never appends twice.
//!
//! ```text
//!   commit N:   add(part-…parquet) + txn(strata/p/orders/0, 41) + txn(strata/p/orders/1, 17)
//!   crash, restart:  read txn versions ──▶ resume p0 @ 42, p1 @ 18
//! ```
//!
//! A position's token (see [`crate::position`]), when a source has one, cannot
//! live in a `txn` action, which holds a number: every split's token is written
//! to `_strata_state/<pipeline>/_positions/<n>.bin` before the commit, whose
//! `txn(strata/p/_tokens, n)` names the file, so that a restart reads the
//! tokens that go with the committed numbers (and a log's clean-up cannot take
//! them away).
//!
//! Keyed results (a GROUP BY without a window, windows with allowed lateness)
//! are upserted with a Delta MERGE on the target's primary key, in the same
//! single commit as the `txn` actions; replaying a merge is harmless.
//!
//! Commits are batched by the pipeline (one per commit interval), and
//! deltalake writes a log checkpoint every 100 commits so the log stays quick to open.

use std::sync::Arc;

use arrow::array::BooleanArray;
use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use deltalake::DeltaTable;
use deltalake::kernel::Transaction;
use deltalake::kernel::transaction::{CommitBuilder, CommitProperties};
use deltalake::protocol::{DeltaOperation, SaveMode};
use strata_catalog::connectors::delta as lake;

use crate::error::{PipelineError, Result};
use crate::position::{Position, Positions};
use crate::sink::{DELETE_MARKER, WriteMode};
use crate::state::{ByteReader, ByteWriter};

#[derive(Debug)]
pub struct DeltaSink {
    table: DeltaTable,
    location: String,
    app_prefix: String,
    schema: SchemaRef,
    mode: WriteMode,
    /// Every split's token as of the last commit, by its `txn` app id, and
    /// the sequence number of the file that holds them.
    tokens: Option<(i64, Tokens)>,
    /// Where the files of tokens go.
    token_files: crate::state::StateStore,
    /// The columns that carry the pipeline's event time, recorded with the
    /// watermark of each commit for pipelines that read the table as a stream.
    event_time_columns: Vec<String>,
    /// The watermark the next commit is made at.
    watermark: Option<i64>,
    /// The pipeline writing, named with the watermark.
    pipeline: String,
}

/// Tokens by the `txn` app id of their split.
type Tokens = std::collections::BTreeMap<String, Vec<u8>>;

impl DeltaSink {
    /// Opens the table at `location`, for the pipeline `pipeline`.
    pub async fn open(location: &str, pipeline: &str, mode: WriteMode) -> Result<Self> {
        let table = lake::open(location).await?;
        let schema = table
            .snapshot()
            .map_err(|source| delta_error(location, source))?
            .snapshot()
            .arrow_schema();
        let mut sink = Self {
            location: location.to_string(),
            app_prefix: format!("strata/{pipeline}"),
            schema,
            mode,
            tokens: None,
            token_files: crate::state::StateStore::new(
                table.object_store(),
                location,
                &format!("{pipeline}/_positions"),
            ),
            table,
            event_time_columns: Vec::new(),
            watermark: None,
            pipeline: pipeline.to_string(),
        };
        sink.tokens = sink.committed_tokens().await?;
        Ok(sink)
    }

    /// Records, with each commit's watermark, that `columns` carry the event time.
    pub fn with_event_time_columns(mut self, columns: Vec<String>) -> Self {
        self.event_time_columns = columns;
        self
    }

    fn tokens_app_id(&self) -> String {
        format!("{}/_tokens", self.app_prefix)
    }

    /// The tokens the last commit named: the file of the sequence number
    /// `txn(…/_tokens)` holds.
    async fn committed_tokens(&self) -> Result<Option<(i64, Tokens)>> {
        let Some(sequence) = self.transaction_version(self.tokens_app_id()).await? else {
            return Ok(None);
        };
        let bytes = self.token_files.read(sequence).await?;
        let mut input = ByteReader::new(&bytes);
        let mut tokens = Tokens::new();
        for _ in 0..input.u64()? {
            let app_id = String::from_utf8_lossy(input.bytes()?).into_owned();
            tokens.insert(app_id, input.bytes()?.to_vec());
        }
        if !input.is_done() {
            return Err(input.corrupt("bytes left over after the tokens"));
        }
        Ok(Some((sequence, tokens)))
    }

    /// Where the pipeline's operator state is checkpointed.
    pub fn state_store(&self, pipeline: &str) -> crate::state::StateStore {
        crate::state::StateStore::new(self.table.object_store(), &self.location, pipeline)
    }

    fn state_app_id(&self) -> String {
        format!("{}/_state", self.app_prefix)
    }

    /// The id of the state checkpoint the last commit carried, if any.
    pub async fn committed_state(&self) -> Result<Option<i64>> {
        self.transaction_version(self.state_app_id()).await
    }

    pub fn location(&self) -> &str {
        &self.location
    }

    /// The table's version as this sink last saw it.
    pub fn version(&self) -> i64 {
        self.table.version().unwrap_or(0) as i64
    }

    fn app_id(&self, topic: &str, partition: i32) -> String {
        format!("{}/{topic}/{partition}", self.app_prefix)
    }

    /// The last position of `stream`/`split` this table has committed, if any.
    pub async fn committed_position(&self, stream: &str, split: i32) -> Result<Option<Position>> {
        let app_id = self.app_id(stream, split);
        let Some(order) = self.transaction_version(app_id.clone()).await? else {
            return Ok(None);
        };
        let token = self
            .tokens
            .as_ref()
            .and_then(|(_, tokens)| tokens.get(&app_id))
            .cloned()
            .unwrap_or_default();
        Ok(Some(Position { order, token }))
    }

    async fn transaction_version(&self, app_id: String) -> Result<Option<i64>> {
        let snapshot = self
            .table
            .snapshot()
            .map_err(|source| delta_error(&self.location, source))?;
        snapshot
            .transaction_version(self.table.log_store().as_ref(), app_id)
            .await
            .map_err(|source| delta_error(&self.location, source))
    }

    /// Writes `batches` (appended or upserted) with the positions they cover and
    /// the state checkpoint id, in one Delta commit (a commit of the positions
    /// alone when there are no rows). Returns the table version written.
    pub async fn commit(
        &mut self,
        batches: Vec<RecordBatch>,
        positions: &Positions,
        state: Option<i64>,
    ) -> Result<i64> {
        let batches: Vec<RecordBatch> = batches.into_iter().filter(|b| b.num_rows() > 0).collect();
        let deletes = crate::sink::delete_markers(&batches);
        let batches = batches
            .iter()
            .map(|batch| self.to_table_schema(batch))
            .collect::<Result<Vec<_>>>()?;
        let mut transactions: Vec<Transaction> = positions
            .iter()
            .map(|((stream, split), position)| {
                Transaction::new(self.app_id(stream, *split), position.order)
            })
            .chain(state.map(|id| Transaction::new(self.state_app_id(), id)))
            .collect();
        let tokens = self.tokens_after(positions);
        if let Some((sequence, tokens)) = &tokens {
            let mut out = ByteWriter::default();
            out.u64(tokens.len() as u64);
            for (app_id, token) in tokens {
                out.bytes(app_id.as_bytes());
                out.bytes(token);
            }
            self.token_files.write(*sequence, out.bytes).await?;
            transactions.push(Transaction::new(self.tokens_app_id(), *sequence));
        }
        let mut properties =
            CommitProperties::default().with_application_transactions(transactions);
        if let (Some(ms), false) = (self.watermark, self.event_time_columns.is_empty()) {
            let carried = crate::source::reader::CarriedWatermark {
                ms,
                columns: self.event_time_columns.clone(),
                writer: self.pipeline.clone(),
            };
            let recorded = serde_json::to_value(carried)
                .map_err(|err| PipelineError::State(format!("the commit's watermark: {err}")))?;
            properties =
                properties.with_metadata([(super::source::WATERMARK_INFO.to_string(), recorded)]);
        }
        let version = self.write(batches, deletes, properties).await?;
        if let Some((sequence, _)) = &tokens {
            self.token_files.forget_before(*sequence).await;
            self.tokens = tokens;
        }
        Ok(version)
    }

    /// Every split's token after a commit of `positions`, under the next
    /// sequence number; `None` while no split has had a token.
    fn tokens_after(&self, positions: &Positions) -> Option<(i64, Tokens)> {
        let (sequence, mut tokens) = self.tokens.clone().unwrap_or_default();
        for ((stream, split), position) in positions {
            let app_id = self.app_id(stream, *split);
            if !position.token.is_empty() || tokens.contains_key(&app_id) {
                tokens.insert(app_id, position.token.clone());
            }
        }
        (!tokens.is_empty()).then_some((sequence + 1, tokens))
    }

    /// One Delta commit of `batches` with `properties`; the version written.
    async fn write(
        &mut self,
        batches: Vec<RecordBatch>,
        deletes: Vec<BooleanArray>,
        properties: CommitProperties,
    ) -> Result<i64> {
        if batches.is_empty() {
            // No rows (all filtered out or quarantined): record the progress alone.
            let snapshot = self
                .table
                .snapshot()
                .map_err(|source| delta_error(&self.location, source))?;
            CommitBuilder::from(properties)
                .build(
                    Some(snapshot),
                    self.table.log_store(),
                    DeltaOperation::Write {
                        mode: SaveMode::Append,
                        partition_by: None,
                        predicate: None,
                    },
                )
                .await
                .map_err(|source| delta_error(&self.location, source))?;
            self.table
                .update_state()
                .await
                .map_err(|source| delta_error(&self.location, source))?;
            return Ok(self.table.version().unwrap_or(0) as i64);
        }
        self.table = match &self.mode {
            WriteMode::Append => self
                .table
                .clone()
                .write(batches)
                .with_commit_properties(properties)
                .await
                .map_err(|source| delta_error(&self.location, source))?,
            WriteMode::Upsert(keys) => self.merge(batches, deletes, keys, properties).await?,
        };
        Ok(self.table.version().unwrap_or(0) as i64)
    }

    /// Upserts `batches` by `keys` (deleting the keys of rows marked in `deletes`);
    /// when a key changes more than once, its last change wins.
    async fn merge(
        &self,
        batches: Vec<RecordBatch>,
        deletes: Vec<BooleanArray>,
        keys: &[String],
        properties: CommitProperties,
    ) -> Result<DeltaTable> {
        let (rows, deletes) =
            crate::sink::last_change_per_key(&self.schema, &batches, &deletes, keys).map_err(
                |message| PipelineError::Evaluation(format!("{message} of {}", self.location)),
            )?;
        let mut columns = rows.columns().to_vec();
        columns.push(Arc::new(deletes));
        let mut fields: Vec<arrow::datatypes::FieldRef> =
            self.schema.fields().iter().cloned().collect();
        fields.push(Arc::new(arrow::datatypes::Field::new(
            DELETE_MARKER,
            arrow::datatypes::DataType::Boolean,
            false,
        )));
        let changes =
            RecordBatch::try_new(Arc::new(arrow::datatypes::Schema::new(fields)), columns)?;
        let source = datafusion::prelude::SessionContext::new()
            .read_batch(changes)
            .map_err(|err| PipelineError::Evaluation(err.to_string()))?;
        let delete = format!("s.`{DELETE_MARKER}`");
        let keep = format!("NOT s.`{DELETE_MARKER}`");
        let predicate = keys
            .iter()
            .map(|key| format!("(t.`{key}` IS NOT DISTINCT FROM s.`{key}`)"))
            .collect::<Vec<_>>()
            .join(" AND ");
        let columns: Vec<String> = self
            .schema
            .fields()
            .iter()
            .map(|f| f.name().clone())
            .collect();
        let (table, _metrics) = self
            .table
            .clone()
            .merge(source, predicate)
            .with_source_alias("s")
            .with_target_alias("t")
            .with_commit_properties(properties)
            .when_matched_delete(|matched| matched.predicate(delete.clone()))
            .and_then(|merge| {
                merge.when_matched_update(|update| {
                    columns
                        .iter()
                        .fold(update.predicate(keep.clone()), |update, column| {
                            update.update(format!("`{column}`"), format!("s.`{column}`"))
                        })
                })
            })
            .and_then(|merge| {
                merge.when_not_matched_insert(|insert| {
                    columns
                        .iter()
                        .fold(insert.predicate(keep.clone()), |insert, column| {
                            insert.set(format!("`{column}`"), format!("s.`{column}`"))
                        })
                })
            })
            .map_err(|source| delta_error(&self.location, source))?
            .await
            .map_err(|source| delta_error(&self.location, source))?;
        Ok(table)
    }

    /// Compacts the table's small files and checkpoints its log, then carries on
    /// from the compacted version. Rows do not change, so readers following the
    /// log skip the commit.
    /// How many data files the table's current version holds.
    pub fn files(&self) -> Option<u64> {
        self.table
            .snapshot()
            .ok()
            .map(|state| state.log_data().num_files() as u64)
    }

    pub async fn compact(&mut self) -> Result<()> {
        lake::optimize(&self.location).await?;
        self.table
            .update_state()
            .await
            .map_err(|source| delta_error(&self.location, source))
    }

    /// Casts a batch to the table's own types (Delta keeps timestamps in µs, for example).
    fn to_table_schema(&self, batch: &RecordBatch) -> Result<RecordBatch> {
        let columns = crate::batch::columns_by_name(batch, &self.schema, |name| {
            format!(
                "the Delta table at {} has a column {name} the pipeline does not produce",
                self.location
            )
        })?;
        Ok(RecordBatch::try_new(self.schema.clone(), columns)?)
    }
}

fn delta_error(location: &str, source: deltalake::DeltaTableError) -> PipelineError {
    PipelineError::Catalog(Box::new(strata_catalog::CatalogError::Delta {
        location: location.to_string(),
        source,
    }))
}

#[async_trait::async_trait]
impl crate::sink::TargetSink for DeltaSink {
    async fn committed_position(&self, stream: &str, split: i32) -> Result<Option<Position>> {
        DeltaSink::committed_position(self, stream, split).await
    }

    async fn committed_state(&self) -> Result<Option<i64>> {
        DeltaSink::committed_state(self).await
    }

    fn carry_watermark(&mut self, watermark: Option<i64>) {
        self.watermark = watermark;
    }

    async fn commit(
        &mut self,
        rows: Vec<RecordBatch>,
        positions: &Positions,
        state: Option<i64>,
    ) -> Result<Option<i64>> {
        DeltaSink::commit(self, rows, positions, state)
            .await
            .map(Some)
    }

    fn files(&self) -> Option<u64> {
        DeltaSink::files(self)
    }

    async fn compact(&mut self) -> Result<()> {
        DeltaSink::compact(self).await
    }

    fn state_store(&self, pipeline: &str) -> Option<crate::state::StateStore> {
        Some(DeltaSink::state_store(self, pipeline))
    }

    fn version(&self) -> Option<i64> {
        Some(DeltaSink::version(self))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::Int64Array;
    use arrow::datatypes::{DataType, Field, Schema};
    use arrow::record_batch::RecordBatch;

    use super::*;
    use crate::sink::TargetSink;

    fn ids(values: &[i64]) -> RecordBatch {
        let schema = Arc::new(Schema::new(vec![Field::new("id", DataType::Int64, false)]));
        RecordBatch::try_new(schema, vec![Arc::new(Int64Array::from(values.to_vec()))]).unwrap()
    }

    async fn open(location: &str) -> Box<dyn TargetSink> {
        Box::new(
            DeltaSink::open(location, "p", WriteMode::Append)
                .await
                .unwrap(),
        )
    }

    async fn created(dir: &tempfile::TempDir) -> String {
        let location = dir.path().join("t").to_str().unwrap().to_string();
        lake::create(&location, "t", &ids(&[]).schema(), &[])
            .await
            .unwrap();
        location
    }

    #[tokio::test]
    async fn a_delta_target_keeps_positions_and_their_tokens_across_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let location = created(&dir).await;
        crate::sink::contract::keeps_positions(|| open(&location), vec![ids(&[1, 2])]).await;
    }

    #[tokio::test]
    async fn tokens_outlive_a_compaction_and_a_log_clean_up_and_positions_without_tokens_write_none()
     {
        let dir = tempfile::tempdir().unwrap();
        let location = created(&dir).await;
        let mut sink = open(&location).await;
        let split = ("orders".to_string(), 0);
        sink.commit(
            vec![ids(&[1])],
            &Positions::from([(split.clone(), Position::at(5))]),
            None,
        )
        .await
        .unwrap();
        let log = std::fs::read_dir(dir.path().join("t/_delta_log"))
            .unwrap()
            .map(|entry| std::fs::read_to_string(entry.unwrap().path()).unwrap_or_default())
            .collect::<Vec<_>>()
            .join("\n");
        assert!(log.contains("strata/p/orders/0"), "{log}");
        assert!(!log.contains("strata/p/_tokens"), "{log}");
        let binlog = ("binlog/shop.orders".to_string(), 0);
        let at = Position {
            order: 3,
            token: b"gtid:1-100".to_vec(),
        };
        sink.commit(
            vec![ids(&[2])],
            &Positions::from([(binlog.clone(), at.clone())]),
            None,
        )
        .await
        .unwrap();
        let later = Position {
            order: 4,
            token: b"gtid:1-101".to_vec(),
        };
        sink.commit(
            Vec::new(),
            &Positions::from([(binlog.clone(), later.clone())]),
            None,
        )
        .await
        .unwrap();
        drop(sink);
        lake::optimize(&location).await.unwrap();
        // The log is checkpointed and its commits cleaned up: the tokens stay.
        let table = lake::open(&location).await.unwrap();
        deltalake::checkpoints::create_checkpoint(&table, None)
            .await
            .unwrap();
        for entry in std::fs::read_dir(dir.path().join("t/_delta_log")).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "json") {
                std::fs::remove_file(path).unwrap();
            }
        }
        let sink = open(&location).await;
        assert_eq!(
            sink.committed_position(&binlog.0, binlog.1).await.unwrap(),
            Some(later)
        );
        assert_eq!(
            sink.committed_position(&split.0, split.1).await.unwrap(),
            Some(Position::at(5))
        );
        let files: Vec<String> = std::fs::read_dir(dir.path().join("t/_strata_state/p/_positions"))
            .unwrap()
            .map(|entry| entry.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(files.len(), 1, "one file of tokens, the last: {files:?}");
    }
}
