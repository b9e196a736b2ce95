//! aggregate-usage: fold a batch of CDR records into hourly usage per MSISDN, exactly once.
//!
//! The handler takes a Kafka event (topics `cdr-data` and `cdr-voice`) or a Kinesis event. Each
//! record is decoded and validated (`wtc_core::cdr::CdrRecord`); valid ones are folded per usage
//! item (msisdn, hour, category, usage type), distinct rows only, and each item is added to the
//! usage table with the names of its rows, so that no delivery counts a row twice (see
//! `wtc_aws::usage`). Rejected records go to the dead-letter queue with their reason and position
//! and never hold back the rest. What fails after retries fails a Kafka batch (delivered again,
//! safely) or is reported as Kinesis batch item failures.

use serde::{Deserialize, Serialize};
use std::sync::{Arc, Mutex};
use std::time::Instant;
use wtc_aws::{AwsError, DeadLetterQueue, FailureKind, Resource, UsageStore};
use wtc_core::cdr::{Folded, UsageFold};
use wtc_core::event::{BatchError, BatchItemFailures, BatchOutcome};
use wtc_core::{DeadLetter, SourceEvent};

pub const FUNCTION: &str = "aggregate-usage";

/// What one batch came to.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct UsageReport {
    pub records: usize,
    /// Rows added to the totals.
    pub applied: usize,
    /// Rows the totals already held (redeliveries, a file processed again) or that came twice in
    /// this batch.
    pub duplicates: usize,
    /// Usage items written.
    pub items: usize,
    pub rejected: usize,
    /// Records to be delivered again.
    pub failed: usize,
    /// Requests the table asked to slow down (each retried with backoff).
    pub throttled: u64,
}

/// The outcome of one batch.
pub type UsageResult = BatchOutcome<UsageReport>;

#[derive(Debug, Clone)]
pub struct AggregateUsage {
    pub store: UsageStore,
    pub dead_letters: DeadLetterQueue,
    /// Folds of earlier batches, emptied, to be reused by the next ones.
    folds: Arc<Mutex<Vec<UsageFold>>>,
}

impl AggregateUsage {
    /// `USAGE_TABLE`, `DEAD_LETTER_QUEUE_URL`, `DEAD_LETTER_BUCKET`, and the standard AWS
    /// settings.
    pub async fn from_env() -> Result<Self, wtc_aws::ConfigError> {
        let table = Resource::from_env("USAGE_TABLE", "the DynamoDB table for hourly usage")?;
        let sdk = wtc_aws::load_sdk_config().await;
        Ok(Self::new(
            UsageStore::new(aws_sdk_dynamodb::Client::new(&sdk), table),
            DeadLetterQueue::from_env(&sdk)?,
        ))
    }

    pub fn new(store: UsageStore, dead_letters: DeadLetterQueue) -> Self {
        Self {
            store,
            dead_letters,
            folds: Arc::default(),
        }
    }

    /// An empty fold: one a previous batch left, or a new one sized for `records`.
    fn take_fold(&self, records: usize) -> UsageFold {
        self.folds
            .lock()
            .ok()
            .and_then(|mut folds| folds.pop())
            .unwrap_or_else(|| UsageFold::with_capacity(records))
    }

    fn give_back(&self, mut fold: UsageFold) {
        fold.clear();
        if let Ok(mut folds) = self.folds.lock() {
            folds.push(fold);
        }
    }

    pub async fn handle(&self, event: &SourceEvent) -> UsageResult {
        let started = Instant::now();
        let throttled_before = self.store.retry_stats().snapshot().1;
        let records = event.records();
        let mut fold = self.take_fold(records.len());
        // The record each folded row came from, in fold order.
        let mut origin = Vec::with_capacity(records.len());
        let mut in_batch_duplicates = 0;
        let mut letters = Vec::new();
        let mut rejected_origin = Vec::new();
        fold.fold_records(&records, |i, folded| match folded {
            Folded::Added => origin.push(i),
            Folded::Repeated => in_batch_duplicates += 1,
            Folded::Rejected { payload, reason } => {
                letters.push(DeadLetter::new(FUNCTION, &records[i], payload, reason));
                rejected_origin.push(i);
            }
        });

        let outcome = self.store.apply(&fold).await;
        // An item the table can never take (over DynamoDB's item size, say) dead-letters its
        // rows; any other failure has its rows delivered again.
        let failed_items: std::collections::HashMap<u32, &AwsError> =
            outcome.failed.iter().map(|(i, e)| (*i as u32, e)).collect();
        let mut retry = Vec::new();
        let mut error: Option<BatchError> = None;
        for ((item, _, _), &i) in fold.rows.iter().zip(&origin) {
            let Some(e) = failed_items.get(item) else {
                continue;
            };
            if e.kind == FailureKind::Rejected {
                let payload = records[i].payload(&mut Vec::new()).ok().map(<[u8]>::to_vec);
                letters.push(DeadLetter::new(
                    FUNCTION,
                    &records[i],
                    payload.as_deref(),
                    e.to_string(),
                ));
                rejected_origin.push(i);
            } else {
                retry.push(i);
                BatchError::keep_worst(&mut error, e.batch_error());
            }
        }
        if !letters.is_empty()
            && let Err(e) = self.dead_letters.send(&letters).await
        {
            retry.extend(&rejected_origin);
            BatchError::keep_worst(&mut error, e.error.batch_error());
        }
        retry.sort_unstable();
        retry.dedup();
        let item_failures = event
            .is_kinesis()
            .then(|| BatchItemFailures::of(&records, &retry));
        let items = fold.items.len().saturating_sub(failed_items.len());
        self.give_back(fold);
        UsageResult {
            report: UsageReport {
                records: records.len(),
                applied: outcome.applied,
                duplicates: outcome.duplicates + in_batch_duplicates,
                items,
                rejected: letters.len(),
                failed: retry.len(),
                throttled: self.store.retry_stats().snapshot().1 - throttled_before,
            },
            latency_ms: started.elapsed().as_secs_f64() * 1e3,
            item_failures,
            error,
        }
    }
}

impl wtc_core::event::BatchReport for UsageReport {
    const FUNCTION: &'static str = FUNCTION;

    fn records(&self) -> usize {
        self.records
    }

    fn failed(&self) -> usize {
        self.failed
    }

    fn metrics(&self) -> Vec<(&'static str, f64)> {
        vec![
            ("RecordsIn", self.records as f64),
            ("RowsApplied", self.applied as f64),
            ("Duplicates", self.duplicates as f64),
            ("UsageItemsWritten", self.items as f64),
            ("Rejected", self.rejected as f64),
            ("Failed", self.failed as f64),
            ("Throttled", self.throttled as f64),
        ]
    }
}
