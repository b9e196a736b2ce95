//! Sends dead letters back through the function that rejected them, once their cause is fixed
//! (`wtc-local replay`).
//!
//! Replaying is safe because every function is exact under redelivery: raw ticks are keyed by
//! pair and time and the sums by ledgers of distinct ticks, usage rows by their file's checksum and
//! line. A letter replayed twice, or whose record was stored after all, changes nothing.
//!
//! The queue is read ten letters at a time; each is exchanged for its whole letter when it is a
//! claim ticket (`DeadLetterQueue::redeem`), rebuilt into the event its function takes (a Kafka or
//! Kinesis record at its original position, or the S3 object of a file) and handed to the function
//! in this process. A letter is deleted only after its function took it: if the record is rejected
//! again, the function has dead-lettered it anew with today's reason. Letters sent after the replay
//! began are left for the next one, so a replay ends even when everything is rejected again.

use anyhow::{Result, bail};
use std::collections::BTreeMap;
use std::sync::Arc;
use wtc_aws::DeadLetterQueue;
use wtc_aws::dead_letters::Received;
use wtc_core::event::{KafkaEvent, KafkaRecord, KinesisEvent, KinesisEventRecord};
use wtc_core::{DeadLetter, SourceEvent};

/// How long a letter being replayed stays hidden from other readers.
const HIDE_SECS: i32 = 300;
/// Letters gathered before they are handed to their functions: a batch of this many records
/// (each letter at most a few MB, claim checks included, so memory stays bounded).
const ROUND: usize = 50;

/// The functions letters go back to.
pub struct Functions {
    pub ticks: Arc<process_ticks::ProcessTicks>,
    pub usage: Arc<aggregate_usage::AggregateUsage>,
    pub files: Arc<stream_cdr_files::StreamCdrFiles>,
}

/// What a replay did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ReplayReport {
    /// Letters handed to their function and deleted from the queue.
    pub replayed: u64,
    /// Per function, the letters it took.
    pub by_function: BTreeMap<&'static str, u64>,
    /// Letters left in the queue, by why.
    pub kept: BTreeMap<&'static str, u64>,
    /// Letters sent after the replay began (rejected again, or new): left for the next replay.
    pub newer: u64,
}

impl ReplayReport {
    pub fn kept_total(&self) -> u64 {
        self.kept.values().sum()
    }
}

/// Where a letter goes back to.
enum Target {
    Ticks(Record),
    Usage(Record),
    File { bucket: String, key: String },
    Keep(&'static str),
}

enum Record {
    Kafka(KafkaRecord),
    Kinesis(Box<KinesisEventRecord>),
}

/// Replays up to `max` letters of the queue.
pub async fn replay(
    queue: &DeadLetterQueue,
    functions: &Functions,
    max: u64,
) -> Result<ReplayReport> {
    let began_ms = now_ms();
    let mut report = ReplayReport::default();
    // Receipts of letters left in the queue, made visible again at the end (one per letter
    // looked at, so bounded by `max` and by what was sent after the start).
    let mut put_back: Vec<String> = Vec::new();
    let outcome = replay_chunks(queue, functions, max, began_ms, &mut report, &mut put_back).await;
    for receipt in &put_back {
        queue.release(receipt).await?;
    }
    outcome.map(|()| report)
}

async fn replay_chunks(
    queue: &DeadLetterQueue,
    functions: &Functions,
    max: u64,
    began_ms: i64,
    report: &mut ReplayReport,
    put_back: &mut Vec<String>,
) -> Result<()> {
    while report.replayed + report.kept_total() < max {
        let mut received = Vec::new();
        let room = (max - report.replayed - report.kept_total()).min(ROUND as u64) as usize;
        while received.len() < room {
            let more = queue.receive(10, HIDE_SECS).await?;
            if more.is_empty() {
                break;
            }
            received.extend(more);
        }
        if received.is_empty() {
            return Ok(());
        }
        let mut ticks: Vec<(Record, String)> = Vec::new();
        let mut usage: Vec<(Record, String)> = Vec::new();
        let mut files: Vec<(String, String, String)> = Vec::new();
        for Received {
            body,
            receipt,
            sent_ms,
        } in received
        {
            if sent_ms.is_some_and(|t| t > began_ms) {
                report.newer += 1;
                put_back.push(receipt);
                continue;
            }
            let target = match serde_json::from_str::<DeadLetter>(&body) {
                Ok(letter) => target(queue.redeem(letter).await?),
                Err(_) => Target::Keep("not a dead letter (unreadable JSON)"),
            };
            match target {
                Target::Ticks(r) => ticks.push((r, receipt)),
                Target::Usage(r) => usage.push((r, receipt)),
                Target::File { bucket, key } => files.push((bucket, key, receipt)),
                Target::Keep(why) => {
                    *report.kept.entry(why).or_default() += 1;
                    put_back.push(receipt);
                }
            }
        }
        for (event, receipts) in events(ticks) {
            let result = functions.ticks.handle(&event).await;
            if let Err(e) = result.response() {
                put_back.extend(receipts);
                bail!("process-ticks failed on replay ({e}); its letters stay in the queue");
            }
            done(queue, report, process_ticks::FUNCTION, receipts).await?;
        }
        for (event, receipts) in events(usage) {
            let result = functions.usage.handle(&event).await;
            if let Err(e) = result.response() {
                put_back.extend(receipts);
                bail!("aggregate-usage failed on replay ({e}); its letters stay in the queue");
            }
            done(queue, report, aggregate_usage::FUNCTION, receipts).await?;
        }
        for (bucket, key, receipt) in files {
            if let Err(e) = functions.files.stream_file(&bucket, &key).await {
                put_back.push(receipt);
                bail!(
                    "stream-cdr-files failed on replay of s3://{bucket}/{key} ({e}); its letter stays in the queue"
                );
            }
            done(queue, report, stream_cdr_files::FUNCTION, vec![receipt]).await?;
        }
    }
    Ok(())
}

async fn done(
    queue: &DeadLetterQueue,
    report: &mut ReplayReport,
    function: &'static str,
    receipts: Vec<String>,
) -> Result<()> {
    queue.delete(&receipts).await?;
    report.replayed += receipts.len() as u64;
    *report.by_function.entry(function).or_default() += receipts.len() as u64;
    Ok(())
}

/// The events that carry these records: one Kafka event, one Kinesis event.
fn events(records: Vec<(Record, String)>) -> Vec<(SourceEvent, Vec<String>)> {
    let (mut kafka, mut kinesis) = (Vec::new(), Vec::new());
    let (mut kafka_receipts, mut kinesis_receipts) = (Vec::new(), Vec::new());
    for (record, receipt) in records {
        match record {
            Record::Kafka(r) => {
                kafka.push(r);
                kafka_receipts.push(receipt);
            }
            Record::Kinesis(r) => {
                kinesis.push(*r);
                kinesis_receipts.push(receipt);
            }
        }
    }
    let mut out = Vec::new();
    if !kafka.is_empty() {
        out.push((
            SourceEvent::Kafka(KafkaEvent::self_managed("replay", kafka)),
            kafka_receipts,
        ));
    }
    if !kinesis.is_empty() {
        out.push((
            SourceEvent::Kinesis(KinesisEvent { records: kinesis }),
            kinesis_receipts,
        ));
    }
    out
}

/// Where a letter goes back to, from its function and source.
fn target(letter: DeadLetter) -> Target {
    match letter.function.as_str() {
        process_ticks::FUNCTION => match record(&letter) {
            Some(r) => Target::Ticks(r),
            None => Target::Keep("a record letter whose source is not a Kafka or Kinesis position"),
        },
        aggregate_usage::FUNCTION => match record(&letter) {
            Some(r) => Target::Usage(r),
            None => Target::Keep("a record letter whose source is not a Kafka or Kinesis position"),
        },
        stream_cdr_files::FUNCTION => {
            let Some(object) = letter.source.strip_prefix("s3://") else {
                return Target::Keep(
                    "a file letter that names no S3 object (an unreadable notification)",
                );
            };
            if object.contains('#') {
                return Target::Keep("a rejected row of a file: upload a corrected file instead");
            }
            match object.split_once('/') {
                Some((bucket, key)) => Target::File {
                    bucket: bucket.to_owned(),
                    key: key.to_owned(),
                },
                None => Target::Keep(
                    "a file letter that names no S3 object (an unreadable notification)",
                ),
            }
        }
        _ => Target::Keep("a letter of no function this replay knows"),
    }
}

/// The record a letter came from, at its position: `topic/partition@offset` (Kafka) or
/// `shardId@sequenceNumber` (Kinesis).
fn record(letter: &DeadLetter) -> Option<Record> {
    let (place, at) = letter.source.rsplit_once('@')?;
    match place.rsplit_once('/') {
        Some((topic, partition)) => Some(Record::Kafka(KafkaRecord {
            topic: topic.to_owned(),
            partition: partition.parse().ok()?,
            offset: at.parse().ok()?,
            timestamp: -1,
            timestamp_type: "NO_TIMESTAMP_TYPE".into(),
            key: letter.key.clone(),
            value: letter.value.clone(),
            headers: Vec::new(),
        })),
        None => {
            let data = letter.payload().unwrap_or_default();
            Some(Record::Kinesis(Box::new(KinesisEventRecord::new(
                "arn:aws:kinesis:::stream/replay",
                place,
                at,
                letter.key.as_deref().unwrap_or_default(),
                &data,
                0.0,
            ))))
        }
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// A one-line account of a replay.
pub fn summary(report: &ReplayReport) -> String {
    let mut line = format!("replayed {} dead letters", report.replayed);
    for (function, n) in &report.by_function {
        line.push_str(&format!(", {n} through {function}"));
    }
    if report.kept_total() > 0 {
        line.push_str(&format!("; kept {} in the queue:", report.kept_total()));
        for (why, n) in &report.kept {
            line.push_str(&format!(" {n} ({why})"));
        }
    }
    if report.newer > 0 {
        line.push_str(&format!(
            "; {} sent since the replay began (rejected again, with today's reason) are left for the next one",
            report.newer
        ));
    }
    line
}

/// The functions wired to the provisioned resources, as the runner wires them.
pub fn functions(
    brokers: &str,
    sdk: &aws_config::SdkConfig,
    names: &crate::provision::Names,
    provisioned: &crate::provision::Provisioned,
) -> Result<Functions> {
    let dead_letters = crate::provision::dead_letter_queue(sdk, names, provisioned);
    let usage_store = wtc_aws::UsageStore::new(
        aws_sdk_dynamodb::Client::new(sdk),
        names.usage_table.clone(),
    );
    Ok(Functions {
        ticks: Arc::new(crate::provision::process_ticks(sdk, names, provisioned)),
        usage: Arc::new(aggregate_usage::AggregateUsage::new(
            usage_store,
            dead_letters.clone(),
        )),
        files: Arc::new(stream_cdr_files::StreamCdrFiles::new(
            crate::cdr::s3_client(sdk),
            wtc_aws::publish::Publisher::Kafka(crate::generator::tick_producer(
                brokers, "cdr-data",
            )?),
            dead_letters,
        )),
    })
}
