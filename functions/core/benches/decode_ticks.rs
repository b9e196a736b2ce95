//! Decode + validate throughput over Kafka-event batches of forex ticks.
//!
//! Two figures: from the deserialized event (what a handler does with the event `lambda_runtime`
//! hands it: base64, JSON, validation), and from the event's JSON text (adding the event parse).

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use std::hint::black_box;
use wtc_core::event::{KafkaEvent, KafkaRecord, SourceEvent, encode_base64};
use wtc_core::simulate::{ForexSimulator, kafka_key};
use wtc_core::tick::Tick;

const BATCH: usize = 10_000;

fn kafka_event(n: usize) -> SourceEvent {
    let records = ForexSimulator::new(1)
        .take(n)
        .enumerate()
        .map(|(i, tick)| KafkaRecord {
            topic: "tick-data".into(),
            partition: (i % 12) as i32,
            offset: i as i64,
            timestamp: 1_704_067_200_000 + i as i64,
            timestamp_type: "CREATE_TIME".into(),
            key: Some(encode_base64(kafka_key(&tick).as_bytes())),
            value: Some(encode_base64(tick.to_json().as_bytes())),
            headers: vec![],
        });
    SourceEvent::Kafka(KafkaEvent::self_managed("127.0.0.1:19092", records))
}

fn decode_all(event: &SourceEvent) -> usize {
    let mut buf = Vec::with_capacity(256);
    let mut good = 0;
    for record in event.records() {
        if let Ok(payload) = record.payload(&mut buf)
            && Tick::decode(payload).is_ok()
        {
            good += 1;
        }
    }
    good
}

fn bench(c: &mut Criterion) {
    let event = kafka_event(BATCH);
    assert_eq!(decode_all(&event), BATCH);
    let text = serde_json::to_string(&event).expect("event serializes");

    let mut group = c.benchmark_group("kafka_ticks");
    group.throughput(Throughput::Elements(BATCH as u64));
    group.bench_function("decode_validate", |b| {
        b.iter(|| decode_all(black_box(&event)))
    });
    group.bench_function("parse_event_decode_validate", |b| {
        b.iter(|| {
            let event: SourceEvent = serde_json::from_str(black_box(&text)).expect("event parses");
            decode_all(&event)
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
