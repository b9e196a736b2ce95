//! The CDR side of a local run: generated CDR files put in the local bucket and streamed by
//! stream-cdr-files in this process (as the bucket's notification invokes it in AWS),
//! aggregate-usage behind one poller per CDR topic, and the usage API on the curriculum's port.

use crate::progress::{Progress, say, thousands};
use anyhow::{Context, Result};
use aws_config::SdkConfig;
use std::sync::Arc;
use stream_cdr_files::StreamCdrFiles;
use wtc_core::cdr_generator::{CdrGenerator, REFERENCE_MSISDNS};

/// The local bucket the CDR files land in.
pub const BUCKET: &str = "wtc-cdr";
/// Partitions of each CDR topic.
pub const CDR_PARTITIONS: i32 = 3;
/// The local API's credentials when `API_USERNAME` / `API_PASSWORD` are not set (local only).
pub const LOCAL_API_USER: (&str, &str) = ("wtc", "wtc-local");

/// An S3 client for the emulator (path-style addressing).
pub fn s3_client(sdk: &SdkConfig) -> aws_sdk_s3::Client {
    wtc_aws::s3_client(sdk)
}

/// Creates the CDR topics and the bucket unless they exist.
pub async fn provision_cdr(brokers: &str, s3: &aws_sdk_s3::Client) -> Result<()> {
    for topic in ["cdr-data", "cdr-voice"] {
        crate::provision::create_topic(brokers, topic, CDR_PARTITIONS).await?;
    }
    crate::provision::ensure_bucket(s3, BUCKET).await
}

/// Generates `pairs` pairs of files (seeded), uploads each under `upload/` and streams it, as an
/// upload triggers stream-cdr-files. Returns an MSISDN of the first file and its first row's time,
/// for a sample request.
pub async fn drop_files(
    function: &StreamCdrFiles,
    pairs: u64,
    seed: u64,
    progress: &Progress,
) -> Result<Option<(String, String)>> {
    let mut generator = CdrGenerator::new(seed, REFERENCE_MSISDNS);
    let mut sample = None;
    for _ in 0..pairs {
        for (name, text) in generator.next_pair() {
            if sample.is_none()
                && let Some(row) = text.lines().nth(1)
            {
                let fields: Vec<&str> = row.split(',').collect();
                if let (Some(msisdn), Some(at)) = (fields.first(), fields.last()) {
                    sample = Some(((*msisdn).to_owned(), (*at).to_owned()));
                }
            }
            let key = format!("upload/{name}");
            function
                .s3
                .put_object()
                .bucket(BUCKET)
                .key(&key)
                .body(text.into_bytes().into())
                .send()
                .await
                .map_err(|e| {
                    anyhow::anyhow!(aws_sdk_s3::error::DisplayErrorContext(&e).to_string())
                })
                .with_context(|| format!("uploading {key}"))?;
            stream_and_count(function, &key, progress).await?;
        }
    }
    Ok(sample)
}

/// Writes `pairs` pairs of generated files (seeded) into `dir`; returns how many files.
pub fn write_files(dir: &std::path::Path, pairs: u64, seed: u64) -> Result<u64> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut generator = CdrGenerator::new(seed, REFERENCE_MSISDNS);
    let mut written = 0;
    for _ in 0..pairs {
        for (name, text) in generator.next_pair() {
            let path = dir.join(&name);
            std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
            written += 1;
        }
    }
    Ok(written)
}

/// Streams one object of the bucket with stream-cdr-files, as the bucket's notification invokes
/// it, and adds what it did to the run's counters.
pub async fn stream_and_count(
    function: &StreamCdrFiles,
    key: &str,
    progress: &Progress,
) -> Result<stream_cdr_files::FileReport> {
    let report = function
        .stream_file(BUCKET, key)
        .await
        .with_context(|| format!("streaming s3://{BUCKET}/{key}"))?;
    Progress::add(&progress.produced, report.published);
    Progress::add(&progress.cdr_files, 1);
    Progress::add(&progress.cdr_rows, report.rows);
    Progress::add(&progress.cdr_records, report.published);
    Progress::add(
        &progress.cdr_rejected,
        report.rejected + u64::from(report.file_rejected.is_some()),
    );
    Ok(report)
}

/// Streams every upload announced on `uploaded`, in order, and says what each came to. A file
/// that cannot be streamed is reported and the next one is taken (in AWS the notification's
/// invocation would be retried; here the file can be uploaded again, which changes no total).
pub async fn stream_uploads(
    function: Arc<StreamCdrFiles>,
    mut uploaded: tokio::sync::mpsc::UnboundedReceiver<String>,
    progress: Arc<Progress>,
) {
    while let Some(key) = uploaded.recv().await {
        match stream_and_count(&function, &key, &progress).await {
            Ok(report) => match &report.file_rejected {
                Some(reason) => say(&format!(
                    "SFTP upload {key}: rejected ({reason}); see the dead-letter queue"
                )),
                None => say(&format!(
                    "SFTP upload {key}: {} rows, {} records published, {} rows rejected",
                    thousands(report.rows),
                    thousands(report.published),
                    thousands(report.rejected)
                )),
            },
            Err(e) => say(&format!("SFTP upload {key}: streaming failed: {e:#}")),
        }
    }
}

/// Serves the usage API on `127.0.0.1:port` until the task is dropped.
pub async fn serve_api(
    state: Arc<api::ApiState>,
    port: u16,
) -> Result<tokio::task::JoinHandle<()>> {
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .with_context(|| {
            format!("binding the API to 127.0.0.1:{port} (is it in use? --api-port)")
        })?;
    Ok(tokio::spawn(async move {
        let _ = axum::serve(listener, api::router(state)).await;
    }))
}

/// Waits until the API at `127.0.0.1:port` answers `/health`.
pub async fn wait_ready(port: u16, within: std::time::Duration) -> Result<()> {
    let client = reqwest::Client::new();
    let url = format!("http://127.0.0.1:{port}/health");
    let started = std::time::Instant::now();
    loop {
        match client.get(&url).send().await {
            Ok(r) if r.status().is_success() => return Ok(()),
            Ok(r) if started.elapsed() >= within => {
                anyhow::bail!("{url} answered {}", r.status())
            }
            Err(e) if started.elapsed() >= within => {
                return Err(e).with_context(|| format!("{url} did not answer"));
            }
            _ => tokio::time::sleep(std::time::Duration::from_millis(50)).await,
        }
    }
}
