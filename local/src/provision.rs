//! Creates what the functions expect to find: the topic, the stream, the tables, the queue.

use anyhow::{Context, Result, bail};
use aws_config::SdkConfig;
use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::types::RDKafkaErrorCode;
use wtc_aws::schema::{
    CANDLES, INDICATOR_STATE, RATES, TICKS, TableKeys, USAGE, ensure_queue, ensure_table,
};
use wtc_aws::{CandleStore, DeadLetterQueue, TickStore};

/// The curriculum creates `tick-data` with 12 partitions.
pub const TICK_PARTITIONS: i32 = 12;

/// Names of the resources a run uses.
#[derive(Debug, Clone)]
pub struct Names {
    pub tick_topic: String,
    pub tick_stream: String,
    pub ticks_table: String,
    pub rates_table: String,
    pub candles_table: String,
    pub indicator_state_table: String,
    pub usage_table: String,
    pub dead_letter_queue: String,
    /// The claim-check bucket of dead letters too large for the queue.
    pub dead_letter_bucket: String,
}

impl Default for Names {
    fn default() -> Self {
        Self {
            tick_topic: "tick-data".into(),
            tick_stream: "wtc-ticks".into(),
            ticks_table: "wtc-ticks".into(),
            rates_table: "wtc-rates".into(),
            candles_table: "wtc-candles".into(),
            indicator_state_table: "wtc-indicator-state".into(),
            usage_table: "wtc-usage".into(),
            dead_letter_queue: "wtc-dead-letters".into(),
            dead_letter_bucket: "wtc-dead-letters".into(),
        }
    }
}

/// What provisioning returns that names alone do not say.
#[derive(Debug, Clone)]
pub struct Provisioned {
    pub dead_letter_queue_url: String,
}

/// Creates a topic unless it exists (tansu does not create topics on first use).
pub async fn create_topic(brokers: &str, topic: &str, partitions: i32) -> Result<()> {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .create()
        .context("creating a Kafka admin client")?;
    let results = admin
        .create_topics(
            &[NewTopic::new(topic, partitions, TopicReplication::Fixed(1))],
            &AdminOptions::new().operation_timeout(Some(std::time::Duration::from_secs(10))),
        )
        .await
        .with_context(|| format!("creating topic {topic} on {brokers}"))?;
    for result in results {
        match result {
            Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((name, code)) => bail!("creating topic {name} on {brokers}: {code}"),
        }
    }
    Ok(())
}

/// Creates the topic, the stream, the tables and the dead-letter queue of the tick pipeline.
pub async fn provision_ticks(brokers: &str, sdk: &SdkConfig, names: &Names) -> Result<Provisioned> {
    create_topic(brokers, &names.tick_topic, TICK_PARTITIONS).await?;
    let dynamo = aws_sdk_dynamodb::Client::new(sdk);
    let tables: [(&str, TableKeys); 5] = [
        (&names.ticks_table, TICKS),
        (&names.rates_table, RATES),
        (&names.candles_table, CANDLES),
        (&names.indicator_state_table, INDICATOR_STATE),
        (&names.usage_table, USAGE),
    ];
    for (table, keys) in tables {
        ensure_table(&dynamo, table, keys)
            .await
            .with_context(|| format!("creating table {table}"))?;
    }
    let kinesis = aws_sdk_kinesis::Client::new(sdk);
    if let Err(e) = kinesis
        .create_stream()
        .stream_name(&names.tick_stream)
        .shard_count(2)
        .send()
        .await
    {
        let e = aws_sdk_kinesis::Error::from(e);
        if !matches!(e, aws_sdk_kinesis::Error::ResourceInUseException(_)) {
            return Err(e).with_context(|| format!("creating stream {}", names.tick_stream));
        }
    }
    let sqs = aws_sdk_sqs::Client::new(sdk);
    let dead_letter_queue_url = ensure_queue(&sqs, &names.dead_letter_queue)
        .await
        .with_context(|| format!("creating queue {}", names.dead_letter_queue))?;
    ensure_bucket(&wtc_aws::s3_client(sdk), &names.dead_letter_bucket).await?;
    Ok(Provisioned {
        dead_letter_queue_url,
    })
}

/// Creates a bucket unless this account has it.
pub async fn ensure_bucket(s3: &aws_sdk_s3::Client, bucket: &str) -> Result<()> {
    if let Err(e) = s3.create_bucket().bucket(bucket).send().await {
        let owned = e
            .as_service_error()
            .is_some_and(|s| s.is_bucket_already_owned_by_you() || s.is_bucket_already_exists());
        if !owned {
            return Err(anyhow::anyhow!(
                aws_sdk_s3::error::DisplayErrorContext(&e).to_string()
            ))
            .with_context(|| format!("creating bucket {bucket}"));
        }
    }
    Ok(())
}

/// The dead-letter queue with its claim-check bucket.
pub fn dead_letter_queue(
    sdk: &SdkConfig,
    names: &Names,
    provisioned: &Provisioned,
) -> DeadLetterQueue {
    DeadLetterQueue::new(
        aws_sdk_sqs::Client::new(sdk),
        provisioned.dead_letter_queue_url.clone(),
    )
    .with_claim_check(wtc_aws::s3_client(sdk), names.dead_letter_bucket.clone())
}

/// process-ticks wired to the provisioned resources, to run in this process.
pub fn process_ticks(
    sdk: &SdkConfig,
    names: &Names,
    provisioned: &Provisioned,
) -> process_ticks::ProcessTicks {
    let dynamo = aws_sdk_dynamodb::Client::new(sdk);
    process_ticks::ProcessTicks {
        store: TickStore::new(
            dynamo.clone(),
            names.ticks_table.clone(),
            names.rates_table.clone(),
        ),
        candles: CandleStore::new(
            dynamo,
            names.candles_table.clone(),
            names.indicator_state_table.clone(),
        ),
        dead_letters: dead_letter_queue(sdk, names, provisioned),
    }
}

/// The API wired to the provisioned tables, to serve in this process.
pub fn api_state(
    sdk: &SdkConfig,
    names: &Names,
    credentials: api::Credentials,
    settings: api::ApiSettings,
) -> api::ApiState {
    let dynamo = aws_sdk_dynamodb::Client::new(sdk);
    api::ApiState::new(
        wtc_aws::UsageStore::new(dynamo.clone(), names.usage_table.clone()),
        TickStore::new(
            dynamo.clone(),
            names.ticks_table.clone(),
            names.rates_table.clone(),
        ),
        CandleStore::new(
            dynamo,
            names.candles_table.clone(),
            names.indicator_state_table.clone(),
        ),
        credentials,
        settings,
    )
}
