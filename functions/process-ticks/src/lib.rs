//! process-ticks: decode a batch of ticks, store each distinct tick once, report what was rejected.
//!
//! The handler takes a Kafka event (MSK or self-managed) or a Kinesis event. Valid ticks go to the
//! tick store (raw item plus hourly mid sum, exactly once, see `wtc_aws::ticks`). Rejected records go
//! to the dead-letter queue with their reason and position and never hold back the valid ones.
//! Ticks that could not be written after retries fail the batch: a Kafka batch is retried whole;
//! a Kinesis batch reports them as batch item failures so only they (and what follows) come again.

use serde::{Deserialize, Serialize};
use std::time::Instant;
use wtc_aws::dead_letters::DeadLetterError;
use wtc_aws::{DeadLetterQueue, TickStore, required_env};
use wtc_core::event::{BatchItemFailure, BatchItemFailures};
use wtc_core::{DeadLetter, SourceEvent, Tick};

/// The function's name, as it appears in dead letters and metrics.
pub const FUNCTION: &str = "process-ticks";

/// What one batch came to.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BatchReport {
    pub records: usize,
    pub stored: usize,
    pub duplicates: usize,
    pub rejected: usize,
    pub failed: usize,
}

/// The handler's answer: the report, and for Kinesis the records to be delivered again.
#[derive(Debug, Clone, PartialEq)]
pub struct BatchResult {
    pub report: BatchReport,
    pub item_failures: Option<BatchItemFailures>,
    pub latency_ms: f64,
}

#[derive(Debug, thiserror::Error)]
pub enum ProcessTicksError {
    #[error(
        "{failed} of {records} ticks could not be stored after retries ({first}); the batch will be retried"
    )]
    WritesFailed {
        failed: usize,
        records: usize,
        first: String,
    },
    #[error(transparent)]
    DeadLetters(#[from] DeadLetterError),
}

/// The function's long-lived parts, built once per cold start.
#[derive(Debug, Clone)]
pub struct ProcessTicks {
    pub store: TickStore,
    pub dead_letters: DeadLetterQueue,
}

impl ProcessTicks {
    /// Builds the clients from the environment: `TICKS_TABLE`, `RATES_TABLE`,
    /// `DEAD_LETTER_QUEUE_URL`, plus the standard AWS settings (`AWS_ENDPOINT_URL` included).
    pub async fn from_env() -> Result<Self, wtc_aws::ConfigError> {
        let ticks = required_env("TICKS_TABLE", "the DynamoDB table for raw ticks")?;
        let rates = required_env(
            "RATES_TABLE",
            "the DynamoDB table for minute and hour mid-price sums",
        )?;
        let dlq = required_env(
            "DEAD_LETTER_QUEUE_URL",
            "the SQS queue URL for rejected records",
        )?;
        let sdk = wtc_aws::load_sdk_config().await;
        Ok(Self {
            store: TickStore::new(aws_sdk_dynamodb::Client::new(&sdk), ticks, rates),
            dead_letters: DeadLetterQueue::new(aws_sdk_sqs::Client::new(&sdk), dlq),
        })
    }

    /// Decodes the batch, stores it, sends rejects to the dead-letter queue.
    pub async fn handle(&self, event: &SourceEvent) -> Result<BatchResult, ProcessTicksError> {
        let started = Instant::now();
        let records = event.records();
        let mut ticks: Vec<Tick> = Vec::with_capacity(records.len());
        let mut sources: Vec<String> = Vec::with_capacity(records.len());
        let mut origin: Vec<usize> = Vec::with_capacity(records.len());
        let mut letters = Vec::new();
        let mut buf = Vec::with_capacity(256);
        for (i, record) in records.iter().enumerate() {
            let decoded = match record.payload(&mut buf) {
                Ok(payload) => Tick::decode(payload).map_err(|e| (Some(payload), e.to_string())),
                Err(e) => Err((None, e.to_string())),
            };
            match decoded {
                Ok(tick) => {
                    ticks.push(tick);
                    sources.push(record.position.to_string());
                    origin.push(i);
                }
                Err((payload, reason)) => {
                    letters.push(DeadLetter::new(FUNCTION, record, payload, reason))
                }
            }
        }
        if !letters.is_empty() {
            self.dead_letters.send(&letters).await?;
        }
        let outcome = self.store.write(&ticks, &sources).await;
        let report = BatchReport {
            records: records.len(),
            stored: outcome.stored,
            duplicates: outcome.duplicates,
            rejected: letters.len(),
            failed: outcome.failed.len(),
        };
        let item_failures = if event.is_kinesis() {
            let mut failed: Vec<usize> = outcome.failed.iter().map(|(i, _)| origin[*i]).collect();
            failed.sort_unstable();
            Some(BatchItemFailures {
                batch_item_failures: failed
                    .into_iter()
                    .filter_map(|i| records[i].sequence_number())
                    .map(|s| BatchItemFailure {
                        item_identifier: s.to_owned(),
                    })
                    .collect(),
            })
        } else if let Some((_, first)) = outcome.failed.first() {
            return Err(ProcessTicksError::WritesFailed {
                failed: outcome.failed.len(),
                records: records.len(),
                first: first.clone(),
            });
        } else {
            None
        };
        Ok(BatchResult {
            report,
            item_failures,
            latency_ms: started.elapsed().as_secs_f64() * 1e3,
        })
    }
}

impl BatchResult {
    /// The Lambda response: `{"batchItemFailures": [...]}` for Kinesis, the report for Kafka.
    pub fn response(&self) -> serde_json::Value {
        match &self.item_failures {
            Some(f) => serde_json::to_value(f),
            None => serde_json::to_value(&self.report),
        }
        .unwrap_or_default()
    }

    /// The batch's metrics as one CloudWatch Embedded Metric Format line.
    pub fn metrics_line(&self, now_ms: i64) -> String {
        let r = &self.report;
        wtc_core::metrics::emf_line(
            FUNCTION,
            now_ms,
            &[
                ("RecordsIn", r.records as f64),
                ("TicksStored", r.stored as f64),
                ("Duplicates", r.duplicates as f64),
                ("Rejected", r.rejected as f64),
                ("WriteFailures", r.failed as f64),
                ("BatchLatencyMs", self.latency_ms),
            ],
        )
    }
}

/// Logs as JSON in Lambda (`AWS_LAMBDA_LOG_FORMAT=JSON`), as text elsewhere.
pub fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .without_time();
    if std::env::var("AWS_LAMBDA_LOG_FORMAT").is_ok_and(|f| f.eq_ignore_ascii_case("json")) {
        builder.json().init();
    } else {
        builder.init();
    }
}
