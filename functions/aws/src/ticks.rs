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
//! it stands after it. The minute's sum is computed from that ledger, then each hour's from its
//! minute sums (a small `Query`: minute sums are partitioned by pair and hour, so it reads just that
//! hour's), and each sum is written only if it stands on more ledger entries than the stored one.
//! Ledgers only grow, so more entries is a newer view: a writer with a stale view is refused, and the
//! writer whose update came last sees every earlier one. A redelivered batch, a retry with
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
//!   consistent read of the minute's ticks per batch, and moto answers a query by walking the
//!   whole table, so a long local run slows down as it grows;
//! - a ledger with an attribute per tick, `SET` one by one: the same cost as this, but moto parses
//!   an update expression at over a millisecond per clause, which caps a local run near 750 ticks/s;
//! - the ledger as a set (this): 1 WCU per raw tick, plus per (pair, minute) in a batch one ledger
//!   update (about 3 WCU: a minute of the reference stream is about 2.3 KB) and one sum write, plus
//!   per (pair, hour) one query of its minute sums (about 2 RCU) and one sum write. The reference
//!   stream keys records by pair and minute, so a batch touches a handful of minutes: the runner
//!   prints the measured request counts per 1,000 ticks at the end of a run.
//!
//! Limits and edge cases: a ledger item holds at most about 18,000 ticks of one pair in one minute
//! (DynamoDB's 400 KB item limit; the reference stream has about 120). A tick sent twice with
//! different prices (same pair and timestamp) is one raw item, the last written, while the sums
//! count it once at the lower of its mids: the rule must not depend on arrival order, and the raw
//! table's last-writer-wins does.

use crate::error::{AwsError, Resource};
use crate::retry::{RetryPolicy, SendError, send_with_retry};
use aws_sdk_dynamodb::types::{AttributeValue, PutRequest, ReturnValue, WriteRequest};
use futures::StreamExt;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use wtc_core::Tick;
use wtc_core::candles::Candle;
use wtc_core::event::FailureKind;
use wtc_core::rates::{MidSum, by_minute, hour_bucket, minute_bucket, pair_hour_key};
use wtc_core::time::Timestamp;

/// DynamoDB's limit on the requests of one `BatchWriteItem` call.
pub const BATCH_WRITE_LIMIT: usize = 25;
/// Calls in flight at once for one batch: as many as the store lets be in flight.
const CONCURRENCY: usize = crate::retry::MAX_IN_FLIGHT;

/// Ticks (indices into a batch) that could not be stored, with the error: transient or the
/// deployment's (the batch is delivered again), or the tick's own (it is dead-lettered).
pub type Failed = Vec<(usize, AwsError)>;

/// What happened to each tick of a batch.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TickWriteOutcome {
    /// Ticks the store did not hold before (counted from the sums' growth).
    pub stored: usize,
    /// Ticks written whose identity was already stored, by an earlier delivery or earlier in the batch.
    pub duplicates: usize,
    /// Ticks not stored: see `Failed`.
    pub failed: Failed,
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
    /// 10.4 ledger updates, 15.6 sum writes, 5.2 queries`.
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

/// A sum as stored: the mids' sum and count, and how many ledger entries it stands on (its version).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Versioned {
    sum: MidSum,
    entries: u64,
}

/// Hours touched by a batch, with the ticks (indices) in each.
pub type Hours = BTreeMap<(String, Timestamp), Vec<usize>>;

#[derive(Debug, Clone)]
pub struct TickStore {
    client: aws_sdk_dynamodb::Client,
    ticks_table: Resource,
    rates_table: Resource,
    /// How long raw ticks and ledgers are kept (`expires_at`, the tables' TTL attribute);
    /// `None` keeps them.
    pub retention: Option<std::time::Duration>,
    retry: RetryPolicy,
    counts: Arc<RequestCounts>,
}

impl TickStore {
    pub fn new(
        client: aws_sdk_dynamodb::Client,
        ticks_table: impl Into<Resource>,
        rates_table: impl Into<Resource>,
    ) -> Self {
        Self {
            client,
            ticks_table: ticks_table.into(),
            rates_table: rates_table.into(),
            retention: None,
            retry: RetryPolicy::default(),
            counts: Default::default(),
        }
    }

    /// Requests sent so far by this store (and its clones).
    pub fn request_counts(&self) -> &RequestCounts {
        &self.counts
    }

    /// Retries so far, and throttling among them.
    pub fn retry_stats(&self) -> &crate::retry::RetryStats {
        &self.retry.stats
    }

    /// `expires_at` for items written now: epoch seconds, when a retention is set.
    fn expires_at(&self) -> Option<AttributeValue> {
        let retention = self.retention?;
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .ok()?;
        Some(AttributeValue::N((now + retention).as_secs().to_string()))
    }

    /// Stores the ticks and brings the sums they touch up to date: `put_raw`, then
    /// `refresh_minutes`, then `refresh_hours`. `sources[i]` is tick i's source position. The
    /// M1 candle of each (pair, minute) the batch touched, rebuilt from the minute's ledger with
    /// the ledger's entry count as its weight (see `candles`), goes to `alongside` as soon as the
    /// minutes are done, and `alongside` runs while the hours' sums are brought up to date:
    /// nothing reads those, so a caller that goes on from the minutes (the candle store) does not
    /// wait for the hours' round trips. Returns the outcome and what `alongside` came to.
    pub async fn write<F, Fut>(
        &self,
        ticks: &[Tick],
        sources: &[String],
        alongside: F,
    ) -> (TickWriteOutcome, Fut::Output)
    where
        F: FnOnce(Vec<(String, Candle, u64)>) -> Fut,
        Fut: std::future::Future,
    {
        let mut seen = HashSet::with_capacity(ticks.len());
        let unique: Vec<usize> = (0..ticks.len())
            .filter(|&i| seen.insert((ticks[i].pair.as_str(), ticks[i].timestamp)))
            .collect();
        let mut failed = self.put_raw(ticks, sources, &unique).await;
        let failed_raw: HashSet<usize> = failed.iter().map(|(i, _)| *i).collect();
        let written: Vec<usize> = unique
            .into_iter()
            .filter(|i| !failed_raw.contains(i))
            .collect();

        let (added, hours, failed_minutes, minutes) = self.refresh_minutes(ticks, &written).await;
        failed.extend(failed_minutes);
        let (failed_hours, beside) = futures::join!(self.refresh_hours(hours), alongside(minutes));
        failed.extend(failed_hours);
        // Under concurrency a sum can grow by another batch's ticks too: never count more than ours.
        let stored = (added as usize).min(written.len());
        let outcome = TickWriteOutcome {
            stored,
            duplicates: ticks.len() - failed_raw.len() - stored,
            failed,
        };
        (outcome, beside)
    }

    /// WAK per ZAR in each of `hours` that has both pairs' rates: 1 / (WAKMRV x MRVZAR), from the
    /// hours' exact mean mids. Every hour is read once, `BatchGetItem` of up to 100 keys a call
    /// (keys DynamoDB leaves unprocessed are asked again with backoff). An hour without rates is
    /// absent; a read that fails is an error.
    pub async fn wak_per_zar(
        &self,
        hours: &std::collections::BTreeSet<Timestamp>,
    ) -> Result<HashMap<Timestamp, f64>, AwsError> {
        const PAIRS: [&str; 2] = ["MRVZAR", "WAKMRV"];
        const KEYS_PER_CALL: usize = 100;
        let what = "reading the hourly rates";
        let keys: Vec<HashMap<String, AttributeValue>> = hours
            .iter()
            .flat_map(|hour| {
                PAIRS.map(|pair| {
                    HashMap::from([
                        ("pair".to_owned(), AttributeValue::S(pair.to_owned())),
                        ("bucket".to_owned(), AttributeValue::S(hour_bucket(*hour))),
                    ])
                })
            })
            .collect();
        let mut means: HashMap<(String, String), f64> = HashMap::new();
        for chunk in keys.chunks(KEYS_PER_CALL) {
            let mut pending = chunk.to_vec();
            let mut backoff = self.retry.backoff();
            while !pending.is_empty() {
                let request = aws_sdk_dynamodb::types::KeysAndAttributes::builder()
                    .set_keys(Some(pending.clone()))
                    .projection_expression("#p, #b, #s, #t")
                    .expression_attribute_names("#p", "pair")
                    .expression_attribute_names("#b", "bucket")
                    .expression_attribute_names("#s", "mid_sum_nanos")
                    .expression_attribute_names("#t", "ticks")
                    .build()
                    .map_err(|e| {
                        AwsError::rejected(e.to_string()).doing(what, &self.rates_table)
                    })?;
                let result = {
                    let _permit = self.retry.permit().await;
                    self.client
                        .batch_get_item()
                        .request_items(&self.rates_table.name, request)
                        .send()
                        .await
                };
                let out = match result {
                    Ok(out) => out,
                    Err(e) => {
                        backoff
                            .after(AwsError::from_sdk(&e))
                            .await
                            .map_err(|e| e.doing(what, &self.rates_table))?;
                        continue;
                    }
                };
                for item in out
                    .responses()
                    .and_then(|r| r.get(&self.rates_table.name))
                    .into_iter()
                    .flatten()
                {
                    let sum = MidSum {
                        mid_sum_nanos: number(item, "mid_sum_nanos").unwrap_or(0),
                        ticks: number(item, "ticks").unwrap_or(0),
                    };
                    if let (Some(pair), Some(bucket), Some(mean)) = (
                        item.get("pair").and_then(|v| v.as_s().ok()),
                        item.get("bucket").and_then(|v| v.as_s().ok()),
                        sum.mean(),
                    ) {
                        means.insert((pair.clone(), bucket.clone()), mean);
                    }
                }
                pending = out
                    .unprocessed_keys()
                    .and_then(|u| u.get(&self.rates_table.name))
                    .map(|k| k.keys().to_vec())
                    .unwrap_or_default();
                if !pending.is_empty() {
                    backoff
                        .after(AwsError::throttled(format!(
                            "{} keys left unprocessed",
                            pending.len()
                        )))
                        .await
                        .map_err(|e| e.doing(what, &self.rates_table))?;
                }
            }
        }
        Ok(hours
            .iter()
            .filter_map(|hour| {
                let mean = |pair: &str| means.get(&(pair.to_owned(), hour_bucket(*hour))).copied();
                Some((*hour, 1.0 / (mean("WAKMRV")? * mean("MRVZAR")?)))
            })
            .collect())
    }

    /// Step 1: writes raw ticks in batches of 25; returns the ticks that could not be written.
    pub async fn put_raw(&self, ticks: &[Tick], sources: &[String], selected: &[usize]) -> Failed {
        let jobs: Vec<_> = selected
            .chunks(BATCH_WRITE_LIMIT)
            .map(|chunk| self.batch_write(ticks, sources, chunk))
            .collect();
        let results: Vec<Failed> = futures::stream::iter(jobs)
            .buffer_unordered(CONCURRENCY)
            .collect()
            .await;
        results.into_iter().flatten().collect()
    }

    /// One `BatchWriteItem` of up to 25 raw ticks, items left unprocessed retried. A chunk the
    /// service refuses as invalid is written a tick at a time, so that only the ticks it cannot
    /// take are the ones reported.
    async fn batch_write(&self, ticks: &[Tick], sources: &[String], chunk: &[usize]) -> Failed {
        let expires_at = self.expires_at();
        let mut pending: Vec<(usize, WriteRequest)> = Vec::with_capacity(chunk.len());
        let mut failed = Failed::new();
        for &i in chunk {
            let source = sources.get(i).map(String::as_str).unwrap_or_default();
            match raw_item(&ticks[i], source, expires_at.clone()) {
                Ok(request) => pending.push((i, request)),
                Err(e) => failed.push((i, e.doing("building a raw tick item", &self.ticks_table))),
            }
        }
        let what = "writing raw ticks";
        let mut backoff = self.retry.backoff();
        while !pending.is_empty() {
            self.counts.batch_writes.fetch_add(1, Ordering::Relaxed);
            self.counts
                .items_written
                .fetch_add(pending.len() as u64, Ordering::Relaxed);
            let result = {
                let _permit = self.retry.permit().await;
                self.client
                    .batch_write_item()
                    .request_items(
                        &self.ticks_table.name,
                        pending.iter().map(|(_, r)| r.clone()).collect(),
                    )
                    .send()
                    .await
            };
            let error = match result {
                Ok(out) => {
                    let unprocessed: HashSet<(String, String)> = out
                        .unprocessed_items()
                        .and_then(|m| m.get(&self.ticks_table.name))
                        .into_iter()
                        .flatten()
                        .filter_map(raw_key)
                        .collect();
                    if unprocessed.is_empty() {
                        return failed;
                    }
                    // Keep the requests DynamoDB left unprocessed (matched by key); if none
                    // matches, keep them all rather than risk dropping one.
                    let left: Vec<(usize, WriteRequest)> = pending
                        .iter()
                        .filter(|(_, r)| raw_key(r).is_some_and(|k| unprocessed.contains(&k)))
                        .cloned()
                        .collect();
                    if !left.is_empty() {
                        pending = left;
                    }
                    AwsError::throttled(format!("{} items left unprocessed", pending.len()))
                }
                Err(e) => AwsError::from_sdk(&e),
            };
            if error.kind == FailureKind::Rejected && pending.len() > 1 {
                let singles = pending.iter().map(|(i, request)| self.put_one(*i, request));
                failed.extend(
                    futures::future::join_all(singles)
                        .await
                        .into_iter()
                        .flatten(),
                );
                return failed;
            }
            if let Err(e) = backoff.after(error).await {
                let e = e.doing(what, &self.ticks_table);
                failed.extend(pending.into_iter().map(|(i, _)| (i, e.clone())));
                return failed;
            }
        }
        failed
    }

    /// One raw tick alone (`PutItem`), to tell which ticks of a refused chunk are at fault.
    async fn put_one(&self, i: usize, request: &WriteRequest) -> Option<(usize, AwsError)> {
        let item = request.put_request()?.item().clone();
        self.counts.items_written.fetch_add(1, Ordering::Relaxed);
        send_with_retry(&self.retry, || {
            self.client
                .put_item()
                .table_name(&self.ticks_table.name)
                .set_item(Some(item.clone()))
                .send()
        })
        .await
        .err()
        .map(|e| (i, e.doing("writing a raw tick", &self.ticks_table)))
    }

    /// Step 2: records the ticks in their minutes' ledgers and rewrites those minutes' sums.
    /// Returns how many ticks the sums grew by, the hours touched, the ticks that failed, and the
    /// minutes' candles.
    pub async fn refresh_minutes(
        &self,
        ticks: &[Tick],
        written: &[usize],
    ) -> (u64, Hours, Failed, Vec<(String, Candle, u64)>) {
        let jobs: Vec<_> = by_minute(ticks, written)
            .into_iter()
            .map(|((_, minute), members)| async move {
                let result = match self.add_to_ledger(ticks, &members, minute).await {
                    Ok((ledger, candle)) => {
                        let pair = &ticks[members[0]].pair;
                        self.put_sum(
                            &pair_hour_key(pair, minute),
                            minute_bucket(minute),
                            minute,
                            ledger,
                        )
                        .await
                        .map(|added| (added, candle.map(|c| (pair.clone(), c, ledger.entries))))
                    }
                    Err(e) => Err(e),
                };
                (members, result)
            })
            .collect();
        let results: Vec<_> = futures::stream::iter(jobs)
            .buffer_unordered(CONCURRENCY)
            .collect()
            .await;
        let mut added = 0;
        let mut hours = Hours::new();
        let mut failed = Failed::new();
        let mut candles = Vec::new();
        for (members, result) in results {
            match result {
                Ok((n, candle)) => {
                    added += n;
                    candles.extend(candle);
                    let t = &ticks[members[0]];
                    hours
                        .entry((t.pair.clone(), t.timestamp.hour_start()))
                        .or_default()
                        .extend(members);
                }
                Err(e) => failed.extend(members.into_iter().map(|i| (i, e.clone()))),
            }
        }
        (added, hours, failed, candles)
    }

    /// Step 3: rewrites each hour's sum from its minute sums.
    pub async fn refresh_hours(&self, hours: Hours) -> Failed {
        let jobs: Vec<_> = hours
            .into_iter()
            .map(|((pair, hour), members)| async move {
                let result = match self.minute_sums(&pair, hour).await {
                    Ok(sum) => self.put_sum(&pair, hour_bucket(hour), hour, sum).await,
                    Err(e) => Err(e),
                };
                (members, result)
            })
            .collect();
        let results = concurrently(jobs).await;
        results
            .into_iter()
            .filter_map(|(members, result)| result.err().map(|e| (members, e)))
            .flat_map(|(members, e)| members.into_iter().map(move |i| (i, e.clone())))
            .collect()
    }

    /// Adds the ticks' entries to their minute's ledger (a string set: adding an entry again
    /// changes nothing, so a redelivered tick is recorded once) and sums the ledger as it stands
    /// after the update.
    async fn add_to_ledger(
        &self,
        ticks: &[Tick],
        members: &[usize],
        minute: Timestamp,
    ) -> Result<(Versioned, Option<Candle>), AwsError> {
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
        let expires_at = self.expires_at();
        let out = send_with_retry(&self.retry, || {
            self.counts.ledger_updates.fetch_add(1, Ordering::Relaxed);
            let update = self
                .client
                .update_item()
                .table_name(&self.rates_table.name)
                .key("pair", AttributeValue::S(pair.to_owned()))
                .key("bucket", AttributeValue::S(ledger_bucket(minute)))
                .expression_attribute_names("#ledger", LEDGER_ATTRIBUTE)
                .expression_attribute_values(":entries", AttributeValue::Ss(entries.clone()))
                .return_values(ReturnValue::AllNew);
            match &expires_at {
                Some(at) => update
                    .update_expression("ADD #ledger :entries SET #exp = :exp")
                    .expression_attribute_names("#exp", EXPIRES_AT)
                    .expression_attribute_values(":exp", at.clone()),
                None => update.update_expression("ADD #ledger :entries"),
            }
            .send()
        })
        .await
        .map_err(|e| {
            e.doing(
                format!("updating the ledger {pair} {}", ledger_bucket(minute)),
                &self.rates_table,
            )
        })?;
        Ok(ledger_sum(
            &out.attributes().cloned().unwrap_or_default(),
            minute,
        ))
    }

    /// The sum of an hour's minute sums (each minute's ledger entries count toward the version).
    async fn minute_sums(&self, pair: &str, hour: Timestamp) -> Result<Versioned, AwsError> {
        let first = minute_bucket(hour);
        let last = minute_bucket(Timestamp::from_micros(hour.micros() + 3_599_999_999));
        let mut total = Versioned::default();
        let mut start: Option<HashMap<String, AttributeValue>> = None;
        loop {
            let page = send_with_retry(&self.retry, || {
                self.counts.queries.fetch_add(1, Ordering::Relaxed);
                self.client
                    .query()
                    .table_name(&self.rates_table.name)
                    .consistent_read(true)
                    .key_condition_expression("#pk = :pk AND #sk BETWEEN :from AND :to")
                    .expression_attribute_names("#pk", "pair")
                    .expression_attribute_names("#sk", "bucket")
                    .expression_attribute_values(
                        ":pk",
                        AttributeValue::S(pair_hour_key(pair, hour)),
                    )
                    .expression_attribute_values(":from", AttributeValue::S(first.clone()))
                    .expression_attribute_values(":to", AttributeValue::S(last.clone()))
                    .set_exclusive_start_key(start.clone())
                    .send()
            })
            .await
            .map_err(|e| {
                e.doing(
                    format!("querying the minutes of {pair} {}", hour_bucket(hour)),
                    &self.rates_table,
                )
            })?;
            for item in page.items() {
                if let (Some(s), Some(n), Some(e)) = (
                    number::<i128>(item, "mid_sum_nanos"),
                    number::<u64>(item, "ticks"),
                    number::<u64>(item, "entries"),
                ) {
                    total.sum.merge(MidSum {
                        mid_sum_nanos: s,
                        ticks: n,
                    });
                    total.entries += e;
                }
            }
            match page.last_evaluated_key() {
                Some(key) if !key.is_empty() => start = Some(key.clone()),
                _ => return Ok(total),
            }
        }
    }

    /// Writes a sum unless the stored one stands on as many ledger entries or more. `partition`
    /// is the pair for hour sums and the pair and hour (`pair_hour_key`) for minute sums.
    /// Returns how many ticks the stored sum grew by.
    async fn put_sum(
        &self,
        partition: &str,
        bucket: String,
        start: Timestamp,
        v: Versioned,
    ) -> Result<u64, AwsError> {
        if v.entries == 0 {
            return Ok(0);
        }
        let result = send_with_retry(&self.retry, || {
            self.counts.sum_puts.fetch_add(1, Ordering::Relaxed);
            self.client
                .put_item()
                .table_name(&self.rates_table.name)
                .item("pair", AttributeValue::S(partition.to_owned()))
                .item("bucket", AttributeValue::S(bucket.clone()))
                .item("start", AttributeValue::S(start.to_seconds_string()))
                .item(
                    "mid_sum_nanos",
                    AttributeValue::N(v.sum.mid_sum_nanos.to_string()),
                )
                .item("ticks", AttributeValue::N(v.sum.ticks.to_string()))
                .item("entries", AttributeValue::N(v.entries.to_string()))
                .condition_expression("attribute_not_exists(#entries) OR #entries < :entries")
                .expression_attribute_names("#entries", "entries")
                .expression_attribute_values(":entries", AttributeValue::N(v.entries.to_string()))
                .return_values(ReturnValue::AllOld)
                .send()
        })
        .await;
        match result {
            Ok(out) => {
                let before = out
                    .attributes()
                    .and_then(|a| number::<u64>(a, "ticks"))
                    .unwrap_or(0);
                Ok(v.sum.ticks.saturating_sub(before))
            }
            // The stored sum already stands on these entries (or more): nothing to add.
            Err(SendError::Condition) => Ok(0),
            Err(SendError::Failed(e)) => Err(e.doing(
                format!("writing sum {partition} {bucket}"),
                &self.rates_table,
            )),
        }
    }
}

/// Runs per-group jobs, `CONCURRENCY` at a time: each gives its group's ticks and its result.
async fn concurrently(
    jobs: Vec<impl std::future::Future<Output = (Vec<usize>, Result<u64, AwsError>)>>,
) -> Vec<(Vec<usize>, Result<u64, AwsError>)> {
    futures::stream::iter(jobs)
        .buffer_unordered(CONCURRENCY)
        .collect()
        .await
}

/// A raw tick item: the tick as received, where it came from, and when it may expire.
fn raw_item(
    t: &Tick,
    source: &str,
    expires_at: Option<AttributeValue>,
) -> Result<WriteRequest, AwsError> {
    let mut put = PutRequest::builder()
        .item("pk", AttributeValue::S(pair_hour_key(&t.pair, t.timestamp)))
        .item("ts", AttributeValue::S(t.timestamp.to_wtc_string()))
        .item("pair_name", AttributeValue::S(t.pair.clone()))
        .item("bid_price", AttributeValue::N(t.bid.to_string()))
        .item("ask_price", AttributeValue::N(t.ask.to_string()))
        .item("spread", AttributeValue::N(t.spread.to_string()))
        .item("src", AttributeValue::S(source.to_owned()));
    if let Some(at) = expires_at {
        put = put.item(EXPIRES_AT, at);
    }
    let put = put.build().map_err(|e| AwsError::rejected(e.to_string()))?;
    Ok(WriteRequest::builder().put_request(put).build())
}

/// A raw item request's key.
fn raw_key(request: &WriteRequest) -> Option<(String, String)> {
    let item = request.put_request()?.item();
    match (item.get("pk"), item.get("ts")) {
        (Some(AttributeValue::S(pk)), Some(AttributeValue::S(ts))) => {
            Some((pk.clone(), ts.clone()))
        }
        _ => None,
    }
}

/// The ledger's string-set attribute.
const LEDGER_ATTRIBUTE: &str = "ticks_seen";
/// The TTL attribute of raw ticks and ledgers (epoch seconds), as the template configures it.
pub const EXPIRES_AT: &str = "expires_at";

/// Sort key of a minute's ledger: `L#2024-01-01 13:05`.
fn ledger_bucket(minute: Timestamp) -> String {
    format!("L#{}", &minute_bucket(minute)[2..])
}

/// A ledger entry: the tick's microseconds into its minute (its identity within the pair-minute)
/// and its mid in nano-units, e.g. `00570000:1738300000`.
fn ledger_entry(offset_micros: i64, mid_nanos: i64) -> String {
    format!("{offset_micros:08}:{mid_nanos}")
}

/// A ledger's sum and candle: one mid per identity (the lowest, when a tick was sent with different
/// prices), versioned by the number of entries.
fn ledger_sum(
    item: &HashMap<String, AttributeValue>,
    minute: Timestamp,
) -> (Versioned, Option<Candle>) {
    let mut mids: BTreeMap<&str, i64> = BTreeMap::new();
    let mut entries = 0;
    if let Some(AttributeValue::Ss(set)) = item.get(LEDGER_ATTRIBUTE) {
        entries = set.len() as u64;
        for entry in set {
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
    mids.values().for_each(|m| sum.add_mid(*m));
    let candle = Candle::from_mids(mids.iter().filter_map(|(offset, mid)| {
        let offset: i64 = offset.parse().ok()?;
        Some((Timestamp::from_micros(minute.micros() + offset), *mid))
    }));
    (Versioned { sum, entries }, candle)
}

fn number<T: std::str::FromStr>(item: &HashMap<String, AttributeValue>, name: &str) -> Option<T> {
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
        let minute = Timestamp::from_micros(1_704_067_200_000_000);
        let (v, candle) = ledger_sum(
            &ledger(&["00570000:1738300000", "01082000:1000000000"]),
            minute,
        );
        let sum = MidSum {
            mid_sum_nanos: 2_738_300_000,
            ticks: 2,
        };
        assert_eq!((v.sum, v.entries), (sum, 2));
        let candle = candle.expect("a candle");
        assert_eq!(
            (candle.open, candle.close, candle.high, candle.low),
            (1.7383, 1.0, 1.7383, 1.0)
        );
        assert_eq!(candle.open_at.to_string(), "2024-01-01 00:00:00.570000");
        // One tick sent twice with different prices: it counts once, at the lower mid, and the
        // extra entry still makes this a newer version of the sum.
        let (v, _) = ledger_sum(
            &ledger(&[
                "00570000:1738300000",
                "00570000:1500000000",
                "01082000:1000000000",
            ]),
            minute,
        );
        let sum = MidSum {
            mid_sum_nanos: 2_500_000_000,
            ticks: 2,
        };
        assert_eq!((v.sum, v.entries), (sum, 3));
        assert_eq!(
            ledger_sum(&HashMap::new(), minute),
            (Versioned::default(), None)
        );
    }
}
