//! The one retry policy: capped exponential backoff with full jitter, for transient failures only,
//! and a bound on the requests a store has in flight.
//!
//! Retries live here and nowhere else: the SDK clients are built with their own retries off
//! (`config::sdk_loader`), so attempts are never multiplied. Full jitter spreads concurrent
//! retries (several partitions' consumers hitting the same minute, say) instead of having them
//! collide again in lockstep. Each store counts its retries and the throttling among them, for the
//! batch's metrics.

use crate::error::AwsError;
use aws_sdk_dynamodb::config::http::HttpResponse;
use aws_sdk_dynamodb::error::{ProvideErrorMetadata, SdkError};
use rand::Rng;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use wtc_core::event::FailureKind;

/// Requests one store has in flight at most, whatever the batch asks of it. A batch of 500 CDR
/// rows is about 500 conditional updates (they cannot be batched), so this sets its round trips in
/// a row: 16 to 18 at 32, 9 to 11 at 64 (`wtc-bench pipelines`). More would cut them further, at
/// the price of as many connections, each a TLS handshake on a cold start's small CPU share.
pub const MAX_IN_FLIGHT: usize = 64;

/// Retries so far, and how many of them were the service asking to slow down.
#[derive(Debug, Default)]
pub struct RetryStats {
    pub retries: AtomicU64,
    pub throttled: AtomicU64,
}

impl RetryStats {
    /// (retries, throttled) so far.
    pub fn snapshot(&self) -> (u64, u64) {
        (
            self.retries.load(Ordering::Relaxed),
            self.throttled.load(Ordering::Relaxed),
        )
    }
}

#[derive(Debug, Clone)]
pub struct RetryPolicy {
    /// Attempts in all, the first included.
    pub max_attempts: u32,
    pub base_delay: Duration,
    pub max_delay: Duration,
    pub stats: Arc<RetryStats>,
    /// Permits for requests in flight (`MAX_IN_FLIGHT`), shared by clones.
    in_flight: Arc<tokio::sync::Semaphore>,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 8,
            base_delay: Duration::from_millis(25),
            max_delay: Duration::from_secs(2),
            stats: Arc::default(),
            in_flight: Arc::new(tokio::sync::Semaphore::new(MAX_IN_FLIGHT)),
        }
    }
}

impl RetryPolicy {
    /// The pause before retry number `retry` (1 for the first retry).
    pub fn delay(&self, retry: u32) -> Duration {
        let exp = self
            .base_delay
            .saturating_mul(1u32 << retry.saturating_sub(1).min(16))
            .min(self.max_delay);
        let jitter_ms = rand::rng().random_range(0..=exp.as_millis() as u64);
        Duration::from_millis(jitter_ms)
    }

    /// A fresh count of attempts under this policy.
    pub fn backoff(&self) -> Backoff<'_> {
        Backoff {
            policy: self,
            attempt: 1,
        }
    }

    /// Waits for a permit to send one request (dropped when the request is done).
    pub async fn permit(&self) -> Option<tokio::sync::SemaphorePermit<'_>> {
        self.in_flight.acquire().await.ok()
    }
}

/// The attempts of one operation. After each failure, `after` pauses and returns `Ok` to try
/// again, or gives the error back when it is not transient or the attempts are used up:
///
/// ```text
/// let mut backoff = policy.backoff();
/// let out = loop {
///     match call().await.map_err(|e| AwsError::from_sdk(&e)) {
///         Ok(out) => break out,
///         Err(e) => backoff.after(e).await?,
///     }
/// };
/// ```
#[derive(Debug)]
pub struct Backoff<'p> {
    policy: &'p RetryPolicy,
    attempt: u32,
}

impl Backoff<'_> {
    pub async fn after(&mut self, error: AwsError) -> Result<(), AwsError> {
        if error.kind != FailureKind::Transient || self.attempt >= self.policy.max_attempts {
            return Err(error);
        }
        let stats = &self.policy.stats;
        stats.retries.fetch_add(1, Ordering::Relaxed);
        if error.is_throttling() {
            stats.throttled.fetch_add(1, Ordering::Relaxed);
        }
        tokio::time::sleep(self.policy.delay(self.attempt)).await;
        self.attempt += 1;
        Ok(())
    }
}

/// Why a request sent with `send_with_retry` did not succeed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SendError {
    /// Its condition expression did not hold (DynamoDB's `ConditionalCheckFailedException`).
    Condition,
    /// It failed for good, or kept failing until the attempts ran out.
    Failed(AwsError),
}

/// Sends a request (built afresh by `send` for each attempt) until it succeeds, fails for good, or
/// the policy's attempts are used up. A failed condition is not retried: it is an answer.
pub async fn send_with_retry<T, E, Fut>(
    policy: &RetryPolicy,
    mut send: impl FnMut() -> Fut,
) -> Result<T, SendError>
where
    Fut: std::future::Future<Output = Result<T, SdkError<E, HttpResponse>>>,
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    let mut backoff = policy.backoff();
    loop {
        let result = {
            let _permit = policy.permit().await;
            send().await
        };
        match result {
            Ok(out) => return Ok(out),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.code() == Some("ConditionalCheckFailedException")) =>
            {
                return Err(SendError::Condition);
            }
            Err(e) => backoff
                .after(AwsError::from_sdk(&e))
                .await
                .map_err(SendError::Failed)?,
        }
    }
}

impl SendError {
    /// The failure, saying what was being done; a failed condition as a rejection (for callers
    /// that send without one).
    pub fn doing(self, what: impl Into<String>, resource: &crate::error::Resource) -> AwsError {
        match self {
            SendError::Failed(e) => e.doing(what, resource),
            SendError::Condition => {
                AwsError::rejected("ConditionalCheckFailedException").doing(what, resource)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn quick(max_attempts: u32) -> RetryPolicy {
        RetryPolicy {
            max_attempts,
            base_delay: Duration::from_millis(1),
            max_delay: Duration::from_millis(1),
            ..RetryPolicy::default()
        }
    }

    #[test]
    fn delays_grow_and_stay_capped() {
        let p = RetryPolicy::default();
        for retry in 1..30 {
            assert!(p.delay(retry) <= p.max_delay);
        }
        assert!(p.delay(1) <= p.base_delay);
    }

    #[tokio::test]
    async fn only_transient_failures_are_retried_and_throttling_is_counted() {
        let p = quick(3);
        let mut b = p.backoff();
        let busy = AwsError::throttled("busy");
        assert_eq!(b.after(busy.clone()).await, Ok(()));
        assert_eq!(b.after(busy.clone()).await, Ok(()));
        assert_eq!(b.after(busy.clone()).await, Err(busy));
        assert_eq!(p.stats.snapshot(), (2, 2));
        let invalid = AwsError::rejected("ValidationException: item too large");
        assert_eq!(p.backoff().after(invalid.clone()).await, Err(invalid));
        assert_eq!(p.stats.snapshot(), (2, 2));
    }
}
