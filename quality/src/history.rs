//! `strata check --history`: a table's rules over the rows its Delta table
//! holds, in batch, with the evaluator the pipelines use.
//!
//! ```text
//!   Delta scan ──batches──▶ Evaluator::check_rows (row, unique, relationship)   counts per rule
//!              └─ all rows ─▶ Evaluator::check_commit (aggregates, per window or over the whole table)
//! ```
//!
//! Reconciliation rules are evaluated over the table's whole event-time span
//! by the caller, which knows the other table.

use std::sync::Arc;

use arrow::record_batch::RecordBatch;
use datafusion::prelude::SessionContext;
use futures::StreamExt;
use strata_catalog::TableName;
use strata_catalog::connectors::delta as lake;

use crate::checks::Rule;
use crate::error::{QualityError, Result};
use crate::evaluator::{Evaluator, EvaluatorSpec, Scope};
use crate::results::CheckResult;

/// Evaluates `rules` over every row of the Delta table at `location`.
pub async fn evaluate(
    table: &TableName,
    location: &str,
    rules: Vec<Arc<Rule>>,
    context: SessionContext,
    now_ms: i64,
) -> Result<Vec<CheckResult>> {
    let failed = |err: datafusion::error::DataFusionError| QualityError::Storage {
        what: format!("the history of {table} at {location}"),
        message: err.to_string(),
    };
    let provider = lake::table_provider(location).await?;
    let schema = provider.schema();
    let scan = SessionContext::new();
    scan.register_table("history", provider).map_err(failed)?;
    let mut evaluator = Evaluator::open(EvaluatorSpec {
        table: table.clone(),
        pipeline: "history".to_string(),
        scope: Scope::Target,
        schema,
        rules,
        target_location: None,
        upserted: false,
        results_location: None,
        context: Some(context),
    })
    .await?;
    let mut stream = scan
        .sql("SELECT * FROM history")
        .await
        .map_err(failed)?
        .execute_stream()
        .await
        .map_err(failed)?;
    let mut all: Vec<RecordBatch> = Vec::new();
    while let Some(batch) = stream.next().await {
        let batch = batch.map_err(failed)?;
        evaluator.check_rows(&batch).await?;
        if evaluator.checks_commits() {
            all.push(batch);
        }
    }
    let mut results: Vec<CheckResult> = evaluator
        .take_row_results(now_ms)
        .into_iter()
        .chain(evaluator.check_commit(&all, now_ms)?.0)
        .collect();
    for result in &mut results {
        result.scope = if result.window_start_ms.is_some() {
            "history window".to_string()
        } else {
            "history".to_string()
        };
        result.pipeline = None;
    }
    Ok(results)
}
