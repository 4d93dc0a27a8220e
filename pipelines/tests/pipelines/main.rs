//! The pipelines crate's integration tests.

mod validate;
