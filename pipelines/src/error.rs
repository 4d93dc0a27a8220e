//! The pipelines' errors. Each names the pipeline file, line and column, or the
//! record's topic, partition and offset, and says how to fix it.

use strata_catalog::{CatalogError, SourceLocation};

fn hint_suffix(hint: &Option<String>) -> String {
    hint.as_ref()
        .map(|hint| format!("\n  hint: {hint}"))
        .unwrap_or_default()
}

#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    /// A pipeline file is malformed, or asks for something invalid.
    #[error("{location}: {message}{}", hint_suffix(hint))]
    Invalid {
        location: SourceLocation,
        message: String,
        hint: Option<String>,
    },

    /// Pipelines that feed each other in a circle.
    #[error("pipelines form a cycle: {}\n  hint: a table cannot be built, directly or not, from itself; break the cycle", cycle.join(" → "))]
    Cycle { cycle: Vec<String> },

    /// A source could not be read.
    #[error(
        "{what}: {cause}\n  hint: check that the source is reachable and exists; the pipeline resumes where it stopped"
    )]
    Source { what: String, cause: String },

    /// A target could not be written.
    #[error(
        "{what}: {cause}\n  hint: check that the server runs and the table has the declared columns and primary key; the pipeline resumes where it stopped"
    )]
    Sink { what: String, cause: String },

    /// Evaluating a pipeline's SQL on a batch failed.
    #[error("evaluating the pipeline's SELECT: {0}")]
    Evaluation(String),

    /// A pipeline stopped with an error.
    #[error("pipeline {pipeline} ({file}) stopped: {cause}")]
    Stopped {
        pipeline: String,
        file: String,
        cause: Box<PipelineError>,
    },

    /// A quality rule with `action = "stop"` failed: nothing of the commit was written.
    #[error(
        "pipeline {pipeline} stopped before its commit to {table}: {reason}\n  hint: nothing of this commit was written and the source offsets did not advance; fix the data, or the rule where it is declared, then run again: the held-back records are read again"
    )]
    QualityStop {
        pipeline: String,
        table: String,
        reason: String,
    },

    /// Quality rules could not be loaded or evaluated.
    #[error(transparent)]
    Quality(#[from] strata_quality::QualityError),

    /// Asked to stop while waiting for a dimension's database; nothing of the
    /// batch in hand was committed, so it is read again at the next start.
    #[error("stopped while waiting for a lookup join's database")]
    Interrupted,

    /// Operator state (open windows, groups) could not be saved or restored.
    #[error(
        "operator state: {0}\n  hint: the state lives under the target table's _strata_state/ folder; if it was lost, drop and rebuild the target"
    )]
    State(String),

    #[error(transparent)]
    Arrow(#[from] arrow::error::ArrowError),

    /// A pipeline file could not be read.
    #[error("{path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },

    #[error(transparent)]
    Catalog(Box<CatalogError>),

    /// The realtime view of a table could not be assembled.
    #[error("the realtime view of a table: {message}")]
    Live { message: String },

    /// A pipeline's plan could not be followed for lineage.
    #[error(transparent)]
    Lineage(#[from] strata_lineage::LineageError),
}

impl From<CatalogError> for PipelineError {
    fn from(err: CatalogError) -> Self {
        PipelineError::Catalog(Box::new(err))
    }
}

pub type Result<T, E = PipelineError> = std::result::Result<T, E>;
