//! Flink's datagen connector, end to end through the `strata` binary: a
//! connector that declares itself to the DDL. Its options are checked where
//! they are written, a pipeline reads its rows, and a run killed half-way
//! resumes to exactly the rows an uninterrupted run writes.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::support::{json, stderr, strata, strata_ok};

const CATALOG: &str = "
CREATE TABLE shop.ods_generated_orders (
  order_id BIGINT,
  amount INT,
  code STRING,
  created_at TIMESTAMP(3)
) WITH (
  'connector' = 'datagen',
  'rows-per-second' = '2000',
  'number-of-rows' = '3000',
  'fields.order_id.kind' = 'sequence',
  'fields.order_id.start' = '1',
  'fields.order_id.end' = '1000000',
  'fields.amount.min' = '0',
  'fields.amount.max' = '9',
  'fields.code.length' = '5'
);
CREATE TABLE shop.dwd_generated_orders (order_id BIGINT, amount INT, code STRING, created_at TIMESTAMP(3))
WITH ('connector' = 'delta');
";

fn project(dir: &Path) {
    std::fs::write(
        dir.join("strata.toml"),
        "[engine]\ncommit-interval-ms = 50\nbatch-records = 100\n",
    )
    .unwrap();
    std::fs::create_dir_all(dir.join("catalog")).unwrap();
    std::fs::create_dir_all(dir.join("pipelines/dwd")).unwrap();
    std::fs::write(dir.join("catalog/shop.sql"), CATALOG).unwrap();
    std::fs::write(
        dir.join("pipelines/dwd/dwd_generated_orders.sql"),
        "INSERT INTO shop.dwd_generated_orders SELECT order_id, amount, code, created_at FROM shop.ods_generated_orders WHERE amount > 0",
    )
    .unwrap();
    let catalog = dir.join("catalog");
    strata_ok(dir, &["catalog", "register", catalog.to_str().unwrap()]);
}

fn dump(dir: &Path, sql: &str) -> serde_json::Value {
    json(&strata_ok(dir, &["query", sql, "--format", "json"]))
}

#[tokio::test]
async fn a_killed_datagen_run_resumes_to_the_rows_of_an_uninterrupted_one() {
    let killed = tempfile::tempdir().unwrap();
    let calm = tempfile::tempdir().unwrap();
    project(killed.path());
    project(calm.path());

    // 3,000 rows at 2,000 a second: killed after a second, the run has committed some of them.
    let mut child = Command::new(env!("CARGO_BIN_EXE_strata"))
        .arg("--project")
        .arg(killed.path())
        .args(["run", "--port", "0", "--pg-port", "0"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let count = "SELECT count(*) AS n FROM shop.dwd_generated_orders";
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        tokio::time::sleep(Duration::from_millis(200)).await;
        if dump(killed.path(), count)[0]["n"].as_i64().unwrap() > 0 {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "nothing committed");
    }
    child.kill().expect("SIGKILL");
    child.wait().unwrap();
    let before = dump(killed.path(), count)[0]["n"].as_i64().unwrap();

    for dir in [killed.path(), calm.path()] {
        strata_ok(dir, &["run", "--until-idle", "--port", "0"]);
    }
    let rows = "SELECT order_id, amount, code FROM shop.dwd_generated_orders ORDER BY order_id";
    let resumed = dump(killed.path(), rows);
    let rows_written = resumed.as_array().unwrap();
    assert!(
        (before as usize) < rows_written.len(),
        "the killed run had written everything ({before} rows)"
    );
    // Row n's values depend on n alone: both runs wrote the same rows, each once.
    assert_eq!(resumed, dump(calm.path(), rows), "rows lost or duplicated");
    let ids: Vec<i64> = rows_written
        .iter()
        .map(|row| row["order_id"].as_i64().unwrap())
        .collect();
    assert!(ids.windows(2).all(|pair| pair[0] < pair[1]), "an id twice");
    assert!(ids.iter().all(|id| (1..=3000).contains(id)));
    // Amounts are 0 to 9 and the pipeline drops the zeros: about a tenth of the rows.
    let kept = rows_written.len();
    assert!((2500..3000).contains(&kept), "{kept} of 3,000 rows kept");
    // Row n is stamped when it is due at 2,000 a second from row 0: the killed run's
    // second start went on with the first start's times.
    let stamps = dump(
        killed.path(),
        // Delta keeps timestamps in microseconds.
        "SELECT DISTINCT CAST(created_at AS BIGINT) / 1000 - (order_id - 1) / 2 AS base FROM shop.dwd_generated_orders",
    );
    assert_eq!(stamps.as_array().unwrap().len(), 1, "{stamps}");
    assert!(rows_written.iter().all(|row| {
        let amount = row["amount"].as_i64().unwrap();
        let code = row["code"].as_str().unwrap();
        (1..=9).contains(&amount) && code.len() == 5
    }));
}

#[test]
fn datagen_options_are_checked_where_they_are_written_and_its_rows_are_not_queried() {
    let dir = tempfile::tempdir().unwrap();
    project(dir.path());
    let bad = dir.path().join("bad.sql");
    std::fs::write(
        &bad,
        "CREATE TABLE shop.ods_bad (id BIGINT)\nWITH ('connector' = 'datagen',\n      'fields.id.kind' = 'shuffle');\n",
    )
    .unwrap();
    let output = strata(dir.path(), &["catalog", "register", bad.to_str().unwrap()]);
    assert!(!output.status.success());
    let message = stderr(&output);
    assert!(
        message.contains("bad.sql:3:") && message.contains("unknown kind 'shuffle'"),
        "{message}"
    );
    let output = strata(
        dir.path(),
        &["query", "SELECT * FROM shop.ods_generated_orders"],
    );
    assert!(!output.status.success());
    let message = stderr(&output);
    assert!(message.contains("is a datagen table"), "{message}");
}
