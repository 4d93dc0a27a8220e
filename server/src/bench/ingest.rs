//! `strata bench ingest`: Kafka → ODS Delta committed rows/s, against the raw
//! floor (consume + JSON → Arrow decode into nothing), measured in one run on
//! the same machine, through librdkafka's mock cluster.
//!
//! ```text
//!   produce N records (not timed)
//!   floor:    KafkaSource ──▶ JsonDecoder ──▶ (dropped)                 rows/s
//!   pipeline: KafkaSource ──▶ JsonDecoder ──▶ SELECT ──▶ Delta commits   rows/s    ratio = pipeline / floor
//! ```

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use rdkafka::mocking::MockCluster;
use serde::Serialize;
use strata_catalog::connectors::kafka::KafkaTarget;
use strata_catalog::{Catalog, Project, RegisterMode, StartupMode};
use strata_pipelines::connector::kafka::source::{KafkaSource, SourceEvent};
use strata_pipelines::decode::json::JsonDecoder;
use strata_pipelines::load_project;

use super::{PARTITIONS, produce, run_until_caught_up};

/// The pipeline's commit interval in the benchmark.
const COMMIT_INTERVAL_MS: u64 = 250;

#[derive(Debug, Serialize)]
pub struct IngestReport {
    pub records: usize,
    pub bytes: usize,
    pub rows_per_s: f64,
    pub floor_rows_per_s: f64,
    pub ratio: f64,
    pub commits: u64,
    pub pipeline_seconds: f64,
    pub floor_seconds: f64,
}

/// Runs the ingest benchmark on `records` generated orders.
pub async fn ingest(records: usize, progress: bool) -> anyhow::Result<IngestReport> {
    let cluster = MockCluster::new(1).context("starting the Kafka mock cluster")?;
    cluster
        .create_topic("orders", PARTITIONS, 1)
        .context("creating the topic")?;
    let bootstrap = cluster.bootstrap_servers();
    let bytes = produce(&bootstrap, "orders", records, order)?;
    if progress {
        eprintln!("produced {records} records ({} MiB)", bytes / (1 << 20));
    }

    let dir = tempfile::tempdir()?;
    std::fs::write(
        dir.path().join("strata.toml"),
        // Commits every 250 ms, so that a run of a second or two has several and shows
        // the steady state, where one interval's write overlaps the next one's decoding.
        format!(
            "[engine]\ncommit-interval-ms = {COMMIT_INTERVAL_MS}\n[connections.events]\nkind = \"kafka\"\nbootstrap-servers = \"{bootstrap}\"\n"
        ),
    )?;
    std::fs::create_dir_all(dir.path().join("pipelines/ods"))?;
    std::fs::write(
        dir.path().join("pipelines/ods/ods_orders_lake.sql"),
        "INSERT INTO bench.ods_orders_lake SELECT order_id, user_id, product_id, amount, city, order_time FROM bench.ods_orders",
    )?;
    let catalog = Catalog::open(Project::load(dir.path())?).await?;
    catalog
        .register_sql(
            "bench.sql",
            "CREATE TABLE bench.ods_orders (order_id BIGINT, user_id BIGINT, product_id BIGINT,
               amount DECIMAL(10, 2), city STRING, order_time TIMESTAMP(3))
             WITH ('connector' = 'kafka', 'topic' = 'orders', 'format' = 'json',
                   'scan.startup.mode' = 'earliest-offset', 'connection' = 'events');
             CREATE TABLE bench.ods_orders_lake (order_id BIGINT, user_id BIGINT, product_id BIGINT,
               amount DECIMAL(10, 2), city STRING, order_time TIMESTAMP(3))
             WITH ('connector' = 'delta');",
            RegisterMode::Create,
        )
        .await?;
    let source = catalog.get(&"bench.ods_orders".parse()?).await?.def;

    let retained = retained_records(&bootstrap)?;
    if retained != records {
        bail!(
            "the Kafka mock cluster kept {retained} of the {records} records produced (it bounds its logs); run with --records {retained} or fewer"
        );
    }
    let (floor_seconds, floor_rows) = floor(&bootstrap, source.schema.clone(), records).await?;
    if progress {
        eprintln!("floor: {floor_rows} rows decoded in {floor_seconds:.2} s");
    }

    let pipeline = load_project(&catalog).await?.remove(0);
    let (pipeline_seconds, stats) =
        run_until_caught_up(&catalog, pipeline, Default::default()).await?;
    let committed = stats
        .rows_committed
        .load(std::sync::atomic::Ordering::Relaxed) as usize;
    if committed != records || floor_rows != records {
        bail!(
            "expected {records} rows, the floor decoded {floor_rows} and the pipeline committed {committed}"
        );
    }
    if progress {
        eprintln!("pipeline: {committed} rows committed to Delta in {pipeline_seconds:.2} s");
    }
    let rows_per_s = records as f64 / pipeline_seconds;
    let floor_rows_per_s = records as f64 / floor_seconds;
    Ok(IngestReport {
        records,
        bytes,
        rows_per_s,
        floor_rows_per_s,
        ratio: rows_per_s / floor_rows_per_s,
        commits: stats.commits.load(std::sync::atomic::Ordering::Relaxed),
        pipeline_seconds,
        floor_seconds,
    })
}

/// How many records the benchmark's topic holds from its low to its high watermarks.
pub(super) fn retained_records(bootstrap: &str) -> anyhow::Result<usize> {
    retained_records_of(bootstrap, "orders")
}

/// How many records `topic` holds from its low to its high watermarks.
pub(super) fn retained_records_of(bootstrap: &str, topic_name: &str) -> anyhow::Result<usize> {
    let target = topic(bootstrap, topic_name);
    let partitions = KafkaSource::partitions(&target)?;
    let low = KafkaSource::start_offsets(
        &target,
        "strata-bench",
        &StartupMode::EarliestOffset,
        &partitions,
    )?;
    let high = KafkaSource::start_offsets(
        &target,
        "strata-bench",
        &StartupMode::LatestOffset,
        &partitions,
    )?;
    Ok(partitions
        .iter()
        .map(|p| (high[p] - low[p]).max(0) as usize)
        .sum())
}

fn topic(bootstrap: &str, topic: &str) -> KafkaTarget {
    KafkaTarget {
        bootstrap_servers: bootstrap.to_string(),
        properties: BTreeMap::new(),
        topic: topic.to_string(),
    }
}

/// Consume and decode everything, keeping nothing.
async fn floor(
    bootstrap: &str,
    schema: arrow::datatypes::SchemaRef,
    records: usize,
) -> anyhow::Result<(f64, usize)> {
    floor_of(bootstrap, "orders", schema, records).await
}

/// Consume and decode `records` records of `topic`, keeping nothing: seconds and rows.
pub(super) async fn floor_of(
    bootstrap: &str,
    topic_name: &str,
    schema: arrow::datatypes::SchemaRef,
    records: usize,
) -> anyhow::Result<(f64, usize)> {
    let target = topic(bootstrap, topic_name);
    let decoder = JsonDecoder::new(schema);
    let started = Instant::now();
    let partitions = KafkaSource::partitions(&target)?;
    let resume: BTreeMap<i32, i64> = KafkaSource::start_offsets(
        &target,
        "strata-bench-floor",
        &StartupMode::EarliestOffset,
        &partitions,
    )?
    .into_iter()
    .map(|(partition, start)| (partition, start - 1))
    .collect();
    let mut source = KafkaSource::start(target, "strata-bench-floor", &resume, 20_000)?;
    let mut rows = 0;
    while rows < records {
        match tokio::time::timeout(Duration::from_secs(60), source.events.recv()).await {
            Ok(Some(SourceEvent::Records(batch))) => {
                let decoded = decoder.decode(&batch);
                rows += decoded.batch.num_rows() + decoded.rejected.len();
            }
            Ok(Some(SourceEvent::CaughtUp)) => {}
            Ok(Some(SourceEvent::Failed(cause))) => bail!("the floor's source failed: {cause}"),
            Ok(None) | Err(_) => {
                bail!("the floor's source stopped after {rows} of {records} records")
            }
        }
    }
    Ok((started.elapsed().as_secs_f64(), rows))
}

/// A realistic order event.
fn order(id: usize) -> String {
    const CITIES: [&str; 6] = [
        "Beijing", "Shanghai", "Hangzhou", "Shenzhen", "Chengdu", "Wuhan",
    ];
    format!(
        r#"{{"order_id": {id}, "user_id": {}, "product_id": {}, "amount": "{}.{:02}", "city": "{}", "order_time": "2024-05-01T10:{:02}:{:02}.{:03}"}}"#,
        id * 7919 % 100_000,
        id % 5_000,
        id % 900 + 1,
        id % 100,
        CITIES[id % CITIES.len()],
        id / 60_000 % 60,
        id / 1_000 % 60,
        id % 1_000,
    )
}
