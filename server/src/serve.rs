//! What `strata run`, `strata demo` and `strata serve` listen on: the HTTP API
//! and web UI, and the PostgreSQL protocol, over one query engine.
//!
//! ```text
//!   :7600  HTTP  /api/v1 … , /ui/…     ─┐
//!   :4566  PostgreSQL (psql, BI tools) ─┴─▶ QueryEngine ─▶ catalog + the pipelines running here
//! ```
//!
//! Both need a token. The project's admin token is kept in
//! `DIR/.strata/admin-token` (made at the first start, readable by its owner only).

use std::net::SocketAddr;
use std::path::PathBuf;

use strata_catalog::tokens::EVERY_SPACE;
use strata_catalog::{Access, Catalog, CatalogError, Grant};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use crate::query::QueryEngine;
use crate::run::Registry;

/// The file that holds the project's admin token.
pub const ADMIN_TOKEN_FILE: &str = "admin-token";

/// The servers running, until dropped.
#[derive(Debug)]
pub struct Servers {
    pub http: SocketAddr,
    pub pg: SocketAddr,
    tasks: Vec<JoinHandle<()>>,
}

impl Drop for Servers {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

/// Serves the API on `http` and the PostgreSQL protocol on `pg`.
pub fn start(
    catalog: &Catalog,
    registry: &Registry,
    http: TcpListener,
    pg: TcpListener,
) -> std::io::Result<Servers> {
    let engine = QueryEngine::new(catalog.clone(), registry.clone());
    let addresses = (http.local_addr()?, pg.local_addr()?);
    let router = crate::api::router_for(engine.clone());
    let api = tokio::spawn(async move {
        if let Err(err) = axum::serve(http, router).await {
            tracing::error!("the HTTP API stopped: {err}");
        }
    });
    let pg_server = tokio::spawn(crate::pg::serve(pg, engine));
    Ok(Servers {
        http: addresses.0,
        pg: addresses.1,
        tasks: vec![api, pg_server],
    })
}

/// Where the project's admin token is kept.
pub fn admin_token_path(catalog: &Catalog) -> PathBuf {
    catalog.project().state_dir().join(ADMIN_TOKEN_FILE)
}

/// The project's admin token (read and write on every space): the one in
/// `DIR/.strata/admin-token` while it is valid, else a new one written there.
pub async fn admin_token(catalog: &Catalog) -> Result<String, CatalogError> {
    let path = admin_token_path(catalog);
    if let Ok(text) = std::fs::read_to_string(&path) {
        let token = text.trim().to_string();
        if let Ok(principal) = catalog.store().authenticate(&token).await
            && principal.allows(EVERY_SPACE, Access::Write)
        {
            return Ok(token);
        }
    }
    let made = catalog
        .store()
        .create_token(
            "admin",
            vec![Grant {
                space: EVERY_SPACE.to_string(),
                access: Access::Write,
            }],
        )
        .await?;
    let io_error = |source: std::io::Error| CatalogError::Config {
        path: path.clone(),
        message: format!("cannot write the admin token: {source}"),
        hint: Some("check that the project's .strata directory is writable".to_string()),
    };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(io_error)?;
    }
    write_private(&path, &made.secret).map_err(io_error)?;
    Ok(made.secret)
}

/// Writes `text` to `path`, readable by its owner only.
fn write_private(path: &std::path::Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    writeln!(file, "{text}")
}
