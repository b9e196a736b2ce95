//! Kinesis on the local stack: a producer of ticks, and a poller that stands in for a Kinesis
//! event-source mapping (events built as AWS builds them, `ReportBatchItemFailures` honoured: a
//! batch resumes from the first failed record, as the mapping's checkpoint does).

use crate::generator::tick_record;
use crate::poller::{Invoker, dead_letter_batch};
use crate::progress::Progress;
use anyhow::{Context, Result};
use aws_sdk_kinesis::error::DisplayErrorContext;
use aws_sdk_kinesis::types::ShardIteratorType;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use wtc_aws::{DeadLetterQueue, KinesisPublisher};
use wtc_core::event::{KinesisEvent, KinesisEventRecord};
use wtc_core::{SourceEvent, Tick};

/// Puts ticks on a stream (partition key: the pair), retrying the entries Kinesis did not take.
pub async fn put_ticks(
    client: &aws_sdk_kinesis::Client,
    stream: &str,
    ticks: &[Tick],
    progress: &Progress,
) -> Result<u64> {
    let records: Vec<_> = ticks.iter().map(tick_record).collect();
    let accepted = |n| Progress::add(&progress.produced, n);
    Ok(KinesisPublisher::new(client.clone(), stream.to_owned())
        .publish(&records, &accepted)
        .await?)
}

/// Settings named after the Kinesis event-source mapping's.
#[derive(Debug, Clone)]
pub struct KinesisPollerOptions {
    pub stream: String,
    pub batch_size: i32,
    pub maximum_retry_attempts: u32,
}

pub struct KinesisPoller {
    client: aws_sdk_kinesis::Client,
    options: KinesisPollerOptions,
    invoker: Invoker,
    dead_letters: DeadLetterQueue,
}

/// One shard's read position.
struct ShardCursor {
    shard_id: String,
    iterator: Option<String>,
}

impl KinesisPoller {
    pub fn new(
        client: aws_sdk_kinesis::Client,
        options: KinesisPollerOptions,
        invoker: Invoker,
        dead_letters: DeadLetterQueue,
    ) -> Self {
        Self {
            client,
            options,
            invoker,
            dead_letters,
        }
    }

    /// Reads every shard from its oldest record (TRIM_HORIZON) until `stop` is set.
    pub async fn run(&self, progress: &Progress, stop: &AtomicBool) -> Result<()> {
        let stream = &self.options.stream;
        let summary = self
            .client
            .describe_stream_summary()
            .stream_name(stream)
            .send()
            .await
            .with_context(|| format!("describing stream {stream}"))?;
        let arn = summary
            .stream_description_summary()
            .map(|s| s.stream_arn().to_owned())
            .unwrap_or_default();
        let shards = self.client.list_shards().stream_name(stream).send().await?;
        let mut cursors = Vec::new();
        for shard in shards.shards() {
            let iterator = self
                .client
                .get_shard_iterator()
                .stream_name(stream)
                .shard_id(shard.shard_id())
                .shard_iterator_type(ShardIteratorType::TrimHorizon)
                .send()
                .await?
                .shard_iterator()
                .map(str::to_owned);
            cursors.push(ShardCursor {
                shard_id: shard.shard_id().to_owned(),
                iterator,
            });
        }
        while !stop.load(Ordering::Relaxed) {
            let mut idle = true;
            for cursor in &mut cursors {
                if self.poll_shard(cursor, &arn, progress).await? {
                    idle = false;
                }
            }
            if idle {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
        Ok(())
    }

    /// Reads one batch of a shard and delivers it; `true` when it had records.
    async fn poll_shard(
        &self,
        cursor: &mut ShardCursor,
        arn: &str,
        progress: &Progress,
    ) -> Result<bool> {
        let Some(iterator) = cursor.iterator.clone() else {
            return Ok(false);
        };
        let out = match self
            .client
            .get_records()
            .shard_iterator(iterator)
            .limit(self.options.batch_size)
            .send()
            .await
        {
            Ok(out) => out,
            Err(e) => {
                // Throttling and outages pass: the same iterator is read again next round.
                tracing::warn!(
                    "reading shard {}: {}",
                    cursor.shard_id,
                    DisplayErrorContext(&e)
                );
                return Ok(false);
            }
        };
        cursor.iterator = out.next_shard_iterator().map(str::to_owned);
        if out.records().is_empty() {
            return Ok(false);
        }
        let mut records: Vec<KinesisEventRecord> = out
            .records()
            .iter()
            .map(|r| {
                KinesisEventRecord::new(
                    arn,
                    &cursor.shard_id,
                    r.sequence_number(),
                    r.partition_key().unwrap_or_default(),
                    r.data().as_ref(),
                    r.approximate_arrival_timestamp()
                        .map_or(0.0, |t| t.as_secs_f64()),
                )
            })
            .collect();
        let mut attempt = 0;
        while !records.is_empty() {
            let event = SourceEvent::Kinesis(KinesisEvent {
                records: records.clone(),
            });
            // The mapping resumes from the lowest failed sequence number; an identifier it does not
            // know fails the whole batch.
            let failed_from = match self.invoker.invoke(&event).await {
                Ok(invocation) => {
                    let from = invocation
                        .item_failures
                        .iter()
                        .map(|seq| {
                            records
                                .iter()
                                .position(|r| &r.kinesis.sequence_number == seq)
                                .unwrap_or(0)
                        })
                        .min();
                    invocation.count(from.unwrap_or(records.len()), progress);
                    from
                }
                Err(e) => {
                    tracing::warn!("Kinesis batch of {} failed: {e:#}", records.len());
                    Some(0)
                }
            };
            let Some(from) = failed_from else { break };
            records.drain(..from);
            attempt += 1;
            if attempt > self.options.maximum_retry_attempts {
                let reason = format!("records failed after {attempt} attempts");
                let event = SourceEvent::Kinesis(KinesisEvent { records });
                dead_letter_batch(
                    &self.dead_letters,
                    self.invoker.function(),
                    &event,
                    &reason,
                    progress,
                )
                .await?;
                break;
            }
            tokio::time::sleep(Duration::from_millis(200 * u64::from(attempt))).await;
        }
        Ok(true)
    }
}
