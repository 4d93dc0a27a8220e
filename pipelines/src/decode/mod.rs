//! Decoding source records into Arrow.

pub mod json;
