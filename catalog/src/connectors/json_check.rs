//! The strict reading of a JSON record before arrow-json decodes it. arrow-json
//! is fast but lenient: it truncates `4.5` into a BIGINT, rounds `"1.23456"`
//! into a DECIMAL(10,2), turns `"NaN"` into NULL and keeps the last of two
//! equal keys. A lossy conversion is a type mismatch, so each record is read
//! once, without building values, and refused before it is decoded when:
//!
//! ```text
//!   nesting deeper than MAX_DEPTH           (serde_json's recursion limit: never a stack overflow)
//!   a key given twice in the record
//!   an integer column  ◀─ a fraction, an exponent, or a value out of the type's range
//!   a float column     ◀─ a value that is not a finite number
//!   a DECIMAL(p, s)    ◀─ more than s fractional digits or p - s integer digits
//! ```
//!
//! Numbers may come as JSON numbers or as strings holding one, as Flink's JSON
//! format reads them. Other columns are left to arrow-json.

use std::fmt;

use arrow::datatypes::{DataType, Fields, Schema};
use serde::de::{self, Deserialize, DeserializeSeed, MapAccess, Visitor};

/// How deep objects and arrays may nest in a record: serde_json's recursion limit.
pub const MAX_DEPTH: usize = 128;

/// Why a record cannot be decoded as it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// A value that does not fit its column's type without loss.
    Mismatch(String),
    /// Not one JSON value, a key given twice, or nesting too deep.
    Malformed(String),
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        match self {
            Refusal::Mismatch(message) | Refusal::Malformed(message) => f.write_str(message),
        }
    }
}

/// Marks a serde error raised for a value of the wrong type.
const MISMATCH: &str = "\u{1}mismatch ";

/// Why `payload` cannot be decoded into `schema` without loss, or `Ok`.
pub fn check_record(schema: &Schema, payload: &[u8]) -> Result<(), Refusal> {
    let mut deserializer = serde_json::Deserializer::from_slice(payload);
    Record {
        fields: schema.fields(),
    }
    .deserialize(&mut deserializer)
    .and_then(|()| deserializer.end())
    .map_err(|err| {
        let text = err.to_string();
        if let Some(mismatch) = text.strip_prefix(MISMATCH) {
            Refusal::Mismatch(mismatch.to_string())
        } else if text.starts_with("recursion limit exceeded") {
            Refusal::Malformed(format!(
                "the record nests objects or arrays deeper than {MAX_DEPTH} levels"
            ))
        } else {
            Refusal::Malformed(text)
        }
    })
}

/// An object whose keys are `fields` (a record, or a STRUCT value in one).
struct Record<'a> {
    fields: &'a Fields,
}

impl<'de> DeserializeSeed<'de> for Record<'_> {
    type Value = ();

    fn deserialize<D: de::Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Record<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        // Keys borrow from the record (unless escaped): no allocation per key.
        let mut seen: Vec<std::borrow::Cow<'de, str>> = Vec::new();
        while let Some(key) = map.next_key::<std::borrow::Cow<'de, str>>()? {
            if seen.contains(&key) {
                return Err(de::Error::custom(format!(
                    "key {key:?} is given twice in the record"
                )));
            }
            match self.fields.find(&key) {
                Some((_, field)) => map.next_value_seed(Column {
                    name: &key,
                    data_type: field.data_type(),
                })?,
                None => map.next_value::<Skip>().map(|_| ())?,
            }
            seen.push(key);
        }
        Ok(())
    }
}

/// One column's value, checked against its type.
struct Column<'a> {
    name: &'a str,
    data_type: &'a DataType,
}

impl Column<'_> {
    fn refuse<E: de::Error>(&self, value: &str, why: &str) -> E {
        E::custom(format!(
            "{MISMATCH}field {:?}: {value} does not fit {} ({why}; values are not coerced)",
            self.name,
            crate::ddl::types::flink_type_name(self.data_type)
        ))
    }

    /// Checks a number written as text, a JSON number's or a string's.
    fn number<E: de::Error>(&self, text: &str) -> Result<(), E> {
        let text = text.trim();
        match self.data_type {
            t if t.is_integer() => {
                let value: i128 = text
                    .parse()
                    .map_err(|_| self.refuse(text, "not a whole number"))?;
                let (min, max) = integer_range(t);
                if value < min || value > max {
                    return Err(self.refuse(text, "out of range"));
                }
                Ok(())
            }
            t if t.is_floating() => match text.parse::<f64>() {
                Ok(value) if value.is_finite() => Ok(()),
                _ => Err(self.refuse(text, "not a finite number")),
            },
            DataType::Decimal128(precision, scale) | DataType::Decimal256(precision, scale) => {
                decimal_fits(text, *precision, *scale).map_err(|why| self.refuse(text, &why))
            }
            _ => Ok(()),
        }
    }

    /// Checks a JSON integer; only a DECIMAL needs its digits as text.
    fn whole_number<E: de::Error>(&self, value: i128) -> Result<(), E> {
        match self.data_type {
            t if t.is_integer() => {
                let (min, max) = integer_range(t);
                if value < min || value > max {
                    return Err(self.refuse(&value.to_string(), "out of range"));
                }
                Ok(())
            }
            DataType::Decimal128(..) | DataType::Decimal256(..) => self.number(&value.to_string()),
            _ => Ok(()),
        }
    }

    fn is_numeric(&self) -> bool {
        self.data_type.is_integer()
            || self.data_type.is_floating()
            || matches!(
                self.data_type,
                DataType::Decimal128(..) | DataType::Decimal256(..)
            )
    }
}

fn integer_range(data_type: &DataType) -> (i128, i128) {
    match data_type {
        DataType::Int8 => (i8::MIN.into(), i8::MAX.into()),
        DataType::Int16 => (i16::MIN.into(), i16::MAX.into()),
        DataType::Int32 => (i32::MIN.into(), i32::MAX.into()),
        DataType::UInt8 => (0, u8::MAX.into()),
        DataType::UInt16 => (0, u16::MAX.into()),
        DataType::UInt32 => (0, u32::MAX.into()),
        DataType::UInt64 => (0, u64::MAX.into()),
        _ => (i64::MIN.into(), i64::MAX.into()),
    }
}

/// Whether a decimal number's digits fit `DECIMAL(precision, scale)` exactly.
fn decimal_fits(text: &str, precision: u8, scale: i8) -> Result<(), String> {
    let unsigned = text.strip_prefix(['-', '+']).unwrap_or(text);
    let (mantissa, exponent) = match unsigned.split_once(['e', 'E']) {
        Some((mantissa, exponent)) => (
            mantissa,
            exponent
                .parse::<i64>()
                .map_err(|_| "not a decimal number".to_string())?,
        ),
        None => (unsigned, 0),
    };
    let (whole, fraction) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    if whole.is_empty() && fraction.is_empty()
        || !whole
            .bytes()
            .chain(fraction.bytes())
            .all(|b| b.is_ascii_digit())
    {
        return Err("not a decimal number".to_string());
    }
    let digits: String = format!("{whole}{fraction}");
    let significant = digits.trim_start_matches('0');
    let significant = significant.trim_end_matches('0');
    if significant.is_empty() {
        return Ok(());
    }
    // Position of the decimal point relative to the significant digits.
    let leading_zeros = (digits.len() - digits.trim_start_matches('0').len()) as i64;
    let point = whole.len() as i64 + exponent - leading_zeros;
    let integer_digits = point.max(0);
    let fraction_digits = (significant.len() as i64 - point).max(0);
    if fraction_digits > i64::from(scale) {
        return Err(format!("more than {scale} digits after the point"));
    }
    if integer_digits > i64::from(precision) - i64::from(scale) {
        return Err(format!(
            "more than {} digits before the point",
            i64::from(precision) - i64::from(scale)
        ));
    }
    Ok(())
}

/// A value nobody reads, walked through `deserialize_any` so that serde_json's
/// recursion limit bounds it too (its own `IgnoredAny` skips without a limit,
/// leaving the depth to whoever decodes the record next).
struct Skip;

impl<'de> Deserialize<'de> for Skip {
    fn deserialize<D: de::Deserializer<'de>>(deserializer: D) -> Result<Skip, D::Error> {
        deserializer.deserialize_any(SkipVisitor)
    }
}

struct SkipVisitor;

impl<'de> Visitor<'de> for SkipVisitor {
    type Value = Skip;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Skip, E> {
        Ok(Skip)
    }

    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Skip, E> {
        Ok(Skip)
    }

    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Skip, E> {
        Ok(Skip)
    }

    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Skip, E> {
        Ok(Skip)
    }

    fn visit_str<E: de::Error>(self, _: &str) -> Result<Skip, E> {
        Ok(Skip)
    }

    fn visit_unit<E: de::Error>(self) -> Result<Skip, E> {
        Ok(Skip)
    }

    fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<Skip, A::Error> {
        while seq.next_element::<Skip>()?.is_some() {}
        Ok(Skip)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Skip, A::Error> {
        while map.next_entry::<Skip, Skip>()?.is_some() {}
        Ok(Skip)
    }
}

impl<'de> DeserializeSeed<'de> for Column<'_> {
    type Value = ();

    fn deserialize<D: de::Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Column<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_i64<E: de::Error>(self, value: i64) -> Result<(), E> {
        self.whole_number(i128::from(value))
    }

    fn visit_u64<E: de::Error>(self, value: u64) -> Result<(), E> {
        self.whole_number(i128::from(value))
    }

    fn visit_f64<E: de::Error>(self, value: f64) -> Result<(), E> {
        if self.data_type.is_integer() {
            return Err(self.refuse(&value.to_string(), "not a whole number"));
        }
        // Rust prints the shortest text that reads back as the same double.
        self.number(&value.to_string())
    }

    fn visit_str<E: de::Error>(self, value: &str) -> Result<(), E> {
        if self.is_numeric() {
            self.number(value)
        } else {
            Ok(())
        }
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<(), E> {
        Ok(())
    }

    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        Ok(())
    }

    fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while seq.next_element::<Skip>()?.is_some() {}
        Ok(())
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        // A STRUCT's fields are held to the same rules (a Debezium change's
        // before and after images among them).
        if let DataType::Struct(fields) = self.data_type {
            return Record { fields }.visit_map(map);
        }
        while map.next_entry::<Skip, Skip>()?.is_some() {}
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::datatypes::Field;

    use super::*;

    fn schema() -> Arc<Schema> {
        Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, true),
            Field::new("small", DataType::Int32, true),
            Field::new("price", DataType::Float64, true),
            Field::new("amount", DataType::Decimal128(10, 2), true),
            Field::new("name", DataType::Utf8, true),
            Field::new(
                "after",
                DataType::Struct(Fields::from(vec![Field::new("qty", DataType::Int32, true)])),
                true,
            ),
        ]))
    }

    #[test]
    fn lossless_values_pass() {
        for record in [
            r#"{"id": 4, "small": -5, "price": 1.5, "amount": 12345678.9, "name": "x"}"#,
            r#"{"id": "42", "price": "2.5e3", "amount": "1.20", "name": {"nested": [1, 2]}}"#,
            r#"{"amount": 1.23, "other": [1, {"a": 2.5}]}"#,
            r#"{"amount": 0.00, "id": null}"#,
        ] {
            assert_eq!(
                check_record(&schema(), record.as_bytes()),
                Ok(()),
                "{record}"
            );
        }
    }

    #[test]
    fn lossy_values_are_refused_with_the_field() {
        for (record, reason) in [
            (r#"{"id": 4.5}"#, "not a whole number"),
            (r#"{"id": 1e3}"#, "not a whole number"),
            (r#"{"id": 9223372036854775808}"#, "out of range"),
            (r#"{"small": 3000000000}"#, "out of range"),
            (r#"{"price": "NaN"}"#, "not a finite number"),
            (r#"{"price": 1e400}"#, "number out of range"),
            (
                r#"{"amount": "1.23456"}"#,
                "more than 2 digits after the point",
            ),
            (
                r#"{"amount": 1.23456}"#,
                "more than 2 digits after the point",
            ),
            (
                r#"{"amount": 123456789}"#,
                "more than 8 digits before the point",
            ),
            (r#"{"id": 1, "id": 2}"#, "given twice"),
            (r#"{"after": {"qty": 1.5}}"#, "not a whole number"),
        ] {
            let err = check_record(&schema(), record.as_bytes())
                .unwrap_err()
                .to_string();
            assert!(err.contains(reason), "{record}: {err}");
        }
        let long = format!("{{\"price\": \"{}\"}}", "9".repeat(5000));
        assert!(matches!(
            check_record(&schema(), long.as_bytes()),
            Err(Refusal::Mismatch(_))
        ));
    }

    #[test]
    fn deep_nesting_is_refused_without_overflowing_the_stack() {
        let depth = 40_000;
        let record = format!("{{\"name\": {}{}}}", "[".repeat(depth), "]".repeat(depth));
        let err = check_record(&schema(), record.as_bytes()).unwrap_err();
        assert!(
            matches!(&err, Refusal::Malformed(m) if m.contains("deeper than 128")),
            "{err}"
        );
    }
}
