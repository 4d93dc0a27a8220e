//! Lookup joins: each batch of probe rows is enriched with the rows of a
//! dimension table (MySQL/TiDB, Delta or embedded) whose key matches, through
//! a cache, without a query per row.
//!
//! ```text
//!   probe batch ──keys (ON o.user_id = u.id)──▶ distinct keys ──▶ cache ──hit──────────────┐
//!                                                                 └─miss─▶ IN (…) queries ─┤  (≤ batch-size keys each,
//!                                                                                          │   ≤ max-concurrency at once)
//!   probe rows in input order ◀── join (+ ON's other conditions) ◀── dimension rows ◀──────┘
//!     no match: LEFT JOIN → NULLs │ quarantine → <target>__quarantine │ retry → set aside, asked again later
//! ```
//!
//! A query that fails (the database is down) is retried with backoff until it
//! succeeds, and the pipeline reports itself degraded meanwhile: rows are
//! neither dropped nor NULL-filled for it. Rows set aside for a retry are part
//! of the pipeline's checkpointed state, so a restart loses none of them.

pub mod cache;
pub mod dimension;
pub mod spec;
pub mod versioned;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arrow::array::{Array, ArrayRef, TimestampMillisecondArray, UInt32Array};
use arrow::datatypes::{DataType, Schema, SchemaRef};
use arrow::record_batch::{RecordBatch, RecordBatchOptions};
use arrow::row::{OwnedRow, RowConverter, SortField};
use arrow::util::display::{ArrayFormatter, FormatOptions};
use datafusion::physical_expr::PhysicalExpr;
use futures::StreamExt;
use strata_catalog::connectors::KeyValue;
use strata_catalog::{LookupOptions, TableName};

use self::cache::LookupCache;
use self::dimension::{Dimension, KeyBatch};
use self::spec::MissPolicy;
use self::versioned::VersionedTable;
use crate::error::{PipelineError, Result};
use crate::operator::{
    BatchContext, Changelog, Described, Emitted, InputStream, Missed, Operator, OperatorKind,
    Processed, RunAgain, RunsRowsAgain, Traced, Watermarks,
};
pub use crate::operator::{MissAction, Pass};

/// Keys with their dimension rows (none when a key has none).
type KeyRows = (Box<[u8]>, Vec<OwnedRow>);

/// The longest wait between two attempts at a failing dimension query.
const MAX_BACKOFF: Duration = Duration::from_secs(10);

/// Live counters of one lookup join, for the API and `/metrics`.
#[derive(Debug, Default)]
pub struct LookupStats {
    /// `alias (space.table)`.
    pub name: String,
    /// Probe rows looked up.
    pub rows: AtomicU64,
    /// Distinct keys asked for, and how many of them the cache answered.
    pub keys: AtomicU64,
    pub cache_hits: AtomicU64,
    /// Probe rows without a dimension row (each attempt counts).
    pub misses: AtomicU64,
    /// The dimension's rows are in memory (a broadcast topic, a versioned
    /// changelog, a Delta table): nothing is cached and no database is asked.
    pub in_memory: bool,
    /// Database queries (none for an in-memory dimension).
    pub queries: AtomicU64,
    /// Total time the queries took.
    pub query_micros: AtomicU64,
    /// Failed queries (each one was retried).
    pub failures: AtomicU64,
    /// Why the join is waiting for its database, while it is.
    pub degraded: Mutex<Option<String>>,
    /// For a temporal join: probe rows held back for the versioned side's
    /// watermark, and versions held, as of the last batch.
    pub held_back: AtomicU64,
    pub versions: AtomicU64,
}

impl LookupStats {
    /// The share of keys the cache answered.
    pub fn hit_rate(&self) -> f64 {
        let keys = self.keys.load(Ordering::Relaxed);
        if keys == 0 {
            return 0.0;
        }
        self.cache_hits.load(Ordering::Relaxed) as f64 / keys as f64
    }

    /// Database queries per 1,000 probe rows.
    pub fn queries_per_1k_rows(&self) -> f64 {
        let rows = self.rows.load(Ordering::Relaxed);
        if rows == 0 {
            return 0.0;
        }
        self.queries.load(Ordering::Relaxed) as f64 * 1_000.0 / rows as f64
    }

    /// The mean query time, in milliseconds.
    pub fn mean_query_ms(&self) -> f64 {
        let queries = self.queries.load(Ordering::Relaxed);
        if queries == 0 {
            return 0.0;
        }
        self.query_micros.load(Ordering::Relaxed) as f64 / queries as f64 / 1_000.0
    }

    pub fn degraded(&self) -> Option<String> {
        self.degraded.lock().expect("not poisoned").clone()
    }

    fn set_degraded(&self, reason: Option<String>) {
        *self.degraded.lock().expect("not poisoned") = reason;
    }
}

/// Probe rows one lookup join did not match, and what becomes of them.
#[derive(Debug)]
pub struct Misses {
    pub rows: Vec<usize>,
    pub action: MissAction,
    pub reason: String,
}

/// The dimension side of a join, as the plan reads it: the scanned columns,
/// then conditions on the dimension alone and column selections, in order.
#[derive(Debug)]
pub struct DimensionSide {
    /// The scanned columns, as indices in the dimension's schema.
    pub scan: Vec<usize>,
    pub steps: Vec<SideStep>,
}

#[derive(Debug)]
pub enum SideStep {
    /// Keeps candidates for which this is true (over the columns at this point).
    Filter(Arc<dyn PhysicalExpr>),
    /// Keeps these columns, in this order.
    Select(Vec<usize>),
}

/// One compiled lookup join.
#[derive(Debug)]
pub struct LookupJoin {
    pub table: TableName,
    pub alias: String,
    miss: MissPolicy,
    left_join: bool,
    filtered_by_where: bool,
    dimension: Dimension,
    options: LookupOptions,
    timeout: Duration,
    probe_keys: Vec<Arc<dyn PhysicalExpr>>,
    key_columns: Vec<String>,
    key_types: Vec<DataType>,
    key_converter: RowConverter,
    dimension_schema: SchemaRef,
    key_indices: Vec<usize>,
    row_converter: RowConverter,
    side: DimensionSide,
    /// Conditions of the ON clause over both sides, beyond the key equalities.
    join_filter: Option<Arc<dyn PhysicalExpr>>,
    output: SchemaRef,
    /// For an event-time temporal join, the source's event-time column named in `AS OF`.
    pub as_of: Option<String>,
    cache: Mutex<LookupCache>,
    pub stats: Arc<LookupStats>,
}

/// Everything needed to build a [`LookupJoin`].
#[derive(Debug)]
pub struct LookupJoinParts {
    pub spec: spec::LookupSpec,
    pub dimension: Dimension,
    pub dimension_schema: SchemaRef,
    pub options: LookupOptions,
    pub probe_keys: Vec<Arc<dyn PhysicalExpr>>,
    /// The dimension's key columns, one per probe key.
    pub key_columns: Vec<String>,
    /// The types keys are compared as (both sides, after SQL's coercion).
    pub key_types: Vec<DataType>,
    /// A LEFT JOIN that a WHERE on the dimension made an inner join: rows
    /// without a match are filtered out by that WHERE, not filled with NULLs.
    pub filtered_by_where: bool,
    pub side: DimensionSide,
    pub join_filter: Option<Arc<dyn PhysicalExpr>>,
    /// The probe's columns followed by the dimension's projected ones.
    pub output: SchemaRef,
}

impl LookupJoin {
    pub fn new(parts: LookupJoinParts) -> Result<Self> {
        let LookupJoinParts {
            spec,
            dimension,
            dimension_schema,
            options,
            probe_keys,
            key_columns,
            key_types,
            filtered_by_where,
            side,
            join_filter,
            output,
        } = parts;
        let key_indices = key_columns
            .iter()
            .map(|c| dimension_schema.index_of(c))
            .collect::<std::result::Result<Vec<_>, _>>()?;
        let key_converter =
            RowConverter::new(key_types.iter().cloned().map(SortField::new).collect())?;
        // Rows read back may hold NULLs where the DDL says NOT NULL: the database decides.
        let dimension_schema = Arc::new(Schema::new(crate::batch::nullable_fields(
            &dimension_schema,
        )));
        let row_converter = crate::batch::row_converter(&dimension_schema)?;
        // Rows already in memory are looked up there: a cache would only delay updates.
        let cache_keys = if dimension.in_memory() {
            0
        } else {
            options.cache_max_rows
        };
        let as_of = match &dimension {
            Dimension::Versioned(table) => {
                table.bind_keys(&key_columns, &key_types)?;
                Some(spec.time_column.clone())
            }
            _ => None,
        };
        let cache = LookupCache::new(
            cache_keys,
            Duration::from_millis(options.cache_ttl_ms.max(0) as u64),
            Duration::from_millis(options.cache_miss_ttl_ms.max(0) as u64),
        );
        Ok(Self {
            stats: Arc::new(LookupStats {
                name: format!("{} ({})", spec.alias, spec.table.table),
                in_memory: dimension.in_memory(),
                ..LookupStats::default()
            }),
            table: spec.table.table.clone(),
            alias: spec.alias,
            miss: spec.miss,
            left_join: spec.left_join,
            filtered_by_where,
            timeout: Duration::from_millis(spec.timeout_ms.max(1) as u64),
            dimension,
            options,
            probe_keys,
            key_columns,
            key_types,
            key_converter,
            dimension_schema,
            key_indices,
            row_converter,
            side,
            join_filter,
            output,
            as_of,
            cache: Mutex::new(cache),
        })
    }

    /// The join in SQL terms: its table, keys, where its rows come from and what a miss does.
    pub fn describe_join(&self) -> String {
        let join = if self.left_join { "LEFT JOIN" } else { "JOIN" };
        let store = self.dimension.describe();
        let miss = match self.miss {
            MissPolicy::Null => "NULLs".to_string(),
            MissPolicy::Quarantine => "quarantine".to_string(),
            MissPolicy::Retry {
                delay_ms,
                max_attempts,
            } => format!("retry every {delay_ms} ms, {max_attempts} attempts"),
        };
        let as_of = self.as_of.as_deref().unwrap_or("proctime");
        format!(
            "{join} {} AS {} FOR SYSTEM_TIME AS OF {as_of} ON ({}) [{store}; miss: {miss}]",
            self.table,
            self.alias,
            self.key_columns.join(", ")
        )
    }

    /// True when misses may be set aside and retried (the rows then live in state).
    pub fn retries(&self) -> bool {
        matches!(self.miss, MissPolicy::Retry { .. })
    }

    /// The versioned table of an event-time temporal join.
    pub fn versioned(&self) -> Option<&Arc<VersionedTable>> {
        match &self.dimension {
            Dimension::Versioned(table) => Some(table),
            _ => None,
        }
    }

    /// Joins a batch of probe rows (with their `AS OF` event times, for a
    /// temporal join). Returns the joined rows with, for each, the probe row
    /// it came from, in input order; and the probe rows set aside: those that
    /// missed (unless their dimension columns were filled with NULLs), and
    /// those a temporal join holds back or finds late.
    pub async fn join(
        &self,
        probe: &RecordBatch,
        as_of: Option<&TimestampMillisecondArray>,
        pass: &Pass,
    ) -> Result<(RecordBatch, Vec<usize>, Vec<Misses>)> {
        let rows = probe.num_rows();
        self.stats.rows.fetch_add(rows as u64, Ordering::Relaxed);
        let keys = self.probe_key_columns(probe)?;
        let encoded = self.key_converter.convert_columns(&keys)?;
        let key_nulls: Vec<bool> = (0..rows)
            .map(|row| keys.iter().any(|k| k.is_null(row)))
            .collect();
        if let (Some(table), Some(times)) = (self.versioned(), as_of) {
            let parser = self.row_converter.parser();
            let answers = table.versions_at(&encoded, &key_nulls, times, &parser);
            let mut set_aside = vec![false; rows];
            for &row in answers.waiting.iter().chain(&answers.late) {
                set_aside[row] = true;
            }
            let per_row: Vec<&[OwnedRow]> = answers.rows.iter().map(Option::as_slice).collect();
            let (batch, origins, missed) = self.assemble(probe, &per_row, &set_aside, pass)?;
            let mut misses: Vec<Misses> = missed.into_iter().collect();
            if !answers.waiting.is_empty() {
                misses.push(Misses {
                    rows: answers.waiting,
                    action: MissAction::Wait {
                        time_column: self
                            .as_of
                            .clone()
                            .expect("an event-time temporal join has an AS OF column"),
                    },
                    reason: String::new(),
                });
            }
            if !answers.late.is_empty() {
                misses.push(Misses {
                    rows: answers.late,
                    action: MissAction::Quarantine,
                    reason: format!(
                        "the temporal join {} came too late for this record: the versions of {} at its event time were cleaned from state once both sides' watermarks passed it",
                        self.alias, self.table
                    ),
                });
            }
            return Ok((batch, origins, misses));
        }
        // Each distinct key with the first probe row that has it.
        let mut distinct: HashMap<&[u8], usize> = HashMap::new();
        let mut row_keys: Vec<Option<&[u8]>> = Vec::with_capacity(rows);
        for (row, &null) in key_nulls.iter().enumerate() {
            if null {
                row_keys.push(None);
                continue;
            }
            let key = encoded.row(row).data();
            distinct.entry(key).or_insert(row);
            row_keys.push(Some(key));
        }
        let found = self.rows_for(&distinct, &keys, pass).await?;
        let per_row: Vec<&[OwnedRow]> = row_keys
            .iter()
            .map(|key| {
                key.and_then(|k| found.get(k))
                    .map(Vec::as_slice)
                    .unwrap_or(&[])
            })
            .collect();
        let (batch, origins, missed) = self.assemble(probe, &per_row, &vec![false; rows], pass)?;
        Ok((batch, origins, missed.into_iter().collect()))
    }

    /// The probe's key columns, as the types keys are compared as.
    fn probe_key_columns(&self, probe: &RecordBatch) -> Result<Vec<ArrayRef>> {
        crate::batch::key_columns(&self.probe_keys, &self.key_types, probe)
    }

    /// The dimension rows of each distinct key, from the cache or the database.
    async fn rows_for(
        &self,
        distinct: &HashMap<&[u8], usize>,
        keys: &[ArrayRef],
        pass: &Pass,
    ) -> Result<HashMap<Box<[u8]>, Vec<OwnedRow>>> {
        self.stats
            .keys
            .fetch_add(distinct.len() as u64, Ordering::Relaxed);
        let now = Instant::now();
        let mut found: HashMap<Box<[u8]>, Vec<OwnedRow>> = HashMap::with_capacity(distinct.len());
        let mut wanted = KeyBatch::default();
        {
            // Not held across the fetch below: formatters are not `Send`.
            let binder = KeyBinder::new(keys)?;
            let mut cache = self.cache.lock().expect("not poisoned");
            for (&key, &row) in distinct {
                // A retry asks the database again, whatever the cache holds.
                let cached = (pass.attempt == 0)
                    .then(|| cache.get(key, now, false))
                    .flatten();
                match cached {
                    Some(entry) => {
                        found.insert(key.into(), entry.rows.clone());
                    }
                    None => {
                        wanted.bytes.push(key.into());
                        wanted.values.push(binder.values(row));
                    }
                }
            }
        }
        self.stats
            .cache_hits
            .fetch_add(found.len() as u64, Ordering::Relaxed);
        if wanted.bytes.is_empty() {
            return Ok(found);
        }
        let fetched = self.fetch_all(wanted, pass).await?;
        let now = Instant::now();
        let mut cache = self.cache.lock().expect("not poisoned");
        for (key, rows) in fetched {
            cache.put(key.clone(), rows.clone(), now);
            found.insert(key, rows);
        }
        Ok(found)
    }

    /// Fetches keys in chunks, a few queries at a time; every key asked for is
    /// in the answer (with no rows when the dimension has none).
    async fn fetch_all(&self, wanted: KeyBatch, pass: &Pass) -> Result<Vec<KeyRows>> {
        let chunk = self.options.batch_keys.max(1);
        let mut chunks = Vec::new();
        let mut bytes = wanted.bytes.into_iter();
        let mut values = wanted.values.into_iter();
        loop {
            let batch = KeyBatch {
                bytes: bytes.by_ref().take(chunk).collect(),
                values: values.by_ref().take(chunk).collect(),
            };
            if batch.bytes.is_empty() {
                break;
            }
            chunks.push(batch);
        }
        let results: Vec<Result<Vec<KeyRows>>> =
            futures::stream::iter(chunks.into_iter().map(|keys| self.fetch_chunk(keys, pass)))
                .buffer_unordered(self.options.max_concurrency.max(1))
                .collect()
                .await;
        let mut all = Vec::new();
        for result in results {
            all.extend(result?);
        }
        Ok(all)
    }

    /// One query, retried with backoff while the database fails.
    async fn fetch_chunk(&self, keys: KeyBatch, pass: &Pass) -> Result<Vec<KeyRows>> {
        let mut backoff = Duration::from_millis(100);
        let mut stop = pass.stop.clone();
        let batch = loop {
            let started = Instant::now();
            let outcome = tokio::time::timeout(
                self.timeout,
                self.dimension
                    .fetch(&self.key_columns, &self.key_types, &keys),
            )
            .await;
            if !self.stats.in_memory {
                self.stats.queries.fetch_add(1, Ordering::Relaxed);
                self.stats
                    .query_micros
                    .fetch_add(started.elapsed().as_micros() as u64, Ordering::Relaxed);
            }
            let failure = match outcome {
                Ok(Ok(batch)) => break batch,
                // A wrong column or type does not heal with time: stop, and say why.
                Ok(Err(err)) if !is_transient(&err) => {
                    self.stats.failures.fetch_add(1, Ordering::Relaxed);
                    return Err(err);
                }
                Ok(Err(err)) => err.to_string(),
                Err(_) => format!("the query took over {:?}", self.timeout),
            };
            self.stats.failures.fetch_add(1, Ordering::Relaxed);
            let reason = format!(
                "looking up {} in {}: {failure}; retrying in {backoff:?}",
                self.alias, self.table
            );
            tracing::warn!("{reason}");
            self.stats.set_degraded(Some(reason));
            if *stop.borrow() {
                return Err(PipelineError::Interrupted);
            }
            tokio::select! {
                _ = tokio::time::sleep(backoff) => {}
                _ = stop.changed() => return Err(PipelineError::Interrupted),
            }
            backoff = (backoff * 2).min(MAX_BACKOFF);
        };
        self.stats.set_degraded(None);
        let batch = RecordBatch::try_new(self.dimension_schema.clone(), batch.columns().to_vec())?;
        let key_columns = self
            .key_indices
            .iter()
            .zip(&self.key_types)
            .map(|(&i, key_type)| Ok(arrow::compute::cast(batch.column(i), key_type)?))
            .collect::<Result<Vec<ArrayRef>>>()?;
        let encoded = self.key_converter.convert_columns(&key_columns)?;
        let full = self.row_converter.convert_columns(batch.columns())?;
        let mut by_key: HashMap<Box<[u8]>, Vec<OwnedRow>> =
            keys.bytes.into_iter().map(|k| (k, Vec::new())).collect();
        for row in 0..batch.num_rows() {
            // The database may match more loosely (collations): keep exact matches.
            if let Some(rows) = by_key.get_mut(encoded.row(row).data()) {
                rows.push(full.row(row).owned());
            }
        }
        Ok(by_key.into_iter().collect())
    }

    /// Joins each probe row with its dimension rows (that pass the
    /// dimension's conditions and the ON clause's others), in input order.
    /// Rows `set_aside` are neither joined nor missed.
    fn assemble(
        &self,
        probe: &RecordBatch,
        per_row: &[&[OwnedRow]],
        set_aside: &[bool],
        pass: &Pass,
    ) -> Result<(RecordBatch, Vec<usize>, Option<Misses>)> {
        let mut pair_probe: Vec<u32> = Vec::new();
        let mut candidates = Vec::new();
        for (row, rows) in per_row.iter().enumerate() {
            for candidate in rows.iter() {
                pair_probe.push(row as u32);
                candidates.push(candidate.row());
            }
        }
        let dimension_rows = self.row_converter.convert_rows(candidates)?;
        let right = RecordBatch::try_new_with_options(
            self.dimension_schema.clone(),
            dimension_rows,
            &RecordBatchOptions::new().with_row_count(Some(pair_probe.len())),
        )?
        .project(&self.side.scan)?;
        let mut keep = vec![true; pair_probe.len()];
        let mut right = right;
        for step in &self.side.steps {
            match step {
                SideStep::Filter(filter) => apply_mask(filter, &right, &mut keep)?,
                SideStep::Select(columns) => right = right.project(columns)?,
            }
        }
        let pair_probe = UInt32Array::from(pair_probe);
        let pairs = self.joined(probe, &pair_probe, &right, None)?;
        if let Some(filter) = &self.join_filter {
            apply_mask(filter, &pairs, &mut keep)?;
        }
        let mut matched = vec![false; probe.num_rows()];
        let mut order: Vec<(u32, Option<u32>)> = Vec::new();
        for (pair, &row) in pair_probe.values().iter().enumerate() {
            if keep[pair] {
                matched[row as usize] = true;
                order.push((row, Some(pair as u32)));
            }
        }
        let missed: Vec<usize> = (0..probe.num_rows())
            .filter(|&r| !matched[r] && !set_aside[r])
            .collect();
        self.stats
            .misses
            .fetch_add(missed.len() as u64, Ordering::Relaxed);
        let action = match self.miss {
            MissPolicy::Null => None,
            MissPolicy::Quarantine => Some(MissAction::Quarantine),
            MissPolicy::Retry {
                max_attempts,
                delay_ms,
            } if pass.attempt < max_attempts => Some(MissAction::Retry { after_ms: delay_ms }),
            MissPolicy::Retry { .. } if self.left_join => None,
            MissPolicy::Retry { .. } => Some(MissAction::Quarantine),
        };
        let misses = match action {
            None if self.filtered_by_where => None,
            None => {
                order.extend(missed.iter().map(|&r| (r as u32, None)));
                order.sort_by_key(|&(row, _)| row);
                None
            }
            Some(action) => Some(Misses {
                reason: self.miss_reason(pass),
                rows: missed,
                action,
            }),
        };
        let probe_rows = UInt32Array::from_iter_values(order.iter().map(|&(row, _)| row));
        let right_rows: UInt32Array = order.iter().map(|&(_, pair)| pair).collect();
        let output = self.joined(probe, &probe_rows, &right, Some(&right_rows))?;
        let origins = probe_rows.values().iter().map(|&r| r as usize).collect();
        Ok((output, origins, misses))
    }

    fn miss_reason(&self, pass: &Pass) -> String {
        let looked = format!(
            "the lookup join {} found no row of {} for this record's key ({})",
            self.alias,
            self.table,
            self.key_columns.join(", ")
        );
        match self.miss {
            MissPolicy::Retry { max_attempts, .. } if pass.attempt >= max_attempts => {
                format!("{looked}, after {} retries", max_attempts)
            }
            _ => looked,
        }
    }

    /// Probe rows `probe_rows` beside dimension rows (`right_rows` into `right`,
    /// NULL where an index is NULL; `right` row for row when `None`).
    fn joined(
        &self,
        probe: &RecordBatch,
        probe_rows: &UInt32Array,
        right: &RecordBatch,
        right_rows: Option<&UInt32Array>,
    ) -> Result<RecordBatch> {
        let mut columns = probe
            .columns()
            .iter()
            .map(|c| arrow::compute::take(c, probe_rows, None))
            .collect::<std::result::Result<Vec<_>, _>>()?;
        for column in right.columns() {
            columns.push(match right_rows {
                Some(rows) => arrow::compute::take(column, rows, None)?,
                None => column.clone(),
            });
        }
        Ok(RecordBatch::try_new_with_options(
            self.output.clone(),
            columns,
            &RecordBatchOptions::new().with_row_count(Some(probe_rows.len())),
        )?)
    }
}

/// Whether a failed fetch may succeed later: the database or its network is
/// down or busy (retried with backoff), rather than the query being wrong.
fn is_transient(err: &PipelineError) -> bool {
    use strata_catalog::CatalogError;
    match err {
        PipelineError::Catalog(err) => match err.as_ref() {
            CatalogError::Unreachable { .. } | CatalogError::Delta { .. } => true,
            CatalogError::Mysql { source, .. } | CatalogError::Store { source, .. } => {
                sqlx_error_is_transient(source)
            }
            _ => false,
        },
        PipelineError::Source { .. } => true,
        _ => false,
    }
}

/// Whether a database client's error may heal with time: the connection or
/// its pool failed, or the database answered with a transient error.
pub fn sqlx_error_is_transient(err: &sqlx::Error) -> bool {
    match err {
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::Protocol(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed => true,
        sqlx::Error::Database(db) => database_error_is_transient(db.as_ref()),
        _ => false,
    }
}

/// MySQL/TiDB error numbers that pass: too many connections (1040, 1203, 1226), the
/// server shutting down (1053), a killed connection or query (1927, 1317),
/// network timeouts (1159, 1161), lock wait timeout (1205), deadlock (1213),
/// server gone or connection lost (2006, 2013), and TiDB's busy and
/// retryable errors (8002, 8022, 8027, 9001 to 9007).
const MYSQL_TRANSIENT: [u16; 22] = [
    1040, 1053, 1159, 1161, 1203, 1205, 1213, 1226, 1317, 1927, 2006, 2013, 8002, 8022, 8027, 9001,
    9002, 9003, 9004, 9005, 9006, 9007,
];

/// Whether a database's error may heal with time. MySQL and TiDB are judged
/// by their numeric error code (their SQLSTATE is mostly the generic HY000),
/// PostgreSQL by its SQLSTATE class: 08 connection, 40 rollback (deadlock,
/// serialization), 53 insufficient resources, 57P0x shutdown. Everything else
/// (a missing table, access denied, an unknown column) is permanent.
pub fn database_error_is_transient(db: &dyn sqlx::error::DatabaseError) -> bool {
    if let Some(mysql) = db.try_downcast_ref::<sqlx::mysql::MySqlDatabaseError>() {
        return MYSQL_TRANSIENT.contains(&mysql.number())
            || mysql.code().is_some_and(|state| state.starts_with("08"));
    }
    db.code().is_some_and(|state| {
        ["08", "40", "53", "57P0"]
            .iter()
            .any(|class| state.starts_with(class))
    })
}

/// Clears `keep` where `filter` is not true on `batch`.
fn apply_mask(
    filter: &Arc<dyn PhysicalExpr>,
    batch: &RecordBatch,
    keep: &mut [bool],
) -> Result<()> {
    let mask = crate::batch::evaluate(filter, batch)?;
    let mask = mask
        .as_any()
        .downcast_ref::<arrow::array::BooleanArray>()
        .ok_or_else(|| PipelineError::Evaluation("a join condition is not boolean".to_string()))?;
    for (row, flag) in keep.iter_mut().enumerate() {
        *flag = *flag && mask.is_valid(row) && mask.value(row);
    }
    Ok(())
}

/// A batch's key columns, ready to give any row's key as values to bind:
/// integers and booleans as such, everything else as its text.
enum KeyColumn<'a> {
    Int(arrow::array::Int64Array),
    Bool(arrow::array::BooleanArray),
    Text(ArrayFormatter<'a>),
}

struct KeyBinder<'a>(Vec<KeyColumn<'a>>);

impl<'a> KeyBinder<'a> {
    /// Casts integer columns, and readies the text of the others, once for the whole batch.
    fn new(keys: &'a [ArrayRef]) -> Result<Self> {
        let columns = keys
            .iter()
            .map(|column| {
                Ok(match column.data_type() {
                    t if t.is_integer() => KeyColumn::Int(
                        arrow::compute::cast(column, &DataType::Int64)?
                            .as_any()
                            .downcast_ref::<arrow::array::Int64Array>()
                            .expect("cast to Int64")
                            .clone(),
                    ),
                    DataType::Boolean => KeyColumn::Bool(
                        column
                            .as_any()
                            .downcast_ref::<arrow::array::BooleanArray>()
                            .expect("boolean")
                            .clone(),
                    ),
                    _ => KeyColumn::Text(ArrayFormatter::try_new(
                        column.as_ref(),
                        &FormatOptions::default(),
                    )?),
                })
            })
            .collect::<Result<_>>()?;
        Ok(Self(columns))
    }

    fn values(&self, row: usize) -> Vec<KeyValue> {
        self.0
            .iter()
            .map(|column| match column {
                KeyColumn::Int(values) => KeyValue::Int(values.value(row)),
                KeyColumn::Bool(flags) => KeyValue::Bool(flags.value(row)),
                KeyColumn::Text(formatter) => KeyValue::Text(formatter.value(row).to_string()),
            })
            .collect()
    }
}

/// The output schema of a lookup join: the probe's fields, then the
/// dimension's, which are NULL where a LEFT JOIN found nothing.
pub fn output_schema(probe: &Schema, right: &Schema) -> SchemaRef {
    let mut fields: Vec<arrow::datatypes::Field> =
        probe.fields().iter().map(|f| f.as_ref().clone()).collect();
    fields.extend(crate::batch::nullable_fields(right));
    Arc::new(Schema::new(fields))
}

#[async_trait::async_trait]
impl Operator for LookupJoin {
    fn kind(&self) -> OperatorKind {
        match self.versioned() {
            Some(_) => OperatorKind::TemporalJoin,
            None => OperatorKind::LookupJoin,
        }
    }

    fn name(&self) -> Option<String> {
        Some(self.alias.clone())
    }

    async fn process(self: Arc<Self>, input: Traced, ctx: &BatchContext<'_>) -> Result<Processed> {
        // A temporal join's AS OF is the source's event time, wherever the row went since.
        let as_of = match &self.as_of {
            Some(column) => {
                let times = crate::window::event_times(ctx.source, column)?;
                let positions =
                    UInt32Array::from_iter_values(input.origins.iter().map(|&o| o as u32));
                let taken = arrow::compute::take(&times, &positions, None)?;
                Some(
                    taken
                        .as_any()
                        .downcast_ref::<TimestampMillisecondArray>()
                        .expect("event times are milliseconds")
                        .clone(),
                )
            }
            None => None,
        };
        let (batch, rows, set_aside) = self.join(&input.batch, as_of.as_ref(), ctx.pass).await?;
        let missed = set_aside
            .into_iter()
            .map(|misses| {
                let mut origins: Vec<usize> =
                    misses.rows.iter().map(|&r| input.origins[r]).collect();
                origins.sort_unstable();
                origins.dedup();
                Missed {
                    origins,
                    action: misses.action,
                    reason: misses.reason,
                }
            })
            .collect();
        Ok(Processed {
            traced: input.rows_from(batch, &rows),
            missed,
            writes: Vec::new(),
        })
    }

    fn accepts(&self, input: Changelog) -> std::result::Result<(), String> {
        if input == Changelog::AppendOnly {
            return Ok(());
        }
        if self.versioned().is_some() {
            return Err("an event-time temporal join probed by a changelog (a change held back could land after a newer change of its key)".to_string());
        }
        if self.retries() {
            return Err("'miss' = 'retry' over a changelog (a change set aside could land after a newer change of its key)".to_string());
        }
        Ok(())
    }

    /// A temporal join forgets the versions no probe row to come can need:
    /// those both its streams' watermarks have passed.
    async fn on_watermark(&self, watermarks: &Watermarks) -> Result<Emitted> {
        if let Some(table) = self.versioned() {
            if let (Some(source), Some(versions)) = (watermarks.source, watermarks.second) {
                table.clean(source.min(versions));
            }
            let versions = table.version_count() as u64;
            self.stats.versions.store(versions, Ordering::Relaxed);
        }
        Ok(Emitted::default())
    }

    fn runs_rows_again(&self) -> Option<RunsRowsAgain> {
        if self.versioned().is_some() {
            return Some(RunsRowsAgain {
                when: RunAgain::AtVersionsWatermark,
                what: format!(
                    "the event-time temporal join {} (rows wait for its versions)",
                    self.alias
                ),
            });
        }
        self.retries().then(|| RunsRowsAgain {
            when: RunAgain::AfterDelay,
            what: format!("'miss' = 'retry' on the lookup join {}", self.alias),
        })
    }

    fn refuses_second_stream(&self) -> Option<String> {
        self.runs_rows_again().map(|again| again.what)
    }

    fn rows_waiting(&self, count: usize) {
        if self.versioned().is_some() {
            self.stats.held_back.store(count as u64, Ordering::Relaxed);
        }
    }

    fn refuses_rows_run_again(&self) -> Option<String> {
        self.versioned().map(|_| {
            "a row run again after both watermarks passed it would find its versions dropped"
                .to_string()
        })
    }

    fn describe(&self, input: &InputStream) -> Described {
        let watermark = match self.versioned() {
            Some(table) => input
                .watermark
                .as_ref()
                .map(|w| format!("min({w}, {}.{})", table.name, table.time_column)),
            None => input.watermark.clone(),
        };
        Described {
            detail: self.describe_join(),
            schema: self.output.clone(),
            watermark,
            state: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_failures_that_may_heal_are_retried() {
        let mysql = |source| {
            PipelineError::Catalog(Box::new(strata_catalog::CatalogError::Mysql {
                context: "looking up".to_string(),
                source,
            }))
        };
        assert!(is_transient(&mysql(sqlx::Error::PoolTimedOut)));
        assert!(is_transient(&mysql(sqlx::Error::Io(std::io::Error::from(
            std::io::ErrorKind::ConnectionRefused
        )))));
        assert!(!is_transient(&mysql(sqlx::Error::RowNotFound)));
        assert!(!is_transient(&PipelineError::Evaluation(
            "column name is not a BIGINT".to_string()
        )));
    }
}
