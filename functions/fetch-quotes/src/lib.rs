//! fetch-quotes: every minute (an EventBridge schedule), fetch the latest quotes of the symbols a
//! team follows and publish them onto the tick topic or stream: each completed 1-minute bar
//! (keyed by symbol and minute, so a bar fetched twice is the same record) and the latest price as
//! a tick. process-ticks turns both into candles and indicators.
//!
//! Providers: the Yahoo Finance chart API (`yahoo`), and a seeded simulated market (`simulated`)
//! for local runs. Markets that are closed are skipped (NSE trades 09:15-15:30 IST on weekdays)
//! unless told otherwise. A symbol that fails is reported with its reason and never fails the
//! others; the invocation fails only when nothing could be fetched or publishing failed.

pub mod yahoo;

use futures::StreamExt;
use serde::{Deserialize, Serialize};
use std::time::Duration;
use wtc_aws::publish::publisher_from_env;
use wtc_aws::{ConfigError, OutRecord, PublishError};
use wtc_core::Tick;
use wtc_core::quotes::{Bar, Market, SimulatedMarket, minute_key};
use wtc_core::time::Timestamp;
use yahoo::YahooProvider;

pub const FUNCTION: &str = "fetch-quotes";

/// The symbols followed when `SYMBOLS` is not set: four NSE stocks and a forex pair.
pub const DEFAULT_SYMBOLS: &str = "RELIANCE.NS,TCS.NS,INFY.NS,HDFCBANK.NS,EURUSD=X";

/// Symbols fetched at once (Yahoo rate-limits bursts).
const CONCURRENCY: usize = 4;

/// What one fetch of one symbol gave.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Quotes {
    pub bars: Vec<Bar>,
    pub latest: Option<Tick>,
    /// Bars in the response that failed validation, with the reason.
    pub rejected: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum FetchError {
    #[error("rate limited (HTTP 429) on all {attempts} attempts")]
    RateLimited { attempts: u32 },
    #[error("HTTP {status}: {message}")]
    Http { status: u16, message: String },
    #[error("request failed: {0}")]
    Transport(String),
    #[error("malformed response: {0}")]
    Malformed(String),
    #[error("configuration: {0}")]
    Config(String),
}

/// Where quotes come from.
#[derive(Debug, Clone)]
pub enum Provider {
    Yahoo(YahooProvider),
    Simulated(SimulatedMarket),
}

impl Provider {
    /// The completed bars starting at or after `since`, and the latest price, at `now`.
    pub async fn fetch(
        &self,
        symbol: &str,
        now: Timestamp,
        since: Timestamp,
    ) -> Result<Quotes, FetchError> {
        match self {
            Provider::Yahoo(y) => y.fetch(symbol, now, since).await,
            Provider::Simulated(market) => {
                let market_of = Market::of(symbol);
                let first = since.micros().div_euclid(60_000_000);
                let last = now.micros().div_euclid(60_000_000); // the open minute, not complete
                let bars = (first..last)
                    .map(|m| Timestamp::from_micros(m * 60_000_000))
                    .filter(|start| market_of.is_open(*start))
                    .map(|start| market.bar(symbol, start))
                    .collect();
                Ok(Quotes {
                    bars,
                    latest: market_of.is_open(now).then(|| market.tick(symbol, now)),
                    rejected: Vec::new(),
                })
            }
        }
    }
}

pub use wtc_aws::publish::Publisher;

/// One symbol's part of a run.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SymbolReport {
    pub symbol: String,
    pub bars: usize,
    pub ticks: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub skipped: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub rejected: Vec<String>,
}

/// What a run did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FetchReport {
    pub at: String,
    pub published: u64,
    pub symbols: Vec<SymbolReport>,
}

impl FetchReport {
    pub fn failed(&self) -> usize {
        self.symbols.iter().filter(|s| s.error.is_some()).count()
    }

    /// The run's metrics as one CloudWatch Embedded Metric Format line.
    pub fn metrics_line(&self, now_ms: i64) -> String {
        let count = |f: fn(&SymbolReport) -> bool| self.symbols.iter().filter(|s| f(s)).count();
        wtc_core::metrics::emf_line(
            FUNCTION,
            now_ms,
            &[
                ("RecordsPublished", self.published as f64),
                (
                    "SymbolsFetched",
                    count(|s| s.error.is_none() && s.skipped.is_none()) as f64,
                ),
                ("SymbolsSkipped", count(|s| s.skipped.is_some()) as f64),
                ("SymbolsFailed", self.failed() as f64),
            ],
        )
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("every symbol failed; the first: {0}")]
    AllFailed(String),
    #[error(transparent)]
    Publish(#[from] PublishError),
}

/// The function's long-lived parts.
#[derive(Clone)]
pub struct FetchQuotes {
    pub provider: Provider,
    pub publisher: Publisher,
    pub symbols: Vec<String>,
    /// How far back completed bars are (re)published: a missed or late run loses nothing.
    pub lookback: Duration,
    /// Fetch even when a symbol's market is closed.
    pub ignore_market_hours: bool,
}

impl FetchQuotes {
    /// Fetches every symbol, publishes what came back, reports per symbol.
    pub async fn run(&self, now: Timestamp) -> Result<FetchReport, RunError> {
        let since = Timestamp::from_micros(now.micros() - self.lookback.as_micros() as i64);
        let jobs: Vec<_> = self
            .symbols
            .iter()
            .map(|symbol| async move {
                let market = Market::of(symbol);
                // A run just after the close still publishes the session's last bar.
                let just_before = Timestamp::from_micros(now.micros() - 60_000_000);
                if !self.ignore_market_hours && !market.is_open(now) && !market.is_open(just_before)
                {
                    return (symbol.clone(), Ok(None));
                }
                (
                    symbol.clone(),
                    self.provider.fetch(symbol, now, since).await.map(Some),
                )
            })
            .collect();
        let results: Vec<_> = futures::stream::iter(jobs)
            .buffered(CONCURRENCY)
            .collect()
            .await;

        let mut report = FetchReport {
            at: now.to_seconds_string(),
            ..Default::default()
        };
        let mut records = Vec::new();
        for (symbol, result) in results {
            let mut line = SymbolReport {
                symbol: symbol.clone(),
                ..Default::default()
            };
            match result {
                Ok(None) => line.skipped = Some("market closed".into()),
                Ok(Some(quotes)) => {
                    line.bars = quotes.bars.len();
                    line.ticks = usize::from(quotes.latest.is_some());
                    line.rejected = quotes.rejected;
                    records.extend(quotes.bars.iter().map(|b| OutRecord {
                        key: b.key(),
                        partition_key: b.symbol.clone(),
                        value: b.to_json(),
                    }));
                    records.extend(quotes.latest.iter().map(|t| OutRecord {
                        key: minute_key(&t.pair, t.timestamp),
                        partition_key: t.pair.clone(),
                        value: t.to_json(),
                    }));
                }
                Err(e) => {
                    tracing::error!(symbol, error = %e, "fetching quotes failed");
                    line.error = Some(e.to_string());
                }
            }
            report.symbols.push(line);
        }
        let attempted = report
            .symbols
            .iter()
            .filter(|s| s.skipped.is_none())
            .count();
        if attempted > 0 && report.failed() == attempted {
            let first = report.symbols.iter().find_map(|s| s.error.clone());
            return Err(RunError::AllFailed(format!(
                "{}: {}",
                report.symbols[0].symbol,
                first.unwrap_or_default()
            )));
        }
        if !records.is_empty() {
            report.published = self.publisher.publish(records).await?;
        }
        Ok(report)
    }

    /// Builds the function from the environment (see the README's table of settings).
    pub async fn from_env() -> Result<Self, ConfigError> {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
        let symbols: Vec<String> = var("SYMBOLS")
            .unwrap_or_else(|| DEFAULT_SYMBOLS.to_owned())
            .split(',')
            .map(|s| s.trim().to_owned())
            .filter(|s| !s.is_empty())
            .collect();
        let number = |name: &'static str, default: u64| -> Result<u64, ConfigError> {
            var(name).map_or(Ok(default), |v| {
                v.parse().map_err(|_| ConfigError::Invalid {
                    name,
                    reason: format!("must be a whole number, found {v:?}"),
                })
            })
        };
        let provider = match var("QUOTE_PROVIDER").as_deref().unwrap_or("yahoo") {
            "yahoo" => Provider::Yahoo(
                YahooProvider::new(
                    &var("YAHOO_BASE_URL").unwrap_or_else(|| yahoo::DEFAULT_BASE_URL.to_owned()),
                    Duration::from_millis(number("FETCH_TIMEOUT_MS", 5_000)?),
                )
                .map_err(|e| ConfigError::Invalid {
                    name: "YAHOO_BASE_URL",
                    reason: e.to_string(),
                })?,
            ),
            "simulated" => {
                Provider::Simulated(SimulatedMarket::new(number("SIMULATION_SEED", 42)?))
            }
            other => {
                return Err(ConfigError::Invalid {
                    name: "QUOTE_PROVIDER",
                    reason: format!("must be `yahoo` or `simulated`, found {other:?}"),
                });
            }
        };
        let publisher = publisher_from_env("TICK_TOPIC", "tick-data", "TICK_STREAM").await?;
        Ok(Self {
            provider,
            publisher,
            symbols,
            lookback: Duration::from_secs(60 * number("LOOKBACK_MINUTES", 5)?),
            ignore_market_hours: var("MARKET_HOURS").as_deref() == Some("ignore"),
        })
    }
}

/// The instant a run is for: the scheduled event's `time` (`2024-01-01T03:46:00Z`), or now.
pub fn run_time(event: &serde_json::Value) -> Result<Timestamp, String> {
    match event.get("time").and_then(|t| t.as_str()) {
        Some(text) => {
            let plain = text.trim_end_matches('Z').replacen('T', " ", 1);
            Timestamp::parse(&plain).map_err(|e| format!("event field `time`: {e}"))
        }
        None => {
            let micros = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_micros() as i64);
            Ok(Timestamp::from_micros(micros))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_run_time_comes_from_the_scheduled_event() {
        let event =
            serde_json::json!({"detail-type": "Scheduled Event", "time": "2024-01-01T03:46:00Z"});
        assert_eq!(
            run_time(&event).map(|t| t.to_seconds_string()),
            Ok("2024-01-01 03:46:00".to_owned())
        );
        assert!(run_time(&serde_json::json!({"time": "yesterday"})).is_err());
        assert!(run_time(&serde_json::json!({})).is_ok());
    }

    #[tokio::test]
    async fn the_simulated_provider_gives_completed_bars_in_market_hours() {
        let p = Provider::Simulated(SimulatedMarket::new(1));
        let at = |s: &str| Timestamp::parse(s).unwrap_or_else(|e| panic!("{e}"));
        // 09:17:30 IST: the 09:15 and 09:16 bars are complete; nothing before the open.
        let q = p
            .fetch(
                "TCS.NS",
                at("2024-01-01 03:47:30"),
                at("2024-01-01 03:40:00"),
            )
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let starts: Vec<String> = q.bars.iter().map(|b| b.start.to_seconds_string()).collect();
        assert_eq!(starts, ["2024-01-01 03:45:00", "2024-01-01 03:46:00"]);
        assert_eq!(
            q.latest.map(|t| t.timestamp),
            Some(at("2024-01-01 03:47:30"))
        );
    }
}
