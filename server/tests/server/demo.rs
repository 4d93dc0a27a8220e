//! `strata demo`: the shop example end to end on embedded defaults.

use std::io::{Read, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::{json, strata_ok};

/// GET `path` from 127.0.0.1:`port`; the response body, or `None` while nothing listens.
/// GETs `path` with the project's admin token, once the server has written it.
fn http_get(dir: &std::path::Path, port: u16, path: &str) -> Option<String> {
    let token = std::fs::read_to_string(dir.join(".strata/admin-token")).ok()?;
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {}\r\nConnection: close\r\n\r\n",
        token.trim()
    )
    .ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    response
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_string())
}

fn table<'a>(summary: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    summary["tables"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == name)
        .unwrap_or_else(|| panic!("{name} missing from {summary}"))
}

fn count(dir: &std::path::Path, sql: &str) -> i64 {
    let out = strata_ok(dir, &["--format", "json", "query", sql]);
    let rows = json(&out);
    rows[0]["n"]
        .as_i64()
        .unwrap_or_else(|| panic!("{sql}: {rows}"))
}

#[test]
fn the_demo_builds_every_layer_and_keeps_its_tables() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("demo");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = Command::new(env!("CARGO_BIN_EXE_strata"))
        .arg("--project")
        .arg(&dir)
        .args(["demo", "--for", "20s", "--speed", "30", "--format", "json"])
        .args(["--port", &port.to_string(), "--pg-port", "0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // While it runs, the API serves the pipelines' counters, also for Prometheus.
    let deadline = Instant::now() + Duration::from_secs(15);
    let metrics = loop {
        match http_get(&dir, port, "/metrics") {
            Some(body)
                if body.contains("strata_watermark_lag_seconds{table=\"shop.dwd_page_views\"") =>
            {
                break body;
            }
            _ if Instant::now() > deadline => panic!("no metrics served"),
            _ => std::thread::sleep(Duration::from_millis(200)),
        }
    };
    assert!(
        metrics.contains("# TYPE strata_late_rows_total counter"),
        "{metrics}"
    );
    assert!(
        metrics.contains("strata_rows_committed_total{table=\"shop.dwd_orders\""),
        "{metrics}"
    );
    assert!(
        metrics.contains("# TYPE strata_lookup_queries_total counter")
            && metrics.contains("strata_degraded{table=\"shop.dwd_orders\""),
        "{metrics}"
    );
    let pipelines = json(&http_get(&dir, port, "/api/v1/pipelines").unwrap());
    let pipelines = pipelines.as_array().unwrap();
    assert_eq!(pipelines.len(), 7, "{pipelines:?}");
    // The DWD orders look their city and product up in the embedded DIM tables.
    let dwd_orders = pipelines
        .iter()
        .find(|p| p["name"] == "shop.dwd_orders")
        .unwrap();
    assert_eq!(dwd_orders["status"], "running", "{dwd_orders}");
    let joins: Vec<&str> = dwd_orders["lookups"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["join"].as_str().unwrap())
        .collect();
    assert_eq!(
        joins,
        ["c (shop.dim_cities)", "p (shop.dim_products)"],
        "{dwd_orders}"
    );
    // The lineage browser's API overlays the running pipelines on the graph.
    let deadline = Instant::now() + Duration::from_secs(15);
    let lineage = loop {
        let lineage =
            json(&http_get(&dir, port, "/api/v1/lineage/shop.dwd_orders?depth=1").unwrap());
        if lineage["runtime"]["shop.dwd_orders"]["table_version"].as_i64() > Some(0) {
            break lineage;
        }
        assert!(
            Instant::now() < deadline,
            "no commit shown on the graph: {lineage}"
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    let runtime = &lineage["runtime"]["shop.dwd_orders"];
    assert_eq!(runtime["status"], "running", "{lineage}");
    assert!(runtime["rows_committed"].as_u64().unwrap() > 0, "{runtime}");
    assert!(
        lineage["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .any(|n| n["name"] == "shop.dim_cities"),
        "{lineage}"
    );
    // Quality results of the shop's rules reach the metrics as commits land.
    let metrics = http_get(&dir, port, "/metrics").unwrap();
    assert!(
        metrics
            .contains("strata_quality_passing{table=\"shop.dwd_orders\",rule=\"amount_positive\""),
        "{metrics}"
    );
    let page = http_get(&dir, port, "/ui/lineage").unwrap();
    assert!(page.contains("<script src=\"/ui/lineage.js\">"), "{page}");
    let output = child.wait_with_output().unwrap();
    assert!(output.status.success());
    // The admin token is printed, with a browser link and a psql line, and kept for its owner.
    let token = crate::support::admin_token(&dir);
    let printed = String::from_utf8_lossy(&output.stderr);
    assert!(
        printed.contains(&format!("/ui/lineage?token={token}")),
        "{printed}"
    );
    assert!(
        printed.contains(&format!("psql \"postgres://admin:{token}@")),
        "{printed}"
    );
    let mode = std::fs::metadata(dir.join(".strata/admin-token")).unwrap();
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&mode.permissions()) & 0o777,
        0o600
    );
    let summary = json(&String::from_utf8_lossy(&output.stdout));
    let events = &summary["events"];
    assert!(events["orders"].as_u64().unwrap() > 1000, "{events}");
    assert!(events["malformed"].as_u64().unwrap() > 0, "{events}");

    let dwd = table(&summary, "shop.dwd_orders");
    assert!(dwd["rows_committed"].as_u64().unwrap() > 1000, "{dwd}");
    // The malformed orders went to quarantine, with the reason and their offsets.
    assert!(dwd["quarantined_rows"].as_u64().unwrap() > 0, "{dwd}");
    assert!(
        count(
            &dir,
            "SELECT COUNT(*) AS n FROM shop.dwd_orders__quarantine WHERE reason <> '' AND \"offset\" >= 0"
        ) > 0
    );

    // The gateway's retried callbacks are dropped (deduplication), and each
    // payment found its order (a regular join of two streams).
    assert!(
        events["payments_reported_twice"].as_u64().unwrap() > 0,
        "{events}"
    );
    let paid = count(&dir, "SELECT COUNT(*) AS n FROM shop.dwd_paid_orders");
    assert!(paid > 100, "{paid} paid orders");
    assert_eq!(
        count(
            &dir,
            "SELECT COUNT(DISTINCT order_id) AS n FROM shop.dwd_paid_orders"
        ),
        paid,
        "one row per paid order"
    );
    assert_eq!(
        count(
            &dir,
            "SELECT COUNT(*) AS n FROM shop.dwd_paid_orders p LEFT JOIN shop.dwd_orders o ON p.order_id = o.order_id WHERE o.order_id IS NOT NULL AND o.amount <> p.amount"
        ),
        0,
        "each payment joined its own order"
    );

    // Every order found its city and product in the embedded DIM tables (lookup joins).
    assert_eq!(
        count(
            &dir,
            "SELECT COUNT(*) AS n FROM shop.dwd_orders WHERE province IS NULL OR category IS NULL"
        ),
        0
    );
    assert_eq!(
        count(
            &dir,
            "SELECT COUNT(*) AS n FROM shop.dwd_orders WHERE user_city = 'Shenzhen' AND province <> 'Guangdong'"
        ),
        0
    );
    for (name, layer) in [
        ("shop.dws_city_gmv_1m", "dws"),
        ("shop.dws_page_pv_uv_1m", "dws"),
        ("shop.app_city_gmv", "app"),
    ] {
        let t = table(&summary, name);
        assert_eq!(t["layer"], layer);
        assert!(t["rows_committed"].as_u64().unwrap() > 0, "{t}");
    }
    // Each closed minute is written once per city; the hot page is counted like any other.
    assert_eq!(
        count(
            &dir,
            "SELECT COUNT(*) AS n FROM (SELECT window_start, city FROM shop.dws_city_gmv_1m GROUP BY window_start, city HAVING COUNT(*) > 1)"
        ),
        0
    );
    assert!(
        count(
            &dir,
            "SELECT COUNT(*) AS n FROM shop.dws_page_pv_uv_1m WHERE page = '/home' AND pv > uv"
        ) > 0
    );
    // The serving table holds one row per city, upserted.
    assert_eq!(
        count(&dir, "SELECT COUNT(*) AS n FROM shop.app_city_gmv"),
        count(
            &dir,
            "SELECT COUNT(DISTINCT city) AS n FROM shop.app_city_gmv"
        )
    );
    // The dimensions live in the embedded store, and join with the lake.
    assert_eq!(
        count(&dir, "SELECT COUNT(*) AS n FROM shop.dim_products"),
        500
    );
    assert_eq!(
        count(
            &dir,
            "SELECT COUNT(*) AS n FROM shop.app_city_gmv g LEFT JOIN shop.dim_cities c ON g.city = c.city WHERE c.province IS NULL"
        ),
        0,
        "every city of the APP table is a known city"
    );
    // Very late orders are kept, not dropped.
    let late = table(&summary, "shop.dws_city_gmv_1m")["late_rows"]
        .as_u64()
        .unwrap();
    assert_eq!(
        count(&dir, "SELECT COUNT(*) AS n FROM shop.dws_city_gmv_1m__late") as u64,
        late
    );

    // The shop's rules ran on every layer while the demo ran.
    let check = crate::support::strata(&dir, &["--format", "json", "check"]);
    let statuses = json(&String::from_utf8_lossy(&check.stdout));
    let status = |table: &str, rule: &str| -> String {
        statuses
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["table"] == table && s["rule"] == rule)
            .unwrap_or_else(|| panic!("{table} {rule} in {statuses}"))["status"]
            .as_str()
            .unwrap()
            .to_string()
    };
    assert_eq!(status("shop.dwd_orders", "amount_positive"), "pass");
    assert_eq!(status("shop.ods_orders", "order_id_present"), "pass");
    assert_eq!(status("shop.app_city_gmv", "city_named"), "pass");
    assert_ne!(
        status("shop.dws_city_gmv_1m", "gmv_matches_orders"),
        "not evaluated"
    );
    assert_ne!(status("shop.dwd_orders", "fresh"), "not evaluated");
    // The malformed orders are incompatible schema drift: quarantined, and reported
    // (the latest commits may have had none, so the rule may pass again now).
    assert_ne!(status("shop.ods_orders", "schema_drift"), "not evaluated");
    assert!(
        count(
            &dir,
            "SELECT COUNT(*) AS n FROM shop.dwd_orders__quarantine WHERE reason LIKE 'incompatible schema drift%'"
        ) > 0
    );

    // A second demo in the same directory starts afresh.
    let again = json(&strata_ok(
        &dir,
        &["demo", "--for", "3s", "--port", "0", "--format", "json"],
    ));
    assert!(
        table(&again, "shop.dwd_orders")["records_in"]
            .as_u64()
            .unwrap()
            < 1000
    );
}

#[test]
fn the_iot_demo_names_points_and_emits_each_alarm_transition_once() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("iot");
    let out = strata_ok(
        &dir,
        &[
            "demo",
            "--example",
            "iot",
            "--for",
            "12s",
            "--speed",
            "30",
            "--port",
            "0",
            "--format",
            "json",
        ],
    );
    let summary = json(&out);
    assert!(
        summary["events"]["readings"].as_u64().unwrap() > 100,
        "{summary}"
    );
    let values = table(&summary, "iot.dwd_point_values");
    assert!(values["rows_committed"].as_u64().unwrap() > 500, "{values}");
    // Malformed uploads were quarantined with their reason, not dropped.
    let quarantined = values["quarantined_rows"].as_u64().unwrap();
    assert!(
        quarantined <= summary["events"]["malformed"].as_u64().unwrap(),
        "{summary}"
    );
    assert_eq!(
        count(
            &dir,
            "SELECT COUNT(*) AS n FROM iot.dwd_point_values__quarantine WHERE reason <> ''"
        ),
        quarantined as i64
    );
    // Every point found its name in the broadcast table; the lock (002) has no rule, so never alarms.
    assert_eq!(
        count(
            &dir,
            "SELECT COUNT(*) AS n FROM iot.dwd_point_values WHERE name IS NULL"
        ),
        0
    );
    assert_eq!(
        count(
            &dir,
            "SELECT COUNT(*) AS n FROM iot.dwd_point_values WHERE code = '002' AND alarming"
        ),
        0
    );
    // Transitions alternate per point: start (0), end (2), start, …, beginning with a start.
    let transitions = json(&strata_ok(
        &dir,
        &[
            "--format",
            "json",
            "query",
            "SELECT device, code, tag FROM iot.app_alarm_transitions ORDER BY device, code, read_time",
        ],
    ));
    let transitions = transitions.as_array().unwrap();
    assert!(!transitions.is_empty(), "no alarm transitions");
    let mut last: Option<(&serde_json::Value, &serde_json::Value, i64)> = None;
    for row in transitions {
        let tag = row["tag"].as_i64().unwrap();
        let expected = match last {
            Some((device, code, previous)) if *device == row["device"] && *code == row["code"] => {
                2 - previous
            }
            _ => 0,
        };
        assert_eq!(tag, expected, "{row} after {last:?}");
        last = Some((&row["device"], &row["code"], tag));
    }
}
