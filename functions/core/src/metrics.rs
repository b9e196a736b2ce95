//! CloudWatch Embedded Metric Format: one JSON line per batch, turned into metrics by CloudWatch Logs.

use serde_json::{Map, Value, json};

/// The namespace every function's metrics go to.
pub const NAMESPACE: &str = "WtcStreaming";

/// Builds an EMF line with one `Function` dimension and the given counts (unit `Count`, except names
/// ending in `Ms`, which are `Milliseconds`).
pub fn emf_line(function: &str, timestamp_ms: i64, values: &[(&str, f64)]) -> String {
    let metrics: Vec<Value> = values
        .iter()
        .map(|(name, _)| {
            let unit = if name.ends_with("Ms") {
                "Milliseconds"
            } else {
                "Count"
            };
            json!({"Name": name, "Unit": unit})
        })
        .collect();
    let mut root = Map::new();
    root.insert(
        "_aws".into(),
        json!({
            "Timestamp": timestamp_ms,
            "CloudWatchMetrics": [{
                "Namespace": NAMESPACE,
                "Dimensions": [["Function"]],
                "Metrics": metrics,
            }]
        }),
    );
    root.insert("Function".into(), Value::from(function));
    for (name, value) in values {
        root.insert((*name).into(), json!(value));
    }
    Value::Object(root).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emf_names_each_metric_and_its_value() {
        let line = emf_line(
            "process-ticks",
            1000,
            &[("RecordsIn", 3.0), ("BatchLatencyMs", 12.5)],
        );
        let v: Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["Function"], "process-ticks");
        assert_eq!(v["RecordsIn"], 3.0);
        assert_eq!(
            v["_aws"]["CloudWatchMetrics"][0]["Metrics"][1]["Unit"],
            "Milliseconds"
        );
    }
}
