//! Exact `COUNT(DISTINCT)` sets, optionally split into buckets (Flink's
//! split-distinct aggregation, for hot keys).
//!
//! ```text
//!   no split:   group ──▶ one set of values
//!   split (SET 'table.optimizer.distinct-agg.split.enabled' = 'true'):
//!     group ──▶ bucket = xxhash(value) % bucket-num ──▶ one set per non-empty bucket
//!     merging a batch into a hot group: buckets are disjoint, so they merge on
//!     every core at once; the count is the sum of the buckets' sizes
//! ```

use std::collections::{HashMap, HashSet};
use std::hash::Hasher;

use crate::error::Result;
use crate::state::{ByteReader, ByteWriter};

/// Below this many incoming values, a merge stays on one thread.
const PARALLEL_MERGE_MIN: usize = 8_192;

/// One bucket's values, in Arrow's row format.
type Bucket = HashSet<Vec<u8>>;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DistinctSet {
    bucket_count: u32,
    buckets: HashMap<u32, Bucket>,
}

impl DistinctSet {
    /// An empty set with `bucket_count` buckets (1: not split).
    pub fn new(bucket_count: u32) -> Self {
        Self {
            bucket_count: bucket_count.max(1),
            buckets: HashMap::new(),
        }
    }

    fn bucket_of(&self, value: &[u8]) -> u32 {
        if self.bucket_count == 1 {
            return 0;
        }
        let mut hasher = twox_hash::XxHash64::with_seed(0);
        hasher.write(value);
        (hasher.finish() % u64::from(self.bucket_count)) as u32
    }

    pub fn insert(&mut self, value: &[u8]) {
        let bucket = self.bucket_of(value);
        let set = self.buckets.entry(bucket).or_default();
        if !set.contains(value) {
            set.insert(value.to_vec());
        }
    }

    pub fn len(&self) -> usize {
        self.buckets.values().map(HashSet::len).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Unions `other` in, bucket by bucket, on several threads when it is large.
    pub fn merge(&mut self, other: DistinctSet) {
        if other.bucket_count != self.bucket_count {
            for value in other.buckets.into_values().flatten() {
                self.insert(&value);
            }
            return;
        }
        let incoming = other.len();
        if incoming < PARALLEL_MERGE_MIN || available_threads() < 2 || other.buckets.len() < 2 {
            for (bucket, values) in other.buckets {
                union(self.buckets.entry(bucket).or_default(), values);
            }
            return;
        }
        let mut pairs: Vec<(&mut Bucket, Bucket)> = Vec::new();
        for bucket in other.buckets.keys() {
            self.buckets.entry(*bucket).or_default();
        }
        let mut incoming_buckets = other.buckets;
        for (bucket, set) in self.buckets.iter_mut() {
            if let Some(values) = incoming_buckets.remove(bucket) {
                pairs.push((set, values));
            }
        }
        let chunk = pairs.len().div_ceil(available_threads());
        std::thread::scope(|scope| {
            for part in pairs.chunks_mut(chunk) {
                scope.spawn(move || {
                    for (set, values) in part.iter_mut() {
                        union(set, std::mem::take(values));
                    }
                });
            }
        });
    }

    pub fn encode(&self, out: &mut ByteWriter) {
        out.u64(u64::from(self.bucket_count));
        let mut values: Vec<&Vec<u8>> = self.buckets.values().flatten().collect();
        values.sort();
        out.u64(values.len() as u64);
        for value in values {
            out.bytes(value);
        }
    }

    pub fn decode(input: &mut ByteReader<'_>) -> Result<Self> {
        let bucket_count =
            u32::try_from(input.u64()?).map_err(|_| input.corrupt("a bucket count overflows"))?;
        let mut set = Self::new(bucket_count);
        for _ in 0..input.u64()? {
            set.insert(input.bytes()?);
        }
        Ok(set)
    }
}

fn union(set: &mut Bucket, values: Bucket) {
    if set.len() < values.len() {
        let small = std::mem::replace(set, values);
        set.extend(small);
    } else {
        set.extend(values);
    }
}

/// The threads a large merge may use, asked once: the standard library reads
/// the cgroup's quota files on every call, which cost more than a small merge
/// (one per group, distinct aggregate and batch: Nexmark q16 spent most of its
/// time there).
fn available_threads() -> usize {
    static THREADS: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *THREADS.get_or_init(|| std::thread::available_parallelism().map_or(1, usize::from))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_and_whole_sets_count_the_same() {
        let mut whole = DistinctSet::new(1);
        let mut split = DistinctSet::new(64);
        let mut batch = DistinctSet::new(64);
        for i in 0..20_000u32 {
            whole.insert(&(i % 15_000).to_le_bytes());
            batch.insert(&(i % 15_000).to_le_bytes());
        }
        split.insert(&7u32.to_le_bytes());
        split.merge(batch);
        assert_eq!(whole.len(), 15_000);
        assert_eq!(split.len(), 15_000);
        let mut out = ByteWriter::default();
        split.encode(&mut out);
        let decoded = DistinctSet::decode(&mut ByteReader::new(&out.bytes)).unwrap();
        assert_eq!(decoded, split);
        let mut rebucketed = DistinctSet::new(4);
        rebucketed.merge(decoded);
        assert_eq!(rebucketed.len(), 15_000);
    }
}
