//! `strata`: the command line of the Strata warehouse.

mod commands;

use std::path::PathBuf;

use anyhow::bail;
use clap::{Parser, Subcommand};
use commands::bench::BenchCommand;
use commands::catalog::CatalogCommand;
use commands::dev::DevCommand;
use commands::pipeline::PipelineCommand;
use commands::quarantine::QuarantineCommand;
use commands::token::TokenCommand;
use commands::{Format, FormatArg};
use strata_server::demo;
use strata_server::query::output::RowFormat;

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
    /// A pipeline's operators as it runs them: each with the changelog it emits (append-only,
    /// upsert or retracting), its key, its watermark and its state; or why it is refused.
    Explain {
        /// The pipeline, as /api/v1/pipelines names it, or a pipeline file's path.
        name: String,
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

/// jemalloc, as TiKV and RisingWave run their storage engines on: keyed
/// state's memtables and blocks are allocated on one thread and freed on
/// another, which glibc's per-thread arenas keep as resident memory; jemalloc
/// hands it back to the system from a background thread.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// jemalloc's options (`MALLOC_CONF` still overrides them): purge freed pages
/// from a background thread, within a second.
#[allow(non_upper_case_globals)]
#[unsafe(export_name = "_rjem_malloc_conf")]
pub static malloc_conf: &[u8] = b"background_thread:true,dirty_decay_ms:1000,muzzy_decay_ms:0\0";

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
    // The DDL learns the connectors the engine brings (datagen) before any catalog opens.
    strata_pipelines::registry::declare_connectors();
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
    if format == Format::Dot
        && !matches!(
            cli.command,
            Command::Lineage { .. } | Command::Explain { .. }
        )
    {
        bail!("--format dot is for strata lineage and strata explain; use table or json here");
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
        Command::Init { dir } => commands::init::run(dir, format),
        Command::Catalog(command) => commands::catalog::run(&project, command, format).await,
        Command::Query {
            sql,
            limit,
            timeout,
            server,
            token,
        } => commands::query::run(&project, sql, limit, timeout, server, token, rows).await,
        Command::Run {
            dir,
            duration,
            until_idle,
            port,
            pg_port,
            host,
        } => {
            commands::run::run(
                &project, dir, duration, until_idle, port, pg_port, host, format,
            )
            .await
        }
        Command::Demo {
            duration,
            speed,
            port,
            pg_port,
            host,
            example,
        } => {
            commands::demo::run(
                given_project,
                duration,
                speed,
                port,
                pg_port,
                host,
                example,
                format,
            )
            .await
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
            commands::lineage::run(
                &project, node, upstream, downstream, depth, columns, impact, to, at, format,
            )
            .await
        }
        Command::Check {
            table,
            since,
            history,
        } => commands::check::run(&project, table, since, history, format).await,
        Command::Quarantine(command) => commands::quarantine::run(&project, command, format).await,
        Command::Produce { table, file } => {
            commands::produce::run(&project, table, file, format).await
        }
        Command::Dev(command) => commands::dev::run(command).await,
        Command::Pipeline(command) => commands::pipeline::run(&project, command, format).await,
        Command::History { table, limit } => {
            commands::history::run(&project, table, limit, format).await
        }
        Command::Optimize { table } => commands::optimize::run(&project, table, format).await,
        Command::Explain { name } => commands::explain::run(&project, name, format).await,
        Command::Bench(command) => commands::bench::run(command, format).await,
        Command::Serve {
            port,
            pg_port,
            host,
        } => commands::serve::run(&project, port, pg_port, host).await,
        Command::Token(command) => commands::token::run(&project, command, format).await,
    }
}
