//! Streaming aggregation: window TVF aggregates and non-windowed GROUP BY.
//!
//! ```text
//!   batch ──group keys──▶ local pre-aggregation (one entry per key in the batch)
//!                          └──merge──▶ global state: (window_end, window_start, key) → accumulators
//!
//!   at each commit, with the new watermark W:
//!     windows with end - 1 ≤ W, not yet fired   ──▶ emitted (final unless allowed lateness)
//!     fired windows a late row updated           ──▶ emitted again (the sink upserts them)
//!     windows with end - 1 + lateness ≤ W        ──▶ dropped from state
//!     GROUP BY without a window: changed groups  ──▶ emitted (upsert by key)
//!   asked for update-before rows (a target without a key: Flink's retract mode),
//!   each group keeps the values it last emitted:
//!     changed group ──▶ -U (the values emitted before) +U (its values now), or +I the first time
//!     unchanged     ──▶ nothing;   emptied ──▶ -D (the values emitted before)
//!   a row whose window has been dropped is late: it goes to <target>__late, never into a window
//! ```
//!
//! A GROUP BY without a window under `SET 'table.exec.state.ttl'` forgets a group
//! not updated for the TTL (by processing time), as Flink's does: its row stays
//! in the target, and a row that comes for it later starts the group over.
//!
//! Skew is handled as in Flink's local-global aggregation: each batch is first
//! aggregated on its own, so a hot key costs one state update per batch rather
//! than one per row. Exact `COUNT(DISTINCT)` on a hot key keeps its values in one
//! set per window and key, updated once per batch with the batch's distinct values.

pub mod accumulator;
pub mod distinct;
pub mod hll;
mod operator;

pub use operator::Aggregation;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, TimestampMillisecondArray};
use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use arrow::row::{RowConverter, SortField};
use datafusion::physical_expr::PhysicalExpr;

use self::accumulator::{Acc, AggregateCall};
use crate::batch::strict_cast;
use crate::error::Result;
use crate::operator::{Emitted, RowKind};
use crate::state::{ByteReader, ByteWriter};
use crate::window::WindowKind;

/// What a GROUP BY expression is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupRole {
    WindowStart,
    WindowEnd,
    WindowTime,
    /// The n-th grouping key that is not a window column.
    Key(usize),
}

/// A compiled aggregation.
#[derive(Debug)]
pub struct AggregatePlan {
    /// `None` for a non-windowed GROUP BY.
    pub window: Option<WindowKind>,
    pub allowed_lateness_ms: i64,
    group_exprs: Vec<Arc<dyn PhysicalExpr>>,
    roles: Vec<GroupRole>,
    key_converter: RowConverter,
    calls: Vec<AggregateCall>,
    /// The aggregation's output: group columns, then aggregates.
    output: SchemaRef,
    /// Whether a change takes back the row emitted before (Flink's
    /// UPDATE_BEFORE), for a target that cannot upsert by the groups.
    pub update_before: bool,
    /// The aggregates' output values of one group, as bytes (what a group last emitted).
    values: RowConverter,
    /// When a GROUP BY's groups expire (`SET 'table.exec.state.ttl'`); windows
    /// are forgotten as the watermark closes them instead.
    expiry: crate::keyed::Expiry,
}

impl AggregatePlan {
    /// What this aggregation's checkpointed state is made of, a line per part:
    /// restoring it under another shape would misread every group.
    pub fn state_shape(&self) -> Vec<String> {
        let groups: Vec<String> = self
            .roles
            .iter()
            .zip(&self.group_exprs)
            .map(|(role, expr)| format!("{role:?} {expr}"))
            .collect();
        let mut lines = vec![
            format!("aggregation window: {:?}", self.window),
            format!("aggregation groups: {}", groups.join(", ")),
        ];
        lines.extend(
            self.calls
                .iter()
                .map(|call| format!("aggregate: {}", call.shape())),
        );
        if self.update_before {
            lines.push("aggregation keeps each group's last emitted values".to_string());
        }
        lines
    }

    pub fn new(
        window: Option<WindowKind>,
        allowed_lateness_ms: i64,
        groups: Vec<(Arc<dyn PhysicalExpr>, GroupRole, arrow::datatypes::DataType)>,
        calls: Vec<AggregateCall>,
        output: SchemaRef,
    ) -> Result<Self> {
        let key_fields = groups
            .iter()
            .filter(|(_, role, _)| matches!(role, GroupRole::Key(_)))
            .map(|(_, _, data_type)| SortField::new(data_type.clone()))
            .collect();
        let (group_exprs, roles): (Vec<_>, Vec<GroupRole>) =
            groups.into_iter().map(|(e, r, _)| (e, r)).unzip();
        let value_fields = output.fields()[roles.len()..]
            .iter()
            .map(|field| SortField::new(field.data_type().clone()))
            .collect();
        Ok(Self {
            window,
            allowed_lateness_ms,
            group_exprs,
            roles,
            key_converter: RowConverter::new(key_fields)?,
            calls,
            output,
            update_before: false,
            values: RowConverter::new(value_fields)?,
            expiry: crate::keyed::Expiry::default(),
        })
    }

    /// A GROUP BY without a window whose groups are forgotten `ttl_ms` after
    /// their last update (Flink's `table.exec.state.ttl`); windows keep theirs
    /// until the watermark closes them.
    pub fn expiring(mut self, expiry: crate::keyed::Expiry) -> Self {
        if self.window.is_none() {
            self.expiry = expiry;
        }
        self
    }

    /// The state TTL its groups honour, if any.
    pub fn state_ttl_ms(&self) -> Option<i64> {
        self.expiry.ttl_ms()
    }

    /// The aggregation, taking back the row it emitted before with each
    /// change of a group (for a target without a key to upsert by).
    pub fn with_update_before(mut self) -> Self {
        self.update_before = true;
        self
    }

    /// The aggregation reading a stream of `input`'s changelog kind: over
    /// retractions, MIN, MAX and COUNT(DISTINCT) keep every value with its
    /// count of rows, to take them back out.
    pub fn reading(mut self, input: crate::operator::Changelog) -> Self {
        if input != crate::operator::Changelog::AppendOnly {
            self.calls = self
                .calls
                .into_iter()
                .map(AggregateCall::over_changelog)
                .collect();
        }
        self
    }

    /// The aggregation's output: group columns, then aggregates.
    pub fn output_schema(&self) -> &SchemaRef {
        &self.output
    }

    /// The output columns of the GROUP BY keys (window bounds included).
    pub fn group_columns(&self) -> Vec<String> {
        self.output.fields()[..self.roles.len()]
            .iter()
            .map(|field| field.name().clone())
            .collect()
    }

    /// The aggregation in SQL terms: its window, keys and aggregates.
    pub fn describe(&self) -> String {
        let window = match &self.window {
            Some(kind) => format!("{kind:?} window, "),
            None => String::new(),
        };
        let calls: Vec<String> = self
            .calls
            .iter()
            .zip(&self.output.fields()[self.roles.len()..])
            .map(|(call, field)| format!("{} AS {}", call.describe(), field.name()))
            .collect();
        let ttl = self.expiry.describe("groups", "their last change");
        format!(
            "{window}GROUP BY {}: {}{ttl}",
            self.group_columns().join(", "),
            calls.join(", ")
        )
    }

    /// Whether results can change after they were first emitted (the sink must upsert).
    pub fn updates(&self) -> bool {
        self.window.is_none() || self.allowed_lateness_ms > 0
    }

    /// Whether its changing results can each take back what was emitted
    /// before ([`Self::with_update_before`]): groups and windows keep their
    /// last emitted values; a session re-emitted after a late row does not
    /// (its merged sessions were dropped when they fired).
    pub fn takes_back_updates(&self) -> bool {
        self.updates() && !matches!(self.window, Some(WindowKind::Session { .. }))
    }

    /// Why the aggregation cannot read a stream of `input`'s changelog kind, if it cannot.
    pub fn accepts(&self, input: crate::operator::Changelog) -> std::result::Result<(), String> {
        if input == crate::operator::Changelog::AppendOnly {
            return Ok(());
        }
        let refused = self.unretractable();
        if !refused.is_empty() {
            return Err(format!(
                "{} over a changelog (its updates and deletes must be taken back out, and an estimate cannot take a value back; COUNT(DISTINCT …) can)",
                refused.join(", ")
            ));
        }
        if matches!(self.window, Some(WindowKind::Session { .. })) {
            return Err("a SESSION window over a changelog".to_string());
        }
        Ok(())
    }

    /// The aggregates that cannot take a changelog's retractions back out.
    pub fn unretractable(&self) -> Vec<String> {
        self.calls
            .iter()
            .filter(|call| !call.retractable())
            .map(|call| call.function.sql_name().to_string())
            .collect()
    }

    fn has_keys(&self) -> bool {
        self.roles.iter().any(|r| matches!(r, GroupRole::Key(_)))
    }

    /// Per row: (window start, window end), from the window columns, and the key bytes.
    fn group_rows(&self, batch: &RecordBatch) -> Result<(Vec<(i64, i64)>, Keys)> {
        let mut starts = None;
        let mut ends = None;
        let mut keys = Vec::new();
        for (expr, role) in self.group_exprs.iter().zip(&self.roles) {
            let values = crate::batch::evaluate(expr, batch)?;
            match role {
                GroupRole::WindowStart => starts = Some(millis(&values)?),
                GroupRole::WindowEnd => ends = Some(millis(&values)?),
                GroupRole::WindowTime => {}
                GroupRole::Key(_) => keys.push(values),
            }
        }
        let windows = match (starts, ends) {
            (Some(starts), Some(ends)) => starts
                .values()
                .iter()
                .zip(ends.values().iter())
                .map(|(&s, &e)| (s, e))
                .collect(),
            _ => vec![(i64::MIN, i64::MAX); batch.num_rows()],
        };
        let keys = if keys.is_empty() {
            Keys::None
        } else {
            Keys::Rows(self.key_converter.convert_columns(&keys)?)
        };
        Ok((windows, keys))
    }

    /// Builds output rows for these groups.
    fn finish(&self, groups: &[(i64, i64, &[u8], &[Acc])]) -> Result<RecordBatch> {
        let mut values = Vec::with_capacity(self.calls.len());
        for (index, call) in self.calls.iter().enumerate() {
            let accs: Vec<&Acc> = groups.iter().map(|g| &g.3[index]).collect();
            values.push(call.finish(&accs)?);
        }
        let ids: Vec<(i64, i64, &[u8])> = groups.iter().map(|g| (g.0, g.1, g.2)).collect();
        self.rows(&ids, values)
    }

    /// Output rows of groups (start, end, key) whose values were emitted as `emitted`.
    fn emitted_rows(&self, emitted: &[(&GroupId, Vec<u8>)]) -> Result<RecordBatch> {
        let parser = self.values.parser();
        let values = self
            .values
            .convert_rows(emitted.iter().map(|(_, bytes)| parser.parse(bytes)))?;
        let ids: Vec<(i64, i64, &[u8])> = emitted
            .iter()
            .map(|(id, _)| (id.1, id.0, id.2.as_slice()))
            .collect();
        self.rows(&ids, values)
    }

    /// Output rows of groups (start, end, key) with their aggregates' `values`.
    fn rows(&self, groups: &[(i64, i64, &[u8])], values: Vec<ArrayRef>) -> Result<RecordBatch> {
        let parser = self.key_converter.parser();
        let key_columns = if self.has_keys() {
            self.key_converter
                .convert_rows(groups.iter().map(|(_, _, key)| parser.parse(key)))?
        } else {
            Vec::new()
        };
        let mut columns: Vec<ArrayRef> = Vec::with_capacity(self.output.fields().len());
        for role in &self.roles {
            let column: ArrayRef = match role {
                GroupRole::WindowStart => Arc::new(TimestampMillisecondArray::from_iter_values(
                    groups.iter().map(|g| g.0),
                )),
                GroupRole::WindowEnd => Arc::new(TimestampMillisecondArray::from_iter_values(
                    groups.iter().map(|g| g.1),
                )),
                GroupRole::WindowTime => Arc::new(TimestampMillisecondArray::from_iter_values(
                    groups.iter().map(|g| g.1 - 1),
                )),
                GroupRole::Key(index) => key_columns[*index].clone(),
            };
            columns.push(column);
        }
        columns.extend(values);
        let columns = columns
            .iter()
            .zip(self.output.fields())
            .map(|(column, field)| strict_cast(column, field.data_type()))
            .collect::<Result<Vec<_>>>()?;
        let options =
            arrow::record_batch::RecordBatchOptions::new().with_row_count(Some(groups.len()));
        Ok(RecordBatch::try_new_with_options(
            relaxed(&self.output),
            columns,
            &options,
        )?)
    }

    fn empty_accs(&self) -> Vec<Acc> {
        self.calls.iter().map(AggregateCall::empty).collect()
    }
}

/// The output schema with every column nullable (aggregates of no values are NULL).
fn relaxed(schema: &SchemaRef) -> SchemaRef {
    Arc::new(arrow::datatypes::Schema::new(
        crate::batch::nullable_fields(schema),
    ))
}

fn millis(values: &ArrayRef) -> Result<TimestampMillisecondArray> {
    let cast = arrow::compute::cast(values, &crate::window::timestamp_ms())?;
    Ok(cast
        .as_any()
        .downcast_ref::<TimestampMillisecondArray>()
        .expect("cast to milliseconds")
        .clone())
}

/// Each row's grouping key, in Arrow's row format.
enum Keys {
    /// No keys besides the window: every row's key is empty.
    None,
    Rows(arrow::row::Rows),
}

impl Keys {
    fn key(&self, row: usize) -> &[u8] {
        match self {
            Keys::None => &[],
            Keys::Rows(rows) => rows.row(row).data(),
        }
    }
}

/// A group's accumulators, how many rows it holds, and whether its window has been emitted.
#[derive(Debug, Clone)]
struct Group {
    accs: Vec<Acc>,
    /// Rows in, less rows retracted: a group a changelog emptied is deleted.
    rows: i64,
    fired: bool,
    /// The values it last emitted, when changes take them back (update-before).
    emitted: Option<Vec<u8>>,
    /// When a row last changed it (ms since the epoch), for the state TTL.
    touched_ms: i64,
}

impl Group {
    fn new(plan: &AggregatePlan, now_ms: i64) -> Self {
        Self {
            accs: plan.empty_accs(),
            rows: 0,
            fired: false,
            emitted: None,
            touched_ms: now_ms,
        }
    }
}

/// A session window of one key.
#[derive(Debug, Clone)]
struct Session {
    start: i64,
    end: i64,
    accs: Vec<Acc>,
}

/// (window end, window start, key): ordered so the earliest-ending windows come first.
type GroupId = (i64, i64, Vec<u8>);

/// The open windows and groups of one aggregation.
#[derive(Debug, Default)]
pub struct AggregateState {
    groups: BTreeMap<GroupId, Group>,
    sessions: HashMap<Vec<u8>, Vec<Session>>,
    /// Groups changed since they were last emitted.
    dirty: BTreeSet<GroupId>,
}

impl AggregateState {
    /// Folds a batch in. `watermark` is the watermark of the last commit: rows
    /// whose window was already dropped are late; their positions in `batch` are returned.
    pub fn update(
        &mut self,
        plan: &AggregatePlan,
        batch: &RecordBatch,
        kinds: Option<&[RowKind]>,
        watermark: Option<i64>,
    ) -> Result<Vec<usize>> {
        let retracts = |row: usize| kinds.is_some_and(|k| k[row].is_retraction());
        if batch.num_rows() == 0 {
            return Ok(Vec::new());
        }
        let (windows, keys) = plan.group_rows(batch)?;
        let inputs = plan
            .calls
            .iter()
            .map(|call| call.input(batch))
            .collect::<Result<Vec<_>>>()?;
        let closed = |end: i64| {
            plan.window.is_some()
                && watermark.is_some_and(|w| end - 1 + plan.allowed_lateness_ms <= w)
        };
        let mut late = Vec::new();
        if let Some(WindowKind::Session { gap }) = plan.window {
            for (row, &(start, _)) in windows.iter().enumerate() {
                let key = keys.key(row).to_vec();
                let mut accs = plan.empty_accs();
                for (acc, input) in accs.iter_mut().zip(&inputs) {
                    acc.update(input, row)?;
                }
                if !self.add_to_session(key, start, start + gap, accs, &closed)? {
                    late.push(row);
                }
            }
            return Ok(late);
        }
        // Local pre-aggregation: one entry per group of this batch. A
        // retraction of a group that holds no rows (none in state, or past its
        // TTL, and none added in this batch) takes nothing back: it is ignored,
        // as Flink's GroupAggFunction ignores a retraction without accumulators.
        let now = plan.expiry.now();
        let held = |id: &GroupId| {
            self.groups
                .get(id)
                .is_some_and(|group| !plan.expiry.expired(group.touched_ms, now))
        };
        let mut local: HashMap<GroupId, (Vec<Acc>, i64)> = HashMap::new();
        for (row, &(start, end)) in windows.iter().enumerate() {
            if closed(end) {
                late.push(row);
                continue;
            }
            let id = (end, start, keys.key(row).to_vec());
            if retracts(row) && local.get(&id).is_none_or(|(_, rows)| *rows <= 0) && !held(&id) {
                continue;
            }
            let (accs, rows) = local.entry(id).or_insert_with(|| (plan.empty_accs(), 0));
            if retracts(row) {
                *rows -= 1;
                for (acc, input) in accs.iter_mut().zip(&inputs) {
                    acc.retract(input, row)?;
                }
            } else {
                *rows += 1;
                for (acc, input) in accs.iter_mut().zip(&inputs) {
                    acc.update(input, row)?;
                }
            }
        }
        // Global: one state update per group of the batch. A group past its
        // TTL is gone (Flink's state never returns expired entries): it starts over.
        for (id, (accs, rows)) in local {
            let group = self
                .groups
                .entry(id.clone())
                .or_insert_with(|| Group::new(plan, now));
            if plan.expiry.expired(group.touched_ms, now) {
                *group = Group::new(plan, now);
            }
            group.touched_ms = now;
            group.rows += rows;
            for (acc, partial) in group.accs.iter_mut().zip(accs) {
                acc.merge(partial)?;
            }
            if group.fired || plan.window.is_none() {
                self.dirty.insert(id);
            }
        }
        Ok(late)
    }

    /// Merges `[start, end)` into the key's sessions it overlaps or touches
    /// (Flink's `TimeWindow.intersects`: a row exactly the gap after a
    /// session's last row joins it); false when the merged session has
    /// already closed (the row is late).
    fn add_to_session(
        &mut self,
        key: Vec<u8>,
        start: i64,
        end: i64,
        accs: Vec<Acc>,
        closed: &dyn Fn(i64) -> bool,
    ) -> Result<bool> {
        let sessions = self.sessions.entry(key).or_default();
        let (overlapping, rest): (Vec<Session>, Vec<Session>) = std::mem::take(sessions)
            .into_iter()
            .partition(|s| s.start <= end && start <= s.end);
        let merged_end = overlapping
            .iter()
            .map(|s| s.end)
            .max()
            .unwrap_or(end)
            .max(end);
        if closed(merged_end) {
            *sessions = rest.into_iter().chain(overlapping).collect();
            return Ok(false);
        }
        let mut merged = Session { start, end, accs };
        for session in overlapping {
            merged.start = merged.start.min(session.start);
            merged.end = merged.end.max(session.end);
            for (acc, other) in merged.accs.iter_mut().zip(session.accs) {
                acc.merge(other)?;
            }
        }
        *sessions = rest;
        sessions.push(merged);
        Ok(true)
    }

    /// Emits what the watermark completed and what changed (keys a changelog
    /// emptied as deletes), and forgets windows past their lateness.
    pub fn emit(&mut self, plan: &AggregatePlan, watermark: Option<i64>) -> Result<Emitted> {
        let lateness = plan.allowed_lateness_ms;
        if let Some(WindowKind::Session { .. }) = plan.window {
            let mut done: Vec<(i64, i64, Vec<u8>, Vec<Acc>)> = Vec::new();
            if let Some(w) = watermark {
                for (key, sessions) in self.sessions.iter_mut() {
                    let (closed, open): (Vec<Session>, Vec<Session>) = std::mem::take(sessions)
                        .into_iter()
                        .partition(|s| s.end - 1 <= w);
                    *sessions = open;
                    done.extend(
                        closed
                            .into_iter()
                            .map(|s| (s.start, s.end, key.clone(), s.accs)),
                    );
                }
                self.sessions.retain(|_, sessions| !sessions.is_empty());
            }
            done.sort_by(|a, b| (a.1, a.0, &a.2).cmp(&(b.1, b.0, &b.2)));
            let rows: Vec<(i64, i64, &[u8], &[Acc])> = done
                .iter()
                .map(|(s, e, k, a)| (*s, *e, k.as_slice(), a.as_slice()))
                .collect();
            return Ok(Emitted::appended(vec![plan.finish(&rows)?]));
        }
        let mut emit: BTreeSet<GroupId> = std::mem::take(&mut self.dirty);
        if let (Some(w), Some(_)) = (watermark, plan.window) {
            for (id, group) in self
                .groups
                .range_mut(..(w.saturating_add(2), i64::MIN, Vec::new()))
            {
                if id.0 - 1 <= w && !group.fired {
                    group.fired = true;
                    emit.insert(id.clone());
                }
            }
        }
        let emitted = if plan.update_before {
            self.changes(plan, &emit)?
        } else {
            let rows = |emptied: bool| -> Vec<(i64, i64, &[u8], &[Acc])> {
                emit.iter()
                    .filter_map(|id| {
                        self.groups
                            .get(id)
                            .filter(|g| (g.rows <= 0) == emptied)
                            .map(|g| (id.1, id.0, id.2.as_slice(), g.accs.as_slice()))
                    })
                    .collect()
            };
            Emitted {
                upserts: vec![plan.finish(&rows(false))?],
                deletes: vec![plan.finish(&rows(true))?],
                ..Emitted::default()
            }
        };
        self.groups.retain(|_, g| g.rows > 0);
        if plan.expiry.ttl_ms().is_some() {
            let now = plan.expiry.now();
            self.groups
                .retain(|_, g| !plan.expiry.expired(g.touched_ms, now));
        }
        if let (Some(w), Some(_)) = (watermark, plan.window) {
            let keep_from = (
                w.saturating_sub(lateness).saturating_add(2),
                i64::MIN,
                Vec::new(),
            );
            self.groups = self.groups.split_off(&keep_from);
        }
        Ok(emitted)
    }

    /// The changes of the groups `emit`, each taking back what its group
    /// emitted before: -U the old values and +U the new ones (+I the first
    /// time), nothing for values that did not change, -D the old values of a
    /// group emptied.
    fn changes(&mut self, plan: &AggregatePlan, emit: &BTreeSet<GroupId>) -> Result<Emitted> {
        let standing: Vec<&GroupId> = emit
            .iter()
            .filter(|id| self.groups.get(*id).is_some_and(|g| g.rows > 0))
            .collect();
        let current = {
            let rows: Vec<(i64, i64, &[u8], &[Acc])> = standing
                .iter()
                .map(|id| {
                    (
                        id.1,
                        id.0,
                        id.2.as_slice(),
                        self.groups[*id].accs.as_slice(),
                    )
                })
                .collect();
            plan.finish(&rows)?
        };
        let values = plan
            .values
            .convert_columns(&current.columns()[plan.roles.len()..])?;
        let (mut taken_back, mut changed) = (Vec::new(), Vec::new());
        for (row, id) in standing.iter().enumerate() {
            let now = values.row(row).data();
            let group = self.groups.get_mut(*id).expect("a standing group");
            if group.emitted.as_deref() == Some(now) {
                continue;
            }
            if let Some(before) = group.emitted.replace(now.to_vec()) {
                taken_back.push((*id, before));
            }
            changed.push(row as u32);
        }
        let deleted: Vec<(&GroupId, Vec<u8>)> = emit
            .iter()
            .filter_map(|id| {
                let group = self.groups.get(id).filter(|g| g.rows <= 0)?;
                Some((id, group.emitted.clone()?))
            })
            .collect();
        let changed = arrow::array::UInt32Array::from(changed);
        Ok(Emitted {
            retracts: vec![plan.emitted_rows(&taken_back)?],
            upserts: vec![arrow::compute::take_record_batch(&current, &changed)?],
            deletes: vec![plan.emitted_rows(&deleted)?],
            ..Emitted::default()
        })
    }

    /// The current values of what [`Self::emit`] has not written: open windows
    /// and sessions, groups changed since (a GROUP BY without a window, or
    /// windows updated within their lateness), as `emit` would write them.
    pub fn provisional(&self, plan: &AggregatePlan) -> Result<RecordBatch> {
        if let Some(WindowKind::Session { .. }) = plan.window {
            let rows: Vec<(i64, i64, &[u8], &[Acc])> = self
                .sessions
                .iter()
                .flat_map(|(key, sessions)| {
                    sessions
                        .iter()
                        .map(move |s| (s.start, s.end, key.as_slice(), s.accs.as_slice()))
                })
                .collect();
            return plan.finish(&rows);
        }
        let rows: Vec<(i64, i64, &[u8], &[Acc])> = self
            .groups
            .iter()
            .filter(|(id, group)| {
                group.rows > 0
                    && (self.dirty.contains(*id) || (plan.window.is_some() && !group.fired))
            })
            .map(|(id, group)| (id.1, id.0, id.2.as_slice(), group.accs.as_slice()))
            .collect();
        plan.finish(&rows)
    }

    /// How many windows and groups are open.
    pub fn open_groups(&self) -> usize {
        self.groups.len() + self.sessions.values().map(Vec::len).sum::<usize>()
    }

    /// Writes the state; `update_before` says whether groups keep what they
    /// last emitted (the plan's [`AggregatePlan::update_before`]).
    ///
    /// Under a TTL, each group also records when it was last changed, and the
    /// count of groups says so in its top bit (a checkpoint without it
    /// restores every group as changed at the restore).
    pub fn encode(&self, out: &mut ByteWriter, update_before: bool, expiring: bool) {
        out.flagged_count(self.groups.len(), expiring);
        for ((end, start, key), group) in &self.groups {
            out.i64(*end);
            out.i64(*start);
            out.bytes(key);
            out.i64(group.rows);
            out.u8(u8::from(group.fired));
            encode_accs(&group.accs, out);
            if update_before {
                out.option(group.emitted.as_ref(), |out, bytes| out.bytes(bytes));
            }
            if expiring {
                out.i64(group.touched_ms);
            }
        }
        let mut keys: Vec<&Vec<u8>> = self.sessions.keys().collect();
        keys.sort();
        out.u64(keys.len() as u64);
        for key in keys {
            out.bytes(key);
            let sessions = &self.sessions[key];
            out.u64(sessions.len() as u64);
            for session in sessions {
                out.i64(session.start);
                out.i64(session.end);
                encode_accs(&session.accs, out);
            }
        }
    }

    pub fn decode(input: &mut ByteReader<'_>, update_before: bool, now_ms: i64) -> Result<Self> {
        let mut state = Self::default();
        let (groups, touched) = input.flagged_count()?;
        for _ in 0..groups {
            let end = input.i64()?;
            let start = input.i64()?;
            let key = input.bytes()?.to_vec();
            let rows = input.i64()?;
            let fired = input.u8()? == 1;
            let accs = decode_accs(input)?;
            let emitted = match update_before {
                true => input.option(|input| Ok(input.bytes()?.to_vec()))?,
                false => None,
            };
            let touched_ms = match touched {
                true => input.i64()?,
                false => now_ms,
            };
            let group = Group {
                accs,
                rows,
                fired,
                emitted,
                touched_ms,
            };
            state.groups.insert((end, start, key), group);
        }
        for _ in 0..input.u64()? {
            let key = input.bytes()?.to_vec();
            let mut sessions = Vec::new();
            for _ in 0..input.u64()? {
                sessions.push(Session {
                    start: input.i64()?,
                    end: input.i64()?,
                    accs: decode_accs(input)?,
                });
            }
            state.sessions.insert(key, sessions);
        }
        Ok(state)
    }
}

fn encode_accs(accs: &[Acc], out: &mut ByteWriter) {
    out.u64(accs.len() as u64);
    for acc in accs {
        acc.encode(out);
    }
}

fn decode_accs(input: &mut ByteReader<'_>) -> Result<Vec<Acc>> {
    (0..input.u64()?).map(|_| Acc::decode(input)).collect()
}
