//! Produces simulated ticks to the tick topic, as the curriculum's generator does.

use crate::progress::Progress;
use anyhow::{Context, Result};
use wtc_aws::OutRecord;
use wtc_aws::publish::{KafkaPublisher, producer_config};
use wtc_core::Tick;
use wtc_core::simulate::kafka_key;

/// An idempotent, batching producer to `topic`.
pub fn tick_producer(brokers: &str, topic: &str) -> Result<KafkaPublisher> {
    KafkaPublisher::new(&producer_config(brokers), topic.to_owned())
        .context("creating the Kafka producer")
}

/// A tick as a record: key and value as the reference generator writes them.
pub fn tick_record(tick: &Tick) -> OutRecord {
    OutRecord {
        key: kafka_key(tick),
        partition_key: tick.pair.clone(),
        value: tick.to_json(),
    }
}

/// Sends every tick, counting acknowledgements in `progress.produced`.
pub async fn produce_ticks(
    producer: &KafkaPublisher,
    ticks: impl Iterator<Item = Tick>,
    progress: &Progress,
) -> Result<u64> {
    let acked = |n| Progress::add(&progress.produced, n);
    producer
        .publish(ticks.map(|t| tick_record(&t)), &acked)
        .await
        .context("producing ticks")
}
