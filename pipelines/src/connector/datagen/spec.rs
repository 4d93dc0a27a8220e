//! A datagen table's options, read and checked against its columns, and the
//! rows they generate. Row `n`'s values depend only on the table, the column
//! and `n`, and its times on when row 0 was generated (`base_ms`, kept in the
//! position's token) and the rate: row `n` is generated at
//! `base_ms + n / rate`. So a restart generates the rows after the last one
//! committed exactly as an uninterrupted run would have, times included, and
//! the tables committed before the target skip what they hold by row number.
//!
//! ```text
//!   'rows-per-second', 'number-of-rows', 'fields.<column>.<option>' ──parse──▶ Spec { columns: [Column { values, null_rate }] }
//!   Spec::rows(table, from, to, base_ms) ──▶ rows from..to: values hashed from (table, column, row), or start + row for a sequence
//! ```

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow::array::{
    ArrayRef, BinaryBuilder, BooleanBuilder, Date32Builder, Decimal128Array, Float32Builder,
    Float64Builder, Int8Builder, Int16Builder, Int32Builder, Int64Builder, StringBuilder,
    Time32MillisecondBuilder, TimestampMillisecondBuilder,
};
use arrow::datatypes::{DataType, Schema, SchemaRef};
use arrow::record_batch::RecordBatch;
use strata_catalog::ddl::OptionProblem;
use strata_catalog::ddl::types::flink_type_name;

use crate::error::Result;

/// Flink's default `'rows-per-second'`.
const DEFAULT_RATE: u64 = 10_000;
/// Flink's default length of a random string.
const DEFAULT_LENGTH: usize = 100;
/// The longest random string or byte string a row may get.
const MAX_LENGTH: usize = 1 << 20;
/// The most bytes of random text a row may hold, all its columns together.
const MAX_ROW_BYTES: usize = 16 << 20;
/// How far back a random time may go: a hundred years.
const MAX_PAST_MS: i64 = 100 * 366 * 86_400_000;
/// The options a column takes (`'fields.<column>.<option>'`).
const FIELD_OPTIONS: [&str; 8] = [
    "kind",
    "min",
    "max",
    "max-past",
    "length",
    "start",
    "end",
    "null-rate",
];

/// What a datagen table generates.
#[derive(Debug, Clone, PartialEq)]
pub struct Spec {
    /// Rows per second of wall-clock time.
    pub rate: u64,
    /// How many rows in all: the smaller of `'number-of-rows'` and the
    /// shortest sequence; `None`: without end.
    pub rows: Option<u64>,
    pub columns: Vec<Column>,
}

/// How one column's values are made.
#[derive(Debug, Clone, PartialEq)]
pub struct Column {
    pub values: Values,
    /// The share of rows whose value is NULL.
    pub null_rate: f64,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Values {
    /// Whole numbers from `min` to `max`, both included.
    Integers {
        min: i64,
        max: i64,
    },
    /// Numbers from `min` to `max`.
    Reals {
        min: f64,
        max: f64,
    },
    /// Decimals from `min` to `max`, both unscaled (`12.34` of scale 2 is 1234).
    Decimals {
        min: i128,
        max: i128,
    },
    Booleans,
    /// Random letters and digits (or bytes) of this length.
    Text {
        length: usize,
    },
    /// `start`, `start + 1`, … up to `end`: row `n` gets `start + n`.
    Sequence {
        start: i64,
        end: i64,
    },
    /// A time up to `max_past_ms` before the row is generated.
    Timestamps {
        max_past_ms: i64,
    },
    /// The date (UTC) the row is generated on.
    Today,
    /// The time of day (UTC) the row is generated at.
    Now,
}

impl Spec {
    /// Reads a table's options against its columns.
    pub fn parse(
        options: &BTreeMap<String, String>,
        schema: &Schema,
    ) -> std::result::Result<Self, OptionProblem> {
        let rate = match options.get("rows-per-second") {
            Some(value) => whole(value, "rows-per-second", 1)?,
            None => DEFAULT_RATE,
        };
        let number = match options.get("number-of-rows") {
            Some(value) => Some(whole(value, "number-of-rows", 0)?),
            None => None,
        };
        let mut fields: BTreeMap<&str, BTreeMap<&str, (&str, &str)>> = BTreeMap::new();
        for (key, value) in options {
            let Some(rest) = key.strip_prefix("fields.") else {
                continue;
            };
            let Some((column, option)) = rest.rsplit_once('.') else {
                return Err(OptionProblem::with(
                    key,
                    format!("'{key}' names no column option"),
                    "write 'fields.<column>.<option>', e.g. 'fields.id.kind' = 'sequence'",
                ));
            };
            if schema.field_with_name(column).is_err() {
                let names: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
                return Err(OptionProblem::with(
                    key,
                    format!("'{key}' names column {column}, which the table does not have"),
                    &format!("the columns are {}", names.join(", ")),
                ));
            }
            if !FIELD_OPTIONS.contains(&option) {
                return Err(OptionProblem::with(
                    key,
                    format!("unknown column option '{option}' in '{key}'"),
                    &format!("a column's options are {}", FIELD_OPTIONS.join(", ")),
                ));
            }
            fields
                .entry(column)
                .or_default()
                .insert(option, (key.as_str(), value.as_str()));
        }
        let mut columns = Vec::new();
        for field in schema.fields() {
            let given = fields.remove(field.name().as_str()).unwrap_or_default();
            columns.push(column(field.name(), field.data_type(), &given)?);
        }
        let text: usize = columns
            .iter()
            .map(|column| match column.values {
                Values::Text { length } => length,
                _ => 0,
            })
            .sum();
        if text > MAX_ROW_BYTES {
            return Err(OptionProblem::table(
                format!("a row would hold {text} bytes of random text, more than {MAX_ROW_BYTES}"),
                "give the STRING and BYTES columns shorter 'fields.<column>.length'",
            ));
        }
        let shortest_sequence = columns
            .iter()
            .filter_map(|column| match column.values {
                Values::Sequence { start, end } => {
                    Some(u64::try_from(end as i128 - start as i128 + 1).unwrap_or(u64::MAX))
                }
                _ => None,
            })
            .min();
        let rows = match (number, shortest_sequence) {
            (Some(number), Some(sequence)) => Some(number.min(sequence)),
            (number, sequence) => number.or(sequence),
        };
        Ok(Self {
            rate,
            rows,
            columns,
        })
    }

    /// About how many bytes a row takes.
    pub fn row_bytes(&self) -> usize {
        self.columns
            .iter()
            .map(|column| match column.values {
                Values::Text { length } => length + 4,
                _ => 8,
            })
            .sum()
    }

    /// When row `row` is generated: `base_ms`, when row 0 was, plus its
    /// share of the rate.
    pub fn generated_ms(&self, base_ms: i64, row: u64) -> i64 {
        base_ms
            .saturating_add((row as i128 * 1000 / self.rate as i128).min(i64::MAX as i128) as i64)
    }

    /// Rows `from` to `to` (excluded) of the table `table`, in `schema`,
    /// row 0 having been generated at `base_ms`.
    pub fn rows(
        &self,
        table: &str,
        schema: &SchemaRef,
        from: u64,
        to: u64,
        base_ms: i64,
    ) -> Result<RecordBatch> {
        let table_seed = twox_hash::XxHash64::oneshot(0, table.as_bytes());
        let columns = self
            .columns
            .iter()
            .zip(schema.fields())
            .map(|(column, field)| {
                let seed = twox_hash::XxHash64::oneshot(table_seed, field.name().as_bytes());
                let at = |row| self.generated_ms(base_ms, row);
                column.generate(seed, field.data_type(), from, to, at)
            })
            .collect::<Result<Vec<ArrayRef>>>()?;
        let options = arrow::record_batch::RecordBatchOptions::new()
            .with_row_count(Some((to - from) as usize));
        Ok(RecordBatch::try_new_with_options(
            schema.clone(),
            columns,
            &options,
        )?)
    }
}

/// How a column of `data_type` is made from its `'fields.<column>.*'` options.
fn column(
    name: &str,
    data_type: &DataType,
    given: &BTreeMap<&str, (&str, &str)>,
) -> std::result::Result<Column, OptionProblem> {
    let option = |key: &str| given.get(key).copied();
    let null_rate = match option("null-rate") {
        Some((key, value)) => value
            .parse::<f64>()
            .ok()
            .filter(|rate| (0.0..=1.0).contains(rate))
            .ok_or_else(|| {
                OptionProblem::with(
                    key,
                    format!("'{value}' is not a share from 0 to 1"),
                    "write e.g. '0.1' for one row in ten",
                )
            })?,
        None => 0.0,
    };
    let sequence = match option("kind") {
        None => false,
        Some((_, "random")) => false,
        Some((_, "sequence")) => true,
        Some((key, other)) => {
            return Err(OptionProblem::with(
                key,
                format!("unknown kind '{other}'"),
                "the kinds are 'random' and 'sequence'",
            ));
        }
    };
    let type_name = flink_type_name(data_type);
    let refuse_others = |allowed: &[&str], what: &str| match given
        .iter()
        .find(|(option, _)| !allowed.contains(option))
    {
        Some((option, (key, _))) => Err(OptionProblem::with(
            key,
            format!("'{option}' does not apply to column {name}, {what} of type {type_name}"),
            &format!("its options are {}", allowed.join(", ")),
        )),
        None => Ok(()),
    };
    let values = if sequence {
        refuse_others(&["kind", "start", "end", "null-rate"], "a sequence")?;
        if !(integer_bounds(data_type).is_some() || is_text(data_type)) {
            return Err(OptionProblem::with(
                given["kind"].0,
                format!("column {name} of type {type_name} cannot be a sequence"),
                "sequences are whole numbers or text; use 'random' for other columns",
            ));
        }
        let bound = |which: &str| -> std::result::Result<i64, OptionProblem> {
            let (key, value) = option(which).ok_or_else(|| {
                OptionProblem::with(
                    given["kind"].0,
                    format!("the sequence of column {name} has no '{which}'"),
                    &format!("add 'fields.{name}.start' and 'fields.{name}.end'"),
                )
            })?;
            value.trim().parse::<i64>().map_err(|_| {
                OptionProblem::with(
                    key,
                    format!("'{value}' is not a whole number"),
                    "write e.g. '1'",
                )
            })
        };
        let (start, end) = (bound("start")?, bound("end")?);
        if start > end {
            return Err(OptionProblem::with(
                given["end"].0,
                format!("the sequence of column {name} ends ({end}) before it starts ({start})"),
                "give an end at or after the start",
            ));
        }
        if let Some((low, high)) = integer_bounds(data_type)
            && (start < low || end > high)
        {
            return Err(OptionProblem::with(
                given["end"].0,
                format!(
                    "the sequence {start}..{end} does not fit column {name} of type {type_name}"
                ),
                &format!("keep it within {low}..{high}"),
            ));
        }
        Values::Sequence { start, end }
    } else if let Some((low, high)) = integer_bounds(data_type) {
        refuse_others(&["kind", "min", "max", "null-rate"], "random")?;
        let (min, max) = min_max(
            given,
            name,
            (low, high),
            |value| {
                value
                    .parse::<i64>()
                    .ok()
                    .filter(|v| (low..=high).contains(v))
            },
            &format!("a whole number that fits {type_name}"),
            &format!("write a number from {low} to {high}"),
        )?;
        Values::Integers { min, max }
    } else if matches!(data_type, DataType::Float32 | DataType::Float64) {
        refuse_others(&["kind", "min", "max", "null-rate"], "random")?;
        let (low, high) = match data_type {
            DataType::Float32 => (f32::MIN as f64, f32::MAX as f64),
            _ => (f64::MIN / 2.0, f64::MAX / 2.0),
        };
        let (min, max) = min_max(
            given,
            name,
            (0.0, 1.0),
            |value| {
                value
                    .parse::<f64>()
                    .ok()
                    .filter(|v| v.is_finite() && (low..=high).contains(v))
            },
            &format!("a number that fits {type_name}"),
            "write e.g. '0.5'",
        )?;
        Values::Reals { min, max }
    } else if let DataType::Decimal128(precision, scale) = *data_type {
        refuse_others(&["kind", "min", "max", "null-rate"], "random")?;
        // The type's bounds, as Flink's: all the digits the precision allows.
        let high = 10i128.pow(u32::from(precision)) - 1;
        let (min, max) = min_max(
            given,
            name,
            (-high, high),
            |value| {
                arrow::compute::kernels::cast_utils::parse_decimal::<
                    arrow::datatypes::Decimal128Type,
                >(value, precision, scale)
                .ok()
                .filter(|v| (-high..=high).contains(v))
            },
            &format!("a number that fits {type_name}"),
            "write e.g. '9.99'",
        )?;
        Values::Decimals { min, max }
    } else if is_text(data_type) || matches!(data_type, DataType::Binary) {
        refuse_others(&["kind", "length", "null-rate"], "random")?;
        let length = match option("length") {
            Some((key, value)) => value
                .trim()
                .parse::<usize>()
                .ok()
                .filter(|&n| n <= MAX_LENGTH)
                .ok_or_else(|| {
                    OptionProblem::with(
                        key,
                        format!("'{value}' is not a length from 0 to {MAX_LENGTH}"),
                        "write e.g. '10'",
                    )
                })?,
            None => DEFAULT_LENGTH,
        };
        Values::Text { length }
    } else if matches!(data_type, DataType::Boolean) {
        refuse_others(&["kind", "null-rate"], "random")?;
        Values::Booleans
    } else if matches!(data_type, DataType::Timestamp(..)) {
        refuse_others(&["kind", "max-past", "null-rate"], "random")?;
        let max_past_ms = match option("max-past") {
            Some((key, value)) => {
                let compact: String = value.split_whitespace().collect();
                // A bare number is milliseconds, as Flink reads a duration.
                let millis = match compact.parse::<u64>() {
                    Ok(millis) => Ok(millis as u128),
                    Err(_) => humantime::parse_duration(&compact)
                        .map(|past| past.as_millis())
                        .map_err(|err| err.to_string()),
                };
                millis
                    .map_err(|err| format!("'{value}' is not a duration ({err})"))
                    .and_then(|millis| match millis <= MAX_PAST_MS as u128 {
                        true => Ok(millis as i64),
                        false => Err(format!("'{value}' goes back more than a hundred years")),
                    })
                    .map_err(|message| OptionProblem::with(key, message, "write e.g. '10 min'"))?
            }
            None => 0,
        };
        Values::Timestamps { max_past_ms }
    } else if matches!(data_type, DataType::Date32) {
        refuse_others(&["kind", "null-rate"], "random")?;
        Values::Today
    } else if matches!(data_type, DataType::Time32(_) | DataType::Time64(_)) {
        refuse_others(&["kind", "null-rate"], "random")?;
        Values::Now
    } else {
        return Err(OptionProblem::table(
            format!("datagen cannot generate column {name} of type {type_name}"),
            "datagen generates BOOLEAN, TINYINT, SMALLINT, INT, BIGINT, FLOAT, DOUBLE, DECIMAL, STRING, BYTES, DATE, TIME and TIMESTAMP columns; compute others in a pipeline's SELECT",
        ));
    };
    Ok(Column { values, null_rate })
}

/// A random column's `'min'` and `'max'`, each read by `parse` (`None`: not
/// `what`), or `defaults` when not given; the min no larger than the max.
fn min_max<T: PartialOrd + Copy>(
    given: &BTreeMap<&str, (&str, &str)>,
    name: &str,
    defaults: (T, T),
    parse: impl Fn(&str) -> Option<T>,
    what: &str,
    hint: &str,
) -> std::result::Result<(T, T), OptionProblem> {
    let bound = |which: &str, default: T| match given.get(which) {
        Some(&(key, value)) => parse(value.trim())
            .ok_or_else(|| OptionProblem::with(key, format!("'{value}' is not {what}"), hint)),
        None => Ok(default),
    };
    let (min, max) = (bound("min", defaults.0)?, bound("max", defaults.1)?);
    if min > max {
        return Err(OptionProblem::with(
            given
                .get("max")
                .or(given.get("min"))
                .map_or("", |(key, _)| key),
            format!("column {name}'s 'min' is above its 'max'"),
            "give a 'min' at or below the 'max'",
        ));
    }
    Ok((min, max))
}

fn whole(value: &str, option: &str, min: u64) -> std::result::Result<u64, OptionProblem> {
    value
        .trim()
        .parse::<u64>()
        .ok()
        .filter(|&n| n >= min)
        .ok_or_else(|| {
            OptionProblem::with(
                option,
                format!("'{value}' is not a whole number of at least {min}"),
                "write e.g. '1000'",
            )
        })
}

fn is_text(data_type: &DataType) -> bool {
    matches!(data_type, DataType::Utf8 | DataType::LargeUtf8)
}

/// The values a column of whole numbers holds.
fn integer_bounds(data_type: &DataType) -> Option<(i64, i64)> {
    match data_type {
        DataType::Int8 => Some((i8::MIN as i64, i8::MAX as i64)),
        DataType::Int16 => Some((i16::MIN as i64, i16::MAX as i64)),
        DataType::Int32 => Some((i32::MIN as i64, i32::MAX as i64)),
        DataType::Int64 => Some((i64::MIN, i64::MAX)),
        _ => None,
    }
}

/// A number that looks random and depends only on the column, the row and `salt`.
fn hashed(column: u64, row: u64, salt: u64) -> u64 {
    let mut bytes = [0u8; 16];
    bytes[..8].copy_from_slice(&row.to_le_bytes());
    bytes[8..].copy_from_slice(&salt.to_le_bytes());
    twox_hash::XxHash64::oneshot(column, &bytes)
}

/// The letters and digits random text is made of.
const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";

impl Column {
    fn is_null(&self, column: u64, row: u64) -> bool {
        self.null_rate > 0.0
            && (hashed(column, row, u64::MAX) as f64 / u64::MAX as f64) < self.null_rate
    }

    /// Rows `from` to `to` of the column whose seed is `column`, row `n`
    /// generated at `at(n)`.
    fn generate(
        &self,
        column: u64,
        data_type: &DataType,
        from: u64,
        to: u64,
        at: impl Fn(u64) -> i64,
    ) -> Result<ArrayRef> {
        let rows = from..to;
        let null = |row: u64| self.is_null(column, row);
        let array: ArrayRef = match &self.values {
            Values::Integers { min, max } => {
                let span = (*max as i128 - *min as i128 + 1) as u128;
                let value = |row: u64| {
                    (*min as i128 + (hashed(column, row, 0) as u128 % span) as i128) as i64
                };
                integers(data_type, rows.map(|row| (!null(row)).then(|| value(row))))?
            }
            Values::Sequence { start, .. } => {
                let value = |row: u64| start + row as i64;
                match is_text(data_type) {
                    true => {
                        let mut builder = StringBuilder::new();
                        for row in rows {
                            builder.append_option((!null(row)).then(|| value(row).to_string()));
                        }
                        Arc::new(builder.finish())
                    }
                    false => integers(data_type, rows.map(|row| (!null(row)).then(|| value(row))))?,
                }
            }
            Values::Reals { min, max } => {
                let value = |row: u64| {
                    min + (hashed(column, row, 0) as f64 / u64::MAX as f64) * (max - min)
                };
                match data_type {
                    DataType::Float32 => {
                        let mut builder = Float32Builder::new();
                        for row in rows {
                            builder.append_option((!null(row)).then(|| value(row) as f32));
                        }
                        Arc::new(builder.finish())
                    }
                    _ => {
                        let mut builder = Float64Builder::new();
                        for row in rows {
                            builder.append_option((!null(row)).then(|| value(row)));
                        }
                        Arc::new(builder.finish())
                    }
                }
            }
            Values::Decimals { min, max } => {
                // DECIMAL(38)'s span is wider than an i128: count it unsigned.
                let span = max.wrapping_sub(*min) as u128 + 1;
                let value = |row: u64| {
                    let wide = (u128::from(hashed(column, row, 0)) << 64)
                        | u128::from(hashed(column, row, 1));
                    min.wrapping_add((wide % span) as i128)
                };
                let values: Decimal128Array =
                    rows.map(|row| (!null(row)).then(|| value(row))).collect();
                let DataType::Decimal128(precision, scale) = *data_type else {
                    unreachable!("decimals are made for DECIMAL columns")
                };
                Arc::new(values.with_precision_and_scale(precision, scale)?)
            }
            Values::Booleans => {
                let mut builder = BooleanBuilder::new();
                for row in rows {
                    builder.append_option((!null(row)).then(|| hashed(column, row, 0) & 1 == 1));
                }
                Arc::new(builder.finish())
            }
            Values::Text { length } => {
                let text = |row: u64| -> Vec<u8> {
                    (0..*length as u64)
                        .map(|at| {
                            let hash = hashed(column, row, 1 + at / 8);
                            let byte = (hash >> ((at % 8) * 8)) as usize;
                            ALPHABET[byte % ALPHABET.len()]
                        })
                        .collect()
                };
                match data_type {
                    DataType::Binary => {
                        let mut builder = BinaryBuilder::new();
                        for row in rows {
                            builder.append_option((!null(row)).then(|| text(row)));
                        }
                        Arc::new(builder.finish())
                    }
                    _ => {
                        let mut builder = StringBuilder::new();
                        for row in rows {
                            builder.append_option((!null(row)).then(|| {
                                String::from_utf8(text(row)).expect("letters and digits")
                            }));
                        }
                        Arc::new(builder.finish())
                    }
                }
            }
            Values::Timestamps { max_past_ms } => {
                let mut builder = TimestampMillisecondBuilder::new();
                for row in rows {
                    let past = (hashed(column, row, 0) % (*max_past_ms as u64 + 1)) as i64;
                    builder.append_option((!null(row)).then(|| at(row).saturating_sub(past)));
                }
                arrow::compute::cast(&builder.finish(), data_type)?
            }
            Values::Today => {
                let mut builder = Date32Builder::new();
                for row in rows {
                    let day = at(row).div_euclid(86_400_000) as i32;
                    builder.append_option((!null(row)).then_some(day));
                }
                Arc::new(builder.finish())
            }
            Values::Now => {
                let mut builder = Time32MillisecondBuilder::new();
                for row in rows {
                    let of_day = at(row).rem_euclid(86_400_000) as i32;
                    builder.append_option((!null(row)).then_some(of_day));
                }
                arrow::compute::cast(&builder.finish(), data_type)?
            }
        };
        Ok(array)
    }
}

/// Whole numbers as a column of `data_type` (whose bounds they keep).
fn integers(data_type: &DataType, values: impl Iterator<Item = Option<i64>>) -> Result<ArrayRef> {
    let array: ArrayRef = match data_type {
        DataType::Int8 => {
            let mut builder = Int8Builder::new();
            values.for_each(|v| builder.append_option(v.map(|v| v as i8)));
            Arc::new(builder.finish())
        }
        DataType::Int16 => {
            let mut builder = Int16Builder::new();
            values.for_each(|v| builder.append_option(v.map(|v| v as i16)));
            Arc::new(builder.finish())
        }
        DataType::Int32 => {
            let mut builder = Int32Builder::new();
            values.for_each(|v| builder.append_option(v.map(|v| v as i32)));
            Arc::new(builder.finish())
        }
        _ => {
            let mut builder = Int64Builder::new();
            values.for_each(|v| builder.append_option(v));
            Arc::new(builder.finish())
        }
    };
    Ok(array)
}

#[cfg(test)]
mod tests {
    use arrow::array::{Array, AsArray};
    use arrow::datatypes::{Field, Int64Type, TimeUnit};

    use super::*;

    fn schema() -> SchemaRef {
        Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, false),
            Field::new("amount", DataType::Int32, true),
            Field::new("name", DataType::Utf8, true),
            Field::new("ts", DataType::Timestamp(TimeUnit::Millisecond, None), true),
        ]))
    }

    fn options(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn problem(pairs: &[(&str, &str)]) -> OptionProblem {
        Spec::parse(&options(pairs), &schema()).unwrap_err()
    }

    #[test]
    fn options_are_read_with_flinks_defaults_and_the_shortest_bound_ends_the_table() {
        let spec = Spec::parse(&options(&[]), &schema()).unwrap();
        assert_eq!((spec.rate, spec.rows), (10_000, None));
        assert_eq!(spec.columns[2].values, Values::Text { length: 100 });
        let spec = Spec::parse(
            &options(&[
                ("rows-per-second", "5"),
                ("number-of-rows", "100"),
                ("fields.id.kind", "sequence"),
                ("fields.id.start", "1"),
                ("fields.id.end", "10"),
                ("fields.amount.min", "1"),
                ("fields.amount.max", "9"),
                ("fields.name.length", "4"),
                ("fields.name.null-rate", "0.5"),
                ("fields.ts.max-past", "5 s"),
            ]),
            &schema(),
        )
        .unwrap();
        assert_eq!((spec.rate, spec.rows), (5, Some(10)));
        assert_eq!(spec.columns[1].values, Values::Integers { min: 1, max: 9 });
        assert_eq!(
            spec.columns[3].values,
            Values::Timestamps { max_past_ms: 5000 }
        );
    }

    #[test]
    fn bad_options_are_refused_naming_the_option() {
        // The options given, the option refused, and what the refusal says.
        type Case<'a> = (&'a [(&'a str, &'a str)], &'a str, &'a str);
        let cases: [Case; 9] = [
            (&[("rows-per-second", "0")], "rows-per-second", "at least 1"),
            (
                &[("fields.nope.kind", "random")],
                "fields.nope.kind",
                "does not have",
            ),
            (
                &[("fields.id.colour", "red")],
                "fields.id.colour",
                "unknown column option",
            ),
            (
                &[("fields.id.kind", "shuffle")],
                "fields.id.kind",
                "unknown kind",
            ),
            (
                &[("fields.id.kind", "sequence"), ("fields.id.start", "1")],
                "fields.id.kind",
                "no 'end'",
            ),
            (
                &[
                    ("fields.id.kind", "sequence"),
                    ("fields.id.start", "5"),
                    ("fields.id.end", "1"),
                ],
                "fields.id.end",
                "before it starts",
            ),
            (
                &[("fields.amount.max", "99999999999")],
                "fields.amount.max",
                "fits INT",
            ),
            (
                &[("fields.name.min", "1")],
                "fields.name.min",
                "does not apply",
            ),
            (
                &[("fields.name.null-rate", "2")],
                "fields.name.null-rate",
                "from 0 to 1",
            ),
        ];
        for (given, option, says) in cases {
            let problem = problem(given);
            assert_eq!(
                problem.option.as_deref(),
                Some(option),
                "{given:?}: {problem:?}"
            );
            assert!(
                problem.message.contains(says),
                "{given:?}: {}",
                problem.message
            );
        }
        let lists = Schema::new(vec![Field::new(
            "tags",
            DataType::List(Arc::new(Field::new("item", DataType::Utf8, true))),
            true,
        )]);
        let problem = Spec::parse(&options(&[]), &lists).unwrap_err();
        assert_eq!(problem.option, None);
        assert!(problem.message.contains("ARRAY"), "{}", problem.message);
        let price = Schema::new(vec![Field::new("price", DataType::Decimal128(6, 2), true)]);
        let problem =
            Spec::parse(&options(&[("fields.price.max", "10000.00")]), &price).unwrap_err();
        assert_eq!(problem.option.as_deref(), Some("fields.price.max"));
    }

    #[test]
    fn dates_and_times_are_those_of_the_rows_generation() {
        let schema = Arc::new(Schema::new(vec![
            Field::new("day", DataType::Date32, false),
            Field::new(
                "at",
                DataType::Time64(arrow::datatypes::TimeUnit::Microsecond),
                false,
            ),
        ]));
        let spec = Spec::parse(&options(&[("rows-per-second", "1")]), &schema).unwrap();
        // 2023-11-14T22:13:20Z, then a row a second: row 9,999 comes after midnight.
        let base = 1_700_000_000_000;
        let rows = spec.rows("shop.clock", &schema, 0, 10_000, base).unwrap();
        let days = rows
            .column(0)
            .as_primitive::<arrow::datatypes::Date32Type>();
        assert_eq!((days.value(0), days.value(9_999)), (19_675, 19_676));
        let times = rows
            .column(1)
            .as_primitive::<arrow::datatypes::Time64MicrosecondType>();
        assert_eq!(times.value(0), 80_000_000_000);
        assert_eq!(times.value(1), 80_001_000_000);
    }

    #[test]
    fn decimals_keep_their_bounds_and_scale() {
        let schema = Arc::new(Schema::new(vec![Field::new(
            "price",
            DataType::Decimal128(10, 2),
            false,
        )]));
        let spec = Spec::parse(
            &options(&[("fields.price.min", "9.95"), ("fields.price.max", "10.05")]),
            &schema,
        )
        .unwrap();
        let rows = spec.rows("shop.items", &schema, 0, 500, 0).unwrap();
        let prices = rows
            .column(0)
            .as_primitive::<arrow::datatypes::Decimal128Type>();
        assert_eq!(prices.data_type(), &DataType::Decimal128(10, 2));
        let seen: std::collections::BTreeSet<i128> = prices.iter().flatten().collect();
        assert_eq!(
            seen,
            (995..=1005).collect(),
            "every cent from 9.95 to 10.05"
        );
        let widest = Arc::new(Schema::new(vec![Field::new(
            "d",
            DataType::Decimal128(38, 0),
            false,
        )]));
        let spec = Spec::parse(&options(&[]), &widest).unwrap();
        let rows = spec.rows("shop.items", &widest, 0, 100, 0).unwrap();
        let values = rows
            .column(0)
            .as_primitive::<arrow::datatypes::Decimal128Type>();
        let high = 10i128.pow(38) - 1;
        assert!(values.iter().flatten().all(|v| (-high..=high).contains(&v)));
        assert!(values.iter().flatten().any(|v| v < 0) && values.iter().flatten().any(|v| v > 0));
    }

    #[test]
    fn a_row_is_the_same_whenever_it_is_generated_and_values_keep_their_bounds() {
        let spec = Spec::parse(
            &options(&[
                ("fields.id.kind", "sequence"),
                ("fields.id.start", "100"),
                ("fields.id.end", "1099"),
                ("fields.amount.min", "-3"),
                ("fields.amount.max", "3"),
                ("fields.name.length", "6"),
                ("fields.name.null-rate", "0.25"),
                ("fields.ts.max-past", "1 min"),
            ]),
            &schema(),
        )
        .unwrap();
        // 1,000 rows at 10,000 a second: generated over 100 ms after the base.
        let base = 1_700_000_000_000;
        let whole = spec.rows("shop.orders", &schema(), 0, 1000, base).unwrap();
        let tail = spec
            .rows("shop.orders", &schema(), 600, 1000, base)
            .unwrap();
        assert_eq!(whole.slice(600, 400), tail);
        let other = spec.rows("shop.users", &schema(), 0, 1000, base).unwrap();
        assert_ne!(
            whole.column(1),
            other.column(1),
            "another table, other values"
        );
        let ids = whole.column(0).as_primitive::<Int64Type>();
        assert_eq!((ids.value(0), ids.value(999)), (100, 1099));
        let amounts = whole
            .column(1)
            .as_primitive::<arrow::datatypes::Int32Type>();
        let seen: std::collections::BTreeSet<i32> = amounts.iter().flatten().collect();
        assert_eq!(seen, (-3..=3).collect());
        let names = whole.column(2).as_string::<i32>();
        let nulls = names.null_count();
        assert!(
            (150..350).contains(&nulls),
            "{nulls} of 1000 NULL names at a rate of 0.25"
        );
        assert!(
            names
                .iter()
                .flatten()
                .all(|n| n.len() == 6 && n.bytes().all(|b| ALPHABET.contains(&b)))
        );
        let times = whole
            .column(3)
            .as_primitive::<arrow::datatypes::TimestampMillisecondType>();
        assert!(
            times
                .iter()
                .flatten()
                .all(|t| (base - 60_000..=base + 100).contains(&t))
        );
        assert!(
            times
                .iter()
                .flatten()
                .collect::<std::collections::BTreeSet<_>>()
                .len()
                > 900
        );
    }
}
