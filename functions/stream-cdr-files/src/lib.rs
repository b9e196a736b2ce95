//! stream-cdr-files: on S3 ObjectCreated, stream a CDR file (never whole in memory), validate every
//! row, and publish one record per valid row to `cdr-data` / `cdr-voice` (Kafka key = msisdn) or
//! to the CDR stream (Kinesis, partition key = msisdn).
//!
//! In AWS the bucket's notifications reach the function through an SQS queue (`FileEvent::Sqs`),
//! whose redrive policy keeps what fails; locally the runner hands it S3's notification itself
//! (`FileEvent::S3`). A file whose processing still fails at its last attempt
//! (`FILE_MAX_ATTEMPTS`, the queue's receive count) goes to the dead-letter queue with its key and
//! the reason, so no file is dropped silently.
//!
//! Each record carries its identity: the file's content checksum (S3's full-object CRC64NVME, or
//! the same computed here when S3 has none) and the line, so the same content uploaded twice, by
//! any client, under any name or with any multipart part size, is the same rows and
//! aggregate-usage counts them once. Rows that break a rule go to the dead-letter queue with the
//! file, the line and the reason; a line longer than `MAX_LINE_BYTES` is one rejected row (its
//! beginning in the letter, the rest in the file) and the file streams on; a file whose name is
//! not a CDR file name, or whose header is not its kind's, is rejected whole with the reason.
//! Records go out in batches of `BATCH_ROWS` as the file streams in.

use serde::{Deserialize, Serialize};
use wtc_aws::FailureKind;
use wtc_aws::publish::Publisher;
use wtc_aws::{DeadLetterQueue, OutRecord};
use wtc_core::DeadLetter;
use wtc_core::cdr::{CdrFile, CdrKind, RowId, encode_record, split_csv, validate_row};

pub const FUNCTION: &str = "stream-cdr-files";
/// Records published at once (and the most held in memory).
pub const BATCH_ROWS: usize = 1_000;
/// The longest line a CDR file may have (a row is about 150 bytes): a longer one is a rejected
/// row, of which only this much is held.
pub const MAX_LINE_BYTES: usize = 16 * 1024;
/// Attempts at a file before it is dead-lettered (`FILE_MAX_ATTEMPTS`; the template's queue
/// redrives after 5 receives).
pub const DEFAULT_FILE_MAX_ATTEMPTS: u32 = 5;
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

/// The (bucket, decoded key) of each object an S3 notification says was created.
fn created(event: &S3Event) -> Vec<(String, String)> {
    event
        .records
        .iter()
        .filter(|r| r.event_name.is_empty() || r.event_name.starts_with("ObjectCreated"))
        .map(|r| (r.s3.bucket.name.clone(), decode_key(&r.s3.object.key)))
        .collect()
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

/// The SQS messages a queue hands the function, each an S3 notification.
#[derive(Debug, Clone, Deserialize)]
pub struct SqsEvent {
    #[serde(rename = "Records")]
    pub records: Vec<SqsMessage>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct SqsMessage {
    #[serde(rename = "messageId")]
    pub message_id: String,
    pub body: String,
    #[serde(default)]
    pub attributes: SqsAttributes,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct SqsAttributes {
    /// How many times the message has been received, this time included.
    #[serde(rename = "ApproximateReceiveCount", default)]
    pub approximate_receive_count: Option<String>,
}

/// What the function is invoked with.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum FileEvent {
    /// Notifications through a queue (the template's way): failures are reported per message.
    Sqs(SqsEvent),
    /// S3's notification itself (the local runner's way).
    S3(S3Event),
}

/// The partial-batch answer to an SQS event: the messages to receive again.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SqsBatchResponse {
    pub batch_item_failures: Vec<SqsItemFailure>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SqsItemFailure {
    pub item_identifier: String,
}

#[derive(Debug, thiserror::Error)]
pub enum StreamError {
    #[error("reading {file}: {error}")]
    Read {
        file: String,
        error: wtc_aws::AwsError,
    },
    #[error(transparent)]
    Publish(#[from] wtc_aws::PublishError),
    #[error("sending dead letters: {0}")]
    DeadLetters(#[from] wtc_aws::dead_letters::DeadLetterError),
}

impl StreamError {
    /// Whether streaming the file again can help.
    pub fn kind(&self) -> FailureKind {
        match self {
            StreamError::Read { error, .. } => error.kind,
            StreamError::Publish(e) => e.kind,
            StreamError::DeadLetters(e) => e.error.kind,
        }
    }
}

#[derive(Clone)]
pub struct StreamCdrFiles {
    pub s3: aws_sdk_s3::Client,
    /// For Kafka, the topic is chosen per kind (`cdr-data`, `cdr-voice`).
    pub publisher: Publisher,
    pub dead_letters: DeadLetterQueue,
    /// Attempts at a file before it is dead-lettered.
    pub max_attempts: u32,
}

impl StreamCdrFiles {
    pub fn new(
        s3: aws_sdk_s3::Client,
        publisher: Publisher,
        dead_letters: DeadLetterQueue,
    ) -> Self {
        Self {
            s3,
            publisher,
            dead_letters,
            max_attempts: DEFAULT_FILE_MAX_ATTEMPTS,
        }
    }

    /// `TRANSPORT` and its settings (see `wtc_aws::publish::publisher_from_env`; the Kinesis stream
    /// in `CDR_STREAM`), `DEAD_LETTER_QUEUE_URL`, `DEAD_LETTER_BUCKET`, `FILE_MAX_ATTEMPTS`, and
    /// the standard AWS settings.
    pub async fn from_env() -> Result<Self, wtc_aws::ConfigError> {
        let publisher =
            wtc_aws::publish::publisher_from_env("CDR_DATA_TOPIC", "cdr-data", "CDR_STREAM")
                .await?;
        let sdk = wtc_aws::load_sdk_config().await;
        let mut function = Self::new(
            wtc_aws::s3_client(&sdk),
            publisher,
            DeadLetterQueue::from_env(&sdk)?,
        );
        if let Ok(n) = std::env::var("FILE_MAX_ATTEMPTS") {
            function.max_attempts =
                n.parse()
                    .ok()
                    .filter(|n| *n > 0)
                    .ok_or_else(|| wtc_aws::ConfigError::Invalid {
                        name: "FILE_MAX_ATTEMPTS",
                        reason: format!("must be a positive number, found {n:?}"),
                    })?;
        }
        Ok(function)
    }

    /// Streams every file of S3's notification; the first failure fails the invocation.
    pub async fn handle(&self, event: &S3Event) -> Result<Vec<FileReport>, StreamError> {
        let mut reports = Vec::with_capacity(event.records.len());
        for record in created(event) {
            reports.push(self.stream_file(&record.0, &record.1).await?);
        }
        Ok(reports)
    }

    /// Streams the files of each message. A message whose file fails is received again, unless
    /// this was its last attempt: the file is then dead-lettered with its key and the reason (and
    /// the message let go), so the queue's redrive only ever holds what could not even be
    /// dead-lettered. S3's test message and bodies that are not notifications are let go (the
    /// latter dead-lettered as they are).
    pub async fn handle_sqs(&self, event: &SqsEvent) -> (SqsBatchResponse, Vec<FileReport>) {
        let mut response = SqsBatchResponse::default();
        let mut reports = Vec::new();
        for message in &event.records {
            let attempt: u32 = message
                .attributes
                .approximate_receive_count
                .as_deref()
                .and_then(|n| n.parse().ok())
                .unwrap_or(1);
            let last = attempt >= self.max_attempts;
            let outcome = match serde_json::from_str::<S3Event>(&message.body) {
                // `{"Service":"Amazon S3","Event":"s3:TestEvent",...}` has no records.
                Ok(s3) => self.stream_message(&s3, attempt, last, &mut reports).await,
                Err(e) => self
                    .send_letters(&[DeadLetter::of_file(
                        FUNCTION,
                        format!("sqs-message:{}", message.message_id),
                        Some(message.body.as_bytes()),
                        format!("the message is not an S3 notification: {e}"),
                    )])
                    .await
                    .map_err(|e| (e, None)),
            };
            if let Err((e, _)) = outcome {
                tracing::warn!(message = %message.message_id, attempt, "a file failed: {e}");
                response.batch_item_failures.push(SqsItemFailure {
                    item_identifier: message.message_id.clone(),
                });
            }
        }
        (response, reports)
    }

    /// One message's files; on the last attempt a failed file is dead-lettered instead of failing.
    async fn stream_message(
        &self,
        event: &S3Event,
        attempt: u32,
        last: bool,
        reports: &mut Vec<FileReport>,
    ) -> Result<(), (StreamError, Option<String>)> {
        for (bucket, key) in created(event) {
            match self.stream_file(&bucket, &key).await {
                Ok(report) => reports.push(report),
                Err(e) if last => {
                    let letter = DeadLetter::of_file(
                        FUNCTION,
                        format!("s3://{bucket}/{key}"),
                        None,
                        format!("the file failed at its attempt {attempt}, the last: {e}"),
                    );
                    self.send_letters(&[letter])
                        .await
                        .map_err(|e| (e, Some(key.clone())))?;
                }
                Err(e) => return Err((e, Some(key))),
            }
        }
        Ok(())
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
        let read_error = |what: &str, e: wtc_aws::AwsError| StreamError::Read {
            file: source.clone(),
            error: e.doing(what, &wtc_aws::Resource::new(bucket, "")),
        };
        let (identity, mut body) = self
            .open(bucket, key)
            .await
            .map_err(|e| read_error("reading", e))?;
        let publisher = self.publisher_for(kind);
        let mut state = FileState {
            kind,
            id: RowId {
                source: source.clone(),
                etag: identity,
                line: 0,
            },
            partial: Vec::new(),
            overlong: None,
            records: Vec::with_capacity(BATCH_ROWS),
            letters: Vec::new(),
            header_ok: false,
        };
        loop {
            let chunk = body
                .try_next()
                .await
                .map_err(|e| read_error("reading", wtc_aws::AwsError::throttled(e.to_string())))?;
            let Some(chunk) = chunk else { break };
            let mut rest: &[u8] = &chunk;
            while let Some(nl) = memchr::memchr(b'\n', rest) {
                state.extend(&rest[..nl]);
                rest = &rest[nl + 1..];
                let line = std::mem::take(&mut state.partial);
                let done = match state.overlong.take() {
                    Some(len) => state.overlong_line(&line, len, &mut report),
                    None => state.line(&line, &mut report),
                };
                state.partial = line;
                state.partial.clear();
                if !done {
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
            state.extend(rest);
        }
        if let Some(len) = state.overlong.take() {
            let last = std::mem::take(&mut state.partial);
            if !state.overlong_line(&last, len, &mut report) {
                return self.reject_file(report, state).await;
            }
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
            self.dead_letters.send(chunk).await?;
        }
        Ok(())
    }

    /// The object's content identity and its body. The identity is S3's full-object CRC64NVME
    /// when S3 keeps one (it computes it for every new object), else the same checksum computed
    /// here in a first pass over the object; the second read is then tied to the same version by
    /// its ETag, so identity and rows come from one content.
    async fn open(
        &self,
        bucket: &str,
        key: &str,
    ) -> Result<(String, aws_sdk_s3::primitives::ByteStream), wtc_aws::AwsError> {
        use aws_sdk_s3::types::{ChecksumMode, ChecksumType};
        let get = || async {
            self.s3
                .get_object()
                .bucket(bucket)
                .key(key)
                .checksum_mode(ChecksumMode::Enabled)
                .send()
                .await
                .map_err(|e| wtc_aws::AwsError::from_sdk(&e))
        };
        let object = get().await?;
        let full_object = object
            .checksum_type()
            .is_none_or(|t| *t == ChecksumType::FullObject);
        if let (Some(crc), true) = (object.checksum_crc64_nvme(), full_object) {
            return Ok((crc.to_owned(), object.body));
        }
        let etag = object.e_tag().map(str::to_owned);
        let mut digest = crc_fast::Digest::new(crc_fast::CrcAlgorithm::Crc64Nvme);
        let mut body = object.body;
        while let Some(chunk) = body
            .try_next()
            .await
            .map_err(|e| wtc_aws::AwsError::throttled(e.to_string()))?
        {
            digest.update(&chunk);
        }
        let identity = crc64nvme_text(digest.finalize());
        let again = self
            .s3
            .get_object()
            .bucket(bucket)
            .key(key)
            .set_if_match(etag)
            .send()
            .await
            .map_err(|e| wtc_aws::AwsError::from_sdk(&e))?;
        Ok((identity, again.body))
    }
}

/// A CRC64NVME as S3 writes it (`ChecksumCRC64NVME`): base64 of its 8 bytes, big-endian.
pub fn crc64nvme_text(crc: u64) -> String {
    base64_simd::STANDARD.encode_to_string(crc.to_be_bytes())
}

/// A file being read.
struct FileState {
    kind: CdrKind,
    /// The identity of the line being read (its number counts from 1, the header).
    id: RowId,
    /// The line read so far (at most `MAX_LINE_BYTES`).
    partial: Vec<u8>,
    /// The length of the line being read, once it is longer than `MAX_LINE_BYTES`.
    overlong: Option<u64>,
    records: Vec<OutRecord>,
    letters: Vec<DeadLetter>,
    header_ok: bool,
}

impl FileState {
    /// Takes more of the line being read, keeping at most `MAX_LINE_BYTES` of it.
    fn extend(&mut self, bytes: &[u8]) {
        if let Some(len) = &mut self.overlong {
            *len += bytes.len() as u64;
            return;
        }
        if self.partial.len() + bytes.len() <= MAX_LINE_BYTES {
            self.partial.extend_from_slice(bytes);
        } else {
            let room = MAX_LINE_BYTES - self.partial.len();
            self.partial.extend_from_slice(&bytes[..room]);
            self.overlong = Some((MAX_LINE_BYTES + bytes.len() - room) as u64);
        }
    }

    /// A line longer than files may have: one rejected row, its beginning in the letter.
    fn overlong_line(&mut self, start: &[u8], len: u64, report: &mut FileReport) -> bool {
        self.id.line += 1;
        let mut letter = DeadLetter::of_file(
            FUNCTION,
            format!("{}#{}", self.id.source, self.id.line),
            Some(start),
            format!(
                "line {} is {len} bytes long, longer than the {MAX_LINE_BYTES} a CDR file's lines may be",
                self.id.line
            ),
        );
        letter.checksum = Some(self.id.etag.clone());
        letter.value_bytes = Some(len);
        letter.truncated = Some(true);
        self.letters.push(letter);
        if self.header_ok {
            report.rows += 1;
            report.rejected += 1;
            true
        } else {
            false
        }
    }

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
                let mut letter = DeadLetter::of_file(FUNCTION, at, Some(line), e.to_string());
                letter.checksum = Some(self.id.etag.clone());
                self.letters.push(letter);
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
