//! Hourly mid-price sums per pair, and how a batch of new ticks is grouped into atomic writes.
//!
//! The usage pipeline converts ZAR to WAK with each hour's average mid rate, so every (pair, hour)
//! keeps the sum and the count of its ticks' mid prices. Both are integers (mids in 1e-9 units): a
//! sum of integers does not depend on the order or batching of the ticks that make it, so the rate
//! is the same whatever way the ticks arrived.
//!
//! A tick's raw item and its share of the hourly sum are written in one transaction (see the store in
//! `wtc-aws` for why). A DynamoDB transaction holds at most 100 actions and may not touch one item
//! twice, so ticks are grouped by (pair, hour): each group's new ticks and one update of its sum.

use crate::tick::Tick;
use crate::time::Timestamp;
use std::collections::BTreeMap;

/// DynamoDB's limit on the actions of one `TransactWriteItems` call.
pub const MAX_TRANSACTION_ACTIONS: usize = 100;

/// An addition to one pair's hourly mid sum.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct HourlyMidDelta {
    pub pair: String,
    pub hour: Timestamp,
    pub mid_sum_nanos: i64,
    pub ticks: u64,
}

/// One atomic write: these ticks (indices into the batch) and the hourly sums they add to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TickTransaction {
    pub ticks: Vec<usize>,
    pub hourly: Vec<HourlyMidDelta>,
}

impl TickTransaction {
    pub fn actions(&self) -> usize {
        self.ticks.len() + self.hourly.len()
    }
}

/// Groups `selected` ticks of `ticks` into transactions of at most `max_actions` actions, filling
/// each with whole (pair, hour) groups where they fit, so most hourly items are updated once.
pub fn plan_transactions(ticks: &[Tick], selected: &[usize], max_actions: usize) -> Vec<TickTransaction> {
    assert!(max_actions >= 2, "a transaction needs room for a tick and its hourly update");
    let mut groups: BTreeMap<(&str, Timestamp), Vec<usize>> = BTreeMap::new();
    for &i in selected {
        let t = &ticks[i];
        groups.entry((t.pair.as_str(), t.timestamp.hour_start())).or_default().push(i);
    }
    let mut plan = Vec::new();
    let mut current = TickTransaction {
        ticks: Vec::new(),
        hourly: Vec::new(),
    };
    for ((pair, hour), members) in groups {
        let mut rest = members.as_slice();
        while !rest.is_empty() {
            let room = max_actions - current.actions();
            if room < 2 {
                plan.push(std::mem::replace(
                    &mut current,
                    TickTransaction {
                        ticks: Vec::new(),
                        hourly: Vec::new(),
                    },
                ));
                continue;
            }
            let take = rest.len().min(room - 1);
            let (now, later) = rest.split_at(take);
            current.ticks.extend_from_slice(now);
            current.hourly.push(HourlyMidDelta {
                pair: pair.to_owned(),
                hour,
                mid_sum_nanos: now.iter().map(|&i| ticks[i].mid_nanos()).sum(),
                ticks: now.len() as u64,
            });
            rest = later;
        }
    }
    if !current.ticks.is_empty() {
        plan.push(current);
    }
    plan
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::simulate::ForexSimulator;
    use proptest::prelude::*;

    fn sums(ticks: &[Tick], plan: &[TickTransaction]) -> BTreeMap<(String, Timestamp), (i64, u64)> {
        let mut out = BTreeMap::new();
        for txn in plan {
            assert!(txn.actions() <= MAX_TRANSACTION_ACTIONS);
            let mut seen = std::collections::BTreeSet::new();
            for h in &txn.hourly {
                assert!(seen.insert((h.pair.clone(), h.hour)), "an hourly item twice in one transaction");
                let e = out.entry((h.pair.clone(), h.hour)).or_insert((0, 0));
                e.0 += h.mid_sum_nanos;
                e.1 += h.ticks;
            }
            let counted: u64 = txn.hourly.iter().map(|h| h.ticks).sum();
            assert_eq!(counted, txn.ticks.len() as u64);
        }
        let _ = ticks;
        out
    }

    #[test]
    fn every_tick_lands_in_exactly_one_transaction() {
        let ticks: Vec<Tick> = ForexSimulator::new(7).take(20_000).collect();
        let all: Vec<usize> = (0..ticks.len()).collect();
        let plan = plan_transactions(&ticks, &all, MAX_TRANSACTION_ACTIONS);
        let mut placed: Vec<usize> = plan.iter().flat_map(|t| t.ticks.iter().copied()).collect();
        placed.sort_unstable();
        assert_eq!(placed, all);
        // 20,000 ticks over ~1.4 hours and two pairs: few transactions need a second hourly update.
        assert!(plan.len() <= 20_000 / 99 + 6, "{} transactions", plan.len());
    }

    proptest! {
        #[test]
        fn hourly_sums_do_not_depend_on_batching(seed in 0u64..1000, cut in 1usize..500, size in 2usize..=100) {
            let ticks: Vec<Tick> = ForexSimulator::new(seed).take(600).collect();
            let all: Vec<usize> = (0..ticks.len()).collect();
            let whole = sums(&ticks, &plan_transactions(&ticks, &all, MAX_TRANSACTION_ACTIONS));
            let (a, b) = all.split_at(cut.min(all.len()));
            let mut split = sums(&ticks, &plan_transactions(&ticks, b, size));
            for (k, (s, n)) in sums(&ticks, &plan_transactions(&ticks, a, size)) {
                let e = split.entry(k).or_insert((0, 0));
                e.0 += s;
                e.1 += n;
            }
            prop_assert_eq!(whole, split);
        }
    }
}
