//! `strata explain`: a pipeline's operator graph, each operator with the
//! changelog it emits, its key and its state, or why the pipeline is refused.

use anyhow::Context;
use serde::Serialize;
use std::path::Path;
use strata_catalog::Catalog;
use strata_pipelines::plan::PlanOperator;
use strata_pipelines::{load_pipelines, validate};

/// A pipeline's plan, or the reason it cannot run.
#[derive(Debug, Serialize)]
pub struct Explained {
    pub pipeline: String,
    pub file: String,
    pub target: String,
    /// Sources first, the sink last; empty when refused.
    pub operators: Vec<PlanOperator>,
    /// Why the pipeline cannot run as written.
    pub refused: Option<String>,
}

/// Explains the pipeline named `name` (as `/api/v1/pipelines` names it) or
/// held in the file `name`.
pub async fn explain(catalog: &Catalog, name: &str) -> anyhow::Result<Explained> {
    let project = catalog.project();
    let pipelines = load_pipelines(&project.dir)?;
    let file = Path::new(name)
        .canonicalize()
        .ok()
        .filter(|path| path.is_file());
    let known: Vec<String> = pipelines.iter().map(|p| p.name.clone()).collect();
    let mut matching: Vec<_> = pipelines
        .into_iter()
        .filter(|p| match &file {
            Some(file) => p.file.canonicalize().is_ok_and(|path| &path == file),
            None => p.name == name,
        })
        .collect();
    if matching.len() > 1 {
        let names: Vec<&str> = matching.iter().map(|p| p.name.as_str()).collect();
        anyhow::bail!(
            "{name} holds a statement set of {} pipelines\n  hint: explain one of them by name: {}",
            names.len(),
            names.join(", ")
        );
    }
    let pipeline = matching
        .pop()
        .with_context(|| {
            format!(
                "no pipeline is named {name}\n  hint: the pipelines are {}; a pipeline file's path works too",
                known.join(", ")
            )
        })?;
    let mut explained = Explained {
        pipeline: pipeline.name.clone(),
        file: pipeline.file.display().to_string(),
        target: pipeline.target.table.to_string(),
        operators: Vec::new(),
        refused: None,
    };
    let tables = catalog.definitions().await?;
    let valid = match validate(vec![pipeline], &tables).await {
        Ok(mut valid) => valid.remove(0),
        Err(err) => {
            explained.refused = Some(err.to_string());
            return Ok(explained);
        }
    };
    let run = crate::run::rowless_run(catalog, valid).await?;
    match run.explain().await {
        Ok(plan) => {
            explained.refused = plan
                .refusals()
                .next()
                .map(|(id, why)| format!("operator {id}: {why} is not supported yet"));
            explained.target = plan.target;
            explained.operators = plan.operators;
        }
        Err(err) => explained.refused = Some(err.to_string()),
    }
    Ok(explained)
}
