//! `strata bench quality`: the cost of row rules. The same Kafka → Delta
//! pipeline runs over the same orders with no rules and with ten row rules on
//! its target (all with `action = "warn"`, so both commit every row and the
//! rules' work is all that differs). The runs go plain, checked, checked,
//! plain, so that what warms up as the benchmark goes (the mock cluster's
//! reads, the file cache) favours neither.
//!
//! ```text
//!   orders ──▶ SELECT ──▶ Delta                                  rows/s
//!   orders ──▶ SELECT ──▶ 10 row rules (vectorised) ──▶ Delta      rows/s, overhead = 1 − ratio
//! ```

use std::sync::Arc;
use std::sync::atomic::Ordering;

use anyhow::{Context, bail};
use rdkafka::mocking::MockCluster;
use serde::Serialize;
use strata_catalog::{Catalog, Project, RegisterMode};
use strata_pipelines::{Quality, load_project};

use super::ingest::retained_records;
use super::{PARTITIONS, produce, run_until_caught_up};

/// Ten row rules of every kind, on the checked table.
const RULES: &str = r#"

[[rule]]
name = "id_present"
check = "not_null"
column = "order_id"

[[rule]]
name = "city_present"
check = "not_null"
column = "city"

[[rule]]
name = "time_present"
check = "not_null"
column = "order_time"

[[rule]]
name = "known_status"
check = "accepted_values"
column = "status"
values = ["paid", "shipped", "refunded"]

[[rule]]
name = "amount_positive"
check = "range"
column = "amount"
min = 0
exclusive-min = true
max = 10000

[[rule]]
name = "id_not_negative"
check = "range"
column = "order_id"
min = 0

[[rule]]
name = "city_capitalised"
check = "regex"
column = "city"
pattern = '^[A-Z][a-z]+$'

[[rule]]
name = "city_short"
check = "length"
column = "city"
min = 2
max = 32

[[rule]]
name = "user_known"
check = "expression"
expression = "user_id > 0 AND user_id < 1000000"

[[rule]]
name = "refunds_small"
check = "expression"
expression = "status <> 'refunded' OR amount < 500"
"#;

#[derive(Debug, Serialize)]
pub struct QualityReport {
    pub records: usize,
    pub rules: usize,
    pub no_rules_rows_per_s: f64,
    pub rules_rows_per_s: f64,
    /// `1 − rules / no rules`: the share of throughput the rules cost.
    pub overhead: f64,
    /// The ten rules alone, evaluated on the committed rows in batches of 20,000, on one core.
    pub rules_alone_rows_per_s: f64,
    /// The share of the plain pipeline's time the rules would take: its rows/s over theirs.
    pub rules_share_of_pipeline: f64,
    /// Rows the rules failed (warned about) in one checked run, summed over rules.
    pub failed_rows: u64,
}

/// Runs the benchmark over `records` orders.
pub async fn quality(records: usize, progress: bool) -> anyhow::Result<QualityReport> {
    let cluster = MockCluster::new(1).context("starting the Kafka mock cluster")?;
    cluster
        .create_topic("orders", PARTITIONS, 1)
        .context("creating the topic")?;
    let bootstrap = cluster.bootstrap_servers();
    const CITIES: [&str; 5] = ["Beijing", "Shanghai", "Hangzhou", "shenzhen", "Chengdu"];
    const STATUSES: [&str; 4] = ["paid", "shipped", "refunded", "lost"];
    produce(&bootstrap, "orders", records, |id| {
        format!(
            r#"{{"order_id": {id}, "user_id": {}, "city": "{}", "status": "{}", "amount": "{}.{:02}", "order_time": "2026-11-21T10:{:02}:{:02}"}}"#,
            id % 5_000 + 1,
            CITIES[id % CITIES.len()],
            STATUSES[id % 97 % STATUSES.len()],
            id % 900,
            id % 100,
            id / 60 % 60,
            id % 60
        )
    })?;
    let retained = retained_records(&bootstrap)?;
    if retained != records {
        bail!(
            "the Kafka mock cluster kept {retained} of the {records} records produced; run with --records {retained} or fewer"
        );
    }
    if progress {
        eprintln!("produced {records} orders");
    }
    let dir = tempfile::tempdir()?;
    std::fs::write(
        dir.path().join("strata.toml"),
        format!(
            "[engine]\ncommit-interval-ms = 250\n[connections.events]\nkind = \"kafka\"\nbootstrap-servers = \"{bootstrap}\"\n"
        ),
    )?;
    std::fs::create_dir_all(dir.path().join("pipelines/dwd"))?;
    std::fs::create_dir_all(dir.path().join("checks"))?;
    const TARGETS: [&str; 4] = [
        "dwd_orders_plain_1",
        "dwd_orders_checked_1",
        "dwd_orders_checked_2",
        "dwd_orders_plain_2",
    ];
    for target in TARGETS.iter().filter(|t| t.contains("checked")) {
        std::fs::write(
            dir.path().join(format!("checks/{target}.toml")),
            format!("table = \"bench.{target}\"\n{RULES}"),
        )?;
    }
    for target in TARGETS {
        std::fs::write(
            dir.path().join(format!("pipelines/dwd/{target}.sql")),
            format!(
                "INSERT INTO bench.{target} SELECT order_id, user_id, city, status, amount, order_time FROM bench.ods_orders"
            ),
        )?;
    }
    let columns = "order_id BIGINT, user_id BIGINT, city STRING, status STRING, amount DECIMAL(10, 2), order_time TIMESTAMP(3)";
    let catalog = Catalog::open(Project::load(dir.path())?).await?;
    catalog
        .register_sql(
            "bench.sql",
            &format!(
                "CREATE TABLE bench.ods_orders ({columns})
                 WITH ('connector' = 'kafka', 'topic' = 'orders', 'format' = 'json',
                       'scan.startup.mode' = 'earliest-offset', 'connection' = 'events');
                 CREATE TABLE bench.dwd_orders_plain_1 ({columns}) WITH ('connector' = 'delta');
                 CREATE TABLE bench.dwd_orders_checked_1 ({columns}) WITH ('connector' = 'delta');
                 CREATE TABLE bench.dwd_orders_checked_2 ({columns}) WITH ('connector' = 'delta');
                 CREATE TABLE bench.dwd_orders_plain_2 ({columns}) WITH ('connector' = 'delta');"
            ),
            RegisterMode::Create,
        )
        .await?;
    let checks = Arc::new(crate::quality::load_checks(&catalog).await?);
    let rules = checks.rule_count() / 2;
    let results = crate::quality::open_results(&catalog).await?;
    let mut pipelines = load_project(&catalog).await?;
    let mut seconds = [0.0; 2];
    for target in TARGETS {
        let position = pipelines
            .iter()
            .position(|p| p.pipeline.name == target)
            .context("the benchmark project has its four pipelines")?;
        let pipeline = pipelines.remove(position);
        let checked = target.contains("checked");
        let quality = if checked {
            Quality {
                checks: checks.clone(),
                results: Some(results.clone()),
                written: Default::default(),
            }
        } else {
            Quality::default()
        };
        let (took, stats) = run_until_caught_up(&catalog, pipeline, quality).await?;
        let committed = stats.rows_committed.load(Ordering::Relaxed);
        if committed as usize != records {
            bail!("{target} committed {committed} of {records} rows");
        }
        if progress {
            eprintln!("{target}: {records} rows in {took:.2} s");
        }
        seconds[usize::from(checked)] += took;
    }
    results.flush().await?;
    let failed_rows = results.latest().iter().map(|s| s.failed_rows).sum::<u64>() / 2;
    let [plain_seconds, checked_seconds] = seconds;
    let no_rules_rows_per_s = 2.0 * records as f64 / plain_seconds;
    let rules_rows_per_s = 2.0 * records as f64 / checked_seconds;
    let rules_alone_rows_per_s = rules_alone(&catalog, &checks).await?;
    if progress {
        eprintln!("the rules alone: {rules_alone_rows_per_s:.0} rows/s");
    }
    Ok(QualityReport {
        records,
        rules,
        no_rules_rows_per_s,
        rules_rows_per_s,
        overhead: 1.0 - rules_rows_per_s / no_rules_rows_per_s,
        rules_alone_rows_per_s,
        rules_share_of_pipeline: no_rules_rows_per_s / rules_alone_rows_per_s,
        failed_rows,
    })
}

/// Rows per second of the ten rules alone: the committed rows, read back
/// (not timed), then checked batch by batch (timed), as a pipeline checks them.
async fn rules_alone(catalog: &Catalog, checks: &strata_quality::Checks) -> anyhow::Result<f64> {
    let table: strata_catalog::TableName = "bench.dwd_orders_checked_1".parse()?;
    let rows = catalog
        .query("SELECT order_id, user_id, city, status, amount, order_time FROM bench.dwd_orders_checked_1")
        .await?
        .batches;
    let schema = catalog.get(&table).await?.def.schema;
    let all = arrow::compute::concat_batches(&rows[0].schema(), &rows)?;
    let all = strata_pipelines::batch::conform(&all, &schema)?;
    let mut evaluator = strata_quality::Evaluator::open(strata_quality::EvaluatorSpec {
        table: table.clone(),
        pipeline: "bench".to_string(),
        scope: strata_quality::Scope::Target,
        schema,
        rules: checks.of(&table),
        target_location: None,
        upserted: false,
        results_location: None,
        context: None,
    })
    .await?;
    let started = std::time::Instant::now();
    let mut offset = 0;
    while offset < all.num_rows() {
        let length = 20_000.min(all.num_rows() - offset);
        evaluator.check_rows(&all.slice(offset, length)).await?;
        offset += length;
    }
    Ok(all.num_rows() as f64 / started.elapsed().as_secs_f64())
}
