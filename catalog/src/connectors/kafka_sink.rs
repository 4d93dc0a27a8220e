//! `INSERT INTO` a Kafka table: each row as one JSON record on the table's
//! topic, the form pipelines read.
//!
//! ```text
//!   INSERT INTO shop.ods_orders VALUES (…) ──▶ rows (the table's types) ──▶ JSON lines ──▶ topic
//! ```
//!
//! The rows are typed by the INSERT's plan, so what is produced fits the table.
//! All records are awaited before the statement returns; a delivery failure
//! fails it (records produced before it stay on the topic, as Kafka has no
//! rollback outside a transaction). Writes need a write grant on the space.

use std::sync::Arc;
use std::time::Duration;

use arrow::datatypes::SchemaRef;
use async_trait::async_trait;
use datafusion::common::DataFusionError;
use datafusion::datasource::sink::DataSink;
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::physical_plan::{DisplayAs, DisplayFormatType};
use futures::StreamExt;
use rdkafka::ClientConfig;
use rdkafka::producer::{FutureProducer, FutureRecord};

use super::kafka::KafkaTarget;
use crate::error::{CatalogError, Result};

/// How long one record may take to be delivered.
const DELIVERY_TIMEOUT: Duration = Duration::from_secs(30);

/// Produces INSERTed rows to a topic as JSON.
#[derive(Debug)]
pub struct KafkaSink {
    pub target: KafkaTarget,
    pub schema: SchemaRef,
}

impl DisplayAs for KafkaSink {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "KafkaSink: topic={}", self.target.topic)
    }
}

fn external(err: impl std::error::Error + Send + Sync + 'static) -> DataFusionError {
    DataFusionError::External(Box::new(err))
}

#[async_trait]
impl DataSink for KafkaSink {
    fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    async fn write_all(
        &self,
        mut data: SendableRecordBatchStream,
        _context: &Arc<TaskContext>,
    ) -> datafusion::error::Result<u64> {
        let mut lines = Vec::new();
        while let Some(batch) = data.next().await {
            let batch = batch?;
            let mut writer = arrow_json::LineDelimitedWriter::new(Vec::new());
            writer.write(&batch)?;
            writer.finish()?;
            let text = writer.into_inner();
            lines.extend(
                text.split(|&b| b == b'\n')
                    .filter(|line| !line.is_empty())
                    .map(<[u8]>::to_vec),
            );
        }
        produce_all(&self.target, &lines).await.map_err(external)?;
        Ok(lines.len() as u64)
    }
}

/// Produces `payloads` to the target's topic with an idempotent producer and
/// waits for every delivery (`strata produce` and `INSERT INTO` share it).
pub async fn produce_all(target: &KafkaTarget, payloads: &[Vec<u8>]) -> Result<()> {
    let mut config = ClientConfig::new();
    config.set("bootstrap.servers", &target.bootstrap_servers);
    for (key, value) in &target.properties {
        config.set(key, value);
    }
    let producer: FutureProducer =
        config
            .set("enable.idempotence", "true")
            .create()
            .map_err(|source| CatalogError::Kafka {
                context: format!("connecting to {}", target.bootstrap_servers),
                source,
            })?;
    let sends: Vec<_> = payloads
        .iter()
        .map(|payload| {
            producer.send(
                FutureRecord::<(), [u8]>::to(&target.topic).payload(payload),
                DELIVERY_TIMEOUT,
            )
        })
        .collect();
    for (sent, number) in futures::future::join_all(sends).await.into_iter().zip(1..) {
        sent.map_err(|(source, _)| CatalogError::Kafka {
            context: format!("producing record {number} to topic {}", target.topic),
            source,
        })?;
    }
    Ok(())
}
