//! Publishers: records onto a Kinesis stream (PutRecords within its limits, entries it did not
//! take retried) or a Kafka topic (one idempotent, batching producer; never one send per round
//! trip). The Kafka side is behind the `kafka` feature, so consumers never link librdkafka.

use crate::error::AwsError;
use crate::retry::RetryPolicy;
use aws_sdk_kinesis::primitives::Blob;
use aws_sdk_kinesis::types::PutRecordsRequestEntry;

/// PutRecords takes at most 500 records a call...
pub const PUT_RECORDS_LIMIT: usize = 500;
/// ...and at most 5 MiB a call, partition keys included.
pub const PUT_RECORDS_BYTES: usize = 5 * 1024 * 1024;

/// One record to publish.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutRecord {
    /// The Kafka key.
    pub key: String,
    /// The Kinesis partition key (records with the same one stay in order on one shard).
    pub partition_key: String,
    pub value: String,
}

#[derive(Debug, thiserror::Error)]
#[error("publishing to {destination}: {reason}")]
pub struct PublishError {
    pub destination: String,
    pub reason: String,
    /// Whether publishing again can help.
    pub kind: wtc_core::event::FailureKind,
}

/// Calls of at most 500 records and 5 MiB each.
pub fn put_records_chunks(records: &[OutRecord]) -> Vec<&[OutRecord]> {
    let mut chunks = Vec::new();
    let (mut start, mut bytes) = (0, 0);
    for (i, r) in records.iter().enumerate() {
        let size = r.partition_key.len() + r.value.len();
        if i > start && (i - start == PUT_RECORDS_LIMIT || bytes + size > PUT_RECORDS_BYTES) {
            chunks.push(&records[start..i]);
            (start, bytes) = (i, 0);
        }
        bytes += size;
    }
    if start < records.len() {
        chunks.push(&records[start..]);
    }
    chunks
}

#[derive(Debug, Clone)]
pub struct KinesisPublisher {
    client: aws_sdk_kinesis::Client,
    stream: String,
    retry: RetryPolicy,
}

impl KinesisPublisher {
    pub fn new(client: aws_sdk_kinesis::Client, stream: String) -> Self {
        Self {
            client,
            stream,
            retry: RetryPolicy::default(),
        }
    }

    /// Puts every record; `accepted` hears how many each call took. Returns the count put.
    pub async fn publish(
        &self,
        records: &[OutRecord],
        accepted: &(dyn Fn(u64) + Sync),
    ) -> Result<u64, PublishError> {
        let error = |e: AwsError| PublishError {
            destination: format!("stream {}", self.stream),
            reason: e.to_string(),
            kind: e.kind,
        };
        for chunk in put_records_chunks(records) {
            let mut pending: Vec<PutRecordsRequestEntry> = chunk
                .iter()
                .map(|r| {
                    PutRecordsRequestEntry::builder()
                        .partition_key(&r.partition_key)
                        .data(Blob::new(r.value.as_bytes()))
                        .build()
                })
                .collect::<Result<_, _>>()
                .map_err(|e| error(AwsError::rejected(e.to_string())))?;
            let mut backoff = self.retry.backoff();
            loop {
                let result = self
                    .client
                    .put_records()
                    .stream_name(&self.stream)
                    .set_records(Some(pending.clone()))
                    .send()
                    .await;
                let failure = match result {
                    Ok(out) => {
                        let failed: Vec<PutRecordsRequestEntry> = out
                            .records()
                            .iter()
                            .zip(&pending)
                            .filter(|(r, _)| r.error_code().is_some())
                            .map(|(_, e)| e.clone())
                            .collect();
                        accepted((pending.len() - failed.len()) as u64);
                        if failed.is_empty() {
                            break;
                        }
                        pending = failed;
                        AwsError::throttled(format!("{} records not accepted", pending.len()))
                    }
                    Err(e) => AwsError::from_sdk(&e),
                };
                backoff.after(failure).await.map_err(error)?;
            }
        }
        Ok(records.len() as u64)
    }
}

#[cfg(feature = "kafka")]
pub use kafka::{KafkaPublisher, Publisher, producer_config, publisher_from_env};

#[cfg(feature = "kafka")]
mod kafka {
    use super::{OutRecord, PublishError};
    use crate::msk_iam::{MskIamSigner, ProducerContext};
    use futures::StreamExt;
    use futures::stream::FuturesUnordered;
    use rdkafka::ClientConfig;
    use rdkafka::producer::{FutureProducer, FutureRecord};
    use rdkafka::util::Timeout;
    use std::time::Duration;

    /// Records awaiting their acknowledgement at once.
    const IN_FLIGHT: usize = 20_000;

    /// An idempotent producer that batches: librdkafka groups messages per partition for up to
    /// `linger.ms`, so a burst goes out in few requests.
    pub fn producer_config(brokers: &str) -> ClientConfig {
        let mut config = ClientConfig::new();
        config
            .set("bootstrap.servers", brokers)
            .set("enable.idempotence", "true")
            .set("linger.ms", "5")
            .set("batch.num.messages", "10000")
            .set("batch.size", "1000000")
            .set("compression.type", "none")
            .set("message.timeout.ms", "60000");
        config
    }

    #[derive(Clone)]
    pub struct KafkaPublisher {
        producer: FutureProducer<ProducerContext>,
        topic: String,
    }

    impl KafkaPublisher {
        pub fn new(config: &ClientConfig, topic: String) -> Result<Self, PublishError> {
            Self::with_context(config, ProducerContext::default(), topic)
        }

        /// A publisher whose producer has this context (an MSK IAM token signer, say).
        pub fn with_context(
            config: &ClientConfig,
            context: ProducerContext,
            topic: String,
        ) -> Result<Self, PublishError> {
            let producer = config
                .create_with_context(context)
                .map_err(|e| PublishError {
                    destination: format!("topic {topic}"),
                    reason: format!("creating the producer: {e}"),
                    kind: wtc_core::event::FailureKind::Deployment,
                })?;
            Ok(Self { producer, topic })
        }

        pub fn topic(&self) -> &str {
            &self.topic
        }

        /// The same producer, sending to another topic.
        pub fn with_topic(&self, topic: &str) -> Self {
            Self {
                producer: self.producer.clone(),
                topic: topic.to_owned(),
            }
        }

        /// Sends every record and waits for each acknowledgement (`acked` hears each one).
        /// Returns the count sent.
        pub async fn publish(
            &self,
            records: impl IntoIterator<Item = OutRecord>,
            acked: &(dyn Fn(u64) + Sync),
        ) -> Result<u64, PublishError> {
            let error = |e: rdkafka::error::KafkaError| PublishError {
                destination: format!("topic {}", self.topic),
                reason: e.to_string(),
                kind: match e.rdkafka_error_code() {
                    Some(rdkafka::types::RDKafkaErrorCode::MessageSizeTooLarge) => {
                        wtc_core::event::FailureKind::Rejected
                    }
                    _ => wtc_core::event::FailureKind::Transient,
                },
            };
            let mut pending = FuturesUnordered::new();
            let mut sent = 0u64;
            for record in records {
                if pending.len() >= IN_FLIGHT
                    && let Some(result) = pending.next().await
                {
                    let result: Result<(), rdkafka::error::KafkaError> = result;
                    result.map_err(error)?;
                    acked(1);
                }
                pending.push(async move {
                    let sent: Result<(), rdkafka::error::KafkaError> = self
                        .producer
                        .send(
                            FutureRecord::to(&self.topic)
                                .key(record.key.as_bytes())
                                .payload(record.value.as_bytes()),
                            Timeout::After(Duration::from_secs(60)),
                        )
                        .await
                        .map(|_| ())
                        .map_err(|(e, _)| e);
                    sent
                });
                sent += 1;
            }
            while let Some(result) = pending.next().await {
                result.map_err(error)?;
                acked(1);
            }
            Ok(sent)
        }
    }

    /// The publisher the environment asks for: `TRANSPORT=kafka` (the default) with
    /// `KAFKA_BROKERS`, the topic in `topic_var` (else `default_topic`), `KAFKA_AUTH=msk-iam` for
    /// Amazon MSK's IAM access control (SASL_SSL with OAUTHBEARER tokens signed with the
    /// function's credentials), SASL/SCRAM credentials from the Secrets Manager secret in
    /// `KAFKA_SECRET_ARN`, and any librdkafka setting as
    /// `KAFKA_CONFIG_<NAME>` (`KAFKA_CONFIG_SECURITY_PROTOCOL=SASL_SSL` sets `security.protocol`);
    /// or `TRANSPORT=kinesis` with the stream in `stream_var`.
    pub async fn publisher_from_env(
        topic_var: &str,
        default_topic: &str,
        stream_var: &'static str,
    ) -> Result<Publisher, crate::ConfigError> {
        use crate::ConfigError;
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
        match var("TRANSPORT").as_deref().unwrap_or("kafka") {
            "kafka" => {
                let brokers = crate::required_env("KAFKA_BROKERS", "the Kafka bootstrap servers")?;
                let topic = var(topic_var).unwrap_or_else(|| default_topic.to_owned());
                let mut config = producer_config(&brokers);
                for (name, value) in std::env::vars() {
                    if let Some(key) = name.strip_prefix("KAFKA_CONFIG_") {
                        config.set(key.to_ascii_lowercase().replace('_', "."), value);
                    }
                }
                let context = match var("KAFKA_AUTH").as_deref() {
                    // IAM: OAUTHBEARER tokens signed with the function's own credentials.
                    Some("msk-iam") => {
                        for (key, value) in [
                            ("security.protocol", "SASL_SSL"),
                            ("sasl.mechanism", "OAUTHBEARER"),
                        ] {
                            if config.get(key).is_none() {
                                config.set(key, value);
                            }
                        }
                        let sdk = crate::load_sdk_config().await;
                        ProducerContext::with_signer(MskIamSigner::from_sdk(&sdk)?)
                    }
                    None | Some("scram") => ProducerContext::default(),
                    Some(other) => {
                        return Err(ConfigError::Invalid {
                            name: "KAFKA_AUTH",
                            reason: format!("must be `msk-iam` or `scram`, found {other:?}"),
                        });
                    }
                };
                if let Some(arn) = var("KAFKA_SECRET_ARN") {
                    let sdk = crate::load_sdk_config().await;
                    let (username, password) =
                        crate::config::username_password(&sdk, &arn, "KAFKA_SECRET_ARN").await?;
                    config
                        .set("sasl.username", username)
                        .set("sasl.password", password);
                }
                KafkaPublisher::with_context(&config, context, topic)
                    .map(Publisher::Kafka)
                    .map_err(|e| ConfigError::Invalid {
                        name: "KAFKA_BROKERS",
                        reason: e.to_string(),
                    })
            }
            "kinesis" => {
                let stream = crate::required_env(stream_var, "the Kinesis stream to publish to")?;
                let sdk = crate::load_sdk_config().await;
                Ok(Publisher::Kinesis(super::KinesisPublisher::new(
                    aws_sdk_kinesis::Client::new(&sdk),
                    stream,
                )))
            }
            other => Err(ConfigError::Invalid {
                name: "TRANSPORT",
                reason: format!("must be `kafka` or `kinesis`, found {other:?}"),
            }),
        }
    }

    /// Where a producer's records go: a Kafka topic or a Kinesis stream.
    #[derive(Clone)]
    pub enum Publisher {
        Kafka(KafkaPublisher),
        Kinesis(super::KinesisPublisher),
    }

    impl Publisher {
        pub async fn publish(&self, records: Vec<OutRecord>) -> Result<u64, PublishError> {
            match self {
                Publisher::Kafka(k) => k.publish(records, &|_| {}).await,
                Publisher::Kinesis(k) => k.publish(&records, &|_| {}).await,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(value_len: usize) -> OutRecord {
        OutRecord {
            key: "k".into(),
            partition_key: "p".into(),
            value: "x".repeat(value_len),
        }
    }

    #[test]
    fn calls_stay_within_500_records_and_5_mib() {
        let many = vec![record(10); 1_201];
        let sizes: Vec<usize> = put_records_chunks(&many).iter().map(|c| c.len()).collect();
        assert_eq!(sizes, [500, 500, 201]);
        let big = vec![record(900 * 1024); 13];
        let chunks = put_records_chunks(&big);
        assert_eq!(
            chunks.iter().map(|c| c.len()).collect::<Vec<_>>(),
            [5, 5, 3]
        );
        for c in chunks {
            let bytes: usize = c
                .iter()
                .map(|r| r.value.len() + r.partition_key.len())
                .sum();
            assert!(bytes <= PUT_RECORDS_BYTES);
        }
        assert!(put_records_chunks(&[]).is_empty());
    }
}
