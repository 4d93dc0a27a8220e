//! Aggregate rules: a metric over a commit's rows, or over each window's rows,
//! held against bounds or against its own recent history (anomaly).
//!
//! ```text
//!   commit rows ─┬─ per commit ──────────────▶ metric ─▶ min ≤ x ≤ max ?
//!                └─ per window: group by window_start ─▶ metric per window
//!   anomaly:  |x − mean(last n)| ≤ k · stddev(last n)    (judged once 3 values are known)
//! ```

use std::collections::{BTreeMap, HashSet, VecDeque};

use arrow::array::{Array, Float64Array, Int64Array};
use arrow::compute::{cast, take_record_batch};
use arrow::datatypes::{DataType, TimeUnit};
use arrow::record_batch::RecordBatch;
use arrow::row::{RowConverter, SortField};

use crate::checks::{Metric, Per};
use crate::error::{QualityError, Result};

/// The values an anomaly rule has seen, newest last.
#[derive(Debug, Clone, Default)]
pub struct History {
    values: VecDeque<f64>,
    capacity: usize,
}

/// Whether a value is out of line with the history, with the band it was held to.
#[derive(Debug, Clone, PartialEq)]
pub struct Judgement {
    pub anomalous: bool,
    /// `mean ± k·stddev`, when enough history was known to judge.
    pub band: Option<(f64, f64)>,
}

impl History {
    pub fn new(capacity: usize, seed: impl IntoIterator<Item = f64>) -> Self {
        let mut history = Self {
            values: VecDeque::with_capacity(capacity),
            capacity,
        };
        for value in seed {
            history.push(value);
        }
        history
    }

    fn push(&mut self, value: f64) {
        if self.values.len() == self.capacity {
            self.values.pop_front();
        }
        self.values.push_back(value);
    }

    /// Judges `value` against the history, then adds it.
    pub fn judge(&mut self, value: f64, k: f64) -> Judgement {
        let judgement = if self.values.len() < 3 {
            Judgement {
                anomalous: false,
                band: None,
            }
        } else {
            let n = self.values.len() as f64;
            let mean = self.values.iter().sum::<f64>() / n;
            let variance = self.values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1.0);
            let spread = k * variance.sqrt();
            let band = (mean - spread, mean + spread);
            Judgement {
                anomalous: value < band.0 || value > band.1,
                band: Some(band),
            }
        };
        self.push(value);
        judgement
    }
}

/// The metric over `batch`; `None` when it is undefined (a rate or mean of no rows).
pub fn observe(metric: &Metric, batch: &RecordBatch) -> Result<Option<f64>> {
    let rows = batch.num_rows();
    let column = |name: &str| {
        batch
            .column_by_name(name)
            .ok_or_else(|| QualityError::Evaluation {
                table: String::new(),
                rule: metric.describe(),
                message: format!("the batch has no column {name}"),
            })
    };
    Ok(match metric {
        Metric::RowCount => Some(rows as f64),
        Metric::NullRate(name) => {
            let array = column(name)?;
            (rows > 0).then(|| array.null_count() as f64 / rows as f64)
        }
        Metric::DistinctCount(name) => {
            let array = column(name)?;
            let converter = RowConverter::new(vec![SortField::new(array.data_type().clone())])
                .map_err(|err| evaluation(metric, err))?;
            let converted = converter
                .convert_columns(std::slice::from_ref(array))
                .map_err(|err| evaluation(metric, err))?;
            let mut seen = HashSet::new();
            for (row, value) in converted.iter().enumerate() {
                if array.is_valid(row) {
                    seen.insert(value.owned());
                }
            }
            Some(seen.len() as f64)
        }
        Metric::Mean(name) | Metric::Stddev(name) => {
            let values = as_f64(column(name)?, metric)?;
            let present: Vec<f64> = values.iter().flatten().collect();
            let n = present.len() as f64;
            match (metric, present.len()) {
                (_, 0) | (Metric::Stddev(_), 1) => None,
                (Metric::Mean(_), _) => Some(present.iter().sum::<f64>() / n),
                _ => {
                    let mean = present.iter().sum::<f64>() / n;
                    let variance =
                        present.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1.0);
                    Some(variance.sqrt())
                }
            }
        }
    })
}

fn as_f64(array: &arrow::array::ArrayRef, metric: &Metric) -> Result<Float64Array> {
    let cast = cast(array, &DataType::Float64).map_err(|err| evaluation(metric, err))?;
    Ok(cast
        .as_any()
        .downcast_ref::<Float64Array>()
        .expect("cast to Float64")
        .clone())
}

fn evaluation(metric: &Metric, err: impl std::fmt::Display) -> QualityError {
    QualityError::Evaluation {
        table: String::new(),
        rule: metric.describe(),
        message: err.to_string(),
    }
}

/// The rows an aggregate rule is computed over: the whole batch, or one part
/// per window with the window's start (ms since the epoch).
pub fn split(per: &Per, batch: &RecordBatch) -> Result<Vec<(Option<i64>, RecordBatch)>> {
    let Per::Window(column) = per else {
        return Ok(vec![(None, batch.clone())]);
    };
    let metric = Metric::RowCount;
    let array = batch
        .column_by_name(column)
        .ok_or_else(|| evaluation(&metric, format!("the batch has no column {column}")))?;
    let DataType::Timestamp(_, zone) = array.data_type() else {
        return Err(evaluation(
            &metric,
            format!(
                "the window column {column} is {}, not a timestamp",
                array.data_type()
            ),
        ));
    };
    // Window starts in ms since the epoch, whatever the column's unit.
    let millis = cast(
        array,
        &DataType::Timestamp(TimeUnit::Millisecond, zone.clone()),
    )
    .and_then(|millis| cast(&millis, &DataType::Int64))
    .map_err(|err| evaluation(&metric, err))?;
    let starts = millis
        .as_any()
        .downcast_ref::<Int64Array>()
        .expect("cast to Int64");
    let mut groups: BTreeMap<Option<i64>, Vec<u32>> = BTreeMap::new();
    for (row, start) in starts.iter().enumerate() {
        groups.entry(start).or_default().push(row as u32);
    }
    groups
        .into_iter()
        .map(|(start, rows)| {
            let indices = arrow::array::UInt32Array::from(rows);
            let part =
                take_record_batch(batch, &indices).map_err(|err| evaluation(&metric, err))?;
            Ok((start, part))
        })
        .collect()
}
