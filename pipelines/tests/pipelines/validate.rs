//! Project validation: unknown tables and columns, type mismatches, cycles and
//! layer violations are refused with file:line:col; valid pipelines come out in
//! dependency order, whatever their folders.

use std::collections::BTreeMap;
use std::path::Path;

use strata_catalog::TableDef;
use strata_catalog::ddl::table_defs;
use strata_pipelines::{PipelineError, parse_pipelines, validate};

const CATALOG: &str = "
CREATE TABLE shop.ods_orders (order_id BIGINT, user_id BIGINT, amount DECIMAL(10, 2), order_time TIMESTAMP(3), proc_time AS PROCTIME())
  WITH ('connector' = 'kafka', 'topic' = 'orders', 'format' = 'json', 'properties.bootstrap.servers' = 'b:9092');
CREATE TABLE shop.dim_users (id BIGINT, city STRING) WITH ('connector' = 'mysql', 'url' = 'mysql://db/shop', 'table-name' = 'users');
CREATE TABLE shop.dwd_orders (order_id BIGINT, user_city STRING, amount DECIMAL(10, 2), order_time TIMESTAMP(3))
  WITH ('connector' = 'delta');
CREATE TABLE shop.dws_city_gmv (city STRING, gmv DECIMAL(20, 2), PRIMARY KEY (city) NOT ENFORCED) WITH ('connector' = 'delta');
CREATE TABLE shop.dws_no_key (city STRING, gmv DECIMAL(20, 2)) WITH ('connector' = 'delta');
CREATE TABLE shop.ods_users_cdc (id BIGINT, city STRING, PRIMARY KEY (id) NOT ENFORCED)
  WITH ('connector' = 'kafka', 'topic' = 'users', 'format' = 'debezium-json', 'properties.bootstrap.servers' = 'k:9092');
CREATE TABLE shop.dwd_users_flat (id BIGINT, city STRING) WITH ('connector' = 'delta');
CREATE TABLE shop.dws_city_1m (window_start TIMESTAMP(3), city STRING, gmv DECIMAL(20, 2)) WITH ('connector' = 'delta');
CREATE TABLE shop.app_city_gmv (city STRING, gmv DECIMAL(20, 2), PRIMARY KEY (city) NOT ENFORCED) WITH ('connector' = 'mysql', 'url' = 'mysql://db/app', 'table-name' = 'gmv');
";

fn tables() -> Vec<TableDef> {
    table_defs("catalog.sql", CATALOG, &BTreeMap::new()).unwrap()
}

const DWD: &str = "INSERT INTO shop.dwd_orders
SELECT o.order_id, u.city, o.amount, o.order_time
FROM shop.ods_orders o JOIN shop.dim_users u ON o.user_id = u.id";
const DWS: &str = "INSERT INTO shop.dws_city_gmv SELECT user_city, SUM(amount) FROM shop.dwd_orders GROUP BY user_city";
const APP: &str =
    "INSERT INTO shop.app_city_gmv SELECT city, gmv FROM shop.dws_city_gmv WHERE gmv > 0";

async fn check(files: &[(&str, &str)]) -> Result<Vec<String>, String> {
    let pipelines = files
        .iter()
        .map(|(file, sql)| parse_pipelines(Path::new(file), sql))
        .collect::<Result<Vec<_>, PipelineError>>()
        .map_err(|err| err.to_string())?
        .into_iter()
        .flatten()
        .collect();
    validate(pipelines, &tables())
        .await
        .map(|valid| valid.iter().map(|v| v.pipeline.name.clone()).collect())
        .map_err(|err| err.to_string())
}

#[tokio::test]
async fn valid_pipelines_run_in_dependency_order_whatever_their_folders() {
    let order = check(&[
        ("pipelines/a/app_city_gmv.sql", APP),
        ("pipelines/b/dws_city_gmv.sql", DWS),
        ("pipelines/c/dwd_orders.sql", DWD),
    ])
    .await
    .unwrap();
    assert_eq!(order, ["dwd_orders", "dws_city_gmv", "app_city_gmv"]);
}

#[tokio::test]
async fn mistakes_are_refused_with_their_place() {
    let cases: &[(&str, &str, &[&str])] = &[
        (
            "unknown table",
            "INSERT INTO shop.dwd_orders\nSELECT * FROM shop.ods_ordres",
            &[
                "p.sql:2:15: unknown table shop.ods_ordres",
                "shop.ods_orders",
            ],
        ),
        (
            "table hint",
            "INSERT INTO shop.dwd_orders\nSELECT * FROM shop.ods_orders /*+ OPTIONS('scan.startup.mode' = 'earliest-offset') */",
            &[
                "p.sql:2:31: table hints (/*+ OPTIONS(…) */ after a table) are not supported yet",
                "the table's DDL",
            ],
        ),
        (
            "UNNEST of two arrays",
            "INSERT INTO shop.dwd_orders\nSELECT o.order_id, t.a, t.b, o.order_time FROM shop.ods_orders AS o CROSS JOIN UNNEST(o.items, o.tags) AS t(a, b)",
            &[
                "p.sql:2:80: UNNEST of several arrays",
                "UNNEST(o.array_column) AS u(element)",
            ],
        ),
        (
            "MATCH_RECOGNIZE",
            "INSERT INTO shop.dwd_orders\nSELECT * FROM shop.ods_orders MATCH_RECOGNIZE (PARTITION BY city ORDER BY order_time MEASURES A.amount AS amount PATTERN (A) DEFINE A AS A.amount > 0)",
            &[
                "p.sql:2:31: MATCH_RECOGNIZE (Flink's pattern recognition over a stream) is not supported",
                "LAG",
            ],
        ),
        (
            "unknown target",
            "INSERT INTO shop.dwd_nothing SELECT 1",
            &["p.sql:1:13: unknown table shop.dwd_nothing"],
        ),
        (
            "unknown column",
            "INSERT INTO shop.dwd_orders\nSELECT order_id, cty, amount, order_time\nFROM shop.ods_orders",
            &["p.sql:2:18:", "cty", "strata catalog show"],
        ),
        (
            "type mismatch",
            "INSERT INTO shop.dwd_orders\nSELECT order_id, user_id, amount, order_time FROM shop.ods_orders",
            &[
                "p.sql:2:18: column user_id is BIGINT, but shop.dwd_orders.user_city is STRING",
                "CAST(user_id AS STRING)",
            ],
        ),
        (
            "type mismatch of a window aggregate, named as written",
            "INSERT INTO shop.dws_city_1m\nSELECT window_start, SUM(amount), MAX(amount)\nFROM TABLE(TUMBLE(TABLE shop.ods_orders, DESCRIPTOR(order_time), INTERVAL '1' MINUTE))\nGROUP BY window_start, window_end",
            &[
                "p.sql:2:22: column SUM(amount) is DECIMAL(20, 2), but shop.dws_city_1m.city is STRING",
                "CAST(SUM(amount) AS STRING)",
            ],
        ),
        (
            "narrowing",
            "INSERT INTO shop.dwd_orders\nSELECT order_id, CAST(user_id AS STRING), CAST(amount AS DOUBLE), order_time FROM shop.ods_orders",
            &["is DOUBLE, but shop.dwd_orders.amount is DECIMAL(10, 2)"],
        ),
        (
            "column count",
            "INSERT INTO shop.dwd_orders SELECT order_id FROM shop.ods_orders",
            &[
                "the SELECT produces 1 columns, but shop.dwd_orders has 4",
                "order_id, user_city, amount, order_time",
            ],
        ),
        (
            "dwd reads dws",
            "INSERT INTO shop.dwd_orders SELECT 1, city, gmv, NULL FROM shop.dws_city_gmv",
            &[
                "p.sql:1:60: the DWD table shop.dwd_orders cannot read the DWS table shop.dws_city_gmv",
                "ODS → DWD → DWS → APP",
            ],
        ),
        (
            "app feeds ods",
            "INSERT INTO shop.ods_orders SELECT 1, 1, gmv, NULL FROM shop.app_city_gmv",
            &["the ODS table shop.ods_orders cannot read the APP table shop.app_city_gmv"],
        ),
        (
            "syntax",
            "INSERT INTO shop.dwd_orders SELEC 1",
            &["p.sql:1:29:"],
        ),
        (
            "window without its bounds in GROUP BY",
            "INSERT INTO shop.dws_city_1m\nSELECT window_start, user_city, SUM(amount)\nFROM TABLE(TUMBLE(TABLE shop.dwd_orders, DESCRIPTOR(order_time), INTERVAL '1' MINUTE))\nGROUP BY window_start, user_city",
            &["p.sql:3:53: a window aggregation must GROUP BY window_start, window_end"],
        ),
        (
            "window over a column that is not there",
            "INSERT INTO shop.dws_city_1m\nSELECT window_start, user_city, SUM(amount)\nFROM TABLE(TUMBLE(TABLE shop.dwd_orders, DESCRIPTOR(ordertime), INTERVAL '1' MINUTE))\nGROUP BY window_start, window_end, user_city",
            &["p.sql:3:53: shop.dwd_orders has no column ordertime"],
        ),
        (
            "cumulate with a ragged max size",
            "INSERT INTO shop.dws_city_1m\nSELECT window_start, user_city, SUM(amount)\nFROM TABLE(CUMULATE(TABLE shop.dwd_orders, DESCRIPTOR(order_time), INTERVAL '7' MINUTE, INTERVAL '1' HOUR))\nGROUP BY window_start, window_end, user_city",
            &["p.sql:3:12: CUMULATE's max size must be a whole number of steps"],
        ),
        (
            "an updating result without a key",
            "INSERT INTO shop.dws_no_key SELECT user_city, SUM(amount) FROM shop.dwd_orders GROUP BY user_city",
            &["shop.dws_no_key needs a PRIMARY KEY to upsert by"],
        ),
        (
            "allowed lateness without a key",
            "SET 'table.exec.emit.allow-lateness' = '1 min';\nINSERT INTO shop.dws_city_1m\nSELECT window_start, user_city, SUM(amount)\nFROM TABLE(TUMBLE(TABLE shop.dwd_orders, DESCRIPTOR(order_time), INTERVAL '1' MINUTE))\nGROUP BY window_start, window_end, user_city",
            &["a late row arrives, so shop.dws_city_1m needs a PRIMARY KEY"],
        ),
        (
            "a changelog into a table without a key",
            "INSERT INTO shop.dwd_users_flat SELECT id, city FROM shop.ods_users_cdc",
            &[
                "the source is a changelog, whose updates and deletes change rows already written, so shop.dwd_users_flat needs a PRIMARY KEY",
            ],
        ),
        (
            "unknown setting",
            "SET 'table.exec.mini-batch.enabled' = 'true';\nINSERT INTO shop.dws_city_gmv SELECT user_city, SUM(amount) FROM shop.dwd_orders GROUP BY user_city",
            &[
                "p.sql:1:5: unknown setting 'table.exec.mini-batch.enabled'",
                "table.exec.emit.allow-lateness",
            ],
        ),
        (
            "a state TTL that is not a duration",
            "SET 'table.exec.state.ttl' = 'a day';\nINSERT INTO shop.dws_city_gmv SELECT user_city, SUM(amount) FROM shop.dwd_orders GROUP BY user_city",
            &[
                "p.sql:1:5: 'a day' is not a duration",
                "'0' to keep state for good",
            ],
        ),
        (
            "not an insert",
            "SELECT * FROM shop.ods_orders",
            &["p.sql:1:1: a pipeline must be INSERT INTO"],
        ),
        (
            "a processing-time join on a Kafka table that is not broadcast (so versioned)",
            "INSERT INTO shop.dwd_users_flat\nSELECT o.user_id, u.city FROM shop.ods_orders o\nJOIN shop.ods_users_cdc FOR SYSTEM_TIME AS OF o.proc_time AS u ON o.user_id = u.id",
            &[
                "p.sql:3:47: shop.ods_users_cdc is a Kafka topic, joined as a versioned table as of the probe's event time, but proc_time is not",
                "'lookup.broadcast' = 'true'",
            ],
        ),
        (
            "a lookup join as of a column that is not the processing time",
            "INSERT INTO shop.dwd_orders\nSELECT o.order_id, u.city, o.amount, o.order_time FROM shop.ods_orders o\nJOIN shop.dim_users FOR SYSTEM_TIME AS OF o.order_time AS u ON o.user_id = u.id",
            &[
                "p.sql:3:43: order_time is not the processing-time attribute of the table joined to u",
                "FOR SYSTEM_TIME AS OF proc_time",
            ],
        ),
        (
            "a RIGHT lookup join",
            "INSERT INTO shop.dwd_orders\nSELECT o.order_id, u.city, o.amount, o.order_time FROM shop.ods_orders o\nRIGHT JOIN shop.dim_users FOR SYSTEM_TIME AS OF o.proc_time AS u ON o.user_id = u.id",
            &["p.sql:3:12: a lookup join is an inner or a LEFT join, not a RIGHT join"],
        ),
        (
            "a LOOKUP hint for no join",
            "INSERT INTO shop.dwd_orders\nSELECT /*+ LOOKUP('table'='x') */ o.order_id, u.city, o.amount, o.order_time FROM shop.ods_orders o\nJOIN shop.dim_users FOR SYSTEM_TIME AS OF o.proc_time AS u ON o.user_id = u.id",
            &["p.sql:2:1: the LOOKUP hint names 'x', which is not a lookup join of this query"],
        ),
        (
            "legacy group window",
            "INSERT INTO shop.dws_city_1m\nSELECT TUMBLE_PROCTIME(order_time, INTERVAL '5' MINUTE), 'x', SUM(amount)\nFROM shop.ods_orders GROUP BY TUMBLE(order_time, INTERVAL '5' MINUTE)",
            &[
                "p.sql:2:8: TUMBLE_PROCTIME: a group window's processing time",
                "_ROWTIME",
            ],
        ),
        (
            "Top-N with ties",
            "INSERT INTO shop.dwd_orders\nSELECT order_id, 'x', amount, order_time FROM (\n  SELECT *, RANK() OVER (PARTITION BY user_id ORDER BY amount DESC) AS rn FROM shop.ods_orders\n) WHERE rn <= 3",
            &[
                "p.sql:3:13: RANK() OVER (…), Flink's Top-N with ties, is not supported in pipelines yet",
                "ROW_NUMBER() OVER (PARTITION BY key ORDER BY …) with WHERE rn <= N",
            ],
        ),
        (
            "a window over processing time in a subquery",
            "INSERT INTO shop.dws_city_1m\nSELECT window_start, 'x', SUM(total) FROM (\n  SELECT window_start, window_end, SUM(amount) AS total\n  FROM TABLE(TUMBLE(TABLE shop.ods_orders, DESCRIPTOR(proc_time), INTERVAL '1' MINUTE))\n  GROUP BY window_start, window_end\n) GROUP BY window_start, window_end",
            &[
                "p.sql:4:55: a window over processing time (proc_time) joined or in a subquery",
                "in a pipeline of its own",
            ],
        ),
        (
            "a window TVF over a view that filters",
            "CREATE VIEW big AS SELECT *, PROCTIME() AS p FROM shop.ods_orders WHERE amount > 10;\nINSERT INTO shop.dws_city_1m\nSELECT window_start, 'x', SUM(amount)\nFROM TABLE(TUMBLE(TABLE big, DESCRIPTOR(p), INTERVAL '1' MINUTE))\nGROUP BY window_start, window_end",
            &[
                "p.sql:4:25: the window reads big, which filters",
                "filter and compute in the SELECT that windows it",
            ],
        ),
        (
            "an unknown function",
            "INSERT INTO shop.dwd_orders\nSELECT order_id, DATE_FORMATT(order_time, 'yyyy'), amount, order_time\nFROM shop.ods_orders",
            &[
                "p.sql:2:18: unknown function DATE_FORMATT; the nearest known: DATE_FORMAT",
                "Flink's functions",
            ],
        ),
        (
            "TIMESTAMPADD's unit is a keyword, not a column",
            "INSERT INTO shop.dwd_orders\nSELECT order_id, 'x', amount, TIMESTAMPADD(HOUR, 8, order_time), 1 FROM shop.ods_orders",
            &["the SELECT produces 5 columns"],
        ),
        (
            "NULLs for an inner lookup join",
            "INSERT INTO shop.dwd_orders\nSELECT /*+ LOOKUP('table'='u', 'miss'='null') */ o.order_id, u.city, o.amount, o.order_time FROM shop.ods_orders o\nJOIN shop.dim_users FOR SYSTEM_TIME AS OF o.proc_time AS u ON o.user_id = u.id",
            &[
                "the LOOKUP hint for u: 'miss' = 'null' fills NULLs",
                "write LEFT JOIN",
            ],
        ),
    ];
    for (case, sql, expected) in cases {
        let err = check(&[("p.sql", sql)]).await.expect_err(case);
        for part in *expected {
            assert!(err.contains(part), "{case}: {err:?} lacks {part:?}");
        }
    }
}

/// Flink's statement set: each INSERT is a pipeline of its own, named after
/// the file and its target, with the file's SET lines and views.
#[tokio::test]
async fn a_statement_set_is_a_pipeline_per_insert() {
    let set = "SET 'table.exec.state.ttl' = '1 h';
CREATE TEMPORARY VIEW big AS
SELECT order_id, 'x' AS city, amount, order_time FROM shop.ods_orders WHERE amount > 100;
CREATE TEMPORARY VIEW enriched AS SELECT * FROM big;
CREATE TEMPORARY VIEW unread AS SELECT * FROM shop.ods_users_cdc;
EXECUTE STATEMENT SET
BEGIN
  INSERT INTO shop.dws_city_gmv SELECT user_city, SUM(amount) FROM shop.dwd_orders GROUP BY user_city;
  INSERT INTO shop.dwd_orders SELECT order_id, city, amount, order_time FROM enriched;
END;";
    let order = check(&[("pipelines/dwd/orders.sql", set)]).await.unwrap();
    // No INSERT fills a table named `orders`: the first keeps the file's name.
    assert_eq!(order, ["orders.dwd_orders", "orders"]);
    let pipelines = parse_pipelines(Path::new("pipelines/dwd/orders.sql"), set).unwrap();
    assert!(
        pipelines
            .iter()
            .all(|p| p.settings.state_ttl_ms == Some(3_600_000))
    );
    // Each INSERT takes the views it reads (enriched reads big), not the others.
    let sources: Vec<Vec<String>> = pipelines
        .iter()
        .map(|p| p.sources.iter().map(|s| s.table.to_string()).collect())
        .collect();
    assert_eq!(sources, [["shop.dwd_orders"], ["shop.ods_orders"]]);
    let one = parse_pipelines(
        Path::new("orders.sql"),
        "BEGIN STATEMENT SET;\nINSERT INTO shop.dwd_orders SELECT order_id, 'x', amount, order_time FROM shop.ods_orders;\nEND;",
    )
    .unwrap();
    assert_eq!(one[0].name, "orders");
    let twice = check(&[(
        "p.sql",
        "EXECUTE STATEMENT SET BEGIN\nINSERT INTO shop.dws_city_gmv SELECT user_city, SUM(amount) FROM shop.dwd_orders GROUP BY user_city;\nINSERT INTO shop.dws_city_gmv SELECT user_city, SUM(amount) FROM shop.dwd_orders GROUP BY user_city;\nEND;",
    )])
    .await
    .unwrap_err();
    assert!(
        twice.starts_with(
            "p.sql:3:13: a second INSERT INTO shop.dws_city_gmv (the first is at p.sql:2:13)"
        ),
        "{twice}"
    );
    let unclosed = check(&[(
        "p.sql",
        "BEGIN STATEMENT SET;\nINSERT INTO shop.dwd_orders SELECT order_id, 'x', amount, order_time FROM shop.ods_orders;",
    )])
    .await
    .unwrap_err();
    assert!(
        unclosed.starts_with("p.sql:1:1: a STATEMENT SET without its END"),
        "{unclosed}"
    );
    let view_after = check(&[(
        "p.sql",
        "INSERT INTO shop.dwd_orders SELECT order_id, 'x', amount, order_time FROM shop.ods_orders;\nCREATE VIEW v AS SELECT * FROM shop.ods_orders;",
    )])
    .await
    .unwrap_err();
    assert!(
        view_after.starts_with("p.sql:2:13: a view after an INSERT"),
        "{view_after}"
    );
    // The INSERT into the table the file is named after keeps the file's name.
    let kept = parse_pipelines(
        Path::new("dwd_orders.sql"),
        "INSERT INTO shop.dwd_orders SELECT order_id, 'x', amount, order_time FROM shop.ods_orders;\nINSERT INTO shop.dws_no_key SELECT 'x', amount FROM shop.ods_orders;",
    )
    .unwrap();
    let names: Vec<&str> = kept.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names, ["dwd_orders", "dwd_orders.dws_no_key"]);
    let same_name = check(&[
        ("pipelines/dwd/dwd_orders.sql", DWD),
        ("pipelines/dws/dwd_orders.sql", DWS),
    ])
    .await
    .unwrap_err();
    assert!(
        same_name.contains("a second pipeline named dwd_orders (the first fills shop.dwd_orders"),
        "{same_name}"
    );
}

#[tokio::test]
async fn cycles_are_refused_and_named() {
    let catalog_with_loop = "
        CREATE TABLE shop.dwd_a (id BIGINT) WITH ('connector' = 'delta');
        CREATE TABLE shop.dwd_b (id BIGINT) WITH ('connector' = 'delta');";
    let tables = table_defs("c.sql", catalog_with_loop, &BTreeMap::new()).unwrap();
    let pipelines = vec![
        parse_pipelines(
            Path::new("pipelines/dwd/dwd_a.sql"),
            "INSERT INTO shop.dwd_a SELECT id FROM shop.dwd_b",
        )
        .unwrap()
        .remove(0),
        parse_pipelines(
            Path::new("pipelines/dwd/dwd_b.sql"),
            "INSERT INTO shop.dwd_b SELECT id FROM shop.dwd_a",
        )
        .unwrap()
        .remove(0),
    ];
    let err = validate(pipelines, &tables).await.unwrap_err().to_string();
    assert!(
        err.starts_with(
            "pipelines form a cycle: shop.dwd_a (pipelines/dwd/dwd_a.sql) → shop.dwd_b"
        ),
        "{err}"
    );
}
