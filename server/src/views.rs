//! What the CLI and the HTTP API show of catalog objects: one JSON shape for
//! both, and the human tables built from it. Secrets never appear.

use arrow::record_batch::RecordBatch;
use comfy_table::{Table, presets::UTF8_FULL_CONDENSED};
use serde::Serialize;
use serde_json::Value;
use strata_catalog::catalog::{Discovery, Registered};
use strata_catalog::ddl::types::flink_type_name;
use strata_catalog::{SchemaVersion, TableDef, TableEntry, TableKind};

#[derive(Debug, Serialize)]
pub struct TableSummary {
    pub name: String,
    pub space: String,
    pub table: String,
    pub layer: String,
    pub connector: String,
    pub location: String,
    pub columns: usize,
    pub schema_version: i64,
    pub owner: Option<String>,
    pub updated_at: String,
}

impl TableSummary {
    pub fn new(entry: &TableEntry) -> Self {
        let def = &entry.def;
        Self {
            name: def.name.to_string(),
            space: def.name.space.clone(),
            table: def.name.name.clone(),
            layer: def.layer.to_string(),
            connector: def.kind.connector().to_string(),
            location: def.kind.location(),
            columns: def.schema.fields().len(),
            schema_version: entry.schema_version,
            owner: def.owner.clone(),
            updated_at: timestamp(entry.updated_at_ms),
        }
    }
}

#[derive(Debug, Serialize)]
pub struct ColumnView {
    pub name: String,
    #[serde(rename = "type")]
    pub sql_type: String,
    pub arrow_type: String,
    pub nullable: bool,
}

#[derive(Debug, Serialize)]
pub struct TableDetail {
    pub name: String,
    pub layer: String,
    pub connector: String,
    pub location: String,
    pub options: Value,
    pub columns: Vec<ColumnView>,
    pub primary_key: Vec<String>,
    pub watermark: Option<Value>,
    pub processing_time: Option<String>,
    pub owner: Option<String>,
    pub description: Option<String>,
    pub tags: Vec<String>,
    pub schema_version: i64,
    pub created_at: String,
    pub updated_at: String,
}

impl TableDetail {
    pub fn new(entry: &TableEntry) -> Self {
        let def = &entry.def;
        Self {
            name: def.name.to_string(),
            layer: def.layer.to_string(),
            connector: def.kind.connector().to_string(),
            location: def.kind.location(),
            options: redacted_options(&def.kind),
            columns: columns(def),
            primary_key: def.primary_key.clone(),
            watermark: def
                .watermark
                .as_ref()
                .map(|w| serde_json::to_value(w).expect("watermark serialises")),
            processing_time: def.processing_time.clone(),
            owner: def.owner.clone(),
            description: def.description.clone(),
            tags: def.tags.clone(),
            schema_version: entry.schema_version,
            created_at: timestamp(entry.created_at_ms),
            updated_at: timestamp(entry.updated_at_ms),
        }
    }
}

pub fn columns(def: &TableDef) -> Vec<ColumnView> {
    column_views(&def.schema)
}

fn column_views(schema: &arrow::datatypes::Schema) -> Vec<ColumnView> {
    schema
        .fields()
        .iter()
        .map(|field| ColumnView {
            name: field.name().clone(),
            sql_type: flink_type_name(field.data_type()),
            arrow_type: field.data_type().to_string(),
            nullable: field.is_nullable(),
        })
        .collect()
}

/// The connector options as stored, with every secret replaced: passwords,
/// and client properties that name a password, secret, token or JAAS config.
fn redacted_options(kind: &TableKind) -> Value {
    let mut value = serde_json::to_value(kind).expect("kinds serialise");
    redact(&mut value);
    value
}

fn redact(value: &mut Value) {
    match value {
        Value::Object(object) => {
            for (key, inner) in object.iter_mut() {
                if strata_catalog::model::is_secret(key) && !inner.is_null() {
                    *inner = Value::String("***".to_string());
                } else if key == "url" {
                    if let Value::String(url) = inner {
                        *url = strata_catalog::config::redact_url(url);
                    }
                } else {
                    redact(inner);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(redact),
        _ => {}
    }
}

#[derive(Debug, Serialize)]
pub struct SchemaVersionView {
    pub version: i64,
    pub created_at: String,
    pub columns: Vec<ColumnView>,
}

impl SchemaVersionView {
    pub fn new(version: &SchemaVersion) -> Self {
        Self {
            version: version.version,
            created_at: timestamp(version.created_at_ms),
            columns: column_views(&version.schema),
        }
    }
}

#[derive(Debug, Serialize)]
pub struct DiscoveredTable {
    pub name: String,
    pub layer: String,
    pub connector: String,
    pub location: String,
    pub primary_key: Vec<String>,
    pub columns: Vec<ColumnView>,
    pub note: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct SkippedTable {
    pub name: String,
    pub reason: String,
}

#[derive(Debug, Serialize)]
pub struct DiscoveryView {
    pub connection: String,
    pub inferred: bool,
    pub tables: Vec<DiscoveredTable>,
    pub skipped: Vec<SkippedTable>,
    /// Inferred schemas are registered only once confirmed.
    pub confirmation_needed: bool,
    /// Filled once the tables are registered.
    pub registered: Option<Vec<Registered>>,
}

impl DiscoveryView {
    pub fn new(discovery: &Discovery) -> Self {
        Self {
            connection: discovery.connection.clone(),
            inferred: discovery.inferred,
            tables: discovery
                .tables
                .iter()
                .map(|def| DiscoveredTable {
                    name: def.name.to_string(),
                    layer: def.layer.to_string(),
                    connector: def.kind.connector().to_string(),
                    location: def.kind.location(),
                    primary_key: def.primary_key.clone(),
                    columns: columns(def),
                    note: def.description.clone(),
                })
                .collect(),
            skipped: discovery
                .skipped
                .iter()
                .map(|(name, reason)| SkippedTable {
                    name: name.clone(),
                    reason: reason.clone(),
                })
                .collect(),
            confirmation_needed: discovery.inferred && !discovery.tables.is_empty(),
            registered: None,
        }
    }
}

fn timestamp(millis: i64) -> String {
    chrono::DateTime::from_timestamp_millis(millis)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
        .unwrap_or_default()
}

/// A human table with the given header.
pub fn human_table(header: &[&str], rows: Vec<Vec<String>>) -> String {
    let mut table = Table::new();
    table
        .load_preset(UTF8_FULL_CONDENSED)
        .set_header(header.to_vec());
    for row in rows {
        table.add_row(row);
    }
    table.to_string()
}

pub fn summaries_table(summaries: &[TableSummary]) -> String {
    human_table(
        &[
            "table",
            "layer",
            "connector",
            "location",
            "columns",
            "version",
            "owner",
        ],
        summaries
            .iter()
            .map(|s| {
                vec![
                    s.name.clone(),
                    s.layer.clone(),
                    s.connector.clone(),
                    s.location.clone(),
                    s.columns.to_string(),
                    s.schema_version.to_string(),
                    s.owner.clone().unwrap_or_default(),
                ]
            })
            .collect(),
    )
}

pub fn columns_table(columns: &[ColumnView], primary_key: &[String]) -> String {
    human_table(
        &["column", "type", "nullable", "key"],
        columns
            .iter()
            .map(|c| {
                vec![
                    c.name.clone(),
                    c.sql_type.clone(),
                    if c.nullable { "yes" } else { "no" }.to_string(),
                    if primary_key.contains(&c.name) {
                        "PK"
                    } else {
                        ""
                    }
                    .to_string(),
                ]
            })
            .collect(),
    )
}

pub fn registered_table(registered: &[Registered]) -> String {
    human_table(
        &["table", "result", "storage"],
        registered
            .iter()
            .map(|r| {
                let action = match &r.action {
                    strata_catalog::RegisterAction::Created => "registered".to_string(),
                    strata_catalog::RegisterAction::NewSchemaVersion(v) => {
                        format!("schema version {v}")
                    }
                    strata_catalog::RegisterAction::MetadataUpdated => {
                        "options updated".to_string()
                    }
                    strata_catalog::RegisterAction::Unchanged => "unchanged".to_string(),
                };
                vec![
                    r.table.clone(),
                    action,
                    r.storage.clone().unwrap_or_default(),
                ]
            })
            .collect(),
    )
}

/// Query results as JSON rows, nulls included.
pub fn batches_to_json_rows(batches: &[RecordBatch]) -> Result<Value, arrow::error::ArrowError> {
    let mut writer = arrow_json::WriterBuilder::new()
        .with_explicit_nulls(true)
        .build::<_, arrow_json::writer::JsonArray>(Vec::new());
    for batch in batches {
        writer.write(batch)?;
    }
    writer.finish()?;
    let bytes = writer.into_inner();
    if bytes.is_empty() {
        return Ok(Value::Array(Vec::new()));
    }
    serde_json::from_slice(&bytes)
        .map_err(|err| arrow::error::ArrowError::JsonError(err.to_string()))
}
