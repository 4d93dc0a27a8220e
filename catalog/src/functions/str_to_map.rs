//! Flink's `STR_TO_MAP(text [, pair delimiter, key-value delimiter])`: a
//! `MAP<STRING, STRING>` of the text's `key=value` pairs.
//!
//! ```text
//!   ('a=1,b=2')            ──▶ {a: 1, b: 2}        ',' and '=' unless given; both are regular expressions, as in Flink
//!   ('a=1;b', ';', '=')    ──▶ {a: 1, b: NULL}     a pair without the key-value delimiter has a NULL value
//!   ('a=1,a=2')            ──▶ {a: 2}              a key given twice keeps its last value
//!   NULL text or delimiter ──▶ NULL
//! ```

use std::sync::Arc;

use datafusion::arrow::array::{Array, MapBuilder, MapFieldNames, StringBuilder};
use datafusion::arrow::datatypes::{DataType, Field, Fields};
use datafusion::common::{Result, exec_err, plan_err};
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDFImpl, Signature, Volatility,
};

#[derive(Debug, PartialEq, Eq, Hash)]
pub(super) struct StrToMap {
    signature: Signature,
}

impl StrToMap {
    pub(super) fn new() -> Self {
        Self {
            signature: Signature::user_defined(Volatility::Immutable),
        }
    }
}

fn field_names() -> MapFieldNames {
    MapFieldNames {
        entry: "entries".to_string(),
        key: "key".to_string(),
        value: "value".to_string(),
    }
}

/// `MAP<STRING, STRING>`, as the builder makes it.
fn map_type() -> DataType {
    let entries = Fields::from(vec![
        Field::new("key", DataType::Utf8, false),
        Field::new("value", DataType::Utf8, true),
    ]);
    DataType::Map(
        Arc::new(Field::new("entries", DataType::Struct(entries), false)),
        false,
    )
}

impl ScalarUDFImpl for StrToMap {
    fn name(&self) -> &str {
        "str_to_map"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn coerce_types(&self, arg_types: &[DataType]) -> Result<Vec<DataType>> {
        match arg_types.len() {
            1 | 3 => Ok(vec![DataType::Utf8; arg_types.len()]),
            n => plan_err!(
                "STR_TO_MAP takes a string, or a string, a pair delimiter and a key-value delimiter, not {n} arguments"
            ),
        }
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(map_type())
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let rows = args.number_rows;
        let arrays = super::argument_arrays(&args)?;
        let texts = super::utf8_strings(&arrays[0])?;
        let delimiters = match arrays.len() {
            3 => Some((
                super::utf8_strings(&arrays[1])?,
                super::utf8_strings(&arrays[2])?,
            )),
            _ => None,
        };
        let mut regexes = super::Regexes::default();
        let mut out = MapBuilder::new(
            Some(field_names()),
            StringBuilder::new(),
            StringBuilder::new(),
        );
        for row in 0..rows {
            let (pairs, key_value) = match &delimiters {
                Some((pairs, key_value)) if pairs.is_null(row) || key_value.is_null(row) => {
                    out.append(false)?;
                    continue;
                }
                Some((pairs, key_value)) => (pairs.value(row), key_value.value(row)),
                None => (",", "="),
            };
            if texts.is_null(row) {
                out.append(false)?;
                continue;
            }
            let compiled = |regexes: &mut super::Regexes, pattern: &str, what: &str| {
                regexes
                    .get(pattern)
                    .cloned()
                    .or_else(|err| exec_err!("STR_TO_MAP's {what} {pattern:?}: {err}"))
            };
            let pairs = compiled(&mut regexes, pairs, "pair delimiter")?;
            let key_value = compiled(&mut regexes, key_value, "key-value delimiter")?;
            // Each key once, with its last value, in the order keys first came.
            let mut entries: Vec<(String, Option<String>)> = Vec::new();
            // As Java's String.split: empty pairs at the end are dropped, others kept.
            let mut split: Vec<&str> = pairs.split(texts.value(row)).collect();
            while split.last().is_some_and(|pair| pair.is_empty()) {
                split.pop();
            }
            for pair in split {
                let mut parts = key_value.splitn(pair, 2);
                let key = parts.next().unwrap_or_default().to_string();
                let value = parts.next().map(str::to_string);
                match entries.iter_mut().find(|(k, _)| *k == key) {
                    Some(entry) => entry.1 = value,
                    None => entries.push((key, value)),
                }
            }
            for (key, value) in entries {
                out.keys().append_value(key);
                out.values().append_option(value);
            }
            out.append(true)?;
        }
        Ok(ColumnarValue::Array(Arc::new(out.finish())))
    }
}
