//! Which OVER windows become an [`OverAggregate`]: aggregate functions over
//! one window of the stream's event time, as Flink plans them.
//!
//! ```text
//!   Window node, every expression an aggregate OVER (PARTITION BY … ORDER BY rowtime <frame>)
//!     ──▶ one PARTITION BY, ORDER BY and frame for all (Flink's rule) ──▶ OverAggregate
//!   … ORDER BY PROCTIME() (a processing-time column, read into one: see `arrival`) ──▶ OverAggregate on the clock
//!   ORDER BY another column, DESC; ROWS/RANGE … FOLLOWING; GROUPS ──▶ refused
//! ```

use std::sync::Arc;

use datafusion::common::ScalarValue;
use datafusion::logical_expr::expr::WindowFunction;
use datafusion::logical_expr::{
    Expr, ExprSchemable, LogicalPlan, WindowFrame, WindowFrameBound, WindowFrameUnits,
    WindowFunctionDefinition,
};

use super::{Frame, OverAggregate};
use crate::aggregate::accumulator::{AggFunction, AggregateCall};
use crate::error::Result;
use crate::operator::Operator;
use crate::operator::planner::{OperatorPlanner, PlanContext, window_of};

/// Plans OVER aggregations.
pub struct OverPlanner;

/// The call `expr` makes, if it is an aggregate streams run OVER a window.
fn aggregate_call(expr: &Expr) -> Option<&WindowFunction> {
    let inner = match expr {
        Expr::Alias(alias) => alias.expr.as_ref(),
        other => other,
    };
    match inner {
        Expr::WindowFunction(function) => match &function.fun {
            WindowFunctionDefinition::AggregateUDF(udaf) => {
                let name = udaf.name().to_ascii_lowercase();
                AggFunction::from_name(&name, function.params.distinct)
                    .filter(|kind| *kind != AggFunction::ApproxDistinct)
                    .map(|_| function.as_ref())
            }
            _ => None,
        },
        _ => None,
    }
}

/// An interval literal in milliseconds, if it is one of days and less.
fn interval_ms(value: &ScalarValue) -> Option<i64> {
    match value {
        ScalarValue::IntervalMonthDayNano(Some(v)) if v.months == 0 => {
            Some(i64::from(v.days) * 86_400_000 + v.nanoseconds / 1_000_000)
        }
        ScalarValue::IntervalDayTime(Some(v)) => {
            Some(i64::from(v.days) * 86_400_000 + i64::from(v.milliseconds))
        }
        _ => None,
    }
}

/// The frame, if streams run it: from n rows, an interval or the start, to the current row.
fn frame_of(frame: &WindowFrame) -> std::result::Result<Frame, String> {
    if frame.end_bound != WindowFrameBound::CurrentRow {
        return Err(format!(
            "an OVER frame ending at {} (a stream's rows are emitted once the watermark passes them, before any row FOLLOWING them is known: end the frame at CURRENT ROW, as Flink requires)",
            frame.end_bound
        ));
    }
    let WindowFrameBound::Preceding(start) = &frame.start_bound else {
        return Err(
            "an OVER frame starting at CURRENT ROW (write n PRECEDING or UNBOUNDED PRECEDING)"
                .to_string(),
        );
    };
    match (&frame.units, start) {
        (WindowFrameUnits::Rows, start) if start.is_null() => Ok(Frame::Unbounded { peers: false }),
        (WindowFrameUnits::Range, start) if start.is_null() => Ok(Frame::Unbounded { peers: true }),
        (WindowFrameUnits::Rows, ScalarValue::UInt64(Some(n))) => Ok(Frame::Rows(*n)),
        (WindowFrameUnits::Range, interval) => interval_ms(interval)
            .filter(|&ms| ms >= 0)
            .map(Frame::Range)
            .ok_or_else(|| format!("RANGE BETWEEN {interval} PRECEDING (a RANGE frame over the event time is an INTERVAL of days or less: RANGE BETWEEN INTERVAL '1' HOUR PRECEDING AND CURRENT ROW)")),
        (units, start) => Err(format!("an OVER frame of {units} from {start} PRECEDING")),
    }
}

impl OperatorPlanner for OverPlanner {
    fn input_of<'p>(&self, node: &'p LogicalPlan) -> Option<&'p LogicalPlan> {
        window_of(node, |expr| aggregate_call(expr).is_some()).map(|window| window.input.as_ref())
    }

    fn plan(&self, node: &LogicalPlan, ctx: &PlanContext<'_>) -> Result<Arc<dyn Operator>> {
        let window = window_of(node, |expr| aggregate_call(expr).is_some())
            .expect("input_of matched a window");
        let input = window.input.schema();
        let first = aggregate_call(&window.window_expr[0]).expect("input_of checked the calls");
        let spec = &first.params;
        let (time, processing) = match spec.order_by.as_slice() {
            [order] if order.asc => match &order.expr {
                Expr::Column(column) if column.name == super::arrival::ARRIVAL_TIME => {
                    (column.name.clone(), true)
                }
                Expr::Column(column) if ctx.is_event_time(&column.name) => {
                    (column.name.clone(), false)
                }
                other => {
                    return Err(ctx.unsupported(format!(
                        "an OVER aggregation ORDER BY {other} (streams order OVER windows by a time attribute, ascending, as Flink does: the stream's event time, its WATERMARK FOR column, or its processing time, a `PROCTIME()` column of the table)"
                    )));
                }
            },
            _ => {
                return Err(ctx.unsupported(
                    "an OVER aggregation without ORDER BY a time attribute, ascending (Flink orders OVER windows by the event time or the processing time)".to_string(),
                ));
            }
        };
        let frame = match frame_of(&spec.window_frame).map_err(|why| ctx.unsupported(why))? {
            // Over processing time, Flink aggregates each row with every row
            // read before it, RANGE or ROWS: rows read in one moment are no peers.
            Frame::Unbounded { .. } if processing => Frame::Unbounded { peers: false },
            frame => frame,
        };
        let mut calls = Vec::with_capacity(window.window_expr.len());
        for (index, expr) in window.window_expr.iter().enumerate() {
            let function = aggregate_call(expr).expect("input_of checked the calls");
            let params = &function.params;
            if params.partition_by != spec.partition_by
                || params.order_by != spec.order_by
                || params.window_frame != spec.window_frame
            {
                return Err(ctx.unsupported(
                    "OVER aggregations over different windows in one SELECT (Flink computes every OVER aggregate of a SELECT over the same PARTITION BY, ORDER BY and frame: name the window once, WINDOW w AS (…), or aggregate in two pipelines)".to_string(),
                ));
            }
            let WindowFunctionDefinition::AggregateUDF(udaf) = &function.fun else {
                unreachable!("aggregate_call matched an aggregate");
            };
            let kind = AggFunction::from_name(&udaf.name().to_ascii_lowercase(), params.distinct)
                .expect("aggregate_call knows the function");
            let [arg] = params.args.as_slice() else {
                return Err(ctx.unsupported(format!("{expr} with {} arguments", params.args.len())));
            };
            let input_type = arg
                .get_type(input)
                .map_err(|err| ctx.unsupported(format!("{expr} ({err})")))?;
            let filter = params
                .filter
                .as_ref()
                .map(|filter| ctx.physical(filter, input))
                .transpose()?;
            let output = window
                .schema
                .field(input.fields().len() + index)
                .data_type()
                .clone();
            let call = AggregateCall::new(
                kind,
                ctx.physical(arg, input)?,
                filter,
                input_type.clone(),
                output,
                1,
            )
            .ok_or_else(|| ctx.unsupported(format!("{expr} over {input_type}")))?;
            calls.push(call);
        }
        let partition = spec
            .partition_by
            .iter()
            .map(|expr| {
                let data_type = expr
                    .get_type(input)
                    .map_err(|err| ctx.unsupported(format!("PARTITION BY {expr} ({err})")))?;
                Ok((ctx.physical(expr, input)?, data_type))
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Arc::new(
            OverAggregate::new(
                partition,
                time,
                frame,
                calls,
                Arc::new(input.as_arrow().clone()),
                Arc::new(window.schema.as_arrow().clone()),
            )?
            .on_processing_time(processing)
            .expiring(crate::keyed::Expiry::after(ctx.state_ttl_ms())),
        ))
    }
}
