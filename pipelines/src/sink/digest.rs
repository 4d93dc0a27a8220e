//! What a pipeline's output was, as a multiset fingerprint: the rows a
//! target took, counted and hashed, so that two runs that wrote the same rows
//! (in any order and any batching) have the same digest. The blackhole
//! target keeps nothing else; `strata bench nexmark` checks it against a
//! reference computation.
//!
//! ```text
//!   rows ──▶ digest += Σ hash(row's values)   (wrapping; order does not matter)
//!            rows   += n
//! ```

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use arrow::record_batch::RecordBatch;

use crate::error::Result;

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

    pub fn add(&self, batch: &RecordBatch) -> Result<()> {
        let (rows, digest) = digest(batch)?;
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
    if batch.num_rows() == 0 {
        return Ok((0, 0));
    }
    let seed = datafusion::common::hash_utils::QualityRandomState::with_seed(DIGEST_SEED);
    let mut hashes = vec![0u64; batch.num_rows()];
    datafusion::common::hash_utils::create_hashes(batch.columns(), &seed, &mut hashes)
        .map_err(|err| crate::error::PipelineError::Evaluation(err.to_string()))?;
    let sum = hashes.iter().fold(0u64, |sum, &h| sum.wrapping_add(h));
    Ok((batch.num_rows() as u64, sum))
}

const DIGEST_SEED: u64 = 0x5354_5241_5441;
