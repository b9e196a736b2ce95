//! Candles and indicators end to end on the real local stack: batches into process-ticks, candles
//! and indicator states in moto's DynamoDB, compared with one clean pass computed here.

use wtc_core::Tick;
use wtc_core::candles::{Candle, CandleFold, Interval};
use wtc_core::indicators::Price;
use wtc_core::quotes::SimulatedMarket;
use wtc_core::simulate::ForexSimulator;
use wtc_core::time::Timestamp;
use wtc_tests::{Harness, expected_candles, kafka_event, records_of, with_indicators};

fn ticks(seed: u64, n: usize) -> Vec<Tick> {
    ForexSimulator::new(seed).take(n).collect()
}

/// How many candles of the view have indicators, and how many have every indicator.
fn with_values(view: &wtc_tests::CandleView) -> (usize, usize) {
    let some = view.values().filter(|(_, v)| v.is_some()).count();
    let full = view
        .values()
        .filter_map(|(_, v)| v.as_ref())
        .filter(|v| v.macd.is_some() && v.sma20.is_some() && v.atr21.is_some())
        .count();
    (some, full)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn late_and_redelivered_ticks_leave_candles_and_indicators_as_one_clean_pass() {
    let h = Harness::start("candles-late").await.unwrap();
    // About 42 simulated minutes of both pairs: enough closed M1 candles for every indicator.
    let all = ticks(21, 10_000);
    let (late, on_time): (Vec<_>, Vec<_>) = all
        .iter()
        .cloned()
        .enumerate()
        .partition(|(i, _)| i % 13 == 5);
    let late: Vec<Tick> = late.into_iter().map(|(_, t)| t).collect();
    let on_time: Vec<Tick> = on_time.into_iter().map(|(_, t)| t).collect();

    // On-time ticks in order, every fourth batch delivered twice.
    let mut closed = 0;
    for (n, batch) in on_time.chunks(300).enumerate() {
        let event = kafka_event(&records_of(batch, (n % 12) as i32, n as i64 * 300));
        let result = h.function.handle(&event).await;
        assert_eq!(result.report.failed, 0, "{:?}", result.error);
        closed += result.report.candles_closed;
        if n % 4 == 0 {
            let again = h.function.handle(&event).await;
            closed += again.report.candles_closed;
        }
    }
    let before = h.stored_candles().await.unwrap();
    assert!(with_values(&before).0 > 60, "{:?}", with_values(&before));
    // Each candle that has indicators was counted closed once, redeliveries included.
    assert_eq!(closed, with_values(&before).0);

    // The late ticks, in two halves processed at once, then again with other boundaries.
    let (a, b) = late.split_at(late.len() / 2);
    let (ea, eb) = (
        kafka_event(&records_of(a, 1, 50_000)),
        kafka_event(&records_of(b, 2, 60_000)),
    );
    let (ra, rb) = tokio::join!(h.function.handle(&ea), h.function.handle(&eb));
    assert_eq!((ra.report.failed, rb.report.failed), (0, 0));
    assert!(ra.report.indicators_recomputed + rb.report.indicators_recomputed > 0);
    for batch in late.chunks(170) {
        h.function
            .handle(&kafka_event(&records_of(batch, 3, 70_000)))
            .await;
    }

    let want = expected_candles(&all, Price::Close);
    let got = h.stored_candles().await.unwrap();
    assert_eq!(got.len(), want.len());
    for (key, expected) in &want {
        assert_eq!(got.get(key), Some(expected), "{key:?}");
    }
    let (some, full) = with_values(&got);
    assert!(some > 80 && full > 10, "{some} {full}");
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fetched_bars_replace_the_candles_ticks_were_forming() {
    let h = Harness::start("candles-bars").await.unwrap();
    let market = SimulatedMarket::new(5);
    let open = Timestamp::parse("2024-01-01 03:45:00").unwrap();
    let minute = |m: i64| Timestamp::from_micros(open.micros() + m * 60_000_000);
    // The latest price, once a minute, for 40 minutes; then the bars of the first 38 (one batch
    // delivered twice): the last two minutes keep the candles their ticks formed.
    let ticks: Vec<Tick> = (0..40)
        .map(|m| {
            market.tick(
                "TCS.NS",
                Timestamp::from_micros(minute(m).micros() + 5_000_000),
            )
        })
        .collect();
    let bars: Vec<_> = (0..38).map(|m| market.bar("TCS.NS", minute(m))).collect();
    h.function
        .handle(&kafka_event(&records_of(&ticks, 0, 0)))
        .await;
    let values: Vec<Vec<u8>> = bars.iter().map(|b| b.to_json().into_bytes()).collect();
    let records = |from: usize, to: usize| -> Vec<(i32, i64, Vec<u8>)> {
        (from..to)
            .map(|i| (1, i as i64, values[i].clone()))
            .collect()
    };
    for event in [records(0, 20), records(20, 38), records(20, 38)] {
        let report = h.function.handle(&kafka_event(&event)).await.report;
        assert_eq!(
            (report.bars, report.failed, report.rejected),
            (event.len(), 0, 0)
        );
    }

    let mut m1: Vec<Candle> = bars.iter().map(|b| b.candle()).collect();
    m1.extend(
        ticks[38..]
            .iter()
            .map(|t| Candle::from_tick(Interval::M1, t)),
    );
    let mut fold = CandleFold::default();
    for c in &m1 {
        for interval in Interval::ALL {
            fold.add("TCS.NS", interval, &c.rolled_up(interval));
        }
    }
    let want = with_indicators(fold.into_sorted(), Price::Close);
    let got = h.stored_candles().await.unwrap();
    assert_eq!(got, want);
    let first = &got[&("TCS.NS#M1".to_owned(), open)].0;
    assert_eq!(first.volume, bars[0].volume as f64);
    assert!(with_values(&got).1 >= 4, "{:?}", with_values(&got));
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn indicators_can_read_the_open_price() {
    let h = Harness::start("candles-open").await.unwrap();
    let mut function = (*h.function).clone();
    function.candles.default_price = Price::Open;
    let all = ticks(22, 6_000);
    for (n, batch) in all.chunks(500).enumerate() {
        function
            .handle(&kafka_event(&records_of(batch, 0, n as i64 * 500)))
            .await;
    }
    assert_eq!(
        h.stored_candles().await.unwrap(),
        expected_candles(&all, Price::Open)
    );
    h.stop().await;
}
