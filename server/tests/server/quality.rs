//! Quality end to end through the `strata` binary: freshness firing when the
//! source goes quiet, `strata check` (status and exit code), the API and
//! metrics, and `strata check --history` catching an injected row by
//! reconciliation.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use axum::http::StatusCode;
use rdkafka::mocking::MockCluster;
use strata_catalog::{Catalog, Project};
use strata_quality::results;

use crate::api::call;
use crate::support::{json, produce_to, stderr, stdout, strata, strata_ok};

const CATALOG: &str = "
CREATE TABLE shop.ods_orders (
  order_id BIGINT NOT NULL, amount DECIMAL(10, 2), order_time TIMESTAMP(3),
  WATERMARK FOR order_time AS order_time - INTERVAL '1' SECOND
) WITH ('connector' = 'kafka', 'topic' = 'orders', 'format' = 'json',
        'scan.startup.mode' = 'earliest-offset', 'connection' = 'events');
CREATE TABLE shop.dwd_orders (order_id BIGINT NOT NULL, amount DECIMAL(10, 2), order_time TIMESTAMP(3))
WITH ('connector' = 'delta');
";

const CHECKS: &str = r#"table = "shop.dwd_orders"

[[rule]]
name = "fresh"
check = "freshness"
every = "1s"

[[rule]]
name = "amount_sane"
check = "range"
column = "amount"
max = 1000
action = "warn"

[[rule]]
name = "orders_complete"
check = "reconcile"
measure = "COUNT(*)"
time = "order_time"
against = "shop.ods_orders"
against-measure = "COUNT(*)"
against-time = "order_time"
against-where = "amount > 0"
window = "1m"
"#;

fn project(dir: &Path, bootstrap: &str) {
    std::fs::write(
        dir.join("strata.toml"),
        format!(
            "[engine]\ncommit-interval-ms = 50\n[quality]\nmonitor-interval-ms = 200\n[connections.events]\nkind = \"kafka\"\nbootstrap-servers = \"{bootstrap}\"\n"
        ),
    )
    .unwrap();
    for folder in ["catalog", "pipelines/dwd", "checks"] {
        std::fs::create_dir_all(dir.join(folder)).unwrap();
    }
    std::fs::write(dir.join("catalog/shop.sql"), CATALOG).unwrap();
    std::fs::write(
        dir.join("pipelines/dwd/dwd_orders.sql"),
        "INSERT INTO shop.dwd_orders SELECT order_id, amount, order_time FROM shop.ods_orders WHERE amount > 0",
    )
    .unwrap();
    std::fs::write(dir.join("checks/dwd_orders.toml"), CHECKS).unwrap();
    let catalog = dir.join("catalog");
    strata_ok(dir, &["catalog", "register", catalog.to_str().unwrap()]);
}

/// Orders stamped with the wall clock: every 7th has amount 0 (filtered).
fn orders(ids: std::ops::Range<i64>) -> Vec<(i32, String)> {
    let now = chrono::Utc::now()
        .naive_utc()
        .format("%Y-%m-%dT%H:%M:%S%.3f");
    ids.map(|id| {
        let amount = if id % 7 == 0 { 0 } else { id % 300 + 1 };
        (
            (id % 2) as i32,
            format!(r#"{{"order_id": {id}, "amount": "{amount}.00", "order_time": "{now}"}}"#),
        )
    })
    .collect()
}

/// `strata check shop.dwd_orders --history` as JSON, expecting `exit_code`.
fn check_history(dir: &Path, exit_code: i32) -> serde_json::Value {
    let history = strata(
        dir,
        &["--format", "json", "check", "shop.dwd_orders", "--history"],
    );
    assert_eq!(
        history.status.code(),
        Some(exit_code),
        "{}",
        stderr(&history)
    );
    json(&stdout(&history))
}

#[tokio::test(flavor = "multi_thread")]
async fn freshness_fires_when_the_source_goes_quiet_and_history_reconciliation_catches_an_injected_row()
 {
    let cluster = MockCluster::new(1).unwrap();
    cluster.create_topic("orders", 2, 1).unwrap();
    let bootstrap = cluster.bootstrap_servers();
    let dir = tempfile::tempdir().unwrap();
    project(dir.path(), &bootstrap);

    // Orders flow for two seconds, then the source goes quiet; the run goes on.
    let run = tokio::process::Command::new(env!("CARGO_BIN_EXE_strata"))
        .arg("--project")
        .arg(dir.path())
        .args(["run", "--for", "8s", "--port", "0", "--pg-port", "0"])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    for chunk in 0..20 {
        produce_to(&bootstrap, "orders", &orders(chunk * 10..chunk * 10 + 10)).await;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let quiet_at = strata_pipelines::runner::now_ms();
    let output = run.wait_with_output().await.unwrap();
    assert!(
        output.status.success(),
        "strata run failed:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );

    // The results table saw the freshness rule pass while orders flowed, then fail.
    let lake = format!("{}/lake", dir.path().display());
    let location = results::location(&lake);
    let fresh = results::read(&location, "WHERE rule = 'fresh' ORDER BY at")
        .await
        .unwrap();
    // While orders flowed it passed (a machine that stalls a commit for over a
    // second rightly fails it meanwhile); once the last order had been committed
    // and a second had gone by with none, every evaluation failed.
    assert!(
        fresh
            .iter()
            .any(|r| r.failed == 0 && r.at_ms < quiet_at + 1_000),
        "freshness passed while orders flowed: {fresh:?}"
    );
    let quiet: Vec<_> = fresh
        .iter()
        .filter(|r| r.at_ms > quiet_at + 3_000)
        .collect();
    assert!(
        !quiet.is_empty(),
        "no evaluation once the source went quiet: {fresh:?}"
    );
    assert!(quiet.iter().all(|r| r.failed == 1), "{fresh:?}");
    let detail = fresh.last().unwrap().detail.clone().unwrap();
    assert!(detail.starts_with("no commit for"), "{detail}");

    // `strata check` shows the latest status and fails the script.
    let check = strata(
        dir.path(),
        &["--format", "json", "check", "shop.dwd_orders"],
    );
    assert_eq!(check.status.code(), Some(1), "{}", stderr(&check));
    let statuses = json(&stdout(&check));
    let status = |rule: &str| {
        statuses
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["rule"] == rule)
            .unwrap_or_else(|| panic!("{rule} in {statuses}"))["status"]
            .clone()
    };
    assert_eq!(status("fresh"), "FAIL");
    assert_eq!(status("amount_sane"), "pass");

    // The API answers the same, from the results table.
    let catalog = Catalog::open(Project::load(dir.path()).unwrap())
        .await
        .unwrap();
    let router = crate::support::api_router(catalog.clone()).await;
    let (code, body) = call(&router, "GET", "/api/v1/checks?table=shop.dwd_orders", None).await;
    assert_eq!(code, StatusCode::OK);
    assert_eq!(body.as_array().unwrap().len(), 3, "{body}");
    let (code, body) = call(&router, "GET", "/api/v1/checks?table=nope", None).await;
    assert_eq!(code, StatusCode::BAD_REQUEST, "{body}");
    // The lineage browser's overlay names the failing rule.
    let (code, body) = call(&router, "GET", "/api/v1/lineage/shop.dwd_orders", None).await;
    assert_eq!(code, StatusCode::OK, "{body}");
    let overlay = &body["quality"]["shop.dwd_orders"];
    assert_eq!(overlay["rules"], 3, "{body}");
    assert_eq!(overlay["failing"][0]["rule"], "fresh", "{body}");

    // Over the history, every order is accounted for ...
    let results = check_history(dir.path(), 0);
    let reconciled: Vec<&serde_json::Value> = results
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["rule"] == "orders_complete")
        .collect();
    assert!(!reconciled.is_empty(), "{results}");
    let committed: f64 = 200.0 - (0..200).filter(|id| id % 7 == 0).count() as f64;
    let sane = results
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["rule"] == "amount_sane")
        .unwrap();
    assert_eq!(sane["passed"].as_f64(), Some(committed), "{sane}");

    // ... until a row the pipeline never wrote is slipped into the table.
    let target = strata_catalog::connectors::delta::open(&format!("{lake}/shop/dwd_orders"))
        .await
        .unwrap();
    let stamp = strata_pipelines::runner::now_ms() * 1000;
    let schema = arrow::datatypes::Schema::new(vec![
        arrow::datatypes::Field::new("order_id", arrow::datatypes::DataType::Int64, false),
        arrow::datatypes::Field::new(
            "amount",
            arrow::datatypes::DataType::Decimal128(10, 2),
            true,
        ),
        arrow::datatypes::Field::new(
            "order_time",
            arrow::datatypes::DataType::Timestamp(arrow::datatypes::TimeUnit::Microsecond, None),
            true,
        ),
    ]);
    let injected = arrow::record_batch::RecordBatch::try_new(
        Arc::new(schema),
        vec![
            Arc::new(arrow::array::Int64Array::from(vec![9_999])),
            Arc::new(
                arrow::array::Decimal128Array::from(vec![100])
                    .with_precision_and_scale(10, 2)
                    .unwrap(),
            ),
            Arc::new(arrow::array::TimestampMicrosecondArray::from(vec![stamp])),
        ],
    )
    .unwrap();
    target.write(vec![injected]).await.unwrap();
    let results = check_history(dir.path(), 1);
    let mismatches: Vec<&serde_json::Value> = results
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["rule"] == "orders_complete" && r["failed"] == 1)
        .collect();
    assert_eq!(mismatches.len(), 1, "{results}");
    assert_eq!(mismatches[0]["observed"].as_f64(), Some(1.0));
    let detail = mismatches[0]["detail"].as_str().unwrap();
    assert!(detail.contains("difference 1"), "{detail}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_replay_after_the_fix_commits_each_quarantined_record_once_even_when_it_was_interrupted()
{
    let cluster = MockCluster::new(1).unwrap();
    cluster.create_topic("orders", 2, 1).unwrap();
    let bootstrap = cluster.bootstrap_servers();
    let dir = tempfile::tempdir().unwrap();
    project(dir.path(), &bootstrap);
    let cap = |max: u32| {
        format!(
            "table = \"shop.dwd_orders\"\n[[rule]]\nname = \"amount_cap\"\ncheck = \"range\"\ncolumn = \"amount\"\nmax = {max}\naction = \"quarantine\"\n"
        )
    };
    std::fs::write(dir.path().join("checks/dwd_orders.toml"), cap(100)).unwrap();
    let mut records = orders(0..120);
    records.push((0, r##"{"order_id": "#x", broken"##.to_string()));
    produce_to(&bootstrap, "orders", &records).await;
    strata_ok(dir.path(), &["run", "--until-idle", "--port", "0"]);

    let over_cap = (0..120)
        .filter(|id| id % 7 != 0 && id % 300 + 1 > 100)
        .count() as u64;
    let committed_rows = |dir: &Path| -> Vec<i64> {
        let out = strata_ok(
            dir,
            &[
                "--format",
                "json",
                "query",
                "SELECT order_id FROM shop.dwd_orders ORDER BY order_id",
            ],
        );
        json(&out)
            .as_array()
            .unwrap()
            .iter()
            .map(|row| row["order_id"].as_i64().unwrap())
            .collect()
    };
    let quarantined = |dir: &Path| -> u64 {
        let out = strata_ok(
            dir,
            &[
                "--format",
                "json",
                "query",
                "SELECT COUNT(*) AS n FROM shop.dwd_orders__quarantine",
            ],
        );
        json(&out)[0]["n"].as_u64().unwrap()
    };
    assert_eq!(quarantined(dir.path()), over_cap + 1);

    // Replayed before the fix: every record is quarantined again, none lost.
    let report = json(&strata_ok(
        dir.path(),
        &[
            "--format",
            "json",
            "quarantine",
            "replay",
            "shop.dwd_orders",
        ],
    ));
    assert_eq!(report["replayed"].as_u64(), Some(over_cap + 1), "{report}");
    assert_eq!(
        report["quarantined_again"].as_u64(),
        Some(over_cap + 1),
        "{report}"
    );
    assert_eq!(report["committed"].as_u64(), Some(0), "{report}");
    assert_eq!(quarantined(dir.path()), over_cap + 1);

    // The rule is fixed; the replay is cut off right after its target commit …
    std::fs::write(dir.path().join("checks/dwd_orders.toml"), cap(1000)).unwrap();
    let crashed = std::process::Command::new(env!("CARGO_BIN_EXE_strata"))
        .arg("--project")
        .arg(dir.path())
        .args(["quarantine", "replay", "shop.dwd_orders"])
        .env("FAILPOINTS", "commit-after-target=return")
        .output()
        .unwrap();
    assert!(!crashed.status.success(), "the failpoint aborts the replay");
    // … and the next replay finishes it without committing anything twice.
    let report = json(&strata_ok(
        dir.path(),
        &[
            "--format",
            "json",
            "quarantine",
            "replay",
            "shop.dwd_orders",
        ],
    ));
    assert_eq!(report["resumed"], true, "{report}");
    let expected: Vec<i64> = (0..120).filter(|id| id % 7 != 0).collect();
    assert_eq!(committed_rows(dir.path()), expected);
    // Only the malformed record is left, quarantined again by each replay.
    assert_eq!(quarantined(dir.path()), 1);
    let report = json(&strata_ok(
        dir.path(),
        &[
            "--format",
            "json",
            "quarantine",
            "replay",
            "shop.dwd_orders",
        ],
    ));
    assert_eq!(
        (
            report["replayed"].as_u64(),
            report["quarantined_again"].as_u64(),
            report["resumed"].as_bool()
        ),
        (Some(1), Some(1), Some(false)),
        "{report}"
    );
    assert_eq!(committed_rows(dir.path()), expected);
}

/// A project whose DWS pipeline counts orders per city and minute, with a rule
/// that quarantines minutes of more than two orders.
fn windowed_project(dir: &Path, bootstrap: &str) {
    std::fs::write(
        dir.join("strata.toml"),
        format!(
            "[engine]\ncommit-interval-ms = 2000\n[connections.events]\nkind = \"kafka\"\nbootstrap-servers = \"{bootstrap}\"\n"
        ),
    )
    .unwrap();
    for folder in ["catalog", "pipelines/dws", "checks"] {
        std::fs::create_dir_all(dir.join(folder)).unwrap();
    }
    std::fs::write(
        dir.join("catalog/shop.sql"),
        "CREATE TABLE shop.ods_orders (order_id BIGINT, city STRING, order_time TIMESTAMP(3),
           WATERMARK FOR order_time AS order_time - INTERVAL '1' SECOND)
         WITH ('connector' = 'kafka', 'topic' = 'orders', 'format' = 'json',
               'scan.startup.mode' = 'earliest-offset', 'connection' = 'events');
         CREATE TABLE shop.dws_city_counts (window_start TIMESTAMP(3), window_end TIMESTAMP(3), city STRING, orders BIGINT)
         WITH ('connector' = 'delta');",
    )
    .unwrap();
    std::fs::write(
        dir.join("pipelines/dws/dws_city_counts.sql"),
        "INSERT INTO shop.dws_city_counts SELECT window_start, window_end, city, COUNT(*)
         FROM TABLE(TUMBLE(TABLE shop.ods_orders, DESCRIPTOR(order_time), INTERVAL '1' MINUTE))
         GROUP BY window_start, window_end, city",
    )
    .unwrap();
    std::fs::write(
        dir.join("checks/dws_city_counts.toml"),
        "table = \"shop.dws_city_counts\"\n[[rule]]\nname = \"quiet_minutes\"\ncheck = \"range\"\ncolumn = \"orders\"\nmax = 2\naction = \"quarantine\"\n",
    )
    .unwrap();
    let catalog = dir.join("catalog");
    strata_ok(dir, &["catalog", "register", catalog.to_str().unwrap()]);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_emitted_window_that_fails_a_rule_is_quarantined_once_even_across_a_crash() {
    let cluster = MockCluster::new(1).unwrap();
    cluster.create_topic("orders", 1, 1).unwrap();
    let bootstrap = cluster.bootstrap_servers();
    // Six minutes: three orders from a (too many) and one from b in each.
    let records: Vec<(i32, String)> = (0..6)
        .flat_map(|minute| {
            ["a", "a", "a", "b"].into_iter().enumerate().map(move |(i, city)| {
                (
                    0,
                    format!(
                        r#"{{"order_id": {}, "city": "{city}", "order_time": "2024-05-01T10:{minute:02}:{:02}"}}"#,
                        minute * 10 + i as i64,
                        i * 10
                    ),
                )
            })
        })
        .collect();
    produce_to(&bootstrap, "orders", &records).await;
    let emitted_in_quarantine = |dir: &Path| -> u64 {
        let out = strata_ok(
            dir,
            &[
                "--format",
                "json",
                "query",
                "SELECT COUNT(*) AS n FROM shop.dws_city_counts__quarantine WHERE \"partition\" = -1",
            ],
        );
        json(&out)[0]["n"].as_u64().unwrap()
    };

    let clean = tempfile::tempdir().unwrap();
    windowed_project(clean.path(), &bootstrap);
    strata_ok(clean.path(), &["run", "--until-idle", "--port", "0"]);
    // Minutes 0-4 closed (the watermark passed them); city a failed in each.
    assert_eq!(emitted_in_quarantine(clean.path()), 5);

    // The same run, cut off between its quarantine commit and its target commit, then resumed.
    let crashed = tempfile::tempdir().unwrap();
    windowed_project(crashed.path(), &bootstrap);
    let aborted = std::process::Command::new(env!("CARGO_BIN_EXE_strata"))
        .arg("--project")
        .arg(crashed.path())
        .args(["run", "--until-idle", "--port", "0", "--pg-port", "0"])
        .env("FAILPOINTS", "commit-between-quarantine-and-target=return")
        .output()
        .unwrap();
    assert!(!aborted.status.success(), "the failpoint aborts the run");
    assert_eq!(
        emitted_in_quarantine(crashed.path()),
        5,
        "the first commit quarantined the closed minutes"
    );
    strata_ok(crashed.path(), &["run", "--until-idle", "--port", "0"]);
    assert_eq!(emitted_in_quarantine(crashed.path()), 5);
    let rows = |dir: &Path| {
        strata_ok(
            dir,
            &[
                "--format",
                "json",
                "query",
                "SELECT window_start, city, orders FROM shop.dws_city_counts ORDER BY window_start, city",
            ],
        )
    };
    assert_eq!(rows(crashed.path()), rows(clean.path()));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_rule_that_failed_earlier_in_the_run_is_not_reported_as_passing() {
    let cluster = MockCluster::new(1).unwrap();
    cluster.create_topic("orders", 2, 1).unwrap();
    let bootstrap = cluster.bootstrap_servers();
    let dir = tempfile::tempdir().unwrap();
    project(dir.path(), &bootstrap);
    std::fs::write(
        dir.path().join("checks/dwd_orders.toml"),
        "table = \"shop.dwd_orders\"\n[[rule]]\nname = \"amount_sane\"\ncheck = \"range\"\ncolumn = \"amount\"\nmax = 1000\naction = \"warn\"\n",
    )
    .unwrap();
    let check = |args: &[&str]| {
        let mut all = vec!["--format", "json", "check", "shop.dwd_orders"];
        all.extend_from_slice(args);
        let out = strata(dir.path(), &all);
        let statuses = json(&stdout(&out));
        (out.status.code(), statuses[0].clone())
    };

    // One order over the bound in the first run: its commit fails the rule.
    let mut first = orders(1..5);
    first.push((
        0,
        r#"{"order_id": 99, "amount": "5000.00", "order_time": "2024-05-01T10:00:00"}"#.to_string(),
    ));
    produce_to(&bootstrap, "orders", &first).await;
    strata_ok(dir.path(), &["run", "--until-idle", "--port", "0"]);
    let (code, status) = check(&[]);
    assert_eq!(code, Some(1), "{status}");
    assert_eq!(status["status"], "FAIL", "{status}");
    assert_eq!(status["failed_rows"], 1, "{status}");

    // The next commit passes: within the hour the failure still shows, and fails the script ...
    std::thread::sleep(Duration::from_millis(20));
    produce_to(&bootstrap, "orders", &orders(5..9)).await;
    strata_ok(dir.path(), &["run", "--until-idle", "--port", "0"]);
    let (code, status) = check(&["--since", "1h"]);
    assert_eq!(code, Some(1), "{status}");
    assert_eq!(status["status"], "failed earlier", "{status}");
    assert!(status["evaluations"].as_u64().unwrap() >= 2, "{status}");
    assert_eq!(status["failures"], 1, "{status}");
    assert_eq!(status["failed_rows"], 1, "{status}");
    assert_eq!(status["last"]["failed"], 0, "{status}");
    assert_eq!(status["last_failure"]["failed"], 1, "{status}");
    let table = stdout(&strata(
        dir.path(),
        &["check", "shop.dwd_orders", "--since", "1h"],
    ));
    assert!(table.contains("failed earlier"), "{table}");

    // ... while by default the span starts with the latest run, which had no failure.
    let (code, status) = check(&[]);
    assert_eq!(code, Some(0), "{status}");
    assert_eq!(status["status"], "pass", "{status}");
    assert_eq!(status["failures"], 0, "{status}");

    // Every evaluation is a row of the read-only catalog table _strata.quality_results.
    let rows = json(&strata_ok(
        dir.path(),
        &[
            "--format",
            "json",
            "query",
            "SELECT failed FROM _strata.quality_results WHERE rule = 'amount_sane' ORDER BY at",
        ],
    ));
    assert_eq!(rows, serde_json::json!([{"failed": 1}, {"failed": 0}]));
}
