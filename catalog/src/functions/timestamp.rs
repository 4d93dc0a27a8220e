//! Flink's `TIMESTAMPADD`, `TIMESTAMPDIFF` and `CONVERT_TZ`.
//!
//! ```text
//!   TIMESTAMPADD(DAY, 3, ts)            ──▶ ts + 3 days (a DATE stays a DATE for DAY and longer units)
//!   TIMESTAMPADD(MONTH, 1, 2024-01-31)  ──▶ 2024-02-29: the day is cut to the month's last
//!   TIMESTAMPDIFF(HOUR, t1, t2)         ──▶ whole hours from t1 to t2, an INT, cut toward zero
//!   TIMESTAMPDIFF(MONTH, t1, t2)        ──▶ the most months m with t1 + m months ≤ t2 (negated when t2 < t1)
//!   CONVERT_TZ('1970-01-01 00:00:00', 'UTC', 'America/Los_Angeles') ──▶ '1969-12-31 16:00:00'
//!
//!   SQL ──quote_time_units──▶ TIMESTAMPADD('DAY', 3, ts) ──parse, plan──▶ the UDF
//! ```
//!
//! The unit is a keyword of Flink's grammar (`DAY`, not `'DAY'`), which
//! DataFusion would read as a column: [`quote_time_units`] makes it a string
//! before the SQL is parsed, keeping every token's place.

use std::str::FromStr;
use std::sync::Arc;

use chrono::{DateTime, Months, NaiveDateTime, Offset, TimeZone};
use datafusion::arrow::array::{
    Array, ArrayRef, Int32Builder, StringBuilder, TimestampMillisecondArray,
};
use datafusion::arrow::datatypes::{DataType, Field, FieldRef, TimeUnit};
use datafusion::common::{Result, ScalarValue, exec_err, plan_err};
use datafusion::logical_expr::{
    ColumnarValue, ReturnFieldArgs, ScalarFunctionArgs, ScalarUDFImpl, Signature, Volatility,
};
use sqlparser::tokenizer::{Token, TokenWithSpan, Tokenizer};

const MS_PER_DAY: i64 = 86_400_000;

/// A unit of `TIMESTAMPADD` and `TIMESTAMPDIFF`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Unit {
    /// A fixed length, in milliseconds.
    Fixed(i64),
    /// A number of calendar months.
    Months(u32),
}

impl Unit {
    const NAMES: [&'static str; 8] = [
        "SECOND", "MINUTE", "HOUR", "DAY", "WEEK", "MONTH", "QUARTER", "YEAR",
    ];

    fn named(name: &str) -> Option<Self> {
        Some(match name.to_ascii_uppercase().as_str() {
            "SECOND" => Unit::Fixed(1_000),
            "MINUTE" => Unit::Fixed(60_000),
            "HOUR" => Unit::Fixed(3_600_000),
            "DAY" => Unit::Fixed(MS_PER_DAY),
            "WEEK" => Unit::Fixed(7 * MS_PER_DAY),
            "MONTH" => Unit::Months(1),
            "QUARTER" => Unit::Months(3),
            "YEAR" => Unit::Months(12),
            _ => return None,
        })
    }

    /// Whether a DATE moved by it is still a DATE.
    fn keeps_dates(self) -> bool {
        match self {
            Unit::Fixed(ms) => ms % MS_PER_DAY == 0,
            Unit::Months(_) => true,
        }
    }
}

/// Makes the unit keyword of each `TIMESTAMPADD(` and `TIMESTAMPDIFF(` a
/// string literal, in place (each token keeps its span).
pub fn quote_time_units(tokens: &mut [TokenWithSpan]) {
    let significant: Vec<usize> = (0..tokens.len())
        .filter(|&i| !matches!(tokens[i].token, Token::Whitespace(_)))
        .collect();
    for window in significant.windows(3) {
        let [name, open, unit] = [window[0], window[1], window[2]];
        let is_call = matches!(&tokens[name].token, Token::Word(w)
            if w.quote_style.is_none()
                && (w.value.eq_ignore_ascii_case("timestampadd")
                    || w.value.eq_ignore_ascii_case("timestampdiff")));
        if !is_call || tokens[open].token != Token::LParen {
            continue;
        }
        if let Token::Word(word) = &tokens[unit].token
            && word.quote_style.is_none()
            && Unit::named(&word.value).is_some()
        {
            tokens[unit].token = Token::SingleQuotedString(word.value.to_ascii_uppercase());
        }
    }
}

/// [`quote_time_units`] on SQL text: the text as it was, unless a unit was quoted.
pub fn quote_time_units_in(sql: &str) -> String {
    let dialect = sqlparser::dialect::GenericDialect {};
    let Ok(mut tokens) = Tokenizer::new(&dialect, sql)
        .with_unescape(false)
        .tokenize_with_location()
    else {
        return sql.to_string();
    };
    let before: Vec<Token> = tokens.iter().map(|t| t.token.clone()).collect();
    quote_time_units(&mut tokens);
    if tokens.iter().map(|t| &t.token).eq(before.iter()) {
        return sql.to_string();
    }
    tokens.iter().map(|t| t.token.to_string()).collect()
}

/// The unit argument, a string literal once [`quote_time_units`] has run.
fn unit_argument(name: &str, unit: Option<&ScalarValue>) -> Result<Unit> {
    let text = match unit {
        Some(ScalarValue::Utf8(Some(text)))
        | Some(ScalarValue::LargeUtf8(Some(text)))
        | Some(ScalarValue::Utf8View(Some(text))) => text,
        _ => {
            return plan_err!(
                "{name}'s first argument is a unit: {}",
                Unit::NAMES.join(", ")
            );
        }
    };
    Unit::named(text).map_or_else(
        || {
            plan_err!(
                "{name} has no unit {text}; it takes {}",
                Unit::NAMES.join(", ")
            )
        },
        Ok,
    )
}

/// The unit of a call being run: its first argument, a constant.
fn unit_of(name: &str, args: &ScalarFunctionArgs) -> Result<Unit> {
    let unit = match args.args.first() {
        Some(ColumnarValue::Scalar(unit)) => Some(unit),
        _ => None,
    };
    unit_argument(name, unit)
}

fn timestamp_ms() -> DataType {
    DataType::Timestamp(TimeUnit::Millisecond, None)
}

/// A time point argument's type as the function takes it: a DATE stays one,
/// any TIMESTAMP (or text) is read as a TIMESTAMP(3).
fn time_point(name: &str, data_type: &DataType) -> Result<DataType> {
    match data_type {
        DataType::Date32 | DataType::Date64 => Ok(DataType::Date32),
        DataType::Timestamp(_, _)
        | DataType::Utf8
        | DataType::LargeUtf8
        | DataType::Utf8View
        | DataType::Null => Ok(timestamp_ms()),
        other => plan_err!("{name} takes a TIMESTAMP or a DATE, not {other}"),
    }
}

/// The milliseconds since the epoch of a time point array (a DATE at its midnight).
fn epoch_millis(array: &ArrayRef) -> Result<TimestampMillisecondArray> {
    let cast = datafusion::arrow::compute::cast(array, &timestamp_ms())?;
    Ok(cast
        .as_any()
        .downcast_ref::<TimestampMillisecondArray>()
        .expect("cast to milliseconds")
        .clone())
}

fn date_time(ms: i64) -> Result<NaiveDateTime> {
    match DateTime::from_timestamp_millis(ms) {
        Some(time) => Ok(time.naive_utc()),
        None => exec_err!("{ms} ms since the epoch is out of range"),
    }
}

/// `time` moved by `months` calendar months, the day cut to the month's last.
fn add_months(time: NaiveDateTime, months: i64) -> Option<NaiveDateTime> {
    let count = Months::new(u32::try_from(months.unsigned_abs()).ok()?);
    match months >= 0 {
        true => time.checked_add_months(count),
        false => time.checked_sub_months(count),
    }
}

/// `TIMESTAMPADD(unit, n, time point)`.
#[derive(Debug, PartialEq, Eq, Hash)]
pub(super) struct TimestampAdd {
    signature: Signature,
}

impl TimestampAdd {
    pub(super) fn new() -> Self {
        Self {
            signature: Signature::user_defined(Volatility::Immutable),
        }
    }

    fn add(unit: Unit, n: i64, ms: i64) -> Result<i64> {
        let moved = match unit {
            Unit::Fixed(length) => n.checked_mul(length).and_then(|d| ms.checked_add(d)),
            Unit::Months(months) => n
                .checked_mul(i64::from(months))
                .and_then(|months| add_months(date_time(ms).ok()?, months))
                .map(|time| time.and_utc().timestamp_millis()),
        };
        moved.map_or_else(
            || exec_err!("TIMESTAMPADD of {n} {unit:?} to {ms} ms since the epoch is out of range"),
            Ok,
        )
    }
}

impl ScalarUDFImpl for TimestampAdd {
    fn name(&self) -> &str {
        "timestampadd"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn coerce_types(&self, arg_types: &[DataType]) -> Result<Vec<DataType>> {
        let [_, _, point] = arg_types else {
            return plan_err!(
                "TIMESTAMPADD takes a unit, a number and a time point, not {} arguments",
                arg_types.len()
            );
        };
        Ok(vec![
            DataType::Utf8,
            DataType::Int64,
            time_point("TIMESTAMPADD", point)?,
        ])
    }

    /// The type of a TIMESTAMP moved (a DATE moved by days or longer stays one:
    /// [`Self::return_field_from_args`]).
    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(timestamp_ms())
    }

    fn return_field_from_args(&self, args: ReturnFieldArgs) -> Result<FieldRef> {
        let unit = unit_argument(
            "TIMESTAMPADD",
            args.scalar_arguments.first().copied().flatten(),
        )?;
        let point = args.arg_fields.get(2).map(|f| f.data_type());
        let output = match point {
            Some(DataType::Date32) if unit.keeps_dates() => DataType::Date32,
            _ => timestamp_ms(),
        };
        Ok(Arc::new(Field::new(self.name(), output, true)))
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let unit = unit_of("TIMESTAMPADD", &args)?;
        let output = args.return_field.data_type().clone();
        let arrays = super::argument_arrays(&args)?;
        let counts = datafusion::arrow::compute::cast(&arrays[1], &DataType::Int64)?;
        let counts = counts
            .as_any()
            .downcast_ref::<datafusion::arrow::array::Int64Array>()
            .expect("cast to Int64");
        let points = epoch_millis(&arrays[2])?;
        let moved = (0..args.number_rows)
            .map(|row| match counts.is_null(row) || points.is_null(row) {
                true => Ok(None),
                false => Self::add(unit, counts.value(row), points.value(row)).map(Some),
            })
            .collect::<Result<TimestampMillisecondArray>>()?;
        let moved: ArrayRef = Arc::new(moved);
        Ok(ColumnarValue::Array(datafusion::arrow::compute::cast(
            &moved, &output,
        )?))
    }
}

/// `TIMESTAMPDIFF(unit, time point 1, time point 2)`: whole units from the first to the second.
#[derive(Debug, PartialEq, Eq, Hash)]
pub(super) struct TimestampDiff {
    signature: Signature,
}

impl TimestampDiff {
    pub(super) fn new() -> Self {
        Self {
            signature: Signature::user_defined(Volatility::Immutable),
        }
    }

    fn diff(unit: Unit, from: i64, to: i64) -> Result<i32> {
        let units = match unit {
            Unit::Fixed(length) => (i128::from(to) - i128::from(from)) / i128::from(length),
            Unit::Months(months) => {
                i128::from(months_between(date_time(from)?, date_time(to)?)) / i128::from(months)
            }
        };
        i32::try_from(units).map_or_else(
            |_| exec_err!("TIMESTAMPDIFF is {units} {unit:?}, more than an INT holds"),
            Ok,
        )
    }
}

/// The signed number of whole months from `from` to `to`: the most `m` with
/// `from + m months ≤ to` (the day cut to the month's last), negated when `to` is earlier.
fn months_between(from: NaiveDateTime, to: NaiveDateTime) -> i64 {
    if to < from {
        return -months_between(to, from);
    }
    use chrono::Datelike;
    let mut months =
        i64::from(to.year() - from.year()) * 12 + i64::from(to.month0()) - i64::from(from.month0());
    while months > 0 && add_months(from, months).is_none_or(|moved| moved > to) {
        months -= 1;
    }
    months
}

impl ScalarUDFImpl for TimestampDiff {
    fn name(&self) -> &str {
        "timestampdiff"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn coerce_types(&self, arg_types: &[DataType]) -> Result<Vec<DataType>> {
        let [_, first, second] = arg_types else {
            return plan_err!(
                "TIMESTAMPDIFF takes a unit and two time points, not {} arguments",
                arg_types.len()
            );
        };
        time_point("TIMESTAMPDIFF", first)?;
        time_point("TIMESTAMPDIFF", second)?;
        Ok(vec![DataType::Utf8, timestamp_ms(), timestamp_ms()])
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(DataType::Int32)
    }

    fn return_field_from_args(&self, args: ReturnFieldArgs) -> Result<FieldRef> {
        unit_argument(
            "TIMESTAMPDIFF",
            args.scalar_arguments.first().copied().flatten(),
        )?;
        Ok(Arc::new(Field::new(self.name(), DataType::Int32, true)))
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let unit = unit_of("TIMESTAMPDIFF", &args)?;
        let arrays = super::argument_arrays(&args)?;
        let (from, to) = (epoch_millis(&arrays[1])?, epoch_millis(&arrays[2])?);
        let mut out = Int32Builder::with_capacity(args.number_rows);
        for row in 0..args.number_rows {
            match from.is_null(row) || to.is_null(row) {
                true => out.append_null(),
                false => out.append_value(Self::diff(unit, from.value(row), to.value(row))?),
            }
        }
        Ok(ColumnarValue::Array(Arc::new(out.finish())))
    }
}

/// `CONVERT_TZ(text, from zone, to zone)`: a `yyyy-MM-dd HH:mm:ss` time read
/// in one zone and written in another.
#[derive(Debug, PartialEq, Eq, Hash)]
pub(super) struct ConvertTz {
    signature: Signature,
}

impl ConvertTz {
    pub(super) fn new() -> Self {
        Self {
            signature: Signature::user_defined(Volatility::Immutable),
        }
    }
}

/// A time zone as Flink's (Java's) names them: a region (`America/Los_Angeles`),
/// `UTC`/`GMT`, an offset (`GMT-08:00`, `+08:00`) or one of Java's short ids (`PST`).
#[derive(Debug, Clone, Copy)]
enum Zone {
    Region(chrono_tz::Tz),
    Fixed(chrono::FixedOffset),
}

/// Java's `ZoneId.SHORT_IDS`: three-letter names Flink's zones accept.
const SHORT_IDS: [(&str, &str); 28] = [
    ("ACT", "Australia/Darwin"),
    ("AET", "Australia/Sydney"),
    ("AGT", "America/Argentina/Buenos_Aires"),
    ("ART", "Africa/Cairo"),
    ("AST", "America/Anchorage"),
    ("BET", "America/Sao_Paulo"),
    ("BST", "Asia/Dhaka"),
    ("CAT", "Africa/Harare"),
    ("CNT", "America/St_Johns"),
    ("CST", "America/Chicago"),
    ("CTT", "Asia/Shanghai"),
    ("EAT", "Africa/Addis_Ababa"),
    ("ECT", "Europe/Paris"),
    ("EST", "-05:00"),
    ("HST", "-10:00"),
    ("IET", "America/Indiana/Indianapolis"),
    ("IST", "Asia/Kolkata"),
    ("JST", "Asia/Tokyo"),
    ("MIT", "Pacific/Apia"),
    ("MST", "-07:00"),
    ("NET", "Asia/Yerevan"),
    ("NST", "Pacific/Auckland"),
    ("PLT", "Asia/Karachi"),
    ("PNT", "America/Phoenix"),
    ("PRT", "America/Puerto_Rico"),
    ("PST", "America/Los_Angeles"),
    ("SST", "Pacific/Guadalcanal"),
    ("VST", "Asia/Ho_Chi_Minh"),
];

impl Zone {
    fn named(name: &str) -> Option<Self> {
        let name = SHORT_IDS
            .iter()
            .find(|(short, _)| short.eq_ignore_ascii_case(name))
            .map_or(name, |(_, full)| full);
        let offset = ["GMT", "UTC", "UT"]
            .iter()
            .find_map(|prefix| name.strip_prefix(prefix))
            .unwrap_or(name);
        if offset.is_empty() || offset == "Z" {
            return Some(Zone::Fixed(chrono::FixedOffset::east_opt(0)?));
        }
        if let Some(fixed) = fixed_offset(offset) {
            return Some(Zone::Fixed(fixed));
        }
        chrono_tz::Tz::from_str(name).ok().map(Zone::Region)
    }

    /// The instant `local` names in this zone: the later of two in a fold
    /// (standard time), and in a gap as if the offset before it still held
    /// (the choices of Java's parser, which Flink's CONVERT_TZ uses).
    fn instant(self, local: NaiveDateTime) -> Option<i64> {
        let at = |offset: chrono::FixedOffset| {
            (local - chrono::TimeDelta::seconds(i64::from(offset.local_minus_utc()))).and_utc()
        };
        Some(
            match self {
                Zone::Fixed(offset) => at(offset),
                Zone::Region(tz) => match tz.from_local_datetime(&local) {
                    chrono::LocalResult::Single(time) => time.to_utc(),
                    chrono::LocalResult::Ambiguous(_, later) => later.to_utc(),
                    chrono::LocalResult::None => {
                        let before =
                            tz.offset_from_utc_datetime(&(local - chrono::TimeDelta::days(1)));
                        at(before.fix())
                    }
                },
            }
            .timestamp_millis(),
        )
    }

    fn local(self, ms: i64) -> Option<NaiveDateTime> {
        let utc = DateTime::from_timestamp_millis(ms)?;
        Some(match self {
            Zone::Fixed(offset) => utc.with_timezone(&offset).naive_local(),
            Zone::Region(tz) => utc.with_timezone(&tz).naive_local(),
        })
    }
}

/// `+08:00`, `-8`, `+0530`: an offset from UTC, as Java's custom zone ids write it.
fn fixed_offset(text: &str) -> Option<chrono::FixedOffset> {
    let (sign, rest) = match text.as_bytes().first()? {
        b'+' => (1, &text[1..]),
        b'-' => (-1, &text[1..]),
        _ => return None,
    };
    // Digits and a colon only: the split below counts bytes.
    if !rest.bytes().all(|b| b.is_ascii_digit() || b == b':') {
        return None;
    }
    let (hours, minutes) = match rest.split_once(':') {
        Some((hours, minutes)) => (hours, minutes),
        None if rest.len() > 2 => rest.split_at(rest.len() - 2),
        None => (rest, "0"),
    };
    let (hours, minutes): (i32, i32) = (hours.parse().ok()?, minutes.parse().ok()?);
    if !(0..=18).contains(&hours) || !(0..60).contains(&minutes) {
        return None;
    }
    chrono::FixedOffset::east_opt(sign * (hours * 3600 + minutes * 60))
}

impl ScalarUDFImpl for ConvertTz {
    fn name(&self) -> &str {
        "convert_tz"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn coerce_types(&self, arg_types: &[DataType]) -> Result<Vec<DataType>> {
        match arg_types.len() {
            3 => Ok(vec![DataType::Utf8; 3]),
            n => plan_err!(
                "CONVERT_TZ takes a 'yyyy-MM-dd HH:mm:ss' string and two time zones, not {n} arguments"
            ),
        }
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(DataType::Utf8)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let arrays = super::argument_arrays(&args)?;
        let texts = super::utf8_strings(&arrays[0])?;
        let (froms, tos) = (
            super::utf8_strings(&arrays[1])?,
            super::utf8_strings(&arrays[2])?,
        );
        let zone = |name: &str| {
            Zone::named(name).map_or_else(
                || exec_err!("CONVERT_TZ: {name:?} is no time zone (write a region such as 'America/Los_Angeles', 'UTC', or an offset such as 'GMT-08:00')"),
                Ok,
            )
        };
        let mut out = StringBuilder::with_capacity(args.number_rows, args.number_rows * 19);
        for row in 0..args.number_rows {
            if texts.is_null(row) || froms.is_null(row) || tos.is_null(row) {
                out.append_null();
                continue;
            }
            let text = texts.value(row);
            let Ok(local) = NaiveDateTime::parse_from_str(text, "%Y-%m-%d %H:%M:%S") else {
                return exec_err!("CONVERT_TZ reads 'yyyy-MM-dd HH:mm:ss', not {text:?}");
            };
            let (from, to) = (zone(froms.value(row))?, zone(tos.value(row))?);
            let converted = from.instant(local).and_then(|ms| to.local(ms));
            match converted {
                Some(time) => out.append_value(time.format("%Y-%m-%d %H:%M:%S").to_string()),
                None => return exec_err!("CONVERT_TZ: {text} is out of range"),
            }
        }
        Ok(ColumnarValue::Array(Arc::new(out.finish())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> NaiveDateTime {
        NaiveDateTime::parse_from_str(text, "%Y-%m-%d %H:%M:%S").unwrap()
    }

    #[test]
    fn months_between_counts_whole_calendar_months_both_ways() {
        assert_eq!(
            months_between(at("2024-01-31 00:00:00"), at("2024-02-29 00:00:00")),
            1
        );
        assert_eq!(
            months_between(at("2024-01-15 12:00:00"), at("2024-02-15 11:59:59")),
            0
        );
        assert_eq!(
            months_between(at("2024-01-15 12:00:00"), at("2025-01-15 12:00:00")),
            12
        );
        assert_eq!(
            months_between(at("2025-01-15 12:00:00"), at("2024-01-15 12:00:01")),
            -11
        );
    }

    #[test]
    fn zones_are_named_as_java_names_them() {
        let pst = Zone::named("PST").unwrap();
        let la = Zone::named("America/Los_Angeles").unwrap();
        let midnight = at("1970-01-01 00:00:00");
        let utc = Zone::named("UTC").unwrap().instant(midnight).unwrap();
        assert_eq!(pst.local(utc), la.local(utc));
        assert_eq!(la.local(utc), Some(at("1969-12-31 16:00:00")));
        assert_eq!(
            Zone::named("GMT-08:00").unwrap().local(utc),
            Some(at("1969-12-31 16:00:00"))
        );
        assert_eq!(
            Zone::named("+0530").unwrap().local(utc),
            Some(at("1970-01-01 05:30:00"))
        );
        assert!(Zone::named("Mars/Olympus").is_none());
        assert!(Zone::named("GMT+25").is_none());
        // Text that is not an offset is no zone, whatever characters it holds.
        assert!(Zone::named("+1€").is_none());
        assert!(Zone::named("GMT-é9").is_none());
    }

    #[test]
    fn a_time_in_a_gap_keeps_the_offset_before_it() {
        // 2024-03-10 02:30 does not exist in Los Angeles: read at -08:00.
        let la = Zone::named("America/Los_Angeles").unwrap();
        let instant = la.instant(at("2024-03-10 02:30:00")).unwrap();
        assert_eq!(
            Zone::named("UTC").unwrap().local(instant),
            Some(at("2024-03-10 10:30:00"))
        );
    }

    #[test]
    fn units_become_strings_only_as_the_first_argument() {
        let sql = "SELECT TIMESTAMPADD(DAY, 1, day), timestampdiff ( month , a, b), f(DAY)";
        assert_eq!(
            quote_time_units_in(sql),
            "SELECT TIMESTAMPADD('DAY', 1, day), timestampdiff ( 'MONTH' , a, b), f(DAY)"
        );
        assert_eq!(quote_time_units_in("SELECT 1"), "SELECT 1");
    }
}
