//! `GET /data_usage`: hourly (or daily) usage of one MSISDN, in exactly the shape the
//! curriculum's clients read (fields and their order), HTTP Basic.
//!
//! Opt-in extras: `granularity=day` (daily buckets), `include=split` (`up_bytes`, `down_bytes` of
//! data), `include=cost` (`cost_zar`, and `cost_wak` from the hour's average forex rates), or both
//! (`include=split,cost`). A missing or malformed parameter, `start_time` after `end_time`, or a
//! range longer than `MAX_RANGE_DAYS` gets 400 naming the parameter; a range without usage is 200
//! with an empty `usage` list.

use crate::params::{Params, required};
use crate::{ApiError, ApiState, ErrorBody};
use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use wtc_core::cdr::{Msisdn, Usage, UsageTotals, UsageType};
use wtc_core::time::Timestamp;

/// The longest range one request may ask for.
pub const MAX_RANGE_DAYS: i64 = 93;

const HOUR: i64 = 3_600_000_000;
const DAY: i64 = 24 * HOUR;

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

/// The query of `/data_usage` (documentation; the handler parses each value itself so that an
/// error names its parameter).
#[derive(Debug, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
struct UsageQuery {
    /// The subscriber: 1 to 15 digits, kept as given (leading zeros count).
    #[param(pattern = r"^[0-9]{1,15}$", example = "6577353690711")]
    msisdn: String,
    /// Start of the range, `YYYYMMDDHHMMSS`, UTC. A bucket is included when it overlaps the range.
    #[param(pattern = r"^[0-9]{14}$", example = "20240101000000")]
    start_time: String,
    /// End of the range, `YYYYMMDDHHMMSS`, UTC; at most 93 days after `start_time`.
    #[param(pattern = r"^[0-9]{14}$", example = "20240101235959")]
    end_time: String,
    /// `hour` (the default) or `day` buckets.
    #[param(inline)]
    granularity: Option<Granularity>,
    /// Extras, comma-separated: `split` (up and down bytes of data), `cost` (ZAR and WAK).
    #[param(pattern = r"^((split|cost)(,(split|cost))*)?$", example = "split,cost")]
    include: Option<String>,
}

#[derive(Debug, utoipa::ToSchema)]
#[schema(rename_all = "lowercase")]
#[allow(dead_code)]
enum Granularity {
    Hour,
    Day,
}

/// One line of the `usage` list: the sample's fields in the sample's order, then the opt-ins.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct UsageLine {
    /// `data` or `call`.
    #[schema(example = "data")]
    pub category: &'static str,
    /// The data type (`video`, `audio`, `image`, `text`, `application`) or call type (`voice`,
    /// `video`).
    #[schema(example = "video")]
    pub usage_type: &'static str,
    /// Bytes (up plus down) for data, seconds for calls.
    pub total: u128,
    /// `bytes` or `seconds`.
    #[schema(example = "bytes")]
    pub measure: &'static str,
    /// The start of the bucket, `YYYY-MM-DD HH:MM:SS`, UTC.
    #[schema(example = "2024-01-01 00:00:00")]
    pub start_time: String,
    /// With `include=split`, for data.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub up_bytes: Option<u128>,
    /// With `include=split`, for data.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub down_bytes: Option<u128>,
    /// With `include=cost`: exact to the micro-ZAR (49 ZAR per 10^9 bytes; 1 ZAR a minute, billed
    /// per second), rounded up per bucket.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cost_zar: Option<f64>,
    /// With `include=cost`: the cost in WAK at each hour's average rates; `null` when an hour of
    /// the bucket has no forex rates.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<f64>)]
    pub cost_wak: Option<Option<f64>>,
}

#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct UsageResponse {
    #[schema(example = "6577353690711")]
    pub msisdn: String,
    /// The range as asked, `YYYY-MM-DD HH:MM:SS`.
    pub start_time: String,
    pub end_time: String,
    /// Buckets overlapping the range, in time order, data before calls within a bucket.
    pub usage: Vec<UsageLine>,
}

/// What a request asks for, parsed.
struct UsageRequest {
    msisdn: Msisdn,
    start: Timestamp,
    end: Timestamp,
    daily: bool,
    split: bool,
    cost: bool,
}

impl UsageRequest {
    fn parse(params: &Params) -> Result<Self, ApiError> {
        let msisdn = Msisdn::parse(required(params, "msisdn")?.as_bytes()).ok_or_else(|| {
            ApiError::bad_request("msisdn", "`msisdn` must be 1 to 15 digits".into())
        })?;
        let time = |name: &'static str| {
            let text = params.get(name).ok_or_else(|| {
                ApiError::bad_request(name, format!("`{name}` is required (YYYYMMDDHHMMSS)"))
            })?;
            parse_compact_time(text).ok_or_else(|| {
                ApiError::bad_request(
                    name,
                    format!("`{name}` must be a UTC time as YYYYMMDDHHMMSS"),
                )
            })
        };
        let (start, end) = (time("start_time")?, time("end_time")?);
        if start > end {
            return Err(ApiError::bad_request(
                "start_time",
                "`start_time` must not be after `end_time`".into(),
            ));
        }
        if end.micros() - start.micros() > MAX_RANGE_DAYS * DAY {
            return Err(ApiError::bad_request(
                "end_time",
                format!("`end_time` may be at most {MAX_RANGE_DAYS} days after `start_time`"),
            ));
        }
        let daily = match params.get("granularity").map(String::as_str) {
            None | Some("hour") => false,
            Some("day") => true,
            Some(_) => {
                return Err(ApiError::bad_request(
                    "granularity",
                    "`granularity` must be `hour` or `day`".into(),
                ));
            }
        };
        let (mut split, mut cost) = (false, false);
        for part in params
            .get("include")
            .map(String::as_str)
            .unwrap_or_default()
            .split(',')
            .filter(|p| !p.is_empty())
        {
            match part {
                "split" => split = true,
                "cost" => cost = true,
                other => {
                    return Err(ApiError::bad_request(
                        "include",
                        format!("`include` takes `split` and `cost`, found {other:?}"),
                    ));
                }
            }
        }
        Ok(Self {
            msisdn,
            start,
            end,
            daily,
            split,
            cost,
        })
    }
}

/// Usage of one MSISDN over a range, hourly or daily.
#[utoipa::path(
    get,
    path = "/data_usage",
    tag = "usage",
    params(UsageQuery),
    security(("basic" = [])),
    responses(
        (status = 200, description = "Usage per bucket (an empty list when there is none)",
            body = UsageResponse,
            headers(("ETag" = String, description = "Strong validator of the body"))),
        (status = 304, description = "Not modified since the ETag sent in `If-None-Match`"),
        (status = 400, description = "A parameter is missing or malformed", body = ErrorBody),
        (status = 401, description = "Missing or wrong credentials", body = ErrorBody,
            headers(("WWW-Authenticate" = String, description = "Basic"))),
        (status = 503, description = "The usage store could not be read", body = ErrorBody),
    )
)]
pub async fn data_usage(
    State(state): State<Arc<ApiState>>,
    headers: HeaderMap,
    Query(params): Query<Params>,
) -> Response {
    if !state
        .credentials
        .accepts(headers.get(header::AUTHORIZATION))
    {
        return ApiError::unauthorized().into_response();
    }
    match answer(&state, &params).await {
        Ok(body) => {
            let mut response = axum::Json(body).into_response();
            response.headers_mut().insert(
                header::CACHE_CONTROL,
                HeaderValue::from_static("private, no-cache"),
            );
            response
        }
        Err(e) => e.into_response(),
    }
}

/// A bucket being summed: its type, totals, cost in micro-ZAR, and the hours it covers.
struct Bucket {
    usage_type: UsageType,
    totals: UsageTotals,
    micro_zar: u128,
    hours: Vec<(Timestamp, u128)>,
}

async fn answer(state: &ApiState, params: &Params) -> Result<UsageResponse, ApiError> {
    let request = UsageRequest::parse(params)?;
    // Hour buckets overlapping [start, end].
    let items = crate::http::store_time(state.usage.query(
        &request.msisdn,
        request.start.hour_start(),
        request.end.hour_start(),
    ))
    .await
    .map_err(|e| ApiError::unavailable("usage", &e.to_string()))?;
    let bucket_of = |hour: Timestamp| {
        if request.daily {
            Timestamp::from_micros(hour.micros().div_euclid(DAY) * DAY)
        } else {
            hour
        }
    };
    // (bucket, type order: data before calls) -> totals and costs.
    let order = |u: UsageType| UsageType::ALL.iter().position(|x| *x == u).unwrap_or(0);
    let mut buckets: BTreeMap<(Timestamp, usize), Bucket> = BTreeMap::new();
    let overflow = || ApiError::unavailable("usage", "a total passes 2^128 - 1");
    for item in &items {
        let total = item.totals.total(item.usage_type).map_err(|_| overflow())?;
        let micro_zar = Usage::cost_micro_zar(item.usage_type, total).ok_or_else(overflow)?;
        let bucket = buckets
            .entry((bucket_of(item.hour), order(item.usage_type)))
            .or_insert_with(|| Bucket {
                usage_type: item.usage_type,
                totals: UsageTotals::default(),
                micro_zar: 0,
                hours: Vec::new(),
            });
        bucket.totals.merge(&item.totals).map_err(|_| overflow())?;
        bucket.micro_zar = bucket
            .micro_zar
            .checked_add(micro_zar)
            .ok_or_else(overflow)?;
        bucket.hours.push((item.hour, micro_zar));
    }
    // WAK per ZAR for every hour with usage, read once for all buckets.
    let rates = if request.cost {
        let hours: BTreeSet<Timestamp> = items.iter().map(|i| i.hour).collect();
        crate::http::store_time(state.rates.wak_per_zar(&hours))
            .await
            .map_err(|e| ApiError::unavailable("forex rates", &e.to_string()))?
    } else {
        Default::default()
    };
    let usage = buckets
        .into_values()
        .map(|b| -> Result<UsageLine, ApiError> {
            let data = matches!(b.usage_type, UsageType::Data(_));
            let wak = b.hours.iter().try_fold(0.0, |sum, (hour, micro_zar)| {
                rates
                    .get(hour)
                    .map(|rate| sum + *micro_zar as f64 / 1e6 * rate)
            });
            Ok(UsageLine {
                category: b.usage_type.category(),
                usage_type: b.usage_type.name(),
                total: b.totals.total(b.usage_type).map_err(|_| overflow())?,
                measure: b.usage_type.measure(),
                start_time: bucket_of(b.hours[0].0).to_seconds_string(),
                up_bytes: (request.split && data).then_some(b.totals.up),
                down_bytes: (request.split && data).then_some(b.totals.down),
                cost_zar: request.cost.then_some(b.micro_zar as f64 / 1e6),
                cost_wak: request.cost.then_some(wak.map(|w| (w * 1e6).round() / 1e6)),
            })
        })
        .collect::<Result<_, _>>()?;
    Ok(UsageResponse {
        msisdn: request.msisdn.to_string(),
        start_time: request.start.to_seconds_string(),
        end_time: request.end.to_seconds_string(),
        usage,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::strategy::Strategy;

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

    proptest::proptest! {
        #[test]
        fn fuzz_usage_queries_are_parsed_or_refused_by_name(
            p in proptest::collection::hash_map(
                proptest::sample::select(vec!["msisdn", "start_time", "end_time", "granularity", "include", "other"])
                    .prop_map(str::to_owned),
                proptest::prop_oneof![
                    crate::params::fuzz::value(),
                    "[0-9]{14}",
                    "20240[1-3][0-3][0-9][0-2][0-9][0-5][0-9][0-5][0-9]",
                ],
                0..7,
            )
        ) {
            let names = ["msisdn", "start_time", "end_time", "granularity", "include"];
            let longest = p.values().map(String::len).max().unwrap_or(0);
            match UsageRequest::parse(&p) {
                Ok(r) => {
                    proptest::prop_assert!(r.start <= r.end);
                    proptest::prop_assert!(r.end.micros() - r.start.micros() <= MAX_RANGE_DAYS * DAY);
                    proptest::prop_assert_eq!(Some(r.msisdn.to_string()), p.get("msisdn").cloned());
                }
                Err(e) => crate::params::fuzz::check_refusal(&e, &names, longest)?,
            }
            if let Some(text) = p.get("start_time")
                && let Some(t) = parse_compact_time(text)
            {
                let compact: String = t.to_seconds_string().chars().filter(char::is_ascii_digit).collect();
                proptest::prop_assert_eq!(&compact, text);
            }
        }
    }
}
