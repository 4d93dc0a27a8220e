//! `strata run`: validate the project, run every pipeline, serve the API,
//! show progress, and stop cleanly with a summary.
//!
//! ```text
//!   load + validate (file:line:col errors) ──▶ one task per pipeline ──▶ progress every 2 s (stderr)
//!                                                  │ Ctrl-C, --for elapsed, or --until-idle and all caught up
//!                                                  ▼
//!                                   stop signal ──▶ each pipeline commits what it read ──▶ summary
//! ```

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::Context;
use serde::Serialize;
use strata_catalog::Catalog;
use strata_pipelines::{PipelineRun, Quality, RunMode, TableStats, ValidPipeline, load_project};
use strata_quality::{Checks, ResultsLog};

use crate::quality::Observers;

/// How long and how to run.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// Stop after this long.
    pub duration: Option<Duration>,
    /// Stop once every pipeline has read its sources to the end and committed.
    pub until_idle: bool,
    /// Print progress lines to stderr.
    pub progress: bool,
}

#[derive(Debug, Serialize)]
pub struct TableRun {
    pub name: String,
    pub layer: String,
    pub pipeline: String,
    pub records_in: u64,
    pub rows_committed: u64,
    pub late_rows: u64,
    pub quarantined_rows: u64,
    pub commits: u64,
    /// The source's watermark, in milliseconds since the epoch.
    pub watermark_ms: Option<i64>,
    /// When the table last committed, in milliseconds since the epoch.
    pub last_commit_ms: Option<i64>,
    /// The Delta version of its last commit (a Delta target's).
    pub table_version: Option<i64>,
    /// The data files the Delta target holds after its last commit.
    pub files: Option<i64>,
    /// `running`; `degraded` while it waits for its source topic or a lookup
    /// join waits for its database; `failed` once it stopped with an error.
    pub status: &'static str,
    pub degraded_reason: Option<String>,
    /// Why the pipeline failed, when it did (the others go on).
    pub failure: Option<String>,
    pub lookups: Vec<LookupRun>,
}

/// A lookup join's counters.
#[derive(Debug, Serialize)]
pub struct LookupRun {
    /// `alias (space.table)`.
    pub join: String,
    /// The dimension's rows are in memory: no cache, no queries.
    pub in_memory: bool,
    pub rows: u64,
    pub keys: u64,
    pub cache_hits: u64,
    pub cache_hit_rate: f64,
    pub misses: u64,
    pub queries: u64,
    pub queries_per_1k_rows: f64,
    pub mean_query_ms: f64,
    pub failed_queries: u64,
    /// For an event-time temporal join: probe rows waiting for the versioned
    /// side's watermark, and the versions held.
    pub held_back: u64,
    pub versions: u64,
}

/// The live counters of the pipelines running in this process, by target table,
/// shared with the HTTP API (`/api/v1/pipelines`, `/metrics`).
#[derive(Debug, Clone, Default)]
pub struct Registry {
    tables: Arc<std::sync::RwLock<BTreeMap<String, Running>>>,
    quality: Arc<std::sync::RwLock<Option<QualityState>>>,
}

/// The checks of the project that runs, and where their results go.
#[derive(Debug, Clone)]
pub struct QualityState {
    pub checks: Arc<Checks>,
    pub results: ResultsLog,
}

/// A running pipeline's target layer, pipeline name and counters.
type Running = (String, String, Arc<TableStats>);

impl Registry {
    fn insert(&self, table: String, layer: String, pipeline: String, stats: Arc<TableStats>) {
        self.tables
            .write()
            .expect("the registry is never poisoned")
            .insert(table, (layer, pipeline, stats));
    }

    /// The counters of the pipeline writing `table` (`space.name`) here, if one does.
    pub fn stats(&self, table: &str) -> Option<Arc<TableStats>> {
        self.tables
            .read()
            .expect("the registry is never poisoned")
            .get(table)
            .map(|(_, _, stats)| stats.clone())
    }

    /// The checks and results of the project running here, once it runs.
    pub fn quality(&self) -> Option<QualityState> {
        self.quality.read().expect("never poisoned").clone()
    }

    fn set_quality(&self, state: QualityState) {
        *self.quality.write().expect("never poisoned") = Some(state);
    }

    /// Every table's counters now, in table order.
    pub fn tables(&self) -> Vec<TableRun> {
        self.tables
            .read()
            .expect("the registry is never poisoned")
            .iter()
            .map(|(name, (layer, pipeline, s))| {
                let last_commit = s.last_commit_ms.load(Ordering::Relaxed);
                let degraded_reason = s.degraded();
                let failure = s.failure.lock().expect("not poisoned").clone();
                TableRun {
                    name: name.clone(),
                    layer: layer.clone(),
                    pipeline: pipeline.clone(),
                    records_in: s.records_in.load(Ordering::Relaxed),
                    rows_committed: s.rows_committed.load(Ordering::Relaxed),
                    late_rows: s.late_rows.load(Ordering::Relaxed),
                    quarantined_rows: s.quarantined_rows.load(Ordering::Relaxed),
                    commits: s.commits.load(Ordering::Relaxed),
                    watermark_ms: s.watermark(),
                    last_commit_ms: (last_commit > 0).then_some(last_commit),
                    table_version: Some(s.table_version.load(Ordering::Relaxed))
                        .filter(|&v| v >= 0),
                    files: Some(s.files.load(Ordering::Relaxed)).filter(|&f| f >= 0),
                    status: if failure.is_some() {
                        "failed"
                    } else if degraded_reason.is_some() {
                        "degraded"
                    } else {
                        "running"
                    },
                    degraded_reason,
                    failure,
                    lookups: s
                        .lookup_stats()
                        .iter()
                        .map(|l| LookupRun {
                            join: l.name.clone(),
                            in_memory: l.in_memory,
                            rows: l.rows.load(Ordering::Relaxed),
                            keys: l.keys.load(Ordering::Relaxed),
                            cache_hits: l.cache_hits.load(Ordering::Relaxed),
                            cache_hit_rate: l.hit_rate(),
                            misses: l.misses.load(Ordering::Relaxed),
                            queries: l.queries.load(Ordering::Relaxed),
                            queries_per_1k_rows: l.queries_per_1k_rows(),
                            mean_query_ms: l.mean_query_ms(),
                            failed_queries: l.failures.load(Ordering::Relaxed),
                            held_back: l.held_back.load(Ordering::Relaxed),
                            versions: l.versions.load(Ordering::Relaxed),
                        })
                        .collect(),
                }
            })
            .collect()
    }
}

#[derive(Debug, Serialize)]
pub struct RunSummary {
    pub tables: Vec<TableRun>,
    pub duration_s: f64,
}

/// What `strata pipeline reset` did.
#[derive(Debug, Serialize)]
pub struct ResetReport {
    pub pipeline: String,
    pub source: String,
    /// `committed`, `earliest` or `latest`.
    pub from: &'static str,
}

/// Drops a pipeline's operator state with one commit to its target.
/// A run of one pipeline that reads no rows (to reset or explain it): no
/// quality rule runs, so what the other pipelines write does not matter.
pub async fn rowless_run(
    catalog: &Catalog,
    pipeline: ValidPipeline,
) -> anyhow::Result<PipelineRun> {
    let written = Arc::new(std::collections::BTreeSet::from([pipeline
        .target
        .name
        .clone()]));
    Ok(PipelineRun {
        catalog: catalog.clone(),
        pipeline,
        stats: Arc::new(TableStats::new()),
        mode: RunMode::UntilCaughtUp,
        quality: Quality {
            checks: Arc::new(crate::quality::load_checks(catalog).await?),
            results: None,
            written,
        },
        replay: None,
    })
}

pub async fn reset_pipeline(
    catalog: &Catalog,
    name: &str,
    from: strata_pipelines::ResetFrom,
) -> anyhow::Result<ResetReport> {
    let pipelines = load_project(catalog).await?;
    let known: Vec<String> = pipelines.iter().map(|p| p.pipeline.name.clone()).collect();
    let pipeline = pipelines
        .into_iter()
        .find(|p| p.pipeline.name == name)
        .with_context(|| {
            format!(
                "no pipeline is named {name}\n  hint: the pipelines are {}",
                known.join(", ")
            )
        })?;
    let source = pipeline
        .streams()
        .next()
        .map(|s| s.name.to_string())
        .unwrap_or_default();
    let run = rowless_run(catalog, pipeline).await?;
    run.reset(from)
        .await
        .with_context(|| format!("pipeline {name} was not reset"))?;
    Ok(ResetReport {
        pipeline: name.to_string(),
        source,
        from: match from {
            strata_pipelines::ResetFrom::Committed => "committed",
            strata_pipelines::ResetFrom::Earliest => "earliest",
            strata_pipelines::ResetFrom::Latest => "latest",
        },
    })
}

/// Runs the project's pipelines until stopped.
pub async fn run_project(
    catalog: &Catalog,
    options: RunOptions,
    registry: &Registry,
) -> anyhow::Result<RunSummary> {
    prepare_project(catalog, options, registry)
        .await?
        .run()
        .await
}

/// A project's pipelines, loaded and checked, not started yet.
pub struct PreparedRun<'a> {
    catalog: &'a Catalog,
    registry: &'a Registry,
    options: RunOptions,
    runs: Vec<(String, PipelineRun, Option<crate::openlineage::ObservedRun>)>,
    emitter: Option<Arc<crate::openlineage::Emitter>>,
    checks: Arc<Checks>,
    results: ResultsLog,
    observers: Observers,
}

/// Loads and checks every pipeline of the project (nothing runs when one
/// cannot), and registers their counters in `registry`.
pub async fn prepare_project<'a>(
    catalog: &'a Catalog,
    options: RunOptions,
    registry: &'a Registry,
) -> anyhow::Result<PreparedRun<'a>> {
    let pipelines = load_project(catalog).await?;
    if pipelines.is_empty() {
        anyhow::bail!(
            "{} has no pipelines: add INSERT INTO … SELECT … files under pipelines/<layer>/",
            catalog.project().dir.display()
        );
    }
    let mode = if options.until_idle {
        RunMode::UntilCaughtUp
    } else {
        RunMode::Continuous
    };
    let mut runs = Vec::with_capacity(pipelines.len());
    let project = catalog.project();
    let emitter = project
        .config
        .openlineage
        .as_ref()
        .map(|config| Arc::new(crate::openlineage::Emitter::start(config, &project.dir)));
    let tables = catalog.definitions().await?;
    let checks = Arc::new(crate::quality::load_checks(catalog).await?);
    for note in crate::quality::unevaluated(&checks, &pipelines) {
        eprintln!("warning: {note}");
    }
    let written: std::collections::BTreeSet<_> =
        pipelines.iter().map(|p| p.target.name.clone()).collect();
    let written = Arc::new(written);
    let results = crate::quality::open_results(catalog).await?;
    registry.set_quality(QualityState {
        checks: checks.clone(),
        results: results.clone(),
    });
    let mut observers = Observers::default();
    for pipeline in pipelines {
        let table_stats = Arc::new(TableStats::new());
        observers.add(&pipeline, &table_stats);
        let observed = match &emitter {
            Some(emitter) => Some(crate::openlineage::ObservedRun {
                emitter: emitter.clone(),
                context: Arc::new(run_context(&pipeline, &tables, project).await?),
            }),
            None => None,
        };
        registry.insert(
            pipeline.target.name.to_string(),
            pipeline.target.layer.to_string(),
            pipeline.pipeline.name.clone(),
            table_stats.clone(),
        );
        let label = format!(
            "{} ({})",
            pipeline.pipeline.name,
            pipeline.pipeline.file.display()
        );
        runs.push((
            label,
            PipelineRun {
                catalog: catalog.clone(),
                pipeline,
                stats: table_stats,
                mode,
                quality: Quality {
                    checks: checks.clone(),
                    results: Some(results.clone()),
                    written: written.clone(),
                },
                replay: None,
            },
            observed,
        ));
    }
    for (label, run, _) in &runs {
        run.check()
            .await
            .with_context(|| format!("pipeline {label} cannot run"))?;
    }
    Ok(PreparedRun {
        catalog,
        registry,
        options,
        runs,
        emitter,
        checks,
        results,
        observers,
    })
}

impl PreparedRun<'_> {
    /// Runs the pipelines until stopped, as `options` say.
    pub async fn run(self) -> anyhow::Result<RunSummary> {
        let PreparedRun {
            catalog,
            registry,
            options,
            runs,
            emitter,
            checks,
            results,
            observers,
        } = self;
        let started = Instant::now();
        crate::quality::record_run_start(catalog)?;
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let mut tasks = tokio::task::JoinSet::new();
        // Each pipeline fails alone: an error or a panic in one is reported with
        // its name and recorded in its status, and the others go on.
        let mut labels = std::collections::HashMap::new();
        if options.until_idle {
            // Catching up runs each pipeline to the end in dependency order, so that a
            // downstream pipeline sees everything its upstream wrote.
            let stop = stop_rx.clone();
            tasks.spawn(async move {
                let mut failed = Vec::new();
                for (label, run, observed) in runs {
                    let stats = run.stats.clone();
                    let ran =
                        tokio::spawn(run_observed(run, stop.clone(), label.clone(), observed));
                    if let Err(err) = outcome_of(ran.await, &label) {
                        report_failure(&stats, &err);
                        failed.push(err);
                    }
                }
                combine_failures(failed)
            });
        } else {
            for (label, run, observed) in runs {
                let stop = stop_rx.clone();
                let stats = run.stats.clone();
                let handle = tasks.spawn(run_observed(run, stop, label.clone(), observed));
                labels.insert(handle.id(), (label, stats));
            }
        }
        let monitor = tokio::spawn(crate::quality::monitor(
            catalog.clone(),
            checks,
            observers,
            results.clone(),
            stop_rx.clone(),
        ));
        let mut deadline = options.duration.map(|d| started + d);
        let mut progress = tokio::time::interval(Duration::from_secs(2));
        progress.tick().await;
        let mut failures = Vec::new();
        loop {
            tokio::select! {
                finished = tasks.join_next_with_id() => match finished {
                    None => break,
                    Some(finished) => {
                        let id = match &finished {
                            Ok((id, _)) => *id,
                            Err(err) => err.id(),
                        };
                        match labels.remove(&id) {
                            Some((label, stats)) => {
                                if let Err(err) = outcome_of(finished.map(|(_, outcome)| outcome), &label) {
                                    report_failure(&stats, &err);
                                    failures.push(err);
                                }
                            }
                            // A catch-up run reported each pipeline's failure as it came.
                            None => {
                                if let Err(err) = outcome_of(finished.map(|(_, outcome)| outcome), "catch-up") {
                                    failures.push(err);
                                }
                            }
                        }
                    }
                },
                _ = tokio::signal::ctrl_c() => {
                    eprintln!("stopping: committing what was read …");
                    let _ = stop_tx.send(true);
                }
                _ = sleep_until(deadline) => {
                    deadline = None;
                    let _ = stop_tx.send(true);
                }
                _ = progress.tick() => if options.progress { print_progress(registry, started) },
            }
        }
        // The pipelines have stopped: what they sent is flushed before returning.
        drop(tasks);
        let _ = stop_tx.send(true);
        let _ = monitor.await;
        if let Err(err) = results.flush().await {
            eprintln!("warning: the last quality results were not written: {err}");
        }
        if let Some(emitter) = emitter.and_then(Arc::into_inner) {
            emitter.close().await;
        }
        combine_failures(failures)?;
        Ok(RunSummary {
            tables: registry.tables(),
            duration_s: started.elapsed().as_secs_f64(),
        })
    }
}

/// A pipeline task's outcome, with a panic turned into that pipeline's error.
fn outcome_of(
    joined: Result<anyhow::Result<()>, tokio::task::JoinError>,
    label: &str,
) -> anyhow::Result<()> {
    match joined {
        Ok(outcome) => outcome,
        Err(err) if err.is_panic() => {
            let message = strata_pipelines::runner::panic_message(err.into_panic());
            Err(anyhow::anyhow!(
                "pipeline {label} panicked: {message}\n  hint: this is a bug in Strata; please report it with the pipeline's SQL. The other pipelines go on"
            ))
        }
        Err(err) => Err(anyhow::anyhow!("pipeline {label} stopped: {err}")),
    }
}

/// Prints a pipeline's failure and keeps it in its status.
fn report_failure(stats: &TableStats, err: &anyhow::Error) {
    let message = format!("{err:#}");
    eprintln!("error: {message}");
    *stats.failure.lock().expect("not poisoned") = Some(message);
}

/// Ok when no pipeline failed; otherwise every failure, one per line.
fn combine_failures(failures: Vec<anyhow::Error>) -> anyhow::Result<()> {
    match failures.len() {
        0 => Ok(()),
        1 => Err(failures.into_iter().next().expect("one failure")),
        n => Err(anyhow::anyhow!(
            "{n} pipelines failed:\n{}",
            failures
                .iter()
                .map(|err| format!("  {err:#}"))
                .collect::<Vec<_>>()
                .join("\n")
        )),
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline.into()).await,
        None => std::future::pending().await,
    }
}

fn print_progress(registry: &Registry, started: Instant) {
    let elapsed = started.elapsed().as_secs();
    let now_ms = strata_pipelines::runner::now_ms();
    for t in registry.tables() {
        let lag = match t.watermark_ms {
            Some(watermark) => format!(
                "watermark lag {:.1} s",
                (now_ms - watermark) as f64 / 1000.0
            ),
            None => "no watermark yet".to_string(),
        };
        let lookups: String = t
            .lookups
            .iter()
            .map(|l| {
                if l.in_memory {
                    format!(", lookup {} in memory, {} misses", l.join, l.misses)
                } else {
                    format!(
                        ", lookup {} {:.0} % cached, {:.1} queries/1k rows",
                        l.join,
                        l.cache_hit_rate * 100.0,
                        l.queries_per_1k_rows
                    )
                }
            })
            .collect();
        eprintln!(
            "[{elapsed:>4}s] {}: {} records in, {} rows committed, {} quarantined, {} late, {} commits, {lag}{lookups}",
            t.name, t.records_in, t.rows_committed, t.quarantined_rows, t.late_rows, t.commits,
        );
        if let Some(failure) = &t.failure {
            eprintln!("[{elapsed:>4}s] {}: FAILED: {failure}", t.name);
        } else if let Some(reason) = &t.degraded_reason {
            eprintln!("[{elapsed:>4}s] {}: DEGRADED: {reason}", t.name);
        }
    }
}

/// Runs a pipeline, with its OpenLineage events when they are configured.
async fn run_observed(
    run: PipelineRun,
    stop: tokio::sync::watch::Receiver<bool>,
    label: String,
    observed: Option<crate::openlineage::ObservedRun>,
) -> anyhow::Result<()> {
    if let Some(observed) = &observed {
        observed.start(&run.stats);
    }
    let stats = run.stats.clone();
    let outcome = run
        .run(stop)
        .await
        .with_context(|| format!("pipeline {label} stopped"));
    if let Some(observed) = &observed {
        // A commit still landing after a failure sends no RUNNING after the FAIL.
        stats.on_commit.clear();
        observed.finish(&outcome);
    }
    outcome
}

/// What a pipeline's OpenLineage events carry.
async fn run_context(
    pipeline: &strata_pipelines::ValidPipeline,
    tables: &[strata_catalog::TableDef],
    project: &strata_catalog::Project,
) -> anyhow::Result<strata_lineage::openlineage::RunContext> {
    let config = project
        .config
        .openlineage
        .as_ref()
        .expect("called when OpenLineage is configured");
    let mut involved = pipeline.sources.clone();
    involved.push(pipeline.target.clone());
    Ok(strata_lineage::openlineage::RunContext {
        namespace: config.namespace.clone(),
        run_id: uuid::Uuid::new_v4().to_string(),
        lineage: crate::lineage::of_pipeline(pipeline, tables).await,
        // The user's SQL as written (the plan reads a rewritten form).
        sql: std::fs::read_to_string(&pipeline.pipeline.file).unwrap_or_else(|_| {
            format!(
                "INSERT INTO {} {}",
                pipeline.pipeline.target.table, pipeline.pipeline.query
            )
        }),
        tables: involved,
    })
}
