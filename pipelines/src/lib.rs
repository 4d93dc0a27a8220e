//! The streaming engine: pipelines that keep the warehouse's layers fresh.
//!
//! ```text
//!   pipelines/<layer>/*.sql ──load──▶ Pipeline ──validate (catalog)──▶ ValidPipeline, in dependency order
//! ```
//!
//! This crate reads table definitions from `strata-catalog` and moves data as
//! Arrow `RecordBatch`es.

pub mod error;
pub mod project;
pub mod validate;

pub use error::{PipelineError, Result};
pub use project::{Pipeline, load_pipelines, parse_pipeline};
pub use validate::{ValidPipeline, validate};
