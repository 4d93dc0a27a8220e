//! Quality checks on every layer, while the data flows: rules declared per
//! table in `checks/*.toml`, evaluated vectorised on Arrow batches before a
//! commit, with an action each (warn, quarantine, stop), and a result row per
//! evaluation in `_strata.quality_results`.
//!
//! ```text
//!   checks/*.toml ──load──▶ Checks ──▶ Evaluator (per pipeline: its source's and its target's rules)
//!                                 ├──▶ freshness (watermark lag, commit gaps), beside the pipelines
//!                                 ├──▶ reconcile (two measures per event-time window, in SQL)
//!                                 └──▶ history (the same rule code over a Delta table's rows)
//!   every evaluation ──▶ ResultsLog ──▶ latest status (API, metrics, lineage) + Delta table
//! ```

pub mod aggregate;
pub mod checks;
pub mod error;
pub mod evaluator;
pub mod freshness;
pub mod history;
pub mod keys;
pub mod reconcile;
pub mod results;
pub mod row;

pub use checks::{Action, Checks, Rule, RuleKind, Severity, TableChecks};
pub use error::{QualityError, Result};
pub use evaluator::{Evaluator, EvaluatorSpec, Quarantined, Scope, Verdict};
pub use results::{CheckResult, ResultsLog, Status, Taken};
