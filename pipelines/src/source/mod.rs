//! Sources: where pipelines read records from, each connector in its own
//! module behind [`reader::SourceReader`], opened by [`open`] where the
//! target's last commit left it.
//!
//! ```text
//!   TableDef ──open(options, target's Positions)──▶ kafka::open / delta::open / nexmark::open
//!                                                      └▶ (Box<dyn SourceReader>, partitions)
//! ```

pub mod delta;
pub mod kafka;
pub mod nexmark;
pub mod reader;
pub mod replay;

pub use crate::decode::SourceRecord;

use std::collections::BTreeMap;
use std::time::Duration;

use strata_catalog::{Project, TableDef, TableKind};

use crate::error::{PipelineError, Result};
use reader::SourceReader;

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

/// Opens `table` as a stream where `positions` say the pipeline stands, with the partitions it reads.
pub async fn open(
    table: &TableDef,
    options: &SourceOptions<'_>,
    positions: &mut dyn Positions,
) -> Result<(Box<dyn SourceReader>, Vec<i32>)> {
    match &table.kind {
        TableKind::Kafka { startup_mode, .. } => {
            kafka::open(table, startup_mode, options, positions).await
        }
        TableKind::Nexmark {
            stream,
            events,
            rate,
        } => nexmark::open(table, *stream, *events, *rate, options, positions).await,
        TableKind::Delta { .. } => delta::open(table, options, positions).await,
        other => Err(PipelineError::Source {
            what: format!("table {}", table.name),
            cause: format!("a {} table cannot be read as a stream", other.connector()),
        }),
    }
}
