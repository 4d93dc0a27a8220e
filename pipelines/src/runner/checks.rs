//! A pipeline's quality checks: its source table's rules on the decoded rows,
//! its target table's rules on the rows about to be committed, and schema
//! drift of the source's records.
//!
//! ```text
//!   decoded rows ─▶ source rules ─┬─ quarantine: the record leaves, with the rule and reason
//!                                 └─ stop: the run fails; nothing of the commit is written
//!   SELECT output ─▶ target rules (row, unique, relationship) ─▶ same actions, on the source record
//!   commit ─▶ aggregate rules on its rows ─▶ results (+ the Delta version once the commit lands)
//! ```
//!
//! A row failing a target rule goes to quarantine as the source record it
//! came from, so `strata quarantine replay` re-feeds it through the pipeline.

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow::record_batch::RecordBatch;
use strata_catalog::{TableDef, TableName};
use strata_quality::checks::Checks;
use strata_quality::evaluator::{Evaluator, EvaluatorSpec, Scope, Verdict};
use strata_quality::results::{self, CheckResult, ResultsLog, Taken};
use strata_quality::{QualityError, RuleKind};

use super::{PipelineRun, now_ms};
use crate::error::{PipelineError, Result};

/// The project's rules and where their results go, shared by every pipeline.
#[derive(Debug, Clone, Default)]
pub struct Quality {
    pub checks: Arc<Checks>,
    /// Where results are recorded; without it, rules still act but record nothing.
    pub results: Option<ResultsLog>,
    /// Tables the project's pipelines write: their rules run where they are
    /// written, not again in the pipelines that read them.
    pub written: Arc<std::collections::BTreeSet<TableName>>,
}

/// One pipeline's evaluators.
#[derive(Debug)]
pub(super) struct Checking {
    source_table: TableName,
    source: Option<Evaluator>,
    target: Option<Evaluator>,
    /// Fields the source's records carry that its schema lacks, with how many batches had them.
    drift: BTreeMap<String, i64>,
    /// Records rejected for a value of the wrong type since the last commit.
    incompatible: i64,
    /// Source batches decoded since the last commit.
    batches: i64,
}

/// The evaluator of `table`'s rules, when it has any.
async fn open_evaluator(
    run: &PipelineRun,
    table: &TableDef,
    scope: Scope,
    target_location: &str,
    upserted: bool,
) -> Result<Option<Evaluator>> {
    let rules = run.quality.checks.of(&table.name);
    if rules.is_empty() {
        return Ok(None);
    }
    let target_location = (scope == Scope::Target
        && crate::registry::connector(table).reads_back())
    .then(|| target_location.to_string());
    let unique = rules
        .iter()
        .find(|rule| matches!(rule.kind, RuleKind::Unique { .. }));
    if let (Some(rule), Scope::Target, None) = (unique, scope, &target_location) {
        return Err(PipelineError::Quality(QualityError::Evaluation {
            table: table.name.to_string(),
            rule: rule.name.clone(),
            message: format!(
                "unique is checked on Delta targets, whose committed keys it starts from ({})",
                rule.location
            ),
        }));
    }
    let needs_catalog = rules
        .iter()
        .any(|rule| matches!(rule.kind, RuleKind::Relationship { .. }));
    let context = if needs_catalog {
        Some(run.catalog.session().await?)
    } else {
        None
    };
    let evaluator = Evaluator::open(EvaluatorSpec {
        table: table.name.clone(),
        pipeline: run.pipeline.pipeline.name.clone(),
        scope,
        schema: table.schema.clone(),
        rules,
        target_location,
        upserted: upserted && scope == Scope::Target,
        results_location: run
            .quality
            .results
            .as_ref()
            .map(|_| results::location(&run.catalog.project().lake_root())),
        context,
    })
    .await?;
    Ok(Some(evaluator))
}

/// The rows of a batch that a commit writes: without a changelog's deletes
/// and their marker column.
fn written_rows(batch: &RecordBatch) -> Result<RecordBatch> {
    let Some(index) = batch.schema().index_of(crate::sink::DELETE_MARKER).ok() else {
        return Ok(batch.clone());
    };
    let deletes = batch
        .column(index)
        .as_any()
        .downcast_ref::<arrow::array::BooleanArray>()
        .expect("the delete marker is boolean");
    let kept = arrow::compute::not(deletes)?;
    let mut rows = arrow::compute::filter_record_batch(batch, &kept)?;
    rows.remove_column(index);
    Ok(rows)
}

impl Checking {
    pub(super) async fn open(
        run: &PipelineRun,
        source: &TableDef,
        target_location: &str,
        upserted: bool,
    ) -> Result<Self> {
        let source_evaluator = if run.quality.written.contains(&source.name) {
            None
        } else {
            open_evaluator(run, source, Scope::Source, target_location, false)
                .await?
                .filter(Evaluator::checks_rows)
        };
        let target_evaluator = open_evaluator(
            run,
            &run.pipeline.target,
            Scope::Target,
            target_location,
            upserted,
        )
        .await?;
        Ok(Self {
            source_table: source.name.clone(),
            source: source_evaluator,
            target: target_evaluator,
            drift: BTreeMap::new(),
            incompatible: 0,
            batches: 0,
        })
    }

    pub(super) fn checks_source(&self) -> bool {
        self.source.is_some()
    }

    pub(super) fn checks_target_rows(&self) -> bool {
        self.target.as_ref().is_some_and(Evaluator::checks_rows)
    }

    pub(super) async fn check_source(&mut self, rows: &RecordBatch) -> Result<Verdict> {
        match &mut self.source {
            Some(evaluator) => Ok(evaluator.check_rows(rows).await?),
            None => Ok(Verdict::default()),
        }
    }

    /// Forgets the keys of rows the target's rules passed that are not committed after all.
    pub(super) fn forget_target_keys(&mut self, rows: &RecordBatch, which: &[u32]) -> Result<()> {
        if let Some(evaluator) = &mut self.target {
            evaluator.forget_keys(rows, which)?;
        }
        Ok(())
    }

    pub(super) async fn check_target(&mut self, rows: &RecordBatch) -> Result<Verdict> {
        match &mut self.target {
            Some(evaluator) => Ok(evaluator.check_rows(rows).await?),
            None => Ok(Verdict::default()),
        }
    }

    /// Notes what a source batch showed of schema drift.
    pub(super) fn note_drift(&mut self, field: Option<&str>, rejected_reasons: &[&str]) {
        self.batches += 1;
        if let Some(field) = field {
            *self.drift.entry(field.to_string()).or_default() += 1;
        }
        self.incompatible += rejected_reasons
            .iter()
            .filter(|reason| reason.starts_with("incompatible schema drift"))
            .count() as i64;
    }

    /// The results of a commit about to start: aggregate rules on its rows, the
    /// row rules' counts, and drift. A failing stop rule fails the run, after
    /// its results are recorded.
    pub(super) fn results_of_commit(
        &mut self,
        run: &PipelineRun,
        rows: &[RecordBatch],
    ) -> Result<Vec<CheckResult>> {
        let now = now_ms();
        let mut results = Vec::new();
        let mut stop = None;
        if let Some(target) = &mut self.target {
            let plain = rows
                .iter()
                .filter(|batch| batch.num_rows() > 0)
                .map(written_rows)
                .collect::<Result<Vec<RecordBatch>>>()?;
            let (aggregates, stopped) = target.check_commit(&plain, now)?;
            results.extend(aggregates);
            stop = stopped;
        }
        results.extend(self.row_results(now));
        if self.batches > 0 {
            let fields: Vec<String> = self.drift.keys().cloned().collect();
            let batches: i64 = self.drift.values().sum();
            let mut detail = Vec::new();
            if !fields.is_empty() {
                detail.push(format!(
                    "records carry fields the catalog does not declare: {} (additive; ignored until the table's DDL adds them with `strata catalog register --update`)",
                    fields.join(", ")
                ));
            }
            if self.incompatible > 0 {
                detail.push(format!(
                    "{} records have a value whose type the catalog's column cannot hold; they are in quarantine",
                    self.incompatible
                ));
            }
            // Passing when no batch since the last commit drifted.
            let failed = batches + self.incompatible;
            results.push(CheckResult {
                at_ms: now,
                table: self.source_table.to_string(),
                rule: "schema_drift".to_string(),
                check: "schema_drift".to_string(),
                pipeline: Some(run.pipeline.pipeline.name.clone()),
                scope: "source".to_string(),
                window_start_ms: None,
                window_end_ms: None,
                commit_version: None,
                passed: (self.batches - batches).max(0),
                failed,
                observed: Some(failed as f64),
                bound: Some("the catalog's schema".to_string()),
                action: match (failed > 0, self.incompatible > 0) {
                    (false, _) => Taken::None,
                    (true, true) => Taken::Quarantined,
                    (true, false) => Taken::Warned,
                },
                severity: "warning".to_string(),
                detail: (failed > 0).then(|| detail.join("; ")),
            });
            self.drift.clear();
            self.incompatible = 0;
            self.batches = 0;
        }
        match stop {
            Some(reason) => Err(self.stop(run, results, reason)),
            None => Ok(results),
        }
    }

    /// Records the results and the error that stops the run.
    pub(super) fn stop(
        &self,
        run: &PipelineRun,
        results: Vec<CheckResult>,
        reason: String,
    ) -> PipelineError {
        tracing::error!(pipeline = run.pipeline.pipeline.name, %reason, "a quality rule stopped the pipeline");
        if let Some(log) = &run.quality.results {
            log.record(results);
        }
        PipelineError::QualityStop {
            pipeline: run.pipeline.pipeline.name.clone(),
            table: run.pipeline.target.name.to_string(),
            reason,
        }
    }

    /// The row and key rules' results since the last commit.
    pub(super) fn row_results(&mut self, now: i64) -> Vec<CheckResult> {
        let mut results = Vec::new();
        if let Some(target) = &mut self.target {
            results.extend(target.take_row_results(now));
        }
        if let Some(source) = &mut self.source {
            results.extend(source.take_row_results(now));
        }
        results
    }
}
