//! `strata lineage` and `/api/v1/lineage` on a small warehouse: column lineage
//! through a lookup join and a window aggregation, impact analysis, paths,
//! Graphviz output, and earlier versions of the graph read back with `--at`.

use axum::http::StatusCode;
use serde_json::Value;
use strata_catalog::{Catalog, Project};

use crate::support::{json, stderr, strata, strata_ok};

const CATALOG: &str = "
CREATE TABLE shop.ods_orders (
  order_id BIGINT, user_id BIGINT, amount DECIMAL(10, 2), status INT, order_time TIMESTAMP(3),
  proc_time AS PROCTIME(),
  WATERMARK FOR order_time AS order_time - INTERVAL '5' SECOND
) WITH ('connector' = 'kafka', 'topic' = 'orders', 'format' = 'json', 'connection' = 'events');
CREATE TABLE shop.dim_users (id BIGINT, city STRING, PRIMARY KEY (id) NOT ENFORCED)
WITH ('connector' = 'embedded');
CREATE TABLE shop.dwd_orders (
  order_id BIGINT, user_city STRING, amount DECIMAL(10, 2), order_time TIMESTAMP(3)
) WITH ('connector' = 'delta');
CREATE TABLE shop.dws_city_gmv (
  window_start TIMESTAMP(3), window_end TIMESTAMP(3), user_city STRING, gmv DECIMAL(20, 2)
) WITH ('connector' = 'delta');
";

const DWD: &str = "INSERT INTO shop.dwd_orders
SELECT o.order_id, u.city, o.amount, o.order_time
FROM shop.ods_orders AS o
LEFT JOIN shop.dim_users FOR SYSTEM_TIME AS OF o.proc_time AS u ON o.user_id = u.id
WHERE o.status = 1";

const DWS: &str = "INSERT INTO shop.dws_city_gmv
SELECT window_start, window_end, user_city, SUM(amount)
FROM TABLE(TUMBLE(TABLE shop.dwd_orders, DESCRIPTOR(order_time), INTERVAL '1' MINUTE))
GROUP BY window_start, window_end, user_city";

fn project() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    std::fs::write(
        root.join("strata.toml"),
        "[connections.events]\nkind = \"kafka\"\nbootstrap-servers = \"127.0.0.1:9\"\n",
    )
    .unwrap();
    std::fs::create_dir_all(root.join("catalog")).unwrap();
    std::fs::write(root.join("catalog/shop.sql"), CATALOG).unwrap();
    for (layer, name, sql) in [("dwd", "dwd_orders", DWD), ("dws", "dws_city_gmv", DWS)] {
        std::fs::create_dir_all(root.join("pipelines").join(layer)).unwrap();
        std::fs::write(root.join(format!("pipelines/{layer}/{name}.sql")), sql).unwrap();
    }
    let catalog_file = root.join("catalog/shop.sql");
    strata_ok(
        root,
        &["catalog", "register", catalog_file.to_str().unwrap()],
    );
    dir
}

/// The edges of a lineage answer, as `from -kind-> to` lines (table edges as `reads`/`writes`).
fn edges(answer: &Value) -> Vec<String> {
    let mut out: Vec<String> = answer["edges"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["type"] != "has")
        .map(|e| {
            let how = e["kind"].as_str().or(e["type"].as_str()).unwrap();
            format!(
                "{} -{how}-> {}",
                e["from"].as_str().unwrap(),
                e["to"].as_str().unwrap()
            )
        })
        .collect();
    out.sort();
    out
}

#[tokio::test]
async fn column_lineage_follows_lookups_and_windows_and_is_versioned() {
    let dir = project();
    let root = dir.path();
    let upstream = json(&strata_ok(
        root,
        &[
            "lineage",
            "shop.dwd_orders.user_city",
            "--upstream",
            "--format",
            "json",
        ],
    ));
    assert_eq!(upstream["level"], "column");
    assert_eq!(
        edges(&upstream),
        [
            "shop.dim_users.city -direct-> shop.dwd_orders.user_city",
            "shop.dim_users.id -join_key-> shop.dwd_orders.user_city",
            "shop.ods_orders.status -filter-> shop.dwd_orders.user_city",
            "shop.ods_orders.user_id -join_key-> shop.dwd_orders.user_city",
        ],
        "the city comes from the dimension through the lookup on user_id"
    );

    let impact = json(&strata_ok(
        root,
        &[
            "lineage",
            "shop.ods_orders.amount",
            "--impact",
            "--format",
            "json",
        ],
    ));
    let hit: Vec<(String, String, u64)> = impact["columns"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c[0].as_str().unwrap().to_string(),
                c[1].as_str().unwrap().to_string(),
                c[2].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        hit,
        [
            (
                "shop.dwd_orders.amount".to_string(),
                "direct".to_string(),
                1
            ),
            (
                "shop.dws_city_gmv.gmv".to_string(),
                "aggregated".to_string(),
                2
            ),
        ]
    );
    assert_eq!(
        impact["tables"],
        serde_json::json!(["shop.dwd_orders", "shop.dws_city_gmv"])
    );
    assert_eq!(
        impact["pipelines"],
        serde_json::json!(["pipeline:dwd_orders", "pipeline:dws_city_gmv"])
    );
    // The window's bounds come from the event time it was cut by.
    let bounds = json(&strata_ok(
        root,
        &[
            "lineage",
            "shop.dws_city_gmv.window_start",
            "--upstream",
            "--depth",
            "5",
            "--format",
            "json",
        ],
    ));
    assert!(
        edges(&bounds).contains(
            &"shop.ods_orders.order_time -direct-> shop.dwd_orders.order_time".to_string()
        ),
        "{:?}",
        edges(&bounds)
    );

    let path = strata_ok(
        root,
        &["lineage", "shop.dws_city_gmv", "--to", "shop.ods_orders"],
    );
    assert_eq!(
        path.trim(),
        "shop.ods_orders → pipeline:dwd_orders → shop.dwd_orders → pipeline:dws_city_gmv → shop.dws_city_gmv"
    );
    let dot = strata_ok(
        root,
        &["lineage", "shop.dwd_orders", "--columns", "--format", "dot"],
    );
    assert!(dot.starts_with("digraph lineage {"), "{dot}");
    // A table's label breaks its line with DOT's \n, escaped once.
    assert!(dot.contains(r#"label="shop.dwd_orders\n"#), "{dot}");
    assert!(!dot.contains(r"\\n"), "{dot}");
    assert!(
        dot.contains("style=dashed"),
        "condition edges are dashed: {dot}"
    );

    let unknown = strata(root, &["lineage", "shop.dwd_order"]);
    assert!(!unknown.status.success());
    assert!(
        stderr(&unknown).contains("did you mean shop.dwd_orders"),
        "{}",
        stderr(&unknown)
    );

    // A changed pipeline records a new version; the old one stays readable.
    let before = json(&strata_ok(
        root,
        &["lineage", "shop.dwd_orders", "--format", "json"],
    ));
    let version = before["version"].as_i64().unwrap();
    std::thread::sleep(std::time::Duration::from_millis(20));
    let between = chrono::Utc::now().timestamp_millis();
    std::thread::sleep(std::time::Duration::from_millis(20));
    std::fs::write(
        root.join("pipelines/dwd/dwd_orders.sql"),
        DWD.replace("WHERE o.status = 1", "WHERE o.status = 1 AND o.amount > 0"),
    )
    .unwrap();
    let after = json(&strata_ok(
        root,
        &[
            "lineage",
            "shop.dwd_orders.order_id",
            "--upstream",
            "--format",
            "json",
        ],
    ));
    assert_eq!(after["version"].as_i64().unwrap(), version + 1);
    assert!(
        edges(&after)
            .contains(&"shop.ods_orders.amount -filter-> shop.dwd_orders.order_id".to_string())
    );
    let then = json(&strata_ok(
        root,
        &[
            "lineage",
            "shop.dwd_orders.order_id",
            "--upstream",
            "--at",
            &between.to_string(),
            "--format",
            "json",
        ],
    ));
    assert_eq!(then["version"].as_i64().unwrap(), version);
    assert!(
        !edges(&then)
            .contains(&"shop.ods_orders.amount -filter-> shop.dwd_orders.order_id".to_string())
    );
}

async fn get(router: &axum::Router, uri: &str) -> (StatusCode, Value) {
    crate::api::call(router, "GET", uri, None).await
}

#[tokio::test]
async fn the_api_serves_lineage_around_a_node_impact_and_paths() {
    let dir = project();
    let catalog = Catalog::open(Project::load(dir.path()).unwrap())
        .await
        .unwrap();
    let router = crate::support::api_router(catalog).await;
    let (status, body) = get(
        &router,
        "/api/v1/lineage/shop.dwd_orders?direction=upstream&depth=1",
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["level"], "table");
    assert_eq!(
        edges(&body),
        [
            "pipeline:dwd_orders -writes-> shop.dwd_orders",
            "shop.dim_users -reads-> pipeline:dwd_orders",
            "shop.ods_orders -reads-> pipeline:dwd_orders",
        ]
    );
    let (status, body) = get(&router, "/api/v1/lineage/shop.ods_orders.user_id/impact").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        body["tables"],
        serde_json::json!(["shop.dwd_orders", "shop.dws_city_gmv"])
    );
    let (status, body) = get(
        &router,
        "/api/v1/lineage/path?from=shop.dim_users.city&to=shop.dws_city_gmv.gmv",
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        body["path"],
        serde_json::json!([
            "shop.dim_users.city",
            "shop.dwd_orders.user_city",
            "shop.dws_city_gmv.gmv"
        ])
    );
    let (status, body) = get(&router, "/api/v1/lineage/shop.nothing").await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    assert_eq!(body["error"], "shop.nothing is not in the lineage graph");
    assert!(
        body["hint"].as_str().unwrap().contains("space.table"),
        "{body}"
    );
    let (status, _) = get(
        &router,
        "/api/v1/lineage/shop.dwd_orders?direction=sideways",
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
}
