//! Keyed state: operator state that grows with the number of keys (groups,
//! join sides, dedup, Top-N), kept incrementally.
//!
//! ```text
//!   operator ──get / put / delete(key)──▶ working store: an LSM tree on local disk (fjall), one per run
//!                                           values:  key group ‖ key → value      memory: the budget,
//!                                           changed: keys written since the last   the rest on disk
//!                                                    checkpoint, with what was written
//!   checkpoint k ──seal──▶ delta-k: the changed keys, sorted (a deleted key: NULL) ──upload──▶ the
//!                          manifest k = [base-j, delta-(j+1) … delta-k]: the operator's checkpoint entry
//!   deltas outgrow half the base ──background──▶ base-k: the local copies of base-j and the deltas
//!                                                 merged, uploaded; the next manifest starts from it,
//!                                                 and the files it replaces are deleted
//!   16 deltas in a row ──background──▶ run-k: those deltas merged, deleted keys kept, in their place
//!   restart ──manifest of the landed commit──▶ download base, deltas in order ──▶ a fresh working store
//! ```
//!
//! A commit costs what changed since the last one, not the whole state: the
//! cost of a commit of 10 k keys is the same over 1 M or 10 M keys (`strata
//! bench state`). The last landed checkpoint stays the only truth: the working
//! store is a cache on local disk, rebuilt from the checkpoint's files on
//! every start (written for one run, it is deleted when the run ends). It
//! keeps a local copy of every file the manifest names, which compaction
//! merges without reading the store, so no snapshot of it stays open.
//!
//! Keys are laid out by key group (a hash of the key, [`KEY_GROUPS`] of them,
//! as Flink's maximum parallelism): every file is sorted by group, so a range
//! of groups, the unit a pipeline split across workers moves, is one range of
//! every file and of the working store.

mod expiry;
mod file;
mod hot;
mod manifest;
mod merge;
mod remote;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use fjall::{Database, Keyspace, KeyspaceCreateOptions};

pub use expiry::{Counted, Expiry, counted, push_part, read_counted, take_part};
pub use manifest::{FileKind, Manifest, StateFile};
pub use remote::RemoteFiles;

use crate::error::{PipelineError, Result};
use hot::{HeapShare, Hot, Merged};

/// How many key groups keys are hashed into.
pub const KEY_GROUPS: u16 = 128;

/// The longest key an operator keeps state under: the store refuses keys
/// over 64 KiB, and a key this long is a row's mistake, not a key.
pub const MAX_KEY_BYTES: usize = 16 * 1024;

/// A count kept as a key's value (8 bytes, big-endian); `what` names it in errors.
pub fn decode_count(stored: &[u8], what: &str) -> Result<u64> {
    let bytes: [u8; 8] = stored.try_into().map_err(|_| {
        PipelineError::State(format!(
            "{what} of {} bytes in keyed state (8 expected)",
            stored.len()
        ))
    })?;
    Ok(u64::from_be_bytes(bytes))
}

/// The key group of a key: stable across versions and machines.
pub fn key_group(key: &[u8]) -> u16 {
    (twox_hash::XxHash64::oneshot(0, key) % u64::from(KEY_GROUPS)) as u16
}

fn stored_key(key: &[u8]) -> Vec<u8> {
    with_group(key_group(key), key)
}

fn split_stored(stored: &[u8]) -> (u16, &[u8]) {
    (u16::from_be_bytes([stored[0], stored[1]]), &stored[2..])
}

fn with_group(group: u16, key: &[u8]) -> Vec<u8> {
    let mut stored = Vec::with_capacity(key.len() + 2);
    stored.extend_from_slice(&group.to_be_bytes());
    stored.extend_from_slice(key);
    stored
}

/// A change as the changed keys keep it: `1 ‖ value` for a put, `0` for a delete.
fn changed_value(value: Option<&[u8]>) -> Vec<u8> {
    match value {
        Some(value) => [&[1][..], value].concat(),
        None => vec![0],
    }
}

/// The value a change wrote (`None`: the key was deleted).
fn written(change: &[u8]) -> Option<&[u8]> {
    match change.split_first() {
        Some((1, value)) => Some(value),
        _ => None,
    }
}

impl From<fjall::Error> for PipelineError {
    fn from(err: fjall::Error) -> Self {
        PipelineError::State(format!("the working store of keyed state: {err}"))
    }
}

/// What one pipeline run's keyed state should hold in memory; the rest is on
/// local disk. Three eighths of it hold the newest entries on the heap (see
/// `hot`), an eighth caches the working store's blocks (`strata bench state
/// --memory-mb`); the process's peak is not bounded by it yet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemoryBudget {
    pub bytes: u64,
}

impl MemoryBudget {
    pub fn megabytes(mb: u64) -> Self {
        Self {
            bytes: mb * 1024 * 1024,
        }
    }
}

/// One run's working store: every keyed operator's state on local disk.
#[derive(Clone)]
pub struct StateBackend {
    db: Database,
    dir: PathBuf,
    budget: MemoryBudget,
    operators: Arc<AtomicUsize>,
    heap: Arc<HeapShare>,
}

impl std::fmt::Debug for StateBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StateBackend")
            .field("dir", &self.dir)
            .field("budget", &self.budget)
            .finish()
    }
}

impl StateBackend {
    /// Opens an empty working store in `dir`. Whatever is there is left over
    /// from an earlier run and is removed: the checkpoint is the truth.
    pub fn open(dir: &Path, budget: MemoryBudget) -> Result<Self> {
        let io = |source| file::io_error(dir, source);
        if dir.exists() {
            std::fs::remove_dir_all(dir).map_err(io)?;
        }
        std::fs::create_dir_all(dir.join("files")).map_err(io)?;
        // An eighth of the budget caches blocks, three eighths hold the hot
        // entries (see `hot`); memtables and what is not bounded yet take the rest.
        let db = Database::builder(dir.join("store"))
            .cache_size(budget.bytes / 8)
            .manual_journal_persist(true)
            .temporary(true)
            .open()?;
        Ok(Self {
            db,
            dir: dir.to_path_buf(),
            budget,
            operators: Arc::default(),
            heap: HeapShare::new(budget.bytes / 8 * 3),
        })
    }

    /// The keyed state of one operator, empty, its files in `remote`.
    pub fn keyed(&self, operator: &str, remote: RemoteFiles) -> Result<KeyedState> {
        let ordinal = self.operators.fetch_add(1, Ordering::Relaxed);
        // A memtable's limit counts keys and values, not the skip list's
        // nodes (2.5 times more for small entries), and a keyspace holds up
        // to five before writes wait for flushes: 1/128 of the budget each.
        let memtable = (self.budget.bytes / 128).max(1024 * 1024);
        // Every table's bloom filter stays in memory (about a byte and a half a
        // key): a read that misses the hot entries then reads one data block, not
        // a whole filter block the small block cache has evicted.
        let values = self.db.keyspace(&format!("values-{ordinal}"), || {
            KeyspaceCreateOptions::default()
                .manual_journal_persist(true)
                .max_memtable_size(memtable)
                .filter_block_pinning_policy(fjall::config::PinningPolicy::all(true))
        })?;
        let changed = self.db.keyspace(&format!("changed-{ordinal}"), || {
            KeyspaceCreateOptions::default()
                .manual_journal_persist(true)
                .max_memtable_size(memtable / 2)
        })?;
        let local_files = self.dir.join("files").join(ordinal.to_string());
        std::fs::create_dir_all(&local_files)
            .map_err(|source| file::io_error(&local_files, source))?;
        Ok(KeyedState {
            operator: operator.to_string(),
            _db: self.db.clone(),
            values,
            changed,
            hot: Hot::new(self.heap.clone()),
            spilled: Spilled::default(),
            local_files,
            remote,
            manifest: Manifest::default(),
            compaction: None,
        })
    }
}

/// How many deltas in a row are merged into a run: the files a restart reads,
/// and a compaction merges at once, stay few while the base is much larger
/// than what changes between compactions.
const DELTAS_PER_RUN: usize = 16;

/// What the working store holds beside the hot entries.
#[derive(Debug, Default, Clone, Copy)]
struct Spilled {
    /// Entries spilled or restored: reads that miss the hot entries go to the store.
    values: bool,
    /// Keys changed since the last seal, spilled: the next seal reads them.
    changes: bool,
}

/// A base or a run merged in the background: in flight (with the name of the
/// file it writes), or done and waiting for the next seal to put it in the manifest.
enum Compaction {
    Running(String, tokio::task::JoinHandle<Result<StateFile>>),
    Done(StateFile),
}

impl Compaction {
    /// The name of the file it writes or wrote.
    fn file_name(&self) -> String {
        match self {
            Compaction::Running(name, _) => name.clone(),
            Compaction::Done(file) => file.name(),
        }
    }
}

/// One operator's keyed state: point reads and writes, sealed into a delta at
/// every checkpoint.
pub struct KeyedState {
    operator: String,
    /// Keeps the working store open (a temporary one is deleted with its last handle).
    _db: Database,
    /// The entries spilled from `hot` or restored, under those in `hot`.
    values: Keyspace,
    /// The keys spilled since the last seal, with what they held.
    changed: Keyspace,
    hot: Hot,
    spilled: Spilled,
    /// Local copies of the files the manifest names (and of a base being
    /// compacted), which compaction merges.
    local_files: PathBuf,
    remote: RemoteFiles,
    /// The files of the last sealed checkpoint.
    manifest: Manifest,
    compaction: Option<Compaction>,
}

impl std::fmt::Debug for KeyedState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyedState")
            .field("operator", &self.operator)
            .field("manifest", &self.manifest)
            .finish()
    }
}

/// A sealed checkpoint of one operator: the files to upload before the
/// checkpoint is written, and the manifest that becomes its entry.
#[derive(Debug)]
pub struct Sealed {
    pub manifest: Manifest,
    uploads: Vec<(PathBuf, StateFile)>,
    remote: RemoteFiles,
    /// The file a compaction in flight writes, which no manifest names yet.
    compacting: Option<String>,
}

impl Sealed {
    /// Uploads the new files; returns the entry's bytes for the checkpoint map.
    pub async fn upload(&self) -> Result<Vec<u8>> {
        for (local, file) in &self.uploads {
            self.remote.upload(local, file).await?;
        }
        Ok(self.manifest.encode(KEY_GROUPS))
    }

    /// Once the commit that names this checkpoint has landed: deletes the
    /// files its manifest no longer names.
    pub async fn landed(&self) -> Result<usize> {
        self.remote
            .forget_unnamed(&self.manifest, self.compacting.as_deref())
            .await
    }

    /// The bytes this checkpoint adds to the state's files.
    pub fn new_bytes(&self) -> u64 {
        self.uploads.iter().map(|(_, f)| f.bytes).sum()
    }
}

impl KeyedState {
    pub fn get(&self, key: &[u8]) -> Result<Option<fjall::Slice>> {
        self.get_stored(&stored_key(key))
    }

    fn get_stored(&self, stored: &[u8]) -> Result<Option<fjall::Slice>> {
        match self.hot.get(stored) {
            Some(value) => Ok(value.cloned()),
            None if self.spilled.values => Ok(self.values.get(stored)?),
            None => Ok(None),
        }
    }

    pub fn put(&mut self, key: &[u8], value: &[u8]) -> Result<()> {
        self.write_all([(key, Some(value))])
    }

    pub fn delete(&mut self, key: &[u8]) -> Result<()> {
        self.write_all([(key, None)])
    }

    /// Writes many keys at once: `(key, Some(value))` puts, `(key, None)` deletes.
    pub fn write_all<'a>(
        &mut self,
        entries: impl IntoIterator<Item = (&'a [u8], Option<&'a [u8]>)>,
    ) -> Result<()> {
        self.write_grouped(
            entries
                .into_iter()
                .map(|(key, value)| (key_group(key), key, value)),
        )
    }

    /// Writes keys into the key groups given, `(group, key, value)`: keys
    /// whose group is that of a part they share (a join's rows, grouped by
    /// their join key), so that [`Self::scan`] finds them together.
    pub fn write_grouped<'a>(
        &mut self,
        entries: impl IntoIterator<Item = (u16, &'a [u8], Option<&'a [u8]>)>,
    ) -> Result<()> {
        for (group, key, value) in entries {
            self.hot.write(with_group(group, key), value);
        }
        if self.hot.over_share() {
            self.spill()?;
        }
        Ok(())
    }

    /// Moves every hot entry into the working store, bulk-loaded past its
    /// memtables, and the keys changed since the last seal into its changed keys.
    fn spill(&mut self) -> Result<()> {
        let (all, dirty) = self.hot.spill();
        let mut values = self.values.start_ingestion()?;
        for (stored, value) in all {
            match value {
                Some(value) => values.write(stored, value)?,
                None if self.spilled.values => values.write_tombstone(stored)?,
                None => {}
            }
        }
        values.finish()?;
        self.spilled.values = true;
        if !dirty.is_empty() {
            let mut changed = self.changed.start_ingestion()?;
            for (stored, value) in dirty {
                changed.write(stored, changed_value(value.as_deref()))?;
            }
            changed.finish()?;
            self.spilled.changes = true;
        }
        Ok(())
    }

    /// Forgets which keys changed since the last checkpoint, for state that is
    /// never checkpointed (a run that keeps no offsets).
    pub fn forget_changes(&mut self) -> Result<()> {
        self.hot.seal(self.spilled.values);
        if self.spilled.changes {
            self.changed.clear()?;
            self.spilled.changes = false;
        }
        Ok(())
    }

    /// The value of a key written into `group` (see [`Self::write_grouped`]).
    pub fn get_grouped(&self, group: u16, key: &[u8]) -> Result<Option<fjall::Slice>> {
        self.get_stored(&with_group(group, key))
    }

    /// The keys of `group` that begin with `prefix`, with their values, in key order.
    pub fn scan(
        &self,
        group: u16,
        prefix: &[u8],
    ) -> impl Iterator<Item = Result<(Vec<u8>, fjall::Slice)>> + '_ {
        let start = with_group(group, prefix);
        let store = self
            .spilled
            .values
            .then(|| self.values.prefix(&start).map(|guard| guard.into_inner()));
        merged(self.hot.prefixed(start), store.into_iter().flatten())
    }

    /// Every key and value of one key group, in key order.
    pub fn group(&self, group: u16) -> impl Iterator<Item = Result<(Vec<u8>, fjall::Slice)>> + '_ {
        self.scan(group, &[])
    }

    /// The files of the last sealed checkpoint.
    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    /// Seals the keys written since the last checkpoint into a delta file
    /// (sorted by key group and key), and starts a compaction when the deltas
    /// have outgrown half the base (into a base), or when [`DELTAS_PER_RUN`]
    /// deltas follow one another (into a run). Fast: its cost is the number of
    /// changed keys.
    pub fn seal(&mut self, checkpoint: i64) -> Result<Sealed> {
        let mut uploads = Vec::new();
        if let Some(merged) = self.finished_compaction()? {
            // A base replaces every file up to its checkpoint; a run, the deltas it merged:
            // those up to its checkpoint, as every delta before them is in a run or the base.
            let (replaced, kept): (Vec<StateFile>, Vec<StateFile>) =
                std::mem::take(&mut self.manifest.files)
                    .into_iter()
                    .partition(|f| {
                        f.checkpoint <= merged.checkpoint
                            && (merged.kind == FileKind::Base || f.kind == FileKind::Delta)
                    });
            self.manifest.files = kept;
            let at = self
                .manifest
                .files
                .iter()
                .position(|f| f.checkpoint > merged.checkpoint)
                .unwrap_or(self.manifest.files.len());
            self.manifest.files.insert(at, merged);
            for file in replaced {
                let _ = std::fs::remove_file(self.local_files.join(file.name()));
            }
        }
        if self.hot.has_changes() || self.spilled.changes {
            let mut delta = StateFile {
                kind: FileKind::Delta,
                checkpoint,
                entries: 0,
                bytes: 0,
            };
            let local = self.local_files.join(delta.name());
            let mut sink = file::FileSink::create(&local)?;
            // The changed keys carry their last value: sealing reads nothing
            // from the values, whose size would make it slower.
            let spilled = self.spilled.changes.then(|| {
                self.changed.iter().map(|guard| {
                    let (stored, change) = guard.into_inner()?;
                    let value = written(&change).map(fjall::Slice::from);
                    Ok((stored, value))
                })
            });
            let changes = hot::newer_over(
                spilled.into_iter().flatten(),
                self.hot.seal(self.spilled.values),
            );
            for change in changes {
                let (stored, value) = change?;
                let (group, key) = split_stored(&stored);
                sink.push(group, key, value.as_deref())?;
            }
            (delta.entries, delta.bytes) = sink.finish()?;
            if self.spilled.changes {
                self.changed.clear()?;
                self.spilled.changes = false;
            }
            self.manifest.files.push(delta.clone());
            uploads.push((local, delta));
        }
        let base_bytes = self.manifest.base().map_or(0, |b| b.bytes);
        let delta_bytes: u64 = self.manifest.deltas().map(|d| d.bytes).sum();
        if self.compaction.is_none() {
            if delta_bytes > 0 && delta_bytes * 2 > base_bytes {
                self.start_compaction(FileKind::Base, checkpoint);
            } else if self.manifest.deltas_in_a_row().len() >= DELTAS_PER_RUN {
                self.start_compaction(FileKind::Run, checkpoint);
            }
        }
        Ok(Sealed {
            manifest: self.manifest.clone(),
            uploads,
            remote: self.remote.clone(),
            compacting: self.compaction.as_ref().map(Compaction::file_name),
        })
    }

    /// Writes a base or a run of `checkpoint` in the background, then uploads
    /// it: for a base, the local copies of every file of the manifest just
    /// sealed merged; for a run, those of its deltas.
    fn start_compaction(&mut self, kind: FileKind, checkpoint: i64) {
        let (merged, inputs) = match kind {
            FileKind::Run => (merge::Merged::Run, self.manifest.deltas_in_a_row()),
            _ => (merge::Merged::Base, self.manifest.files.iter().collect()),
        };
        let inputs: Vec<PathBuf> = inputs
            .into_iter()
            .map(|f| self.local_files.join(f.name()))
            .collect();
        let remote = self.remote.clone();
        let mut file = StateFile {
            kind,
            checkpoint,
            entries: 0,
            bytes: 0,
        };
        let name = file.name();
        let local = self.local_files.join(&name);
        let task = tokio::spawn(async move {
            let out = local.clone();
            (file.entries, file.bytes) =
                tokio::task::spawn_blocking(move || merge::merge(&inputs, &out, merged))
                    .await
                    .map_err(compaction_failed)??;
            remote.upload(&local, &file).await?;
            Ok(file)
        });
        self.compaction = Some(Compaction::Running(name, task));
    }

    /// The base a finished compaction wrote, if one has finished.
    fn finished_compaction(&mut self) -> Result<Option<StateFile>> {
        match self.compaction.take() {
            Some(Compaction::Done(base)) => Ok(Some(base)),
            Some(Compaction::Running(_, task)) if task.is_finished() => {
                let base = futures::FutureExt::now_or_never(task)
                    .expect("the task has finished")
                    .map_err(compaction_failed)??;
                Ok(Some(base))
            }
            running => {
                self.compaction = running;
                Ok(None)
            }
        }
    }

    /// Waits for a compaction in flight (a bench, a test, or a clean stop).
    pub async fn settle(&mut self) -> Result<()> {
        if let Some(Compaction::Running(_, task)) = &mut self.compaction {
            let base = task.await.map_err(compaction_failed)??;
            self.compaction = Some(Compaction::Done(base));
        }
        Ok(())
    }

    /// After the commit of `landed` has landed: deletes the files it no longer names.
    pub async fn forget_unnamed(&self, landed: &Manifest) -> Result<usize> {
        let compacting = self.compaction.as_ref().map(Compaction::file_name);
        self.remote
            .forget_unnamed(landed, compacting.as_deref())
            .await
    }

    /// Restores the state a landed checkpoint's entry names into this empty
    /// state, then deletes every file the entry does not name.
    pub async fn restore(&mut self, entry: &[u8]) -> Result<u64> {
        let manifest = Manifest::decode(entry, KEY_GROUPS)?;
        for file in &manifest.files {
            let local = self.local_files.join(file.name());
            self.remote.download(file, &local).await?;
            let values = self.values.clone();
            let expected = file.entries;
            let name = file.name();
            tokio::task::spawn_blocking(move || -> Result<()> {
                // A file is sorted (`file::read` refuses one that is not): it
                // is bulk-loaded into new tables, past the memtables, each
                // file over the ones before it.
                let mut ingestion = values.start_ingestion()?;
                let read = file::read(&local, |group, key, value| {
                    let stored = with_group(group, key);
                    match value {
                        Some(value) => ingestion.write(stored, value)?,
                        None => ingestion.write_tombstone(stored)?,
                    }
                    Ok(())
                })?;
                ingestion.finish()?;
                if read != expected {
                    return Err(PipelineError::State(format!(
                        "keyed state file {name} holds {read} entries; its manifest says {expected}"
                    )));
                }
                Ok(())
            })
            .await
            .map_err(|err| PipelineError::State(format!("restoring keyed state: {err}")))??;
        }
        self.remote.forget_unnamed(&manifest, None).await?;
        self.manifest = manifest;
        self.spilled.values = true;
        Ok(self.values.len()? as u64)
    }

    /// Every key and value in order (each key after its key group).
    pub fn entries(&self) -> impl Iterator<Item = Result<(Vec<u8>, fjall::Slice)>> + '_ {
        let store = self
            .spilled
            .values
            .then(|| self.values.iter().map(|guard| guard.into_inner()));
        merged(self.hot.prefixed(Vec::new()), store.into_iter().flatten())
    }

    /// How many keys there are, and a digest of every key and value in order:
    /// two states are equal when both are.
    pub fn digest(&self) -> Result<(u64, u64)> {
        use std::hash::Hasher;
        let mut hasher = twox_hash::XxHash64::with_seed(0);
        let mut count = 0;
        for entry in self.entries() {
            let (key, value) = entry?;
            hasher.write(&(key.len() as u64).to_le_bytes());
            hasher.write(&key);
            hasher.write(&(value.len() as u64).to_le_bytes());
            hasher.write(&value);
            count += 1;
        }
        Ok((count, hasher.finish()))
    }

    /// Bytes the working store holds on local disk.
    pub fn disk_bytes(&self) -> u64 {
        self.values.disk_space() + self.changed.disk_space()
    }
}

/// Hot entries over the store's (see [`hot::Merged`]), each key without its key group.
fn merged<'a>(
    hot: impl Iterator<Item = (&'a [u8], Option<&'a fjall::Slice>)>,
    store: impl Iterator<Item = fjall::Result<(fjall::Slice, fjall::Slice)>>,
) -> impl Iterator<Item = Result<(Vec<u8>, fjall::Slice)>> {
    Merged {
        hot: hot.peekable(),
        store: store.peekable(),
    }
    .map(|entry| {
        let (stored, value) = entry?;
        Ok((split_stored(stored.as_ref()).1.to_vec(), value))
    })
}

/// An operator's keyed state, attached when its run opens the working store.
#[derive(Debug, Default)]
pub struct Slot(std::sync::Mutex<Option<KeyedState>>);

impl Slot {
    /// Gives the operator its keyed state, empty.
    pub fn attach(&self, state: KeyedState) {
        *self.lock() = Some(state);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<KeyedState>> {
        self.0.lock().expect("not poisoned")
    }

    /// Runs `use_state` on the state.
    pub fn with<T>(&self, use_state: impl FnOnce(&mut KeyedState) -> Result<T>) -> Result<T> {
        match self.lock().as_mut() {
            Some(state) => use_state(state),
            None => Err(PipelineError::State(
                "an operator's keyed state was used before its run opened it".to_string(),
            )),
        }
    }

    /// Seals what changed since the last checkpoint (see [`KeyedState::seal`]).
    pub fn seal(&self, checkpoint: i64) -> Result<Sealed> {
        self.with(|state| state.seal(checkpoint))
    }

    /// Waits for a compaction in flight (see [`KeyedState::settle`]).
    pub async fn settle(&self) -> Result<()> {
        let Some(mut state) = self.lock().take() else {
            return Ok(());
        };
        let settled = state.settle().await;
        self.attach(state);
        settled
    }

    /// Restores the state a landed checkpoint's entry names (see [`KeyedState::restore`]).
    pub async fn restore(&self, entry: &[u8]) -> Result<u64> {
        // The state leaves its lock while its files download.
        let mut state = self.lock().take().ok_or_else(|| {
            PipelineError::State("a keyed state was restored before it was opened".to_string())
        })?;
        let restored = state.restore(entry).await;
        self.attach(state);
        restored
    }
}

impl Drop for KeyedState {
    /// A compaction still running belongs to a run that has ended: it must
    /// not upload a base over one a later run writes.
    fn drop(&mut self) {
        if let Some(Compaction::Running(_, task)) = &self.compaction {
            task.abort();
        }
    }
}

fn compaction_failed(err: tokio::task::JoinError) -> PipelineError {
    PipelineError::State(format!("compacting keyed state: {err}"))
}

#[cfg(test)]
mod tests;
