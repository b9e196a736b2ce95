//! CDR records for the tests, and their usage totals summed straight from the rows' text.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::collections::BTreeMap;
use wtc_core::cdr::{CdrKind, RowId, encode_record, split_csv};

/// Rows of two files of each kind over two hours, for a few MSISDNs (so items hold many rows).
pub fn records() -> Vec<String> {
    let mut rng = ChaCha8Rng::seed_from_u64(3);
    let msisdns: Vec<String> = (0..12)
        .map(|i| format!("0{:012}", 7_000_000 + i * 131))
        .collect();
    let types = ["video", "audio", "image", "text", "application"];
    let mut out = Vec::new();
    for (file, kind) in [
        (0, CdrKind::Data),
        (1, CdrKind::Voice),
        (2, CdrKind::Data),
        (3, CdrKind::Voice),
    ] {
        let id = |line: u64| RowId {
            source: format!("upload/cdr_{}_2024010{}_000320.csv", kind.name(), file),
            etag: format!("etag{file}"),
            line,
        };
        for line in 2..=301u64 {
            let msisdn = &msisdns[rng.random_range(0..msisdns.len())];
            let at = format!(
                "2024-01-01 0{}:{:02}:{:02}.{:06}",
                rng.random_range(1..3),
                rng.random_range(0..60),
                rng.random_range(0..60),
                rng.random_range(0..1_000_000)
            );
            let row = match kind {
                CdrKind::Data => format!(
                    "{msisdn},17,{},{},{},10.0.0.1,http://example.com/,{at}",
                    rng.random_range(100_000..=1_000_000),
                    rng.random_range(100_000..=1_000_000),
                    types[rng.random_range(0..types.len())]
                ),
                CdrKind::Voice => format!(
                    "{msisdn},17,{},0712345678901,{},{at}",
                    if rng.random_bool(0.5) {
                        "voice"
                    } else {
                        "video"
                    },
                    rng.random_range(1..=1_800)
                ),
            };
            let mut fields = Vec::new();
            split_csv(row.as_bytes(), &mut fields).unwrap();
            out.push(encode_record(kind, &id(line), &fields));
        }
    }
    out
}

/// (msisdn, hour, category, type) -> (up, down, seconds, rows), summed from the CSV text.
pub type Totals = BTreeMap<(String, String, String, String), (u128, u128, u128, u128)>;

pub fn expected(records: &[String]) -> Totals {
    let mut out = Totals::new();
    for r in records {
        let f: Vec<&str> = r.split(',').collect();
        let (kind, msisdn) = (f[0], f[4].to_owned());
        let (category, usage_type, up, down, seconds, at) = if kind == "data" {
            (
                "data",
                f[8],
                f[6].parse().unwrap(),
                f[7].parse().unwrap(),
                0,
                f[11],
            )
        } else {
            ("call", f[6], 0, 0, f[8].parse().unwrap(), f[9])
        };
        let hour = format!("{}:00:00", &at[..13]);
        let e = out
            .entry((msisdn, hour, category.to_owned(), usage_type.to_owned()))
            .or_default();
        e.0 += up;
        e.1 += down;
        e.2 += seconds;
        e.3 += 1;
    }
    out
}

/// An S3 notification of objects created in `bucket`, keys encoded as S3 encodes them.
pub fn s3_event(bucket: &str, keys: &[&str]) -> stream_cdr_files::S3Event {
    let records: Vec<_> = keys
        .iter()
        .map(|k| {
            serde_json::json!({"eventName": "ObjectCreated:Put",
                "s3": {"bucket": {"name": bucket}, "object": {"key": k.replace(' ', "+")}}})
        })
        .collect();
    serde_json::from_value(serde_json::json!({ "Records": records }))
        .expect("a well-formed S3 notification")
}

/// (msisdn, hour, category, type) -> total, summed from the files' text (header lines skipped).
pub type FileTotals = BTreeMap<(String, String, &'static str, String), u128>;

pub fn file_totals(files: &[&str]) -> FileTotals {
    let mut out = BTreeMap::new();
    for text in files {
        for line in text.lines().skip(1) {
            let f: Vec<&str> = line.split(',').collect();
            let number = |i: usize| -> u128 { f[i].parse().expect("a test row's number") };
            let (category, usage_type, total, at) = if f.len() == 8 {
                ("data", f[4], number(2) + number(3), f[7])
            } else {
                ("call", f[2], number(4), f[5])
            };
            let hour = format!("{}:00:00", &at[..13]);
            *out.entry((f[0].to_owned(), hour, category, usage_type.to_owned()))
                .or_default() += total;
        }
    }
    out
}

/// A path-style S3 client on the harness's emulator, with `bucket` created.
pub async fn drop_bucket(h: &crate::Harness, bucket: &str) -> aws_sdk_s3::Client {
    let s3 = aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::config::Builder::from(&h.sdk)
            .force_path_style(true)
            .build(),
    );
    s3.create_bucket()
        .bucket(bucket)
        .send()
        .await
        .expect("creating the drop bucket");
    s3
}

/// Up to `n` records of the CDR topics, read from the start by a group of the test's own, as
/// (partition, offset, value); each record's key is checked to be its row's MSISDN.
pub async fn consume_cdr(brokers: &str, group: &str, n: usize) -> Vec<(i32, i64, Vec<u8>)> {
    use rdkafka::Message;
    use rdkafka::consumer::{Consumer, StreamConsumer};
    use std::time::{Duration, Instant};
    let consumer: StreamConsumer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", group)
        .set("auto.offset.reset", "earliest")
        .create()
        .expect("a consumer");
    consumer
        .subscribe(&["cdr-data", "cdr-voice"])
        .expect("subscribing to the CDR topics");
    let mut values = Vec::new();
    let started = Instant::now();
    while values.len() < n && started.elapsed() < Duration::from_secs(90) {
        if let Ok(Ok(m)) = tokio::time::timeout(Duration::from_secs(5), consumer.recv()).await {
            let value = m.payload().unwrap_or_default().to_vec();
            let msisdn = String::from_utf8_lossy(m.key().unwrap_or_default()).into_owned();
            assert!(
                String::from_utf8_lossy(&value).contains(&format!(",{msisdn},")),
                "a record keyed {msisdn} that is not its row's"
            );
            values.push((m.partition(), m.offset(), value));
        }
    }
    values
}

/// Every stored usage item of these MSISDNs (each read once) on 2024-01-01.
async fn items_of_day<'a>(
    store: &wtc_aws::UsageStore,
    msisdns: impl IntoIterator<Item = &'a str>,
) -> Vec<wtc_aws::usage::StoredUsage> {
    use wtc_core::cdr::Msisdn;
    use wtc_core::time::Timestamp;
    let distinct: std::collections::BTreeSet<&str> = msisdns.into_iter().collect();
    let mut out = Vec::new();
    for m in distinct {
        out.extend(
            store
                .query(
                    &Msisdn::parse(m.as_bytes()).expect("a test MSISDN"),
                    Timestamp::parse("2024-01-01 00:00:00").expect("a time"),
                    Timestamp::parse("2024-01-01 23:00:00").expect("a time"),
                )
                .await
                .expect("querying usage"),
        );
    }
    out
}

/// Every stored total of these MSISDNs on 2024-01-01, keyed as `file_totals` keys them.
pub async fn stored_totals<'a>(
    store: &wtc_aws::UsageStore,
    msisdns: impl IntoIterator<Item = &'a str>,
) -> FileTotals {
    items_of_day(store, msisdns)
        .await
        .into_iter()
        .map(|item| {
            let total = item
                .totals
                .total(item.usage_type)
                .expect("a total within u128");
            (
                (
                    item.msisdn,
                    item.hour.to_seconds_string(),
                    item.usage_type.category(),
                    item.usage_type.name().to_owned(),
                ),
                total,
            )
        })
        .collect()
}

/// The stored usage of every MSISDN these records name on 2024-01-01, keyed as `expected` keys it.
pub async fn stored_usage(store: &wtc_aws::UsageStore, records: &[String]) -> Totals {
    let msisdns = records.iter().filter_map(|r| r.split(',').nth(4));
    items_of_day(store, msisdns)
        .await
        .into_iter()
        .map(|i| {
            (
                (
                    i.msisdn,
                    i.hour.to_seconds_string(),
                    i.usage_type.category().to_owned(),
                    i.usage_type.name().to_owned(),
                ),
                (
                    i.totals.up,
                    i.totals.down,
                    i.totals.seconds,
                    i.totals.records,
                ),
            )
        })
        .collect()
}
