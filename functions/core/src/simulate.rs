//! A seeded forex generator equivalent to the curriculum's: two pairs quoted at the same instant,
//! one step every 400-600 ms of simulated time from 2024-01-01 00:00:00, bid uniform in [1, 2],
//! spread uniform in [0.01, 0.05], prices at 4 decimals. 691,200 ticks make its 48 simulated hours.

use crate::tick::Tick;
use crate::time::Timestamp;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// The curriculum's two pairs: ZAR per MRV, and MRV per WAK.
pub const PAIRS: [&str; 2] = ["MRVZAR", "WAKMRV"];
/// The reference run: 48 simulated hours.
pub const FULL_RUN_TICKS: u64 = 691_200;
/// 2024-01-01 00:00:00 UTC.
pub const START: Timestamp = Timestamp::from_micros(1_704_067_200_000_000);

/// An endless, reproducible stream of ticks (take as many as wanted).
pub struct ForexSimulator {
    rng: ChaCha8Rng,
    now: Timestamp,
    pending: Vec<Tick>,
}

impl ForexSimulator {
    pub fn new(seed: u64) -> Self {
        Self {
            rng: ChaCha8Rng::seed_from_u64(seed),
            now: START,
            pending: Vec::with_capacity(PAIRS.len()),
        }
    }
}

fn round4(x: f64) -> f64 {
    (x * 1e4).round() / 1e4
}

impl Iterator for ForexSimulator {
    type Item = Tick;

    fn next(&mut self) -> Option<Tick> {
        if self.pending.is_empty() {
            let step_ms: i64 = self.rng.random_range(400..=600);
            self.now = Timestamp::from_micros(self.now.micros() + step_ms * 1_000);
            for pair in PAIRS.iter().rev() {
                // As the reference: the spread field is the drawn spread, ask is bid + spread.
                let bid = round4(self.rng.random_range(1.0..=2.0));
                let spread = round4(self.rng.random_range(0.01..=0.05));
                self.pending.push(Tick {
                    pair: (*pair).to_owned(),
                    timestamp: self.now,
                    bid,
                    ask: round4(bid + spread),
                    spread,
                });
            }
        }
        self.pending.pop()
    }
}

/// The reference generator's Kafka key: the JSON string `"PAIR-YYYY-MM-DD HH:MM"` (quotes included).
pub fn kafka_key(tick: &Tick) -> String {
    crate::quotes::minute_key(&tick.pair, tick.timestamp)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn is_reproducible_and_valid() {
        let a: Vec<Tick> = ForexSimulator::new(42).take(1000).collect();
        let b: Vec<Tick> = ForexSimulator::new(42).take(1000).collect();
        assert_eq!(a, b);
        for pair in a.chunks(2) {
            assert_eq!(pair[0].pair, "MRVZAR");
            assert_eq!(pair[1].pair, "WAKMRV");
            assert_eq!(pair[0].timestamp, pair[1].timestamp);
        }
        for w in a.windows(3).step_by(2) {
            let step = w[2].timestamp.micros() - w[0].timestamp.micros();
            assert!((400_000..=600_000).contains(&step), "step {step}");
        }
        for t in &a {
            let decoded = Tick::decode(t.to_json().as_bytes()).unwrap();
            assert_eq!(&decoded, t);
            assert!((1.0..=2.0).contains(&t.bid));
            assert!((0.0099..=0.0501).contains(&t.spread), "{}", t.spread);
        }
    }

    #[test]
    fn key_is_a_json_string_of_pair_and_minute() {
        let t = ForexSimulator::new(1).next().unwrap();
        assert_eq!(kafka_key(&t), "\"MRVZAR-2024-01-01 00:00\"");
    }
}
