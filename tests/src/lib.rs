//! A harness for end-to-end tests: a real broker (tansu) and a real AWS endpoint (moto) on free
//! loopback ports, the tick pipeline's resources, and readers of what ended up stored.

pub mod cdr;
pub mod yahoo;

use anyhow::{Context, Result, bail};
use aws_config::SdkConfig;
use aws_sdk_dynamodb::types::AttributeValue;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use wtc_aws::candles::{StoredCandle, series_key};
use wtc_core::candles::{Candle, CandleFold, Interval};
use wtc_core::event::{KafkaEvent, KafkaRecord, SELF_MANAGED_KAFKA_EVENT_SOURCE, encode_base64};
use wtc_core::indicators::{IndicatorSet, IndicatorValues, Ohlc, Price};
use wtc_core::time::Timestamp;
use wtc_core::{DeadLetter, SourceEvent, Tick};
use wtc_local::kinesis::{KinesisPoller, KinesisPollerOptions};
use wtc_local::poller::{Invoker, KafkaPoller, PollerOptions};
use wtc_local::progress::Progress;
use wtc_local::provision::{Names, process_ticks, provision_ticks};
use wtc_local::stack::{LocalStack, StackOptions};

/// The API served by a test; stopped when dropped.
pub struct ServedApi {
    pub base: String,
    pub state: Arc<api::ApiState>,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for ServedApi {
    fn drop(&mut self) {
        self.server.abort();
    }
}

pub struct Harness {
    pub stack: LocalStack,
    pub names: Names,
    pub sdk: SdkConfig,
    pub dynamo: aws_sdk_dynamodb::Client,
    pub sqs: aws_sdk_sqs::Client,
    pub queue_url: String,
    pub function: Arc<process_ticks::ProcessTicks>,
}

impl Harness {
    /// Starts a broker and an AWS emulator of the test's own, and provisions the tick pipeline.
    pub async fn start(test: &str) -> Result<Self> {
        Self::start_with(test, |_| {}).await
    }

    /// The same, with the stack's options changed first (ports, a proxy in front of tansu).
    pub async fn start_with(test: &str, change: impl FnOnce(&mut StackOptions)) -> Result<Self> {
        let run_dir = std::env::temp_dir().join(format!("wtc-test-{}-{test}", std::process::id()));
        let mut options = StackOptions::isolated(run_dir);
        change(&mut options);
        let stack = LocalStack::start(options)
            .await
            .context("starting the local stack (tansu and moto; `./local/test` installs them)")?;
        let names = Names::default();
        let sdk = stack.sdk_config().await;
        let provisioned = provision_ticks(&stack.kafka_brokers, &sdk, &names).await?;
        let dynamo = aws_sdk_dynamodb::Client::new(&sdk);
        let sqs = aws_sdk_sqs::Client::new(&sdk);
        let function = Arc::new(process_ticks(&sdk, &names, &provisioned));
        Ok(Self {
            stack,
            names,
            sdk,
            dynamo,
            sqs,
            queue_url: provisioned.dead_letter_queue_url,
            function,
        })
    }

    pub async fn stop(self) {
        self.stack.stop().await;
    }

    /// The API on this harness's tables with these credentials, served on a free port.
    pub async fn serve_api(&self, user: (&str, &str), settings: api::ApiSettings) -> ServedApi {
        let state = Arc::new(wtc_local::provision::api_state(
            &self.sdk,
            &self.names,
            api::Credentials {
                username: user.0.into(),
                password: user.1.into(),
            },
            settings,
        ));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("a free port");
        let base = format!("http://{}", listener.local_addr().expect("its address"));
        let app = api::router(state.clone());
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        ServedApi {
            base,
            state,
            server,
        }
    }

    /// Every candle in the candles table, with its indicators.
    pub async fn stored_candles(&self) -> Result<CandleView> {
        let mut out = CandleView::new();
        let mut start = None;
        loop {
            let page = self
                .dynamo
                .scan()
                .table_name(&self.names.candles_table)
                .consistent_read(true)
                .set_exclusive_start_key(start)
                .send()
                .await
                .context("scanning the candles table")?;
            for item in page.items() {
                // The latest prices share the table, in a partition of their own.
                if item
                    .get("series")
                    .and_then(|s| s.as_s().ok())
                    .map(String::as_str)
                    == Some(wtc_aws::latest::LATEST_PARTITION)
                {
                    continue;
                }
                let (series, c) = StoredCandle::from_item(item)
                    .with_context(|| format!("a malformed candle item: {item:?}"))?;
                out.insert((series, c.candle.start), (c.candle, c.values));
            }
            match page.last_evaluated_key() {
                Some(key) if !key.is_empty() => start = Some(key.clone()),
                _ => return Ok(out),
            }
        }
    }

    /// Consumes the tick topic with the event-source poller feeding this harness's function until
    /// `expected` records are processed; fails after `within`.
    pub async fn poll_until_processed(
        &self,
        group: &str,
        expected: u64,
        within: Duration,
    ) -> Result<Arc<Progress>> {
        self.poll_with(
            Invoker::InProcess(self.function.clone()),
            group,
            expected,
            within,
        )
        .await
    }

    /// The same, with any invoker; records of batches that fail every retry count as processed.
    pub async fn poll_with(
        &self,
        invoker: Invoker,
        group: &str,
        expected: u64,
        within: Duration,
    ) -> Result<Arc<Progress>> {
        let poller = KafkaPoller::new(
            PollerOptions {
                brokers: self.stack.kafka_brokers.clone(),
                topic: self.names.tick_topic.clone(),
                group_id: group.to_owned(),
                batch_size: 250,
                batching_window: Duration::from_millis(200),
                maximum_retry_attempts: 2,
            },
            invoker,
            self.function.dead_letters.clone(),
        )?;
        run_until(
            move |p, s| async move { poller.run(&p, &s).await },
            expected,
            within,
        )
        .await
    }

    /// Consumes the tick stream with the Kinesis poller until `expected` records are processed
    /// (dead-lettered ones included); fails after `within`.
    pub async fn poll_kinesis_until(
        &self,
        invoker: Invoker,
        expected: u64,
        within: Duration,
    ) -> Result<Arc<Progress>> {
        let poller = KinesisPoller::new(
            aws_sdk_kinesis::Client::new(&self.sdk),
            KinesisPollerOptions {
                stream: self.names.tick_stream.clone(),
                batch_size: 200,
                maximum_retry_attempts: 2,
            },
            invoker,
            self.function.dead_letters.clone(),
        );
        run_until(
            move |p, s| async move { poller.run(&p, &s).await },
            expected,
            within,
        )
        .await
    }

    /// Every raw tick item: (pair_name, ts) -> (bid, ask, spread) as stored number text.
    pub async fn stored_ticks(
        &self,
    ) -> Result<BTreeMap<(String, String), (String, String, String)>> {
        let mut out = BTreeMap::new();
        for item in self.scan(&self.names.ticks_table).await? {
            out.insert(
                (s(&item, "pair_name")?, s(&item, "ts")?),
                (
                    n(&item, "bid_price")?,
                    n(&item, "ask_price")?,
                    n(&item, "spread")?,
                ),
            );
        }
        Ok(out)
    }

    /// Every minute and hour sum: (pair, bucket) -> (mid_sum_nanos, ticks). Ledger items (`L#`),
    /// the sums' bookkeeping, are left out.
    pub async fn stored_sums(&self) -> Result<BTreeMap<(String, String), (i64, u64)>> {
        let mut out = BTreeMap::new();
        for item in self.scan(&self.names.rates_table).await? {
            if s(&item, "bucket")?.starts_with("L#") {
                continue;
            }
            // Minute sums are partitioned by pair and hour (`MRVZAR#2024-01-01 13`): key by pair.
            let partition = s(&item, "pair")?;
            let pair = partition.split('#').next().unwrap_or_default().to_owned();
            out.insert(
                (pair, s(&item, "bucket")?),
                (
                    n(&item, "mid_sum_nanos")?.parse()?,
                    n(&item, "ticks")?.parse()?,
                ),
            );
        }
        Ok(out)
    }

    async fn scan(&self, table: &str) -> Result<Vec<HashMap<String, AttributeValue>>> {
        let mut items = Vec::new();
        let mut start = None;
        loop {
            let page = self
                .dynamo
                .scan()
                .table_name(table)
                .set_exclusive_start_key(start)
                .send()
                .await
                .with_context(|| format!("scanning {table}"))?;
            items.extend(page.items().iter().cloned());
            match page.last_evaluated_key() {
                Some(k) if !k.is_empty() => start = Some(k.clone()),
                _ => return Ok(items),
            }
        }
    }

    /// Drains the dead-letter queue.
    pub async fn dead_letters(&self) -> Result<Vec<DeadLetter>> {
        let mut letters = Vec::new();
        loop {
            let out = self
                .sqs
                .receive_message()
                .queue_url(&self.queue_url)
                .max_number_of_messages(10)
                .send()
                .await?;
            if out.messages().is_empty() {
                return Ok(letters);
            }
            for m in out.messages() {
                letters.push(serde_json::from_str(m.body().unwrap_or_default())?);
                if let Some(handle) = m.receipt_handle() {
                    self.sqs
                        .delete_message()
                        .queue_url(&self.queue_url)
                        .receipt_handle(handle)
                        .send()
                        .await?;
                }
            }
        }
    }
}

/// Runs a poller until `expected` records are processed (dead-lettered ones included) or `within`
/// passes, then stops it.
async fn run_until<F>(
    poll: impl FnOnce(Arc<Progress>, Arc<AtomicBool>) -> F,
    expected: u64,
    within: Duration,
) -> Result<Arc<Progress>>
where
    F: std::future::Future<Output = Result<()>> + Send + 'static,
{
    let progress = Arc::new(Progress::default());
    let stop = Arc::new(AtomicBool::new(false));
    let task = tokio::spawn(poll(progress.clone(), stop.clone()));
    let started = Instant::now();
    while progress.snapshot().processed < expected
        && !task.is_finished()
        && started.elapsed() < within
    {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    stop.store(true, Ordering::Relaxed);
    task.await.context("poller panicked")??;
    let processed = progress.snapshot().processed;
    if processed < expected {
        bail!("only {processed} of {expected} records processed within {within:?}");
    }
    Ok(progress)
}

fn s(item: &HashMap<String, AttributeValue>, name: &str) -> Result<String> {
    match item.get(name) {
        Some(AttributeValue::S(v)) => Ok(v.clone()),
        other => bail!("attribute {name} is not a string: {other:?}"),
    }
}

fn n(item: &HashMap<String, AttributeValue>, name: &str) -> Result<String> {
    match item.get(name) {
        Some(AttributeValue::N(v)) => Ok(v.clone()),
        other => bail!("attribute {name} is not a number: {other:?}"),
    }
}

/// A decimal text such as `1.7168` in units of 1e-9, by string arithmetic (no floats), so the
/// expected sums do not share the product's float conversion.
pub fn decimal_nanos(text: &str) -> i64 {
    let (int, frac) = text.split_once('.').unwrap_or((text, ""));
    let mut frac = frac.to_owned();
    assert!(frac.len() <= 9, "{text} has more than 9 decimals");
    while frac.len() < 9 {
        frac.push('0');
    }
    int.parse::<i64>().expect("integer part") * 1_000_000_000
        + frac.parse::<i64>().expect("fraction")
}

/// The raw items and sums one clean pass over the distinct ticks gives, computed from the ticks'
/// JSON text.
pub struct Expected {
    pub ticks: BTreeMap<(String, String), (String, String, String)>,
    pub sums: BTreeMap<(String, String), (i64, u64)>,
}

/// Candles by (series, start), with their indicators (`None` while a candle is open).
pub type CandleView = BTreeMap<(String, Timestamp), (Candle, Option<IndicatorValues>)>;

/// What one clean pass gives: the candles of the distinct ticks, and the indicators of every
/// candle but each series' last (still open), computed in order from fresh states.
pub fn expected_candles(ticks: &[Tick], price: Price) -> CandleView {
    let mut seen = std::collections::HashSet::new();
    let mut fold = CandleFold::default();
    for t in ticks {
        if seen.insert((t.pair.clone(), t.timestamp)) {
            fold.add_tick(t);
        }
    }
    with_indicators(fold.into_sorted(), price)
}

/// Candles sorted by (symbol, interval, start) with the indicators one pass gives them.
pub fn with_indicators(
    candles: Vec<((String, Interval, Timestamp), Candle)>,
    price: Price,
) -> CandleView {
    let mut series: BTreeMap<String, Vec<Candle>> = BTreeMap::new();
    for ((symbol, interval, _), c) in candles {
        series
            .entry(series_key(&symbol, interval))
            .or_default()
            .push(c);
    }
    let mut out = CandleView::new();
    for (key, list) in series {
        let mut set = IndicatorSet::new(price);
        let n = list.len();
        for (i, c) in list.into_iter().enumerate() {
            let values = (i + 1 < n).then(|| {
                set.update(&Ohlc {
                    open: c.open,
                    high: c.high,
                    low: c.low,
                    close: c.close,
                })
            });
            out.insert((key.clone(), c.start), (c, values));
        }
    }
    out
}

pub fn expected(ticks: &[Tick]) -> Expected {
    let mut raw = BTreeMap::new();
    for t in ticks {
        let v: serde_json::Value = serde_json::from_str(&t.to_json()).expect("tick JSON");
        let text = |f: &str| v[f].to_string();
        raw.entry((
            t.pair.clone(),
            v["timestamp"].as_str().unwrap_or_default().to_owned(),
        ))
        .or_insert((text("bid_price"), text("ask_price"), text("spread")));
    }
    let mut sums: BTreeMap<(String, String), (i64, u64)> = BTreeMap::new();
    for ((pair, ts), (bid, ask, _)) in &raw {
        let mid_nanos = (decimal_nanos(bid) + decimal_nanos(ask)) / 2;
        for bucket in [format!("M#{}", &ts[..16]), format!("H#{}", &ts[..13])] {
            let e = sums.entry((pair.clone(), bucket)).or_default();
            e.0 += mid_nanos;
            e.1 += 1;
        }
    }
    Expected { ticks: raw, sums }
}

/// A self-managed Kafka event of these (partition, offset, value) records on `tick-data`.
pub fn kafka_event(records: &[(i32, i64, Vec<u8>)]) -> SourceEvent {
    let mut grouped: BTreeMap<String, Vec<KafkaRecord>> = BTreeMap::new();
    for (partition, offset, value) in records {
        grouped
            .entry(format!("tick-data-{partition}"))
            .or_default()
            .push(KafkaRecord {
                topic: "tick-data".into(),
                partition: *partition,
                offset: *offset,
                timestamp: 1_704_067_200_000,
                timestamp_type: "CREATE_TIME".into(),
                key: None,
                value: Some(encode_base64(value)),
                headers: vec![],
            });
    }
    SourceEvent::Kafka(KafkaEvent {
        event_source: SELF_MANAGED_KAFKA_EVENT_SOURCE.into(),
        event_source_arn: None,
        bootstrap_servers: Some("127.0.0.1:19092".into()),
        records: grouped,
    })
}

/// Ticks as records of one partition from `first_offset` on.
pub fn records_of(ticks: &[Tick], partition: i32, first_offset: i64) -> Vec<(i32, i64, Vec<u8>)> {
    ticks
        .iter()
        .enumerate()
        .map(|(i, t)| (partition, first_offset + i as i64, t.to_json().into_bytes()))
        .collect()
}
