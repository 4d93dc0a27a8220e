//! Flink's `REGEXP_EXTRACT(text, regex [, group])`: the text a group of the
//! first match captured.
//!
//! ```text
//!   ('foothebar', 'foo(.*?)(bar)', 1)  ──▶ 'the'
//!   ('foothebar', 'foo(.*?)(bar)')     ──▶ 'foothebar'   group 0, the whole match, unless given
//!   no match, no such group, a group that took no part, a negative group, a NULL,
//!   a pattern that does not compile ──▶ NULL
//! ```
//!
//! Patterns are Rust's `regex` syntax (no look-around or back-references,
//! which Java's has).

use datafusion::arrow::array::{Array, Int64Array, StringBuilder};
use datafusion::arrow::datatypes::DataType;
use datafusion::common::{Result, plan_err};
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDFImpl, Signature, Volatility,
};

#[derive(Debug, PartialEq, Eq, Hash)]
pub(super) struct RegexpExtract {
    signature: Signature,
}

impl RegexpExtract {
    pub(super) fn new() -> Self {
        Self {
            signature: Signature::user_defined(Volatility::Immutable),
        }
    }
}

impl ScalarUDFImpl for RegexpExtract {
    fn name(&self) -> &str {
        "regexp_extract"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn coerce_types(&self, arg_types: &[DataType]) -> Result<Vec<DataType>> {
        match arg_types.len() {
            2 => Ok(vec![DataType::Utf8, DataType::Utf8]),
            3 => Ok(vec![DataType::Utf8, DataType::Utf8, DataType::Int64]),
            n => plan_err!(
                "REGEXP_EXTRACT takes a string, a regular expression and maybe a group, not {n} arguments"
            ),
        }
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(DataType::Utf8)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let rows = args.number_rows;
        let arrays = super::argument_arrays(&args)?;
        let texts = super::utf8_strings(&arrays[0])?;
        let patterns = super::utf8_strings(&arrays[1])?;
        let groups = match arrays.get(2) {
            Some(groups) => {
                let cast = datafusion::arrow::compute::cast(groups, &DataType::Int64)?;
                Some(
                    cast.as_any()
                        .downcast_ref::<Int64Array>()
                        .expect("cast to Int64")
                        .clone(),
                )
            }
            None => None,
        };
        let mut regexes = super::Regexes::default();
        let mut out = StringBuilder::with_capacity(rows, rows * 8);
        for row in 0..rows {
            if texts.is_null(row)
                || patterns.is_null(row)
                || groups.as_ref().is_some_and(|g| g.is_null(row))
            {
                out.append_null();
                continue;
            }
            let group = groups.as_ref().map_or(0, |g| g.value(row));
            // A pattern that does not compile gives NULL, as Flink's does.
            let Ok(regex) = regexes.get(patterns.value(row)) else {
                out.append_null();
                continue;
            };
            let extracted = usize::try_from(group).ok().and_then(|group| {
                regex
                    .captures(texts.value(row))
                    .and_then(|captures| captures.get(group))
                    .map(|found| found.as_str())
            });
            out.append_option(extracted);
        }
        Ok(ColumnarValue::Array(std::sync::Arc::new(out.finish())))
    }
}
