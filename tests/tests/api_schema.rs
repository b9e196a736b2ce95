//! Schemathesis (PyPI) against the API's own `/openapi.json` on the real local stores, with market
//! data and usage in them: no server error, and no response (status, content type, headers,
//! body) that the document does not describe.

use aggregate_usage::AggregateUsage;
use api::ApiSettings;
use std::process::Command;
use wtc_aws::UsageStore;
use wtc_core::quotes::{Bar, SimulatedMarket};
use wtc_core::simulate::ForexSimulator;
use wtc_core::time::Timestamp;
use wtc_local::tools::{SCHEMATHESIS_REQUIREMENT, ensure_python_tool};
use wtc_tests::{Harness, kafka_event, records_of};

const USER: (&str, &str) = ("fuzzer", "s3cret-for-tests");

#[tokio::test]
async fn the_api_answers_as_its_document_says() {
    let schemathesis = ensure_python_tool("schemathesis", &[SCHEMATHESIS_REQUIREMENT])
        .expect("installing schemathesis into the tools' Python (PyPI)");
    let h = Harness::start("api-schema").await.unwrap();
    // Forex ticks over a few minutes, a stock's bars, and an hour of usage.
    let ticks: Vec<_> = ForexSimulator::new(7).take(1_200).collect();
    let out = h
        .function
        .handle(&kafka_event(&records_of(&ticks, 0, 0)))
        .await;
    assert_eq!(out.report.failed, 0, "{:?}", out.error);
    let market = SimulatedMarket::new(7);
    let bars: Vec<Bar> = (0..40)
        .map(|i| {
            market.bar(
                "TCS.NS",
                Timestamp::from_micros(1_704_080_700_000_000 + i * 60_000_000),
            )
        })
        .collect();
    let records: Vec<_> = bars
        .iter()
        .enumerate()
        .map(|(i, b)| (3, i as i64, b.to_json().into_bytes()))
        .collect();
    let out = h.function.handle(&kafka_event(&records)).await;
    assert_eq!(out.report.failed, 0, "{:?}", out.error);
    let usage_store = UsageStore::new(h.dynamo.clone(), h.names.usage_table.clone());
    let aggregate = AggregateUsage::new(usage_store, h.function.dead_letters.clone());
    let rows: Vec<(i32, i64, Vec<u8>)> = wtc_tests::cdr::records()
        .into_iter()
        .enumerate()
        .map(|(i, r)| (0, i as i64, r.into_bytes()))
        .collect();
    let out = aggregate.handle(&kafka_event(&rows)).await;
    assert_eq!(out.report.failed, 0, "{:?}", out.error);

    let served = h.serve_api(USER, ApiSettings::default()).await;
    let base = served.base.clone();

    let report_dir = h.stack.run_dir.join("schemathesis");
    std::fs::create_dir_all(&report_dir).unwrap();
    let run = tokio::task::spawn_blocking(move || {
        Command::new(schemathesis)
            .arg("run")
            .arg(format!("{base}/openapi.json"))
            .args([
                "--checks",
                "not_a_server_error,status_code_conformance,content_type_conformance,\
                 response_headers_conformance,response_schema_conformance",
                "--auth",
                &format!("{}:{}", USER.0, USER.1),
                "--max-examples",
                "40",
                "--workers",
                "2",
                "--seed",
                "42",
                "--request-timeout",
                "20",
                "--no-color",
                "--report",
                "junit",
                "--report-dir",
            ])
            .arg(&report_dir)
            .env("SCHEMATHESIS_TELEMETRY", "false")
            // Its example database goes to the run's folder, not into the checkout.
            .current_dir(&report_dir)
            .output()
    })
    .await
    .unwrap()
    .expect("running schemathesis");
    drop(served);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&run.stdout),
        String::from_utf8_lossy(&run.stderr)
    );
    println!("{text}");
    assert!(run.status.success(), "schemathesis found problems:\n{text}");
    h.stop().await;
}
