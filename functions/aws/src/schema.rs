//! Table and queue definitions, for local stacks and tests (in AWS the SAM template creates them;
//! keep the two in step: same key names and types).

use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, KeySchemaElement, KeyType, ScalarAttributeType,
};

/// A table's name and its string keys.
#[derive(Debug, Clone, Copy)]
pub struct TableKeys {
    pub partition_key: &'static str,
    pub sort_key: Option<&'static str>,
}

/// Raw ticks: one item per (pair, timestamp), partitioned by pair and hour (`MRVZAR#2024-01-01 13`).
pub const TICKS: TableKeys = TableKeys {
    partition_key: "pk",
    sort_key: Some("ts"),
};

/// Mid-price sums per pair: minute buckets (`M#2024-01-01 13:05`) and hour buckets (`H#2024-01-01 13`).
pub const RATES: TableKeys = TableKeys {
    partition_key: "pair",
    sort_key: Some("bucket"),
};

/// Candles: one item per (series, start), `series = RELIANCE.NS#M1`, `start = 2024-01-01 03:45:00`.
pub const CANDLES: TableKeys = TableKeys {
    partition_key: "series",
    sort_key: Some("start"),
};

/// Hourly usage: one item per (msisdn, hour and usage type), `bucket = 2024-01-01 13:00:00#data#video`.
pub const USAGE: TableKeys = TableKeys {
    partition_key: "msisdn",
    sort_key: Some("bucket"),
};

/// Indicator states: one item per series, `series = RELIANCE.NS#M1`.
pub const INDICATOR_STATE: TableKeys = TableKeys {
    partition_key: "series",
    sort_key: None,
};

/// Creates an on-demand table unless it exists.
pub async fn ensure_table(
    client: &aws_sdk_dynamodb::Client,
    name: &str,
    keys: TableKeys,
) -> Result<(), aws_sdk_dynamodb::Error> {
    let attr = |n: &str| {
        AttributeDefinition::builder()
            .attribute_name(n)
            .attribute_type(ScalarAttributeType::S)
            .build()
    };
    let key = |n: &str, t: KeyType| {
        KeySchemaElement::builder()
            .attribute_name(n)
            .key_type(t)
            .build()
    };
    let mut create = client
        .create_table()
        .table_name(name)
        .billing_mode(BillingMode::PayPerRequest)
        .attribute_definitions(attr(keys.partition_key)?)
        .key_schema(key(keys.partition_key, KeyType::Hash)?);
    if let Some(sort_key) = keys.sort_key {
        create = create
            .attribute_definitions(attr(sort_key)?)
            .key_schema(key(sort_key, KeyType::Range)?);
    }
    let result = create.send().await;
    match result {
        Ok(_) => Ok(()),
        Err(e) => match e.into_service_error() {
            aws_sdk_dynamodb::operation::create_table::CreateTableError::ResourceInUseException(
                _,
            ) => Ok(()),
            other => Err(other.into()),
        },
    }
}

/// Creates a queue unless it exists and returns its URL.
pub async fn ensure_queue(
    client: &aws_sdk_sqs::Client,
    name: &str,
) -> Result<String, aws_sdk_sqs::Error> {
    let out = client.create_queue().queue_name(name).send().await?;
    Ok(out.queue_url().unwrap_or_default().to_owned())
}
