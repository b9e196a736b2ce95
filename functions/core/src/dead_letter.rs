//! What a rejected record becomes: its position, the reason, and its bytes, so it can be replayed.

use crate::event::SourceRecord;
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
    /// Set when the payload was too large for the queue and `value` holds its beginning only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub truncated: Option<bool>,
}

impl DeadLetter {
    /// A rejected row (or whole file, without a line) of a file: `source` names the object and
    /// line, e.g. `s3://bucket/upload/cdr_data_20240101_000320.csv#17`.
    pub fn of_file(
        function: &str,
        source: String,
        line_text: Option<&[u8]>,
        reason: String,
    ) -> Self {
        Self {
            function: function.to_owned(),
            source,
            reason,
            key: None,
            value: line_text.map(crate::event::encode_base64),
            value_text: line_text.map(|t| String::from_utf8_lossy(t).into_owned()),
            truncated: None,
        }
    }

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
            truncated: None,
        }
    }

    /// The message body: JSON, at most `max_bytes` long, with only the characters SQS accepts.
    /// A payload too large to carry whole is cut, and the letter says so; the text copy goes
    /// first. A rejected record is thus never refused by the queue (and never holds back its batch).
    pub fn to_message_body(&self, max_bytes: usize) -> String {
        let mut letter = self.clone();
        let mut body = sqs_safe(&to_json(&letter));
        if body.len() > max_bytes {
            letter.value_text = None;
            body = sqs_safe(&to_json(&letter));
        }
        if body.len() > max_bytes
            && let Some(value) = letter.value.take()
        {
            let room = max_bytes.saturating_sub(body.len() + 64) / 4 * 4;
            letter.value = Some(value[..room.min(value.len())].to_owned());
            letter.truncated = Some(true);
            body = sqs_safe(&to_json(&letter));
        }
        body
    }
}

fn to_json(letter: &DeadLetter) -> String {
    serde_json::to_string(letter).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"))
}

/// Replaces the characters SQS refuses in a message (outside #x9, #xA, #xD, #x20-#xD7FF,
/// #xE000-#xFFFD, #x10000-#x10FFFF) with U+FFFD. JSON escapes control characters already; this
/// catches U+FFFE and U+FFFF, which it does not.
fn sqs_safe(text: &str) -> String {
    text.chars()
        .map(|c| match c {
            '\u{9}'
            | '\u{A}'
            | '\u{D}'
            | '\u{20}'..='\u{D7FF}'
            | '\u{E000}'..='\u{FFFD}'
            | '\u{10000}'.. => c,
            _ => '\u{FFFD}',
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::encode_base64;

    fn letter(value: &str) -> DeadLetter {
        DeadLetter {
            function: "process-ticks".into(),
            source: "tick-data/0@1".into(),
            reason: "unknown field `volume`".into(),
            key: None,
            value: Some(encode_base64(value.as_bytes())),
            value_text: Some(value.to_owned()),
            truncated: None,
        }
    }

    #[test]
    fn bodies_carry_only_characters_sqs_accepts() {
        let mut l = letter("x\u{FFFE}");
        l.reason = "unknown field `\u{FFFF}`".into();
        let body = l.to_message_body(1024);
        assert!(!body.contains('\u{FFFF}') && !body.contains('\u{FFFE}'));
        assert!(body.contains('\u{FFFD}'));
    }

    #[test]
    fn large_payloads_are_cut_to_fit_and_say_so() {
        let big = "y".repeat(300_000);
        let body = letter(&big).to_message_body(256 * 1024);
        assert!(body.len() <= 256 * 1024, "{}", body.len());
        let back: DeadLetter = serde_json::from_str(&body).unwrap();
        assert_eq!(back.truncated, Some(true));
        assert_eq!(back.value_text, None);
        let small = letter("z").to_message_body(256 * 1024);
        assert_eq!(
            serde_json::from_str::<DeadLetter>(&small).unwrap(),
            letter("z")
        );
    }
}
