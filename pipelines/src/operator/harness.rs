//! Runs one operator on batches, without a source, a sink or a runner: rows
//! in; rows, set-aside rows and state out (as RisingWave's executor tests and
//! DataFusion's `test/exec.rs` do).
//!
//! ```text
//!   batch ──push──▶ operator ──▶ (rows, set aside)      writes applied, as the runner does
//!   batch, row kinds ──push_changes──▶ operator         the same, for a changelog's rows
//!   batch, side ──push_side──▶ operator                 the same, for a batch of the second stream
//!   batch, kinds, side ──push_side_changes──▶ operator  the same, for a changelog's batch of either stream
//!   batch ──try_push──▶ operator ──▶ rows               writes dropped, as for a batch that failed
//!   watermark(w) ──▶ operator.on_watermark ──▶ Emitted  and later batches are late against w
//!   snapshot() ──bytes──▶ restore_into(fresh operator)
//!   keyed(operator, root, run) ──▶ its keyed state in a working store under root/run, files in root/remote
//!   checkpoint_keyed(k) ──entry──▶ restore_keyed(entry), in a fresh operator of another run
//! ```

use std::path::Path;
use std::sync::Arc;

use arrow::record_batch::RecordBatch;
use deltalake::logstore::ObjectStoreRef;
use deltalake::logstore::object_store::local::LocalFileSystem;

use super::{BatchContext, Emitted, Missed, Operator, Pass, RowKind, Side, Traced, Watermarks};
use crate::error::Result;
use crate::keyed::{MemoryBudget, RemoteFiles, StateBackend};
use crate::state::{ByteReader, ByteWriter};

/// One operator under test.
pub(crate) struct Harness {
    operator: Arc<dyn Operator>,
    /// The last watermark given: rows pushed after it are judged against it.
    watermark: Option<i64>,
}

impl Harness {
    pub fn new(operator: Arc<dyn Operator>) -> Self {
        Self {
            operator,
            watermark: None,
        }
    }

    /// Runs a batch through and applies the state it leaves.
    pub async fn push(&self, batch: &RecordBatch) -> Result<(Traced, Vec<Missed>)> {
        self.push_with(batch, None, Side::Left).await
    }

    /// Runs a batch of the second stream through, as [`Self::push`].
    pub async fn push_side(
        &self,
        batch: &RecordBatch,
        side: Side,
    ) -> Result<(Traced, Vec<Missed>)> {
        self.push_with(batch, None, side).await
    }

    /// Runs a changelog's batch through, each row the change `kinds` says.
    pub async fn push_changes(
        &self,
        batch: &RecordBatch,
        kinds: &[RowKind],
    ) -> Result<(Traced, Vec<Missed>)> {
        self.push_with(batch, Some(kinds), Side::Left).await
    }

    /// Runs a changelog's batch of `side`'s stream through, each row the change `kinds` says.
    pub async fn push_side_changes(
        &self,
        batch: &RecordBatch,
        kinds: &[RowKind],
        side: Side,
    ) -> Result<(Traced, Vec<Missed>)> {
        self.push_with(batch, Some(kinds), side).await
    }

    async fn push_with(
        &self,
        batch: &RecordBatch,
        kinds: Option<&[RowKind]>,
        side: Side,
    ) -> Result<(Traced, Vec<Missed>)> {
        let mut processed = self.run(batch, kinds, side).await?;
        for write in processed.writes {
            processed.missed.extend(write.apply()?);
        }
        Ok((processed.traced, processed.missed))
    }

    /// Runs a batch through and drops the state it leaves, as when a later
    /// operator fails on the batch.
    pub async fn try_push(&self, batch: &RecordBatch) -> Result<Traced> {
        Ok(self.run(batch, None, Side::Left).await?.traced)
    }

    /// Advances the watermark to `watermark`, as a commit does: what it emits.
    pub async fn watermark(&mut self, watermark: i64) -> Result<Emitted> {
        self.watermark = Some(watermark);
        let watermarks = Watermarks {
            pipeline: Some(watermark),
            source: Some(watermark),
            ..Watermarks::default()
        };
        self.operator.on_watermark(&watermarks).await
    }

    /// The operator's provisional results.
    pub fn provisional(&self) -> Result<Option<RecordBatch>> {
        self.operator.provisional()
    }

    async fn run(
        &self,
        batch: &RecordBatch,
        kinds: Option<&[RowKind]>,
        side: Side,
    ) -> Result<super::Processed> {
        let (_stop, stop) = tokio::sync::watch::channel(false);
        let pass = Pass {
            attempt: 0,
            stop,
            from_state: false,
        };
        let ctx = BatchContext {
            source: batch,
            pass: &pass,
            side,
            kinds,
            watermark: self.watermark,
        };
        self.operator.clone().process(ctx.source_rows(), &ctx).await
    }

    /// The operator, with its keyed state in a working store of its own
    /// under `root/run`, and its files in `root/remote` (shared by runs).
    pub fn keyed(operator: Arc<dyn Operator>, root: &Path, run: &str) -> Result<Self> {
        let remote = root.join("remote");
        std::fs::create_dir_all(&remote).expect("a test folder can be made");
        let store: ObjectStoreRef =
            Arc::new(LocalFileSystem::new_with_prefix(remote).expect("a local object store"));
        let backend = StateBackend::open(&root.join(run), MemoryBudget::megabytes(8))?;
        let slot = operator
            .keyed_state()
            .expect("the operator keeps keyed state");
        slot.attach(backend.keyed("op", RemoteFiles::new(store, "_strata_state/p", "op"))?);
        Ok(Self::new(operator))
    }

    /// Seals and uploads the keyed state as checkpoint `checkpoint`: the entry.
    pub async fn checkpoint_keyed(&self, checkpoint: i64) -> Result<Vec<u8>> {
        let slot = self
            .operator
            .keyed_state()
            .expect("the operator keeps keyed state");
        slot.seal(checkpoint)?.upload().await
    }

    /// Restores the keyed state a checkpoint's entry names.
    pub async fn restore_keyed(&self, entry: &[u8]) -> Result<()> {
        let slot = self
            .operator
            .keyed_state()
            .expect("the operator keeps keyed state");
        slot.restore(entry).await.map(|_| ())
    }

    /// The operator's state, as a checkpoint holds it.
    pub fn snapshot(&self) -> Vec<u8> {
        let mut out = ByteWriter::default();
        let state = self.operator.state().expect("the operator keeps state");
        state.snapshot(&mut out);
        out.bytes
    }

    /// Restores `bytes` into `operator` (fresh), checking every byte is read.
    pub fn restore_into(operator: Arc<dyn Operator>, bytes: &[u8]) -> Result<Self> {
        let mut input = ByteReader::new(bytes);
        let state = operator.state().expect("the operator keeps state");
        state.restore(&mut input)?;
        assert!(input.is_done(), "bytes left over after a restore");
        Ok(Self::new(operator))
    }
}
