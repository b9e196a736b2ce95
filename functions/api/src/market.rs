//! Market data: `GET /symbols`, `/latest_price`, `/candles`, `/indicators`.
//!
//! Shaped like the market-data APIs traders use (Alpaca's, Polygon's): RFC 3339 times, a `limit`
//! with a documented maximum, `sort`, and a `next_page_token` that continues a range where a page
//! stopped. The latest price is one item read and a page one query; a warm function answers a
//! repeated request from its cache for `CACHE_TTL_MS`.

use crate::http::store_time;
use crate::params::{
    self, DEFAULT_LIMIT, MAX_LIMIT, MAX_SYMBOLS, PageToken, Params, Symbol, newest_first,
};
use crate::{ApiError, ApiState, Cached, ErrorBody, json_bytes};
use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use serde::Serialize;
use std::sync::Arc;
use wtc_aws::candles::{PageRequest, StoredCandle, series_key, start_key};
use wtc_core::candles::Interval;
use wtc_core::latest::{LatestPrice, PriceSource};
use wtc_core::time::Timestamp;

/// A symbol with data.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct SymbolSummary {
    #[schema(example = "TCS.NS")]
    pub symbol: String,
    /// The latest price: a tick's mid or a bar's close.
    pub price: f64,
    /// The price minus the close of the last closed M1 candle.
    pub change: Option<f64>,
    /// When the price was quoted (RFC 3339, UTC).
    #[schema(example = "2024-01-01T03:45:59.999999Z")]
    pub at: String,
    /// When the price was stored (wall clock): how fresh the feed is.
    pub updated_at: String,
    /// The candle intervals the symbol has (every M1 candle rolls up to M30 and H1).
    pub intervals: Vec<IntervalName>,
}

/// A candle interval.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub enum IntervalName {
    M1,
    M30,
    H1,
}

impl From<Interval> for IntervalName {
    fn from(i: Interval) -> Self {
        match i {
            Interval::M1 => IntervalName::M1,
            Interval::M30 => IntervalName::M30,
            Interval::H1 => IntervalName::H1,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct SymbolsResponse {
    /// In symbol order.
    pub symbols: Vec<SymbolSummary>,
    /// Send as `page_token` for the symbols after these; `null` on the last page.
    pub next_page_token: Option<String>,
}

/// Where a latest price came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    Tick,
    Bar,
}

/// The newest tick or bar of a symbol.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct LatestPriceResponse {
    #[schema(example = "MRVZAR")]
    pub symbol: String,
    pub source: Source,
    /// When the price was quoted (RFC 3339, UTC): a tick's time, a bar's last microsecond.
    pub at: String,
    /// When it was stored (wall clock).
    pub updated_at: String,
    /// How old the quote is, in whole seconds (so the body, and its ETag, change once a second).
    pub age_seconds: i64,
    /// The mid of a tick, the close of a bar.
    pub price: f64,
    /// A tick's bid; `null` for a bar.
    pub bid: Option<f64>,
    /// A tick's ask; `null` for a bar.
    pub ask: Option<f64>,
    /// A tick's mid, (bid + ask) / 2; `null` for a bar.
    pub mid: Option<f64>,
    /// A bar's close; `null` for a tick.
    pub close: Option<f64>,
    /// A bar's volume; `null` for a tick.
    pub volume: Option<f64>,
    /// The close of the last closed M1 candle.
    pub previous_close: Option<f64>,
    /// `price - previous_close`.
    pub change: Option<f64>,
}

/// One candle.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct CandleOut {
    /// The candle's start (RFC 3339, UTC).
    #[schema(example = "2024-01-01T03:45:00Z")]
    pub start: String,
    pub open: f64,
    pub high: f64,
    pub low: f64,
    pub close: f64,
    /// Traded volume (from fetched bars; 0 for candles of ticks).
    pub volume: f64,
    /// Ticks folded in (0 for candles of fetched bars).
    pub ticks: u64,
    /// Whether a later candle exists (its indicators are computed).
    pub closed: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct CandlesResponse {
    pub symbol: String,
    pub interval: IntervalName,
    pub candles: Vec<CandleOut>,
    /// Send as `page_token` (with the same symbol, interval and sort) for the next page; `null`
    /// on the last page.
    pub next_page_token: Option<String>,
}

/// The indicators of one closed candle, exactly as stored (TA-Lib's definitions, warm-up and
/// seeding); `null` while an indicator warms up.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct IndicatorRow {
    /// The candle's start (RFC 3339, UTC).
    pub start: String,
    /// The candle's close.
    pub close: f64,
    pub sma20: Option<f64>,
    pub ema8: Option<f64>,
    pub ema12: Option<f64>,
    pub ema21: Option<f64>,
    pub ema26: Option<f64>,
    pub rsi14: Option<f64>,
    /// MACD(12, 26, 9): the line.
    pub macd: Option<f64>,
    pub macd_signal: Option<f64>,
    pub macd_histogram: Option<f64>,
    pub atr8: Option<f64>,
    pub atr21: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct IndicatorsResponse {
    pub symbol: String,
    pub interval: IntervalName,
    /// Closed candles only, in the order asked.
    pub indicators: Vec<IndicatorRow>,
    /// Send as `page_token` (with the same symbol, interval and sort) for the next page; `null`
    /// on the last page.
    pub next_page_token: Option<String>,
}

/// The query of `/symbols` (documentation; the handler parses each value itself).
#[derive(Debug, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
struct SymbolsQuery {
    /// Symbols per page, 1 to 1000 (default 1000).
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<u32>,
    /// `next_page_token` of the previous page.
    page_token: Option<String>,
}

/// The query of `/latest_price`.
#[derive(Debug, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
struct LatestQuery {
    /// The symbol, as the feeds name it (`TCS.NS`, `EURUSD=X`, `MRVZAR`).
    #[param(
        min_length = 1,
        max_length = 32,
        pattern = r"^[^\x00-\x20\x7F]+$",
        example = "MRVZAR"
    )]
    symbol: String,
}

/// The query of `/candles` and `/indicators`.
#[derive(Debug, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
struct RangeQuery {
    /// The symbol, as the feeds name it (`TCS.NS`, `EURUSD=X`, `MRVZAR`).
    #[param(
        min_length = 1,
        max_length = 32,
        pattern = r"^[^\x00-\x20\x7F]+$",
        example = "MRVZAR"
    )]
    symbol: String,
    #[param(inline)]
    interval: IntervalName,
    /// Candles starting at or after this time: RFC 3339 (`2024-01-01T00:00:00Z`),
    /// `YYYY-MM-DD HH:MM:SS` or `YYYY-MM-DD` (UTC).
    #[param(example = "2024-01-01T00:00:00Z")]
    start: Option<String>,
    /// Candles starting at or before this time (same forms as `start`).
    #[param(example = "2024-01-02T00:00:00Z")]
    end: Option<String>,
    /// Items per page, 1 to 1000 (default 500).
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<u32>,
    /// `asc` (oldest first, the default) or `desc` (newest first).
    #[param(inline)]
    sort: Option<Sort>,
    /// `next_page_token` of the previous page (with the same symbol, interval and sort).
    page_token: Option<String>,
}

#[derive(Debug, utoipa::ToSchema)]
#[schema(rename_all = "lowercase")]
#[allow(dead_code)]
enum Sort {
    Asc,
    Desc,
}

/// What a market endpoint may answer besides its data.
#[derive(utoipa::IntoResponses)]
#[allow(dead_code)]
enum MarketErrors {
    /// Not modified since the ETag sent in `If-None-Match`.
    #[response(status = 304)]
    NotModified,
    /// A parameter is missing or malformed.
    #[response(status = 400)]
    BadRequest(ErrorBody),
    /// Credentials needed (`MARKET_DATA_AUTH=basic`).
    #[response(status = 401)]
    Unauthorized(ErrorBody),
    /// No data for this symbol (`/symbols` never answers this).
    #[response(status = 404)]
    NotFound(ErrorBody),
    /// The store could not be read.
    #[response(status = 503)]
    Unavailable(ErrorBody),
}

/// Every symbol with data: its latest price and time, and its intervals.
#[utoipa::path(
    get,
    path = "/symbols",
    tag = "market",
    params(SymbolsQuery),
    security((), ("basic" = [])),
    responses(
        (status = 200, description = "Symbols in symbol order", body = SymbolsResponse,
            headers(("ETag" = String, description = "Strong validator of the body"))),
        MarketErrors,
    )
)]
pub async fn symbols(
    State(state): State<Arc<ApiState>>,
    headers: HeaderMap,
    Query(params): Query<Params>,
) -> Response {
    let answer = async {
        state.authorize_market(&headers)?;
        let limit = params::limit(&params, MAX_SYMBOLS, MAX_SYMBOLS)?;
        let token = PageToken::from_params(&params, "symbols", false)?;
        let after = token.map(|t| t.after);
        let key = format!("symbols\n{limit}\n{}", after.as_deref().unwrap_or_default());
        state
            .cached(key, async {
                let page = store_time(state.candles.latest_page(limit, after.as_deref()))
                    .await
                    .map_err(|e| ApiError::unavailable("the latest prices", &e.to_string()))?;
                json_body(&SymbolsResponse {
                    symbols: page.prices.iter().map(summary).collect(),
                    next_page_token: page.next_after.map(|after| {
                        PageToken {
                            scope: "symbols".into(),
                            newest_first: false,
                            after,
                        }
                        .encode()
                    }),
                })
            })
            .await
            .and_then(Cached::into_body)
    };
    market_response(&state, answer.await)
}

/// The newest tick or bar of a symbol: one item read.
#[utoipa::path(
    get,
    path = "/latest_price",
    tag = "market",
    params(LatestQuery),
    security((), ("basic" = [])),
    responses(
        (status = 200, description = "The symbol's newest price", body = LatestPriceResponse,
            headers(("ETag" = String, description = "Strong validator of the body"))),
        MarketErrors,
    )
)]
pub async fn latest_price(
    State(state): State<Arc<ApiState>>,
    headers: HeaderMap,
    Query(params): Query<Params>,
) -> Response {
    let answer = async {
        state.authorize_market(&headers)?;
        let symbol = params::symbol(&params)?;
        let latest = known_latest(&state, &symbol).await?;
        json_bytes(&latest_response(&latest, now()))
    };
    market_response(&state, answer.await)
}

/// OHLC candles of a symbol at an interval, a page at a time.
#[utoipa::path(
    get,
    path = "/candles",
    tag = "market",
    params(RangeQuery),
    security((), ("basic" = [])),
    responses(
        (status = 200, description = "A page of candles", body = CandlesResponse,
            headers(("ETag" = String, description = "Strong validator of the body"))),
        MarketErrors,
    )
)]
pub async fn candles(
    State(state): State<Arc<ApiState>>,
    headers: HeaderMap,
    Query(params): Query<Params>,
) -> Response {
    series_page(
        &state,
        &headers,
        &params,
        "candles",
        |_| true,
        |range, page, next| {
            json_body(&CandlesResponse {
                symbol: range.symbol.as_str().to_owned(),
                interval: range.interval.into(),
                candles: page.iter().map(candle_out).collect(),
                next_page_token: next,
            })
        },
    )
    .await
}

/// Every indicator of each closed candle of a symbol at an interval, a page at a time.
#[utoipa::path(
    get,
    path = "/indicators",
    tag = "market",
    params(RangeQuery),
    security((), ("basic" = [])),
    responses(
        (status = 200, description = "A page of closed candles' indicators",
            body = IndicatorsResponse,
            headers(("ETag" = String, description = "Strong validator of the body"))),
        MarketErrors,
    )
)]
pub async fn indicators(
    State(state): State<Arc<ApiState>>,
    headers: HeaderMap,
    Query(params): Query<Params>,
) -> Response {
    let closed = |c: &StoredCandle| c.values.is_some();
    series_page(
        &state,
        &headers,
        &params,
        "indicators",
        closed,
        |range, page, next| {
            json_body(&IndicatorsResponse {
                symbol: range.symbol.as_str().to_owned(),
                interval: range.interval.into(),
                indicators: page.iter().filter_map(indicator_row).collect(),
                next_page_token: next,
            })
        },
    )
    .await
}

/// A page of a series as `/candles` or `/indicators` answer it: the candles `keep` takes, shaped
/// by `body`, cached under the typed request.
async fn series_page(
    state: &ApiState,
    headers: &HeaderMap,
    params: &Params,
    what: &str,
    keep: fn(&StoredCandle) -> bool,
    body: impl FnOnce(&SeriesRange, Vec<StoredCandle>, Option<String>) -> Result<Cached, ApiError>,
) -> Response {
    let answer = async {
        state.authorize_market(headers)?;
        let range = SeriesRange::parse(params)?;
        state
            .cached(format!("{what}\n{}", range.key()), async {
                let (page, next) = range.read(state, keep).await?;
                body(&range, page, next)
            })
            .await
            .and_then(Cached::into_body)
    };
    market_response(state, answer.await)
}

/// What `/candles` and `/indicators` ask for, parsed.
struct SeriesRange {
    symbol: Symbol,
    interval: Interval,
    series: String,
    from: Option<Timestamp>,
    to: Option<Timestamp>,
    limit: u32,
    newest_first: bool,
    after: Option<Timestamp>,
}

impl SeriesRange {
    fn parse(params: &Params) -> Result<Self, ApiError> {
        let symbol = params::symbol(params)?;
        let interval = params::interval(params)?;
        let (from, to) = params::range(params)?;
        let limit = params::limit(params, DEFAULT_LIMIT, MAX_LIMIT)?;
        let newest_first = newest_first(params)?;
        let series = series_key(symbol.as_str(), interval);
        let after = match PageToken::from_params(params, &series, newest_first)? {
            None => None,
            Some(token) => Some(Timestamp::parse(&token.after).map_err(|_| {
                ApiError::bad_request(
                    "page_token",
                    "`page_token` is not a token this API gave (take `next_page_token` as it is)"
                        .into(),
                )
            })?),
        };
        Ok(Self {
            symbol,
            interval,
            series,
            from,
            to,
            limit,
            newest_first,
            after,
        })
    }

    /// The cache key: the typed request, so equivalent spellings share an entry.
    fn key(&self) -> String {
        let t = |t: Option<Timestamp>| t.map_or(String::new(), |t| t.micros().to_string());
        format!(
            "{}\n{}\n{}\n{}\n{}\n{}",
            self.series,
            t(self.from),
            t(self.to),
            self.limit,
            self.newest_first,
            t(self.after)
        )
    }

    /// Up to `limit` candles that `keep` takes, and the token of the next page. The store is
    /// asked for one candle more than the limit: only the newest candle of a series (and, for a
    /// moment, those a writer is finishing) lacks indicators, so a page of indicators is full
    /// however the open candle falls. An empty first page of a symbol nobody has data for is a
    /// 404, so that a typo is not mistaken for a quiet market.
    async fn read(
        &self,
        state: &ApiState,
        keep: fn(&StoredCandle) -> bool,
    ) -> Result<(Vec<StoredCandle>, Option<String>), ApiError> {
        let page = store_time(state.candles.page(&PageRequest {
            series: &self.series,
            from: self.from,
            to: self.to,
            limit: self.limit + 1,
            newest_first: self.newest_first,
            after: self.after,
        }))
        .await
        .map_err(|e| ApiError::unavailable("candles", &e.to_string()))?;
        if page.candles.is_empty() && self.after.is_none() {
            known_latest(state, &self.symbol).await?;
        }
        let read = page.candles.len();
        let mut kept: Vec<StoredCandle> = page.candles.into_iter().filter(keep).collect();
        // Where the next page continues: after the last candle returned when this page is cut at
        // the limit, else after the last one read, when the store has more.
        let after = if kept.len() > self.limit as usize {
            kept.truncate(self.limit as usize);
            kept.last().map(|c| c.candle.start)
        } else if read > 0 {
            page.next_after
        } else {
            None
        };
        let next = after.map(|after| {
            PageToken {
                scope: self.series.clone(),
                newest_first: self.newest_first,
                after: start_key(after),
            }
            .encode()
        });
        Ok((kept, next))
    }
}

/// The symbol's latest price (cached), or 404 when it has none.
async fn known_latest(state: &ApiState, symbol: &Symbol) -> Result<LatestPrice, ApiError> {
    let key = format!("latest\n{}", symbol.as_str());
    let cached = state
        .cached(key, async {
            store_time(state.candles.latest(symbol.as_str()))
                .await
                .map_err(|e| ApiError::unavailable("the latest price", &e.to_string()))?
                .map(|latest| Cached::Latest(Arc::new(latest)))
                .ok_or_else(|| {
                    ApiError::not_found(
                        "symbol",
                        format!(
                            "no data for symbol {:?} (`/symbols` lists those with data)",
                            symbol.as_str()
                        ),
                    )
                })
        })
        .await?;
    match cached {
        Cached::Latest(latest) => Ok((*latest).clone()),
        Cached::Body(_) => Err(ApiError::unavailable(
            "the latest price",
            "the cache holds a body under a latest-price key",
        )),
    }
}

fn now() -> Timestamp {
    let micros = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as i64);
    Timestamp::from_micros(micros)
}

fn summary(l: &LatestPrice) -> SymbolSummary {
    SymbolSummary {
        symbol: l.symbol.clone(),
        price: l.price(),
        change: l.change(),
        at: l.at.to_rfc3339(),
        updated_at: l.updated_at.to_rfc3339(),
        intervals: Interval::ALL.map(IntervalName::from).to_vec(),
    }
}

pub fn latest_response(l: &LatestPrice, now: Timestamp) -> LatestPriceResponse {
    let (source, bid, ask, mid, close, volume) = match l.source {
        PriceSource::Tick { bid, ask, mid } => {
            (Source::Tick, Some(bid), Some(ask), Some(mid), None, None)
        }
        PriceSource::Bar { close, volume } => {
            (Source::Bar, None, None, None, Some(close), Some(volume))
        }
    };
    LatestPriceResponse {
        symbol: l.symbol.clone(),
        source,
        at: l.at.to_rfc3339(),
        updated_at: l.updated_at.to_rfc3339(),
        age_seconds: (now.micros() - l.at.micros()).div_euclid(1_000_000),
        price: l.price(),
        bid,
        ask,
        mid,
        close,
        volume,
        previous_close: l.previous_close,
        change: l.change(),
    }
}

fn candle_out(c: &StoredCandle) -> CandleOut {
    let k = &c.candle;
    CandleOut {
        start: k.start.to_rfc3339(),
        open: k.open,
        high: k.high,
        low: k.low,
        close: k.close,
        volume: k.volume,
        ticks: k.ticks,
        closed: c.values.is_some(),
    }
}

fn indicator_row(c: &StoredCandle) -> Option<IndicatorRow> {
    let v = c.values?;
    Some(IndicatorRow {
        start: c.candle.start.to_rfc3339(),
        close: c.candle.close,
        sma20: v.sma20,
        ema8: v.ema8,
        ema12: v.ema12,
        ema21: v.ema21,
        ema26: v.ema26,
        rsi14: v.rsi14,
        macd: v.macd.map(|m| m.macd),
        macd_signal: v.macd.map(|m| m.signal),
        macd_histogram: v.macd.map(|m| m.histogram),
        atr8: v.atr8,
        atr21: v.atr21,
    })
}

fn json_body<T: Serialize>(value: &T) -> Result<Cached, ApiError> {
    json_bytes(value).map(Cached::Body)
}

/// A market answer as a response: JSON with the cache's lifetime, or the error.
fn market_response(state: &ApiState, answer: Result<Bytes, ApiError>) -> Response {
    match answer {
        Ok(body) => {
            let scope = if state.settings.market_auth {
                "private"
            } else {
                "public"
            };
            let seconds = state.settings.cache_ttl.as_secs();
            let control = if seconds == 0 {
                format!("{scope}, no-cache")
            } else {
                format!("{scope}, max-age={seconds}")
            };
            let mut response = body.into_response();
            let headers = response.headers_mut();
            headers.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
            if let Ok(value) = HeaderValue::from_str(&control) {
                headers.insert(header::CACHE_CONTROL, value);
            }
            response
        }
        Err(e) => e.into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bar_has_a_close_and_a_tick_a_bid_and_ask() {
        let l = LatestPrice {
            symbol: "TCS.NS".into(),
            source: PriceSource::Bar {
                close: 10.0,
                volume: 5.0,
            },
            at: Timestamp::from_micros(59_999_999),
            previous_close: Some(9.5),
            updated_at: Timestamp::from_micros(61_000_000),
        };
        let r = latest_response(&l, Timestamp::from_micros(120_000_000));
        assert_eq!(r.source, Source::Bar);
        assert_eq!((r.close, r.bid, r.age_seconds), (Some(10.0), None, 60));
        assert_eq!(r.change, Some(0.5));
        assert_eq!(r.at, "1970-01-01T00:00:59.999999Z");
    }
}
