//! Nexmark's event generator as a stream (`'connector' = 'nexmark'`): one of
//! its three streams, generated in process, for benchmarks and tests. Its one
//! partition's position is the number of the last event committed.
//!
//! ```text
//!   Generator(stream, rate) ──event n, n+1, …──▶ batches ──▶ pipeline   (resumes after the committed n)
//! ```

pub mod source;

use strata_catalog::{TableDef, TableKind};

use super::{Connector, StreamTraits};
use crate::error::Result;
use crate::source::reader::SourceReader;
use crate::source::{CommittedPositions, SourceOptions};

/// The `'connector' = 'nexmark'` tables.
pub struct Nexmark;

#[async_trait::async_trait]
impl Connector for Nexmark {
    fn name(&self) -> &'static str {
        "nexmark"
    }

    fn label(&self) -> &'static str {
        "Nexmark"
    }

    /// Generated rows are the same however often they are generated, so a
    /// Nexmark table can be either stream of a join (Nexmark q3, q9, q20).
    fn stream(&self, _table: &TableDef) -> std::result::Result<StreamTraits, String> {
        Ok(StreamTraits {
            joins_another: true,
            ..StreamTraits::default()
        })
    }

    async fn open_source(
        &self,
        table: &TableDef,
        options: &SourceOptions<'_>,
        positions: &mut dyn CommittedPositions,
    ) -> Result<(Box<dyn SourceReader>, Vec<i32>)> {
        match &table.kind {
            TableKind::Nexmark {
                stream,
                events,
                rate,
            } => source::open(table, *stream, *events, *rate, options, positions).await,
            _ => unreachable!("the registry gives Nexmark tables to the Nexmark connector"),
        }
    }

    fn refuses_target(&self) -> Option<&'static str> {
        Some(
            "writing to a Nexmark table (it generates events; write a Delta, MySQL, Kafka or blackhole table)",
        )
    }
}
