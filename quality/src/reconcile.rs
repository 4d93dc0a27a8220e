//! Cross-layer reconciliation over the same event-time windows, in SQL over
//! the catalog (Delta, MySQL/TiDB and Kafka tables alike).
//!
//! ```text
//!   this:    SELECT date_bin(window, time) AS w, measure          FROM this  WHERE time in range GROUP BY w
//!   against: SELECT date_bin(window, time) AS w, against-measure  FROM other WHERE time in range
//!                                                                  AND against-where GROUP BY w
//!   minus-quarantined: − rows of this table's quarantine, by their event time
//!   per window: |this − (against − quarantined)| ≤ tolerance, reported with both numbers
//! ```
//!
//! Only windows that both tables have closed are compared (the caller says
//! up to where), so a window still filling is never reported as a mismatch.

use std::collections::BTreeMap;

use arrow::array::{Array, Float64Array, Int64Array};
use arrow::datatypes::DataType;
use datafusion::prelude::SessionContext;
use strata_catalog::TableName;
use strata_catalog::connectors::delta as lake;

use crate::checks::{Reconcile, Rule};
use crate::error::{QualityError, Result};
use crate::results::{CheckResult, Taken};

/// One reconciliation rule of a table.
#[derive(Debug, Clone, Copy)]
pub struct Reconciliation<'a> {
    pub table: &'a TableName,
    pub rule: &'a Rule,
    pub spec: &'a Reconcile,
    /// The location of this table's quarantine, for `minus-quarantined`.
    pub quarantine: Option<&'a str>,
}

/// Compares the windows that start in `[from_ms, to_ms)` and end by `to_ms`.
pub async fn evaluate(
    context: &SessionContext,
    reconciliation: Reconciliation<'_>,
    from_ms: i64,
    to_ms: i64,
    now_ms: i64,
) -> Result<Vec<CheckResult>> {
    let Reconciliation {
        table,
        rule,
        spec,
        quarantine,
    } = reconciliation;
    let window = spec.window.as_millis() as i64;
    let from = from_ms.div_euclid(window) * window;
    let to = to_ms.div_euclid(window) * window;
    if to <= from {
        return Ok(Vec::new());
    }
    let failed = |message: String| QualityError::Evaluation {
        table: table.to_string(),
        rule: rule.name.clone(),
        message,
    };
    let this = measure(
        context,
        &table.to_string(),
        &spec.measure,
        &spec.time,
        None,
        window,
        from,
        to,
    )
    .await
    .map_err(|err| failed(format!("{}: {err}", spec.measure)))?;
    let against = measure(
        context,
        &spec.against.to_string(),
        &spec.against_measure,
        &spec.against_time,
        spec.against_where.as_deref(),
        window,
        from,
        to,
    )
    .await
    .map_err(|err| {
        failed(format!(
            "{} of {}: {err}",
            spec.against_measure, spec.against
        ))
    })?;
    let quarantined = match (spec.minus_quarantined, quarantine) {
        (true, Some(location)) if lake::exists(location).await? => {
            // The quarantine is read on its own: the catalog's session has no default schema.
            let own = SessionContext::new();
            own.register_table("quarantine", lake::table_provider(location).await?)
                .map_err(|err| failed(err.to_string()))?;
            measure(
                &own,
                "quarantine",
                "COUNT(*)",
                "event_time",
                None,
                window,
                from,
                to,
            )
            .await
            .map_err(|err| failed(format!("the quarantine: {err}")))?
        }
        _ => BTreeMap::new(),
    };
    let mut results = Vec::new();
    let mut start = from;
    while start < to {
        let ours = this.get(&start).copied().unwrap_or(0.0);
        let theirs = against.get(&start).copied().unwrap_or(0.0);
        let minus = quarantined.get(&start).copied().unwrap_or(0.0);
        let expected = theirs - minus;
        let difference = ours - expected;
        let mismatch = difference.abs() > spec.tolerance;
        let mut detail = format!(
            "{} of {table} = {ours}; {} of {} = {theirs}",
            spec.measure, spec.against_measure, spec.against
        );
        if spec.minus_quarantined {
            detail.push_str(&format!(", minus {minus} quarantined = {expected}"));
        }
        detail.push_str(&format!("; difference {difference}"));
        results.push(CheckResult {
            at_ms: now_ms,
            table: table.to_string(),
            rule: rule.name.clone(),
            check: "reconcile".to_string(),
            pipeline: None,
            scope: "reconcile".to_string(),
            window_start_ms: Some(start),
            window_end_ms: Some(start + window),
            commit_version: None,
            passed: i64::from(!mismatch),
            failed: i64::from(mismatch),
            observed: Some(difference),
            bound: Some(format!("|difference| <= {}", spec.tolerance)),
            action: if mismatch { Taken::Warned } else { Taken::None },
            severity: rule.severity.as_str().to_string(),
            detail: Some(detail),
        });
        start += window;
    }
    Ok(results)
}

/// The measure per window start (ms), over the windows in `[from, to)`.
#[allow(clippy::too_many_arguments)]
async fn measure(
    context: &SessionContext,
    table: &str,
    measure: &str,
    time: &str,
    condition: Option<&str>,
    window: i64,
    from: i64,
    to: i64,
) -> datafusion::error::Result<BTreeMap<i64, f64>> {
    let time = format!("\"{}\"", time.replace('"', "\"\""));
    let extra = condition.map(|c| format!(" AND ({c})")).unwrap_or_default();
    let sql = format!(
        "SELECT CAST(date_bin(INTERVAL '{window} milliseconds', CAST({time} AS TIMESTAMP), TIMESTAMP '1970-01-01T00:00:00') AS BIGINT) / 1000000 AS window_start, \
                CAST(({measure}) AS DOUBLE) AS value \
         FROM {table} \
         WHERE CAST({time} AS TIMESTAMP) >= CAST(to_timestamp_millis({from}) AS TIMESTAMP) \
           AND CAST({time} AS TIMESTAMP) < CAST(to_timestamp_millis({to}) AS TIMESTAMP){extra} \
         GROUP BY 1"
    );
    let batches = context.sql(&sql).await?.collect().await?;
    let mut values = BTreeMap::new();
    for batch in batches {
        let starts = arrow::compute::cast(batch.column(0), &DataType::Int64)?;
        let starts = starts.as_any().downcast_ref::<Int64Array>().expect("Int64");
        let sums = batch
            .column(1)
            .as_any()
            .downcast_ref::<Float64Array>()
            .expect("DOUBLE");
        for row in 0..batch.num_rows() {
            if starts.is_valid(row) {
                values.insert(
                    starts.value(row),
                    if sums.is_valid(row) {
                        sums.value(row)
                    } else {
                        0.0
                    },
                );
            }
        }
    }
    Ok(values)
}

/// The event-time span of a table's rows, to reconcile its whole history.
pub async fn span(
    context: &SessionContext,
    table: &TableName,
    time: &str,
) -> Result<Option<(i64, i64)>> {
    let time = format!("\"{}\"", time.replace('"', "\"\""));
    let sql = format!(
        "SELECT CAST(CAST(MIN({time}) AS TIMESTAMP) AS BIGINT) / 1000000, CAST(CAST(MAX({time}) AS TIMESTAMP) AS BIGINT) / 1000000 FROM {table}"
    );
    let failed = |err: datafusion::error::DataFusionError| QualityError::Storage {
        what: format!("the time span of {table}"),
        message: err.to_string(),
    };
    let batches = context
        .sql(&sql)
        .await
        .map_err(failed)?
        .collect()
        .await
        .map_err(failed)?;
    let Some(batch) = batches.first().filter(|b| b.num_rows() > 0) else {
        return Ok(None);
    };
    let value = |i: usize| -> Option<i64> {
        let column = arrow::compute::cast(batch.column(i), &DataType::Int64).ok()?;
        let column = column.as_any().downcast_ref::<Int64Array>()?.clone();
        column.is_valid(0).then(|| column.value(0))
    };
    Ok(value(0).zip(value(1)))
}
