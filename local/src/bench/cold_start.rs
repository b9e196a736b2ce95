//! Cold starts: each function's release binary started as Lambda starts it, beside a small
//! implementation of the Lambda Runtime API on loopback (the endpoints a function calls:
//! `invocation/next`, `invocation/{id}/response`, `invocation/{id}/error`, `init/error`), with
//! the local stack behind it. Measured: from the process's start to its first request for work
//! (the function's own initialisation: configuration, SDK clients, producers), and to the answer
//! of its first invocation (initialisation plus a first, small piece of real work).

use crate::provision::{Names, provision_ticks};
use crate::stack::{LocalStack, StackOptions};
use anyhow::{Context, Result, bail};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

/// The local environment the functions run with (`local/lambda.env`).
const LAMBDA_ENV: &str = include_str!("../../lambda.env");

/// The functions, by binary name, and the event each is first invoked with.
pub const FUNCTIONS: [&str; 6] = [
    "process-ticks",
    "aggregate-usage",
    "stream-cdr-files",
    "fetch-quotes",
    "compute-indicators",
    "api",
];

/// One function's cold start.
#[derive(Debug, Clone)]
pub struct ColdStart {
    pub function: &'static str,
    pub binary_bytes: u64,
    /// Process start to its first `invocation/next`.
    pub init: Duration,
    /// Process start to the answer of its first invocation.
    pub first_answer: Duration,
    /// `response`, or the error the function reported.
    pub outcome: String,
}

#[derive(Debug)]
enum Seen {
    Next(Instant),
    Answer(Instant, String),
}

struct Runtime {
    event: Mutex<Option<serde_json::Value>>,
    seen: mpsc::UnboundedSender<Seen>,
}

async fn next(State(rt): State<Arc<Runtime>>) -> Response {
    let _ = rt.seen.send(Seen::Next(Instant::now()));
    let event = rt.event.lock().ok().and_then(|mut e| e.take());
    let Some(event) = event else {
        // One invocation per process: the second request for work waits until it is stopped.
        std::future::pending::<()>().await;
        return StatusCode::GONE.into_response();
    };
    let deadline = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
        + 60_000;
    let mut headers = HeaderMap::new();
    for (name, value) in [
        ("lambda-runtime-aws-request-id", "cold-start-1".to_owned()),
        ("lambda-runtime-deadline-ms", deadline.to_string()),
        (
            "lambda-runtime-invoked-function-arn",
            "arn:aws:lambda:us-east-1:123456789012:function:cold-start".to_owned(),
        ),
        (
            "lambda-runtime-trace-id",
            "Root=1-00000000-000000000000000000000000".to_owned(),
        ),
    ] {
        if let Ok(v) = value.parse::<axum::http::HeaderValue>() {
            headers.insert(name, v);
        }
    }
    (headers, axum::Json(event)).into_response()
}

async fn answered(
    State(rt): State<Arc<Runtime>>,
    Path((_id, kind)): Path<(String, String)>,
    body: String,
) -> StatusCode {
    let outcome = if kind == "response" {
        "response".to_owned()
    } else {
        format!("error: {}", body.chars().take(200).collect::<String>())
    };
    let _ = rt.seen.send(Seen::Answer(Instant::now(), outcome));
    StatusCode::ACCEPTED
}

async fn init_error(State(rt): State<Arc<Runtime>>, body: String) -> StatusCode {
    let outcome = format!("init error: {}", body.chars().take(200).collect::<String>());
    let _ = rt.seen.send(Seen::Answer(Instant::now(), outcome));
    StatusCode::ACCEPTED
}

/// `KEY=VALUE` lines of `local/lambda.env`, comments left out.
fn lambda_env() -> Vec<(String, String)> {
    LAMBDA_ENV
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect()
}

/// The first event each function gets: small, real work against the local stack.
fn first_event(function: &str) -> serde_json::Value {
    let kafka = |topic: &str, value: &str| {
        serde_json::json!({
            "eventSource": "SelfManagedKafka",
            "bootstrapServers": "127.0.0.1:19092",
            "records": { format!("{topic}-0"): [{
                "topic": topic, "partition": 0, "offset": 0, "timestamp": 0,
                "timestampType": "CREATE_TIME",
                "value": wtc_core::event::encode_base64(value.as_bytes()),
                "headers": []
            }]}
        })
    };
    match function {
        "process-ticks" => kafka(
            "tick-data",
            r#"{"pair": "MRVZAR", "timestamp": "2024-01-01 00:00:00.250000", "bid": 1.2, "ask": 1.3, "spread": 0.1}"#,
        ),
        "aggregate-usage" => kafka(
            "cdr-data",
            "data,upload/cdr_data_20240101_000320.csv,etag-1,2,0712345678901,17,2048,4096,video,10.0.0.1,http://example.com/,2024-01-01 00:01:02.000003",
        ),
        "stream-cdr-files" => serde_json::json!({"Records": [{
            "eventVersion": "2.1", "eventSource": "aws:s3", "awsRegion": "us-east-1",
            "eventTime": "2024-01-01T00:05:00.000Z", "eventName": "ObjectCreated:Put",
            "s3": {"s3SchemaVersion": "1.0", "configurationId": "cold-start",
                   "bucket": {"name": crate::cdr::BUCKET, "arn": format!("arn:aws:s3:::{}", crate::cdr::BUCKET)},
                   "object": {"key": COLD_START_FILE, "size": 0}}
        }]}),
        "fetch-quotes" => serde_json::json!({"time": "2024-01-01T03:46:00Z"}),
        "compute-indicators" => serde_json::json!({"symbol": "MRVZAR", "interval": "M1"}),
        _ => serde_json::json!({
            "version": "2.0", "routeKey": "$default", "rawPath": "/health", "rawQueryString": "",
            "headers": {"host": "cold-start.local"},
            "requestContext": {
                "accountId": "123456789012", "apiId": "cold", "domainName": "cold-start.local",
                "domainPrefix": "cold", "requestId": "cold-start-1", "routeKey": "$default",
                "stage": "$default", "time": "01/Jan/2024:00:00:00 +0000", "timeEpoch": 1704067200000u64,
                "http": {"method": "GET", "path": "/health", "protocol": "HTTP/1.1",
                         "sourceIp": "127.0.0.1", "userAgent": "cold-start"}
            },
            "isBase64Encoded": false
        }),
    }
}

/// The CDR file stream-cdr-files is first invoked on.
const COLD_START_FILE: &str = "upload/cdr_data_20240101_000320.csv";

/// Where `cargo build --release` put the binaries.
pub fn release_dir() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../target")));
    target.join("release")
}

/// Starts the stack, then each function `runs` times, and returns the median run of each.
pub async fn run(runs: usize) -> Result<Vec<ColdStart>> {
    let dir = release_dir();
    for f in FUNCTIONS {
        if !dir.join(f).exists() {
            bail!(
                "{} is missing: build the functions first (`cargo build --release --bins -p {f}` \
                 and the others; `wtc-bench cold-start` does it when run through cargo)",
                dir.join(f).display()
            );
        }
    }
    let run_dir = std::env::temp_dir().join(format!("wtc-bench-cold-{}", std::process::id()));
    let stack = LocalStack::start(StackOptions::isolated(run_dir)).await?;
    let result = measure(&stack, &dir, runs.max(1)).await;
    stack.stop().await;
    result
}

async fn measure(stack: &LocalStack, dir: &std::path::Path, runs: usize) -> Result<Vec<ColdStart>> {
    let names = Names::default();
    let sdk = stack.sdk_config().await;
    let provisioned = provision_ticks(&stack.kafka_brokers, &sdk, &names).await?;
    let s3 = crate::cdr::s3_client(&sdk);
    crate::cdr::provision_cdr(&stack.kafka_brokers, &s3).await?;
    let file = format!(
        "{}\n0712345678901,17,2048,4096,video,10.0.0.1,http://example.com/,2024-01-01 00:01:02.000003\n",
        wtc_core::cdr::CdrKind::Data.header()
    );
    s3.put_object()
        .bucket(crate::cdr::BUCKET)
        .key(COLD_START_FILE)
        .body(file.into_bytes().into())
        .send()
        .await
        .map_err(|e| anyhow::anyhow!(aws_sdk_s3::error::DisplayErrorContext(&e).to_string()))
        .context("uploading the cold start's CDR file")?;
    let mut env = lambda_env();
    let overrides = [
        ("AWS_ENDPOINT_URL", stack.aws_endpoint.clone()),
        ("AWS_ENDPOINT_URL_DYNAMODB", stack.dynamodb_endpoint.clone()),
        ("KAFKA_BROKERS", stack.kafka_brokers.clone()),
        (
            "DEAD_LETTER_QUEUE_URL",
            provisioned.dead_letter_queue_url.clone(),
        ),
        ("DEAD_LETTER_BUCKET", names.dead_letter_bucket.clone()),
        ("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "256".to_owned()),
        ("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST".to_owned()),
        (
            "AWS_LAMBDA_LOG_GROUP_NAME",
            "/aws/lambda/cold-start".to_owned(),
        ),
        ("AWS_LAMBDA_LOG_STREAM_NAME", "cold-start".to_owned()),
        ("RUST_LOG", "warn".to_owned()),
    ];
    env.retain(|(k, _)| !overrides.iter().any(|(o, _)| o == k));
    env.extend(overrides.iter().map(|(k, v)| ((*k).to_owned(), v.clone())));

    let mut out = Vec::new();
    for function in FUNCTIONS {
        let binary = dir.join(function);
        let binary_bytes = std::fs::metadata(&binary).map(|m| m.len()).unwrap_or(0);
        let mut samples = Vec::new();
        for _ in 0..runs {
            samples.push(once(function, &binary, &env, &stack.run_dir).await?);
        }
        samples.sort_by_key(|s| s.1);
        let (init, first_answer, outcome) = samples[samples.len() / 2].clone();
        out.push(ColdStart {
            function,
            binary_bytes,
            init,
            first_answer,
            outcome,
        });
    }
    Ok(out)
}

/// One start of `function`: (to its first request for work, to its first answer, outcome).
async fn once(
    function: &'static str,
    binary: &std::path::Path,
    env: &[(String, String)],
    run_dir: &std::path::Path,
) -> Result<(Duration, Duration, String)> {
    let (tx, mut rx) = mpsc::unbounded_channel();
    let runtime = Arc::new(Runtime {
        event: Mutex::new(Some(first_event(function))),
        seen: tx,
    });
    let app = axum::Router::new()
        .route(
            "/2018-06-01/runtime/invocation/next",
            axum::routing::get(next),
        )
        .route(
            "/2018-06-01/runtime/invocation/{id}/{kind}",
            axum::routing::post(answered),
        )
        .route(
            "/2018-06-01/runtime/init/error",
            axum::routing::post(init_error),
        )
        .with_state(runtime);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let api = listener.local_addr()?.to_string();
    let server = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    let log = std::fs::File::create(run_dir.join(format!("cold-{function}.log")))?;
    let started = Instant::now();
    let mut child = tokio::process::Command::new(binary)
        .env_clear()
        .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("AWS_LAMBDA_RUNTIME_API", &api)
        .env("AWS_LAMBDA_FUNCTION_NAME", function)
        .stdout(log.try_clone()?)
        .stderr(log)
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("starting {}", binary.display()))?;
    let mut init = None;
    let result = tokio::time::timeout(Duration::from_secs(30), async {
        while let Some(seen) = rx.recv().await {
            match seen {
                Seen::Next(at) => {
                    init.get_or_insert(at - started);
                }
                Seen::Answer(at, outcome) => return Some((at - started, outcome)),
            }
        }
        None
    })
    .await;
    let _ = child.start_kill();
    let _ = child.wait().await;
    server.abort();
    match result {
        Ok(Some((answer, outcome))) => Ok((init.unwrap_or(answer), answer, outcome)),
        _ => bail!(
            "{function} did not answer its first invocation within 30 s (log: {})",
            run_dir.join(format!("cold-{function}.log")).display()
        ),
    }
}

/// The figures as a table.
pub fn table(starts: &[ColdStart], runs: usize) -> String {
    let ms = |d: Duration| format!("{:.1} ms", d.as_secs_f64() * 1e3);
    let mut out = format!(
        "Cold starts (release build for this machine, median of {runs}), against the local stack:\n\n\
         | function | binary | start to first request for work | start to first answer | first answer |\n\
         | --- | --- | --- | --- | --- |\n"
    );
    for s in starts {
        out.push_str(&format!(
            "| {} | {:.1} MB | {} | {} | {} |\n",
            s.function,
            s.binary_bytes as f64 / 1e6,
            ms(s.init),
            ms(s.first_answer),
            s.outcome
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_local_environment_is_read_without_its_comments() {
        let env = lambda_env();
        assert!(env.iter().any(|(k, _)| k == "TICKS_TABLE"));
        assert!(env.iter().all(|(k, _)| !k.starts_with('#')));
    }

    #[test]
    fn every_function_has_a_first_event_that_its_decoder_takes() {
        for f in ["process-ticks", "aggregate-usage"] {
            let event: wtc_core::SourceEvent = serde_json::from_value(first_event(f)).unwrap();
            assert_eq!(event.records().len(), 1, "{f}");
        }
        let _: stream_cdr_files::FileEvent =
            serde_json::from_value(first_event("stream-cdr-files")).unwrap();
    }
}
