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

/// How far the generator runs ahead of the functions, in ticks: a dozen batches of 500, about
/// one per partition. A live feed produces at the pace of time, so the functions meet each
/// partition's records close to the others'; a generator that put a whole simulated day on the
/// topic at once would have them read one partition's backlog far ahead of the next (the broker
/// serves a partition's backlog in large slices), and every candle closed ahead of the slowest
/// partition would be rewound when its late ticks arrive.
pub const LEAD: u64 = 6_000;

/// Ticks sent to the producer at a time, between looks at how far ahead the generator is.
const CHUNK: usize = 1_000;

/// Sends every tick, counting acknowledgements in `progress.produced`, never more than `LEAD`
/// ahead of what the functions have processed (`progress.processed`).
pub async fn produce_ticks(
    producer: &KafkaPublisher,
    ticks: impl Iterator<Item = Tick>,
    progress: &Progress,
) -> Result<u64> {
    use std::sync::atomic::Ordering;
    let acked = |n| Progress::add(&progress.produced, n);
    let mut ticks = ticks.peekable();
    let mut sent = 0;
    while ticks.peek().is_some() {
        while sent
            > progress
                .processed
                .load(Ordering::Relaxed)
                .saturating_add(LEAD)
        {
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        let chunk: Vec<OutRecord> = ticks
            .by_ref()
            .take(CHUNK)
            .map(|t| tick_record(&t))
            .collect();
        sent += producer
            .publish(chunk, &acked)
            .await
            .context("producing ticks")?;
    }
    Ok(sent)
}
