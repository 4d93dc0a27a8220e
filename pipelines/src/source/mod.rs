//! Sources: where pipelines read records from. Each connector's source (in
//! its folder under `crate::connector`) implements [`reader::SourceReader`]
//! and is opened by its connector where the target's last commit left it.
//!
//! ```text
//!   TableDef ──registry::connector(table).open_source(options, target's Positions)──▶ (Box<dyn SourceReader>, partitions)
//! ```

pub mod reader;
pub mod replay;

pub use crate::decode::SourceRecord;

use std::collections::BTreeMap;
use std::time::Duration;

use strata_catalog::Project;

use crate::error::Result;

/// Where a pipeline's target says its sources stand.
#[async_trait::async_trait]
pub trait Positions: Send {
    /// The last position committed for `partition` of `stream`, if any.
    async fn committed(&mut self, stream: &str, partition: i32) -> Result<Option<i64>>;

    /// Records where partitions never committed start (the position before
    /// their first record), so that a restart resumes there and not wherever
    /// the startup mode would point by then.
    async fn record_starts(&mut self, starts: &BTreeMap<(String, i32), i64>) -> Result<()>;
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
