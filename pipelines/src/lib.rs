//! The streaming engine (to come): sources, decoding to Arrow, watermarks,
//! windows, joins, state and checkpoints, sinks, and exactly-once commits.
//! It reads table definitions from `strata-catalog`.
