//! The candle store: M1, M30 and H1 candles per symbol, and their indicators, exact under
//! redelivery, late data and concurrent writers.
//!
//! # Candles
//!
//! One item per (series, start) in the candles table: `series = RELIANCE.NS#M1`, `start =
//! 2024-01-01 03:45:00`. A candle is never folded into: it is rewritten whole from a complete view
//! of its inputs, with a version (`weight`) that only grows as its inputs do, and a write is
//! refused unless it carries a greater weight than the stored one.
//! - M1 from ticks: rebuilt from the minute's ledger (every distinct tick with its mid, see
//!   `ticks`), weight = the ledger's entries; it keeps the tick count and the mids' sum (1e-9
//!   units), so the minute's mean mid is exact.
//! - M1 from a fetched bar: the bar as it is, with weight `BAR_WEIGHT`, above any tick count, so the
//!   exchange's bar replaces the candle the latest-price ticks were forming, and ticks never
//!   overwrite it. The same bar fetched again is the same write.
//! - M30 and H1: rolled up from a query of their M1 candles, weight = the M1 weights' sum.
//!
//! A stale writer (one that saw fewer inputs) is refused, so the stored candle is always the one
//! built from the most inputs anyone saw, which is the one a clean pass gives once all have arrived.
//!
//! # Indicators
//!
//! A candle closes when a later candle of its series exists. Per series the state table holds the
//! indicator states after the last closed candle (`IndicatorSet` as JSON), that candle's start,
//! and a `version` for optimistic concurrency. Advancing a series:
//! 1. read the state (version v); the candles to (re)compute start at the earliest of: the candle
//!    after the last closed one, a `pending` mark left by a writer that may not have finished, and
//!    the earliest candle this writer changed if that one was already closed (a late tick);
//! 2. take the states before that point (the stored state, or, when rewinding, the snapshot on the
//!    nearest candle before it that carries one, the candles between folded again unwritten), fold
//!    the closed candles from there;
//! 3. commit the new state as version v+1 with `pending` = the first recomputed candle, on the
//!    condition that the version is still v (else start over from 1);
//! 4. write each recomputed candle's values, tagged v+1, refused on a candle already written by a
//!    newer version; every `SNAPSHOT_EVERY`-th of them (counted from the newest, which always has
//!    one) also carries the snapshot of the states after it, and the others lose any snapshot an
//!    earlier pass left, which no longer follows from the candles before it;
//! 5. clear `pending` if the version is still v+1.
//!
//! A writer that loses the race at 3 wrote nothing; one that crashes or is overtaken during 4
//! leaves `pending`, and whoever commits next recomputes from there, so every closed candle's values
//! end up those of one clean pass over the stored candles.

use crate::error::{AwsError, Resource};
use crate::retry::{RetryPolicy, SendError, send_with_retry};
use aws_sdk_dynamodb::types::AttributeValue;
use futures::StreamExt;
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use wtc_core::candles::{Candle, Interval};
use wtc_core::indicators::{IndicatorSet, IndicatorValues, Ohlc, Price};
use wtc_core::time::Timestamp;

/// The weight of an M1 candle from a fetched bar: more than any minute's ticks can reach.
pub const BAR_WEIGHT: u64 = 1 << 40;
/// Times a series' advance starts over after losing a race before giving up.
const MAX_CONFLICTS: u32 = 20;
/// Writes in flight at once.
const CONCURRENCY: usize = crate::retry::MAX_IN_FLIGHT;
/// Closed candles carry the indicator states after them (about 1.6 KB) one in this many, and the
/// newest of every pass: a rewind starts from the nearest before it and folds the few between
/// again, so that the other candles stay small (a write of one is one unit, not two or three).
pub const SNAPSHOT_EVERY: usize = 10;
/// Candles an advance takes at a time by default (each with its indicator snapshot, about 2 KB,
/// in memory).
pub const REWIND_PAGE: usize = 500;

/// What one `advance` asks for, across its pages.
struct Round<'a> {
    series: &'a str,
    interval: Interval,
    rewind: Rewind,
    price: Option<Price>,
    close_all: bool,
}

type Item = HashMap<String, AttributeValue>;

/// Every attribute of a candle item but its snapshot (names bound where the query is built).
const CANDLE_ATTRIBUTES: &str = "#series, #start, #o, #h, #l, #c, #oa, #ca, #t, #m, #v, #w, #i";

/// `RELIANCE.NS#M1`: the partition of one series.
pub fn series_key(symbol: &str, interval: Interval) -> String {
    format!("{symbol}#{interval:?}")
}

/// The candle's sort key: `2024-01-01 03:45:00`.
pub fn start_key(start: Timestamp) -> String {
    start.to_seconds_string()
}

/// A candle as stored, with its indicators once it has closed.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredCandle {
    pub candle: Candle,
    pub weight: u64,
    pub values: Option<IndicatorValues>,
    snapshot: Option<String>,
}

/// Requests sent, for cost reports.
#[derive(Debug, Default)]
pub struct CandleCounts {
    pub candle_writes: AtomicU64,
    pub queries: AtomicU64,
    pub state_reads: AtomicU64,
    pub state_writes: AtomicU64,
    pub value_writes: AtomicU64,
    pub conflicts: AtomicU64,
    pub latest_writes: AtomicU64,
}

impl CandleCounts {
    /// A line such as `candles per 1,000 records: 30.1 candle writes, 12.0 queries, ...`.
    pub fn per_thousand(&self, records: u64) -> String {
        let per =
            |n: &AtomicU64| n.load(Ordering::Relaxed) as f64 * 1_000.0 / records.max(1) as f64;
        format!(
            "candles per 1,000 records: {:.1} candle writes, {:.1} queries, {:.1} state reads, \
             {:.1} state writes, {:.1} indicator writes, {:.1} latest-price writes, {:.1} lost races",
            per(&self.candle_writes),
            per(&self.queries),
            per(&self.state_reads),
            per(&self.state_writes),
            per(&self.value_writes),
            per(&self.latest_writes),
            per(&self.conflicts),
        )
    }
}

/// What a reader asks of a series (see `CandleStore::page`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PageRequest<'a> {
    pub series: &'a str,
    pub from: Option<Timestamp>,
    pub to: Option<Timestamp>,
    pub limit: u32,
    pub newest_first: bool,
    /// Continue after the candle that started here (a page token's position).
    pub after: Option<Timestamp>,
}

/// A page of candles, and where the next one continues (`None`: this was the last).
#[derive(Debug, Clone, PartialEq)]
pub struct CandlePage {
    pub candles: Vec<StoredCandle>,
    pub next_after: Option<Timestamp>,
}

/// Where a series' recomputation starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rewind {
    /// Only what this writer changed: from its earliest changed candle if that one had closed.
    Changed(Option<Timestamp>),
    /// From this candle on (a backfill).
    From(Timestamp),
    /// From the first candle of the series, with fresh states (a new price basis, say).
    All,
}

/// What advancing a series did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Advanced {
    /// Candles whose indicators were computed for the first time.
    pub closed: usize,
    /// Candles whose indicators were computed again (late data, backfill).
    pub recomputed: usize,
    /// The last closed candle, with its values.
    pub last: Option<(Timestamp, f64, IndicatorValues)>,
}

#[derive(Debug, Clone)]
pub struct CandleStore {
    pub(crate) client: aws_sdk_dynamodb::Client,
    pub(crate) candles_table: Resource,
    state_table: Resource,
    /// The price basis of a series' indicators when it starts.
    pub default_price: Price,
    pub(crate) retry: RetryPolicy,
    pub(crate) counts: Arc<CandleCounts>,
    /// Candles an advance takes at a time.
    rewind_page: usize,
}

/// The stored state of a series.
#[derive(Debug, Clone)]
struct SeriesState {
    set: IndicatorSet,
    last_closed: Option<Timestamp>,
    pending: Option<Timestamp>,
    version: u64,
}

impl CandleStore {
    pub fn new(
        client: aws_sdk_dynamodb::Client,
        candles_table: impl Into<Resource>,
        state_table: impl Into<Resource>,
    ) -> Self {
        Self {
            client,
            candles_table: candles_table.into(),
            state_table: state_table.into(),
            default_price: Price::Close,
            retry: RetryPolicy::default(),
            counts: Default::default(),
            rewind_page: REWIND_PAGE,
        }
    }

    /// Advances take at most `candles` candles at a time (`REWIND_PAGE` unless set; at least 1).
    pub fn with_rewind_page(mut self, candles: usize) -> Self {
        self.rewind_page = candles.max(1);
        self
    }

    pub fn request_counts(&self) -> &CandleCounts {
        &self.counts
    }

    /// Retries so far, and throttling among them.
    pub fn retry_stats(&self) -> &crate::retry::RetryStats {
        &self.retry.stats
    }

    /// Writes a candle unless the stored one has as much weight or more (bars: or the same).
    /// Returns whether it was written.
    pub async fn put_candle(
        &self,
        symbol: &str,
        interval: Interval,
        candle: &Candle,
        weight: u64,
    ) -> Result<bool, AwsError> {
        let series = series_key(symbol, interval);
        let condition = if weight >= BAR_WEIGHT && interval == Interval::M1 {
            "attribute_not_exists(#w) OR #w <= :w"
        } else {
            "attribute_not_exists(#w) OR #w < :w"
        };
        let n = |x: f64| AttributeValue::N(x.to_string());
        let result = send_with_retry(&self.retry, || {
            self.counts.candle_writes.fetch_add(1, Ordering::Relaxed);
            self.client
                .update_item()
                .table_name(&self.candles_table.name)
                .key("series", AttributeValue::S(series.clone()))
                .key("start", AttributeValue::S(start_key(candle.start)))
                .update_expression(
                    "SET #o = :o, #h = :h, #l = :l, #c = :c, #oa = :oa, #ca = :ca, #t = :t, \
                     #m = :m, #v = :v, #w = :w",
                )
                .expression_attribute_names("#m", "mid_sum_nanos")
                .expression_attribute_values(
                    ":m",
                    AttributeValue::N(candle.mid_sum_nanos.to_string()),
                )
                .expression_attribute_names("#oa", "open_at")
                .expression_attribute_names("#ca", "close_at")
                .expression_attribute_names("#t", "ticks")
                .expression_attribute_names("#v", "volume")
                .condition_expression(condition)
                .expression_attribute_names("#o", "open")
                .expression_attribute_names("#h", "high")
                .expression_attribute_names("#l", "low")
                .expression_attribute_names("#c", "close")
                .expression_attribute_names("#w", "weight")
                .expression_attribute_values(":o", n(candle.open))
                .expression_attribute_values(":h", n(candle.high))
                .expression_attribute_values(":l", n(candle.low))
                .expression_attribute_values(":c", n(candle.close))
                .expression_attribute_values(":oa", AttributeValue::S(candle.open_at.to_string()))
                .expression_attribute_values(":ca", AttributeValue::S(candle.close_at.to_string()))
                .expression_attribute_values(":t", AttributeValue::N(candle.ticks.to_string()))
                .expression_attribute_values(":v", n(candle.volume))
                .expression_attribute_values(":w", AttributeValue::N(weight.to_string()))
                .send()
        })
        .await;
        match result {
            Ok(_) => Ok(true),
            Err(SendError::Condition) => Ok(false),
            Err(SendError::Failed(e)) => Err(e.doing(
                format!("writing candle {series} {}", start_key(candle.start)),
                &self.candles_table,
            )),
        }
    }

    /// Rebuilds the `interval` candle starting at `start` from its M1 candles.
    pub async fn roll_up(
        &self,
        symbol: &str,
        interval: Interval,
        start: Timestamp,
    ) -> Result<(), AwsError> {
        let last = Timestamp::from_micros(start.micros() + interval.micros() - 1);
        let minutes = self
            .query(&series_key(symbol, Interval::M1), Some(start), Some(last))
            .await?;
        let mut weight = 0;
        let mut candle: Option<Candle> = None;
        for m in &minutes {
            weight += m.weight;
            let rolled = m.candle.rolled_up(interval);
            match &mut candle {
                Some(c) => c.merge(&rolled),
                None => candle = Some(rolled),
            }
        }
        match candle {
            Some(c) => self
                .put_candle(symbol, interval, &c, weight)
                .await
                .map(|_| ()),
            None => Ok(()),
        }
    }

    /// A query of a series' candles with `from <= start <= to`, every attribute but the snapshot
    /// (snapshots are read only when rewinding, by `candle_before`).
    fn range_query(
        &self,
        series: &str,
        from: &str,
        to: &str,
    ) -> aws_sdk_dynamodb::operation::query::builders::QueryFluentBuilder {
        self.client
            .query()
            .table_name(&self.candles_table.name)
            .key_condition_expression("#series = :s AND #start BETWEEN :from AND :to")
            .expression_attribute_names("#series", "series")
            .expression_attribute_names("#start", "start")
            .expression_attribute_values(":s", AttributeValue::S(series.to_owned()))
            .expression_attribute_values(":from", AttributeValue::S(from.to_owned()))
            .expression_attribute_values(":to", AttributeValue::S(to.to_owned()))
            .projection_expression(CANDLE_ATTRIBUTES)
            .expression_attribute_names("#o", "open")
            .expression_attribute_names("#h", "high")
            .expression_attribute_names("#l", "low")
            .expression_attribute_names("#c", "close")
            .expression_attribute_names("#t", "ticks")
            .expression_attribute_names("#m", "mid_sum_nanos")
            .expression_attribute_names("#v", "volume")
            .expression_attribute_names("#w", "weight")
            .expression_attribute_names("#oa", "open_at")
            .expression_attribute_names("#ca", "close_at")
            .expression_attribute_names("#i", "indicators")
    }

    /// The stored candles of a series with `from <= start <= to`, in time order.
    pub async fn query(
        &self,
        series: &str,
        from: Option<Timestamp>,
        to: Option<Timestamp>,
    ) -> Result<Vec<StoredCandle>, AwsError> {
        self.query_at_most(series, from, to, usize::MAX).await
    }

    /// The first `limit` stored candles of a series with `from <= start <= to`, in time order.
    async fn query_at_most(
        &self,
        series: &str,
        from: Option<Timestamp>,
        to: Option<Timestamp>,
        limit: usize,
    ) -> Result<Vec<StoredCandle>, AwsError> {
        let from = from.map_or_else(|| "0".to_owned(), start_key);
        let to = to.map_or_else(|| "9".to_owned(), start_key);
        let mut out = Vec::new();
        let mut page_start: Option<Item> = None;
        loop {
            let left = i32::try_from(limit - out.len()).ok();
            let page = send_with_retry(&self.retry, || {
                self.counts.queries.fetch_add(1, Ordering::Relaxed);
                self.range_query(series, &from, &to)
                    .consistent_read(true)
                    .set_limit(left)
                    .set_exclusive_start_key(page_start.clone())
                    .send()
            })
            .await
            .map_err(|e| e.doing(format!("querying candles of {series}"), &self.candles_table))?;
            for item in page.items() {
                out.push(stored_candle(item).ok_or_else(|| malformed(&self.candles_table, item))?);
            }
            match page.last_evaluated_key() {
                Some(key) if !key.is_empty() && out.len() < limit => page_start = Some(key.clone()),
                _ => return Ok(out),
            }
        }
    }

    /// One page of a series' candles for readers: at most `limit` candles with
    /// `from <= start <= to`, oldest first or newest first, continuing after the candle that
    /// started at `after`; one eventually consistent query. The page's last start is where the
    /// next one continues, if there is more.
    pub async fn page(&self, request: &PageRequest<'_>) -> Result<CandlePage, AwsError> {
        let from = request.from.map_or_else(|| "0".to_owned(), start_key);
        let to = request.to.map_or_else(|| "9".to_owned(), start_key);
        let series = request.series;
        let start_key = request.after.map(|after| {
            HashMap::from([
                ("series".to_owned(), AttributeValue::S(series.to_owned())),
                ("start".to_owned(), AttributeValue::S(start_key(after))),
            ])
        });
        let page = send_with_retry(&self.retry, || {
            self.range_query(series, &from, &to)
                .scan_index_forward(!request.newest_first)
                .limit(request.limit.max(1) as i32)
                .set_exclusive_start_key(start_key.clone())
                .send()
        })
        .await
        .map_err(|e| e.doing(format!("querying candles of {series}"), &self.candles_table))?;
        let mut candles = Vec::with_capacity(page.items().len());
        for item in page.items() {
            candles.push(stored_candle(item).ok_or_else(|| malformed(&self.candles_table, item))?);
        }
        let more = page.last_evaluated_key().is_some_and(|k| !k.is_empty());
        let next_after = more
            .then(|| candles.last().map(|c| c.candle.start))
            .flatten();
        Ok(CandlePage {
            candles,
            next_after,
        })
    }

    /// The indicator states just before `before`: the snapshot on the newest candle before it
    /// that carries one (every `SNAPSHOT_EVERY`-th closed candle does), and that candle's start,
    /// from which the candles up to `before` are folded again. The states of a fresh series
    /// (`None`) when no candle before it carries a snapshot of the `price` basis.
    async fn snapshot_before(
        &self,
        series: &str,
        before: Timestamp,
        price: Price,
    ) -> Result<(IndicatorSet, Option<Timestamp>), AwsError> {
        let mut page_start: Option<Item> = None;
        loop {
            let page = send_with_retry(&self.retry, || {
                self.counts.queries.fetch_add(1, Ordering::Relaxed);
                self.client
                    .query()
                    .table_name(&self.candles_table.name)
                    .consistent_read(true)
                    .key_condition_expression("#series = :s AND #start < :before")
                    .expression_attribute_names("#series", "series")
                    .expression_attribute_names("#start", "start")
                    .expression_attribute_names("#snapshot", "snapshot")
                    .projection_expression("#start, #snapshot")
                    .expression_attribute_values(":s", AttributeValue::S(series.to_owned()))
                    .expression_attribute_values(":before", AttributeValue::S(start_key(before)))
                    .scan_index_forward(false)
                    .limit(SNAPSHOT_EVERY as i32 + 1)
                    .set_exclusive_start_key(page_start.clone())
                    .send()
            })
            .await
            .map_err(|e| e.doing(format!("querying candles of {series}"), &self.candles_table))?;
            for item in page.items() {
                let Some(snapshot) = text(item, "snapshot") else {
                    continue;
                };
                let start = text(item, "start")
                    .and_then(|s| Timestamp::parse(s).ok())
                    .ok_or_else(|| malformed(&self.candles_table, item))?;
                return Ok(match serde_json::from_str::<IndicatorSet>(snapshot) {
                    Ok(set) if set.price == price => (set, Some(start)),
                    _ => (IndicatorSet::new(price), None),
                });
            }
            match page.last_evaluated_key() {
                Some(key) if !key.is_empty() => page_start = Some(key.clone()),
                _ => return Ok((IndicatorSet::new(price), None)),
            }
        }
    }

    async fn read_state(&self, series: &str) -> Result<Option<SeriesState>, AwsError> {
        let out = send_with_retry(&self.retry, || {
            self.counts.state_reads.fetch_add(1, Ordering::Relaxed);
            self.client
                .get_item()
                .table_name(&self.state_table.name)
                .key("series", AttributeValue::S(series.to_owned()))
                .consistent_read(true)
                .send()
        })
        .await
        .map_err(|e| {
            e.doing(
                format!("reading the indicator state of {series}"),
                &self.state_table,
            )
        })?;
        let Some(item) = out.item() else {
            return Ok(None);
        };
        let set = text(item, "state")
            .and_then(|s| serde_json::from_str(s).ok())
            .ok_or_else(|| malformed(&self.state_table, item))?;
        Ok(Some(SeriesState {
            set,
            last_closed: text(item, "last_closed").and_then(|s| Timestamp::parse(s).ok()),
            pending: text(item, "pending").and_then(|s| Timestamp::parse(s).ok()),
            version: number(item, "version").unwrap_or(0),
        }))
    }

    /// Closes the series' candles that have a later candle, and recomputes what `rewind` asks
    /// for; with `close_all`, the newest candle closes too (a backfill after the market closed).
    /// A long stretch is taken a page of candles at a time (`REWIND_PAGE` by default), each committed before the next
    /// is read, so that memory stays bounded however far back a rewind goes.
    pub async fn advance(
        &self,
        symbol: &str,
        interval: Interval,
        rewind: Rewind,
        price: Option<Price>,
        close_all: bool,
    ) -> Result<Advanced, AwsError> {
        let series = series_key(symbol, interval);
        let mut round = Round {
            series: &series,
            interval,
            rewind,
            price,
            close_all,
        };
        let mut total = Advanced::default();
        loop {
            let (done, more) = self.advance_page(&round).await?;
            total.closed += done.closed;
            total.recomputed += done.recomputed;
            total.last = done.last.or(total.last);
            if !more {
                return Ok(total);
            }
            // The next page goes on from the state this one committed.
            round.rewind = Rewind::Changed(None);
        }
    }

    /// One page of `advance`: at most a page of candles closed or recomputed, and whether
    /// the series has more to take.
    async fn advance_page(&self, round: &Round<'_>) -> Result<(Advanced, bool), AwsError> {
        let (series, interval, rewind) = (round.series, round.interval, round.rewind);
        for conflict in 0..MAX_CONFLICTS {
            if conflict > 0 {
                // Another writer advanced the series first: wait a jittered, growing while, so
                // that writers racing on one series spread out instead of colliding again.
                tokio::time::sleep(self.retry.delay(conflict)).await;
            }
            let state = self.read_state(series).await?;
            let version = state.as_ref().map_or(0, |s| s.version);
            let last_closed = state.as_ref().and_then(|s| s.last_closed);
            let next_open =
                last_closed.map(|t| Timestamp::from_micros(t.micros() + interval.micros()));
            let price = round
                .price
                .or(state.as_ref().map(|s| s.set.price))
                .unwrap_or(self.default_price);
            let fresh =
                rewind == Rewind::All || state.as_ref().is_some_and(|s| s.set.price != price);
            // The first candle to compute; `None` = the start of the series.
            let mut from = if fresh { None } else { next_open };
            let mut earliest = |t: Option<Timestamp>| {
                if let (Some(t), Some(f)) = (t, from)
                    && t < f
                {
                    from = Some(t);
                }
            };
            earliest(state.as_ref().and_then(|s| s.pending));
            match rewind {
                Rewind::Changed(t) => earliest(t),
                Rewind::From(t) => earliest(Some(t)),
                Rewind::All => {}
            }

            let rewinding = from.is_some() && from != next_open;
            // The states to fold from, and the candle they stand after (`None`: the start).
            let (mut set, after) = match (from, &state) {
                (Some(_), Some(s)) if !rewinding => (s.set.clone(), last_closed),
                (Some(f), _) => self.snapshot_before(series, f, price).await?,
                (None, _) => (IndicatorSet::new(price), None),
            };
            // No snapshot before `from`: the whole series is computed again.
            if after.is_none() {
                from = None;
            }
            // Candles between the snapshot and `from` are folded again, not written: they are
            // unchanged. One candle past the page tells whether its last candle has a later one.
            let page = self.rewind_page;
            // Candles start on their interval's boundaries: the next one after `after`.
            let fold_from = after.map(|a| Timestamp::from_micros(a.micros() + interval.micros()));
            let candles = self
                .query_at_most(series, fold_from, None, page.saturating_add(1))
                .await?;
            let more = candles.len() > page;
            let closing = if more {
                page
            } else if round.close_all {
                candles.len()
            } else {
                candles.len().saturating_sub(1)
            };
            if closing == 0 && !rewinding && !fresh {
                return Ok((Advanced::default(), false));
            }
            let changed = |start: Timestamp| from.is_none_or(|f| start >= f);
            let writes = candles[..closing]
                .iter()
                .filter(|c| changed(c.candle.start))
                .count();

            let mut computed = Vec::with_capacity(writes);
            for c in &candles[..closing] {
                let k = &c.candle;
                let values = set.update(&Ohlc {
                    open: k.open,
                    high: k.high,
                    low: k.low,
                    close: k.close,
                });
                if !changed(k.start) {
                    continue;
                }
                // A snapshot on every `SNAPSHOT_EVERY`-th candle written, counted from the newest.
                let snapshot = if (writes - computed.len() - 1) % SNAPSHOT_EVERY == 0 {
                    Some(to_json(&set)?)
                } else {
                    None
                };
                // A candle closes for the first time when it had no values before: past the
                // series' last closed candle, or in a gap behind it that late data filled.
                computed.push((k.start, k.close, values, snapshot, c.values.is_none()));
            }
            // With more to take, the state says where this page ended, so that the next page
            // (or, after a crash, the next writer) goes on from there.
            let page_last = candles[..closing].last().map(|c| c.candle.start);
            let new_last = if more {
                page_last
            } else {
                page_last.max(last_closed)
            };
            let first = computed.first().map(|c| c.0);
            let committed = version + 1;
            if !self
                .commit_state(series, &set, new_last, first, version, committed)
                .await?
            {
                self.counts.conflicts.fetch_add(1, Ordering::Relaxed);
                continue;
            }
            let writes: Vec<_> = computed
                .iter()
                .map(|(start, _, values, snapshot, _)| {
                    self.write_values(series, *start, values, snapshot.as_deref(), committed)
                })
                .collect();
            let results: Vec<Result<(), AwsError>> = futures::stream::iter(writes)
                .buffer_unordered(CONCURRENCY)
                .collect()
                .await;
            results.into_iter().collect::<Result<(), AwsError>>()?;
            self.clear_pending(series, committed).await?;
            let newly = computed.iter().filter(|c| c.4).count();
            let done = Advanced {
                closed: newly,
                recomputed: computed.len() - newly,
                last: computed.last().map(|c| (c.0, c.1, c.2)),
            };
            return Ok((done, more));
        }
        Err(AwsError::throttled(format!(
            "lost the race to another writer {MAX_CONFLICTS} times in a row"
        ))
        .doing(
            format!("advancing the indicators of {series}"),
            &self.state_table,
        ))
    }

    /// Step 3: the new state, if the stored version is still `expected`.
    async fn commit_state(
        &self,
        series: &str,
        set: &IndicatorSet,
        last_closed: Option<Timestamp>,
        pending: Option<Timestamp>,
        expected: u64,
        version: u64,
    ) -> Result<bool, AwsError> {
        let state = to_json(set)?;
        let result = send_with_retry(&self.retry, || {
            self.counts.state_writes.fetch_add(1, Ordering::Relaxed);
            let mut put = self
                .client
                .put_item()
                .table_name(&self.state_table.name)
                .item("series", AttributeValue::S(series.to_owned()))
                .item("state", AttributeValue::S(state.clone()))
                .item("version", AttributeValue::N(version.to_string()))
                .condition_expression("attribute_not_exists(#v) OR #v = :expected")
                .expression_attribute_names("#v", "version")
                .expression_attribute_values(":expected", AttributeValue::N(expected.to_string()));
            if let Some(t) = last_closed {
                put = put.item("last_closed", AttributeValue::S(t.to_string()));
            }
            if let Some(t) = pending {
                put = put.item("pending", AttributeValue::S(t.to_string()));
            }
            put.send()
        })
        .await;
        match result {
            Ok(_) => Ok(true),
            Err(SendError::Condition) => Ok(false),
            Err(SendError::Failed(e)) => Err(e.doing(
                format!("writing the indicator state of {series}"),
                &self.state_table,
            )),
        }
    }

    /// Step 4: a closed candle's values and the states after it, unless a newer version wrote them.
    async fn write_values(
        &self,
        series: &str,
        start: Timestamp,
        values: &IndicatorValues,
        snapshot: Option<&str>,
        version: u64,
    ) -> Result<(), AwsError> {
        let values = to_json(values)?;
        let result = send_with_retry(&self.retry, || {
            self.counts.value_writes.fetch_add(1, Ordering::Relaxed);
            let update = self
                .client
                .update_item()
                .table_name(&self.candles_table.name)
                .key("series", AttributeValue::S(series.to_owned()))
                .key("start", AttributeValue::S(start_key(start)))
                .condition_expression(
                    "attribute_exists(#w) AND (attribute_not_exists(#iv) OR #iv <= :v)",
                )
                .expression_attribute_names("#i", "indicators")
                .expression_attribute_names("#s", "snapshot")
                .expression_attribute_names("#iv", "indicators_version")
                .expression_attribute_names("#w", "weight")
                .expression_attribute_values(":i", AttributeValue::S(values.clone()))
                .expression_attribute_values(":v", AttributeValue::N(version.to_string()));
            // A snapshot written by an earlier pass is removed: it no longer follows from the
            // candles before it.
            match snapshot {
                Some(snapshot) => update
                    .update_expression("SET #i = :i, #s = :s, #iv = :v")
                    .expression_attribute_values(":s", AttributeValue::S(snapshot.to_owned())),
                None => update.update_expression("SET #i = :i, #iv = :v REMOVE #s"),
            }
            .send()
        })
        .await;
        match result {
            Ok(_) | Err(SendError::Condition) => Ok(()),
            Err(SendError::Failed(e)) => Err(e.doing(
                format!("writing the indicators of {series} {}", start_key(start)),
                &self.candles_table,
            )),
        }
    }

    /// Step 5: the values are all written; nobody needs to redo them.
    async fn clear_pending(&self, series: &str, version: u64) -> Result<(), AwsError> {
        let result = send_with_retry(&self.retry, || {
            self.counts.state_writes.fetch_add(1, Ordering::Relaxed);
            self.client
                .update_item()
                .table_name(&self.state_table.name)
                .key("series", AttributeValue::S(series.to_owned()))
                .update_expression("REMOVE #p SET #v = :next")
                .condition_expression("#v = :v")
                .expression_attribute_names("#p", "pending")
                .expression_attribute_names("#v", "version")
                .expression_attribute_values(":v", AttributeValue::N(version.to_string()))
                .expression_attribute_values(":next", AttributeValue::N((version + 1).to_string()))
                .send()
        })
        .await;
        match result {
            // Another writer committed since: its pending mark covers what this one wrote.
            Ok(_) | Err(SendError::Condition) => Ok(()),
            Err(SendError::Failed(e)) => Err(e.doing(
                format!("clearing the pending mark of {series}"),
                &self.state_table,
            )),
        }
    }
}

impl CandleStore {
    /// The series whose state carries a pending mark: a writer committed a state and may not
    /// have written every value it computed.
    pub async fn pending_series(&self) -> Result<Vec<(String, Interval)>, AwsError> {
        let mut out = Vec::new();
        let mut page_start: Option<Item> = None;
        loop {
            let page = send_with_retry(&self.retry, || {
                self.client
                    .scan()
                    .table_name(&self.state_table.name)
                    .filter_expression("attribute_exists(#p)")
                    .expression_attribute_names("#p", "pending")
                    .projection_expression("#s")
                    .expression_attribute_names("#s", "series")
                    .set_exclusive_start_key(page_start.clone())
                    .send()
            })
            .await
            .map_err(|e| e.doing("scanning for pending series", &self.state_table))?;
            for item in page.items() {
                if let Some(parsed) = text(item, "series").and_then(parse_series_key) {
                    out.push(parsed);
                }
            }
            match page.last_evaluated_key() {
                Some(key) if !key.is_empty() => page_start = Some(key.clone()),
                _ => return Ok(out),
            }
        }
    }
}

/// `TCS.NS#M30` back to its symbol and interval.
pub fn parse_series_key(key: &str) -> Option<(String, Interval)> {
    let (symbol, interval) = key.rsplit_once('#')?;
    let interval = match interval {
        "M1" => Interval::M1,
        "M30" => Interval::M30,
        "H1" => Interval::H1,
        _ => return None,
    };
    Some((symbol.to_owned(), interval))
}

/// What bringing one symbol's candles up to date did.
#[derive(Debug, Clone, PartialEq)]
pub struct SeriesReport {
    pub symbol: String,
    pub interval: Interval,
    pub advanced: Advanced,
}

/// What a batch's candle updates came to.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CandleOutcome {
    pub series: Vec<SeriesReport>,
    /// Symbols whose candles or indicators could not be brought up to date, with the reason.
    pub failed: Vec<(String, AwsError)>,
}

impl CandleStore {
    /// Writes the M1 candles a batch changed (symbol, candle, weight), rolls up their M30 and H1
    /// candles, and advances the indicators of every series touched. Symbols run concurrently,
    /// each through those three steps in turn.
    pub async fn update(&self, minutes: Vec<(String, Candle, u64)>) -> CandleOutcome {
        let mut by_symbol: HashMap<String, Vec<(Candle, u64)>> = HashMap::new();
        for (symbol, candle, weight) in minutes {
            by_symbol.entry(symbol).or_default().push((candle, weight));
        }
        let jobs: Vec<_> = by_symbol
            .into_iter()
            .map(|(symbol, candles)| async move {
                let result = self.update_symbol(&symbol, &candles).await;
                (symbol, result)
            })
            .collect();
        let results: Vec<_> = futures::stream::iter(jobs)
            .buffer_unordered(CONCURRENCY)
            .collect()
            .await;
        let mut outcome = CandleOutcome::default();
        for (symbol, result) in results {
            match result {
                Ok(series) => outcome.series.extend(series),
                Err(e) => outcome.failed.push((symbol, e)),
            }
        }
        outcome
            .series
            .sort_by(|a, b| (&a.symbol, a.interval).cmp(&(&b.symbol, b.interval)));
        outcome
    }

    async fn update_symbol(
        &self,
        symbol: &str,
        minutes: &[(Candle, u64)],
    ) -> Result<Vec<SeriesReport>, AwsError> {
        let writes = minutes
            .iter()
            .map(|(c, w)| self.put_candle(symbol, Interval::M1, c, *w));
        futures::future::try_join_all(writes).await?;
        // Every candle this batch tried to change counts as changed, written or not: a refused
        // write means another writer got there with more, and a retry after a crash must still
        // redo what the first try may not have finished.
        let mut changed: Vec<(Interval, Timestamp)> = Vec::new();
        for (c, _) in minutes {
            for interval in Interval::ALL {
                let start = interval.bucket(c.start);
                if !changed.contains(&(interval, start)) {
                    changed.push((interval, start));
                }
            }
        }
        // Each interval on its own: M1 advances at once, M30 and H1 once rolled up.
        let per_interval = Interval::ALL.map(|interval| {
            let starts: Vec<Timestamp> = changed
                .iter()
                .filter(|(i, _)| *i == interval)
                .map(|(_, s)| *s)
                .collect();
            async move {
                if interval != Interval::M1 {
                    let rollups = starts.iter().map(|s| self.roll_up(symbol, interval, *s));
                    futures::future::try_join_all(rollups).await?;
                }
                let earliest = starts.iter().min().copied();
                self.advance(symbol, interval, Rewind::Changed(earliest), None, false)
                    .await
                    .map(|advanced| SeriesReport {
                        symbol: symbol.to_owned(),
                        interval,
                        advanced,
                    })
            }
        });
        futures::future::try_join_all(per_interval).await
    }
}

impl StoredCandle {
    /// A candle item as read from the table (by a query, a scan or a stream), with its series.
    pub fn from_item(item: &Item) -> Option<(String, StoredCandle)> {
        Some((text(item, "series")?.to_owned(), stored_candle(item)?))
    }
}

fn stored_candle(item: &Item) -> Option<StoredCandle> {
    let start = Timestamp::parse(text(item, "start")?).ok()?;
    let candle = Candle {
        start,
        open: number(item, "open")?,
        high: number(item, "high")?,
        low: number(item, "low")?,
        close: number(item, "close")?,
        open_at: Timestamp::parse(text(item, "open_at")?).ok()?,
        close_at: Timestamp::parse(text(item, "close_at")?).ok()?,
        ticks: number(item, "ticks")?,
        mid_sum_nanos: number(item, "mid_sum_nanos")?,
        volume: number(item, "volume")?,
    };
    Some(StoredCandle {
        candle,
        weight: number(item, "weight")?,
        values: text(item, "indicators").and_then(|s| serde_json::from_str(s).ok()),
        snapshot: text(item, "snapshot").map(str::to_owned),
    })
}

/// An item this code cannot read: the table holds what another version wrote, or was edited by
/// hand. Retrying cannot help, and going on would lose what it holds.
fn malformed(table: &Resource, item: &Item) -> AwsError {
    let keys: Vec<String> = ["series", "start"]
        .iter()
        .filter_map(|k| text(item, k).map(|v| format!("{k}={v}")))
        .collect();
    AwsError {
        kind: wtc_core::event::FailureKind::Deployment,
        what: format!("reading {}", table.name),
        code: None,
        detail: format!(
            "a malformed item ({}) that this version cannot read",
            keys.join(", ")
        ),
    }
}

fn to_json<T: serde::Serialize>(value: &T) -> Result<String, AwsError> {
    serde_json::to_string(value).map_err(|e| AwsError::rejected(e.to_string()))
}

fn text<'a>(item: &'a Item, name: &str) -> Option<&'a str> {
    item.get(name)?.as_s().ok().map(String::as_str)
}

fn number<T: std::str::FromStr>(item: &Item, name: &str) -> Option<T> {
    item.get(name)?.as_n().ok()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_sort_in_time_order() {
        let t = Timestamp::from_micros(1_704_080_700_000_000);
        assert_eq!(series_key("TCS.NS", Interval::M30), "TCS.NS#M30");
        assert_eq!(start_key(t), "2024-01-01 03:45:00");
        for interval in Interval::ALL {
            let key = series_key("EURUSD=X", interval);
            assert_eq!(
                parse_series_key(&key),
                Some(("EURUSD=X".to_owned(), interval))
            );
        }
        assert_eq!(parse_series_key("TCS.NS#M5"), None);
    }
}
