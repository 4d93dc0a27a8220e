//! The PostgreSQL wire protocol, for `psql` and BI tools (default port 4566).
//!
//! ```text
//!   client ──startup──▶ TokenStartup: cleartext password = a Strata token ─▶ Principal (per connection)
//!          ──query────▶ PgQueries: the connection's session (spaces it may read, live views,
//!                        pg_catalog and information_schema for \dt and \d), time travel
//!                        rewritten, statements guarded ─▶ datafusion-postgres encodes the rows
//! ```
//!
//! The protocol itself (simple and extended queries, types, `pg_catalog`) is
//! `pgwire` and `datafusion-postgres`; this module adds Strata's tokens,
//! grants, time travel and realtime views.

use std::fmt::Debug;
use std::sync::Arc;

use async_trait::async_trait;
use datafusion::common::ParamValues;
use datafusion::logical_expr::LogicalPlan;
use datafusion::prelude::SessionContext;
use datafusion::sql::sqlparser::ast::Statement;
use datafusion_postgres::auth::AuthManager;
use datafusion_postgres::datafusion_pg_catalog::pg_catalog::setup_pg_catalog;
use datafusion_postgres::hooks::cursor::CursorStatementHook;
use datafusion_postgres::hooks::set_show::SetShowHook;
use datafusion_postgres::hooks::transactions::TransactionStatementHook;
use datafusion_postgres::hooks::{HookClient, QueryHook};
use datafusion_postgres::pgwire::api::auth::{
    DefaultServerParameterProvider, StartupHandler, finish_authentication, protocol_negotiation,
    save_startup_parameters_to_metadata,
};
use datafusion_postgres::pgwire::api::portal::{Format, Portal};
use datafusion_postgres::pgwire::api::query::{ExtendedQueryHandler, SimpleQueryHandler};
use datafusion_postgres::pgwire::api::results::{FieldInfo, Response};
use datafusion_postgres::pgwire::api::stmt::QueryParser;
use datafusion_postgres::pgwire::api::store::PortalStore;
use datafusion_postgres::pgwire::api::{
    ClientInfo, ClientPortalStore, PgWireConnectionState, PgWireServerHandlers, Type,
};
use datafusion_postgres::pgwire::error::{ErrorInfo, PgWireError, PgWireResult};
use datafusion_postgres::pgwire::messages::startup::Authentication;
use datafusion_postgres::pgwire::messages::{PgWireBackendMessage, PgWireFrontendMessage};
use datafusion_postgres::{DfSessionService, Parser};
use futures::{Sink, SinkExt};
use strata_catalog::provider::CATALOG_NAME;
use strata_catalog::{CatalogStore, Principal};
use tokio::net::TcpListener;

use crate::query::{QueryEngine, QueryError};

/// A statement as datafusion-postgres keeps it between parse and execute.
type DfStatement = (String, Option<(Statement, LogicalPlan)>);

/// Serves the PostgreSQL protocol on `listener` until the process ends.
pub async fn serve(listener: TcpListener, engine: QueryEngine) {
    let handlers = Arc::new(StrataPg::new(engine));
    loop {
        match listener.accept().await {
            Ok((socket, peer)) => {
                let handlers = handlers.clone();
                tokio::spawn(async move {
                    if let Err(err) =
                        datafusion_postgres::pgwire::tokio::process_socket(socket, None, handlers)
                            .await
                    {
                        tracing::debug!(%peer, "PostgreSQL connection ended: {err}");
                    }
                });
            }
            Err(err) => tracing::warn!("accepting a PostgreSQL connection: {err}"),
        }
    }
}

/// The handlers of every connection.
pub struct StrataPg {
    startup: Arc<TokenStartup>,
    queries: Arc<PgQueries>,
}

impl StrataPg {
    pub fn new(engine: QueryEngine) -> Self {
        let empty = Arc::new(SessionContext::new());
        Self {
            startup: Arc::new(TokenStartup {
                store: engine.catalog().store().clone(),
            }),
            queries: Arc::new(PgQueries {
                parser: Arc::new(PgParser {
                    engine,
                    describe: DfSessionService::new(empty).query_parser(),
                }),
            }),
        }
    }
}

impl PgWireServerHandlers for StrataPg {
    fn simple_query_handler(&self) -> Arc<impl SimpleQueryHandler> {
        self.queries.clone()
    }

    fn extended_query_handler(&self) -> Arc<impl ExtendedQueryHandler> {
        self.queries.clone()
    }

    fn startup_handler(&self) -> Arc<impl StartupHandler> {
        self.startup.clone()
    }
}

/// Asks for a cleartext password and takes it as a Strata token.
pub struct TokenStartup {
    store: CatalogStore,
}

#[async_trait]
impl StartupHandler for TokenStartup {
    async fn on_startup<C>(
        &self,
        client: &mut C,
        message: PgWireFrontendMessage,
    ) -> PgWireResult<()>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        match message {
            PgWireFrontendMessage::Startup(ref startup) => {
                protocol_negotiation(client, startup).await?;
                save_startup_parameters_to_metadata(client, startup);
                client.set_state(PgWireConnectionState::AuthenticationInProgress);
                client
                    .send(PgWireBackendMessage::Authentication(
                        Authentication::CleartextPassword,
                    ))
                    .await?;
            }
            PgWireFrontendMessage::PasswordMessageFamily(password) => {
                let password = password.into_password()?;
                match self.store.authenticate(&password.password).await {
                    Ok(principal) => {
                        client.session_extensions().insert(principal);
                        finish_authentication(client, &DefaultServerParameterProvider::default())
                            .await?;
                    }
                    Err(err) => {
                        return Err(user_error("28P01", &err.to_string()));
                    }
                }
            }
            _ => {}
        }
        Ok(())
    }
}

/// An error as the client shows it: a message, and the hint on its own line.
fn user_error(code: &str, text: &str) -> PgWireError {
    PgWireError::UserError(Box::new(ErrorInfo::new(
        "ERROR".to_string(),
        code.to_string(),
        text.to_string(),
    )))
}

fn query_error(err: QueryError) -> PgWireError {
    let code = if err.is_forbidden() { "42501" } else { "42000" };
    user_error(code, &err.to_string())
}

/// A connection's session, made at its first query.
struct Connection {
    ctx: Arc<SessionContext>,
    service: DfSessionService,
}

impl Drop for Connection {
    /// `pg_catalog` holds the session's catalog list, which holds `pg_catalog`:
    /// the cycle is cut when the connection ends, or every session (about 5 MB
    /// of catalog tables each) would outlive its connection.
    fn drop(&mut self) {
        if let Some(catalog) = self.ctx.catalog(CATALOG_NAME) {
            let _ = catalog.deregister_schema("pg_catalog", true);
        }
    }
}

/// Runs queries for the connection's principal.
pub struct PgQueries {
    parser: Arc<PgParser>,
}

/// Parses extended-protocol statements in the connection's session.
pub struct PgParser {
    engine: QueryEngine,
    /// Answers for result schemas and parameter types, which need no session.
    describe: Arc<Parser>,
}

impl PgParser {
    fn principal<C: ClientInfo + ?Sized>(client: &C) -> PgWireResult<Arc<Principal>> {
        client
            .session_extensions()
            .get::<Principal>()
            .ok_or_else(|| user_error("28000", "the connection has not authenticated"))
    }

    async fn connection<C: ClientInfo + ?Sized>(
        &self,
        client: &C,
    ) -> PgWireResult<Arc<Connection>> {
        if let Some(connection) = client.session_extensions().get::<Connection>() {
            return Ok(connection);
        }
        let principal = Self::principal(client)?;
        let session = self.engine.session(&principal).await.map_err(query_error)?;
        let ctx = Arc::new(with_pg_catalog(session)?);
        let hooks: Vec<Arc<dyn QueryHook>> = vec![
            Arc::new(Guard),
            Arc::new(CursorStatementHook),
            Arc::new(SetShowHook),
            Arc::new(TransactionStatementHook),
        ];
        let service = DfSessionService::new_with_hooks(ctx.clone(), hooks);
        client
            .session_extensions()
            .insert(Connection { ctx, service });
        Ok(client
            .session_extensions()
            .get::<Connection>()
            .expect("just inserted"))
    }

    /// The connection's session, with `sql`'s time travel registered in it.
    async fn prepare<C: ClientInfo + ?Sized>(
        &self,
        client: &C,
        sql: &str,
    ) -> PgWireResult<(Arc<Connection>, String)> {
        let connection = self.connection(client).await?;
        let principal = Self::principal(client)?;
        let sql = self
            .engine
            .prepare(&connection.ctx, sql, &principal)
            .await
            .map_err(query_error)?;
        Ok((connection, sql))
    }
}

/// `session` with PostgreSQL's `pg_catalog` beside the spaces.
fn with_pg_catalog(session: SessionContext) -> PgWireResult<SessionContext> {
    setup_pg_catalog(&session, CATALOG_NAME, AuthManager::new())
        .map_err(|err| user_error("XX000", &format!("setting up pg_catalog: {err}")))?;
    Ok(session)
}

#[async_trait]
impl QueryParser for PgParser {
    type Statement = DfStatement;

    async fn parse_sql<C>(
        &self,
        client: &C,
        sql: &str,
        types: &[Option<Type>],
    ) -> PgWireResult<Option<Self::Statement>>
    where
        C: ClientInfo + Unpin + Send + Sync,
    {
        let (connection, sql) = self.prepare(client, sql).await?;
        connection
            .service
            .query_parser()
            .parse_sql(client, &sql, types)
            .await
    }

    fn get_parameter_types(&self, statement: &Self::Statement) -> PgWireResult<Vec<Type>> {
        self.describe.get_parameter_types(statement)
    }

    fn get_result_schema(
        &self,
        statement: &Self::Statement,
        column_format: Option<&Format>,
    ) -> PgWireResult<Vec<FieldInfo>> {
        self.describe.get_result_schema(statement, column_format)
    }
}

#[async_trait]
impl SimpleQueryHandler for PgQueries {
    async fn do_query<C>(&self, client: &mut C, query: &str) -> PgWireResult<Vec<Response>>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let (connection, sql) = self.parser.prepare(client, query).await?;
        SimpleQueryHandler::do_query(&connection.service, client, &sql).await
    }
}

#[async_trait]
impl ExtendedQueryHandler for PgQueries {
    type Statement = DfStatement;
    type QueryParser = PgParser;

    fn query_parser(&self) -> Arc<Self::QueryParser> {
        self.parser.clone()
    }

    async fn do_query<C>(
        &self,
        client: &mut C,
        portal: &Portal<Self::Statement>,
        max_rows: usize,
    ) -> PgWireResult<Response>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore<Statement = Self::Statement>,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let connection = self.parser.connection(client).await?;
        ExtendedQueryHandler::do_query(&connection.service, client, portal, max_rows).await
    }
}

/// Lets through queries, `EXPLAIN`, session statements and `INSERT`s into
/// spaces the token may write; refuses DDL and other writes before they run.
struct Guard;

impl Guard {
    /// Refuses what the statement says it does, then what its plan does: a
    /// write anywhere in it (under EXPLAIN ANALYZE, in a subquery) needs a
    /// write grant on the table's space, and COPY is refused.
    async fn check(
        statement: &Statement,
        ctx: &SessionContext,
        principal: Option<Arc<Principal>>,
    ) -> PgWireResult<()> {
        let principal =
            principal.ok_or_else(|| user_error("28000", "the connection has not authenticated"))?;
        let text = statement.to_string();
        // The statement's own verb, under any EXPLAIN [ANALYZE] [VERBOSE].
        let verb = text
            .split_whitespace()
            .map(str::to_ascii_uppercase)
            .find(|word| !matches!(word.as_str(), "EXPLAIN" | "ANALYZE" | "VERBOSE"))
            .unwrap_or_default();
        let refused = [
            "CREATE",
            "DROP",
            "ALTER",
            "COPY",
            "DELETE",
            "UPDATE",
            "TRUNCATE",
            "MERGE",
            "GRANT",
            "REVOKE",
            "PREPARE",
            "EXECUTE",
            "DEALLOCATE",
        ];
        // DataFusion's own settings (the default schema among them) stay as the
        // server set them, however the name is quoted or spaced.
        let sets_engine = matches!(verb.as_str(), "SET" | "RESET")
            && text
                .chars()
                .filter(|c| !matches!(c, '"' | '`') && !c.is_whitespace())
                .collect::<String>()
                .to_ascii_lowercase()
                .contains("datafusion");
        if refused.contains(&verb.as_str()) || sets_engine {
            return Err(user_error(
                "0A000",
                &format!(
                    "{verb} is not supported over the PostgreSQL protocol: it runs queries, EXPLAIN, session settings and INSERT INTO space.table\n  hint: change tables with DDL files and `strata catalog register`; prepare statements with the extended protocol"
                ),
            ));
        }
        // Planned from the text, as datafusion-postgres runs it (DataFusion's own
        // parser, which knows COPY … TO), so that the check sees what will run.
        let state = ctx.state();
        let planned = state.create_logical_plan(&text).await;
        // What does not plan here (SET, SHOW, BEGIN, cursors) is handled by the
        // hooks after this one; a refusal for grants is answered here, as 42501.
        match planned {
            Ok(plan) => {
                let default_schema = state.config().options().catalog.default_schema.clone();
                crate::query::check_writes(&plan, &principal, &default_schema)
                    .map_err(query_error)?;
            }
            Err(err) => {
                let err = QueryError::from(err);
                if err.is_forbidden() {
                    return Err(query_error(err));
                }
            }
        }
        Ok(())
    }
}

#[async_trait]
impl QueryHook for Guard {
    async fn handle_simple_query(
        &self,
        statement: &Statement,
        session_context: &SessionContext,
        client: &mut dyn HookClient,
    ) -> Option<PgWireResult<Response>> {
        let principal = client.session_extensions().get::<Principal>();
        Self::check(statement, session_context, principal)
            .await
            .err()
            .map(Err)
    }

    async fn handle_extended_parse_query(
        &self,
        statement: &Statement,
        session_context: &SessionContext,
        client: &(dyn ClientInfo + Send + Sync),
    ) -> Option<PgWireResult<LogicalPlan>> {
        let principal = client.session_extensions().get::<Principal>();
        Self::check(statement, session_context, principal)
            .await
            .err()
            .map(Err)
    }

    async fn handle_extended_query(
        &self,
        _statement: &Statement,
        _logical_plan: &LogicalPlan,
        _params: &ParamValues,
        _session_context: &SessionContext,
        _client: &mut dyn HookClient,
    ) -> Option<PgWireResult<Response>> {
        None
    }
}
