//! The dead-letter destination: an SQS queue that receives each rejected record with its reason.
//!
//! Every letter is made to fit the queue (size and characters, see `DeadLetter::to_message_body`),
//! so no record's content can make the queue refuse it. Throttling and outages are retried; if the
//! queue still cannot take a letter, the batch fails and is retried whole (after its valid records
//! are stored), so a rejected record is never lost (it may then be sent twice).

use crate::retry::{Attempt, RetryPolicy, classify};
use aws_sdk_sqs::types::SendMessageBatchRequestEntry;
use wtc_core::DeadLetter;

/// SQS takes at most 10 messages and 256 KiB per batch, and 256 KiB per message.
const MAX_BATCH_MESSAGES: usize = 10;
const MAX_BATCH_BYTES: usize = 256 * 1024;

#[derive(Debug, thiserror::Error)]
#[error("dead-letter queue refused {count} letters after retries: {reason}")]
pub struct DeadLetterError {
    pub count: usize,
    pub reason: String,
}

#[derive(Debug, Clone)]
pub struct DeadLetterQueue {
    client: aws_sdk_sqs::Client,
    url: String,
    retry: RetryPolicy,
}

impl DeadLetterQueue {
    pub fn new(client: aws_sdk_sqs::Client, url: String) -> Self {
        Self {
            client,
            url,
            retry: RetryPolicy::default(),
        }
    }

    /// Sends every letter, in batches, retrying what the queue did not take.
    pub async fn send(&self, letters: &[DeadLetter]) -> Result<(), DeadLetterError> {
        // Room for the batch entry's own fields within the batch limit.
        let bodies: Vec<String> = letters
            .iter()
            .map(|l| l.to_message_body(MAX_BATCH_BYTES - 1024))
            .collect();
        let mut start = 0;
        while start < bodies.len() {
            let mut end = start;
            let mut bytes = 0;
            while end < bodies.len()
                && end - start < MAX_BATCH_MESSAGES
                && (end == start || bytes + bodies[end].len() <= MAX_BATCH_BYTES - 1024)
            {
                bytes += bodies[end].len();
                end += 1;
            }
            self.send_batch(&bodies[start..end]).await?;
            start = end;
        }
        Ok(())
    }

    async fn send_batch(&self, bodies: &[String]) -> Result<(), DeadLetterError> {
        let mut pending: Vec<usize> = (0..bodies.len()).collect();
        let mut backoff = self.retry.backoff();
        loop {
            let attempt: Result<(), Attempt<String>> = async {
                let entries: Vec<SendMessageBatchRequestEntry> = pending
                    .iter()
                    .filter_map(|&i| {
                        SendMessageBatchRequestEntry::builder()
                            .id(i.to_string())
                            .message_body(&bodies[i])
                            .build()
                            .ok()
                    })
                    .collect();
                let out = self
                    .client
                    .send_message_batch()
                    .queue_url(&self.url)
                    .set_entries(Some(entries))
                    .send()
                    .await
                    .map_err(classify)?;
                let failed: Vec<usize> = out
                    .failed()
                    .iter()
                    .filter_map(|f| f.id().parse().ok())
                    .collect();
                if failed.is_empty() {
                    return Ok(());
                }
                let reason = out
                    .failed()
                    .first()
                    .and_then(|f| f.message())
                    .unwrap_or_default()
                    .to_owned();
                pending = failed;
                Err(Attempt::Retry(format!(
                    "{} entries failed: {reason}",
                    pending.len()
                )))
            }
            .await;
            match attempt {
                Ok(()) => return Ok(()),
                Err(failure) => {
                    if let Err(reason) = backoff.after(failure).await {
                        return Err(DeadLetterError {
                            count: pending.len(),
                            reason,
                        });
                    }
                }
            }
        }
    }
}
