//! The project's lineage graph, as `strata lineage` and `/api/v1/lineage` serve
//! it: built from the catalog and every pipeline's plan, and recorded in the
//! catalog store as a new version whenever it differs from the last one.
//!
//! ```text
//!   catalog tables + pipelines/*.sql ──plan──▶ column lineage ──▶ LineageGraph ──changed?──▶ strata_lineage vN
//!   --at T ──▶ the version recorded by T
//! ```

use anyhow::Context;
use serde::Serialize;
use strata_catalog::Catalog;
use strata_lineage::{Direction, LineageGraph, Subgraph};

/// The last graph built, kept while neither the catalog nor the pipelines'
/// files change, so that a query does not plan every pipeline again.
#[derive(Debug, Clone, Default)]
pub struct Cache(std::sync::Arc<tokio::sync::Mutex<Option<Kept>>>);

/// The graph kept, with the fingerprint of what it was built from.
type Kept = (u64, std::sync::Arc<Snapshot>);

impl Cache {
    /// The graph now: the one kept, unless the catalog or a pipeline file changed.
    pub async fn current(&self, catalog: &Catalog) -> anyhow::Result<std::sync::Arc<Snapshot>> {
        let fingerprint = fingerprint(catalog).await?;
        let mut kept = self.0.lock().await;
        if let Some((at, snapshot)) = kept.as_ref()
            && *at == fingerprint
        {
            return Ok(snapshot.clone());
        }
        let snapshot = std::sync::Arc::new(current(catalog).await?);
        *kept = Some((fingerprint, snapshot.clone()));
        Ok(snapshot)
    }
}

/// What the graph is built from, cheaply: each table's name, schema version and
/// last change, and each pipeline file's path and text.
async fn fingerprint(catalog: &Catalog) -> anyhow::Result<u64> {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    catalog.store().table_versions().await?.hash(&mut hasher);
    let mut files = Vec::new();
    let mut folders = vec![catalog.project().dir.join("pipelines")];
    while let Some(folder) = folders.pop() {
        let Ok(entries) = std::fs::read_dir(&folder) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                folders.push(path);
            } else {
                files.push(path);
            }
        }
    }
    files.sort();
    for path in files {
        path.hash(&mut hasher);
        std::fs::read(&path).unwrap_or_default().hash(&mut hasher);
    }
    Ok(hasher.finish())
}

/// A version of the graph.
#[derive(Debug)]
pub struct Snapshot {
    pub version: i64,
    pub recorded_at_ms: i64,
    pub graph: LineageGraph,
}

/// The graph of the project and catalog as they are now, recorded if it changed.
pub async fn current(catalog: &Catalog) -> anyhow::Result<Snapshot> {
    let tables = catalog.definitions().await?;
    let pipelines = strata_pipelines::load_project(catalog)
        .await
        .context("reading the project's pipelines for lineage")?;
    let mut lineage = Vec::with_capacity(pipelines.len());
    for pipeline in &pipelines {
        lineage.push(of_pipeline(pipeline, &tables).await);
    }
    let graph = LineageGraph::build(&tables, &lineage);
    let recorded = catalog.store().record_lineage(&graph.to_json()).await?;
    Ok(Snapshot {
        version: recorded.version,
        recorded_at_ms: recorded.created_at_ms,
        graph,
    })
}

/// A pipeline's lineage; one whose plan cannot be followed keeps its tables
/// (what it reads and writes) without column lineage, and says so in the log.
pub async fn of_pipeline(
    pipeline: &strata_pipelines::ValidPipeline,
    tables: &[strata_catalog::TableDef],
) -> strata_lineage::PipelineLineage {
    match pipeline.lineage(tables).await {
        Ok(lineage) => lineage,
        Err(err) => {
            tracing::warn!(pipeline = pipeline.pipeline.name, %err, "column lineage left out");
            strata_lineage::PipelineLineage {
                name: pipeline.pipeline.name.clone(),
                target: pipeline.target.name.to_string(),
                sources: pipeline
                    .sources
                    .iter()
                    .map(|t| t.name.to_string())
                    .collect(),
                columns: Vec::new(),
            }
        }
    }
}

/// The graph as it was recorded at `at_ms`, or now when `None`.
pub async fn at(catalog: &Catalog, at_ms: Option<i64>) -> anyhow::Result<Snapshot> {
    let Some(at_ms) = at_ms else {
        return current(catalog).await;
    };
    let recorded = catalog
        .store()
        .lineage_at(Some(at_ms))
        .await?
        .with_context(|| format!("no lineage graph was recorded by {}", time_text(at_ms)))?;
    Ok(Snapshot {
        version: recorded.version,
        recorded_at_ms: recorded.created_at_ms,
        graph: LineageGraph::from_json(&recorded.graph)?,
    })
}

/// A time given as RFC 3339 (`2026-11-21T10:00:00Z`) or milliseconds since the epoch.
pub fn parse_time(text: &str) -> anyhow::Result<i64> {
    if let Ok(ms) = text.parse::<i64>() {
        return Ok(ms);
    }
    chrono::DateTime::parse_from_rfc3339(text)
        .map(|t| t.timestamp_millis())
        .with_context(|| {
            format!(
                "{text:?} is not a time; write 2026-11-21T10:00:00Z or milliseconds since the epoch"
            )
        })
}

pub fn time_text(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| t.to_rfc3339())
        .unwrap_or_else(|| ms.to_string())
}

/// Lineage around a node, as the CLI's JSON and the API answer it.
#[derive(Debug, Serialize)]
pub struct LineageView {
    pub version: i64,
    pub recorded_at: String,
    pub node: String,
    pub direction: &'static str,
    pub depth: usize,
    pub level: &'static str,
    #[serde(flatten)]
    pub subgraph: Subgraph,
}

impl LineageView {
    pub fn around(
        snapshot: &Snapshot,
        node: &str,
        direction: Direction,
        depth: usize,
        columns: bool,
    ) -> anyhow::Result<Self> {
        // A column's lineage is column-level whatever was asked.
        let columns = columns
            || matches!(
                snapshot.graph.node(node)?,
                strata_lineage::Node::Column { .. }
            );
        Ok(Self {
            version: snapshot.version,
            recorded_at: time_text(snapshot.recorded_at_ms),
            node: node.to_string(),
            direction: match direction {
                Direction::Upstream => "upstream",
                Direction::Downstream => "downstream",
                Direction::Both => "both",
            },
            depth,
            level: if columns { "column" } else { "table" },
            subgraph: snapshot.graph.around(node, direction, depth, columns)?,
        })
    }
}
