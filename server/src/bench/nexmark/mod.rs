//! `strata bench nexmark`: the Nexmark queries, as Flink SQL, on Strata's
//! engine; events per second per core, peak memory and, for windowed queries,
//! the p99 latency from a window's end to its result, each run checked against
//! a reference computation.
//!
//! ```text
//!   --source gen:    'connector' = 'nexmark' (generated in the pipeline) ──▶ qN ──▶ blackhole
//!   --source kafka:  generator ──JSON──▶ mock cluster (not timed) ──▶ decode ──▶ qN ──▶ blackhole
//!   timed: the pipeline from its start until it has read everything (CPU time of the whole process)
//!   checked: the blackhole's rows (row by row when small) or count and digest ══ reference(events)
//! ```

mod reference;

use std::time::Instant;

use super::{cpu_seconds, peak_rss_mb, reset_peak_rss};
use anyhow::{Context, bail};
use arrow::record_batch::RecordBatch;
use rdkafka::mocking::MockCluster;
use serde::Serialize;
use strata_catalog::connectors::nexmark::Generator;
use strata_catalog::{Catalog, NexmarkStream, Project, RegisterMode, TableDef, TableKind};
use strata_pipelines::{PipelineRun, RunMode, TableStats, load_project};

pub use reference::Expected;

/// The queries Strata runs, with their published per-core anchor (Flink 1.13,
/// events/s per core) and, for windowed ones, how their windows end.
pub const QUERIES: [Query; 22] = [
    Query::new("q0", include_str!("queries/q0.sql"), 155_000, Windows::None),
    Query::new("q1", include_str!("queries/q1.sql"), 158_000, Windows::None),
    Query::new("q2", include_str!("queries/q2.sql"), 175_000, Windows::None),
    Query::new("q3", include_str!("queries/q3.sql"), 152_000, Windows::None),
    Query::new("q4", include_str!("queries/q4.sql"), 34_000, Windows::None),
    Query::new(
        "q5",
        include_str!("queries/q5.sql"),
        22_000,
        Windows::Every(2_000),
    ),
    Query::new(
        "q7",
        include_str!("queries/q7.sql"),
        12_000,
        Windows::Every(10_000),
    ),
    Query::new(
        "q8",
        include_str!("queries/q8.sql"),
        146_000,
        Windows::Every(10_000),
    ),
    Query::new("q9", include_str!("queries/q9.sql"), 14_000, Windows::None),
    Query::new(
        "q10",
        include_str!("queries/q10.sql"),
        58_000,
        Windows::None,
    ),
    Query::new(
        "q11",
        include_str!("queries/q11.sql"),
        40_000,
        Windows::Sessions,
    ),
    Query::new(
        "q12",
        include_str!("queries/q12.sql"),
        76_000,
        Windows::OnTheClock(10_000),
    ),
    Query::new(
        "q13",
        include_str!("queries/q13.sql"),
        131_000,
        Windows::None,
    ),
    Query::new(
        "q14",
        include_str!("queries/q14.sql"),
        161_000,
        Windows::None,
    ),
    Query::new(
        "q15",
        include_str!("queries/q15.sql"),
        72_000,
        Windows::None,
    ),
    Query::new(
        "q16",
        include_str!("queries/q16.sql"),
        19_000,
        Windows::None,
    ),
    Query::new(
        "q17",
        include_str!("queries/q17.sql"),
        117_000,
        Windows::None,
    ),
    Query::new(
        "q18",
        include_str!("queries/q18.sql"),
        54_000,
        Windows::None,
    ),
    Query::new(
        "q19",
        include_str!("queries/q19.sql"),
        44_000,
        Windows::None,
    ),
    Query::new(
        "q20",
        include_str!("queries/q20.sql"),
        19_000,
        Windows::None,
    ),
    Query::new(
        "q21",
        include_str!("queries/q21.sql"),
        98_000,
        Windows::None,
    ),
    Query::new(
        "q22",
        include_str!("queries/q22.sql"),
        130_000,
        Windows::None,
    ),
];

/// A Nexmark query as Strata runs it.
#[derive(Debug, Clone, Copy)]
pub struct Query {
    pub name: &'static str,
    /// The sink's DDL, then the INSERT.
    pub text: &'static str,
    pub flink_per_core: u64,
    /// Its windows, for the latency of each window's results.
    pub windows: Windows,
}

/// How a query's windows end, to time each one's results.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Windows {
    None,
    /// Every slide (ms), as TUMBLE and HOP windows do.
    Every(i64),
    /// When each key's session does (the reference lists them).
    Sessions,
    /// Every slide (ms) of the wall clock: windows over processing time.
    OnTheClock(i64),
}

impl Query {
    const fn new(
        name: &'static str,
        text: &'static str,
        flink_per_core: u64,
        windows: Windows,
    ) -> Self {
        Self {
            name,
            text,
            flink_per_core,
            windows,
        }
    }

    pub fn is_windowed(&self) -> bool {
        self.windows != Windows::None
    }

    /// The query named `name` (`q5`, or `5`).
    pub fn named(name: &str) -> anyhow::Result<Query> {
        let wanted = if name.starts_with('q') {
            name.to_string()
        } else {
            format!("q{name}")
        };
        QUERIES
            .iter()
            .find(|q| q.name == wanted)
            .copied()
            .with_context(|| {
                let known: Vec<&str> = QUERIES.iter().map(|q| q.name).collect();
                format!(
                    "Strata does not run Nexmark query {name} yet; it runs {}",
                    known.join(", ")
                )
            })
    }

    /// The sink's DDL and the pipeline (its views, then its INSERT).
    fn split(&self) -> (&'static str, &'static str) {
        let at = self
            .text
            .find("CREATE VIEW")
            .or_else(|| self.text.find("INSERT INTO"))
            .expect("every query file has an INSERT");
        (&self.text[..at], &self.text[at..])
    }
}

/// q13's bounded side input: keys 0–9,999, each with `side-<key>`.
const SIDE_INPUT_ROWS: &str = "INSERT INTO nexmark.side_input SELECT value, CONCAT('side-', CAST(value AS VARCHAR)) FROM generate_series(0, 9999)";

/// Where the events come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum EventSource {
    /// Generated inside the pipeline: the engine alone.
    Gen,
    /// As JSON through the Kafka mock cluster: the whole path, decoding included.
    Kafka,
}

/// How one run is set up.
#[derive(Debug, Clone, Copy)]
pub struct NexmarkOptions {
    pub events: u64,
    /// Events per second of event time.
    pub rate: u64,
    pub source: EventSource,
    pub progress: bool,
    /// `[engine] state-memory-mb` of the run (the default if `None`).
    pub state_memory_mb: Option<u64>,
}

/// Runs of at most this many events are checked row by row; larger ones by count and digest.
pub const ROW_CHECK_EVENTS: u64 = 200_000;

/// The mock cluster keeps at most 100,000 records or 5 MiB per partition.
const KAFKA_PARTITIONS: i32 = 64;

#[derive(Debug, Serialize)]
pub struct NexmarkReport {
    pub query: String,
    pub source: EventSource,
    /// Nexmark events the run covered (all three streams).
    pub events: u64,
    /// Rows of the streams the query reads.
    pub rows_in: u64,
    pub rows_out: u64,
    pub seconds: f64,
    pub cpu_seconds: f64,
    pub events_per_s: f64,
    pub events_per_s_per_core: f64,
    pub peak_rss_mb: f64,
    /// The raw floor on the same events: generating them (gen), or consuming and
    /// decoding them (kafka), into nothing; and this run's share of it.
    pub floor_events_per_s_per_core: f64,
    pub share_of_floor: f64,
    /// From the watermark passing a window's end to its results landing, for windowed queries.
    pub windows: Option<usize>,
    pub p50_latency_ms: Option<i64>,
    pub p99_latency_ms: Option<i64>,
    /// How the output was checked: `rows` or `digest`.
    pub check: &'static str,
    pub flink_per_core: u64,
    pub rate: u64,
}

/// Runs `query` once, checks its output, and measures it.
/// Writes a project that runs `query` over the Nexmark events into `dir`,
/// reading them from the Kafka cluster at `bootstrap` if given, and registers its tables.
pub async fn project(
    dir: &std::path::Path,
    query: Query,
    options: NexmarkOptions,
    bootstrap: Option<&str>,
) -> anyhow::Result<Catalog> {
    let mut toml = String::from("[engine]\ncommit-interval-ms = 250\nbatch-records = 20000\n");
    if let Some(mb) = options.state_memory_mb {
        toml.push_str(&format!("state-memory-mb = {mb}\n"));
    }
    if let Some(bootstrap) = bootstrap {
        toml.push_str(&format!(
            "[connections.nexmark]\nkind = \"kafka\"\nbootstrap-servers = \"{bootstrap}\"\n"
        ));
    }
    std::fs::write(dir.join("strata.toml"), toml)?;
    let (sink_ddl, insert) = query.split();
    std::fs::create_dir_all(dir.join("pipelines/app"))?;
    std::fs::write(
        dir.join(format!("pipelines/app/{}.sql", query.name)),
        insert,
    )?;
    let catalog = Catalog::open(Project::load(dir)?).await?;
    let sources = source_ddl(options);
    catalog
        .register_sql("nexmark.sql", &sources, RegisterMode::Create)
        .await?;
    catalog
        .register_sql(
            &format!("{}.sql", query.name),
            sink_ddl,
            RegisterMode::Create,
        )
        .await?;
    if query.name == "q13" {
        catalog.query(SIDE_INPUT_ROWS).await?;
    }
    Ok(catalog)
}

pub async fn nexmark(query: Query, options: NexmarkOptions) -> anyhow::Result<NexmarkReport> {
    let dir = tempfile::tempdir()?;
    let cluster = match options.source {
        EventSource::Kafka => Some(MockCluster::new(1).context("starting the Kafka mock cluster")?),
        EventSource::Gen => None,
    };
    let bootstrap = cluster.as_ref().map(|cluster| cluster.bootstrap_servers());
    let catalog = project(dir.path(), query, options, bootstrap.as_deref()).await?;
    let pipeline = load_project(&catalog).await?.remove(0);
    let target = pipeline.target.clone();
    let streams: Vec<NexmarkStream> = pipeline
        .streams()
        .map(|t| t.name.name.parse().expect("the streams are Nexmark tables"))
        .collect();
    if let Some(cluster) = &cluster {
        produce_events(cluster, &streams, options)?;
    }

    let stats = std::sync::Arc::new(TableStats::new());
    let on_the_clock = matches!(query.windows, Windows::OnTheClock(_));
    let check = if on_the_clock {
        // Windows over processing time are checked by what they add up to.
        stats.output.keep_rows();
        "totals"
    } else if options.events <= ROW_CHECK_EVENTS {
        stats.output.keep_rows();
        "rows"
    } else {
        "digest"
    };
    stats.emits.enable();
    // Windows over processing time close on the clock, after the last row is read.
    let mode = match query.windows {
        Windows::OnTheClock(_) => RunMode::Continuous,
        _ => RunMode::UntilCaughtUp,
    };
    let run = PipelineRun {
        catalog: catalog.clone(),
        pipeline,
        stats: stats.clone(),
        mode,
        quality: Default::default(),
        replay: None,
    };
    if options.progress {
        eprintln!(
            "{}: {} events from {}…",
            query.name,
            options.events,
            match options.source {
                EventSource::Gen => "the generator",
                EventSource::Kafka => "Kafka",
            }
        );
    }
    reset_peak_rss();
    let cpu_before = cpu_seconds()?;
    let started = Instant::now();
    let started_ms = strata_pipelines::watermark::now_ms();
    let (stop, stop_rx) = tokio::sync::watch::channel(false);
    match query.windows {
        Windows::OnTheClock(slide) => {
            let running = tokio::spawn(run.run(stop_rx));
            let rows = streams
                .iter()
                .map(|&stream| reference::rows_of(stream, options))
                .sum();
            stop_after_the_clock_closes(&stats, rows, slide, &running).await?;
            let _ = stop.send(true);
            running.await??;
        }
        _ => run.run(stop_rx).await?,
    }
    let seconds = started.elapsed().as_secs_f64();
    let cpu = cpu_seconds()? - cpu_before;
    let peak_rss_mb = peak_rss_mb()?;

    let watermark = stats
        .watermark()
        .context("the run ended without a watermark")?;
    let expected = reference::expected(query.name, options)?;
    if !on_the_clock && expected.watermark != watermark {
        bail!(
            "{}: the pipeline's final watermark is {watermark}, the reference's {}",
            query.name,
            expected.watermark
        );
    }
    // A blackhole digests what it takes; a Delta target (q10) is read back.
    let (rows_out, digest, written) = match target.kind {
        TableKind::Delta { .. } => {
            let read = strata_pipelines::sink::digest::OutputDigest::default();
            read.keep_rows();
            for batch in read_back(&catalog, &target).await? {
                read.add(&batch)?;
            }
            (read.rows(), read.digest(), read.kept_rows())
        }
        _ => (
            stats.output.rows(),
            stats.output.digest(),
            stats.output.kept_rows(),
        ),
    };
    let clock_windows = match query.windows {
        Windows::OnTheClock(slide) => Some(clock_windows(query.name, &written, slide, started_ms)?),
        _ => None,
    };
    if let Some(clock_windows) = &clock_windows {
        compare_rows(
            query.name,
            std::slice::from_ref(&clock_windows.totals),
            &expected.rows,
        )?;
    } else if check == "rows" {
        compare_rows(query.name, &written, &expected.rows)?;
    }
    if !on_the_clock && (rows_out != expected.count || digest != expected.digest) {
        bail!(
            "{}: the pipeline wrote {rows_out} rows (digest {digest:016x}), the reference computes {} (digest {:016x})",
            query.name,
            expected.count,
            expected.digest
        );
    }
    let (windows, p50, p99) = match query.windows {
        Windows::Every(slide) => {
            let first = expected.first_time.div_euclid(slide) * slide + slide;
            let ends = (0..)
                .map(|k| first + k * slide)
                .take_while(|&end| end <= expected.watermark);
            latencies(&stats, ends)
        }
        Windows::Sessions => latencies(&stats, expected.window_ends.iter().copied()),
        // The clock's watermark closes a window at its last instant, end − 1.
        Windows::OnTheClock(_) => latencies(
            &stats,
            clock_windows
                .iter()
                .flat_map(|windows| windows.ends.iter().map(|end| end - 1)),
        ),
        Windows::None => (None, None, None),
    };
    let rows_in = stats.records_in.load(std::sync::atomic::Ordering::Relaxed);
    let floor_cpu = floor_cpu_seconds(&catalog, &streams, cluster.as_ref(), options).await?;
    let events_per_s_per_core = options.events as f64 / cpu;
    let floor_events_per_s_per_core = options.events as f64 / floor_cpu;
    Ok(NexmarkReport {
        query: query.name.to_string(),
        source: options.source,
        events: options.events,
        rows_in,
        rows_out,
        seconds,
        cpu_seconds: cpu,
        events_per_s: options.events as f64 / seconds,
        events_per_s_per_core,
        peak_rss_mb,
        floor_events_per_s_per_core,
        share_of_floor: events_per_s_per_core / floor_events_per_s_per_core,
        windows,
        p50_latency_ms: p50,
        p99_latency_ms: p99,
        check,
        flink_per_core: query.flink_per_core,
        rate: options.rate,
    })
}

/// Waits until the pipeline has read the `rows` of the run and the clock
/// has closed every window they fell into (windows of `slide` ms).
async fn stop_after_the_clock_closes(
    stats: &TableStats,
    rows: u64,
    slide: i64,
    running: &tokio::task::JoinHandle<strata_pipelines::Result<()>>,
) -> anyhow::Result<()> {
    let tick = std::time::Duration::from_millis(20);
    while stats.records_in.load(std::sync::atomic::Ordering::Relaxed) < rows {
        if running.is_finished() {
            bail!("the pipeline stopped before reading its {rows} rows");
        }
        tokio::time::sleep(tick).await;
    }
    let read_at = strata_pipelines::watermark::now_ms();
    let last_end = read_at.div_euclid(slide) * slide + slide;
    while stats.watermark().is_none_or(|w| w < last_end - 1) {
        if running.is_finished() {
            bail!("the pipeline stopped before the clock closed its windows");
        }
        tokio::time::sleep(tick).await;
    }
    Ok(())
}

/// What windows over processing time wrote: the counts per key over all
/// windows, and the windows' distinct ends.
struct ClockWindows {
    totals: RecordBatch,
    ends: std::collections::BTreeSet<i64>,
}

/// Windows over processing time, checked by what they add up to: each
/// written row (key, count, start, end) lies in a window of `slide` ms on
/// the clock since the run started.
fn clock_windows(
    query: &str,
    written: &[RecordBatch],
    slide: i64,
    started_ms: i64,
) -> anyhow::Result<ClockWindows> {
    use arrow::array::{Array, Int64Array, TimestampMillisecondArray};
    let mut totals: std::collections::HashMap<i64, i64> = Default::default();
    let mut window_ends = std::collections::BTreeSet::new();
    let now = strata_pipelines::watermark::now_ms();
    for batch in written {
        let column = |at: usize| -> anyhow::Result<arrow::array::ArrayRef> {
            let to = match at {
                0 | 1 => arrow::datatypes::DataType::Int64,
                _ => arrow::datatypes::DataType::Timestamp(
                    arrow::datatypes::TimeUnit::Millisecond,
                    None,
                ),
            };
            Ok(arrow::compute::cast(batch.column(at), &to)?)
        };
        let (keys, counts, starts, ends) = (column(0)?, column(1)?, column(2)?, column(3)?);
        let keys = keys.as_any().downcast_ref::<Int64Array>().context("keys")?;
        let counts = counts
            .as_any()
            .downcast_ref::<Int64Array>()
            .context("counts")?;
        let starts = starts
            .as_any()
            .downcast_ref::<TimestampMillisecondArray>()
            .context("starts")?;
        let ends = ends
            .as_any()
            .downcast_ref::<TimestampMillisecondArray>()
            .context("ends")?;
        for row in 0..batch.num_rows() {
            let (start, end) = (starts.value(row), ends.value(row));
            if end - start != slide || start.rem_euclid(slide) != 0 {
                bail!("{query}: the window [{start}, {end}) is not a window of {slide} ms");
            }
            if end <= started_ms || start > now {
                bail!(
                    "{query}: the window [{start}, {end}) is not on the clock of the run ({started_ms} to {now})"
                );
            }
            *totals.entry(keys.value(row)).or_default() += counts.value(row);
            window_ends.insert(end);
        }
    }
    let (keys, counts): (Vec<i64>, Vec<i64>) = totals.into_iter().unzip();
    let totals = RecordBatch::try_from_iter([
        (
            "c0",
            std::sync::Arc::new(Int64Array::from(keys)) as arrow::array::ArrayRef,
        ),
        (
            "c1",
            std::sync::Arc::new(Int64Array::from(counts)) as arrow::array::ArrayRef,
        ),
    ])?;
    Ok(ClockWindows {
        totals,
        ends: window_ends,
    })
}

/// The rows of a Delta target, in its declared columns and types (Delta
/// keeps TIMESTAMP(3) as microseconds).
async fn read_back(catalog: &Catalog, target: &TableDef) -> anyhow::Result<Vec<RecordBatch>> {
    let columns: Vec<String> = target
        .schema
        .fields()
        .iter()
        .map(|field| format!("`{}`", field.name()))
        .collect();
    let read = catalog
        .query(&format!(
            "SELECT {} FROM {}",
            columns.join(", "),
            target.name
        ))
        .await?;
    read.batches
        .iter()
        .map(|batch| {
            let columns = batch
                .columns()
                .iter()
                .zip(target.schema.fields())
                .map(|(column, field)| arrow::compute::cast(column, field.data_type()))
                .collect::<Result<Vec<_>, _>>()?;
            Ok(RecordBatch::try_new(target.schema.clone(), columns)?)
        })
        .collect()
}

/// CPU seconds of the raw floor: the streams' rows generated (gen) or consumed
/// and decoded (kafka), into nothing.
async fn floor_cpu_seconds(
    catalog: &Catalog,
    streams: &[NexmarkStream],
    cluster: Option<&MockCluster<'_, rdkafka::producer::DefaultProducerContext>>,
    options: NexmarkOptions,
) -> anyhow::Result<f64> {
    let before = cpu_seconds()?;
    for &stream in streams {
        match cluster {
            None => {
                let generator = Generator::new(stream, options.rate);
                let mut from = 0;
                while from < options.events {
                    let to = (from + reference::CHUNK).min(options.events);
                    std::hint::black_box(generator.rows(from, to));
                    from = to;
                }
            }
            Some(cluster) => {
                let table = catalog
                    .get(&format!("nexmark.{}", stream.as_str()).parse()?)
                    .await?
                    .def;
                let topic = format!("nexmark-{}", stream.as_str());
                let rows =
                    super::ingest::retained_records_of(&cluster.bootstrap_servers(), &topic)?;
                super::ingest::floor_of(&cluster.bootstrap_servers(), &topic, table.schema, rows)
                    .await?;
            }
        }
    }
    Ok(cpu_seconds()? - before)
}

/// The three streams' tables, generated or read from Kafka.
fn source_ddl(options: NexmarkOptions) -> String {
    let columns = |stream: NexmarkStream| -> String {
        strata_catalog::connectors::nexmark::schema(stream)
            .fields()
            .iter()
            .map(|f| {
                let kind = match f.data_type() {
                    arrow::datatypes::DataType::Int64 => "BIGINT",
                    arrow::datatypes::DataType::Utf8 => "VARCHAR",
                    _ => "TIMESTAMP(3)",
                };
                format!("    `{}` {kind},\n", f.name())
            })
            .collect()
    };
    [NexmarkStream::Person, NexmarkStream::Auction, NexmarkStream::Bid]
        .iter()
        .map(|&stream| {
            let with = match options.source {
                EventSource::Gen => format!(
                    "'connector' = 'nexmark', 'stream' = '{}', 'first-event.rate' = '{}', 'events.num' = '{}'",
                    stream.as_str(),
                    options.rate,
                    options.events
                ),
                EventSource::Kafka => format!(
                    "'connector' = 'kafka', 'topic' = 'nexmark-{}', 'format' = 'json', 'scan.startup.mode' = 'earliest-offset', 'connection' = 'nexmark'",
                    stream.as_str()
                ),
            };
            format!(
                "CREATE TABLE nexmark.{} (\n{}    WATERMARK FOR `dateTime` AS `dateTime` - INTERVAL '4' SECOND\n) WITH (\n    {with},\n    'layer' = 'ods'\n);\n",
                stream.as_str(),
                columns(stream)
            )
        })
        .collect()
}

/// Produces the rows of `streams` for every event, as JSON, round robin over
/// the partitions (not timed).
fn produce_events(
    cluster: &MockCluster<'_, rdkafka::producer::DefaultProducerContext>,
    streams: &[NexmarkStream],
    options: NexmarkOptions,
) -> anyhow::Result<()> {
    use rdkafka::ClientConfig;
    use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};

    let bootstrap = cluster.bootstrap_servers();
    let producer: ThreadedProducer<DefaultProducerContext> = ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .set("queue.buffering.max.messages", "1000000")
        .set("linger.ms", "5")
        .create()?;
    for &stream in streams {
        let topic = format!("nexmark-{}", stream.as_str());
        cluster
            .create_topic(&topic, KAFKA_PARTITIONS, 1)
            .context("creating a topic")?;
        let generator = Generator::new(stream, options.rate);
        let mut index = 0usize;
        for from in (0..options.events).step_by(reference::CHUNK as usize) {
            let to = (from + reference::CHUNK).min(options.events);
            let (rows, _) = generator.rows(from, to);
            for line in json_lines(&rows)? {
                let partition = (index % KAFKA_PARTITIONS as usize) as i32;
                index += 1;
                loop {
                    let record = BaseRecord::<(), [u8]>::to(&topic)
                        .partition(partition)
                        .payload(line.as_slice());
                    match producer.send(record) {
                        Ok(()) => break,
                        Err((
                            rdkafka::error::KafkaError::MessageProduction(
                                rdkafka::types::RDKafkaErrorCode::QueueFull,
                            ),
                            _,
                        )) => std::thread::sleep(std::time::Duration::from_millis(5)),
                        Err((err, _)) => return Err(err).context("producing Nexmark events"),
                    }
                }
            }
        }
        producer.flush(std::time::Duration::from_secs(120))?;
        if options.progress {
            eprintln!("produced {index} {} rows to {topic}", stream.as_str());
        }
        let retained = super::ingest::retained_records_of(&bootstrap, &topic)?;
        if retained != index {
            bail!(
                "the Kafka mock cluster kept {retained} of the {index} {} rows produced (it keeps at most 5 MiB per partition); run with fewer --events",
                stream.as_str()
            );
        }
    }
    Ok(())
}

/// Each row as one line of JSON, `dateTime` as `2015-07-15T00:00:00.123`.
pub fn json_lines(rows: &RecordBatch) -> anyhow::Result<Vec<Vec<u8>>> {
    let mut writer = arrow_json::LineDelimitedWriter::new(Vec::new());
    writer.write(rows)?;
    writer.finish()?;
    Ok(writer
        .into_inner()
        .split(|&b| b == b'\n')
        .filter(|line| !line.is_empty())
        .map(<[u8]>::to_vec)
        .collect())
}

/// Compares two row sets, in any order; the error shows the first difference.
/// Rows of a changelog that take back a row (marked with the sink's delete
/// marker) remove an equal row: what is compared is what stands at the end.
fn compare_rows(query: &str, got: &[RecordBatch], expected: &[RecordBatch]) -> anyhow::Result<()> {
    let render = |batches: &[RecordBatch]| -> anyhow::Result<Vec<String>> {
        let mut standing: std::collections::HashMap<String, i64> = Default::default();
        let retracts = strata_pipelines::sink::delete_markers(batches);
        for (batch, retracts) in batches.iter().zip(retracts) {
            let mut values = batch.clone();
            if let Ok(marker) = batch
                .schema()
                .index_of(strata_pipelines::sink::DELETE_MARKER)
            {
                values.remove_column(marker);
            }
            let options = arrow::util::display::FormatOptions::default();
            let formatters = values
                .columns()
                .iter()
                .map(|c| arrow::util::display::ArrayFormatter::try_new(c.as_ref(), &options))
                .collect::<Result<Vec<_>, _>>()?;
            for row in 0..values.num_rows() {
                let cells: Vec<String> = formatters
                    .iter()
                    .map(|f| f.value(row).to_string())
                    .collect();
                let count = standing.entry(cells.join(" | ")).or_default();
                *count += if retracts.value(row) { -1 } else { 1 };
            }
        }
        let mut lines = Vec::new();
        for (line, count) in standing {
            if count < 0 {
                bail!(
                    "{query}: the row {line} was taken back {} times more than written",
                    -count
                );
            }
            lines.extend(std::iter::repeat_n(line, count as usize));
        }
        lines.sort();
        Ok(lines)
    };
    let (got, expected) = (render(got)?, render(expected)?);
    if got == expected {
        return Ok(());
    }
    let missing = expected
        .iter()
        .find(|line| got.binary_search(line).is_err());
    let extra = got
        .iter()
        .find(|line| expected.binary_search(line).is_err());
    bail!(
        "{query}: the pipeline wrote {} rows, the reference computes {}; first missing row: {}; first unexpected row: {}",
        got.len(),
        expected.len(),
        missing.map_or("none", String::as_str),
        extra.map_or("none", String::as_str)
    )
}

/// Window latencies (count, p50, p99): from the watermark reaching each
/// closed window's end to the landing of the commit that carried its results.
fn latencies(
    stats: &TableStats,
    ends: impl Iterator<Item = i64>,
) -> (Option<usize>, Option<i64>, Option<i64>) {
    let recorded = stats.emits.recorded();
    let mut samples: Vec<i64> = ends.filter_map(|end| recorded.latency_ms(end)).collect();
    if samples.is_empty() {
        return (Some(0), None, None);
    }
    samples.sort_unstable();
    let at = |q: f64| samples[((samples.len() - 1) as f64 * q).round() as usize];
    (Some(samples.len()), Some(at(0.5)), Some(at(0.99)))
}
