//! The streaming engine: pipelines that keep the warehouse's layers fresh.
//!
//! ```text
//!   pipelines/<layer>/*.sql ──load──▶ Pipeline ──validate (catalog)──▶ ValidPipeline, in dependency order
//!                                                                         │
//!   Kafka ──source──▶ decode (JSON → Arrow; bad records → quarantine) ──▶ stateless SQL ──▶ Delta, exactly once
//! ```
//!
//! This crate reads table definitions from `strata-catalog` and moves data as
//! Arrow `RecordBatch`es.

pub mod aggregate;
pub mod aligned;
pub mod batch;
pub mod checkpoint;
pub mod connector;
pub mod decode;
pub mod error;
pub mod held;
pub mod interval;
pub mod keyed;
pub mod lag;
pub mod lateral;
pub mod live;
pub mod lookup;
pub mod materialize;
pub mod mention;
pub mod operator;
pub mod over;
pub mod plan;
pub mod position;
pub mod project;
pub mod registry;
pub mod regular_join;
pub mod row_number;
pub mod runner;
pub mod sink;
pub mod sort;
pub mod source;
pub mod state;
mod statement_set;
pub mod steps;
pub mod transform;
pub mod union;
pub mod validate;
mod views;
pub mod watermark;
pub mod window;

pub use error::{PipelineError, Result, StateChange};
pub use project::{Pipeline, Settings, load_pipelines, parse_pipelines};
pub use runner::{PipelineRun, Quality, Replay, ResetFrom, RunMode, TableStats};
pub use validate::{ValidPipeline, validate};

use strata_catalog::Catalog;

/// Loads the project's pipelines and validates them against its catalog,
/// in the order they must run.
pub async fn load_project(catalog: &Catalog) -> Result<Vec<ValidPipeline>> {
    let pipelines = load_pipelines(&catalog.project().dir)?;
    let tables = catalog.definitions().await?;
    validate(pipelines, &tables).await
}
