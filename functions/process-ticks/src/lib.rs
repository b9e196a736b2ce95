//! process-ticks: decode a batch of ticks and bars, store each distinct tick once, keep candles and
//! indicators up to date, report what was rejected.
//!
//! The handler takes a Kafka event (MSK or self-managed) or a Kinesis event. Valid ticks go to the
//! tick store first (raw items and mid-price sums, exactly once, see `wtc_aws::ticks`); the M1
//! candles of the minutes they touched, and the fetched 1-minute bars, then go to the candle store,
//! which rolls them up to M30 and H1 and advances the indicators of every series touched (see
//! `wtc_aws::candles`); rejected records then go to the dead-letter queue with their reason and
//! position, so a reject never holds back the valid records of its batch. What could not be done after retries (a write, a dead
//! letter) fails the batch: a Kafka batch is retried whole, which the store makes safe; a Kinesis
//! batch reports those records as batch item failures, so only they (and what follows) come again.

use serde::{Deserialize, Serialize};
use std::time::Instant;
use wtc_aws::candles::BAR_WEIGHT;
use wtc_aws::{CandleOutcome, CandleStore, DeadLetterQueue, TickStore, required_env};
use wtc_core::candles::Interval;
use wtc_core::event::{BatchItemFailures, BatchOutcome};
use wtc_core::indicators::Price;
use wtc_core::latest::LatestPrice;
use wtc_core::quotes::{Bar, MarketRecord};
use wtc_core::time::Timestamp;
use wtc_core::{DeadLetter, SourceEvent, Tick};

/// The function's name, as it appears in dead letters and metrics.
pub const FUNCTION: &str = "process-ticks";

/// What one batch came to.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct BatchReport {
    pub records: usize,
    pub stored: usize,
    pub duplicates: usize,
    /// Fetched 1-minute bars written as M1 candles.
    pub bars: usize,
    /// Candles (M1, M30, H1) whose indicators were computed as they closed.
    pub candles_closed: usize,
    /// Closed candles whose indicators were computed again after late data.
    pub indicators_recomputed: usize,
    pub rejected: usize,
    /// Records to be delivered again: writes or dead letters that failed after retries.
    pub failed: usize,
}

/// The outcome of one batch.
pub type BatchResult = BatchOutcome<BatchReport>;

pub use wtc_core::event::BatchFailed;

/// The function's long-lived parts, built once per cold start.
#[derive(Debug, Clone)]
pub struct ProcessTicks {
    pub store: TickStore,
    pub candles: CandleStore,
    pub dead_letters: DeadLetterQueue,
}

impl ProcessTicks {
    /// Builds the clients from the environment: `TICKS_TABLE`, `RATES_TABLE`, `CANDLES_TABLE`,
    /// `INDICATOR_STATE_TABLE`, `DEAD_LETTER_QUEUE_URL`, optionally `INDICATOR_PRICE` (`close`,
    /// the default, or `open`: the price new series' indicators read), plus the standard AWS
    /// settings (`AWS_ENDPOINT_URL` included).
    pub async fn from_env() -> Result<Self, wtc_aws::ConfigError> {
        let ticks = required_env("TICKS_TABLE", "the DynamoDB table for raw ticks")?;
        let rates = required_env(
            "RATES_TABLE",
            "the DynamoDB table for minute and hour mid-price sums",
        )?;
        let candles = required_env("CANDLES_TABLE", "the DynamoDB table for candles")?;
        let state = required_env(
            "INDICATOR_STATE_TABLE",
            "the DynamoDB table for indicator states per series",
        )?;
        let dlq = required_env(
            "DEAD_LETTER_QUEUE_URL",
            "the SQS queue URL for rejected records",
        )?;
        let price = price_from_env()?;
        let sdk = wtc_aws::load_sdk_config().await;
        let dynamodb = aws_sdk_dynamodb::Client::new(&sdk);
        let mut candles = CandleStore::new(dynamodb.clone(), candles, state);
        candles.default_price = price;
        Ok(Self {
            store: TickStore::new(dynamodb, ticks, rates),
            candles,
            dead_letters: DeadLetterQueue::new(aws_sdk_sqs::Client::new(&sdk), dlq),
        })
    }

    /// Decodes the batch, stores the valid ticks, sends the rejects to the dead-letter queue.
    pub async fn handle(&self, event: &SourceEvent) -> BatchResult {
        let started = Instant::now();
        let records = event.records();
        let mut ticks: Vec<Tick> = Vec::with_capacity(records.len());
        let mut bars: Vec<Bar> = Vec::new();
        let mut bar_origin: Vec<usize> = Vec::new();
        let mut sources: Vec<String> = Vec::with_capacity(records.len());
        let mut origin: Vec<usize> = Vec::with_capacity(records.len());
        let mut letters = Vec::new();
        let mut rejected_origin = Vec::new();
        let mut buf = Vec::with_capacity(256);
        for (i, record) in records.iter().enumerate() {
            let decoded = match record.payload(&mut buf) {
                Ok(payload) => {
                    MarketRecord::decode(payload).map_err(|e| (Some(payload), e.to_string()))
                }
                Err(e) => Err((None, e.to_string())),
            };
            match decoded {
                Ok(MarketRecord::Tick(tick)) => {
                    ticks.push(tick);
                    sources.push(record.position.to_string());
                    origin.push(i);
                }
                Ok(MarketRecord::Bar(bar)) => {
                    bars.push(bar);
                    bar_origin.push(i);
                }
                Err((payload, reason)) => {
                    letters.push(DeadLetter::new(FUNCTION, record, payload, reason));
                    rejected_origin.push(i);
                }
            }
        }

        let mut outcome = self.store.write(&ticks, &sources).await;
        let mut retry: Vec<usize> = outcome.failed.iter().map(|(i, _)| origin[*i]).collect();
        let mut error = outcome.failed.first().map(|(_, e)| e.clone());

        let mut minutes = std::mem::take(&mut outcome.minutes);
        minutes.extend(
            bars.iter()
                .map(|b| (b.symbol.clone(), b.candle(), BAR_WEIGHT)),
        );
        let candles = self.candles.update(minutes).await;
        let latest_failed = self.record_latest(&ticks, &bars, &candles).await;
        for (symbol, e) in candles.failed.iter().chain(&latest_failed) {
            let of_symbol = ticks
                .iter()
                .zip(&origin)
                .filter(|(t, _)| &t.pair == symbol)
                .map(|(_, i)| *i)
                .chain(
                    bars.iter()
                        .zip(&bar_origin)
                        .filter(|(b, _)| &b.symbol == symbol)
                        .map(|(_, i)| *i),
                );
            retry.extend(of_symbol);
            error.get_or_insert(e.clone());
        }
        let closed = candles.series.iter().map(|s| s.advanced.closed).sum();
        let recomputed = candles.series.iter().map(|s| s.advanced.recomputed).sum();
        if !letters.is_empty()
            && let Err(e) = self.dead_letters.send(&letters).await
        {
            retry.extend(&rejected_origin);
            error.get_or_insert(e.to_string());
        }
        retry.sort_unstable();
        retry.dedup();

        let item_failures = event
            .is_kinesis()
            .then(|| BatchItemFailures::of(&records, &retry));
        BatchResult {
            report: BatchReport {
                records: records.len(),
                stored: outcome.stored,
                duplicates: outcome.duplicates,
                bars: bars.len(),
                candles_closed: closed,
                indicators_recomputed: recomputed,
                rejected: letters.len(),
                failed: retry.len(),
            },
            latency_ms: started.elapsed().as_secs_f64() * 1e3,
            item_failures,
            error,
        }
    }
}

impl ProcessTicks {
    /// Stores each symbol's newest tick or bar, with the close of its last closed M1 candle when
    /// this batch closed one. Returns the symbols whose price could not be stored.
    async fn record_latest(
        &self,
        ticks: &[Tick],
        bars: &[Bar],
        candles: &CandleOutcome,
    ) -> Vec<(String, String)> {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_micros() as i64);
        let mut latest = LatestPrice::newest(ticks, bars, Timestamp::from_micros(now));
        for price in &mut latest {
            price.previous_close = candles
                .series
                .iter()
                .find(|s| s.symbol == price.symbol && s.interval == Interval::M1)
                .and_then(|s| s.advanced.last)
                .map(|(_, close, _)| close);
        }
        let writes = latest.iter().map(|price| async move {
            (
                price.symbol.clone(),
                self.candles.record_latest(price).await,
            )
        });
        futures::future::join_all(writes)
            .await
            .into_iter()
            .filter_map(|(symbol, result)| result.err().map(|e| (symbol, e)))
            .collect()
    }
}

impl wtc_core::event::BatchReport for BatchReport {
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
            ("TicksStored", self.stored as f64),
            ("Duplicates", self.duplicates as f64),
            ("Bars", self.bars as f64),
            ("CandlesClosed", self.candles_closed as f64),
            ("IndicatorsRecomputed", self.indicators_recomputed as f64),
            ("Rejected", self.rejected as f64),
            ("Failed", self.failed as f64),
        ]
    }
}

/// `INDICATOR_PRICE`: `close` (the default) or `open`.
pub fn price_from_env() -> Result<Price, wtc_aws::ConfigError> {
    match std::env::var("INDICATOR_PRICE").ok().as_deref() {
        None | Some("") | Some("close") => Ok(Price::Close),
        Some("open") => Ok(Price::Open),
        Some(other) => Err(wtc_aws::ConfigError::Invalid {
            name: "INDICATOR_PRICE",
            reason: format!("must be `close` or `open`, found {other:?}"),
        }),
    }
}

pub use wtc_aws::config::init_tracing;
