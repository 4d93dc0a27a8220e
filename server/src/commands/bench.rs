//! `strata bench`: measure Strata on this machine.

use clap::Subcommand;
use strata_server::{bench, views};

use super::{Format, print_json};

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub(crate) enum NexmarkSourceArg {
    Gen,
    Kafka,
}

#[derive(Debug, Subcommand)]
pub(crate) enum BenchCommand {
    /// From a record's Kafka timestamp to a query that sees it (live view, and committed only).
    Freshness {
        /// How many records to stream.
        #[arg(long, default_value_t = 3_000)]
        records: usize,
        /// Records per second.
        #[arg(long, default_value_t = 200)]
        rate: u64,
        /// Milliseconds between the reader's queries.
        #[arg(long, default_value_t = 10)]
        poll_ms: u64,
    },
    /// The throughput cost of ten row rules on a Kafka → Delta pipeline.
    Quality {
        /// How many records to produce and ingest (the mock cluster holds about 600,000).
        #[arg(long, default_value_t = 400_000)]
        records: usize,
    },
    /// Kafka → ODS Delta committed rows/s against the raw consume + decode floor.
    Ingest {
        /// How many records to produce and ingest (the mock cluster holds about 600,000).
        #[arg(long, default_value_t = 500_000)]
        records: usize,
    },
    /// Orders enriched by a lookup join against MariaDB, against the same pipeline without it.
    Lookup {
        /// How many orders to produce and enrich.
        #[arg(long, default_value_t = 300_000)]
        records: usize,
        /// How many users the dimension table holds.
        #[arg(long, default_value_t = 100_000)]
        users: usize,
        /// The MariaDB/MySQL/TiDB server (the benchmark creates the database strata_bench_lookup).
        #[arg(long, default_value = "mysql://root@127.0.0.1:3306")]
        mysql_url: String,
    },
    /// Nexmark's queries, as Flink SQL: events/s per core, peak memory and window latency, each run checked.
    Nexmark {
        /// The queries: a query Strata runs (q0–q5, q7, q9–q11, q13–q22), a comma-separated list of them, or all.
        #[arg(long, default_value = "all")]
        query: String,
        /// How many Nexmark events (of all three streams); default 10,000,000 generated, 1,000,000 through Kafka.
        #[arg(long)]
        events: Option<u64>,
        /// gen: generated in the pipeline (the engine alone); kafka: as JSON through the Kafka mock cluster.
        #[arg(long, value_enum, default_value = "gen")]
        source: NexmarkSourceArg,
        /// Events per second of event time (windows are 2 and 10 s of it).
        #[arg(long, default_value_t = 100_000)]
        rate: u64,
        /// The keyed state's memory budget (as `[engine] state-memory-mb`; its default if not given).
        #[arg(long)]
        state_memory_mb: Option<u64>,
    },
    /// A keyed operator's commit cost over 1 M and 10 M keys, its memory against the budget, and a restore.
    State {
        /// Keys of the first phase.
        #[arg(long, default_value_t = 1_000_000)]
        small_keys: u64,
        /// Keys of the second phase.
        #[arg(long, default_value_t = 10_000_000)]
        large_keys: u64,
        /// Keys read and written between two commits.
        #[arg(long, default_value_t = 10_000)]
        changed: u64,
        /// Commits measured in each phase.
        #[arg(long, default_value_t = 20)]
        commits: u64,
        /// The keyed state's memory budget (as `[engine] state-memory-mb`).
        #[arg(long, default_value_t = 256)]
        memory_mb: u64,
    },
    /// The lineage API on a generated warehouse: building the graph, and queries around a node.
    Lineage {
        /// How many tables (in ODS → DWD → DWS → APP chains).
        #[arg(long, default_value_t = 2_000)]
        tables: usize,
        /// Columns per table.
        #[arg(long, default_value_t = 10)]
        columns: usize,
    },
}

pub(crate) async fn run(command: BenchCommand, format: Format) -> anyhow::Result<()> {
    match command {
        BenchCommand::Freshness {
            records,
            rate,
            poll_ms,
        } => {
            let report = bench::freshness(records, rate, poll_ms, format == Format::Table).await?;
            let ms = |v: i64| format!("{v} ms");
            print_measures(
                format,
                &report,
                [
                    ("records", report.records.to_string()),
                    ("rate", format!("{} /s", report.rate_per_s)),
                    ("commit interval", ms(report.commit_interval_ms as i64)),
                    ("queries", report.queries.to_string()),
                    ("live view p50", ms(report.live_p50_ms)),
                    ("live view p95", ms(report.live_p95_ms)),
                    ("live view p99", ms(report.live_p99_ms)),
                    ("live view max", ms(report.live_max_ms)),
                    ("committed only p50", ms(report.committed_p50_ms)),
                    ("committed only p99", ms(report.committed_p99_ms)),
                ],
            );
            Ok(())
        }
        BenchCommand::Quality { records } => {
            let report = bench::quality(records, format == Format::Table).await?;
            print_measures(
                format,
                &report,
                [
                    ("records", report.records.to_string()),
                    ("row rules", report.rules.to_string()),
                    (
                        "rows/s without rules",
                        format!("{:.0}", report.no_rules_rows_per_s),
                    ),
                    (
                        "rows/s with the rules",
                        format!("{:.0}", report.rules_rows_per_s),
                    ),
                    ("overhead", format!("{:.1} %", report.overhead * 100.0)),
                    (
                        "the rules alone, rows/s (one core)",
                        format!("{:.0}", report.rules_alone_rows_per_s),
                    ),
                    (
                        "the rules' share of the plain pipeline's time",
                        format!("{:.1} %", report.rules_share_of_pipeline * 100.0),
                    ),
                    (
                        "rows failing a rule (warned)",
                        report.failed_rows.to_string(),
                    ),
                ],
            );
            Ok(())
        }
        BenchCommand::Ingest { records } => {
            let report = bench::ingest(records, format == Format::Table).await?;
            print_measures(
                format,
                &report,
                [
                    ("records", report.records.to_string()),
                    ("Kafka → Delta rows/s", format!("{:.0}", report.rows_per_s)),
                    (
                        "floor rows/s (consume + decode)",
                        format!("{:.0}", report.floor_rows_per_s),
                    ),
                    ("ratio", format!("{:.2}", report.ratio)),
                    ("Delta commits", report.commits.to_string()),
                ],
            );
            Ok(())
        }
        BenchCommand::Lookup {
            records,
            users,
            mysql_url,
        } => {
            let report = bench::lookup(records, users, &mysql_url, format == Format::Table).await?;
            print_measures(
                format,
                &report,
                [
                    ("orders", report.records.to_string()),
                    ("users", report.users.to_string()),
                    ("enriched rows/s", format!("{:.0}", report.rows_per_s)),
                    (
                        "rows/s without the join",
                        format!("{:.0}", report.no_join_rows_per_s),
                    ),
                    ("ratio", format!("{:.2}", report.ratio_to_no_join)),
                    (
                        "queries per 1,000 rows",
                        format!("{:.2}", report.queries_per_1k_rows),
                    ),
                    ("cache hit rate", format!("{:.3}", report.cache_hit_rate)),
                    ("mean query time", format!("{:.1} ms", report.mean_query_ms)),
                ],
            );
            Ok(())
        }
        BenchCommand::Nexmark {
            query,
            events,
            source,
            rate,
            state_memory_mb,
        } => {
            use bench::nexmark::{EventSource, NexmarkOptions, QUERIES, Query};
            let queries: Vec<Query> = match query.as_str() {
                "all" => QUERIES.to_vec(),
                list => list
                    .split(',')
                    .map(|name| Query::named(name.trim()))
                    .collect::<anyhow::Result<_>>()?,
            };
            let source = match source {
                NexmarkSourceArg::Gen => EventSource::Gen,
                NexmarkSourceArg::Kafka => EventSource::Kafka,
            };
            let options = NexmarkOptions {
                events: events.unwrap_or(match source {
                    EventSource::Gen => 10_000_000,
                    EventSource::Kafka => 1_000_000,
                }),
                rate,
                source,
                progress: format == Format::Table,
                state_memory_mb,
            };
            let mut reports = Vec::new();
            for query in queries {
                reports.push(bench::nexmark::nexmark(query, options).await?);
            }
            match format {
                Format::Json if reports.len() == 1 => print_json(&reports[0]),
                Format::Json => print_json(&reports),
                Format::Table | Format::Dot => {
                    let per_s = |v: f64| format!("{:.0}", v);
                    let ms = |v: Option<i64>| v.map_or("-".to_string(), |v| format!("{v} ms"));
                    let rows = reports
                        .iter()
                        .map(|r| {
                            vec![
                                r.query.clone(),
                                r.events.to_string(),
                                r.rows_out.to_string(),
                                format!("{:.2} s", r.seconds),
                                format!("{:.2} s", r.cpu_seconds),
                                per_s(r.events_per_s_per_core),
                                format!(
                                    "{} ({:.0} %)",
                                    per_s(r.floor_events_per_s_per_core),
                                    r.share_of_floor * 100.0
                                ),
                                r.flink_per_core.to_string(),
                                format!("{:.0} MB", r.peak_rss_mb),
                                ms(r.p99_latency_ms),
                                r.check.to_string(),
                            ]
                        })
                        .collect();
                    println!(
                        "{}",
                        views::human_table(
                            &[
                                "query",
                                "events",
                                "rows out",
                                "wall",
                                "cpu",
                                "events/s per core",
                                "floor per core (share)",
                                "Flink per core",
                                "peak RSS",
                                "window p99",
                                "checked",
                            ],
                            rows,
                        )
                    );
                }
            }
            Ok(())
        }
        BenchCommand::State {
            small_keys,
            large_keys,
            changed,
            commits,
            memory_mb,
        } => {
            let report = bench::state(bench::StateOptions {
                small_keys,
                large_keys,
                changed,
                commits,
                memory_mb,
                progress: format == Format::Table,
            })
            .await?;
            let phase = |p: &bench::StatePhase| {
                format!(
                    "{:.1} ms ({} kB up; state {:.0} MB in {} files; updates {:.0} ms; peak RSS {:.0} MB)",
                    p.commit_ms,
                    p.commit_bytes / 1000,
                    p.state_mb,
                    p.state_files,
                    p.update_ms,
                    p.peak_rss_mb
                )
            };
            print_measures(
                format,
                &report,
                [
                    ("memory budget", format!("{} MB", report.memory_budget_mb)),
                    (
                        "RSS before the store",
                        format!("{:.0} MB", report.baseline_rss_mb),
                    ),
                    (
                        "keys changed per commit",
                        report.changed_per_commit.to_string(),
                    ),
                    (
                        &format!("commit at {} keys", report.small.keys),
                        phase(&report.small),
                    ),
                    (
                        &format!("commit at {} keys", report.large.keys),
                        phase(&report.large),
                    ),
                    ("commit cost ratio", format!("{:.2}", report.commit_ratio)),
                    (
                        "restore",
                        format!(
                            "{} keys in {:.1} s, peak RSS {:.0} MB",
                            report.restored_keys, report.restore_s, report.restore_peak_rss_mb
                        ),
                    ),
                    ("restored exactly", report.restored_exactly.to_string()),
                    (
                        "peak over RSS before the store within budget",
                        report.within_budget.to_string(),
                    ),
                ],
            );
            anyhow::ensure!(
                report.restored_exactly,
                "the restored state differs from the state that was checkpointed"
            );
            Ok(())
        }
        BenchCommand::Lineage { tables, columns } => {
            let report = bench::lineage(tables, columns).await?;
            print_measures(
                format,
                &report,
                [
                    ("tables", report.tables.to_string()),
                    ("columns", report.columns.to_string()),
                    ("pipelines", report.pipelines.to_string()),
                    (
                        "graph build (every pipeline planned)",
                        format!("{:.0} ms", report.build_ms),
                    ),
                    (
                        "query, table level, depth 3",
                        format!("{:.1} ms", report.table_query_ms),
                    ),
                    (
                        "query, column level, depth 3",
                        format!("{:.1} ms", report.column_query_ms),
                    ),
                    (
                        "column-level answer",
                        format!(
                            "{} nodes, {} bytes",
                            report.nodes, report.column_answer_bytes
                        ),
                    ),
                ],
            );
            Ok(())
        }
    }
}

/// A benchmark's report: a table of measures for people, the whole report as JSON for scripts.
fn print_measures<T: serde::Serialize, const N: usize>(
    format: Format,
    report: &T,
    measures: [(&str, String); N],
) {
    match format {
        Format::Json => print_json(report),
        Format::Table | Format::Dot => println!(
            "{}",
            views::human_table(
                &["measure", "value"],
                measures
                    .into_iter()
                    .map(|(name, value)| vec![name.to_string(), value])
                    .collect(),
            )
        ),
    }
}
