//! The newest price of each symbol, kept in the candles table so that `/latest_price` is one
//! `GetItem` and `/symbols` one `Query` of one partition.
//!
//! Items: `series = latest`, `start = <symbol>` (series keys of candles always hold a `#`, so the
//! partition cannot clash with a series). A write is refused unless its quote is newer than the
//! stored one, so batches that arrive out of time order never move a price back; the price's
//! previous close is written only by a writer that knows it.

use crate::CandleStore;
use crate::error::AwsError;
use crate::retry::{SendError, send_with_retry};
use aws_sdk_dynamodb::types::AttributeValue;
use std::collections::HashMap;
use wtc_core::latest::{LatestPrice, PriceSource};
use wtc_core::time::Timestamp;

/// The partition holding every symbol's latest price.
pub const LATEST_PARTITION: &str = "latest";

type Item = HashMap<String, AttributeValue>;

/// One page of latest prices, in symbol order, and the symbol the next page starts after.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LatestPage {
    pub prices: Vec<LatestPrice>,
    pub next_after: Option<String>,
}

impl CandleStore {
    /// Stores a symbol's latest price unless a newer one is stored. Returns whether it was.
    pub async fn record_latest(&self, latest: &LatestPrice) -> Result<bool, AwsError> {
        let n = |x: f64| AttributeValue::N(x.to_string());
        let (set, remove, values): (&str, &str, Vec<(&str, AttributeValue)>) = match latest.source {
            PriceSource::Tick { bid, ask, mid } => (
                "#bid = :bid, #ask = :ask, #mid = :mid",
                "#close, #volume",
                vec![(":bid", n(bid)), (":ask", n(ask)), (":mid", n(mid))],
            ),
            PriceSource::Bar { close, volume } => (
                "#close = :close, #volume = :volume",
                "#bid, #ask, #mid",
                vec![(":close", n(close)), (":volume", n(volume))],
            ),
        };
        let previous = latest
            .previous_close
            .map_or(String::new(), |_| ", #prev = :prev".to_owned());
        let expression = format!(
            "SET #src = :src, #at = :at, #price = :price, #updated = :updated, {set}{previous} \
             REMOVE {remove}"
        );
        let result = send_with_retry(&self.retry, || {
            self.counts
                .latest_writes
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let mut update = self
                .client
                .update_item()
                .table_name(&self.candles_table.name)
                .key("series", AttributeValue::S(LATEST_PARTITION.to_owned()))
                .key("start", AttributeValue::S(latest.symbol.clone()))
                .update_expression(&expression)
                .condition_expression("attribute_not_exists(#at) OR #at < :at")
                .expression_attribute_names("#src", "source")
                .expression_attribute_names("#at", "at")
                .expression_attribute_names("#price", "price")
                .expression_attribute_names("#updated", "updated_at")
                .expression_attribute_names("#bid", "bid")
                .expression_attribute_names("#ask", "ask")
                .expression_attribute_names("#mid", "mid")
                .expression_attribute_names("#close", "close")
                .expression_attribute_names("#volume", "volume")
                .expression_attribute_values(
                    ":src",
                    AttributeValue::S(latest.source.name().to_owned()),
                )
                .expression_attribute_values(":at", AttributeValue::S(latest.at.to_string()))
                .expression_attribute_values(":price", n(latest.price()))
                .expression_attribute_values(
                    ":updated",
                    AttributeValue::S(latest.updated_at.to_string()),
                );
            for (name, value) in &values {
                update = update.expression_attribute_values(*name, value.clone());
            }
            if let Some(previous) = latest.previous_close {
                update = update
                    .expression_attribute_names("#prev", "previous_close")
                    .expression_attribute_values(":prev", n(previous));
            }
            update.send()
        })
        .await;
        match result {
            Ok(_) => Ok(true),
            Err(SendError::Condition) => Ok(false),
            Err(SendError::Failed(e)) => Err(e.doing(
                format!("writing the latest price of {}", latest.symbol),
                &self.candles_table,
            )),
        }
    }

    /// A symbol's latest price: one item read.
    pub async fn latest(&self, symbol: &str) -> Result<Option<LatestPrice>, AwsError> {
        let out = send_with_retry(&self.retry, || {
            self.client
                .get_item()
                .table_name(&self.candles_table.name)
                .key("series", AttributeValue::S(LATEST_PARTITION.to_owned()))
                .key("start", AttributeValue::S(symbol.to_owned()))
                .send()
        })
        .await
        .map_err(|e| {
            e.doing(
                format!("reading the latest price of {symbol}"),
                &self.candles_table,
            )
        })?;
        match out.item() {
            None => Ok(None),
            Some(item) => latest_price(item)
                .map(Some)
                .ok_or_else(|| malformed_latest(symbol)),
        }
    }

    /// Up to `limit` symbols' latest prices, in symbol order, after `after`: one query.
    pub async fn latest_page(
        &self,
        limit: u32,
        after: Option<&str>,
    ) -> Result<LatestPage, AwsError> {
        let start_key = after.map(|symbol| {
            HashMap::from([
                (
                    "series".to_owned(),
                    AttributeValue::S(LATEST_PARTITION.to_owned()),
                ),
                ("start".to_owned(), AttributeValue::S(symbol.to_owned())),
            ])
        });
        let page = send_with_retry(&self.retry, || {
            self.client
                .query()
                .table_name(&self.candles_table.name)
                .key_condition_expression("#series = :s")
                .expression_attribute_names("#series", "series")
                .expression_attribute_values(":s", AttributeValue::S(LATEST_PARTITION.to_owned()))
                .limit(limit.max(1) as i32)
                .set_exclusive_start_key(start_key.clone())
                .send()
        })
        .await
        .map_err(|e| e.doing("querying the latest prices", &self.candles_table))?;
        let mut prices = Vec::with_capacity(page.items().len());
        for item in page.items() {
            prices.push(latest_price(item).ok_or_else(|| {
                malformed_latest(
                    item.get("start")
                        .and_then(|v| v.as_s().ok())
                        .map_or("?", String::as_str),
                )
            })?);
        }
        let next_after = page
            .last_evaluated_key()
            .and_then(|key| key.get("start"))
            .and_then(|v| v.as_s().ok())
            .cloned();
        Ok(LatestPage { prices, next_after })
    }
}

fn malformed_latest(symbol: &str) -> AwsError {
    AwsError {
        kind: wtc_core::event::FailureKind::Deployment,
        what: format!("reading the latest price of {symbol}"),
        code: None,
        detail: "a malformed item that this version cannot read".into(),
    }
}

fn latest_price(item: &Item) -> Option<LatestPrice> {
    let text = |name: &str| item.get(name)?.as_s().ok().map(String::as_str);
    let number = |name: &str| -> Option<f64> { item.get(name)?.as_n().ok()?.parse().ok() };
    let source = match text("source")? {
        "tick" => PriceSource::Tick {
            bid: number("bid")?,
            ask: number("ask")?,
            mid: number("mid")?,
        },
        "bar" => PriceSource::Bar {
            close: number("close")?,
            volume: number("volume")?,
        },
        _ => return None,
    };
    Some(LatestPrice {
        symbol: text("start")?.to_owned(),
        source,
        at: Timestamp::parse(text("at")?).ok()?,
        previous_close: number("previous_close"),
        updated_at: Timestamp::parse(text("updated_at")?).ok()?,
    })
}
