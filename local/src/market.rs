//! The market-data side of a local run: fetch-quotes in this process, on a simulated clock
//! (a trading session replayed as fast as the broker acknowledges) or live every minute, and a
//! table of the candles and indicators that came of it.

use crate::progress::Progress;
use anyhow::{Context, Result};
use fetch_quotes::FetchQuotes;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use wtc_aws::CandleStore;
use wtc_aws::candles::series_key;
use wtc_core::candles::Interval;
use wtc_core::indicators::IndicatorValues;
use wtc_core::time::Timestamp;

/// The simulated session starts at the NSE open on 2024-01-01 (a Monday), 09:15 IST, the day
/// the forex generator's ticks start too.
pub const SESSION_START: Timestamp = Timestamp::from_micros(1_704_080_700_000_000);

/// Runs fetch-quotes once per simulated minute for `minutes` minutes from `SESSION_START`, each
/// run publishing the minute just completed. Returns the records published.
pub async fn replay_session(fetch: &FetchQuotes, minutes: u32, progress: &Progress) -> Result<u64> {
    let mut published = 0;
    for m in 1..=i64::from(minutes) {
        let now = Timestamp::from_micros(SESSION_START.micros() + m * 60_000_000);
        let report = fetch
            .run(now)
            .await
            .with_context(|| format!("fetching quotes at {now}"))?;
        Progress::add(&progress.produced, report.published);
        published += report.published;
    }
    Ok(published)
}

/// Runs fetch-quotes a few seconds after every wall-clock minute until `stop` (or once, with
/// `once`), printing what each run fetched.
pub async fn fetch_live(
    fetch: &FetchQuotes,
    progress: &Progress,
    stop: &AtomicBool,
    once: bool,
) -> Result<()> {
    loop {
        let now = fetch_quotes::run_time(&serde_json::Value::Null).map_err(anyhow::Error::msg)?;
        match fetch.run(now).await {
            Ok(report) => {
                Progress::add(&progress.produced, report.published);
                for s in &report.symbols {
                    let state = match (&s.skipped, &s.error) {
                        (Some(why), _) => format!("skipped ({why})"),
                        (_, Some(e)) => format!("failed: {e}"),
                        _ => format!("{} bars, {} ticks", s.bars, s.ticks),
                    };
                    println!("fetch-quotes {}: {} {state}", report.at, s.symbol);
                }
            }
            Err(e) => println!("fetch-quotes at {now}: {e}"),
        }
        if once {
            return Ok(());
        }
        let into_minute = now.micros().rem_euclid(60_000_000);
        let wait = Duration::from_micros((60_000_000 - into_minute + 5_000_000) as u64);
        let deadline = tokio::time::Instant::now() + wait;
        while tokio::time::Instant::now() < deadline {
            if stop.load(Ordering::Relaxed) {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

fn value(v: Option<f64>) -> String {
    v.map_or_else(|| "-".to_owned(), |x| format!("{x:.4}"))
}

/// One line of indicator values.
pub fn indicator_line(v: &IndicatorValues) -> String {
    let macd = v.macd.map_or_else(
        || "-".to_owned(),
        |m| format!("{:.4}/{:.4}/{:.4}", m.macd, m.signal, m.histogram),
    );
    format!(
        "sma20 {} ema8 {} ema12 {} ema21 {} ema26 {} rsi14 {} macd {} atr8 {} atr21 {}",
        value(v.sma20),
        value(v.ema8),
        value(v.ema12),
        value(v.ema21),
        value(v.ema26),
        value(v.rsi14),
        macd,
        value(v.atr8),
        value(v.atr21),
    )
}

/// Per symbol: its candles per interval, the minutes they span, and the newest closed M1
/// candle with its indicators.
pub async fn candle_table(store: &CandleStore, symbols: &[String]) -> Result<String> {
    let mut out = String::from("candles and indicators (newest closed M1 candle):\n");
    for symbol in symbols {
        let mut counts = Vec::new();
        let mut m1 = Vec::new();
        for interval in Interval::ALL {
            let series = store
                .query(&series_key(symbol, interval), None, None)
                .await
                .map_err(anyhow::Error::msg)?;
            counts.push(format!("{interval:?} {}", series.len()));
            if interval == Interval::M1 {
                m1 = series;
            }
        }
        let span = match (m1.first(), m1.last()) {
            (Some(a), Some(b)) => {
                let (a, b) = (
                    a.candle.start.to_seconds_string(),
                    b.candle.start.to_seconds_string(),
                );
                // The end's date only when it is another day.
                let end = if a[..10] == b[..10] {
                    &b[11..16]
                } else {
                    &b[..16]
                };
                format!("{} to {end}", &a[..16])
            }
            _ => "no candles".to_owned(),
        };
        let _ = write!(out, "  {symbol:<12} {} ({span})", counts.join(", "));
        match m1.iter().rev().find(|c| c.values.is_some()) {
            Some(c) => {
                let values = c.values.unwrap_or_default();
                let _ = writeln!(
                    out,
                    "\n    {} close {:.4} | {}",
                    &c.candle.start.to_seconds_string()[..16],
                    c.candle.close,
                    indicator_line(&values)
                );
            }
            None => out.push_str(" | no closed candle yet\n"),
        }
    }
    Ok(out)
}
