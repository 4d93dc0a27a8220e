//! `strata bench freshness`: from a record's Kafka timestamp to a query that
//! sees it. Records stream at a steady rate into a Kafka → Delta pipeline
//! (with the default one-second commit interval); a reader queries the
//! table every few milliseconds, through the live view and, for comparison,
//! the committed Delta table alone, and notes when each record first appears.
//!
//! ```text
//!   producer (Kafka timestamp t0) ──▶ Kafka ──▶ pipeline ──┬─▶ live view ──▶ query sees it at t1   freshness = t1 − t0
//!                                                          └─▶ Delta commit ──▶ query sees it at t2   (committed only)
//! ```

use std::collections::HashMap;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use arrow::array::AsArray;
use arrow::datatypes::Int64Type;
use rdkafka::ClientConfig;
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{FutureProducer, FutureRecord};
use serde::Serialize;
use strata_catalog::{Catalog, Principal, Project, RegisterMode};
use strata_pipelines::runner::now_ms;

use crate::query::{QueryEngine, QueryOptions};
use crate::run::{Registry, RunOptions, run_project};

const CATALOG: &str = "
CREATE TABLE bench.ods_ticks (id BIGINT, sent_ms BIGINT)
WITH ('connector' = 'kafka', 'topic' = 'ticks', 'format' = 'json',
      'scan.startup.mode' = 'earliest-offset', 'connection' = 'events');
CREATE TABLE bench.dwd_ticks (id BIGINT, sent_ms BIGINT) WITH ('connector' = 'delta');
";

/// What `strata bench freshness` measured, in milliseconds.
#[derive(Debug, Serialize)]
pub struct FreshnessReport {
    pub records: usize,
    pub rate_per_s: u64,
    pub poll_ms: u64,
    pub commit_interval_ms: u64,
    pub queries: usize,
    pub live_p50_ms: i64,
    pub live_p95_ms: i64,
    pub live_p99_ms: i64,
    pub live_max_ms: i64,
    pub committed_p50_ms: i64,
    pub committed_p99_ms: i64,
}

/// Every id of the table (at or above `from`) and when it was sent.
async fn sent_times(
    engine: &QueryEngine,
    live: bool,
    from: i64,
) -> anyhow::Result<Vec<(i64, i64)>> {
    let sql = format!("SELECT id, sent_ms FROM bench.dwd_ticks WHERE id >= {from}");
    let batches = if live {
        engine
            .run(&sql, &Principal::admin(), QueryOptions::default())
            .await?
            .batches
    } else {
        engine.catalog().query(&sql).await?.batches
    };
    Ok(batches
        .iter()
        .flat_map(|b| {
            let ids = b.column(0).as_primitive::<Int64Type>().clone();
            let sent = b.column(1).as_primitive::<Int64Type>().clone();
            (0..b.num_rows()).map(move |i| (ids.value(i), sent.value(i)))
        })
        .collect())
}

/// First-seen latencies of one way of reading, by id.
#[derive(Default)]
struct Seen {
    latency: HashMap<i64, i64>,
    /// Every id below this has been seen.
    below: i64,
}

impl Seen {
    fn note(&mut self, rows: Vec<(i64, i64)>, now: i64) {
        for (id, sent) in rows {
            self.latency.entry(id).or_insert(now - sent);
        }
        while self.latency.contains_key(&self.below) {
            self.below += 1;
        }
    }

    fn percentile(&self, p: f64) -> i64 {
        let mut values: Vec<i64> = self.latency.values().copied().collect();
        values.sort_unstable();
        if values.is_empty() {
            return 0;
        }
        let rank = ((p * values.len() as f64).ceil() as usize).clamp(1, values.len());
        values[rank - 1]
    }
}

pub async fn freshness(
    records: usize,
    rate_per_s: u64,
    poll_ms: u64,
    progress: bool,
) -> anyhow::Result<FreshnessReport> {
    if rate_per_s == 0 || records == 0 {
        bail!("--records and --rate must be above 0");
    }
    let cluster = MockCluster::new(1).context("starting the Kafka mock cluster")?;
    cluster.create_topic("ticks", 4, 1)?;
    let bootstrap = cluster.bootstrap_servers();
    let dir = tempfile::tempdir()?;
    std::fs::write(
        dir.path().join("strata.toml"),
        format!("[connections.events]\nkind = \"kafka\"\nbootstrap-servers = \"{bootstrap}\"\n"),
    )?;
    let pipelines = dir.path().join("pipelines/dwd");
    std::fs::create_dir_all(&pipelines)?;
    std::fs::write(
        pipelines.join("dwd_ticks.sql"),
        "INSERT INTO bench.dwd_ticks SELECT id, sent_ms FROM bench.ods_ticks",
    )?;
    let catalog = Catalog::open(Project::load(dir.path())?).await?;
    catalog
        .register_sql("bench.sql", CATALOG, RegisterMode::Create)
        .await?;
    let commit_interval_ms = catalog.project().config.engine.commit_interval_ms;
    let registry = Registry::default();
    let engine = QueryEngine::new(catalog.clone(), registry.clone());
    let streaming = Duration::from_millis(records as u64 * 1_000 / rate_per_s);
    let run = tokio::spawn({
        let (catalog, registry) = (catalog.clone(), registry.clone());
        let options = RunOptions {
            duration: Some(streaming + Duration::from_secs(6)),
            until_idle: false,
            progress: false,
        };
        async move { run_project(&catalog, options, &registry).await }
    });
    let started = Instant::now();
    while registry
        .stats("bench.dwd_ticks")
        .is_none_or(|stats| stats.live.snapshot().is_none())
    {
        if run.is_finished() || started.elapsed() > Duration::from_secs(60) {
            bail!("the pipeline did not start");
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .set("linger.ms", "0")
        .create()?;
    let produce = tokio::spawn(async move {
        let start = Instant::now();
        for id in 0..records {
            let due = start + Duration::from_micros(id as u64 * 1_000_000 / rate_per_s);
            tokio::time::sleep_until(due.into()).await;
            let sent = now_ms();
            let payload = format!(r#"{{"id": {id}, "sent_ms": {sent}}}"#);
            let record = FutureRecord::<(), str>::to("ticks")
                .partition((id % 4) as i32)
                .payload(&payload)
                .timestamp(sent);
            // Not awaited: delivery reports would pace the producer.
            drop(producer.send_result(record).map_err(|(err, _)| err)?);
        }
        anyhow::Ok(())
    });
    let (mut live, mut committed) = (Seen::default(), Seen::default());
    let mut queries = 0;
    let deadline = Instant::now() + streaming + Duration::from_secs(5);
    while (live.below < records as i64 || committed.below < records as i64)
        && Instant::now() < deadline
    {
        let rows = sent_times(&engine, true, live.below).await?;
        live.note(rows, now_ms());
        let rows = sent_times(&engine, false, committed.below).await?;
        committed.note(rows, now_ms());
        queries += 2;
        if progress && queries % 200 == 0 {
            eprintln!(
                "  {} of {records} seen live, {} committed",
                live.latency.len(),
                committed.latency.len()
            );
        }
        tokio::time::sleep(Duration::from_millis(poll_ms)).await;
    }
    produce.await??;
    // The run stops on its own, committing what it read.
    run.await??;
    if live.latency.len() < records {
        bail!(
            "only {} of {records} records were seen within the run; lower --rate",
            live.latency.len()
        );
    }
    Ok(FreshnessReport {
        records,
        rate_per_s,
        poll_ms,
        commit_interval_ms,
        queries,
        live_p50_ms: live.percentile(0.50),
        live_p95_ms: live.percentile(0.95),
        live_p99_ms: live.percentile(0.99),
        live_max_ms: live.percentile(1.0),
        committed_p50_ms: committed.percentile(0.50),
        committed_p99_ms: committed.percentile(0.99),
    })
}
