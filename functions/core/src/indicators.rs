//! Trading indicators, computed incrementally as candles close, with TA-Lib's definitions,
//! warm-up and seeding, so values match what traders' TA-Lib backtests give on the same candles.
//!
//! - SMA(n): the mean of the last n values; TA-Lib keeps a running total, and so do we.
//! - EMA(n): k = 2 / (n + 1); seeded with the SMA of the first n values (first value at index n-1).
//! - RSI(n): Wilder smoothing of gains and losses, seeded with their plain means over the first n
//!   changes (first value at index n); 0 when there was neither gain nor loss.
//! - MACD(fast, slow, signal): TA-Lib aligns the two EMAs. The slow EMA is seeded with the SMA of
//!   the first `slow` values; the fast one is seeded at the same bar with the SMA of the `fast`
//!   values ending there (not the first `fast` values). The signal is the EMA of the MACD line,
//!   seeded with the SMA of its first `signal` values, and all three outputs start with it.
//! - ATR(n): the true range needs the previous close, so it starts at index 1; ATR is seeded with
//!   the SMA of the first n true ranges (first value at index n), then Wilder smoothing.
//!
//! Each state is a small value that serialises (it is stored per series between invocations), and
//! `batch` computes the same over a whole series for backfills; tests pin both to TA-Lib's output.

use serde::{Deserialize, Serialize};
use std::collections::VecDeque;

/// TA-Lib's test for "zero" (`TA_IS_ZERO`), used by RSI.
const EPSILON: f64 = 1e-14;

/// Simple moving average.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Sma {
    period: usize,
    total: f64,
    window: VecDeque<f64>,
}

impl Sma {
    pub fn new(period: usize) -> Self {
        let period = period.max(1);
        Self {
            period,
            total: 0.0,
            window: VecDeque::with_capacity(period),
        }
    }

    pub fn update(&mut self, x: f64) -> Option<f64> {
        // As TA-Lib: add the new value, take the mean, then take the oldest out of the total.
        self.total += x;
        self.window.push_back(x);
        if self.window.len() < self.period {
            return None;
        }
        let mean = self.total / self.period as f64;
        self.total -= self.window.pop_front().unwrap_or(0.0);
        Some(mean)
    }
}

/// Exponential moving average.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Ema {
    period: usize,
    k: f64,
    seen: usize,
    seed: f64,
    value: f64,
}

impl Ema {
    pub fn new(period: usize) -> Self {
        let period = period.max(1);
        Self {
            period,
            k: 2.0 / (period as f64 + 1.0),
            seen: 0,
            seed: 0.0,
            value: 0.0,
        }
    }

    /// Starts already seeded (MACD's fast EMA is seeded from a window it does not see itself).
    fn seeded(period: usize, value: f64) -> Self {
        let mut e = Self::new(period);
        e.seen = e.period;
        e.value = value;
        e
    }

    pub fn update(&mut self, x: f64) -> Option<f64> {
        if self.seen < self.period {
            self.seen += 1;
            self.seed += x;
            if self.seen < self.period {
                return None;
            }
            self.value = self.seed / self.period as f64;
        } else {
            self.value = (x - self.value) * self.k + self.value;
        }
        Some(self.value)
    }
}

/// Relative strength index (Wilder).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Rsi {
    period: usize,
    previous: Option<f64>,
    changes: usize,
    gain: f64,
    loss: f64,
}

impl Rsi {
    pub fn new(period: usize) -> Self {
        Self {
            period: period.max(1),
            previous: None,
            changes: 0,
            gain: 0.0,
            loss: 0.0,
        }
    }

    pub fn update(&mut self, x: f64) -> Option<f64> {
        let previous = self.previous.replace(x)?;
        let change = x - previous;
        let n = self.period as f64;
        self.changes += 1;
        if self.changes <= self.period {
            if change < 0.0 {
                self.loss -= change;
            } else {
                self.gain += change;
            }
            if self.changes < self.period {
                return None;
            }
            self.loss /= n;
            self.gain /= n;
        } else {
            self.loss *= n - 1.0;
            self.gain *= n - 1.0;
            if change < 0.0 {
                self.loss -= change;
            } else {
                self.gain += change;
            }
            self.loss /= n;
            self.gain /= n;
        }
        let total = self.gain + self.loss;
        Some(if total.abs() < EPSILON {
            0.0
        } else {
            100.0 * (self.gain / total)
        })
    }
}

/// MACD line, signal and histogram.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct MacdValue {
    pub macd: f64,
    pub signal: f64,
    pub histogram: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Macd {
    fast_period: usize,
    slow: Ema,
    /// The last `fast_period` values, until the fast EMA is seeded from them.
    recent: VecDeque<f64>,
    fast: Option<Ema>,
    signal: Ema,
}

impl Macd {
    pub fn new(fast: usize, slow: usize, signal: usize) -> Self {
        // TA-Lib swaps the periods when given in the wrong order.
        let (fast, slow) = if slow < fast {
            (slow, fast)
        } else {
            (fast, slow)
        };
        Self {
            fast_period: fast.max(1),
            slow: Ema::new(slow),
            recent: VecDeque::with_capacity(fast.max(1)),
            fast: None,
            signal: Ema::new(signal),
        }
    }

    pub fn update(&mut self, x: f64) -> Option<MacdValue> {
        if self.fast.is_none() {
            self.recent.push_back(x);
            if self.recent.len() > self.fast_period {
                self.recent.pop_front();
            }
        }
        let slow = self.slow.update(x)?;
        let fast = match &mut self.fast {
            Some(f) => f.update(x).unwrap_or(f64::NAN),
            None => {
                // The slow EMA's first value: seed the fast EMA with the values ending here.
                let sum = self.recent.iter().fold(0.0, |sum, v| sum + v);
                let value = sum / self.fast_period as f64;
                self.fast = Some(Ema::seeded(self.fast_period, value));
                self.recent = VecDeque::new();
                value
            }
        };
        let macd = fast - slow;
        let signal = self.signal.update(macd)?;
        Some(MacdValue {
            macd,
            signal,
            histogram: macd - signal,
        })
    }
}

/// Average true range (Wilder), over high, low and a reference price (the close, or the open).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Atr {
    period: usize,
    previous: Option<f64>,
    seed: Sma,
    value: Option<f64>,
}

impl Atr {
    pub fn new(period: usize) -> Self {
        Self {
            period: period.max(1),
            previous: None,
            seed: Sma::new(period),
            value: None,
        }
    }

    pub fn update(&mut self, high: f64, low: f64, close: f64) -> Option<f64> {
        let previous = self.previous.replace(close)?;
        let mut range = high - low;
        range = range.max((previous - high).abs());
        range = range.max((previous - low).abs());
        let n = self.period as f64;
        let value = match self.value {
            None => {
                let first = self.seed.update(range)?;
                // Seeded: the window is not needed again, and states are stored per candle.
                self.seed = Sma::new(self.period);
                first
            }
            Some(v) => (v * (n - 1.0) + range) / n,
        };
        self.value = Some(value);
        Some(value)
    }
}

/// Which candle price a single-series indicator reads (and ATR takes as its reference close).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Price {
    Open,
    High,
    Low,
    #[default]
    Close,
}

/// A closed candle's prices.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Ohlc {
    pub open: f64,
    pub high: f64,
    pub low: f64,
    pub close: f64,
}

impl Ohlc {
    pub fn price(&self, price: Price) -> f64 {
        match price {
            Price::Open => self.open,
            Price::High => self.high,
            Price::Low => self.low,
            Price::Close => self.close,
        }
    }
}

/// The indicators kept per (symbol, interval), `None` until TA-Lib would have a value.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct IndicatorValues {
    pub sma20: Option<f64>,
    pub ema8: Option<f64>,
    pub ema12: Option<f64>,
    pub ema21: Option<f64>,
    pub ema26: Option<f64>,
    pub rsi14: Option<f64>,
    pub macd: Option<MacdValue>,
    pub atr8: Option<f64>,
    pub atr21: Option<f64>,
}

/// The state of every indicator of one series: updated once per closed candle.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IndicatorSet {
    pub price: Price,
    sma20: Sma,
    ema8: Ema,
    ema12: Ema,
    ema21: Ema,
    ema26: Ema,
    rsi14: Rsi,
    macd: Macd,
    atr8: Atr,
    atr21: Atr,
}

impl IndicatorSet {
    pub fn new(price: Price) -> Self {
        Self {
            price,
            sma20: Sma::new(20),
            ema8: Ema::new(8),
            ema12: Ema::new(12),
            ema21: Ema::new(21),
            ema26: Ema::new(26),
            rsi14: Rsi::new(14),
            macd: Macd::new(12, 26, 9),
            atr8: Atr::new(8),
            atr21: Atr::new(21),
        }
    }

    pub fn update(&mut self, candle: &Ohlc) -> IndicatorValues {
        let x = candle.price(self.price);
        IndicatorValues {
            sma20: self.sma20.update(x),
            ema8: self.ema8.update(x),
            ema12: self.ema12.update(x),
            ema21: self.ema21.update(x),
            ema26: self.ema26.update(x),
            rsi14: self.rsi14.update(x),
            macd: self.macd.update(x),
            atr8: self.atr8.update(candle.high, candle.low, x),
            atr21: self.atr21.update(candle.high, candle.low, x),
        }
    }
}

/// The same indicators over a whole series at once, written as TA-Lib's loops over arrays: for
/// backfills, and as an independent check of the streaming states.
pub mod batch {
    use super::{EPSILON, MacdValue};

    pub fn sma(x: &[f64], n: usize) -> Vec<Option<f64>> {
        let mut out = vec![None; x.len()];
        if n == 0 || x.len() < n {
            return out;
        }
        let mut total: f64 = x[..n - 1].iter().sum();
        for i in n - 1..x.len() {
            total += x[i];
            out[i] = Some(total / n as f64);
            total -= x[i + 1 - n];
        }
        out
    }

    pub fn ema(x: &[f64], n: usize) -> Vec<Option<f64>> {
        let mut out = vec![None; x.len()];
        if n == 0 || x.len() < n {
            return out;
        }
        let k = 2.0 / (n as f64 + 1.0);
        let mut value = x[..n].iter().sum::<f64>() / n as f64;
        out[n - 1] = Some(value);
        for i in n..x.len() {
            value = (x[i] - value) * k + value;
            out[i] = Some(value);
        }
        out
    }

    pub fn rsi(x: &[f64], n: usize) -> Vec<Option<f64>> {
        let mut out = vec![None; x.len()];
        if n == 0 || x.len() <= n {
            return out;
        }
        let ratio = |gain: f64, loss: f64| {
            let total = gain + loss;
            if total.abs() < EPSILON {
                0.0
            } else {
                100.0 * (gain / total)
            }
        };
        let (mut gain, mut loss) = (0.0, 0.0);
        for i in 1..=n {
            let change = x[i] - x[i - 1];
            if change < 0.0 {
                loss -= change;
            } else {
                gain += change;
            }
        }
        let nf = n as f64;
        loss /= nf;
        gain /= nf;
        out[n] = Some(ratio(gain, loss));
        for i in n + 1..x.len() {
            let change = x[i] - x[i - 1];
            loss *= nf - 1.0;
            gain *= nf - 1.0;
            if change < 0.0 {
                loss -= change;
            } else {
                gain += change;
            }
            loss /= nf;
            gain /= nf;
            out[i] = Some(ratio(gain, loss));
        }
        out
    }

    pub fn macd(x: &[f64], fast: usize, slow: usize, signal: usize) -> Vec<Option<MacdValue>> {
        let (fast, slow) = if slow < fast {
            (slow, fast)
        } else {
            (fast, slow)
        };
        let mut out = vec![None; x.len()];
        if fast == 0 || x.len() < slow {
            return out;
        }
        let slow_ema = ema(x, slow);
        // The fast EMA starts where the slow one does, seeded with the `fast` values ending there.
        let start = slow - 1;
        let fast_ema = ema(&x[start + 1 - fast..], fast);
        let line: Vec<f64> = (start..x.len())
            .map(|i| {
                fast_ema[i + fast - 1 - start].unwrap_or(f64::NAN) - slow_ema[i].unwrap_or(f64::NAN)
            })
            .collect();
        for (j, s) in ema(&line, signal).into_iter().enumerate() {
            if let Some(s) = s {
                out[start + j] = Some(MacdValue {
                    macd: line[j],
                    signal: s,
                    histogram: line[j] - s,
                });
            }
        }
        out
    }

    pub fn atr(high: &[f64], low: &[f64], close: &[f64], n: usize) -> Vec<Option<f64>> {
        let len = high.len().min(low.len()).min(close.len());
        let mut out = vec![None; len];
        if n == 0 || len <= n {
            return out;
        }
        let range = |i: usize| {
            let mut r = high[i] - low[i];
            r = r.max((close[i - 1] - high[i]).abs());
            r.max((close[i - 1] - low[i]).abs())
        };
        let nf = n as f64;
        let mut total = 0.0;
        for i in 1..=n {
            total += range(i);
        }
        let mut value = total / nf;
        out[n] = Some(value);
        for (i, slot) in out.iter_mut().enumerate().skip(n + 1) {
            value = (value * (nf - 1.0) + range(i)) / nf;
            *slot = Some(value);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn candles(steps: &[f64]) -> Vec<Ohlc> {
        let mut p = 100.0;
        steps
            .iter()
            .map(|s| {
                let open = p;
                p = (p * (1.0 + s)).max(0.01);
                Ohlc {
                    open,
                    high: open.max(p) * 1.002,
                    low: open.min(p) * 0.998,
                    close: p,
                }
            })
            .collect()
    }

    proptest! {
        #[test]
        fn streaming_equals_batch_over_the_whole_series(
            steps in proptest::collection::vec(-0.05f64..0.05, 0..120),
            on_open: bool,
        ) {
            let series = candles(&steps);
            let price = if on_open { Price::Open } else { Price::Close };
            let x: Vec<f64> = series.iter().map(|c| c.price(price)).collect();
            let (h, l): (Vec<f64>, Vec<f64>) = series.iter().map(|c| (c.high, c.low)).unzip();
            let mut set = IndicatorSet::new(price);
            let streamed: Vec<IndicatorValues> = series.iter().map(|c| set.update(c)).collect();
            let (sma20, ema8, ema26, rsi14) = (batch::sma(&x, 20), batch::ema(&x, 8), batch::ema(&x, 26), batch::rsi(&x, 14));
            let (macd, atr8, atr21) = (batch::macd(&x, 12, 26, 9), batch::atr(&h, &l, &x, 8), batch::atr(&h, &l, &x, 21));
            for (i, v) in streamed.iter().enumerate() {
                prop_assert_eq!(v.sma20, sma20[i], "sma20 at {}", i);
                prop_assert_eq!(v.ema8, ema8[i], "ema8 at {}", i);
                prop_assert_eq!(v.ema26, ema26[i], "ema26 at {}", i);
                prop_assert_eq!(v.rsi14, rsi14[i], "rsi14 at {}", i);
                prop_assert_eq!(v.macd, macd[i], "macd at {}", i);
                prop_assert_eq!(v.atr8, atr8[i], "atr8 at {}", i);
                prop_assert_eq!(v.atr21, atr21[i], "atr21 at {}", i);
            }
        }
    }

    #[test]
    fn state_survives_a_storage_round_trip_mid_series() {
        let series = candles(&[0.01, -0.02, 0.03, 0.0, -0.01].repeat(10));
        let mut straight = IndicatorSet::new(Price::Close);
        let mut resumed = IndicatorSet::new(Price::Close);
        for (i, c) in series.iter().enumerate() {
            let a = straight.update(c);
            let b = resumed.update(c);
            assert_eq!(a, b);
            if i % 7 == 0 {
                let stored = serde_json::to_string(&resumed).unwrap();
                resumed = serde_json::from_str(&stored).unwrap();
            }
        }
    }
}
