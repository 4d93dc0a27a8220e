//! The rows Flink's `CROSS JOIN UNNEST(c) [WITH ORDINALITY] AS t(a, b, …)`
//! gives, as one list of structs whose fields are named by position, for
//! DataFusion's `unnest` to expand (the pipelines' rewrite of the join reads
//! field `fN` as the N-th column of `t`).
//!
//! ```text
//!   ARRAY<ROW<x, y>>  [{x: 1, y: 'a'}, …]  ──▶ [{f0: 1, f1: 'a'}, …]
//!   ARRAY<T>          [7, 8]               ──▶ [{f0: 7}, {f0: 8}]
//!   MAP<K, V>         {k: v, …}            ──▶ [{f0: k, f1: v}, …]     (Flink's UNNEST of a map)
//!   WITH ORDINALITY   (c, n, TRUE)         ──▶ … and a last field, the element's position from 1 (INT)
//!   NULL or empty                          ──▶ no rows (as Flink's CROSS JOIN UNNEST)
//! ```
//!
//! The second argument is how many columns `AS t(…)` names: planning refuses a
//! call whose elements unnest into another number, as Flink does, rather than
//! read a field as another column.

use std::sync::Arc;

use datafusion::arrow::array::{
    Array, ArrayRef, AsArray, Int32Array, ListArray, StructArray, make_array,
};
use datafusion::arrow::buffer::{NullBuffer, OffsetBuffer};
use datafusion::arrow::datatypes::{DataType, Field, FieldRef, Fields};
use datafusion::common::{Result, ScalarValue, exec_err, plan_err};
use datafusion::logical_expr::{
    ColumnarValue, ReturnFieldArgs, ScalarFunctionArgs, ScalarUDFImpl, Signature, Volatility,
};

/// The function's name, as the pipelines' rewrite of `CROSS JOIN UNNEST` calls it.
pub const UNNEST_ROWS: &str = "flink_unnest_rows";

#[derive(Debug, PartialEq, Eq, Hash)]
pub(super) struct UnnestRows {
    signature: Signature,
}

impl UnnestRows {
    pub(super) fn new() -> Self {
        Self {
            signature: Signature::user_defined(Volatility::Immutable),
        }
    }
}

/// The types of the columns an element of `collection` unnests into.
fn element_columns(collection: &DataType) -> Result<Vec<DataType>> {
    match collection {
        DataType::List(element) => Ok(match element.data_type() {
            DataType::Struct(fields) => fields.iter().map(|f| f.data_type().clone()).collect(),
            scalar => vec![scalar.clone()],
        }),
        DataType::Map(entries, _) => match entries.data_type() {
            DataType::Struct(fields) => Ok(fields.iter().map(|f| f.data_type().clone()).collect()),
            other => plan_err!("a MAP whose entries are {other}"),
        },
        other => plan_err!("UNNEST of a {other}: it takes an ARRAY or a MAP"),
    }
}

/// The struct of one unnested row: `f0`, `f1`, … and the position when asked.
fn row_fields(columns: &[DataType], ordinality: bool) -> Fields {
    let mut fields: Vec<Field> = columns
        .iter()
        .enumerate()
        .map(|(at, data_type)| Field::new(format!("f{at}"), data_type.clone(), true))
        .collect();
    if ordinality {
        fields.push(Field::new(
            format!("f{}", columns.len()),
            DataType::Int32,
            false,
        ));
    }
    Fields::from(fields)
}

/// The element of the list it returns: a struct of `fields`.
fn element_of(fields: Fields) -> FieldRef {
    Arc::new(Field::new_list_field(DataType::Struct(fields), true))
}

/// Whether the call asks for positions: a third argument, TRUE (the return
/// type, which cannot depend on an argument's value, has the position's field
/// whenever it is given).
fn with_ordinality(argument: Option<&ColumnarValue>) -> Result<bool> {
    match argument {
        None => Ok(false),
        Some(ColumnarValue::Scalar(ScalarValue::Boolean(Some(true)))) => Ok(true),
        Some(_) => exec_err!("{UNNEST_ROWS}'s third argument, when given, must be TRUE"),
    }
}

impl ScalarUDFImpl for UnnestRows {
    fn name(&self) -> &str {
        UNNEST_ROWS
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn coerce_types(&self, arg_types: &[DataType]) -> Result<Vec<DataType>> {
        let collection = match arg_types.first() {
            Some(DataType::LargeList(element) | DataType::FixedSizeList(element, _)) => {
                DataType::List(element.clone())
            }
            Some(other) => other.clone(),
            None => return plan_err!("{UNNEST_ROWS} takes an ARRAY or a MAP"),
        };
        element_columns(&collection)?;
        match arg_types.len() {
            2 => Ok(vec![collection, DataType::Int64]),
            3 => Ok(vec![collection, DataType::Int64, DataType::Boolean]),
            n => plan_err!("{UNNEST_ROWS} takes two or three arguments, not {n}"),
        }
    }

    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        let columns = element_columns(&arg_types[0])?;
        Ok(DataType::List(element_of(row_fields(
            &columns,
            arg_types.len() == 3,
        ))))
    }

    /// Checks that `AS t(…)` names as many columns as each element gives.
    fn return_field_from_args(&self, args: ReturnFieldArgs) -> Result<FieldRef> {
        let types: Vec<DataType> = args
            .arg_fields
            .iter()
            .map(|field| field.data_type().clone())
            .collect();
        let Some(collection) = types.first() else {
            return plan_err!("{UNNEST_ROWS} takes an ARRAY or a MAP");
        };
        let columns = element_columns(collection)?.len() + usize::from(types.len() == 3);
        let named = match args.scalar_arguments.get(1) {
            Some(Some(ScalarValue::Int64(Some(named)))) => *named,
            _ => return plan_err!("{UNNEST_ROWS}'s second argument must be a constant count"),
        };
        if usize::try_from(named) != Ok(columns) {
            let what = match collection {
                DataType::Map(..) => "a MAP unnests into its key and value".to_string(),
                DataType::List(element) => match element.data_type() {
                    DataType::Struct(fields) => format!("its rows have {} fields", fields.len()),
                    _ => "an array of values unnests into one".to_string(),
                },
                other => format!("a {other}"),
            };
            let position = match types.len() {
                3 => ", and WITH ORDINALITY adds the position",
                _ => "",
            };
            return plan_err!(
                "UNNEST … AS t(…) names {named} columns, but {what}{position}: name {columns} (as in Flink, the aliases must have the same degree)"
            );
        }
        Ok(Arc::new(Field::new(
            self.name(),
            self.return_type(&types)?,
            true,
        )))
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let positioned = with_ordinality(args.args.get(2))?;
        let collection = args.args[0].to_array(args.number_rows)?;
        let (offsets, nulls, mut columns): (OffsetBuffer<i32>, Option<NullBuffer>, Vec<ArrayRef>) =
            match collection.data_type() {
                DataType::List(_) => {
                    let list = collection.as_list::<i32>();
                    let values = list.values();
                    let columns = match values.data_type() {
                        DataType::Struct(_) => struct_columns(values.as_struct())?,
                        _ => vec![values.clone()],
                    };
                    (list.offsets().clone(), list.nulls().cloned(), columns)
                }
                DataType::Map(_, _) => {
                    let map = collection.as_map();
                    (
                        map.offsets().clone(),
                        map.nulls().cloned(),
                        vec![map.keys().clone(), map.values().clone()],
                    )
                }
                other => return exec_err!("UNNEST of a {other}: it takes an ARRAY or a MAP"),
            };
        let types: Vec<DataType> = columns.iter().map(|c| c.data_type().clone()).collect();
        if positioned {
            let length = columns.first().map_or(0, |c| c.len());
            let mut positions = vec![0i32; length];
            for window in offsets.windows(2) {
                let (start, end) = (window[0] as usize, window[1] as usize);
                for (position, slot) in positions[start..end].iter_mut().enumerate() {
                    *slot = i32::try_from(position + 1).unwrap_or(i32::MAX);
                }
            }
            columns.push(Arc::new(Int32Array::from(positions)));
        }
        let fields = row_fields(&types, positioned);
        let rows = StructArray::try_new(fields.clone(), columns, None)?;
        let list = ListArray::try_new(element_of(fields), offsets, Arc::new(rows), nulls)?;
        Ok(ColumnarValue::Array(Arc::new(list)))
    }
}

/// A struct array's columns, each NULL where the struct is.
fn struct_columns(rows: &StructArray) -> Result<Vec<ArrayRef>> {
    rows.columns()
        .iter()
        .map(|column| {
            let nulls = NullBuffer::union(rows.nulls(), column.nulls());
            let data = column.to_data().into_builder().nulls(nulls).build()?;
            Ok(make_array(data))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use datafusion::arrow::array::{Int64Array, MapBuilder, StringBuilder};
    use datafusion::arrow::datatypes::Int64Type;

    use super::*;

    fn call(collection: ArrayRef, ordinality: Option<bool>) -> ListArray {
        let mut args = vec![
            ColumnarValue::Array(collection.clone()),
            ColumnarValue::Scalar(ScalarValue::Int64(Some(0))),
        ];
        let mut fields = vec![
            Arc::new(Field::new("c", collection.data_type().clone(), true)),
            Arc::new(Field::new("n", DataType::Int64, false)),
        ];
        if let Some(asked) = ordinality {
            args.push(ColumnarValue::Scalar(ScalarValue::Boolean(Some(asked))));
            fields.push(Arc::new(Field::new("o", DataType::Boolean, false)));
        }
        let types: Vec<DataType> = fields.iter().map(|f| f.data_type().clone()).collect();
        let out = UnnestRows::new()
            .invoke_with_args(ScalarFunctionArgs {
                args,
                arg_fields: fields,
                number_rows: collection.len(),
                return_field: Arc::new(Field::new(
                    "r",
                    UnnestRows::new().return_type(&types).unwrap(),
                    true,
                )),
                config_options: Arc::new(Default::default()),
            })
            .unwrap();
        match out {
            ColumnarValue::Array(array) => array.as_list::<i32>().clone(),
            ColumnarValue::Scalar(_) => panic!("an array"),
        }
    }

    #[test]
    fn arrays_and_maps_become_lists_of_numbered_fields_with_their_positions() {
        let numbers = ListArray::from_iter_primitive::<Int64Type, _, _>(vec![
            Some(vec![Some(7), Some(8)]),
            None,
            Some(vec![]),
            Some(vec![Some(9)]),
        ]);
        let rows = call(Arc::new(numbers), Some(true));
        assert_eq!(rows.value_offsets(), &[0, 2, 2, 2, 3]);
        assert!(rows.is_null(1));
        let elements = rows.values().as_struct();
        let values = elements.column_by_name("f0").unwrap();
        let values = values.as_any().downcast_ref::<Int64Array>().unwrap();
        assert_eq!(values.values(), &[7, 8, 9]);
        let positions = elements.column_by_name("f1").unwrap();
        assert_eq!(
            positions
                .as_primitive::<datafusion::arrow::datatypes::Int32Type>()
                .values(),
            &[1, 2, 1]
        );

        let mut map = MapBuilder::new(None, StringBuilder::new(), StringBuilder::new());
        map.keys().append_value("a");
        map.values().append_value("1");
        map.keys().append_value("b");
        map.values().append_null();
        map.append(true).unwrap();
        let entries = call(Arc::new(map.finish()), None);
        let fields: Vec<String> = match entries.value_type() {
            DataType::Struct(fields) => fields.iter().map(|f| f.name().clone()).collect(),
            other => panic!("{other}"),
        };
        assert_eq!(fields, ["f0", "f1"]);
        let values = entries
            .values()
            .as_struct()
            .column(1)
            .as_string::<i32>()
            .clone();
        assert_eq!(values.iter().collect::<Vec<_>>(), [Some("1"), None]);
    }

    #[test]
    fn aliases_of_another_degree_than_the_elements_are_refused() {
        let rows = DataType::List(Arc::new(Field::new_list_field(
            DataType::Struct(Fields::from(vec![
                Field::new("sku", DataType::Utf8, true),
                Field::new("qty", DataType::Int32, true),
            ])),
            true,
        )));
        let check = |named: i64, ordinality: bool| {
            let mut fields = vec![
                Arc::new(Field::new("c", rows.clone(), true)),
                Arc::new(Field::new("n", DataType::Int64, false)),
            ];
            let count = ScalarValue::Int64(Some(named));
            let asked = ScalarValue::Boolean(Some(true));
            let mut scalars = vec![None, Some(&count)];
            if ordinality {
                fields.push(Arc::new(Field::new("o", DataType::Boolean, false)));
                scalars.push(Some(&asked));
            }
            UnnestRows::new()
                .return_field_from_args(ReturnFieldArgs {
                    arg_fields: &fields,
                    scalar_arguments: &scalars,
                })
                .map(|_| ())
                .map_err(|err| err.to_string())
        };
        assert!(check(2, false).is_ok());
        assert!(check(3, true).is_ok());
        let refused = check(2, true).unwrap_err();
        assert!(
            refused.contains("names 2 columns, but its rows have 2 fields, and WITH ORDINALITY adds the position: name 3"),
            "{refused}"
        );
        assert!(check(1, false).is_err());
    }
}
