//! Freshness SLAs: a table's watermark lags the wall clock by at most
//! `max-lag`, and the table commits at least `every`.
//!
//! ```text
//!   now ─────────────────────────────────────────▶
//!        watermark ◀── lag ──▶ now      lag ≤ max-lag ?
//!        last commit ◀─ quiet ─▶ now    quiet ≤ every ?
//! ```
//!
//! Before a table has a watermark or a commit, the time since the run started counts.

use std::time::Duration;

use crate::checks::{Rule, RuleKind};
use crate::results::{CheckResult, Taken};

/// What is known of a table when its freshness is judged (ms since the epoch).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Observed {
    pub watermark_ms: Option<i64>,
    pub last_commit_ms: Option<i64>,
    /// When its pipelines started.
    pub started_ms: i64,
    pub now_ms: i64,
}

/// Judges a freshness rule; `None` for other rules.
pub fn evaluate(table: &str, rule: &Rule, observed: Observed) -> Option<CheckResult> {
    let RuleKind::Freshness { max_lag, every } = &rule.kind else {
        return None;
    };
    let since =
        |at: Option<i64>| observed.now_ms - at.unwrap_or(observed.started_ms).min(observed.now_ms);
    let mut breaches = Vec::new();
    let mut observed_s = None;
    let mut bounds = Vec::new();
    if let Some(max_lag) = max_lag {
        let lag = since(observed.watermark_ms);
        observed_s = Some(lag as f64 / 1000.0);
        bounds.push(format!("lag <= {}", show(*max_lag)));
        if lag > max_lag.as_millis() as i64 {
            breaches.push(match observed.watermark_ms {
                Some(_) => format!("the watermark lags {} behind now", show_ms(lag)),
                None => format!("no watermark after {}", show_ms(lag)),
            });
        }
    }
    if let Some(every) = every {
        let quiet = since(observed.last_commit_ms);
        if observed_s.is_none() {
            observed_s = Some(quiet as f64 / 1000.0);
        }
        bounds.push(format!("a commit every {}", show(*every)));
        if quiet > every.as_millis() as i64 {
            breaches.push(format!("no commit for {}", show_ms(quiet)));
        }
    }
    let failed = !breaches.is_empty();
    Some(CheckResult {
        at_ms: observed.now_ms,
        table: table.to_string(),
        rule: rule.name.clone(),
        check: "freshness".to_string(),
        pipeline: None,
        scope: "freshness".to_string(),
        window_start_ms: None,
        window_end_ms: None,
        commit_version: None,
        passed: i64::from(!failed),
        failed: i64::from(failed),
        observed: observed_s,
        bound: Some(bounds.join(", ")),
        action: if failed { Taken::Warned } else { Taken::None },
        severity: rule.severity.as_str().to_string(),
        detail: failed.then(|| breaches.join("; ")),
    })
}

fn show(duration: Duration) -> String {
    humantime::format_duration(duration).to_string()
}

fn show_ms(ms: i64) -> String {
    show(Duration::from_millis(ms.max(0) as u64 / 100 * 100))
}
