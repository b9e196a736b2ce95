//! The one retry policy: capped exponential backoff with full jitter, and the one rule for which
//! AWS errors are worth another attempt.
//!
//! Full jitter spreads concurrent retries (several partitions' consumers hitting the same minute,
//! say) instead of having them collide again in lockstep.

use aws_sdk_dynamodb::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use rand::Rng;
use std::time::Duration;

#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    /// Attempts in all, the first included.
    pub max_attempts: u32,
    pub base_delay: Duration,
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 8,
            base_delay: Duration::from_millis(25),
            max_delay: Duration::from_secs(2),
        }
    }
}

/// How an attempt failed.
#[derive(Debug)]
pub enum Attempt<E> {
    /// Worth another attempt after a pause (throttling, a server fault, a lost connection).
    Retry(E),
    /// Will fail the same way again.
    Fail(E),
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
    pub fn backoff(&self) -> Backoff {
        Backoff {
            policy: *self,
            attempt: 1,
        }
    }
}

/// The attempts of one operation. After each failure, `after` pauses and returns `Ok` to try
/// again, or gives the error back when it is final or the attempts are used up:
///
/// ```text
/// let mut backoff = policy.backoff();
/// let out = loop {
///     match call().await.map_err(classify) {
///         Ok(out) => break out,
///         Err(failure) => backoff.after(failure).await?,
///     }
/// };
/// ```
#[derive(Debug)]
pub struct Backoff {
    policy: RetryPolicy,
    attempt: u32,
}

impl Backoff {
    pub async fn after<E>(&mut self, failure: Attempt<E>) -> Result<(), E> {
        match failure {
            Attempt::Fail(e) => Err(e),
            Attempt::Retry(e) if self.attempt >= self.policy.max_attempts => Err(e),
            Attempt::Retry(_) => {
                tokio::time::sleep(self.policy.delay(self.attempt)).await;
                self.attempt += 1;
                Ok(())
            }
        }
    }
}

/// Error codes that mean "slow down and try again" on DynamoDB, SQS and Kinesis.
pub fn is_retryable_code(code: Option<&str>) -> bool {
    matches!(
        code,
        Some(
            "ThrottlingException"
                | "Throttling"
                | "ProvisionedThroughputExceededException"
                | "RequestLimitExceeded"
                | "InternalServerError"
                | "InternalFailure"
                | "ServiceUnavailable"
                | "TransactionInProgressException"
                | "RequestThrottled"
                | "KMSThrottlingException"
        )
    )
}

/// Classifies an SDK error (any service): service errors by code, and transport errors (timeouts,
/// refused connections) as retryable. The message keeps the whole error chain.
pub fn classify<E, R>(error: SdkError<E, R>) -> Attempt<String>
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug,
{
    let retryable = error
        .as_service_error()
        .is_none_or(|s| is_retryable_code(s.code()));
    let message = DisplayErrorContext(&error).to_string();
    if retryable {
        Attempt::Retry(message)
    } else {
        Attempt::Fail(message)
    }
}

/// Why a request sent with `send_with_retry` did not succeed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SendError {
    /// Its condition expression did not hold (DynamoDB's `ConditionalCheckFailedException`).
    Condition,
    /// It failed for good, or kept failing until the attempts ran out.
    Failed(String),
}

/// Sends a request (built afresh by `send` for each attempt) until it succeeds, fails for good, or
/// the policy's attempts are used up. A failed condition is not retried: it is an answer.
pub async fn send_with_retry<T, E, R, Fut>(
    policy: &RetryPolicy,
    mut send: impl FnMut() -> Fut,
) -> Result<T, SendError>
where
    Fut: std::future::Future<Output = Result<T, SdkError<E, R>>>,
    E: ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug,
{
    let mut backoff = policy.backoff();
    loop {
        match send().await {
            Ok(out) => return Ok(out),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.code() == Some("ConditionalCheckFailedException")) =>
            {
                return Err(SendError::Condition);
            }
            Err(e) => backoff
                .after(classify(e))
                .await
                .map_err(SendError::Failed)?,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_grow_and_stay_capped() {
        let p = RetryPolicy::default();
        for retry in 1..30 {
            assert!(p.delay(retry) <= p.max_delay);
        }
        assert!(p.delay(1) <= p.base_delay);
    }

    #[tokio::test]
    async fn backoff_allows_the_policy_s_attempts_and_stops_at_a_final_error() {
        let p = RetryPolicy {
            max_attempts: 3,
            base_delay: Duration::from_millis(1),
            max_delay: Duration::from_millis(1),
        };
        let mut b = p.backoff();
        assert_eq!(b.after(Attempt::Retry("busy")).await, Ok(()));
        assert_eq!(b.after(Attempt::Retry("busy")).await, Ok(()));
        assert_eq!(b.after(Attempt::Retry("busy")).await, Err("busy"));
        assert_eq!(
            p.backoff().after(Attempt::Fail("bad request")).await,
            Err("bad request")
        );
    }
}
