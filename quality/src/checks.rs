//! Declaring rules: one TOML file per table in the project's `checks/` folder,
//! next to `catalog/` and `pipelines/`.
//!
//! ```text
//!   checks/dwd_orders.toml              table = "shop.dwd_orders"
//!     [[rule]] name, check, action,     ──▶ TableChecks { table, rules: [Rule { kind, action, severity }] }
//!              severity, + the check's      checked against the catalog: table, columns, types,
//!              own fields                   SQL expressions, and which actions a check allows
//! ```
//!
//! Every mistake is reported with the file, line and column of the rule (or of
//! the field) and how to fix it.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use arrow::datatypes::DataType;
use serde::Deserialize;
use strata_catalog::{SourceLocation, TableDef, TableName};
use toml::Spanned;

use crate::error::{QualityError, Result};

/// What happens to what a rule fails on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// Record the failure and alert; the rows are committed.
    Warn,
    /// Move the failing rows to `<table>__quarantine` and commit the rest.
    Quarantine,
    /// Fail the pipeline before the commit; its source offsets do not advance.
    Stop,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Warn => "warn",
            Action::Quarantine => "quarantine",
            Action::Stop => "stop",
        }
    }
}

/// How much a failure matters, for alerts and dashboards.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    Info,
    Warning,
    Error,
    Critical,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Warning => "warning",
            Severity::Error => "error",
            Severity::Critical => "critical",
        }
    }
}

/// A literal a rule compares with, written as TOML (number, string, boolean or datetime).
#[derive(Debug, Clone, PartialEq)]
pub struct Literal(pub toml::Value);

impl Literal {
    /// The literal as SQL, cast to the column's type.
    pub fn to_sql(&self, data_type: &DataType) -> String {
        let value = match &self.0 {
            toml::Value::String(text) => quote(text),
            toml::Value::Datetime(datetime) => quote(&datetime.to_string()),
            other => other.to_string(),
        };
        match data_type {
            DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => value,
            other => format!("CAST({value} AS {})", sql_type(other)),
        }
    }

    /// The literal as a number, for bounds on metrics.
    pub fn as_f64(&self) -> Option<f64> {
        match &self.0 {
            toml::Value::Integer(value) => Some(*value as f64),
            toml::Value::Float(value) => Some(*value),
            _ => None,
        }
    }
}

impl std::fmt::Display for Literal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.0 {
            toml::Value::String(text) => write!(f, "'{text}'"),
            other => write!(f, "{other}"),
        }
    }
}

fn quote(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

/// The SQL name of a type a literal is cast to.
fn sql_type(data_type: &DataType) -> String {
    match data_type {
        DataType::Timestamp(_, _) => "TIMESTAMP".to_string(),
        DataType::Date32 | DataType::Date64 => "DATE".to_string(),
        DataType::Decimal128(p, s) | DataType::Decimal256(p, s) => format!("DECIMAL({p}, {s})"),
        DataType::Float32 | DataType::Float64 => "DOUBLE".to_string(),
        DataType::Boolean => "BOOLEAN".to_string(),
        _ => "BIGINT".to_string(),
    }
}

/// A rule checked on each row, vectorised over a batch.
#[derive(Debug, Clone, PartialEq)]
pub enum RowCheck {
    NotNull {
        column: String,
    },
    AcceptedValues {
        column: String,
        values: Vec<Literal>,
    },
    Range {
        column: String,
        min: Option<Literal>,
        max: Option<Literal>,
        exclusive_min: bool,
        exclusive_max: bool,
    },
    Regex {
        column: String,
        pattern: String,
    },
    Length {
        column: String,
        min: Option<u64>,
        max: Option<u64>,
    },
    /// A SQL boolean expression over the row's columns; NULL passes, as in a CHECK constraint.
    Expression {
        sql: String,
    },
}

impl RowCheck {
    /// The column the rule reads, shown beside a failing row's reason.
    pub fn column(&self) -> Option<&str> {
        match self {
            RowCheck::NotNull { column }
            | RowCheck::AcceptedValues { column, .. }
            | RowCheck::Range { column, .. }
            | RowCheck::Regex { column, .. }
            | RowCheck::Length { column, .. } => Some(column),
            RowCheck::Expression { .. } => None,
        }
    }
}

/// A figure computed over a commit or a window.
#[derive(Debug, Clone, PartialEq)]
pub enum Metric {
    RowCount,
    NullRate(String),
    DistinctCount(String),
    Mean(String),
    Stddev(String),
}

impl Metric {
    pub fn describe(&self) -> String {
        match self {
            Metric::RowCount => "row count".to_string(),
            Metric::NullRate(column) => format!("null rate of {column}"),
            Metric::DistinctCount(column) => format!("distinct count of {column}"),
            Metric::Mean(column) => format!("mean of {column}"),
            Metric::Stddev(column) => format!("stddev of {column}"),
        }
    }
}

/// What an aggregate rule is computed over.
#[derive(Debug, Clone, PartialEq)]
pub enum Per {
    /// The rows of each commit.
    Commit,
    /// The rows of each window, told apart by this column (a window TVF's `window_start`).
    Window(String),
}

/// Both sides of a reconciliation: a measure over the same event-time windows.
#[derive(Debug, Clone, PartialEq)]
pub struct Reconcile {
    /// `SUM(gmv)`, `COUNT(*)`: over this table.
    pub measure: String,
    /// This table's event-time column.
    pub time: String,
    pub against: TableName,
    pub against_measure: String,
    pub against_time: String,
    /// Rows of the other table that this one is not meant to hold (the pipeline's WHERE, negated).
    pub against_where: Option<String>,
    /// Subtract the rows this table's pipelines quarantined, by their event time.
    pub minus_quarantined: bool,
    pub window: Duration,
    /// The largest difference that still passes.
    pub tolerance: f64,
}

/// What a rule checks.
#[derive(Debug, Clone, PartialEq)]
pub enum RuleKind {
    Row(RowCheck),
    /// No two rows of the table share these columns.
    Unique {
        columns: Vec<String>,
    },
    /// Every non-NULL `column` exists as `references.reference_column`.
    Relationship {
        column: String,
        references: TableName,
        reference_column: String,
    },
    Aggregate {
        metric: Metric,
        min: Option<f64>,
        max: Option<f64>,
        per: Per,
    },
    /// The metric is more than `k` standard deviations from its last `history` values.
    Anomaly {
        metric: Metric,
        k: f64,
        history: usize,
        per: Per,
    },
    Freshness {
        max_lag: Option<Duration>,
        every: Option<Duration>,
    },
    Reconcile(Reconcile),
}

impl RuleKind {
    /// The check's name as the file writes it.
    pub fn check_name(&self) -> &'static str {
        match self {
            RuleKind::Row(RowCheck::NotNull { .. }) => "not_null",
            RuleKind::Row(RowCheck::AcceptedValues { .. }) => "accepted_values",
            RuleKind::Row(RowCheck::Range { .. }) => "range",
            RuleKind::Row(RowCheck::Regex { .. }) => "regex",
            RuleKind::Row(RowCheck::Length { .. }) => "length",
            RuleKind::Row(RowCheck::Expression { .. }) => "expression",
            RuleKind::Unique { .. } => "unique",
            RuleKind::Relationship { .. } => "relationship",
            RuleKind::Aggregate {
                metric: Metric::RowCount,
                ..
            } => "row_count",
            RuleKind::Aggregate {
                metric: Metric::NullRate(_),
                ..
            } => "null_rate",
            RuleKind::Aggregate {
                metric: Metric::DistinctCount(_),
                ..
            } => "distinct_count",
            RuleKind::Aggregate {
                metric: Metric::Mean(_),
                ..
            } => "mean",
            RuleKind::Aggregate {
                metric: Metric::Stddev(_),
                ..
            } => "stddev",
            RuleKind::Anomaly { .. } => "anomaly",
            RuleKind::Freshness { .. } => "freshness",
            RuleKind::Reconcile(_) => "reconcile",
        }
    }
}

/// One declared rule.
#[derive(Debug, Clone, PartialEq)]
pub struct Rule {
    pub name: String,
    pub kind: RuleKind,
    pub action: Action,
    pub severity: Severity,
    /// Where the rule is declared.
    pub location: SourceLocation,
}

/// The rules of one table.
#[derive(Debug, Clone, PartialEq)]
pub struct TableChecks {
    pub table: TableName,
    pub file: PathBuf,
    pub rules: Vec<Arc<Rule>>,
}

/// Every table's rules in a project.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Checks {
    pub tables: Vec<TableChecks>,
}

impl Checks {
    /// The rules of `table` (none when it has no checks file).
    pub fn of(&self, table: &TableName) -> Vec<Arc<Rule>> {
        self.tables
            .iter()
            .filter(|checks| &checks.table == table)
            .flat_map(|checks| checks.rules.iter().cloned())
            .collect()
    }

    pub fn rule_count(&self) -> usize {
        self.tables.iter().map(|t| t.rules.len()).sum()
    }
}

/// The folder of a project that holds checks files.
pub fn checks_dir(project_dir: &Path) -> PathBuf {
    project_dir.join("checks")
}

/// Reads every `checks/*.toml` of the project and checks each rule against the catalog.
pub fn load(project_dir: &Path, tables: &[TableDef]) -> Result<Checks> {
    let dir = checks_dir(project_dir);
    if !dir.exists() {
        return Ok(Checks::default());
    }
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .map_err(|source| QualityError::Read {
            path: dir.display().to_string(),
            source,
        })?
        .filter_map(|entry| entry.ok().map(|entry| entry.path()))
        .filter(|path| path.extension().is_some_and(|ext| ext == "toml"))
        .collect();
    files.sort();
    let mut checks = Checks::default();
    for file in files {
        let text = std::fs::read_to_string(&file).map_err(|source| QualityError::Read {
            path: file.display().to_string(),
            source,
        })?;
        let table_checks = parse(&file, &text, tables)?;
        if let Some(earlier) = checks.tables.iter().find(|t| t.table == table_checks.table) {
            return Err(declaration(
                &file,
                &text,
                0,
                format!(
                    "{} already has a checks file, {}",
                    table_checks.table,
                    earlier.file.display()
                ),
                "keep one checks file per table",
            ));
        }
        checks.tables.push(table_checks);
    }
    Ok(checks)
}

/// A checks file as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileSpec {
    table: Spanned<String>,
    #[serde(default)]
    rule: Vec<Spanned<RuleSpec>>,
}

/// A rule as written: the common fields and every check's own fields; which
/// of those apply depends on `check`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct RuleSpec {
    name: String,
    check: String,
    action: Option<String>,
    severity: Option<String>,
    column: Option<String>,
    columns: Option<Vec<String>>,
    values: Option<Vec<toml::Value>>,
    min: Option<toml::Value>,
    max: Option<toml::Value>,
    exclusive_min: Option<bool>,
    exclusive_max: Option<bool>,
    pattern: Option<String>,
    expression: Option<String>,
    references: Option<String>,
    reference_column: Option<String>,
    metric: Option<String>,
    k: Option<f64>,
    history: Option<usize>,
    per: Option<String>,
    window_column: Option<String>,
    max_lag: Option<String>,
    every: Option<String>,
    measure: Option<String>,
    time: Option<String>,
    against: Option<String>,
    against_measure: Option<String>,
    against_time: Option<String>,
    against_where: Option<String>,
    minus_quarantined: Option<bool>,
    window: Option<String>,
    tolerance: Option<f64>,
}

impl RuleSpec {
    /// The fields this rule sets besides name, check, action and severity.
    fn given_fields(&self) -> Vec<&'static str> {
        let mut given = Vec::new();
        let mut note = |set: bool, name: &'static str| {
            if set {
                given.push(name);
            }
        };
        note(self.column.is_some(), "column");
        note(self.columns.is_some(), "columns");
        note(self.values.is_some(), "values");
        note(self.min.is_some(), "min");
        note(self.max.is_some(), "max");
        note(self.exclusive_min.is_some(), "exclusive-min");
        note(self.exclusive_max.is_some(), "exclusive-max");
        note(self.pattern.is_some(), "pattern");
        note(self.expression.is_some(), "expression");
        note(self.references.is_some(), "references");
        note(self.reference_column.is_some(), "reference-column");
        note(self.metric.is_some(), "metric");
        note(self.k.is_some(), "k");
        note(self.history.is_some(), "history");
        note(self.per.is_some(), "per");
        note(self.window_column.is_some(), "window-column");
        note(self.max_lag.is_some(), "max-lag");
        note(self.every.is_some(), "every");
        note(self.measure.is_some(), "measure");
        note(self.time.is_some(), "time");
        note(self.against.is_some(), "against");
        note(self.against_measure.is_some(), "against-measure");
        note(self.against_time.is_some(), "against-time");
        note(self.against_where.is_some(), "against-where");
        note(self.minus_quarantined.is_some(), "minus-quarantined");
        note(self.window.is_some(), "window");
        note(self.tolerance.is_some(), "tolerance");
        given
    }
}

/// The checks a file can name, for hints.
const CHECK_NAMES: &str = "not_null, accepted_values, range, regex, length, expression, unique, relationship, row_count, null_rate, distinct_count, mean, stddev, anomaly, freshness, reconcile";

/// Parses one checks file; `tables` is the catalog it is checked against.
pub fn parse(file: &Path, text: &str, tables: &[TableDef]) -> Result<TableChecks> {
    let spec: FileSpec = toml::from_str(text).map_err(|err| {
        let offset = err.span().map(|span| span.start).unwrap_or(0);
        declaration(
            file,
            text,
            offset,
            err.message().to_string(),
            "a checks file holds `table = \"space.name\"` and [[rule]] tables with name, check, action and the check's fields (docs/quality.md)",
        )
    })?;
    let table_at = spec.table.span().start;
    let name: TableName = spec.table.get_ref().parse().map_err(|_| {
        declaration(
            file,
            text,
            table_at,
            format!("{:?} is not a table name", spec.table.get_ref()),
            "name the table as SPACE.TABLE, e.g. shop.dwd_orders",
        )
    })?;
    let Some(def) = tables.iter().find(|def| def.name == name) else {
        let known: Vec<String> = tables.iter().map(|def| def.name.to_string()).collect();
        return Err(declaration(
            file,
            text,
            table_at,
            format!("table {name} is not in the catalog"),
            &nearest_hint(&name.to_string(), &known, "register it first"),
        ));
    };
    let mut rules: Vec<Arc<Rule>> = Vec::new();
    for spanned in spec.rule {
        let offset = spanned.span().start;
        let rule_spec = spanned.into_inner();
        if rules.iter().any(|rule| rule.name == rule_spec.name) {
            return Err(declaration(
                file,
                text,
                offset,
                format!("{name} has two rules named {:?}", rule_spec.name),
                "give each rule of a table its own name: results and alerts are keyed by it",
            ));
        }
        let rule = build_rule(rule_spec, def, tables, location(file, text, offset))
            .map_err(|(message, hint)| declaration(file, text, offset, message, &hint))?;
        let rule = Arc::new(rule);
        if matches!(rule.kind, RuleKind::Row(_)) {
            // Compiled, and run once on no rows, so that a bad literal fails here and not at
            // the first batch.
            let refused = |err: QualityError| QualityError::Declaration {
                location: rule.location.clone(),
                message: err.to_string(),
                hint:
                    "write it in SQL over the table's columns, as a condition each good row meets"
                        .to_string(),
            };
            let compiled = crate::row::RowRules::compile(
                &name.to_string(),
                std::slice::from_ref(&rule),
                &def.schema,
            )
            .map_err(refused)?;
            compiled
                .evaluate(
                    &name.to_string(),
                    &arrow::record_batch::RecordBatch::new_empty(def.schema.clone()),
                )
                .map_err(refused)?;
        }
        rules.push(rule);
    }
    Ok(TableChecks {
        table: name,
        file: file.to_path_buf(),
        rules,
    })
}

type Refusal = (String, String);

fn build_rule(
    spec: RuleSpec,
    def: &TableDef,
    tables: &[TableDef],
    location: SourceLocation,
) -> std::result::Result<Rule, Refusal> {
    let rule_name = spec.name.clone();
    if rule_name.is_empty() || rule_name.contains(char::is_whitespace) {
        return Err((
            format!("rule name {rule_name:?} is empty or has spaces"),
            "name rules like amount_positive".to_string(),
        ));
    }
    let check = spec.check.clone();
    let (kind, allowed): (RuleKind, &[&str]) = match check.as_str() {
        "not_null" => (
            RuleKind::Row(RowCheck::NotNull {
                column: column(&spec, def)?,
            }),
            &["column"],
        ),
        "accepted_values" => {
            let values = spec
                .values
                .clone()
                .ok_or_else(|| missing("values", &check))?;
            if values.is_empty() {
                return Err((
                    "accepted_values needs at least one value".to_string(),
                    "list them: values = [\"paid\", \"refunded\"]".to_string(),
                ));
            }
            let column = column(&spec, def)?;
            for value in &values {
                literal_fits(def, &column, "values", value)?;
            }
            (
                RuleKind::Row(RowCheck::AcceptedValues {
                    column,
                    values: values.into_iter().map(Literal).collect(),
                }),
                &["column", "values"],
            )
        }
        "range" => {
            if spec.min.is_none() && spec.max.is_none() {
                return Err(missing("min or max", &check));
            }
            let column = column(&spec, def)?;
            for (field, bound) in [("min", &spec.min), ("max", &spec.max)] {
                if let Some(bound) = bound {
                    literal_fits(def, &column, field, bound)?;
                }
            }
            (
                RuleKind::Row(RowCheck::Range {
                    column,
                    min: spec.min.clone().map(Literal),
                    max: spec.max.clone().map(Literal),
                    exclusive_min: spec.exclusive_min.unwrap_or(false),
                    exclusive_max: spec.exclusive_max.unwrap_or(false),
                }),
                &["column", "min", "max", "exclusive-min", "exclusive-max"],
            )
        }
        "regex" => {
            let pattern = spec
                .pattern
                .clone()
                .ok_or_else(|| missing("pattern", &check))?;
            regex::Regex::new(&pattern).map_err(|err| {
                (
                    format!("pattern {pattern:?} is not a regular expression: {err}"),
                    "write it in Rust regex syntax (like RE2); escape backslashes in TOML basic strings or use 'single quotes'".to_string(),
                )
            })?;
            let column = column(&spec, def)?;
            require_string(def, &column, &check)?;
            (
                RuleKind::Row(RowCheck::Regex { column, pattern }),
                &["column", "pattern"],
            )
        }
        "length" => {
            let min = spec.min.as_ref().map(|v| whole(v, "min")).transpose()?;
            let max = spec.max.as_ref().map(|v| whole(v, "max")).transpose()?;
            if min.is_none() && max.is_none() {
                return Err(missing("min or max", &check));
            }
            let column = column(&spec, def)?;
            require_string(def, &column, &check)?;
            (
                RuleKind::Row(RowCheck::Length { column, min, max }),
                &["column", "min", "max"],
            )
        }
        "expression" => (
            RuleKind::Row(RowCheck::Expression {
                sql: spec
                    .expression
                    .clone()
                    .ok_or_else(|| missing("expression", &check))?,
            }),
            &["expression"],
        ),
        "unique" => {
            let columns = match (&spec.columns, &spec.column) {
                (Some(columns), _) => columns.clone(),
                (None, Some(column)) => vec![column.clone()],
                (None, None) if !def.primary_key.is_empty() => def.primary_key.clone(),
                (None, None) => {
                    return Err((
                        format!("{} has no primary key to check", def.name),
                        "name the key: columns = [\"order_id\"]".to_string(),
                    ));
                }
            };
            for name in &columns {
                existing_column(def, name)?;
            }
            (RuleKind::Unique { columns }, &["column", "columns"])
        }
        "relationship" => {
            let column = column(&spec, def)?;
            let references = spec
                .references
                .clone()
                .ok_or_else(|| missing("references", &check))?;
            let references: TableName = references.parse().map_err(|_| {
                (
                    format!("{references:?} is not a table name"),
                    "name the dimension as SPACE.TABLE".to_string(),
                )
            })?;
            let dim = find_table(tables, &references)?;
            let reference_column = spec
                .reference_column
                .clone()
                .unwrap_or_else(|| column.clone());
            existing_column(dim, &reference_column)?;
            (
                RuleKind::Relationship {
                    column,
                    references,
                    reference_column,
                },
                &["column", "references", "reference-column"],
            )
        }
        "row_count" | "null_rate" | "distinct_count" | "mean" | "stddev" => {
            let metric = metric(&check, &spec, def)?;
            let min = spec.min.as_ref().map(|v| number(v, "min")).transpose()?;
            let max = spec.max.as_ref().map(|v| number(v, "max")).transpose()?;
            if min.is_none() && max.is_none() {
                return Err(missing("min or max", &check));
            }
            let allowed: &[&str] = if check == "row_count" {
                &["min", "max", "per", "window-column"]
            } else {
                &["column", "min", "max", "per", "window-column"]
            };
            (
                RuleKind::Aggregate {
                    metric,
                    min,
                    max,
                    per: per(&spec, def)?,
                },
                allowed,
            )
        }
        "anomaly" => {
            let metric_name = spec
                .metric
                .clone()
                .ok_or_else(|| missing("metric", &check))?;
            let metric = metric(&metric_name, &spec, def)?;
            let k = spec.k.unwrap_or(3.0);
            if k <= 0.0 || k.is_nan() {
                return Err((
                    format!("k = {k} is not a positive number of standard deviations"),
                    "use e.g. k = 3".to_string(),
                ));
            }
            let history = spec.history.unwrap_or(20);
            if history < 3 {
                return Err((
                    format!("history = {history} is too short to estimate a spread"),
                    "keep at least 3 values, e.g. history = 20".to_string(),
                ));
            }
            (
                RuleKind::Anomaly {
                    metric,
                    k,
                    history,
                    per: per(&spec, def)?,
                },
                &["metric", "column", "k", "history", "per", "window-column"],
            )
        }
        "freshness" => {
            let max_lag = spec
                .max_lag
                .as_deref()
                .map(|text| duration(text, "max-lag"))
                .transpose()?;
            let every = spec
                .every
                .as_deref()
                .map(|text| duration(text, "every"))
                .transpose()?;
            if max_lag.is_none() && every.is_none() {
                return Err(missing("max-lag or every", &check));
            }
            if max_lag.is_some() && def.watermark.is_none() {
                return Err((
                    format!(
                        "{} has no watermark, so its lag cannot be measured",
                        def.name
                    ),
                    "declare WATERMARK FOR in its DDL, or check only `every`".to_string(),
                ));
            }
            (
                RuleKind::Freshness { max_lag, every },
                &["max-lag", "every"],
            )
        }
        "reconcile" => {
            let against = spec
                .against
                .clone()
                .ok_or_else(|| missing("against", &check))?;
            let against: TableName = against.parse().map_err(|_| {
                (
                    format!("{against:?} is not a table name"),
                    "name the other table as SPACE.TABLE".to_string(),
                )
            })?;
            let other = find_table(tables, &against)?;
            let time = spec.time.clone().ok_or_else(|| missing("time", &check))?;
            existing_column(def, &time)?;
            let against_time = spec
                .against_time
                .clone()
                .ok_or_else(|| missing("against-time", &check))?;
            existing_column(other, &against_time)?;
            let window = duration(
                spec.window
                    .as_deref()
                    .ok_or_else(|| missing("window", &check))?,
                "window",
            )?;
            if window.is_zero() {
                return Err((
                    "window = 0 holds no rows".to_string(),
                    "use e.g. window = \"1m\"".to_string(),
                ));
            }
            (
                RuleKind::Reconcile(Reconcile {
                    measure: spec
                        .measure
                        .clone()
                        .ok_or_else(|| missing("measure", &check))?,
                    time,
                    against,
                    against_measure: spec
                        .against_measure
                        .clone()
                        .ok_or_else(|| missing("against-measure", &check))?,
                    against_time,
                    against_where: spec.against_where.clone(),
                    minus_quarantined: spec.minus_quarantined.unwrap_or(false),
                    window,
                    tolerance: spec.tolerance.unwrap_or(0.0),
                }),
                &[
                    "measure",
                    "time",
                    "against",
                    "against-measure",
                    "against-time",
                    "against-where",
                    "minus-quarantined",
                    "window",
                    "tolerance",
                ],
            )
        }
        other => {
            return Err((
                format!("unknown check {other:?}"),
                format!("the checks are {CHECK_NAMES}"),
            ));
        }
    };
    if let Some(extra) = spec
        .given_fields()
        .into_iter()
        .find(|field| !allowed.contains(field))
    {
        return Err((
            format!("`{extra}` does not apply to a {check} check"),
            format!("a {check} check takes {}", allowed.join(", ")),
        ));
    }
    let action = match spec.action.as_deref() {
        None | Some("warn") => Action::Warn,
        Some("quarantine") => Action::Quarantine,
        Some("stop") => Action::Stop,
        Some(other) => {
            return Err((
                format!("unknown action {other:?}"),
                "the actions are warn, quarantine and stop".to_string(),
            ));
        }
    };
    let row_level = matches!(
        kind,
        RuleKind::Row(_) | RuleKind::Unique { .. } | RuleKind::Relationship { .. }
    );
    if action == Action::Quarantine && !row_level {
        return Err((
            format!("a {check} check has no failing rows to quarantine"),
            "use action = \"warn\" or \"stop\"; quarantine is for row, unique and relationship checks".to_string(),
        ));
    }
    if action == Action::Stop && matches!(kind, RuleKind::Freshness { .. } | RuleKind::Reconcile(_))
    {
        return Err((
            format!(
                "a {check} check runs beside the pipelines, so it cannot stop one before a commit"
            ),
            "use action = \"warn\"".to_string(),
        ));
    }
    let severity = match spec.severity.as_deref() {
        Some("info") => Severity::Info,
        Some("warning") => Severity::Warning,
        None | Some("error") => Severity::Error,
        Some("critical") => Severity::Critical,
        Some(other) => {
            return Err((
                format!("unknown severity {other:?}"),
                "the severities are info, warning, error and critical".to_string(),
            ));
        }
    };
    Ok(Rule {
        name: rule_name,
        kind,
        action,
        severity,
        location,
    })
}

fn missing(field: &str, check: &str) -> Refusal {
    (
        format!("a {check} check needs {field}"),
        "see docs/quality.md for each check's fields".to_string(),
    )
}

fn column(spec: &RuleSpec, def: &TableDef) -> std::result::Result<String, Refusal> {
    let column = spec
        .column
        .clone()
        .ok_or_else(|| missing("column", &spec.check))?;
    existing_column(def, &column)?;
    Ok(column)
}

fn existing_column<'a>(
    def: &'a TableDef,
    column: &str,
) -> std::result::Result<&'a arrow::datatypes::Field, Refusal> {
    def.schema.field_with_name(column).map_err(|_| {
        let known: Vec<String> = def
            .schema
            .fields()
            .iter()
            .map(|f| f.name().clone())
            .collect();
        (
            format!("{} has no column {column:?}", def.name),
            nearest_hint(column, &known, "its columns are"),
        )
    })
}

/// Whether a TOML literal can be compared with `column` without losing anything.
fn literal_fits(
    def: &TableDef,
    column: &str,
    field: &str,
    value: &toml::Value,
) -> std::result::Result<(), Refusal> {
    let data_type = existing_column(def, column)?.data_type().clone();
    let decimal = matches!(
        data_type,
        DataType::Decimal128(..) | DataType::Decimal256(..)
    );
    let temporal = matches!(
        data_type,
        DataType::Timestamp(..) | DataType::Date32 | DataType::Date64
    );
    let text = matches!(
        data_type,
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View
    );
    let fits = match value {
        toml::Value::Integer(_) => data_type.is_numeric(),
        toml::Value::Float(_) => data_type.is_floating() || decimal,
        toml::Value::String(_) => text || temporal,
        toml::Value::Datetime(_) => temporal,
        toml::Value::Boolean(_) => data_type == DataType::Boolean,
        _ => false,
    };
    if fits {
        return Ok(());
    }
    let example = if data_type.is_integer() {
        format!("write {field} as a whole number, e.g. {field} = 10")
    } else if data_type.is_numeric() {
        format!("write {field} as a number, e.g. {field} = 9.99")
    } else if temporal {
        format!("write {field} as a time, e.g. {field} = 2024-05-01T00:00:00")
    } else {
        format!("write {field} as a quoted string, e.g. {field} = \"paid\"")
    };
    Err((
        format!("{field} = {value} cannot be compared with {column}, which is {data_type}"),
        example,
    ))
}

fn require_string(def: &TableDef, column: &str, check: &str) -> std::result::Result<(), Refusal> {
    let field = existing_column(def, column)?;
    match field.data_type() {
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => Ok(()),
        other => Err((
            format!("a {check} check reads text, and {column} is {other}"),
            "check a STRING column, or use an expression check with a CAST".to_string(),
        )),
    }
}

fn find_table<'a>(
    tables: &'a [TableDef],
    name: &TableName,
) -> std::result::Result<&'a TableDef, Refusal> {
    tables.iter().find(|def| &def.name == name).ok_or_else(|| {
        let known: Vec<String> = tables.iter().map(|def| def.name.to_string()).collect();
        (
            format!("table {name} is not in the catalog"),
            nearest_hint(&name.to_string(), &known, "register it first"),
        )
    })
}

fn metric(name: &str, spec: &RuleSpec, def: &TableDef) -> std::result::Result<Metric, Refusal> {
    Ok(match name {
        "row_count" => Metric::RowCount,
        "null_rate" => Metric::NullRate(column(spec, def)?),
        "distinct_count" => Metric::DistinctCount(column(spec, def)?),
        "mean" | "stddev" => {
            let column = column(spec, def)?;
            let field = existing_column(def, &column)?;
            if !field.data_type().is_numeric() {
                return Err((
                    format!(
                        "{name} needs a number column, and {column} is {}",
                        field.data_type()
                    ),
                    "pick a numeric column".to_string(),
                ));
            }
            if name == "mean" {
                Metric::Mean(column)
            } else {
                Metric::Stddev(column)
            }
        }
        other => {
            return Err((
                format!("unknown metric {other:?}"),
                "the metrics are row_count, null_rate, distinct_count, mean and stddev".to_string(),
            ));
        }
    })
}

fn per(spec: &RuleSpec, def: &TableDef) -> std::result::Result<Per, Refusal> {
    match spec.per.as_deref() {
        None | Some("commit") => {
            if spec.window_column.is_some() {
                return Err((
                    "window-column applies to per = \"window\"".to_string(),
                    "add per = \"window\" or drop window-column".to_string(),
                ));
            }
            Ok(Per::Commit)
        }
        Some("window") => {
            let column = spec
                .window_column
                .clone()
                .unwrap_or_else(|| "window_start".to_string());
            existing_column(def, &column).map_err(|(message, hint)| {
                (
                    format!("{message}: per = \"window\" groups rows by it"),
                    format!("{hint}; name the window's column with window-column"),
                )
            })?;
            Ok(Per::Window(column))
        }
        Some(other) => Err((
            format!("per = {other:?} is neither commit nor window"),
            "use per = \"commit\" or per = \"window\"".to_string(),
        )),
    }
}

fn number(value: &toml::Value, field: &str) -> std::result::Result<f64, Refusal> {
    Literal(value.clone()).as_f64().ok_or_else(|| {
        (
            format!("{field} = {value} is not a number"),
            format!("write {field} as a number, e.g. {field} = 10"),
        )
    })
}

fn whole(value: &toml::Value, field: &str) -> std::result::Result<u64, Refusal> {
    match value {
        toml::Value::Integer(n) if *n >= 0 => Ok(*n as u64),
        _ => Err((
            format!("{field} = {value} is not a length"),
            format!("write {field} as a whole number of characters, e.g. {field} = 3"),
        )),
    }
}

fn duration(text: &str, field: &str) -> std::result::Result<Duration, Refusal> {
    humantime::parse_duration(text).map_err(|err| {
        (
            format!("{field} = {text:?} is not a duration: {err}"),
            format!("write it like {field} = \"30s\" or \"5m\""),
        )
    })
}

/// "did you mean …?" when a known name is close, else the list.
fn nearest_hint(given: &str, known: &[String], otherwise: &str) -> String {
    let nearest = known
        .iter()
        .map(|name| (strsim::levenshtein(given, name), name))
        .min_by_key(|(distance, _)| *distance);
    match nearest {
        Some((distance, name)) if distance <= given.len().max(3) / 3 => {
            format!("did you mean {name}?")
        }
        _ if known.len() <= 12 && !known.is_empty() => format!("{otherwise} {}", known.join(", ")),
        _ => otherwise.to_string(),
    }
}

fn location(file: &Path, text: &str, offset: usize) -> SourceLocation {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() as u64 + 1;
    let column = before
        .rfind('\n')
        .map_or(before.chars().count(), |newline| {
            before[newline + 1..].chars().count()
        }) as u64
        + 1;
    SourceLocation {
        file: file.display().to_string(),
        line,
        column,
    }
}

fn declaration(
    file: &Path,
    text: &str,
    offset: usize,
    message: String,
    hint: &str,
) -> QualityError {
    QualityError::Declaration {
        location: location(file, text, offset),
        message,
        hint: hint.to_string(),
    }
}
