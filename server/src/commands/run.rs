//! `strata run`: every pipeline of a project, with the HTTP API and PostgreSQL served.

use std::path::{Path, PathBuf};

use strata_server::run::{Registry, RunOptions, prepare_project};
use strata_server::serve;

use super::{Format, open_catalog, print_json, run_table, start_servers};

#[allow(clippy::too_many_arguments)]
pub(crate) async fn run(
    project: &Path,
    dir: Option<PathBuf>,
    duration: Option<std::time::Duration>,
    until_idle: bool,
    port: u16,
    pg_port: u16,
    host: String,
    format: Format,
) -> anyhow::Result<()> {
    let catalog = open_catalog(dir.as_deref().unwrap_or(project)).await?;
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
