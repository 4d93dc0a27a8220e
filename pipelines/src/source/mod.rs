//! Sources: where pipelines read records from. Each connector's source (in
//! its folder under `crate::connector`) implements [`reader::SourceReader`]
//! and is opened by its connector where the target's last commit left it.
//!
//! ```text
//!   TableDef ──registry::connector(table).open_source(options, target's CommittedPositions)──▶ (Box<dyn SourceReader>, partitions)
//! ```

pub mod reader;
pub mod replay;

pub use crate::decode::SourceRecord;

use std::time::Duration;

use strata_catalog::Project;

use crate::error::Result;
use crate::position::{Position, Positions};

/// Where a pipeline's target says its sources stand.
#[async_trait::async_trait]
pub trait CommittedPositions: Send {
    /// The last position committed for `split` of `stream`, if any.
    async fn committed(&mut self, stream: &str, split: i32) -> Result<Option<Position>>;

    /// Records where splits never committed start (the position before
    /// their first record), so that a restart resumes there and not wherever
    /// the startup mode would point by then.
    async fn record_starts(&mut self, starts: &Positions) -> Result<()>;
}

/// What opening a pipeline's source needs beyond the table.
#[derive(Debug)]
pub struct SourceOptions<'a> {
    pub project: &'a Project,
    /// The pipeline's Kafka consumer group.
    pub group: &'a str,
    pub batch_records: usize,
    /// How often the end of a Delta log is read again.
    pub poll_every: Duration,
}
