//! The Yahoo Finance chart API, the one yfinance reads: `GET /v8/finance/chart/{symbol}
//! ?interval=1m&range=1d` answers the day's 1-minute bars and the latest price.
//!
//! Requests have a timeout; rate limiting (429), server faults (5xx) and transport errors are
//! retried with exponential backoff (honouring `Retry-After`, capped); anything else is an error
//! for that symbol alone, with Yahoo's own description when it gives one.

use crate::{FetchError, Quotes};
use serde::Deserialize;
use std::time::Duration;
use wtc_core::Tick;
use wtc_core::quotes::Bar;
use wtc_core::time::Timestamp;

/// Where the API lives (overridable, e.g. for a replay server in tests).
pub const DEFAULT_BASE_URL: &str = "https://query1.finance.yahoo.com";

#[derive(Debug, Clone)]
pub struct YahooProvider {
    client: reqwest::Client,
    base_url: reqwest::Url,
    /// Attempts per symbol, the first included.
    pub attempts: u32,
    /// The pause before the first retry; it doubles each time.
    pub base_delay: Duration,
    /// The longest pause, `Retry-After` included.
    pub max_delay: Duration,
}

impl YahooProvider {
    pub fn new(base_url: &str, timeout: Duration) -> Result<Self, FetchError> {
        let base_url = reqwest::Url::parse(base_url)
            .map_err(|e| FetchError::Config(format!("YAHOO_BASE_URL {base_url:?}: {e}")))?;
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout)
            // Yahoo answers clients without a browser-like agent with 429s.
            .user_agent("Mozilla/5.0 (X11; Linux x86_64) wtc-streaming fetch-quotes")
            .build()
            .map_err(|e| FetchError::Config(format!("building the HTTP client: {e}")))?;
        Ok(Self {
            client,
            base_url,
            attempts: 3,
            base_delay: Duration::from_millis(500),
            max_delay: Duration::from_secs(10),
        })
    }

    fn url(&self, symbol: &str) -> Result<reqwest::Url, FetchError> {
        let mut url = self.base_url.clone();
        url.path_segments_mut()
            .map_err(|_| FetchError::Config(format!("{} cannot be a base URL", self.base_url)))?
            .pop_if_empty()
            .extend(["v8", "finance", "chart", symbol]);
        url.query_pairs_mut()
            .append_pair("interval", "1m")
            .append_pair("range", "1d");
        Ok(url)
    }

    /// The symbol's completed bars that start at or after `since`, and its latest price.
    pub async fn fetch(
        &self,
        symbol: &str,
        now: Timestamp,
        since: Timestamp,
    ) -> Result<Quotes, FetchError> {
        let body = self.get(symbol).await?;
        parse_chart(symbol, &body, now, since)
    }

    /// The response body, after retries.
    async fn get(&self, symbol: &str) -> Result<Vec<u8>, FetchError> {
        let url = self.url(symbol)?;
        let mut attempt = 1;
        loop {
            let (retryable, error, retry_after) = match self.client.get(url.clone()).send().await {
                Ok(response) => {
                    let status = response.status();
                    let retry_after = response
                        .headers()
                        .get(reqwest::header::RETRY_AFTER)
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| v.trim().parse::<u64>().ok())
                        .map(Duration::from_secs);
                    let body = response.bytes().await;
                    match body {
                        Ok(body) if status.is_success() => return Ok(body.to_vec()),
                        Ok(_) if status.as_u16() == 429 => (
                            true,
                            FetchError::RateLimited { attempts: attempt },
                            retry_after,
                        ),
                        Ok(body) => (
                            status.is_server_error(),
                            FetchError::Http {
                                status: status.as_u16(),
                                message: error_description(&body),
                            },
                            retry_after,
                        ),
                        Err(e) => (true, FetchError::Transport(e.to_string()), None),
                    }
                }
                Err(e) => (true, FetchError::Transport(transport_error(&e)), None),
            };
            if !retryable || attempt >= self.attempts {
                return Err(error);
            }
            let backoff = self.base_delay.saturating_mul(1 << (attempt - 1).min(16));
            tokio::time::sleep(retry_after.unwrap_or(backoff).min(self.max_delay)).await;
            attempt += 1;
        }
    }
}

fn transport_error(e: &reqwest::Error) -> String {
    if e.is_timeout() {
        format!("timed out: {e}")
    } else {
        let mut text = e.to_string();
        let mut source = std::error::Error::source(e);
        while let Some(s) = source {
            text.push_str(": ");
            text.push_str(&s.to_string());
            source = s.source();
        }
        text
    }
}

/// Yahoo's `{"chart": {"error": {"code": ..., "description": ...}}}`, or the body's start.
fn error_description(body: &[u8]) -> String {
    match serde_json::from_slice::<ChartResponse>(body) {
        Ok(ChartResponse {
            chart: ChartBody { error: Some(e), .. },
        }) => format!("{}: {}", e.code, e.description),
        _ => {
            let text = String::from_utf8_lossy(body);
            let text = text.trim();
            text.chars().take(200).collect()
        }
    }
}

#[derive(Debug, Deserialize)]
struct ChartResponse {
    chart: ChartBody,
}

#[derive(Debug, Deserialize)]
struct ChartBody {
    #[serde(default)]
    result: Option<Vec<ChartResult>>,
    #[serde(default)]
    error: Option<ChartError>,
}

#[derive(Debug, Deserialize)]
struct ChartError {
    code: String,
    #[serde(default)]
    description: String,
}

#[derive(Debug, Deserialize)]
struct ChartResult {
    meta: Meta,
    #[serde(default)]
    timestamp: Vec<i64>,
    #[serde(default)]
    indicators: Indicators,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Meta {
    #[serde(default)]
    regular_market_price: Option<f64>,
    #[serde(default)]
    regular_market_time: Option<i64>,
}

#[derive(Debug, Default, Deserialize)]
struct Indicators {
    #[serde(default)]
    quote: Vec<QuoteSeries>,
}

#[derive(Debug, Default, Deserialize)]
struct QuoteSeries {
    #[serde(default)]
    open: Vec<Option<f64>>,
    #[serde(default)]
    high: Vec<Option<f64>>,
    #[serde(default)]
    low: Vec<Option<f64>>,
    #[serde(default)]
    close: Vec<Option<f64>>,
    #[serde(default)]
    volume: Vec<Option<f64>>,
}

/// Yahoo keeps prices as 32-bit floats (`2950.35009765625`); a value that is exactly a 32-bit
/// float is read as the shortest decimal that float stands for (`2950.35`), anything else as is.
pub fn clean_price(x: f64) -> f64 {
    let single = x as f32;
    if f64::from(single) == x {
        single.to_string().parse().unwrap_or(x)
    } else {
        x
    }
}

/// The completed bars of a chart response (a minute is complete once `now` is past its end) that
/// start at or after `since`, and its latest price as a tick. Minutes without trades (nulls) are
/// left out; an empty result is no quotes, not an error.
pub fn parse_chart(
    symbol: &str,
    body: &[u8],
    now: Timestamp,
    since: Timestamp,
) -> Result<Quotes, FetchError> {
    let response: ChartResponse = serde_json::from_slice(body)
        .map_err(|e| FetchError::Malformed(format!("not a chart response: {e}")))?;
    if let Some(e) = response.chart.error {
        return Err(FetchError::Http {
            status: 200,
            message: format!("{}: {}", e.code, e.description),
        });
    }
    let Some(result) = response.chart.result.into_iter().flatten().next() else {
        return Ok(Quotes::default());
    };
    let mut quotes = Quotes::default();
    if let Some(q) = result.indicators.quote.first() {
        for (i, &t) in result.timestamp.iter().enumerate() {
            let start = Timestamp::from_micros(t.saturating_mul(1_000_000));
            let complete = start.micros() + 60_000_000 <= now.micros();
            if t % 60 != 0 || !complete || start < since {
                continue;
            }
            let at = |v: &Vec<Option<f64>>| v.get(i).copied().flatten();
            let (Some(open), Some(high), Some(low), Some(close)) =
                (at(&q.open), at(&q.high), at(&q.low), at(&q.close))
            else {
                continue;
            };
            let volume = at(&q.volume).unwrap_or(0.0);
            let bar = Bar {
                symbol: symbol.to_owned(),
                start,
                open: clean_price(open),
                high: clean_price(high),
                low: clean_price(low),
                close: clean_price(close),
                volume: if volume.is_finite() && volume > 0.0 {
                    volume.round() as u64
                } else {
                    0
                },
            };
            match bar.validate() {
                Ok(()) => quotes.bars.push(bar),
                Err(e) => quotes.rejected.push(format!("bar at {start}: {e}")),
            }
        }
    }
    if let (Some(price), Some(time)) = (
        result.meta.regular_market_price,
        result.meta.regular_market_time,
    ) && price > 0.0
        && price.is_finite()
    {
        let price = clean_price(price);
        quotes.latest = Some(Tick {
            pair: symbol.to_owned(),
            timestamp: Timestamp::from_micros(time.saturating_mul(1_000_000)),
            bid: price,
            ask: price,
            spread: 0.0,
        });
    }
    Ok(quotes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thirty_two_bit_prices_read_as_their_decimals() {
        assert_eq!(clean_price(2950.35009765625), 2950.35);
        assert_eq!(clean_price(f64::from(1.09565_f32)), 1.09565);
        assert_eq!(clean_price(2950.35), 2950.35);
        assert_eq!(clean_price(0.1), 0.1);
    }

    #[test]
    fn urls_encode_the_symbol() {
        let p = YahooProvider::new("http://127.0.0.1:9/base/", Duration::from_secs(1))
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            p.url("A/B C#").map(|u| u.to_string()).ok(),
            Some(
                "http://127.0.0.1:9/base/v8/finance/chart/A%2FB%20C%23?interval=1m&range=1d".into()
            )
        );
        assert!(
            p.url("EURUSD=X")
                .is_ok_and(|u| u.path().ends_with("/chart/EURUSD=X"))
        );
    }
}
