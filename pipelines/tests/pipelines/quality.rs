//! Quality rules in a running pipeline: quarantine keeps the good rows
//! committed and the bad ones in quarantine with their rule, nothing lost;
//! stop holds the commit and its offsets back until the rule is fixed; a
//! reconciliation catches an injected row.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use arrow::array::{Array, StringArray};
use rdkafka::mocking::MockCluster;
use strata_catalog::Catalog;
use strata_pipelines::{PipelineError, PipelineRun, Quality, RunMode, TableStats, load_project};
use strata_quality::results::{self, ResultsLog};

use crate::ingest::{kafka_project, produce};

const CATALOG: &str = "
CREATE TABLE shop.ods_orders (
  order_id BIGINT NOT NULL, amount DECIMAL(10, 2), city STRING, order_time TIMESTAMP(3),
  WATERMARK FOR order_time AS order_time - INTERVAL '5' SECOND
) WITH ('connector' = 'kafka', 'topic' = 'orders', 'format' = 'json',
        'scan.startup.mode' = 'earliest-offset', 'connection' = 'events');
CREATE TABLE shop.dwd_orders (
  order_id BIGINT NOT NULL, amount DECIMAL(10, 2), city STRING, order_time TIMESTAMP(3)
) WITH ('connector' = 'delta');
";

const PIPELINE: &str = "INSERT INTO shop.dwd_orders
SELECT order_id, amount, city, order_time FROM shop.ods_orders WHERE order_id % 10 <> 0";

/// An order: amount `id * 7 % 200 + 0.50`, city `city`, one per second of a minute.
fn order(id: i64, city: &str) -> (i32, String) {
    (
        (id % 3) as i32,
        format!(
            r#"{{"order_id": {id}, "amount": "{}.50", "city": "{city}", "order_time": "2024-05-01T10:00:{:02}"}}"#,
            id * 7 % 200,
            id % 60
        ),
    )
}

fn amount(id: i64) -> f64 {
    (id * 7 % 200) as f64 + 0.5
}

async fn run(catalog: &Catalog, quality: Quality) -> Result<Arc<TableStats>, PipelineError> {
    let stats = Arc::new(TableStats::new());
    let (_stop, stop_rx) = tokio::sync::watch::channel(false);
    let run = PipelineRun {
        catalog: catalog.clone(),
        pipeline: load_project(catalog).await.unwrap().remove(0),
        stats: stats.clone(),
        mode: RunMode::UntilCaughtUp,
        quality,
        replay: None,
    };
    tokio::time::timeout(Duration::from_secs(60), run.run(stop_rx))
        .await
        .expect("the pipeline ends within a minute")
        .map(|()| stats)
}

async fn quality(catalog: &Catalog) -> (Quality, ResultsLog) {
    let tables: Vec<_> = catalog
        .list()
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.def)
        .collect();
    let checks = strata_quality::checks::load(&catalog.project().dir, &tables).unwrap();
    let log = ResultsLog::open(&results::location(&catalog.project().lake_root()))
        .await
        .unwrap();
    (
        Quality {
            checks: Arc::new(checks),
            results: Some(log.clone()),
            written: Default::default(),
        },
        log,
    )
}

async fn strings(catalog: &Catalog, sql: &str) -> Vec<String> {
    let result = catalog.query(sql).await.unwrap();
    let mut values = Vec::new();
    for batch in &result.batches {
        let column =
            arrow::compute::cast(batch.column(0), &arrow::datatypes::DataType::Utf8).unwrap();
        let column = column.as_any().downcast_ref::<StringArray>().unwrap();
        for row in 0..column.len() {
            values.push(column.value(row).to_string());
        }
    }
    values.sort();
    values
}

fn write_checks(dir: &std::path::Path, name: &str, text: &str) {
    std::fs::create_dir_all(dir.join("checks")).unwrap();
    std::fs::write(dir.join("checks").join(name), text).unwrap();
}

#[tokio::test]
async fn quarantine_rules_commit_the_good_rows_and_quarantine_the_bad_ones_with_their_rule() {
    let cluster = MockCluster::new(1).unwrap();
    cluster.create_topic("orders", 3, 1).unwrap();
    let bootstrap = cluster.bootstrap_servers();
    let catalog_sql = format!(
        "{CATALOG}CREATE TABLE shop.dim_cities (city STRING, PRIMARY KEY (city) NOT ENFORCED) WITH ('connector' = 'embedded');"
    );
    let (dir, catalog) = kafka_project(
        &bootstrap,
        "commit-interval-ms = 100\nbatch-records = 16",
        ("dwd_orders", PIPELINE),
        &catalog_sql,
    )
    .await;
    catalog
        .query("INSERT INTO shop.dim_cities VALUES ('beijing'), ('shanghai')")
        .await
        .unwrap();
    write_checks(
        dir.path(),
        "ods_orders.toml",
        "table = \"shop.ods_orders\"\n[[rule]]\nname = \"city_lowercase\"\ncheck = \"regex\"\ncolumn = \"city\"\npattern = '^[a-z]+$'\naction = \"quarantine\"\n",
    );
    write_checks(
        dir.path(),
        "dwd_orders.toml",
        r#"table = "shop.dwd_orders"
[[rule]]
name = "amount_at_least_10"
check = "range"
column = "amount"
min = 10
action = "quarantine"

[[rule]]
name = "one_row_per_order"
check = "unique"
columns = ["order_id"]
action = "quarantine"

[[rule]]
name = "city_not_hangzhou"
check = "expression"
expression = "city <> 'hangzhou'"
action = "warn"

[[rule]]
name = "city_known"
check = "relationship"
column = "city"
references = "shop.dim_cities"
action = "warn"
"#,
    );
    // Orders 1..=80; 81 has a city the source rule refuses; 5, 6 and 7 arrive twice.
    let mut records: Vec<(i32, String)> = (1..=80)
        .map(|id| order(id, if id % 4 == 0 { "hangzhou" } else { "beijing" }))
        .collect();
    records.push(order(81, "Bei Jing"));
    // Order 82 carries a field the catalog does not declare (additive drift).
    records.push((
        1,
        r#"{"order_id": 82, "amount": "174.50", "city": "beijing", "order_time": "2024-05-01T10:00:22", "coupon": "X1"}"#
            .to_string(),
    ));
    records.extend([5, 6, 7].map(|id| order(id, "beijing")));
    produce(&bootstrap, &records).await;
    // Order 83, with a key, fails the source rule too: quarantine keeps its key and bytes as sent.
    let keyed = r#"{ "city": "Shang Hai", "order_id": 83, "amount": "31.50",  "order_time": "2024-05-01T10:00:23" }"#;
    let producer: rdkafka::producer::FutureProducer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .create()
        .unwrap();
    producer
        .send(
            rdkafka::producer::FutureRecord::to("orders")
                .partition(2)
                .key("user-83")
                .payload(keyed),
            std::time::Duration::from_secs(5),
        )
        .await
        .unwrap();

    let (quality, log) = quality(&catalog).await;
    let stats = run(&catalog, quality).await.unwrap();
    log.flush().await.unwrap();

    // The expected outcome, computed straight from the records.
    let mut expected_rows = Vec::new();
    let mut expected_rules: BTreeMap<&str, usize> = BTreeMap::new();
    let mut seen = std::collections::HashSet::new();
    for id in (1..=81).chain([5, 6, 7, 83]) {
        if id == 81 || id == 83 {
            *expected_rules.entry("city_lowercase").or_default() += 1;
        } else if id % 10 == 0 {
            // filtered by the WHERE
        } else if amount(id) < 10.0 {
            *expected_rules.entry("amount_at_least_10").or_default() += 1;
        } else if !seen.insert(id) {
            *expected_rules.entry("one_row_per_order").or_default() += 1;
        } else {
            expected_rows.push(id.to_string());
        }
    }
    expected_rows.push("82".to_string());
    expected_rows.sort();
    assert_eq!(
        strings(&catalog, "SELECT order_id FROM shop.dwd_orders").await,
        expected_rows
    );
    let quarantined = strings(&catalog, "SELECT rule FROM shop.dwd_orders__quarantine").await;
    let mut by_rule: BTreeMap<&str, usize> = BTreeMap::new();
    for rule in &quarantined {
        *by_rule.entry(rule.as_str()).or_default() += 1;
    }
    assert_eq!(by_rule, expected_rules);
    // Nothing lost: every record is committed, quarantined, or filtered out.
    let filtered = (1..=80).filter(|id| id % 10 == 0).count();
    assert_eq!(
        stats.records_in.load(std::sync::atomic::Ordering::Relaxed) as usize,
        expected_rows.len() + quarantined.len() + filtered
    );
    let kept = strings(
        &catalog,
        "SELECT concat(coalesce(CAST(key AS VARCHAR), '-'), ' ', CAST(payload AS VARCHAR)) FROM shop.dwd_orders__quarantine WHERE rule = 'city_lowercase'",
    )
    .await;
    assert_eq!(
        kept,
        [
            format!("- {}", order(81, "Bei Jing").1),
            format!("user-83 {keyed}"),
        ]
    );
    let reasons = strings(
        &catalog,
        "SELECT reason FROM shop.dwd_orders__quarantine WHERE rule = 'amount_at_least_10'",
    )
    .await;
    assert!(
        reasons[0].contains("amount >= CAST(10 AS DECIMAL(10, 2))"),
        "{reasons:?}"
    );
    // The warn rule let its rows through, and every rule's results were recorded.
    let location = results::location(&catalog.project().lake_root());
    let recorded = results::read(&location, "").await.unwrap();
    let failed = |rule: &str| -> i64 {
        recorded
            .iter()
            .filter(|r| r.rule == rule)
            .map(|r| r.failed)
            .sum()
    };
    let hangzhou = (1..=80)
        .filter(|id| id % 4 == 0 && id % 10 != 0 && amount(*id) >= 10.0)
        .count();
    assert_eq!(failed("city_not_hangzhou"), hangzhou as i64);
    assert_eq!(failed("city_known"), hangzhou as i64);
    let drift: Vec<_> = recorded
        .iter()
        .filter(|r| r.rule == "schema_drift")
        .collect();
    assert!(
        drift.iter().any(|r| r.table == "shop.ods_orders"
            && r.detail.as_deref().is_some_and(|d| d.contains("coupon"))),
        "{drift:?}"
    );
    assert_eq!(failed("one_row_per_order"), 3);
    assert_eq!(failed("city_lowercase"), 2);
    assert!(
        recorded
            .iter()
            .filter(|r| r.table == "shop.dwd_orders")
            .all(|r| r.commit_version.is_some())
    );
}

#[tokio::test]
async fn a_stop_rule_holds_the_commit_back_until_the_rule_is_fixed_and_then_nothing_is_missing() {
    let cluster = MockCluster::new(1).unwrap();
    cluster.create_topic("orders", 3, 1).unwrap();
    let bootstrap = cluster.bootstrap_servers();
    let (dir, catalog) = kafka_project(
        &bootstrap,
        "commit-interval-ms = 100\nbatch-records = 500",
        ("dwd_orders", PIPELINE),
        CATALOG,
    )
    .await;
    let rule = |max: u32| {
        format!(
            "table = \"shop.dwd_orders\"\n[[rule]]\nname = \"amount_cap\"\ncheck = \"range\"\ncolumn = \"amount\"\nmax = {max}\naction = \"stop\"\n"
        )
    };
    write_checks(dir.path(), "dwd_orders.toml", &rule(150));
    let records: Vec<(i32, String)> = (1..=40).map(|id| order(id, "beijing")).collect();
    produce(&bootstrap, &records).await;

    let (quality_before, _) = quality(&catalog).await;
    let err = run(&catalog, quality_before).await.unwrap_err().to_string();
    assert!(
        err.contains("amount_cap") && err.contains("stopped before its commit"),
        "{err}"
    );
    assert!(err.contains("source offsets did not advance"), "{err}");
    let committed = strings(&catalog, "SELECT order_id FROM shop.dwd_orders").await;
    assert!(
        committed.is_empty(),
        "nothing of the batch was committed: {committed:?}"
    );

    // The rule is fixed; a restart reads the held-back records again.
    write_checks(dir.path(), "dwd_orders.toml", &rule(1000));
    let (quality_after, _) = quality(&catalog).await;
    run(&catalog, quality_after).await.unwrap();
    let mut expected: Vec<String> = (1..=40)
        .filter(|id| id % 10 != 0)
        .map(|id| id.to_string())
        .collect();
    expected.sort();
    assert_eq!(
        strings(&catalog, "SELECT order_id FROM shop.dwd_orders").await,
        expected
    );
}

#[tokio::test]
async fn reconciliation_reports_an_injected_row_with_both_counts_and_the_difference() {
    let cluster = MockCluster::new(1).unwrap();
    cluster.create_topic("orders", 3, 1).unwrap();
    let bootstrap = cluster.bootstrap_servers();
    let (dir, catalog) = kafka_project(
        &bootstrap,
        "commit-interval-ms = 100\nbatch-records = 64",
        ("dwd_orders", PIPELINE),
        CATALOG,
    )
    .await;
    write_checks(
        dir.path(),
        "dwd_orders.toml",
        r#"table = "shop.dwd_orders"
[[rule]]
name = "cheap_orders_quarantined"
check = "range"
column = "amount"
min = 10
action = "quarantine"

[[rule]]
name = "every_order_arrives"
check = "reconcile"
measure = "COUNT(*)"
time = "order_time"
against = "shop.ods_orders"
against-measure = "COUNT(*)"
against-time = "order_time"
against-where = "order_id % 10 <> 0"
minus-quarantined = true
window = "20s"
"#,
    );
    let records: Vec<(i32, String)> = (1..=59).map(|id| order(id, "beijing")).collect();
    produce(&bootstrap, &records).await;
    let (quality, _) = quality(&catalog).await;
    run(&catalog, quality.clone()).await.unwrap();

    let rule = quality.checks.of(&"shop.dwd_orders".parse().unwrap())[1].clone();
    let strata_quality::RuleKind::Reconcile(spec) = &rule.kind else {
        panic!("the second rule reconciles")
    };
    let table: strata_catalog::TableName = "shop.dwd_orders".parse().unwrap();
    let quarantine = format!(
        "{}/shop/dwd_orders__quarantine",
        catalog.project().lake_root()
    );
    let start = 1_714_557_600_000; // 2024-05-01T10:00:00Z
    let reconcile = || async {
        let session = catalog.session().await.unwrap();
        strata_quality::reconcile::evaluate(
            &session,
            strata_quality::reconcile::Reconciliation {
                table: &table,
                rule: &rule,
                spec,
                quarantine: Some(&quarantine),
            },
            start,
            start + 60_000,
            0,
        )
        .await
        .unwrap()
    };
    let before = reconcile().await;
    assert_eq!(before.len(), 3);
    assert!(before.iter().all(|r| r.failed == 0), "{before:?}");

    // A row the pipeline never wrote appears in the window 10:00:20-10:00:40.
    let location = format!("{}/shop/dwd_orders", catalog.project().lake_root());
    let table_now = strata_catalog::connectors::delta::open(&location)
        .await
        .unwrap();
    let schema = arrow::datatypes::Schema::new(vec![
        arrow::datatypes::Field::new("order_id", arrow::datatypes::DataType::Int64, false),
        arrow::datatypes::Field::new(
            "amount",
            arrow::datatypes::DataType::Decimal128(10, 2),
            true,
        ),
        arrow::datatypes::Field::new("city", arrow::datatypes::DataType::Utf8, true),
        arrow::datatypes::Field::new(
            "order_time",
            arrow::datatypes::DataType::Timestamp(arrow::datatypes::TimeUnit::Microsecond, None),
            true,
        ),
    ]);
    let injected = arrow::record_batch::RecordBatch::try_new(
        Arc::new(schema),
        vec![
            Arc::new(arrow::array::Int64Array::from(vec![9999])),
            Arc::new(
                arrow::array::Decimal128Array::from(vec![5000])
                    .with_precision_and_scale(10, 2)
                    .unwrap(),
            ),
            Arc::new(StringArray::from(vec!["beijing"])),
            Arc::new(arrow::array::TimestampMicrosecondArray::from(vec![
                (start + 25_000) * 1000,
            ])),
        ],
    )
    .unwrap();
    table_now.write(vec![injected]).await.unwrap();

    let after = reconcile().await;
    let failing: Vec<_> = after.iter().filter(|r| r.failed == 1).collect();
    assert_eq!(failing.len(), 1, "{after:?}");
    let mismatch = failing[0];
    assert_eq!(mismatch.window_start_ms, Some(start + 20_000));
    assert_eq!(mismatch.observed, Some(1.0));
    let detail = mismatch.detail.as_deref().unwrap();
    // Orders 20..=39: 2 filtered (20, 30); cheap ones quarantined by event time.
    let window: Vec<i64> = (20..=39).filter(|id| id % 10 != 0).collect();
    let cheap = window.iter().filter(|id| amount(**id) < 10.0).count();
    let committed = window.len() - cheap;
    assert!(
        detail.contains(&format!("COUNT(*) of shop.dwd_orders = {}", committed + 1))
            && detail.contains(&format!("= {}, minus {cheap} quarantined", window.len()))
            && detail.contains("difference 1"),
        "{detail}"
    );
}
