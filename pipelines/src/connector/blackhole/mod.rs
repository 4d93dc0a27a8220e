//! Blackhole tables (`'connector' = 'blackhole'`): rows written are counted
//! and digested, then dropped; for benchmarks, where the target's cost must
//! not hide the engine's.
//!
//! ```text
//!   rows ──sink: count + order-independent digest──▶ (dropped)   no positions, no checkpoints
//! ```

pub mod sink;

use strata_catalog::TableDef;

use super::Connector;
use crate::error::Result;
use crate::sink::{TargetOptions, TargetSink};

/// The `'connector' = 'blackhole'` tables.
pub struct Blackhole;

#[async_trait::async_trait]
impl Connector for Blackhole {
    fn name(&self) -> &'static str {
        "blackhole"
    }

    fn label(&self) -> &'static str {
        "blackhole"
    }

    async fn open_target(
        &self,
        _table: &TableDef,
        options: TargetOptions<'_>,
    ) -> Result<Box<dyn TargetSink>> {
        Ok(Box::new(sink::BlackholeSink {
            output: options.output,
        }))
    }

    fn commits_positions(&self) -> bool {
        false
    }

    fn takes_retractions_unkeyed(&self, _table: &TableDef) -> bool {
        true
    }
}
