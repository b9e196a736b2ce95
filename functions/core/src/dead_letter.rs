//! What a rejected record becomes: its position, the reason, and its bytes, so it can be replayed.
//!
//! A letter is bounded and lossless: its reason is cut to `MAX_REASON_BYTES` (UTF-8 safe, saying
//! how long it was), and a letter too large for the queue is stored whole elsewhere (an S3 object,
//! see `wtc_aws::dead_letters`) with a small letter on the queue that points to it (`claim`).

use crate::event::SourceRecord;
use serde::{Deserialize, Serialize};

/// The longest reason a letter carries: reasons quote the input they reject, and input has no
/// bound of its own.
pub const MAX_REASON_BYTES: usize = 1024;

/// A record that a function could not accept, as sent to the dead-letter destination.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeadLetter {
    /// The function that rejected it (and that a replay sends it to), e.g. `process-ticks`.
    pub function: String,
    /// `topic/partition@offset`, `shardId@sequenceNumber`, or `s3://bucket/key#line`.
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
    /// A row of a file: the content checksum its identity is made of (with `source`'s line).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checksum: Option<String>,
    /// The payload's length in bytes (when only part of it, or none, is carried here).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value_bytes: Option<u64>,
    /// Where the whole letter is stored when it was too large for the queue (`s3://…`): the
    /// letter on the queue then carries no value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub claim: Option<String>,
    /// Set when `value` holds the payload's beginning only (a line longer than files may have:
    /// the rest is in the file at `source`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub truncated: Option<bool>,
}

/// A letter too large for the queue: it goes whole to the claim-check store.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a dead letter of {bytes} bytes is larger than the queue takes ({max})")]
pub struct TooLarge {
    pub bytes: usize,
    pub max: usize,
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
            reason: cut(&reason, MAX_REASON_BYTES),
            key: None,
            value: line_text.map(crate::event::encode_base64),
            value_text: line_text.map(|t| String::from_utf8_lossy(t).into_owned()),
            checksum: None,
            value_bytes: None,
            claim: None,
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
            reason: cut(&reason, MAX_REASON_BYTES),
            key: record.key.map(str::to_owned),
            value: record.data.map(str::to_owned),
            value_text: payload
                .and_then(|p| std::str::from_utf8(p).ok())
                .map(str::to_owned),
            checksum: None,
            value_bytes: None,
            claim: None,
            truncated: None,
        }
    }

    /// The message body: JSON of at most `max_bytes`, with only the characters SQS accepts. The
    /// text copy of the payload is left out when it does not fit; a letter whose value itself
    /// does not fit is `TooLarge` (it is never cut: it goes to the claim-check store whole).
    pub fn to_message_body(&self, max_bytes: usize) -> Result<String, TooLarge> {
        let body = sqs_safe(&to_json(self));
        if body.len() <= max_bytes {
            return Ok(body);
        }
        let lean = DeadLetter {
            value_text: None,
            ..self.clone()
        };
        let body = sqs_safe(&to_json(&lean));
        if body.len() <= max_bytes {
            return Ok(body);
        }
        Err(TooLarge {
            bytes: body.len(),
            max: max_bytes,
        })
    }

    /// The letter the queue carries for one stored whole at `claim`: every field but the value.
    pub fn claim_ticket(&self, claim: String) -> DeadLetter {
        DeadLetter {
            value: None,
            value_text: None,
            value_bytes: self
                .value_bytes
                .or_else(|| self.value.as_ref().map(|v| decoded_len(v))),
            claim: Some(claim),
            ..self.clone()
        }
    }

    /// The whole letter as JSON, as the claim-check store keeps it.
    pub fn to_json(&self) -> String {
        to_json(self)
    }

    /// The payload's bytes, when the letter carries them.
    pub fn payload(&self) -> Option<Vec<u8>> {
        base64_simd::STANDARD
            .decode_to_vec(self.value.as_deref()?.as_bytes())
            .ok()
    }
}

/// The length of what a base64 text decodes to.
fn decoded_len(b64: &str) -> u64 {
    let pad = b64.bytes().rev().take_while(|b| *b == b'=').count();
    ((b64.len() / 4 * 3).saturating_sub(pad)) as u64
}

fn to_json(letter: &DeadLetter) -> String {
    serde_json::to_string(letter).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"))
}

/// `text` cut to at most `max` bytes on a character boundary, saying so and how long it was.
pub fn cut(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_owned();
    }
    let note = format!("… (cut; {} bytes in all)", text.len());
    let mut end = max.saturating_sub(note.len());
    while end > 0 && !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}{note}", &text[..end])
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
            checksum: None,
            value_bytes: None,
            claim: None,
            truncated: None,
        }
    }

    #[test]
    fn bodies_carry_only_characters_sqs_accepts() {
        let mut l = letter("x\u{FFFE}");
        l.reason = "unknown field `\u{FFFF}`".into();
        let body = l.to_message_body(1024).unwrap();
        assert!(!body.contains('\u{FFFF}') && !body.contains('\u{FFFE}'));
        assert!(body.contains('\u{FFFD}'));
    }

    #[test]
    fn a_letter_that_fits_without_its_text_copy_keeps_its_value_whole() {
        // 100 KB of payload: whole with its text copy is about 233 KB, without it about 133 KB.
        let big = "y".repeat(100_000);
        let body = letter(&big).to_message_body(200 * 1024).unwrap();
        let back: DeadLetter = serde_json::from_str(&body).unwrap();
        assert_eq!(back.value_text, None);
        assert_eq!(back.payload(), Some(big.into_bytes()));
        let small = letter("z").to_message_body(256 * 1024).unwrap();
        assert_eq!(
            serde_json::from_str::<DeadLetter>(&small).unwrap(),
            letter("z")
        );
    }

    #[test]
    fn a_letter_too_large_for_the_queue_is_never_cut() {
        let big = "y".repeat(300_000);
        let l = letter(&big);
        let err = l.to_message_body(256 * 1024).unwrap_err();
        assert!(err.bytes > 256 * 1024, "{err}");
        let ticket = l.claim_ticket("s3://dead/letters/1.json".into());
        assert_eq!(ticket.value, None);
        assert_eq!(ticket.value_bytes, Some(300_000));
        assert!(ticket.to_message_body(1024).is_ok());
        let whole: DeadLetter = serde_json::from_str(&l.to_json()).unwrap();
        assert_eq!(whole.payload().map(|p| p.len()), Some(300_000));
    }

    #[test]
    fn reasons_are_cut_on_a_character_boundary_and_say_how_long_they_were() {
        let reason = format!(
            "field `pair_name` must be short, found {:?}",
            "é".repeat(2_000)
        );
        let l = DeadLetter::of_file("f", "s".into(), None, reason.clone());
        assert!(l.reason.len() <= MAX_REASON_BYTES, "{}", l.reason.len());
        assert!(l.reason.starts_with("field `pair_name` must be short"));
        assert!(
            l.reason
                .ends_with(&format!("(cut; {} bytes in all)", reason.len()))
        );
        assert_eq!(cut("short", 10), "short");
    }
}
