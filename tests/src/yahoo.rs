//! A local server that answers as the Yahoo Finance chart API does, from the recorded responses
//! in `tests/fixtures/yahoo`, with the failure modes a real run meets:
//! - `RELIANCE.NS`: a trading day's first minutes; `TCS.NS`: no data today (`"quote": [{}]`);
//! - `BUSY.NS`: rate limited (429 with `Retry-After: 0`) twice, then answers;
//! - `THROTTLED.NS`: rate limited on every request; `FLAKY.NS`: a 502 once, then answers;
//! - `GARBAGE.NS`: 200 with an HTML page; `SLOW.NS`: answers after 3 seconds;
//! - anything else: 404 with Yahoo's "No data found, symbol may be delisted" body.
//!
//! A request without `interval=1m&range=1d` gets a 400, so the tests check the query too.

use anyhow::{Context, Result};
use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub struct YahooReplay {
    pub base_url: String,
    hits: Arc<Mutex<HashMap<String, u32>>>,
    server: tokio::task::JoinHandle<()>,
}

fn fixture(name: &str) -> String {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures/yahoo")
        .join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| format!("missing fixture {path:?}: {e}"))
}

fn json(status: StatusCode, body: String) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/json;charset=utf-8")],
        body,
    )
        .into_response()
}

fn rate_limited() -> Response {
    let mut r = (StatusCode::TOO_MANY_REQUESTS, "Too Many Requests\r\n").into_response();
    r.headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static("0"));
    r
}

async fn chart(
    State(hits): State<Arc<Mutex<HashMap<String, u32>>>>,
    Path(symbol): Path<String>,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    let n = {
        let mut hits = hits.lock().unwrap_or_else(|e| e.into_inner());
        let n = hits.entry(symbol.clone()).or_default();
        *n += 1;
        *n
    };
    if query.get("interval").map(String::as_str) != Some("1m")
        || query.get("range").map(String::as_str) != Some("1d")
    {
        return json(
            StatusCode::BAD_REQUEST,
            r#"{"chart":{"result":null,"error":{"code":"Bad Request","description":"Invalid input - interval and range required"}}}"#.into(),
        );
    }
    let day = || fixture("RELIANCE.NS.json").replace("RELIANCE.NS", &symbol);
    match symbol.as_str() {
        "RELIANCE.NS" => json(StatusCode::OK, day()),
        "TCS.NS" => json(StatusCode::OK, fixture("TCS.NS.json")),
        "BUSY.NS" if n <= 2 => rate_limited(),
        "BUSY.NS" => json(StatusCode::OK, day()),
        "THROTTLED.NS" => rate_limited(),
        "FLAKY.NS" if n == 1 => {
            (StatusCode::BAD_GATEWAY, "<html>502 Bad Gateway</html>").into_response()
        }
        "FLAKY.NS" => json(StatusCode::OK, day()),
        "GARBAGE.NS" => (
            StatusCode::OK,
            "<html><body>Will be right back</body></html>",
        )
            .into_response(),
        "SLOW.NS" => {
            tokio::time::sleep(Duration::from_secs(3)).await;
            json(StatusCode::OK, day())
        }
        _ => json(StatusCode::NOT_FOUND, fixture("not-found.json")),
    }
}

impl YahooReplay {
    /// Serves on a free loopback port.
    pub async fn start() -> Result<Self> {
        let hits: Arc<Mutex<HashMap<String, u32>>> = Default::default();
        let app = Router::new()
            .route("/v8/finance/chart/{symbol}", get(chart))
            .with_state(hits.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .context("binding the Yahoo replay server")?;
        let base_url = format!("http://{}", listener.local_addr()?);
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(Self {
            base_url,
            hits,
            server,
        })
    }

    /// Requests received for a symbol.
    pub fn hits(&self, symbol: &str) -> u32 {
        let hits = self.hits.lock().unwrap_or_else(|e| e.into_inner());
        hits.get(symbol).copied().unwrap_or(0)
    }
}

impl Drop for YahooReplay {
    fn drop(&mut self) {
        self.server.abort();
    }
}
