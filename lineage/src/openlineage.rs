//! OpenLineage run events for a pipeline: START when it starts, RUNNING at
//! each commit, COMPLETE when it stops cleanly, FAIL with the error, each with
//! the `schema` facet of its inputs and outputs and the `columnLineage` facet
//! of its output, as the spec (2-0-2) defines them.
//!
//! ```text
//!   run id (one per run) ── START ── RUNNING (commit 1, rows) ── RUNNING … ── COMPLETE | FAIL (errorMessage)
//!   job {namespace, pipeline name, sql, jobType STREAMING}
//!   inputs:  space.table + schema                outputs: space.table + schema + columnLineage (+ outputStatistics)
//! ```
//!
//! Datasets are named by their catalog name (`space.table`) in the configured
//! namespace, as the lineage graph names them.

use serde_json::{Value, json};
use strata_catalog::TableDef;

use crate::derive::{PipelineLineage, UseKind};

/// The spec version the events follow.
pub const SCHEMA_URL: &str = "https://openlineage.io/spec/2-0-2/OpenLineage.json#/$defs/RunEvent";
/// Who produces them.
pub const PRODUCER: &str = "https://github.com/strata-warehouse/strata";

const FACETS: &str = "https://openlineage.io/spec/facets";

/// A run's lifecycle step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventType {
    Start,
    Running,
    Complete,
    Fail,
}

impl EventType {
    fn as_str(self) -> &'static str {
        match self {
            EventType::Start => "START",
            EventType::Running => "RUNNING",
            EventType::Complete => "COMPLETE",
            EventType::Fail => "FAIL",
        }
    }
}

/// What stays the same across one run's events.
#[derive(Debug, Clone)]
pub struct RunContext {
    pub namespace: String,
    pub run_id: String,
    pub lineage: PipelineLineage,
    /// The pipeline's SQL.
    pub sql: String,
    /// The definitions of its sources and target.
    pub tables: Vec<TableDef>,
}

/// What happened since the last event.
#[derive(Debug, Clone, Default)]
pub struct Progress {
    /// Rows the latest commit wrote, for RUNNING.
    pub rows: Option<u64>,
    /// Why the run failed, for FAIL.
    pub error: Option<String>,
}

fn facet(schema: &str) -> serde_json::Map<String, Value> {
    let mut facet = serde_json::Map::new();
    facet.insert("_producer".into(), json!(PRODUCER));
    facet.insert("_schemaURL".into(), json!(format!("{FACETS}/{schema}")));
    facet
}

impl RunContext {
    /// The event for `event_type` at `time` (RFC 3339).
    pub fn event(&self, event_type: EventType, time: &str, progress: &Progress) -> Value {
        let mut run_facets = serde_json::Map::new();
        if let Some(error) = &progress.error {
            let mut message = facet("1-0-1/ErrorMessageRunFacet.json#/$defs/ErrorMessageRunFacet");
            message.insert("message".into(), json!(error));
            message.insert("programmingLanguage".into(), json!("Rust"));
            run_facets.insert("errorMessage".into(), Value::Object(message));
        }
        let mut sql = facet("1-1-0/SQLJobFacet.json#/$defs/SQLJobFacet");
        sql.insert("query".into(), json!(self.sql));
        let mut job_type = facet("2-0-3/JobTypeJobFacet.json#/$defs/JobTypeJobFacet");
        job_type.insert("processingType".into(), json!("STREAMING"));
        job_type.insert("integration".into(), json!("STRATA"));
        job_type.insert("jobType".into(), json!("QUERY"));
        let inputs: Vec<Value> = self
            .lineage
            .sources
            .iter()
            .map(|name| self.dataset(name, serde_json::Map::new()))
            .collect();
        let mut output_facets = serde_json::Map::new();
        output_facets.insert("columnLineage".into(), self.column_lineage());
        let mut output = self.dataset(&self.lineage.target, output_facets);
        if let Some(rows) = progress.rows {
            let mut statistics = facet(
                "1-0-2/OutputStatisticsOutputDatasetFacet.json#/$defs/OutputStatisticsOutputDatasetFacet",
            );
            statistics.insert("rowCount".into(), json!(rows));
            output["outputFacets"] = json!({"outputStatistics": statistics});
        }
        json!({
            "eventType": event_type.as_str(),
            "eventTime": time,
            "run": {"runId": self.run_id, "facets": run_facets},
            "job": {
                "namespace": self.namespace,
                "name": self.lineage.name,
                "facets": {"sql": sql, "jobType": job_type},
            },
            "inputs": inputs,
            "outputs": [output],
            "producer": PRODUCER,
            "schemaURL": SCHEMA_URL,
        })
    }

    /// A dataset with its `schema` facet, and `facets` beside it.
    fn dataset(&self, name: &str, mut facets: serde_json::Map<String, Value>) -> Value {
        if let Some(def) = self.tables.iter().find(|t| t.name.to_string() == name) {
            let mut schema = facet("1-2-0/SchemaDatasetFacet.json#/$defs/SchemaDatasetFacet");
            let fields: Vec<Value> = def
                .schema
                .fields()
                .iter()
                .map(|f| {
                    json!({
                        "name": f.name(),
                        "type": strata_catalog::ddl::types::flink_type_name(f.data_type()),
                    })
                })
                .collect();
            schema.insert("fields".into(), json!(fields));
            facets.insert("schema".into(), Value::Object(schema));
        }
        json!({"namespace": self.namespace, "name": name, "facets": facets})
    }

    /// The output's column lineage, each source column with how it is used.
    fn column_lineage(&self) -> Value {
        let mut lineage =
            facet("1-2-0/ColumnLineageDatasetFacet.json#/$defs/ColumnLineageDatasetFacet");
        let mut fields = serde_json::Map::new();
        for (column, origins) in &self.lineage.columns {
            let inputs: Vec<Value> = origins
                .iter()
                .map(|origin| {
                    let (kind, subtype) = match origin.kind {
                        UseKind::Direct => ("DIRECT", "TRANSFORMATION"),
                        UseKind::Aggregated => ("DIRECT", "AGGREGATION"),
                        UseKind::JoinKey => ("INDIRECT", "JOIN"),
                        UseKind::Filter => ("INDIRECT", "FILTER"),
                        UseKind::GroupBy => ("INDIRECT", "GROUP_BY"),
                    };
                    json!({
                        "namespace": self.namespace,
                        "name": origin.table,
                        "field": origin.column,
                        "transformations": [{"type": kind, "subtype": subtype}],
                    })
                })
                .collect();
            fields.insert(column.clone(), json!({"inputFields": inputs}));
        }
        lineage.insert("fields".into(), Value::Object(fields));
        Value::Object(lineage)
    }
}
