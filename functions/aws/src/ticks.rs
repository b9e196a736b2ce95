//! The tick store: raw ticks, and per-minute and per-hour mid sums, exact under redelivery.
//!
//! # How exactly-once is kept (DESIGN §6)
//!
//! Raw tick items are keyed by the tick's identity (pair and timestamp), so writing one twice
//! leaves one item: they go in `BatchWriteItem` calls of 25 at 1 WCU each.
//!
//! Sums are never incremented. Each (pair, minute) has a ledger item in the rates table: a string
//! set with one entry per tick (its microseconds into the minute and its mid). A batch `ADD`s its
//! ticks' entries in one `UpdateItem` per minute: a set union, so an entry added again changes
//! nothing and the ledger holds each distinct tick once, and the update returns the whole ledger as
//! it stands after it. The minute's sum is computed from that ledger, then each hour's from its minute sums
//! (a small `Query`), and each sum is written only if it counts more ticks than the stored one. The
//! ledger only grows, so a larger count is a newer view: a writer with a stale view is refused, and
//! the writer whose update came last sees every earlier one. A redelivered batch, a retry with
//! other boundaries, a producer's resend, or a crash between any two writes therefore leaves raw
//! items and sums exactly as one pass over the distinct ticks would.
//!
//! Alternatives, per tick, in write units (WCU) and read units (RCU):
//! - counters incremented per batch (`ADD`): 1 WCU, but a retry after a partial write counts twice;
//! - per-source watermarks on the sums: ~1 WCU, but a producer's resend arrives at a new offset,
//!   past any watermark, and counts twice (identity is the natural key, not the offset);
//! - a transaction pairing each conditional raw insert with its sum update: exact, but 2 WCU per
//!   tick (transactions cost double), conflicts whenever two partitions touch the same hour, and
//!   moto (the local emulator) copies whole tables on every transaction;
//! - recomputing each minute by querying its raw ticks: exact, ~1.02 WCU, but a strongly
//!   consistent read of the minute's ticks per batch, and moto answers a query by scanning the
//!   whole table, so a long local run slows down quadratically;
//! - a ledger with an attribute per tick, `SET` one by one: the same cost as this, but moto parses
//!   an update expression at over a millisecond per clause, which caps a local run near 750 ticks/s;
//! - the ledger as a set (this): 1 WCU per raw tick, plus per (pair, minute) in a batch one ledger
//!   update (about 3 WCU: a minute of the reference stream is about 2.3 KB) and one sum write, plus
//!   per (pair, hour) one query of its minute sums (about 2 RCU) and one sum write. The reference
//!   stream keys records by pair and minute, so a batch touches a handful of minutes: the runner
//!   prints the measured request counts per 1,000 ticks at the end of a run.

use crate::retry::{RetryPolicy, is_retryable_code};
use aws_sdk_dynamodb::error::ProvideErrorMetadata;
use aws_sdk_dynamodb::types::{AttributeValue, PutRequest, ReturnValue, WriteRequest};
use futures::StreamExt;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use wtc_core::Tick;
use wtc_core::rates::{MidSum, by_minute, hour_bucket, minute_bucket, tick_partition_key};
use wtc_core::time::Timestamp;

/// DynamoDB's limit on the requests of one `BatchWriteItem` call.
pub const BATCH_WRITE_LIMIT: usize = 25;
/// Calls in flight at once for one batch.
const CONCURRENCY: usize = 8;

/// What happened to each tick of a batch (indices into the batch's ticks).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TickWriteOutcome {
    /// Ticks the store did not hold before (counted from the sums' growth).
    pub stored: usize,
    /// Ticks written whose identity was already stored, by an earlier delivery or earlier in the batch.
    pub duplicates: usize,
    /// Ticks not safely stored after retries, with the last error: the batch must be retried.
    pub failed: Vec<(usize, String)>,
}

/// Requests sent to DynamoDB, for cost reports.
#[derive(Debug, Default)]
pub struct RequestCounts {
    pub batch_writes: AtomicU64,
    pub items_written: AtomicU64,
    pub ledger_updates: AtomicU64,
    pub queries: AtomicU64,
    pub sum_puts: AtomicU64,
}

impl RequestCounts {
    /// A line such as `DynamoDB per 1,000 records: 1000 ticks written in 40.0 BatchWriteItem calls,
    /// 5.2 ledger updates, 7.8 sum writes, 2.6 queries`.
    pub fn per_thousand(&self, records: u64) -> String {
        let per =
            |n: &AtomicU64| n.load(Ordering::Relaxed) as f64 * 1_000.0 / records.max(1) as f64;
        format!(
            "DynamoDB per 1,000 records: {:.0} ticks written in {:.1} BatchWriteItem calls, {:.1} ledger updates, \
             {:.1} sum writes, {:.1} queries",
            per(&self.items_written),
            per(&self.batch_writes),
            per(&self.ledger_updates),
            per(&self.sum_puts),
            per(&self.queries),
        )
    }
}

#[derive(Debug, Clone)]
pub struct TickStore {
    client: aws_sdk_dynamodb::Client,
    ticks_table: String,
    rates_table: String,
    retry: RetryPolicy,
    counts: std::sync::Arc<RequestCounts>,
}

impl TickStore {
    pub fn new(client: aws_sdk_dynamodb::Client, ticks_table: String, rates_table: String) -> Self {
        Self {
            client,
            ticks_table,
            rates_table,
            retry: RetryPolicy::default(),
            counts: Default::default(),
        }
    }

    pub fn ticks_table(&self) -> &str {
        &self.ticks_table
    }

    pub fn rates_table(&self) -> &str {
        &self.rates_table
    }

    /// Requests sent so far by this store (and its clones).
    pub fn request_counts(&self) -> &RequestCounts {
        &self.counts
    }

    /// Stores the ticks and brings the sums they touch up to date.
    /// `sources[i]` is tick i's source position, kept on its raw item.
    pub async fn write(&self, ticks: &[Tick], sources: &[String]) -> TickWriteOutcome {
        let mut outcome = TickWriteOutcome::default();
        let mut seen = HashSet::with_capacity(ticks.len());
        let unique: Vec<usize> = (0..ticks.len())
            .filter(|&i| seen.insert((ticks[i].pair.as_str(), ticks[i].timestamp)))
            .collect();
        let in_batch_duplicates = ticks.len() - unique.len();

        let failed_raw = self.put_raw(ticks, sources, &unique).await;
        let failed_set: HashSet<usize> = failed_raw.iter().map(|(i, _)| *i).collect();
        outcome.failed = failed_raw;
        let written: Vec<usize> = unique
            .iter()
            .copied()
            .filter(|i| !failed_set.contains(i))
            .collect();

        let (added, failed_sums) = self.refresh_sums(ticks, &written).await;
        outcome.stored = added as usize;
        outcome.duplicates = in_batch_duplicates + written.len().saturating_sub(added as usize);
        outcome.failed.extend(failed_sums);
        outcome
    }

    /// Writes raw ticks in batches of 25; returns the ticks that could not be written.
    pub async fn put_raw(
        &self,
        ticks: &[Tick],
        sources: &[String],
        selected: &[usize],
    ) -> Vec<(usize, String)> {
        let jobs: Vec<_> = selected
            .chunks(BATCH_WRITE_LIMIT)
            .map(|chunk| self.batch_write(ticks, sources, chunk))
            .collect();
        let results: Vec<Vec<(usize, String)>> = futures::stream::iter(jobs)
            .buffer_unordered(CONCURRENCY)
            .collect()
            .await;
        results.into_iter().flatten().collect()
    }

    async fn batch_write(
        &self,
        ticks: &[Tick],
        sources: &[String],
        chunk: &[usize],
    ) -> Vec<(usize, String)> {
        let mut pending: Vec<(usize, WriteRequest)> = Vec::with_capacity(chunk.len());
        for &i in chunk {
            match raw_item(
                &ticks[i],
                sources.get(i).map(String::as_str).unwrap_or_default(),
            ) {
                Ok(request) => pending.push((i, request)),
                Err(e) => return chunk.iter().map(|&i| (i, e.clone())).collect(),
            }
        }
        let mut retry = 0;
        loop {
            self.counts.batch_writes.fetch_add(1, Ordering::Relaxed);
            self.counts
                .items_written
                .fetch_add(pending.len() as u64, Ordering::Relaxed);
            let result = self
                .client
                .batch_write_item()
                .request_items(
                    &self.ticks_table,
                    pending.iter().map(|(_, r)| r.clone()).collect(),
                )
                .send()
                .await;
            let reason = match result {
                Ok(out) => {
                    let unprocessed = out
                        .unprocessed_items()
                        .and_then(|m| m.get(&self.ticks_table))
                        .map(Vec::as_slice)
                        .unwrap_or_default();
                    if unprocessed.is_empty() {
                        return Vec::new();
                    }
                    // Unprocessed items come back as the same requests: keep those still pending.
                    pending.retain(|(_, r)| unprocessed.contains(r));
                    format!("{} items left unprocessed (throttled)", pending.len())
                }
                Err(e) => {
                    let retryable = e
                        .as_service_error()
                        .is_none_or(|s| is_retryable_code(s.code()));
                    let reason = aws_sdk_dynamodb::Error::from(e).to_string();
                    if !retryable {
                        return pending
                            .into_iter()
                            .map(|(i, _)| (i, reason.clone()))
                            .collect();
                    }
                    reason
                }
            };
            retry += 1;
            if !self.retry.pause(retry).await {
                return pending
                    .into_iter()
                    .map(|(i, _)| (i, reason.clone()))
                    .collect();
            }
        }
    }

    /// Recomputes the minute sums of the given ticks, then their hours. Returns how many ticks the
    /// sums grew by, and the ticks whose sums could not be brought up to date.
    pub async fn refresh_sums(
        &self,
        ticks: &[Tick],
        written: &[usize],
    ) -> (u64, Vec<(usize, String)>) {
        let jobs: Vec<_> = by_minute(ticks, written)
            .into_iter()
            .map(|((_, minute), members)| async move {
                let result = self.refresh_minute(ticks, &members, minute).await;
                (members, result)
            })
            .collect();
        let results: Vec<(Vec<usize>, Result<u64, String>)> = futures::stream::iter(jobs)
            .buffer_unordered(CONCURRENCY)
            .collect()
            .await;
        let mut added = 0;
        let mut failed = Vec::new();
        let mut hours: BTreeMap<(String, Timestamp), Vec<usize>> = BTreeMap::new();
        for (members, result) in results {
            match result {
                Ok(n) => {
                    added += n;
                    let t = &ticks[members[0]];
                    hours
                        .entry((t.pair.clone(), t.timestamp.hour_start()))
                        .or_default()
                        .extend(members);
                }
                Err(e) => failed.extend(members.into_iter().map(|i| (i, e.clone()))),
            }
        }
        let jobs: Vec<_> = hours
            .into_iter()
            .map(|((pair, hour), members)| async move {
                (members, self.refresh_hour(&pair, hour).await)
            })
            .collect();
        let results: Vec<(Vec<usize>, Result<u64, String>)> = futures::stream::iter(jobs)
            .buffer_unordered(CONCURRENCY)
            .collect()
            .await;
        for (members, result) in results {
            if let Err(e) = result {
                failed.extend(members.into_iter().map(|i| (i, e.clone())));
            }
        }
        (added, failed)
    }

    /// Records the ticks in their minute's ledger, then rewrites the minute's sum from the whole
    /// ledger as it stands after the update; returns how many ticks the sum grew by.
    async fn refresh_minute(
        &self,
        ticks: &[Tick],
        members: &[usize],
        minute: Timestamp,
    ) -> Result<u64, String> {
        let pair = ticks[members[0]].pair.as_str();
        let entries: Vec<String> = members
            .iter()
            .map(|&i| {
                ledger_entry(
                    ticks[i].timestamp.micros() - minute.micros(),
                    ticks[i].mid_nanos(),
                )
            })
            .collect();
        let ledger = self.add_to_ledger(pair, minute, entries).await?;
        self.put_sum(pair, minute_bucket(minute), minute, ledger_sum(&ledger))
            .await
    }

    /// Adds entries to a minute's ledger (a string set: adding an entry again changes nothing, so a
    /// redelivered tick is recorded once) and returns the ledger after the update.
    async fn add_to_ledger(
        &self,
        pair: &str,
        minute: Timestamp,
        entries: Vec<String>,
    ) -> Result<HashMap<String, AttributeValue>, String> {
        let mut retry = 0;
        loop {
            self.counts.ledger_updates.fetch_add(1, Ordering::Relaxed);
            let result = self
                .client
                .update_item()
                .table_name(&self.rates_table)
                .key("pair", AttributeValue::S(pair.to_owned()))
                .key("bucket", AttributeValue::S(ledger_bucket(minute)))
                .update_expression("ADD #ledger :entries")
                .expression_attribute_names("#ledger", LEDGER_ATTRIBUTE)
                .expression_attribute_values(":entries", AttributeValue::Ss(entries.clone()))
                .return_values(ReturnValue::AllNew)
                .send()
                .await;
            match result {
                Ok(out) => return Ok(out.attributes().cloned().unwrap_or_default()),
                Err(e) => {
                    let retryable = e
                        .as_service_error()
                        .is_none_or(|s| is_retryable_code(s.code()));
                    let reason = aws_sdk_dynamodb::Error::from(e).to_string();
                    retry += 1;
                    if !retryable || !self.retry.pause(retry).await {
                        return Err(format!(
                            "updating ledger {pair} {}: {reason}",
                            ledger_bucket(minute)
                        ));
                    }
                }
            }
        }
    }

    /// Recomputes one hour from its minute sums.
    async fn refresh_hour(&self, pair: &str, hour: Timestamp) -> Result<u64, String> {
        let first = minute_bucket(hour);
        let last = minute_bucket(Timestamp::from_micros(hour.micros() + 3_599_999_999));
        let mut sum = MidSum::default();
        self.query_all(
            &self.rates_table,
            "#pk = :pk AND #sk BETWEEN :from AND :to",
            ("pair", "bucket"),
            &[(":pk", pair.to_owned()), (":from", first), (":to", last)],
            "mid_sum_nanos, ticks",
            |item| {
                if let (Some(s), Some(n)) = (number(item, "mid_sum_nanos"), number(item, "ticks")) {
                    sum.merge(MidSum {
                        mid_sum_nanos: s,
                        ticks: n as u64,
                    });
                }
            },
        )
        .await?;
        self.put_sum(pair, hour_bucket(hour), hour, sum).await
    }

    /// A strongly consistent query over every page, feeding each item to `each`.
    async fn query_all(
        &self,
        table: &str,
        condition: &str,
        (partition_key, sort_key): (&str, &str),
        values: &[(&str, String)],
        projection: &str,
        mut each: impl FnMut(&HashMap<String, AttributeValue>),
    ) -> Result<(), String> {
        let mut start: Option<HashMap<String, AttributeValue>> = None;
        loop {
            let mut retry = 0;
            let page = loop {
                self.counts.queries.fetch_add(1, Ordering::Relaxed);
                let mut q = self
                    .client
                    .query()
                    .table_name(table)
                    .consistent_read(true)
                    .key_condition_expression(condition)
                    .expression_attribute_names("#pk", partition_key)
                    .expression_attribute_names("#sk", sort_key)
                    .projection_expression(projection)
                    .set_exclusive_start_key(start.clone());
                for (name, value) in values {
                    q = q.expression_attribute_values(*name, AttributeValue::S(value.clone()));
                }
                match q.send().await {
                    Ok(page) => break page,
                    Err(e) => {
                        let retryable = e
                            .as_service_error()
                            .is_none_or(|s| is_retryable_code(s.code()));
                        let reason = aws_sdk_dynamodb::Error::from(e).to_string();
                        retry += 1;
                        if !retryable || !self.retry.pause(retry).await {
                            return Err(format!("querying {table}: {reason}"));
                        }
                    }
                }
            };
            page.items().iter().for_each(&mut each);
            match page.last_evaluated_key() {
                Some(key) if !key.is_empty() => start = Some(key.clone()),
                _ => return Ok(()),
            }
        }
    }

    /// Writes a sum unless the stored one already counts as many ticks or more.
    /// Returns how many ticks the stored sum grew by.
    async fn put_sum(
        &self,
        pair: &str,
        bucket: String,
        start: Timestamp,
        sum: MidSum,
    ) -> Result<u64, String> {
        if sum.ticks == 0 {
            return Ok(0);
        }
        let mut retry = 0;
        loop {
            self.counts.sum_puts.fetch_add(1, Ordering::Relaxed);
            let result = self
                .client
                .put_item()
                .table_name(&self.rates_table)
                .item("pair", AttributeValue::S(pair.to_owned()))
                .item("bucket", AttributeValue::S(bucket.clone()))
                .item("start", AttributeValue::S(start.to_seconds_string()))
                .item(
                    "mid_sum_nanos",
                    AttributeValue::N(sum.mid_sum_nanos.to_string()),
                )
                .item("ticks", AttributeValue::N(sum.ticks.to_string()))
                .condition_expression("attribute_not_exists(#ticks) OR #ticks < :ticks")
                .expression_attribute_names("#ticks", "ticks")
                .expression_attribute_values(":ticks", AttributeValue::N(sum.ticks.to_string()))
                .return_values(ReturnValue::AllOld)
                .send()
                .await;
            match result {
                Ok(out) => {
                    let before = out
                        .attributes()
                        .and_then(|a| number(a, "ticks"))
                        .unwrap_or(0) as u64;
                    return Ok(sum.ticks.saturating_sub(before));
                }
                Err(e) => {
                    let service = e.as_service_error();
                    if service.is_some_and(|s| s.is_conditional_check_failed_exception()) {
                        // The stored sum already counts these ticks (or more): nothing to add.
                        return Ok(0);
                    }
                    let retryable = service.is_none_or(|s| is_retryable_code(s.code()));
                    let reason = aws_sdk_dynamodb::Error::from(e).to_string();
                    retry += 1;
                    if !retryable || !self.retry.pause(retry).await {
                        return Err(format!("writing sum {pair} {bucket}: {reason}"));
                    }
                }
            }
        }
    }
}

/// A raw tick item: the tick as received, and where it came from.
fn raw_item(t: &Tick, source: &str) -> Result<WriteRequest, String> {
    let put = PutRequest::builder()
        .item(
            "pk",
            AttributeValue::S(tick_partition_key(&t.pair, t.timestamp)),
        )
        .item("ts", AttributeValue::S(t.timestamp.to_wtc_string()))
        .item("pair_name", AttributeValue::S(t.pair.clone()))
        .item("bid_price", AttributeValue::N(t.bid.to_string()))
        .item("ask_price", AttributeValue::N(t.ask.to_string()))
        .item("spread", AttributeValue::N(t.spread.to_string()))
        .item("src", AttributeValue::S(source.to_owned()))
        .build()
        .map_err(|e| e.to_string())?;
    Ok(WriteRequest::builder().put_request(put).build())
}

/// The ledger's string-set attribute.
const LEDGER_ATTRIBUTE: &str = "ticks_seen";

/// Sort key of a minute's ledger: `L#2024-01-01 13:05`.
fn ledger_bucket(minute: Timestamp) -> String {
    format!("L#{}", &minute_bucket(minute)[2..])
}

/// A ledger entry: the tick's microseconds into its minute (its identity within the pair-minute)
/// and its mid in nano-units, e.g. `00570000:1738300000`.
fn ledger_entry(offset_micros: i64, mid_nanos: i64) -> String {
    format!("{offset_micros:08}:{mid_nanos}")
}

/// The sum of a ledger's mids, one per identity. Two entries share an identity only when one tick
/// was sent twice with different prices; the smaller entry counts, so the choice is deterministic.
fn ledger_sum(item: &HashMap<String, AttributeValue>) -> MidSum {
    let mut mids: BTreeMap<&str, i64> = BTreeMap::new();
    if let Some(AttributeValue::Ss(entries)) = item.get(LEDGER_ATTRIBUTE) {
        for entry in entries {
            if let Some((offset, mid)) = entry.split_once(':')
                && let Ok(mid) = mid.parse::<i64>()
            {
                mids.entry(offset)
                    .and_modify(|m| *m = (*m).min(mid))
                    .or_insert(mid);
            }
        }
    }
    let mut sum = MidSum::default();
    mids.into_values().for_each(|m| sum.add_mid(m));
    sum
}

fn number(item: &HashMap<String, AttributeValue>, name: &str) -> Option<i64> {
    item.get(name)?.as_n().ok()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ledger(entries: &[&str]) -> HashMap<String, AttributeValue> {
        HashMap::from([
            ("pair".to_owned(), AttributeValue::S("MRVZAR".into())),
            (
                LEDGER_ATTRIBUTE.to_owned(),
                AttributeValue::Ss(entries.iter().map(|e| (*e).to_owned()).collect()),
            ),
        ])
    }

    #[test]
    fn ledger_entries_name_the_tick_and_its_mid() {
        assert_eq!(ledger_entry(570_000, 1_738_300_000), "00570000:1738300000");
        assert_eq!(
            ledger_bucket(Timestamp::from_micros(1_704_067_200_000_000)),
            "L#2024-01-01 00:00"
        );
    }

    #[test]
    fn ledger_sum_counts_each_identity_once() {
        let sum = ledger_sum(&ledger(&["00570000:1738300000", "01082000:1000000000"]));
        assert_eq!(
            sum,
            MidSum {
                mid_sum_nanos: 2_738_300_000,
                ticks: 2
            }
        );
        // One tick sent twice with different prices: one entry counts, the smaller.
        let sum = ledger_sum(&ledger(&[
            "00570000:1738300000",
            "00570000:1500000000",
            "01082000:1000000000",
        ]));
        assert_eq!(
            sum,
            MidSum {
                mid_sum_nanos: 2_500_000_000,
                ticks: 2
            }
        );
        assert_eq!(ledger_sum(&HashMap::new()), MidSum::default());
    }
}
