//! Row rules, vectorised: each rule becomes one boolean DataFusion physical
//! expression over the batch (true = the row passes), evaluated with Arrow
//! kernels. The streaming path and `strata check --history` share this code.
//!
//! ```text
//!   range amount > 0        ──▶  amount IS NULL OR amount > CAST(0 AS DECIMAL(10,2))
//!   regex city '^[A-Z]'     ──▶  city IS NULL OR regexp_like(city, '^[A-Z]')
//!   expression 'a <= b'     ──▶  (a <= b) IS NOT FALSE            (NULL passes, as in CHECK)
//!   batch ──evaluate each──▶ failing row indices per rule
//! ```
//!
//! Only `not_null` fails a NULL; every other rule leaves NULLs to it.

use std::sync::Arc;

use arrow::array::{Array, BooleanArray};
use arrow::datatypes::{DataType, SchemaRef};
use arrow::record_batch::RecordBatch;
use arrow::util::display::{ArrayFormatter, FormatOptions};
use datafusion::common::DFSchema;
use datafusion::physical_expr::PhysicalExpr;
use datafusion::prelude::{SessionConfig, SessionContext};
use strata_catalog::provider::flink_identifiers;

use crate::checks::{RowCheck, Rule, RuleKind};
use crate::error::{QualityError, Result};

/// One row rule, compiled against a schema.
#[derive(Debug)]
struct CompiledRow {
    rule: Arc<Rule>,
    condition: String,
    passes: Arc<dyn PhysicalExpr>,
    column: Option<usize>,
}

/// A table's row rules, ready to run on its batches.
#[derive(Debug, Default)]
pub struct RowRules {
    rules: Vec<CompiledRow>,
}

/// The rows of a batch one rule failed on.
#[derive(Debug, Clone, PartialEq)]
pub struct RowFailures {
    pub rule: Arc<Rule>,
    /// Indices of the failing rows, ascending.
    pub rows: Vec<u32>,
}

impl RowRules {
    /// Compiles the row rules among `rules` against `schema` (other rules are skipped).
    pub fn compile(table: &str, rules: &[Arc<Rule>], schema: &SchemaRef) -> Result<Self> {
        let df_schema = DFSchema::try_from(schema.as_ref().clone()).map_err(|err| {
            QualityError::Evaluation {
                table: table.to_string(),
                rule: "*".to_string(),
                message: err.to_string(),
            }
        })?;
        // A rule names columns as Flink SQL does: case kept.
        let context = SessionContext::new_with_config(flink_identifiers(SessionConfig::new()));
        let mut compiled = Vec::new();
        for rule in rules {
            let RuleKind::Row(check) = &rule.kind else {
                continue;
            };
            let condition = condition(check, schema);
            let failed = |message: String| QualityError::Evaluation {
                table: table.to_string(),
                rule: rule.name.clone(),
                message,
            };
            let expr = context
                .parse_sql_expr(&condition, &df_schema)
                .map_err(|err| failed(format!("{condition}: {err}")))?;
            let passes = context
                .create_physical_expr(expr, &df_schema)
                .map_err(|err| failed(format!("{condition}: {err}")))?;
            let data_type = passes
                .data_type(schema)
                .map_err(|err| failed(err.to_string()))?;
            if data_type != DataType::Boolean {
                return Err(failed(format!(
                    "the expression is {data_type}, not a boolean; write a condition such as amount > 0"
                )));
            }
            let column = check.column().and_then(|name| schema.index_of(name).ok());
            compiled.push(CompiledRow {
                rule: rule.clone(),
                condition,
                passes,
                column,
            });
        }
        Ok(Self { rules: compiled })
    }

    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// Runs every rule on `batch`: for each, the rows it failed on (empty when all passed).
    pub fn evaluate(&self, table: &str, batch: &RecordBatch) -> Result<Vec<RowFailures>> {
        self.rules
            .iter()
            .map(|compiled| {
                let failed = |message: String| QualityError::Evaluation {
                    table: table.to_string(),
                    rule: compiled.rule.name.clone(),
                    message,
                };
                let passes = compiled
                    .passes
                    .evaluate(batch)
                    .and_then(|value| value.into_array(batch.num_rows()))
                    .map_err(|err| failed(err.to_string()))?;
                let passes = passes
                    .as_any()
                    .downcast_ref::<BooleanArray>()
                    .ok_or_else(|| failed("the rule did not give booleans".to_string()))?;
                let rows = if passes.null_count() == 0 && passes.true_count() == passes.len() {
                    Vec::new()
                } else {
                    (0..passes.len())
                        .filter(|&row| passes.is_valid(row) && !passes.value(row))
                        .map(|row| row as u32)
                        .collect()
                };
                Ok(RowFailures {
                    rule: compiled.rule.clone(),
                    rows,
                })
            })
            .collect()
    }

    /// Why `row` of `batch` failed `rule`: the rule, its condition and the value it saw.
    pub fn reason(&self, rule: &Rule, batch: &RecordBatch, row: usize) -> String {
        let Some(compiled) = self.rules.iter().find(|c| c.rule.name == rule.name) else {
            return format!("quality rule {} failed", rule.name);
        };
        let value = compiled.column.map(|index| {
            let field = batch.schema().field(index).name().clone();
            let options = FormatOptions::default().with_null("NULL");
            let shown = ArrayFormatter::try_new(batch.column(index).as_ref(), &options)
                .map(|formatter| formatter.value(row).to_string())
                .unwrap_or_else(|_| "?".to_string());
            format!(": {field} = {shown}")
        });
        format!(
            "quality rule {} ({}) failed: the row breaks {}{}",
            rule.name,
            rule.kind.check_name(),
            compiled.condition,
            value.unwrap_or_default()
        )
    }
}

/// A column name as SQL: bare when that reads the same (lower-case letters,
/// digits and underscores), quoted otherwise.
fn identifier(name: &str) -> String {
    let bare = name.starts_with(|c: char| c.is_ascii_lowercase() || c == '_')
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if bare {
        name.to_string()
    } else {
        format!("\"{}\"", name.replace('"', "\"\""))
    }
}

fn literal(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

/// The SQL condition a row passes.
fn condition(check: &RowCheck, schema: &SchemaRef) -> String {
    let type_of = |column: &str| {
        schema
            .field_with_name(column)
            .map(|f| f.data_type().clone())
            .unwrap_or(DataType::Utf8)
    };
    match check {
        RowCheck::NotNull { column } => format!("{} IS NOT NULL", identifier(column)),
        RowCheck::AcceptedValues { column, values } => {
            let data_type = type_of(column);
            let list: Vec<String> = values.iter().map(|v| v.to_sql(&data_type)).collect();
            let column = identifier(column);
            format!("{column} IS NULL OR {column} IN ({})", list.join(", "))
        }
        RowCheck::Range {
            column,
            min,
            max,
            exclusive_min,
            exclusive_max,
        } => {
            let data_type = type_of(column);
            let column = identifier(column);
            let mut bounds = Vec::new();
            if let Some(min) = min {
                let op = if *exclusive_min { ">" } else { ">=" };
                bounds.push(format!("{column} {op} {}", min.to_sql(&data_type)));
            }
            if let Some(max) = max {
                let op = if *exclusive_max { "<" } else { "<=" };
                bounds.push(format!("{column} {op} {}", max.to_sql(&data_type)));
            }
            format!("{column} IS NULL OR ({})", bounds.join(" AND "))
        }
        RowCheck::Regex { column, pattern } => {
            let column = identifier(column);
            format!(
                "{column} IS NULL OR regexp_like({column}, {})",
                literal(pattern)
            )
        }
        RowCheck::Length { column, min, max } => {
            let column = identifier(column);
            let mut bounds = Vec::new();
            if let Some(min) = min {
                bounds.push(format!("character_length({column}) >= {min}"));
            }
            if let Some(max) = max {
                bounds.push(format!("character_length({column}) <= {max}"));
            }
            format!("{column} IS NULL OR ({})", bounds.join(" AND "))
        }
        RowCheck::Expression { sql } => format!("({sql}) IS NOT FALSE"),
    }
}
