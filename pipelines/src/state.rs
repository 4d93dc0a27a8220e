//! Operator state checkpoints, taken in step with the target's Delta commits.
//!
//! ```text
//!   commit k:  1. write  <target>/_strata_state/<pipeline>/<k>.bin        (open windows, groups, watermark)
//!              2. Delta commit: rows + txn(strata/<pipeline>/<topic>/<p>, offset)… + txn(strata/<pipeline>/_state, k)
//!   restart:   read txn(…/_state) = k ──▶ load <k>.bin ──▶ resume at the offsets of the same commit
//! ```
//!
//! The checkpoint id lives in the same Delta transaction as the offsets and the
//! rows, so state, output and input position always agree. A file written for
//! a commit that never happened (a crash between 1 and 2) is never read: it is
//! overwritten by the next attempt at that id. Older files are deleted once a
//! newer commit has landed. Delta ignores paths that start with `_`.

use deltalake::Path;
use deltalake::logstore::object_store::ObjectStoreExt;

use crate::error::{PipelineError, Result};

/// Where a pipeline's checkpoints live inside its target table.
#[derive(Debug, Clone)]
pub struct StateStore {
    store: deltalake::logstore::ObjectStoreRef,
    dir: String,
    location: String,
}

impl StateStore {
    pub fn new(store: deltalake::logstore::ObjectStoreRef, location: &str, pipeline: &str) -> Self {
        Self {
            store,
            dir: format!("_strata_state/{pipeline}"),
            location: location.to_string(),
        }
    }

    /// The object store the checkpoints are in.
    pub fn object_store(&self) -> deltalake::logstore::ObjectStoreRef {
        self.store.clone()
    }

    /// The pipeline's state folder in it (`_strata_state/<pipeline>`).
    pub fn dir(&self) -> &str {
        &self.dir
    }

    fn path(&self, id: i64) -> Path {
        Path::from(format!("{}/{id:020}.bin", self.dir))
    }

    pub async fn write(&self, id: i64, bytes: Vec<u8>) -> Result<()> {
        self.store
            .put(&self.path(id), bytes.into())
            .await
            .map_err(|err| self.error(id, err))?;
        Ok(())
    }

    pub async fn read(&self, id: i64) -> Result<Vec<u8>> {
        let found = self
            .store
            .get(&self.path(id))
            .await
            .map_err(|err| self.error(id, err))?;
        let bytes = found.bytes().await.map_err(|err| self.error(id, err))?;
        Ok(bytes.to_vec())
    }

    /// Deletes the checkpoint before `id`, which a landed commit has replaced.
    pub async fn forget_before(&self, id: i64) {
        if id > 0 {
            let _ = self.store.delete(&self.path(id - 1)).await;
        }
    }

    fn error(&self, id: i64, err: deltalake::ObjectStoreError) -> PipelineError {
        PipelineError::State(format!(
            "checkpoint {id} of {}/{}: {err}",
            self.location.trim_end_matches('/'),
            self.dir
        ))
    }
}

/// `schema`'s columns and types: what rows kept in state as bytes depend on.
pub fn schema_fingerprint(schema: &arrow::datatypes::Schema) -> String {
    let columns: Vec<String> = schema
        .fields()
        .iter()
        .map(|f| format!("{} {}", f.name(), f.data_type()))
        .collect();
    format!("({})", columns.join(", "))
}

/// A little-endian writer for checkpoint files.
#[derive(Debug, Default)]
pub struct ByteWriter {
    pub bytes: Vec<u8>,
}

impl ByteWriter {
    pub fn u8(&mut self, value: u8) {
        self.bytes.push(value);
    }
    pub fn u64(&mut self, value: u64) {
        self.bytes.extend_from_slice(&value.to_le_bytes());
    }
    pub fn i64(&mut self, value: i64) {
        self.bytes.extend_from_slice(&value.to_le_bytes());
    }
    pub fn i128(&mut self, value: i128) {
        self.bytes.extend_from_slice(&value.to_le_bytes());
    }
    pub fn f64(&mut self, value: f64) {
        self.bytes.extend_from_slice(&value.to_le_bytes());
    }
    pub fn bytes(&mut self, value: &[u8]) {
        self.u64(value.len() as u64);
        self.bytes.extend_from_slice(value);
    }
    /// A count of items whose top bit says whether each item carries a part
    /// that older checkpoints lack (read back with [`ByteReader::flagged_count`]).
    pub fn flagged_count(&mut self, count: usize, flagged: bool) {
        let flag = if flagged { COUNT_FLAG } else { 0 };
        self.u64(count as u64 | flag);
    }
    pub fn option<T>(&mut self, value: Option<&T>, write: impl FnOnce(&mut Self, &T)) {
        match value {
            None => self.u8(0),
            Some(value) => {
                self.u8(1);
                write(self, value);
            }
        }
    }
}

/// Reads what [`ByteWriter`] wrote; any inconsistency is a corrupt checkpoint.
#[derive(Debug)]
pub struct ByteReader<'a> {
    bytes: &'a [u8],
    position: usize,
}

impl<'a> ByteReader<'a> {
    pub fn new(bytes: &'a [u8]) -> Self {
        Self { bytes, position: 0 }
    }

    pub fn corrupt(&self, what: &str) -> PipelineError {
        PipelineError::State(format!(
            "the checkpoint is corrupt at byte {}: {what}",
            self.position
        ))
    }

    fn take(&mut self, len: usize) -> Result<&'a [u8]> {
        let end = self
            .position
            .checked_add(len)
            .filter(|&end| end <= self.bytes.len())
            .ok_or_else(|| self.corrupt("it ends early"))?;
        let slice = &self.bytes[self.position..end];
        self.position = end;
        Ok(slice)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N]> {
        Ok(self.take(N)?.try_into().expect("took N bytes"))
    }

    pub fn u8(&mut self) -> Result<u8> {
        Ok(self.take(1)?[0])
    }
    pub fn u64(&mut self) -> Result<u64> {
        Ok(u64::from_le_bytes(self.array()?))
    }
    pub fn i64(&mut self) -> Result<i64> {
        Ok(i64::from_le_bytes(self.array()?))
    }
    pub fn i128(&mut self) -> Result<i128> {
        Ok(i128::from_le_bytes(self.array()?))
    }
    pub fn f64(&mut self) -> Result<f64> {
        Ok(f64::from_le_bytes(self.array()?))
    }
    pub fn bytes(&mut self) -> Result<&'a [u8]> {
        let len = usize::try_from(self.u64()?).map_err(|_| self.corrupt("a length overflows"))?;
        self.take(len)
    }
    pub fn option<T>(&mut self, read: impl FnOnce(&mut Self) -> Result<T>) -> Result<Option<T>> {
        match self.u8()? {
            0 => Ok(None),
            1 => read(self).map(Some),
            other => Err(self.corrupt(&format!("an option tag is {other}"))),
        }
    }
    /// A count [`ByteWriter::flagged_count`] wrote, and its flag.
    pub fn flagged_count(&mut self) -> Result<(u64, bool)> {
        let count = self.u64()?;
        Ok((count & !COUNT_FLAG, count & COUNT_FLAG != 0))
    }
    pub fn is_done(&self) -> bool {
        self.position == self.bytes.len()
    }
}

/// The top bit of a [`ByteWriter::flagged_count`]: no count reaches it.
const COUNT_FLAG: u64 = 1 << 63;
