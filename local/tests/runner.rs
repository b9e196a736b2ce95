//! The runner binary as a user runs it: one command, a finite run, everything stopped after.

mod common;

use common::{Running, listening, runner};
use std::process::Command;
use std::time::Duration;
use wtc_local::services::free_port;
use wtc_local::tools::{KAFKA_PYTHON_REQUIREMENT, ensure_python_package};

#[test]
fn the_default_run_stores_every_record_and_shows_candles_with_indicators() {
    let (kafka_port, aws_port) = (free_port().unwrap(), free_port().unwrap());
    let out = runner(&["--exit-when-done"], kafka_port, aws_port)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "runner failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // 20,000 forex ticks; 60 simulated minutes of five symbols, a bar and a tick each; and a
    // pair of CDR files of 1,000 rows each.
    assert!(
        stdout.contains(
            "summary: produced 22,600 | processed 22,600 | stored 20,300 | duplicates 0 | rejected 0 | failed 0 | bars 300"
        ),
        "{stdout}"
    );
    assert!(stdout.contains("usage: 2 CDR files streamed"), "{stdout}");
    assert!(
        stdout.contains("try: curl -u wtc:wtc-local 'http://127.0.0.1:"),
        "{stdout}"
    );
    // Stock and forex series, each with at least 30 minutes of candles and every indicator on
    // its newest closed candle.
    for symbol in [
        "MRVZAR",
        "WAKMRV",
        "RELIANCE.NS",
        "TCS.NS",
        "INFY.NS",
        "HDFCBANK.NS",
        "EURUSD=X",
    ] {
        let at = stdout
            .find(&format!("  {symbol:<12} M1 "))
            .unwrap_or_else(|| panic!("no candles for {symbol}:\n{stdout}"));
        let block: Vec<&str> = stdout[at..].lines().take(2).collect();
        let m1: usize = block[0]
            .split_whitespace()
            .nth(2)
            .and_then(|n| n.trim_end_matches(',').parse().ok())
            .unwrap_or(0);
        assert!(m1 >= 30, "{symbol}: {m1} M1 candles\n{stdout}");
        assert!(
            block[0].contains("M30 ") && block[0].contains("H1 "),
            "{block:?}"
        );
        assert!(
            block[1].contains("rsi14 ") && !block[1].contains(" - "),
            "{symbol} lacks an indicator: {block:?}"
        );
    }
    assert!(stdout.contains("stopped tansu, moto_server"), "{stdout}");
    assert!(
        !listening(kafka_port) && !listening(aws_port),
        "a started service is still listening"
    );
}

#[test]
fn an_unchanged_kafka_python_producer_is_consumed_and_stored() {
    let python = ensure_python_package("kafka", KAFKA_PYTHON_REQUIREMENT).unwrap();
    let (kafka_port, aws_port) = (free_port().unwrap(), free_port().unwrap());
    let mut running = Running::start(runner(
        &[
            "--external-producer",
            "--exit-when-done",
            "--idle-secs",
            "3",
            "--market-minutes",
            "0",
            "--cdr-files",
            "0",
        ],
        kafka_port,
        aws_port,
    ));
    // The curriculum's broker auto-creates the topic; ours is created by the runner first.
    running.wait_for("waiting for an external producer", Duration::from_secs(180));
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/python/forex_producer.py");
    let producer = Command::new(python)
        .arg(script)
        .args(["--ticks", "2000"])
        .env("KAFKA_BROKERS", format!("localhost:{kafka_port}"))
        .output()
        .unwrap();
    assert!(
        producer.status.success(),
        "producer failed: {}{}",
        String::from_utf8_lossy(&producer.stdout),
        String::from_utf8_lossy(&producer.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&producer.stdout).trim(),
        "sent 2000 ticks"
    );

    let (ok, stdout) = running.finish();
    assert!(ok, "runner failed:\n{stdout}");
    assert!(
        stdout.contains("processed 2,000 | stored 2,000 | duplicates 0 | rejected 0 | failed 0"),
        "{stdout}"
    );
}

#[test]
fn ctrl_c_prints_a_summary_and_stops_everything() {
    let (kafka_port, aws_port) = (free_port().unwrap(), free_port().unwrap());
    let mut running = Running::start(runner(
        &[
            "--ticks",
            "500",
            "--market-minutes",
            "0",
            "--cdr-files",
            "0",
        ],
        kafka_port,
        aws_port,
    ));
    running.wait_for("press Ctrl-C to stop", Duration::from_secs(180));
    running.wait_for("processed 500 ", Duration::from_secs(180));
    let status = Command::new("kill")
        .args(["-INT", &running.child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let (ok, stdout) = running.finish();
    assert!(ok, "runner failed:\n{stdout}");
    assert!(
        stdout.contains("summary: produced 500 | processed 500 | stored 500"),
        "{stdout}"
    );
    assert!(stdout.contains("stopped tansu, moto_server"), "{stdout}");
    assert!(
        !listening(kafka_port) && !listening(aws_port),
        "a started service is still listening"
    );
}
