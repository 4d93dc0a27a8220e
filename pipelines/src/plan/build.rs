//! From a compiled pipeline to its [`StreamPlan`]: one operator per step,
//! each with the stream it emits.

use std::collections::HashMap;
use std::sync::Arc;

use arrow::datatypes::{Field, Schema, SchemaRef};
use strata_catalog::TableDef;

use super::{Changelog, OperatorKind, PlanColumn, PlanOperator, StateInfo, StreamPlan};
use crate::state::schema_fingerprint;
use crate::transform::{CompiledPlan, Step};
use crate::validate::{ValidPipeline, is_changelog};

/// The id of the operator whose state is the aggregation's groups.
pub const AGGREGATE: &str = "aggregate";
/// The id of a window-aligned query's operator.
pub const WINDOW_ALIGNED: &str = "window-aligned";
/// The id of an interval join.
pub const INTERVAL_JOIN: &str = "interval-join";

/// The id of the `ordinal`th LAG (from 1).
pub fn lag_id(ordinal: usize) -> String {
    format!("lag-{ordinal}")
}

/// The id of the lookup join of the dimension the SELECT calls `alias`.
pub fn lookup_id(alias: &str, temporal: bool) -> String {
    let kind = if temporal { "temporal-join" } else { "lookup" };
    format!("{kind}-{}", alias.to_ascii_lowercase())
}

/// The stream an operator emits, as the next one reads it.
#[derive(Debug, Clone)]
struct Edge {
    from: String,
    schema: SchemaRef,
    changelog: Changelog,
    key: Vec<String>,
    watermark: Option<String>,
}

#[derive(Default)]
struct Builder {
    operators: Vec<PlanOperator>,
    ordinals: HashMap<&'static str, usize>,
    lags: usize,
    /// Whether an operator already declared the rows lookup joins set aside.
    retries_declared: bool,
}

/// The operator graph of a pipeline whose SELECT compiled to `compiled`.
pub fn build(valid: &ValidPipeline, compiled: &CompiledPlan) -> StreamPlan {
    let mut builder = Builder::default();
    let mut streams = valid.streams();
    let source = streams.next().expect("a valid pipeline reads a stream");
    let mut edge = builder.source(source, "source");
    let right = match (compiled.right_steps(), streams.next()) {
        (Some(steps), Some(right)) => {
            let mut right = builder.source(right, "source-right");
            for step in steps {
                right = builder.step(step, right, None, source);
            }
            Some(right)
        }
        _ => None,
    };
    if let Some((tvf, schema)) = compiled.window() {
        let mut emits = edge.clone();
        emits.schema = schema.clone();
        edge = builder.add(
            "window".to_string(),
            OperatorKind::WindowAssign,
            format!("{:?} over {}", tvf.kind, tvf.time_column),
            &[&edge],
            emits,
            None,
        );
    }
    if let Some(aligned) = &compiled.aligned {
        let mut emits = edge.clone();
        emits.schema = valid.target.schema.clone();
        edge = builder.add(
            WINDOW_ALIGNED.to_string(),
            OperatorKind::WindowAligned,
            aligned.describe(),
            &[&edge],
            emits,
            Some(StateInfo {
                holds: "the rows of windows not evaluated yet".to_string(),
                fingerprint: aligned.state_fingerprint(),
            }),
        );
    }
    for step in compiled.pre_steps() {
        edge = builder.step(step, edge, right.as_ref(), source);
    }
    if let Some(aggregate) = &compiled.aggregate {
        let updates = aggregate.updates() || edge.changelog != Changelog::AppendOnly;
        let (kind, holds, watermark) = match aggregate.window {
            Some(_) => (
                OperatorKind::WindowAggregate,
                "each open window's groups and their accumulators",
                Some("window_time".to_string()),
            ),
            None => (
                OperatorKind::GroupAggregate,
                "every group's accumulators",
                None,
            ),
        };
        let emits = Edge {
            from: String::new(),
            schema: aggregate.output_schema().clone(),
            changelog: if updates {
                Changelog::Upsert
            } else {
                Changelog::AppendOnly
            },
            key: if updates {
                aggregate.group_columns()
            } else {
                Vec::new()
            },
            watermark,
        };
        edge = builder.add(
            AGGREGATE.to_string(),
            kind,
            aggregate.describe(),
            &[&edge],
            emits,
            Some(StateInfo {
                holds: holds.to_string(),
                fingerprint: aggregate.state_shape().join("\n"),
            }),
        );
        for step in compiled.post_steps() {
            edge = builder.step(step, edge, None, source);
        }
    }
    builder.sink(valid, edge);
    StreamPlan {
        pipeline: valid.pipeline.name.clone(),
        target: valid.target.name.to_string(),
        operators: builder.operators,
    }
}

impl Builder {
    fn ordinal(&mut self, prefix: &'static str) -> String {
        let next = self.ordinals.entry(prefix).or_default();
        *next += 1;
        format!("{prefix}-{next}")
    }

    fn add(
        &mut self,
        id: String,
        kind: OperatorKind,
        detail: String,
        inputs: &[&Edge],
        emits: Edge,
        state: Option<StateInfo>,
    ) -> Edge {
        self.operators.push(PlanOperator {
            id: id.clone(),
            kind,
            detail,
            inputs: inputs.iter().map(|edge| edge.from.clone()).collect(),
            changelog: emits.changelog,
            key: emits.key.clone(),
            watermark: emits.watermark.clone(),
            schema: emits
                .schema
                .fields()
                .iter()
                .map(|f| PlanColumn {
                    name: f.name().clone(),
                    data_type: f.data_type().to_string(),
                    nullable: f.is_nullable(),
                })
                .collect(),
            state,
        });
        Edge { from: id, ..emits }
    }

    fn source(&mut self, table: &TableDef, id: &str) -> Edge {
        let (changelog, key) = match is_changelog(table) {
            true => (Changelog::Retracting, table.primary_key.clone()),
            false => (Changelog::AppendOnly, Vec::new()),
        };
        let mut detail = format!("{} {}", table.kind.connector(), table.name);
        if let Some(watermark) = &table.watermark {
            detail.push_str(&format!(", WATERMARK FOR {}", watermark.expression));
        }
        let emits = Edge {
            from: String::new(),
            schema: table.schema.clone(),
            changelog,
            key,
            watermark: table.watermark.as_ref().map(|w| w.column.clone()),
        };
        self.add(
            id.to_string(),
            OperatorKind::Source,
            detail,
            &[],
            emits,
            None,
        )
    }

    fn step(&mut self, step: &Step, input: Edge, right: Option<&Edge>, source: &TableDef) -> Edge {
        let mut emits = input.clone();
        let (id, kind, detail, state) = match step {
            Step::Select(indices) => {
                emits.schema = Arc::new(
                    input
                        .schema
                        .project(indices)
                        .expect("the compiler chose columns of its input"),
                );
                let names: Vec<&str> = emits
                    .schema
                    .fields()
                    .iter()
                    .map(|f| f.name().as_str())
                    .collect();
                let detail = format!("columns {}", names.join(", "));
                (self.ordinal("project"), OperatorKind::Project, detail, None)
            }
            Step::Filter(predicate) => (
                self.ordinal("filter"),
                OperatorKind::Filter,
                format!("WHERE {predicate}"),
                None,
            ),
            Step::Project { exprs, schema } => {
                emits.schema = schema.clone();
                let items: Vec<String> = exprs
                    .iter()
                    .zip(schema.fields())
                    .map(|(expr, field)| {
                        let expr = expr.to_string();
                        match expr.strip_prefix(field.name().as_str()) {
                            Some(rest) if rest.starts_with('@') => field.name().clone(),
                            _ => format!("{expr} AS {}", field.name()),
                        }
                    })
                    .collect();
                (
                    self.ordinal("project"),
                    OperatorKind::Project,
                    items.join(", "),
                    None,
                )
            }
            Step::Unnest(unnest) => {
                let fields = unnest.schema.fields();
                emits.schema = Arc::new(Schema::new(fields[..fields.len() - 1].to_vec()));
                (
                    self.ordinal("unnest"),
                    OperatorKind::Unnest,
                    "one row per element of the unnested lists".to_string(),
                    None,
                )
            }
            Step::Lag(lag) => {
                let mut fields: Vec<Field> = input
                    .schema
                    .fields()
                    .iter()
                    .map(|f| f.as_ref().clone())
                    .collect();
                fields.push(Field::new("__lag", lag.output_type().clone(), true));
                emits.schema = Arc::new(Schema::new(fields));
                self.lags += 1;
                let state = StateInfo {
                    holds: "the last value of each partition".to_string(),
                    fingerprint: lag.shape(),
                };
                (
                    lag_id(self.lags),
                    OperatorKind::Lag,
                    lag.shape(),
                    Some(state),
                )
            }
            Step::Lookup(join) => {
                emits.schema = join.output_schema().clone();
                let temporal = join.versioned();
                let state = match temporal {
                    Some(table) => Some(StateInfo {
                        holds: format!(
                            "the versions of {} and the probe rows waiting for them",
                            table.name
                        ),
                        fingerprint: format!(
                            "versions of {} by ({}) at {}: {}; waiting rows {}",
                            table.name,
                            table.primary_key.join(", "),
                            table.time_column,
                            schema_fingerprint(&table.schema),
                            schema_fingerprint(&source.schema)
                        ),
                    }),
                    None if join.retries() && !self.retries_declared => {
                        self.retries_declared = true;
                        Some(StateInfo {
                            holds: "the source rows set aside for a retry".to_string(),
                            fingerprint: format!(
                                "rows set aside {}",
                                schema_fingerprint(&source.schema)
                            ),
                        })
                    }
                    None => None,
                };
                let (kind, watermark) = match temporal {
                    Some(table) => (
                        OperatorKind::TemporalJoin,
                        input
                            .watermark
                            .as_ref()
                            .map(|w| format!("min({w}, {}.{})", table.name, table.time_column)),
                    ),
                    None => (OperatorKind::LookupJoin, input.watermark.clone()),
                };
                emits.watermark = watermark;
                (
                    lookup_id(&join.alias, temporal.is_some()),
                    kind,
                    join.describe(),
                    state,
                )
            }
            Step::Interval(join) => {
                emits.schema = join.output_schema().clone();
                emits.watermark = match (&input.watermark, right.and_then(|r| r.watermark.as_ref()))
                {
                    (Some(left), Some(right)) => Some(format!("min({left}, {right})")),
                    (left, _) => left.clone(),
                };
                let state = StateInfo {
                    holds: "each stream's rows within the band of the other's watermark"
                        .to_string(),
                    fingerprint: join.state_fingerprint(),
                };
                let inputs: Vec<&Edge> = std::iter::once(&input).chain(right).collect();
                return self.add(
                    INTERVAL_JOIN.to_string(),
                    OperatorKind::IntervalJoin,
                    join.describe(),
                    &inputs,
                    emits,
                    Some(state),
                );
            }
        };
        self.add(id, kind, detail, &[&input], emits, state)
    }

    fn sink(&mut self, valid: &ValidPipeline, input: Edge) {
        let target = &valid.target;
        let upserts = input.changelog != Changelog::AppendOnly;
        let emits = Edge {
            from: String::new(),
            schema: target.schema.clone(),
            changelog: if upserts {
                Changelog::Upsert
            } else {
                Changelog::AppendOnly
            },
            key: if upserts {
                target.primary_key.clone()
            } else {
                Vec::new()
            },
            watermark: None,
        };
        let mode = match upserts {
            true => format!("upsert by ({})", target.primary_key.join(", ")),
            false => "append".to_string(),
        };
        self.add(
            "sink".to_string(),
            OperatorKind::Sink,
            format!(
                "{} {}, {mode}, exactly once",
                target.kind.connector(),
                target.name
            ),
            &[&input],
            emits,
            None,
        );
    }
}
