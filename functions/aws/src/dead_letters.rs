//! The dead-letter destination: an SQS queue that receives each rejected record with its reason,
//! and an S3 bucket for letters too large for the queue (the claim-check pattern).
//!
//! A letter is never cut (see `DeadLetter::to_message_body`): one that does not fit a message is
//! stored whole as `dead-letters/<function>/<hash>.json` (the hash of the letter, so sending it
//! again writes the same object) and the queue gets the letter without its value, pointing to it
//! (`claim`). Every letter can therefore be replayed byte for byte. Throttling and outages are
//! retried; if the queue or the bucket still cannot take a letter, the batch fails and is
//! retried whole (after its valid records are stored), so a rejected record is never lost (it may
//! then be sent twice).

use crate::error::{AwsError, Resource};
use crate::retry::{RetryPolicy, send_with_retry};
use aws_sdk_sqs::types::{
    DeleteMessageBatchRequestEntry, MessageSystemAttributeName, SendMessageBatchRequestEntry,
};
use wtc_core::DeadLetter;
use wtc_core::event::FailureKind;

/// SQS takes at most 10 messages and 256 KiB per batch, and 256 KiB per message.
const MAX_BATCH_MESSAGES: usize = 10;
const MAX_BATCH_BYTES: usize = 256 * 1024;
/// Room for a batch entry's own fields within the batch limit.
const MAX_BODY_BYTES: usize = MAX_BATCH_BYTES - 1024;

#[derive(Debug, Clone, thiserror::Error)]
#[error("{count} dead letters could not be stored: {error}")]
pub struct DeadLetterError {
    pub count: usize,
    pub error: AwsError,
}

/// Where letters too large for the queue go.
#[derive(Debug, Clone)]
pub struct ClaimCheck {
    pub s3: aws_sdk_s3::Client,
    pub bucket: Resource,
}

#[derive(Debug, Clone)]
pub struct DeadLetterQueue {
    client: aws_sdk_sqs::Client,
    queue: Resource,
    claim_check: Option<ClaimCheck>,
    retry: RetryPolicy,
}

impl DeadLetterQueue {
    pub fn new(client: aws_sdk_sqs::Client, url: impl Into<Resource>) -> Self {
        Self {
            client,
            queue: url.into(),
            claim_check: None,
            retry: RetryPolicy::default(),
        }
    }

    /// Letters too large for the queue are stored in `bucket`.
    pub fn with_claim_check(mut self, s3: aws_sdk_s3::Client, bucket: impl Into<Resource>) -> Self {
        self.claim_check = Some(ClaimCheck {
            s3,
            bucket: bucket.into(),
        });
        self
    }

    /// The queue in `DEAD_LETTER_QUEUE_URL` and the claim-check bucket in `DEAD_LETTER_BUCKET`.
    pub fn from_env(sdk: &aws_config::SdkConfig) -> Result<Self, crate::ConfigError> {
        let queue = Resource::from_env(
            "DEAD_LETTER_QUEUE_URL",
            "the SQS queue URL for rejected records",
        )?;
        let bucket = Resource::from_env(
            "DEAD_LETTER_BUCKET",
            "the S3 bucket for dead letters too large for the queue",
        )?;
        Ok(Self::new(aws_sdk_sqs::Client::new(sdk), queue)
            .with_claim_check(crate::s3_client(sdk), bucket))
    }

    /// The queue's URL.
    pub fn url(&self) -> &str {
        &self.queue.name
    }

    /// Sends every letter, in batches, retrying what the queue did not take; a letter too large
    /// for a message is stored whole first and the queue gets its claim ticket.
    pub async fn send(&self, letters: &[DeadLetter]) -> Result<(), DeadLetterError> {
        let mut bodies = Vec::with_capacity(letters.len());
        for letter in letters {
            let body = match letter.to_message_body(MAX_BODY_BYTES) {
                Ok(body) => body,
                Err(too_large) => {
                    let claim = self
                        .store_whole(letter, &too_large)
                        .await
                        .map_err(|error| DeadLetterError {
                            count: letters.len(),
                            error,
                        })?;
                    letter
                        .claim_ticket(claim)
                        .to_message_body(MAX_BODY_BYTES)
                        .map_err(|e| DeadLetterError {
                            count: letters.len(),
                            error: AwsError::rejected(e.to_string())
                                .doing("sending a claim ticket", &self.queue),
                        })?
                }
            };
            bodies.push(body);
        }
        let mut start = 0;
        while start < bodies.len() {
            let mut end = start;
            let mut bytes = 0;
            while end < bodies.len()
                && end - start < MAX_BATCH_MESSAGES
                && (end == start || bytes + bodies[end].len() <= MAX_BODY_BYTES)
            {
                bytes += bodies[end].len();
                end += 1;
            }
            self.send_batch(&bodies[start..end]).await?;
            start = end;
        }
        Ok(())
    }

    /// Stores a whole letter in the claim-check bucket; returns its `s3://` address.
    async fn store_whole(
        &self,
        letter: &DeadLetter,
        too_large: &wtc_core::dead_letter::TooLarge,
    ) -> Result<String, AwsError> {
        let Some(check) = &self.claim_check else {
            return Err(AwsError {
                kind: FailureKind::Deployment,
                what: format!("dead-lettering a record from {}", letter.source),
                code: None,
                detail: format!(
                    "{too_large}, and no claim-check bucket is set: set DEAD_LETTER_BUCKET"
                ),
            });
        };
        let json = letter.to_json();
        let key = format!(
            "dead-letters/{}/{:032x}.json",
            letter.function,
            xxhash_rust::xxh3::xxh3_128(json.as_bytes())
        );
        let mut backoff = self.retry.backoff();
        loop {
            let result = {
                let _permit = self.retry.permit().await;
                check
                    .s3
                    .put_object()
                    .bucket(&check.bucket.name)
                    .key(&key)
                    .content_type("application/json")
                    .body(aws_sdk_s3::primitives::ByteStream::from(
                        json.clone().into_bytes(),
                    ))
                    .send()
                    .await
            };
            match result {
                Ok(_) => return Ok(format!("s3://{}/{key}", check.bucket.name)),
                Err(e) => backoff
                    .after(AwsError::from_sdk(&e))
                    .await
                    .map_err(|e| e.doing(format!("storing {key}"), &check.bucket))?,
            }
        }
    }

    async fn send_batch(&self, bodies: &[String]) -> Result<(), DeadLetterError> {
        let mut pending: Vec<usize> = (0..bodies.len()).collect();
        let mut backoff = self.retry.backoff();
        let what = "sending dead letters";
        loop {
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
            let result = {
                let _permit = self.retry.permit().await;
                self.client
                    .send_message_batch()
                    .queue_url(&self.queue.name)
                    .set_entries(Some(entries))
                    .send()
                    .await
            };
            let error = match result {
                Ok(out) => {
                    let failed: Vec<usize> = out
                        .failed()
                        .iter()
                        .filter_map(|f| f.id().parse().ok())
                        .collect();
                    if failed.is_empty() {
                        return Ok(());
                    }
                    // An entry the queue refuses as the sender's fault will be refused again.
                    let senders_fault = out.failed().iter().any(|f| f.sender_fault());
                    let reason = out
                        .failed()
                        .first()
                        .map(|f| format!("{}: {}", f.code(), f.message().unwrap_or_default()))
                        .unwrap_or_default();
                    pending = failed;
                    let detail = format!("{} entries refused ({reason})", pending.len());
                    if senders_fault {
                        AwsError::rejected(detail)
                    } else {
                        AwsError::throttled(detail)
                    }
                }
                Err(e) => AwsError::from_sdk(&e),
            };
            if let Err(error) = backoff.after(error).await {
                return Err(DeadLetterError {
                    count: pending.len(),
                    error: error.doing(what, &self.queue),
                });
            }
        }
    }
}

/// A letter read back from the queue, to replay.
#[derive(Debug, Clone)]
pub struct Received {
    pub body: String,
    /// The handle that deletes it or makes it visible again.
    pub receipt: String,
    /// When it was sent, in milliseconds since the epoch (SQS's `SentTimestamp`).
    pub sent_ms: Option<i64>,
}

impl DeadLetterQueue {
    /// Up to `max` letters (at most 10), hidden from other readers for `hide_secs`.
    pub async fn receive(&self, max: i32, hide_secs: i32) -> Result<Vec<Received>, AwsError> {
        let out = send_with_retry(&self.retry, || {
            self.client
                .receive_message()
                .queue_url(&self.queue.name)
                .max_number_of_messages(max.clamp(1, 10))
                .visibility_timeout(hide_secs)
                .message_system_attribute_names(MessageSystemAttributeName::SentTimestamp)
                .send()
        })
        .await
        .map_err(|e| e.doing("reading dead letters", &self.queue))?;
        Ok(out
            .messages()
            .iter()
            .filter_map(|m| {
                Some(Received {
                    body: m.body()?.to_owned(),
                    receipt: m.receipt_handle()?.to_owned(),
                    sent_ms: m
                        .attributes()
                        .and_then(|a| a.get(&MessageSystemAttributeName::SentTimestamp))
                        .and_then(|t| t.parse().ok()),
                })
            })
            .collect())
    }

    /// Deletes letters that were replayed, ten to a request.
    pub async fn delete(&self, receipts: &[String]) -> Result<(), AwsError> {
        for chunk in receipts.chunks(MAX_BATCH_MESSAGES) {
            let entries: Vec<DeleteMessageBatchRequestEntry> = chunk
                .iter()
                .enumerate()
                .filter_map(|(i, receipt)| {
                    DeleteMessageBatchRequestEntry::builder()
                        .id(i.to_string())
                        .receipt_handle(receipt)
                        .build()
                        .ok()
                })
                .collect();
            let out = send_with_retry(&self.retry, || {
                self.client
                    .delete_message_batch()
                    .queue_url(&self.queue.name)
                    .set_entries(Some(entries.clone()))
                    .send()
            })
            .await
            .map_err(|e| e.doing("deleting replayed dead letters", &self.queue))?;
            if let Some(f) = out.failed().first() {
                return Err(AwsError::rejected(format!(
                    "{} replayed letters could not be deleted ({}: {})",
                    out.failed().len(),
                    f.code(),
                    f.message().unwrap_or_default()
                ))
                .doing("deleting replayed dead letters", &self.queue));
            }
        }
        Ok(())
    }

    /// Makes a letter that was not replayed visible again at once.
    pub async fn release(&self, receipt: &str) -> Result<(), AwsError> {
        send_with_retry(&self.retry, || {
            self.client
                .change_message_visibility()
                .queue_url(&self.queue.name)
                .receipt_handle(receipt)
                .visibility_timeout(0)
                .send()
        })
        .await
        .map(|_| ())
        .map_err(|e| e.doing("returning a dead letter to the queue", &self.queue))
    }

    /// The whole letter: a claim ticket is exchanged for the letter stored at its `claim`.
    pub async fn redeem(&self, letter: DeadLetter) -> Result<DeadLetter, AwsError> {
        let Some(claim) = letter.claim.clone() else {
            return Ok(letter);
        };
        let Some((bucket, key)) = claim
            .strip_prefix("s3://")
            .and_then(|rest| rest.split_once('/'))
        else {
            return Err(AwsError::rejected(format!(
                "a claim ticket points to {claim}, which is not an s3:// address"
            )));
        };
        let bucket = Resource::new(bucket, "DEAD_LETTER_BUCKET");
        let Some(check) = &self.claim_check else {
            return Err(AwsError {
                kind: FailureKind::Deployment,
                what: format!("reading the dead letter at {claim}"),
                code: None,
                detail: "no claim-check bucket is set: set DEAD_LETTER_BUCKET".into(),
            });
        };
        let out = send_with_retry(&self.retry, || {
            check.s3.get_object().bucket(&bucket.name).key(key).send()
        })
        .await
        .map_err(|e| e.doing(format!("reading {claim}"), &bucket))?;
        let bytes = out.body.collect().await.map_err(|e| {
            AwsError::throttled(format!("reading {claim}: {e}")).doing("reading a claim", &bucket)
        })?;
        serde_json::from_slice(&bytes.into_bytes()).map_err(|e| {
            AwsError::rejected(format!("the letter at {claim} is not a dead letter: {e}"))
        })
    }
}
