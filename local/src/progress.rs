//! Live counters of a run and the line that shows them.

use std::io::{IsTerminal, Write};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

#[derive(Debug, Default)]
pub struct Progress {
    pub produced: AtomicU64,
    /// Records handed to the function and answered (stored, duplicate or rejected).
    pub processed: AtomicU64,
    pub stored: AtomicU64,
    pub duplicates: AtomicU64,
    pub rejected: AtomicU64,
    /// Records sent to the dead-letter queue because their batch failed every retry.
    pub failed: AtomicU64,
    pub batches: AtomicU64,
    /// Fetched 1-minute bars written as candles.
    pub bars: AtomicU64,
    /// Candles whose indicators were computed as they closed.
    pub candles_closed: AtomicU64,
    /// CDR files uploaded and streamed.
    pub cdr_files: AtomicU64,
    pub generator_done: AtomicBool,
    /// The quote fetcher has published all it will (simulated runs end; live ones do not).
    pub market_done: AtomicBool,
}

/// A copy of the counters at one instant.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Snapshot {
    pub produced: u64,
    pub processed: u64,
    pub stored: u64,
    pub duplicates: u64,
    pub rejected: u64,
    pub failed: u64,
    pub batches: u64,
    pub bars: u64,
    pub candles_closed: u64,
}

impl Progress {
    pub fn snapshot(&self) -> Snapshot {
        Snapshot {
            produced: self.produced.load(Ordering::Relaxed),
            processed: self.processed.load(Ordering::Relaxed),
            stored: self.stored.load(Ordering::Relaxed),
            duplicates: self.duplicates.load(Ordering::Relaxed),
            rejected: self.rejected.load(Ordering::Relaxed),
            failed: self.failed.load(Ordering::Relaxed),
            batches: self.batches.load(Ordering::Relaxed),
            bars: self.bars.load(Ordering::Relaxed),
            candles_closed: self.candles_closed.load(Ordering::Relaxed),
        }
    }

    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }
}

/// `12,345`
pub fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

impl Snapshot {
    /// One progress line; rates are per second over `elapsed` since `before`.
    pub fn line(&self, before: &Snapshot, elapsed: Duration) -> String {
        let secs = elapsed.as_secs_f64().max(1e-3);
        let rate = |now: u64, then: u64| thousands(((now - then) as f64 / secs).round() as u64);
        format!(
            "produced {} ({}/s) | processed {} ({}/s) | stored {} ({}/s) | duplicates {} | rejected {} | failed {} \
             | bars {} | candles closed {}",
            thousands(self.produced),
            rate(self.produced, before.produced),
            thousands(self.processed),
            rate(self.processed, before.processed),
            thousands(self.stored),
            rate(self.stored, before.stored),
            thousands(self.duplicates),
            thousands(self.rejected),
            thousands(self.failed),
            thousands(self.bars),
            thousands(self.candles_closed),
        )
    }
}

/// Prints a progress line every `every` until `stop` is set: rewritten in place on a terminal,
/// one line each time otherwise (logs, CI).
pub async fn report_every(progress: &Progress, every: Duration, stop: &AtomicBool) {
    let tty = std::io::stdout().is_terminal();
    let mut before = progress.snapshot();
    let mut at = Instant::now();
    while !stop.load(Ordering::Relaxed) {
        tokio::time::sleep(every).await;
        let now = progress.snapshot();
        if now == before && !tty {
            continue;
        }
        let line = now.line(&before, at.elapsed());
        let mut out = std::io::stdout().lock();
        if tty {
            let _ = write!(out, "\r\x1b[2K{line}");
        } else {
            let _ = writeln!(out, "{line}");
        }
        let _ = out.flush();
        before = now;
        at = Instant::now();
    }
    if tty {
        println!();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thousands_groups_digits() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(691_200), "691,200");
        assert_eq!(thousands(1_000_000), "1,000,000");
    }
}
