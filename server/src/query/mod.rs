//! Analysts' queries: history and realtime as one table, under a token's grants.
//!
//! ```text
//!   SQL ─▶ time travel rewritten (time_travel.rs) ─▶ DataFusion session for the token:
//!            spaces it may read ─▶ tables: a running pipeline's live view (Delta@v ∪ uncommitted)
//!                                          or the storage (Delta, MySQL/TiDB with pushdown, Kafka)
//!        ─▶ writes checked against its grants before anything runs
//!        ─▶ rows streamed up to the limit, within the timeout; dropping the future cancels it
//! ```
//!
//! The HTTP API, the CLI and the PostgreSQL server all go through [`QueryEngine`].

pub mod output;
pub mod own_tables;
pub mod time_travel;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use async_trait::async_trait;
use datafusion::catalog::{MemorySchemaProvider, SchemaProvider, TableProvider};
use datafusion::error::DataFusionError;
use datafusion::execution::context::SQLOptions;
use datafusion::logical_expr::LogicalPlan;
use datafusion::prelude::SessionContext;
use futures::StreamExt;
use strata_catalog::connectors::{self, delta as lake};
use strata_catalog::provider::{CATALOG_NAME, LiveTables};
use strata_catalog::{Access, Catalog, CatalogError, Principal, TableDef, TableKind, TableName};

use crate::run::Registry;

/// Why a query did not run, or stopped.
#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    #[error(transparent)]
    Catalog(Box<CatalogError>),

    #[error(
        "the query ran past its timeout of {} and was cancelled\n  hint: raise the timeout (--timeout, or \"timeout_ms\"), or narrow the query with filters or a LIMIT",
        humantime::format_duration(*.0)
    )]
    Timeout(Duration),

    #[error("{message}\n  hint: {hint}")]
    TimeTravel { message: String, hint: String },
}

impl From<CatalogError> for QueryError {
    fn from(err: CatalogError) -> Self {
        QueryError::Catalog(Box::new(err))
    }
}

impl From<DataFusionError> for QueryError {
    fn from(err: DataFusionError) -> Self {
        // A refusal or a catalog error raised inside planning keeps its own kind.
        if let DataFusionError::External(inner) = err.find_root()
            && let Some(CatalogError::Forbidden { message, hint }) = inner.downcast_ref()
        {
            return CatalogError::Forbidden {
                message: message.clone(),
                hint: hint.clone(),
            }
            .into();
        }
        CatalogError::Query(err).into()
    }
}

impl QueryError {
    /// Whether the request was refused for its grants.
    pub fn is_forbidden(&self) -> bool {
        matches!(self, QueryError::Catalog(err) if matches!(**err, CatalogError::Forbidden { .. }))
    }
}

/// How much a query may return and how long it may take.
#[derive(Debug, Clone, Copy, Default)]
pub struct QueryOptions {
    /// At most this many rows; more are cut off and the result says so.
    pub limit: Option<usize>,
    pub timeout: Option<Duration>,
}

/// A query's rows.
#[derive(Debug, Clone)]
pub struct QueryOutput {
    pub schema: SchemaRef,
    pub batches: Vec<RecordBatch>,
    /// The limit cut rows off.
    pub truncated: bool,
}

impl QueryOutput {
    pub fn row_count(&self) -> usize {
        self.batches.iter().map(RecordBatch::num_rows).sum()
    }
}

/// Counts queries for `/metrics`.
#[derive(Debug, Default)]
pub struct QueryCounters {
    pub running: AtomicU64,
    pub total: AtomicU64,
    pub failed: AtomicU64,
}

/// Counts a query as running until dropped (finished, failed or cancelled).
struct Running<'a>(&'a QueryCounters);

impl<'a> Running<'a> {
    fn start(counters: &'a QueryCounters) -> Self {
        counters.running.fetch_add(1, Ordering::Relaxed);
        counters.total.fetch_add(1, Ordering::Relaxed);
        Self(counters)
    }
}

impl Drop for Running<'_> {
    fn drop(&mut self) {
        self.0.running.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Plans and runs queries over the catalog and the pipelines running here.
#[derive(Debug, Clone)]
pub struct QueryEngine {
    catalog: Catalog,
    pipelines: Registry,
    pub counters: Arc<QueryCounters>,
}

impl QueryEngine {
    pub fn new(catalog: Catalog, pipelines: Registry) -> Self {
        Self {
            catalog,
            pipelines,
            counters: Arc::default(),
        }
    }

    pub fn catalog(&self) -> &Catalog {
        &self.catalog
    }

    pub fn pipelines(&self) -> &Registry {
        &self.pipelines
    }

    /// A session that sees what `principal` may read, with the running
    /// pipelines' tables as live views.
    pub async fn session(&self, principal: &Principal) -> Result<SessionContext, QueryError> {
        let live: Arc<dyn LiveTables> = Arc::new(self.pipelines.clone());
        self.session_with(principal, Some(live)).await
    }

    /// A session that reads the tables' storage only: the one an `INSERT`
    /// plans in, whose target has the table's own columns (a live view's
    /// `_provisional` flag is not one to fill).
    async fn storage_session(&self, principal: &Principal) -> Result<SessionContext, QueryError> {
        self.session_with(principal, None).await
    }

    async fn session_with(
        &self,
        principal: &Principal,
        live: Option<Arc<dyn LiveTables>>,
    ) -> Result<SessionContext, QueryError> {
        let provider = self.catalog.provider(Some(principal), live).await?;
        let ctx = provider.session();
        let results = strata_quality::results::location(&self.catalog.project().lake_root());
        ctx.catalog(CATALOG_NAME)
            .expect("the session's catalog")
            .register_schema(
                own_tables::OWN_SPACE,
                Arc::new(own_tables::OwnTables::new(results, principal)),
            )?;
        Ok(ctx)
    }

    /// Rewrites time travel and registers the past tables it names in `ctx`.
    pub async fn prepare(
        &self,
        ctx: &SessionContext,
        sql: &str,
        principal: &Principal,
    ) -> Result<String, QueryError> {
        let sql = strata_catalog::functions::quote_time_units_in(sql);
        let (sql, past) = time_travel::rewrite(&sql)?;
        if past.is_empty() {
            return Ok(sql);
        }
        let schema = Arc::new(MemorySchemaProvider::new());
        for table in past {
            let provider = self.past_table(&table, principal).await?;
            schema.register_table(table.registered.clone(), provider)?;
        }
        ctx.catalog(CATALOG_NAME)
            .expect("the session's catalog")
            .register_schema(time_travel::VERSIONS_SCHEMA, schema)?;
        Ok(sql)
    }

    async fn past_table(
        &self,
        table: &time_travel::PastTable,
        principal: &Principal,
    ) -> Result<Arc<dyn TableProvider>, QueryError> {
        let [space, name] = table.name.as_slice() else {
            return Err(QueryError::TimeTravel {
                message: format!(
                    "time travel names a table by space and name, not {}",
                    table.name.join(".")
                ),
                hint: "write FROM space.table VERSION AS OF n".to_string(),
            });
        };
        let name = TableName::new(space, name);
        principal.require(space, Access::Read)?;
        let def: TableDef = self.catalog.store().get(&name).await?.def;
        if !matches!(def.kind, TableKind::Delta { .. }) {
            return Err(QueryError::TimeTravel {
                message: format!(
                    "{name} is a {} table; only Delta tables keep their past versions",
                    def.kind.connector()
                ),
                hint: "query it without FOR SYSTEM_TIME AS OF / VERSION AS OF".to_string(),
            });
        }
        let location = connectors::delta_location(self.catalog.project(), &def)?;
        Ok(lake::table_provider_as_of(&location, table.as_of).await?)
    }

    /// Plans `sql` for `principal`: queries, `EXPLAIN`, and `INSERT`s into
    /// spaces it may write. DDL, `SET` and `COPY` are refused.
    pub async fn plan(
        &self,
        ctx: &SessionContext,
        sql: &str,
        principal: &Principal,
    ) -> Result<datafusion::dataframe::DataFrame, QueryError> {
        let storage;
        let ctx = if is_insert(sql) {
            storage = self.storage_session(principal).await?;
            &storage
        } else {
            ctx
        };
        let sql = self.prepare(ctx, sql, principal).await?;
        let options = SQLOptions::new()
            .with_allow_ddl(false)
            .with_allow_statements(false);
        let frame = ctx.sql_with_options(&sql, options).await?;
        let default_schema = ctx
            .state()
            .config()
            .options()
            .catalog
            .default_schema
            .clone();
        check_writes(frame.logical_plan(), principal, &default_schema)?;
        Ok(frame)
    }

    /// Runs `sql` for `principal` within `options`.
    pub async fn run(
        &self,
        sql: &str,
        principal: &Principal,
        options: QueryOptions,
    ) -> Result<QueryOutput, QueryError> {
        let _running = Running::start(&self.counters);
        let work = self.run_unbounded(sql, principal, options.limit);
        let outcome = match options.timeout {
            Some(timeout) => tokio::time::timeout(timeout, work)
                .await
                .unwrap_or(Err(QueryError::Timeout(timeout))),
            None => work.await,
        };
        if outcome.is_err() {
            self.counters.failed.fetch_add(1, Ordering::Relaxed);
        }
        outcome
    }

    async fn run_unbounded(
        &self,
        sql: &str,
        principal: &Principal,
        limit: Option<usize>,
    ) -> Result<QueryOutput, QueryError> {
        let ctx = self.session(principal).await?;
        let frame = self.plan(&ctx, sql, principal).await?;
        let schema = Arc::new(frame.schema().as_arrow().clone());
        let mut stream = frame.execute_stream().await?;
        let mut batches = Vec::new();
        let mut rows = 0;
        let mut truncated = false;
        while let Some(batch) = stream.next().await {
            let batch = batch?;
            if let Some(limit) = limit
                && rows + batch.num_rows() > limit
            {
                batches.push(batch.slice(0, limit - rows));
                truncated = true;
                break;
            }
            rows += batch.num_rows();
            batches.push(batch);
        }
        Ok(QueryOutput {
            schema,
            batches,
            truncated,
        })
    }
}

/// Refuses, before anything runs, a plan that writes where `principal` may
/// not: every DML node anywhere in it (under `EXPLAIN ANALYZE` and in
/// subqueries too) needs a write grant on its table's space, and `COPY` (which
/// writes files on the server) is refused outright. Unqualified names resolve
/// against the session's default schema.
/// Whether `sql` is an `INSERT` (what does not parse here is planned as it is).
fn is_insert(sql: &str) -> bool {
    use datafusion::sql::parser::{DFParser, Statement};
    DFParser::parse_sql(sql).is_ok_and(|statements| {
        matches!(
            statements.front(),
            Some(Statement::Statement(statement))
                if matches!(**statement, datafusion::sql::sqlparser::ast::Statement::Insert(_))
        )
    })
}

pub fn check_writes(
    plan: &LogicalPlan,
    principal: &Principal,
    default_schema: &str,
) -> Result<(), QueryError> {
    use datafusion::common::tree_node::TreeNodeRecursion;
    let mut refusal = None;
    plan.apply_with_subqueries(|node| {
        let refused = match node {
            LogicalPlan::Copy(_) => Some(QueryError::from(CatalogError::Discovery {
                message:
                    "COPY is not allowed: queries read tables and write only to catalog tables"
                        .to_string(),
                hint: Some("use INSERT INTO space.table SELECT …".to_string()),
            })),
            LogicalPlan::Dml(dml) => {
                let space = dml.table_name.schema().unwrap_or(default_schema);
                if space == own_tables::OWN_SPACE {
                    Some(QueryError::from(CatalogError::Forbidden {
                        message: format!(
                            "{} is Strata's own table and is read-only",
                            dml.table_name
                        ),
                        hint: "query it; quality results are recorded by the rules in checks/"
                            .to_string(),
                    }))
                } else {
                    principal
                        .require(space, Access::Write)
                        .err()
                        .map(QueryError::from)
                }
            }
            _ => None,
        };
        match refused {
            Some(err) => {
                refusal = Some(err);
                Ok(TreeNodeRecursion::Stop)
            }
            None => Ok(TreeNodeRecursion::Continue),
        }
    })?;
    refusal.map_or(Ok(()), Err)
}

#[async_trait]
impl LiveTables for Registry {
    async fn open(&self, def: &TableDef) -> strata_catalog::Result<Option<Arc<dyn TableProvider>>> {
        let Some(stats) = self.stats(&def.name.to_string()) else {
            return Ok(None);
        };
        stats.live.refresh().await;
        let Some(snapshot) = stats.live.snapshot() else {
            return Ok(None);
        };
        snapshot
            .provider()
            .await
            .map(Some)
            .map_err(|err| CatalogError::Query(DataFusionError::External(Box::new(err))))
    }
}
