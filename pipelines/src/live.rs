//! The realtime view of a Delta table a pipeline writes: its last committed
//! version plus what the pipeline has produced since, as one consistent cut.
//!
//! ```text
//!   task:    rows ─▶ buffered ──commit starts──▶ in flight ──lands as version v──▶ Delta@v
//!            open windows ─▶ provisional (recomputed while someone reads the view)
//!   reader:  lock { v, in flight, buffered, provisional } ─▶ Delta@v ∪ those rows
//! ```
//!
//! A commit's landing moves `v` and drops its rows from "in flight" under the
//! same lock a reader takes, so each row is seen once: in Delta@v or among
//! the uncommitted rows, never both and never neither. For a keyed (upsert)
//! table the uncommitted rows replace the committed rows of their key, and a
//! marked delete removes it. Rows of windows still open are marked
//! `_provisional = true`; everything else is `false`.
//!
//! Subscribers get the same cut and then every change after it, in order
//! ([`LiveTable::subscribe`]): the rows the pipeline produces (each once),
//! the open windows' values as they are recomputed, and each commit.

use std::collections::{HashSet, VecDeque};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};

use arrow::array::{BooleanArray, RecordBatch};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use arrow::row::{OwnedRow, RowConverter, SortField};
use async_trait::async_trait;
use datafusion::catalog::{Session, TableProvider};
use datafusion::common::ScalarValue;
use datafusion::datasource::TableType;
use datafusion::datasource::memory::MemorySourceConfig;
use datafusion::error::{DataFusionError, Result as DfResult};
use datafusion::logical_expr::{Expr, TableProviderFilterPushDown};
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_expr::expressions::{Column, Literal};
use datafusion::physical_plan::projection::ProjectionExec;
use datafusion::physical_plan::union::UnionExec;
use datafusion::physical_plan::{ExecutionPlan, collect};
use strata_catalog::connectors::delta::{self as lake, AsOf};

use crate::error::Result;
use crate::sink::{changes, last_change_per_key};
use crate::watermark::now_ms;

/// The column that tells rows of open windows from final rows.
pub const PROVISIONAL: &str = "_provisional";

/// How long after a read the task keeps the open windows' values current.
const WANTED_FOR_MS: i64 = 30_000;

/// What a pipeline has produced that its target's committed version lacks.
#[derive(Debug, Default)]
struct Uncommitted {
    /// The version the rows build on; `None` until the pipeline has opened its target.
    version: Option<i64>,
    /// Rows of commits started but not landed, oldest first.
    in_flight: VecDeque<Vec<RecordBatch>>,
    /// Rows not yet handed to a commit (each sent to subscribers as it came).
    buffered: Vec<RecordBatch>,
    /// The open windows' current values.
    provisional: Vec<RecordBatch>,
}

/// Where the target is and how its rows are keyed.
#[derive(Debug, Clone)]
struct Target {
    location: String,
    /// The primary key, for a table the pipeline upserts; empty for appends.
    key: Vec<String>,
    /// The pipeline aggregates, so it has open windows (or changed groups) to show.
    aggregates: bool,
}

/// What subscribers of a live table receive after their snapshot, in order.
#[derive(Debug, Clone)]
pub enum LiveChange {
    /// Rows the pipeline produced (a keyed table's carry delete markers).
    Rows(Vec<RecordBatch>),
    /// The open windows' values now, replacing the ones sent before.
    Provisional(Vec<RecordBatch>),
    /// A commit landed as this version of the Delta table.
    Committed(i64),
    /// The pipeline stopped; the table is only its Delta table now.
    Ended,
}

/// How many changes a slow subscriber may fall behind before it must start over.
const SUBSCRIBER_BACKLOG: usize = 4096;

/// The realtime view of one target table (see the module docs).
#[derive(Debug)]
pub struct LiveTable {
    target: Mutex<Option<Target>>,
    rows: Mutex<Uncommitted>,
    /// Until when (ms since the epoch) the open windows' values are wanted.
    wanted_until_ms: AtomicI64,
    changes: tokio::sync::broadcast::Sender<Arc<LiveChange>>,
    committed: CommittedCache,
    /// Wakes the pipeline to compute the open windows for a reader that has just come.
    asked: tokio::sync::Notify,
    /// Counts the times the open windows' values were set.
    provisional_sets: tokio::sync::watch::Sender<u64>,
}

impl Default for LiveTable {
    fn default() -> Self {
        Self {
            target: Mutex::default(),
            rows: Mutex::default(),
            wanted_until_ms: AtomicI64::default(),
            changes: tokio::sync::broadcast::channel(SUBSCRIBER_BACKLOG).0,
            committed: CommittedCache::default(),
            asked: tokio::sync::Notify::new(),
            provisional_sets: tokio::sync::watch::channel(0).0,
        }
    }
}

/// How long a reader that has just come waits for the open windows' values.
const FIRST_PROVISIONAL_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

/// The Delta table as last read for a cut, brought forward to the next
/// cut's version by reading only the commits since (not the whole log).
type CommittedCache = Arc<tokio::sync::Mutex<Option<deltalake::DeltaTable>>>;

/// One consistent cut of a live table.
#[derive(Debug, Clone)]
pub struct LiveSnapshot {
    pub location: String,
    pub key: Vec<String>,
    pub version: i64,
    /// Uncommitted rows in the order they were produced (with delete markers).
    pub rows: Vec<RecordBatch>,
    pub provisional: Vec<RecordBatch>,
    committed: CommittedCache,
}

impl LiveTable {
    /// The pipeline has opened its Delta target at `version`.
    pub fn begin(&self, location: &str, key: Vec<String>, aggregates: bool, version: i64) {
        *self.target.lock().expect("not poisoned") = Some(Target {
            location: location.to_string(),
            key,
            aggregates,
        });
        *self.rows.lock().expect("not poisoned") = Uncommitted {
            version: Some(version),
            ..Uncommitted::default()
        };
    }

    /// The pipeline has stopped: readers go to storage again.
    pub fn end(&self) {
        *self.target.lock().expect("not poisoned") = None;
        *self.rows.lock().expect("not poisoned") = Uncommitted::default();
        self.send(LiveChange::Ended);
    }

    fn send(&self, change: LiveChange) {
        // No subscriber is no error.
        let _ = self.changes.send(Arc::new(change));
    }

    /// The rows read since the last commit started (which only grow until it).
    pub fn set_buffered(&self, rows: &[RecordBatch]) {
        let mut state = self.rows.lock().expect("not poisoned");
        if state.version.is_none() || rows.len() <= state.buffered.len() {
            return;
        }
        let fresh = rows[state.buffered.len()..].to_vec();
        state.buffered.extend(fresh.iter().cloned());
        self.send(LiveChange::Rows(fresh));
    }

    /// The open windows' current values.
    pub fn set_provisional(&self, rows: Vec<RecordBatch>) {
        let mut state = self.rows.lock().expect("not poisoned");
        if state.version.is_none() {
            return;
        }
        self.send(LiveChange::Provisional(rows.clone()));
        state.provisional = rows;
        self.provisional_sets.send_modify(|n| *n += 1);
    }

    /// A commit of `rows` has started; the buffer is empty again, and the
    /// open windows are now `provisional` (the ones it emits are not), when
    /// someone reads them.
    pub fn commit_started(&self, rows: &[RecordBatch], provisional: Option<Vec<RecordBatch>>) {
        let mut state = self.rows.lock().expect("not poisoned");
        if state.version.is_none() {
            return;
        }
        if rows.len() > state.buffered.len() {
            self.send(LiveChange::Rows(rows[state.buffered.len()..].to_vec()));
        }
        state.in_flight.push_back(rows.to_vec());
        state.buffered.clear();
        if provisional.is_none() && state.provisional.is_empty() {
            return;
        }
        let provisional = provisional.unwrap_or_default();
        self.send(LiveChange::Provisional(provisional.clone()));
        state.provisional = provisional;
        self.provisional_sets.send_modify(|n| *n += 1);
    }

    /// Resolves when a reader that has just come asks for the open windows.
    pub async fn asked(&self) {
        self.asked.notified().await
    }

    /// Makes sure the open windows' values are current before a read: a
    /// reader after a quiet spell asks the pipeline for them and waits (at
    /// most two seconds) until they are set.
    pub async fn refresh(&self) {
        let aggregates = self
            .target
            .lock()
            .expect("not poisoned")
            .as_ref()
            .is_some_and(|t| t.aggregates);
        let was_wanted = self.wanted();
        self.keep_wanted();
        if !aggregates || was_wanted {
            return;
        }
        let mut sets = self.provisional_sets.subscribe();
        let before = *sets.borrow_and_update();
        self.asked.notify_one();
        let _ = tokio::time::timeout(FIRST_PROVISIONAL_WAIT, sets.wait_for(|n| *n != before)).await;
    }

    /// The oldest commit in flight has landed as `version`.
    pub fn commit_landed(&self, version: i64) {
        let mut state = self.rows.lock().expect("not poisoned");
        if state.version.is_some() {
            state.in_flight.pop_front();
            state.version = Some(version);
            self.send(LiveChange::Committed(version));
        }
    }

    /// The current cut and every change after it, or `None` when no pipeline
    /// is writing the table.
    pub fn subscribe(
        &self,
    ) -> Option<(
        LiveSnapshot,
        tokio::sync::broadcast::Receiver<Arc<LiveChange>>,
    )> {
        let target = self.target.lock().expect("not poisoned").clone()?;
        self.keep_wanted();
        let state = self.rows.lock().expect("not poisoned");
        // Taken under the lock every change is sent under: nothing between.
        let receiver = self.changes.subscribe();
        Some((self.cut(target, &state)?, receiver))
    }

    /// Keeps the open windows' values current for a subscriber.
    pub fn keep_wanted(&self) {
        self.wanted_until_ms
            .store(now_ms() + WANTED_FOR_MS, Ordering::Relaxed);
    }

    /// Whether someone read the view lately, so that open windows are worth computing.
    pub fn wanted(&self) -> bool {
        self.wanted_until_ms.load(Ordering::Relaxed) > now_ms()
    }

    /// The current cut, or `None` when no pipeline is writing the table
    /// (after [`Self::refresh`], for the open windows' values).
    pub fn snapshot(&self) -> Option<LiveSnapshot> {
        let target = self.target.lock().expect("not poisoned").clone()?;
        self.keep_wanted();
        let state = self.rows.lock().expect("not poisoned");
        self.cut(target, &state)
    }

    fn cut(&self, target: Target, state: &Uncommitted) -> Option<LiveSnapshot> {
        Some(LiveSnapshot {
            committed: self.committed.clone(),
            location: target.location,
            key: target.key,
            version: state.version?,
            rows: state
                .in_flight
                .iter()
                .flatten()
                .chain(&state.buffered)
                .cloned()
                .collect(),
            provisional: state.provisional.clone(),
        })
    }
}

impl LiveSnapshot {
    /// The cut as a DataFusion table: Delta at its version, with the
    /// uncommitted and provisional rows, and a `_provisional` column.
    pub async fn provider(self) -> Result<Arc<dyn TableProvider>> {
        let committed =
            strata_catalog::connectors::delta::provider_of(&self.committed_table().await?).await?;
        let committed_schema = committed.schema();
        let (rows, deletes) = changes(self.rows, &committed_schema)?;
        let (provisional, provisional_deletes) = changes(self.provisional, &committed_schema)?;
        let mut overlay = Vec::new();
        let mut replaced = HashSet::new();
        if self.key.is_empty() {
            overlay.extend(rows.into_iter().map(|rows| (rows, false)));
        } else {
            let merged: Vec<(RecordBatch, BooleanArray, bool)> = [
                (rows, deletes, false),
                (provisional, provisional_deletes, true),
            ]
            .into_iter()
            .filter(|(rows, _, _)| !rows.is_empty())
            .map(|(rows, deletes, provisional)| {
                last_change_per_key(&committed_schema, &rows, &deletes, &self.key)
                    .map(|(rows, deletes)| (rows, deletes, provisional))
                    .map_err(|message| crate::error::PipelineError::Live { message })
            })
            .collect::<Result<_>>()?;
            let keys = KeyRows::new(&committed_schema, &self.key)?;
            // Provisional values of a key win over its uncommitted ones: they are newer.
            let mut seen = HashSet::new();
            for (rows, deletes, provisional) in merged.into_iter().rev() {
                let row_keys = keys.rows(&rows)?;
                let keep: BooleanArray = (0..rows.num_rows())
                    .map(|i| {
                        let fresh = seen.insert(row_keys[i].clone());
                        replaced.insert(row_keys[i].clone());
                        Some(fresh && !deletes.value(i))
                    })
                    .collect();
                overlay.push((
                    arrow::compute::filter_record_batch(&rows, &keep)?,
                    provisional,
                ));
            }
            return Ok(Arc::new(LiveView {
                committed,
                overlay,
                replaced: Some((keys, replaced)),
            }));
        }
        overlay.extend(provisional.into_iter().map(|rows| (rows, true)));
        Ok(Arc::new(LiveView {
            committed,
            overlay,
            replaced: None,
        }))
    }
}

impl LiveSnapshot {
    /// The Delta table at the cut's version, from the cache when it is there
    /// or behind (versions only move forward while the pipeline runs).
    async fn committed_table(&self) -> Result<deltalake::DeltaTable> {
        let mut cached = self.committed.lock().await;
        // The cache is this table's: only its version moves.
        let behind = |table: &deltalake::DeltaTable| {
            table.version().is_some_and(|v| v as i64 <= self.version)
        };
        if let Some(table) = cached.as_mut().filter(|table| behind(table)) {
            if table.version() != Some(self.version as u64) {
                table
                    .update_incremental(Some(self.version as u64))
                    .await
                    .map_err(|source| strata_catalog::CatalogError::Delta {
                        location: self.location.clone(),
                        source,
                    })?;
            }
            return Ok(table.clone());
        }
        let table = lake::open_as_of(&self.location, AsOf::Version(self.version)).await?;
        *cached = Some(table.clone());
        Ok(table)
    }
}

/// Keys of rows in Arrow's row format.
#[derive(Debug)]
struct KeyRows {
    converter: RowConverter,
    columns: Vec<usize>,
}

impl KeyRows {
    fn new(schema: &SchemaRef, key: &[String]) -> Result<Self> {
        let columns = key
            .iter()
            .map(|name| {
                schema
                    .index_of(name)
                    .map_err(|_| crate::error::PipelineError::Live {
                        message: format!("the primary key column {name} is not in the table"),
                    })
            })
            .collect::<Result<Vec<_>>>()?;
        let converter = RowConverter::new(
            columns
                .iter()
                .map(|&i| SortField::new(schema.field(i).data_type().clone()))
                .collect(),
        )?;
        Ok(Self { converter, columns })
    }

    fn rows(&self, batch: &RecordBatch) -> Result<Vec<OwnedRow>> {
        let columns: Vec<_> = self
            .columns
            .iter()
            .map(|&i| batch.column(i).clone())
            .collect();
        let rows = self.converter.convert_columns(&columns)?;
        Ok(rows.iter().map(|row| row.owned()).collect())
    }
}

/// Delta at one version, less the keys the overlay replaces, plus the overlay.
#[derive(Debug)]
struct LiveView {
    committed: Arc<dyn TableProvider>,
    /// Rows of the committed schema, and whether they are provisional.
    overlay: Vec<(RecordBatch, bool)>,
    /// For a keyed table: the keys whose committed rows the overlay replaces.
    replaced: Option<(KeyRows, HashSet<OwnedRow>)>,
}

impl LiveView {
    fn flagged(
        batch: &RecordBatch,
        provisional: bool,
        schema: &SchemaRef,
    ) -> DfResult<RecordBatch> {
        let mut columns = batch.columns().to_vec();
        columns.push(Arc::new(BooleanArray::from(vec![
            provisional;
            batch.num_rows()
        ])));
        Ok(RecordBatch::try_new(schema.clone(), columns)?)
    }
}

#[async_trait]
impl TableProvider for LiveView {
    fn schema(&self) -> SchemaRef {
        let committed = self.committed.schema();
        let mut fields: Vec<Arc<Field>> = committed.fields().iter().cloned().collect();
        fields.push(Arc::new(Field::new(PROVISIONAL, DataType::Boolean, false)));
        Arc::new(Schema::new_with_metadata(
            fields,
            committed.metadata().clone(),
        ))
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    fn supports_filters_pushdown(
        &self,
        filters: &[&Expr],
    ) -> DfResult<Vec<TableProviderFilterPushDown>> {
        // Filters reach the Delta scan for file skipping and are applied again on top.
        Ok(filters
            .iter()
            .map(|filter| {
                let names_flag = filter
                    .column_refs()
                    .iter()
                    .any(|column| column.name == PROVISIONAL);
                if names_flag {
                    TableProviderFilterPushDown::Unsupported
                } else {
                    TableProviderFilterPushDown::Inexact
                }
            })
            .collect())
    }

    /// `INSERT INTO` goes to the table's storage, with the table's own columns
    /// (not the view's `_provisional` flag); the pipeline's next commit
    /// lands beside it, and the view shows it once committed.
    async fn insert_into(
        &self,
        state: &dyn Session,
        input: Arc<dyn ExecutionPlan>,
        insert_op: datafusion::logical_expr::dml::InsertOp,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        self.committed.insert_into(state, input, insert_op).await
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        _limit: Option<usize>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        let schema = self.schema();
        let committed_schema = self.committed.schema();
        let pushed: Vec<Expr> = filters
            .iter()
            .filter(|f| !f.column_refs().iter().any(|c| c.name == PROVISIONAL))
            .cloned()
            .collect();
        let mut committed = self.committed.scan(state, None, &pushed, None).await?;
        if let Some((keys, replaced)) = &self.replaced
            && !replaced.is_empty()
        {
            let batches = collect(committed, state.task_ctx()).await?;
            let kept = batches
                .iter()
                .map(|batch| {
                    let row_keys = keys
                        .rows(batch)
                        .map_err(|err| DataFusionError::External(Box::new(err)))?;
                    let keep: BooleanArray = row_keys
                        .iter()
                        .map(|key| Some(!replaced.contains(key)))
                        .collect();
                    Ok(arrow::compute::filter_record_batch(batch, &keep)?)
                })
                .collect::<DfResult<Vec<_>>>()?;
            committed = MemorySourceConfig::try_new_exec(&[kept], committed_schema.clone(), None)?;
        }
        let mut flag_false: Vec<(Arc<dyn PhysicalExpr>, String)> = committed_schema
            .fields()
            .iter()
            .enumerate()
            .map(|(i, field)| {
                (
                    Arc::new(Column::new(field.name(), i)) as Arc<dyn PhysicalExpr>,
                    field.name().clone(),
                )
            })
            .collect();
        flag_false.push((
            Arc::new(Literal::new(ScalarValue::Boolean(Some(false)))),
            PROVISIONAL.to_string(),
        ));
        let committed = Arc::new(ProjectionExec::try_new(flag_false, committed)?);
        let overlay = self
            .overlay
            .iter()
            .filter(|(rows, _)| rows.num_rows() > 0)
            .map(|(rows, provisional)| Self::flagged(rows, *provisional, &schema))
            .collect::<DfResult<Vec<_>>>()?;
        let mut inputs: Vec<Arc<dyn ExecutionPlan>> = vec![committed];
        if !overlay.is_empty() {
            inputs.push(MemorySourceConfig::try_new_exec(
                &[overlay],
                schema.clone(),
                None,
            )?);
        }
        let all = UnionExec::try_new(inputs)?;
        match projection {
            None => Ok(all),
            Some(indices) => {
                let columns: Vec<(Arc<dyn PhysicalExpr>, String)> = indices
                    .iter()
                    .map(|&i| {
                        let name = schema.field(i).name().clone();
                        (
                            Arc::new(Column::new(&name, i)) as Arc<dyn PhysicalExpr>,
                            name,
                        )
                    })
                    .collect();
                Ok(Arc::new(ProjectionExec::try_new(columns, all)?))
            }
        }
    }
}
