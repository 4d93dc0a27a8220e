//! The `strata` commands, one module each, and what several of them share: the output
//! format, opening the project's catalog, naming a table, and starting the servers.

pub(crate) mod bench;
pub(crate) mod catalog;
pub(crate) mod check;
pub(crate) mod demo;
pub(crate) mod dev;
pub(crate) mod explain;
pub(crate) mod history;
pub(crate) mod init;
pub(crate) mod lineage;
pub(crate) mod optimize;
pub(crate) mod pipeline;
pub(crate) mod produce;
pub(crate) mod quarantine;
pub(crate) mod query;
pub(crate) mod run;
pub(crate) mod serve;
pub(crate) mod token;

use std::net::SocketAddr;
use std::path::Path;

use anyhow::Context;
use clap::ValueEnum;
use strata_catalog::{Catalog, Project, TableName};
use strata_server::run::Registry;
use strata_server::views;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum FormatArg {
    /// For people (also `text`).
    #[value(alias = "text")]
    Table,
    Json,
    /// Graphviz, for `strata lineage` and `strata explain`.
    Dot,
    /// Comma-separated values, for `strata query`.
    Csv,
    /// An Arrow IPC stream, for `strata query`.
    Arrow,
}

/// How a command's output is written (query results may also be csv or arrow).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Format {
    Table,
    Json,
    Dot,
}

pub(crate) async fn open_catalog(dir: &Path) -> anyhow::Result<Catalog> {
    let project = Project::load(dir)?;
    Ok(Catalog::open(project).await?)
}

pub(crate) fn parse_table(text: &str) -> anyhow::Result<TableName> {
    Ok(text.parse::<TableName>()?)
}

pub(crate) fn print_json<T: serde::Serialize>(value: &T) {
    println!(
        "{}",
        serde_json::to_string_pretty(value).expect("views serialise")
    );
}

/// Binds the API and PostgreSQL ports and starts both, with the admin token in place.
pub(crate) async fn start_servers(
    catalog: &Catalog,
    registry: &Registry,
    host: &str,
    port: u16,
    pg_port: u16,
) -> anyhow::Result<strata_server::serve::Servers> {
    strata_server::serve::admin_token(catalog).await?;
    let http = bind(host, port, "the API", "--port").await?;
    let pg = bind(host, pg_port, "the PostgreSQL protocol", "--pg-port").await?;
    Ok(strata_server::serve::start(catalog, registry, http, pg)?)
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

pub(crate) fn run_table(summary: &strata_server::run::RunSummary) -> String {
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
