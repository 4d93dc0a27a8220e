//! `strata bench state`: a keyed operator (a count and a sum per key, as a
//! GROUP BY keeps them) through the keyed state backend and the checkpoint
//! path a pipeline's commit takes, over 1 M and then 10 M keys.
//!
//! ```text
//!   load 1 M keys ─▶ quiet ─▶ commits of `changed` random keys (get + put) ─▶ commit cost at 1 M
//!   load to 10 M  ─▶ quiet ─▶ the same commits                              ─▶ commit cost at 10 M   (ratio)
//!   a fresh store ─▶ restore from the last checkpoint ─▶ every key and value compared (digest)
//! ```
//!
//! A commit is what the runner does at each commit: seal the changed keys
//! into a delta file, upload it, write the checkpoint map naming it, delete
//! files no landed checkpoint names. The store is a local folder, as a
//! target on local disk. Before the commits are timed, the working store's
//! own compactions of the keys just loaded are left to finish ("quiet": the
//! process uses under a tenth of a core for a second), so that each phase
//! measures a running pipeline's commits, not the aftermath of a bulk load.

use std::sync::Arc;
use std::time::Instant;

use anyhow::Context;
use deltalake::logstore::ObjectStoreRef;
use deltalake::logstore::object_store::local::LocalFileSystem;
use serde::Serialize;
use strata_pipelines::checkpoint::Checkpoint;
use strata_pipelines::keyed::{KeyedState, MemoryBudget, RemoteFiles, StateBackend};
use strata_pipelines::state::StateStore;

use super::{cpu_seconds, peak_rss_mb, reset_peak_rss, rss_mb};

const OPERATOR: &str = "aggregate";
const PIPELINE: &str = "bench_state";
const LOAD_PER_COMMIT: u64 = 100_000;
/// Keys written at once while loading, as a pipeline writes a batch's rows.
const LOAD_PER_WRITE: u64 = 8_192;

#[derive(Debug, Clone, Copy)]
pub struct StateOptions {
    /// Keys of the first and the second phase.
    pub small_keys: u64,
    pub large_keys: u64,
    /// Keys changed per commit, and commits measured per phase.
    pub changed: u64,
    pub commits: u64,
    pub memory_mb: u64,
    pub progress: bool,
}

#[derive(Debug, Serialize)]
pub struct Phase {
    pub keys: u64,
    /// Median milliseconds of a commit: seal, upload, checkpoint, clean-up.
    pub commit_ms: f64,
    /// Median milliseconds of reading and writing the changed keys.
    pub update_ms: f64,
    /// Median bytes a commit uploads.
    pub commit_bytes: u64,
    /// The state's files at the last commit (base and deltas).
    pub state_files: usize,
    pub state_mb: f64,
    /// Peak resident memory while the phase's keys were loaded and changed.
    pub peak_rss_mb: f64,
    /// Seconds the store took to go quiet after the load.
    pub quiet_after_s: f64,
}

#[derive(Debug, Serialize)]
pub struct StateReport {
    pub memory_budget_mb: u64,
    /// Resident memory before the store opened.
    pub baseline_rss_mb: f64,
    pub changed_per_commit: u64,
    pub small: Phase,
    pub large: Phase,
    /// Commit cost at the large state over the small one (1.0: independent of state size).
    pub commit_ratio: f64,
    pub restore_s: f64,
    pub restored_keys: u64,
    /// Every key and value of the restored store equals the running one's.
    pub restored_exactly: bool,
    pub restore_peak_rss_mb: f64,
    /// Every phase's peak, less the memory before the store opened, is within the budget.
    pub within_budget: bool,
}

/// splitmix64: a deterministic stream of keys to change.
fn next(seed: &mut u64) -> u64 {
    *seed = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *seed;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

fn key(id: u64) -> [u8; 8] {
    id.to_be_bytes()
}

/// A group's count and sum, as an aggregation keeps them.
fn value(count: u64, sum: u64) -> [u8; 16] {
    let mut bytes = [0; 16];
    bytes[..8].copy_from_slice(&count.to_le_bytes());
    bytes[8..].copy_from_slice(&sum.to_le_bytes());
    bytes
}

struct Bench {
    store: ObjectStoreRef,
    checkpoints: StateStore,
    next_checkpoint: i64,
    last_entry: Vec<u8>,
    options: StateOptions,
}

impl Bench {
    fn remote(&self) -> RemoteFiles {
        RemoteFiles::new(
            self.store.clone(),
            &format!("_strata_state/{PIPELINE}"),
            OPERATOR,
        )
    }

    /// One commit as the runner makes it; returns its time and uploaded bytes.
    async fn commit(&mut self, state: &mut KeyedState) -> anyhow::Result<(f64, u64)> {
        let started = Instant::now();
        let id = self.next_checkpoint;
        self.next_checkpoint += 1;
        let sealed = state.seal(id)?;
        let bytes = sealed.new_bytes();
        let manifest = sealed.manifest.clone();
        let entry = sealed.upload().await?;
        let mut checkpoint = Checkpoint::default();
        checkpoint.put(OPERATOR, "bench", entry.clone());
        self.checkpoints.write(id, checkpoint.encode()).await?;
        // (The target's transaction would name checkpoint `id` here.)
        self.checkpoints.forget_before(id).await;
        state.forget_unnamed(&manifest).await?;
        self.last_entry = entry;
        Ok((started.elapsed().as_secs_f64() * 1000.0, bytes))
    }

    /// Adds keys `from..to` (count 1, sum = id).
    async fn load(&mut self, state: &mut KeyedState, from: u64, to: u64) -> anyhow::Result<()> {
        let mut start = from;
        while start < to {
            let end = (start + LOAD_PER_COMMIT).min(to);
            for chunk in (start..end).step_by(LOAD_PER_WRITE as usize) {
                let entries: Vec<([u8; 8], [u8; 16])> = (chunk..(chunk + LOAD_PER_WRITE).min(end))
                    .map(|id| (key(id), value(1, id)))
                    .collect();
                state.write_all(entries.iter().map(|(k, v)| (&k[..], Some(&v[..]))))?;
            }
            self.commit(state).await?;
            start = end;
            if self.options.progress {
                eprint!("\r  loaded {end} of {to} keys");
            }
        }
        if self.options.progress {
            eprintln!();
        }
        // A compaction started while loading finishes before the measurement.
        state.settle().await?;
        self.commit(state).await?;
        Ok(())
    }

    /// Waits until the process uses under a tenth of a core for a second (the
    /// working store's compactions of loaded keys are done), at most a minute;
    /// returns the seconds waited.
    async fn quiet() -> anyhow::Result<f64> {
        const WINDOW: std::time::Duration = std::time::Duration::from_secs(1);
        let started = Instant::now();
        while started.elapsed() < std::time::Duration::from_secs(60) {
            let before = cpu_seconds()?;
            tokio::time::sleep(WINDOW).await;
            if cpu_seconds()? - before < 0.1 * WINDOW.as_secs_f64() {
                break;
            }
        }
        Ok(started.elapsed().as_secs_f64())
    }

    /// `commits` commits of `changed` random keys each, read and written.
    async fn measure(
        &mut self,
        state: &mut KeyedState,
        keys: u64,
        seed: &mut u64,
    ) -> anyhow::Result<Phase> {
        let quiet_after_s = Self::quiet().await?;
        let mut commit_times = Vec::new();
        let mut update_times = Vec::new();
        let mut commit_bytes = Vec::new();
        for _ in 0..self.options.commits {
            let started = Instant::now();
            for _ in 0..self.options.changed {
                let id = next(seed) % keys;
                let old = state.get(&key(id))?.context("a loaded key is missing")?;
                let count = u64::from_le_bytes(old[..8].try_into()?);
                let sum = u64::from_le_bytes(old[8..].try_into()?);
                state.put(&key(id), &value(count + 1, sum.wrapping_add(id)))?;
            }
            update_times.push(started.elapsed().as_secs_f64() * 1000.0);
            let (ms, bytes) = self.commit(state).await?;
            commit_times.push(ms);
            commit_bytes.push(bytes as f64);
        }
        let manifest = state.manifest();
        Ok(Phase {
            keys,
            commit_ms: median(commit_times),
            update_ms: median(update_times),
            commit_bytes: median(commit_bytes) as u64,
            state_files: manifest.files.len(),
            state_mb: manifest.bytes() as f64 / 1e6,
            peak_rss_mb: peak_rss_mb()?,
            quiet_after_s,
        })
    }
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values.get(values.len() / 2).copied().unwrap_or(0.0)
}

pub async fn state(options: StateOptions) -> anyhow::Result<StateReport> {
    anyhow::ensure!(
        options.small_keys > 0 && options.large_keys > options.small_keys,
        "--large-keys must be more than --small-keys"
    );
    let dir = tempfile::tempdir()?;
    std::fs::create_dir_all(dir.path().join("target"))?;
    let store: ObjectStoreRef =
        Arc::new(LocalFileSystem::new_with_prefix(dir.path().join("target"))?);
    let location = dir.path().join("target").display().to_string();
    let budget = MemoryBudget::megabytes(options.memory_mb);
    let baseline_rss_mb = rss_mb()?;
    let mut bench = Bench {
        checkpoints: StateStore::new(store.clone(), &location, PIPELINE),
        store,
        next_checkpoint: 1,
        last_entry: Vec::new(),
        options,
    };
    let backend = StateBackend::open(&dir.path().join("work-1"), budget)?;
    let mut state = backend.keyed(OPERATOR, bench.remote())?;
    let mut seed = 7;

    reset_peak_rss();
    bench.load(&mut state, 0, options.small_keys).await?;
    let small = bench
        .measure(&mut state, options.small_keys, &mut seed)
        .await?;
    reset_peak_rss();
    bench
        .load(&mut state, options.small_keys, options.large_keys)
        .await?;
    let large = bench
        .measure(&mut state, options.large_keys, &mut seed)
        .await?;
    state.settle().await?;
    let (live_keys, live_digest) = state.digest()?;
    drop(state);
    drop(backend);

    reset_peak_rss();
    if options.progress {
        eprintln!("  restoring {live_keys} keys from the last checkpoint");
    }
    let started = Instant::now();
    let backend = StateBackend::open(&dir.path().join("work-2"), budget)?;
    let mut restored = backend.keyed(OPERATOR, bench.remote())?;
    let restored_keys = restored.restore(&bench.last_entry).await?;
    let restore_s = started.elapsed().as_secs_f64();
    let restore_peak_rss_mb = peak_rss_mb()?;
    let (count, restored_digest) = restored.digest()?;
    let peak = large
        .peak_rss_mb
        .max(small.peak_rss_mb)
        .max(restore_peak_rss_mb);
    Ok(StateReport {
        within_budget: peak - baseline_rss_mb <= options.memory_mb as f64,
        memory_budget_mb: options.memory_mb,
        baseline_rss_mb,
        changed_per_commit: options.changed,
        commit_ratio: large.commit_ms / small.commit_ms.max(f64::EPSILON),
        small,
        large,
        restore_s,
        restored_keys,
        restored_exactly: count == live_keys && restored_digest == live_digest,
        restore_peak_rss_mb,
    })
}
