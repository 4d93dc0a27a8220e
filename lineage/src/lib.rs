//! Table and column lineage of a Strata warehouse: which pipeline reads and
//! writes which table, and how each column of a target comes from the columns
//! of its sources, derived from the pipelines' DataFusion logical plans.
//!
//! ```text
//!   pipeline SQL ──DataFusion──▶ logical plan ──derive──▶ per target column: source columns + how used
//!                                                                                │
//!   catalog tables ──────────────────────────────────────────────▶ LineageGraph (petgraph)
//!        table ─has─▶ column        table ─reads─▶ pipeline ─writes─▶ table
//!        column ─direct | aggregated | join key | filter | group by─▶ column
//! ```
//!
//! The graph answers upstream/downstream queries with a depth limit, the path
//! between two nodes, and impact analysis; it is stored in the catalog store
//! with a version whenever it changes, so that an earlier graph can be read back.

pub mod derive;
pub mod error;
pub mod graph;
pub mod openlineage;

pub use derive::{ColumnOrigin, PipelineLineage, ScanResolver, UseKind};
pub use error::{LineageError, Result};
pub use graph::{Direction, Edge, EdgeKind, Impact, LineageGraph, Node, NodeId, Subgraph};
