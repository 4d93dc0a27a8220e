//! From a compiled pipeline to its [`StreamPlan`]: one operator per step,
//! each with the stream it emits.

use std::collections::HashMap;

use arrow::datatypes::SchemaRef;
use strata_catalog::TableDef;

use super::{Changelog, OperatorKind, PlanColumn, PlanOperator, StateInfo, StreamPlan};
use crate::operator::{InputStream, Operator, RunAgain};
use crate::state::schema_fingerprint;
use crate::transform::CompiledPlan;
use crate::validate::{ValidPipeline, is_changelog};

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
}

/// The operator graph of a pipeline whose SELECT compiled to `compiled`.
pub fn build(valid: &ValidPipeline, compiled: &CompiledPlan) -> StreamPlan {
    let mut builder = Builder::default();
    let source = valid
        .streams()
        .next()
        .expect("a valid pipeline reads a stream");
    let mut edge = builder.source(source, "source");
    // Each stream joined to the source, through its own steps, and the operator it enters.
    let mut seconds: Vec<(usize, Edge)> = Vec::new();
    for (n, second) in compiled.seconds().iter().enumerate() {
        let Some(table) = valid.streams().find(|t| t.name == second.table) else {
            continue;
        };
        let id = match n {
            0 => "source-right".to_string(),
            n => format!("source-right-{}", n + 1),
        };
        let mut right = builder.source(table, &id);
        for step in &second.steps {
            right = builder.operator(&step.id, step.operator.as_ref(), right, &[], None);
        }
        seconds.push((second.at, right));
    }
    if let Some((tvf, schema)) = compiled.window() {
        let mut emits = edge.clone();
        emits.schema = schema.clone();
        edge = builder.add(
            "window".to_string(),
            OperatorKind::WindowAssign,
            match tvf.processing_time {
                true => format!("{:?} over processing time ({})", tvf.kind, tvf.time_column),
                false => format!("{:?} over {}", tvf.kind, tvf.time_column),
            },
            &[&edge],
            emits,
            None,
        );
    }
    let held = held_by_the_runner(compiled, source);
    for (at, step) in compiled.pre_operators().iter().enumerate() {
        let state = held.get(&step.id).cloned();
        let entering: Vec<&Edge> = seconds
            .iter()
            .filter(|(enters, _)| *enters == at)
            .map(|(_, edge)| edge)
            .collect();
        edge = builder.operator(&step.id, step.operator.as_ref(), edge, &entering, state);
    }
    for (id, step) in compiled.post_steps() {
        edge = builder.operator(id, step, edge, &[], None);
    }
    builder.sink(valid, edge);
    StreamPlan {
        pipeline: valid.pipeline.name.clone(),
        target: valid.target.name.to_string(),
        operators: builder.operators,
    }
}

impl Builder {
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
            refused: None,
        });
        Edge { from: id, ..emits }
    }

    /// Marks the operator added last as unable to read its input, with why.
    fn refuse_last(&mut self, refused: Option<String>) {
        if let Some(last) = self.operators.last_mut() {
            last.refused = refused;
        }
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

    /// An operator of the compiled plan, reading `input` (and `seconds`, the
    /// streams that enter it, if it reads a second input); `held` is state
    /// the runner keeps for it.
    fn operator(
        &mut self,
        id: &str,
        operator: &dyn Operator,
        input: Edge,
        seconds: &[&Edge],
        held: Option<StateInfo>,
    ) -> Edge {
        let described = operator.describe(&InputStream {
            schema: input.schema.clone(),
            watermark: input.watermark.clone(),
        });
        // An operator that reads two streams emits the changes of both.
        let seconds = match operator.reads_second_stream() {
            true => seconds,
            false => &[],
        };
        let reads = seconds.iter().fold(input.changelog, |changelog, second| {
            changelog.max(second.changelog)
        });
        let (changelog, key) = operator.emits(reads, &input.key);
        let emits = Edge {
            from: input.from.clone(),
            schema: described.schema,
            changelog,
            key,
            watermark: described.watermark,
        };
        let inputs: Vec<&Edge> = std::iter::once(&input)
            .chain(seconds.iter().copied())
            .collect();
        let refused = inputs
            .iter()
            .find_map(|edge| operator.accepts(edge.changelog).err());
        let edge = self.add(
            id.to_string(),
            operator.kind(),
            described.detail,
            &inputs,
            emits,
            described.state.or(held),
        );
        self.refuse_last(refused);
        edge
    }

    fn sink(&mut self, valid: &ValidPipeline, input: Edge) {
        let target = &valid.target;
        // A target with a key upserts every change by it; one without takes
        // an equal row back for each retraction (if its connector can).
        let (changelog, key, mode) = match input.changelog {
            Changelog::AppendOnly => (Changelog::AppendOnly, Vec::new(), "append".to_string()),
            Changelog::Retracting if target.primary_key.is_empty() => (
                Changelog::Retracting,
                Vec::new(),
                "rows taken back by retractions".to_string(),
            ),
            _ => (
                Changelog::Upsert,
                target.primary_key.clone(),
                format!("upsert by ({})", target.primary_key.join(", ")),
            ),
        };
        let emits = Edge {
            from: String::new(),
            schema: target.schema.clone(),
            changelog,
            key,
            watermark: None,
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

/// The state the runner keeps for operators, under the ids it checkpoints
/// it by: the source rows set aside to run again (one buffer for each moment
/// they run again, under the first operator that declares it), with the
/// versions of the plan's changelog input beside the rows that wait for them.
fn held_by_the_runner(compiled: &CompiledPlan, source: &TableDef) -> HashMap<String, StateInfo> {
    let mut held = HashMap::new();
    let waiting = compiled.rerun_by(RunAgain::AtVersionsWatermark);
    if let (Some(id), Some(table)) = (waiting, compiled.versions_read()) {
        held.insert(
            id.to_string(),
            StateInfo {
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
            },
        );
    }
    if let Some(id) = compiled.rerun_by(RunAgain::AfterDelay) {
        held.insert(
            id.to_string(),
            StateInfo {
                holds: "the source rows set aside for a retry".to_string(),
                fingerprint: format!("rows set aside {}", schema_fingerprint(&source.schema)),
            },
        );
    }
    held
}
