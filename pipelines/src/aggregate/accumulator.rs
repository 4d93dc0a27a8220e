//! The aggregate functions a streaming aggregation keeps per group: COUNT, SUM,
//! MIN, MAX, AVG, COUNT(DISTINCT) and APPROX_DISTINCT.
//!
//! ```text
//!   batch ──evaluate argument (+ FILTER)──▶ Input ──update──▶ Acc (one per group and function)
//!   Acc + Acc ──merge──▶ Acc                (local → global, and SESSION windows joining)
//!   [Acc] ──finish──▶ Arrow column of the type DataFusion planned
//! ```
//!
//! MIN, MAX and the distinct sets hold values in Arrow's row format, whose bytes
//! sort like the values, so one implementation serves every type. Integer and
//! decimal sums are exact (`i128`); a sum that no longer fits its column stops
//! the pipeline instead of wrapping.
//!
//! Over a changelog, MIN, MAX and COUNT(DISTINCT) must take values back out
//! (Flink's `MaxWithRetractAggFunction`): they keep every value with how many
//! rows hold it, so the minimum after a retraction is the next value held.
//!
//! ```text
//!   +I 5, +I 3, +I 3, -U 3     ──▶ {3: 1, 5: 1}   MIN 3, MAX 5, COUNT(DISTINCT) 2
//!   -D 3                        ──▶ {5: 1}         MIN 5
//!   a batch's partial counts merge by adding; a value whose count reaches 0 is dropped
//! ```

use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, BooleanArray, Decimal128Array, Float64Array, Int64Array, UInt64Array,
};
use arrow::datatypes::DataType;
use arrow::record_batch::RecordBatch;
use arrow::row::{RowConverter, Rows, SortField};
use datafusion::physical_expr::PhysicalExpr;

use super::distinct::DistinctSet;
use super::hll::HyperLogLog;
use crate::batch::strict_cast;
use crate::error::{PipelineError, Result};
use crate::state::{ByteReader, ByteWriter};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AggFunction {
    Count,
    Sum,
    Min,
    Max,
    Avg,
    CountDistinct,
    ApproxDistinct,
}

impl AggFunction {
    /// Recognises DataFusion's aggregate function names.
    pub fn from_name(name: &str, distinct: bool) -> Option<Self> {
        Some(match (name, distinct) {
            ("count", false) => Self::Count,
            ("count", true) => Self::CountDistinct,
            ("sum", false) => Self::Sum,
            ("min", _) => Self::Min,
            ("max", _) => Self::Max,
            ("avg", false) | ("mean", false) => Self::Avg,
            ("approx_distinct", _) => Self::ApproxDistinct,
            _ => return None,
        })
    }

    /// The function's name in SQL.
    pub fn sql_name(self) -> &'static str {
        match self {
            Self::Count => "COUNT",
            Self::Sum => "SUM",
            Self::Min => "MIN",
            Self::Max => "MAX",
            Self::Avg => "AVG",
            Self::CountDistinct => "COUNT(DISTINCT)",
            Self::ApproxDistinct => "APPROX_DISTINCT",
        }
    }
}

/// How a function's input values are held.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Holding {
    /// Counting non-NULL values.
    Presence,
    /// Exact integers or decimals of this scale, as `i128`.
    Exact {
        scale: i8,
    },
    Float,
    /// Arrow row-format bytes.
    Rows,
}

/// One aggregate of the query: its function, argument and output type.
#[derive(Debug)]
pub struct AggregateCall {
    pub function: AggFunction,
    arg: Arc<dyn PhysicalExpr>,
    filter: Option<Arc<dyn PhysicalExpr>>,
    input_type: DataType,
    pub output: DataType,
    holding: Holding,
    converter: Option<RowConverter>,
    /// Buckets of a COUNT(DISTINCT) set (1: not split).
    distinct_buckets: u32,
    /// Whether its input is a changelog: MIN, MAX and COUNT(DISTINCT) then
    /// count the rows holding each value, to take them back out.
    retracting: bool,
}

impl AggregateCall {
    /// The call in SQL terms: function, argument and filter.
    pub fn describe(&self) -> String {
        let filter = self
            .filter
            .as_ref()
            .map(|f| format!(" FILTER (WHERE {f})"))
            .unwrap_or_default();
        format!("{:?}({}){filter}", self.function, self.arg)
    }

    /// The call as its state depends on it: function, argument, filter and types.
    pub fn shape(&self) -> String {
        let counted = match self.counts_values() {
            true => ", every value counted",
            false => "",
        };
        format!(
            "{}: {} -> {} (distinct buckets {}{counted})",
            self.describe(),
            self.input_type,
            self.output,
            self.distinct_buckets
        )
    }

    /// The call reading a changelog: its accumulators take retractions back out.
    pub fn over_changelog(mut self) -> Self {
        self.retracting = true;
        self
    }

    /// Whether its accumulators keep every value with its count of rows.
    fn counts_values(&self) -> bool {
        self.retracting
            && matches!(
                self.function,
                AggFunction::Min | AggFunction::Max | AggFunction::CountDistinct
            )
    }
}

/// One batch's values of an aggregate's argument, ready to fold into groups.
#[derive(Debug)]
pub enum Input {
    Presence(Vec<bool>),
    Exact(Vec<Option<i128>>),
    Float(Vec<Option<f64>>),
    Rows { rows: Rows, valid: Vec<bool> },
}

impl AggregateCall {
    /// `None` when the function cannot take this input type.
    pub fn new(
        function: AggFunction,
        arg: Arc<dyn PhysicalExpr>,
        filter: Option<Arc<dyn PhysicalExpr>>,
        input_type: DataType,
        output: DataType,
        distinct_buckets: u32,
    ) -> Option<Self> {
        let holding = match function {
            AggFunction::Count => Holding::Presence,
            AggFunction::Sum | AggFunction::Avg => match &input_type {
                t if t.is_integer() => Holding::Exact { scale: 0 },
                DataType::Decimal128(_, scale) => Holding::Exact { scale: *scale },
                t if t.is_floating() => Holding::Float,
                _ => return None,
            },
            AggFunction::Min
            | AggFunction::Max
            | AggFunction::CountDistinct
            | AggFunction::ApproxDistinct => Holding::Rows,
        };
        let converter = (holding == Holding::Rows)
            .then(|| RowConverter::new(vec![SortField::new(input_type.clone())]).ok())
            .flatten();
        if holding == Holding::Rows && converter.is_none() {
            return None;
        }
        Some(Self {
            function,
            arg,
            filter,
            input_type,
            output,
            holding,
            converter,
            distinct_buckets,
            retracting: false,
        })
    }

    /// Whether a changelog's retractions (update-before, delete) can be taken
    /// back out: an estimate (APPROX_DISTINCT) never can.
    pub fn retractable(&self) -> bool {
        match self.function {
            AggFunction::Count | AggFunction::Sum | AggFunction::Avg => true,
            AggFunction::Min | AggFunction::Max | AggFunction::CountDistinct => self.retracting,
            AggFunction::ApproxDistinct => false,
        }
    }

    /// A new, empty accumulator.
    pub fn empty(&self) -> Acc {
        if self.counts_values() {
            return Acc::Counted(CountedValues::default());
        }
        match (self.function, &self.holding) {
            (AggFunction::Count, _) => Acc::Count(0),
            (AggFunction::Sum, Holding::Float) => Acc::SumFloat {
                sum: None,
                values: 0,
            },
            (AggFunction::Sum, _) => Acc::SumExact {
                sum: None,
                values: 0,
            },
            (AggFunction::Avg, Holding::Float) => Acc::AvgFloat { sum: 0.0, count: 0 },
            (AggFunction::Avg, _) => Acc::AvgExact { sum: 0, count: 0 },
            (AggFunction::Min, _) => Acc::Min(None),
            (AggFunction::Max, _) => Acc::Max(None),
            (AggFunction::CountDistinct, _) => {
                Acc::Distinct(DistinctSet::new(self.distinct_buckets))
            }
            (AggFunction::ApproxDistinct, _) => Acc::Approx(Box::default()),
        }
    }

    /// Evaluates the argument (and FILTER) on a batch.
    pub fn input(&self, batch: &RecordBatch) -> Result<Input> {
        let evaluate = |expr: &Arc<dyn PhysicalExpr>| crate::batch::evaluate(expr, batch);
        let values = evaluate(&self.arg)?;
        let included: Vec<bool> = match &self.filter {
            None => (0..values.len()).map(|row| values.is_valid(row)).collect(),
            Some(filter) => {
                let mask = evaluate(filter)?;
                let mask = mask
                    .as_any()
                    .downcast_ref::<BooleanArray>()
                    .ok_or_else(|| {
                        PipelineError::Evaluation("an aggregate FILTER is not boolean".to_string())
                    })?;
                (0..values.len())
                    .map(|row| values.is_valid(row) && mask.is_valid(row) && mask.value(row))
                    .collect()
            }
        };
        Ok(match &self.holding {
            Holding::Presence => Input::Presence(included),
            Holding::Exact { scale } => {
                let exact = strict_cast(&values, &DataType::Decimal128(38, *scale))?;
                let exact = exact
                    .as_any()
                    .downcast_ref::<Decimal128Array>()
                    .expect("cast to decimal");
                Input::Exact(
                    included
                        .iter()
                        .enumerate()
                        .map(|(row, &keep)| keep.then(|| exact.value(row)))
                        .collect(),
                )
            }
            Holding::Float => {
                let floats = strict_cast(&values, &DataType::Float64)?;
                let floats = floats
                    .as_any()
                    .downcast_ref::<Float64Array>()
                    .expect("cast to float");
                Input::Float(
                    included
                        .iter()
                        .enumerate()
                        .map(|(row, &keep)| keep.then(|| floats.value(row)))
                        .collect(),
                )
            }
            Holding::Rows => {
                let values = strict_cast(&values, &self.input_type)?;
                let rows = self
                    .converter
                    .as_ref()
                    .expect("rows have a converter")
                    .convert_columns(&[values])?;
                Input::Rows {
                    rows,
                    valid: included,
                }
            }
        })
    }

    /// The output column for these groups' accumulators.
    pub fn finish(&self, accs: &[&Acc]) -> Result<ArrayRef> {
        let column: ArrayRef = match self.function {
            AggFunction::Count | AggFunction::CountDistinct => Arc::new(
                Int64Array::from_iter_values(accs.iter().map(|acc| match acc {
                    Acc::Count(n) => *n,
                    Acc::Distinct(set) => set.len() as i64,
                    Acc::Counted(values) => values.distinct() as i64,
                    _ => 0,
                })),
            ),
            AggFunction::ApproxDistinct => Arc::new(UInt64Array::from_iter_values(
                accs.iter().map(|acc| match acc {
                    Acc::Approx(hll) => hll.estimate(),
                    _ => 0,
                }),
            )),
            AggFunction::Sum => match self.holding {
                Holding::Float => {
                    Arc::new(Float64Array::from_iter(accs.iter().map(|acc| match acc {
                        Acc::SumFloat { sum, values } => sum.filter(|_| *values != 0),
                        _ => None,
                    })))
                }
                Holding::Exact { scale } => Arc::new(
                    Decimal128Array::from_iter(accs.iter().map(|acc| match acc {
                        Acc::SumExact { sum, values } => sum.filter(|_| *values != 0),
                        _ => None,
                    }))
                    .with_precision_and_scale(38, scale)?,
                ),
                _ => unreachable!("sums are exact or float"),
            },
            AggFunction::Avg => self.finish_avg(accs)?,
            AggFunction::Min | AggFunction::Max => {
                let converter = self.converter.as_ref().expect("rows have a converter");
                let null_row = converter
                    .convert_columns(&[arrow::array::new_null_array(&self.input_type, 1)])?;
                let parser = converter.parser();
                fn held(acc: &Acc, function: AggFunction) -> Option<&[u8]> {
                    match acc {
                        Acc::Min(Some(bytes)) | Acc::Max(Some(bytes)) => Some(bytes),
                        Acc::Counted(values) if function == AggFunction::Min => values.min(),
                        Acc::Counted(values) => values.max(),
                        _ => None,
                    }
                }
                let rows: Vec<arrow::row::Row<'_>> = accs
                    .iter()
                    .map(|acc| match held(acc, self.function) {
                        Some(bytes) => parser.parse(bytes),
                        None => null_row.row(0),
                    })
                    .collect();
                // Safety of `parse`: the bytes were produced by this converter.
                converter.convert_rows(rows)?.remove(0)
            }
        };
        strict_cast(&column, &self.output)
    }

    fn finish_avg(&self, accs: &[&Acc]) -> Result<ArrayRef> {
        match (&self.holding, &self.output) {
            (Holding::Exact { scale }, DataType::Decimal128(precision, out_scale)) => {
                let factor = 10i128.pow((*out_scale - *scale).max(0) as u32);
                let values = accs.iter().map(|acc| match acc {
                    Acc::AvgExact { sum, count } if *count > 0 => {
                        let scaled = sum.checked_mul(factor)?;
                        let count = i128::from(*count);
                        let (quotient, remainder) = (scaled / count, scaled % count);
                        Some(if remainder.abs() * 2 >= count {
                            quotient + scaled.signum()
                        } else {
                            quotient
                        })
                    }
                    _ => None,
                });
                Ok(Arc::new(
                    Decimal128Array::from_iter(values)
                        .with_precision_and_scale(*precision, *out_scale)?,
                ))
            }
            // Flink's AVG of integers: an integer, truncated toward zero (Java's
            // division), which fits the integers' type (the caller casts it there).
            (Holding::Exact { scale: 0 }, output) if output.is_integer() => Ok(Arc::new(
                Decimal128Array::from_iter(accs.iter().map(|acc| match acc {
                    Acc::AvgExact { sum, count } if *count > 0 => Some(*sum / i128::from(*count)),
                    _ => None,
                }))
                .with_precision_and_scale(38, 0)?,
            )),
            _ => Ok(Arc::new(Float64Array::from_iter(accs.iter().map(
                |acc| match acc {
                    Acc::AvgExact { sum, count } if *count > 0 => Some(*sum as f64 / *count as f64),
                    Acc::AvgFloat { sum, count } if *count > 0 => Some(*sum / *count as f64),
                    _ => None,
                },
            )))),
        }
    }
}

/// The running value of one aggregate for one group.
#[derive(Debug, Clone, PartialEq)]
pub enum Acc {
    Count(i64),
    /// A sum, and how many values it holds: when retractions take the last
    /// one back out, the sum is NULL again (as Flink's SUM with retraction).
    /// A partial accumulator (one batch's changes) may hold a sum of no values
    /// net, which merging adds in.
    SumExact {
        sum: Option<i128>,
        values: i64,
    },
    SumFloat {
        sum: Option<f64>,
        values: i64,
    },
    AvgExact {
        sum: i128,
        count: i64,
    },
    AvgFloat {
        sum: f64,
        count: i64,
    },
    Min(Option<Vec<u8>>),
    Max(Option<Vec<u8>>),
    Distinct(DistinctSet),
    Approx(Box<HyperLogLog>),
    /// MIN, MAX or COUNT(DISTINCT) over a changelog.
    Counted(CountedValues),
}

impl Acc {
    /// Folds in row `row` of a batch's input.
    pub fn update(&mut self, input: &Input, row: usize) -> Result<()> {
        self.add(input, row, 1)
    }

    /// Takes row `row` of a batch's input back out (a changelog's retraction);
    /// only for [`AggregateCall::retractable`] aggregates.
    pub fn retract(&mut self, input: &Input, row: usize) -> Result<()> {
        self.add(input, row, -1)
    }

    /// Adds (`sign` 1) or takes out (`sign` -1) one row.
    fn add(&mut self, input: &Input, row: usize, sign: i64) -> Result<()> {
        match (self, input) {
            (Acc::Count(n), Input::Presence(valid)) => *n += sign * i64::from(valid[row]),
            (Acc::SumExact { sum, values }, Input::Exact(inputs)) => {
                if let Some(value) = inputs[row] {
                    *values += sign;
                    *sum = Some(checked_add(sum.unwrap_or(0), i128::from(sign) * value)?);
                }
            }
            (Acc::SumFloat { sum, values }, Input::Float(inputs)) => {
                if let Some(value) = inputs[row] {
                    *values += sign;
                    *sum = Some(sum.unwrap_or(0.0) + sign as f64 * value);
                }
            }
            (Acc::AvgExact { sum, count }, Input::Exact(values)) => {
                if let Some(value) = values[row] {
                    *sum = checked_add(*sum, i128::from(sign) * value)?;
                    *count += sign;
                }
            }
            (Acc::AvgFloat { sum, count }, Input::Float(values)) => {
                if let Some(value) = values[row] {
                    *sum += sign as f64 * value;
                    *count += sign;
                }
            }
            (acc, Input::Rows { rows, valid }) if valid[row] => {
                let bytes = rows.row(row);
                let bytes = bytes.as_ref();
                if let Acc::Counted(values) = acc {
                    values.add(bytes, sign);
                    return Ok(());
                }
                debug_assert!(sign > 0, "only retractable aggregates see retractions");
                match acc {
                    Acc::Min(min) if min.as_deref().is_none_or(|m| bytes < m) => {
                        *min = Some(bytes.to_vec())
                    }
                    Acc::Max(max) if max.as_deref().is_none_or(|m| bytes > m) => {
                        *max = Some(bytes.to_vec())
                    }
                    Acc::Distinct(set) => set.insert(bytes),
                    Acc::Approx(hll) => hll.insert(bytes),
                    _ => {}
                }
            }
            _ => {}
        }
        Ok(())
    }

    /// Folds in another accumulator of the same aggregate.
    pub fn merge(&mut self, other: Acc) -> Result<()> {
        match (self, other) {
            (Acc::Count(a), Acc::Count(b)) => *a += b,
            (
                Acc::SumExact { sum: a, values },
                Acc::SumExact {
                    sum: b,
                    values: more,
                },
            ) => {
                *a = match (*a, b) {
                    (Some(x), Some(y)) => Some(checked_add(x, y)?),
                    (x, y) => x.or(y),
                };
                *values = values.saturating_add(more);
            }
            (
                Acc::SumFloat { sum: a, values },
                Acc::SumFloat {
                    sum: b,
                    values: more,
                },
            ) => {
                *a = match (*a, b) {
                    (Some(x), Some(y)) => Some(x + y),
                    (x, y) => x.or(y),
                };
                *values = values.saturating_add(more);
            }
            (Acc::AvgExact { sum, count }, Acc::AvgExact { sum: s, count: c }) => {
                *sum = checked_add(*sum, s)?;
                *count += c;
            }
            (Acc::AvgFloat { sum, count }, Acc::AvgFloat { sum: s, count: c }) => {
                *sum += s;
                *count += c;
            }
            (Acc::Min(a), Acc::Min(b)) => {
                if let Some(b) = b
                    && a.as_ref().is_none_or(|a| b < *a)
                {
                    *a = Some(b);
                }
            }
            (Acc::Max(a), Acc::Max(b)) => {
                if let Some(b) = b
                    && a.as_ref().is_none_or(|a| b > *a)
                {
                    *a = Some(b);
                }
            }
            (Acc::Distinct(a), Acc::Distinct(b)) => a.merge(b),
            (Acc::Approx(a), Acc::Approx(b)) => a.merge(&b),
            (Acc::Counted(a), Acc::Counted(b)) => a.merge(b),
            _ => unreachable!("accumulators of one aggregate have one kind"),
        }
        Ok(())
    }

    pub fn encode(&self, out: &mut ByteWriter) {
        match self {
            Acc::Count(n) => {
                out.u8(0);
                out.i64(*n);
            }
            Acc::SumExact { sum, values } => {
                out.u8(9);
                out.option(sum.as_ref(), |out, v| out.i128(*v));
                out.i64(*values);
            }
            Acc::SumFloat { sum, values } => {
                out.u8(10);
                out.option(sum.as_ref(), |out, v| out.f64(*v));
                out.i64(*values);
            }
            Acc::AvgExact { sum, count } => {
                out.u8(3);
                out.i128(*sum);
                out.i64(*count);
            }
            Acc::AvgFloat { sum, count } => {
                out.u8(4);
                out.f64(*sum);
                out.i64(*count);
            }
            Acc::Min(value) | Acc::Max(value) => {
                out.u8(if matches!(self, Acc::Min(_)) { 5 } else { 6 });
                out.option(value.as_ref(), |out, v| out.bytes(v));
            }
            Acc::Distinct(set) => {
                out.u8(7);
                set.encode(out);
            }
            Acc::Approx(hll) => {
                out.u8(8);
                out.bytes(hll.registers());
            }
            Acc::Counted(values) => {
                out.u8(11);
                values.encode(out);
            }
        }
    }

    pub fn decode(input: &mut ByteReader<'_>) -> Result<Acc> {
        Ok(match input.u8()? {
            0 => Acc::Count(input.i64()?),
            // Sums of checkpoints that did not count their values: as many as
            // no retraction can take back, so they never turn NULL, as before.
            1 => {
                let sum = input.option(|r| r.i128())?;
                Acc::SumExact {
                    sum,
                    values: uncounted(sum.is_some()),
                }
            }
            2 => {
                let sum = input.option(|r| r.f64())?;
                Acc::SumFloat {
                    sum,
                    values: uncounted(sum.is_some()),
                }
            }
            9 => Acc::SumExact {
                sum: input.option(|r| r.i128())?,
                values: input.i64()?,
            },
            10 => Acc::SumFloat {
                sum: input.option(|r| r.f64())?,
                values: input.i64()?,
            },
            3 => Acc::AvgExact {
                sum: input.i128()?,
                count: input.i64()?,
            },
            4 => Acc::AvgFloat {
                sum: input.f64()?,
                count: input.i64()?,
            },
            5 => Acc::Min(input.option(|r| r.bytes().map(<[u8]>::to_vec))?),
            6 => Acc::Max(input.option(|r| r.bytes().map(<[u8]>::to_vec))?),
            7 => Acc::Distinct(DistinctSet::decode(input)?),
            8 => Acc::Approx(Box::new(HyperLogLog::from_registers(input.bytes()?)?)),
            11 => Acc::Counted(CountedValues::decode(input)?),
            tag => return Err(input.corrupt(&format!("unknown accumulator {tag}"))),
        })
    }
}

/// Values with the number of rows holding each, in the values' order: what
/// MIN, MAX and COUNT(DISTINCT) over a changelog keep. A batch's partial
/// accumulator may count a value below zero (its retraction came before the
/// row it takes back, in another batch); merging adds the counts, and only
/// values held by at least one row count towards the result.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CountedValues {
    rows: std::collections::BTreeMap<Vec<u8>, i64>,
    /// How many values at least one row holds.
    held: usize,
}

impl CountedValues {
    fn add(&mut self, value: &[u8], rows: i64) {
        let before = match self.rows.get_mut(value) {
            Some(count) => {
                let before = *count;
                *count += rows;
                if *count == 0 {
                    self.rows.remove(value);
                }
                before
            }
            None => {
                self.rows.insert(value.to_vec(), rows);
                0
            }
        };
        let after = before + rows;
        match (before > 0, after > 0) {
            (false, true) => self.held += 1,
            (true, false) => self.held -= 1,
            _ => {}
        }
    }

    fn merge(&mut self, other: CountedValues) {
        if self.rows.is_empty() {
            *self = other;
            return;
        }
        for (value, rows) in other.rows {
            self.add(&value, rows);
        }
    }

    fn held(&self) -> impl DoubleEndedIterator<Item = &[u8]> {
        self.rows
            .iter()
            .filter(|(_, rows)| **rows > 0)
            .map(|(value, _)| value.as_slice())
    }

    fn min(&self) -> Option<&[u8]> {
        self.held().next()
    }

    fn max(&self) -> Option<&[u8]> {
        self.held().next_back()
    }

    fn distinct(&self) -> usize {
        self.held
    }

    fn encode(&self, out: &mut ByteWriter) {
        out.u64(self.rows.len() as u64);
        for (value, rows) in &self.rows {
            out.bytes(value);
            out.i64(*rows);
        }
    }

    fn decode(input: &mut ByteReader<'_>) -> Result<Self> {
        let mut values = Self::default();
        for _ in 0..input.u64()? {
            let value = input.bytes()?;
            let rows = input.i64()?;
            if rows == 0 {
                return Err(input.corrupt("a value counted by no rows"));
            }
            values.add(value, rows);
        }
        Ok(values)
    }
}

/// The values count of a sum restored from a checkpoint that did not keep one.
fn uncounted(has_sum: bool) -> i64 {
    match has_sum {
        true => i64::MAX / 2,
        false => 0,
    }
}

fn checked_add(a: i128, b: i128) -> Result<i128> {
    a.checked_add(b)
        .ok_or_else(|| PipelineError::Evaluation("a SUM overflowed 38 decimal digits".to_string()))
}

#[cfg(test)]
mod tests {
    use datafusion::physical_expr::expressions::Column;

    use super::*;

    fn sum(input_type: DataType) -> AggregateCall {
        let output = match &input_type {
            DataType::Float64 => DataType::Float64,
            _ => DataType::Decimal128(38, 0),
        };
        AggregateCall::new(
            AggFunction::Sum,
            Arc::new(Column::new("v", 0)),
            None,
            input_type,
            output,
            1,
        )
        .unwrap()
    }

    fn over_changelog(function: AggFunction) -> AggregateCall {
        AggregateCall::new(
            function,
            Arc::new(Column::new("v", 0)),
            None,
            DataType::Int64,
            DataType::Int64,
            1,
        )
        .unwrap()
        .over_changelog()
    }

    fn results(calls: &[AggregateCall], accs: &[Acc]) -> Vec<Option<i64>> {
        calls
            .iter()
            .zip(accs)
            .map(|(call, acc)| {
                let column = call.finish(&[acc]).unwrap();
                let column = column.as_any().downcast_ref::<Int64Array>().unwrap();
                column.is_valid(0).then(|| column.value(0))
            })
            .collect()
    }

    #[test]
    fn min_max_and_distinct_over_a_changelog_take_values_back_out() {
        let calls: Vec<AggregateCall> = [
            AggFunction::Min,
            AggFunction::Max,
            AggFunction::CountDistinct,
        ]
        .into_iter()
        .map(over_changelog)
        .collect();
        assert!(calls.iter().all(AggregateCall::retractable));
        let column: ArrayRef = Arc::new(Int64Array::from(vec![
            Some(5),
            Some(3),
            Some(3),
            None,
            Some(9),
        ]));
        let batch = RecordBatch::try_from_iter([("v", column)]).unwrap();
        let inputs: Vec<Input> = calls.iter().map(|c| c.input(&batch).unwrap()).collect();
        let mut accs: Vec<Acc> = calls.iter().map(AggregateCall::empty).collect();
        let apply = |accs: &mut Vec<Acc>, rows: &[usize], retract: bool| {
            for (acc, input) in accs.iter_mut().zip(&inputs) {
                for &row in rows {
                    match retract {
                        true => acc.retract(input, row).unwrap(),
                        false => acc.update(input, row).unwrap(),
                    }
                }
            }
        };
        apply(&mut accs, &[0, 1, 2, 3], false);
        assert_eq!(results(&calls, &accs), [Some(3), Some(5), Some(2)]);
        // One of the two 3s taken back: 3 is still held.
        apply(&mut accs, &[1], true);
        assert_eq!(results(&calls, &accs), [Some(3), Some(5), Some(2)]);
        // A later batch retracts the other 3 and the 5 and brings 9: its
        // partial counts go below zero until merged.
        let mut partial: Vec<Acc> = calls.iter().map(AggregateCall::empty).collect();
        apply(&mut partial, &[2, 0], true);
        apply(&mut partial, &[4], false);
        for (acc, part) in accs.iter_mut().zip(partial) {
            acc.merge(part).unwrap();
        }
        assert_eq!(results(&calls, &accs), [Some(9), Some(9), Some(1)]);
        for acc in &accs {
            let mut out = ByteWriter::default();
            acc.encode(&mut out);
            let restored = Acc::decode(&mut ByteReader::new(&out.bytes)).unwrap();
            assert_eq!(&restored, acc);
        }
        apply(&mut accs, &[4], true);
        assert_eq!(results(&calls, &accs), [None, None, Some(0)]);
        // An unheld retraction (a value never added) counts for nothing.
        apply(&mut accs, &[1], true);
        assert_eq!(results(&calls, &accs), [None, None, Some(0)]);
    }

    #[test]
    fn a_sum_whose_values_are_all_taken_back_is_null_again() {
        for (call, input) in [
            (
                sum(DataType::Int64),
                Input::Exact(vec![Some(5), None, Some(-5)]),
            ),
            (
                sum(DataType::Float64),
                Input::Float(vec![Some(5.0), None, Some(-5.0)]),
            ),
        ] {
            let mut acc = call.empty();
            acc.update(&input, 0).unwrap();
            acc.update(&input, 1).unwrap();
            acc.update(&input, 2).unwrap();
            // 5 + NULL + -5 holds two values: 0, not NULL.
            assert!(call.finish(&[&acc]).unwrap().is_valid(0));
            acc.retract(&input, 0).unwrap();
            acc.retract(&input, 2).unwrap();
            // Only the NULL is left.
            assert!(call.finish(&[&acc]).unwrap().is_null(0));
            let mut out = ByteWriter::default();
            acc.encode(&mut out);
            let restored = Acc::decode(&mut ByteReader::new(&out.bytes)).unwrap();
            assert_eq!(restored, acc);
        }
    }
}
