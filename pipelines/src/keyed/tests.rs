use std::sync::Arc;

use deltalake::logstore::ObjectStoreRef;
use deltalake::logstore::object_store::local::LocalFileSystem;

use super::*;

struct Setup {
    _dir: tempfile::TempDir,
    root: PathBuf,
    store: ObjectStoreRef,
}

fn setup() -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().to_path_buf();
    std::fs::create_dir_all(root.join("remote")).unwrap();
    let store: ObjectStoreRef =
        Arc::new(LocalFileSystem::new_with_prefix(root.join("remote")).unwrap());
    Setup {
        _dir: dir,
        root,
        store,
    }
}

impl Setup {
    fn state(&self, run: &str) -> KeyedState {
        let backend = StateBackend::open(&self.root.join(run), MemoryBudget::megabytes(8)).unwrap();
        backend
            .keyed(
                "aggregate",
                RemoteFiles::new(self.store.clone(), "_strata_state/p", "aggregate"),
            )
            .unwrap()
    }

    /// A state of one key, checkpointed: the entry, its one file's name and path.
    async fn one_landed_file(&self) -> (Vec<u8>, String, PathBuf) {
        let mut state = self.state("run");
        state.put(b"a", b"1").unwrap();
        let (entry, _) = checkpoint(&mut state, 1).await;
        let name = Manifest::decode(&entry, KEY_GROUPS).unwrap().files[0].name();
        let path = self
            .root
            .join("remote/_strata_state/p/keyed/aggregate")
            .join(&name);
        (entry, name, path)
    }

    /// Restores `entry` into a fresh run, which must fail: the error.
    async fn restore_error(&self, run: &str, entry: &[u8]) -> String {
        self.state(run)
            .restore(entry)
            .await
            .unwrap_err()
            .to_string()
    }

    fn remote(&self) -> RemoteFiles {
        RemoteFiles::new(self.store.clone(), "_strata_state/p", "aggregate")
    }
}

fn key(i: u32) -> Vec<u8> {
    format!("key-{i}").into_bytes()
}

/// Writes keys 0..`count`, each with its number as its value.
fn load(state: &mut KeyedState, count: u32) {
    let loaded: Vec<(Vec<u8>, [u8; 4])> = (0..count).map(|i| (key(i), i.to_le_bytes())).collect();
    state
        .write_all(loaded.iter().map(|(k, v)| (k.as_slice(), Some(&v[..]))))
        .unwrap();
}

fn all(state: &KeyedState) -> Vec<(Vec<u8>, Vec<u8>)> {
    state
        .entries()
        .map(|e| e.map(|(k, v)| (k, v.to_vec())))
        .collect::<Result<_>>()
        .unwrap()
}

/// Seals, uploads and "lands" a checkpoint; returns its entry.
async fn checkpoint(state: &mut KeyedState, id: i64) -> (Vec<u8>, u64) {
    let sealed = state.seal(id).unwrap();
    let new_bytes = sealed.new_bytes();
    let manifest = sealed.manifest.clone();
    let entry = sealed.upload().await.unwrap();
    state.forget_unnamed(&manifest).await.unwrap();
    (entry, new_bytes)
}

#[tokio::test]
async fn puts_and_deletes_restore_exactly_from_the_checkpoint_files() {
    let setup = setup();
    let mut state = setup.state("run-1");
    for i in 0..1_000 {
        state.put(&key(i), &i.to_le_bytes()).unwrap();
    }
    state.delete(&key(7)).unwrap();
    assert_eq!(state.get(&key(7)).unwrap(), None);
    assert_eq!(
        state.get(&key(8)).unwrap().as_deref(),
        Some(&8u32.to_le_bytes()[..])
    );
    checkpoint(&mut state, 1).await;
    state.put(&key(8), b"changed").unwrap();
    state.delete(&key(9)).unwrap();
    let (entry_2, _) = checkpoint(&mut state, 2).await;

    let mut restored = setup.state("run-2");
    assert_eq!(restored.restore(&entry_2).await.unwrap(), 998);
    assert_eq!(all(&restored), all(&state));
    assert_eq!(
        restored.get(&key(8)).unwrap().as_deref(),
        Some(&b"changed"[..])
    );
}

#[tokio::test]
async fn a_commit_writes_only_the_keys_changed_since_the_last() {
    let setup = setup();
    let mut state = setup.state("run");
    load(&mut state, 50_000);
    let (_, loaded) = checkpoint(&mut state, 1).await;
    for i in 0..10 {
        state.put(&key(i * 1000), b"x").unwrap();
    }
    let sealed = state.seal(2).unwrap();
    let delta = sealed.manifest.files.last().unwrap().clone();
    assert_eq!(
        (delta.kind, delta.checkpoint, delta.entries),
        (FileKind::Delta, 2, 10)
    );
    assert!(
        sealed.new_bytes() * 100 < loaded,
        "{} vs {loaded}",
        sealed.new_bytes()
    );
    // Nothing changed: nothing to write.
    sealed.upload().await.unwrap();
    assert_eq!(state.seal(3).unwrap().new_bytes(), 0);
}

#[tokio::test]
async fn deltas_are_compacted_into_a_base_in_the_background_and_replaced_files_deleted() {
    let setup = setup();
    let mut state = setup.state("run");
    let mut entry = Vec::new();
    for id in 1..=6 {
        for i in 0..2_000 {
            state.put(&key(i), &(i * id as u32).to_le_bytes()).unwrap();
        }
        state.delete(&key(id as u32)).unwrap();
        entry = checkpoint(&mut state, id).await.0;
        state.settle().await.unwrap();
    }
    let manifest = Manifest::decode(&entry, KEY_GROUPS).unwrap();
    let base = manifest.base().expect("a compaction wrote a base");
    assert!(manifest.deltas().all(|d| d.checkpoint > base.checkpoint));
    assert!(manifest.files.len() < 6, "{manifest:?}");
    let mut names = setup.remote().names().await.unwrap();
    names.retain(|name| !manifest.contains(name));
    assert!(
        names.iter().all(|n| n.starts_with("base-")),
        "only the base of a compaction in flight may be unnamed: {names:?}"
    );
    let local_copies: Vec<String> = std::fs::read_dir(setup.root.join("run/files/0"))
        .unwrap()
        .map(|entry| entry.unwrap().file_name().into_string().unwrap())
        .filter(|name| !manifest.contains(name))
        .collect();
    assert!(
        local_copies.iter().all(|n| n.starts_with("base-")),
        "the local copies of replaced files are deleted: {local_copies:?}"
    );
    let mut restored = setup.state("again");
    restored.restore(&entry).await.unwrap();
    assert_eq!(all(&restored), all(&state));
}

#[tokio::test]
async fn deltas_in_a_row_are_merged_into_a_run_that_keeps_their_deletes() {
    let setup = setup();
    let mut state = setup.state("run");
    load(&mut state, 50_000);
    checkpoint(&mut state, 1).await;
    state.settle().await.unwrap();
    // Small changes, far from half the base: runs, not a new base.
    let mut entry = Vec::new();
    for id in 2..=40 {
        for i in 0..10 {
            state.put(&key(id as u32 * 100 + i), b"changed").unwrap();
        }
        state.delete(&key(id as u32)).unwrap();
        entry = checkpoint(&mut state, id).await.0;
        state.settle().await.unwrap();
    }
    let manifest = Manifest::decode(&entry, KEY_GROUPS).unwrap();
    let kinds: Vec<FileKind> = manifest.files.iter().map(|f| f.kind).collect();
    assert_eq!(kinds[0], FileKind::Base, "{manifest:?}");
    assert_eq!(manifest.base().unwrap().checkpoint, 1, "{manifest:?}");
    assert!(
        kinds.iter().filter(|&&k| k == FileKind::Run).count() >= 2,
        "{manifest:?}"
    );
    assert!(
        kinds.iter().filter(|&&k| k == FileKind::Delta).count() < DELTAS_PER_RUN,
        "{manifest:?}"
    );
    let checkpoints: Vec<i64> = manifest.files.iter().map(|f| f.checkpoint).collect();
    assert!(checkpoints.is_sorted(), "{manifest:?}");
    // Only the run of a compaction in flight may be unnamed; replaced deltas are gone.
    let mut names = setup.remote().names().await.unwrap();
    names.retain(|name| !manifest.contains(name));
    assert!(names.iter().all(|n| n.starts_with("run-")), "{names:?}");
    // The base still holds the deleted keys: the runs' deletes hide them on restore.
    let mut restored = setup.state("again");
    restored.restore(&entry).await.unwrap();
    assert_eq!(all(&restored), all(&state));
    for id in 2..=40 {
        assert_eq!(restored.get(&key(id)).unwrap(), None);
    }
    assert_eq!(
        restored.get(&key(4_000)).unwrap().as_deref(),
        Some(&b"changed"[..])
    );
}

#[tokio::test]
async fn a_reset_state_deletes_the_files_of_the_state_it_dropped_when_its_first_checkpoint_lands() {
    let setup = setup();
    let mut dropped = setup.state("run-1");
    for id in 1..=4 {
        for i in 0..2_000 {
            dropped
                .put(&key(i), &(i * id as u32).to_le_bytes())
                .unwrap();
        }
        checkpoint(&mut dropped, id).await;
        dropped.settle().await.unwrap();
    }
    let before = setup.remote().names().await.unwrap();
    assert!(before.iter().any(|n| n.starts_with("base-")), "{before:?}");
    drop(dropped);
    // A reset: the operator starts empty, not restored, and its checkpoints go on from 5.
    let mut fresh = setup.state("run-2");
    fresh.put(b"a", b"1").unwrap();
    let (entry, _) = checkpoint(&mut fresh, 5).await;
    let manifest = Manifest::decode(&entry, KEY_GROUPS).unwrap();
    let names = setup.remote().names().await.unwrap();
    let in_flight = |name: &str| StateFile::checkpoint_in(name, FileKind::Base) == Some(5);
    assert!(
        names.iter().all(|n| manifest.contains(n) || in_flight(n)),
        "files of the dropped state remain: {names:?} beside {manifest:?}"
    );
}

#[tokio::test]
async fn state_beyond_the_memory_budget_lives_on_local_disk() {
    let setup = setup();
    let mut state = setup.state("run");
    let value = vec![7u8; 200];
    for chunk in 0..20u32 {
        let keys: Vec<Vec<u8>> = (chunk * 10_000..(chunk + 1) * 10_000).map(key).collect();
        state
            .write_all(keys.iter().map(|k| (k.as_slice(), Some(value.as_slice()))))
            .unwrap();
    }
    // 200 k keys of 200 bytes: five times the 8 MiB budget.
    assert!(
        state.disk_bytes() > 8 * 1024 * 1024,
        "{}",
        state.disk_bytes()
    );
    assert_eq!(
        state.get(&key(123_456)).unwrap().as_deref(),
        Some(value.as_slice())
    );
}

#[tokio::test]
async fn a_key_group_is_one_range_of_keys() {
    let setup = setup();
    let mut state = setup.state("run");
    for i in 0..5_000 {
        state.put(&key(i), b"v").unwrap();
    }
    let mut seen = 0;
    for group in 0..KEY_GROUPS {
        for entry in state.group(group) {
            let (k, _) = entry.unwrap();
            assert_eq!(key_group(&k), group);
            seen += 1;
        }
    }
    assert_eq!(seen, 5_000);
}

#[tokio::test]
async fn a_missing_or_damaged_file_is_an_error_naming_it() {
    let setup = setup();
    let (entry, name, path) = setup.one_landed_file().await;
    std::fs::write(&path, b"not arrow").unwrap();
    let err = setup.restore_error("again", &entry).await;
    assert!(
        err.contains(&name) || err.contains("not a whole state file"),
        "{err}"
    );
    std::fs::remove_file(&path).unwrap();
    let err = setup.restore_error("third", &entry).await;
    assert!(err.contains(&name), "{err}");
}

#[tokio::test]
async fn a_settled_compaction_is_kept_until_the_next_seal() {
    let setup = setup();
    let mut state = setup.state("run");
    state.put(b"a", b"1").unwrap();
    checkpoint(&mut state, 1).await;
    state.settle().await.unwrap();
    state.settle().await.unwrap();
    let sealed = state.seal(2).unwrap();
    assert_eq!(
        sealed.manifest.base().map(|b| b.checkpoint),
        Some(1),
        "{:?}",
        sealed.manifest
    );
}

#[tokio::test]
async fn a_file_out_of_key_order_is_refused_not_loaded() {
    let setup = setup();
    let (entry, name, path) = setup.one_landed_file().await;
    let mut sink = file::FileSink::create(&path).unwrap();
    sink.push(3, b"b", Some(b"2")).unwrap();
    sink.push(3, b"a", Some(b"1")).unwrap();
    sink.finish().unwrap();
    let err = setup.restore_error("again", &entry).await;
    assert!(err.contains(&name) && err.contains("not sorted"), "{err}");
}

#[tokio::test]
async fn spilled_and_hot_entries_read_and_checkpoint_as_one_state() {
    let setup = setup();
    let mut state = setup.state("run");
    let mut expected = std::collections::BTreeMap::new();
    let mut write = |state: &mut KeyedState, i: u32, value: Option<&[u8]>| {
        match value {
            Some(value) => state.put(&key(i), value).unwrap(),
            None => state.delete(&key(i)).unwrap(),
        }
        match value {
            Some(value) => expected.insert(key(i), value.to_vec()),
            None => expected.remove(&key(i)),
        };
    };
    // 30 k keys of 200 bytes: over the 4 MiB heap share, so some are spilled.
    for i in 0..30_000 {
        write(&mut state, i, Some(&[1; 200]));
    }
    assert!(state.spilled.values, "nothing was spilled");
    checkpoint(&mut state, 1).await;
    // Every key again (spilled with its change), then some deleted and some
    // written over while hot, over what was spilled.
    for i in 0..30_000 {
        write(&mut state, i, Some(&[2; 200]));
    }
    assert!(state.spilled.changes, "no change was spilled");
    for i in (0..30_000).step_by(100) {
        write(&mut state, i, None);
        write(&mut state, i + 50, Some(b"hot"));
    }
    assert_eq!(state.get(&key(100)).unwrap(), None);
    assert_eq!(state.get(&key(150)).unwrap().as_deref(), Some(&b"hot"[..]));
    assert_eq!(
        state.get(&key(151)).unwrap().as_deref(),
        Some(&[2u8; 200][..])
    );
    let written: Vec<(Vec<u8>, Vec<u8>)> = expected.clone().into_iter().collect();
    let mut in_order = written.clone();
    in_order.sort_by_key(|(k, _)| (key_group(k), k.clone()));
    assert_eq!(all(&state), in_order);
    let group = key_group(&key(150));
    let scanned: Vec<Vec<u8>> = state
        .scan(group, b"key-150")
        .map(|e| e.unwrap().0)
        .collect();
    assert!(scanned.contains(&key(150)), "{scanned:?}");
    assert!(scanned.iter().all(|k| k.starts_with(b"key-150")));

    let sealed = state.seal(2).unwrap();
    assert_eq!(sealed.manifest.files.last().unwrap().entries, 30_000);
    let entry = sealed.upload().await.unwrap();
    assert!(!state.spilled.changes, "the seal took the spilled changes");
    let mut restored = setup.state("again");
    restored.restore(&entry).await.unwrap();
    assert_eq!(all(&restored), in_order);
}
