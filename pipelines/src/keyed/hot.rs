//! The newest keyed state, on the heap in front of the working store, as
//! Flink's heap backend keeps all of it: a key read or written again soon (a
//! join's rows of one key, a group's running aggregate) costs a map lookup,
//! not a walk through the LSM tree's memtables and tables.
//!
//! ```text
//!   write ──▶ hot: stored key → value (or deleted), dirty since the last seal?
//!   read  ──▶ hot ──miss──▶ the working store (only once something has spilled into it)
//!   seal  ──▶ the dirty keys, sorted (with the store's changed keys, after a spill) ──▶ the delta
//!   the run's hot bytes over 3/8 of the budget, this state's over its share
//!         ──spill──▶ every entry bulk-loaded into the store, the dirty ones into its changed keys
//! ```
//!
//! Until a state spills, the working store holds nothing and is never read:
//! a state that fits the budget lives on the heap alone, and a checkpoint
//! still writes only what changed since the last one.

use std::cmp::Ordering as KeyOrder;
use std::collections::BTreeMap;
use std::iter::Peekable;
use std::ops::Bound;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use fjall::Slice;

/// What an entry costs beyond its key's and value's bytes: its slot in the
/// map's nodes (about 80 bytes at their usual fill), the key's allocation and
/// its rounding, and the copy of the key that marks it dirty until a seal.
const ENTRY_OVERHEAD: u64 = 128;

/// The heap one run's keyed states share.
#[derive(Debug)]
pub(super) struct HeapShare {
    /// Bytes every state's hot entries take.
    used: AtomicU64,
    /// Over this, a state holding more than its share spills.
    limit: u64,
    /// How many states share it.
    states: AtomicUsize,
}

impl HeapShare {
    pub fn new(limit: u64) -> Arc<Self> {
        Arc::new(Self {
            used: AtomicU64::new(0),
            limit,
            states: AtomicUsize::new(0),
        })
    }

    /// One more state shares the heap.
    pub fn join(&self) {
        self.states.fetch_add(1, Ordering::Relaxed);
    }
}

#[derive(Debug)]
struct HotEntry {
    /// `None`: deleted, over whatever the store holds.
    value: Option<Slice>,
    /// Written since the last seal.
    dirty: bool,
}

impl HotEntry {
    fn bytes(key: &[u8], value: Option<&Slice>) -> u64 {
        (key.len() + value.map_or(0, |v| v.len())) as u64 + ENTRY_OVERHEAD
    }
}

/// One state's hot entries, by stored key (key group ‖ key).
#[derive(Debug)]
pub(super) struct Hot {
    entries: BTreeMap<Vec<u8>, HotEntry>,
    /// The keys written since the last seal, each once, in no order.
    dirty: Vec<Vec<u8>>,
    bytes: u64,
    share: Arc<HeapShare>,
}

/// What a spill or a seal takes: stored keys in order, with what they hold
/// (`None`: deleted).
pub(super) type Sorted = Vec<(Vec<u8>, Option<Slice>)>;

impl Hot {
    pub fn new(share: Arc<HeapShare>) -> Self {
        share.join();
        Self {
            entries: BTreeMap::new(),
            dirty: Vec::new(),
            bytes: 0,
            share,
        }
    }

    /// `Some(value)` when the key is hot (`Some(None)`: deleted); `None` when
    /// the store must be asked.
    pub fn get(&self, stored: &[u8]) -> Option<Option<&Slice>> {
        self.entries.get(stored).map(|entry| entry.value.as_ref())
    }

    /// Writes a key (`None` deletes it).
    pub fn write(&mut self, stored: Vec<u8>, value: Option<&[u8]>) {
        let value = value.map(Slice::from);
        let added = HotEntry::bytes(&stored, value.as_ref());
        match self.entries.get_mut(&stored) {
            Some(entry) => {
                let removed = HotEntry::bytes(&stored, entry.value.as_ref());
                entry.value = value;
                if !entry.dirty {
                    entry.dirty = true;
                    self.dirty.push(stored);
                }
                self.account(added, removed);
            }
            None => {
                self.dirty.push(stored.clone());
                self.entries.insert(stored, HotEntry { value, dirty: true });
                self.account(added, 0);
            }
        }
    }

    fn account(&mut self, added: u64, removed: u64) {
        self.bytes = self.bytes + added - removed;
        self.share.used.fetch_add(added, Ordering::Relaxed);
        self.share.used.fetch_sub(removed, Ordering::Relaxed);
    }

    /// Whether this state should spill: the run's hot entries are over the
    /// limit and this state holds at least its share of them (so a small
    /// state beside a large one is not spilled at every write).
    pub fn over_share(&self) -> bool {
        let states = self.share.states.load(Ordering::Relaxed).max(1) as u64;
        self.share.used.load(Ordering::Relaxed) > self.share.limit
            && self.bytes * states >= self.share.limit
    }

    /// The hot entries whose stored key begins with `prefix`, in key order
    /// (deleted ones too).
    pub fn prefixed(&self, prefix: Vec<u8>) -> impl Iterator<Item = (&[u8], Option<&Slice>)> + '_ {
        self.entries
            .range::<[u8], _>((Bound::Included(prefix.as_slice()), Bound::Unbounded))
            .take_while(move |(key, _)| key.starts_with(&prefix))
            .map(|(key, entry)| (key.as_slice(), entry.value.as_ref()))
    }

    /// Whether a key was written since the last seal.
    pub fn has_changes(&self) -> bool {
        !self.dirty.is_empty()
    }

    /// The keys written since the last seal, in order, with what they hold;
    /// they are clean after it. A deleted key is forgotten unless `shadows`
    /// (the store may hold it).
    pub fn seal(&mut self, shadows: bool) -> Sorted {
        let mut dirty = std::mem::take(&mut self.dirty);
        dirty.sort_unstable();
        let mut sealed = Vec::with_capacity(dirty.len());
        for key in dirty {
            let entry = self.entries.get_mut(&key).expect("a dirty key is hot");
            entry.dirty = false;
            let value = entry.value.clone();
            if value.is_none() && !shadows {
                self.entries.remove(&key);
                self.account(0, HotEntry::bytes(&key, None));
            }
            sealed.push((key, value));
        }
        sealed
    }

    /// Empties the state into what goes to the store: every entry, and the
    /// keys written since the last seal.
    pub fn spill(&mut self) -> (Sorted, Sorted) {
        let entries = std::mem::take(&mut self.entries);
        self.dirty.clear();
        let freed = self.bytes;
        self.account(0, freed);
        let mut all = Vec::with_capacity(entries.len());
        let mut dirty = Vec::new();
        for (key, entry) in entries {
            if entry.dirty {
                dirty.push((key.clone(), entry.value.clone()));
            }
            all.push((key, entry.value));
        }
        (all, dirty)
    }
}

impl Drop for Hot {
    fn drop(&mut self) {
        self.share.used.fetch_sub(self.bytes, Ordering::Relaxed);
        self.share.states.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A stored key as merged: borrowed from the hot entries or from the store.
pub enum MergedKey<'a> {
    Hot(&'a [u8]),
    Stored(Slice),
}

impl AsRef<[u8]> for MergedKey<'_> {
    fn as_ref(&self) -> &[u8] {
        match self {
            MergedKey::Hot(key) => key,
            MergedKey::Stored(key) => key,
        }
    }
}

/// Hot entries over the store's, both in key order: a hot key hides the
/// store's, and a deleted one is skipped.
pub(super) struct Merged<'a, H, S>
where
    H: Iterator<Item = (&'a [u8], Option<&'a Slice>)>,
    S: Iterator<Item = fjall::Result<(Slice, Slice)>>,
{
    pub hot: Peekable<H>,
    pub store: Peekable<S>,
}

impl<'a, H, S> Iterator for Merged<'a, H, S>
where
    H: Iterator<Item = (&'a [u8], Option<&'a Slice>)>,
    S: Iterator<Item = fjall::Result<(Slice, Slice)>>,
{
    type Item = fjall::Result<(MergedKey<'a>, Slice)>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            let order = match (self.hot.peek(), self.store.peek()) {
                (None, None) => return None,
                (Some(_), None) => KeyOrder::Less,
                (_, Some(Err(_))) | (None, Some(_)) => KeyOrder::Greater,
                (Some((hot, _)), Some(Ok((stored, _)))) => (*hot).cmp(&stored[..]),
            };
            if order == KeyOrder::Greater {
                return self
                    .store
                    .next()
                    .map(|read| read.map(|(key, value)| (MergedKey::Stored(key), value)));
            }
            if order == KeyOrder::Equal {
                self.store.next();
            }
            let (key, value) = self.hot.next().expect("peeked");
            if let Some(value) = value {
                return Some(Ok((MergedKey::Hot(key), value.clone())));
            }
        }
    }
}

/// Two sorted runs of changes merged, the newer's over the older's for a key in both.
pub(super) fn newer_over(
    older: impl Iterator<Item = fjall::Result<(Slice, Option<Slice>)>>,
    newer: Sorted,
) -> impl Iterator<Item = fjall::Result<(Vec<u8>, Option<Slice>)>> {
    let mut older = older.peekable();
    let mut newer = newer.into_iter().peekable();
    std::iter::from_fn(move || {
        let order = match (older.peek(), newer.peek()) {
            (None, None) => return None,
            (None, Some(_)) => KeyOrder::Greater,
            (Some(_), None) | (Some(Err(_)), _) => KeyOrder::Less,
            (Some(Ok((old, _))), Some((new, _))) => old[..].cmp(new.as_slice()),
        };
        match order {
            KeyOrder::Less => older
                .next()
                .map(|read| read.map(|(key, value)| (key.to_vec(), value))),
            KeyOrder::Equal => {
                older.next();
                newer.next().map(Ok)
            }
            KeyOrder::Greater => newer.next().map(Ok),
        }
    })
}
