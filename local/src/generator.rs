//! Produces simulated ticks to the tick topic, as the curriculum's generator does.

use crate::progress::Progress;
use anyhow::{Context, Result};
use futures::StreamExt;
use futures::stream::FuturesUnordered;
use rdkafka::ClientConfig;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::util::Timeout;
use std::time::Duration;
use wtc_core::Tick;
use wtc_core::simulate::kafka_key;

/// An idempotent producer with batching: librdkafka groups messages per partition.
pub fn tick_producer(brokers: &str) -> Result<FutureProducer> {
    ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("enable.idempotence", "true")
        .set("linger.ms", "5")
        .set("batch.num.messages", "10000")
        .set("compression.type", "none")
        .set("message.timeout.ms", "60000")
        .create()
        .context("creating the Kafka producer")
}

/// Sends every tick (key and value as the reference generator writes them), counting acks.
pub async fn produce_ticks(
    producer: &FutureProducer,
    topic: &str,
    ticks: impl Iterator<Item = Tick>,
    progress: &Progress,
) -> Result<u64> {
    const IN_FLIGHT: usize = 20_000;
    let mut pending = FuturesUnordered::new();
    let mut sent = 0u64;
    for tick in ticks {
        if pending.len() >= IN_FLIGHT
            && let Some(result) = pending.next().await
        {
            acked(result, progress)?;
        }
        let key = kafka_key(&tick);
        let value = tick.to_json();
        pending.push(async move {
            producer
                .send(
                    FutureRecord::to(topic)
                        .key(key.as_bytes())
                        .payload(value.as_bytes()),
                    Timeout::After(Duration::from_secs(60)),
                )
                .await
                .map(|_| ())
                .map_err(|(e, _)| e)
        });
        sent += 1;
    }
    while let Some(result) = pending.next().await {
        acked(result, progress)?;
    }
    Ok(sent)
}

fn acked(result: Result<(), rdkafka::error::KafkaError>, progress: &Progress) -> Result<()> {
    result.context("producing a tick")?;
    Progress::add(&progress.produced, 1);
    Ok(())
}
