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
//! Commits are batched by the pipeline (one per commit interval), and
//! deltalake writes a log checkpoint every 100 commits so the log stays quick to open.

use std::collections::BTreeMap;

use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use deltalake::DeltaTable;
use deltalake::kernel::Transaction;
use deltalake::kernel::transaction::{CommitBuilder, CommitProperties};
use deltalake::protocol::{DeltaOperation, SaveMode};
use strata_catalog::connectors::delta as lake;

use crate::error::{PipelineError, Result};

/// The source coordinates a commit covers: (topic, partition) → last offset.
pub type Offsets = BTreeMap<(String, i32), i64>;

#[derive(Debug)]
pub struct DeltaSink {
    table: DeltaTable,
    location: String,
    app_prefix: String,
    schema: SchemaRef,
}

impl DeltaSink {
    /// Opens the table at `location`, for the pipeline `pipeline`.
    pub async fn open(location: &str, pipeline: &str) -> Result<Self> {
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
        })
    }

    pub fn location(&self) -> &str {
        &self.location
    }

    fn app_id(&self, topic: &str, partition: i32) -> String {
        format!("{}/{topic}/{partition}", self.app_prefix)
    }

    /// The last offset of `topic`/`partition` this table has committed, if any.
    pub async fn committed_offset(&self, topic: &str, partition: i32) -> Result<Option<i64>> {
        let snapshot = self
            .table
            .snapshot()
            .map_err(|source| delta_error(&self.location, source))?;
        snapshot
            .transaction_version(
                self.table.log_store().as_ref(),
                self.app_id(topic, partition),
            )
            .await
            .map_err(|source| delta_error(&self.location, source))
    }

    /// Appends `batches` with the offsets they cover, in one Delta commit (a
    /// commit of the offsets alone when there are no rows). Returns the table
    /// version written.
    pub async fn commit(&mut self, batches: Vec<RecordBatch>, offsets: &Offsets) -> Result<i64> {
        let batches = batches
            .into_iter()
            .filter(|b| b.num_rows() > 0)
            .map(|batch| self.to_table_schema(&batch))
            .collect::<Result<Vec<_>>>()?;
        let transactions = offsets
            .iter()
            .map(|((topic, partition), offset)| {
                Transaction::new(self.app_id(topic, *partition), *offset)
            })
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
        self.table = self
            .table
            .clone()
            .write(batches)
            .with_commit_properties(properties)
            .await
            .map_err(|source| delta_error(&self.location, source))?;
        Ok(self.table.version().unwrap_or(0) as i64)
    }

    /// Casts a batch to the table's own types (Delta keeps timestamps in µs, for example).
    fn to_table_schema(&self, batch: &RecordBatch) -> Result<RecordBatch> {
        let columns = crate::transform::columns_by_name(batch, &self.schema, |name| {
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
