//! Records on a Kafka topic (of librdkafka's mock cluster, or any broker).

use std::time::Duration;

use rdkafka::ClientConfig;
use rdkafka::producer::{FutureProducer, FutureRecord};

/// Produces `payloads` to `topic` (to `partition`, or where the partitioner puts them), in order.
pub async fn produce(
    bootstrap: &str,
    topic: &str,
    partition: Option<i32>,
    payloads: &[&str],
) -> Result<(), String> {
    send(bootstrap, topic, payloads.iter().map(|p| (partition, *p))).await
}

/// Produces each payload to its partition of `topic`, in order.
pub async fn produce_to(
    bootstrap: &str,
    topic: &str,
    records: &[(i32, String)],
) -> Result<(), String> {
    let records = records
        .iter()
        .map(|(p, payload)| (Some(*p), payload.as_str()));
    send(bootstrap, topic, records).await
}

async fn send<'a>(
    bootstrap: &str,
    topic: &str,
    records: impl Iterator<Item = (Option<i32>, &'a str)>,
) -> Result<(), String> {
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()
        .map_err(|err| err.to_string())?;
    for (partition, payload) in records {
        let mut record = FutureRecord::<(), str>::to(topic).payload(payload);
        if let Some(partition) = partition {
            record = record.partition(partition);
        }
        producer
            .send(record, Duration::from_secs(5))
            .await
            .map_err(|(err, _)| err.to_string())?;
    }
    Ok(())
}
