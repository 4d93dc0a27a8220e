//! Quality beside the pipelines: loading the project's checks, the results
//! log, and the monitor that evaluates freshness and reconciliation rules.
//!
//! ```text
//!   every [quality] monitor-interval-ms:
//!     freshness:  each table's watermark and last commit (its pipeline's, or its readers')
//!     reconcile:  windows both tables' watermarks closed, once each pipeline has committed
//!                 twice since (so the rows are in), and that were not compared yet
//!   ──▶ ResultsLog (latest status for the API, metrics and lineage; the Delta table)
//! ```

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use anyhow::Context;

use strata_catalog::{Catalog, TableName};
use strata_pipelines::runner::now_ms;
use strata_pipelines::{TableStats, ValidPipeline};
use strata_quality::checks::{Checks, RuleKind};
use strata_quality::results::{self, ResultsLog};
use strata_quality::{freshness, reconcile};

/// The project's checks, loaded against the catalog.
pub async fn load_checks(catalog: &Catalog) -> anyhow::Result<Checks> {
    let tables = catalog.definitions().await?;
    Ok(strata_quality::checks::load(
        &catalog.project().dir,
        &tables,
    )?)
}

/// Opens the project's results table.
pub async fn open_results(catalog: &Catalog) -> anyhow::Result<ResultsLog> {
    Ok(ResultsLog::open(&results::location(&catalog.project().lake_root())).await?)
}

/// What the monitor reads of a table: the stats of the pipeline that writes
/// it, or of the pipelines that read it.
#[derive(Debug, Clone, Default)]
pub struct Observers {
    writers: BTreeMap<TableName, Arc<TableStats>>,
    readers: BTreeMap<TableName, Vec<Arc<TableStats>>>,
}

impl Observers {
    pub fn add(&mut self, pipeline: &ValidPipeline, stats: &Arc<TableStats>) {
        self.writers
            .insert(pipeline.target.name.clone(), stats.clone());
        for source in pipeline.streams() {
            self.readers
                .entry(source.name.clone())
                .or_default()
                .push(stats.clone());
        }
    }

    /// Commits of the pipeline that writes the table; `None` for a table only
    /// read (a topic), whose rows are all there already.
    fn commits(&self, table: &TableName) -> Option<u64> {
        self.writers
            .get(table)
            .map(|stats| stats.commits.load(Ordering::Relaxed))
    }

    /// The table's watermark and last commit, ms since the epoch.
    fn observe(&self, table: &TableName) -> (Option<i64>, Option<i64>) {
        let last_commit = |stats: &TableStats| {
            Some(stats.last_commit_ms.load(Ordering::Relaxed)).filter(|&ms| ms > 0)
        };
        if let Some(stats) = self.writers.get(table) {
            return (stats.watermark(), last_commit(stats));
        }
        let readers = self.readers.get(table).map(Vec::as_slice).unwrap_or(&[]);
        let watermark = readers
            .iter()
            .map(|stats| stats.watermark())
            .collect::<Option<Vec<i64>>>()
            .and_then(|marks| marks.into_iter().min());
        let last = readers.iter().filter_map(|stats| last_commit(stats)).max();
        (watermark, last)
    }
}

/// The closed time (min of both watermarks) of a reconciliation seen at one
/// tick, with both pipelines' commit counts then.
#[derive(Debug, Clone, Copy)]
struct Closed {
    closed: i64,
    commits: [Option<u64>; 2],
}

/// Evaluates freshness and reconciliation rules until `stop`.
pub async fn monitor(
    catalog: Catalog,
    checks: Arc<Checks>,
    observers: Observers,
    log: ResultsLog,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let started = now_ms();
    let config = &catalog.project().config;
    let every = Duration::from_millis(config.quality.monitor_interval_ms.max(100));
    // A window closed this long ago has landed in both tables' commits.
    let location = results::location(&catalog.project().lake_root());
    let mut tick = tokio::time::interval(every);
    tick.tick().await;
    // Per reconcile rule: compared up to here, and the closed times seen, with when.
    let mut compared: BTreeMap<(TableName, String), i64> = BTreeMap::new();
    let mut closed_seen: BTreeMap<(TableName, String), Vec<Closed>> = BTreeMap::new();
    let mut context = None;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.changed() => return,
        }
        let now = now_ms();
        let mut found = Vec::new();
        for table in &checks.tables {
            let (watermark_ms, last_commit_ms) = observers.observe(&table.table);
            for rule in &table.rules {
                match &rule.kind {
                    RuleKind::Freshness { .. } => {
                        let observed = freshness::Observed {
                            watermark_ms,
                            last_commit_ms,
                            started_ms: started,
                            now_ms: now,
                        };
                        found.extend(freshness::evaluate(
                            &table.table.to_string(),
                            rule,
                            observed,
                        ));
                    }
                    RuleKind::Reconcile(spec) => {
                        let key = (table.table.clone(), rule.name.clone());
                        let (theirs, _) = observers.observe(&spec.against);
                        let Some(closed) = watermark_ms.zip(theirs).map(|(a, b)| a.min(b)) else {
                            continue;
                        };
                        // A closed time has landed once both tables' pipelines have committed
                        // twice since it was seen: the second commit started after it, so it
                        // holds every row read before.
                        let commits = [
                            observers.commits(&table.table),
                            observers.commits(&spec.against),
                        ];
                        let seen = closed_seen.entry(key.clone()).or_default();
                        seen.push(Closed { closed, commits });
                        let landed = seen.iter().rposition(|then| {
                            then.commits.iter().zip(commits).all(|(then, now)| {
                                then.zip(now).is_none_or(|(then, now)| now >= then + 2)
                            })
                        });
                        let Some(landed) = landed else {
                            continue;
                        };
                        let up_to = seen[landed].closed;
                        seen.drain(..landed);
                        if context.is_none() {
                            match catalog.session().await {
                                Ok(session) => context = Some(session),
                                Err(err) => {
                                    tracing::warn!(%err, "reconciliation cannot query the catalog");
                                    continue;
                                }
                            }
                        }
                        let session = context.as_ref().expect("set above");
                        let from = match compared.get(&key) {
                            Some(&from) => from,
                            None => match first_window(
                                &location,
                                session,
                                &table.table,
                                &rule.name,
                                spec,
                            )
                            .await
                            {
                                Ok(Some(from)) => from,
                                Ok(None) => continue,
                                Err(err) => {
                                    tracing::warn!(%err, rule = rule.name, "reconciliation failed");
                                    continue;
                                }
                            },
                        };
                        let quarantine = quarantine_location(&catalog, &table.table).await;
                        let reconciliation = reconcile::Reconciliation {
                            table: &table.table,
                            rule,
                            spec,
                            quarantine: quarantine.as_deref(),
                        };
                        match reconcile::evaluate(session, reconciliation, from, up_to, now).await {
                            Ok(results) => {
                                if let Some(last) = results.last().and_then(|r| r.window_end_ms) {
                                    compared.insert(key, last);
                                }
                                found.extend(results);
                            }
                            Err(err) => {
                                tracing::warn!(%err, rule = rule.name, "reconciliation failed")
                            }
                        }
                    }
                    _ => {}
                }
            }
        }
        for result in found.iter().filter(|r| r.failed()) {
            tracing::warn!(
                table = result.table,
                rule = result.rule,
                detail = result.detail.as_deref().unwrap_or(""),
                "quality rule failed"
            );
        }
        log.record(found);
    }
}

/// Where a reconcile rule starts comparing: where an earlier run stopped, or
/// the table's first event.
async fn first_window(
    location: &str,
    session: &datafusion::prelude::SessionContext,
    table: &TableName,
    rule: &str,
    spec: &strata_quality::checks::Reconcile,
) -> strata_quality::Result<Option<i64>> {
    if let Some(end) = results::last_window_end(location, &table.to_string(), rule).await? {
        return Ok(Some(end));
    }
    Ok(reconcile::span(session, table, &spec.time)
        .await?
        .map(|(first, _)| first))
}

/// Rules no pipeline of this run evaluates, each with why: they are reported
/// at start, not left silent (`strata check --history` still evaluates them).
pub fn unevaluated(checks: &Checks, pipelines: &[ValidPipeline]) -> Vec<String> {
    let written: std::collections::BTreeSet<&TableName> =
        pipelines.iter().map(|p| &p.target.name).collect();
    // Rules run on a pipeline's first stream (not on an interval join's right side).
    let read: std::collections::BTreeSet<&TableName> = pipelines
        .iter()
        .filter_map(|p| p.streams().next().map(|t| &t.name))
        .collect();
    let touched = |table: &TableName| written.contains(table) || read.contains(table);
    let mut notes = Vec::new();
    for table in &checks.tables {
        for rule in &table.rules {
            let why = match &rule.kind {
                RuleKind::Unique { .. } | RuleKind::Aggregate { .. } | RuleKind::Anomaly { .. }
                    if !written.contains(&table.table) =>
                {
                    Some("it runs where a pipeline writes the table, and none does".to_string())
                }
                RuleKind::Reconcile(spec) if !touched(&spec.against) => Some(format!(
                    "no pipeline reads or writes {}, so its watermark is unknown",
                    spec.against
                )),
                _ if !touched(&table.table) => {
                    Some("no pipeline reads or writes the table".to_string())
                }
                _ => None,
            };
            if let Some(why) = why {
                notes.push(format!(
                    "{}: rule {} of {} is not evaluated while pipelines run: {why}; `strata check --history {}` evaluates it",
                    rule.location, rule.name, table.table, table.table
                ));
            }
        }
    }
    notes
}

/// Where a table's pipeline puts its quarantine.
pub async fn quarantine_location(catalog: &Catalog, table: &TableName) -> Option<String> {
    let name = TableName::new(&table.space, format!("{}__quarantine", table.name));
    let entry = catalog.get(&name).await.ok()?;
    strata_catalog::connectors::delta_location(catalog.project(), &entry.def).ok()
}

/// A declared rule with what its evaluations since a time added up to.
#[derive(Debug, Clone, serde::Serialize)]
pub struct RuleStatus {
    pub table: String,
    pub rule: String,
    pub check: String,
    pub action: String,
    pub severity: String,
    /// `FAIL` (the latest evaluation failed), `failed earlier` (it passed,
    /// an earlier one since `since` did not), `pass` or `not evaluated`.
    pub status: &'static str,
    /// Evaluations since `since`, those that failed, and the rows they failed.
    pub evaluations: u64,
    pub failures: u64,
    pub failed_rows: u64,
    pub last: Option<strata_quality::CheckResult>,
    pub last_failure: Option<strata_quality::CheckResult>,
}

impl RuleStatus {
    /// Whether the rule failed since the start of the span, now or earlier.
    pub fn failed(&self) -> bool {
        self.failures > 0
    }

    fn new(
        table: String,
        rule: String,
        check: String,
        action: String,
        severity: String,
        summary: Option<strata_quality::Status>,
    ) -> Self {
        let status = match &summary {
            None => "not evaluated",
            Some(s) if s.last.failed() => "FAIL",
            Some(s) if s.failures > 0 => "failed earlier",
            Some(_) => "pass",
        };
        Self {
            table,
            rule,
            check,
            action,
            severity,
            status,
            evaluations: summary.as_ref().map_or(0, |s| s.evaluations),
            failures: summary.as_ref().map_or(0, |s| s.failures),
            failed_rows: summary.as_ref().map_or(0, |s| s.failed_rows),
            last_failure: summary.as_ref().and_then(|s| s.last_failure.clone()),
            last: summary.map(|s| s.last),
        }
    }
}

/// Every declared rule (of one table, or all) with its evaluations since
/// `since_ms` added up, from the results table; plus schema drift results.
pub async fn status(
    catalog: &Catalog,
    table: Option<&TableName>,
    since_ms: Option<i64>,
) -> anyhow::Result<Vec<RuleStatus>> {
    let checks = load_checks(catalog).await?;
    let location = results::location(&catalog.project().lake_root());
    let name = table.map(ToString::to_string);
    let mut summaries = results::summaries(&location, name.as_deref(), since_ms).await?;
    let mut statuses = Vec::new();
    for table_checks in &checks.tables {
        if table.is_some_and(|t| t != &table_checks.table) {
            continue;
        }
        for rule in &table_checks.rules {
            let position = summaries.iter().position(|s| {
                s.last.table == table_checks.table.to_string() && s.last.rule == rule.name
            });
            statuses.push(RuleStatus::new(
                table_checks.table.to_string(),
                rule.name.clone(),
                rule.kind.check_name().to_string(),
                rule.action.as_str().to_string(),
                rule.severity.as_str().to_string(),
                position.map(|p| summaries.remove(p)),
            ));
        }
    }
    // Results of rules no file declares: schema drift, and rules since removed.
    for summary in summaries {
        let last = &summary.last;
        statuses.push(RuleStatus::new(
            last.table.clone(),
            last.rule.clone(),
            last.check.clone(),
            last.action.as_str().to_string(),
            last.severity.clone(),
            Some(summary),
        ));
    }
    Ok(statuses)
}

/// Where `strata run` notes when it started, for `strata check`'s default span.
fn run_start_file(catalog: &Catalog) -> std::path::PathBuf {
    catalog.project().state_dir().join("last-run-start")
}

/// Notes that the project's pipelines start now.
pub fn record_run_start(catalog: &Catalog) -> anyhow::Result<()> {
    let file = run_start_file(catalog);
    let written = file.with_extension("tmp");
    std::fs::write(&written, now_ms().to_string())
        .and_then(|()| std::fs::rename(&written, &file))
        .with_context(|| format!("noting the run's start in {}", file.display()))
}

/// When the project's pipelines last started, ms since the epoch, if ever.
pub fn last_run_start(catalog: &Catalog) -> Option<i64> {
    std::fs::read_to_string(run_start_file(catalog))
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// `strata check --history`: the table's rules over its Delta table's rows,
/// and its reconciliations over its whole event-time span. The results are
/// recorded in the results table too.
pub async fn history(
    catalog: &Catalog,
    table: &TableName,
) -> anyhow::Result<Vec<strata_quality::CheckResult>> {
    let checks = load_checks(catalog).await?;
    let rules = checks.of(table);
    if rules.is_empty() {
        anyhow::bail!(
            "{table} has no rules\n  hint: declare them in {}/<file>.toml with table = \"{table}\" (docs/quality.md)",
            strata_quality::checks::checks_dir(&catalog.project().dir).display()
        );
    }
    let entry = catalog.get(table).await?;
    let location = strata_catalog::connectors::delta_location(catalog.project(), &entry.def)
        .map_err(|_| anyhow::anyhow!("{table} is not a Delta table\n  hint: --history reads a Delta table's rows; check MySQL/TiDB and Kafka tables while their pipelines run"))?;
    let context = catalog.session().await?;
    let now = now_ms();
    let mut found =
        strata_quality::history::evaluate(table, &location, rules.clone(), context.clone(), now)
            .await?;
    let quarantine = quarantine_location(catalog, table).await;
    for rule in &rules {
        if let RuleKind::Reconcile(spec) = &rule.kind
            && let Some((first, last)) = reconcile::span(&context, table, &spec.time).await?
        {
            let window = spec.window.as_millis() as i64;
            let end = (last.div_euclid(window) + 1) * window;
            let reconciliation = reconcile::Reconciliation {
                table,
                rule,
                spec,
                quarantine: quarantine.as_deref(),
            };
            let mut results =
                reconcile::evaluate(&context, reconciliation, first, end, now).await?;
            for result in &mut results {
                result.scope = "history".to_string();
            }
            found.extend(results);
        }
    }
    results::append(
        &results::location(&catalog.project().lake_root()),
        found.clone(),
    )
    .await?;
    Ok(found)
}
