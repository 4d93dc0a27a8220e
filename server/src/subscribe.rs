//! Live subscriptions over WebSocket: what dashboards use instead of polling.
//!
//! ```text
//!   client ── GET /api/v1/subscribe?token=… (upgrade) ──▶ {"table": "shop.app_city_gmv", "filter": "city = 'Beijing'"}
//!   server ◀── snapshot (one consistent cut, with the key) ─ then, in order, each change of the live table:
//!              keyed table:   upsert {rows} | delete {rows}       (rows carry _provisional)
//!              append table:  insert {rows} | provisional {rows}  (the open windows, replacing the last)
//!              committed {version}
//!
//!   distinct mode: {"table": "shop.dwd_page_views", "distinct": "user_id", "by": "city", "values": ["Beijing", "Shanghai"]}
//!   server ◀── distinct {count, by: {Beijing: n, Shanghai: m}} at the start and whenever it changes;
//!              the client may send {"values": [...]} at any time to choose other values
//! ```
//!
//! The snapshot and the changes come from the pipeline's live table under one
//! lock ([`strata_pipelines::live::LiveTable::subscribe`]), so nothing is
//! missed or counted twice between them. A Delta table no pipeline here
//! writes is followed through its log: a new version sends a new snapshot. A
//! MySQL/TiDB table is read every second, and a changed one sent as a new
//! snapshot. The socket ends with an error message and a close frame.
//!
//! Distinct counts keep, per value of the `by` column, a roaring bitmap of
//! the `distinct` column's values re-mapped to dense integers (1, 2, 3 … in
//! the order they are first seen). Any union of values is then one bitmap OR,
//! counted exactly, with no combination computed in advance.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use arrow::array::{Array, AsArray, BooleanArray, RecordBatch};
use arrow::datatypes::{DataType, SchemaRef};
use axum::extract::ws::{CloseFrame, Message, WebSocket, close_code};
use datafusion::common::DFSchema;
use datafusion::physical_expr::PhysicalExpr;
use datafusion::prelude::{SessionConfig, SessionContext};
use roaring::RoaringBitmap;
use serde::Deserialize;
use serde_json::{Map, Value, json};
use strata_catalog::connectors::{self, delta as lake};
use strata_catalog::provider::flink_identifiers;
use strata_catalog::{Access, CatalogError, Principal, TableKind, TableName};
use strata_pipelines::live::{LiveChange, PROVISIONAL};
use strata_pipelines::sink::delete_markers;

use crate::query::QueryEngine;
use crate::views::batches_to_json_rows;

/// The most rows a snapshot may hold; a filter narrows a larger table.
const SNAPSHOT_LIMIT: usize = 100_000;
/// How often a table no pipeline writes here is looked at for a new version.
const POLL: Duration = Duration::from_secs(1);

/// What a client asks for first.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Subscription {
    pub table: String,
    /// A SQL condition on the table's columns.
    pub filter: Option<String>,
    /// Distinct mode: the column whose distinct values are counted …
    pub distinct: Option<String>,
    /// … per value of this column …
    pub by: Option<String>,
    /// … over the union of these values (all of them when absent).
    pub values: Option<Vec<String>>,
}

/// A later message of the client, in distinct mode.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Reselect {
    values: Option<Vec<String>>,
}

/// Why a subscription stopped.
#[derive(Debug, thiserror::Error)]
enum SubscribeError {
    #[error(transparent)]
    Catalog(Box<CatalogError>),
    #[error("{message}\n  hint: {hint}")]
    Request { message: String, hint: String },
    #[error("the client left")]
    Gone,
}

impl From<CatalogError> for SubscribeError {
    fn from(err: CatalogError) -> Self {
        SubscribeError::Catalog(Box::new(err))
    }
}

impl From<datafusion::error::DataFusionError> for SubscribeError {
    fn from(err: datafusion::error::DataFusionError) -> Self {
        CatalogError::Query(err).into()
    }
}

impl From<arrow::error::ArrowError> for SubscribeError {
    fn from(err: arrow::error::ArrowError) -> Self {
        CatalogError::from(err).into()
    }
}

fn request_error(message: String, hint: &str) -> SubscribeError {
    SubscribeError::Request {
        message,
        hint: hint.to_string(),
    }
}

/// Serves one WebSocket until the client leaves or the subscription fails.
pub async fn serve(mut socket: WebSocket, engine: QueryEngine, principal: Principal) {
    let outcome = async {
        let first = next_text(&mut socket).await?;
        let subscription: Subscription = serde_json::from_str(&first).map_err(|err| {
            request_error(
                format!("the subscription is not valid JSON: {err}"),
                r#"send {"table": "space.table", "filter": "…"} or {"table": …, "distinct": "user_id", "by": "city", "values": […]}"#,
            )
        })?;
        follow(&mut socket, &engine, &principal, subscription).await
    }
    .await;
    // The client is told why the socket ends: an error message first, then a close frame.
    let close = match outcome {
        Ok(()) => Some((
            close_code::NORMAL,
            "the table's pipeline stopped".to_string(),
        )),
        Err(SubscribeError::Gone) => None,
        Err(err) => {
            let code = match &err {
                SubscribeError::Request { .. } => close_code::POLICY,
                SubscribeError::Catalog(inner) if inner.is_user_error() => close_code::POLICY,
                _ => close_code::ERROR,
            };
            let text = err.to_string();
            let (message, hint) = match text.split_once("\n  hint: ") {
                Some((m, h)) => (m.to_string(), Some(h.to_string())),
                None => (text, None),
            };
            let _ = send(
                &mut socket,
                json!({"type": "error", "error": message, "hint": hint}),
            )
            .await;
            Some((code, message))
        }
    };
    if let Some((code, reason)) = close {
        // A close frame's reason is at most 123 bytes.
        let mut cut = reason.len().min(123);
        while !reason.is_char_boundary(cut) {
            cut -= 1;
        }
        let frame = CloseFrame {
            code,
            reason: reason[..cut].into(),
        };
        let _ = socket.send(Message::Close(Some(frame))).await;
    }
}

async fn next_text(socket: &mut WebSocket) -> Result<String, SubscribeError> {
    loop {
        match socket.recv().await {
            Some(Ok(Message::Text(text))) => return Ok(text.to_string()),
            Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return Err(SubscribeError::Gone),
            Some(Ok(_)) => {}
        }
    }
}

async fn send(socket: &mut WebSocket, message: Value) -> Result<(), SubscribeError> {
    socket
        .send(Message::Text(message.to_string().into()))
        .await
        .map_err(|_| SubscribeError::Gone)
}

async fn follow(
    socket: &mut WebSocket,
    engine: &QueryEngine,
    principal: &Principal,
    subscription: Subscription,
) -> Result<(), SubscribeError> {
    let name: TableName = subscription.table.parse()?;
    principal.require(&name.space, Access::Read)?;
    let def = engine.catalog().store().get(&name).await?.def;
    let stats = engine.pipelines().stats(&name.to_string());
    if let Some(stats) = &stats {
        stats.live.refresh().await;
    }
    let live = stats.and_then(|stats| stats.live.subscribe().map(|cut| (stats, cut)));
    let Some((stats, (cut, mut changes))) = live else {
        return follow_log(socket, engine, &def, &subscription).await;
    };
    let (key, version) = (cut.key.clone(), cut.version);
    let provider = cut.provider().await.map_err(|err| {
        CatalogError::Query(datafusion::error::DataFusionError::External(Box::new(err)))
    })?;
    let rows = select(provider, &subscription, SNAPSHOT_LIMIT).await?;
    let mut view = match (&subscription.distinct, key.is_empty()) {
        (Some(_), false) => {
            return Err(request_error(
                format!(
                    "{name} is a keyed table; distinct counts follow tables rows are appended to"
                ),
                "count the distinct values of a detail (DWD) table",
            ));
        }
        (Some(_), true) => View::Distinct(Distinct::new(&subscription, &rows)?),
        (None, false) => View::Keyed(Keyed::new(key.clone(), &rows)),
        (None, true) => View::Appended,
    };
    let filter = Filter::compile(subscription.filter.as_deref(), &rows.schema)?;
    send(socket, view.snapshot(&rows, &key, Some(version))?).await?;
    loop {
        tokio::select! {
            change = changes.recv() => {
                stats.live.keep_wanted();
                let change = match change {
                    Ok(change) => change,
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(missed)) => {
                        return Err(request_error(
                            format!("the subscriber fell {missed} changes behind"),
                            "subscribe again (a snapshot restarts it), with a narrower filter",
                        ));
                    }
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => return Ok(()),
                };
                match change.as_ref() {
                    LiveChange::Ended => {
                        send(socket, json!({"type": "ended"})).await?;
                        return follow_log(socket, engine, &def, &subscription).await;
                    }
                    LiveChange::Committed(version) => {
                        send(socket, json!({"type": "committed", "version": version})).await?;
                    }
                    LiveChange::Rows(batches) => {
                        for message in view.rows(batches, &rows.schema, &filter)? {
                            send(socket, message).await?;
                        }
                    }
                    LiveChange::Provisional(batches) => {
                        for message in view.provisional(batches, &rows.schema, &filter)? {
                            send(socket, message).await?;
                        }
                    }
                }
            }
            text = next_text(socket) => {
                let reselect: Reselect = serde_json::from_str(&text?).map_err(|err| {
                    request_error(format!("not a selection: {err}"), r#"send {"values": ["Beijing", "Shanghai"]}"#)
                })?;
                if let View::Distinct(distinct) = &mut view {
                    distinct.selected = reselect.values;
                    send(socket, distinct.message()).await?;
                }
            }
        }
    }
}

/// A table no pipeline writes here: a snapshot, then one per new Delta version.
async fn follow_log(
    socket: &mut WebSocket,
    engine: &QueryEngine,
    def: &strata_catalog::TableDef,
    subscription: &Subscription,
) -> Result<(), SubscribeError> {
    match def.kind {
        TableKind::Delta { .. } => {}
        TableKind::Mysql { .. } => {
            let provider = engine.catalog().open_table(def).await?;
            return follow_rows(socket, provider, def, subscription).await;
        }
        _ => {
            return Err(request_error(
                format!(
                    "{} is a {} table that no pipeline here writes; there is nothing to follow",
                    def.name,
                    def.kind.connector()
                ),
                "subscribe to a Delta or MySQL/TiDB table, or to a table a pipeline of this strata writes",
            ));
        }
    }
    let location = connectors::delta_location(engine.catalog().project(), def)?;
    let mut seen = None;
    loop {
        let version = lake::open(&location).await?.version();
        if version != seen {
            seen = version;
            let provider = lake::table_provider(&location).await?;
            let rows = select(provider, subscription, SNAPSHOT_LIMIT).await?;
            let message = match &subscription.distinct {
                Some(_) => Distinct::new(subscription, &rows)?.message(),
                None => snapshot_message(&rows, &def.primary_key, version.map(|v| v as i64))?,
            };
            send(socket, message).await?;
        }
        tokio::select! {
            _ = tokio::time::sleep(POLL) => {}
            text = next_text(socket) => { text?; }
        }
    }
}

/// A MySQL/TiDB table (an APP serving table, whoever writes it): read every
/// [`POLL`], and a new snapshot sent whenever what the client sees changed.
async fn follow_rows(
    socket: &mut WebSocket,
    provider: Arc<dyn datafusion::catalog::TableProvider>,
    def: &strata_catalog::TableDef,
    subscription: &Subscription,
) -> Result<(), SubscribeError> {
    let mut sent: Option<String> = None;
    loop {
        let rows = select(provider.clone(), subscription, SNAPSHOT_LIMIT).await?;
        let message = match &subscription.distinct {
            Some(_) => Distinct::new(subscription, &rows)?.message(),
            None => snapshot_message(&rows, &def.primary_key, None)?,
        };
        let text = message.to_string();
        if sent.as_ref() != Some(&text) {
            send(socket, message).await?;
            sent = Some(text);
        }
        tokio::select! {
            _ = tokio::time::sleep(POLL) => {}
            text = next_text(socket) => { text?; }
        }
    }
}

/// Rows of a query over one table, as a batch.
struct Rows {
    schema: SchemaRef,
    batches: Vec<RecordBatch>,
}

/// A session that reads a filter's column names as Flink SQL does: case kept.
fn flink_session() -> SessionContext {
    SessionContext::new_with_config(flink_identifiers(SessionConfig::new()))
}

/// `SELECT * FROM table WHERE filter` over `provider`, in a session that holds nothing else.
async fn select(
    provider: Arc<dyn datafusion::catalog::TableProvider>,
    subscription: &Subscription,
    limit: usize,
) -> Result<Rows, SubscribeError> {
    let ctx = flink_session();
    ctx.register_table("subscribed", provider)?;
    let mut frame = ctx.table("subscribed").await?;
    if let Some(filter) = &subscription.filter {
        let schema = Arc::new(frame.schema().as_arrow().clone());
        frame = frame.filter(condition(&ctx, filter, &schema)?)?;
    }
    let frame = frame.limit(0, Some(limit + 1))?;
    let schema = Arc::new(frame.schema().as_arrow().clone());
    let batches = frame.collect().await?;
    let count: usize = batches.iter().map(RecordBatch::num_rows).sum();
    if count > limit {
        return Err(request_error(
            format!(
                "{} has more than {limit} rows to send at first",
                subscription.table
            ),
            "subscribe with a filter that narrows it",
        ));
    }
    Ok(Rows { schema, batches })
}

fn snapshot_message(
    rows: &Rows,
    key: &[String],
    version: Option<i64>,
) -> Result<Value, SubscribeError> {
    Ok(json!({
        "type": "snapshot",
        "version": version,
        "key": key,
        "columns": crate::query::output::columns(&rows.schema),
        "rows": batches_to_json_rows(&rows.batches)?,
    }))
}

/// The subscription's filter, compiled once for the changes that follow.
struct Filter(Option<Arc<dyn PhysicalExpr>>);

/// `filter` as an expression over `schema`, refused unless it is a condition.
fn condition(
    ctx: &SessionContext,
    filter: &str,
    schema: &SchemaRef,
) -> Result<datafusion::prelude::Expr, SubscribeError> {
    use datafusion::logical_expr::ExprSchemable;
    let not_a_condition = |detail: String| {
        request_error(
            format!("the filter {filter:?} is not a condition on the table's columns: {detail}"),
            "write a SQL condition, e.g. city = 'Beijing' AND gmv > 100",
        )
    };
    let df_schema = DFSchema::try_from(schema.as_ref().clone())?;
    let expr = ctx
        .parse_sql_expr(filter, &df_schema)
        .map_err(|err| not_a_condition(err.to_string()))?;
    match expr.get_type(&df_schema) {
        Ok(DataType::Boolean) => Ok(expr),
        Ok(other) => Err(not_a_condition(format!("it is of type {other}"))),
        Err(err) => Err(not_a_condition(err.to_string())),
    }
}

impl Filter {
    fn compile(filter: Option<&str>, schema: &SchemaRef) -> Result<Self, SubscribeError> {
        let Some(filter) = filter else {
            return Ok(Self(None));
        };
        let ctx = flink_session();
        let expr = condition(&ctx, filter, schema)?;
        let df_schema = DFSchema::try_from(schema.as_ref().clone())?;
        Ok(Self(Some(ctx.create_physical_expr(expr, &df_schema)?)))
    }

    /// Per row of `batch` (of the subscription's schema), whether the filter keeps it.
    fn mask(&self, batch: &RecordBatch) -> Result<BooleanArray, SubscribeError> {
        let Some(expr) = &self.0 else {
            return Ok(BooleanArray::from(vec![true; batch.num_rows()]));
        };
        let verdicts = expr.evaluate(batch)?.into_array(batch.num_rows())?;
        let verdicts = verdicts.as_boolean_opt().ok_or_else(|| {
            request_error(
                "the filter did not give true or false".to_string(),
                "write a SQL condition",
            )
        })?;
        Ok((0..verdicts.len())
            .map(|i| Some(verdicts.is_valid(i) && verdicts.value(i)))
            .collect())
    }

    /// The rows of `batch` the filter keeps.
    fn apply(&self, batch: &RecordBatch) -> Result<RecordBatch, SubscribeError> {
        Ok(arrow::compute::filter_record_batch(
            batch,
            &self.mask(batch)?,
        )?)
    }
}

/// Produced rows as rows of the subscription's schema, flagged, with their delete markers.
fn conform(
    batches: &[RecordBatch],
    schema: &SchemaRef,
    provisional: bool,
) -> Result<Vec<(RecordBatch, BooleanArray)>, SubscribeError> {
    let markers = delete_markers(batches);
    batches
        .iter()
        .zip(markers)
        .filter(|(batch, _)| batch.num_rows() > 0)
        .map(|(batch, deletes)| {
            let columns = schema
                .fields()
                .iter()
                .map(|field| {
                    if field.name() == PROVISIONAL {
                        return Ok(
                            Arc::new(BooleanArray::from(vec![provisional; batch.num_rows()]))
                                as arrow::array::ArrayRef,
                        );
                    }
                    let column = batch.column_by_name(field.name()).ok_or_else(|| {
                        request_error(
                            format!("the pipeline's rows lack the column {}", field.name()),
                            "subscribe again once the pipeline runs with the table's schema",
                        )
                    })?;
                    Ok(arrow::compute::cast(column, field.data_type())?)
                })
                .collect::<Result<Vec<_>, SubscribeError>>()?;
            Ok((RecordBatch::try_new(schema.clone(), columns)?, deletes))
        })
        .collect()
}

/// Produced rows the filter keeps, as rows of the subscription's schema.
fn filtered(
    batches: &[RecordBatch],
    schema: &SchemaRef,
    filter: &Filter,
    provisional: bool,
) -> Result<Vec<RecordBatch>, SubscribeError> {
    conform(batches, schema, provisional)?
        .iter()
        .map(|(batch, _)| filter.apply(batch))
        .collect()
}

/// What the client has been sent, to compute what to send next.
enum View {
    Appended,
    Keyed(Keyed),
    Distinct(Distinct),
}

impl View {
    fn snapshot(
        &self,
        rows: &Rows,
        key: &[String],
        version: Option<i64>,
    ) -> Result<Value, SubscribeError> {
        match self {
            View::Distinct(distinct) => Ok(distinct.message()),
            _ => snapshot_message(rows, key, version),
        }
    }

    fn rows(
        &mut self,
        batches: &[RecordBatch],
        schema: &SchemaRef,
        filter: &Filter,
    ) -> Result<Vec<Value>, SubscribeError> {
        match self {
            View::Appended => {
                let kept = filtered(batches, schema, filter, false)?;
                if kept.iter().all(|b| b.num_rows() == 0) {
                    return Ok(Vec::new());
                }
                Ok(vec![
                    json!({"type": "insert", "rows": batches_to_json_rows(&kept)?}),
                ])
            }
            View::Keyed(keyed) => keyed.apply(conform(batches, schema, false)?, filter, false),
            View::Distinct(distinct) => {
                let before = distinct.counts();
                for batch in filtered(batches, schema, filter, false)? {
                    distinct.add(&batch)?;
                }
                Ok(match distinct.counts() == before {
                    true => Vec::new(),
                    false => vec![distinct.message()],
                })
            }
        }
    }

    fn provisional(
        &mut self,
        batches: &[RecordBatch],
        schema: &SchemaRef,
        filter: &Filter,
    ) -> Result<Vec<Value>, SubscribeError> {
        match self {
            View::Appended => {
                let kept = filtered(batches, schema, filter, true)?;
                Ok(vec![
                    json!({"type": "provisional", "rows": batches_to_json_rows(&kept)?}),
                ])
            }
            View::Keyed(keyed) => keyed.apply(conform(batches, schema, true)?, filter, true),
            View::Distinct(_) => Ok(Vec::new()),
        }
    }
}

/// A keyed table as sent: final and provisional values per key.
struct Keyed {
    key: Vec<String>,
    finals: HashMap<String, Value>,
    /// The open windows' values by key; `None` where the newest value leaves the filter.
    provisional: HashMap<String, Option<Value>>,
    sent: HashMap<String, Value>,
}

impl Keyed {
    fn new(key: Vec<String>, rows: &Rows) -> Self {
        let mut keyed = Self {
            key,
            finals: HashMap::new(),
            provisional: HashMap::new(),
            sent: HashMap::new(),
        };
        let values = batches_to_json_rows(&rows.batches).unwrap_or_default();
        for row in values.as_array().into_iter().flatten() {
            let id = keyed.id(row);
            if row[PROVISIONAL] == Value::Bool(true) {
                keyed.provisional.insert(id.clone(), Some(row.clone()));
            } else {
                keyed.finals.insert(id.clone(), row.clone());
            }
            keyed.sent.insert(id, row.clone());
        }
        keyed
    }

    fn id(&self, row: &Value) -> String {
        Value::Array(self.key.iter().map(|k| row[k].clone()).collect()).to_string()
    }

    /// Folds changes in (a new provisional set replaces the last) and
    /// returns what the client must hear: upserts and deletes of the merged view.
    fn apply(
        &mut self,
        batches: Vec<(RecordBatch, BooleanArray)>,
        filter: &Filter,
        provisional: bool,
    ) -> Result<Vec<Value>, SubscribeError> {
        let mut touched: BTreeSet<String> = BTreeSet::new();
        if provisional {
            touched.extend(self.provisional.drain().map(|(id, _)| id));
        }
        for (batch, deletes) in batches {
            let kept = filter.mask(&batch)?;
            let rows = batches_to_json_rows(&[batch])?;
            for (i, row) in rows.as_array().into_iter().flatten().enumerate() {
                let id = self.id(row);
                touched.insert(id.clone());
                let stays = kept.value(i) && !deletes.value(i);
                if provisional {
                    // A newer value that leaves the filter hides the final one too.
                    self.provisional.insert(id, stays.then(|| row.clone()));
                } else if stays {
                    self.finals.insert(id, row.clone());
                } else {
                    self.finals.remove(&id);
                }
            }
        }
        let (mut upserts, mut deletes) = (Vec::new(), Vec::new());
        for id in touched {
            let now = match self.provisional.get(&id) {
                Some(newest) => newest.as_ref(),
                None => self.finals.get(&id),
            };
            match (now, self.sent.get(&id)) {
                (Some(now), Some(before)) if now == before => {}
                (Some(now), _) => {
                    upserts.push(now.clone());
                    self.sent.insert(id, now.clone());
                }
                (None, Some(before)) => {
                    deletes.push(before.clone());
                    self.sent.remove(&id);
                }
                (None, None) => {}
            }
        }
        let mut messages = Vec::new();
        if !upserts.is_empty() {
            messages.push(json!({"type": "upsert", "rows": upserts}));
        }
        if !deletes.is_empty() {
            messages.push(json!({"type": "delete", "rows": deletes}));
        }
        Ok(messages)
    }
}

/// Exact distinct counts per value of one column, over any union of values.
struct Distinct {
    distinct: String,
    by: String,
    selected: Option<Vec<String>>,
    /// Each distinct value's dense number.
    ids: HashMap<String, u32>,
    per_value: BTreeMap<String, RoaringBitmap>,
}

impl Distinct {
    fn new(subscription: &Subscription, rows: &Rows) -> Result<Self, SubscribeError> {
        let (Some(distinct), Some(by)) = (&subscription.distinct, &subscription.by) else {
            return Err(request_error(
                "a distinct subscription names both 'distinct' and 'by'".to_string(),
                r#"send {"table": …, "distinct": "user_id", "by": "city"}"#,
            ));
        };
        for column in [distinct, by] {
            if rows.schema.index_of(column).is_err() {
                return Err(request_error(
                    format!("{} has no column {column}", subscription.table),
                    "name columns of the table",
                ));
            }
        }
        let mut counter = Self {
            distinct: distinct.clone(),
            by: by.clone(),
            selected: subscription.values.clone(),
            ids: HashMap::new(),
            per_value: BTreeMap::new(),
        };
        for batch in &rows.batches {
            counter.add(batch)?;
        }
        Ok(counter)
    }

    /// Adds the rows of `batch` (any schema with both columns).
    fn add(&mut self, batch: &RecordBatch) -> Result<(), SubscribeError> {
        let text = |name: &str| -> Result<Option<Arc<dyn Array>>, SubscribeError> {
            batch
                .column_by_name(name)
                .map(|c| arrow::compute::cast(c, &DataType::Utf8))
                .transpose()
                .map_err(Into::into)
        };
        let (Some(ids), Some(values)) = (text(&self.distinct)?, text(&self.by)?) else {
            return Ok(());
        };
        let (ids, values) = (ids.as_string::<i32>(), values.as_string::<i32>());
        for row in 0..batch.num_rows() {
            if ids.is_null(row) || values.is_null(row) {
                continue;
            }
            let next = self.ids.len() as u32 + 1;
            let id = *self.ids.entry(ids.value(row).to_string()).or_insert(next);
            self.per_value
                .entry(values.value(row).to_string())
                .or_default()
                .insert(id);
        }
        Ok(())
    }

    /// The union's count and each selected value's count.
    fn counts(&self) -> (u64, BTreeMap<String, u64>) {
        let chosen: Vec<(&String, &RoaringBitmap)> = match &self.selected {
            Some(values) => self
                .per_value
                .iter()
                .filter(|(value, _)| values.contains(value))
                .collect(),
            None => self.per_value.iter().collect(),
        };
        let union: RoaringBitmap = chosen
            .iter()
            .map(|(_, b)| *b)
            .fold(RoaringBitmap::new(), |a, b| a | b);
        let by = chosen
            .iter()
            .map(|(v, b)| ((*v).clone(), b.len()))
            .collect();
        (union.len(), by)
    }

    fn message(&self) -> Value {
        let (count, by) = self.counts();
        let mut per = Map::new();
        for (value, n) in by {
            per.insert(value, json!(n));
        }
        json!({"type": "distinct", "column": self.distinct, "by_column": self.by, "count": count, "by": per})
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Int64Array, StringArray};
    use arrow::datatypes::{Field, Schema};

    fn schema() -> SchemaRef {
        Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, false),
            Field::new("gmv", DataType::Int64, false),
            Field::new(PROVISIONAL, DataType::Boolean, false),
        ]))
    }

    fn rows(values: &[(i64, i64)], provisional: bool) -> (RecordBatch, BooleanArray) {
        let batch = RecordBatch::try_new(
            schema(),
            vec![
                Arc::new(Int64Array::from_iter_values(values.iter().map(|v| v.0))),
                Arc::new(Int64Array::from_iter_values(values.iter().map(|v| v.1))),
                Arc::new(BooleanArray::from(vec![provisional; values.len()])),
            ],
        )
        .unwrap();
        (batch, BooleanArray::from(vec![false; values.len()]))
    }

    fn keyed() -> Keyed {
        let (batch, _) = rows(&[(1, 1200)], false);
        Keyed::new(
            vec!["id".to_string()],
            &Rows {
                schema: schema(),
                batches: vec![batch],
            },
        )
    }

    #[test]
    fn the_filter_judges_each_change_of_a_key_not_the_key() {
        let filter = Filter::compile(Some("gmv > 1000"), &schema()).unwrap();
        let mut view = keyed();
        // 1 goes to 1500 then, in the same batch, to 900: it leaves the filter.
        let messages = view
            .apply(vec![rows(&[(1, 1500), (1, 900)], false)], &filter, false)
            .unwrap();
        assert_eq!(messages.len(), 1, "{messages:?}");
        assert_eq!(messages[0]["type"], "delete");
    }

    #[test]
    fn a_provisional_value_outside_the_filter_hides_the_final_one() {
        let filter = Filter::compile(Some("gmv > 1000"), &schema()).unwrap();
        let mut view = keyed();
        let messages = view
            .apply(vec![rows(&[(1, 800)], true)], &filter, true)
            .unwrap();
        assert_eq!(messages[0]["type"], "delete", "{messages:?}");
        // The window closes at 1300: the final value is back in the filter.
        view.apply(vec![rows(&[(1, 1300)], false)], &filter, false)
            .unwrap();
        let messages = view.apply(Vec::new(), &filter, true).unwrap();
        assert_eq!(messages[0]["type"], "upsert", "{messages:?}");
        assert_eq!(messages[0]["rows"][0]["gmv"], 1300);
    }

    #[test]
    fn a_filter_must_be_a_condition() {
        let err = Filter::compile(Some("gmv + 1"), &schema()).err().unwrap();
        assert!(err.to_string().contains("is not a condition"), "{err}");
        assert!(Filter::compile(Some("NULL"), &schema()).is_err());
        let names = Arc::new(Schema::new(vec![Field::new("city", DataType::Utf8, true)]));
        let filter = Filter::compile(Some("city = 'Beijing'"), &names).unwrap();
        let batch = RecordBatch::try_new(
            names,
            vec![Arc::new(StringArray::from(vec![Some("Beijing"), None]))],
        )
        .unwrap();
        assert_eq!(
            filter.mask(&batch).unwrap(),
            BooleanArray::from(vec![true, false])
        );
    }
}
