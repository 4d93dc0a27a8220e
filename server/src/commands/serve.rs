//! `strata serve`: the HTTP API, the web UI and the PostgreSQL protocol, without pipelines.

use std::path::Path;

use strata_server::run::Registry;
use strata_server::serve;

use super::{open_catalog, start_servers};

pub(crate) async fn run(
    project: &Path,
    port: u16,
    pg_port: u16,
    host: String,
) -> anyhow::Result<()> {
    let catalog = open_catalog(project).await?;
    let servers = start_servers(&catalog, &Registry::default(), &host, port, pg_port).await?;
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
