//! The event-source poller: stands in for AWS event-source mappings on the local stack.
//!
//! Like a Kafka event-source mapping it keeps its offsets in a consumer group (a new group starts
//! from the earliest offset), builds events exactly as AWS does (records grouped by "topic-partition", key
//! and value in base64), honours a batch size and a batching window, retries a failed batch, sends
//! the records of a batch that exhausts its retries to the dead-letter queue, and commits offsets
//! only after the batch is done. It reads every partition of its topic itself (assigned, not
//! balanced by the group's coordinator): one poller per topic and group, as the runner starts them.
//!
//! It also guards against a broker that serves less than asked: tansu 0.6 answers a fetch from an
//! offset inside a record batch with the batches after it, so a group resuming from a commit in
//! the middle of a producer's batch would never see the rest of that batch. A partition whose first
//! record comes after the offset due is read again from its start once, skipping what came before
//! that offset (see `Positions`).

use crate::progress::Progress;
use anyhow::{Context, Result, bail};
use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::message::{BorrowedMessage, Headers, Message};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use wtc_aws::DeadLetterQueue;
use wtc_core::event::{
    BatchFailed, BatchItemFailures, FailureKind, KafkaEvent, KafkaRecord, encode_base64,
};
use wtc_core::{DeadLetter, SourceEvent};

/// How the poller reaches the function.
#[derive(Clone)]
pub enum Invoker {
    /// The handler in this process.
    InProcess(Arc<process_ticks::ProcessTicks>),
    /// aggregate-usage in this process.
    Usage(Arc<aggregate_usage::AggregateUsage>),
    /// A function served over the Lambda invoke API, e.g. by `cargo lambda watch` on :9000.
    Http {
        url: String,
        function: String,
        client: reqwest::Client,
    },
}

impl Invoker {
    /// `base` is the server root, e.g. `http://127.0.0.1:9000`.
    pub fn http(base: &str, function: &str) -> Self {
        Invoker::Http {
            url: format!(
                "{}/2015-03-31/functions/{function}/invocations",
                base.trim_end_matches('/')
            ),
            function: function.to_owned(),
            client: reqwest::Client::new(),
        }
    }

    /// The function invoked: the one a dead letter of its batches names, so a replay finds it.
    pub fn function(&self) -> &str {
        match self {
            Invoker::InProcess(_) => process_ticks::FUNCTION,
            Invoker::Usage(_) => aggregate_usage::FUNCTION,
            Invoker::Http { function, .. } => function,
        }
    }

    /// Invokes the function with a batch.
    pub async fn invoke(&self, event: &SourceEvent) -> Result<Invocation> {
        match self {
            Invoker::InProcess(function) => {
                // The same rules as Lambda's: a Kafka batch with failures is an error.
                let result = function.handle(event).await;
                result.response()?;
                Ok(Invocation {
                    report: Some(result.report),
                    usage: None,
                    item_failures: identifiers(result.item_failures),
                })
            }
            Invoker::Usage(function) => {
                let result = function.handle(event).await;
                result.response()?;
                Ok(Invocation {
                    report: None,
                    usage: Some(result.report),
                    item_failures: identifiers(result.item_failures),
                })
            }
            Invoker::Http {
                url,
                client,
                function,
            } => {
                let response = client
                    .post(url)
                    .json(event)
                    .send()
                    .await
                    .map_err(|source| InvokeError::Unreachable {
                        url: url.clone(),
                        source,
                    })?;
                let status = response.status();
                let function_error = response.headers().contains_key("x-amz-function-error");
                let body = response.text().await.unwrap_or_default();
                if !status.is_success() || function_error {
                    return Err(InvokeError::failed(function, status, &body).into());
                }
                if event.is_kinesis() {
                    let failures: BatchItemFailures =
                        serde_json::from_str(&body).with_context(|| {
                            format!("reading the function's batch item failures: {body}")
                        })?;
                    return Ok(Invocation {
                        item_failures: identifiers(Some(failures)),
                        ..Default::default()
                    });
                }
                let report = serde_json::from_str(&body)
                    .with_context(|| format!("reading the function's report: {body}"))?;
                Ok(Invocation {
                    report: Some(report),
                    ..Default::default()
                })
            }
        }
    }
}

/// An invocation over the Lambda invoke API that did not succeed.
#[derive(Debug, thiserror::Error)]
pub enum InvokeError {
    #[error("invoking {url} (is `cargo lambda watch` running?): {source}")]
    Unreachable { url: String, source: reqwest::Error },
    #[error("{function} failed ({status}, {error_type}): {message}")]
    Failed {
        function: String,
        status: reqwest::StatusCode,
        /// The kind the function's `errorType` names; `None` for an error of its own kind
        /// (a panic, a timeout) or of the server in front of it.
        kind: Option<FailureKind>,
        error_type: String,
        message: String,
    },
}

impl InvokeError {
    /// At most this much of an error body is kept in the message.
    const MAX_MESSAGE: usize = 1_024;

    /// The error a failed response describes, from Lambda's `{"errorType", "errorMessage"}`.
    fn failed(function: &str, status: reqwest::StatusCode, body: &str) -> Self {
        #[derive(serde::Deserialize)]
        struct LambdaError {
            #[serde(rename = "errorType", default)]
            error_type: String,
            #[serde(rename = "errorMessage", default)]
            error_message: String,
        }
        let (error_type, message) = match serde_json::from_str::<LambdaError>(body) {
            Ok(e) => (e.error_type, e.error_message),
            Err(_) => ("Unhandled".to_owned(), body.to_owned()),
        };
        InvokeError::Failed {
            function: function.to_owned(),
            status,
            kind: FailureKind::from_error_type(&error_type),
            error_type,
            message: wtc_core::dead_letter::cut(&message, Self::MAX_MESSAGE),
        }
    }

    /// Whether delivering the batch again can help: the function could not be reached, said its
    /// failure passes, or the server in front of it failed without the function's word.
    pub fn is_transient(&self) -> bool {
        match self {
            InvokeError::Unreachable { .. } => true,
            InvokeError::Failed { kind: Some(k), .. } => *k == FailureKind::Transient,
            InvokeError::Failed { status, .. } => {
                status.is_server_error() || *status == reqwest::StatusCode::TOO_MANY_REQUESTS
            }
        }
    }
}

/// The sequence numbers a partial-batch response names.
fn identifiers(failures: Option<BatchItemFailures>) -> Vec<String> {
    failures
        .map(|f| {
            f.batch_item_failures
                .into_iter()
                .map(|f| f.item_identifier)
                .collect()
        })
        .unwrap_or_default()
}

/// What an invocation answered.
#[derive(Debug, Clone, Default)]
pub struct Invocation {
    /// The function's report (not available over HTTP for Kinesis, whose response is fixed).
    pub report: Option<process_ticks::BatchReport>,
    /// aggregate-usage's report, when it is the function.
    pub usage: Option<aggregate_usage::UsageReport>,
    /// Kinesis sequence numbers to deliver again.
    pub item_failures: Vec<String>,
}

impl Invocation {
    /// Adds the invocation to the run's counters: `done` records of the batch are finished (the
    /// rest will be delivered again).
    pub fn count(&self, done: usize, progress: &Progress) {
        Progress::add(&progress.batches, 1);
        Progress::add(&progress.processed, done as u64);
        if let Some(r) = &self.report {
            Progress::add(&progress.stored, r.stored as u64);
            Progress::add(&progress.duplicates, r.duplicates as u64);
            Progress::add(&progress.rejected, r.rejected as u64);
            Progress::add(&progress.bars, r.bars as u64);
            Progress::add(&progress.candles_closed, r.candles_closed as u64);
        }
        if let Some(r) = &self.usage {
            Progress::add(&progress.usage_rows, r.applied as u64);
            Progress::add(&progress.duplicates, r.duplicates as u64);
            Progress::add(&progress.rejected, r.rejected as u64);
            Progress::add(&progress.usage_writes, r.items as u64);
        }
    }
}

/// Batching and retry settings, named after the event-source mapping's.
#[derive(Debug, Clone)]
pub struct PollerOptions {
    pub brokers: String,
    pub topic: String,
    pub group_id: String,
    pub batch_size: usize,
    pub batching_window: Duration,
    pub maximum_retry_attempts: u32,
}

/// A Kafka consumer feeding one function.
pub struct KafkaPoller {
    consumer: BoundedClose,
    positions: Mutex<Positions>,
    stage: Mutex<Stage>,
    options: PollerOptions,
    invoker: Invoker,
    dead_letters: DeadLetterQueue,
}

impl KafkaPoller {
    pub fn new(
        options: PollerOptions,
        invoker: Invoker,
        dead_letters: DeadLetterQueue,
    ) -> Result<Self> {
        let consumer: StreamConsumer = ClientConfig::new()
            .set("bootstrap.servers", &options.brokers)
            .set("group.id", &options.group_id)
            .set("enable.auto.commit", "false")
            .set("auto.offset.reset", "earliest")
            // Read ahead a thousand records per partition and a megabyte per fetch, not
            // librdkafka's hundred thousand and 50 MB: the stage below does the reading ahead.
            .set("queued.min.messages", "1000")
            .set("fetch.max.bytes", "1048576")
            .create()
            .context("creating the Kafka consumer")?;
        // Every partition is assigned here rather than by the group's coordinator: a poller is
        // the topic's only consumer in its group, and tansu 0.6 can leave a group that lost a
        // member to SIGKILL formed with an empty assignment for good. With partitions assigned,
        // a poller killed and started again at once resumes within seconds.
        let metadata = consumer
            .fetch_metadata(Some(&options.topic), Duration::from_secs(30))
            .with_context(|| format!("reading the partitions of {}", options.topic))?;
        let partitions: Vec<i32> = metadata
            .topics()
            .iter()
            .filter(|t| t.name() == options.topic)
            .flat_map(|t| t.partitions().iter().map(|p| p.id()))
            .collect();
        if partitions.is_empty() {
            bail!(
                "topic {} has no partitions (does it exist? tansu does not create topics)",
                options.topic
            );
        }
        // Each partition is read from its start, the records before the group's commit skipped
        // (`Positions`): tansu answers a fetch from inside a record batch with the batches after
        // it, so a commit inside a partition's last batch would otherwise see nothing again.
        let mut wanted = TopicPartitionList::new();
        for &partition in &partitions {
            wanted.add_partition(&options.topic, partition);
        }
        let committed = consumer
            .committed_offsets(wanted, Duration::from_secs(30))
            .with_context(|| format!("reading the commits of group {}", options.group_id))?;
        let mut positions = Positions::default();
        let mut assignment = TopicPartitionList::new();
        for partition in partitions {
            if let Some(Offset::Offset(due)) = committed
                .find_partition(&options.topic, partition)
                .map(|p| p.offset())
            {
                positions
                    .due
                    .insert((options.topic.clone(), partition), due);
            }
            assignment.add_partition_offset(&options.topic, partition, Offset::Beginning)?;
        }
        consumer
            .assign(&assignment)
            .with_context(|| format!("assigning the partitions of {}", options.topic))?;
        Ok(Self {
            consumer: BoundedClose(Some(consumer)),
            positions: Mutex::new(positions),
            stage: Mutex::new(Stage::default()),
            options,
            invoker,
            dead_letters,
        })
    }

    /// Polls until `stop` is set, one batch at a time.
    pub async fn run(&self, progress: &Progress, stop: &AtomicBool) -> Result<()> {
        while !stop.load(Ordering::Relaxed) {
            let batch = self.next_batch(stop).await?;
            if batch.is_empty() {
                continue;
            }
            if !self.deliver(&batch, progress, stop).await? {
                // Stopped while the batch waited out a failure: not committed, delivered again
                // on the next start.
                break;
            }
            // Commits are sent without waiting: a synchronous commit waits without a bound, and
            // one whose connection to the broker is cut can wait for good. A commit that is lost
            // only means a batch delivered again, which every function takes exactly once.
            if let Err(e) = self.commit(&batch) {
                tracing::warn!("{e:#}; the next batch's commit covers it");
            }
        }
        self.settle_commits(Duration::from_secs(10)).await;
        Ok(())
    }

    /// Waits, at most `within`, until the group's commits cover every record delivered, so that
    /// a poller stopped cleanly resumes where it stopped.
    async fn settle_commits(&self, within: Duration) {
        let heads = match self.stage.lock() {
            Ok(stage) => stage.heads(),
            Err(_) => return,
        };
        // Records read ahead but not delivered are not committed: they come again next start.
        let due: Vec<((String, i32), i64)> = match self.positions.lock() {
            Ok(p) => p
                .due
                .iter()
                .map(|(k, v)| (k.clone(), heads.get(k).copied().unwrap_or(*v)))
                .collect(),
            Err(_) => return,
        };
        if due.is_empty() {
            return;
        }
        let mut list = TopicPartitionList::new();
        for ((topic, partition), _) in &due {
            list.add_partition(topic, *partition);
        }
        let started = Instant::now();
        while started.elapsed() < within {
            if let Ok(committed) = self
                .consumer
                .committed_offsets(list.clone(), Duration::from_secs(5))
            {
                let covered = due.iter().all(|((topic, partition), next)| {
                    matches!(
                        committed.find_partition(topic, *partition).map(|p| p.offset()),
                        Some(Offset::Offset(n)) if n >= *next
                    )
                });
                if covered {
                    return;
                }
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        tracing::warn!("the last commits were not confirmed within {within:?}");
    }

    /// Up to `batch_size` records of one partition: the partition whose oldest record read
    /// and not yet delivered is the oldest (by record timestamp). Records are read ahead into a
    /// stage (at most `STAGED_AT_MOST`) for as long as the consumer has them at hand and the
    /// batching window since the first one lasts, so that a broker that sends one partition's
    /// backlog in large slices still yields batches partition after partition, in time order,
    /// as an event-source mapping's concurrent per-partition batches progress together.
    async fn next_batch(&self, stop: &AtomicBool) -> Result<Vec<KafkaRecord>> {
        let mut read_any = false;
        while !stop.load(Ordering::Relaxed) {
            let (staged, full, waited) = match self.stage.lock() {
                Ok(stage) => (
                    stage.len,
                    stage.fullest() >= self.options.batch_size,
                    stage.first_at.map(|t| t.elapsed()),
                ),
                Err(_) => bail!("the poller's stage is poisoned"),
            };
            if staged >= STAGED_AT_MOST {
                break;
            }
            let wait = match waited {
                None => Duration::from_millis(200),
                Some(waited) => match self.options.batching_window.checked_sub(waited) {
                    // A full batch goes once the consumer has nothing more at hand.
                    Some(left) if full => left.min(Duration::from_millis(1)),
                    Some(left) => left,
                    None => break,
                },
            };
            match tokio::time::timeout(wait, self.consumer.recv()).await {
                Ok(Ok(message)) => {
                    read_any = true;
                    let (topic, partition, offset) =
                        (message.topic(), message.partition(), message.offset());
                    let step = match self.positions.lock() {
                        Ok(mut positions) => positions.step(topic, partition, offset, || {
                            self.committed(topic, partition)
                        }),
                        Err(_) => bail!("the poller's positions are poisoned"),
                    };
                    match step {
                        Step::Deliver => match self.stage.lock() {
                            Ok(mut stage) => stage.push(to_record(&message)),
                            Err(_) => bail!("the poller's stage is poisoned"),
                        },
                        Step::Skip => {}
                        Step::Rewind { due } => {
                            tracing::warn!(
                                "{topic}/{partition}: the broker served offset {offset} where {due} \
                                 was due; reading the partition again from its start"
                            );
                            self.consumer
                                .seek(topic, partition, Offset::Beginning, Duration::from_secs(10))
                                .with_context(|| format!("rewinding {topic}/{partition}"))?;
                        }
                    }
                }
                Ok(Err(e)) => {
                    // Broker hiccups (a restart, a rebalance) pass: keep what we have and go on.
                    tracing::warn!("consuming: {e}; retrying");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                    if staged > 0 {
                        break;
                    }
                }
                // Nothing more at hand: what is staged goes (nothing staged: the caller asks again).
                Err(_) if staged > 0 && (full || read_any) => break,
                Err(_) if staged > 0 => {}
                Err(_) => break,
            }
        }
        if stop.load(Ordering::Relaxed) {
            return Ok(Vec::new());
        }
        match self.stage.lock() {
            Ok(mut stage) => Ok(stage.take_oldest(self.options.batch_size, Instant::now())),
            Err(_) => bail!("the poller's stage is poisoned"),
        }
    }

    /// Invokes the function until the batch is done. A transient failure (throttling, timeouts,
    /// an emulator away) is retried for as long as it lasts, as a Kafka event-source mapping
    /// retries; any other failure is retried `maximum_retry_attempts` times, then the batch's
    /// records go to the dead-letter queue so that the partition goes on.
    /// Returns false, the batch not done, when `stop` is set while a transient failure lasts
    /// (at Ctrl-C the emulators may be gone for good).
    async fn deliver(
        &self,
        batch: &[KafkaRecord],
        progress: &Progress,
        stop: &AtomicBool,
    ) -> Result<bool> {
        let event = kafka_event(&self.options.brokers, batch);
        let (mut attempt, mut transient) = (0, 0u32);
        loop {
            let started = Instant::now();
            match self.invoker.invoke(&event).await {
                Ok(invocation) => {
                    tracing::debug!(
                        "batch of {} from {} done in {:?}: {invocation:?}",
                        batch.len(),
                        batch
                            .first()
                            .map(|r| format!(
                                "{}/{}@{} (timestamp {})",
                                r.topic, r.partition, r.offset, r.timestamp
                            ))
                            .unwrap_or_default(),
                        started.elapsed()
                    );
                    invocation.count(batch.len(), progress);
                    return Ok(true);
                }
                Err(_) if stop.load(Ordering::Relaxed) => return Ok(false),
                Err(e) if is_transient(&e) => {
                    transient += 1;
                    Progress::add(&progress.retried, 1);
                    tracing::warn!(
                        "batch of {} failed for now (retry {transient}): {e:#}",
                        batch.len()
                    );
                    tokio::time::sleep(retry_pause(transient)).await;
                }
                Err(e) if attempt < self.options.maximum_retry_attempts => {
                    attempt += 1;
                    Progress::add(&progress.retried, 1);
                    tracing::warn!(
                        "batch of {} failed (attempt {attempt}), retrying: {e:#}",
                        batch.len()
                    );
                    tokio::time::sleep(retry_pause(attempt)).await;
                }
                Err(e) => {
                    let reason = format!("batch failed after {} attempts: {e:#}", attempt + 1);
                    tracing::error!(
                        "{reason}; sending its {} records to the dead-letter queue",
                        batch.len()
                    );
                    dead_letter_batch(
                        &self.dead_letters,
                        self.invoker.function(),
                        &event,
                        &reason,
                        progress,
                    )
                    .await?;
                    return Ok(true);
                }
            }
        }
    }

    /// The group's committed offset of a partition, if any.
    fn committed(&self, topic: &str, partition: i32) -> Option<i64> {
        let mut list = TopicPartitionList::new();
        list.add_partition(topic, partition);
        let committed = self
            .consumer
            .committed_offsets(list, Duration::from_secs(10))
            .ok()?;
        match committed.find_partition(topic, partition)?.offset() {
            Offset::Offset(n) => Some(n),
            _ => None,
        }
    }

    fn commit(&self, batch: &[KafkaRecord]) -> Result<()> {
        let mut next: BTreeMap<(&str, i32), i64> = BTreeMap::new();
        for r in batch {
            let e = next.entry((r.topic.as_str(), r.partition)).or_insert(0);
            *e = (*e).max(r.offset + 1);
        }
        let mut list = TopicPartitionList::new();
        for ((topic, partition), offset) in next {
            list.add_partition_offset(topic, partition, Offset::Offset(offset))?;
        }
        self.consumer
            .commit(&list, CommitMode::Async)
            .context("committing offsets")
    }
}

/// How long dropping a poller waits for its consumer to close.
const CLOSE_WITHIN: Duration = Duration::from_secs(10);

/// A consumer whose close, when dropped, is waited for at most `CLOSE_WITHIN`. librdkafka's close
/// waits, without a bound, for the group's coordinator, and after the broker was away it can wait
/// for good. A poller's last commits were confirmed (or given up on) by `run` before it is
/// dropped, so a consumer left closing loses nothing: its thread ends with the process, and what
/// it did not commit is delivered again and taken once.
struct BoundedClose(Option<StreamConsumer>);

impl std::ops::Deref for BoundedClose {
    type Target = StreamConsumer;

    fn deref(&self) -> &StreamConsumer {
        self.0
            .as_ref()
            .expect("the consumer is taken only when dropped")
    }
}

impl Drop for BoundedClose {
    fn drop(&mut self) {
        let Some(consumer) = self.0.take() else {
            return;
        };
        let (closed, wait) = std::sync::mpsc::channel();
        let spawned = std::thread::Builder::new()
            .name("kafka-close".into())
            .spawn(move || {
                drop(consumer);
                let _ = closed.send(());
            });
        match spawned {
            Err(e) => {
                tracing::warn!("no thread to close the Kafka consumer on ({e}); it closed here")
            }
            Ok(_) => {
                if wait.recv_timeout(CLOSE_WITHIN).is_err() {
                    tracing::warn!(
                        "the Kafka consumer did not close within {CLOSE_WITHIN:?}; leaving it to \
                         close in the background"
                    );
                }
            }
        }
    }
}

/// Whether an invocation failed for a reason that passes: the function's error says so (its
/// `errorType`), or the function could not be reached.
pub fn is_transient(error: &anyhow::Error) -> bool {
    if let Some(failed) = error.downcast_ref::<BatchFailed>() {
        return failed.error.kind == FailureKind::Transient;
    }
    error
        .downcast_ref::<InvokeError>()
        .is_some_and(InvokeError::is_transient)
}

/// The pause before retry `n` (1-based): 200 ms doubling, at most 5 s.
fn retry_pause(n: u32) -> Duration {
    Duration::from_millis(
        200u64
            .saturating_mul(1 << n.saturating_sub(1).min(5))
            .min(5_000),
    )
}

/// What to do with a consumed record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    Deliver,
    /// Before the offset due: already delivered (seen again after a rewind).
    Skip,
    /// After the offset due: read the partition again from its start.
    Rewind {
        due: i64,
    },
}

/// Records read ahead of the stage's limit wait for the next read.
const STAGED_AT_MOST: usize = 65_536;

/// However new its timestamp, a partition's first staged record waits at most this long: a
/// producer whose clock runs ahead, or that sets timestamps of its own, cannot hold its
/// partition back behind the others for good. Far above what ordering needs (the stage holds a
/// few seconds of records at the local stack's pace).
const STAGED_AT_MOST_FOR: Duration = Duration::from_secs(60);

/// Records read from the consumer and not yet delivered, by partition, in offset order.
#[derive(Debug, Default)]
struct Stage {
    /// Each record with when it was staged.
    partitions: BTreeMap<(String, i32), VecDeque<(Instant, KafkaRecord)>>,
    len: usize,
    /// When the oldest record staged was read (the batching window runs from there).
    first_at: Option<Instant>,
}

impl Stage {
    fn push(&mut self, record: KafkaRecord) {
        let now = Instant::now();
        self.first_at.get_or_insert(now);
        self.len += 1;
        self.partitions
            .entry((record.topic.clone(), record.partition))
            .or_default()
            .push_back((now, record));
    }

    /// The most records staged for one partition.
    fn fullest(&self) -> usize {
        self.partitions.values().map(|q| q.len()).max().unwrap_or(0)
    }

    /// Up to `n` records of the partition whose first staged record has the oldest timestamp,
    /// or, when some have waited `STAGED_AT_MOST_FOR` by `now`, of the one that waited longest.
    fn take_oldest(&mut self, n: usize, now: Instant) -> Vec<KafkaRecord> {
        let heads = self
            .partitions
            .iter()
            .filter_map(|(key, q)| q.front().map(|(at, r)| (key, *at, r)));
        let overdue = heads
            .clone()
            .filter(|(_, at, _)| now.saturating_duration_since(*at) >= STAGED_AT_MOST_FOR)
            .min_by_key(|(_, at, _)| *at);
        let chosen = overdue
            .or_else(|| heads.min_by_key(|(_, _, r)| (r.timestamp, r.offset)))
            .map(|(key, _, _)| key.clone());
        let Some(key) = chosen else {
            return Vec::new();
        };
        let batch: Vec<KafkaRecord> = match self.partitions.get_mut(&key) {
            Some(q) => {
                let k = n.max(1).min(q.len());
                q.drain(..k).map(|(_, r)| r).collect()
            }
            None => Vec::new(),
        };
        self.partitions.retain(|_, q| !q.is_empty());
        self.len -= batch.len();
        self.first_at = (self.len > 0).then(Instant::now);
        batch
    }

    /// The first staged offset of each partition: the next one due for delivery.
    fn heads(&self) -> HashMap<(String, i32), i64> {
        self.partitions
            .iter()
            .filter_map(|(key, q)| q.front().map(|(_, r)| (key.clone(), r.offset)))
            .collect()
    }
}

/// The offset due next on each partition: the one after the last delivered, or, for a partition
/// not seen yet, the group's commit. A record past it means the broker skipped some: the partition
/// is read again once; a gap still there after that is taken as real (compaction, transaction
/// markers) and the record is delivered.
#[derive(Debug, Default)]
struct Positions {
    due: HashMap<(String, i32), i64>,
    rewound: HashSet<(String, i32)>,
}

impl Positions {
    fn step(
        &mut self,
        topic: &str,
        partition: i32,
        offset: i64,
        committed: impl FnOnce() -> Option<i64>,
    ) -> Step {
        let key = (topic.to_owned(), partition);
        let due = match self.due.get(&key) {
            Some(&due) => Some(due),
            None => committed(),
        };
        match due {
            Some(due) if offset < due => {
                self.due.insert(key, due);
                Step::Skip
            }
            Some(due) if offset > due && self.rewound.insert(key.clone()) => {
                self.due.insert(key, due);
                Step::Rewind { due }
            }
            _ => {
                self.rewound.remove(&key);
                self.due.insert(key, offset + 1);
                Step::Deliver
            }
        }
    }
}

fn to_record(m: &BorrowedMessage<'_>) -> KafkaRecord {
    let (timestamp_type, timestamp) = match m.timestamp() {
        rdkafka::Timestamp::CreateTime(t) => ("CREATE_TIME", t),
        rdkafka::Timestamp::LogAppendTime(t) => ("LOG_APPEND_TIME", t),
        rdkafka::Timestamp::NotAvailable => ("NO_TIMESTAMP_TYPE", -1),
    };
    let headers = m
        .headers()
        .map(|hs| {
            hs.iter()
                .map(|h| {
                    let bytes: Vec<serde_json::Value> = h
                        .value
                        .unwrap_or_default()
                        .iter()
                        .map(|&b| serde_json::Value::from(b as i8))
                        .collect();
                    serde_json::json!({ h.key: bytes })
                })
                .collect()
        })
        .unwrap_or_default();
    KafkaRecord {
        topic: m.topic().to_owned(),
        partition: m.partition(),
        offset: m.offset(),
        timestamp,
        timestamp_type: timestamp_type.to_owned(),
        key: m.key().map(encode_base64),
        value: m.payload().map(encode_base64),
        headers,
    }
}

/// Sends the records of a batch that failed every retry to the dead-letter queue, as an
/// event-source mapping's on-failure destination receives them, and counts them as processed.
pub async fn dead_letter_batch(
    dead_letters: &DeadLetterQueue,
    function: &str,
    event: &SourceEvent,
    reason: &str,
    progress: &Progress,
) -> Result<()> {
    let letters: Vec<DeadLetter> = event
        .records()
        .iter()
        .map(|r| {
            let mut buf = Vec::new();
            DeadLetter::new(function, r, r.payload(&mut buf).ok(), reason.to_owned())
        })
        .collect();
    dead_letters.send(&letters).await?;
    Progress::add(&progress.processed, letters.len() as u64);
    Progress::add(&progress.failed, letters.len() as u64);
    Ok(())
}

/// A self-managed Kafka event, as the event-source mapping would deliver these records.
pub fn kafka_event(brokers: &str, batch: &[KafkaRecord]) -> SourceEvent {
    SourceEvent::Kafka(KafkaEvent::self_managed(brokers, batch.iter().cloned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_invoke_failure_is_transient_when_the_function_or_the_server_in_front_says_so() {
        let failed = |status: u16, body: &str| {
            let status = reqwest::StatusCode::from_u16(status).expect("a status");
            InvokeError::failed("aggregate-usage", status, body)
        };
        let lambda = |error_type: &str| {
            failed(
                200,
                &format!(r#"{{"errorType": "{error_type}", "errorMessage": "m"}}"#),
            )
            .is_transient()
        };
        assert!(lambda("TransientFailure"));
        assert!(!lambda("DeploymentError"));
        assert!(!lambda("RecordRejected"));
        assert!(
            !lambda("Runtime.ExitError"),
            "a crash is retried a bounded number of times"
        );
        assert!(failed(502, "Bad Gateway").is_transient());
        assert!(failed(429, "").is_transient());
        assert!(!failed(400, "no such function").is_transient());
        let long = failed(500, &"x".repeat(100_000)).to_string();
        assert!(long.len() < 1_200, "{}", long.len());
        assert!(long.contains("100000 bytes in all"), "{long}");
    }

    #[test]
    fn the_stage_hands_over_the_partition_with_the_oldest_record_a_partition_at_a_time() {
        let record = |partition: i32, offset: i64, timestamp: i64| KafkaRecord {
            topic: "t".to_owned(),
            partition,
            offset,
            timestamp,
            timestamp_type: "CREATE_TIME".to_owned(),
            key: None,
            value: None,
            headers: Vec::new(),
        };
        let taken = |records: Vec<KafkaRecord>| -> Vec<(i32, i64)> {
            records.iter().map(|r| (r.partition, r.offset)).collect()
        };
        let mut stage = Stage::default();
        let now = Instant::now();
        assert!(stage.take_oldest(2, now).is_empty());
        // Partition 0 read far ahead (a broker's large slice), partition 1 behind it in time.
        for offset in 0..4 {
            stage.push(record(0, offset, 100 + offset));
        }
        stage.push(record(1, 10, 50));
        stage.push(record(1, 11, 200));
        assert_eq!((stage.len, stage.fullest()), (6, 4));
        assert_eq!(
            stage.heads(),
            HashMap::from([(("t".to_owned(), 0), 0), (("t".to_owned(), 1), 10)])
        );
        // Partition 1's head is the oldest: its records go, at most two, however new the second.
        assert_eq!(taken(stage.take_oldest(2, now)), [(1, 10), (1, 11)]);
        assert_eq!(taken(stage.take_oldest(3, now)), [(0, 0), (0, 1), (0, 2)]);
        assert_eq!(stage.heads(), HashMap::from([(("t".to_owned(), 0), 3)]));
        assert_eq!(taken(stage.take_oldest(3, now)), [(0, 3)]);
        assert_eq!(stage.len, 0);
        assert!(stage.first_at.is_none() && stage.heads().is_empty());

        // A record stamped far ahead (a producer's clock, or a timestamp it set) waits behind
        // the others only until it has been staged for `STAGED_AT_MOST_FOR`.
        stage.push(record(2, 0, i64::MAX));
        stage.push(record(3, 0, 1));
        assert_eq!(taken(stage.take_oldest(1, now)), [(3, 0)]);
        stage.push(record(3, 1, 2));
        assert_eq!(taken(stage.take_oldest(1, Instant::now())), [(3, 1)]);
        stage.push(record(3, 2, 3));
        let later = Instant::now() + STAGED_AT_MOST_FOR;
        assert_eq!(taken(stage.take_oldest(1, later)), [(2, 0)]);
        assert_eq!(taken(stage.take_oldest(1, later)), [(3, 2)]);
    }

    #[test]
    fn records_in_order_are_delivered_from_the_commit_on() {
        let mut p = Positions::default();
        assert_eq!(p.step("t", 0, 7, || Some(7)), Step::Deliver);
        assert_eq!(p.step("t", 0, 8, || unreachable!()), Step::Deliver);
        // Another partition, no commit yet: whatever comes first.
        assert_eq!(p.step("t", 1, 3, || None), Step::Deliver);
    }

    #[test]
    fn a_skipped_stretch_is_read_again_and_the_rest_skipped() {
        let mut p = Positions::default();
        // Committed 7, but the broker serves from 10 (the next batch): rewind.
        assert_eq!(p.step("t", 0, 10, || Some(7)), Step::Rewind { due: 7 });
        // From the start again: before 7 is skipped, 7 on delivered.
        for offset in 0..7 {
            assert_eq!(p.step("t", 0, offset, || unreachable!()), Step::Skip);
        }
        for offset in 7..12 {
            assert_eq!(p.step("t", 0, offset, || unreachable!()), Step::Deliver);
        }
    }

    #[test]
    fn a_gap_still_there_after_one_rewind_is_real() {
        let mut p = Positions::default();
        assert_eq!(p.step("t", 0, 5, || Some(2)), Step::Rewind { due: 2 });
        assert_eq!(p.step("t", 0, 0, || unreachable!()), Step::Skip);
        assert_eq!(p.step("t", 0, 5, || unreachable!()), Step::Deliver);
        // A later gap is questioned again.
        assert_eq!(
            p.step("t", 0, 9, || unreachable!()),
            Step::Rewind { due: 6 }
        );
    }
}
