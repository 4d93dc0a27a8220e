//! Flink SQL functions DataFusion lacks under Flink's name, or has with
//! another meaning, so that Flink jobs run as written and never compute
//! something else silently: each is rewritten to DataFusion's own expression
//! when the plan is simplified, and costs nothing at run time.
//!
//! ```text
//!   MOD(a, b)                       ──simplify──▶  a % b
//!   DATE_FORMAT(ts, 'yyyy-MM-dd')   ──simplify──▶  to_char(CAST(ts AS TIMESTAMP(3)), '%Y-%m-%d')
//!   TO_TIMESTAMP(s [, 'Java fmt'])  ──simplify──▶  to_timestamp_millis(s, '%Y-%m-%d %H:%M:%S' | fmt)
//!   FROM_UNIXTIME(n [, 'Java fmt']) ──simplify──▶  to_char(to_timestamp_seconds(n), …)
//!   HOUR(ts), DAYOFMONTH(ts), …     ──simplify──▶  CAST(date_part('hour', ts) AS BIGINT)
//!   TO_DATE(s [, 'Java fmt'])       ──simplify──▶  to_date(s, '%Y-%m-%d' | fmt)
//!   LOG(x), LOG(b, x)               ──simplify──▶  ln(x), log(b, x)          (DataFusion's log(x) is base 10)
//!   CONCAT(a, b, …)                 ──simplify──▶  CASE WHEN a IS NULL OR … THEN NULL ELSE concat(…) END
//!   REGEXP_REPLACE(s, re, r)        ──simplify──▶  regexp_replace(s, re, r, 'g')   (every match, as in Flink)
//!   GREATEST(a, …), LEAST(a, …)     ──simplify──▶  CASE WHEN a IS NULL OR … THEN NULL ELSE greatest(…) END
//!   PROCTIME()                      ──each batch──▶  the wall clock (never folded into a constant)
//!   CURRENT_WATERMARK(ts)           ──each batch──▶  the pipeline's watermark as of its last commit (NULL in queries)
//!   ROW_NUMBER() OVER (…)           ──window──▶  1, 2, … as BIGINT             (DataFusion's is unsigned)
//!   AVG(BIGINT), AVG(FLOAT)         ──aggregate──▶  BIGINT, FLOAT (in pipelines; see `avg`)
//!   TIMESTAMPADD(DAY, n, ts), TIMESTAMPDIFF, CONVERT_TZ ──UDF──▶ see `timestamp`
//!   CROSS JOIN UNNEST(c) AS t(a, b) (pipelines) ──rewritten──▶ unnest(flink_unnest_rows(c)), see `unnest_rows`
//! ```
//!
//! Flink's patterns are Java's `SimpleDateFormat` letters; they are translated
//! to chrono's, and a letter without a translation is refused with its place.
//! Times are UTC (Flink uses the session's time zone, UTC by default).

mod avg;
mod regexp_extract;
mod str_to_map;
mod timestamp;
mod unnest_rows;

pub use timestamp::{quote_time_units, quote_time_units_in};
pub use unnest_rows::UNNEST_ROWS;

use std::sync::Arc;

use datafusion::arrow::datatypes::DataType;
use datafusion::common::Result;
use datafusion::logical_expr::simplify::{ExprSimplifyResult, SimplifyContext};
use datafusion::logical_expr::{
    ColumnarValue, Expr, LimitEffect, Operator, PartitionEvaluator, ScalarFunctionArgs, ScalarUDF,
    ScalarUDFImpl, Signature, Volatility, WindowUDF, WindowUDFImpl, binary_expr,
};

/// Registers Flink's functions and aggregates in a pipeline's `registry`:
/// [`register_flink_functions`], and AVG typed as Flink types it.
pub fn register_flink_pipeline_functions(
    registry: &mut dyn datafusion::execution::FunctionRegistry,
) -> Result<()> {
    register_flink_functions(registry)?;
    registry.register_udaf(Arc::new(avg::FlinkAvg::udaf()))?;
    registry.register_udf(Arc::new(ScalarUDF::new_from_impl(
        unnest_rows::UnnestRows::new(),
    )))?;
    Ok(())
}

/// Registers Flink's functions in `registry`, over DataFusion's of the same name.
pub fn register_flink_functions(
    registry: &mut dyn datafusion::execution::FunctionRegistry,
) -> Result<()> {
    for function in flink_functions() {
        registry.register_udf(function)?;
    }
    registry.register_udwf(Arc::new(WindowUDF::new_from_impl(RowNumber::new())))?;
    Ok(())
}

/// Flink's `ROW_NUMBER()`: the number of each row in its partition from 1,
/// typed BIGINT as Flink types it (DataFusion's is an unsigned 64-bit number,
/// which a BIGINT column would only take with a CAST).
#[derive(Debug, PartialEq, Eq, Hash)]
struct RowNumber {
    signature: Signature,
    /// DataFusion's, for `information_schema.routines`.
    documentation: Option<datafusion::logical_expr::Documentation>,
}

impl RowNumber {
    fn new() -> Self {
        Self {
            signature: Signature::nullary(Volatility::Immutable),
            documentation: datafusion::functions_window::row_number::row_number_udwf()
                .documentation()
                .cloned(),
        }
    }
}

impl WindowUDFImpl for RowNumber {
    fn name(&self) -> &str {
        "row_number"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn partition_evaluator(
        &self,
        _args: datafusion::logical_expr::function::PartitionEvaluatorArgs,
    ) -> Result<Box<dyn PartitionEvaluator>> {
        Ok(Box::<Numbering>::default())
    }

    fn field(
        &self,
        field_args: datafusion::logical_expr::function::WindowUDFFieldArgs,
    ) -> Result<datafusion::arrow::datatypes::FieldRef> {
        Ok(
            datafusion::arrow::datatypes::Field::new(field_args.name(), DataType::Int64, false)
                .into(),
        )
    }

    fn documentation(&self) -> Option<&datafusion::logical_expr::Documentation> {
        self.documentation.as_ref()
    }

    fn sort_options(&self) -> Option<datafusion::arrow::compute::SortOptions> {
        Some(datafusion::arrow::compute::SortOptions {
            descending: false,
            nulls_first: false,
        })
    }

    fn limit_effect(
        &self,
        _args: &[Arc<dyn datafusion::physical_expr::PhysicalExpr>],
    ) -> LimitEffect {
        LimitEffect::None
    }
}

/// Numbers the rows of one partition, in order.
#[derive(Debug, Default)]
struct Numbering {
    numbered: i64,
}

impl PartitionEvaluator for Numbering {
    fn is_causal(&self) -> bool {
        true
    }

    fn evaluate_all(
        &mut self,
        _values: &[datafusion::arrow::array::ArrayRef],
        num_rows: usize,
    ) -> Result<datafusion::arrow::array::ArrayRef> {
        Ok(Arc::new(
            datafusion::arrow::array::Int64Array::from_iter_values(1..=num_rows as i64),
        ))
    }

    fn evaluate(
        &mut self,
        _values: &[datafusion::arrow::array::ArrayRef],
        _range: &std::ops::Range<usize>,
    ) -> Result<datafusion::common::ScalarValue> {
        self.numbered += 1;
        Ok(datafusion::common::ScalarValue::Int64(Some(self.numbered)))
    }

    fn supports_bounded_execution(&self) -> bool {
        true
    }
}

/// `array` as strings (a UDF's argument coerced to Utf8).
fn utf8_strings(
    array: &datafusion::arrow::array::ArrayRef,
) -> Result<datafusion::arrow::array::StringArray> {
    let cast = datafusion::arrow::compute::cast(array, &DataType::Utf8)?;
    Ok(cast
        .as_any()
        .downcast_ref::<datafusion::arrow::array::StringArray>()
        .expect("cast to Utf8")
        .clone())
}

/// Regular expressions compiled once per batch, by pattern (or why one does not compile).
#[derive(Default)]
struct Regexes(std::collections::HashMap<String, std::result::Result<regex::Regex, String>>);

impl Regexes {
    /// `pattern` compiled, or why it does not compile.
    fn get(&mut self, pattern: &str) -> std::result::Result<&regex::Regex, &str> {
        self.0
            .entry(pattern.to_string())
            .or_insert_with(|| regex::Regex::new(pattern).map_err(|err| err.to_string()))
            .as_ref()
            .map_err(String::as_str)
    }
}

/// A UDF's arguments as arrays of `rows` rows each (a constant repeated).
fn argument_arrays(args: &ScalarFunctionArgs) -> Result<Vec<datafusion::arrow::array::ArrayRef>> {
    args.args
        .iter()
        .map(|arg| arg.to_array(args.number_rows))
        .collect()
}

/// The scalar functions to register in every session that plans Flink SQL.
fn flink_functions() -> Vec<Arc<ScalarUDF>> {
    let mut functions = vec![
        Arc::new(ScalarUDF::new_from_impl(Mod::new())),
        Arc::new(ScalarUDF::new_from_impl(Proctime::new())),
        Arc::new(ScalarUDF::new_from_impl(CurrentWatermark::unbound())),
        Arc::new(ScalarUDF::new_from_impl(
            regexp_extract::RegexpExtract::new(),
        )),
        Arc::new(ScalarUDF::new_from_impl(str_to_map::StrToMap::new())),
        Arc::new(ScalarUDF::new_from_impl(timestamp::TimestampAdd::new())),
        Arc::new(ScalarUDF::new_from_impl(timestamp::TimestampDiff::new())),
        Arc::new(ScalarUDF::new_from_impl(timestamp::ConvertTz::new())),
        Arc::new(ScalarUDF::new_from_impl(NullIfAnyNull {
            own: datafusion::functions::core::greatest(),
        })),
        Arc::new(ScalarUDF::new_from_impl(NullIfAnyNull {
            own: datafusion::functions::core::least(),
        })),
    ];
    let rewritten = [
        Rewritten::new("date_format", DataType::Utf8, date_format),
        Rewritten::new("to_timestamp", timestamp_ms(), to_timestamp),
        Rewritten::new("from_unixtime", DataType::Utf8, from_unixtime),
        Rewritten::new("to_date", DataType::Date32, to_date),
        Rewritten::new("log", DataType::Float64, log),
        Rewritten::new("concat", DataType::Utf8, concat),
        Rewritten::new("regexp_replace", DataType::Utf8, regexp_replace),
        Rewritten::new("split_index", DataType::Utf8, split_index),
    ];
    functions.extend(
        rewritten
            .into_iter()
            .chain(
                DATE_PARTS
                    .iter()
                    .map(|(name, _)| Rewritten::new(name, DataType::Int64, date_part_of)),
            )
            .map(|f| Arc::new(ScalarUDF::new_from_impl(f))),
    );
    functions
}

/// Flink's `HOUR(ts)` and its kin, with the part `date_part` calls them by.
const DATE_PARTS: [(&str, &str); 9] = [
    ("year", "year"),
    ("quarter", "quarter"),
    ("month", "month"),
    ("week", "week"),
    ("dayofyear", "doy"),
    ("dayofmonth", "day"),
    ("hour", "hour"),
    ("minute", "minute"),
    ("second", "second"),
];

fn timestamp_ms() -> DataType {
    DataType::Timestamp(datafusion::arrow::datatypes::TimeUnit::Millisecond, None)
}

/// A Flink function planned as a DataFusion expression; its name is its identity.
#[derive(Debug)]
struct Rewritten {
    name: &'static str,
    signature: Signature,
    output: DataType,
    rewrite: fn(&str, Vec<Expr>) -> Result<Expr>,
}

impl PartialEq for Rewritten {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name
    }
}

impl Eq for Rewritten {}

impl std::hash::Hash for Rewritten {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.name.hash(state);
    }
}

impl Rewritten {
    fn new(
        name: &'static str,
        output: DataType,
        rewrite: fn(&str, Vec<Expr>) -> Result<Expr>,
    ) -> Self {
        Self {
            name,
            signature: Signature::variadic_any(Volatility::Immutable),
            output,
            rewrite,
        }
    }
}

impl ScalarUDFImpl for Rewritten {
    fn name(&self) -> &str {
        self.name
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(self.output.clone())
    }

    fn invoke_with_args(&self, _args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        datafusion::common::internal_err!("{} is rewritten before it runs", self.name)
    }

    fn simplify(&self, args: Vec<Expr>, _info: &SimplifyContext) -> Result<ExprSimplifyResult> {
        (self.rewrite)(self.name, args).map(ExprSimplifyResult::Simplified)
    }
}

/// The arguments of a call that takes `min` to `max` of them.
fn arity(name: &str, args: Vec<Expr>, min: usize, max: usize, usage: &str) -> Result<Vec<Expr>> {
    if (min..=max).contains(&args.len()) {
        Ok(args)
    } else {
        datafusion::common::plan_err!(
            "{} takes {usage}, not {} arguments",
            name.to_ascii_uppercase(),
            args.len()
        )
    }
}

/// A pattern argument, which must be a literal string, as chrono's.
fn pattern(name: &str, expr: &Expr) -> Result<String> {
    match expr {
        Expr::Literal(datafusion::common::ScalarValue::Utf8(Some(text)), _)
        | Expr::Literal(datafusion::common::ScalarValue::LargeUtf8(Some(text)), _)
        | Expr::Literal(datafusion::common::ScalarValue::Utf8View(Some(text)), _) => {
            java_to_chrono(text).map_err(|message| {
                datafusion::error::DataFusionError::Plan(format!(
                    "{}: {message}",
                    name.to_ascii_uppercase()
                ))
            })
        }
        _ => datafusion::common::plan_err!(
            "{}'s format must be a string literal such as 'yyyy-MM-dd HH:mm:ss'",
            name.to_ascii_uppercase()
        ),
    }
}

/// `DATE_FORMAT(ts, 'pattern')`: the time as text, in a Java pattern.
fn date_format(name: &str, args: Vec<Expr>) -> Result<Expr> {
    let args = arity(name, args, 2, 2, "a timestamp (or its text) and a pattern")?;
    let format = pattern(name, &args[1])?;
    let time = args.into_iter().next().expect("two arguments");
    Ok(datafusion::functions::expr_fn::to_char(
        datafusion::logical_expr::cast(time, timestamp_ms()),
        datafusion::logical_expr::lit(format),
    ))
}

/// `TO_TIMESTAMP(text [, 'pattern'])`: text in `yyyy-MM-dd HH:mm:ss` (with an
/// optional fraction), or in the pattern, as a TIMESTAMP(3).
fn to_timestamp(name: &str, args: Vec<Expr>) -> Result<Expr> {
    let mut args = arity(name, args, 1, 2, "a string and an optional pattern")?;
    let formats = match args.get(1) {
        Some(format) => vec![pattern(name, format)?],
        None => vec![
            "%Y-%m-%d %H:%M:%S%.f".to_string(),
            "%Y-%m-%d %H:%M:%S".to_string(),
        ],
    };
    args.truncate(1);
    args.extend(formats.into_iter().map(datafusion::logical_expr::lit));
    let parse = datafusion::functions::datetime::to_timestamp_millis(
        &datafusion::config::ConfigOptions::default(),
    );
    Ok(datafusion::logical_expr::cast(
        parse.call(args),
        timestamp_ms(),
    ))
}

/// `FROM_UNIXTIME(seconds [, 'pattern'])`: the time as text, `yyyy-MM-dd HH:mm:ss` by default.
fn from_unixtime(name: &str, args: Vec<Expr>) -> Result<Expr> {
    let args = arity(
        name,
        args,
        1,
        2,
        "seconds since the epoch and an optional pattern",
    )?;
    let format = match args.get(1) {
        Some(format) => pattern(name, format)?,
        None => "%Y-%m-%d %H:%M:%S".to_string(),
    };
    let seconds = args.into_iter().next().expect("one argument");
    let time = datafusion::functions::datetime::to_timestamp_seconds(
        &datafusion::config::ConfigOptions::default(),
    )
    .call(vec![datafusion::logical_expr::cast(
        seconds,
        DataType::Int64,
    )]);
    Ok(datafusion::functions::expr_fn::to_char(
        time,
        datafusion::logical_expr::lit(format),
    ))
}

/// `TO_DATE(text [, 'pattern'])`: text in `yyyy-MM-dd`, or in the Java pattern, as a DATE.
fn to_date(name: &str, args: Vec<Expr>) -> Result<Expr> {
    let mut args = arity(name, args, 1, 2, "a string and an optional pattern")?;
    let format = match args.get(1) {
        Some(format) => pattern(name, format)?,
        None => "%Y-%m-%d".to_string(),
    };
    args.truncate(1);
    args.push(datafusion::logical_expr::lit(format));
    Ok(datafusion::logical_expr::cast(
        datafusion::functions::expr_fn::to_date(args),
        DataType::Date32,
    ))
}

/// `LOG(x)` is the natural logarithm in Flink (DataFusion's is base 10);
/// `LOG(base, x)` is the same in both.
fn log(name: &str, args: Vec<Expr>) -> Result<Expr> {
    let mut args = arity(name, args, 1, 2, "a number, or a base and a number")?;
    let double = |expr: Expr| datafusion::logical_expr::cast(expr, DataType::Float64);
    Ok(match args.len() {
        1 => datafusion::functions::expr_fn::ln(double(args.remove(0))),
        _ => {
            let x = args.remove(1);
            datafusion::functions::expr_fn::log(double(args.remove(0)), double(x))
        }
    })
}

/// `CONCAT(a, b, …)` is NULL when any argument is, in Flink (DataFusion's
/// skips NULLs, as `CONCAT_WS` does in both).
fn concat(name: &str, args: Vec<Expr>) -> Result<Expr> {
    let args = arity(name, args, 1, usize::MAX, "one or more strings")?;
    let any_null = any_is_null(&args);
    let joined = datafusion::logical_expr::cast(
        datafusion::functions::expr_fn::concat(args),
        DataType::Utf8,
    );
    datafusion::logical_expr::when(
        any_null,
        datafusion::logical_expr::lit(datafusion::common::ScalarValue::Utf8(None)),
    )
    .otherwise(joined)
}

/// `a IS NULL OR b IS NULL OR …`: when Flink's NULL-propagating functions are NULL.
fn any_is_null(args: &[Expr]) -> Expr {
    args.iter()
        .map(|arg| arg.clone().is_null())
        .reduce(Expr::or)
        .expect("at least one argument")
}

/// `REGEXP_REPLACE(text, regex, replacement)` replaces every match in Flink
/// (DataFusion's replaces the first unless told `'g'`).
fn regexp_replace(name: &str, args: Vec<Expr>) -> Result<Expr> {
    let mut args = arity(
        name,
        args,
        3,
        3,
        "a string, a regular expression and a replacement",
    )?;
    let replacement = args.remove(2);
    let regex = args.remove(1);
    let text = args.remove(0);
    Ok(datafusion::logical_expr::cast(
        datafusion::functions::expr_fn::regexp_replace(
            text,
            regex,
            replacement,
            Some(datafusion::logical_expr::lit("g")),
        ),
        DataType::Utf8,
    ))
}

/// `SPLIT_INDEX(text, delimiter, index)`: the `index`-th (from 0) part of
/// `text` split at `delimiter`, NULL when there is no such part (DataFusion's
/// `split_part` counts from 1, gives '' past the end and counts negative
/// indexes from the end).
fn split_index(name: &str, args: Vec<Expr>) -> Result<Expr> {
    use datafusion::functions::expr_fn::{character_length, replace, split_part};
    use datafusion::logical_expr::{cast, lit, when};
    let mut args = arity(name, args, 3, 3, "a string, a delimiter and an index")?;
    let index = cast(args.remove(2), DataType::Int64);
    let delimiter = cast(args.remove(1), DataType::Utf8);
    let text = cast(args.remove(0), DataType::Utf8);
    // Rewritten after type coercion: every length is made a BIGINT here.
    let length = |text: Expr| cast(character_length(text), DataType::Int64);
    // How many parts there are: one more than the delimiters in the text.
    let delimiters = (length(text.clone())
        - length(replace(text.clone(), delimiter.clone(), lit(""))))
        / length(delimiter.clone());
    let parts = delimiters + lit(1i64);
    when(
        index
            .clone()
            .gt_eq(lit(0i64))
            .and(index.clone().lt(parts))
            .and(length(delimiter.clone()).gt(lit(0i64)))
            .and(length(text.clone()).gt(lit(0i64))),
        cast(
            split_part(text, delimiter, index + lit(1i64)),
            DataType::Utf8,
        ),
    )
    .end()
}

/// `HOUR(ts)` and its kin: one field of a time, as a BIGINT.
fn date_part_of(name: &str, args: Vec<Expr>) -> Result<Expr> {
    let args = arity(name, args, 1, 1, "one date or timestamp")?;
    let part = DATE_PARTS
        .iter()
        .find(|(flink, _)| *flink == name)
        .map(|(_, part)| *part)
        .expect("registered from DATE_PARTS");
    let time = args.into_iter().next().expect("one argument");
    Ok(datafusion::logical_expr::cast(
        datafusion::functions::expr_fn::date_part(datafusion::logical_expr::lit(part), time),
        DataType::Int64,
    ))
}

/// Translates a Java `SimpleDateFormat` pattern (Flink's) into chrono's
/// `strftime` one; a letter chrono has no equivalent for is refused.
pub fn java_to_chrono(java: &str) -> std::result::Result<String, String> {
    let chars: Vec<char> = java.chars().collect();
    let mut out = String::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c == '\'' {
            // 'text' is literal; '' is a quote.
            let mut j = i + 1;
            if chars.get(j) == Some(&'\'') {
                out.push('\'');
                i += 2;
                continue;
            }
            while j < chars.len() && chars[j] != '\'' {
                push_literal(&mut out, chars[j]);
                j += 1;
            }
            if j == chars.len() {
                return Err(format!("pattern {java:?} has an unclosed quote"));
            }
            i = j + 1;
            continue;
        }
        if !c.is_ascii_alphabetic() {
            push_literal(&mut out, c);
            i += 1;
            continue;
        }
        let run = chars[i..].iter().take_while(|&&d| d == c).count();
        let translated = match (c, run) {
            ('y', 2) => "%y",
            ('y', _) => "%Y",
            ('M', 1) => "%-m",
            ('M', 2) => "%m",
            ('M', 3) => "%b",
            ('M', _) => "%B",
            ('d', 1) => "%-d",
            ('d', _) => "%d",
            ('D', _) => "%j",
            ('H', 1) => "%-H",
            ('H', _) => "%H",
            ('h', 1) => "%-I",
            ('h', _) => "%I",
            ('m', 1) => "%-M",
            ('m', _) => "%M",
            ('s', 1) => "%-S",
            ('s', _) => "%S",
            ('S', 3) => "%3f",
            ('S', 6) => "%6f",
            ('S', 9) => "%9f",
            ('a', _) => "%p",
            ('E', 1..=3) => "%a",
            ('E', _) => "%A",
            ('u', _) => "%u",
            ('Z', _) => "%z",
            ('X', _) => "%:z",
            _ => {
                return Err(format!(
                    "pattern letter '{}' (at {} in {java:?}) has no equivalent here; the supported letters are y M d D H h m s S (3, 6 or 9) a E u Z X",
                    c.to_string().repeat(run),
                    i + 1
                ));
            }
        };
        out.push_str(translated);
        i += run;
    }
    Ok(out)
}

fn push_literal(out: &mut String, c: char) {
    if c == '%' {
        out.push_str("%%");
    } else {
        out.push(c);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn java_patterns_become_chrono_ones() {
        assert_eq!(java_to_chrono("yyyy-MM-dd").unwrap(), "%Y-%m-%d");
        assert_eq!(
            java_to_chrono("yyyy-MM-dd HH:mm:ss.SSS").unwrap(),
            "%Y-%m-%d %H:%M:%S.%3f"
        );
        assert_eq!(
            java_to_chrono("yyyyMMdd'T'HH 100%").unwrap(),
            "%Y%m%dT%H 100%%"
        );
        assert_eq!(
            java_to_chrono("EEE, d MMM yy ''").unwrap(),
            "%a, %-d %b %y '"
        );
        let refused = java_to_chrono("yyyy-ww").unwrap_err();
        assert!(refused.contains("'ww' (at 6"), "{refused}");
        assert!(java_to_chrono("'open").is_err());
    }
}

/// `MOD(a, b)`: the remainder of `a / b`, as `a % b`.
#[derive(Debug, PartialEq, Eq, Hash)]
struct Mod {
    signature: Signature,
}

impl Mod {
    fn new() -> Self {
        Self {
            signature: Signature::any(2, Volatility::Immutable),
        }
    }
}

impl ScalarUDFImpl for Mod {
    fn name(&self) -> &str {
        "mod"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        Ok(arg_types[0].clone())
    }

    fn invoke_with_args(&self, _args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        datafusion::common::internal_err!("MOD is rewritten to % before it runs")
    }

    fn simplify(&self, mut args: Vec<Expr>, _info: &SimplifyContext) -> Result<ExprSimplifyResult> {
        let divisor = args.pop().expect("MOD takes two arguments");
        let dividend = args.pop().expect("MOD takes two arguments");
        Ok(ExprSimplifyResult::Simplified(binary_expr(
            dividend,
            Operator::Modulo,
            divisor,
        )))
    }
}

/// `PROCTIME()`: the time the row is processed, as Flink's processing-time
/// attribute, to the millisecond. Volatile, so that planning never folds it
/// into the moment the plan was made: every batch reads the clock.
#[derive(Debug, PartialEq, Eq, Hash)]
struct Proctime {
    signature: Signature,
}

impl Proctime {
    fn new() -> Self {
        Self {
            signature: Signature::nullary(Volatility::Volatile),
        }
    }
}

impl ScalarUDFImpl for Proctime {
    fn name(&self) -> &str {
        "proctime"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(timestamp_ms())
    }

    fn invoke_with_args(&self, _args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |since| since.as_millis() as i64);
        Ok(ColumnarValue::Scalar(
            datafusion::common::ScalarValue::TimestampMillisecond(Some(now), None),
        ))
    }
}

/// Flink's `CURRENT_WATERMARK(rowtime)`: the watermark of the pipeline
/// evaluating the call, as of the rows it is reading (the watermark of its
/// last commit), or NULL before it has one, and in queries, which have none.
/// Volatile, so that planning never folds it into a constant.
#[derive(Debug)]
pub struct CurrentWatermark {
    signature: Signature,
    /// The pipeline's watermark in milliseconds (`i64::MIN`: none yet).
    watermark: Option<Arc<std::sync::atomic::AtomicI64>>,
}

impl PartialEq for CurrentWatermark {
    fn eq(&self, other: &Self) -> bool {
        match (&self.watermark, &other.watermark) {
            (Some(a), Some(b)) => Arc::ptr_eq(a, b),
            (a, b) => a.is_none() && b.is_none(),
        }
    }
}

impl Eq for CurrentWatermark {}

impl std::hash::Hash for CurrentWatermark {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.watermark.as_ref().map(Arc::as_ptr).hash(state);
    }
}

impl CurrentWatermark {
    /// The function of a session without a watermark: always NULL.
    fn unbound() -> Self {
        Self {
            signature: Signature::any(1, Volatility::Volatile),
            watermark: None,
        }
    }

    /// The function reading `watermark`, which the pipeline sets as it reads rows.
    pub fn udf(watermark: Arc<std::sync::atomic::AtomicI64>) -> ScalarUDF {
        ScalarUDF::new_from_impl(Self {
            signature: Signature::any(1, Volatility::Volatile),
            watermark: Some(watermark),
        })
    }
}

impl ScalarUDFImpl for CurrentWatermark {
    fn name(&self) -> &str {
        "current_watermark"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        match arg_types {
            [DataType::Timestamp(_, _)] => Ok(timestamp_ms()),
            other => datafusion::common::plan_err!(
                "CURRENT_WATERMARK takes the stream's event-time column, a TIMESTAMP, not {other:?}"
            ),
        }
    }

    fn invoke_with_args(&self, _args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let watermark = self
            .watermark
            .as_ref()
            .map(|w| w.load(std::sync::atomic::Ordering::Relaxed))
            .filter(|&w| w != i64::MIN);
        Ok(ColumnarValue::Scalar(
            datafusion::common::ScalarValue::TimestampMillisecond(watermark, None),
        ))
    }
}

/// `GREATEST(a, b, …)` and `LEAST(a, b, …)`: NULL when any argument is, in
/// Flink (DataFusion's skip NULLs). Typed and coerced as DataFusion's own,
/// which the call becomes, behind a NULL check.
#[derive(Debug, PartialEq, Eq, Hash)]
struct NullIfAnyNull {
    own: Arc<ScalarUDF>,
}

impl ScalarUDFImpl for NullIfAnyNull {
    fn name(&self) -> &str {
        self.own.name()
    }

    fn signature(&self) -> &Signature {
        self.own.signature()
    }

    fn coerce_types(&self, arg_types: &[DataType]) -> Result<Vec<DataType>> {
        self.own.coerce_types(arg_types)
    }

    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        self.own.return_type(arg_types)
    }

    /// Run when planning folds a call of constants: DataFusion's result, NULL
    /// wherever an argument is.
    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let rows = args.number_rows;
        let inputs = args
            .args
            .iter()
            .map(|arg| arg.to_array(rows))
            .collect::<Result<Vec<_>>>()?;
        let result = self.own.invoke_with_args(args)?.to_array(rows)?;
        let nulls = inputs.iter().fold(result.logical_nulls(), |nulls, input| {
            datafusion::arrow::buffer::NullBuffer::union(
                nulls.as_ref(),
                input.logical_nulls().as_ref(),
            )
        });
        let data = result.to_data().into_builder().nulls(nulls).build()?;
        Ok(ColumnarValue::Array(datafusion::arrow::array::make_array(
            data,
        )))
    }

    fn simplify(&self, args: Vec<Expr>, info: &SimplifyContext) -> Result<ExprSimplifyResult> {
        let Some(first) = args.first() else {
            return Ok(ExprSimplifyResult::Original(args));
        };
        let data_type = info.get_data_type(first)?;
        let any_null = any_is_null(&args);
        let null = datafusion::logical_expr::cast(
            datafusion::logical_expr::lit(datafusion::common::ScalarValue::Null),
            data_type,
        );
        Ok(ExprSimplifyResult::Simplified(
            datafusion::logical_expr::when(any_null, null).otherwise(self.own.call(args))?,
        ))
    }
}
