//! The market-data API over HTTP against the real stores: TA-Lib's own values for every closed
//! candle of its fixture series, fed in as fetched bars through process-ticks; candles page by
//! page in both orders; latest prices of ticks and bars; every 400 and the 404; ETags and 304s;
//! the OpenAPI document, the docs and the dashboard; and credentials on market data when asked.

use api::{ApiSettings, ApiState};
use serde_json::Value;
use std::collections::BTreeMap;
use std::sync::Arc;
use wtc_core::Tick;
use wtc_core::quotes::Bar;
use wtc_core::time::Timestamp;
use wtc_tests::{Harness, ServedApi, kafka_event};

const USER: (&str, &str) = ("trader", "s3cret-for-tests");

struct Api {
    base: String,
    client: reqwest::Client,
    state: Arc<ApiState>,
    _served: ServedApi,
}

impl Api {
    async fn start(h: &Harness, settings: ApiSettings) -> Self {
        let served = h.serve_api(USER, settings).await;
        Self {
            base: served.base.clone(),
            client: reqwest::Client::new(),
            state: served.state.clone(),
            _served: served,
        }
    }

    async fn get(&self, path: &str) -> reqwest::Response {
        self.client
            .get(format!("{}{path}", self.base))
            .send()
            .await
            .unwrap()
    }

    /// A 200's JSON body.
    async fn json(&self, path: &str) -> Value {
        let response = self.get(path).await;
        let status = response.status();
        let text = response.text().await.unwrap();
        assert_eq!(status, 200, "GET {path}: {text}");
        serde_json::from_str(&text).unwrap()
    }

    /// A 4xx's status and its `{"error", "parameter"}`.
    async fn error(&self, path: &str) -> (u16, Value) {
        let response = self.get(path).await;
        let status = response.status().as_u16();
        let body: Value = serde_json::from_str(&response.text().await.unwrap()).unwrap();
        assert!(
            body["error"].as_str().is_some_and(|e| !e.is_empty()),
            "{body}"
        );
        (status, body)
    }
}

fn fixtures() -> Value {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../functions/core/tests/fixtures/talib/talib.json"
    );
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn column(series: &Value, name: &str) -> Vec<f64> {
    series[name]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap())
        .collect()
}

const FIRST_MINUTE: i64 = 1_704_067_200_000_000;

/// A fixture series as one fetched bar per minute from 2024-01-01 00:00.
fn bars(symbol: &str, series: &Value) -> Vec<Bar> {
    let (o, h, l, c) = (
        column(series, "open"),
        column(series, "high"),
        column(series, "low"),
        column(series, "close"),
    );
    (0..c.len())
        .map(|i| Bar {
            symbol: symbol.to_owned(),
            start: Timestamp::from_micros(FIRST_MINUTE + i as i64 * 60_000_000),
            open: o[i],
            high: h[i],
            low: l[i],
            close: c[i],
            volume: 100 + i as u64,
        })
        .collect()
}

/// Sends bars through process-ticks, 200 a batch, as the event-source mapping would.
async fn ingest(h: &Harness, bars: &[Bar]) {
    for (n, chunk) in bars.chunks(200).enumerate() {
        let records: Vec<(i32, i64, Vec<u8>)> = chunk
            .iter()
            .enumerate()
            .map(|(i, b)| (0, (n * 200 + i) as i64, b.to_json().into_bytes()))
            .collect();
        let outcome = h.function.handle(&kafka_event(&records)).await;
        assert_eq!(outcome.report.failed, 0, "{:?}", outcome.error);
        assert_eq!(outcome.report.bars, chunk.len());
    }
}

/// Every page of a listing, following `next_page_token`; the pages' sizes too.
async fn every_page(api: &Api, path: &str, list: &str) -> (Vec<Value>, Vec<usize>) {
    let (mut items, mut sizes) = (Vec::new(), Vec::new());
    let mut token: Option<String> = None;
    for _ in 0..1_000 {
        let url = match &token {
            Some(t) => format!("{path}&page_token={t}"),
            None => path.to_owned(),
        };
        let page = api.json(&url).await;
        let got = page[list].as_array().unwrap();
        sizes.push(got.len());
        items.extend(got.iter().cloned());
        match page["next_page_token"].as_str() {
            Some(t) => token = Some(t.to_owned()),
            None => return (items, sizes),
        }
    }
    panic!("{path}: the pages never ended");
}

fn close_to(ours: &Value, talib: &Value) -> bool {
    match (ours.as_f64(), talib.as_f64()) {
        (None, None) => ours.is_null() && talib.is_null(),
        (Some(a), Some(b)) => (a - b).abs() <= 1e-9 * b.abs().max(1.0),
        _ => false,
    }
}

#[tokio::test]
async fn indicators_over_http_are_talib_s_for_every_closed_candle() {
    let h = Harness::start("market-api-talib").await.unwrap();
    let fixtures = fixtures();
    let all = fixtures["series"].as_array().unwrap().clone();
    let symbols: Vec<String> = (0..all.len()).map(|i| format!("TALIB{i}.NS")).collect();
    let fed: Vec<Vec<Bar>> = all
        .iter()
        .zip(&symbols)
        .map(|(series, symbol)| bars(symbol, series))
        .collect();
    futures::future::join_all(fed.iter().map(|b| ingest(&h, b))).await;
    let api = Api::start(&h, ApiSettings::default()).await;

    for (series, symbol) in all.iter().zip(&symbols) {
        let name = series["name"].as_str().unwrap();
        let want = &series["indicators"];
        let bars = series["close"].as_array().unwrap().len();
        // Pages of 37, so that many page boundaries are crossed.
        let (rows, sizes) = every_page(
            &api,
            &format!("/indicators?symbol={symbol}&interval=M1&limit=37"),
            "indicators",
        )
        .await;
        // Every candle but the newest has closed.
        assert_eq!(rows.len(), bars - 1, "{name}: {sizes:?}");
        assert!(sizes.iter().all(|s| *s <= 37), "{sizes:?}");
        for (i, row) in rows.iter().enumerate() {
            let start = Timestamp::from_micros(FIRST_MINUTE + i as i64 * 60_000_000);
            assert_eq!(row["start"], start.to_rfc3339(), "{name} row {i}");
            for (field, talib) in [
                ("sma20", "sma20"),
                ("ema8", "ema8"),
                ("ema12", "ema12"),
                ("ema21", "ema21"),
                ("ema26", "ema26"),
                ("rsi14", "rsi14"),
                ("macd", "macd"),
                ("macd_signal", "macd_signal"),
                ("macd_histogram", "macd_hist"),
                ("atr8", "atr8"),
                ("atr21", "atr21"),
            ] {
                assert!(
                    close_to(&row[field], &want[talib][i]),
                    "{name} bar {i} {field}: API {}, TA-Lib {}",
                    row[field],
                    want[talib][i]
                );
            }
        }
        // Newest first gives the same rows reversed, and the values are the stored ones, bit
        // for bit.
        let (desc, _) = every_page(
            &api,
            &format!("/indicators?symbol={symbol}&interval=M1&limit=100&sort=desc"),
            "indicators",
        )
        .await;
        let mut reversed = desc.clone();
        reversed.reverse();
        assert_eq!(reversed, rows, "{name}");
        let stored = h
            .function
            .candles
            .query(&format!("{symbol}#M1"), None, None)
            .await
            .unwrap();
        for (row, candle) in rows.iter().zip(&stored) {
            let v = candle.values.expect("a closed candle has values");
            assert_eq!(row["ema21"].as_f64(), v.ema21);
            assert_eq!(row["macd_signal"].as_f64(), v.macd.map(|m| m.signal));
            assert_eq!(row["close"].as_f64(), Some(candle.candle.close));
        }
    }
    drop(api);
    h.stop().await;
}

#[tokio::test]
async fn candles_latest_prices_errors_and_conditional_requests() {
    let h = Harness::start("market-api").await.unwrap();
    let fixtures = fixtures();
    let series = &fixtures["series"][0];
    let bars = bars("RELIANCE.NS", series);
    let bars = &bars[..90];
    ingest(&h, bars).await;
    // Ticks of a forex pair over three minutes, in one batch.
    let ticks: Vec<Tick> = (0..30)
        .map(|i| Tick {
            pair: "MRVZAR".into(),
            timestamp: Timestamp::from_micros(FIRST_MINUTE + i * 6_000_000 + 570_000),
            bid: 1.5 + i as f64 / 100.0,
            ask: 1.52 + i as f64 / 100.0,
            spread: 0.02,
        })
        .collect();
    let records: Vec<_> = ticks
        .iter()
        .enumerate()
        .map(|(i, t)| (1, i as i64, t.to_json().into_bytes()))
        .collect();
    let outcome = h.function.handle(&kafka_event(&records)).await;
    assert_eq!(outcome.report.failed, 0, "{:?}", outcome.error);
    let api = Api::start(&h, ApiSettings::default()).await;

    Box::pin(candle_pages(&api, bars)).await;
    Box::pin(latest_prices(&api, bars, &ticks)).await;
    Box::pin(errors(&api)).await;
    Box::pin(conditional_requests(&api)).await;
    Box::pin(pages(&api)).await;
    drop(api);
    Box::pin(market_auth(&h)).await;
    h.stop().await;
}

async fn candle_pages(api: &Api, bars: &[Bar]) {
    // Every candle, oldest first, in pages of 25: the bars as they were, volumes kept.
    let (candles, sizes) = every_page(
        api,
        "/candles?symbol=RELIANCE.NS&interval=M1&limit=25",
        "candles",
    )
    .await;
    assert_eq!(sizes[..3], [25, 25, 25]);
    assert_eq!(candles.len(), bars.len());
    for (c, b) in candles.iter().zip(bars) {
        assert_eq!(c["start"], b.start.to_rfc3339());
        let ohlc = [&c["open"], &c["high"], &c["low"], &c["close"]].map(|v| v.as_f64());
        assert_eq!(ohlc, [b.open, b.high, b.low, b.close].map(Some));
        assert_eq!(c["volume"].as_f64(), Some(b.volume as f64));
    }
    assert_eq!(candles.iter().filter(|c| c["closed"] == true).count(), 89);
    // A range, newest first: the hour's M30 candles and one of the M1s.
    let m30 = api
        .json("/candles?symbol=RELIANCE.NS&interval=M30&sort=desc")
        .await;
    let starts: Vec<&str> = m30["candles"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["start"].as_str().unwrap())
        .collect();
    assert_eq!(
        starts,
        [
            "2024-01-01T01:00:00Z",
            "2024-01-01T00:30:00Z",
            "2024-01-01T00:00:00Z"
        ]
    );
    let first_half_hour: f64 = bars[..30].iter().map(|b| b.volume as f64).sum();
    assert_eq!(m30["candles"][2]["volume"].as_f64(), Some(first_half_hour));
    let ranged = api
        .json(
            "/candles?symbol=RELIANCE.NS&interval=M1&start=2024-01-01%2000:10:00\
             &end=2024-01-01T00:12:00Z",
        )
        .await;
    assert_eq!(ranged["candles"].as_array().unwrap().len(), 3);
    assert_eq!(ranged["next_page_token"], Value::Null);
}

async fn latest_prices(api: &Api, bars: &[Bar], ticks: &[Tick]) {
    // Latest prices: the newest bar (with the previous minute's close), the newest tick.
    let latest = api.json("/latest_price?symbol=RELIANCE.NS").await;
    let last = &bars[bars.len() - 1];
    assert_eq!(latest["source"], "bar");
    assert_eq!(latest["close"].as_f64(), Some(last.close));
    assert_eq!(latest["price"].as_f64(), Some(last.close));
    assert_eq!(latest["bid"], Value::Null);
    assert_eq!(
        latest["previous_close"].as_f64(),
        Some(bars[bars.len() - 2].close)
    );
    assert_eq!(latest["at"], "2024-01-01T01:29:59.999999Z");
    assert!(latest["age_seconds"].as_i64().unwrap() > 86_400);
    let tick = api.json("/latest_price?symbol=MRVZAR").await;
    let newest = &ticks[ticks.len() - 1];
    assert_eq!(tick["source"], "tick");
    assert_eq!(
        (tick["bid"].as_f64(), tick["ask"].as_f64()),
        (Some(newest.bid), Some(newest.ask))
    );
    assert_eq!(tick["mid"].as_f64(), Some(newest.mid()));
    assert_eq!(tick["at"], newest.timestamp.to_rfc3339());
    let listed = api.json("/symbols").await;
    let names: Vec<&str> = listed["symbols"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["symbol"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["MRVZAR", "RELIANCE.NS"]);
    assert_eq!(
        listed["symbols"][1]["intervals"],
        serde_json::json!(["M1", "M30", "H1"])
    );
    let (first, _) = every_page(api, "/symbols?limit=1", "symbols").await;
    assert_eq!(first.len(), 2);
}

async fn errors(api: &Api) {
    // Each bad parameter is named; an unknown symbol is a 404.
    let q = "/candles?symbol=RELIANCE.NS&interval=M1";
    for (path, status, parameter) in [
        ("/candles?interval=M1".to_owned(), 400, "symbol"),
        ("/candles?symbol=RELIANCE.NS".to_owned(), 400, "interval"),
        (format!("{q}5"), 400, "interval"),
        (format!("{q}&limit=0"), 400, "limit"),
        (format!("{q}&limit=1001"), 400, "limit"),
        (format!("{q}&limit=ten"), 400, "limit"),
        (format!("{q}&sort=up"), 400, "sort"),
        (format!("{q}&start=yesterday"), 400, "start"),
        (format!("{q}&end=2024-02-30"), 400, "end"),
        (format!("{q}&start=2024-01-02&end=2024-01-01"), 400, "start"),
        (format!("{q}&page_token=garbage"), 400, "page_token"),
        ("/latest_price?symbol=".to_owned(), 400, "symbol"),
        ("/latest_price?symbol=A%20B".to_owned(), 400, "symbol"),
        ("/latest_price?symbol=NOPE.NS".to_owned(), 404, "symbol"),
        (
            "/candles?symbol=NOPE.NS&interval=H1".to_owned(),
            404,
            "symbol",
        ),
        (
            "/indicators?symbol=NOPE.NS&interval=M1".to_owned(),
            404,
            "symbol",
        ),
        ("/symbols?limit=-1".to_owned(), 400, "limit"),
        ("/assets/nothing-here.js".to_owned(), 404, "path"),
    ] {
        let (got, body) = api.error(&path).await;
        assert_eq!(
            (got, body["parameter"].as_str()),
            (status, Some(parameter)),
            "{path}: {body}"
        );
    }
    // A token of one series does not continue another.
    let page = api.json(&format!("{q}&limit=5")).await;
    let token = page["next_page_token"].as_str().unwrap();
    let (got, body) = api
        .error(&format!(
            "/candles?symbol=RELIANCE.NS&interval=M30&page_token={token}"
        ))
        .await;
    assert_eq!((got, body["parameter"].as_str()), (400, Some("page_token")));
}

async fn conditional_requests(api: &Api) {
    // ETags: the same answer has the same strong tag, and sending it back gets 304.
    let path = format!(
        "{}/candles?symbol=RELIANCE.NS&interval=M1&sort=desc&limit=10",
        api.base
    );
    let first = api.client.get(&path).send().await.unwrap();
    let etag = first.headers()["etag"].to_str().unwrap().to_owned();
    assert!(etag.starts_with('"') && !etag.starts_with("W/"), "{etag}");
    assert_eq!(first.headers()["cache-control"], "public, max-age=1");
    let again = api
        .client
        .get(&path)
        .header("if-none-match", &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), 304);
    assert_eq!(again.headers()["etag"], etag.as_str());
    assert!(again.text().await.unwrap().is_empty());
    let other = api
        .client
        .get(&path)
        .header("if-none-match", "\"something-else\"")
        .send()
        .await
        .unwrap();
    assert_eq!(other.status(), 200);
    // A repeated question within the cache's lifetime is not asked of the store again.
    let timings = api.state.timings.summary();
    assert!(
        timings
            .iter()
            .any(|t| t.route == "/candles" && t.count >= 3),
        "{timings:?}"
    );
}

async fn pages(api: &Api) {
    // The document, the docs and the dashboard, all from the function itself.
    let doc = api.json("/openapi.json").await;
    assert!(
        doc["openapi"].as_str().unwrap().starts_with("3.1"),
        "{}",
        doc["openapi"]
    );
    let paths: BTreeMap<&str, &Value> = doc["paths"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.as_str(), v))
        .collect();
    for route in [
        "/health",
        "/data_usage",
        "/symbols",
        "/latest_price",
        "/candles",
        "/indicators",
        "/openapi.json",
        "/docs",
        "/dashboard",
    ] {
        assert!(
            paths.contains_key(route),
            "{route} missing from the document"
        );
    }
    assert_eq!(
        paths["/data_usage"]["get"]["security"],
        serde_json::json!([{"basic": []}])
    );
    assert_eq!(
        doc["components"]["securitySchemes"]["basic"]["scheme"],
        "basic"
    );
    for page in ["/docs", "/dashboard"] {
        let response = api.get(page).await;
        assert_eq!(response.status(), 200, "{page}");
        assert!(
            response.headers()["content-type"]
                .to_str()
                .unwrap()
                .starts_with("text/html")
        );
        let policy = response.headers()["content-security-policy"]
            .to_str()
            .unwrap();
        assert!(policy.contains("default-src 'self'"), "{policy}");
        let html = response.text().await.unwrap();
        assert!(
            !html.contains("http://") && !html.contains("https://cdn"),
            "{page} loads from elsewhere"
        );
    }
    let script = api.get("/assets/dashboard.js").await;
    assert_eq!(script.status(), 200);
    assert!(
        script.headers()["content-type"]
            .to_str()
            .unwrap()
            .contains("javascript")
    );
}

async fn market_auth(h: &Harness) {
    // With MARKET_DATA_AUTH=basic, market data needs the credentials too.
    let guarded = Api::start(
        h,
        ApiSettings {
            market_auth: true,
            ..ApiSettings::default()
        },
    )
    .await;
    let (status, _) = guarded.error("/latest_price?symbol=MRVZAR").await;
    assert_eq!(status, 401);
    let authorized = guarded
        .client
        .get(format!("{}/latest_price?symbol=MRVZAR", guarded.base))
        .basic_auth(USER.0, Some(USER.1))
        .send()
        .await
        .unwrap();
    assert_eq!(authorized.status(), 200);
    assert_eq!(authorized.headers()["cache-control"], "private, max-age=1");
    drop(guarded);
}
