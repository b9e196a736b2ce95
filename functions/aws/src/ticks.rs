//! The tick store: raw ticks and hourly mid-price sums in DynamoDB, exactly once per distinct tick.
//!
//! # Why transactions
//!
//! A raw tick item is idempotent by its key (pair, timestamp), but the hourly sum and count are
//! counters: adding a redelivered tick twice would move them. The guard must tell, for each tick,
//! whether its contribution is already in the sum, and must survive a crash between two writes.
//! The mechanisms DESIGN §6 names, costed in write units (WCU) per tick:
//!
//! - Batch-put the raw ticks (1 WCU each), then add to the sums: not exactly once, since a crash
//!   between the two writes (or a retry after it) cannot tell counted ticks from uncounted ones.
//! - Per-source watermarks on the hourly item: cheap (about 1 WCU per tick plus one update per
//!   partition and hour), but a tick's identity is (pair, timestamp), not its offset. A producer
//!   that resends a tick puts it at a new offset, past any watermark, and it would count twice.
//! - A transaction pairing the conditional insert of each raw tick (`attribute_not_exists`) with
//!   the hourly update it contributes to: about 2 WCU per tick (transactions cost double) plus 2 per
//!   hourly update, which the grouping in `wtc_core::hourly` shares among up to 99 ticks. A tick
//!   that is already stored fails its condition, is dropped from the transaction, and the rest is
//!   retried without it: so redeliveries, re-batched retries, producer resends and crashes between
//!   transactions all leave the stored values as one pass over the distinct ticks would.
//!
//! We take the transactions: the only option that is exact under every failure above, for about
//! twice the raw write cost (measured: 2.02 WCU per tick for the reference generator's batches of
//! 500, against 1 WCU for a plain batch put that would be wrong under resends).

use crate::retry::{RetryPolicy, is_retryable_code};
use aws_sdk_dynamodb::error::ProvideErrorMetadata;
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::types::{AttributeValue, Put, TransactWriteItem, Update};
use std::collections::{HashMap, HashSet};
use wtc_core::Tick;
use wtc_core::hourly::{MAX_TRANSACTION_ACTIONS, TickTransaction, plan_transactions};

/// What happened to each tick of a batch (indices into the batch's ticks).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TickWriteOutcome {
    /// Newly stored, with their share of the hourly sums.
    pub stored: Vec<usize>,
    /// Already stored (by an earlier delivery, or earlier in this batch): nothing written.
    pub duplicates: Vec<usize>,
    /// Not written after retries, with the last error.
    pub failed: Vec<(usize, String)>,
    /// Transactions sent (each attempt counts once).
    pub transactions: usize,
}

#[derive(Debug, Clone)]
pub struct TickStore {
    client: aws_sdk_dynamodb::Client,
    ticks_table: String,
    rates_table: String,
    retry: RetryPolicy,
    max_actions: usize,
}

impl TickStore {
    pub fn new(client: aws_sdk_dynamodb::Client, ticks_table: String, rates_table: String) -> Self {
        Self {
            client,
            ticks_table,
            rates_table,
            retry: RetryPolicy::default(),
            max_actions: MAX_TRANSACTION_ACTIONS,
        }
    }

    /// Smaller transactions (at least 2 actions): for tests that need many transactions per batch.
    pub fn with_max_actions(mut self, max_actions: usize) -> Self {
        self.max_actions = max_actions.clamp(2, MAX_TRANSACTION_ACTIONS);
        self
    }

    pub fn ticks_table(&self) -> &str {
        &self.ticks_table
    }

    pub fn rates_table(&self) -> &str {
        &self.rates_table
    }

    /// The transactions that writing `ticks` takes, duplicates within the batch left out (the first
    /// occurrence of an identity is the one written). Returns the plan and the in-batch duplicates.
    pub fn plan(&self, ticks: &[Tick]) -> (Vec<TickTransaction>, Vec<usize>) {
        let mut seen = HashSet::with_capacity(ticks.len());
        let mut unique = Vec::with_capacity(ticks.len());
        let mut duplicates = Vec::new();
        for (i, t) in ticks.iter().enumerate() {
            if seen.insert((t.pair.as_str(), t.timestamp)) {
                unique.push(i);
            } else {
                duplicates.push(i);
            }
        }
        (plan_transactions(ticks, &unique, self.max_actions), duplicates)
    }

    /// Writes every tick exactly once. `sources[i]` is tick i's source position, kept on its item.
    pub async fn write(&self, ticks: &[Tick], sources: &[String]) -> TickWriteOutcome {
        let (plan, duplicates) = self.plan(ticks);
        let mut outcome = self.execute(ticks, sources, plan).await;
        outcome.duplicates.extend(duplicates);
        outcome
    }

    /// Runs planned transactions. Transactions whose first hourly item differs run concurrently;
    /// those that share it run one after another, so they do not conflict with each other.
    pub async fn execute(&self, ticks: &[Tick], sources: &[String], plan: Vec<TickTransaction>) -> TickWriteOutcome {
        let mut lanes: HashMap<(String, i64), Vec<TickTransaction>> = HashMap::new();
        for txn in plan {
            let lane = txn
                .hourly
                .first()
                .map(|h| (h.pair.clone(), h.hour.micros()))
                .unwrap_or_default();
            lanes.entry(lane).or_default().push(txn);
        }
        let results = futures::future::join_all(lanes.into_values().map(|lane| async move {
            let mut outcome = TickWriteOutcome::default();
            for txn in lane {
                self.run_transaction(ticks, sources, txn, &mut outcome).await;
            }
            outcome
        }))
        .await;
        let mut total = TickWriteOutcome::default();
        for o in results {
            total.stored.extend(o.stored);
            total.duplicates.extend(o.duplicates);
            total.failed.extend(o.failed);
            total.transactions += o.transactions;
        }
        total
    }

    async fn run_transaction(
        &self,
        ticks: &[Tick],
        sources: &[String],
        txn: TickTransaction,
        outcome: &mut TickWriteOutcome,
    ) {
        let mut queue = vec![txn];
        while let Some(txn) = queue.pop() {
            let mut retry = 0;
            loop {
                let items = match self.transaction_items(ticks, sources, &txn) {
                    Ok(items) => items,
                    Err(e) => {
                        outcome.failed.extend(txn.ticks.iter().map(|&i| (i, e.clone())));
                        break;
                    }
                };
                outcome.transactions += 1;
                let result = self
                    .client
                    .transact_write_items()
                    .set_transact_items(Some(items))
                    .send()
                    .await;
                let error = match result {
                    Ok(_) => {
                        outcome.stored.extend_from_slice(&txn.ticks);
                        break;
                    }
                    Err(e) => e,
                };
                let service = error.as_service_error();
                if let Some(TransactWriteItemsError::TransactionCanceledException(c)) = service {
                    let reasons = c.cancellation_reasons();
                    let already: HashSet<usize> = reasons
                        .iter()
                        .take(txn.ticks.len())
                        .enumerate()
                        .filter(|(_, r)| r.code() == Some("ConditionalCheckFailed"))
                        .map(|(pos, _)| txn.ticks[pos])
                        .collect();
                    if !already.is_empty() {
                        // Stored by an earlier delivery: drop them and write the rest anew.
                        outcome.duplicates.extend(already.iter().copied());
                        let rest: Vec<usize> = txn.ticks.iter().copied().filter(|i| !already.contains(i)).collect();
                        queue.extend(plan_transactions(ticks, &rest, self.max_actions));
                        break;
                    }
                    let retryable = reasons.iter().all(|r| {
                        matches!(r.code(), None | Some("None")) || is_retryable_code(r.code())
                    });
                    if retryable && self.retry.pause(retry + 1).await {
                        retry += 1;
                        continue;
                    }
                } else {
                    let retryable = service.is_none_or(|s| is_retryable_code(s.code()));
                    if retryable && self.retry.pause(retry + 1).await {
                        retry += 1;
                        continue;
                    }
                }
                let reason = format!("{}", aws_sdk_dynamodb::Error::from(error));
                outcome.failed.extend(txn.ticks.iter().map(|&i| (i, reason.clone())));
                break;
            }
        }
    }

    fn transaction_items(
        &self,
        ticks: &[Tick],
        sources: &[String],
        txn: &TickTransaction,
    ) -> Result<Vec<TransactWriteItem>, String> {
        let mut items = Vec::with_capacity(txn.actions());
        for &i in &txn.ticks {
            let t = &ticks[i];
            let put = Put::builder()
                .table_name(&self.ticks_table)
                .item("pair", AttributeValue::S(t.pair.clone()))
                .item("ts", AttributeValue::S(t.timestamp.to_wtc_string()))
                .item("bid", AttributeValue::N(t.bid.to_string()))
                .item("ask", AttributeValue::N(t.ask.to_string()))
                .item("spread", AttributeValue::N(t.spread.to_string()))
                .item("src", AttributeValue::S(sources.get(i).cloned().unwrap_or_default()))
                .condition_expression("attribute_not_exists(ts)")
                .build()
                .map_err(|e| e.to_string())?;
            items.push(TransactWriteItem::builder().put(put).build());
        }
        for h in &txn.hourly {
            let update = Update::builder()
                .table_name(&self.rates_table)
                .key("pair", AttributeValue::S(h.pair.clone()))
                .key("hour", AttributeValue::S(h.hour.to_seconds_string()))
                .update_expression("ADD mid_sum_nanos :sum, ticks :count")
                .expression_attribute_values(":sum", AttributeValue::N(h.mid_sum_nanos.to_string()))
                .expression_attribute_values(":count", AttributeValue::N(h.ticks.to_string()))
                .build()
                .map_err(|e| e.to_string())?;
            items.push(TransactWriteItem::builder().update(update).build());
        }
        Ok(items)
    }
}
