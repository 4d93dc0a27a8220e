//! A query's rows as JSON, CSV or Arrow IPC, for the API and the CLI.

use std::str::FromStr;

use arrow::error::ArrowError;
use serde_json::{Value, json};

use super::QueryOutput;
use crate::views::batches_to_json_rows;

/// How a query's rows are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RowFormat {
    /// `{"columns": [{name, type}], "rows": [{…}], "truncated": bool}`.
    #[default]
    Json,
    /// A header, then one line per row.
    Csv,
    /// An Arrow IPC stream: the schema, then the batches.
    Arrow,
}

impl FromStr for RowFormat {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        match text {
            "json" => Ok(RowFormat::Json),
            "csv" => Ok(RowFormat::Csv),
            "arrow" => Ok(RowFormat::Arrow),
            other => Err(format!("no row format {other:?}: use json, csv or arrow")),
        }
    }
}

impl RowFormat {
    pub fn content_type(self) -> &'static str {
        match self {
            RowFormat::Json => "application/json",
            RowFormat::Csv => "text/csv; charset=utf-8",
            RowFormat::Arrow => "application/vnd.apache.arrow.stream",
        }
    }
}

/// Each column's name and (Flink SQL) type.
pub fn columns(schema: &arrow::datatypes::Schema) -> Value {
    schema
        .fields()
        .iter()
        .map(|f| {
            json!({
                "name": f.name(),
                "type": strata_catalog::ddl::types::flink_type_name(f.data_type()),
            })
        })
        .collect()
}

/// The JSON form of a result.
pub fn to_json(output: &QueryOutput) -> Result<Value, ArrowError> {
    Ok(json!({
        "columns": columns(&output.schema),
        "rows": batches_to_json_rows(&output.batches)?,
        "truncated": output.truncated,
    }))
}

/// The result in `format`.
pub fn encode(output: &QueryOutput, format: RowFormat) -> Result<Vec<u8>, ArrowError> {
    match format {
        RowFormat::Json => {
            Ok(serde_json::to_vec(&to_json(output)?).expect("JSON values serialise"))
        }
        RowFormat::Csv => {
            let mut writer = arrow::csv::WriterBuilder::new()
                .with_header(true)
                .build(Vec::new());
            if output.batches.is_empty() {
                writer.write(&arrow::record_batch::RecordBatch::new_empty(
                    output.schema.clone(),
                ))?;
            }
            for batch in &output.batches {
                writer.write(batch)?;
            }
            Ok(writer.into_inner())
        }
        RowFormat::Arrow => {
            let mut writer = arrow::ipc::writer::StreamWriter::try_new(Vec::new(), &output.schema)?;
            for batch in &output.batches {
                writer.write(batch)?;
            }
            writer.into_inner()
        }
    }
}
