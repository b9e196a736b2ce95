//! process-ticks: decode a batch of ticks and bars, store each distinct tick once, keep candles and
//! indicators up to date, report what was rejected.
//!
//! The handler takes a Kafka event (MSK or self-managed) or a Kinesis event. Valid ticks go to the
//! tick store first (raw items and mid-price sums, exactly once, see `wtc_aws::ticks`); the M1
//! candles of the minutes they touched, and the fetched 1-minute bars, then go to the candle store
//! (while the tick store brings the hours' sums up to date, which the candles do not read),
//! which rolls them up to M30 and H1 and advances the indicators of every series touched (see
//! `wtc_aws::candles`); rejected records then go to the dead-letter queue with their reason and
//! position, so a reject never holds back the valid records of its batch. What could not be done after retries (a write, a dead
//! letter) fails the batch: a Kafka batch is retried whole, which the store makes safe; a Kinesis
//! batch reports those records as batch item failures, so only they (and what follows) come again.

use serde::{Deserialize, Serialize};
use std::time::Instant;
use wtc_aws::candles::BAR_WEIGHT;
use wtc_aws::{
    AwsError, CandleOutcome, CandleStore, DeadLetterQueue, FailureKind, Resource, TickStore,
};
use wtc_core::candles::Interval;
use wtc_core::event::{BatchError, BatchItemFailures, BatchOutcome};
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
    /// Requests the tables asked to slow down (each retried with backoff).
    pub throttled: u64,
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
    /// `INDICATOR_STATE_TABLE`, `DEAD_LETTER_QUEUE_URL`, `DEAD_LETTER_BUCKET`, optionally
    /// `INDICATOR_PRICE` (`close`, the default, or `open`: the price new series' indicators read)
    /// and `RAW_TICK_RETENTION_DAYS` (raw ticks and ledgers expire after it; kept without it),
    /// plus the standard AWS settings (`AWS_ENDPOINT_URL` included).
    pub async fn from_env() -> Result<Self, wtc_aws::ConfigError> {
        let ticks = Resource::from_env("TICKS_TABLE", "the DynamoDB table for raw ticks")?;
        let rates = Resource::from_env(
            "RATES_TABLE",
            "the DynamoDB table for minute and hour mid-price sums",
        )?;
        let candles = Resource::from_env("CANDLES_TABLE", "the DynamoDB table for candles")?;
        let state = Resource::from_env(
            "INDICATOR_STATE_TABLE",
            "the DynamoDB table for indicator states per series",
        )?;
        let price = price_from_env()?;
        let retention = retention_from_env()?;
        let sdk = wtc_aws::load_sdk_config().await;
        let dynamodb = aws_sdk_dynamodb::Client::new(&sdk);
        let mut candles = CandleStore::new(dynamodb.clone(), candles, state);
        candles.default_price = price;
        let mut store = TickStore::new(dynamodb, ticks, rates);
        store.retention = retention;
        Ok(Self {
            store,
            candles,
            dead_letters: DeadLetterQueue::from_env(&sdk)?,
        })
    }

    /// Decodes the batch, stores the valid ticks, sends the rejects to the dead-letter queue.
    pub async fn handle(&self, event: &SourceEvent) -> BatchResult {
        let started = Instant::now();
        let throttled_before = self.throttled();
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

        // The candles go on from the minutes while the tick store brings the hours' sums up to
        // date: the candle store reads neither.
        let bar_minutes: Vec<_> = bars
            .iter()
            .map(|b| (b.symbol.clone(), b.candle(), BAR_WEIGHT))
            .collect();
        let (outcome, candles) = self
            .store
            .write(&ticks, &sources, |mut minutes| {
                minutes.extend(bar_minutes);
                self.candles.update(minutes)
            })
            .await;
        let mut retry: Vec<usize> = Vec::new();
        let mut error: Option<BatchError> = None;
        // A tick the tables can never take is the tick's fault: it is dead-lettered with the
        // reason, like a tick that does not decode. Any other failure is delivered again.
        let mut buf = Vec::new();
        for (i, e) in &outcome.failed {
            let at = origin[*i];
            if e.kind == FailureKind::Rejected {
                let payload = records[at].payload(&mut buf).ok().map(<[u8]>::to_vec);
                letters.push(DeadLetter::new(
                    FUNCTION,
                    &records[at],
                    payload.as_deref(),
                    e.to_string(),
                ));
                rejected_origin.push(at);
            } else {
                retry.push(at);
                BatchError::keep_worst(&mut error, e.batch_error());
            }
        }

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
            BatchError::keep_worst(&mut error, e.batch_error());
        }
        let closed = candles.series.iter().map(|s| s.advanced.closed).sum();
        let recomputed = candles.series.iter().map(|s| s.advanced.recomputed).sum();
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
                throttled: self.throttled() - throttled_before,
            },
            latency_ms: started.elapsed().as_secs_f64() * 1e3,
            item_failures,
            error,
        }
    }
}

impl ProcessTicks {
    /// Throttled requests of both stores so far.
    fn throttled(&self) -> u64 {
        self.store.retry_stats().snapshot().1 + self.candles.retry_stats().snapshot().1
    }

    /// Stores each symbol's newest tick or bar, with the close of its last closed M1 candle when
    /// this batch closed one. Returns the symbols whose price could not be stored.
    async fn record_latest(
        &self,
        ticks: &[Tick],
        bars: &[Bar],
        candles: &CandleOutcome,
    ) -> Vec<(String, AwsError)> {
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
            ("Throttled", self.throttled as f64),
        ]
    }
}

/// `RAW_TICK_RETENTION_DAYS`: how long raw ticks and ledgers are kept (the tables' TTL).
pub fn retention_from_env() -> Result<Option<std::time::Duration>, wtc_aws::ConfigError> {
    match std::env::var("RAW_TICK_RETENTION_DAYS").ok().as_deref() {
        None | Some("") => Ok(None),
        Some(days) => days
            .parse::<u64>()
            .ok()
            .filter(|d| *d > 0)
            .map(|d| Some(std::time::Duration::from_secs(d * 86_400)))
            .ok_or_else(|| wtc_aws::ConfigError::Invalid {
                name: "RAW_TICK_RETENTION_DAYS",
                reason: format!("must be a whole number of days, found {days:?}"),
            }),
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
