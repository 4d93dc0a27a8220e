//! What the engine is built from beyond its core: the planners of operators
//! a pipeline's SELECT can be planned into, and the connectors of the tables
//! it reads, writes and looks up. A new operator or connector registers here.
//!
//! ```text
//!   registry::planners()   ──▶ [row_number::RowNumberPlanner, …] ──asked at every plan node──▶ transform
//!   registry::connectors() ──▶ [Kafka, Delta, MySQL, embedded, Nexmark, blackhole, datagen] ──by 'connector'──▶ registry::connector(table)
//!   registry::declare_connectors() ──▶ the DDL learns the options of connectors the catalog does not know (datagen)
//! ```

use crate::connector::{
    Connector, StreamTraits, blackhole::Blackhole, datagen, datagen::Datagen, delta::Delta,
    embedded::Embedded, kafka::Kafka, mysql::Mysql, nexmark::Nexmark,
};
use strata_catalog::TableDef;
use strata_catalog::ddl::ConnectorDeclaration;

use crate::operator::planner::OperatorPlanner;

/// The registered planners, asked in order.
pub fn planners() -> &'static [&'static dyn OperatorPlanner] {
    &[
        &crate::row_number::RowNumberPlanner,
        &crate::over::OverPlanner,
        &crate::sort::SortPlanner,
    ]
}

/// The registered connectors, one per `'connector'` option value.
pub fn connectors() -> &'static [&'static dyn Connector] {
    &[
        &Kafka, &Delta, &Mysql, &Embedded, &Nexmark, &Blackhole, &Datagen,
    ]
}

/// The DDL's declarations of the registered connectors the catalog does not
/// know itself.
pub fn declarations() -> &'static [&'static ConnectorDeclaration] {
    static DECLARATIONS: [&ConnectorDeclaration; 1] = [&datagen::DECLARATION];
    &DECLARATIONS
}

/// Declares [`declarations`] to the DDL of every catalog in the process;
/// done before the first catalog opens.
pub fn declare_connectors() {
    strata_catalog::ddl::declare(declarations());
}

/// What reading `table` as a stream gives, or why it cannot be read as one.
pub fn stream_of(table: &TableDef) -> std::result::Result<StreamTraits, String> {
    connector(table).stream(table)
}

/// The connector of `table`; for a connector this build does not have (a
/// catalog store written by another build), one that refuses every use.
pub fn connector(table: &TableDef) -> &'static dyn Connector {
    let name = table.kind.connector();
    connectors()
        .iter()
        .find(|connector| connector.name() == name)
        .copied()
        .unwrap_or(&Unregistered)
}

/// A connector this build does not have: its tables are neither read, nor
/// written, nor looked up.
struct Unregistered;

impl Connector for Unregistered {
    fn name(&self) -> &'static str {
        "unregistered"
    }

    fn label(&self) -> &'static str {
        "unregistered connector"
    }

    fn refuses_target(&self) -> Option<&'static str> {
        Some("writing a table of a connector this build of Strata does not have")
    }
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
CREATE TABLE s.ods_generated (id BIGINT) WITH ('connector' = 'datagen', 'fields.id.kind' = 'sequence', 'fields.id.start' = '1', 'fields.id.end' = '10');
";

    fn table(name: &str) -> TableDef {
        declare_connectors();
        strata_catalog::ddl::table_defs("tables.sql", TABLES, &BTreeMap::new())
            .unwrap()
            .into_iter()
            .find(|t| t.name.name.ends_with(&format!("_{name}")))
            .unwrap()
    }

    /// Whether a kind is one the catalog knows: a kind added there fails to
    /// compile here until it has a table above and a connector.
    fn known(kind: &strata_catalog::TableKind) -> bool {
        use strata_catalog::TableKind::*;
        match kind {
            Kafka { .. } | Mysql { .. } | Delta { .. } | Embedded { .. } | Nexmark { .. } => true,
            Blackhole | Declared { .. } => true,
        }
    }

    #[test]
    fn every_kind_of_table_has_one_registered_connector() {
        let names: Vec<&str> = connectors().iter().map(|c| c.name()).collect();
        let mut unique = names.clone();
        unique.sort_unstable();
        unique.dedup();
        assert_eq!(unique.len(), names.len(), "{names:?}");
        declare_connectors();
        let tables =
            strata_catalog::ddl::table_defs("tables.sql", TABLES, &BTreeMap::new()).unwrap();
        let mut kinds: Vec<&str> = tables
            .iter()
            .filter(|table| known(&table.kind))
            .map(|table| {
                assert_eq!(connector(table).name(), table.kind.connector());
                table.kind.connector()
            })
            .collect();
        kinds.sort_unstable();
        kinds.dedup();
        assert_eq!(
            kinds, unique,
            "a connector without a table above, or a kind without a connector"
        );
    }

    #[test]
    fn streams_say_what_they_carry_or_why_they_cannot_be_read() {
        let reads = |name: &str| {
            let table = table(name);
            connector(&table).stream(&table)
        };
        let clicks = reads("clicks").unwrap();
        assert!(clicks.appends_records && !clicks.changelog && clicks.rewinds);
        let users = reads("users_cdc").unwrap();
        assert!(users.changelog && !users.appends_records);
        assert_eq!(reads("lines").unwrap_err(), "reading format 'raw'");
        let lake = reads("lake").unwrap();
        assert!(!lake.rewinds && !lake.probes_versions && !lake.appends_records);
        assert!(clicks.joins_another && users.joins_another && !lake.joins_another);
        assert!(reads("bids").unwrap().joins_another && !reads("generated").unwrap().joins_another);
        assert_eq!(
            reads("serving").unwrap_err(),
            "reading a mysql table as a stream"
        );
        assert!(reads("cities").is_err() && reads("sink").is_err());
    }

    #[test]
    fn a_table_of_a_connector_this_build_lacks_is_refused_not_a_crash() {
        let mut table = table("generated");
        table.kind = strata_catalog::TableKind::Declared {
            name: "binlog-of-a-later-build".to_string(),
            options: BTreeMap::new(),
        };
        let unknown = connector(&table);
        assert_eq!(unknown.name(), "unregistered");
        assert!(unknown.stream(&table).is_err());
        assert!(unknown.refuses_target().is_some());
    }

    #[test]
    fn targets_say_what_they_keep_and_which_they_refuse() {
        let named = |name: &str| connector(&table(name));
        assert!(named("cities").refuses_target().is_some());
        assert!(named("bids").refuses_target().is_some());
        assert!(named("generated").refuses_target().is_some());
        assert!(named("lake").refuses_target().is_none() && named("lake").reads_back());
        assert!(named("serving").upserts_only());
        assert!(!named("sink").commits_positions() && named("lake").commits_positions());
        assert_eq!(
            named("clicks").commits_positions_of().map(|(only, _)| only),
            Some("kafka")
        );
        let mut versioned = table("users_cdc");
        assert!(connector(&versioned).versions(&versioned));
        versioned.lookup.broadcast = true;
        assert!(!connector(&versioned).versions(&versioned));
    }
}
