//! The runner binary as a user runs it: one command, a finite run, everything stopped after.

mod common;

use common::{Running, csv_totals, generate_cdr, listening, runner};
use std::process::Command;
use std::time::{Duration, Instant};
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
    let (ok, stdout) = running.interrupt(Duration::from_secs(120));
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

#[test]
fn a_runner_killed_with_sigkill_takes_its_services_along_and_one_started_at_once_runs() {
    let (kafka_port, aws_port) = (free_port().unwrap(), free_port().unwrap());
    let args = [
        "--ticks",
        "500",
        "--market-minutes",
        "0",
        "--cdr-files",
        "0",
        "--exit-when-done",
    ];
    let mut first = Running::start(runner(&args, kafka_port, aws_port));
    first.wait_for("processed ", Duration::from_secs(180));
    first.child.kill().unwrap();
    let (_, out) = first.finish();
    // The kernel stops the services once their parent is gone: give it a moment, not more.
    let started = Instant::now();
    while (listening(kafka_port) || listening(aws_port))
        && started.elapsed() < Duration::from_secs(5)
    {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        !listening(kafka_port) && !listening(aws_port),
        "a service outlived the killed runner:\n{out}"
    );
    // On the same ports, at once.
    let (ok, out) =
        Running::start(runner(&args, kafka_port, aws_port)).finish_within(Duration::from_secs(240));
    assert!(ok, "the second runner failed:\n{out}");
    assert!(
        out.contains("summary: produced 500 | processed 500 | stored 500"),
        "{out}"
    );
}

/// The last figure the runner's progress line gave after `label`, e.g. `usage rows 1,200`.
fn last_figure(out: &str, label: &str) -> Option<u64> {
    let at = out.rfind(label)? + label.len();
    out[at..]
        .chars()
        .take_while(|c| c.is_ascii_digit() || *c == ',')
        .filter(char::is_ascii_digit)
        .collect::<String>()
        .parse()
        .ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_runner_killed_mid_stream_and_started_again_at_once_resumes_and_ends_exact() {
    let run_dir = std::env::temp_dir().join(format!("wtc-kill-{}", std::process::id()));
    let stack = wtc_local::stack::LocalStack::start(wtc_local::stack::StackOptions::isolated(
        run_dir.clone(),
    ))
    .await
    .unwrap();
    let given = [
        "--kafka-brokers",
        stack.kafka_brokers.as_str(),
        "--aws-endpoint",
        stack.aws_endpoint.as_str(),
        "--dynamodb-endpoint",
        stack.dynamodb_endpoint.as_str(),
        "--ticks",
        "6000",
        "--market-minutes",
        "0",
    ];

    // Two pairs of files (the runner's own, seed 42), in batches of 100; killed (SIGKILL) once
    // they are published, while usage is being written: some batches committed, one cut off
    // between two writes.
    let mut args = given.to_vec();
    args.extend(["--cdr-files", "2", "--batch-size", "100"]);
    let mut first = Running::start(runner(&args, 0, 0));
    let started = Instant::now();
    let applied = loop {
        let out = first.stdout.lock().unwrap().clone();
        // Every row published first (the files are streamed in a few seconds, the usage written
        // over tens of seconds on moto): only the aggregator is cut off.
        // (`produced` counts the ticks and the CDR records.)
        let published = last_figure(&out, " records ") == Some(4_000)
            && last_figure(&out, "produced ") == Some(10_000);
        if let Some(n) = last_figure(&out, "usage rows ").filter(|n| published && *n >= 500) {
            break n;
        }
        assert!(
            started.elapsed() < Duration::from_secs(240),
            "no usage written:\n{out}"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    first.child.kill().unwrap();
    let (_, out) = first.finish();
    let before_kill = out
        .lines()
        .rfind(|l| l.starts_with("produced "))
        .unwrap_or_default()
        .to_owned();
    assert!(
        applied < 4_000,
        "every row was in before the kill; nothing was cut off:\n{out}"
    );

    // A new runner on the same broker and tables, started at once (within a second of the
    // kill): the pollers resume from their last commits, so the cut-off batch comes again, and
    // what it had written already must not count twice. It resumes within 30 seconds.
    // Scans of moto's tables take seconds while two runners write: a patient client.
    let dynamo = aws_sdk_dynamodb::Client::from_conf(
        aws_sdk_dynamodb::config::Builder::from(&stack.sdk_config().await)
            .retry_config(aws_config::retry::RetryConfig::standard().with_max_attempts(5))
            .timeout_config(
                aws_config::timeout::TimeoutConfig::builder()
                    .operation_attempt_timeout(Duration::from_secs(60))
                    .build(),
            )
            .build(),
    );
    let (_, rows_at_kill) = usage_table(&dynamo).await;
    let ticks_at_kill = raw_ticks(&dynamo).await;
    let mut args = given.to_vec();
    args.extend(["--cdr-files", "0", "--external-producer"]);
    let second = Running::start(runner(&args, 0, 0));
    let restarted = Instant::now();
    let files = generate_cdr(2, 42, "kill-files");
    let want = csv_totals(&files, false);
    // Resumed: the new runner's progress line counts records processed.
    let mut resumed_after = None;
    while restarted.elapsed() < Duration::from_secs(120) {
        let out = second.stdout.lock().unwrap().clone();
        if last_figure(&out, "| processed ").is_some_and(|n| n > 0) {
            resumed_after = Some(restarted.elapsed());
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let (got, rows, ticks) = loop {
        let (got, rows) = usage_table(&dynamo).await;
        let raw = raw_ticks(&dynamo).await;
        if (rows >= 4_000 && raw >= 6_000) || restarted.elapsed() > Duration::from_secs(300) {
            break (got, rows, tick_counts(&dynamo).await);
        }
        tokio::time::sleep(Duration::from_secs(5)).await;
    };
    let resumed_after = resumed_after.expect("the restarted runner stored nothing");
    eprintln!(
        "killed with {ticks_at_kill} ticks and {rows_at_kill} usage rows stored; the new runner resumed after {resumed_after:?}"
    );
    assert!(
        resumed_after < Duration::from_secs(30),
        "resumed only after {resumed_after:?}"
    );
    assert!(ticks_at_kill < 6_000, "every tick was in before the kill");
    // Every generated tick once, in the raw table and in the hourly sums.
    assert_eq!(ticks, (6_000, 6_000), "(raw ticks, ticks in hourly sums)");
    let (ok, out) = second.interrupt(Duration::from_secs(120));
    assert!(ok, "second runner failed:\n{out}");
    assert_eq!(
        rows, 4_000,
        "rows in the usage totals; the first runner had come to\n{before_kill}\nthe second:\n{out}"
    );
    assert_eq!(got.len(), want.len(), "usage items");
    assert!(got == want, "totals differ from the files");
    // Rows the cut-off batch had written before the kill came again and were recognised.
    let summary = &out[out.find("summary:").expect("a summary")..];
    eprintln!(
        "killed after {applied} rows; then {}",
        summary.lines().next().unwrap_or_default()
    );
    assert!(
        last_figure(summary, "| duplicates ").is_some_and(|n| n > 0),
        "the redelivered batch found none of its rows written:\n{out}"
    );
    stack.stop().await;
    let _ = std::fs::remove_dir_all(&files);
    let _ = std::fs::remove_dir_all(&run_dir);
}

/// Raw tick items.
async fn raw_ticks(dynamo: &aws_sdk_dynamodb::Client) -> u64 {
    let mut raw = 0;
    let mut pages = dynamo
        .scan()
        .table_name("wtc-ticks")
        .select(aws_sdk_dynamodb::types::Select::Count)
        .into_paginator()
        .send();
    while let Some(page) = pages.next().await {
        raw += page.unwrap().count() as u64;
    }
    raw
}

/// Raw tick items, and the ticks the hourly sums count (a tick counted twice would show).
async fn tick_counts(dynamo: &aws_sdk_dynamodb::Client) -> (u64, u64) {
    let raw = raw_ticks(dynamo).await;
    let mut in_sums = 0;
    let mut items = dynamo
        .scan()
        .table_name("wtc-rates")
        .into_paginator()
        .items()
        .send();
    while let Some(item) = items.next().await {
        let item = item.unwrap();
        let text = |k: &str| item[k].as_s().unwrap().clone();
        // Hour sums (`H#2024-01-01 13`), not minute sums or ledgers.
        if text("bucket").starts_with("H#") {
            in_sums += item["ticks"].as_n().unwrap().parse::<u64>().unwrap();
        }
    }
    (raw, in_sums)
}

/// The usage table's totals, keyed as `csv_totals` keys them, and the rows they count.
async fn usage_table(dynamo: &aws_sdk_dynamodb::Client) -> (common::CsvTotals, u64) {
    let mut got = common::CsvTotals::new();
    let mut rows = 0;
    let mut pages = dynamo
        .scan()
        .table_name("wtc-usage")
        .into_paginator()
        .items()
        .send();
    while let Some(item) = pages.next().await {
        let item = item.unwrap();
        let text = |k: &str| item[k].as_s().unwrap().clone();
        let number = |k: &str| item[k].as_n().unwrap().parse::<u64>().unwrap();
        let bucket = text("bucket");
        let parts: Vec<&str> = bucket.split('#').collect();
        got.insert(
            (
                text("msisdn"),
                parts[0].to_owned(),
                parts[1].to_owned(),
                parts[2].to_owned(),
            ),
            number("total"),
        );
        rows += number("records");
    }
    (got, rows)
}
