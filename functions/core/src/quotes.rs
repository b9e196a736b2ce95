//! Fetched market data: 1-minute bars, the records on the tick topic, trading hours, and a seeded
//! simulated market.
//!
//! fetch-quotes publishes two kinds of record to the tick topic (or stream): the latest price of a
//! symbol as a tick (the forex tick shape, `pair_name` carrying the symbol, bid = ask) and each
//! completed 1-minute bar:
//!
//! `{"symbol": "RELIANCE.NS", "start": "2024-01-01 03:45:00.000000", "open": 2950.1,
//! "high": 2951.0, "low": 2949.55, "close": 2950.6, "volume": 12034}`
//!
//! A bar's identity is (symbol, start): keyed `"RELIANCE.NS-2024-01-01 03:45"` like a tick, so a
//! bar fetched twice is the same record and lands in the same partition.

use crate::candles::{Candle, Interval};
use crate::tick::{MAX_PRICE, MAX_SYMBOL_LEN, Tick, TickRejection};
use crate::time::Timestamp;
use rand::SeedableRng;
use rand::distr::{Distribution, Uniform};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

const MINUTE: i64 = 60_000_000;
const DAY: i64 = 86_400_000_000;

/// A completed 1-minute bar of one symbol.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Bar {
    pub symbol: String,
    #[serde(with = "crate::time::wtc_text")]
    pub start: Timestamp,
    pub open: f64,
    pub high: f64,
    pub low: f64,
    pub close: f64,
    pub volume: u64,
}

/// Why a bar was rejected.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum BarRejection {
    #[error("not a bar: {0}")]
    Shape(String),
    #[error(
        "field `symbol` must be 1 to {MAX_SYMBOL_LEN} printable characters without spaces, found {0:?}"
    )]
    Symbol(String),
    #[error("field `start` must be the start of a minute, found {0}")]
    NotAMinute(Timestamp),
    #[error("field `{field}` must be a positive finite price up to {MAX_PRICE}, found {value}")]
    Price { field: &'static str, value: f64 },
    #[error(
        "prices out of order: low {low} <= open {open}, close {close} <= high {high} must hold"
    )]
    Range {
        open: f64,
        high: f64,
        low: f64,
        close: f64,
    },
}

impl Bar {
    /// Decodes and validates one record value.
    pub fn decode(value: &[u8]) -> Result<Bar, BarRejection> {
        let bar: Bar =
            serde_json::from_slice(value).map_err(|e| BarRejection::Shape(e.to_string()))?;
        bar.validate()?;
        Ok(bar)
    }

    pub fn validate(&self) -> Result<(), BarRejection> {
        let s = &self.symbol;
        if s.is_empty()
            || s.len() > MAX_SYMBOL_LEN
            || s.chars().any(|c| c.is_whitespace() || c.is_control())
        {
            return Err(BarRejection::Symbol(s.clone()));
        }
        if self.start.micros().rem_euclid(MINUTE) != 0 {
            return Err(BarRejection::NotAMinute(self.start));
        }
        for (field, value) in [
            ("open", self.open),
            ("high", self.high),
            ("low", self.low),
            ("close", self.close),
        ] {
            if !(value > 0.0 && value <= MAX_PRICE) {
                return Err(BarRejection::Price { field, value });
            }
        }
        let ordered =
            self.low <= self.open.min(self.close) && self.open.max(self.close) <= self.high;
        if !ordered {
            return Err(BarRejection::Range {
                open: self.open,
                high: self.high,
                low: self.low,
                close: self.close,
            });
        }
        Ok(())
    }

    /// The value in the wire format.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    /// The Kafka key: the JSON string `"RELIANCE.NS-2024-01-01 03:45"`.
    pub fn key(&self) -> String {
        minute_key(&self.symbol, self.start)
    }

    /// The bar as an M1 candle (volume kept; no ticks).
    pub fn candle(&self) -> Candle {
        let close_at = Timestamp::from_micros(self.start.micros() + MINUTE - 1);
        Candle {
            start: self.start,
            open: self.open,
            high: self.high,
            low: self.low,
            close: self.close,
            open_at: self.start,
            close_at,
            ticks: 0,
            mid_sum_nanos: 0,
            volume: self.volume as f64,
        }
    }
}

/// The key of a record about one symbol in one minute, as the reference generator writes it for
/// ticks: a JSON string, `"MRVZAR-2024-01-01 00:00"`.
pub fn minute_key(symbol: &str, at: Timestamp) -> String {
    let text = at.to_seconds_string();
    format!("\"{symbol}-{}\"", &text[..16])
}

/// One record of the tick topic.
#[derive(Debug, Clone, PartialEq)]
pub enum MarketRecord {
    Tick(Tick),
    Bar(Bar),
}

/// Why a record of the tick topic was rejected.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum RecordRejection {
    #[error("{0}")]
    Tick(#[from] TickRejection),
    #[error("{0}")]
    Bar(#[from] BarRejection),
}

impl MarketRecord {
    /// A record naming a `symbol` (and no `pair_name`) is a bar; anything else must be a tick.
    pub fn decode(value: &[u8]) -> Result<MarketRecord, RecordRejection> {
        let has = |needle: &[u8]| value.windows(needle.len()).any(|w| w == needle);
        if !has(b"\"pair_name\"") && has(b"\"symbol\"") {
            Ok(MarketRecord::Bar(Bar::decode(value)?))
        } else {
            Ok(MarketRecord::Tick(Tick::decode(value)?))
        }
    }
}

/// Day of the week of an instant, UTC: 0 = Monday .. 6 = Sunday.
pub fn weekday(t: Timestamp) -> u32 {
    // 1970-01-01 was a Thursday.
    (t.micros().div_euclid(DAY) + 3).rem_euclid(7) as u32
}

/// The market a symbol trades on, by Yahoo's naming.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Market {
    /// National Stock Exchange of India (`.NS`) or BSE (`.BO`): 09:15-15:30 IST, weekdays.
    Nse,
    /// Forex (`EURUSD=X`) and the curriculum's fictitious pairs: around the clock on weekdays.
    Forex,
}

impl Market {
    pub fn of(symbol: &str) -> Market {
        if symbol.ends_with(".NS") || symbol.ends_with(".BO") {
            Market::Nse
        } else {
            Market::Forex
        }
    }

    /// Whether the market trades at `t` (exchange holidays are not modelled).
    pub fn is_open(self, t: Timestamp) -> bool {
        match self {
            Market::Nse => {
                // IST is UTC+05:30 all year.
                let ist = Timestamp::from_micros(t.micros() + 19_800_000_000);
                let minute = ist.micros().rem_euclid(DAY) / MINUTE;
                weekday(ist) < 5 && (9 * 60 + 15..15 * 60 + 30).contains(&minute)
            }
            Market::Forex => weekday(t) < 5,
        }
    }
}

/// A seeded market: each symbol follows a geometric random walk, one step per second, that starts
/// each UTC day afresh from a price drawn for that day. A bar depends only on the seed, the
/// symbol and its minute, so asking for it twice (or from two processes) gives the same bar.
#[derive(Debug, Clone)]
pub struct SimulatedMarket {
    seed: u64,
    /// Volatility per one-second step (log return's standard deviation, approximately).
    step: f64,
}

impl SimulatedMarket {
    pub fn new(seed: u64) -> Self {
        Self { seed, step: 0.0004 }
    }

    fn rng(&self, symbol: &str, day: i64) -> ChaCha8Rng {
        // FNV-1a over the symbol, mixed with the seed and the day: stable across builds.
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for b in symbol.bytes() {
            h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
        }
        h ^= self.seed.rotate_left(17) ^ (day as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        ChaCha8Rng::seed_from_u64(h)
    }

    /// A plausible opening price for the symbol, stable per symbol.
    fn base_price(symbol: &str) -> f64 {
        match symbol {
            "RELIANCE.NS" => 2_580.0,
            "TCS.NS" => 3_790.0,
            "INFY.NS" => 1_540.0,
            "HDFCBANK.NS" => 1_700.0,
            "EURUSD=X" => 1.10,
            "MRVZAR" => 1.5,
            "WAKMRV" => 1.5,
            _ => 100.0,
        }
    }

    /// The bar of `symbol` for the minute starting at `start` (a minute boundary).
    pub fn bar(&self, symbol: &str, start: Timestamp) -> Bar {
        let day = start.micros().div_euclid(DAY);
        let minute_of_day = start.micros().rem_euclid(DAY) / MINUTE;
        let mut rng = self.rng(symbol, day);
        let shock = Uniform::new_inclusive(-1.0, 1.0).unwrap_or_else(|_| unreachable!());
        let volume = Uniform::new_inclusive(0u64, 400).unwrap_or_else(|_| unreachable!());
        let scale = self.step * 3f64.sqrt(); // a uniform on [-1, 1] has variance 1/3
        let mut log_price = Self::base_price(symbol).ln() + 0.02 * shock.sample(&mut rng);
        let mut bar = None;
        for m in 0..=minute_of_day {
            let open = log_price;
            let (mut high, mut low) = (open, open);
            let mut traded = 0;
            for _ in 0..60 {
                log_price += scale * shock.sample(&mut rng);
                high = high.max(log_price);
                low = low.min(log_price);
                traded += volume.sample(&mut rng);
            }
            if m == minute_of_day {
                let price = |x: f64| round_price(x.exp());
                bar = Some(Bar {
                    symbol: symbol.to_owned(),
                    start,
                    open: price(open),
                    high: price(high),
                    low: price(low),
                    close: price(log_price),
                    volume: traded,
                });
            }
        }
        bar.unwrap_or_else(|| unreachable!("the loop runs through minute_of_day"))
    }

    /// The latest price at `at` as a tick (bid = ask: a last-trade price carries no spread).
    pub fn tick(&self, symbol: &str, at: Timestamp) -> Tick {
        let minute = Timestamp::from_micros(Interval::M1.bucket(at).micros() - MINUTE);
        let price = self.bar(symbol, minute).close;
        Tick {
            pair: symbol.to_owned(),
            timestamp: at,
            bid: price,
            ask: price,
            spread: 0.0,
        }
    }
}

/// Prices at 4 decimals, as the reference generator writes them.
pub fn round_price(x: f64) -> f64 {
    (x * 1e4).round() / 1e4
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> Timestamp {
        Timestamp::parse(text).unwrap_or_else(|e| panic!("{text}: {e}"))
    }

    #[test]
    fn bars_round_trip_and_are_keyed_by_symbol_and_minute() {
        let bar = SimulatedMarket::new(7).bar("RELIANCE.NS", at("2024-01-01 03:45:00.000000"));
        let decoded = Bar::decode(bar.to_json().as_bytes());
        assert_eq!(decoded, Ok(bar.clone()));
        assert_eq!(bar.key(), "\"RELIANCE.NS-2024-01-01 03:45\"");
        assert!(bar.to_json().starts_with(
            r#"{"symbol":"RELIANCE.NS","start":"2024-01-01 03:45:00.000000","open":"#
        ));
        match MarketRecord::decode(bar.to_json().as_bytes()) {
            Ok(MarketRecord::Bar(b)) => assert_eq!(b, bar),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn bad_bars_say_why() {
        let cases = [
            (
                r#"{"symbol":"X","start":"2024-01-01 03:45:30.000000","open":1,"high":1,"low":1,"close":1,"volume":0}"#,
                "start of a minute",
            ),
            (
                r#"{"symbol":"X","start":"2024-01-01 03:45:00.000000","open":1,"high":0.5,"low":1,"close":1,"volume":0}"#,
                "out of order",
            ),
            (
                r#"{"symbol":"X","start":"2024-01-01 03:45:00.000000","open":-1,"high":1,"low":1,"close":1,"volume":0}"#,
                "field `open`",
            ),
            (
                r#"{"symbol":"X","start":"2024-01-01 03:45:00.000000","open":1,"high":1,"low":1,"close":1}"#,
                "missing field `volume`",
            ),
            (
                r#"{"symbol":"X","start":"2024-01-01 03:45:00.000000","open":1,"high":1,"low":1,"close":1,"volume":-3}"#,
                "invalid value",
            ),
            (
                r#"{"symbol":"A B","start":"2024-01-01 03:45:00.000000","open":1,"high":1,"low":1,"close":1,"volume":3}"#,
                "field `symbol`",
            ),
            (
                r#"{"symbol":"X","start":"2024-01-01 03:45:00.000000","open":1,"high":1,"low":1,"close":1,"volume":3,"extra":1}"#,
                "unknown field `extra`",
            ),
        ];
        for (json, reason) in cases {
            let err = MarketRecord::decode(json.as_bytes())
                .expect_err(json)
                .to_string();
            assert!(err.contains(reason), "{json}: {err}");
        }
        // Without `symbol`, a record must be a tick, and says what a tick lacks.
        let err = MarketRecord::decode(br#"{"price": 1}"#)
            .expect_err("no shape")
            .to_string();
        assert!(err.contains("unknown field `price`"), "{err}");
    }

    #[test]
    fn nse_trades_0915_to_1530_ist_on_weekdays() {
        // 2024-01-01 was a Monday; 09:15 IST is 03:45 UTC, 15:30 IST is 10:00 UTC.
        assert_eq!(weekday(at("2024-01-01 12:00:00.000000")), 0);
        let nse = Market::of("TCS.NS");
        assert!(!nse.is_open(at("2024-01-01 03:44:59.999999")));
        assert!(nse.is_open(at("2024-01-01 03:45:00.000000")));
        assert!(nse.is_open(at("2024-01-01 09:59:59.000000")));
        assert!(!nse.is_open(at("2024-01-01 10:00:00.000000")));
        assert!(!nse.is_open(at("2024-01-06 05:00:00.000000")), "Saturday");
        let fx = Market::of("EURUSD=X");
        assert_eq!(fx, Market::Forex);
        assert!(fx.is_open(at("2024-01-05 23:59:00.000000")));
        assert!(!fx.is_open(at("2024-01-07 12:00:00.000000")), "Sunday");
    }

    #[test]
    fn the_simulated_market_is_reproducible_and_plausible() {
        let market = SimulatedMarket::new(42);
        let start = at("2024-01-01 03:45:00.000000");
        let bar = market.bar("TCS.NS", start);
        assert_eq!(bar, SimulatedMarket::new(42).bar("TCS.NS", start));
        assert_ne!(bar, SimulatedMarket::new(43).bar("TCS.NS", start));
        assert_eq!(bar.validate(), Ok(()));
        assert!((3_500.0..4_100.0).contains(&bar.close), "{bar:?}");
        // Consecutive bars join up: a minute opens where the one before closed.
        let next = market.bar("TCS.NS", Timestamp::from_micros(start.micros() + MINUTE));
        assert!((next.open - bar.close).abs() < 1e-3, "{bar:?} {next:?}");
        let tick = market.tick(
            "TCS.NS",
            Timestamp::from_micros(start.micros() + MINUTE + 5),
        );
        assert_eq!(
            (tick.bid, tick.ask, tick.spread),
            (bar.close, bar.close, 0.0)
        );
    }
}
