//! The HTTP API, under `/api/v1`. Each route does what the CLI command of the
//! same name does and answers with the same JSON.
//!
//! ```text
//!   GET    /api/v1/health
//!   GET    /api/v1/tables                          catalog list
//!   POST   /api/v1/tables        {ddl, update?}    catalog register
//!   GET    /api/v1/tables/{space}/{name}           catalog show
//!   GET    /api/v1/tables/{space}/{name}/schemas   catalog history
//!   DELETE /api/v1/tables/{space}/{name}           catalog drop
//!   POST   /api/v1/discover/{connection}  {…}      catalog discover
//!   POST   /api/v1/query  {sql, format?, limit?, timeout_ms?}   query: json | csv | arrow
//!   GET    /api/v1/subscribe  (WebSocket; ?token=…)     live subscriptions, see subscribe.rs
//!   GET    /api/v1/pipelines                       the running pipelines' counters (as in the run summary)
//!   GET    /api/v1/lineage/{node}?direction=&depth=&level=&at=   lineage around a table, column or pipeline
//!   GET    /api/v1/lineage/{node}/impact?at=       what a column change breaks
//!   GET    /api/v1/lineage/path?from=&to=&at=      the path between two nodes
//!   GET    /metrics                                the same, for Prometheus
//!   GET    /  →  /ui/lineage                       the web UI: the lineage browser (ui/, built into the binary)
//!   GET    /ui/query                               the web UI: SQL, and a live view of a subscribed table
//! ```
//!
//! Every route but `/api/v1/health` and the UI's pages needs a token:
//! `Authorization: Bearer <token>`. Without a valid one the answer is 401; a
//! request outside the token's grants is 403 and changes nothing.
//!
//! Errors are JSON `{"error": …, "hint": …}`: 4xx when the request is at
//! fault (408 when a query runs past its timeout), 502 when a server behind
//! Strata could not be reached, 500 otherwise.

use axum::extract::{Extension, Path, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};
use strata_catalog::{
    Access, Catalog, CatalogError, DiscoverOptions, Layer, Principal, RegisterMode, TableName,
};

use crate::query::output::{self, RowFormat};
use crate::query::{QueryEngine, QueryError, QueryOptions};

use crate::run::{LookupRun, Registry, TableRun};
use crate::views::{DiscoveryView, SchemaVersionView, TableDetail, TableSummary};

#[derive(Debug, Clone)]
pub struct AppState {
    pub catalog: Catalog,
    pub pipelines: Registry,
    /// The lineage graph, rebuilt only when the catalog or the pipelines change.
    pub lineage: crate::lineage::Cache,
    pub queries: QueryEngine,
}

/// The API over `catalog`, with the counters of the pipelines in `pipelines`.
pub fn router(catalog: Catalog, pipelines: Registry) -> Router {
    router_for(QueryEngine::new(catalog, pipelines))
}

/// The API over the engine's catalog and pipelines, sharing its query counters.
pub fn router_for(queries: QueryEngine) -> Router {
    let state = AppState {
        catalog: queries.catalog().clone(),
        pipelines: queries.pipelines().clone(),
        lineage: crate::lineage::Cache::default(),
        queries,
    };
    let open = Router::new()
        .route("/api/v1/health", get(health))
        .route("/", get(home))
        .route("/ui/lineage", get(lineage_page))
        .route("/ui/lineage.js", get(lineage_script))
        .route("/ui/query", get(query_page))
        .route("/ui/query.js", get(query_script));
    Router::new()
        .route("/api/v1/tables", get(list_tables).post(register_tables))
        .route(
            "/api/v1/tables/{space}/{name}",
            get(show_table).delete(drop_table),
        )
        .route("/api/v1/tables/{space}/{name}/schemas", get(table_schemas))
        .route("/api/v1/discover/{connection}", post(discover))
        .route("/api/v1/query", post(query))
        .route("/api/v1/subscribe", get(subscribe))
        .route("/api/v1/pipelines", get(list_pipelines))
        .route("/api/v1/checks", get(list_checks))
        .route("/api/v1/lineage/path", get(lineage_path))
        .route("/api/v1/lineage/{node}", get(lineage_around))
        .route("/api/v1/lineage/{node}/impact", get(lineage_impact))
        .route("/metrics", get(metrics))
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            authenticate,
        ))
        .merge(open)
        .with_state(state)
}

/// `/` is the lineage browser, with the address's query kept: `strata demo`
/// prints `/?token=…`, which the page takes its token from.
async fn home(axum::extract::RawQuery(query): axum::extract::RawQuery) -> Response {
    let target = match query.filter(|q| !q.is_empty()) {
        Some(query) => format!("/ui/lineage?{query}"),
        None => "/ui/lineage".to_string(),
    };
    axum::response::Redirect::temporary(&target).into_response()
}

/// Browsers cannot set headers on a WebSocket: a subscription may carry its
/// token in the query (`?token=…`), and only a subscription.
fn websocket_token(request: &Request) -> Option<String> {
    if request.uri().path() != "/api/v1/subscribe" {
        return None;
    }
    url::form_urlencoded::parse(request.uri().query()?.as_bytes())
        .find(|(name, _)| name == "token")
        .map(|(_, value)| value.into_owned())
}

/// A live subscription (see [`crate::subscribe`]).
async fn subscribe(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    upgrade: axum::extract::WebSocketUpgrade,
) -> Response {
    upgrade.on_upgrade(move |socket| crate::subscribe::serve(socket, state.queries, principal))
}

/// Takes the request's bearer token to the catalog store and hands its
/// principal to the route, or answers 401.
async fn authenticate(State(state): State<AppState>, mut request: Request, next: Next) -> Response {
    let presented = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| {
            let (scheme, token) = value.split_once(' ')?;
            scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
        })
        .map(str::to_string)
        .or_else(|| websocket_token(&request));
    let Some(presented) = presented else {
        return ApiError::from(CatalogError::Unauthorized {
            message: "this request carries no token".to_string(),
        })
        .into_response();
    };
    match state.catalog.store().authenticate(&presented).await {
        Ok(principal) => {
            request.extensions_mut().insert(principal);
            next.run(request).await
        }
        Err(err) => ApiError::from(err).into_response(),
    }
}

/// An error as the API answers it.
#[derive(Debug)]
pub struct ApiError(Box<CatalogError>);

impl From<CatalogError> for ApiError {
    fn from(err: CatalogError) -> Self {
        Self(Box::new(err))
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = match self.0.as_ref() {
            CatalogError::NotFound { .. } | CatalogError::NoSuchVersion { .. } => {
                StatusCode::NOT_FOUND
            }
            CatalogError::AlreadyExists { .. } => StatusCode::CONFLICT,
            CatalogError::Unauthorized { .. } => StatusCode::UNAUTHORIZED,
            CatalogError::Forbidden { .. } => StatusCode::FORBIDDEN,
            CatalogError::Unreachable { .. } => StatusCode::BAD_GATEWAY,
            CatalogError::Query(err) if unreachable_behind(err) => StatusCode::BAD_GATEWAY,
            CatalogError::Query(_) => StatusCode::BAD_REQUEST,
            err if err.is_user_error() => StatusCode::BAD_REQUEST,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        error_response(status, self.0.to_string())
    }
}

/// An error's text as the API answers it: `{"error": …, "hint": …}`.
fn error_response(status: StatusCode, text: String) -> Response {
    let (message, hint) = match text.split_once("\n  hint: ") {
        Some((message, hint)) => (message.to_string(), Some(hint.to_string())),
        None => (text, None),
    };
    (status, Json(json!({"error": message, "hint": hint}))).into_response()
}

/// Whether a query failed because a server behind a table could not be reached.
fn unreachable_behind(err: &datafusion::error::DataFusionError) -> bool {
    match err.find_root() {
        datafusion::error::DataFusionError::External(inner) => matches!(
            inner.downcast_ref::<CatalogError>(),
            Some(CatalogError::Unreachable { .. })
        ),
        _ => false,
    }
}

type ApiResult<T> = Result<Json<T>, ApiError>;

async fn list_pipelines(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
) -> Json<Vec<TableRun>> {
    Json(
        state
            .pipelines
            .tables()
            .into_iter()
            .filter(|run| readable(&principal, &run.name))
            .collect(),
    )
}

/// Whether `principal` may read the table named `space.name`.
fn readable(principal: &Principal, table: &str) -> bool {
    let space = table.split('.').next().unwrap_or_default();
    principal.allows(space, Access::Read)
}

/// A counter's name, help text, and value for a table.
type Counter = (&'static str, &'static str, fn(&TableRun) -> u64);

/// A lookup join's metric: name, type, help text, and value.
type LookupCounter = (
    &'static str,
    &'static str,
    &'static str,
    fn(&LookupRun) -> f64,
);

/// The pipelines' counters in Prometheus' text format.
async fn metrics(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
) -> Response {
    let mut tables = state.pipelines.tables();
    tables.retain(|table| readable(&principal, &table.name));
    let now_ms = strata_pipelines::runner::now_ms();
    let mut text = String::new();
    let counters: [Counter; 5] = [
        (
            "strata_records_in_total",
            "Source records read by the pipeline that fills the table.",
            |t| t.records_in,
        ),
        (
            "strata_rows_committed_total",
            "Rows committed to the table.",
            |t| t.rows_committed,
        ),
        (
            "strata_quarantined_rows_total",
            "Records sent to the table's quarantine.",
            |t| t.quarantined_rows,
        ),
        (
            "strata_late_rows_total",
            "Rows that arrived after their window closed, kept in the table's late-data table.",
            |t| t.late_rows,
        ),
        ("strata_commits_total", "Commits to the table.", |t| {
            t.commits
        }),
    ];
    let labels = |t: &TableRun| {
        format!(
            "table=\"{}\",layer=\"{}\",pipeline=\"{}\"",
            t.name, t.layer, t.pipeline
        )
    };
    for (name, help, value) in counters {
        text.push_str(&format!("# HELP {name} {help}\n# TYPE {name} counter\n"));
        for t in &tables {
            text.push_str(&format!("{name}{{{}}} {}\n", labels(t), value(t)));
        }
    }
    text.push_str("# HELP strata_table_files Data files the Delta table holds after its last commit.\n# TYPE strata_table_files gauge\n");
    for t in &tables {
        if let Some(files) = t.files {
            text.push_str(&format!("strata_table_files{{{}}} {files}\n", labels(t)));
        }
    }
    let queries = &state.queries.counters;
    for (name, kind, help, value) in [
        (
            "strata_queries_running",
            "gauge",
            "Queries running now (HTTP API and CLI through it).",
            &queries.running,
        ),
        (
            "strata_queries_total",
            "counter",
            "Queries started.",
            &queries.total,
        ),
        (
            "strata_queries_failed_total",
            "counter",
            "Queries that failed, were refused or timed out.",
            &queries.failed,
        ),
    ] {
        text.push_str(&format!(
            "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {}\n",
            value.load(std::sync::atomic::Ordering::Relaxed)
        ));
    }
    text.push_str("# HELP strata_watermark_lag_seconds How far the table's source watermark is behind the wall clock.\n# TYPE strata_watermark_lag_seconds gauge\n");
    for t in &tables {
        if let Some(watermark) = t.watermark_ms {
            let lag = (now_ms - watermark) as f64 / 1000.0;
            text.push_str(&format!(
                "strata_watermark_lag_seconds{{{}}} {lag}\n",
                labels(t)
            ));
        }
    }
    text.push_str("# HELP strata_degraded Whether the table's pipeline waits for a lookup join's database (1) or runs (0).\n# TYPE strata_degraded gauge\n");
    for t in &tables {
        let degraded = u8::from(t.status == "degraded");
        text.push_str(&format!("strata_degraded{{{}}} {degraded}\n", labels(t)));
    }
    let lookup_counters: [LookupCounter; 5] = [
        (
            "strata_lookup_rows_total",
            "counter",
            "Probe rows a lookup join looked up.",
            |l| l.rows as f64,
        ),
        (
            "strata_lookup_cache_hits_total",
            "counter",
            "Distinct keys a lookup join's cache answered.",
            |l| l.cache_hits as f64,
        ),
        (
            "strata_lookup_misses_total",
            "counter",
            "Probe rows a lookup join found no dimension row for.",
            |l| l.misses as f64,
        ),
        (
            "strata_lookup_queries_total",
            "counter",
            "Queries a lookup join sent to its database.",
            |l| l.queries as f64,
        ),
        (
            "strata_lookup_query_mean_seconds",
            "gauge",
            "The mean time of a lookup join's queries.",
            |l| l.mean_query_ms / 1000.0,
        ),
    ];
    for (name, kind, help, value) in lookup_counters {
        text.push_str(&format!("# HELP {name} {help}\n# TYPE {name} {kind}\n"));
        for t in &tables {
            for lookup in &t.lookups {
                text.push_str(&format!(
                    "{name}{{{},join=\"{}\"}} {}\n",
                    labels(t),
                    lookup.join,
                    value(lookup)
                ));
            }
        }
    }
    text.push_str("# HELP strata_last_commit_timestamp_seconds When the table last committed.\n# TYPE strata_last_commit_timestamp_seconds gauge\n");
    for t in &tables {
        if let Some(at) = t.last_commit_ms {
            let seconds = at as f64 / 1000.0;
            text.push_str(&format!(
                "strata_last_commit_timestamp_seconds{{{}}} {seconds}\n",
                labels(t)
            ));
        }
    }
    if let Some(quality) = state.pipelines.quality() {
        let mut statuses = quality.results.latest();
        statuses.retain(|status| readable(&principal, &status.last.table));
        quality_metrics(&mut text, &statuses);
    }
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4",
        )],
        text,
    )
        .into_response()
}

fn quality_metrics(text: &mut String, statuses: &[strata_quality::Status]) {
    // Prometheus label values escape backslashes, quotes and newlines.
    let escape = |value: &str| {
        value
            .replace('\\', "\\\\")
            .replace('"', "\\\"")
            .replace('\n', "\\n")
    };
    let labels = |s: &strata_quality::Status| {
        format!(
            "table=\"{}\",rule=\"{}\",check=\"{}\",severity=\"{}\"",
            escape(&s.last.table),
            escape(&s.last.rule),
            escape(&s.last.check),
            escape(&s.last.severity)
        )
    };
    let metrics: [QualityMetric; 3] = [
        (
            "strata_quality_passing",
            "gauge",
            "Whether the rule's latest evaluation passed (1) or failed (0).",
            |s| u64::from(!s.last.failed()),
        ),
        (
            "strata_quality_failures_total",
            "counter",
            "Evaluations of the rule that failed.",
            |s| s.failures,
        ),
        (
            "strata_quality_failed_rows_total",
            "counter",
            "Rows (or windows) the rule failed on.",
            |s| s.failed_rows,
        ),
    ];
    for (name, kind, help, value) in metrics {
        text.push_str(&format!("# HELP {name} {help}\n# TYPE {name} {kind}\n"));
        for status in statuses {
            text.push_str(&format!("{name}{{{}}} {}\n", labels(status), value(status)));
        }
    }
}

/// A quality metric: name, type, help text, and value for a rule's status.
type QualityMetric = (
    &'static str,
    &'static str,
    &'static str,
    fn(&strata_quality::Status) -> u64,
);

async fn health() -> Json<Value> {
    Json(json!({"status": "ok"}))
}

async fn list_tables(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
) -> ApiResult<Vec<TableSummary>> {
    let entries = state.catalog.list().await?;
    Ok(Json(
        entries
            .iter()
            .filter(|entry| principal.allows(&entry.def.name.space, Access::Read))
            .map(TableSummary::new)
            .collect(),
    ))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RegisterRequest {
    ddl: String,
    #[serde(default)]
    update: bool,
}

async fn register_tables(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Json(request): Json<RegisterRequest>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let defs = strata_catalog::ddl::table_defs(
        "request body",
        &request.ddl,
        &state.catalog.project().config.connections,
    )?;
    for def in &defs {
        principal.require(&def.name.space, Access::Write)?;
    }
    let mode = if request.update {
        RegisterMode::Update
    } else {
        RegisterMode::Create
    };
    let registered = state
        .catalog
        .register_sql("request body", &request.ddl, mode)
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(serde_json::to_value(registered).expect("serialises")),
    ))
}

fn table_name(space: String, name: String) -> Result<TableName, ApiError> {
    let table = TableName::new(space, name);
    table.validate()?;
    Ok(table)
}

async fn show_table(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Path((space, name)): Path<(String, String)>,
) -> ApiResult<TableDetail> {
    principal.require(&space, Access::Read)?;
    let entry = state.catalog.get(&table_name(space, name)?).await?;
    Ok(Json(TableDetail::new(&entry)))
}

async fn table_schemas(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Path((space, name)): Path<(String, String)>,
) -> ApiResult<Vec<SchemaVersionView>> {
    principal.require(&space, Access::Read)?;
    let versions = state
        .catalog
        .schema_versions(&table_name(space, name)?)
        .await?;
    Ok(Json(versions.iter().map(SchemaVersionView::new).collect()))
}

async fn drop_table(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Path((space, name)): Path<(String, String)>,
) -> ApiResult<Value> {
    principal.require(&space, Access::Write)?;
    let entry = state.catalog.drop_table(&table_name(space, name)?).await?;
    Ok(Json(json!({"dropped": entry.def.name.to_string()})))
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct DiscoverRequest {
    space: Option<String>,
    layer: Option<String>,
    #[serde(default)]
    topics: Vec<String>,
    sample: Option<i64>,
    /// Only report what would be registered.
    #[serde(default)]
    dry_run: bool,
    /// Register schemas inferred from samples (Kafka); without it they are only shown.
    #[serde(default)]
    confirm: bool,
}

async fn discover(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Path(connection): Path<String>,
    Json(request): Json<DiscoverRequest>,
) -> ApiResult<DiscoveryView> {
    let space = request
        .space
        .as_deref()
        .unwrap_or(strata_catalog::tokens::EVERY_SPACE);
    principal.require(space, Access::Write)?;
    let layer = request
        .layer
        .as_deref()
        .map(str::parse::<Layer>)
        .transpose()?;
    let options = DiscoverOptions {
        space: request.space,
        layer,
        topics: request.topics,
        sample_per_partition: request.sample.unwrap_or(100),
    };
    let discovery = state.catalog.discover(&connection, &options).await?;
    let mut view = DiscoveryView::new(&discovery);
    if !request.dry_run && (!discovery.inferred || request.confirm) {
        view.registered = Some(state.catalog.register_discovered(discovery.tables).await?);
        view.confirmation_needed = false;
    }
    Ok(Json(view))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct QueryRequest {
    sql: String,
    #[serde(default)]
    format: RowFormat,
    /// At most this many rows (default 10 000; 0: no limit).
    limit: Option<usize>,
    /// Cancel the query after this long (default 60 s; 0: no timeout).
    timeout_ms: Option<u64>,
}

/// Rows a query answers with unless asked for more.
const DEFAULT_QUERY_LIMIT: usize = 10_000;
/// How long a query may run unless given longer.
const DEFAULT_QUERY_TIMEOUT_MS: u64 = 60_000;

/// Runs a query in the request's own future: a client that disconnects drops
/// it, which cancels the query.
async fn query(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Json(request): Json<QueryRequest>,
) -> Response {
    let options = QueryOptions {
        limit: match request.limit.unwrap_or(DEFAULT_QUERY_LIMIT) {
            0 => None,
            n => Some(n),
        },
        timeout: match request.timeout_ms.unwrap_or(DEFAULT_QUERY_TIMEOUT_MS) {
            0 => None,
            ms => Some(std::time::Duration::from_millis(ms)),
        },
    };
    let outcome = state.queries.run(&request.sql, &principal, options).await;
    let result = match outcome {
        Ok(result) => result,
        Err(QueryError::Catalog(err)) => return ApiError(err).into_response(),
        Err(err @ QueryError::Timeout(_)) => {
            return error_response(StatusCode::REQUEST_TIMEOUT, err.to_string());
        }
        Err(err) => return error_response(StatusCode::BAD_REQUEST, err.to_string()),
    };
    match output::encode(&result, request.format) {
        Ok(body) => {
            let mut response = body.into_response();
            response.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static(request.format.content_type()),
            );
            if result.truncated {
                response
                    .headers_mut()
                    .insert("x-strata-truncated", HeaderValue::from_static("true"));
            }
            response
        }
        Err(err) => ApiError::from(CatalogError::from(err)).into_response(),
    }
}

/// The query of `/api/v1/lineage/{node}`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct LineageQuery {
    /// `upstream`, `downstream` or `both` (default).
    direction: Option<String>,
    /// Tables (or columns) away; 3 by default.
    depth: Option<usize>,
    /// `table` (default for a table) or `column`.
    level: Option<String>,
    /// The graph as recorded then (RFC 3339, or ms since the epoch).
    at: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AtQuery {
    at: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PathQuery {
    from: String,
    to: String,
    at: Option<String>,
}

/// A lineage request's failure: 404 for a node the graph lacks, 400 for a
/// request or project at fault, 500 otherwise.
fn lineage_error(err: anyhow::Error) -> Response {
    let status = match err.downcast_ref::<strata_lineage::LineageError>() {
        Some(strata_lineage::LineageError::UnknownNode { .. }) => StatusCode::NOT_FOUND,
        Some(_) => StatusCode::INTERNAL_SERVER_ERROR,
        None => match err.downcast_ref::<CatalogError>() {
            Some(catalog) if !catalog.is_user_error() => StatusCode::INTERNAL_SERVER_ERROR,
            // A query the API cannot read, or a project whose pipelines are invalid.
            _ => StatusCode::BAD_REQUEST,
        },
    };
    error_response(status, format!("{err:#}"))
}

async fn lineage_snapshot(
    state: &AppState,
    at: Option<&str>,
) -> anyhow::Result<std::sync::Arc<crate::lineage::Snapshot>> {
    match at.map(crate::lineage::parse_time).transpose()? {
        Some(at) => Ok(std::sync::Arc::new(
            crate::lineage::at(&state.catalog, Some(at)).await?,
        )),
        None => state.lineage.current(&state.catalog).await,
    }
}

/// Lineage around a node, with each table's runtime counters when its pipeline runs here.
async fn lineage_around(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Path(node): Path<String>,
    axum::extract::Query(query): axum::extract::Query<LineageQuery>,
) -> Response {
    if let Err(refusal) = require_node(&principal, &node) {
        return refusal.into_response();
    }
    let answer = async {
        let direction = match query.direction.as_deref() {
            None | Some("both") => strata_lineage::Direction::Both,
            Some("upstream") => strata_lineage::Direction::Upstream,
            Some("downstream") => strata_lineage::Direction::Downstream,
            Some(other) => anyhow::bail!("direction {other:?} is not upstream, downstream or both"),
        };
        let columns = match query.level.as_deref() {
            None | Some("table") => false,
            Some("column") => true,
            Some(other) => anyhow::bail!("level {other:?} is not table or column"),
        };
        let snapshot = lineage_snapshot(&state, query.at.as_deref()).await?;
        let view = crate::lineage::LineageView::around(
            &snapshot,
            &node,
            direction,
            query.depth.unwrap_or(3),
            columns,
        )?;
        let mut view = view;
        hide_unreadable(&mut view.subgraph, &principal);
        let runtime: serde_json::Map<String, Value> = state
            .pipelines
            .tables()
            .into_iter()
            .filter(|t| view.subgraph.nodes.iter().any(|n| n.id() == t.name))
            .map(|t| {
                let lag = t
                    .watermark_ms
                    .map(|w| strata_pipelines::runner::now_ms() - w);
                (
                    t.name.clone(),
                    json!({
                        "status": t.status,
                        "records_in": t.records_in,
                        "rows_committed": t.rows_committed,
                        "commits": t.commits,
                        "last_commit_ms": t.last_commit_ms,
                        "table_version": t.table_version,
                        "watermark_lag_ms": lag,
                    }),
                )
            })
            .collect();
        let mut answer = serde_json::to_value(&view)?;
        answer["runtime"] = Value::Object(runtime);
        answer["quality"] = quality_overlay(&state, &view).await;
        Ok(answer)
    };
    match answer.await {
        Ok(answer) => Json(answer).into_response(),
        Err(err) => lineage_error(err),
    }
}

/// Per table in the view: how many rules it has, and which fail now (from the
/// pipelines running here, or else from the results table).
async fn quality_overlay(state: &AppState, view: &crate::lineage::LineageView) -> Value {
    let (checks, summaries) = match state.pipelines.quality() {
        Some(quality) => ((*quality.checks).clone(), quality.results.latest()),
        None => {
            let location = strata_quality::results::location(&state.catalog.project().lake_root());
            let checks = crate::quality::load_checks(&state.catalog).await;
            let since = crate::quality::last_run_start(&state.catalog);
            let latest = strata_quality::results::summaries(&location, None, since).await;
            match (checks, latest) {
                (Ok(checks), Ok(latest)) => (checks, latest),
                (Err(err), _) => {
                    tracing::warn!(%err, "the lineage overlay has no quality status");
                    return json!({});
                }
                (_, Err(err)) => {
                    tracing::warn!(%err, "the lineage overlay has no quality status");
                    return json!({});
                }
            }
        }
    };
    let mut overlay = serde_json::Map::new();
    for node in &view.subgraph.nodes {
        let Ok(table) = node.id().parse::<TableName>() else {
            continue;
        };
        let rules = checks.of(&table);
        let name = table.to_string();
        let results: Vec<&strata_quality::Status> =
            summaries.iter().filter(|s| s.last.table == name).collect();
        if rules.is_empty() && results.is_empty() {
            continue;
        }
        // A rule that failed since the pipelines started shows, even if its latest evaluation passed.
        let failing: Vec<Value> = results
            .iter()
            .filter_map(|s| s.last_failure.as_ref().map(|failure| (s, failure)))
            .map(|(s, r)| {
                json!({
                    "rule": r.rule,
                    "check": r.check,
                    "detail": r.detail,
                    "action": r.action,
                    "failing_now": s.last.failed(),
                    "failures": s.failures,
                    "failed_rows": s.failed_rows,
                    "last_failure_ms": r.at_ms,
                })
            })
            .collect();
        overlay.insert(
            name,
            json!({"rules": rules.len(), "evaluated": results.len(), "failing": failing}),
        );
    }
    Value::Object(overlay)
}

/// Every declared rule with its latest result, read from the results table
/// (which the pipelines running here write to within a second).
async fn list_checks(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    axum::extract::Query(query): axum::extract::Query<ChecksQuery>,
) -> Response {
    let answer = async {
        let table = query
            .table
            .as_deref()
            .map(str::parse::<TableName>)
            .transpose()?;
        let since_ms = match query.since.as_deref() {
            Some(since) => Some(crate::lineage::parse_time(since)?),
            None => crate::quality::last_run_start(&state.catalog),
        };
        let mut statuses = crate::quality::status(&state.catalog, table.as_ref(), since_ms).await?;
        statuses.retain(|status| readable(&principal, &status.table));
        anyhow::Ok(statuses)
    };
    match answer.await {
        Ok(statuses) => Json(statuses).into_response(),
        Err(err) => error_response(StatusCode::BAD_REQUEST, format!("{err:#}")),
    }
}

#[derive(Debug, Deserialize)]
struct ChecksQuery {
    table: Option<String>,
    since: Option<String>,
}

async fn lineage_impact(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Path(node): Path<String>,
    axum::extract::Query(query): axum::extract::Query<AtQuery>,
) -> Response {
    if let Err(refusal) = require_node(&principal, &node) {
        return refusal.into_response();
    }
    let answer = async {
        let snapshot = lineage_snapshot(&state, query.at.as_deref()).await?;
        Ok::<_, anyhow::Error>(serde_json::to_value(snapshot.graph.impact(&node)?)?)
    };
    match answer.await {
        Ok(answer) => Json(answer).into_response(),
        Err(err) => lineage_error(err),
    }
}

async fn lineage_path(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    axum::extract::Query(query): axum::extract::Query<PathQuery>,
) -> Response {
    for node in [&query.from, &query.to] {
        if let Err(refusal) = require_node(&principal, node) {
            return refusal.into_response();
        }
    }
    let answer = async {
        let snapshot = lineage_snapshot(&state, query.at.as_deref()).await?;
        let path = snapshot.graph.path(&query.from, &query.to)?;
        Ok::<_, anyhow::Error>(json!({"from": query.from, "to": query.to, "path": path}))
    };
    match answer.await {
        Ok(answer) => Json(answer).into_response(),
        Err(err) => lineage_error(err),
    }
}

/// Refuses a lineage request about a table or column of a space the token may not read.
fn require_node(principal: &Principal, node: &str) -> Result<(), ApiError> {
    if node.starts_with("pipeline:") {
        return Ok(());
    }
    let space = node.split('.').next().unwrap_or_default();
    Ok(principal.require(space, Access::Read)?)
}

/// Leaves out of a lineage view the tables, columns and pipelines of spaces
/// the token may not read, and the edges that touch them.
fn hide_unreadable(subgraph: &mut strata_lineage::Subgraph, principal: &Principal) {
    use strata_lineage::Node;
    let hidden: std::collections::HashSet<String> = subgraph
        .nodes
        .iter()
        .filter(|node| {
            let table = match node {
                Node::Table { name, .. } => name,
                Node::Column { table, .. } => table,
                Node::Pipeline { target, .. } => target,
            };
            !readable(principal, table)
        })
        .map(|node| node.id())
        .collect();
    subgraph.nodes.retain(|node| !hidden.contains(&node.id()));
    subgraph
        .edges
        .retain(|edge| !hidden.contains(&edge.from) && !hidden.contains(&edge.to));
}

/// The lineage browser's page (`ui/index.html`).
async fn lineage_page() -> Response {
    page(include_str!("../../ui/index.html"))
}

/// The query page (`ui/query.html`): SQL, and a live view of a subscribed table.
async fn query_page() -> Response {
    page(include_str!("../../ui/query.html"))
}

/// The query page's script, bundled from `ui/src` (`ui/dist`).
async fn query_script() -> Response {
    script(include_str!("../../ui/dist/query.js"))
}

fn page(html: &'static str) -> Response {
    (
        [(axum::http::header::CONTENT_TYPE, "text/html; charset=utf-8")],
        html,
    )
        .into_response()
}

fn script(javascript: &'static str) -> Response {
    (
        [
            (
                axum::http::header::CONTENT_TYPE,
                "text/javascript; charset=utf-8",
            ),
            (axum::http::header::CACHE_CONTROL, "no-cache"),
        ],
        javascript,
    )
        .into_response()
}

/// The lineage browser's script, bundled from `ui/src` with cytoscape and dagre (`ui/dist`).
async fn lineage_script() -> Response {
    script(include_str!("../../ui/dist/lineage.js"))
}
