//! The lookup cache: the least recently used keys with their dimension rows,
//! each served for a TTL; keys that were not found are remembered too, for a
//! shorter TTL, so a burst of unknown keys does not become a burst of queries.
//!
//! ```text
//!   key (Arrow row bytes) ──▶ Entry { rows: [dimension rows] | [] (missing), stored_at }
//!   get: fresh? ─yes─▶ rows          capacity full ─▶ the least recently used key goes
//!              └no──▶ fetch again
//! ```

use std::num::NonZeroUsize;
use std::time::{Duration, Instant};

use arrow::row::OwnedRow;
use lru::LruCache;

/// What the cache knows of one key.
#[derive(Debug, Clone)]
pub struct Entry {
    /// The dimension rows with this key; empty when there are none.
    pub rows: Vec<OwnedRow>,
    stored_at: Instant,
}

#[derive(Debug)]
pub struct LookupCache {
    /// `None` when the cache is off (`'lookup.cache.max-rows' = '0'`).
    entries: Option<LruCache<Box<[u8]>, Entry>>,
    ttl: Duration,
    miss_ttl: Duration,
}

impl LookupCache {
    pub fn new(max_keys: u64, ttl: Duration, miss_ttl: Duration) -> Self {
        Self {
            entries: NonZeroUsize::new(max_keys as usize).map(LruCache::new),
            ttl,
            miss_ttl,
        }
    }

    /// The rows of `key`, if the cache holds them fresh. With `refresh_misses`
    /// (a retry), a remembered miss is not trusted.
    pub fn get(&mut self, key: &[u8], now: Instant, refresh_misses: bool) -> Option<&Entry> {
        let entries = self.entries.as_mut()?;
        let (ttl, miss_ttl) = (self.ttl, self.miss_ttl);
        let fresh = entries.peek(key).is_some_and(|entry| {
            let ttl = if entry.rows.is_empty() { miss_ttl } else { ttl };
            now.duration_since(entry.stored_at) < ttl && !(refresh_misses && entry.rows.is_empty())
        });
        if !fresh {
            entries.pop(key);
            return None;
        }
        entries.get(key)
    }

    pub fn put(&mut self, key: Box<[u8]>, rows: Vec<OwnedRow>, now: Instant) {
        if let Some(entries) = self.entries.as_mut() {
            entries.put(
                key,
                Entry {
                    rows,
                    stored_at: now,
                },
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::Int64Array;
    use arrow::row::{RowConverter, SortField};

    use super::*;

    #[test]
    fn entries_expire_and_the_least_recently_used_goes() {
        let converter =
            RowConverter::new(vec![SortField::new(arrow::datatypes::DataType::Int64)]).unwrap();
        let rows = converter
            .convert_columns(&[Arc::new(Int64Array::from(vec![7]))])
            .unwrap();
        let row = rows.row(0).owned();
        let mut cache = LookupCache::new(2, Duration::from_secs(10), Duration::from_secs(1));
        let start = Instant::now();
        cache.put(b"a".to_vec().into(), vec![row.clone()], start);
        cache.put(b"m".to_vec().into(), Vec::new(), start);
        assert_eq!(cache.get(b"a", start, false).unwrap().rows.len(), 1);
        assert!(cache.get(b"m", start, false).unwrap().rows.is_empty());
        assert!(cache.get(b"m", start, true).is_none(), "a retry asks again");
        let later = start + Duration::from_secs(2);
        assert!(cache.get(b"a", later, false).is_some());
        cache.put(b"m".to_vec().into(), Vec::new(), start);
        assert!(
            cache.get(b"m", later, false).is_none(),
            "misses live shorter"
        );
        cache.put(b"b".to_vec().into(), vec![row.clone()], later);
        cache.put(b"c".to_vec().into(), vec![row], later);
        assert!(cache.get(b"a", later, false).is_none(), "evicted");
        // Two keys at most: b and c, nothing else.
        assert!(cache.get(b"m", later, false).is_none());
        assert!(cache.get(b"c", later, false).is_some());
        assert!(cache.get(b"b", later, false).is_some());
        assert!(
            cache
                .get(b"b", start + Duration::from_secs(13), false)
                .is_none()
        );
    }
}
