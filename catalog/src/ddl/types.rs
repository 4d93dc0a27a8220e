//! Flink SQL types ↔ Arrow types.
//!
//! | Flink                               | Arrow                           |
//! |-------------------------------------|---------------------------------|
//! | BOOLEAN                             | Boolean                         |
//! | TINYINT, SMALLINT, INT, BIGINT      | Int8, Int16, Int32, Int64       |
//! | FLOAT, DOUBLE                       | Float32, Float64                |
//! | DECIMAL(p, s)                       | Decimal128(p, s)                |
//! | STRING, VARCHAR(n), CHAR(n)         | Utf8                            |
//! | BYTES, BINARY(n), VARBINARY(n)      | Binary                          |
//! | DATE, TIME(p)                       | Date32, Time32/Time64           |
//! | TIMESTAMP(p)                        | Timestamp(unit of p)            |
//! | TIMESTAMP_LTZ(p)                    | Timestamp(unit of p, "UTC")     |
//! | ARRAY<T>, MAP<K, V>, ROW<f T, …>    | List, Map, Struct               |

use std::sync::Arc;

use arrow::datatypes::{DataType, Field, Fields, TimeUnit};

/// The Flink type names Strata accepts, for hints.
pub const SUPPORTED_TYPES: &str = "BOOLEAN, TINYINT, SMALLINT, INT, BIGINT, FLOAT, DOUBLE, DECIMAL(p, s), \
     STRING, VARCHAR(n), CHAR(n), BYTES, BINARY(n), VARBINARY(n), DATE, TIME(p), TIMESTAMP(p), \
     TIMESTAMP_LTZ(p), TIMESTAMP(p) WITH LOCAL TIME ZONE, ARRAY<T>, MAP<K, V>, ROW<name T, ...>";

/// A parsed Flink type before it becomes Arrow: its name and arguments.
#[derive(Debug, Clone, PartialEq)]
pub enum FlinkType {
    Named {
        name: String,
        args: Vec<u64>,
        local_time_zone: bool,
    },
    Array(Box<FlinkType>),
    Map(Box<FlinkType>, Box<FlinkType>),
    Row(Vec<(String, FlinkType)>),
}

/// Why a Flink type has no Arrow counterpart.
#[derive(Debug, Clone, PartialEq)]
pub struct UnsupportedType(pub String);

impl FlinkType {
    pub fn to_arrow(&self) -> Result<DataType, UnsupportedType> {
        match self {
            FlinkType::Named {
                name,
                args,
                local_time_zone,
            } => named_to_arrow(name, args, *local_time_zone),
            FlinkType::Array(element) => Ok(DataType::List(Arc::new(Field::new_list_field(
                element.to_arrow()?,
                true,
            )))),
            FlinkType::Map(key, value) => {
                let entries = Field::new(
                    "entries",
                    DataType::Struct(Fields::from(vec![
                        Field::new("key", key.to_arrow()?, false),
                        Field::new("value", value.to_arrow()?, true),
                    ])),
                    false,
                );
                Ok(DataType::Map(Arc::new(entries), false))
            }
            FlinkType::Row(fields) => {
                let fields = fields
                    .iter()
                    .map(|(name, ty)| Ok(Field::new(name, ty.to_arrow()?, true)))
                    .collect::<Result<Vec<_>, UnsupportedType>>()?;
                Ok(DataType::Struct(Fields::from(fields)))
            }
        }
    }
}

fn named_to_arrow(
    name: &str,
    args: &[u64],
    local_time_zone: bool,
) -> Result<DataType, UnsupportedType> {
    let upper = name.to_ascii_uppercase();
    let unsupported = || UnsupportedType(describe(&upper, args));
    let precision = |default: u64| args.first().copied().unwrap_or(default);
    let data_type = match (upper.as_str(), args.len()) {
        ("BOOLEAN" | "BOOL", 0) => DataType::Boolean,
        ("TINYINT", 0) => DataType::Int8,
        ("SMALLINT", 0) => DataType::Int16,
        ("INT" | "INTEGER", 0) => DataType::Int32,
        ("BIGINT", 0) => DataType::Int64,
        ("FLOAT" | "REAL", 0) => DataType::Float32,
        ("DOUBLE", 0) => DataType::Float64,
        ("DECIMAL" | "DEC" | "NUMERIC", 0..=2) => {
            let precision = precision(10);
            let scale = args.get(1).copied().unwrap_or(0);
            if !(1..=38).contains(&precision) || scale > precision {
                return Err(unsupported());
            }
            DataType::Decimal128(precision as u8, scale as i8)
        }
        ("STRING" | "TEXT", 0) | ("VARCHAR" | "CHAR", 0..=1) => DataType::Utf8,
        ("BYTES", 0) | ("BINARY" | "VARBINARY", 0..=1) => DataType::Binary,
        ("DATE", 0) => DataType::Date32,
        ("TIME", 0..=1) => match precision(0) {
            0..=3 => DataType::Time32(TimeUnit::Millisecond),
            4..=6 => DataType::Time64(TimeUnit::Microsecond),
            7..=9 => DataType::Time64(TimeUnit::Nanosecond),
            _ => return Err(unsupported()),
        },
        ("TIMESTAMP", 0..=1) | ("TIMESTAMP_LTZ", 0..=1) => {
            let unit = match precision(6) {
                0..=3 => TimeUnit::Millisecond,
                4..=6 => TimeUnit::Microsecond,
                7..=9 => TimeUnit::Nanosecond,
                _ => return Err(unsupported()),
            };
            let zoned = local_time_zone || upper == "TIMESTAMP_LTZ";
            DataType::Timestamp(unit, zoned.then(|| "UTC".into()))
        }
        _ => return Err(unsupported()),
    };
    Ok(data_type)
}

fn describe(name: &str, args: &[u64]) -> String {
    if args.is_empty() {
        name.to_string()
    } else {
        let args: Vec<String> = args.iter().map(u64::to_string).collect();
        format!("{name}({})", args.join(", "))
    }
}

/// The Flink SQL spelling of an Arrow type, for people reading `catalog show`.
pub fn flink_type_name(data_type: &DataType) -> String {
    let precision_of = |unit: &TimeUnit| match unit {
        TimeUnit::Second => 0,
        TimeUnit::Millisecond => 3,
        TimeUnit::Microsecond => 6,
        TimeUnit::Nanosecond => 9,
    };
    match data_type {
        DataType::Boolean => "BOOLEAN".into(),
        DataType::Int8 => "TINYINT".into(),
        DataType::Int16 => "SMALLINT".into(),
        DataType::Int32 => "INT".into(),
        DataType::Int64 => "BIGINT".into(),
        DataType::UInt8 => "SMALLINT".into(),
        DataType::UInt16 => "INT".into(),
        DataType::UInt32 => "BIGINT".into(),
        DataType::UInt64 => "DECIMAL(20, 0)".into(),
        DataType::Float32 => "FLOAT".into(),
        DataType::Float64 => "DOUBLE".into(),
        DataType::Decimal128(p, s) | DataType::Decimal256(p, s) => format!("DECIMAL({p}, {s})"),
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => "STRING".into(),
        DataType::Binary | DataType::LargeBinary | DataType::BinaryView => "BYTES".into(),
        DataType::Date32 | DataType::Date64 => "DATE".into(),
        DataType::Time32(unit) | DataType::Time64(unit) => format!("TIME({})", precision_of(unit)),
        DataType::Timestamp(unit, None) => format!("TIMESTAMP({})", precision_of(unit)),
        DataType::Timestamp(unit, Some(_)) => format!("TIMESTAMP_LTZ({})", precision_of(unit)),
        DataType::List(field) | DataType::LargeList(field) => {
            format!("ARRAY<{}>", flink_type_name(field.data_type()))
        }
        DataType::Map(entries, _) => match entries.data_type() {
            DataType::Struct(fields) if fields.len() == 2 => format!(
                "MAP<{}, {}>",
                flink_type_name(fields[0].data_type()),
                flink_type_name(fields[1].data_type())
            ),
            other => other.to_string(),
        },
        DataType::Struct(fields) => {
            let inner: Vec<String> = fields
                .iter()
                .map(|f| format!("{} {}", f.name(), flink_type_name(f.data_type())))
                .collect();
            format!("ROW<{}>", inner.join(", "))
        }
        DataType::Null => "NULL".into(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn named(name: &str, args: &[u64]) -> FlinkType {
        FlinkType::Named {
            name: name.into(),
            args: args.to_vec(),
            local_time_zone: false,
        }
    }

    #[test]
    fn scalar_types_map_to_arrow_and_back() {
        for (flink, arrow, shown) in [
            (named("BIGINT", &[]), DataType::Int64, "BIGINT"),
            (
                named("DECIMAL", &[10, 2]),
                DataType::Decimal128(10, 2),
                "DECIMAL(10, 2)",
            ),
            (
                named("TIMESTAMP", &[3]),
                DataType::Timestamp(TimeUnit::Millisecond, None),
                "TIMESTAMP(3)",
            ),
            (
                named("TIMESTAMP_LTZ", &[3]),
                DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into())),
                "TIMESTAMP_LTZ(3)",
            ),
            (named("VARCHAR", &[64]), DataType::Utf8, "STRING"),
        ] {
            let mapped = flink.to_arrow().unwrap();
            assert_eq!(mapped, arrow);
            assert_eq!(flink_type_name(&mapped), shown);
        }
    }

    #[test]
    fn impossible_types_are_named() {
        assert_eq!(
            named("DECIMAL", &[50, 2]).to_arrow(),
            Err(UnsupportedType("DECIMAL(50, 2)".into()))
        );
        assert_eq!(
            named("GEOMETRY", &[]).to_arrow(),
            Err(UnsupportedType("GEOMETRY".into()))
        );
    }
}
