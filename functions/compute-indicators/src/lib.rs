//! compute-indicators: recomputes the indicators of one series from its stored candles, for a
//! backfill after late data or a change of price basis; or, on a schedule, finishes every series
//! a writer left pending (see `wtc_aws::candles`: a writer that crashed after committing a state).
//!
//! Direct invocation: `{"symbol": "TCS.NS", "interval": "M1", "from": "2024-01-01 03:45:00",
//! "price": "open", "close_all": true}`. Only `symbol` and `interval` are required. Without
//! `from` the whole series is recomputed from fresh states; with it, from that candle on (each
//! value depends on every candle before it, so the recomputation runs to the newest closed
//! candle). `price` switches the series to another price basis (recomputing all of it);
//! `close_all` closes the newest candle too, e.g. once the market has closed for the day.

use serde::{Deserialize, Serialize};
use wtc_aws::candles::{Rewind, series_key};
use wtc_aws::{CandleStore, Resource};
use wtc_core::candles::Interval;
use wtc_core::indicators::Price;
use wtc_core::time::Timestamp;

pub const FUNCTION: &str = "compute-indicators";

/// A direct request.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Recompute {
    pub symbol: String,
    pub interval: Interval,
    #[serde(default, with = "optional_time")]
    pub from: Option<Timestamp>,
    #[serde(default)]
    pub price: Option<Price>,
    #[serde(default)]
    pub close_all: bool,
}

/// One series' outcome.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct SeriesOutcome {
    pub series: String,
    /// Closed candles computed for the first time.
    pub closed: usize,
    /// Closed candles computed again.
    pub recomputed: usize,
    /// The newest closed candle's start.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_closed: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum RequestError {
    #[error(
        "expected {{\"symbol\": ..., \"interval\": \"M1\"|\"M30\"|\"H1\", \"from\"?: \"YYYY-MM-DD HH:MM:SS\", \
         \"price\"?: \"close\"|\"open\"|\"high\"|\"low\", \"close_all\"?: bool}} or a scheduled event: {0}"
    )]
    Shape(String),
    #[error(transparent)]
    Store(#[from] wtc_aws::AwsError),
}

impl RequestError {
    /// The `errorType` Lambda shows for it.
    pub fn error_type(&self) -> &'static str {
        match self {
            RequestError::Shape(_) => "InvalidRequest",
            RequestError::Store(e) => e.kind.error_type(),
        }
    }
}

#[derive(Debug, Clone)]
pub struct ComputeIndicators {
    pub candles: CandleStore,
}

impl ComputeIndicators {
    /// `CANDLES_TABLE`, `INDICATOR_STATE_TABLE`, and the standard AWS settings.
    pub async fn from_env() -> Result<Self, wtc_aws::ConfigError> {
        let candles = Resource::from_env("CANDLES_TABLE", "the DynamoDB table for candles")?;
        let state = Resource::from_env(
            "INDICATOR_STATE_TABLE",
            "the DynamoDB table for indicator states per series",
        )?;
        let sdk = wtc_aws::load_sdk_config().await;
        Ok(Self {
            candles: CandleStore::new(aws_sdk_dynamodb::Client::new(&sdk), candles, state),
        })
    }

    /// A scheduled event (it has `detail-type`) finishes pending series; anything else must be a
    /// `Recompute` request.
    pub async fn handle(
        &self,
        event: &serde_json::Value,
    ) -> Result<Vec<SeriesOutcome>, RequestError> {
        if event.get("detail-type").is_some() {
            return self.finish_pending().await;
        }
        let request: Recompute = serde_json::from_value(event.clone())
            .map_err(|e| RequestError::Shape(e.to_string()))?;
        if request.symbol.trim().is_empty() {
            return Err(RequestError::Shape("`symbol` is empty".into()));
        }
        Ok(vec![self.recompute(&request).await?])
    }

    pub async fn recompute(&self, r: &Recompute) -> Result<SeriesOutcome, RequestError> {
        let rewind = match r.from {
            Some(from) => Rewind::From(from),
            None => Rewind::All,
        };
        let advanced = self
            .candles
            .advance(&r.symbol, r.interval, rewind, r.price, r.close_all)
            .await
            .map_err(RequestError::Store)?;
        Ok(SeriesOutcome {
            series: series_key(&r.symbol, r.interval),
            closed: advanced.closed,
            recomputed: advanced.recomputed,
            last_closed: advanced.last.map(|(t, _, _)| t.to_seconds_string()),
        })
    }

    /// Advances every series whose state carries a pending mark.
    pub async fn finish_pending(&self) -> Result<Vec<SeriesOutcome>, RequestError> {
        let series = self
            .candles
            .pending_series()
            .await
            .map_err(RequestError::Store)?;
        let mut out = Vec::with_capacity(series.len());
        for (symbol, interval) in series {
            let advanced = self
                .candles
                .advance(&symbol, interval, Rewind::Changed(None), None, false)
                .await
                .map_err(RequestError::Store)?;
            out.push(SeriesOutcome {
                series: series_key(&symbol, interval),
                closed: advanced.closed,
                recomputed: advanced.recomputed,
                last_closed: advanced.last.map(|(t, _, _)| t.to_seconds_string()),
            });
        }
        Ok(out)
    }
}

mod optional_time {
    use serde::{Deserialize, Deserializer};
    use wtc_core::time::Timestamp;

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Timestamp>, D::Error> {
        match Option::<String>::deserialize(d)? {
            None => Ok(None),
            Some(text) => Timestamp::parse(&text)
                .map(Some)
                .map_err(serde::de::Error::custom),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_read_strictly() {
        let r: Recompute = serde_json::from_value(serde_json::json!({
            "symbol": "TCS.NS", "interval": "M30", "from": "2024-01-01 03:45:00", "price": "open"
        }))
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(r.interval, Interval::M30);
        assert_eq!(r.price, Some(Price::Open));
        assert_eq!(
            r.from.map(|t| t.to_seconds_string()).as_deref(),
            Some("2024-01-01 03:45:00")
        );
        for bad in [
            serde_json::json!({"symbol": "X", "interval": "M5"}),
            serde_json::json!({"symbol": "X", "interval": "M1", "from": "soon"}),
            serde_json::json!({"symbol": "X", "interval": "M1", "extra": 1}),
            serde_json::json!({"interval": "M1"}),
        ] {
            assert!(
                serde_json::from_value::<Recompute>(bad.clone()).is_err(),
                "{bad}"
            );
        }
    }
}
