//! Market data end to end: fetch-quotes against a replay of the Yahoo chart API, published to a
//! real broker, consumed into candles and indicators; and compute-indicators' backfills.

use aws_sdk_dynamodb::types::AttributeValue;
use compute_indicators::ComputeIndicators;
use fetch_quotes::yahoo::YahooProvider;
use fetch_quotes::{FetchError, FetchQuotes, Provider, Publisher, RunError};
use std::time::Duration;
use wtc_core::candles::{CandleFold, Interval};
use wtc_core::indicators::Price;
use wtc_core::simulate::ForexSimulator;
use wtc_core::time::Timestamp;
use wtc_core::{Tick, candles::Candle};
use wtc_local::generator::tick_producer;
use wtc_tests::yahoo::YahooReplay;
use wtc_tests::{Harness, expected_candles, kafka_event, records_of, with_indicators};

fn at(text: &str) -> Timestamp {
    Timestamp::parse(text).unwrap_or_else(|e| panic!("{text}: {e}"))
}

fn provider(replay: &YahooReplay, timeout: Duration) -> YahooProvider {
    let mut p = YahooProvider::new(&replay.base_url, timeout).unwrap();
    p.base_delay = Duration::from_millis(10);
    p
}

#[tokio::test]
async fn the_yahoo_provider_reads_recorded_responses_over_http() {
    let replay = YahooReplay::start().await.unwrap();
    let yahoo = provider(&replay, Duration::from_secs(1));
    let open = at("2024-01-01 03:45:00");

    // 09:28 IST: twelve minutes have completed, one of them without trades; the live point at
    // 09:27:17 is the latest price, not a bar.
    let q = yahoo
        .fetch("RELIANCE.NS", at("2024-01-01 03:58:00"), open)
        .await
        .unwrap();
    assert_eq!(q.bars.len(), 11);
    assert!(q.bars.iter().all(|b| b.start.micros() % 60_000_000 == 0));
    assert!(!q.bars.iter().any(|b| b.start == at("2024-01-01 03:50:00")));
    let first = &q.bars[0];
    assert_eq!(
        (first.start, first.open, first.close, first.volume),
        (open, 2580.0, 2580.1, 7328)
    );
    assert_eq!(q.bars[1].open, 2580.1, "32-bit noise is gone");
    let latest = q.latest.unwrap();
    assert_eq!(latest.timestamp, at("2024-01-01 03:57:17"));
    assert_eq!(
        (latest.bid, latest.ask, latest.spread),
        (latest.bid, latest.bid, 0.0)
    );
    // Only completed minutes, and only since the lookback's start.
    let q = yahoo
        .fetch("RELIANCE.NS", at("2024-01-01 03:50:30"), open)
        .await
        .unwrap();
    assert_eq!(q.bars.len(), 5);
    let q = yahoo
        .fetch(
            "RELIANCE.NS",
            at("2024-01-01 03:58:00"),
            at("2024-01-01 03:54:00"),
        )
        .await
        .unwrap();
    assert_eq!(q.bars.len(), 3);

    // No data today is no quotes, not an error.
    let q = yahoo
        .fetch("TCS.NS", at("2024-01-01 03:58:00"), open)
        .await
        .unwrap();
    assert!(q.bars.is_empty() && q.latest.is_none());

    // An unknown symbol is Yahoo's own reason, at once.
    let e = yahoo
        .fetch("DELISTED.NS", at("2024-01-01 03:58:00"), open)
        .await;
    assert_eq!(
        e,
        Err(FetchError::Http {
            status: 404,
            message: "Not Found: No data found, symbol may be delisted".into()
        })
    );
    assert_eq!(replay.hits("DELISTED.NS"), 1);

    // Rate limiting and a bad gateway are retried; rate limiting that lasts is an error.
    assert_eq!(
        yahoo
            .fetch("BUSY.NS", at("2024-01-01 03:58:00"), open)
            .await
            .map(|q| q.bars.len()),
        Ok(11)
    );
    assert_eq!(replay.hits("BUSY.NS"), 3);
    assert_eq!(
        yahoo
            .fetch("FLAKY.NS", at("2024-01-01 03:58:00"), open)
            .await
            .map(|q| q.bars.len()),
        Ok(11)
    );
    assert_eq!(
        yahoo
            .fetch("THROTTLED.NS", at("2024-01-01 03:58:00"), open)
            .await,
        Err(FetchError::RateLimited { attempts: 3 })
    );
    assert_eq!(replay.hits("THROTTLED.NS"), 3);
    assert!(matches!(
        yahoo
            .fetch("GARBAGE.NS", at("2024-01-01 03:58:00"), open)
            .await,
        Err(FetchError::Malformed(_))
    ));

    // A server that does not answer in time.
    let mut impatient = provider(&replay, Duration::from_millis(300));
    impatient.attempts = 1;
    match impatient
        .fetch("SLOW.NS", at("2024-01-01 03:58:00"), open)
        .await
    {
        Err(FetchError::Transport(reason)) => assert!(reason.contains("timed out"), "{reason}"),
        other => panic!("{other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fetched_quotes_become_candles_and_a_failing_symbol_does_not_stop_the_others() {
    let h = Harness::start("fetched").await.unwrap();
    let replay = YahooReplay::start().await.unwrap();
    let fetch = FetchQuotes {
        provider: Provider::Yahoo(provider(&replay, Duration::from_secs(2))),
        publisher: Publisher::Kafka(
            tick_producer(&h.stack.kafka_brokers, &h.names.tick_topic).unwrap(),
        ),
        symbols: vec!["RELIANCE.NS".into(), "DELISTED.NS".into(), "TCS.NS".into()],
        lookback: Duration::from_secs(30 * 60),
        ignore_market_hours: false,
    };
    let now = at("2024-01-01 03:58:00");
    let report = fetch.run(now).await.unwrap();
    let lines: Vec<_> = report
        .symbols
        .iter()
        .map(|s| (s.symbol.as_str(), s.bars, s.ticks, s.error.is_some()))
        .collect();
    assert_eq!(
        lines,
        [
            ("RELIANCE.NS", 11, 1, false),
            ("DELISTED.NS", 0, 0, true),
            ("TCS.NS", 0, 0, false)
        ]
    );
    assert_eq!(report.published, 12);
    // The next run publishes the same bars again: the same records.
    assert_eq!(fetch.run(now).await.unwrap().published, 12);

    let progress = h
        .poll_until_processed("e2e-fetched", 24, Duration::from_secs(120))
        .await
        .unwrap();
    assert_eq!(progress.snapshot().rejected, 0);

    let quotes = provider(&replay, Duration::from_secs(2))
        .fetch("RELIANCE.NS", now, Timestamp::from_micros(0))
        .await
        .unwrap();
    let mut fold = CandleFold::default();
    let mut m1: Vec<Candle> = quotes.bars.iter().map(|b| b.candle()).collect();
    m1.push(Candle::from_tick(Interval::M1, &quotes.latest.unwrap()));
    for c in &m1 {
        for interval in Interval::ALL {
            fold.add("RELIANCE.NS", interval, &c.rolled_up(interval));
        }
    }
    let want = with_indicators(fold.into_sorted(), Price::Close);
    let got: wtc_tests::CandleView = h
        .stored_candles()
        .await
        .unwrap()
        .into_iter()
        .filter(|((series, _), _)| series.starts_with("RELIANCE.NS#"))
        .collect();
    assert_eq!(got, want);
    assert!(
        got.values()
            .any(|(_, v)| v.is_some_and(|v| v.ema8.is_some()))
    );

    // Every symbol failing fails the run; a closed market is skipped, not failed.
    let mut failing = fetch.clone();
    failing.symbols = vec!["DELISTED.NS".into(), "THROTTLED.NS".into()];
    assert!(matches!(
        failing.run(now).await,
        Err(RunError::AllFailed(_))
    ));
    let saturday = fetch.run(at("2024-01-06 05:00:00")).await.unwrap();
    assert_eq!(saturday.published, 0);
    assert!(
        saturday
            .symbols
            .iter()
            .all(|s| s.skipped.as_deref() == Some("market closed"))
    );
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compute_indicators_backfills_and_finishes_what_a_crashed_writer_left() {
    let h = Harness::start("backfill").await.unwrap();
    let ticks: Vec<Tick> = ForexSimulator::new(31).take(6_000).collect();
    for (n, batch) in ticks.chunks(600).enumerate() {
        h.function
            .handle(&kafka_event(&records_of(batch, 0, n as i64 * 600)))
            .await;
    }
    // Pages of 7 candles: every advance below takes several, each committed before the next.
    let compute = ComputeIndicators {
        candles: h.function.candles.clone().with_rewind_page(7),
    };
    let series = |view: wtc_tests::CandleView, name: &str| -> wtc_tests::CandleView {
        view.into_iter().filter(|((s, _), _)| s == name).collect()
    };

    // A new price basis recomputes the whole series.
    let out = compute
        .handle(&serde_json::json!({"symbol": "MRVZAR", "interval": "M1", "price": "open"}))
        .await
        .unwrap();
    let want = series(expected_candles(&ticks, Price::Open), "MRVZAR#M1");
    assert!(want.len() > 3 * 7, "several pages: {}", want.len());
    assert_eq!(
        (
            out[0].closed + out[0].recomputed,
            out[0].last_closed.clone()
        ),
        (
            want.len() - 1,
            want.keys().nth_back(1).map(|(_, t)| t.to_seconds_string())
        ),
        "{out:?}"
    );
    assert_eq!(series(h.stored_candles().await.unwrap(), "MRVZAR#M1"), want);
    assert_eq!(
        series(h.stored_candles().await.unwrap(), "WAKMRV#M1"),
        series(expected_candles(&ticks, Price::Close), "WAKMRV#M1"),
        "other series keep theirs"
    );
    // Back to the close, and close the newest candle too (the day is over).
    compute
        .handle(&serde_json::json!({
            "symbol": "MRVZAR", "interval": "M1", "price": "close", "close_all": true
        }))
        .await
        .unwrap();
    let stored = series(h.stored_candles().await.unwrap(), "MRVZAR#M1");
    let want = series(expected_candles(&ticks, Price::Close), "MRVZAR#M1");
    let newest = want.keys().last().unwrap().clone();
    for (key, value) in &want {
        if *key != newest {
            assert_eq!(stored.get(key), Some(value), "{key:?}");
        }
    }
    assert!(stored[&newest].1.is_some(), "the newest candle closed");

    // A writer that committed a state and died before writing values: the schedule finishes it.
    let first = *series(h.stored_candles().await.unwrap(), "WAKMRV#M1")
        .keys()
        .nth(3)
        .map(|(_, t)| t)
        .unwrap();
    for (key, _) in series(h.stored_candles().await.unwrap(), "WAKMRV#M1") {
        h.dynamo
            .update_item()
            .table_name(&h.names.candles_table)
            .key("series", AttributeValue::S(key.0.clone()))
            .key("start", AttributeValue::S(key.1.to_seconds_string()))
            .update_expression("REMOVE indicators")
            .send()
            .await
            .unwrap();
    }
    h.dynamo
        .update_item()
        .table_name(&h.names.indicator_state_table)
        .key("series", AttributeValue::S("WAKMRV#M1".into()))
        .update_expression("SET pending = :p")
        .expression_attribute_values(":p", AttributeValue::S(first.to_string()))
        .send()
        .await
        .unwrap();
    let out = compute
        .handle(
            &serde_json::json!({"detail-type": "Scheduled Event", "time": "2024-01-01T05:00:00Z"}),
        )
        .await
        .unwrap();
    assert_eq!(out.len(), 1, "{out:?}");
    let stored = series(h.stored_candles().await.unwrap(), "WAKMRV#M1");
    let want = series(expected_candles(&ticks, Price::Close), "WAKMRV#M1");
    let (before, after): (Vec<_>, Vec<_>) = stored.iter().partition(|((_, t), _)| *t < first);
    assert!(
        before.iter().all(|(_, (_, v))| v.is_none()),
        "untouched before the mark"
    );
    for (key, value) in after {
        assert_eq!(Some(value), want.get(key), "{key:?}");
    }
    // Bad requests say what is expected.
    let e = compute
        .handle(&serde_json::json!({"symbol": "MRVZAR", "interval": "M5"}))
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("\"M1\"|\"M30\"|\"H1\""), "{e}");
    h.stop().await;
}
