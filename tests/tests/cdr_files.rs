//! CDR files end to end: objects in moto's S3, stream-cdr-files publishing to tansu, the records
//! consumed and aggregated; totals compared with totals summed straight from the files.

use aggregate_usage::AggregateUsage;
use stream_cdr_files::StreamCdrFiles;
use wtc_aws::UsageStore;
use wtc_aws::publish::Publisher;
use wtc_core::cdr_generator::CdrGenerator;
use wtc_local::generator::tick_producer;
use wtc_local::provision::create_topic;
use wtc_tests::cdr::{consume_cdr, drop_bucket, file_totals, s3_event, stored_totals};
use wtc_tests::{Harness, kafka_event};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uploaded_files_become_exact_usage_and_bad_rows_dead_letters() {
    let h = Harness::start("cdr-files").await.unwrap();
    for topic in ["cdr-data", "cdr-voice"] {
        create_topic(&h.stack.kafka_brokers, topic, 3)
            .await
            .unwrap();
    }
    let s3 = drop_bucket(&h, "cdr-drop").await;
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
        .handle(&s3_event("cdr-drop", &key_refs))
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
        .handle(&s3_event("cdr-drop", &key_refs[..1]))
        .await
        .unwrap();
    assert_eq!(again[0].published, 1000);

    // Every record, from both topics, keyed by MSISDN.
    let values = consume_cdr(&h.stack.kafka_brokers, "cdr-files-test", 3_000).await;
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
    let want = file_totals(&[&data, &voice_good]);
    let got = stored_totals(&aggregate.store, want.keys().map(|k| k.0.as_str())).await;
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
