//! The quality crate's errors. Each names where the problem is and how to fix it.

use strata_catalog::SourceLocation;

#[derive(Debug, thiserror::Error)]
pub enum QualityError {
    /// A checks file is malformed or declares a rule that cannot run.
    #[error("{location}: {message}\n  hint: {hint}")]
    Declaration {
        location: SourceLocation,
        message: String,
        hint: String,
    },

    /// A checks file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },

    /// A rule failed to evaluate on a batch (a bug or a type the rule cannot handle).
    #[error("rule {rule} of {table} could not be evaluated: {message}")]
    Evaluation {
        table: String,
        rule: String,
        message: String,
    },

    /// The results table or a checked table could not be read or written.
    #[error("{what}: {message}")]
    Storage { what: String, message: String },

    #[error(transparent)]
    Catalog(Box<strata_catalog::CatalogError>),
}

impl From<strata_catalog::CatalogError> for QualityError {
    fn from(err: strata_catalog::CatalogError) -> Self {
        QualityError::Catalog(Box::new(err))
    }
}

pub type Result<T, E = QualityError> = std::result::Result<T, E>;
