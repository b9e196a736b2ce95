//! The dashboard in a real browser while the runner ingests: headless Chromium (Debian's), driven
//! by Playwright, loads `/dashboard` and `/docs` from the runner's API and checks what a user sees
//! (`tests/browser/dashboard_test.py`): candles drawn, a price moving without a reload, refreshes
//! by conditional requests, a usage lookup drawn (and its 401 and 400), Swagger UI's operations,
//! no console error and no request to another host. Screenshots are kept as artifacts. In its own
//! test binary, and given every core, so that the timing of what it watches is the runner's own.

mod common;

use common::{Running, runner};
use std::path::Path;
use std::process::Command;
use std::time::Duration;
use wtc_local::services::free_port;
use wtc_local::tools::{PLAYWRIGHT_REQUIREMENT, ensure_chromium, ensure_python_package};

#[tokio::test]
async fn the_dashboard_shows_live_candles_prices_and_usage_in_a_browser() {
    let python = ensure_python_package("playwright", PLAYWRIGHT_REQUIREMENT)
        .expect("installing playwright into the tools' Python (PyPI)");
    let chromium = ensure_chromium().expect("the browser");
    let (kafka_port, aws_port) = (free_port().unwrap(), free_port().unwrap());
    // More ticks than the test watches for: prices keep moving while the browser looks.
    let mut run = Running::start(runner(
        &["--ticks", "150000", "--market-minutes", "30"],
        kafka_port,
        aws_port,
    ));
    run.wait_for("usage API example: curl", Duration::from_secs(180));
    let out = run.stdout.lock().unwrap().clone();
    let example = out
        .lines()
        .find(|l| l.starts_with("usage API example: curl"))
        .unwrap()
        .to_owned();
    let between = |after: &str, before: char| -> String {
        let start = example.find(after).unwrap() + after.len();
        example[start..].split(before).next().unwrap().to_owned()
    };
    let base = format!("http://127.0.0.1:{}", between("http://127.0.0.1:", '/'));
    let msisdn = between("msisdn=", '&');
    // Closed candles with their overlays warmed up (EMA8 needs eight) before the browser comes.
    let url = format!("{base}/indicators?symbol=MRVZAR&interval=M1&sort=desc&limit=1");
    let started = std::time::Instant::now();
    loop {
        let newest = match reqwest::get(&url).await {
            Ok(r) if r.status() == 200 => r.json::<serde_json::Value>().await.ok(),
            _ => None,
        };
        if newest.is_some_and(|v| v["indicators"][0]["ema8"].is_number()) {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(240),
            "MRVZAR's EMA8 did not warm up within 4 minutes:\n{}",
            run.stdout.lock().unwrap()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }

    let artifacts = Path::new(env!("CARGO_TARGET_TMPDIR")).join("dashboard-screenshots");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/browser/dashboard_test.py");
    let test = Command::new(python)
        .arg(&script)
        .args(["--url", &base, "--user", "wtc", "--password", "wtc-local"])
        .args(["--msisdn", &msisdn, "--symbol", "MRVZAR"])
        .args(["--start", "2024-01-01T00:00", "--end", "2024-01-02T00:00"])
        .args(["--timeout", "90", "--out"])
        .arg(&artifacts)
        .arg("--chromium")
        .arg(&chromium)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&test.stdout),
        String::from_utf8_lossy(&test.stderr)
    );
    println!("{text}\nscreenshots in {}", artifacts.display());
    let (stopped, runner_out) = run.interrupt(Duration::from_secs(180));
    assert!(
        test.status.success(),
        "the browser test failed:\n{text}\nrunner:\n{runner_out}"
    );
    for shot in ["dashboard.png", "dashboard-usage.png", "docs.png"] {
        assert!(artifacts.join(shot).exists(), "{shot} was not saved");
    }
    assert!(stopped, "the runner did not stop cleanly:\n{runner_out}");
}
