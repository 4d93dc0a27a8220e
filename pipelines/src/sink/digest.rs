//! What a pipeline's output was, as a multiset fingerprint: the rows a
//! target took, counted and hashed, so that two runs that wrote the same rows
//! (in any order and any batching) have the same digest. The blackhole
//! target keeps nothing else; `strata bench nexmark` checks it against a
//! reference computation.
//!
//! ```text
//!   rows ──▶ digest += Σ hash(row's values)   (wrapping; order does not matter)
//!            rows   += n
//!   retractions (rows marked with DELETE_MARKER: an update's old image, a delete)
//!        ──▶ digest −= hash(row's values), rows −= 1
//! ```
//!
//! A retracting changelog thus digests to the rows that stand at its end,
//! however its changes were batched.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use arrow::record_batch::RecordBatch;

use crate::error::Result;
use crate::sink::DELETE_MARKER;

/// The rows a blackhole target has taken, and their digest.
#[derive(Debug, Default)]
pub struct OutputDigest {
    rows: AtomicU64,
    digest: AtomicU64,
    /// The rows themselves, when asked for (to compare small runs row by row).
    kept: Mutex<Option<Vec<RecordBatch>>>,
}

impl OutputDigest {
    /// Keeps the rows taken from now on, as well as counting them.
    pub fn keep_rows(&self) {
        *self.kept.lock().expect("not poisoned") = Some(Vec::new());
    }

    /// The rows kept since [`Self::keep_rows`].
    pub fn kept_rows(&self) -> Vec<RecordBatch> {
        self.kept
            .lock()
            .expect("not poisoned")
            .clone()
            .unwrap_or_default()
    }

    pub fn rows(&self) -> u64 {
        self.rows.load(Ordering::Relaxed)
    }

    pub fn digest(&self) -> u64 {
        self.digest.load(Ordering::Relaxed)
    }

    /// Counts and digests `batch`'s rows; those its [`DELETE_MARKER`] column
    /// marks take back an equal row instead.
    pub fn add(&self, batch: &RecordBatch) -> Result<()> {
        let (rows, digest) = match batch.schema().index_of(DELETE_MARKER) {
            Err(_) => digest(batch)?,
            Ok(marker) => {
                let retracts = crate::sink::delete_markers(std::slice::from_ref(batch)).remove(0);
                let mut values = batch.clone();
                values.remove_column(marker);
                let (mut rows, mut digest) = (0u64, 0u64);
                for (row, hash) in row_hashes(&values)?.into_iter().enumerate() {
                    if retracts.value(row) {
                        rows = rows.wrapping_sub(1);
                        digest = digest.wrapping_sub(hash);
                    } else {
                        rows = rows.wrapping_add(1);
                        digest = digest.wrapping_add(hash);
                    }
                }
                (rows, digest)
            }
        };
        self.rows.fetch_add(rows, Ordering::Relaxed);
        self.digest.fetch_add(digest, Ordering::Relaxed);
        if let Some(kept) = self.kept.lock().expect("not poisoned").as_mut() {
            kept.push(batch.clone());
        }
        Ok(())
    }
}

/// The number of rows of `batch` and the wrapping sum of their hashes
/// (DataFusion's vectorised column hashing, with a fixed seed).
pub fn digest(batch: &RecordBatch) -> Result<(u64, u64)> {
    let sum = row_hashes(batch)?
        .iter()
        .fold(0u64, |sum, &h| sum.wrapping_add(h));
    Ok((batch.num_rows() as u64, sum))
}

/// Each row's hash.
fn row_hashes(batch: &RecordBatch) -> Result<Vec<u64>> {
    let mut hashes = vec![0u64; batch.num_rows()];
    if batch.num_rows() == 0 {
        return Ok(hashes);
    }
    let seed = datafusion::common::hash_utils::QualityRandomState::with_seed(DIGEST_SEED);
    datafusion::common::hash_utils::create_hashes(batch.columns(), &seed, &mut hashes)
        .map_err(|err| crate::error::PipelineError::Evaluation(err.to_string()))?;
    Ok(hashes)
}

const DIGEST_SEED: u64 = 0x5354_5241_5441;

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::{BooleanArray, Int64Array};
    use arrow::datatypes::{DataType, Field, Schema};

    use super::*;

    fn longs(values: &[i64]) -> RecordBatch {
        let schema = Schema::new(vec![Field::new("v", DataType::Int64, false)]);
        RecordBatch::try_new(
            Arc::new(schema),
            vec![Arc::new(Int64Array::from(values.to_vec()))],
        )
        .unwrap()
    }

    #[test]
    fn retractions_take_back_equal_rows_so_the_digest_is_what_stands() {
        let changes = OutputDigest::default();
        changes.add(&longs(&[1, 2, 3])).unwrap();
        let retract = crate::batch::with_column(
            &longs(&[2, 4]),
            Field::new(DELETE_MARKER, DataType::Boolean, false),
            Arc::new(BooleanArray::from(vec![true, false])),
        )
        .unwrap();
        changes.add(&retract).unwrap();

        let standing = OutputDigest::default();
        standing.add(&longs(&[4, 3, 1])).unwrap();
        assert_eq!(changes.rows(), 3);
        assert_eq!(changes.digest(), standing.digest());
        assert_ne!(changes.digest(), {
            let other = OutputDigest::default();
            other.add(&longs(&[1, 2, 3, 4])).unwrap();
            other.digest()
        });
    }
}
