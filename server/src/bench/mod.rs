//! `strata bench …`: measurements on this machine, through librdkafka's mock
//! cluster (and the local MariaDB for lookups). They are benchmarks, not tests:
//! the figures go in `docs/BENCHMARKS.md`.
//!
//! ```text
//!   bench ingest:  Kafka ──▶ ODS Delta            against consume + decode alone      (ratio)
//!   bench lookup:  Kafka ──▶ lookup join ──▶ Delta against the same pipeline without it (ratio)
//!   bench lineage: a generated warehouse ──▶ graph build, then queries around a node (ms)
//!   bench quality: Kafka ──▶ 10 row rules ──▶ Delta against the same pipeline without them (overhead)
//!   bench freshness: Kafka timestamp ──▶ a query that sees the row, live view and committed (ms)
//!   bench state:   a keyed operator's commits over 1 M, then 10 M keys; a restore of them (ms, MB)
//!   bench nexmark: Nexmark's Flink SQL queries, generated or through Kafka ──▶ blackhole (events/s per core)
//! ```

mod freshness;
mod ingest;
mod lineage;
mod lookup;
pub mod nexmark;
mod quality;
mod state;

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use anyhow::Context;
use rdkafka::ClientConfig;
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use strata_catalog::Catalog;
use strata_pipelines::{PipelineRun, Quality, RunMode, TableStats, ValidPipeline};

pub use freshness::{FreshnessReport, freshness};
pub use ingest::{IngestReport, ingest};
pub use lineage::{LineageReport, lineage};
pub use lookup::{LookupReport, lookup};
pub use quality::{QualityReport, quality};
pub use state::{Phase as StatePhase, StateOptions, StateReport, state};

/// The mock cluster keeps at most 100,000 records or 5 MiB per partition, so
/// 16 partitions hold about 600,000 small records: enough for a run of
/// several seconds, where start-up no longer dominates.
const PARTITIONS: i32 = 16;

/// Produces `records` records (`payload(i)`) to `topic`, spread over the
/// partitions; returns their bytes. Not timed.
fn produce(
    bootstrap: &str,
    topic: &str,
    records: usize,
    payload: impl Fn(usize) -> String,
) -> anyhow::Result<usize> {
    let producer: ThreadedProducer<DefaultProducerContext> = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("queue.buffering.max.messages", "1000000")
        .set("linger.ms", "5")
        .create()?;
    let mut bytes = 0;
    for id in 0..records {
        let payload = payload(id);
        bytes += payload.len();
        let partition = (id % PARTITIONS as usize) as i32;
        loop {
            let record = BaseRecord::<(), str>::to(topic)
                .partition(partition)
                .payload(&payload);
            match producer.send(record) {
                Ok(()) => break,
                Err((
                    rdkafka::error::KafkaError::MessageProduction(
                        rdkafka::types::RDKafkaErrorCode::QueueFull,
                    ),
                    _,
                )) => {
                    std::thread::sleep(Duration::from_millis(5));
                }
                Err((err, _)) => return Err(err).context("producing benchmark records"),
            }
        }
    }
    producer.flush(Duration::from_secs(60))?;
    Ok(bytes)
}

/// Runs a pipeline until it has committed everything its source holds; the
/// seconds from its start to its last commit, and its counters. (Noticing
/// that the topic has no more records, and stopping, come after and are not
/// timed, as the floor's stop is not.)
async fn run_until_caught_up(
    catalog: &Catalog,
    pipeline: ValidPipeline,
    quality: Quality,
) -> anyhow::Result<(f64, Arc<TableStats>)> {
    let stats = Arc::new(TableStats::new());
    let run = PipelineRun {
        catalog: catalog.clone(),
        pipeline,
        stats: stats.clone(),
        mode: RunMode::UntilCaughtUp,
        quality,
        replay: None,
    };
    let (_stop, stop_rx) = tokio::sync::watch::channel(false);
    let started_ms = strata_pipelines::runner::now_ms();
    run.run(stop_rx).await?;
    let last_commit_ms = stats.last_commit_ms.load(Ordering::Relaxed);
    Ok(((last_commit_ms - started_ms) as f64 / 1_000.0, stats))
}

/// Resets the process's peak resident memory, so that the peak is the run's.
fn reset_peak_rss() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

/// CPU time of the whole process so far (every thread), from /proc/self/stat.
pub(crate) fn cpu_seconds() -> anyhow::Result<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").context("reading /proc/self/stat")?;
    // Fields after the command name (which is in parentheses): utime and stime are the 12th and 13th.
    let after = stat
        .rsplit_once(") ")
        .map(|(_, rest)| rest)
        .context("parsing /proc/self/stat")?;
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks: f64 = fields[11].parse::<f64>()? + fields[12].parse::<f64>()?;
    // The kernel's USER_HZ, 100 on Linux.
    Ok(ticks / 100.0)
}

/// The process's peak resident memory since the last reset, in MB.
fn peak_rss_mb() -> anyhow::Result<f64> {
    status_mb("VmHWM:")
}

/// The process's resident memory now, in MB.
fn rss_mb() -> anyhow::Result<f64> {
    status_mb("VmRSS:")
}

fn status_mb(field: &str) -> anyhow::Result<f64> {
    let status =
        std::fs::read_to_string("/proc/self/status").context("reading /proc/self/status")?;
    let kb: f64 = status
        .lines()
        .find_map(|line| line.strip_prefix(field))
        .and_then(|rest| rest.split_whitespace().next())
        .with_context(|| format!("no {field} in /proc/self/status"))?
        .parse()?;
    Ok(kb / 1024.0)
}
