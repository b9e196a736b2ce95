//! What every response shares: a strong `ETag` and `304 Not Modified` for a matching
//! `If-None-Match`, the handler's time (store waits excluded), and the pages and assets
//! embedded in the binary (the docs, the dashboard, their scripts: nothing is fetched from
//! elsewhere at run time or at build time).

use crate::{ApiError, ApiState, ErrorBody};
use axum::Router;
use axum::body::Body;
use axum::extract::{MatchedPath, Path, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};
use bytes::Bytes;
use hdrhistogram::Histogram;
use std::cell::Cell;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The largest body the ETag is computed over (the largest asset is about 1.5 MB).
const MAX_BODY_BYTES: usize = 16 * 1024 * 1024;

/// What the pages may load: their own scripts and styles only (Swagger UI sets inline styles).
const PAGE_POLICY: &str = "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; \
     frame-ancestors 'none'; base-uri 'none'; form-action 'none'";

tokio::task_local! {
    /// Time this request spent waiting for the stores.
    static STORE_TIME: Cell<Duration>;
}

/// Runs a store call, counting its time as the store's, not the handler's.
pub async fn store_time<T>(call: impl Future<Output = T>) -> T {
    let started = Instant::now();
    let out = call.await;
    add_store_time(started.elapsed());
    out
}

/// Counts time this request spent waiting for a store (its own read, or another's it shares).
pub fn add_store_time(waited: Duration) {
    let _ = STORE_TIME.try_with(|t| t.set(t.get() + waited));
}

/// Handler times per route, in microseconds, store waits excluded: what the benchmark reports.
#[derive(Debug, Default)]
pub struct HandlerTimings {
    routes: Mutex<BTreeMap<String, Histogram<u64>>>,
}

/// One route's handler times.
#[derive(Debug, Clone, PartialEq)]
pub struct RouteTimes {
    pub route: String,
    pub count: u64,
    pub p50: Duration,
    pub p99: Duration,
    pub max: Duration,
}

impl HandlerTimings {
    fn record(&self, route: &str, took: Duration) {
        let Ok(mut routes) = self.routes.lock() else {
            return;
        };
        if !routes.contains_key(route) {
            // Three significant digits up to a minute: a fixed few kilobytes per route.
            let Ok(h) = Histogram::new_with_bounds(1, 60_000_000, 3) else {
                return;
            };
            routes.insert(route.to_owned(), h);
        }
        if let Some(h) = routes.get_mut(route) {
            h.saturating_record(took.as_micros().try_into().unwrap_or(u64::MAX));
        }
    }

    /// Every route's count and percentiles so far.
    pub fn summary(&self) -> Vec<RouteTimes> {
        let Ok(routes) = self.routes.lock() else {
            return Vec::new();
        };
        routes
            .iter()
            .map(|(route, h)| RouteTimes {
                route: route.clone(),
                count: h.len(),
                p50: Duration::from_micros(h.value_at_quantile(0.5)),
                p99: Duration::from_micros(h.value_at_quantile(0.99)),
                max: Duration::from_micros(h.max()),
            })
            .collect()
    }

    pub fn reset(&self) {
        if let Ok(mut routes) = self.routes.lock() {
            routes.clear();
        }
    }
}

/// Middleware: gives each successful GET a strong `ETag` (the body's 128-bit xxh3, unless the
/// handler set one), answers a matching `If-None-Match` with 304 and no body, and records the
/// handler's time.
pub async fn conditional(
    State(state): State<Arc<ApiState>>,
    request: Request,
    next: Next,
) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "(unmatched)".to_owned(), |p| p.as_str().to_owned());
    let cacheable = matches!(*request.method(), Method::GET | Method::HEAD);
    let if_none_match = request.headers().get(header::IF_NONE_MATCH).cloned();
    let started = Instant::now();
    let (response, store) = STORE_TIME
        .scope(Cell::new(Duration::ZERO), async {
            let response = next.run(request).await;
            (response, STORE_TIME.with(Cell::get))
        })
        .await;
    let mut response = if cacheable && response.status() == StatusCode::OK {
        with_etag(response, if_none_match.as_ref()).await
    } else {
        response
    };
    response.headers_mut().insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    state
        .timings
        .record(&route, started.elapsed().saturating_sub(store));
    response
}

async fn with_etag(response: Response, if_none_match: Option<&HeaderValue>) -> Response {
    let (mut parts, body) = response.into_parts();
    let body = if parts.headers.contains_key(header::ETAG) {
        body
    } else {
        let bytes = match axum::body::to_bytes(body, MAX_BODY_BYTES).await {
            Ok(bytes) => bytes,
            Err(e) => {
                return ApiError::unavailable("the response", &e.to_string()).into_response();
            }
        };
        if let Ok(tag) = HeaderValue::from_str(&strong_etag(&bytes)) {
            parts.headers.insert(header::ETAG, tag);
        }
        Body::from(bytes)
    };
    let matched = match (if_none_match, parts.headers.get(header::ETAG)) {
        (Some(wanted), Some(tag)) => etag_matches(wanted, tag),
        _ => false,
    };
    if !matched {
        return Response::from_parts(parts, body);
    }
    let mut not_modified = StatusCode::NOT_MODIFIED.into_response();
    for name in [header::ETAG, header::CACHE_CONTROL, header::VARY] {
        if let Some(value) = parts.headers.get(&name) {
            not_modified.headers_mut().insert(name, value.clone());
        }
    }
    not_modified
}

/// `"<32 hex digits>"`: changes whenever a byte of the body does.
pub fn strong_etag(body: &[u8]) -> String {
    format!("\"{:032x}\"", xxhash_rust::xxh3::xxh3_128(body))
}

/// `If-None-Match` uses the weak comparison (RFC 9110 13.1.2): `W/` is ignored on either side.
fn etag_matches(wanted: &HeaderValue, tag: &HeaderValue) -> bool {
    let Ok(wanted) = wanted.to_str() else {
        return false;
    };
    let tag = tag.to_str().unwrap_or_default();
    let tag = tag.strip_prefix("W/").unwrap_or(tag);
    wanted.split(',').map(str::trim).any(|candidate| {
        candidate == "*" || candidate.strip_prefix("W/").unwrap_or(candidate) == tag
    })
}

/// The pages, the scripts and styles they load, and the vendored libraries (with their
/// licences), from `functions/api/assets`.
#[derive(rust_embed::Embed)]
#[folder = "assets/"]
struct Assets;

/// The docs, the dashboard, the assets and the OpenAPI document (serialised once).
pub fn with_pages(router: Router<Arc<ApiState>>, openapi: Bytes) -> Router<Arc<ApiState>> {
    router
        .route(
            "/openapi.json",
            axum::routing::get(move || {
                let body = openapi.clone();
                async move {
                    let mut response = body.into_response();
                    let headers = response.headers_mut();
                    headers.insert(
                        header::CONTENT_TYPE,
                        HeaderValue::from_static("application/json"),
                    );
                    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
                    response
                }
            }),
        )
        .route("/docs", axum::routing::get(docs))
        .route("/dashboard", axum::routing::get(dashboard))
        .route(
            "/",
            axum::routing::get(|| async { Redirect::to("dashboard") }),
        )
        .route("/assets/{*path}", axum::routing::get(asset))
}

/// Interactive API documentation (Swagger UI, served from this function).
#[utoipa::path(
    get,
    path = "/docs",
    tag = "pages",
    responses((status = 200, description = "The docs page", content_type = "text/html"))
)]
pub async fn docs() -> Response {
    page("docs.html")
}

/// The dashboard: candles and indicators of a symbol, every symbol's latest price, a usage lookup.
#[utoipa::path(
    get,
    path = "/dashboard",
    tag = "pages",
    responses((status = 200, description = "The dashboard page", content_type = "text/html"))
)]
pub async fn dashboard() -> Response {
    page("dashboard.html")
}

/// A script, style or vendored file of the pages.
#[utoipa::path(
    get,
    path = "/assets/{path}",
    tag = "pages",
    params(("path" = String, Path, description = "The file, e.g. `dashboard.js`", example = "dashboard.js")),
    responses(
        (status = 200, description = "The file",
            content(
                (String = "text/javascript"),
                (String = "text/css"),
                (String = "text/html"),
                (String = "text/markdown"),
                (String = "text/plain"),
            ),
            headers(("ETag" = String, description = "The file's SHA-256"))),
        (status = 304, description = "Not modified since the ETag sent in `If-None-Match`"),
        (status = 404, description = "No such file", body = ErrorBody),
    )
)]
pub async fn asset(Path(path): Path<String>) -> Response {
    // The vendored libraries change only with a release; the pages' own files may change with
    // any deploy, so browsers revalidate those (a 304 when unchanged).
    let cache_control = if path.starts_with("vendor/") {
        "public, max-age=3600"
    } else {
        "no-cache"
    };
    embedded(&path, cache_control)
}

fn page(name: &str) -> Response {
    let mut response = embedded(name, "no-cache");
    if response.status() == StatusCode::OK {
        response.headers_mut().insert(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(PAGE_POLICY),
        );
    }
    response
}

fn embedded(path: &str, cache_control: &'static str) -> Response {
    let Some(file) = Assets::get(path) else {
        return ApiError::not_found("path", format!("no asset {path:?}")).into_response();
    };
    let mut headers = HeaderMap::new();
    // Licence and notice files have no extension: text, to be read in the browser.
    let mime = match path
        .rsplit('/')
        .next()
        .is_some_and(|name| name.contains('.'))
    {
        true => file.metadata.mimetype(),
        false => "text/plain; charset=utf-8",
    };
    if let Ok(mime) = HeaderValue::from_str(mime) {
        headers.insert(header::CONTENT_TYPE, mime);
    }
    let digest: String = file
        .metadata
        .sha256_hash()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    if let Ok(tag) = HeaderValue::from_str(&format!("\"{digest}\"")) {
        headers.insert(header::ETAG, tag);
    }
    headers.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static(cache_control),
    );
    (headers, Bytes::from(file.data.into_owned())).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn if_none_match_takes_lists_wildcards_and_weak_tags() {
        let tag = HeaderValue::from_static("\"abc\"");
        for wanted in ["\"abc\"", "\"x\", \"abc\"", "*", "W/\"abc\""] {
            assert!(
                etag_matches(&HeaderValue::from_static(wanted), &tag),
                "{wanted}"
            );
        }
        assert!(!etag_matches(&HeaderValue::from_static("\"abd\""), &tag));
        assert_ne!(strong_etag(b"a"), strong_etag(b"b"));
        assert_eq!(strong_etag(b"a").len(), 34);
    }

    #[test]
    fn the_pages_and_their_scripts_are_embedded() {
        for name in ["docs.html", "dashboard.html", "dashboard.js"] {
            assert!(Assets::get(name).is_some(), "{name} is not embedded");
        }
    }
}
