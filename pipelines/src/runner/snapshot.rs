//! What each stateful operator writes into a checkpoint entry, and reads back.
//!
//! ```text
//!   commit:  for (id, part) in task's state parts ─▶ part.snapshot() ─▶ Checkpoint[id] = (fingerprint, bytes)
//!   restore: Checkpoint fits the plan ─▶ for (id, part) ─▶ part.restore(Checkpoint[id].bytes)
//! ```

use std::time::Instant;

use crate::aggregate::AggregateState;
use crate::error::Result;
use crate::operator::KeepsState;
use crate::state::{ByteReader, ByteWriter};
use crate::transform::LegacyState;
use crate::watermark::WatermarkTracker;

use super::parked::ParkedRows;
use crate::connector::VersionFeed;

/// State that goes into one checkpoint entry.
pub(super) trait Snapshot {
    fn snapshot(&self, out: &mut ByteWriter);
    /// Reads what [`snapshot`](Self::snapshot) wrote into fresh state.
    fn restore(&mut self, input: &mut ByteReader<'_>) -> Result<()>;
}

impl<T: Snapshot + ?Sized> Snapshot for &mut T {
    fn snapshot(&self, out: &mut ByteWriter) {
        (**self).snapshot(out);
    }
    fn restore(&mut self, input: &mut ByteReader<'_>) -> Result<()> {
        (**self).restore(input)
    }
}

impl Snapshot for ParkedRows {
    fn snapshot(&self, out: &mut ByteWriter) {
        self.encode(out);
    }
    fn restore(&mut self, input: &mut ByteReader<'_>) -> Result<()> {
        self.decode(input)
    }
}

/// The state an operator keeps in itself.
pub(super) struct OperatorState<'a>(pub &'a dyn KeepsState);

impl Snapshot for OperatorState<'_> {
    fn snapshot(&self, out: &mut ByteWriter) {
        self.0.snapshot(out);
    }
    fn restore(&mut self, input: &mut ByteReader<'_>) -> Result<()> {
        self.0.restore(input)
    }
}

/// Rows waiting for the versions input's watermark, and the versions that
/// input keeps with its changelog's watermark (an event-time temporal join's).
pub(super) struct WaitingState<'a> {
    pub waiting: &'a mut ParkedRows,
    pub feed: &'a mut Box<dyn VersionFeed>,
}

impl Snapshot for WaitingState<'_> {
    fn snapshot(&self, out: &mut ByteWriter) {
        self.waiting.encode(out);
        self.feed.encode(out);
    }
    fn restore(&mut self, input: &mut ByteReader<'_>) -> Result<()> {
        self.waiting.decode(input)?;
        self.feed.restore(input, Instant::now())
    }
}

/// The runner's own entry: the watermark of the commit, and each stream's
/// watermark per partition (see [`restore_tracker`]).
pub(super) struct RuntimeState<'a> {
    pub committed_watermark: &'a mut Option<i64>,
    pub source: Option<&'a mut WatermarkTracker>,
    /// An interval join's right stream.
    pub right: Option<&'a mut WatermarkTracker>,
}

impl Snapshot for RuntimeState<'_> {
    fn snapshot(&self, out: &mut ByteWriter) {
        out.option(self.committed_watermark.as_ref(), |out, w| out.i64(*w));
        out.option(self.source.as_deref(), |out, tracker| tracker.encode(out));
        out.option(self.right.as_deref(), |out, tracker| tracker.encode(out));
    }
    fn restore(&mut self, input: &mut ByteReader<'_>) -> Result<()> {
        *self.committed_watermark = input.option(|r| r.i64())?;
        restore_tracker(input, self.source.as_deref_mut())?;
        restore_tracker(input, self.right.as_deref_mut())
    }
}

/// Reads a watermark tracker [`ByteWriter::option`] wrote into `tracker`. A
/// stream that has a watermark now but had none starts it afresh; one that had
/// a watermark and has none now is refused (the lateness of rows already judged
/// would change).
fn restore_tracker(
    input: &mut ByteReader<'_>,
    tracker: Option<&mut WatermarkTracker>,
) -> Result<()> {
    if input.u8()? == 1 {
        let Some(tracker) = tracker else {
            return Err(input.corrupt(
                "it has a watermark, but the stream has none now; undo the change, or reset the pipeline",
            ));
        };
        tracker.restore(input, Instant::now())?;
    }
    Ok(())
}

/// The parts of a task's state, for a checkpoint of an earlier version: one
/// blob, each part where the plan of its day put it.
pub(super) struct LegacyParts<'a> {
    pub committed_watermark: &'a mut Option<i64>,
    pub source: Option<&'a mut WatermarkTracker>,
    pub operators: LegacyState<'a>,
    pub parked: &'a mut ParkedRows,
    pub waiting: &'a mut ParkedRows,
    pub feed: Option<&'a mut Box<dyn VersionFeed>>,
    /// The second stream's watermark.
    pub right: Option<&'a mut WatermarkTracker>,
}

/// Checkpoints before state shapes were recorded: restored without a check.
const MAGIC_V1: &[u8] = b"STRATA-STATE-1";
/// Checkpoints that begin with the shape lines of the plan they were written for.
const MAGIC_V2: &[u8] = b"STRATA-STATE-2";

impl LegacyParts<'_> {
    /// Restores a checkpoint written by an earlier version, whose plan had
    /// the shape `shape` (the lines [`crate::transform::CompiledPlan::state_shape`]
    /// gives) if it recorded one.
    pub fn restore(mut self, bytes: &[u8], pipeline: &str, shape: &[String]) -> Result<()> {
        let mut input = ByteReader::new(bytes);
        let magic = (0..MAGIC_V2.len())
            .map(|_| input.u8())
            .collect::<Result<Vec<u8>>>()?;
        if magic == MAGIC_V2 {
            let written: Vec<String> = (0..input.u64()?)
                .map(|_| {
                    input
                        .bytes()
                        .map(|b| String::from_utf8_lossy(b).into_owned())
                })
                .collect::<Result<_>>()?;
            if written != shape {
                return Err(crate::PipelineError::StateMismatch {
                    pipeline: pipeline.to_string(),
                    changes: vec![crate::StateChange {
                        operator: "(all)".to_string(),
                        kind: "a checkpoint of an earlier Strata".to_string(),
                        written: Some(written.join("\n")),
                        planned: Some(shape.join("\n")),
                    }],
                });
            }
        } else if magic != MAGIC_V1 {
            return Err(input.corrupt("it is not a Strata state checkpoint"));
        }
        *self.committed_watermark = input.option(|r| r.i64())?;
        restore_tracker(&mut input, self.source.as_deref_mut())?;
        let operators = self.operators;
        match operators.aggregate {
            Some(aggregate) => aggregate.restore(&mut input)?,
            None => {
                AggregateState::decode(&mut input, false, 0)?;
            }
        }
        if !input.is_done() {
            self.parked.decode(&mut input)?;
        }
        if !input.is_done() {
            for lag in &operators.lags {
                lag.restore(&mut input)?;
            }
        }
        if !input.is_done() {
            self.waiting.decode(&mut input)?;
            let changed = "the pipeline's joins changed since it was written; start the pipeline afresh (drop its target) to rebuild its state";
            match (input.u8()?, self.feed) {
                (0, None) => {}
                (1, Some(feed)) => feed.restore(&mut input, Instant::now())?,
                _ => return Err(input.corrupt(changed)),
            }
            match (input.u8()?, operators.interval, &mut self.right) {
                (0, None, _) => {}
                (1, Some(join), Some(right)) => {
                    join.restore(&mut input)?;
                    right.restore(&mut input, Instant::now())?;
                }
                _ => return Err(input.corrupt(changed)),
            }
            // Checkpoints written before window-aligned queries end here.
            let aligned_flag = if input.is_done() { 0 } else { input.u8()? };
            match (aligned_flag, operators.aligned) {
                (0, None) => {}
                (1, Some(aligned)) => aligned.restore(&mut input)?,
                _ => return Err(input.corrupt(changed)),
            }
        }
        if !input.is_done() {
            return Err(input.corrupt("bytes left over"));
        }
        Ok(())
    }
}
