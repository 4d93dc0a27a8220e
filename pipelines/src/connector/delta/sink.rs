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
use crate::sink::{DELETE_MARKER, Offsets, WriteMode};

#[derive(Debug)]
pub struct DeltaSink {
    table: DeltaTable,
    location: String,
    app_prefix: String,
    schema: SchemaRef,
    mode: WriteMode,
}

impl DeltaSink {
    /// Opens the table at `location`, for the pipeline `pipeline`.
    pub async fn open(location: &str, pipeline: &str, mode: WriteMode) -> Result<Self> {
        let table = lake::open(location).await?;
        let schema = table
            .snapshot()
            .map_err(|source| delta_error(location, source))?
            .snapshot()
            .arrow_schema();
        Ok(Self {
            table,
            location: location.to_string(),
            app_prefix: format!("strata/{pipeline}"),
            schema,
            mode,
        })
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

    /// The last offset of `topic`/`partition` this table has committed, if any.
    pub async fn committed_offset(&self, topic: &str, partition: i32) -> Result<Option<i64>> {
        self.transaction_version(self.app_id(topic, partition))
            .await
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

    /// Writes `batches` (appended or upserted) with the offsets they cover and
    /// the state checkpoint id, in one Delta commit (a commit of the offsets
    /// alone when there are no rows). Returns the table version written.
    pub async fn commit(
        &mut self,
        batches: Vec<RecordBatch>,
        offsets: &Offsets,
        state: Option<i64>,
    ) -> Result<i64> {
        let batches: Vec<RecordBatch> = batches.into_iter().filter(|b| b.num_rows() > 0).collect();
        let deletes = crate::sink::delete_markers(&batches);
        let batches = batches
            .iter()
            .map(|batch| self.to_table_schema(batch))
            .collect::<Result<Vec<_>>>()?;
        let transactions = offsets
            .iter()
            .map(|((topic, partition), offset)| {
                Transaction::new(self.app_id(topic, *partition), *offset)
            })
            .chain(state.map(|id| Transaction::new(self.state_app_id(), id)))
            .collect();
        let properties = CommitProperties::default().with_application_transactions(transactions);
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
    async fn committed_offset(&self, stream: &str, partition: i32) -> Result<Option<i64>> {
        DeltaSink::committed_offset(self, stream, partition).await
    }

    async fn committed_state(&self) -> Result<Option<i64>> {
        DeltaSink::committed_state(self).await
    }

    async fn commit(
        &mut self,
        rows: Vec<RecordBatch>,
        offsets: &Offsets,
        state: Option<i64>,
    ) -> Result<Option<i64>> {
        DeltaSink::commit(self, rows, offsets, state)
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
