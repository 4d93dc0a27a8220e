//! The keyed state of a run's operators: one working store on local disk per
//! run, under `.strata/keyed/<pipeline>/`, rebuilt from the checkpoint at
//! every start; each commit seals what changed and uploads it before the
//! checkpoint that names it is written.
//!
//! ```text
//!   open:    StateBackend (budget: [engine] state-memory-mb) ──▶ each keyed operator's Slot
//!   restore: checkpoint entry (a manifest) ──▶ Slot::restore: download base and deltas
//!   commit:  Slot::seal(k) ──▶ Sealed ──(commit task)──▶ upload ──▶ entry in checkpoint k ──▶ write
//!            target commit lands ──▶ Sealed::landed: files no manifest names are deleted
//! ```

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::checkpoint::Checkpoint;
use crate::error::Result;
use crate::keyed::{MemoryBudget, RemoteFiles, Sealed, StateBackend};
use crate::plan::StreamPlan;
use crate::state::StateStore;
use crate::transform::CompiledPlan;

/// Runs opened by this process, for their working stores' folder names.
static RUNS: AtomicU64 = AtomicU64::new(0);

/// A run's working store folder, removed when the run ends (after the
/// operators, which hold the store, have gone).
#[derive(Debug)]
pub(super) struct RunDir(PathBuf);

impl Drop for RunDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Opens a working store for the plan's keyed operators, if it has any, and
/// gives each its state, empty.
pub(super) fn open(
    plan: &CompiledPlan,
    state_dir: &Path,
    pipeline: &str,
    memory_mb: u64,
    store: &StateStore,
) -> Result<Option<RunDir>> {
    if plan.keyed_operators().next().is_none() {
        return Ok(None);
    }
    let dir = run_dir(state_dir, pipeline)?;
    let backend = StateBackend::open(&dir, MemoryBudget::megabytes(memory_mb))?;
    for (id, slot) in plan.keyed_operators() {
        let files = RemoteFiles::new(store.object_store(), store.dir(), id);
        slot.attach(backend.keyed(id, files)?);
    }
    Ok(Some(RunDir(dir)))
}

/// A folder of its own for this run (`<pid>-<n>`): an earlier run of the same
/// pipeline in this process may not have let go of its store yet. Folders of
/// processes that are gone are left over from a crash, and go; those of a
/// process still running (another `strata` on the same project) stay.
fn run_dir(state_dir: &Path, pipeline: &str) -> Result<PathBuf> {
    let pipeline_dir = state_dir.join("keyed").join(pipeline);
    let pid = std::process::id();
    if let Ok(entries) = std::fs::read_dir(&pipeline_dir) {
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let owner = name
                .split_once('-')
                .and_then(|(owner, _)| owner.parse().ok());
            if owner.is_some_and(|owner: u32| owner != pid && !process_alive(owner)) {
                let _ = std::fs::remove_dir_all(entry.path());
            }
        }
    }
    let run = RUNS.fetch_add(1, Ordering::Relaxed);
    Ok(pipeline_dir.join(format!("{pid}-{run}")))
}

/// Whether process `pid` is running; where that cannot be told (no /proc),
/// it is taken to be, and its folder stays.
fn process_alive(pid: u32) -> bool {
    let proc = Path::new("/proc");
    !proc.is_dir() || proc.join(pid.to_string()).exists()
}

/// Waits for the keyed operators' compactions in flight, at a clean end of the run.
pub(super) async fn settle(plan: &CompiledPlan) -> Result<()> {
    for (_, slot) in plan.keyed_operators() {
        slot.settle().await?;
    }
    Ok(())
}

/// Drops the keyed operators' record of what changed, for a run that keeps no checkpoints.
pub(super) fn forget_changes(plan: &CompiledPlan) -> Result<()> {
    for (_, slot) in plan.keyed_operators() {
        slot.with(|state| state.forget_changes())?;
    }
    Ok(())
}

/// One keyed operator's sealed checkpoint, waiting to be uploaded.
#[derive(Debug)]
pub(super) struct SealedEntry {
    id: String,
    fingerprint: String,
    sealed: Sealed,
}

/// Seals every keyed operator's changes as checkpoint `checkpoint`.
pub(super) fn seal(
    plan: &CompiledPlan,
    stream_plan: &StreamPlan,
    checkpoint: i64,
) -> Result<Vec<SealedEntry>> {
    plan.keyed_operators()
        .map(|(id, slot)| {
            let fingerprint = stream_plan
                .operator(id)
                .and_then(|op| op.state.as_ref())
                .map(|state| state.fingerprint.clone())
                .expect("the plan declares every keyed operator's state");
            Ok(SealedEntry {
                id: id.to_string(),
                fingerprint,
                sealed: slot.seal(checkpoint)?,
            })
        })
        .collect()
}

/// A checkpoint on its way: the map of the state kept whole, and the keyed
/// operators' files, uploaded before the map is written.
#[derive(Debug)]
pub(super) struct PendingCheckpoint {
    pub(super) id: i64,
    pub(super) map: Checkpoint,
    pub(super) keyed: Vec<SealedEntry>,
}

impl PendingCheckpoint {
    /// Uploads the keyed operators' new files, and encodes the whole map.
    pub(super) async fn upload(&mut self) -> Result<Vec<u8>> {
        for entry in &self.keyed {
            let manifest = entry.sealed.upload().await?;
            self.map.put(&entry.id, &entry.fingerprint, manifest);
        }
        Ok(self.map.encode())
    }

    /// Once the commit has landed: deletes the keyed files no manifest names.
    pub(super) async fn landed(&self) {
        for entry in &self.keyed {
            if let Err(err) = entry.sealed.landed().await {
                tracing::warn!(operator = entry.id, %err, "keyed state files replaced by this commit could not be deleted; the next commit tries again");
            }
        }
    }
}

/// Restores each keyed operator from its entry of a checkpoint that fits the plan.
pub(super) async fn restore(plan: &CompiledPlan, checkpoint: &mut Checkpoint) -> Result<()> {
    for (id, slot) in plan.keyed_operators() {
        if let Some(entry) = checkpoint.take(id) {
            slot.restore(&entry.bytes).await?;
        }
    }
    Ok(())
}
