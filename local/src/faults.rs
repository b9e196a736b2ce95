//! Proxies that put faults between the functions and the local stack, for the fault-injection
//! tests: one in front of the AWS emulator (HTTP) and one in front of the broker (TCP).
//!
//! The HTTP proxy adds latency to every request, answers some with the service's throttling error
//! or a 500 without passing them on, passes some on and then cuts the connection before the answer
//! (the request took effect, the caller does not know), and can take the emulator away for a while
//! (every connection cut at once) and bring it back. The TCP proxy cuts connections to the broker
//! after they have lived a while, and can take the broker away. Every fault is counted.

use crate::meter::{self, Call, Meter};
use anyhow::{Context, Result};
use axum::body::Body;
use axum::extract::{Request, State};
use axum::response::Response;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokio::net::{TcpListener, TcpStream};

/// What the HTTP proxy does to requests: each `*_every` is a period (every n-th request), 0 for
/// never.
#[derive(Debug, Clone, Copy, Default)]
pub struct HttpFaults {
    pub latency: Duration,
    pub throttle_every: u64,
    pub error_every: u64,
    /// Passed on, then the connection is cut before the answer.
    pub reset_every: u64,
    /// Ask DynamoDB for the capacity each read and write consumed, and tally it in `meter`.
    pub meter: bool,
}

/// Faults injected so far.
#[derive(Debug, Default)]
pub struct FaultCounts {
    pub requests: AtomicU64,
    pub throttled: AtomicU64,
    pub errors: AtomicU64,
    pub resets: AtomicU64,
    /// Requests (or connections, for the broker) refused while the target was away.
    pub refused: AtomicU64,
}

impl FaultCounts {
    /// `requests 1,234, throttled 61, 5xx 40, reset 30, refused while away 12`.
    pub fn summary(&self) -> String {
        let n = |c: &AtomicU64| c.load(Ordering::Relaxed);
        format!(
            "requests {}, throttled {}, 5xx {}, reset {}, refused while away {}",
            n(&self.requests),
            n(&self.throttled),
            n(&self.errors),
            n(&self.resets),
            n(&self.refused)
        )
    }
}

/// A running proxy; stops when dropped.
pub struct FaultProxy {
    /// `http://127.0.0.1:port` for the HTTP proxy, `127.0.0.1:port` for the TCP one.
    pub address: String,
    pub counts: Arc<FaultCounts>,
    /// DynamoDB's capacity and request times (with `HttpFaults::meter`).
    pub meter: Arc<Meter>,
    away: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl FaultProxy {
    /// Takes the target away: every request or connection is cut until `bring_back`.
    pub fn take_away(&self) {
        self.away.store(true, Ordering::Relaxed);
    }

    pub fn bring_back(&self) {
        self.away.store(false, Ordering::Relaxed);
    }

    /// An HTTP proxy on a free loopback port to `target` (e.g. `http://127.0.0.1:4566`), and to
    /// `dynamodb` for DynamoDB's requests (the same endpoint, or an emulator of its own).
    pub async fn http(target: &str, dynamodb: &str, faults: HttpFaults) -> Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .context("binding the fault proxy")?;
        let address = format!("http://{}", listener.local_addr()?);
        let counts = Arc::new(FaultCounts::default());
        let away = Arc::new(AtomicBool::new(false));
        let meter = Arc::new(Meter::default());
        let state = Arc::new(HttpProxy {
            meter: meter.clone(),
            target: target.trim_end_matches('/').to_owned(),
            dynamodb: dynamodb.trim_end_matches('/').to_owned(),
            faults,
            counts: counts.clone(),
            away: away.clone(),
            client: reqwest::Client::new(),
        });
        let app = axum::Router::new().fallback(forward).with_state(state);
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(Self {
            address,
            counts,
            meter,
            away,
            task,
        })
    }

    /// A TCP proxy to `target` (`host:port`) listening on `listen` (a port the target
    /// advertises, so that clients come back through the proxy); a connection is cut after it
    /// has lived `lifetime`.
    pub async fn tcp(target: &str, listen: u16, lifetime: Duration) -> Result<Self> {
        let listener = TcpListener::bind(("127.0.0.1", listen))
            .await
            .with_context(|| format!("binding the broker's fault proxy on {listen}"))?;
        let address = listener.local_addr()?.to_string();
        let counts = Arc::new(FaultCounts::default());
        let away = Arc::new(AtomicBool::new(false));
        let (target, c, a) = (target.to_owned(), counts.clone(), away.clone());
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                c.requests.fetch_add(1, Ordering::Relaxed);
                if a.load(Ordering::Relaxed) {
                    c.refused.fetch_add(1, Ordering::Relaxed);
                    drop(client);
                    continue;
                }
                let (target, c, a) = (target.clone(), c.clone(), a.clone());
                tokio::spawn(async move { pipe(client, &target, lifetime, &c, &a).await });
            }
        });
        Ok(Self {
            address,
            counts,
            meter: Arc::default(),
            away,
            task,
        })
    }
}

/// Copies bytes both ways until either side closes, the connection's lifetime ends or the
/// target is taken away.
async fn pipe(
    mut client: TcpStream,
    target: &str,
    lifetime: Duration,
    counts: &FaultCounts,
    away: &AtomicBool,
) {
    let Ok(mut upstream) = TcpStream::connect(target).await else {
        return;
    };
    let watch_away = async {
        while !away.load(Ordering::Relaxed) {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    tokio::select! {
        _ = tokio::io::copy_bidirectional(&mut client, &mut upstream) => {}
        _ = tokio::time::sleep(lifetime) => {
            counts.resets.fetch_add(1, Ordering::Relaxed);
        }
        _ = watch_away => {
            counts.refused.fetch_add(1, Ordering::Relaxed);
        }
    }
}

struct HttpProxy {
    target: String,
    dynamodb: String,
    faults: HttpFaults,
    counts: Arc<FaultCounts>,
    away: Arc<AtomicBool>,
    client: reqwest::Client,
    meter: Arc<Meter>,
}

/// What to do with the n-th request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fault {
    None,
    Throttle,
    Error,
    Reset,
}

fn fault_for(n: u64, faults: &HttpFaults) -> Fault {
    let every = |period: u64, offset: u64| period > 0 && (n + offset).is_multiple_of(period);
    // Offsets keep the kinds from landing on the same requests.
    if every(faults.throttle_every, 0) {
        Fault::Throttle
    } else if every(faults.error_every, 1) {
        Fault::Error
    } else if every(faults.reset_every, 2) {
        Fault::Reset
    } else {
        Fault::None
    }
}

async fn forward(State(proxy): State<Arc<HttpProxy>>, request: Request) -> Response {
    let start = Instant::now();
    let n = proxy.counts.requests.fetch_add(1, Ordering::Relaxed) + 1;
    tokio::time::sleep(proxy.faults.latency).await;
    if proxy.away.load(Ordering::Relaxed) {
        proxy.counts.refused.fetch_add(1, Ordering::Relaxed);
        return cut();
    }
    // JSON-protocol services (DynamoDB, Kinesis, SQS) name their operation in X-Amz-Target;
    // S3 answers in XML.
    let json = request.headers().contains_key("x-amz-target");
    let fault = fault_for(n, &proxy.faults);
    match fault {
        Fault::Throttle => {
            proxy.counts.throttled.fetch_add(1, Ordering::Relaxed);
            return service_error(json, 400, "ThrottlingException", "SlowDown", 503);
        }
        Fault::Error => {
            proxy.counts.errors.fetch_add(1, Ordering::Relaxed);
            return service_error(json, 500, "InternalServerError", "InternalError", 500);
        }
        Fault::Reset | Fault::None => {}
    }
    let answer = pass_on(&proxy, request, start).await;
    if fault == Fault::Reset {
        proxy.counts.resets.fetch_add(1, Ordering::Relaxed);
        return cut();
    }
    answer.unwrap_or_else(|_| cut())
}

/// Sends the request to the emulator and returns its answer (metered, when asked, from `start`).
async fn pass_on(proxy: &HttpProxy, request: Request, start: Instant) -> Result<Response> {
    let (parts, body) = request.into_parts();
    let path = parts
        .uri
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .to_owned();
    let body = axum::body::to_bytes(body, 64 * 1024 * 1024).await?;
    // DynamoDB's operations are `DynamoDB_20120810.<Operation>`.
    let target_header = parts.headers.get("x-amz-target").map(|t| t.as_bytes());
    let target = match target_header {
        Some(op) if op.starts_with(b"DynamoDB_") => &proxy.dynamodb,
        _ => &proxy.target,
    };
    let metered = target_header
        .and_then(meter::operation)
        .filter(|_| proxy.faults.meter)
        .map(str::to_owned);
    let body = match metered
        .as_deref()
        .and_then(|op| meter::ask_for_capacity(op, &body))
    {
        Some(changed) => axum::body::Bytes::from(changed),
        None => body,
    };
    let mut outgoing = proxy
        .client
        .request(parts.method, format!("{target}{path}"))
        .body(body.clone());
    for (name, value) in &parts.headers {
        // The length is the body's (which metering may have changed).
        if name != axum::http::header::HOST && name != axum::http::header::CONTENT_LENGTH {
            outgoing = outgoing.header(name, value);
        }
    }
    let answer = outgoing.send().await?;
    let mut response = Response::builder().status(answer.status());
    for (name, value) in answer.headers() {
        if name != axum::http::header::TRANSFER_ENCODING
            && name != axum::http::header::CONTENT_LENGTH
        {
            response = response.header(name, value);
        }
    }
    let status = answer.status().as_u16();
    let bytes = answer.bytes().await?;
    if let Some(op) = &metered {
        let call = Call {
            start,
            end: Instant::now(),
        };
        proxy.meter.record(op, &body, status, &bytes, call);
    }
    Ok(response.body(Body::from(bytes))?)
}

/// A service's error answer, as JSON-protocol services and S3 write them.
fn service_error(
    json: bool,
    json_status: u16,
    json_code: &str,
    xml_code: &str,
    xml_status: u16,
) -> Response {
    let (status, content_type, body) = if json {
        (
            json_status,
            "application/x-amz-json-1.0",
            format!(r#"{{"__type":"{json_code}","message":"injected by the fault proxy"}}"#),
        )
    } else {
        (
            xml_status,
            "application/xml",
            format!(
                "<Error><Code>{xml_code}</Code><Message>injected by the fault proxy</Message></Error>"
            ),
        )
    };
    let mut response = Response::builder()
        .status(status)
        .header("content-type", content_type);
    if json {
        response = response.header("x-amzn-query-error", format!("{json_code};Sender"));
    }
    response
        .body(Body::from(body))
        .unwrap_or_else(|_| Response::new(Body::empty()))
}

/// A response whose body fails at once: the server cuts the connection mid-answer.
fn cut() -> Response {
    let failing = futures::stream::once(async {
        Err::<axum::body::Bytes, std::io::Error>(std::io::Error::new(
            std::io::ErrorKind::ConnectionReset,
            "cut by the fault proxy",
        ))
    });
    Response::builder()
        .status(200)
        .header("content-length", "1048576")
        .body(Body::from_stream(failing))
        .unwrap_or_else(|_| Response::new(Body::empty()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn faults_land_on_their_periods_without_overlapping() {
        let faults = HttpFaults {
            throttle_every: 10,
            error_every: 10,
            reset_every: 10,
            ..HttpFaults::default()
        };
        let kinds: Vec<Fault> = (1..=30).map(|n| fault_for(n, &faults)).collect();
        let count = |k: Fault| kinds.iter().filter(|&&f| f == k).count();
        assert_eq!(
            (
                count(Fault::Throttle),
                count(Fault::Error),
                count(Fault::Reset)
            ),
            (3, 3, 3)
        );
        assert_eq!(fault_for(5, &HttpFaults::default()), Fault::None);
    }
}
