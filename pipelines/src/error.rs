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

    /// A pipeline's task panicked: a bug, which stops that pipeline only.
    #[error(
        "pipeline {pipeline} panicked: {message}\n  hint: this is a bug in Strata; please report it with the pipeline's SQL. The other pipelines go on, and this one resumes from its last commit when it is started again"
    )]
    Panicked { pipeline: String, message: String },

    /// The checkpointed state was written for a plan of another shape (an
    /// aggregate added, a GROUP BY key changed): restoring it would misread it.
    #[error(
        "pipeline {pipeline}: its checkpointed state does not fit the pipeline as it is now{}\n  hint: undo the change to keep the state, or run `strata pipeline reset {pipeline}` to drop the state and start the pipeline again (--from committed, earliest or latest)",
        state_changes(changes)
    )]
    StateMismatch {
        pipeline: String,
        changes: Vec<StateChange>,
    },

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

/// The lines of a state shape, indented under a heading, or nothing.
/// An operator whose checkpointed state no longer fits the plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StateChange {
    /// The operator's id in the plan (`strata explain`).
    pub operator: String,
    pub kind: String,
    /// The fingerprint the checkpoint holds, if it holds the operator.
    pub written: Option<String>,
    /// The fingerprint the plan declares, if the plan keeps the operator's state.
    pub planned: Option<String>,
}

fn state_changes(changes: &[StateChange]) -> String {
    let indented = |text: &str| -> String {
        text.lines()
            .map(|line| format!("\n        {line}"))
            .collect()
    };
    changes
        .iter()
        .map(|change| {
            let mut text = format!("\n  operator {} ({}):", change.operator, change.kind);
            match &change.written {
                Some(written) => {
                    text.push_str(&format!("\n      state written for:{}", indented(written)))
                }
                None => text.push_str("\n      no state in the checkpoint"),
            }
            match &change.planned {
                Some(planned) => {
                    text.push_str(&format!("\n      the plan now needs:{}", indented(planned)))
                }
                None => text.push_str("\n      the plan keeps no state for it now"),
            }
            text
        })
        .collect()
}

impl PipelineError {
    /// Whether the error comes from the rows themselves (a cast, a division by
    /// zero, a value that does not fit) rather than from a service or the
    /// pipeline. Only such errors send rows to quarantine; the others stop
    /// the pipeline with their cause.
    pub fn is_about_rows(&self) -> bool {
        match self {
            PipelineError::Evaluation(_) | PipelineError::Arrow(_) => true,
            PipelineError::Catalog(err) => matches!(
                **err,
                CatalogError::Query(_) | CatalogError::Arrow(_) | CatalogError::Decode { .. }
            ),
            _ => false,
        }
    }
}

impl From<CatalogError> for PipelineError {
    fn from(err: CatalogError) -> Self {
        PipelineError::Catalog(Box::new(err))
    }
}

pub type Result<T, E = PipelineError> = std::result::Result<T, E>;
