//! Kafka topics: read as streams of JSON or Debezium JSON records, written in
//! producer transactions together with the pipeline's progress, and looked up
//! either broadcast (the latest row per key, in memory) or versioned (the row
//! valid at each probe's event time, from the topic's changelog).
//!
//! ```text
//!   topic ──source (partitions @ committed offsets)──▶ records ──decode──▶ batches
//!   rows + offsets ──sink: one producer transaction (rows, _strata_progress)──▶ topic
//!   topic ──broadcast: latest row per key──▶ index      (a broadcast lookup)
//!   topic ──changelog, read beside the probe──▶ versions (an event-time temporal join)
//! ```

pub mod broadcast;
pub mod sink;
pub mod source;
mod upserts;
pub mod versions;

use std::sync::Arc;
use std::time::{Duration, Instant};

use strata_catalog::{KafkaFormat, Project, StartupMode, TableDef, TableKind, connectors};

use super::{Connector, DimensionContext, StreamTraits, VersionFeed};
use crate::error::{PipelineError, Result};
use crate::lookup::dimension::Dimension;
use crate::lookup::versioned::VersionedTable;
use crate::position::{Position, Positions};
use crate::sink::{TargetOptions, TargetSink};
use crate::source::reader::SourceReader;
use crate::source::{CommittedPositions, SourceOptions};
use crate::watermark::WatermarkTracker;

/// The `'connector' = 'kafka'` tables.
pub struct Kafka;

fn format(table: &TableDef) -> Option<KafkaFormat> {
    match &table.kind {
        TableKind::Kafka { format, .. } => Some(*format),
        _ => None,
    }
}

#[async_trait::async_trait]
impl Connector for Kafka {
    fn name(&self) -> &'static str {
        "kafka"
    }

    fn label(&self) -> &'static str {
        "Kafka"
    }

    fn stream(&self, table: &TableDef) -> std::result::Result<StreamTraits, String> {
        let traits = StreamTraits {
            rewinds: true,
            probes_versions: true,
            joins_another: true,
            ..StreamTraits::default()
        };
        match format(table) {
            Some(KafkaFormat::Json) => Ok(StreamTraits {
                appends_records: true,
                ..traits
            }),
            Some(KafkaFormat::DebeziumJson) => Ok(StreamTraits {
                changelog: true,
                ..traits
            }),
            Some(other) => Err(format!("reading format '{}'", other.as_str())),
            None => Err("reading a table that is not a Kafka topic as one".to_string()),
        }
    }

    async fn open_source(
        &self,
        table: &TableDef,
        options: &SourceOptions<'_>,
        positions: &mut dyn CommittedPositions,
    ) -> Result<(Box<dyn SourceReader>, Vec<i32>)> {
        match &table.kind {
            TableKind::Kafka { startup_mode, .. } => {
                source::open(table, startup_mode, options, positions).await
            }
            _ => unreachable!("the registry gives Kafka tables to the Kafka connector"),
        }
    }

    async fn rewound(
        &self,
        project: &Project,
        table: &TableDef,
        group: &str,
        to: &StartupMode,
    ) -> Result<Positions> {
        let kafka = connectors::kafka_target(project, table)?;
        Ok(source::KafkaSource::positions_before(&kafka, group, to)?
            .into_iter()
            .map(|(partition, before)| ((kafka.topic.clone(), partition), Position::at(before)))
            .collect())
    }

    async fn not_ready(&self, project: &Project, table: &TableDef) -> Result<Option<String>> {
        let kafka = connectors::kafka_target(project, table)?;
        let probe = kafka.clone();
        let exists =
            tokio::task::spawn_blocking(move || source::KafkaSource::partitions_if_exists(&probe))
                .await
                .map_err(|err| PipelineError::Source {
                    what: format!("topic {}", kafka.topic),
                    cause: err.to_string(),
                })??
                .is_some();
        Ok((!exists).then(|| {
            format!(
                "waiting for topic {} at {} (it does not exist yet)",
                kafka.topic, kafka.bootstrap_servers
            )
        }))
    }

    async fn open_target(
        &self,
        table: &TableDef,
        options: TargetOptions<'_>,
    ) -> Result<Box<dyn TargetSink>> {
        let envelope = match format(table) {
            Some(KafkaFormat::Json) => sink::Envelope::Row,
            Some(KafkaFormat::DebeziumJson) => sink::Envelope::Debezium,
            other => {
                return Err(PipelineError::Sink {
                    what: format!("Kafka table {}", table.name),
                    cause: format!(
                        "it is a '{}' topic: pipelines write 'json' and 'debezium-json' topics",
                        other.map_or("?", |f| f.as_str())
                    ),
                });
            }
        };
        Ok(Box::new(sink::KafkaSink::open(
            connectors::kafka_target(options.project, table)?,
            table.schema.clone(),
            table.primary_key.clone(),
            options.pipeline,
            envelope,
        )?))
    }

    /// A `debezium-json` topic writes a retraction as a delete (`"op": "d"`), as Flink's format does.
    fn takes_retractions_unkeyed(&self, table: &TableDef) -> bool {
        format(table) == Some(KafkaFormat::DebeziumJson)
    }

    /// A `debezium-json` topic gets each update's old row as a delete, key or not.
    fn retracts_into(&self, table: &TableDef) -> bool {
        format(table) == Some(KafkaFormat::DebeziumJson)
    }

    fn commits_positions_of(&self) -> Option<(&'static str, &'static str)> {
        Some((
            "kafka",
            "writing a Kafka topic from a table that is not a Kafka topic (its offsets commit in the topic's transaction)",
        ))
    }

    fn versions(&self, table: &TableDef) -> bool {
        !table.lookup.broadcast
    }

    async fn open_versions(
        &self,
        table: &TableDef,
        versions: Arc<VersionedTable>,
        options: &SourceOptions<'_>,
        positions: &mut dyn CommittedPositions,
    ) -> Result<Box<dyn VersionFeed>> {
        let kafka = connectors::kafka_target(options.project, table)?;
        // Versions are read from the start of the changelog, whatever the table's startup mode.
        let resume = source::resume(
            &kafka,
            options.group,
            &StartupMode::EarliestOffset,
            positions,
        )
        .await?;
        let partitions: Vec<i32> = resume.keys().copied().collect();
        let engine = &options.project.config.engine;
        let tracker = WatermarkTracker::new(
            &partitions,
            table.watermark.as_ref().map_or(0, |w| w.delay_ms),
            Duration::from_millis(engine.idle_timeout_ms),
            Instant::now(),
        );
        Ok(Box::new(versions::KafkaVersions::start(
            versions,
            table,
            kafka,
            options.group,
            &resume,
            tracker,
            options.batch_records,
        )?))
    }

    fn dimension(
        &self,
        table: &TableDef,
        context: &DimensionContext<'_>,
    ) -> Result<Option<Dimension>> {
        if table.lookup.broadcast {
            return Ok(Some(Dimension::Keyed(Box::new(
                broadcast::BroadcastDimension::new(
                    table.clone(),
                    connectors::kafka_target(context.project, table)?,
                    context.pipeline.to_string(),
                ),
            ))));
        }
        let time = table
            .watermark
            .as_ref()
            .expect("validation found a versioned table's watermark");
        Ok(Some(Dimension::Versioned(Arc::new(VersionedTable::new(
            table.name.to_string(),
            &table.schema,
            time.column.clone(),
            table.primary_key.clone(),
        )?))))
    }
}
