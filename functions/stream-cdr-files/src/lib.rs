//! stream-cdr-files: on S3 ObjectCreated, stream a CDR file (never whole in memory), validate every
//! row, and publish one record per valid row to `cdr-data` / `cdr-voice` (Kafka key = msisdn) or
//! to the CDR stream (Kinesis, partition key = msisdn).
//!
//! Each record carries its identity: the object, its ETag (the content hash) and the line, so the
//! same file uploaded twice is the same rows and aggregate-usage counts them once. Rows that break a
//! rule go to the dead-letter queue with the file, the line and the reason; a file whose name is not
//! a CDR file name, or whose header is not its kind's, is rejected whole with the reason. Records
//! go out in batches of `BATCH_ROWS` as the file streams in. A failure to read or publish fails the
//! invocation, and S3's retry sends the file again: the rows' identities make that safe.

use serde::{Deserialize, Serialize};
use std::borrow::Cow;
use wtc_aws::publish::Publisher;
use wtc_aws::{DeadLetterQueue, OutRecord};
use wtc_core::DeadLetter;
use wtc_core::cdr::{CdrFile, CdrKind, RowId, encode_record, split_csv, validate_row};

pub const FUNCTION: &str = "stream-cdr-files";
/// Records published at once (and the most held in memory).
pub const BATCH_ROWS: usize = 1_000;
/// Dead letters sent at once.
const LETTER_BATCH: usize = 100;

/// The parts of an S3 event notification this function reads.
#[derive(Debug, Clone, Deserialize)]
pub struct S3Event {
    #[serde(rename = "Records", default)]
    pub records: Vec<S3EventRecord>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct S3EventRecord {
    #[serde(rename = "eventName", default)]
    pub event_name: String,
    pub s3: S3Entity,
}

#[derive(Debug, Clone, Deserialize)]
pub struct S3Entity {
    pub bucket: S3Bucket,
    pub object: S3Object,
}

#[derive(Debug, Clone, Deserialize)]
pub struct S3Bucket {
    pub name: String,
}

#[derive(Debug, Clone, Deserialize)]
pub struct S3Object {
    /// URL-encoded, as S3 notifications carry it (a space is `+`).
    pub key: String,
}

/// An object key as S3 notifications encode it, decoded.
pub fn decode_key(key: &str) -> String {
    let b = key.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < b.len() => {
                let hex = |c: u8| (c as char).to_digit(16);
                match (hex(b[i + 1]), hex(b[i + 2])) {
                    (Some(hi), Some(lo)) => {
                        out.push((hi * 16 + lo) as u8);
                        i += 2;
                    }
                    _ => out.push(b'%'),
                }
            }
            other => out.push(other),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// What one file came to.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct FileReport {
    pub file: String,
    pub rows: u64,
    pub published: u64,
    pub rejected: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub file_rejected: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum StreamError {
    #[error("reading {file}: {reason}")]
    Read { file: String, reason: String },
    #[error(transparent)]
    Publish(#[from] wtc_aws::PublishError),
    #[error("sending dead letters: {0}")]
    DeadLetters(String),
}

#[derive(Clone)]
pub struct StreamCdrFiles {
    pub s3: aws_sdk_s3::Client,
    /// For Kafka, the topic is chosen per kind (`cdr-data`, `cdr-voice`).
    pub publisher: Publisher,
    pub dead_letters: DeadLetterQueue,
}

impl StreamCdrFiles {
    /// `TRANSPORT` and its settings (see `wtc_aws::publish::publisher_from_env`; the Kinesis stream
    /// in `CDR_STREAM`), `DEAD_LETTER_QUEUE_URL`, and the standard AWS settings.
    pub async fn from_env() -> Result<Self, wtc_aws::ConfigError> {
        let publisher =
            wtc_aws::publish::publisher_from_env("CDR_DATA_TOPIC", "cdr-data", "CDR_STREAM")
                .await?;
        let dlq = wtc_aws::required_env(
            "DEAD_LETTER_QUEUE_URL",
            "the SQS queue URL for rejected rows",
        )?;
        let sdk = wtc_aws::load_sdk_config().await;
        Ok(Self {
            s3: aws_sdk_s3::Client::from_conf(
                aws_sdk_s3::config::Builder::from(&sdk)
                    .force_path_style(true)
                    .build(),
            ),
            publisher,
            dead_letters: DeadLetterQueue::new(aws_sdk_sqs::Client::new(&sdk), dlq),
        })
    }

    pub async fn handle(&self, event: &S3Event) -> Result<Vec<FileReport>, StreamError> {
        let mut reports = Vec::with_capacity(event.records.len());
        for record in &event.records {
            if !record.event_name.is_empty() && !record.event_name.starts_with("ObjectCreated") {
                continue;
            }
            let key = decode_key(&record.s3.object.key);
            reports.push(self.stream_file(&record.s3.bucket.name, &key).await?);
        }
        Ok(reports)
    }

    fn publisher_for(&self, kind: CdrKind) -> Publisher {
        match &self.publisher {
            Publisher::Kafka(k) => Publisher::Kafka(k.with_topic(kind.topic())),
            other => other.clone(),
        }
    }

    /// Streams one object: header, then every row, published in batches.
    pub async fn stream_file(&self, bucket: &str, key: &str) -> Result<FileReport, StreamError> {
        let source = format!("s3://{bucket}/{key}");
        let mut report = FileReport {
            file: source.clone(),
            ..Default::default()
        };
        let kind = match CdrFile::from_name(key) {
            Ok(file) => file.kind,
            Err(e) => {
                report.file_rejected = Some(e.to_string());
                self.send_letters(&[DeadLetter::of_file(FUNCTION, source, None, e.to_string())])
                    .await?;
                return Ok(report);
            }
        };
        let read_error = |reason: String| StreamError::Read {
            file: source.clone(),
            reason,
        };
        let object = self
            .s3
            .get_object()
            .bucket(bucket)
            .key(key)
            .send()
            .await
            .map_err(|e| read_error(aws_sdk_s3::error::DisplayErrorContext(&e).to_string()))?;
        let etag = object
            .e_tag()
            .unwrap_or_default()
            .trim_matches('"')
            .to_owned();
        let mut body = object.body;
        let publisher = self.publisher_for(kind);
        let mut state = FileState {
            kind,
            id: RowId {
                source: source.clone(),
                etag,
                line: 0,
            },
            partial: Vec::new(),
            records: Vec::with_capacity(BATCH_ROWS),
            letters: Vec::new(),
            header_ok: false,
        };
        loop {
            let chunk = body
                .try_next()
                .await
                .map_err(|e| read_error(e.to_string()))?;
            let Some(chunk) = chunk else { break };
            let mut rest: &[u8] = &chunk;
            while let Some(nl) = rest.iter().position(|&b| b == b'\n') {
                let line: Cow<'_, [u8]> = if state.partial.is_empty() {
                    Cow::Borrowed(&rest[..nl])
                } else {
                    let mut whole = std::mem::take(&mut state.partial);
                    whole.extend_from_slice(&rest[..nl]);
                    Cow::Owned(whole)
                };
                rest = &rest[nl + 1..];
                if !state.line(&line, &mut report) {
                    return self.reject_file(report, state).await;
                }
                if state.records.len() >= BATCH_ROWS {
                    report.published += publisher
                        .publish(std::mem::take(&mut state.records))
                        .await?;
                }
                if state.letters.len() >= LETTER_BATCH {
                    self.send_letters(&std::mem::take(&mut state.letters))
                        .await?;
                }
            }
            state.partial.extend_from_slice(rest);
        }
        if !state.partial.is_empty() {
            let last = std::mem::take(&mut state.partial);
            if !state.line(&last, &mut report) {
                return self.reject_file(report, state).await;
            }
        }
        if !state.header_ok {
            state.letters.push(DeadLetter::of_file(
                FUNCTION,
                source,
                None,
                "the file is empty: expected a header row".into(),
            ));
            report.file_rejected = Some("empty file".into());
        }
        if !state.records.is_empty() {
            report.published += publisher
                .publish(std::mem::take(&mut state.records))
                .await?;
        }
        self.send_letters(&state.letters).await?;
        Ok(report)
    }

    async fn reject_file(
        &self,
        mut report: FileReport,
        state: FileState,
    ) -> Result<FileReport, StreamError> {
        let reason = state
            .letters
            .last()
            .map(|l| l.reason.clone())
            .unwrap_or_default();
        report.file_rejected = Some(reason);
        self.send_letters(&state.letters).await?;
        Ok(report)
    }

    async fn send_letters(&self, letters: &[DeadLetter]) -> Result<(), StreamError> {
        for chunk in letters.chunks(10) {
            self.dead_letters
                .send(chunk)
                .await
                .map_err(|e| StreamError::DeadLetters(e.to_string()))?;
        }
        Ok(())
    }
}

/// A file being read.
struct FileState {
    kind: CdrKind,
    /// The identity of the line being read (its number counts from 1, the header).
    id: RowId,
    partial: Vec<u8>,
    records: Vec<OutRecord>,
    letters: Vec<DeadLetter>,
    header_ok: bool,
}

impl FileState {
    /// Takes one line; false when the file cannot be read on (its header is wrong).
    fn line(&mut self, line: &[u8], report: &mut FileReport) -> bool {
        self.id.line += 1;
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let at = format!("{}#{}", self.id.source, self.id.line);
        if !self.header_ok {
            let header = self.kind.header();
            let found = line.strip_prefix(b"\xef\xbb\xbf").unwrap_or(line);
            if found != header.as_bytes() {
                self.letters.push(DeadLetter::of_file(
                    FUNCTION,
                    at,
                    Some(line),
                    format!(
                        "the header must be `{header}` for a {} file",
                        self.kind.name()
                    ),
                ));
                return false;
            }
            self.header_ok = true;
            return true;
        }
        if line.is_empty() {
            return true;
        }
        report.rows += 1;
        let mut fields = Vec::with_capacity(8);
        let checked = split_csv(line, &mut fields).and_then(|()| validate_row(self.kind, &fields));
        match checked {
            Ok(row) => self.records.push(OutRecord {
                key: row.msisdn.clone(),
                partition_key: row.msisdn,
                value: encode_record(self.kind, &self.id, &fields),
            }),
            Err(e) => {
                report.rejected += 1;
                self.letters
                    .push(DeadLetter::of_file(FUNCTION, at, Some(line), e.to_string()));
            }
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notification_keys_are_decoded() {
        assert_eq!(
            decode_key("upload/cdr_data_20240101_000320.csv"),
            "upload/cdr_data_20240101_000320.csv"
        );
        assert_eq!(decode_key("my+folder/a%2Cb.csv"), "my folder/a,b.csv");
        assert_eq!(decode_key("100%"), "100%");
        assert_eq!(decode_key("%zz"), "%zz");
    }

    #[test]
    fn s3_events_are_read() {
        let event: S3Event = serde_json::from_str(
            r#"{"Records":[{"eventVersion":"2.1","eventSource":"aws:s3","eventName":"ObjectCreated:Put",
            "s3":{"bucket":{"name":"cdr-drop","arn":"arn:aws:s3:::cdr-drop"},
            "object":{"key":"upload/cdr_voice_20240101_000320.csv","size":1024,"eTag":"0123"}}}]}"#,
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            event.records[0].s3.object.key,
            "upload/cdr_voice_20240101_000320.csv"
        );
    }
}
