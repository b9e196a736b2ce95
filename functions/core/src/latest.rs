//! The newest price of each symbol: what `/latest_price` serves with one item read.
//!
//! A batch yields, per symbol, its newest tick (bid, ask and their mid) or fetched bar (close and
//! volume, as of the bar's last instant). The store keeps the newest one anyone wrote, so
//! batches arriving out of time order never move a symbol's price back.

use crate::Tick;
use crate::quotes::Bar;
use crate::time::Timestamp;
use std::collections::HashMap;

/// Where a latest price came from.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum PriceSource {
    Tick { bid: f64, ask: f64, mid: f64 },
    Bar { close: f64, volume: f64 },
}

impl PriceSource {
    pub fn name(&self) -> &'static str {
        match self {
            PriceSource::Tick { .. } => "tick",
            PriceSource::Bar { .. } => "bar",
        }
    }
}

/// The newest price of one symbol.
#[derive(Debug, Clone, PartialEq)]
pub struct LatestPrice {
    pub symbol: String,
    pub source: PriceSource,
    /// When the price was quoted: the tick's timestamp, or a bar's last microsecond.
    pub at: Timestamp,
    /// The close of the symbol's last closed M1 candle, as its writer knew it.
    pub previous_close: Option<f64>,
    /// When it was stored (wall clock): how fresh the feed is, whatever the quote's own time.
    pub updated_at: Timestamp,
}

impl LatestPrice {
    /// The mid of a tick, the close of a bar.
    pub fn price(&self) -> f64 {
        match self.source {
            PriceSource::Tick { mid, .. } => mid,
            PriceSource::Bar { close, .. } => close,
        }
    }

    /// The price's move since the previous close, to the nano-unit prices are kept in (so a
    /// move of 0.0012 reads 0.0012, not 0.0011999999999998678).
    pub fn change(&self) -> Option<f64> {
        let nanos = |p: f64| (p * 1e9).round();
        self.previous_close
            .map(|p| (nanos(self.price()) - nanos(p)) / 1e9)
    }

    /// The newest tick or bar of every symbol in a batch, stamped `updated_at`, in symbol order.
    /// On equal times a tick wins over a bar, and of two ticks the higher mid, so the pick never
    /// depends on the order of the batch.
    pub fn newest(ticks: &[Tick], bars: &[Bar], updated_at: Timestamp) -> Vec<LatestPrice> {
        let mut newest: HashMap<&str, LatestPrice> = HashMap::new();
        let candidates = ticks
            .iter()
            .map(|t| {
                let source = PriceSource::Tick {
                    bid: t.bid,
                    ask: t.ask,
                    mid: t.mid(),
                };
                (t.pair.as_str(), t.timestamp, source)
            })
            .chain(bars.iter().map(|b| {
                let candle = b.candle();
                let source = PriceSource::Bar {
                    close: b.close,
                    volume: b.volume as f64,
                };
                (b.symbol.as_str(), candle.close_at, source)
            }));
        for (symbol, at, source) in candidates {
            let candidate = LatestPrice {
                symbol: symbol.to_owned(),
                source,
                at,
                previous_close: None,
                updated_at,
            };
            match newest.get_mut(symbol) {
                Some(held) if !candidate.is_newer_than(held) => {}
                Some(held) => *held = candidate,
                None => {
                    newest.insert(symbol, candidate);
                }
            }
        }
        let mut out: Vec<LatestPrice> = newest.into_values().collect();
        out.sort_by(|a, b| a.symbol.cmp(&b.symbol));
        out
    }

    fn is_newer_than(&self, other: &LatestPrice) -> bool {
        let rank = |l: &LatestPrice| {
            let tick = matches!(l.source, PriceSource::Tick { .. });
            (l.at, tick, l.price())
        };
        rank(self).partial_cmp(&rank(other)) == Some(std::cmp::Ordering::Greater)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tick(pair: &str, micros: i64, bid: f64, ask: f64) -> Tick {
        Tick {
            pair: pair.into(),
            timestamp: Timestamp::from_micros(micros),
            bid,
            ask,
            spread: ask - bid,
        }
    }

    #[test]
    fn the_newest_tick_or_bar_of_each_symbol_wins_in_any_order() {
        let minute = 1_704_080_700_000_000;
        let bar = Bar {
            symbol: "TCS.NS".into(),
            start: Timestamp::from_micros(minute),
            open: 10.0,
            high: 12.0,
            low: 9.0,
            close: 11.0,
            volume: 500,
        };
        let ticks = vec![
            tick("MRVZAR", minute + 2_000_000, 1.5, 1.6),
            tick("MRVZAR", minute + 1_000_000, 1.0, 1.1),
            tick("TCS.NS", minute - 1, 10.5, 10.5),
        ];
        let now = Timestamp::from_micros(minute + 90_000_000);
        let mut reversed = ticks.clone();
        reversed.reverse();
        for batch in [ticks, reversed] {
            let latest = LatestPrice::newest(&batch, std::slice::from_ref(&bar), now);
            assert_eq!(latest.len(), 2);
            assert_eq!(latest[0].symbol, "MRVZAR");
            assert_eq!(latest[0].at, Timestamp::from_micros(minute + 2_000_000));
            assert_eq!(latest[0].price(), 1.55);
            // The bar's close is as of its last microsecond, after the tick before the minute.
            assert_eq!(latest[1].source.name(), "bar");
            assert_eq!(latest[1].at, Timestamp::from_micros(minute + 59_999_999));
            assert_eq!(latest[1].price(), 11.0);
            assert_eq!(latest[1].updated_at, now);
        }
    }

    #[test]
    fn change_is_measured_from_the_previous_close() {
        let mut l = LatestPrice::newest(
            &[tick("MRVZAR", 0, 1.0, 2.0)],
            &[],
            Timestamp::from_micros(0),
        )
        .remove(0);
        assert_eq!(l.change(), None);
        l.previous_close = Some(1.25);
        assert_eq!(l.change(), Some(0.25));
        l.previous_close = Some(1.4988);
        assert_eq!(l.change(), Some(0.0012));
    }
}
