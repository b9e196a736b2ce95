//! The API under load: market data ingested through process-ticks into the local emulator, the
//! API served in this process, and `oha` (a second process on loopback) sending requests at a
//! fixed rate. Reports what oha saw end to end and what the handlers took inside, store waits
//! excluded (the in-process histogram of `api::HandlerTimings`).

use crate::provision::{Names, process_ticks, provision_ticks};
use crate::stack::{LocalStack, StackOptions};
use crate::tools::ensure_oha;
use anyhow::{Context, Result, bail};
use std::sync::Arc;
use std::time::Duration;
use wtc_core::event::{KafkaEvent, KafkaRecord, encode_base64};
use wtc_core::quotes::SimulatedMarket;
use wtc_core::simulate::ForexSimulator;
use wtc_core::time::Timestamp;
use wtc_core::{SourceEvent, Tick};

/// What to send, how fast, for how long.
#[derive(Debug, Clone)]
pub struct ApiLoad {
    /// Requests per second to each endpoint.
    pub rate_per_endpoint: u32,
    pub duration: Duration,
    /// Forex ticks ingested first (the candles the requests read).
    pub ticks: usize,
}

/// One endpoint's figures.
#[derive(Debug, Clone)]
pub struct EndpointFigures {
    pub path: String,
    pub requests: u64,
    pub errors: u64,
    /// Status code -> count, as oha saw them.
    pub statuses: Vec<(String, u64)>,
    pub end_to_end_p50: Duration,
    pub end_to_end_p99: Duration,
    pub handler_p50: Duration,
    pub handler_p99: Duration,
    pub handler_max: Duration,
}

/// Ingests, serves, loads, and measures.
pub async fn run(load: &ApiLoad) -> Result<Vec<EndpointFigures>> {
    let oha = ensure_oha()?;
    let run_dir = std::env::temp_dir().join(format!("wtc-bench-api-{}", std::process::id()));
    let stack = LocalStack::start(StackOptions::isolated(run_dir)).await?;
    let result = measure(load, &stack, &oha).await;
    stack.stop().await;
    result
}

async fn measure(
    load: &ApiLoad,
    stack: &LocalStack,
    oha: &std::path::Path,
) -> Result<Vec<EndpointFigures>> {
    let names = Names::default();
    let sdk = stack.sdk_config().await;
    let provisioned = provision_ticks(&stack.kafka_brokers, &sdk, &names).await?;
    let function = process_ticks(&sdk, &names, &provisioned);
    eprintln!(
        "ingesting {} forex ticks and an hour of bars of TCS.NS",
        load.ticks
    );
    let ticks: Vec<Tick> = ForexSimulator::new(42).take(load.ticks).collect();
    let market = SimulatedMarket::new(42);
    let bars: Vec<String> = (0..60)
        .map(|m| {
            market
                .bar(
                    "TCS.NS",
                    Timestamp::from_micros(1_704_080_700_000_000 + m * 60_000_000),
                )
                .to_json()
        })
        .collect();
    let values: Vec<String> = ticks.iter().map(Tick::to_json).chain(bars).collect();
    for (n, chunk) in values.chunks(500).enumerate() {
        let outcome = function.handle(&event(n, chunk)).await;
        if outcome.report.failed > 0 {
            bail!("ingesting failed: {:?}", outcome.error);
        }
    }

    let state = Arc::new(crate::provision::api_state(
        &sdk,
        &names,
        api::Credentials {
            username: "bench".into(),
            password: "bench".into(),
        },
        api::ApiSettings::default(),
    ));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let base = format!("http://{}", listener.local_addr()?);
    let app = api::router(state.clone());
    let server = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    let paths = [
        "/latest_price?symbol=MRVZAR".to_owned(),
        "/candles?symbol=MRVZAR&interval=M1&sort=desc&limit=100".to_owned(),
    ];
    // Warm: the first request of each builds the connection pool and the cache.
    for path in &paths {
        reqwest::get(format!("{base}{path}"))
            .await?
            .error_for_status()?;
    }
    state.timings.reset();
    eprintln!(
        "loading {} at {} requests per second each for {:?} (oha)",
        paths.join(" and "),
        load.rate_per_endpoint,
        load.duration
    );
    let runs: Vec<_> = paths
        .iter()
        .map(|path| {
            let mut cmd = tokio::process::Command::new(oha);
            cmd.arg(format!("{base}{path}"))
                .args(["--no-tui", "--output-format", "json"])
                // A fixed number of requests at a fixed rate: none is cut off by a deadline.
                .args(["-q", &load.rate_per_endpoint.to_string()])
                .args([
                    "-n",
                    &(u64::from(load.rate_per_endpoint) * load.duration.as_secs()).to_string(),
                ])
                .args(["-c", "8"])
                .kill_on_drop(true);
            cmd.output()
        })
        .collect();
    let outputs = futures::future::join_all(runs).await;
    server.abort();
    let timings = state.timings.summary();
    let mut figures = Vec::new();
    for (path, output) in paths.iter().zip(outputs) {
        let output = output.context("running oha")?;
        if !output.status.success() {
            bail!(
                "oha failed for {path}: {}",
                String::from_utf8_lossy(&output.stderr)
            );
        }
        let report: serde_json::Value = serde_json::from_slice(&output.stdout)
            .with_context(|| format!("reading oha's report for {path}"))?;
        let route = path.split('?').next().unwrap_or_default();
        let handler = timings
            .iter()
            .find(|t| t.route == route)
            .with_context(|| format!("no handler times for {route}"))?;
        figures.push(figures_of(path, &report, handler)?);
    }
    Ok(figures)
}

/// A Kafka event of one partition's records, as the event-source mapping builds it.
fn event(n: usize, values: &[String]) -> SourceEvent {
    let partition = (n % 12) as i32;
    let records = values.iter().enumerate().map(|(i, v)| KafkaRecord {
        topic: "tick-data".into(),
        partition,
        offset: (n * 500 + i) as i64,
        timestamp: 0,
        timestamp_type: "CREATE_TIME".into(),
        key: None,
        value: Some(encode_base64(v.as_bytes())),
        headers: vec![],
    });
    SourceEvent::Kafka(KafkaEvent::self_managed("127.0.0.1:19092", records))
}

fn figures_of(
    path: &str,
    report: &serde_json::Value,
    handler: &api::http::RouteTimes,
) -> Result<EndpointFigures> {
    let seconds = |v: &serde_json::Value| {
        v.as_f64()
            .map(Duration::from_secs_f64)
            .with_context(|| format!("oha's report lacks a latency: {report}"))
    };
    let percentiles = &report["latencyPercentiles"];
    let statuses: Vec<(String, u64)> = report["statusCodeDistribution"]
        .as_object()
        .map(|m| {
            m.iter()
                .map(|(k, v)| (k.clone(), v.as_u64().unwrap_or(0)))
                .collect()
        })
        .unwrap_or_default();
    let requests: u64 = statuses.iter().map(|(_, n)| n).sum();
    let failed_statuses: u64 = statuses
        .iter()
        .filter(|(code, _)| !code.starts_with('2'))
        .map(|(_, n)| n)
        .sum();
    let transport_errors: u64 = report["errorDistribution"]
        .as_object()
        .map(|m| m.values().filter_map(serde_json::Value::as_u64).sum())
        .unwrap_or(0);
    Ok(EndpointFigures {
        path: path.to_owned(),
        requests,
        errors: failed_statuses + transport_errors,
        statuses,
        end_to_end_p50: seconds(&percentiles["p50"])?,
        end_to_end_p99: seconds(&percentiles["p99"])?,
        handler_p50: handler.p50,
        handler_p99: handler.p99,
        handler_max: handler.max,
    })
}

/// The figures as a table.
pub fn table(load: &ApiLoad, figures: &[EndpointFigures]) -> String {
    let ms = |d: Duration| format!("{:.2} ms", d.as_secs_f64() * 1e3);
    let mut out = format!(
        "API under load: {} requests/s per endpoint for {} s, oha on loopback, cache TTL {} ms\n\
         | endpoint | requests | errors | end to end p50 | end to end p99 | handler p50 | handler p99 | handler max |\n\
         | --- | --- | --- | --- | --- | --- | --- | --- |\n",
        load.rate_per_endpoint,
        load.duration.as_secs(),
        api::DEFAULT_CACHE_TTL.as_millis()
    );
    for f in figures {
        out.push_str(&format!(
            "| `{}` | {} | {} | {} | {} | {} | {} | {} |\n",
            f.path,
            f.requests,
            f.errors,
            ms(f.end_to_end_p50),
            ms(f.end_to_end_p99),
            ms(f.handler_p50),
            ms(f.handler_p99),
            ms(f.handler_max),
        ));
    }
    out
}
