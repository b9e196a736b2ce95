//! The dead-letter destination: an SQS queue that receives each rejected record with its reason.
//!
//! Sending is part of processing a batch: if the queue cannot take a letter after retries, the
//! batch fails and is retried, so a rejected record is never lost (it may be sent twice then).

use crate::retry::{RetryPolicy, is_retryable_code};
use aws_sdk_sqs::error::ProvideErrorMetadata;
use aws_sdk_sqs::types::SendMessageBatchRequestEntry;
use wtc_core::DeadLetter;

/// SQS takes at most 10 messages and 256 KiB per batch.
const MAX_BATCH_MESSAGES: usize = 10;
const MAX_BATCH_BYTES: usize = 256 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum DeadLetterError {
    #[error("dead-letter queue refused {count} letters after retries: {reason}")]
    NotSent { count: usize, reason: String },
    #[error("a dead letter of {0} bytes exceeds the queue's 256 KiB message limit")]
    TooLarge(usize),
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

    pub fn url(&self) -> &str {
        &self.url
    }

    /// Sends every letter, in batches, retrying what the queue did not take.
    pub async fn send(&self, letters: &[DeadLetter]) -> Result<(), DeadLetterError> {
        let bodies: Vec<String> = letters
            .iter()
            .map(|l| serde_json::to_string(l).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}")))
            .collect();
        let mut start = 0;
        while start < bodies.len() {
            let mut end = start;
            let mut bytes = 0;
            while end < bodies.len() && end - start < MAX_BATCH_MESSAGES {
                let len = bodies[end].len();
                if len > MAX_BATCH_BYTES {
                    return Err(DeadLetterError::TooLarge(len));
                }
                if bytes + len > MAX_BATCH_BYTES {
                    break;
                }
                bytes += len;
                end += 1;
            }
            self.send_batch(&bodies[start..end]).await?;
            start = end;
        }
        Ok(())
    }

    async fn send_batch(&self, bodies: &[String]) -> Result<(), DeadLetterError> {
        let mut pending: Vec<usize> = (0..bodies.len()).collect();
        let mut retry = 0;
        loop {
            let entries = pending
                .iter()
                .map(|&i| {
                    SendMessageBatchRequestEntry::builder()
                        .id(i.to_string())
                        .message_body(&bodies[i])
                        .build()
                })
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| DeadLetterError::NotSent {
                    count: pending.len(),
                    reason: e.to_string(),
                })?;
            let reason = match self
                .client
                .send_message_batch()
                .queue_url(&self.url)
                .set_entries(Some(entries))
                .send()
                .await
            {
                Ok(out) => {
                    pending = out
                        .failed()
                        .iter()
                        .filter_map(|f| f.id().parse::<usize>().ok())
                        .collect();
                    if pending.is_empty() {
                        return Ok(());
                    }
                    format!("{} entries failed", pending.len())
                }
                Err(e) => {
                    let retryable = e
                        .as_service_error()
                        .is_none_or(|s| is_retryable_code(s.code()));
                    let reason = format!("{}", aws_sdk_sqs::Error::from(e));
                    if !retryable {
                        return Err(DeadLetterError::NotSent {
                            count: pending.len(),
                            reason,
                        });
                    }
                    reason
                }
            };
            retry += 1;
            if !self.retry.pause(retry).await {
                return Err(DeadLetterError::NotSent {
                    count: pending.len(),
                    reason,
                });
            }
        }
    }
}
