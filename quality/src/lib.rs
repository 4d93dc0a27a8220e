//! Quality checks (to come): rules evaluated on Arrow batches as they flow,
//! quarantine of failing rows, and the results of every evaluation.
