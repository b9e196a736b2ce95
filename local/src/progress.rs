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
    /// Batches invoked again after a failure.
    pub retried: AtomicU64,
    pub batches: AtomicU64,
    /// Fetched 1-minute bars written as candles.
    pub bars: AtomicU64,
    /// Candles whose indicators were computed as they closed.
    pub candles_closed: AtomicU64,
    /// CDR files streamed by stream-cdr-files (generated or uploaded over SFTP).
    pub cdr_files: AtomicU64,
    /// Rows read from those files, and the records published for them.
    pub cdr_rows: AtomicU64,
    pub cdr_records: AtomicU64,
    /// Rows (and whole files) stream-cdr-files sent to the dead-letter queue.
    pub cdr_rejected: AtomicU64,
    /// CDR rows aggregate-usage added to the usage table's totals.
    pub usage_rows: AtomicU64,
    /// Usage items written to the usage table (the high-velocity store).
    pub usage_writes: AtomicU64,
    /// The usage API answered its health check.
    pub api_ready: AtomicBool,
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
    pub retried: u64,
    pub batches: u64,
    pub bars: u64,
    pub candles_closed: u64,
    pub cdr_files: u64,
    pub cdr_rows: u64,
    pub cdr_records: u64,
    pub cdr_rejected: u64,
    pub usage_rows: u64,
    pub usage_writes: u64,
    pub api_ready: bool,
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
            retried: self.retried.load(Ordering::Relaxed),
            batches: self.batches.load(Ordering::Relaxed),
            bars: self.bars.load(Ordering::Relaxed),
            candles_closed: self.candles_closed.load(Ordering::Relaxed),
            cdr_files: self.cdr_files.load(Ordering::Relaxed),
            cdr_rows: self.cdr_rows.load(Ordering::Relaxed),
            cdr_records: self.cdr_records.load(Ordering::Relaxed),
            cdr_rejected: self.cdr_rejected.load(Ordering::Relaxed),
            usage_rows: self.usage_rows.load(Ordering::Relaxed),
            usage_writes: self.usage_writes.load(Ordering::Relaxed),
            api_ready: self.api_ready.load(Ordering::Relaxed),
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
             | bars {} | candles closed {} | CDR files {} rows {} records {} rejected {} | usage rows {} HVS writes {} \
             | API {}",
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
            thousands(self.cdr_files),
            thousands(self.cdr_rows),
            thousands(self.cdr_records),
            thousands(self.cdr_rejected),
            thousands(self.usage_rows),
            thousands(self.usage_writes),
            if self.api_ready { "ready" } else { "starting" },
        )
    }
}

/// Prints a line of its own, clearing a progress line being rewritten on a terminal first.
pub fn say(line: &str) {
    let mut out = std::io::stdout().lock();
    if out.is_terminal() {
        let _ = write!(out, "\r\x1b[2K");
    }
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
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
