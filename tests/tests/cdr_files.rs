//! CDR files end to end: objects in moto's S3, stream-cdr-files publishing to tansu, the records
//! consumed and aggregated; totals compared with totals summed straight from the files.

use aggregate_usage::AggregateUsage;
use rdkafka::Message;
use rdkafka::consumer::{Consumer, StreamConsumer};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};
use stream_cdr_files::{S3Event, StreamCdrFiles};
use wtc_aws::UsageStore;
use wtc_aws::publish::Publisher;
use wtc_core::cdr::Msisdn;
use wtc_core::cdr_generator::CdrGenerator;
use wtc_core::time::Timestamp;
use wtc_local::generator::tick_producer;
use wtc_local::provision::create_topic;
use wtc_tests::{Harness, kafka_event};

fn event(bucket: &str, keys: &[&str]) -> S3Event {
    let records: Vec<_> = keys
        .iter()
        .map(|k| {
            serde_json::json!({"eventName": "ObjectCreated:Put",
                "s3": {"bucket": {"name": bucket}, "object": {"key": k.replace(' ', "+")}}})
        })
        .collect();
    serde_json::from_value(serde_json::json!({ "Records": records })).unwrap()
}

/// (msisdn, hour, category, type) -> total, summed from the files' text.
fn totals_of(files: &[&str]) -> BTreeMap<(String, String, &'static str, String), u128> {
    let mut out = BTreeMap::new();
    for text in files {
        for line in text.lines().skip(1) {
            let f: Vec<&str> = line.split(',').collect();
            let (category, usage_type, total, at) = if f.len() == 8 {
                let bytes = f[2].parse::<u128>().unwrap() + f[3].parse::<u128>().unwrap();
                ("data", f[4], bytes, f[7])
            } else {
                ("call", f[2], f[4].parse().unwrap(), f[5])
            };
            let hour = format!("{}:00:00", &at[..13]);
            *out.entry((f[0].to_owned(), hour, category, usage_type.to_owned()))
                .or_default() += total;
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uploaded_files_become_exact_usage_and_bad_rows_dead_letters() {
    let h = Harness::start("cdr-files").await.unwrap();
    for topic in ["cdr-data", "cdr-voice"] {
        create_topic(&h.stack.kafka_brokers, topic, 3)
            .await
            .unwrap();
    }
    let s3 = aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::config::Builder::from(&h.sdk)
            .force_path_style(true)
            .build(),
    );
    s3.create_bucket().bucket("cdr-drop").send().await.unwrap();
    let [(data_name, data), (voice_name, voice)] = CdrGenerator::new(27_418_001, 300).next_pair();
    // Two bad rows in the voice file, at lines 3 and 6.
    let mut lines: Vec<&str> = voice.lines().collect();
    lines.insert(
        2,
        "0712345678901,12,sms,0712345678901,60,2024-01-01 00:01:00",
    );
    lines.insert(
        5,
        "0712345678901,12,voice,0712345678901,60,2024-01-01 25:01:00",
    );
    let voice_with_bad = lines.join("\r\n") + "\r\n";
    let put = |key: String, body: String| {
        let s3 = s3.clone();
        async move {
            s3.put_object()
                .bucket("cdr-drop")
                .key(key)
                .body(body.into_bytes().into())
                .send()
                .await
                .unwrap();
        }
    };
    put(format!("upload/{data_name}"), data.clone()).await;
    put(format!("upload/{voice_name}"), voice_with_bad).await;
    put("upload/notes from ops.csv".into(), "hello\n".into()).await;
    put("upload/cdr_data_20240101_000640.csv".into(), voice.clone()).await;

    let function = StreamCdrFiles::new(
        s3,
        Publisher::Kafka(tick_producer(&h.stack.kafka_brokers, "cdr-data").unwrap()),
        h.function.dead_letters.clone(),
    );
    let keys = [
        format!("upload/{data_name}"),
        format!("upload/{voice_name}"),
        "upload/notes from ops.csv".to_owned(),
        "upload/cdr_data_20240101_000640.csv".to_owned(),
    ];
    let key_refs: Vec<&str> = keys.iter().map(String::as_str).collect();
    let reports = function
        .handle(&event("cdr-drop", &key_refs))
        .await
        .unwrap();
    let summary: Vec<_> = reports
        .iter()
        .map(|r| (r.rows, r.published, r.rejected, r.file_rejected.is_some()))
        .collect();
    assert_eq!(
        summary,
        [
            (1000, 1000, 0, false),
            (1002, 1000, 2, false),
            (0, 0, 0, true),
            (0, 0, 0, true)
        ]
    );
    // The same file processed again: the same rows, published again.
    let again = function
        .handle(&event("cdr-drop", &key_refs[..1]))
        .await
        .unwrap();
    assert_eq!(again[0].published, 1000);

    // Every record, from both topics, keyed by MSISDN.
    let consumer: StreamConsumer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", &h.stack.kafka_brokers)
        .set("group.id", "cdr-files-test")
        .set("auto.offset.reset", "earliest")
        .create()
        .unwrap();
    consumer.subscribe(&["cdr-data", "cdr-voice"]).unwrap();
    let mut values = Vec::new();
    let started = Instant::now();
    while values.len() < 3_000 && started.elapsed() < Duration::from_secs(90) {
        if let Ok(Ok(m)) = tokio::time::timeout(Duration::from_secs(5), consumer.recv()).await {
            let value = m.payload().unwrap().to_vec();
            let msisdn = std::str::from_utf8(m.key().unwrap()).unwrap().to_owned();
            assert!(String::from_utf8_lossy(&value).contains(&format!(",{msisdn},")));
            values.push((m.partition(), m.offset(), value));
        }
    }
    assert_eq!(values.len(), 3_000);

    let aggregate = AggregateUsage::new(
        UsageStore::new(h.dynamo.clone(), h.names.usage_table.clone()),
        h.function.dead_letters.clone(),
    );
    let (mut applied, mut duplicates) = (0, 0);
    for batch in values.chunks(500) {
        let r = aggregate.handle(&kafka_event(batch)).await.report;
        assert_eq!((r.rejected, r.failed), (0, 0));
        applied += r.applied;
        duplicates += r.duplicates;
    }
    assert_eq!((applied, duplicates), (2_000, 1_000));

    let voice_good: String = voice.clone();
    let want = totals_of(&[&data, &voice_good]);
    let mut got = BTreeMap::new();
    let mut msisdns: Vec<&String> = want.keys().map(|k| &k.0).collect();
    msisdns.dedup();
    for m in msisdns {
        for item in aggregate
            .store
            .query(
                &Msisdn::parse(m.as_bytes()).unwrap(),
                Timestamp::parse("2024-01-01 00:00:00").unwrap(),
                Timestamp::parse("2024-01-01 23:00:00").unwrap(),
            )
            .await
            .unwrap()
        {
            let total = item.totals.up + item.totals.down + item.totals.seconds;
            got.insert(
                (
                    item.msisdn,
                    item.hour.to_seconds_string(),
                    item.usage_type.category(),
                    item.usage_type.name().to_owned(),
                ),
                total,
            );
        }
    }
    assert_eq!(got, want);

    let letters = h.dead_letters().await.unwrap();
    let find = |needle: &str| {
        letters
            .iter()
            .find(|l| l.source.ends_with(needle) || l.reason.contains(needle))
    };
    let bad_type = find(&format!("{voice_name}#3")).expect("line 3");
    assert!(bad_type.reason.contains("`call_type`"), "{bad_type:?}");
    let bad_time = find(&format!("{voice_name}#6")).expect("line 6");
    assert!(bad_time.reason.contains("`start_time`"), "{bad_time:?}");
    assert!(find("is not a CDR file name").is_some(), "{letters:?}");
    assert!(find("the header must be").is_some(), "{letters:?}");
    assert_eq!(letters.len(), 4, "{letters:?}");
    h.stop().await;
}
