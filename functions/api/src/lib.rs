//! The HTTP API: an axum `Router`, served by `lambda_http` behind API Gateway and by `axum::serve`
//! locally (port 18089, the curriculum's). One function serves the data, its OpenAPI document,
//! the interactive docs and the dashboard, every asset embedded in the binary.
//!
//! - `GET /health`: `{"status": "ok"}`.
//! - `GET /data_usage`: hourly usage in exactly the curriculum's shape, HTTP Basic (`usage`).
//! - `GET /symbols`, `/latest_price`, `/candles`, `/indicators`: market data (`market`), open by
//!   default, behind the same Basic credentials with `MARKET_DATA_AUTH=basic`.
//! - `GET /openapi.json` (OpenAPI 3.1, generated from the handlers), `/docs` (Swagger UI),
//!   `/dashboard` and `/assets/…` (`http`).
//!
//! A bad parameter gets 400 with `{"error", "parameter"}`, an unknown symbol 404, a store that
//! cannot be read 503. Market responses come from a short-lived in-memory cache when a warm
//! function answered the same question within `CACHE_TTL_MS`, and every response carries a
//! strong `ETag`, so a client that sends `If-None-Match` gets 304 while nothing changed.

pub mod auth;
pub mod http;
pub mod market;
pub mod openapi;
pub mod params;
pub mod usage;

pub use auth::{Credentials, constant_time_eq};
pub use http::HandlerTimings;

use axum::Router;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use serde::Serialize;
use std::sync::Arc;
use std::time::Duration;
use wtc_aws::{CandleStore, TickStore, UsageStore};

/// The port the curriculum's clients call locally.
pub const LOCAL_PORT: u16 = 18089;
/// How long a warm function reuses a market answer when `CACHE_TTL_MS` is not set.
pub const DEFAULT_CACHE_TTL: Duration = Duration::from_secs(1);
/// The memory the response cache may hold.
const CACHE_BYTES: u64 = 32 * 1024 * 1024;

/// Settings beyond the stores and credentials.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ApiSettings {
    /// Market endpoints need the Basic credentials too (`MARKET_DATA_AUTH=basic`).
    pub market_auth: bool,
    /// How long a market answer is reused (`CACHE_TTL_MS`; 0 turns the cache off).
    pub cache_ttl: Duration,
}

impl Default for ApiSettings {
    fn default() -> Self {
        Self {
            market_auth: false,
            cache_ttl: DEFAULT_CACHE_TTL,
        }
    }
}

impl ApiSettings {
    /// `MARKET_DATA_AUTH` (`none`, the default, or `basic`) and `CACHE_TTL_MS`.
    pub fn from_env() -> Result<Self, wtc_aws::ConfigError> {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
        let market_auth = match var("MARKET_DATA_AUTH").as_deref() {
            None | Some("none") => false,
            Some("basic") => true,
            Some(other) => {
                return Err(wtc_aws::ConfigError::Invalid {
                    name: "MARKET_DATA_AUTH",
                    reason: format!("must be `none` or `basic`, found {other:?}"),
                });
            }
        };
        let cache_ttl = match var("CACHE_TTL_MS") {
            None => DEFAULT_CACHE_TTL,
            Some(ms) => {
                Duration::from_millis(ms.parse().map_err(|_| wtc_aws::ConfigError::Invalid {
                    name: "CACHE_TTL_MS",
                    reason: format!("must be a number of milliseconds, found {ms:?}"),
                })?)
            }
        };
        Ok(Self {
            market_auth,
            cache_ttl,
        })
    }
}

/// What the handlers share.
#[derive(Debug)]
pub struct ApiState {
    pub usage: UsageStore,
    /// The tick store, for the hourly average rates that convert costs to WAK.
    pub rates: TickStore,
    pub candles: CandleStore,
    pub credentials: Credentials,
    pub settings: ApiSettings,
    /// Market answers by their typed request, for `settings.cache_ttl`.
    pub cache: moka::future::Cache<String, Cached>,
    /// Handler times by route, store waits excluded.
    pub timings: HandlerTimings,
}

impl ApiState {
    pub fn new(
        usage: UsageStore,
        rates: TickStore,
        candles: CandleStore,
        credentials: Credentials,
        settings: ApiSettings,
    ) -> Self {
        let cache = moka::future::Cache::builder()
            .max_capacity(CACHE_BYTES)
            .weigher(|key: &String, value: &Cached| {
                u32::try_from(key.len() + value.weight()).unwrap_or(u32::MAX)
            })
            .time_to_live(settings.cache_ttl.max(Duration::from_millis(1)))
            .build();
        Self {
            usage,
            rates,
            candles,
            credentials,
            settings,
            cache,
            timings: HandlerTimings::default(),
        }
    }

    /// Whether a market request may be answered: always, unless market data needs credentials.
    pub fn authorize_market(&self, headers: &HeaderMap) -> Result<(), ApiError> {
        if self.settings.market_auth
            && !self.credentials.accepts(headers.get(header::AUTHORIZATION))
        {
            return Err(ApiError::unauthorized());
        }
        Ok(())
    }

    /// A market answer: from the cache while it is fresh, else computed (concurrent requests
    /// for the same key wait for one computation). Only successes are kept.
    pub async fn cached(
        &self,
        key: String,
        compute: impl Future<Output = Result<Cached, ApiError>>,
    ) -> Result<Cached, ApiError> {
        // Boxed: the cache moves the computation around by value before polling it.
        let compute = Box::pin(compute);
        if self.settings.cache_ttl.is_zero() {
            return compute.await;
        }
        let ran = std::sync::atomic::AtomicBool::new(false);
        let started = std::time::Instant::now();
        let result = self
            .cache
            .try_get_with(key, async {
                ran.store(true, std::sync::atomic::Ordering::Relaxed);
                compute.await
            })
            .await
            .map_err(|e: Arc<ApiError>| (*e).clone());
        // A request that waited for another's read waited for the store too.
        if !ran.load(std::sync::atomic::Ordering::Relaxed) {
            http::add_store_time(started.elapsed());
        }
        result
    }
}

/// What the cache keeps: a response body, or a latest price (whose response depends on the
/// moment it is served: its age).
#[derive(Debug, Clone)]
pub enum Cached {
    Body(Bytes),
    Latest(Arc<wtc_core::latest::LatestPrice>),
}

impl Cached {
    fn weight(&self) -> usize {
        match self {
            Cached::Body(b) => b.len(),
            Cached::Latest(l) => 128 + l.symbol.len(),
        }
    }

    pub fn into_body(self) -> Result<Bytes, ApiError> {
        match self {
            Cached::Body(b) => Ok(b),
            Cached::Latest(_) => Err(ApiError::unavailable(
                "the response",
                "the cache holds a latest price under a body key",
            )),
        }
    }
}

/// The body of every error response.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    /// What is wrong, and what to send instead.
    pub error: String,
    /// The query parameter at fault, when one is.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parameter: Option<String>,
}

/// A request that cannot be answered as asked.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
    pub parameter: Option<&'static str>,
}

impl ApiError {
    pub fn bad_request(parameter: &'static str, message: String) -> Self {
        Self {
            status: StatusCode::BAD_REQUEST,
            message,
            parameter: Some(parameter),
        }
    }

    pub fn not_found(parameter: &'static str, message: String) -> Self {
        Self {
            status: StatusCode::NOT_FOUND,
            message,
            parameter: Some(parameter),
        }
    }

    pub fn unauthorized() -> Self {
        Self {
            status: StatusCode::UNAUTHORIZED,
            message: "missing or wrong credentials (HTTP Basic)".into(),
            parameter: None,
        }
    }

    /// A store could not be read: logged with its cause, answered without it.
    pub fn unavailable(what: &str, cause: &str) -> Self {
        tracing::error!(error = %cause, "reading {what} failed");
        Self {
            status: StatusCode::SERVICE_UNAVAILABLE,
            message: format!("{what} could not be read; try again"),
            parameter: None,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            error: self.message,
            parameter: self.parameter.map(str::to_owned),
        };
        let mut response = (self.status, axum::Json(body)).into_response();
        let headers = response.headers_mut();
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        if self.status == StatusCode::UNAUTHORIZED {
            headers.insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Basic realm=\"wtc\", charset=\"UTF-8\""),
            );
        }
        response
    }
}

/// A JSON body, serialised once (it is what the cache keeps and the ETag is taken of).
pub fn json_bytes<T: Serialize>(value: &T) -> Result<Bytes, ApiError> {
    serde_json::to_vec(value)
        .map(Bytes::from)
        .map_err(|e| ApiError::unavailable("the response", &e.to_string()))
}

/// The service's health.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Health {
    /// Always `ok` when the function answers.
    #[schema(example = "ok")]
    pub status: &'static str,
}

/// Whether the function answers (no credentials, no store read).
#[utoipa::path(
    get,
    path = "/health",
    tag = "service",
    responses((status = 200, description = "The function answers", body = Health))
)]
async fn health() -> Response {
    axum::Json(Health { status: "ok" }).into_response()
}

/// Every route, its OpenAPI document, the docs and the dashboard.
pub fn router(state: Arc<ApiState>) -> Router {
    use utoipa_axum::{router::OpenApiRouter, routes};
    let (api, document) = OpenApiRouter::with_openapi(openapi::base())
        .routes(routes!(health))
        .routes(routes!(usage::data_usage))
        .routes(routes!(market::symbols))
        .routes(routes!(market::latest_price))
        .routes(routes!(market::candles))
        .routes(routes!(market::indicators))
        .split_for_parts();
    http::with_pages(api, openapi::finish(document))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            http::conditional,
        ))
        .with_state(state)
}
