//! Fault injection on the real local stack: a proxy in front of moto adds latency, answers with
//! throttling errors and 500s, cuts connections after passing requests on, and takes the emulator
//! away for seconds; a proxy in front of tansu cuts connections and takes the broker away. The
//! poller and process-ticks keep going, and the tables end equal to one clean pass over the
//! distinct valid ticks, with every poison record in the dead-letter queue; aggregate-usage, fed
//! every CDR row twice through the same faults, ends with every row counted once.

use aggregate_usage::AggregateUsage;
use rdkafka::producer::{FutureProducer, FutureRecord};
use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use wtc_aws::UsageStore;
use wtc_core::simulate::ForexSimulator;
use wtc_local::faults::{FaultProxy, HttpFaults};
use wtc_local::poller::{Invoker, KafkaPoller, PollerOptions};
use wtc_local::progress::Progress;
use wtc_local::provision::{Provisioned, create_topic, dead_letter_queue, process_ticks};
use wtc_local::services::free_port;
use wtc_local::stack::local_sdk_config;
use wtc_tests::{Harness, cdr, expected};

/// A stack of the test's own with a fault proxy in front of tansu (tansu advertises the proxy, so
/// every connection after the first goes through it) and one in front of moto; the SDK settings
/// returned reach AWS through the proxy.
async fn faulty_stack(test: &str) -> (Harness, FaultProxy, FaultProxy, aws_config::SdkConfig) {
    let (broker_port, proxy_port) = (free_port().unwrap(), free_port().unwrap());
    let broker = FaultProxy::tcp(
        &format!("127.0.0.1:{broker_port}"),
        proxy_port,
        Duration::from_secs(8),
    )
    .await
    .unwrap();
    let h = Harness::start_with(test, |o| {
        o.kafka_port = broker_port;
        o.kafka_advertised_port = Some(proxy_port);
    })
    .await
    .unwrap();
    let emulator = FaultProxy::http(
        &h.stack.aws_endpoint,
        &h.stack.dynamodb_endpoint,
        HttpFaults {
            latency: Duration::from_millis(2),
            throttle_every: 11,
            error_every: 17,
            reset_every: 23,
            meter: false,
        },
    )
    .await
    .unwrap();
    let faulty_sdk = local_sdk_config(&emulator.address, &emulator.address).await;
    (h, broker, emulator, faulty_sdk)
}

/// A producer that reaches the broker through its proxy.
fn producer(broker: &FaultProxy) -> FutureProducer {
    rdkafka::ClientConfig::new()
        .set("bootstrap.servers", &broker.address)
        .set("enable.idempotence", "false")
        .create()
        .unwrap()
}

/// A poller of `topic` that reads through the broker's proxy, retrying other failures twice.
fn poller(
    broker: &FaultProxy,
    topic: &str,
    group: &str,
    batch_size: usize,
    invoker: Invoker,
    dead_letters: &wtc_aws::DeadLetterQueue,
) -> KafkaPoller {
    KafkaPoller::new(
        PollerOptions {
            brokers: broker.address.clone(),
            topic: topic.to_owned(),
            group_id: group.to_owned(),
            batch_size,
            batching_window: Duration::from_millis(200),
            maximum_retry_attempts: 2,
        },
        invoker,
        dead_letters.clone(),
    )
    .unwrap()
}

/// Runs the poller while the emulator is taken away for 3 s once a third of `expected` records
/// is processed and the broker at two thirds, until `expected` are processed (or 300 s pass).
async fn run_through_outages(
    poller: KafkaPoller,
    emulator: &FaultProxy,
    broker: &FaultProxy,
    expected: u64,
) -> Arc<Progress> {
    let progress = Arc::new(Progress::default());
    let stop = Arc::new(AtomicBool::new(false));
    let task = {
        let (p, s) = (progress.clone(), stop.clone());
        tokio::spawn(async move { poller.run(&p, &s).await })
    };
    let started = Instant::now();
    let wait_for = |n: u64| {
        let progress = progress.clone();
        async move {
            while progress.snapshot().processed < n && started.elapsed() < Duration::from_secs(300)
            {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    };
    wait_for(expected / 3).await;
    emulator.take_away();
    tokio::time::sleep(Duration::from_secs(3)).await;
    emulator.bring_back();
    wait_for(expected * 2 / 3).await;
    broker.take_away();
    tokio::time::sleep(Duration::from_secs(3)).await;
    broker.bring_back();
    wait_for(expected).await;
    stop.store(true, Ordering::Relaxed);
    task.await.unwrap().unwrap();
    let s = progress.snapshot();
    println!(
        "faults injected: emulator: {}; broker: {}; batches retried {}",
        emulator.counts.summary(),
        broker.counts.summary(),
        s.retried
    );
    assert!(s.processed >= expected, "{s:?}");
    assert_eq!(s.failed, 0, "no valid batch may be dead-lettered: {s:?}");
    for counted in [
        &emulator.counts.throttled,
        &emulator.counts.errors,
        &emulator.counts.resets,
        &emulator.counts.refused,
    ] {
        assert!(
            counted.load(Ordering::Relaxed) > 0,
            "{}",
            emulator.counts.summary()
        );
    }
    progress
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_pipeline_survives_throttling_errors_resets_and_outages_and_ends_exact() {
    let (h, broker, emulator, faulty_sdk) = faulty_stack("faults").await;
    let provisioned = Provisioned {
        dead_letter_queue_url: h.queue_url.clone(),
    };
    let function = Arc::new(process_ticks(&faulty_sdk, &h.names, &provisioned));

    let valid: Vec<_> = ForexSimulator::new(41).take(3_000).collect();
    let poison: Vec<Vec<u8>> = vec![
        b"{\"timestamp\": \"2024-01-01 00:00:01.000\", \"pair_name\": \"\xff\", \"bid_price\": 1, \"ask_price\": 2, \"spread\": 1}".to_vec(),
        br#"{"timestamp": "2024-01-01 00:00:02.000", "pair_name": "EURUSD", "bid_price": -1e999, "ask_price": 1, "spread": 0}"#.to_vec(),
        b"not json at all".to_vec(),
    ];
    let producer = producer(&broker);
    let mut sent = 0u64;
    for (i, t) in valid.iter().enumerate() {
        let json = t.to_json();
        let partition = (i % 12) as i32;
        producer
            .send(
                FutureRecord::<(), _>::to(&h.names.tick_topic)
                    .partition(partition)
                    .payload(json.as_bytes()),
                Duration::from_secs(30),
            )
            .await
            .unwrap();
        sent += 1;
        if i % 1_000 == 500 {
            producer
                .send(
                    FutureRecord::<(), _>::to(&h.names.tick_topic)
                        .partition(partition)
                        .payload(poison[i / 1_000].as_slice()),
                    Duration::from_secs(30),
                )
                .await
                .unwrap();
            sent += 1;
        }
    }
    assert_eq!(sent, 3_003);

    let poller = poller(
        &broker,
        &h.names.tick_topic,
        "e2e-faults",
        250,
        Invoker::InProcess(function.clone()),
        &function.dead_letters,
    );
    run_through_outages(poller, &emulator, &broker, sent).await;

    // Read back without the proxy: exactly one clean pass over the valid ticks.
    let want = expected(&valid);
    assert_eq!(h.stored_ticks().await.unwrap(), want.ticks);
    assert_eq!(h.stored_sums().await.unwrap(), want.sums);
    let letters = h.dead_letters().await.unwrap();
    let payloads: BTreeSet<Vec<u8>> = letters.iter().filter_map(|l| l.payload()).collect();
    assert_eq!(payloads, poison.iter().cloned().collect::<BTreeSet<_>>());
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn usage_survives_throttling_errors_resets_and_outages_and_ends_exact() {
    let (h, broker, emulator, faulty_sdk) = faulty_stack("faults-usage").await;
    create_topic(&h.stack.kafka_brokers, "cdr-data", 3)
        .await
        .unwrap();
    let provisioned = Provisioned {
        dead_letter_queue_url: h.queue_url.clone(),
    };
    let function = Arc::new(AggregateUsage::new(
        UsageStore::new(
            aws_sdk_dynamodb::Client::new(&faulty_sdk),
            h.names.usage_table.clone(),
        ),
        dead_letter_queue(&faulty_sdk, &h.names, &provisioned),
    ));

    // Every row twice (a file processed again publishes its rows again), keyed by MSISDN as
    // stream-cdr-files keys them, so that one MSISDN's rows share a partition.
    let records = cdr::records();
    let producer = producer(&broker);
    let mut sent = 0u64;
    for record in records.iter().chain(&records) {
        let msisdn = record.split(',').nth(4).unwrap();
        producer
            .send(
                FutureRecord::to("cdr-data")
                    .key(msisdn)
                    .payload(record.as_bytes()),
                Duration::from_secs(30),
            )
            .await
            .unwrap();
        sent += 1;
    }

    let poller = poller(
        &broker,
        "cdr-data",
        "e2e-faults-usage",
        100,
        Invoker::Usage(function.clone()),
        &function.dead_letters,
    );
    run_through_outages(poller, &emulator, &broker, sent).await;

    // Read back without the proxy: every row counted once, whatever was retried or delivered twice.
    let store = UsageStore::new(h.dynamo.clone(), h.names.usage_table.clone());
    assert_eq!(
        cdr::stored_usage(&store, &records).await,
        cdr::expected(&records)
    );
    assert!(h.dead_letters().await.unwrap().is_empty());
    h.stop().await;
}
