//! Every decoder against arbitrary and mutated input: it never panics, a rejection always says
//! why (in a reason a dead letter can carry), and what it accepts is within its documented bounds
//! and encodes back to the same value.
//!
//! Mutations start from valid input made by the code's own encoders (`Tick::to_json`,
//! `encode_record`, the event types) and flip, overwrite, insert, delete and duplicate bytes, or
//! put a hostile token (a huge number, `1e999`, a lone surrogate, bytes that are not UTF-8, a very
//! long field) in place of a field. Cases per property: `PROPTEST_CASES` (256 by default); a longer
//! run is `PROPTEST_CASES=100000 cargo test -p wtc-core --release --test fuzz_decoders`.

use proptest::prelude::*;
use std::borrow::Cow;
use wtc_core::cdr::{
    self, CdrFile, CdrKind, CdrRecord, Folded, MAX_CALL_SECONDS, MAX_ROW_BYTES, RowId, UsageFold,
    UsageType,
};
use wtc_core::dead_letter::{DeadLetter, MAX_REASON_BYTES};
use wtc_core::event::{
    KafkaEvent, KafkaRecord, KinesisEvent, KinesisEventRecord, Position, SourceRecord,
    encode_base64,
};
use wtc_core::quotes::{Bar, MarketRecord};
use wtc_core::tick::{MAX_PRICE, MAX_SYMBOL_LEN};
use wtc_core::{SourceEvent, Tick, TickRejection, Timestamp};

// ---------------------------------------------------------------------------------------------
// Reasons

/// The fixed part of the longest reason: a reason may quote the input it rejects, escaped (at most
/// six bytes for one, as `\u{1f}`), and nothing else grows with the input.
const FIXED_REASON_BYTES: usize = 320;

/// A rejection's reason says something, grows with the input only by quoting it, and fits a dead
/// letter, which is where every reason ends up.
fn check_reason(reason: &str, input_len: usize) -> Result<(), TestCaseError> {
    prop_assert!(!reason.trim().is_empty(), "a rejection without a reason");
    prop_assert!(
        reason.len() <= FIXED_REASON_BYTES + 6 * input_len,
        "a reason of {} bytes for {input_len} bytes of input: {reason:.200}",
        reason.len()
    );
    let letter = DeadLetter::of_file("fuzz", "s3://b/k#2".into(), None, reason.to_owned());
    prop_assert!(!letter.reason.is_empty());
    prop_assert!(
        letter.reason.len() <= MAX_REASON_BYTES,
        "{}",
        letter.reason.len()
    );
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Mutations

/// Bytes that break decoders: numbers past every integer and float, escapes JSON forbids, text
/// that is not UTF-8, separators, and fields far longer than any real one.
fn hostile_tokens() -> Vec<Vec<u8>> {
    let mut tokens: Vec<Vec<u8>> = [
        &b"99999999999999999999999"[..],
        b"18446744073709551615",
        b"18446744073709551616",
        b"9223372036854775808",
        b"-9223372036854775809",
        b"9999999999999999999",
        b"1000000000000000",
        b"1000000000000001",
        b"31622400",
        b"31622401",
        b"1e999",
        b"-1e999",
        b"1e-999",
        b"4.9e-324",
        b"1e9",
        b"1000000000.0000001",
        b"-1",
        b"-0",
        b"0",
        b"0.0",
        b"00",
        b"1.5",
        b"1.",
        b"NaN",
        b"inf",
        b"",
        b" ",
        b"\t",
        b"\r",
        b"\r\n",
        b"\n",
        b"\"",
        b"\"\"",
        b"\\",
        b"\\u0000",
        b"\\ud800",
        b"\\udc00",
        b"\\ud83d\\ude00",
        b"\\u+041",
        b"\\u-041",
        b"\\u00e9",
        b"\xef\xbb\xbf",
        b"\xff",
        b"\xc3",
        b"\xed\xa0\x80",
        b"\xf4\x90\x80\x80",
        b"\x00",
        b"\x7f",
        b",",
        b",,",
        b"{",
        b"}",
        b"[",
        b"]",
        b":",
        b"null",
        b"true",
        b"{}",
        b"[]",
        b"2024-02-30 00:00:00",
        b"2024-01-01 24:00:00",
        b"0000-01-01 00:00:00",
        b"9999-12-31 23:59:59.999999",
        b"2024-01-01 00:00:00.1234567",
        b"2024-01-01T00:00:00Z",
        b"::1",
        b"256.1.1.1",
        b"01.2.3.4",
        b"::ffff:1.2.3.4",
        b"fe80::1%eth0",
        b"1:2:3:4:5:6:7:8:9",
        b"\"pair_name\"",
        b"\"symbol\"",
        b"data",
        b"voice",
        b"video",
        b"cdr_data_",
        b"cdr_voice_",
        b".csv",
        b"_",
        b"/",
        b"=",
        b"==",
        b"A===",
    ]
    .iter()
    .map(|t| t.to_vec())
    .collect();
    tokens.push(vec![b'a'; 5_000]);
    tokens.push(vec![b'9'; 400]);
    tokens.push("é".repeat(300).into_bytes());
    tokens.push("\u{1f}".repeat(300).into_bytes());
    tokens.push(vec![b'['; 2_000]);
    tokens.push(b"\\u0001".repeat(200));
    // Longer than a Kafka key, a CSV line (16 KiB) and a dead letter's reason together.
    tokens.push(vec![b'x'; 70_000]);
    tokens
}

#[derive(Debug, Clone)]
enum Mutation {
    Flip {
        at: usize,
        bit: u8,
    },
    Set {
        at: usize,
        byte: u8,
    },
    Insert {
        at: usize,
        bytes: Vec<u8>,
    },
    Delete {
        at: usize,
        len: usize,
    },
    Duplicate {
        at: usize,
        len: usize,
    },
    /// The field around `at` (between separators such as `,`, `:` or `"`) becomes a token.
    ReplaceField {
        at: usize,
        token: usize,
    },
    /// A token goes in at `at`.
    InsertToken {
        at: usize,
        token: usize,
    },
}

fn mutation() -> impl Strategy<Value = Mutation> {
    let at = any::<usize>();
    prop_oneof![
        2 => (at, 0u8..8).prop_map(|(at, bit)| Mutation::Flip { at, bit }),
        2 => (at, any::<u8>()).prop_map(|(at, byte)| Mutation::Set { at, byte }),
        2 => (at, proptest::collection::vec(any::<u8>(), 1..8))
            .prop_map(|(at, bytes)| Mutation::Insert { at, bytes }),
        2 => (at, 1usize..16).prop_map(|(at, len)| Mutation::Delete { at, len }),
        1 => (at, 1usize..64).prop_map(|(at, len)| Mutation::Duplicate { at, len }),
        4 => (at, any::<usize>()).prop_map(|(at, token)| Mutation::ReplaceField { at, token }),
        2 => (at, any::<usize>()).prop_map(|(at, token)| Mutation::InsertToken { at, token }),
    ]
}

fn is_separator(b: u8) -> bool {
    matches!(b, b',' | b':' | b'"' | b'{' | b'}' | b'[' | b']' | b'\n')
}

fn apply(mut bytes: Vec<u8>, mutations: &[Mutation], tokens: &[Vec<u8>]) -> Vec<u8> {
    for m in mutations {
        let len = bytes.len();
        let pos = |at: usize| if len == 0 { 0 } else { at % (len + 1) };
        match m {
            Mutation::Flip { at, bit } if len > 0 => bytes[at % len] ^= 1 << bit,
            Mutation::Set { at, byte } if len > 0 => bytes[at % len] = *byte,
            Mutation::Flip { .. } | Mutation::Set { .. } => bytes.push(b'x'),
            Mutation::Insert { at, bytes: new } => {
                let at = pos(*at);
                bytes.splice(at..at, new.iter().copied());
            }
            Mutation::Delete { at, len: n } => {
                let at = pos(*at);
                bytes.drain(at..(at + n).min(len));
            }
            Mutation::Duplicate { at, len: n } => {
                let at = pos(*at);
                let chunk = bytes[at..(at + n).min(len)].to_vec();
                bytes.splice(at..at, chunk);
            }
            Mutation::ReplaceField { at, token } => {
                let at = pos(*at).min(len);
                let start = bytes[..at]
                    .iter()
                    .rposition(|&b| is_separator(b))
                    .map_or(0, |p| p + 1);
                let end = bytes[at..]
                    .iter()
                    .position(|&b| is_separator(b))
                    .map_or(len, |p| at + p);
                let token = &tokens[token % tokens.len()];
                bytes.splice(start..end.max(start), token.iter().copied());
            }
            Mutation::InsertToken { at, token } => {
                let at = pos(*at);
                let token = &tokens[token % tokens.len()];
                bytes.splice(at..at, token.iter().copied());
            }
        }
    }
    bytes
}

/// Valid input from `seeds`, mutated one to six times.
fn mutated<S: Strategy<Value = Vec<u8>>>(seeds: S) -> impl Strategy<Value = Vec<u8>> {
    let tokens = hostile_tokens();
    (seeds, proptest::collection::vec(mutation(), 1..7))
        .prop_map(move |(seed, mutations)| apply(seed, &mutations, &tokens))
}

/// Any bytes at all, mostly short, some long, some drawn from the tokens.
fn arbitrary_bytes() -> impl Strategy<Value = Vec<u8>> {
    let tokens = hostile_tokens();
    prop_oneof![
        4 => proptest::collection::vec(any::<u8>(), 0..64),
        2 => proptest::collection::vec(any::<u8>(), 0..4_096),
        2 => any::<String>().prop_map(String::into_bytes),
        1 => proptest::collection::vec(any::<usize>(), 0..8).prop_map(move |picks| {
            picks.iter().flat_map(|p| tokens[p % tokens.len()].clone()).collect()
        }),
    ]
}

// ---------------------------------------------------------------------------------------------
// Valid input, made by the code's own encoders

/// Year 0000 to year 9999, the range the text format spans.
const FIRST_MICROS: i64 = -62_167_219_200_000_000;
const LAST_MICROS: i64 = 253_402_300_799_999_999;

fn timestamp() -> impl Strategy<Value = Timestamp> {
    prop_oneof![
        FIRST_MICROS..=LAST_MICROS,
        // Around the curriculum's dates, where whole seconds are common.
        (1_704_067_200i64..1_704_240_000).prop_map(|s| s * 1_000_000),
    ]
    .prop_map(Timestamp::from_micros)
}

fn symbol() -> impl Strategy<Value = String> {
    prop_oneof![
        "[A-Z]{6}",
        "[A-Z]{2,8}\\.(NS|BO)",
        "[!-~]{1,32}",
        "\\PC{1,8}".prop_filter("printable, no spaces, short", |s| {
            s.len() <= MAX_SYMBOL_LEN && !s.chars().any(|c| c.is_whitespace() || c.is_control())
        }),
    ]
}

fn price() -> impl Strategy<Value = f64> {
    prop_oneof![
        (1u64..100_000_000_000).prop_map(|n| n as f64 / 1e4),
        1e-9..MAX_PRICE / 2.0,
    ]
}

fn valid_tick() -> impl Strategy<Value = Tick> {
    (symbol(), timestamp(), price(), 0.0..1.0f64, 0.0..1e3f64).prop_map(
        |(pair, timestamp, bid, up, spread)| Tick {
            pair,
            timestamp,
            bid,
            ask: bid * (1.0 + up),
            spread,
        },
    )
}

fn valid_bar() -> impl Strategy<Value = Bar> {
    (
        symbol(),
        timestamp(),
        price(),
        proptest::array::uniform3(0.0..1.0f64),
        any::<u64>(),
    )
        .prop_map(|(symbol, start, low, [a, b, c], volume)| {
            let minute = Timestamp::from_micros(start.micros().div_euclid(60_000_000) * 60_000_000);
            let high = low * (1.0 + c);
            let between = |x: f64| (low + (high - low) * x).clamp(low, high);
            Bar {
                symbol,
                start: minute,
                open: between(a),
                high,
                low,
                close: between(b),
                volume,
            }
        })
}

/// A time as the files write it: with a fraction of 1 to 6 digits, or without one.
fn wtc_time_text() -> impl Strategy<Value = String> {
    (timestamp(), 0usize..=6).prop_map(|(t, digits)| {
        let text = t.to_string();
        match digits {
            0 => text[..19].to_owned(),
            d => text[..20 + d].to_owned(),
        }
    })
}

/// One field as a CSV file writes it: quoted when it must be, and now and then when it need not.
fn csv_field(text: &str, quote_anyway: bool) -> String {
    if quote_anyway || text.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", text.replace('"', "\"\""))
    } else {
        text.to_owned()
    }
}

fn valid_row(kind: CdrKind) -> BoxedStrategy<Vec<String>> {
    let msisdn = "[0-9]{1,15}";
    let tower = "[0-9]{1,19}";
    match kind {
        CdrKind::Data => (
            msisdn,
            tower,
            0..=MAX_ROW_BYTES,
            0..=MAX_ROW_BYTES,
            prop::sample::select(vec!["video", "audio", "image", "text", "application"]),
            any::<std::net::IpAddr>(),
            "http://[!-~]{1,40}",
            wtc_time_text(),
        )
            .prop_map(|(m, t, up, down, ty, ip, url, at)| {
                vec![
                    m,
                    t,
                    up.to_string(),
                    down.to_string(),
                    ty.to_owned(),
                    ip.to_string(),
                    url,
                    at,
                ]
            })
            .boxed(),
        CdrKind::Voice => (
            msisdn,
            tower,
            prop::sample::select(vec!["voice", "video"]),
            msisdn,
            0..=MAX_CALL_SECONDS,
            wtc_time_text(),
        )
            .prop_map(|(m, t, ty, dest, secs, at)| {
                vec![m, t, ty.to_owned(), dest, secs.to_string(), at]
            })
            .boxed(),
    }
}

fn kind() -> impl Strategy<Value = CdrKind> {
    prop_oneof![Just(CdrKind::Data), Just(CdrKind::Voice)]
}

/// A valid row of a file of `kind`, as a line of the file.
fn valid_line() -> impl Strategy<Value = (CdrKind, Vec<u8>)> {
    kind().prop_flat_map(|kind| {
        (
            Just(kind),
            valid_row(kind),
            proptest::collection::vec(any::<bool>(), 8),
        )
            .prop_map(|(kind, fields, quote)| {
                let line: Vec<String> = fields
                    .iter()
                    .zip(quote)
                    .map(|(f, q)| csv_field(f, q))
                    .collect();
                (kind, line.join(",").into_bytes())
            })
    })
}

fn row_id() -> impl Strategy<Value = RowId> {
    (
        "[!-~]{1,20}/cdr_(data|voice)_20240101_000320\\.csv|\\PC{1,30}",
        "[0-9a-zA-Z+/=]{1,24}|\\PC{1,12}",
        any::<u64>(),
    )
        .prop_map(|(source, etag, line)| RowId { source, etag, line })
}

fn fields(line: &[u8]) -> Result<Vec<Cow<'_, [u8]>>, cdr::RowRejection> {
    let mut out = Vec::new();
    cdr::split_csv(line, &mut out).map(|()| out)
}

/// A published record of a valid row, as `encode_record` writes it.
fn valid_record() -> impl Strategy<Value = Vec<u8>> {
    (valid_line(), row_id()).prop_map(|((kind, line), id)| match fields(&line) {
        Ok(f) => cdr::encode_record(kind, &id, &f).into_bytes(),
        Err(_) => line,
    })
}

fn tick_payload() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        3 => valid_tick().prop_map(|t| t.to_json().into_bytes()),
        1 => valid_bar().prop_map(|b| b.to_json().into_bytes()),
        1 => valid_record(),
        1 => proptest::collection::vec(any::<u8>(), 0..64),
    ]
}

/// The inside of a JSON string: plain text, escapes JSON has, and escapes it has not (`\u` with
/// something other than four hex digits, lone or misordered surrogates, unknown letters).
fn json_string_body() -> impl Strategy<Value = String> {
    proptest::collection::vec(
        prop_oneof![
            "[A-Z]{1,3}",
            r#"\\["\\/bfnrt]"#,
            r"\\u[0-9a-fA-F]{4}",
            r"\\u[0-9a-fA-F+\- xXg]{4}",
            r"\\u[+\- ]?[0-9a-fA-F]{3}",
            r"\\u[0-9a-f]{0,3}",
            r"\\u[dD][89abAB][0-9a-f]{2}(\\u[dD][0-9a-fA-F]{3})?",
            r"\\u[dD][c-fC-F][0-9a-f]{2}",
            r"\\.",
            r"\PC",
        ],
        1..6,
    )
    .prop_map(|pieces| pieces.concat())
}

fn kafka_record() -> impl Strategy<Value = KafkaRecord> {
    (
        "[a-z-]{1,12}",
        any::<i32>(),
        any::<i64>(),
        any::<i64>(),
        proptest::option::of(tick_payload()),
        proptest::option::of("[ -~]{0,40}"),
    )
        .prop_map(
            |(topic, partition, offset, timestamp, value, key)| KafkaRecord {
                topic,
                partition,
                offset,
                timestamp,
                timestamp_type: "CREATE_TIME".into(),
                key: key.map(|k| encode_base64(k.as_bytes())),
                value: value.map(|v| encode_base64(&v)),
                headers: Vec::new(),
            },
        )
}

fn kinesis_record() -> impl Strategy<Value = KinesisEventRecord> {
    (
        "shardId-[0-9]{12}",
        "[0-9]{1,56}",
        "\\PC{1,20}",
        tick_payload(),
        -1e12..1e12f64,
    )
        .prop_map(|(shard, seq, key, data, arrival)| {
            KinesisEventRecord::new(
                "arn:aws:kinesis:us-east-1:123456789012:stream/wtc-ticks",
                &shard,
                &seq,
                &key,
                &data,
                arrival,
            )
        })
}

fn valid_event() -> impl Strategy<Value = SourceEvent> {
    prop_oneof![
        proptest::collection::vec(kafka_record(), 0..5).prop_map(|records| SourceEvent::Kafka(
            KafkaEvent::self_managed("broker:9092", records)
        )),
        proptest::collection::vec(kinesis_record(), 0..5)
            .prop_map(|records| SourceEvent::Kinesis(KinesisEvent { records })),
    ]
}

fn fixture(name: &str) -> Vec<u8> {
    let path = format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn event_text() -> impl Strategy<Value = Vec<u8>> {
    let fixtures = vec![
        fixture("msk_event.json"),
        fixture("self_managed_kafka_event.json"),
        fixture("kinesis_event.json"),
    ];
    prop_oneof![
        1 => prop::sample::select(fixtures),
        3 => valid_event().prop_map(|e| serde_json::to_vec(&e).unwrap_or_default()),
    ]
}

// ---------------------------------------------------------------------------------------------
// Checks, one per decoder

fn check_timestamp(input: &[u8]) -> Result<(), TestCaseError> {
    match Timestamp::parse_bytes(input) {
        Ok(t) => {
            prop_assert!((FIRST_MICROS..=LAST_MICROS).contains(&t.micros()));
            prop_assert_eq!(Timestamp::parse(&t.to_string()), Ok(t));
            // The text read is the text written, the fraction padded with zeros.
            let text = t.to_string();
            let fraction = input.get(20..).unwrap_or_default();
            prop_assert_eq!(&text.as_bytes()[..19], &input[..19]);
            prop_assert!(
                text.as_bytes()[20..].starts_with(fraction)
                    && text.as_bytes()[20 + fraction.len()..]
                        .iter()
                        .all(|&b| b == b'0'),
                "{:?} read as {}",
                String::from_utf8_lossy(input),
                text
            );
        }
        Err(e) => check_reason(&e.to_string(), input.len())?,
    }
    Ok(())
}

/// What serde_json makes of an accepted tick: the same five members, the same values.
fn agrees_with_serde_json(input: &[u8], tick: &Tick) -> Result<(), TestCaseError> {
    let value: serde_json::Value = serde_json::from_slice(input).map_err(|e| {
        TestCaseError::fail(format!(
            "accepted {:?}, which is not JSON: {e}",
            String::from_utf8_lossy(input)
        ))
    })?;
    let object = value
        .as_object()
        .ok_or_else(|| TestCaseError::fail("accepted JSON that is not an object"))?;
    prop_assert_eq!(object.len(), 5);
    let member = |name: &str| object.get(name);
    prop_assert_eq!(
        member("pair_name").and_then(|v| v.as_str()),
        Some(tick.pair.as_str())
    );
    let stamp = member("timestamp")
        .and_then(|v| v.as_str())
        .map(Timestamp::parse);
    prop_assert_eq!(stamp, Some(Ok(tick.timestamp)));
    for (name, value) in [
        ("bid_price", tick.bid),
        ("ask_price", tick.ask),
        ("spread", tick.spread),
    ] {
        prop_assert_eq!(member(name).and_then(|v| v.as_f64()), Some(value));
    }
    Ok(())
}

fn check_tick(input: &[u8]) -> Result<(), TestCaseError> {
    let decoded = Tick::decode(input);
    // The scanner skips nested values without checking them, so it may pass syntax serde_json
    // refuses, but it refuses nothing serde_json takes.
    if let Ok(serde_json::Value::Object(_)) = serde_json::from_slice(input) {
        prop_assert!(
            !matches!(decoded, Err(TickRejection::Syntax(_))),
            "{:?}: {:?}",
            String::from_utf8_lossy(input),
            decoded
        );
    }
    match decoded {
        Ok(t) => {
            prop_assert!(!t.pair.is_empty() && t.pair.len() <= MAX_SYMBOL_LEN);
            prop_assert!(t.bid > 0.0 && t.bid <= t.ask && t.ask <= MAX_PRICE);
            prop_assert!(t.spread >= 0.0 && t.spread.is_finite());
            prop_assert!(t.mid_nanos() > 0 || t.bid < 1e-8);
            prop_assert_eq!(Tick::decode(t.to_json().as_bytes()), Ok(t.clone()));
            agrees_with_serde_json(input, &t)?;
        }
        Err(e) => check_reason(&e.to_string(), input.len())?,
    }
    Ok(())
}

fn check_market_record(input: &[u8]) -> Result<(), TestCaseError> {
    match MarketRecord::decode(input) {
        Ok(MarketRecord::Tick(t)) => prop_assert_eq!(Tick::decode(input), Ok(t)),
        Ok(MarketRecord::Bar(b)) => {
            prop_assert_eq!(b.validate(), Ok(()));
            prop_assert!(b.start.micros().rem_euclid(60_000_000) == 0);
            prop_assert_eq!(Bar::decode(b.to_json().as_bytes()), Ok(b));
        }
        Err(e) => check_reason(&e.to_string(), input.len())?,
    }
    Ok(())
}

fn check_file_name(key: &str) -> Result<(), TestCaseError> {
    match CdrFile::from_name(key) {
        Ok(file) => {
            let name = key.rsplit('/').next().unwrap_or(key);
            prop_assert_eq!(file.name(), name);
            prop_assert_eq!(CdrFile::from_name(&file.name()), Ok(file));
        }
        Err(e) => check_reason(&e.to_string(), key.len())?,
    }
    Ok(())
}

fn check_usage(usage: &cdr::Usage) -> Result<(), TestCaseError> {
    prop_assert!(usage.up <= MAX_ROW_BYTES && usage.down <= MAX_ROW_BYTES);
    prop_assert!(usage.seconds <= MAX_CALL_SECONDS);
    match usage.usage_type {
        UsageType::Data(_) => prop_assert_eq!(usage.seconds, 0),
        UsageType::Call(_) => prop_assert_eq!((usage.up, usage.down), (0, 0)),
    }
    prop_assert!(Timestamp::parse(&usage.at.to_string()).is_ok());
    Ok(())
}

/// A line of a file, as stream-cdr-files reads it: split, validated, and published as a record
/// that the consumer decodes to the same row.
fn check_row(kind: CdrKind, line: &[u8], id: &RowId) -> Result<(), TestCaseError> {
    let checked = fields(line).and_then(|f| cdr::validate_row(kind, &f).map(|row| (f, row)));
    match checked {
        Ok((f, row)) => {
            check_usage(&row.usage)?;
            prop_assert!(cdr::valid_msisdn(row.msisdn.as_bytes()));
            let value = cdr::encode_record(kind, id, &f);
            let record = CdrRecord::decode(value.as_bytes())
                .map_err(|e| TestCaseError::fail(format!("{value:?} does not decode: {e}")))?;
            prop_assert_eq!(record.kind, kind);
            prop_assert_eq!(&*record.source, id.source.as_bytes());
            prop_assert_eq!(&*record.etag, id.etag.as_bytes());
            prop_assert_eq!(record.line, id.line);
            prop_assert_eq!(record.msisdn.to_string(), row.msisdn);
            prop_assert_eq!(record.usage, row.usage);
        }
        Err(e) => check_reason(&e.to_string(), line.len())?,
    }
    Ok(())
}

fn check_record(value: &[u8]) -> Result<(), TestCaseError> {
    match CdrRecord::decode(value) {
        Ok(record) => {
            check_usage(&record.usage)?;
            prop_assert!(!record.source.is_empty() && !record.etag.is_empty());
            let mut fold = UsageFold::default();
            prop_assert_eq!(fold.add(&record), Ok(true));
            prop_assert_eq!(fold.add(&record), Ok(false), "a row folds once");
            prop_assert_eq!(
                fold.items[0].1.total(record.usage.usage_type),
                Ok(record.usage.total())
            );
        }
        Err(e) => check_reason(&e.to_string(), value.len())?,
    }
    Ok(())
}

/// The event as a function takes it, and every record's payload decoded as its consumer does.
fn check_event(input: &[u8]) -> Result<(), TestCaseError> {
    let event: SourceEvent = match serde_json::from_slice(input) {
        Ok(event) => event,
        Err(e) => return check_reason(&e.to_string(), input.len()),
    };
    let text = serde_json::to_string(&event).map_err(|e| TestCaseError::fail(e.to_string()))?;
    prop_assert_eq!(
        serde_json::from_str::<SourceEvent>(&text).ok(),
        Some(event.clone())
    );
    let records = event.records();
    prop_assert_eq!(records.len(), event.len());
    let mut buf = Vec::new();
    let mut fold = UsageFold::default();
    for record in &records {
        prop_assert!(!record.position.to_string().is_empty());
        let reason = match record.payload(&mut buf) {
            Ok(payload) => {
                check_payload_round_trip(record, payload)?;
                let payload = payload.to_vec();
                check_market_record(&payload)?;
                check_record(&payload)?;
                None
            }
            Err(e) => Some(e.to_string()),
        };
        if let Some(reason) = reason {
            check_reason(&reason, 0)?;
            let letter = DeadLetter::new("fuzz", record, None, reason);
            prop_assert!(letter.reason.len() <= MAX_REASON_BYTES);
            prop_assert_eq!(letter.value.as_deref(), record.data);
        }
    }
    fold.fold_records(&records, |_, folded| {
        if let Folded::Rejected { reason, .. } = folded {
            assert!(!reason.is_empty(), "a rejected record without a reason");
        }
    });
    Ok(())
}

/// A payload that decodes encodes back to what decodes to it again.
fn check_payload_round_trip(
    record: &SourceRecord<'_>,
    payload: &[u8],
) -> Result<(), TestCaseError> {
    let again = encode_base64(payload);
    let copy = SourceRecord {
        data: Some(&again),
        ..*record
    };
    let mut buf = Vec::new();
    prop_assert_eq!(copy.payload(&mut buf).ok(), Some(payload));
    Ok(())
}

fn record_with(data: Option<&str>) -> SourceRecord<'_> {
    SourceRecord {
        position: Position::Kafka {
            topic: "tick-data",
            partition: 0,
            offset: 1,
        },
        key: None,
        data,
    }
}

// ---------------------------------------------------------------------------------------------
// Properties

proptest! {
    #[test]
    fn timestamps_from_any_bytes(input in arbitrary_bytes()) {
        check_timestamp(&input)?;
    }

    #[test]
    fn timestamps_mutated(input in mutated(wtc_time_text().prop_map(String::into_bytes))) {
        check_timestamp(&input)?;
    }

    #[test]
    fn ticks_encoded_by_to_json_decode_to_themselves(tick in valid_tick()) {
        prop_assert_eq!(Tick::decode(tick.to_json().as_bytes()), Ok(tick));
    }

    #[test]
    fn ticks_from_any_bytes(input in arbitrary_bytes()) {
        check_tick(&input)?;
        check_market_record(&input)?;
    }

    #[test]
    fn ticks_mutated(input in mutated(valid_tick().prop_map(|t| t.to_json().into_bytes()))) {
        check_tick(&input)?;
        check_market_record(&input)?;
    }

    #[test]
    fn tick_strings_are_read_as_json_reads_them(body in json_string_body(), as_name: bool) {
        let tick = if as_name {
            format!(r#"{{"timestamp": "2024-01-01 00:00:00.570000", "{body}": "MRVZAR", "bid_price": 1.7168, "ask_price": 1.7598, "spread": 0.043}}"#)
        } else {
            format!(r#"{{"timestamp": "2024-01-01 00:00:00.570000", "pair_name": "{body}", "bid_price": 1.7168, "ask_price": 1.7598, "spread": 0.043}}"#)
        };
        check_tick(tick.as_bytes())?;
    }

    #[test]
    fn bars_encoded_by_to_json_decode_to_themselves(bar in valid_bar()) {
        prop_assert_eq!(Bar::decode(bar.to_json().as_bytes()), Ok(bar));
    }

    #[test]
    fn bars_mutated(input in mutated(valid_bar().prop_map(|b| b.to_json().into_bytes()))) {
        check_market_record(&input)?;
    }

    #[test]
    fn file_names_from_any_text(key in any::<String>()) {
        check_file_name(&key)?;
    }

    #[test]
    fn file_names_mutated(
        input in mutated(
            (kind(), timestamp(), "([a-z]{1,8}/){0,3}").prop_map(|(kind, t, prefix)| {
                let stamp = Timestamp::from_micros(t.micros().div_euclid(1_000_000) * 1_000_000);
                format!("{prefix}{}", CdrFile { kind, stamp }.name()).into_bytes()
            })
        )
    ) {
        // Object keys are text: S3 gives UTF-8, and the function decodes it before this.
        check_file_name(&String::from_utf8_lossy(&input))?;
    }

    #[test]
    fn valid_rows_are_accepted_and_published_whole((kind, line) in valid_line(), id in row_id()) {
        let f = fields(&line).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert!(cdr::validate_row(kind, &f).is_ok(), "{:?}", String::from_utf8_lossy(&line));
        check_row(kind, &line, &id)?;
    }

    #[test]
    fn rows_mutated((kind, line) in valid_line(), mutations in proptest::collection::vec(mutation(), 1..7), id in row_id()) {
        let line = apply(line, &mutations, &hostile_tokens());
        check_row(kind, &line, &id)?;
    }

    #[test]
    fn rows_from_any_bytes(kind in kind(), line in arbitrary_bytes(), id in row_id()) {
        check_row(kind, &line, &id)?;
    }

    #[test]
    fn headers_mutated_are_never_rows(kind in kind(), mutations in proptest::collection::vec(mutation(), 0..4), id in row_id()) {
        // A header read as a row (its file's or the other kind's) is rejected, whatever is done to it.
        let header = apply(kind.header().as_bytes().to_vec(), &mutations, &hostile_tokens());
        if mutations.is_empty() {
            for k in [CdrKind::Data, CdrKind::Voice] {
                let f = fields(&header).map_err(|e| TestCaseError::fail(e.to_string()))?;
                prop_assert!(cdr::validate_row(k, &f).is_err());
            }
        }
        check_row(kind, &header, &id)?;
    }

    #[test]
    fn records_mutated(input in mutated(valid_record())) {
        check_record(&input)?;
    }

    #[test]
    fn records_from_any_bytes(input in arbitrary_bytes()) {
        check_record(&input)?;
    }

    #[test]
    fn payloads_from_any_text(data in prop_oneof![
        any::<String>(),
        "[A-Za-z0-9+/=]{0,64}",
        proptest::collection::vec(any::<u8>(), 0..64).prop_map(|b| encode_base64(&b)),
    ]) {
        let mut buf = Vec::new();
        let record = record_with(Some(&data));
        match record.payload(&mut buf) {
            Ok(payload) => {
                let payload = payload.to_vec();
                check_payload_round_trip(&record, &payload)?;
            }
            Err(e) => check_reason(&e.to_string(), data.len())?,
        }
        let tombstone = record_with(None).payload(&mut buf).map(<[u8]>::to_vec);
        prop_assert!(tombstone.is_err());
    }

    #[test]
    fn payloads_round_trip(bytes in proptest::collection::vec(any::<u8>(), 0..2_048)) {
        let data = encode_base64(&bytes);
        let mut buf = vec![7; 3];
        prop_assert_eq!(record_with(Some(&data)).payload(&mut buf), Ok(&bytes[..]));
    }

    #[test]
    fn events_encoded_decode_to_themselves(event in valid_event()) {
        let text = serde_json::to_vec(&event).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(serde_json::from_slice::<SourceEvent>(&text).ok(), Some(event));
        check_event(&text)?;
    }

    #[test]
    fn events_mutated(input in mutated(event_text())) {
        check_event(&input)?;
    }

    #[test]
    fn events_from_any_bytes(input in arbitrary_bytes()) {
        check_event(&input)?;
    }
}
