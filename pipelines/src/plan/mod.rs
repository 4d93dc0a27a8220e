//! A pipeline as a graph of operators over changelog streams: the one
//! description that `strata explain`, the state checkpoints and the run
//! read, built once from the compiled SELECT.
//!
//! ```text
//!   source ──▶ window ──▶ filter-1 ──▶ lookup-u ──▶ aggregate ──▶ project-1 ──▶ sink
//!   append      append     append       append       upsert by     upsert by     upsert by
//!   wm: ts      wm: ts     wm: ts       wm: ts       (city)        (city)        (city)
//!                                                    state: groups, fingerprint
//! ```
//!
//! Every edge carries its schema, its changelog kind (append-only, upsert by
//! key, or retracting: Flink's insert / update-before / update-after /
//! delete), its key and its watermark. An operator that keeps state declares
//! it with the operator's stable id and a fingerprint of what the state is
//! made of: a checkpoint restores an operator's state only under the same id
//! and fingerprint (see [`crate::checkpoint`]).

mod build;
mod render;

use serde::Serialize;

pub use crate::operator::{Changelog, OperatorKind, StateInfo};
pub use build::build;

/// A pipeline's operators, sources first, the sink last; each names its inputs.
#[derive(Debug, Clone, Serialize)]
pub struct StreamPlan {
    pub pipeline: String,
    pub target: String,
    pub operators: Vec<PlanOperator>,
}

/// One operator of a [`StreamPlan`] and the stream it emits.
#[derive(Debug, Clone, Serialize)]
pub struct PlanOperator {
    /// Stable across runs of the same SQL: its kind, and an ordinal or name.
    pub id: String,
    pub kind: OperatorKind,
    /// What it does, in SQL terms.
    pub detail: String,
    /// The operators it reads, by id.
    pub inputs: Vec<String>,
    /// The changelog kind of the stream it emits.
    pub changelog: Changelog,
    /// The columns its changelog is keyed by (empty when append-only).
    pub key: Vec<String>,
    /// The event-time column its output's watermark follows, if any.
    pub watermark: Option<String>,
    pub schema: Vec<PlanColumn>,
    /// The state it keeps across commits, if any.
    pub state: Option<StateInfo>,
    /// Why it cannot read the stream it is given, if it cannot.
    pub refused: Option<String>,
}

/// A column of an edge's schema.
#[derive(Debug, Clone, Serialize)]
pub struct PlanColumn {
    pub name: String,
    #[serde(rename = "type")]
    pub data_type: String,
    pub nullable: bool,
}

impl StreamPlan {
    pub fn operator(&self, id: &str) -> Option<&PlanOperator> {
        self.operators.iter().find(|op| op.id == id)
    }

    /// The operators that cannot read the stream they are given, with why.
    pub fn refusals(&self) -> impl Iterator<Item = (&str, &str)> {
        self.operators
            .iter()
            .filter_map(|op| Some((op.id.as_str(), op.refused.as_deref()?)))
    }

    /// Whether the sink upserts by the target's key (its input is a changelog)
    /// rather than appends.
    pub fn sink_upserts(&self) -> bool {
        self.sink_changelog() != Changelog::AppendOnly
    }

    /// The changes the sink is given.
    pub fn sink_changelog(&self) -> Changelog {
        self.operators
            .iter()
            .find(|op| op.kind == OperatorKind::Sink)
            .map_or(Changelog::AppendOnly, |sink| sink.changelog)
    }

    /// The first operator whose output changes rows it emitted before (a
    /// changelog source, an outer join, a GROUP BY), if any.
    pub fn first_changing(&self) -> Option<&PlanOperator> {
        self.operators
            .iter()
            .find(|op| op.changelog != Changelog::AppendOnly)
    }

    /// The operators that keep state, with what they declare.
    pub fn states(&self) -> impl Iterator<Item = (&str, &StateInfo)> {
        self.operators
            .iter()
            .filter_map(|op| op.state.as_ref().map(|state| (op.id.as_str(), state)))
    }
}
