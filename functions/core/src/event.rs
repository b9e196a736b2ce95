//! One decoding layer for every transport: Kafka events (Amazon MSK and self-managed Kafka, which
//! share a shape) and Kinesis events become records with a source position and a payload.
//!
//! The event types are our own rather than `aws_lambda_events`' for two reasons: a consumer takes
//! either shape through one `SourceEvent`, told apart by its top-level field (`records` for Kafka,
//! `Records` for Kinesis) without buffering the document; and the local poller serialises the very
//! same types, so the events it builds are the events the functions decode.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;

/// `eventSource` of an Amazon MSK event.
pub const MSK_EVENT_SOURCE: &str = "aws:kafka";
/// `eventSource` of a self-managed Apache Kafka (or Redpanda) event.
pub const SELF_MANAGED_KAFKA_EVENT_SOURCE: &str = "SelfManagedKafka";
/// `eventSource` of a Kinesis record.
pub const KINESIS_EVENT_SOURCE: &str = "aws:kinesis";

/// A Lambda event from a Kafka event-source mapping.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct KafkaEvent {
    pub event_source: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event_source_arn: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bootstrap_servers: Option<String>,
    /// Records grouped by `"topic-partition"`, each group in offset order.
    pub records: BTreeMap<String, Vec<KafkaRecord>>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct KafkaRecord {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    pub timestamp: i64,
    pub timestamp_type: String,
    /// Base64 of the key bytes; absent for a record without a key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// Base64 of the value bytes; absent for a tombstone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    /// `[{"name": [byte, ...]}, ...]`, kept as given.
    #[serde(default)]
    pub headers: Vec<serde_json::Value>,
}

/// A Lambda event from a Kinesis event-source mapping.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KinesisEvent {
    #[serde(rename = "Records")]
    pub records: Vec<KinesisEventRecord>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KinesisEventRecord {
    pub kinesis: KinesisData,
    #[serde(rename = "eventSource")]
    pub event_source: String,
    #[serde(rename = "eventVersion", default)]
    pub event_version: String,
    /// `shardId-000000000006:49590338271490256608559692538361571095921575989136588898`
    #[serde(rename = "eventID")]
    pub event_id: String,
    #[serde(rename = "eventName", default)]
    pub event_name: String,
    #[serde(rename = "invokeIdentityArn", default)]
    pub invoke_identity_arn: String,
    #[serde(rename = "awsRegion", default)]
    pub aws_region: String,
    #[serde(rename = "eventSourceARN", default)]
    pub event_source_arn: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct KinesisData {
    #[serde(default)]
    pub kinesis_schema_version: String,
    pub partition_key: String,
    pub sequence_number: String,
    /// Base64 of the record bytes.
    pub data: String,
    #[serde(default)]
    pub approximate_arrival_timestamp: f64,
}

/// The response a Kinesis consumer with `ReportBatchItemFailures` returns.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BatchItemFailures {
    pub batch_item_failures: Vec<BatchItemFailure>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BatchItemFailure {
    /// The failed record's sequence number.
    pub item_identifier: String,
}

/// Whether trying again can help: what a failure means for its record and its batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum FailureKind {
    /// Throttling, a timeout, a server error, a lost connection: the same request may succeed
    /// later, so the batch is delivered again.
    Transient,
    /// The deployment is wrong (a table, queue or bucket missing, access denied, credentials
    /// refused): nothing succeeds until a setting is fixed, so the batch fails at once, without
    /// retrying each record, and says what to check.
    Deployment,
    /// This record can never be accepted (it is invalid, or its item or message is too large):
    /// it is dead-lettered and its batch goes on.
    Rejected,
}

impl FailureKind {
    /// The `errorType` a function reports to Lambda for a batch that failed this way.
    pub fn error_type(self) -> &'static str {
        match self {
            FailureKind::Transient => "TransientFailure",
            FailureKind::Deployment => "DeploymentError",
            FailureKind::Rejected => "RecordRejected",
        }
    }

    /// The kind whose `errorType` this is, as a function reported it.
    pub fn from_error_type(error_type: &str) -> Option<FailureKind> {
        [
            FailureKind::Transient,
            FailureKind::Deployment,
            FailureKind::Rejected,
        ]
        .into_iter()
        .find(|k| k.error_type() == error_type)
    }

    /// The worse of two failures, for a batch's summary: a deployment error outranks a
    /// transient one, which outranks a rejection.
    pub fn worst(self, other: FailureKind) -> FailureKind {
        let rank = |k: FailureKind| match k {
            FailureKind::Rejected => 0,
            FailureKind::Transient => 1,
            FailureKind::Deployment => 2,
        };
        if rank(other) > rank(self) {
            other
        } else {
            self
        }
    }
}

/// Why records of a batch could not be processed, in one line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchError {
    pub kind: FailureKind,
    pub message: String,
}

impl BatchError {
    pub fn new(kind: FailureKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: one_line(&message.into()),
        }
    }

    /// Keeps the worse of the two (the first of equals).
    pub fn keep_worst(slot: &mut Option<BatchError>, error: BatchError) {
        match slot {
            Some(held) if held.kind.worst(error.kind) == held.kind => {}
            _ => *slot = Some(error),
        }
    }
}

impl fmt::Display for BatchError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

/// At most `MAX_MESSAGE` bytes on one line: what logs and Lambda's `errorMessage` can carry.
pub fn one_line(text: &str) -> String {
    const MAX_MESSAGE: usize = 600;
    let flat: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
    crate::dead_letter::cut(&flat, MAX_MESSAGE)
}

/// A batch with records that could not be processed: for Kafka the function fails, so that the
/// event-source mapping delivers the whole batch again.
#[derive(Debug, thiserror::Error)]
#[error(
    "{failed} of {records} records could not be processed ({}); {}",
    error.message,
    match error.kind {
        FailureKind::Deployment => "fix the deployment: the batch fails until then",
        _ => "the batch will be retried",
    }
)]
pub struct BatchFailed {
    pub failed: usize,
    pub records: usize,
    pub error: BatchError,
}

impl BatchFailed {
    /// The `errorType` Lambda shows for it (CloudWatch, the mapping's metrics).
    pub fn error_type(&self) -> &'static str {
        self.error.kind.error_type()
    }
}

/// What a consumer reports about a batch: its counts, and its metrics.
pub trait BatchReport: Serialize {
    /// The function's name, as metrics carry it.
    const FUNCTION: &'static str;
    fn records(&self) -> usize;
    /// Records to be delivered again.
    fn failed(&self) -> usize;
    /// The report's counts as (metric name, value).
    fn metrics(&self) -> Vec<(&'static str, f64)>;
}

/// The outcome of one batch of a consumer.
#[derive(Debug, Clone, PartialEq)]
pub struct BatchOutcome<R> {
    pub report: R,
    pub latency_ms: f64,
    /// For Kinesis: sequence numbers of the records to deliver again. `None` for Kafka.
    pub item_failures: Option<BatchItemFailures>,
    /// The worst failure, when records are to be delivered again.
    pub error: Option<BatchError>,
}

impl<R: BatchReport> BatchOutcome<R> {
    /// The Lambda response: `{"batchItemFailures": [...]}` for Kinesis, the report for Kafka, or
    /// an error (so the whole batch is retried) when a Kafka batch had failures.
    pub fn response(&self) -> Result<serde_json::Value, BatchFailed> {
        if let Some(failures) = &self.item_failures {
            return Ok(serde_json::to_value(failures).unwrap_or_default());
        }
        match &self.error {
            Some(error) if self.report.failed() > 0 => Err(BatchFailed {
                failed: self.report.failed(),
                records: self.report.records(),
                error: error.clone(),
            }),
            _ => Ok(serde_json::to_value(&self.report).unwrap_or_default()),
        }
    }

    /// What a Lambda handler ends with: the metrics line printed first (so a failed batch is
    /// counted too), then the response.
    pub fn finish(&self) -> Result<serde_json::Value, BatchFailed> {
        let now_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64);
        println!("{}", self.metrics_line(now_ms));
        self.response()
    }

    /// The batch's metrics as one CloudWatch Embedded Metric Format line.
    pub fn metrics_line(&self, now_ms: i64) -> String {
        let mut metrics = self.report.metrics();
        metrics.push(("BatchLatencyMs", self.latency_ms));
        crate::metrics::emf_line(R::FUNCTION, now_ms, &metrics)
    }
}

impl BatchItemFailures {
    /// The failures to report for the records at `retry` (indices into `records`): Kinesis
    /// resumes from the first of them. Kafka records carry no sequence number and are left out.
    pub fn of(records: &[SourceRecord<'_>], retry: &[usize]) -> Self {
        Self {
            batch_item_failures: retry
                .iter()
                .filter_map(|&i| records.get(i)?.sequence_number())
                .map(|s| BatchItemFailure {
                    item_identifier: s.to_owned(),
                })
                .collect(),
        }
    }
}

/// A batch from either transport.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "AnyEvent", untagged)]
pub enum SourceEvent {
    Kafka(KafkaEvent),
    Kinesis(KinesisEvent),
}

/// Both shapes' top-level fields; exactly one of the record lists must be present.
#[derive(Deserialize)]
struct AnyEvent {
    #[serde(rename = "eventSource")]
    event_source: Option<String>,
    #[serde(rename = "eventSourceArn")]
    event_source_arn: Option<String>,
    #[serde(rename = "bootstrapServers")]
    bootstrap_servers: Option<String>,
    records: Option<BTreeMap<String, Vec<KafkaRecord>>>,
    #[serde(rename = "Records")]
    kinesis_records: Option<Vec<KinesisEventRecord>>,
}

/// The event is neither a Kafka nor a Kinesis event.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct UnknownEvent(String);

impl TryFrom<AnyEvent> for SourceEvent {
    type Error = UnknownEvent;

    fn try_from(e: AnyEvent) -> Result<Self, Self::Error> {
        match (e.records, e.kinesis_records) {
            (Some(records), None) => Ok(SourceEvent::Kafka(KafkaEvent {
                event_source: e.event_source.unwrap_or_default(),
                event_source_arn: e.event_source_arn,
                bootstrap_servers: e.bootstrap_servers,
                records,
            })),
            (None, Some(records)) => Ok(SourceEvent::Kinesis(KinesisEvent { records })),
            (Some(_), Some(_)) => Err(UnknownEvent(
                "event has both `records` (Kafka) and `Records` (Kinesis); expected one".into(),
            )),
            (None, None) => Err(UnknownEvent(
                "event has neither `records` (a Kafka event) nor `Records` (a Kinesis event)"
                    .into(),
            )),
        }
    }
}

/// Where a record came from: enough to find it again in its topic or stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Position<'a> {
    Kafka {
        topic: &'a str,
        partition: i32,
        offset: i64,
    },
    Kinesis {
        shard_id: &'a str,
        sequence_number: &'a str,
    },
}

impl fmt::Display for Position<'_> {
    /// `tick-data/3@1234` or `shardId-000000000006@4959...`: short, and unique within a source.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Position::Kafka {
                topic,
                partition,
                offset,
            } => write!(f, "{topic}/{partition}@{offset}"),
            Position::Kinesis {
                shard_id,
                sequence_number,
            } => write!(f, "{shard_id}@{sequence_number}"),
        }
    }
}

/// One record of a batch, still encoded.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SourceRecord<'a> {
    pub position: Position<'a>,
    /// Base64 key (Kafka key or Kinesis partition key as given).
    pub key: Option<&'a str>,
    /// Base64 payload; `None` for a Kafka tombstone.
    pub data: Option<&'a str>,
}

/// Why a record's payload could not be had.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PayloadError {
    #[error("record has no value (a tombstone)")]
    NoValue,
    #[error("record value is not valid base64")]
    Base64,
}

impl<'a> SourceRecord<'a> {
    /// Decodes the payload into `buf` (reused across records) and returns it.
    pub fn payload<'b>(&self, buf: &'b mut Vec<u8>) -> Result<&'b [u8], PayloadError> {
        let data = self.data.ok_or(PayloadError::NoValue)?;
        decode_base64(data.as_bytes(), buf).map_err(|_| PayloadError::Base64)
    }

    /// The Kinesis sequence number, which a partial-batch response names.
    pub fn sequence_number(&self) -> Option<&'a str> {
        match self.position {
            Position::Kinesis {
                sequence_number, ..
            } => Some(sequence_number),
            Position::Kafka { .. } => None,
        }
    }
}

fn decode_base64<'b>(src: &[u8], buf: &'b mut Vec<u8>) -> Result<&'b [u8], base64_simd::Error> {
    use base64_simd::AsOut;
    let len = base64_simd::STANDARD.decoded_length(src)?;
    buf.clear();
    buf.reserve(len);
    // Decode into the spare capacity: no zero-filling first.
    let out = base64_simd::STANDARD.decode(src, buf.spare_capacity_mut()[..len].as_out())?;
    Ok(out)
}

/// Base64 (standard alphabet, padded), as both transports carry payloads.
pub fn encode_base64(bytes: &[u8]) -> String {
    base64_simd::STANDARD.encode_to_string(bytes)
}

impl KafkaEvent {
    /// A self-managed Kafka event of these records, grouped by `"topic-partition"` as AWS groups
    /// them (records keep their order within a group).
    pub fn self_managed(
        bootstrap_servers: &str,
        records: impl IntoIterator<Item = KafkaRecord>,
    ) -> Self {
        let mut grouped: BTreeMap<String, Vec<KafkaRecord>> = BTreeMap::new();
        for r in records {
            grouped
                .entry(format!("{}-{}", r.topic, r.partition))
                .or_default()
                .push(r);
        }
        Self {
            event_source: SELF_MANAGED_KAFKA_EVENT_SOURCE.to_owned(),
            event_source_arn: None,
            bootstrap_servers: Some(bootstrap_servers.to_owned()),
            records: grouped,
        }
    }
}

impl KinesisEventRecord {
    /// A record as a Kinesis event-source mapping delivers it.
    pub fn new(
        stream_arn: &str,
        shard_id: &str,
        sequence_number: &str,
        partition_key: &str,
        data: &[u8],
        arrival_secs: f64,
    ) -> Self {
        let region = stream_arn.split(':').nth(3).unwrap_or_default();
        Self {
            kinesis: KinesisData {
                kinesis_schema_version: "1.0".into(),
                partition_key: partition_key.to_owned(),
                sequence_number: sequence_number.to_owned(),
                data: encode_base64(data),
                approximate_arrival_timestamp: arrival_secs,
            },
            event_source: KINESIS_EVENT_SOURCE.into(),
            event_version: "1.0".into(),
            event_id: format!("{shard_id}:{sequence_number}"),
            event_name: "aws:kinesis:record".into(),
            invoke_identity_arn: String::new(),
            aws_region: region.to_owned(),
            event_source_arn: stream_arn.to_owned(),
        }
    }
}

impl SourceEvent {
    /// Every record, Kafka groups in key order and offset order within a group.
    pub fn records(&self) -> Vec<SourceRecord<'_>> {
        match self {
            SourceEvent::Kafka(e) => e
                .records
                .values()
                .flatten()
                .map(|r| SourceRecord {
                    position: Position::Kafka {
                        topic: &r.topic,
                        partition: r.partition,
                        offset: r.offset,
                    },
                    key: r.key.as_deref(),
                    data: r.value.as_deref(),
                })
                .collect(),
            SourceEvent::Kinesis(e) => e
                .records
                .iter()
                .map(|r| SourceRecord {
                    position: Position::Kinesis {
                        shard_id: r
                            .event_id
                            .split_once(':')
                            .map_or(r.event_id.as_str(), |(s, _)| s),
                        sequence_number: &r.kinesis.sequence_number,
                    },
                    key: Some(&r.kinesis.partition_key),
                    data: Some(&r.kinesis.data),
                })
                .collect(),
        }
    }

    pub fn len(&self) -> usize {
        match self {
            SourceEvent::Kafka(e) => e.records.values().map(Vec::len).sum(),
            SourceEvent::Kinesis(e) => e.records.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn is_kinesis(&self) -> bool {
        matches!(self, SourceEvent::Kinesis(_))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_round_trips_into_a_reused_buffer() {
        let mut buf = Vec::new();
        let enc = encode_base64(b"hello, tick");
        assert_eq!(
            decode_base64(enc.as_bytes(), &mut buf).unwrap(),
            b"hello, tick"
        );
        let enc = encode_base64(b"x");
        assert_eq!(decode_base64(enc.as_bytes(), &mut buf).unwrap(), b"x");
        assert!(decode_base64(b"not base64!", &mut buf).is_err());
    }
}
