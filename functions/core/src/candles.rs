//! OHLC candles per symbol at M1, M30 and H1, folded from ticks (mid price) or from 1-minute bars.
//!
//! A candle is a fold that does not depend on arrival order: open is the price at the earliest
//! timestamp, close at the latest, so a late tick lands where it belongs, and two partial candles
//! of the same bucket merge into the one a single pass would give. (Exactly-once under redelivery
//! is the store's job, as for the mid sums: counts and sums are kept over distinct ticks.)
//! M30 and H1 roll up from M1 candles with the same merge.

use crate::tick::{Tick, nanos_to_price};
use crate::time::Timestamp;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;

/// A candle interval.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Interval {
    M1,
    M30,
    H1,
}

impl Interval {
    pub const ALL: [Interval; 3] = [Interval::M1, Interval::M30, Interval::H1];

    pub fn micros(self) -> i64 {
        match self {
            Interval::M1 => 60_000_000,
            Interval::M30 => 1_800_000_000,
            Interval::H1 => 3_600_000_000,
        }
    }

    /// The start of the candle `t` falls in.
    pub fn bucket(self, t: Timestamp) -> Timestamp {
        Timestamp::from_micros(t.micros().div_euclid(self.micros()) * self.micros())
    }
}

/// One candle. `open_at`/`close_at` are the timestamps its open and close came from.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Candle {
    pub start: Timestamp,
    pub open: f64,
    pub high: f64,
    pub low: f64,
    pub close: f64,
    pub open_at: Timestamp,
    pub close_at: Timestamp,
    /// Ticks folded in (a fetched bar counts none: it carries its volume instead).
    pub ticks: u64,
    /// The sum of those ticks' mid prices in 1e-9 units: with `ticks`, the exact mean mid.
    pub mid_sum_nanos: i128,
    /// Traded volume, from fetched bars (ticks carry none).
    pub volume: f64,
}

impl Candle {
    /// A candle of one price at one instant.
    pub fn point(interval: Interval, at: Timestamp, price: f64, volume: f64) -> Self {
        Self {
            start: interval.bucket(at),
            open: price,
            high: price,
            low: price,
            close: price,
            open_at: at,
            close_at: at,
            ticks: 1,
            mid_sum_nanos: 0,
            volume,
        }
    }

    /// A candle from one tick's mid price.
    pub fn from_tick(interval: Interval, tick: &Tick) -> Self {
        Candle {
            mid_sum_nanos: i128::from(tick.mid_nanos()),
            ..Self::point(interval, tick.timestamp, tick.mid(), 0.0)
        }
    }

    /// The M1 candle of the ticks of one minute, given as (timestamp, mid in nano-units): what a
    /// store rebuilds from its record of the minute's distinct ticks. `None` when there are none.
    pub fn from_mids(mids: impl IntoIterator<Item = (Timestamp, i64)>) -> Option<Candle> {
        let mut candle: Option<Candle> = None;
        for (at, mid) in mids {
            let point = Candle {
                mid_sum_nanos: i128::from(mid),
                ..Candle::point(Interval::M1, at, nanos_to_price(mid), 0.0)
            };
            match &mut candle {
                Some(c) => c.merge(&point),
                None => candle = Some(point),
            }
        }
        candle
    }

    /// Merges another candle of the same bucket (or a finer one inside it, when rolling up).
    /// Ties on time go to the higher price, so the result never depends on the order of merging.
    pub fn merge(&mut self, other: &Candle) {
        if (other.open_at, -other.open) < (self.open_at, -self.open) {
            self.open = other.open;
            self.open_at = other.open_at;
        }
        if (other.close_at, other.close) > (self.close_at, self.close) {
            self.close = other.close;
            self.close_at = other.close_at;
        }
        self.high = self.high.max(other.high);
        self.low = self.low.min(other.low);
        self.ticks += other.ticks;
        self.mid_sum_nanos += other.mid_sum_nanos;
        self.volume += other.volume;
    }

    /// This candle as a candle of a coarser interval, ready to merge into it.
    pub fn rolled_up(&self, interval: Interval) -> Candle {
        Candle {
            start: interval.bucket(self.start),
            ..*self
        }
    }
}

/// Candles being folded, one per (symbol, interval, start). Keyed by symbol first, so a lookup
/// borrows the tick's symbol instead of allocating a key.
#[derive(Debug, Default, Clone)]
pub struct CandleFold {
    candles: HashMap<String, HashMap<(Interval, Timestamp), Candle>>,
}

impl CandleFold {
    /// Folds a tick into its M1, M30 and H1 candles.
    pub fn add_tick(&mut self, tick: &Tick) {
        let m1 = Candle::from_tick(Interval::M1, tick);
        self.with_series(&tick.pair, |series| {
            for interval in Interval::ALL {
                merge_into(series, interval, &m1.rolled_up(interval));
            }
        });
    }

    /// Merges a candle of `interval` into the fold.
    pub fn add(&mut self, symbol: &str, interval: Interval, candle: &Candle) {
        self.with_series(symbol, |series| merge_into(series, interval, candle));
    }

    fn with_series(
        &mut self,
        symbol: &str,
        f: impl FnOnce(&mut HashMap<(Interval, Timestamp), Candle>),
    ) {
        match self.candles.get_mut(symbol) {
            Some(series) => f(series),
            None => {
                let mut series = HashMap::new();
                f(&mut series);
                self.candles.insert(symbol.to_owned(), series);
            }
        }
    }

    pub fn len(&self) -> usize {
        self.candles.values().map(HashMap::len).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The candles, sorted by symbol, interval and start.
    pub fn into_sorted(self) -> Vec<((String, Interval, Timestamp), Candle)> {
        let mut out: Vec<_> = self
            .candles
            .into_iter()
            .flat_map(|(symbol, series)| {
                series
                    .into_iter()
                    .map(move |((interval, start), c)| ((symbol.clone(), interval, start), c))
            })
            .collect();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }
}

fn merge_into(
    series: &mut HashMap<(Interval, Timestamp), Candle>,
    interval: Interval,
    candle: &Candle,
) {
    series
        .entry((interval, candle.start))
        .and_modify(|c| c.merge(candle))
        .or_insert(*candle);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::simulate::ForexSimulator;
    use proptest::prelude::*;

    fn fold(ticks: &[Tick]) -> Vec<((String, Interval, Timestamp), Candle)> {
        let mut f = CandleFold::default();
        ticks.iter().for_each(|t| f.add_tick(t));
        f.into_sorted()
    }

    #[test]
    fn an_m1_candle_is_the_minute_s_mids() {
        let ticks: Vec<Tick> = ForexSimulator::new(3).take(400).collect();
        let candles = fold(&ticks);
        let ((pair, interval, start), c) = &candles[0];
        assert_eq!((pair.as_str(), *interval), ("MRVZAR", Interval::M1));
        let minute: Vec<f64> = ticks
            .iter()
            .filter(|t| t.pair == "MRVZAR" && Interval::M1.bucket(t.timestamp) == *start)
            .map(Tick::mid)
            .collect();
        assert_eq!(c.open, minute[0]);
        assert_eq!(c.close, *minute.last().unwrap());
        assert_eq!(c.high, minute.iter().cloned().fold(f64::MIN, f64::max));
        assert_eq!(c.low, minute.iter().cloned().fold(f64::MAX, f64::min));
        assert_eq!(c.ticks, minute.len() as u64);
    }

    #[test]
    fn a_candle_from_stored_mids_equals_the_one_from_ticks() {
        let ticks: Vec<Tick> = ForexSimulator::new(5).take(300).collect();
        let minute = Interval::M1.bucket(ticks[0].timestamp);
        let of_minute: Vec<&Tick> = ticks
            .iter()
            .filter(|t| t.pair == "WAKMRV" && Interval::M1.bucket(t.timestamp) == minute)
            .collect();
        let mut from_ticks = Candle::from_tick(Interval::M1, of_minute[0]);
        of_minute[1..]
            .iter()
            .for_each(|t| from_ticks.merge(&Candle::from_tick(Interval::M1, t)));
        let stored = of_minute.iter().rev().map(|t| (t.timestamp, t.mid_nanos()));
        assert_eq!(Candle::from_mids(stored), Some(from_ticks));
        assert_eq!(Candle::from_mids([]), None);
    }

    #[test]
    fn h1_rolls_up_from_m1() {
        let ticks: Vec<Tick> = ForexSimulator::new(4).take(30_000).collect();
        let candles = fold(&ticks);
        let mut rolled = CandleFold::default();
        for ((pair, interval, _), c) in &candles {
            if *interval == Interval::M1 {
                rolled.add(pair, Interval::H1, &c.rolled_up(Interval::H1));
            }
        }
        let direct: Vec<_> = candles
            .into_iter()
            .filter(|(k, _)| k.1 == Interval::H1)
            .collect();
        assert!(direct.len() >= 2);
        assert_eq!(rolled.into_sorted(), direct);
    }

    proptest! {
        #[test]
        fn candles_do_not_depend_on_arrival_order(seed in 0u64..500, rotate in 0usize..300) {
            let ticks: Vec<Tick> = ForexSimulator::new(seed).take(300).collect();
            let mut late = ticks.clone();
            late.rotate_left(rotate);
            late.reverse();
            prop_assert_eq!(fold(&ticks), fold(&late));
        }
    }
}
