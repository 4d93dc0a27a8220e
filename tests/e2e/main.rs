//! End-to-end tests across crates, against real services.

mod readme;
