//! The lineage crate's errors.

/// What can go wrong building or querying lineage.
#[derive(Debug, thiserror::Error)]
pub enum LineageError {
    #[error("{node} is not in the lineage graph\n  hint: {hint}")]
    UnknownNode { node: String, hint: String },
    #[error("the lineage graph could not be read back: {0}")]
    Corrupt(#[from] serde_json::Error),
    #[error("the plan of pipeline {pipeline} could not be followed: {message}")]
    Plan { pipeline: String, message: String },
}

pub type Result<T, E = LineageError> = std::result::Result<T, E>;
