//! A window-aligned query as an operator of the plan.
//!
//! ```text
//!   process(rows of a side) ──▶ no rows go on; one state write that buffers them
//!                                 with that side's stream (a window join reads two)
//!                       └─ rows whose windows were all evaluated ──▶ Missed(Late)
//!   on_watermark(W) ──▶ Emitted { upserts: the query's rows for the windows W closed }
//!                       W: the stream's watermark, the lower of the two for a window join
//! ```

use std::sync::Mutex;

use arrow::datatypes::SchemaRef;

use super::{AlignedQuery, AlignedState};
use crate::error::Result;
use crate::operator::{
    BatchContext, Described, Emitted, InputStream, KeepsState, Operator, OperatorKind, Processed,
    StateInfo, Traced, Watermarks,
};
use crate::state::{ByteReader, ByteWriter};

/// A window-aligned query, the rows it holds and how far it evaluated.
#[derive(Debug)]
pub struct WindowAligned {
    query: AlignedQuery,
    /// The schema of the query's rows (the target's).
    output: SchemaRef,
    state: Mutex<AlignedState>,
}

impl WindowAligned {
    pub fn new(query: AlignedQuery, output: SchemaRef) -> Self {
        Self {
            query,
            output,
            state: Mutex::new(AlignedState::default()),
        }
    }

    pub fn query(&self) -> &AlignedQuery {
        &self.query
    }

    fn state(&self) -> std::sync::MutexGuard<'_, AlignedState> {
        self.state.lock().expect("not poisoned")
    }
}

#[async_trait::async_trait]
impl Operator for WindowAligned {
    fn kind(&self) -> OperatorKind {
        OperatorKind::WindowAligned
    }

    async fn process(
        self: std::sync::Arc<Self>,
        input: Traced,
        ctx: &BatchContext<'_>,
    ) -> Result<Processed> {
        let output = self.output.clone();
        let side = ctx.side;
        Ok(Processed::held(
            output,
            input,
            "every window of the row had been evaluated",
            move |rows| self.query.update(&mut self.state(), side, &rows.batch),
        ))
    }

    fn reads_second_stream(&self) -> bool {
        self.query.inputs() > 1
    }

    fn describe(&self, input: &InputStream) -> Described {
        Described {
            detail: self.query.describe(),
            schema: self.output.clone(),
            watermark: input.watermark.clone(),
            state: Some(StateInfo {
                holds: "the rows of windows not evaluated yet".to_string(),
                fingerprint: self.query.state_fingerprint(),
            }),
        }
    }

    fn holds_rows(&self) -> bool {
        true
    }

    async fn on_watermark(&self, watermarks: &Watermarks) -> Result<Emitted> {
        // The state leaves its lock while DataFusion evaluates the windows.
        let mut state = std::mem::take(&mut *self.state());
        let watermark = self.query.watermark(watermarks);
        let evaluated = self.query.emit(&mut state, watermark).await;
        *self.state() = state;
        Ok(Emitted {
            upserts: evaluated?,
            ..Emitted::default()
        })
    }

    fn state(&self) -> Option<&dyn KeepsState> {
        Some(self)
    }
}

impl KeepsState for WindowAligned {
    fn snapshot(&self, out: &mut ByteWriter) {
        self.state().encode(out);
    }

    fn restore(&self, input: &mut ByteReader<'_>) -> Result<()> {
        *self.state() = AlignedState::decode(input)?;
        Ok(())
    }
}
