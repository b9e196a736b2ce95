//! The pipelines end to end under DynamoDB-like latency: process-ticks over the reference forex
//! ticks and aggregate-usage over generated CDR files, each batch handed to the real handler in
//! this process, against dynalite through a proxy that adds a service time to every request and
//! meters the capacity each consumed (`crate::meter`). Beside each, in the same run, the
//! straightforward design: one write per tick, one `ADD` per CDR row, no exactly-once guard.
//!
//! Batches are formed as an event-source mapping forms them from a topic of 12 partitions:
//! records go to a partition by their key (the reference generator's minute key for ticks, the
//! MSISDN for CDR rows), and each batch takes the next records of one partition, partition after
//! partition, so batches arrive out of time order as a consumer of several partitions sees them.

use crate::faults::{FaultProxy, HttpFaults};
use crate::meter::{Meter, Tally, sequential_round_trips, total};
use crate::provision::{Names, dead_letter_queue, process_ticks, provision_ticks};
use crate::stack::{DynamoEmulator, LocalStack, StackOptions, local_sdk_config};
use anyhow::{Context, Result, bail};
use aws_sdk_dynamodb::types::AttributeValue;
use futures::StreamExt;
use std::collections::BTreeMap;
use std::future::Future;
use std::hash::{Hash, Hasher};
use std::time::{Duration, Instant};
use wtc_aws::schema::{TICKS, USAGE, ensure_table};
use wtc_core::SourceEvent;
use wtc_core::cdr::{CdrKind, RowId, UsageFold, UsageTotals, encode_record, split_csv};
use wtc_core::cdr_generator::CdrGenerator;
use wtc_core::event::{KafkaEvent, KafkaRecord, encode_base64};
use wtc_core::simulate::{ForexSimulator, kafka_key};

/// The prices the cost figures use (`infra/prices.json`: date, region and source inside).
const PRICES: &str = include_str!("../../../infra/prices.json");
/// The template, for the functions' memory size.
const TEMPLATE: &str = include_str!("../../../infra/template.yaml");

/// Tables of the straightforward design, beside the real ones.
const NAIVE_TICKS: &str = "wtc-naive-ticks";
const NAIVE_USAGE: &str = "wtc-naive-usage";
/// The API's name in the figures.
const API: &str = "api";

/// What to run.
#[derive(Debug, Clone)]
pub struct PipelineLoad {
    /// Reference forex ticks (seed 42), as the reference generator keys them.
    pub ticks: usize,
    /// Pairs of generated CDR files (a data and a voice file of 1,000 rows each, 50,000 MSISDNs).
    pub cdr_pairs: u64,
    /// Records per batch (the event-source mapping's BatchSize).
    pub batch_size: usize,
    /// Added to every DynamoDB (and other AWS) request by the proxy.
    pub service_time: Duration,
    /// Requests the straightforward design has in flight at once.
    pub naive_concurrency: usize,
    /// API requests sent after the pipelines have filled the tables, one at a time.
    pub api_requests: usize,
    /// API requests per second (requests start on a fixed schedule, as independent clients send them).
    pub api_rate: u32,
}

/// AWS list prices, from `infra/prices.json`.
#[derive(Debug, Clone, serde::Deserialize)]
pub struct Prices {
    pub date: String,
    pub region: String,
    pub source: Vec<String>,
    pub dynamodb_write_request_units_per_million: f64,
    pub dynamodb_read_request_units_per_million: f64,
    pub lambda_arm64_gb_second: f64,
    pub lambda_requests_per_million: f64,
    pub api_gateway_http_requests_per_million: f64,
}

impl Prices {
    pub fn listed() -> Result<Self> {
        serde_json::from_str(PRICES).context("reading infra/prices.json")
    }
}

/// The functions' memory size in the template (`Globals`), in MB.
pub fn template_memory_mb() -> Result<u32> {
    let sizes: Vec<&str> = TEMPLATE
        .lines()
        .filter_map(|l| l.trim_start().strip_prefix("MemorySize:"))
        .map(str::trim)
        .collect();
    match sizes.as_slice() {
        [one] => one
            .parse()
            .with_context(|| format!("the template's MemorySize {one:?} is not a number")),
        _ => bail!(
            "the template sets MemorySize {} times; the bench reads one (in Globals)",
            sizes.len()
        ),
    }
}

/// One design of one function, measured.
#[derive(Debug, Clone)]
pub struct DesignFigures {
    pub function: &'static str,
    pub design: &'static str,
    pub records: u64,
    pub batches: usize,
    pub wall_p50: Duration,
    pub wall_p99: Duration,
    /// Billed duration of every batch (each rounded up to the millisecond, as Lambda bills).
    pub billed: Duration,
    pub round_trips_p50: usize,
    pub round_trips_max: usize,
    pub tables: BTreeMap<String, Tally>,
    /// For the API: each route's handler p99 with the waits for DynamoDB taken out.
    pub handler_p99: Vec<(String, Duration)>,
}

impl DesignFigures {
    fn per_thousand(&self, n: f64) -> f64 {
        n * 1_000.0 / self.records.max(1) as f64
    }

    pub fn all(&self) -> Tally {
        total(self.tables.values())
    }

    /// GB-seconds per 1,000 records at `memory_mb`.
    pub fn gb_seconds_per_thousand(&self, memory_mb: u32) -> f64 {
        self.per_thousand(self.billed.as_secs_f64() * f64::from(memory_mb) / 1024.0)
    }

    /// Dollars per million records: DynamoDB's request units, Lambda's duration and requests.
    pub fn dollars_per_million(&self, prices: &Prices, memory_mb: u32) -> f64 {
        let all = self.all();
        let per_record = |n: f64| n / self.records.max(1) as f64;
        let million = 1e6;
        per_record(all.write_units) * prices.dynamodb_write_request_units_per_million
            + per_record(all.read_units) * prices.dynamodb_read_request_units_per_million
            + per_record(self.billed.as_secs_f64() * f64::from(memory_mb) / 1024.0)
                * million
                * prices.lambda_arm64_gb_second
            + per_record(self.batches as f64) * prices.lambda_requests_per_million
            + if self.function == API {
                prices.api_gateway_http_requests_per_million
            } else {
                0.0
            }
    }
}

/// Starts dynalite (its capacity figures follow DynamoDB's sizing rules; moto's do not), runs
/// every design, and stops it.
pub async fn run(load: &PipelineLoad) -> Result<Vec<DesignFigures>> {
    let run_dir = std::env::temp_dir().join(format!("wtc-bench-pipeline-{}", std::process::id()));
    let mut options = StackOptions::isolated(run_dir);
    options.dynamodb = DynamoEmulator::Dynalite;
    let stack = LocalStack::start(options).await?;
    let result = measure(load, &stack).await;
    stack.stop().await;
    result
}

async fn measure(load: &PipelineLoad, stack: &LocalStack) -> Result<Vec<DesignFigures>> {
    let names = Names::default();
    let direct = stack.sdk_config().await;
    let provisioned = provision_ticks(&stack.kafka_brokers, &direct, &names).await?;
    let dynamo = aws_sdk_dynamodb::Client::new(&direct);
    ensure_table(&dynamo, NAIVE_TICKS, TICKS).await?;
    ensure_table(&dynamo, NAIVE_USAGE, USAGE).await?;
    let proxy = FaultProxy::http(
        &stack.aws_endpoint,
        &stack.dynamodb_endpoint,
        HttpFaults {
            latency: load.service_time,
            meter: true,
            ..HttpFaults::default()
        },
    )
    .await?;
    let sdk = local_sdk_config(&proxy.address, &proxy.address).await;
    let client = aws_sdk_dynamodb::Client::new(&sdk);
    let mut out = Vec::new();

    let ticks: Vec<(String, String)> = ForexSimulator::new(42)
        .take(load.ticks)
        .map(|t| (kafka_key(&t), t.to_json()))
        .collect();
    let tick_batches = batches("tick-data", &ticks, load.batch_size);
    eprintln!(
        "process-ticks: {} ticks in {} batches, {:?} per request",
        ticks.len(),
        tick_batches.len(),
        load.service_time
    );
    let function = process_ticks(&sdk, &names, &provisioned);
    let (function, client_ref) = (&function, &client);
    out.push(
        run_batches(
            ("process-ticks", "exactly once"),
            &tick_batches,
            &proxy.meter,
            None,
            move |event| async move {
                let outcome = function.handle(event).await;
                match outcome.error {
                    None if outcome.report.failed == 0 => Ok(outcome.report.records as u64),
                    _ => bail!("a batch failed: {:?}", outcome.error),
                }
            },
        )
        .await?,
    );
    out.push(
        run_batches(
            ("process-ticks", "one write per tick"),
            &tick_batches,
            &proxy.meter,
            None,
            move |event| naive_ticks(client_ref, event, load.naive_concurrency),
        )
        .await?,
    );

    let mut subscribers = Vec::new();
    for (kind, topic) in [(CdrKind::Data, "cdr-data"), (CdrKind::Voice, "cdr-voice")] {
        let rows = cdr_records(kind, load.cdr_pairs);
        subscribers.extend(rows.iter().map(|(msisdn, _)| msisdn.clone()));
        let batches = batches(topic, &rows, load.batch_size);
        eprintln!(
            "aggregate-usage: {} {} rows in {} batches",
            rows.len(),
            kind.name(),
            batches.len()
        );
        let function = aggregate_usage::AggregateUsage::new(
            wtc_aws::UsageStore::new(client.clone(), names.usage_table.clone()),
            dead_letter_queue(&sdk, &names, &provisioned),
        );
        let function = &function;
        out.push(
            run_batches(
                (function_name(kind), "exactly once"),
                &batches,
                &proxy.meter,
                None,
                move |event| async move {
                    let outcome = function.handle(event).await;
                    match outcome.error {
                        None => Ok(outcome.report.records as u64),
                        Some(e) => bail!("a batch failed: {e:?}"),
                    }
                },
            )
            .await?,
        );
        out.push(
            run_batches(
                (function_name(kind), "one ADD per row"),
                &batches,
                &proxy.meter,
                None,
                move |event| naive_usage(client_ref, event, load.naive_concurrency),
            )
            .await?,
        );
    }
    out.extend(measure_api(load, &sdk, &names, &proxy.meter, &subscribers).await?);
    Ok(out)
}

/// The API over what the pipelines stored: a mix of market and usage requests, one at a time on a
/// fixed schedule, served by the real router on loopback (as API Gateway hands each request to a
/// function); with its response cache, and without it (every request read from DynamoDB).
async fn measure_api(
    load: &PipelineLoad,
    sdk: &aws_config::SdkConfig,
    names: &Names,
    meter: &Meter,
    subscribers: &[String],
) -> Result<Vec<DesignFigures>> {
    let credentials = api::Credentials {
        username: "bench".into(),
        password: "bench".into(),
    };
    let paths = api_paths(subscribers, load.api_requests);
    let every = Duration::from_secs_f64(1.0 / f64::from(load.api_rate.max(1)));
    eprintln!(
        "api: {} requests at {} a second, with and without the response cache",
        paths.len(),
        load.api_rate
    );
    let http = reqwest::Client::new();
    let mut out = Vec::new();
    for (design, cache_ttl) in [
        ("1 s response cache", api::DEFAULT_CACHE_TTL),
        ("no cache", Duration::ZERO),
    ] {
        let settings = api::ApiSettings {
            cache_ttl,
            ..api::ApiSettings::default()
        };
        let state = std::sync::Arc::new(crate::provision::api_state(
            sdk,
            names,
            credentials.clone(),
            settings,
        ));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let base = format!("http://{}", listener.local_addr()?);
        let app = api::router(state.clone());
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        let (http, base, credentials) = (&http, &base, &credentials);
        let figures = run_batches(
            (API, design),
            &paths,
            meter,
            Some(every),
            |path| async move {
                let response = http
                    .get(format!("{base}{path}"))
                    .basic_auth(&credentials.username, Some(&credentials.password))
                    .send()
                    .await
                    .with_context(|| format!("GET {path}"))?;
                let status = response.status();
                let body = response.text().await.unwrap_or_default();
                if !status.is_success() {
                    bail!("GET {path}: {status}: {body}");
                }
                Ok(1)
            },
        )
        .await;
        server.abort();
        let mut figures = figures?;
        figures.handler_p99 = state
            .timings
            .summary()
            .into_iter()
            .map(|t| (t.route, t.p99))
            .collect();
        out.push(figures);
    }
    Ok(out)
}

/// `n` API requests, round robin over the market endpoints of both pairs and `/data_usage` of
/// subscribers the CDR files name (with costs, which read the hours' rates).
fn api_paths(subscribers: &[String], n: usize) -> Vec<String> {
    let mut market = Vec::new();
    for pair in ["MRVZAR", "WAKMRV"] {
        market.push(format!("/latest_price?symbol={pair}"));
        for interval in ["M1", "M30", "H1"] {
            market.push(format!(
                "/candles?symbol={pair}&interval={interval}&sort=desc&limit=100"
            ));
        }
        market.push(format!(
            "/indicators?symbol={pair}&interval=M1&sort=desc&limit=100"
        ));
    }
    let mut people = subscribers.iter().cycle();
    (0..n)
        .map(|i| match (i % (market.len() + 2), people.next()) {
            (k, _) if k < market.len() => market[k].clone(),
            (_, Some(msisdn)) => format!(
                "/data_usage?msisdn={msisdn}&start_time=20240101000000&end_time=20240102235959&include=split,cost"
            ),
            (k, None) => market[k % market.len()].clone(),
        })
        .collect()
}

fn function_name(kind: CdrKind) -> &'static str {
    match kind {
        CdrKind::Data => "aggregate-usage (data)",
        CdrKind::Voice => "aggregate-usage (voice)",
    }
}

/// Every batch (or request) through `handle`, timed, with the proxy's tallies of what it sent;
/// `handle` says how many records its item held. With `every`, items start on that schedule.
async fn run_batches<'a, T, F, Fut>(
    (function, design): (&'static str, &'static str),
    items: &'a [T],
    meter: &Meter,
    every: Option<Duration>,
    handle: F,
) -> Result<DesignFigures>
where
    F: Fn(&'a T) -> Fut,
    Fut: Future<Output = Result<u64>>,
{
    meter.take_tables();
    let (mut walls, mut trips) = (Vec::new(), Vec::new());
    let mut billed = Duration::ZERO;
    let mut records = 0u64;
    let mut schedule = every.map(|every| {
        let mut schedule = tokio::time::interval(every);
        schedule.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        schedule
    });
    for (n, item) in items.iter().enumerate() {
        if let Some(schedule) = &mut schedule {
            schedule.tick().await;
        }
        meter.take_calls();
        let started = Instant::now();
        records += handle(item)
            .await
            .with_context(|| format!("{function} ({design}), batch {n}"))?;
        let wall = started.elapsed();
        billed += Duration::from_millis(wall.as_micros().div_ceil(1_000) as u64);
        walls.push(wall);
        trips.push(sequential_round_trips(&meter.take_calls()));
    }
    walls.sort_unstable();
    trips.sort_unstable();
    let pick = |v: &[Duration], q: f64| {
        v.get(((v.len() as f64 - 1.0) * q).round() as usize)
            .copied()
            .unwrap_or_default()
    };
    Ok(DesignFigures {
        function,
        design,
        records,
        batches: items.len(),
        wall_p50: pick(&walls, 0.5),
        wall_p99: pick(&walls, 0.99),
        billed,
        round_trips_p50: trips.get(trips.len() / 2).copied().unwrap_or(0),
        round_trips_max: trips.last().copied().unwrap_or(0),
        tables: meter.take_tables(),
        handler_p99: Vec::new(),
    })
}

/// Events of `batch_size` records as a mapping reads them from a topic of 12 partitions (see the
/// module's documentation); `records` are (key, value).
pub fn batches(topic: &str, records: &[(String, String)], batch_size: usize) -> Vec<SourceEvent> {
    const PARTITIONS: usize = 12;
    let mut partitions: Vec<Vec<&(String, String)>> = vec![Vec::new(); PARTITIONS];
    for record in records {
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        record.0.hash(&mut hasher);
        partitions[(hasher.finish() % PARTITIONS as u64) as usize].push(record);
    }
    let mut cursors = [0usize; PARTITIONS];
    let mut out = Vec::new();
    let batch_size = batch_size.max(1);
    while cursors.iter().zip(&partitions).any(|(&at, p)| at < p.len()) {
        for (partition, held) in partitions.iter().enumerate() {
            let at = cursors[partition];
            let taken = &held[at.min(held.len())..(at + batch_size).min(held.len())];
            if taken.is_empty() {
                continue;
            }
            cursors[partition] = at + taken.len();
            let kafka = taken
                .iter()
                .enumerate()
                .map(|(i, (key, value))| KafkaRecord {
                    topic: topic.to_owned(),
                    partition: partition as i32,
                    offset: (at + i) as i64,
                    timestamp: 0,
                    timestamp_type: "CREATE_TIME".into(),
                    key: Some(encode_base64(key.as_bytes())),
                    value: Some(encode_base64(value.as_bytes())),
                    headers: vec![],
                });
            out.push(SourceEvent::Kafka(KafkaEvent::self_managed(
                "127.0.0.1:19092",
                kafka,
            )));
        }
    }
    out
}

/// The records stream-cdr-files publishes for `pairs` generated pairs of files, one kind's,
/// keyed by MSISDN.
fn cdr_records(kind: CdrKind, pairs: u64) -> Vec<(String, String)> {
    let mut generator = CdrGenerator::new(42, wtc_core::cdr_generator::REFERENCE_MSISDNS);
    let mut out = Vec::new();
    for _ in 0..pairs {
        for (name, text) in generator.next_pair() {
            if !name.starts_with(&format!("cdr_{}_", kind.name())) {
                continue;
            }
            let mut fields = Vec::new();
            for (i, line) in text.lines().enumerate().skip(1) {
                if split_csv(line.as_bytes(), &mut fields).is_err() {
                    continue;
                }
                let id = RowId {
                    source: format!("upload/{name}"),
                    etag: format!("{name}-etag"),
                    line: i as u64 + 1,
                };
                let msisdn = fields
                    .first()
                    .map(|f| String::from_utf8_lossy(f).into_owned())
                    .unwrap_or_default();
                out.push((msisdn, encode_record(kind, &id, &fields)));
            }
        }
    }
    out
}

/// The straightforward tick writer: each tick decoded and put as its own item (the raw item's
/// attributes, keyed by pair and time).
async fn naive_ticks(
    client: &aws_sdk_dynamodb::Client,
    event: &SourceEvent,
    concurrency: usize,
) -> Result<u64> {
    let mut buf = Vec::new();
    let mut ticks = Vec::new();
    for record in event.records() {
        let payload = record.payload(&mut buf).map_err(anyhow::Error::msg)?;
        ticks.push(wtc_core::Tick::decode(payload).map_err(anyhow::Error::msg)?);
    }
    let n = ticks.len() as u64;
    let puts = ticks.iter().map(|tick| {
        client
            .put_item()
            .table_name(NAIVE_TICKS)
            .item("pk", AttributeValue::S(tick.pair.clone()))
            .item("ts", AttributeValue::S(tick.timestamp.to_wtc_string()))
            .item("pair_name", AttributeValue::S(tick.pair.clone()))
            .item("bid_price", AttributeValue::N(tick.bid.to_string()))
            .item("ask_price", AttributeValue::N(tick.ask.to_string()))
            .item("spread", AttributeValue::N(tick.spread.to_string()))
            .send()
    });
    send_all(puts, concurrency).await.map(|()| n)
}

/// The straightforward usage writer: each row added to its hourly item on its own, unguarded
/// (a redelivered row is counted again).
async fn naive_usage(
    client: &aws_sdk_dynamodb::Client,
    event: &SourceEvent,
    concurrency: usize,
) -> Result<u64> {
    let records = event.records();
    let mut fold = UsageFold::with_capacity(records.len());
    fold.fold_records(&records, |_, _| {});
    let n = |v: u128| AttributeValue::N(v.to_string());
    let mut updates = Vec::new();
    for (item, _, usage) in &fold.rows {
        let (key, _) = &fold.items[*item as usize];
        let mut row = UsageTotals::default();
        row.add(usage)?;
        updates.push(
            client
                .update_item()
                .table_name(NAIVE_USAGE)
                .key("msisdn", AttributeValue::S(key.msisdn.to_string()))
                .key(
                    "bucket",
                    AttributeValue::S(wtc_aws::usage::bucket_key(key.hour, key.usage_type)),
                )
                .update_expression(
                    "ADD up_bytes :up, down_bytes :down, #total :total, seconds :sec, records :n",
                )
                .expression_attribute_names("#total", "total")
                .expression_attribute_values(":up", n(row.up))
                .expression_attribute_values(":down", n(row.down))
                .expression_attribute_values(":total", n(row.total(key.usage_type)?))
                .expression_attribute_values(":sec", n(row.seconds))
                .expression_attribute_values(":n", n(row.records))
                .send(),
        );
    }
    send_all(updates, concurrency)
        .await
        .map(|()| records.len() as u64)
}

/// Sends every request, `concurrency` at a time; the first failure is the error.
async fn send_all<T, E>(
    requests: impl IntoIterator<Item = impl Future<Output = Result<T, E>>>,
    concurrency: usize,
) -> Result<()>
where
    E: std::error::Error + Send + Sync + 'static,
{
    let results: Vec<_> = futures::stream::iter(requests)
        .buffer_unordered(concurrency.max(1))
        .collect()
        .await;
    for r in results {
        r.map_err(|e| {
            anyhow::anyhow!(aws_sdk_dynamodb::error::DisplayErrorContext(&e).to_string())
        })?;
    }
    Ok(())
}

/// The figures as the README's tables.
pub fn table(
    load: &PipelineLoad,
    figures: &[DesignFigures],
    prices: &Prices,
    memory_mb: u32,
) -> String {
    let ms = |d: Duration| format!("{:.1} ms", d.as_secs_f64() * 1e3);
    let mut out = format!(
        "Pipelines under {} ms per request (dynalite behind a latency proxy), batches of {}, \
         {} MB functions, prices of {} ({}):\n\n\
         | function | design | records | wall per batch p50 | p99 | round trips in a row p50 (max) \
         | requests /1k | write units /1k | read units /1k | GB-s /1k | $ per million records |\n\
         | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |\n",
        load.service_time.as_millis(),
        load.batch_size,
        memory_mb,
        prices.date,
        prices.region,
    );
    for f in figures {
        let all = f.all();
        out.push_str(&format!(
            "| {} | {} | {} | {} | {} | {} ({}) | {:.0} | {:.0} | {:.0} | {:.3} | {:.2} |\n",
            f.function,
            f.design,
            f.records,
            ms(f.wall_p50),
            ms(f.wall_p99),
            f.round_trips_p50,
            f.round_trips_max,
            f.per_thousand((all.reads + all.writes) as f64),
            f.per_thousand(all.write_units),
            f.per_thousand(all.read_units),
            f.gb_seconds_per_thousand(memory_mb),
            f.dollars_per_million(prices, memory_mb),
        ));
    }
    out.push_str("\nBy table, per 1,000 records (requests; write units; read units; writes refused by their condition):\n\n");
    for f in figures {
        let parts: Vec<String> = f
            .tables
            .iter()
            .map(|(table, t)| {
                format!(
                    "{table} {:.0} req, {:.0} WU, {:.0} RU, {:.1} refused",
                    f.per_thousand((t.reads + t.writes) as f64),
                    f.per_thousand(t.write_units),
                    f.per_thousand(t.read_units),
                    f.per_thousand(t.refused as f64),
                )
            })
            .collect();
        out.push_str(&format!(
            "- {} ({}): {}\n",
            f.function,
            f.design,
            parts.join("; ")
        ));
    }
    let handlers: Vec<String> = figures
        .iter()
        .filter(|f| !f.handler_p99.is_empty())
        .map(|f| {
            let routes: Vec<String> = f
                .handler_p99
                .iter()
                .map(|(route, p99)| format!("{route} {:.2} ms", p99.as_secs_f64() * 1e3))
                .collect();
            format!("- {} ({}): {}\n", f.function, f.design, routes.join(", "))
        })
        .collect();
    if !handlers.is_empty() {
        out.push_str(
            "\nAPI handler p99 by route, the waits for DynamoDB taken out (`api::HandlerTimings`):\n\n",
        );
        out.extend(handlers);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prices_and_memory_are_read_from_their_files() {
        let prices = Prices::listed().unwrap();
        assert!(prices.dynamodb_write_request_units_per_million > 0.0);
        assert!(!prices.source.is_empty());
        assert!(template_memory_mb().unwrap() >= 128);
    }

    #[test]
    fn batches_take_every_record_once_a_partition_at_a_time() {
        let records: Vec<(String, String)> = (0..1_000)
            .map(|i| (format!("key-{}", i % 37), format!("v{i}")))
            .collect();
        let events = batches("t", &records, 50);
        let mut seen = Vec::new();
        for event in &events {
            let SourceEvent::Kafka(kafka) = event else {
                panic!("a Kafka event");
            };
            let recs = event.records();
            assert!(!recs.is_empty() && recs.len() <= 50);
            let partitions: std::collections::BTreeSet<_> = kafka
                .records
                .values()
                .flatten()
                .map(|r| r.partition)
                .collect();
            assert_eq!(partitions.len(), 1);
            for r in kafka.records.values().flatten() {
                seen.push(r.value.clone().unwrap());
            }
        }
        let mut want: Vec<String> = records
            .iter()
            .map(|(_, v)| encode_base64(v.as_bytes()))
            .collect();
        seen.sort();
        want.sort();
        assert_eq!(seen, want);
    }

    #[test]
    fn cost_adds_request_units_duration_and_invocations() {
        let prices = Prices {
            date: String::new(),
            region: String::new(),
            source: vec![],
            dynamodb_write_request_units_per_million: 1.0,
            dynamodb_read_request_units_per_million: 0.5,
            lambda_arm64_gb_second: 0.000_01,
            lambda_requests_per_million: 0.2,
            api_gateway_http_requests_per_million: 1.0,
        };
        let mut tables = BTreeMap::new();
        tables.insert(
            "t".to_owned(),
            Tally {
                write_units: 2_000.0,
                read_units: 1_000.0,
                ..Tally::default()
            },
        );
        let f = DesignFigures {
            function: "f",
            design: "d",
            records: 1_000,
            batches: 2,
            wall_p50: Duration::ZERO,
            wall_p99: Duration::ZERO,
            billed: Duration::from_secs(4),
            round_trips_p50: 0,
            round_trips_max: 0,
            tables,
            handler_p99: Vec::new(),
        };
        // Per record: 2 WU ($2/M), 1 RU ($0.5/M), 4 s * 1 GB / 1,000 = 0.004 GB-s (4,000 GB-s
        // per million: $0.04), 0.002 invocations (2,000 per million: $0.0004).
        let dollars = f.dollars_per_million(&prices, 1024);
        assert!(
            (dollars - (2.0 + 0.5 + 0.04 + 0.0004)).abs() < 1e-9,
            "{dollars}"
        );
        assert!((f.gb_seconds_per_thousand(1024) - 4.0).abs() < 1e-9);
    }
}
