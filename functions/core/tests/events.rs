//! The decoding layer against events shaped exactly as AWS delivers them.

use wtc_core::event::{Position, SourceEvent};
use wtc_core::{Tick, TickRejection};

fn fixture(name: &str) -> SourceEvent {
    let path = format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).expect("fixture exists");
    serde_json::from_str(&text).expect("fixture decodes")
}

fn decode_all(event: &SourceEvent) -> Vec<(String, Result<Tick, String>)> {
    let mut buf = Vec::new();
    event
        .records()
        .iter()
        .map(|r| {
            let result = match r.payload(&mut buf) {
                Ok(p) => Tick::decode(p).map_err(|e| e.to_string()),
                Err(e) => Err(e.to_string()),
            };
            (r.position.to_string(), result)
        })
        .collect()
}

#[test]
fn msk_event_yields_records_by_topic_partition_in_offset_order() {
    let event = fixture("msk_event.json");
    assert!(matches!(&event, SourceEvent::Kafka(k) if k.event_source == "aws:kafka"));
    assert_eq!(event.len(), 4);
    let decoded = decode_all(&event);
    let positions: Vec<&str> = decoded.iter().map(|(p, _)| p.as_str()).collect();
    assert_eq!(
        positions,
        [
            "tick-data/0@15",
            "tick-data/0@16",
            "tick-data/7@3",
            "tick-data/7@4"
        ]
    );
    let first = decoded[0].1.as_ref().unwrap();
    assert_eq!(
        (first.pair.as_str(), first.bid, first.ask),
        ("MRVZAR", 1.7168, 1.7598)
    );
    assert_eq!(
        decoded[1].1.as_ref().unwrap_err(),
        "ask_price 1.4 is below bid_price 1.5"
    );
    assert_eq!(decoded[2].1.as_ref().unwrap().pair, "WAKMRV");
    assert_eq!(
        decoded[3].1.as_ref().unwrap_err(),
        "record has no value (a tombstone)"
    );
}

#[test]
fn self_managed_kafka_event_reports_bad_base64_at_its_position() {
    let event = fixture("self_managed_kafka_event.json");
    assert!(
        matches!(&event, SourceEvent::Kafka(k) if k.event_source == "SelfManagedKafka" && k.event_source_arn.is_none())
    );
    let decoded = decode_all(&event);
    assert!(decoded[0].1.is_ok());
    assert_eq!(
        decoded[1],
        (
            "tick-data/3@1201".into(),
            Err("record value is not valid base64".into())
        )
    );
    let records = event.records();
    assert_eq!(records[0].key, Some("Ik1SVlpBUi0yMDI0LTAxLTAxIDAwOjAwIg=="));
}

#[test]
fn kinesis_event_yields_shard_and_sequence_number() {
    let event = fixture("kinesis_event.json");
    assert!(event.is_kinesis());
    let records = event.records();
    assert_eq!(
        records[0].position,
        Position::Kinesis {
            shard_id: "shardId-000000000006",
            sequence_number: "49590338271490256608559692538361571095921575989136588898"
        }
    );
    assert_eq!(
        records[1].sequence_number(),
        Some("49590338271490256608559692540925702759324208523137515618")
    );
    let decoded = decode_all(&event);
    assert_eq!(
        decoded[0].1.as_ref().unwrap().timestamp.to_string(),
        "2024-01-01 00:00:00.570000"
    );
    assert_eq!(
        decoded[1].1.as_ref().unwrap_err(),
        "missing field `bid_price`"
    );
}

#[test]
fn an_event_of_neither_shape_is_refused_with_a_reason() {
    let err = serde_json::from_str::<SourceEvent>(r#"{"Items": []}"#).unwrap_err();
    assert!(
        err.to_string()
            .contains("neither `records` (a Kafka event) nor `Records`"),
        "{err}"
    );
}

#[test]
fn events_survive_a_serialization_round_trip() {
    for name in [
        "msk_event.json",
        "self_managed_kafka_event.json",
        "kinesis_event.json",
    ] {
        let event = fixture(name);
        let text = serde_json::to_string(&event).unwrap();
        assert_eq!(
            serde_json::from_str::<SourceEvent>(&text).unwrap(),
            event,
            "{name}"
        );
    }
}

#[test]
fn rejections_are_typed() {
    assert_eq!(
        Tick::decode(b"{}").unwrap_err(),
        TickRejection::MissingField("timestamp")
    );
}
