//! One table's rules as a pipeline runs them: row and key rules on each batch
//! before it joins a commit, aggregate rules on each commit's rows.
//!
//! ```text
//!   batch ─▶ row rules ─▶ rows failing a quarantine rule leave ─▶ unique, relationship on the rest
//!        └─▶ verdict: rows to quarantine (rule, reason) · stop (reason) · counts per rule
//!   commit rows ─▶ aggregate and anomaly rules (per commit or per window) ─▶ results · stop
//!   commit lands ─▶ one result per rule with the counts since the last commit and the version
//! ```

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use datafusion::prelude::SessionContext;
use strata_catalog::TableName;
use strata_catalog::connectors::delta as lake;

use crate::aggregate::{self, History};
use crate::checks::{Action, Rule, RuleKind};
use crate::error::{QualityError, Result};
use crate::keys::{Relationship, UniqueKeys};
use crate::results::{self, CheckResult, Taken};
use crate::row::RowRules;

/// Where a table's rules run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// On the rows a pipeline writes to the table.
    Target,
    /// On the rows a pipeline reads from the table, once decoded.
    Source,
}

/// What an evaluator needs when it opens.
#[derive(Clone)]
pub struct EvaluatorSpec {
    pub table: TableName,
    pub pipeline: String,
    pub scope: Scope,
    pub schema: SchemaRef,
    pub rules: Vec<Arc<Rule>>,
    /// The Delta table the pipeline writes, whose keys a unique rule starts from.
    pub target_location: Option<String>,
    /// The target is upserted by its primary key.
    pub upserted: bool,
    /// The results table, which holds an anomaly rule's history.
    pub results_location: Option<String>,
    /// The catalog, for relationship rules.
    pub context: Option<SessionContext>,
}

impl std::fmt::Debug for EvaluatorSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EvaluatorSpec")
            .field("table", &self.table)
            .field("scope", &self.scope)
            .field("rules", &self.rules.len())
            .finish_non_exhaustive()
    }
}

impl std::fmt::Debug for Evaluator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Evaluator")
            .field("table", &self.table)
            .field("scope", &self.scope)
            .field("row", &self.row)
            .finish_non_exhaustive()
    }
}

/// A failing row leaving for quarantine.
#[derive(Debug, Clone, PartialEq)]
pub struct Quarantined {
    pub row: u32,
    pub rule: String,
    pub reason: String,
}

/// What the rules decided about a batch.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Verdict {
    pub quarantine: Vec<Quarantined>,
    /// Why the pipeline must stop before its commit.
    pub stop: Option<String>,
}

#[derive(Debug, Default, Clone, Copy)]
struct Tally {
    passed: i64,
    failed: i64,
}

#[derive(Debug)]
enum KeyRule {
    Unique(UniqueKeys),
    Relationship(Relationship),
}

/// A table's rules, compiled, with what they remember.
pub struct Evaluator {
    table: String,
    pipeline: String,
    scope: Scope,
    row: RowRules,
    keys: Vec<(Arc<Rule>, KeyRule)>,
    aggregates: Vec<(Arc<Rule>, Option<History>)>,
    context: Option<SessionContext>,
    tally: BTreeMap<String, (Arc<Rule>, Tally)>,
}

impl Evaluator {
    pub async fn open(spec: EvaluatorSpec) -> Result<Self> {
        let table = spec.table.to_string();
        let refuse = |rule: &Rule, message: String| QualityError::Evaluation {
            table: table.clone(),
            rule: rule.name.clone(),
            message: format!("{message} ({})", rule.location),
        };
        let row = RowRules::compile(&table, &spec.rules, &spec.schema)?;
        let mut keys = Vec::new();
        let mut aggregates = Vec::new();
        for rule in &spec.rules {
            match &rule.kind {
                RuleKind::Unique { columns } => {
                    if spec.scope == Scope::Source {
                        continue;
                    }
                    if spec.upserted {
                        return Err(refuse(
                            rule,
                            "the table is upserted by its primary key, so its keys are unique by construction; drop the rule or make the table append-only".to_string(),
                        ));
                    }
                    // A pipeline starts from the keys its target holds; a check of a
                    // table's history reads them all, from none.
                    let existing = match &spec.target_location {
                        Some(location) => existing_keys(location, columns).await?,
                        None => Vec::new(),
                    };
                    keys.push((
                        rule.clone(),
                        KeyRule::Unique(UniqueKeys::new(columns.clone(), &spec.schema, &existing)?),
                    ));
                }
                RuleKind::Relationship {
                    column,
                    references,
                    reference_column,
                } => keys.push((
                    rule.clone(),
                    KeyRule::Relationship(Relationship::new(
                        column.clone(),
                        references.clone(),
                        reference_column.clone(),
                    )),
                )),
                RuleKind::Aggregate { .. } if spec.scope == Scope::Target => {
                    aggregates.push((rule.clone(), None));
                }
                RuleKind::Anomaly { history, .. } if spec.scope == Scope::Target => {
                    let seed = match &spec.results_location {
                        Some(location) => {
                            results::recent_observations(location, &table, &rule.name, *history)
                                .await?
                        }
                        None => Vec::new(),
                    };
                    aggregates.push((rule.clone(), Some(History::new(*history, seed))));
                }
                _ => {}
            }
        }
        if keys
            .iter()
            .any(|(_, rule)| matches!(rule, KeyRule::Relationship(_)))
            && spec.context.is_none()
        {
            return Err(QualityError::Evaluation {
                table,
                rule: "relationship".to_string(),
                message: "relationship rules need the catalog to look keys up".to_string(),
            });
        }
        Ok(Self {
            table: spec.table.to_string(),
            pipeline: spec.pipeline,
            scope: spec.scope,
            row,
            keys,
            aggregates,
            context: spec.context,
            tally: BTreeMap::new(),
        })
    }

    /// True when the table has rules that run on each batch.
    pub fn checks_rows(&self) -> bool {
        !self.row.is_empty() || !self.keys.is_empty()
    }

    pub fn checks_commits(&self) -> bool {
        !self.aggregates.is_empty()
    }

    fn count(&mut self, rule: &Arc<Rule>, rows: i64, failed: i64) {
        let entry = self
            .tally
            .entry(rule.name.clone())
            .or_insert_with(|| (rule.clone(), Tally::default()));
        entry.1.passed += rows - failed;
        entry.1.failed += failed;
    }

    /// Runs the row and key rules on `batch`.
    pub async fn check_rows(&mut self, batch: &RecordBatch) -> Result<Verdict> {
        let mut verdict = Verdict::default();
        if batch.num_rows() == 0 {
            return Ok(verdict);
        }
        let rows = batch.num_rows() as i64;
        let mut leaving = vec![false; batch.num_rows()];
        for failures in self.row.evaluate(&self.table, batch)? {
            self.count(&failures.rule, rows, failures.rows.len() as i64);
            let Some(&first) = failures.rows.first() else {
                continue;
            };
            let rule = failures.rule.clone();
            match rule.action {
                Action::Warn => {}
                Action::Stop => {
                    verdict.stop.get_or_insert_with(|| {
                        let reason = self.row.reason(&rule, batch, first as usize);
                        format!("{reason} ({})", rule.location)
                    });
                }
                Action::Quarantine => {
                    for row in failures.rows {
                        if !leaving[row as usize] {
                            leaving[row as usize] = true;
                            verdict.quarantine.push(Quarantined {
                                row,
                                rule: rule.name.clone(),
                                reason: self.row.reason(&rule, batch, row as usize),
                            });
                        }
                    }
                }
            }
        }
        if self.keys.is_empty() {
            return Ok(verdict);
        }
        // Key rules see the rows that stay, so that a quarantined row's key is not remembered.
        let staying: Vec<u32> = (0..batch.num_rows() as u32)
            .filter(|&row| !leaving[row as usize])
            .collect();
        let rest = arrow::compute::take_record_batch(
            batch,
            &arrow::array::UInt32Array::from(staying.clone()),
        )
        .map_err(|err| QualityError::Evaluation {
            table: self.table.clone(),
            rule: "keys".to_string(),
            message: err.to_string(),
        })?;
        let mut keys = std::mem::take(&mut self.keys);
        let mut outcome = Ok(());
        for (rule, key_rule) in &mut keys {
            let failing = match key_rule {
                KeyRule::Unique(unique) => unique.check(&rest),
                KeyRule::Relationship(relationship) => {
                    let context = self.context.as_ref().expect("checked at open");
                    relationship.check(context, &rest).await
                }
            };
            let failing = match failing {
                Ok(failing) => failing,
                Err(err) => {
                    outcome = Err(err);
                    break;
                }
            };
            self.count(rule, rest.num_rows() as i64, failing.len() as i64);
            for position in failing {
                let row = staying[position as usize];
                let reason = key_reason(rule, key_rule, batch, row as usize);
                match rule.action {
                    Action::Warn => {}
                    Action::Stop => {
                        verdict
                            .stop
                            .get_or_insert(format!("{reason} ({})", rule.location));
                    }
                    Action::Quarantine => {
                        if !leaving[row as usize] {
                            leaving[row as usize] = true;
                            verdict.quarantine.push(Quarantined {
                                row,
                                rule: rule.name.clone(),
                                reason,
                            });
                        }
                    }
                }
            }
        }
        self.keys = keys;
        outcome?;
        verdict.quarantine.sort_by_key(|q| q.row);
        Ok(verdict)
    }

    /// Forgets the unique keys of `rows` of `batch`: rows that passed but are
    /// not committed after all (another row of their record failed).
    pub fn forget_keys(&mut self, batch: &RecordBatch, rows: &[u32]) -> Result<()> {
        for (_, key_rule) in &mut self.keys {
            if let KeyRule::Unique(unique) = key_rule {
                unique.forget(batch, rows)?;
            }
        }
        Ok(())
    }

    /// Runs the aggregate and anomaly rules on a commit's rows. Returns their
    /// results and, when a stop rule failed, why.
    pub fn check_commit(
        &mut self,
        batches: &[RecordBatch],
        now_ms: i64,
    ) -> Result<(Vec<CheckResult>, Option<String>)> {
        let mut results = Vec::new();
        let mut stop = None;
        if self.aggregates.is_empty() {
            return Ok((results, stop));
        }
        let Some(first) = batches.first() else {
            return Ok((results, stop));
        };
        let rows = arrow::compute::concat_batches(&first.schema(), batches).map_err(|err| {
            QualityError::Evaluation {
                table: self.table.clone(),
                rule: "aggregate".to_string(),
                message: err.to_string(),
            }
        })?;
        if rows.num_rows() == 0 {
            return Ok((results, stop));
        }
        for (rule, history) in &mut self.aggregates {
            let (metric, per) = match &rule.kind {
                RuleKind::Aggregate { metric, per, .. } | RuleKind::Anomaly { metric, per, .. } => {
                    (metric, per)
                }
                _ => continue,
            };
            let with_rule = |mut err: QualityError| {
                if let QualityError::Evaluation {
                    table, rule: name, ..
                } = &mut err
                {
                    *table = self.table.clone();
                    *name = rule.name.clone();
                }
                err
            };
            for (window_start, part) in aggregate::split(per, &rows).map_err(with_rule)? {
                let Some(value) = aggregate::observe(metric, &part).map_err(with_rule)? else {
                    continue;
                };
                let (failed, bound) = match (&rule.kind, history.as_mut()) {
                    (RuleKind::Aggregate { min, max, .. }, _) => (
                        min.is_some_and(|min| value < min) || max.is_some_and(|max| value > max),
                        bounds_text(*min, *max),
                    ),
                    (RuleKind::Anomaly { k, .. }, Some(history)) => {
                        let judgement = history.judge(value, *k);
                        (
                            judgement.anomalous,
                            match judgement.band {
                                Some((low, high)) => format!("[{low:.4}, {high:.4}] (mean ± {k}σ)"),
                                None => "learning (fewer than 3 values)".to_string(),
                            },
                        )
                    }
                    _ => continue,
                };
                let taken = match (failed, rule.action) {
                    (false, _) => Taken::None,
                    (true, Action::Stop) => Taken::Stopped,
                    (true, _) => Taken::Warned,
                };
                let window = window_start.map(|start| {
                    let start = chrono::DateTime::from_timestamp_millis(start)
                        .map(|t| t.to_rfc3339())
                        .unwrap_or_else(|| format!("{start} ms"));
                    format!(" in the window from {start}")
                });
                let detail = failed.then(|| {
                    format!(
                        "{} = {value} is outside {bound}{}",
                        metric.describe(),
                        window.clone().unwrap_or_default()
                    )
                });
                if taken == Taken::Stopped {
                    stop.get_or_insert_with(|| {
                        format!(
                            "quality rule {} ({}) failed: {} ({})",
                            rule.name,
                            rule.kind.check_name(),
                            detail.clone().unwrap_or_default(),
                            rule.location
                        )
                    });
                }
                results.push(CheckResult {
                    at_ms: now_ms,
                    table: self.table.clone(),
                    rule: rule.name.clone(),
                    check: rule.kind.check_name().to_string(),
                    pipeline: Some(self.pipeline.clone()),
                    scope: if window_start.is_some() {
                        "window"
                    } else {
                        "commit"
                    }
                    .to_string(),
                    window_start_ms: window_start,
                    window_end_ms: None,
                    commit_version: None,
                    passed: i64::from(!failed),
                    failed: i64::from(failed),
                    observed: Some(value),
                    bound: Some(bound),
                    action: taken,
                    severity: rule.severity.as_str().to_string(),
                    detail,
                });
            }
        }
        Ok((results, stop))
    }

    /// One result per row and key rule with the counts since the last call.
    pub fn take_row_results(&mut self, now_ms: i64) -> Vec<CheckResult> {
        let scope = match self.scope {
            Scope::Target => "commit",
            Scope::Source => "source",
        };
        std::mem::take(&mut self.tally)
            .into_values()
            .map(|(rule, tally)| CheckResult {
                at_ms: now_ms,
                table: self.table.clone(),
                rule: rule.name.clone(),
                check: rule.kind.check_name().to_string(),
                pipeline: Some(self.pipeline.clone()),
                scope: scope.to_string(),
                window_start_ms: None,
                window_end_ms: None,
                commit_version: None,
                passed: tally.passed,
                failed: tally.failed,
                observed: Some(tally.failed as f64),
                bound: Some("0 failing rows".to_string()),
                action: match (tally.failed > 0, rule.action) {
                    (false, _) => Taken::None,
                    (true, Action::Warn) => Taken::Warned,
                    (true, Action::Quarantine) => Taken::Quarantined,
                    (true, Action::Stop) => Taken::Stopped,
                },
                severity: rule.severity.as_str().to_string(),
                detail: None,
            })
            .collect()
    }
}

fn bounds_text(min: Option<f64>, max: Option<f64>) -> String {
    match (min, max) {
        (Some(min), Some(max)) => format!("[{min}, {max}]"),
        (Some(min), None) => format!(">= {min}"),
        (None, Some(max)) => format!("<= {max}"),
        (None, None) => "no bound".to_string(),
    }
}

fn key_reason(rule: &Rule, key_rule: &KeyRule, batch: &RecordBatch, row: usize) -> String {
    let show = |column: &str| {
        batch
            .column_by_name(column)
            .and_then(|array| arrow::util::display::array_value_to_string(array, row).ok())
            .unwrap_or_else(|| "?".to_string())
    };
    match (&rule.kind, key_rule) {
        (RuleKind::Unique { columns }, _) => {
            let key: Vec<String> = columns
                .iter()
                .map(|c| format!("{c} = {}", show(c)))
                .collect();
            format!(
                "quality rule {} (unique) failed: the table already holds the key {}",
                rule.name,
                key.join(", ")
            )
        }
        (
            RuleKind::Relationship {
                column,
                reference_column,
                ..
            },
            KeyRule::Relationship(relationship),
        ) => format!(
            "quality rule {} (relationship) failed: {column} = {} is not a {reference_column} of {}",
            rule.name,
            show(column),
            relationship.references()
        ),
        _ => format!("quality rule {} failed", rule.name),
    }
}

/// The key columns of the rows a Delta table holds.
async fn existing_keys(location: &str, columns: &[String]) -> Result<Vec<RecordBatch>> {
    if !lake::exists(location).await? {
        return Ok(Vec::new());
    }
    let list: Vec<String> = columns
        .iter()
        .map(|c| format!("\"{}\"", c.replace('"', "\"\"")))
        .collect();
    let sql = format!("SELECT {} FROM target", list.join(", "));
    lake::query(location, "target", &sql)
        .await
        .map_err(|err| QualityError::Storage {
            what: format!("the keys of {location}"),
            message: err.to_string(),
        })
}
