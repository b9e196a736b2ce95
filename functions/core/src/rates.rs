//! Mid-price sums per pair and minute, and per pair and hour: the hourly average rates that the
//! usage pipeline converts ZAR to WAK with.
//!
//! Sums are integers (mids in 1e-9 units, see `Tick::mid_nanos`): an integer sum does not depend
//! on the order or batching of the ticks that make it, so a recomputed sum is bit-for-bit the same.
//! Every sum is *recomputed* from what is stored below it (a minute from its ledger of distinct
//! ticks, an hour from its minutes), never incremented, which is what makes it exact under
//! redelivery (see the tick store in `wtc-aws`).

use crate::tick::Tick;
use crate::time::Timestamp;
use std::collections::BTreeMap;

const MICROS_PER_MINUTE: i64 = 60_000_000;

/// The sum and count of the mid prices of a set of ticks. The sum is 128-bit: a mid is below
/// 2^63 nano-units (`MAX_PRICE`), so no realistic count of them overflows it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MidSum {
    pub mid_sum_nanos: i128,
    pub ticks: u64,
}

impl MidSum {
    pub fn add_mid(&mut self, mid_nanos: i64) {
        self.mid_sum_nanos += i128::from(mid_nanos);
        self.ticks += 1;
    }

    pub fn merge(&mut self, other: MidSum) {
        self.mid_sum_nanos += other.mid_sum_nanos;
        self.ticks += other.ticks;
    }

    /// The mean mid price; `None` without ticks.
    pub fn mean(&self) -> Option<f64> {
        (self.ticks > 0).then(|| self.mid_sum_nanos as f64 / 1e9 / self.ticks as f64)
    }
}

/// The start of the UTC minute of `t`.
pub fn minute_start(t: Timestamp) -> Timestamp {
    Timestamp::from_micros(t.micros().div_euclid(MICROS_PER_MINUTE) * MICROS_PER_MINUTE)
}

/// A pair and an hour, `MRVZAR#2024-01-01 13`: the partition key of raw ticks and of minute sums,
/// so no partition grows without bound or takes a pair's whole write rate, and an hour's minute
/// sums are read by a query of exactly that hour's partition.
pub fn pair_hour_key(pair: &str, t: Timestamp) -> String {
    format!("{pair}#{}", &t.to_seconds_string()[..13])
}

/// Sort key of a minute sum: `M#2024-01-01 13:05`.
pub fn minute_bucket(t: Timestamp) -> String {
    format!("M#{}", &t.to_seconds_string()[..16])
}

/// Sort key of an hour sum: `H#2024-01-01 13`.
pub fn hour_bucket(t: Timestamp) -> String {
    format!("H#{}", &t.to_seconds_string()[..13])
}

/// The (pair, minute) groups of the selected ticks, each with its ticks' indices.
pub fn by_minute<'a>(
    ticks: &'a [Tick],
    selected: &[usize],
) -> BTreeMap<(&'a str, Timestamp), Vec<usize>> {
    let mut groups: BTreeMap<(&str, Timestamp), Vec<usize>> = BTreeMap::new();
    for &i in selected {
        let t = &ticks[i];
        groups
            .entry((t.pair.as_str(), minute_start(t.timestamp)))
            .or_default()
            .push(i);
    }
    groups
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::simulate::ForexSimulator;
    use proptest::prelude::*;

    #[test]
    fn keys_sort_in_time_order_within_their_kind() {
        let t = Timestamp::parse("2024-01-01 13:05:59.999999").unwrap();
        assert_eq!(pair_hour_key("MRVZAR", t), "MRVZAR#2024-01-01 13");
        assert_eq!(minute_bucket(t), "M#2024-01-01 13:05");
        assert_eq!(hour_bucket(t), "H#2024-01-01 13");
        assert_eq!(minute_start(t).to_string(), "2024-01-01 13:05:00.000000");
    }

    #[test]
    fn mean_of_mids() {
        let mut s = MidSum::default();
        assert_eq!(s.mean(), None);
        s.add_mid(1_738_300_000);
        s.add_mid(1_000_000_000);
        assert_eq!(s.mean(), Some(1.36915));
    }

    proptest! {
        #[test]
        fn sums_do_not_depend_on_order_or_grouping(seed in 0u64..1000, cut in 0usize..600) {
            let ticks: Vec<Tick> = ForexSimulator::new(seed).take(600).collect();
            let mut whole = MidSum::default();
            ticks.iter().for_each(|t| whole.add_mid(t.mid_nanos()));
            let (a, b) = ticks.split_at(cut);
            let mut parts = MidSum::default();
            for part in [b, a] {
                let mut s = MidSum::default();
                part.iter().rev().for_each(|t| s.add_mid(t.mid_nanos()));
                parts.merge(s);
            }
            prop_assert_eq!(whole, parts);
        }
    }
}
