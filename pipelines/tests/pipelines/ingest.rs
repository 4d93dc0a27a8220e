//! Kafka → Delta through a pipeline, against librdkafka's mock cluster and
//! Delta on disk: stateless SQL, quarantine with coordinates, and replays
//! that never duplicate.

use std::sync::Arc;
use std::time::Duration;

use arrow::util::pretty::pretty_format_batches;
use rdkafka::ClientConfig;
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{FutureProducer, FutureRecord};
use strata_catalog::{Catalog, Project, RegisterMode};
use strata_pipelines::{PipelineRun, RunMode, TableStats, load_project};

const CATALOG: &str = "
CREATE TABLE shop.ods_orders (
  order_id BIGINT NOT NULL, amount DECIMAL(10, 2), city STRING, order_time TIMESTAMP(3),
  WATERMARK FOR order_time AS order_time - INTERVAL '5' SECOND
) WITH ('connector' = 'kafka', 'topic' = 'orders', 'format' = 'json',
        'scan.startup.mode' = 'earliest-offset', 'connection' = 'events');
CREATE TABLE shop.dwd_orders (
  order_id BIGINT NOT NULL, amount DECIMAL(10, 2), city STRING, big BOOLEAN, order_time TIMESTAMP(3)
) WITH ('connector' = 'delta');
";

const PIPELINE: &str = "INSERT INTO shop.dwd_orders
SELECT order_id, amount, UPPER(city), CASE WHEN amount >= 100 THEN true ELSE false END, order_time
FROM shop.ods_orders
WHERE order_id % 10 <> 0";

pub(crate) async fn produce(bootstrap: &str, records: &[(i32, String)]) {
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()
        .unwrap();
    for (partition, payload) in records {
        producer
            .send(
                FutureRecord::<(), str>::to("orders")
                    .partition(*partition)
                    .payload(payload),
                Duration::from_secs(5),
            )
            .await
            .unwrap();
    }
}

fn orders(ids: std::ops::RangeInclusive<i64>) -> Vec<(i32, String)> {
    ids.map(|id| {
        (
            (id % 3) as i32,
            format!(
                r#"{{"order_id": {id}, "amount": "{}.50", "city": "beijing", "order_time": "2024-05-01T10:00:{:02}"}}"#,
                id * 7 % 200,
                id % 60
            ),
        )
    })
    .collect()
}

async fn setup(bootstrap: &str) -> (tempfile::TempDir, Catalog) {
    kafka_project(
        bootstrap,
        "commit-interval-ms = 100\nbatch-records = 64\ncompact-every-commits = 1",
        ("dwd_orders", PIPELINE),
        CATALOG,
    )
    .await
}

/// A project in a temporary folder: `engine` settings, a Kafka connection
/// `events` to `bootstrap`, the DWD pipeline `(name, sql)`, and the tables of `catalog_sql`.
pub(crate) async fn kafka_project(
    bootstrap: &str,
    engine: &str,
    (name, sql): (&str, &str),
    catalog_sql: &str,
) -> (tempfile::TempDir, Catalog) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("strata.toml"),
        format!(
            "[engine]\n{engine}\n[connections.events]\nkind = \"kafka\"\nbootstrap-servers = \"{bootstrap}\"\n"
        ),
    )
    .unwrap();
    std::fs::create_dir_all(dir.path().join("pipelines/dwd")).unwrap();
    std::fs::write(dir.path().join(format!("pipelines/dwd/{name}.sql")), sql).unwrap();
    let catalog = Catalog::open(Project::load(dir.path()).unwrap())
        .await
        .unwrap();
    catalog
        .register_sql("catalog.sql", catalog_sql, RegisterMode::Create)
        .await
        .unwrap();
    (dir, catalog)
}

/// Runs the project's one pipeline until it has read and committed everything.
async fn catch_up(catalog: &Catalog) -> Arc<TableStats> {
    let pipeline = load_project(catalog).await.unwrap().remove(0);
    run_to_end(catalog, pipeline).await
}

/// Runs one pipeline until it has read and committed everything.
pub(crate) async fn run_to_end(
    catalog: &Catalog,
    pipeline: strata_pipelines::ValidPipeline,
) -> Arc<TableStats> {
    try_run_to_end(catalog, pipeline).await.unwrap()
}

/// Runs one pipeline until it has read and committed everything, or it fails.
pub(crate) async fn try_run_to_end(
    catalog: &Catalog,
    pipeline: strata_pipelines::ValidPipeline,
) -> Result<Arc<TableStats>, strata_pipelines::PipelineError> {
    let stats = Arc::new(TableStats::new());
    let (_stop, stop_rx) = tokio::sync::watch::channel(false);
    let run = PipelineRun {
        catalog: catalog.clone(),
        pipeline,
        stats: stats.clone(),
        mode: RunMode::UntilCaughtUp,
        quality: Default::default(),
        replay: None,
    };
    tokio::time::timeout(Duration::from_secs(60), run.run(stop_rx))
        .await
        .expect("the pipeline caught up within a minute")?;
    Ok(stats)
}

async fn scalar(catalog: &Catalog, sql: &str) -> String {
    let result = catalog.query(sql).await.unwrap();
    let text = pretty_format_batches(&result.batches).unwrap().to_string();
    text.lines()
        .nth(3)
        .unwrap_or_default()
        .trim_matches(|c| c == '|' || c == ' ')
        .to_string()
}

#[tokio::test]
async fn kafka_rows_reach_delta_once_and_bad_records_reach_quarantine() {
    let cluster = MockCluster::new(1).unwrap();
    cluster.create_topic("orders", 3, 1).unwrap();
    let bootstrap = cluster.bootstrap_servers();
    let (_dir, catalog) = setup(&bootstrap).await;

    let mut records = orders(1..=300);
    records.insert(17, (2, "{not json".to_string()));
    records.insert(100, (0, r#"{"order_id": "seven"}"#.to_string()));
    records.insert(200, (1, r#"{"amount": "1.00"}"#.to_string()));
    produce(&bootstrap, &records).await;

    let stats = catch_up(&catalog).await;
    assert_eq!(
        stats.records_in.load(std::sync::atomic::Ordering::Relaxed),
        303
    );
    assert_eq!(
        stats
            .quarantined_rows
            .load(std::sync::atomic::Ordering::Relaxed),
        3
    );
    // Partitions 0, 1 and 2 reach 10:00:57, :58 and :59; the slowest, less 5 s, is the watermark.
    assert_eq!(stats.watermark(), Some(1_714_557_652_000));
    assert_eq!(
        scalar(&catalog, "SELECT count(*) FROM shop.dwd_orders").await,
        "270"
    );
    assert_eq!(
        scalar(
            &catalog,
            "SELECT count(*) FROM shop.dwd_orders WHERE city <> 'BEIJING' OR order_id % 10 = 0"
        )
        .await,
        "0"
    );
    assert_eq!(
        scalar(
            &catalog,
            "SELECT count(*) FROM shop.dwd_orders WHERE big <> (amount >= 100)"
        )
        .await,
        "0"
    );
    let quarantine = catalog
        .query("SELECT partition, reason, CAST(payload AS STRING) AS payload FROM shop.dwd_orders__quarantine ORDER BY payload")
        .await
        .unwrap();
    let text = pretty_format_batches(&quarantine.batches)
        .unwrap()
        .to_string();
    assert!(
        text.contains("{not json") && text.contains(r#"{"order_id": "seven"}"#),
        "{text}"
    );
    let lines: Vec<&str> = text.lines().filter(|l| l.contains('{')).collect();
    assert_eq!(lines.len(), 3, "{text}");

    // A restart reads nothing twice.
    let again = catch_up(&catalog).await;
    assert_eq!(
        again.records_in.load(std::sync::atomic::Ordering::Relaxed),
        0
    );
    assert_eq!(
        scalar(&catalog, "SELECT count(*) FROM shop.dwd_orders").await,
        "270"
    );
    assert_eq!(
        scalar(&catalog, "SELECT count(*) FROM shop.dwd_orders__quarantine").await,
        "3"
    );

    // New records are picked up where it stopped.
    produce(&bootstrap, &orders(301..=350)).await;
    catch_up(&catalog).await;
    assert_eq!(
        scalar(&catalog, "SELECT count(*) FROM shop.dwd_orders").await,
        "315"
    );
    assert_eq!(
        scalar(
            &catalog,
            "SELECT count(*) - count(DISTINCT order_id) FROM shop.dwd_orders"
        )
        .await,
        "0"
    );
}

/// Runs every pipeline of the project to the end, in dependency order.
async fn catch_up_all(catalog: &Catalog) {
    for pipeline in load_project(catalog).await.unwrap() {
        run_to_end(catalog, pipeline).await;
    }
}

#[tokio::test]
async fn a_delta_table_streams_into_the_next_layer_once_even_after_compaction() {
    let cluster = MockCluster::new(1).unwrap();
    cluster.create_topic("orders", 3, 1).unwrap();
    let bootstrap = cluster.bootstrap_servers();
    let (dir, catalog) = setup(&bootstrap).await;
    catalog
        .register_sql(
            "dws.sql",
            "CREATE TABLE shop.dws_big_orders (order_id BIGINT NOT NULL, amount DECIMAL(10, 2), order_time TIMESTAMP(3))
             WITH ('connector' = 'delta');",
            RegisterMode::Create,
        )
        .await
        .unwrap();
    std::fs::create_dir_all(dir.path().join("pipelines/dws")).unwrap();
    std::fs::write(
        dir.path().join("pipelines/dws/dws_big_orders.sql"),
        "INSERT INTO shop.dws_big_orders SELECT order_id, amount, order_time FROM shop.dwd_orders WHERE big",
    )
    .unwrap();

    produce(&bootstrap, &orders(1..=200)).await;
    catch_up_all(&catalog).await;
    let big = "SELECT count(*) FROM shop.dwd_orders WHERE big";
    let expected = scalar(&catalog, big).await;
    assert_ne!(expected, "0");
    assert_eq!(
        scalar(&catalog, "SELECT count(*) FROM shop.dws_big_orders").await,
        expected
    );
    // The pipeline compacts its target as it goes (compact-every-commits = 1 here:
    // after each commit; a second run's commit leaves two files to compact).
    produce(&bootstrap, &orders(201..=230)).await;
    catch_up_all(&catalog).await;
    let log = std::fs::read_dir(dir.path().join("lake/shop/dwd_orders/_delta_log")).unwrap();
    let compactions = log
        .flatten()
        .filter(|e| e.path().extension().is_some_and(|x| x == "json"))
        .filter(|e| {
            std::fs::read_to_string(e.path())
                .unwrap()
                .contains("\"operation\":\"OPTIMIZE\"")
        })
        .count();
    assert!(compactions >= 1, "the pipeline never compacted its target");

    // Compaction rewrites the upstream files without changing its rows: nothing is read again.
    catalog
        .optimize(&"shop.dwd_orders".parse().unwrap())
        .await
        .unwrap();
    produce(&bootstrap, &orders(231..=260)).await;
    catch_up_all(&catalog).await;
    let expected = scalar(&catalog, big).await;
    assert_eq!(
        scalar(&catalog, "SELECT count(*) FROM shop.dws_big_orders").await,
        expected
    );
    assert_eq!(
        scalar(
            &catalog,
            "SELECT count(*) - count(DISTINCT order_id) FROM shop.dws_big_orders"
        )
        .await,
        "0"
    );
    assert_eq!(
        scalar(&catalog, "SELECT max(order_time) FROM shop.dws_big_orders")
            .await
            .len(),
        19,
        "timestamps survive the trip through Delta"
    );
}

#[tokio::test]
async fn latest_offset_starts_are_recorded_so_a_restart_misses_nothing() {
    let cluster = MockCluster::new(1).unwrap();
    cluster.create_topic("orders", 3, 1).unwrap();
    let bootstrap = cluster.bootstrap_servers();
    produce(&bootstrap, &orders(1..=30)).await;
    let (dir, catalog) = setup(&bootstrap).await;
    let latest = CATALOG
        .replace("earliest-offset", "latest-offset")
        .replace("shop.dwd_orders", "shop.dwd_later");
    let latest = latest.replace("shop.ods_orders", "shop.ods_later");
    catalog
        .register_sql("later.sql", &latest, RegisterMode::Create)
        .await
        .unwrap();
    std::fs::remove_file(dir.path().join("pipelines/dwd/dwd_orders.sql")).unwrap();
    std::fs::write(
        dir.path().join("pipelines/dwd/dwd_later.sql"),
        PIPELINE
            .replace("shop.dwd_orders", "shop.dwd_later")
            .replace("shop.ods_orders", "shop.ods_later"),
    )
    .unwrap();

    // The first run starts at the end: the 30 earlier orders are not read.
    catch_up_all(&catalog).await;
    assert_eq!(
        scalar(&catalog, "SELECT count(*) FROM shop.dwd_later").await,
        "0"
    );
    // Orders produced while it is stopped are read by the next run, not skipped.
    produce(&bootstrap, &orders(31..=50)).await;
    catch_up_all(&catalog).await;
    assert_eq!(
        scalar(&catalog, "SELECT count(*) FROM shop.dwd_later").await,
        "18"
    );
}

/// Writes `sql` as the project's pipeline and returns why its start-up check refuses it.
pub(crate) async fn refusal(dir: &tempfile::TempDir, catalog: &Catalog, sql: &str) -> String {
    std::fs::write(dir.path().join("pipelines/dwd/dwd_orders.sql"), sql).unwrap();
    check(catalog).await.unwrap_err().to_string()
}

/// Checks the project's one pipeline as a run would, without reading anything.
pub(crate) async fn check(catalog: &Catalog) -> strata_pipelines::Result<()> {
    let run = PipelineRun {
        catalog: catalog.clone(),
        pipeline: load_project(catalog).await?.remove(0),
        stats: Arc::new(TableStats::new()),
        mode: RunMode::UntilCaughtUp,
        quality: Default::default(),
        replay: None,
    };
    run.check().await
}

#[tokio::test]
async fn wall_clock_functions_are_refused_before_anything_runs() {
    let cluster = MockCluster::new(1).unwrap();
    cluster.create_topic("orders", 1, 1).unwrap();
    let (dir, catalog) = setup(&cluster.bootstrap_servers()).await;
    let err = refusal(
        &dir,
        &catalog,
        "INSERT INTO shop.dwd_orders\nSELECT order_id, amount, city, true, order_time FROM shop.ods_orders\nWHERE order_time < NOW()",
    )
    .await;
    assert!(
        err.contains("dwd_orders.sql:3:20: NOW() would be evaluated once"),
        "{err}"
    );
    assert!(err.contains("PROCTIME()"), "{err}");
}

#[tokio::test]
async fn window_functions_other_than_lag_by_one_are_refused_before_anything_runs() {
    let cluster = MockCluster::new(1).unwrap();
    cluster.create_topic("orders", 1, 1).unwrap();
    let (dir, catalog) = setup(&cluster.bootstrap_servers()).await;
    for (select, expected) in [
        (
            "LAG(city, 2) OVER (PARTITION BY order_id ORDER BY order_time)",
            "LAG with the offset 2",
        ),
        (
            "FIRST_VALUE(city) OVER (PARTITION BY order_id ORDER BY order_time)",
            "streams run LAG(value [, 1 [, default]])",
        ),
    ] {
        let sql = format!(
            "INSERT INTO shop.dwd_orders\nSELECT order_id, amount, {select}, true, order_time FROM shop.ods_orders"
        );
        let err = refusal(&dir, &catalog, &sql).await;
        assert!(err.contains(expected), "{err}");
        assert!(err.contains("dwd_orders.sql"), "{err}");
    }
}

#[tokio::test]
async fn a_record_the_select_fails_on_goes_to_quarantine_and_the_rest_flows() {
    let cluster = MockCluster::new(1).unwrap();
    cluster.create_topic("orders", 1, 1).unwrap();
    let bootstrap = cluster.bootstrap_servers();
    let (dir, catalog) = setup(&bootstrap).await;
    catalog
        .register_sql(
            "codes.sql",
            "CREATE TABLE shop.dwd_codes (order_id BIGINT NOT NULL, code INT) WITH ('connector' = 'delta');",
            RegisterMode::Create,
        )
        .await
        .unwrap();
    std::fs::remove_file(dir.path().join("pipelines/dwd/dwd_orders.sql")).unwrap();
    std::fs::write(
        dir.path().join("pipelines/dwd/dwd_codes.sql"),
        "INSERT INTO shop.dwd_codes SELECT order_id, CAST(city AS INT) FROM shop.ods_orders",
    )
    .unwrap();
    let records: Vec<(i32, String)> = [(1, "12"), (2, "x7"), (3, "30")]
        .iter()
        .map(|(id, city)| (0, format!(r#"{{"order_id": {id}, "city": "{city}"}}"#)))
        .collect();
    produce(&bootstrap, &records).await;
    catch_up_all(&catalog).await;
    assert_eq!(
        scalar(&catalog, "SELECT sum(code) FROM shop.dwd_codes").await,
        "42"
    );
    let reason = scalar(&catalog, "SELECT reason FROM shop.dwd_codes__quarantine").await;
    assert!(reason.contains("SELECT failed"), "{reason}");
    assert_eq!(
        scalar(
            &catalog,
            "SELECT \"offset\" FROM shop.dwd_codes__quarantine"
        )
        .await,
        "1"
    );
}
