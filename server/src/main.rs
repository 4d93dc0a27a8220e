//! `strata`: the command line of the Strata warehouse.

use std::io::{IsTerminal, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use clap::{Parser, Subcommand, ValueEnum};
use strata_catalog::{Catalog, DiscoverOptions, Layer, Project, RegisterMode, TableName};
use strata_server::query::{self, output::RowFormat};
use strata_server::run::{Registry, RunOptions, prepare_project};
use strata_server::views::{
    self, DiscoveryView, SchemaVersionView, TableDetail, TableSummary, batches_to_json_rows,
};
use strata_server::{bench, demo, lineage, scaffold, serve};

#[derive(Debug, Parser)]
#[command(name = "strata", version, about = "A realtime layered data warehouse")]
struct Cli {
    /// The project directory, holding strata.toml [default: the current directory; for
    /// strata demo, ./strata-demo].
    #[arg(long, global = true, env = "STRATA_PROJECT")]
    project: Option<PathBuf>,
    /// Output for people (table) or for scripts (json); csv and arrow (IPC) for query results.
    #[arg(long, global = true, value_enum, default_value_t = FormatArg::Table)]
    format: FormatArg,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum FormatArg {
    Table,
    Json,
    /// Graphviz, for `strata lineage`.
    Dot,
    /// Comma-separated values, for `strata query`.
    Csv,
    /// An Arrow IPC stream, for `strata query`.
    Arrow,
}

/// How a command's output is written (query results may also be csv or arrow).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    Table,
    Json,
    Dot,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Create a new project directory with strata.toml, catalog/ and pipelines/.
    Init { dir: PathBuf },
    /// Register, list, show, drop and discover tables.
    #[command(subcommand)]
    Catalog(CatalogCommand),
    /// Run one SQL query over the catalog's tables (EXPLAIN shows its plan).
    /// With --server, the running server answers, with the rows its pipelines
    /// have not committed yet; without, the committed tables do.
    Query {
        sql: String,
        /// At most this many rows (0: all).
        #[arg(long)]
        limit: Option<usize>,
        /// Cancel the query after this long, e.g. 30s.
        #[arg(long, value_parser = humantime::parse_duration)]
        timeout: Option<std::time::Duration>,
        /// A running strata's API, e.g. http://127.0.0.1:7600.
        #[arg(long, env = "STRATA_SERVER")]
        server: Option<String>,
        /// The token for --server (default: the project's .strata/admin-token).
        #[arg(long, env = "STRATA_TOKEN", hide_env_values = true)]
        token: Option<String>,
    },
    /// Access tokens: make, list and revoke them.
    #[command(subcommand)]
    Token(TokenCommand),
    /// Validate the project, then run every pipeline and serve the HTTP API.
    Run {
        /// The project directory (default: --project).
        dir: Option<PathBuf>,
        /// Stop after this long, e.g. 30s or 5m.
        #[arg(long = "for", value_parser = humantime::parse_duration)]
        duration: Option<std::time::Duration>,
        /// Stop once every source has been read to its end and committed.
        #[arg(long)]
        until_idle: bool,
        /// The API's port; 0 picks a free one.
        #[arg(long, default_value_t = 7600)]
        port: u16,
        /// The PostgreSQL protocol's port; 0 picks a free one.
        #[arg(long, env = "STRATA_PG_PORT", default_value_t = 4566)]
        pg_port: u16,
        #[arg(long, default_value = "127.0.0.1")]
        host: String,
    },
    /// Run the shop example end to end on embedded defaults: a Kafka mock cluster in the
    /// process, a generator of orders, page views and price changes, and every pipeline.
    /// The project and its tables stay in --project (default ./strata-demo).
    Demo {
        /// Stop after this long, e.g. 30s or 5m (default: until Ctrl-C).
        #[arg(long = "for", value_parser = humantime::parse_duration)]
        duration: Option<std::time::Duration>,
        /// Event time runs this many times faster than the wall clock (starting an hour ago
        /// when above 1), so per-minute windows close sooner.
        #[arg(long, default_value_t = 1)]
        speed: u32,
        /// The API's port; 0 picks a free one.
        #[arg(long, default_value_t = 7600)]
        port: u16,
        /// The PostgreSQL protocol's port; 0 picks a free one.
        #[arg(long, env = "STRATA_PG_PORT", default_value_t = 4566)]
        pg_port: u16,
        #[arg(long, default_value = "127.0.0.1")]
        host: String,
        /// The example to run: the shop (examples/shop) or the IoT alarms (examples/iot).
        #[arg(long, value_enum, default_value = "shop")]
        example: demo::Example,
    },
    /// Compact a Delta table's small files and checkpoint its log.
    Optimize { table: String },
    /// A Delta table's versions, newest first, for time travel (VERSION AS OF n).
    History {
        /// The Delta table (space.table).
        table: String,
        /// At most this many versions.
        #[arg(long, default_value_t = 20)]
        limit: usize,
    },
    /// A table's quarantine: replay it through the table's pipeline after a fix.
    #[command(subcommand)]
    Quarantine(QuarantineCommand),
    /// A pipeline's state: drop it when the pipeline changed in a way its state cannot follow.
    #[command(subcommand)]
    Pipeline(PipelineCommand),
    /// Produce JSON lines (a file, or standard input) to a Kafka table's topic. Every record is
    /// checked against the table's schema first; if one does not fit, none is produced.
    Produce {
        /// The Kafka table (space.table).
        table: String,
        /// A file of JSON records, one per line (default: standard input).
        #[arg(long)]
        file: Option<PathBuf>,
    },
    /// Tools for trying Strata on one machine.
    #[command(subcommand)]
    Dev(DevCommand),
    /// Quality: every declared rule's evaluations since strata run last started (or --since),
    /// with the latest and the latest failure (exit code 1 when one failed in that span),
    /// or with --history the table's rules evaluated now over its Delta table's rows.
    Check {
        /// Only this table (space.table).
        table: Option<String>,
        /// Only results from this long ago on, e.g. 1h (default: since strata run last started).
        #[arg(long, value_parser = humantime::parse_duration)]
        since: Option<std::time::Duration>,
        /// Evaluate the table's rules over its whole history, in batch.
        #[arg(long, requires = "table")]
        history: bool,
    },
    /// Table and column lineage: what a table or column comes from and feeds,
    /// the path between two nodes, or what a column change breaks.
    Lineage {
        /// A table (space.table), a column (space.table.column) or a pipeline (pipeline:name).
        node: String,
        /// Only what it comes from.
        #[arg(long, conflicts_with = "downstream")]
        upstream: bool,
        /// Only what it feeds.
        #[arg(long)]
        downstream: bool,
        /// How many tables (or columns) away to go.
        #[arg(long, default_value_t = 3)]
        depth: usize,
        /// Column-level lineage for a table (a column's is always column-level).
        #[arg(long)]
        columns: bool,
        /// What breaks if this column changes type or is dropped.
        #[arg(long, conflicts_with_all = ["upstream", "downstream", "to"])]
        impact: bool,
        /// The path between the node and this one, in the direction data flows.
        #[arg(long)]
        to: Option<String>,
        /// The graph as recorded at this time (2026-11-21T10:00:00Z, or ms since the epoch).
        #[arg(long)]
        at: Option<String>,
    },
    /// Measure Strata on this machine (use a release build).
    #[command(subcommand)]
    Bench(BenchCommand),
    /// Serve the HTTP API, the web UI and the PostgreSQL protocol.
    Serve {
        #[arg(long, default_value_t = 7600)]
        port: u16,
        /// The PostgreSQL protocol's port; 0 picks a free one.
        #[arg(long, env = "STRATA_PG_PORT", default_value_t = 4566)]
        pg_port: u16,
        #[arg(long, default_value = "127.0.0.1")]
        host: String,
    },
}

#[derive(Debug, Subcommand)]
enum TokenCommand {
    /// Make a token; its secret is shown once.
    Create {
        /// What the token is for, e.g. grafana.
        #[arg(long)]
        name: String,
        /// The spaces it grants (repeat, or * for every space).
        #[arg(long = "space", required = true)]
        spaces: Vec<String>,
        /// Read the spaces.
        #[arg(long, conflicts_with = "write", required_unless_present = "write")]
        read: bool,
        /// Read and write the spaces.
        #[arg(long)]
        write: bool,
    },
    /// Every token, without secrets.
    List,
    /// Revoke a token by id.
    Revoke { id: String },
}

#[derive(Debug, Subcommand)]
enum DevCommand {
    /// A development Kafka broker (librdkafka's mock cluster, in memory; not for production)
    /// in a process of its own, so that it outlives the strata processes that use it.
    Kafka {
        /// The port clients bootstrap from; 0 picks a free one.
        #[arg(long, default_value_t = 9092)]
        port: u16,
        #[arg(long, default_value = "127.0.0.1")]
        host: String,
        /// A topic to create at start, NAME or NAME:PARTITIONS (repeatable).
        #[arg(long = "topic")]
        topics: Vec<String>,
    },
}

#[derive(Debug, Subcommand)]
enum PipelineCommand {
    /// Drop a pipeline's operator state (open windows, groups, rows held for a join) with
    /// one commit to its target, so that it starts again under its current SQL. The rows it
    /// wrote stay. Stop `strata run` first.
    Reset {
        /// The pipeline, as `strata status` and /api/v1/pipelines name it.
        name: String,
        /// Where its source is read from next: where the last commit left off (nothing read
        /// twice, open windows lost), the earliest offsets (everything again) or the latest.
        #[arg(long, value_enum, default_value = "committed")]
        from: ResetFromArg,
    },
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum ResetFromArg {
    Committed,
    Earliest,
    Latest,
}

#[derive(Debug, Subcommand)]
enum QuarantineCommand {
    /// Feed the table's quarantined records through its pipeline again (after a rule or a
    /// dimension was fixed): each is committed, quarantined again, or filtered out.
    Replay {
        /// The table whose quarantine to replay (space.table).
        table: String,
        /// Only the records this rule quarantined.
        #[arg(long)]
        rule: Option<String>,
    },
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum NexmarkSourceArg {
    Gen,
    Kafka,
}

#[derive(Debug, Subcommand)]
enum BenchCommand {
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
        /// The queries: q0, q1, q2, q5, q7, a comma-separated list of them, or all.
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

#[derive(Debug, Subcommand)]
enum CatalogCommand {
    /// Register the tables of DDL files (or of every .sql file in a directory).
    Register {
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// Update tables that exist: a changed schema becomes a new version.
        #[arg(long)]
        update: bool,
    },
    /// List the registered tables.
    List,
    /// Show one table: columns, keys, watermark and options.
    Show {
        table: String,
        /// Show this schema version instead of the current one.
        #[arg(long)]
        version: Option<i64>,
    },
    /// List a table's schema versions.
    History { table: String },
    /// Remove a table from the catalog (its data is kept).
    Drop { table: String },
    /// Register what a connection in strata.toml already holds.
    Discover {
        connection: String,
        /// The space to register into (default: the database, or the connection's name).
        #[arg(long)]
        space: Option<String>,
        /// The layer of tables whose names have no layer prefix.
        #[arg(long)]
        layer: Option<String>,
        /// Kafka: only this topic (repeatable).
        #[arg(long = "topic")]
        topics: Vec<String>,
        /// Kafka: records to sample per partition.
        #[arg(long, default_value_t = 100)]
        sample: i64,
        /// Register inferred schemas without asking.
        #[arg(long)]
        yes: bool,
        /// Show what would be registered, and register nothing.
        #[arg(long)]
        dry_run: bool,
    },
}

#[tokio::main]
async fn main() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("STRATA_LOG")
                // deltalake warns about routine things (no statistics for binary columns), and
                // the Delta kernel logs as errors what deltalake returns, and Strata reports, anyway.
                .unwrap_or_else(|_| {
                    tracing_subscriber::EnvFilter::new(
                        "warn,deltalake_core=error,buoyant_kernel=off",
                    )
                }),
        )
        .with_writer(std::io::stderr)
        .init();
    // Named crash points, armed only by the FAILPOINTS environment variable (tests).
    let _failpoints = fail::FailScenario::setup();
    let cli = Cli::parse();
    if let Err(err) = run(cli).await {
        eprintln!("error: {}", error_report(&err));
        std::process::exit(1);
    }
}

/// The error and its causes, leaving out causes its message already quotes.
fn error_report(err: &anyhow::Error) -> String {
    let mut report = String::new();
    for cause in err.chain() {
        let text = cause.to_string();
        if !report.contains(&text) {
            if !report.is_empty() {
                report.push_str(": ");
            }
            report.push_str(&text);
        }
    }
    report
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let (format, rows) = match cli.format {
        FormatArg::Table => (Format::Table, None),
        FormatArg::Json => (Format::Json, Some(RowFormat::Json)),
        FormatArg::Dot => (Format::Dot, None),
        FormatArg::Csv => (Format::Table, Some(RowFormat::Csv)),
        FormatArg::Arrow => (Format::Table, Some(RowFormat::Arrow)),
    };
    if format == Format::Dot && !matches!(cli.command, Command::Lineage { .. }) {
        bail!("--format dot is for strata lineage; use table or json here");
    }
    if matches!(cli.format, FormatArg::Csv | FormatArg::Arrow)
        && !matches!(cli.command, Command::Query { .. })
    {
        bail!("--format csv and arrow are for strata query; use table or json here");
    }
    // The current directory, but strata demo keeps its project in ./strata-demo unless told otherwise.
    let given_project = cli.project.clone();
    let project = given_project.clone().unwrap_or_else(|| PathBuf::from("."));
    match cli.command {
        Command::Init { dir } => {
            let created = scaffold::init(&dir)?;
            match format {
                Format::Json => {
                    print_json(&serde_json::json!({"project": dir, "created": created}))
                }
                Format::Table | Format::Dot => {
                    println!("created project {}", dir.display());
                    for path in created {
                        println!("  {path}");
                    }
                    println!(
                        "next: strata --project {} catalog register {}/catalog",
                        dir.display(),
                        dir.display()
                    );
                }
            }
            Ok(())
        }
        Command::Catalog(command) => {
            let catalog = open_catalog(&project).await?;
            run_catalog(&catalog, command, format).await
        }
        Command::Query {
            sql,
            limit,
            timeout,
            server,
            token,
        } => {
            let options = query::QueryOptions {
                limit: limit.filter(|&n| n > 0),
                timeout,
            };
            let result = match server {
                Some(server) => remote_query(&project, &server, token, &sql, options).await?,
                None => {
                    let catalog = open_catalog(&project).await?;
                    let engine = query::QueryEngine::new(catalog, Registry::default());
                    engine
                        .run(&sql, &strata_catalog::Principal::admin(), options)
                        .await?
                }
            };
            match rows {
                Some(RowFormat::Json) => print_json(&batches_to_json_rows(&result.batches)?),
                Some(format) => {
                    use std::io::Write;
                    std::io::stdout().write_all(&query::output::encode(&result, format)?)?;
                }
                None => {
                    println!(
                        "{}",
                        arrow::util::pretty::pretty_format_batches(&result.batches)?
                    );
                    let count = result.row_count();
                    let more = if result.truncated {
                        " (cut off by --limit)"
                    } else {
                        ""
                    };
                    println!("({count} row{}{more})", if count == 1 { "" } else { "s" });
                }
            }
            Ok(())
        }
        Command::Run {
            dir,
            duration,
            until_idle,
            port,
            pg_port,
            host,
        } => {
            let catalog = open_catalog(dir.as_deref().unwrap_or(&project)).await?;
            let registry = Registry::default();
            let options = RunOptions {
                duration,
                until_idle,
                progress: true,
            };
            // Every pipeline is checked before the servers start and anything says "running".
            let prepared = prepare_project(&catalog, options, &registry).await?;
            let servers = start_servers(&catalog, &registry, &host, port, pg_port).await?;
            eprintln!(
                "strata running; API on http://{0}/api/v1, lineage browser on http://{0}/, PostgreSQL on {1}; the admin token is in {2} (Ctrl-C stops)",
                servers.http,
                servers.pg,
                serve::admin_token_path(&catalog).display()
            );
            let summary = prepared.run().await;
            drop(servers);
            let summary = summary?;
            match format {
                Format::Json => print_json(&summary),
                Format::Table | Format::Dot => println!("{}", run_table(&summary)),
            }
            Ok(())
        }
        Command::Demo {
            duration,
            speed,
            port,
            pg_port,
            host,
            example,
        } => {
            let dir = given_project.unwrap_or_else(|| PathBuf::from("strata-demo"));
            let options = demo::DemoOptions {
                example,
                dir,
                duration,
                speed,
                progress: true,
            };
            let (catalog, generator) = demo::prepare(&options).await?;
            let registry = Registry::default();
            let servers = start_servers(&catalog, &registry, &host, port, pg_port).await?;
            let token = serve::admin_token(&catalog).await?;
            eprintln!(
                "strata demo in {0}: events flow into a Kafka mock cluster, pipelines build the layers from ODS up\n  API:               http://{1}/api/v1\n  lineage browser:   http://{1}/ui/lineage?token={2}\n  PostgreSQL:        psql \"postgres://admin:{2}@{3}/strata\"\n  admin token:       {2}  (also in {4})\n(Ctrl-C stops)",
                options.dir.display(),
                servers.http,
                token,
                servers.pg,
                serve::admin_token_path(&catalog).display(),
            );
            let summary = demo::run(&catalog, generator, &options, &registry).await;
            drop(servers);
            let summary = summary?;
            match format {
                Format::Json => print_json(&summary),
                Format::Table | Format::Dot => {
                    let events: Vec<String> = summary
                        .events
                        .iter()
                        .map(|(kind, count)| format!("{count} {}", kind.replace('_', " ")))
                        .collect();
                    println!("produced {}", events.join(", "));
                    println!("{}", run_table(&summary.run));
                    let table = match example {
                        demo::Example::Shop => "shop.app_city_gmv",
                        demo::Example::Iot => "iot.app_alarm_transitions",
                    };
                    println!(
                        "the tables stay in {}: strata --project {} query \"SELECT * FROM {table}\"",
                        summary.project, summary.project
                    );
                }
            }
            Ok(())
        }
        Command::Lineage {
            node,
            upstream,
            downstream,
            depth,
            columns,
            impact,
            to,
            at,
        } => {
            let catalog = open_catalog(&project).await?;
            let at = at.as_deref().map(lineage::parse_time).transpose()?;
            let snapshot = lineage::at(&catalog, at).await?;
            if impact {
                let impact = snapshot.graph.impact(&node)?;
                match format {
                    Format::Json => print_json(&impact),
                    Format::Table | Format::Dot => print_impact(&impact),
                }
                return Ok(());
            }
            if let Some(to) = to {
                let path = snapshot.graph.path(&node, &to)?;
                match format {
                    Format::Json => {
                        print_json(&serde_json::json!({"from": node, "to": to, "path": path}))
                    }
                    Format::Table | Format::Dot => match path {
                        Some(path) => println!("{}", path.join(" → ")),
                        None => println!("no lineage path between {node} and {to}"),
                    },
                }
                return Ok(());
            }
            let direction = match (upstream, downstream) {
                (true, _) => strata_lineage::Direction::Upstream,
                (_, true) => strata_lineage::Direction::Downstream,
                _ => strata_lineage::Direction::Both,
            };
            let view = lineage::LineageView::around(&snapshot, &node, direction, depth, columns)?;
            match format {
                Format::Json => print_json(&view),
                Format::Dot => print!("{}", view.subgraph.to_dot()),
                Format::Table => print_lineage(&view),
            }
            Ok(())
        }
        Command::Check {
            table,
            since,
            history,
        } => {
            let catalog = open_catalog(&project).await?;
            let table = table.as_deref().map(parse_table).transpose()?;
            let failed = if history {
                let table = table.expect("clap requires a table with --history");
                let results = strata_server::quality::history(&catalog, &table).await?;
                match format {
                    Format::Json => print_json(&results),
                    Format::Table | Format::Dot => print_results(&results),
                }
                results.iter().any(|r| r.failed())
            } else {
                let since_ms = match since {
                    Some(span) => {
                        Some(strata_pipelines::runner::now_ms() - span.as_millis() as i64)
                    }
                    None => strata_server::quality::last_run_start(&catalog),
                };
                let statuses =
                    strata_server::quality::status(&catalog, table.as_ref(), since_ms).await?;
                match format {
                    Format::Json => print_json(&statuses),
                    Format::Table | Format::Dot => {
                        match (since_ms, since) {
                            (Some(at), Some(_)) => {
                                println!("results since {}", lineage::time_text(at))
                            }
                            (Some(at), None) => println!(
                                "results since {}, when strata run last started (--since to choose)",
                                lineage::time_text(at)
                            ),
                            (None, _) => println!("all results (the pipelines never ran here)"),
                        }
                        print_statuses(&statuses)
                    }
                }
                statuses.iter().any(|s| s.failed())
            };
            if failed {
                std::process::exit(1);
            }
            Ok(())
        }
        Command::Quarantine(QuarantineCommand::Replay { table, rule }) => {
            let catalog = open_catalog(&project).await?;
            let name = parse_table(&table)?;
            let report =
                strata_server::quarantine::replay(&catalog, &name, rule.as_deref()).await?;
            match format {
                Format::Json => print_json(&report),
                Format::Table | Format::Dot => {
                    if report.resumed {
                        println!(
                            "finished replay {} of {}, which had stopped",
                            report.replay_id, report.table
                        );
                    }
                    println!(
                        "{}: replayed {} records through {}: {} committed, {} quarantined again, {} filtered out by its WHERE",
                        report.table,
                        report.replayed,
                        report.pipeline,
                        report.committed,
                        report.quarantined_again,
                        report.filtered
                    );
                }
            }
            Ok(())
        }
        Command::Produce { table, file } => {
            let catalog = open_catalog(&project).await?;
            let name = parse_table(&table)?;
            let report = match &file {
                Some(path) => {
                    let opened = std::fs::File::open(path)
                        .with_context(|| format!("opening {}", path.display()))?;
                    strata_server::produce::produce(
                        &catalog,
                        &name,
                        std::io::BufReader::new(opened),
                        &path.display().to_string(),
                    )
                    .await?
                }
                None => {
                    strata_server::produce::produce(
                        &catalog,
                        &name,
                        std::io::stdin().lock(),
                        "stdin",
                    )
                    .await?
                }
            };
            match format {
                Format::Json => print_json(&report),
                Format::Table | Format::Dot => println!(
                    "{}: produced {} records to topic {}",
                    report.table, report.records, report.topic
                ),
            }
            Ok(())
        }
        Command::Dev(DevCommand::Kafka { port, host, topics }) => {
            strata_server::dev_kafka::serve(&host, port, &topics).await
        }
        Command::Pipeline(PipelineCommand::Reset { name, from }) => {
            let catalog = open_catalog(&project).await?;
            let from = match from {
                ResetFromArg::Committed => strata_pipelines::ResetFrom::Committed,
                ResetFromArg::Earliest => strata_pipelines::ResetFrom::Earliest,
                ResetFromArg::Latest => strata_pipelines::ResetFrom::Latest,
            };
            let report = strata_server::run::reset_pipeline(&catalog, &name, from).await?;
            match format {
                Format::Json => print_json(&report),
                Format::Table | Format::Dot => println!(
                    "pipeline {}: state dropped; it reads {} from {} on its next run",
                    report.pipeline, report.source, report.from
                ),
            }
            Ok(())
        }
        Command::History { table, limit } => {
            let catalog = open_catalog(&project).await?;
            let name = parse_table(&table)?;
            let versions = catalog.history(&name, limit).await?;
            match format {
                Format::Json => print_json(&versions),
                Format::Table | Format::Dot => {
                    let rows: Vec<Vec<String>> = versions
                        .iter()
                        .map(|v| {
                            vec![
                                v.version.to_string(),
                                v.committed_ms
                                    .and_then(chrono::DateTime::from_timestamp_millis)
                                    .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
                                    .unwrap_or_default(),
                                v.operation.clone(),
                                v.rows_added.map(|n| n.to_string()).unwrap_or_default(),
                            ]
                        })
                        .collect();
                    println!(
                        "{}",
                        views::human_table(
                            &["version", "committed", "operation", "rows added"],
                            rows
                        )
                    );
                }
            }
            Ok(())
        }
        Command::Optimize { table } => {
            let catalog = open_catalog(&project).await?;
            let name = parse_table(&table)?;
            let compaction = catalog.optimize(&name).await?;
            match format {
                Format::Json => print_json(&compaction),
                Format::Table | Format::Dot => println!(
                    "{name}: {} files compacted into {}, now at version {} (log checkpointed)",
                    compaction.files_removed, compaction.files_added, compaction.version
                ),
            }
            Ok(())
        }
        Command::Bench(BenchCommand::Freshness {
            records,
            rate,
            poll_ms,
        }) => {
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
        Command::Bench(BenchCommand::Quality { records }) => {
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
        Command::Bench(BenchCommand::Ingest { records }) => {
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
        Command::Bench(BenchCommand::Lookup {
            records,
            users,
            mysql_url,
        }) => {
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
        Command::Bench(BenchCommand::Nexmark {
            query,
            events,
            source,
            rate,
        }) => {
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
        Command::Bench(BenchCommand::Lineage { tables, columns }) => {
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
        Command::Serve {
            port,
            pg_port,
            host,
        } => {
            let catalog = open_catalog(&project).await?;
            let servers =
                start_servers(&catalog, &Registry::default(), &host, port, pg_port).await?;
            eprintln!(
                "strata serving the API on http://{0}/api/v1, the lineage browser on http://{0}/ and PostgreSQL on {1}; the admin token is in {2} (Ctrl-C stops)",
                servers.http,
                servers.pg,
                serve::admin_token_path(&catalog).display()
            );
            let _ = tokio::signal::ctrl_c().await;
            drop(servers);
            Ok(())
        }
        Command::Token(command) => {
            let catalog = open_catalog(&project).await?;
            run_token(&catalog, command, format).await
        }
    }
}

/// Binds the API and PostgreSQL ports and starts both, with the admin token in place.
async fn start_servers(
    catalog: &Catalog,
    registry: &Registry,
    host: &str,
    port: u16,
    pg_port: u16,
) -> anyhow::Result<serve::Servers> {
    serve::admin_token(catalog).await?;
    let http = bind(host, port, "the API", "--port").await?;
    let pg = bind(host, pg_port, "the PostgreSQL protocol", "--pg-port").await?;
    Ok(serve::start(catalog, registry, http, pg)?)
}

async fn run_token(catalog: &Catalog, command: TokenCommand, format: Format) -> anyhow::Result<()> {
    let store = catalog.store();
    match command {
        TokenCommand::Create {
            name,
            spaces,
            read,
            write,
        } => {
            let access = match (read, write) {
                (_, true) => strata_catalog::Access::Write,
                _ => strata_catalog::Access::Read,
            };
            let grants = spaces
                .into_iter()
                .map(|space| strata_catalog::Grant { space, access })
                .collect();
            let made = store.create_token(&name, grants).await?;
            match format {
                Format::Json => print_json(&made),
                Format::Table | Format::Dot => {
                    println!("{}", made.secret);
                    eprintln!(
                        "token {} ({}) grants {}; its secret is shown only now",
                        made.info.id,
                        made.info.name,
                        grants_text(&made.info.grants)
                    );
                }
            }
        }
        TokenCommand::List => {
            let tokens = store.list_tokens().await?;
            match format {
                Format::Json => print_json(&tokens),
                Format::Table | Format::Dot => {
                    let rows = tokens
                        .iter()
                        .map(|t| {
                            vec![
                                t.id.clone(),
                                t.name.clone(),
                                grants_text(&t.grants),
                                chrono::DateTime::from_timestamp_millis(t.created_at_ms)
                                    .map(|t| t.format("%Y-%m-%d %H:%M:%S").to_string())
                                    .unwrap_or_default(),
                                if t.revoked { "revoked" } else { "active" }.to_string(),
                            ]
                        })
                        .collect();
                    println!(
                        "{}",
                        views::human_table(&["id", "name", "grants", "created", "status"], rows)
                    );
                }
            }
        }
        TokenCommand::Revoke { id } => {
            if !store.revoke_token(&id).await? {
                bail!("no token has the id {id:?}; `strata token list` shows them");
            }
            match format {
                Format::Json => print_json(&serde_json::json!({"revoked": id})),
                Format::Table | Format::Dot => println!("revoked token {id}"),
            }
        }
    }
    Ok(())
}

fn grants_text(grants: &[strata_catalog::Grant]) -> String {
    grants
        .iter()
        .map(|g| format!("{} {}", g.access, g.space))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Asks a running strata's API, in Arrow IPC, so that types arrive intact.
async fn remote_query(
    project: &Path,
    server: &str,
    token: Option<String>,
    sql: &str,
    options: query::QueryOptions,
) -> anyhow::Result<query::QueryOutput> {
    let token = match token {
        Some(token) => token,
        None => {
            let path = Project::load(project)?
                .state_dir()
                .join(serve::ADMIN_TOKEN_FILE);
            std::fs::read_to_string(&path)
                .with_context(|| {
                    format!(
                        "no token: pass --token (or STRATA_TOKEN), or run where {} exists",
                        path.display()
                    )
                })?
                .trim()
                .to_string()
        }
    };
    let body = serde_json::json!({
        "sql": sql,
        "format": "arrow",
        "limit": options.limit.unwrap_or(0),
        "timeout_ms": options.timeout.map_or(0, |t| t.as_millis() as u64),
    });
    let url = format!("{}/api/v1/query", server.trim_end_matches('/'));
    let response = reqwest::Client::new()
        .post(&url)
        .bearer_auth(token)
        .json(&body)
        .send()
        .await
        .with_context(|| format!("cannot reach {url}; is strata running there?"))?;
    let truncated = response.headers().contains_key("x-strata-truncated");
    if !response.status().is_success() {
        let status = response.status();
        let error: serde_json::Value = response.json().await.unwrap_or_default();
        let message = error["error"].as_str().unwrap_or("no message");
        match error["hint"].as_str() {
            Some(hint) => bail!("{status}: {message}\n  hint: {hint}"),
            None => bail!("{status}: {message}"),
        }
    }
    let bytes = response.bytes().await?;
    let reader = arrow::ipc::reader::StreamReader::try_new(std::io::Cursor::new(bytes), None)?;
    let schema = reader.schema();
    let batches = reader.collect::<Result<Vec<_>, _>>()?;
    Ok(query::QueryOutput {
        schema,
        batches,
        truncated,
    })
}

/// Listens on `host:port` for `what`; a taken port names the flag that moves it.
async fn bind(
    host: &str,
    port: u16,
    what: &str,
    flag: &str,
) -> anyhow::Result<tokio::net::TcpListener> {
    let address: SocketAddr = format!("{host}:{port}")
        .parse()
        .with_context(|| format!("{host}:{port} is not an address to listen on"))?;
    tokio::net::TcpListener::bind(address).await.with_context(|| {
        format!("{what} cannot listen on {address}; is the port taken? pass {flag} (0 picks a free one)")
    })
}

fn run_table(summary: &strata_server::run::RunSummary) -> String {
    views::human_table(
        &[
            "table",
            "layer",
            "pipeline",
            "records in",
            "committed",
            "quarantined",
            "late",
            "commits",
            "files",
        ],
        summary
            .tables
            .iter()
            .map(|t| {
                vec![
                    t.name.clone(),
                    t.layer.clone(),
                    t.pipeline.clone(),
                    t.records_in.to_string(),
                    t.rows_committed.to_string(),
                    t.quarantined_rows.to_string(),
                    t.late_rows.to_string(),
                    t.commits.to_string(),
                    t.files.map(|f| f.to_string()).unwrap_or_default(),
                ]
            })
            .collect(),
    )
}

async fn open_catalog(dir: &Path) -> anyhow::Result<Catalog> {
    let project = Project::load(dir)?;
    Ok(Catalog::open(project).await?)
}

fn parse_table(text: &str) -> anyhow::Result<TableName> {
    Ok(text.parse::<TableName>()?)
}

async fn run_catalog(
    catalog: &Catalog,
    command: CatalogCommand,
    format: Format,
) -> anyhow::Result<()> {
    match command {
        CatalogCommand::Register { files, update } => {
            let files = expand_sql_files(&files)?;
            let mode = if update {
                RegisterMode::Update
            } else {
                RegisterMode::Create
            };
            let registered = catalog.register_files(&files, mode).await?;
            match format {
                Format::Json => print_json(&registered),
                Format::Table | Format::Dot => println!("{}", views::registered_table(&registered)),
            }
        }
        CatalogCommand::List => {
            let summaries: Vec<TableSummary> = catalog
                .list()
                .await?
                .iter()
                .map(TableSummary::new)
                .collect();
            match format {
                Format::Json => print_json(&summaries),
                Format::Table if summaries.is_empty() => {
                    println!(
                        "no tables yet: `strata catalog register FILE.sql` or `strata catalog discover CONNECTION`"
                    )
                }
                Format::Table | Format::Dot => println!("{}", views::summaries_table(&summaries)),
            }
        }
        CatalogCommand::Show { table, version } => {
            let name = parse_table(&table)?;
            match version {
                Some(version) => {
                    let schema = catalog.store().schema_version(&name, version).await?;
                    let view = SchemaVersionView::new(&schema);
                    match format {
                        Format::Json => print_json(&view),
                        Format::Table | Format::Dot => {
                            println!(
                                "{name} schema version {} (recorded {})",
                                view.version, view.created_at
                            );
                            println!("{}", views::columns_table(&view.columns, &[]));
                        }
                    }
                }
                None => {
                    let detail = TableDetail::new(&catalog.get(&name).await?);
                    match format {
                        Format::Json => print_json(&detail),
                        Format::Table | Format::Dot => print_detail(&detail),
                    }
                }
            }
        }
        CatalogCommand::History { table } => {
            let name = parse_table(&table)?;
            let versions: Vec<SchemaVersionView> = catalog
                .schema_versions(&name)
                .await?
                .iter()
                .map(SchemaVersionView::new)
                .collect();
            match format {
                Format::Json => print_json(&versions),
                Format::Table | Format::Dot => println!(
                    "{}",
                    views::human_table(
                        &["version", "recorded", "columns"],
                        versions
                            .iter()
                            .map(|v| vec![
                                v.version.to_string(),
                                v.created_at.clone(),
                                v.columns
                                    .iter()
                                    .map(|c| format!("{} {}", c.name, c.sql_type))
                                    .collect::<Vec<_>>()
                                    .join(", "),
                            ])
                            .collect(),
                    )
                ),
            }
        }
        CatalogCommand::Drop { table } => {
            let name = parse_table(&table)?;
            let entry = catalog.drop_table(&name).await?;
            match format {
                Format::Json => print_json(&serde_json::json!({"dropped": name.to_string()})),
                Format::Table | Format::Dot => println!(
                    "dropped {name} from the catalog; its data at {} was kept",
                    entry.def.kind.location()
                ),
            }
        }
        CatalogCommand::Discover {
            connection,
            space,
            layer,
            topics,
            sample,
            yes,
            dry_run,
        } => {
            let layer = layer.as_deref().map(str::parse::<Layer>).transpose()?;
            let options = DiscoverOptions {
                space,
                layer,
                topics,
                sample_per_partition: sample,
            };
            let discovery = catalog.discover(&connection, &options).await?;
            let mut view = DiscoveryView::new(&discovery);
            if format == Format::Table {
                print_discovery(&view);
            }
            let confirmed = !dry_run
                && !discovery.tables.is_empty()
                && (!discovery.inferred || yes || confirm()?);
            if confirmed {
                let registered = catalog.register_discovered(discovery.tables).await?;
                if format == Format::Table {
                    println!("{}", views::registered_table(&registered));
                }
                view.registered = Some(registered);
                view.confirmation_needed = false;
            } else if format == Format::Table && !discovery.tables.is_empty() {
                println!(
                    "nothing registered{}",
                    if dry_run { " (dry run)" } else { "" }
                );
            }
            if format == Format::Json {
                print_json(&view);
            }
            if discovery.inferred
                && !dry_run
                && !yes
                && view.registered.is_none()
                && !std::io::stdin().is_terminal()
            {
                bail!(
                    "the schemas above were inferred from samples; re-run with --yes to register them"
                );
            }
        }
    }
    Ok(())
}

/// Asks on a terminal; without one, registers nothing (the caller says how to proceed).
fn confirm() -> anyhow::Result<bool> {
    if !std::io::stdin().is_terminal() {
        return Ok(false);
    }
    print!("register these inferred schemas? [y/N] ");
    std::io::stdout().flush()?;
    let mut answer = String::new();
    std::io::stdin().read_line(&mut answer)?;
    Ok(matches!(answer.trim(), "y" | "Y" | "yes"))
}

/// Files as given; a directory stands for its `.sql` files, in name order.
fn expand_sql_files(paths: &[PathBuf]) -> anyhow::Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for path in paths {
        if path.is_dir() {
            let mut found: Vec<PathBuf> = std::fs::read_dir(path)
                .with_context(|| format!("reading {}", path.display()))?
                .flatten()
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|e| e == "sql"))
                .collect();
            if found.is_empty() {
                bail!("{} holds no .sql files", path.display());
            }
            found.sort();
            files.extend(found);
        } else {
            files.push(path.clone());
        }
    }
    Ok(files)
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

/// Lineage for people: the nodes by kind, then the edges.
fn print_lineage(view: &lineage::LineageView) {
    use strata_lineage::{EdgeKind, Node};
    println!(
        "lineage of {} ({}, {} level, depth {}) — graph version {}, recorded {}",
        view.node, view.direction, view.level, view.depth, view.version, view.recorded_at
    );
    let mut nodes = comfy_table::Table::new();
    nodes.load_preset(comfy_table::presets::UTF8_FULL_CONDENSED);
    nodes.set_header(["node", "kind", "layer / type", "owner"]);
    for node in &view.subgraph.nodes {
        let (kind, detail, owner) = match node {
            Node::Table {
                layer,
                connector,
                owner,
                ..
            } => ("table", format!("{layer} ({connector})"), owner.clone()),
            Node::Column { data_type, .. } => ("column", data_type.clone(), None),
            Node::Pipeline { .. } => ("pipeline", String::new(), None),
        };
        nodes.add_row([
            node.id(),
            kind.to_string(),
            detail,
            owner.unwrap_or_default(),
        ]);
    }
    println!("{nodes}");
    let mut edges = comfy_table::Table::new();
    edges.load_preset(comfy_table::presets::UTF8_FULL_CONDENSED);
    edges.set_header(["from", "to", "how", "pipeline"]);
    for edge in &view.subgraph.edges {
        let (how, pipeline) = match &edge.kind {
            EdgeKind::Has => continue,
            EdgeKind::Reads => ("read by", String::new()),
            EdgeKind::Writes => ("writes", String::new()),
            EdgeKind::Column { kind, pipeline } => (kind.as_str(), pipeline.clone()),
        };
        edges.add_row([
            edge.from.clone(),
            edge.to.clone(),
            how.to_string(),
            pipeline,
        ]);
    }
    println!("{edges}");
}

/// What a column change breaks, for people.
fn print_impact(impact: &strata_lineage::Impact) {
    println!(
        "changing or dropping {} affects {} column{} in {} table{}, through {}",
        impact.column,
        impact.columns.len(),
        if impact.columns.len() == 1 { "" } else { "s" },
        impact.tables.len(),
        if impact.tables.len() == 1 { "" } else { "s" },
        if impact.pipelines.is_empty() {
            "no pipeline".to_string()
        } else {
            impact.pipelines.join(", ")
        }
    );
    let mut table = comfy_table::Table::new();
    table.load_preset(comfy_table::presets::UTF8_FULL_CONDENSED);
    table.set_header(["column", "uses it as", "pipelines away"]);
    for (column, kind, hops) in &impact.columns {
        table.add_row([column.clone(), kind.as_str().to_string(), hops.to_string()]);
    }
    println!("{table}");
}

fn quality_table(header: &[&str]) -> comfy_table::Table {
    let mut table = comfy_table::Table::new();
    table.load_preset(comfy_table::presets::UTF8_FULL_CONDENSED);
    table.set_header(header.to_vec());
    table
}

fn show_number(value: Option<f64>) -> String {
    value.map(|v| format!("{v}")).unwrap_or_default()
}

fn print_statuses(statuses: &[strata_server::quality::RuleStatus]) {
    if statuses.is_empty() {
        println!("no rules declared\n  hint: add checks/<table>.toml files (docs/quality.md)");
        return;
    }
    let mut table = quality_table(&[
        "table",
        "rule",
        "check",
        "action",
        "status",
        "evaluations",
        "failed",
        "failed rows",
        "last failure",
        "observed",
        "bound",
        "at",
        "detail",
    ]);
    for status in statuses {
        let last = status.last.as_ref();
        let failure = status.last_failure.as_ref();
        table.add_row(vec![
            status.table.clone(),
            status.rule.clone(),
            status.check.clone(),
            status.action.clone(),
            status.status.to_string(),
            status.evaluations.to_string(),
            status.failures.to_string(),
            status.failed_rows.to_string(),
            failure
                .map(|r| lineage::time_text(r.at_ms))
                .unwrap_or_default(),
            show_number(last.and_then(|r| r.observed)),
            last.and_then(|r| r.bound.clone()).unwrap_or_default(),
            last.map(|r| lineage::time_text(r.at_ms))
                .unwrap_or_default(),
            failure
                .or(last)
                .and_then(|r| r.detail.clone())
                .unwrap_or_default(),
        ]);
    }
    println!("{table}");
}

fn print_results(results: &[strata_quality::CheckResult]) {
    let mut table = quality_table(&[
        "table", "rule", "check", "window", "status", "passed", "failed", "observed", "bound",
        "detail",
    ]);
    for result in results {
        table.add_row(vec![
            result.table.clone(),
            result.rule.clone(),
            result.check.clone(),
            result
                .window_start_ms
                .map(lineage::time_text)
                .unwrap_or_else(|| "all rows".to_string()),
            if result.failed() { "FAIL" } else { "pass" }.to_string(),
            result.passed.to_string(),
            result.failed.to_string(),
            show_number(result.observed),
            result.bound.clone().unwrap_or_default(),
            result.detail.clone().unwrap_or_default(),
        ]);
    }
    println!("{table}");
}

fn print_json<T: serde::Serialize>(value: &T) {
    println!(
        "{}",
        serde_json::to_string_pretty(value).expect("views serialise")
    );
}

fn print_detail(detail: &TableDetail) {
    println!(
        "{}  ({} layer, {} table, schema version {})",
        detail.name, detail.layer, detail.connector, detail.schema_version
    );
    println!("location: {}", detail.location);
    if let Some(description) = &detail.description {
        println!("description: {description}");
    }
    if let Some(owner) = &detail.owner {
        println!("owner: {owner}");
    }
    if !detail.tags.is_empty() {
        println!("tags: {}", detail.tags.join(", "));
    }
    if let Some(watermark) = &detail.watermark {
        println!(
            "watermark: {}",
            watermark["expression"].as_str().unwrap_or_default()
        );
    }
    if let Some(column) = &detail.processing_time {
        println!("processing time: {column}");
    }
    println!(
        "{}",
        views::columns_table(&detail.columns, &detail.primary_key)
    );
}

fn print_discovery(view: &DiscoveryView) {
    for table in &view.tables {
        let how = if view.inferred {
            "inferred schema"
        } else {
            "schema"
        };
        println!(
            "{} ({} layer, {}) {how}:",
            table.name, table.layer, table.location
        );
        if let Some(note) = &table.note {
            println!("  note: {note}");
        }
        println!(
            "{}",
            views::columns_table(&table.columns, &table.primary_key)
        );
    }
    for skipped in &view.skipped {
        println!("skipped {}: {}", skipped.name, skipped.reason);
    }
    if view.tables.is_empty() {
        println!(
            "found nothing to register on connection {}",
            view.connection
        );
    }
}
