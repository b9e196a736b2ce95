//! The one retry policy: capped exponential backoff with full jitter.
//!
//! Full jitter spreads concurrent retries (several partitions' consumers hitting the same hourly
//! item, say) instead of having them collide again in lockstep.

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

    /// Sleeps before retry number `retry`; `false` when the attempts are used up.
    pub async fn pause(&self, retry: u32) -> bool {
        if retry >= self.max_attempts {
            return false;
        }
        tokio::time::sleep(self.delay(retry)).await;
        true
    }
}

/// Error codes that mean "slow down and try again" on DynamoDB and SQS.
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
                | "TransactionConflict"
                | "RequestThrottled"
        )
    )
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
}
