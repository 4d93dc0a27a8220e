//! Committing: the target (Delta, MySQL/TiDB or Kafka) and the side tables
//! committed before it (quarantine, late rows), and the order a commit follows.
//!
//! ```text
//!   Sinks::commit:  quarantine (+ txn) ─▶ late rows (+ txn) ─▶ state file k ─▶ target (+ positions, + state k)
//! ```

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::Ordering;

use arrow::array::Array;
use arrow::record_batch::RecordBatch;

use super::keyed::PendingCheckpoint;
use super::{TableStats, now_ms};
use crate::connector::delta::sink::DeltaSink;
use crate::decode::json::Rejected;
use crate::error::Result;
use crate::position::{Position, Positions, Split};
use crate::sink::TargetSink;
use crate::sink::quarantine;
use crate::state::StateStore;
use strata_quality::results::{CheckResult, ResultsLog};

/// A table committed before the target (quarantine, late rows), which may be
/// ahead of it after a crash: it skips records at or below what it holds.
#[derive(Debug)]
pub(super) struct SideTable {
    pub(super) sink: DeltaSink,
    /// Per split, the number of the last position this table has committed.
    pub(super) up_to: BTreeMap<Split, i64>,
}

impl SideTable {
    pub(super) async fn resume(&mut self, stream: &str, splits: &[i32]) -> Result<()> {
        for &split in splits {
            if let Some(position) = self.sink.committed_position(stream, split).await? {
                self.up_to
                    .insert((stream.to_string(), split), position.order);
            }
        }
        Ok(())
    }

    pub(super) fn is_new(&self, stream: &str, split: i32, order: i64) -> bool {
        self.up_to
            .get(&(stream.to_string(), split))
            .is_none_or(|&done| order > done)
    }

    /// Commits `rows` with the positions' numbers, which only ever move
    /// forward; it skips records by them, and needs no token.
    pub(super) async fn commit(
        &mut self,
        rows: Vec<RecordBatch>,
        positions: &Positions,
    ) -> Result<()> {
        let mut orders = self.up_to.clone();
        for (split, position) in positions {
            let order = orders.entry(split.clone()).or_insert(position.order);
            *order = (*order).max(position.order);
        }
        let numbers: Positions = orders
            .iter()
            .map(|(split, &order)| (split.clone(), Position::at(order)))
            .collect();
        self.sink.commit(rows, &numbers, None).await?;
        self.up_to = orders;
        Ok(())
    }
}

/// Where commits go: the target, and the tables committed before it. A commit
/// in flight owns them until it has landed.
#[derive(Debug)]
pub(super) struct Sinks {
    pub(super) target: Target,
    pub(super) quarantine: SideTable,
    /// Late rows and state checkpoints, for an aggregation.
    pub(super) late: Option<SideTable>,
    /// The other streams' late rows, in the plan's order, when they can be late (a window join).
    pub(super) late_second: Vec<SideTable>,
    pub(super) state_store: Option<StateStore>,
    /// Commits since the target was last compacted.
    pub(super) commits_since_compaction: u64,
    /// Rows an aggregation emitted that the quarantine holds, by their payload's
    /// hash. They have no source offset to skip by: after a crash the restored
    /// state emits the window again, and an identical row is not quarantined twice.
    pub(super) emitted_quarantined: HashSet<u64>,
}

/// The hash an emitted row is known by in the quarantine.
pub(super) fn payload_hash(payload: &[u8]) -> u64 {
    twox_hash::XxHash64::oneshot(0, payload)
}

/// One commit's contents, taken from the pipeline when the commit starts.
#[derive(Debug)]
pub(super) struct CommitBatch {
    pub(super) rows: Vec<RecordBatch>,
    pub(super) rejected: Vec<Rejected>,
    pub(super) late: Vec<RecordBatch>,
    /// Rows of retried rows, whose offsets the side tables hold already.
    pub(super) retried_rejected: Vec<Rejected>,
    pub(super) retried_late: Vec<RecordBatch>,
    /// Late rows of the other streams, each with its position among them.
    pub(super) late_second: Vec<(usize, RecordBatch)>,
    /// Records of the inputs beside the source (a temporal join's changelog
    /// that are no version, rows of the streams joined to it), each with its stream.
    pub(super) side_rejected: Vec<(String, Rejected)>,
    /// Emitted rows that failed a quarantine rule (no source offset to skip by).
    pub(super) emitted_rejected: Vec<Rejected>,
    pub(super) positions: Positions,
    /// The state checkpoint, with the keyed state's files to upload first.
    pub(super) checkpoint: Option<PendingCheckpoint>,
    /// Quality results of this commit, recorded once it has landed.
    pub(super) results: Vec<CheckResult>,
    /// The watermark the commit's windows were emitted at.
    pub(super) watermark: Option<i64>,
}

/// What a commit in flight needs to know besides its batch.
#[derive(Debug, Clone)]
pub(super) struct CommitContext {
    pub(super) pipeline: String,
    pub(super) stream: String,
    /// The streams joined to the source, in the plan's order.
    pub(super) second_streams: Vec<String>,
    pub(super) stats: Arc<TableStats>,
    pub(super) results: Option<ResultsLog>,
    pub(super) compact_every: u64,
}

impl Sinks {
    /// Quarantine, late rows, state checkpoint, then the target with every position.
    pub(super) async fn commit(&mut self, batch: CommitBatch, ctx: &CommitContext) -> Result<()> {
        let started = std::time::Instant::now();
        let CommitBatch {
            rows,
            rejected,
            late,
            retried_rejected,
            retried_late,
            late_second,
            side_rejected,
            emitted_rejected,
            positions,
            checkpoint,
            mut results,
            watermark,
        } = batch;
        let stream = &ctx.stream;
        let quarantine = &self.quarantine;
        let emitted_fresh: Vec<Rejected> = emitted_rejected
            .into_iter()
            .filter(|r| {
                let hash = payload_hash(r.record.payload.as_deref().unwrap_or_default());
                !self.emitted_quarantined.contains(&hash)
            })
            .collect();
        let emitted_hashes: Vec<u64> = emitted_fresh
            .iter()
            .map(|r| payload_hash(r.record.payload.as_deref().unwrap_or_default()))
            .collect();
        let fresh: Vec<Rejected> = rejected
            .into_iter()
            .filter(|r| quarantine.is_new(stream, r.record.partition, r.record.offset))
            .chain(retried_rejected)
            .chain(emitted_fresh)
            .collect();
        // Each stream beside the source, with its records the quarantine does not hold yet.
        let mut side_fresh: BTreeMap<String, Vec<Rejected>> = BTreeMap::new();
        for (side, rejected) in side_rejected {
            if quarantine.is_new(&side, rejected.record.partition, rejected.record.offset) {
                side_fresh.entry(side).or_default().push(rejected);
            }
        }
        let side_count: usize = side_fresh.values().map(Vec::len).sum();
        let mut quarantined = Vec::new();
        if !fresh.is_empty() {
            quarantined.push(quarantine::rows(&ctx.pipeline, stream, &fresh, now_ms()));
        }
        for (side, rejected) in &side_fresh {
            quarantined.push(quarantine::rows(&ctx.pipeline, side, rejected, now_ms()));
        }
        if !quarantined.is_empty() {
            self.quarantine.commit(quarantined, &positions).await?;
            self.emitted_quarantined.extend(emitted_hashes);
            ctx.stats
                .quarantined_rows
                .fetch_add((fresh.len() + side_count) as u64, Ordering::Relaxed);
        }
        if let Some(late_table) = &mut self.late {
            let mut late_rows = fresh_late_rows(late_table, stream, late)?;
            late_rows.extend(retried_late);
            commit_late(late_table, late_rows, &positions, &ctx.stats).await?;
        }
        for (at, (late_table, side)) in self
            .late_second
            .iter_mut()
            .zip(&ctx.second_streams)
            .enumerate()
        {
            let rows = late_second
                .iter()
                .filter(|(of, _)| *of == at)
                .map(|(_, rows)| rows.clone())
                .collect();
            let late_rows = fresh_late_rows(late_table, side, rows)?;
            commit_late(late_table, late_rows, &positions, &ctx.stats).await?;
        }
        let mut checkpoint = checkpoint;
        let state_id = match (&self.state_store, checkpoint.as_mut()) {
            (Some(store), Some(pending)) => {
                let bytes = pending.upload().await?;
                store.write(pending.id, bytes).await?;
                Some(pending.id)
            }
            _ => None,
        };
        // Crash points for the exactly-once tests (FAILPOINTS=name=return aborts the process here).
        fail::fail_point!("commit-between-quarantine-and-target", |_| {
            std::process::abort()
        });
        let count: u64 = rows.iter().map(|b| b.num_rows() as u64).sum();
        self.target.carry_watermark(watermark);
        let version = self.target.commit(rows, &positions, state_id).await?;
        fail::fail_point!("commit-after-target", |_| std::process::abort());
        if let (Some(store), Some(id)) = (&self.state_store, state_id) {
            store.forget_before(id).await;
        }
        if let Some(pending) = &checkpoint {
            pending.landed().await;
        }
        if let Some(files) = self.target.files() {
            ctx.stats.files.store(files as i64, Ordering::Relaxed);
        }
        ctx.stats.record_commit(count, version, watermark);
        if let Some(log) = &ctx.results {
            for result in &mut results {
                result.commit_version = version;
            }
            log.record(results);
        }
        tracing::debug!(
            pipeline = ctx.pipeline,
            rows = count,
            ms = started.elapsed().as_millis() as u64,
            "committed"
        );
        self.commits_since_compaction += 1;
        if ctx.compact_every > 0 && self.commits_since_compaction >= ctx.compact_every {
            self.target.compact().await?;
            self.commits_since_compaction = 0;
        }
        Ok(())
    }
}

/// Commits late rows, if there are any, with the commit's positions.
async fn commit_late(
    table: &mut SideTable,
    rows: Vec<RecordBatch>,
    positions: &Positions,
    stats: &TableStats,
) -> Result<()> {
    let count: usize = rows.iter().map(RecordBatch::num_rows).sum();
    if count > 0 {
        table.commit(rows, positions).await?;
        stats.late_rows.fetch_add(count as u64, Ordering::Relaxed);
    }
    Ok(())
}

/// Late rows the late table does not hold yet (it may be ahead after a crash).
pub(super) fn fresh_late_rows(
    late: &SideTable,
    stream: &str,
    batches: Vec<RecordBatch>,
) -> Result<Vec<RecordBatch>> {
    batches
        .into_iter()
        .map(|batch| {
            let partitions = batch
                .column_by_name("_partition")
                .and_then(|c| {
                    c.as_any()
                        .downcast_ref::<arrow::array::Int32Array>()
                        .cloned()
                })
                .expect("late rows have _partition");
            let offsets = batch
                .column_by_name("_offset")
                .and_then(|c| {
                    c.as_any()
                        .downcast_ref::<arrow::array::Int64Array>()
                        .cloned()
                })
                .expect("late rows have _offset");
            let mask: arrow::array::BooleanArray = (0..batch.num_rows())
                .map(|row| Some(late.is_new(stream, partitions.value(row), offsets.value(row))))
                .collect();
            Ok(arrow::compute::filter_record_batch(&batch, &mask)?)
        })
        .collect()
}

/// A pipeline's target: a Delta table (append or upsert), a MySQL/TiDB serving
/// table (upsert), a Kafka topic (JSON, in transactions), or a blackhole
/// (which keeps no offsets: a run starts from the beginning).
pub(super) type Target = Box<dyn TargetSink>;

#[async_trait::async_trait]
impl crate::source::CommittedPositions for Box<dyn TargetSink> {
    async fn committed(&mut self, stream: &str, split: i32) -> Result<Option<Position>> {
        self.committed_position(stream, split).await
    }

    async fn record_starts(&mut self, starts: &Positions) -> Result<()> {
        let state = self.committed_state().await?;
        self.commit(Vec::new(), starts, state).await.map(|_| ())
    }
}
