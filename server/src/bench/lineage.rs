//! `strata bench lineage`: a generated warehouse of `tables` tables in four
//! layers (ODS → DWD → DWS → APP chains of `columns` columns each, one
//! pipeline per non-ODS table), measured through the API the lineage browser
//! uses: the first build of the graph (every pipeline planned), then queries
//! around a node at table and column level from the kept graph.

use std::time::Instant;

use anyhow::Context;
use serde::Serialize;
use strata_catalog::{Catalog, Project, RegisterMode};

#[derive(Debug, Serialize)]
pub struct LineageReport {
    pub tables: usize,
    pub columns: usize,
    pub pipelines: usize,
    pub nodes: usize,
    /// Planning every pipeline and building the graph, in milliseconds.
    pub build_ms: f64,
    /// The median time of a depth-3 query around a DWD table, at table and column level.
    pub table_query_ms: f64,
    pub column_query_ms: f64,
    /// The size of the column-level answer the browser receives.
    pub column_answer_bytes: usize,
}

/// Builds the warehouse in a temporary project and measures.
pub async fn lineage(tables: usize, columns: usize) -> anyhow::Result<LineageReport> {
    let chains = (tables / 4).max(1);
    let dir = tempfile::tempdir()?;
    std::fs::write(
        dir.path().join("strata.toml"),
        "[connections.events]\nkind = \"kafka\"\nbootstrap-servers = \"127.0.0.1:9\"\n",
    )?;
    let column_list = |prefix: &str| -> String {
        (0..columns)
            .map(|c| format!("{prefix}c{c} BIGINT"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let mut ddl = String::new();
    for chain in 0..chains {
        ddl.push_str(&format!(
            "CREATE TABLE w.ods_t{chain} ({}) WITH ('connector' = 'kafka', 'topic' = 't{chain}', 'format' = 'json', 'connection' = 'events');\n",
            column_list("")
        ));
        for layer in ["dwd", "dws", "app"] {
            // The aggregate upserts by its grouping key, and so does the APP table after it.
            let key = if layer == "dwd" {
                ""
            } else {
                ", PRIMARY KEY (c0) NOT ENFORCED"
            };
            ddl.push_str(&format!(
                "CREATE TABLE w.{layer}_t{chain} ({}{key}) WITH ('connector' = 'delta');\n",
                column_list("")
            ));
        }
    }
    let pipelines = dir.path().join("pipelines");
    for (layer, from) in [("dwd", "ods"), ("dws", "dwd"), ("app", "dws")] {
        std::fs::create_dir_all(pipelines.join(layer))?;
        for chain in 0..chains {
            let select: Vec<String> = (0..columns)
                .map(|c| match (layer, c) {
                    ("dws", 0) => "c0".to_string(),
                    ("dws", _) => format!("SUM(c{c})"),
                    ("app", 0) => "c0".to_string(),
                    _ => format!("c{c} + 1"),
                })
                .collect();
            let tail = if layer == "dws" {
                " GROUP BY c0"
            } else {
                " WHERE c1 > 0"
            };
            std::fs::write(
                pipelines.join(layer).join(format!("{layer}_t{chain}.sql")),
                format!(
                    "INSERT INTO w.{layer}_t{chain} SELECT {} FROM w.{from}_t{chain}{tail}",
                    select.join(", ")
                ),
            )?;
        }
    }
    let catalog = Catalog::open(Project::load(dir.path())?).await?;
    catalog
        .register_sql("bench.sql", &ddl, RegisterMode::Create)
        .await
        .context("registering the generated tables")?;
    let token = crate::serve::admin_token(&catalog).await?;
    let router = crate::api::router(catalog, crate::run::Registry::default());
    let node = format!("w.dwd_t{}", chains / 2);
    let started = Instant::now();
    let (first, _) = get(&router, &format!("/api/v1/lineage/{node}?depth=1"), &token).await?;
    let build_ms = started.elapsed().as_secs_f64() * 1000.0;
    let _ = first;
    let mut table_times = Vec::new();
    let mut column_times = Vec::new();
    let mut column_answer_bytes = 0;
    let mut nodes = 0;
    for _ in 0..9 {
        let started = Instant::now();
        get(&router, &format!("/api/v1/lineage/{node}?depth=3"), &token).await?;
        table_times.push(started.elapsed().as_secs_f64() * 1000.0);
        let started = Instant::now();
        let (answer, bytes) = get(
            &router,
            &format!("/api/v1/lineage/{node}?depth=3&level=column"),
            &token,
        )
        .await?;
        column_times.push(started.elapsed().as_secs_f64() * 1000.0);
        column_answer_bytes = bytes;
        nodes = answer["nodes"].as_array().map_or(0, Vec::len);
    }
    let median = |mut times: Vec<f64>| {
        times.sort_by(f64::total_cmp);
        times[times.len() / 2]
    };
    Ok(LineageReport {
        tables: chains * 4,
        columns: chains * 4 * columns,
        pipelines: chains * 3,
        nodes,
        build_ms,
        table_query_ms: median(table_times),
        column_query_ms: median(column_times),
        column_answer_bytes,
    })
}

/// GETs `uri` from the API; its JSON and size.
async fn get(
    router: &axum::Router,
    uri: &str,
    token: &str,
) -> anyhow::Result<(serde_json::Value, usize)> {
    use tower::ServiceExt;
    let request = axum::http::Request::builder()
        .uri(uri)
        .header("authorization", format!("Bearer {token}"))
        .body(axum::body::Body::empty())?;
    let response = router.clone().oneshot(request).await?;
    let status = response.status();
    let bytes = axum::body::to_bytes(response.into_body(), usize::MAX).await?;
    anyhow::ensure!(
        status.is_success(),
        "{uri}: {status} {}",
        String::from_utf8_lossy(&bytes)
    );
    Ok((serde_json::from_slice(&bytes)?, bytes.len()))
}
