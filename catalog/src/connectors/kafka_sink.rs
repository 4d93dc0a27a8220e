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
        let mut config = ClientConfig::new();
        config.set("bootstrap.servers", &self.target.bootstrap_servers);
        for (key, value) in &self.target.properties {
            config.set(key, value);
        }
        let producer: FutureProducer = config
            .set("enable.idempotence", "true")
            .create()
            .map_err(external)?;
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
        let sends: Vec<_> = lines
            .iter()
            .map(|line| {
                producer.send(
                    FutureRecord::<(), [u8]>::to(&self.target.topic).payload(line),
                    DELIVERY_TIMEOUT,
                )
            })
            .collect();
        for sent in futures::future::join_all(sends).await {
            sent.map_err(|(err, _)| external(err))?;
        }
        Ok(lines.len() as u64)
    }
}
