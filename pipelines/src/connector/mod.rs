//! Connectors: the kinds of table a pipeline reads, writes and looks up, each
//! in a folder of its own behind [`Connector`], found by its `'connector'`
//! option in the registry (`crate::registry::connector`).
//!
//! ```text
//!   TableDef ──registry::connector(table)──▶ &dyn Connector ──open_source──▶ Box<dyn SourceReader>   (a pipeline's stream)
//!                                          ──open_target──▶ Box<dyn TargetSink>     (rows + positions + checkpoint id)
//!                                          ──dimension────▶ Dimension               (a lookup join's rows)
//!                                          ──open_versions─▶ Box<dyn VersionFeed>   (a temporal join's changelog)
//!                                          ──stream / refuses_target / upserts_only / …: what it can do,
//!                                            asked by validation and the runner instead of matching kinds
//! ```
//!
//! A new connector is a folder here and one line in the registry; a table's
//! options are still parsed by the catalog into its `TableKind`.

pub mod blackhole;
pub mod datagen;
pub mod delta;
pub mod embedded;
pub mod kafka;
pub mod mysql;
pub mod nexmark;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use strata_catalog::{CatalogStore, Project, StartupMode, TableDef, connectors};

use crate::decode::json::Rejected;
use crate::error::{PipelineError, Result};
use crate::lookup::dimension::Dimension;
use crate::lookup::versioned::VersionedTable;
use crate::position::{Position, Positions};
use crate::sink::{TargetOptions, TargetSink};
use crate::source::SourceRecord;
use crate::source::reader::SourceReader;
use crate::source::{CommittedPositions, SourceOptions};
use crate::state::{ByteReader, ByteWriter};

/// What reading a table as a pipeline's stream gives.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StreamTraits {
    /// Rows are changes (insert, update, delete) of keyed rows, not appends.
    pub changelog: bool,
    /// Rows arrive as JSON records of their own, appended: they can be
    /// replayed from the quarantine and joined by an interval join.
    pub appends_records: bool,
    /// A reset can start reading again from its earliest or latest position.
    pub rewinds: bool,
    /// Its rows can probe an event-time temporal join, whose versions are
    /// read beside them in step (the join itself refuses a changelog probe).
    pub probes_versions: bool,
    /// It can be one of the streams of a join or UNION ALL, read in step with
    /// the others, its positions committed with the target's (Kafka, Nexmark).
    pub joins_another: bool,
}

/// Where a lookup join's dimension is opened.
#[derive(Debug)]
pub struct DimensionContext<'a> {
    pub project: &'a Project,
    /// The catalog's own store, where embedded tables live.
    pub store: &'a CatalogStore,
    pub pipeline: &'a str,
}

/// What applying a batch of changelog records left to commit.
#[derive(Debug, Default)]
pub struct Applied {
    /// Records that are no version, for the quarantine.
    pub rejected: Vec<Rejected>,
    /// Where each split applied from stands.
    pub positions: BTreeMap<i32, Position>,
}

/// A table's changelog, read by the pipeline beside its probe stream and
/// applied to an event-time temporal join's versions, with a watermark of
/// its own; its positions commit with the target's, as the probe's do.
#[async_trait::async_trait]
pub trait VersionFeed: std::fmt::Debug + Send + Sync {
    /// The versions it keeps.
    fn table(&self) -> &Arc<VersionedTable>;

    /// The stream its positions are committed under.
    fn stream(&self) -> &str;

    /// The partitions it reads.
    fn partitions(&self) -> &[i32];

    /// The changelog's watermark, as of the last [`Self::advance`].
    fn watermark(&self) -> Option<i64>;

    /// The next records of the changelog; `None` when it has been read to its end.
    async fn next(&mut self) -> Result<Option<Vec<SourceRecord>>>;

    /// Applies records to the versions, in the order they were written.
    fn apply(&mut self, records: &[SourceRecord], now: Instant) -> Result<Applied>;

    /// Moves the versions' horizon: the changelog's watermark, or +∞ while
    /// every partition has been idle.
    fn advance(&mut self, now: Instant);

    /// The versions and the watermark's progress, for a checkpoint.
    fn encode(&self, out: &mut ByteWriter);

    /// Restores what [`Self::encode`] wrote.
    fn restore(&mut self, input: &mut ByteReader, now: Instant) -> Result<()>;
}

/// One kind of table, as its `'connector'` option names it.
#[async_trait::async_trait]
pub trait Connector: Send + Sync {
    /// The `'connector'` option's value.
    fn name(&self) -> &'static str;

    /// Its name in messages ("Delta", "MySQL/TiDB").
    fn label(&self) -> &'static str;

    /// What reading `table` as a stream gives, or why it cannot be read as
    /// one (completing "… is not supported yet").
    fn stream(&self, _table: &TableDef) -> std::result::Result<StreamTraits, String> {
        Err(format!("reading a {} table as a stream", self.name()))
    }

    /// Opens `table` as a stream where `positions` say the pipeline stands,
    /// with the partitions it reads.
    async fn open_source(
        &self,
        table: &TableDef,
        _options: &SourceOptions<'_>,
        _positions: &mut dyn CommittedPositions,
    ) -> Result<(Box<dyn SourceReader>, Vec<i32>)> {
        Err(PipelineError::Source {
            what: format!("table {}", table.name),
            cause: format!("a {} table cannot be read as a stream", self.name()),
        })
    }

    /// The positions that read `table` again from where `to` points (its
    /// earliest or latest records): per partition, the position before the
    /// first record to read. Only for streams that rewind.
    async fn rewound(
        &self,
        _project: &Project,
        table: &TableDef,
        _group: &str,
        _to: &StartupMode,
    ) -> Result<Positions> {
        Err(PipelineError::Source {
            what: format!("table {}", table.name),
            cause: format!(
                "a {} table cannot be read again from another position",
                self.name()
            ),
        })
    }

    /// Why a stream of `table` cannot be read yet (a topic not created yet),
    /// or `None` when it can.
    async fn not_ready(&self, _project: &Project, _table: &TableDef) -> Result<Option<String>> {
        Ok(None)
    }

    /// Why a pipeline cannot write `table`, when it cannot (completing
    /// "… is not supported yet").
    fn refuses_target(&self) -> Option<&'static str> {
        None
    }

    /// Where a pipeline writing `table` keeps its quarantine, late rows and
    /// checkpoints: a Delta table's own folder, else the lake's folder for
    /// the table's name.
    fn target_location(&self, project: &Project, table: &TableDef) -> Result<String> {
        let in_lake = TableDef {
            kind: strata_catalog::TableKind::Delta {
                table_path: None,
                connection: None,
                partitioned_by: Vec::new(),
            },
            ..table.clone()
        };
        Ok(connectors::delta_location(project, &in_lake)?)
    }

    /// Opens `table` as a pipeline's target.
    async fn open_target(
        &self,
        table: &TableDef,
        _options: TargetOptions<'_>,
    ) -> Result<Box<dyn TargetSink>> {
        Err(PipelineError::Source {
            what: format!("table {}", table.name),
            cause: format!(
                "{} is not supported",
                self.refuses_target()
                    .unwrap_or("writing to it as a pipeline's target")
            ),
        })
    }

    /// The connector whose sources alone a target of this connector can
    /// commit positions for, and why (completing "… is not supported yet").
    fn commits_positions_of(&self) -> Option<(&'static str, &'static str)> {
        None
    }

    /// Whether a target records the sources' positions with its rows; a
    /// target that does not (a blackhole) keeps no checkpoints either.
    fn commits_positions(&self) -> bool {
        true
    }

    /// Whether `table`, a target without a primary key, can take a
    /// retracting changelog: each update's old image and each delete take
    /// back an equal row written before (a blackhole, whose digest subtracts
    /// them; a `debezium-json` topic, which writes them as deletes). Other
    /// targets need a key to upsert by.
    fn takes_retractions_unkeyed(&self, _table: &TableDef) -> bool {
        false
    }

    /// Whether a GROUP BY's changing results reach `table` as retractions
    /// (the old row taken back, then the new one) rather than as upserts by
    /// key: a target without a key that takes retractions (a blackhole), or
    /// one that writes every change as it comes (a `debezium-json` topic).
    fn retracts_into(&self, table: &TableDef) -> bool {
        table.primary_key.is_empty() && self.takes_retractions_unkeyed(table)
    }

    /// Whether checks can read a target's rows back (for uniqueness across commits).
    fn reads_back(&self) -> bool {
        false
    }

    /// Whether a target is written by upserts only, so needs a primary key.
    fn upserts_only(&self) -> bool {
        false
    }

    /// Whether a lookup join against `table` joins each row with the version
    /// valid at its event time (read from the table's changelog).
    fn versions(&self, _table: &TableDef) -> bool {
        false
    }

    /// Starts reading `table`'s changelog into `versions` (an event-time
    /// temporal join's), from its start or where `positions` say.
    async fn open_versions(
        &self,
        table: &TableDef,
        _versions: Arc<VersionedTable>,
        _options: &SourceOptions<'_>,
        _positions: &mut dyn CommittedPositions,
    ) -> Result<Box<dyn VersionFeed>> {
        Err(PipelineError::Source {
            what: format!("table {}", table.name),
            cause: format!(
                "a {} table keeps no changelog to join by versions",
                self.name()
            ),
        })
    }

    /// Where a lookup join's rows of `table` come from; `None` when it cannot
    /// be looked up.
    fn dimension(
        &self,
        _table: &TableDef,
        _context: &DimensionContext<'_>,
    ) -> Result<Option<Dimension>> {
        Ok(None)
    }
}
