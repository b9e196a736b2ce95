//! The HTTP API: an axum `Router`, served by `lambda_http` behind API Gateway and by `axum::serve`
//! locally (port 18089, the curriculum's).
//!
//! - `GET /health`: `{"status": "ok"}`, no credentials needed.
//! - `GET /data_usage?msisdn=…&start_time=YYYYMMDDHHMMSS&end_time=YYYYMMDDHHMMSS`: hourly usage, in
//!   exactly the shape the curriculum's clients read (fields and their order). Opt-in extras:
//!   `granularity=day` (daily buckets), `include=split` (`up_bytes`, `down_bytes` of data),
//!   `include=cost` (`cost_zar`, and `cost_wak` from the hour's average forex rates), or both
//!   (`include=split,cost`).
//!
//! Every request but `/health` needs HTTP Basic credentials, compared in constant time; a missing
//! or wrong one gets 401 with `WWW-Authenticate`. A missing or malformed parameter, `start_time`
//! after `end_time`, or a range longer than `MAX_RANGE_DAYS` gets 400 with a JSON error that names
//! the parameter. A range without usage is 200 with an empty `usage` list.

use axum::Router;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Serialize;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use wtc_aws::{TickStore, UsageStore};
use wtc_core::cdr::{Msisdn, Usage, UsageTotals, UsageType};
use wtc_core::time::Timestamp;

/// The longest range one request may ask for.
pub const MAX_RANGE_DAYS: i64 = 93;
/// The port the curriculum's clients call locally.
pub const LOCAL_PORT: u16 = 18089;

const HOUR: i64 = 3_600_000_000;
const DAY: i64 = 24 * HOUR;

/// The credentials requests must carry.
#[derive(Clone)]
pub struct Credentials {
    pub username: String,
    pub password: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Credentials {{ username: {:?}, password: <hidden> }}",
            self.username
        )
    }
}

impl Credentials {
    /// Whether an `Authorization` header carries these credentials. The comparison takes the
    /// same time wherever the first difference is.
    pub fn accepts(&self, header: Option<&HeaderValue>) -> bool {
        let Some(encoded) = header
            .and_then(|h| h.to_str().ok())
            .and_then(|h| h.strip_prefix("Basic "))
        else {
            return false;
        };
        let Ok(given) = base64_simd::STANDARD.decode_to_vec(encoded.trim().as_bytes()) else {
            return false;
        };
        let expected = format!("{}:{}", self.username, self.password).into_bytes();
        constant_time_eq(&given, &expected)
    }
}

/// Compares every byte of the longer input, so the time does not tell where they differ.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    let mut diff = u8::from(a.len() != b.len());
    for i in 0..a.len().max(b.len()) {
        diff |= a.get(i).copied().unwrap_or(0) ^ b.get(i).copied().unwrap_or(0xff);
    }
    std::hint::black_box(diff) == 0
}

/// What the handlers share.
#[derive(Debug, Clone)]
pub struct ApiState {
    pub usage: UsageStore,
    /// The tick store, for the hourly average rates that convert costs to WAK.
    pub rates: TickStore,
    pub credentials: Credentials,
}

pub fn router(state: Arc<ApiState>) -> Router {
    Router::new()
        .route("/health", get(health))
        .route("/data_usage", get(data_usage))
        .with_state(state)
}

async fn health() -> Response {
    axum::Json(serde_json::json!({"status": "ok"})).into_response()
}

/// A JSON error naming the parameter at fault.
fn bad_request(parameter: &str, message: String) -> Response {
    (
        StatusCode::BAD_REQUEST,
        axum::Json(serde_json::json!({"error": message, "parameter": parameter})),
    )
        .into_response()
}

fn unauthorized() -> Response {
    let mut response = (
        StatusCode::UNAUTHORIZED,
        axum::Json(serde_json::json!({"error": "missing or wrong credentials (HTTP Basic)"})),
    )
        .into_response();
    response.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static("Basic realm=\"wtc-usage\", charset=\"UTF-8\""),
    );
    response
}

/// `YYYYMMDDHHMMSS`, UTC.
pub fn parse_compact_time(text: &str) -> Option<Timestamp> {
    let b = text.as_bytes();
    if b.len() != 14 || !b.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Timestamp::parse(&format!(
        "{}-{}-{} {}:{}:{}",
        &text[0..4],
        &text[4..6],
        &text[6..8],
        &text[8..10],
        &text[10..12],
        &text[12..14]
    ))
    .ok()
}

/// One line of the `usage` list: the sample's fields in the sample's order, then the opt-ins.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct UsageLine {
    pub category: &'static str,
    pub usage_type: &'static str,
    pub total: u64,
    pub measure: &'static str,
    pub start_time: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub up_bytes: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub down_bytes: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cost_zar: Option<f64>,
    /// `null` when an hour of the bucket has no forex rates.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cost_wak: Option<Option<f64>>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct UsageResponse {
    pub msisdn: String,
    pub start_time: String,
    pub end_time: String,
    pub usage: Vec<UsageLine>,
}

async fn data_usage(
    State(state): State<Arc<ApiState>>,
    headers: HeaderMap,
    Query(params): Query<HashMap<String, String>>,
) -> Response {
    if !state
        .credentials
        .accepts(headers.get(header::AUTHORIZATION))
    {
        return unauthorized();
    }
    let param = |name: &str| params.get(name).map(String::as_str);
    let Some(msisdn) = param("msisdn").and_then(|m| Msisdn::parse(m.as_bytes())) else {
        return bad_request("msisdn", "`msisdn` must be 1 to 15 digits".into());
    };
    let mut times = [Timestamp::from_micros(0); 2];
    for (slot, name) in times.iter_mut().zip(["start_time", "end_time"]) {
        match param(name).map(parse_compact_time) {
            Some(Some(t)) => *slot = t,
            Some(None) => {
                return bad_request(
                    name,
                    format!("`{name}` must be a UTC time as YYYYMMDDHHMMSS"),
                );
            }
            None => return bad_request(name, format!("`{name}` is required (YYYYMMDDHHMMSS)")),
        }
    }
    let [start, end] = times;
    if start > end {
        return bad_request(
            "start_time",
            "`start_time` must not be after `end_time`".into(),
        );
    }
    if end.micros() - start.micros() > MAX_RANGE_DAYS * DAY {
        return bad_request(
            "end_time",
            format!("`end_time` may be at most {MAX_RANGE_DAYS} days after `start_time`"),
        );
    }
    let daily = match param("granularity") {
        None | Some("hour") => false,
        Some("day") => true,
        Some(_) => {
            return bad_request(
                "granularity",
                "`granularity` must be `hour` or `day`".into(),
            );
        }
    };
    let (mut split, mut cost) = (false, false);
    for part in param("include")
        .unwrap_or_default()
        .split(',')
        .filter(|p| !p.is_empty())
    {
        match part {
            "split" => split = true,
            "cost" => cost = true,
            other => {
                return bad_request(
                    "include",
                    format!("`include` takes `split` and `cost`, found {other:?}"),
                );
            }
        }
    }

    // Hour buckets overlapping [start, end].
    let items = match state
        .usage
        .query(&msisdn, start.hour_start(), end.hour_start())
        .await
    {
        Ok(items) => items,
        Err(e) => {
            tracing::error!(error = %e, "reading usage failed");
            return (
                StatusCode::SERVICE_UNAVAILABLE,
                axum::Json(serde_json::json!({"error": "usage could not be read; try again"})),
            )
                .into_response();
        }
    };
    let bucket_of = |hour: Timestamp| {
        if daily {
            Timestamp::from_micros(hour.micros().div_euclid(DAY) * DAY)
        } else {
            hour
        }
    };
    // (bucket, data before call, type order) -> totals, and the costs of its hours.
    let order = |u: UsageType| UsageType::ALL.iter().position(|x| *x == u).unwrap_or(0);
    let mut buckets: BTreeMap<(Timestamp, usize), Bucket> = BTreeMap::new();
    for item in items {
        let micro_zar =
            Usage::cost_micro_zar(item.usage_type, total_of(item.usage_type, &item.totals));
        let wak = if cost {
            wak_per_zar(&state.rates, item.hour).await
        } else {
            None
        };
        let entry = buckets
            .entry((bucket_of(item.hour), order(item.usage_type)))
            .or_insert((item.usage_type, UsageTotals::default(), 0, Some(0.0)));
        entry.1.merge(&item.totals);
        entry.2 += micro_zar;
        entry.3 = match (entry.3, wak) {
            (Some(sum), Some(rate)) => Some(sum + micro_zar as f64 / 1e6 * rate),
            _ => None,
        };
    }
    let usage = buckets
        .into_iter()
        .map(
            |((bucket, _), (usage_type, totals, micro_zar, wak))| UsageLine {
                category: usage_type.category(),
                usage_type: usage_type.name(),
                total: total_of(usage_type, &totals),
                measure: usage_type.measure(),
                start_time: bucket.to_seconds_string(),
                up_bytes: (split && matches!(usage_type, UsageType::Data(_))).then_some(totals.up),
                down_bytes: (split && matches!(usage_type, UsageType::Data(_)))
                    .then_some(totals.down),
                cost_zar: cost.then_some(micro_zar as f64 / 1e6),
                cost_wak: cost.then_some(wak.map(|w| (w * 1e6).round() / 1e6)),
            },
        )
        .collect();
    axum::Json(UsageResponse {
        msisdn: msisdn.to_string(),
        start_time: start.to_seconds_string(),
        end_time: end.to_seconds_string(),
        usage,
    })
    .into_response()
}

/// A bucket being summed: its type, totals, cost in micro-ZAR, and cost in WAK (`None` once an
/// hour of it has no rates).
type Bucket = (UsageType, UsageTotals, u128, Option<f64>);

fn total_of(usage_type: UsageType, t: &UsageTotals) -> u64 {
    match usage_type {
        UsageType::Data(_) => t.up + t.down,
        UsageType::Call(_) => t.seconds,
    }
}

/// WAK per ZAR in an hour: 1 / (WAKMRV x MRVZAR), from the hour's mean mids.
async fn wak_per_zar(rates: &TickStore, hour: Timestamp) -> Option<f64> {
    let mrvzar = rates.hour_mean("MRVZAR", hour).await.ok()??;
    let wakmrv = rates.hour_mean("WAKMRV", hour).await.ok()??;
    Some(1.0 / (wakmrv * mrvzar))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compact_times_are_read_strictly() {
        assert_eq!(
            parse_compact_time("20240101010203").map(|t| t.to_seconds_string()),
            Some("2024-01-01 01:02:03".into())
        );
        for bad in [
            "2024010101020",
            "2024-01-01 01:02:03",
            "20241301010203",
            "2024010101020x",
        ] {
            assert_eq!(parse_compact_time(bad), None, "{bad}");
        }
    }

    #[test]
    fn credentials_match_exactly() {
        let c = Credentials {
            username: "user".into(),
            password: "pass".into(),
        };
        let header = |text: &str| HeaderValue::from_str(text).ok();
        let basic = |pair: &str| {
            header(&format!(
                "Basic {}",
                base64_simd::STANDARD.encode_to_string(pair)
            ))
        };
        assert!(c.accepts(basic("user:pass").as_ref()));
        for wrong in ["user:pas", "user:passs", "User:pass", ":", ""] {
            assert!(!c.accepts(basic(wrong).as_ref()), "{wrong}");
        }
        assert!(!c.accepts(None));
        assert!(!c.accepts(header("Bearer abc").as_ref()));
        assert!(!c.accepts(header("Basic !!!").as_ref()));
        assert!(!format!("{c:?}").contains("pass\""));
    }
}
