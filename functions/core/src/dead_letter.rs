//! What a rejected record becomes: its position, the reason, and its bytes, so it can be replayed.

use crate::event::{Position, SourceRecord, encode_base64};
use serde::{Deserialize, Serialize};

/// A record that a function could not accept, as sent to the dead-letter destination.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeadLetter {
    /// The function that rejected it, e.g. `process-ticks`.
    pub function: String,
    /// `topic/partition@offset` or `shardId@sequenceNumber`.
    pub source: String,
    pub reason: String,
    /// The key as the transport carried it (base64 for Kafka, the partition key for Kinesis).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// The payload, base64, exactly as received.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    /// The payload as text when it is UTF-8, for people reading the queue.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value_text: Option<String>,
}

impl DeadLetter {
    pub fn new(
        function: &str,
        record: &SourceRecord<'_>,
        payload: Option<&[u8]>,
        reason: String,
    ) -> Self {
        Self {
            function: function.to_owned(),
            source: record.position.to_string(),
            reason,
            key: record.key.map(str::to_owned),
            value: record.data.map(str::to_owned),
            value_text: payload
                .and_then(|p| std::str::from_utf8(p).ok())
                .map(str::to_owned),
        }
    }

    /// A dead letter for a payload that never had a transport record (e.g. a CSV row).
    pub fn for_payload(function: &str, source: String, payload: &[u8], reason: String) -> Self {
        Self {
            function: function.to_owned(),
            source,
            reason,
            key: None,
            value: Some(encode_base64(payload)),
            value_text: std::str::from_utf8(payload).ok().map(str::to_owned),
        }
    }

    pub fn position_of(record: &SourceRecord<'_>) -> String {
        let p: Position<'_> = record.position;
        p.to_string()
    }
}
