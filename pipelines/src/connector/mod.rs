//! Connectors: the kinds of table a pipeline reads, writes and looks up, each
//! in a folder of its own behind [`Connector`], found by its `'connector'`
//! option in [`crate::registry::connectors`].
//!
//! ```text
//!   TableDef ──of(table)──▶ &dyn Connector ──open_source──▶ Box<dyn SourceReader>   (a pipeline's stream)
//!                                          ──open_target──▶ Box<dyn TargetSink>     (rows + positions + checkpoint id)
//!                                          ──dimension────▶ Dimension               (a lookup join's rows)
//!                                          ──stream / refuses_target / upserts_only / …: what it can do,
//!                                            asked by validation and the runner instead of matching kinds
//! ```
//!
//! A new connector is a folder here and one line in the registry: nothing
//! else in the engine names a connector.

pub mod blackhole;
pub mod delta;
pub mod embedded;
pub mod kafka;
pub mod mysql;
pub mod nexmark;

use strata_catalog::{CatalogStore, Project, TableDef, connectors};

use crate::error::{PipelineError, Result};
use crate::lookup::dimension::Dimension;
use crate::sink::{TargetOptions, TargetSink};
use crate::source::reader::SourceReader;
use crate::source::{Positions, SourceOptions};

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
    /// read beside them in step.
    pub probes_versions: bool,
}

/// Where a lookup join's dimension is opened.
#[derive(Debug)]
pub struct DimensionContext<'a> {
    pub project: &'a Project,
    /// The catalog's own store, where embedded tables live.
    pub store: &'a CatalogStore,
    pub pipeline: &'a str,
}

/// One kind of table, as its `'connector'` option names it.
#[async_trait::async_trait]
pub trait Connector: Send + Sync {
    /// The `'connector'` option's value.
    fn name(&self) -> &'static str;

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
        _positions: &mut dyn Positions,
    ) -> Result<(Box<dyn SourceReader>, Vec<i32>)> {
        Err(PipelineError::Source {
            what: format!("table {}", table.name),
            cause: format!("a {} table cannot be read as a stream", self.name()),
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

/// The connector of `table`.
pub fn of(table: &TableDef) -> &'static dyn Connector {
    let name = table.kind.connector();
    *crate::registry::connectors()
        .iter()
        .find(|connector| connector.name() == name)
        .unwrap_or_else(|| panic!("connector {name} is registered"))
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    const TABLES: &str = "
CREATE TABLE s.ods_clicks (id BIGINT) WITH ('connector' = 'kafka', 'topic' = 'clicks', 'format' = 'json', 'properties.bootstrap.servers' = 'k:9092');
CREATE TABLE s.ods_users_cdc (id BIGINT, PRIMARY KEY (id) NOT ENFORCED) WITH ('connector' = 'kafka', 'topic' = 'users', 'format' = 'debezium-json', 'properties.bootstrap.servers' = 'k:9092');
CREATE TABLE s.ods_lines (line STRING) WITH ('connector' = 'kafka', 'topic' = 'lines', 'format' = 'raw', 'properties.bootstrap.servers' = 'k:9092');
CREATE TABLE s.dwd_lake (id BIGINT) WITH ('connector' = 'delta');
CREATE TABLE s.app_serving (id BIGINT, PRIMARY KEY (id) NOT ENFORCED) WITH ('connector' = 'mysql', 'url' = 'mysql://db/app', 'table-name' = 'serving');
CREATE TABLE s.dim_cities (id BIGINT) WITH ('connector' = 'embedded');
CREATE TABLE s.ods_bids (auction BIGINT) WITH ('connector' = 'nexmark', 'stream' = 'bid');
CREATE TABLE s.app_sink (id BIGINT) WITH ('connector' = 'blackhole');
";

    fn table(name: &str) -> TableDef {
        strata_catalog::ddl::table_defs("tables.sql", TABLES, &BTreeMap::new())
            .unwrap()
            .into_iter()
            .find(|t| t.name.name.ends_with(&format!("_{name}")))
            .unwrap()
    }

    #[test]
    fn every_kind_of_table_has_one_registered_connector() {
        let names: Vec<&str> = crate::registry::connectors()
            .iter()
            .map(|c| c.name())
            .collect();
        let mut unique = names.clone();
        unique.sort_unstable();
        unique.dedup();
        assert_eq!(unique.len(), names.len(), "{names:?}");
        for name in ["clicks", "lake", "serving", "cities", "bids", "sink"] {
            let table = table(name);
            assert_eq!(of(&table).name(), table.kind.connector());
        }
        assert_eq!(
            names.len(),
            6,
            "a connector without a table above: {names:?}"
        );
    }

    #[test]
    fn streams_say_what_they_carry_or_why_they_cannot_be_read() {
        let reads = |name: &str| {
            let table = table(name);
            of(&table).stream(&table)
        };
        let clicks = reads("clicks").unwrap();
        assert!(clicks.appends_records && !clicks.changelog && clicks.rewinds);
        let users = reads("users_cdc").unwrap();
        assert!(users.changelog && !users.appends_records);
        assert_eq!(reads("lines").unwrap_err(), "reading format 'raw'");
        let lake = reads("lake").unwrap();
        assert!(!lake.rewinds && !lake.probes_versions && !lake.appends_records);
        assert!(reads("bids").is_ok());
        assert_eq!(
            reads("serving").unwrap_err(),
            "reading a mysql table as a stream"
        );
        assert!(reads("cities").is_err() && reads("sink").is_err());
    }

    #[test]
    fn targets_say_what_they_keep_and_which_they_refuse() {
        let connector = |name: &str| of(&table(name));
        assert!(connector("cities").refuses_target().is_some());
        assert!(connector("bids").refuses_target().is_some());
        assert!(connector("lake").refuses_target().is_none() && connector("lake").reads_back());
        assert!(connector("serving").upserts_only());
        assert!(!connector("sink").commits_positions() && connector("lake").commits_positions());
        assert_eq!(
            connector("clicks")
                .commits_positions_of()
                .map(|(only, _)| only),
            Some("kafka")
        );
        let mut versioned = table("users_cdc");
        assert!(of(&versioned).versions(&versioned));
        versioned.lookup.broadcast = true;
        assert!(!of(&versioned).versions(&versioned));
    }
}
