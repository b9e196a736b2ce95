//! Decode + fold throughput of the usage aggregator over Kafka-event batches of CDR records:
//! base64, CSV, every field validated, folded into hourly usage items (rows distinct per batch).
//! Also prints how many usage items (table writes) a batch makes per 1,000 rows.

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::hint::black_box;
use wtc_core::cdr::UsageFold;
use wtc_core::event::{KafkaEvent, KafkaRecord, SourceEvent, encode_base64};

const BATCH: usize = 10_000;
/// Different batches of each size, taken in turn.
const DISTINCT_BATCHES: u64 = 8;

/// Records as stream-cdr-files publishes them: half data, half voice, 50,000 MSISDNs, an hour.
/// The seed makes each batch different.
fn records(n: usize, seed: u64) -> Vec<(String, String)> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let types = ["video", "audio", "image", "text", "application"];
    (0..n)
        .map(|i| {
            let msisdn = format!("27{:011}", rng.random_range(0..50_000u64) * 7_919);
            let (m, s, us) = (rng.random_range(0..60), rng.random_range(0..60), rng.random_range(0..1_000_000));
            let at = format!("2024-01-01 01:{m:02}:{s:02}.{us:06}");
            let line = 2 + i as u64;
            let value = if i % 2 == 0 {
                format!(
                    "data,cdr_data_20240101_010000.csv,9b2cf535f27731c974343645a3985328,{line},{msisdn},{},{},{},{},221.128.139.195,http://www.kelly-williams.biz/,{at}",
                    rng.random_range(1..=2000),
                    rng.random_range(100_000..=1_000_000),
                    rng.random_range(100_000..=1_000_000),
                    types[rng.random_range(0..types.len())],
                )
            } else {
                format!(
                    "voice,cdr_voice_20240101_010000.csv,1f3870be274f6c49b3e31a0c6728957f,{line},{msisdn},{},{},1693098090050,{},{at}",
                    rng.random_range(1..=2000),
                    if rng.random_bool(0.5) { "voice" } else { "video" },
                    rng.random_range(1..=1800),
                )
            };
            (msisdn, value)
        })
        .collect()
}

fn kafka_event(rows: &[(String, String)]) -> SourceEvent {
    let records = rows
        .iter()
        .enumerate()
        .map(|(i, (key, value))| KafkaRecord {
            topic: "cdr-data".into(),
            partition: (i % 12) as i32,
            offset: i as i64,
            timestamp: 1_704_067_200_000 + i as i64,
            timestamp_type: "CREATE_TIME".into(),
            key: Some(encode_base64(key.as_bytes())),
            value: Some(encode_base64(value.as_bytes())),
            headers: vec![],
        });
    SourceEvent::Kafka(KafkaEvent::self_managed("127.0.0.1:19092", records))
}

/// What aggregate-usage does with a batch before writing: decode, validate and fold every
/// record, into a fold emptied after the previous batch.
fn decode_fold(event: &SourceEvent, fold: &mut UsageFold) {
    fold.clear();
    fold.fold_records(&event.records(), |_, folded| {
        black_box(folded);
    });
}

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("kafka_cdrs");
    // The event-source mapping's batch size: 1,000 and 10,000 (its maximum) rows. Each iteration
    // takes the next of several different batches, as a function meets new rows every time (one
    // batch over and over would let the branch predictor learn it by heart).
    for batch in [1_000, BATCH] {
        let events: Vec<SourceEvent> = (0..DISTINCT_BATCHES)
            .map(|k| kafka_event(&records(batch, 7 + k)))
            .collect();
        let mut fold = UsageFold::with_capacity(batch);
        decode_fold(&events[0], &mut fold);
        let rows: u128 = fold.items.iter().map(|(_, t)| t.records).sum();
        assert_eq!(rows, batch as u128, "every row decodes");
        println!(
            "batches of {batch} rows: {} usage items, {:.1} table writes per 1,000 rows",
            fold.items.len(),
            fold.items.len() as f64 * 1_000.0 / batch as f64
        );
        group.throughput(Throughput::Elements(batch as u64));
        let mut turn = 0;
        group.bench_function(format!("decode_validate_fold/{batch}"), |b| {
            b.iter(|| {
                turn = (turn + 1) % events.len();
                decode_fold(black_box(&events[turn]), &mut fold);
            })
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
