//! The usage API over real HTTP: aggregate-usage fills moto's usage table, the API serves it on a
//! free port, and a client checks the spec's shape, every error case, and the totals against
//! totals summed straight from the rows.

use aggregate_usage::AggregateUsage;
use api::ApiSettings;
use aws_sdk_dynamodb::types::AttributeValue;
use serde_json::Value;
use wtc_aws::UsageStore;
use wtc_tests::cdr::{expected, records};
use wtc_tests::{Harness, ServedApi, kafka_event};

struct Api {
    served: ServedApi,
    client: reqwest::Client,
}

impl Api {
    async fn get(
        &self,
        query: &str,
        auth: Option<(&str, &str)>,
    ) -> (u16, reqwest::header::HeaderMap, String) {
        let mut request = self.client.get(format!("{}{query}", self.served.base));
        if let Some((user, password)) = auth {
            request = request.basic_auth(user, Some(password));
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        (status, headers, response.text().await.unwrap())
    }
}

const USER: (&str, &str) = ("analyst", "s3cret-for-tests");

async fn start(h: &Harness) -> Api {
    Api {
        served: h.serve_api(USER, ApiSettings::default()).await,
        client: reqwest::Client::new(),
    }
}

/// An hour's rate sum as the tick store keeps it: `ticks` mids averaging `mean`.
async fn put_rate(h: &Harness, pair: &str, hour: &str, mean_nanos: i128, ticks: u64) {
    h.dynamo
        .put_item()
        .table_name(&h.names.rates_table)
        .item("pair", AttributeValue::S(pair.into()))
        .item("bucket", AttributeValue::S(format!("H#{hour}")))
        .item(
            "mid_sum_nanos",
            AttributeValue::N((mean_nanos * i128::from(ticks)).to_string()),
        )
        .item("ticks", AttributeValue::N(ticks.to_string()))
        .item("entries", AttributeValue::N(ticks.to_string()))
        .send()
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_usage_api_answers_as_the_spec_says() {
    let h = Harness::start("usage-api").await.unwrap();
    let all = records();
    let function = AggregateUsage::new(
        UsageStore::new(h.dynamo.clone(), h.names.usage_table.clone()),
        h.function.dead_letters.clone(),
    );
    let values: Vec<(i32, i64, Vec<u8>)> = all
        .iter()
        .enumerate()
        .map(|(i, r)| (0, i as i64, r.clone().into_bytes()))
        .collect();
    for batch in values.chunks(400) {
        assert_eq!(function.handle(&kafka_event(batch)).await.report.failed, 0);
    }
    put_rate(&h, "MRVZAR", "2024-01-01 01", 1_500_000_000, 7).await;
    put_rate(&h, "WAKMRV", "2024-01-01 01", 2_000_000_000, 7).await;
    let api = start(&h).await;

    // Health needs no credentials; usage does.
    let (status, _, body) = api.get("/health", None).await;
    assert_eq!((status, body.as_str()), (200, r#"{"status":"ok"}"#));
    let want = expected(&all);
    let ((msisdn, _, _, _), _) = want.iter().next().unwrap();
    let query =
        format!("/data_usage?msisdn={msisdn}&start_time=20240101010203&end_time=20240101025959");
    for auth in [None, Some(("analyst", "wrong")), Some(("someone", USER.1))] {
        let (status, headers, body) = api.get(&query, auth).await;
        assert_eq!(status, 401, "{body}");
        let challenge = headers.get("www-authenticate").unwrap().to_str().unwrap();
        assert!(challenge.starts_with("Basic realm="), "{challenge}");
    }

    // The spec's shape: these fields, in this order.
    let (status, _, body) = api.get(&query, Some(USER)).await;
    assert_eq!(status, 200, "{body}");
    let prefix = format!(
        r#"{{"msisdn":"{msisdn}","start_time":"2024-01-01 01:02:03","end_time":"2024-01-01 02:59:59","usage":[{{"category":""#
    );
    assert!(body.starts_with(&prefix), "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    for line in v["usage"].as_array().unwrap() {
        let text = line.to_string();
        let keys: Vec<&str> = line
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        assert_eq!(keys.len(), 5, "{text}");
        let at = |k: &str| body.find(&format!(r#""{k}":"#)).is_some();
        assert!(
            ["category", "usage_type", "total", "measure", "start_time"]
                .iter()
                .all(|k| at(k))
        );
    }
    let item_text = body.split(r#""usage":["#).nth(1).unwrap();
    let first_item = &item_text[..item_text.find('}').unwrap() + 1];
    let order: Vec<usize> = ["category", "usage_type", "total", "measure", "start_time"]
        .iter()
        .map(|k| first_item.find(&format!(r#""{k}""#)).unwrap())
        .collect();
    assert!(order.windows(2).all(|w| w[0] < w[1]), "{first_item}");

    // Totals equal the rows' own, for every MSISDN, hourly and daily.
    let mut msisdns: Vec<&String> = want.keys().map(|k| &k.0).collect();
    msisdns.dedup();
    for m in &msisdns {
        let q = format!("/data_usage?msisdn={m}&start_time=20240101000000&end_time=20240101235959");
        let v: Value = serde_json::from_str(&api.get(&q, Some(USER)).await.2).unwrap();
        let mut daily_want: std::collections::BTreeMap<(String, String), u128> = Default::default();
        for ((mm, hour, category, usage_type), (up, down, seconds, _)) in &want {
            if mm != *m {
                continue;
            }
            let total = if category == "data" {
                up + down
            } else {
                *seconds
            };
            let line = v["usage"]
                .as_array()
                .unwrap()
                .iter()
                .find(|l| {
                    l["start_time"] == hour.as_str()
                        && l["category"] == category.as_str()
                        && l["usage_type"] == usage_type.as_str()
                })
                .unwrap_or_else(|| panic!("{m} {hour} {usage_type} missing: {v}"));
            assert_eq!(line["total"].as_u64().map(u128::from), Some(total));
            assert_eq!(
                line["measure"],
                if category == "data" {
                    "bytes"
                } else {
                    "seconds"
                }
            );
            *daily_want
                .entry((category.clone(), usage_type.clone()))
                .or_default() += total;
        }
        let hourly_lines = v["usage"].as_array().unwrap().len();
        assert_eq!(hourly_lines, want.keys().filter(|k| &k.0 == *m).count());
        let v: Value =
            serde_json::from_str(&api.get(&format!("{q}&granularity=day"), Some(USER)).await.2)
                .unwrap();
        for line in v["usage"].as_array().unwrap() {
            assert_eq!(line["start_time"], "2024-01-01 00:00:00");
            let key = (
                line["category"].as_str().unwrap().to_owned(),
                line["usage_type"].as_str().unwrap().to_owned(),
            );
            assert_eq!(
                line["total"].as_u64().map(u128::from),
                daily_want.get(&key).copied(),
                "{key:?}"
            );
        }
        assert_eq!(v["usage"].as_array().unwrap().len(), daily_want.len());
    }

    // Opt-ins: the up/down split and costs (WAK from the hour's average rates, where known).
    let q = format!(
        "/data_usage?msisdn={msisdn}&start_time=20240101010000&end_time=20240101025959&include=split,cost"
    );
    let v: Value = serde_json::from_str(&api.get(&q, Some(USER)).await.2).unwrap();
    for line in v["usage"].as_array().unwrap() {
        let total = line["total"].as_u64().unwrap();
        if line["category"] == "data" {
            assert_eq!(
                line["up_bytes"].as_u64().unwrap() + line["down_bytes"].as_u64().unwrap(),
                total
            );
        } else {
            assert!(line.get("up_bytes").is_none());
        }
        let micro = if line["category"] == "data" {
            (total * 49).div_ceil(1_000)
        } else {
            (total * 1_000_000).div_ceil(60)
        };
        assert_eq!(
            line["cost_zar"].as_f64(),
            Some(micro as f64 / 1e6),
            "{line}"
        );
        if line["start_time"] == "2024-01-01 01:00:00" {
            let wak = micro as f64 / 1e6 / (2.0 * 1.5);
            assert!(
                (line["cost_wak"].as_f64().unwrap() - wak).abs() < 1e-6,
                "{line}"
            );
        } else {
            assert!(line["cost_wak"].is_null(), "no rates for that hour: {line}");
        }
    }

    // An empty range is an empty list.
    let (status, _, body) = api
        .get(
            &format!(
                "/data_usage?msisdn={msisdn}&start_time=20230101000000&end_time=20230101235959"
            ),
            Some(USER),
        )
        .await;
    assert_eq!(status, 200);
    assert!(body.ends_with(r#""usage":[]}"#), "{body}");

    // Bad requests name their parameter.
    for (query, parameter) in [
        (
            "/data_usage?start_time=20240101000000&end_time=20240101010000",
            "msisdn",
        ),
        (
            "/data_usage?msisdn=27x1&start_time=20240101000000&end_time=20240101010000",
            "msisdn",
        ),
        (
            "/data_usage?msisdn=271&start_time=2024-01-01&end_time=20240101010000",
            "start_time",
        ),
        (
            "/data_usage?msisdn=271&start_time=20240101000000",
            "end_time",
        ),
        (
            "/data_usage?msisdn=271&start_time=20240101000000&end_time=20241301010000",
            "end_time",
        ),
        (
            "/data_usage?msisdn=271&start_time=20240102000000&end_time=20240101000000",
            "start_time",
        ),
        (
            "/data_usage?msisdn=271&start_time=20240101000000&end_time=20240601000000",
            "end_time",
        ),
        (
            "/data_usage?msisdn=271&start_time=20240101000000&end_time=20240101010000&granularity=week",
            "granularity",
        ),
        (
            "/data_usage?msisdn=271&start_time=20240101000000&end_time=20240101010000&include=tax",
            "include",
        ),
    ] {
        let (status, _, body) = api.get(query, Some(USER)).await;
        assert_eq!(status, 400, "{query}: {body}");
        let v: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v["parameter"], parameter, "{query}: {body}");
        assert!(
            v["error"].as_str().is_some_and(|e| e.contains(parameter)),
            "{body}"
        );
    }
    drop(api);
    h.stop().await;
}
