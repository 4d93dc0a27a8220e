//! The quality crate's rules on crafted batches with known failures, and the
//! checks files' errors.

use std::path::Path;
use std::sync::Arc;

use arrow::array::{Decimal128Array, Int64Array, StringArray, TimestampMillisecondArray};
use arrow::datatypes::{DataType, Field, Schema, TimeUnit};
use arrow::record_batch::RecordBatch;
use strata_catalog::TableDef;
use strata_catalog::ddl;
use strata_quality::aggregate::{History, observe};
use strata_quality::checks::{Metric, parse};
use strata_quality::evaluator::{Evaluator, EvaluatorSpec, Scope};
use strata_quality::freshness::{self, Observed};
use strata_quality::row::RowRules;
use strata_quality::{Action, RuleKind};

fn tables() -> Vec<TableDef> {
    let sql = "
CREATE TABLE shop.dwd_orders (
  order_id BIGINT, city STRING, status STRING, amount DECIMAL(10, 2), order_time TIMESTAMP(3),
  WATERMARK FOR order_time AS order_time - INTERVAL '5' SECOND
) WITH ('connector' = 'delta');
CREATE TABLE shop.dws_gmv (window_start TIMESTAMP(3), gmv DECIMAL(20, 2)) WITH ('connector' = 'delta');
";
    ddl::parse_ddl("catalog.sql", sql)
        .unwrap()
        .iter()
        .map(|create| ddl::resolve(create, &Default::default()).unwrap())
        .collect()
}

fn orders() -> RecordBatch {
    let schema = Arc::new(Schema::new(vec![
        Field::new("order_id", DataType::Int64, true),
        Field::new("city", DataType::Utf8, true),
        Field::new("status", DataType::Utf8, true),
        Field::new("amount", DataType::Decimal128(10, 2), true),
        Field::new(
            "order_time",
            DataType::Timestamp(TimeUnit::Millisecond, None),
            true,
        ),
    ]));
    RecordBatch::try_new(
        schema,
        vec![
            Arc::new(Int64Array::from(vec![
                Some(1),
                Some(2),
                None,
                Some(4),
                Some(5),
                Some(2),
            ])),
            Arc::new(StringArray::from(vec![
                Some("Beijing"),
                Some("shanghai"),
                Some("Hangzhou"),
                None,
                Some("Xi'an Very Long City Name"),
                Some("Beijing"),
            ])),
            Arc::new(StringArray::from(vec![
                Some("paid"),
                Some("paid"),
                Some("refunded"),
                Some("lost"),
                None,
                Some("paid"),
            ])),
            Arc::new(
                Decimal128Array::from(vec![
                    Some(1000),
                    Some(0),
                    Some(-50),
                    Some(25_000),
                    None,
                    Some(99),
                ])
                .with_precision_and_scale(10, 2)
                .unwrap(),
            ),
            Arc::new(TimestampMillisecondArray::from(vec![
                Some(0),
                Some(1000),
                Some(60_000),
                Some(61_000),
                Some(62_000),
                None,
            ])),
        ],
    )
    .unwrap()
}

const RULES: &str = r#"
table = "shop.dwd_orders"

[[rule]]
name = "id_present"
check = "not_null"
column = "order_id"
action = "quarantine"

[[rule]]
name = "known_status"
check = "accepted_values"
column = "status"
values = ["paid", "refunded"]

[[rule]]
name = "amount_positive"
check = "range"
column = "amount"
min = 0
exclusive-min = true
max = 200
action = "quarantine"

[[rule]]
name = "city_capitalised"
check = "regex"
column = "city"
pattern = '^[A-Z]'

[[rule]]
name = "city_short"
check = "length"
column = "city"
max = 12

[[rule]]
name = "ids_small"
check = "expression"
expression = "order_id < 5"
action = "stop"
"#;

/// The failing rows of each rule, by name.
fn failures(rules: &RowRules, batch: &RecordBatch) -> Vec<(String, Vec<u32>)> {
    rules
        .evaluate("shop.dwd_orders", batch)
        .unwrap()
        .into_iter()
        .map(|f| (f.rule.name.clone(), f.rows))
        .collect()
}

#[test]
fn each_row_rule_fails_exactly_the_rows_that_break_it_and_nulls_only_fail_not_null() {
    let checks = parse(Path::new("checks/dwd_orders.toml"), RULES, &tables()).unwrap();
    let batch = orders();
    let rules = RowRules::compile("shop.dwd_orders", &checks.rules, &batch.schema()).unwrap();
    assert_eq!(
        failures(&rules, &batch),
        vec![
            ("id_present".to_string(), vec![2]),
            ("known_status".to_string(), vec![3]),
            ("amount_positive".to_string(), vec![1, 2, 3]),
            ("city_capitalised".to_string(), vec![1]),
            ("city_short".to_string(), vec![4]),
            ("ids_small".to_string(), vec![4]),
        ]
    );
    let rule = &checks.rules[2];
    let reason = rules.reason(rule, &batch, 2);
    assert!(
        reason.contains("amount_positive") && reason.contains("amount = -0.50"),
        "{reason}"
    );
}

#[tokio::test]
async fn the_evaluator_applies_each_action_and_unique_sees_keys_across_batches() {
    let mut text = RULES.to_string();
    text.push_str("\n[[rule]]\nname = \"one_row_per_order\"\ncheck = \"unique\"\ncolumns = [\"order_id\"]\naction = \"quarantine\"\n");
    let checks = parse(Path::new("checks/dwd_orders.toml"), &text, &tables()).unwrap();
    let batch = orders();
    let mut evaluator = Evaluator::open(EvaluatorSpec {
        table: "shop.dwd_orders".parse().unwrap(),
        pipeline: "dwd_orders".to_string(),
        scope: Scope::Target,
        schema: batch.schema(),
        rules: checks.rules.clone(),
        target_location: None,
        upserted: false,
        results_location: None,
        context: None,
    })
    .await
    .unwrap();
    let verdict = evaluator.check_rows(&batch).await.unwrap();
    let quarantined: Vec<(u32, &str)> = verdict
        .quarantine
        .iter()
        .map(|q| (q.row, q.rule.as_str()))
        .collect();
    // Rows 1-3 break a quarantine rule. Row 5 repeats order 2's key, but row 1
    // (order 2) left for quarantine, so its key was never the table's.
    assert_eq!(
        quarantined,
        vec![
            (1, "amount_positive"),
            (2, "id_present"),
            (3, "amount_positive")
        ]
    );
    let stop = verdict.stop.expect("order 5 breaks the stop rule");
    assert!(stop.contains("ids_small"), "{stop}");
    // The kept keys are remembered: order 1 again is a duplicate in the next batch.
    let again = evaluator.check_rows(&batch.slice(0, 1)).await.unwrap();
    assert_eq!(again.quarantine.len(), 1);
    assert_eq!(again.quarantine[0].rule, "one_row_per_order");
    let results = evaluator.take_row_results(0);
    let unique = results
        .iter()
        .find(|r| r.rule == "one_row_per_order")
        .unwrap();
    assert_eq!((unique.passed, unique.failed), (3, 1));
}

#[test]
fn aggregate_metrics_are_computed_over_the_rows_given() {
    let batch = orders();
    assert_eq!(observe(&Metric::RowCount, &batch).unwrap(), Some(6.0));
    assert_eq!(
        observe(&Metric::NullRate("city".into()), &batch).unwrap(),
        Some(1.0 / 6.0)
    );
    assert_eq!(
        observe(&Metric::DistinctCount("city".into()), &batch).unwrap(),
        Some(4.0)
    );
    let mean = observe(&Metric::Mean("amount".into()), &batch)
        .unwrap()
        .unwrap();
    assert!(
        (mean - (10.0 + 0.0 - 0.5 + 250.0 + 0.99) / 5.0).abs() < 1e-9,
        "{mean}"
    );
    let stddev = observe(&Metric::Stddev("amount".into()), &batch)
        .unwrap()
        .unwrap();
    assert!(stddev > 100.0 && stddev < 120.0, "{stddev}");
}

#[tokio::test]
async fn per_window_rules_judge_each_window_and_bounds_fail_outside() {
    let text = r#"
table = "shop.dwd_orders"
[[rule]]
name = "orders_per_minute"
check = "row_count"
min = 3
per = "window"
window-column = "order_time"
"#;
    let checks = parse(Path::new("checks/dwd_orders.toml"), text, &tables()).unwrap();
    let batch = orders();
    let mut evaluator = Evaluator::open(EvaluatorSpec {
        table: "shop.dwd_orders".parse().unwrap(),
        pipeline: "p".to_string(),
        scope: Scope::Target,
        schema: batch.schema(),
        rules: checks.rules,
        target_location: None,
        upserted: false,
        results_location: None,
        context: None,
    })
    .await
    .unwrap();
    let (results, stop) = evaluator.check_commit(&[batch], 0).unwrap();
    assert!(stop.is_none());
    // Each distinct order_time is its own "window" here: every one has fewer than 3 rows.
    assert_eq!(results.len(), 6);
    // The row without an order_time is judged on its own, outside any window.
    assert!(results.iter().all(|r| r.failed == 1));
    assert_eq!(results.iter().filter(|r| r.scope == "window").count(), 5);
}

#[test]
fn an_anomaly_is_a_value_k_deviations_from_the_recent_history() {
    let mut history = History::new(10, [100.0, 102.0, 98.0, 101.0, 99.0]);
    assert!(!history.judge(103.0, 3.0).anomalous);
    let judgement = history.judge(150.0, 3.0);
    assert!(judgement.anomalous);
    let (low, high) = judgement.band.unwrap();
    assert!(low > 90.0 && high < 110.0, "{low} {high}");
    let mut young = History::new(10, [1.0]);
    assert!(
        !young.judge(1000.0, 3.0).anomalous,
        "too little history to judge"
    );
}

#[test]
fn freshness_fires_when_the_watermark_lags_or_commits_stop() {
    let checks = parse(
        Path::new("checks/dwd_orders.toml"),
        "table = \"shop.dwd_orders\"\n[[rule]]\nname = \"fresh\"\ncheck = \"freshness\"\nmax-lag = \"30s\"\nevery = \"10s\"\n",
        &tables(),
    )
    .unwrap();
    let rule = &checks.rules[0];
    let now = 1_000_000;
    let fresh = Observed {
        watermark_ms: Some(now - 5_000),
        last_commit_ms: Some(now - 1_000),
        started_ms: 0,
        now_ms: now,
    };
    assert_eq!(
        freshness::evaluate("shop.dwd_orders", rule, fresh)
            .unwrap()
            .failed,
        0
    );
    let quiet = Observed {
        last_commit_ms: Some(now - 11_000),
        ..fresh
    };
    let result = freshness::evaluate("shop.dwd_orders", rule, quiet).unwrap();
    assert_eq!(result.failed, 1);
    assert!(result.detail.unwrap().contains("no commit for 11s"));
    let lagging = Observed {
        watermark_ms: Some(now - 31_000),
        ..fresh
    };
    assert_eq!(
        freshness::evaluate("shop.dwd_orders", rule, lagging)
            .unwrap()
            .failed,
        1
    );
}

#[test]
fn declaration_errors_name_the_file_line_and_column_and_how_to_fix_them() {
    let cases = [
        (
            "table = \"shop.dwd_order\"\n",
            "checks/x.toml:1:9: table shop.dwd_order is not in the catalog",
            "did you mean shop.dwd_orders?",
        ),
        (
            "table = \"shop.dwd_orders\"\n\n[[rule]]\nname = \"a\"\ncheck = \"range\"\ncolumn = \"amout\"\nmin = 0\n",
            "checks/x.toml:3:1: shop.dwd_orders has no column \"amout\"",
            "did you mean amount?",
        ),
        (
            "table = \"shop.dwd_orders\"\n[[rule]]\nname = \"a\"\ncheck = \"row_count\"\nmin = 1\naction = \"quarantine\"\n",
            "a row_count check has no failing rows to quarantine",
            "use action = \"warn\" or \"stop\"",
        ),
        (
            "table = \"shop.dwd_orders\"\n[[rule]]\nname = \"a\"\ncheck = \"not_null\"\ncolumn = \"city\"\npattern = \"x\"\n",
            "`pattern` does not apply to a not_null check",
            "a not_null check takes column",
        ),
        (
            "table = \"shop.dwd_orders\"\n[[rule]]\nname = \"a\"\ncheck = \"expression\"\nexpression = \"amount +\"\n",
            "checks/x.toml:2:1",
            "as a condition each good row meets",
        ),
        (
            "table = \"shop.dwd_orders\"\n[[rule]]\nname = \"a\"\ncheck = \"nul\"\n",
            "unknown check \"nul\"",
            "not_null",
        ),
        (
            "table = \"shop.dwd_orders\"\n[[rule]]\nname = \"a\"\ncheck = \"not_null\"\ncolumn = \"city\"\nseverity = \"loud\"\n",
            "unknown severity",
            "info, warning, error and critical",
        ),
    ];
    for (text, message, hint) in cases {
        let err = parse(Path::new("checks/x.toml"), text, &tables())
            .unwrap_err()
            .to_string();
        assert!(err.contains(message), "{err}\n  should say: {message}");
        assert!(err.contains(hint), "{err}\n  should hint: {hint}");
    }
    let checks = parse(Path::new("checks/x.toml"), RULES, &tables()).unwrap();
    assert_eq!(checks.rules[5].action, Action::Stop);
    assert!(matches!(checks.rules[0].kind, RuleKind::Row(_)));
}

#[tokio::test]
async fn the_results_table_is_compacted_as_it_grows() {
    use strata_quality::results::{CheckResult, ResultsLog, Taken};
    let dir = tempfile::tempdir().unwrap();
    let location = dir.path().join("quality_results").display().to_string();
    let log = ResultsLog::open_compacting(&location, 3).await.unwrap();
    for at_ms in 1..=7 {
        log.record(vec![CheckResult {
            at_ms,
            table: "shop.dwd_orders".to_string(),
            rule: "amount_positive".to_string(),
            check: "range".to_string(),
            pipeline: Some("dwd_orders".to_string()),
            scope: "commit".to_string(),
            window_start_ms: None,
            window_end_ms: None,
            commit_version: Some(at_ms),
            passed: 10,
            failed: 0,
            observed: None,
            bound: None,
            action: Taken::None,
            severity: "warn".to_string(),
            detail: None,
        }]);
        log.flush().await.unwrap();
    }
    let history = strata_catalog::connectors::delta::history(&location, 100)
        .await
        .unwrap();
    let compactions = history.iter().filter(|v| v.operation == "OPTIMIZE").count();
    assert_eq!(compactions, 2, "{history:?}");
    let rows = strata_catalog::connectors::delta::query(
        &location,
        "results",
        "SELECT COUNT(*) AS n FROM results",
    )
    .await
    .unwrap();
    let n = rows[0]
        .column(0)
        .as_any()
        .downcast_ref::<Int64Array>()
        .unwrap()
        .value(0);
    assert_eq!(n, 7, "compaction keeps every result");
}
