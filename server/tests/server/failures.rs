//! One pipeline's trouble stays its own: a panic, a source topic that does not
//! exist yet, or a checkpoint written for another plan stops or holds that
//! pipeline, says why, and leaves the others running.

use std::path::Path;

use rdkafka::mocking::MockCluster;

use crate::support::{json, produce_to, stderr, strata, strata_ok};

const CATALOG: &str = "
CREATE TABLE shop.ods_orders (order_id BIGINT NOT NULL, amount DECIMAL(10, 2), city STRING)
WITH ('connector' = 'kafka', 'topic' = 'orders', 'format' = 'json',
      'scan.startup.mode' = 'earliest-offset', 'connection' = 'events');
CREATE TABLE shop.ods_refunds (order_id BIGINT NOT NULL, amount DECIMAL(10, 2))
WITH ('connector' = 'kafka', 'topic' = 'refunds', 'format' = 'json',
      'scan.startup.mode' = 'earliest-offset', 'connection' = 'events');
CREATE TABLE shop.dwd_orders (order_id BIGINT NOT NULL, amount DECIMAL(10, 2), city STRING)
WITH ('connector' = 'delta');
CREATE TABLE shop.dwd_refunds (order_id BIGINT NOT NULL, amount DECIMAL(10, 2))
WITH ('connector' = 'delta');
CREATE TABLE shop.dws_city_totals (city STRING, orders BIGINT, amount DECIMAL(20, 2), PRIMARY KEY (city) NOT ENFORCED)
WITH ('connector' = 'delta');
";

const TOTALS: &str = "INSERT INTO shop.dws_city_totals SELECT city, COUNT(*), CAST(SUM(amount) AS DECIMAL(20, 2)) FROM shop.ods_orders GROUP BY city";

fn project(dir: &Path, bootstrap: &str, pipelines: &[(&str, &str)]) {
    std::fs::write(
        dir.join("strata.toml"),
        format!(
            "[engine]\ncommit-interval-ms = 50\n[connections.events]\nkind = \"kafka\"\nbootstrap-servers = \"{bootstrap}\"\n"
        ),
    )
    .unwrap();
    std::fs::create_dir_all(dir.join("catalog")).unwrap();
    std::fs::write(dir.join("catalog/shop.sql"), CATALOG).unwrap();
    for (file, sql) in pipelines {
        let path = dir.join("pipelines").join(file);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, sql).unwrap();
    }
    let catalog = dir.join("catalog");
    strata_ok(dir, &["catalog", "register", catalog.to_str().unwrap()]);
}

const DWD_ORDERS: (&str, &str) = (
    "dwd/dwd_orders.sql",
    "INSERT INTO shop.dwd_orders SELECT order_id, amount, city FROM shop.ods_orders",
);

/// A broker with topic `orders` holding [`orders`], and its address.
async fn cluster_with_orders() -> (
    MockCluster<'static, rdkafka::producer::DefaultProducerContext>,
    String,
) {
    let cluster = MockCluster::new(1).unwrap();
    cluster.create_topic("orders", 2, 1).unwrap();
    let bootstrap = cluster.bootstrap_servers();
    orders(&bootstrap).await;
    (cluster, bootstrap)
}

/// 60 orders over three cities: amounts 1.00 to 60.00.
async fn orders(bootstrap: &str) {
    let records: Vec<(i32, String)> = (1..=60)
        .map(|id| {
            (
                id % 2,
                format!(
                    r#"{{"order_id": {id}, "amount": "{id}.00", "city": "c{}"}}"#,
                    id % 3
                ),
            )
        })
        .collect();
    produce_to(bootstrap, "orders", &records).await;
}

fn count(dir: &Path, table: &str) -> i64 {
    let rows = json(&strata_ok(
        dir,
        &[
            "query",
            &format!("SELECT COUNT(*) AS n FROM {table}"),
            "--format",
            "json",
        ],
    ));
    rows[0]["n"].as_i64().unwrap()
}

#[tokio::test]
async fn a_panicking_pipeline_fails_alone_with_its_message() {
    let (_cluster, bootstrap) = cluster_with_orders().await;
    let dir = tempfile::tempdir().unwrap();
    project(
        dir.path(),
        &bootstrap,
        &[DWD_ORDERS, ("dws/dws_city_totals.sql", TOTALS)],
    );
    // The first commit of the process panics once it has landed; the rest go on.
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_strata"))
        .arg("--project")
        .arg(dir.path())
        .args(["run", "--until-idle", "--port", "0", "--pg-port", "0"])
        .env(
            "FAILPOINTS",
            "commit-after-target=1*panic(boom in a commit)",
        )
        .output()
        .unwrap();
    let err = stderr(&output);
    assert!(!output.status.success(), "{err}");
    let failed: Vec<&str> = ["dwd_orders", "dws_city_totals"]
        .into_iter()
        .filter(|name| err.contains(&format!("pipeline {name} panicked: boom in a commit")))
        .collect();
    assert_eq!(failed.len(), 1, "one pipeline panicked: {err}");
    // The other pipeline read everything.
    if failed == ["dwd_orders"] {
        let orders = json(&strata_ok(
            dir.path(),
            &[
                "query",
                "SELECT SUM(orders) AS n FROM shop.dws_city_totals",
                "--format",
                "json",
            ],
        ));
        assert_eq!(orders[0]["n"], 60);
    } else {
        assert_eq!(count(dir.path(), "shop.dwd_orders"), 60);
    }
}

#[tokio::test]
async fn a_missing_topic_is_waited_for_while_the_others_run() {
    let (_cluster, bootstrap) = cluster_with_orders().await;
    let dir = tempfile::tempdir().unwrap();
    project(
        dir.path(),
        &bootstrap,
        &[
            DWD_ORDERS,
            (
                "dwd/dwd_refunds.sql",
                "INSERT INTO shop.dwd_refunds SELECT order_id, amount FROM shop.ods_refunds",
            ),
        ],
    );
    let summary = json(&strata_ok(
        dir.path(),
        &[
            "run",
            "--for",
            "4s",
            "--port",
            "0",
            "--pg-port",
            "0",
            "--format",
            "json",
        ],
    ));
    let tables = summary["tables"].as_array().unwrap();
    let refunds = tables
        .iter()
        .find(|t| t["name"] == "shop.dwd_refunds")
        .unwrap();
    assert_eq!(refunds["status"], "degraded", "{refunds}");
    assert!(
        refunds["degraded_reason"]
            .as_str()
            .unwrap()
            .contains("waiting for topic refunds"),
        "{refunds}"
    );
    assert_eq!(count(dir.path(), "shop.dwd_orders"), 60);
}

#[tokio::test]
async fn a_state_that_no_longer_fits_is_refused_until_the_pipeline_is_reset() {
    let (_cluster, bootstrap) = cluster_with_orders().await;
    let dir = tempfile::tempdir().unwrap();
    project(
        dir.path(),
        &bootstrap,
        &[("dws/dws_city_totals.sql", TOTALS)],
    );
    let run = ["run", "--until-idle", "--port", "0", "--pg-port", "0"];
    strata_ok(dir.path(), &run);
    // Unchanged, the plan restores its state.
    strata_ok(dir.path(), &run);

    // Another GROUP BY key: the groups' state was written for city.
    std::fs::write(
        dir.path().join("pipelines/dws/dws_city_totals.sql"),
        TOTALS
            .replace("GROUP BY city", "GROUP BY UPPER(city)")
            .replace("SELECT city", "SELECT UPPER(city)"),
    )
    .unwrap();
    let refused = strata(dir.path(), &run);
    let err = stderr(&refused);
    assert!(!refused.status.success());
    assert!(
        err.contains("operator aggregate (group aggregate)")
            && err.contains("upper(city")
            && !err.contains("operator source"),
        "{err}"
    );

    // SUM becomes MAX: the groups' state was written for SUM.
    std::fs::write(
        dir.path().join("pipelines/dws/dws_city_totals.sql"),
        TOTALS.replace("SUM(amount)", "MAX(amount)"),
    )
    .unwrap();
    let refused = strata(dir.path(), &run);
    let err = stderr(&refused);
    assert!(!refused.status.success());
    assert!(
        err.contains("pipeline dws_city_totals: its checkpointed state does not fit")
            && err.contains("operator aggregate (group aggregate)")
            && err.contains("Sum")
            && err.contains("Max")
            && err.contains("strata pipeline reset dws_city_totals"),
        "{err}"
    );

    let reset = strata_ok(
        dir.path(),
        &["pipeline", "reset", "dws_city_totals", "--from", "earliest"],
    );
    assert!(reset.contains("state dropped"), "{reset}");
    strata_ok(dir.path(), &run);
    let totals = json(&strata_ok(
        dir.path(),
        &[
            "query",
            "SELECT city, orders, amount FROM shop.dws_city_totals ORDER BY city",
            "--format",
            "json",
        ],
    ));
    // Read again from the start under the new SQL: counts and maxima, not sums.
    assert_eq!(
        totals,
        serde_json::json!([
            {"city": "c0", "orders": 20, "amount": 60.0},
            {"city": "c1", "orders": 20, "amount": 58.0},
            {"city": "c2", "orders": 20, "amount": 59.0},
        ])
    );
}
