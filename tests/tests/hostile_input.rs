//! Hostile input and a broken deployment on the real local stack (tansu, moto): poison records
//! between valid ticks are dead-lettered whole and the partition goes on; CDR values that would
//! wrap a 64-bit total and a multi-megabyte line are rejected alone; a batch dead-lettered while a
//! table was missing, replayed after the table is back (twice over), lands exactly once.

use rdkafka::producer::{FutureProducer, FutureRecord};
use std::collections::BTreeMap;
use std::time::Duration;
use wtc_aws::schema::{TICKS, ensure_table};
use wtc_core::DeadLetter;
use wtc_core::simulate::ForexSimulator;
use wtc_core::{SourceEvent, Tick};
use wtc_local::poller::dead_letter_batch;
use wtc_local::progress::Progress;
use wtc_local::provision::Provisioned;
use wtc_local::replay;
use wtc_tests::{Harness, expected, kafka_event, records_of};

const WITHIN: Duration = Duration::from_secs(180);

fn ticks(seed: u64, n: usize) -> Vec<Tick> {
    ForexSimulator::new(seed).take(n).collect()
}

/// Every letter of the queue, claim tickets exchanged for their whole letters.
async fn whole_letters(h: &Harness) -> Vec<DeadLetter> {
    let mut out = Vec::new();
    for letter in h.dead_letters().await.unwrap() {
        out.push(h.function.dead_letters.redeem(letter).await.unwrap());
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn poison_records_between_valid_ticks_are_dead_lettered_whole_and_the_partition_goes_on() {
    let h = Harness::start("poison").await.unwrap();
    let valid = ticks(31, 600);
    // A record of about 300 KB: a tick whose ask price has 300,000 digits.
    let huge = format!(
        r#"{{"timestamp": "2024-01-01 00:00:00.000", "pair_name": "EURUSD", "bid_price": 1.1, "ask_price": {}, "spread": 0.1}}"#,
        "9".repeat(300_000)
    )
    .into_bytes();
    let not_utf8: Vec<u8> = b"{\"timestamp\": \"2024-01-01 00:00:01.000\", \"pair_name\": \"\xff\xfe\", \"bid_price\": 1, \"ask_price\": 2, \"spread\": 1}".to_vec();
    let out_of_range = br#"{"timestamp": "2024-01-01 00:00:02.000", "pair_name": "EURUSD", "bid_price": 1e999, "ask_price": 99999999999999999999999, "spread": -1}"#.to_vec();
    let far_future = br#"{"timestamp": "99999-01-01 00:00:00", "pair_name": "EURUSD", "bid_price": 1.1, "ask_price": 1.2, "spread": 0.1}"#.to_vec();
    let poison = [huge, not_utf8, out_of_range, far_future];

    // One partition: 150 valid ticks, a poison record, 150 more, and so on.
    let producer: FutureProducer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", &h.stack.kafka_brokers)
        .set("message.max.bytes", "2000000")
        .create()
        .unwrap();
    let mut sent = 0u64;
    for (chunk, bad) in valid.chunks(150).zip(&poison) {
        for t in chunk {
            let json = t.to_json();
            let record = FutureRecord::<(), _>::to(&h.names.tick_topic)
                .partition(0)
                .payload(json.as_bytes());
            producer
                .send(record, Duration::from_secs(10))
                .await
                .unwrap();
            sent += 1;
        }
        let record = FutureRecord::<(), _>::to(&h.names.tick_topic)
            .partition(0)
            .payload(bad.as_slice());
        producer
            .send(record, Duration::from_secs(10))
            .await
            .unwrap();
        sent += 1;
    }
    assert_eq!(sent, 604);

    let progress = h
        .poll_until_processed("e2e-poison", sent, WITHIN)
        .await
        .unwrap();
    let s = progress.snapshot();
    assert_eq!((s.stored, s.rejected, s.failed), (600, 4, 0), "{s:?}");
    let want = expected(&valid);
    assert_eq!(h.stored_ticks().await.unwrap(), want.ticks);
    assert_eq!(h.stored_sums().await.unwrap(), want.sums);

    // Each poison record is in the queue whole (the large one through its claim check), with a
    // bounded reason.
    let letters = whole_letters(&h).await;
    assert_eq!(letters.len(), 4, "{letters:?}");
    let mut got: Vec<Vec<u8>> = letters.iter().map(|l| l.payload().unwrap()).collect();
    let mut want_payloads = poison.to_vec();
    got.sort();
    want_payloads.sort();
    assert!(
        got == want_payloads,
        "the letters' payloads differ from what was sent"
    );
    for l in &letters {
        assert_eq!(l.function, process_ticks::FUNCTION);
        assert!(l.source.starts_with("tick-data/0@"), "{}", l.source);
        assert!(
            !l.reason.is_empty() && l.reason.len() <= 1024,
            "{}",
            l.reason
        );
    }
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_letter_replayed_after_its_fix_lands_exactly_once() {
    let h = Harness::start("replay").await.unwrap();
    let ticks = ticks(32, 500);
    let event: SourceEvent = kafka_event(&records_of(&ticks, 5, 40));

    // The deployment is broken: the raw-tick table is missing. The batch fails at once, naming
    // the table, and the poller's last resort dead-letters it, twice over (as a crash between
    // dead-lettering and committing would).
    h.dynamo
        .delete_table()
        .table_name(&h.names.ticks_table)
        .send()
        .await
        .unwrap();
    let failed = h.function.handle(&event).await;
    let error = failed.response().unwrap_err();
    assert_eq!(error.error_type(), "DeploymentError", "{error}");
    assert!(error.to_string().contains(&h.names.ticks_table), "{error}");
    for _ in 0..2 {
        dead_letter_batch(
            &h.function.dead_letters,
            process_ticks::FUNCTION,
            &event,
            "batch failed after 3 attempts",
            &Progress::default(),
        )
        .await
        .unwrap();
    }

    // Replayed before the fix: every letter stays (or comes back) in the queue.
    let provisioned = Provisioned {
        dead_letter_queue_url: h.queue_url.clone(),
    };
    let functions =
        replay::functions(&h.stack.kafka_brokers, &h.sdk, &h.names, &provisioned).unwrap();
    let too_soon = replay::replay(&h.function.dead_letters, &functions, 10_000).await;
    assert!(too_soon.is_err(), "{too_soon:?}");

    // Fixed: the table is back. Replay lands every tick once, though each letter was there twice.
    ensure_table(&h.dynamo, &h.names.ticks_table, TICKS)
        .await
        .unwrap();
    let report = replay::replay(&h.function.dead_letters, &functions, 10_000)
        .await
        .unwrap();
    assert_eq!(report.replayed, 1_000, "{}", replay::summary(&report));
    assert_eq!(
        report.by_function,
        BTreeMap::from([(process_ticks::FUNCTION, 1_000)])
    );
    let want = expected(&ticks);
    assert_eq!(h.stored_ticks().await.unwrap(), want.ticks);
    assert_eq!(h.stored_sums().await.unwrap(), want.sums);
    let again = replay::replay(&h.function.dead_letters, &functions, 10_000)
        .await
        .unwrap();
    assert_eq!(again.replayed, 0);
    assert!(h.dead_letters().await.unwrap().is_empty());
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cdr_values_that_would_wrap_and_a_multi_megabyte_line_are_rejected_alone() {
    use stream_cdr_files::StreamCdrFiles;
    use wtc_aws::publish::Publisher;
    use wtc_core::cdr::MAX_ROW_BYTES;
    use wtc_core::cdr_generator::CdrGenerator;
    use wtc_tests::cdr::{consume_cdr, drop_bucket, file_totals, stored_totals};

    let h = Harness::start("hostile-cdr").await.unwrap();
    for topic in ["cdr-data", "cdr-voice"] {
        wtc_local::provision::create_topic(&h.stack.kafka_brokers, topic, 3)
            .await
            .unwrap();
    }
    let s3 = drop_bucket(&h, "cdr-drop").await;
    let [(name, data), _] = CdrGenerator::new(27_418_001, 300).next_pair();
    let mut lines: Vec<String> = data.lines().map(str::to_owned).collect();
    let with_bytes = |line: &str, up: &str, down: &str| {
        let mut f: Vec<&str> = line.split(',').collect();
        f[2] = up;
        f[3] = down;
        f.join(",")
    };
    // Two rows of one MSISDN and hour whose bytes together pass 2^64 (the sum that once wrapped
    // to 2,996), past the documented maximum: both rejected.
    let template = lines[1].clone();
    let big = "10000000000000001498";
    lines.insert(2, with_bytes(&template, big, "0"));
    lines.insert(3, with_bytes(&template, big, "1498"));
    // Three rows at the maximum: counted, exactly.
    let max = MAX_ROW_BYTES.to_string();
    for at in [4, 5, 6] {
        lines.insert(at, with_bytes(&template, &max, &max));
    }
    // A 3 MB line without a break, between good rows: one rejected row.
    lines.insert(8, "7".repeat(3_000_000));
    let body = lines.join("\n") + "\n";
    let good: String = lines
        .iter()
        .enumerate()
        .filter(|(i, _)| ![2, 3, 8].contains(i))
        .map(|(_, l)| format!("{l}\n"))
        .collect();

    s3.put_object()
        .bucket("cdr-drop")
        .key(format!("upload/{name}"))
        .body(body.into_bytes().into())
        .send()
        .await
        .unwrap();
    let function = StreamCdrFiles::new(
        s3,
        Publisher::Kafka(
            wtc_local::generator::tick_producer(&h.stack.kafka_brokers, "cdr-data").unwrap(),
        ),
        h.function.dead_letters.clone(),
    );
    let report = function
        .stream_file("cdr-drop", &format!("upload/{name}"))
        .await
        .unwrap();
    assert_eq!(
        (report.rows, report.published, report.rejected),
        (1_006, 1_003, 3),
        "{report:?}"
    );

    let values = consume_cdr(&h.stack.kafka_brokers, "hostile-cdr", 1_003).await;
    assert_eq!(values.len(), 1_003);
    let aggregate = aggregate_usage::AggregateUsage::new(
        wtc_aws::UsageStore::new(h.dynamo.clone(), h.names.usage_table.clone()),
        h.function.dead_letters.clone(),
    );
    for batch in values.chunks(500) {
        let r = aggregate.handle(&kafka_event(batch)).await.report;
        assert_eq!((r.rejected, r.failed), (0, 0), "{r:?}");
    }
    let want = file_totals(&[&good]);
    let got = stored_totals(&aggregate.store, want.keys().map(|k| k.0.as_str())).await;
    assert_eq!(got, want);
    // The template row's hour holds the three maximal rows: past what f64 holds exactly.
    assert!(got.values().any(|&t| t >= 6 * u128::from(MAX_ROW_BYTES)));

    let letters = h.dead_letters().await.unwrap();
    assert_eq!(letters.len(), 3, "{letters:?}");
    let at = |line: usize| {
        letters
            .iter()
            .find(|l| l.source.ends_with(&format!("{name}#{line}")))
            .unwrap_or_else(|| panic!("no letter for line {line}: {letters:?}"))
    };
    for line in [3, 4] {
        assert!(at(line).reason.contains("`up_bytes`"), "{:?}", at(line));
    }
    let long = at(9);
    assert_eq!(long.truncated, Some(true));
    assert_eq!(long.value_bytes, Some(3_000_000));
    assert!(
        long.reason.contains("3000000 bytes long"),
        "{}",
        long.reason
    );
    h.stop().await;
}
