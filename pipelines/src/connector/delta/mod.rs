//! Delta Lake tables: read as a stream of the rows each new log version
//! adds, written one log version per commit with the pipeline's positions as
//! `txn` actions, and looked up from memory, reloaded when the version moves.
//!
//! ```text
//!   _delta_log v, v+1, … ──source: added files──▶ batches ──▶ pipeline   (resumes after the committed v)
//!   rows + positions ──sink: one log version with txn actions──▶ table
//!   whole table ──dimension: index key → rows, reloaded on a new version──▶ lookup join
//! ```

pub mod dimension;
pub mod sink;
pub mod source;

use strata_catalog::{Project, TableDef, connectors};

use super::{Connector, DimensionContext, StreamTraits};
use crate::error::Result;
use crate::lookup::dimension::Dimension;
use crate::sink::{TargetOptions, TargetSink};
use crate::source::reader::SourceReader;
use crate::source::{CommittedPositions, SourceOptions};

/// The `'connector' = 'delta'` tables.
pub struct Delta;

#[async_trait::async_trait]
impl Connector for Delta {
    fn name(&self) -> &'static str {
        "delta"
    }

    fn label(&self) -> &'static str {
        "Delta"
    }

    fn stream(&self, _table: &TableDef) -> std::result::Result<StreamTraits, String> {
        Ok(StreamTraits::default())
    }

    async fn open_source(
        &self,
        table: &TableDef,
        options: &SourceOptions<'_>,
        positions: &mut dyn CommittedPositions,
    ) -> Result<(Box<dyn SourceReader>, Vec<i32>)> {
        source::open(table, options, positions).await
    }

    fn target_location(&self, project: &Project, table: &TableDef) -> Result<String> {
        Ok(connectors::delta_location(project, table)?)
    }

    async fn open_target(
        &self,
        _table: &TableDef,
        options: TargetOptions<'_>,
    ) -> Result<Box<dyn TargetSink>> {
        Ok(Box::new(
            sink::DeltaSink::open(options.location, options.pipeline, options.mode)
                .await?
                .with_event_time_columns(options.event_time_columns),
        ))
    }

    fn reads_back(&self) -> bool {
        true
    }

    fn dimension(
        &self,
        table: &TableDef,
        context: &DimensionContext<'_>,
    ) -> Result<Option<Dimension>> {
        Ok(Some(Dimension::Keyed(Box::new(
            dimension::DeltaDimension::new(
                connectors::delta_location(context.project, table)?,
                table.schema.clone(),
            ),
        ))))
    }
}
