//! The tick pipeline end to end on the real local stack: rdkafka producer -> tansu -> poller ->
//! process-ticks -> moto's DynamoDB and SQS.

use process_ticks::ProcessTicks;
use std::sync::Arc;
use std::time::Duration;
use wtc_aws::TickStore;
use wtc_core::simulate::ForexSimulator;
use wtc_core::{SourceEvent, Tick};
use wtc_local::generator::{produce_ticks, tick_producer};
use wtc_local::kinesis::put_ticks;
use wtc_local::poller::Invoker;
use wtc_local::progress::Progress;
use wtc_tests::{Harness, expected, kafka_event, records_of};

const WITHIN: Duration = Duration::from_secs(180);

fn ticks(seed: u64, n: usize) -> Vec<Tick> {
    ForexSimulator::new(seed).take(n).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn produced_ticks_reach_the_table_with_exact_values() {
    let h = Harness::start("produced").await.unwrap();
    let ticks = ticks(11, 3_000);
    let producer = tick_producer(&h.stack.kafka_brokers, &h.names.tick_topic).unwrap();
    let sent = produce_ticks(&producer, ticks.clone().into_iter(), &Progress::default())
        .await
        .unwrap();
    assert_eq!(sent, 3_000);

    let progress = h
        .poll_until_processed("e2e-produced", 3_000, WITHIN)
        .await
        .unwrap();
    let s = progress.snapshot();
    assert_eq!(
        (s.stored, s.duplicates, s.rejected, s.failed),
        (3_000, 0, 0, 0)
    );

    let want = expected(&ticks);
    assert_eq!(h.stored_ticks().await.unwrap(), want.ticks);
    assert_eq!(h.stored_sums().await.unwrap(), want.sums);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redelivered_batch_does_not_double_count() {
    let h = Harness::start("redelivered").await.unwrap();
    let ticks = ticks(12, 800);
    let event = kafka_event(&records_of(&ticks, 3, 100));
    let first = h.function.handle(&event).await.report;
    assert_eq!((first.stored, first.duplicates), (800, 0));
    let again = h.function.handle(&event).await.report;
    assert_eq!((again.stored, again.duplicates), (0, 800));

    let want = expected(&ticks);
    assert_eq!(h.stored_ticks().await.unwrap(), want.ticks);
    assert_eq!(h.stored_sums().await.unwrap(), want.sums);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rebatched_retry_leaves_sums_exact() {
    let h = Harness::start("rebatched").await.unwrap();
    let ticks = ticks(13, 1_200);
    let records = records_of(&ticks, 5, 0);
    // A first try with one set of boundaries, then a retry that cuts the same records otherwise
    // and overlaps what was already stored.
    for range in [0..300, 300..700, 200..500, 450..1_200, 0..1_200] {
        h.function.handle(&kafka_event(&records[range])).await;
    }
    let want = expected(&ticks);
    assert_eq!(h.stored_ticks().await.unwrap(), want.ticks);
    assert_eq!(h.stored_sums().await.unwrap(), want.sums);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resent_tick_is_stored_once() {
    let h = Harness::start("resent").await.unwrap();
    let ticks = ticks(14, 400);
    // The producer resends the last 50 ticks after a restart: same ticks, new offsets.
    let mut sent = ticks.clone();
    sent.extend_from_slice(&ticks[350..]);
    let producer = tick_producer(&h.stack.kafka_brokers, &h.names.tick_topic).unwrap();
    produce_ticks(&producer, sent.into_iter(), &Progress::default())
        .await
        .unwrap();
    let progress = h
        .poll_until_processed("e2e-resent", 450, WITHIN)
        .await
        .unwrap();
    let s = progress.snapshot();
    assert_eq!((s.processed, s.stored, s.duplicates), (450, 400, 50));

    let want = expected(&ticks);
    assert_eq!(h.stored_ticks().await.unwrap(), want.ticks);
    assert_eq!(h.stored_sums().await.unwrap(), want.sums);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_between_writes_leaves_sums_exact() {
    let h = Harness::start("crash").await.unwrap();
    let ticks = ticks(15, 900);
    let sources: Vec<String> = (0..ticks.len())
        .map(|i| format!("tick-data/0@{i}"))
        .collect();
    let store = &h.function.store;
    let all: Vec<usize> = (0..ticks.len()).collect();

    // Deliveries that died at each point of `write`, on different parts of the batch:
    // after the raw items only,
    assert!(store.put_raw(&ticks, &sources, &all).await.is_empty());
    // after the minutes' ledgers and sums, before their hours,
    let (_, hours, failed, _) = store.refresh_minutes(&ticks, &all[200..500]).await;
    assert!(failed.is_empty() && !hours.is_empty());
    // and after the hours of a smaller part, so stored hours are behind their minutes.
    let (_, hours, _, _) = store.refresh_minutes(&ticks, &all[..100]).await;
    assert!(store.refresh_hours(hours).await.is_empty());
    // The retry delivers the whole batch again.
    let report = h
        .function
        .handle(&kafka_event(&records_of(&ticks, 0, 0)))
        .await
        .report;
    assert_eq!(
        (report.failed, report.stored, report.duplicates),
        (0, 500, 400)
    );

    let want = expected(&ticks);
    assert_eq!(h.stored_ticks().await.unwrap(), want.ticks);
    assert_eq!(h.stored_sums().await.unwrap(), want.sums);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_overlapping_batches_leave_sums_exact() {
    let h = Harness::start("concurrent").await.unwrap();
    let ticks = ticks(20, 1_000);
    let records = records_of(&ticks, 1, 0);
    // As parallel invocations (or a retry racing a slow first try) would: same pairs, same hours.
    let events: Vec<_> = [0..400, 200..700, 500..1_000, 0..1_000, 100..900, 300..600]
        .into_iter()
        .map(|r| kafka_event(&records[r]))
        .collect();
    let reports = futures::future::join_all(events.iter().map(|e| h.function.handle(e))).await;
    assert!(reports.iter().all(|r| r.report.failed == 0));

    let want = expected(&ticks);
    assert_eq!(h.stored_ticks().await.unwrap(), want.ticks);
    assert_eq!(h.stored_sums().await.unwrap(), want.sums);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tick_resent_with_other_prices_counts_once_whatever_the_order() {
    let h = Harness::start("conflict").await.unwrap();
    let renamed = |ticks: &[Tick], prefix: &str| -> Vec<Tick> {
        ticks
            .iter()
            .cloned()
            .map(|mut t| {
                t.pair = format!("{prefix}{}", t.pair);
                t
            })
            .collect()
    };
    let ticks = ticks(21, 10);
    let mut cheaper = ticks[4].clone();
    cheaper.bid -= 0.25;
    cheaper.ask -= 0.25;
    // The same two versions of tick 4, delivered in opposite orders, kept apart by pair name.
    let (a, b) = (renamed(&ticks, "A"), renamed(&ticks, "B"));
    for batch in [a.clone(), renamed(&[cheaper.clone()], "A")] {
        h.function
            .handle(&kafka_event(&records_of(&batch, 0, 0)))
            .await;
    }
    for batch in [renamed(&[cheaper.clone()], "B"), b] {
        h.function
            .handle(&kafka_event(&records_of(&batch, 0, 0)))
            .await;
    }
    let sums = h.stored_sums().await.unwrap();
    let of = |prefix: &str| -> std::collections::BTreeMap<(String, String), (i64, u64)> {
        sums.iter()
            .filter(|((p, _), _)| p.starts_with(prefix))
            .map(|((p, bucket), v)| ((p[1..].to_owned(), bucket.clone()), *v))
            .collect()
    };
    assert_eq!(
        of("A"),
        of("B"),
        "the sums depend on the order of the two versions"
    );
    // Counted once, at the lower of its two mids.
    let mut once = ticks.clone();
    once[4] = cheaper;
    assert_eq!(of("A"), expected(&once).sums);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_records_go_to_the_dead_letter_queue_and_the_rest_is_stored() {
    let h = Harness::start("malformed").await.unwrap();
    let ticks = ticks(16, 200);
    let mut records = records_of(&ticks, 2, 0);
    let bad_price = ticks[10].to_json().replace(
        &format!("\"ask_price\": {}", ticks[10].ask),
        "\"ask_price\": 0.5",
    );
    records[10] = (2, 10, bad_price.into_bytes());
    records.insert(
        50,
        (
            2,
            10_001,
            b"{\"timestamp\": \"2024-01-01 00:00:01\"".to_vec(),
        ),
    );
    let report = h.function.handle(&kafka_event(&records)).await.report;
    assert_eq!(
        (report.records, report.stored, report.rejected),
        (201, 199, 2)
    );

    let mut letters = h.dead_letters().await.unwrap();
    letters.sort_by(|a, b| a.source.cmp(&b.source));
    assert_eq!(letters.len(), 2);
    assert_eq!(letters[0].source, "tick-data/2@10");
    assert_eq!(letters[0].function, "process-ticks");
    assert_eq!(
        letters[0].reason,
        format!("ask_price 0.5 is below bid_price {}", ticks[10].bid)
    );
    assert_eq!(letters[1].source, "tick-data/2@10001");
    assert_eq!(
        letters[1].reason,
        "not a JSON object: EOF while parsing an object at line 1 column 35"
    );
    assert_eq!(
        letters[1].value_text.as_deref(),
        Some("{\"timestamp\": \"2024-01-01 00:00:01\"")
    );

    // The tick whose record was malformed is the only one missing.
    let mut stored_ticks = ticks.clone();
    stored_ticks.remove(10);
    let want = expected(&stored_ticks);
    assert_eq!(h.stored_ticks().await.unwrap(), want.ticks);
    assert_eq!(h.stored_sums().await.unwrap(), want.sums);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kinesis_records_reach_the_table_with_exact_values() {
    let h = Harness::start("kinesis").await.unwrap();
    let ticks = ticks(17, 1_000);
    let kinesis = aws_sdk_kinesis::Client::new(&h.sdk);
    put_ticks(&kinesis, &h.names.tick_stream, &ticks, &Progress::default())
        .await
        .unwrap();
    let progress = h
        .poll_kinesis_until(Invoker::InProcess(h.function.clone()), 1_000, WITHIN)
        .await
        .unwrap();
    let s = progress.snapshot();
    assert_eq!((s.processed, s.stored, s.failed), (1_000, 1_000, 0));

    let want = expected(&ticks);
    assert_eq!(h.stored_ticks().await.unwrap(), want.ticks);
    assert_eq!(h.stored_sums().await.unwrap(), want.sums);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kinesis_writes_that_fail_are_reported_as_batch_item_failures() {
    let h = Harness::start("kinesis-failures").await.unwrap();
    let ticks = ticks(18, 30);
    let kinesis = aws_sdk_kinesis::Client::new(&h.sdk);
    put_ticks(&kinesis, &h.names.tick_stream, &ticks, &Progress::default())
        .await
        .unwrap();
    // A function whose ticks table does not exist: every write fails, nothing is dropped.
    let broken = ProcessTicks {
        store: TickStore::new(
            h.dynamo.clone(),
            "no-such-table",
            h.names.rates_table.clone(),
        ),
        ..(*h.function).clone()
    };
    let records = kinesis_event_of(&h, &ticks).await;
    let result = broken.handle(&records).await;
    let failures = result.item_failures.unwrap().batch_item_failures;
    assert_eq!(failures.len(), records.len());
    let response = result.report;
    assert_eq!(
        (response.records, response.stored, response.failed),
        (30, 0, 30)
    );

    // Through the poller: retried, then sent to the dead-letter queue with their position.
    let progress = h
        .poll_kinesis_until(Invoker::InProcess(Arc::new(broken)), 30, WITHIN)
        .await
        .unwrap();
    assert_eq!(progress.snapshot().failed, 30);
    let letters = h.dead_letters().await.unwrap();
    assert_eq!(letters.len(), 30);
    assert!(
        letters
            .iter()
            .all(|l| l.source.starts_with("shardId-")
                && l.reason.contains("failed after 3 attempts"))
    );
    h.stop().await;
}

/// The stream's records as one Kinesis event, read with GetRecords as the mapping would.
async fn kinesis_event_of(h: &Harness, ticks: &[Tick]) -> SourceEvent {
    let client = aws_sdk_kinesis::Client::new(&h.sdk);
    let shards = client
        .list_shards()
        .stream_name(&h.names.tick_stream)
        .send()
        .await
        .unwrap();
    let mut records = Vec::new();
    for shard in shards.shards() {
        let iterator = client
            .get_shard_iterator()
            .stream_name(&h.names.tick_stream)
            .shard_id(shard.shard_id())
            .shard_iterator_type(aws_sdk_kinesis::types::ShardIteratorType::TrimHorizon)
            .send()
            .await
            .unwrap();
        let out = client
            .get_records()
            .shard_iterator(iterator.shard_iterator().unwrap())
            .send()
            .await
            .unwrap();
        for r in out.records() {
            records.push(serde_json::json!({
                "kinesis": {
                    "kinesisSchemaVersion": "1.0",
                    "partitionKey": r.partition_key(),
                    "sequenceNumber": r.sequence_number(),
                    "data": wtc_core::event::encode_base64(r.data().as_ref()),
                    "approximateArrivalTimestamp": 1704067200.5
                },
                "eventSource": "aws:kinesis",
                "eventVersion": "1.0",
                "eventID": format!("{}:{}", shard.shard_id(), r.sequence_number()),
                "eventName": "aws:kinesis:record",
                "invokeIdentityArn": "arn:aws:iam::123456789012:role/process-ticks",
                "awsRegion": "us-east-1",
                "eventSourceARN": "arn:aws:kinesis:us-east-1:123456789012:stream/wtc-ticks"
            }));
        }
    }
    assert_eq!(records.len(), ticks.len());
    serde_json::from_value(serde_json::json!({ "Records": records })).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_batches_that_fail_every_retry_go_to_the_dead_letter_queue_and_are_committed() {
    let h = Harness::start("kafka-failures").await.unwrap();
    let ticks = ticks(19, 40);
    let producer = tick_producer(&h.stack.kafka_brokers, &h.names.tick_topic).unwrap();
    produce_ticks(&producer, ticks.into_iter(), &Progress::default())
        .await
        .unwrap();
    let broken = Arc::new(ProcessTicks {
        store: TickStore::new(
            h.dynamo.clone(),
            "no-such-table",
            h.names.rates_table.clone(),
        ),
        ..(*h.function).clone()
    });
    let progress = h
        .poll_with(Invoker::InProcess(broken), "e2e-failing", 40, WITHIN)
        .await
        .unwrap();
    assert_eq!(progress.snapshot().failed, 40);
    let letters = h.dead_letters().await.unwrap();
    assert_eq!(letters.len(), 40);
    assert!(
        letters.iter().all(|l| l.source.starts_with("tick-data/")
            && l.function == process_ticks::FUNCTION
            && l.reason.starts_with("batch failed after 3 attempts")),
        "{:?}",
        letters[0]
    );
    // Their offsets were committed: the same group finds nothing left to consume.
    let again = h
        .poll_until_processed("e2e-failing", 1, Duration::from_secs(8))
        .await;
    assert!(
        again
            .unwrap_err()
            .to_string()
            .starts_with("only 0 of 1 records processed")
    );
    h.stop().await;
}
