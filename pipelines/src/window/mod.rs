//! Flink's window table-valued functions: `TUMBLE`, `HOP`, `CUMULATE` and `SESSION`.
//!
//! ```text
//!   FROM TABLE(TUMBLE(TABLE shop.dwd_orders, DESCRIPTOR(order_time), INTERVAL '1' MINUTE))
//!     ──parse──▶ WindowTvf { Tumble(60 s), source shop.dwd_orders, time order_time }
//!     ──rewrite──▶ FROM __window.shop__dwd_orders     (the source's columns + window_start,
//!                                                      window_end, window_time), planned by DataFusion
//!
//!   each row ──assign──▶ one row per window it belongs to:
//!     TUMBLE(size)          [⌊t/size⌋·size, +size)
//!     HOP(slide, size)      every [s, s+size) with s a multiple of slide and s ≤ t < s+size
//!     CUMULATE(step, max)   [⌊t/max⌋·max, +k·step) for every k whose end is past t
//!     SESSION(gap)          [t, t+gap), merged with the key's overlapping sessions by the aggregation
//! ```
//!
//! `window_time` is `window_end - 1 ms`, the last instant inside the window, as in Flink.
//!
//! A window over processing time (`DESCRIPTOR` names a table's `PROCTIME()`
//! column, or a view's `PROCTIME() AS p_time` column) assigns each row by the
//! wall clock as its batch is read, and closes on the clock
//! ([`WindowTvf::processing_clock`]):
//!
//! ```text
//!   CREATE VIEW B AS SELECT *, PROCTIME() AS p_time FROM nexmark.bid;
//!   TUMBLE(TABLE B, DESCRIPTOR(p_time), INTERVAL '10' SECOND)
//!     ──▶ WindowTvf { Tumble(10 s), source nexmark.bid, time p_time, processing time }
//!   row read at 12:00:03.2 ──▶ [12:00:00, 12:00:10)     clock passes 12:00:10 ──▶ the window closes
//! ```

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, TimestampMillisecondArray, UInt32Array};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use arrow::record_batch::RecordBatch;
use sqlparser::ast::{
    Expr, FunctionArg, FunctionArgExpr, FunctionArguments, ObjectName, Query, SetExpr, Spanned,
    TableFactor,
};
use strata_catalog::ddl::{FlinkDialect, TABLE_ARGUMENT, interval_millis};
use strata_catalog::{SourceLocation, TableName};

use crate::error::{PipelineError, Result};
use crate::mention::{TableMention, place};
use crate::watermark::ProcessingClock;

mod legacy;
mod views;

use views::Views;

/// The schema the rewritten query reads window TVF output from.
pub const WINDOW_SCHEMA: &str = "__window";
pub const WINDOW_START: &str = "window_start";
pub const WINDOW_END: &str = "window_end";
pub const WINDOW_TIME: &str = "window_time";

/// Which windows a row belongs to; sizes in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WindowKind {
    Tumble { size: i64 },
    Hop { slide: i64, size: i64 },
    Cumulate { step: i64, size: i64 },
    Session { gap: i64 },
}

/// A window TVF in a pipeline's FROM clause.
#[derive(Debug, Clone, PartialEq)]
pub struct WindowTvf {
    pub kind: WindowKind,
    pub source: TableMention,
    /// The event-time column named in `DESCRIPTOR(…)`.
    pub time_column: String,
    pub time_location: SourceLocation,
    /// `SESSION(TABLE t PARTITION BY k, …)`: the keys sessions are kept per.
    pub partition_by: Vec<String>,
    /// `time_column` is a `PROCTIME()` column: rows fall into windows by the
    /// wall clock as they are read, and the clock closes the windows.
    pub processing_time: bool,
}

impl WindowTvf {
    /// The name the rewritten query reads the windowed rows from.
    pub fn relation(&self) -> TableName {
        TableName::new(
            WINDOW_SCHEMA,
            format!("{}__{}", self.source.table.space, self.source.table.name),
        )
    }

    /// The source's columns followed by `window_start`, `window_end` and `window_time`.
    pub fn schema(source: &Schema) -> SchemaRef {
        let mut fields = crate::batch::nullable_fields(source);
        for name in [WINDOW_START, WINDOW_END, WINDOW_TIME] {
            fields.push(Field::new(name, timestamp_ms(), false));
        }
        Arc::new(Schema::new(fields))
    }

    /// The windows (start, end) an event time belongs to, for every kind but SESSION,
    /// whose window is `[t, t + gap)` until the aggregation merges it.
    pub fn windows_of(&self, time: i64) -> Vec<(i64, i64)> {
        let mut windows = Vec::new();
        self.each_window(time, |start, end| windows.push((start, end)));
        windows
    }

    /// Calls `f` with each window (start, end) `time` belongs to, earliest first,
    /// without allocating.
    pub fn each_window(&self, time: i64, mut f: impl FnMut(i64, i64)) {
        match self.kind {
            WindowKind::Tumble { size } => {
                let start = time - time.rem_euclid(size);
                f(start, start + size);
            }
            WindowKind::Hop { slide, size } => {
                let last = time - time.rem_euclid(slide);
                let mut start = last - (size - 1) / slide * slide;
                while start <= last {
                    if start > time - size {
                        f(start, start + size);
                    }
                    start += slide;
                }
            }
            WindowKind::Cumulate { step, size } => {
                let start = time - time.rem_euclid(size);
                for k in 1..=size / step {
                    if start + k * step > time {
                        f(start, start + k * step);
                    }
                }
            }
            WindowKind::Session { gap } => f(time, time + gap),
        }
    }

    /// The clock that closes a window over processing time (none over event
    /// time), stepping by the instants its windows can end at: the window's
    /// size, slide or step; for SESSION windows, which end anywhere,
    /// `session_tick_ms`. Its windows end at most their size (or gap) past a row.
    pub fn processing_clock(&self, session_tick_ms: i64, now_ms: i64) -> Option<ProcessingClock> {
        if !self.processing_time {
            return None;
        }
        let (tick, reach) = match self.kind {
            WindowKind::Tumble { size } => (size, size),
            WindowKind::Hop { slide, size } => (slide, size),
            WindowKind::Cumulate { step, size } => (step, size),
            WindowKind::Session { gap } => (session_tick_ms, gap),
        };
        Some(ProcessingClock::new(tick, reach, now_ms))
    }

    /// One row per (row, window): the batch's columns, then the window columns.
    /// Rows whose event time is NULL belong to no window; they are returned apart.
    /// Over processing time, every row of the batch has the time it is read.
    pub fn assign(&self, batch: &RecordBatch, schema: &SchemaRef) -> Result<Assigned> {
        let times = match self.processing_time {
            true => {
                TimestampMillisecondArray::from_value(crate::watermark::now_ms(), batch.num_rows())
            }
            false => event_times(batch, &self.time_column)?,
        };
        let mut origins = Vec::with_capacity(batch.num_rows());
        let mut starts = Vec::with_capacity(batch.num_rows());
        let mut ends = Vec::with_capacity(batch.num_rows());
        let mut without_time = Vec::new();
        for row in 0..batch.num_rows() {
            if times.is_null(row) {
                without_time.push(row);
                continue;
            }
            for (start, end) in self.windows_of(times.value(row)) {
                origins.push(row as u32);
                starts.push(start);
                ends.push(end);
            }
        }
        let indices = UInt32Array::from(origins.clone());
        let mut columns = batch
            .columns()
            .iter()
            .map(|column| arrow::compute::take(column, &indices, None))
            .collect::<std::result::Result<Vec<ArrayRef>, _>>()?;
        let window_time: Vec<i64> = ends.iter().map(|end| end - 1).collect();
        for values in [starts, ends, window_time] {
            columns.push(Arc::new(TimestampMillisecondArray::from(values)));
        }
        let options =
            arrow::record_batch::RecordBatchOptions::new().with_row_count(Some(indices.len()));
        let columns = columns
            .into_iter()
            .zip(schema.fields())
            .map(|(column, field)| crate::batch::strict_cast(&column, field.data_type()))
            .collect::<Result<Vec<_>>>()?;
        Ok(Assigned {
            batch: RecordBatch::try_new_with_options(schema.clone(), columns, &options)?,
            origins: origins.into_iter().map(|row| row as usize).collect(),
            without_time,
        })
    }
}

/// Rows assigned to their windows.
#[derive(Debug)]
pub struct Assigned {
    pub batch: RecordBatch,
    /// For each row of `batch`, the input row it came from.
    pub origins: Vec<usize>,
    /// Input rows with no event time.
    pub without_time: Vec<usize>,
}

pub fn timestamp_ms() -> DataType {
    DataType::Timestamp(TimeUnit::Millisecond, None)
}

/// A column of event times, in milliseconds since the epoch.
pub fn event_times(batch: &RecordBatch, column: &str) -> Result<TimestampMillisecondArray> {
    let values = batch.column_by_name(column).ok_or_else(|| {
        PipelineError::Evaluation(format!("the event-time column {column} is missing"))
    })?;
    let millis = arrow::compute::cast(values, &timestamp_ms())?;
    Ok(millis
        .as_any()
        .downcast_ref::<TimestampMillisecondArray>()
        .expect("cast to milliseconds")
        .clone())
}

/// A window TVF found in a query, and how the query uses it.
#[derive(Debug, Clone, PartialEq)]
pub struct Extracted {
    pub tvf: WindowTvf,
    /// The same window over a second table, whose results the query joins
    /// with the first's (a window join, Nexmark's q8).
    pub second: Option<WindowTvf>,
    /// The TVF is not the only table of the outer FROM: it is joined, or in a
    /// subquery, and the query runs window by window (see [`crate::aligned`]).
    pub aligned: bool,
}

/// Finds the window TVFs (and older group windows) in the query and replaces
/// each with a plain table reference to [`WindowTvf::relation`]. Returns
/// `None` when there is none. Several TVFs must be the same window, over one
/// table or two (a window join).
pub fn extract(query: &mut Query, file: &str) -> Result<Option<Extracted>> {
    let views = Views::of(query);
    let extracted = extract_tvfs(query, file, &views)?;
    views.drop_consumed(query);
    Ok(extracted)
}

fn extract_tvfs(query: &mut Query, file: &str, views: &Views) -> Result<Option<Extracted>> {
    if let SetExpr::Select(select) = query.body.as_mut()
        && let Some(tvf) = legacy::extract_group_window(select, file, views)?
    {
        return Ok(Some(Extracted {
            tvf,
            second: None,
            aligned: false,
        }));
    }
    if let SetExpr::Select(select) = query.body.as_mut()
        && let [table] = select.from.as_mut_slice()
        && table.joins.is_empty()
        && let TableFactor::TableFunction { expr, alias } = &table.relation
    {
        let (tvf, view) = parse_tvf(expr, file, views)?;
        table.relation = plain_table(&tvf.relation(), alias.clone().or(view));
        return Ok(Some(Extracted {
            tvf,
            second: None,
            aligned: false,
        }));
    }
    let mut found: Vec<(WindowTvf, SourceLocation)> = Vec::new();
    replace_in_query(query, file, views, &mut found)?;
    let Some((first, _)) = found.first().cloned() else {
        return Ok(None);
    };
    let mut second: Option<WindowTvf> = None;
    for (other, at) in &found[1..] {
        let same_table = other.source.table == first.source.table;
        let seen = match &second {
            _ if same_table => &first,
            Some(second) if second.source.table == other.source.table => second,
            Some(_) => {
                return Err(invalid(
                    at.clone(),
                    "a pipeline windows at most two tables (a window join of two streams)"
                        .to_string(),
                    "window each table in a pipeline of its own, and join their results in the next",
                ));
            }
            None => {
                second = Some(other.clone());
                other
            }
        };
        if other.kind != first.kind
            || other.time_column != seen.time_column
            || other.partition_by != seen.partition_by
        {
            return Err(invalid(
                at.clone(),
                "the windows of one pipeline must be the same window (a window join joins equal windows of two tables)"
                    .to_string(),
                "window each table in a pipeline of its own, and join their results in the next",
            ));
        }
    }
    Ok(Some(Extracted {
        tvf: first,
        second,
        aligned: true,
    }))
}

fn replace_in_query(
    query: &mut Query,
    file: &str,
    views: &Views,
    found: &mut Vec<(WindowTvf, SourceLocation)>,
) -> Result<()> {
    if let Some(with) = query.with.as_mut() {
        for cte in &mut with.cte_tables {
            replace_in_query(&mut cte.query, file, views, found)?;
        }
    }
    replace_in_set(query.body.as_mut(), file, views, found)
}

fn replace_in_set(
    body: &mut SetExpr,
    file: &str,
    views: &Views,
    found: &mut Vec<(WindowTvf, SourceLocation)>,
) -> Result<()> {
    match body {
        SetExpr::Select(select) => {
            if let Some(tvf) = legacy::extract_group_window(select, file, views)? {
                let at = tvf.time_location.clone();
                found.push((tvf, at));
                return Ok(());
            }
            for table in &mut select.from {
                replace_in_factor(&mut table.relation, file, views, found)?;
                for join in &mut table.joins {
                    replace_in_factor(&mut join.relation, file, views, found)?;
                }
            }
            Ok(())
        }
        SetExpr::Query(query) => replace_in_query(query, file, views, found),
        SetExpr::SetOperation { left, right, .. } => {
            replace_in_set(left, file, views, found)?;
            replace_in_set(right, file, views, found)
        }
        _ => Ok(()),
    }
}

fn replace_in_factor(
    factor: &mut TableFactor,
    file: &str,
    views: &Views,
    found: &mut Vec<(WindowTvf, SourceLocation)>,
) -> Result<()> {
    match factor {
        TableFactor::TableFunction { expr, alias } => {
            let (tvf, view) = parse_tvf(expr, file, views)?;
            let at = location(file, expr);
            *factor = plain_table(&tvf.relation(), alias.clone().or(view));
            found.push((tvf, at));
            Ok(())
        }
        TableFactor::Derived { subquery, .. } => replace_in_query(subquery, file, views, found),
        TableFactor::NestedJoin {
            table_with_joins, ..
        } => {
            replace_in_factor(&mut table_with_joins.relation, file, views, found)?;
            for join in &mut table_with_joins.joins {
                replace_in_factor(&mut join.relation, file, views, found)?;
            }
            Ok(())
        }
        _ => Ok(()),
    }
}

fn plain_table(name: &TableName, alias: Option<sqlparser::ast::TableAlias>) -> TableFactor {
    let sql = format!("SELECT * FROM {}.{}", name.space, name.name);
    let statement = sqlparser::parser::Parser::parse_sql(&FlinkDialect, &sql)
        .expect("a plain SELECT parses")
        .remove(0);
    let sqlparser::ast::Statement::Query(query) = statement else {
        unreachable!("parsed a SELECT")
    };
    let SetExpr::Select(select) = *query.body else {
        unreachable!("parsed a SELECT")
    };
    let mut relation = select.from[0].relation.clone();
    if let TableFactor::Table { alias: slot, .. } = &mut relation {
        *slot = alias;
    }
    relation
}

/// The window TVF `expr` calls and, when it reads a view, the view's name as
/// the alias of its rows (`B.bidder` after `TUMBLE(TABLE B, …)`, as Flink reads it).
fn parse_tvf(
    expr: &Expr,
    file: &str,
    views: &Views,
) -> Result<(WindowTvf, Option<sqlparser::ast::TableAlias>)> {
    let at = location(file, expr);
    let hint = "write TABLE(TUMBLE(TABLE space.t, DESCRIPTOR(ts), INTERVAL '1' MINUTE)), HOP(…, slide, size), CUMULATE(…, step, max size) or SESSION(TABLE space.t [PARTITION BY k], DESCRIPTOR(ts), gap)";
    let Expr::Function(function) = expr else {
        return Err(invalid(
            at,
            "TABLE(…) in FROM must call a window function".to_string(),
            hint,
        ));
    };
    let name = function.name.to_string().to_ascii_uppercase();
    let args = function_args(&function.args);
    let intervals = |from: usize| -> Result<Vec<i64>> {
        args.iter()
            .skip(from)
            .map(|arg| match arg {
                Expr::Interval(interval) => interval_millis(interval)
                    .filter(|&ms| ms > 0)
                    .ok_or_else(|| {
                        invalid(
                            location(file, arg),
                            format!("{arg} is not a positive interval of milliseconds to days"),
                            "write INTERVAL 'n' SECOND|MINUTE|HOUR|DAY",
                        )
                    }),
                other => Err(invalid(
                    location(file, other),
                    format!("{name} expects an INTERVAL here, not {other}"),
                    hint,
                )),
            })
            .collect()
    };
    let arity = |n: usize| -> Result<()> {
        if args.len() == n {
            Ok(())
        } else {
            Err(invalid(
                at.clone(),
                format!("{name} takes {n} arguments, here it has {}", args.len()),
                hint,
            ))
        }
    };
    let kind = match name.as_str() {
        "TUMBLE" => {
            arity(3)?;
            WindowKind::Tumble {
                size: intervals(2)?[0],
            }
        }
        "HOP" => {
            arity(4)?;
            let sizes = intervals(2)?;
            WindowKind::Hop {
                slide: sizes[0],
                size: sizes[1],
            }
        }
        "CUMULATE" => {
            arity(4)?;
            let sizes = intervals(2)?;
            if sizes[1] % sizes[0] != 0 {
                return Err(invalid(
                    at,
                    "CUMULATE's max size must be a whole number of steps".to_string(),
                    "e.g. CUMULATE(…, INTERVAL '1' MINUTE, INTERVAL '1' HOUR)",
                ));
            }
            WindowKind::Cumulate {
                step: sizes[0],
                size: sizes[1],
            }
        }
        "SESSION" => {
            arity(3)?;
            WindowKind::Session {
                gap: intervals(2)?[0],
            }
        }
        _ => {
            return Err(invalid(at, format!("unknown window function {name}"), hint));
        }
    };
    let (source, partition_by, view) =
        table_argument(args.first().copied(), file, &at, &name, views)?;
    let proctime = view.as_ref().and_then(|view| view.proctime.clone());
    if !partition_by.is_empty() && !matches!(kind, WindowKind::Session { .. }) {
        return Err(invalid(
            at,
            format!("PARTITION BY only applies to SESSION windows, not {name}"),
            "group by the keys instead",
        ));
    }
    let descriptor = args.get(1).copied();
    let (time_column, time_location) = match descriptor {
        Some(Expr::Function(d)) if d.name.to_string().eq_ignore_ascii_case("DESCRIPTOR") => {
            match function_args(&d.args).as_slice() {
                [Expr::Identifier(column)] => {
                    (column.value.clone(), place(file, column.span.start))
                }
                _ => {
                    return Err(invalid(
                        location(file, descriptor.expect("matched")),
                        "DESCRIPTOR takes the event-time column".to_string(),
                        "write DESCRIPTOR(order_time)",
                    ));
                }
            }
        }
        other => {
            return Err(invalid(
                other.map_or(at, |e| location(file, e)),
                format!("{name}'s second argument is DESCRIPTOR(<event-time column>)"),
                hint,
            ));
        }
    };
    let tvf = WindowTvf {
        kind,
        source,
        processing_time: proctime.as_deref() == Some(time_column.as_str()),
        time_column,
        time_location,
        partition_by,
    };
    Ok((tvf, view.map(|view| view.alias())))
}

/// The table a window TVF reads, the keys that partition its sessions, and
/// the view it names, if it names one.
fn table_argument(
    arg: Option<&Expr>,
    file: &str,
    at: &SourceLocation,
    name: &str,
    views: &Views,
) -> Result<(TableMention, Vec<String>, Option<views::ViewInput>)> {
    let table_args = match arg {
        Some(Expr::Function(f)) if f.name.to_string() == TABLE_ARGUMENT => function_args(&f.args),
        _ => {
            return Err(invalid(
                at.clone(),
                format!("{name}'s first argument is TABLE space.table"),
                "e.g. TUMBLE(TABLE shop.dwd_orders, DESCRIPTOR(order_time), INTERVAL '1' MINUTE)",
            ));
        }
    };
    let Some((Expr::CompoundIdentifier(parts), keys)) = table_args.split_first() else {
        unreachable!("the dialect builds TABLE(name, keys…)")
    };
    let start = parts
        .first()
        .map_or(sqlparser::tokenizer::Location::new(1, 1), |p| p.span.start);
    let mention_at = place(file, start);
    let (table, view) = match parts.as_slice() {
        [space, table] => (TableName::new(&space.value, &table.value), None),
        [view] if views.names(&view.value) => {
            let input = views.window_input(&view.value, &mention_at)?;
            (input.table.clone(), Some(input))
        }
        _ => {
            return Err(invalid(
                mention_at,
                format!(
                    "table {} must be named SPACE.TABLE, or be a view of the pipeline",
                    ObjectName::from(parts.clone())
                ),
                "qualify it with its space, e.g. shop.dwd_orders",
            ));
        }
    };
    let keys = keys
        .iter()
        .filter_map(|key| match key {
            Expr::Identifier(ident) => Some(ident.value.clone()),
            _ => None,
        })
        .collect();
    Ok((
        TableMention {
            table,
            location: mention_at,
        },
        keys,
        view,
    ))
}

fn function_args(args: &FunctionArguments) -> Vec<&Expr> {
    match args {
        FunctionArguments::List(list) => list
            .args
            .iter()
            .filter_map(|arg| match arg {
                FunctionArg::Unnamed(FunctionArgExpr::Expr(expr))
                | FunctionArg::Named {
                    arg: FunctionArgExpr::Expr(expr),
                    ..
                } => Some(expr),
                _ => None,
            })
            .collect(),
        _ => Vec::new(),
    }
}

fn location(file: &str, expr: &Expr) -> SourceLocation {
    place(file, expr.span().start)
}

fn invalid(location: SourceLocation, message: String, hint: &str) -> PipelineError {
    PipelineError::Invalid {
        location,
        message,
        hint: Some(hint.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tvf(kind: WindowKind) -> WindowTvf {
        WindowTvf {
            kind,
            source: TableMention {
                table: TableName::new("s", "t"),
                location: place("f", sqlparser::tokenizer::Location::new(1, 1)),
            },
            time_column: "ts".to_string(),
            time_location: place("f", sqlparser::tokenizer::Location::new(1, 1)),
            partition_by: Vec::new(),
            processing_time: false,
        }
    }

    #[test]
    fn rows_fall_into_the_windows_flink_assigns() {
        assert_eq!(
            tvf(WindowKind::Tumble { size: 60 }).windows_of(125),
            vec![(120, 180)]
        );
        assert_eq!(
            tvf(WindowKind::Tumble { size: 60 }).windows_of(-1),
            vec![(-60, 0)]
        );
        assert_eq!(
            tvf(WindowKind::Hop {
                slide: 30,
                size: 90
            })
            .windows_of(100),
            vec![(30, 120), (60, 150), (90, 180)]
        );
        assert_eq!(
            tvf(WindowKind::Cumulate { step: 20, size: 60 }).windows_of(125),
            vec![(120, 140), (120, 160), (120, 180)]
        );
        assert_eq!(
            tvf(WindowKind::Cumulate { step: 20, size: 60 }).windows_of(150),
            vec![(120, 160), (120, 180)]
        );
    }
}
