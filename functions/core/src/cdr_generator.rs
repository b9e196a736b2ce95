//! A seeded CDR file generator equivalent to the curriculum's: pairs of files (data and voice) of
//! 1,000 rows each per 200 s of simulated time from 2024-01-01 00:00:00 (the first pair is named
//! `..._20240101_000320.csv`, for the window that ends then), rows from 50,000 MSISDNs of 13
//! digits, tower ids 1-2000, 100,000-1,000,000 bytes each way, calls of 1-1,800 s, event times
//! inside the file's window and not sorted.

use crate::cdr::{CdrFile, CdrKind};
use crate::time::Timestamp;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// Rows per file, and seconds of simulated time per pair of files.
pub const ROWS_PER_FILE: usize = 1_000;
pub const SECONDS_PER_FILE: i64 = 200;
/// The MSISDNs the reference generator draws from.
pub const REFERENCE_MSISDNS: usize = 50_000;
const START: i64 = 1_704_067_200_000_000;
const DATA_TYPES: [&str; 5] = ["video", "audio", "image", "text", "application"];
const SITES: [&str; 6] = [
    "example.com",
    "news.example.org",
    "shop.example.net",
    "video.example.tv",
    "mail.example.io",
    "maps.example.co.za",
];

pub struct CdrGenerator {
    rng: ChaCha8Rng,
    msisdns: Vec<String>,
    window: i64,
}

impl CdrGenerator {
    pub fn new(seed: u64, msisdn_count: usize) -> Self {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let msisdns = (0..msisdn_count.max(1))
            .map(|_| format!("{:013}", rng.random_range(0..10_000_000_000_000u64)))
            .collect();
        Self {
            rng,
            msisdns,
            window: 0,
        }
    }

    /// The next pair of files: (name, contents) for data, then voice.
    pub fn next_pair(&mut self) -> [(String, String); 2] {
        let from = START + self.window * SECONDS_PER_FILE * 1_000_000;
        self.window += 1;
        let to = from + SECONDS_PER_FILE * 1_000_000;
        [CdrKind::Data, CdrKind::Voice].map(|kind| {
            let name = CdrFile {
                kind,
                stamp: Timestamp::from_micros(to),
            }
            .name();
            let mut text = String::with_capacity(ROWS_PER_FILE * 140);
            text.push_str(kind.header());
            text.push('\n');
            for _ in 0..ROWS_PER_FILE {
                let msisdn = &self.msisdns[self.rng.random_range(0..self.msisdns.len())];
                let tower = self.rng.random_range(1..=2000);
                let at = Timestamp::from_micros(self.rng.random_range(from..to));
                // The curriculum's generator drops a zero fraction.
                let at = if at.micros() % 1_000_000 == 0 {
                    at.to_seconds_string()
                } else {
                    at.to_wtc_string()
                };
                match kind {
                    CdrKind::Data => {
                        let ip = format!(
                            "{}.{}.{}.{}",
                            self.rng.random_range(1..=223),
                            self.rng.random_range(0..=255),
                            self.rng.random_range(0..=255),
                            self.rng.random_range(1..=254)
                        );
                        text.push_str(&format!(
                            "{msisdn},{tower},{},{},{},{ip},http://{}/,{at}\n",
                            self.rng.random_range(100_000..=1_000_000),
                            self.rng.random_range(100_000..=1_000_000),
                            DATA_TYPES[self.rng.random_range(0..DATA_TYPES.len())],
                            SITES[self.rng.random_range(0..SITES.len())],
                        ));
                    }
                    CdrKind::Voice => {
                        let call_type = if self.rng.random_bool(0.5) {
                            "voice"
                        } else {
                            "video"
                        };
                        text.push_str(&format!(
                            "{msisdn},{tower},{call_type},{:013},{},{at}\n",
                            self.rng.random_range(0..10_000_000_000_000u64),
                            self.rng.random_range(1..=1_800),
                        ));
                    }
                }
            }
            (name, text)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cdr::{split_csv, validate_row};

    #[test]
    fn files_are_named_and_filled_as_the_curriculum_s() {
        let mut g = CdrGenerator::new(27_418_001, 50_000);
        let [(data_name, data), (voice_name, voice)] = g.next_pair();
        assert_eq!(data_name, "cdr_data_20240101_000320.csv");
        assert_eq!(voice_name, "cdr_voice_20240101_000320.csv");
        assert_eq!(g.next_pair()[0].0, "cdr_data_20240101_000640.csv");
        for (kind, text) in [(CdrKind::Data, &data), (CdrKind::Voice, &voice)] {
            let mut lines = text.lines();
            assert_eq!(lines.next(), Some(kind.header()));
            let mut fields = Vec::new();
            let mut n = 0;
            for line in lines {
                split_csv(line.as_bytes(), &mut fields).unwrap_or_else(|e| panic!("{e}"));
                let row = validate_row(kind, &fields).unwrap_or_else(|e| panic!("{line}: {e}"));
                assert!(
                    row.usage.at.micros() >= START && row.usage.at.micros() < START + 200_000_000
                );
                n += 1;
            }
            assert_eq!(n, ROWS_PER_FILE);
        }
        let again = CdrGenerator::new(27_418_001, 50_000).next_pair();
        assert_eq!(again[0].1, data, "seeded");
    }
}
