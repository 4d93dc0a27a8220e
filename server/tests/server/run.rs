//! `strata run` end to end: killed with SIGKILL at random moments while
//! records stream in, it resumes each time, and the final tables equal those
//! of a run that was never interrupted: every record exactly once in the
//! target or the quarantine, and aggregation state restored from the
//! checkpoint of the last commit, never counting a record twice.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use rdkafka::mocking::MockCluster;

use crate::support::{json, produce_to, strata_ok};

const CATALOG: &str = "
CREATE TABLE shop.ods_orders (order_id BIGINT NOT NULL, amount DECIMAL(10, 2), city STRING)
WITH ('connector' = 'kafka', 'topic' = 'orders', 'format' = 'json',
      'scan.startup.mode' = 'earliest-offset', 'connection' = 'events');
CREATE TABLE shop.dwd_orders (order_id BIGINT NOT NULL, amount DECIMAL(10, 2), city STRING)
WITH ('connector' = 'delta');
CREATE TABLE shop.dws_city_totals (city STRING, orders BIGINT, amount DECIMAL(20, 2), PRIMARY KEY (city) NOT ENFORCED)
WITH ('connector' = 'delta');
";

fn project(dir: &Path, bootstrap: &str) {
    std::fs::write(
        dir.join("strata.toml"),
        format!(
            "[engine]\ncommit-interval-ms = 20\nbatch-records = 25\n[connections.events]\nkind = \"kafka\"\nbootstrap-servers = \"{bootstrap}\"\n"
        ),
    )
    .unwrap();
    std::fs::create_dir_all(dir.join("catalog")).unwrap();
    std::fs::create_dir_all(dir.join("pipelines/dwd")).unwrap();
    std::fs::create_dir_all(dir.join("pipelines/dws")).unwrap();
    std::fs::write(
        dir.join("pipelines/dws/dws_city_totals.sql"),
        "INSERT INTO shop.dws_city_totals SELECT UPPER(city), COUNT(*), CAST(SUM(amount) AS DECIMAL(20, 2)) FROM shop.ods_orders WHERE amount > 0 GROUP BY UPPER(city)",
    )
    .unwrap();
    std::fs::write(dir.join("catalog/shop.sql"), CATALOG).unwrap();
    std::fs::write(
        dir.join("pipelines/dwd/dwd_orders.sql"),
        "INSERT INTO shop.dwd_orders SELECT order_id, amount, UPPER(city) FROM shop.ods_orders WHERE amount > 0",
    )
    .unwrap();
    let catalog = dir.join("catalog");
    strata_ok(dir, &["catalog", "register", catalog.to_str().unwrap()]);
}

/// Records for ids in `ids`; every 97th is malformed, every 11th has amount 0 (filtered).
fn records(ids: std::ops::Range<i64>) -> Vec<(i32, String)> {
    ids.map(|id| {
        let payload = if id % 97 == 0 {
            format!("{{\"order_id\": {id}, broken")
        } else {
            let amount = if id % 11 == 0 {
                "0.00".to_string()
            } else {
                format!("{}.25", id % 500 + 1)
            };
            format!(
                r#"{{"order_id": {id}, "amount": "{amount}", "city": "c{}"}}"#,
                id % 7
            )
        };
        ((id % 4) as i32, payload)
    })
    .collect()
}

fn table_dump(dir: &Path, sql: &str) -> serde_json::Value {
    json(&strata_ok(dir, &["query", sql, "--format", "json"]))
}

#[tokio::test]
async fn killed_runs_resume_to_the_same_tables_as_an_uninterrupted_run() {
    let cluster = MockCluster::new(1).unwrap();
    cluster.create_topic("orders", 4, 1).unwrap();
    let bootstrap = cluster.bootstrap_servers();
    let killed = tempfile::tempdir().unwrap();
    let calm = tempfile::tempdir().unwrap();
    project(killed.path(), &bootstrap);
    project(calm.path(), &bootstrap);

    // Crash at named commit boundaries (the process aborts there, like kill -9),
    // then at arbitrary moments with SIGKILL while records stream in.
    let crashes = [
        Some("commit-between-quarantine-and-target=return"),
        Some("commit-after-target=1*off->return"),
        Some("commit-between-quarantine-and-target=1*off->return"),
        None,
        Some("commit-after-target=return"),
        None,
    ];
    let mut next_id = 1;
    for crash in crashes {
        let mut command = Command::new(env!("CARGO_BIN_EXE_strata"));
        command
            .arg("--project")
            .arg(killed.path())
            .args(["run", "--port", "0", "--pg-port", "0"])
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        if let Some(failpoint) = crash {
            command.env("FAILPOINTS", failpoint);
        }
        let mut child = command.spawn().unwrap();
        // Records arrive while it runs, 50 at a time, so that it commits many times.
        let mut exited = None;
        for chunk in 0..8 {
            produce_to(&bootstrap, "orders", &records(next_id..next_id + 50)).await;
            next_id += 50;
            tokio::time::sleep(Duration::from_millis(60)).await;
            if crash.is_none() && chunk == 5 {
                child.kill().expect("SIGKILL");
            }
            if let Some(status) = child.try_wait().unwrap() {
                exited = Some(status);
            }
        }
        let status = match exited {
            Some(status) => status,
            None if crash.is_some() => {
                let deadline = std::time::Instant::now() + Duration::from_secs(30);
                loop {
                    if let Some(status) = child.try_wait().unwrap() {
                        break status;
                    }
                    assert!(
                        std::time::Instant::now() < deadline,
                        "{crash:?} never fired"
                    );
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
            None => child.wait().unwrap(),
        };
        assert!(!status.success(), "{crash:?}: the run was not stopped");
    }
    produce_to(&bootstrap, "orders", &records(next_id..next_id + 400)).await;
    next_id += 400;
    // The killed runs made progress, and left work for the last run: they were killed mid-stream.
    let committed = table_dump(killed.path(), "SELECT count(*) AS n FROM shop.dwd_orders");
    assert!(
        committed[0]["n"].as_i64().unwrap() > 0,
        "no run committed before it was killed"
    );
    for dir in [killed.path(), calm.path()] {
        let summary = json(&strata_ok(
            dir,
            &["run", "--until-idle", "--port", "0", "--format", "json"],
        ));
        assert_eq!(summary["tables"][0]["name"], "shop.dwd_orders");
        assert!(
            summary["tables"][0]["records_in"].as_u64().unwrap() > 0,
            "{summary}"
        );
    }

    let total = next_id - 1;
    let malformed = (1..=total).filter(|id| id % 97 == 0).count();
    let filtered = (1..=total)
        .filter(|id| id % 97 != 0 && id % 11 == 0)
        .count();
    let expected_rows = total as usize - malformed - filtered;
    let order = "SELECT order_id, amount, city FROM shop.dwd_orders ORDER BY order_id";
    let rows = table_dump(killed.path(), order);
    assert_eq!(
        rows.as_array().unwrap().len(),
        expected_rows,
        "rows lost or duplicated"
    );
    assert_eq!(
        rows,
        table_dump(calm.path(), order),
        "differs from the uninterrupted run"
    );
    let quarantine = "SELECT partition, \"offset\", reason FROM shop.dwd_orders__quarantine ORDER BY partition, \"offset\"";
    let bad = table_dump(killed.path(), quarantine);
    assert_eq!(
        bad.as_array().unwrap().len(),
        malformed,
        "quarantine lost or duplicated records"
    );
    assert_eq!(bad, table_dump(calm.path(), quarantine));

    // The aggregation's state survived every crash: totals equal the detail's, and the calm run's.
    let totals = "SELECT city, orders, amount FROM shop.dws_city_totals ORDER BY city";
    let from_detail = table_dump(
        killed.path(),
        "SELECT city, COUNT(*) AS orders, CAST(SUM(amount) AS DECIMAL(20, 2)) AS amount FROM shop.dwd_orders GROUP BY city ORDER BY city",
    );
    assert_eq!(table_dump(killed.path(), totals), from_detail);
    assert_eq!(table_dump(calm.path(), totals), from_detail);
}

#[tokio::test]
async fn each_pipeline_run_sends_openlineage_events_to_the_configured_file() {
    let cluster = MockCluster::new(1).unwrap();
    cluster.create_topic("orders", 4, 1).unwrap();
    let bootstrap = cluster.bootstrap_servers();
    let dir = tempfile::tempdir().unwrap();
    project(dir.path(), &bootstrap);
    // An HTTP endpoint that keeps what it is sent, like Marquez's /api/v1/lineage.
    let received = std::sync::Arc::new(std::sync::Mutex::new(Vec::<serde_json::Value>::new()));
    let keep = received.clone();
    let app = axum::Router::new().route(
        "/api/v1/lineage",
        axum::routing::post(move |axum::Json(event): axum::Json<serde_json::Value>| {
            let keep = keep.clone();
            async move {
                keep.lock().unwrap().push(event);
                axum::http::StatusCode::CREATED
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let endpoint = format!("http://{}/api/v1/lineage", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    let config = dir.path().join("strata.toml");
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(
        &config,
        format!("{text}[openlineage]\nfile = \"events.jsonl\"\nurl = \"{endpoint}\"\nnamespace = \"shop-warehouse\"\n"),
    )
    .unwrap();
    produce_to(&bootstrap, "orders", &records(1..300)).await;
    let project = dir.path().to_path_buf();
    tokio::task::spawn_blocking(move || {
        strata_ok(&project, &["run", "--until-idle", "--port", "0"])
    })
    .await
    .unwrap();

    let events: Vec<serde_json::Value> = std::fs::read_to_string(dir.path().join("events.jsonl"))
        .unwrap()
        .lines()
        .map(json)
        .collect();
    assert_eq!(
        *received.lock().unwrap(),
        events,
        "the endpoint got the same events, in the same order"
    );
    for (pipeline, table) in [
        ("dwd_orders", "shop.dwd_orders"),
        ("dws_city_totals", "shop.dws_city_totals"),
    ] {
        let run: Vec<&serde_json::Value> = events
            .iter()
            .filter(|e| e["job"]["name"] == pipeline)
            .collect();
        let types: Vec<&str> = run
            .iter()
            .map(|e| e["eventType"].as_str().unwrap())
            .collect();
        assert_eq!(types.first(), Some(&"START"), "{pipeline}: {types:?}");
        assert_eq!(types.last(), Some(&"COMPLETE"), "{pipeline}: {types:?}");
        assert!(types[1..types.len() - 1].iter().all(|t| *t == "RUNNING") && types.len() > 2);
        assert!(
            run.iter()
                .all(|e| e["run"]["runId"] == run[0]["run"]["runId"])
        );
        assert!(
            run.iter()
                .all(|e| e["job"]["namespace"] == "shop-warehouse")
        );
        assert_eq!(run[0]["inputs"][0]["name"], "shop.ods_orders");
        assert_eq!(run[0]["outputs"][0]["name"], table);
        assert!(!run[0]["outputs"][0]["facets"]["columnLineage"]["fields"]["city"].is_null());
        let reported: u64 = run
            .iter()
            .filter_map(|e| {
                e["outputs"][0]["outputFacets"]["outputStatistics"]["rowCount"].as_u64()
            })
            .sum();
        if pipeline == "dwd_orders" {
            let count = table_dump(dir.path(), "SELECT COUNT(*) AS n FROM shop.dwd_orders");
            assert_eq!(
                count[0]["n"].as_u64().unwrap(),
                reported,
                "RUNNING events count every committed row"
            );
        }
    }
}

#[tokio::test]
async fn a_pipeline_commits_at_most_once_per_interval_while_records_trickle_in() {
    let cluster = MockCluster::new(1).unwrap();
    cluster.create_topic("orders", 4, 1).unwrap();
    let bootstrap = cluster.bootstrap_servers();
    let dir = tempfile::tempdir().unwrap();
    project(dir.path(), &bootstrap);
    let config = std::fs::read_to_string(dir.path().join("strata.toml")).unwrap();
    std::fs::write(
        dir.path().join("strata.toml"),
        config.replace("commit-interval-ms = 20", "commit-interval-ms = 1000"),
    )
    .unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_strata"))
        .arg("--project")
        .arg(dir.path())
        .args([
            "run",
            "--for",
            "4s",
            "--port",
            "0",
            "--pg-port",
            "0",
            "--format",
            "json",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // A record every 50 ms: the pipelines catch up with their source about 70 times.
    for id in 1..=70 {
        produce_to(&bootstrap, "orders", &records(id..id + 1)).await;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let output = child.wait_with_output().unwrap();
    assert!(output.status.success());
    let summary = json(&String::from_utf8_lossy(&output.stdout));
    for table in summary["tables"].as_array().unwrap() {
        let commits = table["commits"].as_u64().unwrap();
        // Four seconds at one commit a second, the one recording where the source
        // starts, and the last one at the stop.
        assert!((1..=7).contains(&commits), "{table}");
        assert!(table["records_in"].as_u64().unwrap() > 0, "{table}");
        // Each commit may add a file; the table holds no more than it made.
        let files = table["files"].as_i64().unwrap();
        assert!((1..=commits as i64 + 1).contains(&files), "{table}");
    }
}
