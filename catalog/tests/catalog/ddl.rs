//! Bad DDL: every error names file:line:column and says how to fix it.

use std::collections::BTreeMap;

use arrow::datatypes::{DataType, TimeUnit};
use strata_catalog::config::{Connection, Secret};
use strata_catalog::ddl::table_defs;
use strata_catalog::{KafkaFormat, Layer, StartupMode, TableKind};

fn error_of(ddl: &str) -> String {
    table_defs("tables.sql", ddl, &connections())
        .expect_err("the DDL should be refused")
        .to_string()
}

fn connections() -> BTreeMap<String, Connection> {
    BTreeMap::from([
        (
            "shop_db".to_string(),
            Connection::Mysql {
                url: Secret::new("mysql://root@127.0.0.1:3306/shop"),
                username: None,
                password: None,
                databases: Vec::new(),
            },
        ),
        (
            "events".to_string(),
            Connection::Kafka {
                bootstrap_servers: "127.0.0.1:9092".into(),
                properties: BTreeMap::new(),
            },
        ),
    ])
}

#[test]
fn every_mistake_points_at_its_place_with_a_hint() {
    let cases: &[(&str, &str, &[&str])] = &[
        (
            "unknown connector",
            "CREATE TABLE shop.ods_a (id BIGINT)\nWITH ('connector' = 'kafak');",
            &[
                "tables.sql:2:21: unknown connector \"kafak\"",
                "'kafka'",
                "'mysql'",
                "'delta'",
            ],
        ),
        (
            "unknown option",
            "CREATE TABLE shop.ods_a (id BIGINT) WITH (\n  'connector' = 'kafka', 'topic' = 't', 'format' = 'json',\n  'connection' = 'events',\n  'scan.mode' = 'x');",
            &[
                "tables.sql:4:3: unknown option 'scan.mode'",
                "'scan.startup.mode'",
            ],
        ),
        (
            "a lookup option on a table nobody looks up",
            "CREATE TABLE shop.ods_bids (auction BIGINT) WITH ('connector' = 'nexmark', 'stream' = 'bid',\n  'lookup.cache.ttl' = '1 s');",
            &[
                "tables.sql:2:3: unknown option 'lookup.cache.ttl' for connector 'nexmark'",
                "'stream', 'events.num'",
            ],
        ),
        (
            "unmappable type",
            "CREATE TABLE shop.ods_a (\n  id BIGINT,\n  shape GEOMETRY\n) WITH ('connector' = 'delta');",
            &[
                "tables.sql:3:9: column shape has type GEOMETRY",
                "supported types are",
            ],
        ),
        (
            "decimal too wide",
            "CREATE TABLE shop.ods_a (price DECIMAL(50, 2)) WITH ('connector' = 'delta');",
            &["column price has type DECIMAL(50, 2)"],
        ),
        (
            "syntax error",
            "CREATE TABLE shop.ods_a (\n  id BIGINT\n  name STRING\n) WITH ('connector' = 'delta');",
            &["tables.sql:3:3: expected ',' or ')'"],
        ),
        (
            "no layer",
            "CREATE TABLE shop.orders (id BIGINT) WITH ('connector' = 'delta');",
            &["tables.sql:1:14:", "no layer", "'layer'"],
        ),
        (
            "unknown layer",
            "CREATE TABLE shop.orders (id BIGINT) WITH ('connector' = 'delta', 'layer' = 'gold');",
            &["unknown layer \"gold\"", "ods, dwd, dws, app and dim"],
        ),
        (
            "unqualified name",
            "CREATE TABLE ods_a (id BIGINT) WITH ('connector' = 'delta');",
            &["tables.sql:1:14: table name ods_a must be SPACE.TABLE"],
        ),
        (
            "watermark on a number",
            "CREATE TABLE shop.ods_a (id BIGINT, WATERMARK FOR id AS id - INTERVAL '1' SECOND) WITH ('connector' = 'delta');",
            &["the watermark column id is BIGINT, not a timestamp"],
        ),
        (
            "primary key on a missing column",
            "CREATE TABLE shop.ods_a (id BIGINT, PRIMARY KEY (uid) NOT ENFORCED) WITH ('connector' = 'delta');",
            &["PRIMARY KEY names column uid", "the columns are id"],
        ),
        (
            "enforced key",
            "CREATE TABLE shop.ods_a (id BIGINT, PRIMARY KEY (id)) WITH ('connector' = 'delta');",
            &["expected NOT ENFORCED"],
        ),
        (
            "kafka without brokers",
            "CREATE TABLE shop.ods_a (id BIGINT) WITH ('connector' = 'kafka', 'topic' = 't', 'format' = 'json');",
            &["needs 'properties.bootstrap.servers' or 'connection'"],
        ),
        (
            "unknown format",
            "CREATE TABLE shop.ods_a (id BIGINT) WITH ('connector' = 'kafka', 'topic' = 't', 'connection' = 'events', 'format' = 'avro');",
            &["unknown format \"avro\"", "json, debezium-json, raw"],
        ),
        (
            "unknown connection",
            "CREATE TABLE shop.dim_a (id BIGINT) WITH ('connector' = 'mysql', 'connection' = 'nope', 'table-name' = 'a');",
            &["no connection named \"nope\"", "events, shop_db"],
        ),
        (
            "connection of the wrong kind",
            "CREATE TABLE shop.dim_a (id BIGINT) WITH ('connector' = 'mysql', 'connection' = 'events', 'table-name' = 'a');",
            &["is a kafka connection, but this is a mysql table"],
        ),
        (
            "ignore-parse-errors",
            "CREATE TABLE shop.ods_a (id BIGINT) WITH ('connector' = 'kafka', 'topic' = 't', 'format' = 'json', 'connection' = 'events', 'json.ignore-parse-errors' = 'true');",
            &[
                "unknown option 'json.ignore-parse-errors'",
                "never drops records",
            ],
        ),
        (
            "duplicate column",
            "CREATE TABLE shop.ods_a (id BIGINT, ID INT) WITH ('connector' = 'delta');",
            &["column ID is declared twice"],
        ),
        (
            "a name that is a path",
            "CREATE TABLE shop.`../etc` (id BIGINT) WITH ('connector' = 'delta', 'layer' = 'dwd');",
            &[
                "tables.sql:1:14: \"../etc\" cannot name a table",
                "letters, digits and underscores",
            ],
        ),
        (
            "raw with two columns",
            "CREATE TABLE shop.ods_a (a STRING, b STRING) WITH ('connector' = 'kafka', 'topic' = 't', 'format' = 'raw', 'connection' = 'events');",
            &["exactly one STRING or BYTES column"],
        ),
        (
            "not a create table",
            "INSERT INTO shop.ods_a VALUES (1);",
            &["tables.sql:1:1: expected CREATE TABLE", "pipelines/<layer>"],
        ),
    ];
    for (case, ddl, expected) in cases {
        let err = error_of(ddl);
        for part in *expected {
            assert!(err.contains(part), "{case}: {err:?} lacks {part:?}");
        }
        assert!(
            err.contains("hint:") || err.contains("expected"),
            "{case}: no hint in {err:?}"
        );
    }
}

#[test]
fn flink_ddl_maps_to_a_table_definition() {
    let defs = table_defs(
        "tables.sql",
        "CREATE TABLE IF NOT EXISTS shop.ods_events (
           id BIGINT,
           payload MAP<STRING, ARRAY<INT>>,
           device ROW<code STRING, temp DOUBLE>,
           at TIMESTAMP_LTZ(3),
           local_at TIMESTAMP(6) WITH LOCAL TIME ZONE,
           WATERMARK FOR at AS at
         ) WITH ('connector' = 'kafka', 'topic' = 'events', 'format' = 'debezium-json',
                 'connection' = 'events', 'scan.startup.mode' = 'timestamp',
                 'scan.startup.timestamp-millis' = '1700000000000', 'properties.group.id' = 'g1');
         CREATE TABLE reports.gmv (city STRING) WITH ('connector' = 'jdbc', 'layer' = 'app',
                 'url' = 'jdbc:mysql://127.0.0.1:3306/serving', 'table-name' = 'gmv',
                 'username' = 'app', 'password' = 's3cret');",
        &connections(),
    )
    .unwrap();
    let events = &defs[0];
    assert_eq!(events.layer, Layer::Ods);
    assert_eq!(
        events.schema.field_with_name("at").unwrap().data_type(),
        &DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into()))
    );
    assert_eq!(
        events
            .schema
            .field_with_name("local_at")
            .unwrap()
            .data_type(),
        &DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()))
    );
    assert!(matches!(
        events
            .schema
            .field_with_name("payload")
            .unwrap()
            .data_type(),
        DataType::Map(_, _)
    ));
    assert!(
        matches!(events.schema.field_with_name("device").unwrap().data_type(), DataType::Struct(f) if f.len() == 2)
    );
    assert_eq!(events.watermark.as_ref().unwrap().delay_ms, 0);
    match &events.kind {
        TableKind::Kafka {
            format,
            startup_mode,
            properties,
            connection,
            ..
        } => {
            assert_eq!(*format, KafkaFormat::DebeziumJson);
            assert_eq!(
                *startup_mode,
                StartupMode::Timestamp {
                    millis: 1_700_000_000_000
                }
            );
            assert_eq!(properties.get("group.id").map(String::as_str), Some("g1"));
            assert_eq!(connection.as_deref(), Some("events"));
        }
        other => panic!("not kafka: {other:?}"),
    }
    let gmv = &defs[1];
    assert_eq!(gmv.layer, Layer::App);
    match &gmv.kind {
        TableKind::Mysql {
            url,
            database,
            table,
            ..
        } => {
            assert_eq!(url.as_deref(), Some("mysql://127.0.0.1:3306/serving"));
            assert_eq!(database.as_deref(), Some("serving"));
            assert_eq!(table, "gmv");
        }
        other => panic!("not mysql: {other:?}"),
    }
}
